//! When to scan again: inotify on the runtimes' runc state directories and
//! docker's event stream, behind one epoll fd that the event loop polls.
//!
//! runc makes `<root>/<id>/` when it creates a container and renames its
//! `state.json` into it once the container's init is set up (its mount
//! namespace is final); it removes the directory when the container is
//! deleted. So the roots are watched for new and removed directories, and
//! each container directory for its `state.json`. A root that does not
//! exist yet (no container ever ran there) is added by [`Watcher::rearm`],
//! which the owner calls on its slow timer; a closed docker stream is
//! reopened there too.
//!
//! The watcher only says "something changed": what changed is the next
//! scan's business ([`super::Detector::scan`]).

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Read as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::runtime_api;

/// Why the watch on the runtimes cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Setting up `what` failed.
    #[error("setting up {what}")]
    Setup {
        /// What was being set up.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Events a root is watched for: a container directory made, moved in,
/// removed.
const ROOT_MASK: u32 = libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_TO | libc::IN_MOVED_FROM;
/// Events a container directory is watched for: its state file written.
const DIR_MASK: u32 = libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE;

/// The watches, behind one pollable fd.
pub struct Watcher {
    epoll: OwnedFd,
    inotify: OwnedFd,
    roots: Vec<PathBuf>,
    /// Directories whose subdirectories are roots (containerd's, one per
    /// namespace).
    parents: Vec<PathBuf>,
    watches: HashMap<i32, (PathBuf, Kind)>,
    docker_socket: Option<PathBuf>,
    docker: Option<UnixStream>,
    /// Another fd polled through ours (the hook's wake fd).
    extra: Option<RawFd>,
    buf: Vec<u8>,
}

/// What [`Watcher::drain`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// A runc state directory changed (a container may have come or gone:
    /// [`super::Detector::state_fingerprint`] tells cheaply).
    pub changed: bool,
    /// Docker's event stream said something (or closed).
    pub docker: bool,
    /// The extra fd is readable.
    pub extra: bool,
}

fn last_err(what: &'static str) -> WatchError {
    WatchError::Setup {
        what,
        source: std::io::Error::last_os_error(),
    }
}

impl Watcher {
    /// Watch `roots` and the roots below `parents` (those that exist now)
    /// and, if given, docker's event stream on `docker_socket`.
    pub fn new(
        roots: Vec<PathBuf>,
        parents: Vec<PathBuf>,
        docker_socket: Option<PathBuf>,
    ) -> Result<Self, WatchError> {
        // SAFETY: plain syscalls; the fds are owned right after.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(last_err("epoll"));
        }
        // SAFETY: a new fd of ours.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // SAFETY: as above.
        let ino = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if ino < 0 {
            return Err(last_err("inotify"));
        }
        // SAFETY: a new fd of ours.
        let inotify = unsafe { OwnedFd::from_raw_fd(ino) };
        let mut w = Self {
            epoll,
            inotify,
            roots,
            parents,
            watches: HashMap::new(),
            docker_socket,
            docker: None,
            extra: None,
            buf: vec![0u8; 16 << 10],
        };
        w.epoll_add(w.inotify.as_raw_fd())
            .map_err(|source| WatchError::Setup {
                what: "epoll",
                source,
            })?;
        w.rearm();
        Ok(w)
    }

    /// Poll `fd` through ours too; [`Ready::extra`] says when it is
    /// readable (the caller reads it).
    pub fn add_extra(&mut self, fd: RawFd) -> std::io::Result<()> {
        self.epoll_add(fd)?;
        self.extra = Some(fd);
        Ok(())
    }

    /// The fd to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn epoll_add(&self, fd: RawFd) -> std::io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: valid fds and a valid event.
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn add_watch(&mut self, path: &Path, kind: Kind) {
        if self.watches.values().any(|(p, _)| p == path) {
            return;
        }
        let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
            return;
        };
        let mask = match kind {
            Kind::Parent | Kind::Root => ROOT_MASK,
            Kind::Container => DIR_MASK,
        } | libc::IN_ONLYDIR;
        // SAFETY: a valid C string.
        let wd = unsafe { libc::inotify_add_watch(self.inotify.as_raw_fd(), c.as_ptr(), mask) };
        if wd >= 0 {
            self.watches.insert(wd, (path.to_owned(), kind));
        }
    }

    /// Watch roots that appeared since, and their container directories;
    /// reopen docker's stream if it closed. Returns true if anything new
    /// is watched (what it holds was not seen: scan again).
    pub fn rearm(&mut self) -> bool {
        let before = self.watches.len();
        let mut roots = self.roots.clone();
        for parent in self.parents.clone() {
            if parent.is_dir() {
                self.add_watch(&parent, Kind::Parent);
                roots.extend(subdirs(&parent));
            }
        }
        for root in roots {
            if !root.is_dir() {
                continue;
            }
            self.add_watch(&root, Kind::Root);
            for d in subdirs(&root) {
                self.add_watch(&d, Kind::Container);
            }
        }
        let mut changed = self.watches.len() != before;
        if self.docker.is_none()
            && let Some(sock) = self.docker_socket.clone()
            && sock.exists()
        {
            match runtime_api::events(&sock) {
                Ok(s) => {
                    if self.epoll_add(s.as_raw_fd()).is_ok() {
                        self.docker = Some(s);
                        changed = true;
                    }
                }
                Err(e) => log::debug!("docker events on {}: {e}", sock.display()),
            }
        }
        changed
    }

    /// Read what is pending without blocking: one `epoll_wait` when
    /// nothing is.
    pub fn drain(&mut self) -> Ready {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: a valid array of its length; no wait.
        let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), evs.as_mut_ptr(), 4, 0) };
        let mut ready = Ready::default();
        let (mut ino, mut docker) = (false, false);
        for e in evs.iter().take(usize::try_from(n).unwrap_or(0)) {
            let fd = e.u64 as RawFd;
            if fd == self.inotify.as_raw_fd() {
                ino = true;
            } else if Some(fd) == self.extra {
                ready.extra = true;
            } else {
                docker = true;
            }
        }
        if ino {
            ready.changed |= self.read_inotify();
        }
        if docker {
            ready.docker = self.read_docker();
        }
        ready
    }

    fn read_inotify(&mut self) -> bool {
        let mut changed = false;
        loop {
            // SAFETY: reading into our buffer of its length.
            let n = unsafe {
                libc::read(
                    self.inotify.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                )
            };
            if n <= 0 {
                break;
            }
            let n = n as usize;
            let mut off = 0;
            let mut new_dirs = Vec::new();
            let hdr = std::mem::size_of::<libc::inotify_event>();
            while off + hdr <= n {
                // SAFETY: the kernel wrote whole events; read unaligned.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(self.buf[off..].as_ptr().cast()) };
                let name_bytes = &self.buf[off + hdr..(off + hdr + ev.len as usize).min(n)];
                let name = name_bytes.split(|b| *b == 0).next().unwrap_or_default();
                off += hdr + ev.len as usize;
                if ev.mask & libc::IN_IGNORED != 0 {
                    self.watches.remove(&ev.wd);
                    continue;
                }
                if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                    changed = true;
                    continue;
                }
                let Some((path, kind)) = self.watches.get(&ev.wd) else {
                    continue;
                };
                let made = ev.mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0
                    && ev.mask & libc::IN_ISDIR != 0;
                match kind {
                    Kind::Parent | Kind::Root => {
                        changed = true;
                        if made {
                            let child = match kind {
                                Kind::Parent => Kind::Root,
                                _ => Kind::Container,
                            };
                            new_dirs.push((path.join(std::ffi::OsStr::from_bytes(name)), child));
                        }
                    }
                    Kind::Container => changed |= name == b"state.json",
                }
            }
            for (d, kind) in new_dirs {
                self.add_watch(&d, kind);
                // Whatever was made in it before the watch was in place.
                for sub in subdirs(&d) {
                    if kind == Kind::Root {
                        self.add_watch(&sub, Kind::Container);
                    }
                }
            }
        }
        changed
    }

    fn read_docker(&mut self) -> bool {
        let mut changed = false;
        if let Some(s) = self.docker.as_mut() {
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        // Closed (the daemon stopped): reopened by rearm.
                        let fd = s.as_raw_fd();
                        // SAFETY: removing our fd from our epoll.
                        unsafe {
                            libc::epoll_ctl(
                                self.epoll.as_raw_fd(),
                                libc::EPOLL_CTL_DEL,
                                fd,
                                std::ptr::null_mut(),
                            )
                        };
                        self.docker = None;
                        changed = true;
                        break;
                    }
                    Ok(_) => changed = true,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.docker = None;
                        changed = true;
                        break;
                    }
                }
            }
        }
        changed
    }

    /// Whether docker's event stream is open (tests, `--debug`).
    pub fn docker_connected(&self) -> bool {
        self.docker.is_some()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Parent,
    Root,
    Container,
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory made under a watched root, then a state file renamed
    /// into it: both are seen; a root that appears later is picked up by
    /// rearm.
    #[test]
    fn sees_container_directories_and_state_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("runc");
        let later = tmp.path().join("later");
        std::fs::create_dir(&root).unwrap();
        let parent = tmp.path().join("containerd");
        std::fs::create_dir(&parent).unwrap();
        let mut w = Watcher::new(
            vec![root.clone(), later.clone()],
            vec![parent.clone()],
            None,
        )
        .unwrap();
        assert!(!w.drain().changed, "nothing happened yet");
        std::fs::create_dir(root.join("igt1")).unwrap();
        assert!(w.drain().changed);
        assert!(!w.drain().changed);
        std::fs::write(root.join("igt1/state-tmp"), b"{}").unwrap();
        std::fs::rename(root.join("igt1/state-tmp"), root.join("igt1/state.json")).unwrap();
        assert!(w.drain().changed, "the state file");
        std::fs::write(root.join("igt1/other"), b"x").unwrap();
        assert!(!w.drain().changed, "other files do not matter");
        std::fs::remove_dir_all(root.join("igt1")).unwrap();
        assert!(w.drain().changed, "removal");
        std::fs::create_dir(&later).unwrap();
        assert!(w.rearm(), "a new root is watched");
        std::fs::create_dir(later.join("x")).unwrap();
        assert!(w.drain().changed);
        // A namespace under containerd's parent, then a container in it.
        std::fs::create_dir(parent.join("k8s.io")).unwrap();
        assert!(w.drain().changed);
        std::fs::create_dir(parent.join("k8s.io/c1")).unwrap();
        assert!(w.drain().changed);
        std::fs::write(parent.join("k8s.io/c1/state.json"), b"{}").unwrap();
        assert!(w.drain().changed, "a state file in a new namespace");
        // The epoll fd says readable when inotify has something.
        std::fs::create_dir(later.join("y")).unwrap();
        let mut p = libc::pollfd {
            fd: w.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 1000) }, 1);
        assert!(w.drain().changed);
    }
}
