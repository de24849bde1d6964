//! Stack symbolization: kernel addresses through `/proc/kallsyms`, user
//! addresses through `/proc/PID/maps` and the ELF symbols of the mapped
//! files.
//!
//! Pure parsing apart from reading the files it is pointed at; it knows
//! nothing of BPF maps or events (the eBPF operator reads the stack maps
//! and puts the text into fields).
//!
//! - [`KernelSymbols`]: `/proc/kallsyms` parsed once, sorted, binary search.
//! - [`UserSymbolizer`]: per-process mappings (re-read per batch), parsed
//!   ELF files cached by device, inode, modification time and size.
//! - [`parse_maps`], [`ElfSymbols`]: the pieces, usable on their own.

mod elf;
mod kallsyms;
mod maps;
mod user;

#[cfg(test)]
mod tests;

pub use elf::{ElfError, ElfSymbols, UserFrame};
pub use kallsyms::{
    KallsymsError, KernelFrame, KernelSymbols, count_named as count_kallsyms_named,
};
pub use maps::{Mapping, find as find_mapping, parse_maps};
pub use user::{StackOwner, UNKNOWN, UserSymbolizer};
