// SPDX-License-Identifier: GPL-2.0
//
// trace_mount: one event per mount(2), umount2(2), and per call of the
// mount API of Linux 5.2 (fsopen(2), fsmount(2), move_mount(2)), with the
// source, target, filesystem type, flags and data as passed, the result,
// and the calling process.
//
// Everything happens at syscall exit, one program per syscall, as in
// trace_open: the arguments are read back from the registers the task
// entered the kernel with (bpf_task_pt_regs()), which stay unchanged until
// it returns to user space, and the strings from the caller's memory,
// which the kernel has just read (so it is mapped). No map carries
// arguments from entry to exit.
//
// With the new API, one mount is a sequence: fsopen() returns a context fd
// and names the filesystem type, fsconfig() sets the source and options
// (not traced), fsmount() turns the context into a mount fd, and
// move_mount() attaches it to the target path. The fd fields let the
// events of one sequence be matched up.

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include <gadget/buffer.h>
#include <gadget/common.h>
#include <gadget/filter.h>
#include <gadget/macros.h>
#include <gadget/types.h>

#define FS_LEN 32
#define PATH_LEN 512
#define DATA_LEN 512

// The syscall; the names are the displayed values.
enum mount_op : __u8 {
	mount,
	umount,
	fsopen,
	fsmount,
	move_mount,
};

// mount(2) flags (include/uapi/linux/mount.h). A `_set` enum: ig shows the
// bits that are set by name, joined with '|'.
enum mount_flags_set : __u64 {
	MS_RDONLY = 1,
	MS_NOSUID = 2,
	MS_NODEV = 4,
	MS_NOEXEC = 8,
	MS_SYNCHRONOUS = 16,
	MS_REMOUNT = 32,
	MS_MANDLOCK = 64,
	MS_DIRSYNC = 128,
	MS_NOSYMFOLLOW = 256,
	MS_NOATIME = 1024,
	MS_NODIRATIME = 2048,
	MS_BIND = 4096,
	MS_MOVE = 8192,
	MS_REC = 16384,
	MS_SILENT = 32768,
	MS_POSIXACL = 1 << 16,
	MS_UNBINDABLE = 1 << 17,
	MS_PRIVATE = 1 << 18,
	MS_SLAVE = 1 << 19,
	MS_SHARED = 1 << 20,
	MS_RELATIME = 1 << 21,
	MS_KERNMOUNT = 1 << 22,
	MS_I_VERSION = 1 << 23,
	MS_STRICTATIME = 1 << 24,
	MS_LAZYTIME = 1 << 25,
	MS_SUBMOUNT = 1 << 26,
	MS_NOREMOTELOCK = 1 << 27,
	MS_NOSEC = 1 << 28,
	MS_BORN = 1 << 29,
	MS_ACTIVE = 1 << 30,
	MS_NOUSER = 1U << 31,
};

// Old callers put this magic number in the upper 16 bits of the flags; the
// kernel ignores it, and so does the event.
#define MS_MGC_VAL 0xC0ED0000
#define MS_MGC_MSK 0xffff0000

struct event {
	gadget_timestamp timestamp_raw;
	struct gadget_process proc;

	enum mount_op op_raw;
	gadget_errno error_raw;
	// mount(2) only: the MS_* flags.
	enum mount_flags_set flags_raw;
	// The flags of the other calls, each with its own meaning: MNT_* for
	// umount2(), FSOPEN_* for fsopen(), the MOUNT_ATTR_* attr_flags for
	// fsmount(), MOVE_MOUNT_* for move_mount().
	__u32 op_flags;
	// The fd passed in: fsmount()'s filesystem context, move_mount()'s
	// from_dfd. -1 for the others.
	__s32 in_fd;
	// The fd returned by fsopen() and fsmount(); -1 for the others and on
	// failure.
	__s32 fd;
	// Filesystem type: mount()'s type, fsopen()'s fs_name.
	char fs[FS_LEN];
	// mount(): the source (device, or directory for a bind mount);
	// move_mount(): from_pathname.
	char src[PATH_LEN];
	// mount(), umount2(): the mount point; move_mount(): to_pathname.
	char target[PATH_LEN];
	// mount(): the filesystem options (cut at the first NUL, so binary
	// option blocks are not shown in full).
	char data[DATA_LEN];
};

GADGET_TRACER_MAP(events, 1024 * 256);
GADGET_TRACER(mount, events, event);

// Copies the user string at uptr into buf, or leaves buf empty.
#define READ_STR(buf, uptr)                                             \
	do {                                                            \
		const void *__p = (const void *)(uptr);                 \
		if (!__p ||                                             \
		    bpf_probe_read_user_str(buf, sizeof(buf), __p) < 0) \
			buf[0] = '\0';                                  \
	} while (0)

// Reserves an event and fills the common part; NULL when the call is
// filtered out or the buffer is full.
static __always_inline struct event *start_event(struct syscall_trace_exit *ctx,
						 enum mount_op op,
						 struct pt_regs **regs)
{
	long ret = ctx->ret;
	struct event *e;

	if (gadget_should_discard_data_current())
		return NULL;

	e = gadget_reserve_buf(&events, sizeof(*e));
	if (!e)
		return NULL;

	*regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	e->timestamp_raw = bpf_ktime_get_boot_ns();
	gadget_process_populate(&e->proc);
	e->op_raw = op;
	e->error_raw = ret < 0 ? -ret : 0;
	e->flags_raw = 0;
	e->op_flags = 0;
	e->in_fd = -1;
	e->fd = -1;
	e->fs[0] = '\0';
	e->src[0] = '\0';
	e->target[0] = '\0';
	e->data[0] = '\0';
	return e;
}

SEC("tracepoint/syscalls/sys_exit_mount")
int ig_mount_x(struct syscall_trace_exit *ctx)
{
	struct pt_regs *regs;
	struct event *e = start_event(ctx, mount, &regs);
	__u64 flags;

	if (!e)
		return 0;
	// mount(source, target, fstype, flags, data)
	READ_STR(e->src, PT_REGS_PARM1_SYSCALL(regs));
	READ_STR(e->target, PT_REGS_PARM2_SYSCALL(regs));
	READ_STR(e->fs, PT_REGS_PARM3_SYSCALL(regs));
	flags = PT_REGS_PARM4_SYSCALL(regs);
	if ((flags & MS_MGC_MSK) == MS_MGC_VAL)
		flags &= ~(__u64)MS_MGC_MSK;
	e->flags_raw = flags;
	READ_STR(e->data, PT_REGS_PARM5_SYSCALL(regs));
	gadget_submit_buf(ctx, &events, e, sizeof(*e));
	return 0;
}

// umount2(); its tracepoint is named after the kernel's sys_umount.
SEC("tracepoint/syscalls/sys_exit_umount")
int ig_umount_x(struct syscall_trace_exit *ctx)
{
	struct pt_regs *regs;
	struct event *e = start_event(ctx, umount, &regs);

	if (!e)
		return 0;
	// umount2(target, flags)
	READ_STR(e->target, PT_REGS_PARM1_SYSCALL(regs));
	e->op_flags = PT_REGS_PARM2_SYSCALL(regs);
	gadget_submit_buf(ctx, &events, e, sizeof(*e));
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_fsopen")
int ig_fsopen_x(struct syscall_trace_exit *ctx)
{
	struct pt_regs *regs;
	struct event *e = start_event(ctx, fsopen, &regs);

	if (!e)
		return 0;
	// fsopen(fs_name, flags)
	READ_STR(e->fs, PT_REGS_PARM1_SYSCALL(regs));
	e->op_flags = PT_REGS_PARM2_SYSCALL(regs);
	if (ctx->ret >= 0)
		e->fd = ctx->ret;
	gadget_submit_buf(ctx, &events, e, sizeof(*e));
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_fsmount")
int ig_fsmount_x(struct syscall_trace_exit *ctx)
{
	struct pt_regs *regs;
	struct event *e = start_event(ctx, fsmount, &regs);

	if (!e)
		return 0;
	// fsmount(fs_fd, flags, attr_flags)
	e->in_fd = PT_REGS_PARM1_SYSCALL(regs);
	e->op_flags = PT_REGS_PARM3_SYSCALL(regs);
	if (ctx->ret >= 0)
		e->fd = ctx->ret;
	gadget_submit_buf(ctx, &events, e, sizeof(*e));
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_move_mount")
int ig_move_mount_x(struct syscall_trace_exit *ctx)
{
	struct pt_regs *regs;
	struct event *e = start_event(ctx, move_mount, &regs);

	if (!e)
		return 0;
	// move_mount(from_dfd, from_pathname, to_dfd, to_pathname, flags)
	e->in_fd = PT_REGS_PARM1_SYSCALL(regs);
	READ_STR(e->src, PT_REGS_PARM2_SYSCALL(regs));
	READ_STR(e->target, PT_REGS_PARM4_SYSCALL(regs));
	e->op_flags = PT_REGS_PARM5_SYSCALL(regs);
	gadget_submit_buf(ctx, &events, e, sizeof(*e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
