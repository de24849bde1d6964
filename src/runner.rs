//! The event loop of `ig run`: wait on the sources' file descriptors, a
//! timer and the termination signals; drain, tick and flush the pipeline.
//!
//! This is the effectful half of the pipeline (the pure half is
//! `pipeline/`). SIGINT and SIGTERM are blocked and read through a
//! `signalfd`, so a signal never interrupts a half-processed event and the
//! shutdown path is the normal one: drain what is pending, report losses,
//! flush, stop operators in reverse order.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::pipeline::{HandlerError, Notice, OperatorError, Pipeline};

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
    mut notice: impl FnMut(Notice),
) -> Result<StopReason, RunError> {
    let start = Instant::now();
    let deadline = opts.timeout.map(|t| start + t);
    let interval = opts.flush_interval.max(Duration::from_millis(1));
    let mut next_tick = start;
    let mut fds: Vec<RawFd> = vec![signals.fd.as_raw_fd()];
    {
        let (sources, _) = p.parts();
        for s in sources {
            fds.extend(s.fds());
        }
    }
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();

    let reason = loop {
        let now = Instant::now();
        if now >= next_tick {
            match tick(p, &mut notice)? {
                Some(r) => break r,
                None => next_tick = now + interval,
            }
        }
        if deadline.is_some_and(|d| now >= d) {
            break StopReason::Timeout;
        }
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
        if drain(p)? {
            break StopReason::Finished;
        }
    };
    // Whatever is pending in the kernel still belongs to the run.
    if reason != StopReason::OutputClosed {
        drain(p)?;
        let (sources, dispatch) = p.parts();
        for s in sources {
            s.finish(dispatch)?;
        }
        if let Some(StopReason::OutputClosed) = tick(p, &mut notice)? {
            p.stop()?;
            return Ok(StopReason::OutputClosed);
        }
    }
    p.stop()?;
    Ok(reason)
}

/// Drain every source; true when all of them are finished.
fn drain(p: &mut Pipeline) -> Result<bool, RunError> {
    let (sources, dispatch) = p.parts();
    let mut all_finished = true;
    let mut any = false;
    for s in sources {
        any = true;
        if !s.finished() {
            s.drain(dispatch)?;
        }
        all_finished &= s.finished();
    }
    Ok(any && all_finished)
}

/// Housekeeping: loss counters, then flush. `Some` when the run must end.
fn tick(p: &mut Pipeline, notice: &mut impl FnMut(Notice)) -> Result<Option<StopReason>, RunError> {
    let (sources, dispatch) = p.parts();
    for s in sources {
        for n in s.tick(dispatch)? {
            notice(n);
        }
    }
    match p.dispatch.flush() {
        Ok(()) => Ok(None),
        Err(HandlerError::Closed) => Ok(Some(StopReason::OutputClosed)),
        Err(HandlerError::Io(e)) => Err(RunError::Output(e)),
    }
}
