//! The limiter (priority 9600, after sort): `--max-entries`
//! (`operator.limiter.max-entries`) keeps the first N entries of each array
//! a data source emits, so `--sort -reads --max-entries 10` is a top ten.
//!
//! Syntax (upstream's): `N` for every array data source, or
//! `ds:N,ds2:M`; `-1` (the default) means no limit. A data source named
//! that does not exist or emits single events, or a value below -1, is an
//! error in `instantiate`, before anything is loaded.
//!
//! Reads arrays only; single events pass untouched. Cost: one truncation
//! per array.

use crate::datasource::{Event, Schema, SourceKind};
use crate::params::{ParamSpec, ParamType, ParamValue, ParamValues};
use crate::pipeline::{
    Flow, Handler, Instance, Operator, OperatorError, Priority, Setup, priority,
};

const NAME: &str = "limiter";
const PARAM: &str = "operator.limiter.max-entries";

/// Why a `--max-entries` value is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    /// The value does not parse.
    #[error("--max-entries {value:?}: {reason}")]
    Syntax {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// --max-entries: no data source `name` (the gadget has: `available`).
    #[error("--max-entries: no data source {name} (the gadget has: {available})")]
    UnknownSource {
        /// The name.
        name: String,
        /// What there is instead.
        available: String,
    },
    /// --max-entries: data source `name` emits single events.
    #[error("--max-entries: data source {name} emits single events; the limit applies to arrays")]
    NotAnArray {
        /// The name.
        name: String,
    },
}

/// `(data source or None for all, limit or None for "no limit")`.
type Spec = Vec<(Option<String>, Option<usize>)>;

fn parse(s: &str) -> Result<Spec, LimitError> {
    let syntax = |reason: String| LimitError::Syntax {
        value: s.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (ds, n) = match part.split_once(':') {
            Some((ds, n)) => (Some(ds.trim().to_owned()), n.trim()),
            None => (None, part),
        };
        let n: i64 = n
            .parse()
            .map_err(|_| syntax(format!("{n:?} is not a number")))?;
        let limit = match n {
            -1 => None,
            n if n < -1 => return Err(syntax(format!("{n} is below -1 (no limit)"))),
            n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        out.push((ds, limit));
    }
    if out.iter().filter(|(ds, _)| ds.is_none()).count() > 1 {
        return Err(syntax("more than one limit for all data sources".into()));
    }
    Ok(out)
}

/// The limiter.
#[derive(Default)]
pub struct Limit {
    spec: Spec,
}

impl Operator for Limit {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> Priority {
        priority::LIMIT
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec {
            key: "max-entries".into(),
            full_name: PARAM.into(),
            description: "Keep at most this many entries of each snapshot (-1: all); \
                          per data source: ds:N,ds2:M"
                .into(),
            default: "-1".into(),
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
        let fail = |e: LimitError| OperatorError::failed(NAME, e);
        let names: Vec<String> = setup
            .source_ids()
            .map(|id| setup.schema(id).name().to_owned())
            .collect();
        let mut any = false;
        for (ds, _) in &self.spec {
            if let Some(ds) = ds
                && !names.contains(ds)
            {
                return Err(fail(LimitError::UnknownSource {
                    name: ds.clone(),
                    available: names.join(", "),
                }));
            }
        }
        for id in setup.source_ids() {
            let s = setup.schema(id).schema();
            let named = self
                .spec
                .iter()
                .find(|(ds, _)| ds.as_deref() == Some(s.name.as_str()));
            let limit = match (named, s.kind) {
                (Some(_), SourceKind::Single) => {
                    return Err(fail(LimitError::NotAnArray {
                        name: s.name.clone(),
                    }));
                }
                (Some((_, n)), SourceKind::Array) => *n,
                (None, SourceKind::Array) => self
                    .spec
                    .iter()
                    .find(|(ds, _)| ds.is_none())
                    .and_then(|(_, n)| *n),
                (None, SourceKind::Single) => None,
            };
            if let Some(max) = limit {
                setup.subscribe(id, priority::LIMIT, NAME, Box::new(Limiting { max }));
                any = true;
            }
        }
        Ok(any.then(|| Box::new(Active) as Box<dyn Instance>))
    }
}

struct Active;
impl Instance for Active {}

struct Limiting {
    max: usize,
}

impl Handler for Limiting {
    fn on_event(&mut self, _: &Schema, _: &mut Event) -> Flow {
        Flow::Continue
    }

    fn on_array(&mut self, _: &Schema, events: &mut Vec<Event>) -> Flow {
        events.truncate(self.max);
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::{FieldKind, SchemaBuilder};
    use crate::pipeline::Pipeline;
    use crate::pipeline::testing::{ArrayProducer, Producer, collect};

    fn schema(name: &str, kind: SourceKind) -> SchemaBuilder {
        let mut b = SchemaBuilder::new(name, kind, 4);
        b.add_raw("n".into(), FieldKind::U32, 0, 4, None).unwrap();
        b
    }

    fn rows(n: u32) -> Vec<Vec<u8>> {
        (0..n).map(|i| i.to_ne_bytes().to_vec()).collect()
    }

    fn ops() -> Vec<Box<dyn Operator>> {
        vec![
            Box::new(ArrayProducer {
                priority: -1,
                schema: schema("a", SourceKind::Array),
                arrays: vec![rows(5), rows(2)],
            }),
            Box::new(ArrayProducer {
                priority: -1,
                schema: schema("b", SourceKind::Array),
                arrays: vec![rows(4)],
            }),
            Box::new(Producer {
                priority: -1,
                schema: schema("t", SourceKind::Single),
                samples: rows(3),
            }),
            Box::new(Limit::default()),
        ]
    }

    fn params(v: &str) -> ParamValues {
        ParamValues::resolve(
            &Limit::default().params(),
            &[("max-entries".into(), v.into())],
        )
        .unwrap()
    }

    #[test]
    fn cuts_arrays_only() {
        // Array lengths seen, in the order a, a, b; then the single events.
        let cases: &[(&str, &[usize], usize)] = &[
            ("-1", &[5, 2, 4], 3),
            ("3", &[3, 2, 3], 3),
            ("0", &[0, 0, 0], 3),
            ("a:1", &[1, 1, 4], 3),
            ("a:1,b:-1", &[1, 1, 4], 3),
            ("a:-1,2", &[5, 2, 2], 3),
        ];
        for (v, arrays, singles) in cases {
            let col = collect(ops(), &params(v)).unwrap();
            assert_eq!(col.arrays.borrow().as_slice(), *arrays, "{v}");
            let total: usize = arrays.iter().sum();
            assert_eq!(col.seen.borrow().len(), total + singles, "{v}");
        }
    }

    #[test]
    fn default_and_mistakes() {
        let defaults = ParamValues::resolve(&Limit::default().params(), &[]).unwrap();
        let p = Pipeline::build(ops(), &defaults).unwrap();
        assert!(!p.operator_names().contains(&"limiter"));
        let cases: &[(&str, &str)] = &[
            ("x", "\"x\" is not a number"),
            ("-2", "below -1"),
            ("1,2", "more than one limit"),
            ("c:1", "no data source c (the gadget has: a, b, t)"),
            ("t:1", "data source t emits single events"),
        ];
        for (v, want) in cases {
            let err = collect(ops(), &params(v)).err().unwrap();
            let msg = std::error::Error::source(&err).unwrap().to_string();
            assert!(msg.contains(want), "{v}: {msg}");
        }
    }
}
