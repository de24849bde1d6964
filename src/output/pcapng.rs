//! pcap-ng output (`-o pcap-ng`): the packets of a data source that
//! declares them, as upstream's tcpdump does with annotations:
//!
//! - `pcap.payload`: the bytes field holding the packet (from the frame's
//!   Ethernet header on);
//! - `pcap.packet-length`: the packet's length on the wire (it may be cut
//!   to a snapshot length in the payload);
//! - `pcap.timestamp`: the time field (`gadget_timestamp`, nanoseconds
//!   since boot; its `_raw` sibling when the named one is the formatted
//!   text), written as wall-clock time in nanoseconds;
//! - `pcap.interface-key` on a field (the interface index): one interface
//!   block per distinct value, named after the host's interface.
//!
//! Format (pcapng, draft-ietf-opsawg-pcapng): a Section Header Block,
//! Interface Description Blocks (link type Ethernet, `if_tsresol` 9:
//! nanoseconds, `if_name`), one Enhanced Packet Block per packet, in the
//! host's byte order. Every chunk handed to the writer starts a new
//! section with all interfaces described again, so that a chunk dropped
//! for a slow reader (counted, as with other outputs) never leaves packets
//! that name an interface the reader did not see.

use super::sink::{SharedWriter, Sink};
use crate::datasource::{Event, FieldId, Schema, ValueRef};
use crate::pipeline::{Flow, Handler, HandlerError};

/// Annotations (upstream's names).
pub const PAYLOAD: &str = "pcap.payload";
const LENGTH: &str = "pcap.packet-length";
const TIMESTAMP: &str = "pcap.timestamp";
const INTERFACE_KEY: &str = "pcap.interface-key";

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;
const LINKTYPE_ETHERNET: u16 = 1;
const SNAPLEN: u32 = 262_144;

/// Why `-o pcap-ng` cannot print a data source.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// -o pcap-ng: data source `source_name` declares no packets (no `PAYLOAD`
    /// annotation naming a field).
    #[error(
        "-o pcap-ng: data source {source_name} declares no packets (no {PAYLOAD} annotation naming a field)"
    )]
    NoPayload {
        /// The data source.
        source_name: String,
    },
    /// An annotation names a field the data source lacks.
    #[error(
        "-o pcap-ng: data source {source_name}: {annotation} names {field}, which it does not have"
    )]
    NoField {
        /// The data source.
        source_name: String,
        /// The annotation.
        annotation: &'static str,
        /// The field.
        field: String,
    },
}

/// Where a data source's packets are.
#[derive(Debug)]
struct Plan {
    payload: FieldId,
    length: Option<FieldId>,
    timestamp: Option<FieldId>,
    interface: Option<FieldId>,
}

fn plan(schema: &Schema) -> Result<Plan, PcapError> {
    let name_of = |annotation: &'static str| schema.annotations.get(annotation);
    let field = |annotation: &'static str, name: &str| {
        schema
            .field_by_name(name)
            .ok_or_else(|| PcapError::NoField {
                source_name: schema.name.clone(),
                annotation,
                field: name.to_owned(),
            })
    };
    let payload = name_of(PAYLOAD).ok_or_else(|| PcapError::NoPayload {
        source_name: schema.name.clone(),
    })?;
    let payload = field(PAYLOAD, payload)?;
    let length = name_of(LENGTH).map(|n| field(LENGTH, n)).transpose()?;
    let timestamp = match name_of(TIMESTAMP) {
        Some(n) => {
            // Ours is text; the number is its `_raw` sibling.
            let raw = format!("{n}_raw");
            Some(
                schema
                    .field_by_name(&raw)
                    .filter(|f| schema.field(*f).kind.is_numeric())
                    .map_or_else(|| field(TIMESTAMP, n), Ok)?,
            )
        }
        None => None,
    };
    let interface = schema
        .fields()
        .iter()
        .position(|f| {
            f.annotations.get(INTERFACE_KEY).map(String::as_str) == Some("true")
                && f.kind.is_numeric()
        })
        .and_then(|i| schema.field_by_name(&schema.fields()[i].name));
    Ok(Plan {
        payload,
        length,
        timestamp,
        interface,
    })
}

/// Whether `-o pcap-ng` can print this data source.
pub fn has_packets(schema: &Schema) -> bool {
    schema.annotations.contains_key(PAYLOAD)
}

/// Prints the packets of a data source as pcap-ng (`-o pcap-ng`): a section per
/// written chunk, an interface per `pcap.interface-key`.
pub struct PcapNgPrinter {
    plan: Plan,
    /// Interfaces by key value, in the order of their ids in a section.
    interfaces: Vec<(u64, String)>,
    boot_offset_ns: i128,
    sink: Sink,
}

impl PcapNgPrinter {
    /// `boot_offset_ns`: `CLOCK_REALTIME - CLOCK_BOOTTIME`.
    pub fn new(
        schema: &Schema,
        out: SharedWriter,
        boot_offset_ns: i128,
    ) -> Result<Self, PcapError> {
        Ok(Self {
            plan: plan(schema)?,
            interfaces: Vec::new(),
            boot_offset_ns,
            sink: Sink::new(out),
        })
    }
}

fn u64_of(v: ValueRef<'_>) -> Option<u64> {
    match v {
        ValueRef::U64(n) => Some(n),
        ValueRef::I64(n) => u64::try_from(n).ok(),
        _ => None,
    }
}

/// Append a block: type, length, `body` padded to 4 bytes, length.
fn block(buf: &mut Vec<u8>, ty: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    body(buf);
    buf.resize(buf.len().next_multiple_of(4), 0);
    let len = (buf.len() - start + 4) as u32;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf[start + 4..start + 8].copy_from_slice(&len.to_ne_bytes());
}

/// An option: code, length, value padded to 4 bytes.
fn option(buf: &mut Vec<u8>, code: u16, value: &[u8]) {
    buf.extend_from_slice(&code.to_ne_bytes());
    buf.extend_from_slice(&(value.len() as u16).to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn section_header(buf: &mut Vec<u8>) {
    block(buf, SHB, |b| {
        b.extend_from_slice(&0x1A2B_3C4Du32.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&(-1i64).to_ne_bytes()); // length unknown
        option(b, 4, b"ig (Inspektor Gadget)"); // shb_userappl
        option(b, 0, &[]);
    });
}

fn interface_block(buf: &mut Vec<u8>, name: &str) {
    block(buf, IDB, |b| {
        b.extend_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&SNAPLEN.to_ne_bytes());
        if !name.is_empty() {
            option(b, 2, name.as_bytes()); // if_name
        }
        option(b, 9, &[9]); // if_tsresol: 10^-9 s
        option(b, 0, &[]);
    });
}

/// The host's name of interface `index` (empty if it has none now).
fn interface_name(index: u64) -> String {
    let Ok(index) = u32::try_from(index) else {
        return String::new();
    };
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into buf.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

impl Handler for PcapNgPrinter {
    fn on_event(&mut self, schema: &Schema, ev: &mut Event) -> Flow {
        let p = &self.plan;
        let ValueRef::Bytes(data) = ev.get(schema.field(p.payload)) else {
            return Flow::Continue;
        };
        let key = p
            .interface
            .and_then(|f| u64_of(ev.get(schema.field(f))))
            .unwrap_or(0);
        let wire = p
            .length
            .and_then(|f| u64_of(ev.get(schema.field(f))))
            .unwrap_or(data.len() as u64)
            .max(data.len() as u64);
        let ts = p
            .timestamp
            .and_then(|f| u64_of(ev.get(schema.field(f))))
            .map_or(0, |boot| {
                u64::try_from(i128::from(boot) + self.boot_offset_ns).unwrap_or(0)
            });
        let known = self.interfaces.iter().position(|(k, _)| *k == key);
        let id = match known {
            Some(i) => i,
            None => {
                // A new interface: looked up once (a system call per new
                // interface, not per packet).
                self.interfaces.push((key, interface_name(key)));
                self.interfaces.len() - 1
            }
        };
        let Some(buf) = self.sink.buf() else {
            return Flow::Continue;
        };
        if buf.is_empty() {
            // A new chunk: a section that describes every interface.
            section_header(buf);
            for (_, name) in &self.interfaces {
                interface_block(buf, name);
            }
        } else if known.is_none() {
            interface_block(buf, &self.interfaces[id].1);
        }
        block(buf, EPB, |b| {
            b.extend_from_slice(&(id as u32).to_ne_bytes());
            b.extend_from_slice(&((ts >> 32) as u32).to_ne_bytes());
            b.extend_from_slice(&(ts as u32).to_ne_bytes());
            b.extend_from_slice(&(data.len() as u32).to_ne_bytes());
            b.extend_from_slice(&(wire.min(u64::from(u32::MAX)) as u32).to_ne_bytes());
            b.extend_from_slice(data);
        });
        self.sink.record_done();
        Flow::Continue
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        self.sink.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::{FieldKind, SchemaBuilder, SourceKind, Value};
    use crate::output::shared;
    use crate::output::sink::Capture;

    fn schema() -> Schema {
        let mut b = SchemaBuilder::new("packets", SourceKind::Single, 16);
        b.add_raw("timestamp_raw".into(), FieldKind::U64, 0, 8, None)
            .unwrap();
        let i = b
            .add_raw("ifindex".into(), FieldKind::U32, 8, 4, None)
            .unwrap();
        b.field_mut(i)
            .annotations
            .insert(INTERFACE_KEY.into(), "true".into());
        b.add_raw("packet_size".into(), FieldKind::U32, 12, 4, None)
            .unwrap();
        b.add_owned("payload".into(), FieldKind::Bytes, None)
            .unwrap();
        b.add_owned("timestamp".into(), FieldKind::String, None)
            .unwrap();
        let a = b.annotations_mut();
        a.insert(PAYLOAD.into(), "payload".into());
        a.insert(LENGTH.into(), "packet_size".into());
        a.insert(TIMESTAMP.into(), "timestamp".into());
        b.build()
    }

    fn event(s: &Schema, ts: u64, ifindex: u32, size: u32, data: &[u8]) -> Event {
        let mut raw = ts.to_ne_bytes().to_vec();
        raw.extend(ifindex.to_ne_bytes());
        raw.extend(size.to_ne_bytes());
        let mut e = Event::new(s);
        e.set_raw(&raw);
        e.set_value(
            s.field(s.field_by_name("payload").unwrap()),
            Value::Bytes(data.to_vec()),
        );
        e
    }

    /// Blocks of a pcapng stream: (type, body).
    fn blocks(b: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 12 <= b.len() {
            let ty = u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
            let len = u32::from_ne_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0);
            let trailer = u32::from_ne_bytes(b[at + len - 4..at + len].try_into().unwrap());
            assert_eq!(trailer as usize, len, "block lengths agree");
            out.push((ty, b[at + 8..at + len - 4].to_vec()));
            at += len;
        }
        assert_eq!(at, b.len());
        out
    }

    #[test]
    fn packets_become_blocks_with_wall_clock_nanoseconds() {
        let s = schema();
        let cap = Capture::default();
        let mut p = PcapNgPrinter::new(&s, shared(cap.clone()), 1_000_000_000_000).unwrap();
        let frame = [0xffu8, 1, 2, 3, 4, 5, 6];
        p.on_event(&s, &mut event(&s, 5, 1, 60, &frame));
        p.on_event(&s, &mut event(&s, 6, 1, 7, &frame));
        p.on_event(&s, &mut event(&s, 7, 99, 7, &frame[..3]));
        p.flush().unwrap();
        let b = blocks(&cap.0.borrow());
        let types: Vec<u32> = b.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, [SHB, IDB, EPB, EPB, IDB, EPB]);
        let epb = &b[2].1;
        let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
        assert_eq!(u32_at(epb, 0), 0, "interface 0");
        let ts = (u64::from(u32_at(epb, 4)) << 32) | u64::from(u32_at(epb, 8));
        assert_eq!(ts, 1_000_000_000_005);
        assert_eq!(u32_at(epb, 12), 7, "captured");
        assert_eq!(u32_at(epb, 16), 60, "on the wire");
        assert_eq!(&epb[20..27], &frame);
        assert_eq!(u32_at(&b[5].1, 0), 1, "the second interface");
        // A later chunk starts a section that describes both again.
        p.on_event(&s, &mut event(&s, 8, 99, 7, &frame));
        p.flush().unwrap();
        let types: Vec<u32> = blocks(&cap.0.borrow()).iter().map(|(t, _)| *t).collect();
        assert_eq!(types, [SHB, IDB, EPB, EPB, IDB, EPB, SHB, IDB, IDB, EPB]);
    }

    #[test]
    fn a_source_without_packets_is_refused() {
        let mut b = SchemaBuilder::new("x", SourceKind::Single, 4);
        b.add_raw("n".into(), FieldKind::U32, 0, 4, None).unwrap();
        let s = b.build();
        assert!(!has_packets(&s));
        assert!(matches!(plan(&s), Err(PcapError::NoPayload { .. })));
    }
}
