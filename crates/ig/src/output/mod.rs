//! Printing events: a table for people and JSON lines for programs.
//!
//! This module owns the text formats and the output operator (priority
//! 10000, last in the chain) that subscribes a printer to every data source.
//! Printers write into their own large buffer and hand it to the real writer
//! in big chunks, when the buffer fills and when the runner's timer calls
//! [`Handler::flush`](crate::pipeline::Handler::flush): no syscall per event.
//! It does not decide which events exist or how values are enriched; it
//! prints the fields it is given (`--fields`, see [`fields`]), in display
//! order (a field an operator derived from another sits next to it).

pub mod fields;
mod json;
pub mod pcapng;
pub mod rendered;
pub mod sink;
mod table;
mod yaml;

pub use fields::FieldsSpec;
pub use json::JsonPrinter;
pub use sink::{DroppedRecords, SharedWriter, shared};
pub use table::TablePrinter;
pub use yaml::YamlPrinter;

use crate::pipeline::{Instance, Operator, OperatorError, Priority, Setup, priority};

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
    /// Text an operator rendered (upstream's `histogram` mode: the
    /// otel-metrics operator's `<ds>-rendered` sources), as it is.
    Histogram,
}

/// The data-source annotation that names how a source is printed when
/// `-o` is not given (upstream's).
pub const DEFAULT_MODE_ANNOTATION: &str = "cli.default-output-mode";

/// A data source's `cli.default-output-mode`: `Some(None)` for `none`
/// (not printed), `Some(Some(mode))` for a mode ig has, `None` when unset
/// or a mode of upstream's that ig lacks (`advise`: the run's mode then;
/// `operators::annotations` warns).
pub fn default_mode(
    annotations: &std::collections::BTreeMap<String, String>,
) -> Option<Option<OutputMode>> {
    Some(match annotations.get(DEFAULT_MODE_ANNOTATION)?.as_str() {
        "none" => None,
        "columns" => Some(OutputMode::Columns),
        "json" => Some(OutputMode::Json),
        "jsonpretty" => Some(OutputMode::Jsonpretty),
        "yaml" => Some(OutputMode::Yaml),
        "histogram" => Some(OutputMode::Histogram),
        _ => return None,
    })
}

/// The last operator of every run: prints each data source.
pub struct OutputOperator {
    mode: OutputMode,
    /// `-o` was given: every data source is printed in `mode`, as
    /// upstream's `-o MODE` sets it for all. Otherwise a source's
    /// `cli.default-output-mode` wins ([`default_mode`]).
    mode_given: bool,
    out: SharedWriter,
    terminal: bool,
    fields: Option<FieldsSpec>,
    fields_shared: bool,
    instance: Option<(String, usize)>,
    /// `CLOCK_REALTIME - CLOCK_BOOTTIME` (pcap-ng timestamps).
    boot_offset_ns: i128,
}

impl OutputOperator {
    /// Print in `mode` into `out`: the default fields, not a terminal.
    pub fn new(mode: OutputMode, out: SharedWriter) -> Self {
        Self {
            mode,
            mode_given: true,
            out,
            terminal: false,
            fields: None,
            fields_shared: false,
            instance: None,
            boot_offset_ns: 0,
        }
    }

    /// The offset that makes boot-time nanoseconds wall-clock time.
    #[must_use]
    pub fn with_boot_offset(mut self, ns: i128) -> Self {
        self.boot_offset_ns = ns;
        self
    }

    /// Label every event with the run's name (`name`; `width`: the widest
    /// name of the runs sharing the output, for the table's column), as
    /// `ig run -f` does: JSON and YAML get a top-level `instance` field,
    /// tables an INSTANCE column.
    #[must_use]
    pub fn with_instance(mut self, instance: Option<(String, usize)>) -> Self {
        self.instance = instance;
        self
    }

    /// Print the fields `--fields` selects instead of the defaults.
    /// `shared`: the selection was made for several runs sharing the
    /// output (`ig run -f`), so a section for a data source this run lacks
    /// is another run's, not an error.
    #[must_use]
    pub fn with_fields(mut self, fields: Option<FieldsSpec>, shared: bool) -> Self {
        self.fields = fields;
        self.fields_shared = shared;
        self
    }

    /// Whether `-o` was given (else data sources' own default modes
    /// apply).
    #[must_use]
    pub fn mode_given(mut self, given: bool) -> Self {
        self.mode_given = given;
        self
    }

    /// The output is a terminal: toppers may redraw the screen.
    #[must_use]
    pub fn on_terminal(mut self, terminal: bool) -> Self {
        self.terminal = terminal;
        self
    }
}

struct Printing;
impl Instance for Printing {}

impl OutputOperator {
    /// `-o pcap-ng`: the data sources with packets, nothing else (other
    /// sources' events would not fit in the stream).
    fn instantiate_pcapng(
        self,
        setup: &mut Setup,
        ids: &[crate::pipeline::SourceId],
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let fail = |e: String| OperatorError::failed("cli", e);
        if self.terminal {
            return Err(fail(
                "-o pcap-ng writes binary data: redirect it to a file (> capture.pcapng) or a pipe (| tshark -r -)"
                    .into(),
            ));
        }
        let with_packets: Vec<_> = ids
            .iter()
            .copied()
            .filter(|&id| pcapng::has_packets(setup.schema(id).schema()))
            .collect();
        if with_packets.is_empty() {
            let names: Vec<&str> = ids.iter().map(|&id| setup.schema(id).name()).collect();
            return Err(fail(format!(
                "-o pcap-ng: the gadget has no data source of packets (annotation {}; its data sources: {})",
                pcapng::PAYLOAD,
                names.join(", ")
            )));
        }
        for id in with_packets {
            let printer = pcapng::PcapNgPrinter::new(
                setup.schema(id).schema(),
                self.out.clone(),
                self.boot_offset_ns,
            )
            .map_err(|e| fail(e.to_string()))?;
            setup.subscribe(id, priority::OUTPUT, "cli", Box::new(printer));
        }
        Ok(Some(Box::new(Printing)))
    }
}

impl Operator for OutputOperator {
    fn name(&self) -> &'static str {
        "cli"
    }
    fn priority(&self) -> Priority {
        priority::OUTPUT
    }
    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let ids: Vec<_> = setup.source_ids().collect();
        let fail = |e: fields::FieldsError| OperatorError::failed("cli", e);
        if let Some(spec) = self.fields.as_ref().filter(|_| !self.fields_shared) {
            let names: Vec<&str> = ids.iter().map(|&id| setup.schema(id).name()).collect();
            if let Some(ds) = spec.sources().find(|ds| !names.contains(ds)) {
                return Err(fail(fields::FieldsError::Syntax {
                    spec: ds.to_owned(),
                    reason: format!("no data source {ds} (the gadget has: {})", names.join(", ")),
                }));
            }
        }
        if self.mode == OutputMode::PcapNg {
            return self.instantiate_pcapng(setup, &ids);
        }
        for id in ids {
            let schema = setup.schema(id).schema();
            let default = default_mode(&schema.annotations);
            let mode = match default {
                Some(m) if !self.mode_given => m,
                // Rendered text has no columns: `-o columns` prints it
                // as it is; other modes print its JSON.
                Some(Some(OutputMode::Histogram)) if self.mode == OutputMode::Columns => {
                    Some(OutputMode::Histogram)
                }
                _ => Some(self.mode),
            };
            let rendered = match (mode, default) {
                (Some(OutputMode::Histogram), _) => Some(rendered::Rendered::Text),
                (
                    Some(OutputMode::Json | OutputMode::Jsonpretty),
                    Some(Some(OutputMode::Histogram)),
                ) => Some(rendered::Rendered::Json),
                (Some(OutputMode::Yaml), Some(Some(OutputMode::Histogram))) => {
                    Some(rendered::Rendered::Yaml)
                }
                _ => None,
            };
            if let Some(how) = rendered {
                let p =
                    rendered::RenderedPrinter::new(schema, how, self.terminal, self.out.clone());
                setup.subscribe(id, priority::OUTPUT, "cli", Box::new(p));
                continue;
            }
            // `cli.default-output-mode: none` (the local manager's
            // `containers`): printed only when asked with `-o`.
            let Some(mode) = mode else { continue };
            let flavor = match mode {
                OutputMode::Columns => fields::Flavor::Table,
                _ => fields::Flavor::Json,
            };
            let selected = fields::select(schema, self.fields.as_ref(), flavor).map_err(fail)?;
            let name = self.instance.as_ref().map(|(n, _)| n.as_str());
            let handler: Box<dyn crate::pipeline::Handler> = match mode {
                OutputMode::Columns => {
                    let p = TablePrinter::new(schema, self.out.clone())
                        .with_fields(schema, &selected)
                        .on_terminal(schema, self.terminal);
                    Box::new(match &self.instance {
                        Some((n, width)) => p.with_instance(n, *width),
                        None => p,
                    })
                }
                OutputMode::Json | OutputMode::Jsonpretty => {
                    let pretty = mode == OutputMode::Jsonpretty;
                    let p = JsonPrinter::with_fields(schema, &selected, pretty, self.out.clone());
                    Box::new(match name {
                        Some(n) => p.with_instance(schema, n),
                        None => p,
                    })
                }
                OutputMode::Yaml | OutputMode::PcapNg | OutputMode::Histogram => {
                    let p = YamlPrinter::with_fields(schema, &selected, self.out.clone());
                    Box::new(match name {
                        Some(n) => p.with_instance(n),
                        None => p,
                    })
                }
            };
            setup.subscribe(id, priority::OUTPUT, "cli", handler);
        }
        Ok(Some(Box::new(Printing)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::{FieldKind, SchemaBuilder, SourceKind};
    use crate::pipeline::Pipeline;
    use crate::pipeline::testing::{Producer, drain_all};
    use sink::Capture;

    /// A source named `name` of one u32 field `n`, annotated
    /// `cli.default-output-mode: default` when given, with one event.
    fn producer(name: &'static str, default: Option<&str>, prio: i32) -> Producer {
        let mut b = SchemaBuilder::new(name, SourceKind::Single, 4);
        b.add_raw("n".into(), FieldKind::U32, 0, 4, None).unwrap();
        if let Some(d) = default {
            b.annotations_mut()
                .insert(DEFAULT_MODE_ANNOTATION.into(), d.into());
        }
        Producer {
            priority: prio,
            schema: b,
            samples: vec![7u32.to_ne_bytes().to_vec()],
        }
    }

    fn print(mode: OutputMode, given: bool) -> String {
        let out = Capture(Default::default());
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(producer("hidden", Some("none"), -3)),
            Box::new(producer("as_json", Some("json"), -2)),
            // A mode of an operator ig lacks: the run's mode.
            Box::new(producer("advised", Some("advise"), -1)),
            Box::new(OutputOperator::new(mode, shared(out.clone())).mode_given(given)),
        ];
        let mut p = Pipeline::build(ops, &Default::default()).unwrap();
        p.start().unwrap();
        drain_all(&mut p).unwrap();
        p.dispatch.flush().unwrap();
        p.stop().unwrap();
        String::from_utf8(out.0.borrow().clone()).unwrap()
    }

    /// Without `-o`, a source's `cli.default-output-mode` is its mode
    /// (`none`: not printed); with `-o`, every source is printed in it, as
    /// upstream's `-o MODE`.
    #[test]
    fn default_output_modes_apply_unless_a_mode_is_given() {
        assert_eq!(
            print(OutputMode::Columns, false),
            "{\"n\":7}\n       N\n       7\n"
        );
        assert_eq!(
            print(OutputMode::Json, true),
            "{\"n\":7}\n{\"n\":7}\n{\"n\":7}\n"
        );
    }
}
