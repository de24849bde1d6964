//! One function per fuzz target: feed arbitrary bytes to a parser of
//! untrusted input the way `ig` does, and go on through what `ig` does
//! with the result, so that a parse that "succeeds" into something the
//! next step chokes on is found too. A target must never panic, hang or
//! allocate without bound; returning an error is fine.
//!
//! This file is compiled twice: in the `ig-fuzz` crate (libFuzzer) and,
//! through `#[path]`, in the `reliability` test that replays the committed
//! corpus (`fuzz/corpus/TARGET/`) and the crash regressions on every
//! `cargo test`. It therefore uses only `ig`, `std` and crates `ig`
//! already depends on (`wasmtime`, and `aya-obj`, which the `ig` package
//! names as a dev-dependency for this purpose).

use ig::bpf::compat;
use ig::bpf::contract::{Contract, map_key_value, map_max_entries};
use ig::bpf::object::{ObjectInfo, check_for_aya};
use ig::bpf::schema::schema_from_btf;
use ig::btf::Btf;
use ig::datasource::{Event, FieldKind, Schema, SchemaBuilder, SourceKind, Value, ValueRef};
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
    "filter_expr",
    "reference",
    "wasm",
    "wasm_host",
    "wire",
];

/// Run target `name` on `data`; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "gadget_yaml" => gadget_yaml(data),
        "oci_json" => oci_json(data),
        "object" => object(data),
        "btf" => btf(data),
        "filter" => filter(data),
        "filter_expr" => filter_expr(data),
        "reference" => reference(data),
        "wasm" => wasm(data),
        "wasm_host" => wasm_host(data),
        "wire" => wire(data),
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
    let data = compat::for_aya(data);
    let Ok(info) = ObjectInfo::parse(&data) else {
        // `ig run` stops here too: aya never sees an object we refuse.
        return;
    };
    for s in &info.rodata_symbols {
        let _ = info.rodata_value(&s.name);
    }
    btf_chain(&info.btf);
    // What the eBPF operator checks before anything reaches aya.
    let Ok(btf) = Btf::parse(&info.btf) else {
        return;
    };
    if Contract::discover(&btf).is_err() || check_for_aya(&data, &btf).is_err() {
        return;
    }
    // The CO-RE relocations ig computes itself, against the object's own
    // BTF (as `aya_prepare` relocates against it too).
    let Ok(data) = compat::resolve_core(&data, &btf, Some(&btf)) else {
        return;
    };
    // The `.kconfig` externs, given the values of a made-up kernel (this
    // host's would make findings depend on the machine; the object's own
    // BTF stands for the kernel's).
    let facts = compat::KernelFacts {
        version_code: Ok((6 << 16) + (18 << 8)),
        config: Ok(("fuzz", FUZZ_KERNEL_CONFIG)),
        btf: Some(&btf),
    };
    let Ok(data) = compat::resolve_kconfig(&data, &facts) else {
        return;
    };
    aya_prepare(&data, &info);
}

/// The kernel configuration the `object` target's `.kconfig` externs read:
/// every kind of value (the options of `tests/fixtures/load_kconfig`, whose
/// object is a seed, and some of each type).
const FUZZ_KERNEL_CONFIG: &str = "\
CONFIG_BPF_SYSCALL=y
CONFIG_BPF_JIT=y
CONFIG_PERF_EVENTS=y
CONFIG_MODULES=m
# CONFIG_KPROBES is not set
CONFIG_HZ=250
CONFIG_NEGATIVE=-1
CONFIG_OCTAL=0755
CONFIG_PHYSICAL_START=0x1000000
CONFIG_LOCALVERSION=\"-fuzz\"
CONFIG_CMDLINE=\"a string longer than most arrays that hold it, to be cut\"
";

/// What aya does with the same bytes in `ig run` (`EbpfLoader::load`)
/// before its first system call: its own ELF and BTF parsing
/// (`Object::parse`), the `.rodata` overrides, BTF fix-ups for the
/// kernel's features, CO-RE relocation, map and call relocation. Pure
/// code, no kernel: the relocation target is the object's own BTF (the
/// kernel's would make findings depend on the machine), map descriptors
/// are made-up numbers that are only written into instructions, and the
/// kernel's BTF features alternate between today's and the oldest kernel
/// ig supports, by the input's length.
fn aya_prepare(data: &[u8], info: &ObjectInfo) {
    let Ok(mut obj) = aya_obj::Object::parse(data) else {
        return;
    };
    // ig writes every `.rodata` variable it has a value for; zeros of the
    // symbol's size stand for them (a size beyond a page is not a gadget
    // parameter and would only cost memory).
    let values: Vec<(String, Vec<u8>)> = info
        .rodata_symbols
        .iter()
        .map(|s| {
            let len = usize::try_from(s.size.min(4096)).unwrap_or(0);
            (s.name.clone(), vec![0u8; len])
        })
        .collect();
    let globals = values
        .iter()
        .map(|(n, v)| (n.as_str(), (v.as_slice(), false)))
        .collect();
    if obj.patch_map_data(globals).is_err() {
        return;
    }
    // What aya finds on this kernel (everything), or on the oldest kernel
    // ig runs on (5.8, ring buffers): functions and data sections, but
    // no float, declaration tags, type tags or 64-bit enums to rewrite.
    let new = data.len().is_multiple_of(2);
    let features = aya_obj::btf::BtfFeatures::new(true, true, true, true, new, new, new, new);
    match obj.fixup_and_sanitize_btf(&features) {
        Ok(Some(btf)) => {
            let _ = btf.to_bytes();
        }
        Ok(None) => {}
        Err(_) => return,
    }
    if let Some(target) = obj.btf.clone()
        && obj.relocate_btf(&target).is_err()
    {
        return;
    }
    let maps = std::mem::take(&mut obj.maps);
    let text_sections = obj.functions.keys().map(|(section, _)| *section).collect();
    let relocated = obj.relocate_maps(
        maps.iter()
            .zip(100i32..)
            .map(|((name, map), fd)| (name.as_str(), fd, map)),
        &text_sections,
    );
    if relocated.is_err() || obj.relocate_calls(&text_sections).is_err() {
        return;
    }
    obj.sanitize_functions(&aya_obj::Features::default());
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

/// Bytes of the event a `filter_expr` input carries before its text.
pub const FILTER_EXPR_RAW: usize = 32;

/// A data source with a field of every kind `-E` reads: raw ones (a C
/// string, integers of each width and sign, a float, a boolean, bytes,
/// nested groups) and owned ones (strings, 64-bit numbers), as the eBPF
/// operator and the enrichments make them.
fn filter_expr_schema() -> Schema {
    let mut b = SchemaBuilder::new("fuzz", SourceKind::Single, FILTER_EXPR_RAW as u32);
    let raw = [
        ("proc", FieldKind::Struct, 0, 16, None),
        ("proc.comm", FieldKind::CString, 0, 8, Some("proc")),
        ("proc.pid", FieldKind::U32, 8, 4, Some("proc")),
        ("proc.creds", FieldKind::Struct, 12, 4, Some("proc")),
        ("proc.creds.uid", FieldKind::U32, 12, 4, Some("proc.creds")),
        ("port", FieldKind::U16, 16, 2, None),
        ("delta", FieldKind::I16, 18, 2, None),
        ("u8", FieldKind::U8, 20, 1, None),
        ("i8", FieldKind::I8, 21, 1, None),
        ("ok", FieldKind::Bool, 22, 1, None),
        ("pad", FieldKind::Bytes, 23, 1, None),
        ("ratio", FieldKind::F32, 24, 4, None),
        ("i32", FieldKind::I32, 28, 4, None),
    ];
    let mut ids = Vec::new();
    for (name, kind, offset, size, parent) in raw {
        let parent = parent.and_then(|p| ids.iter().find(|(n, _)| *n == p).map(|(_, id)| *id));
        let id = b
            .add_raw(name.into(), kind, offset, size, parent)
            .expect("a valid fuzz schema");
        ids.push((name, id));
    }
    let dst = b
        .add_owned("dst".into(), FieldKind::Struct, None)
        .expect("a valid fuzz schema");
    b.add_owned("dst.addr".into(), FieldKind::String, Some(dst))
        .expect("a valid fuzz schema");
    for (name, kind) in [
        ("error", FieldKind::String),
        ("ts", FieldKind::U64),
        ("i64", FieldKind::I64),
        ("f64", FieldKind::F64),
    ] {
        b.add_owned(name.into(), kind, None)
            .expect("a valid fuzz schema");
    }
    b.build()
}

/// `-E` text, compiled against a schema with every field kind (the
/// parser, the type checker, constant folding, regular expressions and
/// networks), then evaluated on the event the input's first bytes make:
/// `pick`, then [`FILTER_EXPR_RAW`] bytes of raw event, then the text.
/// An error must display (its caret line); an evaluation must give the
/// same answer twice (the buffers it reuses hold nothing over).
pub fn filter_expr(data: &[u8]) {
    let _ = filter_expr_outcome(data);
}

/// What [`filter_expr`] got to: `None` when the text did not compile (or
/// is not UTF-8), else the evaluation's result.
pub fn filter_expr_outcome(data: &[u8]) -> Option<Result<bool, ig::expr::EvalError>> {
    let (&pick, rest) = data.split_first()?;
    let (raw, text) = rest.split_at(rest.len().min(FILTER_EXPR_RAW));
    let text = std::str::from_utf8(text).ok()?;
    let schema = filter_expr_schema();
    let program = match ig::expr::compile(text, &schema) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return None;
        }
    };
    let mut sample = [0u8; FILTER_EXPR_RAW];
    sample[..raw.len()].copy_from_slice(raw);
    let mut ev = Event::new(&schema);
    ev.set_raw(&sample);
    // Owned values an enrichment could have set, picked by the first
    // byte: addresses of each family, and strings that are none.
    let addrs = [
        "10.1.2.3",
        "::ffff:10.0.0.1",
        "fd00::1",
        "",
        "not an address",
        "1.2.3.4%eth0",
        "é\u{fffd}",
    ];
    let field = |name: &str| {
        schema.field(
            schema
                .field_by_name(name)
                .expect("a field of the fuzz schema"),
        )
    };
    ev.set_str(field("dst.addr"), addrs[usize::from(pick) % addrs.len()]);
    if pick & 0x80 == 0 {
        ev.set_str(field("error"), text.get(..8).unwrap_or(text));
        ev.set_value(field("ts"), Value::U64(u64::MAX - u64::from(pick)));
        ev.set_value(field("i64"), Value::I64(i64::MIN + i64::from(pick)));
        ev.set_value(field("f64"), Value::F64(f64::from(pick) / 3.0));
    }
    let first = program.eval(&schema, &ev);
    if let Err(e) = &first {
        let _ = program.explain(e);
    }
    assert_eq!(
        first,
        program.eval(&schema, &ev),
        "{text:?}: two evaluations differ"
    );
    Some(first)
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

// ------------------------------------------------------------------ WASM

/// Largest module or driver program the WASM targets take (`cargo xtask
/// fuzz` passes the same `-max_len`): gadget modules are this size or less
/// once stripped, and every byte more is compile time.
pub const WASM_MAX_LEN: usize = 64 << 10;

/// A gadget's WASM module as `ig run` hands it to the host: validated,
/// compiled (never through the on-disk cache: deserializing a compiled
/// module is wasmtime's unsafe path, fed only with what ig itself wrote),
/// instantiated against data sources with raw and owned fields, then run
/// through a short pipeline with events, so that `gadgetInit`, the
/// lifecycle calls, `dataSourceCallback` and the packets it emits go
/// through the host functions.
pub fn wasm(data: &[u8]) {
    if data.len() > WASM_MAX_LEN || !wasm_valid(data) {
        return;
    }
    let _ = run_guest(data.to_vec());
}

/// A fixed driver module (see [`driver_module`]) whose program is the
/// input: it calls the host functions of module `ig` with the handles,
/// kinds, pointers and lengths the input chooses, in `gadgetInit`, the
/// lifecycle calls and each `dataSourceCallback`. This reaches the host's
/// own parsing of guest memory (`length << 32 | pointer` buffers, error
/// pointers, handle resolution) far more directly than mutated modules do.
pub fn wasm_host(data: &[u8]) {
    let program = &data[..data.len().min(WASM_MAX_LEN)];
    let module = driver_module(program);
    assert!(wasm_valid(&module), "the driver module does not validate");
    let _ = run_guest(module);
}

/// `wasmtime::Module::validate` with one engine for the whole process:
/// invalid bytes cost a parse, not an engine, a linker and a compile.
fn wasm_valid(data: &[u8]) -> bool {
    static ENGINE: std::sync::OnceLock<wasmtime::Engine> = std::sync::OnceLock::new();
    let engine = ENGINE.get_or_init(wasmtime::Engine::default);
    wasmtime::Module::validate(engine, data).is_ok()
}

/// The gadget around the module: one `params.wasm` parameter, so a guest
/// that reads it (the `wasm_api` fixture does) gets on.
const WASM_GADGET_YAML: &str = "name: fuzz
params:
  wasm:
    greeting:
      key: greeting
      defaultValue: hello
";

/// The data sources the guest finds (the names our fixtures and gadgets
/// look for): `minimal` (raw u32 `value`, raw char[16] `label`, owned
/// `comm` and `count`), `open` (raw char[64] `fname`, owned `ret`) and the
/// array source `snapshot` (raw u64 `id`, owned bytes `blob`).
fn wasm_sources() -> Vec<Box<dyn ig::pipeline::Operator>> {
    use ig::datasource::SchemaBuilder;
    use ig::pipeline::testing::{ArrayProducer, Producer};

    let mut minimal = SchemaBuilder::new("minimal", SourceKind::Single, 20);
    let mut open = SchemaBuilder::new("open", SourceKind::Single, 64);
    let mut snapshot = SchemaBuilder::new("snapshot", SourceKind::Array, 8);
    let added = minimal
        .add_raw("value".into(), FieldKind::U32, 0, 4, None)
        .and(minimal.add_raw("label".into(), FieldKind::CString, 4, 16, None))
        .and(minimal.add_owned("comm".into(), FieldKind::String, None))
        .and(minimal.add_owned("count".into(), FieldKind::U64, None))
        .and(open.add_raw("fname".into(), FieldKind::CString, 0, 64, None))
        .and(open.add_owned("ret".into(), FieldKind::I32, None))
        .and(snapshot.add_raw("id".into(), FieldKind::U64, 0, 8, None))
        .and(snapshot.add_owned("blob".into(), FieldKind::Bytes, None));
    assert!(added.is_ok(), "the fuzz schemas: {added:?}");

    let mut sample = vec![0u8; 20];
    sample[..4].copy_from_slice(&42u32.to_ne_bytes());
    sample[4..10].copy_from_slice(b"getpid");
    let mut path = vec![0u8; 64];
    path[..11].copy_from_slice(b"/etc/passwd");
    // Before the guest (1000) and the other operators, as the eBPF
    // operator is.
    let before = ig::pipeline::priority::EBPF;
    vec![
        Box::new(Producer {
            priority: before,
            schema: minimal,
            samples: vec![sample],
        }),
        Box::new(Producer {
            priority: before,
            schema: open,
            samples: vec![path],
        }),
        Box::new(ArrayProducer {
            priority: before,
            schema: snapshot,
            arrays: vec![vec![
                1u64.to_ne_bytes().to_vec(),
                2u64.to_ne_bytes().to_vec(),
            ]],
        }),
    ]
}

/// Run `module` as `ig run` would: build (instantiates the guest and runs
/// `gadgetInit`), start, tick, drain, tick (emitted packets), finish,
/// flush, stop. Errors are the guest's and fine; a panic or an error the
/// host calls internal (a mismatch between what the guest was told and
/// the pipeline) is a finding. Returns what reached the end of the chain
/// (the replay test checks the harness really gets that far), or the
/// error.
pub fn run_guest(module: Vec<u8>) -> Result<Vec<Vec<String>>, String> {
    use ig::operators::wasm::WasmOperator;
    use ig::params::ParamValues;
    use ig::pipeline::testing::{Collector, Subscribe};
    use ig::pipeline::{Operator, Pipeline, priority};

    let metadata = GadgetMetadata::parse(WASM_GADGET_YAML.as_bytes(), "gadget.yaml");
    let metadata = metadata.unwrap_or_else(|e| panic!("the fuzz gadget.yaml: {e}"));
    // The guest's stderr is discarded: a fuzzed guest writes noise.
    let op = WasmOperator::new(
        "fuzz".into(),
        module,
        &metadata,
        None,
        std::sync::Arc::new(|_: &[u8]| {}),
    );
    let params = ParamValues::resolve(&op.params(), &[])
        .unwrap_or_else(|(name, e)| panic!("the fuzz parameter {name}: {e}"));
    let collector = Collector::default();
    let mut ops = wasm_sources();
    ops.push(Box::new(op));
    ops.push(Box::new(Subscribe {
        name: "collector",
        priority: priority::OUTPUT,
        handler: collector.clone(),
    }));
    let ops: Vec<Box<dyn Operator>> = ops;
    let mut p = Pipeline::build(ops, &params).map_err(not_internal)?;
    p.start().map_err(not_internal)?;
    let ran = (|| {
        wasm_tick(&mut p)?;
        ig::pipeline::testing::drain_all(&mut p)?;
        wasm_tick(&mut p)?;
        let (sources, dispatch) = p.parts();
        for s in sources {
            s.finish(dispatch)?;
        }
        wasm_tick(&mut p)?;
        p.dispatch.flush()?;
        Ok::<(), ig::pipeline::OperatorError>(())
    })();
    let stopped = p.stop();
    ran.map_err(not_internal)?;
    stopped.map_err(not_internal)?;
    Ok(collector.seen.take())
}

fn wasm_tick(p: &mut ig::pipeline::Pipeline) -> Result<(), ig::pipeline::OperatorError> {
    let (sources, dispatch) = p.parts();
    for s in sources {
        s.tick(dispatch)?;
    }
    Ok(())
}

/// The error's text; panics on an error the host should never produce
/// for any guest.
fn not_internal(e: ig::pipeline::OperatorError) -> String {
    use ig::operators::wasm::WasmError;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let mut text = Vec::new();
    while let Some(c) = cause {
        if let Some(w @ WasmError::Mismatch { .. }) = c.downcast_ref::<WasmError>() {
            panic!("the host disagrees with itself: {w}");
        }
        text.push(c.to_string());
        cause = c.source();
    }
    let text = text.join(": ");
    assert!(!text.contains("internal error"), "{text}");
    text
}

/// The host functions the driver module imports, with their WASM
/// signatures (`I` i32, `L` i64) as `src/operators/wasm/` declares them.
/// Opcode `n` of a driver program calls entry `n - 1`.
pub const DRIVER_IMPORTS: &[(&str, &str, Option<char>)] = &[
    ("gadgetLog", "IL", None),
    ("gadgetShouldLog", "I", Some('I')),
    ("newDataSource", "LI", Some('I')),
    ("getDataSource", "L", Some('I')),
    ("dataSourceSubscribe", "IIIL", Some('I')),
    ("dataSourceGetField", "IL", Some('I')),
    ("dataSourceAddField", "ILI", Some('I')),
    ("dataSourceNewPacketSingle", "I", Some('I')),
    ("dataSourceNewPacketArray", "I", Some('I')),
    ("dataSourceEmitAndRelease", "II", Some('I')),
    ("dataSourceRelease", "II", Some('I')),
    ("dataSourceIsReferenced", "I", Some('I')),
    ("dataArrayNew", "I", Some('I')),
    ("dataArrayAppend", "II", Some('I')),
    ("dataArrayRelease", "II", Some('I')),
    ("dataArrayLen", "I", Some('I')),
    ("dataArrayGet", "II", Some('I')),
    ("releaseHandle", "I", Some('I')),
    ("fieldGetScalar", "IIII", Some('L')),
    ("fieldGetBuffer", "IIIL", Some('I')),
    ("fieldSet", "IIIL", Some('I')),
    ("fieldAddTag", "IL", Some('I')),
    ("getParamValue", "LL", Some('I')),
    ("getSyscallName", "IL", Some('I')),
    ("getSyscallID", "L", Some('I')),
    ("getMap", "L", Some('I')),
    ("newMap", "LIIII", Some('I')),
    ("mapLookup", "ILL", Some('I')),
    ("mapUpdate", "ILLL", Some('I')),
    ("mapDelete", "IL", Some('I')),
    ("mapRelease", "I", Some('I')),
    ("newPerfReader", "III", Some('I')),
    ("perfReaderPause", "I", Some('I')),
    ("perfReaderResume", "I", Some('I')),
    ("perfReaderRead", "IL", Some('I')),
    ("perfReaderClose", "I", Some('I')),
    ("setConfig", "LLI", Some('I')),
    ("kallsymsSymbolExists", "L", Some('I')),
    ("getSyscallDeclaration", "LL", Some('I')),
    ("shouldDiscardMntnsID", "L", Some('I')),
    ("dataSourceUnreference", "I", Some('I')),
];

/// Size of one instruction of a driver program.
pub const DRIVER_RECORD: usize = 40;

/// Guest address of the driver's four registers (i32 each), just past the
/// program's page.
pub const DRIVER_REGS: u32 = 64 << 10;

/// The driver: a WASM module whose code is always the same, with `program`
/// as the initial contents of its memory (at address 0). The program is a
/// sequence of [`DRIVER_RECORD`]-byte instructions:
///
/// | bytes | meaning |
/// |---|---|
/// | 0 | opcode: 0 ends the current call, `n` in 1..=[`DRIVER_IMPORTS`]`.len()` calls import `n - 1`, anything else does nothing (room for strings) |
/// | 1 | register (0..=3) the result goes to (an i64 result: its low half); anything else drops it |
/// | 2..4 | u16 LE, 3 bits per i32 argument k: bit `3k` set takes it from register `(bits 3k+1..3k+2)` instead of the slot |
/// | 4..20 | the i32 argument slots, LE |
/// | 24..40 | the i64 argument slots, LE |
///
/// An import takes its i32 arguments from the i32 slots in order and its
/// i64 arguments from the i64 slots in order; a third i64 argument
/// (`mapUpdate`'s flags) is the next unused i32 slot, zero-extended. Registers live at
/// [`DRIVER_REGS`]; `dataSourceCallback` puts its data handle in register 3
/// and its data source handle in register 2. `gadgetInit`, `gadgetPreStart`,
/// `gadgetStart`, `gadgetStop`, `gadgetPostStop` and every callback each
/// run the program from where the previous call stopped (opcode 0) until
/// the next 0 or the end, and return 0.
pub fn driver_module(program: &[u8]) -> Vec<u8> {
    let n = DRIVER_IMPORTS.len() as u32;
    // Types: one per import, then () -> i32, () -> i64,
    // (i64, i32, i32) -> (), () -> ().
    let mut types: Vec<(Vec<u8>, Vec<u8>)> = DRIVER_IMPORTS
        .iter()
        .map(|(_, params, result)| {
            let p = params.chars().map(val_type).collect();
            let r = result.map(val_type).into_iter().collect();
            (p, r)
        })
        .collect();
    let t_phase = types.len() as u32;
    types.push((vec![], vec![I32]));
    let t_version = types.len() as u32;
    types.push((vec![], vec![I64]));
    let t_callback = types.len() as u32;
    types.push((vec![I64, I32, I32], vec![]));
    let t_run = types.len() as u32;
    types.push((vec![], vec![]));

    let mut type_sec = Vec::new();
    leb(&mut type_sec, types.len() as u64);
    for (p, r) in &types {
        type_sec.push(0x60);
        leb(&mut type_sec, p.len() as u64);
        type_sec.extend(p);
        leb(&mut type_sec, r.len() as u64);
        type_sec.extend(r);
    }

    let mut import_sec = Vec::new();
    leb(&mut import_sec, u64::from(n));
    for (i, (name, _, _)) in DRIVER_IMPORTS.iter().enumerate() {
        wasm_name(&mut import_sec, "ig");
        wasm_name(&mut import_sec, name);
        import_sec.push(0x00);
        leb(&mut import_sec, i as u64);
    }

    // Functions n (run), n+1 (phase), n+2 (version), n+3 (callback).
    let (f_run, f_phase, f_version, f_callback) = (n, n + 1, n + 2, n + 3);
    let mut func_sec = Vec::new();
    leb(&mut func_sec, 4);
    for t in [t_run, t_phase, t_version, t_callback] {
        leb(&mut func_sec, u64::from(t));
    }

    // Page 0: the program; page 1: the registers and room for the host to
    // write into. Grows like any guest's memory, up to the host's cap.
    let mut mem_sec = Vec::new();
    leb(&mut mem_sec, 1);
    mem_sec.push(0x00);
    leb(&mut mem_sec, 2);

    // Globals: 0 pc (mut i32), 1 program length (i32).
    let mut global_sec = Vec::new();
    leb(&mut global_sec, 2);
    global_sec.extend([I32, 0x01, 0x41, 0x00, 0x0b]);
    global_sec.extend([I32, 0x00, 0x41]);
    sleb(&mut global_sec, program.len() as i64);
    global_sec.push(0x0b);

    let mut export_sec = Vec::new();
    let exports: &[(&str, u8, u32)] = &[
        ("memory", 0x02, 0),
        ("gadgetAPIVersion", 0x00, f_version),
        ("gadgetInit", 0x00, f_phase),
        ("gadgetPreStart", 0x00, f_phase),
        ("gadgetStart", 0x00, f_phase),
        ("gadgetStop", 0x00, f_phase),
        ("gadgetPostStop", 0x00, f_phase),
        ("dataSourceCallback", 0x00, f_callback),
    ];
    leb(&mut export_sec, exports.len() as u64);
    for (name, kind, idx) in exports {
        wasm_name(&mut export_sec, name);
        export_sec.push(*kind);
        leb(&mut export_sec, u64::from(*idx));
    }

    let mut code_sec = Vec::new();
    leb(&mut code_sec, 4);
    for body in [
        driver_run_body(),
        // phase: run; 0
        vec![0x00, 0x10, f_run as u8, 0x41, 0x00, 0x0b],
        // version: 1
        vec![0x00, 0x42, 0x01, 0x0b],
        driver_callback_body(f_run),
    ] {
        leb(&mut code_sec, body.len() as u64);
        code_sec.extend(body);
    }
    assert!(f_run < 0x80, "one-byte function index");

    let mut data_sec = Vec::new();
    leb(&mut data_sec, 1);
    data_sec.extend([0x00, 0x41, 0x00, 0x0b]);
    leb(&mut data_sec, program.len() as u64);
    data_sec.extend(program);

    let mut m = b"\0asm\x01\0\0\0".to_vec();
    for (id, sec) in [
        (1u8, type_sec),
        (2, import_sec),
        (3, func_sec),
        (5, mem_sec),
        (6, global_sec),
        (7, export_sec),
        (10, code_sec),
        (11, data_sec),
    ] {
        m.push(id);
        leb(&mut m, sec.len() as u64);
        m.extend(sec);
    }
    m
}

const I32: u8 = 0x7f;
const I64: u8 = 0x7e;

fn val_type(c: char) -> u8 {
    if c == 'L' { I64 } else { I32 }
}

fn leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn sleb(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0);
        out.push(if done { b } else { b | 0x80 });
        if done {
            return;
        }
    }
}

fn wasm_name(out: &mut Vec<u8>, s: &str) {
    leb(out, s.len() as u64);
    out.extend(s.as_bytes());
}

/// `dataSourceCallback(cb, ds, data)`: registers 2 and 3 get `ds` and
/// `data`, then the program runs.
fn driver_callback_body(f_run: u32) -> Vec<u8> {
    let mut b = vec![0x00]; // no locals
    for (local, reg) in [(1u8, 2u32), (2, 3)] {
        b.extend([0x41]);
        sleb(&mut b, i64::from(DRIVER_REGS + 4 * reg));
        b.extend([0x20, local, 0x36, 0x00, 0x00]); // i32.store align=0 offset=0
    }
    b.extend([0x10, f_run as u8, 0x0b]);
    b
}

/// The interpreter of [`driver_module`]'s programs.
fn driver_run_body() -> Vec<u8> {
    // Locals: 0 p, 1 sel, 2..=5 a0..a3, 6 res (i32); 7 l0, 8 l1 (i64).
    const P: u8 = 0;
    const SEL: u8 = 1;
    const A0: u8 = 2;
    const RES: u8 = 6;
    const L0: u8 = 7;
    let rec = DRIVER_RECORD as i64;
    let n = DRIVER_IMPORTS.len() as u32;
    let mut b = vec![0x02, 0x07, I32, 0x02, I64];
    let i32c = |b: &mut Vec<u8>, v: i64| {
        b.push(0x41);
        sleb(b, v);
    };
    let mem = |b: &mut Vec<u8>, op: u8, offset: u32| {
        b.extend([op, 0x00]);
        leb(b, u64::from(offset));
    };
    b.extend([0x03, 0x40]); // loop
    // if pc + RECORD > len: return
    b.extend([0x23, 0x00]);
    i32c(&mut b, rec);
    b.extend([0x6a, 0x23, 0x01, 0x4b, 0x04, 0x40, 0x0f, 0x0b]);
    // p = pc; pc += RECORD
    b.extend([0x23, 0x00, 0x21, P, 0x23, 0x00]);
    i32c(&mut b, rec);
    b.extend([0x6a, 0x24, 0x00]);
    // sel = u16 at p+2
    b.extend([0x20, P]);
    mem(&mut b, 0x2f, 2); // i32.load16_u
    b.extend([0x21, SEL]);
    for k in 0..4u8 {
        // if (sel >> 3k) & 1: a_k = regs[(sel >> 3k+1) & 3] else slot k
        b.extend([0x20, SEL]);
        i32c(&mut b, i64::from(3 * k));
        b.extend([0x76, 0x41, 0x01, 0x71]); // shr_u, and 1
        b.extend([0x04, I32]); // if (result i32)
        b.extend([0x20, SEL]);
        i32c(&mut b, i64::from(3 * k + 1));
        b.extend([0x76, 0x41, 0x03, 0x71, 0x41, 0x02, 0x74]); // >>, &3, <<2
        mem(&mut b, 0x28, DRIVER_REGS); // i32.load offset=REGS
        b.push(0x05); // else
        b.extend([0x20, P]);
        mem(&mut b, 0x28, 4 + 4 * u32::from(k));
        b.push(0x0b);
        b.extend([0x21, A0 + k]);
    }
    for k in 0..2u8 {
        b.extend([0x20, P]);
        mem(&mut b, 0x29, 24 + 8 * u32::from(k)); // i64.load
        b.extend([0x21, L0 + k]);
    }
    // block $default; block b_n .. block b_0
    for _ in 0..=n + 1 {
        b.extend([0x02, 0x40]);
    }
    b.extend([0x20, P]);
    mem(&mut b, 0x2d, 0); // i32.load8_u: opcode
    b.push(0x0e); // br_table
    leb(&mut b, u64::from(n) + 1);
    for i in 0..=n {
        leb(&mut b, u64::from(i));
    }
    leb(&mut b, u64::from(n) + 1);
    // Case 0: end of this call.
    b.extend([0x0b, 0x0f]);
    for i in 1..=n {
        b.push(0x0b); // end of b_{i-1}: case i
        let (_, params, result) = DRIVER_IMPORTS[(i - 1) as usize];
        let (mut ni, mut nl) = (0u8, 0u8);
        for c in params.chars() {
            if c == 'L' && nl < 2 {
                b.extend([0x20, L0 + nl]);
                nl += 1;
            } else if c == 'L' {
                b.extend([0x20, A0 + ni, 0xad]); // i64.extend_i32_u
                ni += 1;
            } else {
                b.extend([0x20, A0 + ni]);
                ni += 1;
            }
        }
        b.push(0x10);
        leb(&mut b, u64::from(i - 1));
        match result {
            Some('L') => b.extend([0xa7, 0x21, RES]), // i32.wrap_i64
            Some(_) => b.extend([0x21, RES]),
            None => b.extend([0x41, 0x00, 0x21, RES]),
        }
        // if byte 1 < 4: regs[byte 1] = res
        b.extend([0x20, P]);
        mem(&mut b, 0x2d, 1);
        b.extend([0x22, SEL, 0x41, 0x04, 0x49, 0x04, 0x40]); // tee, lt_u, if
        b.extend([0x20, SEL, 0x41, 0x02, 0x74, 0x20, RES]);
        mem(&mut b, 0x36, DRIVER_REGS); // i32.store
        b.push(0x0b);
        // continue the loop: past the remaining case blocks and $default
        b.push(0x0c);
        leb(&mut b, u64::from(n - i + 1));
    }
    b.push(0x0b); // end $default: unknown opcode, a no-op
    b.extend([0x0c, 0x00]); // br loop
    b.extend([0x0b, 0x0b]); // end loop, end function
    b
}

/// An argument of a driver instruction: a constant or a register.
#[derive(Clone, Copy)]
pub enum Arg {
    Val(u32),
    Reg(u8),
}

/// Writes driver programs ([`driver_module`]) for the seeds: strings
/// first (each in a no-op instruction, addressed from 0), then code.
#[derive(Default)]
pub struct DriverProgram {
    bytes: Vec<u8>,
    code_started: bool,
}

impl DriverProgram {
    /// A string in guest memory, as `length << 32 | pointer`.
    pub fn string(&mut self, s: &str) -> u64 {
        assert!(!self.code_started && s.len() < DRIVER_RECORD);
        let addr = self.bytes.len() as u64 + 1;
        let mut rec = [0u8; DRIVER_RECORD];
        rec[0] = 0xff;
        rec[1..=s.len()].copy_from_slice(s.as_bytes());
        self.bytes.extend(rec);
        (s.len() as u64) << 32 | addr
    }

    /// Call host function `name`; its result goes to register `dest`.
    pub fn call(&mut self, name: &str, dest: Option<u8>, i32s: &[Arg], i64s: &[u64]) {
        self.code_started = true;
        let op = DRIVER_IMPORTS
            .iter()
            .position(|(n, ..)| *n == name)
            .unwrap_or_else(|| panic!("no import {name}"));
        let mut rec = [0u8; DRIVER_RECORD];
        rec[0] = u8::try_from(op + 1).unwrap_or(0xff);
        rec[1] = dest.unwrap_or(0xff);
        let mut sel = 0u16;
        for (k, a) in i32s.iter().enumerate() {
            let v = match *a {
                Arg::Val(v) => v,
                Arg::Reg(r) => {
                    sel |= (1 | u16::from(r & 3) << 1) << (3 * k);
                    0
                }
            };
            rec[4 + 4 * k..8 + 4 * k].copy_from_slice(&v.to_le_bytes());
        }
        rec[2..4].copy_from_slice(&sel.to_le_bytes());
        for (k, v) in i64s.iter().enumerate() {
            rec[24 + 8 * k..32 + 8 * k].copy_from_slice(&v.to_le_bytes());
        }
        self.bytes.extend(rec);
    }

    /// End the current call (`gadgetInit`, a callback...).
    pub fn end(&mut self) {
        self.code_started = true;
        self.bytes.extend([0u8; DRIVER_RECORD]);
    }

    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// A guest buffer in the driver's scratch page (past the registers).
pub fn driver_scratch(offset: u32, len: u32) -> u64 {
    u64::from(len) << 32 | u64::from(DRIVER_REGS + 64 + offset)
}

/// The seed programs of `wasm_host` (`fuzz/corpus/wasm_host/`): the
/// replay test checks the committed files are exactly these.
pub fn driver_seed_programs() -> Vec<(&'static str, Vec<u8>)> {
    use Arg::{Reg, Val};
    const STRING: u32 = 12;
    const U32: u32 = 8;
    const U64: u32 = 9;
    const BYTES: u32 = 14;
    let err_ptr = Val(DRIVER_REGS + 16);
    let mut out = Vec::new();

    // Single events: every field accessor on raw and owned fields, tags,
    // parameters, syscall names, packets emitted and released.
    let mut p = DriverProgram::default();
    let minimal = p.string("minimal");
    let value = p.string("value");
    let label = p.string("label");
    let comm = p.string("comm");
    let extra = p.string("extra");
    let n = p.string("n");
    let tag = p.string("tag");
    let outs = p.string("out");
    let msg = p.string("msg");
    let greeting = p.string("greeting");
    let getpid = p.string("getpid");
    let hello = p.string("hello from the driver");
    // gadgetInit: handles 1 (minimal), 2 value, 3 label, 4 comm, 5 extra,
    // 6 n, 7 out, 8 msg.
    p.call("getDataSource", Some(0), &[], &[minimal]);
    // Subscription types as upstream numbers them: 1 data, 2 array, 3 packet.
    p.call("dataSourceSubscribe", None, &[Reg(0), Val(1), Val(0)], &[7]);
    p.call("dataSourceGetField", None, &[Val(1)], &[value]);
    p.call("dataSourceGetField", None, &[Val(1)], &[label]);
    p.call("dataSourceGetField", None, &[Val(1)], &[comm]);
    p.call("dataSourceAddField", None, &[Val(1), Val(STRING)], &[extra]);
    p.call("dataSourceAddField", None, &[Val(1), Val(U64)], &[n]);
    p.call("fieldAddTag", None, &[Val(5)], &[tag]);
    p.call("newDataSource", None, &[Val(1)], &[outs]);
    p.call("dataSourceAddField", None, &[Val(7), Val(STRING)], &[msg]);
    p.call(
        "getParamValue",
        None,
        &[],
        &[greeting, driver_scratch(0, 32)],
    );
    p.call("getSyscallID", Some(1), &[], &[getpid]);
    p.call("gadgetLog", None, &[Val(3)], &[hello]);
    p.end();
    // gadgetPreStart, gadgetStart.
    p.end();
    p.call("gadgetShouldLog", None, &[Val(1)], &[]);
    p.end();
    // dataSourceCallback of minimal's event (its data handle in r3).
    p.call(
        "fieldGetScalar",
        Some(0),
        &[Val(2), Reg(3), Val(U32), err_ptr],
        &[],
    );
    p.call("fieldSet", None, &[Val(2), Reg(3), Val(U32)], &[84]);
    p.call(
        "fieldGetBuffer",
        None,
        &[Val(3), Reg(3), Val(STRING)],
        &[driver_scratch(32, 16)],
    );
    p.call("fieldSet", None, &[Val(5), Reg(3), Val(STRING)], &[hello]);
    p.call("fieldSet", None, &[Val(6), Reg(3), Val(U64)], &[u64::MAX]);
    p.call("fieldSet", None, &[Val(4), Reg(3), Val(STRING)], &[getpid]);
    p.call(
        "fieldGetBuffer",
        None,
        &[Val(4), Reg(3), Val(STRING)],
        &[driver_scratch(48, 8)],
    );
    p.call("dataSourceNewPacketSingle", Some(1), &[Val(7)], &[]);
    p.call("fieldSet", None, &[Val(8), Reg(1), Val(STRING)], &[hello]);
    p.call("dataSourceEmitAndRelease", None, &[Val(7), Reg(1)], &[]);
    p.call("dataSourceNewPacketSingle", Some(1), &[Val(7)], &[]);
    p.call("dataSourceRelease", None, &[Val(7), Reg(1)], &[]);
    p.call("getSyscallName", None, &[Val(39)], &[driver_scratch(0, 16)]);
    p.call("dataSourceIsReferenced", None, &[Val(7)], &[]);
    p.call("releaseHandle", None, &[Val(6)], &[]);
    p.end();
    // gadgetStop, gadgetPostStop.
    p.call("gadgetLog", None, &[Val(2)], &[hello]);
    p.end();
    p.call("getMap", None, &[], &[minimal]);
    p.end();
    out.push(("fields-and-packets", p.finish()));

    // Arrays: the snapshot's elements read and written, elements added
    // and released, an array packet built and emitted.
    let mut p = DriverProgram::default();
    let snapshot = p.string("snapshot");
    let id = p.string("id");
    let blob = p.string("blob");
    let arr = p.string("arr");
    let x = p.string("x");
    let bytes = p.string("\x01\x02\x03\x00\x7f");
    // Handles 1 snapshot, 2 id, 3 blob, 4 arr, 5 x.
    p.call("getDataSource", Some(0), &[], &[snapshot]);
    p.call("dataSourceSubscribe", None, &[Reg(0), Val(2), Val(0)], &[1]);
    p.call("dataSourceGetField", None, &[Reg(0)], &[id]);
    p.call("dataSourceGetField", None, &[Reg(0)], &[blob]);
    p.call("newDataSource", None, &[Val(2)], &[arr]);
    p.call("dataSourceAddField", None, &[Val(4), Val(U64)], &[x]);
    p.end();
    p.end();
    p.end();
    p.call("dataArrayLen", Some(0), &[Reg(3)], &[]);
    p.call("dataArrayGet", Some(1), &[Reg(3), Val(1)], &[]);
    p.call(
        "fieldGetScalar",
        None,
        &[Val(2), Reg(1), Val(U64), err_ptr],
        &[],
    );
    p.call("fieldSet", None, &[Val(3), Reg(1), Val(BYTES)], &[bytes]);
    p.call(
        "fieldGetBuffer",
        None,
        &[Val(3), Reg(1), Val(BYTES)],
        &[driver_scratch(0, 8)],
    );
    p.call("dataArrayNew", Some(0), &[Reg(3)], &[]);
    p.call("dataArrayAppend", None, &[Reg(3), Reg(0)], &[]);
    p.call("dataArrayNew", Some(0), &[Reg(3)], &[]);
    p.call("dataArrayRelease", None, &[Reg(3), Reg(0)], &[]);
    p.call("dataSourceNewPacketArray", Some(1), &[Val(4)], &[]);
    p.call("dataArrayNew", Some(0), &[Reg(1)], &[]);
    p.call("fieldSet", None, &[Val(5), Reg(0), Val(U64)], &[5]);
    p.call("dataArrayAppend", None, &[Reg(1), Reg(0)], &[]);
    p.call("dataSourceEmitAndRelease", None, &[Val(4), Reg(1)], &[]);
    p.end();
    out.push(("arrays", p.finish()));

    // Misuse: buffers past the end of memory or wrapping around, a zero
    // capacity, stale and wrong-kind handles, set-up calls after
    // gadgetInit, an error pointer outside memory (a trap, last).
    let mut p = DriverProgram::default();
    let minimal = p.string("minimal");
    let label = p.string("label");
    p.call("getDataSource", Some(0), &[], &[minimal]);
    p.call("dataSourceSubscribe", None, &[Reg(0), Val(1), Val(0)], &[0]);
    p.call("dataSourceGetField", None, &[Val(1)], &[label]);
    p.call(
        "getDataSource",
        None,
        &[],
        &[u64::from(u32::MAX) << 32 | 0xffff_fff0],
    );
    p.call("dataSourceAddField", None, &[Val(1), Val(99)], &[label]);
    p.call("dataSourceSubscribe", None, &[Val(1), Val(1), Val(0)], &[0]);
    p.end();
    p.end();
    p.end();
    p.call("fieldGetBuffer", None, &[Val(2), Reg(3), Val(STRING)], &[0]);
    p.call(
        "fieldGetBuffer",
        None,
        &[Val(2), Reg(3), Val(STRING)],
        &[u64::MAX],
    );
    p.call(
        "fieldGetBuffer",
        None,
        &[Val(2), Reg(3), Val(STRING)],
        &[16 << 32 | 0x3_fff8],
    );
    p.call(
        "fieldSet",
        None,
        &[Val(2), Reg(3), Val(STRING)],
        &[u64::MAX],
    );
    p.call("fieldSet", None, &[Val(2), Reg(3), Val(U32)], &[1]);
    p.call("fieldSet", None, &[Val(1), Reg(3), Val(U32)], &[1]);
    p.call("fieldSet", None, &[Val(2), Val(1), Val(U32)], &[1]);
    p.call("newDataSource", None, &[Val(1)], &[label]);
    p.call("dataSourceAddField", None, &[Val(1), Val(STRING)], &[label]);
    p.call("fieldAddTag", None, &[Val(2)], &[label]);
    p.call("dataArrayGet", None, &[Reg(3), Val(u32::MAX)], &[]);
    p.call("releaseHandle", None, &[Reg(3)], &[]);
    p.call("fieldSet", None, &[Val(2), Reg(3), Val(STRING)], &[label]);
    p.call("dataSourceNewPacketSingle", Some(1), &[Val(2)], &[]);
    p.call("dataSourceEmitAndRelease", None, &[Val(1), Val(1)], &[]);
    p.call(
        "getSyscallName",
        None,
        &[Val(u32::MAX)],
        &[driver_scratch(0, 2)],
    );
    p.call(
        "fieldGetScalar",
        None,
        &[Val(2), Val(9), Val(U32), Val(u32::MAX)],
        &[],
    );
    p.end();
    out.push(("misuse", p.finish()));

    // Kernel objects and the other calls upstream's guests make: a map
    // made, written, read and released; a perf event array with an
    // overwritable reader, read empty, paused, resumed, closed; maps of
    // the gadget (none without the eBPF operator); configuration before
    // and after the load; kallsyms, a syscall declaration, the container
    // selection; `minimal` unreferenced (the end of the chain no longer
    // sees it). Then the same functions with stale handles, short and
    // outside buffers. Without privileges the kernel refuses the maps and
    // the calls answer their errors.
    let mut p = DriverProgram::default();
    let minimal = p.string("minimal");
    let scratch_name = p.string("scratch");
    let key = p.string("\x07\x00\x00\x00");
    let value = p.string("\x08\x07\x06\x05\x04\x03\x02\x01");
    let cfg_key = p.string("programs.minimal_getpid.attach_to");
    let cfg_value = p.string("gadget_program_disabled");
    let vfs_read = p.string("vfs_read");
    let openat = p.string("openat");
    let events = p.string("events");
    // gadgetInit: handle 1 minimal.
    p.call("getDataSource", Some(0), &[], &[minimal]);
    p.call("dataSourceSubscribe", None, &[Reg(0), Val(1), Val(0)], &[3]);
    p.call("setConfig", None, &[Val(STRING)], &[cfg_key, cfg_value]);
    p.call("kallsymsSymbolExists", None, &[], &[vfs_read]);
    p.call(
        "getSyscallDeclaration",
        None,
        &[],
        &[openat, driver_scratch(0, 252)],
    );
    p.call("dataSourceUnreference", None, &[Reg(0)], &[]);
    p.end();
    // gadgetPreStart: a map; gadgetStart: a perf reader.
    p.call(
        "newMap",
        Some(1),
        &[Val(1), Val(4), Val(8), Val(4)],
        &[scratch_name],
    );
    p.call("mapUpdate", None, &[Reg(1), Val(0)], &[key, value]);
    p.call("mapLookup", None, &[Reg(1)], &[key, driver_scratch(0, 8)]);
    p.call("mapDelete", None, &[Reg(1)], &[key]);
    p.end();
    p.call(
        "newMap",
        Some(2),
        &[Val(4), Val(4), Val(4), Val(0)],
        &[scratch_name],
    );
    p.call("newPerfReader", Some(0), &[Reg(2), Val(4096), Val(1)], &[]);
    p.call("perfReaderRead", None, &[Reg(0)], &[driver_scratch(0, 64)]);
    p.call("perfReaderPause", None, &[Reg(0)], &[]);
    p.call("perfReaderResume", None, &[Reg(0)], &[]);
    p.call("getMap", None, &[], &[events]);
    p.call("setConfig", None, &[Val(STRING)], &[cfg_key, cfg_value]);
    p.end();
    // dataSourceCallback (r3: data, r2: the source): misuse.
    p.call("shouldDiscardMntnsID", None, &[], &[4_026_531_840]);
    p.call("dataSourceUnreference", None, &[Reg(2)], &[]);
    p.call("mapLookup", None, &[Reg(3)], &[key, driver_scratch(0, 8)]);
    p.call("mapUpdate", None, &[Val(1), Val(8)], &[key, value]);
    p.call(
        "mapLookup",
        None,
        &[Val(1)],
        &[u64::MAX, driver_scratch(0, 2)],
    );
    p.call("perfReaderRead", None, &[Reg(3)], &[driver_scratch(0, 1)]);
    p.call("newPerfReader", None, &[Val(1), Val(u32::MAX), Val(0)], &[]);
    p.call(
        "newMap",
        None,
        &[Val(99), Val(4), Val(4), Val(1)],
        &[u64::MAX],
    );
    p.call("setConfig", None, &[Val(1)], &[u64::MAX, 0]);
    p.call(
        "getSyscallDeclaration",
        None,
        &[],
        &[openat, driver_scratch(0, 8)],
    );
    p.call("kallsymsSymbolExists", None, &[], &[16 << 32 | 0x3_fff8]);
    p.end();
    // gadgetStop: close the reader (r0), release the map (r1) twice.
    p.call("perfReaderClose", None, &[Reg(0)], &[]);
    p.call("mapRelease", None, &[Reg(1)], &[]);
    p.call("mapRelease", None, &[Reg(1)], &[]);
    p.end();
    out.push(("kernel-objects", p.finish()));
    out
}

/// A gRPC client's decoding of what a daemon sends: the run's
/// `GadgetInfo` (the first two bytes give its length, little-endian),
/// then `GadgetData` events decoded against every data source's layout,
/// and each field of the result read as a printer would.
pub fn wire(data: &[u8]) {
    use ig_api::proto::{GadgetData, GadgetDataArray, GadgetInfo};
    use ig_api::wire::Decoder;
    use prost::Message as _;
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (info, events) = rest.split_at(rest.len().min(usize::from(u16::from_le_bytes(*len))));
    let Ok(info) = GadgetInfo::decode(info) else {
        return;
    };
    let decoders: Vec<Decoder> = info
        .data_sources
        .iter()
        .filter_map(|ds| Decoder::new(ds).ok())
        .collect();
    let read_all = |d: &Decoder, ev: &Event| {
        for f in d.schema.fields() {
            let _ = ev.get(f);
        }
    };
    for d in &decoders {
        let mut ev = Event::new(&d.schema);
        if let Ok(gd) = GadgetData::decode(events)
            && let Some(el) = gd.data
            && d.decode(&el, &mut ev).is_ok()
        {
            read_all(d, &ev);
        }
        if let Ok(arr) = GadgetDataArray::decode(events) {
            for el in arr.data_array.iter().take(64) {
                if d.decode(el, &mut ev).is_ok() {
                    read_all(d, &ev);
                }
            }
        }
    }
    for p in &info.params {
        let _ = ig_api::wire::param_spec(p);
    }
    wire_in_place(events);
}

/// The in-place reader (`wire::elements`, `ElementScratch`) against
/// prost on the same bytes: a `GadgetDataArray` prost accepts reads
/// without error and gives the same payloads and unset lists; one prost
/// refuses fails somewhere (in the array or in an element).
fn wire_in_place(bytes: &[u8]) {
    /// An element as read: its payloads and its unset list.
    type Read = (Vec<Vec<u8>>, Vec<u32>);
    use ig_api::proto::GadgetDataArray;
    use ig_api::wire::{ElementScratch, elements};
    use prost::Message as _;
    let mut scratch = ElementScratch::default();
    let mut ours: Result<Vec<Read>, ()> = Ok(Vec::new());
    for el in elements(bytes) {
        let read = el.map_err(drop).and_then(|el| {
            scratch.read(el).map_err(drop)?;
            let payloads = scratch
                .payloads()
                .iter()
                .map(|&(a, b)| el[a..b].to_vec())
                .collect();
            Ok((payloads, scratch.unset().to_vec()))
        });
        match (read, &mut ours) {
            (Ok(e), Ok(v)) => v.push(e),
            _ => ours = Err(()),
        }
    }
    match GadgetDataArray::decode(bytes) {
        Ok(a) => {
            let theirs: Vec<Read> = a
                .data_array
                .into_iter()
                .map(|e| (e.payload, e.unset_payloads))
                .collect();
            assert_eq!(
                ours,
                Ok(theirs),
                "prost reads it, the in-place reader differs"
            );
        }
        Err(e) => assert!(
            ours.is_err(),
            "prost refuses it ({e}), the in-place reader reads it"
        ),
    }
}
