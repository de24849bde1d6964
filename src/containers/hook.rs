//! Holding a container runtime until a new container is known, so that not
//! even its first events are lost (`docs/design/` "holding the runtime").
//!
//! Every runc-based runtime (containerd's and docker's shims, cri-o,
//! podman) runs `runc create` and then `runc start`: between the two the
//! container's init exists, with its final mount namespace, but waits for
//! the start before it runs the container's program. A fanotify mark
//! `FAN_OPEN_EXEC_PERM` on the runc binaries makes the kernel ask us
//! before each exec of runc. This thread holds every such exec until the
//! owner has scanned again and put whatever container is new into the
//! table and the kernel filter ([`Hook::pending`], [`Hook::done`]), then
//! allows it. At the `start` exec, the created container is found
//! (runc's `state.json` and its cgroup exist) and selected before a single
//! instruction of its program ran.
//!
//! Upstream reads runc's arguments (a kprobe) to hold only `create`'s
//! pid-file read; kernels without kprobes (`CONFIG_KPROBES` off) cannot,
//! and this way needs no eBPF at all: each runc exec costs one scan.
//!
//! Bounded: each held exec goes on [`HOLD_LIMIT`] after it arrived, with a
//! warning, whatever the owner does (its event loop may be stuck behind a
//! stopped reader); execs that arrive meanwhile are held alongside, each
//! with its own deadline, not queued behind it. If
//! `ig` dies, the kernel closes the fanotify fd and allows every pending
//! exec. A stopped (`SIGSTOP`) `ig` holds the runtime until it continues
//! or dies: the kernel has no timeout for permission events.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::HostRoot;

/// The longest a runtime is held.
pub const HOLD_LIMIT: Duration = Duration::from_secs(2);

/// Where runtimes install runc and crun (upstream's list, and Debian's).
/// `RUNTIME_PATH` adds one (upstream's variable).
pub const RUNTIME_PATHS: &[&str] = &[
    "/bin/runc",
    "/usr/bin/runc",
    "/usr/sbin/runc",
    "/usr/local/bin/runc",
    "/usr/local/sbin/runc",
    "/usr/lib/cri-o-runc/sbin/runc",
    "/run/torcx/unpack/docker/bin/runc",
    "/usr/bin/crun",
    "/usr/local/bin/crun",
];

/// Why the runtime hook cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// `fanotify_init` failed (permission events need CAP_SYS_ADMIN and
    /// CONFIG_FANOTIFY_ACCESS_PERMISSIONS).
    #[error(
        "fanotify_init (permission events need CAP_SYS_ADMIN and CONFIG_FANOTIFY_ACCESS_PERMISSIONS)"
    )]
    Init(#[source] std::io::Error),
    /// No container runtime binary was found.
    #[error("no container runtime binary found (looked for {0})")]
    NoRuntime(String),
    /// Setting up the hook failed.
    #[error("setting up the hook")]
    Setup(#[source] std::io::Error),
}

#[derive(Default)]
struct Counters {
    requested: u64,
    done: u64,
    /// Held execs that ran out of time.
    timeouts: u64,
}

/// The hold thread and its hand-over with the owner.
pub struct Hook {
    counters: Arc<Mutex<Counters>>,
    /// Written by the thread for each held batch; the owner polls it.
    wake: Arc<OwnedFd>,
    /// Written by the owner when it answered ([`Hook::done`]).
    answer: Arc<OwnedFd>,
    /// Written by drop: the thread allows what it holds and ends.
    stop: Arc<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
    marked: Vec<PathBuf>,
}

fn eventfd() -> Result<OwnedFd, HookError> {
    // SAFETY: a plain syscall; the fd is owned right after.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(HookError::Setup(std::io::Error::last_os_error()));
    }
    // SAFETY: a new fd of ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writing 8 bytes from a valid u64.
    unsafe { libc::write(fd, (&raw const one).cast(), 8) };
}

/// Read (and so reset) an eventfd; true if it had been written.
fn consume(fd: RawFd) -> bool {
    let mut v: u64 = 0;
    // SAFETY: reading 8 bytes into a valid u64.
    unsafe { libc::read(fd, (&raw mut v).cast(), 8) == 8 }
}

impl Hook {
    /// Mark the runtime binaries found under `host` and start the thread.
    pub fn start(host: &HostRoot, limit: Duration) -> Result<Self, HookError> {
        // SAFETY: plain syscall; the fd is owned right after.
        let fan = unsafe {
            libc::fanotify_init(
                libc::FAN_CLOEXEC | libc::FAN_CLASS_CONTENT | libc::FAN_NONBLOCK,
                (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32,
            )
        };
        if fan < 0 {
            return Err(HookError::Init(std::io::Error::last_os_error()));
        }
        // SAFETY: a new fd of ours.
        let fan = unsafe { OwnedFd::from_raw_fd(fan) };
        let mut paths: Vec<PathBuf> = RUNTIME_PATHS.iter().map(|p| host.path(p)).collect();
        if let Some(extra) = std::env::var_os("RUNTIME_PATH").filter(|p| !p.is_empty()) {
            paths.push(host.path(Path::new(&extra)));
        }
        let mut marked = Vec::new();
        for p in paths {
            if !p.is_file() {
                continue;
            }
            let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: a valid fd and C string.
            let rc = unsafe {
                libc::fanotify_mark(
                    fan.as_raw_fd(),
                    libc::FAN_MARK_ADD,
                    libc::FAN_OPEN_EXEC_PERM,
                    libc::AT_FDCWD,
                    c.as_ptr(),
                )
            };
            if rc == 0 {
                marked.push(p);
            } else {
                log::debug!(
                    "fanotify mark on {}: {}",
                    p.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        if marked.is_empty() {
            return Err(HookError::NoRuntime(RUNTIME_PATHS.join(", ")));
        }
        let counters = Arc::new(Mutex::new(Counters::default()));
        let wake = Arc::new(eventfd()?);
        let answer = Arc::new(eventfd()?);
        let stop = Arc::new(eventfd()?);
        let thread = {
            let ends = Ends {
                fan,
                counters: counters.clone(),
                wake: wake.clone(),
                answer: answer.clone(),
                stop: stop.clone(),
                limit,
            };
            std::thread::Builder::new()
                .name("ig-runtime-hook".into())
                .spawn(move || ends.hold_loop())
                .map_err(HookError::Setup)?
        };
        Ok(Self {
            counters,
            wake,
            answer,
            stop,
            thread: Some(thread),
            marked,
        })
    }

    /// The binaries marked.
    pub fn marked(&self) -> &[PathBuf] {
        &self.marked
    }

    /// The fd the owner polls: readable when a runtime is held.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest held batch to answer, if the thread asked since the last
    /// call (resets the wake fd).
    pub fn pending(&self) -> Option<u64> {
        if !consume(self.wake.as_raw_fd()) {
            return None;
        }
        let s = self.counters();
        (s.requested > s.done).then_some(s.requested)
    }

    /// Everything up to batch `seq` is in the table and the kernel filter:
    /// let those runtimes go on.
    pub fn done(&self, seq: u64) {
        {
            let mut s = self.counters();
            s.done = s.done.max(seq);
        }
        signal(self.answer.as_raw_fd());
    }

    /// Held execs that ran out of time so far.
    pub fn timeouts(&self) -> u64 {
        self.counters().timeouts
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        signal(self.stop.as_raw_fd());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the thread owns and shares.
struct Ends {
    fan: OwnedFd,
    counters: Arc<Mutex<Counters>>,
    wake: Arc<OwnedFd>,
    answer: Arc<OwnedFd>,
    stop: Arc<OwnedFd>,
    limit: Duration,
}

/// One held exec: the event's fd, the batch it was handed over in, and
/// when it goes on whatever the owner says.
struct Held {
    fd: RawFd,
    seq: u64,
    deadline: Instant,
}

impl Ends {
    fn allow(&self, fd: RawFd) {
        let r = libc::fanotify_response {
            fd,
            response: libc::FAN_ALLOW,
        };
        // SAFETY: writing a valid response; closing the event's fd.
        unsafe {
            libc::write(
                self.fan.as_raw_fd(),
                (&raw const r).cast(),
                std::mem::size_of::<libc::fanotify_response>(),
            );
            libc::close(fd);
        }
    }

    /// Read the pending fanotify events; the fds of permission events.
    fn read_events(&self, buf: &mut [u64]) -> Vec<RawFd> {
        let meta_len = std::mem::size_of::<libc::fanotify_event_metadata>();
        let mut held = Vec::new();
        loop {
            // SAFETY: reading into our buffer of its byte length.
            let n =
                unsafe { libc::read(self.fan.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len() * 8) };
            if n <= 0 {
                return held;
            }
            // SAFETY: the buffer holds at least n bytes.
            let bytes =
                unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
            let mut off = 0;
            while off + meta_len <= bytes.len() {
                // SAFETY: a whole event header lies at `off`.
                let m: libc::fanotify_event_metadata =
                    unsafe { std::ptr::read_unaligned(bytes[off..].as_ptr().cast()) };
                if (m.event_len as usize) < meta_len {
                    break;
                }
                off += m.event_len as usize;
                if m.fd < 0 {
                    continue;
                }
                if m.mask & libc::FAN_OPEN_EXEC_PERM != 0 {
                    held.push(m.fd);
                } else {
                    // SAFETY: an fd the kernel gave us.
                    unsafe { libc::close(m.fd) };
                }
            }
        }
    }

    /// Wait for runc execs, hand each batch to the owner, allow each exec
    /// when the owner answered its batch or its own deadline passed.
    fn hold_loop(self) {
        // u64s: aligned for fanotify_event_metadata.
        let mut buf = vec![0u64; 512];
        let mut held: Vec<Held> = Vec::new();
        loop {
            let now = Instant::now();
            let timeout = held
                .iter()
                .map(|h| h.deadline.saturating_duration_since(now))
                .min()
                .map_or(-1, |d| i32::try_from(d.as_millis() + 1).unwrap_or(i32::MAX));
            let mut fds = [
                self.fan.as_raw_fd(),
                self.stop.as_raw_fd(),
                self.answer.as_raw_fd(),
            ]
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            // SAFETY: three valid pollfds.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 3, timeout) };
            if rc < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
            if fds[1].revents != 0 {
                break;
            }
            if fds[2].revents != 0 {
                consume(self.answer.as_raw_fd());
            }
            if fds[0].revents != 0 {
                let new = self.read_events(&mut buf);
                if !new.is_empty() {
                    let seq = {
                        let mut s = self.counters.lock().unwrap_or_else(|e| e.into_inner());
                        s.requested += 1;
                        s.requested
                    };
                    signal(self.wake.as_raw_fd());
                    let deadline = Instant::now() + self.limit;
                    held.extend(new.into_iter().map(|fd| Held { fd, seq, deadline }));
                }
            }
            let done = self.counters.lock().unwrap_or_else(|e| e.into_inner()).done;
            let now = Instant::now();
            let mut late = 0u64;
            held.retain(|h| {
                if h.seq <= done {
                    self.allow(h.fd);
                    false
                } else if now >= h.deadline {
                    self.allow(h.fd);
                    late += 1;
                    false
                } else {
                    true
                }
            });
            if late > 0 {
                self.counters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .timeouts += late;
                log::warn!(
                    "a container runtime was held {:?} and let go before ig knew its new container: the container's first events may be missing",
                    self.limit
                );
            }
        }
        // Stopping: whatever is held goes on (closing the fanotify fd would
        // allow it too).
        for h in held {
            self.allow(h.fd);
        }
    }
}
