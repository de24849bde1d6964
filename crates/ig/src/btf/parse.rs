//! Decoding a raw BTF blob (header, string section, type section) into a
//! [`Btf`].
//!
//! Layout, from the kernel's Documentation/bpf/btf.rst: a header
//! `{u16 magic=0xeB9F, u8 version=1, u8 flags, u32 hdr_len, u32 type_off,
//! u32 type_len, u32 str_off, u32 str_len}` (offsets relative to the end of
//! the header), then type records of `{u32 name_off, u32 info, u32
//! size_or_type}` each followed by kind-specific data, and a string section
//! of NUL-terminated strings. All integers are in the byte order the magic
//! is written in.
//!
//! Hostile input: every length is checked against the bytes actually present
//! *before* anything is allocated from it, so memory stays proportional to
//! the input, and string scans are capped so parsing stays linear.

use std::ffi::CStr;

use super::types::{
    Array, Composite, Datasec, Enum, EnumValue, FuncProto, Int, Kind, Linkage, Member, Name, Param,
    Type, Var, VarSecinfo,
};
use super::{Btf, BtfError, TypeId};

/// Size of the header fields we know. A longer `hdr_len` (a future
/// extension) is accepted and the extra bytes skipped.
pub(super) const HEADER_LEN: usize = 24;
pub(super) const MAGIC: u16 = 0xeb9f;
const VERSION: u8 = 1;
/// Size of the common part of every type record.
const TYPE_HEADER_LEN: usize = 12;
/// Longest string we accept. Real names are identifiers (the kernel caps them
/// at KSYM_NAME_LEN, 512); the cap keeps a crafted blob with a huge
/// unterminated string and many offsets into it from making parsing quadratic.
pub const MAX_NAME_LEN: usize = 4096;

// Kind numbers (btf.rst, "BTF Type Encoding").
pub(super) const KIND_INT: u32 = 1;
pub(super) const KIND_PTR: u32 = 2;
pub(super) const KIND_ARRAY: u32 = 3;
pub(super) const KIND_STRUCT: u32 = 4;
pub(super) const KIND_UNION: u32 = 5;
pub(super) const KIND_ENUM: u32 = 6;
pub(super) const KIND_FWD: u32 = 7;
pub(super) const KIND_TYPEDEF: u32 = 8;
pub(super) const KIND_VOLATILE: u32 = 9;
pub(super) const KIND_CONST: u32 = 10;
pub(super) const KIND_RESTRICT: u32 = 11;
pub(super) const KIND_FUNC: u32 = 12;
pub(super) const KIND_FUNC_PROTO: u32 = 13;
pub(super) const KIND_VAR: u32 = 14;
pub(super) const KIND_DATASEC: u32 = 15;
pub(super) const KIND_FLOAT: u32 = 16;
pub(super) const KIND_DECL_TAG: u32 = 17;
pub(super) const KIND_TYPE_TAG: u32 = 18;
pub(super) const KIND_ENUM64: u32 = 19;

// INT encoding bits (bits 24..28 of the INT data word).
const INT_SIGNED: u32 = 1;
const INT_CHAR: u32 = 2;
const INT_BOOL: u32 = 4;

/// Byte order of a blob, from its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endian {
    Little,
    Big,
}

impl Endian {
    /// Reads one u32 from a 4-byte chunk. Callers hand in `chunks_exact(4)`
    /// items of ranges already checked to exist; a short chunk reads as 0
    /// instead of panicking.
    fn word(self, chunk: &[u8]) -> u32 {
        match <[u8; 4]>::try_from(chunk) {
            Ok(b) => match self {
                Endian::Little => u32::from_le_bytes(b),
                Endian::Big => u32::from_be_bytes(b),
            },
            Err(_) => 0,
        }
    }

    /// Reads the first N u32 words of `bytes`.
    fn words<const N: usize>(self, bytes: &[u8]) -> [u32; N] {
        let mut out = [0u32; N];
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = self.word(c);
        }
        out
    }
}

/// The validated string section.
struct Strings<'a>(&'a str);

impl Strings<'_> {
    /// Turns a `name_off` into a [`Name`], or says why it is not a string.
    fn name(&self, off: u32) -> Result<Name, &'static str> {
        // Offset 0 is the empty string by definition (btf.rst), whatever
        // the first byte holds.
        if off == 0 {
            return Ok(Name::default());
        }
        let start = off as usize;
        let bytes = self.0.as_bytes();
        let tail = match bytes.get(start..) {
            Some(tail) if !tail.is_empty() => tail,
            _ => return Err("past the end of the string section"),
        };
        // Slicing the `str` later needs a char boundary; offsets into the
        // middle of a string are legal (suffix sharing), into the middle of
        // a UTF-8 sequence are not.
        if !self.0.is_char_boundary(start) {
            return Err("inside a multi-byte character");
        }
        let window = &tail[..tail.len().min(MAX_NAME_LEN + 1)];
        match CStr::from_bytes_until_nul(window) {
            // The NUL is ASCII, so the end is a char boundary too.
            Ok(s) => Ok(Name {
                off,
                len: s.to_bytes().len() as u32,
            }),
            Err(_) if window.len() > MAX_NAME_LEN => Err("string longer than MAX_NAME_LEN"),
            Err(_) => Err("not NUL-terminated"),
        }
    }
}

/// Checked `hdr_len + off .. + len` range of a section inside `data`.
fn section(
    section: &'static str,
    hdr_len: u32,
    off: u32,
    len: u32,
    data_len: usize,
) -> Result<std::ops::Range<usize>, BtfError> {
    // u64 cannot overflow with three u32 terms.
    let start = u64::from(hdr_len) + u64::from(off);
    let end = start + u64::from(len);
    if end > data_len as u64 {
        return Err(BtfError::SectionOutOfBounds {
            section,
            offset: off,
            len,
            data_len,
        });
    }
    // Both fit in usize: they are ≤ data_len.
    Ok(start as usize..end as usize)
}

/// Where a blob's two sections are, and its byte order: the header read
/// and checked (magic, version, header length, section bounds).
pub(super) struct Layout {
    pub endian: Endian,
    pub types: std::ops::Range<usize>,
    pub strings: std::ops::Range<usize>,
}

pub(super) fn layout(data: &[u8]) -> Result<Layout, BtfError> {
    // The magic is written in the blob's byte order; read it as little
    // endian and see which way round it came out.
    let endian = match data {
        [a, b, ..] => match u16::from_le_bytes([*a, *b]) {
            MAGIC => Endian::Little,
            m if m.swap_bytes() == MAGIC => Endian::Big,
            found => return Err(BtfError::BadMagic { found }),
        },
        _ => {
            return Err(BtfError::Truncated {
                what: "header",
                offset: 0,
                needed: HEADER_LEN,
                available: data.len(),
            });
        }
    };
    if data.len() < HEADER_LEN {
        return Err(BtfError::Truncated {
            what: "header",
            offset: 0,
            needed: HEADER_LEN,
            available: data.len(),
        });
    }
    if data[2] != VERSION {
        return Err(BtfError::UnsupportedVersion { version: data[2] });
    }
    // data[3] is `flags`; none are defined, so there is nothing to check.
    let [hdr_len, type_off, type_len, str_off, str_len] = endian.words::<5>(&data[4..HEADER_LEN]);
    if (hdr_len as usize) < HEADER_LEN || hdr_len as usize > data.len() {
        return Err(BtfError::BadHeaderLen {
            hdr_len,
            min: HEADER_LEN,
            data_len: data.len(),
        });
    }
    Ok(Layout {
        endian,
        types: section("type", hdr_len, type_off, type_len, data.len())?,
        strings: section("string", hdr_len, str_off, str_len, data.len())?,
    })
}

pub(super) fn parse(data: &[u8]) -> Result<Btf, BtfError> {
    let Layout {
        endian,
        types: type_range,
        strings: str_range,
    } = layout(data)?;

    let strings = std::str::from_utf8(&data[str_range]).map_err(|e| BtfError::StringsNotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let type_base = type_range.start;
    let types = parse_types(&data[type_range], type_base, endian, &Strings(strings))?;
    check_refs(&types)?;

    let datasecs = types
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(t.kind, Kind::Datasec(_)))
        .map(|(i, _)| i as TypeId)
        .collect();
    Ok(Btf {
        types,
        strings: strings.into(),
        datasecs,
        endian,
    })
}

/// What follows the common part of a type record of `kind` with `vlen`
/// entries, and its size in bytes; `None` for a kind BTF does not define.
/// (vlen is at most 0xffff, so no overflow.)
pub(super) fn record_extra(kind: u32, vlen: usize) -> Option<(&'static str, usize)> {
    Some(match kind {
        KIND_INT => ("int data", 4),
        KIND_ARRAY => ("array data", 12),
        KIND_STRUCT | KIND_UNION => ("members", vlen * 12),
        KIND_ENUM => ("enum values", vlen * 8),
        KIND_FUNC_PROTO => ("parameters", vlen * 8),
        KIND_VAR => ("var data", 4),
        KIND_DATASEC => ("datasec entries", vlen * 12),
        KIND_DECL_TAG => ("decl_tag data", 4),
        KIND_ENUM64 => ("enum64 values", vlen * 12),
        KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
        | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => ("", 0),
        _ => return None,
    })
}

/// Byte offset, inside `data`, of every type record of a blob [`parse`]
/// accepted (index = type id; entry 0, void, has no record and is 0): for
/// callers that patch a record in place. `None` if the blob is not one
/// `parse` accepts.
pub(super) fn record_offsets(data: &[u8]) -> Option<Vec<usize>> {
    let endian = match u16::from_le_bytes([*data.first()?, *data.get(1)?]) {
        MAGIC => Endian::Little,
        m if m.swap_bytes() == MAGIC => Endian::Big,
        _ => return None,
    };
    let [hdr_len, type_off, type_len, ..] = endian.words::<5>(data.get(4..HEADER_LEN)?);
    let range = section("type", hdr_len, type_off, type_len, data.len()).ok()?;
    let mut out = vec![0];
    let mut pos = range.start;
    while pos < range.end {
        let [_, info, _] = endian.words::<3>(data.get(pos..pos + TYPE_HEADER_LEN)?);
        let (_, extra) = record_extra((info >> 24) & 0x1f, (info & 0xffff) as usize)?;
        out.push(pos);
        pos += TYPE_HEADER_LEN + extra;
    }
    (pos == range.end).then_some(out)
}

/// Decodes the type section. `base` is the section's offset in the blob,
/// for error messages.
fn parse_types(
    sec: &[u8],
    base: usize,
    endian: Endian,
    strings: &Strings<'_>,
) -> Result<Vec<Type>, BtfError> {
    // Every record is at least 12 bytes, so this bounds the count by the
    // input size (and type ids fit in u32: type_len is a u32).
    let mut types = Vec::with_capacity(sec.len() / TYPE_HEADER_LEN + 1);
    types.push(Type {
        name: Name::default(),
        kind: Kind::Void,
    });
    let mut pos = 0usize;
    while pos < sec.len() {
        let id = types.len() as TypeId;
        let rec_off = base + pos;
        let Some(head) = sec.get(pos..pos + TYPE_HEADER_LEN) else {
            return Err(BtfError::Truncated {
                what: "type record",
                offset: rec_off,
                needed: TYPE_HEADER_LEN,
                available: sec.len() - pos,
            });
        };
        let [name_off, info, size_or_type] = endian.words::<3>(head);
        pos += TYPE_HEADER_LEN;
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let kind_flag = info >> 31 != 0;

        let Some((what, extra)) = record_extra(kind, vlen) else {
            return Err(BtfError::UnknownKind {
                id,
                offset: rec_off,
                kind,
            });
        };
        let Some(body) = sec.get(pos..pos + extra) else {
            return Err(BtfError::Truncated {
                what,
                offset: base + pos,
                needed: extra,
                available: sec.len() - pos,
            });
        };
        pos += extra;

        let name_of = |what: &'static str, off: u32| {
            strings.name(off).map_err(|reason| BtfError::BadString {
                id,
                what,
                offset: off,
                reason,
            })
        };
        let name = name_of("type name", name_off)?;

        let kind = match kind {
            KIND_INT => {
                let [data] = endian.words::<1>(body);
                let enc = (data >> 24) & 0xf;
                Kind::Int(Int {
                    size: size_or_type,
                    signed: enc & INT_SIGNED != 0,
                    is_char: enc & INT_CHAR != 0,
                    is_bool: enc & INT_BOOL != 0,
                    offset: (data >> 16) as u8,
                    bits: data as u8,
                })
            }
            KIND_PTR => Kind::Ptr(size_or_type),
            KIND_ARRAY => {
                let [elem, index, len] = endian.words::<3>(body);
                Kind::Array(Array { elem, index, len })
            }
            KIND_STRUCT | KIND_UNION => {
                let mut members = Vec::with_capacity(vlen);
                for m in body.chunks_exact(12) {
                    let [m_name, ty, offset] = endian.words::<3>(m);
                    // With kind_flag, the offset word packs the bitfield
                    // size in its top 8 bits and the bit offset below.
                    let (bit_offset, bitfield_size) = if kind_flag {
                        (offset & 0x00ff_ffff, (offset >> 24) as u8)
                    } else {
                        (offset, 0)
                    };
                    members.push(Member {
                        name: name_of("member name", m_name)?,
                        ty,
                        bit_offset,
                        bitfield_size,
                    });
                }
                let c = Composite {
                    size: size_or_type,
                    members,
                };
                if kind == KIND_STRUCT {
                    Kind::Struct(c)
                } else {
                    Kind::Union(c)
                }
            }
            KIND_ENUM => {
                let mut values = Vec::with_capacity(vlen);
                for v in body.chunks_exact(8) {
                    let [v_name, raw] = endian.words::<2>(v);
                    let value = if kind_flag {
                        i128::from(raw as i32)
                    } else {
                        i128::from(raw)
                    };
                    values.push(EnumValue {
                        name: name_of("enumerator name", v_name)?,
                        value,
                    });
                }
                Kind::Enum(Enum {
                    size: size_or_type,
                    signed: kind_flag,
                    values,
                })
            }
            KIND_ENUM64 => {
                let mut values = Vec::with_capacity(vlen);
                for v in body.chunks_exact(12) {
                    let [v_name, lo, hi] = endian.words::<3>(v);
                    let raw = (u64::from(hi) << 32) | u64::from(lo);
                    let value = if kind_flag {
                        i128::from(raw as i64)
                    } else {
                        i128::from(raw)
                    };
                    values.push(EnumValue {
                        name: name_of("enumerator name", v_name)?,
                        value,
                    });
                }
                Kind::Enum64(Enum {
                    size: size_or_type,
                    signed: kind_flag,
                    values,
                })
            }
            KIND_FWD => Kind::Fwd {
                is_union: kind_flag,
            },
            KIND_TYPEDEF => Kind::Typedef(size_or_type),
            KIND_VOLATILE => Kind::Volatile(size_or_type),
            KIND_CONST => Kind::Const(size_or_type),
            KIND_RESTRICT => Kind::Restrict(size_or_type),
            // A FUNC keeps its linkage in vlen (it has no members).
            KIND_FUNC => Kind::Func {
                proto: size_or_type,
                linkage: Linkage::from_raw(vlen as u32),
            },
            KIND_FUNC_PROTO => {
                let mut params = Vec::with_capacity(vlen);
                for p in body.chunks_exact(8) {
                    let [p_name, ty] = endian.words::<2>(p);
                    params.push(Param {
                        name: name_of("parameter name", p_name)?,
                        ty,
                    });
                }
                Kind::FuncProto(FuncProto {
                    ret: size_or_type,
                    params,
                })
            }
            KIND_VAR => {
                let [linkage] = endian.words::<1>(body);
                Kind::Var(Var {
                    ty: size_or_type,
                    linkage: Linkage::from_raw(linkage),
                })
            }
            KIND_DATASEC => {
                let mut vars = Vec::with_capacity(vlen);
                for v in body.chunks_exact(12) {
                    let [ty, offset, size] = endian.words::<3>(v);
                    vars.push(VarSecinfo { ty, offset, size });
                }
                Kind::Datasec(Datasec {
                    size: size_or_type,
                    vars,
                })
            }
            KIND_FLOAT => Kind::Float { size: size_or_type },
            KIND_DECL_TAG => {
                let [idx] = endian.words::<1>(body);
                Kind::DeclTag {
                    target: size_or_type,
                    component_idx: idx as i32,
                }
            }
            KIND_TYPE_TAG => Kind::TypeTag(size_or_type),
            // Unknown kinds were rejected when sizing the record.
            _ => {
                return Err(BtfError::UnknownKind {
                    id,
                    offset: rec_off,
                    kind,
                });
            }
        };
        types.push(Type { name, kind });
    }
    Ok(types)
}

/// Every type id a record refers to, with what the reference is, so that
/// queries can assume references are in range.
fn for_each_ref(
    kind: &Kind,
    mut f: impl FnMut(&'static str, TypeId) -> Result<(), BtfError>,
) -> Result<(), BtfError> {
    match kind {
        Kind::Void
        | Kind::Int(_)
        | Kind::Enum(_)
        | Kind::Enum64(_)
        | Kind::Fwd { .. }
        | Kind::Float { .. } => Ok(()),
        Kind::Ptr(t) => f("pointer target", *t),
        Kind::Typedef(t)
        | Kind::Volatile(t)
        | Kind::Const(t)
        | Kind::Restrict(t)
        | Kind::TypeTag(t) => f("modifier target", *t),
        Kind::Array(a) => {
            f("array element", a.elem)?;
            f("array index", a.index)
        }
        Kind::Struct(c) | Kind::Union(c) => {
            c.members.iter().try_for_each(|m| f("member type", m.ty))
        }
        Kind::Func { proto, .. } => f("function prototype", *proto),
        Kind::FuncProto(p) => {
            f("return type", p.ret)?;
            p.params.iter().try_for_each(|p| f("parameter type", p.ty))
        }
        Kind::Var(v) => f("variable type", v.ty),
        Kind::Datasec(d) => d.vars.iter().try_for_each(|v| f("datasec variable", v.ty)),
        Kind::DeclTag { target, .. } => f("decl_tag target", *target),
    }
}

fn check_refs(types: &[Type]) -> Result<(), BtfError> {
    let count = types.len() as u32;
    for (id, t) in types.iter().enumerate() {
        for_each_ref(&t.kind, |what, target| {
            if target < count {
                Ok(())
            } else {
                Err(BtfError::BadTypeRef {
                    id: id as TypeId,
                    what,
                    target,
                    count,
                })
            }
        })?;
    }
    Ok(())
}
