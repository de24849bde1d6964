//! `setConfig(key, value, kind)`: configuration for the eBPF operator, set
//! before the gadget loads (in `gadgetInit` or `gadgetPreStart`). Upstream's
//! guests use it to choose where programs attach:
//! `programs.<program>.attach_to` names the new target (its section's kind
//! stays), `gadget_program_disabled` keeps the program out (see
//! `bpf::shared::apply_config`). Only string values exist (kind 12), as
//! upstream. 0 on success, 1 on error.
//!
//! A key set once the gadget is loaded (from `gadgetStart` on) changes
//! nothing; the call still succeeds, as upstream's does, and ig says so
//! once.

use wasmtime::{Caller, Linker};

use super::state::{HostState, read_str};

/// Upstream's `api.Kind_String`.
const KIND_STRING: u32 = 12;

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "ig",
        "setConfig",
        |mut c: Caller<'_, HostState>, key: u64, value: u64, kind: u32| -> u32 {
            let Some(key) = read_str(&mut c, key, "setConfig") else {
                return 1;
            };
            if kind != KIND_STRING {
                c.data().warn(format_args!(
                    "setConfig {key}: unsupported value kind {kind} (only strings, kind {KIND_STRING})"
                ));
                return 1;
            }
            let Some(value) = read_str(&mut c, value, "setConfig") else {
                return 1;
            };
            let s = c.data_mut();
            if !s.gadget.set_config(&key, &value) {
                s.warn_once(
                    "setConfig late",
                    format_args!(
                        "setConfig {key}={value:?} came after the gadget was loaded and changes nothing (set configuration in gadgetInit or gadgetPreStart)"
                    ),
                );
            }
            0
        },
    )?;
    Ok(())
}
