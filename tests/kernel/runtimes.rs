//! Real container runtimes for the Kubernetes tests: one containerd per
//! test binary, started by the tests with its own root, state and socket
//! under a temporary directory (the CRI plugin off: no kubelet, no CNI),
//! pods made with `ctr run --rootfs` carrying the annotations the CRI
//! plugin writes, and a dockerd on that containerd. Every daemon is
//! recorded by pid and stopped by pid when the test binary exits. A
//! missing runtime fails the test (`cargo xtask setup` installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Daemons to stop and directories to remove when the binary exits.
static DAEMONS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static AT_EXIT: AtomicI32 = AtomicI32::new(0);

extern "C" fn stop_daemons() {
    let pids = DAEMONS.lock().map(|d| d.clone()).unwrap_or_default();
    // dockerd before containerd: the last started stops first.
    for pid in pids.iter().rev() {
        // SAFETY: signalling a daemon we started.
        unsafe { libc::kill(*pid, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        // SAFETY: signal 0 only checks that it still exists.
        while unsafe { libc::kill(*pid, 0) } == 0 && Instant::now() < end {
            let mut status = 0;
            // SAFETY: reaping our own child, without blocking.
            unsafe { libc::waitpid(*pid, &mut status, libc::WNOHANG) };
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for d in DIRS.lock().map(|d| d.clone()).unwrap_or_default() {
        let _ = std::fs::remove_dir_all(d);
    }
}

fn at_exit() {
    if AT_EXIT.swap(1, Ordering::SeqCst) == 0 {
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(stop_daemons) };
    }
}

/// Taken by the tests that make an `ig` unable to answer its runtime hook
/// (stopped, or its loop stuck): every runc exec of the host waits for that
/// ig, so two such tests at once would delay each other's containers past
/// what each asserts.
pub fn unresponsive_ig() -> std::sync::MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A daemon to stop when the binary exits.
fn record(pid: u32) {
    at_exit();
    DAEMONS.lock().unwrap().push(i32::try_from(pid).unwrap());
}

/// A directory for the binary's life, removed when it exits.
fn binary_dir(prefix: &str) -> PathBuf {
    at_exit();
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap()
        .keep();
    DIRS.lock().unwrap().push(dir.clone());
    dir
}

fn tool(name: &str) -> Command {
    let c = Command::new(name);
    assert!(
        Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .is_ok_and(|o| o.status.success()),
        "the Kubernetes tests need {name} (cargo xtask setup installs containerd and docker.io)"
    );
    c
}

/// Run to completion within 60 s; the output, asserting success.
pub fn run_ok(c: &mut Command) -> String {
    let out = c
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Wait until `probe` succeeds (a daemon answers), at most `secs`;
/// panics with the daemon's `log`.
fn wait_until_answers(probe: &mut Command, secs: u64, log: &Path) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !probe.output().is_ok_and(|o| o.status.success()) {
        assert!(
            Instant::now() < end,
            "{probe:?} got no answer within {secs} s: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub use crate::runc::rootfs;

/// The binary's containerd.
pub struct Containerd {
    pub socket: PathBuf,
    dir: PathBuf,
}

/// Start (once per binary) a containerd of our own.
pub fn containerd() -> &'static Containerd {
    static CTRD: OnceLock<Containerd> = OnceLock::new();
    CTRD.get_or_init(|| {
        let dir = binary_dir("ig-test-containerd-");
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{1}\"\n[ttrpc]\n  address = \"{1}.ttrpc\"\n\
                 [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
                dir.display(),
                socket.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        #[allow(
            clippy::zombie_processes,
            reason = "stopped and reaped by pid at exit (stop_daemons)"
        )]
        let child = tool("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        record(child.id());
        let c = Containerd { socket, dir };
        wait_until_answers(c.ctr().arg("version"), 30, &c.dir.join("containerd.log"));
        c
    })
}

impl Containerd {
    /// `ctr` on our containerd, namespace `k8s.io` (the kubelet's).
    pub fn ctr(&self) -> Command {
        let mut c = tool("ctr");
        c.arg("--address").arg(&self.socket).args(["-n", "k8s.io"]);
        c
    }
}

/// A unique suffix for names (pid, clock, counter).
pub fn unique(prefix: &str) -> String {
    static N: AtomicI32 = AtomicI32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    format!(
        "{prefix}{}x{}x{}",
        std::process::id(),
        t % 1_000_000_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// What a pod-like container carries (the CRI plugin's annotations).
pub struct PodSpec<'a> {
    pub id: String,
    pub namespace: &'a str,
    pub pod: &'a str,
    pub container: &'a str,
    pub image: &'a str,
    /// `io.kubernetes.cri.container-type=sandbox` (a pause container).
    pub sandbox: bool,
}

impl<'a> PodSpec<'a> {
    /// A container of pod `pod` in `namespace`, image `img:1`.
    pub fn new(id: String, namespace: &'a str, pod: &'a str, container: &'a str) -> Self {
        Self {
            id,
            namespace,
            pod,
            container,
            image: "img:1",
            sandbox: false,
        }
    }

    pub fn image(self, image: &'a str) -> Self {
        Self { image, ..self }
    }

    /// A pod's sandbox (pause) container.
    pub fn sandbox(self) -> Self {
        Self {
            sandbox: true,
            ..self
        }
    }
}

/// An init that idles.
pub const IDLE: &[&str] = &["/bin/sh", "-c", "while true; do sleep 1; done"];

/// A container made by `ctr run` on the binary's containerd, in a
/// kubelet-style cgroup (`/kubepods/besteffort/pod<uid>/<id>`). Deleted on
/// drop.
pub struct Pod {
    pub id: String,
    pub pod_uid: String,
    pub pid: u32,
}

impl Pod {
    /// `argv` is the container's init (its very first program).
    pub fn start(spec: &PodSpec, argv: &[&str]) -> Self {
        Self::start_with(spec, argv, &[])
    }

    /// With more `ctr run` flags (`--net-host`).
    pub fn start_with(spec: &PodSpec, argv: &[&str], flags: &[&str]) -> Self {
        let c = containerd();
        let pod_uid = format!("{}-uid", spec.pod);
        let ty = if spec.sandbox { "sandbox" } else { "container" };
        let mut cmd = c.ctr();
        cmd.args(["run", "-d", "--null-io", "--rootfs"]).args(flags);
        for (k, v) in [
            ("io.kubernetes.cri.container-type", ty),
            ("io.kubernetes.cri.container-name", spec.container),
            ("io.kubernetes.cri.sandbox-name", spec.pod),
            ("io.kubernetes.cri.sandbox-namespace", spec.namespace),
            ("io.kubernetes.cri.sandbox-uid", &pod_uid),
            ("io.kubernetes.cri.image-name", spec.image),
        ] {
            cmd.arg("--annotation").arg(format!("{k}={v}"));
        }
        cmd.arg("--cgroup")
            .arg(format!("/kubepods/besteffort/pod{pod_uid}/{}", spec.id))
            .arg(rootfs())
            .arg(&spec.id)
            .args(argv);
        run_ok(&mut cmd);
        let pid = init_pid(&spec.id);
        Self {
            id: spec.id.clone(),
            pod_uid,
            pid,
        }
    }

    pub fn mntns(&self) -> u64 {
        let l = std::fs::read_link(format!("/proc/{}/ns/mnt", self.pid)).unwrap();
        ig::containers::parse_ns_link(l.to_str().unwrap()).unwrap()
    }

    /// Kill and delete the container now.
    pub fn delete(&self) {
        delete_container(&self.id);
    }
}

/// Kill container `id`'s task (if it runs), delete it and the container,
/// on the binary's containerd.
pub fn delete_container(id: &str) {
    let c = containerd();
    let _ = c.ctr().args(["task", "kill", "-s", "KILL", id]).output();
    let end = Instant::now() + Duration::from_secs(10);
    while c
        .ctr()
        .args(["task", "delete", id])
        .output()
        .is_ok_and(|o| {
            !o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("not found")
        })
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.ctr().args(["container", "delete", id]).output();
}

/// The init pid of a containerd task (from runc's state file, which
/// `ctr run -d` has written when it returns).
pub fn init_pid(id: &str) -> u32 {
    let state = format!("/run/containerd/runc/k8s.io/{id}/state.json");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).unwrap_or_else(|e| panic!("{state}: {e}")))
            .unwrap();
    u32::try_from(v["init_process_pid"].as_u64().unwrap()).unwrap()
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.delete();
        // The kubelet-style parents runc made in every hierarchy.
        if let Ok(dir) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in dir.flatten() {
                let pod = h
                    .path()
                    .join(format!("kubepods/besteffort/pod{}", self.pod_uid));
                let _ = std::fs::remove_dir(&pod);
            }
        }
    }
}

/// A dockerd on the binary's containerd, with its own data and exec
/// roots and socket, touching neither iptables nor the host's network.
pub struct Dockerd {
    pub socket: PathBuf,
}

pub fn dockerd() -> &'static Dockerd {
    static D: OnceLock<Dockerd> = OnceLock::new();
    D.get_or_init(|| {
        let ctrd = containerd();
        // Short: docker's exec root holds unix sockets (108 bytes max).
        let dir = binary_dir("igd-");
        let socket = dir.join("d.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        #[allow(
            clippy::zombie_processes,
            reason = "stopped and reaped by pid at exit (stop_daemons)"
        )]
        let child = tool("dockerd")
            .arg("--containerd")
            .arg(&ctrd.socket)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("x"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .args([
                "--iptables=false",
                "--ip-forward=false",
                "--bridge=none",
                "--storage-driver=vfs",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        record(child.id());
        let d = Dockerd { socket };
        wait_until_answers(d.docker().arg("version"), 60, &dir.join("dockerd.log"));
        d
    })
}

impl Dockerd {
    /// Debian's docker CLI on our dockerd.
    pub fn docker(&self) -> Command {
        let bin = ["/usr/bin/docker", "/usr/local/bin/docker"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("the docker tests need docker.io (cargo xtask setup installs it)");
        let mut c = Command::new(bin);
        c.arg("-H").arg(format!("unix://{}", self.socket.display()));
        c
    }

    /// Import the busybox root file system as image `name` (once per
    /// name).
    pub fn import(&self, name: &str) {
        let tar = rootfs()
            .parent()
            .unwrap()
            .join(format!("{}.tar", unique("layer")));
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(rootfs())
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        );
        run_ok(self.docker().arg("import").arg(&tar).arg(name));
        let _ = std::fs::remove_file(tar);
    }
}

/// A `docker-registry` on 127.0.0.1 for the binary (docker pushes to
/// loopback registries over plain HTTP): a pushed image gets its digest.
pub fn registry() -> &'static str {
    static R: OnceLock<String> = OnceLock::new();
    R.get_or_init(|| {
        let dir = binary_dir("ig-test-registry-");
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = dir.join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                    dir.join("data").display()
                ),
            )
            .unwrap();
            let mut child = tool("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    record(child.id());
                    return format!("127.0.0.1:{port}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    })
}

impl Dockerd {
    /// The busybox image pushed to the binary's registry as `name:1`
    /// (docker records its digest at the push): `(reference, digest)`.
    pub fn pushed_image(&self, name: &str) -> (String, String) {
        let reference = format!("{}/{name}:1", registry());
        self.import(&reference);
        run_ok(self.docker().args(["push", &reference]));
        let digests = run_ok(self.docker().args([
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &reference,
        ]));
        let v: serde_json::Value = serde_json::from_str(digests.trim()).unwrap();
        let digest = v[0]
            .as_str()
            .and_then(|d| d.split_once('@'))
            .map(|(_, d)| d.to_owned())
            .unwrap_or_else(|| panic!("no digest after the push: {digests}"));
        (reference, digest)
    }
}
