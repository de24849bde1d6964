//! `gadgetctl --remote-address a,b` over two "nodes": two network
//! namespaces made by the test (`ip netns add`, a veth pair each to the
//! host, private addresses), an `ig daemon` in each on TCP. Both daemons
//! see the host's processes (only the network is private), so an exec
//! appears once per node, tagged with its node.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{TestStore, ig_bin, repo, text};
use super::{Running, require_kernel, unique_program};

/// The store of the fan-out's daemons: a tracer and a snapshotter.
fn store() -> &'static TestStore {
    static STORE: OnceLock<TestStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let s = TestStore::new();
        for name in ["trace_exec", "snapshot_process"] {
            s.build(&repo().join("gadgets").join(name), name);
        }
        s
    })
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        text(&out.stderr)
    );
}

/// A network namespace joined to the host by a veth pair (10.231.N.1 on
/// the host, 10.231.N.2 inside), with a daemon listening on
/// tcp://10.231.N.2:9999. Dropped: the daemon killed, the namespace (and
/// with it the pair) deleted.
struct Node {
    ns: String,
    addr: String,
    daemon: Option<Child>,
    /// The daemon's --state-dir: its own, as a node's would be.
    state: tempfile::TempDir,
}

impl Node {
    fn new(n: u8) -> Self {
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let ns = format!("igfan{tag}");
        let host_if = format!("igfh{tag}");
        let ns_if = format!("igfn{tag}");
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        ip(&["netns", "add", &ns]);
        let mut node = Self {
            ns: ns.clone(),
            addr: format!("10.231.{n}.2"),
            daemon: None,
            state: tempfile::tempdir().unwrap(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &ns,
        ]);
        ip(&["addr", "add", &format!("10.231.{n}.1/24"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.231.{n}.2/24"),
            "dev",
            &ns_if,
        ]);
        ip(&["-n", &ns, "link", "set", &ns_if, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        node.start_daemon();
        node
    }

    fn address(&self) -> String {
        format!("tcp://{}:9999", self.addr)
    }

    fn start_daemon(&mut self) {
        // nsenter, not `ip netns exec`: that one also makes a mount
        // namespace with /sys remounted, where tracefs is missing.
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg("--")
            .arg(ig_bin())
            .args(["daemon", "-H", &self.address(), "--tls-insecure"])
            .arg("--state-dir")
            .arg(self.state.path())
            .env("IG_STORE", store().path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Reachable from the host through the veth: the daemon is up.
        let end = Instant::now() + Duration::from_secs(10);
        let sock: std::net::SocketAddr = format!("{}:9999", self.addr).parse().unwrap();
        while std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_err() {
            if let Some(st) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "the daemon in {} exited ({st}): {}",
                    self.ns,
                    text(&out.stderr)
                );
            }
            assert!(
                Instant::now() < end,
                "the daemon in {} did not listen",
                self.ns
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.daemon = Some(child);
    }

    /// SIGKILL: the node dies mid-run.
    fn kill(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

fn gadgetctl(nodes: &[&Node]) -> Command {
    let list: Vec<String> = nodes.iter().map(|n| n.address()).collect();
    let mut c = Command::new(env!("CARGO_BIN_EXE_gadgetctl"));
    c.args(["--remote-address", &list.join(",")]);
    c
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn comm_node(v: &Value) -> (String, String) {
    (
        v["proc"]["comm"].as_str().unwrap_or_default().to_owned(),
        v["node"].as_str().unwrap_or_default().to_owned(),
    )
}

/// One exec, seen once per node and tagged with it; then one node is
/// killed: the other's events keep flowing, the dead node is named on
/// stderr, and the exit code says a node failed.
#[test]
fn fanout_sees_an_exec_once_per_node_and_survives_a_dead_node() {
    require_kernel();
    let mut a = Node::new(1);
    let mut b = Node::new(2);
    let dir = tempfile::tempdir().unwrap();
    let probe = unique_program(dir.path(), "fanp");
    let marker = unique_program(dir.path(), "fanm");
    let after = unique_program(dir.path(), "fana");
    let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_owned();
    let (probe_n, marker_n, after_n) = (name(&probe), name(&marker), name(&after));
    let mut cmd = gadgetctl(&[&a, &b]);
    cmd.args(["run", "trace_exec", "-o", "json", "--timeout", "20"]);
    let mut run = Running::spawn(&mut cmd);
    // Both nodes run: the probe seen from each.
    let mut probed = std::collections::BTreeSet::new();
    run.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&probe).status();
        },
        |l| {
            let (comm, node) = comm_node(&json(l));
            if comm == probe_n {
                probed.insert(node);
            }
            probed.len() == 2
        },
    );
    assert_eq!(
        probed,
        [a.addr.clone(), b.addr.clone()].into_iter().collect(),
        "the node field names the nodes by IP"
    );
    Command::new(&marker).status().unwrap();
    // Both copies of the marker, before the kill.
    let mut marked = 0;
    run.wait_for(
        Duration::from_secs(10),
        || {},
        |l| {
            marked += usize::from(comm_node(&json(l)).0 == marker_n);
            marked == 2
        },
    );
    b.kill();
    // Node a still streams.
    run.wait_for(
        Duration::from_secs(10),
        || {
            let _ = Command::new(&after).status();
        },
        |l| comm_node(&json(l)).0 == after_n,
    );
    let (status, stderr, lines) = run.wait_all(Duration::from_secs(30));
    a.kill();
    assert!(
        !status.success(),
        "a node died: the exit code says so\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("node {}", b.addr)),
        "the dead node is named: {stderr}"
    );
    let events: Vec<(String, String)> = lines.iter().map(|l| comm_node(&json(l))).collect();
    let of = |c: &str| -> Vec<String> {
        let mut v: Vec<String> = events
            .iter()
            .filter(|(comm, _)| comm == c)
            .map(|(_, n)| n.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        of(&marker_n),
        vec![a.addr.clone(), b.addr.clone()],
        "the marker exactly twice, once per node"
    );
    let after_nodes = of(&after_n);
    assert!(
        !after_nodes.is_empty() && after_nodes.iter().all(|n| *n == a.addr),
        "after the kill, only node a: {after_nodes:?}"
    );
}

/// snapshot_process on both nodes: one array, each node's processes once,
/// sorted across nodes (the arrays are combined before the sort).
#[test]
fn fanout_combines_snapshots_before_sorting() {
    require_kernel();
    let a = Node::new(3);
    let b = Node::new(4);
    let dir = tempfile::tempdir().unwrap();
    let sleeper = dir
        .path()
        .join(format!("fans{}", std::process::id() % 10000));
    std::fs::copy("/bin/sleep", &sleeper).unwrap();
    let mut sleeping = Command::new(&sleeper).arg("60").spawn().unwrap();
    let out = gadgetctl(&[&a, &b])
        .args(["run", "snapshot_process", "-o", "json", "--sort", "pid"])
        .output()
        .unwrap();
    let _ = sleeping.kill();
    let _ = sleeping.wait();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let arrays: Vec<Value> = stdout.lines().map(json).collect();
    assert_eq!(
        arrays.len(),
        1,
        "one combined array, not one per node: {:?}",
        arrays
            .iter()
            .map(|a| a.as_array().map_or(0, Vec::len))
            .collect::<Vec<_>>()
    );
    let rows = arrays[0].as_array().unwrap();
    let pids: Vec<u64> = rows.iter().map(|r| r["pid"].as_u64().unwrap()).collect();
    assert!(
        pids.windows(2).all(|w| w[0] <= w[1]),
        "sorted across nodes: {pids:?}"
    );
    for node in [&a.addr, &b.addr] {
        let mut mine: Vec<u64> = rows
            .iter()
            .filter(|r| r["node"] == node.as_str())
            .map(|r| r["pid"].as_u64().unwrap())
            .collect();
        let n = mine.len();
        assert!(n > 0, "node {node} listed nothing");
        mine.dedup();
        assert_eq!(mine.len(), n, "node {node}: each process once");
    }
    let sleeper_pid = u64::from(sleeping.id());
    let mut nodes: Vec<&str> = rows
        .iter()
        .filter(|r| r["pid"] == sleeper_pid)
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    nodes.sort_unstable();
    assert_eq!(nodes, [a.addr.as_str(), b.addr.as_str()]);
    assert!(
        rows.iter()
            .all(|r| r["node"] == a.addr.as_str() || r["node"] == b.addr.as_str()),
        "every row tagged with its node"
    );
}

/// Headless instances on both nodes: `run --detach` makes the same id on
/// each, `list` has a NODE column, `attach` tags each node's events, and
/// `delete` removes the instance from both.
#[test]
fn fanout_detaches_lists_attaches_and_deletes_on_every_node() {
    require_kernel();
    let a = Node::new(5);
    let b = Node::new(6);
    let dir = tempfile::tempdir().unwrap();
    let marker = unique_program(dir.path(), "fanh");
    let comm = marker.file_name().unwrap().to_str().unwrap().to_owned();
    let out = gadgetctl(&[&a, &b])
        .args([
            "run",
            "trace_exec",
            "--detach",
            "--name",
            "both",
            "--comm",
            &comm,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    assert_eq!(id.len(), 32, "one id for both nodes: {id}");
    for n in [&a, &b] {
        assert!(
            n.state
                .path()
                .join("gadgets")
                .join(format!("{id}.gadget"))
                .exists(),
            "stored on {}",
            n.addr
        );
    }
    let out = gadgetctl(&[&a, &b]).arg("list").output().unwrap();
    let table = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(table.starts_with("NODE "), "{table}");
    for n in [&a, &b] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(n.addr.as_str()) && l.contains(&id[..12])),
            "{table}"
        );
    }
    let mut cmd = gadgetctl(&[&a, &b]);
    cmd.args(["attach", "both", "-o", "json"]);
    let mut attached = Running::spawn(&mut cmd);
    let mut nodes = std::collections::BTreeSet::new();
    attached.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&marker).status();
        },
        |l| {
            let (c, n) = comm_node(&json(l));
            if c == comm {
                nodes.insert(n);
            }
            nodes.len() == 2
        },
    );
    drop(attached);
    let out = gadgetctl(&[&a, &b])
        .args(["delete", &id[..10]])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for n in [&a, &b] {
        let left: Vec<_> = std::fs::read_dir(n.state.path().join("gadgets"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "removed from {}: {left:?}", n.addr);
    }
}
