//! The decoded form of BTF type records.
//!
//! Names are [`Name`] handles into the string table owned by the
//! [`Btf`](super::Btf) (read them with [`Btf::str`](super::Btf::str)) rather
//! than `String`s: vmlinux has ~150k types and ~500k member/enum/param names,
//! and one allocation per name would dominate the parse time.

/// Index of a type in a [`Btf`](super::Btf). Id 0 is `void`; real records
/// are numbered from 1 in the order they appear in the type section.
pub type TypeId = u32;

/// The `void` type id.
pub const VOID: TypeId = 0;

/// A string from the BTF string table, validated at parse time (in range,
/// NUL-terminated, UTF-8). Resolve it with [`Btf::str`](super::Btf::str).
/// The default is the empty (anonymous) name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Name {
    pub(super) off: u32,
    pub(super) len: u32,
}

impl Name {
    /// True for the empty name (anonymous struct, member, parameter...).
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// Offset of the string in the BTF string section (0 for the empty name).
    pub fn offset(self) -> u32 {
        self.off
    }
}

/// One type: its name (empty when anonymous or nameless by kind) and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    /// Its name (empty: anonymous).
    pub name: Name,
    /// What it is.
    pub kind: Kind,
}

/// What a type is. Variants mirror the BTF kinds one to one; the comment on
/// each says what the record's `name` means when it is not the type's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Type id 0; never stored in the blob.
    Void,
    /// An integer, `char` or `_Bool`.
    Int(Int),
    /// Pointer to the given type.
    Ptr(TypeId),
    /// An array.
    Array(Array),
    /// A struct.
    Struct(Composite),
    /// A union.
    Union(Composite),
    /// 32-bit-valued enum (BTF_KIND_ENUM).
    Enum(Enum),
    /// Forward declaration of a struct (or union, if `is_union`).
    Fwd {
        /// A union rather than a struct.
        is_union: bool,
    },
    /// A typedef of the given type; `name` is the new name.
    Typedef(TypeId),
    /// `volatile` the given type.
    Volatile(TypeId),
    /// `const` the given type.
    Const(TypeId),
    /// `restrict` the given type.
    Restrict(TypeId),
    /// A function; `name` is the function's name.
    Func {
        /// Its prototype (a `FuncProto`).
        proto: TypeId,
        /// Static, global or extern.
        linkage: Linkage,
    },
    /// A function's signature.
    FuncProto(FuncProto),
    /// A global variable; `name` is the variable's name.
    Var(Var),
    /// A data section (`.rodata`, `.bss`...); `name` is the section name.
    Datasec(Datasec),
    /// A floating-point type.
    Float {
        /// Its size in bytes.
        size: u32,
    },
    /// `__attribute__((btf_decl_tag(...)))`; `name` is the tag value.
    /// `component_idx` is -1 for the target itself, else the member or
    /// parameter index it is attached to.
    DeclTag {
        /// The tagged type.
        target: TypeId,
        /// -1, or the member or parameter tagged.
        component_idx: i32,
    },
    /// `__attribute__((btf_type_tag(...)))`; `name` is the tag value.
    TypeTag(TypeId),
    /// 64-bit-valued enum (BTF_KIND_ENUM64).
    Enum64(Enum),
}

impl Kind {
    /// Short lower-case kind name, for messages ("struct", "typedef"...).
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Void => "void",
            Kind::Int(_) => "int",
            Kind::Ptr(_) => "ptr",
            Kind::Array(_) => "array",
            Kind::Struct(_) => "struct",
            Kind::Union(_) => "union",
            Kind::Enum(_) => "enum",
            Kind::Fwd { .. } => "fwd",
            Kind::Typedef(_) => "typedef",
            Kind::Volatile(_) => "volatile",
            Kind::Const(_) => "const",
            Kind::Restrict(_) => "restrict",
            Kind::Func { .. } => "func",
            Kind::FuncProto(_) => "func_proto",
            Kind::Var(_) => "var",
            Kind::Datasec(_) => "datasec",
            Kind::Float { .. } => "float",
            Kind::DeclTag { .. } => "decl_tag",
            Kind::TypeTag(_) => "type_tag",
            Kind::Enum64(_) => "enum64",
        }
    }

    /// The type this one is a plain alias or qualifier of (typedef, const,
    /// volatile, restrict, type tag), i.e. what [`Btf::resolve`](super::Btf::resolve) skips.
    pub fn modifier_target(&self) -> Option<TypeId> {
        match *self {
            Kind::Typedef(t)
            | Kind::Volatile(t)
            | Kind::Const(t)
            | Kind::Restrict(t)
            | Kind::TypeTag(t) => Some(t),
            _ => None,
        }
    }
}

/// BTF_KIND_INT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int {
    /// Storage size in bytes.
    pub size: u32,
    /// A signed integer.
    pub signed: bool,
    /// Encoded as a character (`char`); only a printing hint.
    pub is_char: bool,
    /// Encoded as a boolean (`_Bool`).
    pub is_bool: bool,
    /// Bit offset of the value inside the storage (legacy bitfield encoding;
    /// 0 in everything modern compilers emit).
    pub offset: u8,
    /// Number of value bits (≤ size × 8).
    pub bits: u8,
}

/// BTF_KIND_ARRAY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Array {
    /// Element type.
    pub elem: TypeId,
    /// Index type (an int; unused by us but kept for round trips).
    pub index: TypeId,
    /// Number of elements.
    pub len: u32,
}

/// BTF_KIND_STRUCT / BTF_KIND_UNION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composite {
    /// Size in bytes.
    pub size: u32,
    /// The members, in declaration order.
    pub members: Vec<Member>,
}

/// One struct or union member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Empty for anonymous struct/union members.
    pub name: Name,
    /// Its type.
    pub ty: TypeId,
    /// Offset of the member from the start of the struct, in bits.
    pub bit_offset: u32,
    /// Bitfield width in bits, 0 when not a bitfield. Only the modern
    /// encoding (struct `kind_flag` set) puts it here; in the legacy one a
    /// bitfield is a member whose INT type has `bits < size * 8`.
    pub bitfield_size: u8,
}

/// BTF_KIND_ENUM / BTF_KIND_ENUM64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enum {
    /// Size in bytes.
    pub size: u32,
    /// From the record's `kind_flag`. Compilers older than the flag (clang
    /// < 15) always leave it unset, even for negative values.
    pub signed: bool,
    /// The enumerators, in declaration order.
    pub values: Vec<EnumValue>,
}

/// One enumerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnumValue {
    /// The enumerator's name.
    pub name: Name,
    /// The value with the enum's signedness applied; i128 holds every u64
    /// and i64 exactly, so callers need not care which kind it came from.
    pub value: i128,
}

/// Linkage of a FUNC or VAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    /// 0: file-local.
    Static,
    /// 1: global (for VAR: allocated in this object).
    Global,
    /// 2: extern, defined elsewhere.
    Extern,
    /// A value the spec does not define; kept rather than rejected.
    Unknown(u32),
}

impl Linkage {
    pub(super) fn from_raw(v: u32) -> Linkage {
        match v {
            0 => Linkage::Static,
            1 => Linkage::Global,
            2 => Linkage::Extern,
            v => Linkage::Unknown(v),
        }
    }

    /// The numeric value stored in BTF.
    pub fn raw(self) -> u32 {
        match self {
            Linkage::Static => 0,
            Linkage::Global => 1,
            Linkage::Extern => 2,
            Linkage::Unknown(v) => v,
        }
    }
}

/// BTF_KIND_FUNC_PROTO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncProto {
    /// Return type (0 for void).
    pub ret: TypeId,
    /// The parameters, in order.
    pub params: Vec<Param>,
}

impl FuncProto {
    /// A C `...`: BTF encodes it as a last parameter with no name and type 0.
    pub fn is_variadic(&self) -> bool {
        self.params
            .last()
            .is_some_and(|p| p.ty == super::VOID && p.name.is_empty())
    }
}

/// One function parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// The parameter's name (may be empty).
    pub name: Name,
    /// Its type.
    pub ty: TypeId,
}

/// BTF_KIND_VAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    /// Its type.
    pub ty: TypeId,
    /// Static, global or extern.
    pub linkage: Linkage,
}

/// BTF_KIND_DATASEC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datasec {
    /// Section size in bytes. In a relocatable `.o` straight from clang this
    /// (and the variables' offsets) may still be 0: the loader fills them in
    /// from the ELF symbol table.
    pub size: u32,
    /// The variables it holds.
    pub vars: Vec<VarSecinfo>,
}

/// Where one variable lives in a DATASEC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VarSecinfo {
    /// The VAR (or FUNC, for `.ksyms`) type id.
    pub ty: TypeId,
    /// Its offset in the section.
    pub offset: u32,
    /// Its size in bytes.
    pub size: u32,
}
