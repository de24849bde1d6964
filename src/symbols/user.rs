//! User-space stacks: addresses of a process → `function+0xoffset`, through
//! `/proc/PID/maps` and the ELF symbols of the mapped files.
//!
//! Parsed files are cached by identity (device, inode, modification time,
//! size of the file actually mapped), so a thousand processes of one
//! executable, or a thousand rows of one interval, parse it once. A
//! process's mappings are read at most once per batch ([`UserSymbolizer::
//! new_batch`], called at every interval): they change with `dlopen` and
//! `exec`, so they are not kept longer.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::elf::ElfSymbols;
use super::maps::{Mapping, find, parse_maps};

/// What a frame prints as when nothing better is known (upstream's word).
pub const UNKNOWN: &str = "[unknown]";

/// Parsed files kept at most; past that the cache starts over.
const MAX_FILES: usize = 512;

/// Who a user stack belongs to, as `struct gadget_user_stack` records it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackOwner {
    /// The inode of the executable.
    pub exe_inode: u64,
    /// The pid in the initial pid namespace.
    pub pid_level0: u32,
    /// The initial pid namespace's inode.
    pub pidns_level0: u32,
    /// The pid one pid namespace down (a container's).
    pub pid_level1: u32,
    /// That pid namespace's inode.
    pub pidns_level1: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    size: u64,
}

/// One process as seen in this batch.
struct Proc {
    /// `None`: gone, or not the process the stack was recorded in.
    maps: Option<Vec<Mapping>>,
    /// Symbols of each mapping, looked up on first use (`None` inside:
    /// unreadable or not ELF).
    files: Vec<Option<Option<Rc<ElfSymbols>>>>,
}

/// Turns user stack addresses into function names.
pub struct UserSymbolizer {
    proc_root: PathBuf,
    /// Inode of our own pid namespace, to pick the pid a stack's process
    /// has in the `/proc` we read.
    our_pidns: Option<u64>,
    files: HashMap<FileKey, Option<Rc<ElfSymbols>>>,
    procs: HashMap<u32, Proc>,
    /// ELF files parsed so far (for tests and debug logs).
    pub parsed: usize,
}

impl Default for UserSymbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl UserSymbolizer {
    /// A symbolizer reading `/proc`.
    pub fn new() -> Self {
        Self::with_proc_root("/proc")
    }

    /// A symbolizer reading another procfs mount (tests, or a host `/proc`
    /// mounted into a container).
    pub fn with_proc_root(root: impl Into<PathBuf>) -> Self {
        let proc_root = root.into();
        let our_pidns = std::fs::metadata(proc_root.join("self/ns/pid"))
            .ok()
            .map(|m| m.ino());
        Self {
            proc_root,
            our_pidns,
            files: HashMap::new(),
            procs: HashMap::new(),
            parsed: 0,
        }
    }

    /// Forget the processes' mappings (not the parsed files): call once per
    /// interval, before symbolizing its stacks.
    pub fn new_batch(&mut self) {
        self.procs.clear();
    }

    /// The pid of `owner` in our pid namespace, if it has one there.
    pub fn pid_of(&self, owner: &StackOwner) -> Option<u32> {
        let ours = self.our_pidns;
        let levels = [
            (owner.pid_level0, owner.pidns_level0),
            (owner.pid_level1, owner.pidns_level1),
        ];
        match ours {
            Some(ns) => levels
                .iter()
                .find(|(pid, pidns)| *pid != 0 && u64::from(*pidns) == ns)
                .map(|(pid, _)| *pid),
            // No namespace to compare with: the root namespace's pid.
            None => (owner.pid_level0 != 0).then_some(owner.pid_level0),
        }
    }

    /// Append the frames of `addrs` (innermost first) to `out`, joined by
    /// `"; "`. `exe_inode` (0: unknown) guards against a pid reused by
    /// another program since the stack was taken: its frames are
    /// `[unknown]`, as are those of a process that exited.
    pub fn symbolize(&mut self, pid: u32, exe_inode: u64, addrs: &[u64], out: &mut String) {
        if !self.procs.contains_key(&pid) {
            let p = self.read_proc(pid, exe_inode);
            self.procs.insert(pid, p);
        }
        for (i, &addr) in addrs.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            self.frame(pid, addr, out);
        }
    }

    fn frame(&mut self, pid: u32, addr: u64, out: &mut String) {
        let Some(proc) = self.procs.get(&pid) else {
            out.push_str(UNKNOWN);
            return;
        };
        let Some(maps) = &proc.maps else {
            out.push_str(UNKNOWN);
            return;
        };
        let Some(m) = find(maps, addr) else {
            out.push_str(UNKNOWN);
            return;
        };
        let idx = maps.iter().position(|x| x.start == m.start).unwrap_or(0);
        let m = m.clone();
        let syms = match proc.files.get(idx).cloned().flatten() {
            Some(s) => s,
            None => {
                let s = self.file_symbols(pid, &m);
                if let Some(slot) = self.procs.get_mut(&pid).and_then(|p| p.files.get_mut(idx)) {
                    *slot = Some(s.clone());
                }
                s
            }
        };
        let off = m.file_offset(addr);
        match syms.as_deref().and_then(|s| s.resolve_offset(off)) {
            Some(f) => {
                let _ = write!(out, "{f}");
            }
            None => {
                let base = m.path.rsplit('/').next().unwrap_or(&m.path);
                let _ = write!(out, "[{base}+{off:#x}]");
            }
        }
    }

    fn read_proc(&self, pid: u32, exe_inode: u64) -> Proc {
        let dir = self.proc_root.join(pid.to_string());
        let gone = Proc {
            maps: None,
            files: Vec::new(),
        };
        if exe_inode != 0 {
            match std::fs::metadata(dir.join("exe")) {
                Ok(m) if m.ino() == exe_inode => {}
                other => {
                    log::debug!("pid {pid}: executable is not inode {exe_inode} ({other:?})");
                    return gone;
                }
            }
        }
        let Ok(text) = std::fs::read_to_string(dir.join("maps")) else {
            return gone;
        };
        let maps = parse_maps(&text);
        Proc {
            files: vec![None; maps.len()],
            maps: Some(maps),
        }
    }

    /// The symbols of the file behind mapping `m` of `pid`: through
    /// `map_files` (works for deleted files and other mount namespaces),
    /// else through the process's root.
    fn file_symbols(&mut self, pid: u32, m: &Mapping) -> Option<Rc<ElfSymbols>> {
        let dir = self.proc_root.join(pid.to_string());
        let candidates = [
            dir.join(format!("map_files/{:x}-{:x}", m.start, m.end)),
            dir.join("root").join(m.path.trim_start_matches('/')),
        ];
        for path in &candidates {
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            if meta.ino() != m.inode {
                continue;
            }
            let key = FileKey {
                dev: meta.dev(),
                ino: meta.ino(),
                mtime: meta.mtime(),
                mtime_nsec: meta.mtime_nsec(),
                size: meta.size(),
            };
            if let Some(s) = self.files.get(&key) {
                return s.clone();
            }
            let syms = load_elf(path);
            self.parsed += 1;
            if self.files.len() >= MAX_FILES {
                self.files.clear();
            }
            self.files.insert(key, syms.clone());
            return syms;
        }
        None
    }
}

fn load_elf(path: &Path) -> Option<Rc<ElfSymbols>> {
    let data = std::fs::read(path).ok()?;
    match ElfSymbols::parse(&data) {
        Ok(s) => Some(Rc::new(s)),
        Err(e) => {
            log::debug!("{}: {e}", path.display());
            None
        }
    }
}
