use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};

use super::*;

fn keypair(seed: u8) -> (PrivateKey, String) {
    let secret = p256::SecretKey::from_slice(&[seed; 32]).unwrap();
    let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public = secret
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    (PrivateKey::from_pem(&pem, "key.pem").unwrap(), public)
}

fn digest(s: &str) -> Digest {
    Digest::sha256_of(s.as_bytes())
}

#[test]
fn payload_is_cosigns_simple_signing_document() {
    let d = digest("index");
    let p = payload("ghcr.io/org/gadget", &d);
    assert_eq!(
        String::from_utf8(p.clone()).unwrap(),
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"ghcr.io/org/gadget"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
        )
    );
    let c = parse_payload(&p).unwrap();
    assert_eq!(c.digest, d.to_string());
    assert_eq!(c.docker_reference, "ghcr.io/org/gadget");
    assert_eq!(signature_tag(&d), format!("sha256-{}.sig", d.hex()));
}

#[test]
fn sign_then_verify_and_every_tampering_is_refused() {
    let (key, public) = keypair(7);
    let keys = PublicKey::all_from_pem(&public, "k.pub").unwrap();
    assert_eq!(
        keys[0],
        PublicKey {
            name: "k.pub #1".into(),
            ..key.public_key()
        }
    );
    let d = digest("index");
    let p = payload("r/x", &d);
    let good = SignatureLayer {
        signature: key.sign(&p),
        payload: p.clone(),
    };
    let v = verify("r/x:v1", &d, std::slice::from_ref(&good), &keys).unwrap();
    assert_eq!(v.key, "k.pub #1");

    // Another image's digest: a valid signature of something else.
    let e = verify(
        "r/x:v1",
        &digest("other"),
        std::slice::from_ref(&good),
        &keys,
    )
    .unwrap_err();
    assert!(e.to_string().contains("signs another image"), "{e}");
    // Payload changed after signing.
    let mut bad = good.clone();
    bad.payload = payload("r/x", &digest("other"));
    let e = verify("r/x:v1", &digest("other"), &[bad], &keys).unwrap_err();
    assert!(
        e.to_string().contains("does not verify with k.pub #1"),
        "{e}"
    );
    // Signature bytes changed.
    let mut bad = good.clone();
    let mut der = BASE64.decode(&bad.signature).unwrap();
    let last = der.len() - 1;
    der[last] ^= 1;
    bad.signature = BASE64.encode(der);
    assert!(verify("r/x:v1", &d, &[bad], &keys).is_err());
    // Not base64 at all.
    let mut bad = good.clone();
    bad.signature = "!!".into();
    let e = verify("r/x:v1", &d, &[bad], &keys).unwrap_err();
    assert!(e.to_string().contains("not base64"), "{e}");
    // Another key.
    let (_, other_pub) = keypair(9);
    let other = PublicKey::all_from_pem(&other_pub, "o.pub").unwrap();
    assert!(verify("r/x:v1", &d, std::slice::from_ref(&good), &other).is_err());
    // Several keys and signatures: one good pair is enough.
    let both: Vec<PublicKey> = other.iter().chain(&keys).cloned().collect();
    assert!(verify("r/x:v1", &d, &[good], &both).is_ok());
    // Nothing to check.
    assert!(verify("r/x:v1", &d, &[], &keys).is_err());
}

#[test]
fn signature_image_round_trips_and_dedups() {
    let (key, _) = keypair(3);
    let d = digest("index");
    let p = payload("r/x", &d);
    let layer = SignatureLayer {
        signature: key.sign(&p),
        payload: p,
    };
    let img = signature_image(&[layer.clone(), layer.clone()]);
    let manifest = img.blobs.last().unwrap();
    assert!(img.top.digest.matches(manifest));
    let m: Manifest = serde_json::from_slice(manifest).unwrap();
    assert_eq!(m.layers.len(), 1);
    assert_eq!(m.layers[0].media_type, MEDIA_TYPE_SIMPLE_SIGNING);
    assert_eq!(m.config.media_type, MEDIA_TYPE_IMAGE_CONFIG);
    let blobs = img.blobs.clone();
    let layers = signature_layers(&img.top.digest, manifest, |desc| {
        blobs.iter().find(|b| desc.digest.matches(b)).cloned()
    })
    .unwrap();
    assert_eq!(layers, [layer]);
    let e = signature_layers(&img.top.digest, manifest, |_| None).unwrap_err();
    assert!(e.to_string().contains("is missing"), "{e}");
}

#[test]
fn key_files_in_their_forms() {
    let secret = p256::SecretKey::from_slice(&[5; 32]).unwrap();
    let sec1 = secret.to_sec1_pem(LineEnding::LF).unwrap().to_string();
    let with_params = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{sec1}"
    );
    let k = PrivateKey::from_pem(&with_params, "k").unwrap();
    assert_eq!(
        k.public_key().key,
        *SigningKey::from(secret).verifying_key()
    );

    let cosign = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJ9\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n";
    let e = PrivateKey::from_pem(cosign, "cosign.key").unwrap_err();
    assert!(matches!(e, TrustError::CosignKey { .. }), "{e}");
    let e = PrivateKey::from_pem("hello", "x").unwrap_err();
    assert!(e.to_string().contains("no PRIVATE KEY found"), "{e}");
    let e = PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n", "x").unwrap_err();
    assert!(e.to_string().contains("no END line"), "{e}");
    let e = PublicKey::all_from_pem(&sec1, "x").unwrap_err();
    assert!(e.to_string().contains("no PUBLIC KEY found"), "{e}");
}

#[test]
fn allow_rules() {
    let d = digest("index");
    let m = digest("manifest");
    let r = Reference::parse("trace_exec:v1").unwrap();
    let check = |entries: &[&str]| {
        let rules: Vec<(String, AllowRule)> = entries
            .iter()
            .map(|e| (e.to_string(), AllowRule::parse(e).unwrap()))
            .collect();
        check_allowed(&rules, &r, &[&d, &m]).is_ok()
    };
    assert!(check(&[]));
    assert!(check(&["trace_exec"]));
    assert!(check(&["trace_exec:v1"]));
    assert!(!check(&["trace_exec:v2"]));
    assert!(!check(&["trace_open"]));
    assert!(check(&["ghcr.io/inspektor-gadget/gadget/trace_*"]));
    assert!(!check(&["docker.io/*"]));
    assert!(check(&["trace_open", &d.to_string()]));
    assert!(check(&[&m.to_string()]));
    assert!(!check(&[&digest("x").to_string()]));
    assert!(check(&[&format!("other@{d}")]));
    assert!(AllowRule::parse("a*b*").is_err());
    assert!(AllowRule::parse(" ").is_err());
    assert!(AllowRule::parse("Bad Name").is_err());
    let rules = vec![(
        "trace_open".to_owned(),
        AllowRule::parse("trace_open").unwrap(),
    )];
    let e = check_allowed(&rules, &r, &[&d]).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("({d}) is not in --allowed-gadgets (trace_open)")),
        "{e}"
    );

    // By name alone: refused only when no rule could allow by digest.
    let by_name = |entries: &[&str]| {
        let rules: Vec<(String, AllowRule)> = entries
            .iter()
            .map(|e| (e.to_string(), AllowRule::parse(e).unwrap()))
            .collect();
        check_allowed_by_name(&rules, &r)
    };
    assert!(by_name(&[]).is_ok());
    assert!(by_name(&["trace_exec"]).is_ok());
    assert!(by_name(&["ghcr.io/inspektor-gadget/*"]).is_ok());
    let e = by_name(&["trace_open", "docker.io/*", "trace_exec:v2"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "image ghcr.io/inspektor-gadget/gadget/trace_exec:v1 is not in --allowed-gadgets (trace_open, docker.io/*, trace_exec:v2)"
    );
    assert!(by_name(&["trace_open", &d.to_string()]).is_ok());
    assert!(by_name(&["trace_open", &format!("other@{d}")]).is_ok());
}

#[test]
fn origins_and_defaults() {
    for o in [Origin::Built, Origin::Pulled, Origin::Imported] {
        assert_eq!(Origin::parse(o.as_str()), Some(o));
    }
    assert!(!verify_by_default(Some(Origin::Built)));
    assert!(verify_by_default(Some(Origin::Pulled)));
    assert!(verify_by_default(Some(Origin::Imported)));
    assert!(verify_by_default(None));
}

#[test]
fn high_s_signatures_verify_too() {
    // openssl does not normalize s to the lower half; cosign accepts both.
    let (key, public) = keypair(11);
    let keys = PublicKey::all_from_pem(&public, "k.pub").unwrap();
    let d = digest("index");
    let p = payload("r/x", &d);
    let der = BASE64.decode(key.sign(&p)).unwrap();
    let sig = Signature::from_der(&der).unwrap();
    let (r, s) = sig.split_scalars();
    let flipped = Signature::from_scalars(r, -*s).unwrap();
    let layer = SignatureLayer {
        signature: BASE64.encode(flipped.to_der().as_bytes()),
        payload: p,
    };
    assert_ne!(flipped, sig);
    assert!(verify("r/x", &d, &[layer], &keys).is_ok());
}

/// A key made by `cosign generate-key-pair` with an empty password, as
/// published in the test suite of conforma/cli (a test vector: only real
/// cosign output shows that scrypt and secretbox are wired as cosign does).
const COSIGN_KEY_EMPTY_PASSWORD: &str = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----
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

#[test]
fn cosign_encrypted_key_opens_with_its_password_only() {
    let key =
        PrivateKey::from_pem_with_password(COSIGN_KEY_EMPTY_PASSWORD, "cosign.key", b"").unwrap();
    // It signs, and its public key verifies.
    let d = digest("index");
    let p = payload("r/x", &d);
    let layer = SignatureLayer {
        signature: key.sign(&p),
        payload: p,
    };
    assert!(verify("r/x", &d, &[layer], &[key.public_key()]).is_ok());
    let e = PrivateKey::from_pem_with_password(COSIGN_KEY_EMPTY_PASSWORD, "cosign.key", b"nope")
        .unwrap_err();
    assert!(matches!(e, TrustError::WrongPassword { .. }), "{e}");
    assert!(e.to_string().contains("COSIGN_PASSWORD"), "{e}");
}

#[test]
fn upstreams_key_is_built_in() {
    let keys = PublicKey::upstream();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].name, UPSTREAM_KEY_NAME);
    // The PEM round-trips: the constant is a P-256 public key, unchanged.
    assert_eq!(keys[0].to_pem().trim(), UPSTREAM_PUBLIC_KEY.trim());
}

#[test]
fn pae_is_dsse_v1() {
    // The example of the DSSE protocol specification.
    assert_eq!(
        referrers::pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    );
}

/// The signatures a referrer holds, read back as the store would.
fn read_referrer(r: &referrers::Referrer) -> Vec<FoundSignature> {
    let blobs = r.blobs.clone();
    referrers::referrer_signatures(&r.descriptor.digest, &r.blobs[0], |d| {
        blobs.iter().find(|b| d.digest.matches(b)).cloned()
    })
    .unwrap()
}

#[test]
fn referrer_forms_round_trip_and_verify() {
    let (key, public) = keypair(11);
    let keys = PublicKey::all_from_pem(&public, "k.pub").unwrap();
    let d = digest("index");
    let subject = Descriptor::for_bytes(crate::image::oci::MEDIA_TYPE_IMAGE_INDEX, b"index");
    assert_eq!(subject.digest, d);

    // cosign's OCI 1.1 simple-signing referrer.
    let p = payload("r/x", &d);
    let layer = SignatureLayer {
        signature: key.sign(&p),
        payload: p,
    };
    let r = referrers::referrer_signature(&subject, std::slice::from_ref(&layer));
    let m: Manifest = serde_json::from_slice(&r.blobs[0]).unwrap();
    assert_eq!(
        m.config.media_type,
        referrers::ARTIFACT_TYPE_COSIGN_SIGNATURE
    );
    assert_eq!(m.subject.as_ref().unwrap().digest, d);
    assert_eq!(
        r.descriptor.artifact_type.as_deref(),
        Some(referrers::ARTIFACT_TYPE_COSIGN_SIGNATURE)
    );
    let found = read_referrer(&r);
    assert_eq!(found.len(), 1);
    let v = verify_found("r/x:v1", &d, &found, &keys).unwrap();
    assert_eq!(v.form, SignatureForm::Referrer);
    assert_eq!(v.docker_reference.as_deref(), Some("r/x"));

    // A sigstore bundle, laid out as cosign writes it.
    let pk = key.public_key();
    let b = referrers::bundle(&d, &pk.hint(), |bytes| key.sign(bytes));
    let r = referrers::referrer_bundle(&subject, b, "2026-01-01T00:00:00Z");
    let m: Manifest = serde_json::from_slice(&r.blobs[0]).unwrap();
    assert_eq!(
        m.artifact_type.as_deref(),
        Some(referrers::MEDIA_TYPE_SIGSTORE_BUNDLE)
    );
    assert_eq!(
        m.config.media_type,
        crate::image::oci::MEDIA_TYPE_EMPTY_JSON
    );
    assert_eq!(
        m.layers[0].media_type,
        referrers::MEDIA_TYPE_SIGSTORE_BUNDLE
    );
    assert_eq!(
        m.annotations["dev.sigstore.bundle.predicateType"],
        referrers::PREDICATE_TYPE_COSIGN_SIGN
    );
    let found = read_referrer(&r);
    let v = verify_found("r/x:v1", &d, &found, &keys).unwrap();
    assert_eq!((v.form, v.docker_reference), (SignatureForm::Bundle, None));
    // Another image's digest.
    let e = verify_found("r/x:v1", &digest("other"), &found, &keys).unwrap_err();
    assert!(e.to_string().contains("signs another image"), "{e}");
    // Another key.
    let (_, other_public) = keypair(12);
    let other = PublicKey::all_from_pem(&other_public, "o.pub").unwrap();
    let e = verify_found("r/x:v1", &d, &found, &other).unwrap_err();
    assert!(
        e.to_string().contains("does not verify with o.pub #1"),
        "{e}"
    );
}

#[test]
fn bundles_that_are_not_cosign_signatures_are_refused() {
    let (key, public) = keypair(13);
    let keys = PublicKey::all_from_pem(&public, "k.pub").unwrap();
    let d = digest("index");
    let bundle_of = |payload_type: &str, statement: serde_json::Value, pae: bool| {
        let payload = serde_json::to_vec(&statement).unwrap();
        let signed = if pae {
            referrers::pae(payload_type, &payload)
        } else {
            payload.clone()
        };
        let doc = serde_json::json!({
            "mediaType": referrers::MEDIA_TYPE_SIGSTORE_BUNDLE,
            "dsseEnvelope": {
                "payload": BASE64.encode(&payload),
                "payloadType": payload_type,
                "signatures": [{"sig": key.sign(&signed)}],
            },
        });
        referrers::parse_bundle(&serde_json::to_vec(&doc).unwrap())
            .unwrap()
            .into_iter()
            .map(|signed| FoundSignature {
                form: SignatureForm::Bundle,
                source: "test".into(),
                signed,
            })
            .collect::<Vec<_>>()
    };
    let statement = |predicate: &str| {
        serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"sha256": d.hex()}}],
            "predicateType": predicate,
        })
    };
    let good = bundle_of(
        referrers::PAYLOAD_TYPE_IN_TOTO,
        statement(referrers::PREDICATE_TYPE_COSIGN_SIGN),
        true,
    );
    assert!(verify_found("x", &d, &good, &keys).is_ok());
    // Signed over the payload, not its PAE: not a DSSE signature.
    let raw = bundle_of(
        referrers::PAYLOAD_TYPE_IN_TOTO,
        statement(referrers::PREDICATE_TYPE_COSIGN_SIGN),
        false,
    );
    assert!(verify_found("x", &d, &raw, &keys).is_err());
    // An attestation (SBOM) is not a signature.
    let att = bundle_of(
        referrers::PAYLOAD_TYPE_IN_TOTO,
        statement("https://spdx.dev/Document"),
        true,
    );
    let e = verify_found("x", &d, &att, &keys).unwrap_err();
    assert!(e.to_string().contains("attestation"), "{e}");
    // Another payload type.
    let other = bundle_of(
        "text/plain",
        statement(referrers::PREDICATE_TYPE_COSIGN_SIGN),
        true,
    );
    assert!(verify_found("x", &d, &other, &keys).is_err());
    // A message-signature bundle signs a blob, not an image.
    let e = referrers::parse_bundle(
        br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{}}"#,
    )
    .unwrap_err();
    assert!(e.contains("no DSSE envelope"), "{e}");
}
