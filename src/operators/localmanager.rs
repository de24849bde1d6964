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
//! name when containers are selected). `k8s.node`, `k8s.podLabels` and
//! `k8s.owner.*` need the Kubernetes API server and stay empty. Host events
//! (no container) get empty strings and zeros.
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
use crate::containers::{Config, Container, Detector, Runtime, Selection, Selector};
use crate::datasource::ValueRef;
use crate::datasource::{Event, FieldId, FieldKind, Schema, SchemaBuilder, SchemaError, Value};
use crate::params::{ParamSpec, ParamType, ParamValue, ParamValues};
use crate::pipeline::{
    Dispatch, Flow, Handler, HandlerError, Instance, Notice, Operator, OperatorError, Priority,
    Setup, Source, priority,
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
        }
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
        if plans.is_empty() && !selecting && !following {
            return Ok(None);
        }
        if plans.is_empty() {
            log::debug!(
                "{NAME}: the gadget has no mount namespace field; containers are selected in the kernel only"
            );
        }
        let live = self.live;
        let config = self.config;
        let detect: Box<dyn FnMut() -> Snapshot> = match self.detect {
            Some(d) => d,
            None => {
                let mut d = Detector::with_config(config.clone());
                Box::new(move || {
                    // Before the scan: what changes during it is seen at
                    // the next check.
                    let fingerprint = Some(d.config().state_fingerprint());
                    Snapshot {
                        containers: d.scan(),
                        host_mntns: d.host_mntns(),
                        fingerprint,
                    }
                })
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
        }));
        // The first walk, before anything starts: the eBPF operator loads
        // with the kernel filter already full.
        table.borrow_mut().refresh();
        warn_if_nothing_selected(&table.borrow());
        for (id, fields) in plans {
            setup.subscribe(
                id,
                priority::LOCAL_MANAGER,
                NAME,
                Box::new(Enriching {
                    fields,
                    table: table.clone(),
                    last: None,
                }),
            );
        }
        Ok(Some(Box::new(Active {
            table,
            live,
            config,
            watcher: None,
            hook: None,
        })))
    }
}

/// The fields, in upstream's order: `(full name, kind, description,
/// width)`. Strings are answered by [`str_of`] by their index here.
const FIELDS: &[(&str, FieldKind, &str, &str)] = &[
    (
        "k8s.node",
        FieldKind::String,
        "Kubernetes node (needs the API server: empty here)",
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
        // node, podLabels, owner: no source on a host.
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
        for c in snap.containers {
            let c = Rc::new(c);
            let chosen = self.selection.matches(&c);
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

impl Source for Active {
    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        self.watcher.iter().map(Watcher::fd).collect()
    }

    fn drain(&mut self, _out: &mut Dispatch) -> Result<(), OperatorError> {
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
        Ok(())
    }

    fn tick(&mut self, _out: &mut Dispatch) -> Result<Vec<Notice>, OperatorError> {
        if self.table.borrow_mut().housekeeping()
            && let Some(w) = self.watcher.as_mut()
            && w.rearm()
        {
            self.table.borrow_mut().refresh();
        }
        Ok(Vec::new())
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
            let mut all = true;
            for id in f.all {
                all &= ev.keep(schema.field(id));
            }
            if all {
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

    fn run(params: &[(&str, &str)], samples: Vec<Vec<u8>>) -> (Collector, MntnsFilter, u32) {
        let filter = MntnsFilter::default();
        let scans = Rc::new(Cell::new(0));
        let lm = LocalManager::with_detector(filter.clone(), fake(scans.clone()));
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
            ("k8s.node", "", ""),
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
        let mut t = Table {
            by_mntns: HashMap::new(),
            by_netns: HashMap::new(),
            departed: Vec::new(),
            host_mntns: None,
            selection: Selection {
                k8s_namespace: Selector::parse("ns"),
                ..Selection::default()
            },
            host: false,
            filter: filter.clone(),
            targets: None,
            detect: Box::new(move || {
                let mut containers = vec![container("db", 200, 20)];
                if r.get() == 0 {
                    containers.push(container("web", 100, 10));
                }
                Snapshot {
                    containers,
                    host_mntns: Some(1),
                    fingerprint: None,
                }
            }),
            fingerprint: None,
            watched: false,
            refreshed: None,
            pending: Vec::with_capacity(PENDING_MAX),
            negative: HashMap::new(),
            epoch: Instant::now(),
            now_ms: 0,
            version: 0,
        };
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
        let mut t = Table {
            by_mntns: HashMap::new(),
            by_netns: HashMap::new(),
            departed: Vec::new(),
            host_mntns: None,
            selection: Selection::default(),
            host: false,
            filter: MntnsFilter::default(),
            targets: None,
            detect: Box::new(fake(scans.clone())),
            fingerprint: None,
            watched: false,
            refreshed: None,
            pending: Vec::with_capacity(PENDING_MAX),
            negative: HashMap::new(),
            epoch: Instant::now(),
            now_ms: 0,
            version: 0,
        };
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
}
