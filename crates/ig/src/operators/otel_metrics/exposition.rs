//! The Prometheus text exposition format 0.0.4, written as upstream's
//! exporter (OpenTelemetry Go's Prometheus exporter over client_golang)
//! writes it, because dashboards and alerts are written against those
//! names: counters end in `_total`, names and label names have every
//! character outside `[a-zA-Z0-9_:]` turned into `_` (`proc.comm` →
//! `proc_comm`), every series carries the scope labels
//! (`otel_scope_name`, `otel_scope_schema_url`, `otel_scope_version`),
//! labels are sorted by name (`le` last), families by name and series by
//! their label values, numbers are printed as Go's `%g` with the shortest
//! precision (`1.048576e+06`), `# HELP` is always there, and no sample
//! has a timestamp.
//!
//! Owns the data model of a scrape ([`Family`], [`Series`]) and the
//! writer. Pure: no I/O, no clock; the listener and the collectors are
//! elsewhere in this operator.

use std::fmt::Write as _;
use std::sync::Arc;

/// What a family of series is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic sum (`_total`).
    Counter,
    /// The last value, or a sum that may go down.
    Gauge,
    /// Buckets, `_sum` and `_count`.
    Histogram,
}

impl Kind {
    fn type_name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The value of one series.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A counter's or a gauge's value.
    Scalar(f64),
    /// A histogram: `counts[i]` events fell at or below `bounds[i]` and
    /// above `bounds[i-1]`; the last count is above every bound (+Inf).
    Histogram {
        /// Upper bounds, increasing, without +Inf.
        bounds: Arc<[f64]>,
        /// One more than `bounds`: per bucket, not cumulative.
        counts: Vec<u64>,
        /// Sum of the values recorded.
        sum: f64,
    },
}

/// One series: its labels (already sanitized names, unsorted) and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// `(name, value)`.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: Value,
}

/// One metric family: the name as exposed (suffixes included).
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The exposed name (`execs_total`).
    pub name: String,
    /// The `# HELP` text.
    pub help: String,
    /// Its type.
    pub kind: Kind,
    /// Its series.
    pub series: Vec<Series>,
}

/// The scope labels upstream's exporter puts on every series of a meter:
/// the meter's name is the `--otel-metrics-name` of the data source.
pub fn scope_labels(scope: &str, version: &str) -> [(String, String); 3] {
    [
        ("otel_scope_name".into(), scope.into()),
        ("otel_scope_schema_url".into(), String::new()),
        ("otel_scope_version".into(), version.into()),
    ]
}

/// A metric or label name as Prometheus accepts it: every character
/// outside `[a-zA-Z0-9_:]` (`:` only in metric names) becomes `_`, and a
/// leading digit gets a `_` in front (`key_` for labels).
pub fn sanitize(name: &str, label: bool) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (c == ':' && !label);
        out.push(if ok { c } else { '_' });
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, if label { "key_" } else { "_" });
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// The suffix upstream's exporter appends for a unit: UCUM units it
/// knows; none for other units (`µs` is not UCUM), for `1` and for
/// annotations in braces (`{instance}`).
pub fn unit_suffix(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "bit" => "bits",
        "Hz" => "hertz",
        "%" => "percent",
        "Cel" => "celsius",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "m" => "meters",
        _ => return None,
    })
}

/// The exposed name of a metric `name` of `kind` with `unit`: sanitized,
/// the unit's suffix unless it already ends so, `_total` on counters.
pub fn metric_name(name: &str, kind: Kind, unit: &str) -> String {
    let mut n = sanitize(name, false);
    if let Some(suffix) = unit_suffix(unit)
        && !n.ends_with(suffix)
    {
        n.push('_');
        n.push_str(suffix);
    }
    if kind == Kind::Counter && !n.ends_with("_total") {
        n.push_str("_total");
    }
    n
}

/// `v` as Go's `strconv.FormatFloat(v, 'g', -1, 64)`, which client_golang
/// uses for every sample value and `le`: the shortest digits that read
/// back as `v`, in exponent form when the decimal exponent is below -4
/// or at least 6 (`1e+06`, `1.048576e+06`; `524288`, `0.0001`, `1e-05`);
/// `+Inf`, `-Inf`, `NaN`.
pub fn go_float(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // Rust's `{:e}` gives the same shortest round-trip digits as Go:
    // "d.ddddeX".
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is a number");
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if neg {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
        return;
    }
    // Fixed notation: the decimal point after exp+1 digits.
    let point = exp + 1;
    if point <= 0 {
        out.push_str("0.");
        for _ in 0..-point {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = point as usize;
        if digits.len() <= point {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
}

fn escape(s: &str, quote: bool, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(String, String)],
    le: Option<f64>,
    v: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        for (k, val) in labels {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(k);
            out.push_str("=\"");
            escape(val, true, out);
            out.push('"');
        }
        if let Some(le) = le {
            if !first {
                out.push(',');
            }
            out.push_str("le=\"");
            go_float(le, out);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    go_float(v, out);
    out.push('\n');
}

/// Write `families` as one scrape: families with the same name are
/// merged (the first one's help and type win; a series of another type
/// is left out), families sorted by name, labels by name, series by
/// their label values.
pub fn write(families: &[&Family], out: &mut String) {
    let mut merged: std::collections::BTreeMap<&str, (&Family, Vec<Series>)> =
        std::collections::BTreeMap::new();
    for f in families {
        let entry = merged.entry(f.name.as_str()).or_insert((f, Vec::new()));
        if entry.0.kind == f.kind {
            entry.1.extend(f.series.iter().cloned());
        }
    }
    for (name, (family, mut series)) in merged {
        for s in &mut series {
            s.labels.sort();
        }
        series.sort_by(|a, b| {
            let va = a.labels.iter().map(|(_, v)| v);
            let vb = b.labels.iter().map(|(_, v)| v);
            va.cmp(vb)
        });
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        escape(&family.help, false, out);
        out.push_str("\n# TYPE ");
        out.push_str(name);
        out.push(' ');
        out.push_str(family.kind.type_name());
        out.push('\n');
        for s in &series {
            match &s.value {
                Value::Scalar(v) => sample(out, name, "", &s.labels, None, *v),
                Value::Histogram {
                    bounds,
                    counts,
                    sum,
                } => {
                    let mut cumulative = 0u64;
                    for (i, b) in bounds.iter().enumerate() {
                        cumulative += counts.get(i).copied().unwrap_or(0);
                        sample(out, name, "_bucket", &s.labels, Some(*b), cumulative as f64);
                    }
                    let count: u64 = counts.iter().sum();
                    sample(
                        out,
                        name,
                        "_bucket",
                        &s.labels,
                        Some(f64::INFINITY),
                        count as f64,
                    );
                    sample(out, name, "_sum", &s.labels, None, *sum);
                    sample(out, name, "_count", &s.labels, None, count as f64);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(v: f64) -> String {
        let mut s = String::new();
        go_float(v, &mut s);
        s
    }

    /// What Go's `strconv.FormatFloat(v, 'g', -1, 64)` gives (its rule:
    /// exponent form when the exponent is below -4 or at least 6, as the
    /// `le="1.048576e+06"` of upstream's documented exposition shows).
    #[test]
    fn numbers_as_go_g() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (1.0, "1"),
            (50.0, "50"),
            (524288.0, "524288"),
            (999999.0, "999999"),
            (1e6, "1e+06"),
            (1048576.0, "1.048576e+06"),
            (67108864.0, "6.7108864e+07"),
            (1520032.0, "1.520032e+06"),
            (0.5, "0.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (2.5, "2.5"),
            (-3.0, "-3"),
            (123456.75, "123456.75"),
            (1e21, "1e+21"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(g(*v), *want, "{v}");
        }
    }

    #[test]
    fn names_as_upstream() {
        assert_eq!(sanitize("proc.comm", true), "proc_comm");
        assert_eq!(sanitize("9lives", true), "key_9lives");
        assert_eq!(metric_name("execs", Kind::Counter, ""), "execs_total");
        assert_eq!(metric_name("execs_total", Kind::Counter, ""), "execs_total");
        assert_eq!(metric_name("latency", Kind::Histogram, "µs"), "latency");
        assert_eq!(
            metric_name("latency", Kind::Histogram, "us"),
            "latency_microseconds"
        );
        assert_eq!(metric_name("sent", Kind::Counter, "By"), "sent_bytes_total");
        assert_eq!(
            metric_name("ig_gadgets_running", Kind::Gauge, "{instance}"),
            "ig_gadgets_running"
        );
        assert_eq!(metric_name("a.b", Kind::Gauge, "1"), "a_b");
    }

    /// The golden exposition of a counter with a key and a slot
    /// histogram, as upstream's exporter lays it out.
    #[test]
    fn golden_exposition() {
        let scope = scope_labels("demo", "");
        let mut labels = scope.to_vec();
        labels.push(("proc_comm".into(), "a\"b".into()));
        let counter = Family {
            name: "execs_total".into(),
            help: "exec events".into(),
            kind: Kind::Counter,
            series: vec![
                Series {
                    labels: labels.clone(),
                    value: Value::Scalar(50.0),
                },
                Series {
                    labels: {
                        let mut l = scope.to_vec();
                        l.insert(0, ("proc_comm".into(), "true".into()));
                        l
                    },
                    value: Value::Scalar(3.0),
                },
            ],
        };
        let hist = Family {
            name: "latency".into(),
            help: "Block I/O latency\nin µs".into(),
            kind: Kind::Histogram,
            series: vec![Series {
                labels: scope.to_vec(),
                value: Value::Histogram {
                    bounds: Arc::from(vec![1.0, 2.0, 1048576.0]),
                    counts: vec![0, 2, 5, 1],
                    sum: 5242892.0,
                },
            }],
        };
        let mut out = String::new();
        write(&[&hist, &counter], &mut out);
        assert_eq!(
            out,
            "# HELP execs_total exec events\n\
             # TYPE execs_total counter\n\
             execs_total{otel_scope_name=\"demo\",otel_scope_schema_url=\"\",otel_scope_version=\"\",proc_comm=\"a\\\"b\"} 50\n\
             execs_total{otel_scope_name=\"demo\",otel_scope_schema_url=\"\",otel_scope_version=\"\",proc_comm=\"true\"} 3\n\
             # HELP latency Block I/O latency\\nin µs\n\
             # TYPE latency histogram\n\
             latency_bucket{otel_scope_name=\"demo\",otel_scope_schema_url=\"\",otel_scope_version=\"\",le=\"1\"} 0\n\
             latency_bucket{otel_scope_name=\"demo\",otel_scope_schema_url=\"\",otel_scope_version=\"\",le=\"2\"} 2\n\
             latency_bucket{otel_scope_name=\"demo\",otel_scope_schema_url=\"\",otel_scope_version=\"\",le=\"1.048576e+06\"} 7\n\
             latency_bucket{otel_scope_name=\"demo\",otel_scope_schema_url=\"\",otel_scope_version=\"\",le=\"+Inf\"} 8\n\
             latency_sum{otel_scope_name=\"demo\",otel_scope_schema_url=\"\",otel_scope_version=\"\"} 5.242892e+06\n\
             latency_count{otel_scope_name=\"demo\",otel_scope_schema_url=\"\",otel_scope_version=\"\"} 8\n"
        );
    }
}
