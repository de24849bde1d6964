// SPDX-License-Identifier: GPL-2.0
//
// top_tcp: bytes sent and received per TCP connection and thread, summed
// in the kernel and read by ig at every interval.
//
// Hooks: the sock_send_length and sock_recv_length tracepoints (Linux 6.3+),
// as BTF tracepoints. The kernel calls them at the end of sock_sendmsg()
// and sock_recvmsg(), the paths of send(2), sendto(2), sendmsg(2),
// write(2) and writev(2) on a socket, their receive counterparts, and
// sendfile(2) and splice(2) to a socket. They run in the calling task with
// the socket and the byte count the call returned, so both the process and
// the connection are right.
//
// Not counted: data read with splice(2) from a socket (tcp_splice_read()
// does not go through sock_recvmsg()), TCP zero-copy receive, and sockets
// used by the kernel itself (NFS, iSCSI, kTLS offload...).
//
// The map is drained by ig at every interval (GADGET_MAPITER), so each
// entry holds what was transferred since the previous one.

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

#include <gadget/common.h>
#include <gadget/filter.h>
#include <gadget/macros.h>
#include <gadget/types.h>

#define AF_INET 2
#define AF_INET6 10
#define MSG_PEEK 2

struct conn_key {
	struct gadget_process proc;
	// Local endpoint.
	struct gadget_l4endpoint_t src;
	// Remote endpoint.
	struct gadget_l4endpoint_t dst;
};

struct conn_stats {
	gadget_bytes sent;
	gadget_bytes received;
};

// Only IPv4 (4) or IPv6 (6) connections; -1: both.
const volatile int target_family = -1;
GADGET_PARAM(target_family);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct conn_key);
	__type(value, struct conn_stats);
} conns SEC(".maps");

GADGET_MAPITER(tcp, conns);

static const struct conn_stats zero_stats;

static __always_inline int count(struct sock *sk, int ret, bool received)
{
	struct conn_key key = {};
	struct conn_stats *st;
	__u16 family;

	if (ret <= 0)
		return 0;
	// sk is a BTF pointer: plain loads, checked by the verifier.
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	family = sk->__sk_common.skc_family;
	if (family == AF_INET) {
		if (target_family == 6)
			return 0;
	} else if (family == AF_INET6) {
		if (target_family == 4)
			return 0;
	} else {
		return 0;
	}
	if (gadget_should_discard_data_current())
		return 0;

	gadget_process_populate(&key.proc);
	if (family == AF_INET) {
		key.src.version = key.dst.version = 4;
		key.src.addr_raw.v4 = sk->__sk_common.skc_rcv_saddr;
		key.dst.addr_raw.v4 = sk->__sk_common.skc_daddr;
	} else {
		key.src.version = key.dst.version = 6;
		BPF_CORE_READ_INTO(&key.src.addr_raw.v6, sk,
				   __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&key.dst.addr_raw.v6, sk,
				   __sk_common.skc_v6_daddr);
	}
	key.src.port = sk->__sk_common.skc_num;
	key.dst.port = bpf_ntohs(sk->__sk_common.skc_dport);
	key.src.proto_raw = key.dst.proto_raw = IPPROTO_TCP;

	st = bpf_map_lookup_elem(&conns, &key);
	if (!st) {
		bpf_map_update_elem(&conns, &key, &zero_stats, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&conns, &key);
		if (!st)
			return 0;
	}
	if (received)
		__sync_fetch_and_add(&st->received, ret);
	else
		__sync_fetch_and_add(&st->sent, ret);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(ig_toptcp_send, struct sock *sk, int ret, int flags)
{
	return count(sk, ret, false);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(ig_toptcp_recv, struct sock *sk, int ret, int flags)
{
	// MSG_PEEK leaves the data in the socket: it is counted when read.
	if (flags & MSG_PEEK)
		return 0;
	return count(sk, ret, true);
}

char LICENSE[] SEC("license") = "GPL";
