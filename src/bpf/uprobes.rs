//! Where uprobes attach: upstream's rules (its `uprobetracer`), for the
//! host and for every container the run follows.
//!
//! A section names its target as an absolute path
//! (`uprobe//usr/lib/x86_64-linux-gnu/libssl.so.3:SSL_read`) or as a
//! library name (`uprobe/libc:malloc`). Either is looked for in every root
//! the run covers: the host's (`/`) and each selected container's
//! (`/proc/PID/root`). A library name goes through that root's
//! `/etc/ld.so.cache`, as the dynamic loader would: every entry whose name
//! starts with `<library>.so` (so `libc` finds `libc.so.6`, every
//! architecture listed). Paths are opened inside the root with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so a container's
//! symbolic links cannot lead out of it. The symbol is looked up in the
//! file's `.symtab`, then `.dynsym` (functions only), and its address made
//! a file offset through the `PT_LOAD` segments; nothing else is read (no
//! `.gnu_debuglink`: a symbol the file does not have is not attached).
//!
//! One link per distinct file: two containers of the same image share
//! their libraries, and the kernel attaches a uprobe to the inode, so a
//! second link would report every call twice. Files are told apart by
//! device and inode; on overlayfs, whose device is the mount's own, by
//! inode number, size and times (overlayfs reports the lower layer's
//! inode number, so the same lower file seen through two containers'
//! mounts has one key; see [`FileKey`]).
//!
//! Pure parsing ([`ld_so_cache_lookup`], [`symbol_offsets`]) is apart from
//! the I/O ([`open_root`], [`resolve_in_root`], [`file_key`]); which link
//! serves which root is kept by [`UprobeSet`], generic over the link type
//! so that aya stays in `loader.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Read as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};

/// What a uprobe section names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// An absolute path, looked for in every root.
    Path(String),
    /// A library name (`libc`), looked for in every root's
    /// `/etc/ld.so.cache`.
    Library(String),
}

impl Target {
    /// Upstream's rule: an absolute path or a plain name, nothing between.
    pub fn parse(s: &str) -> Option<Self> {
        if s.starts_with('/') {
            Some(Self::Path(s.to_owned()))
        } else if !s.is_empty() && !s.contains('/') {
            Some(Self::Library(s.to_owned()))
        } else {
            None
        }
    }

    /// The target as messages name it.
    pub fn describe(&self) -> String {
        match self {
            Self::Path(p) => p.clone(),
            Self::Library(l) => format!("library {l}"),
        }
    }
}

// ---------------------------------------------------------------------------
// ld.so.cache (glibc's `elf/cache.c` formats).

const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
/// Old header: magic (11 bytes, padded to 12), entry count.
const OLD_HEADER: usize = 16;
const OLD_ENTRY: usize = 12;
/// New header: magic and version (20 bytes), count, string table length,
/// flags and padding, extension offset, three unused words.
const NEW_HEADER: usize = 48;
const NEW_ENTRY: usize = 24;
/// A real cache lists a library once per architecture; more is hostile.
const MAX_RESULTS: usize = 64;
/// Largest cache read (a real one is well under a megabyte).
pub const MAX_CACHE_BYTES: u64 = 16 << 20;

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        d.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The NUL-terminated string at `at`.
fn c_str(d: &[u8], at: usize) -> Option<&[u8]> {
    let tail = d.get(at..)?;
    Some(&tail[..tail.iter().position(|&b| b == 0)?])
}

/// Every path `cache` lists for `library` (entries whose name starts with
/// `<library>.so`), in the cache's order. `None` when `cache` is not an
/// `ld.so.cache` in either format.
pub fn ld_so_cache_lookup(cache: &[u8], library: &str) -> Option<Vec<String>> {
    let prefix = format!("{library}.so");
    let new = if cache.starts_with(NEW_MAGIC) {
        cache
    } else if cache.starts_with(OLD_MAGIC) {
        // The old format, possibly followed by the new one (8-aligned):
        // glibc before 2.32 wrote both; the new part is preferred.
        let n = u32_at(cache, OLD_HEADER - 4)? as usize;
        let end = n.checked_mul(OLD_ENTRY)?.checked_add(OLD_HEADER)?;
        let aligned = end.next_multiple_of(8);
        match cache.get(aligned..) {
            Some(rest) if rest.starts_with(NEW_MAGIC) => rest,
            _ => return Some(old_format(cache, n, &prefix)),
        }
    } else {
        return None;
    };
    let n = u32_at(new, NEW_MAGIC.len())? as usize;
    let mut out = Vec::new();
    for i in 0..n {
        let Some(at) = i
            .checked_mul(NEW_ENTRY)
            .and_then(|o| o.checked_add(NEW_HEADER))
        else {
            break;
        };
        // Offsets of the new format count from its own header.
        let (Some(key), Some(value)) = (u32_at(new, at + 4), u32_at(new, at + 8)) else {
            break;
        };
        if c_str(new, key as usize).is_some_and(|k| k.starts_with(prefix.as_bytes()))
            && let Some(v) = c_str(new, value as usize)
        {
            out.push(String::from_utf8_lossy(v).into_owned());
            if out.len() >= MAX_RESULTS {
                break;
            }
        }
    }
    Some(out)
}

/// The old format: strings count from the end of the entries.
fn old_format(cache: &[u8], n: usize, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let strings = OLD_HEADER + n.saturating_mul(OLD_ENTRY);
    for i in 0..n {
        let at = OLD_HEADER + i * OLD_ENTRY;
        let (Some(key), Some(value)) = (u32_at(cache, at + 4), u32_at(cache, at + 8)) else {
            break;
        };
        if c_str(cache, strings.saturating_add(key as usize))
            .is_some_and(|k| k.starts_with(prefix.as_bytes()))
            && let Some(v) = c_str(cache, strings.saturating_add(value as usize))
        {
            out.push(String::from_utf8_lossy(v).into_owned());
            if out.len() >= MAX_RESULTS {
                break;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Symbols.

/// The file offsets of the functions `names` that ELF file `data` defines
/// (`.symtab` first, then `.dynsym`); names it does not define are absent.
pub fn symbol_offsets(data: &[u8], names: &[&str]) -> Result<HashMap<String, u64>, String> {
    use object::{Object as _, ObjectSegment as _, ObjectSymbol as _, SymbolKind};
    let file = object::File::parse(data).map_err(|e| format!("not a readable ELF file: {e}"))?;
    let segments: Vec<(u64, u64, u64)> = file
        .segments()
        .map(|s| {
            let (offset, size) = s.file_range();
            (s.address(), size, offset)
        })
        .filter(|(_, size, _)| *size > 0)
        .collect();
    let to_offset = |addr: u64| {
        segments
            .iter()
            .find(|(vaddr, size, _)| addr >= *vaddr && addr - vaddr < *size)
            .map(|(vaddr, _, offset)| addr - vaddr + offset)
    };
    let mut out = HashMap::new();
    for table in [file.symbols(), file.dynamic_symbols()] {
        for s in table {
            if s.kind() != SymbolKind::Text || !s.is_definition() || s.address() == 0 {
                continue;
            }
            let Ok(name) = s.name() else { continue };
            if out.contains_key(name) || !names.contains(&name) {
                continue;
            }
            if let Some(off) = to_offset(s.address()) {
                out.insert(name.to_owned(), off);
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Files in a root.

/// A root the run covers: the host or a container.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RootKey {
    /// The host's root.
    Host,
    /// A container's root, by container id.
    Container(String),
}

impl RootKey {
    /// The root as messages name it (`name`: the container's name).
    pub fn describe(&self, name: &str) -> String {
        match self {
            Self::Host => "the host".to_owned(),
            Self::Container(_) => format!("container {name}"),
        }
    }
}

/// The directory of a root, opened for `openat2`: the host's `/` (ig runs
/// in the host's mount namespace), or a container's `/proc/PID/root`.
pub fn open_root(pid: Option<u32>) -> std::io::Result<OwnedFd> {
    let path = match pid {
        None => PathBuf::from("/"),
        Some(p) => PathBuf::from(format!("/proc/{p}/root")),
    };
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: plain open(2) of a NUL-terminated path; the fd is owned at once.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `path` opened for reading inside `root`, which it cannot leave.
pub fn open_in_root(root: &OwnedFd, path: &str) -> std::io::Result<File> {
    let c = std::ffi::CString::new(path.trim_start_matches('/'))
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    /// `struct open_how` of openat2(2) (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2(2) with a valid dirfd, a NUL-terminated path and an
    // open_how of the size passed; the fd is owned at once.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            std::ptr::from_ref(&how),
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

/// The files `target` names in `root`: the path itself, or every file the
/// root's `ld.so.cache` lists for the library. Files that cannot be opened
/// are left out; the error says why none could (`Err` only when there is
/// nothing at all).
pub fn resolve_in_root(root: &OwnedFd, target: &Target) -> Result<Vec<(String, File)>, String> {
    let paths = match target {
        Target::Path(p) => vec![p.clone()],
        Target::Library(lib) => {
            let file = open_in_root(root, "/etc/ld.so.cache")
                .map_err(|e| format!("/etc/ld.so.cache: {e}"))?;
            let mut bytes = Vec::new();
            file.take(MAX_CACHE_BYTES)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("/etc/ld.so.cache: {e}"))?;
            let found = ld_so_cache_lookup(&bytes, lib)
                .ok_or("/etc/ld.so.cache is not in a format glibc writes")?;
            if found.is_empty() {
                return Err("not in /etc/ld.so.cache".into());
            }
            found
        }
    };
    let mut out = Vec::new();
    let mut last = String::new();
    for p in paths {
        match open_in_root(root, &p) {
            Ok(f) => out.push((p, f)),
            Err(e) => last = format!("{p}: {e}"),
        }
    }
    if out.is_empty() {
        return Err(last);
    }
    Ok(out)
}

/// `statfs(2)` magic of overlayfs.
const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;

/// What tells two opened files apart, as far as the kernel's uprobes are
/// concerned (they attach to the real inode under overlayfs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    /// The device, or 0 on overlayfs (its device is the mount's own, one
    /// per container).
    pub dev: u64,
    /// The inode.
    pub ino: u64,
    /// The size in bytes.
    pub size: u64,
    /// Content changes move it. (Not the change time: a new hard link
    /// or a chmod moves that, and the file the kernel probes is the same.)
    pub mtime_ns: i128,
}

/// The key of an opened file.
pub fn file_key(f: &File) -> std::io::Result<FileKey> {
    use std::os::unix::fs::MetadataExt as _;
    let m = f.metadata()?;
    // SAFETY: fstatfs(2) into a zeroed struct of the right type.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and a pointer to a live statfs.
    let overlay = unsafe { libc::fstatfs(f.as_raw_fd(), &raw mut st) } == 0
        // (`f_type` is signed in glibc, unsigned in musl.)
        && u64::try_from(st.f_type).ok() == Some(OVERLAYFS_SUPER_MAGIC);
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    Ok(FileKey {
        dev: if overlay { 0 } else { m.dev() },
        ino: m.ino(),
        size: m.size(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
    })
}

// ---------------------------------------------------------------------------
// Which link serves which root.

/// One uprobe program in use.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The uprobe program.
    pub program: String,
    /// The file it probes.
    pub target: Target,
    /// The symbol in it.
    pub symbol: String,
}

/// What attaches a program to a file (the loader, through aya).
pub trait Attacher {
    /// What a successful attach returns; dropping or detaching it detaches.
    type Link;
    /// Attach `program` at `offset` of the file that `path` opens.
    fn attach(&mut self, program: &str, path: &Path, offset: u64) -> Result<Self::Link, String>;
    /// Detach `program`'s `link`.
    fn detach(&mut self, program: &str, link: Self::Link);
}

struct Attached<L> {
    link: L,
    /// Roots whose files this link serves.
    users: BTreeSet<RootKey>,
}

/// A file seen in some root: its offsets by symbol, read once.
struct FileInfo {
    /// Where it was first found, for messages.
    path: String,
    /// `None`: the symbol is not in the file.
    offsets: HashMap<String, Option<u64>>,
    /// Why its symbols could not be read.
    unreadable: Option<String>,
}

/// Why a probe is attached nowhere.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Missing {
    /// The target is in no root (`why`: in the last one looked at).
    NotFound {
        /// The target.
        target: String,
        /// Why it was not found.
        why: String,
    },
    /// Found, but without the symbol.
    NoSymbol {
        /// The files that lack it.
        files: Vec<String>,
    },
    /// The kernel refused (the last error).
    Refused {
        /// The kernel's error.
        error: String,
    },
}

impl Missing {
    /// One line for the probes `(program, symbol)` that failed so.
    pub fn describe(&self, probes: &[(&str, &str)]) -> String {
        let programs = || {
            probes
                .iter()
                .map(|(p, _)| *p)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Self::NotFound { target, why } => {
                format!("{target} not found ({why}): programs {}", programs())
            }
            Self::NoSymbol { files } => format!(
                "symbols not in {} (neither .symtab nor .dynsym): {}",
                files.join(", "),
                probes
                    .iter()
                    .map(|(p, s)| format!("{s} (program {p})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Refused { error } => {
                format!("the kernel refused ({error}): programs {}", programs())
            }
        }
    }
}

/// A file a target names in a root: its path there, the open file, its key.
type Found = (String, File, FileKey);

/// The uprobes of a gadget and their links, by probe and file.
pub struct UprobeSet<L> {
    probes: Vec<Probe>,
    files: BTreeMap<FileKey, FileInfo>,
    links: BTreeMap<(usize, FileKey), Attached<L>>,
    /// Why each probe failed in the last root it was tried in.
    missing: BTreeMap<usize, Missing>,
}

impl<L> UprobeSet<L> {
    /// A set of `probes`, attached nowhere yet.
    pub fn new(probes: Vec<Probe>) -> Self {
        Self {
            probes,
            files: BTreeMap::new(),
            links: BTreeMap::new(),
            missing: BTreeMap::new(),
        }
    }

    /// Whether there is no probe.
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// The roots served now.
    pub fn roots(&self) -> BTreeSet<RootKey> {
        self.links
            .values()
            .flat_map(|a| a.users.iter().cloned())
            .collect()
    }

    /// Number of links (one per probe and distinct file).
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// Attach every probe in root `key` (directory `dir`). Failures are
    /// remembered for [`Self::unattached`]; a probe whose file some other
    /// root already has gains a user, not a link.
    pub fn add_root<A: Attacher<Link = L>>(
        &mut self,
        a: &mut A,
        key: &RootKey,
        name: &str,
        dir: &OwnedFd,
    ) {
        // Resolve each distinct target once for this root.
        let mut resolved: HashMap<Target, Result<Vec<Found>, String>> = HashMap::new();
        for i in 0..self.probes.len() {
            let target = self.probes[i].target.clone();
            let files = resolved.entry(target.clone()).or_insert_with(|| {
                resolve_in_root(dir, &target).map(|found| {
                    found
                        .into_iter()
                        .filter_map(|(p, f)| {
                            let k = file_key(&f).ok()?;
                            Some((p, f, k))
                        })
                        .collect()
                })
            });
            let files = match files {
                Ok(f) => f,
                Err(why) => {
                    self.missing.entry(i).or_insert_with(|| Missing::NotFound {
                        target: target.describe(),
                        why: format!("{why}, in {}", key.describe(name)),
                    });
                    continue;
                }
            };
            let mut no_symbol = Vec::new();
            for (path, file, k) in files.iter_mut() {
                if let Some(at) = self.links.get_mut(&(i, *k)) {
                    at.users.insert(key.clone());
                    continue;
                }
                let symbol = self.probes[i].symbol.clone();
                let offset = self.offset(*k, path, file, &symbol);
                let Some(offset) = offset else {
                    no_symbol.push(path.to_string());
                    continue;
                };
                let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
                match a.attach(&self.probes[i].program, &fd_path, offset) {
                    Ok(link) => {
                        log::debug!(
                            "attached {} to {path} ({}, offset {offset:#x})",
                            self.probes[i].program,
                            key.describe(name)
                        );
                        self.links.insert(
                            (i, *k),
                            Attached {
                                link,
                                users: BTreeSet::from([key.clone()]),
                            },
                        );
                        self.missing.remove(&i);
                    }
                    Err(error) => {
                        self.missing.insert(i, Missing::Refused { error });
                    }
                }
            }
            if !no_symbol.is_empty() && !self.links.keys().any(|(p, _)| *p == i) {
                self.missing
                    .insert(i, Missing::NoSymbol { files: no_symbol });
            }
        }
    }

    /// The offset of `symbol` in file `k`, reading its symbols once.
    fn offset(&mut self, k: FileKey, path: &str, file: &mut File, symbol: &str) -> Option<u64> {
        if !self.files.contains_key(&k) {
            // Every symbol any probe wants: the file is read once.
            let wanted: Vec<&str> = self.probes.iter().map(|p| p.symbol.as_str()).collect();
            let mut bytes = Vec::new();
            let info = match file.read_to_end(&mut bytes) {
                Err(e) => FileInfo {
                    path: path.to_owned(),
                    offsets: HashMap::new(),
                    unreadable: Some(e.to_string()),
                },
                Ok(_) => match symbol_offsets(&bytes, &wanted) {
                    Ok(found) => FileInfo {
                        path: path.to_owned(),
                        offsets: wanted
                            .iter()
                            .map(|s| ((*s).to_owned(), found.get(*s).copied()))
                            .collect(),
                        unreadable: None,
                    },
                    Err(e) => FileInfo {
                        path: path.to_owned(),
                        offsets: HashMap::new(),
                        unreadable: Some(e),
                    },
                },
            };
            if let Some(why) = &info.unreadable {
                log::debug!("uprobe target {}: {why}", info.path);
            }
            self.files.insert(k, info);
        }
        self.files.get(&k)?.offsets.get(symbol).copied().flatten()
    }

    /// Stop serving root `key`: links no other root uses are detached.
    pub fn remove_root<A: Attacher<Link = L>>(&mut self, a: &mut A, key: &RootKey) {
        let gone: Vec<(usize, FileKey)> = self
            .links
            .iter_mut()
            .filter_map(|(k, at)| {
                at.users.remove(key);
                at.users.is_empty().then_some(*k)
            })
            .collect();
        for k in gone {
            if let Some(at) = self.links.remove(&k) {
                a.detach(&self.probes[k.0].program, at.link);
            }
        }
    }

    /// Probes attached nowhere, with why (the last root's reason).
    pub fn unattached(&self) -> Vec<(&Probe, Missing)> {
        self.probes
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.links.keys().any(|(p, _)| p == i))
            .map(|(i, p)| {
                let why = self.missing.get(&i).cloned().unwrap_or(Missing::NotFound {
                    target: p.target.describe(),
                    why: "no root to look in".into(),
                });
                (p, why)
            })
            .collect()
    }

    /// Whether at least one probe has a link.
    pub fn any_attached(&self) -> bool {
        !self.links.is_empty()
    }

    /// Every link, for dropping them all.
    pub fn take_links(&mut self) -> Vec<(String, L)> {
        std::mem::take(&mut self.links)
            .into_iter()
            .map(|((p, _), at)| (self.probes[p].program.clone(), at.link))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new-format cache: `(flags, key, value)` entries.
    fn new_cache(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut strings = Vec::new();
        let strings_at = NEW_HEADER + entries.len() * NEW_ENTRY;
        let mut recs = Vec::new();
        for (k, v) in entries {
            let ko = strings_at + strings.len();
            strings.extend_from_slice(k.as_bytes());
            strings.push(0);
            let vo = strings_at + strings.len();
            strings.extend_from_slice(v.as_bytes());
            strings.push(0);
            let mut e = vec![0u8; NEW_ENTRY];
            e[0..4].copy_from_slice(&0x303i32.to_ne_bytes());
            e[4..8].copy_from_slice(&(ko as u32).to_ne_bytes());
            e[8..12].copy_from_slice(&(vo as u32).to_ne_bytes());
            recs.extend(e);
        }
        let mut out = NEW_MAGIC.to_vec();
        out.extend((entries.len() as u32).to_ne_bytes());
        out.extend((strings.len() as u32).to_ne_bytes());
        out.resize(NEW_HEADER, 0);
        out.extend(recs);
        out.extend(strings);
        out
    }

    fn old_cache(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut out = OLD_MAGIC.to_vec();
        out.push(0);
        out.extend((entries.len() as u32).to_ne_bytes());
        let mut strings = Vec::new();
        for (k, v) in entries {
            let ko = strings.len() as u32;
            strings.extend_from_slice(k.as_bytes());
            strings.push(0);
            let vo = strings.len() as u32;
            strings.extend_from_slice(v.as_bytes());
            strings.push(0);
            out.extend(1i32.to_ne_bytes());
            out.extend(ko.to_ne_bytes());
            out.extend(vo.to_ne_bytes());
        }
        out.extend(strings);
        out
    }

    const ENTRIES: &[(&str, &str)] = &[
        ("libcrypto.so.3", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"),
        ("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"),
        ("libc.so.6", "/lib32/libc.so.6"),
        ("libcap.so.2", "/lib/x86_64-linux-gnu/libcap.so.2"),
    ];

    #[test]
    fn ld_so_cache_new_format_lists_every_match_by_prefix() {
        let c = new_cache(ENTRIES);
        assert_eq!(
            ld_so_cache_lookup(&c, "libc").unwrap(),
            ["/lib/x86_64-linux-gnu/libc.so.6", "/lib32/libc.so.6"]
        );
        assert_eq!(
            ld_so_cache_lookup(&c, "libcrypto").unwrap(),
            ["/usr/lib/x86_64-linux-gnu/libcrypto.so.3"]
        );
        assert_eq!(
            ld_so_cache_lookup(&c, "libnss").unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn ld_so_cache_old_and_combined_formats() {
        let old = old_cache(ENTRIES);
        assert_eq!(
            ld_so_cache_lookup(&old, "libcap").unwrap(),
            ["/lib/x86_64-linux-gnu/libcap.so.2"]
        );
        // glibc < 2.32: the old format, then the new one 8-aligned, whose
        // answer wins.
        // (Its entries' strings live in the shared table after the new
        // part's entries; here they are left out.)
        let mut both = old_cache(&[("libc.so.6", "/old/libc.so.6")]);
        both.truncate(OLD_HEADER + OLD_ENTRY);
        both.resize(both.len().next_multiple_of(8), 0);
        both.extend(new_cache(&[("libc.so.6", "/new/libc.so.6")]));
        assert_eq!(
            ld_so_cache_lookup(&both, "libc").unwrap(),
            ["/new/libc.so.6"]
        );
    }

    #[test]
    fn ld_so_cache_hostile_input_is_refused_or_cut_short() {
        assert_eq!(ld_so_cache_lookup(b"not a cache", "libc"), None);
        let mut c = new_cache(ENTRIES);
        // A count far beyond the file: entries past the end are not read.
        c[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(ld_so_cache_lookup(&c, "libc").unwrap().len() <= 2);
        // Offsets past the end, and truncation anywhere: no panic.
        for cut in 0..c.len() {
            let _ = ld_so_cache_lookup(&c[..cut], "libc");
        }
        let mut o = old_cache(ENTRIES);
        o[12..16].copy_from_slice(&u32::MAX.to_ne_bytes());
        let _ = ld_so_cache_lookup(&o, "libc");
        // More matches than any real cache has.
        let many: Vec<(&str, &str)> = (0..100).map(|_| ("libc.so.6", "/x")).collect();
        assert_eq!(
            ld_so_cache_lookup(&new_cache(&many), "libc").unwrap().len(),
            MAX_RESULTS
        );
    }

    #[test]
    fn targets_are_absolute_paths_or_plain_names() {
        assert_eq!(Target::parse("libc"), Some(Target::Library("libc".into())));
        assert_eq!(
            Target::parse("/usr/bin/bash"),
            Some(Target::Path("/usr/bin/bash".into()))
        );
        assert_eq!(Target::parse("lib/libc.so"), None);
        assert_eq!(Target::parse(""), None);
    }

    #[test]
    fn symbols_of_our_own_executable_become_file_offsets() {
        // The test binary is an ELF file with `.symtab`: its `main` has a
        // file offset inside the file.
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let found = symbol_offsets(&exe, &["main", "ig_no_such_symbol"]).unwrap();
        let off = found["main"];
        assert!(off > 0 && (off as usize) < exe.len(), "{off:#x}");
        assert!(!found.contains_key("ig_no_such_symbol"));
        assert!(symbol_offsets(b"\x7fELF junk", &["main"]).is_err());
    }
}
