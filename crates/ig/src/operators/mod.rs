//! The operators of the chain, each a module with one job. No operator
//! imports another: they meet only through fields, tags and annotations.
//!
//! | operator | priority | job |
//! |---|---|---|
//! | [`process`] | -1000 | a table of processes (`operator.process`, top_process) |
//! | [`cgroup`] | -900 | CPU throttling per cgroup (`operator.cgroup`, top_cpu_throttle) |
//! | [`ebpf`] | 0 | load the gadget object, emit its events |
//! | [`ebpfstats`] | 0 | statistics of every eBPF program (`operator.ebpf`, bpfstats) |
//! | [`localmanager`] | 1 (handlers at -1) | containers: `runtime.*` fields, `-c` selection in the kernel, the `containers` data source (`enable-containers-datasource`) |
//! | [`formatters`] | 0 | readable siblings of typed fields (`error_raw` → `error`) |
//! | [`uidgid`] | 5 | uid → user name, gid → group name |
//! | [`processinfo`] | 6 | command line and executable of a pid (opt-in) |
//! | [`filter`] | 9000 | `--filter`: drop events that do not match |
//! | [`sort`] | 9500 | `--sort`: order array snapshots |
//! | [`limit`] | 9600 | `--max-entries`: cut array snapshots |
//! | [`otel_metrics`] | 9995 | `metrics.*` annotations: Prometheus metrics, histograms drawn (`metrics.print`) |
//! | [`wasm`] | 1000 (handlers at the guest's priorities) | the image's WASM module (only when it has one) |
//! | `output::OutputOperator` | 10000 | print (lives in `output/`) |
//!
//! The CLI builds the list for a run explicitly (no registration magic):
//! the image operator(s) for the gadget, the operators its `gadget.yaml`
//! turns on ([`from_config`]), then [`catalog`], then output. A gadget
//! made of operators only (no eBPF program) is just a run without the
//! image operator.

use crate::metadata::GadgetMetadata;
use crate::pipeline::Operator;

pub mod annotations;
pub mod calendar;
pub mod cgroup;
pub mod ebpf;
pub mod ebpfstats;
pub mod filter;
pub mod formatters;
pub mod limit;
pub mod localmanager;
pub mod logs;
pub mod otel_logs;
pub mod otel_metrics;
pub mod process;
pub mod processinfo;
pub mod sort;
mod ticker;
pub mod uidgid;
mod usersource;
#[cfg(feature = "wasm")]
pub mod wasm;

/// The operators that every run offers, whatever the gadget: each decides
/// in `instantiate` whether it has something to do (opting out costs
/// nothing per event). Their parameters appear in `ig run IMAGE --help`.
pub fn catalog() -> Vec<Box<dyn Operator>> {
    catalog_with(&Seams::default(), &GadgetMetadata::default())
}

/// The few handles that connect operators explicitly, created by the CLI
/// and given to each side (operators never import each other).
#[derive(Clone, Debug, Default)]
pub struct Seams {
    /// Filled by the local manager, written to the kernel by the eBPF
    /// operator (`EbpfOptions::mntns_filter`), read by a WASM guest's
    /// `shouldDiscardMntnsID`.
    pub mntns_filter: crate::bpf::mntns_filter::MntnsFilter,
    /// A WASM guest's configuration for the eBPF operator, and the
    /// gadget's maps for the guest (`EbpfOptions::shared`).
    pub gadget: crate::bpf::shared::SharedGadget,
    /// Published by the local manager, followed by the eBPF operator:
    /// where programs that follow containers attach
    /// (`EbpfOptions::targets`).
    pub targets: crate::bpf::targets::Targets,
    /// Tells the eBPF statistics operator which processes are `ig run`s,
    /// with the CLI's own argument parser.
    pub gadget_runs: ebpfstats::GadgetRuns,
    /// Where collected metrics are exported (`--otel-metrics-listen`);
    /// `None`: they are only drawn (`metrics.print`).
    pub metrics: Option<otel_metrics::Registry>,
}

/// The names `operator.<name>` may take in `gadget.yaml`: every operator
/// of ours, spelled as upstream's (compared without regard to case).
pub const NAMES: &[&str] = &[
    cgroup::NAME,
    "cli",
    ebpfstats::SECTION,
    "filter",
    "formatters",
    "limiter",
    "LocalManager",
    process::NAME,
    "processinfo",
    "sort",
    "uidgidresolver",
    "wasm",
];

/// The settings operator `name` (lower case) reads from
/// `operator.<name>` in `gadget.yaml`.
pub fn settings(name: &str) -> &'static [&'static str] {
    match name {
        process::NAME => process::SETTINGS,
        cgroup::NAME => cgroup::SETTINGS,
        ebpfstats::SECTION => ebpfstats::SETTINGS,
        _ => &[],
    }
}

/// The parameters of every operator `gadget.yaml` can turn on, for
/// checking what templates refer to before knowing which are on.
pub fn config_params() -> Vec<crate::params::ParamSpec> {
    ebpfstats::params()
}

/// Why a gadget's configuration cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `process` operator's settings.
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    /// The `cgroup` operator's settings.
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    /// The eBPF statistics operator's settings.
    #[error(transparent)]
    Stats(#[from] ebpfstats::EbpfStatsError),
}

/// The operators a gadget's `gadget.yaml` turns on (`operator.process`,
/// `operator.cgroup`, `operator.ebpf` with `emitstats: true`), as it reads
/// after its custom parameters' patches.
pub fn from_config(
    meta: &GadgetMetadata,
    seams: &Seams,
) -> Result<Vec<Box<dyn Operator>>, ConfigError> {
    let mut ops: Vec<Box<dyn Operator>> = Vec::new();
    if let Some(op) = process::ProcessOperator::from_config(meta)? {
        ops.push(Box::new(op));
    }
    if let Some(op) = cgroup::CgroupOperator::from_config(meta)? {
        ops.push(Box::new(op));
    }
    if let Some(op) = ebpfstats::EbpfStats::from_config(meta, seams.gadget_runs.clone())? {
        ops.push(Box::new(op));
    }
    Ok(ops)
}

/// [`catalog`], connected through `seams`, for the gadget `meta`
/// describes (its top-level annotations: `enable-containers-datasource`).
pub fn catalog_with(seams: &Seams, meta: &GadgetMetadata) -> Vec<Box<dyn Operator>> {
    vec![
        Box::new(
            localmanager::LocalManager::new(seams.mntns_filter.clone())
                .with_targets(seams.targets.clone())
                .with_containers_source(localmanager::wants_containers_source(meta)),
        ),
        Box::new(formatters::Formatters::new()),
        Box::new(uidgid::UidGidResolver::new()),
        Box::new(processinfo::ProcessInfo::new()),
        Box::new(filter::Filter::default()),
        Box::new(sort::Sort::default()),
        Box::new(limit::Limit::default()),
        Box::new(otel_metrics::OtelMetrics::new(seams.metrics.clone())),
    ]
}
