/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/filter.h - the common process filters (--pid, --tid, --uid, --gid,
 * --comm) plus the container filter, evaluated in the kernel.
 *
 * Including this header adds five parameters to the gadget. ig recognises
 * them by (typedef, name) and shows them as `pid`, `tid`, `uid`, `gid` and
 * `comm`, so the names and typedefs below are loader ABI. An unset filter
 * has the value given here: 0 for pid/tid, (u32)-1 for uid/gid (0 is root,
 * a valid uid), an empty string for comm.
 *
 * All filter values live in .rodata. The verifier therefore knows them and
 * drops every test for a filter that is not set: a gadget run without
 * filters pays nothing, and each set filter costs one comparison.
 *
 * Terminology is user space's: `pid` is the thread group id (the kernel's
 * tgid), `tid` the thread id (the kernel's pid).
 */

#ifndef __GADGET_FILTER_H
#define __GADGET_FILTER_H

/* No <vmlinux.h>: networking gadgets include this file on top of the
 * UAPI headers. */
#include <bpf/bpf_helpers.h>

#include <gadget/macros.h>
#include <gadget/types.h>
#include <gadget/mntns_filter.h>
#ifndef GADGET_TYPE_NETWORKING
/* Networking programs (socket filters, TC) must not look at the current
 * task: it is unrelated to the packet. They filter through other means. */
#include <gadget/mntns.h>
#endif

/* "Not set" for uid and gid filters. */
#define GADGET_INVALID_ID ((__u32)-1)

const volatile gadget_pid targ_pid = 0;
GADGET_PARAM(targ_pid)

const volatile gadget_tid targ_tid = 0;
GADGET_PARAM(targ_tid)

const volatile gadget_uid targ_uid = GADGET_INVALID_ID;
GADGET_PARAM(targ_uid)

const volatile gadget_gid targ_gid = GADGET_INVALID_ID;
GADGET_PARAM(targ_gid)

const volatile gadget_comm targ_comm[TASK_COMM_LEN] = {};
GADGET_PARAM(targ_comm)

static __always_inline bool gadget_should_discard_pid(gadget_pid pid)
{
	return targ_pid != 0 && targ_pid != pid;
}

static __always_inline bool gadget_should_discard_tid(gadget_tid tid)
{
	return targ_tid != 0 && targ_tid != tid;
}

static __always_inline bool gadget_should_discard_uid(gadget_uid uid)
{
	return targ_uid != GADGET_INVALID_ID && targ_uid != uid;
}

static __always_inline bool gadget_should_discard_gid(gadget_gid gid)
{
	return targ_gid != GADGET_INVALID_ID && targ_gid != gid;
}

/* Exact match on the whole TASK_COMM_LEN buffer (names are NUL-padded). */
static __always_inline bool
gadget_should_discard_comm(const gadget_comm comm[TASK_COMM_LEN])
{
	if (targ_comm[0] == '\0')
		return false;

	for (int i = 0; i < TASK_COMM_LEN; i++) {
		if (comm[i] != targ_comm[i])
			return true;
		if (comm[i] == '\0')
			break;
	}
	return false;
}

/*
 * gadget_should_discard_data returns true when an event with these
 * attributes must be dropped, according to the container filter and the
 * pid/tid/uid/gid/comm filters. Use it when the attributes are already at
 * hand (e.g. a filled struct gadget_process, or data saved earlier).
 */
static __always_inline bool gadget_should_discard_data(
	gadget_mntns_id mntns_id, gadget_pid pid, gadget_tid tid,
	const gadget_comm comm[TASK_COMM_LEN], gadget_uid uid, gadget_gid gid)
{
	return gadget_should_discard_mntns_id(mntns_id) ||
	       gadget_should_discard_pid(pid) ||
	       gadget_should_discard_tid(tid) ||
	       gadget_should_discard_uid(uid) ||
	       gadget_should_discard_gid(gid) ||
	       gadget_should_discard_comm(comm);
}

#ifndef GADGET_TYPE_NETWORKING
/*
 * gadget_should_discard_data_current is gadget_should_discard_data() for
 * the task running the program. It fetches each attribute only when its
 * filter is set, so call it first thing in a hot path: with no filters it
 * compiles (after verification) to nothing.
 */
static __always_inline bool gadget_should_discard_data_current(void)
{
	if (gadget_filter_by_mntns &&
	    gadget_should_discard_mntns_id(gadget_get_current_mntns_id()))
		return true;

	if (targ_pid != 0 || targ_tid != 0) {
		__u64 pid_tgid = bpf_get_current_pid_tgid();

		if (gadget_should_discard_pid(pid_tgid >> 32) ||
		    gadget_should_discard_tid((__u32)pid_tgid))
			return true;
	}

	if (targ_uid != GADGET_INVALID_ID || targ_gid != GADGET_INVALID_ID) {
		__u64 uid_gid = bpf_get_current_uid_gid();

		if (gadget_should_discard_uid((__u32)uid_gid) ||
		    gadget_should_discard_gid(uid_gid >> 32))
			return true;
	}

	if (targ_comm[0] != '\0') {
		char comm[TASK_COMM_LEN];

		bpf_get_current_comm(comm, sizeof(comm));
		if (gadget_should_discard_comm(comm))
			return true;
	}

	return false;
}
#endif /* !GADGET_TYPE_NETWORKING */

/*
 * gadget_should_discard_data_by_skb is gadget_should_discard_data() for a
 * packet whose socket owner was found in the socket enricher's map
 * (gadget_socket_lookup(), sockets-map.h). A packet whose owner is unknown
 * (NULL) is dropped as soon as any filter is set, since it cannot be shown
 * to match; with no filter set, it is kept.
 */
static __always_inline bool
gadget_should_discard_data_by_skb(struct gadget_socket_value *owner)
{
	if (!owner)
		return gadget_filter_by_mntns || targ_pid != 0 ||
		       targ_tid != 0 || targ_uid != GADGET_INVALID_ID ||
		       targ_gid != GADGET_INVALID_ID || targ_comm[0] != '\0';

	return gadget_should_discard_data(
		owner->mntns, owner->pid_tgid >> 32, (__u32)owner->pid_tgid,
		owner->task, (__u32)owner->uid_gid, owner->uid_gid >> 32);
}

#endif /* __GADGET_FILTER_H */
