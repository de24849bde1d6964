//! The operators of the chain, each a module with one job. No operator
//! imports another: they meet only through fields, tags and annotations.
//!
//! | operator | priority | job |
//! |---|---|---|
//! | [`ebpf`] | 0 | load the gadget object, emit its events |
//! | `output::OutputOperator` | 10000 | print (lives in `output/`) |
//!
//! The CLI builds the list for a run explicitly (no registration magic):
//! the image operator(s) for the gadget, then [`catalog`], then output.

use crate::pipeline::Operator;

pub mod ebpf;

/// The operators that every run offers, whatever the gadget: each decides
/// in `instantiate` whether it has something to do (opting out costs
/// nothing per event). Their parameters appear in `ig run IMAGE --help`.
pub fn catalog() -> Vec<Box<dyn Operator>> {
    Vec::new()
}
