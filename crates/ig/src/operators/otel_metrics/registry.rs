//! What a scrape sees: [`Registry`], the snapshots the runs of a process
//! publish (each collector replaces its own at its flush, so the event
//! path never touches it), ig's own metrics
//! (`--otel-metrics-export-internals`), and [`Listener`], the thread
//! that serves them as Prometheus text on `GET /metrics`.
//!
//! The listener is a plain std thread with a blocking `TcpListener`: one
//! route, one request at a time (a scrape takes microseconds), a request
//! capped at 8 KiB and read with a 2 s timeout so a silent client cannot
//! hold it, `Connection: close`. No async runtime: nothing of it runs on
//! a run's thread. Stopping it (dropping the [`Listener`]) sets a flag
//! and connects to it once to wake its `accept`.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::exposition::{self, Family, Kind, Series, Value};
use crate::pipeline::Notice;

/// The scope of ig's own metrics (upstream's meter name).
pub const INTERNAL_SCOPE: &str = "inspektor-gadget";

/// Longest request head the listener reads.
const MAX_REQUEST: usize = 8 << 10;
/// How long a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The metrics of every run of a process that exports (`Clone`: the runs
/// and the listener share it). Runs that are not given one export nothing.
#[derive(Clone, Default)]
pub struct Registry(Arc<Shared>);

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("internals", &self.0.internals)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    next_id: AtomicU64,
    internals: bool,
    /// An OTLP exporter reads [`Registry::instruments`].
    otlp: AtomicBool,
}

/// One instrument of a collector as OpenTelemetry names it, for OTLP:
/// the instrument's own name (`execs`, not `execs_total`) and attribute
/// keys (`proc.comm`).
#[derive(Clone, Debug, PartialEq)]
pub struct Instrument {
    /// The scope (`--otel-metrics-name`).
    pub scope: String,
    /// The instrument's name.
    pub name: String,
    /// `metrics.description`.
    pub description: String,
    /// `metrics.unit`.
    pub unit: String,
    /// Its kind.
    pub kind: Kind,
    /// One point per label set.
    pub points: Vec<Point>,
}

/// An attribute's value, typed as upstream's exporter types it: integer
/// fields (signed or not) as int64, floats as double, booleans as bool,
/// strings as string, bytes as their base64 string.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    /// Strings, and bytes in base64.
    Str(String),
    /// Every integer kind (an unsigned 64-bit value wraps, as upstream's).
    Int(i64),
    /// Floats.
    Double(f64),
    /// Booleans.
    Bool(bool),
}

impl AttrValue {
    /// The Prometheus label's text of the same value (what a scrape shows).
    pub fn label(&self) -> String {
        match self {
            AttrValue::Str(s) => s.clone(),
            AttrValue::Int(n) => n.to_string(),
            AttrValue::Double(f) => {
                let mut s = String::new();
                exposition::go_float(*f, &mut s);
                s
            }
            AttrValue::Bool(b) => b.to_string(),
        }
    }
}

/// One point of an [`Instrument`].
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// `(key, value)`, the data source's key fields.
    pub attributes: Vec<(String, AttrValue)>,
    /// Cumulative since the run started.
    pub value: Value,
}

#[derive(Default)]
struct State {
    /// Per collector (by [`Registry::id`]), its last snapshot.
    published: BTreeMap<u64, Vec<Family>>,
    /// The same, as OpenTelemetry instruments (when an exporter reads them).
    instruments: BTreeMap<u64, Vec<Instrument>>,
    /// Instruments of stopped runs, until a push has taken them: a
    /// daemon serves runs for ever, and their points must not pile up.
    retired: Vec<Instrument>,
    /// What OTLP exporters dropped, by signal (`metrics`, `logs`).
    otlp_dropped: BTreeMap<&'static str, u64>,
    /// ig's own: gadgets running now.
    running: i64,
    /// Per counting handler (by id), `(data source, events)`.
    events: BTreeMap<u64, (String, u64)>,
    /// Events the kernel dropped, by data source.
    lost: BTreeMap<String, u64>,
    /// Events dropped at the output.
    output_dropped: u64,
}

impl Registry {
    /// An empty registry; `internals`: also expose ig's own metrics.
    pub fn new(internals: bool) -> Self {
        Self(Arc::new(Shared {
            internals,
            ..Shared::default()
        }))
    }

    /// Whether ig's own metrics are exposed.
    pub fn internals(&self) -> bool {
        self.0.internals
    }

    /// A new id for a publisher (a collector, an event counter).
    pub fn id(&self) -> u64 {
        self.0.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it cannot leave it half-updated: every
        // update is one assignment.
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep OpenTelemetry instruments too, for an OTLP exporter.
    pub fn enable_otlp(&self) {
        self.0.otlp.store(true, Ordering::Relaxed);
    }

    /// Whether an OTLP exporter reads the instruments.
    pub fn otlp(&self) -> bool {
        self.0.otlp.load(Ordering::Relaxed)
    }

    /// Replace the instruments of publisher `id`.
    pub fn publish_instruments(&self, id: u64, instruments: Vec<Instrument>) {
        self.state().instruments.insert(id, instruments);
    }

    /// Every collector's instruments now, and ig's own (scope
    /// `inspektor-gadget`) when they are exported; those of stopped runs
    /// too, and then no more (`retire`): the caller is the push.
    pub fn instruments(&self) -> Vec<Instrument> {
        let mut s = self.state();
        let mut all: Vec<Instrument> = s.instruments.values().flatten().cloned().collect();
        all.append(&mut s.retired);
        if self.0.internals {
            all.extend(internal_instruments(&s));
        }
        all
    }

    /// Publisher `id` stopped: its instruments are in the next
    /// [`Registry::instruments`], the last time.
    pub fn retire(&self, id: u64) {
        let mut s = self.state();
        if let Some(i) = s.instruments.remove(&id) {
            s.retired.extend(i);
        }
    }

    /// Set what the OTLP exporter of `signal` dropped so far.
    pub fn otlp_dropped(&self, signal: &'static str, total: u64) {
        self.state().otlp_dropped.insert(signal, total);
    }

    /// Replace the snapshot of publisher `id`.
    pub fn publish(&self, id: u64, families: Vec<Family>) {
        self.state().published.insert(id, families);
    }

    /// Set the count of events of data source `ds` a counter `id` saw.
    pub fn publish_events(&self, id: u64, ds: &str, events: u64) {
        let mut s = self.state();
        match s.events.get_mut(&id) {
            Some(e) => e.1 = events,
            None => {
                s.events.insert(id, (ds.to_owned(), events));
            }
        }
    }

    /// A gadget started (`+1`) or stopped (`-1`).
    pub fn gadget_running(&self, delta: i64) {
        self.state().running += delta;
    }

    /// Count what a run's notice says was lost (the kernel's and the
    /// output's drops).
    pub fn notice(&self, n: &Notice) {
        if !self.0.internals {
            return;
        }
        match n {
            Notice::Lost { source, count } => {
                *self.state().lost.entry(source.clone()).or_default() += count;
            }
            Notice::OutputDropped { count } => self.state().output_dropped += count,
            _ => {}
        }
    }

    /// The text of a scrape.
    pub fn scrape(&self) -> String {
        let s = self.state();
        let internal = self.0.internals.then(|| internal_families(&s));
        let mut all: Vec<&Family> = s.published.values().flatten().collect();
        if let Some(i) = &internal {
            all.extend(i.iter());
        }
        let target;
        if !all.is_empty() {
            target = target_info();
            all.push(&target);
        }
        let mut out = String::new();
        exposition::write(&all, &mut out);
        out
    }

    /// Serve this registry on `addr` from a thread of its own.
    pub fn serve(&self, addr: &str) -> std::io::Result<Listener> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let registry = self.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ig-metrics".into())
            .spawn(move || accept_loop(&listener, &registry, &flag))?;
        Ok(Listener {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }
}

/// `target_info`, the resource upstream's exporter describes (its
/// default resource names the service after the executable). The
/// `telemetry_sdk_*` labels of an OpenTelemetry SDK are left out: ig
/// uses none.
fn target_info() -> Family {
    Family {
        name: "target_info".into(),
        help: "Target metadata".into(),
        kind: Kind::Gauge,
        series: vec![Series {
            labels: vec![("service_name".into(), "unknown_service:ig".into())],
            value: Value::Scalar(1.0),
        }],
    }
}

fn internal_families(s: &State) -> Vec<Family> {
    let scope = exposition::scope_labels(INTERNAL_SCOPE, env!("CARGO_PKG_VERSION"));
    let with = |extra: Option<(&str, &str)>, v: f64| {
        let mut labels = scope.to_vec();
        if let Some((k, val)) = extra {
            labels.push((k.to_owned(), val.to_owned()));
        }
        Series {
            labels,
            value: Value::Scalar(v),
        }
    };
    let mut events: BTreeMap<&str, u64> = BTreeMap::new();
    for (ds, n) in s.events.values() {
        *events.entry(ds).or_default() += n;
    }
    let mut families = vec![
        Family {
            name: "ig_gadgets_running".into(),
            help: "Number of running gadgets".into(),
            kind: Kind::Gauge,
            series: vec![with(None, s.running as f64)],
        },
        Family {
            name: "ig_events_total".into(),
            help: "Events a data source emitted, before any filter".into(),
            kind: Kind::Counter,
            series: events
                .iter()
                .map(|(ds, n)| with(Some(("datasource", ds)), *n as f64))
                .collect(),
        },
        Family {
            name: "ig_lost_events_total".into(),
            help: "Events the kernel dropped because a ring buffer was full".into(),
            kind: Kind::Counter,
            series: s
                .lost
                .iter()
                .map(|(ds, n)| with(Some(("datasource", ds)), *n as f64))
                .collect(),
        },
        Family {
            name: "ig_output_dropped_total".into(),
            help: "Events formatted but dropped because the reader of the output did not keep up"
                .into(),
            kind: Kind::Counter,
            series: vec![with(None, s.output_dropped as f64)],
        },
    ];
    // Only once an OTLP exporter dropped something: scrapes without
    // exporters keep their shape.
    if !s.otlp_dropped.is_empty() {
        families.push(Family {
            name: "ig_otlp_dropped_total".into(),
            help: "Data points and log records an OTLP exporter dropped (queue full, collector \
                   unreachable past the retries, or refused)"
                .into(),
            kind: Kind::Counter,
            series: s
                .otlp_dropped
                .iter()
                .map(|(sig, n)| with(Some(("signal", *sig)), *n as f64))
                .collect(),
        });
    }
    families
}

/// ig's own metrics as OpenTelemetry instruments: the families of a
/// scrape with their instrument names (a counter's without `_total`) and
/// their own attributes (`datasource`, `signal`; the scope is the
/// instrument's).
fn internal_instruments(s: &State) -> Vec<Instrument> {
    internal_families(s)
        .into_iter()
        .map(|f| Instrument {
            scope: INTERNAL_SCOPE.to_owned(),
            name: match f.kind {
                Kind::Counter => f.name.strip_suffix("_total").unwrap_or(&f.name).to_owned(),
                _ => f.name.clone(),
            },
            description: f.help,
            unit: String::new(),
            kind: f.kind,
            points: f
                .series
                .into_iter()
                .map(|series| Point {
                    attributes: series
                        .labels
                        .into_iter()
                        .filter(|(k, _)| !k.starts_with("otel_scope_"))
                        .map(|(k, v)| (k, AttrValue::Str(v)))
                        .collect(),
                    value: series.value,
                })
                .collect(),
        })
        .collect()
}

/// The serving thread; stops when dropped.
pub struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    /// Where it listens (the port the system chose for `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept: on the address itself, or the loopback one of
        // its family for an address of every interface.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let woke = TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok();
        if let Some(t) = self.thread.take()
            && woke
        {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, registry: &Registry, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match conn {
            Ok(c) => {
                if let Err(e) = answer(c, registry) {
                    log::debug!("metrics listener: {e}");
                }
            }
            Err(e) => {
                log::debug!("metrics listener: accept: {e}");
                // Out of descriptors and the like: do not spin.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics { head: bool },
    NotFound,
    BadMethod,
    Bad,
}

/// The route of the request head `head` (pure).
fn route(head: &[u8]) -> Route {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Bad;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => Route::Metrics {
            head: method == "HEAD",
        },
        ("GET" | "HEAD", _) => Route::NotFound,
        _ => Route::BadMethod,
    }
}

fn answer(mut c: TcpStream, registry: &Registry) -> std::io::Result<()> {
    c.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    c.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = c.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return reply(
                &mut c,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"request too large\n",
                false,
            );
        }
    }
    match route(&head) {
        Route::Metrics { head } => {
            let body = registry.scrape();
            reply(
                &mut c,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
                head,
            )
        }
        Route::NotFound => reply(
            &mut c,
            "404 Not Found",
            "text/plain",
            b"metrics are at /metrics\n",
            false,
        ),
        Route::BadMethod => reply(
            &mut c,
            "405 Method Not Allowed",
            "text/plain",
            b"GET /metrics\n",
            false,
        ),
        Route::Bad => reply(
            &mut c,
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
            false,
        ),
    }
}

fn reply(
    c: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    c.write_all(&out)?;
    c.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            route(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Route::Metrics { head: true }
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::BadMethod);
        assert_eq!(route(b"garbage"), Route::Bad);
    }

    /// A real socket: the listener answers a scrape with what was
    /// published, and stops when dropped.
    #[test]
    fn serves_and_stops() {
        let r = Registry::new(true);
        r.gadget_running(1);
        r.notice(&Notice::Lost {
            source: "open".into(),
            count: 7,
        });
        let l = r.serve("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr()).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.contains("text/plain; version=0.0.4"), "{got}");
        assert!(
            got.contains("ig_gadgets_running{otel_scope_name=\"inspektor-gadget\",otel_scope_schema_url=\"\",otel_scope_version=\""),
            "{got}"
        );
        assert!(
            got.contains(
                "ig_lost_events_total{datasource=\"open\",otel_scope_name=\"inspektor-gadget\","
            ) && got.contains("\"} 7\n"),
            "{got}"
        );
        let addr = l.local_addr();
        drop(l);
        assert!(TcpStream::connect(addr).is_err(), "still listening");
    }
}
