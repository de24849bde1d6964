//! `ig daemon` as its clients see it: a real daemon process on a unix
//! socket, driven by an independent Python client (grpcio, stubs
//! generated from our .proto in the test) and by our own tonic client;
//! what it holds in the kernel read from its `/proc/PID/fdinfo` and
//! checked with bpftool.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ig_api::grpc::gadget_manager_client::GadgetManagerClient;
use ig_api::proto::{GadgetControlRequest, GadgetRunRequest, gadget_control_request};
use ig_cli::cli::remote::{self, Address};

use super::common::{gadget_store, repo, text};
use super::{require_kernel, unique_program};

/// A daemon on a socket of its own, stopped with SIGTERM when dropped.
struct Daemon {
    child: Child,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start(extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ig-daemon-")
            .tempdir()
            .unwrap();
        let socket = dir.path().join("ig.socket");
        let child = gadget_store()
            .ig()
            .args(["daemon", "-H", &format!("unix://{}", socket.display())])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        // Connectable, not only there: the file exists between bind(2)
        // and listen(2), when a connect is refused.
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < end, "the daemon did not listen in 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, socket, dir }
    }

    /// A daemon on `tcp://127.0.0.1:PORT` (a port free a moment ago), once
    /// it accepts connections; `socket` is then unused.
    fn start_tcp(extra: &[&str]) -> (Self, String) {
        let dir = tempfile::Builder::new()
            .prefix("ig-daemon-")
            .tempdir()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("tcp://127.0.0.1:{port}");
        let mut child = gadget_store()
            .ig()
            .args(["daemon", "-H", &address])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                panic!("the daemon exited ({st}): {}", text(&out.stderr));
            }
            assert!(Instant::now() < end, "the daemon did not listen in 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let socket = dir.path().join("unused");
        (Self { child, socket, dir }, address)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the exit status and stderr.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read as _;
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (st, err);
            }
            assert!(Instant::now() < end, "the daemon did not exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The BPF objects `pid` holds descriptors of, as `kind:id`.
pub(super) fn held_by(pid: u32) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for e in dir {
        let Ok(info) = std::fs::read_to_string(e.unwrap().path()) else {
            continue;
        };
        for kind in ["prog", "map", "link"] {
            let key = format!("{kind}_id:");
            ids.extend(
                info.lines()
                    .filter_map(|l| l.strip_prefix(key.as_str()))
                    .map(|v| format!("{kind}:{}", v.trim())),
            );
        }
    }
    ids
}

fn exists(object: &str) -> bool {
    let (kind, id) = object.split_once(':').unwrap();
    Command::new("bpftool")
        .args([kind, "show", "id", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("bpftool")
        .success()
}

/// Wait until the daemon holds no BPF object and none of `seen` exists.
pub(super) fn assert_nothing_loaded(pid: u32, seen: &BTreeSet<String>, what: &str) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let held = held_by(pid);
        let left: Vec<&String> = seen.iter().filter(|o| exists(o)).collect();
        if held.is_empty() && left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < end,
            "{what}: the daemon holds {held:?}; still in the kernel: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn python() -> PathBuf {
    let p = repo().join("target/tools/grpc-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: `cargo xtask setup --deps-only` (or `cargo xtask test`) installs the tests' grpcio",
        p.display()
    );
    p
}

/// The Python client: GetInfo, GetGadgetInfo, RunGadget; an exec of a
/// uniquely named program decoded from the payload layout alone; a stop
/// ends the stream within 2 s. Nothing is left loaded afterwards.
#[test]
fn an_independent_python_client_runs_trace_exec() {
    require_kernel();
    let d = Daemon::start(&[]);
    let marker = unique_program(d.dir.path(), "pydmn");
    let out = Command::new(python())
        .arg(repo().join("tests/kernel/daemon_client.py"))
        .arg(repo().join("crates/ig-api/proto"))
        .arg(&d.socket)
        .arg(&marker)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Python client failed:\n{}",
        text(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["info_version"], "1.0");
    let params: Vec<&str> = r["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for p in [
        "operator.oci.ebpf.pid",
        "operator.oci.ebpf.comm",
        "operator.filter.filter",
    ] {
        assert!(params.contains(&p), "{p} missing from {params:?}");
    }
    let name = marker.file_name().unwrap().to_str().unwrap();
    // Upstream's form (one GadgetData per event), then batches (type 256),
    // which the client asked for.
    for (run, data_type) in [("single", 0), ("batched", 256)] {
        let r = &r[run];
        assert_eq!(
            r["first_type"], 4,
            "{run}: the GadgetInfo event comes first"
        );
        assert_eq!(r["seen"]["comm"], name, "{run}");
        assert!(r["seen"]["pid"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(r["data_types"], serde_json::json!([data_type]), "{run}");
        assert_eq!(r["seq_consecutive"], true, "{run}: {r}");
        let stop = r["stop_to_end_s"].as_f64().unwrap();
        assert!(
            stop < 2.0,
            "{run}: the stream ended {stop} s after the stop request"
        );
    }
    assert_nothing_loaded(d.pid(), &BTreeSet::new(), "after the stop");
    let (status, err) = d.terminate();
    assert!(status.success(), "daemon: {status}\n{err}");
}

/// A RunGadget of trace_exec on the daemon at `socket`, up to its first
/// event (the GadgetInfo): the request sender (dropping it closes the
/// client's side), the stream and that event.
async fn start_trace_exec(
    socket: &Path,
) -> (
    tokio::sync::mpsc::Sender<GadgetControlRequest>,
    tonic::Streaming<ig_api::proto::GadgetEvent>,
    ig_api::proto::GadgetEvent,
) {
    let ch = remote::connect(
        &Address::Unix(socket.to_owned()),
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let mut client = GadgetManagerClient::new(ch);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(GadgetControlRequest {
        event: Some(gadget_control_request::Event::RunRequest(
            GadgetRunRequest {
                image_name: "trace_exec".into(),
                version: 1,
                ..GadgetRunRequest::default()
            },
        )),
    })
    .await
    .unwrap();
    let mut stream = client
        .run_gadget(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().expect("a first event");
    (tx, stream, first)
}

/// A RunGadget whose client goes away once the run has started.
async fn start_and_drop(socket: &Path) {
    let (tx, stream, first) = start_trace_exec(socket).await;
    assert_eq!(first.r#type, ig_api::event_type::GADGET_INFO);
    // Keep `tx` alive up to here: the client does not close its side, it
    // disappears.
    drop(stream);
    drop(tx);
}

/// Clients that start a run and vanish: each run stops and unloads;
/// after 100 of them the daemon holds no BPF object, has no more threads
/// than before, and its RSS is within 10% of where it started.
#[test]
fn clients_that_vanish_leave_nothing_behind() {
    require_kernel();
    let d = Daemon::start(&["--events-buffer-length", "1024"]);
    // Multi-threaded: a dropped client's connection task goes on (and
    // closes its socket) while the test does other things.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // One run first: what a run loads once per process (BTF parsed,
    // allocator arenas) is in the baseline.
    rt.block_on(start_and_drop(&d.socket));
    // While a run is live, it holds programs: the check below is not
    // vacuous.
    let held_during = rt.block_on(async {
        let (_tx, stream, _) = start_trace_exec(&d.socket).await;
        let held = held_by(d.pid());
        drop(stream);
        held
    });
    assert!(
        held_during.iter().any(|o| o.starts_with("prog:")),
        "a live run holds programs: {held_during:?}"
    );
    assert_nothing_loaded(d.pid(), &held_during, "one client gone");
    std::thread::sleep(Duration::from_millis(500));
    let threads0 = threads_of(d.pid());
    let rss0 = rss_kib(d.pid());
    for _ in 0..100 {
        rt.block_on(start_and_drop(&d.socket));
    }
    assert_nothing_loaded(d.pid(), &held_during, "after 100 clients");
    let end = Instant::now() + Duration::from_secs(10);
    while threads_of(d.pid()) > threads0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    let threads = threads_of(d.pid());
    assert!(
        threads <= threads0,
        "threads: {threads0} before, {threads} after"
    );
    let rss = rss_kib(d.pid());
    assert!(
        rss * 10 <= rss0 * 11,
        "RSS grew from {rss0} KiB to {rss} KiB over 100 clients"
    );
    let (status, err) = d.terminate();
    assert!(status.success(), "daemon: {status}\n{err}");
}

/// SIGTERM during a run stops it cleanly: the daemon exits 0, the
/// client's stream ends, and nothing stays loaded.
#[test]
fn sigterm_stops_every_run() {
    require_kernel();
    let d = Daemon::start(&[]);
    // Multi-threaded: a dropped client's connection task goes on (and
    // closes its socket) while the test does other things.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let socket = d.socket.clone();
    let pid = d.pid();
    let (held, ended) = rt.block_on(async move {
        let (tx, mut stream, _) = start_trace_exec(&socket).await;
        let held = held_by(pid);
        // SAFETY: kill(2) on the test's daemon.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(Some(_)) = stream.message().await {}
        })
        .await
        .is_ok();
        drop(tx);
        (held, ended)
    });
    assert!(ended, "the stream did not end within 5 s of SIGTERM");
    assert!(held.iter().any(|o| o.starts_with("prog:")), "{held:?}");
    let (status, err) = d.terminate();
    assert!(status.success(), "daemon: {status}\n{err}");
    assert_nothing_loaded(pid, &held, "after SIGTERM");
}

/// `-G GROUP`: the socket is root:GROUP, mode 0660.
#[test]
fn the_socket_belongs_to_the_group() {
    require_kernel();
    let group = "igdaemontest";
    let _ = Command::new("groupadd").arg(group).output();
    let d = Daemon::start(&["-G", group]);
    let out = Command::new("stat")
        .args(["-c", "%a %U %G"])
        .arg(&d.socket)
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout).trim(), format!("660 root {group}"));
}

/// Starts each of `runs` (tracers printing JSON lines), execs `marker`
/// every 200 ms for 4 s while they start and run, and returns each one's
/// lines once it has exited successfully.
fn json_lines_while_exec(runs: Vec<(&str, Command)>, marker: &Path) -> Vec<Vec<serde_json::Value>> {
    let children: Vec<(&str, Child)> = runs
        .into_iter()
        .map(|(who, mut c)| {
            let child = c
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (who, child)
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        let _ = Command::new(marker).status();
        std::thread::sleep(Duration::from_millis(200));
    }
    children
        .into_iter()
        .map(|(who, child)| {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{who}: {}", text(&out.stderr));
            text(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
        .collect()
}

fn ensure_user(user: &str, group: Option<&str>) {
    if Command::new("id")
        .arg(user)
        .output()
        .unwrap()
        .status
        .success()
    {
        if let Some(g) = group {
            let _ = Command::new("usermod").args(["-a", "-G", g, user]).output();
        }
        return;
    }
    let mut c = Command::new("useradd");
    c.args(["-M", "-N", "-s", "/usr/sbin/nologin"]);
    if let Some(g) = group {
        c.args(["-G", g]);
    }
    let out = c.arg(user).output().unwrap();
    assert!(
        out.status.success(),
        "useradd {user}: {}",
        text(&out.stderr)
    );
}

/// `gadgetctl` as an unprivileged member of the daemon's group sees a
/// uniquely named exec through the daemon (it cannot load BPF itself);
/// a user outside the group is refused by the socket's mode.
#[test]
fn gadgetctl_as_a_group_member_sees_an_exec_and_others_are_refused() {
    require_kernel();
    use std::os::unix::fs::PermissionsExt as _;
    let group = "igdaemontest";
    let _ = Command::new("groupadd").arg(group).output();
    ensure_user("igdmember", Some(group));
    ensure_user("igdoutsider", None);
    let d = Daemon::start(&["-G", group]);
    // The test's directory: others may reach the socket, whose own mode
    // then decides.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let marker = unique_program(d.dir.path(), "ctlgrp");
    let name = marker.file_name().unwrap().to_str().unwrap().to_owned();
    let address = format!("unix://{}", d.socket.display());
    let gadgetctl = env!("CARGO_BIN_EXE_gadgetctl");
    let mut run = Command::new("runuser");
    run.args([
        "-u",
        "igdmember",
        "--",
        gadgetctl,
        "--remote-address",
        &address,
    ])
    .args([
        "run",
        "trace_exec",
        "-o",
        "json",
        "--comm",
        &name,
        "--timeout",
        "6",
    ]);
    let lines = json_lines_while_exec(vec![("gadgetctl", run)], &marker).remove(0);
    assert!(!lines.is_empty(), "no event");
    assert!(
        lines.iter().all(|l| l["proc"]["comm"] == name.as_str()),
        "the daemon applied --comm: {lines:?}"
    );
    let out = Command::new("runuser")
        .args([
            "-u",
            "igdoutsider",
            "--",
            gadgetctl,
            "--remote-address",
            &address,
            "version",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.to_lowercase().contains("permission denied"),
        "a non-member: {err}"
    );
}

/// Runs `openssl` with `args` in `dir`; it must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        text(&out.stderr)
    );
}

/// A CA (`NAME.pem`, `NAME.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// A certificate `NAME.pem` (key `NAME.key`) signed by the CA `ca`, with
/// the extensions `ext` (an openssl extension file's lines).
fn make_cert(dir: &Path, name: &str, ca: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// Mutual TLS on TCP, with a CA and certificates made here by openssl:
/// gadgetctl with a certificate of the daemon's client CA runs a gadget
/// and sees an exec; no client certificate (openssl s_client, as
/// gadgetctl, like upstream's, wants all three TLS files), a certificate
/// from another CA, and plain TCP are each refused, as is a daemon on
/// plain TCP without --tls-insecure.
#[test]
fn mutual_tls_accepts_the_ca_s_clients_only() {
    require_kernel();
    let dir = tempfile::Builder::new()
        .prefix("ig-daemon-tls-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_ca(d, "otherca");
    make_cert(
        d,
        "server",
        "ca",
        "subjectAltName=IP:127.0.0.1,DNS:igd.test\nextendedKeyUsage=serverAuth\n",
    );
    make_cert(d, "client", "ca", "extendedKeyUsage=clientAuth\n");
    make_cert(d, "stranger", "otherca", "extendedKeyUsage=clientAuth\n");
    let path = |f: &str| d.join(f).display().to_string();

    // Plain TCP needs --tls-insecure: without it (nor TLS) no daemon.
    let out = gadget_store()
        .ig()
        .args(["daemon", "-H", "tcp://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--tls-insecure"),
        "{}",
        text(&out.stderr)
    );

    let (daemon, address) = Daemon::start_tcp(&[
        "--tls-key-file",
        &path("server.key"),
        "--tls-cert-file",
        &path("server.pem"),
        "--tls-client-ca-file",
        &path("ca.pem"),
    ]);
    let gadgetctl = |client: Option<(&str, &str)>, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gadgetctl"));
        c.args(["--remote-address", &address, "--connection-timeout", "5"]);
        if let Some((cert, server_ca)) = client {
            c.args([
                "--tls-key-file",
                &path(&format!("{cert}.key")),
                "--tls-cert-file",
                &path(&format!("{cert}.pem")),
                "--tls-server-ca-file",
                &path(&format!("{server_ca}.pem")),
            ]);
        }
        c.args(extra);
        c
    };

    // The right certificate: a run through the daemon sees an exec.
    let marker = unique_program(d, "tlsexe");
    let name = marker.file_name().unwrap().to_str().unwrap().to_owned();
    let mut run = gadgetctl(Some(("client", "ca")), &["--tls-server-name", "igd.test"]);
    run.args([
        "run",
        "trace_exec",
        "-o",
        "json",
        "--comm",
        &name,
        "--timeout",
        "5",
    ]);
    let lines = json_lines_while_exec(vec![("gadgetctl", run)], &marker).remove(0);
    assert!(
        lines.iter().any(|l| l["proc"]["comm"] == name.as_str()),
        "no exec over TLS: {lines:?}"
    );
    // The server's name defaults to the address's IP, which the
    // certificate carries.
    let out = gadgetctl(Some(("client", "ca")), &["version"])
        .output()
        .unwrap();
    assert!(out.status.success(), "gadgetctl: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("daemon "),
        "{}",
        text(&out.stdout)
    );

    // Refused: a certificate from another CA, and plain TCP.
    for (what, client) in [
        ("a certificate from another CA", Some(("stranger", "ca"))),
        ("plain TCP", None),
    ] {
        let out = gadgetctl(client, &["version"]).output().unwrap();
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{what} was accepted");
        assert!(
            !text(&out.stdout).contains("daemon "),
            "{what}: {}",
            text(&out.stdout)
        );
        // Depending on timing: TLS 1.3's alert, or the connection the
        // daemon closed; gadgetctl names the likely cause either way.
        assert!(err.contains("TLS"), "{what}: {err}");
    }
    // A daemon certificate the client does not trust: gadgetctl refuses it.
    let out = gadgetctl(Some(("client", "otherca")), &["version"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("UnknownIssuer"),
        "{}",
        text(&out.stderr)
    );

    // No client certificate at all: the daemon ends the handshake with
    // TLS 1.3's certificate_required alert.
    let port = address.rsplit(':').next().unwrap();
    // `timeout`: a daemon that accepted the client would keep s_client
    // (-ign_eof) waiting.
    let out = Command::new("timeout")
        .args([
            "10",
            "openssl",
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-alpn",
            "h2",
        ])
        // -ign_eof: read until the daemon closes, or s_client may hang up
        // before the alert arrives.
        .args([
            "-CAfile",
            &path("ca.pem"),
            "-verify_return_error",
            "-ign_eof",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        all.contains("Verify return code: 0 (ok)"),
        "the daemon's certificate verifies: {all}"
    );
    assert!(all.contains("alert certificate required"), "{all}");
    let (status, err) = daemon.terminate();
    assert!(status.success(), "daemon: {status}\n{err}");
}

/// The same exec printed by `ig run -o json` and by `gadgetctl run -o
/// json` through the daemon: identical but for the time each program
/// read. Among its fields: owned strings set to "" (`error`, the
/// Kubernetes ones), which must not turn into `null` on the wire.
#[test]
fn gadgetctl_prints_what_ig_run_prints() {
    require_kernel();
    let d = Daemon::start(&[]);
    let marker = unique_program(d.dir.path(), "cmpjs");
    let name = marker.file_name().unwrap().to_str().unwrap().to_owned();
    let args = [
        "run",
        "trace_exec",
        "-o",
        "json",
        "--comm",
        &name,
        "--timeout",
        "6",
    ];
    let mut local = gadget_store().ig();
    local.args(args);
    let mut remote = Command::new(env!("CARGO_BIN_EXE_gadgetctl"));
    remote
        .args([
            "--remote-address",
            &format!("unix://{}", d.socket.display()),
        ])
        .args(args);
    let mut outs = json_lines_while_exec(vec![("ig run", local), ("gadgetctl", remote)], &marker);
    let by_pid = |lines: Vec<serde_json::Value>, who: &str| {
        lines
            .into_iter()
            .map(|mut v| {
                let o = v.as_object_mut().unwrap();
                assert!(o.remove("timestamp").is_some(), "{who}: {v}");
                assert!(o.remove("timestamp_raw").is_some(), "{who}: {v}");
                (v["proc"]["pid"].as_u64().unwrap(), v)
            })
            .collect::<std::collections::BTreeMap<u64, serde_json::Value>>()
    };
    let remote = by_pid(outs.pop().unwrap(), "gadgetctl");
    let local = by_pid(outs.pop().unwrap(), "ig run");
    let both: Vec<u64> = local
        .keys()
        .filter(|p| remote.contains_key(p))
        .copied()
        .collect();
    assert!(
        !both.is_empty(),
        "no exec seen by both: {local:?} / {remote:?}"
    );
    for pid in both {
        assert_eq!(remote[&pid], local[&pid], "pid {pid}");
    }
    assert_eq!(
        local.values().next().unwrap()["error"],
        "",
        "a string set to \"\""
    );
}

/// `gadgetctl run --timeout` takes what `ig run --timeout` takes: with a
/// unit (`1500ms`) the run ends by itself, exit 0; `0` runs until
/// stopped (still running after 4 s, Ctrl-C ends it cleanly).
#[test]
fn gadgetctl_timeout_takes_units_and_zero_runs_until_stopped() {
    require_kernel();
    let d = Daemon::start(&[]);
    let address = format!("unix://{}", d.socket.display());
    let gadgetctl = |timeout: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gadgetctl"));
        c.args([
            "--remote-address",
            &address,
            "run",
            "trace_exec",
            "-o",
            "json",
            "--timeout",
            timeout,
        ]);
        super::Running::spawn(&mut c)
    };
    // Bounds a hang; not a measure of the timeout.
    let (status, err, _) = gadgetctl("1500ms").wait_all(Duration::from_secs(30));
    assert!(status.success(), "--timeout 1500ms: {status}\n{err}");
    let mut forever = gadgetctl("0");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        forever.child.try_wait().unwrap().is_none(),
        "--timeout 0 ended the run by itself"
    );
    let (status, err, _) = forever.interrupt_all();
    assert!(
        status.success(),
        "--timeout 0, then Ctrl-C: {status}\n{err}"
    );
    let (status, err) = d.terminate();
    assert!(status.success(), "daemon: {status}\n{err}");
}
