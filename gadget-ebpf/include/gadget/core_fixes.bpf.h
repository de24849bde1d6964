/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/core_fixes.bpf.h - reading kernel data whose shape changed between
 * kernel versions, with one source for all of them.
 *
 * CO-RE relocates a field access to wherever the running kernel keeps the
 * field, but it cannot follow a field that was renamed, retyped or moved to
 * another struct. For those, this file declares "flavors": structs named
 * <kernel struct>___<suffix> holding only the old or the new member. libbpf
 * and aya match a flavor to the kernel struct named before the triple
 * underscore, and bpf_core_field_exists()/bpf_core_type_exists() on a
 * flavor tell which shape the running kernel has. The branch not taken is
 * removed when the program is loaded, so it may refer to members the
 * kernel lacks.
 *
 * The flavor names and the functions are upstream's: gadgets refer to both.
 * Tracing gadgets only: include <vmlinux.h> first.
 */

#ifndef __GADGET_CORE_FIXES_BPF_H
#define __GADGET_CORE_FIXES_BPF_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

/*
 * bpf_core_unreachable() marks a branch that must never survive loading:
 * a call to helper number 0xbad2310, the number libbpf and cilium/ebpf
 * (upstream's loader) write over an instruction whose CO-RE relocation
 * failed. If the branch is still there after dead-code removal, the
 * verifier refuses the program with "invalid func unknown#195896080",
 * the same message as for an unguarded failed relocation.
 */
static void (*bpf_core_unreachable)(void) = (void *)0xbad2310;

/* --- task_struct: state became __state (5.14) ------------------------- */

struct task_struct___o {
	volatile long int state;
} __attribute__((preserve_access_index));

struct task_struct___x {
	unsigned int __state;
} __attribute__((preserve_access_index));

/* The scheduler state of task (TASK_RUNNING is 0). */
static __always_inline __s64 get_task_state(void *task)
{
	struct task_struct___x *now = task;
	struct task_struct___o *before = task;

	if (bpf_core_field_exists(now->__state))
		return BPF_CORE_READ(now, __state);
	return BPF_CORE_READ(before, state);
}

/* --- bio: its disk moved behind bi_bdev (5.12) ------------------------ */

struct bio___o {
	struct gendisk *bi_disk;
} __attribute__((preserve_access_index));

struct bio___x {
	struct block_device *bi_bdev;
} __attribute__((preserve_access_index));

/* The disk a bio is for. */
static __always_inline struct gendisk *get_gendisk(void *bio)
{
	struct bio___x *now = bio;
	struct bio___o *before = bio;

	if (bpf_core_field_exists(now->bi_bdev))
		return BPF_CORE_READ(now, bi_bdev, bd_disk);
	return BPF_CORE_READ(before, bi_disk);
}

/* --- block_rq_complete's record became block_rq_completion (6.8) ------ */

struct trace_event_raw_block_rq_complete___x {
	dev_t dev;
	sector_t sector;
	unsigned int nr_sector;
} __attribute__((preserve_access_index));

struct trace_event_raw_block_rq_completion___x {
	dev_t dev;
	sector_t sector;
	unsigned int nr_sector;
} __attribute__((preserve_access_index));

/* True when the kernel names the record of block_rq_complete (shared with
 * block_rq_error) trace_event_raw_block_rq_completion. */
static __always_inline bool has_block_rq_completion(void)
{
	return bpf_core_type_exists(
		struct trace_event_raw_block_rq_completion___x);
}

/* --- request: rq_disk removed, the disk is the queue's (5.17/5.18) ---- */

struct request_queue___x {
	struct gendisk *disk;
} __attribute__((preserve_access_index));

struct request___x {
	struct request_queue___x *q;
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

/* The disk a block request is for. */
static __always_inline struct gendisk *get_disk(void *request)
{
	struct request___x *rq = request;

	if (bpf_core_field_exists(rq->rq_disk))
		return BPF_CORE_READ(rq, rq_disk);
	return BPF_CORE_READ(rq, q, disk);
}

/* --- idmapped mounts added a user namespace argument to vfs_*() (5.12) */

struct renamedata___x {
	struct user_namespace *old_mnt_userns;
} __attribute__((preserve_access_index));

/* True on kernels where vfs_create(), vfs_unlink()... take the mount's
 * user namespace first, so the dentry is one argument further right. */
static __always_inline bool renamedata_has_old_mnt_userns_field(void)
{
	return bpf_core_field_exists(struct renamedata___x, old_mnt_userns);
}

/* --- kmem_free's record split into kfree and kmem_cache_free (5.19) --- */

struct trace_event_raw_kmem_free___x {
	const void *ptr;
} __attribute__((preserve_access_index));

struct trace_event_raw_kfree___x {
	const void *ptr;
} __attribute__((preserve_access_index));

struct trace_event_raw_kmem_cache_free___x {
	const void *ptr;
} __attribute__((preserve_access_index));

static __always_inline bool has_kfree(void)
{
	return bpf_core_type_exists(struct trace_event_raw_kfree___x);
}

static __always_inline bool has_kmem_cache_free(void)
{
	return bpf_core_type_exists(struct trace_event_raw_kmem_cache_free___x);
}

/* --- tcp_retransmit_skb got a record of its own (with an err member) ---
 * in some kernels (first in distribution kernels, before mainline). */

struct trace_event_raw_tcp_retransmit_skb___x {
	struct trace_entry ent;
	const void *skbaddr;
	const void *skaddr;
} __attribute__((preserve_access_index));

/* The shared record, as a flavor too: kernels with the record of its own
 * may not have this one at all (ours). */
struct trace_event_raw_tcp_event_sk_skb___gadget {
	const void *skbaddr;
	const void *skaddr;
} __attribute__((preserve_access_index));

/* skbaddr of a tcp/tcp_retransmit_skb tracepoint context, either shape. */
static __always_inline const struct sk_buff *
gadget_get_tcp_retransmit_skb_skbaddr(void *ctx)
{
	struct trace_event_raw_tcp_retransmit_skb___x *own = ctx;
	struct trace_event_raw_tcp_event_sk_skb___gadget *shared = ctx;

	if (bpf_core_type_exists(struct trace_event_raw_tcp_retransmit_skb___x))
		return BPF_CORE_READ(own, skbaddr);
	return BPF_CORE_READ(shared, skbaddr);
}

/* skaddr of a tcp/tcp_retransmit_skb tracepoint context, either shape. */
static __always_inline const struct sock *
gadget_get_tcp_retransmit_skb_skaddr(void *ctx)
{
	struct trace_event_raw_tcp_retransmit_skb___x *own = ctx;
	struct trace_event_raw_tcp_event_sk_skb___gadget *shared = ctx;

	if (bpf_core_type_exists(struct trace_event_raw_tcp_retransmit_skb___x))
		return BPF_CORE_READ(own, skaddr);
	return BPF_CORE_READ(shared, skaddr);
}

/* --- inode change time: i_ctime (until 6.5), __i_ctime (6.6 to 6.10),
 * i_ctime_sec + i_ctime_nsec (6.11 on) ------------------------------- */

struct inode___older_v66 {
	struct timespec64 i_ctime;
};

struct inode___older_v611 {
	struct timespec64 __i_ctime;
};

/* Since 6.13 (multigrain timestamps) the kernel keeps a flag in the top bit
 * of i_ctime_nsec; stat() never shows it. A valid nanosecond count is below
 * 10^9, so clearing the bit changes nothing on older kernels. */
#define I_CTIME_QUERIED (1U << 31)

/* The inode's change time in nanoseconds since the epoch, as stat() shows
 * it (0 for a time before 1970). */
static __always_inline __u64
gadget_get_ctime_nanosec_from_inode(struct inode *inode)
{
	struct inode___older_v611 *v66 = (void *)inode;
	struct inode___older_v66 *v65 = (void *)inode;
	__s64 sec;
	__u32 nsec;

	if (bpf_core_field_exists(inode->i_ctime_sec) &&
	    bpf_core_field_exists(inode->i_ctime_nsec)) {
		sec = BPF_CORE_READ(inode, i_ctime_sec);
		nsec = BPF_CORE_READ(inode, i_ctime_nsec);
	} else if (bpf_core_field_exists(v66->__i_ctime)) {
		sec = BPF_CORE_READ(v66, __i_ctime.tv_sec);
		nsec = BPF_CORE_READ(v66, __i_ctime.tv_nsec);
	} else {
		sec = BPF_CORE_READ(v65, i_ctime.tv_sec);
		nsec = BPF_CORE_READ(v65, i_ctime.tv_nsec);
	}
	if (sec < 0)
		return 0;
	return (__u64)sec * 1000000000ULL + (nsec & ~I_CTIME_QUERIED);
}

/* --- system call number and arguments from the user registers ---------
 *
 * At a system call's entry (raw tracepoint sys_enter: ctx->args[0]) the
 * task's saved user registers hold the call's number and arguments. Which
 * register holds what is fixed by the architecture's system call
 * convention, not by the kernel version, so these read named registers:
 * CO-RE cannot bridge two architectures' struct pt_regs (the object is
 * built for one). Other architectures get -1 and 0.
 *
 *            number    arg1     arg2..arg6
 *   x86-64   orig_ax   di       si dx r10 r8 r9
 *   arm64    syscallno orig_x0  x1..x5
 */

/* The number of the system call the task is in, or -1. */
static __always_inline long gadget_get_syscall_nr(struct pt_regs *regs)
{
#if defined(__TARGET_ARCH_x86)
	return BPF_CORE_READ(regs, orig_ax);
#elif defined(__TARGET_ARCH_arm64)
	return BPF_CORE_READ(regs, syscallno);
#else
	return -1;
#endif
}

/* Argument n (1 to 6) of the system call the task is in; 0 for another n. */
static __always_inline unsigned long
gadget_get_syscall_arg(struct pt_regs *regs, unsigned int n)
{
#if defined(__TARGET_ARCH_x86)
	switch (n) {
	case 1:
		return BPF_CORE_READ(regs, di);
	case 2:
		return BPF_CORE_READ(regs, si);
	case 3:
		return BPF_CORE_READ(regs, dx);
	case 4:
		return BPF_CORE_READ(regs, r10);
	case 5:
		return BPF_CORE_READ(regs, r8);
	case 6:
		return BPF_CORE_READ(regs, r9);
	}
#elif defined(__TARGET_ARCH_arm64)
	switch (n) {
	case 1:
		return BPF_CORE_READ(regs, orig_x0);
	case 2:
		return BPF_CORE_READ(regs, regs[1]);
	case 3:
		return BPF_CORE_READ(regs, regs[2]);
	case 4:
		return BPF_CORE_READ(regs, regs[3]);
	case 5:
		return BPF_CORE_READ(regs, regs[4]);
	case 6:
		return BPF_CORE_READ(regs, regs[5]);
	}
#endif
	return 0;
}

#endif /* __GADGET_CORE_FIXES_BPF_H */
