//! Helpers shared by the test binaries: run the real `ig`, make stores,
//! build the repository's gadgets once.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn ig_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ig")
}

/// A temporary store; removed when dropped.
pub struct TestStore {
    pub dir: tempfile::TempDir,
}

impl TestStore {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("ig-test-store-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// `ig ARGS` against this store.
    pub fn ig(&self) -> Command {
        let mut c = Command::new(ig_bin());
        c.env("IG_STORE", self.path())
            .env_remove("IG_CLANG")
            .env_remove("NO_COLOR");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.ig().args(args).output().unwrap()
    }

    /// `ig image build DIR -t TAG`, asserting success.
    pub fn build(&self, dir: &Path, tag: &str) {
        let out = self.run(&["image", "build", dir.to_str().unwrap(), "-t", tag]);
        assert!(
            out.status.success(),
            "building {}:\n{}",
            dir.display(),
            text(&out.stderr)
        );
    }
}

/// Run `cmd` to its end, stdout and stderr captured (read by threads, so
/// a chatty child never blocks); killed, and the test failed, after
/// `limit`.
pub fn output_bounded(cmd: &mut Command, limit: std::time::Duration) -> Output {
    use std::io::Read as _;
    let started = std::time::Instant::now();
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not end within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A store with every gadget of `gadgets/` built into it, shared by all
/// tests of one binary (building takes a second per gadget).
pub fn gadget_store() -> &'static TestStore {
    static STORE: OnceLock<TestStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let s = TestStore::new();
        for name in ["trace_exec", "trace_open"] {
            s.build(&repo().join("gadgets").join(name), name);
        }
        s
    })
}

/// A store with every gadget of `gadgets/` built into it (tagged with its
/// directory name), shared by all tests of one binary. The builds run a
/// few at a time: each is one clang run.
pub fn all_gadgets_store() -> &'static TestStore {
    static STORE: OnceLock<TestStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let s = TestStore::new();
        let mut names: Vec<String> = std::fs::read_dir(repo().join("gadgets"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.path().join("gadget.yaml").exists())
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        names.sort();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
        let next = std::sync::Mutex::new(names.into_iter());
        std::thread::scope(|sc| {
            for _ in 0..workers {
                sc.spawn(|| {
                    loop {
                        let Some(name) = next.lock().unwrap().next() else {
                            break;
                        };
                        s.build(&repo().join("gadgets").join(&name), &name);
                    }
                });
            }
        });
        s
    })
}

/// Copy a fixture gadget directory to a temporary place (so a test can
/// modify it) and return the copy.
pub fn fixture_copy(name: &str) -> tempfile::TempDir {
    let dst = tempfile::tempdir().unwrap();
    let src = repo().join("tests/fixtures").join(name);
    for e in std::fs::read_dir(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.path().join(e.file_name())).unwrap();
    }
    dst
}

/// A pipe whose buffer (one page) is already full of newlines, so the
/// first byte a child writes to it waits for the reader whatever the
/// machine's process count or event rate: (read end, write end, left
/// blocking as a shell leaves it; give it twice for `2>&1`).
pub fn full_pipe_fds() -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fcntl and write on the pipe we just made, from a valid
    // buffer; the descriptor is non-blocking only while we fill it.
    unsafe {
        libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 4096);
        let flags = libc::fcntl(fds[1], libc::F_GETFL);
        libc::fcntl(fds[1], libc::F_SETFL, flags | libc::O_NONBLOCK);
        let nl = [b'\n'; 512];
        while libc::write(fds[1], nl.as_ptr().cast(), nl.len()) > 0 {}
        libc::fcntl(fds[1], libc::F_SETFL, flags);
    }
    // SAFETY: fresh descriptors from pipe2.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

/// Runs `cmd` to its end (killed after `limit`) with its output collected,
/// and returns that and its peak resident set size in KiB, as the kernel
/// counted it for the child (`wait4`'s `ru_maxrss`): a memory bound on a
/// real run, not a sample.
pub fn output_and_peak_rss(cmd: &mut Command, limit: std::time::Duration) -> (Output, u64) {
    use std::io::Read as _;
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as libc::pid_t;
    let deadline = std::time::Instant::now() + limit;
    let (status, rss) = loop {
        let mut status = 0;
        // SAFETY: rusage is plain data the kernel fills.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: our own child; wait4 writes only into the two locals.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break (status, u64::try_from(usage.ru_maxrss).unwrap_or(0));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let output = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (output, rss)
}
