//! The guest side of the WASM API of `ig` gadgets: what a Rust gadget
//! module (a `cdylib` built for `wasm32-wasip1`) calls to read and change
//! events, create data sources and fields, reach the gadget's BPF maps and
//! perf rings, and configure the eBPF side before it loads.
//!
//! It offers the names upstream Inspektor Gadget's Rust guests use
//! (`api::datasources::DataSource`, `api::errorf!`, ...), so their sources
//! build against it unchanged. Every function here is a thin, checked
//! wrapper over one import of the host module `ig` (documented in ig's
//! `docs/wasm.md`): strings and buffers travel as `length << 32 | pointer`,
//! objects as u32 handles where 0 means failure.
//!
//! Linking this crate also exports `gadgetAPIVersion` (always 1) and
//! `dataSourceCallback`, which routes events to the closures given to
//! [`datasources::DataSource::subscribe`] and its siblings. A guest exports
//! the lifecycle functions it needs itself (`gadgetInit`,
//! `gadgetPreStart`, `gadgetStart`, `gadgetStop`, `gadgetPostStop`) with
//! `#[no_mangle]`, each returning 0 on success.

pub mod config;
pub mod datasources;
pub mod fields;
pub mod filter;
pub mod handle;
pub mod helpers;
pub mod kallsyms;
pub mod log;
pub mod map;
pub mod params;
pub mod perf;
pub mod syscall;
pub mod version;
