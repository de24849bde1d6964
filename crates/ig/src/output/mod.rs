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
pub(crate) mod json;
pub mod mode;
pub mod pcapng;
pub mod rendered;
pub mod sink;
mod table;
mod yaml;

pub use fields::FieldsSpec;
pub use json::JsonPrinter;
pub use mode::{DEFAULT_MODE_ANNOTATION, ModeError, OutputMode, OutputSpec};
pub use sink::{DroppedRecords, SharedWriter, shared};
pub use table::TablePrinter;
pub use yaml::YamlPrinter;

use crate::pipeline::{Instance, Operator, OperatorError, Priority, Setup, SourceId, priority};

/// The last operator of every run: prints each data source.
pub struct OutputOperator {
    /// What `-o` asked for; data sources it does not name are printed in
    /// their default mode ([`mode::resolve`]).
    spec: OutputSpec,
    /// `spec` was given for several runs sharing the output (`ig run -f`):
    /// a data source it names that this run lacks is another run's.
    spec_shared: bool,
    out: SharedWriter,
    terminal: bool,
    fields: Option<FieldsSpec>,
    fields_shared: bool,
    instance: Option<(String, usize)>,
    /// `CLOCK_REALTIME - CLOCK_BOOTTIME` (pcap-ng timestamps).
    boot_offset_ns: i128,
}

impl OutputOperator {
    /// Print as `spec` says (an [`OutputMode`] for every data source)
    /// into `out`: the default fields, not a terminal.
    pub fn new(spec: impl Into<OutputSpec>, out: SharedWriter) -> Self {
        Self {
            spec: spec.into(),
            spec_shared: false,
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

    /// `spec` is shared by several runs (`ig run -f`): a data source it
    /// names that this run lacks is not an error.
    #[must_use]
    pub fn spec_shared(mut self, shared: bool) -> Self {
        self.spec_shared = shared;
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
    /// Some data source is printed as pcap-ng: its packets, and nothing
    /// else (text would corrupt the binary stream), so a data source `-o`
    /// gives a text mode is refused and the others are left out.
    fn instantiate_pcapng(
        self,
        setup: &mut Setup,
        modes: &[(SourceId, Option<OutputMode>)],
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let fail = |e: String| OperatorError::failed("cli", e);
        if self.terminal {
            return Err(fail(
                "-o pcap-ng writes binary data: redirect it to a file (> capture.pcapng) or a pipe (| tshark -r -)"
                    .into(),
            ));
        }
        for &(id, mode) in modes {
            let name = setup.schema(id).name();
            let given = self.spec.given_for(name);
            if mode == Some(OutputMode::PcapNg) {
                let printer = pcapng::PcapNgPrinter::new(
                    setup.schema(id).schema(),
                    self.out.clone(),
                    self.boot_offset_ns,
                )
                .map_err(|e| fail(e.to_string()))?;
                setup.subscribe(id, priority::OUTPUT, "cli", Box::new(printer));
            } else if let Some(m) = given.filter(|m| *m != OutputMode::None) {
                return Err(fail(format!(
                    "-o {name}:{m}: pcap-ng output is binary, so no other data source can be printed with it (give {name}:none, or run twice)"
                )));
            }
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
        let names: Vec<&str> = ids.iter().map(|&id| setup.schema(id).name()).collect();
        if let Some(spec) = self.fields.as_ref().filter(|_| !self.fields_shared)
            && let Some(ds) = spec.sources().find(|ds| !names.contains(ds))
        {
            return Err(fail(fields::FieldsError::Syntax {
                spec: ds.to_owned(),
                reason: format!("no data source {ds} (the gadget has: {})", names.join(", ")),
            }));
        }
        let fail_mode = |e: ModeError| OperatorError::failed("cli", e);
        if !self.spec_shared
            && let Some(ds) = self.spec.sources().find(|ds| !names.contains(ds))
        {
            return Err(fail_mode(ModeError::NoSource {
                source_name: ds.to_owned(),
                known: names.join(", "),
            }));
        }
        // `-o pcap-ng` for all: the data sources with packets, the others
        // left out (their events would not fit in the stream).
        let all_pcap = self.spec == OutputSpec::All(OutputMode::PcapNg);
        let with_packets = |id: SourceId| pcapng::has_packets(setup.schema(id).schema());
        if all_pcap && !ids.iter().any(|&id| with_packets(id)) {
            return Err(OperatorError::failed(
                "cli",
                format!(
                    "-o pcap-ng: the gadget has no data source of packets (annotation {}; its data sources: {})",
                    pcapng::PAYLOAD,
                    names.join(", ")
                ),
            ));
        }
        let mut modes = Vec::with_capacity(ids.len());
        for &id in &ids {
            let schema = setup.schema(id).schema();
            let given = match self.spec.given_for(&schema.name) {
                Some(OutputMode::PcapNg) if all_pcap && !with_packets(id) => Some(OutputMode::None),
                g => g,
            };
            let mode = mode::resolve(&schema.name, &schema.annotations, given, with_packets(id))
                .map_err(fail_mode)?;
            modes.push((id, mode));
        }
        if modes.iter().any(|(_, m)| *m == Some(OutputMode::PcapNg)) {
            return self.instantiate_pcapng(setup, &modes);
        }
        for (id, mode) in modes {
            let schema = setup.schema(id).schema();
            // A rendered source (the otel-metrics operator's
            // `<ds>-rendered`): its text as it is (`histogram`, or
            // `columns`: text has no columns), or its JSON.
            let rendered = if rendered::is_rendered(&schema.annotations) {
                match mode {
                    Some(OutputMode::Histogram | OutputMode::Columns) => {
                        Some(rendered::Rendered::Text)
                    }
                    Some(OutputMode::Json | OutputMode::Jsonpretty) => {
                        Some(rendered::Rendered::Json)
                    }
                    Some(OutputMode::Yaml) => Some(rendered::Rendered::Yaml),
                    _ => None,
                }
            } else {
                None
            };
            if let Some(how) = rendered {
                let p =
                    rendered::RenderedPrinter::new(schema, how, self.terminal, self.out.clone());
                setup.subscribe(id, priority::OUTPUT, "cli", Box::new(p));
                continue;
            }
            // `none`, asked for or the source's default (the local
            // manager's `containers`): not printed.
            let Some(mode) = mode else { continue };
            let flavor = match mode {
                OutputMode::Columns | OutputMode::Histogram => fields::Flavor::Table,
                _ => fields::Flavor::Json,
            };
            let selected = fields::select(schema, self.fields.as_ref(), flavor).map_err(fail)?;
            let name = self.instance.as_ref().map(|(n, _)| n.as_str());
            let handler: Box<dyn crate::pipeline::Handler> = match mode {
                // `histogram` on a source that carries no rendered text
                // (one that lists the mode without being the otel-metrics
                // operator's): its fields as a table.
                OutputMode::Columns | OutputMode::Histogram => {
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
                OutputMode::Yaml => {
                    let p = YamlPrinter::with_fields(schema, &selected, self.out.clone());
                    Box::new(match name {
                        Some(n) => p.with_instance(n),
                        None => p,
                    })
                }
                // Handled above.
                OutputMode::PcapNg | OutputMode::None => continue,
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

    fn print(spec: OutputSpec) -> Result<String, String> {
        let out = Capture(Default::default());
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(producer("hidden", Some("none"), -3)),
            Box::new(producer("as_json", Some("json"), -2)),
            // A mode of an operator ig lacks: the run's mode.
            Box::new(producer("advised", Some("advise"), -1)),
            Box::new(producer("histo", None, 0).supporting("json,advise")),
            Box::new(OutputOperator::new(spec, shared(out.clone()))),
        ];
        let mut p = Pipeline::build(ops, &Default::default()).map_err(|e| error_chain(&e))?;
        p.start().unwrap();
        drain_all(&mut p).unwrap();
        p.dispatch.flush().unwrap();
        p.stop().unwrap();
        Ok(String::from_utf8(out.0.borrow().clone()).unwrap())
    }

    fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut s = e.to_string();
        let mut cur = e.source();
        while let Some(c) = cur {
            s = format!("{s}: {c}");
            cur = c.source();
        }
        s
    }

    trait Supporting {
        fn supporting(self, modes: &str) -> Self;
    }
    impl Supporting for Producer {
        fn supporting(mut self, modes: &str) -> Self {
            self.schema
                .annotations_mut()
                .insert(mode::SUPPORTED_MODES_ANNOTATION.into(), modes.into());
            self
        }
    }

    /// Without `-o`, a source's `cli.default-output-mode` is its mode
    /// (`none`: not printed; one ig lacks: the first supported mode ig
    /// has); with `-o`, every source is printed in it, as upstream's
    /// `-o MODE`.
    #[test]
    fn default_output_modes_apply_unless_a_mode_is_given() {
        assert_eq!(
            print(OutputSpec::Defaults).unwrap(),
            "{\"n\":7}\n       N\n       7\n{\"n\":7}\n"
        );
        assert_eq!(
            print(OutputSpec::All(OutputMode::Json)).unwrap(),
            "{\"n\":7}\n{\"n\":7}\n{\"n\":7}\n{\"n\":7}\n"
        );
        assert_eq!(print(OutputSpec::All(OutputMode::None)).unwrap(), "");
    }

    /// `-o ds:mode,...` picks per data source; those not named keep their
    /// default.
    #[test]
    fn modes_per_data_source() {
        let spec = OutputSpec::parse("hidden:json,advised:none,histo:none").unwrap();
        // hidden as JSON, as_json by default, advised and histo not.
        assert_eq!(print(spec).unwrap(), "{\"n\":7}\n{\"n\":7}\n");
    }

    /// A mode outside `cli.supported-output-modes` is refused with the
    /// modes the source supports, and an unknown data source with the
    /// gadget's.
    #[test]
    fn unsupported_modes_and_unknown_sources_are_refused() {
        let e = print(OutputSpec::All(OutputMode::Columns)).unwrap_err();
        assert!(
            e.contains("data source histo cannot be printed as columns: it supports advise, json"),
            "{e}"
        );
        let e = print(OutputSpec::parse("nope:json").unwrap()).unwrap_err();
        assert!(
            e.contains("no data source nope (the gadget has: hidden, as_json, advised, histo)"),
            "{e}"
        );
    }
}
