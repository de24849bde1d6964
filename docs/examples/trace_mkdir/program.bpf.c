// SPDX-License-Identifier: GPL-2.0
//
// trace_mkdir: one event per mkdir(2) or mkdirat(2) call, with the path
// and mode asked for. The worked example of docs/author-guide.md.

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

#include <gadget/buffer.h>
#include <gadget/common.h>
#include <gadget/filter.h>
#include <gadget/macros.h>
#include <gadget/types.h>

#define PATH_LEN 256

// The event: every member becomes a field; the typedefs of types.h give
// them a meaning (a timestamp, a mode shown as rwx bits, a process).
struct event {
	gadget_timestamp timestamp_raw;
	struct gadget_process proc;
	gadget_file_mode mode_raw;
	char path[PATH_LEN];
};

// A parameter: `ig run trace_mkdir --mode-only 448` keeps only mkdirs
// asking for that mode (0 = all). Set before the program is loaded.
const volatile __u32 mode_only = 0;
GADGET_PARAM(mode_only);

// The ring buffer and the marker that names it a tracer of `event`s.
GADGET_TRACER_MAP(events, 1024 * 256);
GADGET_TRACER(mkdir, events, event);

static __always_inline int emit(void *ctx, const char *path, __u32 mode)
{
	struct event *e;

	// The common filters: --pid, --comm, -c CONTAINER...
	if (gadget_should_discard_data_current())
		return 0;
	if (mode_only && mode != mode_only)
		return 0;

	e = gadget_reserve_buf(&events, sizeof(*e));
	if (!e)
		return 0;
	e->timestamp_raw = bpf_ktime_get_boot_ns();
	gadget_process_populate(&e->proc);
	e->mode_raw = mode;
	bpf_probe_read_user_str(e->path, sizeof(e->path), path);
	gadget_submit_buf(ctx, &events, e, sizeof(*e));
	return 0;
}

// mkdir(path, mode)
SEC("tracepoint/syscalls/sys_enter_mkdir")
int trace_mkdir(struct trace_event_raw_sys_enter *ctx)
{
	return emit(ctx, (const char *)ctx->args[0], (__u32)ctx->args[1]);
}

// mkdirat(dirfd, path, mode)
SEC("tracepoint/syscalls/sys_enter_mkdirat")
int trace_mkdirat(struct trace_event_raw_sys_enter *ctx)
{
	return emit(ctx, (const char *)ctx->args[1], (__u32)ctx->args[2]);
}

char LICENSE[] SEC("license") = "GPL";
