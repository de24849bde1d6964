//! Metrics with real parts: `ig run --otel-metrics-listen` scraped by a
//! real Prometheus server (Debian's `prometheus`, installed by `cargo
//! xtask setup`), started here on 127.0.0.1 with a 1 s scrape interval
//! and a storage directory of its own, stopped by pid; the assertions
//! are PromQL answers from its HTTP API. `promtool check metrics` reads
//! our exposition. The gadgets are ours as they ship, their metrics set
//! up with `--annotate` as upstream's documentation does.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::text;
use super::{Running, free_port, me, require_kernel};

/// `GET path` from `addr`: the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut c = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut r = Vec::new();
    c.read_to_end(&mut r).unwrap();
    let r = text(&r);
    let (head, body) = r.split_once("\r\n\r\n").unwrap_or((&r, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server scraping `target` every second, on a port and
/// storage of its own; killed (by pid) when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ig\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus, installed by `cargo xtask setup`)");
        let p = Self {
            child,
            addr,
            _dir: dir,
        };
        // Prometheus listens before its storage is open and answers 503
        // to queries until then (CI saw that once): wait for /-/ready.
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let status = TcpStream::connect(&p.addr)
                .ok()
                .map(|_| http_get(&p.addr, "/-/ready").0);
            if status.as_deref().is_some_and(|s| s.contains(" 200 ")) {
                break;
            }
            assert!(
                Instant::now() < end,
                "prometheus on {} not ready: {status:?}",
                p.addr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// The answer to an instant PromQL query: `(labels, value)` per
    /// series.
    fn query(&self, q: &str) -> Vec<(Value, f64)> {
        let (status, body) = http_get(&self.addr, &format!("/api/v1/query?query={}", urlencode(q)));
        assert!(status.contains(" 200 "), "{q}: {status}\n{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let n: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
                (r["metric"].clone(), n)
            })
            .collect()
    }

    /// Query `q` until `done` says its single value is right, or panic
    /// after `limit`; the last value.
    fn wait_for(&self, q: &str, limit: Duration, done: impl Fn(f64) -> bool) -> f64 {
        let end = Instant::now() + limit;
        loop {
            let r = self.query(q);
            if let [(_, v)] = r[..]
                && done(v)
            {
                return v;
            }
            assert!(Instant::now() < end, "{q}: {r:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `promtool check metrics` of a scrape of `addr`.
fn promtool_accepts(addr: &str) -> String {
    let (status, body) = http_get(addr, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{body}",
        text(&out.stdout),
        text(&out.stderr)
    );
    body
}

/// The golden command of the issue, by annotations: trace_exec with an
/// implicit counter keyed by proc.comm, exported as `demo`. A uniquely
/// named copy of /bin/true runs 50 times: Prometheus says 50, exactly.
#[test]
fn prometheus_counts_fifty_execs_of_our_copy_of_true() {
    require_kernel();
    // Issue 23's command: our trace_exec as it ships, the metrics set up
    // with --annotate (the value of the description carries a space).
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let ig = Running::start(&[
        "trace_exec",
        "--annotate",
        "exec:metrics.collect=true,exec:metrics.implicit-counter.name=execs,exec.proc.comm:metrics.type=key",
        "--annotate",
        "exec:metrics.implicit-counter.description=Programs executed",
        "--otel-metrics-name",
        "exec:demo",
        "--otel-metrics-listen",
        "--otel-metrics-listen-address",
        &target,
        "--otel-metrics-export-internals",
    ]);
    let prom = Prometheus::start(&target);
    prom.wait_for("up{job=\"ig\"}", Duration::from_secs(30), |v| v == 1.0);
    let bin_dir = tempfile::tempdir().unwrap();
    let comm = format!("igt{}", me() % 1_000_000);
    let bin: PathBuf = bin_dir.path().join(&comm);
    std::fs::copy("/bin/true", &bin).unwrap();
    for _ in 0..50 {
        assert!(Command::new(&bin).status().unwrap().success());
    }
    let q = format!("execs_total{{otel_scope_name=\"demo\",proc_comm=\"{comm}\"}}");
    let v = prom.wait_for(&q, Duration::from_secs(30), |v| v >= 50.0);
    assert_eq!(v, 50.0, "{q}");
    // Scraped again: still exactly 50, and the series is upstream's shape.
    std::thread::sleep(Duration::from_millis(2500));
    let r = prom.query(&q);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].1, 50.0);
    assert_eq!(
        r[0].0["otel_scope_version"],
        Value::Null,
        "empty labels are absent in PromQL"
    );
    let body = promtool_accepts(&target);
    assert!(
        body.contains("# HELP execs_total Programs executed\n# TYPE execs_total counter\n"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "execs_total{{otel_scope_name=\"demo\",otel_scope_schema_url=\"\",otel_scope_version=\"\",proc_comm=\"{comm}\"}} 50\n"
        )),
        "{body}"
    );
    // ig's own.
    assert!(
        body.contains("ig_gadgets_running{otel_scope_name=\"inspektor-gadget\""),
        "{body}"
    );
    let events = prom.wait_for(
        "ig_events_total{datasource=\"exec\"}",
        Duration::from_secs(10),
        |v| v >= 50.0,
    );
    assert!(events >= 50.0);
    assert_eq!(
        prom.query("ig_gadgets_running")[0].1,
        1.0,
        "one gadget runs"
    );
    ig.stop();
}

/// Completed requests of whole disks so far (reads, writes, discards,
/// flushes: /proc/diskstats fields 4, 8, 15, 19).
fn disk_completions() -> u64 {
    let stats = std::fs::read_to_string("/proc/diskstats").unwrap();
    stats
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Partitions would count their disk's requests twice.
            Path::new("/sys/block")
                .join(f.get(2)?)
                .exists()
                .then_some(f)
        })
        .map(|f| {
            [3, 7, 14, 18]
                .iter()
                .filter_map(|i| f.get(*i).and_then(|v| v.parse::<u64>().ok()))
                .sum::<u64>()
        })
        .sum()
}

/// `dd` writing `n` 4 KiB blocks with O_DIRECT to a file of the host's
/// root filesystem: `n` block requests at least.
pub(super) fn direct_writes(n: u32) {
    let file = Path::new("/var/tmp").join(format!("ig-blockio-{}", me()));
    let out = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k", "oflag=direct"])
        .arg(format!("of={}", file.display()))
        .arg(format!("count={n}"))
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "dd: {}", text(&out.stderr));
}

/// profile_blockio exported as `blockio-metrics` while dd writes 2000
/// direct requests: Prometheus's histogram holds at least 2000 and at
/// most the requests the disks completed meanwhile, and its median is
/// finite.
#[test]
fn prometheus_sees_the_blockio_histogram_of_our_direct_writes() {
    require_kernel();
    let n = 2000;
    let before = disk_completions();
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    // Upstream's documented command for this gadget.
    let ig = Running::start(&[
        "profile_blockio",
        "--map-fetch-interval",
        "200ms",
        "--annotate=blockio:metrics.collect=true",
        "--otel-metrics-name=blockio:blockio-metrics",
        "--otel-metrics-listen",
        "--otel-metrics-listen-address",
        &target,
    ]);
    let prom = Prometheus::start(&target);
    prom.wait_for("up{job=\"ig\"}", Duration::from_secs(30), |v| v == 1.0);
    direct_writes(n);
    let q = "sum(latency_count{otel_scope_name=\"blockio-metrics\"})";
    let count = prom.wait_for(q, Duration::from_secs(30), |v| v >= f64::from(n));
    std::thread::sleep(Duration::from_millis(1500));
    let count = prom.query(q)[0].1.max(count);
    let body = promtool_accepts(&target);
    ig.stop();
    let after = disk_completions();
    assert!(
        count <= (after - before) as f64,
        "{count} requests in the histogram, {} completed on the disks",
        after - before
    );
    let median = prom.query(
        "histogram_quantile(0.5, sum by (le)(latency_bucket{otel_scope_name=\"blockio-metrics\"}))",
    );
    assert!(median.len() == 1 && median[0].1.is_finite(), "{median:?}");
    assert!(
        body.contains("latency_bucket{otel_scope_name=\"blockio-metrics\",otel_scope_schema_url=\"\",otel_scope_version=\"\",le=\"1.048576e+06\"}"),
        "{body}"
    );
}

/// profile_blockio drawn as JSON (`-o json`): the render at the stop
/// holds the 500 direct writes dd made while it ran.
#[test]
fn profile_blockio_renders_our_direct_writes_as_json() {
    let ig = Running::start(&["profile_blockio", "--map-fetch-interval", "100ms"]);
    direct_writes(500);
    std::thread::sleep(Duration::from_millis(300));
    let (values, stderr) = ig.stop();
    let last = values
        .last()
        .unwrap_or_else(|| panic!("no render; stderr:\n{stderr}"));
    let h = &last["latency"];
    assert_eq!(h["unit"], "µs", "{last}");
    let iv = h["intervals"].as_array().unwrap();
    assert_eq!(iv.len(), 27, "{last}");
    assert_eq!(
        (iv[0]["start"].as_u64(), iv[0]["end"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(iv[26]["end"], 1u64 << 26);
    let total: u64 = iv.iter().map(|i| i["count"].as_u64().unwrap()).sum();
    assert!(total >= 500, "{total} requests: {last}");
}

/// Samples of profile_tcprtt (`-o json`, the render at the stop) while
/// our client exchanges 200 one-byte requests and answers over loopback
/// with our server, the gadget filtering on `--dport PORT`.
fn tcprtt_samples(dport: impl FnOnce(u16) -> u16) -> (u64, serde_json::Value) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ig = Running::start(&[
        "profile_tcprtt",
        "--map-fetch-interval",
        "100ms",
        "--dport",
        &dport(port).to_string(),
    ]);
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 1];
        for _ in 0..200 {
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
        }
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_nodelay(true).unwrap();
    let mut b = [0u8; 1];
    for _ in 0..200 {
        c.write_all(b"x").unwrap();
        c.read_exact(&mut b).unwrap();
    }
    server.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (values, stderr) = ig.stop();
    let Some(last) = values.last().cloned() else {
        return (0, serde_json::Value::Null);
    };
    assert_eq!(last["latency"]["unit"], "µs", "{last}\n{stderr}");
    let total = last["latency"]["intervals"].as_array().map_or(0, |iv| {
        iv.iter().map(|i| i["count"].as_u64().unwrap()).sum()
    });
    (total, last)
}

/// profile_tcprtt, on the `tcp_probe` tracepoint (no kprobes): our
/// client's connection (remote port: our server's) is sampled at least
/// once per answer it receives; with `--dport` set to a port nobody
/// uses, nothing is (ports compare in host order, unlike upstream's).
#[test]
fn profile_tcprtt_samples_our_loopback_connection_and_filters_by_port() {
    require_kernel();
    let (ours, last) = tcprtt_samples(|server| server);
    assert!(ours >= 200, "{ours} samples for 200 answers: {last}");
    let unused = free_port();
    let (none, last) = tcprtt_samples(|_| unused);
    assert_eq!(none, 0, "samples of port {unused}: {last}");
}
