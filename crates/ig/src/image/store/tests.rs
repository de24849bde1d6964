//! Store tests: format, round trips, garbage collection, corruption,
//! leftovers, concurrency and interrupted writes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::*;
use crate::image::oci::{ANNOTATION_BUILDER_VERSION, ANNOTATION_TITLE};

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn annotations(title: &str) -> Annotations {
    BTreeMap::from([
        (ANNOTATION_TITLE.to_owned(), title.to_owned()),
        (
            ANNOTATION_CREATED.to_owned(),
            "2024-01-02T03:04:05Z".to_owned(),
        ),
        (ANNOTATION_BUILDER_VERSION.to_owned(), "v0.1.0".to_owned()),
    ])
}

fn sample(n: u32) -> GadgetImage {
    GadgetImage {
        config_yaml: format!("name: gadget{n}\n").into_bytes(),
        ebpf_object: format!("\x7fELF object {n}").into_bytes(),
        wasm: Some(format!("\0asm module {n}").into_bytes()),
        annotations: annotations(&format!("gadget {n}")),
    }
}

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("oci-store")).unwrap();
    (dir, store)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn blob_json(store: &Store, digest: &str) -> Value {
    read_json(&store.blob_path(&Digest::parse(digest).unwrap()))
}

fn blob_count(store: &Store) -> usize {
    fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .count()
}

#[test]
fn round_trip() {
    let (_dir, store) = new_store();
    let reference = r("trace_exec");
    let parts = sample(1);
    let entry = store.add_gadget_image(&reference, parts.clone()).unwrap();
    assert_eq!(
        entry.ref_name(),
        Some("ghcr.io/inspektor-gadget/gadget/trace_exec:latest")
    );

    let img = store.resolve(&reference).unwrap();
    assert_eq!(img.reference, reference);
    assert_eq!(img.index_digest, entry.digest);
    assert_ne!(img.manifest_digest, img.index_digest);
    assert_eq!(img.config_yaml, parts.config_yaml);
    assert_eq!(img.ebpf_object.as_deref(), Some(&parts.ebpf_object[..]));
    assert_eq!(img.wasm, parts.wasm);
    assert_eq!(img.btfgen, None);
    assert_eq!(img.annotations, parts.annotations);
    assert_eq!(img.created.as_deref(), Some("2024-01-02T03:04:05Z"));
    assert!(img.skipped.is_empty());
    assert_eq!(img.manifest.layers.len(), 2);
    assert!(store.contains(&reference).unwrap());
}

#[test]
fn on_disk_format_matches_upstream() {
    let (_dir, store) = new_store();
    let parts = sample(1);
    store
        .add_gadget_image(&r("trace_exec:v1"), parts.clone())
        .unwrap();
    let root = store.root();

    assert_eq!(
        fs::read_to_string(root.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert!(root.join("index.json.lock").exists());

    let index_json = read_json(&root.join("index.json"));
    assert_eq!(index_json["schemaVersion"], 2);
    assert_eq!(index_json["mediaType"], MEDIA_TYPE_IMAGE_INDEX);
    let entries = index_json["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["mediaType"], MEDIA_TYPE_IMAGE_INDEX);
    assert_eq!(
        entry["annotations"][ANNOTATION_REF_NAME],
        "ghcr.io/inspektor-gadget/gadget/trace_exec:v1"
    );
    assert_eq!(entry["annotations"][ANNOTATION_TITLE], "gadget 1");

    // The image index.
    let index = blob_json(&store, entry["digest"].as_str().unwrap());
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], MEDIA_TYPE_IMAGE_INDEX);
    assert_eq!(index["annotations"][ANNOTATION_TITLE], "gadget 1");
    assert!(index["annotations"].get(ANNOTATION_REF_NAME).is_none());
    let m_desc = &index["manifests"][0];
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(m_desc["mediaType"], MEDIA_TYPE_IMAGE_MANIFEST);
    assert_eq!(m_desc["platform"]["os"], "linux");
    assert_eq!(m_desc["platform"]["architecture"], oci::host_architecture());
    assert_eq!(
        m_desc["annotations"][ANNOTATION_CREATED],
        "2024-01-02T03:04:05Z"
    );

    // The manifest.
    let manifest = blob_json(&store, m_desc["digest"].as_str().unwrap());
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MEDIA_TYPE_IMAGE_MANIFEST);
    assert_eq!(manifest["artifactType"], "application/vnd.gadget.v1+binary");
    assert_eq!(
        manifest["annotations"][ANNOTATION_BUILDER_VERSION],
        "v0.1.0"
    );
    let config = &manifest["config"];
    assert_eq!(config["mediaType"], "application/vnd.gadget.config.v1+yaml");
    assert_eq!(config["annotations"][ANNOTATION_TITLE], "gadget 1");
    assert_eq!(config["size"], parts.config_yaml.len());
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.gadget.ebpf.program.v1+binary"
    );
    assert_eq!(
        layers[1]["mediaType"],
        "application/vnd.gadget.wasm.program.v1+binary"
    );
    // Upstream puts no annotations on layers.
    assert!(layers[0].get("annotations").is_none());

    // Blobs are named by their content.
    for entry in fs::read_dir(root.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let digest =
            Digest::parse(&format!("sha256:{}", entry.file_name().to_str().unwrap())).unwrap();
        assert!(digest.matches(&fs::read(entry.path()).unwrap()));
    }
    // config, ebpf, wasm, manifest, index.
    assert_eq!(blob_count(&store), 5);
}

#[test]
fn permissions() {
    let (dir, store) = new_store();
    store.add_gadget_image(&r("a"), sample(1)).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(store.root()), 0o700);
    assert_eq!(mode(&store.root().join("blobs")), 0o700);
    let mut files = vec![
        store.root().join("index.json"),
        store.root().join("oci-layout"),
    ];
    for e in fs::read_dir(store.root().join("blobs/sha256")).unwrap() {
        files.push(e.unwrap().path());
    }
    for f in files {
        assert_eq!(mode(&f) & 0o022, 0, "{} is writable by others", f.display());
    }
    drop(dir);
}

#[test]
fn empty_config_uses_the_empty_descriptor() {
    let (_dir, store) = new_store();
    let parts = GadgetImage {
        config_yaml: Vec::new(),
        wasm: None,
        ..sample(2)
    };
    store.add_gadget_image(&r("noconfig"), parts).unwrap();
    let img = store.resolve(&r("noconfig")).unwrap();
    assert!(img.config_yaml.is_empty());
    assert!(img.manifest.config.is_empty_json());
    assert_eq!(img.manifest.config.data.as_deref(), Some("e30="));
    assert_eq!(img.wasm, None);
    // The `{}` blob is stored too, for tools that do not read `data`.
    assert_eq!(
        fs::read(store.blob_path(&img.manifest.config.digest)).unwrap(),
        b"{}"
    );
}

#[test]
fn multi_platform() {
    let (_dir, store) = new_store();
    let wasm = b"\0asm shared".to_vec();
    let platforms = [
        PlatformObjects {
            architecture: "arm64".into(),
            ebpf_object: b"arm object".to_vec(),
            wasm: Some(wasm.clone()),
            btfgen: None,
        },
        PlatformObjects {
            architecture: "amd64".into(),
            ebpf_object: b"x86 object".to_vec(),
            wasm: Some(wasm.clone()),
            btfgen: Some(b"btf tarball".to_vec()),
        },
    ];
    let top = store
        .add_multi_platform_image(&r("multi"), b"name: m\n", &annotations("m"), &platforms)
        .unwrap();
    let index = blob_json(&store, &top.digest.to_string());
    let archs: Vec<_> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"], "sorted like upstream");

    let amd = store.resolve_for_arch(&r("multi"), "amd64").unwrap();
    assert_eq!(amd.ebpf_object.as_deref(), Some(&b"x86 object"[..]));
    assert_eq!(amd.btfgen.as_deref(), Some(&b"btf tarball"[..]));
    let arm = store.resolve_for_arch(&r("multi"), "arm64").unwrap();
    assert_eq!(arm.ebpf_object.as_deref(), Some(&b"arm object"[..]));
    assert_eq!(arm.wasm, Some(wasm));
    assert_eq!(arm.btfgen, None);
    // config, 2 ebpf, shared wasm, btf, 2 manifests, index.
    assert_eq!(blob_count(&store), 8);

    match store.resolve_for_arch(&r("multi"), "s390x") {
        Err(ImageError::NoMatchingPlatform {
            reference,
            architecture,
            available,
        }) => {
            assert_eq!(reference, "ghcr.io/inspektor-gadget/gadget/multi:latest");
            assert_eq!(architecture, "s390x");
            assert_eq!(available, ["amd64", "arm64"]);
        }
        other => panic!("{other:?}"),
    }

    let dup = [platforms[0].clone(), platforms[0].clone()];
    assert!(matches!(
        store.add_multi_platform_image(&r("dup"), b"", &Annotations::new(), &dup),
        Err(ImageError::DuplicatePlatform)
    ));
    assert!(matches!(
        store.add_multi_platform_image(&r("none"), b"", &Annotations::new(), &[]),
        Err(ImageError::NoPlatforms)
    ));
}

#[test]
fn not_found_carries_the_normalized_reference() {
    let (_dir, store) = new_store();
    match store.resolve(&r("missing")) {
        Err(ImageError::NotFound {
            reference,
            store: path,
        }) => {
            assert_eq!(reference, "ghcr.io/inspektor-gadget/gadget/missing:latest");
            assert_eq!(path, store.root());
        }
        other => panic!("{other:?}"),
    }
    assert!(!store.contains(&r("missing")).unwrap());
    assert!(matches!(
        store.remove(&r("missing")),
        Err(ImageError::NotFound { .. })
    ));
    assert!(matches!(
        store.tag(&r("missing"), &r("other")),
        Err(ImageError::NotFound { .. })
    ));
}

#[test]
fn list_tag_remove() {
    let (_dir, store) = new_store();
    store.add_gadget_image(&r("zeta"), sample(1)).unwrap();
    store
        .add_gadget_image(&r("localhost:5000/alpha:v2"), sample(2))
        .unwrap();
    store.add_gadget_image(&r("alpha:v1"), sample(3)).unwrap();

    let list = store.list().unwrap();
    let names: Vec<String> = list.iter().map(|s| s.reference.to_string()).collect();
    assert_eq!(
        names,
        [
            "ghcr.io/inspektor-gadget/gadget/alpha:v1",
            "ghcr.io/inspektor-gadget/gadget/zeta:latest",
            "localhost:5000/alpha:v2",
        ]
    );
    assert_eq!(list[0].repository, "ghcr.io/inspektor-gadget/gadget/alpha");
    assert_eq!(list[0].tag.as_deref(), Some("v1"));
    assert_eq!(list[0].created.as_deref(), Some("2024-01-02T03:04:05Z"));

    // Tag: a second name for the same index.
    let tagged = store.tag(&r("zeta"), &r("myorg/zeta:stable")).unwrap();
    assert_eq!(tagged.digest, list[1].digest);
    assert_eq!(
        store.resolve(&r("myorg/zeta:stable")).unwrap().index_digest,
        list[1].digest
    );
    assert!(matches!(
        store.tag(&r("zeta"), &r(&format!("zeta@{}", list[1].digest))),
        Err(ImageError::TagWithDigest { .. })
    ));
    assert_eq!(store.list().unwrap().len(), 4);

    // Removing one of two names keeps every blob.
    let before = blob_count(&store);
    let removed = store.remove(&r("zeta")).unwrap();
    assert_eq!(removed.digest, list[1].digest);
    assert_eq!(blob_count(&store), before);
    assert!(store.resolve(&r("myorg/zeta:stable")).is_ok());
    assert!(matches!(
        store.resolve(&r("zeta")),
        Err(ImageError::NotFound { .. })
    ));

    // Tagging onto an existing name moves it.
    store
        .tag(&r("alpha:v1"), &r("localhost:5000/alpha:v2"))
        .unwrap();
    assert_eq!(
        store
            .resolve(&r("localhost:5000/alpha:v2"))
            .unwrap()
            .index_digest,
        list[0].digest
    );
    assert_eq!(store.list().unwrap().len(), 3);
}

#[test]
fn remove_collects_garbage() {
    let (_dir, store) = new_store();
    // Two images sharing the wasm blob and the config.
    let a = sample(1);
    let b = GadgetImage {
        ebpf_object: b"other object".to_vec(),
        ..a.clone()
    };
    store.add_gadget_image(&r("a"), a.clone()).unwrap();
    let only_a = blob_count(&store);
    store.add_gadget_image(&r("b"), b.clone()).unwrap();
    // b adds its ebpf object, manifest and index.
    assert_eq!(blob_count(&store), only_a + 3);

    store.remove(&r("b")).unwrap();
    assert_eq!(blob_count(&store), only_a);
    let img = store.resolve(&r("a")).unwrap();
    assert_eq!(img.wasm, a.wasm);

    store.remove(&r("a")).unwrap();
    assert_eq!(blob_count(&store), 0);
    assert!(store.list().unwrap().is_empty());
    let index = read_json(&store.root().join("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 0);
}

#[test]
fn gc_keeps_what_unparsable_or_unnamed_entries_reference() {
    let (_dir, store) = new_store();
    let keep = store.add_gadget_image(&r("keep"), sample(1)).unwrap();
    // Make `keep` reachable only through a raw entry with an extra field
    // that breaks nothing but our parse (a negative size).
    let path = store.root().join("index.json");
    let mut index = read_json(&path);
    index["manifests"][0]["size"] = Value::from(-1);
    fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    store.add_gadget_image(&r("gone"), sample(2)).unwrap();
    store.remove(&r("gone")).unwrap();
    assert!(store.blob_path(&keep.digest).exists());
    assert_eq!(blob_count(&store), 5);
}

/// Every file of the store under `blobs/` and `index.json`, with contents
/// (a directory as `<dir>`): what a refused collection must leave as it
/// was.
fn snapshot(store: &Store) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![store.root().join("blobs")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let key = p.strip_prefix(store.root()).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(key, b"<dir>".to_vec());
                stack.push(p);
            } else {
                out.insert(key, fs::read(&p).unwrap());
            }
        }
    }
    if let Ok(b) = fs::read(store.root().join("index.json")) {
        out.insert("index.json".into(), b);
    }
    out
}

/// Garbage collection that cannot read a manifest an image reaches used
/// to take it for one that references nothing, and deleted the image's
/// config and layers. Now prune and remove refuse, naming the image and
/// the file, and change nothing.
#[test]
fn a_manifest_gc_cannot_read_stops_it_and_changes_nothing() {
    let (_dir, store) = new_store();
    store.add_gadget_image(&r("healthy"), sample(1)).unwrap();
    store.add_gadget_image(&r("other"), sample(2)).unwrap();
    // An orphan prune would delete if it could go on.
    store.add_gadget_image(&r("other"), sample(3)).unwrap();
    let img = store.resolve(&r("healthy")).unwrap();
    let manifest = store.blob_path(&img.manifest_digest);
    let top = store.blob_path(&img.index_digest);
    let good_manifest = fs::read(&manifest).unwrap();
    let good_top = fs::read(&top).unwrap();

    type Break = fn(&Path, &Path);
    let cases: [(&str, Break, &str); 4] = [
        (
            "invalid JSON",
            |m, _| fs::write(m, b"{not json").unwrap(),
            "is corrupt",
        ),
        (
            "valid JSON of another digest",
            |m, _| fs::write(m, b"{}").unwrap(),
            "is corrupt",
        ),
        (
            "a directory",
            |m, _| {
                fs::remove_file(m).unwrap();
                fs::create_dir(m).unwrap();
            },
            "Is a directory",
        ),
        (
            "the image's own index missing",
            |_, t| fs::remove_file(t).unwrap(),
            "is missing",
        ),
    ];
    for (what, break_it, says) in cases {
        break_it(&manifest, &top);
        let before = snapshot(&store);
        let refusals = [
            ("prune", store.prune().map(|_| ())),
            ("prune_leftovers", store.prune_leftovers().map(|_| ())),
            ("remove", store.remove(&r("other")).map(|_| ())),
        ];
        for (op, result) in refusals {
            let e = result.expect_err(&format!("{what}: {op} went on"));
            let text = e.to_string();
            assert!(
                matches!(&e, ImageError::UnknownReferences { image, .. }
                    if image == "ghcr.io/inspektor-gadget/gadget/healthy:latest"),
                "{what}: {op}: {text}"
            );
            assert!(text.contains(says), "{what}: {op}: {text}");
            assert!(text.contains("nothing was removed"), "{text}");
            assert_eq!(snapshot(&store), before, "{what}: {op} changed the store");
        }
        // Put right, everything works again.
        if manifest.is_dir() {
            fs::remove_dir(&manifest).unwrap();
        }
        fs::write(&manifest, &good_manifest).unwrap();
        fs::write(&top, &good_top).unwrap();
        assert!(store.resolve(&r("healthy")).is_ok());
    }
    assert_eq!(store.prune().unwrap(), 5, "the orphans of the retag");
    store.remove(&r("other")).unwrap();
    assert!(store.resolve(&r("healthy")).is_ok());

    // Removing the broken image itself is the way out.
    fs::write(&manifest, b"{not json").unwrap();
    assert!(store.prune().is_err());
    store.remove(&r("healthy")).unwrap();
    assert_eq!(blob_count(&store), 0);
}

/// A missing `index.json` was read as an empty store, after which prune
/// deleted every blob (and opening the store wrote an empty index).
#[test]
fn a_missing_index_over_blobs_is_refused_not_taken_for_empty() {
    let (_dir, store) = new_store();
    store.add_gadget_image(&r("kept"), sample(1)).unwrap();
    let index = store.root().join("index.json");
    fs::remove_file(&index).unwrap();
    let blobs = blob_count(&store);
    let reopened = Store::open(store.root()).unwrap();
    assert!(!index.exists(), "an empty index was written over blobs");
    for (op, result) in [
        ("list", reopened.list().map(|_| ())),
        ("prune", reopened.prune().map(|_| ())),
        ("prune_leftovers", reopened.prune_leftovers().map(|_| ())),
        (
            "add",
            reopened.add_gadget_image(&r("new"), sample(2)).map(|_| ()),
        ),
    ] {
        let e = result.expect_err(op);
        assert!(
            matches!(&e, ImageError::IndexMissing { path, .. } if *path == index),
            "{op}: {e}"
        );
    }
    assert_eq!(blob_count(&reopened), blobs);
    assert!(!index.exists());

    // A store without blobs is simply new.
    let (_d2, fresh) = new_store();
    fs::remove_file(fresh.root().join("index.json")).unwrap();
    assert!(fresh.list().unwrap().is_empty());
    Store::open(fresh.root()).unwrap();
    assert!(fresh.root().join("index.json").exists());
}

#[test]
fn prune_removes_orphans_left_by_retagging() {
    let (_dir, store) = new_store();
    store.add_gadget_image(&r("x"), sample(1)).unwrap();
    let count = blob_count(&store);
    store.add_gadget_image(&r("x"), sample(2)).unwrap();
    let index = read_json(&store.root().join("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "replaced");
    assert!(blob_count(&store) > count);
    assert_eq!(store.prune().unwrap(), 5);
    assert_eq!(blob_count(&store), count);
    assert_eq!(
        store.resolve(&r("x")).unwrap().config_yaml,
        sample(2).config_yaml
    );
}

#[test]
fn corrupt_blob_is_a_digest_mismatch() {
    let (_dir, store) = new_store();
    store.add_gadget_image(&r("c"), sample(1)).unwrap();
    let img = store.resolve(&r("c")).unwrap();
    let ebpf = &img.manifest.layers[0];
    let path = store.blob_path(&ebpf.digest);

    let mut bytes = fs::read(&path).unwrap();
    bytes[3] ^= 0x20;
    fs::write(&path, &bytes).unwrap();
    match store.resolve(&r("c")) {
        Err(ImageError::DigestMismatch {
            digest,
            path: p,
            mismatch: Mismatch::Hash { .. },
        }) => {
            assert_eq!(digest, ebpf.digest);
            assert_eq!(p, path);
        }
        other => panic!("{other:?}"),
    }

    fs::write(&path, &bytes[..4]).unwrap();
    assert!(matches!(
        store.resolve(&r("c")),
        Err(ImageError::DigestMismatch {
            mismatch: Mismatch::Size { .. },
            ..
        })
    ));

    // A corrupt manifest is caught as well.
    fs::write(
        store.blob_path(&img.manifest_digest),
        b"{\"schemaVersion\":2}",
    )
    .unwrap();
    assert!(matches!(
        store.resolve(&r("c")),
        Err(ImageError::DigestMismatch { .. })
    ));

    // Adding the image again repairs it.
    store.add_gadget_image(&r("c"), sample(1)).unwrap();
    assert!(store.resolve(&r("c")).is_ok());

    fs::remove_file(&path).unwrap();
    assert!(matches!(
        store.resolve(&r("c")),
        Err(ImageError::MissingBlob { .. })
    ));
}

#[test]
fn leftovers_do_not_break_list() {
    let (_dir, store) = new_store();
    store.add_gadget_image(&r("good"), sample(1)).unwrap();
    let root = store.root();
    fs::write(root.join("ingest/ig-tmp-123-dead-0"), b"half a blob").unwrap();
    fs::write(root.join("ingest/foreign-temp"), b"x").unwrap();
    fs::write(root.join("blobs/sha256/not-a-digest"), b"x").unwrap();
    fs::write(root.join("stray.json"), b"{").unwrap();

    let path = root.join("index.json");
    let mut index = read_json(&path);
    let good = index["manifests"][0].clone();
    let manifests = index["manifests"].as_array_mut().unwrap();
    manifests.push(serde_json::json!(42));
    manifests.push(serde_json::json!({"mediaType": "x"}));
    manifests.push(serde_json::json!({"mediaType": "x", "digest": "sha256:bad", "size": 1}));
    let mut unnamed = good.clone();
    unnamed["annotations"] = serde_json::json!({});
    manifests.push(unnamed);
    let mut skopeo_style = good.clone();
    skopeo_style["annotations"][ANNOTATION_REF_NAME] = "latest".into();
    manifests.push(skopeo_style);
    let mut cosign = good.clone();
    cosign["annotations"][ANNOTATION_REF_NAME] = format!(
        "ghcr.io/inspektor-gadget/gadget/good:sha256-{}.sig",
        "a".repeat(64)
    )
    .into();
    manifests.push(cosign);
    let mut dangling = good.clone();
    dangling["digest"] = format!("sha256:{}", "b".repeat(64)).into();
    dangling["annotations"][ANNOTATION_REF_NAME] =
        "ghcr.io/inspektor-gadget/gadget/dangling:latest".into();
    manifests.push(dangling);
    fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();

    let list = store.list().unwrap();
    let names: Vec<String> = list.iter().map(|s| s.reference.short()).collect();
    assert_eq!(names, ["dangling:latest", "good:latest"]);
    assert!(store.resolve(&r("good")).is_ok());
    assert!(matches!(
        store.resolve(&r("dangling")),
        Err(ImageError::MissingBlob { .. })
    ));

    // Writes still work and keep the entries they do not understand.
    store.add_gadget_image(&r("new"), sample(2)).unwrap();
    let index = read_json(&path);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 9);
    assert!(root.join("blobs/sha256/not-a-digest").exists());
    store.remove(&r("dangling")).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn interrupted_writes_leave_the_old_content() {
    let (_dir, store) = new_store();
    store.add_gadget_image(&r("old"), sample(1)).unwrap();
    let index_before = fs::read(store.root().join("index.json")).unwrap();

    // What a writer killed mid-way leaves behind: half an index.json and
    // half a blob in ingest/, never at their final paths.
    let stale_index = store.root().join("ingest/ig-tmp-999-1-0");
    let stale_blob = store.root().join("ingest/ig-tmp-999-1-1");
    fs::write(&stale_index, &index_before[..index_before.len() / 2]).unwrap();
    fs::write(&stale_blob, b"\x7fELF trunc").unwrap();
    // A lock left by a dead process is released with it; the file stays.
    assert!(store.root().join("index.json.lock").exists());

    let reopened = Store::open(store.root()).unwrap();
    assert_eq!(reopened.list().unwrap().len(), 1);
    assert_eq!(
        reopened.resolve(&r("old")).unwrap().config_yaml,
        sample(1).config_yaml
    );

    // The next write cleans temp files once they are old enough.
    let old = SystemTime::now() - Duration::from_secs(3600);
    for p in [&stale_index, &stale_blob] {
        fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let fresh = store.root().join("ingest/ig-tmp-999-1-2");
    fs::write(&fresh, b"in progress elsewhere").unwrap();
    reopened.add_gadget_image(&r("new"), sample(2)).unwrap();
    assert!(!stale_index.exists());
    assert!(!stale_blob.exists());
    assert!(
        fresh.exists(),
        "a young temp file may belong to a live writer"
    );
    assert_eq!(reopened.list().unwrap().len(), 2);
}

#[test]
fn concurrent_writers_threads() {
    let (_dir, store) = new_store();
    let root = store.root().to_owned();
    std::thread::scope(|s| {
        for n in 0..8u32 {
            let root = root.clone();
            s.spawn(move || {
                // A Store per thread: each lock is its own open file
                // description, as with separate processes.
                let store = Store::open(&root).unwrap();
                for round in 0..3u32 {
                    let mut parts = sample(n);
                    parts
                        .config_yaml
                        .extend(format!("round: {round}\n").bytes());
                    store.add_gadget_image(&r(&format!("g{n}")), parts).unwrap();
                    store
                        .add_gadget_image(&r(&format!("tmp{n}")), sample(100 + n))
                        .unwrap();
                    store.remove(&r(&format!("tmp{n}"))).unwrap();
                }
            });
        }
    });
    let list = store.list().unwrap();
    let names: Vec<String> = list.iter().map(|s| s.reference.short()).collect();
    let want: Vec<String> = (0..8).map(|n| format!("g{n}:latest")).collect();
    assert_eq!(names, want);
    for n in 0..8u32 {
        let img = store.resolve(&r(&format!("g{n}"))).unwrap();
        assert!(img.config_yaml.ends_with(b"round: 2\n"));
    }
    assert!(fs::read_dir(root.join("ingest")).unwrap().next().is_none());
}

/// Child half of `concurrent_writers_processes`: does nothing unless the
/// parent test set the variables below.
#[test]
fn process_writer_child() {
    let (Ok(root), Ok(id)) = (
        std::env::var("IG_IMAGE_TEST_STORE"),
        std::env::var("IG_IMAGE_TEST_WRITER"),
    ) else {
        return;
    };
    let store = Store::open(root).unwrap();
    for n in 0..4 {
        store
            .add_gadget_image(&r(&format!("p{id}-{n}")), sample(n))
            .unwrap();
    }
}

#[test]
fn concurrent_writers_processes() {
    let (_dir, store) = new_store();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|id| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "image::store::tests::process_writer_child",
                    "--test-threads=1",
                ])
                .env("IG_IMAGE_TEST_STORE", store.root())
                .env("IG_IMAGE_TEST_WRITER", id.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for n in 0..4 {
        store
            .add_gadget_image(&r(&format!("parent-{n}")), sample(n))
            .unwrap();
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(store.list().unwrap().len(), 12);
}

#[test]
fn digest_references_and_prefixes() {
    let (_dir, store) = new_store();
    let a = store.add_gadget_image(&r("a"), sample(1)).unwrap();
    let b = store.add_gadget_image(&r("b"), sample(2)).unwrap();

    let by_digest = r(&format!("a@{}", a.digest));
    assert_eq!(store.resolve(&by_digest).unwrap().index_digest, a.digest);
    // The digest decides, whatever repository it is written under.
    let elsewhere = r(&format!("localhost:5000/x@{}", a.digest));
    assert_eq!(store.resolve(&elsewhere).unwrap().index_digest, a.digest);
    // A tag that moved does not override the digest asked for.
    let pinned = r(&format!("a:latest@{}", b.digest));
    assert_eq!(store.resolve(&pinned).unwrap().index_digest, b.digest);
    // A manifest digest resolves too.
    let m = store.resolve(&r("a")).unwrap().manifest_digest;
    assert_eq!(
        store
            .resolve(&r(&format!("a@{m}")))
            .unwrap()
            .manifest_digest,
        m
    );

    assert_eq!(store.find("a").unwrap(), r("a"));
    assert_eq!(store.find(&a.digest.hex()[..12]).unwrap(), r("a"));
    assert_eq!(
        store
            .find(&format!("sha256:{}", &b.digest.hex()[..8]))
            .unwrap(),
        r("b")
    );
    assert!(matches!(store.find("c"), Err(ImageError::NotFound { .. })));
    assert!(matches!(
        store.find("Bad Ref"),
        Err(ImageError::Reference(_))
    ));
    // Two images whose digests share the empty prefix are ambiguous.
    let (ha, hb) = (a.digest.hex(), b.digest.hex());
    let common: String = ha
        .chars()
        .zip(hb.chars())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect();
    if !common.is_empty() {
        assert!(matches!(
            store.find(&common),
            Err(ImageError::AmbiguousDigest { .. })
        ));
    }

    // remove by name@digest removes the tags of that repository.
    store.remove(&by_digest).unwrap();
    assert!(!store.contains(&r("a")).unwrap());
    assert!(store.contains(&r("b")).unwrap());
}

/// Writes a hand-made image (as another tool would) through `import`.
fn import_raw(store: &Store, name: &str, manifest: Value, blobs: Vec<Vec<u8>>) -> Descriptor {
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let top = Descriptor::for_bytes(MEDIA_TYPE_IMAGE_MANIFEST, &bytes);
    let mut all = blobs;
    all.push(bytes);
    store
        .import(&r(name), &top, all, crate::image::trust::Origin::Pulled)
        .unwrap()
}

fn layer(media_type: &str, bytes: &[u8]) -> Value {
    serde_json::to_value(Descriptor::for_bytes(media_type, bytes)).unwrap()
}

#[test]
fn plain_manifest_without_media_type_and_unknown_layers() {
    let (_dir, store) = new_store();
    let config = b"name: raw\n".to_vec();
    let ebpf = b"\x7fELF raw".to_vec();
    let extra = b"something new".to_vec();
    // No mediaType in the body, as upstream writes it.
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "artifactType": ARTIFACT_TYPE_GADGET,
        "config": layer(MEDIA_TYPE_GADGET_CONFIG, &config),
        "layers": [layer(MEDIA_TYPE_GADGET_EBPF, &ebpf), layer("application/x-future", &extra)],
        "annotations": {ANNOTATION_CREATED: "2020-01-01T00:00:00Z"},
    });
    let top = import_raw(
        &store,
        "raw",
        manifest,
        vec![config.clone(), ebpf.clone(), extra],
    );
    let img = store.resolve(&r("raw")).unwrap();
    assert_eq!(img.index_digest, top.digest);
    assert_eq!(img.manifest_digest, top.digest);
    assert_eq!(img.manifest.media_type, None);
    assert_eq!(img.config_yaml, config);
    assert_eq!(img.ebpf_object, Some(ebpf.clone()));
    assert_eq!(img.created.as_deref(), Some("2020-01-01T00:00:00Z"));
    assert_eq!(img.skipped.len(), 1);
    assert_eq!(img.skipped[0].media_type, "application/x-future");
    assert_eq!(
        store.list().unwrap()[0].created.as_deref(),
        Some("2020-01-01T00:00:00Z")
    );

    // Two eBPF layers are refused.
    let dup = serde_json::json!({
        "schemaVersion": 2,
        "config": layer(MEDIA_TYPE_GADGET_CONFIG, &config),
        "layers": [layer(MEDIA_TYPE_GADGET_EBPF, &ebpf), layer(MEDIA_TYPE_GADGET_EBPF, &ebpf)],
    });
    import_raw(&store, "dup", dup, vec![]);
    assert!(matches!(
        store.resolve(&r("dup")),
        Err(ImageError::DuplicateLayer { .. })
    ));

    // A container image is not a gadget.
    let foreign = serde_json::json!({
        "schemaVersion": 2,
        "config": layer("application/vnd.oci.image.config.v1+json", b"{}"),
        "layers": [],
    });
    import_raw(&store, "nginx", foreign, vec![b"{}".to_vec()]);
    assert!(matches!(
        store.resolve(&r("nginx")),
        Err(ImageError::UnsupportedMediaType { what: "config", .. })
    ));
}

#[test]
fn import_checks_the_closure() {
    let (_dir, store) = new_store();
    let ebpf = b"obj".to_vec();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "config": serde_json::to_value(Descriptor::empty_json()).unwrap(),
        "layers": [layer(MEDIA_TYPE_GADGET_EBPF, &ebpf)],
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let top = Descriptor::for_bytes(MEDIA_TYPE_IMAGE_MANIFEST, &bytes);
    // Neither the layer nor the empty config blob is supplied.
    let err = store
        .import(
            &r("partial"),
            &top,
            vec![bytes.clone()],
            crate::image::trust::Origin::Pulled,
        )
        .unwrap_err();
    assert!(matches!(err, ImageError::MissingBlob { .. }), "{err:?}");
    assert!(store.list().unwrap().is_empty(), "index.json untouched");

    store
        .import(
            &r("partial"),
            &top,
            vec![bytes, ebpf.clone(), b"{}".to_vec()],
            crate::image::trust::Origin::Imported,
        )
        .unwrap();
    let (desc, blobs) = store.image_blobs(&r("partial")).unwrap();
    assert_eq!(desc.digest, top.digest);
    assert_eq!(blobs.len(), 3);
    assert_eq!(blobs[0].descriptor.digest, top.digest);
    assert_eq!(
        store.read_verified(&blobs[2].descriptor).unwrap(),
        blobs[2].bytes
    );
}

#[test]
fn read_only_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Store::open_read_only(dir.path().join("nope")).unwrap();
    assert!(missing.list().unwrap().is_empty());
    assert!(!dir.path().join("nope").exists(), "nothing created");

    let rw = Store::open(dir.path().join("s")).unwrap();
    rw.add_gadget_image(&r("a"), sample(1)).unwrap();
    let ro = Store::open_read_only(rw.root()).unwrap();
    assert_eq!(ro.list().unwrap().len(), 1);
    assert!(ro.resolve(&r("a")).is_ok());
    assert!(matches!(
        ro.add_gadget_image(&r("b"), sample(2)),
        Err(ImageError::ReadOnly { .. })
    ));
    assert!(matches!(
        ro.remove(&r("a")),
        Err(ImageError::ReadOnly { .. })
    ));
    assert!(matches!(
        ro.tag(&r("a"), &r("b")),
        Err(ImageError::ReadOnly { .. })
    ));
}

#[test]
fn layout_version_is_checked() {
    let (_dir, store) = new_store();
    fs::write(
        store.root().join("oci-layout"),
        r#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    assert!(matches!(
        Store::open(store.root()),
        Err(ImageError::UnsupportedLayout { .. })
    ));
    fs::write(store.root().join("oci-layout"), "nonsense").unwrap();
    assert!(matches!(
        Store::open(store.root()),
        Err(ImageError::Json { .. })
    ));
}

#[test]
fn cosign_tags() {
    assert!(is_cosign_tag(&format!("sha256-{}.sig", "a".repeat(64))));
    assert!(is_cosign_tag(&format!("sha256-{}.att", "a".repeat(64))));
    // The OCI 1.1 referrers tag schema.
    assert!(is_cosign_tag(&format!("sha256-{}", "a".repeat(64))));
    assert!(!is_cosign_tag(&format!("sha256-{}", "g".repeat(64))));
    assert!(!is_cosign_tag("sha256-abc.sig"));
    assert!(!is_cosign_tag("latest"));
}

/// The blobs of a two-platform image by digest, its index descriptor, and
/// the digests reachable from the host's manifest.
/// Blobs of a test image by digest, with their descriptors.
type BlobsByDigest = BTreeMap<Digest, (Descriptor, Vec<u8>)>;

fn two_platforms() -> (Descriptor, BlobsByDigest, Vec<Digest>) {
    let host = oci::host_architecture();
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let platforms: Vec<PlatformObjects> = [host, other]
        .iter()
        .map(|a| PlatformObjects {
            architecture: (*a).to_owned(),
            ebpf_object: format!("object for {a}").into_bytes(),
            ..Default::default()
        })
        .collect();
    let (top, blobs) = build_gadget_image(b"name: two\n", &annotations("two"), &platforms).unwrap();
    let mut by_digest = BTreeMap::new();
    let index_bytes = blobs.last().unwrap().clone();
    let TopLevel::Index(index) = oci::parse_top_level(&top.media_type, &index_bytes).unwrap()
    else {
        panic!("not an index")
    };
    let mut host_closure = vec![top.digest.clone()];
    for m in &index.manifests {
        let bytes = blobs.iter().find(|b| m.digest.matches(b)).unwrap().clone();
        let TopLevel::Manifest(manifest) = oci::parse_top_level(&m.media_type, &bytes).unwrap()
        else {
            panic!("not a manifest")
        };
        let mut children = vec![manifest.config.clone()];
        children.extend(manifest.layers.iter().cloned());
        for c in children {
            let b = blobs.iter().find(|b| c.digest.matches(b)).unwrap().clone();
            if m.platform.as_ref().unwrap().architecture == host {
                host_closure.push(c.digest.clone());
            }
            by_digest.insert(c.digest.clone(), (c, b));
        }
        if m.platform.as_ref().unwrap().architecture == host {
            host_closure.push(m.digest.clone());
        }
        by_digest.insert(m.digest.clone(), (m.clone(), bytes));
    }
    by_digest.insert(top.digest.clone(), (top.clone(), index_bytes));
    (top, by_digest, host_closure)
}

/// Blob files of the store (temp files and sessions excluded).
fn stored_digests(store: &Store) -> BTreeSet<String> {
    fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect()
}

fn ingest_entries(store: &Store) -> usize {
    fs::read_dir(store.root().join("ingest")).unwrap().count()
}

#[test]
fn ingest_streams_in_pieces_and_commits_only_the_host_platform() {
    let (_dir, store) = new_store();
    store.add_gadget_image(&r("seed"), sample(1)).unwrap();
    let (top, blobs, host) = two_platforms();
    let mut ingest = store.ingest().unwrap();
    for d in &host {
        let (desc, bytes) = &blobs[d];
        let mut w = ingest.blob(desc).unwrap();
        for chunk in bytes.chunks(3) {
            w.write(chunk).unwrap();
        }
        w.finish().unwrap();
    }
    assert_eq!(ingest.len(), host.len());
    // Nothing is visible before the commit.
    assert!(!store.contains(&r("two:v1")).unwrap());
    ingest
        .commit(&[(r("two:v1"), top.clone())], Origin::Pulled)
        .unwrap();
    assert_eq!(ingest_entries(&store), 0, "the session is gone");

    let img = store.resolve(&r("two:v1")).unwrap();
    assert_eq!(img.index_digest, top.digest, "the index is kept whole");
    assert_eq!(img.origin, Some(Origin::Pulled));
    let host_arch = oci::host_architecture();
    assert_eq!(
        img.ebpf_object.as_deref(),
        Some(format!("object for {host_arch}").as_bytes())
    );
    // Only the host's blobs are there; the other platform is reported.
    let stored = stored_digests(&store);
    for (d, _) in blobs.iter() {
        assert_eq!(
            stored.contains(&d.to_string()),
            host.contains(d),
            "{d} stored: {}",
            stored.contains(&d.to_string())
        );
    }
    let other = if host_arch == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let err = store.image_blobs(&r("two:v1")).unwrap_err();
    assert!(
        matches!(&err, ImageError::IncompletePlatforms { missing, present, .. }
            if *missing == [other] && *present == [host_arch]),
        "{err}"
    );
    let (_, present, absent) = store.image_blobs_present(&r("two:v1")).unwrap();
    assert_eq!(present.len(), host.len());
    assert_eq!(absent.len(), 1);
    let err = store.resolve_for_arch(&r("two:v1"), other).unwrap_err();
    assert!(matches!(err, ImageError::PlatformNotPulled { .. }), "{err}");
    assert!(store.list().unwrap().iter().any(|s| s.digest == top.digest));
    // Removing it collects exactly its blobs.
    store.remove(&r("two:v1")).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    store.resolve(&r("seed")).unwrap();
}

#[test]
fn ingest_refuses_bad_blobs_and_a_failed_session_changes_nothing() {
    let (_dir, store) = new_store();
    store.add_gadget_image(&r("seed"), sample(1)).unwrap();
    let index_before = fs::read(store.root().join("index.json")).unwrap();
    let blobs_before = stored_digests(&store);
    let (top, blobs, host) = two_platforms();
    let mut ingest = store.ingest().unwrap();
    let layer = host
        .iter()
        .map(|d| &blobs[d].0)
        .find(|d| d.media_type == MEDIA_TYPE_GADGET_EBPF)
        .unwrap()
        .clone();
    // Longer than its descriptor: refused at the write that overflows.
    let mut w = ingest.blob(&layer).unwrap();
    w.write(&vec![b'x'; layer.size as usize]).unwrap();
    let err = w.write(b"y").unwrap_err();
    assert!(
        matches!(err, ImageError::Unverified { mismatch: Mismatch::Size { actual, .. }, .. } if actual == layer.size + 1),
        "{err}"
    );
    drop(w);
    // Same size, other content: refused at the end.
    let mut w = ingest.blob(&layer).unwrap();
    w.write(&vec![b'x'; layer.size as usize]).unwrap();
    let err = w.finish().unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Unverified {
                mismatch: Mismatch::Hash { .. },
                ..
            }
        ),
        "{err}"
    );
    // Short.
    let mut w = ingest.blob(&layer).unwrap();
    w.write(b"x").unwrap();
    assert!(w.finish().is_err());
    assert!(!ingest.contains(&layer.digest));
    // A commit without the layer fails on the closure and writes nothing.
    for d in host.iter().filter(|d| **d != layer.digest) {
        let (desc, bytes) = &blobs[d];
        ingest.add(desc, bytes).unwrap();
    }
    let err = ingest
        .commit(&[(r("two:v1"), top.clone())], Origin::Pulled)
        .unwrap_err();
    assert!(matches!(err, ImageError::MissingBlob { .. }), "{err}");
    assert_eq!(
        index_before,
        fs::read(store.root().join("index.json")).unwrap()
    );
    assert_eq!(ingest_entries(&store), 0);
    // Only unreferenced blobs may have been added; prune removes them.
    store.prune().unwrap();
    assert_eq!(blobs_before, stored_digests(&store));

    // A session dropped without a commit leaves nothing either.
    let mut ingest = store.ingest().unwrap();
    let (desc, bytes) = &blobs[&host[0]];
    ingest.add(desc, bytes).unwrap();
    drop(ingest);
    assert_eq!(ingest_entries(&store), 0);
    assert_eq!(blobs_before, stored_digests(&store));
}

#[test]
fn a_live_session_survives_cleanups_and_reuses_stored_blobs() {
    let (_dir, store) = new_store();
    let (top, blobs, host) = two_platforms();
    // The host's layer is already stored (by a previous image).
    let layer = host
        .iter()
        .map(|d| &blobs[d])
        .find(|(d, _)| d.media_type == MEDIA_TYPE_GADGET_EBPF)
        .unwrap()
        .clone();
    let mut first = store.ingest().unwrap();
    first.add(&layer.0, &layer.1).unwrap();

    let mut ingest = store.ingest().unwrap();
    let (desc, bytes) = &blobs[&host[0]];
    ingest.add(desc, bytes).unwrap();
    // A dead session (its process is gone: nobody holds its lock).
    let dead = store.root().join("ingest/ig-tmp-0-dead-0");
    let make_dead = || {
        fs::create_dir_all(&dead).unwrap();
        fs::write(dead.join("lock"), b"").unwrap();
        fs::write(dead.join("blob-1"), b"half a blob").unwrap();
    };
    // Other writers and prune run meanwhile: both remove the dead one.
    make_dead();
    store.add_gadget_image(&r("other"), sample(2)).unwrap();
    assert!(!dead.exists());
    make_dead();
    let report = store.prune_leftovers().unwrap();
    assert_eq!(report.temp_files, 1, "{report:?}");
    assert_eq!(report.bytes, 11, "{report:?}");
    assert!(!dead.exists());
    assert_eq!(ingest_entries(&store), 2, "both live sessions kept");

    first
        .commit(&[(r("layer-holder"), layer.0.clone())], Origin::Built)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(store.blob_path(&layer.0.digest).exists());
    assert!(ingest.reuse(&layer.0).unwrap(), "an intact stored copy");
    // The empty config is always at hand; an absent blob is not.
    assert!(ingest.reuse(&Descriptor::empty_json()).unwrap());
    let (other_desc, _) = blobs
        .iter()
        .find(|(d, _)| !host.contains(d))
        .map(|(_, v)| v)
        .unwrap();
    assert!(!ingest.reuse(other_desc).unwrap());
    // The stored copy disappears before the commit (garbage collection
    // of another process): the session's link keeps the content.
    store.remove(&r("layer-holder")).unwrap();
    assert!(!store.blob_path(&layer.0.digest).exists());
    for d in &host {
        let (desc, bytes) = &blobs[d];
        if !ingest.contains(d) {
            ingest.add(desc, bytes).unwrap();
        }
    }
    ingest.commit(&[(r("two"), top)], Origin::Pulled).unwrap();
    assert_eq!(ingest_entries(&store), 0);
    let img = store.resolve(&r("two")).unwrap();
    assert_eq!(img.ebpf_object.as_deref(), Some(&layer.1[..]));
}

/// What an export or a push streams is checked as it is read: a layer
/// changed (same size, other bytes), grown or cut after the walk
/// verified it ends the read with an error, never in its bytes.
#[test]
fn streamed_blobs_are_checked_as_they_are_read() {
    use std::io::Read as _;
    let (_dir, store) = new_store();
    let name = r("streamed:v1");
    store.add_gadget_image(&name, sample(1)).unwrap();
    let (_, blobs) = store.image_blobs_streamed(&name).unwrap();
    // Layers come without their bytes; documents with them.
    let layer = blobs
        .iter()
        .find(|b| b.descriptor.media_type.contains("ebpf"))
        .unwrap();
    assert!(layer.bytes.is_empty());
    assert!(blobs.iter().any(|b| !b.bytes.is_empty()));
    let desc = layer.descriptor.clone();
    let mut whole = Vec::new();
    store
        .open_blob(&desc)
        .unwrap()
        .read_to_end(&mut whole)
        .unwrap();
    assert_eq!(whole, sample(1).ebpf_object);

    let path = store.blob_path(&desc.digest);
    let mut changed = whole.clone();
    changed[0] ^= 1;
    for bad in [
        changed,
        [whole.as_slice(), b"more"].concat(),
        whole[1..].to_vec(),
    ] {
        fs::write(&path, &bad).unwrap();
        let mut out = Vec::new();
        let e = store
            .open_blob(&desc)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(
            e.to_string().contains("changed since it was verified"),
            "{e}"
        );
        assert!(out.len() as u64 <= desc.size);
    }
}
