//! Hand-made BTF blobs: for tests across the crate, and the one BTF `ig`
//! makes at run time, the socket enricher's value struct
//! (`bpf::socket_enricher::value_btf`).
//!
//! ```ignore
//! use crate::btf::builder::BtfBuilder;
//! let mut b = BtfBuilder::new();
//! let u32_ = b.int("unsigned int", 4, false);
//! let pid = b.typedef("gadget_pid", u32_);
//! let char_ = b.char_();
//! let comm_t = b.typedef("gadget_comm", char_);
//! let comm = b.array(comm_t, 16);
//! let event = b.struct_("event", 20, &[("pid", pid, 0), ("comm", comm, 32)]);
//! let marker = b.const_void_ptr();
//! b.var("gadget_tracer_x___events___event", marker);
//! let bytes = b.to_bytes();
//! ```
//!
//! Every method appends one type record (a few add helpers, said so) and
//! returns its id; ids count from 1 in call order, like clang's output.
//! Nothing is validated: the builder also crafts broken blobs for error
//! tests (see [`BtfBuilder::raw`] and [`BtfBuilder::next_id`]).

use std::collections::HashMap;

use super::{Int, Linkage, TypeId, VOID};

/// Builds a BTF blob record by record. See the module docs for an example.
#[derive(Debug, Clone)]
pub(crate) struct BtfBuilder {
    /// String section; starts with the empty string at offset 0.
    strings: Vec<u8>,
    /// Offsets of strings already added, so repeated names are shared.
    string_offsets: HashMap<String, u32>,
    /// One record per type (id = index + 1), as u32 words; the byte order is
    /// chosen at [`BtfBuilder::to_bytes`] time.
    records: Vec<Vec<u32>>,
    /// The int clang uses as the index type of every array, added on the
    /// first [`BtfBuilder::array`].
    array_index: Option<TypeId>,
}

impl Default for BtfBuilder {
    fn default() -> Self {
        Self::new()
    }
}

// Kind numbers, as in btf.rst (the parser has its own private copies: the
// builder must not share the code it tests).
const INT: u32 = 1;
const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const ENUM: u32 = 6;
const FWD: u32 = 7;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const FUNC: u32 = 12;
const FUNC_PROTO: u32 = 13;
const VAR: u32 = 14;
const DATASEC: u32 = 15;
const FLOAT: u32 = 16;
const DECL_TAG: u32 = 17;
const TYPE_TAG: u32 = 18;
const ENUM64: u32 = 19;

impl BtfBuilder {
    pub(crate) fn new() -> Self {
        BtfBuilder {
            strings: vec![0],
            string_offsets: HashMap::new(),
            records: Vec::new(),
            array_index: None,
        }
    }

    /// Adds `s` to the string section (once) and returns its offset; "" is 0.
    pub(crate) fn string(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        if let Some(&off) = self.string_offsets.get(s) {
            return off;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        self.string_offsets.insert(s.to_owned(), off);
        off
    }

    /// The id the next added type will get (to build self-references).
    pub(crate) fn next_id(&self) -> TypeId {
        self.records.len() as TypeId + 1
    }

    /// Appends a record from its raw words: `name_off, info, size_or_type`
    /// followed by the kind-specific words. For crafting invalid types.
    pub(crate) fn raw_words(&mut self, words: &[u32]) -> TypeId {
        self.records.push(words.to_vec());
        self.records.len() as TypeId
    }

    /// Appends a record of `kind` with the given fields and extra words.
    pub(crate) fn raw(
        &mut self,
        name: &str,
        kind: u32,
        kind_flag: bool,
        vlen: u32,
        size_or_type: u32,
        extra: &[u32],
    ) -> TypeId {
        let info = (u32::from(kind_flag) << 31) | ((kind & 0x1f) << 24) | (vlen & 0xffff);
        let mut words = vec![self.string(name), info, size_or_type];
        words.extend_from_slice(extra);
        self.raw_words(&words)
    }

    /// An integer with every field chosen.
    pub(crate) fn int_full(&mut self, name: &str, int: Int) -> TypeId {
        let enc =
            u32::from(int.signed) | (u32::from(int.is_char) << 1) | (u32::from(int.is_bool) << 2);
        let data = (enc << 24) | (u32::from(int.offset) << 16) | u32::from(int.bits);
        self.raw(name, INT, false, 0, int.size, &[data])
    }

    /// A plain integer of `size` bytes using all its bits.
    pub(crate) fn int(&mut self, name: &str, size: u32, signed: bool) -> TypeId {
        let bits = size.saturating_mul(8).min(255) as u8;
        self.int_full(
            name,
            Int {
                size,
                signed,
                is_char: false,
                is_bool: false,
                offset: 0,
                bits,
            },
        )
    }

    /// `char` as clang emits it for BPF: 1 byte, signed. (The CHAR encoding
    /// bit exists but neither clang nor pahole sets it; use
    /// [`BtfBuilder::int_full`] for that.)
    pub(crate) fn char_(&mut self) -> TypeId {
        self.int_full(
            "char",
            Int {
                size: 1,
                signed: true,
                is_char: false,
                is_bool: false,
                offset: 0,
                bits: 8,
            },
        )
    }

    /// `_Bool`: 1 byte, bool encoding.
    pub(crate) fn bool_(&mut self) -> TypeId {
        self.int_full(
            "_Bool",
            Int {
                size: 1,
                signed: false,
                is_char: false,
                is_bool: true,
                offset: 0,
                bits: 8,
            },
        )
    }

    pub(crate) fn ptr(&mut self, target: TypeId) -> TypeId {
        self.raw("", PTR, false, 0, target, &[])
    }

    pub(crate) fn const_(&mut self, target: TypeId) -> TypeId {
        self.raw("", CONST, false, 0, target, &[])
    }

    pub(crate) fn volatile(&mut self, target: TypeId) -> TypeId {
        self.raw("", VOLATILE, false, 0, target, &[])
    }

    pub(crate) fn restrict(&mut self, target: TypeId) -> TypeId {
        self.raw("", RESTRICT, false, 0, target, &[])
    }

    pub(crate) fn typedef(&mut self, name: &str, target: TypeId) -> TypeId {
        self.raw(name, TYPEDEF, false, 0, target, &[])
    }

    pub(crate) fn type_tag(&mut self, value: &str, target: TypeId) -> TypeId {
        self.raw(value, TYPE_TAG, false, 0, target, &[])
    }

    /// `const void *`, the type of gadget marker variables (adds two
    /// records: CONST → VOID, then PTR to it; returns the PTR).
    pub(crate) fn const_void_ptr(&mut self) -> TypeId {
        let c = self.const_(VOID);
        self.ptr(c)
    }

    /// `elem[len]`. The first call also adds the index int
    /// `__ARRAY_SIZE_TYPE__`, as clang does.
    pub(crate) fn array(&mut self, elem: TypeId, len: u32) -> TypeId {
        let index = match self.array_index {
            Some(i) => i,
            None => {
                let i = self.int("__ARRAY_SIZE_TYPE__", 4, false);
                self.array_index = Some(i);
                i
            }
        };
        self.raw("", ARRAY, false, 0, 0, &[elem, index, len])
    }

    /// A struct of `size` bytes; members are (name, type, offset in
    /// **bits**, as BTF stores it: a member at byte 4 is `32`). Use
    /// [`BtfBuilder::struct_bitfields`] for bitfields.
    pub(crate) fn struct_(
        &mut self,
        name: &str,
        size: u32,
        members: &[(&str, TypeId, u32)],
    ) -> TypeId {
        self.composite(STRUCT, name, size, members)
    }

    /// A union; members as in [`BtfBuilder::struct_`].
    pub(crate) fn union_(
        &mut self,
        name: &str,
        size: u32,
        members: &[(&str, TypeId, u32)],
    ) -> TypeId {
        self.composite(UNION, name, size, members)
    }

    fn composite(
        &mut self,
        kind: u32,
        name: &str,
        size: u32,
        members: &[(&str, TypeId, u32)],
    ) -> TypeId {
        let mut extra = Vec::with_capacity(members.len() * 3);
        for &(m, ty, bit_off) in members {
            extra.extend_from_slice(&[self.string(m), ty, bit_off]);
        }
        self.raw(name, kind, false, members.len() as u32, size, &extra)
    }

    /// A struct in the modern bitfield encoding (kind_flag set); members are
    /// (name, type, offset in **bits**, bitfield size in bits or 0).
    pub(crate) fn struct_bitfields(
        &mut self,
        name: &str,
        size: u32,
        members: &[(&str, TypeId, u32, u8)],
    ) -> TypeId {
        let mut extra = Vec::with_capacity(members.len() * 3);
        for &(m, ty, bit_off, bits) in members {
            extra.extend_from_slice(&[
                self.string(m),
                ty,
                (u32::from(bits) << 24) | (bit_off & 0x00ff_ffff),
            ]);
        }
        self.raw(name, STRUCT, true, members.len() as u32, size, &extra)
    }

    /// A 32-bit-valued enum; values are truncated to 32 bits.
    pub(crate) fn enum_(
        &mut self,
        name: &str,
        size: u32,
        signed: bool,
        values: &[(&str, i128)],
    ) -> TypeId {
        let mut extra = Vec::with_capacity(values.len() * 2);
        for &(v, val) in values {
            extra.extend_from_slice(&[self.string(v), val as u32]);
        }
        self.raw(name, ENUM, signed, values.len() as u32, size, &extra)
    }

    /// A 64-bit-valued enum; values are truncated to 64 bits.
    pub(crate) fn enum64(
        &mut self,
        name: &str,
        size: u32,
        signed: bool,
        values: &[(&str, i128)],
    ) -> TypeId {
        let mut extra = Vec::with_capacity(values.len() * 3);
        for &(v, val) in values {
            let bits = val as u64;
            extra.extend_from_slice(&[self.string(v), bits as u32, (bits >> 32) as u32]);
        }
        self.raw(name, ENUM64, signed, values.len() as u32, size, &extra)
    }

    pub(crate) fn fwd(&mut self, name: &str, is_union: bool) -> TypeId {
        self.raw(name, FWD, is_union, 0, 0, &[])
    }

    /// A function prototype; params are (name, type).
    pub(crate) fn func_proto(&mut self, ret: TypeId, params: &[(&str, TypeId)]) -> TypeId {
        let mut extra = Vec::with_capacity(params.len() * 2);
        for &(p, ty) in params {
            extra.extend_from_slice(&[self.string(p), ty]);
        }
        self.raw("", FUNC_PROTO, false, params.len() as u32, ret, &extra)
    }

    pub(crate) fn func(&mut self, name: &str, proto: TypeId, linkage: Linkage) -> TypeId {
        self.raw(name, FUNC, false, linkage.raw(), proto, &[])
    }

    /// A global (allocated) variable.
    pub(crate) fn var(&mut self, name: &str, ty: TypeId) -> TypeId {
        self.var_linkage(name, ty, Linkage::Global)
    }

    pub(crate) fn var_linkage(&mut self, name: &str, ty: TypeId, linkage: Linkage) -> TypeId {
        self.raw(name, VAR, false, 0, ty, &[linkage.raw()])
    }

    /// A data section of `size` bytes; vars are (var id, offset, size).
    pub(crate) fn datasec(&mut self, name: &str, size: u32, vars: &[(TypeId, u32, u32)]) -> TypeId {
        let extra: Vec<u32> = vars.iter().flat_map(|&(v, off, sz)| [v, off, sz]).collect();
        self.raw(name, DATASEC, false, vars.len() as u32, size, &extra)
    }

    pub(crate) fn float(&mut self, name: &str, size: u32) -> TypeId {
        self.raw(name, FLOAT, false, 0, size, &[])
    }

    /// A decl tag with value `value` on `target` (component -1 = the
    /// target itself, else a member/parameter index).
    pub(crate) fn decl_tag(&mut self, value: &str, target: TypeId, component_idx: i32) -> TypeId {
        self.raw(value, DECL_TAG, false, 0, target, &[component_idx as u32])
    }

    /// The blob, little endian.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        self.encode(u32::to_le_bytes)
    }

    /// The blob, big endian.
    pub(crate) fn to_bytes_be(&self) -> Vec<u8> {
        self.encode(u32::to_be_bytes)
    }

    fn encode(&self, word: fn(u32) -> [u8; 4]) -> Vec<u8> {
        let type_len: u32 = self.records.iter().map(|r| r.len() as u32 * 4).sum();
        let str_len = self.strings.len() as u32;
        let mut out = Vec::with_capacity(24 + type_len as usize + self.strings.len());
        // The magic is a u16 in the blob's byte order.
        let magic = word(0xeb9f);
        let magic = if word(1)[0] == 1 {
            [magic[0], magic[1]]
        } else {
            [magic[2], magic[3]]
        };
        out.extend_from_slice(&magic);
        out.push(1); // version
        out.push(0); // flags
        for v in [24, 0, type_len, type_len, str_len] {
            out.extend_from_slice(&word(v)); // hdr_len, type_off, type_len, str_off, str_len
        }
        for w in self.records.iter().flatten() {
            out.extend_from_slice(&word(*w));
        }
        out.extend_from_slice(&self.strings);
        out
    }
}
