//! The `ig` command line: clap definitions, commands, error printing,
//! signals. Everything below it is the `ig` library (`crates/ig`), which
//! builds without clap, anyhow, indicatif or this crate; `src/main.rs` is
//! a thin shell around [`cli::main`]. See ARCHITECTURE.md.

// The command line is no API: its items are documented where it helps.
#[allow(missing_docs)]
pub mod cli;

pub mod block_cache;
