//! Everything about gadget eBPF objects: parsing them (pure) and loading
//! them into the kernel (the only places that use aya: `loader` and
//! `stats`).
//!
//! - [`object`]: ELF sections, programs and `.rodata` symbols (pure);
//! - [`compat`]: rewrites of libbpf-style objects aya would refuse (pure);
//! - [`contract`]: the `gadget_*` marker variables in BTF (pure);
//! - [`schema`]: event struct BTF → data source schema (pure);
//! - [`loader`]: create maps, load and attach programs, read ring buffers
//!   (kernel);
//! - [`ring`]: a BPF ring buffer read in place, its data mapped once
//!   (kernel; `loader` hands it the map);
//! - [`maps`], [`perf`]: maps by descriptor and perf rings, as a WASM
//!   guest reaches them (kernel, raw `bpf(2)` and `perf_event_open(2)`);
//! - [`pf`]: packet filter expressions (`--pf`) compiled with tcpdump and
//!   translated to eBPF for `gadget_pf_matches`;
//! - [`shared`]: what the eBPF operator and a WASM guest share (pure);
//! - [`socket_enricher`]: who owns each socket, in `gadget_sockets`, for
//!   networking gadgets (our embedded program, through `loader`);
//! - [`uprobes`]: where uprobes attach, per root (ld.so.cache, symbols,
//!   one link per file; the attaching itself is `loader`'s);
//! - [`targets`]: the host and containers programs that follow containers
//!   attach to, as the local manager publishes them (pure);
//! - [`stats`]: every program and map of the host, with run time and
//!   count, and the switch of the kernel's statistics (kernel);
//! - [`inspect`]: the object read as `ig run` and `ig image build` read it
//!   (normalized sections, ELF, BTF, the aya guard, the contract; pure).
//!
//! It does not decide what happens to events: that is the operator chain's
//! job (`operators::ebpf` glues this module to it).

pub mod compat;
pub mod contract;
pub mod loader;
pub mod maps;
pub mod mntns_filter;
pub mod object;
pub mod params;
pub mod perf;
pub mod pf;
pub mod privileges;
pub mod programs;
pub mod ring;
pub mod schema;
pub mod shared;
pub mod socket_enricher;
pub mod stats;
pub mod targets;
pub mod uprobes;

use crate::btf::Btf;
use contract::Contract;
use object::ObjectInfo;

/// A gadget object read the way `ig run` reads it, before anything is
/// loaded: section names normalized, ELF and BTF parsed, refused if aya
/// would mishandle it, its marker variables discovered.
pub struct Inspected {
    /// The object after [`compat::for_aya`]: what aya is given.
    pub object: Vec<u8>,
    /// ELF facts: programs, `.rodata`, license.
    pub info: ObjectInfo,
    /// The object's BTF, parsed.
    pub btf: Btf,
    /// Its markers: data sources, parameters, fallbacks.
    pub contract: Contract,
}

/// Read `object` as `ig run` does (pure: no kernel). `ig image build` makes
/// the same checks, so that a gadget `ig run` would refuse never reaches
/// the store.
pub fn inspect(object: &[u8]) -> Result<Inspected, Box<dyn std::error::Error + Send + Sync>> {
    let object = compat::for_aya(object);
    let info = ObjectInfo::parse(&object)?;
    let btf = Btf::parse(&info.btf)?;
    // Before aya ever sees the bytes: see check_for_aya.
    object::check_for_aya(&object, &btf)?;
    // `.kconfig` externs get their values at load time; one no kernel
    // could fill (its type, no symbol) is refused now.
    compat::kconfig_needs(&object)?;
    let contract = Contract::discover(&btf)?;
    Ok(Inspected {
        object,
        info,
        btf,
        contract,
    })
}

/// `e` and its sources, one line: `e: cause: cause`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
