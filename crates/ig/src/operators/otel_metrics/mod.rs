//! The `otel-metrics` operator (upstream's name, priority 9995: just
//! before the output): data sources become metrics.
//!
//! A data source annotated `metrics.collect: "true"` is exported on the
//! run's [`Registry`] (served by `--otel-metrics-listen`); one annotated
//! `metrics.print: "true"` is rendered instead of printed: it is
//! unreferenced, and a data source `<ds>-rendered` gets, every
//! `--otel-metrics-print-interval` and once more at the stop, its
//! histograms as upstream draws them (field `text`, upstream's `histogram`
//! output mode) and as JSON (field `json`, ours).
//!
//! What a data source's fields are (upstream's annotations): `metrics.type`
//! `key` (a label), `counter`, `gauge` or `histogram`; unset, the typedef
//! decides (`gadget_counter__*`, `gadget_gauge__*`,
//! `gadget_histogram_slot__*`; keys are never inferred).
//! `metrics.name`, `metrics.description`, `metrics.unit`,
//! `metrics.boundaries` (a scalar histogram's bucket bounds; OpenTelemetry's
//! defaults otherwise). `metrics.implicit-counter.name` on the data source
//! counts its events. A slot array `u32[N]`/`u64[N]` is a histogram with
//! bounds `2^i` (slot i holds values up to 2^i, `bits.bpf.h`).
//!
//! Where we differ from upstream, on purpose: a data source collected
//! without a `--otel-metrics-name` for it is exported under its own name,
//! and the run says so (upstream drops it silently); a name for a data
//! source the gadget lacks is an error; label sets are capped per data
//! source ([`MAX_SERIES`]), with a warning when the cap is hit; a
//! labelled histogram is rendered under a `k=v` line; a render is made at
//! the stop.
//!
//! The event path: each collected data source has a handler that owns
//! its aggregates. Per event it builds the key into a reused buffer,
//! finds the series in a hash map by that slice (a new label set
//! allocates once) and adds to plain numbers: no lock, no allocation, no
//! system call. At `Handler::flush` (the runner's timer) it publishes a
//! snapshot to the registry, at most every [`PUBLISH_INTERVAL`]; only the
//! listener's thread reads it.

mod collector;
pub mod exposition;
pub mod histogram;
mod registry;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use registry::{AttrValue, INTERNAL_SCOPE, Instrument, Listener, Point, Registry};

use crate::datasource::{Event, FieldKind, Schema, SchemaBuilder, SourceKind};
use crate::params::{ParamSpec, ParamType, ParamValue, ParamValues};
use crate::pipeline::{
    Dispatch, Flow, Handler, HandlerError, Instance, Notice, Operator, OperatorError, Priority,
    Setup, Source, SourceId,
};
use collector::Collector;

/// The operator's name.
pub const NAME: &str = "otel-metrics";
/// Its priority (upstream's).
pub const PRIORITY: Priority = 9995;
const PARAM_NAME: &str = "operator.otel-metrics.otel-metrics-name";
const PARAM_PRINT: &str = "operator.otel-metrics.otel-metrics-print-interval";
/// The shortest print interval (upstream's).
pub const MIN_PRINT_INTERVAL: Duration = Duration::from_millis(25);
/// Most label sets a collected data source keeps (each metric of it has
/// at most this many series).
pub const MAX_SERIES: usize = 10_000;
/// Shortest time between two snapshots of a collector.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);
const GROUP: &str = "OpenTelemetry Metrics";
/// The field of a `<ds>-rendered` source the `histogram` output mode
/// prints (upstream's name; `output::rendered` reads it by that name).
const TEXT_FIELD: &str = "text";
/// Ours: the same render as JSON, for `-o json`/`jsonpretty`/`yaml`.
const JSON_FIELD: &str = "json";

/// Why the metrics of a data source cannot be set up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetricsError {
    /// `--otel-metrics-print-interval` is too short.
    #[error("--otel-metrics-print-interval {0:?}: at least 25ms")]
    PrintInterval(Duration),
    /// `--otel-metrics-name` does not parse.
    #[error("--otel-metrics-name {value:?}: {reason}")]
    NameSyntax {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// `--otel-metrics-name` names a data source the gadget lacks.
    #[error("--otel-metrics-name: no data source {name} (the gadget has: {available})")]
    UnknownSource {
        /// The name given.
        name: String,
        /// The gadget's data sources.
        available: String,
    },
    /// A field cannot be the metric its annotations ask for.
    #[error("data source {source_name}, field {field}: {reason}")]
    Field {
        /// The data source.
        source_name: String,
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
}

/// The operator: made once per run with the process's [`Registry`] when
/// metrics are served.
#[derive(Default)]
pub struct OtelMetrics {
    registry: Option<Registry>,
    names: Vec<(Option<String>, String)>,
    print_interval: Option<Duration>,
}

impl OtelMetrics {
    /// Export collected data sources on `registry` (`None`: collect only
    /// for printing).
    pub fn new(registry: Option<Registry>) -> Self {
        Self {
            registry,
            ..Self::default()
        }
    }
}

fn parse_names(v: &str) -> Result<Vec<(Option<String>, String)>, MetricsError> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (ds, name) = match part.split_once(':') {
            Some((ds, name)) => (Some(ds.trim().to_owned()), name.trim()),
            None => (None, part),
        };
        if name.is_empty() {
            return Err(MetricsError::NameSyntax {
                value: v.to_owned(),
                reason: format!("{part:?} gives no name"),
            });
        }
        if out.iter().any(|(d, _)| *d == ds) {
            return Err(MetricsError::NameSyntax {
                value: v.to_owned(),
                reason: format!(
                    "two names for {}",
                    ds.as_deref().unwrap_or("every data source")
                ),
            });
        }
        out.push((ds, name.to_owned()));
    }
    Ok(out)
}

impl Operator for OtelMetrics {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> Priority {
        PRIORITY
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec {
                key: "otel-metrics-name".into(),
                full_name: PARAM_NAME.into(),
                description: "Name (the OpenTelemetry scope, label otel_scope_name) under which a \
                              data source's metrics are exported: ds:name[,ds2:name2], or a bare \
                              name for every data source. A data source collected without one is \
                              exported under its own name"
                    .into(),
                default: String::new(),
                ty: ParamType::String { max_len: None },
                group: GROUP.into(),
                alias: None,
            },
            ParamSpec {
                key: "otel-metrics-print-interval".into(),
                full_name: PARAM_PRINT.into(),
                description: "How often the histograms of data sources annotated metrics.print \
                              are drawn (at least 25ms); once more at the stop"
                    .into(),
                default: "1000ms".into(),
                ty: ParamType::Duration,
                group: GROUP.into(),
                alias: None,
            },
        ]
    }
    fn apply_params(&mut self, values: &ParamValues) -> Result<(), OperatorError> {
        let fail = |e| OperatorError::failed(NAME, e);
        if let Some(ParamValue::Str(s)) = values.get(PARAM_NAME) {
            self.names = parse_names(s).map_err(fail)?;
        }
        if let Some(ParamValue::Duration(d)) = values.get(PARAM_PRINT) {
            if *d < MIN_PRINT_INTERVAL {
                return Err(fail(MetricsError::PrintInterval(*d)));
            }
            self.print_interval = Some(*d);
        }
        Ok(())
    }

    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let fail = |e| OperatorError::failed(NAME, e);
        let ids: Vec<SourceId> = setup.source_ids().collect();
        let names: Vec<String> = ids
            .iter()
            .map(|&id| setup.schema(id).name().to_owned())
            .collect();
        for (ds, _) in &self.names {
            if let Some(ds) = ds
                && !names.contains(ds)
            {
                return Err(fail(MetricsError::UnknownSource {
                    name: ds.clone(),
                    available: names.join(", "),
                }));
            }
        }
        let mut inst = Metrics {
            registry: self.registry.clone(),
            print_interval: self.print_interval.unwrap_or(Duration::from_secs(1)),
            next_print: None,
            collectors: Vec::new(),
            printed: Vec::new(),
            warnings: Vec::new(),
            counters: Vec::new(),
        };
        // ig's own: events of every data source, counted first.
        if let Some(r) = self.registry.as_ref().filter(|r| r.internals()) {
            for &id in &ids {
                let counter = Rc::new(RefCell::new(EventCounter {
                    id: r.id(),
                    ds: setup.schema(id).name().to_owned(),
                    events: 0,
                    published: None,
                    registry: r.clone(),
                }));
                setup.subscribe(id, i32::MIN, NAME, Box::new(Counting(counter.clone())));
                inst.counters.push(counter);
            }
        }
        for id in ids {
            let schema = setup.schema(id).schema();
            let ds = schema.name.clone();
            let collect = schema
                .annotations
                .get("metrics.collect")
                .map(String::as_str)
                == Some("true");
            let print = schema.annotations.get("metrics.print").map(String::as_str) == Some("true");
            if !collect && !print {
                continue;
            }
            let named = self
                .names
                .iter()
                .find(|(d, _)| d.as_deref() == Some(ds.as_str()))
                .or_else(|| self.names.iter().find(|(d, _)| d.is_none()))
                .map(|(_, n)| n.clone());
            let export = match (&self.registry, collect) {
                (Some(r), true) => {
                    if named.is_none() {
                        inst.warnings.push(format!(
                            "data source {ds}: its metrics are exported under the name {ds} \
                             (label otel_scope_name); --otel-metrics-name {ds}:NAME names them"
                        ));
                    }
                    Some(r.clone())
                }
                (None, true) => {
                    inst.warnings.push(format!(
                        "data source {ds} is annotated metrics.collect, but no metrics are \
                         served: --otel-metrics-listen serves them"
                    ));
                    None
                }
                (_, false) => None,
            };
            let scope = named.unwrap_or_else(|| ds.clone());
            let collector = Collector::new(schema, &scope, export).map_err(fail)?;
            if !collector.has_values() {
                inst.warnings.push(format!(
                    "data source {ds} is annotated metrics.{}, but none of its fields is a \
                     counter, gauge or histogram (metrics.type) and it has no \
                     metrics.implicit-counter.name: nothing to {}",
                    if collect { "collect" } else { "print" },
                    if collect { "export" } else { "print" },
                ));
                continue;
            }
            let collector = Rc::new(RefCell::new(collector));
            setup.subscribe(id, PRIORITY, NAME, Box::new(Collecting(collector.clone())));
            if print {
                setup.unreference(id);
                let rendered = rendered_source(setup.schema(id).schema());
                let rid = setup.add_source(rendered);
                inst.printed.push((rid, collector.clone()));
            }
            inst.collectors.push(collector);
        }
        let active = !inst.collectors.is_empty() || !inst.counters.is_empty();
        let speaks = !inst.warnings.is_empty();
        Ok((active || speaks).then(|| Box::new(inst) as Box<dyn Instance>))
    }
}

/// `<ds>-rendered`: the original's annotations, then upstream's for a
/// rendered source (printed in the `histogram` mode, the screen cleared
/// first), which win; its supported modes are upstream's `histogram` and
/// ours: `json`, `jsonpretty` and `yaml` print our `json` field,
/// `columns` the text. A `text` field and our `json` field.
fn rendered_source(original: &Schema) -> SchemaBuilder {
    let mut b = SchemaBuilder::new(format!("{}-rendered", original.name), SourceKind::Single, 0);
    let a = b.annotations_mut();
    for (k, v) in &original.annotations {
        a.insert(k.clone(), v.clone());
    }
    a.insert("cli.default-output-mode".into(), "histogram".into());
    a.insert(
        "cli.supported-output-modes".into(),
        "columns,histogram,json,jsonpretty,none,yaml".into(),
    );
    a.insert("cli.clear-screen-before".into(), "true".into());
    // Cannot collide: a fresh schema.
    let text = b
        .add_owned(TEXT_FIELD.into(), FieldKind::String, None)
        .expect("a fresh schema takes a field");
    b.field_mut(text)
        .annotations
        .insert("content-type".into(), "text/plain".into());
    let json = b
        .add_owned(JSON_FIELD.into(), FieldKind::String, None)
        .expect("a fresh schema takes a second field");
    b.field_mut(json)
        .annotations
        .insert("content-type".into(), "application/json".into());
    b
}

/// The handler of a collected data source.
struct Collecting(Rc<RefCell<Collector>>);

impl Handler for Collecting {
    fn on_event(&mut self, schema: &Schema, event: &mut Event) -> Flow {
        self.0.borrow_mut().record(schema, event);
        Flow::Continue
    }
    fn flush(&mut self) -> Result<(), HandlerError> {
        self.0.borrow_mut().publish(false);
        Ok(())
    }
}

/// Counts the events of a data source for `ig_events_total`.
struct EventCounter {
    id: u64,
    ds: String,
    events: u64,
    published: Option<u64>,
    registry: Registry,
}

impl EventCounter {
    fn publish(&mut self) {
        if self.published != Some(self.events) {
            self.registry.publish_events(self.id, &self.ds, self.events);
            self.published = Some(self.events);
        }
    }
}

struct Counting(Rc<RefCell<EventCounter>>);

impl Handler for Counting {
    fn on_event(&mut self, _: &Schema, _: &mut Event) -> Flow {
        self.0.borrow_mut().events += 1;
        Flow::Continue
    }
    fn on_array(&mut self, _: &Schema, events: &mut Vec<Event>) -> Flow {
        self.0.borrow_mut().events += events.len() as u64;
        Flow::Continue
    }
    fn flush(&mut self) -> Result<(), HandlerError> {
        self.0.borrow_mut().publish();
        Ok(())
    }
}

/// The running operator: its source renders, says what it noticed and
/// counts the run among the gadgets running.
struct Metrics {
    registry: Option<Registry>,
    print_interval: Duration,
    next_print: Option<Instant>,
    collectors: Vec<Rc<RefCell<Collector>>>,
    /// The rendered data sources and what they render.
    printed: Vec<(SourceId, Rc<RefCell<Collector>>)>,
    warnings: Vec<String>,
    counters: Vec<Rc<RefCell<EventCounter>>>,
}

impl Metrics {
    fn render(&self, out: &mut Dispatch) {
        for (id, c) in &self.printed {
            let schema = out.schema(*id).clone();
            let mut ev = Event::new(&schema);
            let (text, json) = c.borrow().render();
            if let Some(f) = schema.field_by_name(TEXT_FIELD) {
                ev.set_str(schema.field(f), &text);
            }
            if let Some(f) = schema.field_by_name(JSON_FIELD) {
                ev.set_str(schema.field(f), &json);
            }
            out.event(*id, &mut ev);
        }
    }
}

impl Instance for Metrics {
    fn start(&mut self) -> Result<(), OperatorError> {
        if let Some(r) = &self.registry {
            r.gadget_running(1);
        }
        Ok(())
    }
    fn stop(&mut self) -> Result<(), OperatorError> {
        for c in &self.collectors {
            c.borrow_mut().publish(true);
            c.borrow().retire();
        }
        for c in &self.counters {
            c.borrow_mut().publish();
        }
        if let Some(r) = &self.registry {
            r.gadget_running(-1);
        }
        Ok(())
    }
    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }
}

impl Source for Metrics {
    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        Vec::new()
    }
    fn drain(&mut self, _out: &mut Dispatch) -> Result<(), OperatorError> {
        Ok(())
    }
    fn tick(&mut self, out: &mut Dispatch) -> Result<Vec<Notice>, OperatorError> {
        let mut notices: Vec<Notice> = self.warnings.drain(..).map(Notice::Warning).collect();
        for c in &self.collectors {
            if let Some(w) = c.borrow_mut().take_overflow_warning() {
                notices.push(Notice::Warning(w));
            }
        }
        if !self.printed.is_empty() {
            let now = Instant::now();
            let next = *self.next_print.get_or_insert(now + self.print_interval);
            if now >= next {
                self.render(out);
                self.next_print = Some(now + self.print_interval);
            }
        }
        Ok(notices)
    }
    fn finish(&mut self, out: &mut Dispatch) -> Result<(), OperatorError> {
        self.render(out);
        Ok(())
    }
    // Never keeps a run going: it renders what others produce.
    fn finished(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
