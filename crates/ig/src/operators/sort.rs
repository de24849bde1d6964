//! The sort operator (priority 9500): `--sort` (`operator.sort.sort`)
//! orders each array a data source emits (snapshots, toppers).
//!
//! Syntax (upstream's): comma-separated field names, `-` in front for
//! descending order: `--sort -reads,comm`. A name is a full field name
//! (`proc.comm`) or, when one field has it, a column name as the table's
//! header shows it (`comm`, any case; several: an error naming them). With several data sources,
//! `ds:fields;ds2:fields`. Numbers compare as numbers, strings bytewise;
//! ties keep the order the kernel gave (the sort is stable).
//!
//! Reads arrays only ([`Handler::on_array`]); single events pass
//! untouched. Sorting a data source that emits single events, an unknown
//! data source or field, or a field that cannot be ordered (bytes, a
//! struct) is an error in `instantiate`, before anything is loaded.
//!
//! Cost: once per array, not per event; the stable sort allocates a
//! scratch buffer of half the array.

use std::cmp::Ordering;

use crate::datasource::{ColumnMatch, Event, FieldId, FieldKind, Schema, SourceKind, ValueRef};
use crate::params::{ParamSpec, ParamType, ParamValue, ParamValues};
use crate::pipeline::{
    Flow, Handler, Instance, Operator, OperatorError, Priority, Setup, priority,
};

const NAME: &str = "sort";
const PARAM: &str = "operator.sort.sort";

/// Why a `--sort` value is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SortError {
    /// --sort `spec`: mix of rules with and without a data source.
    #[error("--sort {spec:?}: mix of rules with and without a data source")]
    Mixed {
        /// The value given.
        spec: String,
    },
    /// --sort: no data source `name` (the gadget has: `available`).
    #[error("--sort: no data source {name} (the gadget has: {available})")]
    UnknownSource {
        /// The name.
        name: String,
        /// What there is instead.
        available: String,
    },
    /// --sort: data source `name` emits single events.
    #[error(
        "--sort: data source {name} emits single events; sorting applies to arrays (snapshots, toppers)"
    )]
    NotAnArray {
        /// The name.
        name: String,
    },
    /// --sort: data source `source_name` has no field `field`.
    #[error("--sort: data source {source_name} has no field {field}; its fields are: {available}")]
    UnknownField {
        /// The data source.
        source_name: String,
        /// The field.
        field: String,
        /// What there is instead.
        available: String,
    },
    /// --sort: several fields of `source_name` have the column name `field`.
    #[error(
        "--sort: column name {field} is ambiguous in data source {source_name}: name one of {candidates}"
    )]
    AmbiguousColumn {
        /// The data source.
        source_name: String,
        /// The column name.
        field: String,
        /// The fields that have it.
        candidates: String,
    },
    /// --sort: field `field` is `kind` and cannot be ordered.
    #[error("--sort: field {field} is {kind} and cannot be ordered")]
    Unordered {
        /// The field.
        field: String,
        /// The kind.
        kind: &'static str,
    },
    /// --sort `spec`: empty field name.
    #[error("--sort {spec:?}: empty field name")]
    Empty {
        /// The value given.
        spec: String,
    },
}

/// `(data source or None for all, [(field, descending)])`.
type Spec = Vec<(Option<String>, Vec<(String, bool)>)>;

fn parse(s: &str) -> Result<Spec, SortError> {
    let mut out: Spec = Vec::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (ds, fields) = match part.split_once(':') {
            Some((ds, f)) => (Some(ds.trim().to_owned()), f),
            None => (None, part),
        };
        let mut keys = Vec::new();
        for f in fields.split(',').map(str::trim) {
            let (name, desc) = match f.strip_prefix('-') {
                Some(n) => (n.trim(), true),
                None => (f, false),
            };
            if name.is_empty() {
                return Err(SortError::Empty { spec: s.to_owned() });
            }
            keys.push((name.to_owned(), desc));
        }
        out.push((ds, keys));
    }
    let global = out.iter().filter(|(ds, _)| ds.is_none()).count();
    if global > 0 && out.len() > 1 {
        return Err(SortError::Mixed { spec: s.to_owned() });
    }
    Ok(out)
}

/// The sort operator.
#[derive(Default)]
pub struct Sort {
    spec: Spec,
}

impl Operator for Sort {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> Priority {
        priority::SORT
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec {
            key: "sort".into(),
            full_name: PARAM.into(),
            description: "Order the entries of snapshots by these fields, comma-separated; \
                          prefix a field with - for descending order (example: -reads,comm); \
                          with several data sources, ds:fields;ds2:fields"
                .into(),
            default: String::new(),
            ty: ParamType::String { max_len: None },
            group: "Filtering and sorting".into(),
            alias: None,
        }]
    }
    fn apply_params(&mut self, values: &ParamValues) -> Result<(), OperatorError> {
        if let Some(ParamValue::Str(s)) = values.get(PARAM) {
            self.spec = parse(s).map_err(|e| OperatorError::failed(NAME, e))?;
        }
        Ok(())
    }

    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        if self.spec.is_empty() {
            return Ok(None);
        }
        let fail = |e: SortError| OperatorError::failed(NAME, e);
        let names: Vec<String> = setup
            .source_ids()
            .map(|id| setup.schema(id).name().to_owned())
            .collect();
        for (ds, _) in &self.spec {
            if let Some(ds) = ds
                && !names.contains(ds)
            {
                return Err(fail(SortError::UnknownSource {
                    name: ds.clone(),
                    available: names.join(", "),
                }));
            }
        }
        for id in setup.source_ids() {
            let s = setup.schema(id).schema();
            let Some((_, keys)) = self
                .spec
                .iter()
                .find(|(ds, _)| ds.as_ref().is_none_or(|d| *d == s.name))
            else {
                continue;
            };
            if s.kind != SourceKind::Array {
                return Err(fail(SortError::NotAnArray {
                    name: s.name.clone(),
                }));
            }
            let mut resolved = Vec::new();
            for (field, desc) in keys {
                let f = match s.find_column(field) {
                    ColumnMatch::Field(f) => f,
                    ColumnMatch::None => {
                        return Err(fail(SortError::UnknownField {
                            source_name: s.name.clone(),
                            field: field.clone(),
                            available: s
                                .fields()
                                .iter()
                                .filter(|f| !f.hidden && f.kind != FieldKind::Struct)
                                .map(|f| f.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                        }));
                    }
                    ColumnMatch::Ambiguous(ids) => {
                        return Err(fail(SortError::AmbiguousColumn {
                            source_name: s.name.clone(),
                            field: field.clone(),
                            candidates: s.names_of(&ids),
                        }));
                    }
                };
                let kind = s.field(f).kind;
                if matches!(kind, FieldKind::Bytes | FieldKind::Struct) {
                    return Err(fail(SortError::Unordered {
                        field: field.clone(),
                        kind: kind.name(),
                    }));
                }
                resolved.push((f, *desc));
            }
            setup.subscribe(
                id,
                priority::SORT,
                NAME,
                Box::new(Sorting { keys: resolved }),
            );
        }
        Ok(Some(Box::new(Active)))
    }
}

struct Active;
impl Instance for Active {}

/// Order of two values of one field; an unset value sorts first.
fn compare(a: ValueRef<'_>, b: ValueRef<'_>) -> Ordering {
    use ValueRef as V;
    match (a, b) {
        (V::U64(x), V::U64(y)) => x.cmp(&y),
        (V::I64(x), V::I64(y)) => x.cmp(&y),
        (V::F64(x), V::F64(y)) => x.total_cmp(&y),
        (V::Bool(x), V::Bool(y)) => x.cmp(&y),
        (V::Str(x), V::Str(y)) | (V::Bytes(x), V::Bytes(y)) => x.cmp(y),
        (V::None, V::None) => Ordering::Equal,
        (V::None, _) => Ordering::Less,
        (_, V::None) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

struct Sorting {
    keys: Vec<(FieldId, bool)>,
}

impl Handler for Sorting {
    fn on_event(&mut self, _: &Schema, _: &mut Event) -> Flow {
        Flow::Continue
    }

    fn on_array(&mut self, schema: &Schema, events: &mut Vec<Event>) -> Flow {
        events.sort_by(|a, b| {
            for &(f, desc) in &self.keys {
                let field = schema.field(f);
                let o = compare(a.get(field), b.get(field));
                let o = if desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::SchemaBuilder;
    use crate::pipeline::testing::{ArrayProducer, Producer, collect};

    fn schema(name: &str, kind: SourceKind) -> SchemaBuilder {
        let mut b = SchemaBuilder::new(name, kind, 16);
        b.add_raw("comm".into(), FieldKind::CString, 0, 8, None)
            .unwrap();
        let reads = b
            .add_raw("reads".into(), FieldKind::U64, 8, 8, None)
            .unwrap();
        b.field_mut(reads).default_annotation("columns.alias", "r");
        b
    }

    fn row(comm: &str, reads: u64) -> Vec<u8> {
        let mut s = vec![0u8; 16];
        s[..comm.len()].copy_from_slice(comm.as_bytes());
        s[8..].copy_from_slice(&reads.to_ne_bytes());
        s
    }

    fn top() -> Vec<Vec<u8>> {
        vec![row("b", 10), row("a", 200), row("c", 10), row("a", 9)]
    }

    fn params(v: &str) -> ParamValues {
        ParamValues::resolve(&Sort::default().params(), &[("sort".into(), v.into())]).unwrap()
    }

    fn sorted(spec: &str) -> Result<Vec<String>, String> {
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(ArrayProducer {
                priority: -1,
                schema: schema("top", SourceKind::Array),
                arrays: vec![top()],
            }),
            Box::new(Sort::default()),
        ];
        let col = collect(ops, &params(spec)).map_err(|e| {
            std::error::Error::source(&e).map_or(e.to_string(), ToString::to_string)
        })?;
        let comm = col.column("comm");
        let reads = col.column("reads");
        Ok(comm
            .into_iter()
            .zip(reads)
            .map(|(c, r)| format!("{}{}", c.unwrap(), r.unwrap()))
            .collect())
    }

    #[test]
    fn orders_arrays() {
        let cases: &[(&str, &[&str])] = &[
            ("", &["b10", "a200", "c10", "a9"]),
            ("reads", &["a9", "b10", "c10", "a200"]),
            ("-reads", &["a200", "b10", "c10", "a9"]),
            ("-reads,comm", &["a200", "b10", "c10", "a9"]),
            ("-reads,-comm", &["a200", "c10", "b10", "a9"]),
            ("comm", &["a200", "a9", "b10", "c10"]),
            ("comm,reads", &["a9", "a200", "b10", "c10"]),
            ("top:-comm", &["c10", "b10", "a200", "a9"]),
            // The column name, as the table's header shows it.
            ("-R", &["a200", "b10", "c10", "a9"]),
        ];
        for (spec, want) in cases {
            assert_eq!(sorted(spec).unwrap(), *want, "{spec}");
        }
    }

    #[test]
    fn mistakes_are_errors() {
        let cases: &[(&str, &str)] = &[
            ("nope", "has no field nope; its fields are: comm, reads"),
            ("other:comm", "no data source other (the gadget has: top)"),
            ("top:comm;reads", "mix of rules"),
            ("comm,,reads", "empty field name"),
        ];
        for (spec, want) in cases {
            let err = sorted(spec).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
        }
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1,
                schema: schema("trace", SourceKind::Single),
                samples: vec![],
            }),
            Box::new(Sort::default()),
        ];
        let err = collect(ops, &params("reads")).err().unwrap();
        let msg = std::error::Error::source(&err).unwrap().to_string();
        assert!(msg.contains("emits single events"), "{msg}");
    }

    #[test]
    fn an_ambiguous_column_name_lists_the_fields() {
        let mut b = schema("top", SourceKind::Array);
        let other = b.add_owned("other".into(), FieldKind::U64, None).unwrap();
        b.field_mut(other).default_annotation("columns.alias", "R");
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(ArrayProducer {
                priority: -1,
                schema: b,
                arrays: vec![top()],
            }),
            Box::new(Sort::default()),
        ];
        let err = collect(ops, &params("r")).err().unwrap();
        let msg = std::error::Error::source(&err).unwrap().to_string();
        assert!(
            msg.contains("column name r is ambiguous in data source top: name one of reads, other"),
            "{msg}"
        );
    }
}
