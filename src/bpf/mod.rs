//! Everything about gadget eBPF objects: parsing them (pure) and loading
//! them into the kernel (the only place that uses aya).
//!
//! - [`object`]: ELF sections, programs and `.rodata` symbols (pure);
//! - [`contract`]: the `gadget_*` marker variables in BTF (pure);
//! - [`schema`]: event struct BTF → data source schema (pure);
//! - [`loader`]: create maps, load and attach programs, read ring buffers
//!   (kernel).
//!
//! It does not decide what happens to events: that is the operator chain's
//! job (`operators::ebpf` glues this module to it).

pub mod contract;
pub mod loader;
pub mod mntns_filter;
pub mod object;
pub mod params;
pub mod privileges;
pub mod programs;
pub mod schema;
