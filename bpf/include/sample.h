/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The record layout shared by the BPF programs and the Go daemon.
 * bpf2go generates the Go types from these definitions; never hand-edit
 * the generated side. Every struct is padded explicitly so that C and Go
 * agree byte for byte (sampler/layout_test.go checks the offsets).
 */
#pragma once

#include <linux/types.h>

/* Bytes of the frame copied after a record when head capture is on. */
#define VIGIL_HEAD_MAX 128

/*
 * A tunnel's inner packet must start within this many bytes of the frame
 * (more is treated as truncated): the verifier needs a small bound on the
 * offset the inner parse resumes at. XDP frames fit in a page anyway.
 */
#define VIGIL_MAX_INNER_OFF 4096

/* Interfaces with ifindex below this are counted in if_stats. */
#define VIGIL_IF_SLOTS 1024

/* IPv6 extension headers walked before giving up (bad_header). */
#define VIGIL_MAX_EXT_HDRS 8

/* Parse outcome of a packet, counted for every packet. */
enum vigil_outcome {
	VIGIL_OUTCOME_OK = 0,         /* parsed through L4 (or L3 for other protocols) */
	VIGIL_OUTCOME_NOT_IP = 1,     /* Ethernet frame carrying neither IPv4 nor IPv6 */
	VIGIL_OUTCOME_TRUNCATED = 2,  /* frame ends inside a header it announces */
	VIGIL_OUTCOME_BAD_HEADER = 3, /* a header field is impossible (IHL < 5, ...) */
	VIGIL_OUTCOME_FRAGMENT = 4,   /* non-first IP fragment: no ports */
	VIGIL_OUTCOME_TUNNEL = 5,     /* VXLAN/GENEVE decapsulated, inner packet parsed */
	VIGIL_OUTCOME_MAX = 6,
	VIGIL_OUTCOME_SLOTS = 8, /* counter slots: a power of two >= MAX */
};

/* Bits of vigil_sample.flags. */
enum vigil_flag {
	VIGIL_F_FRAGMENT = 1 << 0,       /* an IP fragment, first or not */
	VIGIL_F_NONFIRST_FRAG = 1 << 1,  /* fragment offset != 0 */
	VIGIL_F_MORE_FRAGS = 1 << 2,     /* more-fragments bit set */
	VIGIL_F_VXLAN = 1 << 3,          /* decapsulated from VXLAN */
	VIGIL_F_GENEVE = 1 << 4,         /* decapsulated from GENEVE */
};

enum vigil_direction {
	VIGIL_DIR_INGRESS = 0,
	VIGIL_DIR_EGRESS = 1,
};

/*
 * One sampled packet. Addresses are 16 bytes; IPv4 is stored as an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) and ip_version says which.
 * When a tunnel was decapsulated the L2-L4 fields describe the inner
 * packet and outer_* the tunnel endpoints.
 */
struct vigil_sample {
	__u64 ts_ns;        /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 ifindex;      /* interface the program is attached to */
	__u32 wire_len;     /* bytes of the frame (skb->len in tc) */
	__u32 rate;         /* the 1-in-N sampling rate in force */
	__u32 vni;          /* VXLAN/GENEVE network identifier */
	__u32 frag_id;      /* IP identification of a fragment */
	__u16 src_port;     /* 0 for ICMP */
	__u16 dst_port;     /* ICMP: type << 8 | code, as NetFlow does */
	__u8 src_addr[16];
	__u8 dst_addr[16];
	__u8 outer_src[16];
	__u8 outer_dst[16];
	__u16 eth_type;     /* EtherType after VLAN tags */
	__u16 vlan;         /* VLAN ID of the first tag, 0 if none */
	__u16 inner_vlan;   /* VLAN ID of the second tag, 0 if none */
	__u16 frag_off;     /* fragment offset in bytes */
	__u16 gso_segs;     /* wire packets this frame stands for (GSO), >= 1 */
	__u16 head_len;     /* bytes of the frame copied after the record */
	__u8 proto;         /* IP protocol (after IPv6 extension headers) */
	__u8 tcp_flags;
	__u8 tos;           /* IPv4 TOS / IPv6 traffic class */
	__u8 ttl;           /* IPv4 TTL / IPv6 hop limit */
	__u8 ip_version;    /* 4, 6, or 0 when not IP */
	__u8 direction;     /* enum vigil_direction */
	__u8 outcome;       /* enum vigil_outcome */
	__u8 flags;         /* enum vigil_flag */
	__u8 outer_ip_version;
	__u8 _pad[3];
};

/* A record with the first bytes of the frame (cfg_head_len > 0). */
struct vigil_sample_head {
	struct vigil_sample s;
	__u8 head[VIGIL_HEAD_MAX];
};

/* Counters per interface and direction, per CPU. */
struct vigil_if_key {
	__u32 ifindex;
	__u32 direction;
};

struct vigil_if_stats {
	__u64 packets; /* wire packets (GSO segments in tc) */
	__u64 bytes;
	__u64 frames;  /* frames the program ran on */
};

/* Global counters, per CPU, in a single-slot array. */
struct vigil_stats {
	__u64 outcome[VIGIL_OUTCOME_SLOTS];
	__u64 samples;       /* records submitted to the ring buffer */
	__u64 ringbuf_full;  /* samples lost: ring buffer full */
	__u64 if_map_full;   /* packets whose interface slot could not be created */
	__u64 wakeups;       /* forced reader wakeups */
	__u64 rng;           /* xorshift64* state of this CPU's sampler */
};
