// SPDX-License-Identifier: GPL-2.0
//
// snapshot_socket: the TCP and UDP sockets (IPv4 and IPv6) that exist right
// now, one record each, like `ss -tuan`.
//
// Two iterator programs feed the one data source: iter/tcp walks the TCP
// hash tables (listening, established, and the request and TIME_WAIT
// minisocks), iter/udp the UDP table. Both iterate the sockets of the
// network namespace of the process that creates the iterator, so ig sees
// the sockets of its own namespace unless it enters another one before
// reading (upstream runs the iterators once per container namespace).
//
// A socket has no process: a socket belongs to open files, which any
// number of processes may share. The inode number is the link to them
// (/proc/PID/fd/N -> socket:[inode]).

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include <gadget/macros.h>
#include <gadget/types.h>

#define AF_INET 2
#define AF_INET6 10

// Socket states (include/net/tcp_states.h); the names are the displayed
// values. UDP sockets use ESTABLISHED when connected and CLOSE otherwise.
enum socket_state : __u8 {
	ESTABLISHED = 1,
	SYN_SENT = 2,
	SYN_RECV = 3,
	FIN_WAIT1 = 4,
	FIN_WAIT2 = 5,
	TIME_WAIT = 6,
	CLOSE = 7,
	CLOSE_WAIT = 8,
	LAST_ACK = 9,
	LISTEN = 10,
	CLOSING = 11,
};

struct socket_entry {
	// Local endpoint; proto_raw is IPPROTO_TCP or IPPROTO_UDP.
	struct gadget_l4endpoint_t src;
	// Remote endpoint (all zero when not connected).
	struct gadget_l4endpoint_t dst;
	enum socket_state state_raw;
	// Owner of the socket (the uid /proc/net/tcp shows).
	gadget_uid uid;
	// Inode of the socket (0 for request and TIME_WAIT minisocks, which
	// have no file).
	__u64 ino;
	gadget_netns_id netns_id;
};

GADGET_ITER(sockets, socket_entry, ig_snap_tcp, ig_snap_udp);

// The inode number of the socket file of sk, as sock_i_ino() computes it:
// struct socket is embedded in struct socket_alloc next to its inode.
static __always_inline __u64 sock_inode(struct sock *sk)
{
	struct socket *sock = BPF_CORE_READ(sk, sk_socket);
	struct socket_alloc *sa;

	if (!sock)
		return 0;
	sa = (void *)sock - bpf_core_field_offset(struct socket_alloc, socket);
	return BPF_CORE_READ(sa, vfs_inode.i_ino);
}

// Fills the endpoints from the common part of any socket, full or mini.
// Ports: skc_num is the local port in host order, skc_dport the remote one
// in network order.
static __always_inline void fill_common(struct socket_entry *e,
					struct sock_common *skc, __u16 proto)
{
	__u16 family = BPF_CORE_READ(skc, skc_family);

	if (family == AF_INET) {
		e->src.version = e->dst.version = 4;
		e->src.addr_raw.v4 = BPF_CORE_READ(skc, skc_rcv_saddr);
		e->dst.addr_raw.v4 = BPF_CORE_READ(skc, skc_daddr);
	} else {
		e->src.version = e->dst.version = 6;
		BPF_CORE_READ_INTO(&e->src.addr_raw.v6, skc, skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e->dst.addr_raw.v6, skc, skc_v6_daddr);
	}
	e->src.port = BPF_CORE_READ(skc, skc_num);
	e->dst.port = bpf_ntohs(BPF_CORE_READ(skc, skc_dport));
	e->src.proto_raw = e->dst.proto_raw = proto;
	e->netns_id = BPF_CORE_READ(skc, skc_net.net, ns.inum);
}

static __always_inline bool inet_family(struct sock_common *skc)
{
	__u16 family = BPF_CORE_READ(skc, skc_family);

	return family == AF_INET || family == AF_INET6;
}

SEC("iter/tcp")
int ig_snap_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct socket_entry e = {};
	struct tcp_timewait_sock *tw;
	struct tcp_sock *tp;

	if (!skc || !inet_family(skc))
		return 0;

	fill_common(&e, skc, IPPROTO_TCP);
	e.uid = ctx->uid;

	tp = bpf_skc_to_tcp_sock(skc);
	if (tp) {
		e.state_raw = BPF_CORE_READ(skc, skc_state);
		e.ino = sock_inode((struct sock *)tp);
	} else if ((tw = bpf_skc_to_tcp_timewait_sock(skc))) {
		// tw_substate: TIME_WAIT, or FIN_WAIT2 for an orphan still
		// waiting for the peer's FIN.
		e.state_raw = BPF_CORE_READ(tw, tw_sk.tw_substate);
	} else if (bpf_skc_to_tcp_request_sock(skc)) {
		// A connection in its handshake (kernel state NEW_SYN_RECV),
		// shown as /proc/net/tcp does.
		e.state_raw = SYN_RECV;
	} else {
		return 0;
	}

	bpf_seq_write(ctx->meta->seq, &e, sizeof(e));
	return 0;
}

SEC("iter/udp")
int ig_snap_udp(struct bpf_iter__udp *ctx)
{
	struct udp_sock *udp = ctx->udp_sk;
	struct socket_entry e = {};
	struct sock_common *skc;

	if (!udp)
		return 0;
	skc = &udp->inet.sk.__sk_common;
	if (!inet_family(skc))
		return 0;

	fill_common(&e, skc, IPPROTO_UDP);
	e.state_raw = BPF_CORE_READ(skc, skc_state);
	e.uid = ctx->uid;
	e.ino = sock_inode(&udp->inet.sk);

	bpf_seq_write(ctx->meta->seq, &e, sizeof(e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
