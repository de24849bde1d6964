//! The hot path allocates nothing per event: after a warm-up, pushing
//! events of a real gadget through the real operator chain and printers
//! (JSON, table and YAML, with and without a filter: `-F` rules, a `-E`
//! expression, one whose evaluation fails; metrics collected with a
//! counter keyed by `proc.comm`) performs no heap allocation. Counted with a global
//! allocator wrapper, so this file is its own test binary.

#[path = "../common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ig::datasource::Event;
use ig::run::{GadgetRun, OutputMode, PrintOptions, PrintTarget, PullPolicy};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Where the events of a measured chain go.
#[derive(Clone, Copy, Debug)]
enum Consumer {
    /// A printer into /dev/null.
    Print(OutputMode),
    /// A printer labelling each event with its instance (`ig run -f`).
    PrintInstance(OutputMode),
    /// A callback on the run's thread that reads a field of every event.
    Callback,
    /// No printer: the otel-metrics operator collects an implicit counter
    /// keyed by `proc.comm` (a copy of the gadget annotated so) into a
    /// registry, with ig's own metrics.
    Metrics,
    /// The logs operator (JSON lines) writing to a file through its
    /// writer thread.
    Logs,
    /// The otel-logs operator encoding OTLP log records for an exporter
    /// whose collector is unreachable (its batches are dropped, counted).
    OtelLogs,
}

/// A store with trace_open annotated `metrics.collect`, an implicit
/// counter `opens` and `proc.comm` as its key.
fn metrics_store() -> &'static common::TestStore {
    static STORE: std::sync::OnceLock<common::TestStore> = std::sync::OnceLock::new();
    STORE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let src = common::repo().join("gadgets/trace_open");
        for e in std::fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
        let yaml = dir.path().join("gadget.yaml");
        let text = std::fs::read_to_string(&yaml).unwrap().replacen(
            "  open:\n    fields:\n",
            "  open:\n    annotations:\n      metrics.collect: \"true\"\n      metrics.implicit-counter.name: opens\n    fields:\n      proc.comm:\n        annotations:\n          metrics.type: key\n",
            1,
        );
        std::fs::write(&yaml, text).unwrap();
        let s = common::TestStore::new();
        s.build(dir.path(), "trace_open");
        s
    })
}

fn allocations_per_event(gadget: &str, consumer: Consumer, params: &[(&str, &str)]) -> (u64, u64) {
    let registry = ig::operators::otel_metrics::Registry::new(true);
    let logs_dir = tempfile::tempdir().unwrap();
    let mut exporter = None;
    let store = match consumer {
        Consumer::Metrics => metrics_store(),
        _ => common::gadget_store(),
    };
    // The chain of the library's run (as `ig run` builds it, gadget.yaml
    // included), built but not started.
    let run = GadgetRun::from_store(store.path(), gadget)
        .pull(PullPolicy::Never)
        .params(params.iter().copied());
    let run = match consumer {
        Consumer::Print(mode) | Consumer::PrintInstance(mode) => {
            let sink = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .unwrap();
            let mut print = PrintOptions::new(mode, PrintTarget::Writer(Box::new(sink)));
            if matches!(consumer, Consumer::PrintInstance(_)) {
                print.instance = Some(("an-instance".into(), 16));
            }
            run.print(print)
        }
        Consumer::Callback => {
            let mut seen = 0u64;
            run.on_event(move |schema, event| {
                if let Some(id) = schema.field_by_name("proc.pid") {
                    std::hint::black_box(event.get(schema.field(id)));
                    seen += 1;
                }
                std::hint::black_box(seen);
            })
        }
        Consumer::Metrics => run.metrics(registry.clone()),
        Consumer::Logs => {
            let config = ig::operators::logs::LogsConfig {
                enabled: true,
                channel: ig::operators::logs::Channel::File,
                filename: logs_dir.path().join("ig.log"),
                ..Default::default()
            };
            let writer = ig::operators::logs::LogWriter::start(&config).unwrap();
            run.operator(move || {
                Box::new(ig::operators::logs::Logs::new(
                    writer.clone(),
                    ig::operators::logs::Format::Json,
                    "trace_open",
                ))
            })
        }
        Consumer::OtelLogs => {
            let config = ig::otlp::ExporterConfig {
                name: "alloc".into(),
                endpoint: "http://127.0.0.1:1".into(),
                headers: Vec::new(),
                insecure: true,
                interval: std::time::Duration::from_secs(1),
                temporality: ig::otlp::Temporality::Cumulative,
            };
            let e = exporter.insert(
                ig::otlp::Exporter::start(&config, ig::otlp::Signal::Logs, None, None).unwrap(),
            );
            let route = ig::operators::otel_logs::Route {
                ds: None,
                sender: e.sender(),
                max_wait: std::time::Duration::from_secs(1),
            };
            run.operator(move || {
                Box::new(ig::operators::otel_logs::OtelLogs::new(
                    vec![route.clone()],
                    "trace_open",
                ))
            })
        }
    };
    let mut p = run.pipeline().unwrap();
    let (id, schema) = p
        .dispatch
        .schemas()
        .next()
        .map(|(i, s)| (i, s.clone()))
        .unwrap();
    // Varying samples: printable strings of changing length, changing numbers.
    let samples: Vec<Vec<u8>> = (0..64u32)
        .map(|i| {
            let mut raw = vec![0u8; schema.raw_size as usize];
            for f in schema.fields() {
                if let ig::datasource::Location::Raw { offset, size } = f.loc {
                    let r = &mut raw[offset as usize..(offset + size) as usize];
                    if f.kind == ig::datasource::FieldKind::CString {
                        let text = format!("/tmp/{}-{}", "x".repeat(i as usize % 40), i);
                        let k = text.len().min(r.len().saturating_sub(1));
                        r[..k].copy_from_slice(&text.as_bytes()[..k]);
                    } else {
                        for (j, b) in r.iter_mut().enumerate().take(4) {
                            *b = (i as u8).wrapping_mul(31).wrapping_add(j as u8);
                        }
                    }
                }
            }
            raw
        })
        .collect();
    let mut ev = Event::new(&schema);
    // Warm-up: buffers and caches reach their steady size.
    for s in samples.iter().cycle().take(20_000) {
        ev.set_raw(s);
        p.dispatch.event(id, &mut ev);
    }
    let n = 20_000u64;
    ALLOCS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    for s in samples.iter().cycle().take(n as usize) {
        ev.set_raw(s);
        p.dispatch.event(id, &mut ev);
    }
    COUNTING.store(false, Ordering::Relaxed);
    let allocs = ALLOCS.load(Ordering::Relaxed);
    if let Consumer::Metrics = consumer {
        // The events were counted, by comm, and reach a scrape.
        p.dispatch.flush().unwrap();
        let text = registry.scrape();
        assert!(
            text.contains("opens_total{") && text.contains(",proc_comm=\"/tmp/"),
            "{text}"
        );
        assert!(text.contains("ig_events_total{"), "{text}");
    }
    if let Consumer::Logs = consumer {
        p.dispatch.flush().unwrap();
        // The writer's thread writes the lines: give it a moment.
        let file = logs_dir.path().join("ig.log");
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read(&file).map_or(0, |b| b.split(|&c| c == b'\n').count()) < n as usize
            && std::time::Instant::now() < end
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.lines().count() as u64 > n,
            "{} lines",
            text.lines().count()
        );
    }
    if let (Consumer::OtelLogs, Some(e)) = (consumer, &exporter) {
        p.dispatch.flush().unwrap();
        // Batches were made (and dropped: no collector there).
        std::hint::black_box(e.dropped());
    }
    (allocs, n)
}

#[test]
fn no_heap_allocation_per_event_json_table_yaml() {
    // One test function: the counter is global, so no parallel counting.
    // The chain as `ig run` builds it; the filter keeps every event, so
    // each one reaches the printer.
    let with_filter: &[(&str, &str)] = &[("filter", "proc.comm!=nobody-has-this-name")];
    // An expression of every kind of node that keeps every event.
    let with_expr: &[(&str, &str)] = &[(
        "filter-expr",
        r#"let names = ["nobody", "nothing"]; proc.comm != "nobody" and (proc.pid >= 0 or proc.comm matches "^x") and not (proc.comm startsWith "/none") and len(proc.comm) >= 0 and proc.comm not in names and proc.creds.uid in 0..4294967295 and proc.pid not in [1, 2.5, "x"] and !(proc.comm contains "zz" || proc.comm endsWith "zz")"#,
    )];
    // One whose evaluation fails for every event (not an IP address):
    // the failure path drops without allocating too.
    let failing_expr: &[(&str, &str)] = &[
        ("filter", "proc.pid>=0"),
        ("filter-expr", r#"proc.comm in cidr("10.0.0.0/8")"#),
    ];
    let consumers = [
        Consumer::Print(OutputMode::Json),
        Consumer::Print(OutputMode::Columns),
        Consumer::Print(OutputMode::Yaml),
        Consumer::PrintInstance(OutputMode::Json),
        Consumer::PrintInstance(OutputMode::Columns),
        Consumer::PrintInstance(OutputMode::Yaml),
        Consumer::Callback,
    ];
    for gadget in ["trace_open", "trace_exec"] {
        for consumer in consumers {
            for params in [&[][..], with_filter, with_expr, failing_expr] {
                let (allocs, n) = allocations_per_event(gadget, consumer, params);
                // Flushing the output buffer to the sink every 128 KiB may
                // allocate in std; a per-event allocation shows as >= n.
                assert!(
                    allocs * 100 < n,
                    "{gadget} {consumer:?} {params:?}: {allocs} allocations for {n} events"
                );
            }
        }
    }
    // Metrics: 64 distinct comms (series made in the warm-up), counted
    // per event.
    for params in [&[][..], with_filter] {
        let (allocs, n) = allocations_per_event("trace_open", Consumer::Metrics, params);
        assert!(
            allocs * 100 < n,
            "metrics {params:?}: {allocs} allocations for {n} events"
        );
    }
    // Log lines and OTLP log records: formatted into batches; a batch
    // (hundreds of events) may allocate when it is handed over.
    for consumer in [Consumer::Logs, Consumer::OtelLogs] {
        let (allocs, n) = allocations_per_event("trace_open", consumer, &[]);
        assert!(
            allocs * 100 < n,
            "{consumer:?}: {allocs} allocations for {n} events"
        );
    }
}
