/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/packetfilter.h - a place in a networking program for a packet
 * filter chosen when the gadget runs (a tcpdump-style expression).
 *
 * GADGET_PF(name) defines the function gadget_pf_<name>, and
 * gadget_pf_matches([name,] skb, data, data_end) calls it: true when the
 * packet between data and data_end matches the filter. As compiled, the
 * function matches every non-empty packet. It is a real BPF function (not
 * inlined) so that a loader can replace its body with the compiled filter;
 * its name and its five arguments are that loader's ABI (upstream's): the
 * skb is passed three times so that registers R1-R3 hold it, as a classic
 * BPF filter converted to eBPF expects.
 *
 *	GADGET_PF(http);
 *	...
 *	if (!gadget_pf_matches(http, skb, data, data_end))
 *		return 0;
 *
 * Without a name (GADGET_PF() and gadget_pf_matches(skb, data, data_end))
 * the function is gadget_pf_. Any other number of arguments is a compile
 * error naming gadget_pf_matches.
 */

#ifndef __GADGET_PACKETFILTER_H
#define __GADGET_PACKETFILTER_H

#include <bpf/bpf_helpers.h>

#define GADGET_PF(name)                                                    \
	static __noinline bool gadget_pf_##name(void *skb1, void *skb2,     \
						void *skb3, void *data,     \
						void *data_end)             \
	{                                                                  \
		/* Uses every argument, so none is optimized away. */      \
		return data != data_end && skb1 == skb2 && skb2 == skb3;   \
	}

#define gadget_pf_matches_impl(name, skb, data, data_end) \
	gadget_pf_##name(skb, skb, skb, data, data_end)

/* Dispatch on the number of arguments (1 to 4). Internal. */
#define __GADGET_PF_NARGS_(_1, _2, _3, _4, n, ...) n
#define __GADGET_PF_NARGS(...) __GADGET_PF_NARGS_(__VA_ARGS__, 4, 3, 2, 1)
#define __GADGET_PF_PICK_(n) __GADGET_PF_MATCHES_##n
#define __GADGET_PF_PICK(n) __GADGET_PF_PICK_(n)

#define __GADGET_PF_BAD_ARGS                                               \
	({                                                                 \
		_Static_assert(0, "gadget_pf_matches takes ([name,] skb, " \
				  "data, data_end)");                      \
		0;                                                         \
	})
#define __GADGET_PF_MATCHES_1(a) __GADGET_PF_BAD_ARGS
#define __GADGET_PF_MATCHES_2(a, b) __GADGET_PF_BAD_ARGS
#define __GADGET_PF_MATCHES_3(skb, data, data_end) \
	gadget_pf_matches_impl(, skb, data, data_end)
#define __GADGET_PF_MATCHES_4(name, skb, data, data_end) \
	gadget_pf_matches_impl(name, skb, data, data_end)

#define gadget_pf_matches(...) \
	__GADGET_PF_PICK(__GADGET_PF_NARGS(__VA_ARGS__))(__VA_ARGS__)

#endif /* __GADGET_PACKETFILTER_H */
