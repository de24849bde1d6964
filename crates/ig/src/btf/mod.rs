//! A small, pure BTF reader.
//!
//! BTF (BPF Type Format, kernel Documentation/bpf/btf.rst) is the type
//! information clang puts in the `.BTF` section of an eBPF object and the
//! kernel exposes in `/sys/kernel/btf/vmlinux`. Gadgets describe their events,
//! parameters and maps through it (`gadget_tracer_*` marker variables, event
//! structs, typedefs such as `gadget_pid`), so we need to read it; aya keeps
//! its own BTF types private, hence this module.
//!
//! What it owns: decoding a BTF blob of either byte order into [`Btf`] (every
//! kind up to ENUM64) and type queries on it: lookup by id or name,
//! [`Btf::size_of`], [`Btf::resolve`] through typedefs and qualifiers
//! (collecting the typedef names), [`Btf::resolve_through_arrays`] for
//! `gadget_comm comm[16]`-style members, [`Btf::is_const_void_ptr`] for marker
//! variables and [`Btf::datasec_of`] for a variable's section entry; and
//! [`c_header`], which writes a parsed blob as C declarations (the
//! `vmlinux.h` of `ig image build`), and [`subset`], which cuts the kernel's
//! BTF down to what a set of CO-RE relocations can look at (for aya to
//! relocate against, `docs/design/012-attach-time.md`).
//!
//! What it does not own: finding the `.BTF` section in an ELF file (the ELF
//! module), loading anything into the kernel (aya), or mapping types to event
//! schemas (`bpf::schema`). It does no I/O: [`Btf::parse`] takes bytes.
//!
//! Robustness: the input is untrusted (it comes from gadget images). Parsing
//! never panics, allocates at most in proportion to the input, and checks that
//! every string offset and type reference is valid, so queries only fail on
//! ids passed in by the caller or on chains longer than [`MAX_CHAIN_DEPTH`]
//! (which is how reference cycles show up). Every failure is a [`BtfError`]
//! saying where and what.
//!
//! Split BTF (kernel module BTF layered on vmlinux) is not supported: gadget
//! objects carry self-contained BTF.

pub mod c_header;
mod error;
mod parse;
pub mod subset;
mod types;

// Also the socket enricher's value struct (`bpf::socket_enricher`); most
// of it only serves tests.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod builder;
#[cfg(test)]
mod tests;

pub use error::BtfError;
pub use parse::MAX_NAME_LEN;
pub use types::{
    Array, Composite, Datasec, Enum, EnumValue, FuncProto, Int, Kind, Linkage, Member, Name, Param,
    Type, TypeId, VOID, Var, VarSecinfo,
};

use parse::Endian;

/// Most steps any chain walk takes (typedef → const → ... or nested arrays)
/// before giving up with [`BtfError::ChainTooDeep`]. Real chains are a
/// handful of steps; the bound is what turns a reference cycle into an error
/// instead of a hang. Callers that recurse into struct members should bound
/// their own recursion too (a struct can contain itself in hostile BTF).
pub const MAX_CHAIN_DEPTH: usize = 64;

/// Size of a pointer. BTF does not record it; BPF is a 64-bit target, and
/// the 64-bit kernels we run on agree.
pub const PTR_SIZE: u32 = 8;

/// A parsed BTF blob: all types, indexed by [`TypeId`], plus the string table
/// their [`Name`]s point into.
#[derive(Debug, Clone)]
pub struct Btf {
    /// Index = type id; entry 0 is [`Kind::Void`].
    types: Vec<Type>,
    /// The whole string section, validated as UTF-8 once so that names can
    /// be handed out as `&str` without copying.
    strings: Box<str>,
    /// Ids of the DATASEC types, so [`Btf::datasec_of`] need not scan
    /// every type.
    datasecs: Vec<TypeId>,
    endian: Endian,
}

/// The result of [`Btf::resolve`]: the type under the modifiers, and the
/// typedef names met on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<'a> {
    /// First type in the chain that is not a typedef, const, volatile,
    /// restrict or type tag (may be [`VOID`]).
    pub id: TypeId,
    /// Names of the typedefs crossed, outermost first.
    pub typedefs: Vec<&'a str>,
}

/// The result of [`Btf::resolve_through_arrays`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayResolved<'a> {
    /// Typedef names met before reaching an array (or the final type when
    /// there is no array), outermost first.
    pub typedefs: Vec<&'a str>,
    /// Array lengths, outermost first (`int a[2][3]` gives `[2, 3]`); empty
    /// when the type is not an array.
    pub dims: Vec<u32>,
    /// Typedef names met inside the arrays, i.e. on the element types,
    /// outermost first (`gadget_comm comm[16]` gives `["gadget_comm"]`).
    pub elem_typedefs: Vec<&'a str>,
    /// The innermost type: neither array nor modifier.
    pub id: TypeId,
}

impl Btf {
    /// Parses a raw BTF blob (the content of a `.BTF` section or of
    /// `/sys/kernel/btf/vmlinux`), little or big endian.
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        parse::parse(data)
    }

    /// Byte offset in `data` (a blob [`Btf::parse`] accepts) of each type's
    /// record, indexed by type id (0 for void, which has none); `None` for
    /// a blob `parse` refuses. For rewriting a record in place.
    pub fn record_offsets(data: &[u8]) -> Option<Vec<usize>> {
        parse::record_offsets(data)
    }

    /// True when the blob was big endian (its multi-byte data, e.g. in a
    /// `.rodata` section, will be too).
    pub fn is_big_endian(&self) -> bool {
        self.endian == Endian::Big
    }

    /// Number of type ids, including void: valid ids are `0..type_count()`.
    pub fn type_count(&self) -> u32 {
        // Fits: the parser produces at most u32::MAX / 12 types.
        self.types.len() as u32
    }

    /// The type with this id (0 is void).
    pub fn get(&self, id: TypeId) -> Result<&Type, BtfError> {
        self.types
            .get(id as usize)
            .ok_or(BtfError::TypeIdOutOfRange {
                id,
                count: self.type_count(),
            })
    }

    /// Shorthand for `&self.get(id)?.kind`.
    pub fn kind(&self, id: TypeId) -> Result<&Kind, BtfError> {
        Ok(&self.get(id)?.kind)
    }

    /// The text of a name. Names are validated at parse time, so this cannot
    /// fail; a [`Name`] from another `Btf` gives garbage or "", never a panic.
    pub fn str(&self, name: Name) -> &str {
        let start = name.off as usize;
        self.strings
            .get(start..start.saturating_add(name.len as usize))
            .unwrap_or("")
    }

    /// The string at byte offset `off` of the string section (as named by
    /// records this parser does not decode, e.g. `.BTF.ext`'s), up to its
    /// NUL; `None` past the end.
    pub fn string_at(&self, off: u32) -> Option<&str> {
        let tail = self.strings.get(off as usize..)?;
        Some(tail.split('\0').next().unwrap_or(""))
    }

    /// The name of the type with this id ("" when anonymous).
    pub fn name_of(&self, id: TypeId) -> Result<&str, BtfError> {
        Ok(self.str(self.get(id)?.name))
    }

    /// All types stored in the blob, in id order, starting at 1 (void, id 0,
    /// is not stored and not listed).
    pub fn types(&self) -> impl Iterator<Item = (TypeId, &Type)> + '_ {
        self.types
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, t)| (i as TypeId, t))
    }

    /// The first type named `name` whose kind satisfies `pred`, e.g.
    /// `btf.find("event", |k| matches!(k, Kind::Struct(_)))`. A linear scan
    /// (a couple of ms on vmlinux): build your own index for many lookups.
    pub fn find(&self, name: &str, pred: impl Fn(&Kind) -> bool) -> Option<TypeId> {
        self.types()
            .find(|(_, t)| self.str(t.name) == name && pred(&t.kind))
            .map(|(id, _)| id)
    }

    /// The struct named `name`.
    pub fn find_struct(&self, name: &str) -> Option<TypeId> {
        self.find(name, |k| matches!(k, Kind::Struct(_)))
    }

    /// The variable (VAR) named `name`.
    pub fn find_var(&self, name: &str) -> Option<TypeId> {
        self.find(name, |k| matches!(k, Kind::Var(_)))
    }

    /// The data section (DATASEC) named `name`, e.g. ".rodata".
    pub fn find_datasec(&self, name: &str) -> Option<TypeId> {
        self.find(name, |k| matches!(k, Kind::Datasec(_)))
    }

    /// Every variable whose name starts with `prefix` (e.g. "gadget_tracer_"),
    /// in id order, as (id, name, var).
    pub fn vars_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (TypeId, &'a str, &'a Var)> + 'a {
        self.types().filter_map(move |(id, t)| match &t.kind {
            Kind::Var(v) => {
                let name = self.str(t.name);
                name.starts_with(prefix).then_some((id, name, v))
            }
            _ => None,
        })
    }

    /// Follows typedef/const/volatile/restrict/type tag links from `id` to the
    /// first other type. Does not allocate; see [`Btf::resolve`] for the
    /// variant that records typedef names.
    pub fn skip_modifiers(&self, id: TypeId) -> Result<TypeId, BtfError> {
        let mut cur = id;
        for _ in 0..=MAX_CHAIN_DEPTH {
            match self.kind(cur)?.modifier_target() {
                Some(next) => cur = next,
                None => return Ok(cur),
            }
        }
        Err(BtfError::ChainTooDeep {
            id,
            max_depth: MAX_CHAIN_DEPTH,
        })
    }

    /// Skips typedef/const/volatile/restrict/type tag links from `id`;
    /// returns the underlying id and the typedef names met on the way,
    /// outermost first (`typedef u32 gadget_pid; const gadget_pid` gives
    /// `["gadget_pid", "u32"]` if `u32` is itself a typedef).
    pub fn resolve(&self, id: TypeId) -> Result<Resolved<'_>, BtfError> {
        let mut typedefs = Vec::new();
        let mut cur = id;
        for _ in 0..=MAX_CHAIN_DEPTH {
            let t = self.get(cur)?;
            match t.kind.modifier_target() {
                Some(next) => {
                    if let Kind::Typedef(_) = t.kind {
                        typedefs.push(self.str(t.name));
                    }
                    cur = next;
                }
                None => return Ok(Resolved { id: cur, typedefs }),
            }
        }
        Err(BtfError::ChainTooDeep {
            id,
            max_depth: MAX_CHAIN_DEPTH,
        })
    }

    /// Like [`Btf::resolve`], then on through arrays (and arrays of
    /// arrays) to the element type, keeping the array lengths and the
    /// element's typedef names apart from the outer ones. For a member
    /// `gadget_comm comm[16]` (ARRAY of TYPEDEF gadget_comm of INT char) this
    /// gives `typedefs: []`, `dims: [16]`, `elem_typedefs: ["gadget_comm"]`,
    /// `id`: the char.
    pub fn resolve_through_arrays(&self, id: TypeId) -> Result<ArrayResolved<'_>, BtfError> {
        let outer = self.resolve(id)?;
        let mut dims = Vec::new();
        let mut elem_typedefs = Vec::new();
        let mut cur = outer.id;
        for _ in 0..=MAX_CHAIN_DEPTH {
            match self.kind(cur)? {
                Kind::Array(a) => {
                    dims.push(a.len);
                    let inner = self.resolve(a.elem)?;
                    elem_typedefs.extend(inner.typedefs);
                    cur = inner.id;
                }
                _ => {
                    return Ok(ArrayResolved {
                        typedefs: outer.typedefs,
                        dims,
                        elem_typedefs,
                        id: cur,
                    });
                }
            }
        }
        Err(BtfError::ChainTooDeep {
            id,
            max_depth: MAX_CHAIN_DEPTH,
        })
    }

    /// Size in bytes of a value of type `id`, through modifiers and arrays
    /// (length × element size). A VAR has the size of its type; pointers are
    /// [`PTR_SIZE`]. Void, functions, prototypes, forward declarations and
    /// decl tags have no size.
    pub fn size_of(&self, id: TypeId) -> Result<u32, BtfError> {
        let mut cur = id;
        // Product of the lengths of the arrays crossed so far.
        let mut count: u32 = 1;
        let scaled =
            |count: u32, size: u32| count.checked_mul(size).ok_or(BtfError::SizeOverflow { id });
        for _ in 0..=MAX_CHAIN_DEPTH {
            let kind = self.kind(cur)?;
            match kind {
                Kind::Int(Int { size, .. })
                | Kind::Struct(Composite { size, .. })
                | Kind::Union(Composite { size, .. })
                | Kind::Enum(Enum { size, .. })
                | Kind::Enum64(Enum { size, .. })
                | Kind::Datasec(Datasec { size, .. })
                | Kind::Float { size } => return scaled(count, *size),
                Kind::Ptr(_) => return scaled(count, PTR_SIZE),
                Kind::Array(a) => {
                    count = count
                        .checked_mul(a.len)
                        .ok_or(BtfError::SizeOverflow { id })?;
                    cur = a.elem;
                }
                Kind::Var(v) => cur = v.ty,
                Kind::Typedef(t)
                | Kind::Volatile(t)
                | Kind::Const(t)
                | Kind::Restrict(t)
                | Kind::TypeTag(t) => cur = *t,
                Kind::Void
                | Kind::Fwd { .. }
                | Kind::Func { .. }
                | Kind::FuncProto(_)
                | Kind::DeclTag { .. } => {
                    return Err(BtfError::NoSize {
                        id: cur,
                        kind: kind.name(),
                    });
                }
            }
        }
        Err(BtfError::ChainTooDeep {
            id,
            max_depth: MAX_CHAIN_DEPTH,
        })
    }

    /// Whether `id` is a pointer to void, the type of gadget marker
    /// variables (`const void *gadget_tracer_...`): after skipping modifiers,
    /// a PTR whose target, after skipping modifiers, is void. So both
    /// PTR → CONST → VOID and PTR → VOID qualify; const is not required.
    pub fn is_const_void_ptr(&self, id: TypeId) -> Result<bool, BtfError> {
        match self.kind(self.skip_modifiers(id)?)? {
            Kind::Ptr(target) => Ok(self.skip_modifiers(*target)? == VOID),
            _ => Ok(false),
        }
    }

    /// The members of the struct or union `id` (through modifiers).
    pub fn members(&self, id: TypeId) -> Result<&[Member], BtfError> {
        let under = self.skip_modifiers(id)?;
        match self.kind(under)? {
            Kind::Struct(c) | Kind::Union(c) => Ok(&c.members),
            other => Err(BtfError::UnexpectedKind {
                id: under,
                expected: "struct or union",
                found: other.name(),
            }),
        }
    }

    /// The DATASEC listing variable `var` and the variable's entry in it
    /// (offset and size in the section), or `None` when no section lists it.
    pub fn datasec_of(&self, var: TypeId) -> Option<(TypeId, &VarSecinfo)> {
        self.datasecs
            .iter()
            .find_map(|&sec| match &self.types.get(sec as usize)?.kind {
                Kind::Datasec(d) => d.vars.iter().find(|v| v.ty == var).map(|v| (sec, v)),
                _ => None,
            })
    }
}
