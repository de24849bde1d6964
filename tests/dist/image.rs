//! The container image of `cargo xtask image` (issue 28):
//! `target/dist/ig-image-VERSION.tar`, which `cargo xtask test` builds after
//! `cargo xtask dist` (missing, these tests fail and say how to make it).
//!
//! - the archive itself: an OCI layout and a docker `manifest.json` over
//!   the same blobs, whose digests are right; one layer holding exactly
//!   the dist `ig` and `gadgetctl` at `/usr/bin`, 0755 and root's; the
//!   labels and annotations;
//! - `docker load` of it into a dockerd the test starts, and the labels
//!   `docker image inspect` shows;
//! - `ctr image import` into a containerd the test starts, then `ctr run`
//!   with the DaemonSet's container spec, read from
//!   `deploy/kubernetes/daemonset.yaml` and translated field by field
//!   ([`translate`]: a field it does not know fails the test, so the
//!   manifest cannot grow a setting this test ignores). From the host,
//!   `gadgetctl` reaches the daemon in the pod's network namespace (as
//!   `kubectl port-forward` does) and sees an exec of the host and one in a
//!   second container, enriched with that container's names by the daemon
//!   through `HOST_ROOT`: what proves the manifest's capabilities and
//!   mounts are enough.
//!
//! The daemons (containerd, dockerd) are those of `tests/kernel/runtimes.rs`:
//! started once per test binary under a temporary directory and stopped by
//! pid when it exits.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::runtimes::{self, run_ok};
use crate::text;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The archive `cargo xtask image` wrote.
fn archive() -> PathBuf {
    let p = repo().join(format!(
        "target/dist/ig-image-{}.tar",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(
        p.is_file(),
        "{} is missing: run `cargo xtask image` (or `cargo xtask test`, which builds it)",
        p.display()
    );
    p
}

/// The archive's files by name.
fn archive_files() -> std::collections::BTreeMap<String, (u32, Vec<u8>)> {
    let bytes = std::fs::read(archive()).unwrap();
    let mut a = tar::Archive::new(&bytes[..]);
    let mut files = std::collections::BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mode = e.header().mode().unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        files.insert(path, (mode, data));
    }
    files
}

fn digest(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

fn blob<'a>(files: &'a std::collections::BTreeMap<String, (u32, Vec<u8>)>, d: &str) -> &'a [u8] {
    let name = format!("blobs/{}", d.replace(':', "/"));
    let (_, b) = files
        .get(&name)
        .unwrap_or_else(|| panic!("{name} missing from the archive"));
    assert_eq!(digest(b), d, "{name} does not match its digest");
    b
}

/// The default tag and the labels every image carries.
fn tag() -> String {
    format!("localhost/ig:{}", env!("CARGO_PKG_VERSION"))
}

fn check_labels(labels: &Value, what: &str) {
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION"),
        "{what}: {labels}"
    );
    assert_eq!(
        labels["org.opencontainers.image.source"],
        env!("CARGO_PKG_REPOSITORY"),
        "{what}: {labels}"
    );
    let rev = labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap_or_default();
    let head = run_ok(
        Command::new("git")
            .arg("-C")
            .arg(repo())
            .args(["rev-parse", "HEAD"]),
    );
    // The commit the binaries were built from: this checkout's, or an
    // older one when the image was not rebuilt since.
    assert!(
        rev.len() >= 40 && rev[..40].chars().all(|c| c.is_ascii_hexdigit()),
        "{what}: revision {rev:?}"
    );
    if !rev.starts_with(head.trim()) {
        eprintln!("note: the image is of {rev}, HEAD is {}", head.trim());
    }
}

/// Issue 28: one layer, exactly `/usr/bin/ig` and `/usr/bin/gadgetctl`
/// (the dist binaries, byte for byte) and their directories, all 0755 and
/// owned by root, readable and runnable by anyone; the entrypoint is `ig`;
/// version, source and revision as config labels and manifest
/// annotations; the OCI layout and docker's manifest.json name the same
/// blobs, whose digests are right.
#[test]
fn the_image_holds_the_static_binaries_only_readable_by_anyone() {
    let files = archive_files();
    assert_eq!(
        files["oci-layout"].1,
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()
    );
    let index: Value = serde_json::from_slice(&files["index.json"].1).unwrap();
    let m = &index["manifests"][0];
    assert_eq!(m["annotations"]["io.containerd.image.name"], tag().as_str());
    assert_eq!(
        m["platform"],
        json!({"architecture": "amd64", "os": "linux"})
    );
    let manifest: Value =
        serde_json::from_slice(blob(&files, m["digest"].as_str().unwrap())).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    check_labels(&manifest["annotations"], "manifest annotations");
    let config: Value =
        serde_json::from_slice(blob(&files, manifest["config"]["digest"].as_str().unwrap()))
            .unwrap();
    check_labels(&config["config"]["Labels"], "config labels");
    assert_eq!(config["config"]["Entrypoint"], json!(["/usr/bin/ig"]));
    assert_eq!(config["config"]["User"], Value::Null, "runs as root");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let gz = blob(&files, layers[0]["digest"].as_str().unwrap());
    let mut layer = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut layer)
        .unwrap();
    assert_eq!(config["rootfs"]["diff_ids"], json!([digest(&layer)]));

    // docker's view of the same blobs.
    let docker: Value = serde_json::from_slice(&files["manifest.json"].1).unwrap();
    assert_eq!(
        docker,
        json!([{
            "Config": format!("blobs/{}", manifest["config"]["digest"].as_str().unwrap().replace(':', "/")),
            "RepoTags": [tag()],
            "Layers": [format!("blobs/{}", layers[0]["digest"].as_str().unwrap().replace(':', "/"))],
        }])
    );

    let mut entries = Vec::new();
    let mut t = tar::Archive::new(&layer[..]);
    for e in t.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let h = e.header();
        let (mode, uid, gid) = (h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap());
        assert_eq!((uid, gid), (0, 0), "{path}");
        // Anyone may read and run it (a pod with runAsUser other than 0
        // still starts the binary).
        assert_eq!(mode & 0o7777, 0o755, "{path}: {mode:o}");
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if let Some(name) = path.strip_prefix("usr/bin/").filter(|n| !n.is_empty()) {
            let dist = repo().join("target/dist").join(name);
            assert!(
                data == std::fs::read(&dist).unwrap(),
                "{path} is not {}",
                dist.display()
            );
        }
        entries.push(path.trim_end_matches('/').to_owned());
    }
    assert_eq!(
        entries,
        ["usr", "usr/bin", "usr/bin/gadgetctl", "usr/bin/ig"],
        "nothing but the binaries"
    );
}

/// `docker load` (the docker.io of Debian, on a dockerd of the test's own)
/// takes the archive, and `docker image inspect` shows the labels and the
/// entrypoint.
#[test]
fn docker_loads_the_image_and_shows_its_labels() {
    let d = runtimes::dockerd();
    let out = run_ok(d.docker().arg("load").arg("-i").arg(archive()));
    assert!(out.contains(&tag()), "docker load: {out}");
    struct Rm<'a>(&'a runtimes::Dockerd);
    impl Drop for Rm<'_> {
        fn drop(&mut self) {
            let _ = self.0.docker().args(["image", "rm", &tag()]).output();
        }
    }
    let _rm = Rm(d);
    let inspect = run_ok(d.docker().args(["image", "inspect", &tag()]));
    let v: Value = serde_json::from_str(&inspect).unwrap();
    check_labels(&v[0]["Config"]["Labels"], "docker image inspect");
    assert_eq!(v[0]["Config"]["Entrypoint"], json!(["/usr/bin/ig"]));
    assert_eq!(v[0]["Os"], "linux");
    assert_eq!(v[0]["Architecture"], "amd64");
}

/// The DaemonSet's pod spec and its one container.
fn daemonset_pod() -> (Value, Value) {
    let s = std::fs::read_to_string(repo().join("deploy/kubernetes/daemonset.yaml")).unwrap();
    let ds: yaml_serde::Value = yaml_serde::from_str(&s).unwrap();
    let ds: Value = serde_json::to_value(ds).unwrap();
    let pod = ds["spec"]["template"]["spec"].clone();
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "one container: {containers:?}");
    let c = containers[0].clone();
    (pod, c)
}

/// Linux capability numbers (linux/capability.h), for the ones ctr and
/// Kubernetes name.
const CAPS: &[(&str, u32)] = &[
    ("CHOWN", 0),
    ("DAC_OVERRIDE", 1),
    ("DAC_READ_SEARCH", 2),
    ("FOWNER", 3),
    ("FSETID", 4),
    ("KILL", 5),
    ("SETGID", 6),
    ("SETUID", 7),
    ("SETPCAP", 8),
    ("LINUX_IMMUTABLE", 9),
    ("NET_BIND_SERVICE", 10),
    ("NET_BROADCAST", 11),
    ("NET_ADMIN", 12),
    ("NET_RAW", 13),
    ("IPC_LOCK", 14),
    ("IPC_OWNER", 15),
    ("SYS_MODULE", 16),
    ("SYS_RAWIO", 17),
    ("SYS_CHROOT", 18),
    ("SYS_PTRACE", 19),
    ("SYS_PACCT", 20),
    ("SYS_ADMIN", 21),
    ("SYS_BOOT", 22),
    ("SYS_NICE", 23),
    ("SYS_RESOURCE", 24),
    ("SYS_TIME", 25),
    ("SYS_TTY_CONFIG", 26),
    ("MKNOD", 27),
    ("LEASE", 28),
    ("AUDIT_WRITE", 29),
    ("AUDIT_CONTROL", 30),
    ("SETFCAP", 31),
    ("MAC_OVERRIDE", 32),
    ("MAC_ADMIN", 33),
    ("SYSLOG", 34),
    ("WAKE_ALARM", 35),
    ("BLOCK_SUSPEND", 36),
    ("AUDIT_READ", 37),
    ("PERFMON", 38),
    ("BPF", 39),
    ("CHECKPOINT_RESTORE", 40),
];

fn cap_bit(name: &str) -> u64 {
    let n = CAPS
        .iter()
        .find(|(c, _)| *c == name)
        .unwrap_or_else(|| panic!("unknown capability {name}"))
        .1;
    1 << n
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// What `ctr run` needs to run the DaemonSet's container as the kubelet
/// would, and what the test checks afterwards.
#[derive(Debug, Default)]
struct Translated {
    image: String,
    /// Flags of `ctr run` (before the image).
    flags: Vec<String>,
    /// command + args.
    argv: Vec<String>,
    /// The exact capability mask the daemon must have.
    caps: u64,
    /// The probes' commands (run in the container with `ctr task exec`).
    readiness: Vec<String>,
    liveness: Vec<String>,
    grace: u64,
}

/// The test's value of `spec.nodeName` (the downward API's NODE_NAME).
const NODE: &str = "ig-test-node";

/// The DaemonSet's container spec as `ctr run` flags, every field handled
/// or refused: a field added to the manifest fails here until the test
/// translates it. `state` replaces the hostPath `/var/lib/ig` (the only
/// volume not mounted from the host's own path: the test must not write
/// the host's store); `run_mask` is an empty directory laid read-only over
/// `/run` (ctr's default spec mounts a tmpfs there, which the kubelet does
/// not: without the mask a write to `/run` would pass here and fail in a
/// cluster).
fn translate(pod: &Value, c: &Value, state: &Path, run_mask: &Path) -> Translated {
    let mut t = Translated::default();
    for (k, v) in pod.as_object().unwrap() {
        match k.as_str() {
            // Scheduling and API identity: no effect on the container.
            "serviceAccountName" | "tolerations" | "priorityClassName" | "containers"
            | "volumes" => {}
            // No token volume: ctr mounts none either.
            "automountServiceAccountToken" => assert_eq!(v, false),
            // The node's pid namespace: the one containerd (started by
            // this test) runs in, ours. Not /proc/1's: on a host where pid
            // 1 is not readable (this sandbox's), runc cannot join it.
            "hostPID" => {
                if v == true {
                    t.flags
                        .push(format!("--with-ns=pid:/proc/{}/ns/pid", std::process::id()));
                }
            }
            "hostNetwork" => {
                if v == true {
                    t.flags.push("--net-host".into());
                }
            }
            "terminationGracePeriodSeconds" => t.grace = v.as_u64().unwrap(),
            other => panic!("pod spec field {other} is not translated to ctr run"),
        }
    }
    // ctr's default capabilities: those the spec's `drop: [ALL]` removes.
    let default_spec: Value =
        serde_json::from_str(&run_ok(runtimes::containerd().ctr().args(["oci", "spec"]))).unwrap();
    let defaults = strs(&default_spec["process"]["capabilities"]["bounding"]);
    assert_eq!(default_spec["process"]["user"], json!({"uid": 0, "gid": 0}));
    assert_eq!(default_spec["process"]["noNewPrivileges"], true);
    let volumes = pod["volumes"].as_array().unwrap();
    for (k, v) in c.as_object().unwrap() {
        match k.as_str() {
            "name" => {}
            "image" => t.image = v.as_str().unwrap().to_owned(),
            // The image is imported, never pulled.
            "imagePullPolicy" => assert_ne!(v, "Always"),
            "command" | "args" => {}
            "env" => {
                for e in v.as_array().unwrap() {
                    let name = e["name"].as_str().unwrap();
                    let value = if let Some(s) = e["value"].as_str() {
                        s.to_owned()
                    } else if e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName" {
                        NODE.to_owned()
                    } else {
                        panic!("env {name}: {e} is not translated")
                    };
                    t.flags.push(format!("--env={name}={value}"));
                }
            }
            "readinessProbe" | "livenessProbe" => {
                let cmd = strs(&v["exec"]["command"]);
                if k == "readinessProbe" {
                    t.readiness = cmd;
                } else {
                    t.liveness = cmd;
                }
            }
            "resources" => {
                for (kind, r) in v.as_object().unwrap() {
                    assert_eq!(kind, "requests", "resources.{kind} is not translated");
                    for (res, q) in r.as_object().unwrap() {
                        match res.as_str() {
                            // The kubelet's cpu.shares for a request.
                            "cpu" => {
                                let m: u64 = q
                                    .as_str()
                                    .unwrap()
                                    .strip_suffix('m')
                                    .unwrap()
                                    .parse()
                                    .unwrap();
                                t.flags
                                    .push(format!("--cpu-shares={}", (m * 1024 / 1000).max(2)));
                            }
                            // A memory request sets no limit on the node.
                            "memory" => {}
                            other => panic!("resources.requests.{other} is not translated"),
                        }
                    }
                }
            }
            "securityContext" => {
                for (sk, sv) in sv_object(v) {
                    match sk.as_str() {
                        // ctr 1.6's `run` has no --user: it runs as the
                        // image's user, root (checked in /proc below).
                        "runAsUser" | "runAsGroup" => assert_eq!(sv, 0, "{sk}"),
                        "runAsNonRoot" => assert_eq!(sv, false),
                        "privileged" => {
                            if sv == true {
                                t.flags.push("--privileged".into());
                            }
                        }
                        // ctr sets no_new_privs unless --allow-new-privs.
                        "allowPrivilegeEscalation" => {
                            if sv == true {
                                t.flags.push("--allow-new-privs".into());
                            }
                        }
                        "readOnlyRootFilesystem" => {
                            if sv == true {
                                t.flags.push("--read-only".into());
                            }
                        }
                        // ctr applies no seccomp or AppArmor profile unless
                        // asked (--seccomp, --apparmor-*).
                        "seccompProfile" | "appArmorProfile" => {
                            assert_eq!(sv["type"], "Unconfined", "{sk}")
                        }
                        "capabilities" => {
                            let drop = strs(&sv["drop"]);
                            assert_eq!(drop, ["ALL"], "drop ALL, then add");
                            let add = strs(&sv["add"]);
                            for name in &add {
                                t.caps |= cap_bit(name);
                                t.flags.push(format!("--cap-add=CAP_{name}"));
                            }
                            // ctr has no `ALL`: drop each default not added.
                            for d in &defaults {
                                let name = d.strip_prefix("CAP_").unwrap();
                                if !add.iter().any(|a| a == name) {
                                    t.flags.push(format!("--cap-drop={d}"));
                                }
                            }
                        }
                        other => panic!("securityContext.{other} is not translated"),
                    }
                }
            }
            "volumeMounts" => {
                for m in v.as_array().unwrap() {
                    let name = m["name"].as_str().unwrap();
                    let vol = volumes
                        .iter()
                        .find(|v| v["name"] == name)
                        .unwrap_or_else(|| panic!("no volume {name}"));
                    let host = vol["hostPath"]["path"]
                        .as_str()
                        .unwrap_or_else(|| panic!("volume {name} is not a hostPath"));
                    let src = if host == "/var/lib/ig" {
                        state.to_owned()
                    } else {
                        PathBuf::from(host)
                    };
                    match vol["hostPath"]["type"].as_str() {
                        Some("Directory") => assert!(src.is_dir(), "{host} is not a directory"),
                        Some("DirectoryOrCreate") => std::fs::create_dir_all(&src).unwrap(),
                        other => panic!("hostPath type {other:?} is not translated"),
                    }
                    let mut options = vec!["rbind"];
                    options.push(if m["readOnly"] == true { "ro" } else { "rw" });
                    options.push(match m["mountPropagation"].as_str() {
                        None | Some("None") => "rprivate",
                        Some("HostToContainer") => "rslave",
                        Some("Bidirectional") => "rshared",
                        Some(other) => panic!("mountPropagation {other}"),
                    });
                    for f in m.as_object().unwrap().keys() {
                        assert!(
                            ["name", "mountPath", "readOnly", "mountPropagation"]
                                .contains(&f.as_str()),
                            "volumeMounts.{f} is not translated"
                        );
                    }
                    t.flags.push(format!(
                        "--mount=type=bind,src={},dst={},options={}",
                        src.display(),
                        m["mountPath"].as_str().unwrap(),
                        options.join(":")
                    ));
                }
            }
            other => panic!("container field {other} is not translated to ctr run"),
        }
    }
    t.flags.push(format!(
        "--mount=type=bind,src={},dst=/run,options=rbind:ro",
        run_mask.display()
    ));
    // Kubernetes: command replaces the entrypoint, args the image's cmd.
    t.argv = strs(&c["command"]);
    t.argv.extend(strs(&c["args"]));
    t
}

fn sv_object(v: &Value) -> Vec<(String, Value)> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The ig container: killed, deleted, its image removed on drop (every
/// path, panics included).
struct IgPod {
    id: String,
    image: String,
    log: PathBuf,
}

impl IgPod {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `cmd` in the container, as the kubelet runs an exec probe.
    fn exec(&self, n: &mut u32, cmd: &[String]) -> std::process::Output {
        *n += 1;
        runtimes::containerd()
            .ctr()
            .args(["task", "exec", "--exec-id", &format!("probe{n}"), &self.id])
            .args(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for IgPod {
    fn drop(&mut self) {
        runtimes::delete_container(&self.id);
        let c = runtimes::containerd();
        let _ = c.ctr().args(["image", "rm", &self.image]).output();
        // The kubelet-style pod cgroup runc made in every hierarchy.
        if let Ok(dir) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in dir.flatten() {
                let _ = std::fs::remove_dir(h.path().join(pod_cgroup(&self.id)));
            }
        }
    }
}

/// The pod's cgroup, as the kubelet makes it for a pod with requests and
/// no limits (QoS class burstable); the container's is under it.
fn pod_cgroup(id: &str) -> String {
    format!("kubepods/burstable/pod{id}-uid")
}

/// `/proc/PID/status` field `key` (its value, trimmed).
fn status_field(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

/// A short unique program name (comm keeps 15 bytes).
fn marker(prefix: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}{:x}",
        (t ^ u128::from(std::process::id()) << 40) % 0xffff_ffff_ff
    )
}

/// Issue 28, item 3: the image runs under containerd with exactly the
/// DaemonSet's container spec; the readiness and liveness probes pass in
/// the container; from the host, `gadgetctl` in the pod's network
/// namespace (what `kubectl port-forward` does) runs trace_exec through
/// the daemon and sees a uniquely named exec of the host (no container,
/// `k8s.node` empty) and one inside a second, CRI-annotated container,
/// with that container's id, names and `k8s.node` = NODE_NAME: container
/// enrichment done inside the daemon's container through `HOST_ROOT`. The
/// daemon has exactly the capabilities the manifest adds, runs as root
/// with no_new_privs, and stops cleanly on SIGTERM within the grace
/// period.
#[test]
fn the_daemonset_spec_runs_on_containerd_and_sees_host_and_container_execs() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        text(&uid.stdout).trim(),
        "0",
        "needs root (containerd, BPF)"
    );
    let ctrd = runtimes::containerd();
    let (pod, c) = daemonset_pod();
    let dir = tempfile::Builder::new()
        .prefix("ig-test-k8spod-")
        .tempdir()
        .unwrap();
    let state = dir.path().join("var-lib-ig");
    let run_mask = dir.path().join("run-mask");
    std::fs::create_dir_all(&run_mask).unwrap();
    let t = translate(&pod, &c, &state, &run_mask);
    assert_eq!(
        t.image,
        tag(),
        "daemonset.yaml must name the image `cargo xtask image` tags"
    );

    // trace_exec in the store the pod sees (its --store under the volume).
    let store_flag = t
        .argv
        .iter()
        .find_map(|a| a.strip_prefix("--store="))
        .expect("--store in the DaemonSet's args");
    let host_store = state.join(
        Path::new(store_flag)
            .strip_prefix("/var/lib/ig")
            .expect("the store on the ig-state volume"),
    );
    let built = Command::new(repo().join("target/dist/ig"))
        .args(["image", "build", "-t", "trace_exec"])
        .arg(repo().join("gadgets/trace_exec"))
        .env("IG_STORE", &host_store)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built.stderr));

    let out = run_ok(ctrd.ctr().args(["image", "import"]).arg(archive()));
    assert!(out.contains(&t.image), "ctr image import: {out}");
    let id = runtimes::unique("igpod");
    let log = dir.path().join("ig.log");
    let ig = IgPod {
        id: id.clone(),
        image: t.image.clone(),
        log: log.clone(),
    };
    let mut run = ctrd.ctr();
    run.args(["run", "-d"])
        .arg(format!("--log-uri=file://{}", log.display()))
        .arg(format!("--cgroup=/{}/{id}", pod_cgroup(&id)))
        .args(&t.flags)
        .arg(&t.image)
        .arg(&id)
        .args(&t.argv);
    eprintln!("{run:?}");
    run_ok(&mut run);
    let pid = runtimes::init_pid(&id);

    // The kubelet's readiness probe, until it passes.
    let mut n = 0;
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let o = ig.exec(&mut n, &t.readiness);
        if o.status.success() {
            break;
        }
        assert!(
            Instant::now() < end,
            "not ready within 60 s: {}\ndaemon log:\n{}",
            text(&o.stderr),
            ig.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let live = ig.exec(&mut n, &t.liveness);
    assert!(live.status.success(), "liveness: {}", text(&live.stderr));

    // As the kubelet would have set it up: root, no_new_privs, exactly the
    // added capabilities, no seccomp filter, the host's pid namespace.
    assert_eq!(
        status_field(pid, "Uid").split_whitespace().next(),
        Some("0")
    );
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "Seccomp"), "0");
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        let got = u64::from_str_radix(&status_field(pid, set), 16).unwrap();
        assert_eq!(got, t.caps, "{set} {got:x} != {:x}", t.caps);
    }
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap(),
        std::fs::read_link("/proc/self/ns/pid").unwrap()
    );
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
        std::fs::read_link("/proc/self/ns/net").unwrap(),
        "the pod's own network namespace (no hostNetwork)"
    );

    // The second container, annotated as the CRI plugin does, running a
    // uniquely named program (a copy of busybox: an exec, not an applet).
    let in_pod = marker("igc");
    let rootfs = runtimes::rootfs();
    std::fs::copy(rootfs.join("bin/busybox"), rootfs.join("bin").join(&in_pod)).unwrap();
    let pod_name = runtimes::unique("web");
    let app = runtimes::Pod::start(
        &runtimes::PodSpec::new(runtimes::unique("igapp"), "ns-k8simg", &pod_name, "app"),
        &[
            "/bin/sh",
            "-c",
            &format!("while true; do /bin/{in_pod} 2>/dev/null; sleep 0.2; done"),
        ],
    );
    let on_host = marker("igh");
    let host_prog = dir.path().join(&on_host);
    std::fs::copy("/bin/true", &host_prog).unwrap();

    // gadgetctl of the host, in the pod's network namespace.
    let mut ctl = Command::new("nsenter");
    ctl.arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_gadgetctl"))
        .args(["--remote-address", "tcp://127.0.0.1:8080"])
        .args(["run", "trace_exec", "-o", "json", "--timeout", "8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = ctl.spawn().unwrap();
    let end = Instant::now() + Duration::from_secs(8);
    while Instant::now() < end {
        let _ = Command::new(&host_prog).status();
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "gadgetctl: {}\ndaemon log:\n{}",
        text(&out.stderr),
        ig.log()
    );
    let events: Vec<Value> = text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let find = |comm: &str| {
        events
            .iter()
            .find(|e| e["proc"]["comm"] == comm)
            .unwrap_or_else(|| {
                let comms: BTreeSet<&str> = events
                    .iter()
                    .filter_map(|e| e["proc"]["comm"].as_str())
                    .collect();
                panic!(
                    "no exec of {comm} among {} events ({comms:?})\ndaemon log:\n{}",
                    events.len(),
                    ig.log()
                )
            })
    };
    let host = find(&on_host);
    assert_eq!(host["runtime"]["containerId"], "", "{host}");
    assert_eq!(host["k8s"]["node"], "", "{host}");
    let e = find(&in_pod);
    assert_eq!(
        e["runtime"]["containerId"],
        app.id.as_str(),
        "{e}\ndaemon log:\n{}",
        ig.log()
    );
    assert_eq!(e["runtime"]["runtimeName"], "containerd", "{e}");
    assert_eq!(e["k8s"]["podName"], pod_name.as_str(), "{e}");
    assert_eq!(e["k8s"]["namespace"], "ns-k8simg", "{e}");
    assert_eq!(e["k8s"]["containerName"], "app", "{e}");
    assert_eq!(e["k8s"]["node"], NODE, "{e}");
    drop(app);

    // SIGTERM, as the kubelet stops a pod: the daemon exits 0 within the
    // grace period (`ctr task delete` fails with the task's exit code).
    run_ok(ctrd.ctr().args(["task", "kill", "-s", "TERM", &id]));
    let end = Instant::now() + Duration::from_secs(t.grace);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < end,
            "the daemon did not stop within {} s of SIGTERM:\n{}",
            t.grace,
            ig.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let del = ctrd.ctr().args(["task", "delete", &id]).output().unwrap();
    assert!(
        del.status.success(),
        "the daemon's exit: {:?} {}\n{}",
        del.status,
        text(&del.stderr),
        ig.log()
    );
    drop(ig);
}
