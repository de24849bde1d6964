/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/user_stack_map.h - user-space stack traces, stored once, referred
 * to by a struct gadget_user_stack (types.h) in the event.
 *
 * bpf_get_stackid(..., BPF_F_USER_STACK) walks the user stack of the
 * current task (by frame pointers: code built without them gives short
 * stacks), stores the return addresses in the ig_ustack map and returns
 * the slot's id. The addresses only mean something together with the
 * process's memory mappings, so next to the id the struct records what
 * user space needs to find them: the executable (device, inode, mtime), a
 * hash of the address space's identity, the pids as seen from the first
 * two pid namespace levels and when the stack was taken. ig reads
 * /proc/<pid>/maps and the ELF symbols of the mapped files to name the
 * functions; this must happen while the process still runs.
 *
 * Which function to call depends on the program's type:
 *
 *	gadget_get_user_stack(ctx, us)   ctx a struct pt_regs * (kprobe,
 *	                                 uprobe...) or a struct
 *	                                 bpf_perf_event_data * (perf_event):
 *	                                 picks one of the two below
 *	gadget_get_user_stack_from_kprobe(ctx, us)
 *	gadget_get_user_stack_from_perf_event(ctx, us)
 *	gadget_get_user_stack_from_tracepoint(ctx, us)   tracepoints, raw_tp...
 *
 * All obey the parameter collect_ustack (off: *us is zeroed, meaning "no
 * stack"). The OpenTelemetry correlation id (collect_otel_stack) is taken
 * by a tail call into a program of the same type, which a tracepoint
 * cannot make: the tracepoint variant leaves a program that asks for it
 * unloadable (bpf_core_unreachable()), and costs nothing otherwise.
 *
 * Names that are loader ABI (upstream's): the maps ig_ustack, ig_build_id
 * (sized at load time from the parameter ig_build_id_max_entries: a map
 * `X` with a parameter `X_max_entries` gets that many entries),
 * otel_generic_params, otel_tc_kprobe, otel_tc_perf; the parameters
 * collect_ustack, collect_build_id, collect_otel_stack. The loader side:
 * src/bpf/contract.rs (sized_maps), src/bpf/params.rs (the parameters'
 * keys), src/operators/ebpf/stacks.rs (the struct's members).
 *
 * Our addition: a gadget that decides by itself when to collect (our
 * profile_cpu) defines GADGET_NO_COLLECT_USTACK_PARAM before including this
 * file; collect_ustack and the gadget_get_user_stack* functions are then
 * left out, and it calls gadget_fill_user_stack().
 *
 * Tracing gadgets only: include <vmlinux.h> first.
 */

#ifndef __GADGET_USER_STACK_MAP_H
#define __GADGET_USER_STACK_MAP_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include <gadget/types.h>
#include <gadget/macros.h>
#include <gadget/fnv1a.h>
#include <gadget/core_fixes.bpf.h>

#define GADGET_USER_MAX_STACK_DEPTH 127
#define GADGET_USER_STACK_MAP_MAX_ENTRIES 10000

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, GADGET_USER_MAX_STACK_DEPTH * sizeof(__u64));
	__uint(max_entries, GADGET_USER_STACK_MAP_MAX_ENTRIES);
} ig_ustack SEC(".maps");

/* Also record each stack's build ids (file identity plus offset per frame)
 * in ig_build_id, under the stack's id. */
const volatile bool collect_build_id = false;
GADGET_PARAM(collect_build_id);

/* Also take the OpenTelemetry profiler's correlation id. */
const volatile bool collect_otel_stack = false;
GADGET_PARAM(collect_otel_stack);

/* Stacks ig_build_id holds. */
const volatile int ig_build_id_max_entries = 1024;
GADGET_PARAM(ig_build_id_max_entries);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(key_size, sizeof(__u32));
	__uint(value_size,
	       GADGET_USER_MAX_STACK_DEPTH * sizeof(struct bpf_stack_build_id));
	__uint(max_entries, 0); /* ig_build_id_max_entries, at load time */
} ig_build_id SEC(".maps");

/* What a new ig_build_id entry starts as. */
static const struct bpf_stack_build_id
	ig_empty_build_id[GADGET_USER_MAX_STACK_DEPTH] = {};

/* Filled by the OpenTelemetry program during the tail call. */
struct generic_param {
	__u64 correlation_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct generic_param);
} otel_generic_params SEC(".maps");

/* The OpenTelemetry entry programs, one per calling program type (a tail
 * call needs caller and callee of the same type). Filled by the loader, so
 * declared without static contents: upstream writes __array(values, int())
 * too, which adds nothing to the map and which aya 0.14 cannot parse
 * ("unexpected BTF type id"). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} otel_tc_kprobe SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} otel_tc_perf SEC(".maps");

/*
 * The inode's modification time has had four shapes; each flavor below
 * names one, and the check is on name and size together since two shapes
 * share a name (i_mtime: struct timespec until 4.17, timespec64 until 6.6).
 *
 *   4.0 - 4.17    struct timespec i_mtime
 *   4.18 - 6.6    struct timespec64 i_mtime
 *   6.7 - 6.10    struct timespec64 __i_mtime
 *   6.11 -        time64_t i_mtime_sec; u32 i_mtime_nsec
 */
struct timespec___obsolete {
	__kernel_old_time_t tv_sec;
	long tv_nsec;
};

struct inode___with_timespec {
	struct timespec___obsolete i_mtime;
};

struct inode___with_timespec64 {
	struct timespec64 i_mtime;
};

struct inode___with_timespec64_underscore {
	struct timespec64 __i_mtime;
};

struct inode___with_two_fields {
	time64_t i_mtime_sec;
	__u32 i_mtime_nsec;
};

/* The modification time of inode, into *sec and *nsec (left alone on a
 * kernel of none of the known shapes). */
static __always_inline void gadget_inode_get_mtime(struct inode *inode,
						   __u64 *sec, __u32 *nsec)
{
	struct inode___with_two_fields *two = (void *)inode;
	struct inode___with_timespec64_underscore *hidden = (void *)inode;
	struct inode___with_timespec64 *ts64 = (void *)inode;
	struct inode___with_timespec *ts = (void *)inode;

	if (bpf_core_field_exists(two->i_mtime_sec) &&
	    bpf_core_field_size(two->i_mtime_sec) == sizeof(time64_t)) {
		*sec = BPF_CORE_READ(two, i_mtime_sec);
		*nsec = BPF_CORE_READ(two, i_mtime_nsec);
	} else if (bpf_core_field_exists(hidden->__i_mtime) &&
		   bpf_core_field_size(hidden->__i_mtime) ==
			   sizeof(struct timespec64)) {
		*sec = BPF_CORE_READ(hidden, __i_mtime.tv_sec);
		*nsec = BPF_CORE_READ(hidden, __i_mtime.tv_nsec);
	} else if (bpf_core_field_exists(ts64->i_mtime) &&
		   bpf_core_field_size(ts64->i_mtime) ==
			   sizeof(struct timespec64)) {
		*sec = BPF_CORE_READ(ts64, i_mtime.tv_sec);
		*nsec = BPF_CORE_READ(ts64, i_mtime.tv_nsec);
	} else if (bpf_core_field_exists(ts->i_mtime) &&
		   bpf_core_field_size(ts->i_mtime) ==
			   sizeof(struct timespec___obsolete)) {
		*sec = BPF_CORE_READ(ts, i_mtime.tv_sec);
		*nsec = BPF_CORE_READ(ts, i_mtime.tv_nsec);
	}
}

/* FNV-1a (32 bits) of the task's address space: mm pointer, start_code,
 * start_stack, each as 8 little-endian bytes. */
static __always_inline __u32 gadget_get_base_addr_hash(struct task_struct *task)
{
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	__u32 h = fnv_32a_init();

	fnv_32a_update_u64(&h, (__u64)mm);
	fnv_32a_update_u64(&h, BPF_CORE_READ(mm, start_code));
	fnv_32a_update_u64(&h, BPF_CORE_READ(mm, start_stack));
	return h;
}

/* Entry n of pid->numbers[] (one struct upid per pid namespace level): the
 * pid number and its namespace's inode. numbers[] is a flexible array,
 * which some loaders (aya) refuse to index in a CO-RE access; so only the
 * array's offset is relocated, and the entry is read from there. */
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
 * fills *us, whatever collect_ustack says (and the build ids when
 * collect_build_id is set); never the OpenTelemetry id. When the walk
 * fails (a kernel thread, no frame, map full) us->stack_id holds the
 * negative error. ctx is the program's context.
 */
static __always_inline void gadget_fill_user_stack(void *ctx,
						   struct gadget_user_stack *us)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	dev_t dev = BPF_CORE_READ(inode, i_sb, s_dev);

	/* Without BPF_F_FAST_STACK_CMP (upstream passes it): a stack whose
	 * hash collides with another's is then lost (-EEXIST) rather than
	 * reported as the other one. */
	us->stack_id = bpf_get_stackid(ctx, &ig_ustack, BPF_F_USER_STACK);
	us->boot_timestamp = bpf_ktime_get_boot_ns();
	us->otel_correlation_id = 0;

	us->tgid_level0 = BPF_CORE_READ(task, tgid);
	__gadget_read_upid(pid, 0, &us->pid_level0, &us->pidns_level0);
	if (level >= 1) {
		__gadget_read_upid(pid, 1, &us->pid_level1, &us->pidns_level1);
	} else {
		us->pid_level1 = 0;
		us->pidns_level1 = 0;
	}

	/* The kernel's dev_t is major << 20 | minor (include/linux/kdev_t.h),
	 * not stat()'s encoding: split it so user space can compare. */
	us->major = dev >> 20;
	us->minor = dev & ((1U << 20) - 1);
	us->inode = BPF_CORE_READ(inode, i_ino);
	us->mtime_sec = 0;
	us->mtime_nsec = 0;
	if (inode)
		gadget_inode_get_mtime(inode, &us->mtime_sec, &us->mtime_nsec);
	us->base_addr_hash = gadget_get_base_addr_hash(task);

	if (collect_build_id && (int)us->stack_id >= 0) {
		void *ids;

		/* Build ids of a stack are taken once: the first time its id
		 * is seen. */
		if (bpf_map_update_elem(&ig_build_id, &us->stack_id,
					&ig_empty_build_id, BPF_NOEXIST))
			return;
		ids = bpf_map_lookup_elem(&ig_build_id, &us->stack_id);
		if (ids)
			bpf_get_stack(ctx, ids,
				      GADGET_USER_MAX_STACK_DEPTH *
					      sizeof(struct bpf_stack_build_id),
				      BPF_F_USER_STACK | BPF_F_USER_BUILD_ID);
	}
}

#ifndef GADGET_NO_COLLECT_USTACK_PARAM

/* Collect user stacks (--collect-ustack). Off: *us is zeroed. */
const volatile bool collect_ustack = false;
GADGET_PARAM(collect_ustack);

/* The tail calls into the OpenTelemetry entry programs. Real functions:
 * the prog array each uses must match its caller's type. */
static __attribute__((noinline)) int
gadget_fetch_otel_stack_from_kprobe(void *ctx)
{
	bpf_tail_call(ctx, &otel_tc_kprobe, 0);
	return 0;
}

static __attribute__((noinline)) int
gadget_fetch_otel_stack_from_perf_event(void *ctx)
{
	bpf_tail_call(ctx, &otel_tc_perf, 0);
	return 0;
}

/* gadget_fill_user_stack() when collect_ustack is set, else zeroes. */
static __always_inline void
__gadget_fill_user_stack(void *ctx, struct gadget_user_stack *us)
{
	if (!collect_ustack) {
		__builtin_memset(us, 0, sizeof(*us));
		return;
	}
	gadget_fill_user_stack(ctx, us);
}

/* The correlation id the OpenTelemetry program left in
 * otel_generic_params during the tail call. */
static __always_inline void
__gadget_read_otel_correlation(struct gadget_user_stack *us)
{
	__u32 zero = 0;
	struct generic_param *p =
		bpf_map_lookup_elem(&otel_generic_params, &zero);

	if (p)
		us->otel_correlation_id = p->correlation_id;
}

/* For BPF_PROG_TYPE_KPROBE programs (kprobe, kretprobe, uprobe,
 * uretprobe). */
static __always_inline void
gadget_get_user_stack_from_kprobe(void *ctx, struct gadget_user_stack *us)
{
	__gadget_fill_user_stack(ctx, us);
	if (collect_ustack && collect_otel_stack) {
		gadget_fetch_otel_stack_from_kprobe(ctx);
		__gadget_read_otel_correlation(us);
	}
}

/* For BPF_PROG_TYPE_PERF_EVENT programs. */
static __always_inline void
gadget_get_user_stack_from_perf_event(void *ctx, struct gadget_user_stack *us)
{
	__gadget_fill_user_stack(ctx, us);
	if (collect_ustack && collect_otel_stack) {
		gadget_fetch_otel_stack_from_perf_event(ctx);
		__gadget_read_otel_correlation(us);
	}
}

/* For program types that cannot tail-call the OpenTelemetry programs
 * (tracepoints, raw tracepoints...): the stack only. A run asking for
 * OpenTelemetry stacks is refused by the verifier (see the top). */
static __always_inline void
gadget_get_user_stack_from_tracepoint(void *ctx, struct gadget_user_stack *us)
{
	__gadget_fill_user_stack(ctx, us);
	if (collect_ustack && collect_otel_stack)
		bpf_core_unreachable();
}

/* What any other context type gets: a compile error at the call. */
void __gadget_get_user_stack_wrong_ctx(void *ctx, struct gadget_user_stack *us)
	__attribute__((error(
		"gadget_get_user_stack(ctx, us) takes a struct pt_regs * (kprobe, uprobe) or a struct bpf_perf_event_data * (perf_event); other programs call gadget_get_user_stack_from_tracepoint()")));

/*
 * gadget_get_user_stack(ctx, us) picks the variant by ctx's C type, at
 * compile time, so that a program refers to one prog array only. Any other
 * ctx type (void *, a tracepoint's struct) is a compile error naming the
 * call's file and line.
 */
#define gadget_get_user_stack(ctx, us)                                    \
	_Generic((ctx),                                                   \
		struct bpf_perf_event_data *:                             \
			gadget_get_user_stack_from_perf_event,            \
		struct pt_regs *: gadget_get_user_stack_from_kprobe,      \
		default: __gadget_get_user_stack_wrong_ctx)((ctx), (us))

#endif /* !GADGET_NO_COLLECT_USTACK_PARAM */

#endif /* __GADGET_USER_STACK_MAP_H */
