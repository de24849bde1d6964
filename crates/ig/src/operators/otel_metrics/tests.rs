use super::*;
use crate::datasource::SchemaBuilder;
use crate::output::{OutputMode, OutputOperator, OutputSpec, shared, sink::Capture};
use crate::pipeline::Pipeline;
use crate::pipeline::testing::{Producer, drain_all};

/// `exec`: `comm` (char[8], a key), `n` (u32), `lat` (u32[4] slots),
/// with the data source's and fields' annotations given.
fn exec(ds: &[(&str, &str)], n_type: Option<&str>) -> SchemaBuilder {
    let mut b = SchemaBuilder::new("exec", SourceKind::Single, 28);
    let comm = b
        .add_raw("proc.comm".into(), FieldKind::CString, 0, 8, None)
        .unwrap();
    b.field_mut(comm)
        .annotations
        .insert("metrics.type".into(), "key".into());
    let n = b.add_raw("n".into(), FieldKind::U32, 8, 4, None).unwrap();
    if let Some(t) = n_type {
        b.field_mut(n)
            .annotations
            .insert("metrics.type".into(), t.into());
    }
    let lat = b
        .add_raw("lat".into(), FieldKind::Bytes, 12, 16, None)
        .unwrap();
    b.field_mut(lat)
        .tags
        .push("type:gadget_histogram_slot__u32".into());
    b.field_mut(lat)
        .annotations
        .insert("metrics.unit".into(), "µs".into());
    for (k, v) in ds {
        b.annotations_mut().insert((*k).into(), (*v).into());
    }
    b
}

fn sample(comm: &str, n: u32, slots: [u32; 4]) -> Vec<u8> {
    let mut s = [0u8; 8];
    s[..comm.len()].copy_from_slice(comm.as_bytes());
    let mut v = s.to_vec();
    v.extend_from_slice(&n.to_ne_bytes());
    for c in slots {
        v.extend_from_slice(&c.to_ne_bytes());
    }
    v
}

fn params(names: &str, interval: &str) -> ParamValues {
    ParamValues::resolve(
        &OtelMetrics::default().params(),
        &[
            ("otel-metrics-name".into(), names.into()),
            ("otel-metrics-print-interval".into(), interval.into()),
        ],
    )
    .unwrap()
}

/// Run `schema` with `samples` through the operator (exporting to
/// `registry`) and the output in `mode`; the printed output and the
/// notices of the source's ticks.
fn run(
    schema: SchemaBuilder,
    samples: Vec<Vec<u8>>,
    registry: Option<Registry>,
    names: &str,
    mode: OutputMode,
) -> Result<(String, Vec<Notice>), OperatorError> {
    let out = Capture(Default::default());
    let ops: Vec<Box<dyn Operator>> = vec![
        Box::new(Producer {
            priority: -1,
            schema,
            samples,
        }),
        Box::new(OtelMetrics::new(registry)),
        // Columns stands for "no -o": each source in its default mode.
        Box::new(OutputOperator::new(
            if mode == OutputMode::Columns {
                OutputSpec::Defaults
            } else {
                OutputSpec::All(mode)
            },
            shared(out.clone()),
        )),
    ];
    let mut p = Pipeline::build(ops, &params(names, "1000ms"))?;
    p.start()?;
    drain_all(&mut p)?;
    let mut notices = Vec::new();
    let (sources, dispatch) = p.parts();
    for s in sources {
        notices.extend(s.tick(dispatch)?);
        s.finish(dispatch)?;
    }
    p.dispatch.flush()?;
    p.stop()?;
    Ok((String::from_utf8(out.0.borrow().clone()).unwrap(), notices))
}

#[test]
fn an_implicit_counter_keyed_by_comm_is_exposed_as_upstream() {
    let r = Registry::new(false);
    let samples = vec![
        sample("true", 1, [0; 4]),
        sample("true", 1, [0; 4]),
        sample("sh", 1, [0; 4]),
    ];
    let (printed, notices) = run(
        exec(
            &[
                ("metrics.collect", "true"),
                ("metrics.implicit-counter.name", "execs"),
            ],
            Some("counter"),
        ),
        samples,
        Some(r.clone()),
        "exec:demo",
        OutputMode::Json,
    )
    .unwrap();
    // Collected, not printed: the events still reach the output.
    assert_eq!(printed.lines().count(), 3, "{printed}");
    assert!(notices.is_empty(), "{notices:?}");
    let text = r.scrape();
    let s = "otel_scope_name=\"demo\",otel_scope_schema_url=\"\",otel_scope_version=\"\"";
    for want in [
        "# HELP execs_total Events of data source exec\n# TYPE execs_total counter\n".to_owned(),
        format!("execs_total{{{s},proc_comm=\"sh\"}} 1\nexecs_total{{{s},proc_comm=\"true\"}} 2\n"),
        format!("n_total{{{s},proc_comm=\"true\"}} 2\n"),
        format!("lat_bucket{{{s},proc_comm=\"sh\",le=\"8\"}} 0\n"),
        "target_info{service_name=\"unknown_service:ig\"} 1\n".to_owned(),
    ] {
        assert!(text.contains(&want), "{want}\nnot in\n{text}");
    }
}

#[test]
fn a_collected_source_without_a_name_is_exported_under_its_own_and_said_so() {
    let r = Registry::new(false);
    let (_, notices) = run(
        exec(&[("metrics.collect", "true")], None),
        vec![sample("a", 0, [1, 0, 0, 2])],
        Some(r.clone()),
        "",
        OutputMode::Json,
    )
    .unwrap();
    assert!(
        matches!(&notices[..], [Notice::Warning(w)] if w.contains("exported under the name exec") && w.contains("--otel-metrics-name exec:NAME")),
        "{notices:?}"
    );
    let text = r.scrape();
    assert!(
        text.contains("lat_bucket{otel_scope_name=\"exec\",otel_scope_schema_url=\"\",otel_scope_version=\"\",proc_comm=\"a\",le=\"8\"} 3\n"),
        "{text}"
    );
    assert!(text.contains("lat_sum{otel_scope_name=\"exec\",otel_scope_schema_url=\"\",otel_scope_version=\"\",proc_comm=\"a\"} 17\n"), "{text}");
}

#[test]
fn printed_histograms_render_as_upstream_and_as_json() {
    let ds = [("metrics.print", "true")];
    let samples = vec![sample("dd", 0, [0, 4, 2, 0]), sample("dd", 0, [0, 4, 0, 0])];
    let (text, _) = run(
        exec(&ds, None),
        samples.clone(),
        None,
        "",
        OutputMode::Columns,
    )
    .unwrap();
    // The final render (the tick's comes after the interval).
    assert_eq!(
        text,
        "lat\nproc_comm=dd\n        µs               : count    distribution\n\
         \x20        0 -> 1          : 0        |                                        |\n\
         \x20        1 -> 2          : 8        |****************************************|\n\
         \x20        2 -> 4          : 2        |**********                              |\n\
         \x20        4 -> 8          : 0        |                                        |\n\n"
    );
    let (json, _) = run(exec(&ds, None), samples, None, "", OutputMode::Json).unwrap();
    assert_eq!(
        json,
        "{\"lat\":[{\"unit\":\"µs\",\"labels\":{\"proc_comm\":\"dd\"},\"intervals\":[{\"count\":0,\"start\":0,\"end\":1},{\"count\":8,\"start\":1,\"end\":2},{\"count\":2,\"start\":2,\"end\":4},{\"count\":0,\"start\":4,\"end\":8}]}]}\n"
    );
}

#[test]
fn mistakes_are_refused_by_name() {
    let e = run(
        exec(&[("metrics.collect", "true")], None),
        vec![],
        None,
        "nope:x",
        OutputMode::Json,
    )
    .err()
    .unwrap();
    let msg = std::error::Error::source(&e).unwrap().to_string();
    assert_eq!(
        msg,
        "--otel-metrics-name: no data source nope (the gadget has: exec)"
    );
    let mut b = exec(&[("metrics.collect", "true")], None);
    let s = b.add_owned("who".into(), FieldKind::String, None).unwrap();
    b.field_mut(s)
        .annotations
        .insert("metrics.type".into(), "gauge".into());
    let e = run(b, vec![], None, "", OutputMode::Json).err().unwrap();
    let msg = std::error::Error::source(&e).unwrap().to_string();
    assert!(
        msg.contains("field who: metrics.type gauge needs a number"),
        "{msg}"
    );
    let e = Pipeline::build(vec![Box::new(OtelMetrics::default())], &params("", "10ms"))
        .err()
        .unwrap();
    let msg = std::error::Error::source(&e).unwrap().to_string();
    assert_eq!(msg, "--otel-metrics-print-interval 10ms: at least 25ms");
}

#[test]
fn label_sets_are_capped_with_one_warning() {
    let r = Registry::new(false);
    let samples: Vec<Vec<u8>> = (0..MAX_SERIES + 5)
        .map(|i| sample(&format!("c{i}"), 1, [0; 4]))
        .collect();
    let (_, notices) = run(
        exec(&[("metrics.collect", "true")], Some("counter")),
        samples,
        Some(r.clone()),
        "exec:x",
        OutputMode::Json,
    )
    .unwrap();
    let warnings: Vec<_> = notices
        .iter()
        .filter(|n| matches!(n, Notice::Warning(w) if w.contains("more than 10000 label sets of proc_comm")))
        .collect();
    assert_eq!(warnings.len(), 1, "{notices:?}");
    assert_eq!(r.scrape().matches("n_total{").count(), MAX_SERIES);
}

#[test]
fn instruments_of_a_stopped_run_are_pushed_once_more_then_forgotten() {
    use super::exposition::{Kind, Value};
    use super::{AttrValue, Instrument, Point, Registry};
    let r = Registry::new(false);
    r.enable_otlp();
    let one = |name: &str| Instrument {
        scope: "s".into(),
        name: name.into(),
        description: String::new(),
        unit: String::new(),
        kind: Kind::Counter,
        points: vec![Point {
            attributes: vec![("k".into(), AttrValue::Int(1))],
            value: Value::Scalar(3.0),
        }],
    };
    r.publish_instruments(1, vec![one("a")]);
    r.publish_instruments(2, vec![one("b")]);
    r.retire(1);
    let names = |v: Vec<Instrument>| v.into_iter().map(|i| i.name).collect::<Vec<_>>();
    // The push after the stop still carries the run's last values.
    assert_eq!(names(r.instruments()), ["b", "a"]);
    assert_eq!(names(r.instruments()), ["b"]);
}
