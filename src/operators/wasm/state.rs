//! What the host functions see: the guest's handles, the data sources as
//! the guest knows them, the event of the callback in progress, packets the
//! guest builds, and the helpers that read and write guest memory with the
//! `length << 32 | pointer` convention.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use wasmtime::{Caller, Extern, Memory, StoreLimits};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::datasource::{Event, FieldId, FieldKind, Schema, SourceKind};

/// Upstream's limit on live handles.
const MAX_HANDLES: usize = 4096;

/// Warnings about the guest's calls shown per run: a guest misusing the
/// API in its event callback would otherwise write one line per event.
const MAX_WARNINGS: u32 = 100;

/// A data source as the guest sees it during set-up. Field index = FieldId.
pub(super) struct DsMirror {
    pub name: String,
    pub kind: SourceKind,
    pub fields: Vec<(String, FieldKind)>,
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
        prio: i32,
        cb: u64,
        ds_handle: u32,
    },
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
}

pub(super) enum Body {
    Single(Event),
    Array(Vec<Event>),
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
    /// subscriptions.
    pub frozen: bool,
    /// The frozen schemas, once the run started (index = SourceId).
    pub schemas: Vec<Arc<Schema>>,
    pub current: Option<Event>,
    pub current_array: Option<Vec<Event>>,
    pub packets: HashMap<u32, (usize, Body)>,
    pub loose: HashMap<u32, Event>,
    next_packet: u32,
    pub emitted: Vec<(usize, Body)>,
    pub params: BTreeMap<String, String>,
    warned: BTreeSet<&'static str>,
    warnings: std::cell::Cell<u32>,
    pub has_callback: bool,
}

impl HostState {
    pub fn new(wasi: WasiP1Ctx, limits: StoreLimits, module: String) -> Self {
        Self {
            wasi,
            limits,
            module,
            handles: HashMap::new(),
            last_handle: 0,
            sources: Vec::new(),
            ops: Vec::new(),
            frozen: false,
            schemas: Vec::new(),
            current: None,
            current_array: None,
            packets: HashMap::new(),
            loose: HashMap::new(),
            next_packet: 0,
            emitted: Vec::new(),
            params: BTreeMap::new(),
            warned: BTreeSet::new(),
            warnings: std::cell::Cell::new(0),
            has_callback: false,
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

    pub fn remove_handle(&mut self, id: u32) -> Option<Handle> {
        self.handles.remove(&id)
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
            DataRef::Packet(p) => match self.packets.get_mut(&p)? {
                (_, Body::Single(e)) => Some(e),
                (_, Body::Array(_)) => None,
            },
            DataRef::PacketElem(p, i) => match self.packets.get_mut(&p)? {
                (_, Body::Array(v)) => v.get_mut(i),
                (_, Body::Single(_)) => None,
            },
            DataRef::Loose(id) => self.loose.get_mut(&id),
        }
    }

    pub fn array_mut(&mut self, a: ArrayRef) -> Option<&mut Vec<Event>> {
        match a {
            ArrayRef::Current => self.current_array.as_mut(),
            ArrayRef::Packet(p) => match self.packets.get_mut(&p)? {
                (_, Body::Array(v)) => Some(v),
                (_, Body::Single(_)) => None,
            },
        }
    }

    /// Resolve a handle used as Data: (source, event reference).
    pub fn data(&self, id: u32) -> Option<(usize, DataRef)> {
        match self.handle(id)? {
            Handle::Data(s, d) => Some((s, d)),
            Handle::Packet(s, p) => match self.packets.get(&p) {
                Some((_, Body::Single(_))) => Some((s, DataRef::Packet(p))),
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
            Handle::Packet(s, p) => match self.packets.get(&p) {
                Some((_, Body::Array(_))) => Some((s, ArrayRef::Packet(p))),
                _ => None,
            },
            other => {
                self.warn(format_args!("handle {id} is a {other:?}, not an array"));
                None
            }
        }
    }

    /// A fresh event shaped for source `src`, once the schemas are frozen.
    pub fn new_event(&self, src: usize) -> Option<Event> {
        self.schemas.get(src).map(|s| Event::new(s))
    }
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
    if let Some(nul) = out.get_mut(bytes.len()) {
        *nul = 0;
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
