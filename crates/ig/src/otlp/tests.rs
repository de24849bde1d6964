use std::collections::BTreeMap;
use std::sync::Arc;

use super::metrics::MetricsEncoder;
use super::proto::{self, metric::Data};
use super::*;
use crate::operators::otel_metrics::exposition::{Kind, Value};
use crate::operators::otel_metrics::{Instrument, Point};

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, SettingValue> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), SettingValue::Text((*v).to_owned())))
        .collect()
}

#[test]
fn exporter_settings() {
    let mut s = settings(&[
        ("exporter", "otlp-http"),
        ("endpoint", "127.0.0.1:4318"),
        ("insecure", "true"),
        ("interval", "2s"),
        ("temporality", "delta"),
    ]);
    s.insert(
        "headers".into(),
        SettingValue::Map(vec![("authorization".into(), "Bearer x".into())]),
    );
    let c =
        ExporterConfig::parse("operator.otel-metrics", "col", &s, Duration::from_secs(60)).unwrap();
    assert_eq!(c.url(Signal::Metrics), "http://127.0.0.1:4318/v1/metrics");
    assert_eq!(c.url(Signal::Logs), "http://127.0.0.1:4318/v1/logs");
    assert_eq!(c.interval, Duration::from_secs(2));
    assert_eq!(c.temporality, Temporality::Delta);
    assert_eq!(
        c.headers,
        [("authorization".to_owned(), "Bearer x".to_owned())]
    );
    let c = ExporterConfig {
        endpoint: "https://otel.example/custom/path".into(),
        ..c
    };
    assert_eq!(c.url(Signal::Logs), "https://otel.example/custom/path");

    let grpc = settings(&[("exporter", "otlp-grpc"), ("endpoint", "localhost:4317")]);
    let e = ExporterConfig::parse(
        "operator.otel-metrics",
        "upstream",
        &grpc,
        Duration::from_secs(60),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "operator.otel-metrics.exporters.upstream.exporter: otlp-grpc is not supported by this \
         ig; use exporter: otlp-http (OTLP over HTTP/protobuf, port 4318 of a collector)"
    );
    let no_endpoint = settings(&[("exporter", "otlp-http")]);
    assert!(
        ExporterConfig::parse(
            "operator.otel-logs",
            "x",
            &no_endpoint,
            Duration::from_secs(1)
        )
        .unwrap_err()
        .to_string()
        .contains("endpoint: missing")
    );
}

fn hist(counts: Vec<u64>, sum: f64) -> Instrument {
    Instrument {
        scope: "s".into(),
        name: "latency".into(),
        description: String::new(),
        unit: "us".into(),
        kind: Kind::Histogram,
        points: vec![Point {
            attributes: vec![(
                "proc.comm".into(),
                crate::operators::otel_metrics::AttrValue::Str("dd".into()),
            )],
            value: Value::Histogram {
                bounds: Arc::from(vec![1.0, 2.0]),
                counts,
                sum,
            },
        }],
    }
}

fn points(req: &proto::ExportMetricsServiceRequest) -> (Vec<u64>, u64, i32) {
    let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
    let Some(Data::Histogram(h)) = &m.data else {
        panic!("{m:?}")
    };
    let p = &h.data_points[0];
    assert_eq!(p.attributes[0].key, "proc.comm");
    (
        p.bucket_counts.clone(),
        p.start_time_unix_nano,
        h.aggregation_temporality,
    )
}

#[test]
fn cumulative_and_delta_histograms() {
    let mut cum = MetricsEncoder::new(Temporality::Cumulative, 100);
    let mut del = MetricsEncoder::new(Temporality::Delta, 100);
    let first = hist(vec![1, 2, 0], 4.0);
    let second = hist(vec![3, 2, 1], 10.0);
    let (c1, _) = cum.encode(std::slice::from_ref(&first), 200).unwrap();
    let (c2, _) = cum.encode(std::slice::from_ref(&second), 300).unwrap();
    assert_eq!(
        points(&c1),
        (vec![1, 2, 0], 100, proto::TEMPORALITY_CUMULATIVE)
    );
    assert_eq!(
        points(&c2),
        (vec![3, 2, 1], 100, proto::TEMPORALITY_CUMULATIVE)
    );
    let (d1, _) = del.encode(std::slice::from_ref(&first), 200).unwrap();
    let (d2, _) = del.encode(std::slice::from_ref(&second), 300).unwrap();
    assert_eq!(points(&d1), (vec![1, 2, 0], 100, proto::TEMPORALITY_DELTA));
    assert_eq!(points(&d2), (vec![2, 0, 1], 200, proto::TEMPORALITY_DELTA));
    // Round trip through the wire format.
    let bytes = prost::Message::encode_to_vec(&c2);
    let back: proto::ExportMetricsServiceRequest = prost::Message::decode(&bytes[..]).unwrap();
    assert_eq!(back, c2);
}

#[test]
fn log_records_decode_as_otlp() {
    use crate::datasource::{FieldKind, SchemaBuilder, SourceKind};
    let mut b = SchemaBuilder::new("open", SourceKind::Single, 0);
    b.add_owned("proc.comm".into(), FieldKind::String, None)
        .unwrap();
    b.add_owned("fd".into(), FieldKind::I64, None).unwrap();
    b.add_owned("payload".into(), FieldKind::Bytes, None)
        .unwrap();
    b.add_owned("ok".into(), FieldKind::Bool, None).unwrap();
    let schema = b.build();
    let mut ev = crate::datasource::Event::new(&schema);
    let comm = schema.field(schema.field_by_name("proc.comm").unwrap());
    let fd = schema.field(schema.field_by_name("fd").unwrap());
    ev.set_str(comm, "cat");
    ev.set_value(fd, crate::datasource::Value::I64(-2));
    ev.set_bytes(
        schema.field(schema.field_by_name("payload").unwrap()),
        &[0, 0xff, b'a'],
    );
    ev.set_value(
        schema.field(schema.field_by_name("ok").unwrap()),
        crate::datasource::Value::Bool(true),
    );
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    let sender = ExportSender {
        tx: Some(tx),
        stats: Arc::new(Stats::default()),
    };
    let mut batcher = LogBatcher::new(sender, "trace_open".into(), Some(9), Duration::from_secs(1));
    batcher.record(&schema, &ev, 1_700_000_000_000_000_000);
    batcher.record(&schema, &ev, 1_700_000_000_000_000_001);
    batcher.hand_over();
    let (body, n) = rx.recv().unwrap().unwrap();
    assert_eq!(n, 2);
    let req = logs::decode(&body).unwrap();
    let rl = &req.resource_logs[0];
    assert_eq!(
        rl.resource.as_ref().unwrap().attributes[0],
        proto::kv("service.name", "inspektor-gadget")
    );
    let sl = &rl.scope_logs[0];
    assert_eq!(sl.scope.as_ref().unwrap().name, "trace_open");
    assert_eq!(sl.log_records.len(), 2);
    let r = &sl.log_records[1];
    assert_eq!(r.time_unix_nano, 1_700_000_000_000_000_001);
    assert_eq!(r.severity_number, 9);
    assert_eq!(r.attributes[0], proto::kv("proc.comm", "cat"));
    assert_eq!(
        r.attributes[1].value.as_ref().unwrap().value,
        Some(proto::any_value::Value::IntValue(-2))
    );
    // Upstream's types: bytes as bytes_value, booleans as bool_value.
    let value = |k: &str| {
        r.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
    };
    assert_eq!(
        value("payload"),
        Some(proto::any_value::Value::BytesValue(vec![0, 0xff, b'a']))
    );
    assert_eq!(value("ok"), Some(proto::any_value::Value::BoolValue(true)));
}

#[test]
fn metric_attributes_keep_their_types() {
    use crate::operators::otel_metrics::AttrValue;
    let mut i = hist(vec![1, 0, 0], 1.0);
    i.points[0].attributes = vec![
        ("comm".into(), AttrValue::Str("dd".into())),
        ("pid".into(), AttrValue::Int(42)),
        ("big".into(), AttrValue::Int(u64::MAX as i64)),
        ("ratio".into(), AttrValue::Double(0.5)),
        ("up".into(), AttrValue::Bool(false)),
    ];
    let (req, _) = MetricsEncoder::new(Temporality::Delta, 1)
        .encode(&[i], 2)
        .unwrap();
    let Some(Data::Histogram(h)) = &req.resource_metrics[0].scope_metrics[0].metrics[0].data else {
        panic!("{req:?}")
    };
    use proto::any_value::Value as V;
    let got: Vec<(String, Option<V>)> = h.data_points[0]
        .attributes
        .iter()
        .map(|a| (a.key.clone(), a.value.clone().and_then(|v| v.value)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("comm".into(), Some(V::StringValue("dd".into()))),
            ("pid".into(), Some(V::IntValue(42))),
            ("big".into(), Some(V::IntValue(-1))),
            ("ratio".into(), Some(V::DoubleValue(0.5))),
            ("up".into(), Some(V::BoolValue(false))),
        ]
    );
}
