/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/maps.bpf.h - map helpers shared by counting gadgets.
 */

#ifndef __GADGET_MAPS_BPF_H
#define __GADGET_MAPS_BPF_H

#include <bpf/bpf_helpers.h>

/* vmlinux.h carries no errno macros; the UAPI value, so that this file
 * needs no system kernel headers. */
#ifndef EEXIST
#define EEXIST 17
#endif

/*
 * bpf_map_lookup_or_try_init(map, key, init) returns the value of key in a
 * hash map, inserting *init first when the key is absent. Two CPUs may
 * insert the same key at once: the loser's BPF_NOEXIST update fails with
 * -EEXIST and it takes the winner's value. Returns NULL only when the
 * value could not be created (map full).
 */
static __always_inline void *bpf_map_lookup_or_try_init(void *map,
							const void *key,
							const void *init)
{
	void *value = bpf_map_lookup_elem(map, key);
	long err;

	if (value)
		return value;
	err = bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	if (err && err != -EEXIST)
		return NULL;
	return bpf_map_lookup_elem(map, key);
}

#endif /* __GADGET_MAPS_BPF_H */
