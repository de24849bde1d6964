//! Containers on this host: which processes belong to which container, and
//! the container's name, image, runtime, init pid and namespaces.
//!
//! Detection needs no runtime: every process's `/proc/PID/cgroup` names the
//! cgroup its runtime put it in, and the runtimes' cgroup names carry the
//! container id ([`parse_cgroup_path`]). When a runtime's API socket is
//! present (docker, podman), its `GET /containers/ID/json` adds the name and
//! the image ([`runtime_api`]); containerd and cri-o speak gRPC only and are
//! not asked, so their containers are named by their short id.
//!
//! Pure parsing ([`parse_cgroup_path`], [`parse_cgroup_file`],
//! [`parse_ns_link`], [`parse_stat_ppid`], [`runtime_api::parse_inspect`])
//! is separate from the I/O ([`Detector::scan`]), so the former is tested
//! with strings and the latter on the real host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub mod runtime_api;

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
        }
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
    /// Empty when no runtime API told us.
    pub image: String,
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

/// The parent pid from `/proc/PID/stat` (the field after the `)` that
/// ends the command name, which may itself hold spaces and parentheses).
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    it.next()?; // state
    it.next()?.parse().ok()
}

/// The runtime sockets looked for, in upstream's default places.
pub const DEFAULT_SOCKETS: &[(Runtime, &str)] = &[
    (Runtime::Docker, "/run/docker.sock"),
    (Runtime::Podman, "/run/podman/podman.sock"),
    (Runtime::Containerd, "/run/containerd/containerd.sock"),
    (Runtime::CriO, "/run/crio/crio.sock"),
];

/// Finds the containers of the host. Keeps what runtime APIs answered, by
/// container id, so each container is asked about once.
pub struct Detector {
    proc_root: PathBuf,
    sockets: Vec<(Runtime, PathBuf)>,
    /// `(name, image)` by container id; `None`: the API did not know it.
    api_cache: HashMap<String, Option<(String, String)>>,
}

impl Default for Detector {
    fn default() -> Self {
        Self::new()
    }
}

struct Member {
    pid: u32,
    ppid: u32,
    mntns: Option<u64>,
    netns: Option<u64>,
}

impl Detector {
    /// The host's `/proc` and the runtimes' default sockets.
    pub fn new() -> Self {
        Self::with(
            "/proc",
            DEFAULT_SOCKETS
                .iter()
                .map(|(r, p)| (*r, PathBuf::from(p)))
                .collect(),
        )
    }

    /// A detector reading `proc_root` (instead of `/proc`) and asking the
    /// runtimes at `sockets`.
    pub fn with(proc_root: impl Into<PathBuf>, sockets: Vec<(Runtime, PathBuf)>) -> Self {
        Self {
            proc_root: proc_root.into(),
            sockets,
            api_cache: HashMap::new(),
        }
    }

    /// The mount namespace of the host (of pid 1), which is no container's.
    pub fn host_mntns(&self) -> Option<u64> {
        ns_of(&self.proc_root, 1, "mnt")
    }

    /// Walk `/proc` once and return the containers found, sorted by name.
    /// Processes that exit during the walk are skipped.
    pub fn scan(&mut self) -> Vec<Container> {
        let Ok(dir) = std::fs::read_dir(&self.proc_root) else {
            return Vec::new();
        };
        let mut groups: HashMap<(Runtime, String), (String, Vec<Member>)> = HashMap::new();
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let base = self.proc_root.join(pid.to_string());
            let Ok(cg) = std::fs::read_to_string(base.join("cgroup")) else {
                continue;
            };
            let Some((m, path)) = parse_cgroup_file(&cg) else {
                continue;
            };
            let ppid = std::fs::read_to_string(base.join("stat"))
                .ok()
                .and_then(|s| parse_stat_ppid(&s))
                .unwrap_or(0);
            let member = Member {
                pid,
                ppid,
                mntns: ns_of(&self.proc_root, pid, "mnt"),
                netns: ns_of(&self.proc_root, pid, "net"),
            };
            groups
                .entry((m.runtime, m.id))
                .or_insert_with(|| (path, Vec::new()))
                .1
                .push(member);
        }
        let mut out = Vec::new();
        for ((runtime, id), (cgroup, members)) in groups {
            // The init: its parent is not in the container (lowest pid if
            // several, e.g. after the parent exited and pids were reparented).
            let inside = |p: u32| members.iter().any(|m| m.pid == p);
            let Some(init) = members
                .iter()
                .filter(|m| !inside(m.ppid))
                .min_by_key(|m| m.pid)
                .or_else(|| members.iter().min_by_key(|m| m.pid))
            else {
                continue;
            };
            let Some(mntns) = init.mntns else { continue };
            let mut mntns_ids: Vec<u64> = members.iter().filter_map(|m| m.mntns).collect();
            mntns_ids.sort_unstable();
            mntns_ids.dedup();
            let (name, image) = self.describe(runtime, &id);
            out.push(Container {
                name,
                image,
                runtime,
                pid: init.pid,
                mntns,
                netns: init.netns.unwrap_or(0),
                cgroup,
                mntns_ids,
                id,
            });
        }
        out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        out
    }

    /// Name and image: from the runtime's API if its socket is there, else
    /// the short id (the machine name for nspawn) and no image.
    fn describe(&mut self, runtime: Runtime, id: &str) -> (String, String) {
        if runtime == Runtime::Nspawn {
            return (id.to_owned(), String::new());
        }
        let fallback = || (short_id(id).to_owned(), String::new());
        if let Some(known) = self.api_cache.get(id) {
            return known.clone().unwrap_or_else(fallback);
        }
        let socket = self
            .sockets
            .iter()
            .find(|(r, p)| *r == runtime && runtime_api::speaks_http(*r) && p.exists())
            .map(|(_, p)| p.clone());
        let Some(socket) = socket else {
            return fallback();
        };
        let answer = match runtime_api::inspect(&socket, id) {
            Ok(i) => Some((i.name, i.image)),
            Err(e) => {
                log::debug!("asking {} about {id}: {e}", socket.display());
                None
            }
        };
        self.api_cache.insert(id.to_owned(), answer.clone());
        answer.unwrap_or_else(fallback)
    }
}

fn ns_of(proc_root: &Path, pid: u32, ns: &str) -> Option<u64> {
    let link = std::fs::read_link(proc_root.join(format!("{pid}/ns/{ns}"))).ok()?;
    parse_ns_link(link.to_str()?)
}

/// Which containers `-c/--containername` selects: a comma list of names;
/// `!name` excludes one (upstream's syntax). Only exclusions means "every
/// container but these".
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
        (self.include.is_empty() || self.include.iter().any(|n| n == name))
            && !self.exclude.iter().any(|n| n == name)
    }
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

    #[test]
    fn unit_names_are_unescaped() {
        assert_eq!(unescape_unit("a\\x2db\\x2dc"), "a-b-c");
        assert_eq!(unescape_unit("bad\\xzz"), "bad\\xzz");
        assert_eq!(unescape_unit("end\\x"), "end\\x");
    }
}
