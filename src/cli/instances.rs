//! The daemon's headless gadget instances (upstream's
//! `GadgetInstanceManager`): runs that belong to the daemon, not to a
//! client, stored as files so that they come back when the daemon
//! starts again, and that clients attach to and detach from.
//!
//! The store is upstream's file store: one file per instance,
//! `STATE_DIR/gadgets/ID.gadget` (the directory mode 0700), holding the
//! `CreateGadgetInstanceRequest` as protobuf's canonical JSON (protojson:
//! lowerCamelCase names, 64-bit integers as strings, zero values left
//! out), so a file upstream's daemon wrote is read here and the reverse.
//! Files are written whole (a temp file, fsynced, renamed), read with a
//! size cap, and named only by ids checked against upstream's pattern
//! (32 lowercase hex digits): a name or id never reaches a path
//! otherwise. A file that does not read back is listed as an instance in
//! error, and the daemon starts all the same.
//!
//! Each instance runs on a thread of its own as a library run whose sink
//! keeps the last [`REPLAY`] events (upstream's buffer) and hands each
//! one to the attached clients' bounded queues (`try_send`: a slow client
//! loses events, counted by its sequence numbers, and never stalls the
//! run). An attached client first gets the run's `GadgetInfo` (with the
//! instance's id and name), then the kept events in order, then the live
//! ones.
//!
//! Does not own: the gRPC server and the client runs (`daemon`), the
//! wire format (`ig_api`), manifests (`ig::run::manifest`).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::daemon::{Queue, QueueRx, RunEncoder, notice_text};
use ig::run::manifest::{is_valid_id, is_valid_name};
use ig::run::{Event, EventSink, Notice, Schema, StopHandle, error_chain};
use ig_api::proto::{
    self, CreateGadgetInstanceRequest, GadgetEvent, GadgetInstance, GadgetInstanceState,
    GadgetInstanceStatus, GadgetRunRequest,
};
use ig_api::{API_VERSION, event_type, log_level};
use prost::Message as _;
use serde_json::{Map, Value, json};
use tonic::Status;

/// Events kept per instance for clients that attach later (upstream's
/// buffer length).
pub const REPLAY: usize = 1024;

/// Largest instance file, and largest create request: an instance is a
/// few parameters, not data.
pub const MAX_INSTANCE: usize = 64 << 10;

/// The instances' directory under the daemon's state directory
/// (upstream's `/var/lib/ig/gadgets`).
pub const SUBDIR: &str = "gadgets";

const SUFFIX: &str = ".gadget";

/// What a client's queue carries.
pub type Item = Result<GadgetEvent, Status>;

/// Why an instance file does not read back.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON of another shape.
    #[error("{0}")]
    Shape(String),
}

fn shape(msg: impl Into<String>) -> FileError {
    FileError::Shape(msg.into())
}

/// An instance request as protojson (upstream's file format).
pub fn to_protojson(req: &CreateGadgetInstanceRequest) -> Vec<u8> {
    let mut top = Map::new();
    if let Some(gi) = &req.gadget_instance {
        let mut o = Map::new();
        if !gi.id.is_empty() {
            o.insert("id".into(), json!(gi.id));
        }
        if let Some(c) = &gi.gadget_config {
            let mut cfg = Map::new();
            if !c.image_name.is_empty() {
                cfg.insert("imageName".into(), json!(c.image_name));
            }
            if !c.param_values.is_empty() {
                let sorted: BTreeMap<&String, &String> = c.param_values.iter().collect();
                cfg.insert("paramValues".into(), json!(sorted));
            }
            if !c.args.is_empty() {
                cfg.insert("args".into(), json!(c.args));
            }
            if c.version != 0 {
                cfg.insert("version".into(), json!(c.version));
            }
            if c.log_level != 0 {
                cfg.insert("logLevel".into(), json!(c.log_level));
            }
            if c.timeout != 0 {
                cfg.insert("timeout".into(), json!(c.timeout.to_string()));
            }
            o.insert("gadgetConfig".into(), Value::Object(cfg));
        }
        if !gi.tags.is_empty() {
            o.insert("tags".into(), json!(gi.tags));
        }
        if gi.time_created != 0 {
            o.insert("timeCreated".into(), json!(gi.time_created.to_string()));
        }
        if !gi.nodes.is_empty() {
            o.insert("nodes".into(), json!(gi.nodes));
        }
        if !gi.name.is_empty() {
            o.insert("name".into(), json!(gi.name));
        }
        top.insert("gadgetInstance".into(), Value::Object(o));
    }
    if req.event_buffer_length != 0 {
        top.insert("eventBufferLength".into(), json!(req.event_buffer_length));
    }
    serde_json::to_vec(&Value::Object(top)).expect("JSON of strings and numbers")
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, FileError> {
    v.as_object()
        .ok_or_else(|| shape(format!("{what} is not an object")))
}

fn only(o: &Map<String, Value>, what: &str, known: &[&str]) -> Result<(), FileError> {
    match o.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(shape(format!("{what}: unknown field {k:?}"))),
        None => Ok(()),
    }
}

fn string(o: &Map<String, Value>, key: &str) -> Result<String, FileError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(shape(format!("{key} is not a string"))),
    }
}

fn strings(o: &Map<String, Value>, key: &str) -> Result<Vec<String>, FileError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| shape(format!("{key} holds a non-string")))
            })
            .collect(),
        Some(_) => Err(shape(format!("{key} is not a list"))),
    }
}

/// A protojson integer: a number, or a string of one (64-bit ones are
/// written as strings).
fn integer<T: TryFrom<i64> + Default>(o: &Map<String, Value>, key: &str) -> Result<T, FileError> {
    let n = match o.get(key) {
        None | Some(Value::Null) => return Ok(T::default()),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse::<i64>().ok(),
        Some(_) => None,
    };
    n.and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| shape(format!("{key} is not an integer in range")))
}

/// An instance file's text as the request it stores.
pub fn from_protojson(bytes: &[u8]) -> Result<CreateGadgetInstanceRequest, FileError> {
    let v: Value = serde_json::from_slice(bytes)?;
    let top = object(&v, "the file")?;
    only(top, "the file", &["gadgetInstance", "eventBufferLength"])?;
    let gi = match top.get("gadgetInstance") {
        None | Some(Value::Null) => None,
        Some(g) => {
            let g = object(g, "gadgetInstance")?;
            only(
                g,
                "gadgetInstance",
                &[
                    "id",
                    "gadgetConfig",
                    "tags",
                    "timeCreated",
                    "nodes",
                    "name",
                    "state",
                ],
            )?;
            let config = match g.get("gadgetConfig") {
                None | Some(Value::Null) => None,
                Some(c) => {
                    let c = object(c, "gadgetConfig")?;
                    only(
                        c,
                        "gadgetConfig",
                        &[
                            "imageName",
                            "paramValues",
                            "args",
                            "version",
                            "logLevel",
                            "timeout",
                        ],
                    )?;
                    let params = match c.get("paramValues") {
                        None | Some(Value::Null) => Default::default(),
                        Some(p) => object(p, "paramValues")?
                            .iter()
                            .map(|(k, v)| {
                                v.as_str()
                                    .map(|s| (k.clone(), s.to_owned()))
                                    .ok_or_else(|| {
                                        shape(format!("paramValues.{k} is not a string"))
                                    })
                            })
                            .collect::<Result<_, _>>()?,
                    };
                    Some(GadgetRunRequest {
                        image_name: string(c, "imageName")?,
                        param_values: params,
                        args: strings(c, "args")?,
                        version: integer(c, "version")?,
                        log_level: integer(c, "logLevel")?,
                        timeout: integer(c, "timeout")?,
                        // Headless instances stream to attached clients one
                        // message per event, as upstream's do.
                        batch_events: false,
                    })
                }
            };
            Some(GadgetInstance {
                id: string(g, "id")?,
                gadget_config: config,
                tags: strings(g, "tags")?,
                time_created: integer(g, "timeCreated")?,
                nodes: strings(g, "nodes")?,
                name: string(g, "name")?,
                state: None,
            })
        }
    };
    Ok(CreateGadgetInstanceRequest {
        gadget_instance: gi,
        event_buffer_length: integer(top, "eventBufferLength")?,
    })
}

/// A fresh instance id: 32 hex digits from getrandom(2) (upstream's
/// form).
pub fn new_id() -> std::io::Result<String> {
    let mut s = ig::files::random_suffix()?;
    s.push_str(&ig::files::random_suffix()?);
    s.truncate(32);
    Ok(s)
}

/// A name for an instance created without one: the image's last path
/// component (cut to what a name may hold) and the id's first digits.
pub fn default_name(image: &str, id: &str) -> String {
    let base = image
        .rsplit('/')
        .next()
        .unwrap_or(image)
        .split([':', '@'])
        .next()
        .unwrap_or_default();
    let mut name: String = base
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(23)
        .collect();
    if !name.is_empty() {
        name.push('-');
    }
    name.push_str(&id[..id.len().min(8)]);
    name
}

/// What an instance's thread and its clients share.
#[derive(Default)]
struct Shared {
    status: i32,
    message: String,
    /// The run's `GadgetInfo` event, once it started.
    info: Option<GadgetEvent>,
    /// The last events, data ones only, with seq 0 (each client numbers
    /// its own stream).
    ring: VecDeque<GadgetEvent>,
    clients: Vec<Client>,
    /// Removed: the thread stops the run as soon as it has one.
    removed: bool,
    stop: Option<StopHandle>,
}

struct Client {
    id: u64,
    /// The daemon's bounded queue of the attached client (a full one
    /// drops; the client sees the gap in its seq).
    tx: Queue,
    seq: u32,
}

impl Shared {
    fn set_error(&mut self, msg: String) {
        self.status = GadgetInstanceStatus::StatusError as i32;
        self.message = msg;
    }

    /// A data event to the ring and every client.
    fn publish(&mut self, ev: GadgetEvent) {
        self.clients.retain_mut(|c| {
            c.seq = c.seq.wrapping_add(1);
            let mut e = ev.clone();
            e.seq = c.seq;
            c.tx.send_one(Ok(e))
        });
        if self.ring.len() == REPLAY {
            self.ring.pop_front();
        }
        self.ring.push_back(ev);
    }

    fn log(&mut self, level: u32, msg: &str) {
        let ev = GadgetEvent {
            r#type: event_type::log(level),
            seq: 0,
            payload: msg.as_bytes().to_vec(),
            data_source_id: 0,
        };
        for c in &self.clients {
            c.tx.send_one(Ok(ev.clone()));
        }
    }
}

/// One headless instance.
pub struct Instance {
    /// As stored (no state).
    spec: GadgetInstance,
    shared: Arc<Mutex<Shared>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Instance {
    fn errored(spec: GadgetInstance, msg: String) -> Self {
        let mut shared = Shared::default();
        shared.set_error(msg);
        Self {
            spec,
            shared: Arc::new(Mutex::new(shared)),
            thread: Mutex::new(None),
        }
    }

    /// The instance with its state now.
    pub fn with_state(&self) -> GadgetInstance {
        let s = self.shared.lock().expect("not poisoned");
        let mut gi = self.spec.clone();
        gi.state = Some(GadgetInstanceState {
            status: s.status,
            message: s.message.clone(),
        });
        gi
    }

    /// Stop the run and wait for its thread: nothing of it is loaded
    /// afterwards.
    fn stop_and_join(&self) {
        {
            let mut s = self.shared.lock().expect("not poisoned");
            s.removed = true;
            if let Some(stop) = &s.stop {
                stop.stop();
            }
            s.clients.clear();
        }
        if let Some(t) = self.thread.lock().expect("not poisoned").take() {
            let _ = t.join();
        }
    }

    /// A client: the run's layout, the kept events, then the live ones,
    /// through a queue of `buffer` items.
    pub fn attach(&self, buffer: usize) -> Result<(u64, QueueRx), Status> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let mut s = self.shared.lock().expect("not poisoned");
        let Some(info) = s.info.clone() else {
            return Err(if s.status == GadgetInstanceStatus::StatusError as i32 {
                Status::failed_precondition(format!(
                    "instance {} is in error: {}",
                    self.spec.id, s.message
                ))
            } else {
                Status::unavailable(format!("instance {} has not started yet", self.spec.id))
            });
        };
        let (tx, rx) = Queue::new(buffer.max(s.ring.len() + 2));
        tx.send_one(Ok(info));
        let mut seq = 0u32;
        for ev in &s.ring {
            seq = seq.wrapping_add(1);
            let mut e = ev.clone();
            e.seq = seq;
            tx.send_one(Ok(e));
        }
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        s.clients.push(Client { id, tx, seq });
        Ok((id, rx))
    }

    /// The client `id` leaves (its stream ends).
    pub fn detach(&self, id: u64) {
        self.shared
            .lock()
            .expect("not poisoned")
            .clients
            .retain(|c| c.id != id);
    }
}

/// What the daemon needs to run an instance.
pub trait Runner: Send + Sync + 'static {
    /// The run of instance `id`'s `config`, not started; or why `config`
    /// cannot be one. The parameters `ig run -f` takes from a manifest
    /// for itself (its printers, annotations) are understood as it does.
    fn run(&self, config: &GadgetRunRequest, id: &str) -> Result<ig::run::GadgetRun, String>;
    /// The instance's `GadgetInfo` but for its data sources.
    fn info(&self, info: &ig::run::GadgetInfo, image: &str) -> proto::GadgetInfo;
    /// Register a started run (SIGTERM stops it); its key.
    fn started(&self, stop: StopHandle) -> u64;
    /// A run registered as `key` ended.
    fn ended(&self, key: u64);
}

/// Every instance of the daemon and their directory.
pub struct Instances {
    dir: PathBuf,
    runner: Arc<dyn Runner>,
    map: Mutex<BTreeMap<String, Arc<Instance>>>,
}

impl Instances {
    /// The instances stored under `state_dir`, each started again (or
    /// listed in error). The directory is made if missing.
    pub fn load(state_dir: &Path, runner: Arc<dyn Runner>) -> anyhow::Result<Arc<Self>> {
        use anyhow::Context as _;
        use std::os::unix::fs::DirBuilderExt as _;
        let dir = state_dir.join(SUBDIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let me = Arc::new(Self {
            dir,
            runner,
            map: Mutex::new(BTreeMap::new()),
        });
        let entries =
            std::fs::read_dir(&me.dir).with_context(|| format!("reading {}", me.dir.display()))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(SUFFIX))
            .collect();
        names.sort();
        for file in names {
            let id = file.trim_end_matches(SUFFIX).to_owned();
            if !is_valid_id(&id) {
                log::warn!(
                    "{}: ignored: not named by an instance id (32 hex digits)",
                    me.dir.join(&file).display()
                );
                continue;
            }
            match me.read(&id) {
                Ok(spec) => {
                    log::info!("instance {id} ({}): starting again", spec.name);
                    let inst = me.spawn(spec);
                    me.map.lock().expect("not poisoned").insert(id, inst);
                }
                Err(msg) => {
                    log::error!("instance {id}: {msg}");
                    let spec = GadgetInstance {
                        id: id.clone(),
                        ..GadgetInstance::default()
                    };
                    me.map
                        .lock()
                        .expect("not poisoned")
                        .insert(id, Arc::new(Instance::errored(spec, msg)));
                }
            }
        }
        Ok(me)
    }

    fn path(&self, id: &str) -> PathBuf {
        debug_assert!(is_valid_id(id));
        self.dir.join(format!("{id}{SUFFIX}"))
    }

    /// The stored instance `id`, checked as a create request is.
    fn read(&self, id: &str) -> Result<GadgetInstance, String> {
        use std::io::Read as _;
        let path = self.path(id);
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_INSTANCE as u64 + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if bytes.len() > MAX_INSTANCE {
            return Err(format!(
                "{}: larger than {MAX_INSTANCE} bytes",
                path.display()
            ));
        }
        let req = from_protojson(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let gi = req
            .gadget_instance
            .ok_or_else(|| format!("{}: no gadgetInstance", path.display()))?;
        check(&gi).map_err(|s| format!("{}: {}", path.display(), s.message()))?;
        if gi.id != id {
            return Err(format!(
                "{}: it holds instance {:?}, not {id}",
                path.display(),
                gi.id
            ));
        }
        Ok(gi)
    }

    /// Start the instance's thread.
    fn spawn(self: &Arc<Self>, spec: GadgetInstance) -> Arc<Instance> {
        let inst = Arc::new(Instance {
            spec,
            shared: Arc::new(Mutex::new(Shared::default())),
            thread: Mutex::new(None),
        });
        let runner = self.runner.clone();
        let for_thread = inst.clone();
        let t = std::thread::Builder::new()
            .name("ig-instance".into())
            .spawn(move || run_instance(&for_thread, runner.as_ref()));
        match t {
            Ok(t) => *inst.thread.lock().expect("not poisoned") = Some(t),
            Err(e) => inst
                .shared
                .lock()
                .expect("not poisoned")
                .set_error(format!("starting a thread: {e}")),
        }
        inst
    }

    /// A new instance: checked, its image described (a create that cannot
    /// run stores nothing), stored, started. Blocking.
    pub fn create(
        self: &Arc<Self>,
        mut req: CreateGadgetInstanceRequest,
    ) -> Result<GadgetInstance, Status> {
        if req.encoded_len() > MAX_INSTANCE {
            return Err(Status::invalid_argument(format!(
                "the instance is larger than {MAX_INSTANCE} bytes"
            )));
        }
        let gi = req
            .gadget_instance
            .as_mut()
            .ok_or_else(|| Status::invalid_argument("no gadgetInstance"))?;
        if gi.id.is_empty() {
            gi.id = new_id().map_err(|e| Status::internal(format!("a random id: {e}")))?;
        }
        let image = gi
            .gadget_config
            .as_ref()
            .map(|c| c.image_name.clone())
            .unwrap_or_default();
        if gi.name.is_empty() {
            gi.name = default_name(&image, &gi.id);
        }
        gi.state = None;
        gi.time_created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        check(gi)?;
        let config = gi.gadget_config.clone().expect("checked");
        let mut run = self
            .runner
            .run(&config, &gi.id)
            .map_err(Status::invalid_argument)?;
        // Verified before any of the image is parsed.
        run.describe_trusted()
            .map_err(|e| Status::invalid_argument(error_chain(&e)))?;
        let spec = gi.clone();
        let mut map = self.map.lock().expect("not poisoned");
        if map.contains_key(&spec.id) {
            return Err(Status::already_exists(format!(
                "an instance with id {} exists",
                spec.id
            )));
        }
        if map.values().any(|i| i.spec.name == spec.name) {
            return Err(Status::already_exists(format!(
                "an instance named {} exists",
                spec.name
            )));
        }
        self.store(&req)
            .map_err(|e| Status::internal(format!("storing the instance: {e}")))?;
        let inst = self.spawn(spec.clone());
        map.insert(spec.id.clone(), inst);
        Ok(spec)
    }

    fn store(&self, req: &CreateGadgetInstanceRequest) -> std::io::Result<()> {
        use std::io::Write as _;
        let id = &req.gadget_instance.as_ref().expect("checked").id;
        let tmp = ig::files::TempFile::create(&self.dir, ".tmp-", 0o600)?;
        tmp.as_file().write_all(&to_protojson(req))?;
        tmp.persist_as(format!("{id}{SUFFIX}").as_ref())
    }

    /// Every instance with its state, oldest first.
    pub fn list(&self) -> Vec<GadgetInstance> {
        let mut v: Vec<GadgetInstance> = self
            .map
            .lock()
            .expect("not poisoned")
            .values()
            .map(|i| i.with_state())
            .collect();
        v.sort_by(|a, b| (a.time_created, &a.id).cmp(&(b.time_created, &b.id)));
        v
    }

    /// The instance of id `id` (exactly, as upstream's Get and Remove).
    pub fn get(&self, id: &str) -> Result<Arc<Instance>, Status> {
        if !is_valid_id(id) {
            return Err(Status::invalid_argument(format!(
                "invalid gadget instance id: {id:?} (32 lowercase hex digits)"
            )));
        }
        self.map
            .lock()
            .expect("not poisoned")
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no gadget instance {id}")))
    }

    /// The instance an attach names: its id, its name, or a prefix of one
    /// id only.
    pub fn lookup(&self, key: &str) -> Result<Arc<Instance>, Status> {
        let map = self.map.lock().expect("not poisoned");
        if let Some(i) = map.get(key) {
            return Ok(i.clone());
        }
        if let Some(i) = map.values().find(|i| i.spec.name == key) {
            return Ok(i.clone());
        }
        let prefixed: Vec<&Arc<Instance>> = if key.is_empty() {
            Vec::new()
        } else {
            map.iter()
                .filter(|(id, _)| id.starts_with(key))
                .map(|(_, i)| i)
                .collect()
        };
        match prefixed.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Status::not_found(format!("no gadget instance {key:?}"))),
            _ => Err(Status::invalid_argument(format!(
                "{key:?} is the prefix of {} instances' ids",
                prefixed.len()
            ))),
        }
    }

    /// Stop and forget the instance `id`, and delete its file. Blocking.
    pub fn remove(&self, id: &str) -> Result<(), Status> {
        let inst = self.get(id)?;
        inst.stop_and_join();
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Status::internal(format!(
                    "removing {}: {e}",
                    path.display()
                )));
            }
        }
        self.map.lock().expect("not poisoned").remove(id);
        Ok(())
    }

    /// Stop every instance's run (their files stay: they run again at the
    /// next start) and wait for their threads.
    pub fn stop_all(&self) {
        let all: Vec<Arc<Instance>> = self
            .map
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        for i in all {
            i.stop_and_join();
        }
    }
}

/// An instance as upstream checks it: id and name in their patterns, a
/// run request of this protocol's version with an image.
fn check(gi: &GadgetInstance) -> Result<(), Status> {
    if !is_valid_id(&gi.id) {
        return Err(Status::invalid_argument(format!(
            "invalid gadget instance id: {:?} (32 lowercase hex digits)",
            gi.id
        )));
    }
    if !is_valid_name(&gi.name) {
        return Err(Status::invalid_argument(format!(
            "invalid gadget instance name: {:?} (1 to 32 of a-z, 0-9, - and _)",
            gi.name
        )));
    }
    if let Some(t) = gi.tags.iter().find(|t| t.contains(',') || t.len() > 256) {
        return Err(Status::invalid_argument(format!("invalid tag {t:?}")));
    }
    let Some(c) = &gi.gadget_config else {
        return Err(Status::invalid_argument("no gadgetConfig"));
    };
    if c.version != API_VERSION {
        return Err(Status::invalid_argument(format!(
            "gadgetConfig version {} is not supported (this server speaks {API_VERSION})",
            c.version
        )));
    }
    if c.image_name.is_empty() {
        return Err(Status::invalid_argument("gadgetConfig names no image"));
    }
    Ok(())
}

/// An instance's thread: describe and start its run, publish its events
/// until it ends, and say why it ended in its state.
fn run_instance(inst: &Instance, runner: &dyn Runner) {
    let config = inst.spec.gadget_config.clone().unwrap_or_default();
    let mut run = match runner.run(&config, &inst.spec.id) {
        Ok(r) => r,
        Err(msg) => {
            log::error!("instance {}: {msg}", inst.spec.id);
            inst.shared.lock().expect("not poisoned").set_error(msg);
            return;
        }
    };
    // Verified before any of the image is parsed.
    let info = match run.describe_trusted() {
        Ok(i) => i,
        Err(e) => {
            let msg = format!("the image does not load: {}", error_chain(&e));
            log::error!("instance {}: {msg}", inst.spec.id);
            inst.shared.lock().expect("not poisoned").set_error(msg);
            return;
        }
    };
    let mut template = runner.info(&info, &config.image_name);
    template.id.clone_from(&inst.spec.id);
    template.name.clone_from(&inst.spec.name);
    let sink = InstanceSink {
        shared: inst.shared.clone(),
        wire: RunEncoder::new(template),
        seq: 0,
    };
    let handle = match run.sink(sink).spawn() {
        Ok(h) => h,
        Err(e) => {
            let msg = format!("the run does not start: {}", error_chain(&e));
            log::error!("instance {}: {msg}", inst.spec.id);
            inst.shared.lock().expect("not poisoned").set_error(msg);
            return;
        }
    };
    let key = runner.started(handle.stop_handle());
    {
        let mut s = inst.shared.lock().expect("not poisoned");
        s.stop = Some(handle.stop_handle());
        if s.removed {
            handle.stop_handle().stop();
        }
    }
    let result = handle.join();
    runner.ended(key);
    let mut s = inst.shared.lock().expect("not poisoned");
    s.stop = None;
    match result {
        Err(e) => {
            let msg = error_chain(&e);
            s.log(log_level::ERROR, &msg);
            s.set_error(msg);
        }
        Ok(summary) if !s.removed => {
            s.set_error(format!("the run ended ({:?})", summary.reason));
        }
        Ok(_) => {}
    }
    // Attached clients' streams end with the run.
    s.clients.clear();
}

/// An instance run's events, into its ring and to its clients.
struct InstanceSink {
    shared: Arc<Mutex<Shared>>,
    wire: RunEncoder,
    seq: u32,
}

impl InstanceSink {
    fn publish(&mut self, source: usize, payload: Vec<u8>) {
        self.shared
            .lock()
            .expect("not poisoned")
            .publish(GadgetEvent {
                r#type: event_type::DATA,
                seq: 0,
                payload,
                data_source_id: source as u32,
            });
    }
}

impl EventSink for InstanceSink {
    fn on_start(&mut self, sources: &[Arc<Schema>]) {
        let ev = GadgetEvent {
            r#type: event_type::GADGET_INFO,
            seq: 0,
            payload: self.wire.start(sources),
            data_source_id: 0,
        };
        let mut s = self.shared.lock().expect("not poisoned");
        s.info = Some(ev);
        // Loaded and attached: running from now on.
        s.status = GadgetInstanceStatus::StatusRunning as i32;
        s.message.clear();
    }

    fn on_event(&mut self, schema: &Schema, event: &Event) {
        let Some(i) = self.wire.source(schema) else {
            return;
        };
        self.wire.encode(i, schema, event);
        self.seq = self.seq.wrapping_add(1);
        let payload = self.wire.data_payload(self.seq);
        self.publish(i, payload);
    }

    fn on_array(&mut self, schema: &Schema, events: &[Event]) {
        let Some(i) = self.wire.source(schema) else {
            return;
        };
        self.seq = self.seq.wrapping_add(1);
        let payload = self.wire.array_payload(i, schema, events, self.seq);
        self.publish(i, payload);
    }

    fn on_notice(&mut self, n: &Notice) {
        self.shared
            .lock()
            .expect("not poisoned")
            .log(log_level::WARN, &notice_text(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CreateGadgetInstanceRequest {
        CreateGadgetInstanceRequest {
            gadget_instance: Some(GadgetInstance {
                id: "0123456789abcdef0123456789abcdef".into(),
                gadget_config: Some(GadgetRunRequest {
                    image_name: "ghcr.io/x/trace_exec:latest".into(),
                    param_values: [("operator.oci.ebpf.paths".to_owned(), "true".to_owned())]
                        .into_iter()
                        .collect(),
                    args: Vec::new(),
                    version: 1,
                    log_level: 0,
                    timeout: 5_000_000_000,
                    batch_events: false,
                }),
                tags: vec!["a".into(), "b".into()],
                time_created: 1_700_000_000,
                nodes: Vec::new(),
                name: "execs".into(),
                state: None,
            }),
            event_buffer_length: 0,
        }
    }

    #[test]
    fn protojson_round_trips_in_upstream_s_spelling() {
        let req = sample();
        let text = String::from_utf8(to_protojson(&req)).unwrap();
        assert_eq!(
            text,
            r#"{"gadgetInstance":{"gadgetConfig":{"imageName":"ghcr.io/x/trace_exec:latest","paramValues":{"operator.oci.ebpf.paths":"true"},"timeout":"5000000000","version":1},"id":"0123456789abcdef0123456789abcdef","name":"execs","tags":["a","b"],"timeCreated":"1700000000"}}"#
        );
        assert_eq!(from_protojson(text.as_bytes()).unwrap(), req);
        // Numbers for 64-bit integers are read too, as protojson does.
        let alt = text.replace(
            r#""timeCreated":"1700000000""#,
            r#""timeCreated":1700000000"#,
        );
        assert_eq!(from_protojson(alt.as_bytes()).unwrap(), req);
    }

    #[test]
    fn hostile_files_are_errors_not_panics() {
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{\"gadgetInstance\":7}",
            b"{\"gadgetInstance\":{\"id\":3}}",
            b"{\"gadgetInstance\":{\"timeCreated\":\"99999999999999999999999\"}}",
            b"{\"gadgetInstance\":{\"gadgetConfig\":{\"version\":-1}}}",
            b"{\"gadgetInstance\":{\"gadgetConfig\":{\"paramValues\":{\"a\":1}}}}",
            b"{\"surprise\":1}",
        ] {
            assert!(
                from_protojson(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn ids_and_names_are_upstream_s_patterns() {
        let mut gi = sample().gadget_instance.unwrap();
        assert!(check(&gi).is_ok());
        for id in [
            "../../etc/passwd",
            "0123456789ABCDEF0123456789ABCDEF",
            "",
            "0123",
        ] {
            gi.id = id.into();
            assert!(check(&gi).is_err(), "{id}");
        }
        gi.id = new_id().unwrap();
        assert!(is_valid_id(&gi.id), "{}", gi.id);
        for name in ["../x", "a/b", "", "UPPER", &"x".repeat(33)] {
            gi.name = name.into();
            assert!(check(&gi).is_err(), "{name}");
        }
        let n = default_name("ghcr.io/inspektor-gadget/gadget/Trace_Exec:v1", &gi.id);
        assert!(is_valid_name(&n), "{n}");
        assert!(n.starts_with("trace_exec-"), "{n}");
        assert!(is_valid_name(&default_name(&"y".repeat(300), &gi.id)));
    }
}
