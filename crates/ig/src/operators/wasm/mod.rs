//! The WASM operator: runs the module of a gadget image
//! (`application/vnd.gadget.wasm.program.v1+binary`) with wasmtime, with
//! upstream Inspektor Gadget's guest API so that guests written for
//! upstream run here.
//!
//! Owns: compiling (with an on-disk cache, [`cache`]), sandboxing (one
//! memory of at most 16 MiB, capped tables, an epoch deadline per guest
//! call, a budget for the events ig holds for the guest, WASI clock waits
//! that never block), linking WASI preview 1 and the host module `ig` (one
//! file per area: [`log`], [`datasource`], [`field`], [`params`],
//! [`syscalls`], [`clock`], [`maps`], [`perf`], [`config`], [`kallsyms`],
//! [`filter`], [`unimplemented`]), the guest's stderr (WASI descriptor 2
//! and `gadgetLog`: rationed, never blocking, [`stderr`]), the guest's
//! lifecycle
//! (`gadgetAPIVersion` must be 1; optional `gadgetInit`, `gadgetPreStart`,
//! `gadgetStart`, `gadgetStop`, `gadgetPostStop`) and delivering events to
//! `dataSourceCallback` at the priority the guest subscribed with.
//! Does not own: where the module comes from (the CLI reads it from the
//! image), what the guest does with events, or the gadget's kernel side:
//! the guest reaches the eBPF operator only through the handles the CLI
//! gives both ([`WasmOperator::with_seams`]: configuration before load,
//! maps after, the container filter).
//!
//! Lifecycle as upstream's: `gadgetInit` while operators are set up,
//! `gadgetPreStart` before any operator starts (so its `setConfig` reaches
//! the eBPF operator before the gadget loads), `gadgetStart` after the
//! eBPF operator started (the gadget's maps exist), `gadgetStop` and
//! `gadgetPostStop` before the eBPF operator stops (perf readers can still
//! be drained). Maps and perf readers the guest still holds are closed
//! after `gadgetPostStop`.
//!
//! Set-up: `gadgetInit` runs inside [`Operator::instantiate`] against a
//! mirror of the run's schemas; what it asked for (sources, fields, tags,
//! subscriptions) is applied to the pipeline when it returns. A module
//! that exports `gadgetPreStart` or `gadgetStart` also gets a handler in
//! every source's chain for the subscriptions those make, when the chains
//! are already fixed (`LateSubscriptions`). Packets the
//! guest emits are queued and dispatched by this operator's [`Source::tick`]
//! (the runner's flush timer), which also reports a guest that trapped or
//! ran out of time: the first failure ends the run with that error, later
//! events skip the guest.
//!
//! Deadlines (docs/wasm.md, docs/reliability.md): set-up calls
//! (`_initialize`, `gadgetAPIVersion`, `gadgetInit`, `gadgetPreStart`,
//! `gadgetStart`) get [`SETUP_TIMEOUT`] each: they run before the gadget
//! is attached, where a C, Rust or Go runtime initializes. While the gadget
//! runs, a callback gets [`CALLBACK_TIMEOUT`]. Once the run stops
//! ([`Source::stopping`], else [`Instance::stop`]), everything left
//! (callbacks of the final drain and of the last packets, `gadgetStop`,
//! `gadgetPostStop`) shares [`SHUTDOWN_BUDGET`]; calls past it are not
//! made and a call it interrupts is cut short, both reported as warnings
//! (the stop was on time; events go on without the guest). So a stop
//! request costs at most one callback in progress plus the budget in guest
//! time, and ig ends within 1 s whatever the guest does. A callback that
//! was slow (the epoch ticked during it) asks its source to yield to the
//! event loop ([`YieldFlag`]), so signals are seen between slow events.

mod cache;
mod clock;
mod config;
mod datasource;
mod field;
mod filter;
mod kallsyms;
mod log;
mod maps;
mod params;
mod perf;
mod state;
mod stderr;
mod syscalls;
mod unimplemented;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Engine, Func, Instance as WasmInst, Linker, Module, Store, StoreLimitsBuilder, Val,
};

use crate::bpf::mntns_filter::MntnsFilter;
use crate::bpf::shared::SharedGadget;
use crate::datasource::{Event, Schema, SchemaBuilder};
use crate::metadata::GadgetMetadata;
use crate::params::{ParamSpec, ParamType, ParamValue, ParamValues};
use crate::pipeline::{
    Dispatch, Flow, Handler, Instance, Operator, OperatorError, Priority, Setup, Source, SourceId,
    YieldFlag,
};
use state::{Body, DataRef, DsMirror, Handle, HostState, SetupOp, SubType};

/// The media type of the module layer (upstream's).
pub const MEDIA_TYPE: &str = "application/vnd.gadget.wasm.program.v1+binary";

/// The guest API version this host implements.
const API_VERSION: u64 = 1;

/// Upstream's cap on the guest's memory: 256 pages of 64 KiB. One memory
/// only: multi-memory is off in the engine (no upstream guest can use it:
/// wazero has none) and the store allows one, so this is the guest's total.
pub const MEMORY_LIMIT: usize = 16 << 20;

/// Tables a guest may have. C, Rust and Go guests have one (the indirect
/// function table); reference types allow a few more.
pub const MAX_TABLES: usize = 4;

/// Elements per table. An element is a pointer (8 bytes) in ig's memory,
/// outside the guest's 16 MiB, so this keeps all tables together at 8 MiB,
/// half of what upstream lets the guest's memory take. A large Go guest
/// has a few thousand functions in its table.
pub const MAX_TABLE_ELEMENTS: usize = 256 << 10;

/// How long each set-up call may run (see the module doc).
#[cfg(not(fuzzing))]
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Under `cargo xtask fuzz` (`--cfg fuzzing`): a looping module costs
/// 50 ms per call, not 2 s, so the fuzzer keeps its pace.
#[cfg(fuzzing)]
pub const SETUP_TIMEOUT: Duration = Duration::from_millis(50);

/// How long one `dataSourceCallback` may run while the gadget runs.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_millis(100);

/// What every guest call made after the run stopped shares.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_millis(200);

pub use state::{MAX_HELD_BYTES, MAX_PERF_BYTES};
pub use stderr::{BURST as STDERR_BURST, RATE as STDERR_RATE, StderrWriter};

/// How often the epoch advances; the deadline is counted in these.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Instantiated after the gadget-independent operators that add fields
/// (process info is 6), so the guest sees their fields, and before the
/// filter (9000), so `--filter` can use fields the guest adds. The guest
/// chooses the priority of its own handlers.
const PRIORITY: Priority = 1000;

/// Why the guest cannot run.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// Compiling WASM module `module` failed.
    #[error("wasm module {module}: compiling")]
    Compile {
        /// The module.
        module: String,
        /// Why.
        #[source]
        source: wasmtime::Error,
    },
    /// Wasm module `module` imports `import_module`.`name`, which this version
    /// of ig does not provide.
    #[error(
        "wasm module {module} imports {import_module}.{name}, which this version of ig does not provide"
    )]
    UnknownImport {
        /// The module.
        module: String,
        /// The import module.
        import_module: String,
        /// The name.
        name: String,
    },
    /// Instantiating WASM module `module` failed.
    #[error("wasm module {module}: {message}")]
    Instantiate {
        /// The module.
        module: String,
        /// What went wrong.
        message: String,
    },
    /// Wasm module `module` does not export gadgetAPIVersion (every gadget
    /// module must).
    #[error("wasm module {module} does not export gadgetAPIVersion (every gadget module must)")]
    NoVersion {
        /// The module.
        module: String,
    },
    /// Wasm module `module` uses gadget API version `found`.
    #[error(
        "wasm module {module} uses gadget API version {found}; this ig supports version {API_VERSION}"
    )]
    Version {
        /// The module.
        module: String,
        /// What was found.
        found: u64,
    },
    /// Wasm module `module`: `function` returned `code` (failure).
    #[error("wasm module {module}: {function} returned {code} (failure)")]
    Failed {
        /// The module.
        module: String,
        /// The guest function.
        function: String,
        /// The code it returned.
        code: i64,
    },
    /// Wasm module `module`: `function` trapped.
    #[error("wasm module {module}: {function} trapped: {message}")]
    Trap {
        /// The module.
        module: String,
        /// The guest function.
        function: String,
        /// What went wrong.
        message: String,
    },
    /// `what`: how long it had ("ran longer than 2 s ...").
    #[error("wasm module {module}: {function} ran longer than {} and was stopped (an endless loop?)", human(*limit))]
    Timeout {
        /// The module.
        module: String,
        /// The guest function.
        function: String,
        /// The limit.
        limit: Duration,
    },
    /// After a stop request: not an error of the run, a warning.
    #[error(
        "wasm module {module}: {function} {}: the guest used up the {} ig gives it to stop",
        if *called { "was cut short" } else { "was not called" },
        human(SHUTDOWN_BUDGET)
    )]
    StopBudget {
        /// The module.
        module: String,
        /// The guest function.
        function: String,
        /// Whether it was called.
        called: bool,
    },
    /// Wasm module `module`: `what` of the guest disagrees with the pipeline
    /// (internal error).
    #[error(
        "wasm module {module}: {what} of the guest disagrees with the pipeline (internal error)"
    )]
    Mismatch {
        /// The module.
        module: String,
        /// What it concerns.
        what: String,
    },
}

/// The operator, configured with the module and the gadget's `params.wasm`.
pub struct WasmOperator {
    module_name: String,
    wasm: Vec<u8>,
    cache_dir: Option<PathBuf>,
    params: Vec<(String, ParamSpec)>,
    values: BTreeMap<String, String>,
    stderr: StderrWriter,
    gadget: SharedGadget,
    mntns: MntnsFilter,
}

impl WasmOperator {
    /// `name` names the module in messages (the image reference);
    /// `cache_dir` holds compiled modules (`None`: always compile);
    /// `stderr` receives what the guest writes to its stderr (see
    /// [`stderr`]).
    pub fn new(
        name: String,
        wasm: Vec<u8>,
        metadata: &GadgetMetadata,
        cache_dir: Option<PathBuf>,
        stderr: StderrWriter,
    ) -> Self {
        let params = metadata
            .params
            .wasm
            .iter()
            .map(|(name, d)| {
                let key = d.key.clone().unwrap_or_else(|| name.clone());
                let spec = ParamSpec {
                    full_name: format!("operator.oci.wasm.{key}"),
                    key: key.clone(),
                    description: d.description.clone().unwrap_or_default(),
                    default: d.default_value.clone().unwrap_or_default(),
                    ty: ParamType::String { max_len: None },
                    group: "WASM".into(),
                    alias: d
                        .alias
                        .as_deref()
                        .and_then(|a| a.chars().next().filter(|_| a.chars().count() == 1)),
                };
                (key, spec)
            })
            .collect();
        Self {
            module_name: name,
            wasm,
            cache_dir,
            params,
            values: BTreeMap::new(),
            stderr,
            gadget: SharedGadget::default(),
            mntns: MntnsFilter::default(),
        }
    }

    /// Connect the guest to the eBPF operator (`gadget`: its `setConfig`
    /// and `getMap`) and to the container selection (`mntns`: its
    /// `shouldDiscardMntnsID`). Without it the guest sees no map and no
    /// selection.
    #[must_use]
    pub fn with_seams(mut self, gadget: SharedGadget, mntns: MntnsFilter) -> Self {
        self.gadget = gadget;
        self.mntns = mntns;
        self
    }
}

impl Operator for WasmOperator {
    fn name(&self) -> &'static str {
        "wasm"
    }

    fn priority(&self) -> Priority {
        PRIORITY
    }

    fn params(&self) -> Vec<ParamSpec> {
        self.params.iter().map(|(_, s)| s.clone()).collect()
    }

    fn apply_params(&mut self, values: &ParamValues) -> Result<(), OperatorError> {
        for (key, spec) in &self.params {
            let v = match values.get(&spec.full_name) {
                Some(ParamValue::Str(s)) => s.clone(),
                Some(ParamValue::Bool(b)) => b.to_string(),
                Some(ParamValue::Int(i)) => i.to_string(),
                Some(ParamValue::Duration(d)) => format!("{}ms", d.as_millis()),
                None => String::new(),
            };
            self.values.insert(key.clone(), v);
        }
        Ok(())
    }

    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let fail = |e: WasmError| OperatorError::failed("wasm", e);
        let mirror = setup
            .all_source_ids()
            .map(|id| {
                let s = setup.schema(id).schema();
                DsMirror {
                    name: s.name.clone(),
                    kind: s.kind,
                    fields: s
                        .fields()
                        .iter()
                        .map(|f| (f.name.clone(), f.kind))
                        .collect(),
                    referenced: setup.is_referenced(id),
                }
            })
            .collect();
        let mut rt = Runtime::new(&self, mirror).map_err(fail)?;
        rt.yield_flag = setup.yield_flag();
        let rt = Rc::new(RefCell::new(rt));
        let init = rt.borrow_mut().call_lifecycle("gadgetInit");
        init.map_err(fail)?;
        apply_ops(&rt, setup).map_err(fail)?;
        // A guest that may subscribe later gets a handler for it in every
        // chain (one that returns at once while it has none).
        let late_hooks = {
            let mut r = rt.borrow_mut();
            let r = &mut *r;
            ["gadgetPreStart", "gadgetStart"]
                .iter()
                .any(|f| r.instance.get_func(&mut r.store, f).is_some())
        };
        if late_hooks {
            let ids: Vec<SourceId> = setup.all_source_ids().collect();
            rt.borrow_mut().store.data_mut().late_sources = ids.len();
            for id in ids {
                setup.subscribe(
                    id,
                    PRIORITY,
                    "wasm",
                    Box::new(LateSubscriptions {
                        rt: rt.clone(),
                        src: id.0,
                        subs: Vec::new(),
                        version: 0,
                    }),
                );
            }
        }
        Ok(Some(Box::new(WasmInstance { rt })))
    }
}

/// Apply what the guest asked for in `gadgetInit` to the pipeline.
fn apply_ops(rt: &Rc<RefCell<Runtime>>, setup: &mut Setup) -> Result<(), WasmError> {
    let (ops, module) = {
        let mut r = rt.borrow_mut();
        let s = r.store.data_mut();
        s.frozen = true;
        (std::mem::take(&mut s.ops), s.module.clone())
    };
    let mismatch = |what: String| WasmError::Mismatch {
        module: module.clone(),
        what,
    };
    for op in ops {
        match op {
            SetupOp::NewSource { name, kind } => {
                let expected = rt
                    .borrow()
                    .store
                    .data()
                    .sources
                    .iter()
                    .position(|d| d.name == name);
                let id = setup.add_source(SchemaBuilder::new(name.clone(), kind, 0));
                if Some(id.0) != expected {
                    return Err(mismatch(format!("data source {name}")));
                }
            }
            SetupOp::AddField { src, name, kind } => {
                let expected = rt.borrow().store.data().sources[src]
                    .fields
                    .iter()
                    .position(|(n, _)| *n == name);
                let id = setup
                    .schema_mut(SourceId(src))
                    .add_owned(name.clone(), kind, None)
                    .map_err(|e| mismatch(e.to_string()))?;
                if Some(id.index()) != expected {
                    return Err(mismatch(format!("field {name}")));
                }
            }
            SetupOp::AddTag { src, field, tag } => {
                setup
                    .schema_mut(SourceId(src))
                    .field_mut(field)
                    .tags
                    .push(tag);
            }
            SetupOp::Unreference { src } => setup.unreference(SourceId(src)),
            SetupOp::Subscribe {
                src,
                ty,
                prio,
                cb,
                ds_handle,
            } => {
                setup.subscribe(
                    SourceId(src),
                    prio,
                    "wasm",
                    Box::new(Subscription {
                        rt: rt.clone(),
                        src,
                        ty,
                        cb,
                        ds_handle,
                    }),
                );
            }
        }
    }
    Ok(())
}

/// Advances the engine's epoch while the run lasts, so a guest call past
/// its deadline is interrupted. `ticks` counts the same ticks for the host:
/// a callback during which it moved was slow enough that the event loop
/// should look at signals before the next event (a read of it is far
/// cheaper than a clock read per event).
struct EpochTicker {
    stop: Arc<AtomicBool>,
    ticks: Arc<AtomicU64>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ticks = Arc::new(AtomicU64::new(0));
        let (e, s, t) = (engine.clone(), stop.clone(), ticks.clone());
        let spawned = std::thread::Builder::new()
            .name("ig-wasm-epoch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    e.increment_epoch();
                    t.fetch_add(1, Ordering::Relaxed);
                }
            });
        if let Err(e) = spawned {
            ::log::warn!(
                "wasm: cannot start the timeout thread ({e}); guest calls have no time limit"
            );
        }
        Self { stop, ticks }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The instantiated guest.
struct Runtime {
    store: Store<HostState>,
    instance: WasmInst,
    callback: Option<Func>,
    /// The first failure of a callback, until `tick` reports it.
    failure: Option<WasmError>,
    failed: bool,
    phase: Phase,
    /// Set when a callback was slow, so the source yields to the loop.
    yield_flag: YieldFlag,
    /// Callbacks not made or cut short: the stop budget was spent.
    skipped: u64,
    /// A call was cut short by the stop budget: no more calls.
    cut: bool,
    /// How many of [`STOP_HOOKS`] were called.
    hooks_done: usize,
    ticker: EpochTicker,
}

/// The hooks of a stopping guest, in order.
const STOP_HOOKS: [&str; 2] = ["gadgetStop", "gadgetPostStop"];

/// Which deadline guest calls get (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Setup,
    Running,
    /// Until this instant, for everything left.
    Stopping(Instant),
}

/// "2 s", "100 ms".
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

impl Runtime {
    fn new(op: &WasmOperator, mirror: Vec<DsMirror>) -> Result<Self, WasmError> {
        let module = op.module_name.clone();
        let inst_err = |message: String| WasmError::Instantiate {
            module: module.clone(),
            message,
        };
        let mut config = Config::new();
        config.epoch_interruption(true);
        // On by default in wasmtime 48; a second memory would double what
        // MEMORY_LIMIT promises (it applies per memory).
        config.wasm_multi_memory(false);
        let engine =
            Engine::new(&config).map_err(|e| inst_err(format!("creating the engine: {e}")))?;
        let started = std::time::Instant::now();
        let (compiled, origin) = cache::load_or_compile(&engine, &op.wasm, op.cache_dir.as_deref())
            .map_err(|source| WasmError::Compile {
                module: module.clone(),
                source,
            })?;
        ::log::debug!(
            "wasm module {module}: {origin:?} in {} ms",
            started.elapsed().as_millis()
        );
        let mut linker: Linker<HostState> = Linker::new(&engine);
        let add = |r: wasmtime::Result<()>| r.map_err(|e| inst_err(format!("linking: {e}")));
        add(wasmtime_wasi::p1::add_to_linker_sync(
            &mut linker,
            |s: &mut HostState| &mut s.wasi,
        ))?;
        add(log::add(&mut linker))?;
        add(datasource::add(&mut linker))?;
        add(field::add(&mut linker))?;
        add(params::add(&mut linker))?;
        add(syscalls::add(&mut linker))?;
        add(clock::add(&mut linker))?;
        add(maps::add(&mut linker))?;
        add(perf::add(&mut linker))?;
        add(config::add(&mut linker))?;
        add(kallsyms::add(&mut linker))?;
        add(filter::add(&mut linker))?;
        add(unimplemented::add(&mut linker))?;
        linker.allow_shadowing(true);
        add(clock::shadow_wasi(&mut linker))?;
        linker.allow_shadowing(false);

        let guest_stderr = stderr::GuestStderr::new(module.clone(), op.stderr.clone());
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stderr(guest_stderr.clone())
            .build_p1();
        let limits = StoreLimitsBuilder::new()
            .memory_size(MEMORY_LIMIT)
            .memories(1)
            .tables(MAX_TABLES)
            .table_elements(MAX_TABLE_ELEMENTS)
            .instances(4)
            .build();
        let mut host = HostState::new(wasi, limits, module.clone(), guest_stderr);
        host.sources = mirror;
        host.params = op.values.clone();
        host.gadget = op.gadget.clone();
        host.mntns = op.mntns.clone();
        host.has_callback = compiled.get_export("dataSourceCallback").is_some();
        let mut store = Store::new(&engine, host);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(deadline_ticks(SETUP_TIMEOUT));
        check_imports(&compiled, &linker, &mut store, &module)?;
        let ticker = EpochTicker::start(&engine);
        let instance = linker
            .instantiate(&mut store, &compiled)
            .map_err(|e| inst_err(format!("instantiating: {}", root_message(&e))))?;
        let callback = instance.get_func(&mut store, "dataSourceCallback");
        let mut rt = Self {
            store,
            instance,
            callback,
            failure: None,
            failed: false,
            phase: Phase::Setup,
            yield_flag: YieldFlag::default(),
            skipped: 0,
            cut: false,
            hooks_done: 0,
            ticker,
        };
        // A reactor (C with -mexec-model=reactor, Rust cdylib, TinyGo)
        // initializes its libc here.
        if rt.instance.get_func(&mut rt.store, "_initialize").is_some() {
            rt.call("_initialize", &[])?;
        }
        if rt
            .instance
            .get_func(&mut rt.store, "gadgetAPIVersion")
            .is_none()
        {
            return Err(WasmError::NoVersion { module });
        }
        let v = rt.call("gadgetAPIVersion", &[])?;
        let found = match v {
            Some(Val::I64(v)) => v as u64,
            Some(Val::I32(v)) => u64::from(v as u32),
            _ => u64::MAX,
        };
        if found != API_VERSION {
            return Err(WasmError::Version { module, found });
        }
        Ok(rt)
    }

    fn module(&self) -> &str {
        &self.store.data().module
    }

    /// Call export `name` with a fresh deadline; its first result, if any.
    fn call(&mut self, name: &str, args: &[Val]) -> Result<Option<Val>, WasmError> {
        let Some(f) = self.instance.get_func(&mut self.store, name) else {
            return Ok(None);
        };
        self.call_func(f, name, args)
    }

    /// The deadline of the next call of `function`; `Err` once the stop
    /// budget is spent (or a call was cut short by it: the guest's state is
    /// then unknown).
    fn deadline(&self, function: &str) -> Result<Duration, WasmError> {
        Ok(match self.phase {
            Phase::Setup => SETUP_TIMEOUT,
            Phase::Running => CALLBACK_TIMEOUT,
            Phase::Stopping(end) => {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() || self.cut {
                    return Err(WasmError::StopBudget {
                        module: self.module().to_owned(),
                        function: function.to_owned(),
                        called: false,
                    });
                }
                if function == "dataSourceCallback" {
                    left.min(CALLBACK_TIMEOUT)
                } else {
                    left
                }
            }
        })
    }

    /// The run stops: from now on every guest call shares
    /// [`SHUTDOWN_BUDGET`].
    fn begin_shutdown(&mut self) {
        if !matches!(self.phase, Phase::Stopping(_)) {
            self.phase = Phase::Stopping(Instant::now() + SHUTDOWN_BUDGET);
        }
    }

    fn call_func(&mut self, f: Func, name: &str, args: &[Val]) -> Result<Option<Val>, WasmError> {
        let limit = self.deadline(name)?;
        let n = f.ty(&self.store).results().len();
        let mut results = vec![Val::I32(0); n];
        self.store.set_epoch_deadline(deadline_ticks(limit));
        match f.call(&mut self.store, args, &mut results) {
            Ok(()) => Ok(results.into_iter().next()),
            Err(e) => Err(self.classify(name, &e, limit)),
        }
    }

    fn classify(&mut self, function: &str, e: &wasmtime::Error, limit: Duration) -> WasmError {
        let module = self.module().to_owned();
        let function = function.to_owned();
        if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
            // Once the run stops, the shared budget bounds every call: a
            // call it interrupts is reported, not an error of the run.
            if matches!(self.phase, Phase::Stopping(_)) {
                self.cut = true;
                return WasmError::StopBudget {
                    module,
                    function,
                    called: true,
                };
            }
            return WasmError::Timeout {
                module,
                function,
                limit,
            };
        }
        WasmError::Trap {
            module,
            function,
            message: root_message(e),
        }
    }

    /// Call an optional lifecycle export; a non-zero result is a failure.
    fn call_lifecycle(&mut self, name: &str) -> Result<(), WasmError> {
        match self.call(name, &[])? {
            Some(Val::I32(0) | Val::I64(0)) | None => Ok(()),
            Some(v) => Err(WasmError::Failed {
                module: self.module().to_owned(),
                function: name.to_owned(),
                code: v.i64().or(v.i32().map(i64::from)).unwrap_or(-1),
            }),
        }
    }

    /// [`Runtime::call_lifecycle`] for `gadgetPreStart` and `gadgetStart`,
    /// during which the guest may still subscribe.
    fn call_accepting_late(&mut self, name: &str) -> Result<(), WasmError> {
        self.store.data_mut().accepting_late = true;
        let result = self.call_lifecycle(name);
        self.store.data_mut().accepting_late = false;
        result
    }

    /// Run the stop hooks not run yet, up to `upto` of [`STOP_HOOKS`]
    /// (`finish` runs the first, `stop` the rest). After a trap the
    /// guest's state is unknown: it is not called again. Hooks the budget
    /// cut short or left no time for are reported, not a failure: the
    /// stop was on time.
    fn stop_hooks(&mut self, upto: usize) -> Result<(), WasmError> {
        let mut result = Ok(());
        while self.hooks_done < upto.min(STOP_HOOKS.len()) {
            let hook = STOP_HOOKS[self.hooks_done];
            self.hooks_done += 1;
            match self.call_lifecycle(hook) {
                Ok(()) => {}
                Err(e @ WasmError::StopBudget { .. }) => {
                    ::log::warn!("{e}");
                    self.hooks_done = STOP_HOOKS.len();
                }
                Err(e @ WasmError::Trap { .. }) => {
                    self.hooks_done = STOP_HOOKS.len();
                    result = Err(e);
                }
                Err(e) => result = result.and(Err(e)),
            }
        }
        result
    }

    /// Run one `dataSourceCallback`. A failure is kept for `tick` and the
    /// guest is not called again.
    fn callback(&mut self, cb: u64, ds: u32, data: u32) {
        let Some(f) = self.callback else {
            return;
        };
        let args = [
            Val::I64(cb as i64),
            Val::I32(ds as i32),
            Val::I32(data as i32),
        ];
        let before = self.ticker.ticks.load(Ordering::Relaxed);
        match self.call_func(f, "dataSourceCallback", &args) {
            Ok(_) => {}
            Err(WasmError::StopBudget { .. }) => self.skipped += 1,
            Err(e) => {
                self.failed = true;
                self.failure = Some(e);
            }
        }
        if self.ticker.ticks.load(Ordering::Relaxed) != before {
            self.yield_flag.request();
        }
    }
}

/// `limit` in epoch ticks, rounded up. The epoch may advance right after
/// the deadline is set, so a call gets between `limit - EPOCH_TICK` and
/// `limit`.
fn deadline_ticks(limit: Duration) -> u64 {
    let ticks = limit.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// The guest's message for an error: the trap and the innermost cause,
/// without wasmtime's backtrace noise on separate lines.
fn root_message(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    parts.dedup();
    parts.join(": ").replace('\n', " ")
}

/// Refuse imports we do not provide with a message naming them (wasmtime's
/// own error is less direct).
fn check_imports(
    module: &Module,
    linker: &Linker<HostState>,
    store: &mut Store<HostState>,
    name: &str,
) -> Result<(), WasmError> {
    for imp in module.imports() {
        if linker.get_by_import(&mut *store, &imp).is_none() {
            return Err(WasmError::UnknownImport {
                module: name.to_owned(),
                import_module: imp.module().to_owned(),
                name: imp.name().to_owned(),
            });
        }
    }
    Ok(())
}

/// One subscription of the guest: a handler in its source's chain.
struct Subscription {
    rt: Rc<RefCell<Runtime>>,
    src: usize,
    ty: SubType,
    cb: u64,
    ds_handle: u32,
}

impl Handler for Subscription {
    fn on_event(&mut self, _schema: &Schema, event: &mut Event) -> Flow {
        deliver_event(&self.rt, self.src, self.cb, self.ds_handle, event);
        Flow::Continue
    }

    fn on_array(&mut self, _schema: &Schema, events: &mut Vec<Event>) -> Flow {
        deliver_array(
            &self.rt,
            (self.src, self.ty, self.cb, self.ds_handle),
            events,
        );
        Flow::Continue
    }
}

/// Call the guest's callback `cb` with `event` as the current data.
fn deliver_event(
    rt: &Rc<RefCell<Runtime>>,
    src: usize,
    cb: u64,
    ds_handle: u32,
    event: &mut Event,
) {
    let mut rt = rt.borrow_mut();
    if rt.failed {
        return;
    }
    let s = rt.store.data_mut();
    s.current = Some(std::mem::take(event));
    s.callback_growth = 0;
    let h = s.add_handle(Handle::Data(src, DataRef::Current));
    if h != 0 {
        rt.callback(cb, ds_handle, h);
    }
    let s = rt.store.data_mut();
    s.remove_handle(h);
    *event = s.current.take().unwrap_or_default();
}

/// Call the guest's callback with an array: per element for a data
/// subscription, else the whole array. `sub` is `(source, type, callback,
/// data source handle)`.
fn deliver_array(
    rt: &Rc<RefCell<Runtime>>,
    sub: (usize, SubType, u64, u32),
    events: &mut Vec<Event>,
) {
    let (src, ty, cb, ds_handle) = sub;
    if ty == SubType::Data {
        for e in events.iter_mut() {
            deliver_event(rt, src, cb, ds_handle, e);
        }
        return;
    }
    let mut rt = rt.borrow_mut();
    if rt.failed {
        return;
    }
    let s = rt.store.data_mut();
    s.current_array = Some(std::mem::take(events));
    s.callback_growth = 0;
    let h = s.add_handle(Handle::Array(src, state::ArrayRef::Current));
    if h != 0 {
        rt.callback(cb, ds_handle, h);
    }
    let s = rt.store.data_mut();
    s.remove_handle(h);
    *events = s.current_array.take().unwrap_or_default();
}

/// The guest's subscriptions to one source made after `gadgetInit`
/// (`gadgetPreStart`, `gadgetStart`), when the chains were already fixed:
/// a handler at the operator's priority that calls them in the order of
/// their own priorities. It copies them when they change (only before the
/// run starts), so an event costs one look at a counter when there are
/// none.
struct LateSubscriptions {
    rt: Rc<RefCell<Runtime>>,
    src: usize,
    subs: Vec<state::LateSub>,
    version: u64,
}

impl LateSubscriptions {
    fn sync(&mut self) {
        let rt = self.rt.borrow();
        let s = rt.store.data();
        if s.late_version != self.version {
            self.version = s.late_version;
            self.subs.clear();
            self.subs
                .extend(s.late.iter().filter(|l| l.src == self.src).copied());
        }
    }
}

impl Handler for LateSubscriptions {
    fn on_event(&mut self, _schema: &Schema, event: &mut Event) -> Flow {
        self.sync();
        for l in &self.subs {
            deliver_event(&self.rt, l.src, l.cb, l.ds_handle, event);
        }
        Flow::Continue
    }

    fn on_array(&mut self, _schema: &Schema, events: &mut Vec<Event>) -> Flow {
        self.sync();
        for l in &self.subs {
            deliver_array(&self.rt, (l.src, l.ty, l.cb, l.ds_handle), events);
        }
        Flow::Continue
    }
}

/// The running guest: lifecycle calls and the queue of emitted packets.
struct WasmInstance {
    rt: Rc<RefCell<Runtime>>,
}

impl WasmInstance {
    /// Hand the packets emitted since the last call to their sources;
    /// what the guest held for them leaves the budget. With `may_yield`,
    /// stops early when a slow callback of the guest (subscribed to its
    /// own packets) asks to yield; the rest waits for the next tick.
    fn dispatch_emitted(
        &mut self,
        out: &mut Dispatch,
        may_yield: bool,
    ) -> Result<(), OperatorError> {
        let mut queued = {
            let mut rt = self.rt.borrow_mut();
            if let Some(e) = rt.failure.take() {
                return Err(OperatorError::failed("wasm", e));
            }
            std::mem::take(&mut rt.store.data_mut().emitted).into_iter()
        };
        while let Some(p) = queued.next() {
            self.rt.borrow_mut().store.data_mut().refund(p.charge);
            match p.body {
                Body::Single(mut e) => out.event(SourceId(p.src), &mut e),
                Body::Array(mut v) => out.array(SourceId(p.src), &mut v),
            }
            if may_yield && out.take_yield() {
                let mut rt = self.rt.borrow_mut();
                let s = rt.store.data_mut();
                let mut rest: Vec<_> = queued.collect();
                rest.append(&mut s.emitted);
                s.emitted = rest;
                break;
            }
        }
        Ok(())
    }
}

impl Instance for WasmInstance {
    fn pre_start(&mut self) -> Result<(), OperatorError> {
        self.rt
            .borrow_mut()
            .call_accepting_late("gadgetPreStart")
            .map_err(|e| OperatorError::failed("wasm", e))
    }

    fn start(&mut self) -> Result<(), OperatorError> {
        let mut rt = self.rt.borrow_mut();
        rt.call_accepting_late("gadgetStart")
            .map_err(|e| OperatorError::failed("wasm", e))?;
        rt.phase = Phase::Running;
        Ok(())
    }

    fn stop(&mut self) -> Result<(), OperatorError> {
        let result = self.stop_guest();
        let rt = self.rt.borrow();
        let dropped = rt.store.data().stderr.take_dropped();
        if dropped > 0 {
            ::log::warn!(
                "wasm module {}: {dropped} bytes the guest wrote to stderr were dropped (over {} KiB/s)",
                rt.module(),
                stderr::RATE >> 10
            );
        }
        result
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }
}

impl WasmInstance {
    /// The guest's side of [`Instance::stop`].
    fn stop_guest(&mut self) -> Result<(), OperatorError> {
        let mut rt = self.rt.borrow_mut();
        rt.begin_shutdown();
        // A callback failure not reported yet (the last packets' callbacks
        // run in `finish`, after the last tick that reports).
        if let Some(e) = rt.failure.take() {
            return Err(OperatorError::failed("wasm", e));
        }
        if rt.failed {
            return Ok(());
        }
        if rt.skipped > 0 {
            ::log::warn!(
                "wasm module {}: {} events went on without the guest: it used up the {} ig gives it to stop",
                rt.module(),
                rt.skipped,
                human(SHUTDOWN_BUDGET)
            );
        }
        let result = rt.stop_hooks(STOP_HOOKS.len());
        // Upstream forgets every handle at stop: the guest's maps and
        // perf rings go now, not when the process ends.
        rt.store.data_mut().close_kernel_objects();
        result.map_err(|e| OperatorError::failed("wasm", e))
    }
}

impl Source for WasmInstance {
    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        Vec::new()
    }

    fn drain(&mut self, _out: &mut Dispatch) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The run's schemas, which the guest's field handles are resolved
    /// against, before any event reaches the guest: events of another
    /// operator's source (the local manager's `containers` rows, the
    /// first ring-buffer drain) can come before this operator's first
    /// tick.
    fn frozen(&mut self, out: &Dispatch) {
        let mut rt = self.rt.borrow_mut();
        rt.store.data_mut().schemas = out.schemas().map(|(_, s)| s.clone()).collect();
    }

    fn tick(&mut self, out: &mut Dispatch) -> Result<Vec<crate::pipeline::Notice>, OperatorError> {
        let refused = {
            let mut rt = self.rt.borrow_mut();
            let s = rt.store.data_mut();
            std::mem::take(&mut s.refused)
        };
        self.dispatch_emitted(out, true)?;
        if refused == 0 {
            return Ok(Vec::new());
        }
        Ok(vec![crate::pipeline::Notice::GuestRefused {
            module: self.rt.borrow().module().to_owned(),
            count: refused,
        }])
    }

    fn stopping(&mut self) {
        self.rt.borrow_mut().begin_shutdown();
    }

    /// The last packets, then `gadgetStop` and what it emits: upstream's
    /// guests report at stop (traceloop drains its rings there), and this
    /// is the last moment packets still reach the output.
    fn finish(&mut self, out: &mut Dispatch) -> Result<(), OperatorError> {
        self.rt.borrow_mut().begin_shutdown();
        self.dispatch_emitted(out, false)?;
        let stopped = {
            let mut rt = self.rt.borrow_mut();
            if rt.failed { Ok(()) } else { rt.stop_hooks(1) }
        };
        stopped.map_err(|e| OperatorError::failed("wasm", e))?;
        self.dispatch_emitted(out, false)
    }

    /// Never waited for: the guest produces only in reaction to other
    /// sources, so it must not keep a finished snapshot running.
    fn finished(&self) -> bool {
        true
    }
}

/// Where compiled modules are cached for the store at `store_root`: next
/// to it (`/var/lib/ig/wasm-cache` for the default store), or
/// `IG_WASM_CACHE`; `IG_WASM_CACHE=off` disables the cache.
pub fn cache_dir(store_root: &std::path::Path) -> Option<PathBuf> {
    match std::env::var_os("IG_WASM_CACHE") {
        Some(v) if v == "off" => None,
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => Some(store_root.parent()?.join("wasm-cache")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-assembled modules: clang cannot declare a second memory or a
    /// large table, and wasmtime's `wat` feature is not built.
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn section(id: u8, items: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        leb(items.len(), &mut body);
        items.iter().for_each(|i| body.extend(i));
        let mut s = vec![id];
        leb(body.len(), &mut s);
        s.extend(body);
        s
    }

    fn limits(min: usize) -> Vec<u8> {
        let mut v = vec![0x00];
        leb(min, &mut v);
        v
    }

    /// A module exporting `gadgetAPIVersion() -> 1`, with `tables` funcref
    /// tables and `memories` memories of the given minimum sizes.
    fn module(tables: &[usize], memories: &[usize]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend(section(1, &[vec![0x60, 0, 1, 0x7e]]));
        m.extend(section(3, &[vec![0]]));
        if !tables.is_empty() {
            let t: Vec<Vec<u8>> = tables
                .iter()
                .map(|&n| [vec![0x70], limits(n)].concat())
                .collect();
            m.extend(section(4, &t));
        }
        if !memories.is_empty() {
            let t: Vec<Vec<u8>> = memories.iter().map(|&n| limits(n)).collect();
            m.extend(section(5, &t));
        }
        let name = b"gadgetAPIVersion";
        let export = [&[name.len() as u8][..], name, &[0x00, 0]].concat();
        m.extend(section(7, &[export]));
        m.extend(section(10, &[vec![4, 0, 0x42, 1, 0x0b]]));
        m
    }

    fn runtime(wasm: Vec<u8>) -> Result<Runtime, WasmError> {
        let op = WasmOperator::new(
            "test".into(),
            wasm,
            &GadgetMetadata::default(),
            None,
            Arc::new(|_: &[u8]| {}),
        );
        Runtime::new(&op, Vec::new())
    }

    fn refused(wasm: Vec<u8>) -> String {
        match runtime(wasm) {
            Ok(_) => panic!("the module was accepted"),
            Err(e) => {
                let mut s = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(c) = src {
                    s = format!("{s}: {c}");
                    src = c.source();
                }
                s
            }
        }
    }

    #[test]
    fn tables_and_memory_up_to_the_caps_are_accepted() {
        let pages = MEMORY_LIMIT / 65536;
        runtime(module(&[], &[])).unwrap();
        runtime(module(&[MAX_TABLE_ELEMENTS; MAX_TABLES], &[pages])).unwrap();
    }

    #[test]
    fn a_second_memory_is_refused() {
        let e = refused(module(&[], &[1, 1]));
        assert!(
            e.contains("compiling") && e.contains("multiple memories"),
            "{e}"
        );
    }

    #[test]
    fn memory_tables_and_table_elements_over_the_caps_are_refused() {
        let pages = MEMORY_LIMIT / 65536;
        let e = refused(module(&[], &[pages + 1]));
        assert!(e.contains("memory"), "{e}");
        let e = refused(module(&[MAX_TABLE_ELEMENTS + 1], &[]));
        assert!(e.contains("table"), "{e}");
        let e = refused(module(&[1; MAX_TABLES + 1], &[]));
        assert!(e.contains("table"), "{e}");
    }

    #[test]
    fn deadlines_round_up_to_whole_epoch_ticks() {
        assert_eq!(deadline_ticks(SETUP_TIMEOUT), 200);
        assert_eq!(deadline_ticks(CALLBACK_TIMEOUT), 10);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 1);
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
        assert_eq!(human(SETUP_TIMEOUT), "2 s");
        assert_eq!(human(CALLBACK_TIMEOUT), "100 ms");
    }
}
