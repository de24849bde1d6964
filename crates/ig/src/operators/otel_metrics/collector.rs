//! One collected data source: which fields are labels and which are
//! metrics (from annotations and typedefs), the aggregates per label set,
//! the snapshot for the registry and the renders for the terminal.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use super::exposition::{self, Family, Kind, Series, Value};
use super::histogram;
use super::registry::Registry;
use super::{MAX_SERIES, MetricsError, PUBLISH_INTERVAL};
use crate::datasource::{Event, FieldId, FieldKind, Schema, ValueRef};

/// OpenTelemetry's default bounds of a histogram (upstream's scalar
/// histograms without `metrics.boundaries`).
const DEFAULT_BOUNDS: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

enum Input {
    /// +1 per event.
    Implicit,
    /// A number field.
    Number(FieldId),
    /// A slot array of `width`-byte counters, `slots` of them.
    Slots {
        field: FieldId,
        width: usize,
        slots: usize,
    },
}

struct Metric {
    /// The instrument's name (upstream's: `metrics.name` or the field's).
    name: String,
    /// As exposed.
    exposed: String,
    help: String,
    unit: String,
    kind: Kind,
    input: Input,
    /// Histogram bounds (empty otherwise).
    bounds: Arc<[f64]>,
    /// Where its numbers start in a series' row.
    offset: usize,
}

impl Metric {
    /// Numbers it keeps per series: a value, or per bucket (bounds and
    /// +Inf) then the sum.
    fn width(&self) -> usize {
        match self.kind {
            Kind::Histogram => self.bounds.len() + 2,
            _ => 1,
        }
    }
}

struct KeyField {
    id: FieldId,
    label: String,
    /// The OpenTelemetry attribute key (unsanitized).
    attr: String,
}

pub(super) struct Collector {
    ds: String,
    scope: String,
    keys: Vec<KeyField>,
    metrics: Vec<Metric>,
    /// Numbers per series.
    width: usize,
    /// The key bytes of each label set → its series. foldhash rather than
    /// std's SipHash: the key is hashed per event and SipHash was most of
    /// the collector's cost (bench/metrics.md). foldhash is seeded per
    /// process, and the series cap bounds what colliding label values
    /// chosen by a hostile process could cost.
    index: HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
    /// Reused for every event's key.
    key: Vec<u8>,
    /// The previous event's series and key: consecutive events mostly
    /// share a label set (a storm, a busy process), and comparing the
    /// bytes is cheaper than hashing them.
    last: Option<usize>,
    last_key: Vec<u8>,
    /// Per series, its labels' values.
    labels: Vec<Vec<String>>,
    /// Per series, the same values typed, for OTLP's attributes.
    attrs: Vec<Vec<super::AttrValue>>,
    /// Per series, `width` numbers.
    values: Vec<f64>,
    /// Events of label sets beyond [`MAX_SERIES`].
    overflow: u64,
    overflow_warned: bool,
    export: Option<(Registry, u64)>,
    dirty: bool,
    last_publish: Option<Instant>,
}

fn field_error(schema: &Schema, id: FieldId, reason: String) -> MetricsError {
    MetricsError::Field {
        source_name: schema.name.clone(),
        field: schema.field(id).name.clone(),
        reason,
    }
}

/// The metric type a field asks for: its annotation, else its typedef.
fn metric_type(f: &crate::datasource::FieldDef) -> Option<&str> {
    if let Some(t) = f.annotation("metrics.type") {
        return Some(t);
    }
    let has = |names: [&str; 2]| names.iter().any(|n| f.has_tag(&format!("type:{n}")));
    if has(["gadget_histogram_slot__u32", "gadget_histogram_slot__u64"]) {
        Some("histogram")
    } else if has(["gadget_counter__u32", "gadget_counter__u64"]) {
        Some("counter")
    } else if has(["gadget_gauge__u32", "gadget_gauge__u64"]) {
        Some("gauge")
    } else {
        None
    }
}

impl Collector {
    /// The collector of `schema`, exported as `scope` on `export` when
    /// given.
    pub(super) fn new(
        schema: &Schema,
        scope: &str,
        export: Option<Registry>,
    ) -> Result<Self, MetricsError> {
        let mut keys = Vec::new();
        let mut metrics = Vec::new();
        if let Some(name) = schema
            .annotations
            .get("metrics.implicit-counter.name")
            .filter(|n| !n.is_empty())
        {
            let help = schema
                .annotations
                .get("metrics.implicit-counter.description")
                .cloned()
                .unwrap_or_else(|| format!("Events of data source {}", schema.name));
            metrics.push(Metric {
                exposed: exposition::metric_name(name, Kind::Counter, ""),
                name: name.clone(),
                help,
                unit: String::new(),
                kind: Kind::Counter,
                input: Input::Implicit,
                bounds: Arc::from(Vec::new()),
                offset: 0,
            });
        }
        for id in schema.ids() {
            let f = schema.field(id);
            let Some(ty) = metric_type(f) else { continue };
            let name = f
                .annotation("metrics.name")
                .filter(|n| !n.is_empty())
                .unwrap_or(&f.name)
                .to_owned();
            if ty == "key" {
                if f.kind == FieldKind::Struct {
                    return Err(field_error(schema, id, "a struct cannot be a key".into()));
                }
                keys.push(KeyField {
                    id,
                    label: exposition::sanitize(&name, true),
                    attr: name.clone(),
                });
                continue;
            }
            let kind = match ty {
                "counter" => Kind::Counter,
                "gauge" => Kind::Gauge,
                "histogram" => Kind::Histogram,
                other => {
                    return Err(field_error(
                        schema,
                        id,
                        format!("metrics.type {other:?}: one of key, counter, gauge, histogram"),
                    ));
                }
            };
            let unit = f.annotation("metrics.unit").unwrap_or_default().to_owned();
            let help = f
                .annotation("metrics.description")
                .or_else(|| f.annotation("description"))
                .map_or_else(
                    || format!("{} of data source {}", f.name, schema.name),
                    str::to_owned,
                );
            let (input, bounds) = if f.kind.is_numeric() || f.kind == FieldKind::Bool {
                let bounds = match (kind, f.annotation("metrics.boundaries")) {
                    (Kind::Histogram, Some(b)) => parse_bounds(b)
                        .map_err(|r| field_error(schema, id, format!("metrics.boundaries: {r}")))?,
                    (Kind::Histogram, None) => DEFAULT_BOUNDS.to_vec(),
                    _ => Vec::new(),
                };
                (Input::Number(id), bounds)
            } else if kind == Kind::Histogram && f.kind == FieldKind::Bytes {
                let width = if f
                    .tags
                    .iter()
                    .any(|t| t.starts_with("type:") && t.ends_with("64"))
                {
                    8
                } else {
                    4
                };
                let size = match f.loc {
                    crate::datasource::Location::Raw { size, .. } => size as usize,
                    crate::datasource::Location::Owned { .. } => 0,
                };
                if size == 0 || size % width != 0 || size / width > 64 {
                    return Err(field_error(
                        schema,
                        id,
                        format!(
                            "a histogram of slots must be an array of u32 or u64 of at most 64 slots (this one has {size} bytes)"
                        ),
                    ));
                }
                let slots = size / width;
                let bounds = (0..slots).map(|i| (1u64 << i) as f64).collect();
                (
                    Input::Slots {
                        field: id,
                        width,
                        slots,
                    },
                    bounds,
                )
            } else {
                return Err(field_error(
                    schema,
                    id,
                    format!(
                        "metrics.type {ty} needs a number{} (this field is {})",
                        if kind == Kind::Histogram {
                            " or an array of u32/u64 slots"
                        } else {
                            ""
                        },
                        f.kind.name()
                    ),
                ));
            };
            metrics.push(Metric {
                exposed: exposition::metric_name(&name, kind, &unit),
                name,
                help,
                unit,
                kind,
                input,
                bounds: Arc::from(bounds),
                offset: 0,
            });
        }
        let mut width = 0;
        for m in &mut metrics {
            m.offset = width;
            width += m.width();
        }
        let export = export.map(|r| {
            let id = r.id();
            (r, id)
        });
        Ok(Self {
            ds: schema.name.clone(),
            scope: scope.to_owned(),
            keys,
            metrics,
            width,
            index: HashMap::with_hasher(foldhash::fast::RandomState::default()),
            key: Vec::with_capacity(64),
            last: None,
            last_key: Vec::with_capacity(64),
            labels: Vec::new(),
            attrs: Vec::new(),
            values: Vec::new(),
            overflow: 0,
            overflow_warned: false,
            export,
            dirty: false,
            last_publish: None,
        })
    }

    /// Whether anything is counted, measured or drawn.
    pub(super) fn has_values(&self) -> bool {
        !self.metrics.is_empty()
    }

    /// The series of the event's label set, made if new (and under the
    /// cap). The key is built into a reused buffer; a hit allocates
    /// nothing.
    fn series(&mut self, schema: &Schema, event: &Event) -> Option<usize> {
        self.key.clear();
        for k in &self.keys {
            encode_key(event.get(schema.field(k.id)), &mut self.key);
        }
        if let Some(i) = self.last
            && self.key == self.last_key
        {
            return Some(i);
        }
        if let Some(&i) = self.index.get(self.key.as_slice()) {
            // The buffers trade places: no copy, no allocation.
            std::mem::swap(&mut self.key, &mut self.last_key);
            self.last = Some(i);
            return Some(i);
        }
        if self.labels.len() >= MAX_SERIES {
            self.overflow += 1;
            return None;
        }
        let i = self.labels.len();
        self.index.insert(self.key.as_slice().into(), i);
        std::mem::swap(&mut self.key, &mut self.last_key);
        self.last = Some(i);
        self.labels.push(
            self.keys
                .iter()
                .map(|k| label_value(event.get(schema.field(k.id))))
                .collect(),
        );
        self.attrs.push(
            self.keys
                .iter()
                .map(|k| attr_value(event.get(schema.field(k.id))))
                .collect(),
        );
        self.values.resize(self.values.len() + self.width, 0.0);
        Some(i)
    }

    /// Add one event.
    pub(super) fn record(&mut self, schema: &Schema, event: &Event) {
        let Some(s) = self.series(schema, event) else {
            return;
        };
        let row = &mut self.values[s * self.width..(s + 1) * self.width];
        for m in &self.metrics {
            let cells = &mut row[m.offset..m.offset + m.width()];
            match &m.input {
                Input::Implicit => cells[0] += 1.0,
                Input::Number(id) => {
                    let Some(v) = number(event.get(schema.field(*id))) else {
                        continue;
                    };
                    match m.kind {
                        Kind::Counter => cells[0] += v,
                        Kind::Gauge => cells[0] = v,
                        Kind::Histogram => {
                            // The first bucket whose bound is at least
                            // the value (bounds are inclusive, as `le`).
                            let b = m.bounds.partition_point(|bound| *bound < v);
                            cells[b] += 1.0;
                            *cells.last_mut().expect("a histogram has a sum") += v;
                        }
                    }
                }
                Input::Slots {
                    field,
                    width,
                    slots,
                } => {
                    let ValueRef::Bytes(b) = event.get(schema.field(*field)) else {
                        continue;
                    };
                    let mut sum = 0.0;
                    for (i, (cell, c)) in cells
                        .iter_mut()
                        .zip(b.chunks_exact(*width))
                        .take(*slots)
                        .enumerate()
                    {
                        let c = match *width {
                            8 => u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])),
                            _ => u64::from(u32::from_ne_bytes(c.try_into().unwrap_or([0; 4]))),
                        };
                        if c > 0 {
                            *cell += c as f64;
                            // Upstream records 2^i for each: the sum is an
                            // upper estimate.
                            sum += c as f64 * (1u64 << i) as f64;
                        }
                    }
                    *cells.last_mut().expect("a histogram has a sum") += sum;
                }
            }
        }
        self.dirty = true;
    }

    /// The warning for label sets over the cap, once.
    pub(super) fn take_overflow_warning(&mut self) -> Option<String> {
        if self.overflow == 0 || self.overflow_warned {
            return None;
        }
        self.overflow_warned = true;
        let keys: Vec<&str> = self.keys.iter().map(|k| k.label.as_str()).collect();
        Some(format!(
            "data source {}: more than {MAX_SERIES} label sets of {}; events of new ones are not counted",
            self.ds,
            keys.join(", ")
        ))
    }

    /// The labels of series `s`: the scope's, then the keys'.
    fn series_labels(&self, s: usize) -> Vec<(String, String)> {
        let mut l = exposition::scope_labels(&self.scope, "").to_vec();
        l.extend(
            self.keys
                .iter()
                .zip(&self.labels[s])
                .map(|(k, v)| (k.label.clone(), v.clone())),
        );
        l
    }

    /// The instruments, for OTLP.
    pub(super) fn instruments(&self) -> Vec<super::Instrument> {
        self.metrics
            .iter()
            .map(|m| super::Instrument {
                scope: self.scope.clone(),
                name: m.name.clone(),
                description: m.help.clone(),
                unit: m.unit.clone(),
                kind: m.kind,
                points: (0..self.labels.len())
                    .map(|s| {
                        let row = &self.values[s * self.width + m.offset..][..m.width()];
                        super::Point {
                            attributes: self
                                .keys
                                .iter()
                                .zip(&self.attrs[s])
                                .map(|(k, v)| (k.attr.clone(), v.clone()))
                                .collect(),
                            value: match m.kind {
                                Kind::Histogram => Value::Histogram {
                                    bounds: m.bounds.clone(),
                                    counts: row[..row.len() - 1]
                                        .iter()
                                        .map(|c| *c as u64)
                                        .collect(),
                                    sum: row[row.len() - 1],
                                },
                                _ => Value::Scalar(row[0]),
                            },
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// The families of a scrape.
    pub(super) fn families(&self) -> Vec<Family> {
        self.metrics
            .iter()
            .map(|m| Family {
                name: m.exposed.clone(),
                help: m.help.clone(),
                kind: m.kind,
                series: (0..self.labels.len())
                    .map(|s| {
                        let row = &self.values[s * self.width + m.offset..][..m.width()];
                        let value = match m.kind {
                            Kind::Histogram => Value::Histogram {
                                bounds: m.bounds.clone(),
                                counts: row[..row.len() - 1].iter().map(|c| *c as u64).collect(),
                                sum: row[row.len() - 1],
                            },
                            _ => Value::Scalar(row[0]),
                        };
                        Series {
                            labels: self.series_labels(s),
                            value,
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// The run stops: its instruments leave the registry once an OTLP
    /// push has carried their last values (`Registry::retire`).
    pub(super) fn retire(&self) {
        if let Some((registry, id)) = &self.export {
            registry.retire(*id);
        }
    }

    /// Hand a snapshot to the registry when something changed (at most
    /// every `PUBLISH_INTERVAL` unless `now`).
    pub(super) fn publish(&mut self, now: bool) {
        let Some((registry, id)) = &self.export else {
            return;
        };
        let due = now
            || self
                .last_publish
                .is_none_or(|t| t.elapsed() >= PUBLISH_INTERVAL);
        if !self.dirty || !due {
            return;
        }
        registry.publish(*id, self.families());
        if registry.otlp() {
            registry.publish_instruments(*id, self.instruments());
        }
        self.dirty = false;
        self.last_publish = Some(Instant::now());
    }

    /// The terminal text (upstream's layout: each metric's name, then each
    /// of its histograms, a `k=v` line first when labelled) and the JSON
    /// (`{"metric":{"unit","intervals"}}`, or a list of those with their
    /// `labels` when the data source has keys) of the histograms.
    pub(super) fn render(&self) -> (String, String) {
        let mut text = String::new();
        let mut json = String::from("{");
        let mut first = true;
        for m in &self.metrics {
            text.push_str(&m.name);
            text.push('\n');
            if m.kind != Kind::Histogram {
                continue;
            }
            if !first {
                json.push(',');
            }
            first = false;
            let _ = write!(json, "\"{}\":", m.name.replace(['"', '\\'], "_"));
            let keyed = !self.keys.is_empty();
            if keyed {
                json.push('[');
            }
            let zeros = vec![0u64; m.bounds.len()];
            let series: Vec<Option<usize>> = if keyed || !self.labels.is_empty() {
                (0..self.labels.len()).map(Some).collect()
            } else {
                vec![None]
            };
            for (n, s) in series.iter().enumerate() {
                let counts: Vec<u64> = match s {
                    Some(s) => self.values[s * self.width + m.offset..][..m.bounds.len()]
                        .iter()
                        .map(|c| *c as u64)
                        .collect(),
                    None => zeros.clone(),
                };
                let iv = histogram::intervals(&m.bounds, &counts);
                let labels: Vec<(String, String)> = match s {
                    Some(s) => self
                        .keys
                        .iter()
                        .zip(&self.labels[*s])
                        .map(|(k, v)| (k.label.clone(), v.clone()))
                        .collect(),
                    None => Vec::new(),
                };
                if s.is_some() {
                    if !labels.is_empty() {
                        let line: Vec<String> =
                            labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        text.push_str(&line.join(" "));
                        text.push('\n');
                    }
                    histogram::render(&m.unit, &iv, &mut text);
                    text.push('\n');
                }
                if n > 0 {
                    json.push(',');
                }
                histogram::json(&m.unit, &labels, &iv, &mut json);
            }
            if keyed {
                json.push(']');
            }
        }
        json.push('}');
        (text, json)
    }
}

fn parse_bounds(s: &str) -> Result<Vec<f64>, String> {
    let mut out: Vec<f64> = Vec::new();
    for part in s.split(',').map(str::trim) {
        let v: f64 = part
            .parse()
            .map_err(|_| format!("{part:?} is not a number"))?;
        if !v.is_finite() {
            return Err(format!("{part:?} is not finite"));
        }
        if out.last().is_some_and(|l| *l >= v) {
            return Err(format!("{part} does not increase"));
        }
        out.push(v);
    }
    Ok(out)
}

fn number(v: ValueRef<'_>) -> Option<f64> {
    Some(match v {
        ValueRef::U64(n) => n as f64,
        ValueRef::I64(n) => n as f64,
        ValueRef::F64(n) => n,
        ValueRef::Bool(b) => f64::from(u8::from(b)),
        _ => return None,
    })
}

/// The key bytes of one value: a tag, then the value (strings and bytes
/// with their length, so `ab`+`c` differs from `a`+`bc`).
fn encode_key(v: ValueRef<'_>, key: &mut Vec<u8>) {
    match v {
        ValueRef::None => key.push(0),
        ValueRef::Bool(b) => key.extend_from_slice(&[1, u8::from(b)]),
        ValueRef::U64(n) => {
            key.push(2);
            key.extend_from_slice(&n.to_ne_bytes());
        }
        ValueRef::I64(n) => {
            key.push(3);
            key.extend_from_slice(&n.to_ne_bytes());
        }
        ValueRef::F64(n) => {
            key.push(4);
            key.extend_from_slice(&n.to_bits().to_ne_bytes());
        }
        ValueRef::Str(s) | ValueRef::Bytes(s) => {
            key.push(5);
            key.extend_from_slice(&(s.len() as u32).to_ne_bytes());
            key.extend_from_slice(s);
        }
    }
}

/// A label's value as upstream's attributes print: numbers in decimal,
/// strings as they are, bytes in base64.
fn label_value(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::None => String::new(),
        ValueRef::Bool(b) => b.to_string(),
        ValueRef::U64(n) => n.to_string(),
        ValueRef::I64(n) => n.to_string(),
        ValueRef::F64(n) => {
            let mut s = String::new();
            exposition::go_float(n, &mut s);
            s
        }
        ValueRef::Str(s) => String::from_utf8_lossy(s).into_owned(),
        ValueRef::Bytes(b) => base64(b),
    }
}

/// A key's value as upstream's OTLP attributes type it (its
/// `GetKeyValueFunc` with the otel-metrics operator's converters).
fn attr_value(v: ValueRef<'_>) -> super::AttrValue {
    use super::AttrValue;
    match v {
        ValueRef::None => AttrValue::Str(String::new()),
        ValueRef::Bool(b) => AttrValue::Bool(b),
        ValueRef::U64(n) => AttrValue::Int(n as i64),
        ValueRef::I64(n) => AttrValue::Int(n),
        ValueRef::F64(n) => AttrValue::Double(n),
        ValueRef::Str(s) => AttrValue::Str(String::from_utf8_lossy(s).into_owned()),
        ValueRef::Bytes(b) => AttrValue::Str(base64(b)),
    }
}

fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
