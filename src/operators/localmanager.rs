//! The local manager (priority -1, upstream's `LocalManager`): which
//! container an event comes from, and selecting containers.
//!
//! Reads fields tagged `type:gadget_mntns_id`. Writes, for each data source
//! that has one, the owned fields `runtime.containerName`,
//! `runtime.containerId`, `runtime.runtimeName`,
//! `runtime.containerImageName` and `runtime.containerPid` (upstream's
//! names), placed first; tables show the name when `-c` is given, the
//! rest is in JSON (and `--fields +runtime.containerId`...). Host
//! events (no container) get empty strings and pid 0.
//!
//! Parameters: `-c/--containername` (`operator.LocalManager.containername`,
//! a comma list; `!name` excludes) and `--host`
//! (`operator.LocalManager.host`). With `-c` and without `--host`, the
//! selection is made **in the kernel**: the shared [`MntnsFilter`] is
//! enabled, and the eBPF operator sets `gadget_filter_by_mntns` and fills
//! `gadget_mntns_filter_map` from it. Events of other mount namespaces are
//! also dropped here, which covers gadgets without the map and the moment
//! between a container's exit and the next refresh. With `-c` and `--host`
//! the kernel filter is off (the host is not one mount namespace) and the
//! selection is made here: selected containers plus host events. Without
//! `-c` every event passes (host and containers alike; upstream shows only
//! containers unless `--host`; we keep every event because most use of
//! `ig` here is on hosts without containers).
//!
//! When the eBPF operator follows containers (uprobes in their files,
//! socket filters in their network namespaces, TC programs on their
//! interfaces: `bpf::targets`), the manager stays active even for a gadget
//! without a mount namespace field, walks `/proc` every second, and
//! publishes the run's host flag and selected containers at every walk.
//!
//! `-c` naming no running container is a warning, not an error: the
//! container may start after `ig` (the usual way to trace a container's
//! start-up), and the table is refreshed every second while filtering, so
//! its events appear as soon as it runs.
//!
//! Cost: the container table (from `containers::Detector`, a walk of
//! `/proc`) is refreshed on the flush timer: every second while `-c` is
//! given, every [`IDLE_REFRESH`] otherwise, and after an event of an
//! unknown mount namespace at most once a second. Per event: one hash
//! lookup by mount namespace id and four string copies into the event's
//! reused buffers; no allocation, no system call.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::bpf::mntns_filter::MntnsFilter;
use crate::bpf::targets::{Targets, Workload};
use crate::containers::{Container, Detector, Selector};
use crate::datasource::ValueRef;
use crate::datasource::{Event, FieldId, FieldKind, Schema, SchemaBuilder, SchemaError, Value};
use crate::params::{ParamSpec, ParamType, ParamValue, ParamValues};
use crate::pipeline::{
    Dispatch, Flow, Handler, HandlerError, Instance, Notice, Operator, OperatorError, Priority,
    Setup, Source, priority,
};

const NAME: &str = "LocalManager";
const CONTAINERNAME: &str = "operator.LocalManager.containername";
const HOST: &str = "operator.LocalManager.host";

/// Shortest time between two walks of `/proc`.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Refresh period without `-c` (with `-c`: [`MIN_REFRESH`]).
const IDLE_REFRESH: Duration = Duration::from_secs(10);
/// An unknown mount namespace that stayed unknown after a refresh does not
/// cause another one for this long.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Unknown mount namespaces remembered between two refreshes.
const PENDING_MAX: usize = 16;

/// The operator. The detector can be replaced for tests.
pub struct LocalManager {
    filter: MntnsFilter,
    /// Where the eBPF operator attaches programs that follow containers:
    /// published at every walk while it wants them.
    targets: Targets,
    selector: Selector,
    host: bool,
    detect: Box<dyn FnMut() -> Snapshot>,
}

/// What one refresh found.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub containers: Vec<Container>,
    pub host_mntns: Option<u64>,
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
        let mut detector: Option<Detector> = None;
        Self::with_detector(filter, move || {
            let d = detector.get_or_insert_with(Detector::new);
            Snapshot {
                containers: d.scan(),
                host_mntns: d.host_mntns(),
            }
        })
    }

    /// Publish the selected containers to `targets` (shared with the eBPF
    /// operator) while it wants them.
    #[must_use]
    pub fn with_targets(mut self, targets: Targets) -> Self {
        self.targets = targets;
        self
    }

    pub fn with_detector(filter: MntnsFilter, detect: impl FnMut() -> Snapshot + 'static) -> Self {
        Self {
            filter,
            targets: Targets::default(),
            selector: Selector::default(),
            host: false,
            detect: Box::new(detect),
        }
    }
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
        vec![
            ParamSpec {
                key: "containername".into(),
                full_name: CONTAINERNAME.into(),
                description: "Show only events of these containers (comma-separated names; \
                              !name excludes one), selected in the kernel"
                    .into(),
                default: String::new(),
                ty: ParamType::String { max_len: None },
                group: "Containers".into(),
                alias: Some('c'),
            },
            ParamSpec {
                key: "host".into(),
                full_name: HOST.into(),
                description: "With --containername, show host events too".into(),
                default: "false".into(),
                ty: ParamType::Bool,
                group: "Containers".into(),
                alias: None,
            },
        ]
    }
    fn apply_params(&mut self, values: &ParamValues) -> Result<(), OperatorError> {
        if let Some(ParamValue::Str(s)) = values.get(CONTAINERNAME) {
            self.selector = Selector::parse(s);
        }
        self.host = matches!(values.get(HOST), Some(ParamValue::Bool(true)));
        if !self.selector.is_empty() && !self.host {
            // Before anything is loaded: the eBPF operator reads it at start.
            self.filter.enable();
        }
        Ok(())
    }

    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let mut plans = Vec::new();
        for id in setup.source_ids() {
            if let Some(p) = plan(setup.schema_mut(id), !self.selector.is_empty())? {
                plans.push((id, p));
            }
        }
        let selecting = !self.selector.is_empty();
        let following = self.targets.is_wanted();
        if plans.is_empty() && !selecting && !following {
            return Ok(None);
        }
        if plans.is_empty() {
            log::debug!(
                "{NAME}: the gadget has no mount namespace field; containers are selected in the kernel only"
            );
        }
        let table = Rc::new(RefCell::new(Table {
            by_mntns: HashMap::new(),
            host_mntns: None,
            selector: self.selector,
            host: self.host,
            filter: self.filter,
            targets: following.then_some(self.targets),
            detect: self.detect,
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
        Ok(Some(Box::new(Active { table })))
    }
}

#[derive(Clone, Copy, Debug)]
struct Fields {
    mntns: FieldId,
    name: FieldId,
    id: FieldId,
    runtime: FieldId,
    image: FieldId,
    pid: FieldId,
}

/// Declare the `runtime.*` fields of a data source with a mount namespace
/// field, placed before the gadget's own fields. Tables show the container
/// name only when containers are selected (`show_name`): on the many hosts
/// without containers an always-empty first column is noise (upstream
/// always shows it; `--fields +runtime.containerName` does here).
fn plan(b: &mut SchemaBuilder, show_name: bool) -> Result<Option<Fields>, SchemaError> {
    let Some(mntns) = b
        .schema()
        .fields_with_tag("type:gadget_mntns_id")
        .find(|&f| b.schema().field(f).kind.is_numeric())
    else {
        return Ok(None);
    };
    if b.schema().field_by_name("runtime").is_some() {
        log::debug!("{NAME}: {} has a runtime field already", b.name());
        return Ok(None);
    }
    // Everything the gadget has moves one place down.
    let ids: Vec<FieldId> = b.schema().ids().collect();
    for f in ids {
        b.field_mut(f).order += 1;
    }
    let parent = b.add_owned("runtime".into(), FieldKind::Struct, None)?;
    let mut add = |short: &str, kind, desc: &str, hidden: bool, width: &str| {
        let id = b.add_owned(format!("runtime.{short}"), kind, Some(parent))?;
        let f = b.field_mut(id);
        f.order = 0;
        f.default_annotation("description", desc);
        f.default_annotation("columns.width", width);
        if hidden {
            f.default_annotation("columns.hidden", "true");
        }
        Ok::<_, SchemaError>(id)
    };
    let name = add(
        "containerName",
        FieldKind::String,
        "Name of the container (empty on the host)",
        !show_name,
        "30",
    )?;
    let id = add(
        "containerId",
        FieldKind::String,
        "Id of the container",
        true,
        "13",
    )?;
    let runtime = add(
        "runtimeName",
        FieldKind::String,
        "Container runtime (docker, containerd, cri-o, podman, systemd-nspawn)",
        true,
        "10",
    )?;
    let image = add(
        "containerImageName",
        FieldKind::String,
        "Image of the container, when its runtime's API told us",
        true,
        "30",
    )?;
    let pid = add(
        "containerPid",
        FieldKind::U32,
        "Pid of the container's first process",
        true,
        "7",
    )?;
    b.field_mut(parent).order = 0;
    Ok(Some(Fields {
        mntns,
        name,
        id,
        runtime,
        image,
        pid,
    }))
}

/// The containers by mount namespace, shared by every handler.
struct Table {
    by_mntns: HashMap<u64, Rc<Container>>,
    host_mntns: Option<u64>,
    selector: Selector,
    host: bool,
    filter: MntnsFilter,
    /// Set when the eBPF operator follows containers.
    targets: Option<Targets>,
    detect: Box<dyn FnMut() -> Snapshot>,
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
        !self.selector.is_empty()
    }

    /// Walk `/proc` and rebuild the table; update the kernel filter.
    fn refresh(&mut self) {
        let snap = (self.detect)();
        self.refreshed = Some(Instant::now());
        self.version += 1;
        self.host_mntns = snap.host_mntns;
        self.by_mntns.clear();
        let mut selected = Vec::new();
        let mut workloads = Vec::new();
        for c in snap.containers {
            let c = Rc::new(c);
            let chosen = self.selector.matches(&c.name);
            if chosen && self.targets.is_some() {
                workloads.push(Workload {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    pid: c.pid,
                    mntns: c.mntns,
                    netns: c.netns,
                });
            }
            for &m in &c.mntns_ids {
                self.by_mntns.insert(m, c.clone());
                if chosen {
                    selected.push(m);
                }
            }
            self.by_mntns.insert(c.mntns, c.clone());
            if chosen {
                selected.push(c.mntns);
            }
        }
        if self.selecting() {
            self.filter.set(selected);
        }
        if let Some(t) = &self.targets {
            t.publish(!self.selecting() || self.host, workloads);
        }
        let now = self.now_ms;
        for m in self.pending.drain(..) {
            if !self.by_mntns.contains_key(&m) {
                self.negative.insert(m, now);
            }
        }
        let ttl = NEGATIVE_TTL.as_millis() as u64;
        self.negative.retain(|_, at| now.saturating_sub(*at) < ttl);
    }

    /// On the timer: refresh when due.
    fn housekeeping(&mut self) {
        self.now_ms = self.epoch.elapsed().as_millis() as u64;
        let since = self.refreshed.map(|t| t.elapsed());
        let period = if self.selecting() || self.targets.is_some() {
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

/// Refreshes the table on the timer.
struct Active {
    table: Rc<RefCell<Table>>,
}

fn warn_if_nothing_selected(t: &Table) {
    if !t.selecting() || t.by_mntns.values().any(|c| t.selector.matches(&c.name)) {
        return;
    }
    let mut names: Vec<&str> = t.by_mntns.values().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    log::warn!(
        "no running container matches --containername {}; waiting for one to start (running: {})",
        describe(&t.selector),
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    );
}

impl Instance for Active {
    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }
}

fn describe(s: &Selector) -> String {
    let mut parts: Vec<String> = s.include.clone();
    parts.extend(s.exclude.iter().map(|e| format!("!{e}")));
    parts.join(",")
}

/// A source of no events: only its tick is used, to refresh the table
/// even when no event arrives (new containers for the kernel filter).
impl Source for Active {
    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        Vec::new()
    }
    fn drain(&mut self, _out: &mut Dispatch) -> Result<(), OperatorError> {
        Ok(())
    }
    fn tick(&mut self, _out: &mut Dispatch) -> Result<Vec<Notice>, OperatorError> {
        self.table.borrow_mut().housekeeping();
        Ok(Vec::new())
    }
    /// Never keeps a finite run (a snapshot) going.
    fn finished(&self) -> bool {
        true
    }
}

struct Enriching {
    fields: Fields,
    table: Rc<RefCell<Table>>,
    /// The previous event's mount namespace, the table version it was
    /// looked up at, and whether the event was kept: the same namespace at
    /// the same version gets the same answer, and the runtime fields are
    /// kept rather than written again.
    last: Option<(u64, u64, bool)>,
}

impl Handler for Enriching {
    fn on_event(&mut self, schema: &Schema, ev: &mut Event) -> Flow {
        let f = self.fields;
        let mntns = match ev.get(schema.field(f.mntns)) {
            ValueRef::U64(n) => n,
            ValueRef::I64(n) => n as u64,
            _ => 0,
        };
        let t = self.table.borrow();
        if let Some((m, v, kept)) = self.last
            && m == mntns
            && v == t.version
        {
            if !kept {
                return Flow::Drop;
            }
            let mut all = true;
            for id in [f.name, f.id, f.runtime, f.image, f.pid] {
                all &= ev.keep(schema.field(id));
            }
            if all {
                return Flow::Continue;
            }
        }
        self.last = None;
        let found = t.by_mntns.get(&mntns);
        let keep = match found {
            Some(c) => !t.selecting() || t.selector.matches(&c.name),
            None => !t.selecting() || t.host,
        };
        self.last = Some((mntns, t.version, keep));
        if !keep {
            return Flow::Drop;
        }
        match found {
            Some(c) => {
                ev.set_str(schema.field(f.name), &c.name);
                ev.set_str(schema.field(f.id), &c.id);
                ev.set_str(schema.field(f.runtime), c.runtime.name());
                ev.set_str(schema.field(f.image), &c.image);
                if let Some(v) = ev.owned_mut(schema.field(f.pid)) {
                    *v = Value::U64(u64::from(c.pid));
                }
            }
            None => {
                for id in [f.name, f.id, f.runtime, f.image] {
                    ev.set_str(schema.field(id), "");
                }
                if let Some(v) = ev.owned_mut(schema.field(f.pid)) {
                    *v = Value::U64(0);
                }
                if mntns != 0 {
                    drop(t);
                    self.table.borrow_mut().miss(mntns);
                }
            }
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
            pid,
            mntns,
            netns: 0,
            cgroup: String::new(),
            mntns_ids: vec![mntns],
        }
    }

    fn fake(scans: Rc<Cell<u32>>) -> impl FnMut() -> Snapshot {
        move || {
            scans.set(scans.get() + 1);
            Snapshot {
                containers: vec![container("web", 100, 10), container("db", 200, 20)],
                host_mntns: Some(1),
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
            (&[("containername", "web")], &[1], &["web"], true, &[100]),
            (
                &[("containername", "web,db")],
                &[1, 3],
                &["web", "db"],
                true,
                &[100, 200],
            ),
            (&[("containername", "!web")], &[3], &["db"], true, &[200]),
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
            (&[], true, &["db", "web"]),
            (&[("containername", "web")], false, &["web"]),
            (
                &[("containername", "web"), ("host", "true")],
                true,
                &["web"],
            ),
            (&[("containername", "!web")], false, &["db"]),
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
        assert_eq!(
            col.column("runtime.containerId"),
            [Some(format!("{:0>64}", "db")), Some(String::new())]
        );
        assert_eq!(
            col.column("runtime.runtimeName"),
            [Some("docker".into()), Some(String::new())]
        );
        assert_eq!(
            col.column("runtime.containerImageName"),
            [Some("db:latest".into()), Some(String::new())]
        );
        assert_eq!(
            col.column("runtime.containerPid"),
            [Some("20".into()), Some("0".into())]
        );

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
                "runtime",
                "runtime.containerName",
                "runtime.containerId",
                "runtime.runtimeName",
                "runtime.containerImageName",
                "runtime.containerPid",
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
        assert!(
            s.fields()
                .iter()
                .all(|f| !f.name.starts_with("runtime") || f.hidden_in_tables())
        );
    }

    #[test]
    fn unknown_mount_namespaces_refresh_at_most_once_a_second() {
        let scans = Rc::new(Cell::new(0));
        let mut t = Table {
            by_mntns: HashMap::new(),
            host_mntns: None,
            selector: Selector::default(),
            host: false,
            filter: MntnsFilter::default(),
            targets: None,
            detect: Box::new(fake(scans.clone())),
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
