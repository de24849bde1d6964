use std::collections::BTreeMap;

use super::*;
use crate::datasource::SourceKind;
use crate::params::ParamValues;
use crate::pipeline::Pipeline;
use crate::pipeline::testing::{Producer, collect};

/// 2024-05-01T12:34:56Z minus one second of boot time.
const OFFSET: i128 = 1_714_566_895_000_000_000;

/// The layout of the test event (offsets in the raw sample).
struct Layout;
impl Layout {
    const TS: usize = 0; // u64 timestamp_raw
    const ERR: usize = 8; // u32 error_raw
    const FLAGS: usize = 12; // u32 flags_raw
    const MODE: usize = 16; // u32 mode_raw
    const SIG: usize = 20; // u32 sig (no _raw: needs a target)
    const NR: usize = 24; // u64 syscall_raw
    const SRC: usize = 32; // l4 endpoint: addr 16, port 2, proto 2, version 1 (+3)
    const DST: usize = 56; // l3 endpoint: addr 16, version 1 (+3)
    const SIZE: u32 = 76;
}

fn add(
    b: &mut SchemaBuilder,
    name: &str,
    kind: FieldKind,
    at: usize,
    size: u32,
    parent: Option<FieldId>,
    tags: &[&str],
) -> FieldId {
    let id = b
        .add_raw(name.into(), kind, at as u32, size, parent)
        .unwrap();
    b.field_mut(id).tags = tags.iter().map(|t| (*t).to_owned()).collect();
    id
}

fn schema(yaml: &[(&str, &str, &str)]) -> SchemaBuilder {
    let mut b = SchemaBuilder::new("ev", SourceKind::Single, Layout::SIZE);
    add(
        &mut b,
        "timestamp_raw",
        FieldKind::U64,
        Layout::TS,
        8,
        None,
        &["type:gadget_timestamp"],
    );
    add(
        &mut b,
        "error_raw",
        FieldKind::U32,
        Layout::ERR,
        4,
        None,
        &["type:gadget_errno"],
    );
    add(
        &mut b,
        "flags_raw",
        FieldKind::U32,
        Layout::FLAGS,
        4,
        None,
        &["type:gadget_file_flags"],
    );
    add(
        &mut b,
        "mode_raw",
        FieldKind::U32,
        Layout::MODE,
        4,
        None,
        &["type:gadget_file_mode"],
    );
    let sig = add(
        &mut b,
        "sig",
        FieldKind::U32,
        Layout::SIG,
        4,
        None,
        &["type:gadget_signal"],
    );
    b.field_mut(sig)
        .annotations
        .insert("formatters.signal.target".into(), "signal".into());
    add(
        &mut b,
        "syscall_raw",
        FieldKind::U64,
        Layout::NR,
        8,
        None,
        &["type:gadget_syscall"],
    );
    let src = add(
        &mut b,
        "src",
        FieldKind::Struct,
        Layout::SRC,
        24,
        None,
        &["type:gadget_l4endpoint_t"],
    );
    let a = add(
        &mut b,
        "src.addr_raw",
        FieldKind::Struct,
        Layout::SRC,
        16,
        Some(src),
        &["type:gadget_ip_addr_t"],
    );
    add(
        &mut b,
        "src.addr_raw.v6",
        FieldKind::Bytes,
        Layout::SRC,
        16,
        Some(a),
        &[],
    );
    add(
        &mut b,
        "src.addr_raw.v4",
        FieldKind::U32,
        Layout::SRC,
        4,
        Some(a),
        &[],
    );
    add(
        &mut b,
        "src.port",
        FieldKind::U16,
        Layout::SRC + 16,
        2,
        Some(src),
        &["name:port"],
    );
    add(
        &mut b,
        "src.proto_raw",
        FieldKind::U16,
        Layout::SRC + 18,
        2,
        Some(src),
        &[],
    );
    add(
        &mut b,
        "src.version",
        FieldKind::U8,
        Layout::SRC + 20,
        1,
        Some(src),
        &[],
    );
    let dst = add(
        &mut b,
        "dst",
        FieldKind::Struct,
        Layout::DST,
        20,
        None,
        &["type:gadget_l3endpoint_t"],
    );
    add(
        &mut b,
        "dst.addr_raw",
        FieldKind::Struct,
        Layout::DST,
        16,
        Some(dst),
        &["type:gadget_ip_addr_t"],
    );
    add(
        &mut b,
        "dst.version",
        FieldKind::U8,
        Layout::DST + 16,
        1,
        Some(dst),
        &[],
    );
    for (field, k, v) in yaml {
        let mut m = BTreeMap::new();
        m.insert((*k).to_owned(), (*v).to_owned());
        match b.schema().field_by_name(field) {
            Some(id) => {
                b.field_mut(id).annotations.extend(m);
            }
            None => b.annotate_later((*field).to_owned(), m),
        }
    }
    b
}

#[derive(Default, Clone, Copy)]
struct Sample {
    ts: u64,
    err: u32,
    flags: u32,
    mode: u32,
    sig: u32,
    nr: u64,
    src: ([u8; 16], u16, u16, u8),
    dst: ([u8; 16], u8),
}

fn bytes(s: &Sample) -> Vec<u8> {
    let mut v = vec![0u8; Layout::SIZE as usize];
    let mut put = |at: usize, b: &[u8]| v[at..at + b.len()].copy_from_slice(b);
    put(Layout::TS, &s.ts.to_ne_bytes());
    put(Layout::ERR, &s.err.to_ne_bytes());
    put(Layout::FLAGS, &s.flags.to_ne_bytes());
    put(Layout::MODE, &s.mode.to_ne_bytes());
    put(Layout::SIG, &s.sig.to_ne_bytes());
    put(Layout::NR, &s.nr.to_ne_bytes());
    put(Layout::SRC, &s.src.0);
    put(Layout::SRC + 16, &s.src.1.to_ne_bytes());
    put(Layout::SRC + 18, &s.src.2.to_ne_bytes());
    put(Layout::SRC + 20, &[s.src.3]);
    put(Layout::DST, &s.dst.0);
    put(Layout::DST + 16, &[s.dst.1]);
    v
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut r = [0; 16];
    r[..4].copy_from_slice(&a);
    r
}

fn run(samples: &[Sample]) -> crate::pipeline::testing::Collector {
    let ops: Vec<Box<dyn Operator>> = vec![
        Box::new(Producer {
            priority: -1,
            schema: schema(&[]),
            samples: samples.iter().map(bytes).collect(),
        }),
        Box::new(Formatters::with_boot_offset(OFFSET)),
    ];
    collect(ops, &ParamValues::default()).unwrap()
}

#[test]
fn each_tag_gets_its_rendering() {
    let one = Sample {
        ts: 1_500_000_000,
        err: 2,
        flags: 0o2000000,
        mode: 0o644,
        sig: 9,
        nr: 257,
        src: (v4([10, 0, 0, 1]), 443, 6, 4),
        dst: (std::net::Ipv6Addr::LOCALHOST.octets(), 6),
    };
    let zero = Sample::default();
    // (field, value for `one`, value for an all-zero event)
    let cases: &[(&str, &str, &str)] = &[
        ("timestamp", "2024-05-01T12:34:56.500000000Z", ""),
        ("timestamp_raw", "1500000000", "0"),
        ("error", "ENOENT", ""),
        ("error_raw", "2", "0"),
        ("flags", "O_RDONLY|O_CLOEXEC", "O_RDONLY"),
        ("mode", "-rw-r--r--", "----------"),
        ("signal", "SIGKILL", "signal#0"),
        ("syscall", "SYS_OPENAT", "SYS_READ"),
        ("src.addr", "10.0.0.1", ""),
        ("src.endpoint", "10.0.0.1:443", ""),
        ("src.proto", "TCP", "IP"),
        ("dst.addr", "::1", ""),
    ];
    let col = run(&[one, zero]);
    for (field, want_one, want_zero) in cases {
        let got = col.column(field);
        assert_eq!(
            got,
            [Some((*want_one).to_owned()), Some((*want_zero).to_owned())],
            "{field}"
        );
    }
    let mut six = one;
    six.src = (std::net::Ipv6Addr::LOCALHOST.octets(), 53, 17, 6);
    let col = run(&[six]);
    assert_eq!(col.column("src.endpoint"), [Some("[::1]:53".into())]);
    assert_eq!(col.column("src.proto"), [Some("UDP".into())]);
}

fn planned(yaml: &[(&str, &str, &str)]) -> Schema {
    let mut b = schema(yaml);
    plan(&mut b).unwrap();
    b.build()
}

#[test]
fn new_fields_take_the_place_of_their_source_and_hide_it_in_tables() {
    let s = planned(&[]);
    let order: Vec<&str> = s
        .display_order()
        .into_iter()
        .map(|id| s.field(id))
        .filter(|f| !f.hidden_in_tables())
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "error",
            "flags",
            "mode",
            "signal",
            "syscall",
            "src.endpoint",
            "dst.addr"
        ]
    );
    let ann = |f: &str, k: &str| {
        s.field(s.field_by_name(f).unwrap())
            .annotation(k)
            .map(str::to_owned)
    };
    assert_eq!(ann("src.endpoint", "columns.alias").as_deref(), Some("src"));
    assert_eq!(ann("dst.addr", "columns.alias").as_deref(), Some("dst"));
    assert_eq!(ann("src.addr_raw", "json.skip").as_deref(), Some("true"));
    assert_eq!(ann("src.endpoint", "json.skip").as_deref(), Some("true"));
    assert_eq!(ann("timestamp", "columns.hidden").as_deref(), Some("true"));
    assert_eq!(ann("error", "columns.width").as_deref(), Some("12"));
    // Same parent as the source.
    assert_eq!(
        s.field(s.field_by_name("src.proto").unwrap()).parent,
        s.field_by_name("src")
    );
}

#[test]
fn gadget_yaml_wins_over_the_defaults() {
    let s = planned(&[
        ("error", "columns.width", "5"),
        ("error_raw", "columns.hidden", "false"),
        ("flags_raw", "formatters.file_flags.target", "open_flags"),
    ]);
    let f = |n: &str| s.field(s.field_by_name(n).unwrap());
    assert_eq!(f("error").annotation("columns.width"), Some("5"));
    assert!(!f("error_raw").hidden_in_tables());
    assert!(s.field_by_name("flags").is_none());
    assert!(!f("open_flags").hidden_in_tables());
}

#[test]
fn a_gadget_without_tagged_fields_costs_nothing() {
    let mut b = SchemaBuilder::new("plain", SourceKind::Single, 8);
    add(
        &mut b,
        "n",
        FieldKind::U64,
        0,
        8,
        None,
        &["type:gadget_pid"],
    );
    // Tagged, but neither _raw nor a target: left alone.
    add(
        &mut b,
        "ts",
        FieldKind::U64,
        0,
        8,
        None,
        &["type:gadget_timestamp"],
    );
    let ops: Vec<Box<dyn Operator>> = vec![
        Box::new(Producer {
            priority: -1,
            schema: b,
            samples: vec![],
        }),
        Box::new(Formatters::new()),
    ];
    let p = Pipeline::build(ops, &ParamValues::default()).unwrap();
    assert_eq!(p.operator_names(), ["producer"]);
}

#[test]
fn an_existing_target_is_left_alone() {
    let mut b = SchemaBuilder::new("x", SourceKind::Single, 8);
    add(
        &mut b,
        "error_raw",
        FieldKind::U32,
        0,
        4,
        None,
        &["type:gadget_errno"],
    );
    add(&mut b, "error", FieldKind::U32, 4, 4, None, &[]);
    assert!(plan(&mut b).unwrap().is_empty());
}

#[test]
fn the_boot_offset_makes_now_now() {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) };
    let boot = i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec);
    let wall = boot + boot_offset_ns();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    assert!((now - wall).abs() < 1_000_000_000, "{now} vs {wall}");
}

#[test]
fn enums_and_bit_sets_render_their_names() {
    let names = {
        let mut n = parse_enum_table("connect=0;accept=1;close=2;broken;x=y");
        n.sort_by_key(|(v, _)| *v);
        n
    };
    assert_eq!(names.len(), 3, "malformed entries are skipped: {names:?}");
    let mut out = String::from("stale");
    enum_text(&mut out, 1, &names, false, "|");
    assert_eq!(out, "accept");
    enum_text(&mut out, 7, &names, false, "|");
    assert_eq!(out, "7", "unknown values print as numbers");
    let bits = parse_enum_table("MS_RDONLY=1;MS_NOSUID=2;MS_BIND=4096");
    enum_text(&mut out, 1 | 4096, &bits, true, "|");
    assert_eq!(out, "MS_RDONLY|MS_BIND");
    enum_text(&mut out, 2 | 0x10000, &bits, true, "|");
    assert_eq!(out, "MS_NOSUID|0x10000", "bits without a name stay visible");
    enum_text(&mut out, 0, &bits, true, "|");
    assert_eq!(out, "");
}
