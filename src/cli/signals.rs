//! SIGINT, SIGTERM and SIGHUP for `ig run`: blocked, and read by a thread
//! of their own. SIGINT and SIGTERM stop the runs through their
//! [`StopHandle`]; SIGHUP never stops anything: it calls the hangup
//! action the CLI gave (reopening the log file, `operator.logs`, as
//! `logrotate` expects), or is ignored.
//!
//! The library never touches signals: a run ends when its stop handle is
//! triggered. The CLI blocks the two signals before it loads anything (so
//! a Ctrl-C during a slow load ends the run through the same clean path,
//! after the load) and every thread it starts afterwards inherits the
//! mask; a `signalfd` on the signal thread receives them. A second
//! signal changes nothing: the first already asked every run to stop.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use ig::run::StopHandle;

/// The signal set `ig run` handles.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a stack-allocated, initialised sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGINT);
        libc::sigaddset(&raw mut set, libc::SIGTERM);
        libc::sigaddset(&raw mut set, libc::SIGHUP);
        set
    }
}

/// Block SIGINT, SIGTERM and SIGHUP on this thread; the previous mask.
fn block() -> std::io::Result<libc::sigset_t> {
    let set = stop_signals();
    // SAFETY: a valid sigset in, a zeroed one to receive the old mask.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        if libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, &raw mut old) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(old)
    }
}

fn restore(old: &libc::sigset_t) {
    // SAFETY: restores a mask `block` saved.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// Run `f` with SIGINT, SIGTERM and SIGHUP blocked on this thread, then restore
/// the mask: threads `f` spawns keep them blocked, so a Ctrl-C is never
/// delivered to them (it would kill ig mid-load instead of stopping it
/// cleanly: found by the leak test's kill at the `operators:` stage).
pub fn with_blocked<T>(f: impl FnOnce() -> T) -> T {
    let old = block().ok();
    let r = f();
    if let Some(old) = old {
        restore(&old);
    }
    r
}

/// While it lives: SIGINT, SIGTERM and SIGHUP are blocked on the thread that made
/// it (and so on the threads it starts later), and the first one stops
/// `stop`.
pub struct SignalStop {
    thread: Option<std::thread::JoinHandle<()>>,
    /// Tells the thread to end.
    quit: OwnedFd,
    old: libc::sigset_t,
    received: Arc<AtomicI32>,
}

fn eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: eventfd with flags only; the descriptor is ours.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl SignalStop {
    /// Install; SIGHUP calls `hangup` (on the signal thread).
    pub fn install_with_hangup(
        stop: StopHandle,
        hangup: Box<dyn Fn() + Send>,
    ) -> std::io::Result<Self> {
        let old = block()?;
        let set = stop_signals();
        let undo = |e| {
            restore(&old);
            e
        };
        // SAFETY: a valid sigset; the descriptor is ours.
        let sfd = unsafe { libc::signalfd(-1, &raw const set, libc::SFD_CLOEXEC) };
        if sfd < 0 {
            return Err(undo(std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor we own.
        let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
        let quit = eventfd().map_err(undo)?;
        let quit_fd = quit.try_clone().map_err(undo)?;
        let received = Arc::new(AtomicI32::new(0));
        let seen = received.clone();
        let thread = std::thread::Builder::new()
            .name("ig-signals".into())
            .spawn(move || {
                loop {
                    let mut pfds = [
                        libc::pollfd {
                            fd: sfd.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        },
                        libc::pollfd {
                            fd: quit_fd.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        },
                    ];
                    // SAFETY: a valid array of two pollfds.
                    unsafe { libc::poll(pfds.as_mut_ptr(), 2, -1) };
                    if pfds[1].revents != 0 {
                        return;
                    }
                    if pfds[0].revents != 0 {
                        // SAFETY: reading one siginfo record into a
                        // correctly sized buffer.
                        let signo = unsafe {
                            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
                            let size = std::mem::size_of::<libc::signalfd_siginfo>();
                            let n = libc::read(sfd.as_raw_fd(), (&raw mut info).cast(), size);
                            (usize::try_from(n).ok() == Some(size)).then_some(info.ssi_signo)
                        };
                        if signo == Some(libc::SIGHUP as u32) {
                            hangup();
                            continue;
                        }
                        if let Some(signo) = signo {
                            let signo = i32::try_from(signo).unwrap_or(0);
                            let _ =
                                seen.compare_exchange(0, signo, Ordering::SeqCst, Ordering::SeqCst);
                            stop.stop();
                        }
                    }
                }
            })
            .map_err(undo)?;
        Ok(Self {
            thread: Some(thread),
            quit,
            old,
            received,
        })
    }

    /// The first signal received, if any.
    pub fn received(&self) -> Option<i32> {
        Some(self.received.load(Ordering::SeqCst)).filter(|&s| s != 0)
    }
}

impl Drop for SignalStop {
    fn drop(&mut self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        unsafe { libc::write(self.quit.as_raw_fd(), (&raw const one).cast(), 8) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        restore(&self.old);
    }
}
