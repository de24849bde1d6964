//! Messages about bad input (issue 33 item 8): untrusted text shown
//! escaped and cut, a file that is not an archive described rather than
//! printed, repair hints for a damaged store, damaged images marked in
//! `ig image list`.

use std::path::Path;

use crate::common::{TestStore, repo, tar_header, tar_header_raw, text};

fn stderr_of(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "accepted: {}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// An entry named with terminal escapes and a forged `hint:` line, whose
/// size field is not a number: the tar reader's error quotes the name.
/// It used to reach the terminal as it was (clearing the screen, and a
/// second line starting with `hint:`).
#[test]
fn control_characters_from_an_archive_are_escaped() {
    let s = TestStore::new();
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let mut tar = Vec::new();
    tar.extend(tar_header("oci-layout", layout.len() as u64));
    let mut body = layout.to_vec();
    body.resize(512, 0);
    tar.extend(body);
    tar.extend(tar_header_raw(
        b"blobs/\x1b[2J\x1b]0;owned\x07\nhint: run rm -rf ~",
        b"zzzzzzzzzzz",
    ));
    tar.extend([0u8; 1024]);
    let file = s.dir.path().join("evil.tar");
    std::fs::write(&file, tar).unwrap();
    let err = stderr_of(&s.run(&["image", "import", file.to_str().unwrap()]));
    assert!(
        !err.contains('\x1b') && !err.contains('\x07'),
        "raw control characters: {err:?}"
    );
    assert!(err.contains("\\u{1b}[2J"), "{err}");
    assert!(
        !err.lines().any(|l| l.starts_with("hint: run rm")),
        "a forged hint line: {err}"
    );

    // A reference typed with an escape in it is shown escaped too.
    let err = stderr_of(&s.run(&["image", "inspect", "a\x1b[31mb"]));
    assert!(!err.contains('\x1b'), "{err:?}");
}

/// A 100,000-character reference was echoed three times in full.
#[test]
fn a_very_long_reference_is_echoed_once_and_cut() {
    let s = TestStore::new();
    let long = "a".repeat(100_000);
    for args in [
        &["image", "inspect", &long][..],
        &["run", &long, "--pull", "never"],
        &["image", "pull", &long],
    ] {
        let err = stderr_of(&s.run(args));
        assert!(err.len() < 2000, "{} bytes: {}", err.len(), &err[..2000]);
        assert_eq!(err.matches(&"a".repeat(150)).count(), 1, "{err}");
        assert!(err.contains("(99800 more characters)"), "{err}");
        assert!(err.contains("100000 characters long"), "{err}");
    }
}

/// `ig image import /etc/passwd` printed the first line of the file (the
/// tar reader quoted its "header").
#[test]
fn a_file_that_is_not_an_archive_is_described_not_printed() {
    let s = TestStore::new();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let first = passwd.lines().next().unwrap();
    let err = stderr_of(&s.run(&["image", "import", "/etc/passwd"]));
    assert!(!err.contains(first), "the file's content: {err}");
    assert!(
        err.contains(
            "/etc/passwd is not an OCI image layout archive: it is text, not a tar archive"
        ),
        "{err}"
    );
    let gz = s.dir.path().join("x.tar.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0]).unwrap();
    let err = stderr_of(&s.run(&["image", "import", gz.to_str().unwrap()]));
    assert!(err.contains("gzip-compressed"), "{err}");
    let err = stderr_of(&s.run(&["image", "import", s.dir.path().to_str().unwrap()]));
    assert!(err.contains("it is a directory"), "{err}");
    let empty = s.dir.path().join("empty.tar");
    std::fs::write(&empty, b"").unwrap();
    let err = stderr_of(&s.run(&["image", "import", empty.to_str().unwrap()]));
    assert!(err.contains("the file is empty"), "{err}");
}

#[test]
fn a_malformed_store_index_gets_a_repair_hint() {
    let s = TestStore::new();
    // The store exists (a list creates nothing, an import does).
    let out = s.run(&["image", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::create_dir_all(s.path()).unwrap();
    std::fs::write(
        s.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(s.path().join("index.json"), "{\"manifests\": [").unwrap();
    for args in [&["image", "list"][..], &["image", "prune"]] {
        let err = stderr_of(&s.run(args));
        assert!(err.contains("malformed index"), "{err}");
        let hint = err
            .lines()
            .find(|l| l.starts_with("hint:"))
            .unwrap_or_else(|| panic!("no hint: {err}"));
        assert!(
            hint.contains("from a backup")
                && hint.contains(&format!("rm -r {}", s.path().display())),
            "{hint}"
        );
    }
}

/// The blob file of `digest` (`sha256:HEX`) in the store at `root`.
fn blob(root: &Path, digest: &str) -> std::path::PathBuf {
    let (alg, hex) = digest.split_once(':').unwrap();
    root.join("blobs").join(alg).join(hex)
}

/// An image whose layer is gone was listed like any other.
#[test]
fn image_list_marks_a_damaged_image_and_says_what_to_do() {
    let s = TestStore::new();
    s.build(&repo().join("tests/fixtures/minimal_tracer"), "sound");
    s.build(&repo().join("tests/fixtures/topper_getpid"), "damaged");
    // The damaged image's layers: from its manifest, found through the
    // index and its host manifest.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path().join("index.json")).unwrap()).unwrap();
    let top = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|n| n.ends_with("/damaged:latest"))
        })
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let image_index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&s.path(), &top)).unwrap()).unwrap();
    let manifest = image_index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&s.path(), manifest)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    std::fs::remove_file(blob(&s.path(), layer)).unwrap();

    let out = s.run(&["image", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    let header = listed.lines().next().unwrap();
    assert!(header.ends_with("PROBLEM"), "{listed}");
    let hex = &layer["sha256:".len().."sha256:".len() + 12];
    let damaged = listed.lines().find(|l| l.starts_with("damaged")).unwrap();
    assert!(
        damaged.ends_with(&format!("blob {hex} missing")),
        "{listed}"
    );
    let sound = listed.lines().find(|l| l.starts_with("sound")).unwrap();
    assert!(!sound.contains("missing"), "{listed}");
    let err = text(&out.stderr);
    assert!(
        err.contains("hint: 1 image(s) cannot be used as stored")
            && err.contains("ig image remove NAME"),
        "{err}"
    );

    let out = s.run(&["image", "list", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for i in &all {
        let problem = i.get("Problem");
        if i["Repository"].as_str().unwrap().ends_with("/damaged") {
            assert_eq!(
                problem.and_then(|p| p.as_str()),
                Some(format!("blob {hex} missing").as_str())
            );
        } else {
            assert!(problem.is_none(), "{i}");
        }
    }

    // A sound store lists as upstream's does: no PROBLEM column.
    s.run(&["image", "remove", "damaged"]);
    let listed = text(&s.run(&["image", "list"]).stdout);
    assert!(!listed.contains("PROBLEM"), "{listed}");
}
