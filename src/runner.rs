//! The event loop of `ig run`: wait on the sources' file descriptors, a
//! timer and the termination signals; drain, tick and flush the pipeline.
//!
//! This is the effectful half of the pipeline (the pure half is
//! `pipeline/`). SIGINT and SIGTERM are blocked and read through a
//! `signalfd`, so a signal never interrupts a half-processed event and the
//! shutdown path is the normal one: drain what is pending, report losses,
//! flush, stop operators in reverse order.
//!
//! Floods and slow readers: the loop never blocks anywhere but in `poll`.
//! Output goes to a non-blocking stdout with a bounded backlog
//! (`output::sink`); while the reader has not taken the backlog, the ring
//! buffers are not read, so the kernel drops (and counts) instead of ig
//! growing, and a signal is still seen at once. At the end the backlog
//! gets [`OUTPUT_GRACE`] after a signal; after `--timeout` it waits as long
//! as the reader keeps reading (a stopped one gets [`OUTPUT_STALL`]); a
//! finished snapshot waits for its reader like any filter. What is left is
//! dropped with a warning. Loss reports are summed
//! per source and handed on at most once per [`LOSS_REPORT_INTERVAL`]
//! while loss goes on, and once more at the end.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::output::sink::{self, OutputHandle};
use crate::pipeline::{HandlerError, Notice, OperatorError, Pipeline};

/// How often loss is reported while it goes on.
pub const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// After a signal, how long the remaining output may take to leave before
/// it is given up (the user asked to stop, and 1 s is the promise).
const OUTPUT_GRACE: Duration = Duration::from_millis(300);

/// After `--timeout` (or a finished snapshot with one), how long the reader
/// may take nothing before the rest of the output is given up. A slow
/// reader that keeps reading gets everything (`--timeout 4 | jq` on a busy
/// machine); a stopped one cannot hold ig for more than this.
const OUTPUT_STALL: Duration = Duration::from_secs(1);

/// How long [`deliver_backlog`] waits for the reader.
#[derive(Clone, Copy, Debug)]
enum Patience {
    /// Until the backlog is written, however long it takes.
    Forever,
    /// Until this moment at the latest.
    Until(Instant),
    /// Until this moment at least, then as long as the reader takes some of
    /// it every [`OUTPUT_STALL`].
    WhileReadingAfter(Instant),
}

/// How long the final drain may take when the kernel keeps producing.
const FINAL_DRAIN_LIMIT: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("setting up signal handling")]
    Signals(#[source] std::io::Error),
    #[error("waiting for events")]
    Poll(#[source] std::io::Error),
    #[error(transparent)]
    Operator(#[from] OperatorError),
    #[error("writing output")]
    Output(#[source] std::io::Error),
}

/// Why a run ended; all of these are a normal exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Signal(i32),
    Timeout,
    /// Every source said it is done (snapshots).
    Finished,
    /// The reader of our output went away (`| head`).
    OutputClosed,
}

pub struct RunOptions {
    pub timeout: Option<Duration>,
    /// How often buffered output is flushed and loss counters are read; also
    /// the longest an event can wait in a ring buffer when wakeups are
    /// batched.
    pub flush_interval: Duration,
    /// The non-blocking stdout the printers write to, if any: polled for
    /// room while it has a backlog (see the module doc).
    pub output: Option<OutputHandle>,
}

/// SIGINT and SIGTERM, blocked for this thread and readable from a
/// `signalfd`. Block them before loading anything, so that a Ctrl-C during
/// a slow load ends the run through the same clean path.
pub struct Signals {
    fd: OwnedFd,
    old: libc::sigset_t,
}

impl Signals {
    pub fn block() -> Result<Self, RunError> {
        // SAFETY: plain libc calls on stack-allocated, initialised sigsets.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut set);
            libc::sigaddset(&raw mut set, libc::SIGINT);
            libc::sigaddset(&raw mut set, libc::SIGTERM);
            if libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, &raw mut old) != 0 {
                return Err(RunError::Signals(std::io::Error::last_os_error()));
            }
            let fd = libc::signalfd(-1, &raw const set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                let e = std::io::Error::last_os_error();
                libc::pthread_sigmask(libc::SIG_SETMASK, &raw const old, std::ptr::null_mut());
                return Err(RunError::Signals(e));
            }
            Ok(Self {
                fd: OwnedFd::from_raw_fd(fd),
                old,
            })
        }
    }

    /// The signal received, if any (non-blocking).
    fn take(&self) -> Option<i32> {
        // SAFETY: reading one siginfo record into a correctly sized buffer.
        unsafe {
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            let n = libc::read(self.fd.as_raw_fd(), (&raw mut info).cast(), size);
            #[expect(clippy::cast_possible_wrap, reason = "signal numbers are small")]
            (usize::try_from(n).ok() == Some(size)).then_some(info.ssi_signo as i32)
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `block`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &raw const self.old, std::ptr::null_mut());
        }
    }
}

/// Run a started pipeline until a signal, the timeout, the end of every
/// source or the end of the output; then drain, report and stop it.
/// `notice` receives loss reports as they happen.
pub fn run(
    p: &mut Pipeline,
    signals: &Signals,
    opts: &RunOptions,
    notice: impl FnMut(Notice),
) -> Result<StopReason, RunError> {
    let mut losses = LossReports::new(notice);
    let deadline = opts.timeout.map(|t| Instant::now() + t);
    let reason = run_loop(p, signals, opts, deadline, &mut losses);
    // Whatever was counted is reported, also when the run failed.
    losses.report_all();
    let reason = reason?;
    if let Some(out) = &opts.output
        && reason != StopReason::OutputClosed
    {
        let patience = match reason {
            StopReason::Signal(_) => Patience::Until(Instant::now() + OUTPUT_GRACE),
            StopReason::Timeout => Patience::WhileReadingAfter(Instant::now()),
            // A finished snapshot waits for its reader like any filter
            // (`| less` reads a screen at a time); with --timeout, until
            // then, and after it while the reader reads.
            StopReason::Finished | StopReason::OutputClosed => match deadline {
                Some(d) => Patience::WhileReadingAfter(d),
                None => Patience::Forever,
            },
        };
        deliver_backlog(out, signals, patience);
    }
    Ok(reason)
}

fn run_loop<F: FnMut(Notice)>(
    p: &mut Pipeline,
    signals: &Signals,
    opts: &RunOptions,
    deadline: Option<Instant>,
    losses: &mut LossReports<F>,
) -> Result<StopReason, RunError> {
    let start = Instant::now();
    let interval = opts.flush_interval.max(Duration::from_millis(1));
    let mut next_tick = start;
    let mut fds: Vec<RawFd> = vec![signals.fd.as_raw_fd()];
    {
        let (sources, _) = p.parts();
        for s in sources {
            fds.extend(s.fds());
        }
    }
    let mut pollfds = poll_in(&fds);
    // Last slot: stdout, polled for room only while it has a backlog.
    let out_fd = opts.output.as_ref().and_then(OutputHandle::poll_fd);
    pollfds.push(libc::pollfd {
        fd: -1,
        events: libc::POLLOUT,
        revents: 0,
    });

    let reason = loop {
        let now = Instant::now();
        if now >= next_tick {
            match tick(p, losses)? {
                Some(r) => break r,
                None => next_tick = now + interval,
            }
        }
        if deadline.is_some_and(|d| now >= d) {
            break StopReason::Timeout;
        }
        // A reader that is behind: stop reading the ring buffers (a
        // negative fd is ignored by poll) and wait for room instead.
        let backlogged = opts.output.as_ref().is_some_and(|o| o.backlog() > 0);
        let n = pollfds.len();
        for (pfd, &fd) in pollfds[1..n - 1].iter_mut().zip(&fds[1..]) {
            pfd.fd = if backlogged { -1 } else { fd };
        }
        pollfds[n - 1].fd = if backlogged { out_fd.unwrap_or(-1) } else { -1 };
        let wake = deadline.map_or(next_tick, |d| d.min(next_tick));
        let wait = wake.saturating_duration_since(Instant::now());
        let ms = i32::try_from(wait.as_millis().max(1)).unwrap_or(i32::MAX);
        // SAFETY: pollfds is a valid array of its length.
        let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(RunError::Poll(e));
            }
        }
        if let Some(sig) = signals.take() {
            break StopReason::Signal(sig);
        }
        if backlogged {
            if let Some(out) = &opts.output {
                match out.push_out() {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        break StopReason::OutputClosed;
                    }
                    Err(e) => return Err(RunError::Output(e)),
                }
            }
            continue;
        }
        if drain(p)? {
            break StopReason::Finished;
        }
    };
    {
        let (sources, _) = p.parts();
        for s in sources {
            s.stopping();
        }
    }
    // Whatever is pending in the kernel still belongs to the run: drain
    // until the ring buffers are empty, but not for ever in a storm.
    if reason != StopReason::OutputClosed {
        let end = Instant::now() + FINAL_DRAIN_LIMIT;
        loop {
            drain(p)?;
            if Instant::now() >= end || !any_readable(&fds[1..]) {
                break;
            }
        }
        let (sources, dispatch) = p.parts();
        for s in sources {
            s.finish(dispatch)?;
        }
        if let Some(StopReason::OutputClosed) = tick(p, losses)? {
            p.stop()?;
            return Ok(StopReason::OutputClosed);
        }
    }
    p.stop()?;
    Ok(reason)
}

/// Wait until the reader has taken the backlog, the reader is gone, or
/// `patience` runs out, so that a stopped reader cannot hold ig for ever
/// after a signal or `--timeout`. A signal while waiting limits the wait to
/// [`OUTPUT_GRACE`] from then. What is given up is dropped with a warning
/// that counts it.
fn deliver_backlog(out: &OutputHandle, signals: &Signals, mut patience: Patience) {
    let Some(fd) = out.poll_fd() else {
        return;
    };
    let mut last_progress = Instant::now();
    let mut backlog = out.backlog();
    loop {
        if out.push_out().is_err() || out.backlog() == 0 {
            return;
        }
        let now = Instant::now();
        if out.backlog() < backlog {
            backlog = out.backlog();
            last_progress = now;
        }
        let give_up = match patience {
            Patience::Forever => None,
            Patience::Until(t) => Some(t),
            Patience::WhileReadingAfter(t) => Some(t.max(last_progress + OUTPUT_STALL)),
        };
        if give_up.is_some_and(|t| now >= t) {
            log::warn!(
                "{} bytes of output not written: the reader did not take them",
                out.backlog()
            );
            return;
        }
        let ms = give_up.map_or(-1, |t| {
            i32::try_from(t.saturating_duration_since(now).as_millis().max(1)).unwrap_or(1)
        });
        let mut pfds = [
            libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            },
            libc::pollfd {
                fd: signals.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: a valid array of two pollfds.
        unsafe { libc::poll(pfds.as_mut_ptr(), 2, ms) };
        if signals.take().is_some() && !matches!(patience, Patience::Until(_)) {
            patience = Patience::Until(Instant::now() + OUTPUT_GRACE);
        }
    }
}

/// Loss counts per source, passed on at most once per
/// [`LOSS_REPORT_INTERVAL`] each, so a storm gives a steady line a second
/// rather than one per tick.
struct LossReports<F: FnMut(Notice)> {
    notice: F,
    /// (kind, source, count not yet reported, when last reported)
    pending: Vec<(LossKind, String, u64, Option<Instant>)>,
    dropped_output: (u64, Option<Instant>),
}

/// Which per-source notice a pending count becomes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LossKind {
    Kernel,
    Guest,
}

impl<F: FnMut(Notice)> LossReports<F> {
    fn new(notice: F) -> Self {
        Self {
            notice,
            pending: Vec::new(),
            dropped_output: (0, None),
        }
    }

    fn due(last: Option<Instant>, now: Instant) -> bool {
        last.is_none_or(|t| now.duration_since(t) >= LOSS_REPORT_INTERVAL)
    }

    fn add(&mut self, n: Notice) {
        let now = Instant::now();
        let (kind, source, count) = match n {
            Notice::Lost { source, count } => (LossKind::Kernel, source, count),
            Notice::GuestRefused { module, count } => (LossKind::Guest, module, count),
            Notice::OutputDropped { count } => {
                self.dropped_output.0 += count;
                self.report(now, false);
                return;
            }
        };
        let i = match self
            .pending
            .iter()
            .position(|(k, s, ..)| *k == kind && *s == source)
        {
            Some(i) => i,
            None => {
                self.pending.push((kind, source, 0, None));
                self.pending.len() - 1
            }
        };
        self.pending[i].2 += count;
        self.report(now, false);
    }

    fn report(&mut self, now: Instant, all: bool) {
        for (kind, source, count, last) in &mut self.pending {
            if *count > 0 && (all || Self::due(*last, now)) {
                let (source, count) = (source.clone(), std::mem::take(count));
                (self.notice)(match kind {
                    LossKind::Kernel => Notice::Lost { source, count },
                    LossKind::Guest => Notice::GuestRefused {
                        module: source,
                        count,
                    },
                });
                *last = Some(now);
            }
        }
        let (count, last) = &mut self.dropped_output;
        if *count > 0 && (all || Self::due(*last, now)) {
            (self.notice)(Notice::OutputDropped {
                count: std::mem::take(count),
            });
            *last = Some(now);
        }
    }

    fn report_all(&mut self) {
        self.report(Instant::now(), true);
    }
}

/// A `poll(2)` entry waiting for input on each of `fds`.
fn poll_in(fds: &[RawFd]) -> Vec<libc::pollfd> {
    fds.iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect()
}

/// Whether any of `fds` has data now (a ring buffer is readable while
/// samples are pending, whatever its wake-up threshold).
fn any_readable(fds: &[RawFd]) -> bool {
    let mut pfds = poll_in(fds);
    // SAFETY: pfds is a valid array of its length.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 0) };
    rc > 0 && pfds.iter().any(|p| p.revents & libc::POLLIN != 0)
}

/// Drain every source; true when all of them are finished.
fn drain(p: &mut Pipeline) -> Result<bool, RunError> {
    let (sources, dispatch) = p.parts();
    let mut all_finished = true;
    let mut any = false;
    for s in sources {
        any = true;
        if !s.finished() || s.always_drain() {
            s.drain(dispatch)?;
        }
        all_finished &= s.finished();
    }
    Ok(any && all_finished)
}

/// Housekeeping: loss counters, then flush. `Some` when the run must end.
fn tick<F: FnMut(Notice)>(
    p: &mut Pipeline,
    losses: &mut LossReports<F>,
) -> Result<Option<StopReason>, RunError> {
    let (sources, dispatch) = p.parts();
    for s in sources {
        for n in s.tick(dispatch)? {
            losses.add(n);
        }
    }
    let flushed = p.dispatch.flush();
    let dropped = sink::take_dropped_records();
    if dropped > 0 {
        losses.add(Notice::OutputDropped { count: dropped });
    } else {
        losses.report(Instant::now(), false);
    }
    match flushed {
        Ok(()) => Ok(None),
        Err(HandlerError::Closed) => Ok(Some(StopReason::OutputClosed)),
        Err(HandlerError::Io(e)) => Err(RunError::Output(e)),
    }
}
