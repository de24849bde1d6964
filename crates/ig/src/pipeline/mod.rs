//! The operator chain: how a gadget run is assembled from operators and how
//! every event flows through them.
//!
//! This module owns the contracts ([`Operator`], [`Instance`], [`Handler`],
//! [`Source`]), the ordering rule (priority, then name) and the lifecycle
//! (instantiate, start in order, stop in reverse, unwind on a failed start).
//! It does not own the event loop that waits on file descriptors and signals:
//! that is effectful and lives in `crate::runner`. Nothing here does I/O, so
//! every operator can be tested with a hand-made [`Source`] before it and a
//! collecting [`Handler`] after it (see [`testing`]).

use std::sync::Arc;

use crate::datasource::{Event, Schema, SchemaBuilder, SchemaError};
use crate::params::{ParamSpec, ParamValues};

pub mod annotate;
pub mod testing;

pub use annotate::{AnnotateError, Annotation};

/// Lower runs first. Values follow upstream so that the priorities WASM
/// guests subscribe with keep their meaning.
pub type Priority = i32;

/// Well-known priorities, from upstream's operators.
pub mod priority {
    use super::Priority;
    /// The image operator (upstream's `oci`).
    pub const IMAGE: Priority = -1000;
    /// The local manager (containers, `-c`).
    pub const LOCAL_MANAGER: Priority = -1;
    /// The eBPF operator.
    pub const EBPF: Priority = 0;
    /// The formatters (timestamps, errnos, syscalls...).
    pub const FORMATTERS: Priority = 0;
    /// The uid/gid resolver (user and group names).
    pub const UID_GID_RESOLVER: Priority = 5;
    /// Ours (upstream has no such operator): after the uid/gid resolver.
    pub const PROCESS_ENRICHER: Priority = 6;
    /// The filter (`--filter`).
    pub const FILTER: Priority = 9000;
    /// The sorter (`--sort`).
    pub const SORT: Priority = 9500;
    /// The limiter (`--max-entries`).
    pub const LIMIT: Priority = 9600;
    /// The printers and the caller's consumers: last.
    pub const OUTPUT: Priority = 10000;
}

/// What a handler wants done with the event it just saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on: later handlers see the event.
    Continue,
    /// Stop here: later handlers do not see this event.
    Drop,
}

/// Identifies a data source within one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceId(pub usize);

/// Receives the events of one data source.
///
/// Handlers run on the hot path: they are synchronous, must not block on
/// anything but their own output, and cannot fail an event. A problem is
/// counted and logged by the handler itself (Architecture Invariant 4).
pub trait Handler {
    /// One event of the data source `schema` describes; it may be changed (an
    /// operator adding fields) for the handlers after this one.
    fn on_event(&mut self, schema: &Schema, event: &mut Event) -> Flow;

    /// A whole snapshot (iterators, map drains). The default hands each
    /// element to [`Handler::on_event`] and removes the dropped ones.
    fn on_array(&mut self, schema: &Schema, events: &mut Vec<Event>) -> Flow {
        events.retain_mut(|e| self.on_event(schema, e) == Flow::Continue);
        Flow::Continue
    }

    /// Called on the runner's timer and before stop, so buffered output
    /// reaches its reader with bounded latency. An error here (the reader went
    /// away) ends the run.
    fn flush(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// Why a handler cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The consumer of our output went away (`ig run | head -1`): a normal end.
    #[error("output closed by its reader")]
    Closed,
    /// Writing output failed.
    #[error("writing output")]
    Io(#[source] std::io::Error),
}

/// Produces events. An operator instance that reads the kernel (or a test
/// fixture) exposes one.
pub trait Source {
    /// File descriptors to wait on for readability. Empty means "call
    /// [`Source::drain`] on every tick".
    fn fds(&self) -> Vec<std::os::fd::RawFd>;

    /// Read everything pending without blocking and hand it to `out`.
    fn drain(&mut self, out: &mut Dispatch) -> Result<(), OperatorError>;

    /// The chains are frozen: called once, before any instance
    /// pre-starts, so a source that needs the run's final schemas (the
    /// WASM host resolves a guest's field handles against them) has them
    /// before the first event of any source reaches its handlers.
    fn frozen(&mut self, _out: &Dispatch) {}

    /// Periodic housekeeping (loss counters, map drains). Returns what the
    /// user should be told.
    fn tick(&mut self, _out: &mut Dispatch) -> Result<Vec<Notice>, OperatorError> {
        Ok(Vec::new())
    }

    /// The run is stopping (signal, timeout, end of the output or of every
    /// source): called once, before the final drain. A source whose
    /// handlers may be slow starts counting its stop time here.
    fn stopping(&mut self) {}

    /// Last call before the run stops: hand out what is still held (a
    /// topper's partial interval). Not called when the output is gone.
    fn finish(&mut self, _out: &mut Dispatch) -> Result<(), OperatorError> {
        Ok(())
    }

    /// A finite source (a snapshot) says when it is done.
    fn finished(&self) -> bool {
        false
    }

    /// Drained even when [`Source::finished`]: a helper source that never
    /// keeps a run going but serves fds of its own (the local manager's
    /// watches).
    fn always_drain(&self) -> bool {
        false
    }
}

/// Something for the user, produced while running: losses (summed and
/// rate-limited by the runner) and warnings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The kernel dropped events (ring buffer full or reservation failed).
    Lost {
        /// The data source that lost them.
        source: String,
        /// How many.
        count: u64,
    },
    /// Events formatted but dropped because the reader of the output did
    /// not keep up and the output backlog was full (`output::sink`).
    OutputDropped {
        /// How many.
        count: u64,
    },
    /// Packets a WASM guest asked for but was refused: it already held as
    /// many bytes of undelivered events as ig keeps for it.
    GuestRefused {
        /// The guest's module.
        module: String,
        /// How many.
        count: u64,
    },
    /// Events a consumer of the run did not take in time: its bounded
    /// channel was full, so they were dropped rather than waited for.
    ConsumerLagged {
        /// How many.
        count: u64,
    },
    /// What the assembly of the run noticed but did not refuse (an
    /// annotation of a field nobody created).
    Warning(String),
}

impl Notice {
    /// The events this notice says were lost (0 for a warning).
    pub fn lost(&self) -> u64 {
        match self {
            Notice::Lost { count, .. }
            | Notice::OutputDropped { count }
            | Notice::GuestRefused { count, .. }
            | Notice::ConsumerLagged { count } => *count,
            Notice::Warning(_) => 0,
        }
    }
}

/// An operator that has agreed to take part in a run.
pub trait Instance {
    /// Called on every instance, in order, before any is started
    /// (upstream's `PreStart`): the last moment to influence how others
    /// start, e.g. a WASM guest's `setConfig` before the eBPF operator
    /// loads the gadget.
    fn pre_start(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
    /// Start (after every instance's `pre_start`), in priority order.
    fn start(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
    /// Stop, in reverse order; also after a failed start of a later instance.
    fn stop(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
    /// The producer of events this instance is, if it is one.
    fn source(&mut self) -> Option<&mut dyn Source> {
        None
    }
}

/// A stage of the chain. Operators are values: the CLI constructs them with
/// their configuration, and [`Pipeline::build`] orders them.
pub trait Operator {
    /// Its name (upstream's, where it has one): in `--help` groups, messages
    /// and parameter names.
    fn name(&self) -> &'static str;
    /// Its place in the chain ([`priority`]).
    fn priority(&self) -> Priority;
    /// The parameters this operator takes, for the command line and
    /// `--help`. Known before [`Operator::instantiate`].
    fn params(&self) -> Vec<ParamSpec> {
        Vec::new()
    }
    /// Names of the data sources this operator will add, when they are
    /// known before [`Operator::instantiate`]: per-data-source parameters
    /// (`--filter.<ds>`) are made for them.
    fn data_source_names(&self) -> Vec<String> {
        Vec::new()
    }
    /// Receive the checked values of all parameters of the run (look up
    /// your own by full name). Called once, before `instantiate`.
    fn apply_params(&mut self, _values: &ParamValues) -> Result<(), OperatorError> {
        Ok(())
    }
    /// Declare or extend data sources and subscribe handlers. `Ok(None)`
    /// means "not applicable to this gadget".
    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError>;
}

/// Why an operator could not be set up, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The operator `operator` failed.
    #[error("operator {operator}")]
    Failed {
        /// The operator.
        operator: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A schema refused a field.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A handler failed to flush.
    #[error(transparent)]
    Handler(#[from] HandlerError),
    /// An annotation given at run time does not fit the run.
    #[error(transparent)]
    Annotate(#[from] AnnotateError),
}

impl OperatorError {
    /// `operator` failed because of `source`.
    pub fn failed(
        operator: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Failed {
            operator,
            source: source.into(),
        }
    }
}

struct Subscriber {
    priority: Priority,
    name: &'static str,
    handler: Box<dyn Handler>,
}

struct SourceSetup {
    schema: SchemaBuilder,
    subscribers: Vec<Subscriber>,
    /// Cleared by [`Setup::unreference`].
    referenced: bool,
}

/// What operators see while the run is being assembled. Schemas are mutable
/// only here (Architecture Invariant 3).
#[derive(Default)]
pub struct Setup {
    sources: Vec<SourceSetup>,
    yield_flag: YieldFlag,
    /// Given at run time (`--annotate`): applied to each data source as
    /// it is declared, and again at the freeze ([`annotate`]).
    annotations: Vec<Annotation>,
}

/// Lets a handler that was slow ask the source feeding it to hand control
/// back to the event loop after the current event, so that signals and
/// flushes are seen. Sources batch their clock checks (a clock read per
/// event is too dear), which a handler taking milliseconds per event
/// would otherwise stretch into minutes. Per pipeline; one thread.
#[derive(Clone, Default)]
pub struct YieldFlag(std::rc::Rc<std::cell::Cell<bool>>);

impl YieldFlag {
    /// Ask the source to stop its drain after the current event.
    pub fn request(&self) {
        self.0.set(true);
    }
}

impl Setup {
    /// Declare a data source; later operators see it, and its id subscribes
    /// handlers.
    pub fn add_source(&mut self, mut schema: SchemaBuilder) -> SourceId {
        apply_annotations(&self.annotations, &mut schema, false);
        self.sources.push(SourceSetup {
            schema,
            subscribers: Vec::new(),
            referenced: true,
        });
        SourceId(self.sources.len() - 1)
    }

    /// The data sources later operators should handle: every source not
    /// [unreferenced](Setup::unreference), as upstream's
    /// `GetDataSources`.
    pub fn source_ids(&self) -> impl Iterator<Item = SourceId> + use<> {
        let ids: Vec<SourceId> = self
            .all_source_ids()
            .filter(|id| self.sources[id.0].referenced)
            .collect();
        ids.into_iter()
    }

    /// Every data source, referenced or not (upstream's
    /// `GetAllDataSources`).
    pub fn all_source_ids(&self) -> impl Iterator<Item = SourceId> + use<> {
        (0..self.sources.len()).map(SourceId)
    }

    /// Stop forwarding `id` to the operators instantiated after this call
    /// (upstream's `Unreference`): a WASM guest that consumes a source
    /// and emits its own keeps the consumed one out of the output. Its
    /// events still reach the handlers subscribed so far.
    pub fn unreference(&mut self, id: SourceId) {
        self.sources[id.0].referenced = false;
    }

    /// Whether the data source `id` is still referenced (printed, passed on).
    pub fn is_referenced(&self, id: SourceId) -> bool {
        self.sources[id.0].referenced
    }

    /// The schema of data source `id` as built so far.
    pub fn schema(&self, id: SourceId) -> &SchemaBuilder {
        &self.sources[id.0].schema
    }

    /// The schema of data source `id`, to add fields or annotations.
    pub fn schema_mut(&mut self, id: SourceId) -> &mut SchemaBuilder {
        &mut self.sources[id.0].schema
    }

    /// The run's [`YieldFlag`], for handlers to keep.
    pub fn yield_flag(&self) -> YieldFlag {
        self.yield_flag.clone()
    }

    /// Subscribe `handler` (named `name`, for messages) to the events of `id`,
    /// at `priority` among the source's handlers.
    pub fn subscribe(
        &mut self,
        id: SourceId,
        priority: Priority,
        name: &'static str,
        handler: Box<dyn Handler>,
    ) {
        self.sources[id.0].subscribers.push(Subscriber {
            priority,
            name,
            handler,
        });
    }
}

/// The frozen handler chains, one per data source, in priority order.
pub struct Dispatch {
    sources: Vec<(Arc<Schema>, Vec<Subscriber>)>,
    yield_flag: YieldFlag,
}

impl Dispatch {
    /// The frozen schema of data source `id`.
    pub fn schema(&self, id: SourceId) -> &Arc<Schema> {
        &self.sources[id.0].0
    }

    /// Every data source and its schema, in id order.
    pub fn schemas(&self) -> impl Iterator<Item = (SourceId, &Arc<Schema>)> {
        self.sources
            .iter()
            .enumerate()
            .map(|(i, (s, _))| (SourceId(i), s))
    }

    /// Run one event through its source's chain, stopping at the first
    /// [`Flow::Drop`].
    pub fn event(&mut self, id: SourceId, event: &mut Event) {
        let (schema, subs) = &mut self.sources[id.0];
        for s in subs {
            if s.handler.on_event(schema, event) == Flow::Drop {
                return;
            }
        }
    }

    /// Did a handler ask for the drain to stop ([`YieldFlag`])? Clears the
    /// request.
    pub fn take_yield(&mut self) -> bool {
        self.yield_flag.0.replace(false)
    }

    /// Run one array (a snapshot) through its source's chain.
    pub fn array(&mut self, id: SourceId, events: &mut Vec<Event>) {
        let (schema, subs) = &mut self.sources[id.0];
        for s in subs {
            if s.handler.on_array(schema, events) == Flow::Drop {
                return;
            }
        }
    }

    /// Flush every handler; the first error is returned after all were tried.
    pub fn flush(&mut self) -> Result<(), HandlerError> {
        let mut first = None;
        for (_, subs) in &mut self.sources {
            for s in subs {
                if let Err(e) = s.handler.flush() {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// An assembled run: the instances in start order and the frozen chains.
pub struct Pipeline {
    instances: Vec<(&'static str, Box<dyn Instance>)>,
    started: usize,
    /// The handler chains, to push events through by hand.
    pub dispatch: Dispatch,
    warnings: Vec<String>,
}

impl Pipeline {
    /// Order the operators by (priority, name), hand them the parameter
    /// values, instantiate each, then freeze the schemas and handler chains.
    pub fn build(
        operators: Vec<Box<dyn Operator>>,
        params: &ParamValues,
    ) -> Result<Self, OperatorError> {
        Self::build_annotated(operators, params, Vec::new())
    }

    /// [`Pipeline::build`], with `annotations` given at run time
    /// (`--annotate`) applied as if `gadget.yaml` had them and checked
    /// against the final schemas ([`annotate`]).
    pub fn build_annotated(
        mut operators: Vec<Box<dyn Operator>>,
        params: &ParamValues,
        annotations: Vec<Annotation>,
    ) -> Result<Self, OperatorError> {
        operators.sort_by(|a, b| (a.priority(), a.name()).cmp(&(b.priority(), b.name())));
        for op in &mut operators {
            op.apply_params(params)?;
        }
        let mut setup = Setup {
            annotations,
            ..Setup::default()
        };
        let mut instances = Vec::new();
        for op in operators {
            let name = op.name();
            if let Some(inst) = op.instantiate(&mut setup)? {
                instances.push((name, inst));
            }
        }
        check_annotations(&setup)?;
        for s in &mut setup.sources {
            apply_annotations(&setup.annotations, &mut s.schema, true);
        }
        let warnings = unclaimed_annotations(&setup);
        let yield_flag = setup.yield_flag.clone();
        let sources = setup
            .sources
            .into_iter()
            .map(|mut s| {
                s.subscribers
                    .sort_by(|a, b| (a.priority, a.name).cmp(&(b.priority, b.name)));
                (Arc::new(s.schema.build()), s.subscribers)
            })
            .collect();
        Ok(Self {
            instances,
            started: 0,
            dispatch: Dispatch {
                sources,
                yield_flag,
            },
            warnings,
        })
    }

    /// What the assembly noticed but did not refuse, for the user's stderr.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Names of the operators taking part, in start order.
    pub fn operator_names(&self) -> Vec<&'static str> {
        self.instances.iter().map(|(n, _)| *n).collect()
    }

    /// Pre-start every instance in order, then start every instance in
    /// order. If a start fails, the ones already started are stopped in
    /// reverse and the start error is returned; a failed pre-start starts
    /// nothing.
    pub fn start(&mut self) -> Result<(), OperatorError> {
        if self.started == 0 {
            for (_, i) in &mut self.instances {
                if let Some(s) = i.source() {
                    s.frozen(&self.dispatch);
                }
            }
            for (_, i) in &mut self.instances {
                i.pre_start()?;
            }
        }
        while self.started < self.instances.len() {
            if let Err(e) = self.instances[self.started].1.start() {
                // Their own stop errors are secondary to the start failure.
                let _ = self.stop();
                return Err(e);
            }
            self.started += 1;
        }
        Ok(())
    }

    /// Stop the started instances in reverse order; every one is stopped even
    /// if an earlier stop failed, and the first error is returned.
    pub fn stop(&mut self) -> Result<(), OperatorError> {
        let mut first = None;
        while self.started > 0 {
            self.started -= 1;
            if let Err(e) = self.instances[self.started].1.stop() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The instances and the dispatch, borrowed together so a source can
    /// feed the chains.
    pub fn parts(&mut self) -> (impl Iterator<Item = &mut dyn Source>, &mut Dispatch) {
        let sources = self.instances.iter_mut().filter_map(|(_, i)| i.source());
        (sources, &mut self.dispatch)
    }
}

/// Set the run-time annotations of `schema`'s data source: on the fields
/// it has, and for those it does not have yet as pending (claimed when an
/// operator adds them), unless `existing_only` (the freeze, after
/// [`check_annotations`]).
fn apply_annotations(annotations: &[Annotation], schema: &mut SchemaBuilder, existing_only: bool) {
    let name = schema.name().to_owned();
    for a in annotations.iter().filter(|a| a.source == name) {
        let Some(field) = &a.field else {
            schema
                .annotations_mut()
                .insert(a.key.clone(), a.value.clone());
            continue;
        };
        match schema.schema().field_by_name(field) {
            Some(id) => {
                schema
                    .field_mut(id)
                    .annotations
                    .insert(a.key.clone(), a.value.clone());
            }
            None if !existing_only => schema.annotate_later(
                field.clone(),
                [(a.key.clone(), a.value.clone())].into_iter().collect(),
            ),
            None => {}
        }
    }
}

/// Every run-time annotation names a data source of the run (referenced
/// or not: an operator may have consumed it) and a field it has.
fn check_annotations(setup: &Setup) -> Result<(), AnnotateError> {
    for a in &setup.annotations {
        let Some(s) = setup.sources.iter().find(|s| s.schema.name() == a.source) else {
            let known: Vec<&str> = setup.sources.iter().map(|s| s.schema.name()).collect();
            return Err(AnnotateError::NoSource {
                given: a.given(),
                source_name: a.source.clone(),
                known: known.join(", "),
            });
        };
        if let Some(field) = &a.field
            && s.schema.schema().field_by_name(field).is_none()
        {
            let known: Vec<&str> = s
                .schema
                .schema()
                .fields()
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            return Err(AnnotateError::NoField {
                given: a.given(),
                source_name: a.source.clone(),
                field: field.clone(),
                known: known.join(", "),
            });
        }
    }
    Ok(())
}

/// `gadget.yaml` annotations of fields that neither the gadget nor any
/// operator created: most likely a typo.
fn unclaimed_annotations(setup: &Setup) -> Vec<String> {
    let mut out = Vec::new();
    for s in &setup.sources {
        for field in s.schema.unclaimed_annotations() {
            let known: Vec<&str> = s
                .schema
                .schema()
                .fields()
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            out.push(format!(
                "gadget.yaml: data source {} has no field {field} (its fields: {})",
                s.schema.name(),
                known.join(", ")
            ));
        }
    }
    out
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // A pipeline dropped on an error path still stops what it started.
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::SourceKind;

    /// A handler that finds its second event slow.
    struct Slow(YieldFlag, u32);

    impl Handler for Slow {
        fn on_event(&mut self, _schema: &Schema, _event: &mut Event) -> Flow {
            self.1 += 1;
            if self.1 == 2 {
                self.0.request();
            }
            Flow::Continue
        }
    }

    struct SlowOp;

    impl Operator for SlowOp {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn priority(&self) -> Priority {
            0
        }
        fn instantiate(
            self: Box<Self>,
            setup: &mut Setup,
        ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
            let id = setup.add_source(crate::datasource::SchemaBuilder::new(
                "s",
                SourceKind::Single,
                0,
            ));
            let flag = setup.yield_flag();
            setup.subscribe(id, 0, "slow", Box::new(Slow(flag, 0)));
            Ok(None)
        }
    }

    /// Records its lifecycle calls in a shared log.
    struct Step(&'static str, Rc<RefCell<Vec<String>>>, Option<&'static str>);

    impl Instance for Step {
        fn pre_start(&mut self) -> Result<(), OperatorError> {
            self.1.borrow_mut().push(format!("pre {}", self.0));
            match self.2 {
                Some("pre") => Err(OperatorError::failed("step", "no")),
                _ => Ok(()),
            }
        }
        fn start(&mut self) -> Result<(), OperatorError> {
            self.1.borrow_mut().push(format!("start {}", self.0));
            Ok(())
        }
        fn stop(&mut self) -> Result<(), OperatorError> {
            self.1.borrow_mut().push(format!("stop {}", self.0));
            Ok(())
        }
    }

    struct StepOp(
        &'static str,
        Priority,
        Rc<RefCell<Vec<String>>>,
        Option<&'static str>,
    );

    impl Operator for StepOp {
        fn name(&self) -> &'static str {
            self.0
        }
        fn priority(&self) -> Priority {
            self.1
        }
        fn instantiate(
            self: Box<Self>,
            _setup: &mut Setup,
        ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
            Ok(Some(Box::new(Step(self.0, self.2, self.3))))
        }
    }

    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn every_instance_pre_starts_before_any_starts() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(StepOp("wasm", 1000, log.clone(), None)),
            Box::new(StepOp("ebpf", 0, log.clone(), None)),
        ];
        let mut p = Pipeline::build(ops, &crate::params::ParamValues::default()).unwrap();
        p.start().unwrap();
        p.stop().unwrap();
        assert_eq!(
            *log.borrow(),
            [
                "pre ebpf",
                "pre wasm",
                "start ebpf",
                "start wasm",
                "stop wasm",
                "stop ebpf"
            ]
        );
        // A failed pre-start starts and stops nothing.
        let log = Rc::new(RefCell::new(Vec::new()));
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(StepOp("a", 0, log.clone(), Some("pre"))),
            Box::new(StepOp("b", 1, log.clone(), None)),
        ];
        let mut p = Pipeline::build(ops, &crate::params::ParamValues::default()).unwrap();
        assert!(p.start().is_err());
        drop(p);
        assert_eq!(*log.borrow(), ["pre a"]);
    }

    #[test]
    fn unreferenced_sources_are_hidden_from_later_operators() {
        let mut setup = Setup::default();
        let a = setup.add_source(crate::datasource::SchemaBuilder::new(
            "a",
            SourceKind::Single,
            0,
        ));
        let b = setup.add_source(crate::datasource::SchemaBuilder::new(
            "b",
            SourceKind::Single,
            0,
        ));
        setup.unreference(a);
        assert!(!setup.is_referenced(a) && setup.is_referenced(b));
        assert_eq!(setup.source_ids().collect::<Vec<_>>(), [b]);
        assert_eq!(setup.all_source_ids().collect::<Vec<_>>(), [a, b]);
    }

    #[test]
    fn a_handler_asks_its_source_to_yield_once_per_request() {
        let mut p = Pipeline::build(
            vec![Box::new(SlowOp)],
            &crate::params::ParamValues::default(),
        )
        .unwrap();
        let id = SourceId(0);
        let mut ev = Event::new(p.dispatch.schema(id));
        p.dispatch.event(id, &mut ev);
        assert!(!p.dispatch.take_yield());
        p.dispatch.event(id, &mut ev);
        assert!(p.dispatch.take_yield());
        assert!(!p.dispatch.take_yield());
        p.dispatch.event(id, &mut ev);
        assert!(!p.dispatch.take_yield());
    }

    /// An operator that adds field `later` to every source and records
    /// what it read of the run-time annotations when it decided.
    struct Enricher(std::rc::Rc<std::cell::RefCell<Vec<String>>>);

    impl Operator for Enricher {
        fn name(&self) -> &'static str {
            "enricher"
        }
        fn priority(&self) -> Priority {
            5
        }
        fn instantiate(
            self: Box<Self>,
            setup: &mut Setup,
        ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
            for id in setup.all_source_ids() {
                let s = setup.schema_mut(id);
                let f = s.add_owned("later".into(), crate::datasource::FieldKind::U32, None)?;
                // Set by the operator; a run-time annotation still wins.
                s.field_mut(f)
                    .annotations
                    .insert("columns.width".into(), "3".into());
                let seen = format!(
                    "{:?} {:?}",
                    s.schema().annotations.get("metrics.collect"),
                    s.schema().field(f).annotation("columns.hidden")
                );
                self.0.borrow_mut().push(seen);
            }
            Ok(None)
        }
    }

    fn annotated(list: &str) -> (Result<Pipeline, OperatorError>, Vec<String>) {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut b = crate::datasource::SchemaBuilder::new("exec", SourceKind::Single, 4);
        b.add_raw("n".into(), crate::datasource::FieldKind::U32, 0, 4, None)
            .unwrap();
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(testing::Producer {
                priority: 0,
                schema: b,
                samples: Vec::new(),
            }),
            Box::new(Enricher(seen.clone())),
        ];
        let p = Pipeline::build_annotated(
            ops,
            &Default::default(),
            Annotation::parse_list(list).unwrap(),
        );
        let seen = seen.borrow().clone();
        (p, seen)
    }

    /// Run-time annotations reach an operator that decides after the data
    /// source was declared, on the fields it adds itself, and win over
    /// what operators set.
    #[test]
    fn run_time_annotations_are_known_before_later_operators_decide() {
        let (p, seen) = annotated(
            "exec:metrics.collect=true,exec.later:columns.hidden=true,exec.later:columns.width=9,exec.n:x=a:b",
        );
        assert_eq!(seen, [r#"Some("true") Some("true")"#]);
        let p = p.unwrap();
        let s = p.dispatch.schema(SourceId(0));
        let later = s.field(s.field_by_name("later").unwrap());
        assert_eq!(later.annotation("columns.width"), Some("9"));
        let n = s.field(s.field_by_name("n").unwrap());
        assert_eq!(n.annotation("x"), Some("a:b"));
        assert!(p.warnings().is_empty(), "{:?}", p.warnings());
    }

    /// Unknown data sources and fields are errors naming the known ones,
    /// fields operators add included.
    #[test]
    fn run_time_annotations_of_unknown_subjects_are_refused() {
        let err = |l| annotated(l).0.err().expect("refused").to_string();
        assert_eq!(
            err("nope:k=v"),
            "annotation \"nope:k=v\": no data source nope (the gadget's data sources: exec)"
        );
        assert_eq!(
            err("exec.nope:k=v"),
            "annotation \"exec.nope:k=v\": data source exec has no field nope (its fields: n, later)"
        );
    }
}
