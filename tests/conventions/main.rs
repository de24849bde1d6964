//! The conventions a user of a command-line tool expects, checked on the
//! real `ig` binary: `version`, completion scripts, the generated
//! reference and man pages, the configuration file and `INSPEKTOR_GADGET_*`
//! variables, `NO_COLOR`, data on stdout and messages on stderr,
//! `--auto-mount-filesystems`, `ig run --help` as an unprivileged user,
//! building a gadget outside the repository, and the documents of `docs/`
//! (their jq recipes and the author guide's example run for real).
//!
//! Tests that mount, switch users or load eBPF need root and fail
//! without it (`.ci/run` runs as root).

#[path = "../common/mod.rs"]
mod common;

mod docs;
mod outside;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use common::{TestStore, fixture_copy, ig_bin, repo, text};

fn require_root() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        text(&uid.stdout).trim(),
        "0",
        "this test mounts filesystems or switches users: run it as root"
    );
}

/// `ig` with a home directory of its own (no user config file).
fn ig_home(s: &TestStore, home: &Path) -> Command {
    let mut c = s.ig();
    c.env("HOME", home);
    for (k, _) in std::env::vars() {
        if k.starts_with("INSPEKTOR_GADGET_") || k == "REGISTRY_AUTH_FILE" {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn version_names_the_commit_the_author_api_and_the_target() {
    let s = TestStore::new();
    let out = s.run(&["version"]);
    assert!(out.status.success());
    let v = text(&out.stdout);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())
        .output()
        .unwrap();
    let commit = text(&head.stdout).trim().to_owned();
    assert_eq!(commit.len(), 12, "git rev-parse: {}", text(&head.stderr));
    assert_eq!(
        v.lines().collect::<Vec<_>>(),
        [
            format!("ig version v{}", env!("CARGO_PKG_VERSION")).as_str(),
            &format!("git commit: {commit}"),
            &format!(
                "gadget author API: {}",
                ig::build::headers::AUTHOR_API_VERSION
            ),
            "target: x86_64-unknown-linux-gnu",
        ]
    );
}

#[test]
fn bash_completion_completes_commands_and_flags() {
    let s = TestStore::new();
    let out = s.run(&["completion", "bash"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ig.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // Ask the completion function what it offers, as bash would on Tab.
    let complete = |words: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _ig ig \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let top = complete("ig ''");
    for c in ["run", "image", "completion", "config", "version"] {
        assert!(top.lines().any(|l| l == c), "{c} not offered: {top}");
    }
    let image = complete("ig image b");
    assert_eq!(image.trim(), "build");
    // Both operator flags of `ig run` that start so (`--file` too is
    // a flag of ig run: `--filt` is what tells them apart).
    let run = complete("ig run --filt");
    assert_eq!(
        run.lines().collect::<Vec<_>>(),
        ["--filter", "--filter-expr"],
        "the operator flags of ig run complete"
    );
}

#[test]
fn zsh_and_fish_scripts_name_the_commands() {
    let s = TestStore::new();
    let zsh = text(&s.run(&["completion", "zsh"]).stdout);
    assert!(
        zsh.starts_with("#compdef ig"),
        "{}",
        &zsh[..80.min(zsh.len())]
    );
    let fish = text(&s.run(&["completion", "fish"]).stdout);
    assert!(
        fish.contains("complete -c ig") && fish.contains("list-containers"),
        "{fish}"
    );
    let out = s.run(&["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("possible values"),
        "{}",
        text(&out.stderr)
    );
}

/// docs/reference/ is what `cargo xtask docs` writes: regenerate and compare.
#[test]
fn reference_pages_match_the_clap_definitions() {
    let dir = repo().join("docs/reference");
    let pages = ig_cli::cli::reference::markdown();
    let mut stale = Vec::new();
    for (name, want) in &pages {
        let have = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        if &have != want {
            stale.push(name.clone());
        }
    }
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if !pages.iter().any(|(n, _)| *n == name) {
            stale.push(format!("{name} (no such command)"));
        }
    }
    assert!(
        stale.is_empty(),
        "docs/reference is out of date ({stale:?}): run `cargo xtask docs`"
    );
    // Every command and subcommand has a page, the operator flags are in run.
    for page in [
        "ig.md",
        "ig_run.md",
        "ig_image_build.md",
        "ig_config_view.md",
    ] {
        assert!(pages.iter().any(|(n, _)| n == page), "{page}");
    }
    let run = &pages.iter().find(|(n, _)| n == "ig_run.md").unwrap().1;
    assert!(
        run.contains("--filter") && run.contains("--output"),
        "{run}"
    );
}

/// Every man page `cargo xtask man`, `ig man` and `cargo xtask dist` write
/// (one per command, `reference::man_pages`) renders with man-db without a single
/// groff warning (`--warnings=w`: every kind; groff's `all` leaves out
/// undefined macros), and shows its name and synopsis.
/// Held by tests that watch the host's events (the user guide's recipes)
/// and by tests that flood it with events of their own (man pages: every
/// groff process of a test tries dozens of library paths, thousands of
/// failed opens), so that the first do not see only the second.
pub static HOST_EVENTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn man_pages_render() {
    let _quiet = HOST_EVENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let pages = ig_cli::cli::reference::man_pages();
    // One page per command of the markdown reference.
    assert_eq!(pages.len(), ig_cli::cli::reference::markdown().len());
    let dir = tempfile::tempdir().unwrap();
    for (file, out) in pages {
        let name = file.strip_suffix(".1").unwrap().to_owned();
        let page = dir.path().join(&file);
        std::fs::write(&page, &out).unwrap();
        let man = Command::new("man")
            .args(["--warnings=w", "-l", "-P", "cat"])
            .arg(&page)
            .env("MANWIDTH", "100")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        let (shown, err) = (text(&man.stdout), text(&man.stderr));
        assert!(man.status.success() && err.is_empty(), "{name}.1: {err}");
        for word in ["NAME", "SYNOPSIS", &format!("{name}(1)")] {
            assert!(
                shown.contains(word),
                "{word} missing from {name}.1:\n{shown}"
            );
        }
        if name == "ig" {
            for word in ["ig-run(1)", "--auto-mount-filesystems"] {
                assert!(shown.contains(word), "{word} missing from ig.1:\n{shown}");
            }
        }
    }
}

#[test]
fn config_file_and_variables_set_flags_the_user_did_not_give() {
    let s = TestStore::new();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ig")).unwrap();
    // An authfile named by the config: logout edits that file.
    let auth = home.path().join("auth.json");
    std::fs::write(
        &auth,
        r#"{"auths":{"reg.example:5000":{"auth":"dTpw"},"keep.example":{"auth":"dTpw"}}}"#,
    )
    .unwrap();
    std::fs::write(
        home.path().join(".ig/config.yaml"),
        format!(
            "verbose: false\noperator:\n  oci:\n    authfile: {}\n    pull: never\n",
            auth.display()
        ),
    )
    .unwrap();
    let out = ig_home(&s, home.path())
        .args(["logout", "reg.example:5000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let left = std::fs::read_to_string(&auth).unwrap();
    assert!(
        !left.contains("reg.example") && left.contains("keep.example"),
        "{left}"
    );

    // pull: never from the file: a missing image is not fetched (the
    // registry 127.0.0.1:9 is not even contacted).
    let out = ig_home(&s, home.path())
        .args(["run", "127.0.0.1:9/nope:v1"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is not in the local store"),
        "{err}"
    );
    // The variable wins over the file, and the flag over both.
    let out = ig_home(&s, home.path())
        .args(["run", "127.0.0.1:9/nope:v1"])
        .env("INSPEKTOR_GADGET_OPERATOR_OCI_PULL", "always")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(err.contains("cannot reach registry 127.0.0.1:9"), "{err}");
    let out = ig_home(&s, home.path())
        .args(["run", "127.0.0.1:9/nope:v1", "--pull", "never"])
        .env("INSPEKTOR_GADGET_OPERATOR_OCI_PULL", "always")
        .output()
        .unwrap();
    assert!(text(&out.stderr).contains("is not in the local store"));

    // INSPEKTOR_GADGET_VERBOSE turns on debug messages.
    let dir = fixture_copy("minimal_tracer");
    let out = ig_home(&s, home.path())
        .args(["image", "build", dir.path().to_str().unwrap(), "-t", "m"])
        .env("INSPEKTOR_GADGET_VERBOSE", "true")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("debug: running"),
        "{}",
        text(&out.stderr)
    );

    // view shows the file with the variables applied; default every key.
    let out = ig_home(&s, home.path())
        .args(["config", "view"])
        .env("INSPEKTOR_GADGET_OPERATOR_OCI_INSECURE_REGISTRIES", "a:1,b")
        .output()
        .unwrap();
    let view: serde_json::Value = yaml_serde::from_slice(&out.stdout).unwrap();
    assert_eq!(view["operator"]["oci"]["pull"], "never", "{view}");
    assert_eq!(
        view["operator"]["oci"]["insecure-registries"],
        serde_json::json!(["a:1", "b"])
    );
    let out = ig_home(&s, home.path())
        .args(["config", "default"])
        .output()
        .unwrap();
    let def: serde_json::Value = yaml_serde::from_slice(&out.stdout).unwrap();
    assert_eq!(def["verbose"], false);
    assert_eq!(def["auto-mount-filesystems"], false);
    assert_eq!(def["operator"]["oci"]["pull"], "missing");
}

/// `operator.oci.public-keys` as a YAML list: each entry (a key file or
/// the PEM text itself) reaches `ig run` as one `--public-keys`, as the
/// repeated flag would. Here the signer's key is the second entry, given
/// inline, after a key that did not sign; without it the run is refused.
/// A value of the wrong shape is an error naming the key. Root: the
/// verified run loads the gadget.
#[test]
fn config_public_keys_list_verifies_a_signed_image() {
    require_root();
    let s = TestStore::new();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ig")).unwrap();
    let keypair = |name: &str| {
        let key = home.path().join(format!("{name}.pem"));
        let public = home.path().join(format!("{name}.pub"));
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl: {}", text(&out.stderr));
        let out = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl: {}", text(&out.stderr));
        (key, public)
    };
    let (a_key, a_pub) = keypair("a");
    let (_, b_pub) = keypair("b");
    let dir = fixture_copy("minimal_tracer");
    s.build(dir.path(), "signed:v1");
    let out = ig_home(&s, home.path())
        .args(["image", "sign", "signed:v1", "--key"])
        .arg(&a_key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    let config = home.path().join(".ig/config.yaml");
    let inline: String = std::fs::read_to_string(&a_pub)
        .unwrap()
        .lines()
        .map(|l| format!("        {l}\n"))
        .collect();
    std::fs::write(
        &config,
        format!(
            "operator:\n  oci:\n    verify-image: true\n    public-keys:\n      - {}\n      - |\n{inline}",
            b_pub.display()
        ),
    )
    .unwrap();
    let out = ig_home(&s, home.path())
        .args(["-v", "run", "signed:v1", "--timeout", "1"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("signature verified with"), "{err}");

    // Only the key that did not sign: refused, so the list was read.
    std::fs::write(
        &config,
        format!(
            "operator:\n  oci:\n    verify-image: true\n    public-keys: [{}]\n",
            b_pub.display()
        ),
    )
    .unwrap();
    let out = ig_home(&s, home.path())
        .args(["run", "signed:v1", "--timeout", "1"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("failed signature verification"),
        "{err}"
    );

    // A mapping is not a key: an error naming the key, not silence.
    std::fs::write(&config, "operator: {oci: {public-keys: {a: b}}}\n").unwrap();
    let out = ig_home(&s, home.path())
        .args(["run", "signed:v1", "--timeout", "1"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(&format!(
            "error: operator.oci.public-keys in {}: a mapping",
            config.display()
        )),
        "{err}"
    );
}

#[test]
fn a_bad_config_is_one_clear_error() {
    let s = TestStore::new();
    let home = tempfile::tempdir().unwrap();
    let bad = home.path().join("bad.yaml");
    std::fs::write(&bad, "verbose: [\n").unwrap();
    let out = ig_home(&s, home.path())
        .args(["--config", bad.to_str().unwrap(), "image", "list"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.starts_with(&format!("error: config file {}", bad.display())),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = ig_home(&s, home.path())
        .args(["--config=/nonexistent/c.yaml", "version"])
        .output()
        .unwrap();
    assert!(text(&out.stderr).contains("reading config file /nonexistent/c.yaml"));
    // The default file unreadable (here a directory; or /root's file for
    // a user whose HOME is still /root): no settings, no error.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join(".ig/config.yaml")).unwrap();
    let out = ig_home(&s, other.path())
        .args(["version"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(&bad, "auto-mount-filesystems: sometimes\n").unwrap();
    let out = ig_home(&s, home.path())
        .args(["--config", bad.to_str().unwrap(), "version"])
        .output()
        .unwrap();
    assert!(text(&out.stderr).contains("\"sometimes\" is not true or false"));
}

/// Runs `ig ARGS` on a pseudo-terminal (util-linux `script`) and returns
/// what the terminal showed.
fn on_terminal(s: &TestStore, args: &str, no_color: Option<&str>) -> String {
    let mut c = Command::new("script");
    c.args(["-qec", &format!("{} {args}", ig_bin()), "/dev/null"])
        .env("IG_STORE", s.path())
        .env("TERM", "xterm")
        .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    text(&c.output().unwrap().stdout)
}

#[test]
fn messages_are_colored_on_a_terminal_unless_no_color() {
    let s = TestStore::new();
    let shown = on_terminal(&s, "image inspect nope", None);
    assert!(shown.contains("\x1b[1;31merror:\x1b[0m image"), "{shown:?}");
    assert!(shown.contains("\x1b[1;36mhint:\x1b[0m"), "{shown:?}");
    let shown = on_terminal(&s, "image inspect nope", Some("1"));
    assert!(
        shown.contains("error: image") && !shown.contains('\x1b'),
        "{shown:?}"
    );
    // Not a terminal: never colored.
    let out = s.run(&["image", "inspect", "nope"]);
    assert!(!text(&out.stderr).contains('\x1b'));
    // Help follows the same rule (clap).
    let shown = on_terminal(&s, "--help", Some("1"));
    assert!(
        shown.contains("Usage:") && !shown.contains('\x1b'),
        "{shown:?}"
    );
}

#[test]
fn data_on_stdout_messages_on_stderr() {
    let s = TestStore::new();
    let dir = fixture_copy("minimal_tracer");
    let out = s.run(&[
        "-v",
        "image",
        "build",
        dir.path().to_str().unwrap(),
        "-t",
        "m",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("Successfully built"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.lines().all(|l| l.starts_with("debug: ")
            || l.starts_with("info: ")
            || l.starts_with("warning: ")
            || l.starts_with("  "))
            && stderr.contains("debug: "),
        "{stderr}"
    );
    // Without -v, no debug messages.
    let out = s.run(&["image", "build", dir.path().to_str().unwrap(), "-t", "m"]);
    assert!(
        !text(&out.stderr).contains("debug:"),
        "{}",
        text(&out.stderr)
    );
    // JSON on stdout parses; nothing else is there.
    let out = s.run(&["image", "inspect", "m", "-o", "json"]);
    let _: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
}

#[test]
fn auto_mount_filesystems_mounts_what_is_missing() {
    require_root();
    // In a mount namespace of its own, with bpffs, tracefs and debugfs
    // unmounted there, `ig --auto-mount-filesystems` mounts them again (and
    // the shell sharing its namespace sees them).
    let script = format!(
        "for d in /sys/fs/bpf /sys/kernel/tracing /sys/kernel/debug; do while mountpoint -q $d; do umount -l $d || exit 9; done; done; \
         mountpoint -q /sys/fs/bpf && exit 8; \
         {ig} --auto-mount-filesystems version >/dev/null || exit 7; \
         grep -E ' /sys/(fs/bpf|kernel/tracing|kernel/debug) ' /proc/self/mountinfo",
        ig = ig_bin()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        text(&out.stderr)
    );
    let info = text(&out.stdout);
    for (dir, fs) in [
        ("/sys/fs/bpf", "bpf"),
        ("/sys/kernel/tracing", "tracefs"),
        ("/sys/kernel/debug", "debugfs"),
    ] {
        assert!(
            info.lines()
                .any(|l| l.contains(&format!(" {dir} ")) && l.contains(&format!(" - {fs} "))),
            "{fs} not mounted on {dir}:\n{info}"
        );
    }
    // Mounted already: nothing to do, no error.
    let out = TestStore::new().run(&["--auto-mount-filesystems", "version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn run_help_as_nobody_lists_the_gadget_params() {
    require_root();
    let s = TestStore::new();
    s.build(&repo().join("tests/fixtures/minimal_tracer"), "minimal");
    // A store anyone may read.
    for e in walk(s.dir.path()) {
        let mode = if e.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&e, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(ig_bin())
        .args([
            "--store",
            s.path().to_str().unwrap(),
            "run",
            "minimal",
            "--help",
        ])
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    let help = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        help.contains("--value") && help.contains("Number copied into every event"),
        "{help}"
    );
    assert!(help.contains("--filter"), "{help}");
    // Without the image, help still works and says why params are missing.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(ig_bin())
        .args([
            "--store",
            s.path().to_str().unwrap(),
            "run",
            "absent",
            "--help",
            "--pull",
            "never",
        ])
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("parameters are not listed"),
        "{}",
        text(&out.stdout)
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_owned()];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn image_build_needs_no_repository() {
    require_root();
    outside::build_with_the_repository_hidden(Path::new(ig_bin()));
}

#[test]
fn trust_settings_come_from_the_config_file_and_variables() {
    // Upstream's keys operator.oci.verify-image and allowed-gadgets apply to
    // `ig run` like the flags; both refuse before anything is loaded, so
    // this needs no BPF.
    let s = TestStore::new();
    s.build(&repo().join("tests/fixtures/minimal_tracer"), "minimal");
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ig")).unwrap();
    std::fs::write(
        home.path().join(".ig/config.yaml"),
        "operator:\n  oci:\n    allowed-gadgets: [other, 'elsewhere/*']\n",
    )
    .unwrap();
    let out = ig_home(&s, home.path())
        .args(["run", "minimal", "--timeout", "1"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("is not in --allowed-gadgets (other, elsewhere/*)"),
        "{err}"
    );

    // A built image is not verified by default; the variable turns it on
    // (and wins over the file, which allows the image here).
    std::fs::write(
        home.path().join(".ig/config.yaml"),
        "operator:\n  oci:\n    allowed-gadgets: minimal\n    verify-image: false\n",
    )
    .unwrap();
    let out = ig_home(&s, home.path())
        .env("INSPEKTOR_GADGET_OPERATOR_OCI_VERIFY_IMAGE", "true")
        .args(["run", "minimal", "--timeout", "1"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("because --verify-image is set"), "{err}");

    // The flag wins over both.
    let out = ig_home(&s, home.path())
        .env("INSPEKTOR_GADGET_OPERATOR_OCI_VERIFY_IMAGE", "true")
        .args(["run", "minimal", "--timeout", "1", "--verify-image=false"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}
