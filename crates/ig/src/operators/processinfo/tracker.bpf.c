// SPDX-License-Identifier: GPL-2.0
//
// The process tracker of `ig run --enrich-process`: tells user space, as it
// happens, which program every new process runs (exec: its command line and
// its executable's path) and which processes ended (exit). User space keeps
// a table by pid from these records, so enriching an event costs a table
// lookup instead of reading /proc, and short-lived processes (gone before
// /proc could be read) are enriched too.
//
// Two records per process, not three: a fork is kept here (ig_proc_forked)
// until the child execs, whose record says it all, or exits, whose record
// then names the parent it was forked from (it ran that program to the
// end). Only when that table is full is a fork sent as a record of its
// own. See src/operators/processinfo/tracker.rs for the reader and the
// record layout, which must match `struct rec` below.
//
// Built by build.rs with clang alone: no vmlinux.h and no libbpf headers, so
// building ig needs nothing more than a clang that targets BPF. The kernel
// structures below declare only the members we read; with
// preserve_access_index, clang records each access as a CO-RE relocation
// that the loader resolves against the running kernel's BTF.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define CORE __attribute__((preserve_access_index))

struct qstr {
	union {
		struct {
			__u32 hash;
			__u32 len;
		};
		__u64 hash_len;
	};
	const unsigned char *name;
} CORE;

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
} CORE;

struct vfsmount {
	struct dentry *mnt_root;
} CORE;

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} CORE;

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} CORE;

struct file {
	struct path f_path;
} CORE;

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
	struct file *exe_file;
} CORE;

struct task_struct {
	int pid;
	int tgid;
	struct mm_struct *mm;
	struct task_struct *real_parent;
} CORE;

// Helper numbers from the kernel's enum bpf_func_id (UAPI, stable).
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key,
				   const void *value, __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_get_current_task)(void) = (void *)35;
static long (*bpf_probe_read_user)(void *dst, __u32 size,
				   const void *src) = (void *)112;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size,
				     const void *src) = (void *)113;
static long (*bpf_probe_read_kernel_str)(void *dst, __u32 size,
					 const void *src) = (void *)115;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size,
				  __u64 flags) = (void *)130;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx,
			__u64 flags) = (void *)181;

// Reads a kernel pointer or scalar member; 0 if the read fails.
#define READ(dst, src) bpf_probe_read_kernel(&(dst), sizeof(dst), &(src))

// enum bpf_ringbuf_output flags (UAPI).
#define BPF_RB_NO_WAKEUP 1

#define REC_EXEC 1
#define REC_FORK 2
#define REC_EXIT 3

// Command lines longer than this are cut (the record says so by its
// length); paths deeper than MAX_DEPTH components or longer than PATH_MAX
// are cut at the root side.
#define ARGS_MAX 4096
#define PATH_MAX 4096
#define NAME_MAX 256
#define MAX_DEPTH 64

// The area the command line and the path share, a power of two so that an
// offset into it can be bounded with a mask.
#define DATA_MAX (ARGS_MAX + PATH_MAX)

// One record. `args_len` bytes of command line (NUL-separated arguments, as
// in /proc/PID/cmdline) follow the header, then `path_len` bytes of the
// executable's path components from the file up to the root, each ending
// in a NUL.
struct rec {
	__u32 kind;
	__u32 pid;
	__u32 ppid;
	__u16 args_len;
	__u16 path_len;
	// NAME_MAX of slack: the verifier checks that a name read at any
	// masked offset fits.
	__u8 data[DATA_MAX + NAME_MAX];
};

struct {
	int (*type)[27]; // BPF_MAP_TYPE_RINGBUF
	int (*max_entries)[1 << 20];
} ig_proc_events SEC(".maps");

// Records the ring buffer had no room for. User space checks it on its
// timer: after a loss its table may be stale, so it starts over from /proc.
struct {
	int (*type)[6]; // BPF_MAP_TYPE_PERCPU_ARRAY
	int (*max_entries)[1];
	__u32 *key;
	__u64 *value;
} ig_proc_events_lost_samples SEC(".maps");

// Processes forked while ig runs that have not exec'd yet: pid -> the
// parent's pid at the fork. A fork is not reported by itself: most
// children exec at once, and their exec record names the parent and the
// program; a fork record would be read, applied (the parent's strings
// copied into the child) and overwritten by the exec's for nothing. The
// exit record of a child still here says it never exec'd, and whose child
// it was (real_parent at the exit may be a reaper it was handed to). A
// plain hash, not LRU: when it is full the fork is reported the old way,
// by a fork record, rather than a pending child forgotten.
#define FORKED_MAX 65536

struct {
	int (*type)[1]; // BPF_MAP_TYPE_HASH
	int (*max_entries)[FORKED_MAX];
	__u32 *key;
	__u32 *value;
} ig_proc_forked SEC(".maps");

static void output(struct rec *r, __u64 size)
{
	__u32 zero = 0;
	__u64 *lost;

	// No wake-up: nobody sleeps on this ring. The reader drains it
	// before each event it enriches, so a wake-up would only cost the
	// process doing the exec (or fork, or exit) an interrupt.
	if (!bpf_ringbuf_output(&ig_proc_events, r, size, BPF_RB_NO_WAKEUP))
		return;
	lost = bpf_map_lookup_elem(&ig_proc_events_lost_samples, &zero);
	if (lost)
		*lost += 1;
}

// Where the path walk is, between steps. It lives in the map value, not
// on the stack: the verifier tracks stack values exactly and would check
// every step of the loop with each possible offset (a million instructions
// and a refusal); map values it treats as unknown, so one pass suffices.
struct walk {
	struct dentry *dentry;
	struct mount *mnt;
	__u32 off;
};

struct scratch {
	struct walk w;
	struct rec r;
};

struct {
	int (*type)[6]; // BPF_MAP_TYPE_PERCPU_ARRAY
	int (*max_entries)[1];
	__u32 *key;
	struct scratch *value;
} ig_proc_scratch SEC(".maps");

static struct scratch *scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ig_proc_scratch, &zero);
}

// A fork or exit record: the header alone.
static void emit_small(__u32 kind, __u32 pid, __u32 ppid)
{
	struct scratch *s = scratch();
	struct rec *r;

	if (!s)
		return;
	r = &s->r;
	r->kind = kind;
	r->pid = pid;
	r->ppid = ppid;
	r->args_len = 0;
	r->path_len = 0;
	output(r, __builtin_offsetof(struct rec, data));
}

// One step towards the root: append the current component's name, or cross
// from the root of a mount to the directory it is mounted on. Returns 1 to
// stop (reached the root, out of room, or a read failed).
static long walk_step(__u32 i, void *unused)
{
	struct scratch *s = scratch();
	struct dentry *d, *parent = 0, *mnt_root = 0;
	struct mount *m, *mparent = 0;
	const unsigned char *name = 0;
	struct walk *w;
	__u32 off;
	long n;

	if (!s)
		return 1;
	w = &s->w;
	d = w->dentry;
	m = w->mnt;

	READ(parent, d->d_parent);
	READ(mnt_root, m->mnt.mnt_root);
	if (d == mnt_root || d == parent) {
		READ(mparent, m->mnt_parent);
		if (!mparent || mparent == m)
			return 1;
		READ(w->dentry, m->mnt_mountpoint);
		w->mnt = mparent;
		return 0;
	}
	off = w->off;
	if (off >= DATA_MAX - NAME_MAX)
		return 1;
	READ(name, d->d_name.name);
	n = bpf_probe_read_kernel_str(&s->r.data[off & (DATA_MAX - 1)], NAME_MAX,
				      name);
	if (n <= 0)
		return 1;
	w->off = off + n;
	w->dentry = parent;
	return 0;
}

// A tracepoint program, not tp_btf like the others: BPF programs attached
// to a tracepoint through perf run in the order they were attached, and ig
// attaches this one before the gadget's (pre_start). A gadget that emits
// its exec event from this same tracepoint (trace_exec does) then finds the
// exec record already in our ring when its event is read; as a raw
// tracepoint this program could run after a perf-attached one, and the
// event was sometimes handled with the command line the process had before
// its exec.
SEC("tracepoint/sched/sched_process_exec")
int ig_proc_exec(void *ctx)
{
	// The task doing the exec.
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *parent = 0;
	struct mm_struct *mm = 0;
	struct file *exe = 0;
	unsigned long start = 0, end = 0, len;
	struct vfsmount *vfsmnt = 0;
	struct scratch *s = scratch();
	struct walk *w;
	struct rec *r;
	int tgid = 0, ptgid = 0;

	if (!s)
		return 0;
	w = &s->w;
	r = &s->r;
	READ(tgid, task->tgid);
	READ(parent, task->real_parent);
	if (parent)
		READ(ptgid, parent->tgid);
	READ(mm, task->mm);
	if (!mm)
		return 0;
	READ(start, mm->arg_start);
	READ(end, mm->arg_end);
	READ(exe, mm->exe_file);

	len = end > start ? end - start : 0;
	if (len > ARGS_MAX)
		len = ARGS_MAX;
	// The arguments were just copied to the new stack: they are present.
	if (bpf_probe_read_user(r->data, len & (DATA_MAX - 1), (void *)start))
		len = 0;
	w->off = len;
	w->dentry = 0;

	if (exe) {
		READ(w->dentry, exe->f_path.dentry);
		READ(vfsmnt, exe->f_path.mnt);
		// container_of(vfsmnt, struct mount, mnt), with the offset
		// relocated for this kernel.
		w->mnt = (struct mount *)((void *)vfsmnt -
					  __builtin_preserve_field_info(((struct mount *)0)->mnt, 0));
		if (w->dentry && vfsmnt)
			bpf_loop(MAX_DEPTH, walk_step, 0, 0);
	}

	r->kind = REC_EXEC;
	r->pid = tgid;
	r->ppid = ptgid;
	r->args_len = len;
	r->path_len = w->off - len;
	output(r, __builtin_offsetof(struct rec, data) + (w->off & (DATA_MAX - 1)));
	// It runs a program of its own now: its exit needs no parent.
	bpf_map_delete_elem(&ig_proc_forked, &tgid);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int ig_proc_fork(__u64 *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx[0];
	struct task_struct *child = (struct task_struct *)ctx[1];
	int pid = 0, tgid = 0, ptgid = 0;

	READ(pid, child->pid);
	READ(tgid, child->tgid);
	// A new thread is not a new process.
	if (pid != tgid)
		return 0;
	READ(ptgid, parent->tgid);
	if (bpf_map_update_elem(&ig_proc_forked, &tgid, &ptgid, 0))
		emit_small(REC_FORK, tgid, ptgid);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int ig_proc_exit(__u64 *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx[0];
	int pid = 0, tgid = 0;
	__u32 *forked, ppid = 0;

	READ(pid, task->pid);
	READ(tgid, task->tgid);
	if (pid != tgid)
		return 0;
	// A child that never exec'd ran its parent's program to the end.
	forked = bpf_map_lookup_elem(&ig_proc_forked, &tgid);
	if (forked) {
		ppid = *forked;
		bpf_map_delete_elem(&ig_proc_forked, &tgid);
	}
	emit_small(REC_EXIT, tgid, ppid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
