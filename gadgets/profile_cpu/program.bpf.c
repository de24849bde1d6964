// SPDX-License-Identifier: GPL-2.0
//
// profile_cpu: where the CPUs spend their time, by sampling. At a fixed
// frequency on every CPU, the running task's kernel and user stacks are
// recorded, and samples with the same process and stacks are counted
// together in the kernel. ig reads the counts at every interval and names
// the functions of the stacks.
//
// The program is a perf_event program: ig opens one software CPU-clock
// perf event per CPU with the frequency given in gadget.yaml
// (programs.profiler) and attaches the program to each. It runs in
// interrupt context on the sampled CPU, where the current task is the one
// that was running: the process is right.
//
// Stacks go to the stack trace maps ig_kstack and ig_ustack of
// gadget/kernel_stack_map.h and gadget/user_stack_map.h; the counts map
// holds only their ids. User stacks are walked by frame pointers, so code
// built without them shows short stacks.

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include <gadget/common.h>
#include <gadget/filter.h>
#include <gadget/macros.h>
#include <gadget/types.h>
#include <gadget/kernel_stack_map.h>
// This gadget collects user stacks unless told not to (user_stacks_only,
// kernel_stacks_only below), not through collect_ustack.
#define GADGET_NO_COLLECT_USTACK_PARAM
#include <gadget/user_stack_map.h>

// What a sample is counted under: the process and its two stacks.
struct sample_key {
	struct gadget_process proc;
	// Kernel stack id in ig_kstack. A negative error (as __u32, so 2^31
	// and above) when there is none: sampled in user space, or
	// user_stacks_only.
	gadget_kernel_stack kern_stack_raw;
	// User stack id in ig_ustack (user_stack_raw.stack_id), to keep
	// different user stacks apart. Negative as above when there is none.
	__u32 user_stack_id;
};

struct sample_value {
	// Samples counted in the interval.
	__u64 samples;
	// Where to find the user stack (identical for all samples of a key).
	struct gadget_user_stack user_stack_raw;
};

// Record only the kernel stack.
const volatile bool kernel_stacks_only = false;
GADGET_PARAM(kernel_stacks_only);

// Record only the user stack.
const volatile bool user_stacks_only = false;
GADGET_PARAM(user_stacks_only);

// Also count samples of idle CPUs (the idle task, pid 0).
const volatile bool include_idle = false;
GADGET_PARAM(include_idle);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct sample_key);
	__type(value, struct sample_value);
} counts SEC(".maps");

GADGET_MAPITER(samples, counts);

// Per-CPU work area: the new value, too big to build on the stack next to
// the key.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sample_value);
} new_value SEC(".maps");

#define NO_STACK ((__u32)-1)

SEC("perf_event/profiler")
int ig_prof_cpu(struct bpf_perf_event_data *ctx)
{
	struct sample_key key = {};
	struct sample_value *val, *nv;
	__u32 zero = 0;

	if (!include_idle && (__u32)bpf_get_current_pid_tgid() == 0)
		return 0;
	if (gadget_should_discard_data_current())
		return 0;

	nv = bpf_map_lookup_elem(&new_value, &zero);
	if (!nv)
		return 0;

	gadget_process_populate(&key.proc);
	if (user_stacks_only)
		key.kern_stack_raw = NO_STACK;
	else
		key.kern_stack_raw = gadget_get_kernel_stack(ctx);
	if (kernel_stacks_only) {
		__builtin_memset(&nv->user_stack_raw, 0,
				 sizeof(nv->user_stack_raw));
		nv->user_stack_raw.stack_id = NO_STACK;
	} else {
		gadget_fill_user_stack(ctx, &nv->user_stack_raw);
	}
	key.user_stack_id = nv->user_stack_raw.stack_id;

	val = bpf_map_lookup_elem(&counts, &key);
	if (val) {
		__sync_fetch_and_add(&val->samples, 1);
		return 0;
	}
	nv->samples = 1;
	// Another CPU may have added the key meanwhile: then count there.
	if (bpf_map_update_elem(&counts, &key, nv, BPF_NOEXIST)) {
		val = bpf_map_lookup_elem(&counts, &key);
		if (val)
			__sync_fetch_and_add(&val->samples, 1);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
