//! Process enrichment (priority 6, ours: upstream has no such operator):
//! the command line and the executable of a process, read from `/proc`.
//!
//! Opt-in with `--enrich-process` (`operator.processinfo.enrich-process`):
//! without it the operator does not take part and the output is unchanged.
//!
//! Reads fields tagged `type:gadget_pid` (the process) and
//! `type:gadget_ppid` (its parent). Writes, next to each, under the same
//! parent: `cmdline` (`/proc/PID/cmdline`, arguments separated by spaces)
//! and `exe` (the `/proc/PID/exe` link); a top-level field whose siblings
//! would clash gets `<field>_cmdline` / `<field>_exe`. So `proc.pid` gives
//! `proc.cmdline`, `proc.exe`, and `proc.parent.pid` gives
//! `proc.parent.cmdline`, `proc.parent.exe`. Tables show the process's
//! `cmdline`; the rest is hidden in tables and present in JSON.
//!
//! A process that exited before its event is handled leaves the fields
//! empty (short-lived processes often do), as does pid 0. Kernel threads
//! have an empty command line.
//!
//! Cost: `/proc` is read once per pid per second at most. Results, empty
//! ones included, are cached by pid and served from the cache for about
//! a second (two ticks of the flush timer's one-second clock), so a storm
//! of events from a few processes reads `/proc` a few times a second; the
//! cache holds at most [`CACHE_MAX`] pids. A hit costs a hash lookup and
//! two string copies into reused buffers. A miss costs three system calls
//! and, for a pid not seen before, the allocation of its entry.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read as _;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::datasource::{Event, FieldId, FieldKind, Schema, SchemaBuilder, SchemaError, ValueRef};
use crate::params::{ParamSpec, ParamType, ParamValue, ParamValues};
use crate::pipeline::{
    Flow, Handler, HandlerError, Instance, Operator, OperatorError, Priority, Setup, priority,
};

const NAME: &str = "processinfo";
const PARAM: &str = "operator.processinfo.enrich-process";

/// Most pids remembered at once; beyond that, stale entries go first.
pub const CACHE_MAX: usize = 8192;

/// How long a cached answer is used, in ticks of [`TICK`].
const TTL_TICKS: u64 = 1;
const TICK: Duration = Duration::from_secs(1);

/// The operator. `/proc` can be moved for tests.
pub struct ProcessInfo {
    enabled: bool,
    proc_root: PathBuf,
}

impl Default for ProcessInfo {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessInfo {
    pub fn new() -> Self {
        Self {
            enabled: false,
            proc_root: PathBuf::from("/proc"),
        }
    }

    /// Read `<root>/PID/cmdline` and `<root>/PID/exe` instead of `/proc`.
    pub fn with_proc_root(root: impl Into<PathBuf>) -> Self {
        Self {
            enabled: false,
            proc_root: root.into(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Pair {
    pid: FieldId,
    cmdline: FieldId,
    exe: FieldId,
}

impl Operator for ProcessInfo {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> Priority {
        priority::PROCESS_ENRICHER
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec {
            key: "enrich-process".into(),
            full_name: PARAM.into(),
            description: "Add the command line and executable of each process and its parent, \
                          read from /proc (once per process per second)"
                .into(),
            default: "false".into(),
            ty: ParamType::Bool,
            group: "Enrichment".into(),
            alias: None,
        }]
    }
    fn apply_params(&mut self, values: &ParamValues) -> Result<(), OperatorError> {
        self.enabled = matches!(values.get(PARAM), Some(ParamValue::Bool(true)));
        Ok(())
    }

    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        if !self.enabled {
            return Ok(None);
        }
        let mut plans = Vec::new();
        for id in setup.source_ids() {
            let pairs = plan(setup.schema_mut(id))?;
            if !pairs.is_empty() {
                plans.push((id, pairs));
            }
        }
        if plans.is_empty() {
            log::debug!("{NAME}: the gadget has no pid field");
            return Ok(None);
        }
        let cache = Rc::new(RefCell::new(Cache::new(self.proc_root)));
        for (id, pairs) in plans {
            setup.subscribe(
                id,
                priority::PROCESS_ENRICHER,
                NAME,
                Box::new(Enriching {
                    pairs,
                    cache: cache.clone(),
                }),
            );
        }
        Ok(Some(Box::new(Active)))
    }
}

struct Active;
impl Instance for Active {}

/// Add `short` next to `of`, or `<of>_short` if that name is taken.
fn add_next_to(b: &mut SchemaBuilder, short: &str, of: FieldId) -> Result<FieldId, SchemaError> {
    match b.add_owned_sibling(short, FieldKind::String, of) {
        Err(SchemaError::DuplicateField { .. }) => {
            let alt = format!("{}_{short}", b.schema().field(of).short_name());
            b.add_owned_sibling(&alt, FieldKind::String, of)
        }
        other => other,
    }
}

fn plan(b: &mut SchemaBuilder) -> Result<Vec<Pair>, SchemaError> {
    let mut pairs = Vec::new();
    let ids: Vec<FieldId> = b.schema().ids().collect();
    for pid in ids {
        let f = b.schema().field(pid);
        let parent = f.has_tag("type:gadget_ppid");
        if !(f.kind.is_numeric() && (parent || f.has_tag("type:gadget_pid"))) {
            continue;
        }
        let whose = if parent { "parent process" } else { "process" };
        let cmdline = add_next_to(b, "cmdline", pid)?;
        let prefix = if parent { "p" } else { "" };
        let c = b.field_mut(cmdline);
        c.default_annotation("columns.alias", &format!("{prefix}cmdline"));
        c.default_annotation("description", &format!("Command line of the {whose}"));
        c.default_annotation("columns.width", "40");
        if parent {
            c.default_annotation("columns.hidden", "true");
        }
        let exe = add_next_to(b, "exe", pid)?;
        let e = b.field_mut(exe);
        e.default_annotation("columns.alias", &format!("{prefix}exe"));
        e.default_annotation("description", &format!("Executable of the {whose}"));
        e.default_annotation("columns.hidden", "true");
        pairs.push(Pair { pid, cmdline, exe });
    }
    Ok(pairs)
}

#[derive(Default)]
struct Entry {
    cmdline: String,
    exe: String,
    /// The tick it was read at.
    read_at: u64,
}

/// Hashes a pid with one multiplication. The cache is looked up twice per
/// event (the process and its parent); SipHash cost ~4% of an event under
/// an open storm (callgrind). Pids are handed out by the kernel, not chosen
/// by whoever produces the events, so HashDoS resistance buys nothing here.
#[derive(Default)]
struct PidHasher(u64);

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        // Fibonacci hashing: the high bits, which hashbrown uses for its
        // control bytes, depend on every bit of the pid.
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Answers by pid, shared by the handlers of every data source.
struct Cache {
    root: PathBuf,
    entries: HashMap<u32, Entry, BuildHasherDefault<PidHasher>>,
    /// Advances once per [`TICK`], on the flush timer.
    tick: u64,
    ticked_at: Instant,
    path: String,
    scratch: Vec<u8>,
}

impl Cache {
    fn new(root: PathBuf) -> Self {
        Self {
            root,
            entries: HashMap::default(),
            tick: 0,
            ticked_at: Instant::now(),
            path: String::new(),
            scratch: Vec::new(),
        }
    }

    fn advance(&mut self) {
        if self.ticked_at.elapsed() >= TICK {
            self.tick += 1;
            self.ticked_at = Instant::now();
        }
    }

    /// The entry of `pid`, read from `/proc` unless a fresh one is cached.
    fn get(&mut self, pid: u32) -> &Entry {
        let tick = self.tick;
        let fresh = self
            .entries
            .get(&pid)
            .is_some_and(|e| tick - e.read_at <= TTL_TICKS);
        if !fresh {
            if !self.entries.contains_key(&pid) && self.entries.len() >= CACHE_MAX {
                self.entries.retain(|_, e| tick - e.read_at <= TTL_TICKS);
                if self.entries.len() >= CACHE_MAX {
                    self.entries.clear();
                }
            }
            let mut e = self.entries.remove(&pid).unwrap_or_default();
            self.read(pid, &mut e);
            e.read_at = tick;
            self.entries.insert(pid, e);
        }
        // Just inserted or found fresh.
        self.entries.entry(pid).or_default()
    }

    fn read(&mut self, pid: u32, e: &mut Entry) {
        e.cmdline.clear();
        e.exe.clear();
        self.path.clear();
        let _ = write!(self.path, "{}/{pid}/cmdline", self.root.display());
        self.scratch.clear();
        let read =
            std::fs::File::open(&self.path).and_then(|mut f| f.read_to_end(&mut self.scratch));
        if read.is_ok() {
            let args = self.scratch.strip_suffix(&[0]).unwrap_or(&self.scratch);
            for chunk in args.utf8_chunks() {
                e.cmdline.extend(
                    chunk
                        .valid()
                        .chars()
                        .map(|c| if c == '\0' { ' ' } else { c }),
                );
                if !chunk.invalid().is_empty() {
                    e.cmdline.push('\u{fffd}');
                }
            }
        }
        self.path.truncate(self.path.len() - "cmdline".len());
        self.path.push_str("exe");
        if let Ok(target) = std::fs::read_link(&self.path) {
            e.exe.push_str(&target.to_string_lossy());
        }
    }
}

struct Enriching {
    pairs: Vec<Pair>,
    cache: Rc<RefCell<Cache>>,
}

impl Handler for Enriching {
    fn on_event(&mut self, schema: &Schema, ev: &mut Event) -> Flow {
        let mut cache = self.cache.borrow_mut();
        for p in &self.pairs {
            let pid = match ev.get(schema.field(p.pid)) {
                ValueRef::U64(n) => u32::try_from(n).unwrap_or(0),
                ValueRef::I64(n) => u32::try_from(n).unwrap_or(0),
                _ => 0,
            };
            if pid == 0 {
                continue;
            }
            let e = cache.get(pid);
            ev.set_str(schema.field(p.cmdline), &e.cmdline);
            ev.set_str(schema.field(p.exe), &e.exe);
        }
        Flow::Continue
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        self.cache.borrow_mut().advance();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::SourceKind;
    use crate::pipeline::Pipeline;
    use crate::pipeline::testing::{Producer, collect};

    fn schema() -> SchemaBuilder {
        let mut b = SchemaBuilder::new("ev", SourceKind::Single, 8);
        let proc = b
            .add_raw("proc".into(), FieldKind::Struct, 0, 8, None)
            .unwrap();
        let pid = b
            .add_raw("proc.pid".into(), FieldKind::U32, 0, 4, Some(proc))
            .unwrap();
        b.field_mut(pid).tags = vec!["type:gadget_pid".into()];
        let parent = b
            .add_raw("proc.parent".into(), FieldKind::Struct, 4, 4, Some(proc))
            .unwrap();
        let ppid = b
            .add_raw("proc.parent.pid".into(), FieldKind::U32, 4, 4, Some(parent))
            .unwrap();
        b.field_mut(ppid).tags = vec!["type:gadget_ppid".into()];
        b
    }

    fn on() -> ParamValues {
        ParamValues::resolve(
            &ProcessInfo::new().params(),
            &[(PARAM.into(), "true".into())],
        )
        .unwrap()
    }

    fn fake_proc(dir: &std::path::Path, pid: u32, cmdline: &[u8], exe: &str) {
        let d = dir.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cmdline"), cmdline).unwrap();
        std::os::unix::fs::symlink(exe, d.join("exe")).unwrap();
    }

    #[test]
    fn command_lines_and_executables_of_process_and_parent() {
        let root = tempfile::tempdir().unwrap();
        fake_proc(root.path(), 42, b"cat\0/etc/hostname\0", "/usr/bin/cat");
        fake_proc(
            root.path(),
            1,
            b"/sbin/init\0splash\0",
            "/usr/lib/systemd/systemd",
        );
        fake_proc(root.path(), 7, b"", "/kthread");
        let s = |pid: u32, ppid: u32| [pid.to_ne_bytes(), ppid.to_ne_bytes()].concat();
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1,
                schema: schema(),
                // 99 does not exist (it exited): empty.
                samples: vec![s(42, 1), s(99, 42), s(7, 0)],
            }),
            Box::new(ProcessInfo::with_proc_root(root.path())),
        ];
        let col = collect(ops, &on()).unwrap();
        let cases: &[(&str, [&str; 3])] = &[
            ("proc.cmdline", ["cat /etc/hostname", "", ""]),
            ("proc.exe", ["/usr/bin/cat", "", "/kthread"]),
            (
                "proc.parent.cmdline",
                ["/sbin/init splash", "cat /etc/hostname", ""],
            ),
            (
                "proc.parent.exe",
                ["/usr/lib/systemd/systemd", "/usr/bin/cat", ""],
            ),
        ];
        for (field, want) in cases {
            let got: Vec<String> = col
                .column(field)
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect();
            assert_eq!(got, *want, "{field}");
        }
    }

    #[test]
    fn off_by_default_and_cached_while_fresh() {
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1,
                schema: schema(),
                samples: vec![],
            }),
            Box::new(ProcessInfo::new()),
        ];
        let defaults = ParamValues::resolve(&ProcessInfo::new().params(), &[]).unwrap();
        let p = Pipeline::build(ops, &defaults).unwrap();
        assert_eq!(p.operator_names(), ["producer"]);

        let root = tempfile::tempdir().unwrap();
        fake_proc(root.path(), 5, b"old\0", "/old");
        let mut cache = Cache::new(root.path().to_owned());
        assert_eq!(cache.get(5).cmdline, "old");
        std::fs::write(root.path().join("5/cmdline"), b"new\0").unwrap();
        assert_eq!(cache.get(5).cmdline, "old", "served from the cache");
        cache.tick += TTL_TICKS + 1;
        assert_eq!(cache.get(5).cmdline, "new", "re-read once stale");
        // The cache stays bounded.
        for pid in 1000..1000 + CACHE_MAX as u32 + 10 {
            cache.get(pid);
        }
        assert!(cache.entries.len() <= CACHE_MAX);
    }

    #[test]
    fn our_own_process_from_the_real_proc() {
        let mut cache = Cache::new("/proc".into());
        let e = cache.get(std::process::id());
        let exe = std::env::current_exe().unwrap();
        assert_eq!(e.exe, exe.to_string_lossy());
        assert!(!e.cmdline.is_empty());
    }
}
