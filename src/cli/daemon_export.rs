//! What `ig daemon` exports of the runs it serves, as upstream's daemon:
//! the logs operator's lines (`operator.logs.*` of the configuration
//! file or `INSPEKTOR_GADGET_OPERATOR_LOGS_*`), and OTLP pushes to the
//! exporters of `operator.otel-logs.exporters` and
//! `operator.otel-metrics.exporters`.
//!
//! Who decides what, as upstream: log lines are the daemon's choice
//! (`enabled`, and `mode: detached` for headless instances only); a
//! client cannot turn them on or off. OTLP is the client's choice per run,
//! by upstream's instance parameters `operator.otel-logs.otel-logs-exporter`
//! (`[ds:]name,...`) and `operator.otel-metrics.otel-metrics-exporter`
//! (a name), among the exporters the daemon's configuration names; a run
//! naming an exporter the daemon lacks is refused.
//!
//! Shared, not per run: one log writer (one thread writes whole batches
//! of whole lines, so the lines of runs writing at once never mix), one
//! thread per configured exporter, started with the daemon and given a
//! final push when it stops. Each metrics exporter has its own registry:
//! the runs that name it publish into it, and it pushes only theirs.
//! SIGHUP reopens the log file (`logrotate`), as in `ig run`.
//!
//! Does not own: the operators (`ig::operators::{logs, otel_logs,
//! otel_metrics}`), the exporters (`ig::otlp`), the gRPC side
//! (`daemon.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use ig::operators::logs::{LogWriter, LogsConfig, Mode};
use ig::operators::otel_metrics::Registry;
use ig::otlp::{ExportSender, Exporter, Signal};
use ig::run::GadgetRun;

/// Upstream's instance parameter choosing the log records' exporters.
pub const PARAM_LOGS_EXPORTER: &str = "operator.otel-logs.otel-logs-exporter";
/// Upstream's instance parameter choosing the metrics' exporter.
pub const PARAM_METRICS_EXPORTER: &str = "operator.otel-metrics.otel-metrics-exporter";

struct LogsExporter {
    sender: ExportSender,
    interval: Duration,
}

/// The daemon's log writer and exporters.
pub struct DaemonExport {
    /// Taken by [`DaemonExport::finish`].
    logs: Mutex<Option<(LogWriter, LogsConfig)>>,
    /// Per name, the registry its runs publish into.
    metrics: BTreeMap<String, Registry>,
    otel_logs: BTreeMap<String, LogsExporter>,
    /// Taken by [`DaemonExport::finish`].
    exporters: Mutex<Vec<Exporter>>,
}

impl DaemonExport {
    /// Read the configuration and start the writer and every exporter it
    /// names.
    pub fn start() -> anyhow::Result<Self> {
        let logs = logs_config()?
            .map(|c| -> anyhow::Result<_> {
                let w = LogWriter::start(&c).context("operator.logs")?;
                log::info!(
                    "logs: {} lines of {} runs to {}",
                    format!("{:?}", c.format).to_lowercase(),
                    if c.mode == Mode::Detached {
                        "headless"
                    } else {
                        "all"
                    },
                    match c.channel {
                        ig::operators::logs::Channel::File => c.filename.display().to_string(),
                        ig::operators::logs::Channel::Stdout => "stdout".into(),
                        ig::operators::logs::Channel::Stderr => "stderr".into(),
                    }
                );
                Ok((w, c))
            })
            .transpose()?;
        let mut export = Self {
            logs: Mutex::new(logs),
            metrics: BTreeMap::new(),
            otel_logs: BTreeMap::new(),
            exporters: Mutex::new(Vec::new()),
        };
        let exporters = export.exporters.get_mut().expect("not shared yet");
        for name in super::config::exporters("otel-metrics")?.keys() {
            let c = super::run::exporter_config("otel-metrics", name, Duration::from_secs(60))?;
            let registry = Registry::new(false);
            registry.enable_otlp();
            let producer = ig::otlp::metrics::producer(registry.clone(), c.temporality);
            let e = Exporter::start(&c, Signal::Metrics, Some(producer), Some(registry.clone()))?;
            log::info!("metrics exporter {name}: {}", c.url(Signal::Metrics));
            export.metrics.insert(name.clone(), registry);
            exporters.push(e);
        }
        for name in super::config::exporters("otel-logs")?.keys() {
            let c = super::run::exporter_config("otel-logs", name, Duration::from_secs(1))?;
            let e = Exporter::start(&c, Signal::Logs, None, None)?;
            log::info!("logs exporter {name}: {}", c.url(Signal::Logs));
            export.otel_logs.insert(
                name.clone(),
                LogsExporter {
                    sender: e.sender(),
                    interval: c.interval,
                },
            );
            exporters.push(e);
        }
        Ok(export)
    }

    /// `run` of a client (`instance`: a headless instance's id) with the
    /// daemon's log writer and the exporters its parameters choose; those
    /// parameters are taken out of `params`.
    pub fn apply(
        &self,
        mut run: GadgetRun,
        params: &mut HashMap<String, String>,
        instance: Option<&str>,
    ) -> Result<GadgetRun, String> {
        let logs = self
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(_, c)| c.mode == Mode::All || instance.is_some())
            .map(|(w, c)| (w.clone(), c.format));
        if let Some((writer, format)) = logs {
            let gadget = run.name();
            let id = instance.map(str::to_owned);
            run = run.operator(move || {
                let mut op = ig::operators::logs::Logs::new(writer.clone(), format, gadget.clone());
                if let Some(id) = &id {
                    op = op.instance_id(id.clone());
                }
                Box::new(op)
            });
        }
        if let Some(name) = params
            .remove(PARAM_METRICS_EXPORTER)
            .filter(|n| !n.trim().is_empty())
        {
            let Some(registry) = self.metrics.get(name.trim()) else {
                return Err(format!(
                    "{PARAM_METRICS_EXPORTER} {name}: the daemon has no such exporter under \
                     operator.otel-metrics.exporters (configured: {})",
                    names(&self.metrics)
                ));
            };
            run = run.metrics(registry.clone());
        }
        if let Some(spec) = params.remove(PARAM_LOGS_EXPORTER) {
            let mut routes = Vec::new();
            for (ds, name) in
                super::run::logs_routes(&spec).map_err(|e| format!("{PARAM_LOGS_EXPORTER} {e}"))?
            {
                let Some(e) = self.otel_logs.get(&name) else {
                    return Err(format!(
                        "{PARAM_LOGS_EXPORTER} {name}: the daemon has no such exporter under \
                         operator.otel-logs.exporters (configured: {})",
                        names(&self.otel_logs)
                    ));
                };
                routes.push(ig::operators::otel_logs::Route {
                    ds,
                    sender: e.sender.clone(),
                    max_wait: e.interval,
                });
            }
            run = super::run::with_log_routes(run, routes);
        }
        Ok(run)
    }

    /// The parameters a client may set, as `GetGadgetInfo` lists them
    /// (so that `gadgetctl run` has `--otel-logs-exporter` and
    /// `--otel-metrics-exporter`): only those with exporters configured.
    pub fn params(&self) -> Vec<ig::params::ParamSpec> {
        let spec = |full: &str, what: &str, names: String| {
            let key = full.rsplit('.').next().unwrap_or(full).to_owned();
            ig::params::ParamSpec {
                key,
                full_name: full.to_owned(),
                description: format!("{what} (the daemon's exporters: {names})"),
                default: String::new(),
                ty: ig::params::ParamType::String { max_len: None },
                group: "Export".into(),
                alias: None,
            }
        };
        let mut out = Vec::new();
        if !self.otel_logs.is_empty() {
            out.push(spec(
                PARAM_LOGS_EXPORTER,
                "Push the events as OTLP log records to this exporter ([ds:]name,...)",
                names(&self.otel_logs),
            ));
        }
        if !self.metrics.is_empty() {
            out.push(spec(
                PARAM_METRICS_EXPORTER,
                "Push the metrics of data sources annotated metrics.collect to this exporter",
                names(&self.metrics),
            ));
        }
        out
    }

    /// Take the export parameters out of `params` (a description needs
    /// none of them).
    pub fn strip(params: &mut HashMap<String, String>) {
        params.remove(PARAM_LOGS_EXPORTER);
        params.remove(PARAM_METRICS_EXPORTER);
    }

    /// SIGHUP: reopen the log file.
    pub fn reopen(&self) {
        if let Some((w, _)) = self.logs.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            log::info!("SIGHUP: reopening the log file");
            w.reopen();
        }
    }

    /// After every run has ended: write what the log writer holds, the
    /// exporters' final push, and what was dropped.
    pub fn finish(&self) {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner()).take();
        super::run::finish_logs(logs.map(|(w, _)| w));
        let exporters =
            std::mem::take(&mut *self.exporters.lock().unwrap_or_else(|e| e.into_inner()));
        super::run::finish_exporters(exporters);
    }
}

/// The names of `m`, for a message.
fn names<V>(m: &BTreeMap<String, V>) -> String {
    if m.is_empty() {
        return "none".to_owned();
    }
    m.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// `operator.logs.*` of the configuration; `None` when logs are off.
fn logs_config() -> anyhow::Result<Option<LogsConfig>> {
    let mut c = LogsConfig::default();
    for key in LogsConfig::KEYS {
        if let Some((value, from)) = super::config::setting(&format!("operator.logs.{key}"))? {
            c.set(key, &value)
                .map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
        }
    }
    if !c.enabled {
        return Ok(None);
    }
    c.check()?;
    Ok(Some(c))
}
