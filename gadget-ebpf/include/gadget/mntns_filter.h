/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/mntns_filter.h - container filtering by mount namespace.
 *
 * When the user selects containers, ig sets gadget_filter_by_mntns to true
 * and puts the mount namespace ids of the selected containers into
 * gadget_mntns_filter_map (replacing the map below with its own, kept up to
 * date as containers come and go). Both names are part of the loader ABI and
 * must not change.
 *
 * The flag lives in .rodata: when no container filter is requested the
 * verifier sees `false` and removes the map lookup from the program, so an
 * unfiltered gadget pays nothing for it.
 */

#ifndef __GADGET_MNTNS_FILTER_H
#define __GADGET_MNTNS_FILTER_H

/* Kernel-type free, so that networking gadgets (UAPI headers, no
 * vmlinux.h) can include it. bpf_tracing.h as upstream's does: some
 * gadgets get BPF_KPROBE() through this file. */
#include <gadget/types.h>

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

const volatile bool gadget_filter_by_mntns = false;

/* Set of allowed mount namespace ids; the value is not used. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, gadget_mntns_id);
	__type(value, __u32);
} gadget_mntns_filter_map SEC(".maps");

/* gadget_should_discard_mntns_id returns true when container filtering is on
 * and mntns_id is not one of the selected containers. */
static __always_inline bool
gadget_should_discard_mntns_id(gadget_mntns_id mntns_id)
{
	if (!gadget_filter_by_mntns)
		return false;
	return bpf_map_lookup_elem(&gadget_mntns_filter_map, &mntns_id) == NULL;
}

#endif /* __GADGET_MNTNS_FILTER_H */
