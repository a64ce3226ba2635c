/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Count, parse and sample one frame: the body of every entry point. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"
#include "parse.h"
#include "sample.h"

/*
 * The inner packet of a tunnel is parsed in a global function, verified
 * once on its own: inlined, every path of the outer parse would carry the
 * whole inner parse and the verifier would give up (over 1M insns).
 * Defined per program type in sensor.c.
 */
int vigil_inner_xdp(struct xdp_md *ctx, struct vigil_sample *s, __u32 off, __u32 rem, int inner);
int vigil_inner_tc(struct __sk_buff *ctx, struct vigil_sample *s, __u32 off, __u32 rem, int inner);

/* Resume at byte off of the packet with rem bytes of tunnel payload. */
static __always_inline int inner_at(void *data, void *end, struct vigil_sample *s, __u32 off,
				    __u32 rem, int inner)
{
	struct cursor c = {.end = end, .rem = rem};

	if (off >= VIGIL_MAX_INNER_OFF)
		return VIGIL_OUTCOME_TRUNCATED;
	c.pos = data + off;
	if (c.pos > end)
		return VIGIL_OUTCOME_TRUNCATED;
	return parse_inner(&c, s, inner);
}

struct frame {
	void *ctx;
	void *data;
	void *data_end;
	__u32 wire_len;
	__u32 ifindex;
	__u16 gso_segs;
	__u8 direction;
	__u8 is_xdp;
};

static __always_inline struct vigil_if_stats *if_slot_big(struct frame *f)
{
	struct vigil_if_key key = {.ifindex = f->ifindex, .direction = f->direction};
	struct vigil_if_stats *is = bpf_map_lookup_elem(&if_stats_big, &key);

	if (!is) {
		struct vigil_if_stats zero = {};

		bpf_map_update_elem(&if_stats_big, &key, &zero, BPF_NOEXIST);
		is = bpf_map_lookup_elem(&if_stats_big, &key);
	}
	return is;
}

static __always_inline void count_interface(struct frame *f, struct vigil_stats *st)
{
	struct vigil_if_stats *is;

	if (f->ifindex < VIGIL_IF_SLOTS) {
		__u32 slot = f->ifindex * 2 + f->direction;

		is = bpf_map_lookup_elem(&if_stats, &slot);
	} else {
		is = if_slot_big(f);
	}
	if (!is) {
		st->if_map_full++;
		return;
	}
	is->packets += f->gso_segs;
	is->bytes += f->wire_len;
	is->frames++;
}

static __always_inline void count_outcome(struct vigil_stats *st, int outcome)
{
	__u32 o = outcome;

	if (o >= VIGIL_OUTCOME_MAX)
		return;
	/* clang may index with a register other than the one it compared;
	 * hide the bound from it so the mask stays for the verifier. */
	barrier_var(o);
	st->outcome[o & (VIGIL_OUTCOME_SLOTS - 1)]++;
}

static __always_inline void copy_head(struct frame *f, struct vigil_sample_head *r)
{
	__u32 n = cfg_head_len, m;

	if (n > f->wire_len)
		n = f->wire_len;
	if (n > VIGIL_HEAD_MAX)
		n = VIGIL_HEAD_MAX;
	if (n == 0)
		return;
	/* n is in [1, VIGIL_HEAD_MAX]; say so in a form that survives clang
	 * for the verifier: m = n - 1 masked to [0, VIGIL_HEAD_MAX - 1]. */
	m = n - 1;
	barrier_var(m);
	m &= VIGIL_HEAD_MAX - 1;
	if (f->is_xdp)
		bpf_xdp_load_bytes(f->ctx, 0, r->head, m + 1);
	else
		bpf_skb_load_bytes(f->ctx, 0, r->head, m + 1);
	r->s.head_len = m + 1;
}

static __always_inline void submit(struct vigil_stats *st, void *rec)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(&samples, BPF_RB_AVAIL_DATA) >= cfg_wakeup_bytes) {
		flags = BPF_RB_FORCE_WAKEUP;
		st->wakeups++;
	}
	bpf_ringbuf_submit(rec, flags);
	st->samples++;
}

/*
 * A uniform random u32 from this CPU's xorshift64* generator, seeded from
 * bpf_get_prandom_u32(). The helper call alone costs ~25 ns per packet
 * here, more than the parse; this costs a few instructions. Only the high
 * 32 bits of the product are used, which pass BigCrush.
 */
static __always_inline __u32 next_random(struct vigil_stats *st)
{
	__u64 x = st->rng;

	if (x == 0)
		x = ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32() | 1;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	st->rng = x;
	return (x * 0x2545F4914F6CDD1DULL) >> 32;
}

static __always_inline void process(struct frame *f)
{
	__u32 zero = 0;
	struct vigil_stats *st = bpf_map_lookup_elem(&stats, &zero);
	struct vigil_sample *s = NULL;
	struct cursor c = {.pos = f->data, .end = f->data_end};
	__u64 cfg = sample_cfg;
	int outcome, keep, inner = 0;

	if (!st)
		return;
	count_interface(f, st);
	if (f->ifindex < VIGIL_IF_SLOTS) {
		__u32 idx = f->ifindex;
		__u64 *ic = bpf_map_lookup_elem(&if_rate, &idx);
		__u64 v = ic ? *(volatile __u64 *)ic : 0;

		if (v)
			cfg = v;
	}

	if (next_random(st) <= (__u32)(cfg >> 32)) {
		if (cfg_head_len)
			s = bpf_ringbuf_reserve(&samples, sizeof(struct vigil_sample_head), 0);
		else
			s = bpf_ringbuf_reserve(&samples, sizeof(struct vigil_sample), 0);
		if (s)
			__builtin_memset(s, 0, sizeof(*s));
		else
			st->ringbuf_full++;
	}

	keep = s != NULL;
	if (!s)
		s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return;

	c.rem = (__u32)((long)f->data_end - (long)f->data);
	outcome = parse_outer(&c, s, cfg_decap, &inner);
	if (outcome == PARSE_TUNNEL) {
		__u32 off = c.pos - f->data;

		if (f->is_xdp)
			outcome = vigil_inner_xdp(f->ctx, s, off, c.rem, inner);
		else
			outcome = vigil_inner_tc(f->ctx, s, off, c.rem, inner);
	}
	count_outcome(st, outcome);
	if (!keep)
		return;

	s->ts_ns = bpf_ktime_get_ns();
	s->ifindex = f->ifindex;
	s->wire_len = f->wire_len;
	s->rate = (__u32)cfg;
	s->gso_segs = f->gso_segs;
	s->direction = f->direction;
	s->outcome = outcome;
	if (cfg_head_len)
		copy_head(f, (struct vigil_sample_head *)s);
	submit(st, s);
}
