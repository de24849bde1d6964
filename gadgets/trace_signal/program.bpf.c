// SPDX-License-Identifier: GPL-2.0
//
// trace_signal: one event per signal sent, with the sender, the target, the
// signal and what became of it.
//
// Two sources, chosen by the kill_only parameter:
//
// - signal_generate (default), as a BTF tracepoint: fires whenever the
//   kernel queues a signal for a task, whoever sent it: kill(2) and
//   friends, but also the kernel itself (SIGSEGV on a bad access, SIGCHLD
//   when a child exits, SIGPIPE, SIGALRM from a timer, SIGKILL from the OOM
//   killer...). It says whether the signal was delivered, ignored or
//   already pending, and gives the target task itself.
//
// - syscalls/sys_exit_{kill,tkill,tgkill} (kill_only): one event per call
//   of these syscalls with the syscall's result, including calls that fail
//   (no such process, not permitted) and so never reach signal_generate.
//   The arguments are read back at exit from the registers saved on
//   syscall entry, as trace_open does.
//
// The sender is the task running when the signal is generated. That is
// only meaningful in task context: a signal raised from an interrupt (a
// timer expiring, I/O becoming ready) is generated on whatever task the CPU
// happened to interrupt. Tracepoint programs cannot read the preempt count,
// so the gadget tracks interrupt context itself: tiny raw tracepoint
// programs around softirqs, hrtimer callbacks and device interrupt handlers
// set and clear per-CPU flags. Each flag is written (not counted) at entry
// and exit, so a transition missed while the programs were being attached
// is corrected by the next one. A signal generated while a flag is set gets
// no sender.

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include <gadget/buffer.h>
#include <gadget/common.h>
#include <gadget/filter.h>
#include <gadget/macros.h>
#include <gadget/types.h>

// What the kernel did with a generated signal (TRACE_SIGNAL_* in
// include/trace/events/signal.h). The names are the displayed values.
enum signal_result : __u8 {
	delivered = 0,
	ignored = 1,
	already_pending = 2,
	overflow_fail = 3,
	lose_info = 4,
};

struct event {
	gadget_timestamp timestamp_raw;
	// The sender; all zero when the signal was raised in interrupt
	// context (from_interrupt).
	struct gadget_process proc;

	gadget_signal sig_raw;
	// Target process id. kill_only: the pid argument of kill() or
	// tgkill() as passed (kill() also takes 0, -1 and negative process
	// group ids, hence signed); 0 for tkill().
	__s32 tpid;
	// Target thread id. kill_only: the tid argument of tkill() or
	// tgkill(); 0 for kill().
	__s32 ttid;
	// Command name of the target (signal_generate only).
	char tcomm[TASK_COMM_LEN];
	// si_code (signal_generate only): SI_USER (0) for kill(), SI_TKILL
	// (-6) for tkill()/tgkill(), SI_QUEUE (-1), SI_TIMER (-2), SI_KERNEL
	// (128), or a signal-specific code for kernel signals.
	__s32 code;
	// The signal was for the whole thread group (signal_generate only).
	bool group;
	// Raised in interrupt context: proc is empty (signal_generate only).
	bool from_interrupt;
	// What became of the signal (signal_generate only).
	enum signal_result result_raw;
	// The syscall's error, 0 on success (kill_only only).
	gadget_errno error_raw;
};

// Report only this signal number (0: all).
const volatile int target_signal = 0;
GADGET_PARAM(target_signal);

// Report only signals that were not delivered (signal_generate) or kill
// calls that failed (kill_only).
const volatile bool failed_only = false;
GADGET_PARAM(failed_only);

// Report kill(), tkill() and tgkill() calls instead of generated signals.
const volatile bool kill_only = false;
GADGET_PARAM(kill_only);

GADGET_TRACER_MAP(events, 1024 * 256);
GADGET_TRACER(signal, events, event);

// Per CPU: is the CPU inside a softirq, an hrtimer callback or a device
// interrupt handler? One flag per kind, because they nest (a device
// interrupt can arrive during a softirq) but never nest with themselves.
struct irq_flags {
	__u8 softirq;
	__u8 hrtimer;
	__u8 hardirq;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct irq_flags);
} irq_context SEC(".maps");

static __always_inline struct irq_flags *irq_flags(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&irq_context, &zero);
}

// The flag programs are only needed for signal_generate; with kill_only
// the verifier sees a constant and reduces them to a return.
SEC("raw_tp/softirq_entry")
int ig_sig_sirq_e(void *ctx)
{
	struct irq_flags *f = kill_only ? NULL : irq_flags();

	if (f)
		f->softirq = 1;
	return 0;
}

SEC("raw_tp/softirq_exit")
int ig_sig_sirq_x(void *ctx)
{
	struct irq_flags *f = kill_only ? NULL : irq_flags();

	if (f)
		f->softirq = 0;
	return 0;
}

SEC("raw_tp/hrtimer_expire_entry")
int ig_sig_hrt_e(void *ctx)
{
	struct irq_flags *f = kill_only ? NULL : irq_flags();

	if (f)
		f->hrtimer = 1;
	return 0;
}

SEC("raw_tp/hrtimer_expire_exit")
int ig_sig_hrt_x(void *ctx)
{
	struct irq_flags *f = kill_only ? NULL : irq_flags();

	if (f)
		f->hrtimer = 0;
	return 0;
}

SEC("raw_tp/irq_handler_entry")
int ig_sig_irq_e(void *ctx)
{
	struct irq_flags *f = kill_only ? NULL : irq_flags();

	if (f)
		f->hardirq = 1;
	return 0;
}

SEC("raw_tp/irq_handler_exit")
int ig_sig_irq_x(void *ctx)
{
	struct irq_flags *f = kill_only ? NULL : irq_flags();

	if (f)
		f->hardirq = 0;
	return 0;
}

// True when one of the process filters (or the container filter) is set.
static __always_inline bool process_filter_set(void)
{
	return gadget_filter_by_mntns || targ_pid != 0 || targ_tid != 0 ||
	       targ_uid != GADGET_INVALID_ID || targ_gid != GADGET_INVALID_ID ||
	       targ_comm[0] != '\0';
}

// SEND_SIG_NOINFO and SEND_SIG_PRIV (include/linux/sched/signal.h): special
// values of the siginfo pointer instead of a real siginfo.
#define SEND_SIG_NOINFO_ ((unsigned long)0)
#define SEND_SIG_PRIV_ ((unsigned long)1)
#define SI_USER_ 0
#define SI_KERNEL_ 0x80

SEC("tp_btf/signal_generate")
int BPF_PROG(ig_sig_generate, int sig, struct kernel_siginfo *info,
	     struct task_struct *task, int group, int result)
{
	struct irq_flags *f;
	bool in_irq;
	struct event *e;

	if (kill_only)
		return 0;
	if (target_signal != 0 && sig != target_signal)
		return 0;
	if (failed_only && result == TRACE_SIGNAL_DELIVERED)
		return 0;

	f = irq_flags();
	in_irq = f && (f->softirq || f->hrtimer || f->hardirq);
	if (!in_irq) {
		if (gadget_should_discard_data_current())
			return 0;
	} else if (process_filter_set()) {
		// No sender to match the filter against.
		return 0;
	}

	e = gadget_reserve_buf(&events, sizeof(*e));
	if (!e)
		return 0;

	e->timestamp_raw = bpf_ktime_get_boot_ns();
	if (in_irq)
		__builtin_memset(&e->proc, 0, sizeof(e->proc));
	else
		gadget_process_populate(&e->proc);
	e->sig_raw = sig;
	// task is a BTF pointer: plain loads, checked by the verifier.
	e->tpid = task->tgid;
	e->ttid = task->pid;
	__builtin_memcpy(e->tcomm, task->comm, sizeof(e->tcomm));
	if ((unsigned long)info == SEND_SIG_NOINFO_)
		e->code = SI_USER_;
	else if ((unsigned long)info == SEND_SIG_PRIV_)
		e->code = SI_KERNEL_;
	else
		e->code = BPF_CORE_READ(info, si_code);
	e->group = group != 0;
	e->from_interrupt = in_irq;
	e->result_raw = result;
	e->error_raw = 0;

	gadget_submit_buf(ctx, &events, e, sizeof(*e));
	return 0;
}

// Sends the event for a finished kill-family call. tpid_arg, ttid_arg and
// sig_arg are the 1-based positions of those arguments (0: none).
static __always_inline int kill_exit(struct syscall_trace_exit *ctx,
				     int tpid_arg, int ttid_arg, int sig_arg)
{
	long ret = ctx->ret;
	struct pt_regs *regs;
	struct event *e;
	int sig;

	if (!kill_only)
		return 0;
	if (failed_only && ret >= 0)
		return 0;
	if (gadget_should_discard_data_current())
		return 0;

	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	sig = sig_arg == 2 ? PT_REGS_PARM2_SYSCALL(regs) :
			     PT_REGS_PARM3_SYSCALL(regs);
	if (target_signal != 0 && sig != target_signal)
		return 0;

	e = gadget_reserve_buf(&events, sizeof(*e));
	if (!e)
		return 0;

	e->timestamp_raw = bpf_ktime_get_boot_ns();
	gadget_process_populate(&e->proc);
	e->sig_raw = sig;
	e->tpid = tpid_arg == 1 ? PT_REGS_PARM1_SYSCALL(regs) : 0;
	e->ttid = ttid_arg == 1 ? PT_REGS_PARM1_SYSCALL(regs) :
		  ttid_arg == 2 ? PT_REGS_PARM2_SYSCALL(regs) :
				  0;
	__builtin_memset(e->tcomm, 0, sizeof(e->tcomm));
	e->code = 0;
	e->group = false;
	e->from_interrupt = false;
	// Not known here: the signal is generated inside the syscall.
	e->result_raw = 0;
	e->error_raw = ret < 0 ? -ret : 0;

	gadget_submit_buf(ctx, &events, e, sizeof(*e));
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_kill")
int ig_sig_kill_x(struct syscall_trace_exit *ctx)
{
	// kill(pid, sig)
	return kill_exit(ctx, 1, 0, 2);
}

SEC("tracepoint/syscalls/sys_exit_tkill")
int ig_sig_tkill_x(struct syscall_trace_exit *ctx)
{
	// tkill(tid, sig)
	return kill_exit(ctx, 0, 1, 2);
}

SEC("tracepoint/syscalls/sys_exit_tgkill")
int ig_sig_tgkill_x(struct syscall_trace_exit *ctx)
{
	// tgkill(tgid, tid, sig)
	return kill_exit(ctx, 1, 2, 3);
}

char LICENSE[] SEC("license") = "GPL";
