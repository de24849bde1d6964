//! Helpers for data sources whose events are made in user space (the
//! process, cgroup and eBPF statistics operators): a schema of owned
//! fields, with `gadget.yaml`'s annotations applied first so they win over
//! the operator's defaults. Not an operator.

use crate::datasource::{FieldId, FieldKind, SchemaBuilder, SchemaError, SourceKind};
use crate::metadata::GadgetMetadata;

/// An array data source named `name`, carrying the annotations
/// `gadget.yaml` gives it and waiting for those of its fields.
pub fn array_source(name: &str, meta: &GadgetMetadata) -> SchemaBuilder {
    let mut b = SchemaBuilder::new(name, SourceKind::Array, 0);
    if let Some(ds) = meta.datasources.get(name) {
        b.annotations_mut().extend(ds.annotations.clone());
        for (field, f) in &ds.fields {
            b.annotate_later(field.clone(), f.annotations.clone());
        }
    }
    b
}

/// Add an owned field with default annotations (kept only where
/// `gadget.yaml` set none) and type tags.
pub fn field(
    b: &mut SchemaBuilder,
    name: &str,
    kind: FieldKind,
    defaults: &[(&str, &str)],
    tags: &[&str],
) -> Result<FieldId, SchemaError> {
    let id = b.add_owned(name.to_owned(), kind, None)?;
    let f = b.field_mut(id);
    for (k, v) in defaults {
        f.default_annotation(k, v);
    }
    f.tags.extend(tags.iter().map(|t| (*t).to_owned()));
    Ok(id)
}

/// Annotations of upstream's column templates (`template: pid` and so
/// on), for fields that upstream declares with one.
pub fn template(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        "pid" => &[
            ("description", "Process ID"),
            ("columns.minwidth", "7"),
            ("columns.alignment", "right"),
        ],
        "ppid" => &[
            ("description", "Parent process ID"),
            ("columns.minwidth", "7"),
            ("columns.alignment", "right"),
            ("columns.hidden", "true"),
        ],
        "comm" => &[("description", "Process name"), ("columns.maxwidth", "16")],
        "uid" => &[
            ("description", "User ID"),
            ("columns.minwidth", "8"),
            ("columns.alignment", "right"),
        ],
        "mntns_id" => &[
            ("description", "Mount namespace ID"),
            ("columns.hidden", "true"),
            ("columns.width", "12"),
            ("columns.alignment", "right"),
        ],
        _ => &[],
    }
}

/// Annotations as a map, for tests.
#[cfg(test)]
pub fn annotations(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gadget_yaml_wins_over_defaults() {
        let meta = GadgetMetadata::parse(
            b"datasources:\n  t:\n    annotations:\n      cli.clear-screen-before: 'true'\n    fields:\n      pid:\n        annotations:\n          columns.alias: PID!\n          columns.minwidth: 3\n",
            "g.yaml",
        )
        .unwrap();
        let mut b = array_source("t", &meta);
        let pid = field(&mut b, "pid", FieldKind::I32, template("pid"), &["type:x"]).unwrap();
        let s = b.build();
        assert_eq!(s.annotations["cli.clear-screen-before"], "true");
        let f = s.field(pid);
        assert_eq!(
            f.annotations,
            annotations(&[
                ("columns.alias", "PID!"),
                ("columns.minwidth", "3"),
                ("columns.alignment", "right"),
                ("description", "Process ID"),
            ])
        );
        assert_eq!(f.tags, ["type:x"]);
    }
}
