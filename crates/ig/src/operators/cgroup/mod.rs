//! The cgroup operator (priority -900): CPU throttling per cgroup, every
//! interval, as upstream's `cgroup` operator (the `top_cpu_throttle`
//! gadget) reports it.
//!
//! Turned on by `gadget.yaml`: `operator.cgroup.emitstats: true`, with
//! `interval` (default 5 s), `first-interval` (an early report, not
//! counted) and `count` (stop after this many reports; 0: never). Writes
//! the array data source `cgroups`: `cgroupPath`, `nrPeriods`,
//! `nrThrottled`, `throttledTime_raw` (ns), `throttleRatio` (%),
//! `cpuQuota_raw` and `cpuPeriod_raw` (ns), `cpuLimitCores`,
//! `psiSomeAvg10`, `psiSomeAvg60`, `mountnsid`, for every cgroup holding
//! a process that has a CPU bandwidth limit and used CFS periods in the
//! interval (counts are of the interval, the first sighting of a cgroup
//! being its baseline).
//!
//! Where: upstream reads cgroup v2 only. We read the CPU controller where
//! it is: cgroup v2 when it is enabled there, else a cgroup v1 hierarchy
//! with `cpu` (hybrid hosts, such as systemd's hybrid mode, keep it on
//! v1): `cpu.cfs_quota_us`, `cpu.cfs_period_us` and `cpu.stat`
//! (`throttled_time`, already in ns). `cpu.pressure` is read where the
//! kernel offers it (v2; v1 only with `psi_v1`); without it the PSI fields
//! are 0, as upstream leaves them. With neither, the operator refuses to
//! start, saying what is missing.

mod cgroupfs;

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use crate::datasource::{Event, FieldId, FieldKind, Value};
use crate::metadata::GadgetMetadata;
use crate::pipeline::{
    Dispatch, Instance, Operator, OperatorError, Priority, Setup, Source, SourceId,
};

use super::ticker::Schedule;
use super::usersource::{self, template};
pub use cgroupfs::Hierarchy;

/// The operator's name (`operator.cgroup`).
pub const NAME: &str = "cgroup";

/// Upstream's priority.
const PRIORITY: Priority = -900;

/// What `operator.cgroup` takes in `gadget.yaml`.
pub const SETTINGS: &[&str] = &["count", "emitstats", "first-interval", "interval"];

/// The data source it adds.
pub const DATA_SOURCE: &str = "cgroups";

const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Why the cgroup operator cannot be configured or run.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A setting of `operator.cgroup` is invalid.
    #[error("{0}")]
    Config(String),
    /// CPU throttling needs the cgroup cpu controller, which is not there.
    #[error("CPU throttling needs the cgroup cpu controller: {0}")]
    NoController(String),
    /// Reading `path` failed.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Starting the interval timer failed.
    #[error("starting the interval timer")]
    Timer(#[source] std::io::Error),
}

/// What `operator.cgroup` sets.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Time between tables.
    pub interval: Duration,
    /// Time before the first table.
    pub first_interval: Duration,
    /// Tables before the run ends (0: no limit).
    pub count: u64,
}

impl Settings {
    /// The settings `meta` gives; `None` unless `emitstats` is on.
    pub fn from_config(meta: &GadgetMetadata) -> Result<Option<Self>, CgroupError> {
        let c = CgroupError::Config;
        if meta.operator_bool(NAME, "emitstats").map_err(c)? != Some(true) {
            return Ok(None);
        }
        Ok(Some(Self {
            interval: meta
                .operator_duration(NAME, "interval")
                .map_err(c)?
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_INTERVAL),
            first_interval: meta
                .operator_duration(NAME, "first-interval")
                .map_err(c)?
                .unwrap_or_default(),
            count: u64::try_from(meta.operator_int(NAME, "count").map_err(c)?.unwrap_or(0))
                .unwrap_or(0),
        }))
    }
}

/// The `cgroup` operator: a table of cgroups and their CPU use, every interval.
pub struct CgroupOperator {
    settings: Settings,
    meta: GadgetMetadata,
    proc_root: PathBuf,
}

impl CgroupOperator {
    /// The operator `meta` turns on, if it does.
    pub fn from_config(meta: &GadgetMetadata) -> Result<Option<Self>, CgroupError> {
        Ok(Settings::from_config(meta)?.map(|settings| Self {
            settings,
            meta: meta.clone(),
            proc_root: PathBuf::from("/proc"),
        }))
    }

    /// Read another tree than `/proc` (tests).
    #[must_use]
    pub fn with_proc_root(mut self, proc_root: PathBuf) -> Self {
        self.proc_root = proc_root;
        self
    }
}

struct Ids {
    path: FieldId,
    periods: FieldId,
    throttled: FieldId,
    throttled_time: FieldId,
    ratio: FieldId,
    quota: FieldId,
    period: FieldId,
    cores: FieldId,
    psi10: FieldId,
    psi60: FieldId,
    mntns: FieldId,
}

fn declare(b: &mut crate::datasource::SchemaBuilder) -> Result<Ids, OperatorError> {
    use FieldKind as K;
    let right = ("columns.alignment", "right");
    let duration = ["type:gadget_duration"];
    let f = usersource::field;
    Ok(Ids {
        path: f(
            b,
            "cgroupPath",
            K::String,
            &[
                (
                    "description",
                    "The cgroup path (in the cpu controller's hierarchy on cgroup v1).",
                ),
                ("columns.maxwidth", "60"),
                ("columns.ellipsis", "start"),
            ],
            &[],
        )?,
        periods: f(
            b,
            "nrPeriods",
            K::U64,
            &[
                (
                    "description",
                    "Number of CFS enforcement intervals elapsed in this reporting period.",
                ),
                right,
                ("columns.maxwidth", "10"),
            ],
            &[],
        )?,
        throttled: f(
            b,
            "nrThrottled",
            K::U64,
            &[
                (
                    "description",
                    "Number of times the cgroup was throttled in this reporting period.",
                ),
                right,
                ("columns.maxwidth", "12"),
            ],
            &[],
        )?,
        throttled_time: f(
            b,
            "throttledTime_raw",
            K::U64,
            &[
                (
                    "description",
                    "Total time spent throttled in this reporting period.",
                ),
                right,
                ("columns.maxwidth", "14"),
            ],
            &duration,
        )?,
        ratio: f(
            b,
            "throttleRatio",
            K::F64,
            &[
                (
                    "description",
                    "Percentage of periods where the cgroup was throttled (0-100) in this reporting period.",
                ),
                right,
                ("columns.precision", "2"),
                ("columns.maxwidth", "8"),
            ],
            &[],
        )?,
        quota: f(
            b,
            "cpuQuota_raw",
            K::U64,
            &[
                ("description", "CPU quota per CFS period."),
                right,
                ("columns.maxwidth", "10"),
            ],
            &duration,
        )?,
        period: f(
            b,
            "cpuPeriod_raw",
            K::U64,
            &[
                ("description", "CFS period length."),
                right,
                ("columns.maxwidth", "10"),
                ("columns.hidden", "true"),
            ],
            &duration,
        )?,
        cores: f(
            b,
            "cpuLimitCores",
            K::F64,
            &[
                ("description", "Effective CPU core limit (quota / period)."),
                right,
                ("columns.precision", "2"),
                ("columns.maxwidth", "8"),
            ],
            &[],
        )?,
        psi10: f(
            b,
            "psiSomeAvg10",
            K::F64,
            &[
                (
                    "description",
                    "PSI 'some' CPU pressure average over 10 seconds.",
                ),
                right,
                ("columns.precision", "2"),
                ("columns.maxwidth", "8"),
            ],
            &[],
        )?,
        psi60: f(
            b,
            "psiSomeAvg60",
            K::F64,
            &[
                (
                    "description",
                    "PSI 'some' CPU pressure average over 60 seconds.",
                ),
                right,
                ("columns.precision", "2"),
                ("columns.maxwidth", "8"),
            ],
            &[],
        )?,
        mntns: f(
            b,
            "mountnsid",
            K::U64,
            template("mntns_id"),
            &["type:gadget_mntns_id"],
        )?,
    })
}

impl Operator for CgroupOperator {
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
        let ids = declare(&mut b)?;
        let source = setup.add_source(b);
        Ok(Some(Box::new(CgroupInstance {
            proc_root: self.proc_root,
            hierarchy: None,
            source,
            ids,
            schedule: Schedule::new(
                self.settings.first_interval,
                self.settings.interval,
                self.settings.count,
            ),
            previous: HashMap::new(),
        })))
    }
}

/// One cgroup with a limit, as read in one round.
struct Sample {
    path: String,
    limit: cgroupfs::Limit,
    counters: cgroupfs::Throttling,
    pressure: Option<(f64, f64)>,
    mntns: u64,
}

struct CgroupInstance {
    proc_root: PathBuf,
    hierarchy: Option<Hierarchy>,
    source: SourceId,
    ids: Ids,
    schedule: Schedule,
    /// Counters of the previous round, by cgroup path.
    previous: HashMap<String, cgroupfs::Throttling>,
}

impl CgroupInstance {
    /// Every cgroup holding a process, with a CPU limit, read now.
    fn collect(&self, h: &Hierarchy) -> Vec<Sample> {
        let Ok(dir) = std::fs::read_dir(&self.proc_root) else {
            return Vec::new();
        };
        let mut pids: Vec<u32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        // Each cgroup once, with the first (lowest) pid found in it.
        let mut seen: HashMap<String, u32> = HashMap::new();
        let mut order = Vec::new();
        for pid in pids {
            let Ok(text) = std::fs::read_to_string(self.proc_root.join(format!("{pid}/cgroup")))
            else {
                continue;
            };
            if let Some(path) = cgroupfs::process_cgroup(h, &text)
                && !seen.contains_key(path)
            {
                seen.insert(path.to_owned(), pid);
                order.push(path.to_owned());
            }
        }
        let mut out = Vec::new();
        for path in order {
            let Some(dir) = h.dir(&path) else { continue };
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
            let limit = match h {
                Hierarchy::V2 { .. } => read("cpu.max").map(|t| cgroupfs::parse_cpu_max(&t)),
                Hierarchy::V1 { .. } => match (read("cpu.cfs_quota_us"), read("cpu.cfs_period_us"))
                {
                    (Some(q), Some(p)) => Some(cgroupfs::parse_cfs(&q, &p)),
                    _ => None,
                },
            };
            let limit = match limit {
                Some(Ok(Some(l))) => l,
                Some(Err(e)) => {
                    log::debug!("cgroup {path}: {e}");
                    continue;
                }
                // No limit, or a cgroup gone since.
                _ => continue,
            };
            let Some(stat) = read("cpu.stat") else {
                continue;
            };
            let pid = seen[&path];
            out.push(Sample {
                counters: cgroupfs::parse_cpu_stat(&stat),
                pressure: read("cpu.pressure").and_then(|t| cgroupfs::parse_pressure(&t)),
                mntns: std::fs::read_link(self.proc_root.join(format!("{pid}/ns/mnt")))
                    .ok()
                    .and_then(|l| crate::containers::parse_ns_link(&l.to_string_lossy()))
                    .unwrap_or(0),
                path,
                limit,
            });
        }
        out
    }

    fn report(&mut self, out: Option<&mut Dispatch>) {
        let Some(h) = self.hierarchy.clone() else {
            return;
        };
        let samples = self.collect(&h);
        let previous = std::mem::take(&mut self.previous);
        self.previous = samples
            .iter()
            .map(|s| (s.path.clone(), s.counters))
            .collect();
        let Some(out) = out else { return };
        let schema = out.schema(self.source).clone();
        let mut events = Vec::new();
        for s in &samples {
            // A cgroup seen for the first time is its own baseline.
            let Some(prev) = previous.get(&s.path) else {
                continue;
            };
            // Counters that went back belong to a cgroup made again.
            let delta = |now: u64, before: u64| now.saturating_sub(before);
            let periods = delta(s.counters.periods, prev.periods);
            let throttled = delta(s.counters.throttled, prev.throttled);
            if periods == 0 && throttled == 0 {
                continue;
            }
            let ratio = if periods > 0 {
                throttled as f64 / periods as f64 * 100.0
            } else {
                0.0
            };
            let cores = if s.limit.period_us > 0 {
                s.limit.quota_us as f64 / s.limit.period_us as f64
            } else {
                0.0
            };
            let (psi10, psi60) = s.pressure.unwrap_or((0.0, 0.0));
            let mut ev = Event::new(&schema);
            let ids = &self.ids;
            let mut set = |id: FieldId, v: Value| ev.set_value(schema.field(id), v);
            set(ids.path, Value::Str(s.path.clone()));
            set(ids.periods, Value::U64(periods));
            set(ids.throttled, Value::U64(throttled));
            set(
                ids.throttled_time,
                Value::U64(delta(s.counters.throttled_ns, prev.throttled_ns)),
            );
            set(ids.ratio, Value::F64(ratio));
            set(ids.quota, Value::U64(s.limit.quota_us.saturating_mul(1000)));
            set(
                ids.period,
                Value::U64(s.limit.period_us.saturating_mul(1000)),
            );
            set(ids.cores, Value::F64(cores));
            set(ids.psi10, Value::F64(psi10));
            set(ids.psi60, Value::F64(psi60));
            set(ids.mntns, Value::U64(s.mntns));
            events.push(ev);
        }
        out.array(self.source, &mut events);
    }
}

/// Where the CPU controller is on this host.
pub fn detect_hierarchy() -> Result<Hierarchy, CgroupError> {
    let path = PathBuf::from("/proc/self/mountinfo");
    let mountinfo =
        std::fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })?;
    cgroupfs::detect(&mountinfo, &|mount| {
        std::fs::read_to_string(mount.join("cgroup.controllers")).ok()
    })
    .map_err(CgroupError::NoController)
}

impl Instance for CgroupInstance {
    fn start(&mut self) -> Result<(), OperatorError> {
        let fail = |e| OperatorError::failed(NAME, e);
        let h = detect_hierarchy().map_err(fail)?;
        log::debug!("cgroup: cpu controller on cgroup v{}", h.version());
        self.hierarchy = Some(h);
        self.report(None);
        self.schedule
            .start()
            .map_err(|e| fail(CgroupError::Timer(e)))?;
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

impl Source for CgroupInstance {
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
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_gadget_yaml() {
        let meta = |y: &str| GadgetMetadata::parse(y.as_bytes(), "g.yaml").unwrap();
        assert_eq!(Settings::from_config(&meta("name: x\n")).unwrap(), None);
        assert_eq!(
            Settings::from_config(&meta(
                "operator:\n  cgroup:\n    emitstats: true\n    interval: 5s\n    first-interval: 500ms\n    count: '2'\n"
            ))
            .unwrap(),
            Some(Settings {
                interval: Duration::from_secs(5),
                first_interval: Duration::from_millis(500),
                count: 2,
            })
        );
        assert_eq!(
            Settings::from_config(&meta("operator:\n  cgroup:\n    emitstats: 1\n"))
                .unwrap()
                .map(|s| s.interval),
            Some(DEFAULT_INTERVAL)
        );
    }
}
