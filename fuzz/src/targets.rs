//! One function per fuzz target: feed arbitrary bytes to a parser of
//! untrusted input the way `ig` does, and go on through what `ig` does
//! with the result, so that a parse that "succeeds" into something the
//! next step chokes on is found too. A target must never panic, hang or
//! allocate without bound; returning an error is fine.
//!
//! This file is compiled twice: in the `ig-fuzz` crate (libFuzzer) and,
//! through `#[path]`, in the `reliability` test that replays the committed
//! corpus (`fuzz/corpus/TARGET/`) and the crash regressions on every
//! `cargo test`. It therefore uses only `ig` and `std`.

use ig::bpf::contract::{Contract, map_key_value, map_max_entries};
use ig::bpf::object::{ObjectInfo, normalize_sections};
use ig::bpf::schema::schema_from_btf;
use ig::btf::Btf;
use ig::datasource::{FieldKind, SourceKind, ValueRef};
use ig::image::oci::{TopLevel, parse_top_level, pick_platform};
use ig::image::reference::Reference;
use ig::metadata::GadgetMetadata;

/// The names `cargo xtask fuzz` knows, in the order it runs them.
pub const NAMES: &[&str] = &[
    "gadget_yaml",
    "oci_json",
    "object",
    "btf",
    "filter",
    "reference",
];

/// Run target `name` on `data`; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "gadget_yaml" => gadget_yaml(data),
        "oci_json" => oci_json(data),
        "object" => object(data),
        "btf" => btf(data),
        "filter" => filter(data),
        "reference" => reference(data),
        _ => return false,
    }
    true
}

/// `gadget.yaml` from an image: parsed, then serialised again as
/// `ig image inspect` does.
pub fn gadget_yaml(data: &[u8]) {
    if let Ok(m) = GadgetMetadata::parse(data, "gadget.yaml") {
        let _ = format!("{m:?}");
    }
}

/// An index or manifest from a registry or an imported archive, under each
/// media type a descriptor may claim for it.
pub fn oci_json(data: &[u8]) {
    for media_type in [
        "",
        ig::image::oci::MEDIA_TYPE_IMAGE_INDEX,
        ig::image::oci::MEDIA_TYPE_IMAGE_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ] {
        match parse_top_level(media_type, data) {
            Ok(TopLevel::Index(index)) => {
                let _ = pick_platform(&index, "amd64");
                let _ = ig::image::oci::architectures(&index);
            }
            Ok(TopLevel::Manifest(m)) => {
                let _ = format!("{m:?}");
            }
            Err(_) => {}
        }
    }
}

/// An eBPF object as `ig run` and `ig image inspect` read it: ELF, its
/// `.BTF`, the gadget markers, then each data source's schema and the
/// maps' BTF definitions.
pub fn object(data: &[u8]) {
    let data = normalize_sections(data);
    let Ok(info) = ObjectInfo::parse(&data) else {
        return;
    };
    for s in &info.rodata_symbols {
        let _ = info.rodata_value(&s.name);
    }
    btf_chain(&info.btf);
}

/// A raw BTF blob (the `.BTF` section alone), through the same queries.
pub fn btf(data: &[u8]) {
    btf_chain(data);
}

fn btf_chain(raw: &[u8]) {
    let Ok(btf) = Btf::parse(raw) else {
        return;
    };
    // Every type through the generic queries: resolving chains, sizes of
    // arrays of structs of arrays... are where depth and cycles hurt.
    for id in 0..btf.type_count().min(4096) {
        let _ = btf.name_of(id);
        let _ = btf.skip_modifiers(id);
        let _ = btf.resolve(id);
        let _ = btf.resolve_through_arrays(id);
        let _ = btf.size_of(id);
        let _ = btf.members(id);
        let _ = btf.is_const_void_ptr(id);
        let _ = btf.datasec_of(id);
    }
    let Ok(contract) = Contract::discover(&btf) else {
        return;
    };
    for t in &contract.tracers {
        let _ = schema_from_btf(&btf, &t.name, &t.struct_name, SourceKind::Single, None);
        let _ = map_max_entries(&btf, &t.map);
        let _ = map_key_value(&btf, &t.map);
    }
    for i in &contract.iters {
        let _ = schema_from_btf(&btf, &i.name, &i.struct_name, SourceKind::Array, None);
    }
    for m in &contract.map_iters {
        let _ = map_key_value(&btf, &m.map);
    }
}

/// `--filter` text, compiled for each field type and tested against a
/// value of that type. The first byte picks the value.
pub fn filter(data: &[u8]) {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let kinds = [
        (FieldKind::CString, ValueRef::Str(b"cat")),
        (FieldKind::String, ValueRef::None),
        (FieldKind::U8, ValueRef::U64(u64::from(pick))),
        (FieldKind::U64, ValueRef::U64(u64::MAX)),
        (FieldKind::I16, ValueRef::I64(-i64::from(pick))),
        (FieldKind::I64, ValueRef::I64(i64::MIN)),
        (FieldKind::F32, ValueRef::F64(f64::NAN)),
        (FieldKind::F64, ValueRef::F64(f64::from(pick))),
        (FieldKind::Bool, ValueRef::Bool(pick & 1 == 1)),
        (FieldKind::Bytes, ValueRef::Bytes(b"")),
        (FieldKind::Struct, ValueRef::None),
    ];
    let (kind, value) = kinds[usize::from(pick) % kinds.len()];
    let _ = ig::operators::filter::check_for_kind(text, kind, value);
}

/// An image reference from the command line or an archive's annotation.
pub fn reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(text) {
        let _ = (r.domain(), r.path(), r.tag(), r.digest(), r.short());
        let _ = r.repository();
        let _ = r.short_repository();
        // What we print must read back as the same reference.
        let shown = r.to_string();
        let again = Reference::parse(&shown)
            .unwrap_or_else(|e| panic!("{text:?} printed as {shown:?}, which fails: {e}"));
        assert_eq!(again.to_string(), shown, "{text:?}");
    }
}
