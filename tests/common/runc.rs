//! A real container for the tests that need one: runc (Debian's) running
//! a busybox root file system. Shared by `tests/kernel` and `tests/wasm`
//! (`#[path]`-included next to `common`).

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The binary's shared busybox root (containers only read it), removed
/// when the binary exits.
pub fn rootfs() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("ig-test-rootfs-")
            .tempdir()
            .unwrap()
            .keep();
        let _ = DIR.set(dir.clone());
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(remove_rootfs) };
        let root = dir.join("rootfs");
        make_busybox_root(&root);
        root
    })
}

static DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_rootfs() {
    if let Some(d) = DIR.get() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A busybox root file system at `root` (`sh`, `sleep`, `cat`, `true`).
pub fn make_busybox_root(root: &Path) {
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("container tests need busybox-static (cargo xtask setup installs it)");
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "cat", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
}

/// A real container: runc (Debian's) running a busybox rootfs, in a cgroup
/// named as docker names its containers (`/docker/<64 hex>`), so `ig`
/// recognizes it. Podman and crun do not run on this kind of host (see the
/// README's Containers section); runc with a config.json without rlimits
/// does. Deleted (killed) on drop.
pub struct RuncContainer {
    pub id: String,
    pub name: String,
    pub pid: u32,
    _dir: tempfile::TempDir,
}

impl RuncContainer {
    /// A unique docker-like id: 64 hex digits from our pid and the clock.
    pub fn new_id() -> String {
        use std::fmt::Write as _;
        let seed = format!(
            "{}{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut id = String::new();
        for i in 0..8u8 {
            for b in seed.bytes().chain([i]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
            let _ = write!(id, "{h:016x}");
        }
        id.truncate(64);
        id
    }

    /// `script` runs under busybox `sh -c` as the container's init.
    pub fn start(script: &str) -> Self {
        Self::start_with_id(Self::new_id(), script)
    }

    pub fn start_with_id(id: String, script: &str) -> Self {
        Self::start_in(id, script, None::<fn(&Path)>)
    }

    /// `prepare` adds to a private rootfs (its path) before the container
    /// runs.
    pub fn start_with(id: String, script: &str, prepare: impl FnOnce(&Path)) -> Self {
        Self::start_in(id, script, Some(prepare))
    }

    fn start_in(id: String, script: &str, prepare: Option<impl FnOnce(&Path)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // The binary's shared busybox root (containers only read it),
        // or a private one when the test adds to it.
        let root = match prepare {
            Some(prepare) => {
                let root = dir.path().join("rootfs");
                make_busybox_root(&root);
                prepare(&root);
                root
            }
            None => rootfs().to_path_buf(),
        };
        let name = id[..12].to_owned();
        let spec = Command::new("runc")
            .args(["spec"])
            .current_dir(dir.path())
            .output()
            .expect("container tests need runc (cargo xtask setup installs it)");
        assert!(spec.status.success(), "runc spec: {spec:?}");
        let path = dir.path().join("config.json");
        let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        cfg["process"]["terminal"] = Value::Bool(false);
        cfg["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
        // Setting rlimits needs CAP_SYS_RESOURCE, which this host lacks.
        cfg["process"].as_object_mut().unwrap().remove("rlimits");
        cfg["root"]["path"] = Value::String(root.display().to_string());
        cfg["root"]["readonly"] = Value::Bool(false);
        cfg["linux"]["cgroupsPath"] = Value::String(format!("/docker/{id}"));
        std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        // The container inherits runc's stdio: a pipe would stay open for
        // as long as it runs, so its output goes to a file.
        let log = dir.path().join("runc.log");
        let status = Command::new("runc")
            .args(["run", "--detach", &name])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("runc.err")).unwrap())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "runc run: {status}: {}",
            std::fs::read_to_string(dir.path().join("runc.err")).unwrap_or_default()
        );
        let state = Command::new("runc")
            .args(["state", &name])
            .output()
            .unwrap();
        let state: Value = serde_json::from_slice(&state.stdout).unwrap();
        let pid = u32::try_from(state["pid"].as_u64().unwrap()).unwrap();
        Self {
            id,
            name,
            pid,
            _dir: dir,
        }
    }

    pub fn mntns(&self) -> u64 {
        let l = std::fs::read_link(format!("/proc/{}/ns/mnt", self.pid)).unwrap();
        ig::containers::parse_ns_link(l.to_str().unwrap()).unwrap()
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["delete", "--force", &self.name])
            .output();
    }
}
