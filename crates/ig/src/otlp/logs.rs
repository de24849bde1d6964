//! Log records encoded as OTLP's `LogRecord` straight from an event into
//! a batch buffer ([`LogBatcher`]): no message structs per event, no
//! allocation once the buffers are warm (a kernel string that is not
//! UTF-8 is the exception: it is made valid first). A batch is wrapped
//! into an `ExportLogsServiceRequest` and handed to the exporter when it
//! is large or old enough, or at the stop.
//!
//! What a record holds, as upstream's otel-logs operator: the fields as
//! attributes (by full name, the fields `-o json` prints, typed as
//! upstream types them: integers as `int_value` (an unsigned 64-bit value
//! wraps), floats as `double_value`, booleans as `bool_value`, strings as
//! `string_value`, bytes as `bytes_value`), or, when fields are annotated
//! `logs.name`, only those: `body` (the record's body), `severity` (its
//! severity number), `timestamp` (its observed time, the value taken as
//! microseconds as upstream does) or another name (an attribute of that
//! name). The data source's `logs.severity` gives a fixed severity. The
//! record's time is when it was made, in nanoseconds since the epoch.

use std::time::{Duration, Instant};

use super::ExportSender;
use super::proto::{self, InstrumentationScope};
use crate::datasource::{Event, FieldId, Schema, ValueRef};

/// A batch is handed over at this size.
pub const BATCH_BYTES: usize = 256 * 1024;

const LEN: u64 = 2;
const FIXED64: u64 = 1;
const VARINT: u64 = 0;

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    prost::encoding::encoded_len_varint(v)
}

fn key(buf: &mut Vec<u8>, tag: u64, wire: u64) {
    varint(buf, (tag << 3) | wire);
}

/// An `AnyValue` of a field's value: its encoded bytes into `out`.
fn any_value(out: &mut Vec<u8>, v: ValueRef<'_>) -> bool {
    match v {
        ValueRef::None => return false,
        ValueRef::Str(s) => {
            let s = &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())];
            let s = String::from_utf8_lossy(s);
            key(out, 1, LEN);
            varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        ValueRef::Bool(b) => {
            key(out, 2, VARINT);
            out.push(u8::from(b));
        }
        ValueRef::U64(n) => {
            key(out, 3, VARINT);
            varint(out, n);
        }
        ValueRef::I64(n) => {
            key(out, 3, VARINT);
            varint(out, n as u64);
        }
        ValueRef::F64(f) => {
            key(out, 4, FIXED64);
            out.extend_from_slice(&f.to_le_bytes());
        }
        ValueRef::Bytes(b) => {
            // bytes_value, as upstream's otel-logs operator.
            key(out, 7, LEN);
            varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
    }
    true
}

/// What a field is to a record.
enum Role {
    Attribute(FieldId, String),
    Body(FieldId),
    Severity(FieldId),
    Timestamp(FieldId),
}

/// Encodes the records of one data source and hands batches over.
pub struct LogBatcher {
    sender: ExportSender,
    /// `ScopeLogs.scope` and `ResourceLogs.resource`, encoded.
    scope_field: Vec<u8>,
    resource_field: Vec<u8>,
    severity: Option<i32>,
    roles: Option<Vec<Role>>,
    has_body: bool,
    records: Vec<u8>,
    count: u64,
    record: Vec<u8>,
    value: Vec<u8>,
    max_wait: Duration,
    oldest: Option<Instant>,
}

impl LogBatcher {
    /// Records of the data source whose scope is `scope` (its `logs.name`
    /// or the gadget's image), severity `severity` (`logs.severity`),
    /// handed over at least every `max_wait`.
    pub fn new(
        sender: ExportSender,
        scope: String,
        severity: Option<i32>,
        max_wait: Duration,
    ) -> Self {
        let (scope_field, resource_field) = envelope(&scope);
        Self {
            sender,
            scope_field,
            resource_field,
            severity,
            roles: None,
            has_body: false,
            records: Vec::with_capacity(BATCH_BYTES + 4096),
            count: 0,
            record: Vec::new(),
            value: Vec::new(),
            max_wait,
            oldest: None,
        }
    }

    fn roles(schema: &Schema) -> (Vec<Role>, bool) {
        let fields = crate::output::fields::defaults(schema, crate::output::fields::Flavor::Json);
        let mut roles = Vec::new();
        let mut annotated_attrs = 0;
        let mut body = false;
        for id in schema.display_order() {
            let def = schema.field(id);
            if def.kind == crate::datasource::FieldKind::Struct || def.hidden {
                continue;
            }
            let Some(name) = def.annotation("logs.name") else {
                continue;
            };
            match name {
                "body" => {
                    body = true;
                    roles.push(Role::Body(id));
                }
                "severity" => roles.push(Role::Severity(id)),
                "timestamp" => roles.push(Role::Timestamp(id)),
                other => {
                    annotated_attrs += 1;
                    roles.push(Role::Attribute(id, other.to_owned()));
                }
            }
        }
        if annotated_attrs == 0 && !body {
            for id in fields {
                roles.push(Role::Attribute(id, schema.field(id).name.clone()));
            }
        }
        (roles, body)
    }

    /// Encode `ev` as one record.
    pub fn record(&mut self, schema: &Schema, ev: &Event, now_ns: u64) {
        if self.roles.is_none() {
            let (r, body) = Self::roles(schema);
            self.roles = Some(r);
            self.has_body = body;
        }
        let roles = self.roles.as_ref().expect("set above");
        let r = &mut self.record;
        r.clear();
        // time_unix_nano
        key(r, 1, FIXED64);
        r.extend_from_slice(&now_ns.to_le_bytes());
        let mut observed = now_ns;
        let mut severity = self.severity;
        let mut body_done = false;
        for role in roles {
            match role {
                Role::Attribute(id, name) => {
                    self.value.clear();
                    if !any_value(&mut self.value, ev.get(schema.field(*id))) {
                        continue;
                    }
                    let kv_len = 1
                        + varint_len(name.len() as u64)
                        + name.len()
                        + 1
                        + varint_len(self.value.len() as u64)
                        + self.value.len();
                    key(r, 6, LEN);
                    varint(r, kv_len as u64);
                    key(r, 1, LEN);
                    varint(r, name.len() as u64);
                    r.extend_from_slice(name.as_bytes());
                    key(r, 2, LEN);
                    varint(r, self.value.len() as u64);
                    r.extend_from_slice(&self.value);
                }
                Role::Body(id) => {
                    self.value.clear();
                    let v = ev.get(schema.field(*id));
                    if !any_value(&mut self.value, v) {
                        any_value(&mut self.value, ValueRef::Str(b""));
                    }
                    key(r, 5, LEN);
                    varint(r, self.value.len() as u64);
                    r.extend_from_slice(&self.value);
                    body_done = true;
                }
                Role::Severity(id) => {
                    severity = match ev.get(schema.field(*id)) {
                        ValueRef::U64(n) => i32::try_from(n).ok(),
                        ValueRef::I64(n) => i32::try_from(n).ok(),
                        _ => severity,
                    };
                }
                Role::Timestamp(id) => {
                    if let ValueRef::U64(n) = ev.get(schema.field(*id)) {
                        observed = n.saturating_mul(1000);
                    } else if let ValueRef::I64(n) = ev.get(schema.field(*id)) {
                        observed = u64::try_from(n).unwrap_or(0).saturating_mul(1000);
                    }
                }
            }
        }
        if !body_done {
            // An empty string body, as upstream's.
            key(r, 5, LEN);
            varint(r, 2);
            key(r, 1, LEN);
            varint(r, 0);
        }
        if let Some(s) = severity {
            key(r, 2, VARINT);
            varint(r, s as u64);
        }
        key(r, 11, FIXED64);
        r.extend_from_slice(&observed.to_le_bytes());
        // ScopeLogs.log_records
        key(&mut self.records, 2, LEN);
        varint(&mut self.records, self.record.len() as u64);
        self.records.extend_from_slice(&self.record);
        self.count += 1;
        self.oldest.get_or_insert_with(Instant::now);
        if self.records.len() >= BATCH_BYTES {
            self.hand_over();
        }
    }

    /// Hand the batch over if it waited long enough.
    pub fn tick(&mut self) {
        if self.oldest.is_some_and(|t| t.elapsed() >= self.max_wait) {
            self.hand_over();
        }
    }

    /// Hand the batch over now (a request per batch).
    pub fn hand_over(&mut self) {
        self.oldest = None;
        if self.count == 0 {
            return;
        }
        let body = wrap(&self.scope_field, &self.resource_field, &self.records);
        self.sender.send(body, self.count);
        self.records.clear();
        self.count = 0;
    }
}

/// The fixed parts of a request, encoded once: `ScopeLogs.scope` and
/// `ResourceLogs.resource` as fields (key, length, message).
fn envelope(scope: &str) -> (Vec<u8>, Vec<u8>) {
    use prost::Message as _;
    let field = |tag: u64, m: Vec<u8>| {
        let mut f = Vec::with_capacity(m.len() + 6);
        key(&mut f, tag, LEN);
        varint(&mut f, m.len() as u64);
        f.extend_from_slice(&m);
        f
    };
    let scope = InstrumentationScope {
        name: scope.to_owned(),
        version: String::new(),
    }
    .encode_to_vec();
    let resource = super::metrics::resource().encode_to_vec();
    (field(1, scope), field(1, resource))
}

/// `ExportLogsServiceRequest{resource_logs: [{resource, scope_logs:
/// [{scope, records}]}]}` around encoded records: one allocation.
fn wrap(scope_field: &[u8], resource_field: &[u8], records: &[u8]) -> Vec<u8> {
    let scope_logs = scope_field.len() + records.len();
    let resource_logs = resource_field.len() + 1 + varint_len(scope_logs as u64) + scope_logs;
    let mut req = Vec::with_capacity(1 + varint_len(resource_logs as u64) + resource_logs);
    key(&mut req, 1, LEN);
    varint(&mut req, resource_logs as u64);
    req.extend_from_slice(resource_field);
    key(&mut req, 2, LEN);
    varint(&mut req, scope_logs as u64);
    req.extend_from_slice(scope_field);
    req.extend_from_slice(records);
    req
}

/// Decoded, for tests: the request `wrap` makes.
pub fn decode(body: &[u8]) -> Result<proto::ExportLogsServiceRequest, prost::DecodeError> {
    prost::Message::decode(body)
}
