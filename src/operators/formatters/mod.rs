//! The formatters operator (priority 0, after the image operator that
//! declares the data sources): for each field whose type tag says what its
//! number means, add a readable string sibling.
//!
//! | tag (`type:`) | source kind | added field | example |
//! |---|---|---|---|
//! | `gadget_timestamp` | boot-time ns | `<name minus _raw>` | `2024-05-01T12:34:56.123456789Z` (UTC) |
//! | `gadget_errno` | errno (0 = success) | same | `ENOENT`, empty for 0 |
//! | `gadget_signal` | signal number | same | `SIGKILL` |
//! | `gadget_syscall` | syscall number (x86_64) | same | `SYS_OPENAT` |
//! | `gadget_file_flags` | `open(2)` flags | same | `O_RDONLY\|O_CLOEXEC` |
//! | `gadget_file_mode` | mode bits | same | `-rw-r--r--` |
//! | `gadget_bytes` | a byte count | same | `4.2 MB` (powers of 1000, as upstream) |
//! | `gadget_duration` | nanoseconds | same | `150.00ms`, `3.25s` |
//! | `gadget_l3endpoint_t` | struct `{addr_raw, version}` | `<struct>.addr` | `10.0.0.1`, `::1` |
//! | `gadget_l4endpoint_t` | struct `{addr_raw, port, proto_raw, version}` | `<struct>.addr`, `.proto`, `.endpoint` | `10.0.0.1:443`, `[::1]:443`, `TCP` |
//!
//! Naming follows upstream: the annotation `formatters.<kind>.target`
//! (kinds `timestamp`, `errno`, `signal`, `syscall`, `file_flags`,
//! `file_mode`, `bytes`, `duration`) names the new field, else it is the source's name minus
//! `_raw`; a source with neither is left alone, as is one whose target
//! already exists. The new field lives under the same parent and takes the
//! source's place in the display order; the source gets `columns.hidden`
//! (tables only; JSON keeps both) unless `gadget.yaml` says otherwise. For
//! an l4 endpoint the table shows one column, `endpoint`, headed like the
//! struct; JSON shows `addr`, `port`, `proto` and `version` (the raw
//! address union and `endpoint` are left out of JSON, as upstream does).
//!
//! Per event: one integer read and one formatting into the field's reused
//! `String` per converted field; no allocation once the strings have grown,
//! no system call. The boot-time offset (`CLOCK_REALTIME - CLOCK_BOOTTIME`)
//! is read at set-up and refreshed on the flush timer, so a clock step is
//! followed within a second.

mod text;

use std::time::{Duration, Instant};

use crate::datasource::{
    Event, FieldId, FieldKind, Location, Schema, SchemaBuilder, SchemaError, ValueRef, copy,
};
use crate::pipeline::{
    Flow, Handler, HandlerError, Instance, Operator, OperatorError, Priority, Setup, priority,
};

const NAME: &str = "formatters";

/// How often the flush timer re-reads the wall-clock offset.
const OFFSET_REFRESH: Duration = Duration::from_secs(1);

/// The formatters operator. It has no parameters.
#[derive(Default)]
pub struct Formatters {
    /// A fixed `CLOCK_REALTIME - CLOCK_BOOTTIME`, for tests; `None` reads
    /// the clocks.
    fixed_offset_ns: Option<i128>,
}

impl Formatters {
    /// The formatters, with nothing cached yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use `offset_ns` as wall-clock minus boot time instead of the clocks.
    pub fn with_boot_offset(offset_ns: i128) -> Self {
        Self {
            fixed_offset_ns: Some(offset_ns),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scalar {
    Timestamp,
    Errno,
    Signal,
    Syscall,
    FileFlags,
    FileMode,
    Bytes,
    Duration,
}

/// `(type tag, kind, annotation name)`.
const SCALARS: &[(&str, Scalar, &str)] = &[
    ("type:gadget_timestamp", Scalar::Timestamp, "timestamp"),
    ("type:gadget_errno", Scalar::Errno, "errno"),
    ("type:gadget_signal", Scalar::Signal, "signal"),
    ("type:gadget_syscall", Scalar::Syscall, "syscall"),
    ("type:gadget_file_flags", Scalar::FileFlags, "file_flags"),
    ("type:gadget_file_mode", Scalar::FileMode, "file_mode"),
    ("type:gadget_bytes", Scalar::Bytes, "bytes"),
    ("type:gadget_duration", Scalar::Duration, "duration"),
];

/// Column defaults of the added fields (upstream's templates); `gadget.yaml`
/// wins over them.
fn scalar_defaults(kind: Scalar) -> &'static [(&'static str, &'static str)] {
    match kind {
        Scalar::Timestamp => &[
            ("columns.width", "35"),
            ("columns.hidden", "true"),
            ("description", "Wall-clock time (RFC 3339, UTC)"),
        ],
        Scalar::Errno => &[
            ("columns.width", "12"),
            ("description", "Error name (errno), empty on success"),
        ],
        Scalar::Signal => &[("columns.width", "10"), ("description", "Signal name")],
        Scalar::Syscall => &[
            ("columns.width", "18"),
            ("columns.maxwidth", "28"),
            ("description", "System call name"),
        ],
        Scalar::FileFlags => &[("columns.width", "24"), ("description", "Open flags")],
        Scalar::FileMode => &[("columns.width", "10"), ("description", "File mode")],
        // Upstream's `bytes` and `duration` column templates.
        Scalar::Bytes => &[("columns.width", "10"), ("columns.alignment", "right")],
        Scalar::Duration => &[("columns.width", "20"), ("columns.alignment", "right")],
    }
}

/// One field to fill, with everything resolved at set-up.
#[derive(Debug)]
enum Conv {
    /// An enum member: its value's name, or for a bit set (`*_set` enum
    /// types) the names of the bits set, joined by `sep`.
    Enum {
        src: FieldId,
        dst: FieldId,
        /// `(value, name)`, sorted by value.
        names: Vec<(i128, String)>,
        bitfield: bool,
        sep: String,
    },
    Scalar {
        kind: Scalar,
        src: FieldId,
        dst: FieldId,
    },
    L3 {
        /// Byte offset of the 16-byte address union in the raw sample.
        raw: usize,
        version: FieldId,
        addr: FieldId,
    },
    L4 {
        raw: usize,
        version: FieldId,
        port: FieldId,
        addr: FieldId,
        endpoint: FieldId,
        /// `(proto_raw, proto)`.
        proto: Option<(FieldId, FieldId)>,
    },
}

impl Operator for Formatters {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> Priority {
        priority::FORMATTERS
    }

    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let mut plans = Vec::new();
        for id in setup.source_ids() {
            let convs = plan(setup.schema_mut(id))?;
            if !convs.is_empty() {
                plans.push((id, convs));
            }
        }
        if plans.is_empty() {
            return Ok(None);
        }
        for (id, convs) in plans {
            let offset = self.fixed_offset_ns.unwrap_or_else(boot_offset_ns);
            setup.subscribe(
                id,
                priority::FORMATTERS,
                NAME,
                Box::new(Formatting {
                    last: convs.iter().map(|_| Last::default()).collect(),
                    convs,
                    offset,
                    refresh: self.fixed_offset_ns.is_none().then(Instant::now),
                    seconds: text::SecondCache::default(),
                }),
            );
        }
        Ok(Some(Box::new(Active)))
    }
}

/// Nothing to start or stop: the work is in the handlers.
struct Active;
impl Instance for Active {}

/// The name of the field that renders `src`: its annotation, else its
/// name minus `_raw`.
fn target(b: &SchemaBuilder, src: FieldId, annotation: &str) -> Option<String> {
    let f = b.schema().field(src);
    if let Some(t) = f.annotation(&format!("formatters.{annotation}.target")) {
        return Some(t.to_owned());
    }
    f.short_name().strip_suffix("_raw").map(str::to_owned)
}

/// Add a string sibling of `of` named `short`; `None` (logged) when a field
/// of that name exists already.
fn add_sibling(
    b: &mut SchemaBuilder,
    short: &str,
    of: FieldId,
) -> Result<Option<FieldId>, SchemaError> {
    match b.add_owned_sibling(short, FieldKind::String, of) {
        Ok(id) => Ok(Some(id)),
        Err(SchemaError::DuplicateField { field, .. }) => {
            log::debug!("formatters: {field} exists already; not rendering it");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn defaults(b: &mut SchemaBuilder, id: FieldId, anns: &[(&str, &str)]) {
    let f = b.field_mut(id);
    for (k, v) in anns {
        f.default_annotation(k, v);
    }
}

/// Hide `id` and everything under it from tables.
fn hide_subtree(b: &mut SchemaBuilder, id: FieldId) {
    b.field_mut(id).default_annotation("columns.hidden", "true");
    let children: Vec<FieldId> = b.schema().children(Some(id)).collect();
    for c in children {
        hide_subtree(b, c);
    }
}

/// Annotations the eBPF operator puts on enum members (see
/// `bpf::schema`): the `NAME=VALUE;...` table, and the bit-set marker.
const ENUM_ANNOTATION: &str = "ebpf.formatter.enum";
const BITFIELD_ANNOTATION: &str = "ebpf.formatter.bitfield";

fn parse_enum_table(table: &str) -> Vec<(i128, String)> {
    table
        .split(';')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((v.trim().parse().ok()?, k.trim().to_owned()))
        })
        .collect()
}

/// Render an enum value (or bit set) into `out`, reusing its buffer.
fn enum_text(out: &mut String, v: i128, names: &[(i128, String)], bitfield: bool, sep: &str) {
    use std::fmt::Write as _;
    out.clear();
    if !bitfield {
        match names.binary_search_by_key(&v, |(n, _)| *n) {
            Ok(i) => copy::push_str(out, &names[i].1),
            Err(_) => {
                let _ = write!(out, "{v}");
            }
        }
        return;
    }
    let mut rest = v;
    for (bit, name) in names {
        if *bit != 0 && v & bit == *bit {
            if !out.is_empty() {
                out.push_str(sep);
            }
            copy::push_str(out, name);
            rest &= !bit;
        }
    }
    if rest != 0 {
        if !out.is_empty() {
            out.push_str(sep);
        }
        let _ = write!(out, "{rest:#x}");
    }
}

/// Decide what to render in one data source and declare the new fields.
fn plan(b: &mut SchemaBuilder) -> Result<Vec<Conv>, SchemaError> {
    let mut convs = Vec::new();
    let ids: Vec<FieldId> = b.schema().ids().collect();
    for src in ids {
        let f = b.schema().field(src);
        if f.kind.is_numeric()
            && let Some(table) = f.annotation(ENUM_ANNOTATION)
        {
            let mut names = parse_enum_table(table);
            names.sort_by_key(|(v, _)| *v);
            let bitfield = f.annotation(BITFIELD_ANNOTATION) == Some("true");
            let sep = f
                .annotation("ebpf.formatter.bitfield.separator")
                .unwrap_or("|")
                .to_owned();
            let Some(name) = target(b, src, "enum") else {
                continue;
            };
            let Some(dst) = add_sibling(b, &name, src)? else {
                continue;
            };
            defaults(
                b,
                dst,
                &[("columns.width", if bitfield { "24" } else { "12" })],
            );
            b.field_mut(src)
                .default_annotation("columns.hidden", "true");
            convs.push(Conv::Enum {
                src,
                dst,
                names,
                bitfield,
                sep,
            });
            continue;
        }
        if f.kind.is_numeric() {
            let Some(&(_, kind, ann)) = SCALARS.iter().find(|(tag, ..)| f.has_tag(tag)) else {
                continue;
            };
            let Some(name) = target(b, src, ann) else {
                log::debug!("formatters: {} has no _raw suffix and no target", f.name);
                continue;
            };
            let Some(dst) = add_sibling(b, &name, src)? else {
                continue;
            };
            defaults(b, dst, scalar_defaults(kind));
            b.field_mut(src)
                .default_annotation("columns.hidden", "true");
            convs.push(Conv::Scalar { kind, src, dst });
        } else if f.kind == FieldKind::Struct {
            let l4 = f.has_tag("type:gadget_l4endpoint_t");
            if (l4 || f.has_tag("type:gadget_l3endpoint_t"))
                && let Some(c) = plan_endpoint(b, src, l4)?
            {
                convs.push(c);
            }
        }
    }
    Ok(convs)
}

fn plan_endpoint(
    b: &mut SchemaBuilder,
    ep: FieldId,
    l4: bool,
) -> Result<Option<Conv>, SchemaError> {
    let s = b.schema();
    let child = |name: &str| {
        s.children(Some(ep))
            .find(|&c| s.field(c).short_name() == name)
    };
    let addr_raw = s
        .children(Some(ep))
        .find(|&c| s.field(c).has_tag("type:gadget_ip_addr_t"))
        .or_else(|| child("addr_raw"));
    let (Some(addr_raw), Some(version)) = (addr_raw, child("version")) else {
        log::debug!(
            "formatters: endpoint {} lacks addr_raw or version",
            s.field(ep).name
        );
        return Ok(None);
    };
    let raw = match s.field(addr_raw).loc {
        Location::Raw { offset, size } if size >= 16 => offset as usize,
        _ => return Ok(None),
    };
    let port = child("port");
    let proto_raw = child("proto_raw");
    let header = s
        .field(ep)
        .annotation("columns.alias")
        .unwrap_or(&s.field(ep).name)
        .to_owned();
    if l4 && port.is_none() {
        return Ok(None);
    }
    let addr_name = s
        .field(addr_raw)
        .short_name()
        .strip_suffix("_raw")
        .unwrap_or("addr")
        .to_owned();
    let Some(addr) = add_sibling(b, &addr_name, addr_raw)? else {
        return Ok(None);
    };
    b.field_mut(addr)
        .default_annotation("description", "IP address");
    hide_subtree(b, addr_raw);
    b.field_mut(addr_raw)
        .default_annotation("json.skip", "true");
    b.field_mut(version)
        .default_annotation("columns.hidden", "true");
    let Some(port) = port.filter(|_| l4) else {
        // l3: the address is the column, headed like the struct.
        defaults(
            b,
            addr,
            &[
                ("columns.alias", &header),
                ("columns.width", "16"),
                ("columns.maxwidth", "39"),
            ],
        );
        return Ok(Some(Conv::L3 { raw, version, addr }));
    };
    b.field_mut(addr)
        .default_annotation("columns.hidden", "true");
    b.field_mut(port)
        .default_annotation("columns.hidden", "true");
    let proto = match proto_raw {
        Some(pr) => match add_sibling(b, "proto", pr)? {
            Some(p) => {
                defaults(
                    b,
                    p,
                    &[("columns.hidden", "true"), ("description", "IP protocol")],
                );
                b.field_mut(pr).default_annotation("columns.hidden", "true");
                Some((pr, p))
            }
            None => None,
        },
        None => None,
    };
    let Some(endpoint) = add_sibling(b, "endpoint", addr_raw)? else {
        return Ok(None);
    };
    defaults(
        b,
        endpoint,
        &[
            ("columns.alias", &header),
            ("columns.minwidth", "22"),
            ("columns.width", "40"),
            ("columns.maxwidth", "52"),
            ("json.skip", "true"),
            ("description", "Address and port"),
        ],
    );
    Ok(Some(Conv::L4 {
        raw,
        version,
        port,
        addr,
        endpoint,
        proto,
    }))
}

/// `CLOCK_REALTIME - CLOCK_BOOTTIME` in nanoseconds: add it to a
/// `bpf_ktime_get_boot_ns()` value to get wall-clock time.
pub fn boot_offset_ns() -> i128 {
    fn now(clock: libc::clockid_t) -> i128 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec, which we own.
        unsafe { libc::clock_gettime(clock, &raw mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    }
    // Realtime read on both sides of boottime: their mean is the realtime
    // at the moment boottime was read, to within a few nanoseconds.
    let before = now(libc::CLOCK_REALTIME);
    let boot = now(libc::CLOCK_BOOTTIME);
    let after = now(libc::CLOCK_REALTIME);
    (before + after) / 2 - boot
}

struct Formatting {
    convs: Vec<Conv>,
    /// Per conversion: the last value formatted and its text.
    last: Vec<Last>,
    offset: i128,
    /// When the offset was last read; `None` when it is fixed.
    refresh: Option<Instant>,
    seconds: text::SecondCache,
}

/// The text of the last value a conversion formatted. Consecutive events
/// mostly carry the same flags, modes, errors and enum values (one process
/// doing the same thing): copying the previous text is cheaper than
/// formatting it again (flags: ~230 instructions, a copy ~30).
#[derive(Default)]
struct Last {
    value: Option<i128>,
    text: String,
}

impl Last {
    /// Set `dst` to the text of `value`: kept from the previous event when
    /// that had the same value, else the remembered text, else what
    /// `format` writes (then remembered).
    fn put(
        &mut self,
        ev: &mut Event,
        dst: &crate::datasource::FieldDef,
        value: i128,
        format: impl FnOnce(&mut String),
    ) {
        if self.value == Some(value) && ev.keep(dst) {
            return;
        }
        let Some(out) = ev.str_buf(dst) else {
            return;
        };
        if self.value == Some(value) {
            copy::push_str(out, &self.text);
            return;
        }
        format(out);
        self.value = Some(value);
        self.text.clear();
        copy::push_str(&mut self.text, out);
    }
}

fn unsigned(v: ValueRef<'_>) -> Option<u64> {
    match v {
        ValueRef::U64(n) => Some(n),
        // Keep the bit pattern: flags and modes are bit sets.
        ValueRef::I64(n) => Some(n as u64),
        _ => None,
    }
}

fn raw16(ev: &Event, at: usize) -> [u8; 16] {
    let mut a = [0; 16];
    if let Some(b) = ev.raw().get(at..at + 16) {
        a.copy_from_slice(b);
    }
    a
}

/// Render one scalar field.
fn scalar(
    schema: &Schema,
    ev: &mut Event,
    (kind, src, dst): (Scalar, FieldId, FieldId),
    offset: i128,
    seconds: &mut text::SecondCache,
    last: &mut Last,
) {
    let (n, negative) = match ev.get(schema.field(src)) {
        ValueRef::U64(n) => (n, None),
        // Keep the bit pattern: flags and modes are bit sets.
        ValueRef::I64(n) => (n as u64, Some(n.unsigned_abs())),
        _ => return,
    };
    // Timestamps differ from event to event, and have a cache of their own.
    if kind == Scalar::Timestamp {
        if let Some(out) = ev.str_buf(schema.field(dst)) {
            text::timestamp(out, n, offset, seconds);
        }
        return;
    }
    let key = negative.map_or(i128::from(n), |m| -i128::from(m));
    last.put(ev, schema.field(dst), key, |out| match kind {
        Scalar::Timestamp => {}
        // A negative errno (-ENOENT) names the same error.
        Scalar::Errno => text::errno(out, negative.unwrap_or(n)),
        Scalar::Signal => text::signal(out, n),
        Scalar::Syscall => text::syscall(out, n),
        // Flags and modes are 32-bit; a wider field keeps its low bits.
        Scalar::FileFlags => text::file_flags(out, n as u32),
        Scalar::FileMode => text::file_mode(out, n as u32),
        Scalar::Bytes => text::bytes(out, n),
        Scalar::Duration => text::duration(out, n),
    });
}

impl Handler for Formatting {
    fn on_event(&mut self, schema: &Schema, ev: &mut Event) -> Flow {
        for (c, last) in self.convs.iter().zip(&mut self.last) {
            match *c {
                Conv::Scalar { kind, src, dst } => {
                    scalar(
                        schema,
                        ev,
                        (kind, src, dst),
                        self.offset,
                        &mut self.seconds,
                        last,
                    );
                }
                Conv::Enum {
                    src,
                    dst,
                    ref names,
                    bitfield,
                    ref sep,
                } => {
                    let v: i128 = match ev.get(schema.field(src)) {
                        ValueRef::U64(v) => i128::from(v),
                        ValueRef::I64(v) => i128::from(v),
                        _ => continue,
                    };
                    last.put(ev, schema.field(dst), v, |out| {
                        enum_text(out, v, names, bitfield, sep)
                    });
                }
                Conv::L3 { raw, version, addr } => {
                    let a = raw16(ev, raw);
                    let v = unsigned(ev.get(schema.field(version))).unwrap_or(0);
                    if let Some(out) = ev.str_buf(schema.field(addr)) {
                        text::ip(out, &a, v);
                    }
                }
                Conv::L4 {
                    raw,
                    version,
                    port,
                    addr,
                    endpoint,
                    proto,
                } => {
                    let a = raw16(ev, raw);
                    let v = unsigned(ev.get(schema.field(version))).unwrap_or(0);
                    let p = unsigned(ev.get(schema.field(port))).unwrap_or(0);
                    if let Some(out) = ev.str_buf(schema.field(addr)) {
                        text::ip(out, &a, v);
                    }
                    if let Some(out) = ev.str_buf(schema.field(endpoint)) {
                        text::endpoint(out, &a, v, p);
                    }
                    if let Some((src, dst)) = proto {
                        let n = unsigned(ev.get(schema.field(src))).unwrap_or(0);
                        if let Some(out) = ev.str_buf(schema.field(dst)) {
                            text::protocol(out, n);
                        }
                    }
                }
            }
        }
        Flow::Continue
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        if let Some(at) = self.refresh
            && at.elapsed() >= OFFSET_REFRESH
        {
            self.offset = boot_offset_ns();
            self.refresh = Some(Instant::now());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
