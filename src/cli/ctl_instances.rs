//! `gadgetctl`'s headless instances: `run --detach`, `run -f MANIFEST`,
//! `list`, `show`, `delete` (upstream's `GadgetInstanceManager` calls, on
//! every node of a fan-out). `attach` streams as `run` does
//! (`gadgetctl::stream`); this module only says which instance.
//!
//! An instance is named by its id, its name, or a prefix of its id, as
//! upstream's client resolves them: against the node's list.
//!
//! Does not own: the connection (`gadgetctl`, `remote`), the daemon's
//! side (`instances`), the manifest format (`ig::run::manifest`).

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use ig::run::manifest;
use ig_api::API_VERSION;
use ig_api::grpc::gadget_instance_manager_client::GadgetInstanceManagerClient;
use ig_api::proto::{
    CreateGadgetInstanceRequest, GadgetInstance, GadgetInstanceId, GadgetInstanceStatus,
    GadgetRunRequest, ListGadgetInstancesRequest,
};

use super::gadgetctl::{Conn, every_node_succeeded, status_error};

/// An instance to create: what `run --detach` or one spec of a manifest
/// says.
pub struct NewInstance {
    pub image: String,
    pub name: Option<String>,
    pub id: Option<String>,
    pub tags: Vec<String>,
    pub params: BTreeMap<String, String>,
    pub timeout_ns: i64,
}

/// Checks what upstream's daemon checks, before any call: a fan-out
/// creates all or nothing for a bad name.
fn check(n: &NewInstance) -> anyhow::Result<()> {
    if let Some(name) = &n.name
        && !manifest::is_valid_name(name)
    {
        bail!(
            "--name {name:?}: an instance name is 1 to 32 of a-z, 0-9, - and _ (upstream's rule)"
        );
    }
    if let Some(id) = &n.id
        && !manifest::is_valid_id(id)
    {
        bail!("--id {id:?}: an instance id is 32 lowercase hex digits");
    }
    if let Some(t) = n.tags.iter().find(|t| t.is_empty()) {
        bail!("--tags: an empty tag {t:?}");
    }
    Ok(())
}

/// Create `new` on every node (the same id on each: one is drawn here
/// when none is given); prints each id once created.
pub fn create(conn: &Conn, new: &[NewInstance]) -> anyhow::Result<()> {
    for n in new {
        check(n)?;
    }
    let mut failed = conn.failed.clone();
    for n in new {
        let id = match &n.id {
            Some(id) => id.clone(),
            None => super::instances::new_id().context("a random instance id")?,
        };
        let req = CreateGadgetInstanceRequest {
            gadget_instance: Some(GadgetInstance {
                id: id.clone(),
                gadget_config: Some(GadgetRunRequest {
                    image_name: n.image.clone(),
                    param_values: n.params.clone().into_iter().collect(),
                    args: Vec::new(),
                    version: API_VERSION,
                    log_level: ig_api::log_level::INFO,
                    timeout: n.timeout_ns,
                    // Headless instances stream to attached clients one
                    // message per event, as upstream's do.
                    batch_events: false,
                }),
                tags: n.tags.clone(),
                time_created: 0,
                nodes: Vec::new(),
                name: n.name.clone().unwrap_or_default(),
                state: None,
            }),
            event_buffer_length: 0,
        };
        let mut created = false;
        for (node, channel) in &conn.nodes {
            let mut client = GadgetInstanceManagerClient::new(channel.clone());
            match conn
                .rt
                .block_on(client.create_gadget_instance(req.clone()))
                .map_err(status_error)
            {
                Ok(_) => created = true,
                Err(e) if !conn.fanout => {
                    return Err(e.context(format!("creating an instance of {}", n.image)));
                }
                Err(e) => {
                    log::error!("node {node}: creating an instance of {}: {e:#}", n.image);
                    failed.push(node.clone());
                }
            }
        }
        if created {
            super::logger::stdout_line(&id);
        }
    }
    failed.sort();
    failed.dedup();
    every_node_succeeded(conn.nodes.len() + conn.failed.len(), &failed)
}

/// `gadgetctl run -f FILE|-`: every spec of the manifest as an instance.
pub fn create_from_manifest(conn: &Conn, source: &str) -> anyhow::Result<()> {
    let context = || format!("reading the manifest {source}");
    let text = super::run::read_manifest(source, &super::args::RegistryArgs::default())
        .with_context(context)?;
    let specs = manifest::parse(&text).with_context(context)?;
    let new: Vec<NewInstance> = specs
        .into_iter()
        .map(|s| NewInstance {
            image: s.image,
            name: s.name,
            id: s.id,
            tags: s.tags,
            params: s.param_values,
            timeout_ns: 0,
        })
        .collect();
    create(conn, &new)
}

fn list_of(
    conn: &Conn,
    channel: &tonic::transport::Channel,
) -> anyhow::Result<Vec<GadgetInstance>> {
    let mut client = GadgetInstanceManagerClient::new(channel.clone());
    Ok(conn
        .rt
        .block_on(client.list_gadget_instances(ListGadgetInstancesRequest {}))
        .map_err(status_error)?
        .into_inner()
        .gadget_instances)
}

fn status_name(gi: &GadgetInstance) -> &'static str {
    match gi.state.as_ref().map(|s| s.status) {
        Some(s) if s == GadgetInstanceStatus::StatusRunning as i32 => "Running",
        Some(s) if s == GadgetInstanceStatus::StatusError as i32 => "Error",
        _ => "Unknown",
    }
}

/// `gadgetctl list`: every node's instances, a table (upstream's
/// columns, NODE first in a fan-out) or JSON.
pub fn list(conn: &Conn, json: bool) -> anyhow::Result<()> {
    let mut failed = conn.failed.clone();
    let mut rows: Vec<(String, GadgetInstance)> = Vec::new();
    for (node, channel) in &conn.nodes {
        match list_of(conn, channel) {
            Ok(l) => rows.extend(l.into_iter().map(|g| (node.clone(), g))),
            Err(e) if !conn.fanout => return Err(e),
            Err(e) => {
                log::error!("node {node}: {e:#}");
                failed.push(node.clone());
            }
        }
    }
    if json {
        for (node, g) in &rows {
            let mut v = serde_json::json!({
                "id": g.id,
                "name": g.name,
                "tags": g.tags,
                "image": g.gadget_config.as_ref().map(|c| c.image_name.clone()).unwrap_or_default(),
                "timeCreated": g.time_created,
                "status": status_name(g),
                "message": g.state.as_ref().map(|s| s.message.clone()).unwrap_or_default(),
            });
            if conn.fanout {
                v["node"] = serde_json::json!(node);
            }
            super::logger::stdout_line(&v.to_string());
        }
    } else {
        let mut table: Vec<Vec<String>> = vec![
            ["ID", "NAME", "TAGS", "GADGET", "STATUS"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        ];
        for (_, g) in &rows {
            table.push(vec![
                g.id.chars().take(12).collect(),
                g.name.clone(),
                g.tags.join(","),
                g.gadget_config
                    .as_ref()
                    .map(|c| c.image_name.clone())
                    .unwrap_or_default(),
                status_name(g).to_owned(),
            ]);
        }
        if conn.fanout {
            table[0].insert(0, "NODE".into());
            for (row, (node, _)) in table[1..].iter_mut().zip(&rows) {
                row.insert(0, node.clone());
            }
        }
        let widths: Vec<usize> = (0..table[0].len())
            .map(|c| {
                table
                    .iter()
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &table {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            super::logger::stdout_line(line.join("  ").trim_end());
        }
    }
    every_node_succeeded(conn.nodes.len() + conn.failed.len(), &failed)
}

/// Which of `list` `key` names: an id, a name, or the prefix of one id.
pub fn resolve<'a>(list: &'a [GadgetInstance], key: &str) -> anyhow::Result<&'a GadgetInstance> {
    if let Some(g) = list.iter().find(|g| g.id == key || g.name == key) {
        return Ok(g);
    }
    let matching: Vec<&GadgetInstance> = if key.is_empty() {
        Vec::new()
    } else {
        list.iter().filter(|g| g.id.starts_with(key)).collect()
    };
    match matching.as_slice() {
        [one] => Ok(one),
        [] => bail!("no instance {key:?} (gadgetctl list shows them)"),
        _ => bail!(
            "{key:?} is ambiguous: the prefix of {} instances' ids",
            matching.len()
        ),
    }
}

/// `gadgetctl show KEY`: the instance as upstream's client shows it
/// (YAML), with its state on each node.
pub fn show(conn: &Conn, key: &str) -> anyhow::Result<()> {
    let mut failed = conn.failed.clone();
    let mut found: Option<GadgetInstance> = None;
    let mut states = Vec::new();
    for (node, channel) in &conn.nodes {
        let l = match list_of(conn, channel) {
            Ok(l) => l,
            Err(e) if !conn.fanout => return Err(e),
            Err(e) => {
                log::error!("node {node}: {e:#}");
                failed.push(node.clone());
                continue;
            }
        };
        match resolve(&l, key) {
            Ok(g) => {
                states.push(serde_json::json!({
                    "Node": node,
                    "Status": status_name(g),
                    "Message": g.state.as_ref().map(|s| s.message.clone()).unwrap_or_default(),
                }));
                found.get_or_insert_with(|| g.clone());
            }
            Err(e) if !conn.fanout => return Err(e),
            Err(e) => log::warn!("node {node}: {e:#}"),
        }
    }
    let Some(g) = found else {
        bail!("no instance {key:?} on any node (gadgetctl list shows them)");
    };
    let params: BTreeMap<String, String> = g
        .gadget_config
        .as_ref()
        .map(|c| c.param_values.clone().into_iter().collect())
        .unwrap_or_default();
    let doc = serde_json::json!({
        "ID": g.id,
        "Name": g.name,
        "Image": g.gadget_config.as_ref().map(|c| c.image_name.clone()).unwrap_or_default(),
        "Tags": g.tags,
        "TimeCreated": ig::operators::calendar::rfc3339_seconds(g.time_created),
        "Params": params,
        "NodeInstances": states,
    });
    let yaml = yaml_serde::to_string(&doc).context("writing YAML")?;
    super::logger::stdout_line(yaml.trim_end());
    every_node_succeeded(conn.nodes.len() + conn.failed.len(), &failed)
}

/// `gadgetctl delete KEY...`: each instance stopped and removed on every
/// node that has it; prints each id removed.
pub fn delete(conn: &Conn, keys: &[String]) -> anyhow::Result<()> {
    let mut failed = conn.failed.clone();
    let mut missing = Vec::new();
    let mut lists = Vec::new();
    for (node, channel) in &conn.nodes {
        match list_of(conn, channel) {
            Ok(l) => lists.push((node, channel, l)),
            Err(e) if !conn.fanout => return Err(e),
            Err(e) => {
                log::error!("node {node}: {e:#}");
                failed.push(node.clone());
            }
        }
    }
    for key in keys {
        let mut removed = None;
        for (node, channel, l) in &lists {
            let Ok(g) = resolve(l, key) else { continue };
            let mut client = GadgetInstanceManagerClient::new((*channel).clone());
            let r = conn
                .rt
                .block_on(client.remove_gadget_instance(GadgetInstanceId { id: g.id.clone() }))
                .map_err(status_error);
            match r.map(tonic::Response::into_inner) {
                Ok(s) if s.result == 0 => removed = Some(g.id.clone()),
                Ok(s) => {
                    log::error!("node {node}: removing {}: {}", g.id, s.message);
                    failed.push((*node).clone());
                }
                Err(e) => {
                    log::error!("node {node}: removing {}: {e:#}", g.id);
                    failed.push((*node).clone());
                }
            }
        }
        match removed {
            Some(id) => super::logger::stdout_line(&id),
            None => {
                // Ambiguity is said by `resolve`; anything else is absence.
                if let Some((_, _, l)) = lists.first()
                    && let Err(e) = resolve(l, key)
                {
                    log::error!("{e:#}");
                }
                missing.push(key.clone());
            }
        }
    }
    failed.sort();
    failed.dedup();
    if !missing.is_empty() {
        bail!("not deleted: {}", missing.join(", "));
    }
    every_node_succeeded(conn.nodes.len() + conn.failed.len(), &failed)
}
