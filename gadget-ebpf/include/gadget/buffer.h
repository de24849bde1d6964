/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/buffer.h - the event channel from a tracer to ig.
 *
 * GADGET_TRACER_MAP(name, bytes) declares a BPF ring buffer; the functions
 * below write events into it. Three things are handled here so that each
 * gadget does not have to:
 *
 * 1. Lost events are counted. Every failed reserve or output adds one to
 *    the per-CPU counter map `<name>_lost_samples`, which ig reads, reports
 *    and resets once a second. The map name is loader ABI.
 *
 * 2. Wakeups are batched on request. Each wakeup of the reader is an
 *    interrupt plus a context switch, which costs far more than writing a
 *    small event; waking per event would dominate the cost of a busy tracer.
 *    ig sets gadget_ringbuf_wakeup_threshold (in .rodata) to a byte count,
 *    and the reader is then woken only when the unread data reaches a
 *    multiple of it. The reader must therefore (a) read until the ring is
 *    empty before it sleeps and (b) also read when its own short timer
 *    fires, whether or not poll/epoll reported data: records below the
 *    threshold never wake it. With the default of 0 the kernel's normal
 *    policy applies (wake when the reader has caught up), and since the
 *    value is a load-time constant the verifier removes the extra code.
 *
 * 3. Kernels without ring buffers (before 5.8) still work. ig then turns the
 *    map into a perf event array, and these functions switch to
 *    bpf_perf_event_output(). The choice is a CO-RE check against the
 *    running kernel, resolved when the program is loaded, so only one of
 *    the two code paths reaches the verifier. For the reserve/submit style
 *    the perf path needs a scratch buffer: the per-CPU map gadget_heap of
 *    GADGET_MAX_EVENT_SIZE bytes. Define GADGET_NO_BUF_RESERVE before
 *    including this file to omit it (and gadget_reserve_buf/submit/discard)
 *    in gadgets that only use gadget_output_buf().
 *
 * Usage, with `events` declared by GADGET_TRACER_MAP(events, ...):
 *
 *	struct event *e = gadget_reserve_buf(&events, sizeof(*e));
 *	if (!e)
 *		return 0;
 *	... fill *e ...
 *	gadget_submit_buf(ctx, &events, e, sizeof(*e));
 *
 * or, for an event built elsewhere (stack, map value):
 *
 *	gadget_output_buf(ctx, &events, e, len);
 *
 * The map argument must be written literally as `&name`: the macros find the
 * lost-samples counter by pasting "_lost_samples" onto that last token.
 *
 * The Rust side (map discovery, lost-sample polling, wakeup threshold) is in
 * src/bpf/contract.rs; change both together.
 */

#ifndef __GADGET_BUFFER_H
#define __GADGET_BUFFER_H

/* No <vmlinux.h> here: networking gadgets build on the UAPI headers, and
 * the two cannot be mixed. Tracing gadgets include vmlinux.h themselves,
 * before this file; either one declares enum bpf_func_id and the map
 * types used below. */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#ifndef GADGET_MAX_EVENT_SIZE
#define GADGET_MAX_EVENT_SIZE 10240
#endif

/*
 * Wake the reader each time the unread data reaches a multiple of this many
 * bytes (0: let the kernel decide). Written into .rodata by ig before the
 * program is loaded. A plain global, so it is emitted even by a gadget that
 * never sends anything.
 */
const volatile __u64 gadget_ringbuf_wakeup_threshold = 0;

#define GADGET_TRACER_MAP(name, bytes)                                \
	struct {                                                      \
		__uint(type, BPF_MAP_TYPE_RINGBUF);                   \
		__uint(max_entries, bytes);                           \
	} name SEC(".maps");                                          \
	const void *gadget_map_tracer_##name __attribute__((unused)); \
	struct {                                                      \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);              \
		__uint(max_entries, 1);                               \
		__type(key, __u32);                                   \
		__type(value, __u64);                                 \
	} name##_lost_samples SEC(".maps");

/* True when the running kernel has BPF ring buffers (see point 3 above). */
#define __gadget_has_ringbuf() \
	bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_ringbuf_output)

static __always_inline void __gadget_count_lost(void *lost_samples)
{
	__u32 zero = 0;
	__u64 *cnt = bpf_map_lookup_elem(lost_samples, &zero);

	/* Per-CPU value: no other CPU writes it, a plain add is enough. */
	if (cnt)
		*cnt += 1;
}

/*
 * Ring buffer flags for a record of size bytes whose commit moves the
 * backlog from `before` to `after` bytes (see point 2 above).
 *
 * The reader is woken each time the backlog reaches another multiple of the
 * threshold: once when it first gets there, and again for every further
 * threshold's worth if the reader has still not caught up (it may have
 * been busy, or slow to be scheduled). Waking on every record above the
 * threshold instead would send one interrupt per record while the reader
 * is on its way, which costs microseconds each; only past twice the
 * threshold (half the ring, as ig sets it) does every record wake it.
 */
static __always_inline __u64 __gadget_wakeup_flags(__u64 before, __u64 after)
{
	__u64 t = gadget_ringbuf_wakeup_threshold;

	if (t == 0)
		return 0;
	/*
	 * From two threshold's worth on, every record wakes the reader. The
	 * crossing test alone can miss: `after` is read after the record was
	 * reserved, and a producer on another CPU may have reserved more in
	 * between, so that neither producer sees the backlog cross the
	 * multiple (each finds it past). Under a storm on every CPU that
	 * happened at one multiple after another until the ring was full,
	 * while the reader slept on its timer. A reader that lets the backlog
	 * reach this far is late anyway; a wake-up per record costs the
	 * producers little next to losing records.
	 */
	if (after / t != before / t || after >= 2 * t)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* Bytes a record of size bytes takes in the ring: 8-byte header, 8-byte
 * alignment. */
#define __GADGET_RB_RECORD_SIZE(size) ((((__u64)(size)) + 8 + 7) & ~7ULL)

#ifndef GADGET_NO_BUF_RESERVE

/* Scratch event buffer for the perf path of gadget_reserve_buf(). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, GADGET_MAX_EVENT_SIZE);
} gadget_heap SEC(".maps");

/*
 * gadget_reserve_buf(&map, size) returns size bytes to fill with an event,
 * or NULL when the buffer is full (the loss is counted). size must be a
 * constant. Pass the result to gadget_submit_buf() or gadget_discard_buf().
 * The memory is not zeroed.
 */
#define gadget_reserve_buf(map, size) \
	__gadget_reserve_buf(map, map##_lost_samples, size)

static __always_inline void *__gadget_reserve_buf(void *map, void *lost_samples,
						  __u64 size)
{
	__u32 zero = 0;
	void *buf;

	if (!__gadget_has_ringbuf())
		return bpf_map_lookup_elem(&gadget_heap, &zero);

	buf = bpf_ringbuf_reserve(map, size, 0);
	if (!buf)
		__gadget_count_lost(lost_samples);
	return buf;
}

/*
 * gadget_submit_buf(ctx, &map, buf, size) publishes an event obtained from
 * gadget_reserve_buf(). ctx is the program's context (used by the perf
 * path). Returns 0, or a negative error if the event was lost (counted).
 */
#define gadget_submit_buf(ctx, map, buf, size) \
	__gadget_submit_buf(ctx, map, map##_lost_samples, buf, size)

static __always_inline long __gadget_submit_buf(void *ctx, void *map,
						void *lost_samples, void *buf,
						__u64 size)
{
	long ret;

	if (__gadget_has_ringbuf()) {
		__u64 flags = 0;

		if (gadget_ringbuf_wakeup_threshold) {
			/* The backlog already includes this reserved record. */
			__u64 after = bpf_ringbuf_query(map, BPF_RB_AVAIL_DATA);
			__u64 rec = __GADGET_RB_RECORD_SIZE(size);

			flags = __gadget_wakeup_flags(
				after > rec ? after - rec : 0, after);
		}
		bpf_ringbuf_submit(buf, flags);
		return 0;
	}

	ret = bpf_perf_event_output(ctx, map, BPF_F_CURRENT_CPU, buf, size);
	if (ret < 0)
		__gadget_count_lost(lost_samples);
	return ret;
}

/* gadget_discard_buf(buf) drops an event obtained from gadget_reserve_buf()
 * without sending it (not counted as lost). */
static __always_inline void gadget_discard_buf(void *buf)
{
	/*
	 * A discarded record keeps its slot until the reader steps over it,
	 * and records committed behind it only wake a reader that has caught
	 * up to them. With the kernel's default policy this discard must
	 * therefore be allowed to wake the reader, or a blocked reader could
	 * sleep on. With batched wakeups the reader polls by itself, and
	 * waking it for a record that carries nothing would only cost time.
	 * On the perf path buf is the per-CPU scratch: nothing to release.
	 */
	if (__gadget_has_ringbuf())
		bpf_ringbuf_discard(buf, gadget_ringbuf_wakeup_threshold ?
						 BPF_RB_NO_WAKEUP :
						 0);
}

#endif /* !GADGET_NO_BUF_RESERVE */

/*
 * gadget_output_buf(ctx, &map, buf, size) copies size bytes from buf into
 * the buffer as one event. size may vary between calls (it must be bounded
 * for the verifier); ig zero-pads short events to the full struct size.
 * Returns 0, or a negative error if the event was lost (counted).
 */
#define gadget_output_buf(ctx, map, buf, size) \
	__gadget_output_buf(ctx, map, map##_lost_samples, buf, size)

static __always_inline long __gadget_output_buf(void *ctx, void *map,
						void *lost_samples, void *buf,
						__u64 size)
{
	long ret;

	if (__gadget_has_ringbuf()) {
		__u64 flags = 0;

		if (gadget_ringbuf_wakeup_threshold) {
			/* The record is not in the ring yet. */
			__u64 before =
				bpf_ringbuf_query(map, BPF_RB_AVAIL_DATA);

			flags = __gadget_wakeup_flags(
				before, before + __GADGET_RB_RECORD_SIZE(size));
		}
		ret = bpf_ringbuf_output(map, buf, size, flags);
	} else {
		ret = bpf_perf_event_output(ctx, map, BPF_F_CURRENT_CPU, buf,
					    size);
	}
	if (ret < 0)
		__gadget_count_lost(lost_samples);
	return ret;
}

#endif /* __GADGET_BUFFER_H */
