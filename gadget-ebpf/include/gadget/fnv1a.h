/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/fnv1a.h - the FNV-1a hash (Fowler, Noll, Vo), 32 and 64 bits.
 *
 * FNV-1a is cheap enough for eBPF (one xor and one multiply per byte, no
 * table) and spreads well enough to key caches: user_stack_map.h hashes an
 * address space's identity with it, and ig computes the same value in user
 * space. The constants are the published ones (offset basis and prime).
 *
 *	__u64 h = fnv_64a_init();
 *	fnv_64a_update_u32(&h, pid);
 *	fnv_64a_update_u64(&h, addr);
 *
 * Integers are fed least significant byte first, which is what hashing
 * their in-memory bytes on a little-endian machine gives.
 */

#ifndef __GADGET_FNV1A_H
#define __GADGET_FNV1A_H

#include <bpf/bpf_helpers.h>

#define FNV1_32_INIT ((__u32)0x811c9dc5)
#define FNV1_32_PRIME ((__u32)0x01000193)
#define FNV1_64_INIT ((__u64)0xcbf29ce484222325ULL)
#define FNV1_64_PRIME ((__u64)0x00000100000001b3ULL)

/* The offset basis: the hash of zero bytes. */
static __always_inline __u32 fnv_32a_init(void)
{
	return FNV1_32_INIT;
}

static __always_inline __u64 fnv_64a_init(void)
{
	return FNV1_64_INIT;
}

/* One update function per hash width and value width: *hash absorbs the
 * sizeof(value) bytes of value, lowest first. Internal generator. */
#define __GADGET_FNV_UPDATE(fn, hash_t, value_t, prime)                     \
	static __always_inline void fn(hash_t *hash, value_t value)         \
	{                                                                   \
		hash_t h = *hash;                                           \
		for (unsigned int i = 0; i < sizeof(value_t); i++) {        \
			h = (h ^ (hash_t)((value >> (8 * i)) & 0xff)) * prime; \
		}                                                           \
		*hash = h;                                                  \
	}

__GADGET_FNV_UPDATE(fnv_32a_update_u8, __u32, __u8, FNV1_32_PRIME)
__GADGET_FNV_UPDATE(fnv_32a_update_u16, __u32, __u16, FNV1_32_PRIME)
__GADGET_FNV_UPDATE(fnv_32a_update_u32, __u32, __u32, FNV1_32_PRIME)
__GADGET_FNV_UPDATE(fnv_32a_update_u64, __u32, __u64, FNV1_32_PRIME)

__GADGET_FNV_UPDATE(fnv_64a_update_u8, __u64, __u8, FNV1_64_PRIME)
__GADGET_FNV_UPDATE(fnv_64a_update_u16, __u64, __u16, FNV1_64_PRIME)
__GADGET_FNV_UPDATE(fnv_64a_update_u32, __u64, __u32, FNV1_64_PRIME)
__GADGET_FNV_UPDATE(fnv_64a_update_u64, __u64, __u64, FNV1_64_PRIME)

#undef __GADGET_FNV_UPDATE

#endif /* __GADGET_FNV1A_H */
