//! The fuzz harnesses of ig (see `targets`), shared by the libFuzzer
//! binaries of `fuzz_targets/` and by the corpus replay test of
//! `tests/reliability`, which includes `targets.rs` directly.

pub mod targets;
