//! Output modes: which printer each data source gets (`ig run -o`), pure.
//!
//! Upstream's `-o` takes one mode for every data source (`-o json`) or
//! one per data source (`-o exec:json,containers:columns`); the two forms
//! do not mix (upstream's `GetStringValuesPerDataSource` refuses it, and
//! so do we: a command line valid here stays valid there). A data source
//! not named by the per-source form gets its own default.
//!
//! A data source may restrict its modes (`cli.supported-output-modes`,
//! comma-separated; unset: `columns`, `json`, `jsonpretty`, `none`,
//! `yaml`) and choose its default (`cli.default-output-mode`; unset:
//! `columns` if supported, else the first supported mode in sorted order,
//! as upstream). Where upstream skips a data source whose mode it does
//! not support with a warning (so `-o json` prints nothing for a
//! histogram), we refuse the run with the modes it supports. `none` is
//! always accepted: it asks for nothing to be printed.
//!
//! This module decides; the output operator (`super`) builds the
//! printers. It does not know printers, fields or terminals.

use std::collections::BTreeMap;

/// The data-source annotation that names how a source is printed when
/// `-o` does not say (upstream's).
pub const DEFAULT_MODE_ANNOTATION: &str = "cli.default-output-mode";

/// The data-source annotation that lists the modes a source may be
/// printed in, comma-separated (upstream's).
pub const SUPPORTED_MODES_ANNOTATION: &str = "cli.supported-output-modes";

/// The modes a data source supports when it does not say (upstream's
/// `DefaultSupportedOutputModes`, sorted).
pub const DEFAULT_SUPPORTED: &[&str] = &["columns", "json", "jsonpretty", "none", "yaml"];

/// How events are printed (`ig run -o`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// A table with a header, columns sized from `gadget.yaml` annotations.
    Columns,
    /// One JSON object per event, one per line.
    Json,
    /// Indented JSON, one object per event.
    Jsonpretty,
    /// YAML, each event a document preceded by `---`.
    Yaml,
    /// Packets as pcap-ng, for tshark or Wireshark (gadgets that declare
    /// packets: `pcap.payload`); binary, so never to a terminal.
    PcapNg,
    /// Text an operator rendered, printed as it is (upstream's
    /// `histogram`: the otel-metrics operator's `<ds>-rendered` sources,
    /// `super::rendered`).
    Histogram,
    /// Nothing: the data source is not printed (its events still reach
    /// every other operator and consumer).
    None,
}

impl OutputMode {
    /// Every mode ig prints, in the order `--help` lists them.
    pub const ALL: [OutputMode; 7] = [
        Self::Columns,
        Self::Json,
        Self::Jsonpretty,
        Self::Yaml,
        Self::PcapNg,
        Self::Histogram,
        Self::None,
    ];

    /// Upstream's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            Self::Columns => "columns",
            Self::Json => "json",
            Self::Jsonpretty => "jsonpretty",
            Self::Yaml => "yaml",
            Self::PcapNg => "pcap-ng",
            Self::Histogram => "histogram",
            Self::None => "none",
        }
    }

    /// The mode named `name`, if ig has it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl std::fmt::Display for OutputMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `-o` asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OutputSpec {
    /// Nothing: each data source in its default mode.
    #[default]
    Defaults,
    /// One mode for every data source (`-o json`).
    All(OutputMode),
    /// A mode per named data source (`-o exec:json,containers:none`);
    /// the others in their default.
    PerSource(BTreeMap<String, OutputMode>),
}

impl From<OutputMode> for OutputSpec {
    fn from(mode: OutputMode) -> Self {
        Self::All(mode)
    }
}

/// Why `-o` or a data source's mode cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModeError {
    /// `-o` is empty.
    #[error("no output mode given (modes: {})", mode_list())]
    Empty,
    /// A mode ig does not have.
    #[error("{given:?} is not an output mode (modes: {})", mode_list())]
    Unknown {
        /// What was given.
        given: String,
    },
    /// An entry `:mode` or `ds:`.
    #[error("{given:?}: expected MODE or DATASOURCE:MODE")]
    Syntax {
        /// The entry.
        given: String,
    },
    /// A bare mode next to per-source ones.
    #[error(
        "{given:?} mixes a mode for every data source with modes per data source: give either MODE or DATASOURCE:MODE,... (every data source not named keeps its default)"
    )]
    Mixed {
        /// The whole value.
        given: String,
    },
    /// A data source named twice.
    #[error("data source {source_name} is given two output modes")]
    Twice {
        /// The data source.
        source_name: String,
    },
    /// A data source the gadget does not have.
    #[error("-o {source_name}:...: no data source {source_name} (the gadget has: {known})")]
    NoSource {
        /// The name given.
        source_name: String,
        /// The gadget's data sources, comma-separated.
        known: String,
    },
    /// A mode the data source does not list in
    /// `cli.supported-output-modes`.
    #[error(
        "data source {source_name} cannot be printed as {mode}: it supports {supported} (its annotation {SUPPORTED_MODES_ANNOTATION}); choose one with -o {source_name}:MODE"
    )]
    Unsupported {
        /// The data source.
        source_name: String,
        /// The mode asked for.
        mode: OutputMode,
        /// Its modes, comma-separated.
        supported: String,
    },
}

fn mode_list() -> String {
    OutputMode::ALL.map(OutputMode::name).join(", ")
}

impl OutputSpec {
    /// Parse `-o`'s value: `MODE` or `DATASOURCE:MODE[,DATASOURCE:MODE...]`.
    pub fn parse(s: &str) -> Result<Self, ModeError> {
        let mut all = None;
        let mut per = BTreeMap::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let mode = |m: &str| {
                OutputMode::from_name(m.trim()).ok_or_else(|| ModeError::Unknown {
                    given: m.trim().to_owned(),
                })
            };
            match entry.split_once(':') {
                None => all = Some(mode(entry)?),
                Some((ds, m)) => {
                    let ds = ds.trim();
                    if ds.is_empty() || m.trim().is_empty() {
                        return Err(ModeError::Syntax {
                            given: entry.to_owned(),
                        });
                    }
                    if per.insert(ds.to_owned(), mode(m)?).is_some() {
                        return Err(ModeError::Twice {
                            source_name: ds.to_owned(),
                        });
                    }
                }
            }
        }
        match (all, per.is_empty()) {
            (None, true) => Err(ModeError::Empty),
            (Some(m), true) => Ok(Self::All(m)),
            (None, false) => Ok(Self::PerSource(per)),
            (Some(_), false) => Err(ModeError::Mixed {
                given: s.to_owned(),
            }),
        }
    }

    /// The mode `-o` gives data source `name`, if it names one.
    pub fn given_for(&self, name: &str) -> Option<OutputMode> {
        match self {
            Self::Defaults => None,
            Self::All(m) => Some(*m),
            Self::PerSource(per) => per.get(name).copied(),
        }
    }

    /// Every data source the per-source form names.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        let per = match self {
            Self::PerSource(per) => Some(per),
            _ => None,
        };
        per.into_iter().flat_map(|p| p.keys().map(String::as_str))
    }
}

/// The modes a data source with `annotations` supports, sorted: its
/// `cli.supported-output-modes`, else [`DEFAULT_SUPPORTED`]. Names ig
/// has no printer for (upstream's `advise`) are kept.
pub fn supported(annotations: &BTreeMap<String, String>) -> Vec<String> {
    let Some(list) = annotations.get(SUPPORTED_MODES_ANNOTATION) else {
        return DEFAULT_SUPPORTED.iter().map(|s| (*s).to_owned()).collect();
    };
    let mut modes: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    modes.sort();
    modes.dedup();
    modes
}

/// The mode a data source is printed in, `None` for not at all.
///
/// `given`: what `-o` says for it ([`OutputSpec::given_for`]).
/// `has_packets`: it declares packets (`pcap.payload`), so `pcap-ng` is
/// supported unless its annotation lists modes without it.
pub fn resolve(
    source_name: &str,
    annotations: &BTreeMap<String, String>,
    given: Option<OutputMode>,
    has_packets: bool,
) -> Result<Option<OutputMode>, ModeError> {
    let supported = supported(annotations);
    let supports = |m: OutputMode| {
        m == OutputMode::None
            || supported.iter().any(|s| s == m.name())
            || (m == OutputMode::PcapNg
                && has_packets
                && !annotations.contains_key(SUPPORTED_MODES_ANNOTATION))
    };
    if let Some(m) = given {
        if !supports(m) {
            return Err(ModeError::Unsupported {
                source_name: source_name.to_owned(),
                mode: m,
                supported: supported.join(", "),
            });
        }
        return Ok((m != OutputMode::None).then_some(m));
    }
    let default = match annotations.get(DEFAULT_MODE_ANNOTATION) {
        Some(d) => d.trim(),
        None if supports(OutputMode::Columns) => "columns",
        None => supported.first().map_or("columns", String::as_str),
    };
    let mode = OutputMode::from_name(default)
        // A default of upstream's that ig cannot print (`advise`;
        // `operators::annotations` warns): the first
        // supported mode ig has, else a table.
        .or_else(|| supported.iter().find_map(|s| OutputMode::from_name(s)))
        .unwrap_or(OutputMode::Columns);
    Ok((mode != OutputMode::None).then_some(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_bare_mode_is_for_every_source_and_pairs_for_each() {
        assert_eq!(
            OutputSpec::parse("json"),
            Ok(OutputSpec::All(OutputMode::Json))
        );
        assert_eq!(
            OutputSpec::parse("none"),
            Ok(OutputSpec::All(OutputMode::None))
        );
        let per = OutputSpec::parse("exec:json, containers:none").unwrap();
        assert_eq!(per.given_for("exec"), Some(OutputMode::Json));
        assert_eq!(per.given_for("containers"), Some(OutputMode::None));
        assert_eq!(per.given_for("other"), None);
        assert_eq!(per.sources().collect::<Vec<_>>(), ["containers", "exec"]);
        assert_eq!(
            OutputSpec::parse("p:pcap-ng").unwrap().given_for("p"),
            Some(OutputMode::PcapNg)
        );
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        assert!(matches!(
            OutputSpec::parse("json,exec:yaml"),
            Err(ModeError::Mixed { .. })
        ));
        assert_eq!(
            OutputSpec::parse("jsn").unwrap_err().to_string(),
            "\"jsn\" is not an output mode (modes: columns, json, jsonpretty, yaml, pcap-ng, histogram, none)"
        );
        assert!(matches!(
            OutputSpec::parse("exec:advise"),
            Err(ModeError::Unknown { .. })
        ));
        assert!(matches!(
            OutputSpec::parse(":json"),
            Err(ModeError::Syntax { .. })
        ));
        assert!(matches!(
            OutputSpec::parse("a:json,a:yaml"),
            Err(ModeError::Twice { .. })
        ));
        assert_eq!(OutputSpec::parse(" , "), Err(ModeError::Empty));
    }

    #[test]
    fn defaults_follow_upstreams_rules() {
        let r = |a: &[(&str, &str)]| resolve("ds", &ann(a), None, false).unwrap();
        assert_eq!(r(&[]), Some(OutputMode::Columns));
        assert_eq!(r(&[(DEFAULT_MODE_ANNOTATION, "none")]), None);
        assert_eq!(
            r(&[(DEFAULT_MODE_ANNOTATION, "json")]),
            Some(OutputMode::Json)
        );
        // Without columns and without a default: the first supported.
        assert_eq!(
            r(&[(SUPPORTED_MODES_ANNOTATION, "yaml,json")]),
            Some(OutputMode::Json)
        );
        // advise_networkpolicy's network_connections: not printed.
        assert_eq!(r(&[(SUPPORTED_MODES_ANNOTATION, "none")]), None);
        // A default ig cannot print: the first supported mode it can.
        assert_eq!(
            r(&[
                (SUPPORTED_MODES_ANNOTATION, "advise,json"),
                (DEFAULT_MODE_ANNOTATION, "advise")
            ]),
            Some(OutputMode::Json)
        );
        assert_eq!(
            r(&[(DEFAULT_MODE_ANNOTATION, "advise")]),
            Some(OutputMode::Columns)
        );
    }

    #[test]
    fn a_mode_outside_the_supported_ones_is_refused_but_none_never() {
        let a = ann(&[(SUPPORTED_MODES_ANNOTATION, "json,columns")]);
        let e = resolve("blockio", &a, Some(OutputMode::Yaml), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "data source blockio cannot be printed as yaml: it supports columns, json (its annotation cli.supported-output-modes); choose one with -o blockio:MODE"
        );
        assert_eq!(resolve("b", &a, Some(OutputMode::None), false), Ok(None));
        assert_eq!(
            resolve("b", &a, Some(OutputMode::Json), false),
            Ok(Some(OutputMode::Json))
        );
        // pcap-ng: for sources with packets unless their list omits it.
        let none = BTreeMap::new();
        assert!(resolve("p", &none, Some(OutputMode::PcapNg), false).is_err());
        assert_eq!(
            resolve("p", &none, Some(OutputMode::PcapNg), true),
            Ok(Some(OutputMode::PcapNg))
        );
        assert!(resolve("p", &a, Some(OutputMode::PcapNg), true).is_err());
        let tcpdump = ann(&[(SUPPORTED_MODES_ANNOTATION, "pcap-ng,columns,json,yaml")]);
        assert_eq!(
            resolve("p", &tcpdump, Some(OutputMode::PcapNg), true),
            Ok(Some(OutputMode::PcapNg))
        );
    }
}
