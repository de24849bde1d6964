//! OTLP over HTTP/protobuf: pushing metrics and logs to a collector that
//! receives (`operator.otel-metrics.exporters.<name>`,
//! `operator.otel-logs.exporters.<name>` with `exporter: otlp-http`).
//!
//! Owns: the exporters' settings ([`ExporterConfig`]), the messages
//! (`proto`, OTLP's field numbers), the OTLP form of the metrics
//! snapshots and their temporality (`metrics`), the encoding of one log
//! record straight into a batch (`logs`), and [`Exporter`]: a thread that
//! POSTs request bodies to the collector. Does not own: which data
//! sources are exported (the `otel-metrics` and `otel-logs` operators).
//!
//! Nothing here runs on a run's thread but [`LogBatcher`]'s encoding,
//! which allocates nothing once warm. The exporter's thread keeps a
//! bounded queue of requests ([`MAX_PENDING`]); a collector that is down
//! or slow makes it retry with backoff (1 s doubling to 30 s), and what
//! does not fit is dropped and counted ([`Exporter::dropped`]), so memory
//! stays bounded whatever the collector does. On stop
//! ([`Exporter::shutdown`]) it makes a final request (metrics) and sends
//! what it holds, for at most [`SHUTDOWN_BUDGET`] in total: the stop sets
//! a deadline that also cuts a request already in flight, so a collector
//! that takes the connection and never answers cannot hold the stop for
//! a request's whole timeout. [`Exporter::begin_shutdown`] lets a caller
//! with several exporters start every budget at once.
//!
//! `otlp-grpc` (upstream's only exporter) is refused with a message
//! naming `otlp-http`: the gRPC stack is in the binary's daemon, not in
//! this library.

pub mod logs;
pub mod metrics;
pub mod proto;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use logs::LogBatcher;

/// Requests an exporter holds while its collector does not take them.
pub const MAX_PENDING: usize = 64;
/// Batches the runs may queue for the exporter's thread.
const QUEUE: usize = 64;
/// How long the stop may take, the final push included, whatever the
/// collector does.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(5);
/// Per request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the thread sends before it reads its queue again.
const FLUSH_SLICE: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Which signal an exporter carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `/v1/metrics`.
    Metrics,
    /// `/v1/logs`.
    Logs,
}

impl Signal {
    fn path(self) -> &'static str {
        match self {
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
        }
    }
    fn items(self) -> &'static str {
        match self {
            Signal::Metrics => "data points",
            Signal::Logs => "log records",
        }
    }
}

/// Cumulative (since the start, upstream's default) or delta (since the
/// previous push) sums and histograms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Temporality {
    /// Since the start.
    #[default]
    Cumulative,
    /// Since the previous push.
    Delta,
}

/// One exporter of the configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExporterConfig {
    /// Its name (the key under `exporters`).
    pub name: String,
    /// `http://host:port` (`/v1/metrics` or `/v1/logs` is added), or a
    /// URL with a path, used as it is. Without a scheme: https, or http
    /// when `insecure`.
    pub endpoint: String,
    /// Sent with every request (`authorization: Bearer …`).
    pub headers: Vec<(String, String)>,
    /// Plain HTTP without a scheme in the endpoint.
    pub insecure: bool,
    /// How often metrics are pushed (60s by default, as the Go SDK's
    /// periodic reader); the longest log records wait (1s by default).
    pub interval: Duration,
    /// Metrics only.
    pub temporality: Temporality,
}

/// Why an exporter cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// A setting has a value it cannot take.
    #[error("{key}: {reason}")]
    Setting {
        /// The full key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A flag names an exporter the configuration lacks.
    #[error("no exporter {name} under {section}.exporters (configured: {known})")]
    Unknown {
        /// The name.
        name: String,
        /// `operator.otel-metrics` or `operator.otel-logs`.
        section: String,
        /// The configured ones.
        known: String,
    },
    /// The exporter's thread or runtime.
    #[error("starting the OTLP exporter {name}")]
    Start {
        /// The exporter.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client.
    #[cfg(feature = "registry")]
    #[error("the OTLP exporter {name}: HTTP client")]
    Client {
        /// The exporter.
        name: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// Built without the HTTP client.
    #[error("the OTLP exporter {0}: this ig is built without an HTTP client (feature registry)")]
    NoClient(String),
}

impl ExporterConfig {
    /// The exporter `name` from its settings (`exporter`, `endpoint`,
    /// `headers`, `insecure`, `interval`, `temporality`, `compression`),
    /// each a string; `section` is `operator.otel-metrics` or
    /// `operator.otel-logs`, for messages.
    pub fn parse(
        section: &str,
        name: &str,
        settings: &BTreeMap<String, SettingValue>,
        default_interval: Duration,
    ) -> Result<Self, OtlpError> {
        let key = |k: &str| format!("{section}.exporters.{name}.{k}");
        let bad = |k: &str, reason: String| OtlpError::Setting {
            key: key(k),
            reason,
        };
        let text = |k: &str| -> Result<Option<&str>, OtlpError> {
            match settings.get(k) {
                None => Ok(None),
                Some(SettingValue::Text(t)) => Ok(Some(t.as_str())),
                Some(SettingValue::Map(_)) => {
                    Err(bad(k, "a mapping, where a value is expected".into()))
                }
            }
        };
        match text("exporter")? {
            Some("otlp-http") => {}
            Some("otlp-grpc") => {
                return Err(bad(
                    "exporter",
                    "otlp-grpc is not supported by this ig; use exporter: otlp-http \
                     (OTLP over HTTP/protobuf, port 4318 of a collector)"
                        .into(),
                ));
            }
            Some(other) => {
                return Err(bad(
                    "exporter",
                    format!("{other:?}: the supported exporter is otlp-http"),
                ));
            }
            None => return Err(bad("exporter", "missing: otlp-http".into())),
        }
        let endpoint = text("endpoint")?
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| bad("endpoint", "missing (like http://127.0.0.1:4318)".into()))?
            .to_owned();
        let insecure = match text("insecure")? {
            None => false,
            Some("true" | "True" | "TRUE" | "1" | "t" | "T") => true,
            Some("false" | "False" | "FALSE" | "0" | "f" | "F") => false,
            Some(o) => return Err(bad("insecure", format!("{o:?}: true or false"))),
        };
        let interval = match text("interval")? {
            None => default_interval,
            Some(t) => crate::params::parse_duration(t)
                .ok()
                .filter(|d| *d >= Duration::from_millis(100))
                .ok_or_else(|| {
                    bad(
                        "interval",
                        format!("{t:?}: a duration of at least 100ms (like 10s)"),
                    )
                })?,
        };
        let temporality = match text("temporality")? {
            None | Some("cumulative") => Temporality::Cumulative,
            Some("delta") => Temporality::Delta,
            Some(o) => return Err(bad("temporality", format!("{o:?}: cumulative or delta"))),
        };
        match text("compression")? {
            None | Some("none") => {}
            Some(o) => return Err(bad("compression", format!("{o:?}: only none is supported"))),
        }
        let headers = match settings.get("headers") {
            None => Vec::new(),
            Some(SettingValue::Map(m)) => m.clone(),
            Some(SettingValue::Text(_)) => {
                return Err(bad("headers", "a mapping of header names to values".into()));
            }
        };
        for (h, v) in &headers {
            let ok_name = !h.is_empty() && h.bytes().all(|c| c.is_ascii_graphic() && c != b':');
            if !ok_name || v.bytes().any(|c| c == b'\r' || c == b'\n') {
                return Err(bad("headers", format!("{h:?}: not a valid HTTP header")));
            }
        }
        for k in settings.keys() {
            if ![
                "exporter",
                "endpoint",
                "headers",
                "insecure",
                "interval",
                "temporality",
                "compression",
            ]
            .contains(&k.as_str())
            {
                log::debug!("{}: ignored", key(k));
            }
        }
        Ok(Self {
            name: name.to_owned(),
            endpoint,
            headers,
            insecure,
            interval,
            temporality,
        })
    }

    /// The URL of `signal`'s requests.
    pub fn url(&self, signal: Signal) -> String {
        let e = self.endpoint.trim_end_matches('/');
        let (scheme, rest) = match e.split_once("://") {
            Some((s, r)) => (s.to_owned(), r),
            None => ((if self.insecure { "http" } else { "https" }).to_owned(), e),
        };
        if rest.contains('/') {
            format!("{scheme}://{rest}")
        } else {
            format!("{scheme}://{rest}{}", signal.path())
        }
    }
}

/// A setting's value as the configuration file gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingValue {
    /// A scalar, as text.
    Text(String),
    /// A mapping of scalars (`headers`).
    Map(Vec<(String, String)>),
}

/// What an exporter did, shared with whoever reports it.
#[derive(Default)]
struct Stats {
    dropped: AtomicU64,
    sent: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// What the exporter's queue carries: a body and its count of items, or
/// `None`: stop.
type Msg = Option<(Vec<u8>, u64)>;

/// Makes a metrics request body on the exporter's thread (`true`: the
/// final one); `None`: nothing to send. The `u64` counts its items.
pub type Producer = Box<dyn FnMut(bool) -> Option<(Vec<u8>, u64)> + Send>;

/// One exporter's thread: POSTs bodies to the collector.
pub struct Exporter {
    name: String,
    signal: Signal,
    tx: Option<SyncSender<Msg>>,
    stats: Arc<Stats>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The stop's deadline, for the thread (cuts a request in flight).
    stop: tokio::sync::watch::Sender<Option<Instant>>,
}

impl Exporter {
    /// Start the thread for `signal`; `producer` (metrics) is called every
    /// interval.
    pub fn start(
        config: &ExporterConfig,
        signal: Signal,
        producer: Option<Producer>,
        registry: Option<crate::operators::otel_metrics::Registry>,
    ) -> Result<Self, OtlpError> {
        let (stop, stop_rx) = tokio::sync::watch::channel(None);
        let client = Client::new(config, stop_rx)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let url = config.url(signal);
        let interval = config.interval;
        let name = config.name.clone();
        let config_name = config.name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ig-otlp-{}", config.name))
            .spawn(move || {
                Worker {
                    client,
                    url,
                    interval,
                    producer,
                    pending: VecDeque::new(),
                    stats: s,
                    backoff: BACKOFF_MIN,
                    retry_at: None,
                    signal,
                    name: config_name,
                    registry,
                    told_dropped: 0,
                    told_at: None,
                    failing: false,
                }
                .run(&rx);
            })
            .map_err(|source| OtlpError::Start {
                name: name.clone(),
                source,
            })?;
        Ok(Self {
            name,
            signal,
            tx: Some(tx),
            stats,
            thread: Some(thread),
            stop,
        })
    }

    /// The exporter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle for the runs' threads.
    pub fn sender(&self) -> ExportSender {
        ExportSender {
            tx: self.tx.clone(),
            stats: self.stats.clone(),
        }
    }

    /// Items dropped so far.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }

    /// Items the collector accepted so far.
    pub fn sent(&self) -> u64 {
        self.stats.sent.load(Ordering::Relaxed)
    }

    /// The latest failure, once.
    pub fn take_error(&self) -> Option<String> {
        self.stats.last_error.lock().ok()?.take()
    }

    /// The words for what it carries (`data points`, `log records`).
    pub fn items(&self) -> &'static str {
        self.signal.items()
    }

    /// Start the stop's budget now: [`SHUTDOWN_BUDGET`] from the first
    /// call, for the final push and any request in flight alike. Does
    /// not wait; [`Exporter::shutdown`] does.
    pub fn begin_shutdown(&self) {
        self.stop.send_if_modified(|d| {
            if d.is_some() {
                return false;
            }
            *d = Some(Instant::now() + SHUTDOWN_BUDGET);
            true
        });
    }

    /// The final request, then what is held, all within
    /// [`SHUTDOWN_BUDGET`] of the first [`Exporter::begin_shutdown`] (or
    /// of this call); the rest is dropped and counted, as is what senders
    /// held elsewhere ([`Exporter::sender`]) send later.
    pub fn shutdown(&mut self) {
        self.begin_shutdown();
        // Waits for room: the thread drains the queue, and none of its
        // requests outlives the deadline.
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(None);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the runs hold to queue bodies (cheap to clone).
#[derive(Clone)]
pub struct ExportSender {
    tx: Option<SyncSender<Msg>>,
    stats: Arc<Stats>,
}

impl ExportSender {
    /// Queue a body of `items` without waiting: a full queue (or a
    /// stopped exporter) drops it, counted.
    pub fn send(&self, body: Vec<u8>, items: u64) {
        let dropped = match &self.tx {
            Some(tx) => match tx.try_send(Some((body, items))) {
                Ok(()) => return,
                Err(_) => items,
            },
            None => items,
        };
        self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
    }

    /// Items dropped so far (the exporter's count).
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }
}

/// The HTTP side: a reqwest client on a current-thread runtime owned by
/// the exporter's thread.
struct Client {
    #[cfg(feature = "registry")]
    runtime: tokio::runtime::Runtime,
    #[cfg(feature = "registry")]
    http: reqwest::Client,
    #[cfg(feature = "registry")]
    headers: reqwest::header::HeaderMap,
    /// The stop's deadline, once set.
    stop: tokio::sync::watch::Receiver<Option<Instant>>,
}

/// Why a request failed: worth retrying or not.
enum Failure {
    // Made only by the HTTP client (feature registry).
    #[cfg_attr(not(feature = "registry"), allow(dead_code))]
    Retry(String),
    Reject(String),
}

impl Client {
    #[cfg(feature = "registry")]
    fn new(
        config: &ExporterConfig,
        stop: tokio::sync::watch::Receiver<Option<Instant>>,
    ) -> Result<Self, OtlpError> {
        crate::image::registry::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| OtlpError::Start {
                name: config.name.clone(),
                source,
            })?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("ig/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(REQUEST_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|source| OtlpError::Client {
                name: config.name.clone(),
                source,
            })?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &config.headers {
            let (Ok(k), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                reqwest::header::HeaderValue::from_str(v),
            ) else {
                return Err(OtlpError::Setting {
                    key: format!("exporters.{}.headers", config.name),
                    reason: format!("{k:?}: not a valid HTTP header"),
                });
            };
            headers.insert(k, v);
        }
        Ok(Self {
            runtime,
            http,
            headers,
            stop,
        })
    }

    #[cfg(not(feature = "registry"))]
    fn new(
        config: &ExporterConfig,
        _stop: tokio::sync::watch::Receiver<Option<Instant>>,
    ) -> Result<Self, OtlpError> {
        Err(OtlpError::NoClient(config.name.clone()))
    }

    /// The stop's deadline, once the stop has begun.
    fn deadline(&self) -> Option<Instant> {
        *self.stop.borrow()
    }

    #[cfg(feature = "registry")]
    fn post(&self, url: &str, body: &[u8], timeout: Duration) -> Result<(), Failure> {
        let request = async {
            let r = self
                .http
                .post(url)
                .timeout(timeout)
                .headers(self.headers.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                .body(body.to_vec())
                .send()
                .await
                .map_err(|e| Failure::Retry(crate::run::error_chain(&e)))?;
            let status = r.status();
            if status.is_success() {
                return Ok(());
            }
            let what = format!("{url}: HTTP {status}");
            // OTLP/HTTP: 429, 502, 503, 504 may be retried; other errors
            // are the request's fault.
            if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
                Err(Failure::Retry(what))
            } else {
                Err(Failure::Reject(what))
            }
        };
        // The stop's deadline, once set, ends the request whatever the
        // collector does (one that accepts and never answers would
        // otherwise hold it for REQUEST_TIMEOUT).
        let mut stop = self.stop.clone();
        let cut = async move {
            let deadline = match stop.wait_for(Option::is_some).await {
                Ok(d) => *d,
                // The exporter is gone: nothing will cut.
                Err(_) => None,
            };
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        self.runtime.block_on(async {
            let mut request = std::pin::pin!(request);
            let mut cut = std::pin::pin!(cut);
            std::future::poll_fn(|cx| {
                if let std::task::Poll::Ready(r) = request.as_mut().poll(cx) {
                    return std::task::Poll::Ready(r);
                }
                cut.as_mut().poll(cx).map(|()| {
                    Err(Failure::Retry(format!(
                        "{url}: no answer within the stop's budget ({SHUTDOWN_BUDGET:?})"
                    )))
                })
            })
            .await
        })
    }

    #[cfg(not(feature = "registry"))]
    fn post(&self, _url: &str, _body: &[u8], _timeout: Duration) -> Result<(), Failure> {
        Err(Failure::Reject("no HTTP client".into()))
    }
}

struct Worker {
    client: Client,
    url: String,
    interval: Duration,
    producer: Option<Producer>,
    pending: VecDeque<(Vec<u8>, u64)>,
    stats: Arc<Stats>,
    backoff: Duration,
    retry_at: Option<Instant>,
    signal: Signal,
    name: String,
    registry: Option<crate::operators::otel_metrics::Registry>,
    told_dropped: u64,
    told_at: Option<Instant>,
    /// The last request failed (said once; its recovery too).
    failing: bool,
}

impl Worker {
    fn hold(&mut self, body: Vec<u8>, items: u64) {
        if self.pending.len() >= MAX_PENDING
            && let Some((_, n)) = self.pending.pop_front()
        {
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        }
        self.pending.push_back((body, items));
    }

    fn note(&mut self, e: String) {
        if !self.failing {
            log::warn!(
                "OTLP exporter {}: {e}; {} are held and retried (up to {MAX_PENDING} requests), \
                 then dropped",
                self.name,
                self.signal.items()
            );
        } else {
            log::debug!("OTLP exporter {}: {e}", self.name);
        }
        self.failing = true;
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.stats.last_error.lock() {
            *l = Some(e);
        }
    }

    /// Say new drops (at most every 5 s) and publish them as ig's own
    /// metric.
    fn report(&mut self, force: bool) {
        let dropped = self.stats.dropped.load(Ordering::Relaxed);
        if dropped == self.told_dropped {
            return;
        }
        if let Some(r) = &self.registry {
            r.otlp_dropped(
                match self.signal {
                    Signal::Metrics => "metrics",
                    Signal::Logs => "logs",
                },
                dropped,
            );
        }
        let due = self
            .told_at
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
        if force || due {
            log::warn!(
                "OTLP exporter {}: {} {} dropped ({dropped} in total)",
                self.name,
                dropped - self.told_dropped,
                self.signal.items()
            );
            self.told_dropped = dropped;
            self.told_at = Some(Instant::now());
        }
    }

    /// Send what is held, oldest first, until one fails or `deadline`
    /// passes (no request starts after it); `last`: a request may not
    /// outlive the deadline either (the final push).
    fn flush(&mut self, deadline: Instant, last: bool) {
        loop {
            if Instant::now() >= deadline {
                return;
            }
            let Some((body, items)) = self.pending.front() else {
                return;
            };
            let items = *items;
            let timeout = if last {
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(REQUEST_TIMEOUT)
            } else {
                REQUEST_TIMEOUT
            };
            let result = self.client.post(&self.url, body, timeout);
            match result {
                Ok(()) => {
                    self.stats.sent.fetch_add(items, Ordering::Relaxed);
                    self.pending.pop_front();
                    if self.failing {
                        log::warn!(
                            "OTLP exporter {}: the collector takes requests again",
                            self.name
                        );
                        self.failing = false;
                    }
                    self.backoff = BACKOFF_MIN;
                    self.retry_at = None;
                }
                Err(Failure::Reject(e)) => {
                    self.stats.dropped.fetch_add(items, Ordering::Relaxed);
                    self.pending.pop_front();
                    self.note(e);
                }
                Err(Failure::Retry(e)) => {
                    self.note(e);
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    return;
                }
            }
        }
    }

    fn run(mut self, rx: &Receiver<Msg>) {
        let mut next_tick = Instant::now() + self.interval;
        loop {
            let now = Instant::now();
            let mut wake = next_tick;
            if let Some(r) = self.retry_at {
                wake = wake.min(r);
            }
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(Some((body, n))) => {
                    self.hold(body, n);
                    // Gather what else is there into the same round.
                    let mut stop = false;
                    while let Ok(m) = rx.try_recv() {
                        match m {
                            Some((b, n)) => self.hold(b, n),
                            None => stop = true,
                        }
                    }
                    if stop {
                        break;
                    }
                }
                Ok(None) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + self.interval;
                if let Some(p) = &mut self.producer
                    && let Some((body, n)) = p(false)
                {
                    self.hold(body, n);
                }
            }
            if self.retry_at.is_none_or(|r| now >= r) {
                // A slice at a time, so that the queue is read (and a
                // stop seen) while a slow collector takes a backlog.
                self.flush(now + FLUSH_SLICE, false);
            }
            self.report(false);
        }
        // The final round: the last snapshot, then everything held, by
        // the deadline the stop set.
        let deadline = self
            .client
            .deadline()
            .unwrap_or_else(|| Instant::now() + SHUTDOWN_BUDGET);
        if let Some(p) = &mut self.producer
            && let Some((body, n)) = p(true)
        {
            self.hold(body, n);
        }
        self.flush(deadline, true);
        // One more try past a failure, if time is left.
        if !self.pending.is_empty() && Instant::now() < deadline {
            self.flush(deadline, true);
        }
        for (_, n) in self.pending.drain(..) {
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        }
        self.report(true);
    }
}

#[cfg(test)]
mod tests;
