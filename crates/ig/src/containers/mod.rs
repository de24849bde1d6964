//! Containers on this host: which processes belong to which container, and
//! the container's name, image, runtime, init pid, namespaces and
//! Kubernetes metadata.
//!
//! Three sources, merged by container id ([`Detector::scan`]):
//! - every process's `/proc/PID/cgroup`: the runtimes' cgroup names carry
//!   the container id ([`parse_cgroup_path`]); this needs no runtime and
//!   also finds plain runc and systemd-nspawn containers;
//! - the runtimes' runc state directories (`/run/containerd/runc/<ns>`,
//!   `/run/docker/runtime-runc/moby`, `/run/runc`): each `<id>/state.json`
//!   names the init pid, the bundle and the bundle's annotations
//!   ([`oci::parse_runc_state`]), so ids of any syntax
//!   ([`oci::is_container_id`]) and any cgroup layout are found; without a
//!   state file, the bundle's `config.json` is read through the shim's
//!   working directory (`/proc/<parent of init>/cwd`);
//! - docker's and podman's HTTP API, when their socket is there: name,
//!   image, image digest and labels ([`runtime_api`]). containerd and
//!   cri-o speak gRPC only and are not asked: their annotations say it all
//!   ([`oci::resolve`], upstream's rules).
//!
//! Everything is read under [`HostRoot`] (`HOST_ROOT`, for `ig` in a
//! container with the host's root mounted). [`watch`] tells when to scan
//! again (inotify on the state directories, docker's event stream);
//! [`hook`] holds a runtime's `runc` until a new container is known.
//!
//! Pure parsing ([`parse_cgroup_path`], [`parse_cgroup_file`],
//! [`parse_ns_link`], [`parse_stat`], [`oci`], [`runtime_api::parse_list`])
//! is separate from the I/O ([`Detector::scan`]), so the former is tested
//! with strings and the latter on the real host.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

pub mod hook;
pub mod oci;
pub mod runtime_api;
pub mod watch;

pub use oci::K8sMeta;

/// The container runtimes whose cgroup names we recognize.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Runtime {
    /// Docker (`docker-<id>.scope`, `/docker/<id>`).
    Docker,
    /// containerd (`cri-containerd-<id>.scope`).
    Containerd,
    /// CRI-O (`crio-<id>.scope`).
    CriO,
    /// Podman (`libpod-<id>.scope`).
    Podman,
    /// systemd-nspawn (`machine-<name>.scope`).
    Nspawn,
    /// Plain runc (a state directory, no runtime above it).
    Runc,
}

impl Runtime {
    /// Upstream's names (`runtime.runtimeName`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Containerd => "containerd",
            Self::CriO => "cri-o",
            Self::Podman => "podman",
            Self::Nspawn => "systemd-nspawn",
            Self::Runc => "runc",
        }
    }

    /// Upstream's `--runtimes` names.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "docker" => Self::Docker,
            "containerd" => Self::Containerd,
            "cri-o" => Self::CriO,
            "podman" => Self::Podman,
            _ => return None,
        })
    }
}

/// What a cgroup path says about its container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMatch {
    /// The runtime whose naming the path follows.
    pub runtime: Runtime,
    /// The full container id (64 hex digits), or the machine name of
    /// systemd-nspawn.
    pub id: String,
}

/// One container, as `ig list-containers` shows it and the enrichment uses.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Container {
    /// The full container id (or nspawn's machine name).
    pub id: String,
    /// Its name, as its runtime knows it (else its short id).
    pub name: String,
    /// Its runtime.
    pub runtime: Runtime,
    /// Empty when neither a runtime API nor the annotations told us.
    pub image: String,
    /// `sha256:...` of the image's manifest; docker/podman only, and only
    /// for images pulled or pushed.
    pub image_digest: String,
    /// The runtime's image id (`sha256:...`); docker/podman only.
    pub image_id: String,
    /// When the init started, in nanoseconds since the epoch (0: unknown).
    pub started_at: i64,
    /// The container shares the host's network namespace.
    pub host_network: bool,
    /// Its Kubernetes metadata, when it is a pod's.
    pub k8s: K8sMeta,
    /// The container's first process (whose parent is outside it).
    pub pid: u32,
    /// Its mount namespace inode.
    pub mntns: u64,
    /// Its network namespace inode.
    pub netns: u64,
    /// The cgroup path the container was recognized by.
    pub cgroup: String,
    /// Mount namespaces of its processes (usually just `mntns`).
    #[serde(skip)]
    pub mntns_ids: Vec<u64>,
    /// Its OCI bundle directory as the host names it (runc's state, else
    /// the shim's working directory); empty when unknown. Read only for
    /// the `containers` data source's `container_config`
    /// ([`oci_config`]).
    #[serde(skip)]
    pub bundle: String,
}

impl Container {
    /// The first 12 characters of the id, as `docker ps` shows it.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// A 64-hex id, the only form the cgroup patterns accept (a bare name in
/// a cgroup path says too little); the runc state directories accept
/// every id runc does.
fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Undo systemd's unit-name escaping (`\x2d` is `-`).
fn unescape_unit(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\x") {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 2..i + 4);
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => {
                out.push(char::from(b));
                rest = &rest[i + 4..];
            }
            None => {
                out.push_str("\\x");
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// One path component: does it name a container?
fn parse_component(prev: Option<&str>, c: &str) -> Option<CgroupMatch> {
    let m = |runtime, id: &str| {
        Some(CgroupMatch {
            runtime,
            id: id.to_owned(),
        })
    };
    if let Some(scope) = c.strip_suffix(".scope") {
        // The runtimes' monitor processes (conmon) sit in `*-conmon-<id>`.
        if scope.contains("-conmon-") {
            return None;
        }
        for (prefix, runtime) in [
            ("docker-", Runtime::Docker),
            ("cri-containerd-", Runtime::Containerd),
            ("crio-", Runtime::CriO),
            ("libpod-", Runtime::Podman),
        ] {
            if let Some(id) = scope.strip_prefix(prefix)
                && is_id(id)
            {
                return m(runtime, id);
            }
        }
        if let Some(name) = scope.strip_prefix("machine-") {
            let name = unescape_unit(name);
            // libvirt's virtual machines live there too; they are not
            // containers.
            if !name.is_empty() && !name.starts_with("qemu-") {
                return Some(CgroupMatch {
                    runtime: Runtime::Nspawn,
                    id: name,
                });
            }
        }
        return None;
    }
    if !is_id(c) {
        // cgroupfs driver of podman: `/libpod_parent/libpod-<id>`.
        if let Some(id) = c.strip_prefix("libpod-")
            && is_id(id)
        {
            return m(Runtime::Podman, id);
        }
        return None;
    }
    // A bare id: its parent says whose.
    match prev {
        Some("docker") => m(Runtime::Docker, c),
        Some(p) if p.starts_with("pod") || p == "kubepods" || p == "k8s.io" => {
            m(Runtime::Containerd, c)
        }
        _ => None,
    }
}

/// Recognize a container's cgroup path. The innermost component that names
/// a container wins (`/docker/<id>/...` nested groups, podman's
/// `libpod-<id>.scope/container`).
///
/// Patterns: docker (`/docker/<id>`, `docker-<id>.scope`), containerd/CRI
/// (`cri-containerd-<id>.scope`, `/kubepods/.../pod<uid>/<id>`, the latter
/// taken as containerd), cri-o (`crio-<id>.scope`), podman
/// (`libpod-<id>.scope`, `/libpod_parent/libpod-<id>`), systemd-nspawn
/// (`/machine.slice/machine-<name>.scope`). `<id>` is 64 hex digits.
pub fn parse_cgroup_path(path: &str) -> Option<CgroupMatch> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    (0..parts.len()).rev().find_map(|i| {
        let prev = i.checked_sub(1).map(|j| parts[j]);
        parse_component(prev, parts[i])
    })
}

/// The container of a `/proc/PID/cgroup` file (`N:controllers:path` lines,
/// v1 and v2 alike): the first line whose path names one.
pub fn parse_cgroup_file(text: &str) -> Option<(CgroupMatch, String)> {
    text.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        parse_cgroup_path(path).map(|m| (m, path.to_owned()))
    })
}

/// The inode number of a namespace link (`mnt:[4026531840]`).
pub fn parse_ns_link(link: &str) -> Option<u64> {
    let inner = link.split_once(":[")?.1.strip_suffix(']')?;
    inner.parse().ok()
}

/// The most of a bundle's `config.json` [`oci_config`] reads (upstream's
/// cap).
pub const OCI_CONFIG_MAX: u64 = 16 << 20;

/// The text of the `config.json` of the bundle at `bundle` (a host path),
/// at most [`OCI_CONFIG_MAX`] bytes; empty when it cannot be read (the
/// bundle is unknown or already gone).
pub fn oci_config(host: &HostRoot, bundle: &str) -> String {
    use std::io::Read as _;
    if bundle.is_empty() {
        return String::new();
    }
    let mut text = String::new();
    let read = std::fs::File::open(host.path(bundle).join("config.json"))
        .and_then(|f| f.take(OCI_CONFIG_MAX).read_to_string(&mut text));
    if let Err(e) = read {
        log::debug!("reading the config.json of bundle {bundle}: {e}");
        text.clear();
    }
    text
}

/// The id of the cgroup v2 of process `pid` (the inode of its directory
/// under `mount`, the hierarchy's mount point from [`cgroup2_mount`]:
/// what `bpf_get_current_cgroup_id` answers); 0 when it has none or it
/// cannot be read.
pub fn cgroup_id(host: &HostRoot, mount: &Path, pid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(text) = std::fs::read_to_string(host.path(format!("/proc/{pid}/cgroup"))) else {
        return 0;
    };
    let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
        return 0;
    };
    std::fs::metadata(mount.join(path.trim_start_matches('/'))).map_or(0, |m| m.ino())
}

/// Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` (unified)
/// or `/sys/fs/cgroup/unified` (hybrid), as upstream looks for it; `None`
/// on a host with cgroup v1 only.
pub fn cgroup2_mount(host: &HostRoot) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(|p| host.path(p))
        .find(|p| {
            let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
                return false;
            };
            // SAFETY: statfs(2) of a NUL-terminated path into a zeroed
            // struct of the right type.
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            let ok = unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0;
            #[allow(clippy::unnecessary_cast, reason = "f_type's type differs by target")]
            let magic = st.f_type as i64;
            ok && magic == CGROUP2_SUPER_MAGIC
        })
}

/// The parent pid from `/proc/PID/stat` (the field after the `)` that
/// ends the command name, which may itself hold spaces and parentheses).
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    parse_stat(stat).map(|(ppid, _)| ppid)
}

/// The parent pid and the start time (clock ticks since boot, field 22)
/// from `/proc/PID/stat`.
pub fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 (state) on; the start time is field 22.
    let fields: Vec<&str> = rest.split_whitespace().take(20).collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19).and_then(|s| s.parse().ok()).unwrap_or(0);
    Some((ppid, start))
}

/// The boot time (`btime` of `/proc/stat`), seconds since the epoch.
pub fn parse_btime(proc_stat: &str) -> Option<i64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The root of the host's file system as `ig` sees it: `/`, or the mount
/// point named by `HOST_ROOT` (upstream's variable) when `ig` runs in a
/// container with the host's root mounted there. `/proc`, the runtimes'
/// sockets, state and bundle directories are read under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRoot(PathBuf);

impl Default for HostRoot {
    fn default() -> Self {
        Self(PathBuf::from("/"))
    }
}

impl HostRoot {
    /// The host's root at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self(root.into())
    }

    /// `HOST_ROOT` if set and not empty, else `/`.
    pub fn from_env() -> Self {
        match std::env::var_os("HOST_ROOT") {
            Some(r) if !r.is_empty() => Self(PathBuf::from(r)),
            _ => Self::default(),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.0
    }

    /// A host path (absolute, as the host names it) as we reach it.
    pub fn path(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let p = host_path.as_ref();
        self.0.join(p.strip_prefix("/").unwrap_or(p))
    }
}

/// The runtime sockets looked for, in upstream's default places.
pub const DEFAULT_SOCKETS: &[(Runtime, &str)] = &[
    (Runtime::Docker, "/run/docker.sock"),
    (Runtime::Podman, "/run/podman/podman.sock"),
    (Runtime::Containerd, "/run/containerd/containerd.sock"),
    (Runtime::CriO, "/run/crio/crio.sock"),
];

/// containerd's runc root: one directory per containerd namespace below it
/// (the shim's default, whatever containerd's own `--state`).
pub const CONTAINERD_RUNC_ROOT: &str = "/run/containerd/runc";
/// Docker's runc root (with the default `--exec-root`).
pub const DOCKER_RUNC_ROOT: &str = "/run/docker/runtime-runc/moby";
/// runc's own default root: plain `runc run`, cri-o, podman with runc.
pub const RUNC_ROOT: &str = "/run/runc";

/// What to read: the host root, the runtimes asked for, their sockets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where the host's root is (`HOST_ROOT`).
    pub host: HostRoot,
    /// The runtimes whose sockets and state directories are read
    /// (`--runtimes`); containers found by their cgroup alone are listed
    /// whatever this says.
    pub runtimes: Vec<Runtime>,
    /// Socket per runtime (host paths).
    pub sockets: Vec<(Runtime, PathBuf)>,
    /// Only this containerd namespace's state directory (`None`: all).
    pub containerd_namespace: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: HostRoot::from_env(),
            runtimes: vec![
                Runtime::Docker,
                Runtime::Containerd,
                Runtime::CriO,
                Runtime::Podman,
            ],
            sockets: DEFAULT_SOCKETS
                .iter()
                .map(|(r, p)| (*r, PathBuf::from(p)))
                .collect(),
            containerd_namespace: None,
        }
    }
}

/// Why the runtime configuration is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A runtime ig does not know.
    #[error("runtime {0:?} is not supported (--runtimes takes docker, containerd, cri-o, podman)")]
    UnknownRuntime(String),
    /// A runtime's socket path does not exist.
    #[error("runtime {runtime} with non-existent socket path {path}")]
    MissingSocket {
        /// The runtime.
        runtime: &'static str,
        /// The socket path.
        path: String,
    },
}

impl Config {
    /// From upstream's flags: `--runtimes` (`None`: all, those without a
    /// socket skipped), socket paths given explicitly, `--containerd-namespace`.
    /// As upstream, a runtime named in `--runtimes`, or a socket named
    /// explicitly (of a runtime in use), that does not exist is an error.
    pub fn from_flags(
        host: HostRoot,
        runtimes: Option<&str>,
        sockets: &[(Runtime, &str)],
        containerd_namespace: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let mut c = Self {
            host,
            containerd_namespace: containerd_namespace.map(str::to_owned),
            ..Self::default()
        };
        if let Some(list) = runtimes {
            let mut named = Vec::new();
            for r in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                let rt = Runtime::parse(r).ok_or_else(|| ConfigError::UnknownRuntime(r.into()))?;
                if !named.contains(&rt) {
                    named.push(rt);
                }
            }
            c.runtimes = named;
        }
        for (r, p) in sockets {
            if let Some(slot) = c.sockets.iter_mut().find(|(s, _)| s == r) {
                slot.1 = PathBuf::from(p);
            }
        }
        for r in c.runtimes.clone() {
            let explicit = runtimes.is_some() || sockets.iter().any(|(s, _)| *s == r);
            let Some(path) = c.socket(r) else { continue };
            if explicit && !path.exists() {
                return Err(ConfigError::MissingSocket {
                    runtime: r.name(),
                    path: path.display().to_string(),
                });
            }
        }
        Ok(c)
    }

    fn uses(&self, r: Runtime) -> bool {
        self.runtimes.contains(&r)
    }

    /// The socket of `r` as we reach it, if `r` is used.
    pub fn socket(&self, r: Runtime) -> Option<PathBuf> {
        if !self.uses(r) {
            return None;
        }
        self.sockets
            .iter()
            .find(|(s, _)| *s == r)
            .map(|(_, p)| self.host.path(p))
    }

    /// The runc state directories to read, with the runtime each belongs
    /// to (`None`: whoever the annotations or the cgroup say).
    pub fn runc_roots(&self) -> Vec<(Option<Runtime>, PathBuf)> {
        let mut out = Vec::new();
        if self.uses(Runtime::Containerd) {
            let base = self.host.path(CONTAINERD_RUNC_ROOT);
            match &self.containerd_namespace {
                Some(ns) => out.push((Some(Runtime::Containerd), base.join(ns))),
                None => {
                    if let Ok(dir) = std::fs::read_dir(&base) {
                        let mut nss: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
                        nss.sort();
                        out.extend(nss.into_iter().map(|p| (Some(Runtime::Containerd), p)));
                    }
                }
            }
        }
        if self.uses(Runtime::Docker) {
            out.push((Some(Runtime::Docker), self.host.path(DOCKER_RUNC_ROOT)));
        }
        out.push((None, self.host.path(RUNC_ROOT)));
        out
    }

    /// A cheap summary of the runc state directories (which containers
    /// have a state file): when it is unchanged since the last
    /// [`Detector::scan`], no runc container came or went, and the walk of
    /// `/proc` can wait. Reads the directories only.
    pub fn state_fingerprint(&self) -> u64 {
        use std::hash::{Hash as _, Hasher as _};
        let mut ids: Vec<std::ffi::OsString> = Vec::new();
        for (_, root) in self.runc_roots() {
            let Ok(dir) = std::fs::read_dir(&root) else {
                continue;
            };
            for e in dir.flatten() {
                if e.path().join("state.json").exists() {
                    ids.push(e.path().into_os_string());
                }
            }
        }
        ids.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ids.hash(&mut h);
        h.finish()
    }

    /// The directories whose changes mean "a container came or went":
    /// the runc roots, and parents whose subdirectories are roots
    /// (containerd's, one per namespace; a new namespace appears there).
    pub fn watch_dirs(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let roots = self
            .runc_roots()
            .into_iter()
            .filter(|(r, _)| *r != Some(Runtime::Containerd) || self.containerd_namespace.is_some())
            .map(|(_, p)| p)
            .collect();
        let mut parents = Vec::new();
        if self.uses(Runtime::Containerd) && self.containerd_namespace.is_none() {
            parents.push(self.host.path(CONTAINERD_RUNC_ROOT));
        }
        (roots, parents)
    }
}

/// Finds the containers of the host. Keeps what runtime APIs and bundles
/// answered, by container id, so each container is asked about once.
pub struct Detector {
    config: Config,
    proc_root: PathBuf,
    /// API answers by container id; `None`: the API did not know it.
    api_cache: HashMap<String, Option<runtime_api::Inspect>>,
    /// Bundle annotations and directory read through the shim, by
    /// container id.
    bundle_cache: HashMap<String, (oci::Annotations, String)>,
    /// Boot time in ns since the epoch, and clock ticks per second.
    boot_ns: Option<(i64, i64)>,
}

impl Default for Detector {
    fn default() -> Self {
        Self::new()
    }
}

/// One process of the walk.
struct Proc {
    pid: u32,
    cgroup: String,
    /// The rest is read only for processes that may be a container's
    /// ([`Detector::load`]): most of a host's are not.
    loaded: bool,
    ppid: u32,
    start: u64,
    mntns: Option<u64>,
    netns: Option<u64>,
}

/// A container being assembled: its processes and what each source said.
struct Group {
    runtime: Option<Runtime>,
    cgroup: String,
    members: Vec<usize>,
    state: Option<(Option<Runtime>, oci::RuncState)>,
}

impl Detector {
    /// Upstream's defaults under `HOST_ROOT`.
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// A detector reading what `config` says.
    pub fn with_config(config: Config) -> Self {
        Self {
            proc_root: config.host.path("/proc"),
            config,
            api_cache: HashMap::new(),
            bundle_cache: HashMap::new(),
            boot_ns: None,
        }
    }

    /// A `/proc` elsewhere and these sockets (tests).
    pub fn with(proc_root: impl Into<PathBuf>, sockets: Vec<(Runtime, PathBuf)>) -> Self {
        let mut d = Self::with_config(Config {
            host: HostRoot::default(),
            sockets,
            ..Config::default()
        });
        d.proc_root = proc_root.into();
        d
    }

    /// What it reads.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The mount namespace of the host (of pid 1), which is no container's.
    pub fn host_mntns(&self) -> Option<u64> {
        self.host_ns("mnt")
    }

    /// The network namespace of the host (of pid 1).
    pub fn host_netns(&self) -> Option<u64> {
        self.host_ns("net")
    }

    /// Pid 1's namespace; where pid 1's links cannot be read (a pid 1 of
    /// another user namespace, as some sandboxes have) and `ig` runs on the
    /// host itself (no `HOST_ROOT`), ours.
    fn host_ns(&self, ns: &str) -> Option<u64> {
        ns_of(&self.proc_root, 1, ns).or_else(|| {
            if self.config.host.root() != Path::new("/") {
                return None;
            }
            let link = std::fs::read_link(self.proc_root.join(format!("self/ns/{ns}"))).ok()?;
            parse_ns_link(link.to_str()?)
        })
    }

    fn walk_proc(&self) -> Vec<Proc> {
        let Ok(dir) = std::fs::read_dir(&self.proc_root) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(cgroup) = std::fs::read_to_string(self.proc_root.join(format!("{pid}/cgroup")))
            else {
                continue;
            };
            out.push(Proc {
                pid,
                cgroup,
                loaded: false,
                ppid: 0,
                start: 0,
                mntns: None,
                netns: None,
            });
        }
        out
    }

    /// Read a process's parent, start time and namespaces (once).
    fn load(&self, p: &mut Proc) {
        if p.loaded {
            return;
        }
        p.loaded = true;
        (p.ppid, p.start) = std::fs::read_to_string(self.proc_root.join(format!("{}/stat", p.pid)))
            .ok()
            .and_then(|s| parse_stat(&s))
            .unwrap_or((0, 0));
        p.mntns = ns_of(&self.proc_root, p.pid, "mnt");
        p.netns = ns_of(&self.proc_root, p.pid, "net");
    }

    /// Every readable `state.json` of the runc roots, with its root's
    /// runtime.
    fn runc_states(&self) -> Vec<(Option<Runtime>, oci::RuncState)> {
        let mut out = Vec::new();
        for (runtime, root) in self.config.runc_roots() {
            let Ok(dir) = std::fs::read_dir(&root) else {
                continue;
            };
            for e in dir.flatten() {
                let name = e.file_name();
                let Some(id) = name.to_str().filter(|n| oci::is_container_id(n)) else {
                    continue;
                };
                let Ok(bytes) = std::fs::read(e.path().join("state.json")) else {
                    continue;
                };
                match oci::parse_runc_state(&bytes) {
                    Ok(st) if st.id == id => out.push((runtime, st)),
                    Ok(_) => {}
                    Err(err) => log::debug!("{}: {err}", e.path().display()),
                }
            }
        }
        out
    }

    /// Walk `/proc` and the runc state directories once and return the
    /// containers found, sorted by name. Processes that exit during the
    /// walk are skipped; sandbox (pause) containers are not listed.
    pub fn scan(&mut self) -> Vec<Container> {
        let mut procs = self.walk_proc();
        let by_pid: HashMap<u32, usize> =
            procs.iter().enumerate().map(|(i, p)| (p.pid, i)).collect();
        let mut groups: HashMap<String, Group> = HashMap::new();
        for (i, p) in procs.iter_mut().enumerate() {
            let Some((m, path)) = parse_cgroup_file(&p.cgroup) else {
                continue;
            };
            self.load(p);
            groups
                .entry(m.id)
                .or_insert_with(|| Group {
                    runtime: Some(m.runtime),
                    cgroup: path,
                    members: Vec::new(),
                    state: None,
                })
                .members
                .push(i);
        }
        for (runtime, st) in self.runc_states() {
            // The init must be the process that runc started, not a later
            // one with its pid.
            let Some(&init) = by_pid.get(&st.init_pid) else {
                continue;
            };
            self.load(&mut procs[init]);
            if st.init_start != 0 && procs[init].start != st.init_start {
                continue;
            }
            if let Some(g) = groups.get_mut(&st.id) {
                g.state = Some((runtime, st));
                continue;
            }
            // A container found by its cgroup under another id (runc's
            // name is not the id its cgroup path carries: a runtime that
            // names them apart, or `runc run NAME` with a cgroupsPath of
            // its own) is one container, not two: its state goes to it.
            if let Some(g) = groups
                .values_mut()
                .find(|g| g.state.is_none() && g.members.contains(&init))
            {
                g.state = Some((runtime, st));
                continue;
            }
            // Found by its state only (an id or a cgroup layout the
            // patterns do not know): its processes share the init's cgroup
            // and mount namespace.
            let same_cgroup: Vec<usize> = (0..procs.len())
                .filter(|&i| procs[i].cgroup == procs[init].cgroup)
                .collect();
            for &i in &same_cgroup {
                self.load(&mut procs[i]);
            }
            let ip = &procs[init];
            let members: Vec<usize> = same_cgroup
                .into_iter()
                .filter(|&i| procs[i].mntns == ip.mntns)
                .collect();
            let cgroup = ip
                .cgroup
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .or_else(|| {
                    ip.cgroup
                        .lines()
                        .next()
                        .and_then(|l| l.splitn(3, ':').nth(2))
                })
                .unwrap_or_default()
                .to_owned();
            groups.insert(
                st.id.clone(),
                Group {
                    runtime: None,
                    cgroup,
                    members,
                    state: Some((runtime, st)),
                },
            );
        }
        let host_netns = self.host_netns();
        let mut out = Vec::new();
        let mut seen_ids = HashSet::new();
        for (id, g) in groups {
            seen_ids.insert(id.clone());
            if let Some(c) = self.assemble(id, g, &procs, host_netns) {
                out.push(c);
            }
        }
        self.api_cache.retain(|id, _| seen_ids.contains(id));
        self.bundle_cache.retain(|id, _| seen_ids.contains(id));
        out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        out
    }

    fn assemble(
        &mut self,
        id: String,
        g: Group,
        procs: &[Proc],
        host_netns: Option<u64>,
    ) -> Option<Container> {
        let members: Vec<&Proc> = g.members.iter().map(|&i| &procs[i]).collect();
        // The init: runc's word, else the member whose parent is not in the
        // container (lowest pid if several, e.g. after the parent exited
        // and pids were reparented).
        let inside = |p: u32| members.iter().any(|m| m.pid == p);
        let init = g
            .state
            .as_ref()
            .and_then(|(_, st)| members.iter().find(|m| m.pid == st.init_pid))
            .or_else(|| {
                members
                    .iter()
                    .filter(|m| !inside(m.ppid))
                    .min_by_key(|m| m.pid)
            })
            .or_else(|| members.iter().min_by_key(|m| m.pid))?;
        let mntns = init.mntns?;
        let mut mntns_ids: Vec<u64> = members.iter().filter_map(|m| m.mntns).collect();
        mntns_ids.sort_unstable();
        mntns_ids.dedup();
        let (state_runtime, annotations, bundle) = match &g.state {
            Some((r, st)) => (
                *r,
                st.annotations.clone(),
                st.bundle.clone().unwrap_or_default(),
            ),
            None => {
                let (a, b) = self.bundle_annotations(&id, init.ppid);
                (None, a, b)
            }
        };
        let resolved = oci::resolve(&annotations);
        if resolved.sandbox {
            return None;
        }
        let runtime = resolved
            .runtime
            .or(state_runtime)
            .or(g.runtime)
            .unwrap_or(Runtime::Runc);
        let mut c = Container {
            name: String::new(),
            image: resolved.image,
            image_digest: String::new(),
            image_id: String::new(),
            started_at: self.started_at(init.start),
            host_network: init.netns.is_some() && init.netns == host_netns,
            k8s: resolved.k8s,
            runtime,
            pid: init.pid,
            mntns,
            netns: init.netns.unwrap_or(0),
            cgroup: g.cgroup,
            mntns_ids,
            bundle,
            id,
        };
        match runtime {
            Runtime::Nspawn => c.name = c.id.clone(),
            Runtime::Docker | Runtime::Podman => {
                match self.ask_api(runtime, &c.id) {
                    Some(i) => {
                        if oci::is_sandbox_by_labels(&i.labels) {
                            return None;
                        }
                        let from_labels = oci::k8s_from_labels(&i.labels);
                        if c.k8s.is_empty() {
                            c.k8s = from_labels;
                        }
                        c.name = i.name;
                        if c.image.is_empty() {
                            c.image = i.image;
                        }
                        c.image_id = i.image_id;
                        c.image_digest = i.image_digest;
                    }
                    // As `docker ps` shows it.
                    None => c.name = c.short_id().to_owned(),
                }
            }
            // Upstream names containerd's containers by the label
            // `io.kubernetes.container.name`, else by their full id; the
            // label is containerd's (gRPC), the CRI annotation carries the
            // same name in every CRI-made bundle.
            Runtime::Containerd | Runtime::CriO | Runtime::Runc => {
                c.name = annotations
                    .get("io.kubernetes.container.name")
                    .filter(|n| !n.is_empty())
                    .cloned()
                    .or_else(|| {
                        (!c.k8s.container_name.is_empty()).then(|| c.k8s.container_name.clone())
                    })
                    .unwrap_or_else(|| c.id.clone());
            }
        }
        Some(c)
    }

    /// The annotations and directory of the bundle of a container without
    /// a runc state file: the shim's (the init's parent's) working
    /// directory is the bundle (upstream's trick for containers older than
    /// `ig`).
    fn bundle_annotations(&mut self, id: &str, parent: u32) -> (oci::Annotations, String) {
        if let Some(a) = self.bundle_cache.get(id) {
            return a.clone();
        }
        let cwd = self.proc_root.join(format!("{parent}/cwd"));
        let a = std::fs::read(cwd.join("config.json"))
            .ok()
            .and_then(|b| oci::parse_config_annotations(&b).ok())
            .unwrap_or_default();
        let dir = std::fs::read_link(&cwd)
            .ok()
            .and_then(|p| p.to_str().map(str::to_owned))
            .unwrap_or_default();
        self.bundle_cache
            .insert(id.to_owned(), (a.clone(), dir.clone()));
        (a, dir)
    }

    fn ask_api(&mut self, runtime: Runtime, id: &str) -> Option<runtime_api::Inspect> {
        if let Some(known) = self.api_cache.get(id) {
            return known.clone();
        }
        let socket = self.config.socket(runtime).filter(|p| p.exists())?;
        let answer = match runtime_api::inspect(&socket, id) {
            Ok(i) => i,
            Err(e) => {
                log::debug!("asking {} about {id}: {e}", socket.display());
                // Asked again at the next scan: the daemon may be busy.
                return None;
            }
        };
        self.api_cache.insert(id.to_owned(), answer.clone());
        answer
    }

    /// Nanoseconds since the epoch of a start time in clock ticks since
    /// boot (upstream's `containerStartedAt`).
    fn started_at(&mut self, ticks: u64) -> i64 {
        if ticks == 0 {
            return 0;
        }
        let (boot, hz) = *self.boot_ns.get_or_insert_with(|| {
            let btime = std::fs::read_to_string(self.proc_root.join("stat"))
                .ok()
                .and_then(|s| parse_btime(&s))
                .unwrap_or(0);
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
            (btime * 1_000_000_000, if hz > 0 { hz } else { 100 })
        });
        if boot == 0 {
            return 0;
        }
        let ticks = i64::try_from(ticks).unwrap_or(i64::MAX);
        boot + ticks / hz * 1_000_000_000 + (ticks % hz) * (1_000_000_000 / hz)
    }
}

fn ns_of(proc_root: &Path, pid: u32, ns: &str) -> Option<u64> {
    let link = std::fs::read_link(proc_root.join(format!("{pid}/ns/{ns}"))).ok()?;
    parse_ns_link(link.to_str()?)
}

/// Which containers `-c/--containername` selects: a comma list of names;
/// `!name` excludes one (upstream's syntax). Only exclusions means "every
/// container but these", so `!` alone (excluding the empty name, which no
/// container has) means every container: upstream's default of showing
/// containers only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// Names selected.
    pub include: Vec<String>,
    /// Names excluded (`!name`).
    pub exclude: Vec<String>,
}

impl Selector {
    /// `-c` syntax: `a,b,!c`.
    pub fn parse(list: &str) -> Self {
        let mut s = Self::default();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.strip_prefix('!') {
                Some(n) => s.exclude.push(n.to_owned()),
                None => s.include.push(item.to_owned()),
            }
        }
        s
    }

    /// Whether nothing was given (no filter).
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether the container named `name` is selected.
    pub fn matches(&self, name: &str) -> bool {
        self.matches_by(|n| n == name)
    }

    /// Whether a value `is(item)` says matches is selected.
    pub fn matches_by(&self, is: impl Fn(&str) -> bool) -> bool {
        (self.include.is_empty() || self.include.iter().any(|n| is(n)))
            && !self.exclude.iter().any(|n| is(n))
    }

    /// Back to the list the user wrote (`a,!b`).
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.include.clone();
        parts.extend(self.exclude.iter().map(|e| format!("!{e}")));
        parts.join(",")
    }
}

/// Which containers a run selects: upstream's selector flags, each a
/// [`Selector`] list; a container is selected when it matches every list
/// given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// `-c/--containername` and `--runtime-containername`.
    pub runtime_name: Selector,
    /// `--k8s-namespace`.
    pub k8s_namespace: Selector,
    /// `--k8s-podname`.
    pub k8s_pod: Selector,
    /// `--k8s-containername`.
    pub k8s_container: Selector,
    /// `--runtime-containerimage-digest`.
    pub image_digest: Selector,
    /// `--runtime-containerimage-id`.
    pub image_id: Selector,
}

impl Selection {
    /// Whether no list was given (every container is selected).
    pub fn is_empty(&self) -> bool {
        self.lists().iter().all(|(_, s)| s.is_empty())
    }

    /// The lists with their flag names, for messages.
    pub fn lists(&self) -> [(&'static str, &Selector); 6] {
        [
            ("--containername", &self.runtime_name),
            ("--k8s-namespace", &self.k8s_namespace),
            ("--k8s-podname", &self.k8s_pod),
            ("--k8s-containername", &self.k8s_container),
            ("--runtime-containerimage-digest", &self.image_digest),
            ("--runtime-containerimage-id", &self.image_id),
        ]
    }

    /// Whether `c` matches every list given.
    pub fn matches(&self, c: &Container) -> bool {
        self.runtime_name.matches(&c.name)
            && self.k8s_namespace.matches(&c.k8s.namespace)
            && self.k8s_pod.matches(&c.k8s.pod_name)
            && self.k8s_container.matches(&c.k8s.container_name)
            && self.image_digest.matches(&c.image_digest)
            && self
                .image_id
                .matches_by(|want| image_id_matches(want, &c.image_id))
    }

    /// `--containername a,!b --k8s-podname p` as the user wrote it.
    pub fn describe(&self) -> String {
        self.lists()
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(flag, s)| format!("{flag} {}", s.describe()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// An image id as the user may give it: the whole `sha256:<hex>`, the hex
/// alone, or its first 12 or more digits (`docker images` shows 12).
fn image_id_matches(want: &str, have: &str) -> bool {
    if have.is_empty() {
        return false;
    }
    let have_hex = have.strip_prefix("sha256:").unwrap_or(have);
    let want_hex = want.strip_prefix("sha256:").unwrap_or(want);
    want == have || (want_hex.len() >= 12 && have_hex.starts_with(want_hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f797c539e6c745de61a93ca3ff892358ecbcaccd8414d5db545c38428142970";

    #[test]
    fn cgroup_paths_of_every_runtime() {
        use Runtime::*;
        let cases: Vec<(String, Option<(Runtime, &str)>)> = vec![
            (format!("/docker/{ID}"), Some((Docker, ID))),
            (
                format!("/system.slice/docker-{ID}.scope"),
                Some((Docker, ID)),
            ),
            (format!("/docker/{ID}/nested/inner"), Some((Docker, ID))),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice/cri-containerd-{ID}.scope"
                ),
                Some((Containerd, ID)),
            ),
            (
                format!("/kubepods/besteffort/pod0a1b2c3d-1111-2222-3333-444455556666/{ID}"),
                Some((Containerd, ID)),
            ),
            (format!("/kubepods/{ID}"), Some((Containerd, ID))),
            (
                format!("/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope"),
                Some((CriO, ID)),
            ),
            (format!("/kubepods.slice/crio-conmon-{ID}.scope"), None),
            (
                format!("/machine.slice/libpod-{ID}.scope"),
                Some((Podman, ID)),
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                Some((Podman, ID)),
            ),
            (
                format!(
                    "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
                ),
                Some((Podman, ID)),
            ),
            (format!("/machine.slice/libpod-conmon-{ID}.scope"), None),
            (format!("/libpod_parent/libpod-{ID}"), Some((Podman, ID))),
            (
                "/machine.slice/machine-web.scope".into(),
                Some((Nspawn, "web")),
            ),
            (
                "/machine.slice/machine-my\\x2dbox.scope/payload".into(),
                Some((Nspawn, "my-box")),
            ),
            (
                "/machine.slice/machine-qemu\\x2d1\\x2dvm.scope".into(),
                None,
            ),
            // Not containers.
            ("/".into(), None),
            ("/user.slice/user-1000.slice/session-2.scope".into(), None),
            ("/system.slice/docker.service".into(), None),
            ("/process_api/426d300654cdcc3fbc17b084d67b4256".into(), None),
            (format!("/docker/{}", &ID[..63]), None),
            (format!("/docker/{}g", &ID[..63]), None),
            (format!("/something/{ID}"), None),
            (format!("/system.slice/docker-{}.scope", &ID[..12]), None),
        ];
        for (path, want) in cases {
            let got = parse_cgroup_path(&path).map(|m| (m.runtime, m.id));
            let want = want.map(|(r, id)| (r, id.to_owned()));
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn cgroup_files_v1_v2_and_hybrid() {
        let hybrid = format!("9:name=systemd:/\n4:memory:/docker/{ID}\n1:cpu:/\n0::/\n");
        let (m, path) = parse_cgroup_file(&hybrid).unwrap();
        assert_eq!((m.runtime, m.id.as_str()), (Runtime::Docker, ID));
        assert_eq!(path, format!("/docker/{ID}"));
        let v2 = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(parse_cgroup_file(&v2).unwrap().0.id, ID);
        // Controllers with colons in their names do not confuse the split.
        let named = format!("1:name=systemd:/machine.slice/libpod-{ID}.scope\n");
        assert_eq!(
            parse_cgroup_file(&named).unwrap().0.runtime,
            Runtime::Podman
        );
        let host = "9:name=systemd:/\n4:memory:/process_api/42\n0::/\n";
        assert_eq!(parse_cgroup_file(host), None);
        assert_eq!(parse_cgroup_file(""), None);
    }

    #[test]
    fn ns_links_and_stat() {
        assert_eq!(parse_ns_link("mnt:[4026531840]"), Some(4_026_531_840));
        assert_eq!(parse_ns_link("net:[4026531993]"), Some(4_026_531_993));
        assert_eq!(parse_ns_link("mnt:4026531840"), None);
        assert_eq!(parse_ns_link("mnt:[x]"), None);
        assert_eq!(parse_stat_ppid("42 (sh) S 7 42 42 0"), Some(7));
        assert_eq!(parse_stat_ppid("42 (a) b) (c) R 9 1"), Some(9));
        assert_eq!(parse_stat_ppid("42 (sh"), None);
    }

    #[test]
    fn selectors() {
        let cases: &[(&str, &[(&str, bool)])] = &[
            ("web", &[("web", true), ("db", false)]),
            ("web,db", &[("web", true), ("db", true), ("x", false)]),
            ("!web", &[("web", false), ("db", true)]),
            ("web,!web", &[("web", false)]),
            ("!", &[("web", true), ("db", true)]),
            (" web , ", &[("web", true), ("db", false)]),
        ];
        for (list, checks) in cases {
            let s = Selector::parse(list);
            for (name, want) in *checks {
                assert_eq!(s.matches(name), *want, "{list} {name}");
            }
        }
        assert!(Selector::parse("").is_empty());
        assert!(Selector::parse(",").is_empty());
    }

    /// The state fingerprint moves when a container's state file comes or
    /// goes, not for directories without one; everything under HOST_ROOT.
    #[test]
    fn state_fingerprints_follow_state_files() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Config {
            host: HostRoot::new(tmp.path()),
            ..Config::default()
        };
        let empty = c.state_fingerprint();
        let runc = tmp.path().join("run/runc/igt1");
        std::fs::create_dir_all(&runc).unwrap();
        assert_eq!(c.state_fingerprint(), empty, "no state file yet");
        std::fs::write(runc.join("state.json"), b"{}").unwrap();
        let one = c.state_fingerprint();
        assert_ne!(one, empty);
        let ns = tmp.path().join("run/containerd/runc/k8s.io/c2");
        std::fs::create_dir_all(&ns).unwrap();
        std::fs::write(ns.join("state.json"), b"{}").unwrap();
        let two = c.state_fingerprint();
        assert_ne!(two, one, "a new containerd namespace is read too");
        std::fs::remove_dir_all(&runc).unwrap();
        assert_ne!(c.state_fingerprint(), two);
        assert_eq!(
            c.runc_roots()
                .iter()
                .map(|(_, p)| p.strip_prefix(tmp.path()).unwrap().to_owned())
                .collect::<Vec<_>>(),
            [
                PathBuf::from("run/containerd/runc/k8s.io"),
                PathBuf::from("run/docker/runtime-runc/moby"),
                PathBuf::from("run/runc")
            ]
        );
    }

    #[test]
    fn unit_names_are_unescaped() {
        assert_eq!(unescape_unit("a\\x2db\\x2dc"), "a-b-c");
        assert_eq!(unescape_unit("bad\\xzz"), "bad\\xzz");
        assert_eq!(unescape_unit("end\\x"), "end\\x");
    }
}
