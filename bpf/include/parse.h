/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The packet parser. sampler/parse.go is its Go twin and must stay
 * identical in behaviour: same outcome, same fields, for every frame
 * (sampler/diff_test.go runs both on the same frames).
 *
 * Rules both sides follow:
 *  - a layer writes its fields only once its header is whole and valid;
 *  - the first problem found ends the parse and is the outcome;
 *  - L4 headers must fit in what the IP header says it carries.
 *
 * Every access is checked twice: against data_end (for the verifier) and
 * against the scalar byte counts that carry the protocol's own lengths.
 */
#pragma once

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

#include "sample.h"

#define VXLAN_PORT 4789
#define GENEVE_PORT 6081
#define ETH_P_TEB 0x6558 /* Transparent Ethernet Bridging */

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_DSTOPTS_ 60
#define IPPROTO_SCTP_ 132

/* Internal result: a tunnel header follows the UDP header. */
#define PARSE_TUNNEL 0x80

struct cursor {
	void *pos;
	void *end;
	__u32 rem; /* bytes from pos to end */
};

static __always_inline int cur_need(struct cursor *c, __u32 n)
{
	return c->pos + n <= c->end && n <= c->rem;
}

static __always_inline void cur_skip(struct cursor *c, __u32 n)
{
	c->pos += n;
	c->rem -= n;
}

static __always_inline void ip4_mapped(__u8 *dst, __be32 a)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &a, 4);
}

/* Ethernet and up to two VLAN tags (802.1Q, 802.1ad). */
static __always_inline int parse_eth(struct cursor *c, struct vigil_sample *s, __u16 *proto)
{
	struct ethhdr *eth = c->pos;
	__u16 vlan[2] = {0, 0};
	__be16 p;

	if (!cur_need(c, sizeof(*eth)))
		return VIGIL_OUTCOME_TRUNCATED;
	p = eth->h_proto;
	cur_skip(c, sizeof(*eth));

#pragma unroll
	for (int i = 0; i < 2; i++) {
		__u8 *tag = c->pos;

		if (p != bpf_htons(ETH_P_8021Q) && p != bpf_htons(ETH_P_8021AD))
			break;
		if (!cur_need(c, 4))
			return VIGIL_OUTCOME_TRUNCATED;
		vlan[i] = ((tag[0] << 8) | tag[1]) & 0x0fff;
		p = *(__be16 *)(tag + 2);
		cur_skip(c, 4);
	}
	s->vlan = vlan[0];
	s->inner_vlan = vlan[1];
	s->eth_type = bpf_ntohs(p);
	*proto = bpf_ntohs(p);
	return VIGIL_OUTCOME_OK;
}

/* IPv4 header; *avail is what the header says follows it. */
static __always_inline int parse_ipv4(struct cursor *c, struct vigil_sample *s, __u32 *avail,
				      __u8 *flags)
{
	struct iphdr *ip = c->pos;
	__u32 hlen, tot;
	__u16 frag;

	if (!cur_need(c, sizeof(*ip)))
		return VIGIL_OUTCOME_TRUNCATED;
	if (ip->version != 4 || ip->ihl < 5)
		return VIGIL_OUTCOME_BAD_HEADER;
	hlen = ip->ihl * 4;
	tot = bpf_ntohs(ip->tot_len);
	if (tot < hlen)
		return VIGIL_OUTCOME_BAD_HEADER;
	if (tot > c->rem || !cur_need(c, hlen))
		return VIGIL_OUTCOME_TRUNCATED;

	s->ip_version = 4;
	s->tos = ip->tos;
	s->ttl = ip->ttl;
	s->proto = ip->protocol;
	ip4_mapped(s->src_addr, ip->saddr);
	ip4_mapped(s->dst_addr, ip->daddr);

	frag = bpf_ntohs(ip->frag_off);
	if (frag & 0x3fff) {
		*flags |= VIGIL_F_FRAGMENT;
		if (frag & 0x2000)
			*flags |= VIGIL_F_MORE_FRAGS;
		s->frag_id = bpf_ntohs(ip->id);
		s->frag_off = (frag & 0x1fff) << 3;
		if (frag & 0x1fff) {
			*flags |= VIGIL_F_NONFIRST_FRAG;
			return VIGIL_OUTCOME_FRAGMENT;
		}
	}
	cur_skip(c, hlen);
	*avail = tot - hlen;
	return VIGIL_OUTCOME_OK;
}

/* IPv6 header and a bounded chain of extension headers. */
static __always_inline int parse_ipv6(struct cursor *c, struct vigil_sample *s, __u32 *avail,
				      __u8 *flags)
{
	struct ipv6hdr *ip6 = c->pos;
	__u32 plen;
	__u8 nh;

	if (!cur_need(c, sizeof(*ip6)))
		return VIGIL_OUTCOME_TRUNCATED;
	if (ip6->version != 6)
		return VIGIL_OUTCOME_BAD_HEADER;
	plen = bpf_ntohs(ip6->payload_len);
	if (plen > c->rem - sizeof(*ip6))
		return VIGIL_OUTCOME_TRUNCATED;

	nh = ip6->nexthdr;
	s->ip_version = 6;
	s->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
	s->ttl = ip6->hop_limit;
	s->proto = nh;
	__builtin_memcpy(s->src_addr, &ip6->saddr, 16);
	__builtin_memcpy(s->dst_addr, &ip6->daddr, 16);
	cur_skip(c, sizeof(*ip6));

#pragma unroll
	for (int i = 0; i < VIGIL_MAX_EXT_HDRS; i++) {
		__u8 *h = c->pos;
		__u32 len;

		switch (nh) {
		case IPPROTO_HOPOPTS_:
		case IPPROTO_ROUTING_:
		case IPPROTO_DSTOPTS_:
			if (plen < 8 || !cur_need(c, 8))
				return VIGIL_OUTCOME_TRUNCATED;
			len = (h[1] + 1) * 8;
			if (plen < len || !cur_need(c, len))
				return VIGIL_OUTCOME_TRUNCATED;
			nh = h[0];
			s->proto = nh;
			cur_skip(c, len);
			plen -= len;
			break;
		case IPPROTO_FRAGMENT_: {
			__u16 fo;

			if (plen < 8 || !cur_need(c, 8))
				return VIGIL_OUTCOME_TRUNCATED;
			nh = h[0];
			s->proto = nh;
			fo = (h[2] << 8) | h[3];
			*flags |= VIGIL_F_FRAGMENT;
			if (fo & 1)
				*flags |= VIGIL_F_MORE_FRAGS;
			s->frag_id = ((__u32)h[4] << 24) | ((__u32)h[5] << 16) | ((__u32)h[6] << 8) | h[7];
			s->frag_off = fo & 0xfff8;
			cur_skip(c, 8);
			plen -= 8;
			if (fo & 0xfff8) {
				*flags |= VIGIL_F_NONFIRST_FRAG;
				return VIGIL_OUTCOME_FRAGMENT;
			}
			break;
		}
		default:
			*avail = plen;
			return VIGIL_OUTCOME_OK;
		}
	}
	/* Still inside the extension header chain: a loop or an attack. */
	switch (nh) {
	case IPPROTO_HOPOPTS_:
	case IPPROTO_ROUTING_:
	case IPPROTO_DSTOPTS_:
	case IPPROTO_FRAGMENT_:
		return VIGIL_OUTCOME_BAD_HEADER;
	}
	*avail = plen;
	return VIGIL_OUTCOME_OK;
}

/*
 * Transport header. Returns PARSE_TUNNEL when the packet is UDP to an
 * enabled tunnel port; the cursor then points at the tunnel header.
 */
static __always_inline int parse_l4(struct cursor *c, struct vigil_sample *s, __u32 avail,
				    __u32 decap)
{
	__u8 *h = c->pos;

	switch (s->proto) {
	case IPPROTO_TCP: {
		__u32 doff;

		if (avail < 20 || !cur_need(c, 20))
			return VIGIL_OUTCOME_TRUNCATED;
		doff = h[12] >> 4;
		if (doff < 5)
			return VIGIL_OUTCOME_BAD_HEADER;
		if (doff * 4 > avail)
			return VIGIL_OUTCOME_TRUNCATED;
		s->src_port = (h[0] << 8) | h[1];
		s->dst_port = (h[2] << 8) | h[3];
		s->tcp_flags = h[13];
		return VIGIL_OUTCOME_OK;
	}
	case IPPROTO_UDP:
		if (avail < 8 || !cur_need(c, 8))
			return VIGIL_OUTCOME_TRUNCATED;
		s->src_port = (h[0] << 8) | h[1];
		s->dst_port = (h[2] << 8) | h[3];
		if (((decap & VIGIL_F_VXLAN) && s->dst_port == VXLAN_PORT) ||
		    ((decap & VIGIL_F_GENEVE) && s->dst_port == GENEVE_PORT)) {
			cur_skip(c, 8);
			/* The tunnel header must fit in the UDP payload, not the padding. */
			if (avail - 8 < c->rem)
				c->rem = avail - 8;
			return PARSE_TUNNEL;
		}
		return VIGIL_OUTCOME_OK;
	case IPPROTO_SCTP_:
		if (avail < 12 || !cur_need(c, 12))
			return VIGIL_OUTCOME_TRUNCATED;
		s->src_port = (h[0] << 8) | h[1];
		s->dst_port = (h[2] << 8) | h[3];
		return VIGIL_OUTCOME_OK;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_:
		if (avail < 4 || !cur_need(c, 4))
			return VIGIL_OUTCOME_TRUNCATED;
		s->src_port = 0;
		s->dst_port = (h[0] << 8) | h[1];
		return VIGIL_OUTCOME_OK;
	}
	return VIGIL_OUTCOME_OK;
}

/* IPv4 or IPv6 and the transport header after it. */
static __always_inline int parse_l3(struct cursor *c, struct vigil_sample *s, __u16 eth_type,
				    __u8 *flags, __u32 decap)
{
	__u32 avail = 0;
	int ret;

	if (eth_type == ETH_P_IP)
		ret = parse_ipv4(c, s, &avail, flags);
	else if (eth_type == ETH_P_IPV6)
		ret = parse_ipv6(c, s, &avail, flags);
	else
		return VIGIL_OUTCOME_NOT_IP;
	if (ret != VIGIL_OUTCOME_OK)
		return ret;
	return parse_l4(c, s, avail, decap);
}

/*
 * A VXLAN or GENEVE header at the cursor. Returns the inner EtherType
 * (ETH_P_TEB for an Ethernet frame), or 0 when the header is not a tunnel
 * we decapsulate (the packet is then plain UDP), or -1 when truncated.
 */
static __always_inline int parse_tunnel(struct cursor *c, struct vigil_sample *s, __u8 *tflag)
{
	__u8 *h = c->pos;
	__u32 optlen;
	__u16 ptype;

	if (!cur_need(c, 8))
		return -1;
	if (s->dst_port == VXLAN_PORT) {
		if (!(h[0] & 0x08)) /* I flag: the VNI is valid */
			return 0;
		*tflag = VIGIL_F_VXLAN;
		s->vni = ((__u32)h[4] << 16) | ((__u32)h[5] << 8) | h[6];
		cur_skip(c, 8);
		return ETH_P_TEB;
	}
	if (h[0] >> 6) /* GENEVE version 0 only */
		return 0;
	ptype = (h[2] << 8) | h[3];
	if (ptype != ETH_P_TEB && ptype != ETH_P_IP && ptype != ETH_P_IPV6)
		return 0;
	optlen = (h[0] & 0x3f) * 4;
	if (!cur_need(c, 8 + optlen))
		return -1;
	*tflag = VIGIL_F_GENEVE;
	s->vni = ((__u32)h[4] << 16) | ((__u32)h[5] << 8) | h[6];
	cur_skip(c, 8 + optlen);
	return ptype;
}

/* Move the outer addresses aside and clear what the inner packet sets. */
static __always_inline void enter_tunnel(struct vigil_sample *s)
{
	__builtin_memcpy(s->outer_src, s->src_addr, 16);
	__builtin_memcpy(s->outer_dst, s->dst_addr, 16);
	s->outer_ip_version = s->ip_version;
	__builtin_memset(s->src_addr, 0, 16);
	__builtin_memset(s->dst_addr, 0, 16);
	s->src_port = 0;
	s->dst_port = 0;
	s->proto = 0;
	s->tos = 0;
	s->ttl = 0;
	s->ip_version = 0;
	s->vlan = 0;
	s->inner_vlan = 0;
	s->eth_type = 0;
	s->frag_id = 0;
	s->frag_off = 0;
	s->tcp_flags = 0;
}

/*
 * Parse a frame up to a tunnel header, if any. Fields the frame does not
 * reach are left as they were (the caller zeroes s when it keeps it).
 * Returns the outcome, or PARSE_TUNNEL with *inner set to the inner
 * EtherType (ETH_P_TEB: Ethernet), s->flags set to the tunnel's flag and
 * the cursor on the inner header: parse_inner() goes on from there.
 */
static __always_inline int parse_outer(struct cursor *c, struct vigil_sample *s, __u32 decap,
				       int *inner)
{
	__u8 flags = 0, tflag = 0;
	__u16 eth_type = 0;
	int ret;

	ret = parse_eth(c, s, &eth_type);
	if (ret == VIGIL_OUTCOME_OK)
		ret = parse_l3(c, s, eth_type, &flags, decap);
	if (ret != PARSE_TUNNEL)
		goto out;

	*inner = parse_tunnel(c, s, &tflag);
	if (*inner == 0) {
		ret = VIGIL_OUTCOME_OK;
		goto out;
	}
	if (*inner < 0) {
		ret = VIGIL_OUTCOME_TRUNCATED;
		goto out;
	}
	enter_tunnel(s);
	flags = tflag;
out:
	s->flags = flags;
	return ret;
}

/* The packet inside a tunnel, after parse_outer returned PARSE_TUNNEL. */
static __always_inline int parse_inner(struct cursor *c, struct vigil_sample *s, int inner)
{
	__u8 flags = s->flags;
	__u16 eth_type = inner;
	int ret;

	if (inner == ETH_P_TEB) {
		ret = parse_eth(c, s, &eth_type);
		if (ret != VIGIL_OUTCOME_OK)
			goto out;
	} else {
		s->eth_type = inner;
	}
	ret = parse_l3(c, s, eth_type, &flags, 0);
	if (ret == VIGIL_OUTCOME_OK)
		ret = VIGIL_OUTCOME_TUNNEL;
out:
	s->flags = flags;
	return ret;
}
