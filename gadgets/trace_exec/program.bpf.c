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
//   consumed above). The return value alone cannot tell: seccomp and
//   ptrace can rewrite it.
//
// Reading the caller's memory at syscall entry fails when a page is not
// mapped yet, because BPF programs cannot take page faults. That is common
// right after fork(): the child has no mappings yet for, say, the string
// literals of the C library. For a successful exec the arguments are then
// taken from the new program's argument area instead, which the kernel has
// just written.
//
// As upstream's trace_exec: the change times (ctime) of the executable and
// of the parent's executable (gadget/core_fixes.bpf.h reads the inode's
// ctime whatever its layout in this kernel), and with --paths the working
// directory at the exec and the executable's full path (walked with
// gadget/filesystem.h).

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

// Events are sent with gadget_output_buf() only: no reserve scratch map.
#define GADGET_NO_BUF_RESERVE
#include <gadget/buffer.h>
#include <gadget/common.h>
#include <gadget/core_fixes.bpf.h>
#include <gadget/filesystem.h>
#include <gadget/filter.h>
#include <gadget/macros.h>
#include <gadget/types.h>

// Size of the argument string in the event.
#define ARGS_LEN 2560
// Longest single argument copied; longer ones are cut.
#define ARG_MAX_LEN 512
// Most arguments read from the caller (the loop bound for the verifier).
#define MAX_ARGS 20
// copy_one_arg masks the offset with 0x1fff: it must change no value.
_Static_assert(ARGS_LEN + ARG_MAX_LEN <= 0x2000, "args offsets fit the mask");

struct event {
	gadget_timestamp timestamp_raw;
	struct gadget_process proc;

	gadget_errno error_raw;
	// Number of arguments in args, the program path included.
	__u32 args_count;
	// Bytes used in args, the final NUL included.
	__u32 args_size;
	// Some arguments were left out or cut short.
	bool args_truncated;
	// Change time of the executable and of the parent's executable, in
	// nanoseconds since the epoch (0 for a failed exec).
	__u64 ctime;
	__u64 pctime;
	// With --paths: the working directory when the exec started and the
	// full path of the executable run (empty for a failed exec).
	char cwd[GADGET_PATH_MAX];
	char exepath[GADGET_PATH_MAX];
	// The executed path followed by argv[1], argv[2], ... separated by
	// single spaces. Only args_size bytes of it are sent.
	char args[ARGS_LEN];
};

// The map value: the event plus room for an argument copy that starts near
// the end of args[] to run past it. The verifier checks that every copy of
// up to ARG_MAX_LEN bytes fits in the value, wherever it starts; what lands
// in `overflow` is cut off afterwards.
struct exec_state {
	struct event event;
	char overflow[ARG_MAX_LEN];
	// A read of the caller's memory failed: args may be incomplete.
	bool faulted;
};

// Initial value of map entries (an insert copies a whole value).
static const struct exec_state empty_state;

const volatile bool ignore_failed = true;
GADGET_PARAM(ignore_failed);

const volatile bool paths = false;
GADGET_PARAM(paths);

// Execs in progress, by thread id. Entries live only from syscall entry to
// exit, so they are allocated on demand: preallocating 1024 values of
// about 3 KiB each would pin 3 MiB for nothing.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct exec_state);
} execs SEC(".maps");

GADGET_TRACER_MAP(events, 1024 * 256);
GADGET_TRACER(exec, events, event);

// The filters whose answer an exec cannot change (container, pid, uid,
// gid), checked at entry so that filtered-out processes never touch the
// map. comm changes, and so may tid (see above): those are checked on the
// final event, with all the others.
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

// State shared with the bpf_loop() callbacks below. The loops run through
// bpf_loop() rather than as plain bounded loops: the verifier then checks
// each loop body once instead of once per iteration, which took trace_exec's
// load time from about 160 ms to a few ms (docs/benchmarks.md, attach time).
struct copy_args_ctx {
	struct exec_state *st;
	const char *const *argv;
	// 64-bit on purpose: with a 32-bit offset clang works on a
	// zero-extended copy, and the bounds checks below no longer reach the
	// register the verifier tracks.
	__u64 off;
	__u32 first;
	__u32 count;
};

// Copies argv[first + i]; returns 1 (stop) at the end of argv or on a
// fault, 0 to go on.
static long copy_one_arg(__u32 i, void *data)
{
	struct copy_args_ctx *c = data;
	struct exec_state *st = c->st;
	__u32 idx = c->first + i;
	const char *arg = NULL;
	__u64 off = c->off;
	long n;

	if (idx >= MAX_ARGS)
		return 1;
	if (bpf_probe_read_user(&arg, sizeof(arg), &c->argv[idx])) {
		st->faulted = true;
		return 1;
	}
	if (!arg)
		return 1;
	if (off >= ARGS_LEN) {
		st->event.args_truncated = true;
		return 1;
	}
	n = bpf_probe_read_user_str(&st->event.args[off], ARG_MAX_LEN, arg);
	if (n <= 0 || n > ARG_MAX_LEN) {
		st->faulted = true;
		return 1;
	}
	if (n == ARG_MAX_LEN)
		st->event.args_truncated = true;
	off += n;
	st->event.args[off - 1] = ' ';
	// The mask changes no value (off < ARGS_LEN + ARG_MAX_LEN) but drops
	// the lower bound the verifier would carry from one call to the next
	// (it grows with every argument), so the callback's states converge
	// after a few calls instead of one per argument: 8,704 instructions
	// processed per entry program became 3,254, ~5 ms less to load each
	// (docs/design/012-attach-time.md).
	c->off = off & 0x1fff;
	c->count++;

	if (idx == MAX_ARGS - 1) {
		// Is there an argument beyond the last one read?
		if (!bpf_probe_read_user(&arg, sizeof(arg), &c->argv[MAX_ARGS]) &&
		    arg)
			st->event.args_truncated = true;
	}
	return 0;
}

static __always_inline int enter_exec(const char *filename,
				      const char *const *argv)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct copy_args_ctx c = { .argv = argv };
	struct exec_state *st;
	struct event *e;
	__u64 off;
	long n;

	if (discard_at_entry())
		return 0;

	if (bpf_map_update_elem(&execs, &tid, &empty_state, BPF_ANY))
		return 0;
	st = bpf_map_lookup_elem(&execs, &tid);
	if (!st)
		return 0;
	e = &st->event;
	c.st = st;

	e->timestamp_raw = bpf_ktime_get_boot_ns();

	if (paths) {
		struct task_struct *task =
			(struct task_struct *)bpf_get_current_task();
		struct fs_struct *fs = BPF_CORE_READ(task, fs);
		char *cwd = get_path_str(&fs->pwd);

		if (cwd)
			bpf_probe_read_kernel_str(e->cwd, sizeof(e->cwd), cwd);
	}

	// The path actually executed comes first, in place of argv[0] (which
	// is whatever the caller chose). When the path is empty (execveat
	// with AT_EMPTY_PATH, as fexecve() does) argv[0] is shown instead.
	n = bpf_probe_read_user_str(e->args, ARG_MAX_LEN, filename);
	if (n > 1 && n <= ARG_MAX_LEN) {
		// n counts the NUL, which becomes the separator.
		c.off = n;
		e->args[n - 1] = ' ';
		c.count = 1;
		c.first = 1;
	} else if (n < 0) {
		st->faulted = true;
	}

	bpf_loop(MAX_ARGS - c.first, copy_one_arg, &c, 0);

	off = c.off;
	if (off > ARGS_LEN) {
		off = ARGS_LEN;
		e->args_truncated = true;
	}
	// The last separator (or the cut-off point) ends the string.
	if (off > 0)
		e->args[off - 1] = '\0';
	e->args_size = off;
	e->args_count = c.count;
	return 0;
}

struct nul_to_space_ctx {
	struct event *e;
	__u32 count;
};

// Turns the NUL after argument i into a separator.
static long nul_to_space(__u32 i, void *data)
{
	struct nul_to_space_ctx *c = data;

	if (i >= ARGS_LEN - 1)
		return 1;
	if (c->e->args[i] == '\0') {
		c->e->args[i] = ' ';
		c->count++;
	}
	return 0;
}

// Rebuilds args from the argument area of the program just loaded: argv
// as the new program received it (argv[0] as the caller gave it, not the
// path), NUL-separated, written there by the kernel during the exec.
static __always_inline void args_from_new_program(struct event *e)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long start = BPF_CORE_READ(mm, arg_start);
	unsigned long end = BPF_CORE_READ(mm, arg_end);
	struct nul_to_space_ctx c = { .e = e, .count = 1 };
	__u64 len = end - start;

	if (end <= start)
		return;
	e->args_truncated = len > ARGS_LEN;
	if (len > ARGS_LEN)
		len = ARGS_LEN;
	// Already implied by end > start, but the verifier needs to see it on
	// len itself before the args[len - 1] below; the empty asm keeps clang
	// from dropping the test as redundant.
	asm volatile("" : "+r"(len));
	if (len < 1)
		return;
	if (bpf_probe_read_user(e->args, len, (const void *)start))
		return;

	// Every NUL but the last one separates two arguments.
	bpf_loop(len - 1, nul_to_space, &c, 0);
	// Terminated also when the area was cut at ARGS_LEN.
	e->args[len - 1] = '\0';
	e->args_size = len;
	e->args_count = c.count;
}

// Fills in the process, applies the filters and sends the event.
static __always_inline void emit(void *ctx, struct event *e)
{
	__u32 size;

	gadget_process_populate(&e->proc);
	if (gadget_should_discard_data(e->proc.mntns_id, e->proc.pid,
				       e->proc.tid, e->proc.comm,
				       e->proc.creds.uid, e->proc.creds.gid))
		return;

	// Only the used part of args is sent; ig zero-fills the rest.
	size = e->args_size;
	if (size > ARGS_LEN)
		size = ARGS_LEN;
	gadget_output_buf(ctx, &events, e,
			  __builtin_offsetof(struct event, args) + size);
}

// The syscalls/sys_enter_* records hold the syscall number and then the
// arguments in 8-byte slots from offset 16. struct trace_event_raw_sys_enter
// (of raw_syscalls/sys_enter) has that layout with a fixed args[6], unlike
// struct syscall_trace_enter whose flexible args[] some CO-RE loaders refuse
// to index.
SEC("tracepoint/syscalls/sys_enter_execve")
int ig_execve_e(struct trace_event_raw_sys_enter *ctx)
{
	// execve(path, argv, envp)
	return enter_exec((const char *)ctx->args[0],
			  (const char *const *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int ig_execveat_e(struct trace_event_raw_sys_enter *ctx)
{
	// execveat(dirfd, path, argv, envp, flags)
	return enter_exec((const char *)ctx->args[1],
			  (const char *const *)ctx->args[2]);
}

// The new executable's and the parent's: change times, and the path.
static __always_inline void executables(struct event *e)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	struct file *pexe = BPF_CORE_READ(task, real_parent, mm, exe_file);
	struct inode *inode = BPF_CORE_READ(exe, f_inode);
	struct inode *pinode = BPF_CORE_READ(pexe, f_inode);

	if (inode)
		e->ctime = gadget_get_ctime_nanosec_from_inode(inode);
	if (pinode)
		e->pctime = gadget_get_ctime_nanosec_from_inode(pinode);
	if (paths && exe) {
		char *path = get_path_str(&exe->f_path);

		if (path)
			bpf_probe_read_kernel_str(e->exepath,
						  sizeof(e->exepath), path);
	}
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
	executables(&st->event);
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
