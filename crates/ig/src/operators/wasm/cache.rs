//! The on-disk cache of compiled modules.
//!
//! Compiling a module with cranelift costs far more than loading it, so
//! `ig run` keeps wasmtime's serialized form of every module it compiled,
//! keyed by the module's sha256 and the engine's compatibility hash (which
//! covers the wasmtime version and the engine settings). An entry is
//! `sha256(payload) || payload`: a truncated or flipped file fails the
//! check and is recompiled and rewritten.
//!
//! Trust: `Module::deserialize` runs whatever native code the entry holds,
//! and `ig run` is root, so a file someone else could have written must
//! never reach it. The sha256 only catches accidents (anyone can compute
//! it). The rule: the directory and the entry must be owned by the
//! effective uid and writable by nobody else (no group/other write bit);
//! then only we (and root) can have put the entry there. The directory is
//! opened once with `O_NOFOLLOW` and every entry is reached relative to
//! that descriptor (`openat` with `O_NOFOLLOW`), so neither a symlinked
//! directory nor a symlinked entry is followed and the directory cannot be
//! swapped between the check and the use. A directory we create gets mode
//! 0700 whatever the umask; an existing one that fails the rule is not used
//! at all (one warning; the module is compiled and nothing is written). An
//! entry that fails it is compiled again and replaced.
//!
//! Entries are written to `.tmp-<random>` (created exclusively, see
//! `crate::files`) with mode 0600, fsynced and renamed, so a reader never
//! sees half a file; temp files older than ten minutes are leftovers of a
//! killed writer and are removed on the next write.
//!
//! Does not own: where the directory is (`super::cache_dir`).

use std::ffi::CString;
use std::fs::File;
use std::hash::{Hash as _, Hasher as _};
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};
use wasmtime::{Engine, Module};

use crate::files::TempFile;

/// Prefix of entries being written.
const TEMP_PREFIX: &str = ".tmp-";

/// A temp file this old belongs to a writer that died.
const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

/// Why a cache directory or entry is not used.
#[derive(Debug, thiserror::Error)]
pub(super) enum CacheError {
    #[error("{path} is owned by uid {owner}, not by us (uid {uid})")]
    Owner { path: PathBuf, owner: u32, uid: u32 },
    #[error("{path} is writable by group or others (mode {mode:04o})")]
    Writable { path: PathBuf, mode: u32 },
    #[error("{path} is a symbolic link, which the cache does not follow")]
    Symlink { path: PathBuf },
    #[error("{path} is not a {expected}")]
    Kind {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The file name of the entry for `wasm`.
pub(super) fn entry_name(engine: &Engine, wasm: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let digest = hex(&Sha256::digest(wasm));
    format!("{digest}-{:016x}.cwasm", h.finish())
}

/// How the module was obtained, for the debug log and the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    Cached,
    Compiled,
}

/// Load `wasm` from the cache in `dir`, or compile it and store it there.
/// A cache that cannot be used only costs time: it is logged, never an
/// error.
pub(super) fn load_or_compile(
    engine: &Engine,
    wasm: &[u8],
    dir: Option<&Path>,
) -> wasmtime::Result<(Module, Origin)> {
    let cache = dir.and_then(|d| match CacheDir::open(d) {
        Ok(c) => Some(c),
        Err(e) => {
            log::warn!("wasm cache: not using it: {e}; compiling the module");
            None
        }
    });
    let Some(cache) = cache else {
        return Ok((Module::new(engine, wasm)?, Origin::Compiled));
    };
    let name = entry_name(engine, wasm);
    if let Some(m) = cache.read(engine, &name) {
        return Ok((m, Origin::Cached));
    }
    let module = Module::new(engine, wasm)?;
    match module.serialize() {
        Ok(bytes) => {
            if let Err(e) = cache.write(&name, &bytes) {
                log::debug!("wasm cache: cannot write {name}: {e}");
            }
        }
        Err(e) => log::debug!("wasm cache: cannot serialize the module: {e}"),
    }
    cache.remove_stale_temps();
    Ok((module, Origin::Compiled))
}

/// A cache directory that passed the ownership rule, held open.
struct CacheDir {
    path: PathBuf,
    fd: File,
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Is `meta` ours and writable by nobody else?
fn check_trust(path: &Path, meta: &std::fs::Metadata) -> Result<(), CacheError> {
    let uid = euid();
    if meta.uid() != uid {
        return Err(CacheError::Owner {
            path: path.to_owned(),
            owner: meta.uid(),
            uid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(CacheError::Writable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

fn cstring(name: &str) -> std::io::Result<CString> {
    CString::new(name).map_err(|_| std::io::ErrorKind::InvalidInput.into())
}

impl CacheDir {
    /// Open (creating it if missing) and check the directory.
    fn open(dir: &Path) -> Result<Self, CacheError> {
        let io = |source| CacheError::Io {
            path: dir.to_owned(),
            source,
        };
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io)?;
        }
        let created = match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io(e)),
        };
        let cpath = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io(std::io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: a valid NUL-terminated path; the result is checked.
        let raw = unsafe {
            libc::open(
                cpath.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP) => CacheError::Symlink {
                    path: dir.to_owned(),
                },
                Some(libc::ENOTDIR) => CacheError::Kind {
                    path: dir.to_owned(),
                    expected: "directory",
                },
                _ => io(e),
            });
        }
        // SAFETY: `raw` is a descriptor we just opened and own.
        let fd = unsafe { File::from_raw_fd(raw) };
        let meta = fd.metadata().map_err(io)?;
        if created && meta.uid() == euid() {
            // mkdir applied the umask; the mode must not depend on it.
            fd.set_permissions(std::fs::Permissions::from_mode(0o700))
                .map_err(io)?;
        } else {
            check_trust(dir, &meta)?;
        }
        Ok(Self {
            path: dir.to_owned(),
            fd,
        })
    }

    fn openat(&self, name: &str, flags: libc::c_int, mode: libc::mode_t) -> std::io::Result<File> {
        let c = cstring(name)?;
        // SAFETY: a valid directory descriptor and NUL-terminated name.
        let raw = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                libc::c_uint::from(mode),
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just opened and own.
        Ok(unsafe { File::from_raw_fd(raw) })
    }

    fn unlink(&self, name: &str) {
        if let Ok(c) = cstring(name) {
            // SAFETY: a valid directory descriptor and NUL-terminated name.
            unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) };
        }
    }

    /// The module in entry `name`, if the entry exists, passes the rule and
    /// is intact.
    fn read(&self, engine: &Engine, name: &str) -> Option<Module> {
        let path = self.path.join(name);
        let mut f = match self.openat(name, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                log::warn!(
                    "wasm cache: {}; compiling the module again",
                    CacheError::Symlink { path }
                );
                return None;
            }
            Err(e) => {
                log::debug!("wasm cache: cannot open {}: {e}", path.display());
                return None;
            }
        };
        let trusted = f.metadata().map_err(|source| CacheError::Io {
            path: path.clone(),
            source,
        });
        let trusted = trusted.and_then(|m| {
            if m.is_file() {
                check_trust(&path, &m)
            } else {
                Err(CacheError::Kind {
                    path: path.clone(),
                    expected: "regular file",
                })
            }
        });
        if let Err(e) = trusted {
            log::warn!("wasm cache: not loading {e}; compiling the module again");
            return None;
        }
        let mut bytes = Vec::new();
        if let Err(e) = f.read_to_end(&mut bytes) {
            log::debug!("wasm cache: cannot read {}: {e}", path.display());
            return None;
        }
        if bytes.len() < 32 || Sha256::digest(&bytes[32..]).as_slice() != &bytes[..32] {
            log::warn!(
                "wasm cache: {} is corrupt; compiling the module again",
                path.display()
            );
            return None;
        }
        // SAFETY: the entry was opened without following links in a
        // directory owned by us and writable by nobody else, and is itself
        // ours and writable by nobody else (checked on the open
        // descriptors): only we, or root, wrote it, with
        // `Module::serialize` of an engine with the same compatibility hash
        // (the name says so; the sha256 rules out truncation and bit rot).
        match unsafe { Module::deserialize(engine, &bytes[32..]) } {
            Ok(m) => Some(m),
            Err(e) => {
                log::warn!(
                    "wasm cache: {} cannot be loaded ({e}); compiling the module again",
                    path.display()
                );
                None
            }
        }
    }

    /// Write entry `name` atomically, mode 0600, through a temp file
    /// created exclusively under a random name in the checked directory
    /// ([`TempFile`]).
    fn write(&self, name: &str, payload: &[u8]) -> std::io::Result<()> {
        let mut f = TempFile::create_in(self.fd.try_clone()?, &self.path, TEMP_PREFIX, 0o600)?;
        // The umask may have taken bits; none may be added either.
        f.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(&Sha256::digest(payload))?;
        f.write_all(payload)?;
        f.persist_as(std::ffi::OsStr::new(name))
    }

    /// Remove temp files of writers that died (older than
    /// [`STALE_TEMP_AGE`]; a younger one may be another run's write in
    /// progress).
    fn remove_stale_temps(&self) {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return;
        };
        let now = SystemTime::now();
        for e in entries.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !name.starts_with(TEMP_PREFIX) {
                continue;
            }
            // Listed by path, checked and removed relative to the trusted
            // descriptor: a name from elsewhere can only miss.
            let Ok(c) = cstring(&name) else { continue };
            let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: valid descriptor, name and out-pointer.
            let rc = unsafe {
                libc::fstatat(
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    st.as_mut_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if rc != 0 {
                continue;
            }
            // SAFETY: fstatat succeeded, so `st` is initialized.
            let st = unsafe { st.assume_init() };
            let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64);
            if now
                .duration_since(mtime)
                .is_ok_and(|age| age >= STALE_TEMP_AGE)
            {
                self.unlink(&name);
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid module: the header alone.
    const EMPTY: &[u8] = b"\0asm\x01\0\0\0";

    fn load(engine: &Engine, dir: &Path) -> Origin {
        load_or_compile(engine, EMPTY, Some(dir)).unwrap().1
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn second_load_is_cached_and_corruption_is_recompiled() {
        let engine = Engine::default();
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cache");
        assert_eq!(load(&engine, &dir), Origin::Compiled);
        assert_eq!(load(&engine, &dir), Origin::Cached);
        let path = dir.join(entry_name(&engine, EMPTY));
        // What we create is ours alone.
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(load(&engine, &dir), Origin::Compiled);
        // ... and the rewritten entry is good again.
        assert_eq!(load(&engine, &dir), Origin::Cached);
        std::fs::write(&path, b"short").unwrap();
        assert_eq!(load(&engine, &dir), Origin::Compiled);
    }

    /// A directory others can write to is not read, not written.
    #[test]
    fn a_directory_writable_by_others_is_not_used() {
        let engine = Engine::default();
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cache");
        assert_eq!(load(&engine, &dir), Origin::Compiled);
        let entry = dir.join(entry_name(&engine, EMPTY));
        assert!(entry.exists());
        for m in [0o777, 0o720, 0o702] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).unwrap();
            assert_eq!(load(&engine, &dir), Origin::Compiled, "mode {m:o}");
            // Not "fixed": we did not create it this time.
            assert_eq!(mode(&dir), m);
        }
        std::fs::remove_file(&entry).unwrap();
        assert_eq!(load(&engine, &dir), Origin::Compiled);
        assert!(!entry.exists(), "written into an untrusted directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(load(&engine, &dir), Origin::Compiled);
        assert_eq!(load(&engine, &dir), Origin::Cached);
    }

    /// An entry others can write to is recompiled and replaced by ours.
    #[test]
    fn an_entry_writable_by_others_is_not_loaded() {
        let engine = Engine::default();
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cache");
        load(&engine, &dir);
        let entry = dir.join(entry_name(&engine, EMPTY));
        for m in [0o666, 0o620, 0o602] {
            std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(m)).unwrap();
            assert_eq!(load(&engine, &dir), Origin::Compiled, "mode {m:o}");
            assert_eq!(mode(&entry), 0o600);
        }
        assert_eq!(load(&engine, &dir), Origin::Cached);
    }

    /// A symlinked entry or directory is not followed, even to a good entry.
    #[test]
    fn symbolic_links_are_not_followed() {
        let engine = Engine::default();
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("good");
        load(&engine, &good);
        let name = entry_name(&engine, EMPTY);
        let target = good.join(&name);
        let original = std::fs::read(&target).unwrap();

        let other = d.path().join("other");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&other)
            .unwrap();
        std::os::unix::fs::symlink(&target, other.join(&name)).unwrap();
        assert_eq!(load(&engine, &other), Origin::Compiled);
        // The link was replaced by an entry of our own; its target is
        // untouched.
        assert!(
            std::fs::symlink_metadata(other.join(&name))
                .unwrap()
                .is_file()
        );
        assert_eq!(std::fs::read(&target).unwrap(), original);

        let linked = d.path().join("linked");
        std::os::unix::fs::symlink(&good, &linked).unwrap();
        assert_eq!(load(&engine, &linked), Origin::Compiled);
        assert!(std::fs::symlink_metadata(&linked).unwrap().is_symlink());
    }

    #[test]
    fn stale_temp_files_are_removed_on_write() {
        let engine = Engine::default();
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cache");
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let stale = dir.join(".tmp-1-1");
        let fresh = dir.join(".tmp-2-2");
        let f = File::create(&stale).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        File::create(&fresh).unwrap();
        assert_eq!(load(&engine, &dir), Origin::Compiled);
        assert!(!stale.exists());
        // Possibly another run's write in progress.
        assert!(fresh.exists());
    }
}
