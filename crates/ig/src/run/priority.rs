//! How the thread that reads a run's ring buffers is scheduled
//! ([`ReaderPriority`]), and applying that to the calling thread.
//!
//! Owns one system call on the run's own thread, made once before its
//! event loop starts; it does not own the loop, the other threads of the
//! process, or the workload's scheduling.
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
//! sleeps again. A real-time thread that never slept could still hold a
//! core; the kernel's real-time throttling (`kernel.sched_rt_runtime_us`,
//! 950000 of every 1000000 µs by default) bounds it, so the real-time
//! policy is only taken while that throttling is on. Priority 1 is the
//! lowest real-time priority: any other real-time task of the host comes
//! first. `SCHED_RESET_ON_FORK` keeps threads and processes started later
//! by the reader thread out of it.

use std::io;

/// How the reading thread of a run is scheduled (`ig run
/// --reader-priority`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReaderPriority {
    /// As the thread was started (the process's policy and nice value).
    #[default]
    Inherit,
    /// `SCHED_RR` at priority 1 when the kernel allows it (root or
    /// `CAP_SYS_NICE`, real-time throttling on); otherwise as `Inherit`.
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

/// Whether the kernel bounds real-time threads' CPU (`-1`: it does not).
fn rt_throttled() -> io::Result<bool> {
    let v = std::fs::read_to_string("/proc/sys/kernel/sched_rt_runtime_us")?;
    Ok(v.trim() != "-1")
}

fn set_rr() -> io::Result<()> {
    // musl's sched_param has more (unused) fields than glibc's.
    // SAFETY: sched_param is plain integers; all zeros is valid.
    let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
    param.sched_priority = 1;
    // The system call, not libc's wrapper: musl's `sched_setscheduler`
    // always fails with ENOSYS (POSIX says it applies to a process, the
    // kernel applies it to a thread), and a thread is what we mean.
    // SAFETY: tid 0 is the calling thread; `param` is a valid sched_param
    // for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0,
            libc::SCHED_RR | libc::SCHED_RESET_ON_FORK,
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
}
