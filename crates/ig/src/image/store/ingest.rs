//! Blobs arriving from elsewhere (a pull, an archive's import), written to disk as they stream
//! in, then committed to the store in one step.
//!
//! Owns: the ingest session ([`Ingest`]): a private directory
//! `ingest/ig-tmp-<id>/` holding one temp file per blob, each hashed and
//! size-checked while it is written ([`BlobWriter`]) and fsynced once
//! complete, and [`Ingest::commit`], which under the store's exclusive
//! lock renames the verified files into `blobs/`, checks that every image
//! is whole (platform manifests of an index may be absent: a pull fetches
//! only the host's), and writes `index.json` last. Does not own: the
//! network, or deciding what to fetch (`registry`), or reading a tar
//! (`archive`).
//!
//! Memory stays bounded whatever the image: a blob never has to be held
//! whole, only the chunk in flight (documents, at most 4 MiB, are parsed by
//! the caller before they are handed here).
//!
//! A download can take longer than any lock may be held, so sessions work
//! outside the store lock. What keeps cleanup (`write_lock`'s
//! `remove_stale_temps`, `ig image prune`) away from a live session is an
//! exclusive `flock` on `<session>/lock`, held by the session for its whole
//! life and released by the kernel when its process dies: a session whose
//! lock can be taken is abandoned and removed, whatever its age. The
//! session directory and its lock are created under the store lock, which
//! the cleaners hold too, so they never see a session half set up.
//!
//! Crash safety is the store's usual one: a temp file is complete and
//! fsynced before it is renamed into `blobs/`, the `blobs/` directories are
//! fsynced before `index.json` is replaced, and a crash at any point leaves
//! the old `index.json` (plus unreferenced blobs and a dead session that
//! the next write or prune removes) or the new one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::{Store, fsutil};
use crate::image::digest::{Digest, Hasher};
use crate::image::error::{ImageError, Mismatch};
use crate::image::oci::{Descriptor, EMPTY_JSON};
use crate::image::reference::Reference;
use crate::image::trust::Origin;

/// Bytes buffered before a temp file is written: network chunks are small,
/// and fewer writes make a faster pull.
const WRITE_BUFFER: usize = 256 << 10;

/// A pull in progress: verified blobs waiting on disk for
/// [`Ingest::commit`]. Dropping it without committing removes them.
#[derive(Debug)]
pub struct Ingest {
    store: Store,
    dir: PathBuf,
    /// Held for the session's life; see the module doc.
    _lock: fsutil::FileLock,
    /// Complete, verified, fsynced temp files by digest.
    ready: BTreeMap<Digest, PathBuf>,
    next: u64,
}

impl Store {
    /// Starts an ingest session in this store (see [`Ingest`]).
    pub fn ingest(&self) -> Result<Ingest, ImageError> {
        // Under the store lock, which also clears sessions of dead pulls.
        let _store_lock = self.write_lock()?;
        let ingest = self.ingest_dir();
        let dir =
            fsutil::temp_path(&ingest).map_err(|e| ImageError::io("creating in", &ingest, e))?;
        fsutil::create_dir(&dir).map_err(|e| ImageError::io("creating", &dir, e))?;
        let lock_path = dir.join(fsutil::SESSION_LOCK);
        let lock = fsutil::lock_exclusive(&lock_path).map_err(|e| {
            let _ = fs::remove_dir_all(&dir);
            ImageError::io("locking", &lock_path, e)
        })?;
        Ok(Ingest {
            store: self.clone(),
            dir,
            _lock: lock,
            ready: BTreeMap::new(),
            next: 0,
        })
    }
}

impl Ingest {
    /// Whether a verified copy of `digest` is waiting in this session.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.ready.contains_key(digest)
    }

    /// How many verified blobs are waiting.
    pub fn len(&self) -> usize {
        self.ready.len()
    }

    /// Whether no blob is ready yet.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }

    /// Starts writing the blob `desc` names. Bytes are checked as they
    /// come: more than `desc.size` fails at once, and
    /// [`BlobWriter::finish`] checks the size and digest.
    pub fn blob(&mut self, desc: &Descriptor) -> Result<BlobWriter<'_>, ImageError> {
        let path = self.next_path();
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(fsutil::FILE_MODE)
            .open(&path)
            .map_err(|e| ImageError::io("creating", &path, e))?;
        Ok(BlobWriter {
            hasher: desc.digest.hasher_like(),
            desc: desc.clone(),
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            path,
            written: 0,
            ingest: self,
        })
    }

    /// Adds a blob already in memory (a document the caller parsed),
    /// verified against `desc`.
    pub fn add(&mut self, desc: &Descriptor, bytes: &[u8]) -> Result<(), ImageError> {
        if self.contains(&desc.digest) {
            return Ok(());
        }
        let mut w = self.blob(desc)?;
        w.write(bytes)?;
        w.finish()
    }

    /// Takes the store's own copy of `desc` into the session if it is
    /// intact, so it need not be downloaded: a hard link (no copy, and the
    /// content survives a garbage collection before the commit), verified
    /// through the link. The OCI empty config is always available. False
    /// when the store has no intact copy.
    pub fn reuse(&mut self, desc: &Descriptor) -> Result<bool, ImageError> {
        if self.contains(&desc.digest) {
            return Ok(true);
        }
        if desc.is_empty_json() && desc.digest.matches(EMPTY_JSON) && desc.size == 2 {
            self.add(desc, EMPTY_JSON)?;
            return Ok(true);
        }
        let src = self.store.blob_path(&desc.digest);
        if !fs::metadata(&src).is_ok_and(|m| m.is_file() && m.len() == desc.size) {
            return Ok(false);
        }
        let path = self.next_path();
        // Gone meanwhile, or a file system without hard links: download.
        if fs::hard_link(&src, &path).is_err() {
            return Ok(false);
        }
        match verify_file(&path, desc) {
            Ok(()) => {
                self.ready.insert(desc.digest.clone(), path);
                Ok(true)
            }
            Err(_) => {
                let _ = fs::remove_file(&path);
                Ok(false)
            }
        }
    }

    /// The verified copy of `digest` waiting in this session, read whole
    /// if it is at most `limit` bytes (a document to parse: an archive's
    /// manifests are parsed only after every blob is on disk). `None`
    /// when it is not here; `Err(size)` when it is larger.
    pub fn read_ready(
        &self,
        digest: &Digest,
        limit: u64,
    ) -> Option<Result<Result<Vec<u8>, u64>, ImageError>> {
        let path = self.ready.get(digest)?;
        Some(
            File::open(path)
                .and_then(|f| crate::image::limits::read_capped(f, limit))
                .map_err(|e| ImageError::io("reading", path, e)),
        )
    }

    /// Drops every waiting blob not in `keep` (an archive's blobs no image
    /// it names reaches), so the commit adds only what is used.
    pub fn retain(&mut self, keep: &BTreeSet<Digest>) {
        self.ready.retain(|digest, path| {
            let kept = keep.contains(digest);
            if !kept {
                let _ = fs::remove_file(path);
            }
            kept
        });
    }

    /// Moves every waiting blob into the store and names `images` in
    /// `index.json`, under the store's exclusive lock. Each image must be
    /// whole except for platform manifests of an index that are absent
    /// (with their blobs): those were not pulled. `index.json` is written
    /// last, so on any error it is unchanged.
    pub fn commit(
        self,
        images: &[(Reference, Descriptor)],
        origin: Origin,
    ) -> Result<Vec<Descriptor>, ImageError> {
        let store = &self.store;
        for (reference, top) in images {
            let digest_names_top =
                reference.tag().is_none() && reference.digest() == Some(&top.digest);
            if reference.digest().is_some() && !digest_names_top {
                return Err(ImageError::TagWithDigest {
                    reference: reference.to_string(),
                });
            }
        }
        let _lock = store.write_lock()?;
        // An index that cannot be read fails the commit before any blob
        // moves in.
        let index = store.read_index()?;
        let mut dirs = BTreeSet::new();
        for (digest, tmp) in &self.ready {
            let dest = store.blob_path(digest);
            if let Some(dir) = dest.parent() {
                fsutil::create_dir_all(dir).map_err(|e| ImageError::io("creating", dir, e))?;
                dirs.insert(dir.to_owned());
            }
            fs::rename(tmp, &dest).map_err(|e| ImageError::io("renaming into", &dest, e))?;
            // A reused blob is a hard link of `dest`: renaming one link of
            // a file onto another does nothing, so drop the temp name.
            if tmp.exists() {
                let _ = fs::remove_file(tmp);
            }
        }
        for dir in &dirs {
            fsutil::sync_dir(dir).map_err(|e| ImageError::io("syncing", dir, e))?;
        }
        let trusted: BTreeSet<&Digest> = self.ready.keys().collect();
        for (reference, top) in images {
            store.check_present(top, &reference.to_string(), &trusted)?;
        }
        store.record(index, images, origin)
    }

    fn next_path(&mut self) -> PathBuf {
        self.next += 1;
        self.dir.join(format!("blob-{}", self.next))
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // Committed files were renamed away; what is left is unneeded. The
        // lock file goes with the directory, then the lock is released.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A blob being written into an [`Ingest`] session.
#[derive(Debug)]
pub struct BlobWriter<'a> {
    ingest: &'a mut Ingest,
    desc: Descriptor,
    path: PathBuf,
    file: BufWriter<File>,
    hasher: Hasher,
    written: u64,
}

impl BlobWriter<'_> {
    /// Appends `chunk`; returns the bytes written so far. Fails with
    /// [`ImageError::Unverified`] as soon as the blob outgrows its
    /// descriptor, before the extra bytes reach the disk.
    pub fn write(&mut self, chunk: &[u8]) -> Result<u64, ImageError> {
        let total = self.written + chunk.len() as u64;
        if total > self.desc.size {
            return Err(ImageError::Unverified {
                digest: self.desc.digest.clone(),
                mismatch: Mismatch::Size {
                    expected: self.desc.size,
                    actual: total,
                },
            });
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .map_err(|e| ImageError::io("writing", &self.path, e))?;
        self.written = total;
        Ok(total)
    }

    /// Checks size and digest, and makes the file durable. Only then does
    /// the session count the blob as ready.
    pub fn finish(self) -> Result<(), ImageError> {
        let BlobWriter {
            ingest,
            desc,
            path,
            file,
            hasher,
            written,
        } = self;
        let unverified = |mismatch| ImageError::Unverified {
            digest: desc.digest.clone(),
            mismatch,
        };
        if written != desc.size {
            let _ = fs::remove_file(&path);
            return Err(unverified(Mismatch::Size {
                expected: desc.size,
                actual: written,
            }));
        }
        let actual = hasher.finish();
        if actual != desc.digest {
            let _ = fs::remove_file(&path);
            return Err(unverified(Mismatch::Hash { actual }));
        }
        let file = file
            .into_inner()
            .map_err(|e| ImageError::io("writing", &path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| ImageError::io("syncing", &path, e))?;
        ingest.ready.insert(desc.digest, path);
        Ok(())
    }
}

/// Reads the file at `path` in pieces and checks it against `desc`.
pub(super) fn verify_file(path: &std::path::Path, desc: &Descriptor) -> Result<(), ImageError> {
    use std::io::Read as _;
    let corrupt = |mismatch| ImageError::DigestMismatch {
        digest: desc.digest.clone(),
        path: path.to_owned(),
        mismatch,
    };
    let mut file = File::open(path).map_err(|e| ImageError::io("reading", path, e))?;
    let mut hasher = desc.digest.hasher_like();
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImageError::io("reading", path, e)),
        };
        total += n as u64;
        // A file that grows past its descriptor is not read to its end.
        if total > desc.size {
            return Err(corrupt(Mismatch::Size {
                expected: desc.size,
                actual: total,
            }));
        }
        hasher.update(&buf[..n]);
    }
    if total != desc.size {
        return Err(corrupt(Mismatch::Size {
            expected: desc.size,
            actual: total,
        }));
    }
    let actual = hasher.finish();
    if actual != desc.digest {
        return Err(corrupt(Mismatch::Hash { actual }));
    }
    Ok(())
}
