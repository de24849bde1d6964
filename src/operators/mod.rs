//! The operators of the chain, each a module with one job. No operator
//! imports another: they meet only through fields, tags and annotations.
//!
//! | operator | priority | job |
//! |---|---|---|
//! | [`ebpf`] | 0 | load the gadget object, emit its events |
//! | [`localmanager`] | 1 (handlers at -1) | containers: `runtime.*` fields, `-c` selection in the kernel |
//! | [`formatters`] | 0 | readable siblings of typed fields (`error_raw` → `error`) |
//! | [`uidgid`] | 5 | uid → user name, gid → group name |
//! | [`processinfo`] | 6 | command line and executable of a pid (opt-in) |
//! | [`filter`] | 9000 | `--filter`: drop events that do not match |
//! | [`sort`] | 9500 | `--sort`: order array snapshots |
//! | [`limit`] | 9600 | `--max-entries`: cut array snapshots |
//! | [`wasm`] | 1000 (handlers at the guest's priorities) | the image's WASM module (only when it has one) |
//! | `output::OutputOperator` | 10000 | print (lives in `output/`) |
//!
//! The CLI builds the list for a run explicitly (no registration magic):
//! the image operator(s) for the gadget, then [`catalog`], then output.

use crate::pipeline::Operator;

pub mod ebpf;
pub mod filter;
pub mod formatters;
pub mod limit;
pub mod localmanager;
pub mod process;
pub mod processinfo;
pub mod sort;
mod ticker;
pub mod uidgid;
mod usersource;
pub mod wasm;

/// The operators that every run offers, whatever the gadget: each decides
/// in `instantiate` whether it has something to do (opting out costs
/// nothing per event). Their parameters appear in `ig run IMAGE --help`.
pub fn catalog() -> Vec<Box<dyn Operator>> {
    catalog_with(&Seams::default())
}

/// The few handles that connect operators explicitly, created by the CLI
/// and given to each side (operators never import each other).
#[derive(Clone, Debug, Default)]
pub struct Seams {
    /// Filled by the local manager, written to the kernel by the eBPF
    /// operator (`EbpfOptions::mntns_filter`).
    pub mntns_filter: crate::bpf::mntns_filter::MntnsFilter,
}

/// [`catalog`], connected through `seams`.
pub fn catalog_with(seams: &Seams) -> Vec<Box<dyn Operator>> {
    vec![
        Box::new(localmanager::LocalManager::new(seams.mntns_filter.clone())),
        Box::new(formatters::Formatters::new()),
        Box::new(uidgid::UidGidResolver::new()),
        Box::new(processinfo::ProcessInfo::new()),
        Box::new(filter::Filter::default()),
        Box::new(sort::Sort::default()),
        Box::new(limit::Limit::default()),
    ]
}
