/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/gpu_types.h - the records of the GPU bridge's maps.
 *
 * Upstream's gpu-ebpf-bridge daemon reads GPU telemetry (NVML) and writes it
 * into four BPF maps pinned by name under /sys/fs/bpf; GPU gadgets read
 * them (gpu_bridge_maps.h declares the maps). This file holds the records'
 * layouts, which are the bridge's ABI: same members, same order, same
 * sizes. Vendor-neutral names (gpu_*), so another vendor's bridge can fill
 * the same maps.
 *
 *   gpu_meta                array, 1 entry       struct gpu_meta
 *   gpu_device              array, per device    struct gpu_device_metrics
 *   gpu_per_pid             LRU hash, host tgid  struct gpu_pid_metrics_aggregated
 *   gpu_per_pid_per_device  LRU hash, (pid << 32) | device
 *                                                struct gpu_pid_metrics
 *
 * Read members with CO-RE (BPF_CORE_READ, bpf_core_field_exists) so that a
 * gadget keeps working with a bridge that added members.
 */

#ifndef __GADGET_GPU_TYPES_H
#define __GADGET_GPU_TYPES_H

#if !defined(__VMLINUX_H__) && !defined(_LINUX_TYPES_H)
#include <linux/types.h>
#endif

/* Layout version written by the bridge (gpu_meta.schema_version). */
#define GPU_SCHEMA_VERSION 1

/* Devices the bridge indexes at most. */
#define GPU_MAX_DEVICES 16

/* gpu_per_pid's gpu_device_primary for a process on several devices. */
#define GPU_DEVICE_PRIMARY_MULTI 0xFF

/* The bridge's state; key 0. Data older than about two of the bridge's
 * poll intervals (last_update_boottime_ns against bpf_ktime_get_boot_ns())
 * is stale. */
struct gpu_meta {
	__u32 schema_version;
	__u32 n_devices;
	__u64 last_update_boottime_ns;
	__u32 helper_pid;
	__u32 _reserved;
	/* CLOCK_REALTIME minus CLOCK_BOOTTIME, in ns: a bridge (wall-clock)
	 * time t is boot time t - clock_offset_ns. */
	__s64 clock_offset_ns;
};

/* One device (key: its index). Zero where the source has no value. */
struct gpu_device_metrics {
	__u64 timestamp_ns;

	__u32 sm_util_pct;
	__u32 mem_util_pct;

	__u64 mem_total; /* bytes */
	__u64 mem_used; /* bytes allocated by users, without mem_reserved */
	__u64 mem_reserved; /* bytes taken by driver and firmware */

	__u32 temp_c;
	__u32 power_mw;

	__u32 sm_clock_mhz;
	__u32 mem_clock_mhz;

	__u64 throttle_reasons; /* NVML's clock event reason bits */

	__u64 pcie_tx_kbps;
	__u64 pcie_rx_kbps;

	__u32 enc_util_pct;
	__u32 dec_util_pct;

	__u64 nvlink_tx_kbps;
	__u64 nvlink_rx_kbps;

	__u64 ecc_corrected_total;
	__u64 ecc_uncorrected_total;

	__u32 fan_speed_pct;
	__u32 compute_mode;
};

/* One process on one device. */
struct gpu_pid_metrics {
	__u64 timestamp_ns;
	__u64 used_gpu_memory;

	__u32 sm_util_pct;
	__u32 mem_util_pct;
	__u32 enc_util_pct;
	__u32 dec_util_pct;

	__u8 gpu_device;
	__u8 mig_instance;
	__u16 _pad;
};

/* One process, summed (memory) or maxed (utilizations) over its devices. */
struct gpu_pid_metrics_aggregated {
	__u64 timestamp_ns;
	__u64 used_gpu_memory_total;

	__u32 sm_util_pct_max;
	__u32 mem_util_pct_max;

	__u8 gpu_device_primary; /* or GPU_DEVICE_PRIMARY_MULTI */
	__u8 device_count;
	__u16 _pad;
};

#endif /* __GADGET_GPU_TYPES_H */
