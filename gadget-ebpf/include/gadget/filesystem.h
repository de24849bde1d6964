/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/filesystem.h - the full path of a struct path, walked in the
 * kernel.
 *
 * The kernel keeps no path string for an open file or a working directory:
 * only a chain of dentries (one per path component, each pointing to its
 * parent) inside a chain of mounts. get_path_str() climbs both chains up to
 * the root mount of the path's mount namespace (the mount that is its own
 * parent), and writes the components into a per-CPU scratch buffer from
 * right to left:
 *
 *	buf:  [ ... unused ... | / a / b / c \0 ]
 *	                         ^ returned    ^ middle of the buffer
 *
 * The path ends in the middle of the 32 KiB buffer, so that every write
 * the verifier sees lands inside the buffer once its offset is masked to
 * the lower half. A path deeper than MAX_PATH_COMPONENTS components is cut
 * at the top (its start is missing). A file with no name in the file
 * system (memfd, pipe, anonymous inode) gets its dentry's own name, e.g.
 * "memfd:name" or "pipe:", without a leading slash.
 *
 * The returned string lives in the scratch buffer until the next call on
 * this CPU: copy it into the event (bpf_probe_read_kernel_str() up to
 * GADGET_PATH_MAX bytes) before anything else uses the buffer.
 *
 * Names, sizes and the map `bufs` are upstream's (whose version derives
 * from Tracee's). Tracing gadgets only: include <vmlinux.h> first.
 */

#ifndef __GADGET_FILESYSTEM_H
#define __GADGET_FILESYSTEM_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* Size of the per-CPU scratch buffer (the largest value a map may have is
 * far larger; this is what the path walk needs). */
#define MAX_PERCPU_BUFSIZE (1 << 15)
/* How much of a path gadgets copy into their events: less than PATH_MAX,
 * to keep events small. */
#define GADGET_PATH_MAX 512
/* The kernel's limit on a path, in bytes. */
#define PATH_MAX 4096
/* Components walked at most (each one costs verifier instructions). */
#define MAX_PATH_COMPONENTS 80

/* Constants upstream's header also defines (inherited from Tracee, unused
 * by the functions here), so that gadgets relying on them compile. */
#define MAX_STR_FILTER_SIZE 16
#define MAX_BIN_PATH_SIZE 256
#define FILE_MAGIC_HDR_SIZE 32
#define FILE_MAGIC_MASK 31
#define NET_SEQ_OPS_SIZE 4
#define NET_SEQ_OPS_TYPES 6
#define MAX_KSYM_NAME_SIZE 64
#define UPROBE_MAGIC_NUMBER 20220829
#define ARGS_BUF_SIZE 32000
#define SEND_META_SIZE 24
#define MAX_MEM_DUMP_SIZE 127

/* Index of the scratch buffers in `bufs`. */
enum buf_idx_e {
	STRING_BUF_IDX,
	MAX_BUFFERS,
};

typedef struct simple_buf {
	__u8 buf[MAX_PERCPU_BUFSIZE];
} buf_t;

/* Per-CPU scratch buffers, one per buf_idx_e. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BUFFERS);
	__type(key, __u32);
	__type(value, buf_t);
} bufs SEC(".maps");

/* This CPU's scratch buffer number idx, or NULL for a bad idx. */
static __always_inline buf_t *get_buf(int idx)
{
	__u32 key = idx;

	return bpf_map_lookup_elem(&bufs, &key);
}

/* Root dentry of the file system a vfsmount shows. */
static __always_inline struct dentry *
get_mnt_root_ptr_from_vfsmnt(struct vfsmount *vfsmnt)
{
	return BPF_CORE_READ(vfsmnt, mnt_root);
}

/* Parent of a dentry; a root dentry is its own parent. */
static __always_inline struct dentry *
get_d_parent_ptr_from_dentry(struct dentry *dentry)
{
	return BPF_CORE_READ(dentry, d_parent);
}

/* Name of a dentry (not NUL-terminated in general: use .len). */
static __always_inline struct qstr get_d_name_from_dentry(struct dentry *dentry)
{
	return BPF_CORE_READ(dentry, d_name);
}

/* The struct mount that embeds a vfsmount (as the kernel's real_mount()).
 * The member's offset is relocated to the running kernel's. */
static __always_inline struct mount *real_mount(struct vfsmount *mnt)
{
	return (void *)mnt - bpf_core_field_offset(struct mount, mnt);
}

/* Half the scratch buffer: the path ends there; offsets are masked with
 * __GADGET_HALF_MASK so that the verifier can bound every write. */
#define __GADGET_HALF (MAX_PERCPU_BUFSIZE >> 1)
#define __GADGET_HALF_MASK (__GADGET_HALF - 1)
/* The longest name of one path component (NAME_MAX). */
#define __GADGET_NAME_MAX 255

/* v, hidden from the compiler, which then keeps the mask that follows. */
static __always_inline __u32 __gadget_opaque_u32(__u32 v)
{
	asm volatile("" : "+r"(v));
	return v;
}

/* Where a path walk is: the component to add next, its mount, and how far
 * the string reaches back from the middle of the buffer. */
struct __gadget_path_walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	struct mount *up; /* mnt's parent; mnt itself at the top */
	buf_t *out;
	__u32 start; /* the path is out->buf[start, __GADGET_HALF) */
};

/*
 * One step up: prepend the current component, or cross to the mount below.
 * Returns 1 when the walk is over (the top, a detached dentry, a name that
 * does not fit), 0 to go on. A bpf_loop() callback, or called in an
 * unrolled loop on kernels without bpf_loop().
 */
static long __gadget_path_step(__u32 i, void *data)
{
	struct __gadget_path_walk *w = data;
	struct dentry *root = get_mnt_root_ptr_from_vfsmnt(w->vfsmnt);
	struct dentry *parent = get_d_parent_ptr_from_dentry(w->dentry);
	buf_t *out = w->out;
	struct qstr name;
	__u32 start = w->start;
	__u32 len;

	/* Kernel pointers are copied out of *w before CO-RE reads: inside
	 * BPF_CORE_READ(), w->mnt would be a relocation against this file's
	 * own struct, which the kernel does not have. */
	struct mount *mnt = w->mnt;
	struct mount *up = w->up;

	if (w->dentry == root) {
		/* Top of this mount: the top of all, or go on from where
		 * it is mounted, in the mount below. */
		if (mnt == up)
			return 1;
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = up;
		w->up = BPF_CORE_READ(up, mnt_parent);
		w->vfsmnt = (void *)up +
			    bpf_core_field_offset(struct mount, mnt);
		return 0;
	}
	if (w->dentry == parent)
		return 1; /* a root that is not its mount's: detached */

	/* Prepend "/" and the name. */
	name = get_d_name_from_dentry(w->dentry);
	len = name.len;
	if (!out || len == 0 || len > __GADGET_NAME_MAX || len + 1 > start)
		return 1;
	start -= len;
	bpf_probe_read_kernel(&out->buf[start & __GADGET_HALF_MASK],
			      len & __GADGET_NAME_MAX, name.name);
	start -= 1;
	out->buf[start & __GADGET_HALF_MASK] = '/';
	/*
	 * A no-op (start stays below __GADGET_HALF), for the verifier: it
	 * forgets how many bytes were written so far, so that the states it
	 * reaches at the next step are alike and pruned, instead of one per
	 * number of names written.
	 */
	w->start = __gadget_opaque_u32(start) & __GADGET_HALF_MASK;
	w->dentry = parent;
	return 0;
}

/*
 * get_path_str(path) returns the full path of *path (a kernel pointer, or
 * a copy on the BPF stack), in this CPU's scratch buffer; NULL only when
 * the buffer cannot be had. See the top of this file.
 *
 * The walk runs under bpf_loop() where the kernel has it (5.17+): the
 * verifier then checks one step, not MAX_PATH_COMPONENTS of them, which
 * keeps the load time of a gadget calling this from several programs
 * short. Older kernels get the unrolled loop; the choice is a CO-RE check,
 * fixed at load time, so only one of the two is verified.
 */
static __always_inline void *get_path_str(const struct path *path)
{
	struct vfsmount *vfsmnt = BPF_CORE_READ(path, mnt);
	struct mount *mnt = real_mount(vfsmnt);
	struct __gadget_path_walk w = {
		.dentry = BPF_CORE_READ(path, dentry),
		.vfsmnt = vfsmnt,
		.mnt = mnt,
		.up = BPF_CORE_READ(mnt, mnt_parent),
		.start = __GADGET_HALF - 1,
	};
	buf_t *out = get_buf(STRING_BUF_IDX);

	if (!out)
		return NULL;
	w.out = out;
	out->buf[__GADGET_HALF - 1] = '\0';

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_loop)) {
		bpf_loop(MAX_PATH_COMPONENTS, __gadget_path_step, &w, 0);
	} else {
#pragma unroll
		for (int i = 0; i < MAX_PATH_COMPONENTS; i++)
			if (__gadget_path_step(i, &w))
				break;
	}

	if (w.start == __GADGET_HALF - 1) {
		/* Nothing climbed: "/" itself, or a file outside any tree. */
		struct dentry *last = w.dentry;
		struct qstr name = get_d_name_from_dentry(last);

		bpf_probe_read_kernel_str(&out->buf[0], __GADGET_NAME_MAX + 1,
					  name.name);
		return &out->buf[0];
	}
	return &out->buf[w.start & __GADGET_HALF_MASK];
}

/* The struct file of the current task's descriptor fd, or NULL. */
static __always_inline struct file *get_struct_file_for_fd(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **table;
	struct file *f = NULL;
	unsigned int max;

	if (fd < 0 || !task)
		return NULL;
	table = BPF_CORE_READ(task, files, fdt, fd);
	max = BPF_CORE_READ(task, files, fdt, max_fds);
	if ((unsigned int)fd >= max)
		return NULL;
	bpf_core_read(&f, sizeof(f), &table[fd]);
	return f;
}

/*
 * read_full_path_of_open_file_fd(fd, buf, size) writes the full path of
 * the current task's open descriptor fd into buf (NUL-terminated, cut at
 * size bytes). Returns what bpf_probe_read_kernel_str() returns (the
 * length with the NUL), or -1 when fd is not open.
 */
static __always_inline long read_full_path_of_open_file_fd(int fd, char *buf,
							  __u64 size)
{
	struct file *file = get_struct_file_for_fd(fd);
	struct path path;
	char *str;

	if (!file)
		return -1;
	path = BPF_CORE_READ(file, f_path);
	str = get_path_str(&path);
	if (!str)
		return -1;
	return bpf_probe_read_kernel_str(buf, size, str);
}

#endif /* __GADGET_FILESYSTEM_H */
