//! Host functions some upstream versions had (handle arrays, containers,
//! struct fields) that its current host does not export: no gadget of its
//! tree calls them. Each exists with its signature so a module importing
//! it still links; a call logs one clear warning per function and returns
//! the error value, so a guest that probes a feature sees an error rather
//! than a trap.

use wasmtime::{Caller, Linker};

use super::state::HostState;

fn not_implemented(c: &mut Caller<'_, HostState>, name: &'static str) {
    c.data_mut().warn_once(
        name,
        format_args!(
            "{name} is not implemented by this version of ig; returning an error to the guest"
        ),
    );
}

macro_rules! stub {
    ($linker:expr, $name:literal, ($($arg:ident : $ty:ty),*) -> $ret:ty = $err:expr) => {
        $linker.func_wrap(
            "ig",
            $name,
            |mut c: Caller<'_, HostState>, $($arg: $ty),*| -> $ret {
                $(let _ = $arg;)*
                not_implemented(&mut c, $name);
                $err
            },
        )?;
    };
}

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    // Arrays of handles (upstream fills them only from getContainers).
    stub!(linker, "arrayNew", () -> u32 = 0);
    stub!(linker, "arrayLen", (array: u32) -> i64 = -1);
    stub!(linker, "arrayGet", (array: u32, index: u32) -> u32 = 0);
    stub!(linker, "arrayAppend", (array: u32, handle: u32) -> u32 = 1);
    // 0: the guest library's "error" for an array handle and for IDs.
    stub!(linker, "getContainers", () -> u32 = 0);
    stub!(linker, "containerGetCgroupID", (container: u32) -> u64 = 0);
    stub!(linker, "containerGetMntns", (container: u32) -> u64 = 0);
    // Byte counts: -1 is the error; status codes: 1.
    stub!(linker, "fieldGetStruct", (field: u32, data: u32, dst: u64) -> i32 = -1);
    stub!(linker, "fieldPutStruct", (field: u32, data: u32, src: u64) -> u32 = 1);
    stub!(linker, "fieldGetStructArray", (field: u32, data: u32, dst: u64) -> i32 = -1);
    stub!(linker, "fieldPutStructArray", (field: u32, data: u32, src: u64) -> u32 = 1);
    Ok(())
}
