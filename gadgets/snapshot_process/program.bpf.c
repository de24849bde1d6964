// SPDX-License-Identifier: GPL-2.0
//
// snapshot_process: the processes (or threads) that exist right now, one
// record each, from a task iterator.
//
// The iter/task program is run by the kernel once for every task on the
// system when ig reads the iterator. Each record is a struct
// gadget_process, the same description of a process the tracers use, so
// the columns and the container enrichment are those of every other
// gadget. It is written with bpf_seq_write() and ig cuts the iterator's
// output into records of sizeof(struct gadget_process).

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include <gadget/common.h>
#include <gadget/filter.h>
#include <gadget/macros.h>
#include <gadget/types.h>

// One record per thread instead of one per process.
const volatile bool show_threads = false;
GADGET_PARAM(show_threads);

GADGET_ITER(processes, gadget_process, ig_snap_proc);

SEC("iter/task")
int ig_snap_proc(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct gadget_process p = {};

	// The iterator calls the program a last time with no task.
	if (!task)
		return 0;
	// Threads other than the thread group leader.
	if (!show_threads && task->pid != task->tgid)
		return 0;

	gadget_process_populate_from_task(task, &p);
	if (gadget_should_discard_data(p.mntns_id, p.pid, p.tid, p.comm,
				       p.creds.uid, p.creds.gid))
		return 0;

	bpf_seq_write(seq, &p, sizeof(p));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
