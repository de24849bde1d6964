// SPDX-License-Identifier: GPL-2.0
//
// trace_oomkill: one event each time the kernel's OOM killer picks a
// victim, with the victim, the task that ran into the out-of-memory
// condition, and the victim's memory use at that moment.
//
// The hook is the mark_victim tracepoint, as a BTF tracepoint: the kernel
// calls it from mark_oom_victim() with the victim task, both for a
// system-wide OOM and for a memory cgroup hitting its limit. It runs in the
// context of the task whose allocation failed (the "trigger"), because the
// OOM killer runs synchronously in that task. Being a BTF tracepoint, it
// gets the victim's task_struct, so the victim is described as fully as
// the current task (mount namespace, parent, credentials), and its memory
// is read from its mm_struct.
//
// The BTF form of this tracepoint, (struct task_struct *, uid_t), exists
// since Linux 6.8; the memory counters are read in their Linux 6.2+ layout
// (an array of percpu_counter).

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include <gadget/buffer.h>
#include <gadget/common.h>
#include <gadget/filter.h>
#include <gadget/macros.h>
#include <gadget/types.h>

struct event {
	gadget_timestamp timestamp_raw;
	// The victim: the process the OOM killer kills.
	struct gadget_process proc;

	// The trigger: the task whose allocation ran out of memory.
	gadget_pid fpid;
	gadget_tid ftid;
	gadget_uid fuid;
	gadget_gid fgid;
	char fcomm[TASK_COMM_LEN];

	// The victim's memory, in pages: its address space (total_vm) and
	// its resident anonymous, file-backed and shared memory pages, as
	// the kernel logs them in its "Killed process" line.
	__u64 total_vm;
	__u64 anon_rss;
	__u64 file_rss;
	__u64 shmem_rss;
	// The victim's oom_score_adj (-1000 to 1000).
	__s16 oom_score_adj;
};

GADGET_TRACER_MAP(events, 1024 * 64);
GADGET_TRACER(oomkill, events, event);

// One resident-memory counter of mm (MM_FILEPAGES, ...). The kernel reads
// these the same way (get_mm_counter(): the shared count, without the
// per-CPU deltas not yet folded in), clamped at zero.
static __always_inline __u64 rss_pages(struct mm_struct *mm, int counter)
{
	__s64 v = BPF_CORE_READ(mm, rss_stat[counter].count);

	return v > 0 ? v : 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(ig_oom_victim, struct task_struct *victim, uid_t uid)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	struct mm_struct *mm;
	struct event *e;

	e = gadget_reserve_buf(&events, sizeof(*e));
	if (!e)
		return 0;

	gadget_process_populate_from_task(victim, &e->proc);
	// The filters apply to the victim.
	if (gadget_should_discard_data(e->proc.mntns_id, e->proc.pid,
				       e->proc.tid, e->proc.comm,
				       e->proc.creds.uid, e->proc.creds.gid)) {
		gadget_discard_buf(e);
		return 0;
	}

	e->timestamp_raw = bpf_ktime_get_boot_ns();
	e->fpid = pid_tgid >> 32;
	e->ftid = (__u32)pid_tgid;
	e->fuid = (__u32)uid_gid;
	e->fgid = uid_gid >> 32;
	bpf_get_current_comm(e->fcomm, sizeof(e->fcomm));

	mm = BPF_CORE_READ(victim, mm);
	e->total_vm = BPF_CORE_READ(mm, total_vm);
	e->anon_rss = rss_pages(mm, MM_ANONPAGES);
	e->file_rss = rss_pages(mm, MM_FILEPAGES);
	e->shmem_rss = rss_pages(mm, MM_SHMEMPAGES);
	e->oom_score_adj = BPF_CORE_READ(victim, signal, oom_score_adj);

	gadget_submit_buf(ctx, &events, e, sizeof(*e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
