//! `ig list-containers`: the containers the enrichment and `-c` see, from
//! the same detection (`containers::Detector`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::args::ListContainersArgs;
use super::logger;
use crate::containers::{Container, Detector};

/// Output formats of `ig list-containers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ContainersFormat {
    #[default]
    Columns,
    /// One JSON array (with --watch: one JSON object per line and change).
    Json,
}

pub fn list_containers(args: &ListContainersArgs) -> anyhow::Result<()> {
    let mut d = Detector::new();
    let list = d.scan();
    if !args.watch {
        match args.output {
            ContainersFormat::Columns => {
                let rows: Vec<[String; 7]> = list.iter().map(row).collect();
                logger::stdout_line(table_text(&rows, false).trim_end());
            }
            ContainersFormat::Json => {
                let all: Vec<serde_json::Value> = list.iter().map(json).collect();
                logger::stdout_line(&serde_json::to_string_pretty(&all)?);
            }
        }
        return Ok(());
    }
    // Watch: the running containers first, then every change, polled
    // once a second.
    if args.output == ContainersFormat::Columns {
        logger::stdout_line(table_text(&[], true).trim_end());
    }
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
        std::thread::sleep(Duration::from_secs(1));
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

const HEADER: [&str; 7] = [
    "RUNTIME",
    "CONTAINERID",
    "NAME",
    "IMAGE",
    "PID",
    "MNTNS",
    "NETNS",
];
const WATCH_WIDTHS: [usize; 8] = [8, 14, 13, 24, 24, 8, 11, 11];

fn row(c: &Container) -> [String; 7] {
    [
        c.runtime.name().to_owned(),
        c.short_id().to_owned(),
        c.name.clone(),
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

fn table_text(rows: &[[String; 7]], watch: bool) -> String {
    if watch {
        let mut h = vec!["EVENT".to_owned()];
        h.extend(HEADER.iter().map(|s| (*s).to_owned()));
        return format_row(&h, &WATCH_WIDTHS);
    }
    super::image::table(HEADER, rows)
}

/// Upstream's field names (`runtime.containerName`...), as the enrichment
/// writes them into events.
fn json(c: &Container) -> serde_json::Value {
    serde_json::json!({
        "runtime": {
            "runtimeName": c.runtime.name(),
            "containerId": c.id,
            "containerName": c.name,
            "containerImageName": c.image,
            "containerPid": c.pid,
        },
        "mntns": c.mntns,
        "netns": c.netns,
        "cgroupPath": c.cgroup,
    })
}
