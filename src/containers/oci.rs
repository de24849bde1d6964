//! What the runtimes' own files say about a container, parsed: the OCI
//! bundle's `config.json` annotations and runc's `state.json`, read with
//! upstream's rules for containerd (`io.kubernetes.cri.*`) and cri-o
//! (`io.kubernetes.pod.*`, `io.kubernetes.container.name`,
//! `io.kubernetes.cri-o.*`), and `io.container.manager=libpod` for podman.
//!
//! Pure: bytes in, values out. Finding the files (the runc state
//! directories, the shim's working directory) is [`super::Detector`]'s.

use std::collections::BTreeMap;

use super::Runtime;

/// Annotations of a bundle, by key.
pub type Annotations = BTreeMap<String, String>;

/// A container id as runc accepts it (upstream's syntax): letters, digits
/// and `_+.-`, not `.` or `..`, at most 1024 bytes. Not only 64 hex:
/// `ctr run ... igt1` is a valid id.
pub fn is_container_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 1024
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'.' | b'-'))
}

/// Why a runtime's state or bundle file cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OciError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(String),
    /// A key the document must have is missing.
    #[error("no {0:?} in the document")]
    Missing(&'static str),
}

/// The `annotations` object of an OCI `config.json` (empty without one;
/// values that are not strings are skipped).
pub fn parse_config_annotations(config: &[u8]) -> Result<Annotations, OciError> {
    let v: serde_json::Value =
        serde_json::from_slice(config).map_err(|e| OciError::Json(e.to_string()))?;
    let mut out = Annotations::new();
    if let Some(obj) = v.get("annotations").and_then(|a| a.as_object()) {
        for (k, v) in obj {
            if let Some(s) = v.as_str() {
                out.insert(k.clone(), s.to_owned());
            }
        }
    }
    Ok(out)
}

/// What runc's `<root>/<id>/state.json` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuncState {
    /// The container id.
    pub id: String,
    /// The pid of its init.
    pub init_pid: u32,
    /// The init's start time in clock ticks since boot (field 22 of
    /// `/proc/PID/stat`): tells the init from a later process that reused
    /// its pid.
    pub init_start: u64,
    /// The bundle directory (runc keeps it as the label `bundle=DIR`).
    pub bundle: Option<String>,
    /// The bundle's annotations (runc keeps them as `key=value` labels).
    pub annotations: Annotations,
}

/// Parse a runc `state.json`.
pub fn parse_runc_state(state: &[u8]) -> Result<RuncState, OciError> {
    let v: serde_json::Value =
        serde_json::from_slice(state).map_err(|e| OciError::Json(e.to_string()))?;
    let id = v
        .get("id")
        .and_then(|i| i.as_str())
        .ok_or(OciError::Missing("id"))?
        .to_owned();
    let init_pid = v
        .get("init_process_pid")
        .and_then(serde_json::Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .ok_or(OciError::Missing("init_process_pid"))?;
    let init_start = v
        .get("init_process_start")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let mut bundle = None;
    let mut annotations = Annotations::new();
    let labels = v
        .pointer("/config/labels")
        .and_then(|l| l.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    for l in labels.iter().filter_map(|l| l.as_str()) {
        let Some((k, val)) = l.split_once('=') else {
            continue;
        };
        if k == "bundle" {
            bundle = Some(val.to_owned());
        } else {
            annotations.insert(k.to_owned(), val.to_owned());
        }
    }
    Ok(RuncState {
        id,
        init_pid,
        init_start,
        bundle,
        annotations,
    })
}

/// Kubernetes metadata of a container (upstream's `BasicK8sMetadata` plus
/// what a node can know). Empty strings where no source said.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct K8sMeta {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    #[serde(rename = "podName")]
    pub pod_name: String,
    /// The container's name in the pod.
    #[serde(rename = "containerName")]
    pub container_name: String,
    /// The pod's uid.
    #[serde(rename = "podUID")]
    pub pod_uid: String,
}

impl K8sMeta {
    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.namespace.is_empty()
            && self.pod_name.is_empty()
            && self.container_name.is_empty()
            && self.pod_uid.is_empty()
    }
}

/// What annotations say, by upstream's rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The runtime the annotations are from (containerd, cri-o) or podman.
    pub runtime: Option<Runtime>,
    /// A pod's sandbox (pause) container: not listed, as upstream.
    pub sandbox: bool,
    /// The Kubernetes metadata.
    pub k8s: K8sMeta,
    /// The container's image.
    pub image: String,
    /// The pod's sandbox container id.
    pub sandbox_id: String,
}

// containerd's CRI annotations.
const CRI_TYPE: &str = "io.kubernetes.cri.container-type";
const CRI_CONTAINER: &str = "io.kubernetes.cri.container-name";
const CRI_POD: &str = "io.kubernetes.cri.sandbox-name";
const CRI_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
const CRI_UID: &str = "io.kubernetes.cri.sandbox-uid";
const CRI_IMAGE: &str = "io.kubernetes.cri.image-name";
const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
// cri-o's (kubelet's label names, and cri-o's own).
const MANAGER: &str = "io.container.manager";
const K8S_POD: &str = "io.kubernetes.pod.name";
const K8S_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const K8S_UID: &str = "io.kubernetes.pod.uid";
const K8S_CONTAINER: &str = "io.kubernetes.container.name";
const CRIO_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
const CRIO_IMAGE: &str = "io.kubernetes.cri-o.ImageName";
const CRIO_SANDBOX_ID: &str = "io.kubernetes.cri-o.SandboxID";

/// Apply upstream's annotation resolvers: `io.container.manager=cri-o`
/// selects cri-o's keys, the presence of `io.kubernetes.cri.container-type`
/// containerd's; `io.container.manager=libpod` alone says podman. Any
/// other bundle (docker's, plain runc's) resolves to nothing.
pub fn resolve(a: &Annotations) -> Resolved {
    let get = |k: &str| a.get(k).cloned().unwrap_or_default();
    let manager = a.get(MANAGER).map(String::as_str);
    let keys = if manager == Some("cri-o") {
        Some((
            Runtime::CriO,
            CRIO_TYPE,
            K8S_CONTAINER,
            K8S_POD,
            K8S_NAMESPACE,
            K8S_UID,
            CRIO_IMAGE,
            CRIO_SANDBOX_ID,
        ))
    } else if a.contains_key(CRI_TYPE) {
        Some((
            Runtime::Containerd,
            CRI_TYPE,
            CRI_CONTAINER,
            CRI_POD,
            CRI_NAMESPACE,
            CRI_UID,
            CRI_IMAGE,
            CRI_SANDBOX_ID,
        ))
    } else {
        None
    };
    let Some((runtime, ty, container, pod, ns, uid, image, sandbox_id)) = keys else {
        return Resolved {
            runtime: (manager == Some("libpod")).then_some(Runtime::Podman),
            ..Resolved::default()
        };
    };
    Resolved {
        runtime: Some(runtime),
        sandbox: a.get(ty).is_some_and(|t| t == "sandbox"),
        k8s: K8sMeta {
            namespace: get(ns),
            pod_name: get(pod),
            container_name: get(container),
            pod_uid: get(uid),
        },
        image: get(image),
        sandbox_id: get(sandbox_id),
    }
}

/// Kubernetes metadata from a runtime's container labels (docker, podman,
/// containerd's own labels): upstream's `EnrichWithK8sMetadata` keys.
pub fn k8s_from_labels(labels: &Annotations) -> K8sMeta {
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    K8sMeta {
        namespace: get(K8S_NAMESPACE),
        pod_name: get(K8S_POD),
        container_name: get(K8S_CONTAINER),
        pod_uid: get(K8S_UID),
    }
}

/// A sandbox by its labels: docker's dockershim `podsandbox` and
/// containerd's `io.cri-containerd.kind=sandbox`.
pub fn is_sandbox_by_labels(labels: &Annotations) -> bool {
    labels
        .get("io.kubernetes.docker.type")
        .is_some_and(|t| t == "podsandbox")
        || labels
            .get("io.cri-containerd.kind")
            .is_some_and(|t| t == "sandbox")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> Annotations {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn container_ids() {
        let long = "a".repeat(1025);
        for (id, ok) in [
            ("igt1", true),
            (
                "4f797c539e6c745de61a93ca3ff892358ecbcaccd8414d5db545c38428142970",
                true,
            ),
            ("my_box+1.2-x", true),
            ("", false),
            (".", false),
            ("..", false),
            ("a/b", false),
            ("a b", false),
            ("é", false),
            (long.as_str(), false),
        ] {
            assert_eq!(is_container_id(id), ok, "{id}");
        }
    }

    #[test]
    fn containerd_annotations() {
        let a = ann(&[
            (CRI_TYPE, "container"),
            (CRI_CONTAINER, "web"),
            (CRI_POD, "mypod"),
            (CRI_NAMESPACE, "myns"),
            (CRI_UID, "1111"),
            (CRI_IMAGE, "docker.io/library/busybox:latest"),
            (CRI_SANDBOX_ID, "abc"),
        ]);
        let r = resolve(&a);
        assert_eq!(r.runtime, Some(Runtime::Containerd));
        assert!(!r.sandbox);
        assert_eq!(
            r.k8s,
            K8sMeta {
                namespace: "myns".into(),
                pod_name: "mypod".into(),
                container_name: "web".into(),
                pod_uid: "1111".into()
            }
        );
        assert_eq!(r.image, "docker.io/library/busybox:latest");
        assert_eq!(r.sandbox_id, "abc");
        let sandbox = resolve(&ann(&[(CRI_TYPE, "sandbox"), (CRI_POD, "p")]));
        assert!(sandbox.sandbox);
    }

    #[test]
    fn crio_and_podman_annotations() {
        let a = ann(&[
            (MANAGER, "cri-o"),
            (CRIO_TYPE, "container"),
            (K8S_CONTAINER, "db"),
            (K8S_POD, "pod2"),
            (K8S_NAMESPACE, "prod"),
            (K8S_UID, "u2"),
            (CRIO_IMAGE, "quay.io/x/y:1"),
            // containerd's key does not switch the resolver when cri-o says so.
            (CRI_TYPE, "sandbox"),
        ]);
        let r = resolve(&a);
        assert_eq!(r.runtime, Some(Runtime::CriO));
        assert!(!r.sandbox);
        assert_eq!(r.k8s.pod_name, "pod2");
        assert_eq!(r.k8s.container_name, "db");
        assert_eq!(r.image, "quay.io/x/y:1");
        assert!(resolve(&ann(&[(MANAGER, "cri-o"), (CRIO_TYPE, "sandbox")])).sandbox);
        let p = resolve(&ann(&[(MANAGER, "libpod"), (K8S_POD, "ignored")]));
        assert_eq!(p.runtime, Some(Runtime::Podman));
        assert!(p.k8s.is_empty());
        assert_eq!(resolve(&Annotations::new()), Resolved::default());
    }

    #[test]
    fn labels_of_docker_and_containerd() {
        let l = ann(&[(K8S_POD, "p"), (K8S_NAMESPACE, "n"), (K8S_CONTAINER, "c")]);
        let k = k8s_from_labels(&l);
        assert_eq!((k.pod_name.as_str(), k.namespace.as_str()), ("p", "n"));
        assert!(!is_sandbox_by_labels(&l));
        assert!(is_sandbox_by_labels(&ann(&[(
            "io.cri-containerd.kind",
            "sandbox"
        )])));
        assert!(is_sandbox_by_labels(&ann(&[(
            "io.kubernetes.docker.type",
            "podsandbox"
        )])));
    }

    #[test]
    fn runc_state_files() {
        let s = br#"{"id":"igt1","init_process_pid":32318,"init_process_start":310079,
            "created":"2026-12-07T09:39:34.671561805Z",
            "config":{"labels":["io.kubernetes.cri.container-name=web","k=v=w","nolabel",
            "bundle=/run/x/igt1"]}}"#;
        let st = parse_runc_state(s).unwrap();
        assert_eq!(st.id, "igt1");
        assert_eq!((st.init_pid, st.init_start), (32318, 310079));
        assert_eq!(st.bundle.as_deref(), Some("/run/x/igt1"));
        assert_eq!(st.annotations.get("k").map(String::as_str), Some("v=w"));
        assert_eq!(st.annotations.len(), 2);
        assert_eq!(
            parse_runc_state(br#"{"id":"x"}"#),
            Err(OciError::Missing("init_process_pid"))
        );
        assert!(matches!(parse_runc_state(b"{"), Err(OciError::Json(_))));
        assert_eq!(
            parse_runc_state(br#"{"id":"x","init_process_pid":1}"#)
                .unwrap()
                .annotations,
            Annotations::new()
        );
    }

    #[test]
    fn config_annotations() {
        let c = br#"{"ociVersion":"1.0.2","annotations":{"a":"1","n":2}}"#;
        assert_eq!(parse_config_annotations(c).unwrap(), ann(&[("a", "1")]));
        assert!(parse_config_annotations(b"{}").unwrap().is_empty());
        assert!(parse_config_annotations(b"[").is_err());
    }
}
