//! C declarations from BTF: the `vmlinux.h` that gadget sources include,
//! generated from the running kernel's BTF (`/sys/kernel/btf/vmlinux`) by
//! [`vmlinux_h`], so that `ig image build` needs no bpftool.
//!
//! What it owns: turning a parsed [`Btf`] into one C header that clang
//! (`-target bpf`) compiles and whose types have the kernel's layout:
//!
//! - every named struct, union, enum and typedef, plus the anonymous enums
//!   nothing refers to (their constants, such as `TASK_COMM_LEN`, are what
//!   gadgets use); function prototypes appear where a typedef or a pointer
//!   uses them. Functions, variables, data sections and decl tags are not
//!   types a C program declares and are left out; type tags are skipped.
//! - an order that compiles: a type is written after what it needs. A
//!   struct used by value is defined first; one only pointed to is
//!   declared (`struct foo;`), which is what breaks reference cycles. A
//!   typedef is written once its target is declared.
//! - anonymous structs and unions inline, where they are used; an
//!   anonymous enum inline at its first use (a second inline copy would
//!   define its constants twice, so later uses get the integer type of its
//!   size), or on its own at the end when nothing uses it.
//! - layout: each struct and union is laid out the way clang will lay out
//!   what we write (natural alignment, bitfields packed into units of their
//!   type, BPF target sizes), and compared with the BTF offsets and size.
//!   Where clang would put a member earlier, explicit padding is written
//!   (`unsigned char :N;` for bits, `unsigned char __ig_padN[M];` for
//!   bytes); where it would put one later, or the size is not a multiple of
//!   the alignment, the type is written `__attribute__((packed))` and
//!   padded. A layout BTF describes but C cannot (overlapping members) is
//!   an error. Enums whose BTF size is not what clang would choose are
//!   packed when that gives the size, else used through an integer of
//!   their size. `__builtin_va_list` is clang's own (8 bytes on BPF, not
//!   the 24 of x86-64's `va_list` in BTF): it is not redefined, and the
//!   padding after a `va_list` member makes up the difference.
//! - names: BTF names that are not C identifiers have the other characters
//!   replaced by `_`. Struct, union and enum tags share one namespace, and
//!   typedefs and enum constants another; the first holder of a name (in id
//!   order) keeps it, later ones become `name___2`, `name___3`... (a suffix
//!   CO-RE ignores when it matches types). A forward declaration takes the
//!   name of the definition of the same kind and name.
//! - the `#ifndef __VMLINUX_H__` guard (`gadget/types.h` tests it) and
//!   `preserve_access_index` on every struct and union through
//!   `#pragma clang attribute push`, which a program can turn off by
//!   defining `BPF_NO_PRESERVE_ACCESS_INDEX`, as with bpftool's header.
//!
//! What it does not own: reading `/sys/kernel/btf/vmlinux` or writing the
//! file (`build`). Like the rest of `btf`, it does no I/O.
//!
//! Written from the BTF format (kernel Documentation/bpf/btf.rst) and C's
//! layout rules, not from bpftool: the output is equivalent to `bpftool btf
//! dump ... format c`, not identical to it.
//!
//! Cost: reading, parsing and writing the header for this development
//! machine's `/sys/kernel/btf/vmlinux` (kernel 6.18, about 126,000 types,
//! a 2.8 MB header) takes 0.13 s in a release build (best of 7 runs; 0.3 s
//! while other builds shared its 2 cores), 1.3 to 2 s in a debug build.
//! So `ig image build` generates it every time instead of caching it.
//!
//! Input that C cannot express (a struct containing itself by value, a
//! typedef naming itself, nesting deeper than [`MAX_DEPTH`]) is a
//! [`CHeaderError`], never a panic or a stack overflow.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::{Btf, BtfError, Composite, Enum, Int, Kind, MAX_CHAIN_DEPTH, PTR_SIZE, TypeId};

/// The include guard; `gadget/types.h` checks it to know vmlinux.h came
/// first.
pub const GUARD: &str = "__VMLINUX_H__";

/// Deepest nesting of types followed while writing one declaration (a
/// struct containing a struct..., a pointer to a typedef of an anonymous
/// struct...). The kernel's deepest is a few dozen; the bound keeps hostile
/// BTF from exhausting the stack.
pub const MAX_DEPTH: usize = 200;

/// Why BTF could not be written as C.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CHeaderError {
    /// The BTF itself cannot be read.
    #[error(transparent)]
    Btf(#[from] BtfError),
    /// A type C has no way to write, with the reason.
    #[error("BTF type {id} ({kind} {name:?}) cannot be written in C: {reason}")]
    Unrepresentable {
        /// The type.
        id: TypeId,
        /// Its kind.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A struct containing itself by value, or a typedef naming itself.
    #[error("BTF type {id} ({name:?}) refers to itself in a way C cannot express")]
    Cycle {
        /// The type.
        id: TypeId,
        /// Its name.
        name: String,
    },
    /// BTF types nest more than `max` deep at type `id`.
    #[error("BTF types nest more than {max} deep at type {id}")]
    TooDeep {
        /// The type where the limit was reached.
        id: TypeId,
        /// The deepest nesting written.
        max: usize,
    },
}

/// The C header for `btf`: see the module documentation.
pub fn vmlinux_h(btf: &Btf) -> Result<String, CHeaderError> {
    Writer::new(btf).run()
}

/// clang's own type, which must not be redefined.
const BUILTIN_VA_LIST: &str = "__builtin_va_list";
/// Size and alignment of `__builtin_va_list` on the BPF target (a `void *`).
const BPF_VA_LIST_SIZE: u64 = 8;

// Per-type flags of the writer.
/// `struct foo;` (or the typedef) has been written.
const DECLARED: u8 = 1;
/// The definition has been written.
const DEFINED: u8 = 2;
/// The definition is being prepared (its dependencies are being written).
const BUSY: u8 = 4;
/// An anonymous enum whose constants have been written.
const INLINED: u8 = 8;

/// A C identifier made of `name`: characters that cannot be in one become
/// `_`, and a leading digit gets a `_` before it.
fn sanitize(name: &str) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if name.chars().all(ok) && !name.starts_with(|c: char| c.is_ascii_digit()) {
        return Cow::Borrowed(name);
    }
    let mut s = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        s.push('_');
    }
    s.extend(name.chars().map(|c| if ok(c) { c } else { '_' }));
    Cow::Owned(s)
}

/// One C namespace: how many holders each base name has had, and every
/// name in use, so that a `___N` suffix never lands on an existing name.
#[derive(Default)]
struct Namespace {
    counts: HashMap<String, u32>,
    taken: HashSet<String>,
}

impl Namespace {
    /// Records a holder of `base`; its suffix number (0: the plain name).
    fn assign(&mut self, base: &str) -> u32 {
        let n = self.counts.entry(base.to_owned()).or_insert(0);
        *n += 1;
        if *n == 1 {
            return 0;
        }
        loop {
            let cand = format!("{base}___{n}");
            if !self.taken.contains(&cand) {
                self.taken.insert(cand);
                return *n;
            }
            *n += 1;
        }
    }
}

/// The C names of the types and enum constants.
struct Names {
    /// Suffix number per type id (tags and typedefs), 0 for none.
    suffix: Vec<u32>,
    /// Suffix numbers of renamed enum constants, by (enum id, index).
    enumerators: HashMap<(TypeId, usize), u32>,
    /// Forward declarations (and value-less enums) that stand for a
    /// definition of the same kind and name.
    canonical: HashMap<TypeId, TypeId>,
}

/// The tag kinds a forward declaration can match.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum TagKind {
    Struct,
    Union,
    Enum,
}

fn tag_kind(kind: &Kind) -> Option<TagKind> {
    match kind {
        Kind::Struct(_) => Some(TagKind::Struct),
        Kind::Union(_) => Some(TagKind::Union),
        Kind::Enum(_) | Kind::Enum64(_) => Some(TagKind::Enum),
        Kind::Fwd { is_union: false } => Some(TagKind::Struct),
        Kind::Fwd { is_union: true } => Some(TagKind::Union),
        _ => None,
    }
}

impl Names {
    fn new(btf: &Btf) -> Names {
        let mut tags = Namespace::default();
        let mut idents = Namespace::default();
        for (_, t) in btf.types() {
            let name = sanitize(btf.str(t.name));
            if tag_kind(&t.kind).is_some() && !name.is_empty() {
                tags.taken.insert(name.into_owned());
            } else if matches!(t.kind, Kind::Typedef(_)) {
                idents.taken.insert(name.into_owned());
            }
            if let Kind::Enum(e) | Kind::Enum64(e) = &t.kind {
                for v in &e.values {
                    idents.taken.insert(sanitize(btf.str(v.name)).into_owned());
                }
            }
        }
        let mut names = Names {
            suffix: vec![0; btf.type_count() as usize],
            enumerators: HashMap::new(),
            canonical: HashMap::new(),
        };
        // Definitions first, so that a forward declaration seen before its
        // definition still finds it.
        let mut first: HashMap<(String, TagKind), TypeId> = HashMap::new();
        let mut later = Vec::new();
        for (id, t) in btf.types() {
            let name = sanitize(btf.str(t.name));
            let empty_enum =
                matches!(&t.kind, Kind::Enum(e) | Kind::Enum64(e) if e.values.is_empty());
            match &t.kind {
                _ if name.is_empty() => {}
                Kind::Fwd { .. } => later.push(id),
                _ if empty_enum => later.push(id),
                Kind::Struct(_) | Kind::Union(_) | Kind::Enum(_) | Kind::Enum64(_) => {
                    names.suffix[id as usize] = tags.assign(&name);
                    let kind = tag_kind(&t.kind).expect("a tag kind");
                    first.entry((name.into_owned(), kind)).or_insert(id);
                }
                Kind::Typedef(_) if name != BUILTIN_VA_LIST => {
                    names.suffix[id as usize] = idents.assign(&name);
                }
                _ => {}
            }
            if let Kind::Enum(e) | Kind::Enum64(e) = &t.kind {
                for (i, v) in e.values.iter().enumerate() {
                    let n = idents.assign(&sanitize(btf.str(v.name)));
                    if n > 0 {
                        names.enumerators.insert((id, i), n);
                    }
                }
            }
        }
        for id in later {
            let Ok(t) = btf.get(id) else { continue };
            let name = sanitize(btf.str(t.name)).into_owned();
            let kind = tag_kind(&t.kind).expect("a tag kind");
            match first.get(&(name.clone(), kind)) {
                Some(&def) => {
                    names.canonical.insert(id, def);
                }
                None => {
                    names.suffix[id as usize] = tags.assign(&name);
                    first.insert((name, kind), id);
                }
            }
        }
        names
    }
}

/// A struct or union as clang will lay out what we write.
#[derive(Debug)]
struct Layout {
    packed: bool,
    /// Alignment in bytes of the written type.
    align: u64,
    slots: Vec<Slot>,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    /// BTF member `index`, with its bitfield width (0: not a bitfield).
    Member { index: usize, bits: u32 },
    /// Explicit padding from bit `from` to bit `to` of the type.
    Pad { from: u64, to: u64 },
}

/// How an enum is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnumRep {
    /// `enum foo { ... }`: clang gives it the BTF size.
    Plain,
    /// `enum foo { ... } __attribute__((packed))` gives the BTF size.
    Packed,
    /// No C enum has the BTF size (or it has no values): uses are written
    /// as the integer type of its size.
    AsInt,
}

fn enum_fits(e: &Enum, bytes: u32) -> bool {
    let signed = e.values.iter().any(|v| v.value < 0);
    let bits = bytes * 8;
    let (lo, hi) = if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    };
    e.values.iter().all(|v| v.value >= lo && v.value <= hi)
}

fn enum_rep(e: &Enum) -> EnumRep {
    if e.values.is_empty() {
        return EnumRep::AsInt;
    }
    // clang: int or unsigned int when the values fit, else 64 bits.
    let natural = if enum_fits(e, 4) { 4 } else { 8 };
    if e.size == natural {
        return EnumRep::Plain;
    }
    // Packed: the smallest integer that holds every value.
    match [1, 2, 4, 8].into_iter().find(|&b| enum_fits(e, b)) {
        Some(b) if b == e.size => EnumRep::Packed,
        _ => EnumRep::AsInt,
    }
}

/// The C integer type of `size` bytes.
fn int_of_size(size: u32, signed: bool) -> Option<&'static str> {
    Some(match (size, signed) {
        (1, true) => "signed char",
        (1, false) => "unsigned char",
        (2, true) => "short",
        (2, false) => "unsigned short",
        (4, true) => "int",
        (4, false) => "unsigned int",
        (8, true) => "long long",
        (8, false) => "unsigned long long",
        (16, true) => "__int128",
        (16, false) => "unsigned __int128",
        _ => return None,
    })
}

/// The size clang gives the integer type `name` on BPF, when `name` is one
/// (`long unsigned int`, `_Bool`, `__int128 unsigned`...).
fn c_int_size(name: &str) -> Option<u32> {
    let mut longs = 0;
    let mut size = None;
    for w in name.split(' ') {
        match w {
            "signed" | "unsigned" | "int" => {}
            "char" | "_Bool" => size = Some(1),
            "short" => size = Some(2),
            "__int128" => size = Some(16),
            "long" => longs += 1,
            _ => return None,
        }
    }
    match (size, longs) {
        (Some(s), 0) => Some(s),
        (None, 0) => Some(4),
        (None, 1 | 2) => Some(8),
        _ => None,
    }
}

/// `base` with the declarator `inner` after it.
fn join(base: &str, inner: &str) -> String {
    if inner.is_empty() {
        base.to_owned()
    } else {
        format!("{base} {inner}")
    }
}

fn tabs(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n('\t', n));
}

/// An enum constant's value as a C literal of a type that holds it.
fn literal(v: i128) -> String {
    if i32::try_from(v).is_ok() {
        v.to_string()
    } else if u32::try_from(v).is_ok() {
        format!("{v}U")
    } else if v == i128::from(i64::MIN) {
        // -9223372036854775808 is a negated literal too large for long long.
        "(-9223372036854775807LL - 1)".to_owned()
    } else if i64::try_from(v).is_ok() {
        format!("{v}LL")
    } else {
        format!("{v}ULL")
    }
}

/// A member as the layout sees it.
struct MemberInfo {
    /// Bit offset of the member.
    off: u64,
    /// Bitfield width, 0 when not a bitfield.
    bits: u32,
    /// C size and alignment of its type, in bytes.
    size: u64,
    align: u64,
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

struct Writer<'a> {
    btf: &'a Btf,
    names: Names,
    flags: Vec<u8>,
    layouts: HashMap<TypeId, Rc<Layout>>,
    /// Layouts being computed (a by-value cycle shows up here).
    layout_busy: HashSet<TypeId>,
    /// Numbers the padding and unnamed members of one top-level definition
    /// (its anonymous structs included), so their names never repeat.
    pad_counter: u32,
    out: String,
}

impl<'a> Writer<'a> {
    fn new(btf: &'a Btf) -> Self {
        Writer {
            btf,
            names: Names::new(btf),
            flags: vec![0; btf.type_count() as usize],
            layouts: HashMap::new(),
            layout_busy: HashSet::new(),
            pad_counter: 0,
            // The kernel's header is some 3 MB.
            out: String::with_capacity(btf.type_count() as usize * 40),
        }
    }

    fn run(mut self) -> Result<String, CHeaderError> {
        self.out.push_str(
            "/* Generated by ig from the kernel's BTF: the types of the running kernel. */\n\n",
        );
        self.out
            .push_str(&format!("#ifndef {GUARD}\n#define {GUARD}\n\n"));
        self.out.push_str(
            "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n\
             #pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n\
             #endif\n\n",
        );
        let btf = self.btf;
        for (id, t) in btf.types() {
            let named = !t.name.is_empty();
            match &t.kind {
                Kind::Struct(_) | Kind::Union(_) if named => self.need(id, true, 0)?,
                Kind::Enum(_) | Kind::Enum64(_) if named => self.define_enum(id)?,
                Kind::Typedef(_) => self.declare_typedef(id, 0)?,
                Kind::Fwd { .. } if !self.names.canonical.contains_key(&id) => self.forward(id)?,
                _ => {}
            }
        }
        // Anonymous enums no written type used: their constants on their own.
        for (id, t) in btf.types() {
            if let Kind::Enum(e) | Kind::Enum64(e) = &t.kind
                && t.name.is_empty()
                && !e.values.is_empty()
                && self.flags[id as usize] & INLINED == 0
            {
                self.flags[id as usize] |= INLINED;
                let body = self.enum_body(id, e, 0);
                self.out.push_str(&body);
                self.out.push_str(";\n\n");
            }
        }
        self.out.push_str(
            "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n\n",
        );
        self.out.push_str(&format!("#endif /* {GUARD} */\n"));
        Ok(self.out)
    }

    fn unrepresentable(&self, id: TypeId, reason: impl Into<String>) -> CHeaderError {
        let (kind, name) = match self.btf.get(id) {
            Ok(t) => (t.kind.name(), self.btf.str(t.name).to_owned()),
            Err(_) => ("?", String::new()),
        };
        CHeaderError::Unrepresentable {
            id,
            kind,
            name,
            reason: reason.into(),
        }
    }

    fn cycle(&self, id: TypeId) -> CHeaderError {
        CHeaderError::Cycle {
            id,
            name: self.btf.name_of(id).unwrap_or("").to_owned(),
        }
    }

    fn depth(id: TypeId, depth: usize) -> Result<(), CHeaderError> {
        if depth > MAX_DEPTH {
            return Err(CHeaderError::TooDeep { id, max: MAX_DEPTH });
        }
        Ok(())
    }

    fn canonical(&self, id: TypeId) -> TypeId {
        self.names.canonical.get(&id).copied().unwrap_or(id)
    }

    /// The C name of a struct, union, enum, forward declaration or typedef.
    fn c_name(&self, id: TypeId) -> String {
        let id = self.canonical(id);
        let base = sanitize(self.btf.name_of(id).unwrap_or(""));
        match self.names.suffix.get(id as usize).copied().unwrap_or(0) {
            0 => base.into_owned(),
            n => format!("{base}___{n}"),
        }
    }

    /// The type under qualifiers and type tags (not typedefs).
    fn under_qualifiers(&self, mut id: TypeId) -> Result<TypeId, CHeaderError> {
        for _ in 0..=MAX_CHAIN_DEPTH {
            match self.btf.kind(id)? {
                Kind::Const(t) | Kind::Volatile(t) | Kind::Restrict(t) | Kind::TypeTag(t) => {
                    id = *t
                }
                _ => return Ok(id),
            }
        }
        Err(CHeaderError::TooDeep {
            id,
            max: MAX_CHAIN_DEPTH,
        })
    }

    /// The kind under qualifiers and type tags (not typedefs).
    fn kind_under_qualifiers(&self, id: TypeId) -> Result<&'a Kind, CHeaderError> {
        let btf = self.btf;
        Ok(btf.kind(self.under_qualifiers(id)?)?)
    }

    // --- What must be written before a use -------------------------------

    /// Writes what a use of `id` needs first: its definition when
    /// `complete` (a use by value), else a declaration.
    fn need(&mut self, id: TypeId, complete: bool, depth: usize) -> Result<(), CHeaderError> {
        Self::depth(id, depth)?;
        let btf = self.btf;
        let t = btf.get(id)?;
        match &t.kind {
            Kind::Void | Kind::Int(_) | Kind::Float { .. } => Ok(()),
            Kind::Ptr(target) => self.need(*target, false, depth + 1),
            // C has no array of an incomplete type.
            Kind::Array(a) => self.need(a.elem, true, depth + 1),
            Kind::Const(target)
            | Kind::Volatile(target)
            | Kind::Restrict(target)
            | Kind::TypeTag(target) => self.need(*target, complete, depth + 1),
            Kind::Typedef(target) => {
                self.declare_typedef(id, depth + 1)?;
                if complete {
                    self.need(*target, true, depth + 1)?;
                }
                Ok(())
            }
            Kind::Struct(c) | Kind::Union(c) if t.name.is_empty() => {
                // Written inline wherever it is used: its members by value
                // need what a definition needs.
                for m in &c.members {
                    self.need(m.ty, true, depth + 1)?;
                }
                Ok(())
            }
            Kind::Struct(_) | Kind::Union(_) if complete => self.define(id, depth + 1),
            Kind::Struct(_) | Kind::Union(_) => self.forward(id),
            Kind::Enum(_) | Kind::Enum64(_) if t.name.is_empty() => Ok(()),
            Kind::Enum(_) | Kind::Enum64(_) => self.define_enum(self.canonical(id)),
            Kind::Fwd { .. } => match self.names.canonical.get(&id) {
                Some(&def) => self.need(def, complete, depth + 1),
                None if complete => {
                    Err(self.unrepresentable(id, "used by value but never defined"))
                }
                None => self.forward(id),
            },
            Kind::FuncProto(p) => {
                // A prototype's parameters and return type may be
                // incomplete: declarations are enough.
                self.need(p.ret, false, depth + 1)?;
                for param in &p.params {
                    self.need(param.ty, false, depth + 1)?;
                }
                Ok(())
            }
            Kind::Func { .. } | Kind::Var(_) | Kind::Datasec(_) | Kind::DeclTag { .. } => {
                Err(self.unrepresentable(id, "not a type a declaration can use"))
            }
        }
    }

    /// `struct foo;` unless already declared or defined.
    fn forward(&mut self, id: TypeId) -> Result<(), CHeaderError> {
        let id = self.canonical(id);
        if self.flags[id as usize] & (DECLARED | DEFINED) != 0 {
            return Ok(());
        }
        let kw = match self.btf.kind(id)? {
            Kind::Union(_) | Kind::Fwd { is_union: true } => "union",
            _ => "struct",
        };
        let name = self.c_name(id);
        self.out.push_str(&format!("{kw} {name};\n\n"));
        self.flags[id as usize] |= DECLARED;
        Ok(())
    }

    /// The definition of the named struct or union `id`, after everything
    /// its members need.
    fn define(&mut self, id: TypeId, depth: usize) -> Result<(), CHeaderError> {
        let f = self.flags[id as usize];
        if f & DEFINED != 0 {
            return Ok(());
        }
        if f & BUSY != 0 {
            return Err(self.cycle(id));
        }
        self.flags[id as usize] |= BUSY;
        let btf = self.btf;
        if let Kind::Struct(c) | Kind::Union(c) = btf.kind(id)? {
            for m in &c.members {
                self.need(m.ty, true, depth + 1)?;
            }
        }
        self.pad_counter = 0;
        let body = self.body(id, 0, depth + 1)?;
        self.out.push_str(&body);
        self.out.push_str(";\n\n");
        self.flags[id as usize] = (f | DEFINED | DECLARED) & !BUSY;
        Ok(())
    }

    /// The definition of the named enum `id` (nothing for one without
    /// values: its uses are written as integers).
    fn define_enum(&mut self, id: TypeId) -> Result<(), CHeaderError> {
        if self.flags[id as usize] & DEFINED != 0 {
            return Ok(());
        }
        self.flags[id as usize] |= DEFINED;
        if let Kind::Enum(e) | Kind::Enum64(e) = self.btf.kind(id)?
            && !e.values.is_empty()
        {
            let body = self.enum_body(id, e, 0);
            self.out.push_str(&body);
            self.out.push_str(";\n\n");
        }
        Ok(())
    }

    /// `typedef ...;` once its target is declared.
    fn declare_typedef(&mut self, id: TypeId, depth: usize) -> Result<(), CHeaderError> {
        let f = self.flags[id as usize];
        if f & DECLARED != 0 {
            return Ok(());
        }
        if f & BUSY != 0 {
            return Err(self.cycle(id));
        }
        let btf = self.btf;
        let name = btf.name_of(id)?;
        if name == BUILTIN_VA_LIST {
            self.flags[id as usize] |= DECLARED;
            return Ok(());
        }
        if name.is_empty() {
            return Err(self.unrepresentable(id, "a typedef without a name"));
        }
        let Kind::Typedef(target) = *btf.kind(id)? else {
            return Err(self.unrepresentable(id, "not a typedef"));
        };
        self.flags[id as usize] |= BUSY;
        self.need(target, false, depth + 1)?;
        self.pad_counter = 0;
        let decl = self.decl(target, &self.c_name(id), 0, true, depth + 1)?;
        self.out.push_str(&format!("typedef {decl};\n\n"));
        self.flags[id as usize] = (f | DECLARED) & !BUSY;
        Ok(())
    }

    // --- Sizes and layout --------------------------------------------------

    /// Size in bytes of `id` as clang will see what we write.
    fn c_size(&mut self, id: TypeId, depth: usize) -> Result<u64, CHeaderError> {
        Self::depth(id, depth)?;
        let btf = self.btf;
        let t = btf.get(id)?;
        Ok(match &t.kind {
            Kind::Int(Int { size, .. })
            | Kind::Float { size }
            | Kind::Struct(Composite { size, .. })
            | Kind::Union(Composite { size, .. })
            | Kind::Enum(Enum { size, .. })
            | Kind::Enum64(Enum { size, .. }) => u64::from(*size),
            Kind::Ptr(_) => u64::from(PTR_SIZE),
            Kind::Array(a) => u64::from(a.len) * self.c_size(a.elem, depth + 1)?,
            Kind::Typedef(_) if btf.str(t.name) == BUILTIN_VA_LIST => BPF_VA_LIST_SIZE,
            Kind::Typedef(target)
            | Kind::Const(target)
            | Kind::Volatile(target)
            | Kind::Restrict(target)
            | Kind::TypeTag(target) => self.c_size(*target, depth + 1)?,
            Kind::Fwd { .. } => match self.names.canonical.get(&id) {
                Some(&def) => self.c_size(def, depth + 1)?,
                None => return Err(self.unrepresentable(id, "used by value but never defined")),
            },
            _ => return Err(self.unrepresentable(id, "has no size")),
        })
    }

    /// Alignment in bytes of `id` as clang will see what we write.
    fn c_align(&mut self, id: TypeId, depth: usize) -> Result<u64, CHeaderError> {
        Self::depth(id, depth)?;
        let btf = self.btf;
        let t = btf.get(id)?;
        Ok(match &t.kind {
            Kind::Int(Int { size, .. })
            | Kind::Float { size }
            | Kind::Enum(Enum { size, .. })
            | Kind::Enum64(Enum { size, .. }) => {
                if !size.is_power_of_two() || *size > 16 {
                    return Err(self.unrepresentable(id, format!("no C type is {size} bytes")));
                }
                u64::from(*size)
            }
            Kind::Ptr(_) => u64::from(PTR_SIZE),
            Kind::Array(a) => self.c_align(a.elem, depth + 1)?,
            Kind::Struct(_) | Kind::Union(_) => self.layout(id, depth + 1)?.align,
            Kind::Typedef(_) if btf.str(t.name) == BUILTIN_VA_LIST => BPF_VA_LIST_SIZE,
            Kind::Typedef(target)
            | Kind::Const(target)
            | Kind::Volatile(target)
            | Kind::Restrict(target)
            | Kind::TypeTag(target) => self.c_align(*target, depth + 1)?,
            Kind::Fwd { .. } => match self.names.canonical.get(&id) {
                Some(&def) => self.c_align(def, depth + 1)?,
                None => return Err(self.unrepresentable(id, "used by value but never defined")),
            },
            _ => return Err(self.unrepresentable(id, "has no alignment")),
        })
    }

    /// The layout of struct or union `id` (memoized).
    fn layout(&mut self, id: TypeId, depth: usize) -> Result<Rc<Layout>, CHeaderError> {
        if let Some(l) = self.layouts.get(&id) {
            return Ok(Rc::clone(l));
        }
        if !self.layout_busy.insert(id) {
            return Err(self.cycle(id));
        }
        let btf = self.btf;
        let (c, is_union) = match btf.kind(id)? {
            Kind::Struct(c) => (c, false),
            Kind::Union(c) => (c, true),
            _ => return Err(self.unrepresentable(id, "not a struct or union")),
        };
        let mut infos = Vec::with_capacity(c.members.len());
        for m in &c.members {
            let mut off = u64::from(m.bit_offset);
            let mut bits = u32::from(m.bitfield_size);
            // The legacy encoding: the bitfield is an INT with fewer bits.
            if bits == 0
                && let Kind::Int(i) = btf.kind(btf.skip_modifiers(m.ty)?)?
                && (u32::from(i.bits) < i.size * 8 || i.offset != 0)
            {
                bits = u32::from(i.bits);
                off += u64::from(i.offset);
            }
            let size = self.c_size(m.ty, depth + 1)?;
            let align = self.c_align(m.ty, depth + 1)?;
            if u64::from(bits) > size * 8 {
                return Err(self
                    .unrepresentable(id, format!("a {bits}-bit bitfield of a {size}-byte type")));
            }
            infos.push(MemberInfo {
                off,
                bits,
                size,
                align,
            });
        }
        let size = u64::from(c.size);
        let plan = |packed| {
            if is_union {
                plan_union(&infos, size, packed)
            } else {
                plan_struct(&infos, size, packed)
            }
        };
        let layout = match plan(false) {
            Some(l) => l,
            None => plan(true).ok_or_else(|| {
                self.unrepresentable(id, "its members overlap or do not fit in its size")
            })?,
        };
        let layout = Rc::new(layout);
        self.layout_busy.remove(&id);
        self.layouts.insert(id, Rc::clone(&layout));
        Ok(layout)
    }

    // --- Writing -----------------------------------------------------------

    /// `struct name {...}` (or anonymous) at `indent`, without the `;`.
    fn body(&mut self, id: TypeId, indent: usize, depth: usize) -> Result<String, CHeaderError> {
        Self::depth(id, depth)?;
        let btf = self.btf;
        let t = btf.get(id)?;
        let (c, kw) = match &t.kind {
            Kind::Struct(c) => (c, "struct"),
            Kind::Union(c) => (c, "union"),
            _ => return Err(self.unrepresentable(id, "not a struct or union")),
        };
        let layout = self.layout(id, depth + 1)?;
        let mut s = String::new();
        if t.name.is_empty() {
            s.push_str(&format!("{kw} {{\n"));
        } else {
            s.push_str(&format!("{kw} {} {{\n", self.c_name(id)));
        }
        for slot in &layout.slots {
            match *slot {
                Slot::Member { index, bits } => {
                    let m = &c.members[index];
                    let anonymous = m.name.is_empty();
                    // `const struct { ... };` is an anonymous member too.
                    let mt = btf.get(self.under_qualifiers(m.ty)?)?;
                    let inline_composite = anonymous
                        && mt.name.is_empty()
                        && matches!(mt.kind, Kind::Struct(_) | Kind::Union(_));
                    let name = if !anonymous {
                        sanitize(btf.str(m.name)).into_owned()
                    } else if inline_composite || bits > 0 {
                        String::new()
                    } else {
                        // An unnamed member of another type would be a
                        // declaration, not a member: give it a name.
                        self.pad_counter += 1;
                        format!("__ig_unnamed{}", self.pad_counter)
                    };
                    tabs(&mut s, indent + 1);
                    s.push_str(&self.decl(m.ty, &name, indent + 1, true, depth + 1)?);
                    if bits > 0 {
                        s.push_str(&format!(": {bits}"));
                    }
                    s.push_str(";\n");
                }
                Slot::Pad { from, to } => self.padding(&mut s, indent + 1, from, to),
            }
        }
        tabs(&mut s, indent);
        s.push('}');
        if layout.packed {
            s.push_str(" __attribute__((packed))");
        }
        Ok(s)
    }

    /// Members that fill bits `from..to`: a bitfield to the next byte, a
    /// named byte array, a bitfield for the bits left.
    fn padding(&mut self, s: &mut String, indent: usize, from: u64, to: u64) {
        let mut p = from;
        if !p.is_multiple_of(8) {
            let k = (8 - p % 8).min(to - p);
            tabs(s, indent);
            s.push_str(&format!("unsigned char: {k};\n"));
            p += k;
        }
        if to - p >= 8 {
            let bytes = (to - p) / 8;
            self.pad_counter += 1;
            tabs(s, indent);
            s.push_str(&format!(
                "unsigned char __ig_pad{}[{bytes}];\n",
                self.pad_counter
            ));
            p += bytes * 8;
        }
        if to > p {
            tabs(s, indent);
            s.push_str(&format!("unsigned char: {};\n", to - p));
        }
    }

    /// `enum name { A = 1, ... }` (or anonymous) at `indent`, without `;`.
    fn enum_body(&self, id: TypeId, e: &Enum, indent: usize) -> String {
        let btf = self.btf;
        let mut s = String::new();
        if btf.name_of(id).unwrap_or("").is_empty() {
            s.push_str("enum {\n");
        } else {
            s.push_str(&format!("enum {} {{\n", self.c_name(id)));
        }
        for (i, v) in e.values.iter().enumerate() {
            tabs(&mut s, indent + 1);
            s.push_str(&sanitize(btf.str(v.name)));
            if let Some(n) = self.names.enumerators.get(&(id, i)) {
                s.push_str(&format!("___{n}"));
            }
            s.push_str(" = ");
            s.push_str(&literal(v.value));
            s.push_str(",\n");
        }
        tabs(&mut s, indent);
        s.push('}');
        if enum_rep(e) == EnumRep::Packed {
            s.push_str(" __attribute__((packed))");
        }
        s
    }

    /// The C declaration of `inner` (a name, or "" for an abstract
    /// declarator) with type `id`: `int (*inner)[4]`, `struct foo *inner`...
    /// `inline_enum` allows writing an anonymous enum's definition here
    /// (not inside a prototype, where its constants would not be visible).
    fn decl(
        &mut self,
        id: TypeId,
        inner: &str,
        indent: usize,
        inline_enum: bool,
        depth: usize,
    ) -> Result<String, CHeaderError> {
        Self::depth(id, depth)?;
        let btf = self.btf;
        let t = btf.get(id)?;
        Ok(match &t.kind {
            Kind::Void => join("void", inner),
            Kind::Int(i) => {
                let name = btf.str(t.name);
                let base = match c_int_size(name) {
                    Some(s) if s == i.size => name,
                    _ if i.is_bool && i.size == 1 => "_Bool",
                    _ => int_of_size(i.size, i.signed).ok_or_else(|| {
                        self.unrepresentable(id, format!("no C integer is {} bytes", i.size))
                    })?,
                };
                join(base, inner)
            }
            Kind::Float { size } => {
                let base = match size {
                    4 => "float",
                    8 => "double",
                    // BPF has no other floating type: an integer keeps the
                    // size and alignment.
                    _ => int_of_size(*size, false).ok_or_else(|| {
                        self.unrepresentable(id, format!("no C type is {size} bytes"))
                    })?,
                };
                join(base, inner)
            }
            Kind::Ptr(target) => {
                let paren = matches!(
                    self.kind_under_qualifiers(*target)?,
                    Kind::Array(_) | Kind::FuncProto(_)
                );
                let inner = if paren {
                    format!("(*{inner})")
                } else {
                    format!("*{inner}")
                };
                self.decl(*target, &inner, indent, inline_enum, depth + 1)?
            }
            Kind::Array(a) => {
                let inner = format!("{inner}[{}]", a.len);
                self.decl(a.elem, &inner, indent, inline_enum, depth + 1)?
            }
            Kind::Const(target) | Kind::Volatile(target) | Kind::Restrict(target) => {
                let q = match t.kind {
                    Kind::Const(_) => "const",
                    Kind::Volatile(_) => "volatile",
                    _ => "restrict",
                };
                if matches!(self.kind_under_qualifiers(*target)?, Kind::Ptr(_)) {
                    // Qualifies the pointer: after its `*`.
                    self.decl(*target, &join(q, inner), indent, inline_enum, depth + 1)?
                } else if q == "restrict" {
                    // Only pointers can be restrict.
                    self.decl(*target, inner, indent, inline_enum, depth + 1)?
                } else {
                    let d = self.decl(*target, inner, indent, inline_enum, depth + 1)?;
                    // `const` on an array of const elements (BTF says both)
                    // would be written twice: C warns.
                    let leading = d
                        .split(' ')
                        .take_while(|w| matches!(*w, "const" | "volatile"));
                    if leading.clone().any(|w| w == q) {
                        d
                    } else {
                        format!("{q} {d}")
                    }
                }
            }
            Kind::TypeTag(target) => self.decl(*target, inner, indent, inline_enum, depth + 1)?,
            Kind::Typedef(_) if btf.str(t.name) == BUILTIN_VA_LIST => join(BUILTIN_VA_LIST, inner),
            Kind::Typedef(_) => join(&self.c_name(id), inner),
            Kind::Struct(_) | Kind::Union(_) if t.name.is_empty() => {
                let body = self.body(id, indent, depth + 1)?;
                join(&body, inner)
            }
            Kind::Struct(_) => join(&format!("struct {}", self.c_name(id)), inner),
            Kind::Union(_) => join(&format!("union {}", self.c_name(id)), inner),
            Kind::Enum(e) | Kind::Enum64(e) => {
                let def = self.canonical(id);
                let e = match btf.kind(def)? {
                    Kind::Enum(d) | Kind::Enum64(d) => d,
                    _ => e,
                };
                let as_int = || {
                    int_of_size(e.size, e.values.iter().any(|v| v.value < 0)).ok_or_else(|| {
                        self.unrepresentable(id, format!("no C integer is {} bytes", e.size))
                    })
                };
                if enum_rep(e) == EnumRep::AsInt {
                    join(as_int()?, inner)
                } else if !t.name.is_empty() {
                    join(&format!("enum {}", self.c_name(def)), inner)
                } else if inline_enum && self.flags[id as usize] & INLINED == 0 {
                    self.flags[id as usize] |= INLINED;
                    join(&self.enum_body(id, e, indent), inner)
                } else {
                    join(as_int()?, inner)
                }
            }
            Kind::Fwd { is_union } => match self.names.canonical.get(&id) {
                Some(&def) => self.decl(def, inner, indent, inline_enum, depth + 1)?,
                None => {
                    let kw = if *is_union { "union" } else { "struct" };
                    join(&format!("{kw} {}", self.c_name(id)), inner)
                }
            },
            Kind::FuncProto(p) => {
                let mut params = Vec::with_capacity(p.params.len());
                for (i, param) in p.params.iter().enumerate() {
                    if param.ty == super::VOID && i + 1 == p.params.len() {
                        params.push("...".to_owned());
                    } else {
                        // Without parameter names: a name equal to a
                        // typedef's would hide it from later parameters.
                        params.push(self.decl(param.ty, "", indent, false, depth + 1)?);
                    }
                }
                let list = match params.as_slice() {
                    [] => "void".to_owned(),
                    // `(...)` alone is not C before C23.
                    [only] if only == "..." => String::new(),
                    _ => params.join(", "),
                };
                let inner = format!("{inner}({list})");
                self.decl(p.ret, &inner, indent, false, depth + 1)?
            }
            Kind::Func { .. } | Kind::Var(_) | Kind::Datasec(_) | Kind::DeclTag { .. } => {
                return Err(self.unrepresentable(id, "not a type a declaration can use"));
            }
        })
    }
}

/// A struct's members placed as clang places them (`packed`: every
/// alignment 1), with padding where BTF puts a member later. `None` when
/// clang would put a member later than BTF, or cannot reach the size.
fn plan_struct(members: &[MemberInfo], size: u64, packed: bool) -> Option<Layout> {
    let mut pos = 0u64;
    let mut max_align = 1u64;
    let mut slots = Vec::with_capacity(members.len());
    for (index, m) in members.iter().enumerate() {
        let align_bits = if packed { 8 } else { m.align * 8 };
        if m.bits > 0 {
            let w = u64::from(m.bits);
            // Not packed, a bitfield may not cross a unit of its type.
            let fits = |p: u64| packed || p % align_bits + w <= m.size * 8;
            let natural = if fits(pos) {
                pos
            } else {
                align_up(pos, align_bits)
            };
            if m.off < natural || !fits(m.off) {
                return None;
            }
            if m.off > natural {
                slots.push(Slot::Pad {
                    from: pos,
                    to: m.off,
                });
            }
            pos = m.off + w;
        } else {
            if !m.off.is_multiple_of(align_bits) || m.off < align_up(pos, align_bits) {
                return None;
            }
            if m.off > align_up(pos, align_bits) {
                slots.push(Slot::Pad {
                    from: pos,
                    to: m.off,
                });
            }
            pos = m.off + m.size * 8;
        }
        if !packed {
            max_align = max_align.max(m.align);
        }
        slots.push(Slot::Member {
            index,
            bits: m.bits,
        });
    }
    let end = size * 8;
    if pos > end || !end.is_multiple_of(max_align * 8) {
        return None;
    }
    if align_up(pos, max_align * 8) != end {
        slots.push(Slot::Pad { from: pos, to: end });
    }
    Some(Layout {
        packed,
        align: max_align,
        slots,
    })
}

/// A union's members, all at offset 0, and a padding member when BTF's size
/// is larger than clang's.
fn plan_union(members: &[MemberInfo], size: u64, packed: bool) -> Option<Layout> {
    let mut max_align = 1u64;
    let mut max_size = 0u64;
    let mut slots = Vec::with_capacity(members.len() + 1);
    for (index, m) in members.iter().enumerate() {
        if m.off != 0 {
            return None;
        }
        let data = if m.bits > 0 {
            u64::from(m.bits).div_ceil(8)
        } else {
            m.size
        };
        max_size = max_size.max(data);
        if !packed {
            max_align = max_align.max(m.align);
        }
        slots.push(Slot::Member {
            index,
            bits: m.bits,
        });
    }
    let natural = align_up(max_size, max_align);
    if !size.is_multiple_of(max_align) || size < natural {
        return None;
    }
    if size > natural {
        slots.push(Slot::Pad {
            from: 0,
            to: size * 8,
        });
    }
    Some(Layout {
        packed,
        align: max_align,
        slots,
    })
}

#[cfg(test)]
mod tests;
