//! Messages for people go to stderr as `error: ...`, `warning: ...`; data
//! goes to stdout, so `ig ... | jq` never sees a message. `-v` turns on
//! debug messages (ig's own), `-vv` also libraries' and trace messages.
//!
//! Color: the level word (`error`, `warning`, `hint`, `debug`) is colored
//! when stderr is a terminal, as clap colors its help and usage errors;
//! never when `NO_COLOR` is set to anything non-empty (no-color.org) or
//! `TERM=dumb`. Data on stdout is never colored: it is meant for pipes and
//! files, and tables stay aligned in every pager.
//!
//! Never waiting for the reader (`ig run`): `ig run` reads SIGINT and
//! SIGTERM from a signalfd, so a `write(2)` to a stderr pipe whose reader
//! stopped (`ig run ... 2>&1 | less`, paused) would hold ig, its programs
//! still attached, with nothing able to interrupt it. So from
//! [`never_block`] on (called as `ig run` blocks the signals) every message
//! goes through `output::sink::NonBlocking` over descriptor 2: a pipe or
//! terminal is reopened through `/proc/self/fd/2` as an open file of our
//! own with `O_NONBLOCK`, a socket is sent to with `MSG_DONTWAIT`; a file
//! is written as before. The inherited descriptor's flags are never
//! touched: its open file description is the shell's, is shared with
//! every other writer of the pipe, and after `2>&1` is also our stdout's,
//! so flipping `O_NONBLOCK` on it would change their writes too, and
//! outlive us if we were killed before restoring it. A message the reader
//! has no room for is dropped and counted, never waited for; the count is
//! written, as a warning, before the next message that gets through, and
//! at exit. A message the reader took only part of is finished before the
//! next one, so lines are never mixed. At exit ([`closing`]) messages may
//! wait for the reader, [`EXIT_GRACE`] in all: the final error and the
//! count get their chance, and a stopped reader still cannot keep ig from
//! exiting within 1 s of SIGINT. A message is one line of ours, or one
//! write of a WASM guest to its stderr ([`guest_stderr`]).

use std::io::{IsTerminal as _, Write as _};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use ig::output::sink::NonBlocking;

/// How long all the messages written at exit may wait for the reader of
/// stderr together, once ig has been writing without blocking.
const EXIT_GRACE: Duration = Duration::from_millis(200);

/// Most bytes of a message cut short kept to finish it with.
const PENDING_LIMIT: usize = 64 << 10;

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        shown(m.target(), m.level(), log::max_level())
    }
    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = match r.level() {
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warning,
            log::Level::Info => Level::Info,
            log::Level::Debug => Level::Debug,
            log::Level::Trace => Level::Trace,
        };
        line(level, &r.args().to_string());
    }
    fn flush(&self) {}
}

/// Whether a record of `target` at `level` is printed when the verbosity
/// allows up to `max`.
fn shown(target: &str, level: log::Level, max: log::LevelFilter) -> bool {
    // `-v` is about ig; libraries' debug chatter (aya's feature probes)
    // only shows with `-vv`.
    let ours = target == "ig" || target.starts_with("ig::");
    // wasmtime-wasi traces every WASI call of a guest at info, some as its
    // own records, some as `tracing` spans whose log records have the
    // target `tracing::span` (a line `info: args_sizes_get;` on every run
    // of a Go guest).
    let wasi_trace = (target.starts_with("wasmtime_wasi") || target.starts_with("tracing::span"))
        && level > log::Level::Warn;
    level <= max
        && (ours || (level <= log::Level::Info && !wasi_trace) || max == log::LevelFilter::Trace)
}

#[derive(Debug, Clone, Copy)]
enum Level {
    Error,
    Warning,
    Hint,
    Info,
    Debug,
    Trace,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Hint => "hint",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
    /// SGR parameters: bold red, bold yellow, bold cyan, green, dim.
    fn sgr(self) -> &'static str {
        match self {
            Level::Error => "1;31",
            Level::Warning => "1;33",
            Level::Hint => "1;36",
            Level::Info => "32",
            Level::Debug | Level::Trace => "2",
        }
    }
}

/// Whether stderr gets color: a terminal, `NO_COLOR` unset or empty, and
/// not `TERM=dumb`. Decided once per process.
fn color() -> bool {
    static COLOR: OnceLock<bool> = OnceLock::new();
    *COLOR.get_or_init(|| {
        wants_color(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("TERM").as_deref(),
        )
    })
}

fn wants_color(
    terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

/// `level: msg` and a newline, the level word colored when stderr gets
/// color, and `msg`'s control characters escaped (`ig::text`).
fn format_line(level: Level, msg: &str) -> String {
    // Whatever a message quotes (a tar header, a registry's answer, a
    // guest's stderr), it cannot drive the terminal.
    let msg = ig::text::escape_message(msg);
    if color() {
        format!("\x1b[{}m{}:\x1b[0m {msg}\n", level.sgr(), level.word())
    } else {
        format!("{}: {msg}\n", level.word())
    }
}

fn line(level: Level, msg: &str) {
    let _ = err_out().message(format_line(level, msg).as_bytes());
}

/// Descriptor 2 as ig writes it: see the module doc.
struct ErrOut {
    /// `None`: plain blocking writes (every command but `ig run`).
    nb: Option<NonBlocking>,
    /// The rest of a message the reader took only part of.
    pending: Vec<u8>,
    /// Messages dropped since the last one that got through.
    dropped: u64,
    /// Set at exit: until then, a message waits for room.
    deadline: Option<Instant>,
}

static ERR_OUT: Mutex<ErrOut> = Mutex::new(ErrOut::blocking());

fn err_out() -> std::sync::MutexGuard<'static, ErrOut> {
    // A panic while holding it leaves nothing half-done that matters.
    ERR_OUT.lock().unwrap_or_else(PoisonError::into_inner)
}

fn dropped_notice(n: u64) -> String {
    let what = if n == 1 {
        "message was"
    } else {
        "messages were"
    };
    format!("{n} {what} not written: the reader of stderr did not take them")
}

impl ErrOut {
    const fn blocking() -> Self {
        ErrOut {
            nb: None,
            pending: Vec::new(),
            dropped: 0,
            deadline: None,
        }
    }

    fn never_blocking(nb: NonBlocking) -> Self {
        ErrOut {
            nb: Some(nb),
            ..ErrOut::blocking()
        }
    }

    /// Writes what the reader takes of `b` now (until `deadline`, when
    /// set): the bytes written.
    fn push(nb: &NonBlocking, deadline: Option<Instant>, mut b: &[u8]) -> std::io::Result<usize> {
        let mut done = 0;
        while !b.is_empty() {
            let n = nb.write_some(b)?;
            if n == 0 {
                let left = deadline.map_or(Duration::ZERO, |d| {
                    d.saturating_duration_since(Instant::now())
                });
                if left.is_zero() {
                    break;
                }
                nb.wait_writable(i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1));
                continue;
            }
            done += n;
            b = &b[n..];
        }
        Ok(done)
    }

    /// Writes one message, whole or (without blocking) not at all; false
    /// when it was dropped.
    fn message(&mut self, msg: &[u8]) -> bool {
        let Some(nb) = &self.nb else {
            return std::io::stderr().lock().write_all(msg).is_ok();
        };
        if !self.pending.is_empty() {
            match Self::push(nb, self.deadline, &self.pending) {
                Ok(n) => drop(self.pending.drain(..n)),
                // The reader is gone: nothing will be written again.
                Err(_) => self.pending.clear(),
            }
            if !self.pending.is_empty() {
                self.dropped += 1;
                return false;
            }
        }
        let notice = if self.dropped > 0 {
            format_line(Level::Warning, &dropped_notice(self.dropped))
        } else {
            String::new()
        };
        let whole = [notice.as_bytes(), msg].concat();
        if whole.is_empty() {
            return true;
        }
        match Self::push(nb, self.deadline, &whole) {
            Ok(0) | Err(_) => {
                self.dropped += 1;
                false
            }
            Ok(n) => {
                self.dropped = 0;
                let rest = &whole[n..];
                if rest.len() > PENDING_LIMIT {
                    // Cut, but still ended as it would have been, so the
                    // next message starts on a line of its own.
                    self.pending.extend_from_slice(&rest[..PENDING_LIMIT - 1]);
                    self.pending.push(rest[rest.len() - 1]);
                } else {
                    self.pending.extend_from_slice(rest);
                }
                true
            }
        }
    }
}

/// From now on, stderr is written without ever waiting for its reader
/// (see the module doc). For `ig run`, as it blocks SIGINT and SIGTERM.
pub fn never_block() {
    let mut e = err_out();
    if e.nb.is_none() {
        *e = ErrOut::never_blocking(NonBlocking::open(libc::STDERR_FILENO));
    }
}

/// The process is about to exit: messages from now on may wait for the
/// reader, [`EXIT_GRACE`] in all.
pub fn closing() {
    let mut e = err_out();
    if e.nb.is_some() {
        e.deadline = Some(Instant::now() + EXIT_GRACE);
    }
}

/// The last thing before exit: the rest of a message cut short, and how
/// many messages were dropped, if that can still be said.
pub fn finish() {
    let mut e = err_out();
    if e.nb.is_some() {
        e.message(b"");
    }
}

/// Where a WASM guest's writes to its stderr go: to ours, each write a
/// message (dropped and counted rather than waited for, as every message
/// of `ig run`).
pub fn guest_stderr() -> ig::operators::wasm::StderrWriter {
    std::sync::Arc::new(|b: &[u8]| {
        // The guest is the image's code: its bytes do not drive the
        // terminal either.
        let text = String::from_utf8_lossy(b);
        err_out().message(ig::text::escape_message(&text).as_bytes());
    })
}

pub fn init(verbose: u8) {
    let _ = log::set_logger(&Stderr);
    log::set_max_level(match verbose {
        0 => log::LevelFilter::Info,
        1 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    });
}

pub fn error(msg: &str) {
    line(Level::Error, msg);
}

pub fn hint(msg: &str) {
    line(Level::Hint, msg);
}

/// One line of data on stdout. A closed stdout is not an error worth a
/// message (`ig image list | head -1`).
pub fn stdout_line(s: &str) {
    if let Err(e) = writeln!(std::io::stdout().lock(), "{s}") {
        stdout_failed(e);
    }
}

/// The first error writing to stdout outside `ig run` (which has its own
/// sink), reported by [`check_stdout`] when the command ends.
static STDOUT_ERROR: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Remember a failed write to stdout (the first one).
pub fn stdout_failed(e: std::io::Error) {
    let mut first = STDOUT_ERROR.lock().unwrap_or_else(PoisonError::into_inner);
    if first.is_none() {
        *first = Some(e);
    }
}

/// At the end of a command: flush stdout; a write that failed (a full
/// disk, `> /dev/full`, an I/O error) is the command's error, so its exit
/// status says the output is not all there. A reader that went away
/// (`ig image list | head -1`) is not an error: the user has what they
/// wanted, as when a tool is ended by SIGPIPE.
pub fn check_stdout() -> std::io::Result<()> {
    if let Err(e) = std::io::stdout().lock().flush() {
        stdout_failed(e);
    }
    match STDOUT_ERROR
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn libraries_traces_show_with_vv_only() {
        use log::{Level, LevelFilter};
        // (target, level, max, shown)
        let cases = [
            ("ig::run", Level::Debug, LevelFilter::Debug, true),
            ("h2::codec", Level::Debug, LevelFilter::Debug, false),
            ("h2::codec", Level::Warn, LevelFilter::Info, true),
            ("tracing::span", Level::Info, LevelFilter::Info, false),
            (
                "tracing::span::active",
                Level::Info,
                LevelFilter::Debug,
                false,
            ),
            ("tracing::span", Level::Info, LevelFilter::Trace, true),
            ("wasmtime_wasi::p1", Level::Info, LevelFilter::Info, false),
            ("wasmtime_wasi::p1", Level::Warn, LevelFilter::Info, true),
            ("ig", Level::Info, LevelFilter::Warn, false),
        ];
        for (target, level, max, want) in cases {
            assert_eq!(shown(target, level, max), want, "{target} {level} {max}");
        }
    }
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

    /// A blocking pipe, as a shell makes one: (read end, write end).
    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors we then own.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors from pipe2.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// Everything in the pipe now, without blocking.
    fn read_now(r: &OwnedFd) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            let mut p = libc::pollfd {
                fd: r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; a read into a valid buffer.
            unsafe {
                if libc::poll(&raw mut p, 1, 0) != 1 {
                    return out;
                }
                let n = libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len());
                out.extend_from_slice(&buf[..usize::try_from(n).unwrap()]);
            }
        }
    }

    fn flags(fd: &OwnedFd) -> i32 {
        // SAFETY: F_GETFL on an open descriptor.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }
    }

    #[test]
    fn messages_a_full_pipe_refuses_are_counted_and_the_count_comes_first() {
        let (r, w) = pipe();
        let before = flags(&w);
        let mut out = ErrOut::never_blocking(NonBlocking::open(w.as_raw_fd()));
        let line = [b'x'; 1000];
        let mut accepted = 0;
        while out.message(&line) {
            accepted += 1;
            assert!(accepted < 10_000, "never refused");
        }
        assert!(!out.message(&line));
        assert_eq!(out.dropped, 2);
        // Our writes never waited, and the pipe's (shared) open file
        // description did not become non-blocking.
        assert_eq!(flags(&w), before);
        assert_eq!(flags(&w) & libc::O_NONBLOCK, 0);
        assert_eq!(read_now(&r).len(), accepted * line.len());
        // The reader is back: the count, then the message.
        assert!(out.message(b"next\n"));
        let got = String::from_utf8(read_now(&r)).unwrap();
        assert!(
            got.contains("2 messages were not written: the reader of stderr did not take them\n"),
            "{got}"
        );
        assert!(got.ends_with("them\nnext\n"), "{got}");
        assert_eq!(out.dropped, 0);
    }

    #[test]
    fn a_message_taken_in_part_is_finished_before_the_next() {
        let (r, w) = pipe();
        let mut out = ErrOut::never_blocking(NonBlocking::open(w.as_raw_fd()));
        // Larger than the pipe: only part of it goes now.
        let big: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        assert!(out.message(&big));
        assert!(!out.pending.is_empty());
        let mut got = read_now(&r);
        // Refused while the rest of the first cannot go either.
        out.message(b"second\n");
        while !out.pending.is_empty() {
            got.extend(read_now(&r));
            out.message(b"");
        }
        got.extend(read_now(&r));
        assert!(out.message(b"third\n"));
        got.extend(read_now(&r));
        let text = String::from_utf8(got).unwrap();
        assert!(
            text.starts_with(std::str::from_utf8(&big).unwrap()),
            "cut or mixed"
        );
        assert!(text.ends_with("third\n"), "{}", &text[big.len()..]);
    }

    #[test]
    fn at_exit_a_message_waits_for_the_reader_but_not_for_ever() {
        let (r, w) = pipe();
        let mut out = ErrOut::never_blocking(NonBlocking::open(w.as_raw_fd()));
        // Full to the last byte.
        while out.message(&[b'x'; 1000]) {}
        while out.message(b"x") {}
        out.deadline = Some(Instant::now() + Duration::from_millis(100));
        let start = Instant::now();
        assert!(!out.message(b"nobody reads\n"));
        assert!(start.elapsed() >= Duration::from_millis(90));
        assert!(start.elapsed() < Duration::from_secs(1));
        // A reader that comes back within the deadline gets it.
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut all = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                all.extend(read_now(&r));
                std::thread::sleep(Duration::from_millis(10));
            }
            all
        });
        out.deadline = Some(Instant::now() + Duration::from_secs(1));
        assert!(out.message(b"last words\n"));
        let got = String::from_utf8(reader.join().unwrap()).unwrap();
        assert!(got.ends_with("did not take them\nlast words\n"), "{got}");
    }

    #[test]
    fn no_color_and_dumb_terminals_win() {
        assert!(wants_color(true, None, Some(OsStr::new("xterm"))));
        assert!(wants_color(true, Some(OsStr::new("")), None));
        assert!(!wants_color(true, Some(OsStr::new("1")), None));
        assert!(!wants_color(true, None, Some(OsStr::new("dumb"))));
        assert!(!wants_color(false, None, None));
    }
}
