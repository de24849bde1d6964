//! Export with real parts: the logs operator's files under a real
//! trace_open storm (our own opens), rotated by size and reopened on
//! SIGHUP after a `logrotate`-style move; OTLP over HTTP pushed to a real
//! receiver (`otlp_receiver.py`: OpenTelemetry's own generated messages
//! from PyPI's `opentelemetry-proto`, in the venv `cargo xtask setup`
//! makes), started and stopped here by pid.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::repo;
use super::metrics::direct_writes;
use super::{Running, free_port, me, require_kernel};

/// Open a file of ours `n` times (trace_open events of our pid).
fn opens(n: usize) {
    let exe = std::env::current_exe().unwrap();
    for _ in 0..n {
        drop(std::fs::File::open(&exe).unwrap());
    }
}

/// Every line of `path` as JSON (a line that is not is a failure).
fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{path:?}: a cut line at the end"
    );
    text.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{path:?}: not JSON ({e}): {l}"))
        })
        .collect()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    f.sort();
    f
}

/// The `seq` of the data source `open`'s lines, sorted, checked for
/// duplicates.
fn open_seqs(lines: &[Value]) -> Vec<u64> {
    let mut seqs: Vec<u64> = lines
        .iter()
        .filter(|v| v["datasource"] == "open")
        .map(|v| {
            assert_eq!(v["type"], "gadget-data", "{v}");
            assert!(v["data"].is_object(), "{v}");
            assert!(v["timestamp"].as_str().unwrap().ends_with('Z'), "{v}");
            v["seq"].as_u64().unwrap()
        })
        .collect();
    seqs.sort_unstable();
    let n = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "a seq written twice");
    seqs
}

fn assert_contiguous(seqs: &[u64]) {
    if let Some(gap) = seqs.windows(2).find(|w| w[1] != w[0] + 1) {
        panic!("a gap in seq: {} then {}", gap[0], gap[1]);
    }
}

fn logs_args(file: &Path, size_mb: &str) -> Vec<String> {
    [
        "trace_open",
        "-o",
        "none",
        "--logs-enabled",
        "--logs-channel",
        "file",
        "--logs-filename",
        file.to_str().unwrap(),
        "--logs-max-size-mb",
        size_mb,
        "--logs-max-backups",
        "2",
    ]
    .map(String::from)
    .to_vec()
}

/// The check: a trace_open storm with max-size-mb=1 and
/// max-backups=2 leaves at most 3 files, each line JSON, and the kept
/// lines of the data source have contiguous seq up to the last one
/// written; nothing was dropped.
#[test]
fn log_files_rotate_under_a_trace_open_storm_without_losing_a_line() {
    require_kernel();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ig.log");
    let args = logs_args(&file, "1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ig = Running::start(&args);
    // Each line is a few hundred bytes: 40000 opens are several MiB.
    opens(40_000);
    std::thread::sleep(Duration::from_millis(500));
    let (_, stderr) = ig.stop();
    assert!(!stderr.contains("dropped"), "{stderr}");
    let files = files_in(dir.path());
    assert!(files.len() <= 3, "{files:?}");
    assert_eq!(
        files.len(),
        3,
        "the storm rotated twice at least: {files:?}"
    );
    let mut all = Vec::new();
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 1024 * 1024, "{f:?}: {len} bytes");
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name == "ig.log" || (name.starts_with("ig-") && name.ends_with(".log")),
            "{name}"
        );
        all.extend(json_lines(f));
    }
    let seqs = open_seqs(&all);
    assert_contiguous(&seqs);
    let ours = all
        .iter()
        .filter(|v| v["data"]["proc"]["pid"].as_u64() == Some(me()))
        .count();
    assert!(ours > 1000, "{ours} lines of our opens kept");
}

/// `logrotate`'s way: the file is moved away, ig gets SIGHUP and opens
/// a new one by the name, while the storm goes on. The moved file and the
/// new one hold every line: seq 0 to the last, each once.
#[test]
fn log_file_moved_then_sighup_loses_no_line() {
    require_kernel();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ig.log");
    // Large enough that the storm never rotates the file (a faster reader
    // once wrote 130 MB in the 1.4 s, and the rotated part looked like a
    // gap here): this test is about the reopen; the files are checked to
    // be the two below.
    let args = logs_args(&file, "4096");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ig = Running::start(&args);
    let storming = Arc::new(AtomicBool::new(true));
    let s = storming.clone();
    let storm = std::thread::spawn(move || {
        while s.load(Ordering::Relaxed) {
            opens(100);
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    let moved = dir.path().join("ig.log.1");
    std::fs::rename(&file, &moved).unwrap();
    let pid = i32::try_from(ig.child.id()).unwrap();
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(700));
    storming.store(false, Ordering::Relaxed);
    storm.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (_, stderr) = ig.stop();
    assert!(!stderr.contains("dropped"), "{stderr}");
    assert_eq!(
        files_in(dir.path()),
        [file.clone(), moved.clone()],
        "no rotation: only the moved file and the new one"
    );
    let before = json_lines(&moved);
    let after = json_lines(&file);
    assert!(
        !before.is_empty() && !after.is_empty(),
        "both files have lines"
    );
    let (b, a) = (open_seqs(&before), open_seqs(&after));
    assert!(
        b.last() < a.first(),
        "the moved file ends before the new one starts"
    );
    let mut all = b;
    all.extend(a);
    assert_eq!(all.first(), Some(&0), "from the first event");
    assert_contiguous(&all);
}

/// The OTLP/HTTP receiver on 127.0.0.1:`port`: every request it decoded,
/// as JSON. Killed (by pid) when dropped.
struct Receiver {
    child: Child,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start(port: u16) -> Self {
        let python = repo().join("target/tools/grpc-venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: `cargo xtask setup --deps-only` installs the tests' opentelemetry-proto",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(repo().join("tests/gadgets/otlp_receiver.py"))
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        assert_eq!(first.trim(), "listening", "the receiver did not start");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let r = requests.clone();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                r.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        });
        Self { child, requests }
    }

    fn requests(&self, path: &str) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["path"] == path)
            .cloned()
            .collect()
    }

    /// Wait until `done(requests of path)`, or panic after `limit`.
    fn wait(&self, path: &str, limit: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let end = Instant::now() + limit;
        loop {
            let r = self.requests(path);
            if done(&r) {
                return r;
            }
            assert!(
                Instant::now() < end,
                "receiver: not done in {limit:?}: {r:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file with one exporter under `section`.
fn exporter_config(dir: &Path, section: &str, port: u16, extra: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "operator:\n  {section}:\n    exporters:\n      col:\n        exporter: otlp-http\n        endpoint: http://127.0.0.1:{port}\n        headers:\n          authorization: Bearer ig-test\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// One pushed histogram point: time, start time, bucket counts,
/// temporality.
type Pushed = (u64, u64, Vec<u64>, String);

/// Every histogram point of `latency` in the requests, in order.
fn latency_points(requests: &[Value]) -> Vec<Pushed> {
    let num = |v: &Value| -> u64 {
        v.as_str()
            .map(|s| s.parse().unwrap())
            .or_else(|| v.as_u64())
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    for r in requests {
        for rm in r["request"]["resource_metrics"].as_array().unwrap() {
            for sm in rm["scope_metrics"].as_array().unwrap() {
                assert_eq!(sm["scope"]["name"], "blockio-metrics", "{sm}");
                for m in sm["metrics"].as_array().unwrap() {
                    if m["name"] != "latency" {
                        continue;
                    }
                    let h = &m["histogram"];
                    for p in h["data_points"].as_array().unwrap() {
                        let counts: Vec<u64> = p["bucket_counts"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(num)
                            .collect();
                        assert_eq!(num(&p["count"]), counts.iter().sum::<u64>(), "{p}");
                        assert_eq!(p["explicit_bounds"].as_array().unwrap().len(), 27, "{p}");
                        out.push((
                            num(&p["time_unix_nano"]),
                            num(&p["start_time_unix_nano"]),
                            counts,
                            h["aggregation_temporality"]
                                .as_str()
                                .unwrap_or("")
                                .to_owned(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// The counts of the last `-o json` render of profile_blockio.
fn rendered_counts(values: &[Value], stderr: &str) -> Vec<u64> {
    let last = values
        .last()
        .unwrap_or_else(|| panic!("no render; stderr:\n{stderr}"));
    last["latency"]["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["count"].as_u64().unwrap())
        .collect()
}

fn blockio_pushed(temporality: &str) -> (Vec<Pushed>, Vec<u64>, Receiver, f64) {
    let port = free_port();
    let receiver = Receiver::start(port);
    let dir = tempfile::tempdir().unwrap();
    let config = exporter_config(
        dir.path(),
        "otel-metrics",
        port,
        &format!("        interval: 300ms\n        temporality: {temporality}\n"),
    );
    let ig = Running::start(&[
        "profile_blockio",
        "--config",
        config.to_str().unwrap(),
        "--map-fetch-interval",
        "100ms",
        "--annotate=blockio:metrics.collect=true",
        "--otel-metrics-name=blockio:blockio-metrics",
        "--otel-metrics-exporter",
        "col",
    ]);
    direct_writes(300);
    receiver.wait("/v1/metrics", Duration::from_secs(20), |r| {
        latency_points(r)
            .iter()
            .any(|p| p.2.iter().sum::<u64>() > 0)
    });
    direct_writes(300);
    std::thread::sleep(Duration::from_millis(200));
    let stopped_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let (values, stderr) = ig.stop();
    assert!(!stderr.contains("dropped"), "{stderr}");
    let rendered = rendered_counts(&values, &stderr);
    let requests = receiver.requests("/v1/metrics");
    for r in &requests {
        assert_eq!(r["headers"]["authorization"], "Bearer ig-test", "{r}");
    }
    (latency_points(&requests), rendered, receiver, stopped_at)
}

/// Cumulative: every push's buckets are at least the previous push's,
/// all start at the same time, a push arrives after the SIGINT, and the
/// last one's buckets are those `-o json` rendered at the stop of the
/// same run.
#[test]
fn otlp_cumulative_histogram_equals_the_rendered_one() {
    require_kernel();
    let (points, rendered, receiver, stopped_at) = blockio_pushed("cumulative");
    assert!(points.len() >= 2, "{points:?}");
    for w in points.windows(2) {
        assert!(w[1].0 >= w[0].0, "time goes forward");
        assert_eq!(w[1].1, w[0].1, "one start time");
        assert!(
            w[1].2.iter().zip(&w[0].2).all(|(b, a)| b >= a),
            "not monotonic: {:?} then {:?}",
            w[0].2,
            w[1].2
        );
        assert_eq!(w[1].3, "AGGREGATION_TEMPORALITY_CUMULATIVE");
    }
    let last = &points.last().unwrap().2;
    assert_eq!(last.len(), 28, "27 slots and +Inf");
    assert_eq!(last[27], 0);
    assert_eq!(&last[..27], &rendered[..], "pushed vs rendered");
    assert!(rendered.iter().sum::<u64>() >= 600);
    let after: Vec<f64> = receiver
        .requests("/v1/metrics")
        .iter()
        .filter_map(|r| r["at"].as_f64())
        .filter(|&t| t >= stopped_at)
        .collect();
    assert!(!after.is_empty(), "a final push after SIGINT");
}

/// Delta: the points of successive pushes add up to what `-o json`
/// rendered at the stop (the cumulative total).
#[test]
fn otlp_delta_histograms_sum_to_the_rendered_total() {
    require_kernel();
    let (points, rendered, _receiver, _) = blockio_pushed("delta");
    assert!(points.len() >= 2, "{points:?}");
    let mut sum = vec![0u64; 28];
    for p in &points {
        assert_eq!(p.3, "AGGREGATION_TEMPORALITY_DELTA");
        for (s, c) in sum.iter_mut().zip(&p.2) {
            *s += c;
        }
    }
    for w in points.windows(2) {
        assert_eq!(
            w[1].1, w[0].0,
            "a delta starts where the previous one ended"
        );
    }
    assert_eq!(&sum[..27], &rendered[..]);
}

/// A JSON object flattened to dotted keys, every value as text.
fn flatten(v: &Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &key, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_owned(), s.clone());
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// The attributes of every log record, as text, with the scope's name.
fn log_records(requests: &[Value]) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for r in requests {
        for rl in r["request"]["resource_logs"].as_array().unwrap() {
            let res = rl["resource"]["attributes"].to_string();
            assert!(res.contains("inspektor-gadget"), "{res}");
            for sl in rl["scope_logs"].as_array().unwrap() {
                let scope = sl["scope"]["name"].as_str().unwrap_or("").to_owned();
                for rec in sl["log_records"].as_array().unwrap() {
                    let t: u64 = rec["time_unix_nano"].as_str().unwrap().parse().unwrap();
                    // Nanoseconds since the epoch: within a day of now.
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos() as u64;
                    assert!(now.abs_diff(t) < 86_400_000_000_000, "{rec}");
                    let mut attrs = BTreeMap::new();
                    for kv in rec["attributes"].as_array().unwrap() {
                        let v = &kv["value"];
                        let text = v["string_value"]
                            .as_str()
                            .map(str::to_owned)
                            .or_else(|| v["int_value"].as_str().map(str::to_owned))
                            .or_else(|| v["bool_value"].as_bool().map(|b| b.to_string()))
                            .or_else(|| v["double_value"].as_f64().map(|f| f.to_string()))
                            // An int64 of 0 is its default: left out.
                            .unwrap_or_else(|| "0".to_owned());
                        attrs.insert(kv["key"].as_str().unwrap().to_owned(), text);
                    }
                    out.push((scope.clone(), attrs));
                }
            }
        }
    }
    out
}

/// The records of our marker file's opens carry the fields, and values,
/// of the `-o json` lines of the same run; the last ones arrive with the
/// final push after SIGINT.
#[test]
fn otlp_log_records_carry_the_fields_of_the_json_lines() {
    require_kernel();
    let port = free_port();
    let receiver = Receiver::start(port);
    let dir = tempfile::tempdir().unwrap();
    let config = exporter_config(dir.path(), "otel-logs", port, "        interval: 5s\n");
    let marker = dir.path().join(format!("otlp-marker-{}", me()));
    std::fs::write(&marker, b"x").unwrap();
    let mut ig = Running::start(&[
        "trace_open",
        "--config",
        config.to_str().unwrap(),
        "--otel-logs-exporter",
        "col",
    ]);
    let n = 40;
    for _ in 0..n {
        drop(std::fs::File::open(&marker).unwrap());
    }
    let m = marker.to_str().unwrap().to_owned();
    ig.wait_until(Duration::from_secs(10), |v| {
        v.iter().filter(|e| e["fname"] == m.as_str()).count() >= n
    });
    // interval 5s: these records are still in their batch, the stop's
    // push sends them.
    let (values, stderr) = ig.stop();
    assert!(!stderr.contains("dropped"), "{stderr}");
    let mut json: Vec<BTreeMap<String, String>> = values
        .iter()
        .filter(|e| e["fname"] == m.as_str())
        .map(|e| {
            let mut f = BTreeMap::new();
            flatten(e, "", &mut f);
            f
        })
        .collect();
    let records = log_records(&receiver.wait("/v1/logs", Duration::from_secs(10), |r| {
        log_records(r)
            .iter()
            .filter(|(_, a)| a.get("fname") == Some(&m))
            .count()
            >= n
    }));
    let mut ours: Vec<BTreeMap<String, String>> = records
        .into_iter()
        .filter(|(_, a)| a.get("fname") == Some(&m))
        .map(|(scope, a)| {
            assert!(scope.contains("trace_open"), "{scope}");
            a
        })
        .collect();
    // Zero-valued ints are absent from the receiver's JSON (proto3
    // defaults): compare them as "0".
    for o in &mut ours {
        for (k, v) in json[0].iter() {
            if !o.contains_key(k) && v == "0" {
                o.insert(k.clone(), "0".into());
            }
        }
    }
    json.sort();
    ours.sort();
    assert_eq!(json.len(), n);
    assert_eq!(ours, json);
}

/// The receiver goes away mid-run under a storm: ig keeps running, says
/// it drops records, and pushes again once the receiver is back.
#[test]
fn otlp_logs_survive_a_receiver_that_goes_away() {
    require_kernel();
    let port = free_port();
    let receiver = Receiver::start(port);
    let dir = tempfile::tempdir().unwrap();
    let config = exporter_config(dir.path(), "otel-logs", port, "        interval: 200ms\n");
    let mut ig = Running::start(&[
        "trace_open",
        "-o",
        "none",
        "--config",
        config.to_str().unwrap(),
        "--otel-logs-exporter",
        "col",
    ]);
    opens(200);
    receiver.wait("/v1/logs", Duration::from_secs(10), |r| !r.is_empty());
    drop(receiver);
    // Far more than the queues hold: records must be dropped.
    let storm_end = Instant::now() + Duration::from_secs(60);
    loop {
        opens(20_000);
        ig.take_output();
        if ig
            .stderr
            .iter()
            .any(|l| l.contains("OTLP exporter col:") && l.contains("dropped"))
        {
            break;
        }
        assert!(
            Instant::now() < storm_end,
            "no drop reported:\n{}",
            ig.stderr.join("\n")
        );
    }
    assert!(ig.child.try_wait().unwrap().is_none(), "ig keeps running");
    let receiver = Receiver::start(port);
    let marker = dir.path().join("after");
    std::fs::write(&marker, b"x").unwrap();
    let m = marker.to_str().unwrap().to_owned();
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        drop(std::fs::File::open(&marker).unwrap());
        let back = log_records(&receiver.requests("/v1/logs"))
            .iter()
            .any(|(_, a)| a.get("fname") == Some(&m));
        if back {
            break;
        }
        assert!(Instant::now() < end, "no push after the receiver came back");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, stderr) = ig.stop();
    assert!(
        stderr.contains("the collector takes requests again"),
        "{stderr}"
    );
}

/// A collector that takes every connection and reads what it is sent,
/// but never answers. What it read so far is in `seen`.
struct Silent {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Silent {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        // Ends with the test process; its connections stay open, unanswered.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = std::io::Read::read(&mut conn, &mut buf) {
                        if n == 0 {
                            break;
                        }
                        s.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Self { port, seen }
    }

    fn has_read(&self, what: &str) -> bool {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).contains(what)
    }
}

/// The stop with a request in flight to a collector that never answers,
/// and two exporters to it: `ig` still exits (0) within `Running::stop`'s
/// 10 s (the budget is 5 s in total; before, the request in flight kept
/// its 10 s timeout, then each exporter's final push had 5 s more), and
/// says what it dropped.
#[test]
fn otlp_stop_is_bounded_when_the_collector_never_answers() {
    require_kernel();
    let silent = Silent::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let exporter = format!(
        "    exporters:\n      col:\n        exporter: otlp-http\n        endpoint: http://127.0.0.1:{}\n        interval: 200ms\n",
        silent.port
    );
    std::fs::write(
        &config,
        format!("operator:\n  otel-logs:\n{exporter}  otel-metrics:\n{exporter}"),
    )
    .unwrap();
    let ig = Running::start(&[
        "trace_open",
        "-o",
        "none",
        "--config",
        config.to_str().unwrap(),
        "--otel-logs-exporter",
        "col",
        "--otel-metrics-exporter",
        "col",
    ]);
    let end = Instant::now() + Duration::from_secs(20);
    while !silent.has_read("POST /v1/logs") {
        assert!(Instant::now() < end, "no request reached the collector");
        opens(50);
        std::thread::sleep(Duration::from_millis(100));
    }
    // The request is in flight, unanswered; more records wait behind it.
    opens(50);
    std::thread::sleep(Duration::from_millis(300));
    let (_, stderr) = ig.stop();
    assert!(
        stderr.contains("OTLP exporter col:") && stderr.contains("dropped"),
        "{stderr}"
    );
}

/// The attributes of `requests`' points of metric `name` (every kind),
/// each as its OTLP JSON value (`{"int_value": "12"}`...).
fn metric_attributes(requests: &[Value], name: &str) -> Vec<BTreeMap<String, Value>> {
    let mut out = Vec::new();
    for r in requests {
        for rm in r["request"]["resource_metrics"].as_array().unwrap() {
            for sm in rm["scope_metrics"].as_array().unwrap() {
                for m in sm["metrics"].as_array().unwrap() {
                    if m["name"] != name {
                        continue;
                    }
                    for kind in ["sum", "gauge", "histogram"] {
                        for p in m[kind]["data_points"].as_array().into_iter().flatten() {
                            out.push(
                                // No attributes: no key in the JSON.
                                p["attributes"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .map(|kv| {
                                        (
                                            kv["key"].as_str().unwrap().to_owned(),
                                            kv["value"].clone(),
                                        )
                                    })
                                    .collect(),
                            );
                        }
                    }
                }
            }
        }
    }
    out
}

/// The attributes of every log record, as OTLP JSON values.
fn log_attributes(requests: &[Value]) -> Vec<BTreeMap<String, Value>> {
    let mut out = Vec::new();
    for r in requests {
        for rl in r["request"]["resource_logs"].as_array().unwrap() {
            for sl in rl["scope_logs"].as_array().unwrap() {
                for rec in sl["log_records"].as_array().unwrap() {
                    out.push(
                        rec["attributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|kv| (kv["key"].as_str().unwrap().to_owned(), kv["value"].clone()))
                            .collect(),
                    );
                }
            }
        }
    }
    out
}

/// Upstream's types on the wire, read by OpenTelemetry's own decoder:
/// metric keys and log attributes of an integer field (proc.pid) are
/// `int_value`, of a bool (args_truncated) `bool_value`, of a string
/// `string_value`; the pids are those of our copy of true. ig's own
/// metrics are pushed with them, and the scope's name comes from the
/// config file's `operator.otel-metrics.otel-metrics-name`.
#[test]
fn otlp_attributes_keep_the_fields_types() {
    require_kernel();
    let port = free_port();
    let receiver = Receiver::start(port);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let exporter = format!(
        "    exporters:\n      col:\n        exporter: otlp-http\n        endpoint: http://127.0.0.1:{port}\n        interval: 300ms\n"
    );
    // The scope's name from the file (a gadget parameter's key).
    std::fs::write(
        &config,
        format!(
            "operator:\n  otel-logs:\n{exporter}  otel-metrics:\n    otel-metrics-name: exec:cfgdemo\n{exporter}"
        ),
    )
    .unwrap();
    let ig = Running::start(&[
        "trace_exec",
        "-o",
        "none",
        "--config",
        config.to_str().unwrap(),
        "--annotate",
        "exec:metrics.collect=true,exec:metrics.implicit-counter.name=execs,exec.proc.comm:metrics.type=key,exec.proc.pid:metrics.type=key,exec.args_truncated:metrics.type=key",
        "--otel-metrics-exporter",
        "col",
        "--otel-metrics-export-internals",
        "--otel-logs-exporter",
        "col",
    ]);
    let bin_dir = tempfile::tempdir().unwrap();
    let comm = format!("iga{}", me() % 1_000_000);
    let bin: PathBuf = bin_dir.path().join(&comm);
    std::fs::copy("/bin/true", &bin).unwrap();
    let mut pids = Vec::new();
    for _ in 0..3 {
        let mut c = Command::new(&bin).spawn().unwrap();
        pids.push(c.id().to_string());
        assert!(c.wait().unwrap().success());
    }
    pids.sort();
    let ours = |a: &BTreeMap<String, Value>| a["proc.comm"]["string_value"] == comm.as_str();
    let pushed = |attrs: Vec<BTreeMap<String, Value>>| -> Vec<BTreeMap<String, Value>> {
        attrs.into_iter().filter(|a| ours(a)).collect()
    };
    let metrics = receiver.wait("/v1/metrics", Duration::from_secs(20), |r| {
        pushed(metric_attributes(r, "execs")).len() >= 3
    });
    let logs = receiver.wait("/v1/logs", Duration::from_secs(20), |r| {
        pushed(log_attributes(r)).len() >= 3
    });
    let (_, stderr) = ig.stop();
    assert!(!stderr.contains("dropped"), "{stderr}");
    let scopes: Vec<&str> = metrics
        .iter()
        .flat_map(|r| r["request"]["resource_metrics"].as_array().unwrap())
        .flat_map(|rm| rm["scope_metrics"].as_array().unwrap())
        .filter(|sm| {
            sm["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"] == "execs")
        })
        .map(|sm| sm["scope"]["name"].as_str().unwrap())
        .collect();
    assert!(
        !scopes.is_empty() && scopes.iter().all(|s| *s == "cfgdemo"),
        "{scopes:?}"
    );
    // ig's own metrics are pushed too (--otel-metrics-export-internals).
    let events = metric_attributes(&metrics, "ig_events");
    assert!(
        events
            .iter()
            .any(|a| a.get("datasource") == Some(&serde_json::json!({"string_value": "exec"}))),
        "{events:?}"
    );
    assert!(!metric_attributes(&metrics, "ig_gadgets_running").is_empty());
    for (what, attrs) in [
        ("metric", pushed(metric_attributes(&metrics, "execs"))),
        ("log record", pushed(log_attributes(&logs))),
    ] {
        let mut seen: Vec<String> = attrs
            .iter()
            .map(|a| {
                assert_eq!(
                    a["args_truncated"],
                    serde_json::json!({"bool_value": false}),
                    "{what}: {a:?}"
                );
                a["proc.pid"]["int_value"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}: proc.pid is not an int_value: {a:?}"))
                    .to_owned()
            })
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, pids, "{what}");
    }
}

/// `ig run -f`: two instances (trace_exec and trace_open) in one process
/// with one log file and one OTLP logs exporter. Our exec marker and our
/// open marker are in the file (whole JSON lines, each under its
/// gadget) and at the receiver (each in its gadget's scope). A spec
/// choosing an exporter itself (a daemon's per-run parameter) is refused.
#[test]
fn manifest_instances_write_the_log_file_and_push_log_records() {
    require_kernel();
    let port = free_port();
    let receiver = Receiver::start(port);
    let dir = tempfile::tempdir().unwrap();
    let config = exporter_config(dir.path(), "otel-logs", port, "        interval: 200ms\n");
    let file = dir.path().join("ig.log");
    let manifest = dir.path().join("instances.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: 1\nkind: instance-spec\nname: execs\nimage: trace_exec\n---\n\
         apiVersion: 1\nkind: instance-spec\nname: opens\nimage: trace_open\n",
    )
    .unwrap();
    // The daemon's per-run parameter is refused here, saying what to use.
    let per_instance = dir.path().join("per-instance.yaml");
    std::fs::write(
        &per_instance,
        "apiVersion: 1\nkind: instance-spec\nname: execs\nimage: trace_exec\n\
         paramValues:\n  operator.otel-logs.otel-logs-exporter: col\n",
    )
    .unwrap();
    let out = super::store()
        .ig()
        .args(["run", "-f", per_instance.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("give --otel-logs-exporter on the command line"),
        "{err}"
    );
    let open_marker = dir.path().join(format!("mf-open-{}", me()));
    std::fs::write(&open_marker, b"x").unwrap();
    let bin_dir = tempfile::tempdir().unwrap();
    let comm = format!("igm{}", me() % 1_000_000);
    let bin: PathBuf = bin_dir.path().join(&comm);
    std::fs::copy("/bin/true", &bin).unwrap();
    let ig = Running::start(&[
        "-f",
        manifest.to_str().unwrap(),
        "-o",
        "none",
        "--config",
        config.to_str().unwrap(),
        "--otel-logs-exporter",
        "col",
        "--logs-enabled",
        "--logs-channel",
        "file",
        "--logs-filename",
        file.to_str().unwrap(),
    ]);
    let m = open_marker.to_str().unwrap().to_owned();
    let seen = |r: &[Value]| {
        let recs = log_records(r);
        let exec = recs
            .iter()
            .any(|(s, a)| s.contains("trace_exec") && a.get("proc.comm") == Some(&comm));
        let open = recs
            .iter()
            .any(|(s, a)| s.contains("trace_open") && a.get("fname") == Some(&m));
        exec && open
    };
    let end = Instant::now() + Duration::from_secs(30);
    // The second instance may still be loading: until both arrive.
    while !seen(&receiver.requests("/v1/logs")) {
        assert!(Instant::now() < end, "no records of both markers");
        assert!(Command::new(&bin).status().unwrap().success());
        drop(std::fs::File::open(&open_marker).unwrap());
        std::thread::sleep(Duration::from_millis(300));
    }
    let (_, stderr) = ig.stop();
    assert!(!stderr.contains("dropped"), "{stderr}");
    let lines = json_lines(&file);
    let exec = lines.iter().any(|v| {
        v["gadget"].as_str().unwrap().contains("trace_exec")
            && v["datasource"] == "exec"
            && v["data"]["proc"]["comm"] == comm.as_str()
    });
    let open = lines.iter().any(|v| {
        v["gadget"].as_str().unwrap().contains("trace_open")
            && v["datasource"] == "open"
            && v["data"]["fname"] == m.as_str()
    });
    assert!(
        exec && open,
        "markers in the file: exec {exec}, open {open}"
    );
}

/// `ig daemon` with a configuration enabling the log file and an OTLP
/// logs exporter: a `gadgetctl run trace_exec --otel-logs-exporter col`
/// client's marker exec is in the daemon's file and at the receiver; a
/// client naming an exporter the daemon lacks is refused with the names
/// it has.
#[test]
fn daemon_writes_the_log_file_and_pushes_what_a_client_asks_for() {
    require_kernel();
    let port = free_port();
    let receiver = Receiver::start(port);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("daemon.log");
    let config = exporter_config(
        dir.path(),
        "otel-logs",
        port,
        &format!(
            "        interval: 200ms\n  logs:\n    enabled: true\n    channel: file\n    filename: {}\n",
            file.display()
        ),
    );
    let (daemon, daemon_err, address) = start_daemon(dir.path(), &config);
    let gadgetctl = env!("CARGO_BIN_EXE_gadgetctl");
    // An exporter the daemon does not have.
    let out = Command::new(gadgetctl)
        .args(["--remote-address", &address, "run", "trace_exec"])
        .args(["--otel-logs-exporter", "nope"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("nope") && err.contains("configured: col"),
        "{err}"
    );
    let mut client = Command::new(gadgetctl)
        .args([
            "--remote-address",
            &address,
            "run",
            "trace_exec",
            "-o",
            "json",
        ])
        .args(["--otel-logs-exporter", "col"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bin_dir = tempfile::tempdir().unwrap();
    let comm = format!("igd{}", me() % 1_000_000);
    let bin: PathBuf = bin_dir.path().join(&comm);
    std::fs::copy("/bin/true", &bin).unwrap();
    let in_file = || {
        std::fs::read_to_string(&file).is_ok_and(|t| {
            t.lines().any(|l| {
                let v: Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                v["data"]["proc"]["comm"] == comm.as_str()
                    && v["gadget"].as_str().unwrap().contains("trace_exec")
            })
        })
    };
    let at_receiver = || {
        log_records(&receiver.requests("/v1/logs"))
            .iter()
            .any(|(s, a)| s.contains("trace_exec") && a.get("proc.comm") == Some(&comm))
    };
    let end = Instant::now() + Duration::from_secs(30);
    while !(in_file() && at_receiver()) {
        assert!(
            client.try_wait().unwrap().is_none(),
            "gadgetctl ended: {:?}",
            client.wait_with_output()
        );
        assert!(
            Instant::now() < end,
            "marker: in the file {}, at the receiver {}",
            in_file(),
            at_receiver()
        );
        assert!(Command::new(&bin).status().unwrap().success());
        std::thread::sleep(Duration::from_millis(300));
    }
    // SAFETY: signals to our own children.
    unsafe { libc::kill(client.id() as i32, libc::SIGINT) };
    let out = client.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop_daemon(daemon, &daemon_err);
    // Every line of the file whole.
    json_lines(&file);
}

/// `ig --config CONFIG daemon` on a socket in `dir`, once it accepts
/// connections: the child, its stderr lines, its address.
fn start_daemon(dir: &Path, config: &Path) -> (Daemon, std::sync::mpsc::Receiver<String>, String) {
    let socket = dir.join("ig.socket");
    let address = format!("unix://{}", socket.display());
    let mut daemon = super::store()
        .ig()
        .args([
            "--config",
            config.to_str().unwrap(),
            "daemon",
            "-H",
            &address,
        ])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let daemon_err = super::lines_of(daemon.stderr.take().unwrap());
    let end = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if let Some(st) = daemon.try_wait().unwrap() {
            let err: Vec<String> = daemon_err.try_iter().collect();
            panic!("the daemon exited ({st}): {}", err.join("\n"));
        }
        assert!(Instant::now() < end, "the daemon did not listen in 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Daemon(daemon), daemon_err, address)
}

/// A daemon of a test: killed (by pid) if the test ends before
/// `stop_daemon`.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `gadgetctl --remote-address ADDRESS ARGS`, which must succeed: its
/// stdout.
fn ctl_ok(address: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gadgetctl"))
        .args(["--remote-address", address])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gadgetctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// SIGTERM; it must exit 0 within 20 s.
fn stop_daemon(mut daemon: Daemon, err: &std::sync::mpsc::Receiver<String>) {
    let daemon = &mut daemon.0;
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the daemon did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let err: Vec<String> = err.try_iter().collect();
    assert!(status.success(), "{status}: {}", err.join("\n"));
}

/// The lines of `file` whose exec is `comm`'s.
fn exec_lines(file: &Path, comm: &str) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v: &Value| v["data"]["proc"]["comm"] == comm)
        .collect()
}

/// A copy of /bin/true named `stem` and our pid, in `dir`.
fn marker_program(dir: &Path, stem: &str) -> (PathBuf, String) {
    let comm = format!("{stem}{}", me() % 1_000_000);
    let bin = dir.join(&comm);
    std::fs::copy("/bin/true", &bin).unwrap();
    (bin, comm)
}

/// `mode: detached`: a client's run is not logged, a headless instance
/// is, its lines carrying its `instanceID`; after a `logrotate`-style
/// move and SIGHUP the daemon (still running) writes to a new file by
/// the name.
#[test]
fn daemon_logs_only_headless_instances_in_detached_mode_and_reopens_on_sighup() {
    require_kernel();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("daemon.log");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "operator:\n  logs:\n    enabled: true\n    channel: file\n    mode: detached\n    filename: {}\n",
            file.display()
        ),
    )
    .unwrap();
    let (mut daemon, daemon_err, address) = start_daemon(dir.path(), &config);
    let daemon_pid = daemon.0.id() as i32;
    let gadgetctl = env!("CARGO_BIN_EXE_gadgetctl");
    let ctl = |args: &[&str]| ctl_ok(&address, args);
    let bins = tempfile::tempdir().unwrap();
    // A client's run sees our first program: printed, not logged.
    let (client_bin, client_comm) = marker_program(bins.path(), "igc");
    let mut client = Command::new(gadgetctl)
        .args([
            "--remote-address",
            &address,
            "run",
            "trace_exec",
            "-o",
            "json",
        ])
        .args(["--comm", &client_comm])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client_out = super::lines_of(client.stdout.take().unwrap());
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Command::new(&client_bin).status().unwrap().success());
        if client_out.recv_timeout(Duration::from_millis(300)).is_ok() {
            break;
        }
        assert!(Instant::now() < end, "the client saw no exec");
    }
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(client.id() as i32, libc::SIGINT) };
    assert!(client.wait().unwrap().success());
    // A headless instance of the same gadget: logged, with its id.
    let (bin, comm) = marker_program(bins.path(), "igh");
    let id = ctl(&[
        "run",
        "trace_exec",
        "--detach",
        "--name",
        "logged",
        "--comm",
        &comm,
    ])
    .trim()
    .to_owned();
    assert_eq!(id.len(), 32, "{id}");
    let mut wait_lines = |file: &Path| {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Command::new(&bin).status().unwrap().success());
            let lines = exec_lines(file, &comm);
            if !lines.is_empty() {
                return lines;
            }
            assert!(
                daemon.0.try_wait().unwrap().is_none(),
                "the daemon ended: {:?}",
                daemon_err.try_iter().collect::<Vec<_>>()
            );
            assert!(Instant::now() < end, "no line of the instance in {file:?}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    for v in wait_lines(&file) {
        assert_eq!(v["instanceID"], id.as_str(), "{v}");
        assert!(v["gadget"].as_str().unwrap().contains("trace_exec"), "{v}");
    }
    assert!(
        exec_lines(&file, &client_comm).is_empty(),
        "a client's run is not logged in detached mode"
    );
    // logrotate: move, SIGHUP; the daemon writes a new file by the name.
    let moved = dir.path().join("daemon.log.1");
    std::fs::rename(&file, &moved).unwrap();
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(daemon_pid, libc::SIGHUP) };
    let after = wait_lines(&file);
    assert!(after.iter().all(|v| v["instanceID"] == id.as_str()));
    json_lines(&moved);
    ctl(&["delete", &id]);
    stop_daemon(daemon, &daemon_err);
}

/// `ig daemon` with an OTLP metrics exporter: a headless instance whose
/// spec names it (upstream's `operator.otel-metrics.otel-metrics-exporter`,
/// its metrics set up by `operator.oci.annotate`) pushes its counter of
/// our program's execs under the spec's scope name: three more execs,
/// three more counted.
#[test]
fn daemon_pushes_the_metrics_of_an_instance_that_names_the_exporter() {
    require_kernel();
    let port = free_port();
    let receiver = Receiver::start(port);
    let dir = tempfile::tempdir().unwrap();
    let config = exporter_config(
        dir.path(),
        "otel-metrics",
        port,
        "        interval: 300ms\n",
    );
    let (daemon, daemon_err, address) = start_daemon(dir.path(), &config);
    let bins = tempfile::tempdir().unwrap();
    let (bin, comm) = marker_program(bins.path(), "igm");
    let spec = dir.path().join("instance.yaml");
    std::fs::write(
        &spec,
        "apiVersion: 1\nkind: instance-spec\nname: counted\nimage: trace_exec\nparamValues:\n  \
         operator.oci.annotate: exec:metrics.collect=true,exec:metrics.implicit-counter.name=execs,exec.proc.comm:metrics.type=key\n  \
         operator.otel-metrics.otel-metrics-exporter: col\n  \
         operator.otel-metrics.otel-metrics-name: exec:daemondemo\n",
    )
    .unwrap();
    let ctl = |args: &[&str]| drop(ctl_ok(&address, args));
    ctl(&["run", "-f", spec.to_str().unwrap()]);
    // The instance loads in the background: execs until one is counted.
    let ours =
        |r: &[Value]| -> Vec<f64> {
            r.iter()
                .flat_map(|r| r["request"]["resource_metrics"].as_array().unwrap())
                .flat_map(|rm| rm["scope_metrics"].as_array().unwrap())
                .filter(|sm| sm["scope"]["name"] == "daemondemo")
                .flat_map(|sm| sm["metrics"].as_array().unwrap())
                .filter(|m| m["name"] == "execs")
                .flat_map(|m| m["sum"]["data_points"].as_array().unwrap())
                .filter(|p| {
                    p["attributes"].as_array().into_iter().flatten().any(|a| {
                        a["key"] == "proc.comm" && a["value"]["string_value"] == comm.as_str()
                    })
                })
                .map(|p| p["as_double"].as_f64().unwrap_or(0.0))
                .collect()
        };
    let end = Instant::now() + Duration::from_secs(30);
    while ours(&receiver.requests("/v1/metrics")).is_empty() {
        assert!(Instant::now() < end, "no point of our execs pushed");
        assert!(Command::new(&bin).status().unwrap().success());
        std::thread::sleep(Duration::from_millis(300));
    }
    // Counted from here on: three more execs, exactly three more.
    std::thread::sleep(Duration::from_secs(1));
    let base = *ours(&receiver.requests("/v1/metrics")).last().unwrap();
    for _ in 0..3 {
        assert!(Command::new(&bin).status().unwrap().success());
    }
    let end = Instant::now() + Duration::from_secs(20);
    let last = loop {
        let last = *ours(&receiver.requests("/v1/metrics")).last().unwrap();
        if last >= base + 3.0 || Instant::now() >= end {
            break last;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(last, base + 3.0, "from {base}");
    ctl(&["delete", "counted"]);
    stop_daemon(daemon, &daemon_err);
}
