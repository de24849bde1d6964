//! Which data-source annotations ig acts on, and the warning for those it
//! does not (a helper, not an operator).
//!
//! Upstream's operators switch themselves on and are configured by
//! annotations of a data source (`generate_networkpolicy.enable: true`,
//! `kubenameresolver.enable: true`, `metrics.print: true`...). A gadget
//! written for upstream that relies on an operator ig does not have would
//! otherwise run and print something else without a word: its raw rows
//! instead of a NetworkPolicy, a histogram as bytes. [`unknown`] finds
//! such keys in a frozen schema, one warning per annotation family (the
//! part of the key before the first dot) and data source, said once at
//! the start of a run.
//!
//! `cli.default-output-mode` and `cli.supported-output-modes` are
//! honoured for the modes ig's output has (`output::mode`: `none`,
//! `columns`, `json`, `jsonpretty`, `yaml`, `pcap-ng`) and warned about
//! when they name upstream's others (`advise`, `histogram`).
//!
//! Field annotations are not checked: those are presentation hints
//! (`columns.*`, `flamegraph.*`...) whose absence changes no value.

use crate::datasource::Schema;

/// What ig does with a data-source annotation key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handling {
    /// Read by ig (or what it asks for is what ig always does).
    Honoured,
    /// Without effect in upstream's `ig` too, unless something ig has no
    /// flag for is configured (an OpenTelemetry exporter), or read by
    /// other front ends (the desktop application's views).
    NoEffect,
    /// Read by this operator of upstream's, which ig does not have.
    Missing(&'static str),
    /// Read by this operator of upstream's; ig's operator of that name
    /// does not implement the key.
    NotImplemented(&'static str),
}

/// Keys (`family.key` exactly) or whole families (`family.*`), by what ig
/// does with them. A key not matched here is unknown to ig.
const KEYS: &[(&str, Handling)] = &[
    ("description", Handling::Honoured),
    ("cli.clear-screen-before", Handling::Honoured),
    // Toppers are always drained once more when the run stops.
    ("ebpf.map.flush-on-stop", Handling::Honoured),
    // Set by ig's operators of gadgets without eBPF, as upstream's do
    // (informational there). Upstream's eBPF operator also re-runs an
    // iterator at that interval, which ig does not (gpu_top, which cannot
    // run here, is the one gadget that asks).
    ("fetch-interval", Handling::Honoured),
    ("fetch-count", Handling::Honoured),
    ("views.*", Handling::NoEffect),
    ("profiles.*", Handling::NoEffect),
    ("logs.*", Handling::NoEffect),
    ("cli.*", Handling::NotImplemented("cli")),
    ("pcap.*", Handling::NotImplemented("cli")),
    ("ebpf.*", Handling::NotImplemented("ebpf")),
    // The otel-metrics operator reads them (`operators::otel_metrics`).
    ("metrics.*", Handling::Honoured),
    (
        "generate_networkpolicy.*",
        Handling::Missing("generate_networkpolicy"),
    ),
    ("kubenameresolver.*", Handling::Missing("kubenameresolver")),
    ("kubeipresolver.*", Handling::Missing("kubeipresolver")),
];

/// What ig does with `key` set to `value`: the keys of [`KEYS`], and
/// the output modes (`cli.default-output-mode`, the comma-separated
/// `cli.supported-output-modes`) honoured when ig has every mode they
/// name. Upstream's other modes (`advise`, `histogram`) belong to
/// operators ig does not have.
fn handling_of(key: &str, value: &str) -> Option<Handling> {
    use crate::output::mode::{DEFAULT_MODE_ANNOTATION, SUPPORTED_MODES_ANNOTATION};
    let ours = |m: &str| crate::output::mode::OutputMode::from_name(m.trim()).is_some();
    let honoured = match key {
        DEFAULT_MODE_ANNOTATION => ours(value),
        SUPPORTED_MODES_ANNOTATION => value.split(',').filter(|m| !m.trim().is_empty()).all(ours),
        _ => false,
    };
    if honoured {
        return Some(Handling::Honoured);
    }
    handling(key)
}

fn family(key: &str) -> &str {
    key.split_once('.').map_or(key, |(f, _)| f)
}

fn handling(key: &str) -> Option<Handling> {
    KEYS.iter()
        .find(|(pattern, _)| match pattern.strip_suffix(".*") {
            Some(f) => family(key) == f && key.contains('.'),
            None => *pattern == key,
        })
        .map(|(_, h)| *h)
}

/// One warning per family of data-source annotations of `schema` that ig
/// ignores although they would change upstream's output, naming the data
/// source and the keys.
pub fn unknown(schema: &Schema) -> Vec<String> {
    // Annotations are a BTreeMap: keys of one family are adjacent.
    let mut groups: Vec<(&str, Option<Handling>, Vec<&str>)> = Vec::new();
    for (key, value) in &schema.annotations {
        let h = handling_of(key, value);
        if matches!(h, Some(Handling::Honoured | Handling::NoEffect)) {
            continue;
        }
        match groups.last_mut() {
            Some((f, _, keys)) if *f == family(key) => keys.push(key),
            _ => groups.push((family(key), h, vec![key])),
        }
    }
    groups
        .into_iter()
        .map(|(_, h, keys)| {
            let (what, it, it_is) = if keys.len() == 1 {
                (format!("annotation {}", keys[0]), "it", "it is")
            } else {
                (
                    format!("annotations {}", keys.join(", ")),
                    "them",
                    "they are",
                )
            };
            let why = match h {
                Some(Handling::NotImplemented(op)) => {
                    format!("ig's {op} operator does not implement {it} (upstream's does)")
                }
                Some(Handling::Missing(op)) => {
                    format!("{it_is} for upstream's {op} operator, which ig does not have")
                }
                _ => format!("ig knows no operator that reads {it}"),
            };
            format!(
                "data source {}: {what} ignored: {why}, so the output may differ from upstream's",
                schema.name
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::{SchemaBuilder, SourceKind};

    fn schema(annotations: &[(&str, &str)]) -> Schema {
        let mut b = SchemaBuilder::new("network_connections", SourceKind::Single, 8);
        b.annotations_mut().extend(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        b.build()
    }

    #[test]
    fn advise_networkpolicys_operators_are_named_once_each() {
        let w = unknown(&schema(&[
            ("cli.supported-output-modes", "advise"),
            ("ebpf.map.flush-on-stop", "true"),
            ("generate_networkpolicy.enable", "true"),
            ("kubenameresolver.enable", "true"),
        ]));
        assert_eq!(
            w,
            [
                "data source network_connections: annotation cli.supported-output-modes ignored: ig's cli operator does not implement it (upstream's does), so the output may differ from upstream's",
                "data source network_connections: annotation generate_networkpolicy.enable ignored: it is for upstream's generate_networkpolicy operator, which ig does not have, so the output may differ from upstream's",
                "data source network_connections: annotation kubenameresolver.enable ignored: it is for upstream's kubenameresolver operator, which ig does not have, so the output may differ from upstream's",
            ]
        );
    }

    #[test]
    fn keys_of_one_family_make_one_warning() {
        let w = unknown(&schema(&[
            ("kubenameresolver.a", "true"),
            ("kubenameresolver.b", "true"),
            ("zz.a", "1"),
            ("zz.b", "2"),
        ]));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains(
                "annotations kubenameresolver.a, kubenameresolver.b ignored: they are for upstream's kubenameresolver operator"
            ),
            "{w:?}"
        );
        assert!(
            w[1].contains("annotations zz.a, zz.b ignored: ig knows no operator that reads them"),
            "{w:?}"
        );
    }

    #[test]
    fn what_ig_reads_or_upstream_ignores_too_is_silent() {
        let w = unknown(&schema(&[
            ("cli.clear-screen-before", "true"),
            ("cli.default-output-mode", "none"),
            ("cli.supported-output-modes", "none,json, pcap-ng"),
            ("description", "x"),
            ("ebpf.map.flush-on-stop", "true"),
            ("fetch-interval", "1s"),
            ("metrics.print", "true"),
            ("profiles.stack-fields", "kern_stack,user_stack_raw.symbols"),
            ("views.defaults.mode", "flamegraph"),
        ]));
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn a_family_pattern_does_not_match_a_bare_key_or_a_longer_family() {
        assert_eq!(handling("views"), None);
        assert_eq!(handling("viewsx.a"), None);
        assert_eq!(handling("views.a.b"), Some(Handling::NoEffect));
        assert_eq!(
            handling("cli.clear-screen-before"),
            Some(Handling::Honoured)
        );
        assert_eq!(
            handling("cli.default-output-mode"),
            Some(Handling::NotImplemented("cli"))
        );
        // Honoured for the modes ig's output has; upstream's modes of
        // operators ig lacks are still warned about.
        for mode in [
            "none",
            "columns",
            "json",
            "jsonpretty",
            "yaml",
            "pcap-ng",
            "histogram",
        ] {
            assert_eq!(
                handling_of("cli.default-output-mode", mode),
                Some(Handling::Honoured),
                "{mode}"
            );
        }
        for mode in ["advise", ""] {
            assert_eq!(
                handling_of("cli.default-output-mode", mode),
                Some(Handling::NotImplemented("cli")),
                "{mode}"
            );
        }
        assert_eq!(handling("ebpf.map.flush-on-stop"), Some(Handling::Honoured));
        assert_eq!(
            handling("ebpf.rest.len"),
            Some(Handling::NotImplemented("ebpf"))
        );
    }
}
