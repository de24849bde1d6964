//! A periodic timer the event loop can wait on: a `timerfd` for the
//! sources of operators that report at intervals (process, cgroup, eBPF
//! statistics), and [`Schedule`], their reports counted as upstream counts
//! them. Not an operator; a helper they share.
//!
//! The first expiry comes after `first` (when not zero), the next ones
//! every `interval` after it, as upstream's operators schedule an early
//! report and then a ticker. The descriptor is readable when a period has
//! ended, which wakes `runner`'s `poll` at the right moment instead of on
//! its flush timer.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Ticker {
    fd: OwnedFd,
    /// When the next expiry is due, on the same clock as the timer
    /// (`Instant` is `CLOCK_MONOTONIC`): before that, [`Ticker::due`]
    /// answers without a system call.
    next: Instant,
    interval: Duration,
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        // Not `libc::time_t` by name: deprecated on musl (its width is to
        // change), which the shipped binary is built for.
        tv_sec: d.as_secs().try_into().unwrap_or(i32::MAX.into()),
        tv_nsec: libc::c_long::from(d.subsec_nanos()),
    }
}

impl Ticker {
    /// Arm a timer: first expiry after `first` (or `interval` when `first`
    /// is zero), then every `interval` (at least a millisecond).
    pub fn start(first: Duration, interval: Duration) -> std::io::Result<Self> {
        let interval = interval.max(Duration::from_millis(1));
        let first = if first.is_zero() { interval } else { first };
        // SAFETY: plain syscall; the fd is owned below.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let spec = libc::itimerspec {
            it_interval: timespec(interval),
            it_value: timespec(first),
        };
        let now = Instant::now();
        // SAFETY: valid fd and itimerspec.
        if unsafe {
            libc::timerfd_settime(fd.as_raw_fd(), 0, &raw const spec, std::ptr::null_mut())
        } != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            next: now + first,
            interval,
        })
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Whether a period ended since the last call (several ended periods
    /// count as one: a report late by more than a period is not repeated).
    pub fn due(&mut self) -> bool {
        if Instant::now() < self.next {
            return false;
        }
        let mut n = 0u64;
        // SAFETY: reading the 8-byte expiry count into a u64 we own.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut n).cast(), 8) };
        if r != 8 || n == 0 {
            return false;
        }
        let periods = u32::try_from(n).unwrap_or(u32::MAX);
        self.next += self.interval.saturating_mul(periods);
        true
    }
}

/// When an operator reports: an early report after `first` (when not
/// zero; upstream does not count it), then one every `interval`, `count`
/// times (0: until the run ends).
#[derive(Debug)]
pub struct Schedule {
    first: Duration,
    interval: Duration,
    count: u64,
    ticker: Option<Ticker>,
    early_done: bool,
    reports: u64,
}

impl Schedule {
    pub fn new(first: Duration, interval: Duration, count: u64) -> Self {
        Self {
            first,
            interval,
            count,
            ticker: None,
            early_done: first.is_zero(),
            reports: 0,
        }
    }

    /// Arm the timer (at the operator's start).
    pub fn start(&mut self) -> std::io::Result<()> {
        self.ticker = Some(Ticker::start(self.first, self.interval)?);
        Ok(())
    }

    /// Disarm it (at the operator's stop).
    pub fn stop(&mut self) {
        self.ticker = None;
    }

    /// The descriptor to poll, while armed.
    pub fn fds(&self) -> Vec<RawFd> {
        self.ticker.iter().map(Ticker::fd).collect()
    }

    /// Whether a report is due now (and count it).
    pub fn due(&mut self) -> bool {
        if self.finished() || !self.ticker.as_mut().is_some_and(Ticker::due) {
            return false;
        }
        if self.early_done {
            self.reports += 1;
        } else {
            self.early_done = true;
        }
        true
    }

    /// Whether every report asked for was made.
    pub fn finished(&self) -> bool {
        self.count > 0 && self.reports >= self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_then_every_interval() {
        let start = Instant::now();
        let mut t = Ticker::start(Duration::from_millis(20), Duration::from_millis(60)).unwrap();
        assert!(!t.due());
        let wait = |t: &mut Ticker| {
            let mut p = libc::pollfd {
                fd: t.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            assert_eq!(unsafe { libc::poll(&raw mut p, 1, 2000) }, 1);
            assert!(t.due());
            start.elapsed()
        };
        let a = wait(&mut t);
        assert!(a >= Duration::from_millis(20), "{a:?}");
        assert!(!t.due(), "consumed");
        let b = wait(&mut t);
        assert!(b >= Duration::from_millis(80), "{b:?}");
    }

    #[test]
    fn the_early_report_is_not_counted() {
        let mut s = Schedule::new(Duration::from_millis(5), Duration::from_millis(10), 2);
        assert!(s.fds().is_empty());
        s.start().unwrap();
        let mut reports = 0;
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while !s.finished() {
            assert!(std::time::Instant::now() < end);
            reports += usize::from(s.due());
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(reports, 3);
        assert!(!s.due(), "nothing after the count");
        s.stop();
        assert!(s.fds().is_empty());
    }
}
