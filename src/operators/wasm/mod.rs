//! The WASM operator: runs the module of a gadget image
//! (`application/vnd.gadget.wasm.program.v1+binary`) with wasmtime, with
//! upstream Inspektor Gadget's guest API so that guests written for
//! upstream run here.
//!
//! Owns: compiling (with an on-disk cache, [`cache`]), sandboxing (16 MiB of
//! memory, an epoch deadline per guest call), linking WASI preview 1 and the
//! host module `ig` (one file per area: [`log`], [`datasource`], [`field`],
//! [`params`], [`syscalls`], [`unimplemented`]), the guest's lifecycle
//! (`gadgetAPIVersion` must be 1; optional `gadgetInit`, `gadgetPreStart`,
//! `gadgetStart`, `gadgetStop`, `gadgetPostStop`) and delivering events to
//! `dataSourceCallback` at the priority the guest subscribed with.
//! Does not own: where the module comes from (the CLI reads it from the
//! image) or what the guest does with events.
//!
//! Set-up: `gadgetInit` runs inside [`Operator::instantiate`] against a
//! mirror of the run's schemas; what it asked for (sources, fields, tags,
//! subscriptions) is applied to the pipeline when it returns. Packets the
//! guest emits are queued and dispatched by this operator's [`Source::tick`]
//! (the runner's flush timer), which also reports a guest that trapped or
//! ran out of time: the first failure ends the run with that error, later
//! events skip the guest.

mod cache;
mod datasource;
mod field;
mod log;
mod params;
mod state;
mod syscalls;
mod unimplemented;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{
    Config, Engine, Func, Instance as WasmInst, Linker, Module, Store, StoreLimitsBuilder, Val,
};

use crate::datasource::{Event, Schema, SchemaBuilder};
use crate::metadata::GadgetMetadata;
use crate::params::{ParamSpec, ParamType, ParamValue, ParamValues};
use crate::pipeline::{
    Dispatch, Flow, Handler, Instance, Operator, OperatorError, Priority, Setup, Source, SourceId,
};
use state::{Body, DataRef, DsMirror, Handle, HostState, SetupOp, SubType};

/// The media type of the module layer (upstream's).
pub const MEDIA_TYPE: &str = "application/vnd.gadget.wasm.program.v1+binary";

/// The guest API version this host implements.
const API_VERSION: u64 = 1;

/// Upstream's cap on the guest's memory: 256 pages of 64 KiB.
pub const MEMORY_LIMIT: usize = 16 << 20;

/// How long one guest call may run before it is interrupted.
#[cfg(not(fuzzing))]
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Under `cargo xtask fuzz` (`--cfg fuzzing`): a looping module costs
/// 50 ms per call, not 2 s, so the fuzzer keeps its pace.
#[cfg(fuzzing)]
pub const CALL_TIMEOUT: Duration = Duration::from_millis(50);

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
    #[error("wasm module {module}: compiling")]
    Compile {
        module: String,
        #[source]
        source: wasmtime::Error,
    },
    #[error(
        "wasm module {module} imports {import_module}.{name}, which this version of ig does not provide"
    )]
    UnknownImport {
        module: String,
        import_module: String,
        name: String,
    },
    #[error("wasm module {module}: {message}")]
    Instantiate { module: String, message: String },
    #[error("wasm module {module} does not export gadgetAPIVersion (every gadget module must)")]
    NoVersion { module: String },
    #[error(
        "wasm module {module} uses gadget API version {found}; this ig supports version {API_VERSION}"
    )]
    Version { module: String, found: u64 },
    #[error("wasm module {module}: {function} returned {code} (failure)")]
    Failed {
        module: String,
        function: String,
        code: i64,
    },
    #[error("wasm module {module}: {function} trapped: {message}")]
    Trap {
        module: String,
        function: String,
        message: String,
    },
    #[error("wasm module {module}: {function} ran longer than {secs} s and was stopped (an endless loop?)", secs = CALL_TIMEOUT.as_secs())]
    Timeout { module: String, function: String },
    #[error(
        "wasm module {module}: {what} of the guest disagrees with the pipeline (internal error)"
    )]
    Mismatch { module: String, what: String },
}

/// The operator, configured with the module and the gadget's `params.wasm`.
pub struct WasmOperator {
    module_name: String,
    wasm: Vec<u8>,
    cache_dir: Option<PathBuf>,
    params: Vec<(String, ParamSpec)>,
    values: BTreeMap<String, String>,
}

impl WasmOperator {
    /// `name` names the module in messages (the image reference);
    /// `cache_dir` holds compiled modules (`None`: always compile).
    pub fn new(
        name: String,
        wasm: Vec<u8>,
        metadata: &GadgetMetadata,
        cache_dir: Option<PathBuf>,
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
        }
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
            .source_ids()
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
                }
            })
            .collect();
        let rt = Runtime::new(&self, mirror).map_err(fail)?;
        let rt = Rc::new(RefCell::new(rt));
        let init = rt.borrow_mut().call_lifecycle("gadgetInit");
        init.map_err(fail)?;
        apply_ops(&rt, setup).map_err(fail)?;
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
/// its deadline is interrupted.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s) = (engine.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name("ig-wasm-epoch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    e.increment_epoch();
                }
            });
        if let Err(e) = spawned {
            ::log::warn!(
                "wasm: cannot start the timeout thread ({e}); guest calls have no time limit"
            );
        }
        Self { stop }
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
    _ticker: EpochTicker,
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
        add(unimplemented::add(&mut linker))?;

        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .inherit_stderr()
            .build_p1();
        let limits = StoreLimitsBuilder::new()
            .memory_size(MEMORY_LIMIT)
            .instances(4)
            .build();
        let mut host = HostState::new(wasi, limits, module.clone());
        host.sources = mirror;
        host.params = op.values.clone();
        host.has_callback = compiled.get_export("dataSourceCallback").is_some();
        let mut store = Store::new(&engine, host);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(deadline_ticks());
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
            _ticker: ticker,
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

    fn call_func(&mut self, f: Func, name: &str, args: &[Val]) -> Result<Option<Val>, WasmError> {
        let n = f.ty(&self.store).results().len();
        let mut results = vec![Val::I32(0); n];
        self.store.set_epoch_deadline(deadline_ticks());
        match f.call(&mut self.store, args, &mut results) {
            Ok(()) => Ok(results.into_iter().next()),
            Err(e) => Err(self.classify(name, &e)),
        }
    }

    fn classify(&self, function: &str, e: &wasmtime::Error) -> WasmError {
        let module = self.module().to_owned();
        let function = function.to_owned();
        if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
            return WasmError::Timeout { module, function };
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
        if let Err(e) = self.call_func(f, "dataSourceCallback", &args) {
            self.failed = true;
            self.failure = Some(e);
        }
    }
}

fn deadline_ticks() -> u64 {
    (CALL_TIMEOUT.as_millis() / EPOCH_TICK.as_millis()) as u64
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
        let mut rt = self.rt.borrow_mut();
        if rt.failed {
            return Flow::Continue;
        }
        let s = rt.store.data_mut();
        s.current = Some(std::mem::take(event));
        let h = s.add_handle(Handle::Data(self.src, DataRef::Current));
        if h != 0 {
            rt.callback(self.cb, self.ds_handle, h);
        }
        let s = rt.store.data_mut();
        s.remove_handle(h);
        *event = s.current.take().unwrap_or_default();
        Flow::Continue
    }

    fn on_array(&mut self, schema: &Schema, events: &mut Vec<Event>) -> Flow {
        if self.ty == SubType::Data {
            for e in events.iter_mut() {
                self.on_event(schema, e);
            }
            return Flow::Continue;
        }
        let mut rt = self.rt.borrow_mut();
        if rt.failed {
            return Flow::Continue;
        }
        let s = rt.store.data_mut();
        s.current_array = Some(std::mem::take(events));
        let h = s.add_handle(Handle::Array(self.src, state::ArrayRef::Current));
        if h != 0 {
            rt.callback(self.cb, self.ds_handle, h);
        }
        let s = rt.store.data_mut();
        s.remove_handle(h);
        *events = s.current_array.take().unwrap_or_default();
        Flow::Continue
    }
}

/// The running guest: lifecycle calls and the queue of emitted packets.
struct WasmInstance {
    rt: Rc<RefCell<Runtime>>,
}

impl WasmInstance {
    fn dispatch_emitted(&mut self, out: &mut Dispatch) -> Result<(), OperatorError> {
        let queued = {
            let mut rt = self.rt.borrow_mut();
            if let Some(e) = rt.failure.take() {
                return Err(OperatorError::failed("wasm", e));
            }
            std::mem::take(&mut rt.store.data_mut().emitted)
        };
        for (src, body) in queued {
            match body {
                Body::Single(mut e) => out.event(SourceId(src), &mut e),
                Body::Array(mut v) => out.array(SourceId(src), &mut v),
            }
        }
        Ok(())
    }
}

impl Instance for WasmInstance {
    fn start(&mut self) -> Result<(), OperatorError> {
        let mut rt = self.rt.borrow_mut();
        for f in ["gadgetPreStart", "gadgetStart"] {
            rt.call_lifecycle(f)
                .map_err(|e| OperatorError::failed("wasm", e))?;
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), OperatorError> {
        let mut rt = self.rt.borrow_mut();
        if rt.failed {
            return Ok(());
        }
        let stop = rt.call_lifecycle("gadgetStop");
        let post = rt.call_lifecycle("gadgetPostStop");
        stop.and(post).map_err(|e| OperatorError::failed("wasm", e))
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }
}

impl Source for WasmInstance {
    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        Vec::new()
    }

    fn drain(&mut self, _out: &mut Dispatch) -> Result<(), OperatorError> {
        Ok(())
    }

    fn tick(&mut self, out: &mut Dispatch) -> Result<Vec<crate::pipeline::Notice>, OperatorError> {
        {
            let mut rt = self.rt.borrow_mut();
            let s = rt.store.data_mut();
            if s.schemas.is_empty() {
                s.schemas = out.schemas().map(|(_, s)| s.clone()).collect();
            }
        }
        self.dispatch_emitted(out)?;
        Ok(Vec::new())
    }

    fn finish(&mut self, out: &mut Dispatch) -> Result<(), OperatorError> {
        self.dispatch_emitted(out)
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
