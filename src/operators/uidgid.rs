//! The uid/gid resolver (priority 5): user and group names for numeric ids,
//! from the host's `/etc/passwd` and `/etc/group`.
//!
//! Reads fields tagged `type:gadget_uid` and `type:gadget_gid`. Writes one
//! string sibling for each, named by its `uidgidresolver.target`
//! annotation, else the source's name minus `_raw`, else `user` / `group`
//! (upstream's rules): `proc.creds.uid` gets `proc.creds.user`. An id the
//! files do not name reads `uid:N` / `gid:N`, as upstream. The new fields
//! are hidden in tables by default (as upstream; `--fields +…` shows them)
//! and present in JSON.
//!
//! The files are read at start and re-read when their inode, size or mtime
//! change; that check runs on the flush timer at most once a second, never
//! per event. Per event: one hash lookup by id and a copy into the field's
//! reused `String`; no allocation, no system call.
//!
//! Names are the host's: a process in a container with its own user
//! database gets the host's name for its uid (upstream has the same limit).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use crate::datasource::{
    Event, FieldId, FieldKind, Schema, SchemaBuilder, SchemaError, ValueRef, copy,
};
use crate::pipeline::{
    Flow, Handler, HandlerError, Instance, Operator, OperatorError, Priority, Setup, priority,
};

const NAME: &str = "uidgidresolver";

/// The resolver, reading the host's files unless told otherwise.
pub struct UidGidResolver {
    passwd: PathBuf,
    group: PathBuf,
    check_every: Duration,
}

impl Default for UidGidResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl UidGidResolver {
    /// A resolver reading `/etc/passwd` and `/etc/group` (again when they
    /// change, at most once a second).
    pub fn new() -> Self {
        Self::with_files("/etc/passwd", "/etc/group", Duration::from_secs(1))
    }

    /// Read these files, checking them for changes at most every
    /// `check_every` (tests use their own files and no delay).
    pub fn with_files(
        passwd: impl Into<PathBuf>,
        group: impl Into<PathBuf>,
        check_every: Duration,
    ) -> Self {
        Self {
            passwd: passwd.into(),
            group: group.into(),
            check_every,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    User,
    Group,
}

impl Operator for UidGidResolver {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> Priority {
        priority::UID_GID_RESOLVER
    }

    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let mut plans = Vec::new();
        for id in setup.source_ids() {
            let pairs = plan(setup.schema_mut(id))?;
            if !pairs.is_empty() {
                plans.push((id, pairs));
            }
        }
        if plans.is_empty() {
            return Ok(None);
        }
        let db = Rc::new(RefCell::new(Db {
            users: IdFile::new(self.passwd),
            groups: IdFile::new(self.group),
            check_every: self.check_every,
            checked: None,
        }));
        for (id, pairs) in plans {
            setup.subscribe(
                id,
                priority::UID_GID_RESOLVER,
                NAME,
                Box::new(Resolving {
                    last: vec![(None, String::new()); pairs.len()],
                    pairs,
                    db: db.clone(),
                }),
            );
        }
        Ok(Some(Box::new(Loader { db })))
    }
}

/// Declare the name fields of one data source: `(which, id, name)`.
fn plan(b: &mut SchemaBuilder) -> Result<Vec<(Which, FieldId, FieldId)>, SchemaError> {
    let mut pairs = Vec::new();
    let ids: Vec<FieldId> = b.schema().ids().collect();
    for src in ids {
        let f = b.schema().field(src);
        let which = if f.has_tag("type:gadget_uid") {
            Which::User
        } else if f.has_tag("type:gadget_gid") {
            Which::Group
        } else {
            continue;
        };
        if !f.kind.is_numeric() {
            continue;
        }
        let fallback = match which {
            Which::User => "user",
            Which::Group => "group",
        };
        let target = f
            .annotation("uidgidresolver.target")
            .map(str::to_owned)
            .or_else(|| f.short_name().strip_suffix("_raw").map(str::to_owned))
            .unwrap_or_else(|| fallback.to_owned());
        let dst = match b.add_owned_sibling(&target, FieldKind::String, src) {
            Ok(id) => id,
            Err(SchemaError::DuplicateField { field, .. }) => {
                log::debug!("{NAME}: {field} exists already; not resolving into it");
                continue;
            }
            Err(e) => return Err(e),
        };
        let d = b.field_mut(dst);
        d.default_annotation("columns.hidden", "true");
        d.default_annotation("columns.alias", &target);
        d.default_annotation("columns.width", "16");
        d.default_annotation(
            "description",
            match which {
                Which::User => "User name of the uid, from the host's /etc/passwd",
                Which::Group => "Group name of the gid, from the host's /etc/group",
            },
        );
        pairs.push((which, src, dst));
    }
    Ok(pairs)
}

/// What identifies a version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        ino: m.ino(),
        len: m.len(),
        mtime: m.modified().ok(),
    })
}

/// Names by id from one file of the `name:x:id:...` form.
struct IdFile {
    path: PathBuf,
    stamp: Option<Stamp>,
    names: Names,
}

/// Names sorted by id: a binary search over a few dozen entries is faster
/// than hashing.
#[derive(Default)]
struct Names(Vec<(u32, Box<str>)>);

impl Names {
    fn get(&self, id: u32) -> Option<&str> {
        self.0
            .binary_search_by_key(&id, |(i, _)| *i)
            .ok()
            .map(|i| &*self.0[i].1)
    }
}

impl IdFile {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            stamp: None,
            names: Names::default(),
        }
    }

    /// Re-read the file if it changed since the last read (or was never
    /// read). A missing or unreadable file means no names.
    fn refresh(&mut self) {
        let now = stamp(&self.path);
        if now.is_some() && now == self.stamp {
            return;
        }
        self.stamp = now;
        self.names = match std::fs::read(&self.path) {
            Ok(bytes) => parse(&bytes),
            Err(e) => {
                log::debug!("{NAME}: reading {}: {e}", self.path.display());
                Names::default()
            }
        };
    }
}

/// `name:password:id:...` lines; comments, blank and malformed lines are
/// skipped, and the first name of an id wins (as `getpwuid` does).
fn parse(bytes: &[u8]) -> Names {
    let mut names: Vec<(u32, Box<str>)> = Vec::new();
    for line in String::from_utf8_lossy(bytes).lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut parts = line.split(':');
        let (Some(name), Some(_), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(id) = id.trim().parse::<u32>() else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        names.push((id, name.into()));
    }
    // Stable: the first line of an id comes first and stays.
    names.sort_by_key(|(id, _)| *id);
    names.dedup_by_key(|(id, _)| *id);
    Names(names)
}

/// Both files, shared by the handlers of every data source.
struct Db {
    users: IdFile,
    groups: IdFile,
    check_every: Duration,
    checked: Option<Instant>,
}

impl Db {
    /// Re-read changed files, at most once per `check_every`.
    fn maybe_refresh(&mut self) {
        if self
            .checked
            .is_some_and(|at| at.elapsed() < self.check_every)
        {
            return;
        }
        self.users.refresh();
        self.groups.refresh();
        self.checked = Some(Instant::now());
    }
}

/// Reads the files at start, before the first event.
struct Loader {
    db: Rc<RefCell<Db>>,
}

impl Instance for Loader {
    fn start(&mut self) -> Result<(), OperatorError> {
        self.db.borrow_mut().maybe_refresh();
        Ok(())
    }
}

struct Resolving {
    pairs: Vec<(Which, FieldId, FieldId)>,
    db: Rc<RefCell<Db>>,
    /// Per pair, the last id resolved and its text: consecutive events
    /// mostly have the same ids. Forgotten at every flush, when the files
    /// may have been read again.
    last: Vec<(Option<u64>, String)>,
}

impl Handler for Resolving {
    fn on_event(&mut self, schema: &Schema, ev: &mut Event) -> Flow {
        let db = self.db.borrow();
        for (&(which, src, dst), last) in self.pairs.iter().zip(&mut self.last) {
            let id = match ev.get(schema.field(src)) {
                ValueRef::U64(n) => n,
                ValueRef::I64(n) => n as u64,
                _ => continue,
            };
            if last.0 == Some(id) && ev.keep(schema.field(dst)) {
                continue;
            }
            let Some(out) = ev.str_buf(schema.field(dst)) else {
                continue;
            };
            if last.0 == Some(id) {
                copy::push_str(out, &last.1);
                continue;
            }
            let (names, prefix) = match which {
                Which::User => (&db.users.names, "uid"),
                Which::Group => (&db.groups.names, "gid"),
            };
            match u32::try_from(id).ok().and_then(|id| names.get(id)) {
                Some(name) => copy::push_str(out, name),
                None => {
                    let _ = write!(out, "{prefix}:{id}");
                }
            }
            last.0 = Some(id);
            last.1.clear();
            copy::push_str(&mut last.1, out);
        }
        Flow::Continue
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        for l in &mut self.last {
            l.0 = None;
        }
        self.db.borrow_mut().maybe_refresh();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::SourceKind;
    use crate::params::ParamValues;
    use crate::pipeline::Pipeline;
    use crate::pipeline::testing::{Collector, Producer, Subscribe, drain_all};

    fn schema() -> SchemaBuilder {
        let mut b = SchemaBuilder::new("ev", SourceKind::Single, 12);
        let proc = b
            .add_raw("proc".into(), FieldKind::Struct, 0, 8, None)
            .unwrap();
        let creds = b
            .add_raw("proc.creds".into(), FieldKind::Struct, 0, 8, Some(proc))
            .unwrap();
        for (name, off, tag) in [
            ("proc.creds.uid", 0, "type:gadget_uid"),
            ("proc.creds.gid", 4, "type:gadget_gid"),
        ] {
            let id = b
                .add_raw(name.into(), FieldKind::U32, off, 4, Some(creds))
                .unwrap();
            b.field_mut(id).tags = vec![tag.into()];
        }
        let owner = b
            .add_raw("owner_raw".into(), FieldKind::U32, 8, 4, None)
            .unwrap();
        b.field_mut(owner).tags = vec!["type:gadget_uid".into()];
        b
    }

    fn sample(uid: u32, gid: u32, owner: u32) -> Vec<u8> {
        [uid, gid, owner]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    }

    fn write(path: &Path, text: &str) {
        // Through a rename, as useradd does: a new inode.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn names_ids_and_follows_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (pw, gr) = (dir.path().join("passwd"), dir.path().join("group"));
        write(
            &pw,
            "# comment\nroot:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/a:/bin/sh\n\
             bad line\nbob:x:notanumber:1\nalias:x:1000:1000::/:/bin/sh\n",
        );
        write(&gr, "root:x:0:\nstaff:x:50:alice\n");
        let col = Collector::default();
        let samples = vec![sample(0, 0, 1000), sample(1000, 50, 7), sample(4242, 99, 0)];
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1,
                schema: schema(),
                samples: samples.clone(),
            }),
            Box::new(UidGidResolver::with_files(&pw, &gr, Duration::ZERO)),
            Box::new(Subscribe {
                name: "col",
                priority: 100,
                handler: col.clone(),
            }),
        ];
        let mut p = Pipeline::build(ops, &ParamValues::default()).unwrap();
        p.start().unwrap();
        drain_all(&mut p).unwrap();
        // (field, values for the three samples)
        let cases: &[(&str, [&str; 3])] = &[
            ("proc.creds.user", ["root", "alice", "uid:4242"]),
            ("proc.creds.group", ["root", "staff", "gid:99"]),
            ("owner", ["alice", "uid:7", "root"]),
        ];
        for (field, want) in cases {
            let want: Vec<Option<String>> = want.iter().map(|w| Some((*w).to_owned())).collect();
            assert_eq!(col.column(field), want, "{field}");
        }

        // A user is added: the next flush re-reads the file.
        write(&pw, "root:x:0:0::/:/bin/sh\ncarol:x:4242:1::/:/bin/sh\n");
        p.dispatch.flush().unwrap();
        let s = p.dispatch.schema(crate::pipeline::SourceId(0)).clone();
        let mut ev = Event::new(&s);
        ev.set_raw(&sample(4242, 0, 1000));
        col.seen.borrow_mut().clear();
        p.dispatch.event(crate::pipeline::SourceId(0), &mut ev);
        assert_eq!(col.column("proc.creds.user"), [Some("carol".into())]);
        assert_eq!(
            col.column("owner"),
            [Some("uid:1000".into())],
            "alice is gone"
        );
        p.stop().unwrap();
    }

    #[test]
    fn fields_sit_next_to_their_ids_and_are_hidden_in_tables() {
        let mut b = schema();
        let uid = b.schema().field_by_name("proc.creds.uid").unwrap();
        b.field_mut(uid)
            .annotations
            .insert("uidgidresolver.target".into(), "login".into());
        plan(&mut b).unwrap();
        let s = b.build();
        let names: Vec<&str> = s
            .display_order()
            .into_iter()
            .map(|id| s.field(id).name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "proc",
                "proc.creds",
                "proc.creds.uid",
                "proc.creds.login",
                "proc.creds.gid",
                "proc.creds.group",
                "owner_raw",
                "owner"
            ]
        );
        let login = s.field(s.field_by_name("proc.creds.login").unwrap());
        assert!(login.hidden_in_tables());
    }

    #[test]
    fn missing_files_and_untagged_gadgets() {
        let mut db = Db {
            users: IdFile::new("/nonexistent/passwd".into()),
            groups: IdFile::new("/nonexistent/group".into()),
            check_every: Duration::from_secs(1),
            checked: None,
        };
        db.maybe_refresh();
        assert!(db.users.names.0.is_empty());

        let mut b = SchemaBuilder::new("x", SourceKind::Single, 4);
        b.add_raw("n".into(), FieldKind::U32, 0, 4, None).unwrap();
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1,
                schema: b,
                samples: vec![],
            }),
            Box::new(UidGidResolver::new()),
        ];
        let p = Pipeline::build(ops, &ParamValues::default()).unwrap();
        assert_eq!(p.operator_names(), ["producer"]);
    }
}
