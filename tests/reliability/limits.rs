//! Sizes: what `ig image build` writes, every reader can read back
//! (`image::limits`), and objects whose parsing by aya would take memory
//! out of proportion are refused before aya sees them (issue 33, items 3
//! and 7).

use std::path::Path;

use crate::common::{TestStore, archive_with_zero_layer, output_and_peak_rss, text};

/// A gadget of `programs` no-op tracepoint programs, all in one section,
/// and `description` as its gadget.yaml description.
fn gadget(dir: &Path, programs: usize, description: &str) {
    let mut src = String::from(
        "#include <vmlinux.h>\n#include <bpf/bpf_helpers.h>\n#include <gadget/buffer.h>\n\
         #include <gadget/macros.h>\nstruct event { __u32 x; };\n\
         GADGET_TRACER_MAP(events, 4096);\nGADGET_TRACER(many, events, event);\n",
    );
    for i in 0..programs {
        src.push_str(&format!(
            "SEC(\"tracepoint/syscalls/sys_enter_getpid\") int p{i}(void *ctx) {{ return 0; }}\n"
        ));
    }
    src.push_str("char LICENSE[] SEC(\"license\") = \"GPL\";\n");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("program.bpf.c"), src).unwrap();
    std::fs::write(
        dir.join("gadget.yaml"),
        format!("name: many\ndescription: {description}\n"),
    )
    .unwrap();
}

#[test]
fn more_programs_than_the_cap_are_refused_at_build_and_the_cap_builds() {
    let s = TestStore::new();
    let dir = s.dir.path().join("g");
    gadget(&dir, 513, "many programs");
    let out = s.run(&["image", "build", dir.to_str().unwrap(), "-t", "many513"]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "513 programs were built");
    assert!(
        err.contains("the object has 513 programs; at most 512 can be loaded"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    gadget(&dir, 512, "many programs");
    s.build(&dir, "many512");
    let listed = text(&s.run(&["image", "list"]).stdout);
    assert!(
        listed.contains("many512") && !listed.contains("many513"),
        "{listed}"
    );
}

#[test]
fn build_refuses_what_readers_refuse_and_leaves_the_store_as_it_was() {
    let s = TestStore::new();
    let dir = s.dir.path().join("g");
    gadget(&dir, 1, "small");
    s.build(&dir, "small");
    let index = std::fs::read(s.path().join("index.json")).unwrap();
    // Larger than the annotations' cap (64 KiB): it would be copied into
    // every manifest and index.json.
    gadget(&dir, 1, &"x".repeat(100 << 10));
    let out = s.run(&["image", "build", dir.to_str().unwrap(), "-t", "big"]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "a 100 KiB description was built");
    assert!(
        err.contains("the image's annotations would be") && err.contains("at most 65536"),
        "{err}"
    );
    // Larger than any config a reader takes (4 MiB).
    std::fs::write(
        dir.join("gadget.yaml"),
        format!(
            "name: many\ndescription: small\n# {}\n",
            "y".repeat(5 << 20)
        ),
    )
    .unwrap();
    let out = s.run(&["image", "build", dir.to_str().unwrap(), "-t", "big"]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "a 5 MiB gadget.yaml was built");
    assert!(
        err.contains("gadget.yaml is") && err.contains("at most 4194304 are read"),
        "{err}"
    );
    assert_eq!(std::fs::read(s.path().join("index.json")).unwrap(), index);
    let inspect = s.run(&["image", "inspect", "small"]);
    assert!(inspect.status.success(), "{}", text(&inspect.stderr));
}

#[test]
fn an_oversized_index_is_refused_before_it_is_read() {
    let s = TestStore::new();
    let dir = s.dir.path().join("g");
    gadget(&dir, 1, "small");
    s.build(&dir, "small");
    // A sparse 2 GB index.json: reading it whole took 2.1 GB of RSS.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(s.path().join("index.json"))
        .unwrap();
    f.set_len(2 << 30).unwrap();
    let out = s.run(&["image", "list"]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("index.json is 2147483648 bytes; at most 67108864 are read"),
        "{err}"
    );
}

/// Issue 33 item 1: `ig image import` held every blob of the archive in
/// memory (a 1 GiB layer took 2.1 GB), and `ig image export` every blob of
/// the image. Both stream now: a 1 GiB layer goes through each with a
/// peak RSS under 100 MiB. Layers are refused past the documented
/// limit unless `IG_MAX_LAYER_SIZE` raises it.
#[test]
fn a_1_gib_layer_is_imported_and_exported_in_bounded_memory() {
    const GIB: u64 = 1 << 30;
    let s = TestStore::new();
    let tar = s.dir.path().join("big.tar");
    archive_with_zero_layer(&tar, GIB);
    let limit = std::time::Duration::from_secs(600);

    // Past the default limit (256 MiB): refused from the tar header, before
    // a byte of the layer is read.
    let (out, rss) = output_and_peak_rss(
        s.ig().args(["image", "import", tar.to_str().unwrap()]),
        limit,
    );
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("is larger than 268435456 bytes"), "{err}");
    assert!(rss < 100 << 10, "peak RSS {rss} KiB");

    let (out, rss) = output_and_peak_rss(
        s.ig()
            .env("IG_MAX_LAYER_SIZE", "2G")
            .args(["image", "import", tar.to_str().unwrap()]),
        limit,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Imported ghcr.io/inspektor-gadget/gadget/big:v1"),
        "{}",
        text(&out.stdout)
    );
    assert!(rss < 100 << 10, "import: peak RSS {rss} KiB");
    std::fs::remove_file(&tar).unwrap();

    let exported = s.dir.path().join("out.tar");
    let (out, rss) = output_and_peak_rss(
        s.ig().env("IG_MAX_LAYER_SIZE", "2G").args([
            "image",
            "export",
            "big:v1",
            exported.to_str().unwrap(),
        ]),
        limit,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(rss < 100 << 10, "export: peak RSS {rss} KiB");
    assert!(std::fs::metadata(&exported).unwrap().len() > GIB);
    std::fs::remove_file(&exported).unwrap();
    // Without the variable, the store's own reader refuses the layer too:
    // what the limit says holds for every reader.
    let out = s.run(&["image", "export", "big:v1", exported.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("more than the 268435456 bytes allowed"),
        "{err}"
    );
}
