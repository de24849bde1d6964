// SPDX-License-Identifier: GPL-2.0
//
// trace_open: one event per open(), openat() and openat2() call, with the
// path, flags, mode, the resulting fd or error, and the calling process.
//
// Everything happens at syscall exit, in one program per syscall. The
// arguments are not saved at entry: they are read back from the registers
// the task entered the kernel with (bpf_task_pt_regs()), which the kernel
// keeps unchanged until it returns to user space. This halves the number of
// programs run per open and needs no map at all, which matters because
// opens are among the most frequent syscalls (the gadget must keep up with
// hundreds of thousands per second).
//
// The path is read from the caller's memory at exit. The kernel has just
// read it too, so it is mapped; a thread that rewrites the buffer during
// the call could make the two disagree (as with any tracer reading it).
//
// With --paths, the full path of the file actually opened (symlinks and
// relative paths resolved, as the kernel found it) is added in fpath,
// walked from the new descriptor with gadget/filesystem.h, as upstream's
// trace_open does.

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include <gadget/buffer.h>
#include <gadget/common.h>
#include <gadget/filesystem.h>
#include <gadget/filter.h>
#include <gadget/macros.h>
#include <gadget/types.h>

#define FNAME_LEN 256

struct event {
	gadget_timestamp timestamp_raw;
	struct gadget_process proc;

	gadget_errno error_raw;
	__u32 fd;
	gadget_file_flags flags_raw;
	gadget_file_mode mode_raw;
	char fname[FNAME_LEN];
	// With --paths: the full path of the opened file; else empty. Last:
	// without --paths the record ends before it (see EVENT_SIZE).
	char fpath[GADGET_PATH_MAX];
};

const volatile bool targ_failed = false;
GADGET_PARAM(targ_failed);

const volatile bool paths = false;
GADGET_PARAM(paths);

// Bytes sent per event. Without --paths the record stops before fpath and
// ig zero-fills the rest, so the common case moves no more through the
// ring buffer than before fpath existed. paths is a load-time constant:
// the verifier sees a constant size either way.
#define EVENT_SIZE \
	(paths ? sizeof(struct event) : __builtin_offsetof(struct event, fpath))

GADGET_TRACER_MAP(events, 1024 * 256);
GADGET_TRACER(open, events, event);

// Sends the event for a finished open. path_arg, flags_arg and mode_arg are
// the 1-based positions of those syscall arguments; flags_arg 0 means they
// are in a struct open_how (openat2). All three are constants after
// inlining, so each program keeps only the reads it needs.
static __always_inline int trace_exit(struct syscall_trace_exit *ctx,
				      int path_arg, int flags_arg, int mode_arg)
{
	long ret = ctx->ret;
	struct task_struct *task;
	struct pt_regs *regs;
	struct event *e;
	const char *fname;
	__u64 flags, mode;

	// Cheapest rejections first: nothing below runs for filtered calls.
	if (targ_failed && ret >= 0)
		return 0;
	if (gadget_should_discard_data_current())
		return 0;

	e = gadget_reserve_buf(&events, EVENT_SIZE);
	if (!e)
		return 0;

	task = bpf_get_current_task_btf();
	regs = (struct pt_regs *)bpf_task_pt_regs(task);

	// Syscall argument n, as the kernel saved it on entry. regs comes from
	// bpf_task_pt_regs(), a BTF pointer, so these are plain loads.
#define SYSCALL_ARG(n)                            \
	((n) == 1 ? PT_REGS_PARM1_SYSCALL(regs) : \
	 (n) == 2 ? PT_REGS_PARM2_SYSCALL(regs) : \
	 (n) == 3 ? PT_REGS_PARM3_SYSCALL(regs) : \
		    PT_REGS_PARM4_SYSCALL(regs))

	fname = (const char *)SYSCALL_ARG(path_arg);
	if (flags_arg > 0) {
		flags = SYSCALL_ARG(flags_arg);
		mode = SYSCALL_ARG(mode_arg);
	} else {
		// openat2: flags and mode are in the struct open_how the third
		// argument points to.
		struct open_how *how = (struct open_how *)SYSCALL_ARG(3);

		flags = 0;
		mode = 0;
		bpf_probe_read_user(&flags, sizeof(flags), &how->flags);
		bpf_probe_read_user(&mode, sizeof(mode), &how->mode);
	}
#undef SYSCALL_ARG

	e->timestamp_raw = bpf_ktime_get_boot_ns();
	gadget_process_populate(&e->proc);
	if (ret >= 0) {
		e->fd = ret;
		e->error_raw = 0;
	} else {
		e->fd = 0;
		e->error_raw = -ret;
	}
	e->flags_raw = flags;
	e->mode_raw = mode;
	if (bpf_probe_read_user_str(e->fname, sizeof(e->fname), fname) < 0)
		e->fname[0] = '\0';
	if (paths) {
		if (ret < 0 || read_full_path_of_open_file_fd(
				       ret, e->fpath, sizeof(e->fpath)) <= 0)
			e->fpath[0] = '\0';
	}

	gadget_submit_buf(ctx, &events, e, EVENT_SIZE);
	return 0;
}

#ifdef __TARGET_ARCH_x86
// open(2) exists only on some architectures (arm64 has openat alone).
SEC("tracepoint/syscalls/sys_exit_open")
int ig_open_x(struct syscall_trace_exit *ctx)
{
	// open(path, flags, mode)
	return trace_exit(ctx, 1, 2, 3);
}
#endif

SEC("tracepoint/syscalls/sys_exit_openat")
int ig_openat_x(struct syscall_trace_exit *ctx)
{
	// openat(dirfd, path, flags, mode)
	return trace_exit(ctx, 2, 3, 4);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int ig_openat2_x(struct syscall_trace_exit *ctx)
{
	// openat2(dirfd, path, how, size)
	return trace_exit(ctx, 2, 0, 0);
}

char LICENSE[] SEC("license") = "GPL";
