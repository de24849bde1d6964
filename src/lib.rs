//! `ig`: build, ship and run eBPF gadgets packaged as OCI images.
//!
//! The library holds every layer of the tool; `src/main.rs` is a thin shell
//! around [`cli::run`]. See ARCHITECTURE.md for the module map and the rules
//! on which module may depend on which.

pub mod bpf;
pub mod btf;
pub mod build;
pub mod cli;
pub mod containers;
pub mod datasource;
pub mod expr;
pub mod files;
pub mod image;
pub mod metadata;
pub mod names;
pub mod operators;
pub mod output;
pub mod params;
pub mod pipeline;
pub mod runner;
pub mod symbols;
