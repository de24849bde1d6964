//! The data model every event travels in: [`Schema`] (the fields of one data
//! source), [`FieldDef`] and [`Event`] (one record), plus zero-copy reads of
//! field values as [`ValueRef`].
//!
//! This module owns the *shape* of data, not where it comes from: the eBPF
//! loader fills schemas from BTF (`bpf::schema`), operators add fields, the
//! printers read them. It is pure: no I/O, no aya, and no panics on payloads
//! of the wrong size (a short sample reads as zero-padded, see
//! [`Event::set_raw`]).
//!
//! Hot path rule: reading a field never allocates. Fields are resolved to a
//! [`FieldId`] (an index) once, during set-up, and events are reused.

pub mod copy;
mod schema;
pub mod templates;
mod value;

pub use schema::{
    ColumnMatch, FieldDef, FieldId, FieldKind, Location, Schema, SchemaBuilder, SchemaError,
    SourceKind,
};
pub use value::{Event, Value, ValueRef, c_str_len, decode};
