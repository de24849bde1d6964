//! What the host functions see: the guest's handles, the data sources as
//! the guest knows them, the event of the callback in progress, packets the
//! guest builds, and the helpers that read and write guest memory with the
//! `length << 32 | pointer` convention.
//!
//! Budget: events the guest creates live in ig's memory, outside the
//! guest's 16 MiB, until they are delivered or released: packets being
//! built, elements made by `dataArrayNew`, packets emitted and waiting for
//! the next flush tick. Each is charged to [`HostState::held_bytes`] (its
//! size when made, plus every buffer the guest writes into it) and
//! refunded when it leaves; past [`MAX_HELD_BYTES`] new packets and
//! elements are refused (handle 0, counted and reported like ring-buffer
//! loss). Buffers written into the pipeline's own events during one
//! callback are limited to the same amount.
//!
//! Kernel objects in the guest's hands (maps, perf readers) live in side
//! tables keyed by their handle: releasing the handle closes them, and
//! the rings of perf readers count against [`MAX_PERF_BYTES`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use wasmtime::{Caller, Extern, Memory, StoreLimits};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::bpf::maps::MapFd;
use crate::bpf::mntns_filter::MntnsFilter;
use crate::bpf::perf::PerfReader;
use crate::bpf::shared::SharedGadget;
use crate::datasource::{Event, FieldId, FieldKind, Schema, SourceKind};

/// Upstream's limit on live handles.
const MAX_HANDLES: usize = 4096;

/// What ig holds for the guest between flush ticks, at most: the same as
/// the guest's own memory (upstream's 16 MiB).
pub const MAX_HELD_BYTES: usize = 16 << 20;

/// Perf ring memory (every CPU's ring of every reader) a guest may map:
/// traceloop's 256 KiB per CPU and container fits for hundreds of
/// containers on a small host.
pub const MAX_PERF_BYTES: usize = 256 << 20;

/// What an empty packet array costs (the vector and its map entry).
const ARRAY_PACKET_BYTES: usize = 64;

/// Warnings about the guest's calls shown per run: a guest misusing the
/// API in its event callback would otherwise write one line per event.
const MAX_WARNINGS: u32 = 100;

/// A data source as the guest sees it during set-up. Field index = FieldId.
pub(super) struct DsMirror {
    pub name: String,
    pub kind: SourceKind,
    pub fields: Vec<(String, FieldKind)>,
    /// Forwarded to the operators after the guest (`dataSourceUnreference`
    /// clears it).
    pub referenced: bool,
}

/// What the guest asked for during `gadgetInit`, applied to the real
/// `Setup` afterwards in this order (so predicted ids hold).
pub(super) enum SetupOp {
    NewSource {
        name: String,
        kind: SourceKind,
    },
    AddField {
        src: usize,
        name: String,
        kind: FieldKind,
    },
    AddTag {
        src: usize,
        field: FieldId,
        tag: String,
    },
    Subscribe {
        src: usize,
        ty: SubType,
        prio: crate::pipeline::Priority,
        cb: u64,
        ds_handle: u32,
    },
    Unreference {
        src: usize,
    },
}

/// A subscription made in `gadgetPreStart` or `gadgetStart`, after the
/// handler chains were fixed: called by the operator's handler for late
/// subscriptions in that source's chain (`LateSubscriptions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LateSub {
    pub src: usize,
    pub ty: SubType,
    pub prio: crate::pipeline::Priority,
    pub cb: u64,
    pub ds_handle: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SubType {
    Data,
    Array,
    Packet,
}

/// The event a data handle points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DataRef {
    /// The event of the callback in progress.
    Current,
    /// Element `i` of the array of the callback in progress.
    CurrentElem(usize),
    /// A single packet the guest built.
    Packet(u32),
    /// Element `i` of a packet array.
    PacketElem(u32, usize),
    /// An element made by `dataArrayNew`, not yet appended.
    Loose(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ArrayRef {
    Current,
    Packet(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Handle {
    Source(usize),
    Field(usize, FieldId),
    Data(usize, DataRef),
    Array(usize, ArrayRef),
    /// A packet: usable as Data (single) or DataArray (array).
    Packet(usize, u32),
    /// A BPF map ([`HostState::maps`]).
    Map,
    /// A perf reader ([`HostState::readers`]).
    Perf,
}

/// A map in the guest's hands.
pub(super) struct GuestMap {
    pub map: Arc<MapFd>,
    /// Made by `newMap` (only those can be `mapRelease`d, as upstream).
    pub created: bool,
}

/// A perf reader in the guest's hands, with the ring memory it maps.
pub(super) struct GuestReader {
    pub reader: PerfReader,
    pub bytes: usize,
}

pub(super) enum Body {
    Single(Event),
    Array(Vec<Event>),
}

/// A packet the guest builds or has emitted, with what it is charged.
pub(super) struct Packet {
    pub src: usize,
    pub body: Body,
    pub charge: usize,
}

/// An element made by `dataArrayNew`, not yet appended or released.
pub(super) struct Loose {
    pub event: Event,
    pub charge: usize,
}

pub(super) struct HostState {
    pub wasi: WasiP1Ctx,
    pub limits: StoreLimits,
    /// The module's name in messages (the image reference).
    pub module: String,
    handles: HashMap<u32, Handle>,
    last_handle: u32,
    pub sources: Vec<DsMirror>,
    pub ops: Vec<SetupOp>,
    /// Set once `gadgetInit` returned: no more fields, sources or
    /// subscriptions in the handler chains.
    pub frozen: bool,
    /// Sources whose chains have a handler for late subscriptions (all of
    /// them when the module exports `gadgetPreStart` or `gadgetStart`).
    pub late_sources: usize,
    /// While `gadgetPreStart` or `gadgetStart` runs: subscriptions are
    /// taken as late ones.
    pub accepting_late: bool,
    /// Late subscriptions, in the order of their priorities (stable), and
    /// a counter that advances at every change.
    pub late: Vec<LateSub>,
    pub late_version: u64,
    /// The frozen schemas, once the run started (index = SourceId).
    pub schemas: Vec<Arc<Schema>>,
    pub current: Option<Event>,
    pub current_array: Option<Vec<Event>>,
    pub packets: HashMap<u32, Packet>,
    pub loose: HashMap<u32, Loose>,
    next_packet: u32,
    /// Emitted packets waiting for the next flush tick.
    pub emitted: Vec<Packet>,
    /// Bytes charged for packets, loose elements and `emitted`.
    pub held_bytes: usize,
    /// Packets and elements refused for the budget since the last tick.
    pub refused: u64,
    /// Bytes the guest added to the pipeline's events in the callback in
    /// progress.
    pub callback_growth: usize,
    pub params: BTreeMap<String, String>,
    warned: BTreeSet<&'static str>,
    warnings: std::cell::Cell<u32>,
    pub has_callback: bool,
    /// The guest's stderr budget, shared with its WASI descriptor 2.
    pub stderr: super::stderr::GuestStderr,
    /// What the eBPF operator shares with the guest.
    pub gadget: SharedGadget,
    /// The container filter (`shouldDiscardMntnsID`).
    pub mntns: MntnsFilter,
    /// Kernel objects by handle.
    pub maps: HashMap<u32, GuestMap>,
    pub readers: HashMap<u32, GuestReader>,
    /// Ring bytes mapped by `readers`.
    pub perf_bytes: usize,
}

impl HostState {
    pub fn new(
        wasi: WasiP1Ctx,
        limits: StoreLimits,
        module: String,
        stderr: super::stderr::GuestStderr,
    ) -> Self {
        Self {
            wasi,
            limits,
            module,
            stderr,
            handles: HashMap::new(),
            last_handle: 0,
            sources: Vec::new(),
            ops: Vec::new(),
            frozen: false,
            late_sources: 0,
            accepting_late: false,
            late: Vec::new(),
            late_version: 0,
            schemas: Vec::new(),
            current: None,
            current_array: None,
            packets: HashMap::new(),
            loose: HashMap::new(),
            next_packet: 0,
            emitted: Vec::new(),
            held_bytes: 0,
            refused: 0,
            callback_growth: 0,
            params: BTreeMap::new(),
            warned: BTreeSet::new(),
            warnings: std::cell::Cell::new(0),
            has_callback: false,
            gadget: SharedGadget::default(),
            mntns: MntnsFilter::default(),
            maps: HashMap::new(),
            readers: HashMap::new(),
            perf_bytes: 0,
        }
    }

    /// A new handle, 0 when the guest holds too many.
    pub fn add_handle(&mut self, h: Handle) -> u32 {
        if self.handles.len() >= MAX_HANDLES {
            self.warn(format_args!("too many open handles ({MAX_HANDLES})"));
            return 0;
        }
        let mut id = self.last_handle;
        loop {
            id = id.wrapping_add(1);
            if id != 0 && !self.handles.contains_key(&id) {
                break;
            }
        }
        self.handles.insert(id, h);
        self.last_handle = id;
        id
    }

    pub fn handle(&self, id: u32) -> Option<Handle> {
        let h = self.handles.get(&id).copied();
        if h.is_none() {
            self.warn(format_args!("handle {id} not found"));
        }
        h
    }

    /// Forget handle `id`; a map or perf reader behind it is closed.
    pub fn remove_handle(&mut self, id: u32) -> Option<Handle> {
        let h = self.handles.remove(&id);
        match h {
            Some(Handle::Map) => {
                self.maps.remove(&id);
            }
            Some(Handle::Perf) => {
                if let Some(r) = self.readers.remove(&id) {
                    self.perf_bytes -= r.bytes;
                }
            }
            _ => {}
        }
        h
    }

    /// Close every map and perf reader the guest holds (the run is over).
    pub fn close_kernel_objects(&mut self) {
        let ids: Vec<u32> = self
            .maps
            .keys()
            .chain(self.readers.keys())
            .copied()
            .collect();
        for id in ids {
            self.remove_handle(id);
        }
    }

    /// The map behind handle `id`.
    pub fn map(&self, id: u32, func: &str) -> Option<&GuestMap> {
        let found = self.maps.get(&id);
        if found.is_none() {
            match self.handles.get(&id) {
                None => self.warn(format_args!("{func}: handle {id} not found")),
                Some(h) => self.warn(format_args!("{func}: handle {id} is a {h:?}, not a map")),
            }
        }
        found
    }

    pub fn source(&self, id: u32) -> Option<usize> {
        match self.handle(id)? {
            Handle::Source(s) => Some(s),
            other => {
                self.warn(format_args!(
                    "handle {id} is a {other:?}, not a data source"
                ));
                None
            }
        }
    }

    pub fn new_packet_id(&mut self) -> u32 {
        self.next_packet = self.next_packet.wrapping_add(1);
        self.next_packet
    }

    /// A guest-caused problem, logged at warn like upstream does, up to
    /// [`MAX_WARNINGS`] per run.
    pub fn warn(&self, msg: std::fmt::Arguments<'_>) {
        let n = self.warnings.get();
        if n < MAX_WARNINGS {
            log::warn!("wasm module {}: {msg}", self.module);
        } else if n == MAX_WARNINGS {
            log::warn!(
                "wasm module {}: more than {MAX_WARNINGS} warnings; the rest are not shown",
                self.module
            );
        }
        self.warnings.set(n.saturating_add(1));
    }

    /// Warn about `what` once per run (hot-path problems).
    pub fn warn_once(&mut self, what: &'static str, msg: std::fmt::Arguments<'_>) {
        if self.warned.insert(what) {
            self.warn(msg);
        }
    }

    /// The event behind a data reference.
    pub fn event_mut(&mut self, d: DataRef) -> Option<&mut Event> {
        match d {
            DataRef::Current => self.current.as_mut(),
            DataRef::CurrentElem(i) => self.current_array.as_mut()?.get_mut(i),
            DataRef::Packet(p) => match &mut self.packets.get_mut(&p)?.body {
                Body::Single(e) => Some(e),
                Body::Array(_) => None,
            },
            DataRef::PacketElem(p, i) => match &mut self.packets.get_mut(&p)?.body {
                Body::Array(v) => v.get_mut(i),
                Body::Single(_) => None,
            },
            DataRef::Loose(id) => self.loose.get_mut(&id).map(|l| &mut l.event),
        }
    }

    pub fn array_mut(&mut self, a: ArrayRef) -> Option<&mut Vec<Event>> {
        match a {
            ArrayRef::Current => self.current_array.as_mut(),
            ArrayRef::Packet(p) => match &mut self.packets.get_mut(&p)?.body {
                Body::Array(v) => Some(v),
                Body::Single(_) => None,
            },
        }
    }

    /// Resolve a handle used as Data: (source, event reference).
    pub fn data(&self, id: u32) -> Option<(usize, DataRef)> {
        match self.handle(id)? {
            Handle::Data(s, d) => Some((s, d)),
            Handle::Packet(s, p) => match self.packets.get(&p).map(|p| &p.body) {
                Some(Body::Single(_)) => Some((s, DataRef::Packet(p))),
                _ => None,
            },
            other => {
                self.warn(format_args!("handle {id} is a {other:?}, not data"));
                None
            }
        }
    }

    pub fn array(&self, id: u32) -> Option<(usize, ArrayRef)> {
        match self.handle(id)? {
            Handle::Array(s, a) => Some((s, a)),
            Handle::Packet(s, p) => match self.packets.get(&p).map(|p| &p.body) {
                Some(Body::Array(_)) => Some((s, ArrayRef::Packet(p))),
                _ => None,
            },
            other => {
                self.warn(format_args!("handle {id} is a {other:?}, not an array"));
                None
            }
        }
    }

    /// A fresh event shaped for source `src`, once the schemas are frozen,
    /// with what it costs.
    pub fn new_event(&self, src: usize) -> Option<(Event, usize)> {
        let s = self.schemas.get(src)?;
        let ev = Event::new(s);
        let cost = std::mem::size_of::<Event>()
            + ev.raw().len()
            + s.owned_slots() * std::mem::size_of::<crate::datasource::Value>();
        Some((ev, cost))
    }

    /// Take `bytes` from the budget; `false` (with one warning per run)
    /// when it is spent.
    pub fn charge(&mut self, bytes: usize) -> bool {
        if self.held_bytes.saturating_add(bytes) > MAX_HELD_BYTES {
            self.warn_once(
                "budget",
                format_args!(
                    "the guest holds more than {} MiB of events not yet delivered; new packets are refused until they leave",
                    MAX_HELD_BYTES >> 20
                ),
            );
            return false;
        }
        self.held_bytes += bytes;
        true
    }

    pub fn refund(&mut self, bytes: usize) {
        self.held_bytes = self.held_bytes.saturating_sub(bytes);
    }

    /// A new packet (single or array) of source `src`: its handle, 0 when
    /// the schemas are not frozen yet, the budget is spent (counted) or
    /// the guest holds too many handles.
    pub fn new_packet(&mut self, src: usize, array: bool) -> u32 {
        let Some((ev, cost)) = self.new_event(src) else {
            self.warn(format_args!(
                "packets can be created once the gadget runs (in a callback), not before"
            ));
            return 0;
        };
        let (body, charge) = if array {
            (Body::Array(Vec::new()), ARRAY_PACKET_BYTES)
        } else {
            (Body::Single(ev), cost)
        };
        if !self.charge(charge) {
            self.refused += 1;
            return 0;
        }
        let id = self.new_packet_id();
        self.packets.insert(id, Packet { src, body, charge });
        let h = self.add_handle(Handle::Packet(src, id));
        if h == 0 {
            self.drop_packet(id);
        }
        h
    }

    /// Forget packet `id` (released, or never handed out).
    pub fn drop_packet(&mut self, id: u32) {
        if let Some(p) = self.packets.remove(&id) {
            self.refund(p.charge);
        }
    }

    /// Forget loose element `id`.
    pub fn drop_loose(&mut self, id: u32) {
        if let Some(l) = self.loose.remove(&id) {
            self.refund(l.charge);
        }
    }

    /// Account for `bytes` the guest writes into the event behind `d`:
    /// charged to the packet or element that holds it, or counted against
    /// the callback's growth of the pipeline's event. `false` when over
    /// the budget.
    pub fn grow(&mut self, d: DataRef, bytes: usize) -> bool {
        let owner = match d {
            DataRef::Current | DataRef::CurrentElem(_) => {
                if self.callback_growth.saturating_add(bytes) > MAX_HELD_BYTES {
                    self.warn_once(
                        "callback growth",
                        format_args!(
                            "the guest wrote more than {} MiB into events in one callback; further writes are refused",
                            MAX_HELD_BYTES >> 20
                        ),
                    );
                    return false;
                }
                self.callback_growth += bytes;
                return true;
            }
            DataRef::Packet(p) | DataRef::PacketElem(p, _) => Some(p),
            DataRef::Loose(_) => None,
        };
        if !self.charge(bytes) {
            return false;
        }
        match (owner, d) {
            (Some(p), _) => {
                if let Some(p) = self.packets.get_mut(&p) {
                    p.charge += bytes;
                }
            }
            (None, DataRef::Loose(id)) => {
                if let Some(l) = self.loose.get_mut(&id) {
                    l.charge += bytes;
                }
            }
            _ => {}
        }
        true
    }
}

/// An error and its causes on one line, for the guest's warnings.
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    parts.join(": ")
}

/// The guest's exported memory.
pub(super) fn memory(caller: &mut Caller<'_, HostState>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

/// Split a `length << 32 | pointer` value.
pub(super) fn split(v: u64) -> (usize, usize) {
    ((v & 0xffff_ffff) as usize, (v >> 32) as usize)
}

/// Copy a guest buffer out. `None` when it is outside the guest's memory.
pub(super) fn read_buf(caller: &mut Caller<'_, HostState>, v: u64) -> Option<Vec<u8>> {
    let (ptr, len) = split(v);
    if len == 0 {
        return Some(Vec::new());
    }
    let mem = memory(caller)?;
    mem.data(&*caller)
        .get(ptr..ptr.checked_add(len)?)
        .map(<[u8]>::to_vec)
}

/// A guest string (upstream: the value 0 is the empty string).
pub(super) fn read_str(caller: &mut Caller<'_, HostState>, v: u64, func: &str) -> Option<String> {
    match read_buf(caller, v) {
        Some(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        None => {
            caller.data().warn(format_args!(
                "{func}: string argument outside the guest's memory"
            ));
            None
        }
    }
}

/// Copy `bytes` into the guest buffer `dst` (`len << 32 | ptr`). Fails when
/// the buffer is too small or outside the guest's memory. A NUL follows when
/// there is room, so C guests can read the result as a string.
pub(super) fn write_dst(caller: &mut Caller<'_, HostState>, dst: u64, bytes: &[u8]) -> bool {
    write_buf(caller, dst, bytes, true)
}

/// [`write_dst`] without the NUL: binary data (map values, perf records,
/// structs) leaves the rest of the guest's buffer as it was, as upstream.
pub(super) fn write_bin(caller: &mut Caller<'_, HostState>, dst: u64, bytes: &[u8]) -> bool {
    write_buf(caller, dst, bytes, false)
}

fn write_buf(caller: &mut Caller<'_, HostState>, dst: u64, bytes: &[u8], nul: bool) -> bool {
    let (ptr, cap) = split(dst);
    if bytes.len() > cap {
        return false;
    }
    let Some(mem) = memory(caller) else {
        return false;
    };
    let data = mem.data_mut(&mut *caller);
    let Some(out) = ptr.checked_add(cap).and_then(|end| data.get_mut(ptr..end)) else {
        return false;
    };
    out[..bytes.len()].copy_from_slice(bytes);
    if nul && let Some(n) = out.get_mut(bytes.len()) {
        *n = 0;
    }
    true
}

/// Write a little-endian u32 at guest address `ptr`.
pub(super) fn write_u32(caller: &mut Caller<'_, HostState>, ptr: u32, v: u32) -> bool {
    let Some(mem) = memory(caller) else {
        return false;
    };
    let p = ptr as usize;
    match mem.data_mut(&mut *caller).get_mut(p..p + 4) {
        Some(out) => {
            out.copy_from_slice(&v.to_le_bytes());
            true
        }
        None => false,
    }
}

/// Upstream's field kinds (`api.Kind`), as guests pass them.
pub(super) fn kind_from_api(k: u32) -> Option<FieldKind> {
    Some(match k {
        1 => FieldKind::Bool,
        2 => FieldKind::I8,
        3 => FieldKind::I16,
        4 => FieldKind::I32,
        5 => FieldKind::I64,
        6 => FieldKind::U8,
        7 => FieldKind::U16,
        8 => FieldKind::U32,
        9 => FieldKind::U64,
        10 => FieldKind::F32,
        11 => FieldKind::F64,
        12 => FieldKind::String,
        13 => FieldKind::CString,
        14 => FieldKind::Bytes,
        _ => return None,
    })
}
