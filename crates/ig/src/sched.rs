//! How the thread that reads a run's ring buffers is scheduled
//! ([`ReaderPriority`]), applying that to the calling thread, and keeping
//! it only while it pays ([`Governor`]). A leaf module: the run, its event
//! loop (`runner`) and the log writer (`operators::logs`) use it; it uses
//! nothing of the crate.
//!
//! Owns the scheduling system calls on the run's own thread: one before
//! its event loop starts, and the [`Governor`]'s while it runs. It does not
//! own the loop, the other threads of the process, or the workload's
//! scheduling.
//!
//! Why: under a storm that keeps every core busy (`open:-k2` in the peer
//! benchmark: two threads opening files on two cores), the reader is one
//! more runnable thread at the same priority as the storm. It waits for a
//! core while the kernel fills the ring buffer, and when the ring is full
//! the kernel drops events (counted and reported). The reader needs a
//! fraction of a core (0.3-0.4 there); it needs it *when* the ring fills.
//! Measured with `bench/run-peer.sh` (docs/design/003-hot-path.md): with
//! the reader at `SCHED_RR` priority 1, 0 events lost in 3 of 3 runs at
//! `open:-k2`; at the workload's priority, losses in 3 of 3 (0.5-22%).
//!
//! Why that does not starve the host: the reader sleeps in `poll(2)`
//! unless there is data; it drains what is there (about a million events
//! per second per core, several times what a core of workload makes) and
//! sleeps again. A reader that cannot keep up would not sleep: the
//! [`Governor`] takes real-time away from it while that lasts (real-time
//! was the default once without it, and a storm test holding one of two
//! cores made the tests next to it miss their time bounds). Past that, the
//! kernel's real-time throttling (`kernel.sched_rt_runtime_us`, 950000 of
//! every 1000000 µs by default) bounds any real-time thread, so the policy
//! is only taken while that throttling is on. Priority 1 is the lowest
//! real-time priority: any other real-time task of the host comes first,
//! and a reader started real-time (`chrt`) keeps what it was given.
//! `SCHED_RESET_ON_FORK` keeps threads and processes started later by the
//! reader thread out of it.

use std::cell::Cell;
use std::io;
use std::time::{Duration, Instant};

/// How the reading thread of a run is scheduled (`ig run
/// --reader-priority`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReaderPriority {
    /// As the thread was started (the process's policy and nice value).
    /// The library's default: an embedding program's threads stay as it
    /// made them unless it asks (`ig run` asks for `Realtime`).
    #[default]
    Inherit,
    /// `SCHED_RR` at priority 1 when the kernel allows it (root or
    /// `CAP_SYS_NICE`, real-time throttling on) and the thread is not
    /// real-time already; otherwise as `Inherit`. With a [`Governor`]
    /// ticking, only while the reader keeps up.
    Realtime,
}

/// What [`ReaderPriority::apply`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Nothing was asked.
    Inherited,
    /// The thread now runs `SCHED_RR` at priority 1.
    Realtime,
    /// Real-time was asked but not taken, and why.
    Declined(String),
}

impl ReaderPriority {
    /// Apply to the calling thread.
    pub fn apply(self) -> Applied {
        match self {
            Self::Inherit => Applied::Inherited,
            // Started real-time (`chrt`): that choice stands.
            Self::Realtime if already_realtime() => Applied::Inherited,
            Self::Realtime => match rt_throttled() {
                Ok(true) => match set_rr() {
                    Ok(()) => Applied::Realtime,
                    Err(e) => Applied::Declined(format!("sched_setscheduler(SCHED_RR): {e}")),
                },
                Ok(false) => Applied::Declined(
                    "real-time throttling is off (kernel.sched_rt_runtime_us = -1)".into(),
                ),
                Err(e) => Applied::Declined(format!("reading kernel.sched_rt_runtime_us: {e}")),
            },
        }
    }
}

/// Whether the calling thread already has a real-time policy.
fn already_realtime() -> bool {
    // The system call: musl's wrapper always fails (see `set_policy`).
    // SAFETY: a plain query of the calling thread's policy.
    let p = unsafe { libc::syscall(libc::SYS_sched_getscheduler, 0) };
    let p = i32::try_from(p).unwrap_or(-1) & !libc::SCHED_RESET_ON_FORK;
    p == libc::SCHED_FIFO || p == libc::SCHED_RR
}

/// Whether the kernel bounds real-time threads' CPU (`-1`: it does not).
fn rt_throttled() -> io::Result<bool> {
    let v = std::fs::read_to_string("/proc/sys/kernel/sched_rt_runtime_us")?;
    Ok(v.trim() != "-1")
}

/// A reader that used at least this share of a core over
/// [`SATURATED_FOR`] is not keeping up: real-time priority no longer buys
/// it latency, only the cores of everything else.
const SATURATED_SHARE: f64 = 0.8;
/// How long the reader must stay saturated before it gives real-time up.
const SATURATED_FOR: Duration = Duration::from_millis(250);
/// How long a reader that gave real-time up runs at the inherited policy
/// before it tries real-time again.
const COOL_DOWN: Duration = Duration::from_secs(1);

/// Keeps a real-time reader real-time only while it keeps up.
///
/// Real-time priority is for latency: a reader that sleeps between
/// batches gets a core the moment it is woken, before the ring fills. A
/// reader that cannot keep up even with a core to itself (a storm larger
/// than it can read, or an output slower than the storm) would, at
/// real-time priority, hold that core for as long as the storm lasts (up to
/// the kernel's 95% throttling), and every other thread of the host shares
/// what is left: on a 2-core host, a stop that needs the kernel's own
/// threads (detaching a uprobe) took over a second. Events are lost either
/// way then; the other work of the host should not be. So the event loop
/// calls [`Governor::tick`] on its timer: once the reader has used more
/// than [`SATURATED_SHARE`] of a core for [`SATURATED_FOR`], it goes back
/// to the policy it started with for [`COOL_DOWN`], then tries real-time
/// again. One `clock_gettime` per tick, one system call per change.
#[derive(Debug, Default)]
pub struct Governor {
    state: Cell<GovernorState>,
}

#[derive(Clone, Copy, Debug, Default)]
struct GovernorState {
    /// Real-time was taken: there is something to govern.
    active: bool,
    /// Given up until then.
    demoted_until: Option<Instant>,
    /// The last tick: when, and the thread's CPU time then.
    last: Option<(Instant, Duration)>,
    /// How long the reader has been saturated without a break.
    hot: Duration,
}

impl Governor {
    /// A governor for a thread on which [`ReaderPriority::apply`] returned
    /// `applied`: it does nothing unless real-time was taken.
    pub fn for_applied(applied: &Applied) -> Self {
        Self {
            state: Cell::new(GovernorState {
                active: *applied == Applied::Realtime,
                ..GovernorState::default()
            }),
        }
    }

    /// Whether the thread is at real-time priority now (as far as the
    /// governor knows).
    pub fn is_realtime(&self) -> bool {
        let s = self.state.get();
        s.active && s.demoted_until.is_none()
    }

    /// Called on the reader thread at each tick of its event loop.
    pub fn tick(&self, now: Instant) {
        let mut s = self.state.get();
        if !s.active {
            return;
        }
        let Ok(cpu) = thread_cpu_time() else {
            return;
        };
        if let Some(until) = s.demoted_until {
            if now >= until {
                match set_rr() {
                    Ok(()) => {
                        log::debug!("reader thread: SCHED_RR priority 1 again");
                        s.demoted_until = None;
                    }
                    // Not allowed any more: stay as we are.
                    Err(_) => s.active = false,
                }
                s.hot = Duration::ZERO;
            }
        } else if let Some((at, was)) = s.last {
            let wall = now.saturating_duration_since(at);
            let used = cpu.saturating_sub(was);
            if !wall.is_zero() && used.as_secs_f64() >= SATURATED_SHARE * wall.as_secs_f64() {
                s.hot += wall;
            } else {
                s.hot = Duration::ZERO;
            }
            if s.hot >= SATURATED_FOR && set_other().is_ok() {
                log::debug!(
                    "reader thread: saturated for {:?}, inherited priority for {COOL_DOWN:?}",
                    s.hot
                );
                s.demoted_until = Some(now + COOL_DOWN);
                s.hot = Duration::ZERO;
            }
        }
        s.last = Some((now, cpu));
        self.state.set(s);
    }
}

impl Governor {
    /// Run `f` at the inherited policy: work that may take long and has no
    /// deadline (compressing a rotated log file) is not done real-time.
    pub fn relaxed<T>(&self, f: impl FnOnce() -> T) -> T {
        if !self.is_realtime() || set_other().is_err() {
            return f();
        }
        let r = f();
        if set_rr().is_err() {
            let mut s = self.state.get();
            s.active = false;
            self.state.set(s);
        }
        r
    }
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> io::Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    ))
}

/// Back to the normal policy, nice value unchanged.
fn set_other() -> io::Result<()> {
    set_policy(libc::SCHED_OTHER, 0)
}

fn set_rr() -> io::Result<()> {
    set_policy(libc::SCHED_RR, 1)
}

fn set_policy(policy: i32, priority: i32) -> io::Result<()> {
    // musl's sched_param has more (unused) fields than glibc's.
    // SAFETY: sched_param is plain integers; all zeros is valid.
    let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
    param.sched_priority = priority;
    // The system call, not libc's wrapper: musl's `sched_setscheduler`
    // always fails with ENOSYS (POSIX says it applies to a process, the
    // kernel applies it to a thread), and a thread is what we mean.
    // SAFETY: tid 0 is the calling thread; `param` is a valid sched_param
    // for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0,
            policy | libc::SCHED_RESET_ON_FORK,
            &raw const param,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root (the tests run as root), the realtime policy is taken on a
    /// thread of its own, and only there; the default leaves it alone.
    #[test]
    fn realtime_applies_to_the_calling_thread_only() {
        assert_eq!(ReaderPriority::default().apply(), Applied::Inherited);
        // SAFETY: plain queries of the calling thread's policy.
        let main_before = unsafe { libc::sched_getscheduler(0) };
        let (applied, policy) = std::thread::spawn(|| {
            let a = ReaderPriority::Realtime.apply();
            // SAFETY: as above.
            (a, unsafe { libc::sched_getscheduler(0) })
        })
        .join()
        .unwrap();
        if rt_throttled().unwrap() {
            assert_eq!(applied, Applied::Realtime);
            assert_eq!(policy & !libc::SCHED_RESET_ON_FORK, libc::SCHED_RR);
        } else {
            assert!(matches!(applied, Applied::Declined(_)), "{applied:?}");
        }
        // SAFETY: as above.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, main_before);
    }

    fn policy() -> i32 {
        // SAFETY: a plain query of the calling thread's policy.
        unsafe { libc::sched_getscheduler(0) & !libc::SCHED_RESET_ON_FORK }
    }

    /// A real-time reader that uses the whole core gives real-time up
    /// after SATURATED_FOR and takes it again after COOL_DOWN; one that
    /// sleeps between batches keeps it; compressing runs at the normal
    /// policy. Fails if the governor never demotes (the check after the
    /// spin) or never comes back (the check after the cool-down).
    #[test]
    fn a_saturated_reader_gives_real_time_up_for_a_while() {
        if !rt_throttled().unwrap() {
            panic!("kernel.sched_rt_runtime_us is -1 on this test machine");
        }
        std::thread::spawn(|| {
            let applied = ReaderPriority::Realtime.apply();
            assert_eq!(applied, Applied::Realtime);
            let gov = Governor::for_applied(&applied);
            assert_eq!(policy(), libc::SCHED_RR);
            gov.relaxed(|| assert_eq!(policy(), libc::SCHED_OTHER));
            assert_eq!(policy(), libc::SCHED_RR);

            // Mostly asleep: stays real-time.
            gov.tick(Instant::now());
            for _ in 0..8 {
                std::thread::sleep(Duration::from_millis(50));
                gov.tick(Instant::now());
            }
            assert_eq!(policy(), libc::SCHED_RR);

            // Busy on every tick: demoted once saturated long enough.
            let start = Instant::now();
            while gov.is_realtime() && start.elapsed() < Duration::from_secs(3) {
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(50) {
                    std::hint::spin_loop();
                }
                gov.tick(Instant::now());
            }
            assert_eq!(policy(), libc::SCHED_OTHER);
            assert!(start.elapsed() >= SATURATED_FOR, "{:?}", start.elapsed());
            gov.relaxed(|| assert_eq!(policy(), libc::SCHED_OTHER));

            // And real-time again after the cool-down.
            std::thread::sleep(COOL_DOWN + Duration::from_millis(100));
            gov.tick(Instant::now());
            assert_eq!(policy(), libc::SCHED_RR);
            assert!(gov.is_realtime());
        })
        .join()
        .unwrap();
    }

    /// A thread started real-time keeps its own policy and priority.
    #[test]
    fn a_real_time_start_is_left_alone() {
        std::thread::spawn(|| {
            set_policy(libc::SCHED_FIFO, 5).unwrap();
            assert_eq!(ReaderPriority::Realtime.apply(), Applied::Inherited);
            assert_eq!(policy(), libc::SCHED_FIFO);
        })
        .join()
        .unwrap();
    }
}
