//! File-system primitives for the store: `flock`-based locking, atomic
//! writes (temp file + fsync + rename + directory fsync) and cleanup of
//! temp files left by interrupted writers.
//!
//! Kept apart from the store logic so that the crash-safety rules live in one
//! place: nothing in the store writes a final path except through
//! [`write_atomic`], whose temp files come from [`crate::files::TempFile`]
//! (exclusive, random names) like every temp file of ig.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::files::{self, TempFile};

/// Prefix of every temp file we create, so cleanup never touches files that
/// another tool (oras, upstream `ig`) keeps in the same directory.
pub(crate) const TEMP_PREFIX: &str = "ig-tmp-";

/// Temp files older than this belong to a writer that died: every writer of
/// ours holds the store lock for its whole write, which takes seconds.
pub(crate) const STALE_TEMP_AGE: Duration = Duration::from_secs(10 * 60);

/// Mode of directories we create: the store may hold private images.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of files we create: never group- or world-writable.
pub(crate) const FILE_MODE: u32 = 0o644;

/// Creates `path` and its missing parents with [`DIR_MODE`].
pub(crate) fn create_dir_all(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// A held `flock`; released when dropped (the descriptor is closed).
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

/// Takes an exclusive lock on `path`, creating the file if needed.
pub(crate) fn lock_exclusive(path: &Path) -> io::Result<FileLock> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        // A link in the lock's place is not followed (nor its target
        // created): the store refuses links.
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    flock(&file, libc::LOCK_EX)?;
    Ok(FileLock { _file: file })
}

/// Takes a shared lock on `path` if the file can be opened. Readers only
/// need it to keep a concurrent garbage collection from deleting blobs
/// under them; a store we cannot lock (read-only mount, someone else's
/// store) is still readable, so this returns `None` instead of failing.
pub(crate) fn lock_shared(path: &Path) -> Option<FileLock> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    flock(&file, libc::LOCK_SH).ok()?;
    Some(FileLock { _file: file })
}

/// Takes an exclusive lock on the existing file `path` without waiting:
/// `None` when another open file holds a lock on it (in this process or
/// another), or when it cannot be opened.
pub(crate) fn try_lock_exclusive(path: &Path) -> Option<FileLock> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    flock(&file, libc::LOCK_EX | libc::LOCK_NB).ok()?;
    Some(FileLock { _file: file })
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock only reads the descriptor, which `file` keeps open
        // for the duration of the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A fresh temp name in `dir` that nobody can predict (see
/// [`crate::files`]), for an ingest session's directory: create it with
/// [`create_dir`], which fails rather than reuse an existing name.
pub(crate) fn temp_path(dir: &Path) -> io::Result<PathBuf> {
    Ok(dir.join(format!("{TEMP_PREFIX}{}", files::random_suffix()?)))
}

/// Creates the directory `path` with [`DIR_MODE`]; an existing one is an
/// error (`mkdir(2)` never follows a link either).
pub(crate) fn create_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(DIR_MODE).create(path)
}

/// Writes `bytes` to `dest` so that `dest` is either its old content or the
/// complete new one, even across a crash: the data goes to a temp file in
/// `temp_dir` (same file system as `dest`), created exclusively under a
/// random name ([`files::TempFile`]), is fsynced, renamed over `dest`, and
/// the directory entry is fsynced too.
pub(crate) fn write_atomic(temp_dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = TempFile::create(temp_dir, TEMP_PREFIX, FILE_MODE)?;
    tmp.write_all(bytes)?;
    tmp.persist_to(dest)
}

/// fsyncs a directory so a rename into it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Name of the lock file inside an ingest session directory (see
/// `store/ingest.rs`): its owner holds an exclusive `flock` on it for as
/// long as the session lives.
pub(crate) const SESSION_LOCK: &str = "lock";

/// Whether the temp directory `dir` is an ingest session whose owner is
/// still alive (holds the flock of its lock file). Only meaningful under
/// the store's exclusive lock, which sessions are created under: a
/// session directory seen then is either fully set up and locked, or
/// abandoned.
pub(crate) fn session_is_live(dir: &Path) -> bool {
    let lock = dir.join(SESSION_LOCK);
    lock.exists() && try_lock_exclusive(&lock).is_none()
}

/// Removes our temp files in `dir` older than `max_age`, and the ingest
/// session directories whose owner died (whatever their age: liveness is
/// known from their lock). Best effort: a failure here must not fail the
/// write that triggered it. Caller holds the store's exclusive lock.
pub(crate) fn remove_stale_temps(dir: &Path, max_age: Duration) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !is_temp_name(&name) {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            if !session_is_live(&entry.path()) {
                let _ = fs::remove_dir_all(entry.path());
            }
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= max_age);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

pub(crate) fn is_temp_name(name: &OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with(TEMP_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        write_atomic(dir.path(), &dest, b"one").unwrap();
        write_atomic(dir.path(), &dest, b"two").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
    }

    #[test]
    fn stale_temps_are_removed_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(format!("{TEMP_PREFIX}x"));
        let other = dir.path().join("not-ours");
        fs::write(&tmp, b"x").unwrap();
        fs::write(&other, b"x").unwrap();
        remove_stale_temps(dir.path(), STALE_TEMP_AGE);
        assert!(tmp.exists(), "a fresh temp file belongs to a live writer");
        remove_stale_temps(dir.path(), Duration::ZERO);
        assert!(!tmp.exists());
        assert!(other.exists(), "foreign files are never touched");
    }

    #[test]
    fn dead_sessions_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join(format!("{TEMP_PREFIX}live"));
        let dead = dir.path().join(format!("{TEMP_PREFIX}dead"));
        for d in [&live, &dead] {
            create_dir_all(d).unwrap();
            fs::write(d.join(SESSION_LOCK), b"").unwrap();
            fs::write(d.join("blob"), b"partial").unwrap();
        }
        let _held = lock_exclusive(&live.join(SESSION_LOCK)).unwrap();
        assert!(session_is_live(&live));
        assert!(!session_is_live(&dead));
        remove_stale_temps(dir.path(), STALE_TEMP_AGE);
        assert!(live.join("blob").exists(), "a live session is kept");
        assert!(!dead.exists(), "a dead session goes, whatever its age");
    }

    #[test]
    fn exclusive_lock_excludes_across_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = lock_exclusive(&path).unwrap();
        let f = File::open(&path).unwrap();
        // SAFETY: plain syscall on an open descriptor.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        assert_eq!(
            rc, -1,
            "a second open file description must not get the lock"
        );
        drop(held);
        assert!(lock_shared(&path).is_some());
    }
}
