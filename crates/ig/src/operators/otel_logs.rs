//! The `otel-logs` operator (upstream's name, priority 9999): the events
//! of data sources as OTLP log records, pushed by an exporter of
//! `operator.otel-logs.exporters` (`--otel-logs-exporter [ds:]name`; a
//! bare name serves every data source).
//!
//! The data source's `logs.name` names the records' scope (default: the
//! gadget's image), `logs.severity` gives them a fixed severity number;
//! fields annotated `logs.name` take the roles `otlp::logs` describes.
//! `logs.body` (an expression upstream) is not supported: said once.
//!
//! The event path: each data source's handler encodes its records into a
//! batch it owns (`otlp::LogBatcher`) and hands a batch over without
//! waiting; the exporter's thread sends it. At the stop every batch is
//! handed over, and the exporter's final push sends them.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::datasource::{Event, Schema};
use crate::otlp::{ExportSender, LogBatcher};
use crate::pipeline::{
    Dispatch, Flow, Handler, HandlerError, Instance, Notice, Operator, OperatorError, Priority,
    Setup, Source,
};

/// The operator's name.
pub const NAME: &str = "otel-logs";
/// Its priority (upstream's).
pub const PRIORITY: Priority = 9999;

/// One `--otel-logs-exporter` entry: for data source `ds` (`None`:
/// every one), the exporter's sender and how long records may wait.
#[derive(Clone)]
pub struct Route {
    /// The data source, or every one.
    pub ds: Option<String>,
    /// The exporter's queue.
    pub sender: ExportSender,
    /// The exporter's interval: the longest a record waits in a batch.
    pub max_wait: Duration,
}

/// Why the routes cannot apply.
#[derive(Debug, thiserror::Error)]
pub enum OtelLogsError {
    /// `--otel-logs-exporter ds:name` names a data source the gadget lacks.
    #[error("--otel-logs-exporter: no data source {name} (the gadget has: {available})")]
    UnknownSource {
        /// The name given.
        name: String,
        /// The gadget's data sources.
        available: String,
    },
    /// `logs.severity` is not a number.
    #[error("data source {ds}: logs.severity {value:?} is not a number")]
    Severity {
        /// The data source.
        ds: String,
        /// Its value.
        value: String,
    },
}

/// The operator of one run.
pub struct OtelLogs {
    routes: Vec<Route>,
    gadget: String,
}

impl OtelLogs {
    /// Records of `gadget`'s data sources along `routes`.
    pub fn new(routes: Vec<Route>, gadget: impl Into<String>) -> Self {
        Self {
            routes,
            gadget: gadget.into(),
        }
    }
}

impl Operator for OtelLogs {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> Priority {
        PRIORITY
    }
    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let fail = |e| OperatorError::failed(NAME, e);
        let ids: Vec<_> = setup.source_ids().collect();
        let names: Vec<String> = ids
            .iter()
            .map(|&id| setup.schema(id).schema().name.clone())
            .collect();
        for r in &self.routes {
            if let Some(ds) = &r.ds
                && !names.contains(ds)
            {
                return Err(fail(OtelLogsError::UnknownSource {
                    name: ds.clone(),
                    available: names.join(", "),
                }));
            }
        }
        let mut batchers = Vec::new();
        let mut warnings = Vec::new();
        for (id, ds) in ids.into_iter().zip(names) {
            let Some(route) = self
                .routes
                .iter()
                .find(|r| r.ds.as_deref() == Some(ds.as_str()))
                .or_else(|| self.routes.iter().find(|r| r.ds.is_none()))
            else {
                continue;
            };
            let a = &setup.schema(id).schema().annotations;
            let scope = a
                .get("logs.name")
                .filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| self.gadget.clone());
            let severity = match a.get("logs.severity") {
                None => None,
                Some(v) => Some(v.trim().parse::<f64>().map(|f| f as i32).map_err(|_| {
                    fail(OtelLogsError::Severity {
                        ds: ds.clone(),
                        value: v.clone(),
                    })
                })?),
            };
            if a.contains_key("logs.body") {
                warnings.push(format!(
                    "data source {ds}: logs.body (an expression) is not supported by this ig; \
                     annotate a field logs.name=body instead"
                ));
            }
            let b = Rc::new(RefCell::new(LogBatcher::new(
                route.sender.clone(),
                scope,
                severity,
                route.max_wait,
            )));
            setup.subscribe(id, PRIORITY, NAME, Box::new(Recording(b.clone())));
            batchers.push(b);
        }
        if batchers.is_empty() && warnings.is_empty() {
            return Ok(None);
        }
        Ok(Some(Box::new(Logs { batchers, warnings })))
    }
}

struct Recording(Rc<RefCell<LogBatcher>>);

impl Handler for Recording {
    fn on_event(&mut self, schema: &Schema, event: &mut Event) -> Flow {
        self.0
            .borrow_mut()
            .record(schema, event, crate::otlp::metrics::unix_nanos());
        Flow::Continue
    }
    fn flush(&mut self) -> Result<(), HandlerError> {
        self.0.borrow_mut().tick();
        Ok(())
    }
}

struct Logs {
    batchers: Vec<Rc<RefCell<LogBatcher>>>,
    warnings: Vec<String>,
}

impl Instance for Logs {
    fn stop(&mut self) -> Result<(), OperatorError> {
        for b in &self.batchers {
            b.borrow_mut().hand_over();
        }
        Ok(())
    }
    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }
}

impl Source for Logs {
    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        Vec::new()
    }
    fn drain(&mut self, _: &mut Dispatch) -> Result<(), OperatorError> {
        Ok(())
    }
    fn tick(&mut self, _: &mut Dispatch) -> Result<Vec<Notice>, OperatorError> {
        Ok(self.warnings.drain(..).map(Notice::Warning).collect())
    }
    fn finished(&self) -> bool {
        true
    }
}
