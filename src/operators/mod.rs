//! The operators of the chain, each a module with one job. No operator
//! imports another: they meet only through fields, tags and annotations.
//!
//! | operator | priority | job |
//! |---|---|---|
//! | [`ebpf`] | 0 | load the gadget object, emit its events |
//! | `output::OutputOperator` | 10000 | print (lives in `output/`) |
//!
//! The CLI builds the list for a run explicitly (no registration magic).

pub mod ebpf;
