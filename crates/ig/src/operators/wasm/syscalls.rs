//! `getSyscallName` and `getSyscallID`, from the x86_64 syscall table;
//! `getSyscallDeclaration`, from the kernel's syscall tracepoints.
//!
//! A declaration is what `events/syscalls/sys_enter_<name>/format` of
//! tracefs says about the arguments: their names and whether each is a
//! pointer. It reaches the guest as upstream's 252-byte struct (name as
//! 32 bytes, a u8 count, 3 bytes of padding, then 6 × {32-byte name, u32
//! flags}, flag 1 = pointer), little-endian as WASM is.

use wasmtime::{Caller, Linker};

use super::state::{HostState, read_str, write_bin, write_dst};

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
        "getSyscallDeclaration",
        |mut c: Caller<'_, HostState>, name: u64, dst: u64| -> u32 {
            let Some(name) = read_str(&mut c, name, "getSyscallDeclaration") else {
                return 1;
            };
            let Some(params) = declaration(&name) else {
                c.data().warn(format_args!(
                    "getSyscallDeclaration: no declaration of syscall {name:?} in tracefs (events/syscalls/sys_enter_*)"
                ));
                return 1;
            };
            if write_bin(&mut c, dst, &encode(&name, &params)) {
                0
            } else {
                c.data().warn(format_args!(
                    "getSyscallDeclaration {name}: the guest's buffer ({} bytes) cannot take the {DECLARATION_LEN}-byte declaration",
                    dst >> 32
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

/// One argument of a syscall.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Param {
    pub name: String,
    pub pointer: bool,
}

/// Size of the declaration struct guests pass.
const DECLARATION_LEN: usize = 32 + 4 + 6 * (32 + 4);

/// Where tracefs is mounted, newest place first (upstream looks under
/// debugfs only).
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Tracepoint names that differ from the syscall's (upstream's list): a
/// request for `fstat` reads `sys_enter_newfstat`.
const RENAMED: [(&str, &str); 7] = [
    ("newfstat", "fstat"),
    ("newlstat", "lstat"),
    ("newstat", "stat"),
    ("newuname", "uname"),
    ("sendfile64", "sendfile"),
    ("sysctl", "_sysctl"),
    ("umount", "umount2"),
];

/// The tracepoint events whose syscall is `name`.
fn events_of(name: &str) -> Vec<&str> {
    let mut out: Vec<&str> = RENAMED
        .iter()
        .filter(|(_, s)| *s == name)
        .map(|(e, _)| *e)
        .collect();
    if !RENAMED.iter().any(|(e, _)| *e == name) {
        out.push(name);
    }
    out
}

/// The arguments of syscall `name`, from tracefs.
fn declaration(name: &str) -> Option<Vec<Param>> {
    // A name that is not a plain identifier never reaches the file system.
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    for event in events_of(name) {
        for root in TRACEFS {
            let path = format!("{root}/events/syscalls/sys_enter_{event}/format");
            if let Ok(text) = std::fs::read_to_string(path) {
                return Some(parse_format(&text));
            }
        }
    }
    None
}

/// The arguments in a tracepoint `format` file: the fields after the
/// common ones (which end at the first empty line), without
/// `__syscall_nr`.
pub(super) fn parse_format(text: &str) -> Vec<Param> {
    let mut out = Vec::new();
    for line in text.lines().skip_while(|l| !l.trim().is_empty()) {
        let Some(field) = line.trim_start().strip_prefix("field:") else {
            continue;
        };
        let Some((decl, _)) = field.split_once(';') else {
            continue;
        };
        let Some((ty, name)) = decl.rsplit_once(' ') else {
            continue;
        };
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !plain || name == "__syscall_nr" {
            continue;
        }
        out.push(Param {
            name: name.to_owned(),
            pointer: ty.contains('*'),
        });
    }
    out
}

/// Upstream's declaration struct, little-endian. Names longer than 32
/// bytes are cut (no syscall or argument name is); at most 6 arguments.
fn encode(name: &str, params: &[Param]) -> Vec<u8> {
    let mut out = vec![0u8; DECLARATION_LEN];
    let put = |out: &mut [u8], s: &str| {
        let n = s.len().min(32);
        out[..n].copy_from_slice(&s.as_bytes()[..n]);
    };
    put(&mut out[..32], name);
    let n = params.len().min(6);
    out[32] = n as u8;
    for (i, p) in params[..n].iter().enumerate() {
        let at = 36 + i * 36;
        put(&mut out[at..at + 32], &p.name);
        out[at + 32..at + 36].copy_from_slice(&u32::from(p.pointer).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAT: &str = "name: sys_enter_openat
ID: 782
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;

print fmt: \"dfd: 0x%08lx, filename: 0x%08lx\", ((unsigned long)(REC->dfd))
";

    #[test]
    fn formats_give_argument_names_and_pointers() {
        let p = parse_format(OPENAT);
        let got: Vec<(&str, bool)> = p.iter().map(|p| (p.name.as_str(), p.pointer)).collect();
        assert_eq!(
            got,
            [
                ("dfd", false),
                ("filename", true),
                ("flags", false),
                ("mode", false)
            ]
        );
        assert_eq!(parse_format(""), []);
        assert_eq!(parse_format("garbage\n\nfield:\n\tfield:x;\n"), []);
    }

    #[test]
    fn the_struct_is_upstreams_layout() {
        let b = encode("openat", &parse_format(OPENAT));
        assert_eq!(b.len(), 252);
        assert_eq!(&b[..7], b"openat\0");
        assert_eq!(b[32], 4);
        assert_eq!(&b[36..40], b"dfd\0");
        assert_eq!(&b[36 + 32..36 + 36], &[0, 0, 0, 0]);
        assert_eq!(&b[72..80], b"filename");
        assert_eq!(&b[72 + 32..72 + 36], &[1, 0, 0, 0]);
        // Seven arguments are cut to six.
        let many: Vec<Param> = (0..7)
            .map(|i| Param {
                name: format!("a{i}"),
                pointer: false,
            })
            .collect();
        assert_eq!(encode("x", &many)[32], 6);
    }

    #[test]
    fn renamed_tracepoints_are_found_under_the_syscall_name() {
        assert_eq!(events_of("fstat"), ["newfstat", "fstat"]);
        assert_eq!(events_of("umount2"), ["umount", "umount2"]);
        assert_eq!(events_of("umount"), Vec::<&str>::new());
        assert_eq!(events_of("openat"), ["openat"]);
        assert_eq!(declaration("../../etc/passwd"), None);
        assert_eq!(declaration(""), None);
    }

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
