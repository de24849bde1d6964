//! Process enrichment (priority 6, ours: upstream has no such operator):
//! the command line and the executable of a process.
//!
//! Opt-in with `--enrich-process` (`operator.processinfo.enrich-process`):
//! without it the operator does not take part and the output is unchanged.
//!
//! Reads fields tagged `type:gadget_pid` (the process) and
//! `type:gadget_ppid` (its parent). Writes, next to each, under the same
//! parent: `cmdline` (arguments separated by spaces, as in
//! `/proc/PID/cmdline`) and `exe` (the path `/proc/PID/exe` names); a
//! top-level field whose siblings would clash gets `<field>_cmdline` /
//! `<field>_exe`. So `proc.pid` gives `proc.cmdline`, `proc.exe`, and
//! `proc.parent.pid` gives `proc.parent.cmdline`, `proc.parent.exe`.
//! Tables show the process's `cmdline`; the rest is hidden in tables and
//! present in JSON.
//!
//! Where the answers come from: a small eBPF program of ours
//! ([`tracker`]) reports every exec (command line and executable, read in
//! the kernel as the exec completes) and exit while `ig` runs, and the
//! operator keeps a table by pid from those records ([`Table`]). A fork is
//! not reported by itself: a child that execs is told by its exec record,
//! one that never execs by its exit record (which names the parent whose
//! program it ran). Processes that started before `ig`, and forked
//! children that have not exec'd yet, are read from `/proc` once, on
//! their first event. So a process that exits right after its exec, long
//! gone by the time its event is printed, is still enriched; reading
//! `/proc` alone, it would not be. If the tracker cannot start, the
//! operator warns and reads `/proc`, keeping answers for about a second.
//!
//! Cost: a hit is a hash lookup and two string copies into reused buffers;
//! before each event the tracker's ring buffer is checked (two loads from
//! its shared pages when it is empty). A `/proc` read costs three system
//! calls. The table holds at most [`CACHE_MAX`] processes; the entry of a
//! process that exited is dropped two seconds later, and its buffers are
//! reused.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read as _;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::bpf::loader::LostCounter;
use crate::datasource::{Event, FieldId, FieldKind, Schema, SchemaBuilder, SchemaError, ValueRef};
use crate::params::{ParamSpec, ParamType, ParamValue, ParamValues};
use crate::pipeline::{
    Flow, Handler, HandlerError, Instance, Operator, OperatorError, Priority, Setup, priority,
};

mod tracker;

use tracker::{Record, Tracker, push_lossy, push_path};

const NAME: &str = "processinfo";
const PARAM: &str = "operator.processinfo.enrich-process";

/// Most pids remembered at once; beyond that, stale entries go first.
pub const CACHE_MAX: usize = 8192;

/// How long a cached answer is used, in ticks of [`TICK`].
const TTL_TICKS: u64 = 1;
const TICK: Duration = Duration::from_secs(1);

/// The operator. `/proc` can be moved for tests (which also turns the
/// kernel tracker off: its answers would not match a fake `/proc`).
pub struct ProcessInfo {
    enabled: bool,
    proc_root: PathBuf,
    track: bool,
}

impl Default for ProcessInfo {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessInfo {
    /// The operator, with its tracker not yet loaded.
    pub fn new() -> Self {
        Self {
            enabled: false,
            proc_root: PathBuf::from("/proc"),
            track: true,
        }
    }

    /// Read `<root>/PID/cmdline` and `<root>/PID/exe` instead of `/proc`.
    pub fn with_proc_root(root: impl Into<PathBuf>) -> Self {
        Self {
            enabled: false,
            proc_root: root.into(),
            track: false,
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
                    last: vec![None; pairs.len()],
                    pairs,
                    cache: cache.clone(),
                }),
            );
        }
        Ok(Some(Box::new(Active {
            cache,
            track: self.track,
        })))
    }
}

struct Active {
    cache: Rc<RefCell<Cache>>,
    track: bool,
}

impl Instance for Active {
    /// Start the kernel tracker. Without it (an older kernel, a missing
    /// capability) enrichment still works from `/proc`, only with less
    /// for processes that are gone before their events are handled.
    ///
    /// In `pre_start`, before any gadget is loaded and attached: the
    /// tracker's exec program must run before a gadget's program on the
    /// same tracepoint (see `tracker.bpf.c`), so that the exec record is
    /// in the tracker's ring before the gadget's event is in the gadget's.
    fn pre_start(&mut self) -> Result<(), OperatorError> {
        if !self.track {
            return Ok(());
        }
        match Tracker::start() {
            Ok((tracker, lost)) => {
                let mut cache = self.cache.borrow_mut();
                cache.tracker = Some(tracker);
                cache.lost = lost;
                log::debug!("{NAME}: process tracker attached");
            }
            Err(e) => {
                let mut why = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    let _ = write!(why, ": {s}");
                    src = s.source();
                }
                log::warn!(
                    "{NAME}: the process tracker could not start ({why}); reading /proc \
                     instead, so processes that exit quickly may have no command line"
                );
            }
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), OperatorError> {
        let mut cache = self.cache.borrow_mut();
        cache.tracker = None;
        cache.lost = None;
        Ok(())
    }
}

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
    /// Kept current by the tracker's records: no need to read `/proc`
    /// again while the process lives.
    tracked: bool,
    /// The tracker's record (its number in [`Table::seq`]) that gave the
    /// entry its program; 0 if it was read from `/proc`. An exit removes
    /// the entry only if no later record gave the pid a new process.
    born: u64,
    /// Its process's exit has been reported.
    exited: bool,
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

type Entries = HashMap<u32, Entry, BuildHasherDefault<PidHasher>>;

/// A process that exited: its entry goes [`EXIT_GRACE_TICKS`] after `tick`
/// unless a record after `seq` (the exit's own) gave the pid a new process.
struct Exited {
    pid: u32,
    tick: u64,
    seq: u64,
}

/// The table by pid, kept by the tracker's records ([`Table::apply`]) and
/// by `/proc` reads. Pure: no kernel, no file system.
///
/// A process forked while `ig` runs has no record of its own until it
/// execs (the exec record names its program) or exits (the exit record of
/// a child that never exec'd names the parent whose program it ran). Until
/// then a lookup finds nothing and the process, alive, is read from
/// `/proc` once. So the usual fork-and-exec costs two records (exec,
/// exit) and no copy of the parent's strings.
#[derive(Default)]
struct Table {
    entries: Entries,
    /// Advances once per [`TICK`], on the flush timer.
    tick: u64,
    exited: VecDeque<Exited>,
    /// Entries of removed processes, reused (with their strings' capacity)
    /// for new ones.
    spare: Vec<Entry>,
    /// Changes whenever an entry may have changed: handlers that saw the
    /// same pid at the same version keep the previous event's text.
    version: u64,
    /// The number of the last record applied (the first is 1).
    seq: u64,
}

impl Table {
    /// A fresh entry, reusing a spare one's buffers.
    fn new_entry(spare: &mut Vec<Entry>) -> Entry {
        let mut e = spare.pop().unwrap_or_default();
        e.cmdline.clear();
        e.exe.clear();
        e.tracked = false;
        e.born = 0;
        e.exited = false;
        e
    }

    fn clear(&mut self) {
        self.version += 1;
        self.spare.extend(self.entries.drain().map(|(_, e)| e));
        self.exited.clear();
    }

    /// Apply one record of the tracker.
    fn apply(&mut self, r: Record<'_>) {
        self.seq += 1;
        let (seq, tick) = (self.seq, self.tick);
        match r {
            Record::Exec {
                pid, args, path, ..
            } => {
                let spare = &mut self.spare;
                let e = self
                    .entries
                    .entry(pid)
                    .or_insert_with(|| Self::new_entry(spare));
                e.cmdline.clear();
                push_lossy(
                    &mut e.cmdline,
                    args.strip_suffix(&[0]).unwrap_or(args),
                    Some(' '),
                );
                e.exe.clear();
                push_path(&mut e.exe, path);
                e.tracked = true;
                e.read_at = tick;
                e.born = seq;
                e.exited = false;
                self.version += 1;
            }
            Record::Fork { pid, ppid } => self.inherit(pid, ppid),
            Record::Exit { pid, forked_from } => {
                // A child that never exec'd: what it ran is its parent's
                // program, unless it was read from /proc while it lived.
                if let Some(ppid) = forked_from
                    && !self
                        .entries
                        .get(&pid)
                        .is_some_and(|e| e.tracked && !e.exited)
                {
                    self.inherit(pid, ppid);
                }
                if let Some(e) = self.entries.get_mut(&pid) {
                    e.exited = true;
                }
                self.exited.push_back(Exited { pid, tick, seq });
            }
        }
    }

    /// Give `pid` the program of `ppid`, which it was forked from.
    fn inherit(&mut self, pid: u32, ppid: u32) {
        self.version += 1;
        let mut e = match self.entries.remove(&pid) {
            Some(mut old) => {
                old.cmdline.clear();
                old.exe.clear();
                old.tracked = false;
                old.exited = false;
                old
            }
            None => Self::new_entry(&mut self.spare),
        };
        // An unknown parent leaves the child untracked: read from /proc
        // when asked.
        if let Some(p) = self.entries.get(&ppid).filter(|p| p.tracked) {
            e.cmdline.push_str(&p.cmdline);
            e.exe.push_str(&p.exe);
            e.tracked = true;
        }
        e.read_at = self.tick;
        e.born = self.seq;
        self.entries.insert(pid, e);
    }

    /// Drop the entries of processes that exited [`EXIT_GRACE_TICKS`] ago.
    fn expire(&mut self) {
        while let Some(x) = self.exited.front() {
            if self.tick - x.tick < EXIT_GRACE_TICKS {
                break;
            }
            let (pid, seq) = (x.pid, x.seq);
            self.exited.pop_front();
            // A later exec (or exit of a child that never exec'd) of a
            // reused pid is another process: not this exit's to remove.
            if self.entries.get(&pid).is_some_and(|e| e.born <= seq)
                && let Some(e) = self.entries.remove(&pid)
            {
                self.spare.push(e);
                self.version += 1;
            }
        }
    }
}

/// Answers by pid, shared by the handlers of every data source.
///
/// With the tracker running, the table follows the kernel (see [`Table`]):
/// an exec record sets a process's command line and executable, an exit
/// removes the entry (a few seconds later: events of the process may still
/// be on their way). Entries are then never stale, and `/proc` is read
/// only for processes that started before `ig` and for forked children
/// that have not exec'd (once each). Without the tracker, `/proc` answers
/// are kept for [`TTL_TICKS`].
struct Cache {
    root: PathBuf,
    table: Table,
    ticked_at: Instant,
    path: String,
    scratch: Vec<u8>,
    tracker: Option<Tracker>,
    lost: Option<LostCounter>,
}

/// How long the entry of a process that exited stays, in ticks.
const EXIT_GRACE_TICKS: u64 = 2;

impl Cache {
    fn new(root: PathBuf) -> Self {
        Self {
            root,
            table: Table::default(),
            ticked_at: Instant::now(),
            path: String::new(),
            scratch: Vec::new(),
            tracker: None,
            lost: None,
        }
    }

    fn advance(&mut self) {
        self.sync();
        if let Some(lost) = self.lost.as_mut()
            && lost.take_new().unwrap_or(0) > 0
        {
            // Some exec, fork or exit went unreported: start over.
            log::debug!("{NAME}: the process tracker lost records; rereading /proc");
            self.table.clear();
        }
        if self.ticked_at.elapsed() >= TICK {
            self.table.tick += 1;
            self.ticked_at = Instant::now();
        }
        self.table.expire();
    }

    /// Apply every pending record of the tracker.
    fn sync(&mut self) {
        if let Some(tracker) = self.tracker.as_mut() {
            let table = &mut self.table;
            tracker.drain(|r| table.apply(r));
        }
    }

    /// The entry of `pid`: from the tracker's table, else read from
    /// `/proc` unless a fresh one is cached.
    fn get(&mut self, pid: u32) -> &Entry {
        let tick = self.table.tick;
        let untracked = self.tracker.is_none();
        let fresh = move |e: &Entry| e.tracked || (untracked && tick - e.read_at <= TTL_TICKS);
        let mut found = self.table.entries.get(&pid).is_some_and(fresh);
        if !found && self.tracker.is_some() {
            // Its exec or exit may be in the tracker's ring still.
            self.sync();
            found = self.table.entries.get(&pid).is_some_and(fresh);
        }
        if !found {
            let t = &mut self.table;
            if !t.entries.contains_key(&pid) && t.entries.len() >= CACHE_MAX {
                let keep_tracked = self.tracker.is_some();
                let spare = &mut t.spare;
                t.entries.retain(|_, e| {
                    let keep = (keep_tracked && e.tracked) || tick - e.read_at <= TTL_TICKS;
                    if !keep {
                        spare.push(std::mem::take(e));
                    }
                    keep
                });
                if t.entries.len() >= CACHE_MAX {
                    t.clear();
                }
            }
            let mut e = t
                .entries
                .remove(&pid)
                .unwrap_or_else(|| Table::new_entry(&mut t.spare));
            let alive = self.read(pid, &mut e);
            e.read_at = tick;
            e.born = 0;
            e.exited = false;
            // With the tracker on, whatever this process does next is
            // reported: the answer stays right.
            e.tracked = self.tracker.is_some();
            if !alive && self.tracker.is_some() {
                // It may have exited between the sync above and the read;
                // if it never exec'd, its exit record names its parent.
                self.sync();
            }
            let t = &mut self.table;
            t.version += 1;
            if t.entries.get(&pid).is_some_and(|e| e.tracked) {
                t.spare.push(e);
            } else {
                t.entries.insert(pid, e);
            }
        }
        // Just inserted or found fresh.
        self.table.entries.entry(pid).or_default()
    }

    /// Read `pid`'s command line and executable; false if it is gone (its
    /// executable could not be named).
    fn read(&mut self, pid: u32, e: &mut Entry) -> bool {
        e.cmdline.clear();
        e.exe.clear();
        self.path.clear();
        let _ = write!(self.path, "{}/{pid}/cmdline", self.root.display());
        self.scratch.clear();
        let read =
            std::fs::File::open(&self.path).and_then(|mut f| f.read_to_end(&mut self.scratch));
        if read.is_ok() {
            let args = self.scratch.strip_suffix(&[0]).unwrap_or(&self.scratch);
            push_lossy(&mut e.cmdline, args, Some(' '));
        }
        self.path.truncate(self.path.len() - "cmdline".len());
        self.path.push_str("exe");
        match std::fs::read_link(&self.path) {
            Ok(target) => {
                e.exe.push_str(&target.to_string_lossy());
                true
            }
            Err(_) => false,
        }
    }
}

struct Enriching {
    pairs: Vec<Pair>,
    cache: Rc<RefCell<Cache>>,
    /// Per pair, the pid of the previous event and the cache version its
    /// text was set at: the same pid at the same version keeps the text.
    last: Vec<Option<(u32, u64)>>,
}

impl Handler for Enriching {
    fn on_event(&mut self, schema: &Schema, ev: &mut Event) -> Flow {
        let mut cache = self.cache.borrow_mut();
        cache.sync();
        for (p, last) in self.pairs.iter().zip(&mut self.last) {
            let pid = match ev.get(schema.field(p.pid)) {
                ValueRef::U64(n) => u32::try_from(n).unwrap_or(0),
                ValueRef::I64(n) => u32::try_from(n).unwrap_or(0),
                _ => 0,
            };
            if pid == 0 {
                *last = None;
                continue;
            }
            let (cmdline, exe) = (schema.field(p.cmdline), schema.field(p.exe));
            if *last == Some((pid, cache.table.version)) && ev.keep(cmdline) && ev.keep(exe) {
                continue;
            }
            let e = cache.get(pid);
            ev.set_str(cmdline, &e.cmdline);
            ev.set_str(exe, &e.exe);
            *last = Some((pid, cache.table.version));
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
        cache.table.tick += TTL_TICKS + 1;
        assert_eq!(cache.get(5).cmdline, "new", "re-read once stale");
        // The cache stays bounded.
        for pid in 1000..1000 + CACHE_MAX as u32 + 10 {
            cache.get(pid);
        }
        assert!(cache.table.entries.len() <= CACHE_MAX);
    }

    fn exec<'a>(pid: u32, args: &'a [u8], path: &'a [u8]) -> Record<'a> {
        Record::Exec {
            pid,
            ppid: 1,
            args,
            path,
        }
    }

    fn cmdline(t: &Table, pid: u32) -> Option<&str> {
        t.entries.get(&pid).map(|e| e.cmdline.as_str())
    }

    /// A child that never exec'd has no record until its exit, which names
    /// the parent whose program it ran: a process gone before its events
    /// are handled still shows that program. One read from /proc while it
    /// lived is kept.
    #[test]
    fn a_child_without_a_fork_record_gets_its_parent_at_its_exit() {
        let mut t = Table::default();
        t.apply(exec(10, b"sh\0-c\0x\0", b"sh\0bin\0"));
        assert_eq!(cmdline(&t, 11), None, "no fork record: nothing yet");
        t.apply(Record::Exit {
            pid: 11,
            forked_from: Some(10),
        });
        let e = &t.entries[&11];
        assert_eq!((e.cmdline.as_str(), e.exe.as_str()), ("sh -c x", "/bin/sh"));
        assert!(e.tracked && e.exited);

        // Read from /proc while alive (born 0): the exit keeps that answer.
        t.entries.insert(
            12,
            Entry {
                cmdline: "from proc".into(),
                tracked: true,
                ..Entry::default()
            },
        );
        t.apply(Record::Exit {
            pid: 12,
            forked_from: Some(10),
        });
        assert_eq!(cmdline(&t, 12), Some("from proc"));

        // The fork record (the kernel's table of children was full) still
        // copies the parent's program; the exec replaces it.
        t.apply(Record::Fork { pid: 13, ppid: 10 });
        assert_eq!(cmdline(&t, 13), Some("sh -c x"));
        t.apply(exec(13, b"ls\0", b"ls\0bin\0"));
        assert_eq!(cmdline(&t, 13), Some("ls"));
        t.apply(Record::Exit {
            pid: 13,
            forked_from: None,
        });
        assert_eq!(cmdline(&t, 13), Some("ls"), "an exec'd child keeps its own");
    }

    /// An exit removes its entry after the grace period, unless the pid
    /// was given to a new process in between: the stale exit must not take
    /// the new process's entry.
    #[test]
    fn exits_expire_entries_but_not_a_reused_pids() {
        let mut t = Table::default();
        t.apply(exec(20, b"old\0", b"old\0"));
        t.apply(exec(21, b"gone\0", b"gone\0"));
        t.apply(Record::Exit {
            pid: 20,
            forked_from: None,
        });
        t.apply(Record::Exit {
            pid: 21,
            forked_from: None,
        });
        // Pid 20 reused, within the grace period.
        t.apply(exec(20, b"new\0", b"new\0"));
        t.tick += EXIT_GRACE_TICKS - 1;
        t.expire();
        assert_eq!(cmdline(&t, 21), Some("gone"), "kept during the grace");
        t.tick += 1;
        t.expire();
        assert_eq!(cmdline(&t, 21), None, "gone after the grace");
        assert_eq!(cmdline(&t, 20), Some("new"), "the reused pid's entry stays");
        assert!(t.exited.is_empty());
        // The new process's own exit removes it.
        t.apply(Record::Exit {
            pid: 20,
            forked_from: None,
        });
        t.tick += EXIT_GRACE_TICKS;
        t.expire();
        assert!(t.entries.is_empty(), "bounded: every exited entry went");
        assert_eq!(t.spare.len(), 2, "their buffers are kept for reuse");
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
