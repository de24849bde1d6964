// SPDX-License-Identifier: GPL-2.0
//
// trace_exec: one event per execve()/execveat(), with the program's
// arguments, the process that ran it and the result.
//
// Three tracepoints work together, because no single one sees everything:
//
// - syscalls/sys_enter_execve(at): the arguments are still in the caller's
//   memory here (a successful exec replaces that memory), so they are
//   copied now into a per-thread entry of the `execs` map.
// - sched/sched_process_exec: fires only when the exec succeeded, in the new
//   program (so comm is the new name). A successful exec started by a
//   non-leader thread completes in the thread group leader, under another
//   thread id; this tracepoint reports the old one (old_pid), so the saved
//   entry is still found. The event is sent from here.
// - syscalls/sys_exit_execve(at): fires for every exec. An entry still in
//   the map at this point belongs to a failed exec (a successful one was
//   consumed above). The return value cannot tell success on its own:
//   seccomp may rewrite it.
//
// Reading the caller's memory at syscall entry fails when a page is not
// mapped yet: BPF cannot take page faults. That is common right after
// fork(), whose child has no mappings yet for, say, the C library's string
// literals. For a successful exec the arguments are then taken from the new
// program's argument area instead, which the kernel has just written.

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include <gadget/buffer.h>
#include <gadget/common.h>
#include <gadget/filter.h>
#include <gadget/macros.h>
#include <gadget/types.h>

// Size of the argument string in the event.
#define ARGS_LEN 2560
// Longest single argument copied; a longer one is cut (there is no marker).
#define ARG_MAX_LEN 512
// Arguments read at most; a command with more gets args_count = 21.
#define MAX_ARGS 20

struct event {
	gadget_timestamp timestamp_raw;
	struct gadget_process proc;

	gadget_errno error_raw;
	// Arguments seen, including the program path (MAX_ARGS + 1 when some
	// were left out).
	__u32 args_count;
	// Bytes used in args, including the final NUL.
	__u32 args_size;
	// The executed path followed by argv[1], argv[2], ... separated by
	// single spaces. Only args_size bytes of it are sent.
	char args[ARGS_LEN];
};

// The map value: the event plus room for the last argument copy to run
// past args[]. The verifier needs every copy of up to ARG_MAX_LEN bytes to
// fit in the value wherever it starts; the overflow is cut off afterwards.
struct exec_state {
	struct event event;
	char overflow[ARG_MAX_LEN];
	// A read of the caller's memory failed: args may be incomplete.
	bool faulted;
};

// Initial value of map entries (the map copies a full value on insert).
static const struct exec_state empty_state;

const volatile bool ignore_failed = true;
GADGET_PARAM(ignore_failed);

// Exec in progress, by thread id. Entries exist only between syscall entry
// and exit, so the map is allocated on demand instead of up front
// (1024 * ~3 KiB would otherwise stay reserved for nothing).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct exec_state);
} execs SEC(".maps");

GADGET_TRACER_MAP(events, 1024 * 256);
GADGET_TRACER(exec, events, event);

// Filters that cannot change across an exec, checked at entry so that
// filtered-out processes never touch the map. comm does change (and tid may,
// see above); those are checked on the final event.
static __always_inline bool discard_at_entry(void)
{
	if (gadget_filter_by_mntns &&
	    gadget_should_discard_mntns_id(gadget_get_current_mntns_id()))
		return true;

	if (targ_pid != 0 &&
	    gadget_should_discard_pid(bpf_get_current_pid_tgid() >> 32))
		return true;

	if (targ_uid != GADGET_INVALID_ID || targ_gid != GADGET_INVALID_ID) {
		__u64 uid_gid = bpf_get_current_uid_gid();

		if (gadget_should_discard_uid((__u32)uid_gid) ||
		    gadget_should_discard_gid(uid_gid >> 32))
			return true;
	}
	return false;
}

static __always_inline int enter_exec(const char *filename,
				      const char *const *argv)
{
	struct exec_state *st;
	struct event *e;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 off = 0;
	__u32 count = 0;
	long n;

	if (discard_at_entry())
		return 0;

	if (bpf_map_update_elem(&execs, &tid, &empty_state, BPF_ANY))
		return 0;
	st = bpf_map_lookup_elem(&execs, &tid);
	if (!st)
		return 0;
	e = &st->event;

	e->timestamp_raw = bpf_ktime_get_boot_ns();

	// The path actually executed comes first, in place of argv[0] (which
	// is whatever the caller chose). If it is empty (execveat with
	// AT_EMPTY_PATH) argv[0] is used instead.
	n = bpf_probe_read_user_str(e->args, ARG_MAX_LEN, filename);
	if (n > 1 && n <= ARG_MAX_LEN) {
		off = n;
		e->args[off - 1] = ' ';
		count = 1;
	} else if (n < 0) {
		st->faulted = true;
	}

	for (int i = count; i < MAX_ARGS; i++) {
		const char *arg = NULL;

		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i])) {
			st->faulted = true;
			break;
		}
		if (!arg)
			break;
		if (off >= ARGS_LEN) {
			// Out of room: report one more than the maximum.
			count = MAX_ARGS + 1;
			break;
		}
		n = bpf_probe_read_user_str(&e->args[off], ARG_MAX_LEN, arg);
		if (n <= 0 || n > ARG_MAX_LEN) {
			st->faulted = true;
			break;
		}
		// n counts the NUL; it becomes the separator.
		off += n;
		e->args[off - 1] = ' ';
		count++;
	}
	if (count == MAX_ARGS) {
		const char *arg = NULL;

		// Tell the user when argv[MAX_ARGS] exists but was not read.
		if (!bpf_probe_read_user(&arg, sizeof(arg), &argv[MAX_ARGS]) &&
		    arg)
			count = MAX_ARGS + 1;
	}

	if (off > ARGS_LEN)
		off = ARGS_LEN;
	// Terminate the string on the last separator (or the cut-off point).
	if (off > 0)
		e->args[off - 1] = '\0';
	e->args_size = off;
	e->args_count = count;
	return 0;
}

// Rebuilds args from the argument area of the program that was just
// loaded: argv as the new program sees it (argv[0] as the caller gave it,
// not the path), NUL-separated, placed there by the kernel during exec.
static __always_inline void args_from_new_program(struct event *e)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long start = BPF_CORE_READ(mm, arg_start);
	unsigned long end = BPF_CORE_READ(mm, arg_end);
	__u64 len = end - start;
	__u32 count = 1;

	if (end <= start)
		return;
	if (len > ARGS_LEN)
		len = ARGS_LEN;
	if (bpf_probe_read_user(e->args, len, (const void *)start))
		return;

	for (__u32 i = 0; i < ARGS_LEN - 1; i++) {
		if (i + 1 >= len)
			break;
		if (e->args[i] == '\0') {
			e->args[i] = ' ';
			count++;
		}
	}
	// Always terminated, also when the area was cut at ARGS_LEN.
	e->args[len - 1] = '\0';
	e->args_size = len;
	e->args_count = count;
}

// Completes the event saved under key and sends it, unless filtered.
static __always_inline void emit(void *ctx, struct event *e)
{
	__u64 uid_gid = bpf_get_current_uid_gid();
	__u32 size;

	gadget_process_populate(&e->proc);
	if (gadget_should_discard_data(e->proc.mntns_id, e->proc.pid,
				       e->proc.tid, e->proc.comm,
				       (__u32)uid_gid, uid_gid >> 32))
		return;

	// Only the used part of args is sent; ig zero-fills the rest.
	size = e->args_size;
	if (size > ARGS_LEN)
		size = ARGS_LEN;
	gadget_output_buf(ctx, &events, e,
			  __builtin_offsetof(struct event, args) + size);
}

SEC("tracepoint/syscalls/sys_enter_execve")
int ig_execve_e(struct syscall_trace_enter *ctx)
{
	return enter_exec((const char *)ctx->args[0],
			  (const char *const *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int ig_execveat_e(struct syscall_trace_enter *ctx)
{
	return enter_exec((const char *)ctx->args[1],
			  (const char *const *)ctx->args[2]);
}

SEC("tracepoint/sched/sched_process_exec")
int ig_sched_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	__u32 key = ctx->old_pid;
	struct exec_state *st;

	st = bpf_map_lookup_elem(&execs, &key);
	if (!st)
		return 0;
	if (st->faulted)
		args_from_new_program(&st->event);
	st->event.error_raw = 0;
	emit(ctx, &st->event);
	bpf_map_delete_elem(&execs, &key);
	return 0;
}

static __always_inline int exit_exec(struct syscall_trace_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct exec_state *st;

	st = bpf_map_lookup_elem(&execs, &tid);
	if (!st)
		return 0;
	if (!ignore_failed) {
		st->event.error_raw = -ctx->ret;
		emit(ctx, &st->event);
	}
	bpf_map_delete_elem(&execs, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int ig_execve_x(struct syscall_trace_exit *ctx)
{
	return exit_exec(ctx);
}

SEC("tracepoint/syscalls/sys_exit_execveat")
int ig_execveat_x(struct syscall_trace_exit *ctx)
{
	return exit_exec(ctx);
}

char LICENSE[] SEC("license") = "GPL";
