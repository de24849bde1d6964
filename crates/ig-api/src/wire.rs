//! Our data model on the wire, both ways, pure.
//!
//! A data source's layout ([`Schema`]) becomes a `DataSource`: the raw
//! sample the kernel wrote is payload 0, and each of its fields a
//! `StaticMember` of it at `offs`/`size`; each value an operator owns
//! (`Location::Owned { slot }`) is a payload of its own, `1 + slot`
//! (scalars in the host's byte order at their kind's size, strings
//! without a NUL); a struct parent owned in user space is `Empty`. An
//! [`Event`] becomes a `DataElement` whose payloads follow that layout. An
//! empty payload is the empty string or bytes, or, for scalars, a value
//! never set; a string or bytes value never set is listed in
//! `unset_payloads` (our addition, which upstream's clients skip: to them
//! it is the empty string).
//!
//! Decoding goes the other way for any server that follows upstream's
//! rules, not only ours: the payload the `StaticMember` fields share
//! (whichever index it has) becomes the raw sample, sized by its largest
//! `offs + size`; every other payload with a field becomes an owned
//! slot; a big-endian source has its scalars swapped. The bytes come from
//! the network: every index, offset and size is checked, and nothing
//! here panics on them ([`WireError`] says what is wrong).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use ig::datasource::{
    Event, FieldDef, FieldId, FieldKind, Location, Schema, SchemaBuilder, SchemaError, SourceKind,
    Value, ValueRef, copy,
};
use ig::params::{ParamSpec, ParamType};

use crate::proto::{DataElement, DataSource, Field, GadgetDataArray, Kind, Param};
use crate::{SOURCE_FLAG_BIG_ENDIAN, field_flags, source_type};

/// Why a layout or an event from the wire cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The data source `source` has a field whose `index` is not its
    /// position.
    #[error("data source {source_name}: field {field} has index {index}, expected {position}")]
    FieldIndex {
        /// The data source.
        source_name: String,
        /// The field.
        field: String,
        /// Its `index`.
        index: u32,
        /// Its position in the list.
        position: usize,
    },
    /// A field names a parent that is not an earlier field.
    #[error("data source {source_name}: field {field} has parent {parent}, not an earlier field")]
    Parent {
        /// The data source.
        source_name: String,
        /// The field.
        field: String,
        /// The parent's index.
        parent: u32,
    },
    /// Static members in more than one payload.
    #[error(
        "data source {source_name}: static members in payloads {first} and {second} (one shared payload is supported)"
    )]
    SeveralStaticPayloads {
        /// The data source.
        source_name: String,
        /// One payload.
        first: u32,
        /// Another.
        second: u32,
    },
    /// Two fields with a payload of their own share it.
    #[error("data source {source_name}: fields {field} and {other} share payload {payload}")]
    SharedPayload {
        /// The data source.
        source_name: String,
        /// The field.
        field: String,
        /// The field already there.
        other: String,
        /// The payload.
        payload: u32,
    },
    /// A static member ends past 4 GiB.
    #[error("data source {source_name}: field {field} at {offs}+{size} overflows")]
    Overflow {
        /// The data source.
        source_name: String,
        /// The field.
        field: String,
        /// Its offset.
        offs: u32,
        /// Its size.
        size: u32,
    },
    /// The raw payload would be larger than [`MAX_RAW_SIZE`].
    #[error("data source {source_name}: shared payload of {size} bytes (at most {max})")]
    TooLarge {
        /// The data source.
        source_name: String,
        /// The size asked for.
        size: u64,
        /// The most allowed.
        max: u32,
    },
    /// The layout's fields do not make a schema.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// An event lacks the shared payload.
    #[error("data source {source_name}: the event has {have} payloads, the layout needs {need}")]
    MissingPayload {
        /// The data source.
        source_name: String,
        /// Payloads in the event.
        have: usize,
        /// Payloads the layout needs.
        need: usize,
    },
    /// Bytes that are not the protobuf message they should be.
    #[error("a malformed {message}: {what}")]
    Malformed {
        /// The message being read.
        message: &'static str,
        /// What is wrong.
        what: &'static str,
    },
    /// A scalar payload of the wrong size.
    #[error(
        "data source {source_name}: field {field} ({kind}) has a payload of {have} bytes, expected {need}"
    )]
    ScalarSize {
        /// The data source.
        source_name: String,
        /// The field.
        field: String,
        /// Its kind.
        kind: &'static str,
        /// Bytes in the payload.
        have: usize,
        /// Bytes its kind takes.
        need: u32,
    },
}

/// The largest shared payload a decoded layout may declare: a kernel
/// sample is far smaller, and each event of the source allocates it.
pub const MAX_RAW_SIZE: u32 = 1 << 20;

/// The kind bit upstream sets on arrays of a kind.
const ARRAY_KIND: i32 = 0x1000_0000;

fn kind_to_wire(k: FieldKind) -> Kind {
    match k {
        FieldKind::Bool => Kind::Bool,
        FieldKind::I8 => Kind::Int8,
        FieldKind::I16 => Kind::Int16,
        FieldKind::I32 => Kind::Int32,
        FieldKind::I64 => Kind::Int64,
        FieldKind::U8 => Kind::Uint8,
        FieldKind::U16 => Kind::Uint16,
        FieldKind::U32 => Kind::Uint32,
        FieldKind::U64 => Kind::Uint64,
        FieldKind::F32 => Kind::Float32,
        FieldKind::F64 => Kind::Float64,
        FieldKind::String => Kind::String,
        FieldKind::CString => Kind::CString,
        FieldKind::Bytes => Kind::Bytes,
        FieldKind::Struct => Kind::Invalid,
    }
}

/// Our kind for a wire kind; arrays and kinds we do not know are bytes.
fn kind_from_wire(k: i32) -> FieldKind {
    if k & ARRAY_KIND != 0 {
        return FieldKind::Bytes;
    }
    match Kind::try_from(k) {
        Ok(Kind::Invalid) => FieldKind::Struct,
        Ok(Kind::Bool) => FieldKind::Bool,
        Ok(Kind::Int8) => FieldKind::I8,
        Ok(Kind::Int16) => FieldKind::I16,
        Ok(Kind::Int32) => FieldKind::I32,
        Ok(Kind::Int64) => FieldKind::I64,
        Ok(Kind::Uint8) => FieldKind::U8,
        Ok(Kind::Uint16) => FieldKind::U16,
        Ok(Kind::Uint32) => FieldKind::U32,
        Ok(Kind::Uint64) => FieldKind::U64,
        Ok(Kind::Float32) => FieldKind::F32,
        Ok(Kind::Float64) => FieldKind::F64,
        Ok(Kind::String) => FieldKind::String,
        Ok(Kind::CString) => FieldKind::CString,
        Ok(Kind::Bytes) | Err(_) => FieldKind::Bytes,
    }
}

/// The layout of `schema`, as data source `id` of a run.
pub fn data_source(id: u32, schema: &Schema) -> DataSource {
    let fields = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| field(i, f))
        .collect();
    DataSource {
        id,
        name: schema.name.clone(),
        r#type: match schema.kind {
            SourceKind::Single => source_type::SINGLE,
            SourceKind::Array => source_type::ARRAY,
        },
        fields,
        tags: Vec::new(),
        annotations: schema
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        flags: if cfg!(target_endian = "big") {
            SOURCE_FLAG_BIG_ENDIAN
        } else {
            0
        },
    }
}

fn field(index: usize, f: &FieldDef) -> Field {
    let mut flags = 0;
    let (payload_index, offs, size) = match f.loc {
        Location::Raw { offset, size } => {
            flags |= field_flags::STATIC_MEMBER;
            (0, offset, size)
        }
        Location::Owned { slot } => {
            if f.kind == FieldKind::Struct {
                flags |= field_flags::EMPTY;
            }
            (1 + u32::from(slot), 0, f.kind.scalar_size().unwrap_or(0))
        }
    };
    if f.hidden {
        flags |= field_flags::HIDDEN;
    }
    let parent = match f.parent {
        Some(p) => {
            flags |= field_flags::HAS_PARENT;
            u32::from(p.0)
        }
        None => 0,
    };
    Field {
        name: f.short_name().to_owned(),
        full_name: f.name.clone(),
        index: index as u32,
        payload_index,
        offs,
        size,
        flags,
        kind: kind_to_wire(f.kind) as i32,
        tags: f.tags.clone(),
        annotations: f
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        parent,
        order: i32::try_from(f.order).unwrap_or(i32::MAX),
    }
}

/// Where each owned slot of a decoded schema comes from.
#[derive(Clone, Debug)]
struct OwnedPayload {
    payload: usize,
    field: FieldId,
}

/// A data source's layout from the wire: the schema it makes, and how
/// an event's payloads fill an [`Event`] of it.
#[derive(Clone, Debug)]
pub struct Decoder {
    /// The schema of the source's events.
    pub schema: Arc<Schema>,
    /// The source's `DataSource.id`.
    pub id: u32,
    /// The payload the static members share, if any.
    shared: Option<usize>,
    owned: Vec<OwnedPayload>,
    /// Raw fields to byte-swap (a big-endian source on a little-endian
    /// host, or the reverse): offset and size.
    swap: Vec<(u32, u32)>,
    /// Payloads an event must have.
    need: usize,
}

impl Decoder {
    /// The layout `ds` as a schema and a decoder of its events.
    pub fn new(ds: &DataSource) -> Result<Self, WireError> {
        let (b, mut d) = Self::with_builder(ds)?;
        d.schema = Arc::new(b.build());
        Ok(d)
    }

    /// The layout `ds` as a schema still open to fields (a client's own
    /// operators add theirs: the pipeline's `Setup`), and the decoder.
    /// Fields are only appended, so the decoder stays valid for the final
    /// schema; its [`Decoder::schema`] is the layout's alone.
    pub fn with_builder(ds: &DataSource) -> Result<(SchemaBuilder, Self), WireError> {
        let source_name = ds.name.clone();
        // The shared payload and its size first: the builder needs the
        // raw size before it takes fields.
        let mut shared: Option<u32> = None;
        let mut raw_size: u64 = 0;
        for f in &ds.fields {
            if f.flags & field_flags::STATIC_MEMBER == 0 {
                continue;
            }
            match shared {
                Some(p) if p != f.payload_index => {
                    return Err(WireError::SeveralStaticPayloads {
                        source_name,
                        first: p,
                        second: f.payload_index,
                    });
                }
                _ => shared = Some(f.payload_index),
            }
            let end = u64::from(f.offs) + u64::from(f.size);
            raw_size = raw_size.max(end);
        }
        if raw_size > u64::from(MAX_RAW_SIZE) {
            return Err(WireError::TooLarge {
                source_name,
                size: raw_size,
                max: MAX_RAW_SIZE,
            });
        }
        let kind = if ds.r#type == source_type::ARRAY {
            SourceKind::Array
        } else {
            SourceKind::Single
        };
        let mut b = SchemaBuilder::new(ds.name.clone(), kind, raw_size as u32);
        b.annotations_mut().extend(
            ds.annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        );
        let big_endian = ds.flags & SOURCE_FLAG_BIG_ENDIAN != 0;
        let swap_needed = big_endian != cfg!(target_endian = "big");
        let mut owned: Vec<OwnedPayload> = Vec::new();
        let mut by_payload: BTreeMap<u32, String> = BTreeMap::new();
        let mut swap = Vec::new();
        // An event may leave out trailing payloads of owned values (they
        // read as unset); it must carry the shared one.
        let need = shared.map_or(0, |p| p as usize + 1);
        for (position, f) in ds.fields.iter().enumerate() {
            let name = if f.full_name.is_empty() {
                f.name.clone()
            } else {
                f.full_name.clone()
            };
            if f.index as usize != position {
                return Err(WireError::FieldIndex {
                    source_name,
                    field: name,
                    index: f.index,
                    position,
                });
            }
            let parent = if f.flags & field_flags::HAS_PARENT != 0 {
                if f.parent as usize >= position {
                    return Err(WireError::Parent {
                        source_name,
                        field: name,
                        parent: f.parent,
                    });
                }
                Some(FieldId(f.parent as u16))
            } else {
                None
            };
            let mut kind = kind_from_wire(f.kind);
            let id = if f.flags & field_flags::STATIC_MEMBER != 0 {
                // A scalar whose size is not its kind's is read as bytes
                // rather than guessed at.
                if kind.scalar_size().is_some_and(|s| s != f.size) {
                    kind = FieldKind::Bytes;
                }
                if swap_needed && kind.scalar_size().is_some_and(|s| s > 1) {
                    swap.push((f.offs, f.size));
                }
                b.add_raw(name, kind, f.offs, f.size, parent)?
            } else {
                let id = b.add_owned(name.clone(), kind, parent)?;
                if f.flags & field_flags::EMPTY == 0 && kind != FieldKind::Struct {
                    if let Some(other) = by_payload.insert(f.payload_index, name.clone()) {
                        return Err(WireError::SharedPayload {
                            source_name,
                            field: name,
                            other,
                            payload: f.payload_index,
                        });
                    }
                    owned.push(OwnedPayload {
                        payload: f.payload_index as usize,
                        field: id,
                    });
                }
                id
            };
            let def = b.field_mut(id);
            def.hidden = f.flags & field_flags::HIDDEN != 0;
            def.order = u32::try_from(f.order).unwrap_or(0);
            def.tags.clone_from(&f.tags);
            def.annotations = f
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        }
        let schema = Arc::new(b.schema().clone());
        Ok((
            b,
            Self {
                schema,
                id: ds.id,
                shared: shared.map(|p| p as usize),
                owned,
                swap,
                need,
            },
        ))
    }

    /// Fill `ev` (made for [`Decoder::schema`], reused from event to
    /// event) from `element`'s payloads.
    pub fn decode(&self, element: &DataElement, ev: &mut Event) -> Result<(), WireError> {
        self.fill(element, ev)
    }

    /// Fill `ev` from the bytes of a `DataElement` message as they came
    /// from the network (an item of [`elements`]), read in place: no copy
    /// of a payload but into `ev`, and nothing allocated once `scratch`
    /// (reused from event to event) has grown to the layout.
    pub fn decode_bytes(
        &self,
        element: &[u8],
        scratch: &mut ElementScratch,
        ev: &mut Event,
    ) -> Result<(), WireError> {
        scratch.read(element)?;
        self.fill(&(element, &*scratch), ev)
    }

    fn fill(&self, payloads: &impl Payloads, ev: &mut Event) -> Result<(), WireError> {
        if payloads.count() < self.need {
            return Err(WireError::MissingPayload {
                source_name: self.schema.name.clone(),
                have: payloads.count(),
                need: self.need,
            });
        }
        match self.shared.and_then(|p| payloads.get(p)) {
            Some(raw) => {
                ev.set_raw(raw);
            }
            None => {
                ev.set_raw(&[]);
            }
        }
        for &(offs, size) in &self.swap {
            let (o, s) = (offs as usize, size as usize);
            if let Some(b) = ev.raw_mut().get_mut(o..o + s) {
                b.reverse();
            }
        }
        let swap_needed = !self.swap.is_empty();
        for o in &self.owned {
            // A missing payload is a value nobody set: it stays unset
            // (`set_raw` retired the previous event's). So is an empty one,
            // but for strings and bytes, where it is the empty value unless
            // the sender lists it as unset (upstream's servers do not: to
            // them an empty payload is the zero value).
            let Some(bytes) = payloads.get(o.payload) else {
                continue;
            };
            let def = self.schema.field(o.field);
            if bytes.is_empty()
                && (!string_like(def.kind) || payloads.unset().contains(&(o.payload as u32)))
            {
                continue;
            }
            set_owned(&self.schema.name, def, bytes, swap_needed, ev)?;
        }
        Ok(())
    }
}

/// An element's payloads, decoded (`DataElement`) or read in place.
trait Payloads {
    fn count(&self) -> usize;
    fn get(&self, i: usize) -> Option<&[u8]>;
    fn unset(&self) -> &[u32];
}

impl Payloads for DataElement {
    fn count(&self) -> usize {
        self.payload.len()
    }
    fn get(&self, i: usize) -> Option<&[u8]> {
        self.payload.get(i).map(Vec::as_slice)
    }
    fn unset(&self) -> &[u32] {
        &self.unset_payloads
    }
}

impl Payloads for (&[u8], &ElementScratch) {
    fn count(&self) -> usize {
        self.1.payloads.len()
    }
    fn get(&self, i: usize) -> Option<&[u8]> {
        let &(start, end) = self.1.payloads.get(i)?;
        self.0.get(start..end)
    }
    fn unset(&self) -> &[u32] {
        &self.1.unset
    }
}

// ---------------------------------------------------------------------
// Data messages read in place, and batches written.
//
// A client's cost per event is mostly what it does with the bytes before
// the event is printed: prost's `GadgetDataArray::decode` allocates a
// `DataElement` and a `Vec` per payload for every event. The reader below
// walks the same bytes and hands out slices of them instead. It follows
// prost's rules (the fuzz target `wire` checks that both accept the same
// messages and read the same payloads from them), for the three fields of
// `GadgetData`/`GadgetDataArray` and the two of `DataElement`; any other
// field is skipped, as protobuf wants.

/// `GadgetData.data` and `GadgetDataArray.dataArray`.
const ELEMENTS_FIELD: u32 = 3;
/// `DataElement.payload`.
const PAYLOAD_FIELD: u32 = 1;
/// `DataElement.unset_payloads`.
const UNSET_FIELD: u32 = 15;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// How deeply a message may nest, counting the groups of a skipped
/// field: prost's limit, with its way of counting (a `GadgetDataArray`
/// starts with all of it, its `DataElement`s with one less).
const RECURSION_LIMIT: u32 = 100;

/// Protobuf's wire format over borrowed bytes.
struct Reader<'a> {
    buf: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn malformed<T>(&self, what: &'static str) -> Result<T, WireError> {
        Err(WireError::Malformed {
            message: self.message,
            what,
        })
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Most varints here are a key or a short length: one byte.
        if let Some((&b, rest)) = self.buf.split_first()
            && b < 0x80
        {
            self.buf = rest;
            return Ok(u64::from(b));
        }
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some((&b, rest)) = self.buf.split_first() else {
                return self.malformed("a varint runs past the end");
            };
            self.buf = rest;
            // The tenth byte holds the 64th bit only.
            if i == 9 && b > 1 {
                return self.malformed("a varint overflows 64 bits");
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        self.malformed("a varint overflows 64 bits")
    }

    /// The next field's number and wire type.
    #[inline]
    fn key(&mut self) -> Result<(u32, u8), WireError> {
        let key = self.varint()?;
        let Ok(key) = u32::try_from(key) else {
            return self.malformed("a field key overflows 32 bits");
        };
        let wire_type = (key & 7) as u8;
        if wire_type > FIXED32 {
            return self.malformed("an unknown wire type");
        }
        if key >> 3 == 0 {
            return self.malformed("field number 0");
        }
        Ok((key >> 3, wire_type))
    }

    #[inline]
    fn take(&mut self, n: u64) -> Result<&'a [u8], WireError> {
        match usize::try_from(n) {
            Ok(n) if n <= self.buf.len() => {
                let (head, rest) = self.buf.split_at(n);
                self.buf = rest;
                Ok(head)
            }
            _ => self.malformed("a field runs past the end"),
        }
    }

    /// A length-delimited field's bytes.
    #[inline]
    fn len_delimited(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.varint()?;
        self.take(n)
    }

    /// Skip a field of `wire_type` whose key was read, with `budget`
    /// levels of nesting left.
    fn skip(&mut self, field: u32, wire_type: u8, budget: u32) -> Result<(), WireError> {
        if budget == 0 {
            return self.malformed("groups nest too deeply");
        }
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.len_delimited().map(drop),
            FIXED32 => self.take(4).map(drop),
            START_GROUP => loop {
                let (f, wt) = self.key()?;
                if wt == END_GROUP {
                    if f != field {
                        return self.malformed("a group ends with another's number");
                    }
                    return Ok(());
                }
                self.skip(f, wt, budget - 1)?;
            },
            _ => self.malformed("a group end without its start"),
        }
    }

    /// A field we know arrived with another wire type.
    fn expect(&self, wire_type: u8, want: u8) -> Result<(), WireError> {
        if wire_type == want {
            Ok(())
        } else {
            self.malformed("a field of the wrong wire type")
        }
    }
}

/// The `DataElement`s of a `GadgetDataArray` message, or the one of a
/// `GadgetData` (the same field number), as the bytes of each, in place.
/// An error ends the iteration.
pub fn elements(message: &[u8]) -> Elements<'_> {
    Elements {
        r: Reader {
            buf: message,
            message: "GadgetData",
        },
        failed: false,
    }
}

/// The iterator of [`elements`].
pub struct Elements<'a> {
    r: Reader<'a>,
    failed: bool,
}

impl<'a> Elements<'a> {
    fn step(&mut self) -> Result<Option<&'a [u8]>, WireError> {
        while !self.r.is_empty() {
            let (field, wt) = self.r.key()?;
            match field {
                // node: a string, which must be UTF-8.
                1 => {
                    self.r.expect(wt, LEN)?;
                    if std::str::from_utf8(self.r.len_delimited()?).is_err() {
                        return self.r.malformed("a node name that is not UTF-8");
                    }
                }
                // seq
                2 => {
                    self.r.expect(wt, VARINT)?;
                    self.r.varint()?;
                }
                ELEMENTS_FIELD => {
                    self.r.expect(wt, LEN)?;
                    return self.r.len_delimited().map(Some);
                }
                _ => self.r.skip(field, wt, RECURSION_LIMIT)?,
            }
        }
        Ok(None)
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = Result<&'a [u8], WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(el) => el.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Where a `DataElement`'s payloads are in its bytes, and which are
/// listed unset: [`Decoder::decode_bytes`] fills it, reused from event
/// to event.
#[derive(Clone, Debug, Default)]
pub struct ElementScratch {
    payloads: Vec<(usize, usize)>,
    unset: Vec<u32>,
}

impl ElementScratch {
    /// Read the `DataElement` message `element`.
    pub fn read(&mut self, element: &[u8]) -> Result<(), WireError> {
        self.payloads.clear();
        self.unset.clear();
        let mut r = Reader {
            buf: element,
            message: "DataElement",
        };
        let total = element.len();
        while !r.is_empty() {
            // Nearly every field is a payload of fewer than 128 bytes: a
            // one-byte key and a one-byte length.
            if let [k, n, ref rest @ ..] = *r.buf
                && k == key(PAYLOAD_FIELD, LEN)
                && n < 0x80
                && usize::from(n) <= rest.len()
            {
                let start = total - rest.len();
                self.payloads.push((start, start + usize::from(n)));
                r.buf = &rest[usize::from(n)..];
                continue;
            }
            let (field, wt) = r.key()?;
            match field {
                PAYLOAD_FIELD => {
                    r.expect(wt, LEN)?;
                    let p = r.len_delimited()?;
                    let end = total - r.buf.len();
                    self.payloads.push((end - p.len(), end));
                }
                // Packed (as proto3 writes it) or one value at a time.
                UNSET_FIELD if wt == LEN => {
                    let mut packed = Reader {
                        buf: r.len_delimited()?,
                        message: "DataElement",
                    };
                    while !packed.is_empty() {
                        self.unset.push(packed.varint()? as u32);
                    }
                }
                UNSET_FIELD => {
                    r.expect(wt, VARINT)?;
                    self.unset.push(r.varint()? as u32);
                }
                _ => r.skip(field, wt, RECURSION_LIMIT - 1)?,
            }
        }
        Ok(())
    }

    /// The payloads of the element last read, as ranges of its bytes.
    pub fn payloads(&self) -> &[(usize, usize)] {
        &self.payloads
    }

    /// The payloads the element last read lists as unset.
    pub fn unset(&self) -> &[u32] {
        &self.unset
    }
}

/// Start a batch in `buf` (emptied first): a `GadgetDataArray` whose
/// `seq` is its first event's.
pub fn begin_batch(seq: u32, buf: &mut Vec<u8>) {
    use prost::Message as _;
    buf.clear();
    let header = GadgetDataArray {
        node: String::new(),
        seq,
        data_array: Vec::new(),
    };
    // Into a Vec, encoding cannot fail.
    let _ = header.encode(buf);
}

/// Append `element` to the batch in `buf` (`GadgetDataArray.dataArray`),
/// as prost would encode it (the test `batches_read_in_place` compares):
/// written here because prost's generic varint writer was 14% of the
/// daemon's samples (bench/daemon.md).
pub fn push_element(element: &DataElement, buf: &mut Vec<u8>) {
    let payloads: usize = element
        .payload
        .iter()
        .map(|p| 1 + varint_len(p.len() as u64) + p.len())
        .sum();
    let unset: usize = element
        .unset_payloads
        .iter()
        .map(|&u| varint_len(u64::from(u)))
        .sum();
    let len = payloads
        + if unset > 0 {
            1 + varint_len(unset as u64) + unset
        } else {
            0
        };
    buf.reserve(1 + varint_len(len as u64) + len);
    buf.push(key(ELEMENTS_FIELD, LEN));
    put_varint(buf, len as u64);
    for p in &element.payload {
        buf.push(key(PAYLOAD_FIELD, LEN));
        put_varint(buf, p.len() as u64);
        buf.extend_from_slice(p);
    }
    if unset > 0 {
        // Packed, as proto3 writes a repeated scalar.
        buf.push(key(UNSET_FIELD, LEN));
        put_varint(buf, unset as u64);
        for &u in &element.unset_payloads {
            put_varint(buf, u64::from(u));
        }
    }
}

/// The one-byte key of a field numbered below 16.
const fn key(field: u32, wire_type: u8) -> u8 {
    (field << 3) as u8 | wire_type
}

fn varint_len(v: u64) -> usize {
    // 1 for 0..=127, one more per 7 bits.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Whether `a` and `b` are the same value, bit for bit (`-0.0` is not
/// `0.0`, and a NaN is itself).
fn same_value(a: ValueRef<'_>, b: ValueRef<'_>) -> bool {
    match (a, b) {
        (ValueRef::F64(x), ValueRef::F64(y)) => x.to_bits() == y.to_bits(),
        (a, b) => a == b,
    }
}

/// Set `def` in `ev` from its payload `bytes`, or keep the previous
/// event's value when it is the same (`Event::keep`).
///
/// Keeping matters more than the copy it saves: most owned values of an
/// event are those of the previous one (the empty Kubernetes and runtime
/// fields of a host process, its user and group names), and a printer
/// reuses the text it made for an object whose owned values were kept,
/// not written (the JSON printer's memoized objects). A client that wrote
/// every value of every event made the printer format them all again:
/// what the daemon's enrichment kept, the wire had lost.
fn set_owned(
    source_name: &str,
    def: &FieldDef,
    bytes: &[u8],
    swap: bool,
    ev: &mut Event,
) -> Result<(), WireError> {
    match def.kind {
        FieldKind::String | FieldKind::CString => {
            let s = &bytes[..ig::datasource::c_str_len(bytes)];
            // The stored value is valid UTF-8: the same bytes are the same
            // string (a lossy conversion of other bytes never matches).
            if ev.keep(def) && matches!(ev.get(def), ValueRef::Str(old) if copy::same(old, s)) {
                return Ok(());
            }
            // Valid UTF-8 (nearly always) is checked without the lossy
            // decoder's chunking.
            match std::str::from_utf8(s) {
                Ok(s) => ev.set_str(def, s),
                Err(_) => match String::from_utf8_lossy(s) {
                    Cow::Borrowed(s) => ev.set_str(def, s),
                    Cow::Owned(s) => ev.set_str(def, &s),
                },
            }
        }
        FieldKind::Bytes => {
            if !(ev.keep(def)
                && matches!(ev.get(def), ValueRef::Bytes(old) if copy::same(old, bytes)))
            {
                ev.set_bytes(def, bytes);
            }
        }
        FieldKind::Struct => {}
        kind => {
            let need = kind.scalar_size().unwrap_or(0);
            if bytes.len() != need as usize {
                return Err(WireError::ScalarSize {
                    source_name: source_name.to_owned(),
                    field: def.name.clone(),
                    kind: kind.name(),
                    have: bytes.len(),
                    need,
                });
            }
            let mut buf = [0u8; 8];
            buf[..bytes.len()].copy_from_slice(bytes);
            if swap {
                buf[..bytes.len()].reverse();
            }
            let v = ig::datasource::decode(kind, &buf[..bytes.len()]);
            if ev.keep(def) && same_value(ev.get(def), v) {
                return Ok(());
            }
            let v = match v {
                ValueRef::Bool(b) => Value::Bool(b),
                ValueRef::U64(n) => Value::U64(n),
                ValueRef::I64(n) => Value::I64(n),
                ValueRef::F64(x) => Value::F64(x),
                _ => Value::None,
            };
            ev.set_value(def, v);
        }
    }
    Ok(())
}

/// Encodes the events of one schema into `DataElement`s, reusing the
/// element's buffers from event to event.
#[derive(Clone, Debug)]
pub struct Encoder {
    /// Owned fields by slot, with their kind.
    slots: Vec<Option<(FieldId, FieldKind)>>,
}

impl Encoder {
    /// An encoder for events of `schema`.
    pub fn new(schema: &Schema) -> Self {
        let mut slots = vec![None; schema.owned_slots()];
        for id in schema.ids() {
            let f = schema.field(id);
            if let Location::Owned { slot } = f.loc
                && let Some(s) = slots.get_mut(usize::from(slot))
            {
                *s = Some((id, f.kind));
            }
        }
        Self { slots }
    }

    /// Write `ev`'s payloads into `out` (`1 + owned slots` of them).
    pub fn encode(&self, schema: &Schema, ev: &Event, out: &mut DataElement) {
        let n = 1 + self.slots.len();
        out.payload.resize_with(n, Vec::new);
        out.payload.truncate(n);
        out.payload[0].clear();
        out.payload[0].extend_from_slice(ev.raw());
        out.unset_payloads.clear();
        for (slot, f) in self.slots.iter().enumerate() {
            let buf = &mut out.payload[1 + slot];
            buf.clear();
            let Some((id, kind)) = f else { continue };
            let v = ev.get(schema.field(*id));
            // An empty payload is "" to upstream's clients and to ours,
            // unless it is listed as unset.
            if matches!(v, ValueRef::None) && string_like(*kind) {
                out.unset_payloads.push((1 + slot) as u32);
            }
            encode_value(*kind, v, buf);
        }
    }
}

impl Encoder {
    /// Append `ev` to the batch in `buf` as one `GadgetDataArray.dataArray`
    /// element: the bytes [`Encoder::encode`] then [`push_element`] write
    /// (the test `push_event_writes_what_push_element_writes` compares),
    /// in one pass. Each value is copied once, from the event into the
    /// batch, instead of into the element's payloads and from there into
    /// the batch: the two copies and the sizing pass between them were
    /// half of the daemon's own instructions per event (bench/daemon.md).
    /// `unset` is scratch, reused from event to event.
    pub fn push_event(&self, schema: &Schema, ev: &Event, buf: &mut Vec<u8>, unset: &mut Vec<u32>) {
        unset.clear();
        buf.push(key(ELEMENTS_FIELD, LEN));
        // Most elements take 128 bytes to 16 KiB: a two-byte length,
        // moved in the rare other case.
        let len_at = buf.len();
        buf.extend_from_slice(&[0, 0]);
        let raw = ev.raw();
        buf.reserve(raw.len() + 2 * self.slots.len() + 8);
        buf.push(key(PAYLOAD_FIELD, LEN));
        put_varint(buf, raw.len() as u64);
        buf.extend_from_slice(raw);
        for (slot, f) in self.slots.iter().enumerate() {
            buf.push(key(PAYLOAD_FIELD, LEN));
            let Some((id, kind)) = f else {
                buf.push(0);
                continue;
            };
            let v = ev.get(schema.field(*id));
            match v {
                ValueRef::Str(b) | ValueRef::Bytes(b) if kind.scalar_size().is_none() => {
                    put_varint(buf, b.len() as u64);
                    // Short runs inline, not through musl's memcpy.
                    copy::extend(buf, b);
                }
                ValueRef::None => {
                    if string_like(*kind) {
                        unset.push((1 + slot) as u32);
                    }
                    buf.push(0);
                }
                // A number: its size is its kind's (encode_value writes
                // nothing for a string in a number's field).
                _ if kind.scalar_size().is_some() => {
                    let at = buf.len();
                    buf.push(0);
                    encode_value(*kind, v, buf);
                    buf[at] = (buf.len() - at - 1) as u8;
                }
                // A number in a string field: its decimal text.
                _ => {
                    let at = buf.len();
                    buf.push(0);
                    encode_value(*kind, v, buf);
                    put_len(buf, at, 1);
                }
            }
        }
        if !unset.is_empty() {
            let n: usize = unset.iter().map(|&u| varint_len(u64::from(u))).sum();
            buf.push(key(UNSET_FIELD, LEN));
            put_varint(buf, n as u64);
            for &u in unset.iter() {
                put_varint(buf, u64::from(u));
            }
        }
        put_len(buf, len_at, 2);
    }
}

/// Write the length of what follows `reserved` bytes at `at` in `buf`
/// (to its end) as a varint in their place, moving those bytes when the
/// varint takes another number of bytes.
fn put_len(buf: &mut Vec<u8>, at: usize, reserved: usize) {
    let start = at + reserved;
    let n = buf.len() - start;
    let width = varint_len(n as u64);
    if width > reserved {
        let end = buf.len();
        buf.resize(end + width - reserved, 0);
        buf.copy_within(start..end, at + width);
    } else if width < reserved {
        buf.copy_within(start.., at + width);
        buf.truncate(buf.len() - (reserved - width));
    }
    let mut v = n as u64;
    for b in &mut buf[at..at + width] {
        *b = v as u8 | 0x80;
        v >>= 7;
    }
    buf[at + width - 1] &= 0x7f;
}

/// A kind whose empty payload is a value (the empty string or bytes).
fn string_like(kind: FieldKind) -> bool {
    matches!(
        kind,
        FieldKind::String | FieldKind::CString | FieldKind::Bytes
    )
}

/// An owned value in its kind's wire form (host byte order).
fn encode_value(kind: FieldKind, v: ValueRef<'_>, buf: &mut Vec<u8>) {
    // Integers are truncated to the kind's width, as the kernel would
    // have stored them.
    let (u, i, x) = match v {
        ValueRef::None => return,
        ValueRef::Bool(b) => (u64::from(b), i64::from(b), f64::from(u8::from(b))),
        ValueRef::U64(n) => (n, n as i64, n as f64),
        ValueRef::I64(n) => (n as u64, n, n as f64),
        ValueRef::F64(x) => (x as u64, x as i64, x),
        ValueRef::Str(b) | ValueRef::Bytes(b) => {
            if kind.scalar_size().is_none() {
                buf.extend_from_slice(b);
            }
            return;
        }
    };
    match kind {
        FieldKind::Bool => buf.push(u8::from(u != 0)),
        FieldKind::U8 | FieldKind::I8 => buf.push(u as u8),
        FieldKind::U16 => buf.extend_from_slice(&(u as u16).to_ne_bytes()),
        FieldKind::I16 => buf.extend_from_slice(&(i as i16).to_ne_bytes()),
        FieldKind::U32 => buf.extend_from_slice(&(u as u32).to_ne_bytes()),
        FieldKind::I32 => buf.extend_from_slice(&(i as i32).to_ne_bytes()),
        FieldKind::U64 => buf.extend_from_slice(&u.to_ne_bytes()),
        FieldKind::I64 => buf.extend_from_slice(&i.to_ne_bytes()),
        FieldKind::F32 => buf.extend_from_slice(&(x as f32).to_ne_bytes()),
        FieldKind::F64 => buf.extend_from_slice(&x.to_ne_bytes()),
        // A number in a string or bytes field: its decimal text.
        FieldKind::String | FieldKind::CString | FieldKind::Bytes => {
            use std::io::Write as _;
            let _ = match v {
                ValueRef::I64(n) => write!(buf, "{n}"),
                ValueRef::F64(x) => write!(buf, "{x}"),
                _ => write!(buf, "{u}"),
            };
        }
        FieldKind::Struct => {}
    }
}

/// A parameter as upstream describes it.
pub fn param(spec: &ParamSpec) -> Param {
    let prefix = spec
        .full_name
        .strip_suffix(&spec.key)
        .unwrap_or("")
        .to_owned();
    let (type_hint, possible_values) = match &spec.ty {
        ParamType::Bool => ("bool".to_owned(), Vec::new()),
        ParamType::Int { bits, signed } => (
            format!("{}int{bits}", if *signed { "" } else { "u" }),
            Vec::new(),
        ),
        ParamType::String { .. } => ("string".to_owned(), Vec::new()),
        ParamType::Duration => ("duration".to_owned(), Vec::new()),
        ParamType::Choice(c) => ("string".to_owned(), c.clone()),
    };
    Param {
        key: spec.key.clone(),
        description: spec.description.clone(),
        default_value: spec.default.clone(),
        type_hint,
        title: String::new(),
        alias: spec.alias.map(String::from).unwrap_or_default(),
        tags: if spec.group.is_empty() {
            Vec::new()
        } else {
            vec![format!("group:{}", spec.group)]
        },
        value_hint: String::new(),
        possible_values,
        is_mandatory: false,
        prefix,
        alternative_key: String::new(),
    }
}

/// A parameter from upstream's description. A type hint we do not know
/// is a string: the server checks the value.
pub fn param_spec(p: &Param) -> ParamSpec {
    let ty = if !p.possible_values.is_empty() {
        ParamType::Choice(p.possible_values.clone())
    } else {
        match p.type_hint.as_str() {
            "bool" => ParamType::Bool,
            "duration" => ParamType::Duration,
            t => match int_hint(t) {
                Some((bits, signed)) => ParamType::Int { bits, signed },
                None => ParamType::String { max_len: None },
            },
        }
    };
    let group = p
        .tags
        .iter()
        .find_map(|t| t.strip_prefix("group:"))
        .unwrap_or("")
        .to_owned();
    ParamSpec {
        key: p.key.clone(),
        full_name: format!("{}{}", p.prefix, p.key),
        description: p.description.clone(),
        default: p.default_value.clone(),
        ty,
        group,
        alias: {
            let mut c = p.alias.chars();
            match (c.next(), c.next()) {
                (Some(a), None) => Some(a),
                _ => None,
            }
        },
    }
}

/// `int32` → (32, signed), `uint8` → (8, unsigned); `int`/`uint` are 64.
fn int_hint(t: &str) -> Option<(u8, bool)> {
    let (signed, bits) = match t.strip_prefix('u') {
        Some(rest) => (false, rest.strip_prefix("int")?),
        None => (true, t.strip_prefix("int")?),
    };
    let bits = if bits.is_empty() {
        64
    } else {
        bits.parse().ok()?
    };
    matches!(bits, 8 | 16 | 32 | 64).then_some((bits, signed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::GadgetData;

    /// exec-like: a raw struct with a parent, a string, an owned string,
    /// an owned number and an owned struct parent.
    fn sample() -> Schema {
        let mut b = SchemaBuilder::new("exec", SourceKind::Single, 32);
        let proc = b
            .add_raw("proc".into(), FieldKind::Struct, 0, 24, None)
            .unwrap();
        b.add_raw("proc.pid".into(), FieldKind::U32, 0, 4, Some(proc))
            .unwrap();
        b.add_raw("proc.comm".into(), FieldKind::CString, 4, 16, Some(proc))
            .unwrap();
        b.add_raw("error_raw".into(), FieldKind::I32, 24, 4, None)
            .unwrap();
        b.add_raw("__pad".into(), FieldKind::Bytes, 28, 4, None)
            .unwrap();
        let err = b.schema().field_by_name("error_raw").unwrap();
        let e = b
            .add_owned_sibling("error", FieldKind::String, err)
            .unwrap();
        b.field_mut(e).tags.push("type:errno".into());
        b.field_mut(e)
            .annotations
            .insert("columns.width".into(), "8".into());
        let k8s = b.add_owned("k8s".into(), FieldKind::Struct, None).unwrap();
        b.add_owned("k8s.uid".into(), FieldKind::U64, Some(k8s))
            .unwrap();
        b.add_owned("score".into(), FieldKind::F64, None).unwrap();
        b.add_owned("ok".into(), FieldKind::Bool, None).unwrap();
        b.annotations_mut()
            .insert("cli.default-output-mode".into(), "json".into());
        b.build()
    }

    fn filled(s: &Schema) -> Event {
        let mut ev = Event::new(s);
        let mut raw = vec![0u8; 32];
        raw[0..4].copy_from_slice(&4242u32.to_ne_bytes());
        raw[4..8].copy_from_slice(b"cat\0");
        raw[24..28].copy_from_slice(&(-2i32).to_ne_bytes());
        ev.set_raw(&raw);
        let f = |n: &str| s.field(s.field_by_name(n).unwrap());
        ev.set_str(f("error"), "ENOENT");
        ev.set_value(f("k8s.uid"), Value::U64(u64::MAX - 1));
        ev.set_value(f("score"), Value::F64(-1.5));
        ev.set_value(f("ok"), Value::Bool(true));
        ev
    }

    #[test]
    fn schema_and_event_round_trip() {
        let s = sample();
        let ds = data_source(3, &s);
        assert_eq!(ds.id, 3);
        assert_eq!(ds.fields[1].name, "pid");
        assert_eq!(ds.fields[1].full_name, "proc.pid");
        assert_eq!(
            ds.fields[1].flags,
            field_flags::STATIC_MEMBER | field_flags::HAS_PARENT
        );
        assert_eq!(ds.fields[1].parent, 0);
        let d = Decoder::new(&ds).unwrap();
        // The layout comes back as it was.
        assert_eq!(*d.schema, s);
        let ev = filled(&s);
        let mut el = DataElement::default();
        Encoder::new(&s).encode(&s, &ev, &mut el);
        assert_eq!(el.payload.len(), 1 + s.owned_slots());
        let mut back = Event::new(&d.schema);
        d.decode(&el, &mut back).unwrap();
        for f in s.fields() {
            assert_eq!(back.get(f), ev.get(f), "{}", f.name);
        }
    }

    #[test]
    fn unset_owned_values_stay_unset() {
        let s = sample();
        let mut ev = Event::new(&s);
        ev.set_raw(&[0; 32]);
        let mut el = DataElement::default();
        Encoder::new(&s).encode(&s, &ev, &mut el);
        let d = Decoder::new(&data_source(0, &s)).unwrap();
        let mut back = Event::new(&d.schema);
        d.decode(&el, &mut back).unwrap();
        let uid = s.field(s.field_by_name("k8s.uid").unwrap());
        assert_eq!(back.get(uid), ValueRef::None);
    }

    /// An owned string reads on the other side as it reads here (which
    /// `ig run -o json` prints): one set to "" is "", one never set is
    /// unset (`null`), one set in an earlier event and not in this one is
    /// "" (`Event` retires it to empty). Both events are reused from event
    /// to event, as the daemon and gadgetctl do.
    #[test]
    fn empty_and_unset_owned_strings_stay_apart() {
        let s = sample();
        let error = s.field(s.field_by_name("error").unwrap());
        let d = Decoder::new(&data_source(0, &s)).unwrap();
        let enc = Encoder::new(&s);
        let mut el = DataElement::default();
        let mut ev = Event::new(&s);
        let mut back = Event::new(&d.schema);
        for (set, want) in [
            (None, ValueRef::None),
            (Some(""), ValueRef::Str(b"")),
            (None, ValueRef::Str(b"")),
            (Some("x"), ValueRef::Str(b"x")),
            (Some(""), ValueRef::Str(b"")),
        ] {
            ev.set_raw(&[0; 32]);
            if let Some(v) = set {
                ev.set_str(error, v);
            }
            assert_eq!(ev.get(error), want, "the source event, set to {set:?}");
            enc.encode(&s, &ev, &mut el);
            d.decode(&el, &mut back).unwrap();
            assert_eq!(back.get(error), want, "set to {set:?}");
        }
        // From a server that does not say what it left unset (upstream's),
        // an empty string payload is "", as upstream's clients read it.
        let mut fresh = Event::new(&s);
        fresh.set_raw(&[0; 32]);
        enc.encode(&s, &fresh, &mut el);
        assert_eq!(el.unset_payloads.len(), 1, "error is unset: {el:?}");
        el.unset_payloads.clear();
        let mut back = Event::new(&d.schema);
        d.decode(&el, &mut back).unwrap();
        assert_eq!(back.get(error), ValueRef::Str(b""));
    }

    /// A layout as another server may send it: the shared payload at
    /// index 1, big-endian, a kind array, a wrong-size scalar.
    #[test]
    fn decodes_foreign_layouts() {
        let mk =
            |name: &str, idx: u32, payload: u32, offs: u32, size: u32, kind: i32, flags: u32| {
                Field {
                    name: name.into(),
                    full_name: name.into(),
                    index: idx,
                    payload_index: payload,
                    offs,
                    size,
                    flags,
                    kind,
                    ..Field::default()
                }
            };
        let ds = DataSource {
            id: 0,
            name: "x".into(),
            r#type: source_type::SINGLE,
            flags: if cfg!(target_endian = "big") {
                0
            } else {
                SOURCE_FLAG_BIG_ENDIAN
            },
            fields: vec![
                mk("s", 0, 0, 0, 0, Kind::String as i32, 0),
                mk(
                    "pid",
                    1,
                    1,
                    0,
                    4,
                    Kind::Uint32 as i32,
                    field_flags::STATIC_MEMBER,
                ),
                mk(
                    "arr",
                    2,
                    1,
                    4,
                    8,
                    Kind::Uint32 as i32 | ARRAY_KIND,
                    field_flags::STATIC_MEMBER,
                ),
                mk(
                    "odd",
                    3,
                    1,
                    12,
                    3,
                    Kind::Uint32 as i32,
                    field_flags::STATIC_MEMBER,
                ),
                mk("n", 4, 2, 0, 2, Kind::Uint16 as i32, 0),
            ],
            ..DataSource::default()
        };
        let d = Decoder::new(&ds).unwrap();
        assert_eq!(d.schema.raw_size, 15);
        let mut raw = vec![0u8; 15];
        raw[0..4].copy_from_slice(&7u32.to_be_bytes());
        let el = DataElement {
            payload: vec![b"hi".to_vec(), raw, 9u16.to_be_bytes().to_vec()],
            ..DataElement::default()
        };
        let mut ev = Event::new(&d.schema);
        d.decode(&el, &mut ev).unwrap();
        let get = |n: &str| ev.get(d.schema.field(d.schema.field_by_name(n).unwrap()));
        assert_eq!(get("pid"), ValueRef::U64(7));
        assert_eq!(get("s"), ValueRef::Str(b"hi"));
        assert_eq!(get("n"), ValueRef::U64(9));
        assert!(matches!(get("arr"), ValueRef::Bytes(_)));
        assert!(matches!(get("odd"), ValueRef::Bytes(_)));
    }

    #[test]
    fn refuses_bad_layouts_and_events() {
        let s = sample();
        let mut ds = data_source(0, &s);
        ds.fields[1].parent = 5;
        assert!(matches!(Decoder::new(&ds), Err(WireError::Parent { .. })));
        let mut ds = data_source(0, &s);
        ds.fields[2].payload_index = 4;
        assert!(matches!(
            Decoder::new(&ds),
            Err(WireError::SeveralStaticPayloads { .. })
        ));
        let mut ds = data_source(0, &s);
        ds.fields[1].offs = u32::MAX;
        assert!(matches!(Decoder::new(&ds), Err(WireError::TooLarge { .. })));
        let mut ds = data_source(0, &s);
        ds.fields[3].index = 9;
        assert!(matches!(
            Decoder::new(&ds),
            Err(WireError::FieldIndex { .. })
        ));
        let mut ds = data_source(0, &s);
        ds.fields[1].full_name = "proc".into();
        assert!(matches!(Decoder::new(&ds), Err(WireError::Schema(_))));
        let d = Decoder::new(&data_source(0, &s)).unwrap();
        let mut ev = Event::new(&d.schema);
        assert!(matches!(
            d.decode(&DataElement::default(), &mut ev),
            Err(WireError::MissingPayload { .. })
        ));
        let mut el = DataElement::default();
        Encoder::new(&s).encode(&s, &filled(&s), &mut el);
        // k8s.uid's payload: a u64 cut short.
        let slot = 1 + match s.field(s.field_by_name("k8s.uid").unwrap()).loc {
            Location::Owned { slot } => usize::from(slot),
            Location::Raw { .. } => unreachable!(),
        };
        el.payload[slot].truncate(3);
        assert!(matches!(
            d.decode(&el, &mut ev),
            Err(WireError::ScalarSize { .. })
        ));
    }

    /// Events batched as the daemon sends them read back, in place, as
    /// they were, and as prost reads them.
    #[test]
    fn unchanged_values_are_kept_not_written() {
        // A printer reuses what it made of values kept since (the JSON
        // printer's memoized objects): the decoder keeps what did not
        // change, and writes what did.
        let s = sample();
        let d = Decoder::new(&data_source(0, &s)).unwrap();
        let enc = Encoder::new(&s);
        let f = |n: &str| d.schema.field(d.schema.field_by_name(n).unwrap());
        let mut scratch = ElementScratch::default();
        let mut back = Event::new(&d.schema);
        let mut bytes = Vec::new();
        let mut unset = Vec::new();
        let mut decode = |ev: &Event, back: &mut Event| {
            bytes.clear();
            enc.push_event(&s, ev, &mut bytes, &mut unset);
            let el = elements(&bytes).next().unwrap().unwrap();
            d.decode_bytes(el, &mut scratch, back).unwrap();
            back.generation()
        };
        let first = filled(&s);
        let g1 = decode(&first, &mut back);
        for name in ["error", "k8s.uid", "score", "ok"] {
            assert!(!back.unchanged_since(f(name), g1 - 1), "{name}: written");
        }
        let g2 = decode(&first, &mut back);
        for name in ["error", "k8s.uid", "score", "ok"] {
            assert!(back.unchanged_since(f(name), g1), "{name}: kept");
            assert_eq!(
                back.get(f(name)),
                first.get(s.field(s.field_by_name(name).unwrap()))
            );
        }
        // Changed values are written; -0.0 is not 0.0.
        let mut next = filled(&s);
        let sf = |n: &str| s.field(s.field_by_name(n).unwrap());
        next.set_str(sf("error"), "EPERM");
        next.set_value(sf("score"), Value::F64(-0.0));
        let mut zero = filled(&s);
        zero.set_value(sf("score"), Value::F64(0.0));
        decode(&zero, &mut back);
        let g4 = decode(&next, &mut back);
        assert!(!back.unchanged_since(f("error"), g4 - 1));
        assert_eq!(back.get(f("error")), ValueRef::Str(b"EPERM"));
        assert!(!back.unchanged_since(f("score"), g4 - 1));
        assert_eq!(back.get(f("score")), ValueRef::F64(-0.0));
        assert!(back.unchanged_since(f("k8s.uid"), g2));
        // An unset string after a set one reads unset, not kept.
        let mut gone = filled(&s);
        gone.set_raw(&[7; 32]);
        decode(&gone, &mut back);
        assert_eq!(back.get(f("error")), ValueRef::Str(b""));
    }

    #[test]
    fn push_event_writes_what_push_element_writes() {
        let s = sample();
        let enc = Encoder::new(&s);
        let f = |n: &str| s.field(s.field_by_name(n).unwrap());
        let mut events = vec![filled(&s)];
        // Unset (listed in unset_payloads), and values whose lengths
        // take one, two and three bytes: the element's length varint
        // shrinks, fits, grows.
        let mut ev = filled(&s);
        ev.set_raw(&[7; 32]);
        events.push(ev);
        for len in [0, 100, 127, 128, 200, 16_000, 16_383, 16_384, 70_000] {
            let mut ev = filled(&s);
            ev.set_str(f("error"), &"e".repeat(len));
            events.push(ev);
        }
        // A number in a string field: its decimal text, long for an f64.
        let mut ev = filled(&s);
        ev.set_value(f("error"), Value::F64(1e300));
        events.push(ev);
        let mut ev = filled(&s);
        ev.set_value(f("error"), Value::I64(-7));
        events.push(ev);
        let (mut want, mut got) = (Vec::new(), Vec::new());
        begin_batch(9, &mut want);
        begin_batch(9, &mut got);
        let mut el = DataElement::default();
        let mut unset = Vec::new();
        for ev in &events {
            enc.encode(&s, ev, &mut el);
            push_element(&el, &mut want);
            let at = got.len();
            enc.push_event(&s, ev, &mut got, &mut unset);
            assert_eq!(got[at..], want[at..], "element {}", events.len());
        }
        assert_eq!(got, want);
    }

    #[test]
    fn batches_read_in_place() {
        use prost::Message as _;
        let s = sample();
        let d = Decoder::new(&data_source(0, &s)).unwrap();
        let enc = Encoder::new(&s);
        let error = s.field(s.field_by_name("error").unwrap());
        let mut sent = Vec::new();
        let mut batch = Vec::new();
        let mut el = DataElement::default();
        begin_batch(41, &mut batch);
        for i in 0..3u32 {
            let mut ev = filled(&s);
            if i == 1 {
                // Unset: listed in unset_payloads.
                ev.set_raw(&[7; 32]);
            }
            enc.encode(&s, &ev, &mut el);
            push_element(&el, &mut batch);
            sent.push(ev);
        }
        let decoded = GadgetDataArray::decode(batch.as_slice()).unwrap();
        assert_eq!(decoded.seq, 41);
        // Byte for byte what prost writes.
        assert_eq!(batch, decoded.encode_to_vec());
        assert_eq!(decoded.data_array.len(), 3);
        let mut scratch = ElementScratch::default();
        let mut back = Event::new(&d.schema);
        let mut n = 0;
        for (i, bytes) in elements(&batch).enumerate() {
            let bytes = bytes.unwrap();
            d.decode_bytes(bytes, &mut scratch, &mut back).unwrap();
            let payloads: Vec<&[u8]> = scratch
                .payloads()
                .iter()
                .map(|&(a, b)| &bytes[a..b])
                .collect();
            let want: Vec<&[u8]> = decoded.data_array[i]
                .payload
                .iter()
                .map(Vec::as_slice)
                .collect();
            assert_eq!(payloads, want);
            assert_eq!(scratch.unset(), decoded.data_array[i].unset_payloads);
            for f in s.fields() {
                assert_eq!(back.get(f), sent[i].get(f), "event {i}: {}", f.name);
            }
            n += 1;
        }
        assert_eq!(n, 3);
        assert_eq!(back.get(error), ValueRef::Str(b"ENOENT"));
        // A GadgetData's one element reads the same way.
        let one = GadgetData {
            node: "n".into(),
            seq: 1,
            data: Some(el.clone()),
        }
        .encode_to_vec();
        let els: Vec<_> = elements(&one).collect();
        assert_eq!(els.len(), 1);
        d.decode_bytes(els[0].as_ref().unwrap(), &mut scratch, &mut back)
            .unwrap();
        // Cut anywhere, a batch is an error or fewer elements, never a
        // panic; cut inside an element, that element is an error.
        for cut in 0..batch.len() {
            let mut ok = 0;
            for e in elements(&batch[..cut]) {
                match e {
                    Ok(b) => {
                        if d.decode_bytes(b, &mut scratch, &mut back).is_ok() {
                            ok += 1;
                        }
                    }
                    Err(e) => assert!(matches!(e, WireError::Malformed { .. }), "{e}"),
                }
            }
            assert!(ok < 3, "cut at {cut}");
        }
        // Fields prost skips are skipped: an unknown varint, fixed64 and
        // a group around the elements.
        let mut odd = vec![
            0x28, 0x05, 0x31, 1, 2, 3, 4, 5, 6, 7, 8, 0x3b, 0x08, 0x01, 0x3c,
        ];
        odd.extend_from_slice(&batch);
        assert_eq!(
            GadgetDataArray::decode(odd.as_slice())
                .unwrap()
                .data_array
                .len(),
            3
        );
        assert_eq!(elements(&odd).filter(Result::is_ok).count(), 3);
        // A node that is not UTF-8 is refused, by prost and here.
        let bad = [0x0a, 0x01, 0xff];
        assert!(GadgetDataArray::decode(bad.as_slice()).is_err());
        assert!(matches!(
            elements(&bad).next(),
            Some(Err(WireError::Malformed { .. }))
        ));
    }

    #[test]
    fn params_round_trip() {
        let specs = [
            ParamSpec {
                key: "pid".into(),
                full_name: "operator.oci.ebpf.pid".into(),
                description: "the pid".into(),
                default: "0".into(),
                ty: ParamType::Int {
                    bits: 32,
                    signed: false,
                },
                group: "Gadget".into(),
                alias: None,
            },
            ParamSpec {
                key: "output".into(),
                full_name: "operator.cli.output".into(),
                description: String::new(),
                default: "columns".into(),
                ty: ParamType::Choice(vec!["columns".into(), "json".into()]),
                group: String::new(),
                alias: Some('o'),
            },
            ParamSpec {
                key: "interval".into(),
                full_name: "operator.oci.ebpf.interval".into(),
                description: String::new(),
                default: "1s".into(),
                ty: ParamType::Duration,
                group: String::new(),
                alias: None,
            },
            ParamSpec {
                key: "x".into(),
                full_name: "x".into(),
                description: String::new(),
                default: String::new(),
                ty: ParamType::Bool,
                group: String::new(),
                alias: None,
            },
        ];
        for s in &specs {
            let p = param(s);
            assert_eq!(format!("{}{}", p.prefix, p.key), s.full_name);
            assert_eq!(&param_spec(&p), s);
        }
        assert_eq!(param(&specs[0]).type_hint, "uint32");
        assert_eq!(int_hint("int"), Some((64, true)));
        assert_eq!(int_hint("uint7"), None);
        assert_eq!(int_hint("string"), None);
    }
}
