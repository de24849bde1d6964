//! The kernel side of process enrichment: a small eBPF program of our own
//! (`tracker.bpf.c`, compiled by `build.rs` and embedded in the binary)
//! that reports every exec and process exit through a ring buffer (and a
//! fork only when its own table of forked children is full: see
//! `tracker.bpf.c`).
//!
//! Owns loading that program (through `bpf::loader`, like any gadget) and
//! decoding its records ([`Record::parse`], pure). Does not own the table
//! the records maintain (`super::Cache`).
//!
//! Why: reading `/proc/PID/cmdline` and `/proc/PID/exe` costs three system
//! calls per new process, several microseconds, and fails for processes
//! that have already exited, which under an exec storm is most of them. An
//! exec record carries what `/proc` would have said, read in the kernel at
//! the moment of the exec, for a few hundred nanoseconds of the exec's own
//! time.

use crate::bpf::contract::Contract;
use crate::bpf::loader::{LoadError, LoadSpec, LoadedGadget, LostCounter, RingBuffer};
use crate::bpf::object::{ObjectError, ObjectInfo};
use crate::bpf::programs::{PlanError, plan};
use crate::metadata::GadgetMetadata;

/// The compiled tracker, built from `tracker.bpf.c` by `build.rs`.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tracker.bpf.o"));

/// The ring buffer of `tracker.bpf.c`.
const RING: &str = "ig_proc_events";

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("the embedded process tracker object is unreadable")]
    Object(#[from] ObjectError),
    #[error("planning the process tracker's programs")]
    Plan(#[from] PlanError),
    #[error("loading the process tracker")]
    Load(#[from] LoadError),
}

/// What the kernel reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// Process `pid` (a child of `ppid`) now runs a new program.
    Exec {
        pid: u32,
        ppid: u32,
        /// NUL-separated arguments, as in `/proc/PID/cmdline`.
        args: &'a [u8],
        /// The executable's path components, from the file up to the root,
        /// each followed by a NUL.
        path: &'a [u8],
    },
    /// Process `pid` was forked from `ppid` and runs its program. Sent
    /// only when the tracker's table of pending children is full: a fork
    /// is otherwise told by the child's exec or exit record.
    Fork { pid: u32, ppid: u32 },
    /// Process `pid` ended. `forked_from` is its parent at its fork if it
    /// was forked while the tracker ran and never exec'd (it ran its
    /// parent's program to the end), else `None`.
    Exit { pid: u32, forked_from: Option<u32> },
}

/// Size of the header of `struct rec` in `tracker.bpf.c`.
const HEADER: usize = 16;

impl<'a> Record<'a> {
    /// Decode one ring-buffer sample; `None` if it is not a well-formed
    /// record (never from our program, but the bytes are checked anyway).
    pub fn parse(b: &'a [u8]) -> Option<Self> {
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
        };
        let u16_at = |at: usize| -> Option<usize> {
            Some(usize::from(u16::from_ne_bytes(
                b.get(at..at + 2)?.try_into().ok()?,
            )))
        };
        let kind = u32_at(0)?;
        let pid = u32_at(4)?;
        let ppid = u32_at(8)?;
        match kind {
            1 => {
                let args_len = u16_at(12)?;
                let path_len = u16_at(14)?;
                let args = b.get(HEADER..HEADER + args_len)?;
                let path = b.get(HEADER + args_len..HEADER + args_len + path_len)?;
                Some(Record::Exec {
                    pid,
                    ppid,
                    args,
                    path,
                })
            }
            2 => Some(Record::Fork { pid, ppid }),
            3 => Some(Record::Exit {
                pid,
                forked_from: (ppid != 0).then_some(ppid),
            }),
            _ => None,
        }
    }
}

/// Append the path whose components `parts` lists leaf first (`ls\0bin\0usr\0`)
/// to `out` as `/usr/bin/ls`. Invalid UTF-8 becomes U+FFFD, as the rest of
/// the output does.
pub fn push_path(out: &mut String, parts: &[u8]) {
    let parts = parts.strip_suffix(&[0]).unwrap_or(parts);
    if parts.is_empty() {
        return;
    }
    for part in parts.rsplit(|&b| b == 0) {
        out.push('/');
        push_lossy(out, part, None);
    }
}

/// Append `bytes` as UTF-8 (U+FFFD for invalid sequences), turning NULs
/// into `nul` if given. Validates whole runs at a time: command lines are
/// turned into text for every new process.
pub fn push_lossy(out: &mut String, bytes: &[u8], nul: Option<char>) {
    fn utf8(out: &mut String, b: &[u8]) {
        for chunk in b.utf8_chunks() {
            out.push_str(chunk.valid());
            if !chunk.invalid().is_empty() {
                out.push('\u{fffd}');
            }
        }
    }
    match nul {
        None => utf8(out, bytes),
        Some(c) => {
            for (i, part) in bytes.split(|&b| b == 0).enumerate() {
                if i > 0 {
                    out.push(c);
                }
                utf8(out, part);
            }
        }
    }
}

/// The loaded tracker. Dropping it detaches its programs.
pub struct Tracker {
    _loaded: LoadedGadget,
    ring: RingBuffer,
}

impl Tracker {
    /// Load and attach the tracker. The counter says how many records the
    /// ring buffer had no room for.
    pub fn start() -> Result<(Self, Option<LostCounter>), TrackerError> {
        let info = ObjectInfo::parse(OBJECT)?;
        let programs = plan(
            &info.programs,
            &Contract::default(),
            &GadgetMetadata::default(),
        )?;
        let mut loaded = LoadedGadget::load(&LoadSpec {
            object: OBJECT,
            info: &info,
            plan: &programs,
            globals: &[],
            max_entries: &[],
            prefetch: None,
            targets: &crate::bpf::targets::TargetSet::host_only(),
            replace_maps: &[],
            socket_value_btf: None,
            iface: None,
        })?;
        let ring = loaded.ring_buffer(RING)?;
        let lost = loaded.lost_counter(RING)?;
        Ok((
            Self {
                _loaded: loaded,
                ring,
            },
            lost,
        ))
    }

    /// Hand every pending record to `f`. Cheap when nothing is pending (two
    /// loads from the shared ring pages), so it can run before every event.
    pub fn drain(&mut self, mut f: impl FnMut(Record<'_>)) {
        self.ring.drain(|sample| {
            if let Some(r) = Record::parse(sample) {
                f(r);
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: u32, pid: u32, ppid: u32, args: &[u8], path: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&pid.to_ne_bytes());
        v.extend_from_slice(&ppid.to_ne_bytes());
        v.extend_from_slice(&(args.len() as u16).to_ne_bytes());
        v.extend_from_slice(&(path.len() as u16).to_ne_bytes());
        v.extend_from_slice(args);
        v.extend_from_slice(path);
        v
    }

    #[test]
    fn records_decode_and_bad_ones_are_refused() {
        let b = rec(1, 10, 2, b"ls\0-l\0", b"ls\0bin\0usr\0");
        assert_eq!(
            Record::parse(&b),
            Some(Record::Exec {
                pid: 10,
                ppid: 2,
                args: b"ls\0-l\0",
                path: b"ls\0bin\0usr\0"
            })
        );
        assert_eq!(
            Record::parse(&rec(2, 11, 10, b"", b"")),
            Some(Record::Fork { pid: 11, ppid: 10 })
        );
        assert_eq!(
            Record::parse(&rec(3, 11, 0, b"", b"")),
            Some(Record::Exit {
                pid: 11,
                forked_from: None
            })
        );
        assert_eq!(
            Record::parse(&rec(3, 12, 10, b"", b"")),
            Some(Record::Exit {
                pid: 12,
                forked_from: Some(10)
            })
        );
        // Lengths past the end, an unknown kind, a short header.
        assert_eq!(Record::parse(&b[..b.len() - 1]), None);
        assert_eq!(Record::parse(&rec(9, 1, 1, b"", b"")), None);
        assert_eq!(Record::parse(&b[..10]), None);
    }

    #[test]
    fn paths_are_rebuilt_root_first() {
        let mut s = String::new();
        push_path(&mut s, b"ls\0bin\0usr\0");
        assert_eq!(s, "/usr/bin/ls");
        s.clear();
        push_path(&mut s, b"");
        assert_eq!(s, "");
        s.clear();
        push_path(&mut s, b"a\xffb\0");
        assert_eq!(s, "/a\u{fffd}b");
        s.clear();
        push_lossy(&mut s, b"cat\0/etc/hostname", Some(' '));
        assert_eq!(s, "cat /etc/hostname");
    }
}
