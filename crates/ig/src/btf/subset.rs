//! The kernel's BTF cut down to what a set of CO-RE relocations can look
//! at, for aya to relocate against.
//!
//! Why: aya finds the candidates of every relocation by scanning all of
//! the kernel's ~150k types, comparing names it allocates as it goes; on
//! `ig run trace_open` that is 10-18 ms of the start-up, on the critical
//! path between reading the image and the first program load
//! (docs/design/012-attach-time.md). Relocated against a subset holding
//! the same candidates, aya computes the same values in well under a
//! millisecond.
//!
//! What the subset holds, so that aya's matching sees what it would see in
//! the whole BTF (aya-obj's `find_candidates`, `match_candidate`,
//! `types_are_compatible`, `fields_are_compatible`):
//! - every type whose name without its `___flavor` suffix is one of the
//!   root names (the candidates of every kind: aya filters by kind);
//! - from those, everything reachable "by value": members of structs and
//!   unions, array elements and index types, typedef and qualifier chains,
//!   enums, ints and floats, all in full; an access path walks these;
//! - through pointers and function prototypes (which aya's compatibility
//!   checks follow, but no access path walks into) the same chains, ending
//!   at structs and unions kept as shells: their kind, name and size, no
//!   members. aya's checks stop at a struct or union without reading its
//!   members, so a shell answers them as the whole type does.
//!
//! Type ids are renumbered, so a relocation whose value is a kernel type id
//! (`bpf_core_type_id_kernel`, kind 7) cannot use a subset: the caller
//! checks for it ([`crate::bpf::compat::core_roots`]). Declaration tags,
//! variables, data sections and functions are not carried (no relocation
//! reads them).
//!
//! Pure: bytes in, bytes out; little-endian BTF only (the loader falls back
//! to aya's own reading of the whole BTF on any error here).

use std::collections::{HashMap, HashSet};

use super::BtfError;
use super::parse::{
    Endian, HEADER_LEN, KIND_ARRAY, KIND_CONST, KIND_DATASEC, KIND_DECL_TAG, KIND_ENUM,
    KIND_ENUM64, KIND_FLOAT, KIND_FUNC, KIND_FUNC_PROTO, KIND_FWD, KIND_INT, KIND_PTR,
    KIND_RESTRICT, KIND_STRUCT, KIND_TYPE_TAG, KIND_TYPEDEF, KIND_UNION, KIND_VAR, KIND_VOLATILE,
    MAGIC, layout, record_extra,
};

/// How far a type was reached: bit 0 by value (structs in full), bit 1
/// through a pointer (structs as shells).
const BY_VALUE: u8 = 1;
const BY_POINTER: u8 = 2;

/// The raw layout of a little-endian BTF blob: where each type's record
/// starts.
struct Raw<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// `offsets[id - 1]`: the record of type `id` in `types`.
    offsets: Vec<u32>,
}

fn u32_at(d: &[u8], o: usize) -> Option<u32> {
    d.get(o..o + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn truncated(what: &'static str, offset: usize, needed: usize, available: usize) -> BtfError {
    BtfError::Truncated {
        what,
        offset,
        needed,
        available,
    }
}

impl<'a> Raw<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let l = layout(data)?;
        if l.endian == Endian::Big {
            // As read little endian: the subset is made for the running
            // (little-endian) kernel only.
            return Err(BtfError::BadMagic {
                found: MAGIC.swap_bytes(),
            });
        }
        let (types, strings) = (&data[l.types], &data[l.strings]);
        let mut offsets = Vec::with_capacity(types.len() / 20);
        let mut o = 0usize;
        while o < types.len() {
            let info = u32_at(types, o + 4)
                .ok_or_else(|| truncated("type record", o, 12, types.len() - o))?;
            let len = 12
                + extra_len(info).ok_or_else(|| BtfError::UnknownKind {
                    id: offsets.len() as u32 + 1,
                    offset: o,
                    kind: (info >> 24) & 0x1f,
                })?;
            if o + len > types.len() {
                return Err(truncated("type record", o, len, types.len() - o));
            }
            offsets.push(o as u32);
            o += len;
        }
        Ok(Self {
            types,
            strings,
            offsets,
        })
    }

    fn record(&self, id: u32) -> Option<&'a [u8]> {
        let start = *self.offsets.get(id.checked_sub(1)? as usize)? as usize;
        let info = u32_at(self.types, start + 4)?;
        self.types.get(start..start + 12 + extra_len(info)?)
    }

    fn name(&self, off: u32) -> &'a [u8] {
        let s = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        &s[..end]
    }
}

/// The bytes after a type's 12-byte head, by kind and `vlen`.
fn extra_len(info: u32) -> Option<usize> {
    record_extra((info >> 24) & 0x1f, (info & 0xffff) as usize).map(|(_, n)| n)
}

/// A name without its `___flavor` suffix (libbpf's and aya's rule).
fn essential(name: &[u8]) -> &[u8] {
    name.windows(3)
        .position(|w| w == b"___")
        .map_or(name, |at| &name[..at])
}

/// The kernel BTF `kernel` cut down to the candidates of the root names
/// `roots` (flavors are stripped) and what aya's matching reads from them
/// (see the module docs). An empty `roots` gives a BTF of no types.
pub fn kernel_subset(kernel: &[u8], roots: &[&str]) -> Result<Vec<u8>, BtfError> {
    let raw = Raw::parse(kernel)?;
    // The essential names wanted, by their first two bytes: most of the
    // ~150k names are turned down by those, without finding their end.
    let wanted: HashSet<&[u8]> = roots
        .iter()
        .map(|r| essential(r.as_bytes()))
        .filter(|w| !w.is_empty())
        .collect();
    let two = |b: &[u8]| {
        usize::from(b.first().copied().unwrap_or(0)) << 8
            | usize::from(b.get(1).copied().unwrap_or(0))
    };
    let mut by_prefix = vec![false; 1 << 16];
    for w in &wanted {
        by_prefix[two(w)] = true;
        if w.len() == 1 {
            // A one-letter name's flavors go on with `___`.
            by_prefix[two(&[w[0], b'_'])] = true;
        }
    }
    let n = raw.offsets.len();
    let mut reached = vec![0u8; n + 1];
    let mut stack: Vec<(u32, u8)> = Vec::new();
    for id in 1..=n as u32 {
        let start = raw.offsets[id as usize - 1] as usize;
        let name_off = u32_at(raw.types, start).unwrap_or(0) as usize;
        let prefix = raw.strings.get(name_off..).unwrap_or(&[]);
        if name_off != 0
            && by_prefix[two(prefix)]
            && wanted.contains(essential(raw.name(name_off as u32)))
        {
            stack.push((id, BY_VALUE));
        }
    }
    while let Some((id, how)) = stack.pop() {
        let Some(slot) = reached.get_mut(id as usize) else {
            return Err(BtfError::TypeIdOutOfRange {
                id,
                count: n as u32 + 1,
            });
        };
        if id == 0 || *slot & how != 0 {
            continue;
        }
        *slot |= how;
        let rec = raw.record(id).unwrap_or(&[]);
        let info = u32_at(rec, 4).unwrap_or(0);
        let vlen = (info & 0xffff) as usize;
        let next = u32_at(rec, 8).unwrap_or(0);
        match (info >> 24) & 0x1f {
            KIND_STRUCT | KIND_UNION if how == BY_VALUE => {
                for m in 0..vlen {
                    stack.push((u32_at(rec, 12 + 12 * m + 4).unwrap_or(0), BY_VALUE));
                }
            }
            KIND_PTR => stack.push((next, BY_POINTER)),
            KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
            | KIND_VAR => stack.push((next, how)),
            KIND_FUNC => stack.push((next, BY_POINTER)),
            KIND_ARRAY => {
                stack.push((u32_at(rec, 12).unwrap_or(0), how));
                stack.push((u32_at(rec, 16).unwrap_or(0), how));
            }
            KIND_FUNC_PROTO => {
                stack.push((next, BY_POINTER));
                for p in 0..vlen {
                    stack.push((u32_at(rec, 12 + 8 * p + 4).unwrap_or(0), BY_POINTER));
                }
            }
            _ => {}
        }
    }
    // Data sections and declaration tags reference other types without
    // being reachable from any: never carried (see the module docs).
    let kept = |id: u32| {
        let info = raw.record(id).and_then(|r| u32_at(r, 4)).unwrap_or(0);
        reached[id as usize] != 0 && !matches!((info >> 24) & 0x1f, KIND_DATASEC | KIND_DECL_TAG)
    };
    let mut new_id = vec![0u32; n + 1];
    let mut count = 0u32;
    for id in 1..=n as u32 {
        if kept(id) {
            count += 1;
            new_id[id as usize] = count;
        }
    }
    let mut strings = vec![0u8];
    let mut string_ids: HashMap<u32, u32> = HashMap::new();
    let mut name = |off: u32, strings: &mut Vec<u8>| -> u32 {
        if off == 0 {
            return 0;
        }
        *string_ids.entry(off).or_insert_with(|| {
            let at = strings.len() as u32;
            strings.extend_from_slice(raw.name(off));
            strings.push(0);
            at
        })
    };
    let remap = |id: u32| new_id.get(id as usize).copied().unwrap_or(0);
    let mut types = Vec::new();
    let put = |v: u32, out: &mut Vec<u8>| out.extend_from_slice(&v.to_le_bytes());
    for id in 1..=n as u32 {
        if !kept(id) {
            continue;
        }
        let rec = raw.record(id).unwrap_or(&[]);
        let word = |o: usize| u32_at(rec, o).unwrap_or(0);
        let info = word(4);
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let shell =
            matches!(kind, KIND_STRUCT | KIND_UNION) && reached[id as usize] & BY_VALUE == 0;
        put(name(word(0), &mut strings), &mut types);
        put(if shell { info & !0xffff } else { info }, &mut types);
        match kind {
            // `size`, not a type: copied as it is.
            KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 | KIND_FLOAT
            | KIND_FWD => put(word(8), &mut types),
            _ => put(remap(word(8)), &mut types),
        }
        match kind {
            KIND_INT | KIND_VAR => put(word(12), &mut types),
            KIND_ARRAY => {
                put(remap(word(12)), &mut types);
                put(remap(word(16)), &mut types);
                put(word(20), &mut types);
            }
            KIND_STRUCT | KIND_UNION if !shell => {
                for m in 0..vlen {
                    let at = 12 + 12 * m;
                    put(name(word(at), &mut strings), &mut types);
                    put(remap(word(at + 4)), &mut types);
                    put(word(at + 8), &mut types);
                }
            }
            KIND_ENUM => {
                for v in 0..vlen {
                    let at = 12 + 8 * v;
                    put(name(word(at), &mut strings), &mut types);
                    put(word(at + 4), &mut types);
                }
            }
            KIND_ENUM64 => {
                for v in 0..vlen {
                    let at = 12 + 12 * v;
                    put(name(word(at), &mut strings), &mut types);
                    put(word(at + 4), &mut types);
                    put(word(at + 8), &mut types);
                }
            }
            KIND_FUNC_PROTO => {
                for p in 0..vlen {
                    let at = 12 + 8 * p;
                    put(name(word(at), &mut strings), &mut types);
                    put(remap(word(at + 4)), &mut types);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(HEADER_LEN + types.len() + strings.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[1, 0]);
    put(HEADER_LEN as u32, &mut out);
    put(0, &mut out);
    put(types.len() as u32, &mut out);
    put(types.len() as u32, &mut out);
    put(strings.len() as u32, &mut out);
    out.extend_from_slice(&types);
    out.extend_from_slice(&strings);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's own BTF: the subset of a few well-known roots parses
    /// with our reader, keeps every candidate (flavored roots too) in full
    /// and pointer-only structs as shells, and is a small part of the
    /// whole.
    #[test]
    fn kernel_subset_of_task_struct_keeps_candidates_and_shells() {
        let kernel = std::fs::read("/sys/kernel/btf/vmlinux")
            .expect("the kernel's BTF (the project needs a kernel with BTF)");
        let sub = kernel_subset(&kernel, &["task_struct___old", "trace_event_raw_sys_enter"])
            .expect("the kernel's BTF is well formed");
        assert!(
            sub.len() * 10 < kernel.len(),
            "{} of {}",
            sub.len(),
            kernel.len()
        );
        let full = crate::btf::Btf::parse(&kernel).unwrap();
        let cut = crate::btf::Btf::parse(&sub).expect("the subset is valid BTF");
        let find = |b: &crate::btf::Btf, name: &str| b.find_struct(name);
        for name in ["task_struct", "trace_event_raw_sys_enter"] {
            let (f, c) = (find(&full, name).unwrap(), find(&cut, name).unwrap());
            assert_eq!(
                full.members(f).unwrap().len(),
                cut.members(c).unwrap().len(),
                "{name} is kept in full"
            );
            assert_eq!(full.size_of(f).unwrap(), cut.size_of(c).unwrap());
        }
        // task_struct holds `struct mm_struct *mm`: reached through a
        // pointer only, a shell of the same size.
        let (f, c) = (
            find(&full, "mm_struct").unwrap(),
            find(&cut, "mm_struct").unwrap(),
        );
        assert!(!full.members(f).unwrap().is_empty());
        assert!(cut.members(c).unwrap().is_empty(), "mm_struct is a shell");
        assert_eq!(full.size_of(f).unwrap(), cut.size_of(c).unwrap());
    }

    #[test]
    fn no_roots_give_an_empty_btf_and_garbage_is_refused() {
        let kernel = std::fs::read("/sys/kernel/btf/vmlinux").unwrap();
        let sub = kernel_subset(&kernel, &[]).unwrap();
        assert_eq!(crate::btf::Btf::parse(&sub).unwrap().types().count(), 0);
        assert!(kernel_subset(b"junk", &["x"]).is_err());
        assert!(kernel_subset(&kernel[..kernel.len() / 2], &["x"]).is_err());
    }
}
