//! `gadgetLog` and `gadgetShouldLog`: the guest's messages go to ig's
//! logger, prefixed with the module, at upstream's levels
//! (0 error, 1 warn, 2 info, 3 debug, 4 trace). A message shown counts
//! against the guest's stderr budget (`stderr`), as its writes to
//! descriptor 2 do.

use wasmtime::{Caller, Linker};

use super::state::{HostState, read_str};

fn level(l: u32) -> Option<log::Level> {
    Some(match l {
        0 => log::Level::Error,
        1 => log::Level::Warn,
        2 => log::Level::Info,
        3 => log::Level::Debug,
        4 => log::Level::Trace,
        _ => return None,
    })
}

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "ig",
        "gadgetLog",
        |mut c: Caller<'_, HostState>, lvl: u32, msg: u64| {
            let Some(text) = read_str(&mut c, msg, "gadgetLog") else {
                return;
            };
            let module = &c.data().module;
            let shown = level(lvl).is_none_or(|l| log::log_enabled!(l));
            if shown && !c.data().stderr.admit(text.len()) {
                return;
            }
            match level(lvl) {
                Some(l) => log::log!(l, "wasm module {module}: {text}"),
                None => {
                    log::warn!("wasm module {module}: gadgetLog with unknown level {lvl}: {text}")
                }
            }
        },
    )?;
    linker.func_wrap("ig", "gadgetShouldLog", |lvl: u32| -> u32 {
        u32::from(level(lvl).is_some_and(|l| log::log_enabled!(l)))
    })?;
    Ok(())
}
