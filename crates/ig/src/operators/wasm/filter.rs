//! `shouldDiscardMntnsID(mntns)`: 1 when events of that mount namespace
//! are outside the container selection (`-c`, `--containername`, ...), 0
//! when they are in it or nothing is selected. The selection is the one
//! the local manager keeps and the eBPF operator writes into
//! `gadget_mntns_filter_map` (`bpf::mntns_filter`): the same answer a
//! lookup in that map gives upstream, without a system call per event.

use wasmtime::{Caller, Linker};

use super::state::HostState;

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "ig",
        "shouldDiscardMntnsID",
        |c: Caller<'_, HostState>, mntns: u64| -> u32 { u32::from(!c.data().mntns.allows(mntns)) },
    )?;
    Ok(())
}
