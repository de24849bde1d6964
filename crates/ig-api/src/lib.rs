//! The gadget service's wire interface: the messages of upstream
//! Inspektor Gadget's `api` gRPC package (written anew in
//! `proto/api.proto`, wire-compatible), and our data model mapped onto
//! them.
//!
//! Owns: the generated messages ([`proto`]), the gRPC stubs behind the
//! `grpc` feature ([`grpc`]), the protocol's constants ([`event_type`],
//! [`log_level`], [`field_flags`]) and [`wire`], the pure translation
//! between `ig`'s [`Schema`](ig::datasource::Schema) /
//! [`Event`](ig::datasource::Event) / [`ParamSpec`](ig::params::ParamSpec)
//! and upstream's `DataSource` / `DataElement` / `Param`.
//!
//! Does not own: sockets, TLS, runs (the daemon and `gadgetctl` in the
//! `ig-cli` package). No I/O here: the decoders take bytes a client got
//! from the network and never panic on them (`fuzz/` target `wire`).

pub mod wire;

/// The messages, generated from `proto/api.proto` by `cargo xtask proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs, reason = "generated code")]
pub mod proto {
    include!("generated/api.rs");
}

/// The gRPC client and server stubs, generated from `proto/api.proto` by
/// `cargo xtask proto`.
#[cfg(feature = "grpc")]
#[allow(clippy::all, clippy::pedantic, missing_docs, reason = "generated code")]
pub mod grpc {
    include!("generated/api.grpc.rs");
}

/// The `version` a run, attach or describe request carries; the server
/// refuses any other.
pub const API_VERSION: u32 = 1;

/// The API version `GetInfo` exchanges.
pub const INFO_VERSION: &str = "1.0";

/// `GadgetEvent.type` values.
pub mod event_type {
    /// A data event: `GadgetData` (or `GadgetDataArray` for an array
    /// source) of `dataSourceID`.
    pub const DATA: u32 = 0;
    /// A result (defined, not sent for image-based runs).
    pub const RESULT: u32 = 1;
    /// Done (defined, not sent for image-based runs).
    pub const DONE: u32 = 2;
    /// A job ID (defined, not sent for image-based runs).
    pub const JOB_ID: u32 = 3;
    /// The `GadgetInfo` of the run, sent once before any data.
    pub const GADGET_INFO: u32 = 4;
    /// Not upstream's: a batch of consecutive events of one single-event
    /// data source, as a `GadgetDataArray` (one `DataElement` each) whose
    /// first event has the message's `seq`. Sent only to a client whose
    /// run request has `batch_events` (upstream's clients would take it
    /// for an unknown type); read with [`crate::wire::elements`].
    pub const DATA_BATCH: u32 = 256;
    /// A log line's type is its level shifted by this.
    pub const LOG_SHIFT: u32 = 16;

    /// The type of a log event of `level` ([`super::log_level`]).
    pub fn log(level: u32) -> u32 {
        level << LOG_SHIFT
    }

    /// The level of a log event, if `ty` is one.
    pub fn log_level_of(ty: u32) -> Option<u32> {
        let level = ty >> LOG_SHIFT;
        (level != 0 && ty & ((1 << LOG_SHIFT) - 1) == 0).then_some(level)
    }
}

/// Log levels on the wire (logrus' numbering).
pub mod log_level {
    /// Errors.
    pub const ERROR: u32 = 2;
    /// Warnings.
    pub const WARN: u32 = 3;
    /// Information.
    pub const INFO: u32 = 4;
    /// Debug.
    pub const DEBUG: u32 = 5;
    /// Trace.
    pub const TRACE: u32 = 6;

    /// The lower-case name (`warn`).
    pub fn name(level: u32) -> &'static str {
        match level {
            0..=ERROR => "error",
            WARN => "warn",
            INFO => "info",
            DEBUG => "debug",
            _ => "trace",
        }
    }
}

/// `Field.flags` bits.
pub mod field_flags {
    /// The field has no value (a struct parent).
    pub const EMPTY: u32 = 1;
    /// The field holds statically sized members.
    pub const CONTAINER: u32 = 2;
    /// Hidden from output.
    pub const HIDDEN: u32 = 4;
    /// `Field.parent` is set.
    pub const HAS_PARENT: u32 = 8;
    /// A member of a payload shared with other fields, at `offs`/`size`.
    pub const STATIC_MEMBER: u32 = 16;
    /// No longer referenced by name.
    pub const UNREFERENCED: u32 = 32;
}

/// `DataSource.type` values.
pub mod source_type {
    /// One event at a time.
    pub const SINGLE: u32 = 1;
    /// Arrays of events.
    pub const ARRAY: u32 = 2;
}

/// `DataSource.flags` bit 0: the source's scalars are big-endian.
pub const SOURCE_FLAG_BIG_ENDIAN: u32 = 1;
