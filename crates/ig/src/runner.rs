//! The event loop of a run: wait on the sources' file descriptors, a
//! timer and the run's [`StopHandle`]; drain, tick and flush the pipeline.
//!
//! This is the effectful half of the pipeline (the pure half is
//! `pipeline/`). A run ends when its [`StopHandle`] is triggered (from any
//! thread: the CLI's signal thread, a daemon's client going away, an
//! embedder), at its timeout, when every source is finished or when its
//! output is gone. Stopping is never an interruption: the loop sees the
//! handle's eventfd become readable, and the shutdown path is the normal
//! one: drain what is pending, report losses, flush, stop operators in
//! reverse order. Nothing here touches signals or other process-wide
//! state, so several runs can share a process, one thread each.
//!
//! Floods and slow readers: the loop never blocks anywhere but in `poll`.
//! Output goes to a non-blocking stdout with a bounded backlog
//! (`output::sink`); while the reader has not taken the backlog, the ring
//! buffers are not read, so the kernel drops (and counts) instead of ig
//! growing, and a stop is still seen at once. At the end the backlog
//! gets [`OUTPUT_GRACE`] after a stop; after the timeout it waits as long
//! as the reader keeps reading (a stopped one gets [`OUTPUT_STALL`]); a
//! finished snapshot waits for its reader like any filter. What is left is
//! dropped with a warning. Loss reports are summed
//! per source and handed on at most once per [`LOSS_REPORT_INTERVAL`]
//! while loss goes on, and once more at the end.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::output::sink::{DroppedRecords, Stdout};
use crate::pipeline::{HandlerError, Notice, OperatorError, Pipeline};

/// How often loss is reported while it goes on.
pub const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// After a stop, how long the remaining output may take to leave before
/// it is given up (the user asked to stop, and 1 s is the promise).
const OUTPUT_GRACE: Duration = Duration::from_millis(300);

/// After the timeout (or a finished snapshot with one), how long the reader
/// may take nothing before the rest of the output is given up. A slow
/// reader that keeps reading gets everything (`--timeout 4 | jq` on a busy
/// machine); a stopped one cannot hold ig for more than this. Five
/// seconds, not one: on a loaded host (CI at a load of 12 on 2 cores) a
/// `jq` reading as fast as it could went a second without being
/// scheduled, and the output it then got ended mid-record.
const OUTPUT_STALL: Duration = Duration::from_secs(5);

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

/// Why the event loop failed.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// `poll(2)` failed.
    #[error("waiting for events")]
    Poll(#[source] std::io::Error),
    /// An operator failed while running or stopping.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// The output could not be written (other than its reader going away).
    #[error("writing output")]
    Output(#[source] std::io::Error),
}

/// Why a run ended; all of these are a normal end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Its [`StopHandle`] was triggered.
    Stopped,
    /// Its timeout passed.
    Timeout,
    /// Every source said it is done (snapshots).
    Finished,
    /// The reader of its output went away (`| head`), or the receiver of
    /// its events was dropped.
    OutputClosed,
}

/// How a run's loop behaves.
#[derive(Default)]
pub struct RunOptions {
    /// End the run this long after the loop starts.
    pub timeout: Option<Duration>,
    /// How often buffered output is flushed and loss counters are read; also
    /// the longest an event can wait in a ring buffer when wakeups are
    /// batched.
    pub flush_interval: Duration,
    /// The non-blocking stdout the printers write to, if any: polled for
    /// room while it has a backlog (see the module doc).
    pub output: Option<Stdout>,
    /// Records the printers dropped because the output had no room,
    /// reported as [`Notice::OutputDropped`].
    pub output_dropped: Option<DroppedRecords>,
    /// Events a consumer of the run could not take (a full channel),
    /// reported as [`Notice::ConsumerLagged`].
    pub consumer_lagged: Option<DroppedRecords>,
    /// The reader thread's real-time priority, ticked with the loop (an
    /// inactive one when the thread is not real-time).
    pub reader: crate::sched::Governor,
}

/// Ends a run (or several: clones share one state) from any thread.
///
/// `Clone + Send + Sync`. [`StopHandle::stop`] is an atomic store and one
/// `write(2)` to an eventfd, so it may be called from a signal handler,
/// async code or a thread that must not block. The eventfd is a latch: it
/// is never read, so it stays readable once stopped, and every loop
/// polling it (every run sharing the handle) wakes.
#[derive(Clone, Debug)]
pub struct StopHandle(Arc<StopState>);

#[derive(Debug)]
struct StopState {
    fd: OwnedFd,
    stopped: AtomicBool,
}

impl StopHandle {
    /// A handle not yet triggered.
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: eventfd with flags only; the descriptor is ours.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self(Arc::new(StopState {
            // SAFETY: a fresh descriptor we own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            stopped: AtomicBool::new(false),
        })))
    }

    /// End the runs using this handle (idempotent). Async-signal-safe.
    pub fn stop(&self) {
        if !self.0.stopped.swap(true, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid u64 to our eventfd. It
            // cannot fail short of a counter overflow, which one write
            // never reaches.
            unsafe { libc::write(self.0.fd.as_raw_fd(), (&raw const one).cast(), 8) };
        }
    }

    /// Whether [`StopHandle::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    /// The eventfd that becomes readable on stop, for `poll(2)`.
    pub fn fd(&self) -> RawFd {
        self.0.fd.as_raw_fd()
    }
}

/// Run a started pipeline until `stop`, the timeout, the end of every
/// source or the end of the output; then drain, report and stop it.
/// `notice` receives loss reports as they happen.
pub fn run(
    p: &mut Pipeline,
    stop: &StopHandle,
    opts: &RunOptions,
    notice: impl FnMut(Notice),
) -> Result<StopReason, LoopError> {
    let mut losses = LossReports::new(notice);
    let deadline = opts.timeout.map(|t| Instant::now() + t);
    let reason = run_loop(p, stop, opts, deadline, &mut losses);
    // Whatever was counted is reported, also when the run failed.
    losses.report_all();
    let reason = reason?;
    if let Some(out) = &opts.output
        && reason != StopReason::OutputClosed
    {
        let patience = match reason {
            StopReason::Stopped => Patience::Until(Instant::now() + OUTPUT_GRACE),
            StopReason::Timeout => Patience::WhileReadingAfter(Instant::now()),
            // A finished snapshot waits for its reader like any filter
            // (`| less` reads a screen at a time); with --timeout, until
            // then, and after it while the reader reads.
            StopReason::Finished | StopReason::OutputClosed => match deadline {
                Some(d) => Patience::WhileReadingAfter(d),
                None => Patience::Forever,
            },
        };
        deliver_backlog(out, stop, patience);
    }
    Ok(reason)
}

fn run_loop<F: FnMut(Notice)>(
    p: &mut Pipeline,
    stop: &StopHandle,
    opts: &RunOptions,
    deadline: Option<Instant>,
    losses: &mut LossReports<F>,
) -> Result<StopReason, LoopError> {
    let start = Instant::now();
    let interval = opts.flush_interval.max(Duration::from_millis(1));
    let mut next_tick = start;
    let mut fds: Vec<RawFd> = vec![stop.fd()];
    {
        let (sources, _) = p.parts();
        for s in sources {
            fds.extend(s.fds());
        }
    }
    let mut pollfds = poll_in(&fds);
    // Last slot: stdout, polled for room only while it has a backlog.
    let out_fd = opts.output.as_ref().and_then(Stdout::poll_fd);
    pollfds.push(libc::pollfd {
        fd: -1,
        events: libc::POLLOUT,
        revents: 0,
    });

    let reason = loop {
        let now = Instant::now();
        if now >= next_tick {
            match tick(p, opts, losses)? {
                Some(r) => break r,
                None => next_tick = now + interval,
            }
        }
        if deadline.is_some_and(|d| now >= d) {
            break StopReason::Timeout;
        }
        // Stopped before the loop began (during the start): no wait.
        if stop.is_stopped() {
            break StopReason::Stopped;
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
                return Err(LoopError::Poll(e));
            }
        }
        if stop.is_stopped() {
            break StopReason::Stopped;
        }
        if backlogged {
            if let Some(out) = &opts.output {
                match out.push_out() {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        break StopReason::OutputClosed;
                    }
                    Err(e) => return Err(LoopError::Output(e)),
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
        if let Some(StopReason::OutputClosed) = tick(p, opts, losses)? {
            p.stop()?;
            return Ok(StopReason::OutputClosed);
        }
    }
    p.stop()?;
    Ok(reason)
}

/// Wait until the reader has taken the backlog, the reader is gone, or
/// `patience` runs out, so that a stopped reader cannot hold ig for ever
/// after a stop or the timeout. A stop while waiting limits the wait to
/// [`OUTPUT_GRACE`] from then. What is given up is dropped with a warning
/// that counts it.
fn deliver_backlog(out: &Stdout, stop: &StopHandle, mut patience: Patience) {
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
                fd: stop.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // A stop that ended the run (or came since) is a latch: stop
        // polling it, or it would turn the wait into a spin.
        let n = if stop.is_stopped() { 1 } else { 2 };
        // SAFETY: a valid array of at least `n` pollfds.
        unsafe { libc::poll(pfds.as_mut_ptr(), n, ms) };
        if stop.is_stopped() && !matches!(patience, Patience::Until(_)) {
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
    lagged_consumer: (u64, Option<Instant>),
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
            lagged_consumer: (0, None),
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
            Notice::ConsumerLagged { count } => {
                self.lagged_consumer.0 += count;
                self.report(now, false);
                return;
            }
            // Not a count: passed on as it comes.
            w @ Notice::Warning(_) => {
                (self.notice)(w);
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
        let (count, last) = &mut self.lagged_consumer;
        if *count > 0 && (all || Self::due(*last, now)) {
            (self.notice)(Notice::ConsumerLagged {
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
fn drain(p: &mut Pipeline) -> Result<bool, LoopError> {
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
    opts: &RunOptions,
    losses: &mut LossReports<F>,
) -> Result<Option<StopReason>, LoopError> {
    opts.reader.tick(Instant::now());
    let (sources, dispatch) = p.parts();
    for s in sources {
        for n in s.tick(dispatch)? {
            losses.add(n);
        }
    }
    let flushed = p.dispatch.flush();
    let dropped = opts.output_dropped.as_ref().map_or(0, DroppedRecords::take);
    let lagged = opts
        .consumer_lagged
        .as_ref()
        .map_or(0, DroppedRecords::take);
    if dropped > 0 {
        losses.add(Notice::OutputDropped { count: dropped });
    }
    if lagged > 0 {
        losses.add(Notice::ConsumerLagged { count: lagged });
    }
    if dropped == 0 && lagged == 0 {
        losses.report(Instant::now(), false);
    }
    match flushed {
        Ok(()) => Ok(None),
        Err(HandlerError::Closed) => Ok(Some(StopReason::OutputClosed)),
        Err(HandlerError::Io(e)) => Err(LoopError::Output(e)),
    }
}
