/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/mntns.h - the mount namespace id of the current task.
 *
 * ig identifies containers by the inode number of their mount namespace, so
 * this id is what container filtering and container enrichment key on.
 * Reads go through CO-RE so the program works with any kernel layout of
 * task_struct, nsproxy and mnt_namespace.
 */

#ifndef __GADGET_MNTNS_H
#define __GADGET_MNTNS_H

/* struct task_struct comes from <vmlinux.h>, which the gadget includes
 * first (only tracing gadgets use this file: filter.h leaves it out for
 * GADGET_TYPE_NETWORKING). */
#include <gadget/types.h>

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* gadget_get_current_mntns_id returns the mount namespace id of the task
 * that is running the program (0 if the task has no nsproxy any more, e.g.
 * late in exit). */
static __always_inline gadget_mntns_id gadget_get_current_mntns_id(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
}

/* Older name of gadget_get_current_mntns_id(), kept for existing gadgets. */
static __always_inline gadget_mntns_id gadget_get_mntns_id(void)
	__attribute__((deprecated("use gadget_get_current_mntns_id()")));

static __always_inline gadget_mntns_id gadget_get_mntns_id(void)
{
	return gadget_get_current_mntns_id();
}

#endif /* __GADGET_MNTNS_H */
