//! The log writer: a thread that owns the log's destination (stdout,
//! stderr or a file with size-based rotation) and writes the batches of
//! lines the runs' handlers queue for it.
//!
//! The event path never waits for it: a handler hands over a whole batch
//! with `try_send` on a bounded queue ([`QUEUE_BATCHES`] batches of about
//! [`BATCH_BYTES`] each), and a full queue drops that batch, whose lines
//! are counted ([`LogWriter::dropped`]). Batch buffers come back through a
//! pool, so a steady run allocates none.
//!
//! Rotation (lumberjack's rules, which upstream uses): when the next line
//! would take the file past `max-size-mb`, the file is renamed to
//! `<stem>-<UTC time>.<ext>` (gzipped when `compress`), a new one is
//! opened, and the line goes there; lines are never split across files,
//! so a rotation loses none. Backups beyond `max-backups` (0: keep all)
//! or older than `max-age-days` (0: keep) are removed.
//!
//! Reopen ([`LogWriter::reopen`], SIGHUP in `ig run`): the file is
//! closed and opened again by its name, without renaming anything, as
//! `logrotate` (its default `create` mode) expects after it moved the file
//! away. Every line written before the reopen is in the moved file, every
//! later one in the new file.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Channel, LogsConfig, LogsError};
use crate::sched::{Applied, Governor, ReaderPriority};

/// A batch is handed over when it holds this many bytes (or at the
/// runner's flush).
pub const BATCH_BYTES: usize = 256 * 1024;
/// Batches waiting for the writer at most: the memory bound.
pub const QUEUE_BATCHES: usize = 64;
/// How often the writer looks for a reopen request when idle.
const IDLE: Duration = Duration::from_millis(100);

/// Lines of one data source, whole, ready to write.
pub(super) struct Batch {
    pub bytes: Vec<u8>,
    pub lines: u64,
}

struct Shared {
    dropped: AtomicU64,
    written: AtomicU64,
    reopen: AtomicU64,
    /// The first write error, said once by the runs.
    error: Mutex<Option<String>>,
    pool: Mutex<Vec<Vec<u8>>>,
}

/// The process's log writer: cheap to clone, shared by every run of it.
/// Dropping the last clone (and [`LogWriter::close`]) writes what is
/// queued and ends the thread.
#[derive(Clone)]
pub struct LogWriter {
    tx: Option<SyncSender<Batch>>,
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl LogWriter {
    /// Open the destination (creating the file, mode 0600, and its
    /// directory) and start the thread.
    pub fn start(config: &LogsConfig) -> Result<Self, LogsError> {
        Self::start_with(config, ReaderPriority::Inherit)
    }

    /// [`LogWriter::start`], the writer's thread scheduled with `priority`:
    /// `ig run` gives it the scheduling its reader has
    /// (`--reader-priority`), so that a reader that outruns the workload
    /// is not outrun by the workload on the way to the file. Real-time
    /// is governed as the reader's is (given up while the writer cannot
    /// keep up), and never held while a rotated file is compressed.
    pub fn start_with(config: &LogsConfig, priority: ReaderPriority) -> Result<Self, LogsError> {
        let mut dest = Destination::open(config)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(QUEUE_BATCHES);
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            reopen: AtomicU64::new(0),
            error: Mutex::new(None),
            pool: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ig-logs".into())
            .spawn(move || {
                let applied = priority.apply();
                if let Applied::Declined(why) = &applied {
                    log::debug!("log writer thread: inherited priority ({why})");
                }
                dest.run(&rx, &s, &Governor::for_applied(&applied));
            })
            .map_err(LogsError::Thread)?;
        Ok(Self {
            tx: Some(tx),
            shared,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Close the file and open it again by its name (after `logrotate`
    /// moved it). Returns at once; the writer reopens before its next
    /// write.
    pub fn reopen(&self) {
        self.shared.reopen.fetch_add(1, Ordering::SeqCst);
    }

    /// Lines dropped so far: the queue was full, or writing failed.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// The first write error, once.
    pub fn take_error(&self) -> Option<String> {
        self.shared.error.lock().ok()?.take()
    }

    /// Write what is queued and end the thread (later batches are dropped
    /// and counted). Idempotent; waits for the writes.
    pub fn close(&mut self) {
        self.tx = None;
        let t = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = t {
            // Other clones still hold senders: the thread ends when the
            // last one goes. Only the last holder waits.
            if Arc::strong_count(&self.thread) == 1 {
                let _ = t.join();
            } else if let Ok(mut slot) = self.thread.lock() {
                *slot = Some(t);
            }
        }
    }

    /// A buffer for a batch: a returned one, or a new one.
    pub(super) fn buffer(&self) -> Vec<u8> {
        self.shared
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_else(|| Vec::with_capacity(BATCH_BYTES + 4096))
    }

    /// Queue `batch` without waiting; a full queue (or a closed writer)
    /// drops it and counts its lines. The buffer comes back empty.
    pub(super) fn send(&self, batch: Batch) -> Vec<u8> {
        let Some(tx) = &self.tx else {
            self.shared
                .dropped
                .fetch_add(batch.lines, Ordering::Relaxed);
            let mut b = batch.bytes;
            b.clear();
            return b;
        };
        match tx.try_send(batch) {
            Ok(()) => self.buffer(),
            Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => {
                self.shared.dropped.fetch_add(b.lines, Ordering::Relaxed);
                let mut bytes = b.bytes;
                bytes.clear();
                bytes
            }
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.close();
    }
}

/// Where the lines go, on the writer's thread.
enum Destination {
    Fd(std::os::fd::RawFd),
    File(Box<Rotating>),
}

impl Destination {
    fn open(config: &LogsConfig) -> Result<Self, LogsError> {
        Ok(match config.channel {
            Channel::Stdout => Self::Fd(1),
            Channel::Stderr => Self::Fd(2),
            Channel::File => Self::File(Box::new(Rotating::open(config)?)),
        })
    }

    fn run(&mut self, rx: &Receiver<Batch>, shared: &Shared, gov: &Governor) {
        let mut reopened = 0;
        loop {
            gov.tick(std::time::Instant::now());
            let batch = match rx.recv_timeout(IDLE) {
                Ok(b) => Some(b),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let want = shared.reopen.load(Ordering::SeqCst);
            if want != reopened {
                reopened = want;
                if let Self::File(f) = self
                    && let Err(e) = f.reopen()
                {
                    note_error(shared, &e);
                }
            }
            if let Some(b) = batch {
                self.write(b, shared, gov);
            }
        }
        if let Self::File(f) = self {
            let _ = f.file.as_mut().map(File::flush);
        }
    }

    fn write(&mut self, b: Batch, shared: &Shared, gov: &Governor) {
        let r = match self {
            Self::Fd(fd) => write_fd(*fd, &b.bytes),
            Self::File(f) => f.write(&b.bytes, gov),
        };
        match r {
            Ok(()) => {
                shared.written.fetch_add(b.lines, Ordering::Relaxed);
            }
            Err(e) => {
                shared.dropped.fetch_add(b.lines, Ordering::Relaxed);
                note_error(shared, &e);
            }
        }
        let mut bytes = b.bytes;
        bytes.clear();
        if let Ok(mut p) = shared.pool.lock()
            && p.len() < QUEUE_BATCHES
        {
            p.push(bytes);
        }
    }
}

fn note_error(shared: &Shared, e: &std::io::Error) {
    if let Ok(mut slot) = shared.error.lock()
        && slot.is_none()
    {
        *slot = Some(e.to_string());
    }
}

/// All of `bytes` to a descriptor that may be non-blocking (ig run's
/// stdout is): waits for it to take more when it is full.
fn write_fd(fd: std::os::fd::RawFd, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: writes from a valid slice to a descriptor the process
        // holds for its lifetime (1 or 2).
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => {
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&raw mut p, 1, 1000) };
                    continue;
                }
                _ => return Err(e),
            }
        }
        bytes = &bytes[usize::try_from(n).unwrap_or(0)..];
    }
    Ok(())
}

/// A file rotated by size.
struct Rotating {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_backups: usize,
    max_age: Option<Duration>,
    compress: bool,
}

impl Rotating {
    fn open(config: &LogsConfig) -> Result<Self, LogsError> {
        let path = config.filename.clone();
        let fail = |e| LogsError::Open {
            path: path.clone(),
            source: e,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut r = Self {
            path: path.clone(),
            file: None,
            size: 0,
            max_size: config.max_size_mb.saturating_mul(1024 * 1024),
            max_backups: config.max_backups,
            max_age: (config.max_age_days > 0)
                .then(|| Duration::from_secs(config.max_age_days.saturating_mul(86_400))),
            compress: config.compress,
        };
        r.reopen().map_err(fail)?;
        Ok(r)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        self.file = None;
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        self.file = Some(f);
        Ok(())
    }

    /// Write whole lines; rotate before a line that would pass the size.
    fn write(&mut self, mut bytes: &[u8], gov: &Governor) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let room = self.max_size.saturating_sub(self.size);
            // The longest run of whole lines that fits.
            let mut take = 0usize;
            let mut at = 0usize;
            while at < bytes.len() {
                let end = bytes[at..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(bytes.len(), |p| at + p + 1);
                if (end as u64) > room {
                    break;
                }
                take = end;
                at = end;
            }
            if take == 0 {
                if self.size > 0 {
                    self.rotate(gov)?;
                    continue;
                }
                // A line longer than a whole file: alone in one.
                take = bytes[..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(bytes.len(), |p| p + 1);
            }
            if self.file.is_none() {
                self.reopen()?;
            }
            let f = self.file.as_mut().expect("opened above");
            f.write_all(&bytes[..take])?;
            self.size += take as u64;
            bytes = &bytes[take..];
        }
        Ok(())
    }

    /// The current file becomes a backup; a new one is opened.
    fn rotate(&mut self, gov: &Governor) -> std::io::Result<()> {
        self.file = None;
        let backup = self.backup_name(SystemTime::now());
        std::fs::rename(&self.path, &backup)?;
        self.reopen()?;
        if self.compress {
            gov.relaxed(|| gzip(&backup))?;
        }
        self.prune();
        Ok(())
    }

    /// `<stem>-2006-01-02T15-04-05.000<ext>` in UTC (lumberjack's), one
    /// millisecond later while that name is taken.
    fn backup_name(&self, now: SystemTime) -> PathBuf {
        let (stem, ext) = self.stem_ext();
        let mut ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        loop {
            let name = format!("{stem}-{}{ext}", backup_time(ms));
            let p = self.path.with_file_name(&name);
            let gz = self.path.with_file_name(format!("{name}.gz"));
            if !p.exists() && !gz.exists() {
                return p;
            }
            ms += 1;
        }
    }

    fn stem_ext(&self) -> (String, String) {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match name.rfind('.').filter(|&i| i > 0) {
            Some(i) => (name[..i].to_owned(), name[i..].to_owned()),
            None => (name, String::new()),
        }
    }

    /// Remove backups past the count or the age.
    fn prune(&self) {
        let (stem, ext) = self.stem_ext();
        let dir = match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(d) => d.to_owned(),
            None => PathBuf::from("."),
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let prefix = format!("{stem}-");
        // Names sort by time: the stamp is fixed-width.
        let mut backups: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let mid = n.strip_prefix(&prefix)?;
                let mid = mid.strip_suffix(".gz").unwrap_or(mid);
                let stamp = mid.strip_suffix(ext.as_str())?;
                parse_backup_time(stamp)?;
                Some((stamp.to_owned(), e.path()))
            })
            .collect();
        backups.sort();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let keep_from = if self.max_backups > 0 {
            backups.len().saturating_sub(self.max_backups)
        } else {
            0
        };
        for (i, (stamp, path)) in backups.iter().enumerate() {
            let old = self.max_age.is_some_and(|age| {
                parse_backup_time(stamp).is_some_and(|ms| now_ms - ms > age.as_millis() as i64)
            });
            if i < keep_from || old {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Gzip `path` into `path.gz` and remove it.
fn gzip(path: &Path) -> std::io::Result<()> {
    let mut gz_name = path.as_os_str().to_owned();
    gz_name.push(".gz");
    let mut input = File::open(path)?;
    let out = File::create(&gz_name)?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    std::io::copy(&mut input, &mut enc)?;
    enc.finish()?.sync_all()?;
    std::fs::remove_file(path)
}

/// `2006-01-02T15-04-05.000` of Unix milliseconds.
pub(super) fn backup_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) =
        crate::operators::calendar::civil_from_days(i128::from(secs.div_euclid(86_400)));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}.{:03}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

/// The Unix milliseconds of a backup stamp (a rough check and the age).
fn parse_backup_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 23 || b[4] != b'-' || b[10] != b'T' || b[19] != b'.' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    // Days from civil (the inverse of calendar::civil_from_days).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + se) * 1000) + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_stamps_round_trip() {
        for ms in [0, 1_700_000_000_123, 1_709_251_199_999] {
            let s = backup_time(ms);
            assert_eq!(parse_backup_time(&s), Some(ms), "{s}");
        }
        assert_eq!(backup_time(1_700_000_000_123), "2023-11-14T22-13-20.123");
        assert_eq!(parse_backup_time("2023-11-14T22-13-20"), None);
    }

    fn config(dir: &Path, size_mb: u64, backups: usize) -> LogsConfig {
        LogsConfig {
            channel: Channel::File,
            filename: dir.join("ig.log"),
            max_size_mb: size_mb,
            max_backups: backups,
            ..LogsConfig::default()
        }
    }

    #[test]
    fn rotation_keeps_every_line_whole_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Rotating::open(&config(dir.path(), 1, 2)).unwrap();
        let line = vec![b'x'; 999];
        let mut batch = Vec::new();
        for i in 0..5000u32 {
            batch.extend_from_slice(format!("{i:08} ").as_bytes());
            batch.extend_from_slice(&line);
            batch.push(b'\n');
        }
        r.write(&batch, &Governor::default()).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 3, "{files:?}");
        let mut seen = Vec::new();
        for f in &files {
            let text = std::fs::read(f).unwrap();
            assert!(text.len() as u64 <= 1024 * 1024, "{f:?}");
            assert!(text.ends_with(b"\n"));
            for l in text.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                assert_eq!(l.len(), 1008);
                seen.push(
                    std::str::from_utf8(&l[..8])
                        .unwrap()
                        .parse::<u32>()
                        .unwrap(),
                );
            }
        }
        seen.sort_unstable();
        // The newest lines, contiguous up to the last.
        assert_eq!(*seen.last().unwrap(), 4999);
        assert!(seen.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn compressed_backups() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), 1, 0);
        c.compress = true;
        let mut r = Rotating::open(&c).unwrap();
        let line = [b'y'; 1023];
        let mut batch = Vec::new();
        for _ in 0..1500 {
            batch.extend_from_slice(&line);
            batch.push(b'\n');
        }
        r.write(&batch, &Governor::default()).unwrap();
        let gz: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "gz"))
            .collect();
        assert_eq!(gz.len(), 1);
        let mut d = flate2::read::GzDecoder::new(File::open(&gz[0]).unwrap());
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut out).unwrap();
        assert_eq!(out.len(), 1024 * 1024);
    }
}
