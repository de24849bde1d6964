//! The buffered, shared destination of the printers, and `ig run`'s
//! stdout ([`stdout`]), which never blocks the event loop.
//!
//! Per run: the [`SharedWriter`] its printers share and its count of
//! records dropped ([`DroppedRecords`]), both owned by the run (nothing
//! thread-local or process-wide). [`Stdout`] may be shared by several runs
//! on several threads (`ig run -f`): each printer hands it whole chunks of
//! whole records, written under its lock, so lines of different runs never
//! mix.
//!
//! Why stdout is special: a reader that stops reading (`ig run | sleep
//! 100`, a paused pager, a stalled peer of a socket) would block a plain
//! `write(2)` forever, and with the termination signals read from a
//! `signalfd` nothing would interrupt it: Ctrl-C would do nothing. So where
//! stdout can block, [`stdout`] writes without blocking: a pipe or a
//! terminal is reopened as a separate non-blocking open file (through
//! `/proc/self/fd/1`, so the shell's own file description keeps its
//! flags); a socket, which cannot be reopened that way, is written with
//! `send(MSG_DONTWAIT)`, non-blocking per call without touching the
//! shared description's flags. What the reader has not taken yet waits in
//! a backlog of at most [`BACKLOG_LIMIT`] bytes. The runner waits for the reader with
//! `poll` next to the signalfd and stops reading ring buffers while the
//! backlog is not empty, so a slow reader turns into counted kernel-side
//! drops, not into memory. Output that would overflow the backlog is
//! dropped whole records at a time and counted ([`DroppedRecords`]).
//!
//! The descriptor side of that ([`NonBlocking`]: reopen or
//! `MSG_DONTWAIT`, one `write(2)` that says "full" instead of waiting) is
//! also what the CLI's stderr logger writes through while `ig run` runs.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::pipeline::HandlerError;

/// The writer all printers of one run share (stdout in the CLI, a `Vec` in
/// tests), with the run's count of records dropped because the writer had
/// no room. A run is single-threaded, hence `Rc<RefCell<_>>`.
#[derive(Clone)]
pub struct SharedWriter {
    target: Target,
    dropped: DroppedRecords,
}

#[derive(Clone)]
enum Target {
    Plain {
        out: Rc<RefCell<Box<dyn Write>>>,
        /// The label of the last chunk written ([`Label`]; 0: none).
        last: Rc<Cell<u64>>,
    },
    Stdout(Stdout),
}

/// A writer for the printers of one run.
pub fn shared(w: impl Write + 'static) -> SharedWriter {
    SharedWriter {
        target: Target::Plain {
            out: Rc::new(RefCell::new(Box::new(w))),
            last: Rc::new(Cell::new(0)),
        },
        dropped: DroppedRecords::default(),
    }
}

/// The printers of one run writing to `stdout`, which other runs may
/// share: each chunk is written whole under its lock.
pub fn shared_stdout(stdout: Stdout) -> SharedWriter {
    SharedWriter {
        target: Target::Stdout(stdout),
        dropped: DroppedRecords::default(),
    }
}

impl SharedWriter {
    /// The count of records the printers writing here dropped because the
    /// writer had no room (a [`Stdout`] whose reader is behind).
    pub fn dropped(&self) -> DroppedRecords {
        self.dropped.clone()
    }

    /// Write one chunk of whole records; with `label`, its header first
    /// when the chunk before it on the stream had another label.
    fn write_chunk(&self, label: Option<&Label>, chunk: &[u8]) -> io::Result<()> {
        match &self.target {
            Target::Plain { out, last } => {
                let mut w = out.borrow_mut();
                if let Some(l) = label
                    && last.get() != l.id
                {
                    w.write_all(&l.header)?;
                }
                last.set(label.map_or(0, |l| l.id));
                w.write_all(chunk).and_then(|()| w.flush())
            }
            Target::Stdout(s) => s.write_chunk(label, chunk),
        }
    }
}

/// The header of a printer whose chunks share a stream with other
/// printers' (`ig run -f`, tables): written before a chunk whenever the
/// chunk before it came from another printer, so every block of rows sits
/// under its own header.
pub(crate) struct Label {
    id: u64,
    header: Vec<u8>,
}

impl Label {
    pub(crate) fn new(header: Vec<u8>) -> Self {
        // A process-wide counter only hands out distinct ids: no state a
        // run could trip on.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            header,
        }
    }
}

/// Records a run's printers dropped since the last [`DroppedRecords::take`]
/// (see the module doc). One per [`SharedWriter`]; read by the runner.
#[derive(Clone, Default)]
pub struct DroppedRecords(Rc<Cell<u64>>);

impl DroppedRecords {
    /// The count since the last call, and reset it.
    pub fn take(&self) -> u64 {
        self.0.replace(0)
    }

    /// Count `n` more.
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get() + n);
    }
}

/// Bytes held back before they are handed to the writer. Large enough that a
/// storm costs one `write(2)` per several hundred events.
const CHUNK: usize = 128 * 1024;

/// A printer's own buffer in front of the shared writer. It remembers a
/// write failure so that `on_event`, which cannot fail, stops producing and
/// the next `flush` reports it.
pub(crate) struct Sink {
    buf: Vec<u8>,
    /// Records in `buf`, counted as dropped if the writer refuses it.
    records: u64,
    out: SharedWriter,
    failed: Option<io::ErrorKind>,
    label: Option<Label>,
}

impl Sink {
    pub(crate) fn new(out: SharedWriter) -> Self {
        Self {
            buf: Vec::with_capacity(CHUNK + 4096),
            records: 0,
            out,
            failed: None,
            label: None,
        }
    }

    /// Precede chunks with `label`'s header where the stream changes
    /// printer.
    pub(crate) fn set_label(&mut self, label: Label) {
        self.label = Some(label);
    }

    /// The buffer to format the next record into, or `None` once the reader
    /// is gone.
    pub(crate) fn buf(&mut self) -> Option<&mut Vec<u8>> {
        if self.failed.is_some() {
            None
        } else {
            Some(&mut self.buf)
        }
    }

    /// Call after a record was appended: writes out when the buffer is full.
    pub(crate) fn record_done(&mut self) {
        self.records += 1;
        if self.buf.len() >= CHUNK {
            let _ = self.write_out();
        }
    }

    fn write_out(&mut self) -> Result<(), HandlerError> {
        if let Some(kind) = self.failed {
            return Err(to_handler_error(io::Error::from(kind)));
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let res = self.out.write_chunk(self.label.as_ref(), &self.buf);
        self.buf.clear();
        let records = std::mem::take(&mut self.records);
        match res {
            // The reader is behind and the backlog is full: these records
            // are lost, counted, and the run goes on.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.out.dropped.add(records);
                Ok(())
            }
            Err(e) => {
                self.failed = Some(e.kind());
                Err(to_handler_error(e))
            }
            Ok(()) => Ok(()),
        }
    }

    pub(crate) fn flush(&mut self) -> Result<(), HandlerError> {
        self.write_out()
    }
}

fn to_handler_error(e: io::Error) -> HandlerError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        HandlerError::Closed
    } else {
        HandlerError::Io(e)
    }
}

/// Most bytes held for a reader that does not keep up. Beyond it, output
/// is dropped (and counted) instead of growing ig's memory.
pub const BACKLOG_LIMIT: usize = 4 << 20;

/// What the clones of one [`Stdout`] share.
struct OutState {
    /// The label of the last chunk written ([`Label`]; 0: none).
    last: u64,
    fd: NonBlocking,
    /// Bytes accepted but not yet taken by the reader: `pending[start..]`.
    pending: Vec<u8>,
    start: usize,
}

/// One of our standard descriptors (1 or 2), written without ever waiting
/// for a reader that stopped, where it can stall. Neither way touches the
/// flags of the descriptor we inherited: its open file description is
/// shared with the shell and, after `2>&1`, between our stdout and our
/// stderr, so setting `O_NONBLOCK` on it would change how every other
/// writer of that pipe behaves, and outlive us.
pub struct NonBlocking {
    fd: Fd,
}

enum Fd {
    /// Our own non-blocking open file of the descriptor.
    Own(OwnedFd),
    /// A socket, written with `send(MSG_DONTWAIT)`: as non-blocking as
    /// [`Fd::Own`].
    Socket(RawFd),
    /// The descriptor itself, blocking (a regular file, a block device),
    /// where a write cannot stall forever, or a pipe or terminal that
    /// could not be reopened.
    Inherited(RawFd),
}

impl NonBlocking {
    /// Writes to `fd` (1 or 2, open for the whole process) that never
    /// wait where the reader can stall: a pipe or terminal is reopened
    /// non-blocking through `/proc/self/fd`, a socket is sent to with
    /// `MSG_DONTWAIT`, anything else is written as it is.
    pub fn open(fd: RawFd) -> Self {
        let fd = match fd_kind(fd) {
            Some(libc::S_IFSOCK) => Fd::Socket(fd),
            // The kinds a reader can stall: reopen them non-blocking.
            Some(libc::S_IFIFO | libc::S_IFCHR) => {
                reopen_nonblocking(fd).map_or(Fd::Inherited(fd), Fd::Own)
            }
            _ => Fd::Inherited(fd),
        };
        NonBlocking { fd }
    }

    /// The descriptor written to.
    pub fn raw(&self) -> RawFd {
        match &self.fd {
            Fd::Own(fd) => fd.as_raw_fd(),
            Fd::Socket(fd) | Fd::Inherited(fd) => *fd,
        }
    }

    /// Whether writes return at once when the reader is full (false: a
    /// file, written blocking, or a descriptor that could not be
    /// reopened).
    pub fn never_blocks(&self) -> bool {
        matches!(self.fd, Fd::Own(_) | Fd::Socket(_))
    }

    /// One `write(2)`: `Ok(0)` when the reader is full (EAGAIN).
    pub fn write_some(&self, b: &[u8]) -> io::Result<usize> {
        loop {
            let n = if let Fd::Socket(fd) = self.fd {
                // SAFETY: sends from a valid slice on a descriptor open for
                // the whole run. MSG_NOSIGNAL: a gone peer is EPIPE, as
                // for a pipe with SIGPIPE ignored.
                unsafe {
                    libc::send(
                        fd,
                        b.as_ptr().cast(),
                        b.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                }
            } else {
                // SAFETY: writes from a valid slice to a descriptor we hold
                // open.
                unsafe { libc::write(self.raw(), b.as_ptr().cast(), b.len()) }
            };
            if let Ok(n) = usize::try_from(n) {
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    /// Wait at most `ms` milliseconds (-1: no limit) for room.
    pub fn wait_writable(&self, ms: i32) {
        wait_writable(self.raw(), ms);
    }
}

impl OutState {
    fn raw(&self) -> RawFd {
        self.fd.raw()
    }

    fn backlog(&self) -> usize {
        self.pending.len() - self.start
    }

    fn write_some(&self, b: &[u8]) -> io::Result<usize> {
        self.fd.write_some(b)
    }

    /// Hand the reader as much of the backlog as it takes now.
    fn push_out(&mut self) -> io::Result<()> {
        while self.backlog() > 0 {
            let n = self.write_some(&self.pending[self.start..])?;
            if n == 0 {
                break;
            }
            self.start += n;
        }
        if self.backlog() == 0 {
            self.pending.clear();
            self.start = 0;
        } else if self.start > self.pending.len() / 2 {
            self.pending.drain(..self.start);
            self.start = 0;
        }
        Ok(())
    }

    /// Write `parts` one after the other, accepted or refused together.
    fn write_all(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        if !self.fd.never_blocks() {
            for part in parts {
                let mut rest = *part;
                while !rest.is_empty() {
                    let n = self.write_some(rest)?;
                    if n == 0 {
                        // A non-blocking descriptor we did not open: wait
                        // for it rather than spin.
                        wait_writable(self.raw(), -1);
                    }
                    rest = &rest[n..];
                }
            }
            return Ok(());
        }
        self.push_out()?;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if self.backlog() + len > BACKLOG_LIMIT {
            // Refused whole: a record is never cut in two.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        for part in parts {
            let n = if self.backlog() == 0 {
                self.write_some(part)?
            } else {
                0
            };
            self.pending.extend_from_slice(&part[n..]);
        }
        Ok(())
    }
}

fn wait_writable(fd: RawFd, ms: i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&raw mut p, 1, ms) };
}

/// `ig run`'s stdout: see the module doc. Accepts a write whole or refuses
/// it whole with `WouldBlock` when the backlog would pass
/// [`BACKLOG_LIMIT`]. A handle: clones share one backlog, from any thread;
/// the runner polls it ([`Stdout::poll_fd`], [`Stdout::backlog`],
/// [`Stdout::push_out`]).
#[derive(Clone)]
pub struct Stdout(Arc<Mutex<OutState>>);

/// Open stdout for `ig run`.
pub fn stdout() -> Stdout {
    Stdout(Arc::new(Mutex::new(OutState {
        last: 0,
        fd: NonBlocking::open(libc::STDOUT_FILENO),
        pending: Vec::new(),
        start: 0,
    })))
}

/// The file type bits (`S_IFMT`) of descriptor `fd`.
fn fd_kind(fd: RawFd) -> Option<libc::mode_t> {
    // SAFETY: fstat into a zeroed stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &raw mut st) } != 0 {
        return None;
    }
    Some(st.st_mode & libc::S_IFMT)
}

/// A non-blocking open file of what descriptor `fd` is (a pipe or a
/// terminal), if it can be reopened.
fn reopen_nonblocking(fd: RawFd) -> Option<OwnedFd> {
    let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).ok()?;
    // SAFETY: opening a NUL-terminated path; O_NOCTTY so a terminal never
    // becomes our controlling one.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    // SAFETY: a descriptor we just opened and own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.state();
        s.write_all(&[buf])?;
        s.last = 0;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.state().push_out()
    }
}

impl Stdout {
    fn state(&self) -> MutexGuard<'_, OutState> {
        // A panic while holding it leaves at worst a backlog half pushed.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One chunk (with `label`'s header first when the stream's last chunk
    /// had another label), accepted or refused whole, then what the reader
    /// takes of the backlog now.
    fn write_chunk(&self, label: Option<&Label>, chunk: &[u8]) -> io::Result<()> {
        let mut s = self.state();
        let id = label.map_or(0, |l| l.id);
        match label {
            Some(l) if s.last != l.id => s.write_all(&[&l.header, chunk])?,
            _ => s.write_all(&[chunk])?,
        }
        s.last = id;
        s.push_out()
    }

    /// The descriptor to poll for `POLLOUT` while there is a backlog;
    /// `None` for a blocking stdout (a file), which never has one.
    pub fn poll_fd(&self) -> Option<RawFd> {
        let s = self.state();
        s.fd.never_blocks().then(|| s.raw())
    }

    /// Bytes the reader has not taken yet.
    pub fn backlog(&self) -> usize {
        self.state().backlog()
    }

    /// Write what the reader takes now, without waiting.
    pub fn push_out(&self) -> io::Result<()> {
        self.state().push_out()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_fd(fd: Fd) -> (Stdout, Stdout) {
        let out = Stdout(Arc::new(Mutex::new(OutState {
            last: 0,
            fd: NonBlocking { fd },
            pending: Vec::new(),
            start: 0,
        })));
        (out.clone(), out)
    }

    /// A pipe: (our non-blocking writer over its write end, its read end).
    fn pipe() -> (Stdout, Stdout, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors we then own.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        assert_eq!(rc, 0);
        // SAFETY: fresh descriptors from pipe2.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let (out, handle) = with_fd(Fd::Own(w));
        (out, handle, r)
    }

    /// A connected pair of stream sockets: (our writer over one end, the
    /// other end). Our end stays blocking, as a socket inherited as stdout
    /// would be; the peer, the test's reader, does not block.
    fn socketpair() -> (Stdout, Stdout, OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair fills two descriptors we then own.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: fresh descriptors from socketpair.
        let (ours, peer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETFL on a descriptor we own.
        assert_eq!(
            unsafe { libc::fcntl(peer.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) },
            0
        );
        let (out, handle) = with_fd(Fd::Socket(ours.as_raw_fd()));
        (out, handle, ours, peer)
    }

    /// Write 100 KiB chunks until the writer refuses one: the bytes
    /// accepted and the refusal.
    fn fill_until_refused(out: &mut Stdout) -> (usize, io::Error) {
        let chunk = vec![b'x'; 100 * 1024];
        let mut accepted = 0;
        loop {
            match out.write(&chunk) {
                Ok(n) => accepted += n,
                Err(e) => return (accepted, e),
            }
            assert!(accepted < 64 << 20, "never refused");
        }
    }

    /// Let the reader `r` take the whole backlog; the bytes it read.
    fn deliver(handle: &Stdout, r: &OwnedFd) -> usize {
        let mut got = 0;
        while handle.backlog() > 0 {
            got += read_all(r);
            handle.push_out().unwrap();
        }
        got + read_all(r)
    }

    #[test]
    fn a_socket_peer_that_stops_reading_never_blocks_us() {
        let (mut out, handle, ours, peer) = socketpair();
        // The inherited socket is blocking: only MSG_DONTWAIT keeps us going.
        // SAFETY: F_GETFL on an open descriptor.
        let flags = unsafe { libc::fcntl(ours.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        assert_eq!(handle.poll_fd(), Some(ours.as_raw_fd()));
        let (accepted, refused) = fill_until_refused(&mut out);
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
        assert!(handle.backlog() <= BACKLOG_LIMIT);
        // The peer comes back: everything accepted arrives.
        assert_eq!(deliver(&handle, &peer), accepted);
        // A peer that is gone: a broken pipe, not SIGPIPE.
        drop(peer);
        let e = out.write(b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    /// Read what is there now (the reader does not block).
    fn read_all(r: &OwnedFd) -> usize {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            // SAFETY: reading into a valid buffer from an open descriptor.
            let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match usize::try_from(n) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    }

    #[test]
    fn a_reader_that_stops_never_blocks_us_and_the_backlog_is_bounded() {
        let (mut out, handle, r) = pipe();
        let (accepted, refused) = fill_until_refused(&mut out);
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
        assert!(handle.backlog() <= BACKLOG_LIMIT);
        assert!(handle.backlog() > BACKLOG_LIMIT - 100 * 1024);
        // The reader comes back: everything accepted arrives.
        assert_eq!(deliver(&handle, &r), accepted);
    }

    #[test]
    fn records_refused_by_a_full_backlog_are_counted_not_fatal() {
        let (out, handle, r) = pipe();
        let out = shared(out);
        let dropped = out.dropped();
        let mut sink = Sink::new(out);
        let record = [b'y'; 1000];
        let mut written = 0u64;
        while handle.backlog() < BACKLOG_LIMIT - CHUNK {
            sink.buf().unwrap().extend_from_slice(&record);
            sink.record_done();
            written += 1;
        }
        assert_eq!(dropped.take(), 0, "nothing dropped below the limit");
        for _ in 0..(2 * CHUNK / record.len()) {
            sink.buf().unwrap().extend_from_slice(&record);
            sink.record_done();
            written += 1;
        }
        sink.flush().unwrap();
        let dropped = dropped.take();
        assert!(dropped > 0, "the overflow was counted");
        assert!(sink.buf().is_some(), "the sink still works");
        let mut got = 0;
        while handle.backlog() > 0 {
            got += read_all(&r);
            handle.push_out().unwrap();
        }
        got += read_all(&r);
        assert_eq!(got as u64, (written - dropped) * record.len() as u64);
    }

    /// Runs on several threads share one stdout (`ig run -f`): each chunk
    /// arrives whole, and a labeled chunk after another printer's gets its
    /// header first.
    #[test]
    fn printers_of_several_threads_share_stdout_chunk_by_chunk() {
        let (out, handle, r) = pipe();
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let out = out.clone();
                std::thread::spawn(move || {
                    let mut sink = Sink::new(shared_stdout(out));
                    sink.set_label(Label::new(format!("H{t}\n").into_bytes()));
                    for i in 0..200u32 {
                        let line = format!("{t} {i:05} {}\n", "x".repeat(50));
                        sink.buf().unwrap().extend_from_slice(line.as_bytes());
                        sink.record_done();
                        if i % 7 == 0 {
                            sink.flush().unwrap();
                        }
                    }
                    sink.flush().unwrap();
                })
            })
            .collect();
        let mut got = Vec::new();
        while threads.iter().any(|t| !t.is_finished()) || handle.backlog() > 0 {
            let mut buf = vec![0u8; 1 << 16];
            // SAFETY: reading into a valid buffer from an open descriptor.
            let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if let Ok(n) = usize::try_from(n) {
                got.extend_from_slice(&buf[..n]);
            }
            handle.push_out().unwrap();
        }
        for t in threads {
            t.join().unwrap();
        }
        let mut buf = vec![0u8; 1 << 16];
        loop {
            // SAFETY: as above.
            let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match usize::try_from(n) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let text = String::from_utf8(got).unwrap();
        let mut current = None;
        let mut counts = [0u32; 4];
        for line in text.lines() {
            if let Some(h) = line.strip_prefix('H') {
                current = Some(h.parse::<usize>().unwrap());
                continue;
            }
            let t: usize = line[..1].parse().unwrap();
            assert_eq!(
                current,
                Some(t),
                "a row under another printer's header: {line}"
            );
            assert_eq!(line.len(), 2 + 5 + 1 + 50, "a cut or mixed line: {line}");
            counts[t] += 1;
        }
        assert_eq!(counts, [200; 4]);
    }

    #[test]
    fn a_closed_reader_is_a_broken_pipe() {
        let (mut out, _handle, r) = pipe();
        drop(r);
        let e = out.write(b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }
}

/// A `Write` whose bytes a test reads after the printer is done.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) Rc<RefCell<Vec<u8>>>);

#[cfg(test)]
impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
