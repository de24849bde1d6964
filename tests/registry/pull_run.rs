//! `ig run` and `ig image pull` end to end against the real registry, as
//! root (a gadget runs): host-only pulls of a two-platform image, the JSON
//! output of a run that pulls, signatures tried from every stored copy and
//! then the registry, name rules that allow, and a damaged layer refused
//! before anything is loaded. Runs are traced for bpf(2) like `trust.rs`.

use super::trust::{
    build_at, digest_of, openssl_keypair, refused_before_load, runs_and_loads, stored_names,
};
use super::*;

use ig::image::oci::host_architecture;
use ig::image::{PlatformObjects, Reference, Store};

fn other_architecture() -> &'static str {
    if host_architecture() == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

/// The digest of the first layer of `image` in `env`, from inspect.
fn layer_digest(env: &Env, image: &str) -> String {
    let json = env.ok(&["image", "inspect", image, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["manifest"]["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn hex(digest: &str) -> String {
    digest.strip_prefix("sha256:").unwrap_or(digest).to_owned()
}

/// A two-platform image (this machine's real gadget, and a stand-in
/// object for the other architecture), signed and pushed: a pull stores
/// the whole index but only this machine's manifest and blobs; it runs,
/// its signature over the index verifies, inspect says what is missing,
/// export and push refuse it until `--all-platforms` completes it.
#[test]
fn a_pull_fetches_only_this_platform_and_keeps_the_signed_index() {
    let reg = Registry::start();
    let src = Env::new();
    let (a_key, a_pub) = openssl_keypair(src.store.dir.path(), "a", false);
    build_at(&src, "single:v1", 1_000);
    let image = format!("{}/multi/minimal:v1", reg.host());
    let r = Reference::parse(&image).unwrap();
    let (host, other) = (host_architecture(), other_architecture());
    {
        let store = Store::open(src.store.path()).unwrap();
        let single = store
            .resolve(&Reference::parse("single:v1").unwrap())
            .unwrap();
        store
            .add_multi_platform_image(
                &r,
                &single.config_yaml,
                &single.annotations,
                &[
                    PlatformObjects {
                        architecture: host.into(),
                        ebpf_object: single.ebpf_object.clone().unwrap(),
                        ..Default::default()
                    },
                    PlatformObjects {
                        architecture: other.into(),
                        ebpf_object: b"an object for the other architecture".to_vec(),
                        ..Default::default()
                    },
                ],
            )
            .unwrap();
    }
    src.ok(&["image", "sign", &image, "--key", &a_key]);
    src.ok(&["image", "push", &image]);
    let index = digest_of(&src, &image);
    let (host_manifest, other_manifest, other_layer) = {
        let store = Store::open_read_only(src.store.path()).unwrap();
        let h = store.resolve(&r).unwrap();
        let o = store.resolve_for_arch(&r, other).unwrap();
        (
            h.manifest_digest,
            o.manifest_digest,
            o.manifest.layers[0].digest.clone(),
        )
    };
    let host_layer = layer_digest(&src, &image);

    let dst = Env::new();
    let out = dst.ok(&["image", "pull", &image]);
    assert!(out.contains(&index.to_string()), "{out}");
    let blobs = dst.blob_names();
    for want in [index.hex(), host_manifest.hex(), &hex(&host_layer)] {
        assert!(blobs.iter().any(|b| b == want), "{want} in {blobs:?}");
    }
    for absent in [other_manifest.hex(), other_layer.hex()] {
        assert!(!blobs.iter().any(|b| b == absent), "{absent} in {blobs:?}");
    }
    // The index is the registry's, byte for byte, so the digest is too.
    assert_eq!(digest_of(&dst, &image), index);

    let summary = dst.ok(&["image", "inspect", &image]);
    assert!(
        summary.contains(&format!("{other} (not pulled)")),
        "{summary}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&dst.ok(&["image", "inspect", &image, "-o", "json"])).unwrap();
    assert_eq!(json["platformsNotPulled"], serde_json::json!([other]));

    // Runs, verified against the signature of the index.
    runs_and_loads(
        &dst,
        &["run", &image, "--public-keys", &a_pub, "--timeout", "1"],
    );

    // Export and push refuse an index without its manifests, and say how
    // to complete it.
    let tar = dst.store.dir.path().join("partial.tar");
    let err = dst.fails(&["image", "export", &image, tar.to_str().unwrap()]);
    assert!(
        err.contains(&format!(
            "image {image} is incomplete in the store: its platform(s) {other} were not pulled (present: {host})"
        )) && err.contains(&format!("ig image pull --all-platforms {image}")),
        "{err}"
    );
    assert!(!tar.exists());
    let copy = format!("{}/multi/copy:v1", reg.host());
    dst.ok(&["image", "tag", &image, &copy]);
    let err = dst.fails(&["image", "push", &copy]);
    assert!(err.contains("is incomplete in the store"), "{err}");

    // --all-platforms fetches the rest; the image is the same image.
    dst.ok(&["image", "pull", "--all-platforms", &image]);
    let blobs = dst.blob_names();
    for want in [other_manifest.hex(), other_layer.hex()] {
        assert!(blobs.iter().any(|b| b == want), "{want} in {blobs:?}");
    }
    assert_eq!(digest_of(&dst, &image), index);
    dst.ok(&["image", "export", &image, tar.to_str().unwrap()]);
    dst.ok(&["image", "push", &copy]);
    assert!(!dst.ok(&["image", "inspect", &image]).contains("not pulled"));
}

/// `ig run REF -o json` that has to pull, with stderr on a terminal and
/// stdout on a pipe: the progress bars go to the terminal, and what
/// reaches the pipe is JSON, one document per line.
#[test]
fn run_json_on_a_pipe_pulls_with_progress_on_the_terminal() {
    let reg = Registry::start();
    let src = Env::new();
    let image = format!("{}/json/minimal:v1", reg.host());
    src.store.build(&minimal(), &image);
    src.ok(&["image", "push", &image]);

    let env = Env::new();
    let events = env.store.dir.path().join("events.jsonl");
    // The workload calls getpid() every 10 ms while ig runs; no shell
    // metacharacters in these paths.
    let line = format!(
        "{ig} run {image} -o json --verify-image=false --timeout 3 | cat > {out} & \
         python3 -c 'import os, time\nfor _ in range(500): os.getpid(); time.sleep(0.01)'; wait",
        ig = common::ig_bin(),
        out = events.display(),
    );
    let out = output_within(
        Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("IG_STORE", env.store.path())
            .env("REGISTRY_AUTH_FILE", &env.auth),
    );
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{screen} {}", text(&out.stderr));
    assert!(
        screen.contains("pulled") && screen.contains("ebpf"),
        "no progress on the terminal: {screen}"
    );
    let json = std::fs::read_to_string(&events).unwrap();
    assert!(!json.is_empty(), "no events; terminal: {screen}");
    assert!(!json.contains('\x1b'), "escape codes on the pipe: {json}");
    // jq parses every line on its own.
    let jq = output_within(
        Command::new("jq")
            .args(["-c", "-R", "fromjson"])
            .arg(&events),
    );
    assert!(jq.status.success(), "jq: {} in {json}", text(&jq.stderr));
    assert_eq!(text(&jq.stdout).lines().count(), json.lines().count());
    assert!(
        json.lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["value"] == 42)
        }),
        "{json}"
    );
}

/// Every signature the store holds for the digest is tried (here the one
/// under another repository verifies), and when none does, the registry's
/// current signature is fetched, without losing the local ones.
#[test]
fn every_stored_signature_is_tried_then_the_registry() {
    // Local: signed by a under its own name, by b under another name.
    let env = Env::new();
    let dir = env.store.dir.path();
    let (a_key, a_pub) = openssl_keypair(dir, "a", false);
    let (b_key, b_pub) = openssl_keypair(dir, "b", true);
    let (c_key, c_pub) = openssl_keypair(dir, "c", false);
    build_at(&env, "twice:v1", 1_000);
    env.ok(&["image", "sign", "twice:v1", "--key", &a_key]);
    env.ok(&[
        "image",
        "tag",
        "twice:v1",
        "localhost:5000/elsewhere/twice:v1",
    ]);
    env.ok(&[
        "image",
        "sign",
        "localhost:5000/elsewhere/twice:v1",
        "--key",
        &b_key,
    ]);
    for public in [&a_pub, &b_pub] {
        runs_and_loads(
            &env,
            &[
                "run",
                "twice:v1",
                "--verify-image",
                "--public-keys",
                public,
                "--timeout",
                "1",
            ],
        );
    }
    let err = refused_before_load(
        &env,
        &[
            "run",
            "twice:v1",
            "--verify-image",
            "--public-keys",
            &c_pub,
            "--timeout",
            "1",
        ],
    );
    // Both signatures were tried and are named in the refusal.
    assert!(
        err.contains("signature 1:") && err.contains("signature 2:"),
        "{err}"
    );

    // Registry: the store's copy of the signature is stale.
    let reg = Registry::start();
    let src = Env::new();
    let image = format!("{}/resign/minimal:v1", reg.host());
    build_at(&src, &image, 2_000);
    src.ok(&["image", "sign", &image, "--key", &a_key]);
    src.ok(&["image", "push", &image]);
    let dst = Env::new();
    dst.ok(&["image", "pull", &image]);
    // A signature made on this machine, under the registry's name.
    dst.ok(&["image", "sign", &image, "--key", &c_key]);
    // The publisher adds a signature by b.
    src.ok(&["image", "sign", &image, "--key", &b_key]);
    src.ok(&["image", "push", &image]);

    let run = |public: &str, pull: &str| {
        vec![
            "run".to_owned(),
            image.clone(),
            "--pull".into(),
            pull.into(),
            "--public-keys".into(),
            public.into(),
            "--timeout".into(),
            "1".into(),
        ]
    };
    let never_b = run(&b_pub, "never");
    let err = refused_before_load(&dst, &strs(&never_b));
    assert!(err.contains("failed signature verification"), "{err}");
    // Not verified from the store: the registry is asked.
    runs_and_loads(&dst, &strs(&run(&b_pub, "missing")));
    // Now stored, and the local signature by c was kept.
    runs_and_loads(&dst, &strs(&never_b));
    runs_and_loads(&dst, &strs(&run(&c_pub, "never")));
    assert_eq!(
        stored_names(&dst)
            .iter()
            .filter(|n| n.ends_with(".sig"))
            .count(),
        1
    );
}

/// Name and prefix rules of `--allowed-gadgets` let a pulled image run.
#[test]
fn allowed_gadgets_name_rules_allow_a_pulled_image() {
    let reg = Registry::start();
    let src = Env::new();
    let image = format!("{}/allowed/minimal:v1", reg.host());
    src.store.build(&minimal(), &image);
    src.ok(&["image", "push", &image]);
    let dst = Env::new();
    runs_and_loads(
        &dst,
        &[
            "run",
            &image,
            "--allowed-gadgets",
            &format!("trace_exec,{}/allowed/minimal", reg.host()),
            "--verify-image=false",
            "--timeout",
            "1",
        ],
    );
    runs_and_loads(
        &dst,
        &[
            "run",
            &image,
            "--pull",
            "always",
            "--allowed-gadgets",
            &format!("{}/allow*", reg.host()),
            "--verify-image=false",
            "--timeout",
            "1",
        ],
    );
}

/// A layer modified in the registry (same size, other bytes) is refused
/// at pull under --verify-image with a digest error, and one modified in
/// the store at run: nothing is stored, nothing is loaded.
#[test]
fn a_modified_layer_is_refused_before_anything_is_loaded() {
    let reg = Registry::start();
    let src = Env::new();
    let (a_key, a_pub) = openssl_keypair(src.store.dir.path(), "a", false);
    let image = format!("{}/modified/minimal:v1", reg.host());
    let repo = format!("{}/modified/minimal", reg.host());
    build_at(&src, &image, 1_000);
    src.ok(&["image", "sign", &image, "--key", &a_key]);
    src.ok(&["image", "push", &image]);
    let layer = layer_digest(&src, &image);

    // Modified in the store after a good pull.
    let pulled = Env::new();
    pulled.ok(&["image", "pull", &image]);
    let stored = pulled.store.path().join("blobs/sha256").join(hex(&layer));
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();
    let err = refused_before_load(
        &pulled,
        &[
            "run",
            &image,
            "--pull",
            "never",
            "--verify-image",
            "--public-keys",
            &a_pub,
            "--timeout",
            "1",
        ],
    );
    assert!(
        err.contains(&format!("blob {layer}")) && err.contains("is corrupt: content hashes to"),
        "{err}"
    );

    // Modified in the registry.
    let file = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let dst = Env::new();
    let err = refused_before_load(
        &dst,
        &[
            "run",
            &image,
            "--verify-image",
            "--public-keys",
            &a_pub,
            "--timeout",
            "1",
        ],
    );
    assert!(
        err.contains(&format!("blob {layer} of {image} failed verification"))
            && err.contains("content hashes to"),
        "{err}"
    );
    assert_eq!(dst.listed_digest(&repo), None);
    assert_eq!(dst.blob_names(), Vec::<String>::new());
}
