//! The printer of upstream's `histogram` output mode: a data source whose
//! events carry text already rendered (the otel-metrics operator's
//! `<ds>-rendered`: a `text` field for people, a `json` field for
//! programs) is printed as that text, the screen cleared first on a
//! terminal when the source asks (`cli.clear-screen-before`); in `-o
//! json`/`jsonpretty`/`yaml` the `json` field is printed as one JSON
//! document per render (YAML reads JSON, so a YAML reader gets the same
//! mapping after `---`).

use super::sink::{SharedWriter, Sink};
use crate::datasource::{Event, FieldId, Schema, ValueRef};
use crate::pipeline::{Flow, Handler, HandlerError};

/// The field of rendered text (upstream's name).
pub const TEXT_FIELD: &str = "text";
/// The field of the same render as JSON (ours).
pub const JSON_FIELD: &str = "json";

/// Whether a data source with these annotations carries rendered text
/// (its default mode is `histogram`: the otel-metrics operator's
/// `<ds>-rendered`).
pub fn is_rendered(annotations: &std::collections::BTreeMap<String, String>) -> bool {
    annotations
        .get(super::DEFAULT_MODE_ANNOTATION)
        .is_some_and(|m| m.trim() == "histogram")
}

/// Prints one field of each event as it is.
pub struct RenderedPrinter {
    field: Option<FieldId>,
    clear: bool,
    /// Put before each document (`---\n` for YAML).
    before: &'static [u8],
    /// Put after it (a newline after JSON).
    after: &'static [u8],
    sink: Sink,
}

/// How a rendered source is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendered {
    /// The text, as upstream's `histogram` mode.
    Text,
    /// The JSON, one document per line.
    Json,
    /// The JSON as a YAML document.
    Yaml,
}

impl RenderedPrinter {
    /// Print `schema`'s events to `out` as `how` says; `terminal`: the
    /// output is one (the screen may be cleared).
    pub fn new(schema: &Schema, how: Rendered, terminal: bool, out: SharedWriter) -> Self {
        let name = match how {
            Rendered::Text => TEXT_FIELD,
            Rendered::Json | Rendered::Yaml => JSON_FIELD,
        };
        let clear = how == Rendered::Text
            && terminal
            && schema
                .annotations
                .get("cli.clear-screen-before")
                .is_some_and(|v| v == "true");
        let (before, after): (&[u8], &[u8]) = match how {
            Rendered::Text => (b"", b""),
            Rendered::Json => (b"", b"\n"),
            Rendered::Yaml => (b"---\n", b"\n"),
        };
        Self {
            field: schema.field_by_name(name),
            clear,
            before,
            after,
            sink: Sink::new(out),
        }
    }
}

impl Handler for RenderedPrinter {
    fn on_event(&mut self, schema: &Schema, event: &mut Event) -> Flow {
        let Some(id) = self.field else {
            return Flow::Continue;
        };
        let ValueRef::Str(text) = event.get(schema.field(id)) else {
            return Flow::Continue;
        };
        if let Some(buf) = self.sink.buf() {
            if self.clear {
                buf.extend_from_slice(b"\x1b[H\x1b[2J");
            }
            buf.extend_from_slice(self.before);
            buf.extend_from_slice(text);
            buf.extend_from_slice(self.after);
            self.sink.record_done();
        }
        Flow::Continue
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        self.sink.flush()
    }
}
