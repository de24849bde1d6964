//! Gadgets made of operators, configured by `gadget.yaml` as upstream
//! writes it: custom parameters with patches, `operator:` sections,
//! images without an eBPF program. No privileges: the process operator
//! reads `/proc`, nothing is loaded into the kernel.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{TestStore, repo, text};

fn fixture(name: &str) -> std::path::PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// `ig ARGS` to its end, failed after `limit`: success, stdout, stderr
/// and how long it took.
fn run_bounded(s: &TestStore, args: &[&str], limit: Duration) -> (bool, String, String, Duration) {
    let started = Instant::now();
    let out = super::common::output_bounded(s.ig().args(args), limit);
    (
        out.status.success(),
        text(&out.stdout),
        text(&out.stderr),
        started.elapsed(),
    )
}

fn own_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_owned()
}

#[test]
fn custom_params_are_flags_and_their_patches_configure_the_operator() {
    let s = TestStore::new();
    s.build(&fixture("ops_custom_params"), "ops_custom_params");

    let help = text(&s.run(&["run", "ops_custom_params", "--help"]).stdout);
    for line in [
        "-e, --every <STRING>",
        "How often the table comes [default: 1m]",
        "--reports <STRING>",
        "How many tables before the end [default: 0]",
        "--view <MEMORY|SHORT>",
        "Which columns to show [default: short]",
    ] {
        assert!(help.contains(line), "{line:?} missing from:\n{help}");
    }

    // As written the table comes once a minute, for ever: only the patches
    // of --every and --reports make this end within the bound.
    let (ok, out, err, took) = run_bounded(
        &s,
        &[
            "run",
            "ops_custom_params",
            "-e",
            "100ms",
            "--reports",
            "2",
            "-o",
            "json",
        ],
        Duration::from_secs(8),
    );
    assert!(ok, "{err}");
    assert!(took >= Duration::from_millis(200), "{took:?}");
    let tables: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tables.len(), 2, "{out}");
    let me = u64::from(std::process::id());
    for t in &tables {
        let rows = t.as_array().unwrap();
        for r in rows {
            let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                ["comm", "k8s", "mountnsid", "pid", "runtime", "state"],
                "{r}"
            );
        }
        let mine = rows
            .iter()
            .find(|r| r["pid"] == me)
            .expect("our own process");
        assert_eq!(mine["comm"], own_comm(), "{mine}");
        assert!(
            ["R", "S"].contains(&mine["state"].as_str().unwrap()),
            "{mine}"
        );
    }

    // A value with a patch of its own: other fields, and an annotation
    // built with getConfig from what --every patched before it.
    let (ok, out, err, _) = run_bounded(
        &s,
        &[
            "run",
            "ops_custom_params",
            "--every=150ms",
            "--reports",
            "1",
            "--view",
            "memory",
            "-F",
            &format!("pid=={me}"),
        ],
        Duration::from_secs(8),
    );
    assert!(ok, "{err}");
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["PID", "NAME", "EVERY", "150MS", "MEMORYRSS"],
        "{out}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], me.to_string(), "{out}");
    assert_eq!(row[1], own_comm(), "{out}");
    assert!(
        row.last().unwrap().ends_with('B'),
        "the formatted RSS: {out}"
    );

    let out = s.run(&["run", "ops_custom_params", "--view", "wide"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("one of memory, short"),
        "{}",
        text(&out.stderr)
    );
    // A patched value the operator cannot use is an error before the run.
    let out = s.run(&["run", "ops_custom_params", "-e", "5"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("operator.process.interval: \"5\" has no unit"),
        "{err}"
    );
}

/// Issue 29: `--filter` and `--sort` take a column name as the table's
/// header shows it (`NAME` for `comm` here, any case) when one field has
/// it; two fields with one column name are an error naming both.
#[test]
fn filter_and_sort_take_a_unique_column_name() {
    let s = TestStore::new();
    s.build(&fixture("ops_custom_params"), "ops_custom_params");
    let me = own_comm();
    let (ok, out, err, _) = run_bounded(
        &s,
        &[
            "run",
            "ops_custom_params",
            "--every=100ms",
            "--reports",
            "1",
            "-o",
            "json",
            "--filter",
            &format!("name=={me}"),
            "--sort",
            "-PID",
        ],
        Duration::from_secs(8),
    );
    assert!(ok, "{err}");
    let rows: Vec<Value> = serde_json::from_str::<Value>(out.trim())
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    assert!(
        rows.iter()
            .any(|r| r["pid"] == u64::from(std::process::id())),
        "{out}"
    );
    assert!(rows.iter().all(|r| r["comm"] == me.as_str()), "{out}");
    let pids: Vec<u64> = rows.iter().map(|r| r["pid"].as_u64().unwrap()).collect();
    assert!(pids.is_sorted_by(|a, b| a >= b), "descending: {pids:?}");

    // A column name two fields have is refused, naming both; the full
    // name still works.
    for (flag, value) in [("--filter", "name==x"), ("--sort", "name")] {
        let out = s.run(&[
            "run",
            "ops_custom_params",
            "--annotate",
            "processes.state:columns.alias=name",
            flag,
            value,
        ]);
        assert_eq!(out.status.code(), Some(1), "{flag}");
        let err = text(&out.stderr);
        assert!(
            err.contains(
                "column name name is ambiguous in data source processes: name one of comm, state"
            ),
            "{flag}: {err}"
        );
    }
    let (ok, _, err, _) = run_bounded(
        &s,
        &[
            "run",
            "ops_custom_params",
            "--every=100ms",
            "--reports",
            "1",
            "--annotate",
            "processes.state:columns.alias=name",
            "--filter",
            &format!("comm=={me}"),
        ],
        Duration::from_secs(8),
    );
    assert!(ok, "{err}");
}

/// `gadget.yaml` in a fresh directory (a gadget of operators only).
fn gadget_dir(yaml: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("gadget.yaml"), yaml).unwrap();
    d
}

fn build_error(s: &TestStore, dir: &Path) -> String {
    let out = s.run(&["image", "build", dir.to_str().unwrap(), "-t", "bad"]);
    assert!(!out.status.success(), "built: {}", text(&out.stderr));
    let err = text(&out.stderr);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    errors[0].to_owned()
}

/// The line (from 1) of the first line of `text` holding `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn bad_templates_and_unknown_operators_are_refused_at_build_with_their_line() {
    let s = TestStore::new();
    let original = std::fs::read_to_string(fixture("ops_custom_params/gadget.yaml")).unwrap();

    let yaml = original.replace("\"custom.every\"", "\"custom.evry\"");
    let d = gadget_dir(&yaml);
    let file = d.path().join("gadget.yaml");
    let line = line_of(&yaml, "custom.evry");
    let e = build_error(&s, d.path());
    assert!(
        e.contains(&format!(
            "{}:{line}:13: getParamValue \"custom.evry\": no such parameter (this gadget's own: custom.every, custom.reports, custom.view;",
            file.display()
        )),
        "{e}"
    );

    let yaml = original.replace("call .getConfig", "call .getEnv");
    let d = gadget_dir(&yaml);
    let line = line_of(&yaml, "getEnv");
    let e = build_error(&s, d.path());
    assert!(
        e.contains(&format!(":{line}:")) && e.contains("calls .getEnv, which ig does not offer"),
        "{e}"
    );

    let yaml = original.replace("{{call .getParamValue \"custom.every\"}}", "{{ .every }}");
    let d = gadget_dir(&yaml);
    let e = build_error(&s, d.path());
    assert!(
        e.contains("template: column 1: {{ .every }} is not supported"),
        "{e}"
    );

    let yaml = original.replace("  process:\n    emitstats", "  proces:\n    emitstats");
    let d = gadget_dir(&yaml);
    let e = build_error(&s, d.path());
    assert_eq!(
        e,
        format!(
            "error: building gadget {}: {}:5:3: operator proces: ig has no such operator (ig's operators: cgroup, cli, ebpf, filter, formatters, limiter, LocalManager, process, processinfo, sort, uidgidresolver, wasm)",
            d.path().display(),
            d.path().join("gadget.yaml").display()
        )
    );

    // A patch that writes to an operator we do not have.
    let yaml = original.replace(
        "        operator:\n          process:\n            count",
        "        operator:\n          logs:\n            count",
    );
    let d = gadget_dir(&yaml);
    let e = build_error(&s, d.path());
    assert!(
        e.contains("the patch sets operator logs: ig has no such operator"),
        "{e}"
    );

    // Nothing to run at all.
    let d = gadget_dir("name: empty\n");
    let e = build_error(&s, d.path());
    assert!(e.ends_with("nothing to run"), "{e}");
    // Nothing reached the store.
    let list = text(&s.run(&["image", "list"]).stdout);
    assert!(!list.contains("bad"), "{list}");
}

#[test]
fn an_image_from_elsewhere_with_an_unknown_operator_is_refused_in_one_line() {
    let s = TestStore::new();
    let store = ig::image::Store::open(s.path()).unwrap();
    let yaml = b"name: elsewhere\noperator:\n  logs:\n    enabled: true\n  process:\n    emitstats: true\n";
    store
        .add_gadget_image(
            &ig::image::Reference::parse("elsewhere").unwrap(),
            ig::image::GadgetImage {
                config_yaml: yaml.to_vec(),
                ..Default::default()
            },
        )
        .unwrap();
    let out = s.run(&["run", "elsewhere"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(
        err.trim_end(),
        "error: reading gadget ghcr.io/inspektor-gadget/gadget/elsewhere:latest: gadget.yaml of ghcr.io/inspektor-gadget/gadget/elsewhere:latest:3:3: operator logs: ig has no such operator (ig's operators: cgroup, cli, ebpf, filter, formatters, limiter, LocalManager, process, processinfo, sort, uidgidresolver, wasm)"
    );
}

#[test]
fn an_image_without_ebpf_has_no_program_layer_and_inspect_says_so() {
    let s = TestStore::new();
    s.build(&fixture("ops_custom_params"), "ops_custom_params");
    let out = s.run(&["image", "inspect", "ops_custom_params", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ebpfProgram"], false);
    assert_eq!(v["operators"], serde_json::json!(["process"]));
    // Upstream's format: the config blob, no layer at all.
    assert_eq!(v["manifest"]["layers"], serde_json::json!([]));
    assert_eq!(
        v["manifest"]["config"]["mediaType"],
        "application/vnd.gadget.config.v1+yaml"
    );
    assert_eq!(
        v["manifest"]["artifactType"],
        "application/vnd.gadget.v1+binary"
    );

    let summary = text(&s.run(&["image", "inspect", "ops_custom_params"]).stdout);
    assert!(
        summary.contains("\neBPF:       none, a gadget of operators (process)\nLayers: none\n"),
        "{summary}"
    );
    let ds = text(
        &s.run(&[
            "image",
            "inspect",
            "ops_custom_params",
            "--show-datasources",
        ])
        .stdout,
    );
    assert!(
        ds.contains("Data source processes (operator process):"),
        "{ds}"
    );
    let fields: Vec<&str> = ds
        .lines()
        .skip_while(|l| !l.starts_with("Data source processes"))
        .skip(2)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    // The final schema: the container enrichment's fields too.
    for f in [
        "pid",
        "comm",
        "state",
        "mountnsid",
        "runtime.containerName",
        "k8s.podName",
    ] {
        assert!(fields.contains(&f), "{f} in {ds}");
    }
}

/// Data-source annotations that switch on operators ig does not have (as
/// upstream's advise_networkpolicy's `generate_networkpolicy.enable` and
/// `kubenameresolver.enable`) are said once per run, one warning per
/// family naming the data source and the keys, never per event; what ig
/// reads, what upstream's ig ignores too and field annotations are not
/// (the `metrics.collect` it reads says once why nothing is exported).
#[test]
fn annotations_for_operators_ig_lacks_are_warned_once_per_family() {
    let s = TestStore::new();
    s.build(&fixture("ops_annotations"), "ops_annotations");
    let (ok, out, err, _) = run_bounded(
        &s,
        &["run", "ops_annotations", "-o", "json"],
        Duration::from_secs(20),
    );
    assert!(ok, "{err}");
    // Two tables of every process: many events, and still one warning each.
    assert_eq!(out.lines().count(), 2, "{out}");
    let lines: Vec<&str> = err.lines().collect();
    let tail = ", so the output may differ from upstream's";
    assert_eq!(
        lines,
        [
            format!(
                "warning: data source processes: annotation generate_networkpolicy.enable ignored: it is for upstream's generate_networkpolicy operator, which ig does not have{tail}"
            ),
            format!(
                "warning: data source processes: annotation kubenameresolver.enable ignored: it is for upstream's kubenameresolver operator, which ig does not have{tail}"
            ),
            "warning: data source processes is annotated metrics.collect, but no metrics are served: --otel-metrics-listen serves them".to_owned(),
            "warning: data source processes is annotated metrics.collect, but none of its fields is a counter, gauge or histogram (metrics.type) and it has no metrics.implicit-counter.name: nothing to export".to_owned(),
        ],
        "{err}"
    );
}

/// `-o` per data source on a gadget with two (processes and cgroups):
/// each gets its own mode, those not named keep their default, a mode
/// outside a source's `cli.supported-output-modes` is refused with the
/// ones it supports, and a bare mode does not mix with per-source ones.
/// `--annotate` reaches the table of an operator's data source.
#[test]
fn output_modes_per_data_source_and_their_supported_modes() {
    let s = TestStore::new();
    s.build(&fixture("ops_two_sources"), "ops_two_sources");
    let limit = Duration::from_secs(20);
    let run = |args: &[&str]| {
        let mut all = vec!["run", "ops_two_sources"];
        all.extend_from_slice(args);
        run_bounded(&s, &all, limit)
    };
    let comm = own_comm();

    // processes as JSON (one array: a snapshot), cgroups not at all.
    let (ok, out, err, _) = run(&["-o", "processes:json,cgroups:none"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["comm"] == comm.as_str()),
        "{out}"
    );

    // processes not printed, cgroups in their default (a table).
    let (ok, out, err, _) = run(&["-o", "processes:none"]);
    assert!(ok, "{err}");
    let first = out.lines().next().unwrap_or_default();
    assert!(first.starts_with("CGROUPPATH"), "{out}");
    assert!(!out.contains(&comm) && !out.contains("COMM"), "{out}");

    // Without -o: both tables.
    let (ok, out, err, _) = run(&[]);
    assert!(ok, "{err}");
    assert!(out.contains("CGROUPPATH") && out.contains("COMM"), "{out}");

    // -o none: nothing.
    let (ok, out, err, _) = run(&["-o", "none"]);
    assert!(ok, "{err}");
    assert_eq!(out, "");

    // yaml is not among cgroups' modes.
    let (ok, out, err, _) = run(&["-o", "yaml"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains(
            "data source cgroups cannot be printed as yaml: it supports columns, json, none"
        ),
        "{err}"
    );
    let (ok, _, err, _) = run(&["-o", "cgroups:yaml"]);
    assert!(!ok && err.contains("cannot be printed as yaml"), "{err}");

    // Upstream's rule: MODE or DS:MODE,..., not both; unknown sources
    // and modes are named.
    let (ok, _, err, _) = run(&["-o", "json,cgroups:none"]);
    assert!(
        !ok && err.contains("mixes a mode for every data source"),
        "{err}"
    );
    let (ok, _, err, _) = run(&["-o", "procs:json"]);
    assert!(
        !ok && err.contains("no data source procs (the gadget has: processes, cgroups)"),
        "{err}"
    );
    let (ok, _, err, _) = run(&["-o", "advise"]);
    assert!(
        !ok && err.contains("\"advise\" is not an output mode"),
        "{err}"
    );
    // A mode ig has that these sources do not list.
    let (ok, _, err, _) = run(&["-o", "histogram"]);
    assert!(
        !ok && err.contains("data source processes cannot be printed as histogram"),
        "{err}"
    );

    // --annotate on the process operator's field.
    let (ok, out, err, _) = run(&[
        "-o",
        "cgroups:none",
        "--annotate",
        "processes.comm:columns.hidden=true",
    ]);
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap_or_default();
    assert!(header.contains("PID") && !header.contains("COMM"), "{out}");
    assert!(!out.contains(&comm), "{out}");

    // An instance spec's operator.oci.annotate and operator.cli.output
    // (upstream's keys), checked as --annotate is.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.yaml");
    let spec = |ann: &str| {
        format!(
            "apiVersion: 1\nkind: instance-spec\nimage: ops_two_sources\nname: two\nparamValues:\n  operator.oci.annotate: \"{ann}\"\n  operator.cli.output: \"cgroups:none\"\n"
        )
    };
    std::fs::write(&manifest, spec("processes.comm:columns.hidden=true")).unwrap();
    let m = manifest.to_str().unwrap();
    let (ok, out, err, _) = run_bounded(&s, &["run", "-f", m], limit);
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap_or_default();
    assert!(header.contains("PID") && !header.contains("COMM"), "{out}");
    std::fs::write(&manifest, spec("processes.nope:columns.hidden=true")).unwrap();
    let (ok, _, err, _) = run_bounded(&s, &["run", "-f", m], limit);
    assert!(
        !ok && err.contains("data source processes has no field nope (its fields: pid, comm,"),
        "{err}"
    );
}
