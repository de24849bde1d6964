/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/sockets-map.h - which process owns a socket, for gadgets that see
 * packets or sockets but not the process behind them.
 *
 * A packet reaching a socket filter or a TC program carries no process:
 * the task running at that moment is unrelated. The socket enricher keeps
 * the map gadget_sockets, keyed by (network namespace, family, protocol,
 * local port), whose values (struct gadget_socket_value, types.h) say who
 * opened the socket. gadget_socket_lookup() finds a packet's or a socket's
 * entry; gadget_process_populate_from_socket() turns it into the usual
 * struct gadget_process; filter.h's gadget_should_discard_data_by_skb()
 * applies the process filters to it.
 *
 * Both kinds of gadget include this file, so it needs neither vmlinux.h nor
 * the UAPI network headers: the gadget includes one of <vmlinux.h> or
 * <linux/types.h> (directly or through <linux/bpf.h>) first, and says what
 * it is with GADGET_TYPE_NETWORKING (lookups from a struct __sk_buff) or
 * GADGET_TYPE_TRACING (lookups from a struct sock). Header offsets are
 * spelled out below for the same reason.
 *
 * Names (map, key, value, functions, GADGET_SE_* constants) are upstream's.
 */

#ifndef __GADGET_SOCKETS_MAP_H
#define __GADGET_SOCKETS_MAP_H

#if !defined(__VMLINUX_H__) && !defined(_LINUX_TYPES_H)
#error "gadget/sockets-map.h: include <vmlinux.h> (tracing) or <linux/types.h> (networking, e.g. through <linux/bpf.h>) first"
#endif

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include <gadget/types.h>

#define GADGET_SE_PACKET_HOST 0 /* skb->pkt_type of a packet for this host */
#define GADGET_SE_ETH_HLEN 14
#define GADGET_SE_ETH_P_IP 0x0800
#define GADGET_SE_ETH_P_IPV6 0x86DD
#define GADGET_SE_AF_INET 2
#define GADGET_SE_AF_INET6 10

#define GADGET_SE_IPV6_HLEN 40
#define GADGET_SE_IPV6_NEXTHDR_OFFSET 6

#define GADGET_SE_TCPHDR_DEST_OFFSET 2
#define GADGET_SE_TCPHDR_SOURCE_OFFSET 0
#define GADGET_SE_UDPHDR_DEST_OFFSET 2
#define GADGET_SE_UDPHDR_SOURCE_OFFSET 0

/* IPv6 next-header values (the same numbers as IPPROTO_*). */
#define GADGET_SE_NEXTHDR_HOP 0
#define GADGET_SE_NEXTHDR_TCP 6
#define GADGET_SE_NEXTHDR_UDP 17
#define GADGET_SE_NEXTHDR_ROUTING 43
#define GADGET_SE_NEXTHDR_FRAGMENT 44
#define GADGET_SE_NEXTHDR_AUTH 51
#define GADGET_SE_NEXTHDR_NONE 59
#define GADGET_SE_NEXTHDR_DEST 60

/* Offsets in the Ethernet and IPv4 headers (ours, so that no network
 * header is needed): ethertype, IPv4 protocol. */
#define __GADGET_SE_ETH_PROTO_OFFSET 12
#define __GADGET_SE_IPV4_PROTO_OFFSET 9

struct gadget_socket_key {
	__u32 netns;
	__u16 family;
	__u8 proto; /* 6 (TCP) or 17 (UDP) */
	__u16 port; /* local port, host byte order */
};

#define GADGET_MAX_SOCKETS 16384

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GADGET_MAX_SOCKETS);
	__type(key, struct gadget_socket_key);
	__type(value, struct gadget_socket_value);
} gadget_sockets SEC(".maps");

/* The entry of key, or failing that, for IPv4, of an IPv6 socket bound to
 * the same port that also takes IPv4 (not IPV6_V6ONLY). */
static __always_inline struct gadget_socket_value *
__gadget_socket_find(struct gadget_socket_key *key)
{
	struct gadget_socket_value *v = bpf_map_lookup_elem(&gadget_sockets, key);

	if (v || key->family != GADGET_SE_AF_INET)
		return v;
	key->family = GADGET_SE_AF_INET6;
	v = bpf_map_lookup_elem(&gadget_sockets, key);
	if (v && v->ipv6only == 0)
		return v;
	return NULL;
}

#ifdef GADGET_TYPE_NETWORKING
/*
 * gadget_socket_lookup_with_direction(skb, is_ingress) finds the owner of
 * the local end of an Ethernet frame: the destination port of a packet
 * coming in (is_ingress), the source port of one going out. IPv6 extension
 * headers are skipped (up to six, the kinds the kernel itself skips).
 * NULL when the packet is neither TCP nor UDP, or nobody owns the port.
 * The network namespace is skb->cb[0], set by ig's dispatcher program.
 */
static __always_inline struct gadget_socket_value *
gadget_socket_lookup_with_direction(const struct __sk_buff *skb,
				    __u8 is_ingress)
{
	struct gadget_socket_key key = {};
	__u16 ethertype;
	__u32 l4;
	__u8 b;

	key.netns = skb->cb[0];
	if (bpf_skb_load_bytes(skb, __GADGET_SE_ETH_PROTO_OFFSET, &ethertype,
			       sizeof(ethertype)) < 0)
		return NULL;

	if (ethertype == bpf_htons(GADGET_SE_ETH_P_IP)) {
		key.family = GADGET_SE_AF_INET;
		if (bpf_skb_load_bytes(skb,
				       GADGET_SE_ETH_HLEN +
					       __GADGET_SE_IPV4_PROTO_OFFSET,
				       &key.proto, 1) < 0)
			return NULL;
		/* IHL: the header's length in 32-bit words, low nibble. */
		if (bpf_skb_load_bytes(skb, GADGET_SE_ETH_HLEN, &b, 1) < 0)
			return NULL;
		l4 = GADGET_SE_ETH_HLEN + (b & 0x0f) * 4;
	} else if (ethertype == bpf_htons(GADGET_SE_ETH_P_IPV6)) {
		key.family = GADGET_SE_AF_INET6;
		if (bpf_skb_load_bytes(skb,
				       GADGET_SE_ETH_HLEN +
					       GADGET_SE_IPV6_NEXTHDR_OFFSET,
				       &key.proto, 1) < 0)
			return NULL;
		l4 = GADGET_SE_ETH_HLEN + GADGET_SE_IPV6_HLEN;
#pragma unroll
		for (int i = 0; i < 6; i++) {
			__u8 next;

			if (key.proto == GADGET_SE_NEXTHDR_TCP ||
			    key.proto == GADGET_SE_NEXTHDR_UDP)
				break;
			/* Every extension header starts with the next
			 * header's number; its length is coded per kind. */
			if (bpf_skb_load_bytes(skb, l4, &next, 1) < 0)
				return NULL;
			switch (key.proto) {
			case GADGET_SE_NEXTHDR_FRAGMENT:
				l4 += 8;
				break;
			case GADGET_SE_NEXTHDR_AUTH:
				if (bpf_skb_load_bytes(skb, l4 + 1, &b, 1) < 0)
					return NULL;
				l4 += (b + 2) * 4;
				break;
			case GADGET_SE_NEXTHDR_HOP:
			case GADGET_SE_NEXTHDR_ROUTING:
			case GADGET_SE_NEXTHDR_DEST:
				if (bpf_skb_load_bytes(skb, l4 + 1, &b, 1) < 0)
					return NULL;
				l4 += (b + 1) * 8;
				break;
			default: /* NONE, or a kind not skipped */
				return NULL;
			}
			key.proto = next;
		}
	} else {
		return NULL;
	}

	/* TCP and UDP both start with source port, destination port. */
	if (key.proto == GADGET_SE_NEXTHDR_TCP)
		l4 += is_ingress ? GADGET_SE_TCPHDR_DEST_OFFSET :
				   GADGET_SE_TCPHDR_SOURCE_OFFSET;
	else if (key.proto == GADGET_SE_NEXTHDR_UDP)
		l4 += is_ingress ? GADGET_SE_UDPHDR_DEST_OFFSET :
				   GADGET_SE_UDPHDR_SOURCE_OFFSET;
	else
		return NULL;
	if (bpf_skb_load_bytes(skb, l4, &key.port, sizeof(key.port)) < 0)
		return NULL;
	key.port = bpf_ntohs(key.port);
	return __gadget_socket_find(&key);
}

/*
 * gadget_socket_lookup(skb) is gadget_socket_lookup_with_direction() with
 * the direction taken from skb->pkt_type, for socket filters. TC programs
 * must pass the direction they are attached in: there, a packet routed
 * through the host (as many CNIs do) is PACKET_HOST in both directions.
 */
static __always_inline struct gadget_socket_value *
gadget_socket_lookup(const struct __sk_buff *skb)
{
	return gadget_socket_lookup_with_direction(
		skb, skb->pkt_type == GADGET_SE_PACKET_HOST);
}
#endif /* GADGET_TYPE_NETWORKING */

#ifdef GADGET_TYPE_TRACING
/*
 * gadget_socket_lookup(sk, netns) finds the owner of a kernel socket by
 * its local port, for tracing programs that are handed a struct sock.
 * NULL for sockets other than TCP and UDP, or when nobody owns the port.
 */
static __always_inline struct gadget_socket_value *
gadget_socket_lookup(const struct sock *sk, __u32 netns)
{
	const struct inet_sock *inet = (const struct inet_sock *)sk;
	struct gadget_socket_key key = {};
	__u16 sport;

	key.netns = netns;
	key.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	key.proto = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
	if (key.proto != GADGET_SE_NEXTHDR_TCP &&
	    key.proto != GADGET_SE_NEXTHDR_UDP)
		return NULL;
	sport = BPF_CORE_READ(inet, inet_sport); /* network byte order */
	key.port = bpf_ntohs(sport);
	return __gadget_socket_find(&key);
}
#endif /* GADGET_TYPE_TRACING */

/*
 * gadget_process_populate_from_socket(owner, p) fills p from a socket's
 * owner, as gadget_process_populate() (common.h) does from the current
 * task. Leaves p untouched when owner is NULL. The parent's tid is 0 when
 * the enricher does not record it.
 */
static __always_inline void
gadget_process_populate_from_socket(const struct gadget_socket_value *owner,
				    struct gadget_process *p)
{
	if (!owner)
		return;

	__builtin_memcpy(p->comm, owner->task, sizeof(p->comm));
	p->pid = owner->pid_tgid >> 32;
	p->tid = (__u32)owner->pid_tgid;
	p->mntns_id = owner->mntns;
	p->creds.uid = (__u32)owner->uid_gid;
	p->creds.gid = owner->uid_gid >> 32;

	__builtin_memcpy(p->parent.comm, owner->ptask, sizeof(p->parent.comm));
	p->parent.pid = owner->ppid;
	p->parent.tid = bpf_core_field_exists(owner->ptid) ? owner->ptid : 0;
}

#endif /* __GADGET_SOCKETS_MAP_H */
