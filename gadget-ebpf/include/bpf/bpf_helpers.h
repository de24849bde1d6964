/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * bpf/bpf_helpers.h - ig's layer over the system's libbpf header of this
 * name: it includes that header, then defines what libbpf added after 1.1
 * (Debian bookworm's libbpf-dev) and gadgets written for upstream's builder
 * (libbpf 1.3 headers) use. Each definition is skipped when the system's
 * libbpf already has it, so a newer libbpf-dev wins.
 *
 * ig writes this file next to the author headers (gadget/) for every
 * build, ahead of the system include directories; #include_next then finds
 * the system's file. The other files of bpf/ here do the same for their
 * namesakes. The definitions are ours, written from libbpf's documented
 * behaviour, not copies of libbpf's text.
 */

#if !__has_include_next(<bpf/bpf_helpers.h>)
#error "libbpf's BPF headers are not installed (bpf/bpf_helpers.h): on Debian, apt-get install libbpf-dev"
#endif
#include_next <bpf/bpf_helpers.h>

#ifndef __IG_COMPAT_BPF_HELPERS_H
#define __IG_COMPAT_BPF_HELPERS_H

#ifndef likely
#define likely(x) (__builtin_expect(!!(x), 1))
#endif
#ifndef unlikely
#define unlikely(x) (__builtin_expect(!!(x), 0))
#endif

/* Argument annotations of global functions, for the verifier (BTF decl
 * tags it reads on a global subprogram's arguments). */
#ifndef __arg_ctx
#define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))
#endif
#ifndef __arg_nonnull
#define __arg_nonnull __attribute__((btf_decl_tag("arg:nonnull")))
#endif
#ifndef __arg_nullable
#define __arg_nullable __attribute__((btf_decl_tag("arg:nullable")))
#endif
#ifndef __arg_trusted
#define __arg_trusted __attribute__((btf_decl_tag("arg:trusted")))
#endif
#ifndef __arg_untrusted
#define __arg_untrusted __attribute__((btf_decl_tag("arg:untrusted")))
#endif
#ifndef __arg_arena
#define __arg_arena __attribute__((btf_decl_tag("arg:arena")))
#endif

/* Kernel pointer kinds of map values (BTF type tags). */
#ifndef __kptr_untrusted
#define __kptr_untrusted __attribute__((btf_type_tag("kptr_untrusted")))
#endif
#ifndef __percpu_kptr
#define __percpu_kptr __attribute__((btf_type_tag("percpu_kptr")))
#endif

/*
 * bpf_ksym_exists(sym): true when the __weak __ksym (kernel variable or
 * kfunc) sym exists in the running kernel; the loader resolves a missing
 * one to 0. The assertion catches a sym not declared __weak, whose address
 * the compiler would take as never zero.
 */
#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym)                                               \
	({                                                                 \
		_Static_assert(!__builtin_constant_p(!!(sym)),             \
			       #sym " must be declared __weak");           \
		!!(sym);                                                   \
	})
#endif

#endif /* __IG_COMPAT_BPF_HELPERS_H */
