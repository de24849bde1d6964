// SPDX-License-Identifier: GPL-2.0
//
// profile_tcprtt: a histogram of the smoothed round-trip time of TCP
// connections, in microseconds (milliseconds with --ms), sampled each
// time an established connection receives a segment.
//
// Hook: the tcp_probe tracepoint, as a raw tracepoint. The kernel fires it
// at the start of tcp_rcv_established(), the function upstream's gadget
// reaches with a kprobe, with the same socket: no kprobes needed. The
// smoothed RTT is tcp_sock.srtt_us, which the kernel keeps scaled by 8.
//
// --sport and --dport keep the connections with that local or remote port
// (in host order; 0 keeps all). The histogram lives in a hash map that ig
// drains at every interval (GADGET_MAPITER); the otel-metrics operator
// renders it (metrics.print) or exports it (metrics.collect, Prometheus
// histogram `latency`).

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

#include <gadget/bits.bpf.h>
#include <gadget/macros.h>
#include <gadget/types.h>

// Slot i holds RTTs in [2^(i-1), 2^i - 1]; the last one everything from
// 2^25 up.
#define SLOTS 27

const volatile __u16 targ_sport = 0;
const volatile __u16 targ_dport = 0;
const volatile bool targ_ms = false;

GADGET_PARAM(targ_sport);
GADGET_PARAM(targ_dport);
GADGET_PARAM(targ_ms);

struct hist_key {
	// One histogram for now; a place for per-address ones later.
	__u8 unused;
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

GADGET_MAPITER(tcprtt, hists);

static const struct hist_value zero_hist;

SEC("raw_tp/tcp_probe")
int BPF_PROG(ig_tcprtt_probe, struct sock *sk)
{
	struct hist_key key = {};
	struct hist_value *h;
	__u64 srtt, slot;

	if (targ_sport &&
	    targ_sport != BPF_CORE_READ(sk, __sk_common.skc_num))
		return 0;
	if (targ_dport &&
	    targ_dport != bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)))
		return 0;

	srtt = BPF_CORE_READ((struct tcp_sock *)sk, srtt_us) >> 3;
	if (targ_ms)
		srtt /= 1000;

	h = bpf_map_lookup_elem(&hists, &key);
	if (!h) {
		bpf_map_update_elem(&hists, &key, &zero_hist, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &key);
		if (!h)
			return 0;
	}
	slot = get_slot_idx(srtt);
	if (slot >= SLOTS)
		slot = SLOTS - 1;
	__sync_fetch_and_add(&h->latency[slot], 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
