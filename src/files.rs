//! Writing files that no other user can steer.
//!
//! `ig` usually runs as root, and writes next to paths users name (the
//! destination of `ig image export`, the credentials file) as well as into
//! its own directories (the store, the WASM cache). Two mechanisms keep a
//! name that another user planted from redirecting those writes:
//!
//! - [`TempFile`]: every temp file is created exclusively
//!   (`O_CREAT|O_EXCL|O_NOFOLLOW`, so an existing name, a symbolic link
//!   included, is never opened), under a name ending in 96 random bits from
//!   `getrandom(2)` (so nobody can plant anything at it beforehand),
//!   relative to a descriptor of its directory, and renamed into place only
//!   after an fsync, the directory fsynced after the rename. A name that is
//!   taken is skipped, never reused; a temp file that is not kept is
//!   removed when dropped.
//! - [`Destination`]: an output the user names is replaced atomically only
//!   when it is a regular file or absent. A device, a FIFO, stdout (`-`,
//!   `/dev/stdout`) or a symbolic link to a regular file is written through
//!   as a stream, never replaced (a link's target is truncated first, as a
//!   shell's `>` does); a directory, a socket (other than stdout) and a
//!   terminal are refused with the reason. A link, device or FIFO that
//!   belongs to another user (not root) is refused too: in a directory
//!   others can write, it may have been planted to catch root's write.
//!
//! Owns: those two mechanisms. Does not own: what is written, which
//! directory temp files go to, or their prefix (each caller's cleanup
//! recognizes its own).

use std::ffi::{CString, OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal as _, Write};
use std::os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Random bytes in a temp name: 96 bits, 24 hex digits.
const RANDOM_BYTES: usize = 12;

/// Names tried before giving up: with 96 random bits, a taken name means
/// someone is filling the directory on purpose.
const ATTEMPTS: usize = 16;

/// A private directory under the system's temporary directory (mode
/// 0700, a random name `mkdir(2)` creates or refuses: never another
/// user's), removed with its contents on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/PREFIX<random>`; on failure, the path tried and why.
    pub fn new(prefix: &str) -> Result<Self, (PathBuf, io::Error)> {
        use std::os::unix::fs::DirBuilderExt as _;
        let random = random_suffix().map_err(|e| (std::env::temp_dir(), e))?;
        let path = std::env::temp_dir().join(format!("{prefix}{random}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| (path.clone(), e))?;
        Ok(Self(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 24 hex digits from `getrandom(2)`, for names nobody can predict.
pub fn random_suffix() -> io::Result<String> {
    let mut buf = [0u8; RANDOM_BYTES];
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n.unsigned_abs();
    }
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

fn c_path(path: &Path) -> io::Result<CString> {
    c_name(path.as_os_str())
}

/// Opens `dir` as a directory descriptor (following links in its path:
/// the caller chose the directory), to create and rename relative to it.
fn open_dir(dir: &Path) -> io::Result<File> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
}

/// A temp file created exclusively under an unpredictable name (see the
/// module doc). Write to it, then [`TempFile::persist_as`] or
/// [`TempFile::persist_to`]; dropped without either, it is removed.
#[derive(Debug)]
pub struct TempFile {
    file: File,
    dir: File,
    dir_path: PathBuf,
    name: OsString,
    kept: bool,
}

impl TempFile {
    /// Creates `DIR/PREFIX<random>` with `mode` (less the umask).
    pub fn create(dir: &Path, prefix: &str, mode: u32) -> io::Result<Self> {
        Self::create_in(open_dir(dir)?, dir, prefix, mode)
    }

    /// [`TempFile::create`] in the directory open as `dir` (whose path,
    /// for messages, is `dir_path`): for a caller that checked the
    /// directory through that descriptor.
    pub fn create_in(dir: File, dir_path: &Path, prefix: &str, mode: u32) -> io::Result<Self> {
        for _ in 0..ATTEMPTS {
            let name = OsString::from(format!("{prefix}{}", random_suffix()?));
            match create_exclusive(&dir, &name, mode) {
                Ok(file) => {
                    return Ok(TempFile {
                        file,
                        dir,
                        dir_path: dir_path.to_owned(),
                        name,
                        kept: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "no free temp name in {} after {ATTEMPTS} random tries",
                dir_path.display()
            ),
        ))
    }

    /// The temp file's path, for messages.
    pub fn path(&self) -> PathBuf {
        self.dir_path.join(&self.name)
    }

    /// The open file, to write.
    pub fn as_file(&self) -> &File {
        &self.file
    }

    /// fsyncs the data, renames the temp file to `name` in its own
    /// directory, and fsyncs the directory so the rename survives a crash.
    pub fn persist_as(mut self, name: &OsStr) -> io::Result<()> {
        self.file.sync_all()?;
        let (from, to) = (c_name(&self.name)?, c_name(name)?);
        let dir = self.dir.as_raw_fd();
        // SAFETY: a valid directory descriptor and NUL-terminated names.
        if unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        self.kept = true;
        self.dir.sync_all()
    }

    /// fsyncs the data, renames the temp file to the path `dest` (on the
    /// same file system; relative to the working directory, as
    /// `rename(2)`), and fsyncs `dest`'s directory.
    pub fn persist_to(mut self, dest: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        let (from, to) = (c_name(&self.name)?, c_path(dest)?);
        // SAFETY: a valid directory descriptor and NUL-terminated names;
        // AT_FDCWD makes a relative `dest` relative to the working
        // directory.
        let rc = unsafe {
            libc::renameat(
                self.dir.as_raw_fd(),
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.kept = true;
        match dest.parent() {
            Some(p) => open_dir(p)?.sync_all(),
            None => Ok(()),
        }
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if let Ok(name) = c_name(&self.name) {
            // SAFETY: a valid directory descriptor and NUL-terminated name.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), name.as_ptr(), 0) };
        }
    }
}

/// `openat(dir, name, O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, mode)`:
/// fails with `AlreadyExists` on any existing name, a link included.
fn create_exclusive(dir: &File, name: &OsStr, mode: u32) -> io::Result<File> {
    let c = c_name(name)?;
    // SAFETY: a valid directory descriptor and NUL-terminated name; the
    // result is checked.
    let raw = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            libc::c_uint::from(mode),
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor we just opened and own.
    Ok(unsafe { File::from_raw_fd(raw) })
}

/// Where an output goes: a path the user named, or stdout (`-`).
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A path the user named.
    Path(&'a Path),
    /// Standard output (`-`).
    Stdout,
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Path(p) => write!(f, "{}", p.display()),
            Target::Stdout => f.write_str("stdout"),
        }
    }
}

/// Why an output destination is refused.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// The destination is a directory.
    #[error("{} is a directory: name a file in it, such as {}", path.display(), path.join("NAME.tar").display())]
    Directory {
        /// The file.
        path: PathBuf,
    },
    /// The destination is a socket.
    #[error("{} is a socket: write to a file, a FIFO, a device or - (stdout)", path.display())]
    Socket {
        /// The file.
        path: PathBuf,
    },
    /// Refusing to write binary data to a terminal (`target`).
    #[error(
        "refusing to write binary data to a terminal ({target}): redirect it to a file or a pipe"
    )]
    Terminal {
        /// The target.
        target: String,
    },
    /// The destination is a link or node owned by another user.
    #[error(
        "{} is a {kind} owned by uid {owner}: ig does not write through another user's {kind} (it may have been planted there); remove it or name another path",
        path.display()
    )]
    ForeignOwner {
        /// The file.
        path: PathBuf,
        /// What it is (a link, a FIFO...).
        kind: &'static str,
        /// Its owner's uid.
        owner: u32,
    },
    /// Writing to the destination failed.
    #[error("{op} {target}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The destination.
        target: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// An output being written: a temp file renamed over the named path at
/// [`Destination::finish`], or a stream (device, FIFO, stdout, a link's
/// target). Write to it (through a `BufWriter`: writes go straight to the
/// file), then call [`Destination::finish`]; dropped before that, a temp
/// file is removed and the destination is unchanged.
#[derive(Debug)]
pub struct Destination {
    inner: Inner,
    target: String,
}

#[derive(Debug)]
enum Inner {
    Replace {
        temp: TempFile,
        name: OsString,
    },
    Stream {
        file: File,
        /// A regular file (stdout redirected to one, a link's target):
        /// fsynced at the end.
        regular: bool,
        stdout: bool,
    },
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

fn egid() -> u32 {
    // SAFETY: getegid cannot fail.
    unsafe { libc::getegid() }
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else if t.is_dir() {
        "directory"
    } else {
        "file"
    }
}

fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// A descriptor of our stdout of its own (a `dup`), so writing to it and
/// dropping it never closes fd 1.
fn stdout_file() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

impl Destination {
    /// Opens `target` for writing (see the module doc for what each kind
    /// of file becomes).
    pub fn open(target: Target<'_>) -> Result<Self, DestinationError> {
        let shown = target.to_string();
        let io_err = |op, source| DestinationError::Io {
            op,
            target: shown.clone(),
            source,
        };
        let path = match target {
            Target::Stdout => {
                let file = stdout_file().map_err(|e| io_err("opening", e))?;
                return Self::stream(file, true, shown);
            }
            Target::Path(p) => p,
        };
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Self::replace(path, None, shown);
            }
            Err(e) => return Err(io_err("examining", e)),
        };
        if meta.is_file() {
            return Self::replace(path, Some(&meta), shown);
        }
        if meta.is_dir() {
            return Err(DestinationError::Directory {
                path: path.to_owned(),
            });
        }
        // A link, device, FIFO or socket: used in place, so only if it is
        // ours or root's.
        let owner = meta.uid();
        if owner != euid() && owner != 0 {
            return Err(DestinationError::ForeignOwner {
                path: path.to_owned(),
                kind: kind_of(&meta),
                owner,
            });
        }
        let resolved = fs::metadata(path).map_err(|e| io_err("following", e))?;
        if resolved.is_dir() {
            return Err(DestinationError::Directory {
                path: path.to_owned(),
            });
        }
        // `/dev/stdout` (and the like): our own fd 1, at its offset,
        // whatever it is (a socket cannot be opened by path at all).
        if let Ok(out) = stdout_file()
            && out.metadata().is_ok_and(|m| same_file(&m, &resolved))
        {
            return Self::stream(out, true, shown);
        }
        if std::os::unix::fs::FileTypeExt::is_socket(&resolved.file_type()) {
            return Err(DestinationError::Socket {
                path: path.to_owned(),
            });
        }
        // No O_CREAT, no O_TRUNC: nothing is created or replaced here. A
        // FIFO blocks until it has a reader, as a shell's `>` does.
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| io_err("opening", e))?;
        Self::stream(file, false, shown)
    }

    fn stream(file: File, stdout: bool, target: String) -> Result<Self, DestinationError> {
        if file.is_terminal() {
            return Err(DestinationError::Terminal { target });
        }
        let meta = file.metadata().map_err(|source| DestinationError::Io {
            op: "examining",
            target: target.clone(),
            source,
        })?;
        let regular = meta.is_file();
        // A link to a regular file: written through from the start, like
        // a shell's `>`. Stdout keeps its offset and contents (`>>`).
        if regular && !stdout {
            file.set_len(0).map_err(|source| DestinationError::Io {
                op: "truncating",
                target: target.clone(),
                source,
            })?;
        }
        Ok(Destination {
            inner: Inner::Stream {
                file,
                regular,
                stdout,
            },
            target,
        })
    }

    /// A regular file at `path` (or none yet): written to a temp file next
    /// to it and renamed over it at the end, keeping an existing file's
    /// mode and (as far as we may) owner.
    fn replace(
        path: &Path,
        old: Option<&fs::Metadata>,
        target: String,
    ) -> Result<Self, DestinationError> {
        let io_err = |op, source| DestinationError::Io {
            op,
            target: target.clone(),
            source,
        };
        let Some(name) = path.file_name() else {
            return Err(io_err(
                "writing",
                io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
            ));
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let prefix = format!(".{}.ig-tmp-", name.to_string_lossy());
        // No bits beyond the old file's while it is written.
        let mode = old.map_or(0o666, |m| m.mode() & 0o777);
        let temp = TempFile::create(dir, &prefix, mode)
            .map_err(|e| io_err("creating a temp file for", e))?;
        if let Some(m) = old {
            // Not setuid or setgid: the content is new.
            temp.as_file()
                .set_permissions(fs::Permissions::from_mode(m.mode() & 0o777))
                .map_err(|e| io_err("setting the mode of", e))?;
            if (m.uid(), m.gid()) != (euid(), egid()) {
                // Best effort: only root may give a file away.
                let _ = std::os::unix::fs::fchown(temp.as_file(), Some(m.uid()), Some(m.gid()));
            }
        }
        Ok(Destination {
            inner: Inner::Replace {
                temp,
                name: name.to_owned(),
            },
            target,
        })
    }

    /// Whether this writes to our stdout (`-`, or a path naming it): the
    /// caller then keeps its own messages off stdout.
    pub fn is_stdout(&self) -> bool {
        matches!(self.inner, Inner::Stream { stdout: true, .. })
    }

    /// Completes the output: a temp file is fsynced and renamed over the
    /// destination; a regular file written through is fsynced.
    pub fn finish(self) -> Result<(), DestinationError> {
        let target = self.target;
        let io_err = |op, source| DestinationError::Io {
            op,
            target: target.clone(),
            source,
        };
        match self.inner {
            Inner::Replace { temp, name } => {
                temp.persist_as(&name).map_err(|e| io_err("writing", e))
            }
            Inner::Stream {
                mut file, regular, ..
            } => {
                file.flush().map_err(|e| io_err("writing", e))?;
                if regular {
                    file.sync_all().map_err(|e| io_err("writing", e))?;
                }
                Ok(())
            }
        }
    }
}

impl Write for Destination {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Replace { temp, .. } => temp.write(buf),
            Inner::Stream { file, .. } => file.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Replace { temp, .. } => temp.flush(),
            Inner::Stream { file, .. } => file.flush(),
        }
    }
}

/// A link planted at a name a writer might use, pointing at a victim
/// file: for tests that the writer does not follow it.
#[cfg(test)]
pub(crate) struct PlantedLink {
    victim: PathBuf,
    link: PathBuf,
}

#[cfg(test)]
impl PlantedLink {
    /// Writes `dir/victim` and plants `dir/name` pointing at it.
    pub(crate) fn plant(dir: &Path, name: &str) -> Self {
        let victim = dir.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let link = dir.join(name);
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        PlantedLink { victim, link }
    }

    /// The victim holds what it held, and the link is still there.
    pub(crate) fn assert_not_followed(&self) {
        let now = fs::read(&self.victim).unwrap();
        assert!(
            now == b"precious",
            "the planted link was followed: the victim holds {} bytes",
            now.len()
        );
        assert!(fs::symlink_metadata(&self.link).unwrap().is_symlink());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt as _;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn temp_names_are_random_and_persist_replaces_atomically() {
        let d = tempfile::tempdir().unwrap();
        let a = TempFile::create(d.path(), "p-", 0o600).unwrap();
        let b = TempFile::create(d.path(), "p-", 0o600).unwrap();
        let (na, nb) = (a.name.to_string_lossy(), b.name.to_string_lossy());
        assert_ne!(na, nb);
        assert_eq!(na.len(), 2 + 2 * RANDOM_BYTES, "{na}");
        let mode = fs::metadata(a.path()).unwrap().mode() & 0o777;
        assert_eq!(mode & !0o600, 0, "mode {mode:o}");
        drop(b);
        let mut a = a;
        a.write_all(b"new").unwrap();
        fs::write(d.path().join("dest"), b"old").unwrap();
        a.persist_as(OsStr::new("dest")).unwrap();
        assert_eq!(fs::read(d.path().join("dest")).unwrap(), b"new");
        assert_eq!(names(d.path()), ["dest"], "the unkept one is removed");
    }

    /// A name that exists, a link to a victim above all, is never opened.
    #[test]
    fn a_planted_link_at_the_name_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let planted = PlantedLink::plant(d.path(), "planted");
        let dir = open_dir(d.path()).unwrap();
        let e = create_exclusive(&dir, OsStr::new("planted"), 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        std::os::unix::fs::symlink("nowhere", d.path().join("dangling")).unwrap();
        let e = create_exclusive(&dir, OsStr::new("dangling"), 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert!(!d.path().join("nowhere").exists());
        planted.assert_not_followed();
    }

    #[test]
    fn persist_to_another_directory() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("tmp")).unwrap();
        fs::create_dir(d.path().join("final")).unwrap();
        let mut t = TempFile::create(&d.path().join("tmp"), "x-", 0o644).unwrap();
        t.write_all(b"data").unwrap();
        t.persist_to(&d.path().join("final/f")).unwrap();
        assert_eq!(fs::read(d.path().join("final/f")).unwrap(), b"data");
        assert!(names(&d.path().join("tmp")).is_empty());
    }

    fn write(target: Target<'_>, bytes: &[u8]) -> Result<(), String> {
        let mut dest = Destination::open(target).map_err(|e| e.to_string())?;
        dest.write_all(bytes).map_err(|e| e.to_string())?;
        dest.finish().map_err(|e| e.to_string())
    }

    #[test]
    fn regular_files_are_replaced_keeping_their_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.tar");
        write(Target::Path(&p), b"first").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"first");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let before = fs::metadata(&p).unwrap().ino();
        write(Target::Path(&p), b"second").unwrap();
        let m = fs::metadata(&p).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_ne!(m.ino(), before, "replaced, not rewritten in place");
        assert_eq!(names(d.path()), ["out.tar"]);

        // Dropped before finish: nothing changes, no temp file is left.
        let mut dest = Destination::open(Target::Path(&p)).unwrap();
        dest.write_all(b"half").unwrap();
        drop(dest);
        assert_eq!(fs::read(&p).unwrap(), b"second");
        assert_eq!(names(d.path()), ["out.tar"]);
    }

    #[test]
    fn devices_and_links_are_written_through_never_replaced() {
        let d = tempfile::tempdir().unwrap();
        // /dev/null itself, through a link of ours.
        let null = d.path().join("null");
        std::os::unix::fs::symlink("/dev/null", &null).unwrap();
        write(Target::Path(&null), b"gone").unwrap();
        assert!(fs::symlink_metadata(&null).unwrap().is_symlink());
        assert!(
            fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
        // A link to a regular file: its target is rewritten, the link kept.
        let target = d.path().join("target");
        fs::write(&target, b"a much longer old content").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write(Target::Path(&link), b"short").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"short");
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());

        let e = write(Target::Path(d.path()), b"x").unwrap_err();
        assert!(e.contains("is a directory: name a file in it"), "{e}");
        let e = write(Target::Path(Path::new("/dev/full")), b"x").unwrap_err();
        assert!(e.contains("No space left"), "{e}");
    }

    #[test]
    fn sockets_and_other_users_links_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = write(Target::Path(&sock), b"x").unwrap_err();
        assert!(e.contains("is a socket: write to a file"), "{e}");
        assert!(fs::metadata(&sock).unwrap().file_type().is_socket());

        if euid() != 0 {
            return;
        }
        let victim = d.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let planted = d.path().join("planted");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        std::os::unix::fs::lchown(&planted, Some(65534), Some(65534)).unwrap();
        let e = write(Target::Path(&planted), b"x").unwrap_err();
        assert!(
            e.contains("symbolic link owned by uid 65534: ig does not write through"),
            "{e}"
        );
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }
}
