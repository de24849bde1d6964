/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * bpf/bpf_core_read.h - ig's layer over the system's libbpf header of this
 * name (see bpf/bpf_helpers.h here for how and why): bpf_core_cast()
 * (libbpf 1.3+).
 */

#if !__has_include_next(<bpf/bpf_core_read.h>)
#error "libbpf's BPF headers are not installed (bpf/bpf_core_read.h): on Debian, apt-get install libbpf-dev"
#endif
#include_next <bpf/bpf_core_read.h>

#ifndef __IG_COMPAT_BPF_CORE_READ_H
#define __IG_COMPAT_BPF_CORE_READ_H

/*
 * bpf_core_cast(ptr, type): ptr as a `type *` the verifier lets the
 * program read directly (untrusted, read-only: faults read as zero), by
 * the kernel's BTF id of type. Needs the kfunc bpf_rdonly_cast (6.2+).
 */
#ifndef bpf_core_cast
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id)
	__attribute__((section(".ksyms"), weak));
#define bpf_core_cast(ptr, type) \
	((type *)bpf_rdonly_cast((ptr), bpf_core_type_id_kernel(type)))
#endif

#endif /* __IG_COMPAT_BPF_CORE_READ_H */
