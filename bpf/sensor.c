//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Vigil's capture programs: the same parser, counters and sampler behind
 * an XDP entry point and tc/tcx entry points for ingress and egress. They
 * never change a packet's fate. The logic lives in include/.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"
#include "process.h"
#include "sample.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Keep the record types in BTF so bpf2go generates them for Go. */
const struct vigil_sample_head *unused_sample_head __attribute__((unused));
const struct vigil_stats *unused_stats __attribute__((unused));
const enum vigil_outcome *unused_outcome __attribute__((unused));
const enum vigil_flag *unused_flag __attribute__((unused));
const enum vigil_direction *unused_direction __attribute__((unused));

__attribute__((noinline)) int vigil_inner_xdp(struct xdp_md *ctx, struct vigil_sample *s, __u32 off,
					      __u32 rem, int inner)
{
	if (!s)
		return VIGIL_OUTCOME_TRUNCATED;
	return inner_at((void *)(long)ctx->data, (void *)(long)ctx->data_end, s, off, rem, inner);
}

__attribute__((noinline)) int vigil_inner_tc(struct __sk_buff *ctx, struct vigil_sample *s, __u32 off,
					     __u32 rem, int inner)
{
	if (!s)
		return VIGIL_OUTCOME_TRUNCATED;
	return inner_at((void *)(long)ctx->data, (void *)(long)ctx->data_end, s, off, rem, inner);
}

SEC("xdp")
int vigil_xdp(struct xdp_md *ctx)
{
	struct frame f = {
		.ctx = ctx,
		.data = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
		.ifindex = ctx->ingress_ifindex,
		.gso_segs = 1,
		.direction = VIGIL_DIR_INGRESS,
		.is_xdp = 1,
	};

	f.wire_len = (__u32)((long)f.data_end - (long)f.data);
	process(&f);
	return XDP_PASS;
}

static __always_inline int tc_process(struct __sk_buff *skb, __u8 direction)
{
	struct frame f = {
		.ctx = skb,
		.data = (void *)(long)skb->data,
		.data_end = (void *)(long)skb->data_end,
		.wire_len = skb->len,
		.ifindex = skb->ifindex,
		.gso_segs = skb->gso_segs ? skb->gso_segs : 1,
		.direction = direction,
	};

	process(&f);
	return TC_ACT_UNSPEC; /* tcx: next program; nothing of ours decides */
}

SEC("tc")
int vigil_tc_ingress(struct __sk_buff *skb)
{
	return tc_process(skb, VIGIL_DIR_INGRESS);
}

SEC("tc")
int vigil_tc_egress(struct __sk_buff *skb)
{
	return tc_process(skb, VIGIL_DIR_EGRESS);
}
