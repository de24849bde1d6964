//! `ig list-containers`: the containers the enrichment and `-c` see, from
//! the same detection (`containers::Detector`) and the same flags as
//! `ig run`'s local manager (`--runtimes`, the sockets,
//! `--containerd-namespace`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::args::ListContainersArgs;
use super::logger;
use ig::containers::watch::Watcher;
use ig::containers::{Config, Container, Detector, HostRoot, Runtime};

/// Where containers come from: upstream's flags, as `ig run` has them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SourceArgs {
    /// Container runtimes to read (docker, containerd, cri-o, podman;
    /// comma-separated). Default: all, those without a socket skipped; a
    /// runtime named here whose socket does not exist is an error.
    #[arg(short, long, value_name = "RUNTIMES")]
    pub runtimes: Option<String>,
    /// docker's socket [default: /run/docker.sock].
    #[arg(long, value_name = "PATH")]
    pub docker_socketpath: Option<String>,
    /// containerd's socket [default: /run/containerd/containerd.sock].
    #[arg(long, value_name = "PATH")]
    pub containerd_socketpath: Option<String>,
    /// cri-o's socket [default: /run/crio/crio.sock].
    #[arg(long, value_name = "PATH")]
    pub crio_socketpath: Option<String>,
    /// podman's socket [default: /run/podman/podman.sock].
    #[arg(long, value_name = "PATH")]
    pub podman_socketpath: Option<String>,
    /// Only this containerd namespace [default: every namespace].
    #[arg(long, value_name = "NAMESPACE")]
    pub containerd_namespace: Option<String>,
}

impl SourceArgs {
    pub fn config(&self) -> anyhow::Result<Config> {
        let sockets: Vec<(Runtime, &str)> = [
            (Runtime::Docker, &self.docker_socketpath),
            (Runtime::Containerd, &self.containerd_socketpath),
            (Runtime::CriO, &self.crio_socketpath),
            (Runtime::Podman, &self.podman_socketpath),
        ]
        .into_iter()
        .filter_map(|(r, p)| p.as_deref().map(|p| (r, p)))
        .collect();
        Ok(Config::from_flags(
            HostRoot::from_env(),
            self.runtimes.as_deref(),
            &sockets,
            self.containerd_namespace
                .as_deref()
                .filter(|n| !n.is_empty()),
        )?)
    }
}

/// Output formats of `ig list-containers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ContainersFormat {
    #[default]
    Columns,
    /// One JSON array (with --watch: one JSON object per line and change).
    Json,
}

pub fn list_containers(args: &ListContainersArgs) -> anyhow::Result<()> {
    let config = args.sources.config()?;
    let mut d = Detector::with_config(config.clone());
    let list = d.scan();
    if !args.watch {
        match args.output {
            ContainersFormat::Columns => {
                let rows: Vec<[String; N_COLUMNS]> = list.iter().map(row).collect();
                logger::stdout_line(table_text(&rows, false).trim_end());
            }
            ContainersFormat::Json => {
                let all: Vec<serde_json::Value> = list.iter().map(json).collect();
                logger::stdout_line(&serde_json::to_string_pretty(&all)?);
            }
        }
        return Ok(());
    }
    // Watch: the running containers first, then every change: scanned
    // again when the runtimes' state directories or docker's event stream
    // say something, and at least once a second.
    if args.output == ContainersFormat::Columns {
        logger::stdout_line(table_text(&[], true).trim_end());
    }
    let (roots, parents) = config.watch_dirs();
    let docker = config.socket(Runtime::Docker).filter(|p| p.exists());
    let mut watcher = match Watcher::new(roots, parents, docker) {
        Ok(w) => Some(w),
        Err(e) => {
            log::warn!("polling once a second: {e}");
            None
        }
    };
    let mut known: BTreeMap<String, Container> = BTreeMap::new();
    let mut current = list;
    loop {
        let now: BTreeMap<String, Container> =
            current.into_iter().map(|c| (c.id.clone(), c)).collect();
        for (id, c) in &now {
            if !known.contains_key(id) {
                print_change("ADDED", c, args.output);
            }
        }
        for (id, c) in &known {
            if !now.contains_key(id) {
                print_change("REMOVED", c, args.output);
            }
        }
        known = now;
        match watcher.as_mut() {
            Some(w) => {
                let mut p = libc::pollfd {
                    fd: w.fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, 1000) };
                w.drain();
                w.rearm();
            }
            None => std::thread::sleep(Duration::from_secs(1)),
        }
        current = d.scan();
    }
}

fn print_change(what: &str, c: &Container, format: ContainersFormat) {
    match format {
        ContainersFormat::Columns => {
            let r = row(c);
            let mut cells = vec![what.to_owned()];
            cells.extend(r);
            logger::stdout_line(&format_row(&cells, &WATCH_WIDTHS));
        }
        ContainersFormat::Json => {
            let v = serde_json::json!({"event": what, "container": json(c)});
            logger::stdout_line(&v.to_string());
        }
    }
}

const N_COLUMNS: usize = 9;
const HEADER: [&str; N_COLUMNS] = [
    "RUNTIME",
    "CONTAINERID",
    "NAME",
    "NAMESPACE",
    "POD",
    "IMAGE",
    "PID",
    "MNTNS",
    "NETNS",
];
const WATCH_WIDTHS: [usize; N_COLUMNS + 1] = [8, 14, 13, 24, 12, 16, 24, 8, 11, 11];

fn row(c: &Container) -> [String; N_COLUMNS] {
    [
        c.runtime.name().to_owned(),
        c.short_id().to_owned(),
        c.name.clone(),
        c.k8s.namespace.clone(),
        c.k8s.pod_name.clone(),
        c.image.clone(),
        c.pid.to_string(),
        c.mntns.to_string(),
        c.netns.to_string(),
    ]
}

fn format_row(cells: &[String], widths: &[usize]) -> String {
    let mut l = String::new();
    for (c, w) in cells.iter().zip(widths) {
        l.push_str(&format!("{c:<w$}  "));
    }
    l.trim_end().to_owned()
}

fn table_text(rows: &[[String; N_COLUMNS]], watch: bool) -> String {
    if watch {
        let mut h = vec!["EVENT".to_owned()];
        h.extend(HEADER.iter().map(|s| (*s).to_owned()));
        return format_row(&h, &WATCH_WIDTHS);
    }
    super::table::render(HEADER, rows)
}

/// Upstream's field names (`runtime.containerName`, `k8s.podName`...), as
/// the enrichment writes them into events, and the namespaces.
fn json(c: &Container) -> serde_json::Value {
    serde_json::json!({
        "k8s": {
            "node": "",
            "namespace": c.k8s.namespace,
            "podName": c.k8s.pod_name,
            "containerName": c.k8s.container_name,
            "podUID": c.k8s.pod_uid,
            "hostnetwork": c.host_network,
            "podLabels": "",
            "owner": {"kind": "", "name": ""},
        },
        "runtime": {
            "runtimeName": c.runtime.name(),
            "containerId": c.id,
            "containerName": c.name,
            "containerImageName": c.image,
            "containerImageDigest": c.image_digest,
            "containerImageId": c.image_id,
            "containerPid": c.pid,
            "containerStartedAt": c.started_at,
        },
        "mntns": c.mntns,
        "netns": c.netns,
        "cgroupPath": c.cgroup,
    })
}
