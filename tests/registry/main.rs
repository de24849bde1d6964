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

/// A plain-HTTP GET on 127.0.0.1; the status code, if any answer came.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = format!("127.0.0.1:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    let line = String::from_utf8_lossy(&head[..n]).into_owned();
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry` on 127.0.0.1, killed when dropped.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        Self::start_inner(None)
    }

    /// With htpasswd (bcrypt) authentication for one user.
    fn start_with_auth(user: &str, password: &str) -> Self {
        Self::start_inner(Some((user, password)))
    }

    fn start_inner(auth: Option<(&str, &str)>) -> Self {
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
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_cfg}",
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
                if matches!(http_status(port, "/v2/"), Some(200 | 401)) {
                    return Registry { child, port, dir };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start: {failures:#?}");
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
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
/// `respond(method, path)` says, one connection at a time. Stops when
/// dropped, and on its own after a minute.
struct FakeRegistry {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

type Response = (u16, &'static str, Vec<u8>);

impl FakeRegistry {
    fn start(respond: impl Fn(&str, &str) -> Response + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut served = 0;
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline && served < 500 {
                match listener.accept() {
                    Ok((conn, _)) => {
                        served += 1;
                        let _ = serve_one(conn, &respond);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeRegistry {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn serve_one(
    mut conn: TcpStream,
    respond: &impl Fn(&str, &str) -> Response,
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
        first.next().unwrap_or_default(),
        first.next().unwrap_or_default(),
    );
    let (status, content_type, body) = respond(method, path);
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

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------------ tests

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
    assert!(help.contains("not found in the local store"), "{help}");
    assert!(!help.contains("--value <UINT32>"), "{help}");

    let out = env.run(&["run", &image, "--help"]);
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
    let out = env.run(&["run", &image, "--pull", "never", "--help"]);
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
    assert!(err.contains("not found"), "{err}");
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

mod trust;
