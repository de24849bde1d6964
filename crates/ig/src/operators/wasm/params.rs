//! `getParamValue`: the values of the parameters a gadget declares under
//! `params.wasm` in its gadget.yaml, as the user set them (or their
//! defaults).

use wasmtime::{Caller, Linker};

use super::state::{HostState, read_str, write_dst};

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "ig",
        "getParamValue",
        |mut c: Caller<'_, HostState>, key: u64, dst: u64| -> u32 {
            let Some(key) = read_str(&mut c, key, "getParamValue") else {
                return 1;
            };
            let Some(value) = c.data().params.get(&key).cloned() else {
                c.data().warn(format_args!(
                    "getParamValue: no parameter {key:?} in params.wasm"
                ));
                return 1;
            };
            if write_dst(&mut c, dst, value.as_bytes()) {
                0
            } else {
                c.data().warn(format_args!(
                    "getParamValue: the value of {key} ({} bytes) does not fit the guest's buffer",
                    value.len()
                ));
                1
            }
        },
    )?;
    Ok(())
}
