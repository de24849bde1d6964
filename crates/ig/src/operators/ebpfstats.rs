//! The eBPF statistics operator (priority 0): every loaded eBPF program's
//! run time and run count, and the memory of its maps, every interval, as
//! upstream's eBPF operator reports them when a gadget asks for it (the
//! `bpfstats` gadget).
//!
//! Turned on by `gadget.yaml`: `operator.ebpf.emitstats: true`. Its
//! parameters keep upstream's names: `operator.ebpf.statistics-interval`
//! (`--statistics-interval`, default 1 s) and `operator.ebpf.gadgets-only`
//! (`--gadgets-only`). Writes the array data source `bpfstats`:
//! `gadgetID`, `gadgetName`, `gadgetImage`, `progID`, `progName`,
//! `progType`, `cpuUsage`, `cpuUsageRelative`, `cpuTimeStr`,
//! `runtime_raw` (`type:gadget_duration`), `runcount`, `mapMemory_raw`
//! (`type:gadget_bytes`), `mapCount`, `comms`, `pids` (and `nodeName`
//! when `NODE_NAME` is set). Run time and count are those of the interval;
//! `cpuTimeStr` is the total since statistics were turned on.
//!
//! The kernel counts only while its statistics are on: the operator turns
//! them on at start and gives them back at stop (`bpf::stats::StatsSwitch`:
//! what happens on each way ig can end is written there).
//!
//! Which programs are a gadget's: upstream knows the gadgets its own
//! process (a daemon) runs. ig runs one gadget per process, so we look at
//! the processes that hold each program (a program or link descriptor in
//! `/proc/PID/fd`, its `prog_id` in fdinfo, as upstream's fallback does)
//! and call a program a gadget's when a process holding it is an `ig run`:
//! its executable is named `ig` (or is this very binary) and its command
//! line is `ig ... run IMAGE ...`, read by the CLI's own argument parser
//! ([`GadgetRuns`], given through `operators::Seams`). `gadgetImage` is
//! then IMAGE as given, `gadgetID` the process id; `gadgetName` stays empty
//! (ig runs have no instance names). With `--gadgets-only` there is one
//! row per gadget, summing its programs and the maps it holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::bpf::stats::{self, StatsSwitch};
use crate::datasource::{Event, FieldId, FieldKind, Value};
use crate::metadata::GadgetMetadata;
use crate::params::{ParamSpec, ParamType, ParamValue, ParamValues};
use crate::pipeline::{
    Dispatch, Instance, Operator, OperatorError, Priority, Setup, Source, SourceId,
};

use super::ticker::Schedule;
use super::usersource;

/// The operator's name in the chain.
pub const NAME: &str = "ebpfstats";

/// The `gadget.yaml` section it reads: upstream's eBPF operator's.
pub const SECTION: &str = "ebpf";

/// What `operator.ebpf` takes in `gadget.yaml`.
pub const SETTINGS: &[&str] = &["emitstats"];

/// The data source it adds.
pub const DATA_SOURCE: &str = "bpfstats";

const INTERVAL: &str = "operator.ebpf.statistics-interval";
const GADGETS_ONLY: &str = "operator.ebpf.gadgets-only";

/// Recognizes an `ig run` in a command line (argv, argv[0] included) and
/// says which image it runs. The CLI makes it from its own argument
/// parser; the default recognizes nothing.
#[derive(Clone)]
pub struct GadgetRuns(Arc<Recognizer>);

/// argv → the image an `ig run` runs.
type Recognizer = dyn Fn(&[OsString]) -> Option<String> + Send + Sync;

impl GadgetRuns {
    /// A recognizer made of `f`: argv to the image it runs, if it is an `ig
    /// run`.
    pub fn new(f: impl Fn(&[OsString]) -> Option<String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    fn image(&self, argv: &[OsString]) -> Option<String> {
        (self.0)(argv)
    }
}

impl Default for GadgetRuns {
    fn default() -> Self {
        Self::new(|_| None)
    }
}

impl std::fmt::Debug for GadgetRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GadgetRuns")
    }
}

/// Why the eBPF statistics operator cannot be configured or run.
#[derive(Debug, thiserror::Error)]
pub enum EbpfStatsError {
    /// A setting of `operator.ebpf` is invalid.
    #[error("{0}")]
    Config(String),
    /// The kernel's statistics cannot be read.
    #[error(transparent)]
    Stats(#[from] stats::StatsError),
    /// Starting the interval timer failed.
    #[error("starting the interval timer")]
    Timer(#[source] std::io::Error),
}

/// The `bpfstats` operator: every eBPF program of the host, its run time and
/// memory, every interval.
pub struct EbpfStats {
    meta: GadgetMetadata,
    runs: GadgetRuns,
    interval: Duration,
    gadgets_only: bool,
}

impl EbpfStats {
    /// The operator for a gadget, if its configuration turns it on.
    pub fn from_config(
        meta: &GadgetMetadata,
        runs: GadgetRuns,
    ) -> Result<Option<Self>, EbpfStatsError> {
        let on = meta
            .operator_bool(SECTION, "emitstats")
            .map_err(EbpfStatsError::Config)?;
        Ok((on == Some(true)).then(|| Self {
            meta: meta.clone(),
            runs,
            interval: Duration::from_secs(1),
            gadgets_only: false,
        }))
    }
}

struct Ids {
    node: Option<FieldId>,
    gadget_id: FieldId,
    gadget_name: FieldId,
    gadget_image: FieldId,
    prog_id: FieldId,
    prog_name: FieldId,
    prog_type: FieldId,
    cpu: FieldId,
    cpu_relative: FieldId,
    cpu_time: FieldId,
    runtime: FieldId,
    runcount: FieldId,
    map_memory: FieldId,
    map_count: FieldId,
    comms: FieldId,
    pids: FieldId,
}

fn declare(b: &mut crate::datasource::SchemaBuilder, node: bool) -> Result<Ids, OperatorError> {
    use FieldKind as K;
    let f = usersource::field;
    let right = ("columns.alignment", "right");
    let node = if node {
        Some(f(
            b,
            "nodeName",
            K::String,
            &[
                ("columns.width", "30"),
                ("columns.ellipsis", "middle"),
                ("metrics.type", "key"),
            ],
            &[],
        )?)
    } else {
        None
    };
    Ok(Ids {
        node,
        gadget_id: f(
            b,
            "gadgetID",
            K::String,
            &[
                ("columns.width", "8"),
                (
                    "description",
                    "Unique ID of the gadget run (the process id of its ig)",
                ),
            ],
            &[],
        )?,
        gadget_name: f(
            b,
            "gadgetName",
            K::String,
            &[
                ("columns.width", "16"),
                ("description", "Name of the Gadget instance"),
                ("metrics.type", "key"),
            ],
            &[],
        )?,
        gadget_image: f(
            b,
            "gadgetImage",
            K::String,
            &[
                ("columns.width", "16"),
                (
                    "description",
                    "Name of the Gadget image (like trace_open, trace_exec, etc.)",
                ),
                ("metrics.type", "key"),
            ],
            &[],
        )?,
        prog_id: f(
            b,
            "progID",
            K::U32,
            &[
                right,
                (
                    "description",
                    "eBPF program ID assigned by the Linux kernel",
                ),
                ("columns.width", "5"),
            ],
            &[],
        )?,
        prog_name: f(
            b,
            "progName",
            K::String,
            &[
                ("columns.width", "16"),
                ("columns.fixed", "true"),
                ("description", "Name of the eBPF program"),
                ("metrics.type", "key"),
            ],
            &[],
        )?,
        prog_type: f(
            b,
            "progType",
            K::String,
            &[
                ("columns.width", "16"),
                ("description", "Type of the eBPF program"),
            ],
            &[],
        )?,
        cpu: f(
            b,
            "cpuUsage",
            K::F64,
            &[
                ("columns.alias", "%CPU"),
                ("columns.precision", "2"),
                right,
                ("description", "CPU usage percentage of the eBPF program"),
                ("columns.width", "8"),
            ],
            &[],
        )?,
        cpu_relative: f(
            b,
            "cpuUsageRelative",
            K::F64,
            &[
                ("columns.alias", "%RELCPU"),
                ("columns.precision", "2"),
                right,
                (
                    "description",
                    "CPU usage relative to the number of available CPUs",
                ),
                ("columns.width", "8"),
            ],
            &[],
        )?,
        cpu_time: f(
            b,
            "cpuTimeStr",
            K::String,
            &[
                ("columns.alias", "TIME+"),
                right,
                ("description", "Total CPU time formatted as duration"),
                ("columns.width", "12"),
            ],
            &[],
        )?,
        runtime: f(
            b,
            "runtime_raw",
            K::U64,
            &[
                ("columns.width", "12"),
                right,
                (
                    "description",
                    "Time that the eBPF program or Gadget has run in nanoseconds",
                ),
                ("metrics.type", "counter"),
            ],
            &["type:gadget_duration"],
        )?,
        runcount: f(
            b,
            "runcount",
            K::U64,
            &[
                ("columns.width", "12"),
                right,
                (
                    "description",
                    "Number of times the eBPF program or Gadget has run",
                ),
                ("metrics.type", "counter"),
            ],
            &[],
        )?,
        map_memory: f(
            b,
            "mapMemory_raw",
            K::U64,
            &[
                ("columns.width", "12"),
                right,
                ("description", "Memory used by maps in bytes"),
                ("metrics.type", "gauge"),
            ],
            &["type:gadget_bytes"],
        )?,
        map_count: f(
            b,
            "mapCount",
            K::U64,
            &[
                ("columns.width", "5"),
                right,
                (
                    "description",
                    "Number of maps used by the eBPF program or Gadget",
                ),
                ("metrics.type", "gauge"),
            ],
            &[],
        )?,
        comms: f(
            b,
            "comms",
            K::String,
            &[
                ("columns.width", "16"),
                ("description", "List of processes using the eBPF program"),
            ],
            &[],
        )?,
        pids: f(
            b,
            "pids",
            K::String,
            &[
                ("columns.width", "16"),
                ("description", "List of PIDs using the eBPF program"),
            ],
            &[],
        )?,
    })
}

/// The parameters of the operator (upstream's names).
pub fn params() -> Vec<ParamSpec> {
    vec![
        ParamSpec {
            key: "statistics-interval".into(),
            full_name: INTERVAL.into(),
            description: "interval in which to provide gadget statistics".into(),
            default: "1000ms".into(),
            ty: ParamType::Duration,
            group: "eBPF statistics".into(),
            alias: None,
        },
        ParamSpec {
            key: "gadgets-only".into(),
            full_name: GADGETS_ONLY.into(),
            description: "Show only gadget-related eBPF programs: one row per running `ig run`"
                .into(),
            default: "false".into(),
            ty: ParamType::Bool,
            group: "eBPF statistics".into(),
            alias: None,
        },
    ]
}

impl Operator for EbpfStats {
    fn name(&self) -> &'static str {
        NAME
    }
    fn data_source_names(&self) -> Vec<String> {
        vec![DATA_SOURCE.to_owned()]
    }
    fn priority(&self) -> Priority {
        // Upstream's eBPF operator's.
        0
    }

    fn params(&self) -> Vec<ParamSpec> {
        params()
    }

    fn apply_params(&mut self, values: &ParamValues) -> Result<(), OperatorError> {
        if let Some(ParamValue::Duration(d)) = values.get(INTERVAL) {
            if d.is_zero() {
                return Err(OperatorError::failed(
                    NAME,
                    EbpfStatsError::Config("--statistics-interval must be more than 0".into()),
                ));
            }
            self.interval = *d;
        }
        if let Some(ParamValue::Bool(b)) = values.get(GADGETS_ONLY) {
            self.gadgets_only = *b;
        }
        Ok(())
    }

    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let mut b = usersource::array_source(DATA_SOURCE, &self.meta);
        let a = b.annotations_mut();
        a.entry("fetch-interval".into())
            .or_insert_with(|| crate::metadata::config::format_go_duration(self.interval));
        a.entry("cli.clear-screen-before".into())
            .or_insert_with(|| "true".into());
        let node = std::env::var("NODE_NAME").ok();
        let ids = declare(&mut b, node.is_some())?;
        let source = setup.add_source(b);
        Ok(Some(Box::new(StatsInstance {
            source,
            ids,
            node,
            runs: self.runs,
            interval: self.interval,
            gadgets_only: self.gadgets_only,
            switch: None,
            schedule: Schedule::new(self.interval, self.interval, 0),
            previous: HashMap::new(),
            cpus: online_cpus(),
            proc_root: PathBuf::from("/proc"),
        })))
    }
}

/// CPUs this process may run on (upstream's `runtime.NumCPU`).
fn online_cpus() -> f64 {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut set) == 0 {
            let n = libc::CPU_COUNT(&set);
            if n > 0 {
                return f64::from(n);
            }
        }
    }
    1.0
}

struct StatsInstance {
    source: SourceId,
    ids: Ids,
    node: Option<String>,
    runs: GadgetRuns,
    interval: Duration,
    gadgets_only: bool,
    switch: Option<StatsSwitch>,
    schedule: Schedule,
    /// Run time and count of each program at the previous report.
    previous: HashMap<u32, (u64, u64)>,
    cpus: f64,
    proc_root: PathBuf,
}

/// A process holding eBPF objects.
#[derive(Default)]
struct Holder {
    comm: String,
    progs: BTreeSet<u32>,
    maps: BTreeSet<u32>,
    /// The image, when the process is an `ig run`.
    image: Option<String>,
}

/// Who holds what: `/proc/PID/fd` entries that are eBPF programs, links or
/// maps, with their ids from fdinfo.
fn holders(proc_root: &Path, runs: &GadgetRuns) -> BTreeMap<u32, Holder> {
    let own_exe = std::fs::metadata(proc_root.join("self/exe"))
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let pdir = e.path();
        let Ok(fds) = std::fs::read_dir(pdir.join("fd")) else {
            continue;
        };
        let mut h = Holder::default();
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.as_os_str().as_bytes();
            let key = match target {
                b"anon_inode:bpf-prog" | b"anon_inode:bpf_link" => "prog_id",
                b"anon_inode:bpf-map" => "map_id",
                _ => continue,
            };
            let info = pdir.join("fdinfo").join(fd.file_name());
            let Some(id) = std::fs::read_to_string(info)
                .ok()
                .and_then(|t| stats::fdinfo_value(&t, key))
                .and_then(|v| u32::try_from(v).ok())
            else {
                continue;
            };
            if key == "prog_id" {
                h.progs.insert(id);
            } else {
                h.maps.insert(id);
            }
        }
        if h.progs.is_empty() && h.maps.is_empty() {
            continue;
        }
        h.comm = std::fs::read_to_string(pdir.join("comm"))
            .map(|c| c.trim_end().to_owned())
            .unwrap_or_default();
        h.image = gadget_image(&pdir, own_exe, runs);
        out.insert(pid, h);
    }
    out
}

/// The image a process runs, when it is an `ig run`.
fn gadget_image(pdir: &Path, own_exe: Option<(u64, u64)>, runs: &GadgetRuns) -> Option<String> {
    let exe = std::fs::read_link(pdir.join("exe")).ok()?;
    // `ig (deleted)` when the binary was replaced while it runs.
    let named_ig = exe
        .file_name()
        .is_some_and(|n| n == "ig" || n.as_bytes().starts_with(b"ig "));
    let same = own_exe.is_some()
        && std::fs::metadata(pdir.join("exe"))
            .ok()
            .map(|m| (m.dev(), m.ino()))
            == own_exe;
    if !named_ig && !same {
        return None;
    }
    let cmdline = std::fs::read(pdir.join("cmdline")).ok()?;
    let argv: Vec<OsString> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| std::ffi::OsStr::from_bytes(a).to_owned())
        .collect();
    runs.image(&argv)
}

/// One row before it becomes an event.
#[derive(Default)]
struct Row {
    gadget_id: String,
    gadget_image: String,
    prog: Option<(u32, String, &'static str)>,
    runtime: u64,
    runcount: u64,
    total_runtime: u64,
    map_memory: u64,
    map_count: u64,
    comms: String,
    pids: String,
}

impl StatsInstance {
    fn rows(&mut self) -> Result<Vec<Row>, EbpfStatsError> {
        let programs = stats::programs()?;
        let memory = stats::map_memory();
        let holders = holders(&self.proc_root, &self.runs);
        let previous = std::mem::take(&mut self.previous);
        let by_id: HashMap<u32, &stats::Program> = programs.iter().map(|p| (p.id, p)).collect();
        // This interval's run time and count of a program.
        let delta = |p: &stats::Program| {
            let (t, c) = previous.get(&p.id).copied().unwrap_or((0, 0));
            (
                p.run_time_ns.saturating_sub(t),
                p.run_count.saturating_sub(c),
            )
        };
        let mut rows = Vec::new();
        if self.gadgets_only {
            for (pid, h) in &holders {
                let Some(image) = &h.image else { continue };
                if h.progs.is_empty() {
                    continue;
                }
                let mut row = Row {
                    gadget_id: pid.to_string(),
                    gadget_image: image.clone(),
                    comms: h.comm.clone(),
                    pids: pid.to_string(),
                    ..Row::default()
                };
                let mut maps = h.maps.clone();
                for id in &h.progs {
                    let Some(p) = by_id.get(id) else { continue };
                    let (t, c) = delta(p);
                    row.runtime += t;
                    row.runcount += c;
                    row.total_runtime += p.run_time_ns;
                    maps.extend(p.map_ids.iter().copied());
                }
                row.map_count = maps.len() as u64;
                row.map_memory = maps.iter().filter_map(|m| memory.get(m)).sum();
                rows.push(row);
            }
        } else {
            for p in &programs {
                let (t, c) = delta(p);
                let users: Vec<(&u32, &Holder)> = holders
                    .iter()
                    .filter(|(_, h)| h.progs.contains(&p.id))
                    .collect();
                let gadget = users.iter().find(|(_, h)| h.image.is_some());
                let join = |f: &dyn Fn(&(&u32, &Holder)) -> String| {
                    users.iter().map(f).collect::<Vec<_>>().join(",")
                };
                rows.push(Row {
                    gadget_id: gadget.map(|(pid, _)| pid.to_string()).unwrap_or_default(),
                    gadget_image: gadget
                        .and_then(|(_, h)| h.image.clone())
                        .unwrap_or_default(),
                    prog: Some((p.id, p.name.clone(), p.kind)),
                    runtime: t,
                    runcount: c,
                    total_runtime: p.run_time_ns,
                    map_memory: p.map_ids.iter().filter_map(|m| memory.get(m)).sum(),
                    map_count: p.map_ids.len() as u64,
                    comms: join(&|(_, h)| h.comm.clone()),
                    pids: join(&|(pid, _)| pid.to_string()),
                });
            }
        }
        self.previous = programs
            .iter()
            .map(|p| (p.id, (p.run_time_ns, p.run_count)))
            .collect();
        Ok(rows)
    }

    fn emit(&mut self, out: &mut Dispatch, rows: Vec<Row>) {
        let schema = out.schema(self.source).clone();
        let interval_ns = self.interval.as_nanos() as f64;
        let mut events = Vec::with_capacity(rows.len());
        for r in rows {
            let mut ev = Event::new(&schema);
            let ids = &self.ids;
            let mut set = |id: FieldId, v: Value| ev.set_value(schema.field(id), v);
            if let (Some(id), Some(node)) = (ids.node, &self.node) {
                set(id, Value::Str(node.clone()));
            }
            set(ids.gadget_id, Value::Str(r.gadget_id));
            set(ids.gadget_name, Value::Str(String::new()));
            set(ids.gadget_image, Value::Str(r.gadget_image));
            if let Some((id, name, kind)) = r.prog {
                set(ids.prog_id, Value::U64(u64::from(id)));
                set(ids.prog_name, Value::Str(name));
                set(ids.prog_type, Value::Str(kind.to_owned()));
            } else {
                set(ids.prog_id, Value::U64(0));
                set(ids.prog_name, Value::Str(String::new()));
                set(ids.prog_type, Value::Str(String::new()));
            }
            let cpu = if interval_ns > 0.0 {
                r.runtime as f64 / interval_ns * 100.0
            } else {
                0.0
            };
            set(ids.cpu, Value::F64(cpu));
            set(ids.cpu_relative, Value::F64(cpu / self.cpus));
            set(
                ids.cpu_time,
                Value::Str(crate::metadata::config::format_go_duration(
                    Duration::from_nanos(r.total_runtime),
                )),
            );
            set(ids.runtime, Value::U64(r.runtime));
            set(ids.runcount, Value::U64(r.runcount));
            set(ids.map_memory, Value::U64(r.map_memory));
            set(ids.map_count, Value::U64(r.map_count));
            set(ids.comms, Value::Str(r.comms));
            set(ids.pids, Value::Str(r.pids));
            events.push(ev);
        }
        out.array(self.source, &mut events);
    }
}

impl Instance for StatsInstance {
    fn start(&mut self) -> Result<(), OperatorError> {
        let fail = |e: EbpfStatsError| OperatorError::failed(NAME, e);
        self.switch = Some(StatsSwitch::enable().map_err(|e| fail(e.into()))?);
        self.schedule
            .start()
            .map_err(|e| fail(EbpfStatsError::Timer(e)))?;
        Ok(())
    }

    fn stop(&mut self) -> Result<(), OperatorError> {
        self.schedule.stop();
        // Statistics go back to what they were.
        self.switch = None;
        Ok(())
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }
}

impl Source for StatsInstance {
    fn fds(&self) -> Vec<RawFd> {
        self.schedule.fds()
    }

    fn drain(&mut self, out: &mut Dispatch) -> Result<(), OperatorError> {
        if !self.schedule.due() {
            return Ok(());
        }
        let rows = self.rows().map_err(|e| OperatorError::failed(NAME, e))?;
        self.emit(out, rows);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_only_when_the_gadget_asks() {
        let meta = |y: &str| GadgetMetadata::parse(y.as_bytes(), "g.yaml").unwrap();
        let on = |y: &str| {
            EbpfStats::from_config(&meta(y), GadgetRuns::default())
                .unwrap()
                .is_some()
        };
        assert!(!on("name: x\n"));
        assert!(on("operator:\n  ebpf:\n    emitstats: true\n"));
        assert!(on("operator:\n  EBPF:\n    emitstats: 'True'\n"));
        assert!(!on("operator:\n  ebpf:\n    emitstats: false\n"));
    }

    #[test]
    fn our_own_process_is_recognized_through_the_cli_parser() {
        // This test binary is neither named ig nor given a run line.
        let runs = GadgetRuns::new(|argv| argv.get(1).map(|a| a.to_string_lossy().into_owned()));
        let pdir = PathBuf::from(format!("/proc/{}", std::process::id()));
        let own = std::fs::metadata("/proc/self/exe")
            .ok()
            .map(|m| (m.dev(), m.ino()));
        // Same binary: recognized, and the image is what the parser says.
        let image = gadget_image(&pdir, own, &runs);
        let argv1 = std::env::args().nth(1);
        assert_eq!(image, argv1);
        // Another binary not named ig: not a gadget run.
        assert_eq!(gadget_image(&pdir, Some((0, 0)), &runs), None);
    }
}
