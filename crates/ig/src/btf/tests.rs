//! Tests of the BTF reader: builder round trips for every kind, queries,
//! every error path, a no-panic sweep over corrupted blobs, a committed
//! clang-built fixture, and (host permitting) the running kernel's BTF.

use super::builder::BtfBuilder;
use super::*;

/// Byte offsets of the header fields we patch in error tests.
const HDR_LEN: usize = 4;
const TYPE_OFF: usize = 8;
const TYPE_LEN: usize = 12;
const STR_OFF: usize = 16;
const STR_LEN: usize = 20;

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn parse(b: &BtfBuilder) -> Btf {
    Btf::parse(&b.to_bytes()).expect("builder output parses")
}

fn member_names<'a>(btf: &'a Btf, members: &[Member]) -> Vec<&'a str> {
    members.iter().map(|m| btf.str(m.name)).collect()
}

/// One record of every kind, with the ids the builder gave them.
struct Every {
    b: BtfBuilder,
    int: TypeId,
    char_: TypeId,
    bool_: TypeId,
    enc_char: TypeId,
    ptr: TypeId,
    arr: TypeId,
    index: TypeId,
    st: TypeId,
    un: TypeId,
    en: TypeId,
    fwd: TypeId,
    td: TypeId,
    vol: TypeId,
    cst: TypeId,
    rst: TypeId,
    proto: TypeId,
    func: TypeId,
    var: TypeId,
    sec: TypeId,
    float: TypeId,
    tag: TypeId,
    ttag: TypeId,
    en64: TypeId,
}

fn every_kind() -> Every {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let char_ = b.char_();
    let bool_ = b.bool_();
    let enc_char = b.int_full(
        "uchar",
        Int {
            size: 1,
            signed: false,
            is_char: true,
            is_bool: false,
            offset: 2,
            bits: 6,
        },
    );
    let ptr = b.ptr(int);
    let arr = b.array(char_, 16);
    let index = arr - 1; // added by the first array()
    let st = b.struct_("pair", 8, &[("a", int, 0), ("b", int, 32)]);
    let un = b.union_("either", 4, &[("i", int, 0), ("c", char_, 0)]);
    let en = b.enum_("color", 4, false, &[("RED", 0), ("BLUE", 2)]);
    let fwd = b.fwd("opaque", true);
    let td = b.typedef("myint", int);
    let vol = b.volatile(int);
    let cst = b.const_(int);
    let rst = b.restrict(ptr);
    let proto = b.func_proto(int, &[("x", int), ("p", ptr)]);
    let func = b.func("do_it", proto, Linkage::Static);
    let var = b.var("counter", int);
    let sec = b.datasec(".bss", 4, &[(var, 0, 4)]);
    let float = b.float("double", 8);
    let tag = b.decl_tag("a_tag", st, 1);
    let ttag = b.type_tag("user", int);
    let en64 = b.enum64("big", 8, false, &[("HUGE", u64::MAX as i128)]);
    Every {
        b,
        int,
        char_,
        bool_,
        enc_char,
        ptr,
        arr,
        index,
        st,
        un,
        en,
        fwd,
        td,
        vol,
        cst,
        rst,
        proto,
        func,
        var,
        sec,
        float,
        tag,
        ttag,
        en64,
    }
}

fn check_every_kind(btf: &Btf, e: &Every) {
    let name = |id| btf.name_of(id).unwrap();
    assert_eq!(btf.type_count(), e.en64 + 1);
    assert_eq!(btf.kind(VOID).unwrap(), &Kind::Void);
    assert_eq!(name(VOID), "");

    assert_eq!(name(e.int), "int");
    assert_eq!(
        btf.kind(e.int).unwrap(),
        &Kind::Int(Int {
            size: 4,
            signed: true,
            is_char: false,
            is_bool: false,
            offset: 0,
            bits: 32
        })
    );
    assert_eq!(
        btf.kind(e.char_).unwrap(),
        &Kind::Int(Int {
            size: 1,
            signed: true,
            is_char: false,
            is_bool: false,
            offset: 0,
            bits: 8
        })
    );
    assert_eq!(
        btf.kind(e.enc_char).unwrap(),
        &Kind::Int(Int {
            size: 1,
            signed: false,
            is_char: true,
            is_bool: false,
            offset: 2,
            bits: 6
        })
    );
    assert_eq!(
        btf.kind(e.bool_).unwrap(),
        &Kind::Int(Int {
            size: 1,
            signed: false,
            is_char: false,
            is_bool: true,
            offset: 0,
            bits: 8
        })
    );
    assert_eq!(btf.kind(e.ptr).unwrap(), &Kind::Ptr(e.int));
    assert_eq!(
        btf.kind(e.arr).unwrap(),
        &Kind::Array(Array {
            elem: e.char_,
            index: e.index,
            len: 16
        })
    );
    assert_eq!(name(e.index), "__ARRAY_SIZE_TYPE__");

    let Kind::Struct(st) = btf.kind(e.st).unwrap() else {
        panic!("not a struct")
    };
    assert_eq!(name(e.st), "pair");
    assert_eq!(st.size, 8);
    assert_eq!(member_names(btf, &st.members), ["a", "b"]);
    assert_eq!(
        st.members
            .iter()
            .map(|m| (m.ty, m.bit_offset, m.bitfield_size))
            .collect::<Vec<_>>(),
        [(e.int, 0, 0), (e.int, 32, 0)]
    );

    let Kind::Union(un) = btf.kind(e.un).unwrap() else {
        panic!("not a union")
    };
    assert_eq!((name(e.un), un.size), ("either", 4));
    assert_eq!(member_names(btf, &un.members), ["i", "c"]);

    let Kind::Enum(en) = btf.kind(e.en).unwrap() else {
        panic!("not an enum")
    };
    assert_eq!((name(e.en), en.size, en.signed), ("color", 4, false));
    assert_eq!(
        en.values
            .iter()
            .map(|v| (btf.str(v.name), v.value))
            .collect::<Vec<_>>(),
        [("RED", 0), ("BLUE", 2)]
    );

    assert_eq!(btf.kind(e.fwd).unwrap(), &Kind::Fwd { is_union: true });
    assert_eq!(name(e.fwd), "opaque");
    assert_eq!(btf.kind(e.td).unwrap(), &Kind::Typedef(e.int));
    assert_eq!(name(e.td), "myint");
    assert_eq!(btf.kind(e.vol).unwrap(), &Kind::Volatile(e.int));
    assert_eq!(btf.kind(e.cst).unwrap(), &Kind::Const(e.int));
    assert_eq!(btf.kind(e.rst).unwrap(), &Kind::Restrict(e.ptr));

    let Kind::FuncProto(proto) = btf.kind(e.proto).unwrap() else {
        panic!("not a proto")
    };
    assert_eq!(proto.ret, e.int);
    assert_eq!(
        proto
            .params
            .iter()
            .map(|p| (btf.str(p.name), p.ty))
            .collect::<Vec<_>>(),
        [("x", e.int), ("p", e.ptr)]
    );
    assert!(!proto.is_variadic());
    assert_eq!(
        btf.kind(e.func).unwrap(),
        &Kind::Func {
            proto: e.proto,
            linkage: Linkage::Static
        }
    );
    assert_eq!(name(e.func), "do_it");

    assert_eq!(
        btf.kind(e.var).unwrap(),
        &Kind::Var(Var {
            ty: e.int,
            linkage: Linkage::Global
        })
    );
    assert_eq!(name(e.var), "counter");
    assert_eq!(
        btf.kind(e.sec).unwrap(),
        &Kind::Datasec(Datasec {
            size: 4,
            vars: vec![VarSecinfo {
                ty: e.var,
                offset: 0,
                size: 4
            }]
        })
    );
    assert_eq!(name(e.sec), ".bss");

    assert_eq!(btf.kind(e.float).unwrap(), &Kind::Float { size: 8 });
    assert_eq!(
        btf.kind(e.tag).unwrap(),
        &Kind::DeclTag {
            target: e.st,
            component_idx: 1
        }
    );
    assert_eq!(name(e.tag), "a_tag");
    assert_eq!(btf.kind(e.ttag).unwrap(), &Kind::TypeTag(e.int));
    assert_eq!(name(e.ttag), "user");

    let Kind::Enum64(en64) = btf.kind(e.en64).unwrap() else {
        panic!("not an enum64")
    };
    assert_eq!((en64.size, en64.signed), (8, false));
    assert_eq!(
        en64.values
            .iter()
            .map(|v| (btf.str(v.name), v.value))
            .collect::<Vec<_>>(),
        [("HUGE", u64::MAX as i128)]
    );
}

#[test]
fn roundtrip_every_kind_little_endian() {
    let e = every_kind();
    let btf = parse(&e.b);
    assert!(!btf.is_big_endian());
    check_every_kind(&btf, &e);
    // types() lists stored records only, in id order.
    let ids: Vec<TypeId> = btf.types().map(|(id, _)| id).collect();
    assert_eq!(ids, (1..btf.type_count()).collect::<Vec<_>>());
}

#[test]
fn roundtrip_every_kind_big_endian() {
    let e = every_kind();
    let btf = Btf::parse(&e.b.to_bytes_be()).unwrap();
    assert!(btf.is_big_endian());
    check_every_kind(&btf, &e);
}

#[test]
fn bitfields_with_kind_flag() {
    let mut b = BtfBuilder::new();
    let u = b.int("unsigned int", 4, false);
    let s = b.struct_bitfields(
        "flags",
        4,
        &[("ro", u, 0, 1), ("mode", u, 1, 3), ("rest", u, 4, 28)],
    );
    let btf = parse(&b);
    let m = btf.members(s).unwrap();
    assert_eq!(member_names(&btf, m), ["ro", "mode", "rest"]);
    assert_eq!(
        m.iter()
            .map(|m| (m.bit_offset, m.bitfield_size))
            .collect::<Vec<_>>(),
        [(0, 1), (1, 3), (4, 28)]
    );
}

#[test]
fn enum_signedness_from_kind_flag() {
    let mut b = BtfBuilder::new();
    let s32 = b.enum_("s", 4, true, &[("NEG", -1), ("MIN", i32::MIN.into())]);
    let u32_ = b.enum_("u", 4, false, &[("MAX", u32::MAX.into())]);
    let s64 = b.enum64("s64", 8, true, &[("NEG", -2), ("MIN", i64::MIN.into())]);
    let u64_ = b.enum64(
        "u64",
        8,
        false,
        &[("MAX", u64::MAX.into()), ("HI", 1 << 40)],
    );
    let btf = parse(&b);
    let values = |id| match btf.kind(id).unwrap() {
        Kind::Enum(e) | Kind::Enum64(e) => (
            e.signed,
            e.values.iter().map(|v| v.value).collect::<Vec<_>>(),
        ),
        k => panic!("{k:?}"),
    };
    assert_eq!(values(s32), (true, vec![-1, i32::MIN.into()]));
    assert_eq!(values(u32_), (false, vec![u32::MAX.into()]));
    assert_eq!(values(s64), (true, vec![-2, i64::MIN.into()]));
    assert_eq!(values(u64_), (false, vec![u64::MAX.into(), 1 << 40]));
}

#[test]
fn func_linkage_and_variadic_proto() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let proto = b.func_proto(int, &[("fmt", int), ("", VOID)]);
    let g = b.func("printk", proto, Linkage::Global);
    let x = b.func("ext", proto, Linkage::Extern);
    let odd = b.var_linkage("odd", int, Linkage::Unknown(7));
    let btf = parse(&b);
    let Kind::FuncProto(p) = btf.kind(proto).unwrap() else {
        panic!()
    };
    assert!(p.is_variadic());
    assert!(matches!(
        btf.kind(g).unwrap(),
        Kind::Func {
            linkage: Linkage::Global,
            ..
        }
    ));
    assert!(matches!(
        btf.kind(x).unwrap(),
        Kind::Func {
            linkage: Linkage::Extern,
            ..
        }
    ));
    assert!(matches!(
        btf.kind(odd).unwrap(),
        Kind::Var(Var {
            linkage: Linkage::Unknown(7),
            ..
        })
    ));
}

#[test]
fn resolve_collects_typedefs_outermost_first() {
    let mut b = BtfBuilder::new();
    let u32_ = b.int("unsigned int", 4, false);
    let kernel_u32 = b.typedef("__u32", u32_);
    let pid = b.typedef("gadget_pid", kernel_u32);
    let c = b.const_(pid);
    let v = b.volatile(c);
    let tagged = b.type_tag("user", v);
    let btf = parse(&b);
    let r = btf.resolve(tagged).unwrap();
    assert_eq!(
        r,
        Resolved {
            id: u32_,
            typedefs: vec!["gadget_pid", "__u32"]
        }
    );
    assert_eq!(
        btf.resolve(u32_).unwrap(),
        Resolved {
            id: u32_,
            typedefs: vec![]
        }
    );
    assert_eq!(btf.skip_modifiers(tagged).unwrap(), u32_);
    assert_eq!(btf.resolve(VOID).unwrap().id, VOID);
}

#[test]
fn resolve_through_arrays_keeps_element_typedefs() {
    let mut b = BtfBuilder::new();
    let ch = b.char_();
    let comm_t = b.typedef("gadget_comm", ch);
    let comm = b.array(comm_t, 16);
    let u8_ = b.int("unsigned char", 1, false);
    let row_t = b.typedef("row", u8_);
    let inner = b.array(row_t, 3);
    let inner_t = b.typedef("rows3", inner);
    let outer = b.array(inner_t, 2);
    let outer_t = b.typedef("grid", outer);
    let btf = parse(&b);

    let r = btf.resolve_through_arrays(comm).unwrap();
    assert_eq!(
        r,
        ArrayResolved {
            typedefs: vec![],
            dims: vec![16],
            elem_typedefs: vec!["gadget_comm"],
            id: ch
        }
    );
    let r = btf.resolve_through_arrays(outer_t).unwrap();
    assert_eq!(
        r,
        ArrayResolved {
            typedefs: vec!["grid"],
            dims: vec![2, 3],
            elem_typedefs: vec!["rows3", "row"],
            id: u8_
        }
    );
    // Not an array: only the outer typedefs.
    let r = btf.resolve_through_arrays(comm_t).unwrap();
    assert_eq!(
        r,
        ArrayResolved {
            typedefs: vec!["gadget_comm"],
            dims: vec![],
            elem_typedefs: vec![],
            id: ch
        }
    );
    assert_eq!(btf.size_of(outer_t).unwrap(), 6);
    assert_eq!(btf.size_of(comm).unwrap(), 16);
}

#[test]
fn size_of_through_every_sized_kind() {
    let e = every_kind();
    let btf = parse(&e.b);
    for (id, size) in [
        (e.int, 4),
        (e.char_, 1),
        (e.ptr, PTR_SIZE),
        (e.arr, 16),
        (e.st, 8),
        (e.un, 4),
        (e.en, 4),
        (e.td, 4),
        (e.vol, 4),
        (e.cst, 4),
        (e.rst, PTR_SIZE),
        (e.var, 4),
        (e.sec, 4),
        (e.float, 8),
        (e.ttag, 4),
        (e.en64, 8),
    ] {
        assert_eq!(
            btf.size_of(id),
            Ok(size),
            "type {id} ({})",
            btf.kind(id).unwrap().name()
        );
    }
    for (id, kind) in [
        (VOID, "void"),
        (e.fwd, "fwd"),
        (e.func, "func"),
        (e.proto, "func_proto"),
        (e.tag, "decl_tag"),
    ] {
        assert_eq!(btf.size_of(id), Err(BtfError::NoSize { id, kind }));
    }
}

#[test]
fn size_of_reports_overflow() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let a = b.array(int, u32::MAX / 2);
    let btf = parse(&b);
    assert_eq!(btf.size_of(a), Err(BtfError::SizeOverflow { id: a }));
}

#[test]
fn const_void_ptr_detection() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let cvp = b.const_void_ptr();
    let vp = b.ptr(VOID);
    let cv = b.const_(VOID);
    let vcv = b.volatile(cv);
    let vcvp = b.ptr(vcv);
    let td = b.typedef("marker_t", cvp);
    let ip = b.ptr(int);
    let btf = parse(&b);
    for id in [cvp, vp, vcvp, td] {
        assert_eq!(btf.is_const_void_ptr(id), Ok(true), "type {id}");
    }
    for id in [int, ip, cv, VOID] {
        assert_eq!(btf.is_const_void_ptr(id), Ok(false), "type {id}");
    }
    assert_eq!(
        btf.is_const_void_ptr(99),
        Err(BtfError::TypeIdOutOfRange {
            id: 99,
            count: btf.type_count()
        })
    );
}

#[test]
fn gadget_style_lookup() {
    // The shape of a gadget object, built the way schema tests will.
    let mut b = BtfBuilder::new();
    let u32_ = b.int("unsigned int", 4, false);
    let pid = b.typedef("gadget_pid", u32_);
    let ch = b.char_();
    let comm_t = b.typedef("gadget_comm", ch);
    let comm = b.array(comm_t, 16);
    let event = b.struct_("event", 20, &[("pid", pid, 0), ("comm", comm, 32)]);
    let marker_ty = b.const_void_ptr();
    let marker = b.var("gadget_tracer_x___events___event", marker_ty);
    let param_ty = b.const_(pid);
    let param = b.var("gadget_param_pid", param_ty);
    let bss = b.datasec(".bss", 8, &[(marker, 0, 8)]);
    let rodata = b.datasec(".rodata", 4, &[(param, 0, 4)]);
    let btf = parse(&b);

    assert_eq!(btf.find_struct("event"), Some(event));
    assert_eq!(btf.find_struct("gadget_pid"), None);
    assert_eq!(
        btf.find("gadget_pid", |k| matches!(k, Kind::Typedef(_))),
        Some(pid)
    );
    assert_eq!(btf.find_var("gadget_param_pid"), Some(param));
    assert_eq!(btf.find_datasec(".rodata"), Some(rodata));

    let tracers: Vec<_> = btf.vars_with_prefix("gadget_tracer_").collect();
    assert_eq!(tracers.len(), 1);
    let (id, name, var) = tracers[0];
    assert_eq!((id, name), (marker, "gadget_tracer_x___events___event"));
    assert!(btf.is_const_void_ptr(var.ty).unwrap());

    let members = btf.members(event).unwrap();
    assert_eq!(member_names(&btf, members), ["pid", "comm"]);
    assert_eq!(btf.resolve(members[0].ty).unwrap().typedefs, ["gadget_pid"]);
    assert_eq!(btf.size_of(members[1].ty), Ok(16));
    assert_eq!(
        btf.resolve_through_arrays(members[1].ty)
            .unwrap()
            .elem_typedefs,
        ["gadget_comm"]
    );

    assert_eq!(
        btf.datasec_of(param),
        Some((
            rodata,
            &VarSecinfo {
                ty: param,
                offset: 0,
                size: 4
            }
        ))
    );
    assert_eq!(btf.datasec_of(marker).map(|(s, _)| s), Some(bss));
    assert_eq!(btf.datasec_of(event), None);
    assert_eq!(
        btf.members(pid),
        Err(BtfError::UnexpectedKind {
            id: u32_,
            expected: "struct or union",
            found: "int"
        })
    );
}

// ---- errors ----

fn small_blob() -> Vec<u8> {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    b.struct_("s", 4, &[("x", int, 0)]);
    b.to_bytes()
}

#[test]
fn error_truncated_header() {
    assert_eq!(
        Btf::parse(&[]).unwrap_err(),
        BtfError::Truncated {
            what: "header",
            offset: 0,
            needed: 24,
            available: 0
        }
    );
    let blob = small_blob();
    assert!(matches!(
        Btf::parse(&blob[..10]),
        Err(BtfError::Truncated {
            what: "header",
            available: 10,
            ..
        })
    ));
}

#[test]
fn error_bad_magic_and_version() {
    let mut blob = small_blob();
    blob[0] = 0x7f;
    assert_eq!(
        Btf::parse(&blob).unwrap_err(),
        BtfError::BadMagic { found: 0xeb7f }
    );
    assert_eq!(
        Btf::parse(b"\x7fELF").unwrap_err(),
        BtfError::BadMagic { found: 0x457f }
    );
    let mut blob = small_blob();
    blob[2] = 2;
    assert_eq!(
        Btf::parse(&blob).unwrap_err(),
        BtfError::UnsupportedVersion { version: 2 }
    );
}

#[test]
fn error_bad_header_len() {
    let mut blob = small_blob();
    put_u32(&mut blob, HDR_LEN, 8);
    assert!(matches!(
        Btf::parse(&blob),
        Err(BtfError::BadHeaderLen { hdr_len: 8, .. })
    ));
    put_u32(&mut blob, HDR_LEN, u32::MAX);
    assert!(matches!(
        Btf::parse(&blob),
        Err(BtfError::BadHeaderLen {
            hdr_len: u32::MAX,
            ..
        })
    ));
}

#[test]
fn longer_header_is_skipped() {
    // A future header with 8 more bytes: sections move, content unchanged.
    let blob = small_blob();
    let mut longer = blob[..24].to_vec();
    put_u32(&mut longer, HDR_LEN, 32);
    longer.extend_from_slice(&[0; 8]);
    longer.extend_from_slice(&blob[24..]);
    let btf = Btf::parse(&longer).unwrap();
    assert_eq!(btf.find_struct("s"), Some(2));
}

#[test]
fn error_sections_out_of_bounds() {
    let blob = small_blob();
    let mut bad = blob.clone();
    put_u32(&mut bad, TYPE_LEN, get_u32(&blob, TYPE_LEN) + 1000);
    assert!(matches!(
        Btf::parse(&bad),
        Err(BtfError::SectionOutOfBounds {
            section: "type",
            ..
        })
    ));
    let mut bad = blob.clone();
    put_u32(&mut bad, TYPE_OFF, u32::MAX);
    assert!(matches!(
        Btf::parse(&bad),
        Err(BtfError::SectionOutOfBounds {
            section: "type",
            offset: u32::MAX,
            ..
        })
    ));
    let mut bad = blob.clone();
    put_u32(&mut bad, STR_LEN, u32::MAX);
    assert!(matches!(
        Btf::parse(&bad),
        Err(BtfError::SectionOutOfBounds {
            section: "string",
            len: u32::MAX,
            ..
        })
    ));
    let mut bad = blob.clone();
    put_u32(&mut bad, STR_OFF, get_u32(&blob, STR_OFF) + 1);
    assert!(matches!(
        Btf::parse(&bad),
        Err(BtfError::SectionOutOfBounds {
            section: "string",
            ..
        })
    ));
    let mut bad = blob;
    bad.truncate(bad.len() - 1);
    assert!(matches!(
        Btf::parse(&bad),
        Err(BtfError::SectionOutOfBounds {
            section: "string",
            ..
        })
    ));
}

#[test]
fn error_truncated_type_records() {
    // Type section cut 4 bytes short: the struct's member ends past it.
    let blob = small_blob();
    let mut bad = blob.clone();
    put_u32(&mut bad, TYPE_LEN, get_u32(&blob, TYPE_LEN) - 4);
    let err = Btf::parse(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            BtfError::Truncated {
                what: "members",
                needed: 12,
                available: 8,
                ..
            }
        ),
        "{err}"
    );

    // Cut inside the common part of a record.
    let mut bad = blob.clone();
    put_u32(&mut bad, TYPE_LEN, 16 + 4);
    assert!(matches!(
        Btf::parse(&bad),
        Err(BtfError::Truncated {
            what: "type record",
            offset: 40,
            needed: 12,
            available: 4
        })
    ));

    // A huge vlen with nothing behind it fails cleanly, allocating nothing.
    let mut b = BtfBuilder::new();
    b.raw("big", 4, false, 0xffff, 8, &[]);
    let err = Btf::parse(&b.to_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            BtfError::Truncated {
                what: "members",
                needed: 786_420,
                available: 0,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn error_unknown_kind() {
    let mut b = BtfBuilder::new();
    b.int("int", 4, true);
    b.raw("future", 25, false, 0, 0, &[]);
    assert_eq!(
        Btf::parse(&b.to_bytes()).unwrap_err(),
        BtfError::UnknownKind {
            id: 2,
            offset: 24 + 16,
            kind: 25
        }
    );
}

#[test]
fn error_bad_strings() {
    // Offset past the end of the string section.
    let mut b = BtfBuilder::new();
    b.raw_words(&[1000, 2 << 24, 0]); // PTR named by a bad offset
    let err = Btf::parse(&b.to_bytes()).unwrap_err();
    assert_eq!(
        err,
        BtfError::BadString {
            id: 1,
            what: "type name",
            offset: 1000,
            reason: "past the end of the string section"
        }
    );

    // A member name that is not NUL-terminated (last byte overwritten).
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    b.struct_("", 4, &[("last", int, 0)]);
    let mut blob = b.to_bytes();
    *blob.last_mut().unwrap() = b'x';
    let err = Btf::parse(&blob).unwrap_err();
    assert!(
        matches!(
            err,
            BtfError::BadString {
                id: 2,
                what: "member name",
                reason: "not NUL-terminated",
                ..
            }
        ),
        "{err}"
    );

    // Not UTF-8.
    let mut blob = b.to_bytes();
    let last = blob.len() - 2;
    blob[last] = 0xff;
    assert!(matches!(
        Btf::parse(&blob),
        Err(BtfError::StringsNotUtf8 { .. })
    ));

    // Longer than MAX_NAME_LEN.
    let mut b = BtfBuilder::new();
    b.int(&"x".repeat(MAX_NAME_LEN + 1), 4, true);
    let err = Btf::parse(&b.to_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            BtfError::BadString {
                reason: "string longer than MAX_NAME_LEN",
                ..
            }
        ),
        "{err}"
    );
    let mut b = BtfBuilder::new();
    b.int(&"x".repeat(MAX_NAME_LEN), 4, true);
    assert!(Btf::parse(&b.to_bytes()).is_ok());

    // An offset inside a multi-byte character.
    let mut b = BtfBuilder::new();
    let off = b.string("é");
    b.raw_words(&[off + 1, 2 << 24, 0]);
    assert!(matches!(
        Btf::parse(&b.to_bytes()),
        Err(BtfError::BadString {
            reason: "inside a multi-byte character",
            ..
        })
    ));
}

#[test]
fn error_type_ref_out_of_range() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    b.struct_("s", 4, &[("x", int, 0), ("y", 77, 0)]);
    assert_eq!(
        Btf::parse(&b.to_bytes()).unwrap_err(),
        BtfError::BadTypeRef {
            id: 2,
            what: "member type",
            target: 77,
            count: 3
        }
    );

    let btf = Btf::parse(&small_blob()).unwrap();
    assert_eq!(
        btf.get(3).unwrap_err(),
        BtfError::TypeIdOutOfRange { id: 3, count: 3 }
    );
    assert_eq!(
        btf.size_of(u32::MAX).unwrap_err(),
        BtfError::TypeIdOutOfRange {
            id: u32::MAX,
            count: 3
        }
    );
    assert!(btf.resolve(42).is_err());
    assert!(btf.name_of(42).is_err());
}

#[test]
fn error_reference_cycles_terminate() {
    let mut b = BtfBuilder::new();
    // typedef a -> const -> typedef b -> typedef a
    let a = b.next_id();
    b.typedef("a", a + 1);
    b.const_(a + 2);
    b.typedef("b", a);
    // An array whose element is itself.
    let arr = b.next_id();
    b.raw("", 3, false, 0, 0, &[arr, arr, 2]);
    // A pointer to itself is fine: pointers have a size without looking.
    let p = b.next_id();
    b.ptr(p);
    let btf = parse(&b);

    let deep = |id| BtfError::ChainTooDeep {
        id,
        max_depth: MAX_CHAIN_DEPTH,
    };
    assert_eq!(btf.resolve(a).unwrap_err(), deep(a));
    assert_eq!(btf.skip_modifiers(a).unwrap_err(), deep(a));
    assert_eq!(btf.size_of(a).unwrap_err(), deep(a));
    assert_eq!(btf.is_const_void_ptr(a).unwrap_err(), deep(a));
    assert_eq!(btf.members(a).unwrap_err(), deep(a));
    assert_eq!(btf.resolve_through_arrays(a).unwrap_err(), deep(a));
    assert!(matches!(
        btf.size_of(arr).unwrap_err(),
        BtfError::ChainTooDeep { .. } | BtfError::SizeOverflow { .. }
    ));
    assert_eq!(btf.resolve_through_arrays(arr).unwrap_err(), deep(arr));
    assert_eq!(btf.size_of(p), Ok(PTR_SIZE));
    assert_eq!(btf.is_const_void_ptr(p), Ok(false));
}

/// Runs every query on every id: on whatever parsed, nothing may panic.
fn query_everything(btf: &Btf) {
    for id in 0..btf.type_count() + 2 {
        let _ = btf.get(id);
        let _ = btf.name_of(id);
        let _ = btf.size_of(id);
        let _ = btf.resolve(id);
        let _ = btf.resolve_through_arrays(id);
        let _ = btf.is_const_void_ptr(id);
        let _ = btf.members(id);
        let _ = btf.datasec_of(id);
    }
    let _ = btf.find_struct("pair");
}

#[test]
fn corrupted_blobs_never_panic() {
    let e = every_kind();
    for blob in [e.b.to_bytes(), e.b.to_bytes_be()] {
        for len in 0..blob.len() {
            if let Ok(btf) = Btf::parse(&blob[..len]) {
                query_everything(&btf);
            }
        }
        for i in 0..blob.len() {
            for mask in [0x01, 0x02, 0x10, 0x80, 0xff] {
                let mut bad = blob.clone();
                bad[i] ^= mask;
                if let Ok(btf) = Btf::parse(&bad) {
                    query_everything(&btf);
                }
            }
        }
    }
}

// ---- real objects ----

/// The `.BTF` section of a committed clang-built fixture.
fn fixture(file: &str) -> Btf {
    use object::{Object, ObjectSection};
    let path = format!(
        "{}/../../tests/fixtures/btf/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).expect("read fixture");
    let file = object::File::parse(&*bytes).expect("fixture is ELF");
    let section = file.section_by_name(".BTF").expect("fixture has .BTF");
    Btf::parse(section.data().expect(".BTF data")).expect("fixture BTF parses")
}

/// The little-endian fixture, which most tests use.
fn fixture_btf() -> Btf {
    fixture("sample.bpf.o")
}

#[test]
fn fixture_big_endian_matches_little() {
    let le = fixture_btf();
    let be = fixture("sample.bpfeb.o");
    assert!(be.is_big_endian());
    assert_eq!(be.type_count(), le.type_count());
    for ((id, a), (_, b)) in le.types().zip(be.types()) {
        // Same source, same string order: records must decode identically.
        assert_eq!(a, b, "type {id}");
        assert_eq!(le.name_of(id), be.name_of(id));
    }
}

#[test]
fn fixture_object_types() {
    let btf = fixture_btf();
    assert!(!btf.is_big_endian());
    let ev = btf
        .find_struct("sample_event")
        .expect("struct sample_event");
    assert_eq!(btf.size_of(ev), Ok(88));
    let members = btf.members(ev).unwrap();
    assert_eq!(
        member_names(&btf, members),
        [
            "timestamp",
            "pid",
            "comm",
            "state",
            "flags",
            "data",
            "ptr",
            "tagged",
            "user_ptr",
            "ratio",
            "u"
        ]
    );
    let offsets: Vec<u32> = members.iter().map(|m| m.bit_offset).collect();
    assert_eq!(offsets, [0, 64, 96, 224, 256, 288, 384, 448, 512, 576, 640]);
    let m = |name: &str| *members.iter().find(|m| btf.str(m.name) == name).unwrap();

    // Typedef chains, outermost first.
    let ts = btf.resolve(m("timestamp").ty).unwrap();
    assert_eq!(ts.typedefs, ["gadget_timestamp", "__u64"]);
    assert_eq!(btf.name_of(ts.id), Ok("unsigned long long"));
    assert_eq!(
        btf.resolve(m("pid").ty).unwrap().typedefs,
        ["gadget_pid", "__u32"]
    );

    // gadget_comm comm[16]
    let comm = btf.resolve_through_arrays(m("comm").ty).unwrap();
    assert_eq!(
        (comm.dims.as_slice(), comm.elem_typedefs.as_slice()),
        (&[16][..], &["gadget_comm"][..])
    );
    assert!(matches!(
        btf.kind(comm.id).unwrap(),
        Kind::Int(Int {
            size: 1,
            signed: true,
            ..
        })
    ));
    assert_eq!(btf.size_of(m("comm").ty), Ok(16));

    // unsigned char data[2][3]
    let data = btf.resolve_through_arrays(m("data").ty).unwrap();
    assert_eq!(data.dims, [2, 3]);
    assert_eq!(btf.size_of(m("data").ty), Ok(6));

    // enum sample_state (clang 14 leaves the signedness flag unset).
    let Kind::Enum(state) = btf.kind(m("state").ty).unwrap() else {
        panic!("state is not an enum")
    };
    assert_eq!(
        state
            .values
            .iter()
            .map(|v| (btf.str(v.name), v.value))
            .collect::<Vec<_>>(),
        [("SAMPLE_NEW", 0), ("SAMPLE_RUNNING", 1), ("SAMPLE_DEAD", 7)]
    );

    // Bitfields, modern encoding.
    let flags = btf.members(m("flags").ty).unwrap();
    assert_eq!(
        flags
            .iter()
            .map(|f| (btf.str(f.name), f.bit_offset, f.bitfield_size))
            .collect::<Vec<_>>(),
        [("ro", 0, 1), ("mode", 1, 3), ("rest", 4, 28)]
    );

    // const volatile int *ptr
    let Kind::Ptr(target) = *btf.kind(m("ptr").ty).unwrap() else {
        panic!("ptr is not a pointer")
    };
    assert!(matches!(btf.kind(target).unwrap(), Kind::Const(_)));
    assert_eq!(btf.name_of(btf.skip_modifiers(target).unwrap()), Ok("int"));

    // int __attribute__((btf_type_tag("user"))) *user_ptr
    let Kind::Ptr(target) = *btf.kind(m("user_ptr").ty).unwrap() else {
        panic!("user_ptr is not a pointer")
    };
    assert!(matches!(btf.kind(target).unwrap(), Kind::TypeTag(_)));
    assert_eq!(btf.name_of(target), Ok("user"));

    // btf_decl_tag on member 7 (tagged).
    let tag = btf
        .find("sample_tag", |k| matches!(k, Kind::DeclTag { .. }))
        .expect("decl tag");
    assert_eq!(
        btf.kind(tag).unwrap(),
        &Kind::DeclTag {
            target: ev,
            component_idx: 7
        }
    );

    assert_eq!(btf.kind(m("ratio").ty).unwrap(), &Kind::Float { size: 8 });
    let Kind::Union(u) = btf.kind(m("u").ty).unwrap() else {
        panic!("u is not a union")
    };
    assert_eq!(
        (u.size, member_names(&btf, &u.members)),
        (4, vec!["as_u32", "as_bytes"])
    );
}

#[test]
fn fixture_object_variables() {
    let btf = fixture_btf();
    let tracers: Vec<_> = btf.vars_with_prefix("gadget_tracer_").collect();
    assert_eq!(tracers.len(), 1);
    let (marker, name, var) = tracers[0];
    assert_eq!(name, "gadget_tracer_sample___events___sample_event");
    assert!(btf.is_const_void_ptr(var.ty).unwrap());
    assert_eq!(var.linkage, Linkage::Global);

    let (param, _, var) = btf
        .vars_with_prefix("gadget_param_")
        .next()
        .expect("param var");
    assert_eq!(btf.resolve(var.ty).unwrap().typedefs, Vec::<&str>::new());
    assert_eq!(btf.size_of(param), Ok(4));
    let (sec, info) = btf.datasec_of(param).expect("param in a datasec");
    assert_eq!(btf.name_of(sec), Ok(".rodata"));
    assert_eq!(info.size, 4);
    // clang leaves DATASEC offsets and sizes to the loader: in a .o they are
    // 0 and the real ones come from the ELF symbol table.
    let Kind::Datasec(rodata) = btf.kind(sec).unwrap() else {
        panic!()
    };
    assert_eq!(rodata.size, 0);
    assert_eq!(btf.name_of(btf.datasec_of(marker).unwrap().0), Ok(".bss"));
}

/// Host-dependent sanity check: the running kernel's BTF, if exposed, parses
/// completely. Skipped (with a note) where it is not.
#[test]
#[allow(clippy::print_stderr)]
fn vmlinux_parses_if_present() {
    let path = "/sys/kernel/btf/vmlinux";
    let Ok(bytes) = std::fs::read(path) else {
        eprintln!("skipping: {path} not readable");
        return;
    };
    let start = std::time::Instant::now();
    let btf = Btf::parse(&bytes).expect("vmlinux BTF parses");
    let elapsed = start.elapsed();
    eprintln!(
        "parsed {path}: {} bytes, {} types in {elapsed:?}",
        bytes.len(),
        btf.type_count()
    );
    let task = btf.find_struct("task_struct").expect("struct task_struct");
    let comm = btf
        .members(task)
        .unwrap()
        .iter()
        .find(|m| btf.str(m.name) == "comm")
        .expect("task_struct.comm");
    assert_eq!(btf.size_of(comm.ty), Ok(16));
    query_everything(&btf);
}
