//! Registry tests: the real `ig` against a real OCI registry (Debian's
//! `docker-registry`, the CNCF distribution registry) started on a free
//! 127.0.0.1 port with a temporary storage directory, and against `skopeo`.
//! Bad-input cases that a real registry cannot be made to produce (an HTTP
//! 500, an unknown manifest media type) use a tiny HTTP server in the test.
//!
//! Needs `docker-registry`, `htpasswd` (apache2-utils), `skopeo` and the
//! gadget build tools; `cargo xtask setup --deps-only` installs them. No
//! privileges beyond what `ig image build` needs, and no network but
//! 127.0.0.1. Every wait is bounded. The signing tests (`trust.rs`) also
//! run a gadget for a second, so they need root, `strace` and `openssl`.

#[path = "../common/mod.rs"]
mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{TestStore, repo, text};

/// Longest any command of these tests may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

fn minimal() -> PathBuf {
    repo().join("tests/fixtures/minimal_tracer")
}

/// Runs `cmd` to completion, killing it after [`COMMAND_TIMEOUT`].
fn output_within(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    // Drain the pipes in threads so a chatty child cannot block on them.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} took longer than {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// A store plus a credentials file of its own, so no test reads the
/// machine's `/var/lib/ig/config.json` or `~/.docker/config.json`.
struct Env {
    store: TestStore,
    auth: PathBuf,
}

impl Env {
    fn new() -> Self {
        let store = TestStore::new();
        let auth = store.dir.path().join("auth.json");
        Env { store, auth }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.store.ig();
        c.env("REGISTRY_AUTH_FILE", &self.auth).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        output_within(&mut self.cmd(args))
    }

    /// `ig ARGS`, asserting success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ig {args:?} failed:\n{}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `ig ARGS`, asserting failure with exit code 1; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "ig {args:?}: stdout {} stderr {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    fn index_json(&self) -> Vec<u8> {
        std::fs::read(self.store.path().join("index.json")).unwrap_or_default()
    }

    fn blob_names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.store.path().join("blobs/sha256"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The digest `ig image list --no-trunc` shows for `repository`.
    fn listed_digest(&self, repository: &str) -> Option<String> {
        let list = self.ok(&["image", "list", "--no-trunc"]);
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(repository))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
    }

    /// An image added through the library, without clang: makes the
    /// store non-empty so "unchanged" means something.
    fn seed(&self) {
        let store = ig::image::Store::open(self.store.path()).unwrap();
        store
            .add_gadget_image(
                &ig::image::Reference::parse("seed:v1").unwrap(),
                ig::image::GadgetImage {
                    config_yaml: b"name: seed\n".to_vec(),
                    ebpf_object: b"seed object".to_vec(),
                    ..Default::default()
                },
            )
            .unwrap();
    }

    /// Runs `ig ARGS`, which must fail, and checks that neither
    /// `index.json` nor the blobs changed. Returns stderr.
    fn fails_leaving_store_unchanged(&self, args: &[&str]) -> String {
        let (index, blobs) = (self.index_json(), self.blob_names());
        assert!(!index.is_empty());
        let err = self.fails(args);
        assert_eq!(index, self.index_json(), "index.json changed: {err}");
        assert_eq!(blobs, self.blob_names(), "blobs changed: {err}");
        err
    }
}

/// A plain-HTTP GET on `ip`; the status code, if any answer came.
fn http_status(ip: &str, port: u16, path: &str) -> Option<u16> {
    let addr = format!("{ip}:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    let line = String::from_utf8_lossy(&head[..n]).into_owned();
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

fn free_port_on(ip: &str) -> u16 {
    TcpListener::bind(format!("{ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry` on 127.0.0.1 (or another loopback address),
/// killed when dropped.
struct Registry {
    child: Child,
    ip: &'static str,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        Self::start_inner("127.0.0.1", None)
    }

    /// With htpasswd (bcrypt) authentication for one user.
    fn start_with_auth(user: &str, password: &str) -> Self {
        Self::start_inner("127.0.0.1", Some((user, password)))
    }

    /// On another loopback address, which ig does not treat as local:
    /// plain HTTP there needs --insecure-registries.
    fn start_on(ip: &'static str) -> Self {
        Self::start_inner(ip, None)
    }

    fn start_inner(ip: &'static str, auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ig-test-registry-")
            .tempdir()
            .unwrap();
        let mut auth_cfg = String::new();
        if let Some((user, password)) = auth {
            let out = output_within(Command::new("htpasswd").args(["-Bbn", user, password]));
            assert!(
                out.status.success(),
                "htpasswd (apt-get install apache2-utils): {}",
                text(&out.stderr)
            );
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).unwrap();
            auth_cfg = format!(
                "auth:\n  htpasswd:\n    realm: ig-test\n    path: {}\n",
                file.display()
            );
        }
        // Another process may take the port between our probe and the
        // registry's bind: try a few.
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port_on(ip);
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {ip}:{port}\n{auth_cfg}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry is installed (apt-get install docker-registry)");
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().unwrap() {
                    // Most likely the port was taken meanwhile: retry.
                    failures.push(format!(
                        "docker-registry exited with {status}: {}",
                        std::fs::read_to_string(dir.path().join("registry.log"))
                            .unwrap_or_default()
                    ));
                    break;
                }
                if matches!(http_status(ip, port, "/v2/"), Some(200 | 401)) {
                    return Registry {
                        child,
                        ip,
                        port,
                        dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start: {failures:#?}");
    }

    fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// The registry's copy of a blob on disk (filesystem driver layout).
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP server on 127.0.0.1 answering every request with what
/// `respond(method, path)` says, each connection on a thread of its own
/// (so one it holds open does not stop the others). Stops when dropped,
/// and on its own after a minute; connections it holds are released then.
struct FakeRegistry {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// `METHOD PATH` of every request, in order; connections that sent
    /// nothing readable count as `?`.
    requests: Arc<std::sync::Mutex<Vec<String>>>,
}

type Response = (u16, &'static str, Vec<u8>);

/// What the fake does with one request.
enum Reply {
    /// The whole answer; then the connection is closed.
    Full(Response),
    /// Nothing at all: the request is read, the connection held open.
    Silent,
    /// A 200 without a length, then `total` bytes of `body` repeated,
    /// as fast as the client takes them, then the connection is closed.
    Stream {
        content_type: &'static str,
        body: Vec<u8>,
        total: u64,
    },
    /// A 200 whose headers announce `length` bytes, then `body` (shorter,
    /// or longer, than that), then nothing more while the connection is
    /// held open.
    Partial {
        content_type: &'static str,
        length: u64,
        body: Vec<u8>,
    },
}

impl FakeRegistry {
    fn start(respond: impl Fn(&str, &str) -> Response + Send + Sync + 'static) -> Self {
        Self::start_with(move |m, p| Reply::Full(respond(m, p)))
    }

    fn start_with(respond: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = requests.clone();
        let respond = Arc::new(respond);
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut served = Vec::new();
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline && served.len() < 500
            {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (respond, log, stop) = (respond.clone(), log.clone(), stop2.clone());
                        served.push(std::thread::spawn(move || {
                            let _ = serve_one(conn, &*respond, &log, &stop, deadline);
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            stop2.store(true, Ordering::Relaxed);
            for t in served {
                let _ = t.join();
            }
        });
        FakeRegistry {
            port,
            stop,
            thread: Some(thread),
            requests,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve_one(
    mut conn: TcpStream,
    respond: &(impl Fn(&str, &str) -> Reply + ?Sized),
    log: &std::sync::Mutex<Vec<String>>,
    stop: &AtomicBool,
    deadline: Instant,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65536 {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&request).into_owned();
    let mut first = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (
        first.next().unwrap_or("?"),
        first.next().unwrap_or_default(),
    );
    log.lock().unwrap().push(format!("{method} {path}"));
    let hold = || {
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    match respond(method, path) {
        Reply::Full((status, content_type, body)) => {
            write!(
                conn,
                "HTTP/1.1 {status} Status\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            if method != "HEAD" {
                conn.write_all(&body)?;
            }
            conn.flush()
        }
        Reply::Silent => {
            hold();
            Ok(())
        }
        Reply::Stream {
            content_type,
            body,
            total,
        } => {
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n"
            )?;
            let mut sent = 0u64;
            while sent < total && !stop.load(Ordering::Relaxed) {
                // A client that stopped reading ends the answer.
                conn.write_all(&body)?;
                sent += body.len() as u64;
            }
            conn.flush()
        }
        Reply::Partial {
            content_type,
            length,
            body,
        } => {
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
            )?;
            conn.write_all(&body)?;
            conn.flush()?;
            hold();
            Ok(())
        }
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------------ tests

/// A 1 GiB layer goes to a real registry and back with a peak RSS under
/// 100 MiB each way: a push read every blob whole before (issue 33 item
/// 1), a pull streamed already.
#[test]
fn a_1_gib_layer_is_pushed_and_pulled_in_bounded_memory() {
    let reg = Registry::start();
    let src = Env::new();
    let tar = src.store.dir.path().join("big.tar");
    common::archive_with_zero_layer(&tar, 1 << 30);
    let limit = Duration::from_secs(600);
    let big = |env: &Env, args: &[&str]| {
        let (out, rss) =
            common::output_and_peak_rss(env.cmd(args).env("IG_MAX_LAYER_SIZE", "2G"), limit);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(rss < 100 << 10, "{args:?}: peak RSS {rss} KiB");
    };
    big(&src, &["image", "import", tar.to_str().unwrap()]);
    std::fs::remove_file(&tar).unwrap();
    let image = format!("{}/big/big:v1", reg.host());
    src.ok(&["image", "tag", "big:v1", &image]);
    big(&src, &["image", "push", &image]);
    drop(src);
    let dst = Env::new();
    big(&dst, &["image", "pull", &image]);
    assert!(
        dst.listed_digest(&format!("{}/big/big", reg.host()))
            .is_some(),
        "{}",
        dst.ok(&["image", "list"])
    );
}

#[test]
fn push_then_pull_keeps_every_digest() {
    let reg = Registry::start();
    let src = Env::new();
    let image = format!("{}/gadgets/minimal:v1", reg.host());
    src.store.build(&minimal(), &image);
    let out = src.ok(&["image", "push", &image]);
    let want = src
        .listed_digest(&format!("{}/gadgets/minimal", reg.host()))
        .unwrap();
    assert!(out.contains(&want), "{out}");

    let dst = Env::new();
    let out = dst.run(&["image", "pull", &image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&want), "{}", text(&out.stdout));
    // No progress on a pipe.
    assert_eq!(text(&out.stderr), "");
    assert_eq!(
        dst.listed_digest(&format!("{}/gadgets/minimal", reg.host())),
        Some(want.clone())
    );
    // Byte for byte the same blobs (the pulled store has no seed image).
    assert_eq!(src.blob_names(), dst.blob_names());

    // Pulling again changes nothing and downloads only the manifests.
    let before = dst.index_json();
    dst.ok(&["image", "pull", &image]);
    assert_eq!(before, dst.index_json());

    // A pull by digest is checked against it and recorded under it.
    let by_digest = format!("{}/gadgets/minimal@{want}", reg.host());
    let other = Env::new();
    other.ok(&["image", "pull", &by_digest]);
    let info = other.ok(&["image", "inspect", &by_digest, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["digest"], want.as_str());
}

/// An image without an eBPF layer (a gadget of operators only, as
/// upstream's bpfstats) goes through a registry unchanged and runs.
#[test]
fn an_image_without_ebpf_pushes_pulls_and_runs() {
    let reg = Registry::start();
    let src = Env::new();
    let image = format!("{}/gadgets/ops:v1", reg.host());
    src.store
        .build(&repo().join("tests/fixtures/ops_custom_params"), &image);
    let out = src.ok(&["image", "push", &image]);
    let want = src
        .listed_digest(&format!("{}/gadgets/ops", reg.host()))
        .unwrap();
    assert!(out.contains(&want), "{out}");
    let dst = Env::new();
    dst.ok(&["image", "pull", &image]);
    assert_eq!(src.blob_names(), dst.blob_names());
    let info = dst.ok(&["image", "inspect", &image, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["digest"], want.as_str());
    assert_eq!(v["manifest"]["layers"], serde_json::json!([]));
    let out = dst.ok(&[
        "run",
        &image,
        "--verify-image=false",
        "-e",
        "100ms",
        "--reports",
        "1",
        "-o",
        "json",
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap();
    assert!(rows.iter().any(|r| r["pid"] == std::process::id()), "{out}");
}

#[test]
fn login_logout_and_a_wrong_password() {
    let reg = Registry::start_with_auth("tester", "s3cret");
    let env = Env::new();
    let image = format!("{}/private/minimal:v1", reg.host());
    env.store.build(&minimal(), &image);

    // Not logged in: the registry's 401 is explained.
    let err = env.fails(&["image", "push", &image]);
    assert!(
        err.contains("requires authentication") && err.contains(&reg.host()),
        "{err}"
    );
    assert!(err.contains(&format!("ig login {}", reg.host())), "{err}");

    // A wrong password is refused at login and nothing is stored.
    let err = env.fails(&["login", &reg.host(), "-u", "tester", "-p", "wrong"]);
    assert!(
        err.contains("refused the credentials") && err.contains("401"),
        "{err}"
    );
    assert!(!env.auth.exists());

    // The right one, from stdin.
    let mut c = env.cmd(&["login", &reg.host(), "-u", "tester", "--password-stdin"]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Login Succeeded"));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&env.auth).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&env.auth).unwrap()).unwrap();
    assert_eq!(
        file["auths"][reg.host()]["auth"],
        "dGVzdGVyOnMzY3JldA==",
        "base64(tester:s3cret)"
    );

    env.ok(&["image", "push", &image]);
    let other = Env {
        store: TestStore::new(),
        auth: env.auth.clone(),
    };
    other.ok(&["image", "pull", &image]);

    // A stored password that became wrong: pull names the 401.
    let bad = TestStore::new();
    let bad_auth = bad.dir.path().join("auth.json");
    std::fs::write(
        &bad_auth,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"dGVzdGVyOndyb25n"}}}}}}"#,
            reg.host()
        ),
    )
    .unwrap();
    let bad = Env {
        store: bad,
        auth: bad_auth,
    };
    bad.seed();
    let err = bad.fails_leaving_store_unchanged(&["image", "pull", &image]);
    assert!(
        err.contains("refused the credentials") && err.contains("401 Unauthorized"),
        "{err}"
    );

    env.ok(&["logout", &reg.host()]);
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&env.auth).unwrap()).unwrap();
    assert!(file["auths"].get(reg.host()).is_none(), "{file}");
    let err = env.fails(&["image", "push", &image]);
    assert!(err.contains("requires authentication"), "{err}");
}

/// A fake `docker-credential-NAME` in `dir`: it records the server URL
/// it was given on stdin in `dir/NAME.asked`, then answers as `script`
/// (shell) says.
fn fake_helper(dir: &std::path::Path, name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(format!("docker-credential-{name}"));
    let asked = dir.join(format!("{name}.asked"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || {{ echo \"unexpected: $*\" >&2; exit 9; }}\nread -r url\nprintf '%s\\n' \"$url\" >> '{}'\n{script}\n",
            asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Issue 29: credential helpers named by `credsStore` and `credHelpers`
/// (in the credentials file given, or docker's under `$DOCKER_CONFIG`) are
/// run, with the registry's URL on stdin, before pulling anonymously; one
/// that has nothing for the registry means anonymous; one that fails is
/// named in the error. Fake helpers on `PATH`, the htpasswd registry.
#[test]
fn credential_helpers_are_run_and_a_failing_one_is_named() {
    let reg = Registry::start_with_auth("tester", "s3cret");
    let host = reg.host();
    let helpers = tempfile::tempdir().unwrap();
    fake_helper(
        helpers.path(),
        "igtest",
        &format!(
            "if [ \"$url\" = '{host}' ]; then echo '{{\"ServerURL\":\"{host}\",\"Username\":\"tester\",\"Secret\":\"s3cret\"}}'; else echo 'credentials not found in native keychain'; exit 1; fi"
        ),
    );
    fake_helper(
        helpers.path(),
        "empty",
        "echo 'credentials not found in native keychain'; exit 1",
    );
    fake_helper(
        helpers.path(),
        "broken",
        "echo 'the keyring is locked' >&2; exit 3",
    );
    let path = format!(
        "{}:{}",
        helpers.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let asked = |name: &str| {
        std::fs::read_to_string(helpers.path().join(format!("{name}.asked"))).unwrap_or_default()
    };

    let env = Env::new();
    let image = format!("{host}/private/minimal:v1");
    env.store.build(&minimal(), &image);
    let with_path =
        |env: &Env, args: &[&str]| -> Output { output_within(env.cmd(args).env("PATH", &path)) };

    // credsStore in the credentials file given: the helper logs in.
    std::fs::write(&env.auth, r#"{"credsStore":"igtest"}"#).unwrap();
    let out = with_path(&env, &["image", "push", &image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        asked("igtest").lines().all(|l| l == host),
        "{}",
        asked("igtest")
    );
    assert!(!asked("igtest").is_empty(), "the helper was run");

    // credHelpers wins over credsStore, for its registry only; a helper
    // with nothing for the registry means anonymous, and the registry's
    // 401 says so.
    std::fs::write(
        &env.auth,
        format!(r#"{{"credsStore":"igtest","credHelpers":{{"{host}":"empty"}}}}"#),
    )
    .unwrap();
    let out = with_path(&env, &["image", "pull", &image]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("requires authentication"), "{err}");
    assert_eq!(asked("empty").trim(), host);

    // A failing helper is an error that names it and says what it said.
    std::fs::write(&env.auth, r#"{"credsStore":"broken"}"#).unwrap();
    let out = with_path(&env, &["image", "pull", &image]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("the credential helper for {host}"))
            && err.contains("docker-credential-broken get failed")
            && err.contains("the keyring is locked"),
        "{err}"
    );
    // One not on PATH too.
    std::fs::write(&env.auth, r#"{"credsStore":"nosuchhelper"}"#).unwrap();
    let err = env.fails(&["image", "pull", &image]);
    assert!(
        err.contains("cannot run docker-credential-nosuchhelper"),
        "{err}"
    );

    // Docker's config.json under $DOCKER_CONFIG, without --authfile (ig's
    // own /var/lib/ig/config.json has nothing for this fresh port).
    let docker = tempfile::tempdir().unwrap();
    std::fs::write(
        docker.path().join("config.json"),
        format!(r#"{{"credHelpers":{{"{host}":"igtest"}}}}"#),
    )
    .unwrap();
    let pulled = TestStore::new();
    let out = output_within(
        pulled
            .ig()
            .args(["image", "pull", &image])
            .env_remove("REGISTRY_AUTH_FILE")
            .env("DOCKER_CONFIG", docker.path())
            .env("PATH", &path),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Pulled"),
        "{}",
        text(&out.stdout)
    );
}

/// skopeo reads what we push and export, and we read what it copies.
#[test]
fn skopeo_interop_registry_and_archives() {
    let reg = Registry::start();
    let env = Env::new();
    let ours = format!("{}/interop/minimal:v1", reg.host());
    env.store.build(&minimal(), &ours);
    env.ok(&["image", "push", &ours]);
    let digest = env
        .listed_digest(&format!("{}/interop/minimal", reg.host()))
        .unwrap();
    let skopeo = |args: &[&str]| {
        let out = output_within(Command::new("skopeo").args(args));
        assert!(
            out.status.success(),
            "skopeo {args:?} (apt-get install skopeo): {}",
            text(&out.stderr)
        );
        out.stdout
    };

    // Registry → skopeo: the index it reads is the one we stored.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{ours}"),
    ]);
    let stored = std::fs::read(
        env.store
            .path()
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();
    assert_eq!(raw, stored);

    // Registry → skopeo → oci-archive → ig image import.
    let tmp = tempfile::tempdir().unwrap();
    let sk_tar = tmp.path().join("from-skopeo.tar");
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{ours}"),
        &format!("oci-archive:{}:{ours}", sk_tar.display()),
    ]);
    let imported = Env::new();
    let out = imported.ok(&["image", "import", sk_tar.to_str().unwrap()]);
    assert!(out.contains(&digest), "{out}");
    assert_eq!(
        imported.listed_digest(&format!("{}/interop/minimal", reg.host())),
        Some(digest.clone())
    );

    // ig image export → oci-archive → skopeo → registry → ig image pull.
    let our_tar = tmp.path().join("from-ig.tar");
    env.ok(&["image", "export", &ours, our_tar.to_str().unwrap()]);
    let copied = format!("{}/interop/copied:v2", reg.host());
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}:{ours}", our_tar.display()),
        &format!("docker://{copied}"),
    ]);
    let pulled = Env::new();
    pulled.ok(&["image", "pull", &copied]);
    assert_eq!(
        pulled.listed_digest(&format!("{}/interop/copied", reg.host())),
        Some(digest.clone())
    );
    // And the archive round trip through ig alone.
    let again = Env::new();
    again.ok(&["image", "import", our_tar.to_str().unwrap()]);
    assert_eq!(
        again.listed_digest(&format!("{}/interop/minimal", reg.host())),
        Some(digest)
    );
}

/// `ig run` pulls a missing image (phase one reads its parameters, so
/// `--help` shows them without running anything), `--pull never` works
/// offline from the store, and `--pull always` goes to the registry.
#[test]
fn run_pulls_missing_images_and_never_works_offline() {
    let reg = Registry::start();
    let src = Env::new();
    let image = format!("{}/run/minimal:v1", reg.host());
    src.store.build(&minimal(), &image);
    src.ok(&["image", "push", &image]);

    // `--help` keeps these checks free of privileges: without the image,
    // the help says why the gadget's flags are missing.
    let env = Env::new();
    // Help text is wrapped: compare with single spaces.
    let words = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let help = words(env.ok(&["run", &image, "--pull", "never", "--help"]));
    assert!(help.contains("is not in the local store"), "{help}");
    assert!(!help.contains("--value <UINT32>"), "{help}");

    // The pulled image is unsigned: verification (on by default, with
    // upstream's built-in key) refuses it before its gadget.yaml is read,
    // and the help says so instead of listing the gadget's flags.
    let help = words(env.ok(&["run", &image, "--help"]));
    assert!(help.contains("refusing to run"), "{help}");
    assert!(!help.contains("--value <UINT32>"), "{help}");
    let out = env.run(&["run", &image, "--verify-image=false", "--help"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("--value <UINT32>"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(text(&out.stderr), "", "nothing but help on a pipe");
    assert!(
        env.listed_digest(&format!("{}/run/minimal", reg.host()))
            .is_some()
    );

    // Offline: the registry is gone, the store is enough.
    let host = reg.host();
    drop(reg);
    let out = env.run(&[
        "run",
        &image,
        "--pull",
        "never",
        "--verify-image=false",
        "--help",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("--value <UINT32>"));
    let out = env.run(&["run", &image, "--help"]);
    assert!(out.status.success(), "missing = present: no network");
    env.ok(&["image", "inspect", &image, "--show-datasources"]);
    let help = words(env.ok(&["run", &image, "--pull", "always", "--help"]));
    assert!(
        help.contains(&format!("cannot reach registry {host}")),
        "{help}"
    );
}

/// On a terminal, pull draws a bar per blob; on a pipe (the other tests)
/// stderr stays empty.
#[test]
fn progress_only_on_a_terminal() {
    let reg = Registry::start();
    let src = Env::new();
    let image = format!("{}/tty/minimal:v1", reg.host());
    src.store.build(&minimal(), &image);
    src.ok(&["image", "push", &image]);
    let env = Env::new();
    let line = format!(
        "{} image pull {image}",
        common::ig_bin() // no shell metacharacters in these paths
    );
    let out = output_within(
        Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("IG_STORE", env.store.path())
            .env("REGISTRY_AUTH_FILE", &env.auth),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let screen = text(&out.stdout);
    assert!(
        screen.contains("pulled") && screen.contains("ebpf") && screen.contains("Pulled "),
        "{screen}"
    );
}

/// `ig image inspect`: summary, JSON, YAML and columns, with and
/// without the data sources read from the object.
#[test]
fn inspect_shows_manifest_annotations_and_datasources() {
    let env = Env::new();
    env.store.build(&minimal(), "minimal_tracer");
    let summary = env.ok(&["image", "inspect", "minimal_tracer"]);
    for want in [
        "Reference:  ghcr.io/inspektor-gadget/gadget/minimal_tracer:latest",
        "Digest:     sha256:",
        "org.opencontainers.image.title: minimal_tracer",
        "application/vnd.gadget.ebpf.program.v1+binary",
    ] {
        assert!(summary.contains(want), "{want} in {summary}");
    }
    assert!(!summary.contains("Data source"), "{summary}");

    let json = env.ok(&[
        "image",
        "inspect",
        "minimal_tracer",
        "-o",
        "json",
        "--show-datasources",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["manifest"]["artifactType"],
        "application/vnd.gadget.v1+binary"
    );
    assert_eq!(
        v["annotations"]["org.opencontainers.image.title"],
        "minimal_tracer"
    );
    let ds = &v["dataSources"][0];
    assert_eq!(ds["name"], "minimal");
    let fields: Vec<(&str, &str)> = ds["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    for want in [
        ("proc.comm", "string"),
        ("proc.pid", "uint32"),
        ("value", "uint32"),
    ] {
        assert!(fields.contains(&want), "{want:?} in {fields:?}");
    }

    let yaml = env.ok(&["image", "inspect", "minimal_tracer", "-o", "yaml"]);
    assert!(
        yaml.contains("mediaType: application/vnd.oci.image.index.v1+json"),
        "{yaml}"
    );
    let cols = env.ok(&[
        "image",
        "inspect",
        "minimal_tracer",
        "-o",
        "columns",
        "--show-datasources",
    ]);
    let header: Vec<&str> = cols.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["DATASOURCE", "FIELD", "TYPE", "TAGS"]);
    assert!(
        cols.lines().any(|l| l
            .split_whitespace()
            .take(3)
            .eq(["minimal", "proc.pid", "uint32"])),
        "{cols}"
    );
    let err = env.fails(&["image", "inspect", "absent"]);
    assert!(err.contains("is not in the local store"), "{err}");
}

// ------------------------------------------------------------- bad input

#[test]
fn bad_input_registry_answering_500() {
    let fake = FakeRegistry::start(|_, _| (500, "text/plain", b"internal error".to_vec()));
    let env = Env::new();
    env.seed();
    let err = env.fails_leaving_store_unchanged(&[
        "image",
        "pull",
        &format!("{}/x/gadget:v1", fake.host()),
    ]);
    assert!(
        err.contains(&format!("registry {} answered HTTP 500", fake.host()))
            && err.contains("internal error"),
        "{err}"
    );
}

/// A registry that answers a manifest request with a gigabyte: the body
/// is counted as it arrives and refused past 4 MiB (oci-client read it
/// whole first: 1 GiB took 1.07 GB of memory).
#[test]
fn bad_input_a_gigabyte_manifest_is_refused_after_4_mib_in_bounded_memory() {
    let fake = FakeRegistry::start_with(|_, path| {
        if path.contains("/manifests/") {
            Reply::Stream {
                content_type: "application/vnd.oci.image.index.v1+json",
                body: vec![b' '; 1 << 20],
                total: 1 << 30,
            }
        } else {
            Reply::Full((200, "application/json", b"{}".to_vec()))
        }
    });
    let env = Env::new();
    env.seed();
    let before = env.index_json();
    let image = format!("{}/x/gadget:v1", fake.host());
    let (out, rss_kib) =
        common::output_and_peak_rss(&mut env.cmd(&["image", "pull", &image]), COMMAND_TIMEOUT);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("manifest of")
            && err.contains("is larger than 4194304 bytes (reading stopped there)"),
        "{err}"
    );
    assert!(rss_kib < 100 << 10, "peak RSS {rss_kib} KiB");
    assert_eq!(before, env.index_json());
}

#[test]
fn bad_input_truncated_blob() {
    let reg = Registry::start();
    let src = Env::new();
    let image = format!("{}/trunc/minimal:v1", reg.host());
    src.store.build(&minimal(), &image);
    src.ok(&["image", "push", &image]);
    // Cut the registry's copy of the biggest blob (the eBPF object).
    let json = src.ok(&["image", "inspect", &image, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let layer = v["manifest"]["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = reg.blob_file(&layer);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();

    let env = Env::new();
    env.seed();
    let err = env.fails_leaving_store_unchanged(&["image", "pull", &image]);
    assert!(
        err.contains(&format!("blob {layer}")) && err.contains("failed verification"),
        "{err}"
    );
    assert!(
        err.contains(&format!("size is {} bytes", bytes.len() / 2)),
        "{err}"
    );
}

#[test]
fn bad_input_manifest_with_unknown_media_type() {
    const ODD: &str = "application/vnd.example.thing.v1+json";
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{ODD}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"layers":[]}}"#
    );
    let fake = FakeRegistry::start(move |_, path| {
        if path.contains("/manifests/") {
            (200, ODD, body.clone().into_bytes())
        } else {
            (200, "application/json", b"{}".to_vec())
        }
    });
    let env = Env::new();
    env.seed();
    let err = env.fails_leaving_store_unchanged(&[
        "image",
        "pull",
        &format!("{}/x/gadget:v1", fake.host()),
    ]);
    assert!(
        err.contains("unsupported manifest media type") && err.contains(ODD),
        "{err}"
    );
}

#[test]
fn bad_input_index_without_this_architecture() {
    let reg = Registry::start();
    let src = Env::new();
    let image = format!("{}/foreign/gadget:v1", reg.host());
    let host = ig::image::oci::host_architecture();
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    ig::image::Store::open(src.store.path())
        .unwrap()
        .add_multi_platform_image(
            &ig::image::Reference::parse(&image).unwrap(),
            b"name: foreign\n",
            &Default::default(),
            &[ig::image::PlatformObjects {
                architecture: other.into(),
                ebpf_object: b"not for this machine".to_vec(),
                ..Default::default()
            }],
        )
        .unwrap();
    src.ok(&["image", "push", &image]);

    let env = Env::new();
    env.seed();
    let err = env.fails_leaving_store_unchanged(&["image", "pull", &image]);
    assert!(
        err.contains(&format!(
            "has no manifest for architecture {host} (available: {other})"
        )),
        "{err}"
    );
}

#[test]
fn bad_input_tag_that_does_not_exist() {
    let reg = Registry::start();
    let src = Env::new();
    let image = format!("{}/tags/minimal:v1", reg.host());
    src.store.build(&minimal(), &image);
    src.ok(&["image", "push", &image]);

    let env = Env::new();
    env.seed();
    let missing = format!("{}/tags/minimal:nope", reg.host());
    let err = env.fails_leaving_store_unchanged(&["image", "pull", &missing]);
    assert!(
        err.contains(&format!("{missing} not found in registry {}", reg.host())),
        "{err}"
    );
    // A repository that does not exist either.
    let err = env.fails_leaving_store_unchanged(&[
        "image",
        "pull",
        &format!("{}/nothing/here:v1", reg.host()),
    ]);
    assert!(err.contains("not found in registry"), "{err}");
}

/// A gadget manifest (empty config, one eBPF layer of `layer`) as JSON.
fn manifest_with_layer(layer: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2
        },
        "layers": [{
            "mediaType": "application/vnd.gadget.ebpf.program.v1+binary",
            "digest": ig::image::Digest::sha256_of(layer).to_string(),
            "size": layer.len()
        }]
    }))
    .unwrap()
}

#[test]
fn bad_input_blob_answering_500() {
    let layer = b"the eBPF object".to_vec();
    let manifest = manifest_with_layer(&layer);
    let fake = FakeRegistry::start(move |_, path| {
        if path.contains("/manifests/") {
            (
                200,
                "application/vnd.oci.image.manifest.v1+json",
                manifest.clone(),
            )
        } else if path.contains("/blobs/") {
            (500, "text/plain", b"blob backend down".to_vec())
        } else {
            (200, "application/json", b"{}".to_vec())
        }
    });
    let env = Env::new();
    env.seed();
    let image = format!("{}/x/gadget:v1", fake.host());
    let err = env.fails_leaving_store_unchanged(&["image", "pull", &image]);
    let digest = ig::image::Digest::sha256_of(&layer);
    assert!(
        err.contains(&format!(
            "registry {} answered HTTP 500 for blob {digest} of {image}: blob backend down",
            fake.host()
        )),
        "{err}"
    );
    assert!(
        fake.requests().iter().any(|r| r.contains("/blobs/")),
        "{:?}",
        fake.requests()
    );
}

/// The media type of a gadget manifest (`manifest_with_layer`).
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A fake registry serving one gadget image (`manifest_with_layer(layer)`,
/// its config `{}`) under any name, with no signature; requests `pick`
/// claims (by path) get its answer instead.
fn gadget_registry(
    layer: Vec<u8>,
    pick: impl Fn(&str) -> Option<Reply> + Send + Sync + 'static,
) -> FakeRegistry {
    let manifest = manifest_with_layer(&layer);
    let layer_digest = ig::image::Digest::sha256_of(&layer).to_string();
    FakeRegistry::start_with(move |_, path| {
        if let Some(r) = pick(path) {
            return r;
        }
        Reply::Full(if path.ends_with(".sig") {
            (
                404,
                "application/json",
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no signature"}]}"#.to_vec(),
            )
        } else if path.contains("/manifests/") {
            (200, MANIFEST, manifest.clone())
        } else if path.ends_with(&layer_digest) {
            (200, "application/octet-stream", layer.clone())
        } else if path.contains("/blobs/") {
            (200, "application/octet-stream", b"{}".to_vec())
        } else {
            (200, "application/json", b"{}".to_vec())
        })
    })
}

/// `ig image pull --registry-timeout 1 IMAGE` fails within two timeouts
/// and some slack, the store unchanged, saying `said`; returns stderr.
fn pull_gives_up_within_the_timeout(env: &Env, image: &str, said: &str) -> String {
    let start = Instant::now();
    let err =
        env.fails_leaving_store_unchanged(&["image", "pull", "--registry-timeout", "1", image]);
    assert!(err.contains(said), "{err}");
    // oci-client's authentication probe (`GET /v2/`, whose failure it
    // keeps to itself) and the request: two timeouts at most.
    let took = start.elapsed();
    assert!(took < Duration::from_secs(6), "{took:?}");
    err
}

/// A registry that accepts connections, reads the request and never
/// answers: `ig image pull` fails after `--registry-timeout`, naming the
/// registry and the request, with a hint, the store unchanged; so does
/// `ig run --pull always` with the timeout set by the configuration key's
/// variable. (Before: nothing bounded the wait but a fixed 60 s, and
/// there was no way to change it.)
#[test]
fn a_registry_that_never_answers_fails_within_the_timeout() {
    let fake = FakeRegistry::start_with(|_, _| Reply::Silent);
    let env = Env::new();
    env.seed();
    let image = format!("{}/x/gadget:v1", fake.host());
    let said = format!(
        "no answer from registry {} for 1 s to the request for manifest of {image}",
        fake.host()
    );
    let err = pull_gives_up_within_the_timeout(&env, &image, &said);
    assert!(
        err.contains("hint: ") && err.contains("--registry-timeout 2m"),
        "{err}"
    );

    let start = Instant::now();
    let out = output_within(
        env.cmd(&["run", &image, "--pull", "always"])
            .env("INSPEKTOR_GADGET_OPERATOR_OCI_REGISTRY_TIMEOUT", "1s"),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&said), "{err}");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(6), "{took:?}");
}

/// A registry that sends the headers of an answer, or part of its body,
/// and then nothing while keeping the connection open: for a manifest and
/// for a blob the pull fails after the timeout, saying what it was
/// reading from which registry, the store unchanged.
#[test]
fn a_registry_that_stalls_in_the_middle_of_an_answer_fails_within_the_timeout() {
    let layer = b"the eBPF object, sent in two halves".to_vec();
    let digest = ig::image::Digest::sha256_of(&layer).to_string();
    let env = Env::new();
    env.seed();

    let fake = gadget_registry(layer.clone(), |path| {
        path.ends_with("/manifests/v1").then(|| Reply::Partial {
            content_type: MANIFEST,
            length: 500,
            body: Vec::new(),
        })
    });
    let image = format!("{}/x/gadget:v1", fake.host());
    let said = format!(
        "no data for 1 s while reading manifest of {image} from registry {}",
        fake.host()
    );
    pull_gives_up_within_the_timeout(&env, &image, &said);

    let (half, whole, d) = (
        layer[..layer.len() / 2].to_vec(),
        layer.len() as u64,
        digest.clone(),
    );
    let fake = gadget_registry(layer.clone(), move |path| {
        path.ends_with(&d).then(|| Reply::Partial {
            content_type: "application/octet-stream",
            length: whole,
            body: half.clone(),
        })
    });
    let image = format!("{}/x/gadget:v1", fake.host());
    let said = format!(
        "no data for 1 s while reading blob {digest} of {image} from registry {}",
        fake.host()
    );
    pull_gives_up_within_the_timeout(&env, &image, &said);
}

/// A blob's read ends at its descriptor's size, whatever the registry
/// announces: a `Content-Length` of 1 TiB with the whole blob and the
/// connection kept open, the same with bytes past the blob, and a
/// `Content-Length` that counts such bytes on a closed connection. Each
/// pull succeeds at once (the default timeout is 30 s), and the stored
/// blob is the descriptor's bytes exactly. (Before: the pull waited for
/// the read timeout, or failed on the extra bytes.)
#[test]
fn a_blob_read_ends_at_the_descriptors_size_whatever_the_registry_announces() {
    let layer = b"the eBPF object and nothing more".to_vec();
    let digest = ig::image::Digest::sha256_of(&layer).to_string();
    let more = [&layer[..], b"trailing bytes the descriptor does not count"].concat();
    let cases = [
        ("1 TiB announced, the blob sent", Some(layer.clone())),
        (
            "1 TiB announced, more than the blob sent",
            Some(more.clone()),
        ),
        ("more than the blob, announced and sent", None),
    ];
    for (what, open) in cases {
        let (d, more) = (digest.clone(), more.clone());
        let fake = gadget_registry(layer.clone(), move |path| {
            path.ends_with(&d).then(|| match &open {
                Some(body) => Reply::Partial {
                    content_type: "application/octet-stream",
                    length: 1 << 40,
                    body: body.clone(),
                },
                None => Reply::Full((200, "application/octet-stream", more.clone())),
            })
        });
        let env = Env::new();
        let image = format!("{}/x/gadget:v1", fake.host());
        let start = Instant::now();
        env.ok(&["image", "pull", &image]);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: {:?}",
            start.elapsed()
        );
        let hex = digest.trim_start_matches("sha256:");
        let stored = std::fs::read(env.store.path().join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(stored, layer, "{what}");
    }
}

/// A registry serving other bytes of the same size for a blob: the
/// digest check catches it, names the blob, and nothing is stored.
#[test]
fn bad_input_blob_with_the_right_size_and_a_wrong_hash() {
    let reg = Registry::start();
    let src = Env::new();
    let image = format!("{}/swapped/minimal:v1", reg.host());
    src.store.build(&minimal(), &image);
    src.ok(&["image", "push", &image]);
    let json = src.ok(&["image", "inspect", &image, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let layer = v["manifest"]["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let actual = ig::image::Digest::sha256_of(&bytes);

    let env = Env::new();
    env.seed();
    let err = env.fails_leaving_store_unchanged(&["image", "pull", &image]);
    assert!(
        err.contains(&format!(
            "blob {layer} of {image} failed verification: content hashes to {actual}"
        )),
        "{err}"
    );
    // No session or temp file is left behind either.
    let ingest: Vec<_> = std::fs::read_dir(env.store.path().join("ingest"))
        .unwrap()
        .collect();
    assert!(ingest.is_empty(), "{ingest:?}");
}

/// An index whose manifest for this machine has a media type that is not a
/// manifest: refused by name before anything is stored.
#[test]
fn bad_input_index_child_with_unknown_media_type() {
    const ODD: &str = "application/vnd.example.thing.v1+json";
    let child = manifest_with_layer(b"object");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": ODD,
            "digest": ig::image::Digest::sha256_of(&child).to_string(),
            "size": child.len(),
            "platform": {"architecture": ig::image::oci::host_architecture(), "os": "linux"}
        }]
    }))
    .unwrap();
    let fake = FakeRegistry::start(move |_, path| {
        if path.ends_with("/manifests/v1") {
            (
                200,
                "application/vnd.oci.image.index.v1+json",
                index.clone(),
            )
        } else if path.contains("/manifests/") {
            (200, ODD, child.clone())
        } else {
            (200, "application/json", b"{}".to_vec())
        }
    });
    let env = Env::new();
    env.seed();
    let image = format!("{}/x/gadget:v1", fake.host());
    let err = env.fails_leaving_store_unchanged(&["image", "pull", &image]);
    assert!(
        err.contains(&format!(
            "{image}: unsupported manifest media type \"{ODD}\""
        )),
        "{err}"
    );
    // Refused from the index alone: the child was never requested.
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.contains("/manifests/sha256:")),
        "{:?}",
        fake.requests()
    );
}

/// `ig run IMAGE --pull bogus` is refused by clap before phase one pulls
/// anything: not a single connection reaches the registry.
#[test]
fn a_bad_pull_value_is_refused_before_any_request() {
    let fake = FakeRegistry::start(|_, _| (500, "text/plain", b"should not be asked".to_vec()));
    let env = Env::new();
    let image = format!("{}/x/gadget:v1", fake.host());
    for args in [
        &["run", &image, "--pull", "bogus"][..],
        &["run", &image, "--pull=Always"],
    ] {
        let out = env.run(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("invalid value"), "{err}");
        assert!(err.contains("--pull"), "{err}");
    }
    assert_eq!(fake.requests(), Vec::<String>::new());
}

/// `--allowed-gadgets` rules that the name alone decides refuse the image
/// before it is pulled; a digest rule needs the image, so it is pulled.
#[test]
fn allowed_gadgets_refuse_a_name_before_any_request() {
    let fake = FakeRegistry::start(|_, _| (500, "text/plain", b"registry asked".to_vec()));
    let env = Env::new();
    let image = format!("{}/x/gadget:v1", fake.host());
    let err = env.fails(&[
        "run",
        &image,
        "--allowed-gadgets",
        "trace_exec,docker.io/*",
        "--allowed-gadgets",
        &format!("{}/x/gadget:v2", fake.host()),
    ]);
    assert!(
        err.contains(&format!(
            "refusing to run {image}: image {image} is not in --allowed-gadgets (trace_exec, docker.io/*, {}/x/gadget:v2)",
            fake.host()
        )),
        "{err}"
    );
    assert_eq!(fake.requests(), Vec::<String>::new());
    assert_eq!(
        env.listed_digest(&format!("{}/x/gadget", fake.host())),
        None
    );

    // A digest rule cannot be decided by name: the pull goes ahead (and
    // meets this registry's 500).
    let err = env.fails(&[
        "run",
        &image,
        "--allowed-gadgets",
        &format!("trace_exec,sha256:{}", "0".repeat(64)),
    ]);
    assert!(err.contains("answered HTTP 500"), "{err}");
    assert!(!fake.requests().is_empty());
}

/// `--pull always` follows a tag moved in the registry; `missing` keeps
/// what the store has.
#[test]
fn pull_always_follows_a_moved_tag() {
    let reg = Registry::start();
    let src = Env::new();
    let image = format!("{}/moving/minimal:v1", reg.host());
    let repo = format!("{}/moving/minimal", reg.host());
    let push_at = |epoch: u64| {
        let out = output_within(
            src.cmd(&["image", "build", minimal().to_str().unwrap(), "-t", &image])
                .env("SOURCE_DATE_EPOCH", epoch.to_string()),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        src.ok(&["image", "push", &image]);
        src.listed_digest(&repo).unwrap()
    };
    let first = push_at(1_000);
    let env = Env::new();
    env.ok(&["run", &image, "--help"]);
    assert_eq!(env.listed_digest(&repo), Some(first.clone()));

    let second = push_at(2_000);
    assert_ne!(first, second);
    env.ok(&["run", &image, "--help"]);
    assert_eq!(env.listed_digest(&repo), Some(first), "missing: no pull");
    env.ok(&["run", &image, "--pull", "always", "--help"]);
    assert_eq!(env.listed_digest(&repo), Some(second), "always: followed");
}

/// A registry that is not on a loopback name ig trusts (here 127.0.0.2)
/// is reached over TLS: a plain-HTTP one fails with a clear error and a
/// hint, and works once listed in --insecure-registries.
#[test]
fn tls_unless_insecure_registries_for_other_hosts() {
    let reg = Registry::start_on("127.0.0.2");
    let host = reg.host();
    let image = format!("{host}/tls/minimal:v1");
    let src = Env::new();
    src.store.build(&minimal(), &image);
    let err = src.fails(&["image", "push", &image]);
    assert!(
        err.contains(&format!("cannot reach registry {host} over HTTPS")),
        "{err}"
    );
    src.ok(&["image", "push", &image, "--insecure-registries", &host]);

    let env = Env::new();
    env.seed();
    let err = env.fails_leaving_store_unchanged(&["image", "pull", &image]);
    assert!(
        err.contains(&format!("cannot reach registry {host} over HTTPS"))
            && err.contains(&format!(
                "hint: if {host} serves plain HTTP, add `--insecure-registries {host}`"
            )),
        "{err}"
    );
    // The host without its port is accepted too, as the flag's help says.
    env.ok(&[
        "image",
        "pull",
        &image,
        "--insecure-registries",
        "127.0.0.2",
    ]);
    assert_eq!(
        env.listed_digest(&format!("{host}/tls/minimal")),
        src.listed_digest(&format!("{host}/tls/minimal"))
    );
}

/// Without --authfile, push and pull use docker's credentials for a
/// registry ig's own file does not know, and `ig logout` says so instead
/// of claiming the user is logged out. With --authfile, that file alone.
#[test]
fn docker_credentials_are_used_and_logout_names_them() {
    let reg = Registry::start_with_auth("tester", "s3cret");
    let host = reg.host();
    let image = format!("{host}/dock/minimal:v1");
    let env = Env::new();
    env.store.build(&minimal(), &image);
    let home = env.store.dir.path().join("home");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    let docker = home.join(".docker/config.json");
    std::fs::write(
        &docker,
        format!(r#"{{"auths":{{"{host}":{{"auth":"dGVzdGVyOnMzY3JldA=="}}}}}}"#),
    )
    .unwrap();
    // ig's own file (/var/lib/ig/config.json) is only read here: this
    // random port is in no file of this machine but docker's above.
    let ig = |args: &[&str]| {
        let mut c = env.store.ig();
        c.env_remove("REGISTRY_AUTH_FILE")
            .env("HOME", &home)
            .args(args);
        output_within(&mut c)
    };
    let out = ig(&["image", "push", &image, "-v"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!(
            "registry {host}: user tester from {}",
            docker.display()
        )),
        "{}",
        text(&out.stderr)
    );

    let before = std::fs::read(&docker).unwrap();
    let out = ig(&["logout", &host]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("not logged in to {host} with ig"))
            && err.contains(&docker.display().to_string())
            && err.contains(&format!("docker logout {host}")),
        "{err}"
    );
    // Nothing was changed: the credentials still work.
    assert_eq!(before, std::fs::read(&docker).unwrap());
    let out = ig(&["image", "push", &image]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // --authfile means that file alone: docker's is not read.
    let empty = env.store.dir.path().join("empty-auth.json");
    let out = ig(&[
        "image",
        "push",
        &image,
        "--authfile",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("requires authentication"),
        "{}",
        text(&out.stderr)
    );
    let out = ig(&["logout", &host, "--authfile", empty.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("not logged in to {host}")),
        "{}",
        text(&out.stderr)
    );
}

mod forms;
mod pull_run;
mod trust;
