//! Field access: `fieldGetScalar`, `fieldGetBuffer`, `fieldSet` and
//! `fieldAddTag`.
//!
//! Scalars travel as u64 (floats as their IEEE-754 bits, as upstream).
//! Fields of the kernel's sample are read and written in place, in the
//! host's byte order; fields added by the guest live in the event's owned
//! slots. Strings and bytes the guest writes count against the host-side
//! budget (`state::HostState::grow`).

use wasmtime::{Caller, Linker};

use super::state::{
    DataRef, Handle, HostState, SetupOp, kind_from_api, read_buf, write_dst, write_u32,
};
use crate::datasource::{FieldDef, FieldKind, Location, Value, ValueRef};

/// Resolve (field handle, data handle) to the field's definition and the
/// event's reference, checking they belong to the same data source.
fn resolve(
    c: &Caller<'_, HostState>,
    field: u32,
    data: u32,
    func: &str,
) -> Option<(FieldDef, DataRef)> {
    let s = c.data();
    let Some(Handle::Field(fsrc, fid)) = s.handle(field) else {
        s.warn(format_args!("{func}: {field} is not a field handle"));
        return None;
    };
    let (dsrc, d) = s.data(data)?;
    if fsrc != dsrc {
        s.warn(format_args!(
            "{func}: the field and the data belong to different data sources"
        ));
        return None;
    }
    // A light copy (kind and location) leaves `s` free to be borrowed
    // mutably for the event; it does not allocate.
    let schema = s.schemas.get(fsrc)?;
    let def = schema.fields().get(fid.index())?;
    Some((def.clone_light(), d))
}

/// What the accessors need of a field, without its name and annotations.
trait Light {
    fn clone_light(&self) -> FieldDef;
}

impl Light for FieldDef {
    fn clone_light(&self) -> FieldDef {
        FieldDef {
            name: String::new(),
            kind: self.kind,
            loc: self.loc,
            parent: None,
            tags: Vec::new(),
            annotations: Default::default(),
            hidden: self.hidden,
            order: self.order,
        }
    }
}

/// The value of `v` as `kind` in upstream's u64 encoding.
fn scalar(v: ValueRef<'_>, kind: FieldKind) -> Option<u64> {
    let (u, i, f) = match v {
        ValueRef::Bool(b) => (u64::from(b), i64::from(b), f64::from(u8::from(b))),
        ValueRef::U64(x) => (x, x as i64, x as f64),
        ValueRef::I64(x) => (x as u64, x, x as f64),
        ValueRef::F64(x) => (x as u64, x as i64, x),
        ValueRef::None => (0, 0, 0.0),
        ValueRef::Str(_) | ValueRef::Bytes(_) => return None,
    };
    Some(match kind {
        FieldKind::Bool => u64::from(u != 0),
        FieldKind::U8 => u64::from(u as u8),
        FieldKind::U16 => u64::from(u as u16),
        FieldKind::U32 => u64::from(u as u32),
        FieldKind::U64 => u,
        FieldKind::I8 => i64::from(i as i8) as u64,
        FieldKind::I16 => i64::from(i as i16) as u64,
        FieldKind::I32 => i64::from(i as i32) as u64,
        FieldKind::I64 => i as u64,
        FieldKind::F32 => u64::from((f as f32).to_bits()),
        FieldKind::F64 => f.to_bits(),
        _ => return None,
    })
}

/// Store `raw` (upstream's u64 encoding of `kind`) into the field.
fn set_scalar(
    ev: &mut crate::datasource::Event,
    def: &FieldDef,
    kind: FieldKind,
    raw: u64,
) -> bool {
    // The value, normalized to what the field holds.
    let val = match kind {
        FieldKind::Bool => Value::Bool(raw != 0),
        FieldKind::U8 => Value::U64(u64::from(raw as u8)),
        FieldKind::U16 => Value::U64(u64::from(raw as u16)),
        FieldKind::U32 => Value::U64(u64::from(raw as u32)),
        FieldKind::U64 => Value::U64(raw),
        FieldKind::I8 => Value::I64(i64::from(raw as i8)),
        FieldKind::I16 => Value::I64(i64::from(raw as i16)),
        FieldKind::I32 => Value::I64(i64::from(raw as i32)),
        FieldKind::I64 => Value::I64(raw as i64),
        FieldKind::F32 => Value::F64(f64::from(f32::from_bits(raw as u32))),
        FieldKind::F64 => Value::F64(f64::from_bits(raw)),
        _ => return false,
    };
    match def.loc {
        Location::Owned { .. } => match ev.owned_mut(def) {
            Some(slot) => {
                *slot = val;
                true
            }
            None => false,
        },
        Location::Raw { offset, size } => {
            let Some(n) = def.kind.scalar_size() else {
                return false;
            };
            let bytes: [u8; 8] = match (def.kind, val) {
                (FieldKind::F32, Value::F64(f)) => u64::from((f as f32).to_bits()).to_ne_bytes(),
                (FieldKind::F64, Value::F64(f)) => f.to_bits().to_ne_bytes(),
                (_, Value::Bool(b)) => u64::from(b).to_ne_bytes(),
                (_, Value::U64(u)) => u.to_ne_bytes(),
                (_, Value::I64(i)) => i.to_ne_bytes(),
                (_, Value::F64(f)) => (f as i64).to_ne_bytes(),
                _ => return false,
            };
            let start = offset as usize;
            let len = (n.min(size)) as usize;
            let Some(dst) = ev.raw_mut().get_mut(start..start + len) else {
                return false;
            };
            // Little-endian host: the low bytes of the u64 are the value.
            if cfg!(target_endian = "little") {
                dst.copy_from_slice(&bytes[..len]);
            } else {
                dst.copy_from_slice(&bytes[8 - len..]);
            }
            true
        }
    }
}

fn set_bytes(ev: &mut crate::datasource::Event, def: &FieldDef, b: &[u8]) -> bool {
    match def.loc {
        Location::Owned { .. } => match (def.kind, ev.owned_mut(def)) {
            (FieldKind::Bytes, Some(slot)) => {
                *slot = Value::Bytes(b.to_vec());
                true
            }
            (_, Some(_)) => {
                ev.set_str(def, &String::from_utf8_lossy(b));
                true
            }
            (_, None) => false,
        },
        Location::Raw { offset, size } => {
            // Fixed-size buffer of the sample: copy what fits, NUL-pad.
            let start = offset as usize;
            let Some(dst) = ev.raw_mut().get_mut(start..start + size as usize) else {
                return false;
            };
            let n = b.len().min(dst.len());
            dst[..n].copy_from_slice(&b[..n]);
            dst[n..].fill(0);
            b.len() <= size as usize
        }
    }
}

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "ig",
        "fieldGetScalar",
        |mut c: Caller<'_, HostState>, field: u32, data: u32, kind: u32, err_ptr: u32| -> wasmtime::Result<u64> {
            let value = (|| {
                let (def, d) = resolve(&c, field, data, "fieldGetScalar")?;
                let Some(kind) = kind_from_api(kind).filter(|k| k.scalar_size().is_some()) else {
                    c.data().warn(format_args!(
                        "fieldGetScalar: kind {kind} is not a scalar (use fieldGetBuffer for strings and bytes)"
                    ));
                    return None;
                };
                let s = c.data_mut();
                let ev = s.event_mut(d)?;
                scalar(ev.get(&def), kind)
            })();
            match value {
                Some(v) => Ok(v),
                None => {
                    if !write_u32(&mut c, err_ptr, 1) {
                        return Err(wasmtime::Error::msg(format!(
                            "fieldGetScalar: error pointer {err_ptr:#x} is outside the guest's memory"
                        )));
                    }
                    Ok(0)
                }
            }
        },
    )?;
    linker.func_wrap(
        "ig",
        "fieldGetBuffer",
        |mut c: Caller<'_, HostState>, field: u32, data: u32, kind: u32, dst: u64| -> i32 {
            let Some((def, d)) = resolve(&c, field, data, "fieldGetBuffer") else {
                return -1;
            };
            if !matches!(
                kind_from_api(kind),
                Some(FieldKind::String | FieldKind::CString | FieldKind::Bytes)
            ) {
                c.data().warn(format_args!(
                    "fieldGetBuffer: kind {kind} is not string or bytes"
                ));
                return -1;
            }
            let s = c.data_mut();
            let Some(ev) = s.event_mut(d) else {
                return -1;
            };
            let bytes = match ev.get(&def) {
                ValueRef::Str(b) | ValueRef::Bytes(b) => b.to_vec(),
                ValueRef::None => Vec::new(),
                _ => {
                    s.warn(format_args!(
                        "fieldGetBuffer: the field is a {}, not a buffer",
                        def.kind.name()
                    ));
                    return -1;
                }
            };
            if write_dst(&mut c, dst, &bytes) {
                bytes.len() as i32
            } else {
                c.data().warn(format_args!(
                    "fieldGetBuffer: {} bytes do not fit the guest's buffer",
                    bytes.len()
                ));
                -1
            }
        },
    )?;
    linker.func_wrap(
        "ig",
        "fieldSet",
        |mut c: Caller<'_, HostState>, field: u32, data: u32, kind: u32, value: u64| -> u32 {
            let Some((def, d)) = resolve(&c, field, data, "fieldSet") else {
                return 1;
            };
            let Some(k) = kind_from_api(kind) else {
                c.data().warn(format_args!("fieldSet: unknown kind {kind}"));
                return 1;
            };
            let buf = if k.scalar_size().is_none() {
                match read_buf(&mut c, value) {
                    Some(b) => Some(b),
                    None => {
                        c.data()
                            .warn(format_args!("fieldSet: value outside the guest's memory"));
                        return 1;
                    }
                }
            } else {
                None
            };
            let s = c.data_mut();
            // Scalars overwrite in place; a buffer may grow the event.
            if let Some(b) = &buf
                && s.event_mut(d).is_some()
                && !s.grow(d, b.len())
            {
                return 1;
            }
            let Some(ev) = s.event_mut(d) else {
                return 1;
            };
            let ok = match buf {
                Some(b) => set_bytes(ev, &def, &b),
                None => set_scalar(ev, &def, k, value),
            };
            u32::from(!ok)
        },
    )?;
    linker.func_wrap(
        "ig",
        "fieldAddTag",
        |mut c: Caller<'_, HostState>, field: u32, tag: u64| -> u32 {
            let Some(tag) = super::state::read_str(&mut c, tag, "fieldAddTag") else {
                return 1;
            };
            let s = c.data_mut();
            if s.frozen {
                s.warn(format_args!("fieldAddTag is only possible in gadgetInit"));
                return 1;
            }
            let Some(Handle::Field(src, fid)) = s.handle(field) else {
                return 1;
            };
            s.ops.push(SetupOp::AddTag {
                src,
                field: fid,
                tag,
            });
            0
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::{Event, SchemaBuilder, SourceKind};

    #[test]
    fn scalars_round_trip_through_raw_and_owned_fields() {
        let mut b = SchemaBuilder::new("t", SourceKind::Single, 12);
        let raw16 = b.add_raw("a".into(), FieldKind::I16, 0, 2, None).unwrap();
        let rawf = b.add_raw("f".into(), FieldKind::F32, 4, 4, None).unwrap();
        let name = b
            .add_raw("n".into(), FieldKind::CString, 8, 4, None)
            .unwrap();
        let own = b.add_owned("o".into(), FieldKind::U8, None).unwrap();
        let s = b.build();
        let mut ev = Event::new(&s);
        let d = |id| s.field(id).clone_light();

        assert!(set_scalar(
            &mut ev,
            &d(raw16),
            FieldKind::I16,
            (-3i64) as u64
        ));
        assert_eq!(&ev.raw()[..2], &(-3i16).to_ne_bytes());
        assert_eq!(
            scalar(ev.get(&d(raw16)), FieldKind::I16),
            Some((-3i64) as u64)
        );

        let bits = u64::from(2.5f32.to_bits());
        assert!(set_scalar(&mut ev, &d(rawf), FieldKind::F32, bits));
        assert_eq!(scalar(ev.get(&d(rawf)), FieldKind::F32), Some(bits));

        // An owned u8 keeps only the low byte of what the guest passed.
        assert!(set_scalar(&mut ev, &d(own), FieldKind::U8, 0x1ff));
        assert_eq!(scalar(ev.get(&d(own)), FieldKind::U8), Some(0xff));

        // A fixed-size string is NUL-padded; too long is cut and reported.
        assert!(set_bytes(&mut ev, &d(name), b"ab"));
        assert_eq!(ev.get(&d(name)), ValueRef::Str(b"ab"));
        assert!(!set_bytes(&mut ev, &d(name), b"abcdef"));
        assert_eq!(ev.get(&d(name)), ValueRef::Str(b"abcd"));
        // Strings are not scalars.
        assert_eq!(scalar(ev.get(&d(name)), FieldKind::U32), None);
    }
}
