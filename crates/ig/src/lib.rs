//! `ig`: build, ship and run eBPF gadgets packaged as OCI images.
//!
//! The library holds every layer of the tool but the command line (the
//! `ig-cli` package at the repository's root, which builds the `ig`
//! binary on it). See ARCHITECTURE.md for the module map and the rules on
//! which module may depend on which. Every public item is documented
//! (`missing_docs`): see docs/library.md for the embedding API,
//! [`run::GadgetRun`].

#![warn(missing_docs)]

pub mod bpf;
pub mod btf;
pub mod build;
pub mod containers;
pub mod datasource;
pub mod expr;
pub mod files;
pub mod image;
pub mod metadata;
pub mod names;
pub mod netif;
pub mod operators;
pub mod otlp;
pub mod output;
pub mod params;
pub mod pipeline;
pub mod run;
pub mod runner;
pub mod sched;
pub mod symbols;
pub mod text;
pub mod version;
