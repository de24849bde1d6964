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
    let args = logs_args(&file, "100");
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
