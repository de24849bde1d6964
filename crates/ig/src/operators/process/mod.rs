//! The process operator (priority -1000): a table of the host's processes
//! with their CPU and memory use, every interval, as upstream's `process`
//! operator (the `top_process` gadget) makes it.
//!
//! Turned on by `gadget.yaml`: `operator.process.emitstats: true`, with
//! `interval` (default 60 s, as upstream), `first-interval` (an early
//! report, not counted), `count` (stop after this many reports; 0: never)
//! and `fields` (which fields, default all). Writes the array data source
//! `processes`: `pid`, `ppid`, `comm`, `priority`, `nice`, `cpuUsage`,
//! `cpuUsageRelative`, `memoryRSS_raw`, `memoryVirtual_raw`,
//! `memoryShared_raw` (tagged `type:gadget_bytes`: the formatters add the
//! readable `memoryRSS`...), `memoryRelative`, `threadCount`, `state`,
//! `uid`, `startTime`, `startTimeStr`, `cpuTime`, `cpuTimeStr`, and
//! `mountnsid` (tagged `type:gadget_mntns_id`, which the local manager
//! turns into container names).
//!
//! CPU use is upstream's: the clock ticks (`utime + stime` of
//! `/proc/PID/stat`, 100 per second) a process used since the previous
//! reading, over the seconds between the two readings, in percent; a
//! process not seen in the previous reading shows 0. A first reading is
//! taken at start, not shown. Relative CPU divides by the online CPUs.
//!
//! The work is a read of `/proc` per interval, on the event loop's thread
//! (a `timerfd` wakes it); nothing per event of another source.

mod procfs;

use std::collections::HashMap;
use std::io::Read as _;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::datasource::{Event, FieldId, FieldKind, Value};
use crate::metadata::GadgetMetadata;
use crate::pipeline::{
    Dispatch, Instance, Operator, OperatorError, Priority, Setup, Source, SourceId,
};

use super::ticker::Schedule;
use super::usersource::{self, template};

/// The operator's name (`operator.process`).
pub const NAME: &str = "process";

/// Upstream's priority: before every operator that enriches its rows.
const PRIORITY: Priority = -1000;

/// What `operator.process` takes in `gadget.yaml`.
pub const SETTINGS: &[&str] = &["count", "emitstats", "fields", "first-interval", "interval"];

/// The data source's name.
pub const DATA_SOURCE: &str = "processes";

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Clock ticks per second of `/proc/PID/stat` (`USER_HZ`, 100 on every
/// architecture Linux runs on today; upstream assumes it too).
const TICKS_PER_SECOND: f64 = 100.0;

/// The fields a gadget may ask for, in upstream's default order.
const FIELDS: &[&str] = &[
    "pid",
    "ppid",
    "comm",
    "priority",
    "nice",
    "cpuUsage",
    "cpuUsageRelative",
    "memoryRSS",
    "memoryVirtual",
    "memoryShared",
    "memoryRelative",
    "threadCount",
    "state",
    "uid",
    "startTime",
    "cpuTime",
];

/// Why the process operator cannot be configured or run.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A setting of `operator.process` is invalid.
    #[error("{0}")]
    Config(String),
    /// operator.process.fields: unknown field `field` (fields: `FIELDS`).
    #[error("operator.process.fields: unknown field {field} (fields: {})", FIELDS.join(", "))]
    UnknownField {
        /// The field.
        field: String,
    },
    /// Starting the interval timer failed.
    #[error("starting the interval timer")]
    Timer(#[source] std::io::Error),
}

/// Settings read from `operator.process`.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Time between tables.
    pub interval: Duration,
    /// Time before the first table.
    pub first_interval: Duration,
    /// Tables before the run ends (0: no limit).
    pub count: u64,
    /// The fields asked for, in order.
    pub fields: Vec<String>,
}

impl Settings {
    /// The settings, or `None` when the gadget does not turn the operator
    /// on (`emitstats` is not true).
    pub fn from_config(meta: &GadgetMetadata) -> Result<Option<Self>, ProcessError> {
        let c = ProcessError::Config;
        if meta.operator_bool(NAME, "emitstats").map_err(c)? != Some(true) {
            return Ok(None);
        }
        let interval = meta
            .operator_duration(NAME, "interval")
            .map_err(c)?
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_INTERVAL);
        let first_interval = meta
            .operator_duration(NAME, "first-interval")
            .map_err(c)?
            .unwrap_or_default();
        let count = meta.operator_int(NAME, "count").map_err(c)?.unwrap_or(0);
        let fields = meta
            .operator_strings(NAME, "fields")
            .map_err(c)?
            .unwrap_or_default();
        for f in &fields {
            if !FIELDS.contains(&f.as_str()) && f != "startTimeStr" {
                return Err(ProcessError::UnknownField { field: f.clone() });
            }
        }
        Ok(Some(Self {
            interval,
            first_interval,
            count: u64::try_from(count).unwrap_or(0),
            fields,
        }))
    }
}

/// The `process` operator: a table of the host's processes from `/proc`, every
/// interval.
pub struct ProcessOperator {
    settings: Settings,
    meta: GadgetMetadata,
    proc_root: PathBuf,
    sys_root: PathBuf,
}

impl ProcessOperator {
    /// The operator for a gadget, if its configuration turns it on.
    pub fn from_config(meta: &GadgetMetadata) -> Result<Option<Self>, ProcessError> {
        Ok(Settings::from_config(meta)?.map(|settings| Self {
            settings,
            meta: meta.clone(),
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
        }))
    }

    /// Read another tree than `/proc` and `/sys` (tests).
    #[must_use]
    pub fn with_roots(mut self, proc_root: PathBuf, sys_root: PathBuf) -> Self {
        self.proc_root = proc_root;
        self.sys_root = sys_root;
        self
    }
}

/// The fields of the data source that exist for this run.
#[derive(Default)]
struct Ids {
    pid: Option<FieldId>,
    ppid: Option<FieldId>,
    comm: Option<FieldId>,
    priority: Option<FieldId>,
    nice: Option<FieldId>,
    cpu: Option<FieldId>,
    cpu_relative: Option<FieldId>,
    rss: Option<FieldId>,
    virt: Option<FieldId>,
    shared: Option<FieldId>,
    mem_relative: Option<FieldId>,
    threads: Option<FieldId>,
    state: Option<FieldId>,
    uid: Option<FieldId>,
    start_time: Option<FieldId>,
    start_time_str: Option<FieldId>,
    cpu_time: Option<FieldId>,
    cpu_time_str: Option<FieldId>,
    mntns: Option<FieldId>,
}

impl Ids {
    fn needs_status(&self) -> bool {
        self.ppid.is_some()
            || self.comm.is_some()
            || self.state.is_some()
            || self.uid.is_some()
            || self.rss.is_some()
            || self.virt.is_some()
            || self.shared.is_some()
            || self.mem_relative.is_some()
            || self.threads.is_some()
    }

    fn needs_stat(&self) -> bool {
        self.cpu.is_some()
            || self.cpu_relative.is_some()
            || self.cpu_time.is_some()
            || self.start_time.is_some()
            || self.priority.is_some()
            || self.nice.is_some()
    }
}

fn declare(
    b: &mut crate::datasource::SchemaBuilder,
    fields: &[String],
) -> Result<Ids, OperatorError> {
    use FieldKind as K;
    let right = ("columns.alignment", "right");
    let mut ids = Ids {
        pid: Some(usersource::field(b, "pid", K::I32, template("pid"), &[])?),
        ..Ids::default()
    };
    let wanted: Vec<&str> = if fields.is_empty() {
        FIELDS.to_vec()
    } else {
        fields.iter().map(String::as_str).collect()
    };
    let bytes = ["type:gadget_bytes"];
    for f in wanted {
        match f {
            "ppid" => ids.ppid = Some(usersource::field(b, "ppid", K::I32, template("ppid"), &[])?),
            "comm" => {
                ids.comm = Some(usersource::field(
                    b,
                    "comm",
                    K::String,
                    template("comm"),
                    &[],
                )?)
            }
            "nice" => {
                ids.nice = Some(usersource::field(
                    b,
                    "nice",
                    K::I8,
                    &[right, ("description", "The nice value of the process.")],
                    &[],
                )?);
            }
            "priority" => {
                ids.priority = Some(usersource::field(
                    b,
                    "priority",
                    K::I8,
                    &[right, ("description", "The priority of the process.")],
                    &[],
                )?);
            }
            "cpuTime" => {
                ids.cpu_time = Some(usersource::field(
                    b,
                    "cpuTime",
                    K::I64,
                    &[
                        ("columns.hidden", "true"),
                        ("description", "Total CPU time"),
                    ],
                    &[],
                )?);
                ids.cpu_time_str = Some(usersource::field(
                    b,
                    "cpuTimeStr",
                    K::String,
                    &[
                        ("description", "Total CPU time, formatted as duration"),
                        right,
                        ("columns.maxwidth", "12"),
                    ],
                    &[],
                )?);
            }
            "cpuUsage" => {
                ids.cpu = Some(usersource::field(
                    b,
                    "cpuUsage",
                    K::F64,
                    &[
                        ("columns.precision", "1"),
                        right,
                        (
                            "description",
                            "The CPU usage of the process as a percentage.",
                        ),
                        ("columns.maxwidth", "8"),
                    ],
                    &[],
                )?);
            }
            "cpuUsageRelative" => {
                ids.cpu_relative = Some(usersource::field(
                    b,
                    "cpuUsageRelative",
                    K::F64,
                    &[
                        ("columns.precision", "1"),
                        right,
                        (
                            "description",
                            "The CPU usage percentage relative to the number of CPUs available.",
                        ),
                        ("columns.maxwidth", "8"),
                    ],
                    &[],
                )?);
            }
            "memoryRSS" => {
                ids.rss = Some(usersource::field(
                    b,
                    "memoryRSS_raw",
                    K::U64,
                    &[
                        right,
                        (
                            "description",
                            "The Resident Set Size (RSS) of the process in bytes: its memory held in RAM.",
                        ),
                    ],
                    &bytes,
                )?);
            }
            "memoryVirtual" => {
                ids.virt = Some(usersource::field(
                    b,
                    "memoryVirtual_raw",
                    K::U64,
                    &[
                        right,
                        (
                            "description",
                            "The Virtual Memory Size of the process in bytes.",
                        ),
                    ],
                    &bytes,
                )?);
            }
            "memoryRelative" => {
                ids.mem_relative = Some(usersource::field(
                    b,
                    "memoryRelative",
                    K::F64,
                    &[
                        right,
                        ("columns.precision", "1"),
                        (
                            "description",
                            "Percentage of RSS memory used relative to available memory.",
                        ),
                        ("columns.maxwidth", "8"),
                    ],
                    &[],
                )?);
            }
            "memoryShared" => {
                ids.shared = Some(usersource::field(
                    b,
                    "memoryShared_raw",
                    K::U64,
                    &[
                        right,
                        (
                            "description",
                            "The Shared Memory Size of the process in bytes.",
                        ),
                    ],
                    &bytes,
                )?);
            }
            "threadCount" => {
                ids.threads = Some(usersource::field(
                    b,
                    "threadCount",
                    K::I32,
                    &[
                        right,
                        ("description", "The number of threads used by the process."),
                        ("columns.maxwidth", "11"),
                    ],
                    &[],
                )?);
            }
            "state" => {
                ids.state = Some(usersource::field(
                    b,
                    "state",
                    K::String,
                    &[
                        (
                            "description",
                            "The state of the process (R running, S sleeping, D disk sleep, Z zombie, T stopped...).",
                        ),
                        ("value.one-of", "R,S,D,Z,T,t,W,X,x,K,W,P,I"),
                        ("columns.maxwidth", "5"),
                    ],
                    &[],
                )?);
            }
            "uid" => ids.uid = Some(usersource::field(b, "uid", K::U32, template("uid"), &[])?),
            "startTime" | "startTimeStr" if ids.start_time.is_none() => {
                ids.start_time = Some(usersource::field(
                    b,
                    "startTime",
                    K::U64,
                    &[
                        (
                            "description",
                            "The time when the process started, in clock ticks since system boot.",
                        ),
                        ("columns.hidden", "true"),
                    ],
                    &[],
                )?);
                ids.start_time_str = Some(usersource::field(
                    b,
                    "startTimeStr",
                    K::String,
                    &[
                        (
                            "description",
                            "The time when the process started, RFC 3339 in UTC (2023-06-15T14:30:45Z).",
                        ),
                        ("columns.ellipsis", "start"),
                        ("columns.maxwidth", "25"),
                    ],
                    &[],
                )?);
            }
            _ => {}
        }
    }
    ids.mntns = Some(usersource::field(
        b,
        "mountnsid",
        K::U64,
        template("mntns_id"),
        &["type:gadget_mntns_id"],
    )?);
    Ok(ids)
}

impl Operator for ProcessOperator {
    fn name(&self) -> &'static str {
        NAME
    }
    fn data_source_names(&self) -> Vec<String> {
        vec![DATA_SOURCE.to_owned()]
    }
    fn priority(&self) -> Priority {
        PRIORITY
    }

    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let mut b = usersource::array_source(DATA_SOURCE, &self.meta);
        b.annotations_mut()
            .entry("fetch-interval".into())
            .or_insert_with(|| go_duration(self.settings.interval));
        let ids = declare(&mut b, &self.settings.fields)?;
        let source = setup.add_source(b);
        Ok(Some(Box::new(ProcessInstance {
            proc_root: self.proc_root,
            sys_root: self.sys_root,
            source,
            ids,
            schedule: Schedule::new(
                self.settings.first_interval,
                self.settings.interval,
                self.settings.count,
            ),
            last_cpu: HashMap::new(),
            last_sample: None,
            boot_time: 0,
            buf: Vec::new(),
        })))
    }
}

/// A duration as Go prints it, for the `fetch-interval` annotation.
fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        let s = d.as_secs();
        let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
        if h > 0 {
            format!("{h}h{m}m{s}s")
        } else if m > 0 {
            format!("{m}m{s}s")
        } else {
            format!("{s}s")
        }
    } else {
        format!("{}ms", d.as_millis())
    }
}

struct ProcessInstance {
    proc_root: PathBuf,
    sys_root: PathBuf,
    source: SourceId,
    ids: Ids,
    schedule: Schedule,
    /// CPU ticks of each pid at the previous reading.
    last_cpu: HashMap<i32, u64>,
    last_sample: Option<Instant>,
    /// Boot time, seconds since the epoch (`btime` of `/proc/stat`).
    boot_time: i64,
    /// Reports after the first interval's early one.
    buf: Vec<u8>,
}

/// One process as read from `/proc`.
#[derive(Default)]
struct Proc {
    pid: i32,
    stat: Option<procfs::Stat>,
    status: Option<procfs::Status>,
    mntns: u64,
}

impl ProcessInstance {
    fn read(&mut self, path: &std::path::Path) -> Option<&[u8]> {
        self.buf.clear();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut self.buf))
            .ok()?;
        Some(&self.buf)
    }

    /// Every process of `/proc`, read as the fields need.
    fn collect(&mut self) -> Vec<Proc> {
        let Ok(dir) = std::fs::read_dir(&self.proc_root) else {
            log::warn!("process: cannot read {}", self.proc_root.display());
            return Vec::new();
        };
        let mut pids: Vec<i32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        let (status, stat) = (self.ids.needs_status(), self.ids.needs_stat());
        let mut out = Vec::with_capacity(pids.len());
        for pid in pids {
            let dir = self.proc_root.join(pid.to_string());
            let mut p = Proc {
                pid,
                ..Proc::default()
            };
            // A process that ends while we read it is left out.
            if status {
                let Some(b) = self.read(&dir.join("status")) else {
                    continue;
                };
                p.status = Some(procfs::parse_status(b));
            }
            if stat {
                let Some(s) = self.read(&dir.join("stat")).and_then(procfs::parse_stat) else {
                    continue;
                };
                p.stat = Some(s);
            }
            p.mntns = std::fs::read_link(dir.join("ns/mnt"))
                .ok()
                .and_then(|l| crate::containers::parse_ns_link(&l.to_string_lossy()))
                .unwrap_or(0);
            out.push(p);
        }
        out
    }

    fn online_cpus(&self) -> f64 {
        std::fs::read_to_string(self.sys_root.join("devices/system/cpu/online"))
            .ok()
            .and_then(|t| procfs::count_cpu_list(&t))
            .filter(|n| *n > 0)
            .map_or(1.0, |n| n as f64)
    }

    /// Read `/proc`; with `out`, hand the table to the chain (without, it
    /// is the baseline of the next report's CPU use).
    fn report(&mut self, out: Option<&mut Dispatch>) {
        let emit = out.is_some();
        let schema = out.as_ref().map(|o| o.schema(self.source).clone());
        let now = Instant::now();
        let seconds = self
            .last_sample
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        let procs = self.collect();
        let cpus = self.online_cpus();
        let mem_total = self
            .read(&self.proc_root.clone().join("meminfo"))
            .and_then(procfs::parse_mem_total)
            .unwrap_or(0);
        let mut last = HashMap::with_capacity(procs.len());
        let mut events = Vec::with_capacity(if emit { procs.len() } else { 0 });
        for p in &procs {
            let ticks = p.stat.map(|s| s.utime + s.stime);
            if let Some(t) = ticks {
                last.insert(p.pid, t);
            }
            let Some(schema) = &schema else {
                continue;
            };
            let cpu = match (ticks, self.last_cpu.get(&p.pid)) {
                (Some(t), Some(&prev)) if seconds > 0.0 => {
                    // A pid reused by a younger process has fewer ticks.
                    let d = if t >= prev { t - prev } else { t };
                    100.0 * d as f64 / TICKS_PER_SECOND / seconds
                }
                _ => 0.0,
            };
            let mut ev = Event::new(schema);
            let ids = &self.ids;
            let mut set = |id: Option<FieldId>, v: Value| {
                if let Some(id) = id {
                    ev.set_value(schema.field(id), v);
                }
            };
            set(ids.pid, Value::I64(i64::from(p.pid)));
            set(ids.mntns, Value::U64(p.mntns));
            if let Some(s) = &p.status {
                set(ids.ppid, Value::I64(s.ppid));
                set(ids.comm, Value::Str(s.name.clone()));
                set(ids.state, Value::Str(s.state.clone()));
                set(ids.uid, Value::U64(u64::from(s.uid)));
                set(ids.rss, Value::U64(s.vm_rss));
                set(ids.virt, Value::U64(s.vm_size));
                set(ids.shared, Value::U64(s.shared));
                set(ids.threads, Value::I64(s.threads));
                let rel = if mem_total > 0 {
                    100.0 * s.vm_rss as f64 / mem_total as f64
                } else {
                    0.0
                };
                set(ids.mem_relative, Value::F64(rel));
            }
            if let Some(st) = &p.stat {
                set(ids.priority, Value::I64(st.priority));
                set(ids.nice, Value::I64(st.nice));
                set(ids.cpu, Value::F64(cpu));
                set(ids.cpu_relative, Value::F64(cpu / cpus));
                let total = st.utime + st.stime;
                set(
                    ids.cpu_time,
                    Value::I64(i64::try_from(total).unwrap_or(i64::MAX)),
                );
                set(ids.cpu_time_str, Value::Str(procfs::cpu_time_str(total)));
                set(ids.start_time, Value::U64(st.starttime));
                let started = self.boot_time
                    + i64::try_from(st.starttime / TICKS_PER_SECOND as u64).unwrap_or(0);
                set(
                    ids.start_time_str,
                    Value::Str(super::calendar::rfc3339_seconds(started)),
                );
            }
            events.push(ev);
        }
        self.last_cpu = last;
        self.last_sample = Some(now);
        if let Some(out) = out {
            out.array(self.source, &mut events);
        }
    }
}

impl Instance for ProcessInstance {
    fn start(&mut self) -> Result<(), OperatorError> {
        let fail = |e| OperatorError::failed(NAME, e);
        self.boot_time = std::fs::read(self.proc_root.join("stat"))
            .ok()
            .and_then(|b| procfs::parse_btime(&b))
            .unwrap_or_else(|| {
                log::warn!("process: no btime in /proc/stat; start times count from the epoch");
                0
            });
        // The baseline of the first report's CPU use.
        self.report(None);
        self.schedule
            .start()
            .map_err(|e| fail(ProcessError::Timer(e)))?;
        Ok(())
    }

    fn stop(&mut self) -> Result<(), OperatorError> {
        self.schedule.stop();
        Ok(())
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }
}

impl Source for ProcessInstance {
    fn fds(&self) -> Vec<RawFd> {
        self.schedule.fds()
    }

    fn drain(&mut self, out: &mut Dispatch) -> Result<(), OperatorError> {
        if self.schedule.due() {
            self.report(Some(out));
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.schedule.finished()
    }
}

#[cfg(test)]
mod tests;
