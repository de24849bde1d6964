//! The local manager (priority -1, upstream's `LocalManager`): which
//! container an event comes from, and selecting containers.
//!
//! Reads fields tagged `type:gadget_mntns_id` and, for data sources
//! without one, `type:gadget_netns_id` (a network namespace owned by
//! exactly one container names it; a pod's shared one names none). Writes,
//! for each such data source, upstream's owned fields, placed first:
//! `k8s.{node,namespace,podName,containerName,hostnetwork,podLabels,
//! owner.kind,owner.name}` (hidden in tables, in JSON, as upstream's `ig`)
//! and `runtime.{containerName,containerId,runtimeName,containerImageName,
//! containerPid,containerImageDigest,containerStartedAt}` (tables show the
//! name when containers are selected). `k8s.node` of a container's event
//! is `NODE_NAME` (set by the DaemonSet of deploy/kubernetes from the
//! downward API); `k8s.podLabels` and `k8s.owner.*` need the Kubernetes API
//! server and stay empty. Host events (no container) get empty strings and
//! zeros.
//!
//! Parameters (upstream's names): the selectors `-c/--containername`
//! (= `--runtime-containername`), `--k8s-namespace`, `--k8s-podname`,
//! `--k8s-containername`, `--runtime-containerimage-digest`,
//! `--runtime-containerimage-id` (comma lists, `!` excludes; a container
//! must match every list given), `--host`; where containers come from:
//! `-r/--runtimes`, `--{docker,containerd,crio,podman}-socketpath`,
//! `--containerd-namespace` (a runtime or socket named explicitly that does
//! not exist is an error); and the flags a host without an API server
//! cannot serve (`--k8s-selector`, `--enrich-with-k8s-apiserver`,
//! `--runtime-protocol cri`), refused with the reason.
//!
//! With a selector and without `--host`, the selection is made **in the
//! kernel**: the shared [`MntnsFilter`] is enabled, the eBPF operator sets
//! `gadget_filter_by_mntns` and attaches `gadget_mntns_filter_map` to it,
//! and every change of the selected set is written to the map at once.
//! Events of other mount namespaces are also dropped here, which covers
//! gadgets without the map and the moment between a container's exit and
//! the next refresh. With a selector and `--host` the kernel filter is off
//! (the host is not one mount namespace) and the selection is made here:
//! selected containers plus host events. Without a selector every event
//! passes, host and containers alike (upstream shows only containers
//! unless `--host`; we keep every event because most use of `ig` here is
//! on hosts without containers). `-c '!'` (every container but none) gives
//! upstream's default.
//!
//! When the eBPF operator follows containers (uprobes in their files,
//! socket filters in their network namespaces, TC programs on their
//! interfaces: `bpf::targets`), the manager stays active even for a gadget
//! without a mount namespace field, refreshes as often as
//! when selecting, and publishes the run's host flag and selected
//! containers at every refresh.
//!
//! `-c` naming no running container is a warning, not an error: the
//! container may start after `ig` (the usual way to trace a container's
//! start-up), and the table is refreshed every second while filtering, so
//! its events appear as soon as it runs.
//!
//! A selector naming no running container is a warning, not an error: the
//! container may start after `ig` (the usual way to trace a start-up).
//!
//! New containers are seen at once: the table is refreshed when the
//! runtimes' runc state directories change or docker's event stream says
//! something (`containers::watch`, polled with the gadget's fds), and a
//! runtime's `runc` exec is held (`containers::hook`, a thread) until the
//! table and the kernel filter know the container it is about to start,
//! so not even its first event is lost; `/proc` is walked again only when
//! the set of runc state files changed or docker said something. A slow
//! timer rescans as a safety net: every [`IDLE_REFRESH`] (every second
//! while selecting if the watches could not be set up), and after an event
//! of an unknown mount namespace at most once a second.
//! A container found gone leaves the kernel filter at once and the table
//! after [`DEPARTED_GRACE`], so the events it made before it exited, read
//! from the kernel after that, still carry its name.
//!
//! The `containers` data source (upstream's, for guests such as
//! traceloop's that attach per container): made when the gadget's
//! top-level `gadget.yaml` annotation `enable-containers-datasource` is
//! true, which also keeps the manager in a gadget without a namespace
//! field. Fields in upstream's order: `event_type` (`CREATED`, `DELETED`),
//! `container_id`, `cgroup_id` (cgroup v2), `mntns_id`, `name`,
//! `container_config` (the bundle's `config.json`). A refresh compares the
//! selected containers with what was announced: CREATED for each one
//! running at the start (and, with `--host`, one row for the host: pid
//! 1's mount namespace, no id or name, as upstream's stand-in container),
//! then CREATED for new ones and DELETED for those gone, each once. The
//! rows wait in a queue and are emitted from this operator's source
//! (drain and tick), so a WASM guest that subscribes in `gadgetStart` sees
//! the first ones too. The cgroup id and the configuration are read once,
//! when a container is first announced. Annotated
//! `cli.default-output-mode: none`: printed only when `-o` is given.
//!
//! Cost per event: one hash lookup by namespace id and the field copies
//! into the event's reused buffers (none when the previous event had the
//! same namespace); no allocation, no system call. Per wake-up of the
//! event loop: one `epoll_wait` without waiting.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::bpf::mntns_filter::MntnsFilter;
use crate::bpf::targets::{Targets, Workload};
use crate::containers::hook::{HOLD_LIMIT, Hook};
use crate::containers::watch::Watcher;
use crate::containers::{Config, Container, Detector, HostRoot, Runtime, Selection, Selector};
use crate::datasource::ValueRef;
use crate::datasource::{
    Event, FieldId, FieldKind, Schema, SchemaBuilder, SchemaError, SourceKind, Value,
};
use crate::metadata::GadgetMetadata;
use crate::params::{ParamSpec, ParamType, ParamValue, ParamValues};
use crate::pipeline::{
    Dispatch, Flow, Handler, HandlerError, Instance, Notice, Operator, OperatorError, Priority,
    Setup, Source, SourceId, priority,
};

const NAME: &str = "LocalManager";
const PREFIX: &str = "operator.LocalManager.";

/// Shortest time between two timer walks of `/proc`.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Refresh period without a selector (with one: [`MIN_REFRESH`]).
const IDLE_REFRESH: Duration = Duration::from_secs(10);
/// An unknown mount namespace that stayed unknown after a refresh does not
/// cause another one for this long.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Unknown mount namespaces remembered between two refreshes.
const PENDING_MAX: usize = 16;
/// How long a container that is gone still names the events of its mount
/// namespace (events read from the kernel before its exit was seen; the
/// kernel filter drops it at once).
const DEPARTED_GRACE: Duration = Duration::from_secs(1);

/// The selector parameters: key, description, and where the list goes.
const SELECTORS: &[(&str, Option<char>, &str)] = &[
    (
        "containername",
        Some('c'),
        "Show only events of these containers (runtime-assigned names: docker's, podman's; a pod's container name for containerd and cri-o), selected in the kernel. Comma-separated; !name excludes one",
    ),
    (
        "runtime-containername",
        None,
        "Same as --containername (upstream's other name for it)",
    ),
    (
        "k8s-namespace",
        None,
        "Kubernetes namespaces to select (comma-separated; ! excludes), from the runtimes' annotations and labels",
    ),
    (
        "k8s-podname",
        None,
        "Kubernetes pods to select (comma-separated; ! excludes)",
    ),
    (
        "k8s-containername",
        None,
        "Kubernetes container names (the pod spec's) to select (comma-separated; ! excludes)",
    ),
    (
        "runtime-containerimage-digest",
        None,
        "Image digests (sha256:...) to select (comma-separated; ! excludes); docker and podman know digests of pulled or pushed images only",
    ),
    (
        "runtime-containerimage-id",
        None,
        "Image ids to select: sha256:<hex>, or 12 or more of its hex digits (comma-separated; ! excludes)",
    ),
];

/// The parameters of `--runtimes` and the sockets.
const RUNTIMES: &str = "runtimes";
const SOCKETS: &[(&str, Runtime)] = &[
    ("docker-socketpath", Runtime::Docker),
    ("containerd-socketpath", Runtime::Containerd),
    ("crio-socketpath", Runtime::CriO),
    ("podman-socketpath", Runtime::Podman),
];
const CONTAINERD_NAMESPACE: &str = "containerd-namespace";
const HOST: &str = "host";
/// Flags upstream has that need what a host without an API server lacks.
const K8S_SELECTOR: &str = "k8s-selector";
const APISERVER: &str = "enrich-with-k8s-apiserver";
const PROTOCOL: &str = "runtime-protocol";

fn full(key: &str) -> String {
    format!("{PREFIX}{key}")
}

/// The top-level `gadget.yaml` annotation that asks for the `containers`
/// data source (upstream's; traceloop sets it).
pub const CONTAINERS_ANNOTATION: &str = "enable-containers-datasource";
/// The data source of container events (upstream's name).
pub const CONTAINERS_SOURCE: &str = "containers";

/// Whether `meta` asks for the `containers` data source: its annotation
/// read as upstream reads it (a boolean as Go's `strconv.ParseBool`
/// spells one).
pub fn wants_containers_source(meta: &GadgetMetadata) -> bool {
    meta.annotations
        .get(CONTAINERS_ANNOTATION)
        .is_some_and(|v| matches!(v.trim(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
}

/// The operator. The detector can be replaced for tests.
pub struct LocalManager {
    filter: MntnsFilter,
    /// Where the eBPF operator attaches programs that follow containers:
    /// published at every walk while it wants them.
    targets: Targets,
    selection: Selection,
    host: bool,
    config: Config,
    detect: Option<Box<dyn FnMut() -> Snapshot>>,
    /// Watch the runtimes and hold them for new containers (off in tests
    /// with a fake detector).
    live: bool,
    /// Make the `containers` data source ([`wants_containers_source`]).
    containers_source: bool,
    /// `k8s.node` of containers' events: `NODE_NAME`, which the
    /// DaemonSet of deploy/kubernetes sets from the downward API
    /// (`spec.nodeName`), as upstream's pods do. Empty when unset.
    node: Rc<str>,
}

/// What one refresh found.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The containers found.
    pub containers: Vec<Container>,
    /// The host's mount namespace, if readable.
    pub host_mntns: Option<u64>,
    /// The runc state directories' summary taken just before the scan
    /// (`Detector::state_fingerprint`); `None`: unknown, never skip a scan.
    pub fingerprint: Option<u64>,
}

impl Default for LocalManager {
    fn default() -> Self {
        Self::new(MntnsFilter::default())
    }
}

impl LocalManager {
    /// Detect the host's containers; `filter` is shared with the eBPF
    /// operator (an unshared one means selection in user space only).
    pub fn new(filter: MntnsFilter) -> Self {
        Self {
            filter,
            targets: Targets::default(),
            selection: Selection::default(),
            host: false,
            config: Config::default(),
            detect: None,
            live: true,
            containers_source: false,
            node: std::env::var("NODE_NAME").unwrap_or_default().into(),
        }
    }

    /// The node name written to `k8s.node` (instead of `NODE_NAME`).
    #[must_use]
    pub fn with_node(mut self, node: &str) -> Self {
        self.node = node.into();
        self
    }

    /// Make the `containers` data source (the gadget's
    /// `enable-containers-datasource` annotation): a row per container
    /// found running and per container gone.
    #[must_use]
    pub fn with_containers_source(mut self, on: bool) -> Self {
        self.containers_source = on;
        self
    }

    /// Publish the selected containers to `targets` (shared with the eBPF
    /// operator) while it wants them.
    #[must_use]
    pub fn with_targets(mut self, targets: Targets) -> Self {
        self.targets = targets;
        self
    }

    /// A manager whose containers come from `detect` (tests hand in their own).
    pub fn with_detector(filter: MntnsFilter, detect: impl FnMut() -> Snapshot + 'static) -> Self {
        Self {
            detect: Some(Box::new(detect)),
            live: false,
            ..Self::new(filter)
        }
    }
}

fn string_param(key: &str, alias: Option<char>, description: &str) -> ParamSpec {
    ParamSpec {
        key: key.into(),
        full_name: full(key),
        description: description.into(),
        default: String::new(),
        ty: ParamType::String { max_len: None },
        group: "Containers".into(),
        alias,
    }
}

fn str_value<'a>(values: &'a ParamValues, key: &str) -> Option<&'a str> {
    match values.get(&full(key)) {
        Some(ParamValue::Str(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// Why a flag cannot be served on a host, or `None`.
pub fn refused(values: &ParamValues) -> Option<String> {
    if str_value(values, K8S_SELECTOR).is_some_and(|s| !s.is_empty()) {
        return Some(
            "--k8s-selector selects by pod labels, which only the Kubernetes API server or a CRI connection knows; ig on a host has neither (select with --k8s-podname or --k8s-namespace)".into(),
        );
    }
    if matches!(values.get(&full(APISERVER)), Some(ParamValue::Bool(true))) {
        return Some(
            "--enrich-with-k8s-apiserver needs a Kubernetes API client, which this ig does not have; k8s.namespace, k8s.podName and k8s.containerName come from the runtimes' annotations and labels without it".into(),
        );
    }
    if str_value(values, PROTOCOL).is_some_and(|p| p == "cri") {
        return Some(
            "--runtime-protocol cri needs a CRI (gRPC) client, which this ig does not have; the runtimes' state files and docker's and podman's HTTP API are read instead (--runtime-protocol internal)".into(),
        );
    }
    None
}

/// Every parameter that says where containers come from, shared with
/// `ig list-containers`'s flags.
pub fn source_params() -> Vec<ParamSpec> {
    let mut v = vec![
        string_param(
            RUNTIMES,
            Some('r'),
            "Container runtimes to read (comma-separated: docker, containerd, cri-o, podman) [default: all of them, those without a socket skipped]; a runtime named here whose socket does not exist is an error. Containers found by their cgroup (plain runc, systemd-nspawn) are listed whatever this says",
        ),
        string_param(
            CONTAINERD_NAMESPACE,
            None,
            "Read only this containerd namespace's containers [default: every namespace; upstream's default is k8s.io]",
        ),
    ];
    for (key, r) in SOCKETS {
        let default = crate::containers::DEFAULT_SOCKETS
            .iter()
            .find(|(d, _)| d == r)
            .map_or("", |(_, p)| *p);
        v.push(string_param(
            key,
            None,
            &format!(
                "Socket of {} [default: {default}]; given explicitly, it must exist (read under HOST_ROOT)",
                r.name()
            ),
        ));
    }
    v.push(ParamSpec {
        ty: ParamType::Choice(vec!["internal".into(), "cri".into()]),
        ..string_param(
            PROTOCOL,
            None,
            "How to talk to the runtimes: internal (state files, docker's and podman's HTTP API); cri is refused (no CRI client here)",
        )
    });
    v.push(ParamSpec {
        ty: ParamType::Bool,
        default: "false".into(),
        ..string_param(APISERVER, None, "Refused: needs the Kubernetes API server")
    });
    v
}

/// The detector configuration from the source parameters (the checks of
/// upstream: named runtimes and sockets must exist).
pub fn config_from(values: &ParamValues) -> Result<Config, crate::containers::ConfigError> {
    let sockets: Vec<(Runtime, &str)> = SOCKETS
        .iter()
        .filter_map(|(k, r)| str_value(values, k).map(|p| (*r, p)))
        .collect();
    Config::from_flags(
        crate::containers::HostRoot::from_env(),
        str_value(values, RUNTIMES),
        &sockets,
        str_value(values, CONTAINERD_NAMESPACE).filter(|n| !n.is_empty()),
    )
}

impl Operator for LocalManager {
    fn name(&self) -> &'static str {
        NAME
    }
    /// After the eBPF operator, whose data sources it extends (upstream's
    /// image operators run at -1000, ours at 0); its handlers still run at
    /// upstream's -1, before the formatters and the filter.
    fn priority(&self) -> Priority {
        priority::EBPF + 1
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut v: Vec<ParamSpec> = SELECTORS
            .iter()
            .map(|(k, a, d)| string_param(k, *a, d))
            .collect();
        v.push(string_param(
            K8S_SELECTOR,
            None,
            "Refused: selecting by pod labels needs the Kubernetes API server",
        ));
        v.push(ParamSpec {
            ty: ParamType::Bool,
            default: "false".into(),
            ..string_param(
                HOST,
                None,
                "With a container selector, show host events too (without one, every event is shown anyway)",
            )
        });
        v.extend(source_params());
        v
    }
    fn apply_params(&mut self, values: &ParamValues) -> Result<(), OperatorError> {
        if let Some(why) = refused(values) {
            return Err(OperatorError::failed(NAME, why));
        }
        let list = |k: &str| Selector::parse(str_value(values, k).unwrap_or_default());
        let mut name = list("containername");
        let other = list("runtime-containername");
        name.include.extend(other.include);
        name.exclude.extend(other.exclude);
        self.selection = Selection {
            runtime_name: name,
            k8s_namespace: list("k8s-namespace"),
            k8s_pod: list("k8s-podname"),
            k8s_container: list("k8s-containername"),
            image_digest: list("runtime-containerimage-digest"),
            image_id: list("runtime-containerimage-id"),
        };
        self.host = matches!(values.get(&full(HOST)), Some(ParamValue::Bool(true)));
        if self.live {
            self.config = config_from(values).map_err(|e| OperatorError::failed(NAME, e))?;
        }
        if !self.selection.is_empty() && !self.host {
            // Before anything is loaded: the eBPF operator reads it at start.
            self.filter.enable();
        }
        Ok(())
    }

    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let selecting = !self.selection.is_empty();
        let mut plans = Vec::new();
        for id in setup.source_ids() {
            if let Some(p) = plan(setup.schema_mut(id), selecting)? {
                plans.push((id, p));
            }
        }
        let following = self.targets.is_wanted();
        if plans.is_empty() && !selecting && !following && !self.containers_source {
            return Ok(None);
        }
        let rows = if self.containers_source {
            Some(containers_source(setup)?)
        } else {
            None
        };
        if plans.is_empty() {
            log::debug!(
                "{NAME}: the gadget has no mount namespace field; containers are selected in the kernel only"
            );
        }
        let live = self.live;
        let config = self.config;
        // With nothing to select in the kernel, the first walk of /proc
        // (10 ms on a quiet host, more with thousands of processes) only
        // serves enrichment: it runs on a thread while the eBPF operator
        // loads, and `start` takes it, before any event is read
        // (docs/design/012-attach-time.md).
        let early_walk = !selecting && !following && self.detect.is_none();
        let detect: Box<dyn FnMut() -> Snapshot> = match self.detect {
            Some(d) => d,
            None => {
                let d = Detector::with_config(config.clone());
                let mut walker = if early_walk {
                    let h = std::thread::Builder::new()
                        .name("ig-containers".into())
                        .spawn(move || {
                            let mut d = d;
                            let snap = walk(&mut d);
                            (d, snap)
                        })
                        .map_err(|e| {
                            OperatorError::failed(
                                NAME,
                                format!("no thread for the first walk of /proc: {e}"),
                            )
                        })?;
                    Walker::Walking(Some(h), config.clone())
                } else {
                    Walker::Ready(d)
                };
                Box::new(move || walker.next())
            }
        };
        let table = Rc::new(RefCell::new(Table {
            by_mntns: HashMap::new(),
            by_netns: HashMap::new(),
            departed: Vec::new(),
            host_mntns: None,
            selection: self.selection,
            host: self.host,
            filter: self.filter,
            targets: following.then_some(self.targets),
            detect,
            fingerprint: None,
            watched: false,
            refreshed: None,
            pending: Vec::with_capacity(PENDING_MAX),
            negative: HashMap::new(),
            epoch: Instant::now(),
            now_ms: 0,
            version: 0,
            publisher: rows
                .is_some()
                .then(|| Publisher::new(config.host.clone(), self.host)),
        }));
        // The first walk, before anything starts: the eBPF operator loads
        // with the kernel filter already full. Without a selection it is
        // under way on its thread (`early_walk`): `start` takes it.
        if !early_walk {
            table.borrow_mut().refresh();
            warn_if_nothing_selected(&table.borrow());
        }
        for (id, fields) in plans {
            setup.subscribe(
                id,
                priority::LOCAL_MANAGER,
                NAME,
                Box::new(Enriching {
                    fields,
                    table: table.clone(),
                    last: None,
                    node: self.node.clone(),
                    slots: Vec::new(),
                }),
            );
        }
        Ok(Some(Box::new(Active {
            table,
            live,
            config,
            watcher: None,
            hook: None,
            rows,
            row: None,
        })))
    }
}

/// The detector of a live run, or its first walk under way on a thread
/// (with the configuration to start over from, should the walk panic).
enum Walker {
    Walking(
        Option<std::thread::JoinHandle<(Detector, Snapshot)>>,
        Config,
    ),
    Ready(Detector),
}

impl Walker {
    /// The first walk's snapshot once it is done, then a walk per call.
    fn next(&mut self) -> Snapshot {
        match self {
            Self::Ready(d) => walk(d),
            Self::Walking(h, config) => {
                let done = h.take().map(std::thread::JoinHandle::join);
                let (d, snap) = match done {
                    Some(Ok(done)) => done,
                    // A panic of the walk: start over here.
                    _ => {
                        let mut d = Detector::with_config(config.clone());
                        let snap = walk(&mut d);
                        (d, snap)
                    }
                };
                *self = Self::Ready(d);
                snap
            }
        }
    }
}

/// One walk of the host's containers with `d`.
fn walk(d: &mut Detector) -> Snapshot {
    // Before the scan: what changes during it is seen at the next check.
    let fingerprint = Some(d.config().state_fingerprint());
    Snapshot {
        containers: d.scan(),
        host_mntns: d.host_mntns(),
        fingerprint,
    }
}

/// The fields of the `containers` data source, in upstream's order:
/// `(name, kind, description)`. [`Active::emit_rows`] fills them by index.
const ROW_FIELDS: [(&str, FieldKind, &str); 6] = [
    (
        "event_type",
        FieldKind::String,
        "CREATED (running at the start, or new) or DELETED (gone)",
    ),
    ("container_id", FieldKind::String, "Id of the container"),
    (
        "cgroup_id",
        FieldKind::U64,
        "Id of the container's cgroup (v2; 0 when unknown)",
    ),
    (
        "mntns_id",
        FieldKind::U64,
        "Mount namespace of the container's first process",
    ),
    ("name", FieldKind::String, "Name of the container"),
    (
        "container_config",
        FieldKind::String,
        "The container's OCI configuration (its bundle's config.json; empty when unknown)",
    ),
];

/// The `containers` data source and its fields ([`ROW_FIELDS`]).
#[derive(Clone, Copy, Debug)]
struct RowFields {
    source: SourceId,
    ids: [FieldId; 6],
}

/// Declare the `containers` data source: upstream's fields in upstream's
/// order, not printed unless asked (`cli.default-output-mode: none`).
fn containers_source(setup: &mut Setup) -> Result<RowFields, OperatorError> {
    if setup
        .all_source_ids()
        .any(|id| setup.schema(id).name() == CONTAINERS_SOURCE)
    {
        return Err(OperatorError::failed(
            NAME,
            format!(
                "the gadget has a data source named {CONTAINERS_SOURCE} already, the name of the one its annotation {CONTAINERS_ANNOTATION} asks for"
            ),
        ));
    }
    let mut b = SchemaBuilder::new(CONTAINERS_SOURCE, SourceKind::Single, 0);
    b.annotations_mut()
        .insert("cli.default-output-mode".into(), "none".into());
    let mut ids = [FieldId(0); 6];
    for (slot, (name, kind, desc)) in ids.iter_mut().zip(ROW_FIELDS) {
        *slot = b.add_owned(name.to_owned(), kind, None)?;
        b.field_mut(*slot).default_annotation("description", desc);
    }
    Ok(RowFields {
        source: setup.add_source(b),
        ids,
    })
}

/// A row of the `containers` data source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Created,
    Deleted,
}

impl Change {
    /// Upstream's values of `event_type`.
    fn name(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Deleted => "DELETED",
        }
    }
}

/// A container as the `containers` data source announced it: a DELETED
/// row repeats what its CREATED row said (the bundle may be gone by then).
#[derive(Debug, PartialEq, Eq)]
struct Announced {
    id: String,
    name: String,
    mntns: u64,
    cgroup_id: u64,
    config: String,
}

/// What the `containers` data source announced, diffed against every
/// refresh; the rows still to emit wait in `queue` for the operator's
/// source (a refresh happens during set-up too, before any subscriber
/// exists).
struct Publisher {
    host: HostRoot,
    /// The cgroup v2 mount point, found once.
    cgroup2: Option<std::path::PathBuf>,
    /// `--host`: one CREATED row for the host (upstream's stand-in
    /// container: pid 1's mount namespace, no id, no name) at the start.
    host_row: bool,
    announced: HashMap<String, Rc<Announced>>,
    queue: Vec<(Change, Rc<Announced>)>,
}

impl Publisher {
    fn new(host: HostRoot, host_row: bool) -> Self {
        Self {
            cgroup2: crate::containers::cgroup2_mount(&host),
            host,
            host_row,
            announced: HashMap::new(),
            queue: Vec::new(),
        }
    }

    /// Queue DELETED for what was announced and is not in `current` (the
    /// selected containers of this refresh), then CREATED for what is new;
    /// `host_mntns` is the host's, for the `--host` row at the first call.
    fn diff(&mut self, current: &[Rc<Container>], host_mntns: Option<u64>) {
        if std::mem::take(&mut self.host_row) {
            self.queue.push((
                Change::Created,
                Rc::new(Announced {
                    id: String::new(),
                    name: String::new(),
                    mntns: host_mntns.unwrap_or(0),
                    cgroup_id: 0,
                    config: String::new(),
                }),
            ));
        }
        let mut gone: Vec<&String> = self
            .announced
            .keys()
            .filter(|id| !current.iter().any(|c| c.id == **id))
            .collect();
        gone.sort_unstable();
        let gone: Vec<String> = gone.into_iter().cloned().collect();
        for id in gone {
            if let Some(a) = self.announced.remove(&id) {
                self.queue.push((Change::Deleted, a));
            }
        }
        for c in current {
            if self.announced.contains_key(&c.id) {
                continue;
            }
            // Read once, when the container is first seen.
            let a = Rc::new(Announced {
                id: c.id.clone(),
                name: c.name.clone(),
                mntns: c.mntns,
                cgroup_id: self
                    .cgroup2
                    .as_deref()
                    .map_or(0, |m| crate::containers::cgroup_id(&self.host, m, c.pid)),
                config: crate::containers::oci_config(&self.host, &c.bundle),
            });
            self.announced.insert(c.id.clone(), a.clone());
            self.queue.push((Change::Created, a));
        }
    }
}

/// The fields, in upstream's order: `(full name, kind, description,
/// width)`. Strings are answered by [`str_of`] by their index here.
const FIELDS: &[(&str, FieldKind, &str, &str)] = &[
    (
        "k8s.node",
        FieldKind::String,
        "Kubernetes node of the container (NODE_NAME; empty when unset)",
        "30",
    ),
    (
        "k8s.namespace",
        FieldKind::String,
        "Kubernetes namespace of the pod",
        "30",
    ),
    ("k8s.podName", FieldKind::String, "Kubernetes pod", "30"),
    (
        "k8s.containerName",
        FieldKind::String,
        "Container name in the pod spec",
        "30",
    ),
    (
        "k8s.hostnetwork",
        FieldKind::Bool,
        "The container uses the host's network namespace",
        "5",
    ),
    (
        "k8s.podLabels",
        FieldKind::String,
        "Pod labels (need the API server: empty here)",
        "30",
    ),
    (
        "k8s.owner.kind",
        FieldKind::String,
        "Kind of the pod's owner (needs the API server)",
        "15",
    ),
    (
        "k8s.owner.name",
        FieldKind::String,
        "Name of the pod's owner (needs the API server)",
        "30",
    ),
    (
        "runtime.containerName",
        FieldKind::String,
        "Name of the container (empty on the host)",
        "30",
    ),
    (
        "runtime.runtimeName",
        FieldKind::String,
        "Container runtime (docker, containerd, cri-o, podman, systemd-nspawn, runc)",
        "10",
    ),
    (
        "runtime.containerId",
        FieldKind::String,
        "Id of the container",
        "13",
    ),
    (
        "runtime.containerPid",
        FieldKind::U32,
        "Pid of the container's first process",
        "7",
    ),
    (
        "runtime.containerImageName",
        FieldKind::String,
        "Image of the container, when its runtime or annotations said",
        "30",
    ),
    (
        "runtime.containerImageDigest",
        FieldKind::String,
        "Digest of the container's image (docker, podman: pulled or pushed images)",
        "30",
    ),
    (
        "runtime.containerStartedAt",
        FieldKind::I64,
        "When the container's first process started (ns since the epoch)",
        "20",
    ),
];
const N_FIELDS: usize = 15;
const NODE_FIELD: usize = 0;
const NAME_FIELD: usize = 8;
const HOSTNET_FIELD: usize = 4;
const PID_FIELD: usize = 11;
const STARTED_FIELD: usize = 14;

/// String field `i` of [`FIELDS`] for container `c`.
fn str_of(c: &Container, i: usize) -> &str {
    match i {
        1 => &c.k8s.namespace,
        2 => &c.k8s.pod_name,
        3 => &c.k8s.container_name,
        8 => &c.name,
        9 => c.runtime.name(),
        10 => &c.id,
        12 => &c.image,
        13 => &c.image_digest,
        // podLabels, owner: no source on a host (node: NODE_FIELD).
        _ => "",
    }
}

#[derive(Clone, Copy, Debug)]
struct Fields {
    mntns: Option<FieldId>,
    netns: Option<FieldId>,
    /// [`FIELDS`], by index.
    all: [FieldId; N_FIELDS],
}

fn numeric_tagged(b: &SchemaBuilder, tag: &str) -> Option<FieldId> {
    b.schema()
        .fields_with_tag(tag)
        .find(|&f| b.schema().field(f).kind.is_numeric())
}

/// Declare the `k8s.*` and `runtime.*` fields of a data source with a
/// mount or network namespace field, placed before the gadget's own
/// fields. Tables show the container name only when containers are
/// selected (`show_name`): on the many hosts without containers an
/// always-empty first column is noise (upstream always shows it;
/// `--fields +runtime.containerName` does here). `k8s` is hidden in tables,
/// as in upstream's `ig`.
fn plan(b: &mut SchemaBuilder, show_name: bool) -> Result<Option<Fields>, SchemaError> {
    let mntns = numeric_tagged(b, "type:gadget_mntns_id");
    let netns = numeric_tagged(b, "type:gadget_netns_id");
    if mntns.is_none() && netns.is_none() {
        return Ok(None);
    }
    for taken in ["runtime", "k8s"] {
        if b.schema().field_by_name(taken).is_some() {
            log::debug!("{NAME}: {} has a {taken} field already", b.name());
            return Ok(None);
        }
    }
    // Everything the gadget has moves one place down.
    let ids: Vec<FieldId> = b.schema().ids().collect();
    for f in ids {
        b.field_mut(f).order += 1;
    }
    let mut parents: Vec<(String, FieldId)> = Vec::new();
    let mut all = [FieldId(0); N_FIELDS];
    for (i, (name, kind, desc, width)) in FIELDS.iter().enumerate() {
        // The parents (`k8s`, `k8s.owner`, `runtime`) before their first
        // child.
        let mut parent = None;
        let mut prefix = String::new();
        for part in name.split('.').take(name.split('.').count() - 1) {
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(part);
            let id = match parents.iter().find(|(n, _)| *n == prefix) {
                Some((_, id)) => *id,
                None => {
                    let id = b.add_owned(prefix.clone(), FieldKind::Struct, parent)?;
                    b.field_mut(id).order = 0;
                    parents.push((prefix.clone(), id));
                    id
                }
            };
            parent = Some(id);
        }
        let id = b.add_owned((*name).to_owned(), *kind, parent)?;
        let f = b.field_mut(id);
        f.order = 0;
        f.default_annotation("description", desc);
        f.default_annotation("columns.width", width);
        if i != NAME_FIELD || !show_name {
            f.default_annotation("columns.hidden", "true");
        }
        all[i] = id;
    }
    Ok(Some(Fields { mntns, netns, all }))
}

/// The containers by namespace, shared by every handler.
struct Table {
    by_mntns: HashMap<u64, Rc<Container>>,
    /// Network namespaces of exactly one container (`None`: shared by
    /// several, as a pod's; no answer then).
    by_netns: HashMap<u64, Option<Rc<Container>>>,
    /// Containers gone since, by mount namespace, with the time (ms since
    /// `epoch`) they were found gone: kept in `by_mntns` for
    /// [`DEPARTED_GRACE`].
    departed: Vec<(u64, Rc<Container>, u64)>,
    host_mntns: Option<u64>,
    selection: Selection,
    host: bool,
    filter: MntnsFilter,
    /// Set when the eBPF operator follows containers.
    targets: Option<Targets>,
    detect: Box<dyn FnMut() -> Snapshot>,
    /// The runc state directories' summary at the last refresh.
    fingerprint: Option<u64>,
    /// New containers are watched for (inotify, the runtime hook): the
    /// timer rescans every [`IDLE_REFRESH`] even while selecting.
    watched: bool,
    refreshed: Option<Instant>,
    /// Unknown mount namespaces seen since the last refresh (bounded, with
    /// its capacity reserved: pushing never allocates).
    pending: Vec<u64>,
    /// Mount namespaces still unknown after a refresh, with the time (in
    /// ms since `epoch`) they were found so.
    negative: HashMap<u64, u64>,
    epoch: Instant,
    /// Milliseconds since `epoch`, advanced on the timer (not per event).
    now_ms: u64,
    /// Advances at every refresh: answers given before may have changed.
    version: u64,
    /// The `containers` data source's bookkeeping, when the gadget asked
    /// for it.
    publisher: Option<Publisher>,
}

impl Table {
    fn selecting(&self) -> bool {
        !self.selection.is_empty()
    }

    /// Scan again and rebuild the table; update the kernel filter (written
    /// to the kernel before this returns, once the gadget is loaded).
    fn refresh(&mut self) {
        let snap = (self.detect)();
        self.fingerprint = snap.fingerprint;
        self.refreshed = Some(Instant::now());
        self.now_ms = self.epoch.elapsed().as_millis() as u64;
        self.version += 1;
        self.host_mntns = snap.host_mntns;
        // Containers that are gone stay for events already read from the
        // kernel but not yet handled (a short-lived container's only
        // events), out of the kernel filter.
        let now = self.now_ms;
        let still: std::collections::HashSet<&str> =
            snap.containers.iter().map(|c| c.id.as_str()).collect();
        for (m, c) in self.by_mntns.drain() {
            if !still.contains(c.id.as_str()) && !self.departed.iter().any(|(d, _, _)| *d == m) {
                self.departed.push((m, c, now));
            }
        }
        drop(still);
        let grace = DEPARTED_GRACE.as_millis() as u64;
        self.departed
            .retain(|(_, _, at)| now.saturating_sub(*at) < grace);
        self.by_netns.clear();
        let mut selected = Vec::new();
        let mut workloads = Vec::new();
        // For the `containers` data source, in the snapshot's order (by
        // name).
        let mut announce = Vec::new();
        for c in snap.containers {
            let c = Rc::new(c);
            let chosen = self.selection.matches(&c);
            if chosen && self.publisher.is_some() {
                announce.push(c.clone());
            }
            if chosen && self.targets.is_some() {
                workloads.push(Workload {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    pid: c.pid,
                    mntns: c.mntns,
                    netns: c.netns,
                });
            }
            for &m in c.mntns_ids.iter().chain([&c.mntns]) {
                self.by_mntns.insert(m, c.clone());
                if chosen {
                    selected.push(m);
                }
            }
            if c.netns != 0 && !c.host_network {
                self.by_netns
                    .entry(c.netns)
                    .and_modify(|e| *e = None)
                    .or_insert_with(|| Some(c.clone()));
            }
        }
        if let Some(p) = &mut self.publisher {
            p.diff(&announce, self.host_mntns);
        }
        for (m, c, _) in &self.departed {
            self.by_mntns.entry(*m).or_insert_with(|| c.clone());
        }
        if self.selecting()
            && let Err(e) = self.filter.set(selected)
        {
            log::warn!("updating the container filter in the kernel: {e}");
        }
        if let Some(t) = &self.targets {
            t.publish(!self.selecting() || self.host, workloads);
        }
        for m in self.pending.drain(..) {
            if !self.by_mntns.contains_key(&m) {
                self.negative.insert(m, now);
            }
        }
        let ttl = NEGATIVE_TTL.as_millis() as u64;
        self.negative.retain(|_, at| now.saturating_sub(*at) < ttl);
    }

    /// On the timer: refresh when due; true if it did.
    fn housekeeping(&mut self) -> bool {
        self.now_ms = self.epoch.elapsed().as_millis() as u64;
        let since = self.refreshed.map(|t| t.elapsed());
        let period = if (self.selecting() || self.targets.is_some()) && !self.watched {
            MIN_REFRESH
        } else {
            IDLE_REFRESH
        };
        let due = match since {
            None => true,
            Some(s) => s >= period || (!self.pending.is_empty() && s >= MIN_REFRESH),
        };
        if due {
            self.refresh();
        }
        due
    }

    /// Per event: remember an unknown mount namespace for the next refresh.
    fn miss(&mut self, mntns: u64) {
        if Some(mntns) == self.host_mntns {
            return;
        }
        let ttl = NEGATIVE_TTL.as_millis() as u64;
        if self
            .negative
            .get(&mntns)
            .is_some_and(|at| self.now_ms.saturating_sub(*at) < ttl)
        {
            return;
        }
        if self.pending.len() < PENDING_MAX && !self.pending.contains(&mntns) {
            self.pending.push(mntns);
        }
    }
}

/// Refreshes the table on the timer, on the watcher's word and for the
/// runtime hook.
struct Active {
    table: Rc<RefCell<Table>>,
    live: bool,
    config: Config,
    watcher: Option<Watcher>,
    hook: Option<Hook>,
    /// The `containers` data source, when the gadget asked for it.
    rows: Option<RowFields>,
    /// Its event, made at the first row.
    row: Option<Event>,
}

fn warn_if_nothing_selected(t: &Table) {
    if !t.selecting() || t.by_mntns.values().any(|c| t.selection.matches(c)) {
        return;
    }
    let mut names: Vec<String> = t
        .by_mntns
        .values()
        .map(|c| {
            if c.k8s.pod_name.is_empty() {
                c.name.clone()
            } else {
                format!("{} (pod {}/{})", c.name, c.k8s.namespace, c.k8s.pod_name)
            }
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    log::warn!(
        "no running container matches {}; waiting for one to start (running: {})",
        t.selection.describe(),
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    );
}

impl Instance for Active {
    /// After the eBPF operator loaded (and attached the kernel filter):
    /// watch the runtimes, and hold them for new containers.
    fn start(&mut self) -> Result<(), OperatorError> {
        // The first walk, if `instantiate` left it to a thread: taken
        // before the first event is read.
        {
            let mut t = self.table.borrow_mut();
            if t.refreshed.is_none() {
                t.refresh();
            }
        }
        if !self.live {
            return Ok(());
        }
        let (roots, parents) = self.config.watch_dirs();
        let docker = self
            .config
            .socket(Runtime::Docker)
            .into_iter()
            .chain(self.config.socket(Runtime::Podman))
            .find(|p| p.exists());
        let mut watcher = match Watcher::new(roots, parents, docker) {
            Ok(w) => w,
            Err(e) => {
                log::warn!("new containers are found by polling only: {e}");
                return Ok(());
            }
        };
        match Hook::start(&self.config.host, HOLD_LIMIT) {
            Ok(h) => {
                log::debug!("holding container runtimes: {:?}", h.marked());
                if watcher.add_extra(h.wake_fd()).is_ok() {
                    self.hook = Some(h);
                }
            }
            Err(e) => log::debug!("not holding container runtimes: {e}"),
        }
        // What started between the first scan and the watches.
        let mut t = self.table.borrow_mut();
        t.watched = true;
        if watcher.rearm() {
            t.refresh();
        }
        drop(t);
        self.watcher = Some(watcher);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), OperatorError> {
        // Lets every held runtime go on.
        self.hook = None;
        Ok(())
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }
}

impl Active {
    /// Emit the `containers` rows the refreshes queued. Rows are rare
    /// (one per container coming or going): building them may allocate.
    fn emit_rows(&mut self, out: &mut Dispatch) {
        let Some(f) = self.rows else { return };
        let queue = {
            let mut t = self.table.borrow_mut();
            match t.publisher.as_mut() {
                Some(p) if !p.queue.is_empty() => std::mem::take(&mut p.queue),
                _ => return,
            }
        };
        // The table is not borrowed while handlers run.
        let schema = out.schema(f.source).clone();
        let ev = self.row.get_or_insert_with(|| Event::new(&schema));
        for (change, a) in queue {
            ev.set_raw(&[]);
            for (i, id) in f.ids.iter().enumerate() {
                let field = schema.field(*id);
                match i {
                    0 => ev.set_str(field, change.name()),
                    1 => ev.set_str(field, &a.id),
                    2 => ev.set_value(field, Value::U64(a.cgroup_id)),
                    3 => ev.set_value(field, Value::U64(a.mntns)),
                    4 => ev.set_str(field, &a.name),
                    _ => ev.set_str(field, &a.config),
                }
            }
            out.event(f.source, ev);
        }
    }
}

impl Source for Active {
    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        self.watcher.iter().map(Watcher::fd).collect()
    }

    fn drain(&mut self, out: &mut Dispatch) -> Result<(), OperatorError> {
        self.emit_rows(out);
        let Some(w) = self.watcher.as_mut() else {
            return Ok(());
        };
        let ready = w.drain();
        let held = if ready.extra {
            self.hook.as_ref().and_then(Hook::pending)
        } else {
            None
        };
        // A state directory changed or a runc exec is held: walk /proc only
        // if the set of runc containers changed (most runc execs, a
        // container's `state`, `kill`, `delete`, its create before the
        // state file exists, change nothing). Docker's word always counts:
        // its containers may live in an exec root we do not watch.
        let mut t = self.table.borrow_mut();
        let states_changed = (ready.changed || held.is_some())
            && (t.fingerprint.is_none() || t.fingerprint != Some(self.config.state_fingerprint()));
        if ready.docker || states_changed {
            t.refresh();
        }
        drop(t);
        if let (Some(h), Some(seq)) = (self.hook.as_ref(), held) {
            h.done(seq);
        }
        // What this refresh found, at once.
        self.emit_rows(out);
        Ok(())
    }

    fn tick(&mut self, out: &mut Dispatch) -> Result<Vec<Notice>, OperatorError> {
        if self.table.borrow_mut().housekeeping()
            && let Some(w) = self.watcher.as_mut()
            && w.rearm()
        {
            self.table.borrow_mut().refresh();
        }
        self.emit_rows(out);
        Ok(Vec::new())
    }

    fn finish(&mut self, out: &mut Dispatch) -> Result<(), OperatorError> {
        self.emit_rows(out);
        Ok(())
    }

    /// Never keeps a finite run (a snapshot) going.
    fn finished(&self) -> bool {
        true
    }

    /// But its watches are served.
    fn always_drain(&self) -> bool {
        true
    }
}

struct Enriching {
    fields: Fields,
    table: Rc<RefCell<Table>>,
    /// The previous event's namespace key, the table version it was looked
    /// up at, and whether the event was kept: the same namespace at the
    /// same version gets the same answer, and the fields are kept rather
    /// than written again.
    last: Option<(u64, u64, bool)>,
    /// `k8s.node` of a container's event ([`LocalManager::node`]).
    node: Rc<str>,
    /// The owned slots of `fields.all`, found at the first event kept.
    slots: Vec<u16>,
}

fn ns_value(ev: &Event, schema: &Schema, f: Option<FieldId>) -> u64 {
    let Some(f) = f else { return 0 };
    match ev.get(schema.field(f)) {
        ValueRef::U64(n) => n,
        ValueRef::I64(n) => n as u64,
        _ => 0,
    }
}

impl Handler for Enriching {
    fn on_event(&mut self, schema: &Schema, ev: &mut Event) -> Flow {
        let f = self.fields;
        let mntns = ns_value(ev, schema, f.mntns);
        let netns = ns_value(ev, schema, f.netns);
        // One key for the "same as last time" shortcut.
        let key = if f.mntns.is_some() { mntns } else { netns };
        let t = self.table.borrow();
        if let Some((k, v, kept)) = self.last
            && k == key
            && v == t.version
        {
            if !kept {
                return Flow::Drop;
            }
            if self.slots.is_empty() {
                // Once: the slots of `f.all` (a field that is not owned
                // cannot be kept, and never is).
                self.slots = f
                    .all
                    .iter()
                    .map(|id| schema.field(*id).owned_slot().unwrap_or(u16::MAX))
                    .collect();
            }
            if ev.keep_slots(&self.slots) {
                return Flow::Continue;
            }
        }
        self.last = None;
        // By mount namespace first (a pod's containers share the network
        // namespace); by network namespace only for sources without one,
        // or when the mount namespace is no container's.
        let found = t
            .by_mntns
            .get(&mntns)
            .or_else(|| t.by_netns.get(&netns).and_then(Option::as_ref))
            .filter(|_| mntns != 0 || netns != 0);
        let keep = match found {
            Some(c) => !t.selecting() || t.selection.matches(c),
            None => !t.selecting() || t.host,
        };
        self.last = Some((key, t.version, keep));
        if !keep {
            return Flow::Drop;
        }
        for (i, id) in f.all.iter().enumerate() {
            let field = schema.field(*id);
            let v = match i {
                PID_FIELD => Value::U64(found.map_or(0, |c| u64::from(c.pid))),
                STARTED_FIELD => Value::I64(found.map_or(0, |c| c.started_at)),
                HOSTNET_FIELD => Value::Bool(found.is_some_and(|c| c.host_network)),
                NODE_FIELD => {
                    ev.set_str(field, found.map_or("", |_| &*self.node));
                    continue;
                }
                _ => {
                    ev.set_str(field, found.map_or("", |c| str_of(c, i)));
                    continue;
                }
            };
            if let Some(slot) = ev.owned_mut(field) {
                *slot = v;
            }
        }
        if found.is_none() && mntns != 0 && f.mntns.is_some() {
            drop(t);
            self.table.borrow_mut().miss(mntns);
        }
        Flow::Continue
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::Runtime;
    use crate::datasource::SourceKind;
    use crate::pipeline::Pipeline;
    use crate::pipeline::testing::{Collector, Producer, Subscribe, drain_all};
    use std::cell::Cell;

    fn schema() -> SchemaBuilder {
        let mut b = SchemaBuilder::new("ev", SourceKind::Single, 12);
        let m = b
            .add_raw("mntns_id".into(), FieldKind::U64, 0, 8, None)
            .unwrap();
        b.field_mut(m).tags = vec!["type:gadget_mntns_id".into()];
        b.add_raw("pid".into(), FieldKind::U32, 8, 4, None).unwrap();
        b
    }

    fn sample(mntns: u64, pid: u32) -> Vec<u8> {
        let mut v = mntns.to_ne_bytes().to_vec();
        v.extend_from_slice(&pid.to_ne_bytes());
        v
    }

    fn container(name: &str, mntns: u64, pid: u32) -> Container {
        Container {
            id: format!("{name:0>64}"),
            name: name.into(),
            runtime: Runtime::Docker,
            image: format!("{name}:latest"),
            image_digest: format!("sha256:{name}"),
            image_id: format!("sha256:{:0>64}", mntns),
            started_at: i64::from(pid) * 1000,
            host_network: false,
            k8s: crate::containers::K8sMeta {
                namespace: "ns".into(),
                pod_name: format!("pod-{name}"),
                container_name: format!("c-{name}"),
                pod_uid: String::new(),
            },
            pid,
            mntns,
            netns: mntns + 1,
            cgroup: String::new(),
            mntns_ids: vec![mntns],
            bundle: String::new(),
        }
    }

    fn fake(scans: Rc<Cell<u32>>) -> impl FnMut() -> Snapshot {
        move || {
            scans.set(scans.get() + 1);
            let mut pod_a = container("sidecar", 300, 30);
            let mut pod_b = container("main", 400, 40);
            // Two containers of one pod: one network namespace.
            pod_a.netns = 500;
            pod_b.netns = 500;
            Snapshot {
                containers: vec![
                    container("web", 100, 10),
                    container("db", 200, 20),
                    pod_a,
                    pod_b,
                ],
                host_mntns: Some(1),
                fingerprint: None,
            }
        }
    }

    /// A table as `instantiate` makes it, without the `containers` data
    /// source.
    fn table(
        selection: Selection,
        filter: MntnsFilter,
        detect: impl FnMut() -> Snapshot + 'static,
    ) -> Table {
        Table {
            by_mntns: HashMap::new(),
            by_netns: HashMap::new(),
            departed: Vec::new(),
            host_mntns: None,
            selection,
            host: false,
            filter,
            targets: None,
            detect: Box::new(detect),
            fingerprint: None,
            watched: false,
            refreshed: None,
            pending: Vec::with_capacity(PENDING_MAX),
            negative: HashMap::new(),
            epoch: Instant::now(),
            now_ms: 0,
            version: 0,
            publisher: None,
        }
    }

    fn run(params: &[(&str, &str)], samples: Vec<Vec<u8>>) -> (Collector, MntnsFilter, u32) {
        let filter = MntnsFilter::default();
        let scans = Rc::new(Cell::new(0));
        let lm =
            LocalManager::with_detector(filter.clone(), fake(scans.clone())).with_node("node-1");
        let specs = lm.params();
        let given: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (format!("operator.LocalManager.{k}"), (*v).to_owned()))
            .collect();
        let values = ParamValues::resolve(&specs, &given).unwrap();
        let col = Collector::default();
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1000,
                schema: schema(),
                samples,
            }),
            Box::new(lm),
            Box::new(Subscribe {
                name: "col",
                priority: 100,
                handler: col.clone(),
            }),
        ];
        let mut p = Pipeline::build(ops, &values).unwrap();
        p.start().unwrap();
        drain_all(&mut p).unwrap();
        p.stop().unwrap();
        (col, filter, scans.get())
    }

    #[test]
    fn enriches_filters_and_fills_the_kernel_filter() {
        let samples = vec![sample(100, 1), sample(1, 2), sample(200, 3), sample(999, 4)];
        let s = |v: &str| Some(v.to_owned());
        // (params, pids kept, container names, kernel filter enabled, its ids)
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            &'a [u64],
            &'a [&'a str],
            bool,
            &'a [u64],
        );
        let cases: &[Case] = &[
            (&[], &[1, 2, 3, 4], &["web", "", "db", ""], false, &[]),
            (&[("k8s-podname", "pod-web")], &[1], &["web"], true, &[100]),
            // Upstream's default (containers only, no host): `-c '!'`, an
            // exclusion of nothing.
            (
                &[("containername", "!")],
                &[1, 3],
                &["web", "db"],
                true,
                &[100, 200, 300, 400],
            ),
            (
                &[("k8s-podname", "!pod-web")],
                &[3],
                &["db"],
                true,
                &[200, 300, 400],
            ),
            (
                &[("k8s-namespace", "ns"), ("k8s-containername", "c-db")],
                &[3],
                &["db"],
                true,
                &[200],
            ),
            (&[("k8s-namespace", "other")], &[], &[], true, &[]),
            (
                &[("runtime-containername", "db"), ("containername", "web")],
                &[1, 3],
                &["web", "db"],
                true,
                &[100, 200],
            ),
            (
                &[("runtime-containerimage-digest", "sha256:db")],
                &[3],
                &["db"],
                true,
                &[200],
            ),
            (
                &[("runtime-containerimage-id", &"0".repeat(12))],
                &[1, 3],
                &["web", "db"],
                true,
                &[100, 200, 300, 400],
            ),
            (&[("containername", "web")], &[1], &["web"], true, &[100]),
            (
                &[("containername", "web,db")],
                &[1, 3],
                &["web", "db"],
                true,
                &[100, 200],
            ),
            (
                &[("containername", "!web")],
                &[3],
                &["db"],
                true,
                &[200, 300, 400],
            ),
            (
                &[("containername", "web"), ("host", "true")],
                &[1, 2, 4],
                &["web", "", ""],
                false,
                &[],
            ),
            (
                &[("host", "true")],
                &[1, 2, 3, 4],
                &["web", "", "db", ""],
                false,
                &[],
            ),
            (&[("containername", "nothere")], &[], &[], true, &[]),
        ];
        for (params, pids, names, enabled, ids) in cases {
            let (col, filter, scans) = run(params, samples.clone());
            let got: Vec<Option<String>> = col.column("pid");
            let want: Vec<Option<String>> = pids.iter().map(|p| s(&p.to_string())).collect();
            assert_eq!(got, want, "{params:?}");
            let want: Vec<Option<String>> = names.iter().map(|n| s(n)).collect();
            assert_eq!(col.column("runtime.containerName"), want, "{params:?}");
            assert_eq!(filter.is_enabled(), *enabled, "{params:?}");
            if *enabled {
                assert_eq!(filter.ids(), *ids, "{params:?}");
            }
            assert_eq!(scans, 1, "one walk at start, none per event");
        }
    }

    /// A gadget without a mount namespace field still gets the manager
    /// when the eBPF operator follows containers: the selected ones (and
    /// whether the host is in the run) are published at every walk.
    #[test]
    fn publishes_targets_when_the_ebpf_operator_follows_containers() {
        // (params, host in the run, containers published)
        type Case<'a> = (&'a [(&'a str, &'a str)], bool, &'a [&'a str]);
        let cases: &[Case] = &[
            (&[], true, &["db", "web", "main", "sidecar"]),
            (&[("containername", "web")], false, &["web"]),
            (
                &[("containername", "web"), ("host", "true")],
                true,
                &["web"],
            ),
            (
                &[("containername", "!web")],
                false,
                &["db", "main", "sidecar"],
            ),
        ];
        for (params, host, names) in cases {
            let targets = Targets::default();
            targets.want();
            let scans = Rc::new(Cell::new(0));
            let lm = LocalManager::with_detector(MntnsFilter::default(), fake(scans.clone()))
                .with_targets(targets.clone());
            let specs = lm.params();
            let given: Vec<(String, String)> = params
                .iter()
                .map(|(k, v)| (format!("operator.LocalManager.{k}"), (*v).to_owned()))
                .collect();
            let values = ParamValues::resolve(&specs, &given).unwrap();
            let mut b = SchemaBuilder::new("ev", SourceKind::Single, 4);
            b.add_raw("pid".into(), FieldKind::U32, 0, 4, None).unwrap();
            let ops: Vec<Box<dyn Operator>> = vec![
                Box::new(Producer {
                    priority: -1000,
                    schema: b,
                    samples: vec![],
                }),
                Box::new(lm),
            ];
            let p = Pipeline::build(ops, &values).unwrap();
            assert!(
                p.operator_names().contains(&NAME),
                "{params:?}: {:?}",
                p.operator_names()
            );
            let set = targets.current();
            assert!(targets.is_published());
            assert_eq!(set.host, *host, "{params:?}");
            let got: Vec<&str> = set.containers.iter().map(|c| c.name.as_str()).collect();
            let mut want = names.to_vec();
            want.sort_by_key(|n| format!("{n:0>64}"));
            assert_eq!(got, want, "{params:?}");
            assert_eq!(scans.get(), 1);
        }
        // Not wanted: a gadget without a mount namespace field has no
        // manager, and nothing is published.
        let targets = Targets::default();
        let lm = LocalManager::with_detector(MntnsFilter::default(), fake(Rc::default()))
            .with_targets(targets.clone());
        let mut b = SchemaBuilder::new("ev", SourceKind::Single, 4);
        b.add_raw("pid".into(), FieldKind::U32, 0, 4, None).unwrap();
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1000,
                schema: b,
                samples: vec![],
            }),
            Box::new(lm),
        ];
        let values = ParamValues::resolve(&[], &[]).unwrap();
        let p = Pipeline::build(ops, &values).unwrap();
        assert!(!p.operator_names().contains(&NAME));
        assert!(!targets.is_published());
    }

    #[test]
    fn all_fields_and_their_place() {
        let (col, _, _) = run(&[], vec![sample(200, 3), sample(1, 2)]);
        let s = |v: &str| Some(v.to_owned());
        // (field, the container's value, the host's)
        let id = format!("{:0>64}", "db");
        let cases = [
            ("runtime.containerId", id.as_str(), ""),
            ("runtime.runtimeName", "docker", ""),
            ("runtime.containerImageName", "db:latest", ""),
            ("runtime.containerPid", "20", "0"),
            ("runtime.containerImageDigest", "sha256:db", ""),
            ("runtime.containerStartedAt", "20000", "0"),
            ("k8s.podName", "pod-db", ""),
            ("k8s.namespace", "ns", ""),
            ("k8s.containerName", "c-db", ""),
            // NODE_NAME (`with_node` here) for containers only, as upstream.
            ("k8s.node", "node-1", ""),
            ("k8s.hostnetwork", "false", "false"),
        ];
        for (field, container, host) in cases {
            assert_eq!(col.column(field), [s(container), s(host)], "{field}");
        }

        let mut b = schema();
        plan(&mut b, true).unwrap().unwrap();
        let s = b.build();
        let names: Vec<&str> = s
            .display_order()
            .into_iter()
            .map(|id| s.field(id).name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "k8s",
                "k8s.node",
                "k8s.namespace",
                "k8s.podName",
                "k8s.containerName",
                "k8s.hostnetwork",
                "k8s.podLabels",
                "k8s.owner",
                "k8s.owner.kind",
                "k8s.owner.name",
                "runtime",
                "runtime.containerName",
                "runtime.runtimeName",
                "runtime.containerId",
                "runtime.containerPid",
                "runtime.containerImageName",
                "runtime.containerImageDigest",
                "runtime.containerStartedAt",
                "mntns_id",
                "pid"
            ]
        );
        let shown: Vec<&str> = s
            .fields()
            .iter()
            .filter(|f| !f.hidden_in_tables())
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(shown, ["mntns_id", "pid", "runtime.containerName"]);
        let mut b = schema();
        plan(&mut b, false).unwrap().unwrap();
        let s = b.build();
        assert!(s.fields().iter().all(|f| !(f.name.starts_with("runtime")
            || f.name.starts_with("k8s"))
            || f.hidden_in_tables()));
    }

    /// A container found gone leaves the kernel filter at once but names
    /// its mount namespace's late events for a second.
    #[test]
    fn departed_containers_leave_the_filter_at_once_and_the_table_after_a_grace() {
        let round = Rc::new(Cell::new(0u32));
        let r = round.clone();
        let filter = MntnsFilter::default();
        let mut t = table(
            Selection {
                k8s_namespace: Selector::parse("ns"),
                ..Selection::default()
            },
            filter.clone(),
            move || {
                let mut containers = vec![container("db", 200, 20)];
                if r.get() == 0 {
                    containers.push(container("web", 100, 10));
                }
                Snapshot {
                    containers,
                    host_mntns: Some(1),
                    fingerprint: None,
                }
            },
        );
        t.refresh();
        assert_eq!(filter.ids(), [100, 200]);
        round.set(1);
        t.refresh();
        assert_eq!(filter.ids(), [200], "gone from the kernel filter at once");
        assert_eq!(t.by_mntns.get(&100).map(|c| c.name.as_str()), Some("web"));
        t.refresh();
        assert!(t.by_mntns.contains_key(&100), "still within the grace");
        t.epoch -= DEPARTED_GRACE;
        t.refresh();
        assert!(!t.by_mntns.contains_key(&100), "gone after the grace");
        assert_eq!(t.by_mntns.get(&200).map(|c| c.name.as_str()), Some("db"));
    }

    /// A data source with only a network namespace: a namespace of one
    /// container names it, a pod's shared one (two containers) names none.
    #[test]
    fn network_namespaces_of_one_container_enrich() {
        let mut b = SchemaBuilder::new("net", SourceKind::Single, 12);
        let n = b
            .add_raw("netns_id".into(), FieldKind::U64, 0, 8, None)
            .unwrap();
        b.field_mut(n).tags = vec!["type:gadget_netns_id".into()];
        b.add_raw("pid".into(), FieldKind::U32, 8, 4, None).unwrap();
        let col = Collector::default();
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1000,
                schema: b,
                samples: vec![sample(101, 1), sample(500, 2), sample(7, 3)],
            }),
            Box::new(LocalManager::with_detector(
                MntnsFilter::default(),
                fake(Rc::new(Cell::new(0))),
            )),
            Box::new(Subscribe {
                name: "col",
                priority: 100,
                handler: col.clone(),
            }),
        ];
        let mut p = Pipeline::build(ops, &ParamValues::default()).unwrap();
        p.start().unwrap();
        drain_all(&mut p).unwrap();
        p.stop().unwrap();
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            col.column("runtime.containerName"),
            [s("web"), s(""), s("")]
        );
        assert_eq!(col.column("k8s.podName"), [s("pod-web"), s(""), s("")]);
    }

    /// Flags a host cannot serve are refused with the reason; a runtime
    /// named explicitly whose socket does not exist is an error.
    #[test]
    fn refused_flags_and_missing_runtimes() {
        let lm = LocalManager::default();
        let specs = lm.params();
        let resolve = |given: &[(&str, &str)]| {
            let given: Vec<(String, String)> = given
                .iter()
                .map(|(k, v)| (full(k), (*v).to_owned()))
                .collect();
            ParamValues::resolve(&specs, &given).unwrap()
        };
        for (given, want) in [
            (&[("k8s-selector", "app=web")][..], "pod labels"),
            (&[("enrich-with-k8s-apiserver", "true")][..], "API client"),
            (&[("runtime-protocol", "cri")][..], "CRI (gRPC) client"),
        ] {
            let why = refused(&resolve(given)).unwrap();
            assert!(why.contains(want), "{why}");
            let mut lm = LocalManager::default();
            let err = lm.apply_params(&resolve(given)).unwrap_err();
            assert!(format!("{err:?}").contains(want), "{err:?}");
        }
        assert_eq!(refused(&resolve(&[("runtime-protocol", "internal")])), None);
        assert_eq!(refused(&resolve(&[])), None);
        let bad = config_from(&resolve(&[("runtimes", "docker,rkt")])).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "runtime \"rkt\" is not supported (--runtimes takes docker, containerd, cri-o, podman)"
        );
        let missing = config_from(&resolve(&[(
            "docker-socketpath",
            "/nonexistent/docker.sock",
        )]))
        .unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/docker.sock"),
            "{missing}"
        );
        // Not named: a missing default socket is skipped.
        assert!(config_from(&resolve(&[])).is_ok());
        // A socket of a runtime not in use is not checked.
        let c = config_from(&resolve(&[
            ("runtimes", "docker"),
            ("docker-socketpath", "/proc/self/exe"),
            ("podman-socketpath", "/nonexistent"),
        ]))
        .unwrap();
        assert_eq!(c.runtimes, [Runtime::Docker]);
    }

    #[test]
    fn unknown_mount_namespaces_refresh_at_most_once_a_second() {
        let scans = Rc::new(Cell::new(0));
        let mut t = table(
            Selection::default(),
            MntnsFilter::default(),
            fake(scans.clone()),
        );
        t.housekeeping();
        assert_eq!(scans.get(), 1);
        assert_eq!(t.host_mntns, Some(1));
        t.miss(1); // the host: never a miss
        for _ in 0..100 {
            t.miss(555);
        }
        assert_eq!(t.pending, [555]);
        t.housekeeping();
        assert_eq!(scans.get(), 1, "not within a second of the last walk");
        t.refreshed = Some(Instant::now() - MIN_REFRESH);
        t.housekeeping();
        assert_eq!(scans.get(), 2, "a miss makes the next timer walk /proc");
        assert!(t.pending.is_empty());
        // Still unknown: remembered, no new refresh for it.
        t.miss(555);
        assert!(t.pending.is_empty());
        for m in 0..100 {
            t.miss(10_000 + m);
        }
        assert_eq!(t.pending.len(), PENDING_MAX, "bounded");
        // Without misses and without -c, the idle period applies.
        t.pending.clear();
        t.refreshed = Some(Instant::now() - MIN_REFRESH);
        t.housekeeping();
        assert_eq!(scans.get(), 2);
    }

    #[test]
    fn gadgets_without_mount_namespaces_opt_out_unless_selecting() {
        let mut b = SchemaBuilder::new("x", SourceKind::Single, 4);
        b.add_raw("n".into(), FieldKind::U32, 0, 4, None).unwrap();
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1000,
                schema: b,
                samples: vec![],
            }),
            Box::new(LocalManager::with_detector(
                MntnsFilter::default(),
                Snapshot::default,
            )),
        ];
        let p = Pipeline::build(ops, &ParamValues::default()).unwrap();
        assert_eq!(p.operator_names(), ["producer"]);
    }

    /// The rows a table queued for the `containers` data source, as
    /// (event_type, name, mntns), taken.
    fn queued(t: &mut Table) -> Vec<(&'static str, String, u64)> {
        let p = t.publisher.as_mut().unwrap();
        p.queue
            .drain(..)
            .map(|(c, a)| (c.name(), a.name.clone(), a.mntns))
            .collect()
    }

    /// The `containers` data source: CREATED for every selected container
    /// at the first refresh, then only the difference (DELETED for those
    /// gone, CREATED for new ones), each once; `--host` adds one row for
    /// the host (pid 1's mount namespace, no id, no name) at the start.
    #[test]
    fn containers_rows_are_the_difference_between_refreshes() {
        type Rows = &'static [(&'static str, &'static str, u64)];
        // (selection, --host, rows of each of the four refreshes)
        let cases: [(Selection, bool, [Rows; 4]); 3] = [
            (
                Selection::default(),
                false,
                [
                    &[("CREATED", "db", 200), ("CREATED", "web", 100)],
                    &[("DELETED", "web", 100), ("CREATED", "new", 300)],
                    &[],
                    &[("DELETED", "db", 200), ("DELETED", "new", 300)],
                ],
            ),
            (
                Selection {
                    runtime_name: Selector::parse("db"),
                    ..Selection::default()
                },
                false,
                [
                    &[("CREATED", "db", 200)],
                    &[],
                    &[],
                    &[("DELETED", "db", 200)],
                ],
            ),
            (
                Selection {
                    runtime_name: Selector::parse("!db"),
                    ..Selection::default()
                },
                true,
                [
                    &[("CREATED", "", 1), ("CREATED", "web", 100)],
                    &[("DELETED", "web", 100), ("CREATED", "new", 300)],
                    &[],
                    &[("DELETED", "new", 300)],
                ],
            ),
        ];
        for (selection, host, rounds) in cases {
            let round = Rc::new(Cell::new(0u32));
            let r = round.clone();
            let mut t = table(selection, MntnsFilter::default(), move || {
                let containers = match r.get() {
                    0 => vec![container("db", 200, 20), container("web", 100, 10)],
                    1 | 2 => vec![container("db", 200, 20), container("new", 300, 30)],
                    _ => vec![],
                };
                Snapshot {
                    containers,
                    host_mntns: Some(1),
                    fingerprint: None,
                }
            });
            t.publisher = Some(Publisher::new(HostRoot::new("/nonexistent"), host));
            for (i, want) in rounds.iter().enumerate() {
                round.set(i as u32);
                t.refresh();
                let want: Vec<(&str, String, u64)> = want
                    .iter()
                    .map(|(e, n, m)| (*e, (*n).to_owned(), *m))
                    .collect();
                assert_eq!(queued(&mut t), want, "round {i}, --host {host}");
            }
        }
    }

    /// A CREATED row carries the container's cgroup id (its cgroup v2
    /// directory's inode) and its bundle's `config.json`, read under the
    /// host root when the container is first seen; its DELETED row
    /// repeats them (the bundle is gone by then).
    #[test]
    fn containers_rows_carry_the_cgroup_id_and_the_oci_config() {
        use std::os::unix::fs::MetadataExt as _;
        let root = tempfile::tempdir().unwrap();
        let at = |p: &str| root.path().join(p);
        std::fs::create_dir_all(at("proc/20")).unwrap();
        std::fs::write(at("proc/20/cgroup"), "0::/docker/db\n").unwrap();
        std::fs::create_dir_all(at("sys/fs/cgroup/docker/db")).unwrap();
        let ino = std::fs::metadata(at("sys/fs/cgroup/docker/db"))
            .unwrap()
            .ino();
        std::fs::create_dir_all(at("bundles/db")).unwrap();
        let config = r#"{"ociVersion":"1.0.2","process":{}}"#;
        std::fs::write(at("bundles/db/config.json"), config).unwrap();
        let round = Rc::new(Cell::new(0u32));
        let r = round.clone();
        let mut t = table(Selection::default(), MntnsFilter::default(), move || {
            let mut db = container("db", 200, 20);
            db.bundle = "/bundles/db".into();
            // No cgroup, no bundle: zero and empty.
            let web = container("web", 100, 10);
            Snapshot {
                containers: if r.get() == 0 { vec![db, web] } else { vec![] },
                host_mntns: Some(1),
                fingerprint: None,
            }
        });
        let mut p = Publisher::new(HostRoot::new(root.path()), false);
        assert_eq!(p.cgroup2, None, "a directory is no cgroup v2 mount");
        p.cgroup2 = Some(at("sys/fs/cgroup"));
        t.publisher = Some(p);
        t.refresh();
        std::fs::remove_dir_all(at("bundles/db")).unwrap();
        round.set(1);
        t.refresh();
        let rows: Vec<(Change, String, u64, String)> = t
            .publisher
            .as_mut()
            .unwrap()
            .queue
            .drain(..)
            .map(|(c, a)| (c, a.name.clone(), a.cgroup_id, a.config.clone()))
            .collect();
        let row = |c, n: &str, id, cfg: &str| (c, n.to_owned(), id, cfg.to_owned());
        assert_eq!(
            rows,
            [
                row(Change::Created, "db", ino, config),
                row(Change::Created, "web", 0, ""),
                row(Change::Deleted, "db", ino, config),
                row(Change::Deleted, "web", 0, ""),
            ]
        );
    }

    /// `enable-containers-datasource: true` keeps the manager in a gadget
    /// without a mount namespace field, and its source emits the rows on
    /// the operator's tick (after every operator started: a WASM guest
    /// subscribes in gadgetStart), upstream's fields in upstream's order,
    /// not printed by default.
    #[test]
    fn the_containers_source_emits_on_the_tick_what_the_table_found() {
        let mut b = SchemaBuilder::new("ev", SourceKind::Single, 4);
        b.add_raw("pid".into(), FieldKind::U32, 0, 4, None).unwrap();
        let col = Collector::default();
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1000,
                schema: b,
                samples: vec![],
            }),
            Box::new(
                LocalManager::with_detector(MntnsFilter::default(), fake(Rc::default()))
                    .with_containers_source(true),
            ),
            Box::new(Subscribe {
                name: "col",
                priority: 100,
                handler: col.clone(),
            }),
        ];
        let mut p = Pipeline::build(ops, &ParamValues::default()).unwrap();
        assert_eq!(p.operator_names(), ["producer", NAME, "col"]);
        let (_, schema) = p
            .dispatch
            .schemas()
            .find(|(_, s)| s.name == CONTAINERS_SOURCE)
            .unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "event_type",
                "container_id",
                "cgroup_id",
                "mntns_id",
                "name",
                "container_config"
            ]
        );
        assert_eq!(schema.annotations["cli.default-output-mode"], "none");
        p.start().unwrap();
        assert!(col.seen.borrow().is_empty(), "nothing before the tick");
        let (sources, dispatch) = p.parts();
        for s in sources {
            s.tick(dispatch).unwrap();
        }
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            col.column("name"),
            [s("web"), s("db"), s("sidecar"), s("main")]
        );
        assert_eq!(col.column("event_type"), vec![s("CREATED"); 4]);
        assert_eq!(
            col.column("mntns_id"),
            [s("100"), s("200"), s("300"), s("400")]
        );
        assert_eq!(col.column("container_id")[0], s(&format!("{:0>64}", "web")));
        // Said once.
        let (sources, dispatch) = p.parts();
        for s in sources {
            s.tick(dispatch).unwrap();
        }
        assert_eq!(col.seen.borrow().len(), 4);
        p.stop().unwrap();
    }

    /// A gadget that has a data source named `containers` itself cannot
    /// have the local manager's: one clear error, not two sources of one
    /// name.
    #[test]
    fn a_gadget_source_named_containers_is_refused_with_the_annotation() {
        let mut b = SchemaBuilder::new(CONTAINERS_SOURCE, SourceKind::Single, 4);
        b.add_raw("pid".into(), FieldKind::U32, 0, 4, None).unwrap();
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1000,
                schema: b,
                samples: vec![],
            }),
            Box::new(
                LocalManager::with_detector(MntnsFilter::default(), fake(Rc::default()))
                    .with_containers_source(true),
            ),
        ];
        let Err(err) = Pipeline::build(ops, &ParamValues::default()) else {
            panic!("built");
        };
        let text = match &err {
            OperatorError::Failed { source, .. } => source.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(
            text.contains("a data source named containers already")
                && text.contains(CONTAINERS_ANNOTATION),
            "{text}"
        );
    }
}
