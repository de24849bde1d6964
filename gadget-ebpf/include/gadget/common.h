/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/common.h - fill a struct gadget_process from a task.
 *
 * Almost every tracer reports who caused the event. Filling the shared
 * struct gadget_process (types.h) the same way everywhere gives all gadgets
 * the same columns and lets ig enrich them uniformly (container from
 * mntns_id, user names from uid/gid).
 *
 * This is the one author header that includes <vmlinux.h> (as upstream's):
 * the others need no kernel type, so that networking gadgets can use them
 * on top of the UAPI headers, which clash with vmlinux.h.
 */

#ifndef __GADGET_COMMON_H
#define __GADGET_COMMON_H

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include <gadget/types.h>
#include <gadget/mntns.h>

/*
 * Parent fields of p, from the task's real parent (the process that forked
 * it, not a ptracer). Zeroed when there is no parent, because p often lives
 * in ring buffer memory, which is not cleared between events.
 */
static __always_inline void __gadget_parent_populate(struct gadget_process *p,
						     struct task_struct *task)
{
	struct task_struct *parent = BPF_CORE_READ(task, real_parent);

	if (!parent) {
		__builtin_memset(&p->parent, 0, sizeof(p->parent));
		return;
	}
	/* The whole array, not up to the NUL: task comms are zero-padded, so
	 * the event gets no stale bytes after the name. */
	BPF_CORE_READ_INTO(&p->parent.comm, parent, comm);
	p->parent.pid = BPF_CORE_READ(parent, tgid);
	p->parent.tid = BPF_CORE_READ(parent, pid);
}

/*
 * gadget_process_populate fills p from the task running the program:
 * command name, pid (tgid) and tid, mount namespace, real uid/gid, and the
 * parent's command name, pid and tid.
 *
 * This runs for nearly every event, so it avoids bpf_probe_read_kernel()
 * where it can: on kernels that have bpf_get_current_task_btf() (5.11+) the
 * task fields are read with plain loads, which the verifier turns into
 * fault-tolerant loads (a NULL pointer on the way reads as 0). That is
 * several times cheaper than one helper call per field. Older kernels take
 * the CO-RE helper path; the choice is fixed when the program is loaded.
 */
static __always_inline void gadget_process_populate(struct gadget_process *p)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	bpf_get_current_comm(p->comm, sizeof(p->comm));
	p->pid = pid_tgid >> 32;
	p->tid = (__u32)pid_tgid;
	p->creds.uid = (__u32)uid_gid;
	p->creds.gid = uid_gid >> 32;

	if (bpf_core_enum_value_exists(enum bpf_func_id,
				       BPF_FUNC_get_current_task_btf)) {
		struct task_struct *task = bpf_get_current_task_btf();
		struct task_struct *parent = task->real_parent;

		p->mntns_id = task->nsproxy->mnt_ns->ns.inum;
		__builtin_memcpy(p->parent.comm, parent->comm,
				 sizeof(p->parent.comm));
		p->parent.pid = parent->tgid;
		p->parent.tid = parent->pid;
	} else {
		struct task_struct *task =
			(struct task_struct *)bpf_get_current_task();

		p->mntns_id = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
		__gadget_parent_populate(p, task);
	}
}

/*
 * gadget_process_populate_from_task fills p from any task, e.g. one found by
 * an iterator or taken from a tracepoint argument. uid/gid come from
 * task->cred, the same credentials bpf_get_current_uid_gid() reports for the
 * current task.
 */
static __always_inline void
gadget_process_populate_from_task(struct task_struct *task,
				  struct gadget_process *p)
{
	BPF_CORE_READ_INTO(&p->comm, task, comm);
	p->pid = BPF_CORE_READ(task, tgid);
	p->tid = BPF_CORE_READ(task, pid);
	p->creds.uid = BPF_CORE_READ(task, cred, uid.val);
	p->creds.gid = BPF_CORE_READ(task, cred, gid.val);
	p->mntns_id = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	__gadget_parent_populate(p, task);
}

#endif /* __GADGET_COMMON_H */
