/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/bits.bpf.h - integer logarithms for log2 histograms.
 *
 * A latency or size histogram in the kernel keeps one counter per power
 * of two; get_slot_idx() says which counter a value belongs to. The slot
 * layout is upstream's, so that histograms mean the same under both
 * builds: slot 0 holds the value 0, slot i (i >= 1) the values in
 * [2^(i-1), 2^i). For example 1 is in slot 1, 4096 in slot 13.
 *
 * Plain shifts and compares: BPF has no count-leading-zeros instruction,
 * and a loop would cost the verifier more than these five steps.
 */

#ifndef __GADGET_BITS_BPF_H
#define __GADGET_BITS_BPF_H

#include <bpf/bpf_helpers.h>

/* log2(v) rounded down, for a 32-bit v; log2(0) is 0. (The name shadows
 * the C library's floating-point log2, as upstream's does.) */
static __always_inline __u64 log2(__u32 v)
{
	__u32 r = 0;

	if (v >= 1U << 16) {
		v >>= 16;
		r += 16;
	}
	if (v >= 1U << 8) {
		v >>= 8;
		r += 8;
	}
	if (v >= 1U << 4) {
		v >>= 4;
		r += 4;
	}
	if (v >= 1U << 2) {
		v >>= 2;
		r += 2;
	}
	if (v >= 1U << 1)
		r += 1;
	return r;
}

/* The histogram slot of v (see above): 0 for 0, else log2(v) + 1. */
static __always_inline __u64 get_slot_idx(__u64 v)
{
	__u32 high = v >> 32;

	if (v == 0)
		return 0;
	if (high)
		return log2(high) + 32 + 1;
	return log2((__u32)v) + 1;
}

#endif /* __GADGET_BITS_BPF_H */
