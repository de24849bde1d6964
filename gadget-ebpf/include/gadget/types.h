/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/types.h - typedefs and structs that give event fields a meaning.
 *
 * The loader turns every typedef name found on a struct member's type chain
 * into a `type:<name>` tag on the field (for `gadget_comm comm[16]` the tag
 * is `type:gadget_comm`). Those tags select display templates and drive
 * enrichment: a `gadget_mntns_id` field gets container metadata, a
 * `gadget_uid` field gets a user name, a `gadget_errno` field gets the errno
 * name, a `gadget_timestamp` gets a wall-clock rendering, and so on. Using
 * the plain C type instead still works but loses all of that.
 *
 * The names, member names, member types and member order below are part of
 * the gadget ABI shared with upstream Inspektor Gadget: gadgets written for
 * upstream must compile against this file and produce the same layouts.
 * The loader side of these names lives in src/bpf/contract.rs.
 */

#ifndef __GADGET_TYPES_H
#define __GADGET_TYPES_H

/*
 * Tracing gadgets include <vmlinux.h> first, which provides the __u8..__u64
 * types, bool and TASK_COMM_LEN (as an enum constant). Networking gadgets
 * build on the UAPI headers (<linux/bpf.h>, ...) instead, and get the same
 * things from here. Nothing in this file needs a kernel type.
 */
#ifndef __VMLINUX_H__
#ifndef _LINUX_TYPES_H
#include <linux/types.h>
#endif
#include <stdbool.h>
#endif
#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

/* --- Network addresses ------------------------------------------------- */

/* An IPv4 or IPv6 address in network byte order; `version` says which. */
union gadget_ip_addr_t {
	__u8 v6[16];
	unsigned __int128 v6_raw;
	__u32 v4;
};

/* An L3 endpoint. Shown as an IP address. */
struct gadget_l3endpoint_t {
	union gadget_ip_addr_t addr_raw;
	__u8 version; /* 4 or 6 */
};

/* An L4 endpoint. Shown as address:port. */
struct gadget_l4endpoint_t {
	union gadget_ip_addr_t addr_raw;
	__u16 port;	 /* host byte order */
	__u16 proto_raw; /* IP protocol number (IPPROTO_*) */
	__u8 version;	 /* 4 or 6 */
};

/* --- Scalar types with a meaning ---------------------------------------- */

/* Inode number of a mount namespace; the key used to find the container. */
typedef __u64 gadget_mntns_id;

/*
 * Inode number of a network namespace. 32 bits wide because the kernel's
 * ns_common.inum is an unsigned int; upstream uses the same width.
 */
typedef __u32 gadget_netns_id;

/*
 * Nanoseconds since boot, including suspend: the value of
 * bpf_ktime_get_boot_ns(). ig converts it to a wall-clock time.
 */
typedef __u64 gadget_timestamp;

/* A signal number; a field with the signal name is added. */
typedef __u32 gadget_signal;

/* A positive errno value (0 = success); a field with its name is added. */
typedef __u32 gadget_errno;

/* User and group ids; fields with the host's user and group names are added. */
typedef __u32 gadget_uid;
typedef __u32 gadget_gid;

/*
 * Process ids in user-space terms: `pid` is the thread group id (the
 * kernel's tgid) and `tid` is the thread id (the kernel's pid).
 */
typedef __u32 gadget_pid;
typedef __u32 gadget_ppid;
typedef __u32 gadget_tid;
typedef __u32 gadget_ptid;

/* A syscall number; a field with the syscall name is added. */
typedef __u64 gadget_syscall;

/* open(2) mode bits and flags; rendered symbolically. */
typedef __u32 gadget_file_mode;
typedef __u32 gadget_file_flags;

/* A stack id from bpf_get_stackid() on the kernel_stack_map.h map. */
typedef __u32 gadget_kernel_stack;

/* Process names (comm) of the task and of its parent. Use as char arrays. */
typedef char gadget_comm;
typedef char gadget_pcomm;

/* A byte count and a duration in nanoseconds; rendered human-readably. */
typedef __u64 gadget_bytes;
typedef __u64 gadget_duration;

/*
 * Metric kinds for map iterators: counters only grow, gauges go up and
 * down, histogram slots hold one bucket of a log2 histogram.
 */
typedef __u32 gadget_counter__u32;
typedef __u64 gadget_counter__u64;
typedef __u32 gadget_gauge__u32;
typedef __u64 gadget_gauge__u64;
typedef __u32 gadget_histogram_slot__u32;
typedef __u64 gadget_histogram_slot__u64;

/* --- Process description ------------------------------------------------ */

struct gadget_creds {
	gadget_uid uid;
	gadget_gid gid;
};

struct gadget_parent {
	gadget_pcomm comm[TASK_COMM_LEN];
	gadget_ppid pid;
	gadget_ptid tid;
};

/*
 * Who caused an event. Fill it with gadget_process_populate() (common.h).
 * The struct itself is hidden in the output; its members are shown under
 * short aliases (comm, pid, tid, uid, gid, pcomm, ppid, ...).
 */
struct gadget_process {
	gadget_comm comm[TASK_COMM_LEN];
	gadget_pid pid;
	gadget_tid tid;
	gadget_mntns_id mntns_id;

	struct gadget_creds creds;
	struct gadget_parent parent;
};

/*
 * A user-space stack, resolved to symbols in user space. Filled by
 * gadget_get_user_stack() and its variants (user_stack_map.h); all zero
 * means "no stack". The layout is upstream's, member for member: an event
 * struct that embeds it must have the same size and offsets under both
 * builds (tests/fixtures/compat_ustack pins them).
 */
struct gadget_user_stack {
	/* The executable: device (major, minor as user space's stat() shows
	 * them), inode and modification time, to find the file again and to
	 * notice it was replaced. */
	__u32 major;
	__u32 minor;
	__u64 inode;
	__u64 mtime_sec;
	__u32 mtime_nsec;

	/* FNV-1a (32 bits) of the address space's identity: the mm pointer,
	 * start_code and start_stack. Changes at every execve and differs
	 * between processes (ASLR), so cached mappings can be keyed by it. */
	__u32 base_addr_hash;

	/* Id in ig_ustack, from bpf_get_stackid(); negative on error. */
	__u32 stack_id;

	/* Thread group id, and the pid as seen from the first two pid
	 * namespace levels with their namespaces' inodes, so that user space
	 * can pick the one its /proc shows. Separate members, not arrays:
	 * upstream's loader does not take arrays here. */
	__u32 tgid_level0;
	__u32 pid_level0;
	__u32 pidns_level0;
	__u32 pid_level1;
	__u32 pidns_level1;

	/* OpenTelemetry correlation id, when collect_otel_stack is set. */
	__u64 otel_correlation_id;

	/* bpf_ktime_get_boot_ns() when the stack was taken (kept apart from
	 * the event's own timestamp, which formatters may rewrite). */
	__u64 boot_timestamp;
};

/* --- Sockets, as the socket enricher records them ------------------------ */

/* Longest cwd/exepath a socket value holds. */
#define GADGET_SE_PATH_MAX 4096

/*
 * Who owns a socket: the value of the gadget_sockets map (sockets-map.h),
 * written by ig's socket enricher and read by networking gadgets to
 * attribute packets to processes.
 *
 * The members up to ipv6only always exist; optional_fields_start marks the
 * start of those the enricher may leave out or shorten (cwd, exepath, as
 * `ig run --socket-enricher-fields` says). As upstream's, the struct is
 * declared with preserve_access_index: every member access is a CO-RE
 * relocation, which ig resolves against the BTF of the layout its
 * enricher was configured with. So a gadget must test an optional field
 * with bpf_core_field_exists() and size it with bpf_core_field_size()
 * before reading it; sizeof(struct gadget_socket_value) is not the map's
 * value size.
 */
struct gadget_socket_value {
	__u64 mntns;
	__u64 pid_tgid;
	__u64 uid_gid;
	char task[TASK_COMM_LEN];
	char ptask[TASK_COMM_LEN];
	__u64 sock;
	__u64 deletion_timestamp;
	__u32 ppid;
	__u32 ptid;
	char ipv6only;

	char optional_fields_start[0] __attribute__((aligned(8)));

	char cwd[GADGET_SE_PATH_MAX];
	char exepath[GADGET_SE_PATH_MAX];
} __attribute__((preserve_access_index));

#endif /* __GADGET_TYPES_H */
