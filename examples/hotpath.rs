//! Measures the user-space hot path without a kernel: synthetic samples of a
//! gadget's event struct go through the real operator chain (schema from the
//! object's BTF, then the JSON or table printer) into `/dev/null`.
//!
//! ```sh
//! cargo build --release --example hotpath
//! ig image export ... # or any built object, e.g. from `ig image build`:
//! ./target/release/examples/hotpath OBJECT.o [json|columns] [EVENTS] [PARAM=VALUE...]
//! valgrind --tool=callgrind ./target/release/examples/hotpath OBJECT.o json 100000
//! ```
//! Prints ns per event. Used for `docs/design/003-hot-path.md`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a measuring tool reports on its terminal"
)]

use std::time::Instant;

use ig::datasource::Event;
use ig::operators::otel_metrics::Registry;
use ig::run::{Annotation, GadgetBytes, GadgetRun, OutputMode, PrintOptions, PrintTarget};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: hotpath OBJECT.o [json|columns] [EVENTS] [PARAM=VALUE...]");
        std::process::exit(2);
    };
    let mode = match args.get(2).map(String::as_str) {
        Some("columns") => OutputMode::Columns,
        _ => OutputMode::Json,
    };
    let n: usize = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let object = std::fs::read(path).expect("reading the object");
    // `HOTPATH_OUT=FILE` keeps the output (to compare two builds' bytes).
    let out_path = std::env::var("HOTPATH_OUT").unwrap_or_else(|_| "/dev/null".into());
    let devnull = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&out_path)
        .unwrap();
    // Parameters after the event count, `full.name=value`, e.g. the bench's
    // chain: operator.filter.filter=proc.comm!=x
    // operator.processinfo.enrich-process=true
    // Two are not parameters: `annotate=SPEC` is `ig run --annotate SPEC`,
    // and `metrics=true` gives the run a metrics registry (what
    // `--otel-metrics-listen` does, without the listener), e.g. issue 23's
    // counter: annotate=open:metrics.collect=true,open:metrics.implicit-counter.name=events,open.proc.comm:metrics.type=key
    // metrics=true operator.otel-metrics.otel-metrics-name=open:bench
    let mut given: Vec<(String, String)> = args
        .iter()
        .skip(4)
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let annotations = given
        .iter()
        .filter(|(k, _)| k == "annotate")
        .flat_map(|(_, v)| Annotation::parse_list(v).expect("annotate=SUBJECT:KEY=VALUE,..."))
        .collect::<Vec<_>>();
    let metrics = given.iter().any(|(k, v)| k == "metrics" && v == "true");
    given.retain(|(k, _)| k != "annotate" && k != "metrics");
    // The chain `ig run` builds, without loading anything.
    let mut run = GadgetRun::from_bytes(GadgetBytes {
        object: Some(object),
        ..GadgetBytes::default()
    })
    .annotate(annotations);
    if metrics {
        run = run.metrics(Registry::new(false));
    }
    let mut p = run
        .params(given)
        .print(PrintOptions::new(
            mode,
            PrintTarget::Writer(Box::new(devnull)),
        ))
        .pipeline()
        .expect("building the pipeline");
    let (id, schema) = p
        .dispatch
        .schemas()
        .next()
        .map(|(i, s)| (i, s.clone()))
        .expect("a data source");
    // A plausible sample, like the open storm's: printable strings, root's
    // uid and gid (names found), a boot-time stamp of now, O_RDONLY|O_CLOEXEC,
    // small numbers elsewhere.
    let mut raw = vec![0u8; schema.raw_size as usize];
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a plain clock read into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) };
    let boot_ns = now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64;
    for f in schema.fields() {
        if let ig::datasource::Location::Raw { offset, size } = f.loc {
            let r = &mut raw[offset as usize..(offset + size) as usize];
            let name = f.short_name();
            let value: u64 = match name {
                _ if name.contains("uid") || name.contains("gid") => 0,
                _ if name.starts_with("timestamp") => boot_ns,
                "flags_raw" => 0o2000000,
                "error_raw" | "mode_raw" => 0,
                // Our own pid, so process enrichment finds a real /proc entry.
                "pid" | "tid" => u64::from(std::process::id()),
                _ => 0x0707,
            };
            match f.kind {
                ig::datasource::FieldKind::CString => {
                    let text = b"/usr/lib/x86_64-linux-gnu/libc.so.6";
                    let k = text.len().min(r.len().saturating_sub(1));
                    r[..k].copy_from_slice(&text[..k]);
                }
                _ => {
                    let k = r.len().min(8);
                    r[..k].copy_from_slice(&value.to_le_bytes()[..k]);
                }
            }
        }
    }
    // `HOTPATH_SCHEMA=1` lists the fields and where they live.
    if std::env::var_os("HOTPATH_SCHEMA").is_some() {
        for f in schema.fields() {
            eprintln!("{:?} {:?} {} order={}", f.loc, f.kind, f.name, f.order);
        }
    }
    // The timestamps advance from event to event as in a storm of ~700k
    // events/s (a printer or formatter that remembered the last value
    // would otherwise be measured on a value that never changes).
    let stamps: Vec<std::ops::Range<usize>> = schema
        .fields()
        .iter()
        .filter(|f| f.short_name().starts_with("timestamp"))
        .filter_map(|f| match f.loc {
            ig::datasource::Location::Raw { offset, size: 8 } => {
                Some(offset as usize..offset as usize + 8)
            }
            _ => None,
        })
        .collect();
    let mut ev = Event::new(&schema);
    // Not `Pipeline::start`, which would load the program into the kernel:
    // a flush lets the operators that read files at start (user and group
    // names) do it, as they would before the first event of a real run.
    p.dispatch.flush().unwrap();
    let start = Instant::now();
    for i in 0..n {
        for r in &stamps {
            raw[r.clone()].copy_from_slice(&(boot_ns + i as u64 * 1429).to_le_bytes());
        }
        ev.set_raw(&raw);
        p.dispatch.event(id, &mut ev);
    }
    p.dispatch.flush().unwrap();
    let el = start.elapsed();
    println!(
        "{} events in {:?}: {:.0} ns/event",
        n,
        el,
        el.as_nanos() as f64 / n as f64
    );
}
