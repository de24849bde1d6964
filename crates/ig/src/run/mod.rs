//! A gadget run as a library value: [`GadgetRun`].
//!
//! One assembly of a run for every user: `ig run` (one run on its main
//! thread, or one thread per instance of `ig run -f`), `ig image build`'s
//! checks ([`Assembly`]), the benchmarks and tests that push synthetic
//! events through the real chain ([`GadgetRun::pipeline`]), and programs
//! that embed ig (`docs/library.md`).
//!
//! A [`GadgetRun`] is a builder and is `Send`: it holds the image source
//! and its policies (as data: [`PullPolicy`], [`RegistryConfig`],
//! [`VerifyPolicy`]), parameter values (full or short names), factories of
//! extra operators, consumers of events and settings. The operators
//! themselves are made on the thread that runs them ([`GadgetRun::run`] on
//! the caller's, [`GadgetRun::spawn`] on a new one), because operators are
//! not `Send`. Events reach the caller through a callback on the run's
//! thread, with the schema and without a copy ([`EventSink`],
//! [`GadgetRun::on_event`]), or through a bounded channel usable from a
//! plain thread or async code ([`GadgetRun::event_channel`]), whose
//! overflow is counted, never waited for. A run stops through its
//! [`StopHandle`] (`Clone + Send + Sync`, from any thread), at its timeout,
//! when every source is done, or when its output or receiver goes away;
//! [`RunHandle::join`] says why, with the loss totals, or returns a typed
//! [`RunError`]. [`GadgetRun::describe`] lists parameters and data
//! sources without touching the kernel.
//!
//! Owns: reading the image (pull and trust policies, `policy`), the
//! assembly of the operator chain, the run's life. Does not own: signals
//! (a CLI's business: it calls [`StopHandle::stop`]), printing messages,
//! the event loop itself (`runner`). Nothing here is process-wide: runs
//! share a process without sharing state.

// A run is made once and fails once: its errors carry what a user needs
// (references, store errors) by value rather than boxed.
#![allow(
    clippy::result_large_err,
    reason = "errors of making a run, once per run, never on the hot path"
)]

mod assembly;
mod consumers;
pub mod manifest;
mod policy;
mod source;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::sched::{
    Applied as ReaderPriorityApplied, Governor as ReaderGovernor, ReaderPriority,
};
pub use assembly::{Assembly, AssemblyError};
pub use consumers::{EventReceiver, EventSink, RunEvent};
pub use policy::{
    PullError, PullPolicy, RegistryConfig, SignatureError, StoredSignatures, VerifyPolicy,
    fetch_signature, pull, stored_layers, stored_signatures,
};
#[cfg(feature = "signing")]
pub use policy::{load_public_keys, verify_stored_signatures};
pub use source::GadgetBytes;

pub use crate::bpf::loader::LoaderPrefetch;
pub use crate::datasource::{Event, FieldDef, FieldKind, Schema, ValueRef};
pub use crate::image::DEFAULT_STORE;
pub use crate::output::sink::Stdout;
pub use crate::output::{FieldsSpec, OutputMode, OutputSpec};
pub use crate::pipeline::{Annotation, Notice};
pub use crate::runner::{StopHandle, StopReason};

use crate::image::registry::Progress;
use crate::image::{ImageError, Reference};
use crate::metadata::{GadgetMetadata, MetadataError};
use crate::operators::ebpf::EbpfOptions;
use crate::operators::ebpfstats::GadgetRuns;
#[cfg(feature = "wasm")]
use crate::operators::wasm::StderrWriter;
/// Where a WASM guest's stderr goes (this build has no WASM runtime, so no
/// guest runs).
#[cfg(not(feature = "wasm"))]
pub type StderrWriter = Arc<dyn Fn(&[u8]) + Send + Sync>;
use crate::output::OutputOperator;
use crate::params::{ParamError, ParamSpec, ParamValues};
use crate::pipeline::{Operator, Pipeline};
use crate::runner::{LoopError, RunOptions};

/// Smallest ring buffer a run uses unless told otherwise
/// ([`GadgetRun::ringbuf_size`]).
const MIN_RINGBUF: u32 = 8 << 20;

/// Default of [`GadgetRun::flush_interval`].
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Why a run could not be made or did not end well.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The image reference is not one.
    #[error(transparent)]
    Reference(#[from] crate::image::reference::ReferenceError),
    /// The trust policy refuses the image.
    #[error("refusing to run {reference}")]
    Refused {
        /// The image.
        reference: Reference,
        /// Which rule.
        #[source]
        source: crate::image::trust::TrustError,
    },
    /// Its signature must be checked, and this build of the library cannot
    /// (its feature `signing` is off).
    #[error(
        "refusing to run {reference}: its signature must be verified because {why}, and this ig was built without signature checks (the library's feature `signing`); run it unverified with --verify-image=false"
    )]
    NoSigning {
        /// The image.
        reference: Reference,
        /// Why verification is on.
        why: String,
    },
    /// Its signature is missing or does not verify.
    #[error("refusing to run {reference} (verification is on because {why})")]
    Unverified {
        /// The image.
        reference: Reference,
        /// Why verification is on.
        why: String,
        /// What is wrong with its signatures.
        #[source]
        source: crate::image::trust::TrustError,
    },
    /// A public key file cannot be read.
    #[error("reading the public key file {}", path.display())]
    PublicKeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key, a rule or a signature is malformed.
    #[error(transparent)]
    Trust(#[from] crate::image::trust::TrustError),
    /// A stored signature cannot be read.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// A fetched signature could not be stored.
    #[error("storing the signature {reference}")]
    StoreSignature {
        /// The signature image.
        reference: Reference,
        /// Why.
        #[source]
        source: ImageError,
    },
    /// The store cannot say whether it has the image.
    #[error("looking for {reference} in the local store")]
    Lookup {
        /// The image.
        reference: Reference,
        /// Why.
        #[source]
        source: ImageError,
    },
    /// Pulling the image failed.
    #[error("pulling {reference}")]
    Pull {
        /// The image.
        reference: Reference,
        /// Why.
        #[source]
        source: PullError,
    },
    /// The image is not in the store, and the pull that `PullPolicy::Missing`
    /// tried failed: both are said, the store first (a typo in the name is
    /// the likelier cause than the registry).
    #[error("image {reference} is not in the local store {}, and pulling it failed", store.display())]
    NotPulled {
        /// The image.
        reference: Reference,
        /// The store.
        store: PathBuf,
        /// Why the registry could not give it.
        #[source]
        source: PullError,
    },
    /// The image is not in the store.
    #[error("cannot run {image}")]
    NotFound {
        /// The image, as given.
        image: String,
        /// What the store said.
        #[source]
        source: ImageError,
    },
    /// The image cannot be read from the store.
    #[error("reading image {reference}")]
    ReadImage {
        /// The image.
        reference: Reference,
        /// Why.
        #[source]
        source: ImageError,
    },
    /// The store.
    #[error(transparent)]
    Store(#[from] ImageError),
    /// An OCI archive cannot be read.
    #[error("reading the archive {}", path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `gadget.yaml` cannot be read.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The image's parts do not make a gadget.
    #[error("reading gadget {gadget}")]
    Gadget {
        /// The gadget.
        gadget: String,
        /// Why.
        #[source]
        source: AssemblyError,
    },
    /// A parameter is unknown or its value does not fit.
    #[error("parameter {name}")]
    Param {
        /// The parameter as named.
        name: String,
        /// Why.
        #[source]
        source: ParamError,
    },
    /// The custom parameters' patches of `gadget.yaml` do not apply.
    #[error("applying the gadget's params.custom")]
    Custom(#[source] MetadataError),
    /// An operator `gadget.yaml` turns on refuses its configuration.
    #[error("configuring the operators of {file}")]
    Configure {
        /// How `gadget.yaml` is named.
        file: String,
        /// Why.
        #[source]
        source: crate::operators::ConfigError,
    },
    /// Loading eBPF needs privileges this process lacks.
    #[error(transparent)]
    Privileges(#[from] crate::bpf::privileges::MissingPrivileges),
    /// The run failed: building its chain, loading, or while running.
    #[error("running gadget {gadget}")]
    Run {
        /// The gadget.
        gadget: String,
        /// Why.
        #[source]
        source: LoopError,
    },
    /// The stop handle (an eventfd) could not be made.
    #[error("creating the run's stop handle")]
    StopHandle(#[source] std::io::Error),
    /// The run's thread could not be started.
    #[error("starting the run's thread")]
    Thread(#[source] std::io::Error),
    /// The run's thread panicked (a bug).
    #[error("the run's thread panicked")]
    Panicked,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// Why it ended.
    pub reason: StopReason,
    /// What was lost on the way.
    pub losses: Losses,
}

/// Events lost during a run, by where they were lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// In the kernel: its ring buffers were full.
    pub kernel: u64,
    /// Formatted, but the reader of the printed output did not keep up.
    pub output: u64,
    /// Refused to a WASM guest holding too much.
    pub guest: u64,
    /// The consumer's channel was full.
    pub consumer: u64,
}

impl Losses {
    /// Every loss.
    pub fn total(&self) -> u64 {
        self.kernel + self.output + self.guest + self.consumer
    }

    fn add(&mut self, n: &Notice) {
        match n {
            Notice::Lost { count, .. } => self.kernel += count,
            Notice::OutputDropped { count } => self.output += count,
            Notice::GuestRefused { count, .. } => self.guest += count,
            Notice::ConsumerLagged { count } => self.consumer += count,
            Notice::Warning(_) => {}
        }
    }
}

/// What a gadget offers, known without the kernel
/// ([`GadgetRun::describe`]).
#[derive(Clone, Debug)]
pub struct GadgetInfo {
    /// The gadget as named in messages (the image reference, or its name).
    pub name: String,
    /// `gadget.yaml`, as written.
    pub metadata: GadgetMetadata,
    /// `gadget.yaml`'s bytes, as stored in the image (what a daemon
    /// sends its clients).
    pub gadget_yaml: Vec<u8>,
    /// Every parameter of the run, the image's and the operators'.
    pub params: Vec<ParamSpec>,
    /// The data sources the run produces, with their fields.
    pub sources: Vec<Arc<Schema>>,
    /// What the assembly noticed but did not refuse.
    pub warnings: Vec<String>,
}

/// How and where a run prints its events with ig's printers.
pub struct PrintOptions {
    /// The format: one for every data source, one per named data source
    /// (the others in their `cli.default-output-mode`), or each in its
    /// default ([`OutputSpec`]).
    pub mode: OutputSpec,
    /// Fields to print instead of the defaults.
    pub fields: Option<FieldsSpec>,
    /// The output is a terminal: toppers may redraw the screen.
    pub terminal: bool,
    /// Label every event with this run's name, as when several runs share
    /// the output (`ig run -f`): `(name, width)`, `width` the widest name
    /// of those runs (the table's INSTANCE column).
    pub instance: Option<(String, usize)>,
    /// `fields` were given for several runs sharing the output: a section
    /// for a data source this run lacks (`ds:a,b`) is another run's, not
    /// an error.
    pub fields_shared: bool,
    /// `mode` was given for several runs sharing the output: a data
    /// source it names that this run lacks (`ds:json`) is another run's,
    /// not an error.
    pub mode_shared: bool,
    /// Where.
    pub target: PrintTarget,
}

impl PrintOptions {
    /// `mode` (an [`OutputMode`] for every data source, or an
    /// [`OutputSpec`]) to `target`, default fields, not a terminal.
    pub fn new(mode: impl Into<OutputSpec>, target: PrintTarget) -> Self {
        Self {
            mode_shared: false,
            mode: mode.into(),
            fields: None,
            terminal: false,
            instance: None,
            fields_shared: false,
            target,
        }
    }
}

/// Where printed events go.
pub enum PrintTarget {
    /// Any writer, written as the printers fill their buffers and on the
    /// flush timer (it may block the run: a file, a `Vec`).
    Writer(Box<dyn Write + Send>),
    /// ig's non-blocking stdout (`output::sink::stdout`), which may be
    /// shared by several runs.
    Stdout(Stdout),
}

/// Told about losses and warnings, on the run's thread.
type NoticeFn = Box<dyn FnMut(&Notice) + Send>;

/// Makes one extra operator per assembly of the run, on the run's thread.
type OperatorFactory = Box<dyn FnMut() -> Box<dyn Operator> + Send>;

/// A gadget run, not yet started: see the module doc.
pub struct GadgetRun {
    source: source::ImageSource,
    pull: PullPolicy,
    registry: RegistryConfig,
    verify: VerifyPolicy,
    progress: Option<Box<dyn Progress + Send>>,
    params: Vec<(String, String)>,
    extra: Vec<OperatorFactory>,
    consumers: Vec<consumers::Consumer>,
    notice: Option<NoticeFn>,
    print: Option<PrintOptions>,
    timeout: Option<Duration>,
    flush_interval: Duration,
    reader_priority: ReaderPriority,
    ringbuf_size: Option<u32>,
    stop: Option<StopHandle>,
    prefetch: Option<LoaderPrefetch>,
    gadget_runs: Option<GadgetRuns>,
    guest_stderr: Option<StderrWriter>,
    annotations: Vec<Annotation>,
    metrics: Option<crate::operators::otel_metrics::Registry>,
    resolved: Option<source::Resolved>,
    /// The resolved image passed the trust policy as it is now (set by
    /// [`GadgetRun::check_trust`], cleared when the policy changes).
    trusted: bool,
}

impl GadgetRun {
    fn with_source(source: source::ImageSource) -> Self {
        Self {
            source,
            pull: PullPolicy::default(),
            registry: RegistryConfig::default(),
            verify: VerifyPolicy::default(),
            progress: None,
            params: Vec::new(),
            extra: Vec::new(),
            consumers: Vec::new(),
            notice: None,
            print: None,
            timeout: None,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            reader_priority: ReaderPriority::Inherit,
            ringbuf_size: None,
            stop: None,
            prefetch: None,
            gadget_runs: None,
            guest_stderr: None,
            annotations: Vec::new(),
            metrics: None,
            resolved: None,
            trusted: false,
        }
    }

    /// The image `image` (a name such as `trace_exec`, a full reference or
    /// a digest) of the OCI store at `store`, pulled as
    /// [`GadgetRun::pull`] says and checked as [`GadgetRun::verify`] says.
    pub fn from_store(store: impl Into<PathBuf>, image: impl Into<String>) -> Self {
        Self::with_source(source::ImageSource::Store {
            store: store.into(),
            image: image.into(),
        })
    }

    /// A gadget from its parts in memory: no store, no signature.
    pub fn from_bytes(bytes: GadgetBytes) -> Self {
        Self::with_source(source::ImageSource::Bytes(bytes))
    }

    /// The image `image` of the OCI layout tar at `path` (`ig image
    /// export`, `skopeo copy … oci-archive:`); `None`: its only image. The
    /// archive is read into a private store of its own, so it is checked
    /// as an import is; its images count as imported for
    /// [`VerifyPolicy::verify`].
    pub fn from_archive(path: impl Into<PathBuf>, image: Option<String>) -> Self {
        Self::with_source(source::ImageSource::Archive {
            path: path.into(),
            image,
            store: None,
        })
    }

    /// When to download the image (default: when it is missing).
    #[must_use]
    pub fn pull(mut self, policy: PullPolicy) -> Self {
        self.pull = policy;
        self
    }

    /// How registries are reached.
    #[must_use]
    pub fn registry(mut self, config: RegistryConfig) -> Self {
        self.registry = config;
        self
    }

    /// Which images may run, and how their signatures are checked.
    #[must_use]
    pub fn verify(mut self, policy: VerifyPolicy) -> Self {
        self.verify = policy;
        self.trusted = false;
        self
    }

    /// Told about the blobs of a pull as they move.
    #[must_use]
    pub fn pull_progress(mut self, progress: Box<dyn Progress + Send>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Set parameter `name` (its full name, `operator.oci.ebpf.pid`, or
    /// its key, `pid`) to `value`, checked when the run is assembled.
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Set several parameters ([`GadgetRun::param`]).
    #[must_use]
    pub fn params<K: Into<String>, V: Into<String>>(
        mut self,
        values: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.params
            .extend(values.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Add an operator of the caller's to the chain, made by `factory` on
    /// the run's thread (operators are not `Send`) each time the run is
    /// assembled. Its parameters are the run's, its priority places it.
    #[must_use]
    pub fn operator(mut self, factory: impl FnMut() -> Box<dyn Operator> + Send + 'static) -> Self {
        self.extra.push(Box::new(factory));
        self
    }

    /// Hand every event to `sink` on the run's thread, after the filters,
    /// with its schema and without a copy.
    #[must_use]
    pub fn sink(mut self, sink: impl EventSink) -> Self {
        self.consumers
            .push(consumers::Consumer::Sink(Box::new(sink)));
        self
    }

    /// Call `f` with every event (and every element of a snapshot) on the
    /// run's thread, after the filters, with its schema and without a copy.
    #[must_use]
    pub fn on_event(self, f: impl FnMut(&Schema, &Event) + Send + 'static) -> Self {
        self.sink(consumers::Callback(f))
    }

    /// Also send everything to a channel of `capacity` entries and return
    /// its receiver, for a plain thread ([`EventReceiver::recv_blocking`])
    /// or async code ([`EventReceiver::recv`]). Each event is copied into
    /// the channel; when it is full, events are dropped and counted
    /// ([`Notice::ConsumerLagged`]), never waited for. Dropping the
    /// receiver ends the run ([`StopReason::OutputClosed`]).
    pub fn event_channel(&mut self, capacity: usize) -> EventReceiver {
        let (tx, rx) = consumers::channel(capacity);
        self.consumers.push(consumers::Consumer::Channel(tx));
        rx
    }

    /// Call `f` on the run's thread with losses (summed, at most once a
    /// second per kind) and warnings. Without it, warnings are logged.
    #[must_use]
    pub fn on_notice(mut self, f: impl FnMut(&Notice) + Send + 'static) -> Self {
        self.notice = Some(Box::new(f));
        self
    }

    /// Print events with ig's printers.
    #[must_use]
    pub fn print(mut self, options: PrintOptions) -> Self {
        self.print = Some(options);
        self
    }

    /// End the run this long after it started (after loading).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The longest an event waits before it is delivered: ring buffers
    /// wake the run when a quarter full, else are read on this timer, as
    /// printers are flushed. Zero: wake on every event.
    #[must_use]
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// How the thread that runs the event loop (reads the ring buffers)
    /// is scheduled; see [`ReaderPriority`]. Default: inherited.
    #[must_use]
    pub fn reader_priority(mut self, p: ReaderPriority) -> Self {
        self.reader_priority = p;
        self
    }

    /// Size of each ring buffer in bytes (a power of two, at least 4096).
    /// Default: what the gadget declares, but at least 8 MiB.
    #[must_use]
    pub fn ringbuf_size(mut self, bytes: u32) -> Self {
        self.ringbuf_size = Some(bytes);
        self
    }

    /// Stop with `handle` (which may be shared with other runs) instead
    /// of a handle of the run's own.
    #[must_use]
    pub fn stop_with(mut self, handle: StopHandle) -> Self {
        self.stop = Some(handle);
        self
    }

    /// The handle that stops this run (made now if none was given).
    pub fn stop_handle(&mut self) -> Result<StopHandle, RunError> {
        if self.stop.is_none() {
            self.stop = Some(StopHandle::new().map_err(RunError::StopHandle)?);
        }
        Ok(self.stop.clone().expect("just set"))
    }

    /// Use a loader whose kernel BTF is being parsed ahead of time.
    #[must_use]
    pub fn loader_prefetch(mut self, prefetch: LoaderPrefetch) -> Self {
        self.prefetch = Some(prefetch);
        self
    }

    /// How the eBPF statistics operator recognizes `ig run` processes.
    #[must_use]
    pub fn gadget_runs(mut self, runs: GadgetRuns) -> Self {
        self.gadget_runs = Some(runs);
        self
    }

    /// Where a WASM guest's stderr goes (default: logged at info).
    #[must_use]
    pub fn guest_stderr(mut self, writer: StderrWriter) -> Self {
        self.guest_stderr = Some(writer);
        self
    }

    /// Annotate data sources and fields as if `gadget.yaml` had these
    /// annotations (`ig run --annotate`; parse them with
    /// [`Annotation::parse_list`]): set before the operators that read
    /// them decide, the later ones winning, and checked against the run's
    /// final data sources, whose unknown names fail the run
    /// ([`crate::pipeline::annotate`]).
    #[must_use]
    pub fn annotate(mut self, annotations: impl IntoIterator<Item = Annotation>) -> Self {
        self.annotations.extend(annotations);
        self
    }

    /// Export the metrics of data sources annotated `metrics.collect` on
    /// `registry` (which the caller serves: `Registry::serve`), with ig's
    /// own when the registry was made with them. Several runs may share
    /// one registry.
    #[must_use]
    pub fn metrics(mut self, registry: crate::operators::otel_metrics::Registry) -> Self {
        self.metrics = Some(registry);
        self
    }

    /// The gadget as messages name it: the image as given until it is
    /// read, then its full reference (or its name for bytes).
    pub fn name(&self) -> String {
        match &self.resolved {
            Some(r) => r.name.clone(),
            None => self.source.name(),
        }
    }

    /// Read the image (pulling it as the policy says) once; later calls
    /// reuse it.
    fn resolve(&mut self) -> Result<&source::Resolved, RunError> {
        if self.resolved.is_none() {
            let progress: &mut dyn Progress = match &mut self.progress {
                Some(p) => p.as_mut(),
                None => &mut crate::image::registry::NoProgress,
            };
            let r = self.source.resolve(
                self.pull,
                &self.registry,
                &self.verify.allowed_gadgets,
                progress,
            )?;
            self.resolved = Some(r);
        }
        Ok(self.resolved.as_ref().expect("just set"))
    }

    /// Reads (or pulls) the image and, for an image of a store, applies
    /// the trust policy (allowed gadgets, signature) once: before any of
    /// its content (`gadget.yaml`, the eBPF object, the WASM module) is
    /// parsed, since that content is untrusted until it is verified.
    /// [`GadgetRun::param_specs`], [`GadgetRun::describe_trusted`] and
    /// every run call it.
    pub fn check_trust(&mut self) -> Result<(), RunError> {
        self.resolve()?;
        if self.trusted {
            return Ok(());
        }
        if let Some(stored) = self.resolved.as_ref().and_then(|r| r.stored.as_ref()) {
            policy::check_before_load(&self.verify, self.pull, &self.registry, stored)?;
        }
        self.trusted = true;
        Ok(())
    }

    /// The image's operators, made on this thread.
    fn assemble(&mut self) -> Result<(Assembly, Vec<Box<dyn Operator>>), RunError> {
        let seams = crate::operators::Seams {
            gadget_runs: self.gadget_runs.clone().unwrap_or_default(),
            metrics: self.metrics.clone(),
            ..crate::operators::Seams::default()
        };
        let stderr = self.guest_stderr.clone();
        let r = self.resolve()?;
        let metadata = GadgetMetadata::parse(&r.gadget_yaml, &r.file)?;
        #[cfg(not(feature = "wasm"))]
        let wasm: Option<Box<dyn Operator>> = match (&r.wasm, stderr) {
            (Some(_), _) => {
                return Err(RunError::Gadget {
                    gadget: r.name.clone(),
                    source: AssemblyError::NoWasmRuntime,
                });
            }
            (None, _) => None,
        };
        #[cfg(feature = "wasm")]
        let wasm = r.wasm.clone().map(|w| {
            Box::new(
                crate::operators::wasm::WasmOperator::new(
                    r.name.clone(),
                    w,
                    &metadata,
                    r.wasm_cache.clone(),
                    stderr.unwrap_or_else(default_guest_stderr),
                )
                .with_seams(seams.gadget.clone(), seams.mntns_filter.clone()),
            ) as Box<dyn Operator>
        });
        let gadget = r.name.clone();
        let assembly = Assembly::new(metadata, r.file.clone(), r.object.clone(), wasm, seams)
            .map_err(|source| RunError::Gadget { gadget, source })?;
        // `ig image build` showed these; a run says them only in debug.
        for w in &assembly.warnings {
            log::debug!("{w}");
        }
        let extra: Vec<Box<dyn Operator>> = self.extra.iter_mut().map(|f| f()).collect();
        Ok((assembly, extra))
    }

    /// Every parameter of the run (the image's and every operator's),
    /// with `paramDefaults` applied. Reads (or pulls) the image and
    /// applies the trust policy before parsing it (what the parameters are
    /// comes from `gadget.yaml` and the eBPF object); no kernel.
    pub fn param_specs(&mut self) -> Result<Vec<ParamSpec>, RunError> {
        self.check_trust()?;
        let (assembly, extra) = self.assemble()?;
        let mut specs = assembly.specs;
        specs.extend(extra.iter().flat_map(|o| o.params()));
        Ok(specs)
    }

    /// The run's parameters and data sources, with the values given so
    /// far applied: the operator chain is built as for a run, but nothing
    /// is loaded and the image's signature is not checked. Needs to read
    /// the store (and, as the pull policy says, the network); no
    /// privileges.
    pub fn describe(&mut self) -> Result<GadgetInfo, RunError> {
        let chain = self.chain(Purpose::Describe)?;
        let name = chain.name.clone();
        let params = chain.specs.clone();
        let metadata = chain.metadata.clone();
        let warnings = chain.warnings.clone();
        let pipeline = chain.build()?;
        let gadget_yaml = self
            .resolved
            .as_ref()
            .map(|r| r.gadget_yaml.clone())
            .unwrap_or_default();
        Ok(GadgetInfo {
            name,
            metadata,
            gadget_yaml,
            params,
            sources: pipeline
                .dispatch
                .schemas()
                .map(|(_, s)| s.clone())
                .collect(),
            warnings: warnings
                .into_iter()
                .chain(pipeline.warnings().iter().cloned())
                .collect(),
        })
    }

    /// [`GadgetRun::describe`] of an image about to run: the trust
    /// policy first ([`GadgetRun::check_trust`]), so that nothing of an
    /// image it refuses is parsed.
    pub fn describe_trusted(&mut self) -> Result<GadgetInfo, RunError> {
        self.check_trust()?;
        self.describe()
    }

    /// The operator chain of this run, built (schemas frozen, handlers
    /// subscribed) but not started: nothing is loaded, no signature is
    /// checked. For benchmarks and tests that push events through
    /// [`Pipeline::dispatch`] by hand.
    pub fn pipeline(mut self) -> Result<Pipeline, RunError> {
        self.chain(Purpose::Pipeline)?.build()
    }

    /// Every check [`GadgetRun::prepare`] makes (the image read or pulled,
    /// the trust policy, the parameters, privileges), on this thread,
    /// without making the run: to refuse a bad instance before any other
    /// is loaded. The image stays read for the run.
    pub fn check(&mut self) -> Result<(), RunError> {
        self.chain(Purpose::Check).map(drop)
    }

    /// Check the image against the trust policy, resolve the parameters,
    /// check privileges and make the operators, on this thread: every
    /// check before the kernel is involved. [`PreparedRun::run`] then
    /// builds the chain, loads and runs it.
    pub fn prepare(mut self) -> Result<PreparedRun, RunError> {
        let stop = self.stop_handle()?;
        let chain = self.chain(Purpose::Run)?;
        Ok(PreparedRun {
            chain,
            stop,
            metrics: self.metrics.clone(),
            notice: self.notice,
            timeout: self.timeout,
            flush_interval: self.flush_interval,
            reader_priority: self.reader_priority,
        })
    }

    /// Run on this thread until the run ends: [`GadgetRun::prepare`],
    /// then [`PreparedRun::run`].
    pub fn run(self) -> Result<RunSummary, RunError> {
        self.prepare()?.run()
    }

    /// Run on a thread of its own; [`RunHandle::join`] says how it ended.
    pub fn spawn(mut self) -> Result<RunHandle, RunError> {
        let stop = self.stop_handle()?;
        let thread = std::thread::Builder::new()
            .name("ig-run".into())
            .spawn(move || self.run())
            .map_err(RunError::Thread)?;
        Ok(RunHandle { stop, thread })
    }

    /// The operators of the run with their parameter values; for a run,
    /// after the trust and privilege checks. Consumers and printing are
    /// taken out of the builder, except to describe it.
    fn chain(&mut self, purpose: Purpose) -> Result<Chain, RunError> {
        let for_run = matches!(purpose, Purpose::Run | Purpose::Check);
        let consume = matches!(purpose, Purpose::Run | Purpose::Pipeline);
        if for_run {
            // Before anything else, and so before anything reaches the
            // kernel.
            self.check_trust()?;
        }
        let (assembly, extra) = self.assemble()?;
        let Assembly {
            metadata,
            file,
            mut ebpf,
            others,
            seams,
            has_wasm,
            mut specs,
            warnings,
            ..
        } = assembly;
        specs.extend(extra.iter().flat_map(|o| o.params()));
        let values = ParamValues::resolve(&specs, &self.params)
            .map_err(|(name, source)| RunError::Param { name, source })?;
        // gadget.yaml as the custom parameters' values patch it, and the
        // operators it turns on then.
        let patched = metadata
            .patched(&file, &|k| values.raw(k).map(str::to_owned))
            .map_err(RunError::Custom)?;
        let configured = crate::operators::from_config(&patched, &seams).map_err(|source| {
            RunError::Configure {
                file: file.clone(),
                source,
            }
        })?;
        // A gadget of operators that only read /proc (top_process) runs
        // without privileges; eBPF programs and the kernel's eBPF
        // statistics need them.
        if for_run
            && (ebpf.is_some()
                || configured
                    .iter()
                    .any(|o| o.name() == crate::operators::ebpfstats::NAME))
        {
            crate::bpf::privileges::check()?;
        }
        // Ring buffers: what the caller asked for, else what the gadget
        // declares but at least MIN_RINGBUF. Gadgets written for upstream
        // declare 256 KiB, which an open storm (700k events/s of 344
        // bytes) fills in about a millisecond; batched wake-ups need room
        // to batch.
        let mut ops: Vec<Box<dyn Operator>> = Vec::new();
        if let Some(ebpf) = ebpf.as_mut() {
            let ringbuf_size = self.ringbuf_size.unwrap_or_else(|| {
                ebpf.declared_ringbuf_size()
                    .unwrap_or(MIN_RINGBUF)
                    .max(MIN_RINGBUF)
            });
            // Wake the reader when a quarter of the buffer is pending:
            // three quarters stay free for the bursts that arrive until it
            // drains.
            let wakeup_threshold =
                (!self.flush_interval.is_zero()).then_some(u64::from(ringbuf_size / 4));
            ebpf.set_options(EbpfOptions {
                wakeup_threshold,
                ringbuf_size: Some(ringbuf_size),
                mntns_filter: Some(seams.mntns_filter.clone()),
                shared: has_wasm.then(|| seams.gadget.clone()),
                prefetch: self.prefetch.clone(),
                targets: Some(seams.targets.clone()),
            });
            ebpf.set_metadata(annotated(&patched, &self.annotations));
        }
        ops.extend(ebpf.map(|e| Box::new(e) as Box<dyn Operator>));
        ops.extend(configured);
        ops.extend(others);
        ops.extend(extra);
        let mut consumers = consumers::Attached::default();
        let mut output = None;
        let mut output_dropped = None;
        if consume {
            consumers = consumers::attach(std::mem::take(&mut self.consumers), &mut ops);
        }
        if let Some(print) = self.print.take_if(|_| consume) {
            let writer = match print.target {
                PrintTarget::Writer(w) => crate::output::shared(w),
                PrintTarget::Stdout(s) => {
                    output = Some(s.clone());
                    crate::output::sink::shared_stdout(s)
                }
            };
            output_dropped = Some(writer.dropped());
            ops.push(Box::new(
                OutputOperator::new(print.mode, writer)
                    .spec_shared(print.mode_shared)
                    .on_terminal(print.terminal)
                    .with_fields(print.fields, print.fields_shared)
                    .with_instance(print.instance)
                    .with_boot_offset(crate::operators::formatters::boot_offset_ns()),
            ));
        }
        let r = self.resolved.as_ref().expect("resolved by assemble");
        Ok(Chain {
            annotations: self.annotations.clone(),
            gadget: r.given.clone(),
            name: r.name.clone(),
            metadata,
            specs,
            warnings,
            ops,
            values,
            consumers,
            output,
            output_dropped,
        })
    }
}

/// `metadata` with the run-time annotations added, as the eBPF operator
/// reads `gadget.yaml`: it builds its schemas from them before declaring
/// its data sources (`ebpf.rest.*`, stack fields), so they must be there
/// already. `Setup` applies them again to every data source.
fn annotated(metadata: &GadgetMetadata, annotations: &[Annotation]) -> GadgetMetadata {
    let mut m = metadata.clone();
    for a in annotations {
        let ds = m.datasources.entry(a.source.clone()).or_default();
        let target = match &a.field {
            Some(f) => &mut ds.fields.entry(f.clone()).or_default().annotations,
            None => &mut ds.annotations,
        };
        target.insert(a.key.clone(), a.value.clone());
    }
    m
}

/// What a chain is made for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// To list its parameters and sources: no consumers, no output.
    Describe,
    /// To push events through by hand: no checks.
    Pipeline,
    /// To check everything a run checks, without making it.
    Check,
    /// To run.
    Run,
}

/// The operators of a run and what it needs to run them.
struct Chain {
    /// Given at run time, applied while the chain is built.
    annotations: Vec<Annotation>,
    /// The gadget as the caller named it.
    gadget: String,
    /// Its full name.
    name: String,
    metadata: GadgetMetadata,
    specs: Vec<ParamSpec>,
    warnings: Vec<String>,
    ops: Vec<Box<dyn Operator>>,
    values: ParamValues,
    consumers: consumers::Attached,
    output: Option<Stdout>,
    output_dropped: Option<crate::output::DroppedRecords>,
}

impl Chain {
    fn build(self) -> Result<Pipeline, RunError> {
        let gadget = self.gadget;
        let pipeline = Pipeline::build_annotated(self.ops, &self.values, self.annotations)
            .map_err(|e| RunError::Run {
                gadget: gadget.clone(),
                source: e.into(),
            })?;
        self.consumers.built(&pipeline);
        Ok(pipeline)
    }
}

/// A run whose checks passed and whose operators are made, on the thread
/// that will run it ([`GadgetRun::prepare`]). Not `Send`.
pub struct PreparedRun {
    chain: Chain,
    stop: StopHandle,
    metrics: Option<crate::operators::otel_metrics::Registry>,
    notice: Option<NoticeFn>,
    timeout: Option<Duration>,
    flush_interval: Duration,
    reader_priority: ReaderPriority,
}

impl PreparedRun {
    /// The handle that stops this run.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Build the chain, load the gadget, run until the run ends, stop
    /// every operator: nothing stays loaded.
    pub fn run(self) -> Result<RunSummary, RunError> {
        let Self {
            chain,
            stop,
            metrics,
            mut notice,
            timeout,
            flush_interval,
            reader_priority,
        } = self;
        // This thread runs the event loop: the reader.
        let applied = reader_priority.apply();
        match &applied {
            crate::sched::Applied::Inherited => {}
            crate::sched::Applied::Realtime => log::debug!("reader thread: SCHED_RR priority 1"),
            crate::sched::Applied::Declined(why) => {
                log::debug!("reader thread: inherited priority ({why})");
            }
        }
        let gadget = chain.gadget.clone();
        let name = chain.name.clone();
        let fail = |e: LoopError| RunError::Run {
            gadget: gadget.clone(),
            source: e,
        };
        let consumers = chain.consumers.clone();
        let opts = RunOptions {
            timeout,
            flush_interval,
            output: chain.output.clone(),
            output_dropped: chain.output_dropped.clone(),
            consumer_lagged: consumers.lagged(),
            reader: ReaderGovernor::for_applied(&applied),
        };
        let losses = std::cell::Cell::new(Losses::default());
        let mut tell = |n: Notice| {
            let mut l = losses.get();
            l.add(&n);
            losses.set(l);
            consumers.notice(&n);
            if let Some(m) = &metrics {
                m.notice(&n);
            }
            match &mut notice {
                Some(f) => f(&n),
                None => {
                    if let Notice::Warning(w) = &n {
                        log::warn!("{w}");
                    }
                }
            }
        };
        let mut pipeline = chain.build()?;
        log::debug!("operators: {}", pipeline.operator_names().join(", "));
        for w in pipeline.warnings().to_vec() {
            tell(Notice::Warning(w));
        }
        // Annotations that would switch on an operator ig does not have,
        // said once per run rather than silently ignored.
        let unknown: Vec<String> = pipeline
            .dispatch
            .schemas()
            .flat_map(|(_, schema)| crate::operators::annotations::unknown(schema))
            .collect();
        for w in unknown {
            tell(Notice::Warning(w));
        }
        if stop.is_stopped() {
            // Stopped while it was being assembled: nothing was loaded.
            return Ok(RunSummary {
                reason: StopReason::Stopped,
                losses: losses.get(),
            });
        }
        pipeline.start().map_err(|e| fail(e.into()))?;
        log::debug!("{name} started");
        consumers.started(&pipeline);
        let reason = crate::runner::run(&mut pipeline, &stop, &opts, &mut tell).map_err(fail)?;
        Ok(RunSummary {
            reason,
            losses: losses.get(),
        })
    }
}

/// A run on a thread of its own ([`GadgetRun::spawn`]).
pub struct RunHandle {
    stop: StopHandle,
    thread: std::thread::JoinHandle<Result<RunSummary, RunError>>,
}

impl RunHandle {
    /// Ask the run to end (it drains, stops its operators and ends).
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// A handle that stops the run from anywhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Whether the run has ended (`join` will not wait).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Wait for the run to end: why it ended and what it lost, or why it
    /// failed.
    pub fn join(self) -> Result<RunSummary, RunError> {
        self.thread.join().unwrap_or(Err(RunError::Panicked))
    }
}

/// A guest's stderr when the caller gave no writer: each write logged.
#[cfg(feature = "wasm")]
fn default_guest_stderr() -> StderrWriter {
    Arc::new(|b: &[u8]| {
        log::info!(target: "ig::guest", "{}", String::from_utf8_lossy(b).trim_end());
    })
}

/// `e` and its sources, `: `-separated, as one line: how a program
/// that embeds ig can show a [`RunError`] whole.
///
/// A cause whose text the error before it already contains is left out:
/// errors that print their source in their own message and also return
/// it from `source()` (`writing the archive: No space left on device (os
/// error 28)`, then the `io::Error` itself) would say it twice.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut s = last.clone();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !last.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        last = text;
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cause already in the message before it is said once.
    #[test]
    fn error_chain_says_a_repeated_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("writing the archive to /dev/full: {0}")]
        struct Writing(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("exporting")]
        struct Exporting(#[source] Writing);
        let e = Exporting(Writing(std::io::Error::from_raw_os_error(28)));
        assert_eq!(
            error_chain(&e),
            "exporting: writing the archive to /dev/full: No space left on device (os error 28)"
        );
        // A cause not in the message before it is said.
        #[derive(Debug, thiserror::Error)]
        #[error("writing")]
        struct Plain(#[source] std::io::Error);
        let e = Plain(std::io::Error::from_raw_os_error(28));
        assert_eq!(
            error_chain(&e),
            "writing: No space left on device (os error 28)"
        );
    }

    /// Without the `wasm` feature, an image with a WASM module is refused
    /// by name, before anything runs (`cargo test -p ig
    /// --no-default-features`); with it, the module gets as far as the
    /// runtime, which refuses these bytes for what they are.
    #[test]
    fn a_wasm_module_needs_the_wasm_feature() {
        let mut run = GadgetRun::from_bytes(GadgetBytes {
            object: None,
            gadget_yaml: b"name: guest-only\n".to_vec(),
            wasm: Some(b"\0asm\x01\0\0\0".to_vec()),
        });
        let e = error_chain(&run.describe().unwrap_err());
        let no_runtime = e.contains("built without a WASM runtime");
        assert_eq!(no_runtime, cfg!(not(feature = "wasm")), "{e}");
    }

    /// Without the `registry` feature a pull is refused by name, before
    /// any network; with it, the pull is tried (here: a registry name that
    /// cannot resolve).
    #[test]
    fn a_pull_needs_the_registry_feature() {
        let dir = tempfile::tempdir().unwrap();
        let reference: Reference = "registry.invalid/gadget:1".parse().unwrap();
        let config = RegistryConfig {
            timeout: Some(Duration::from_secs(2)),
            ..RegistryConfig::default()
        };
        let e = policy::pull(
            &dir.path().join("store"),
            &reference,
            crate::image::registry::Platforms::Host,
            &config,
            &mut crate::image::registry::NoProgress,
        )
        .unwrap_err();
        assert_eq!(
            matches!(e, PullError::NoRegistryClient),
            cfg!(not(feature = "registry")),
            "{e}"
        );
    }

    /// Without the `signing` feature an image that must be verified is
    /// refused by name; with it, the check goes on.
    #[test]
    fn verification_needs_the_signing_feature() {
        let dir = tempfile::tempdir().unwrap();
        crate::image::Store::open(dir.path().join("store")).unwrap();
        let image = policy::StoredImage {
            store: dir.path().join("store"),
            reference: "example.com/gadget:1".parse().unwrap(),
            index_digest: crate::image::Digest::sha256_of(b"index"),
            manifest_digest: crate::image::Digest::sha256_of(b"manifest"),
            origin: Some(crate::image::trust::Origin::Pulled),
        };
        let policy = VerifyPolicy {
            verify: Some(true),
            ..VerifyPolicy::default()
        };
        let e = policy::check_before_load(
            &policy,
            PullPolicy::Never,
            &RegistryConfig::default(),
            &image,
        )
        .unwrap_err();
        // With it, upstream's built-in key is the default: the check runs
        // and finds no signature.
        let no_signing = matches!(e, RunError::NoSigning { .. });
        let unsigned = matches!(
            e,
            RunError::Unverified {
                source: crate::image::trust::TrustError::Unsigned { .. },
                ..
            }
        );
        assert!(no_signing || unsigned, "{}", error_chain(&e));
        assert_eq!(
            no_signing,
            cfg!(not(feature = "signing")),
            "{}",
            error_chain(&e)
        );
    }
}
