//! `--fields`: which fields the printers show.
//!
//! Upstream's syntax: `a,b` shows exactly these, in this order (tables;
//! JSON keeps its nesting); `+a,-b` adds to / removes from the default set
//! (every entry must then start with `+` or `-`). A name is a full dotted
//! field name (`proc.comm`) or, when no other field has it, a column name as
//! a table's header shows it (`comm`, any case: `Schema::find_column`); a struct
//! name stands for every field under it. With several data sources,
//! `ds:a,b;ds2:+c` (entries without `ds:` apply to the others).
//!
//! The default set is, for tables, the fields without `columns.hidden`; for
//! JSON and YAML, the fields without `json.skip` (on them or a parent).
//! Selections are resolved once, when the printer is created: per event a
//! printer walks a list of field ids.

use crate::datasource::{ColumnMatch, FieldDef, FieldId, FieldKind, Schema};

/// Why a `--fields` value is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldsError {
    /// The value does not parse.
    #[error("--fields {spec:?}: {reason}")]
    Syntax {
        /// The value given.
        spec: String,
        /// Why.
        reason: String,
    },
    /// --fields: data source `source_name` has no field `field`.
    #[error(
        "--fields: data source {source_name} has no field {field}; its fields are: {available}"
    )]
    Unknown {
        /// The data source.
        source_name: String,
        /// The field.
        field: String,
        /// What there is instead.
        available: String,
    },
    /// --fields: column name `field` is ambiguous in data source `source_name`
    /// (`candidates`).
    #[error(
        "--fields: column name {field} is ambiguous in data source {source_name} ({candidates})"
    )]
    Ambiguous {
        /// The data source.
        source_name: String,
        /// The field.
        field: String,
        /// The fields it may mean.
        candidates: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Selection {
    /// Exactly these, in this order.
    Exact(Vec<String>),
    /// `(add, name)` applied to the default set.
    Relative(Vec<(bool, String)>),
}

/// A parsed `--fields` value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldsSpec {
    /// `(data source or None for the others, selection)`.
    parts: Vec<(Option<String>, Selection)>,
}

impl FieldsSpec {
    /// Parse a `--fields` value (see the module doc for the syntax).
    pub fn parse(spec: &str) -> Result<Self, FieldsError> {
        let syntax = |reason: &str| FieldsError::Syntax {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = Vec::new();
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (ds, list) = match part.split_once(':') {
                Some((ds, list)) => (Some(ds.trim().to_owned()), list),
                None => (None, part),
            };
            let names: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect();
            if names.is_empty() {
                return Err(syntax("no field names"));
            }
            let relative = names.iter().filter(|n| n.starts_with(['+', '-'])).count();
            let sel = if relative == 0 {
                Selection::Exact(names.iter().map(|n| (*n).to_owned()).collect())
            } else if relative == names.len() {
                Selection::Relative(
                    names
                        .iter()
                        .map(|n| (n.starts_with('+'), n[1..].trim().to_owned()))
                        .collect(),
                )
            } else {
                return Err(syntax(
                    "mix of plain and +/- names: list the fields, or add (+) and remove (-) from the defaults",
                ));
            };
            if parts.iter().any(|(d, _)| *d == ds) {
                return Err(syntax("a data source appears twice"));
            }
            parts.push((ds, sel));
        }
        Ok(Self { parts })
    }

    fn for_source(&self, name: &str) -> Option<&Selection> {
        self.parts
            .iter()
            .find(|(ds, _)| ds.as_deref() == Some(name))
            .or_else(|| self.parts.iter().find(|(ds, _)| ds.is_none()))
            .map(|(_, s)| s)
    }

    /// Data sources named in the spec, to check them against the gadget's.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|(ds, _)| ds.as_deref())
    }
}

/// Which printers' defaults apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Tables.
    Table,
    /// JSON and YAML.
    Json,
}

fn leaf(f: &FieldDef) -> bool {
    !f.hidden && f.kind != FieldKind::Struct
}

/// Whether `id` or a parent has `json.skip`.
fn json_skipped(schema: &Schema, id: FieldId) -> bool {
    let mut cur = Some(id);
    while let Some(c) = cur {
        let f = schema.field(c);
        if f.annotation("json.skip") == Some("true") {
            return true;
        }
        cur = f.parent;
    }
    false
}

/// The fields shown when `--fields` says nothing, in display order.
pub fn defaults(schema: &Schema, flavor: Flavor) -> Vec<FieldId> {
    schema
        .display_order()
        .into_iter()
        .filter(|&id| {
            let f = schema.field(id);
            leaf(f)
                && match flavor {
                    Flavor::Table => !f.hidden_in_tables(),
                    Flavor::Json => !json_skipped(schema, id),
                }
        })
        .collect()
}

/// The leaves `name` stands for: a field, or everything under a struct.
fn find(schema: &Schema, name: &str) -> Result<Vec<FieldId>, FieldsError> {
    let order = schema.display_order();
    let under = |root: FieldId| -> Vec<FieldId> {
        order
            .iter()
            .copied()
            .filter(|&id| {
                let mut cur = Some(id);
                while let Some(c) = cur {
                    if c == root {
                        return leaf(schema.field(id));
                    }
                    cur = schema.field(c).parent;
                }
                false
            })
            .collect()
    };
    match schema.find_column(name) {
        ColumnMatch::Field(id) => Ok(under(id)),
        ColumnMatch::None => Err(FieldsError::Unknown {
            source_name: schema.name.clone(),
            field: name.to_owned(),
            available: order
                .iter()
                .map(|&id| schema.field(id))
                .filter(|f| leaf(f))
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
        ColumnMatch::Ambiguous(ids) => Err(FieldsError::Ambiguous {
            source_name: schema.name.clone(),
            field: name.to_owned(),
            candidates: schema.names_of(&ids),
        }),
    }
}

/// The fields a printer of `flavor` shows for `schema`: the defaults, or
/// what `spec` says, in the order to print them.
pub fn select(
    schema: &Schema,
    spec: Option<&FieldsSpec>,
    flavor: Flavor,
) -> Result<Vec<FieldId>, FieldsError> {
    let Some(sel) = spec.and_then(|s| s.for_source(&schema.name)) else {
        return Ok(defaults(schema, flavor));
    };
    let mut out: Vec<FieldId> = Vec::new();
    match sel {
        Selection::Exact(names) => {
            for n in names {
                for id in find(schema, n)? {
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
            }
        }
        Selection::Relative(changes) => {
            out = defaults(schema, flavor);
            for (add, n) in changes {
                let ids = find(schema, n)?;
                if *add {
                    out.extend(
                        ids.into_iter()
                            .filter(|id| !out.contains(id))
                            .collect::<Vec<_>>(),
                    );
                } else {
                    out.retain(|id| !ids.contains(id));
                }
            }
            // Added fields take their place in the display order.
            let order = schema.display_order();
            out.sort_by_key(|id| order.iter().position(|o| o == id));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::{SchemaBuilder, SourceKind};

    fn schema() -> Schema {
        let mut b = SchemaBuilder::new("open", SourceKind::Single, 32);
        let ts = b
            .add_raw("timestamp_raw".into(), FieldKind::U64, 0, 8, None)
            .unwrap();
        b.field_mut(ts)
            .annotations
            .insert("columns.hidden".into(), "true".into());
        let proc = b
            .add_raw("proc".into(), FieldKind::Struct, 8, 20, None)
            .unwrap();
        let comm = b
            .add_raw("proc.comm".into(), FieldKind::CString, 8, 16, Some(proc))
            .unwrap();
        b.field_mut(comm)
            .annotations
            .insert("columns.alias".into(), "comm".into());
        let pid = b
            .add_raw("proc.pid".into(), FieldKind::U32, 24, 4, Some(proc))
            .unwrap();
        b.field_mut(pid)
            .annotations
            .insert("columns.alias".into(), "pid".into());
        let err = b
            .add_raw("error_raw".into(), FieldKind::U32, 28, 4, None)
            .unwrap();
        b.field_mut(err)
            .annotations
            .insert("columns.hidden".into(), "true".into());
        let e = b
            .add_owned_sibling("error", FieldKind::String, err)
            .unwrap();
        let skip = b
            .add_owned_sibling("endpoint", FieldKind::String, err)
            .unwrap();
        b.field_mut(skip)
            .annotations
            .insert("json.skip".into(), "true".into());
        b.add_raw("__pad".into(), FieldKind::U8, 31, 1, None)
            .unwrap();
        let _ = e;
        b.build()
    }

    fn names(s: &Schema, ids: &[FieldId]) -> Vec<String> {
        ids.iter().map(|&id| s.field(id).name.clone()).collect()
    }

    #[test]
    fn selections() {
        let s = schema();
        type Want = Result<&'static [&'static str], &'static str>;
        let cases: &[(&str, Flavor, Want)] = &[
            (
                "",
                Flavor::Table,
                Ok(&["proc.comm", "proc.pid", "error", "endpoint"]),
            ),
            (
                "",
                Flavor::Json,
                Ok(&[
                    "timestamp_raw",
                    "proc.comm",
                    "proc.pid",
                    "error_raw",
                    "error",
                ]),
            ),
            (
                "pid,proc.comm",
                Flavor::Table,
                Ok(&["proc.pid", "proc.comm"]),
            ),
            (
                "PID,error_raw",
                Flavor::Table,
                Ok(&["proc.pid", "error_raw"]),
            ),
            ("proc", Flavor::Table, Ok(&["proc.comm", "proc.pid"])),
            (
                "-proc,+timestamp_raw",
                Flavor::Table,
                Ok(&["timestamp_raw", "error", "endpoint"]),
            ),
            (
                "+error_raw,-endpoint",
                Flavor::Table,
                Ok(&["proc.comm", "proc.pid", "error_raw", "error"]),
            ),
            (
                "+endpoint,-timestamp_raw",
                Flavor::Json,
                Ok(&["proc.comm", "proc.pid", "error_raw", "error", "endpoint"]),
            ),
            ("open:comm;other:pid", Flavor::Table, Ok(&["proc.comm"])),
            (
                "other:pid",
                Flavor::Table,
                Ok(&["proc.comm", "proc.pid", "error", "endpoint"]),
            ),
            (
                "nope",
                Flavor::Table,
                Err("has no field nope; its fields are: timestamp_raw, proc.comm"),
            ),
            ("__pad", Flavor::Table, Err("has no field __pad")),
            (
                "comm,+pid",
                Flavor::Table,
                Err("mix of plain and +/- names"),
            ),
            ("a;a", Flavor::Table, Err("appears twice")),
            ("open:", Flavor::Table, Err("no field names")),
        ];
        for (spec, flavor, want) in cases {
            let got = FieldsSpec::parse(spec)
                .and_then(|p| select(&s, (!spec.is_empty()).then_some(&p), *flavor))
                .map(|ids| names(&s, &ids))
                .map_err(|e| e.to_string());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, *w, "{spec}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{spec}: {g}"),
                (g, w) => panic!("{spec}: got {g:?}, want {w:?}"),
            }
        }
    }
}
