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
#[allow(
    clippy::zombie_processes,
    reason = "reaped by wait4, which gives its rusage too"
)]
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

/// A ustar header for a regular file `name` of `size` bytes.
pub fn tar_header(name: &str, size: u64) -> [u8; 512] {
    let size = format!("{size:011o}");
    tar_header_raw(name.as_bytes(), size.as_bytes().try_into().unwrap())
}

/// A ustar header for a regular file named by `name` (any bytes) whose
/// size field holds `size` (a number or not), with a valid checksum: what
/// a hostile archive can say.
pub fn tar_header_raw(name: &[u8], size: &[u8; 11]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(size);
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha256_digest(sha2::Sha256::digest(bytes).as_slice())
}

/// `sha256:HEX` of a finished SHA-256.
fn sha256_digest(hash: &[u8]) -> String {
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// An OCI archive of one image, `ghcr.io/inspektor-gadget/gadget/big:v1`,
/// whose layer is `layer_size` zero bytes,
/// written sparse (the layer is a hole): only its headers take disk.
pub fn archive_with_zero_layer(path: &Path, layer_size: u64) {
    use std::io::{Seek as _, Write as _};
    // The layer's digest, hashed in pieces.
    let layer_digest = {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let zeros = vec![0u8; 1 << 20];
        let mut left = layer_size;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            h.update(&zeros[..n]);
            left -= n as u64;
        }
        sha256_digest(h.finalize().as_slice())
    };
    let config = b"{}".to_vec();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(&config), "size": 2},
        "layers": [{"mediaType": "application/vnd.gadget.ebpf.program.v1+binary", "digest": layer_digest, "size": layer_size}],
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(&manifest),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "ghcr.io/inspektor-gadget/gadget/big:v1"},
        }],
    }))
    .unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    let mut small = |name: &str, bytes: &[u8]| {
        f.write_all(&tar_header(name, bytes.len() as u64)).unwrap();
        f.write_all(bytes).unwrap();
        f.write_all(&vec![0u8; (512 - bytes.len() % 512) % 512])
            .unwrap();
    };
    small("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    small("index.json", &index);
    small(&blob_name(&sha256(&manifest)), &manifest);
    small(&blob_name(&sha256(&config)), &config);
    f.write_all(&tar_header(&blob_name(&layer_digest), layer_size))
        .unwrap();
    // The layer: a hole (zeros), padded to a block, then the end.
    let end = f.stream_position().unwrap() + layer_size.div_ceil(512) * 512 + 1024;
    f.set_len(end).unwrap();
}

fn blob_name(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.strip_prefix("sha256:").unwrap())
}
