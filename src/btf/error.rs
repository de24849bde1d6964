//! The one error type of the module.
//!
//! Every variant carries enough context (byte offset, type id, what was
//! expected) to point at the broken spot of a blob without a debugger: BTF
//! comes from gadget images we did not build, so "bad BTF" alone is useless.

use super::TypeId;

/// Why a BTF blob could not be parsed, or a query on it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    /// The blob ends before something that must be there.
    #[error("BTF truncated: {what} at byte {offset} needs {needed} bytes, only {available} left")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where, in bytes from the start of the blob.
        offset: usize,
        /// The bytes it needs.
        needed: usize,
        /// The bytes left.
        available: usize,
    },

    /// The first two bytes are not 0xeB9F in either byte order.
    #[error("not BTF: magic is {found:#06x}, expected 0xeb9f (in either byte order)")]
    BadMagic {
        /// The first two bytes.
        found: u16,
    },

    /// Only version 1 exists; a later one may change the layout.
    #[error("unsupported BTF version {version}, expected 1")]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },

    /// `hdr_len` is smaller than the fields we read, or past the end.
    #[error(
        "bad BTF header length {hdr_len}: must be at least {min} and at most the blob size {data_len}"
    )]
    BadHeaderLen {
        /// The header's `hdr_len`.
        hdr_len: u32,
        /// The smallest header we read.
        min: usize,
        /// The blob's size.
        data_len: usize,
    },

    /// The type or string section does not fit in the blob.
    #[error(
        "BTF {section} section (offset {offset}, length {len} after the header) ends past the blob size {data_len}"
    )]
    SectionOutOfBounds {
        /// `type` or `string`.
        section: &'static str,
        /// Its offset after the header.
        offset: u32,
        /// Its length.
        len: u32,
        /// The blob's size.
        data_len: usize,
    },

    /// The string section is not UTF-8; names are C identifiers, so this is
    /// corruption, not a dialect.
    #[error("BTF string section is not valid UTF-8 (first bad byte at string offset {offset})")]
    StringsNotUtf8 {
        /// The offset of the first bad byte in the string section.
        offset: usize,
    },

    /// A type record (or one of its members) names a string we cannot read.
    #[error("type {id}: bad string offset {offset} for {what}: {reason}")]
    BadString {
        /// The type.
        id: TypeId,
        /// Which name (the type's, a member's...).
        what: &'static str,
        /// The string offset.
        offset: u32,
        /// Why it cannot be read.
        reason: &'static str,
    },

    /// A kind number this reader does not know, so the record size is unknown
    /// and parsing cannot go on.
    #[error("type {id} at type-section byte {offset}: unknown BTF kind {kind}")]
    UnknownKind {
        /// The type.
        id: TypeId,
        /// Its record's offset in the type section.
        offset: usize,
        /// The kind number.
        kind: u32,
    },

    /// A type record refers to a type id that does not exist.
    #[error("type {id}: {what} refers to type {target}, but only ids 0..{count} exist")]
    BadTypeRef {
        /// The type.
        id: TypeId,
        /// Which reference (member, element...).
        what: &'static str,
        /// The id it refers to.
        target: TypeId,
        /// How many types there are.
        count: u32,
    },

    /// A caller asked for a type id that does not exist.
    #[error("type id {id} out of range: only ids 0..{count} exist")]
    TypeIdOutOfRange {
        /// The id asked for.
        id: TypeId,
        /// How many types there are.
        count: u32,
    },

    /// Following a type chain took more steps than any real program needs:
    /// a reference cycle or hostile input.
    #[error("type {id}: type chain longer than {max_depth} steps (reference cycle?)")]
    ChainTooDeep {
        /// Where the chain starts.
        id: TypeId,
        /// The most steps followed.
        max_depth: usize,
    },

    /// The type has no size (void, function, forward declaration, tag...).
    #[error("type {id} ({kind}) has no size")]
    NoSize {
        /// The type.
        id: TypeId,
        /// Its kind.
        kind: &'static str,
    },

    /// The size computation (array length × element size) overflows u32.
    #[error("type {id}: size overflows 32 bits")]
    SizeOverflow {
        /// The type.
        id: TypeId,
    },

    /// The type exists but is not of the kind the query needs.
    #[error("type {id}: expected {expected}, found {found}")]
    UnexpectedKind {
        /// The type.
        id: TypeId,
        /// The kind the query needs.
        expected: &'static str,
        /// The kind it has.
        found: &'static str,
    },
}
