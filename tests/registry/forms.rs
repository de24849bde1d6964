//! The forms of cosign signatures (issue 29): the `.sig` tag, the OCI 1.1
//! referrer and the sigstore bundle, each signed by `ig image sign
//! --form`, pushed to a real `docker-registry`, pulled into a fresh store
//! and checked by `ig image verify` and `ig run`; the referrers API of a
//! registry that has one; and fixtures made the way upstream signs (cosign's
//! exact documents, with a key of ours, put into the registry byte for byte
//! with curl, no ig in between).
//!
//! Debian's docker-registry (2.8) has no referrers API: its
//! `/v2/<name>/referrers/<digest>` is a 404, so against it every referrer
//! goes through the referrers tag schema of the OCI distribution spec 1.1
//! (the index tagged `sha256-<hex>`). The test of the API itself uses a
//! fake registry serving a real signed image's bytes.

use super::trust::{build_at, digest_of, openssl_keypair, runs_and_loads, stored_names};
use super::*;
use base64::Engine as _;

const UPSTREAM_KEY: &str = "the built-in key of upstream Inspektor Gadget";

/// What `ig image verify` prints for each form.
fn described(form: &str) -> &'static str {
    match form {
        "tag" => "cosign signature tag (sha256-<hex>.sig)",
        "referrer" => "OCI 1.1 referrer (cosign simple signing)",
        "bundle" => "OCI 1.1 referrer (sigstore bundle, DSSE)",
        _ => unreachable!(),
    }
}

/// `skopeo inspect --raw` of `docker://REPO:TAG` on the test registry.
fn raw(repo: &str, tag: &str) -> serde_json::Value {
    let out = output_within(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{repo}:{tag}"),
    ]));
    assert!(out.status.success(), "{repo}:{tag}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The HTTP status of `GET URL`.
fn http_status(url: &str) -> String {
    let out = output_within(Command::new("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        url,
    ]));
    assert!(out.status.success(), "curl {url}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn every_form_travels_through_a_registry_without_the_referrers_api() {
    let reg = Registry::start();
    let host = reg.host();
    // docker-registry 2.8: no referrers API (a 404, not an empty list).
    assert_eq!(
        http_status(&format!(
            "http://{host}/v2/forms/tag/referrers/sha256:{}",
            "0".repeat(64)
        )),
        "404"
    );
    let src = Env::new();
    let (a_key, a_pub) = openssl_keypair(src.store.dir.path(), "a", false);
    for (i, form) in ["tag", "referrer", "bundle"].into_iter().enumerate() {
        let image = format!("{host}/forms/{form}:v1");
        let repo = format!("{host}/forms/{form}");
        build_at(&src, &image, 1_000 + i as u64);
        let out = src.ok(&["image", "sign", &image, "--key", &a_key, "--form", form]);
        assert!(out.contains(described(form)), "{out}");
        let digest = digest_of(&src, &image);
        let index_tag = format!("sha256-{}", digest.hex());
        let out = src.ok(&["image", "push", &image]);
        if form == "tag" {
            assert!(
                out.contains(&format!("Pushed signature {repo}:{index_tag}.sig")),
                "{out}"
            );
            assert!(!out.contains("referrers"), "{out}");
        } else {
            assert!(
                out.contains(&format!("Pushed signature referrers {repo}:{index_tag}")),
                "{out}"
            );
            assert!(!out.contains(".sig"), "{out}");
            // In the registry: the tag schema's index, listing a referrer
            // of the right artifact type whose subject is the image.
            let index = raw(&repo, &index_tag);
            let entry = &index["manifests"][0];
            let artifact = if form == "referrer" {
                "application/vnd.dev.cosign.artifact.sig.v1+json"
            } else {
                "application/vnd.dev.sigstore.bundle.v0.3+json"
            };
            assert_eq!(entry["artifactType"], artifact, "{index}");
            let m = output_within(Command::new("skopeo").args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{repo}@{}", entry["digest"].as_str().unwrap()),
            ]));
            assert!(m.status.success(), "{}", text(&m.stderr));
            let m: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
            assert_eq!(m["subject"]["digest"], digest.to_string(), "{m}");
        }

        // A fresh store: `ig image pull` brings the signature along, in
        // its form, and `ig image verify` checks it offline.
        let dst = Env::new();
        dst.ok(&["image", "pull", &image]);
        let want = if form == "tag" {
            format!("{index_tag}.sig")
        } else {
            index_tag.clone()
        };
        assert!(
            stored_names(&dst)
                .iter()
                .any(|n| n.ends_with(&format!(":{want}"))),
            "{:?}",
            stored_names(&dst)
        );
        assert!(!dst.ok(&["image", "list"]).contains("sha256-"));
        verify_pulled(&dst, &image, &digest, &a_pub, form);

        // An archive carries the signature, in its form.
        let tar = dst.store.dir.path().join(format!("{form}.tar"));
        dst.ok(&["image", "export", &image, tar.to_str().unwrap()]);
        let imported = Env::new();
        imported.ok(&["image", "import", tar.to_str().unwrap()]);
        let out = imported.ok(&["image", "verify", &image, "--public-keys", &a_pub]);
        assert!(out.contains(described(form)), "{out}");
        // Removing the image's last name removes its signatures.
        imported.ok(&["image", "remove", &image]);
        assert!(
            stored_names(&imported).is_empty(),
            "{:?}",
            stored_names(&imported)
        );
    }
    // An image without any signature: said so, exit 1.
    let unsigned = format!("{host}/forms/unsigned:v1");
    build_at(&src, &unsigned, 4_000);
    let err = src.fails(&["image", "verify", &unsigned, "--public-keys", &a_pub]);
    assert!(
        err.contains("is not signed") && err.contains("neither the tag sha256-"),
        "{err}"
    );
    // `ig run` pulls the image and its referrer, and verifies before
    // loading.
    let run = Env::new();
    runs_and_loads(
        &run,
        &[
            "run",
            &format!("{host}/forms/referrer:v1"),
            "--public-keys",
            &a_pub,
            "--timeout",
            "1",
        ],
    );
}

/// `ig image verify` of a pulled image: verified with the signer's key,
/// saying which key and form; refused (exit 1) with the built-in key.
fn verify_pulled(dst: &Env, image: &str, digest: &ig::image::Digest, public: &str, form: &str) {
    let out = dst.ok(&["image", "verify", image, "--public-keys", public]);
    assert!(out.contains(&format!("Verified {image}@{digest}")), "{out}");
    assert!(out.contains(&format!("key:       {public} #1")), "{out}");
    assert!(
        out.contains(&format!("signature: {}", described(form))),
        "{out}"
    );
    // Without --public-keys: upstream's key, which did not sign it.
    let err = dst.fails(&["image", "verify", image]);
    assert!(
        err.contains(&format!("does not verify with {UPSTREAM_KEY}")),
        "{err}"
    );
}

/// What the fake serves: path to answer.
type Served = std::sync::Mutex<std::collections::HashMap<String, Response>>;

/// A registry with the referrers API (the fake, serving the bytes of a
/// real store): the referrer is found through the API, and the tag
/// schema's tag is never asked for.
#[test]
fn the_referrers_api_is_used_when_the_registry_has_one() {
    let served: Arc<Served> = Arc::default();
    let map = served.clone();
    let fake = FakeRegistry::start(move |_, path| {
        map.lock().unwrap().get(path).cloned().unwrap_or((
            404,
            "application/json",
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not here"}]}"#.to_vec(),
        ))
    });
    let image = format!("{}/forms/api:v1", fake.host());
    let src = Env::new();
    let (a_key, a_pub) = openssl_keypair(src.store.dir.path(), "a", false);
    build_at(&src, &image, 3_000);
    src.ok(&[
        "image", "sign", &image, "--key", &a_key, "--form", "referrer",
    ]);
    let digest = digest_of(&src, &image);

    // Serve the store's documents and blobs as a registry would.
    let index: serde_json::Value = serde_json::from_slice(&src.index_json()).unwrap();
    let tagged = |tag: &str| {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| {
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(tag))
            })
            .map(|m| m["digest"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let referrers_index = tagged(&format!(":sha256-{}", digest.hex()));
    {
        let mut m = served.lock().unwrap();
        m.insert("/v2/".into(), (200, "application/json", b"{}".to_vec()));
        for e in std::fs::read_dir(src.store.path().join("blobs/sha256")).unwrap() {
            let e = e.unwrap();
            let hex = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path()).unwrap();
            let media: &'static str = match serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
                .as_deref()
            {
                Some("application/vnd.oci.image.index.v1+json") => {
                    "application/vnd.oci.image.index.v1+json"
                }
                Some("application/vnd.oci.image.manifest.v1+json") => {
                    "application/vnd.oci.image.manifest.v1+json"
                }
                _ => "application/octet-stream",
            };
            m.insert(
                format!("/v2/forms/api/manifests/sha256:{hex}"),
                (200, media, bytes.clone()),
            );
            m.insert(
                format!("/v2/forms/api/blobs/sha256:{hex}"),
                (200, "application/octet-stream", bytes),
            );
        }
        let top = m[&format!("/v2/forms/api/manifests/{}", digest)].clone();
        m.insert("/v2/forms/api/manifests/v1".into(), top);
        // The referrers API answers with the list (an image index).
        let list = m[&format!("/v2/forms/api/manifests/{referrers_index}")].clone();
        m.insert(format!("/v2/forms/api/referrers/{digest}"), list);
    }

    let dst = Env::new();
    dst.ok(&["image", "pull", &image]);
    let out = dst.ok(&["image", "verify", &image, "--public-keys", &a_pub]);
    assert!(out.contains(described("referrer")), "{out}");
    let asked = fake.requests();
    assert!(
        asked
            .iter()
            .any(|r| r == &format!("GET /v2/forms/api/referrers/{digest}")),
        "{asked:?}"
    );
    assert!(
        !asked
            .iter()
            .any(|r| r == &format!("GET /v2/forms/api/manifests/sha256-{}", digest.hex())),
        "the tag schema was read although the API answered: {asked:?}"
    );
}

// ------------------------------------------------------------- upstream

/// Uploads `bytes` as a blob of `repo` (the distribution API: POST, then
/// PUT with the digest) and returns its digest.
fn put_blob(host: &str, repo: &str, bytes: &[u8], dir: &std::path::Path) -> String {
    let digest = ig::image::Digest::sha256_of(bytes).to_string();
    let file = dir.join(digest.replace(':', "-"));
    std::fs::write(&file, bytes).unwrap();
    let out = output_within(Command::new("curl").args([
        "-s",
        "-f",
        "-X",
        "POST",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://{host}/v2/{repo}/blobs/uploads/"),
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let headers = text(&out.stdout);
    let location = headers
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no Location: {headers}"));
    let location = if location.starts_with('/') {
        format!("http://{host}{location}")
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let out = output_within(Command::new("curl").args([
        "-s",
        "-f",
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{location}{sep}digest={digest}"),
    ]));
    assert!(out.status.success(), "PUT blob: {}", text(&out.stderr));
    digest
}

/// Puts a manifest or index under `reference` (a tag or digest).
fn put_manifest(
    host: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
    dir: &std::path::Path,
) {
    let file = dir.join(format!("manifest-{}", free_port()));
    std::fs::write(&file, bytes).unwrap();
    let out = output_within(Command::new("curl").args([
        "-s",
        "-S",
        "-f",
        "-X",
        "PUT",
        "-H",
        &format!("Content-Type: {media_type}"),
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("http://{host}/v2/{repo}/manifests/{reference}"),
    ]));
    assert!(
        out.status.success(),
        "PUT manifest {reference}: {} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// openssl's ECDSA P-256 signature of `bytes` (SHA-256, ASN.1 DER),
/// base64: what cosign writes.
fn openssl_sign(key: &str, bytes: &[u8], dir: &std::path::Path) -> String {
    let file = dir.join(format!("to-sign-{}", free_port()));
    std::fs::write(&file, bytes).unwrap();
    let out = output_within(Command::new("openssl").args([
        "dgst",
        "-sha256",
        "-sign",
        key,
        file.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    base64::engine::general_purpose::STANDARD.encode(&out.stdout)
}

/// The digests of the manifests an index names.
fn manifests_of(env: &Env, index: &ig::image::Digest) -> Vec<String> {
    let bytes = std::fs::read(env.store.path().join("blobs/sha256").join(index.hex())).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// Upstream signs its images with `cosign sign --new-bundle-format=false
/// --use-signing-config=false --key ... --recursive` (its workflow
/// `.github/actions/sign-oci-artifact`): the `.sig` tag form, one
/// signature image per digest (the index and, `--recursive`, each
/// manifest), each layer carrying cosign's Rekor bundle annotation next
/// to the signature, and cosign's config (`created` at the zero time, one
/// history entry). Built here byte for byte in that layout, signed by
/// openssl with a key of ours, put into the registry with curl: `ig run`
/// pulls and verifies it, and `ig image verify` says how.
///
/// Also a sigstore bundle referrer exactly as upstream's verifier tests
/// have one (tag schema index entry of artifact type
/// `application/vnd.oci.empty.v1+json`, manifest with cosign's
/// annotations, bundle with verification material and a DSSE envelope).
#[test]
fn fixtures_signed_the_way_upstream_signs_verify() {
    let reg = Registry::start();
    let host = reg.host();
    let src = Env::new();
    let dir = src.store.dir.path().to_owned();
    let (key, public) = openssl_keypair(&dir, "upstream-like", false);

    // --- the tag form, recursive, with the Rekor bundle annotation.
    let image = format!("{host}/upstream/legacy:v1");
    let repo = "upstream/legacy";
    build_at(&src, &image, 5_000);
    src.ok(&["image", "push", &image]);
    let digest = digest_of(&src, &image);
    let mut signed = vec![digest.to_string()];
    signed.extend(manifests_of(&src, &digest));
    for d in &signed {
        let payload = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"{host}/{repo}"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
        );
        let payload_digest = put_blob(&host, repo, payload.as_bytes(), &dir);
        let signature = openssl_sign(&key, payload.as_bytes(), &dir);
        let config = format!(
            r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{payload_digest}"]}},"config":{{}}}}"#
        );
        let config_digest = put_blob(&host, repo, config.as_bytes(), &dir);
        // cosign's Rekor bundle: ig does not read it (a key's signature is
        // what counts); it must not disturb. Values of ours, cosign's
        // shape.
        let body = base64::engine::general_purpose::STANDARD.encode(format!(
            r#"{{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{{"data":{{"hash":{{"algorithm":"sha256","value":"{}"}}}},"signature":{{"content":"{signature}"}}}}}}"#,
            payload_digest.trim_start_matches("sha256:")
        ));
        let rekor = serde_json::json!({
            "SignedEntryTimestamp": "MEUCIQDtest",
            "Payload": {"body": body, "integratedTime": 1760962279u64, "logIndex": 622950129u64, "logID": "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"},
        })
        .to_string();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{},"digest":"{config_digest}"}},"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":{},"digest":"{payload_digest}","annotations":{{"dev.cosignproject.cosign/signature":"{signature}","dev.sigstore.cosign/bundle":{}}}}}]}}"#,
            config.len(),
            payload.len(),
            serde_json::Value::String(rekor)
        );
        let tag = format!("{}.sig", d.replace(':', "-"));
        put_manifest(
            &host,
            repo,
            &tag,
            "application/vnd.oci.image.manifest.v1+json",
            manifest.as_bytes(),
            &dir,
        );
    }
    // A fresh machine: `ig run` pulls image and signature, verifies, runs.
    let dst = Env::new();
    runs_and_loads(
        &dst,
        &["run", &image, "--public-keys", &public, "--timeout", "1"],
    );
    let out = dst.ok(&["image", "verify", &image, "--public-keys", &public]);
    assert!(out.contains(described("tag")), "{out}");
    assert!(out.contains(&format!("signed as: {host}/{repo}")), "{out}");

    // --- the sigstore bundle form.
    let image = format!("{host}/upstream/bundle:v1");
    let repo = "upstream/bundle";
    build_at(&src, &image, 6_000);
    src.ok(&["image", "push", &image]);
    let digest = digest_of(&src, &image);
    let index_bytes =
        std::fs::read(src.store.path().join("blobs/sha256").join(digest.hex())).unwrap();
    let statement = format!(
        r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"digest":{{"sha256":"{}"}}}}],"predicateType":"https://sigstore.dev/cosign/sign/v1"}}"#,
        digest.hex()
    );
    let payload_type = "application/vnd.in-toto+json";
    let pae = format!(
        "DSSEv1 {} {payload_type} {} {statement}",
        payload_type.len(),
        statement.len()
    );
    let sig = openssl_sign(&key, pae.as_bytes(), &dir);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let bundle = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {
            "publicKey": {"hint": "fnjDrI7ue5FV5s2ImCVduM26jN1pF7a4FBRNcNjNhr8="},
            "tlogEntries": [{
                "logIndex": "652716871",
                "logId": {"keyId": "wNI9atQGlz+VWfO6LRygH4QUfY/8W4RFwiT5i5WRgB0="},
                "kindVersion": {"kind": "dsse", "version": "0.0.1"},
                "integratedTime": "1761755324",
                "inclusionPromise": {"signedEntryTimestamp": "MEUCIQC1test"},
                "canonicalizedBody": b64("{}"),
            }],
        },
        "dsseEnvelope": {
            "payload": b64(&statement),
            "payloadType": payload_type,
            "signatures": [{"sig": sig}],
        },
    })
    .to_string();
    let empty = put_blob(&host, repo, b"{}", &dir);
    let bundle_digest = put_blob(&host, repo, bundle.as_bytes(), &dir);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":"{empty}","artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json"}},"layers":[{{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","size":{},"digest":"{bundle_digest}"}}],"annotations":{{"dev.sigstore.bundle.content":"dsse-envelope","dev.sigstore.bundle.predicateType":"https://sigstore.dev/cosign/sign/v1","org.opencontainers.image.created":"2025-10-29T16:28:44Z"}},"subject":{{"mediaType":"application/vnd.oci.image.index.v1+json","size":{},"digest":"{digest}"}},"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json"}}"#,
        bundle.len(),
        index_bytes.len()
    );
    let manifest_digest = ig::image::Digest::sha256_of(manifest.as_bytes()).to_string();
    put_manifest(
        &host,
        repo,
        &manifest_digest,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
        &dir,
    );
    let list = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"artifactType":"application/vnd.oci.empty.v1+json"}}]}}"#,
        manifest.len()
    );
    put_manifest(
        &host,
        repo,
        &format!("sha256-{}", digest.hex()),
        "application/vnd.oci.image.index.v1+json",
        list.as_bytes(),
        &dir,
    );
    let dst = Env::new();
    dst.ok(&["image", "pull", &image]);
    let out = dst.ok(&["image", "verify", &image, "--public-keys", &public]);
    assert!(out.contains(described("bundle")), "{out}");
    assert!(out.contains(&format!("key:       {public} #1")), "{out}");
}
