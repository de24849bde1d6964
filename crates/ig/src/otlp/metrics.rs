//! The metrics snapshots of a [`Registry`] as OTLP requests: sums
//! (counters, monotonic), gauges and explicit-bucket histograms, per
//! scope (`--otel-metrics-name`), in the exporter's temporality.
//! Cumulative points carry the run's start as their start time; delta
//! points are the difference from the previous push (the previous push's
//! time is their start), so the deltas of every push add up to the
//! cumulative total. Gauges are the last value either way. Pure.

use std::collections::{BTreeMap, HashMap};

use super::Temporality;
use super::proto::{
    self, ExportMetricsServiceRequest, HistogramDataPoint, InstrumentationScope, KeyValue,
    NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use crate::operators::otel_metrics::exposition::{Kind, Value};
use crate::operators::otel_metrics::{AttrValue, Instrument, Registry};

/// The resource every request names (upstream's otel-logs resource).
pub fn resource() -> proto::Resource {
    proto::Resource {
        attributes: vec![
            proto::kv("service.name", "inspektor-gadget"),
            proto::kv("service.version", env!("CARGO_PKG_VERSION")),
        ],
    }
}

/// The previous push's values of one point (delta).
#[derive(Clone)]
enum Prev {
    Scalar(f64),
    Histogram(Vec<u64>, f64),
}

/// A point: its scope, instrument and attributes.
type PointKey = (String, String, Vec<(String, String)>);

/// Turns snapshots into requests, keeping what delta needs.
pub struct MetricsEncoder {
    temporality: Temporality,
    start: u64,
    last_push: u64,
    prev: HashMap<PointKey, Prev>,
}

impl MetricsEncoder {
    /// Points start at `start` (Unix ns).
    pub fn new(temporality: Temporality, start: u64) -> Self {
        Self {
            temporality,
            start,
            last_push: start,
            prev: HashMap::new(),
        }
    }

    /// The request for `instruments` at `now` (Unix ns) and its count of
    /// points; `None` when there is nothing.
    pub fn encode(
        &mut self,
        instruments: &[Instrument],
        now: u64,
    ) -> Option<(ExportMetricsServiceRequest, u64)> {
        let delta = self.temporality == Temporality::Delta;
        let start = if delta { self.last_push } else { self.start };
        let temporality = if delta {
            proto::TEMPORALITY_DELTA
        } else {
            proto::TEMPORALITY_CUMULATIVE
        };
        let mut scopes: BTreeMap<&str, Vec<proto::Metric>> = BTreeMap::new();
        let mut points = 0u64;
        // Only the points of this push are kept for the next: those of
        // stopped runs leave.
        let mut prev = std::mem::take(&mut self.prev);
        for i in instruments {
            let attrs = |a: &[(String, AttrValue)]| -> Vec<KeyValue> {
                a.iter().map(|(k, v)| attribute(k, v)).collect()
            };
            let point_key = |a: &[(String, AttrValue)]| -> PointKey {
                (
                    i.scope.clone(),
                    i.name.clone(),
                    a.iter().map(|(k, v)| (k.clone(), v.label())).collect(),
                )
            };
            let data = match i.kind {
                Kind::Histogram => {
                    let mut dps = Vec::new();
                    for p in &i.points {
                        let Value::Histogram {
                            bounds,
                            counts,
                            sum,
                        } = &p.value
                        else {
                            continue;
                        };
                        let (mut counts, mut sum) = (counts.clone(), *sum);
                        if delta {
                            let key = point_key(&p.attributes);
                            let now_v = Prev::Histogram(counts.clone(), sum);
                            self.prev.insert(key.clone(), now_v);
                            if let Some(Prev::Histogram(pc, ps)) = prev.remove(&key)
                                && pc.len() == counts.len()
                            {
                                for (c, p) in counts.iter_mut().zip(&pc) {
                                    *c = c.saturating_sub(*p);
                                }
                                sum -= ps;
                            }
                        }
                        dps.push(HistogramDataPoint {
                            attributes: attrs(&p.attributes),
                            start_time_unix_nano: start,
                            time_unix_nano: now,
                            count: counts.iter().sum(),
                            sum: Some(sum),
                            bucket_counts: counts,
                            explicit_bounds: bounds.to_vec(),
                        });
                    }
                    points += dps.len() as u64;
                    proto::metric::Data::Histogram(proto::Histogram {
                        data_points: dps,
                        aggregation_temporality: temporality,
                    })
                }
                Kind::Counter | Kind::Gauge => {
                    let counter = i.kind == Kind::Counter;
                    let mut dps = Vec::new();
                    for p in &i.points {
                        let Value::Scalar(mut v) = p.value else {
                            continue;
                        };
                        if delta && counter {
                            let key = point_key(&p.attributes);
                            self.prev.insert(key.clone(), Prev::Scalar(v));
                            if let Some(Prev::Scalar(pv)) = prev.remove(&key) {
                                v -= pv;
                            }
                        }
                        dps.push(NumberDataPoint {
                            attributes: attrs(&p.attributes),
                            start_time_unix_nano: if counter { start } else { 0 },
                            time_unix_nano: now,
                            value: Some(proto::number_data_point::Value::AsDouble(v)),
                        });
                    }
                    points += dps.len() as u64;
                    if counter {
                        proto::metric::Data::Sum(proto::Sum {
                            data_points: dps,
                            aggregation_temporality: temporality,
                            is_monotonic: true,
                        })
                    } else {
                        proto::metric::Data::Gauge(proto::Gauge { data_points: dps })
                    }
                }
            };
            scopes.entry(&i.scope).or_default().push(proto::Metric {
                name: i.name.clone(),
                description: i.description.clone(),
                unit: i.unit.clone(),
                data: Some(data),
            });
        }
        drop(prev);
        self.last_push = now;
        if points == 0 {
            return None;
        }
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource()),
                scope_metrics: scopes
                    .into_iter()
                    .map(|(scope, metrics)| ScopeMetrics {
                        scope: Some(InstrumentationScope {
                            name: scope.to_owned(),
                            version: String::new(),
                        }),
                        metrics,
                    })
                    .collect(),
            }],
        };
        Some((req, points))
    }
}

/// A typed attribute.
fn attribute(key: &str, v: &AttrValue) -> KeyValue {
    use proto::any_value::Value as V;
    KeyValue {
        key: key.to_owned(),
        value: Some(proto::AnyValue {
            value: Some(match v {
                AttrValue::Str(s) => V::StringValue(s.clone()),
                AttrValue::Int(n) => V::IntValue(*n),
                AttrValue::Double(f) => V::DoubleValue(*f),
                AttrValue::Bool(b) => V::BoolValue(*b),
            }),
        }),
    }
}

/// Unix time in nanoseconds.
pub fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The exporter's producer for `registry`: every interval, its
/// collectors' snapshots as one request.
pub fn producer(registry: Registry, temporality: Temporality) -> super::Producer {
    let mut enc = MetricsEncoder::new(temporality, unix_nanos());
    Box::new(move |_final| {
        let instruments = registry.instruments();
        enc.encode(&instruments, unix_nanos())
            .map(|(req, n)| (prost::Message::encode_to_vec(&req), n))
    })
}
