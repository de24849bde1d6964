/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/user_stack_map.h - user-space stack traces, stored once, referred
 * to by a struct gadget_user_stack (types.h).
 *
 * bpf_get_stackid(..., BPF_F_USER_STACK) walks the user stack of the
 * current task (by frame pointers: code built without them gives short
 * stacks), stores the return addresses in the ig_ustack map and returns
 * the slot's id. The addresses only mean something together with the
 * process's memory mappings, so gadget_get_user_stack() records, next to
 * the id, what ig needs to find them: the process's pid as seen from the
 * first two pid namespace levels (ig picks the one its /proc shows) and
 * the executable's inode and modification time (to notice an executable
 * replaced since). ig reads /proc/<pid>/maps and the ELF symbols of the
 * mapped files to name the functions; this must happen while the process
 * still runs.
 *
 * Names that are loader ABI (upstream's): the map ig_ustack and the
 * parameter collect_ustack (off by default), which gadget_get_user_stack()
 * obeys. A gadget that decides by itself when to collect (profile_cpu)
 * defines GADGET_NO_COLLECT_USTACK_PARAM before including this file: the
 * parameter and gadget_get_user_stack() are then left out, and it calls
 * gadget_fill_user_stack().
 */

#ifndef __GADGET_USER_STACK_MAP_H
#define __GADGET_USER_STACK_MAP_H

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include <gadget/macros.h>
#include <gadget/types.h>

#define USER_MAX_STACK_DEPTH 127
#define USER_STACK_MAP_MAX_ENTRIES 10000

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, USER_MAX_STACK_DEPTH * sizeof(__u64));
	__uint(max_entries, USER_STACK_MAP_MAX_ENTRIES);
} ig_ustack SEC(".maps");

/*
 * Layouts of the inode's modification time in older kernels, for CO-RE:
 * a struct timespec64 i_mtime until 6.6, renamed __i_mtime in 6.7 to 6.10;
 * since 6.11 two fields, i_mtime_sec and i_mtime_nsec (vmlinux.h's).
 */
struct inode___mtime_ts64 {
	struct timespec64 i_mtime;
};

struct inode___mtime_ts64_hidden {
	struct timespec64 __i_mtime;
};

static __always_inline void __gadget_inode_mtime(struct inode *inode,
						 struct gadget_user_stack *us)
{
	if (bpf_core_field_exists(inode->i_mtime_sec)) {
		us->mtime_sec = BPF_CORE_READ(inode, i_mtime_sec);
		us->mtime_nsec = BPF_CORE_READ(inode, i_mtime_nsec);
	} else if (bpf_core_field_exists(
			   ((struct inode___mtime_ts64_hidden *)inode)
				   ->__i_mtime)) {
		struct inode___mtime_ts64_hidden *i = (void *)inode;

		us->mtime_sec = BPF_CORE_READ(i, __i_mtime.tv_sec);
		us->mtime_nsec = BPF_CORE_READ(i, __i_mtime.tv_nsec);
	} else {
		struct inode___mtime_ts64 *i = (void *)inode;

		us->mtime_sec = BPF_CORE_READ(i, i_mtime.tv_sec);
		us->mtime_nsec = BPF_CORE_READ(i, i_mtime.tv_nsec);
	}
}

/*
 * Entry n of pid->numbers[] (one struct upid per pid namespace level): the
 * pid number and its namespace's inode. numbers[] is a flexible array,
 * which some loaders (aya) refuse to index in a CO-RE access; so only the
 * array's offset is relocated, and the entry is read from there.
 */
static __always_inline void __gadget_read_upid(struct pid *pid, int n,
					       __u32 *nr, __u32 *ns_inum)
{
	struct upid *up = (void *)pid +
			  bpf_core_field_offset(struct pid, numbers) +
			  n * bpf_core_type_size(struct upid);

	*nr = BPF_CORE_READ(up, nr);
	*ns_inum = BPF_CORE_READ(up, ns, ns.inum);
}

/*
 * gadget_fill_user_stack(ctx, us) stores the current task's user stack and
 * fills us, whatever collect_ustack says. On failure (a kernel thread, no
 * frame to walk, map full) us->exe_inode is 0, meaning "no stack", and
 * us->stack_id holds the negative error. ctx is the program's context.
 */
static __always_inline void gadget_fill_user_stack(void *ctx,
						   struct gadget_user_stack *us)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	long id;

	id = bpf_get_stackid(ctx, &ig_ustack, BPF_F_USER_STACK);
	us->stack_id = id;

	__gadget_read_upid(pid, 0, &us->pid_level0, &us->pidns_level0);
	if (level >= 1) {
		__gadget_read_upid(pid, 1, &us->pid_level1, &us->pidns_level1);
	} else {
		us->pid_level1 = 0;
		us->pidns_level1 = 0;
	}

	if (id < 0 || !inode) {
		us->exe_inode = 0;
		us->mtime_sec = 0;
		us->mtime_nsec = 0;
		return;
	}
	us->exe_inode = BPF_CORE_READ(inode, i_ino);
	__gadget_inode_mtime(inode, us);
}

#ifndef GADGET_NO_COLLECT_USTACK_PARAM

/* Collect user stacks (--collect-ustack). Off: the stack is left empty. */
const volatile bool collect_ustack = false;
GADGET_PARAM(collect_ustack);

/*
 * gadget_get_user_stack(ctx, us) is gadget_fill_user_stack() when the
 * collect_ustack parameter is set; otherwise it marks us as empty.
 */
static __always_inline void gadget_get_user_stack(void *ctx,
						  struct gadget_user_stack *us)
{
	if (!collect_ustack) {
		__builtin_memset(us, 0, sizeof(*us));
		return;
	}
	gadget_fill_user_stack(ctx, us);
}

#endif /* !GADGET_NO_COLLECT_USTACK_PARAM */

#endif /* __GADGET_USER_STACK_MAP_H */
