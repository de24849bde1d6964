//! Printing events: a table for people and JSON lines for programs.
//!
//! This module owns the text formats and the output operator (priority
//! 10000, last in the chain) that subscribes a printer to every data source.
//! Printers write into their own large buffer and hand it to the real writer
//! in big chunks, when the buffer fills and when the runner's timer calls
//! [`Handler::flush`](crate::pipeline::Handler::flush): no syscall per event.
//! It does not decide which events exist or how values are enriched; it
//! prints the fields it is given, in schema order.

mod json;
mod sink;
mod table;

pub use json::JsonPrinter;
pub use sink::{SharedWriter, shared};
pub use table::TablePrinter;

use crate::pipeline::{Instance, Operator, OperatorError, Priority, Setup, priority};

/// `-o` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputMode {
    /// A table with a header, columns sized from `gadget.yaml` annotations.
    Columns,
    /// One JSON object per event, one per line.
    Json,
    /// Indented JSON, one object per event.
    Jsonpretty,
}

/// The last operator of every run: prints each data source.
pub struct OutputOperator {
    mode: OutputMode,
    out: SharedWriter,
}

impl OutputOperator {
    pub fn new(mode: OutputMode, out: SharedWriter) -> Self {
        Self { mode, out }
    }
}

struct Printing;
impl Instance for Printing {}

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
        for id in ids {
            let schema = setup.schema(id).schema();
            let handler: Box<dyn crate::pipeline::Handler> = match self.mode {
                OutputMode::Columns => Box::new(TablePrinter::new(schema, self.out.clone())),
                OutputMode::Json => Box::new(JsonPrinter::new(schema, false, self.out.clone())),
                OutputMode::Jsonpretty => {
                    Box::new(JsonPrinter::new(schema, true, self.out.clone()))
                }
            };
            setup.subscribe(id, priority::OUTPUT, "cli", handler);
        }
        Ok(Some(Box::new(Printing)))
    }
}
