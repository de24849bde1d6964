//! JSON output: one object per event, nested by struct parents
//! (`{"proc":{"pid":1}}`), so `jq '.proc.pid'` works.

use std::io::Write as _;

use super::sink::{SharedWriter, Sink};
use crate::datasource::{Event, FieldId, FieldKind, Location, Schema, ValueRef, copy};
use crate::pipeline::{Flow, Handler, HandlerError};

/// The shape of one object, computed once from the schema. `key` is the
/// JSON-encoded name, `name` the name itself (for YAML).
pub(super) enum Node {
    Leaf {
        id: FieldId,
        key: Vec<u8>,
        name: String,
    },
    Object {
        key: Vec<u8>,
        name: String,
        children: Vec<Node>,
    },
}

/// Prints events as JSON: one object per line (`-o json`), or indented (`-o
/// jsonpretty`); a snapshot as one array.
pub struct JsonPrinter {
    /// `"instance":"NAME"` (`"instance": "NAME"` pretty) first in every
    /// object, when runs share the output (`ig run -f`); else empty.
    instance: Vec<u8>,
    nodes: Vec<Node>,
    /// The same plan flattened for the compact form (`-o json`).
    compact: Compiled,
    /// What the compact form's memoized objects printed last.
    memos: Vec<MemoState>,
    pretty: bool,
    sink: Sink,
}

/// One step of a compiled compact object.
enum Step {
    /// Fixed bytes: punctuation and keys, `lits[range]`.
    Lit(std::ops::Range<usize>),
    /// A value in the kernel's sample, decoded and written in one go.
    Raw {
        offset: usize,
        size: usize,
        kind: FieldKind,
    },
    /// Any other value (added in user space), through `Event::get`.
    Value(FieldId),
    /// The start of a memoized object (see [`Memo`]): its text is the next
    /// `len` steps' output.
    Memo { memo: usize, len: usize },
}

/// A nested object of the top level (`"proc":{...}`, `"runtime":{...}`)
/// whose text is kept from one event to the next and reused when its inputs
/// are the same: the bytes of the sample its raw fields span, and its
/// user-space fields, which must not have been written since the event the
/// text was made from (operators keep a value they know is unchanged, see
/// `Event::keep`). Consecutive events mostly come from the
/// same process (and container), so the process block of a syscall tracer
/// is usually the same as the previous event's: one comparison of ~80
/// bytes and one copy instead of formatting a dozen values. An object that
/// keeps changing turns its memo off for a while (see [`MemoState`]).
struct Memo {
    /// What of the sample its raw fields print from, in sample order.
    key: Vec<KeyPart>,
    /// The owned slots of its fields set in user space.
    owned: Vec<u16>,
}

/// One part of a memo's input in the sample.
#[derive(Clone, Debug, PartialEq)]
enum KeyPart {
    /// These bytes, all of them (integers, short strings the kernel pads
    /// with NULs such as `comm`).
    Bytes(std::ops::Range<usize>),
    /// A long C string: its bytes up to the first NUL only. What follows
    /// the NUL is not printed, and in a ring buffer it is whatever an
    /// older record left there (`bpf_probe_read_user_str` does not pad),
    /// so comparing it would make equal paths differ.
    CStr(std::ops::Range<usize>),
}

/// C strings up to this long are compared whole (`comm` is 16 bytes and
/// the kernel pads it); longer ones up to their NUL.
const KEY_WHOLE_CSTR: usize = 16;

impl Memo {
    /// Whether the sample `raw` holds the input `stored` was made from
    /// (see [`Memo::store_key`]).
    #[inline]
    fn same_key(&self, raw: &[u8], stored: &[u8]) -> bool {
        let mut at = 0;
        for p in &self.key {
            match p {
                KeyPart::Bytes(r) => {
                    let (Some(cur), Some(old)) = (raw.get(r.clone()), stored.get(at..at + r.len()))
                    else {
                        return false;
                    };
                    if !copy::same(cur, old) {
                        return false;
                    }
                    at += r.len();
                }
                KeyPart::CStr(r) => {
                    let cur = raw.get(r.clone()).unwrap_or_default();
                    let cur = &cur[..crate::datasource::c_str_len(cur)];
                    // The stored text ends with a NUL, which no stored
                    // string holds: equal bytes and a NUL after them mean
                    // equal strings.
                    let Some(old) = stored.get(at..=at + cur.len()) else {
                        return false;
                    };
                    if old[cur.len()] != 0 || !copy::same(cur, &old[..cur.len()]) {
                        return false;
                    }
                    at += cur.len() + 1;
                }
            }
        }
        at == stored.len()
    }

    /// Keep the input of the sample `raw` in `stored`, for
    /// [`Memo::same_key`].
    fn store_key(&self, raw: &[u8], stored: &mut Vec<u8>) {
        stored.clear();
        for p in &self.key {
            match p {
                KeyPart::Bytes(r) => copy::extend(stored, raw.get(r.clone()).unwrap_or_default()),
                KeyPart::CStr(r) => {
                    let cur = raw.get(r.clone()).unwrap_or_default();
                    copy::extend(stored, &cur[..crate::datasource::c_str_len(cur)]);
                    stored.push(0);
                }
            }
        }
    }
}

/// Memo outcomes counted before deciding whether a memo pays.
const MEMO_WINDOW: u32 = 256;
/// Events a memo that rarely hits stays off before it is tried again.
const MEMO_REST: u32 = 4096;

/// The last inputs and text of one [`Memo`].
#[derive(Default)]
struct MemoState {
    valid: bool,
    /// The input in the sample, as [`Memo::store_key`] keeps it.
    raw: Vec<u8>,
    /// The event `text` was made from ([`Event::id`]) and its generation.
    event: u64,
    generation: u64,
    text: Vec<u8>,
    hits: u32,
    tries: u32,
    /// Events left before a memo that did not pay is tried again.
    resting: u32,
    /// Hits since the start (for tests and debugging).
    total_hits: u64,
}

impl MemoState {
    /// Whether the memo is worth checking for this event.
    fn active(&mut self) -> bool {
        if self.resting > 0 {
            self.resting -= 1;
            return false;
        }
        true
    }

    /// Count one outcome; rest after a window with few hits (a miss costs
    /// the comparison and a copy of the text on top of the formatting).
    fn count(&mut self, hit: bool) {
        self.tries += 1;
        self.hits += u32::from(hit);
        self.total_hits += u64::from(hit);
        if self.tries == MEMO_WINDOW {
            if self.hits < MEMO_WINDOW / 4 {
                self.resting = MEMO_REST;
                self.valid = false;
            }
            self.tries = 0;
            self.hits = 0;
        }
    }
}

/// Literals up to this long are copied as one fixed-size chunk.
const LIT_SLACK: usize = 16;

/// A compact JSON object as alternating fixed bytes and values. Everything
/// between two values (`,"proc":{"comm":`) is one precomputed slice, so an
/// event costs one copy per value instead of four or five small ones.
struct Compiled {
    lits: Vec<u8>,
    steps: Vec<Step>,
    memos: Vec<Memo>,
    /// The most bytes the literal and raw integer steps of one event can
    /// write (see [`Compiled::write`]), plus the literal slack.
    bound: usize,
}

impl Compiled {
    /// `first`: a member (`"key":value`) put first in the top-level object.
    fn new(schema: &Schema, nodes: &[Node], first: &[u8]) -> Self {
        fn walk(
            schema: &Schema,
            nodes: &[Node],
            pending: &mut Vec<u8>,
            c: &mut Compiled,
            top: Option<&[u8]>,
        ) {
            pending.push(b'{');
            let first = top.filter(|f| !f.is_empty());
            if let Some(f) = first {
                pending.extend_from_slice(f);
            }
            // At the top level, runs of members are memoized (see
            // `segments`): the step where each run's memo starts.
            let segs = if top.is_some() {
                segments(schema, nodes)
            } else {
                Vec::new()
            };
            let mut memo_at = None;
            for (i, n) in nodes.iter().enumerate() {
                if i > 0 || first.is_some() {
                    pending.push(b',');
                }
                if segs.iter().any(|r| r.start == i) {
                    c.lit(pending);
                    memo_at = Some(c.steps.len());
                    c.steps.push(Step::Memo { memo: 0, len: 0 });
                }
                match n {
                    Node::Leaf { id, key, .. } => {
                        pending.extend_from_slice(key);
                        pending.push(b':');
                        c.lit(pending);
                        let f = schema.field(*id);
                        c.steps.push(match f.loc {
                            Location::Raw { offset, size } => Step::Raw {
                                offset: offset as usize,
                                size: size as usize,
                                kind: f.kind,
                            },
                            Location::Owned { .. } => Step::Value(*id),
                        });
                    }
                    Node::Object { key, children, .. } => {
                        pending.extend_from_slice(key);
                        pending.push(b':');
                        walk(schema, children, pending, c, None);
                    }
                }
                if let Some(at) = memo_at
                    && segs.iter().any(|r| r.end == i + 1)
                {
                    c.lit(pending);
                    c.memoize(schema, at);
                    memo_at = None;
                }
            }
            pending.push(b'}');
        }
        let mut c = Compiled {
            lits: Vec::new(),
            steps: Vec::new(),
            memos: Vec::new(),
            bound: 0,
        };
        let mut pending = Vec::new();
        walk(schema, nodes, &mut pending, &mut c, Some(first));
        c.lit(&mut pending);
        // Slack for the fixed-size copies of short literals in `write`.
        c.lits.extend_from_slice(&[0; LIT_SLACK]);
        c.bound = c.lits.len() + LIT_SLACK + INT_MAX_LEN * c.steps.len();
        c
    }

    /// Make the steps after the placeholder at `at` a memoized object.
    fn memoize(&mut self, schema: &Schema, at: usize) {
        let inner = &self.steps[at + 1..];
        let mut parts = Vec::new();
        let mut owned = Vec::new();
        for s in inner {
            match s {
                Step::Raw { offset, size, kind } => {
                    let r = *offset..offset + size;
                    parts.push(match kind {
                        FieldKind::CString | FieldKind::String if *size > KEY_WHOLE_CSTR => {
                            KeyPart::CStr(r)
                        }
                        _ => KeyPart::Bytes(r),
                    });
                }
                // A value step's field is owned (`Compiled::new`).
                Step::Value(id) => owned.push(schema.field(*id).owned_slot().unwrap_or(u16::MAX)),
                Step::Lit(_) | Step::Memo { .. } => {}
            }
        }
        self.steps[at] = Step::Memo {
            memo: self.memos.len(),
            len: inner.len(),
        };
        self.memos.push(Memo {
            key: key_parts(parts),
            owned,
        });
    }

    /// Turn the pending bytes into a literal step.
    fn lit(&mut self, pending: &mut Vec<u8>) {
        if pending.is_empty() {
            return;
        }
        let start = self.lits.len();
        self.lits.append(pending);
        self.steps.push(Step::Lit(start..self.lits.len()));
    }

    /// Append one event's object to `buf`.
    ///
    /// Hot path of `-o json`. `buf` is given room for [`Compiled::bound`]
    /// bytes up front, and again after each step whose length has no bound
    /// (strings, memoized text): literals and integers, most of the steps,
    /// are then stored without a capacity check each.
    fn write(&self, buf: &mut Vec<u8>, schema: &Schema, ev: &Event, states: &mut [MemoState]) {
        buf.reserve(self.bound);
        let mut i = 0;
        while let Some(s) = self.steps.get(i) {
            i += 1;
            let Step::Memo { memo, len } = *s else {
                self.step(buf, s, schema, ev);
                continue;
            };
            let (m, st) = (&self.memos[memo], &mut states[memo]);
            let inner = i..i + len;
            i += len;
            if !st.active() {
                self.steps(buf, inner, schema, ev);
                continue;
            }
            let raw = ev.raw();
            let hit = st.valid
                && st.event == ev.id()
                && m.same_key(raw, &st.raw)
                && ev.unchanged_slots_since(&m.owned, st.generation);
            st.count(hit);
            if hit {
                copy::extend(buf, &st.text);
                buf.reserve(self.bound);
                continue;
            }
            m.store_key(raw, &mut st.raw);
            st.event = ev.id();
            st.generation = ev.generation();
            let start = buf.len();
            self.steps(buf, inner, schema, ev);
            st.text.clear();
            copy::extend(&mut st.text, &buf[start..]);
            st.valid = true;
        }
    }

    /// The steps in `range` (none of them a memo: memos are top-level).
    fn steps(&self, buf: &mut Vec<u8>, range: std::ops::Range<usize>, schema: &Schema, ev: &Event) {
        for s in self.steps.get(range).unwrap_or_default() {
            self.step(buf, s, schema, ev);
        }
    }

    /// One step other than a memo. When it starts, `buf` has room for
    /// every literal and integer of the event still to come (what
    /// [`Compiled::write`] keeps true); when it ends, still.
    #[inline(always)]
    fn step(&self, buf: &mut Vec<u8>, s: &Step, schema: &Schema, ev: &Event) {
        match s {
            // Most literals (`,"pid":`) are short: copy a fixed 16 bytes
            // (inlined stores; `lits` has 16 bytes of slack at the end)
            // and count only the literal's length.
            Step::Lit(r) if r.len() <= LIT_SLACK => {
                let chunk: &[u8; LIT_SLACK] = self.lits[r.start..r.start + LIT_SLACK]
                    .try_into()
                    .expect("LIT_SLACK bytes");
                let len = buf.len();
                debug_assert!(buf.capacity() - len >= LIT_SLACK);
                // SAFETY: `write` keeps room for `bound` bytes, which
                // counts every literal and LIT_SLACK more; the `r.len()`
                // bytes kept were written.
                unsafe {
                    buf.as_mut_ptr()
                        .add(len)
                        .cast::<[u8; LIT_SLACK]>()
                        .write_unaligned(*chunk);
                    buf.set_len(len + r.len());
                }
            }
            Step::Lit(r) => copy::extend(buf, &self.lits[r.clone()]),
            Step::Raw { offset, size, kind } => {
                match ev.raw().get(*offset..*offset + *size) {
                    Some(b) => write_raw(buf, *kind, b),
                    None => buf.extend_from_slice(b"null"),
                }
                // Integers and booleans are bounded (INT_MAX_LEN); strings,
                // floats and bytes are not.
                if !matches!(
                    kind,
                    FieldKind::Bool
                        | FieldKind::U8
                        | FieldKind::U16
                        | FieldKind::U32
                        | FieldKind::U64
                        | FieldKind::I8
                        | FieldKind::I16
                        | FieldKind::I32
                        | FieldKind::I64
                ) {
                    buf.reserve(self.bound);
                }
            }
            Step::Value(id) => {
                write_value(buf, ev.get(schema.field(*id)));
                buf.reserve(self.bound);
            }
            // Top-level only, handled by `write`.
            Step::Memo { .. } => {}
        }
    }
}

/// The parts of a memo's key in sample order, adjacent and overlapping
/// byte ranges merged (a struct's integers are then one comparison).
fn key_parts(mut parts: Vec<KeyPart>) -> Vec<KeyPart> {
    let start = |p: &KeyPart| match p {
        KeyPart::Bytes(r) | KeyPart::CStr(r) => (r.start, r.end),
    };
    parts.sort_by_key(start);
    parts.dedup();
    let mut out: Vec<KeyPart> = Vec::new();
    for p in parts {
        if let (Some(KeyPart::Bytes(last)), KeyPart::Bytes(r)) = (out.last_mut(), &p)
            && r.start <= last.end
        {
            last.end = last.end.max(r.end);
            continue;
        }
        out.push(p);
    }
    out
}

/// Which runs of the top-level members `nodes` get one memo each, as
/// ranges of indices. Consecutive events mostly differ in their
/// timestamps only; the runs are cut so that what changes often does not
/// spoil the memo of what does not:
/// - each object with fields from the sample (`proc`) is a run;
/// - consecutive objects with only user-space fields (`k8s`, `runtime`:
///   the container of the process) are one run;
/// - consecutive leaves are a run, cut at timestamps (a raw field tagged
///   `type:gadget_timestamp`, and what is shown in its place: the text
///   the formatters make of it), which are printed without a memo.
///
/// A run that keeps changing anyway rests (see [`MemoState`]).
fn segments(schema: &Schema, nodes: &[Node]) -> Vec<std::ops::Range<usize>> {
    #[derive(PartialEq, Clone, Copy)]
    enum Kind {
        RawObject,
        OwnedObjects,
        Leaves,
        Stamp,
    }
    fn has_raw(schema: &Schema, nodes: &[Node]) -> bool {
        nodes.iter().any(|n| match n {
            Node::Leaf { id, .. } => matches!(schema.field(*id).loc, Location::Raw { .. }),
            Node::Object { children, .. } => has_raw(schema, children),
        })
    }
    let stamp_orders: Vec<u32> = schema
        .fields_with_tag("type:gadget_timestamp")
        .filter(|id| matches!(schema.field(*id).loc, Location::Raw { .. }))
        .map(|id| schema.field(id).order)
        .collect();
    let kind = |n: &Node| match n {
        Node::Object { children, .. } if has_raw(schema, children) => Kind::RawObject,
        Node::Object { .. } => Kind::OwnedObjects,
        Node::Leaf { id, .. } if stamp_orders.contains(&schema.field(*id).order) => Kind::Stamp,
        Node::Leaf { .. } => Kind::Leaves,
    };
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut prev = None;
    for (i, n) in nodes.iter().enumerate() {
        let k = kind(n);
        match (k, out.last_mut()) {
            (Kind::Stamp, _) => {}
            (Kind::OwnedObjects | Kind::Leaves, Some(last)) if prev == Some(k) && last.end == i => {
                last.end = i + 1;
            }
            _ => out.push(i..i + 1),
        }
        prev = Some(k);
    }
    out
}

impl JsonPrinter {
    /// Print the default fields (`--fields` not given).
    pub fn new(schema: &Schema, pretty: bool, out: SharedWriter) -> Self {
        let fields = super::fields::defaults(schema, super::fields::Flavor::Json);
        Self::with_fields(schema, &fields, pretty, out)
    }

    /// Print `fields` (leaves), nested under their structs, in display
    /// order.
    pub fn with_fields(
        schema: &Schema,
        fields: &[FieldId],
        pretty: bool,
        out: SharedWriter,
    ) -> Self {
        let nodes = plan(schema, fields);
        let compact = Compiled::new(schema, &nodes, &[]);
        Self {
            instance: Vec::new(),
            memos: compact.memos.iter().map(|_| MemoState::default()).collect(),
            compact,
            nodes,
            pretty,
            sink: Sink::new(out),
        }
    }

    /// Put `"instance": name` first in every object: the run's name when
    /// several runs share the output.
    #[must_use]
    pub fn with_instance(mut self, schema: &Schema, name: &str) -> Self {
        let mut member = Vec::new();
        write_str(&mut member, b"instance");
        member.push(b':');
        let mut pretty = member.clone();
        pretty.push(b' ');
        write_str(&mut member, name.as_bytes());
        write_str(&mut pretty, name.as_bytes());
        self.compact = Compiled::new(schema, &self.nodes, &member);
        self.memos = self
            .compact
            .memos
            .iter()
            .map(|_| MemoState::default())
            .collect();
        self.instance = if self.pretty { pretty } else { member };
        self
    }
}

/// One event as the compact object `-o json` prints (its default fields),
/// into a caller's buffer: what the logs operator puts under `data`.
pub struct ObjectWriter {
    compact: Compiled,
    memos: Vec<MemoState>,
}

impl ObjectWriter {
    /// The writer of `schema`'s events.
    pub fn new(schema: &Schema) -> Self {
        let fields = super::fields::defaults(schema, super::fields::Flavor::Json);
        let compact = Compiled::new(schema, &plan(schema, &fields), &[]);
        Self {
            memos: compact.memos.iter().map(|_| MemoState::default()).collect(),
            compact,
        }
    }

    /// Append `ev` as one JSON object (no newline) to `buf`.
    pub fn write(&mut self, buf: &mut Vec<u8>, schema: &Schema, ev: &Event) {
        self.compact.write(buf, schema, ev, &mut self.memos);
    }
}

/// Append `s` to `buf` as a JSON string.
pub fn push_json_str(buf: &mut Vec<u8>, s: &[u8]) {
    write_str(buf, s);
}

/// The object tree of the selected leaves: a struct appears when one of
/// its fields is selected.
pub(super) fn plan(schema: &Schema, fields: &[FieldId]) -> Vec<Node> {
    let mut selected = vec![false; schema.fields().len()];
    for id in fields {
        selected[id.index()] = true;
    }
    plan_under(schema, None, &selected)
}

fn plan_under(schema: &Schema, parent: Option<FieldId>, selected: &[bool]) -> Vec<Node> {
    schema
        .children_in_display_order(parent)
        .into_iter()
        .filter_map(|id| {
            let f = schema.field(id);
            let mut key = Vec::new();
            write_str(&mut key, f.short_name().as_bytes());
            let name = f.short_name().to_owned();
            if f.kind == FieldKind::Struct {
                let children = plan_under(schema, Some(id), selected);
                (!children.is_empty()).then_some(Node::Object {
                    key,
                    name,
                    children,
                })
            } else {
                selected[id.index()].then_some(Node::Leaf { id, key, name })
            }
        })
        .collect()
}

impl Handler for JsonPrinter {
    fn on_event(&mut self, schema: &Schema, event: &mut Event) -> Flow {
        let pretty = self.pretty;
        let Some(buf) = self.sink.buf() else {
            return Flow::Continue;
        };
        if pretty {
            write_object(buf, &self.nodes, schema, event, Some(0), &self.instance);
        } else {
            self.compact.write(buf, schema, event, &mut self.memos);
        }
        buf.push(b'\n');
        self.sink.record_done();
        Flow::Continue
    }

    fn on_array(&mut self, schema: &Schema, events: &mut Vec<Event>) -> Flow {
        let pretty = self.pretty;
        let Some(buf) = self.sink.buf() else {
            return Flow::Continue;
        };
        buf.push(b'[');
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            newline(buf, pretty.then_some(1));
            if pretty {
                write_object(buf, &self.nodes, schema, e, Some(1), &self.instance);
            } else {
                self.compact.write(buf, schema, e, &mut self.memos);
            }
        }
        if !events.is_empty() {
            newline(buf, pretty.then_some(0));
        }
        buf.extend_from_slice(b"]\n");
        self.sink.record_done();
        Flow::Continue
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        self.sink.flush()
    }
}

fn newline(buf: &mut Vec<u8>, indent: Option<usize>) {
    if let Some(n) = indent {
        buf.push(b'\n');
        buf.resize(buf.len() + 2 * n, b' ');
    }
}

/// `first`: a member written before the nodes (empty: none).
fn write_object(
    buf: &mut Vec<u8>,
    nodes: &[Node],
    schema: &Schema,
    ev: &Event,
    indent: Option<usize>,
    first: &[u8],
) {
    buf.push(b'{');
    let inner = indent.map(|n| n + 1);
    if !first.is_empty() {
        newline(buf, inner);
        buf.extend_from_slice(first);
    }
    for (i, node) in nodes.iter().enumerate() {
        if i > 0 || !first.is_empty() {
            buf.push(b',');
        }
        newline(buf, inner);
        match node {
            Node::Leaf { id, key, .. } => {
                buf.extend_from_slice(key);
                buf.push(b':');
                if indent.is_some() {
                    buf.push(b' ');
                }
                write_value(buf, ev.get(schema.field(*id)));
            }
            Node::Object { key, children, .. } => {
                buf.extend_from_slice(key);
                buf.push(b':');
                if indent.is_some() {
                    buf.push(b' ');
                }
                write_object(buf, children, schema, ev, inner, &[]);
            }
        }
    }
    if !nodes.is_empty() || !first.is_empty() {
        newline(buf, indent);
    }
    buf.push(b'}');
}

/// Append one value. Writing into a `Vec` cannot fail.
pub(crate) fn write_value(buf: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::None => buf.extend_from_slice(b"null"),
        ValueRef::Bool(b) => buf.extend_from_slice(if b { b"true" } else { b"false" }),
        ValueRef::U64(n) => push_u64(buf, n),
        ValueRef::I64(n) => push_i64(buf, n),
        ValueRef::F64(f) if f.is_finite() => {
            let _ = write!(buf, "{f}");
        }
        ValueRef::F64(_) => buf.extend_from_slice(b"null"),
        ValueRef::Str(s) => write_str(buf, s),
        ValueRef::Bytes(b) => {
            // Raw bytes have no JSON type; a hex string keeps them readable
            // and round-trippable.
            buf.push(b'"');
            for x in b {
                let _ = write!(buf, "{x:02x}");
            }
            buf.push(b'"');
        }
    }
}

/// Write a value straight from its bytes in the sample: what
/// `write_value(buf, ev.get(field))` prints, without building a `ValueRef`
/// (the hot path of `-o json`: most fields are integers in the sample).
fn write_raw(buf: &mut Vec<u8>, kind: FieldKind, b: &[u8]) {
    fn int<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
        b.get(..N).and_then(|x| x.try_into().ok())
    }
    let done = match kind {
        FieldKind::U8 => int::<1>(b).map(|x| push_u64(buf, u64::from(x[0]))),
        FieldKind::U16 => int(b).map(|x| push_u64(buf, u64::from(u16::from_ne_bytes(x)))),
        FieldKind::U32 => int(b).map(|x| push_u64(buf, u64::from(u32::from_ne_bytes(x)))),
        FieldKind::U64 => int(b).map(|x| push_u64(buf, u64::from_ne_bytes(x))),
        FieldKind::I32 => int(b).map(|x| push_i64(buf, i64::from(i32::from_ne_bytes(x)))),
        FieldKind::I64 => int(b).map(|x| push_i64(buf, i64::from_ne_bytes(x))),
        FieldKind::CString | FieldKind::String => {
            write_c_str(buf, b);
            Some(())
        }
        _ => None,
    };
    // Short fields and the rarer kinds: the general decoder.
    if done.is_none() {
        write_value(buf, crate::datasource::decode(kind, b));
    }
}

fn push_i64(buf: &mut Vec<u8>, n: i64) {
    buf.reserve(INT_MAX_LEN);
    let len = buf.len();
    // SAFETY: room for INT_MAX_LEN bytes (a sign and 20 digits), all of
    // those counted written.
    unsafe {
        let p = buf.as_mut_ptr().add(len);
        let sign = usize::from(n < 0);
        *p = b'-';
        let k = put_u64(p.add(sign), n.unsigned_abs());
        buf.set_len(len + sign + k);
    }
}

/// The longest integer text: a sign and 20 digits.
const INT_MAX_LEN: usize = 21;

/// Append `n` in decimal (what `write!` does, without the formatting
/// machinery: numbers are most of an event's fields).
pub(super) fn push_u64(buf: &mut Vec<u8>, n: u64) {
    buf.reserve(INT_MAX_LEN);
    let len = buf.len();
    // SAFETY: room for 20 digits; `put_u64` wrote the `k` counted.
    unsafe {
        let k = put_u64(buf.as_mut_ptr().add(len), n);
        buf.set_len(len + k);
    }
}

/// Two decimal digits per entry.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Write the digits of `n` at `dst`; returns how many.
///
/// Hot path: eight digits at a time are split off with one 64-bit
/// division and written as four pairs with 32-bit arithmetic (a
/// nanosecond timestamp takes one such round and three pairs), instead of
/// a 64-bit division per pair.
///
/// # Safety
/// `dst` is valid for writing 20 bytes.
#[inline]
unsafe fn put_u64(dst: *mut u8, mut n: u64) -> usize {
    /// Write pair `k` (0-99) at `at`.
    #[inline(always)]
    unsafe fn pair(at: *mut u8, k: u32) {
        let k = k as usize * 2;
        // SAFETY: `k < 200`; the caller's 2 bytes at `at`.
        unsafe {
            at.cast::<[u8; 2]>()
                .write_unaligned([*PAIRS.get_unchecked(k), *PAIRS.get_unchecked(k + 1)]);
        }
    }
    let len = n.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut i = len;
    // SAFETY: `len <= 20` digits are written at `dst[..len]`, from the end.
    unsafe {
        while n >= 100_000_000 {
            let low = (n % 100_000_000) as u32;
            n /= 100_000_000;
            let (hi, lo) = (low / 10_000, low % 10_000);
            pair(dst.add(i - 2), lo % 100);
            pair(dst.add(i - 4), lo / 100);
            pair(dst.add(i - 6), hi % 100);
            pair(dst.add(i - 8), hi / 100);
            i -= 8;
        }
        let mut m = n as u32;
        while m >= 100 {
            pair(dst.add(i - 2), m % 100);
            m /= 100;
            i -= 2;
        }
        if m >= 10 {
            pair(dst.add(i - 2), m);
        } else {
            *dst.add(i - 1) = b'0' + m as u8;
        }
    }
    len
}

/// Whether every byte of `s` is printable ASCII other than `"` and `\\`
/// (what a JSON string holds as is, and a terminal shows one column per
/// byte). Eight bytes per test.
#[inline]
pub(super) fn plain_ascii(s: &[u8]) -> bool {
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        if needs_escape(u64::from_le_bytes(w.try_into().expect("eight bytes"))) {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// Does any byte of `w` need escaping in a JSON string (control, `"`, `\\`,
/// DEL or non-ASCII)? Eight bytes per test, with the classic "has a byte
/// less than / equal to" bit tricks.
#[inline]
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let quote = has_zero(w ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(w ^ (ONES * u64::from(b'\\')));
    let del = has_zero(w ^ (ONES * 0x7f));
    (below_space | quote | backslash | del | (w & HIGH)) != 0
}

/// Append `s` as a JSON string. Kernel strings are bytes: invalid UTF-8 is
/// replaced by U+FFFD so the output always parses.
///
/// Hot path: runs of plain ASCII (almost every byte of a path or a command
/// name) are copied in one `extend_from_slice`; only the bytes that need
/// escaping, and non-ASCII sequences, take the slow road.
pub(crate) fn write_str(buf: &mut Vec<u8>, s: &[u8]) {
    // Most strings are plain to the end and leave in one copy.
    write_str_after(buf, s, plain_words(s));
}

/// How many leading bytes of `s`, in whole words of eight, need no
/// escaping (a NUL does).
#[inline]
fn plain_words(s: &[u8]) -> usize {
    let mut i = 0;
    while let Some(w) = s.get(i..i + 8) {
        if needs_escape(u64::from_le_bytes(w.try_into().expect("eight bytes"))) {
            break;
        }
        i += 8;
    }
    i
}

/// A C string (up to its first NUL, or all of `b`) as a JSON string: the
/// NUL is found by the same eight-byte scan that skips plain bytes (a NUL
/// needs escaping), so the common string is read once, not twice.
fn write_c_str(buf: &mut Vec<u8>, b: &[u8]) {
    let i = plain_words(b);
    // No NUL before `i`: the string ends at the first one from there.
    let end = i + crate::datasource::c_str_len(&b[i..]);
    write_str_after(buf, &b[..end], i);
}

/// [`write_str`] of `s`, whose first `plain` bytes need no escaping.
fn write_str_after(buf: &mut Vec<u8>, s: &[u8], plain: usize) {
    buf.reserve(s.len() + 2);
    buf.push(b'"');
    let mut i = plain;
    // A tail of under eight bytes after the plain prefix: if the string's
    // last eight bytes (overlapping the prefix) are plain, so is the whole
    // string, and it leaves in one copy without a byte loop.
    if let Some(at) = s.len().checked_sub(8)
        && at <= plain
        && !needs_escape(u64::from_le_bytes(s[at..].try_into().expect("eight bytes")))
    {
        i = s.len();
    }
    let mut start = 0;
    while i < s.len() {
        let b = s[i];
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            i += 1;
            continue;
        }
        copy::extend(buf, &s[start..i]);
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0x00..0x20 | 0x7f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            }
            _ => {
                // Non-ASCII: copy one valid UTF-8 character, or replace the
                // invalid bytes.
                let chunk = s[i..].utf8_chunks().next().expect("s[i..] is not empty");
                if let Some(c) = chunk.valid().chars().next() {
                    let n = c.len_utf8();
                    buf.extend_from_slice(&s[i..i + n]);
                    i += n;
                } else {
                    buf.extend_from_slice("\u{fffd}".as_bytes());
                    i += chunk.invalid().len().max(1);
                }
                start = i;
                continue;
            }
        }
        i += 1;
        start = i;
    }
    copy::extend(buf, &s[start..]);
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::{SchemaBuilder, SourceKind, Value};
    use crate::output::shared;
    use crate::output::sink::Capture;

    fn schema() -> Schema {
        let mut b = SchemaBuilder::new("exec", SourceKind::Single, 24);
        let proc = b
            .add_raw("proc".into(), FieldKind::Struct, 0, 12, None)
            .unwrap();
        b.add_raw("proc.comm".into(), FieldKind::CString, 0, 8, Some(proc))
            .unwrap();
        b.add_raw("proc.pid".into(), FieldKind::U32, 8, 4, Some(proc))
            .unwrap();
        b.add_raw("error".into(), FieldKind::I32, 12, 4, None)
            .unwrap();
        b.add_raw("__hidden".into(), FieldKind::U64, 16, 8, None)
            .unwrap();
        b.build()
    }

    fn sample(comm: &[u8], pid: u32, err: i32) -> Vec<u8> {
        let mut s = vec![0u8; 24];
        s[..comm.len()].copy_from_slice(comm);
        s[8..12].copy_from_slice(&pid.to_ne_bytes());
        s[12..16].copy_from_slice(&err.to_ne_bytes());
        s
    }

    fn print(pretty: bool, samples: &[Vec<u8>]) -> String {
        let s = schema();
        let cap = Capture::default();
        let mut p = JsonPrinter::new(&s, pretty, shared(cap.clone()));
        let mut ev = Event::new(&s);
        for x in samples {
            ev.set_raw(x);
            p.on_event(&s, &mut ev);
        }
        p.flush().unwrap();
        String::from_utf8(cap.0.borrow().clone()).unwrap()
    }

    #[test]
    fn an_instance_is_the_first_member_of_every_object() {
        let mut b = SchemaBuilder::new("s", SourceKind::Single, 8);
        let proc = b
            .add_raw("proc".into(), FieldKind::Struct, 0, 8, None)
            .unwrap();
        b.add_raw("proc.pid".into(), FieldKind::U32, 0, 4, Some(proc))
            .unwrap();
        b.add_raw("n".into(), FieldKind::U32, 4, 4, None).unwrap();
        let s = b.build();
        for (pretty, want) in [
            (
                false,
                "{\"instance\":\"my-run\",\"proc\":{\"pid\":7},\"n\":9}\n",
            ),
            (
                true,
                "{\n  \"instance\": \"my-run\",\n  \"proc\": {\n    \"pid\": 7\n  },\n  \"n\": 9\n}\n",
            ),
        ] {
            let cap = Capture::default();
            let mut p =
                JsonPrinter::new(&s, pretty, shared(cap.clone())).with_instance(&s, "my-run");
            let mut ev = Event::new(&s);
            let mut raw = 7u32.to_ne_bytes().to_vec();
            raw.extend_from_slice(&9u32.to_ne_bytes());
            ev.set_raw(&raw);
            // Twice: the memoized `proc` object keeps the member first.
            for _ in 0..2 {
                p.on_event(&s, &mut ev);
            }
            p.flush().unwrap();
            let got = String::from_utf8(cap.0.borrow().clone()).unwrap();
            assert_eq!(got, format!("{want}{want}"), "pretty: {pretty}");
            // Each element of a snapshot too.
            let cap = Capture::default();
            let mut p = JsonPrinter::new(&s, false, shared(cap.clone())).with_instance(&s, "x");
            p.on_array(&s, &mut vec![ev.clone(), ev.clone()]);
            p.flush().unwrap();
            let got = String::from_utf8(cap.0.borrow().clone()).unwrap();
            let v: serde_json::Value = serde_json::from_str(&got).unwrap();
            assert!(
                v.as_array().unwrap().iter().all(|e| e["instance"] == "x"),
                "{got}"
            );
        }
    }

    #[test]
    fn one_nested_object_per_line() {
        let out = print(
            false,
            &[sample(b"cat", 42, -2), sample(b"a\"b\\\n\xff", 1, 0)],
        );
        assert_eq!(
            out,
            "{\"proc\":{\"comm\":\"cat\",\"pid\":42},\"error\":-2}\n\
             {\"proc\":{\"comm\":\"a\\\"b\\\\\\n\u{fffd}\",\"pid\":1},\"error\":0}\n"
        );
        for line in out.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
    }

    /// Memoized objects print exactly what a printer with no memory
    /// prints, whether their raw bytes, their user-space values or neither
    /// changed, across enough events for memos to rest and come back.
    #[test]
    fn memoized_objects_print_what_a_fresh_printer_prints() {
        let mut b = SchemaBuilder::new("ev", SourceKind::Single, 24);
        let proc = b
            .add_raw("proc".into(), FieldKind::Struct, 0, 12, None)
            .unwrap();
        b.add_raw("proc.comm".into(), FieldKind::CString, 0, 8, Some(proc))
            .unwrap();
        let pid = b
            .add_raw("proc.pid".into(), FieldKind::U32, 8, 4, Some(proc))
            .unwrap();
        let user = b.add_owned_sibling("user", FieldKind::String, pid).unwrap();
        b.add_raw("error".into(), FieldKind::I32, 12, 4, None)
            .unwrap();
        let s = b.build();
        let user = s.field(user).clone();
        let render = |p: &mut JsonPrinter, cap: &Capture, ev: &mut Event| {
            cap.0.borrow_mut().clear();
            p.on_event(&s, ev);
            p.flush().unwrap();
            String::from_utf8(cap.0.borrow().clone()).unwrap()
        };
        let cap = Capture::default();
        let mut memo = JsonPrinter::new(&s, false, shared(cap.clone()));
        let mut ev = Event::new(&s);
        // A pseudo-random walk: long runs of the same process (hits), then
        // a stretch where every event differs (the memo rests), then runs.
        let mut last_name = "";
        for i in 0..8000u32 {
            let churn = (800..1400).contains(&i);
            let pid = if churn { i } else { 100 + (i / 50) % 2 };
            let name = if (i / 37) % 3 == 0 { "bob" } else { "root" };
            ev.set_raw(&sample(b"cat", pid, -((i % 3) as i32)));
            // As operators do: keep an unchanged value (mostly), but also
            // rewrite the same text now and then, which must not hit.
            if name != last_name || i % 11 == 0 || !ev.keep(&user) {
                ev.set_str(&user, name);
            }
            last_name = name;
            let got = render(&mut memo, &cap, &mut ev);
            let fresh_cap = Capture::default();
            let mut fresh = JsonPrinter::new(&s, false, shared(fresh_cap.clone()));
            let want = render(&mut fresh, &fresh_cap, &mut ev);
            assert_eq!(got, want, "event {i}");
        }
        assert_eq!(memo.memos.len(), 2, "the object and the leaf after it");
        let hits = memo.memos[0].total_hits;
        // Before the churn nearly every event hits; the churn sends the
        // memo to rest for MEMO_REST events; after that, hits again.
        assert!(
            (1800..7000).contains(&hits),
            "runs of one process hit, the churn does not: {hits}"
        );
    }

    /// Top-level leaves are memoized as one run, without the timestamp
    /// before them; a long C string is compared up to its NUL (what a
    /// ring buffer leaves after it differs from event to event), and
    /// every event prints what a printer with no memory prints.
    #[test]
    fn leaf_runs_skip_timestamps_and_compare_strings_up_to_their_nul() {
        let mut b = SchemaBuilder::new("ev", SourceKind::Single, 48);
        let ts = b
            .add_raw("timestamp_raw".into(), FieldKind::U64, 0, 8, None)
            .unwrap();
        b.field_mut(ts).tags.push("type:gadget_timestamp".into());
        b.add_raw("fd".into(), FieldKind::U32, 8, 4, None).unwrap();
        b.add_raw("fname".into(), FieldKind::CString, 16, 32, None)
            .unwrap();
        let s = b.build();
        let cap = Capture::default();
        let mut memo = JsonPrinter::new(&s, false, shared(cap.clone()));
        let mut ev = Event::new(&s);
        let n = 2000u32;
        for i in 0..n {
            let mut raw = vec![0u8; 48];
            raw[..8].copy_from_slice(&u64::from(i).to_ne_bytes());
            raw[8..12].copy_from_slice(&(3 + (i / 500)).to_ne_bytes());
            let name: &[u8] = if (i / 7) % 5 == 0 {
                b"/tmp/y"
            } else {
                b"/tmp/x"
            };
            raw[16..16 + name.len()].copy_from_slice(name);
            // Stale bytes after the NUL, different every event.
            for (k, x) in raw[16 + name.len() + 1..].iter_mut().enumerate() {
                *x = (i as u8).wrapping_add(k as u8) | 1;
            }
            ev.set_raw(&raw);
            cap.0.borrow_mut().clear();
            memo.on_event(&s, &mut ev);
            memo.flush().unwrap();
            let got = String::from_utf8(cap.0.borrow().clone()).unwrap();
            let fresh_cap = Capture::default();
            let mut fresh = JsonPrinter::new(&s, false, shared(fresh_cap.clone()));
            fresh.on_event(&s, &mut ev);
            fresh.flush().unwrap();
            let want = String::from_utf8(fresh_cap.0.borrow().clone()).unwrap();
            assert_eq!(got, want, "event {i}");
        }
        assert_eq!(memo.memos.len(), 1, "fd and fname, not the timestamp");
        let hits = memo.memos[0].total_hits;
        // Misses: the first event, and the name changes (2 per 35 events).
        assert!(hits > u64::from(n) * 8 / 10, "{hits} hits of {n}");
    }

    #[test]
    fn pretty_is_valid_json() {
        let out = print(true, &[sample(b"cat", 42, 0)]);
        assert!(
            out.contains("\n  \"proc\": {\n    \"comm\": \"cat\""),
            "{out}"
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["proc"]["pid"], 42);
    }

    #[test]
    fn arrays_print_as_one_json_array() {
        let s = schema();
        let cap = Capture::default();
        let mut p = JsonPrinter::new(&s, false, shared(cap.clone()));
        let mut evs: Vec<Event> = (0..2)
            .map(|i| {
                let mut e = Event::new(&s);
                e.set_raw(&sample(b"x", i, 0));
                e
            })
            .collect();
        p.on_array(&s, &mut evs);
        p.flush().unwrap();
        let out = String::from_utf8(cap.0.borrow().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[1]["proc"]["pid"], 1);
    }

    /// The elements of an array are distinct events, each at its first
    /// generations: a memo of owned fields must not take one element's
    /// text for the next (it did: every element of a snapshot printed the
    /// first one's values).
    #[test]
    fn array_elements_with_owned_fields_print_their_own_values() {
        let mut b = SchemaBuilder::new("ev", SourceKind::Array, 0);
        let pid = b.add_owned("pid".into(), FieldKind::U64, None).unwrap();
        let comm = b.add_owned("comm".into(), FieldKind::String, None).unwrap();
        let s = b.build();
        let cap = Capture::default();
        let mut p = JsonPrinter::new(&s, false, shared(cap.clone()));
        for round in 0..3u64 {
            let mut evs: Vec<Event> = (0..4u64)
                .map(|i| {
                    let mut e = Event::new(&s);
                    e.set_raw(&[]);
                    e.set_value(s.field(pid), Value::U64(round * 10 + i));
                    e.set_str(s.field(comm), &format!("c{i}"));
                    e
                })
                .collect();
            cap.0.borrow_mut().clear();
            p.on_array(&s, &mut evs);
            p.flush().unwrap();
            let out = String::from_utf8(cap.0.borrow().clone()).unwrap();
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            for i in 0..4u64 {
                assert_eq!(v[i as usize]["pid"], round * 10 + i, "{out}");
                assert_eq!(v[i as usize]["comm"], format!("c{i}"), "{out}");
            }
        }
    }

    #[test]
    fn strings_escape_control_characters() {
        let mut b = Vec::new();
        write_str(&mut b, b"\x01\t\x7f");
        assert_eq!(b, b"\"\\u0001\\t\\u007f\"");
    }

    #[test]
    fn strings_keep_utf8_and_replace_invalid_bytes() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain/path.txt", "\"plain/path.txt\""),
            ("héllo ✓".as_bytes(), "\"héllo ✓\""),
            (b"a\xffb", "\"a\u{fffd}b\""),
            (b"\xe2\x9c", "\"\u{fffd}\""),
            (b"q\"b\\s", "\"q\\\"b\\\\s\""),
            (b"", "\"\""),
        ];
        for (input, want) in cases {
            let mut b = Vec::new();
            write_str(&mut b, input);
            assert_eq!(String::from_utf8(b).unwrap(), *want, "{input:?}");
        }
        // Whatever the bytes, the output parses as JSON.
        for x in 0..=255u8 {
            let mut b = Vec::new();
            write_str(&mut b, &[b'a', x, b'z', x]);
            serde_json::from_slice::<String>(&b).unwrap_or_else(|e| panic!("{x}: {e}"));
        }
    }

    #[test]
    fn the_eight_byte_scan_finds_every_special_byte_at_every_position() {
        // write_str skips plain runs eight bytes at a time: a byte that
        // needs escaping must be found wherever it sits in a word.
        for x in 0..=255u8 {
            for pos in 0..20 {
                let mut input = b"abcdefghijklmnopqrst".to_vec();
                input[pos] = x;
                let mut b = Vec::new();
                write_str(&mut b, &input);
                let got: String = serde_json::from_slice(&b)
                    .unwrap_or_else(|e| panic!("byte {x} at {pos}: {e}: {b:?}"));
                assert_eq!(got, String::from_utf8_lossy(&input), "byte {x} at {pos}");
                let plain = (0x20..0x7f).contains(&x) && x != b'"' && x != b'\\';
                assert_eq!(
                    b.len() == input.len() + 2,
                    plain,
                    "byte {x} at {pos}: {b:?}"
                );
            }
        }
    }

    /// A C string is what `write_str` prints of its bytes up to the first
    /// NUL, wherever the NUL and the bytes to escape sit.
    #[test]
    fn c_strings_stop_at_the_first_nul_and_escape_what_comes_before() {
        for len in 0..26 {
            for nul in (0..len).chain([usize::MAX]) {
                for (special, at) in [(b'a', 0), (b'"', 3), (0x01, 9), (0xff, 17), (b'\\', 20)] {
                    let mut b: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    if at < len {
                        b[at] = special;
                    }
                    if nul < len {
                        b[nul] = 0;
                    }
                    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
                    let (mut fast, mut want) = (Vec::new(), Vec::new());
                    write_c_str(&mut fast, &b);
                    write_str(&mut want, &b[..end]);
                    assert_eq!(fast, want, "{b:?}");
                }
            }
        }
    }

    #[test]
    fn raw_fields_print_as_the_generic_decoder_does() {
        use FieldKind as K;
        let kinds = [
            K::Bool,
            K::U8,
            K::U16,
            K::U32,
            K::U64,
            K::I8,
            K::I16,
            K::I32,
            K::I64,
            K::F32,
            K::F64,
            K::CString,
            K::String,
            K::Bytes,
        ];
        let samples: [&[u8]; 6] = [
            &[],
            &[0xff],
            &[0x80, 0xff, 0x7f],
            &[1, 2, 3, 4, 5, 6, 7, 8],
            &[0xff; 8],
            b"ab\"c\0de",
        ];
        for kind in kinds {
            for b in samples {
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                write_raw(&mut fast, kind, b);
                write_value(&mut slow, crate::datasource::decode(kind, b));
                assert_eq!(fast, slow, "{kind:?} {b:?}");
            }
        }
    }

    #[test]
    fn numbers_of_every_length_print_like_display() {
        let mut cases = vec![0u64, u64::MAX, u64::MAX - 1];
        let mut p = 1u64;
        while let Some(next) = p.checked_mul(10) {
            cases.extend([p - 1, p, p + 1, p * 7 + 3]);
            p = next;
        }
        cases.extend([p - 1, p, p + 1]);
        for n in cases {
            let mut b = b"x".to_vec();
            push_u64(&mut b, n);
            assert_eq!(b, format!("x{n}").as_bytes(), "{n}");
        }
    }

    #[test]
    fn strings_and_numbers_match_the_reference_encoder() {
        let strings: &[&[u8]] = &[
            b"",
            b"plain ascii /etc/hostname",
            b"quote \" back \\ slash",
            "caf\u{e9} \u{1f600} \u{2028}".as_bytes(),
            b"bad \xff\xfe utf8 \xe2\x82",
            b"\xe2\x82\xac\x80tail",
            b"\x00\x1f\n",
        ];
        for s in strings {
            let mut b = Vec::new();
            write_str(&mut b, s);
            let want = serde_json::to_string(&String::from_utf8_lossy(s)).unwrap();
            let got: String = serde_json::from_slice(&b).unwrap();
            assert_eq!(got, serde_json::from_str::<String>(&want).unwrap(), "{s:?}");
        }
        for n in [0u64, 7, 10, 4_294_967_295, u64::MAX] {
            let mut b = Vec::new();
            write_value(&mut b, ValueRef::U64(n));
            assert_eq!(b, n.to_string().as_bytes());
        }
        for n in [0i64, -1, 42, i64::MIN, i64::MAX] {
            let mut b = Vec::new();
            write_value(&mut b, ValueRef::I64(n));
            assert_eq!(b, n.to_string().as_bytes());
        }
    }
}
