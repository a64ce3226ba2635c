/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Maps and globals shared by every entry point of the sensor. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "sample.h"

/* The sample stream. The daemon sizes it at load time (MaxEntries). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} samples SEC(".maps");

/*
 * Exact per-interface counters, per CPU. Interfaces with a small ifindex
 * (nearly all) use a slot of if_stats at ifindex * 2 + direction: an
 * array lookup the verifier inlines. A hash lookup costs ~25 ns, as much
 * as the whole parse, so the hash if_stats_big only serves the rest.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct vigil_if_stats);
	__uint(max_entries, VIGIL_IF_SLOTS * 2);
} if_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct vigil_if_key);
	__type(value, struct vigil_if_stats);
	__uint(max_entries, 1024);
} if_stats_big SEC(".maps");

/* Global counters: parse outcomes, samples, losses. One slot. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct vigil_stats);
	__uint(max_entries, 1);
} stats SEC(".maps");

/*
 * Where unsampled packets are parsed: the parse still runs (its outcome is
 * counted) but nothing of it is kept. Per CPU, so no locking and no
 * zeroing on the hot path.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct vigil_sample);
	__uint(max_entries, 1);
} scratch SEC(".maps");

/*
 * The sampling knob, written by the daemon at run time through the
 * memory-mapped .data section. Low 32 bits: the rate N. High 32 bits: the
 * threshold t such that a packet is sampled when prandom <= t, that is
 * t = ceil(2^32 / N) - 1. One 64-bit word, so a reader never sees a rate
 * with another rate's threshold, and no division on the hot path.
 */
volatile __u64 sample_cfg = 0xffffffff00000001ULL;

/*
 * Per-interface sampling knobs, indexed by ifindex (below VIGIL_IF_SLOTS),
 * in the same format as sample_cfg; 0 means the interface follows
 * sample_cfg. Memory-mapped, so the daemon's adaptive controller moves an
 * interface's rate with one aligned 8-byte store.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, VIGIL_IF_SLOTS);
} if_rate SEC(".maps");

/* Load-time settings (frozen .rodata, so the verifier prunes dead paths). */
volatile const __u32 cfg_decap = 0;           /* VIGIL_F_VXLAN | VIGIL_F_GENEVE */
volatile const __u32 cfg_head_len = 0;        /* 0..VIGIL_HEAD_MAX */
volatile const __u32 cfg_wakeup_bytes = 65536; /* wake the reader past this backlog */
