//! `getSyscallName` and `getSyscallID`, from the x86_64 syscall table.

use wasmtime::{Caller, Linker};

use super::state::{HostState, read_str, write_dst};

/// x86_64 syscall names by number (index = number, "" = unused).
fn names() -> &'static [&'static str] {
    crate::names::SYSCALLS_X86_64
}

/// Upstream's name for a number: the table's, else `syscall_<hex>` as
/// strace writes unknown ones.
pub(super) fn name_of(id: u32) -> String {
    match names().get(id as usize) {
        Some(n) if !n.is_empty() => (*n).to_owned(),
        _ => format!("syscall_{id:x}"),
    }
}

pub(super) fn id_of(name: &str) -> Option<usize> {
    names().iter().position(|n| !n.is_empty() && *n == name)
}

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "ig",
        "getSyscallName",
        |mut c: Caller<'_, HostState>, id: u32, dst: u64| -> u32 {
            let name = name_of(id & 0xffff);
            if write_dst(&mut c, dst, name.as_bytes()) {
                0
            } else {
                c.data().warn(format_args!(
                    "getSyscallName: {name} does not fit the guest's buffer"
                ));
                1
            }
        },
    )?;
    linker.func_wrap(
        "ig",
        "getSyscallID",
        |mut c: Caller<'_, HostState>, name: u64| -> i32 {
            let Some(name) = read_str(&mut c, name, "getSyscallID") else {
                return -1;
            };
            id_of(&name)
                .and_then(|i| i32::try_from(i).ok())
                .unwrap_or(-1)
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_round_trip() {
        assert_eq!(name_of(0), "read");
        assert_eq!(name_of(59), "execve");
        assert_eq!(name_of(0x3ff), "syscall_3ff");
        assert_eq!(id_of("openat"), Some(257));
        assert_eq!(id_of("no_such_call"), None);
        assert_eq!(id_of(""), None);
    }
}
