// SPDX-License-Identifier: GPL-2.0
//
// top_file: reads and writes per file and thread, summed in the kernel and
// read by ig at every interval.
//
// Hooks: the exit tracepoints of the read and write syscalls: read(2),
// write(2), pread64(2), pwrite64(2), readv(2), writev(2), preadv(2),
// pwritev(2), preadv2(2) and pwritev2(2). At exit the result is known (the
// bytes actually transferred); the file descriptor is read back from the
// registers saved at syscall entry, as trace_open does, and resolved to
// the struct file in the task's file table (task->files->fdt->fd[fd]).
//
// The key is the thread plus the file's device and inode, so a file opened
// twice counts once. The file's path is built only when a key is first
// seen in an interval: by walking the dentries up to the root and crossing
// mount points on the way (struct mount), at most MAX_DEPTH components;
// deeper paths keep their last MAX_DEPTH components after "...", paths
// longer than FILE_LEN bytes are cut. Files of pseudo filesystems (pipes,
// sockets, eventfds...) have no path: they are shown as "<filesystem>:<name>",
// e.g. "pipefs:", "sockfs:TCP", "anon_inodefs:[eventfd]".
//
// Not counted: I/O that does not go through these syscalls (mmap,
// sendfile, splice, copy_file_range, io_uring, AIO).

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include <gadget/common.h>
#include <gadget/filter.h>
#include <gadget/macros.h>
#include <gadget/types.h>

// Size of the path in the value; a power of two (see build_path()).
#define FILE_LEN 256
// Most path components read.
#define MAX_DEPTH 20
// Most mount points crossed.
#define MAX_MOUNTS 8

// File type bits of i_mode (include/uapi/linux/stat.h).
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000

// Kind of file; the names are the displayed values, as upstream's: R for
// regular files, S for sockets, O for the others (pipes, devices...).
enum file_kind : __u8 {
	R,
	S,
	O,
};

struct file_key {
	struct gadget_process proc;
	// Device of the file's filesystem, as st_dev of stat(2).
	__u32 dev;
	__u64 inode;
};

struct file_stats {
	__u64 reads;
	__u64 writes;
	gadget_bytes rbytes;
	gadget_bytes wbytes;
	enum file_kind t_raw;
	char file[FILE_LEN];
};

// Count all files, not only regular ones.
const volatile bool all_files = false;
GADGET_PARAM(all_files);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct file_key);
	__type(value, struct file_stats);
} stats SEC(".maps");

GADGET_MAPITER(file, stats);

// Per-CPU work area for build_path(): the dentries of the path, leaf
// first, and the path being written. The buffer is twice FILE_LEN so that
// a component of up to FILE_LEN bytes written at any offset below FILE_LEN
// stays inside it, which is what the verifier checks.
struct path_work {
	struct dentry *dentries[MAX_DEPTH];
	// Number of dentries, and how the walk ended. Kept here rather than
	// in registers so that the verifier does not follow every possible
	// value through the loop (see build_path()).
	__u32 n;
	bool pseudo;
	bool deep;
	char buf[FILE_LEN * 2];
};

// A load the compiler must not elide after a store to the same place.
#define LOAD(x) (*(volatile typeof(x) *)&(x))

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_work);
} path_work SEC(".maps");

static const struct file_stats zero_stats;

// struct vfsmount is embedded in struct mount (fs/mount.h).
static __always_inline struct mount *real_mount(struct vfsmount *vmnt)
{
	return (void *)vmnt - bpf_core_field_offset(struct mount, mnt);
}

// Writes the path of file into out (FILE_LEN bytes, NUL-terminated).
static __always_inline void build_path(struct file *file, char *out)
{
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	struct vfsmount *vmnt = BPF_CORE_READ(file, f_path.mnt);
	struct mount *mnt = real_mount(vmnt);
	struct path_work *w;
	__u32 zero = 0, n, off = 0;
	long len;

	w = bpf_map_lookup_elem(&path_work, &zero);
	if (!w)
		return;
	w->n = 0;
	w->pseudo = false;
	w->deep = false;

	// Leaf to root. The count is reloaded from the map at each step:
	// a value the verifier knows exactly would make it check the rest
	// of the program once per possible count and path.
	for (int i = 0; i < MAX_DEPTH + MAX_MOUNTS; i++) {
		struct dentry *parent = BPF_CORE_READ(d, d_parent);

		n = LOAD(w->n);
		if (d == BPF_CORE_READ(vmnt, mnt_root)) {
			struct mount *up = BPF_CORE_READ(mnt, mnt_parent);

			// The root of the mount tree is its own parent.
			if (up == mnt)
				break;
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = up;
			vmnt = (void *)up +
			       bpf_core_field_offset(struct mount, mnt);
			continue;
		}
		if (d == parent) {
			// A dentry outside any tree: a pseudo file.
			w->pseudo = n == 0;
			break;
		}
		if (n >= MAX_DEPTH) {
			w->deep = true;
			break;
		}
		w->dentries[n] = d;
		w->n = n + 1;
		d = parent;
	}

	if (LOAD(w->pseudo)) {
		// "<filesystem>:<name>"
		len = bpf_probe_read_kernel_str(
			w->buf, FILE_LEN / 2,
			BPF_CORE_READ(d, d_sb, s_type, name));
		if (len > 0) {
			off = len - 1;
			w->buf[off & (FILE_LEN - 1)] = ':';
			off++;
			barrier_var(off);
			len = bpf_probe_read_kernel_str(
				&w->buf[off & (FILE_LEN - 1)], FILE_LEN / 2,
				BPF_CORE_READ(d, d_name.name));
			if (len > 0)
				off += len - 1;
		}
	}

	if (LOAD(w->deep)) {
		w->buf[0] = '.';
		w->buf[1] = '.';
		w->buf[2] = '.';
		off = 3;
	}

	// Root to leaf.
	n = LOAD(w->n);
	for (int i = MAX_DEPTH - 1; i >= 0; i--) {
		// Loaded first: inside BPF_CORE_READ() the access to the
		// local struct would become a CO-RE relocation.
		struct dentry *dd = w->dentries[i];

		if ((__u32)i >= n)
			continue;
		if (off >= FILE_LEN - 1)
			break;
		w->buf[off & (FILE_LEN - 1)] = '/';
		off++;
		// Keep the mask: clang would drop it, knowing off < FILE_LEN,
		// but the verifier does not track the bound that precisely.
		barrier_var(off);
		len = bpf_probe_read_kernel_str(&w->buf[off & (FILE_LEN - 1)],
						FILE_LEN,
						BPF_CORE_READ(dd, d_name.name));
		if (len <= 0)
			break;
		off += len - 1;
	}

	if (off == 0) {
		w->buf[0] = '/';
		off = 1;
	}
	if (off > FILE_LEN - 1)
		off = FILE_LEN - 1;
	barrier_var(off);
	w->buf[off & (FILE_LEN - 1)] = '\0';
	bpf_probe_read_kernel(out, FILE_LEN, w->buf);
}

// A kernel dev_t (major << 20 | minor) in the encoding stat(2) returns
// (new_encode_dev() in include/linux/kdev_t.h).
static __always_inline __u32 user_dev(__u32 dev)
{
	__u32 major = dev >> 20, minor = dev & 0xfffff;

	return (minor & 0xff) | (major << 8) | ((minor & ~0xffU) << 12);
}

// The struct file behind file descriptor fd of the current task.
static __always_inline struct file *fd_to_file(__u32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;

	if (fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

static __always_inline int count(struct syscall_trace_exit *ctx, bool write)
{
	long ret = ctx->ret;
	struct file_key key = {};
	struct file_stats *st;
	struct pt_regs *regs;
	struct inode *inode;
	struct file *file;
	umode_t mode;

	if (ret < 0)
		return 0;
	if (gadget_should_discard_data_current())
		return 0;

	// All of these syscalls take the fd first.
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	file = fd_to_file(PT_REGS_PARM1_SYSCALL(regs));
	if (!file)
		return 0;
	inode = BPF_CORE_READ(file, f_inode);
	mode = BPF_CORE_READ(inode, i_mode);
	if (!all_files && (mode & S_IFMT) != S_IFREG)
		return 0;

	gadget_process_populate(&key.proc);
	key.dev = user_dev(BPF_CORE_READ(inode, i_sb, s_dev));
	key.inode = BPF_CORE_READ(inode, i_ino);

	st = bpf_map_lookup_elem(&stats, &key);
	if (!st) {
		bpf_map_update_elem(&stats, &key, &zero_stats, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&stats, &key);
		if (!st)
			return 0;
		if ((mode & S_IFMT) == S_IFREG)
			st->t_raw = R;
		else if ((mode & S_IFMT) == S_IFSOCK)
			st->t_raw = S;
		else
			st->t_raw = O;
		build_path(file, st->file);
	}
	if (write) {
		__sync_fetch_and_add(&st->writes, 1);
		__sync_fetch_and_add(&st->wbytes, ret);
	} else {
		__sync_fetch_and_add(&st->reads, 1);
		__sync_fetch_and_add(&st->rbytes, ret);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_read")
int ig_topfile_read(struct syscall_trace_exit *ctx)
{
	return count(ctx, false);
}

SEC("tracepoint/syscalls/sys_exit_pread64")
int ig_topfile_pread(struct syscall_trace_exit *ctx)
{
	return count(ctx, false);
}

SEC("tracepoint/syscalls/sys_exit_readv")
int ig_topfile_readv(struct syscall_trace_exit *ctx)
{
	return count(ctx, false);
}

SEC("tracepoint/syscalls/sys_exit_preadv")
int ig_topfile_preadv(struct syscall_trace_exit *ctx)
{
	return count(ctx, false);
}

SEC("tracepoint/syscalls/sys_exit_preadv2")
int ig_topfile_preadv2(struct syscall_trace_exit *ctx)
{
	return count(ctx, false);
}

SEC("tracepoint/syscalls/sys_exit_write")
int ig_topfile_write(struct syscall_trace_exit *ctx)
{
	return count(ctx, true);
}

SEC("tracepoint/syscalls/sys_exit_pwrite64")
int ig_topfile_pwrite(struct syscall_trace_exit *ctx)
{
	return count(ctx, true);
}

SEC("tracepoint/syscalls/sys_exit_writev")
int ig_topfile_writev(struct syscall_trace_exit *ctx)
{
	return count(ctx, true);
}

SEC("tracepoint/syscalls/sys_exit_pwritev")
int ig_topfile_pwritev(struct syscall_trace_exit *ctx)
{
	return count(ctx, true);
}

SEC("tracepoint/syscalls/sys_exit_pwritev2")
int ig_topfile_pwritev2(struct syscall_trace_exit *ctx)
{
	return count(ctx, true);
}

char LICENSE[] SEC("license") = "GPL";
