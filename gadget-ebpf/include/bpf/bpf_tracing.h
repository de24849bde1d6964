/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * bpf/bpf_tracing.h - ig's layer over the system's libbpf header of this
 * name (see bpf/bpf_helpers.h here for how and why): the sixth argument of
 * a function or system call (libbpf 1.2+), BPF_UPROBE and BPF_URETPROBE
 * (libbpf 1.2+). For x86-64 and arm64, the architectures ig builds for.
 */

#if !__has_include_next(<bpf/bpf_tracing.h>)
#error "libbpf's BPF headers are not installed (bpf/bpf_tracing.h): on Debian, apt-get install libbpf-dev"
#endif
#include_next <bpf/bpf_tracing.h>

#ifndef __IG_COMPAT_BPF_TRACING_H
#define __IG_COMPAT_BPF_TRACING_H

#include <bpf/bpf_core_read.h>

/* Uprobes get the registers as kprobes do: the same wrappers serve. */
#ifndef BPF_UPROBE
#define BPF_UPROBE(name, args...) BPF_KPROBE(name, ##args)
#endif
#ifndef BPF_URETPROBE
#define BPF_URETPROBE(name, args...) BPF_KRETPROBE(name, ##args)
#endif

/*
 * The sixth argument: r9 on x86-64 for functions and system calls alike;
 * x5 on arm64 (regs[5]; only the first system call argument has a saved
 * copy of its own, orig_x0).
 */
#ifndef PT_REGS_PARM6
#if defined(__TARGET_ARCH_x86)
#define __IG_PT_PARM6_REG r9
#elif defined(__TARGET_ARCH_arm64)
#define __IG_PT_PARM6_REG regs[5]
#endif
#ifdef __IG_PT_PARM6_REG
#define PT_REGS_PARM6(x) (__PT_REGS_CAST(x)->__IG_PT_PARM6_REG)
#define PT_REGS_PARM6_CORE(x) \
	BPF_CORE_READ(__PT_REGS_CAST(x), __IG_PT_PARM6_REG)
#define PT_REGS_PARM6_SYSCALL(x) PT_REGS_PARM6(x)
#define PT_REGS_PARM6_CORE_SYSCALL(x) PT_REGS_PARM6_CORE(x)
/* So that BPF_KPROBE() and BPF_KSYSCALL() take six arguments. */
#ifndef ___bpf_kprobe_args6
#define ___bpf_kprobe_args6(x, args...) \
	___bpf_kprobe_args5(args), (void *)PT_REGS_PARM6(ctx)
#endif
#ifndef ___bpf_syswrap_args6
#define ___bpf_syswrap_args6(x, args...) \
	___bpf_syswrap_args5(args), (void *)PT_REGS_PARM6_CORE_SYSCALL(regs)
#endif
#ifndef ___bpf_syscall_args6
#define ___bpf_syscall_args6(x, args...) \
	___bpf_syscall_args5(args), (void *)PT_REGS_PARM6_SYSCALL(regs)
#endif
#endif /* __IG_PT_PARM6_REG */
#endif /* !PT_REGS_PARM6 */

#ifndef PT_REGS_PARM6_CORE_SYSCALL
#ifdef PT_REGS_PARM6_CORE
#define PT_REGS_PARM6_CORE_SYSCALL(x) PT_REGS_PARM6_CORE(x)
#endif
#endif

#endif /* __IG_COMPAT_BPF_TRACING_H */
