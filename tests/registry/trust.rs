//! Signing and verification: `ig image sign`, `ig run --verify-image
//! --public-keys --allowed-gadgets`, the signature travelling with push,
//! pull, export and import, and interop with openssl both ways (a
//! signature ig wrote verified by `openssl dgst`, and one made by openssl
//! in cosign's layout by hand verified by ig). No cosign binary exists in
//! Debian, so openssl stands in for it: the bytes are the same.
//!
//! These tests run a gadget for a second to show a verified image really
//! runs, so they need root (as tests/kernel). Every refusal is run under
//! `strace -e trace=bpf`, which must show no bpf(2) call at all: nothing
//! reached the kernel. The successful runs are traced too, and must show
//! BPF_PROG_LOAD, so the trace is known to see loads.

use super::*;
use base64::Engine as _;

/// An ECDSA P-256 key pair made by openssl: `(private, public)` paths.
/// `sec1` makes it with `openssl ecparam -genkey` (an `EC PARAMETERS`
/// block and an `EC PRIVATE KEY`), else with `openssl genpkey` (PKCS#8).
pub(super) fn openssl_keypair(dir: &std::path::Path, name: &str, sec1: bool) -> (String, String) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    let (k, p) = (key.to_str().unwrap(), public.to_str().unwrap());
    let made = if sec1 {
        output_within(Command::new("openssl").args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            k,
        ]))
    } else {
        output_within(Command::new("openssl").args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            k,
        ]))
    };
    assert!(made.status.success(), "openssl: {}", text(&made.stderr));
    let out = output_within(Command::new("openssl").args(["pkey", "-in", k, "-pubout", "-out", p]));
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
    (k.to_owned(), p.to_owned())
}

/// `ig image build` of the minimal fixture with a fixed creation time, so
/// that two tags get different digests.
pub(super) fn build_at(env: &Env, tag: &str, epoch: u64) {
    let dir = minimal();
    let out = output_within(
        env.cmd(&["image", "build", dir.to_str().unwrap(), "-t", tag])
            .env("SOURCE_DATE_EPOCH", epoch.to_string()),
    );
    assert!(
        out.status.success(),
        "building {tag}: {}",
        text(&out.stderr)
    );
}

/// `ig ARGS` under `strace -f -e trace=bpf`: the output and the trace.
pub(super) fn traced(env: &Env, args: &[&str]) -> (Output, String) {
    let trace = env.store.dir.path().join(format!("strace-{}", free_port()));
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-e", "trace=bpf", "-o"])
        .arg(&trace)
        .arg(common::ig_bin())
        .args(args)
        .env("IG_STORE", env.store.path())
        .env("REGISTRY_AUTH_FILE", &env.auth);
    let out = output_within(&mut c);
    let log =
        std::fs::read_to_string(&trace).expect("strace wrote its trace (apt-get install strace)");
    (out, log)
}

/// A run that must succeed and load the gadget.
pub(super) fn runs_and_loads(env: &Env, args: &[&str]) {
    let (out, trace) = traced(env, args);
    assert!(
        out.status.success(),
        "ig {args:?} failed:\n{}",
        text(&out.stderr)
    );
    assert!(
        trace.contains("BPF_PROG_LOAD"),
        "no program loaded: {trace}"
    );
}

/// A run that must be refused before any bpf(2) call; returns stderr.
pub(super) fn refused_before_load(env: &Env, args: &[&str]) -> String {
    let (out, trace) = traced(env, args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "ig {args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !trace.contains("bpf("),
        "ig {args:?} made bpf calls before refusing:\n{trace}\n{err}"
    );
    err
}

/// The index digest of a tag in `env`'s store.
pub(super) fn digest_of(env: &Env, tag: &str) -> ig::image::Digest {
    let store = ig::image::Store::open_read_only(env.store.path()).unwrap();
    store
        .resolve(&ig::image::Reference::parse(tag).unwrap())
        .unwrap()
        .index_digest
}

/// The names in `env`'s `index.json`.
pub(super) fn stored_names(env: &Env) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&env.index_json()).unwrap();
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_owned)
        .collect()
}

/// Stores a signature image for `tag` holding one layer, replacing any.
pub(super) fn store_signature(env: &Env, tag: &str, payload: Vec<u8>, signature: String) {
    use ig::image::trust;
    let store = ig::image::Store::open(env.store.path()).unwrap();
    let r = ig::image::Reference::parse(tag).unwrap();
    let d = digest_of(env, tag);
    let img = trust::signature_image(&[trust::SignatureLayer { payload, signature }]);
    store
        .import(
            &trust::signature_reference(&r, &d).unwrap(),
            &img.top,
            img.blobs,
            trust::Origin::Built,
        )
        .unwrap();
}

#[test]
fn sign_then_run_verified_and_every_bad_signature_refused_before_load() {
    let env = Env::new();
    let dir = env.store.dir.path();
    let (a_key, a_pub) = openssl_keypair(dir, "a", false);
    let (_, b_pub) = openssl_keypair(dir, "b", true);
    build_at(&env, "signed:v1", 1_000);
    build_at(&env, "unsigned:v1", 2_000);
    let out = env.ok(&["image", "sign", "signed:v1", "--key", &a_key]);
    let digest = digest_of(&env, "signed:v1");
    assert!(
        out.contains(&format!(
            "Signed ghcr.io/inspektor-gadget/gadget/signed:v1@{digest}"
        )),
        "{out}"
    );
    // The signature tag is stored but not listed as an image.
    assert!(
        stored_names(&env)
            .iter()
            .any(|n| n.ends_with(&format!(":sha256-{}.sig", digest.hex())))
    );
    assert!(!env.ok(&["image", "list"]).contains(".sig"));

    // Verified, with the key given inline next to a key that did not sign.
    let inline = std::fs::read_to_string(&a_pub).unwrap();
    runs_and_loads(
        &env,
        &[
            "run",
            "signed:v1",
            "--verify-image",
            "--public-keys",
            &b_pub,
            "--public-keys",
            &inline,
            "--timeout",
            "1",
        ],
    );

    // Wrong public key.
    let err = refused_before_load(
        &env,
        &[
            "run",
            "signed:v1",
            "--verify-image",
            "--public-keys",
            &b_pub,
            "--timeout",
            "1",
        ],
    );
    assert!(
        err.contains("refusing to run ghcr.io/inspektor-gadget/gadget/signed:v1")
            && err.contains("failed signature verification")
            && err.contains(&format!("does not verify with {b_pub} #1")),
        "{err}"
    );

    // Unsigned.
    let err = refused_before_load(
        &env,
        &[
            "run",
            "unsigned:v1",
            "--verify-image",
            "--public-keys",
            &a_pub,
            "--timeout",
            "1",
        ],
    );
    assert!(
        err.contains("is not signed") && err.contains("hint: sign it with"),
        "{err}"
    );
    // Verification asked for without a key: upstream's built-in key is
    // the default, and it did not sign this image.
    let err = refused_before_load(
        &env,
        &["run", "signed:v1", "--verify-image", "--timeout", "1"],
    );
    assert!(
        err.contains("does not verify with the built-in key of upstream Inspektor Gadget"),
        "{err}"
    );

    // Tampered: a genuine signature by key a of a payload naming another
    // image (the unsigned one), stored as the signature of signed:v1.
    let key =
        ig::image::trust::PrivateKey::from_pem(&std::fs::read_to_string(&a_key).unwrap(), "a")
            .unwrap();
    let other = ig::image::trust::payload(
        "ghcr.io/inspektor-gadget/gadget/signed",
        &digest_of(&env, "unsigned:v1"),
    );
    store_signature(&env, "signed:v1", other.clone(), key.sign(&other));
    let err = refused_before_load(
        &env,
        &[
            "run",
            "signed:v1",
            "--verify-image",
            "--public-keys",
            &a_pub,
            "--timeout",
            "1",
        ],
    );
    assert!(err.contains("signs another image"), "{err}");

    // Tampered: the right payload with the signature of another one.
    let right = ig::image::trust::payload("ghcr.io/inspektor-gadget/gadget/signed", &digest);
    store_signature(&env, "signed:v1", right, key.sign(&other));
    let err = refused_before_load(
        &env,
        &[
            "run",
            "signed:v1",
            "--verify-image",
            "--public-keys",
            &a_pub,
            "--timeout",
            "1",
        ],
    );
    assert!(
        err.contains(&format!("does not verify with {a_pub} #1")),
        "{err}"
    );

    // Built here: not verified unless asked.
    runs_and_loads(&env, &["run", "unsigned:v1", "--timeout", "1"]);
}

#[test]
fn allowed_gadgets_allow_and_refuse_before_load() {
    let env = Env::new();
    build_at(&env, "allowed:v1", 1_000);
    let digest = digest_of(&env, "allowed:v1");
    runs_and_loads(
        &env,
        &[
            "run",
            "allowed:v1",
            "--allowed-gadgets",
            &format!("trace_exec,{digest}"),
            "--timeout",
            "1",
        ],
    );
    runs_and_loads(
        &env,
        &[
            "run",
            "allowed:v1",
            "--allowed-gadgets",
            "ghcr.io/inspektor-gadget/gadget/allow*",
            "--timeout",
            "1",
        ],
    );
    let err = refused_before_load(
        &env,
        &[
            "run",
            "allowed:v1",
            "--allowed-gadgets",
            "trace_exec,allowed:v2,docker.io/*",
            "--timeout",
            "1",
        ],
    );
    // Decided by the name alone, before the image is read.
    assert!(
        err.contains(
            "image ghcr.io/inspektor-gadget/gadget/allowed:v1 is not in --allowed-gadgets (trace_exec, allowed:v2, docker.io/*)"
        ),
        "{err}"
    );
    // A digest rule is decided once the image's digests are known.
    let other = format!("sha256:{}", "0".repeat(64));
    let err = refused_before_load(
        &env,
        &[
            "run",
            "allowed:v1",
            "--allowed-gadgets",
            &format!("trace_exec,{other}"),
            "--timeout",
            "1",
        ],
    );
    assert!(
        err.contains(&format!(
            "ghcr.io/inspektor-gadget/gadget/allowed:v1 ({digest}) is not in --allowed-gadgets (trace_exec, {other})"
        )),
        "{err}"
    );
    let err = env.fails(&[
        "run",
        "allowed:v1",
        "--allowed-gadgets",
        "a*b*",
        "--timeout",
        "1",
    ]);
    assert!(err.contains("`*` may only end an entry"), "{err}");
}

#[test]
fn signature_travels_with_push_and_pull_and_verifies_offline() {
    let reg = Registry::start();
    let src = Env::new();
    let (a_key, a_pub) = openssl_keypair(src.store.dir.path(), "a", false);
    let image = format!("{}/trust/minimal:v1", reg.host());
    build_at(&src, &image, 1_000);
    src.ok(&["image", "sign", &image, "--key", &a_key]);
    let digest = digest_of(&src, &image);
    let sig_tag = format!("sha256-{}.sig", digest.hex());
    let out = src.ok(&["image", "push", &image]);
    assert!(
        out.contains(&format!(
            "Pushed signature {}/trust/minimal:{sig_tag}",
            reg.host()
        )),
        "{out}"
    );

    // The registry has the tag, in cosign's layout (skopeo's view).
    let repo = format!("docker://{}/trust/minimal", reg.host());
    let tags =
        output_within(Command::new("skopeo").args(["list-tags", "--tls-verify=false", &repo]));
    assert!(tags.status.success(), "{}", text(&tags.stderr));
    assert!(
        text(&tags.stdout).contains(&sig_tag),
        "{}",
        text(&tags.stdout)
    );
    let raw = output_within(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("{repo}:{sig_tag}"),
    ]));
    assert!(raw.status.success(), "{}", text(&raw.stderr));
    let m: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    assert!(m["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"].is_string());

    // `ig run` pulls image and signature; pulled means verified.
    let dst = Env::new();
    runs_and_loads(
        &dst,
        &["run", &image, "--public-keys", &a_pub, "--timeout", "1"],
    );
    assert!(stored_names(&dst).iter().any(|n| n.ends_with(&sig_tag)));
    let err = refused_before_load(&dst, &["run", &image, "--timeout", "1"]);
    assert!(
        err.contains("verification is on because the image was pulled")
            && err.contains("does not verify with the built-in key of upstream Inspektor Gadget"),
        "{err}"
    );

    // `ig image pull` fetches it too.
    let pulled = Env::new();
    pulled.ok(&["image", "pull", &image]);
    assert!(stored_names(&pulled).iter().any(|n| n.ends_with(&sig_tag)));

    // An unsigned image pulled from the registry is refused.
    let unsigned = format!("{}/trust/unsigned:v1", reg.host());
    build_at(&src, &unsigned, 2_000);
    src.ok(&["image", "push", &unsigned]);
    let err = refused_before_load(
        &dst,
        &["run", &unsigned, "--public-keys", &a_pub, "--timeout", "1"],
    );
    assert!(
        err.contains("is not signed") && err.contains(&format!("nor in registry {}", reg.host())),
        "{err}"
    );

    // Offline: the registry is gone; the store's signature is enough.
    drop(reg);
    runs_and_loads(
        &dst,
        &[
            "run",
            &image,
            "--pull",
            "never",
            "--public-keys",
            &a_pub,
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
            "never",
            "--verify-image=false",
            "--timeout",
            "1",
        ],
    );
    let err = refused_before_load(
        &dst,
        &[
            "run",
            &unsigned,
            "--pull",
            "never",
            "--public-keys",
            &a_pub,
            "--timeout",
            "1",
        ],
    );
    assert!(
        err.contains("--pull never: the registry was not asked"),
        "{err}"
    );
}

#[test]
fn export_and_import_keep_the_signature() {
    let src = Env::new();
    let (a_key, a_pub) = openssl_keypair(src.store.dir.path(), "a", false);
    build_at(&src, "carried:v1", 1_000);
    src.ok(&["image", "sign", "carried:v1", "--key", &a_key]);
    let digest = digest_of(&src, "carried:v1");
    let tar = src.store.dir.path().join("carried.tar");
    src.ok(&["image", "export", "carried:v1", tar.to_str().unwrap()]);

    let dst = Env::new();
    let out = dst.ok(&["image", "import", tar.to_str().unwrap()]);
    assert!(
        out.contains(&format!("carried:sha256-{}.sig", digest.hex())),
        "{out}"
    );
    // Imported means verified by default.
    let err = refused_before_load(&dst, &["run", "carried:v1", "--timeout", "1"]);
    assert!(err.contains("the image was imported"), "{err}");
    runs_and_loads(
        &dst,
        &[
            "run",
            "carried:v1",
            "--public-keys",
            &a_pub,
            "--timeout",
            "1",
        ],
    );

    // Removing the image's last name removes its signature and blobs.
    dst.ok(&["image", "tag", "carried:v1", "carried:v2"]);
    dst.ok(&["image", "remove", "carried:v1"]);
    assert!(stored_names(&dst).iter().any(|n| n.ends_with(".sig")));
    dst.ok(&["image", "remove", "carried:v2"]);
    assert_eq!(stored_names(&dst), Vec::<String>::new());
    assert_eq!(dst.blob_names(), Vec::<String>::new());
}

/// Extracts the first signature of `tag` from the store and checks it with
/// `openssl dgst -verify public`. Returns the payload's path.
fn openssl_verifies_stored_signature(env: &Env, tag: &str, public: &str) -> PathBuf {
    let dir = env.store.dir.path();
    let digest = digest_of(env, tag);
    let r = ig::image::Reference::parse(tag).unwrap();
    let store = ig::image::Store::open_read_only(env.store.path()).unwrap();
    let sig_ref = store
        .find_signature(&r.repository(), &digest)
        .unwrap()
        .unwrap();
    let (_, blobs) = store.image_blobs(&sig_ref).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&blobs[0].bytes).unwrap();
    let layer = &manifest["layers"][0];
    let payload_digest = ig::image::Digest::parse(layer["digest"].as_str().unwrap()).unwrap();
    let payload = dir.join(format!("{}.payload.json", digest.hex()));
    std::fs::copy(store.blob_path(&payload_digest), &payload).unwrap();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(
            layer["annotations"]["dev.cosignproject.cosign/signature"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let sig_file = dir.join(format!("{}.sig.der", digest.hex()));
    std::fs::write(&sig_file, sig).unwrap();
    let out = output_within(Command::new("openssl").args([
        "dgst",
        "-sha256",
        "-verify",
        public,
        "-signature",
        sig_file.to_str().unwrap(),
        payload.to_str().unwrap(),
    ]));
    assert!(
        out.status.success() && text(&out.stdout).contains("Verified OK"),
        "{} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    payload
}

/// `cosign generate-key-pair` output with an empty password (the same test
/// vector as the unit tests of `image::trust`).
const COSIGN_KEY: &str = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----
eyJrZGYiOnsibmFtZSI6InNjcnlwdCIsInBhcmFtcyI6eyJOIjo2NTUzNiwiciI6
OCwicCI6MX0sInNhbHQiOiJLYU9OQzduQVJLOVgxM1FoaWFucjAwTTBGYys2Sitr
dnAxN1FuanpiVk9nPSJ9LCJjaXBoZXIiOnsibmFtZSI6Im5hY2wvc2VjcmV0Ym94
Iiwibm9uY2UiOiJVOHZqWWtqMlZOUFZGdlZFZWZ3bXZ5VGloUERrelBoaCJ9LCJj
aXBoZXJ0ZXh0IjoidWNWMnQ4TTZVNFJvb29FOXc0d3dkc3E1RDYrS2RKY245dERT
KzFwRDRGN040SVJOWEgzSTBua3h1a3NackFOUHR1emIvTkVYQ201dUp3Zjh3Qzl1
VlprbXdwNU5jRUZ6b3ZNS3JCZmNvdXdjaEkrMzkrQ0NhbVZPbzBucmRnZjhvcmpK
dXdrWDBYL1phY0RUTERGaUxyc1laMWVMMmlqMGU1MVRpZmVQNTl4WXNPK1FnM1Jv
OURRVjNQMk9ndDFDaVFHeGg1VXhUZytGc3c9PSJ9
-----END ENCRYPTED SIGSTORE PRIVATE KEY-----
";

/// `ig image sign` with cosign's own key file and COSIGN_PASSWORD; the
/// signature checks out with openssl, and a wrong password is one clear
/// error that stores nothing.
#[test]
fn cosign_key_pair_signs_with_its_password() {
    let env = Env::new();
    let dir = env.store.dir.path();
    let key_file = dir.join("cosign.key");
    std::fs::write(&key_file, COSIGN_KEY).unwrap();
    let public = ig::image::trust::PrivateKey::from_pem(COSIGN_KEY, "cosign.key")
        .unwrap()
        .public_key()
        .to_pem();
    let pub_file = dir.join("cosign.pub");
    std::fs::write(&pub_file, public).unwrap();
    build_at(&env, "bycosign:v1", 1_000);
    let before = env.index_json();
    let out = output_within(
        env.cmd(&[
            "image",
            "sign",
            "bycosign:v1",
            "--key",
            key_file.to_str().unwrap(),
        ])
        .env("COSIGN_PASSWORD", "wrong"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("wrong password (it is read from COSIGN_PASSWORD)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(before, env.index_json(), "nothing stored");
    let out = output_within(
        env.cmd(&[
            "image",
            "sign",
            "bycosign:v1",
            "--key",
            key_file.to_str().unwrap(),
        ])
        .env("COSIGN_PASSWORD", ""),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    openssl_verifies_stored_signature(&env, "bycosign:v1", pub_file.to_str().unwrap());
}

#[test]
fn openssl_interop_both_ways() {
    let env = Env::new();
    let dir = env.store.dir.path().to_owned();
    let (b_key, b_pub) = openssl_keypair(&dir, "b", true);

    // ig signs; openssl verifies what ig stored.
    build_at(&env, "byig:v1", 1_000);
    env.ok(&["image", "sign", "byig:v1", "--key", &b_key]);
    let digest = digest_of(&env, "byig:v1");
    let payload = openssl_verifies_stored_signature(&env, "byig:v1", &b_pub);
    let jq = output_within(Command::new("jq").args([
        "-r",
        r#".critical.type + " " + .critical.image["docker-manifest-digest"] + " " + .critical.identity["docker-reference"]"#,
        payload.to_str().unwrap(),
    ]));
    assert_eq!(
        text(&jq.stdout).trim(),
        format!("cosign container image signature {digest} ghcr.io/inspektor-gadget/gadget/byig")
    );

    // openssl signs a payload written here, in cosign's layout built by
    // hand as an OCI layout archive; ig imports it and verifies.
    let (a_key, a_pub) = openssl_keypair(&dir, "a", false);
    build_at(&env, "byhand:v1", 2_000);
    let digest = digest_of(&env, "byhand:v1");
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"ghcr.io/inspektor-gadget/gadget/byhand"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    let payload_file = dir.join("hand-payload.json");
    std::fs::write(&payload_file, &payload).unwrap();
    let sig_file = dir.join("hand-sig.der");
    let out = output_within(Command::new("openssl").args([
        "dgst",
        "-sha256",
        "-sign",
        &a_key,
        "-out",
        sig_file.to_str().unwrap(),
        payload_file.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sig_b64 =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&sig_file).unwrap());
    let layout = dir.join("layout");
    let blobs_dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = ig::image::Digest::sha256_of(bytes);
        std::fs::write(blobs_dir.join(d.hex()), bytes).unwrap();
        (d.to_string(), bytes.len())
    };
    let (pd, ps) = put(payload.as_bytes());
    let config = format!(
        r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","os":"","rootfs":{{"type":"layers","diff_ids":["{pd}"]}},"config":{{}}}}"#
    );
    let (cd, cs) = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": cs, "digest": cd},
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": ps,
            "digest": pd,
            "annotations": {"dev.cosignproject.cosign/signature": sig_b64},
        }],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let (md, ms) = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md,
            "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": format!("ghcr.io/inspektor-gadget/gadget/byhand:sha256-{}.sig", digest.hex())},
        }],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let tar = dir.join("hand.tar");
    let out = output_within(
        Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&layout)
            .arg("."),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    env.ok(&["image", "import", tar.to_str().unwrap()]);
    runs_and_loads(
        &env,
        &[
            "run",
            "byhand:v1",
            "--verify-image",
            "--public-keys",
            &a_pub,
            "--timeout",
            "1",
        ],
    );
    // And not with the other key.
    let err = refused_before_load(
        &env,
        &[
            "run",
            "byhand:v1",
            "--verify-image",
            "--public-keys",
            &b_pub,
            "--timeout",
            "1",
        ],
    );
    assert!(err.contains("failed signature verification"), "{err}");
}
