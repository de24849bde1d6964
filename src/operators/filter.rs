//! The filter operator (priority 9000, after every enrichment, so that
//! formatted and resolved fields can be filtered on): `-F/--filter`
//! (`operator.filter.filter`) drops the events that do not match.
//!
//! Syntax (upstream's): comma-separated rules, all of which must match;
//! `\,` is a literal comma. A rule is `[datasource:]field OP value`, the
//! field named by its full dotted name (`proc.comm`), OP one of `==` (or
//! `=`), `!=`, `>`, `>=`, `<`, `<=`, `~` (the value is a regular
//! expression, `regex` crate syntax, which is RE2's) and `!~`. Values are
//! compared by the field's type: numbers as numbers (the value must fit
//! the field), strings bytewise, booleans (`true`/`false`/`1`/`0`) with
//! `==`/`!=` only; a regular expression applies to string fields only.
//!
//! Everything is checked in `instantiate`, before anything is loaded: a
//! syntax error, an unknown field (the error lists the fields there are),
//! an ambiguous one (in several data sources: prefix it), a value that
//! does not fit the field, a bad regular expression.
//!
//! Per event: each rule reads its field by index and compares; no
//! allocation, no system call.

use regex::bytes::Regex;

/// Bytes a compiled `~` pattern (and its lazy DFA cache) may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Nesting depth of groups and repetitions in a `~` pattern.
const REGEX_NEST_LIMIT: u32 = 64;

use crate::datasource::{Event, FieldId, FieldKind, Schema};
use crate::params::{ParamSpec, ParamType, ParamValue, ParamValues};
use crate::pipeline::{
    Flow, Handler, Instance, Operator, OperatorError, Priority, Setup, SourceId, priority,
};

const NAME: &str = "filter";
const PARAM: &str = "operator.filter.filter";

/// Why a `--filter` rule is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// A rule does not parse.
    #[error("filter rule {rule:?}: {reason}")]
    Syntax {
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
    /// A rule names a field no data source has.
    #[error("filter rule {rule:?}: no field {field}{where_}{hint}; the fields are: {available}")]
    UnknownField {
        /// The rule.
        rule: String,
        /// The field.
        field: String,
        /// Where it was looked for.
        where_: String,
        /// ` (did you mean proc.comm?)` when a column is called `field`.
        hint: String,
        /// The fields there are.
        available: String,
    },
    /// Filter rule `rule`: field `field` is in data sources `sources`.
    #[error(
        "filter rule {rule:?}: field {field} is in data sources {sources}; prefix it with one (`{first}:{field}…`)"
    )]
    Ambiguous {
        /// The rule.
        rule: String,
        /// The field.
        field: String,
        /// The data sources that have it.
        sources: String,
        /// One of them, for the hint.
        first: String,
    },
    /// A rule's value does not fit its field.
    #[error("filter rule {rule:?}: {reason}")]
    Value {
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
    /// Filter rule `rule`: bad regular expression.
    #[error("filter rule {rule:?}: bad regular expression: {reason}")]
    Regex {
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
}

/// A rule as typed, not yet bound to a field.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    text: String,
    source: Option<String>,
    field: String,
    op: Op,
    value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Match,
    NotMatch,
}

impl Op {
    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            Self::Eq => ord == Equal,
            Self::Ne => ord != Equal,
            Self::Lt => ord == Less,
            Self::Le => ord != Greater,
            Self::Gt => ord == Greater,
            Self::Ge => ord != Less,
            Self::Match | Self::NotMatch => false,
        }
    }
}

/// Split on commas not preceded by a backslash; `\,` becomes `,` (other
/// backslashes stay, for regular expressions).
fn split_rules(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                chars.next();
                cur.push(',');
            }
            ',' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.retain(|r| !r.is_empty());
    out
}

fn parse_rule(text: &str) -> Result<Rule, FilterError> {
    let syntax = |reason: &str| FilterError::Syntax {
        rule: text.to_owned(),
        reason: reason.to_owned(),
    };
    let is_op = |c: char| matches!(c, '=' | '!' | '<' | '>' | '~');
    let op_start = text.find(is_op).ok_or_else(|| {
        syntax("no operator (use ==, !=, <, <=, >, >=, ~ or !~, as in proc.comm==cat)")
    })?;
    let (lhs, rest) = text.split_at(op_start);
    let op_len = rest.find(|c: char| !is_op(c)).unwrap_or(rest.len());
    let (op, value) = rest.split_at(op_len);
    let op = match op {
        "=" | "==" => Op::Eq,
        "!=" => Op::Ne,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "~" => Op::Match,
        "!~" => Op::NotMatch,
        other => return Err(syntax(&format!("unknown operator {other:?}"))),
    };
    let (source, field) = match lhs.split_once(':') {
        Some((ds, f)) => (Some(ds.trim().to_owned()), f.trim()),
        None => (None, lhs.trim()),
    };
    if field.is_empty() {
        return Err(syntax("no field name before the operator"));
    }
    Ok(Rule {
        text: text.to_owned(),
        source,
        field: field.to_owned(),
        op,
        value: value.to_owned(),
    })
}

/// One rule bound to a field, with its value parsed for the field's type.
#[derive(Debug)]
enum Test {
    Str(Op, Vec<u8>),
    Regex(Regex, bool),
    Unsigned(Op, u64),
    Signed(Op, i64),
    Float(Op, f64),
    Bool(Op, bool),
}

fn compile(rule: &Rule, kind: FieldKind) -> Result<Test, FilterError> {
    let bad = |reason: String| FilterError::Value {
        rule: rule.text.clone(),
        reason,
    };
    let v = rule.value.trim();
    if matches!(rule.op, Op::Match | Op::NotMatch) {
        if !matches!(kind, FieldKind::CString | FieldKind::String) {
            return Err(bad(format!(
                "~ needs a string field; {} is {}",
                rule.field,
                kind.name()
            )));
        }
        // Bounded: a hostile or careless pattern (`(a{1000}){1000}`) must
        // fail with a message rather than compile for seconds into
        // hundreds of MiB. The default limits of the regex crate are ten
        // times higher than any sensible filter needs.
        let re = regex::bytes::RegexBuilder::new(&rule.value)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .nest_limit(REGEX_NEST_LIMIT)
            .build()
            .map_err(|e| FilterError::Regex {
                rule: rule.text.clone(),
                reason: e.to_string(),
            })?;
        return Ok(Test::Regex(re, rule.op == Op::NotMatch));
    }
    let not_a = |what: &str| {
        bad(format!(
            "{v:?} is not {what} (field {} is {})",
            rule.field,
            kind.name()
        ))
    };
    Ok(match kind {
        FieldKind::CString | FieldKind::String => {
            Test::Str(rule.op, rule.value.as_bytes().to_vec())
        }
        FieldKind::U8 | FieldKind::U16 | FieldKind::U32 | FieldKind::U64 => {
            let n: u64 = v.parse().map_err(|_| not_a("an unsigned number"))?;
            let bits = kind.scalar_size().unwrap_or(8) * 8;
            if bits < 64 && n >> bits != 0 {
                return Err(not_a(&format!("a {bits}-bit unsigned number")));
            }
            Test::Unsigned(rule.op, n)
        }
        FieldKind::I8 | FieldKind::I16 | FieldKind::I32 | FieldKind::I64 => {
            let n: i64 = v.parse().map_err(|_| not_a("a number"))?;
            let bits = kind.scalar_size().unwrap_or(8) * 8;
            let (min, max) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
            if i128::from(n) < min || i128::from(n) > max {
                return Err(not_a(&format!("a {bits}-bit number")));
            }
            Test::Signed(rule.op, n)
        }
        FieldKind::F32 | FieldKind::F64 => {
            Test::Float(rule.op, v.parse().map_err(|_| not_a("a number"))?)
        }
        FieldKind::Bool => {
            if !matches!(rule.op, Op::Eq | Op::Ne) {
                return Err(bad(format!("{} is a boolean: use == or !=", rule.field)));
            }
            let b = match v {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(not_a("true or false")),
            };
            Test::Bool(rule.op, b)
        }
        FieldKind::Bytes | FieldKind::Struct => {
            return Err(bad(format!(
                "field {} is {} and cannot be compared",
                rule.field,
                kind.name()
            )));
        }
    })
}

impl Test {
    fn passes(&self, v: crate::datasource::ValueRef<'_>) -> bool {
        use crate::datasource::ValueRef as V;
        match (self, v) {
            (Self::Str(op, want), V::Str(s)) => op.holds(s.cmp(want.as_slice())),
            (Self::Str(op, want), V::None) => op.holds((&[] as &[u8]).cmp(want.as_slice())),
            (Self::Regex(re, negate), V::Str(s)) => re.is_match(s) != *negate,
            (Self::Regex(re, negate), V::None) => re.is_match(b"") != *negate,
            (Self::Unsigned(op, want), V::U64(n)) => op.holds(n.cmp(want)),
            (Self::Signed(op, want), V::I64(n)) => op.holds(n.cmp(want)),
            (Self::Float(op, want), V::F64(f)) => f.partial_cmp(want).is_some_and(|o| op.holds(o)),
            (Self::Bool(op, want), V::Bool(b)) => op.holds(b.cmp(want)),
            // A value of another shape (an unset owned number) matches
            // nothing but `!=`.
            (
                Self::Unsigned(op, _)
                | Self::Signed(op, _)
                | Self::Float(op, _)
                | Self::Bool(op, _),
                _,
            ) => *op == Op::Ne,
            _ => false,
        }
    }
}

/// The filter operator.
#[derive(Default)]
pub struct Filter {
    rules: Vec<Rule>,
}

impl Operator for Filter {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> Priority {
        priority::FILTER
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec {
            key: "filter".into(),
            full_name: PARAM.into(),
            description: "Show only events matching these rules: comma-separated \
                          FIELD OP VALUE, OP one of == != < <= > >= ~ (regular expression) !~; \
                          \\, is a literal comma (example: 'proc.comm==cat,error!=')"
                .into(),
            default: String::new(),
            ty: ParamType::String { max_len: None },
            group: "Filtering and sorting".into(),
            alias: Some('F'),
        }]
    }
    fn apply_params(&mut self, values: &ParamValues) -> Result<(), OperatorError> {
        let Some(ParamValue::Str(s)) = values.get(PARAM) else {
            return Ok(());
        };
        self.rules = split_rules(s)
            .iter()
            .map(|text| parse_rule(text))
            .collect::<Result<_, _>>()
            .map_err(|e| OperatorError::failed(NAME, e))?;
        Ok(())
    }

    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        if self.rules.is_empty() {
            return Ok(None);
        }
        let mut per_source: Vec<(SourceId, Vec<(FieldId, Test)>)> = Vec::new();
        for rule in &self.rules {
            let (source, field) =
                resolve(setup, rule).map_err(|e| OperatorError::failed(NAME, e))?;
            let kind = setup.schema(source).schema().field(field).kind;
            let test = compile(rule, kind).map_err(|e| OperatorError::failed(NAME, e))?;
            match per_source.iter_mut().find(|(s, _)| *s == source) {
                Some((_, tests)) => tests.push((field, test)),
                None => per_source.push((source, vec![(field, test)])),
            }
        }
        for (source, tests) in per_source {
            setup.subscribe(
                source,
                priority::FILTER,
                NAME,
                Box::new(Filtering { tests }),
            );
        }
        Ok(Some(Box::new(Active)))
    }
}

struct Active;
impl Instance for Active {}

/// Find the data source and field a rule names.
fn resolve(setup: &Setup, rule: &Rule) -> Result<(SourceId, FieldId), FilterError> {
    let mut found = Vec::new();
    let mut available = Vec::new();
    let mut column = None;
    for id in setup.source_ids() {
        let s = setup.schema(id).schema();
        if rule.source.as_deref().is_some_and(|n| n != s.name) {
            continue;
        }
        match s.field_by_name(&rule.field) {
            Some(f) => found.push((id, f, s.name.clone())),
            None => {
                let leaves = s
                    .fields()
                    .iter()
                    .filter(|f| !f.hidden && f.kind != FieldKind::Struct);
                for f in leaves {
                    if f.annotation("columns.alias")
                        .is_some_and(|a| a.eq_ignore_ascii_case(&rule.field))
                    {
                        column.get_or_insert_with(|| f.name.clone());
                    }
                    available.push(f.name.clone());
                }
            }
        }
    }
    match found.len() {
        1 => Ok((found[0].0, found[0].1)),
        0 => Err(FilterError::UnknownField {
            rule: rule.text.clone(),
            field: rule.field.clone(),
            where_: rule
                .source
                .as_ref()
                .map(|s| format!(" in data source {s}"))
                .unwrap_or_default(),
            hint: column
                .map(|c| format!(" (did you mean {c}?)"))
                .unwrap_or_default(),
            available: if available.is_empty() {
                "(none: no such data source)".into()
            } else {
                available.join(", ")
            },
        }),
        _ => Err(FilterError::Ambiguous {
            rule: rule.text.clone(),
            field: rule.field.clone(),
            sources: found
                .iter()
                .map(|(.., n)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            first: found[0].2.clone(),
        }),
    }
}

struct Filtering {
    tests: Vec<(FieldId, Test)>,
}

impl Handler for Filtering {
    fn on_event(&mut self, schema: &Schema, ev: &mut Event) -> Flow {
        for (field, test) in &self.tests {
            if !test.passes(ev.get(schema.field(*field))) {
                return Flow::Drop;
            }
        }
        Flow::Continue
    }
}

/// Parse `expr` as `--filter` does and compile every rule for a field of
/// `kind`, then test each against `value`: the whole path untrusted filter
/// text takes, without a schema. Returns how many rules there were. The
/// fuzz harness (`fuzz/`) and its corpus replay drive it.
pub fn check_for_kind(
    expr: &str,
    kind: FieldKind,
    value: crate::datasource::ValueRef<'_>,
) -> Result<usize, FilterError> {
    let rules = split_rules(expr)
        .iter()
        .map(|text| parse_rule(text))
        .collect::<Result<Vec<_>, _>>()?;
    for rule in &rules {
        let _ = compile(rule, kind)?.passes(value);
    }
    Ok(rules.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::{SchemaBuilder, SourceKind};
    use crate::pipeline::testing::{ArrayProducer, Producer, collect};

    fn schema(name: &str) -> SchemaBuilder {
        let mut b = SchemaBuilder::new(name, SourceKind::Single, 24);
        let proc = b
            .add_raw("proc".into(), FieldKind::Struct, 0, 12, None)
            .unwrap();
        let comm = b
            .add_raw("proc.comm".into(), FieldKind::CString, 0, 8, Some(proc))
            .unwrap();
        b.field_mut(comm)
            .annotations
            .insert("columns.alias".into(), "comm".into());
        b.add_raw("proc.pid".into(), FieldKind::U32, 8, 4, Some(proc))
            .unwrap();
        b.add_raw("delta".into(), FieldKind::I16, 12, 2, None)
            .unwrap();
        b.add_raw("ok".into(), FieldKind::Bool, 14, 1, None)
            .unwrap();
        b.add_raw("ratio".into(), FieldKind::F32, 16, 4, None)
            .unwrap();
        b
    }

    fn sample(comm: &str, pid: u32, delta: i16, ok: bool, ratio: f32) -> Vec<u8> {
        let mut s = vec![0u8; 24];
        s[..comm.len()].copy_from_slice(comm.as_bytes());
        s[8..12].copy_from_slice(&pid.to_ne_bytes());
        s[12..14].copy_from_slice(&delta.to_ne_bytes());
        s[14] = u8::from(ok);
        s[16..20].copy_from_slice(&ratio.to_ne_bytes());
        s
    }

    fn samples() -> Vec<Vec<u8>> {
        vec![
            sample("cat", 10, -5, true, 0.5),
            sample("bash", 200, 0, false, 1.5),
            sample("ca,t", 3000, 7, true, 2.0),
            sample("catalog", 9, 100, false, 0.0),
        ]
    }

    fn params(filter: &str) -> ParamValues {
        ParamValues::resolve(
            &Filter::default().params(),
            &[("filter".into(), filter.into())],
        )
        .unwrap()
    }

    fn pids(filter: &str) -> Result<Vec<String>, String> {
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1,
                schema: schema("ev"),
                samples: samples(),
            }),
            Box::new(Filter::default()),
        ];
        let col = collect(ops, &params(filter)).map_err(|e| {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(x) = src {
                s.push_str(": ");
                s.push_str(&x.to_string());
                src = x.source();
            }
            s
        })?;
        Ok(col
            .column("proc.pid")
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }

    /// A pattern that would compile to hundreds of MiB (or take seconds)
    /// is refused quickly with the regex crate's reason.
    #[test]
    fn huge_or_deeply_nested_regular_expressions_are_refused_quickly() {
        let start = std::time::Instant::now();
        for pattern in ["(a{1000}){1000}", "\\w{500}\\w{500}", &"(".repeat(200)] {
            let expr = format!("proc.comm~{pattern}");
            let e = check_for_kind(&expr, FieldKind::CString, crate::datasource::ValueRef::None)
                .unwrap_err();
            assert!(matches!(e, FilterError::Regex { .. }), "{pattern}: {e}");
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            check_for_kind(
                "proc.comm~^ca(t|n)$",
                FieldKind::CString,
                crate::datasource::ValueRef::Str(b"cat")
            ),
            Ok(1)
        );
    }

    #[test]
    fn rules_select_events() {
        let cases: &[(&str, &[&str])] = &[
            ("", &["10", "200", "3000", "9"]),
            ("proc.comm==cat", &["10"]),
            ("proc.comm=cat", &["10"]),
            ("proc.comm!=cat", &["200", "3000", "9"]),
            ("proc.comm~^ca", &["10", "3000", "9"]),
            ("proc.comm!~^ca", &["200"]),
            ("proc.comm~^c.t$", &["10"]),
            (r"proc.comm==ca\,t", &["3000"]),
            (r"proc.comm~a\,", &["3000"]),
            ("proc.comm>bash", &["10", "3000", "9"]),
            ("proc.pid>100", &["200", "3000"]),
            ("proc.pid>=200", &["200", "3000"]),
            ("proc.pid<10", &["9"]),
            ("proc.pid<=10", &["10", "9"]),
            // Numeric, not textual: 9 < 10 < 200.
            ("proc.pid>9,proc.pid<300", &["10", "200"]),
            ("delta<0", &["10"]),
            ("delta>=0", &["200", "3000", "9"]),
            ("ok==true", &["10", "3000"]),
            ("ok!=1", &["200", "9"]),
            ("ratio>1", &["200", "3000"]),
            ("ev:proc.pid==9", &["9"]),
            ("proc.comm~^ca,proc.pid<100", &["10", "9"]),
        ];
        for (filter, want) in cases {
            assert_eq!(pids(filter).unwrap(), *want, "{filter}");
        }
    }

    #[test]
    fn errors_before_anything_runs() {
        let cases: &[(&str, &str)] = &[
            ("proc.comm", "no operator"),
            ("proc.comm=>x", "unknown operator \"=>\""),
            ("==x", "no field name"),
            (
                "nope==1",
                "no field nope; the fields are: proc.comm, proc.pid, delta, ok, ratio",
            ),
            ("comm==cat", "no field comm (did you mean proc.comm?)"),
            (
                "other:proc.pid==1",
                "no field proc.pid in data source other",
            ),
            ("proc.comm~(", "bad regular expression"),
            ("proc.pid~1", "~ needs a string field; proc.pid is uint32"),
            ("proc.pid==abc", "\"abc\" is not an unsigned number"),
            ("proc.pid==-1", "is not an unsigned number"),
            ("proc.pid==4294967296", "is not a 32-bit unsigned number"),
            ("delta==40000", "is not a 16-bit number"),
            ("ok>true", "is a boolean: use == or !="),
            ("ok==maybe", "is not true or false"),
            ("proc==1", "cannot be compared"),
        ];
        for (filter, want) in cases {
            let err = pids(filter).unwrap_err();
            assert!(err.contains(want), "{filter}: {err}");
        }
    }

    #[test]
    fn ambiguous_fields_need_a_source() {
        let ops = || -> Vec<Box<dyn Operator>> {
            vec![
                Box::new(Producer {
                    priority: -1,
                    schema: schema("a"),
                    samples: samples(),
                }),
                Box::new(ArrayProducer {
                    priority: -1,
                    schema: schema("b"),
                    arrays: vec![samples()],
                }),
                Box::new(Filter::default()),
            ]
        };
        let err = collect(ops(), &params("proc.pid==9")).err().unwrap();
        let msg = std::error::Error::source(&err).unwrap().to_string();
        assert!(msg.contains("in data sources b, a"), "{msg}");
        let col = collect(ops(), &params("b:proc.pid>100")).unwrap();
        // All of a, and the array of b filtered to two.
        assert_eq!(col.arrays.borrow().as_slice(), [2]);
        assert_eq!(col.seen.borrow().len(), 4 + 2);
    }

    #[test]
    fn splitting_keeps_other_backslashes() {
        assert_eq!(split_rules(r"a~\d+\,x,b==1,"), [r"a~\d+,x", "b==1"]);
        assert_eq!(split_rules(""), Vec::<String>::new());
    }
}
