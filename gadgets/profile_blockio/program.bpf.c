// SPDX-License-Identifier: GPL-2.0
//
// profile_blockio: a histogram of block device I/O latency, in
// microseconds, from the moment a request is queued (or issued, when it
// bypasses the scheduler) to its completion.
//
// Hooks: the raw tracepoints block_rq_insert, block_rq_issue and
// block_rq_complete (no kprobes). Each takes the request as its first
// argument (Linux 5.11 and later; older kernels passed the queue first).
// The start time of a request is kept in a hash map keyed by the
// request's address; a completion looks it up, adds one to the slot of
// the latency and forgets it. A request issued after it was inserted
// keeps its insert time: the latency includes the time in the queue.
//
// The histogram lives in a hash map that ig drains at every interval
// (GADGET_MAPITER), so each drain holds the requests completed since the
// previous one. The otel-metrics operator renders it (metrics.print) or
// exports it (metrics.collect, Prometheus histogram `latency`).

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include <gadget/bits.bpf.h>
#include <gadget/macros.h>
#include <gadget/types.h>

// Slot i holds latencies in [2^(i-1), 2^i - 1] us; the last one holds
// everything from 2^25 us (about 33 s) up.
#define SLOTS 27

struct hist_key {
	// Reserved for per-disk and per-flag histograms: zero.
	__u32 cmd_flags;
	__u32 dev;
};

struct hist_value {
	gadget_histogram_slot__u32 latency[SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, struct hist_key);
	__type(value, struct hist_value);
} hists SEC(".maps");

GADGET_MAPITER(blockio, hists);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, void *);
	__type(value, __u64);
} start SEC(".maps");

static const struct hist_value zero_hist;

static __always_inline int queued(void *rq, bool issue)
{
	__u64 ts = bpf_ktime_get_ns();

	// An issue after an insert keeps the insert's time.
	bpf_map_update_elem(&start, &rq, &ts, issue ? BPF_NOEXIST : BPF_ANY);
	return 0;
}

SEC("raw_tp/block_rq_insert")
int BPF_PROG(ig_blockio_insert, void *rq)
{
	return queued(rq, false);
}

SEC("raw_tp/block_rq_issue")
int BPF_PROG(ig_blockio_issue, void *rq)
{
	return queued(rq, true);
}

SEC("raw_tp/block_rq_complete")
int BPF_PROG(ig_blockio_done, void *rq)
{
	struct hist_key key = {};
	struct hist_value *h;
	__u64 *tsp, slot;
	__s64 delta;

	tsp = bpf_map_lookup_elem(&start, &rq);
	if (!tsp)
		return 0;
	delta = (__s64)(bpf_ktime_get_ns() - *tsp);
	bpf_map_delete_elem(&start, &rq);
	if (delta < 0)
		return 0;

	h = bpf_map_lookup_elem(&hists, &key);
	if (!h) {
		bpf_map_update_elem(&hists, &key, &zero_hist, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &key);
		if (!h)
			return 0;
	}
	slot = get_slot_idx(delta / 1000);
	if (slot >= SLOTS)
		slot = SLOTS - 1;
	__sync_fetch_and_add(&h->latency[slot], 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
