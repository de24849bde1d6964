//! Store hygiene, kept apart from the image logic of `store.rs`: who may
//! use a store directory, and `ig image prune` (leftovers of interrupted
//! writers and blobs no image reaches).
//!
//! Ownership rule: a store is used only when its directory and the parts
//! ig reads and writes (`blobs/`, `blobs/sha256/`, `ingest/`,
//! `index.json`, `oci-layout`) are owned by the current user, or (for
//! reading) by root, and none of them is writable by group or others. A
//! store someone else can write could receive our images (write) or feed
//! us theirs: `ig run` as root would load into the kernel whatever that
//! user put there. (Blob files themselves are verified against their
//! digest on every read, so a changed blob is an error, not a load.)

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{BLOBS_DIR, INDEX_FILE, INGEST_DIR, ImageError, LAYOUT_FILE, LOCK_FILE, Store, fsutil};

/// What [`Store::prune_leftovers`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Temp files of writes that never finished (`ingest/ig-tmp-*`, the
    /// downloads of pulls that died, and any in `blobs/`).
    pub temp_files: usize,
    /// Blobs no image of `index.json` reaches.
    pub blobs: usize,
    /// Bytes freed by both.
    pub bytes: u64,
}

/// Refuses `root` if it, or one of the parts of it ig uses, exists and is
/// owned by neither us nor (when `allow_root`) root, or is writable by
/// group or others, or is a symbolic link (no link is followed inside a
/// store: `index.json` linked to `/etc/shadow` would be read and parsed,
/// a dangling `index.json.lock` link would make ig create its target
/// anywhere). Missing parts are fine: we create them (0700). The
/// directories above `root` are checked as ssh checks the path to a key:
/// each owned by us or root, and writable by others only if sticky (`/tmp`).
/// A directory with other content and no store in it is refused
/// (`IG_STORE=/etc` must not get `blobs/` written into it).
pub(super) fn check_store(root: &Path, allow_root: bool) -> Result<(), ImageError> {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    check_ancestors(root, uid)?;
    let parts = [
        root.to_owned(),
        root.join(BLOBS_DIR),
        root.join(BLOBS_DIR).join("sha256"),
        root.join(INGEST_DIR),
        root.join(INDEX_FILE),
        root.join(LAYOUT_FILE),
        root.join(LOCK_FILE),
    ];
    for path in parts {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            return Err(ImageError::UnsafePath {
                path,
                why: "is a symbolic link",
            });
        }
        let owner = meta.uid();
        if owner != uid && !(allow_root && owner == 0) {
            return Err(ImageError::ForeignOwner {
                path,
                owner,
                uid,
                root_allowed: allow_root,
            });
        }
        let mode = meta.mode() & 0o7777;
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            (false, true) => "others",
            (false, false) => continue,
        };
        return Err(ImageError::WritableByOthers { path, mode, who });
    }
    if !allow_root && is_foreign_content(root) {
        return Err(ImageError::NotAStore {
            path: root.to_owned(),
        });
    }
    Ok(())
}

/// The existing directories above `root` (made absolute), each owned by
/// `uid` or root and not writable by others unless sticky.
fn check_ancestors(root: &Path, uid: u32) -> Result<(), ImageError> {
    let abs = if root.is_absolute() {
        root.to_owned()
    } else {
        match std::env::current_dir() {
            Ok(d) => d.join(root),
            Err(_) => return Ok(()),
        }
    };
    for dir in abs.ancestors().skip(1) {
        // The link itself: a link above the store is someone's choice of
        // where it is (`/var/run` → `/run` is root's and fine).
        let Ok(meta) = fs::symlink_metadata(dir) else {
            continue;
        };
        let owner = meta.uid();
        if owner != uid && owner != 0 {
            return Err(ImageError::UnsafePath {
                path: dir.to_owned(),
                why: "is a directory above the store owned by another user",
            });
        }
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.is_dir() && meta.mode() & 0o022 != 0 && !sticky {
            return Err(ImageError::UnsafePath {
                path: dir.to_owned(),
                why: "is a directory above the store that others can write (and not sticky)",
            });
        }
    }
    Ok(())
}

/// `root` exists, is not empty, and has none of a store's files: another
/// directory's content.
fn is_foreign_content(root: &Path) -> bool {
    let Ok(mut entries) = fs::read_dir(root) else {
        return false;
    };
    let non_empty = entries.next().is_some();
    non_empty
        && ![LAYOUT_FILE, INDEX_FILE, BLOBS_DIR]
            .iter()
            .any(|p| fs::symlink_metadata(root.join(p)).is_ok())
}

impl Store {
    /// `ig image prune`: under the store's exclusive lock, remove every
    /// temp file of ours (no writer of ours is mid-write while we hold the
    /// lock, so all of them are leftovers of writers that died) and every
    /// ingest session whose pull died (a live pull downloads outside the
    /// lock and keeps its session locked), then every blob no
    /// `index.json` entry reaches.
    pub fn prune_leftovers(&self) -> Result<PruneReport, ImageError> {
        // Not `write_lock`: its own cleanup would remove what this one
        // counts.
        self.writable()?;
        let _lock = self.lock()?;
        // What the images use is known before anything is removed: if it
        // cannot be, nothing is.
        let index = self.read_index()?;
        let keep = self.reachable(&index)?;
        let mut report = PruneReport::default();
        for dir in [self.ingest_dir(), self.root.join(BLOBS_DIR).join("sha256")] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if !fsutil::is_temp_name(&e.file_name()) {
                    continue;
                }
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    // An ingest session: a pull in progress keeps it
                    // locked and must not lose its downloads.
                    if fsutil::session_is_live(&e.path()) {
                        continue;
                    }
                    let files: Vec<u64> = fs::read_dir(e.path())
                        .map(|d| {
                            d.flatten()
                                .filter(|f| f.file_name() != fsutil::SESSION_LOCK)
                                .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
                                .collect()
                        })
                        .unwrap_or_default();
                    if fs::remove_dir_all(e.path()).is_ok() {
                        report.temp_files += files.len();
                        report.bytes += files.iter().sum::<u64>();
                    }
                    continue;
                }
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                if fs::remove_file(e.path()).is_ok() {
                    report.temp_files += 1;
                    report.bytes += len;
                }
            }
        }
        let before = self.blob_bytes();
        report.blobs = self.delete_unreachable(&keep);
        report.bytes += before.saturating_sub(self.blob_bytes());
        Ok(report)
    }

    /// Total size of the blob files.
    fn blob_bytes(&self) -> u64 {
        let Ok(algs) = fs::read_dir(self.root.join(BLOBS_DIR)) else {
            return 0;
        };
        algs.flatten()
            .filter_map(|a| fs::read_dir(a.path()).ok())
            .flat_map(|files| files.flatten())
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum()
    }
}
