//! `ig image inspect IMAGE`: what an image is made of, and with
//! `--show-datasources` what it will produce.
//!
//! Lives in the CLI because it joins two layers that must not know each
//! other: the store (`image/`) gives the manifest and the object bytes, and
//! the library's run (`ig::run::GadgetRun::describe`) builds the operator
//! chain the way `ig run` will, for the final schemas (the fields every
//! operator adds included), without loading anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::args::InspectFormat;
use super::logger;
use super::table::render as table;
use ig::bpf::contract::Contract;
use ig::bpf::object::ObjectInfo;
use ig::btf::Btf;
use ig::image::Store;
use ig::image::oci::{self, TopLevel};
use ig::metadata::GadgetMetadata;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    reference: String,
    /// Digest of the image index (what `ig image list` shows).
    digest: String,
    media_type: String,
    platforms: Vec<String>,
    /// Platforms of the index whose manifests are not in the store (a
    /// pull downloads only the host's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    platforms_not_pulled: Vec<String>,
    /// Digest of the manifest for this host.
    manifest_digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    annotations: BTreeMap<String, String>,
    /// The host's manifest, as stored.
    manifest: serde_json::Value,
    /// Whether the image has an eBPF program; without one, it is made of
    /// the operators its gadget.yaml turns on.
    ebpf_program: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    operators: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_sources: Option<Vec<DataSource>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DataSource {
    name: String,
    /// The C struct of its events (data sources of the eBPF program).
    #[serde(skip_serializing_if = "String::is_empty")]
    struct_name: String,
    /// The operator that makes it (data sources of operators).
    #[serde(skip_serializing_if = "String::is_empty")]
    operator: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    fields: Vec<Field>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Field {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    hidden: bool,
}

impl Field {
    fn of(f: &ig::datasource::FieldDef) -> Self {
        Self {
            name: f.name.clone(),
            kind: f.kind.name(),
            tags: f.tags.clone(),
            annotations: f.annotations.clone(),
            hidden: f.hidden,
        }
    }
}

pub fn inspect(
    store: &Path,
    image: &str,
    format: Option<InspectFormat>,
    show_datasources: bool,
) -> anyhow::Result<()> {
    let store = Store::open_read_only(store)?;
    let reference = store.find(image)?;
    let context = || format!("inspecting {reference}");
    let resolved = store.resolve(&reference).with_context(context)?;
    // A pulled image may hold only this machine's platform.
    let (top, blobs, absent) = store
        .image_blobs_present(&reference)
        .with_context(context)?;
    let top_bytes = blobs
        .iter()
        .find(|b| b.descriptor.digest == top.digest)
        .map(|b| b.bytes.as_slice())
        .unwrap_or_default();
    let platforms = match oci::parse_top_level(&top.media_type, top_bytes) {
        Ok(TopLevel::Index(i)) => oci::architectures(&i),
        _ => Vec::new(),
    };
    let not_pulled: Vec<String> = absent
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.architecture.clone()))
        .collect();
    let manifest_bytes = blobs
        .iter()
        .find(|b| b.descriptor.digest == resolved.manifest_digest)
        .map(|b| b.bytes.as_slice())
        .unwrap_or_default();
    let manifest = serde_json::from_slice(manifest_bytes)
        .unwrap_or_else(|_| serde_json::to_value(&resolved.manifest).unwrap_or_default());

    let operators = configured_operators(&resolved.config_yaml, &reference.to_string());
    let data_sources = if show_datasources {
        Some(data_sources(
            store.root(),
            &reference.to_string(),
            resolved.ebpf_object.as_deref(),
            &resolved.config_yaml,
        )?)
    } else {
        None
    };
    let report = Report {
        reference: reference.to_string(),
        digest: resolved.index_digest.to_string(),
        media_type: top.media_type.clone(),
        platforms,
        platforms_not_pulled: not_pulled,
        manifest_digest: resolved.manifest_digest.to_string(),
        created: resolved.created.clone(),
        annotations: resolved.annotations.clone(),
        manifest,
        ebpf_program: resolved.ebpf_object.is_some(),
        operators: operators.iter().map(|o| (*o).to_owned()).collect(),
        data_sources,
    };
    let out = match format {
        Some(InspectFormat::Json) => serde_json::to_string_pretty(&report)?,
        Some(InspectFormat::Yaml) => yaml_serde::to_string(&report)?,
        Some(InspectFormat::Columns) => columns(&report, &resolved.manifest),
        None => summary(&report, &resolved.manifest),
    };
    logger::stdout_line(out.trim_end());
    Ok(())
}

/// The data sources `ig run` would create, with their final schemas: the
/// run's operator chain built as for a run (the eBPF object's BTF
/// annotated by gadget.yaml, then every operator's fields: `timestamp`,
/// `error`, `proc.creds.user`, `runtime.*`, `k8s.*`...), nothing loaded.
/// The same schemas as `ig run IMAGE --help` lists.
fn data_sources(
    store: &Path,
    reference: &str,
    object: Option<&[u8]>,
    config: &[u8],
) -> anyhow::Result<Vec<DataSource>> {
    let mut run = ig::run::GadgetRun::from_store(store, reference)
        .pull(ig::run::PullPolicy::Never)
        .gadget_runs(super::run::gadget_runs())
        .guest_stderr(logger::guest_stderr());
    let info = run
        .describe()
        .with_context(|| format!("reading the data sources of {reference}"))?;
    for w in &info.warnings {
        log::warn!("{w}");
    }
    let structs = match object {
        Some(o) => tracer_structs(o)?,
        None => BTreeMap::new(),
    };
    let operators = operator_sources(config, reference)?;
    Ok(info
        .sources
        .iter()
        .map(|schema| DataSource {
            name: schema.name.clone(),
            struct_name: structs.get(&schema.name).cloned().unwrap_or_default(),
            operator: operators.get(&schema.name).cloned().unwrap_or_default(),
            annotations: schema.annotations.clone(),
            fields: schema
                .display_order()
                .into_iter()
                .map(|id| Field::of(schema.field(id)))
                .collect(),
        })
        .collect())
}

/// The C struct of each tracer of the eBPF object, by data source.
fn tracer_structs(object: &[u8]) -> anyhow::Result<BTreeMap<String, String>> {
    let info = ObjectInfo::parse(object).context("reading the eBPF object")?;
    let btf = Btf::parse(&info.btf).context("reading the object's BTF")?;
    let contract = Contract::discover(&btf).context("reading the gadget markers")?;
    Ok(contract
        .tracers
        .into_iter()
        .map(|t| (t.name, t.struct_name))
        .collect())
}

/// The operators the image's gadget.yaml turns on, with its custom
/// parameters at their defaults (none when it cannot be read).
fn configured_operators(config: &[u8], name: &str) -> Vec<&'static str> {
    let Ok(meta) = GadgetMetadata::parse(config, &format!("gadget.yaml of {name}")) else {
        return Vec::new();
    };
    meta.with_defaults(&format!("gadget.yaml of {name}"))
        .ok()
        .and_then(|m| ig::operators::from_config(&m, &ig::operators::Seams::default()).ok())
        .map(|ops| ops.iter().map(|o| o.name()).collect())
        .unwrap_or_default()
}

/// The operator that makes each data source of the operators gadget.yaml
/// turns on (each instantiated alone, never started).
fn operator_sources(config: &[u8], name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    if config.is_empty() {
        return Ok(BTreeMap::new());
    }
    let file = format!("gadget.yaml of {name}");
    let meta = GadgetMetadata::parse(config, &file)?.with_defaults(&file)?;
    let ops = ig::operators::from_config(&meta, &ig::operators::Seams::default())?;
    let mut out = BTreeMap::new();
    for op in ops {
        let operator = op.name().to_owned();
        let p = ig::pipeline::Pipeline::build(vec![op], &ig::params::ParamValues::default())
            .with_context(|| format!("operator {operator}"))?;
        for (_, schema) in p.dispatch.schemas() {
            out.insert(schema.name.clone(), operator.clone());
        }
    }
    Ok(out)
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn summary(r: &Report, m: &ig::image::Manifest) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Reference:  {}", r.reference);
    let _ = writeln!(s, "Digest:     {}", r.digest);
    if !r.platforms.is_empty() {
        let shown: Vec<String> = r
            .platforms
            .iter()
            .map(|p| {
                if r.platforms_not_pulled.contains(p) {
                    format!("{p} (not pulled)")
                } else {
                    p.clone()
                }
            })
            .collect();
        let _ = writeln!(s, "Platforms:  {}", shown.join(", "));
    }
    let _ = writeln!(
        s,
        "Manifest:   {} (linux/{})",
        r.manifest_digest,
        oci::host_architecture()
    );
    if let Some(c) = &r.created {
        let _ = writeln!(s, "Created:    {c}");
    }
    if !r.annotations.is_empty() {
        let _ = writeln!(s, "Annotations:");
        for (k, v) in &r.annotations {
            let _ = writeln!(s, "  {k}: {v}");
        }
    }
    let _ = writeln!(
        s,
        "Config:     {}  {}  {}",
        m.config.media_type,
        m.config.digest.short(),
        human_size(m.config.size)
    );
    if !r.ebpf_program {
        let _ = writeln!(
            s,
            "eBPF:       none, a gadget of operators ({})",
            if r.operators.is_empty() {
                "none turned on".to_owned()
            } else {
                r.operators.join(", ")
            }
        );
    }
    let _ = writeln!(
        s,
        "Layers:{}",
        if m.layers.is_empty() { " none" } else { "" }
    );
    for l in &m.layers {
        let _ = writeln!(
            s,
            "  {}  {}  {}",
            l.media_type,
            l.digest.short(),
            human_size(l.size)
        );
    }
    if let Some(ds) = &r.data_sources {
        for d in ds {
            if !d.struct_name.is_empty() {
                let _ = writeln!(s, "Data source {} (struct {}):", d.name, d.struct_name);
            } else if !d.operator.is_empty() {
                let _ = writeln!(s, "Data source {} (operator {}):", d.name, d.operator);
            } else {
                let _ = writeln!(s, "Data source {}:", d.name);
            }
            let rows: Vec<[String; 4]> = d
                .fields
                .iter()
                .filter(|f| !f.hidden && f.kind != "struct")
                .map(|f| {
                    [
                        f.name.clone(),
                        f.kind.to_owned(),
                        f.tags.join(","),
                        f.annotations
                            .get("description")
                            .cloned()
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            for line in table(["FIELD", "TYPE", "TAGS", "DESCRIPTION"], &rows).lines() {
                let _ = writeln!(s, "  {line}");
            }
        }
    }
    s
}

fn columns(r: &Report, m: &ig::image::Manifest) -> String {
    match &r.data_sources {
        Some(ds) => {
            let rows: Vec<[String; 4]> = ds
                .iter()
                .flat_map(|d| {
                    d.fields.iter().map(|f| {
                        [
                            d.name.clone(),
                            f.name.clone(),
                            f.kind.to_owned(),
                            f.tags.join(","),
                        ]
                    })
                })
                .collect();
            table(["DATASOURCE", "FIELD", "TYPE", "TAGS"], &rows)
        }
        None => {
            let rows: Vec<[String; 4]> = std::iter::once(("config", &m.config))
                .chain(m.layers.iter().map(|l| ("layer", l)))
                .map(|(kind, d)| {
                    [
                        kind.to_owned(),
                        d.media_type.clone(),
                        d.digest.to_string(),
                        d.size.to_string(),
                    ]
                })
                .collect();
            table(["KIND", "MEDIA TYPE", "DIGEST", "SIZE"], &rows)
        }
    }
}
