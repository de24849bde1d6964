//! Reliability under faults, floods and hostile input (issue 9; every
//! guarantee and the test proving it are listed in docs/reliability.md).
//!
//! - `fuzz_replay`: the fuzz targets over the committed corpus, the crash
//!   regressions and deterministic mutations (no privileges).
//! - `store`: the store killed at every write step (strace fault
//!   injection), leftovers, `ig image prune`, modes and ownership.
//! - `kernel`: `ig run` killed by each signal at many moments (loading,
//!   attached, in a storm) leaves no program, map, link or pin; floods and
//!   slow or stopped readers keep memory bounded, report loss and still
//!   stop within 1 s on SIGINT. Needs root, like tests/kernel.
//! - `privileges`: what works without root, and the message when the
//!   capabilities are missing.
//! - `messages`: what bad input is told (escaped, cut, described, with
//!   repair hints).
//! - `files`: `ig image export` to devices, FIFOs, stdout, sockets,
//!   directories and terminals, and links another user plants at its
//!   temp name or its destination.

#[path = "../common/mod.rs"]
mod common;

mod files;
mod fuzz_replay;
mod kernel;
mod limits;
mod messages;
mod privileges;
mod store;
