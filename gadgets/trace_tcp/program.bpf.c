// SPDX-License-Identifier: GPL-2.0
//
// trace_tcp: TCP connections being opened and closed. One event per
// connect (when it succeeds or fails), per accept, and per close, with the
// local (src) and remote (dst) endpoints, the process and the error.
//
// The core hook is sock/inet_sock_set_state, which reports every state
// change of a socket with its addresses. Many of those changes happen in
// softirq context (a packet arriving) or from a timer, where the current
// task has nothing to do with the socket. So the process is taken from
// where it is known to be right, and kept per socket in the `owners` map:
//
//   connect: CLOSE -> SYN_SENT happens inside connect(2), in the caller:
//            the caller becomes the socket's owner. The event is sent when
//            the handshake ends: SYN_SENT -> ESTABLISHED (success, usually
//            in softirq) or SYN_SENT -> CLOSE (failure: the socket's
//            sk_err says why, e.g. ECONNREFUSED on a reset, ETIMEDOUT).
//            It carries the owner. Failures that happen inside connect(2)
//            itself (no route, no free local port, permission denied) are
//            reported from syscalls/sys_exit_connect with the syscall's
//            error; the remote endpoint then comes from the caller's
//            sockaddr, since the socket may not have one yet.
//   accept:  syscalls/sys_exit_accept and sys_exit_accept4, in the
//            accepting process: the new fd is looked up in the process's
//            file table to find the socket. The caller becomes the owner.
//            Failed accepts are reported too (not EAGAIN or EINTR), with
//            the listening socket's address as src.
//   close:   the first step of the local side closing an established
//            connection: ESTABLISHED -> FIN_WAIT1 or CLOSE_WAIT -> LAST_ACK.
//            Both happen only in close(2)/shutdown(2) (tcp_close(),
//            tcp_shutdown()), so the current task is the one closing. An
//            established connection that is torn down at once (ESTABLISHED
//            or CLOSE_WAIT -> CLOSE: reset by the peer, aborted by a close
//            with unread data, timed out) gets its owner, or no process if
//            it was opened before the gadget started.
//
// tcp/tcp_destroy_sock, when the kernel frees the socket, removes its
// entry from `owners`.

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

#include <gadget/buffer.h>
#include <gadget/common.h>
#include <gadget/filter.h>
#include <gadget/macros.h>
#include <gadget/types.h>

#define AF_INET 2
#define AF_INET6 10

// File type bits of i_mode (include/uapi/linux/stat.h).
#define S_IFMT 00170000
#define S_IFSOCK 0140000

// Errors that do not mean a failed connect or accept.
#define EINTR 4
#define EAGAIN 11
#define EALREADY 114
#define EINPROGRESS 115
#define ECONNABORTED 103
#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define ERESTARTNOHAND 514

// The names are the displayed values.
enum event_type : __u8 {
	connect,
	accept,
	close,
};

struct event {
	gadget_timestamp timestamp_raw;
	// See above for whose process this is; all zero when unknown.
	struct gadget_process proc;
	gadget_netns_id netns_id;

	// Local endpoint.
	struct gadget_l4endpoint_t src;
	// Remote endpoint.
	struct gadget_l4endpoint_t dst;
	enum event_type type_raw;
	gadget_errno error_raw;
	// The socket's fd in proc (the accepted fd for accept), when the
	// event comes from a syscall; -1 otherwise.
	__s32 fd;
};

// Where a socket's owner entry stands.
enum owner_phase : __u8 {
	// connect() started, handshake not finished.
	CONNECTING,
	// The connect event was sent (or the socket was accepted).
	SETTLED,
	// The handshake failed without an error on the socket: connect()
	// itself is failing and its exit reports the error.
	FAILED_IN_SYSCALL,
};

struct owner {
	struct gadget_process proc;
	enum owner_phase phase;
};

// Report only connect events (may be combined with accept_only).
const volatile bool connect_only = false;
GADGET_PARAM(connect_only);

// Report only accept events (may be combined with connect_only).
const volatile bool accept_only = false;
GADGET_PARAM(accept_only);

// Report only events with an error.
const volatile bool failure_only = false;
GADGET_PARAM(failure_only);

// The process that connected or accepted each socket, by socket address.
// LRU: entries of sockets freed while the gadget was not watching, or of
// sockets that never get a close, are evicted instead of filling the map.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct owner);
} owners SEC(".maps");

GADGET_TRACER_MAP(events, 1024 * 256);
GADGET_TRACER(tcp, events, event);

static __always_inline bool type_wanted(enum event_type t)
{
	if (!connect_only && !accept_only)
		return true;
	return (connect_only && t == connect) || (accept_only && t == accept);
}

// True when one of the process filters (or the container filter) is set.
static __always_inline bool process_filter_set(void)
{
	return gadget_filter_by_mntns || targ_pid != 0 || targ_tid != 0 ||
	       targ_uid != GADGET_INVALID_ID || targ_gid != GADGET_INVALID_ID ||
	       targ_comm[0] != '\0';
}

static __always_inline bool discard_proc(const struct gadget_process *p)
{
	return gadget_should_discard_data(p->mntns_id, p->pid, p->tid, p->comm,
					  p->creds.uid, p->creds.gid);
}

static __always_inline struct event *reserve(enum event_type t, __u32 err)
{
	struct event *e;

	if (!type_wanted(t) || (failure_only && err == 0))
		return NULL;
	e = gadget_reserve_buf(&events, sizeof(*e));
	if (!e)
		return NULL;
	e->timestamp_raw = bpf_ktime_get_boot_ns();
	e->type_raw = t;
	e->error_raw = err;
	e->fd = -1;
	return e;
}

// The struct sock behind file descriptor fd of the current task, or NULL
// if fd is not an open socket.
static __always_inline struct sock *fd_to_sock(__u32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	struct socket *sock;
	umode_t mode;

	if (fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	return BPF_CORE_READ(sock, sk);
}

// True for an IPv4 or IPv6 TCP socket.
static __always_inline bool is_inet_tcp(struct sock *sk)
{
	__u16 family;

	if (!sk)
		return false;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	return (family == AF_INET || family == AF_INET6) &&
	       BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP;
}

// Fills the endpoints and netns from the socket itself.
static __always_inline void endpoints_from_sock(struct event *e,
						struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	__builtin_memset(&e->src, 0, sizeof(e->src));
	__builtin_memset(&e->dst, 0, sizeof(e->dst));
	if (family == AF_INET) {
		e->src.version = e->dst.version = 4;
		e->src.addr_raw.v4 =
			BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		e->dst.addr_raw.v4 = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	} else {
		e->src.version = e->dst.version = 6;
		BPF_CORE_READ_INTO(&e->src.addr_raw.v6, sk,
				   __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e->dst.addr_raw.v6, sk,
				   __sk_common.skc_v6_daddr);
	}
	e->src.port = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dst.port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	e->src.proto_raw = e->dst.proto_raw = IPPROTO_TCP;
	e->netns_id = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

// Fills the endpoints from the tracepoint record (ports are in host order
// there, addresses in network order).
static __always_inline void
endpoints_from_record(struct event *e,
		      struct trace_event_raw_inet_sock_set_state *ctx)
{
	__builtin_memset(&e->src, 0, sizeof(e->src));
	__builtin_memset(&e->dst, 0, sizeof(e->dst));
	// Field by field with constant offsets: the verifier refuses a
	// context pointer that has been moved, which memcpy() would do.
	if (ctx->family == AF_INET) {
		e->src.version = e->dst.version = 4;
		e->src.addr_raw.v4 = *(volatile __u32 *)ctx->saddr;
		e->dst.addr_raw.v4 = *(volatile __u32 *)ctx->daddr;
	} else {
		__u64 *s = (__u64 *)e->src.addr_raw.v6;
		__u64 *d = (__u64 *)e->dst.addr_raw.v6;

		e->src.version = e->dst.version = 6;
		s[0] = *(volatile __u64 *)&ctx->saddr_v6[0];
		s[1] = *(volatile __u64 *)&ctx->saddr_v6[8];
		d[0] = *(volatile __u64 *)&ctx->daddr_v6[0];
		d[1] = *(volatile __u64 *)&ctx->daddr_v6[8];
	}
	e->src.port = ctx->sport;
	e->dst.port = ctx->dport;
	e->src.proto_raw = e->dst.proto_raw = IPPROTO_TCP;
	e->netns_id = BPF_CORE_READ((struct sock *)ctx->skaddr,
				    __sk_common.skc_net.net, ns.inum);
}

SEC("tracepoint/sock/inet_sock_set_state")
int ig_tcp_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u64 skaddr = (__u64)ctx->skaddr;
	int oldstate = ctx->oldstate;
	int newstate = ctx->newstate;
	struct owner *owner;
	struct event *e;
	__u32 err;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (ctx->family != AF_INET && ctx->family != AF_INET6)
		return 0;

	// connect() starting, in the caller's context.
	if (newstate == TCP_SYN_SENT) {
		struct owner o = {.phase = CONNECTING};

		if (!type_wanted(connect) && !type_wanted(close))
			return 0;
		if (gadget_should_discard_data_current())
			return 0;
		gadget_process_populate(&o.proc);
		bpf_map_update_elem(&owners, &skaddr, &o, BPF_ANY);
		return 0;
	}

	owner = bpf_map_lookup_elem(&owners, &skaddr);

	// Handshake finished (SYN_RECV -> ESTABLISHED: simultaneous open).
	if (owner && owner->phase == CONNECTING &&
	    (newstate == TCP_ESTABLISHED || newstate == TCP_CLOSE)) {
		err = 0;
		if (newstate == TCP_CLOSE) {
			err = BPF_CORE_READ((struct sock *)ctx->skaddr, sk_err);
			if (err == 0) {
				// Failing inside connect() (reported at its
				// exit), or closed by the application before
				// the handshake ended.
				owner->phase = FAILED_IN_SYSCALL;
				return 0;
			}
		}
		owner->phase = SETTLED;
		e = reserve(connect, err);
		if (!e)
			return 0;
		e->proc = owner->proc;
		endpoints_from_record(e, ctx);
		gadget_submit_buf(ctx, &events, e, sizeof(*e));
		return 0;
	}

	if (oldstate != TCP_ESTABLISHED && oldstate != TCP_CLOSE_WAIT)
		return 0;

	// Local close of an established connection: in close()/shutdown().
	if (newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK) {
		if (gadget_should_discard_data_current())
			return 0;
		e = reserve(close, 0);
		if (!e)
			return 0;
		gadget_process_populate(&e->proc);
		endpoints_from_record(e, ctx);
		gadget_submit_buf(ctx, &events, e, sizeof(*e));
		return 0;
	}

	// Torn down at once: reset, abort, timeout.
	if (newstate == TCP_CLOSE) {
		if (owner ? discard_proc(&owner->proc) : process_filter_set())
			return 0;
		err = BPF_CORE_READ((struct sock *)ctx->skaddr, sk_err);
		e = reserve(close, err);
		if (!e)
			return 0;
		if (owner)
			e->proc = owner->proc;
		else
			__builtin_memset(&e->proc, 0, sizeof(e->proc));
		endpoints_from_record(e, ctx);
		gadget_submit_buf(ctx, &events, e, sizeof(*e));
	}
	return 0;
}

SEC("raw_tp/tcp_destroy_sock")
int ig_tcp_destroy(struct bpf_raw_tracepoint_args *ctx)
{
	// tcp_destroy_sock(struct sock *sk)
	__u64 skaddr = ctx->args[0];

	bpf_map_delete_elem(&owners, &skaddr);
	return 0;
}

static __always_inline bool is_retry_error(long ret)
{
	return ret == -EAGAIN || ret == -EINTR || ret == -ERESTARTSYS ||
	       ret == -ERESTARTNOINTR || ret == -ERESTARTNOHAND;
}

// Syscall argument n (1-based) from the registers saved at entry.
static __always_inline __u64 syscall_arg(int n)
{
	struct pt_regs *regs =
		(struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());

	return n == 1 ? PT_REGS_PARM1_SYSCALL(regs) :
	       n == 2 ? PT_REGS_PARM2_SYSCALL(regs) :
			PT_REGS_PARM3_SYSCALL(regs);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int ig_tcp_connect_x(struct syscall_trace_exit *ctx)
{
	long ret = ctx->ret;
	struct owner *owner;
	struct event *e;
	struct sock *sk;
	__u8 sa[28] = {};
	__u64 skaddr, len;
	__u16 family;
	__u32 fd;

	// Only failures inside the syscall are reported here.
	if (ret >= 0 || ret == -EINPROGRESS || ret == -EALREADY ||
	    is_retry_error(ret))
		return 0;
	if (!type_wanted(connect))
		return 0;
	if (gadget_should_discard_data_current())
		return 0;

	fd = syscall_arg(1);
	sk = fd_to_sock(fd);
	if (!is_inet_tcp(sk))
		return 0;
	skaddr = (__u64)sk;
	owner = bpf_map_lookup_elem(&owners, &skaddr);
	// Already reported when the handshake failed (a blocking connect
	// returns the error the reset or timeout left on the socket).
	if (owner && owner->phase != FAILED_IN_SYSCALL)
		return 0;
	if (owner)
		owner->phase = SETTLED;

	e = reserve(connect, -ret);
	if (!e)
		return 0;
	gadget_process_populate(&e->proc);
	endpoints_from_sock(e, sk);
	e->fd = fd;

	// The socket has no remote address yet if connect() failed early:
	// take it from the caller's sockaddr (sockaddr_in or sockaddr_in6).
	len = syscall_arg(3);
	if (len > sizeof(sa))
		len = sizeof(sa);
	if (len >= 8 && !bpf_probe_read_user(sa, len, (void *)syscall_arg(2))) {
		family = *(__u16 *)sa;
		e->dst.port = bpf_ntohs(*(__u16 *)&sa[2]);
		if (family == AF_INET) {
			e->dst.version = 4;
			__builtin_memset(e->dst.addr_raw.v6, 0, 16);
			__builtin_memcpy(&e->dst.addr_raw.v4, &sa[4], 4);
		} else if (family == AF_INET6 && len >= 24) {
			e->dst.version = 6;
			__builtin_memcpy(e->dst.addr_raw.v6, &sa[8], 16);
		}
	}
	gadget_submit_buf(ctx, &events, e, sizeof(*e));
	return 0;
}

static __always_inline int accept_exit(struct syscall_trace_exit *ctx)
{
	long ret = ctx->ret;
	struct owner o = {.phase = SETTLED};
	struct event *e;
	struct sock *sk;
	__u64 skaddr;

	if (ret < 0 && is_retry_error(ret))
		return 0;
	if (gadget_should_discard_data_current())
		return 0;

	// The accepted socket, or on failure the listening one.
	sk = fd_to_sock(ret >= 0 ? ret : syscall_arg(1));
	if (!is_inet_tcp(sk))
		return 0;

	gadget_process_populate(&o.proc);
	if (ret >= 0) {
		skaddr = (__u64)sk;
		bpf_map_update_elem(&owners, &skaddr, &o, BPF_ANY);
	}

	e = reserve(accept, ret < 0 ? -ret : 0);
	if (!e)
		return 0;
	e->proc = o.proc;
	endpoints_from_sock(e, sk);
	if (ret >= 0) {
		e->fd = ret;
	} else {
		// A listening socket has no peer.
		__builtin_memset(&e->dst, 0, sizeof(e->dst));
		e->dst.version = e->src.version;
		e->dst.proto_raw = IPPROTO_TCP;
	}
	gadget_submit_buf(ctx, &events, e, sizeof(*e));
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int ig_tcp_accept_x(struct syscall_trace_exit *ctx)
{
	return accept_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int ig_tcp_accept4_x(struct syscall_trace_exit *ctx)
{
	return accept_exit(ctx);
}

char LICENSE[] SEC("license") = "GPL";
