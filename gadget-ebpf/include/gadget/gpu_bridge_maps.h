/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/gpu_bridge_maps.h - the GPU bridge's maps (gpu_types.h), as a
 * gadget declares them to read them.
 *
 * The maps are pinned by name (LIBBPF_PIN_BY_NAME): a loader opens the
 * bridge's pinned maps instead of creating new ones. When the bridge is not
 * running, upstream's loader creates the maps and pins them; ig never pins
 * kernel objects (ARCHITECTURE.md, invariant 7: whatever ig creates dies
 * with it), so it creates them for the run only, empty, and warns once
 * naming them (src/bpf/loader.rs; src/bpf/contract.rs, pinned_maps). A
 * gadget reading them must expect them empty.
 *
 * Select the maps to declare before including this file:
 * GPU_BRIDGE_WANT_META, GPU_BRIDGE_WANT_DEVICE, GPU_BRIDGE_WANT_PER_PID,
 * GPU_BRIDGE_WANT_PER_PID_PER_DEVICE, or GPU_BRIDGE_WANT_ALL for the four.
 * Include <vmlinux.h> (or the UAPI headers) and <bpf/bpf_helpers.h> first.
 */

#ifndef __GADGET_GPU_BRIDGE_MAPS_H
#define __GADGET_GPU_BRIDGE_MAPS_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include <gadget/gpu_types.h>

#ifdef GPU_BRIDGE_WANT_ALL
#define GPU_BRIDGE_WANT_META
#define GPU_BRIDGE_WANT_DEVICE
#define GPU_BRIDGE_WANT_PER_PID
#define GPU_BRIDGE_WANT_PER_PID_PER_DEVICE
#endif

#ifdef GPU_BRIDGE_WANT_META
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gpu_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} gpu_meta SEC(".maps");

/* The bridge's record when its last update is at most stale_threshold_ms
 * older than now_boot_ns (a bpf_ktime_get_boot_ns() value); NULL when the
 * bridge is stale or absent. */
static __always_inline struct gpu_meta *gpu_meta_fresh(__u64 now_boot_ns,
						       __u64 stale_threshold_ms)
{
	__u32 key = 0;
	struct gpu_meta *m = bpf_map_lookup_elem(&gpu_meta, &key);

	if (!m || now_boot_ns - m->last_update_boottime_ns >
			  stale_threshold_ms * 1000000ULL)
		return NULL;
	return m;
}
#endif

#ifdef GPU_BRIDGE_WANT_DEVICE
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GPU_MAX_DEVICES);
	__type(key, __u32);
	__type(value, struct gpu_device_metrics);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} gpu_device SEC(".maps");
#endif

#ifdef GPU_BRIDGE_WANT_PER_PID
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct gpu_pid_metrics_aggregated);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} gpu_per_pid SEC(".maps");

/* The process tgid's record when it holds at least min_gpu_mem_bytes of GPU
 * memory, else NULL. */
static __always_inline struct gpu_pid_metrics_aggregated *
gpu_pid_holder(__u32 tgid, __u64 min_gpu_mem_bytes)
{
	struct gpu_pid_metrics_aggregated *m =
		bpf_map_lookup_elem(&gpu_per_pid, &tgid);

	if (!m || m->used_gpu_memory_total < min_gpu_mem_bytes)
		return NULL;
	return m;
}
#endif

#ifdef GPU_BRIDGE_WANT_PER_PID_PER_DEVICE
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct gpu_pid_metrics);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} gpu_per_pid_per_device SEC(".maps");
#endif

#endif /* __GADGET_GPU_BRIDGE_MAPS_H */
