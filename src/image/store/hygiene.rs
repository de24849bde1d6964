//! Store hygiene, kept apart from the image logic of `store.rs`: who may
//! use a store directory, and `ig image prune` (leftovers of interrupted
//! writers and blobs no image reaches).
//!
//! Ownership rule: a store is used only when its directory is owned by the
//! current user, or (for reading) by root. A store another user owns could
//! receive our images (write) or feed us theirs: `ig run` as root would
//! load into the kernel whatever that user put there.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{BLOBS_DIR, ImageError, Store, fsutil};

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

/// Refuses `root` if it exists and is owned by neither us nor (when
/// `allow_root`) root. A missing directory is fine: we will create it.
pub(super) fn check_owner(root: &Path, allow_root: bool) -> Result<(), ImageError> {
    let Ok(meta) = fs::metadata(root) else {
        return Ok(());
    };
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let owner = meta.uid();
    if owner == uid || (allow_root && owner == 0) {
        return Ok(());
    }
    Err(ImageError::ForeignOwner {
        path: root.to_owned(),
        owner,
        uid,
    })
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
        let index = self.read_index()?;
        report.blobs = self.collect_garbage(&index);
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
