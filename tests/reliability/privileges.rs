//! Without root: what works, and how ig says what is missing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{TestStore, fixture_copy, text};

/// `ig ARGS` as nobody, with no capabilities at all, or with `caps` (in
/// setpriv's form, `+bpf`) ambient.
fn ig_as_nobody(store: &Path, caps: &str, args: &[&str]) -> Output {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    if caps.is_empty() {
        c.arg("--inh-caps=-all");
    } else {
        c.arg(format!("--inh-caps=-all,{caps}"))
            .arg(format!("--ambient-caps={caps}"));
    }
    c.arg(crate::common::ig_bin())
        .args(args)
        .env("IG_STORE", store)
        .env("HOME", "/nonexistent")
        .output()
        .expect("setpriv (util-linux)")
}

/// A store with one image that everyone may read (as /var/lib/ig is after
/// `chmod -R a+rX`); ig itself creates it private.
fn readable_store() -> TestStore {
    let s = TestStore::new();
    s.build(fixture_copy("minimal_tracer").path(), "minimal");
    let st = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(s.dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        std::fs::metadata(s.path()).unwrap().permissions().mode() & 0o005,
        0o005
    );
    s
}

#[test]
fn help_version_and_image_list_work_without_root() {
    let s = readable_store();
    for args in [
        &["--help"][..],
        &["version"],
        &["image", "list"],
        &["image", "inspect", "minimal"],
    ] {
        let out = ig_as_nobody(&s.path(), "", args);
        assert!(
            out.status.success(),
            "ig {args:?} as nobody: {}",
            text(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "ig {args:?} printed nothing");
    }
    let out = ig_as_nobody(&s.path(), "", &["image", "list"]);
    assert!(
        text(&out.stdout).contains("minimal"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn run_without_capabilities_names_exactly_what_is_missing() {
    let s = readable_store();
    for (caps, want, not) in [
        ("", "CAP_BPF and CAP_PERFMON", ""),
        ("+bpf", "CAP_PERFMON", "CAP_BPF"),
        ("+perfmon", "CAP_BPF", "CAP_PERFMON"),
    ] {
        let out = ig_as_nobody(&s.path(), caps, &["run", "minimal", "--timeout", "1"]);
        assert_eq!(out.status.code(), Some(1), "caps {caps:?}");
        let err = text(&out.stderr);
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains(want), "caps {caps:?}: {err}");
        if !not.is_empty() {
            assert!(
                !first.contains(&format!("{not} and")) && !first.contains(&format!("and {not}")),
                "caps {caps:?} has {not}: {err}"
            );
        }
        assert!(!err.contains("panicked") && !err.contains("EPERM"), "{err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error")).count(),
            1,
            "one message: {err}"
        );
    }
}

#[test]
fn writing_a_store_of_another_user_is_refused_with_the_reason() {
    let s = readable_store();
    // nobody meets root's store: reading works (above), writing does not.
    let out = ig_as_nobody(&s.path(), "", &["image", "prune"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("owned by uid 0"), "{err}");
    assert!(
        err.contains("ig writes a store only when you (uid 65534) own it"),
        "{err}"
    );
    let out = ig_as_nobody(&s.path(), "", &["image", "tag", "minimal", "other"]);
    assert!(
        text(&out.stderr).contains("owned by uid 0"),
        "{}",
        text(&out.stderr)
    );
}
