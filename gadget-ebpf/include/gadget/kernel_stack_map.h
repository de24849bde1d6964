/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/kernel_stack_map.h - kernel stack traces, stored once, referred to
 * by id.
 *
 * bpf_get_stackid() walks the kernel stack, stores the return addresses in
 * a stack trace map and returns the slot's id; identical stacks share one
 * slot. An event then only carries the id, in a field of type
 * gadget_kernel_stack (types.h), and ig reads the addresses from the map
 * and turns them into function names with /proc/kallsyms.
 *
 * The map's name, ig_kstack, is loader ABI (upstream's name): ig finds the
 * map by it. Change it together with the loader.
 */

#ifndef __GADGET_KERNEL_STACK_MAP_H
#define __GADGET_KERNEL_STACK_MAP_H

/* No kernel types needed: usable with vmlinux.h or the UAPI headers. */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

/* Deepest stack kept (the kernel's own limit, PERF_MAX_STACK_DEPTH, is
 * 127), and number of distinct stacks the map holds. */
#define GADGET_KERNEL_MAX_STACK_DEPTH 127
#define GADGET_KERNEL_STACK_MAP_MAX_ENTRIES 10000

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, GADGET_KERNEL_MAX_STACK_DEPTH * sizeof(__u64));
	__uint(max_entries, GADGET_KERNEL_STACK_MAP_MAX_ENTRIES);
} ig_kstack SEC(".maps");

/*
 * gadget_get_kernel_stack(ctx) stores the kernel stack of the running
 * program's context and returns its id (>= 0), or a negative error: -EFAULT
 * when there is no kernel stack to walk, -EEXIST when another stack already
 * has the slot this one hashes to (the stack is then lost, rather than
 * attributed to the wrong one), -ENOMEM... ctx is the program's context.
 */
static __always_inline long gadget_get_kernel_stack(void *ctx)
{
	return bpf_get_stackid(ctx, &ig_kstack, 0);
}

#endif /* __GADGET_KERNEL_STACK_MAP_H */
