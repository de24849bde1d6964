//! The Kubernetes manifests of `deploy/kubernetes/` (docs/kubernetes.md):
//! every one is valid against the Kubernetes API schema of a recent
//! release (`kubernetes-validate`, pinned in xtask and installed by
//! `cargo xtask setup --deps-only` / `cargo xtask test` into
//! target/tools/k8s-venv; missing, the test fails), and the DaemonSet's
//! command lines are ones this `ig` and `gadgetctl` accept, so that the
//! manifest and the binaries cannot drift apart. No cluster is needed (nor
//! available here): nothing is deployed.

use std::path::PathBuf;
use std::process::Command;

use yaml_serde::Value;

use super::common::{ig_bin, repo, text};

/// The Kubernetes release the manifests are checked against.
const KUBERNETES_VERSION: &str = "1.37.0";

fn manifests() -> Vec<PathBuf> {
    let dir = repo().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "manifests missing: {files:?}");
    files
}

fn validator() -> PathBuf {
    let p = repo().join("target/tools/k8s-venv/bin/kubernetes-validate");
    assert!(
        p.exists(),
        "{} is missing: `cargo xtask setup --deps-only` (or `cargo xtask test`) installs it",
        p.display()
    );
    p
}

fn validate(files: &[PathBuf]) -> std::process::Output {
    Command::new(validator())
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(files)
        .output()
        .unwrap()
}

#[test]
fn manifests_are_valid_kubernetes_objects() {
    let files = manifests();
    let out = validate(&files);
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{said}");
    for f in &files {
        assert!(
            said.contains(&format!("{} passed", f.display())),
            "{} not validated:\n{said}",
            f.display()
        );
    }
}

/// The validator does reject: a field the schema does not have, and a
/// capability list of the wrong type.
#[test]
fn the_validator_rejects_a_broken_daemonset() {
    let good = std::fs::read_to_string(repo().join("deploy/kubernetes/daemonset.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (what, from, to) in [
        ("unknown field", "hostPID: true", "hostPIDs: true"),
        ("wrong type", "drop: [\"ALL\"]", "drop: ALL"),
    ] {
        assert!(good.contains(from), "{from}");
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, good.replacen(from, to, 1)).unwrap();
        let out = validate(&[bad]);
        assert!(
            !out.status.success(),
            "{what} accepted: {}",
            text(&out.stdout)
        );
    }
}

fn daemonset() -> Value {
    let s = std::fs::read_to_string(repo().join("deploy/kubernetes/daemonset.yaml")).unwrap();
    yaml_serde::from_str(&s).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// `PROGRAM ARGS... --help` exits 0 only if every argument before `--help`
/// parses (clap rejects an unknown flag or a bad value before it looks at
/// `--help`): the arguments are checked without running anything.
fn parses(program: &str, args: &[String]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => Ok(()),
        _ => Err(text(&out.stderr)),
    }
}

fn gadgetctl_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gadgetctl")
}

#[test]
fn the_daemonset_runs_flags_ig_daemon_accepts() {
    let ds = daemonset();
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    let command = strings(&c["command"]);
    assert_eq!(command.len(), 1, "{command:?}");
    assert!(command[0].ends_with("/ig"), "{command:?}");
    let args = strings(&c["args"]);
    assert_eq!(args[0], "daemon", "{args:?}");
    parses(ig_bin(), &args).unwrap_or_else(|e| panic!("ig rejects {args:?}: {e}"));
    // The check can fail: a flag ig does not have is refused.
    let mut bad = args.clone();
    bad.push("--no-such-flag".into());
    assert!(parses(ig_bin(), &bad).is_err());

    // Listening where upstream's pods do, on the pod's loopback.
    assert!(
        args.contains(&"--host=tcp://127.0.0.1:8080".to_owned()),
        "{args:?}"
    );

    // Both probes call GetInfo with a gadgetctl command line gadgetctl
    // accepts, on the daemon's address.
    for probe in ["readinessProbe", "livenessProbe"] {
        let cmd = strings(&c[probe]["exec"]["command"]);
        assert!(cmd[0].ends_with("/gadgetctl"), "{probe}: {cmd:?}");
        assert_eq!(cmd.last().unwrap(), "version", "{probe}: {cmd:?}");
        assert!(cmd.contains(&"--remote-address=tcp://127.0.0.1:8080".to_owned()));
        parses(gadgetctl_bin(), &cmd[1..])
            .unwrap_or_else(|e| panic!("gadgetctl rejects {probe} {cmd:?}: {e}"));
    }
}

/// The paths the daemon's flags and HOST_ROOT name are volumes of the
/// host, so what must survive a pod restart does, and HOST_ROOT sees the
/// host's files.
#[test]
fn the_daemonsets_paths_are_host_volumes() {
    let ds = daemonset();
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let host_path = |volume: &str| -> String {
        pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"].as_str() == Some(volume))
            .and_then(|v| v["hostPath"]["path"].as_str())
            .unwrap_or_else(|| panic!("no hostPath volume {volume}"))
            .to_owned()
    };
    let mounts: Vec<(String, String)> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            let path = m["mountPath"].as_str().unwrap().to_owned();
            (path, host_path(m["name"].as_str().unwrap()))
        })
        .collect();
    // The host directory a container path is on, if a host volume.
    let on_host = |p: &str| -> Option<String> {
        mounts
            .iter()
            .filter(|(m, _)| p == m || p.starts_with(&format!("{m}/")))
            .max_by_key(|(m, _)| m.len())
            .map(|(m, h)| format!("{h}{}", &p[m.len()..]))
    };
    let args = strings(&c["args"]);
    for flag in ["--store=", "--state-dir="] {
        let dir = args
            .iter()
            .find_map(|a| a.strip_prefix(flag))
            .unwrap_or_else(|| panic!("{flag} missing: {args:?}"));
        assert!(
            on_host(dir).is_some(),
            "{flag}{dir} is not on a host volume"
        );
    }
    for path in ["/sys/fs/bpf", "/sys/kernel/tracing", "/sys/fs/cgroup"] {
        assert_eq!(on_host(path).as_deref(), Some(path), "{path}");
    }

    let env = c["env"].as_sequence().unwrap();
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"].as_str() == Some(name))
            .unwrap()
    };
    assert_eq!(
        var("NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("spec.nodeName")
    );
    let root = var("HOST_ROOT")["value"].as_str().unwrap();
    // What ig reads under HOST_ROOT is the host's own path.
    for host in [
        "/proc",
        "/run/containerd",
        "/run/docker.sock",
        "/usr/bin/runc",
    ] {
        let seen = on_host(&format!("{root}{host}"));
        assert_eq!(seen.as_deref(), Some(host), "{root}{host}");
    }
}
