//! Small BTF built in the test, turned into a header, and the header
//! compiled by clang for BPF with `_Static_assert`s on the layout BTF
//! describes: the text is checked where order or spelling matters, the
//! compiler where layout does.

use std::collections::{HashMap, HashSet};
use std::process::Command;

use super::*;
use crate::btf::builder::BtfBuilder;
use crate::btf::{Linkage, VOID};

fn header(b: &BtfBuilder) -> String {
    let btf = Btf::parse(&b.to_bytes()).unwrap();
    vmlinux_h(&btf).unwrap()
}

fn error(b: &BtfBuilder) -> CHeaderError {
    let btf = Btf::parse(&b.to_bytes()).unwrap();
    vmlinux_h(&btf).unwrap_err()
}

/// Compiles a file that includes `header` and then holds `checks`, with
/// clang for BPF (`-g`, warnings as errors), and returns the object.
fn compile(header: &str, checks: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vmlinux.h"), header).unwrap();
    let src = dir.path().join("t.c");
    let obj = dir.path().join("t.o");
    std::fs::write(
        &src,
        format!("#include \"vmlinux.h\"\n#define OFF(t, m) __builtin_offsetof(t, m)\n{checks}\n"),
    )
    .unwrap();
    let clang = std::env::var("IG_CLANG").unwrap_or_else(|_| "clang".into());
    let out = Command::new(&clang)
        .args(["-target", "bpf", "-g", "-O2", "-Wall", "-Werror", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .unwrap_or_else(|e| panic!("running {clang}: {e}"));
    assert!(
        out.status.success(),
        "clang:\n{}\nheader:\n{header}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(obj).unwrap()
}

/// The bytes of section `name` of an ELF object.
fn section<'a>(obj: &'a [u8], name: &str) -> &'a [u8] {
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(obj).unwrap();
    file.section_by_name(name).unwrap().data().unwrap()
}

/// A member's bit offset and bitfield width in either encoding.
fn effective(btf: &Btf, m: &crate::btf::Member) -> (u32, u32) {
    if m.bitfield_size > 0 {
        return (m.bit_offset, u32::from(m.bitfield_size));
    }
    match btf.kind(btf.skip_modifiers(m.ty).unwrap()).unwrap() {
        Kind::Int(i) if u32::from(i.bits) < i.size * 8 || i.offset != 0 => {
            (m.bit_offset + u32::from(i.offset), u32::from(i.bits))
        }
        _ => (m.bit_offset, 0),
    }
}

/// Whether `a` in `btf_a` and `b` in `btf_b` have the same layout: size,
/// then each member's name, offset and bitfield width, into anonymous
/// members. `b` is clang's: its padding members (`__ig_pad*`, unnamed
/// bitfields) are skipped, and names made up for unnamed members match "".
fn same_layout(btf_a: &Btf, a: TypeId, btf_b: &Btf, b: TypeId, what: &str) {
    assert_eq!(
        btf_a.size_of(a).unwrap(),
        btf_b.size_of(b).unwrap(),
        "size of {what}"
    );
    let ma = btf_a.members(a).unwrap();
    let mb: Vec<_> = btf_b
        .members(b)
        .unwrap()
        .iter()
        .filter(|m| {
            let name = btf_b.str(m.name);
            let composite = matches!(
                btf_b.kind(btf_b.skip_modifiers(m.ty).unwrap()).unwrap(),
                Kind::Struct(_) | Kind::Union(_)
            );
            !name.starts_with("__ig_pad") && (!name.is_empty() || composite)
        })
        .collect();
    assert_eq!(ma.len(), mb.len(), "members of {what}");
    for (x, y) in ma.iter().zip(mb) {
        let (nx, ny) = (sanitize(btf_a.str(x.name)), btf_b.str(y.name));
        let ny = if ny.starts_with("__ig_unnamed") {
            ""
        } else {
            ny
        };
        assert_eq!(nx, ny, "member of {what}");
        let here = format!("{what}.{nx}");
        assert_eq!(effective(btf_a, x), effective(btf_b, y), "{here}");
        let (tx, ty) = (
            btf_a.skip_modifiers(x.ty).unwrap(),
            btf_b.skip_modifiers(y.ty).unwrap(),
        );
        let anon = |btf: &Btf, t| {
            btf.name_of(t).unwrap().is_empty()
                && matches!(btf.kind(t).unwrap(), Kind::Struct(_) | Kind::Union(_))
        };
        if anon(btf_a, tx) && anon(btf_b, ty) {
            same_layout(btf_a, tx, btf_b, ty, &here);
        }
    }
}

/// The header of `b`, compiled with a global of every named struct and
/// union (so that clang writes their BTF) and `checks`; then every one of
/// them must have in clang's BTF the layout it has in `b`. Returns the
/// header.
fn roundtrip(b: &BtfBuilder, checks: &str) -> String {
    roundtrip_btf(&Btf::parse(&b.to_bytes()).unwrap(), checks, |_, _| true)
}

/// [`roundtrip`] for the structs and unions `pick` chooses (given the
/// writer, which knows their layout, and the id). Every named struct and
/// union in clang's BTF is compared, those the chosen ones hold included.
fn roundtrip_btf(
    btf: &Btf,
    checks: &str,
    mut pick: impl FnMut(&mut Writer<'_>, TypeId) -> bool,
) -> String {
    let h = vmlinux_h(btf).unwrap();
    let mut w = Writer::new(btf);
    let mut uses = String::new();
    let mut ours = HashMap::new();
    let mut wanted = Vec::new();
    for (id, t) in btf.types() {
        let kw = match t.kind {
            Kind::Struct(_) => "struct",
            Kind::Union(_) => "union",
            _ => continue,
        };
        if t.name.is_empty() {
            continue;
        }
        let name = w.c_name(id);
        if pick(&mut w, id) {
            uses.push_str(&format!("{kw} {name} use_{id};\n"));
            wanted.push((kw, name.clone()));
        }
        ours.insert((kw, name), id);
    }
    let obj = compile(&h, &format!("{uses}{checks}"));
    let clangs = Btf::parse(section(&obj, ".BTF")).unwrap();
    let mut compared = HashSet::new();
    for (theirs, t) in clangs.types() {
        let kw = match t.kind {
            Kind::Struct(_) => "struct",
            Kind::Union(_) => "union",
            _ => continue,
        };
        let name = clangs.str(t.name).to_owned();
        if let Some(&id) = ours.get(&(kw, name.clone())) {
            same_layout(btf, id, &clangs, theirs, &format!("{kw} {name}"));
            compared.insert((kw, name));
        }
    }
    for w in wanted {
        assert!(
            compared.contains(&w),
            "{} {} missing from clang's BTF",
            w.0,
            w.1
        );
    }
    h
}

/// Byte offset of the first occurrence of `needle`, which must be there.
fn at(h: &str, needle: &str) -> usize {
    h.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} missing from:\n{h}"))
}

#[test]
fn guard_and_preserve_access_index_frame_the_types() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    b.struct_("one", 4, &[("x", int, 0)]);
    let h = roundtrip(&b, "");
    let guard = at(&h, "#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n");
    let push = at(
        &h,
        "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n#endif",
    );
    let def = at(&h, "struct one {\n\tint x;\n};");
    let pop = at(&h, "#pragma clang attribute pop");
    assert!(guard < push && push < def && def < pop, "{h}");
    assert!(h.ends_with("#endif /* __VMLINUX_H__ */\n"), "{h}");
    // Included twice, and with the attribute turned off.
    compile(
        &h,
        "#include \"vmlinux.h\"\n_Static_assert(sizeof(struct one) == 4, \"\");",
    );
    let off = format!("#define BPF_NO_PRESERVE_ACCESS_INDEX\n{h}");
    compile(&off, "_Static_assert(OFF(struct one, x) == 0, \"\");");
}

/// A field read through a struct of the header is a CO-RE relocation
/// (what `preserve_access_index` is for): clang writes it to `.BTF.ext`.
#[test]
fn reads_through_the_header_are_relocatable() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    b.struct_("task", 8, &[("pad", int, 0), ("pid", int, 32)]);
    let h = header(&b);
    let obj = compile(
        &h,
        "__attribute__((section(\"tp/x\"))) int prog(struct task *t) { return t->pid; }",
    );
    let data = section(&obj, ".BTF.ext");
    // btf_ext_header: magic, version, flags, hdr_len, then func_info,
    // line_info and core_relo offsets and lengths (u32 each).
    let word = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().unwrap());
    let hdr_len = word(4) as usize;
    assert!(hdr_len >= 32, "no CO-RE part in this .BTF.ext header");
    assert!(word(28) > 0, "no CO-RE relocation recorded");
}

#[test]
fn pointer_cycles_are_broken_by_forward_declarations() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    // struct a { struct b *b; struct a *self; };
    // struct b { struct a a; struct b *next; };  (b holds a by value)
    let first = b.next_id();
    let (a, b_id) = (first + 2, first + 3);
    let pb = b.ptr(b_id);
    let pa = b.ptr(a);
    assert_eq!(b.struct_("a", 16, &[("b", pb, 0), ("self", pa, 64)]), a);
    assert_eq!(b.struct_("b", 24, &[("a", a, 0), ("next", pb, 128)]), b_id);
    // typedef struct node node_t; struct node { node_t *next; int v; };
    let node = b.next_id() + 2;
    let node_t = b.typedef("node_t", node);
    let pn = b.ptr(node_t);
    assert_eq!(
        b.struct_("node", 16, &[("next", pn, 0), ("v", int, 64)]),
        node
    );
    let h = roundtrip(&b, "_Static_assert(sizeof(node_t) == 16, \"\");");
    let fwd_b = at(&h, "struct b;");
    let def_a = at(&h, "struct a {\n\tstruct b *b;\n\tstruct a *self;\n};");
    let def_b = at(&h, "struct b {\n\tstruct a a;\n\tstruct b *next;\n};");
    assert!(fwd_b < def_a && def_a < def_b, "{h}");
    let td = at(&h, "typedef struct node node_t;");
    let def_node = at(&h, "struct node {\n\tnode_t *next;\n\tint v;\n};");
    assert!(td < def_node, "{h}");
}

#[test]
fn cycles_c_cannot_express_are_errors() {
    // A struct holding itself by value.
    let mut b = BtfBuilder::new();
    let me = b.next_id();
    b.struct_("me", 4, &[("me", me, 0)]);
    assert!(
        matches!(error(&b), CHeaderError::Cycle { .. }),
        "{}",
        error(&b)
    );
    // A typedef naming itself.
    let mut b = BtfBuilder::new();
    let t = b.next_id();
    b.typedef("loop_t", t);
    assert!(matches!(error(&b), CHeaderError::Cycle { .. }));
    // A chain deeper than MAX_DEPTH: an error, not a stack overflow.
    // (Each holds the next by value, the first one met holds them all.)
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let first = b.next_id();
    let n = MAX_DEPTH as u32 + 10;
    for i in 0..n {
        let inner = if i + 1 < n { first + i + 1 } else { int };
        b.struct_(&format!("s{i}"), 4, &[("x", inner, 0)]);
    }
    assert!(
        matches!(error(&b), CHeaderError::TooDeep { .. }),
        "{}",
        error(&b)
    );
    // Overlapping members.
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    b.struct_("overlap", 8, &[("a", int, 0), ("b", int, 16)]);
    let e = error(&b).to_string();
    assert!(
        e.contains("overlap") && e.contains("cannot be written in C"),
        "{e}"
    );
}

#[test]
fn anonymous_members_are_written_inline() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let long = b.int("long int", 8, true);
    // struct outer { int kind; union { struct { int x; int y; }; long l; };
    //                struct { int z; } named; enum { RED = 1 } color; };
    let inner = b.struct_("", 8, &[("x", int, 0), ("y", int, 32)]);
    let u = b.union_("", 8, &[("", inner, 0), ("l", long, 0)]);
    let named = b.struct_("", 4, &[("z", int, 0)]);
    let color = b.enum_("", 4, false, &[("RED", 1)]);
    b.struct_(
        "outer",
        24,
        &[
            ("kind", int, 0),
            ("", u, 64),
            ("named", named, 128),
            ("color", color, 160),
        ],
    );
    // The same anonymous enum again: its constants exist once, so this
    // use is its integer type. And a const anonymous member (the
    // kernel's struct vm_fault has one).
    let inner_again = b.struct_("", 4, &[("w", int, 0)]);
    let const_inner = b.const_(inner_again);
    b.struct_("again", 8, &[("color", color, 0), ("", const_inner, 32)]);
    // Anonymous enums nothing uses: on their own (TASK_COMM_LEN is one).
    b.enum_("", 4, false, &[("TASK_COMM_LEN", 16)]);
    let h = roundtrip(
        &b,
        "_Static_assert(OFF(struct outer, y) == 12, \"\");\n\
         _Static_assert(OFF(struct outer, l) == 8, \"\");\n\
         _Static_assert(OFF(struct outer, named.z) == 16, \"\");\n\
         _Static_assert(RED == 1 && TASK_COMM_LEN == 16, \"\");\n\
         _Static_assert(OFF(struct again, w) == 4, \"\");\n\
         char comm[TASK_COMM_LEN];",
    );
    assert!(
        h.contains(
            "struct outer {\n\tint kind;\n\tunion {\n\t\tstruct {\n\t\t\tint x;\n\t\t\tint y;\n\t\t};\n\t\tlong int l;\n\t};\n\tstruct {\n\t\tint z;\n\t} named;\n\tenum {\n\t\tRED = 1,\n\t} color;\n};"
        ),
        "{h}"
    );
    assert!(
        h.contains("struct again {\n\tunsigned int color;\n\tconst struct {\n\t\tint w;\n\t};\n};"),
        "{h}"
    );
    assert!(h.contains("enum {\n\tTASK_COMM_LEN = 16,\n};"), "{h}");
    assert_eq!(h.matches("RED = 1").count(), 1, "{h}");
}

#[test]
fn bitfields_in_both_encodings() {
    let mut b = BtfBuilder::new();
    let uint = b.int("unsigned int", 4, false);
    let u8_ = b.int("unsigned char", 1, false);
    let mode = b.enum_("mode", 4, false, &[("MODE_A", 0), ("MODE_B", 3)]);
    // struct flags { unsigned int a: 3; unsigned int b: 5; enum mode m: 2;
    //                unsigned char c; unsigned int d: 20; };  (d starts a
    // new unit: it does not fit in the rest of the first int)
    b.struct_bitfields(
        "flags",
        8,
        &[
            ("a", uint, 0, 3),
            ("b", uint, 3, 5),
            ("m", mode, 8, 2),
            ("c", u8_, 16, 0),
            ("d", uint, 32, 20),
        ],
    );
    // A gap between bitfields that C would close: explicit padding.
    b.struct_bitfields("gap", 4, &[("x", uint, 0, 2), ("y", uint, 13, 3)]);
    // Legacy encoding: the width is in the INT (pahole before kind_flag).
    let narrow = b.int_full(
        "unsigned int",
        Int {
            size: 4,
            signed: false,
            is_char: false,
            is_bool: false,
            offset: 0,
            bits: 4,
        },
    );
    b.struct_("legacy", 4, &[("lo", narrow, 0), ("hi", narrow, 4)]);
    let h = roundtrip(&b, "_Static_assert(OFF(struct flags, c) == 2, \"\");");
    assert!(
        h.contains("struct flags {\n\tunsigned int a: 3;\n\tunsigned int b: 5;\n\tenum mode m: 2;\n\tunsigned char c;\n\tunsigned int d: 20;\n};"),
        "{h}"
    );
    assert!(
        h.contains("struct gap {\n\tunsigned int x: 2;\n\tunsigned char: 6;\n\tunsigned char: 5;\n\tunsigned int y: 3;\n};"),
        "{h}"
    );
    assert!(
        h.contains("\tunsigned int lo: 4;\n\tunsigned int hi: 4;\n"),
        "{h}"
    );
}

#[test]
fn packed_and_padding_where_offsets_need_them() {
    let mut b = BtfBuilder::new();
    let char_ = b.char_();
    let int = b.int("int", 4, true);
    let long = b.int("long int", 8, true);
    let u16_ = b.int("short unsigned int", 2, false);
    let uint = b.int("unsigned int", 4, false);
    // An int at byte 1: only packed puts it there.
    let ps = b.struct_("packed_s", 5, &[("c", char_, 0), ("x", int, 8)]);
    // A cache-line-aligned member: explicit padding before it and after.
    b.struct_(
        "aligned_s",
        128,
        &[("a", int, 0), ("b", long, 64 * 8), ("c", char_, 72 * 8)],
    );
    // A union larger than its members (an aligned member elsewhere).
    b.union_("big_u", 16, &[("x", int, 0), ("c", char_, 0)]);
    // A union whose size is not a multiple of its alignment.
    b.union_("odd_u", 6, &[("x", int, 0), ("b", char_, 0)]);
    // A bitfield crossing its unit (x86's `__packed` bitfield structs).
    b.struct_bitfields("cross", 3, &[("lo", u16_, 0, 12), ("hi", uint, 12, 12)]);
    // Holding the packed struct: its alignment is 1 in C too, so the
    // holder needs padding, not packing, to put it at 4.
    b.struct_("holder", 12, &[("c", char_, 0), ("p", ps, 32)]);
    // Nothing but size.
    b.struct_("opaque", 16, &[]);
    let h = roundtrip(&b, "");
    for want in [
        "struct packed_s {\n\tchar c;\n\tint x;\n} __attribute__((packed));",
        "struct aligned_s {\n\tint a;\n\tunsigned char __ig_pad1[60];\n\tlong int b;\n\tchar c;\n\tunsigned char __ig_pad2[55];\n};",
        "union big_u {\n\tint x;\n\tchar c;\n\tunsigned char __ig_pad1[16];\n};",
        "union odd_u {\n\tint x;\n\tchar b;\n\tunsigned char __ig_pad1[6];\n} __attribute__((packed));",
        "} __attribute__((packed));\n\nstruct holder {\n\tchar c;\n\tunsigned char __ig_pad1[3];\n\tstruct packed_s p;\n\tunsigned char __ig_pad2[3];\n};",
        "struct opaque {\n\tunsigned char __ig_pad1[16];\n};",
    ] {
        assert!(h.contains(want), "{want:?} missing from:\n{h}");
    }
}

#[test]
fn enums_of_every_width_and_sign() {
    let mut b = BtfBuilder::new();
    b.enum64(
        "big",
        8,
        false,
        &[
            ("BIG_ONE", 1),
            ("BIG_HIGH", 1 << 40),
            ("BIG_MAX", u64::MAX.into()),
        ],
    );
    b.enum64(
        "neg64",
        8,
        true,
        &[("NEG_MIN", i64::MIN.into()), ("NEG_MAX", i64::MAX.into())],
    );
    b.enum_("sig", 4, true, &[("SIG_M1", -1), ("SIG_P1", 1)]);
    b.enum_(
        "uns",
        4,
        false,
        &[("UNS_TOP", u32::MAX.into()), ("UNS_ZERO", 0)],
    );
    // A kernel `__packed` enum: one byte.
    let small = b.enum_("small", 1, false, &[("SMALL_A", 0), ("SMALL_B", 200)]);
    // An 8-byte enum with small values: no C enum is that; uses are u64.
    let wide = b.enum64("wide", 8, false, &[("WIDE_A", 1)]);
    // A declared-only enum (BTF: no values) and its definition.
    let fwd_enum = b.enum_("later", 4, false, &[]);
    b.enum_("later", 4, false, &[("LATER_A", 7)]);
    let char_ = b.char_();
    b.struct_(
        "uses",
        24,
        &[
            ("c", char_, 0),
            ("s", small, 8),
            ("w", wide, 64),
            ("l", fwd_enum, 128),
        ],
    );
    let h = roundtrip(
        &b,
        "_Static_assert(sizeof(enum big) == 8 && BIG_MAX == 0xffffffffffffffffULL, \"\");\n\
         _Static_assert(BIG_HIGH == (1ULL << 40), \"\");\n\
         _Static_assert(NEG_MIN < 0 && NEG_MAX > 0 && sizeof(enum neg64) == 8, \"\");\n\
         _Static_assert(sizeof(enum sig) == 4 && SIG_M1 == -1, \"\");\n\
         _Static_assert(sizeof(enum uns) == 4 && UNS_TOP == 0xffffffffU, \"\");\n\
         _Static_assert(sizeof(enum small) == 1 && SMALL_B == 200, \"\");\n\
         _Static_assert(WIDE_A == 1 && LATER_A == 7, \"\");",
    );
    for want in [
        "\tBIG_MAX = 18446744073709551615ULL,\n",
        "\tBIG_HIGH = 1099511627776LL,\n",
        "\tNEG_MIN = (-9223372036854775807LL - 1),\n",
        "\tSIG_M1 = -1,\n",
        "\tUNS_TOP = 4294967295U,\n",
        "\tSMALL_B = 200,\n} __attribute__((packed));",
        "\tenum small s;\n\tunsigned long long w;\n\tenum later l;\n",
    ] {
        assert!(h.contains(want), "{want:?} missing from:\n{h}");
    }
    assert_eq!(h.matches("enum later {").count(), 1, "{h}");
}

#[test]
fn function_prototypes_and_pointer_declarators() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let char_ = b.char_();
    let cchar = b.const_(char_);
    let pcchar = b.ptr(cchar);
    let cpcchar = b.const_(pcchar);
    let argv = b.ptr(cpcchar); // const char *const *
    let file = b.fwd("file", false);
    let pfile = b.ptr(file);
    // typedef int (*handler_t)(struct file *, const char *const *, ...);
    let proto = b.func_proto(int, &[("f", pfile), ("argv", argv), ("", VOID)]);
    let pproto = b.ptr(proto);
    b.typedef("handler_t", pproto);
    // typedef void cb_t(void);  and  int (*(*pick)(int))[4];
    let void_proto = b.func_proto(VOID, &[]);
    b.typedef("cb_t", void_proto);
    let arr = b.array(int, 4);
    let parr = b.ptr(arr);
    let picker = b.func_proto(parr, &[("", int)]);
    let ppicker = b.ptr(picker);
    let volatile_int = b.volatile(int);
    let vptr = b.ptr(volatile_int);
    let restrict_ptr = b.restrict(vptr);
    let ops = b.struct_(
        "ops",
        24,
        &[
            ("pick", ppicker, 0),
            ("argv", argv, 64),
            ("reg", restrict_ptr, 128),
        ],
    );
    // A function and a variable are not declared; neither is the
    // prototype that only the function uses.
    let fproto = b.func_proto(int, &[("o", ops)]);
    b.func("do_things", fproto, Linkage::Global);
    b.var("a_variable", int);
    let h = roundtrip(
        &b,
        "#define SAME(a, b) __builtin_types_compatible_p(a, b)\n\
         _Static_assert(SAME(handler_t, int (*)(struct file *, const char *const *, ...)), \"\");\n\
         _Static_assert(SAME(cb_t *, void (*)(void)), \"\");\n\
         _Static_assert(SAME(__typeof__(((struct ops *)0)->pick), int (*(*)(int))[4]), \"\");",
    );
    for want in [
        "typedef int (*handler_t)(struct file *, const char *const *, ...);",
        "typedef void cb_t(void);",
        "\tint (*(*pick)(int))[4];\n",
        "\tvolatile int *restrict reg;\n",
    ] {
        assert!(h.contains(want), "{want:?} missing from:\n{h}");
    }
    assert!(!h.contains("do_things") && !h.contains("a_variable"), "{h}");
    assert!(at(&h, "struct file;") < at(&h, "handler_t"), "{h}");
}

#[test]
fn colliding_and_odd_names_are_renamed() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let long = b.int("long int", 8, true);
    b.struct_("dup", 4, &[("x", int, 0)]);
    let dup2 = b.struct_("dup", 8, &[("y", long, 0)]);
    // A union with a struct's name, and a name that is not an identifier.
    b.union_("dup", 4, &[("z", int, 0)]);
    b.struct_("has.dot", 4, &[("a.b", int, 0)]);
    // Enum constants and typedefs share a namespace.
    b.enum_("e1", 4, false, &[("SAME", 1), ("dup_t", 2)]);
    b.enum_("e2", 4, false, &[("SAME", 2)]);
    b.typedef("dup_t", dup2);
    // A forward declaration resolves to its definition; one without a
    // definition of its kind gets a name of its own.
    let fwd = b.fwd("dup", false);
    let pfwd = b.ptr(fwd);
    let ufwd = b.fwd("lonely", true);
    let pufwd = b.ptr(ufwd);
    b.struct_("refs", 16, &[("d", pfwd, 0), ("l", pufwd, 64)]);
    let h = roundtrip(
        &b,
        "_Static_assert(sizeof(dup_t___2) == 8 && SAME___2 == 2 && dup_t == 2, \"\");",
    );
    for want in [
        "struct dup {\n\tint x;\n};",
        "struct dup___2 {\n\tlong int y;\n};",
        "union dup___3 {\n\tint z;\n};",
        "struct has_dot {\n\tint a_b;\n};",
        "\tSAME = 1,\n\tdup_t = 2,\n",
        "\tSAME___2 = 2,\n",
        "typedef struct dup___2 dup_t___2;",
        "\tstruct dup *d;\n\tunion lonely *l;\n",
        "union lonely;",
    ] {
        assert!(h.contains(want), "{want:?} missing from:\n{h}");
    }
}

#[test]
fn tags_are_ignored_and_va_list_is_clangs() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let uint = b.int("unsigned int", 4, false);
    let tagged = b.type_tag("user", int);
    let ptagged = b.ptr(tagged);
    let s = b.struct_("tagged", 8, &[("p", ptagged, 0)]);
    b.decl_tag("some_tag", s, -1);
    b.decl_tag("member_tag", s, 0);
    // x86-64's va_list as BTF has it: __builtin_va_list is
    // struct __va_list_tag[1], 24 bytes; clang's on BPF is 8.
    let void_ptr = b.ptr(VOID);
    let tag = b.struct_(
        "__va_list_tag",
        24,
        &[
            ("gp_offset", uint, 0),
            ("fp_offset", uint, 32),
            ("overflow_arg_area", void_ptr, 64),
            ("reg_save_area", void_ptr, 128),
        ],
    );
    let arr = b.array(tag, 1);
    let builtin = b.typedef("__builtin_va_list", arr);
    let va_list = b.typedef("va_list", builtin);
    let char_ = b.char_();
    let pchar = b.ptr(char_);
    b.struct_("warn_args", 32, &[("fmt", pchar, 0), ("args", va_list, 64)]);
    // A program that includes <stdarg.h> after it still compiles.
    let h = roundtrip(&b, "#include <stdarg.h>");
    assert!(h.contains("struct tagged {\n\tint *p;\n};"), "{h}");
    assert!(!h.contains("user") && !h.contains("some_tag"), "{h}");
    assert!(h.contains("typedef __builtin_va_list va_list;"), "{h}");
    assert!(!h.contains("typedef struct __va_list_tag"), "{h}");
}

/// This machine's kernel BTF through clang and back: every struct and
/// union whose layout needs more than plain C (bitfields, packing,
/// padding), a few that gadgets read, and all they hold come out as they
/// went in. (All of them at once take clang minutes; the offsets of every
/// one are checked by `tests/cli`'s vmlinux test.)
#[test]
fn this_kernels_btf_round_trips_through_clang() {
    let data = std::fs::read("/sys/kernel/btf/vmlinux")
        .expect("this test needs a kernel with BTF (/sys/kernel/btf/vmlinux)");
    let btf = Btf::parse(&data).unwrap();
    let mut picked = 0;
    roundtrip_btf(&btf, "", |w, id| {
        let name = w.btf.name_of(id).unwrap();
        let layout = w.layout(id, 0).unwrap();
        let special = layout.packed
            || layout.slots.iter().any(|s| match s {
                Slot::Member { bits, .. } => *bits > 0,
                Slot::Pad { .. } => true,
            });
        let read = ["task_struct", "mm_struct", "sk_buff", "linux_binprm"].contains(&name);
        picked += usize::from(special || read);
        special || read
    });
    assert!(picked > 300, "only {picked} structs with special layouts");
}
