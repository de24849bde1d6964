//! Reading and writing the fields of an event.

use std::any::Any;

use crate::datasources::{Data, Field, FieldKind};
use crate::helpers::{bytes_to_buf_ptr, from_c_string, out_buf, string_to_buf_ptr};

#[link(wasm_import_module = "ig")]
extern "C" {
    #[link_name = "fieldGetScalar"]
    fn ig_get_scalar(field: u32, data: u32, kind: u32, err: u32) -> u64;
    #[link_name = "fieldGetBuffer"]
    fn ig_get_buffer(field: u32, data: u32, kind: u32, dst: u64) -> i32;
    #[link_name = "fieldSet"]
    fn ig_set(field: u32, data: u32, kind: u32, value: u64) -> u32;
    #[link_name = "fieldAddTag"]
    fn ig_add_tag(field: u32, tag: u64) -> u32;
}

pub type Result<T> = std::result::Result<T, String>;

/// A scalar value read from a field.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldData {
    Bool(bool),
    Float32(f32),
    Float64(f64),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Uint8(u8),
    Uint16(u16),
    Uint32(u32),
    Uint64(u64),
}

impl Field {
    /// The field's scalar as the host passes it (u64; floats as bits).
    fn scalar(&self, data: Data, kind: FieldKind) -> Result<u64> {
        let mut err: u32 = 0;
        // SAFETY: `err` is a live u32 the host may write a flag into.
        let v = unsafe { ig_get_scalar(self.0, data.0, kind as u32, &mut err as *mut u32 as u32) };
        if err != 0 {
            return Err(format!("reading field {} as {kind:?}", self.0));
        }
        Ok(v)
    }

    fn set(&self, data: Data, kind: FieldKind, value: u64) -> Result<()> {
        // SAFETY: `value` is a scalar, or a buffer the caller keeps alive
        // for the call; the host only reads it.
        match unsafe { ig_set(self.0, data.0, kind as u32, value) } {
            0 => Ok(()),
            _ => Err(format!("setting field {} as {kind:?}", self.0)),
        }
    }

    /// The value of a scalar field, read as `kind` (strings and bytes:
    /// [`Field::string`], [`Field::bytes`]).
    pub fn get_data(&self, data: Data, kind: FieldKind) -> Result<FieldData> {
        let v = match kind {
            FieldKind::String | FieldKind::CString => {
                return Err("a string field is read with string()".to_string())
            }
            FieldKind::Bytes => return Err("a bytes field is read with bytes()".to_string()),
            FieldKind::Invalid => return Err("kind Invalid has no value".to_string()),
            k => self.scalar(data, k)?,
        };
        Ok(match kind {
            FieldKind::Bool => FieldData::Bool(v != 0),
            FieldKind::Int8 => FieldData::Int8(v as i8),
            FieldKind::Int16 => FieldData::Int16(v as i16),
            FieldKind::Int32 => FieldData::Int32(v as i32),
            FieldKind::Int64 => FieldData::Int64(v as i64),
            FieldKind::Uint8 => FieldData::Uint8(v as u8),
            FieldKind::Uint16 => FieldData::Uint16(v as u16),
            FieldKind::Uint32 => FieldData::Uint32(v as u32),
            FieldKind::Uint64 => FieldData::Uint64(v),
            FieldKind::Float32 => FieldData::Float32(f32::from_bits(v as u32)),
            FieldKind::Float64 => FieldData::Float64(f64::from_bits(v)),
            _ => unreachable!("non-scalar kinds returned above"),
        })
    }

    /// Set the field from a `bool`, an integer (`i8`..`u64`), a float, a
    /// `String` or `&str`, or bytes (`Vec<u8>`, `&[u8]`); the kind is the
    /// value's type.
    pub fn set_data(&self, data: Data, value: &(dyn Any + Send)) -> Result<()> {
        macro_rules! scalars {
            ($($t:ty => $kind:ident, $conv:expr;)*) => {
                $(if let Some(v) = value.downcast_ref::<$t>() {
                    let conv: fn(&$t) -> u64 = $conv;
                    return self.set(data, FieldKind::$kind, conv(v));
                })*
            };
        }
        scalars! {
            bool => Bool, |v| u64::from(*v);
            i8 => Int8, |v| *v as u64;
            i16 => Int16, |v| *v as u64;
            i32 => Int32, |v| *v as u64;
            i64 => Int64, |v| *v as u64;
            u8 => Uint8, |v| u64::from(*v);
            u16 => Uint16, |v| u64::from(*v);
            u32 => Uint32, |v| u64::from(*v);
            u64 => Uint64, |v| *v;
            f32 => Float32, |v| u64::from(v.to_bits());
            f64 => Float64, |v| v.to_bits();
        }
        if let Some(s) = value.downcast_ref::<String>() {
            return self.set(data, FieldKind::String, string_to_buf_ptr(s).0);
        }
        if let Some(s) = value.downcast_ref::<&str>() {
            return self.set(data, FieldKind::String, string_to_buf_ptr(s).0);
        }
        if let Some(b) = value.downcast_ref::<Vec<u8>>() {
            return self.set(data, FieldKind::Bytes, bytes_to_buf_ptr(b).0);
        }
        if let Some(b) = value.downcast_ref::<&[u8]>() {
            return self.set(data, FieldKind::Bytes, bytes_to_buf_ptr(b).0);
        }
        Err("set_data takes a bool, an integer, a float, a string or bytes".to_string())
    }

    fn read_into(&self, data: Data, dst: u64) -> Result<u32> {
        // SAFETY: `dst` encodes a live buffer the caller lent for writing.
        match unsafe { ig_get_buffer(self.0, data.0, FieldKind::Bytes as u32, dst) } {
            n if n < 0 => Err(format!("reading field {} as bytes", self.0)),
            n => Ok(n as u32),
        }
    }

    /// The field as text, up to `max_size` bytes (and the first NUL).
    pub fn string(&self, data: Data, max_size: u32) -> Result<String> {
        let mut buf = vec![0u8; max_size as usize];
        let n = self.read_into(data, out_buf(&mut buf))? as usize;
        Ok(from_c_string(&buf[..n.min(buf.len())]))
    }

    /// Copy the field's bytes into `dst`; their number.
    pub fn bytes_into(&self, data: Data, dst: &mut [u8]) -> Result<u32> {
        self.read_into(data, out_buf(dst))
    }

    /// [`Field::bytes_into`] with upstream's signature: the host writes
    /// into `dst` although it is borrowed shared, which the compiler may
    /// not expect. Kept for guests written against upstream; prefer
    /// `bytes_into` (or [`Field::string`]).
    pub fn bytes(&self, data: Data, dst: &[u8]) -> Result<u32> {
        self.read_into(data, bytes_to_buf_ptr(dst).0)
    }

    /// Tag the field (in `gadgetInit`), e.g. `type:gadget_mntns_id`.
    pub fn add_tag(&self, tag: &str) -> Result<()> {
        // SAFETY: `tag` outlives the call; the host only reads it.
        match unsafe { ig_add_tag(self.0, string_to_buf_ptr(tag).0) } {
            0 => Ok(()),
            _ => Err(format!("adding tag {tag}")),
        }
    }
}
