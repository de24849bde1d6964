//! Headless instances of `ig daemon` (upstream's GadgetInstanceManager)
//! through `gadgetctl`: detached runs that survive a kill -9 of the
//! daemon, attach with the kept events replayed, delete that unloads
//! everything; and the instance store under hostile input.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{gadget_store, text};
use super::daemon::{assert_nothing_loaded, held_by};
use super::{Running, require_kernel, unique_program};

/// A daemon on `socket` keeping its instances under `state`, in `store`.
fn start_daemon(socket: &Path, state: &Path, store: &Path) -> Child {
    let mut child = Command::new(super::common::ig_bin())
        .env("IG_STORE", store)
        .args(["daemon", "-H", &format!("unix://{}", socket.display())])
        .args(["--pull", "never", "--state-dir", state.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!("the daemon exited ({st}): {}", text(&out.stderr));
        }
        assert!(Instant::now() < end, "the daemon did not listen in 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn kill9(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn ctl(socket: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gadgetctl"));
    c.args(["--remote-address", &format!("unix://{}", socket.display())]);
    c
}

fn ctl_ok(socket: &Path, args: &[&str]) -> String {
    let out = ctl(socket).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "gadgetctl {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn list(socket: &Path) -> Vec<Value> {
    ctl_ok(socket, &["list", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Wait until the instance `name` has `status` in `list`.
fn wait_status(socket: &Path, name: &str, status: &str) -> Value {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let l = list(socket);
        if let Some(i) = l.iter().find(|i| i["name"] == name)
            && i["status"] == status
        {
            return i.clone();
        }
        assert!(
            Instant::now() < end,
            "instance {name} not {status} within 20 s: {l:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn args_of(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    v["args"].as_str().unwrap_or_default().to_owned()
}

fn attach(socket: &Path, key: &str) -> Running {
    let mut c = ctl(socket);
    c.args(["attach", key, "-o", "json"]);
    Running::spawn(&mut c)
}

/// Detach, kill -9, restart: running again, attach replays the events
/// emitted before it in order and sees new ones, delete unloads every
/// program and removes the file.
#[test]
fn a_headless_instance_survives_kill_9_and_is_deleted_cleanly() {
    require_kernel();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ig.socket");
    let state = dir.path().join("state");
    let store = gadget_store().path().to_owned();
    let marker = unique_program(dir.path(), "hdls");
    let comm = marker.file_name().unwrap().to_str().unwrap().to_owned();
    let mut daemon = start_daemon(&socket, &state, &store);
    let id = ctl_ok(
        &socket,
        &[
            "run",
            "trace_exec",
            "--detach",
            "--name",
            "execs",
            "--tags",
            "t1,t2",
            "--comm",
            &comm,
        ],
    )
    .trim()
    .to_owned();
    assert_eq!(id.len(), 32, "the id printed: {id}");
    let file = state.join("gadgets").join(format!("{id}.gadget"));
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(stored["gadgetInstance"]["name"], "execs", "{stored}");
    assert_eq!(
        stored["gadgetInstance"]["gadgetConfig"]["imageName"],
        "trace_exec"
    );
    assert!(
        stored["gadgetInstance"]["timeCreated"].is_string(),
        "{stored}"
    );
    wait_status(&socket, "execs", "Running");
    // A first client sees 1, 2, 3 live: they have left the kernel and
    // reached the instance (its ring) before the second client attaches.
    let mut first = attach(&socket, "execs");
    std::thread::sleep(Duration::from_millis(500));
    for n in ["1", "2", "3"] {
        Command::new(&marker).arg(n).status().unwrap();
    }
    let mut live = 0;
    first.wait_for(
        Duration::from_secs(10),
        || {},
        |l| {
            live += usize::from(
                args_of(l).ends_with(" 3")
                    || args_of(l).ends_with(" 2")
                    || args_of(l).ends_with(" 1"),
            );
            live == 3
        },
    );
    drop(first);
    // The second one gets them replayed, in order.
    let mut a = attach(&socket, "execs");
    let mut got = Vec::new();
    a.wait_for(
        Duration::from_secs(10),
        || {},
        |l| {
            got.push(args_of(l));
            got.len() == 3
        },
    );
    let suffixes = [
        format!("{comm} 1"),
        format!("{comm} 2"),
        format!("{comm} 3"),
    ];
    assert!(
        got.iter()
            .all(|g| suffixes.iter().any(|s| g.ends_with(s.as_str()))),
        "{got:?}"
    );
    let order: Vec<char> = got.iter().map(|g| g.chars().last().unwrap()).collect();
    assert_eq!(order, ['1', '2', '3'], "replayed in order: {got:?}");
    // Then live.
    a.wait_for(
        Duration::from_secs(10),
        || {
            let _ = Command::new(&marker).arg("4").status();
        },
        |l| args_of(l).ends_with(" 4"),
    );
    let (st, err, _) = a.interrupt_all();
    assert!(st.success(), "attach ends on Ctrl-C: {err}");
    wait_status(&socket, "execs", "Running");

    // kill -9, restart: the same instance runs again.
    let old = daemon.id();
    kill9(&mut daemon);
    assert!(held_by(old).is_empty());
    let mut daemon = start_daemon(&socket, &state, &store);
    let again = wait_status(&socket, "execs", "Running");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["tags"], serde_json::json!(["t1", "t2"]));
    let shown = ctl_ok(&socket, &["show", &id[..6]]);
    assert!(shown.contains("Name: execs"), "{shown}");
    assert!(shown.contains("Status: Running"), "{shown}");
    let mut a = attach(&socket, &id[..8]);
    a.wait_for(
        Duration::from_secs(10),
        || {
            let _ = Command::new(&marker).arg("5").status();
        },
        |l| args_of(l).ends_with(" 5"),
    );
    drop(a);
    let pid = daemon.id();
    let seen: BTreeSet<String> = held_by(pid);
    assert!(
        seen.iter().any(|o| o.starts_with("prog:")),
        "the instance's programs are loaded: {seen:?}"
    );
    assert_eq!(ctl_ok(&socket, &["delete", "execs"]).trim(), id);
    assert!(!file.exists(), "delete removes {}", file.display());
    assert_nothing_loaded(pid, &seen, "after delete");
    assert!(list(&socket).is_empty());
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon runs on");
    kill9(&mut daemon);
}

/// SIGHUP while the daemon starts (logrotate does not wait for it) never
/// ends it: ignored until the handler that reopens the log files is in
/// place, then handled. Three headless instances to make again keep the
/// daemon starting long enough for the signals to land in that window.
#[test]
fn sighup_while_instances_are_made_again_does_not_end_the_daemon() {
    require_kernel();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ig.socket");
    let state = dir.path().join("state");
    let store = gadget_store().path().to_owned();
    let mut daemon = start_daemon(&socket, &state, &store);
    for name in ["a", "b", "c"] {
        ctl_ok(&socket, &["run", "trace_exec", "--detach", "--name", name]);
    }
    kill9(&mut daemon);
    let _ = std::fs::remove_file(&socket);
    let mut child = Command::new(super::common::ig_bin())
        .env("IG_STORE", &store)
        .args(["daemon", "-H", &format!("unix://{}", socket.display())])
        .args([
            "--pull",
            "never",
            "--state-dir",
            state.to_str().unwrap(),
            "-v",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // From ig's first line on (main has run); before it is the process's
    // own start, a millisecond that nothing can close. Without the fix
    // the first SIGHUP ended the daemon until its I/O runtime was up.
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut err, &mut first).unwrap();
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let end = Instant::now() + Duration::from_secs(20);
    let mut listening_since = None;
    loop {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        if let Some(st) = child.try_wait().unwrap() {
            panic!("SIGHUP ended the daemon ({st}) after its line {first:?}");
        }
        if listening_since.is_none() && std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            listening_since = Some(Instant::now());
        }
        if listening_since.is_some_and(|t| t.elapsed() > Duration::from_millis(300)) {
            break;
        }
        assert!(Instant::now() < end, "the daemon did not listen in 20 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(list(&socket).len(), 3);
    kill9(&mut child);
}

fn ctl_err(socket: &Path, args: &[&str]) -> String {
    let out: Output = ctl(socket).args(args).output().unwrap();
    assert!(!out.status.success(), "gadgetctl {args:?} succeeded");
    text(&out.stderr)
}

fn gadget_files(state: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state.join("gadgets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Hostile names and ids, oversized input, a corrupt file at start, an
/// image that no longer loads, and a manifest of two instances.
#[test]
fn the_instance_store_under_hostile_input() {
    require_kernel();
    use ig_api::grpc::gadget_instance_manager_client::GadgetInstanceManagerClient;
    use ig_api::proto::{
        CreateGadgetInstanceRequest, GadgetInstance, GadgetInstanceId, GadgetRunRequest,
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ig.socket");
    let state = dir.path().join("state");
    let store = gadget_store().path().to_owned();
    std::fs::create_dir_all(state.join("gadgets")).unwrap();
    let corrupt = "c0ffee00c0ffee00c0ffee00c0ffee00";
    let corrupt_file = state.join("gadgets").join(format!("{corrupt}.gadget"));
    std::fs::write(&corrupt_file, b"{\"gadgetInstance\": {\"id\": ").unwrap();
    std::fs::write(state.join("gadgets").join("not-an-id.gadget"), b"{}").unwrap();
    let mut daemon = start_daemon(&socket, &state, &store);
    let errored = wait_status(&socket, "", "Error");
    assert_eq!(errored["id"], corrupt);
    assert!(
        errored["message"].as_str().unwrap().contains("not JSON"),
        "{errored}"
    );

    // gadgetctl refuses path tricks before any call...
    let err = ctl_err(
        &socket,
        &["run", "trace_exec", "--detach", "--name", "../../x"],
    );
    assert!(err.contains("instance name"), "{err}");
    let err = ctl_err(
        &socket,
        &["run", "trace_exec", "--detach", "--id", "../../x"],
    );
    assert!(err.contains("instance id"), "{err}");
    // ...and so does the daemon, for any client.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let address =
        ig_cli::cli::remote::Address::parse(&format!("unix://{}", socket.display())).unwrap();
    let channel = rt
        .block_on(ig_cli::cli::remote::connect(
            &address,
            None,
            Duration::from_secs(5),
        ))
        .unwrap();
    let mut client = GadgetInstanceManagerClient::new(channel);
    let request = |id: &str, name: &str, value: &str| CreateGadgetInstanceRequest {
        gadget_instance: Some(GadgetInstance {
            id: id.into(),
            name: name.into(),
            gadget_config: Some(GadgetRunRequest {
                image_name: "trace_exec".into(),
                version: 1,
                param_values: [("operator.oci.ebpf.comm".to_owned(), value.to_owned())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        event_buffer_length: 0,
    };
    for (id, name, value) in [
        ("../../../../tmp/evil", "ok", "x"),
        ("0123456789abcdef0123456789abcdef/..", "ok", "x"),
        ("", "../evil", "x"),
        ("", "a/b", "x"),
        ("", "ok", &"v".repeat(100 << 10)),
    ] {
        let e = rt
            .block_on(client.create_gadget_instance(request(id, name, value)))
            .expect_err("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{id} {name}: {e}");
    }
    let e = rt
        .block_on(client.get_gadget_instance(GadgetInstanceId {
            id: "../gadgets/x".into(),
        }))
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let r = rt
        .block_on(client.remove_gadget_instance(GadgetInstanceId {
            id: "../../etc".into(),
        }))
        .unwrap()
        .into_inner();
    assert_ne!(r.result, 0);
    assert!(!dir.path().join("evil").exists());
    assert!(!Path::new("/tmp/evil.gadget").exists());
    // An oversized manifest is refused whole.
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, "# pad\n".repeat(300_000)).unwrap();
    let err = ctl_err(&socket, &["run", "-f", big.to_str().unwrap()]);
    assert!(err.contains("larger than"), "{err}");
    // Nothing was stored but the files the test wrote.
    assert_eq!(gadget_files(&state).len(), 2, "{:?}", gadget_files(&state));

    // A manifest of two instances, as `ig run -f` reads it.
    let manifest = dir.path().join("two.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: 1\nkind: instance-spec\nimage: trace_exec\nname: one\ntags: [x]\nparamValues:\n  operator.cli.output: json\n  operator.oci.annotate: \"exec.args:columns.hidden=true\"\n---\napiVersion: 1\nkind: instance-spec\nimage: trace_open\nname: two\n",
    )
    .unwrap();
    // The same manifest `ig run -f` runs (issue 27: both accept the same).
    let out = gadget_store()
        .ig()
        .args(["run", "-f", manifest.to_str().unwrap(), "--timeout", "1s"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ig run -f: {}", text(&out.stderr));
    let ids = ctl_ok(&socket, &["run", "-f", manifest.to_str().unwrap()]);
    assert_eq!(ids.lines().count(), 2, "{ids}");
    wait_status(&socket, "one", "Running");
    wait_status(&socket, "two", "Running");
    let first = ids.lines().next().unwrap().to_owned();
    // attach without -o prints as the instance was made to
    // (operator.cli.output: json): JSON lines.
    let marker = unique_program(dir.path(), "attachout");
    let comm = marker.file_name().unwrap().to_str().unwrap().to_owned();
    let mut c = ctl(&socket);
    c.args(["attach", "one"]);
    let mut attached = Running::spawn(&mut c);
    let line = attached.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&marker).status();
        },
        |l| l.contains(&comm),
    );
    let ev: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("attach printed the instance's JSON: {e}: {line}"));
    assert_eq!(ev["proc"]["comm"], comm.as_str(), "{line}");
    drop(attached);
    // All or nothing: the daemon refuses the second spec (its name is
    // taken), and the first, created already, is removed again.
    let clash = dir.path().join("clash.yaml");
    std::fs::write(
        &clash,
        "apiVersion: 1\nkind: instance-spec\nimage: trace_exec\nname: three\n---\napiVersion: 1\nkind: instance-spec\nimage: trace_exec\nname: two\n",
    )
    .unwrap();
    let err = ctl_err(&socket, &["run", "-f", clash.to_str().unwrap()]);
    assert!(
        err.contains("an instance named two exists")
            && err.contains("nothing was kept: the 1 instance(s) created before it were removed"),
        "{err}"
    );
    let names: Vec<Value> = list(&socket).iter().map(|g| g["name"].clone()).collect();
    assert!(
        !names.contains(&Value::from("three"))
            && names.contains(&Value::from("one"))
            && names.contains(&Value::from("two")),
        "one and two are left, three is not: {names:?}"
    );

    // The image no longer loads (a daemon on an empty store, never
    // pulling): listed in error, the daemon still serves.
    kill9(&mut daemon);
    let empty = tempfile::tempdir().unwrap();
    let mut daemon = start_daemon(&socket, &state, empty.path());
    let one = wait_status(&socket, "one", "Error");
    assert!(
        one["message"].as_str().unwrap().contains("does not load"),
        "{one}"
    );
    assert_eq!(one["id"], first.as_str());
    // delete takes several, the corrupt one included.
    let out = ctl_ok(&socket, &["delete", "one", "two", &corrupt[..10]]);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(
        gadget_files(&state),
        vec![state.join("gadgets").join("not-an-id.gadget")]
    );
    kill9(&mut daemon);
}
