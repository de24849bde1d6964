//! The `logs` operator (upstream's name, priority 9998: after the filters,
//! before the output): every event of every referenced data source as a
//! line of JSON or logfmt, written by a [`LogWriter`] thread to stdout,
//! stderr or a file rotated by size.
//!
//! Upstream's `operator.logs.*` settings ([`LogsConfig`]) and envelope:
//! `{"type":"gadget-data","seq":N,"gadget":…,"datasource":…,"timestamp":…,
//! "data":{…}}`, where `seq` counts the events (arrays) of one data source
//! from 0, `timestamp` is the time the line was made (RFC 3339 in UTC,
//! nanoseconds, trailing zeros trimmed as Go's `RFC3339Nano`) and `data` is
//! the object `-o json` prints (a daemon's headless instance adds
//! `"instanceID"` after `datasource`). An empty array is
//! `"type":"gadget-data-empty"` without `data`; an array is one line with
//! `"data":[…]`, or one line per element with the same `seq` when the data
//! source is annotated `logs.array-handling: elements`. logfmt writes
//! `type=… seq=… gadget=… datasource=… timestamp=…` and then the leaf
//! fields by full name (`proc.comm=cat`), arrays one line per element.
//!
//! Where we differ from upstream: the operator works in `ig run` (upstream
//! only in its daemon). SIGHUP reopens the file instead of rotating it
//! (see `writer`). Lines are written off the event thread through a
//! bounded queue: a writer that falls behind (a full disk, a slow
//! terminal) costs dropped lines, counted and reported, never a slower
//! event path.
//!
//! The event path: the handler formats into a batch buffer it owns (no
//! allocation once the buffers exist, no lock, no system call; the clock
//! is the vDSO's) and hands a full batch over with one `try_send`.

mod writer;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

pub use writer::{BATCH_BYTES, LogWriter, QUEUE_BATCHES};

use crate::datasource::{Event, FieldId, Schema, SourceKind, ValueRef};
use crate::output::json::{ObjectWriter, push_json_str};
use crate::pipeline::{
    Dispatch, Flow, Handler, HandlerError, Instance, Notice, Operator, OperatorError, Priority,
    Setup, Source,
};
use writer::Batch;

/// The operator's name.
pub const NAME: &str = "logs";
/// Its priority (upstream's).
pub const PRIORITY: Priority = 9998;
/// The data-source annotation choosing how arrays are written.
pub const ARRAY_HANDLING: &str = "logs.array-handling";

/// Where lines go (`operator.logs.channel`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Channel {
    /// Standard output.
    Stdout,
    /// Standard error (upstream's default).
    #[default]
    Stderr,
    /// `operator.logs.filename`, rotated by size.
    File,
}

/// How a line is written (`operator.logs.format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    #[default]
    Json,
    /// `key=value` pairs.
    Logfmt,
}

/// Which runs are logged (`operator.logs.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Every run.
    #[default]
    All,
    /// Only runs detached from a client (a daemon's); `ig run` has none.
    Detached,
}

/// Upstream's `operator.logs.*` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogsConfig {
    /// `enabled` (false).
    pub enabled: bool,
    /// `channel` (stderr).
    pub channel: Channel,
    /// `filename`, for the file channel.
    pub filename: PathBuf,
    /// `format` (json).
    pub format: Format,
    /// `mode` (all).
    pub mode: Mode,
    /// `max-size-mb` (100): a file is rotated before it passes this size.
    pub max_size_mb: u64,
    /// `max-backups` (3; 0 keeps every backup).
    pub max_backups: usize,
    /// `max-age-days` (0: no age limit).
    pub max_age_days: u64,
    /// `compress` (false): gzip backups.
    pub compress: bool,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            channel: Channel::Stderr,
            filename: PathBuf::new(),
            format: Format::Json,
            mode: Mode::All,
            max_size_mb: 100,
            max_backups: 3,
            max_age_days: 0,
            compress: false,
        }
    }
}

/// Why logs cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    /// A setting has a value it cannot take.
    #[error("operator.logs.{key}: {value:?}: {expected}")]
    Setting {
        /// The key under `operator.logs`.
        key: &'static str,
        /// The value given.
        value: String,
        /// What it may be.
        expected: &'static str,
    },
    /// The file channel without a file name.
    #[error("operator.logs.channel file needs operator.logs.filename")]
    NoFilename,
    /// The file cannot be opened.
    #[error("opening log file {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The writer's thread cannot start.
    #[error("starting the log writer")]
    Thread(#[source] std::io::Error),
}

impl LogsConfig {
    /// Set `key` (under `operator.logs.`) from its text, as upstream reads
    /// it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), LogsError> {
        let v = value.trim();
        let bad = |key, expected| LogsError::Setting {
            key,
            value: value.to_owned(),
            expected,
        };
        let boolean = |key| match v {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(bad(key, "true or false")),
        };
        match key {
            "enabled" => self.enabled = boolean("enabled")?,
            "compress" => self.compress = boolean("compress")?,
            "channel" => {
                self.channel = match v {
                    "stdout" => Channel::Stdout,
                    "stderr" => Channel::Stderr,
                    "file" => Channel::File,
                    _ => return Err(bad("channel", "stdout, stderr or file")),
                }
            }
            "format" => {
                self.format = match v {
                    "json" => Format::Json,
                    "logfmt" => Format::Logfmt,
                    _ => return Err(bad("format", "json or logfmt")),
                }
            }
            "mode" => {
                self.mode = match v {
                    "all" => Mode::All,
                    "detached" => Mode::Detached,
                    _ => return Err(bad("mode", "all or detached")),
                }
            }
            "filename" => self.filename = PathBuf::from(v),
            "max-size-mb" => {
                self.max_size_mb = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad("max-size-mb", "a whole number of MiB, at least 1"))?;
            }
            "max-backups" => {
                self.max_backups = v
                    .parse()
                    .map_err(|_| bad("max-backups", "a whole number (0 keeps every backup)"))?;
            }
            "max-age-days" => {
                self.max_age_days = v
                    .parse()
                    .map_err(|_| bad("max-age-days", "a whole number of days (0: no limit)"))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The settings' keys under `operator.logs.`.
    pub const KEYS: &[&str] = &[
        "enabled",
        "channel",
        "filename",
        "format",
        "mode",
        "max-size-mb",
        "max-backups",
        "max-age-days",
        "compress",
    ];

    /// The whole configuration checked: a file channel has a name.
    pub fn check(&self) -> Result<(), LogsError> {
        if self.enabled && self.channel == Channel::File && self.filename.as_os_str().is_empty() {
            return Err(LogsError::NoFilename);
        }
        Ok(())
    }
}

/// The operator of one run: writes to the process's [`LogWriter`].
pub struct Logs {
    writer: LogWriter,
    format: Format,
    gadget: String,
    instance_id: Option<String>,
}

impl Logs {
    /// Log the run of `gadget` (its name in the lines) to `writer`.
    pub fn new(writer: LogWriter, format: Format, gadget: impl Into<String>) -> Self {
        Self {
            writer,
            format,
            gadget: gadget.into(),
            instance_id: None,
        }
    }

    /// The run is a daemon's headless instance `id`: its lines carry
    /// upstream's `instanceID` after `datasource`.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }
}

impl Operator for Logs {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> Priority {
        PRIORITY
    }
    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let ids: Vec<_> = setup.source_ids().collect();
        for id in ids {
            let b = setup.schema(id);
            let ds = b.schema().name.clone();
            let elements = b
                .schema()
                .annotations
                .get(ARRAY_HANDLING)
                .is_some_and(|v| v == "elements");
            let mut head = Vec::new();
            match self.format {
                Format::Json => {
                    head.extend_from_slice(b",\"gadget\":");
                    push_json_str(&mut head, self.gadget.as_bytes());
                    head.extend_from_slice(b",\"datasource\":");
                    push_json_str(&mut head, ds.as_bytes());
                    if let Some(id) = &self.instance_id {
                        head.extend_from_slice(b",\"instanceID\":");
                        push_json_str(&mut head, id.as_bytes());
                    }
                }
                Format::Logfmt => {
                    head.extend_from_slice(b" gadget=");
                    logfmt_value(&mut head, ValueRef::Str(self.gadget.as_bytes()));
                    head.extend_from_slice(b" datasource=");
                    logfmt_value(&mut head, ValueRef::Str(ds.as_bytes()));
                    if let Some(id) = &self.instance_id {
                        head.extend_from_slice(b" instanceID=");
                        logfmt_value(&mut head, ValueRef::Str(id.as_bytes()));
                    }
                }
            }
            let handler = Logging {
                buf: self.writer.buffer(),
                writer: self.writer.clone(),
                format: self.format,
                head,
                object: None,
                leaves: None,
                seq: 0,
                lines: 0,
                elements,
                clock: Clock::default(),
            };
            setup.subscribe(id, PRIORITY, NAME, Box::new(handler));
        }
        Ok(Some(Box::new(Reporter {
            writer: self.writer,
            reported: 0,
            last: None,
        })))
    }
}

/// Says what the writer dropped, at most once a second.
struct Reporter {
    writer: LogWriter,
    reported: u64,
    last: Option<std::time::Instant>,
}

impl Instance for Reporter {
    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }
}

impl Source for Reporter {
    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        Vec::new()
    }
    fn drain(&mut self, _: &mut Dispatch) -> Result<(), OperatorError> {
        Ok(())
    }
    fn tick(&mut self, _: &mut Dispatch) -> Result<Vec<Notice>, OperatorError> {
        let mut out = Vec::new();
        if let Some(e) = self.writer.take_error() {
            out.push(Notice::Warning(format!("logs: writing failed: {e}")));
        }
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(1))
        {
            return Ok(out);
        }
        let dropped = self.writer.dropped();
        if dropped > self.reported {
            out.push(Notice::Warning(format!(
                "logs: {} lines dropped: the log writer did not keep up",
                dropped - self.reported
            )));
            self.reported = dropped;
            self.last = Some(now);
        }
        Ok(out)
    }
    fn finished(&self) -> bool {
        true
    }
}

/// The wall clock as RFC 3339 with nanoseconds, the date part made once
/// a second.
#[derive(Default)]
struct Clock {
    second: i64,
    prefix: Vec<u8>,
}

impl Clock {
    fn write(&mut self, buf: &mut Vec<u8>) {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = d.as_secs() as i64;
        if secs != self.second || self.prefix.is_empty() {
            self.second = secs;
            let s = crate::operators::calendar::rfc3339_seconds(secs);
            self.prefix.clear();
            self.prefix
                .extend_from_slice(s.trim_end_matches('Z').as_bytes());
        }
        buf.extend_from_slice(&self.prefix);
        let mut nanos = d.subsec_nanos();
        if nanos > 0 {
            let mut digits = [b'0'; 9];
            for i in (0..9).rev() {
                digits[i] = b'0' + (nanos % 10) as u8;
                nanos /= 10;
            }
            let end = digits.iter().rposition(|&c| c != b'0').map_or(0, |p| p + 1);
            buf.push(b'.');
            buf.extend_from_slice(&digits[..end]);
        }
        buf.push(b'Z');
    }
}

/// The handler of one data source.
struct Logging {
    writer: LogWriter,
    format: Format,
    /// The envelope's fixed members (gadget, data source), encoded.
    head: Vec<u8>,
    /// Made at the first event, from the final schema.
    object: Option<ObjectWriter>,
    leaves: Option<Vec<FieldId>>,
    seq: u64,
    buf: Vec<u8>,
    lines: u64,
    elements: bool,
    clock: Clock,
}

impl Logging {
    fn envelope(&mut self, kind: &str, seq: u64) {
        let b = &mut self.buf;
        match self.format {
            Format::Json => {
                b.extend_from_slice(b"{\"type\":\"");
                b.extend_from_slice(kind.as_bytes());
                b.extend_from_slice(b"\",\"seq\":");
                push_u64(b, seq);
                b.extend_from_slice(&self.head);
                b.extend_from_slice(b",\"timestamp\":\"");
                self.clock.write(b);
                b.push(b'"');
            }
            Format::Logfmt => {
                b.extend_from_slice(b"type=");
                b.extend_from_slice(kind.as_bytes());
                b.extend_from_slice(b" seq=");
                push_u64(b, seq);
                b.extend_from_slice(&self.head);
                b.extend_from_slice(b" timestamp=");
                self.clock.write(b);
            }
        }
    }

    fn data(&mut self, schema: &Schema, ev: &Event) {
        match self.format {
            Format::Json => self
                .object
                .get_or_insert_with(|| ObjectWriter::new(schema))
                .write(&mut self.buf, schema, ev),
            Format::Logfmt => {
                let leaves = self.leaves.get_or_insert_with(|| {
                    crate::output::fields::defaults(schema, crate::output::fields::Flavor::Json)
                });
                for &id in leaves.iter() {
                    let f = schema.field(id);
                    self.buf.push(b' ');
                    self.buf.extend_from_slice(f.name.as_bytes());
                    self.buf.push(b'=');
                    logfmt_value(&mut self.buf, ev.get(f));
                }
            }
        }
    }

    fn end_line(&mut self) {
        if self.format == Format::Json {
            self.buf.push(b'}');
        }
        self.buf.push(b'\n');
        self.lines += 1;
        if self.buf.len() >= BATCH_BYTES {
            self.hand_over();
        }
    }

    fn hand_over(&mut self) {
        if self.lines == 0 {
            return;
        }
        let bytes = std::mem::take(&mut self.buf);
        self.buf = self.writer.send(Batch {
            bytes,
            lines: self.lines,
        });
        self.lines = 0;
    }

    fn one(&mut self, schema: &Schema, ev: &Event, seq: u64) {
        self.envelope("gadget-data", seq);
        if self.format == Format::Json {
            self.buf.extend_from_slice(b",\"data\":");
        }
        self.data(schema, ev);
        self.end_line();
    }
}

impl Handler for Logging {
    fn on_event(&mut self, schema: &Schema, event: &mut Event) -> Flow {
        let seq = self.seq;
        self.seq += 1;
        self.one(schema, event, seq);
        Flow::Continue
    }

    fn on_array(&mut self, schema: &Schema, events: &mut Vec<Event>) -> Flow {
        let seq = self.seq;
        self.seq += 1;
        if events.is_empty() {
            self.envelope("gadget-data-empty", seq);
            self.end_line();
            return Flow::Continue;
        }
        if self.elements || self.format == Format::Logfmt || schema.kind != SourceKind::Array {
            for e in events.iter() {
                self.one(schema, e, seq);
            }
            return Flow::Continue;
        }
        self.envelope("gadget-data", seq);
        self.buf.extend_from_slice(b",\"data\":[");
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.data(schema, e);
        }
        self.buf.push(b']');
        self.end_line();
        Flow::Continue
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        self.hand_over();
        Ok(())
    }
}

fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// A logfmt value: bare, or quoted (JSON escapes) when it holds a space,
/// `=`, `"`, a control character or nothing.
fn logfmt_value(buf: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::None => {}
        ValueRef::Str(s) => {
            let s = &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())];
            let plain = !s.is_empty()
                && s.iter()
                    .all(|&c| c > b' ' && c != b'=' && c != b'"' && c != 0x7f);
            if plain {
                buf.extend_from_slice(s);
            } else {
                push_json_str(buf, s);
            }
        }
        ValueRef::Bytes(b) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for x in b {
                buf.push(HEX[usize::from(x >> 4)]);
                buf.push(HEX[usize::from(x & 15)]);
            }
        }
        other => crate::output::json::write_value(buf, other),
    }
}

#[cfg(test)]
mod tests;
