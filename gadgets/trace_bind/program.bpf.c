// SPDX-License-Identifier: GPL-2.0
//
// trace_bind: one event per bind(2) of an IPv4 or IPv6 socket, with the
// address and port asked for, the socket's protocol, the result and the
// calling process.
//
// syscalls/sys_enter_bind copies the caller's struct sockaddr (at most the
// 28 bytes of a sockaddr_in6) into a per-thread entry of the `binds` map;
// syscalls/sys_exit_bind completes it with the result and sends it. Other
// address families (AF_UNIX, AF_NETLINK, AF_PACKET...) are skipped at
// entry. The protocol (TCP, UDP, ...) is not in the sockaddr: it is read
// from the socket behind the file descriptor (current->files, fd table,
// file->private_data, socket->sk).

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

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

// Largest address copied: sizeof(struct sockaddr_in6).
#define SOCKADDR_MAX 28

struct event {
	gadget_timestamp timestamp_raw;
	struct gadget_process proc;

	// The address and port passed to bind(); proto_raw is the socket's
	// protocol (IPPROTO_*). Port 0 asks the kernel to choose one.
	struct gadget_l4endpoint_t addr;
	gadget_errno error_raw;
	// The socket's file descriptor.
	__u32 fd;
	// Interface the socket is bound to (SO_BINDTODEVICE), 0 for none.
	__u32 bound_dev_if;
};

// A bind() in progress: the caller's arguments, kept from entry to exit.
struct bind_args {
	__u8 sockaddr[SOCKADDR_MAX];
	__u32 fd;
};

// Do not report binds that failed.
const volatile bool ignore_errors = true;
GADGET_PARAM(ignore_errors);

// Report only binds to this port (0: all).
const volatile __u16 target_port = 0;
GADGET_PARAM(target_port);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct bind_args);
} binds SEC(".maps");

GADGET_TRACER_MAP(events, 1024 * 256);
GADGET_TRACER(bind, events, event);

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

// The syscalls/sys_enter_* records hold the syscall number and then the
// arguments in 8-byte slots; struct trace_event_raw_sys_enter has that
// layout with a fixed args[6] (see trace_exec).
SEC("tracepoint/syscalls/sys_enter_bind")
int ig_bind_e(struct trace_event_raw_sys_enter *ctx)
{
	// bind(fd, addr, addrlen)
	const void *uaddr = (const void *)ctx->args[1];
	__u64 len = ctx->args[2];
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct bind_args args = {};
	__u16 family;

	if (gadget_should_discard_data_current())
		return 0;

	if (len > SOCKADDR_MAX)
		len = SOCKADDR_MAX;
	if (len < sizeof(family))
		return 0;
	if (bpf_probe_read_user(args.sockaddr, len, uaddr))
		return 0;
	family = *(__u16 *)args.sockaddr;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (target_port != 0 &&
	    bpf_ntohs(*(__u16 *)&args.sockaddr[2]) != target_port)
		return 0;

	args.fd = ctx->args[0];
	bpf_map_update_elem(&binds, &tid, &args, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_bind")
int ig_bind_x(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	long ret = ctx->ret;
	struct bind_args *args;
	struct event *e;
	struct sock *sk;
	__u16 family;

	args = bpf_map_lookup_elem(&binds, &tid);
	if (!args)
		return 0;
	if (ignore_errors && ret != 0)
		goto out;

	e = gadget_reserve_buf(&events, sizeof(*e));
	if (!e)
		goto out;

	e->timestamp_raw = bpf_ktime_get_boot_ns();
	gadget_process_populate(&e->proc);
	e->error_raw = ret < 0 ? -ret : 0;
	e->fd = args->fd;

	// struct sockaddr_in: family, port, 4-byte address.
	// struct sockaddr_in6: family, port, flowinfo, 16-byte address.
	__builtin_memset(&e->addr, 0, sizeof(e->addr));
	family = *(__u16 *)args->sockaddr;
	e->addr.port = bpf_ntohs(*(__u16 *)&args->sockaddr[2]);
	if (family == AF_INET) {
		e->addr.version = 4;
		__builtin_memcpy(&e->addr.addr_raw.v4, &args->sockaddr[4], 4);
	} else {
		e->addr.version = 6;
		__builtin_memcpy(e->addr.addr_raw.v6, &args->sockaddr[8], 16);
	}

	sk = fd_to_sock(args->fd);
	if (sk) {
		e->addr.proto_raw = BPF_CORE_READ(sk, sk_protocol);
		e->bound_dev_if =
			BPF_CORE_READ(sk, __sk_common.skc_bound_dev_if);
	} else {
		e->addr.proto_raw = 0;
		e->bound_dev_if = 0;
	}

	gadget_submit_buf(ctx, &events, e, sizeof(*e));
out:
	bpf_map_delete_elem(&binds, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
