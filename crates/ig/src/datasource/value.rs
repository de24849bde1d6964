//! One event and zero-copy reads of its field values.

use super::{FieldDef, FieldKind, Location, Schema};

/// A value set by an operator in user space.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    /// Not set.
    #[default]
    None,
    /// A boolean.
    Bool(bool),
    /// An unsigned integer.
    U64(u64),
    /// A signed integer.
    I64(i64),
    /// A float.
    F64(f64),
    /// A string.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

/// A borrowed view of one field's value. Reading never allocates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    /// No value: an owned field nobody set, or a struct parent.
    None,
    /// A boolean.
    Bool(bool),
    /// An unsigned integer, widened.
    U64(u64),
    /// A signed integer, widened.
    I64(i64),
    /// A float, widened.
    F64(f64),
    /// String bytes, not guaranteed UTF-8 (kernel strings are bytes).
    Str(&'a [u8]),
    /// Opaque bytes.
    Bytes(&'a [u8]),
}

/// One record of a data source. Events are reused from sample to sample:
/// [`Event::set_raw`] overwrites the raw bytes and retires the owned values
/// while keeping their allocations.
///
/// Retiring is a generation count, not a clearing pass: an owned value is
/// current only if it was set since the last `set_raw`, and a retired one
/// reads as [`ValueRef::None`]. A handler that knows the value it would
/// write equals the one it wrote for the previous event (same pid, same
/// flags) calls [`Event::keep`] instead of writing it again.
#[derive(Debug, Default)]
pub struct Event {
    /// Which event object this is, unique in the process (0: made by
    /// `Default`). Generations count per object, so two events may be at
    /// the same generation: a printer that reuses the text of a previous
    /// event checks this too (the elements of an array are distinct
    /// events, all at their first generations).
    id: u64,
    raw: Vec<u8>,
    owned: Vec<Value>,
    /// Per owned slot, the last generation it holds a value for (written
    /// or kept).
    set_in: Vec<u64>,
    /// Per owned slot, the generation its value was last written in.
    written_in: Vec<u64>,
    /// Advances at every `set_raw`; starts at 1 so that 0 means "never".
    generation: u64,
}

/// The next [`Event::id`]: one atomic add per event object made (at a
/// run's start, or per element of an array), none per sample.
static NEXT_EVENT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_event_id() -> u64 {
    NEXT_EVENT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Clone for Event {
    /// A copy is another event object: a new id.
    fn clone(&self) -> Self {
        Self {
            id: next_event_id(),
            raw: self.raw.clone(),
            owned: self.owned.clone(),
            set_in: self.set_in.clone(),
            written_in: self.written_in.clone(),
            generation: self.generation,
        }
    }
}

impl Event {
    /// An empty event shaped for `schema`.
    pub fn new(schema: &Schema) -> Self {
        Self {
            id: next_event_id(),
            raw: vec![0; schema.raw_size as usize],
            owned: vec![Value::None; schema.owned_slots()],
            set_in: vec![0; schema.owned_slots()],
            written_in: vec![0; schema.owned_slots()],
            generation: 1,
        }
    }

    /// Load a kernel sample. A short sample (variable-size events written
    /// with `gadget_output_buf`) is zero-padded; a longer one is truncated to
    /// the schema's size. Returns whether the sample was truncated.
    pub fn set_raw(&mut self, sample: &[u8]) -> bool {
        let n = sample.len().min(self.raw.len());
        self.raw[..n].copy_from_slice(&sample[..n]);
        self.raw[n..].fill(0);
        self.retire_owned();
        sample.len() > self.raw.len()
    }

    /// Retire every owned value (they read as none until set or kept).
    fn retire_owned(&mut self) {
        self.generation += 1;
    }

    /// This event's generation: it advances at every [`Event::set_raw`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Which event object this is (see the field's doc): with
    /// [`Event::generation`], names one state of one event in the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether `field` (owned) holds a value that has not been written
    /// since generation `since`, only kept: it is then the value it had in
    /// that generation. Printers use it to reuse text made back then.
    pub fn unchanged_since(&self, field: &FieldDef, since: u64) -> bool {
        let Location::Owned { slot } = field.loc else {
            return false;
        };
        let i = usize::from(slot);
        self.set_in.get(i) == Some(&self.generation)
            && self.written_in.get(i).is_some_and(|w| *w <= since)
    }

    /// Keep `field`'s value from the previous event as this event's value,
    /// without writing it again. Returns `false` (and changes nothing) if
    /// the value was not set for the previous event: the caller then writes
    /// it. Only the operator that writes a field may keep it, and only when
    /// it knows the value is the same.
    pub fn keep(&mut self, field: &FieldDef) -> bool {
        let Location::Owned { slot } = field.loc else {
            return false;
        };
        match self.set_in.get_mut(usize::from(slot)) {
            Some(g) if *g != 0 && *g + 1 == self.generation => {
                *g = self.generation;
                true
            }
            _ => false,
        }
    }

    /// [`Event::keep`] for the owned slots `slots` (see
    /// [`FieldDef::owned_slot`]; one that is none keeps nothing): an
    /// operator that fills a group of fields from one lookup keeps them in
    /// one pass. Keeps each slot it can; returns whether it kept all.
    pub fn keep_slots(&mut self, slots: &[u16]) -> bool {
        let g = self.generation;
        let mut all = true;
        for &slot in slots {
            match self.set_in.get_mut(usize::from(slot)) {
                Some(s) if *s != 0 && *s + 1 == g => *s = g,
                _ => all = false,
            }
        }
        all
    }

    /// [`Event::unchanged_since`] of every owned slot of `slots`.
    pub fn unchanged_slots_since(&self, slots: &[u16], since: u64) -> bool {
        slots.iter().all(|&slot| {
            let i = usize::from(slot);
            self.set_in.get(i) == Some(&self.generation)
                && self.written_in.get(i).is_some_and(|w| *w <= since)
        })
    }

    /// Mark an owned slot as written in this generation.
    fn mark(&mut self, slot: u16) {
        let i = usize::from(slot);
        if let (Some(s), Some(w)) = (self.set_in.get_mut(i), self.written_in.get_mut(i)) {
            *s = self.generation;
            *w = self.generation;
        }
    }

    /// Whether owned slot `slot` holds a value of this generation.
    fn current(&self, slot: u16) -> bool {
        self.set_in.get(usize::from(slot)) == Some(&self.generation)
    }

    /// The raw sample, as the kernel wrote it.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The raw sample, writable: operators that rewrite kernel fields in
    /// place (a WASM guest's `fieldSet`) write the bytes a field's
    /// [`Location::Raw`] names.
    pub fn raw_mut(&mut self) -> &mut [u8] {
        &mut self.raw
    }

    /// Read a field. Out-of-range locations (impossible for a schema built by
    /// `SchemaBuilder`) read as [`ValueRef::None`] rather than panicking.
    pub fn get<'a>(&'a self, field: &FieldDef) -> ValueRef<'a> {
        match field.loc {
            Location::Raw { offset, size } => {
                let start = offset as usize;
                let Some(bytes) = self.raw.get(start..start + size as usize) else {
                    return ValueRef::None;
                };
                decode_raw(field.kind, bytes)
            }
            // Retired: as if cleared. A string or byte slot keeps its type,
            // so it reads as empty, as it did when set_raw cleared it.
            Location::Owned { slot } if !self.current(slot) => {
                match self.owned.get(usize::from(slot)) {
                    Some(Value::Str(_)) => ValueRef::Str(b""),
                    Some(Value::Bytes(_)) => ValueRef::Bytes(b""),
                    _ => ValueRef::None,
                }
            }
            Location::Owned { slot } => match self.owned.get(usize::from(slot)) {
                None | Some(Value::None) => ValueRef::None,
                Some(Value::Bool(b)) => ValueRef::Bool(*b),
                Some(Value::U64(v)) => ValueRef::U64(*v),
                Some(Value::I64(v)) => ValueRef::I64(*v),
                Some(Value::F64(v)) => ValueRef::F64(*v),
                Some(Value::Str(s)) => ValueRef::Str(s.as_bytes()),
                Some(Value::Bytes(b)) => ValueRef::Bytes(b),
            },
        }
    }

    /// Mutable access to an owned slot, to set a value in place (reusing a
    /// `String`'s capacity avoids an allocation per event).
    pub fn owned_mut(&mut self, field: &FieldDef) -> Option<&mut Value> {
        match field.loc {
            Location::Owned { slot } => {
                self.mark(slot);
                self.owned.get_mut(usize::from(slot))
            }
            Location::Raw { .. } => None,
        }
    }

    /// The owned string of `field`, emptied, to format a value into in
    /// place: after the first event its capacity is reused, so formatting
    /// does not allocate. `None` for a field that is not owned.
    pub fn str_buf(&mut self, field: &FieldDef) -> Option<&mut String> {
        let v = self.owned_mut(field)?;
        if !matches!(v, Value::Str(_)) {
            *v = Value::Str(String::new());
        }
        match v {
            Value::Str(buf) => {
                buf.clear();
                Some(buf)
            }
            _ => None,
        }
    }

    /// Set an owned field to `v` (events an operator builds in user space:
    /// process or cgroup tables). Does nothing for a raw field.
    pub fn set_value(&mut self, field: &FieldDef, v: Value) {
        if let Some(slot) = self.owned_mut(field) {
            *slot = v;
        }
    }

    /// Set an owned bytes field, reusing the previous buffer.
    pub fn set_bytes(&mut self, field: &FieldDef, b: &[u8]) {
        if let Some(v) = self.owned_mut(field) {
            match v {
                Value::Bytes(buf) => {
                    buf.clear();
                    super::copy::extend(buf, b);
                }
                other => *other = Value::Bytes(b.to_vec()),
            }
        }
    }

    /// Set an owned string field, reusing the previous buffer.
    pub fn set_str(&mut self, field: &FieldDef, s: &str) {
        if let Some(v) = self.owned_mut(field) {
            match v {
                Value::Str(buf) => {
                    buf.clear();
                    super::copy::push_str(buf, s);
                }
                other => *other = Value::Str(s.to_owned()),
            }
        }
    }
}

/// The length of the C string in `b`: up to its first NUL, or all of `b`.
///
/// Eight bytes at a time: every string field of every event is scanned
/// (a 16-byte `comm` cost ~110 instructions byte by byte, more than the
/// whole otel-metrics collector around it; bench/metrics.md).
#[inline]
pub fn c_str_len(b: &[u8]) -> usize {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let v = u64::from_le_bytes(*c.first_chunk::<8>().unwrap_or(&[1; 8]));
        // The lowest set bit of this marks the first zero byte exactly
        // (a borrow can only mark bytes above it).
        let zero = v.wrapping_sub(LOW) & !v & HIGH;
        if zero != 0 {
            return at + (zero.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let rest = chunks.remainder();
    at + rest.iter().position(|&c| c == 0).unwrap_or(rest.len())
}

/// The value of `kind` in the bytes `b` of a sample (what [`Event::get`]
/// returns for a field in the raw sample). Printers that compile their
/// plan read the sample themselves and fall back on this for rare kinds.
pub fn decode(kind: FieldKind, b: &[u8]) -> ValueRef<'_> {
    decode_raw(kind, b)
}

#[inline]
fn decode_raw(kind: FieldKind, b: &[u8]) -> ValueRef<'_> {
    #[inline(always)]
    fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
        // The usual case, a field as wide as its type: a fixed-size load
        // (a copy of variable length would be a memcpy call per field).
        if let Some(a) = b.first_chunk::<N>() {
            return *a;
        }
        let mut a = [0; N];
        let n = b.len().min(N);
        a[..n].copy_from_slice(&b[..n]);
        a
    }
    match kind {
        FieldKind::Bool => ValueRef::Bool(b.iter().any(|&x| x != 0)),
        FieldKind::U8 => ValueRef::U64(u64::from(arr::<1>(b)[0])),
        FieldKind::U16 => ValueRef::U64(u64::from(u16::from_ne_bytes(arr(b)))),
        FieldKind::U32 => ValueRef::U64(u64::from(u32::from_ne_bytes(arr(b)))),
        FieldKind::U64 => ValueRef::U64(u64::from_ne_bytes(arr(b))),
        FieldKind::I8 => ValueRef::I64(i64::from(i8::from_ne_bytes(arr(b)))),
        FieldKind::I16 => ValueRef::I64(i64::from(i16::from_ne_bytes(arr(b)))),
        FieldKind::I32 => ValueRef::I64(i64::from(i32::from_ne_bytes(arr(b)))),
        FieldKind::I64 => ValueRef::I64(i64::from_ne_bytes(arr(b))),
        FieldKind::F32 => ValueRef::F64(f64::from(f32::from_ne_bytes(arr(b)))),
        FieldKind::F64 => ValueRef::F64(f64::from_ne_bytes(arr(b))),
        FieldKind::CString | FieldKind::String => ValueRef::Str(&b[..c_str_len(b)]),
        FieldKind::Bytes => ValueRef::Bytes(b),
        FieldKind::Struct => ValueRef::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::{SchemaBuilder, SourceKind};

    #[test]
    fn c_str_len_stops_at_the_first_nul_in_every_position() {
        for len in 0..40 {
            let mut b = vec![0xffu8; len];
            assert_eq!(c_str_len(&b), len, "no NUL in {len} bytes");
            for nul in 0..len {
                b.fill(0x80);
                b[nul] = 0;
                // Bytes after the NUL that a borrow could confuse.
                if nul + 1 < len {
                    b[nul + 1] = 1;
                }
                assert_eq!(c_str_len(&b), nul, "NUL at {nul} of {len}");
            }
        }
        assert_eq!(c_str_len(b"bash\0\0\0\0\0\0\0\0\0\0\0\0"), 4);
    }

    #[test]
    fn reads_scalars_strings_and_owned_values() {
        let mut b = SchemaBuilder::new("t", SourceKind::Single, 16);
        let pid = b.add_raw("pid".into(), FieldKind::U32, 0, 4, None).unwrap();
        let err = b.add_raw("err".into(), FieldKind::I32, 4, 4, None).unwrap();
        let comm = b
            .add_raw("comm".into(), FieldKind::CString, 8, 8, None)
            .unwrap();
        let user = b.add_owned("user".into(), FieldKind::String, None).unwrap();
        let s = b.build();
        let mut ev = Event::new(&s);
        let mut sample = Vec::new();
        sample.extend_from_slice(&42u32.to_ne_bytes());
        sample.extend_from_slice(&(-2i32).to_ne_bytes());
        sample.extend_from_slice(b"cat\0junk");
        assert!(!ev.set_raw(&sample));
        assert_eq!(ev.get(s.field(pid)), ValueRef::U64(42));
        assert_eq!(ev.get(s.field(err)), ValueRef::I64(-2));
        assert_eq!(ev.get(s.field(comm)), ValueRef::Str(b"cat"));
        assert_eq!(ev.get(s.field(user)), ValueRef::None);
        ev.set_str(s.field(user), "root");
        assert_eq!(ev.get(s.field(user)), ValueRef::Str(b"root"));
        // A short sample is zero-padded and clears owned values.
        ev.set_raw(&7u32.to_ne_bytes());
        assert_eq!(ev.get(s.field(pid)), ValueRef::U64(7));
        assert_eq!(ev.get(s.field(comm)), ValueRef::Str(b""));
        assert_eq!(ev.get(s.field(user)), ValueRef::Str(b""));
        // A long one is truncated and says so.
        assert!(ev.set_raw(&[1; 40]));
    }

    #[test]
    fn kept_values_carry_over_and_say_since_when_they_are_unchanged() {
        let mut b = SchemaBuilder::new("t", SourceKind::Single, 4);
        let n = b.add_raw("n".into(), FieldKind::U32, 0, 4, None).unwrap();
        let f = b.add_owned("f".into(), FieldKind::String, None).unwrap();
        let s = b.build();
        let (f, n) = (s.field(f), s.field(n));
        let mut ev = Event::new(&s);
        ev.set_raw(&[0; 4]);
        // Nothing to keep before the first write; raw fields are not kept.
        assert!(!ev.keep(f));
        assert!(!ev.keep(n));
        ev.set_str(f, "root");
        let g1 = ev.generation();
        assert!(!ev.unchanged_since(f, g1 - 1), "written in g1");
        ev.set_raw(&[0; 4]);
        assert!(ev.keep(f), "set in the previous event");
        assert_eq!(ev.get(f), ValueRef::Str(b"root"));
        assert!(ev.unchanged_since(f, g1));
        ev.set_raw(&[0; 4]);
        // Written again with the same text: changed, as far as anyone knows.
        ev.set_str(f, "root");
        assert!(!ev.unchanged_since(f, g1));
        // An event that neither writes nor keeps it breaks the chain.
        ev.set_raw(&[0; 4]);
        assert_eq!(ev.get(f), ValueRef::Str(b""));
        assert!(!ev.unchanged_since(f, g1));
        ev.set_raw(&[0; 4]);
        assert!(!ev.keep(f), "not set in the previous event");
        assert_eq!(ev.get(f), ValueRef::Str(b""));
    }

    #[test]
    fn str_buf_formats_in_place_and_keeps_capacity() {
        use std::fmt::Write as _;
        let mut b = SchemaBuilder::new("t", SourceKind::Single, 4);
        let raw = b.add_raw("n".into(), FieldKind::U32, 0, 4, None).unwrap();
        let f = b.add_owned("f".into(), FieldKind::String, None).unwrap();
        let s = b.build();
        let mut ev = Event::new(&s);
        assert!(ev.str_buf(s.field(raw)).is_none());
        write!(ev.str_buf(s.field(f)).unwrap(), "x{}", 42).unwrap();
        assert_eq!(ev.get(s.field(f)), ValueRef::Str(b"x42"));
        let cap = ev.str_buf(s.field(f)).unwrap().capacity();
        ev.set_raw(&[0; 4]);
        let buf = ev.str_buf(s.field(f)).unwrap();
        assert!(buf.is_empty() && buf.capacity() == cap);
    }

    #[test]
    fn unterminated_cstring_reads_whole_buffer() {
        let mut b = SchemaBuilder::new("t", SourceKind::Single, 4);
        let c = b
            .add_raw("c".into(), FieldKind::CString, 0, 4, None)
            .unwrap();
        let s = b.build();
        let mut ev = Event::new(&s);
        ev.set_raw(b"abcd");
        assert_eq!(ev.get(s.field(c)), ValueRef::Str(b"abcd"));
    }
}
