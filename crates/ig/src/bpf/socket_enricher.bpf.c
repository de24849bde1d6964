// SPDX-License-Identifier: GPL-2.0
//
// The socket enricher: keeps the map gadget_sockets (gadget/sockets-map.h)
// saying which process owns each TCP and UDP socket of the host, keyed by
// (network namespace, family, protocol, local port), so that networking
// gadgets can attribute a packet to a process. See
// src/bpf/socket_enricher.rs for the user-space side and
// docs/design/007-socket-enricher-without-kprobes.md for why it is built
// this way.
//
// Upstream's enricher hooks kernel functions with kprobes (inet_bind,
// tcp_connect, udp_sendmsg, inet_release). This kernel has none, so ours
// uses what every kernel with BPF has:
// - ig_se_seed, an iter/task_file program user space runs once at start:
//   every socket every task holds (the sockets that exist before ig);
// - the syscalls tracepoints of bind, connect, sendto, sendmsg and
//   sendmmsg: the socket is found from the fd in the caller's file table,
//   in the caller's context, so the process is the current task; the enter
//   tracepoint remembers the fd for the exit one (bind and connect, and a
//   send on a socket not bound yet, are recorded once they are done);
// - tp_btf/inet_sock_set_state: a TCP socket going to CLOSE is marked
//   deleted (deletion_timestamp), as upstream's inet_release kprobe does;
//   user space removes marked entries 5 seconds later (ig_se_dying);
// - ig_se_live, an iter/task_file program user space runs every few
//   seconds to find entries whose socket no task holds any more (UDP
//   sockets have no tracepoint at close): they are marked the same way.
//
// struct gadget_socket_value is declared with preserve_access_index, as
// upstream's: its member accesses are CO-RE relocations that ig resolves
// against the BTF of the layout it configured (--socket-enricher-fields),
// the same BTF the gadgets' accesses are resolved against. gadget_sockets
// itself is created by user space with that layout's size and put in
// place of the map declared here.
//
// Built by build.rs with clang alone (no vmlinux.h, no libbpf headers),
// like the process tracker: the kernel structures below declare only the
// members read, with preserve_access_index.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef long long __s64;

#define SEC(name) __attribute__((section(name), used))
#define CORE __attribute__((preserve_access_index))

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define EINPROGRESS 115
#define TASK_COMM_LEN 16

// --- Kernel structures (members read only) --------------------------------

struct ns_common {
	unsigned int inum;
} CORE;

struct mnt_namespace {
	struct ns_common ns;
} CORE;

struct nsproxy {
	struct mnt_namespace *mnt_ns;
} CORE;

struct net {
	struct ns_common ns;
} CORE;

typedef struct {
	struct net *net;
} CORE possible_net_t;

struct sock_common {
	unsigned short skc_family;
	unsigned char skc_state;
	unsigned char skc_ipv6only : 1;
	possible_net_t skc_net;
} CORE;

struct sock {
	struct sock_common __sk_common;
	unsigned short sk_protocol;
} CORE;

struct inet_sock {
	struct sock sk;
	unsigned short inet_sport;
} CORE;

struct file;

struct socket {
	struct sock *sk;
	struct file *file;
} CORE;

// x86_64's registers at syscall entry (the raw sys_enter/sys_exit
// tracepoints' first argument).
struct pt_regs {
	unsigned long di;
	unsigned long orig_ax;
} CORE;

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
	void *private_data;
} CORE;

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} CORE;

struct files_struct {
	struct fdtable *fdt;
} CORE;

struct fs_struct {
	struct path pwd;
} CORE;

struct mm_struct {
	struct file *exe_file;
} CORE;

typedef struct {
	unsigned int val;
} CORE kuid_t;

typedef struct {
	unsigned int val;
} CORE kgid_t;

struct cred {
	kuid_t uid;
	kgid_t gid;
} CORE;

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
	char comm[TASK_COMM_LEN];
	struct nsproxy *nsproxy;
	struct files_struct *files;
	struct fs_struct *fs;
	struct mm_struct *mm;
	const struct cred *real_cred;
} CORE;

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} CORE;

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
} CORE;

struct trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
};

struct trace_event_raw_sys_enter {
	struct trace_entry ent;
	long id;
	unsigned long args[6];
} CORE;

struct trace_event_raw_sys_exit {
	struct trace_entry ent;
	long id;
	long ret;
} CORE;

// --- The map's key and value (gadget/sockets-map.h, gadget/types.h) ------

struct gadget_socket_key {
	__u32 netns;
	__u16 family;
	__u8 proto;
	__u16 port;
};

#define GADGET_SE_PATH_MAX 4096

struct gadget_socket_value {
	__u64 mntns;
	__u64 pid_tgid;
	__u64 uid_gid;
	char task[TASK_COMM_LEN];
	char ptask[TASK_COMM_LEN];
	__u64 sock;
	__u64 deletion_timestamp;
	__u32 ppid;
	__u32 ptid;
	char ipv6only;
	char optional_fields_start[0] __attribute__((aligned(8)));
	char cwd[GADGET_SE_PATH_MAX];
	char exepath[GADGET_SE_PATH_MAX];
} CORE;

// --- Helpers (enum bpf_func_id, UAPI, stable) -----------------------------

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key,
				   const void *value, __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static __u64 (*bpf_get_current_uid_gid)(void) = (void *)15;
static __u64 (*bpf_get_current_task)(void) = (void *)35;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size,
				     const void *src) = (void *)113;
static long (*bpf_probe_read_kernel_str)(void *dst, __u32 size,
					 const void *src) = (void *)115;
static long (*bpf_seq_write)(struct seq_file *m, const void *data,
			     __u32 len) = (void *)127;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx,
			__u64 flags) = (void *)181;

#define BPF_ANY 0
#define BPF_NOEXIST 1

// A kernel pointer or scalar member; left as it was if the read fails.
#define READ(dst, src) bpf_probe_read_kernel(&(dst), sizeof(dst), &(src))

// CO-RE field information (clang's __builtin_preserve_field_info kinds).
#define FIELD_BYTE_OFFSET 0
#define FIELD_BYTE_SIZE 1
#define FIELD_EXISTS 2
#define FIELD_LSHIFT_U64 4
#define FIELD_RSHIFT_U64 5

// A member that may be a bitfield (skc_ipv6only; sk_protocol was one
// before Linux 5.6), read as libbpf's BPF_CORE_READ_BITFIELD_PROBED does.
#define READ_BITFIELD(s, field)                                             \
	({                                                                  \
		__u64 __v = 0;                                              \
		bpf_probe_read_kernel(                                      \
			&__v,                                               \
			__builtin_preserve_field_info((s)->field,           \
						      FIELD_BYTE_SIZE),     \
			(void *)(s) + __builtin_preserve_field_info(        \
					      (s)->field, FIELD_BYTE_OFFSET)); \
		__v <<= __builtin_preserve_field_info((s)->field,           \
						      FIELD_LSHIFT_U64);    \
		__v >>= __builtin_preserve_field_info((s)->field,           \
						      FIELD_RSHIFT_U64);    \
		__v;                                                        \
	})

static inline __u16 ntohs(__u16 v)
{
	return __builtin_bswap16(v);
}

// --- Maps ------------------------------------------------------------------

// Replaced by user space with the map it created (the configured value
// size); declared for the references only.
struct {
	int (*type)[1]; // BPF_MAP_TYPE_HASH
	int (*max_entries)[16384];
	struct gadget_socket_key *key;
	struct gadget_socket_value *value;
} gadget_sockets SEC(".maps");

// Sockets marked deleted, with the time: user space removes them from
// gadget_sockets once expired, without walking that map.
struct {
	int (*type)[1]; // BPF_MAP_TYPE_HASH
	int (*max_entries)[16384];
	struct gadget_socket_key *key;
	__u64 *value;
} ig_se_dying SEC(".maps");

// The fd of a bind, connect or send, from its enter tracepoint to its
// exit one, by thread.
struct {
	int (*type)[1]; // BPF_MAP_TYPE_HASH
	int (*max_entries)[16384];
	__u64 *key;
	__u32 *value;
} ig_se_fds SEC(".maps");

// Where a value is built (too big for the stack), and the path walk.
#define PATH_BUF 8192
#define PATH_HALF (PATH_BUF / 2)
#define NAME_MAX 255
#define MAX_DEPTH 64

struct walk {
	struct dentry *dentry;
	struct mount *mnt;
	__u32 start;
};

struct scratch {
	struct gadget_socket_value value;
	struct walk w;
	char path[PATH_BUF];
};

struct {
	int (*type)[6]; // BPF_MAP_TYPE_PERCPU_ARRAY
	int (*max_entries)[1];
	__u32 *key;
	struct scratch *value;
} ig_se_scratch SEC(".maps");

static struct scratch *scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ig_se_scratch, &zero);
}

// --- Paths (cwd, exepath) --------------------------------------------------

// One step towards the root: prepend "/name", or cross from the root of a
// mount to where it is mounted. Returns 1 to stop. The walk state lives in
// the map value, so that the verifier checks one step, not one per depth.
static long path_step(__u32 i, void *unused)
{
	struct scratch *s = scratch();
	struct dentry *d, *parent = 0, *mnt_root = 0;
	struct mount *m, *mparent = 0;
	const unsigned char *name = 0;
	__u32 len = 0, start;
	struct walk *w;

	if (!s)
		return 1;
	w = &s->w;
	d = w->dentry;
	m = w->mnt;
	READ(parent, d->d_parent);
	READ(mnt_root, m->mnt.mnt_root);
	if (d == mnt_root) {
		READ(mparent, m->mnt_parent);
		if (!mparent || mparent == m)
			return 1;
		READ(w->dentry, m->mnt_mountpoint);
		w->mnt = mparent;
		return 0;
	}
	if (d == parent)
		return 1; // a root that is not its mount's: detached
	READ(len, d->d_name.len);
	READ(name, d->d_name.name);
	start = w->start;
	if (len == 0 || len > NAME_MAX || len + 1 > start)
		return 1;
	start -= len;
	bpf_probe_read_kernel(&s->path[start & (PATH_HALF - 1)],
			      len & NAME_MAX, name);
	start -= 1;
	s->path[start & (PATH_HALF - 1)] = '/';
	w->start = start & (PATH_HALF - 1);
	w->dentry = parent;
	return 0;
}

// The full path of *p into dst (size bytes, a CO-RE constant).
static void path_into(struct scratch *s, struct path *p, char *dst, __u32 size)
{
	struct vfsmount *vfsmnt = 0;

	s->w.dentry = 0;
	READ(s->w.dentry, p->dentry);
	READ(vfsmnt, p->mnt);
	// container_of(vfsmnt, struct mount, mnt), relocated for this kernel.
	s->w.mnt = (struct mount *)((void *)vfsmnt -
				    __builtin_preserve_field_info(
					    ((struct mount *)0)->mnt,
					    FIELD_BYTE_OFFSET));
	s->w.start = PATH_HALF - 1;
	s->path[PATH_HALF - 1] = 0;
	if (s->w.dentry && vfsmnt)
		bpf_loop(MAX_DEPTH, path_step, 0, 0);
	if (s->w.start == PATH_HALF - 1) {
		// The root itself, or nothing could be read.
		s->w.start = PATH_HALF - 2;
		s->path[PATH_HALF - 2] = '/';
	}
	bpf_probe_read_kernel_str(dst, size,
				  &s->path[s->w.start & (PATH_HALF - 1)]);
}

// --- Keys and values -------------------------------------------------------

// The key of socket sk; 0 for sockets that are not TCP or UDP over IP.
static int key_of(struct sock *sk, struct gadget_socket_key *key)
{
	struct inet_sock *inet = (struct inet_sock *)sk;
	struct net *net = 0;
	__u16 sport = 0;

	__builtin_memset(key, 0, sizeof(*key));
	READ(key->family, sk->__sk_common.skc_family);
	if (key->family != AF_INET && key->family != AF_INET6)
		return 0;
	key->proto = READ_BITFIELD(sk, sk_protocol);
	if (key->proto != IPPROTO_TCP && key->proto != IPPROTO_UDP)
		return 0;
	READ(net, sk->__sk_common.skc_net.net);
	READ(key->netns, net->ns.inum);
	READ(sport, inet->inet_sport);
	key->port = ntohs(sport);
	return 1;
}

// Fill the value for socket sk owned by task (uid/gid given: the current
// ones in a tracepoint, the task's real credentials in the iterator).
static void fill(struct scratch *s, struct task_struct *task, struct sock *sk,
		 __u64 uid_gid)
{
	struct gadget_socket_value *v = &s->value;
	struct task_struct *parent = 0;
	struct nsproxy *ns = 0;
	struct mnt_namespace *mnt_ns = 0;
	int pid = 0, tgid = 0;

	READ(ns, task->nsproxy);
	READ(mnt_ns, ns->mnt_ns);
	v->mntns = 0;
	READ(pid, task->pid);
	READ(tgid, task->tgid);
	if (mnt_ns) {
		unsigned int inum = 0;

		READ(inum, mnt_ns->ns.inum);
		v->mntns = inum;
	}
	v->pid_tgid = ((__u64)tgid << 32) | (__u32)pid;
	v->uid_gid = uid_gid;
	bpf_probe_read_kernel_str(v->task, TASK_COMM_LEN, task->comm);
	READ(parent, task->real_parent);
	v->ppid = 0;
	v->ptid = 0;
	v->ptask[0] = 0;
	if (parent) {
		bpf_probe_read_kernel_str(v->ptask, TASK_COMM_LEN, parent->comm);
		READ(v->ppid, parent->tgid);
		READ(v->ptid, parent->pid);
	}
	v->sock = (__u64)sk;
	v->deletion_timestamp = 0;
	v->ipv6only = READ_BITFIELD(sk, __sk_common.skc_ipv6only);
	if (__builtin_preserve_field_info(v->cwd, FIELD_EXISTS)) {
		struct fs_struct *fs = 0;

		v->cwd[0] = 0;
		READ(fs, task->fs);
		if (fs)
			path_into(s, &fs->pwd, v->cwd,
				  __builtin_preserve_field_info(v->cwd,
								FIELD_BYTE_SIZE));
	}
	if (__builtin_preserve_field_info(v->exepath, FIELD_EXISTS)) {
		struct mm_struct *mm = 0;
		struct file *exe = 0;

		v->exepath[0] = 0;
		READ(mm, task->mm);
		if (mm)
			READ(exe, mm->exe_file);
		if (exe)
			path_into(s, &exe->f_path, v->exepath,
				  __builtin_preserve_field_info(
					  v->exepath, FIELD_BYTE_SIZE));
	}
}

// The socket behind fd of the current task, or 0: the file must be a
// socket's (its private data a struct socket pointing back at it).
static struct sock *sock_of_fd(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct files_struct *files = 0;
	struct fdtable *fdt = 0;
	struct file **fds = 0;
	struct file *file = 0, *back = 0;
	struct socket *socket = 0;
	struct sock *sk = 0;
	unsigned int max = 0;

	if (fd < 0)
		return 0;
	READ(files, task->files);
	if (!files)
		return 0;
	READ(fdt, files->fdt);
	if (!fdt)
		return 0;
	READ(max, fdt->max_fds);
	if ((unsigned int)fd >= max)
		return 0;
	READ(fds, fdt->fd);
	if (!fds || bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	READ(socket, file->private_data);
	if (!socket)
		return 0;
	READ(back, socket->file);
	if (back != file)
		return 0;
	READ(sk, socket->sk);
	return sk;
}

// Record the current task as the owner of sk, unless it already is.
static void insert_current(struct sock *sk)
{
	struct gadget_socket_key key;
	struct gadget_socket_value *old;
	struct scratch *s;

	if (!sk || !key_of(sk, &key) || key.port == 0)
		return;
	old = bpf_map_lookup_elem(&gadget_sockets, &key);
	if (old && old->sock == (__u64)sk && old->deletion_timestamp == 0)
		return;
	s = scratch();
	if (!s)
		return;
	fill(s, (struct task_struct *)bpf_get_current_task(), sk,
	     bpf_get_current_uid_gid());
	bpf_map_update_elem(&gadget_sockets, &key, &s->value, BPF_ANY);
	bpf_map_delete_elem(&ig_se_dying, &key);
}

// Mark sk's entry deleted (if it is sk's), for user space to remove later.
static void mark_deleted(struct sock *sk)
{
	struct gadget_socket_key key;
	struct gadget_socket_value *v;
	__u64 now;

	if (!key_of(sk, &key))
		return;
	v = bpf_map_lookup_elem(&gadget_sockets, &key);
	if (!v || v->sock != (__u64)sk || v->deletion_timestamp != 0)
		return;
	now = bpf_ktime_get_ns();
	v->deletion_timestamp = now;
	bpf_map_update_elem(&ig_se_dying, &key, &now, BPF_ANY);
}

// --- Tracepoints -----------------------------------------------------------
//
// The syscalls are followed through the raw `sys_enter`/`sys_exit`
// tracepoints (two attachments, a switch on the syscall number), not the
// ten `syscalls/sys_{enter,exit}_*` events: detaching each of those waits
// for an RCU grace period under the kernel's event mutex, one after the
// other, which made `ig` take 0.4 s to exit after Ctrl-C when idle and
// seconds on a loaded machine (docs/design/007).

// x86_64 syscall numbers (ig is built for x86_64).
#define NR_CONNECT 42
#define NR_SENDTO 44
#define NR_SENDMSG 46
#define NR_BIND 49
#define NR_SENDMMSG 307

static void remember_fd(__u32 fd)
{
	__u64 id = bpf_get_current_pid_tgid();

	bpf_map_update_elem(&ig_se_fds, &id, &fd, BPF_ANY);
}

// At a syscall's exit: the fd its enter remembered (forgotten now), or -1.
static int recall_fd(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 *fd = bpf_map_lookup_elem(&ig_se_fds, &id);
	int out;

	if (!fd)
		return -1;
	out = *fd;
	bpf_map_delete_elem(&ig_se_fds, &id);
	return out;
}

// A send on a UDP socket: recorded at once if it is bound, else at the
// exit, once the kernel bound it (its first datagram is then already gone:
// docs/design/007).
static void send_enter(int fd)
{
	struct sock *sk = sock_of_fd(fd);
	struct gadget_socket_key key;

	if (!sk || !key_of(sk, &key) || key.proto != IPPROTO_UDP)
		return;
	if (key.port != 0)
		insert_current(sk);
	else
		remember_fd(fd);
}

static void send_exit(void)
{
	int fd = recall_fd();

	if (fd >= 0)
		insert_current(sock_of_fd(fd));
}

// sys_enter(struct pt_regs *regs, long id): the first argument of every
// followed syscall is the socket's fd (rdi).
SEC("tp_btf/sys_enter")
int ig_se_sys_enter(__u64 *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx[0];
	long nr = (long)ctx[1];
	unsigned long arg0 = 0;

	switch (nr) {
	case NR_BIND:
	case NR_CONNECT:
	case NR_SENDTO:
	case NR_SENDMSG:
	case NR_SENDMMSG:
		break;
	default:
		return 0;
	}
	// A direct load: the verifier knows ctx[0] as the kernel's pt_regs
	// (tp_btf), cheaper than a probe read.
	arg0 = regs->di;
	if (nr == NR_BIND || nr == NR_CONNECT)
		remember_fd((__u32)arg0);
	else
		send_enter((int)arg0);
	return 0;
}

// sys_exit(struct pt_regs *regs, long ret): the syscall's number is in
// orig_ax.
SEC("tp_btf/sys_exit")
int ig_se_sys_exit(__u64 *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx[0];
	long ret = (long)ctx[1];
	long nr = -1;
	int fd;

	nr = regs->orig_ax;
	switch (nr) {
	case NR_BIND:
		fd = recall_fd();
		if (fd >= 0 && ret == 0)
			insert_current(sock_of_fd(fd));
		break;
	case NR_CONNECT:
		fd = recall_fd();
		// A non-blocking connect has sent its SYN by now too.
		if (fd >= 0 && (ret == 0 || ret == -EINPROGRESS))
			insert_current(sock_of_fd(fd));
		break;
	case NR_SENDTO:
	case NR_SENDMSG:
	case NR_SENDMMSG:
		send_exit();
		break;
	}
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int ig_se_state(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int newstate = (int)ctx[2];

	if (newstate == TCP_CLOSE)
		mark_deleted(sk);
	return 0;
}

// --- Iterators ---------------------------------------------------------------

// The socket of an iterated file, or 0.
static struct sock *sock_of_file(struct file *file)
{
	struct socket *socket = 0;
	struct file *back = 0;
	struct sock *sk = 0;

	if (!file)
		return 0;
	READ(socket, file->private_data);
	if (!socket)
		return 0;
	READ(back, socket->file);
	if (back != file)
		return 0;
	READ(sk, socket->sk);
	return sk;
}

// Every socket that exists when ig starts. An entry made meanwhile by a
// tracepoint is kept (its thread is the right one); of a listening socket
// and the connections it accepted (same port), the listener wins.
SEC("iter/task_file")
int ig_se_seed(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct sock *sk = sock_of_file(ctx->file);
	const struct cred *cred = 0;
	struct gadget_socket_key key;
	unsigned char state = 0;
	unsigned int uid = 0, gid = 0;
	struct scratch *s;

	if (!task || !sk || !key_of(sk, &key) || key.port == 0)
		return 0;
	READ(state, sk->__sk_common.skc_state);
	if (bpf_map_lookup_elem(&gadget_sockets, &key) && state != TCP_LISTEN)
		return 0;
	s = scratch();
	if (!s)
		return 0;
	// The real credentials: overlayfs may have switched the current
	// ones for a copy-up (upstream's note).
	READ(cred, task->real_cred);
	if (cred) {
		READ(uid, cred->uid.val);
		READ(gid, cred->gid.val);
	}
	fill(s, task, sk, ((__u64)gid << 32) | uid);
	bpf_map_update_elem(&gadget_sockets, &key, &s->value, BPF_ANY);
	return 0;
}

// Every (key, sock) of an entry whose socket a task still holds, written
// out for user space, which marks the entries not listed (sockets closed
// without a TCP close: UDP).
SEC("iter/task_file")
int ig_se_live(struct bpf_iter__task_file *ctx)
{
	struct sock *sk = sock_of_file(ctx->file);
	struct gadget_socket_key key;
	struct gadget_socket_value *v;
	struct {
		struct gadget_socket_key key;
		__u64 sock;
	} rec;

	if (!sk || !key_of(sk, &key))
		return 0;
	v = bpf_map_lookup_elem(&gadget_sockets, &key);
	if (!v || v->sock != (__u64)sk)
		return 0;
	__builtin_memset(&rec, 0, sizeof(rec));
	rec.key = key;
	rec.sock = (__u64)sk;
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
