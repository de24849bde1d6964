//! CLI tests: run the real `ig` binary on temporary stores. They need clang,
//! llvm-strip and the libbpf headers for builds (installed by `.ci/run`),
//! but no BPF privileges: nothing here loads a program. `vmlinux.rs`
//! checks the `vmlinux.h` builds generate from this machine's kernel BTF;
//! `kubernetes.rs` the manifests of `deploy/kubernetes/`.

#[path = "../common/mod.rs"]
mod common;
mod kubernetes;
mod ops;
mod vmlinux;

use std::path::Path;

use common::{TestStore, fixture_copy, repo, text};

fn minimal() -> std::path::PathBuf {
    repo().join("tests/fixtures/minimal_tracer")
}

#[test]
fn help_teaches_and_version_names_the_author_api() {
    let s = TestStore::new();
    let out = s.run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in ["run", "image", "version", "--store"] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    let out = s.run(&["run", "--help"]);
    let help = text(&out.stdout);
    assert!(
        help.contains("--output") && help.contains("Examples:") && help.contains("jq"),
        "{help}"
    );
    // Issue 29: before an image is named, the flags every gadget has (the
    // gadget-independent operators') are listed too.
    for flag in [
        "-F, --filter <STRING>",
        "--sort <STRING>",
        "-c, --containername <STRING>",
        "-E, --filter-expr <STRING>",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    let out = s.run(&["version"]);
    assert!(out.status.success());
    let v = text(&out.stdout);
    assert!(
        v.contains(env!("CARGO_PKG_VERSION")) && v.contains("gadget author API"),
        "{v}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let s = TestStore::new();
    let out = s.run(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    let out = s.run(&["run", "x", "--pull", "never", "--flush-interval", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid duration"),
        "{}",
        text(&out.stderr)
    );
}

/// Issue 29: every duration takes upstream's (Go's) forms with a unit; a
/// bare number is never silently milliseconds. `--timeout` and
/// `--registry-timeout` keep upstream's bare seconds. Accepted values get
/// past parsing to the missing image (exit 1); refused ones are usage
/// errors (exit 2) that say what to write.
#[test]
fn durations_take_units_and_bare_numbers_are_never_milliseconds() {
    let s = TestStore::new();
    s.build(&minimal(), "minimal_tracer");
    s.build(
        &repo().join("tests/fixtures/topper_getpid"),
        "topper_getpid",
    );
    let accepted: &[&[&str]] = &[
        &["run", "absent", "-t", "3s"],
        &["run", "absent", "--timeout", "1m30s"],
        &["run", "absent", "--timeout", "500ms"],
        &["run", "absent", "--timeout", "2h"],
        &["run", "absent", "--timeout", "10"],
        &["run", "absent", "--timeout", "0"],
        &["run", "absent", "--flush-interval", "0"],
        &["run", "absent", "--flush-interval", "1.5s"],
        &["--registry-timeout", "1m30s", "run", "absent"],
        &["--registry-timeout", "45", "run", "absent"],
    ];
    for args in accepted {
        let out = s
            .ig()
            .args(*args)
            .args(["--pull", "never"])
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("is not in the local store"), "{args:?}: {err}");
    }
    let refused: &[(&[&str], &str)] = &[
        (
            &["run", "absent", "--flush-interval", "5"],
            "\"5\" has no unit: write 5s for seconds or 5ms for milliseconds",
        ),
        (
            &["run", "absent", "--timeout", "1.5"],
            "give a whole number (10) or a unit (500ms, 1.5s)",
        ),
        (
            &["run", "absent", "-t", "soon"],
            "invalid duration \"soon\"",
        ),
        (
            &[
                "run",
                "minimal_tracer",
                "--otel-metrics-print-interval",
                "5",
            ],
            "\"5\" has no unit: write 5s for seconds or 5ms for milliseconds",
        ),
        (
            &["run", "topper_getpid", "--map-fetch-interval", "5"],
            "\"5\" has no unit: write 5s for seconds or 5ms for milliseconds",
        ),
    ];
    for (args, want) in refused {
        let out = s
            .ig()
            .args(*args)
            .args(["--pull", "never"])
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // Gadget parameters with a unit are taken (the run then stops at the
    // missing privileges or later, never at parsing).
    let out = s.run(&[
        "run",
        "topper_getpid",
        "--map-fetch-interval",
        "1m30s",
        "--help",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The same rule in an instance spec's paramValues.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: 1\nkind: instance-spec\nimage: topper_getpid\nparamValues:\n  operator.oci.ebpf.map-fetch-interval: \"5\"\n",
    )
    .unwrap();
    let out = s.run(&["run", "-f", manifest.to_str().unwrap(), "--pull", "never"]);
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("\"5\" has no unit"), "{err}");
    // And in the configuration file.
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, "operator:\n  oci:\n    registry-timeout: 1m30s\n").unwrap();
    let out = s.run(&[
        "--config",
        cfg.to_str().unwrap(),
        "run",
        "absent",
        "--pull",
        "never",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    std::fs::write(&cfg, "operator:\n  oci:\n    registry-timeout: soon\n").unwrap();
    let out = s.run(&[
        "--config",
        cfg.to_str().unwrap(),
        "run",
        "absent",
        "--pull",
        "never",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("soon"), "{}", text(&out.stderr));
}

#[test]
fn build_list_tag_remove_round_trip() {
    let s = TestStore::new();
    s.build(&minimal(), "mygadget:v1");
    let out = s.run(&["image", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "DIGEST", "CREATED"]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..2], ["mygadget", "v1"], "{list}");
    assert_eq!(row[2].len(), 12, "short digest: {list}");
    // Issue 29: the list as JSON, with upstream's keys and full values.
    for (mode, lines) in [("json", 1), ("jsonpretty", 8)] {
        let out = s.run(&["image", "list", "-o", mode]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let json = text(&out.stdout);
        assert_eq!(json.lines().count(), lines, "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        assert_eq!(
            v[0]["Repository"],
            "ghcr.io/inspektor-gadget/gadget/mygadget"
        );
        assert_eq!(v[0]["Tag"], "v1");
        assert!(
            v[0]["Digest"].as_str().unwrap().starts_with("sha256:")
                && v[0]["Digest"].as_str().unwrap().len() == 71,
            "{v}"
        );
        assert!(v[0]["Created"].as_str().unwrap().contains('T'), "{v}");
    }

    let out = s.run(&["image", "tag", "mygadget:v1", "localhost:5000/other:v2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&s.run(&["image", "list", "--no-trunc"]).stdout);
    assert!(
        list.contains("localhost:5000/other")
            && list.contains("ghcr.io/inspektor-gadget/gadget/mygadget"),
        "{list}"
    );
    assert!(list.contains("sha256:"), "{list}");

    let out = s.run(&["image", "remove", "mygadget:v1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&s.run(&["image", "list"]).stdout);
    assert!(!list.contains("mygadget"), "{list}");
    let out = s.run(&["image", "remove", "mygadget:v1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not in the local store"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bare_name_and_full_reference_are_the_same_image() {
    let s = TestStore::new();
    s.build(&minimal(), "minimal_tracer");
    let list = text(&s.run(&["image", "list", "--no-trunc"]).stdout);
    assert!(
        list.contains("ghcr.io/inspektor-gadget/gadget/minimal_tracer"),
        "{list}"
    );
    // Default tag is the gadget.yaml name.
    let s2 = TestStore::new();
    let out = s2.run(&["image", "build", minimal().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ghcr.io/inspektor-gadget/gadget/minimal_tracer:latest@sha256:")
    );
}

/// The image is a standard OCI layout that skopeo reads, in upstream's
/// format: index → manifest with the gadget artifact type, config = the
/// gadget.yaml bytes, layer = the eBPF object.
#[test]
fn skopeo_reads_the_store_and_media_types_match_upstream() {
    let s = TestStore::new();
    s.build(&minimal(), "minimal_tracer");
    let reference = "ghcr.io/inspektor-gadget/gadget/minimal_tracer:latest";
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:{reference}", s.path().display()))
        .output()
        .expect("skopeo is installed (apt-get install skopeo)");
    assert!(out.status.success(), "skopeo: {}", text(&out.stderr));
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        index["annotations"]["org.opencontainers.image.title"],
        "minimal_tracer"
    );
    let m = &index["manifests"][0];
    assert_eq!(m["platform"]["os"], "linux");
    assert_eq!(m["platform"]["architecture"], "amd64");
    let blob = |digest: &str| {
        let hex = digest.strip_prefix("sha256:").unwrap();
        std::fs::read(s.path().join("blobs/sha256").join(hex)).unwrap()
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(m["digest"].as_str().unwrap())).unwrap();
    assert_eq!(manifest["artifactType"], "application/vnd.gadget.v1+binary");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.gadget.config.v1+yaml"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.gadget.ebpf.program.v1+binary"
    );
    assert!(manifest["annotations"]["org.opencontainers.image.created"].is_string());
    let config = blob(manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(
        config,
        std::fs::read(minimal().join("gadget.yaml")).unwrap()
    );
    let object = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    assert_eq!(&object[..4], b"\x7fELF");
    let info = ig::bpf::object::ObjectInfo::parse(&object).unwrap();
    assert!(!info.btf.is_empty(), "the layer keeps .BTF");
}

fn index_json(store: &Path) -> Vec<u8> {
    std::fs::read(store.join("index.json")).unwrap()
}

#[test]
fn compile_error_shows_clang_diagnostics_and_leaves_the_store_alone() {
    let s = TestStore::new();
    s.build(&minimal(), "existing");
    let before = index_json(&s.path());
    let dir = fixture_copy("minimal_tracer");
    let src = dir.path().join("program.bpf.c");
    let mut code = std::fs::read_to_string(&src).unwrap();
    code.push_str("\nint broken(void) { return undeclared_identifier; }\n");
    std::fs::write(&src, code).unwrap();
    let out = s.run(&[
        "image",
        "build",
        dir.path().to_str().unwrap(),
        "-t",
        "broken",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("program.bpf.c:") && err.contains("undeclared_identifier"),
        "clang's diagnostics: {err}"
    );
    assert!(err.contains("error: building gadget"), "{err}");
    assert_eq!(index_json(&s.path()), before, "the store is untouched");
}

#[test]
fn malformed_gadget_yaml_names_file_and_line() {
    let s = TestStore::new();
    let dir = fixture_copy("minimal_tracer");
    std::fs::write(
        dir.path().join("gadget.yaml"),
        "name: x\ndatasources:\n  minimal:\n    fields: [oops\n",
    )
    .unwrap();
    let out = s.run(&["image", "build", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("gadget.yaml:5:") || err.contains("gadget.yaml:4:"),
        "{err}"
    );
    assert!(
        !s.path().join("index.json").exists() || !text(&index_json(&s.path())).contains("\"x"),
        "{err}"
    );

    std::fs::write(dir.path().join("gadget.yaml"), "description: no name\n").unwrap();
    let out = s.run(&["image", "build", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("`name` is required"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn missing_tool_gets_a_hint() {
    let s = TestStore::new();
    let out = s
        .ig()
        .env("IG_CLANG", "/nonexistent/clang")
        .args(["image", "build", minimal().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot run /nonexistent/clang") && err.contains("hint: "),
        "{err}"
    );
}

#[test]
fn unknown_image_fails_with_a_hint() {
    let s = TestStore::new();
    s.build(&minimal(), "present");
    let out = s.run(&["run", "absent", "--pull", "never"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("ghcr.io/inspektor-gadget/gadget/absent:latest is not in the local store"),
        "{err}"
    );
    assert!(err.contains("hint: build it with `ig image build"), "{err}");
    assert!(!err.contains("did you mean"), "nothing is near: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Issue 29: a typo of a stored name says the image is not in the local
/// store and suggests the nearest names, with `--pull never` and with the
/// default policy, whose pull fails here (no network, or the name does not
/// exist upstream): the store comes first, then why the registry could
/// not give it. Each command gets the cure that fits it.
#[test]
fn a_typo_suggests_the_nearest_stored_names() {
    let s = TestStore::new();
    s.build(&minimal(), "trace_exec");
    s.build(&minimal(), "trace_open");
    s.build(&minimal(), "something_else");
    let out = s.run(&["run", "trace_exce", "--pull", "never"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: cannot run trace_exce: image ghcr.io/inspektor-gadget/gadget/trace_exce:latest is not in the local store"),
        "{err}"
    );
    assert!(
        err.contains("hint: did you mean trace_exec? (build it with"),
        "{err}"
    );
    // The default policy pulls, and the pull fails: without a network
    // the name does not resolve, with one ghcr.io has no trace_exce.
    let out = s.run(&["run", "trace_exce", "--registry-timeout", "10s"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: image ghcr.io/inspektor-gadget/gadget/trace_exce:latest is not in the local store"),
        "{err}"
    );
    assert!(err.contains(", and pulling it failed: "), "{err}");
    assert!(err.contains("hint: did you mean trace_exec?"), "{err}");
    // `ig image remove`: nothing to build or pull, only a name to correct.
    let out = s.run(&["image", "remove", "trace_opne"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("is not in the local store"), "{err}");
    assert!(err.contains("hint: did you mean trace_open?"), "{err}");
    assert!(!err.contains("build") && !err.contains("pull"), "{err}");
    let out = s.run(&["image", "remove", "nosuch"]);
    let err = text(&out.stderr);
    assert!(err.contains("is not in the local store"), "{err}");
    assert!(
        err.contains("hint: `ig image list` lists the store"),
        "{err}"
    );
    assert!(!err.contains("build") && !err.contains("pull"), "{err}");
    // `ig image push` of a name the store lacks: tag it first.
    let out = s.run(&["image", "push", "localhost:5000/trace_exec:v1"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("ig image tag LOCAL localhost:5000/trace_exec:v1"),
        "{err}"
    );
}

/// Issue 29: clap's tips must fit ig. `ig run --bogus` is an unknown flag,
/// not a value to pass after `--`, and the usage line shows [OPTIONS].
#[test]
fn unknown_flags_get_no_misleading_tips() {
    let s = TestStore::new();
    let out = s.run(&["run", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("unexpected argument '--bogus'"), "{err}");
    assert!(!err.contains("-- --bogus"), "{err}");
    assert!(err.contains("Usage: ig run [OPTIONS]"), "{err}");
    let out = s.run(&["image", "remove", "--bogus"]);
    let err = text(&out.stderr);
    assert!(!err.contains("-- --bogus"), "{err}");
}

/// Issue 29: `ig man` prints ig's man page (a command's with its path),
/// `--dir` writes them all; they are the pages the reference renders.
#[test]
fn man_prints_the_man_pages() {
    let s = TestStore::new();
    let out = s.run(&["man"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(
        page.contains("\n.TH ig 1 ") && page.contains("ig\\-run(1)"),
        "{page}"
    );
    let out = s.run(&["man", "image", "build"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\n.TH ig-image-build 1 "),
        "{}",
        text(&out.stdout)
    );
    let out = s.run(&["man", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no command `ig nosuch`: the pages are ig, ig-run,"),
        "{}",
        text(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let out = s.run(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ig.1")).unwrap(),
        page
    );
    for p in [
        "ig-run.1",
        "ig-image-build.1",
        "ig-man.1",
        "ig-completion.1",
    ] {
        assert!(dir.path().join(p).is_file(), "{p}");
    }
}

#[test]
fn concurrent_builds_into_one_store_both_land() {
    let s = TestStore::new();
    let dir = minimal();
    let mut children: Vec<_> = ["one", "two", "three"]
        .iter()
        .map(|tag| {
            s.ig()
                .args(["image", "build", dir.to_str().unwrap(), "-t", tag])
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    let list = text(&s.run(&["image", "list"]).stdout);
    for tag in ["one", "two", "three"] {
        assert!(
            list.lines().any(|l| l.starts_with(tag)),
            "{tag} missing:\n{list}"
        );
    }
}

#[test]
fn image_list_on_a_missing_store_is_empty_not_an_error() {
    let s = TestStore::new();
    let out = s.run(&["image", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "REPOSITORY  TAG  DIGEST  CREATED");
    assert!(!s.path().exists(), "listing does not create the store");
}

/// The leaf fields `ig run IMAGE --help` lists, per data source.
fn help_fields(help: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    let mut current = None;
    for line in help.lines() {
        if let Some(ds) = line
            .strip_prefix("  \"")
            .and_then(|l| l.strip_suffix("\" (data source):"))
        {
            current = Some(ds.to_owned());
            out.insert(ds.to_owned(), Vec::new());
        } else if let Some(ds) = &current
            && line.starts_with("    ")
            && !line.starts_with("     ")
            && line.contains("  (")
        {
            let name = line.trim_start().split("  (").next().unwrap().to_owned();
            out.get_mut(ds).unwrap().push(name);
        } else if !line.starts_with("    ") {
            current = None;
        }
    }
    out
}

/// Issue 29: `ig run IMAGE --help` lists every field of the final schema
/// (after the operators: `timestamp`, `error`, `proc.creds.user`,
/// `runtime.*`, `k8s.*`), per data source, with its type, column name and
/// description; `ig image inspect --show-datasources` shows the same
/// schema. Nothing is loaded: no privileges needed.
#[test]
fn run_help_and_inspect_list_the_final_schema() {
    let s = TestStore::new();
    s.build(&minimal(), "minimal_tracer");
    let out = s.run(&["run", "minimal_tracer", "--help"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    for want in [
        "Available data sources / fields (what --fields, -F/--filter and --sort take",
        "  \"minimal\" (data source):\n",
        "\n    timestamp  (string",
        "\n    error  (string",
        "\n    proc.creds.user  (string",
        "\n    proc.comm  (string, column COMM)\n",
        "\n    runtime.containerName  (string",
        "\n    k8s.podName  (string",
        "\n    value  (uint32)\n      Value of the \"value\" parameter\n",
        // The examples still end the help.
        "Examples:",
    ] {
        assert!(help.contains(want), "{want:?} missing from:\n{help}");
    }
    let listed = help_fields(&help);
    let mut names = listed["minimal"].clone();
    assert!(names.is_sorted(), "sorted by name, as upstream: {names:?}");
    // Raw values an operator replaced stay out of sight, as in tables.
    assert!(!names.iter().any(|n| n.starts_with("__")), "{names:?}");

    // `-h` stays short and says where the fields are.
    let short = text(&s.run(&["run", "minimal_tracer", "-h"]).stdout);
    assert!(
        short.contains(
            "The fields of each data source (for --fields, -F/--filter, --sort): --help."
        ) && !short.contains("(data source):"),
        "{short}"
    );

    // The same final schema in `ig image inspect --show-datasources`.
    let out = s.run(&[
        "image",
        "inspect",
        "minimal_tracer",
        "--show-datasources",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ds = &v["dataSources"][0];
    assert_eq!(ds["name"], "minimal");
    assert_eq!(ds["structName"], "event");
    let mut inspected: Vec<String> = ds["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["hidden"] != true && f["type"] != "struct")
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    inspected.sort();
    names.sort();
    assert_eq!(inspected, names);
    let user = ds["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "proc.creds.user")
        .unwrap();
    assert_eq!(user["type"], "string", "{user}");
    let summary = text(
        &s.run(&["image", "inspect", "minimal_tracer", "--show-datasources"])
            .stdout,
    );
    for want in [
        "Data source minimal (struct event):",
        "runtime.containerName",
        "timestamp",
    ] {
        assert!(summary.contains(want), "{want} in {summary}");
    }
}

/// Two-phase parsing: the gadget's `GADGET_PARAM`s become flags of
/// `ig run IMAGE`, with types and defaults from the object.
#[test]
fn run_help_lists_the_gadget_parameters() {
    let s = TestStore::new();
    s.build(&minimal(), "minimal_tracer");
    let out = s.run(&["run", "minimal_tracer", "--help"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    assert!(help.contains("Gadget parameters:"), "{help}");
    assert!(
        help.contains("--value <UINT32>")
            && help.contains("Number copied into every event [default: 42]"),
        "{help}"
    );
    // The full name, for manifests (`ig run -f`).
    assert!(
        help.contains("Full name (in manifests): operator.oci.ebpf.value"),
        "{help}"
    );
    for flag in ["--pid <UINT32>", "--uid <UINT32>", "--comm <STRING>"] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
    // Without an image there are no gadget flags, and the help says why.
    let out = s.run(&["run", "absent", "--pull", "never", "--help"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("not listed"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn bad_gadget_parameter_values_name_the_flag() {
    let s = TestStore::new();
    s.build(&minimal(), "minimal_tracer");
    for (args, want) in [
        (
            &["--pid", "abc"][..],
            "'--pid <UINT32>': \"abc\" is not a number",
        ),
        (&["--value", "4294967296"][..], "out of range for uint32"),
        (
            &["--comm", "a-very-long-command-name"][..],
            "longer than 15 bytes",
        ),
        (&["--nope", "1"][..], "unexpected argument '--nope'"),
    ] {
        let out = s
            .ig()
            .args(["run", "minimal_tracer"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // A gadget flag on a missing image: the real problem is the image.
    let out = s.run(&["run", "absent", "--pull", "never", "--pid", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not in the local store"),
        "{}",
        text(&out.stderr)
    );
}

/// A `gadget.yaml` of 200,000 nested `[` (200 KB) is refused in linear
/// time with its place, before the YAML parser, whose cost is quadratic in
/// the nesting (a 100 KB one took 71 s in a debug build). The 30 s bound
/// catches a hang, it is not a timing test.
#[test]
fn deeply_nested_gadget_yaml_is_refused_at_once() {
    let s = TestStore::new();
    let dir = fixture_copy("minimal_tracer");
    std::fs::write(
        dir.path().join("gadget.yaml"),
        format!("name: nested\ndescription: {}\n", "[".repeat(200_000)),
    )
    .unwrap();
    let out = std::process::Command::new("timeout")
        .arg("30")
        .arg(common::ig_bin())
        .env("IG_STORE", s.path())
        .args([
            "image",
            "build",
            dir.path().to_str().unwrap(),
            "-t",
            "nested",
        ])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "gadget.yaml:2:78: flow collections ([...] and {...}) nest deeper than 64 levels"
        ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// An image is untrusted until its signature is checked: `ig run IMAGE`
/// and `ig run IMAGE --help` refuse an unsigned image before they parse
/// any of it. The image's `gadget.yaml` nests 100 `[` (which parsing
/// reports as nesting deeper than 64 levels) and its eBPF object is not
/// ELF: the refusal must be the verification's, whether verification is
/// asked by the flag or by the config variable. Before, the flags of the
/// gadget were made from its `gadget.yaml` first, so the parse error was
/// reported instead.
#[test]
fn an_unsigned_image_is_refused_before_its_gadget_yaml_is_parsed() {
    let s = TestStore::new();
    let store = ig::image::Store::open(s.path()).unwrap();
    store
        .add_gadget_image(
            &ig::image::Reference::parse("hostile").unwrap(),
            ig::image::GadgetImage {
                config_yaml: format!("name: hostile\ndescription: {}\n", "[".repeat(100))
                    .into_bytes(),
                ebpf_object: b"not an ELF object".to_vec(),
                ..Default::default()
            },
        )
        .unwrap();
    const PARSED: &str = "nest deeper than 64 levels";
    // Unverified (as asked), it is parsed: the marker is real.
    let out = s.run(&["run", "hostile", "--verify-image=false"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(PARSED), "{err}");

    // clap wraps help text: compare words.
    let refused = |err: &str, why: &str| {
        let err = err.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            err.contains("refusing to run ghcr.io/inspektor-gadget/gadget/hostile:latest")
                && err.contains(why)
                && err.contains("is not signed"),
            "{err}"
        );
        assert!(!err.contains(PARSED), "parsed before verifying: {err}");
    };
    let out = s.run(&["run", "hostile", "--verify-image"]);
    assert_eq!(out.status.code(), Some(1));
    refused(&text(&out.stderr), "--verify-image is set");
    // Another key than the built-in one, given before `run`'s image.
    let key = s.path().join("none.pub");
    std::fs::write(&key, "").unwrap();
    let out = s.run(&[
        "run",
        "--public-keys",
        key.to_str().unwrap(),
        "hostile",
        "--verify-image",
        "--pid",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(!err.contains(PARSED), "parsed before verifying: {err}");
    assert!(err.contains("none.pub"), "{err}");
    // From the config variable, as the flag.
    let out = s
        .ig()
        .env("INSPEKTOR_GADGET_OPERATOR_OCI_VERIFY_IMAGE", "true")
        .args(["run", "hostile"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    refused(&text(&out.stderr), "--verify-image is set");
    // `--help` lists no parameter of an image it refuses, and says why.
    let out = s.run(&["run", "hostile", "--verify-image", "--help"]);
    let help = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        help.contains("The gadget's own parameters are not listed"),
        "{help}"
    );
    refused(&help, "--verify-image is set");
}

/// Output that could not be written is an error outside `ig run` too:
/// `> /dev/full` gives exit 1 and one line naming the cause (before,
/// these commands printed nothing and exited 0). A reader that went away
/// is not an error.
#[test]
fn commands_whose_output_cannot_be_written_fail() {
    let s = TestStore::new();
    s.build(&minimal(), "minimal");
    for args in [
        &["image", "list"][..],
        &["image", "inspect", "minimal"],
        &["version"],
        &["--help"],
        &["config", "default"],
        &["completion", "bash"],
    ] {
        let out = s
            .ig()
            .args(args)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(
            err.trim_end(),
            "error: writing to standard output: No space left on device (os error 28)",
            "{args:?}"
        );
        // A closed pipe: nothing to report.
        let mut child = s
            .ig()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "", "{args:?}");
    }
}

/// `ig run -f`: where the manifest comes from, what is wrong with it, and
/// that an image argument with it is a usage error. The manifests name an
/// image the store lacks, so each run ends at the instance's error: that
/// the manifest was read (from a file, standard input or a URL) is what
/// is checked.
#[test]
fn run_f_reads_a_manifest_from_a_file_stdin_or_a_url() {
    use std::io::{Read as _, Write as _};
    let s = TestStore::new();
    let manifest = "apiVersion: 1\nkind: instance-spec\nimage: absent-gadget\nname: only\n";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.yaml");
    std::fs::write(&file, manifest).unwrap();
    let expect_instance_error = |out: std::process::Output, what: &str| {
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("error: instance only: cannot run absent-gadget"),
            "{what}: {err}"
        );
        assert!(err.contains("hint: build it with"), "{what}: {err}");
    };
    expect_instance_error(
        s.run(&["run", "-f", file.to_str().unwrap(), "--pull", "never"]),
        "file",
    );
    // Standard input.
    let mut child = s
        .ig()
        .args(["run", "-f", "-", "--pull", "never"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    expect_instance_error(child.wait_with_output().unwrap(), "stdin");
    // A URL: a one-shot HTTP server in this test, which records the
    // request it got.
    let serve = |status: &'static str, body: &'static str| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut req = [0u8; 4096];
            let n = conn.read(&mut req).unwrap();
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes()).unwrap();
            conn.write_all(body.as_bytes()).unwrap();
            String::from_utf8_lossy(&req[..n]).into_owned()
        });
        (format!("http://127.0.0.1:{port}/instances.yaml"), server)
    };
    let (url, server) = serve(
        "200 OK",
        "apiVersion: 1\nkind: instance-spec\nimage: absent-gadget\nname: only\n",
    );
    expect_instance_error(s.run(&["run", "-f", &url, "--pull", "never"]), "url");
    let request = server.join().unwrap();
    assert!(
        request.starts_with("GET /instances.yaml HTTP/1.1"),
        "{request}"
    );
    let (url, server) = serve("404 Not Found", "");
    let out = s.run(&["run", "-f", &url, "--pull", "never"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "error: reading the manifest {url}: downloading {url}: the server answered 404"
        )),
        "{err}"
    );
    server.join().unwrap();
}

#[test]
fn run_f_refuses_bad_manifests_and_an_image_next_to_it() {
    let s = TestStore::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.yaml");
    let f = file.to_str().unwrap();
    // An image and a manifest: a usage error, and nothing is read.
    std::fs::write(&file, "").unwrap();
    for args in [
        &["run", "-f", f, "trace_exec"][..],
        &["run", "trace_exec", "--file", f][..],
    ] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("cannot be used with"), "{err}");
    }
    let cases: &[(&str, &str)] = &[
        ("", "the manifest holds no instance spec"),
        (
            "apiVersion: 1\nkind: instance-spec\nimage: a\n---\napiVersion: 1\nkind: other\nimage: b\n",
            "document 2: kind \"other\" is not \"instance-spec\"",
        ),
        (
            "apiVersion: 1\nkind: instance-spec\nimage: a\nname: Upper\n",
            "document 1: instance name \"Upper\" is not 1 to 32",
        ),
        (
            "apiVersion: 1\nkind: instance-spec\nimage: a\nparamValue: {}\n",
            "document 1: unknown field `paramValue`",
        ),
    ];
    for (text_, want) in cases {
        std::fs::write(&file, text_).unwrap();
        let out = s.run(&["run", "-f", f]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("error: reading the manifest {f}: {want}")),
            "{err}"
        );
    }
    let out = s.run(&["run", "-f", "/nonexistent/m.yaml"]);
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "reading the manifest /nonexistent/m.yaml: reading /nonexistent/m.yaml: No such file"
        ),
        "{err}"
    );
}
