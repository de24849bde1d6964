//! The filter operator (priority 9000, after every enrichment, so that
//! formatted and resolved fields can be filtered on): drops the events
//! that do not match `-F/--filter` rules or a `-E/--filter-expr`
//! expression. Both may be given; an event must pass all of them.
//!
//! `-F` (`operator.filter.filter`), upstream's syntax: comma-separated
//! rules, all of which must match; `\,` is a literal comma. A rule is
//! `[datasource:]field OP value`, the field named by its full dotted name
//! (`proc.comm`) or, when one field has it, its column name as a table's
//! header shows it (`comm`, any case; several: an error naming them), OP one of `==` (or `=`), `!=`, `>`, `>=`, `<`, `<=`, `~`
//! (the value is a regular expression with Go's meaning, `expr::Pattern`,
//! as upstream's) and `!~`. Values are compared by the field's type: numbers as
//! numbers (the value must fit the field), strings bytewise, booleans
//! (`true`/`false`/`1`/`0`) with `==`/`!=` only; a regular expression
//! applies to string fields only.
//!
//! `-E` (`operator.filter.filter-expr`): an expression of the expr
//! language (`crate::expr`), compiled once per data source against its
//! final schema. With several data sources it applies to each one that
//! has every field it names.
//!
//! Per data source, as upstream names them: `--filter.<ds>` and
//! `--filter-expr.<ds>` (`operator.filter.filter.<ds>`,
//! `operator.filter.filter-expr.<ds>`); [`per_source_params`] makes them
//! for the data sources known before the command line is parsed.
//!
//! Everything is checked in `instantiate`, before anything is loaded: a
//! syntax error, an unknown field (the error lists the fields there are),
//! an ambiguous one (in several data sources: prefix it), a value that
//! does not fit the field, a bad regular expression, a type mismatch in
//! an expression.
//!
//! Per event: each rule reads its field by index and compares; each
//! expression is evaluated; no allocation, no system call. An expression
//! whose evaluation fails (`dst.addr in cidr(...)` on a value that is not
//! an address) drops the event, as upstream does; the first failure is
//! logged, the number of them when the run stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::datasource::{ColumnMatch, Event, FieldId, FieldKind, Schema};
use crate::expr::{ErrorKind, ExprError, Pattern, Program};
use crate::params::{ParamSpec, ParamType, ParamValue, ParamValues};
use crate::pipeline::{
    Flow, Handler, Instance, Operator, OperatorError, Priority, Setup, SourceId, priority,
};

const NAME: &str = "filter";
const PARAM: &str = "operator.filter.filter";
const EXPR_PARAM: &str = "operator.filter.filter-expr";
const GROUP: &str = "Filtering and sorting";

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
    #[error("filter rule {rule:?}: no field {field}{where_}; the fields are: {available}")]
    UnknownField {
        /// The rule.
        rule: String,
        /// The field.
        field: String,
        /// Where it was looked for.
        where_: String,
        /// The fields there are.
        available: String,
    },
    /// Filter rule `rule`: several fields of `source_name` have the
    /// column name `field`.
    #[error(
        "filter rule {rule:?}: column name {field} is ambiguous in data source {source_name}: name one of {candidates}"
    )]
    AmbiguousColumn {
        /// The rule.
        rule: String,
        /// The column name.
        field: String,
        /// The data source.
        source_name: String,
        /// The fields that have it.
        candidates: String,
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
    /// A `--filter-expr` expression does not parse or type-check.
    #[error("filter expression for data source {source_name}: {error}")]
    Expr {
        /// The data source it was given for.
        source_name: String,
        /// Why, with the position in the expression.
        error: ExprError,
    },
    /// `--filter.<ds>` or `--filter-expr.<ds>` names no data source of the gadget.
    #[error("{flag}: no data source {source_name} (the data sources are: {available})")]
    NoSource {
        /// The flag as typed.
        flag: String,
        /// The data source it names.
        source_name: String,
        /// The gadget's data sources.
        available: String,
    },
    /// A rule under `--filter.<ds>` is prefixed with another data source.
    #[error("--filter.{given} rule {rule:?} names data source {named}")]
    OtherSource {
        /// The data source of the flag.
        given: String,
        /// The rule.
        rule: String,
        /// The data source its prefix names.
        named: String,
    },
    /// `--filter-expr` on a gadget without data sources.
    #[error("--filter-expr {expr:?}: there is no data source to filter")]
    NothingToFilter {
        /// The expression.
        expr: String,
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
    Regex(Pattern, bool),
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
        // Go's meaning (upstream compiles it with Go's regexp), bounded
        // in size and nesting.
        let re = Pattern::new(&rule.value).map_err(|reason| FilterError::Regex {
            rule: rule.text.clone(),
            reason,
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
    /// `--filter.<ds>`: rules for one data source.
    source_rules: Vec<(String, Vec<Rule>)>,
    /// `--filter-expr`, then `--filter-expr.<ds>` (`Some(ds)`).
    exprs: Vec<(Option<String>, String)>,
}

/// `--filter.<ds>` and `--filter-expr.<ds>` for each data source in
/// `names` (upstream's `filter.<ds>`, `filter-expr.<ds>` of the filter
/// operator). Known only once the gadget is: the CLI adds them to the
/// run's parameters.
pub fn per_source_params(names: &[String]) -> Vec<ParamSpec> {
    let mut out = Vec::new();
    for ds in names {
        for (key, full, flag) in [("filter", PARAM, "-F"), ("filter-expr", EXPR_PARAM, "-E")] {
            out.push(ParamSpec {
                key: format!("{key}.{ds}"),
                full_name: format!("{full}.{ds}"),
                description: format!("{flag} for data source {ds} only"),
                default: String::new(),
                ty: ParamType::String { max_len: None },
                group: GROUP.into(),
                alias: None,
            });
        }
    }
    out
}

/// Whether `flag` (`--filter.open`, `--filter-expr.open=...`) is one of
/// [`per_source_params`]: a flag that takes a value, for the CLI's scan
/// of the command line before the gadget is known.
pub fn is_per_source_flag(flag: &str) -> bool {
    flag.starts_with("--filter.") || flag.starts_with("--filter-expr.")
}

fn parse_rules(s: &str) -> Result<Vec<Rule>, FilterError> {
    split_rules(s).iter().map(|text| parse_rule(text)).collect()
}

impl Operator for Filter {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> Priority {
        priority::FILTER
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec {
                key: "filter".into(),
                full_name: PARAM.into(),
                description: "Show only events matching these rules: comma-separated \
                              FIELD OP VALUE, OP one of == != < <= > >= ~ (regular expression) !~; \
                              \\, is a literal comma (example: 'proc.comm==cat,error!=')"
                    .into(),
                default: String::new(),
                ty: ParamType::String { max_len: None },
                group: GROUP.into(),
                alias: Some('F'),
            },
            ParamSpec {
                key: "filter-expr".into(),
                full_name: EXPR_PARAM.into(),
                description: "Show only events for which this expression is true, in upstream's \
                              expression language (https://expr-lang.org). Fields by their full names \
                              (proc.comm, dst.port), strings \"...\" or '...', numbers; and (&&), or (||), \
                              not (!), ( ); == != < <= > >=; in [list], in 1..9, \
                              in cidr(\"10.0.0.0/8\", ...); matches (a regular expression), startsWith, \
                              endsWith, contains, each also as not in, not matches...; len(s); \
                              let name = value; expression. Checked against the gadget's fields before \
                              anything is loaded; with -F, both must hold. Example: \
                              -E 'proc.comm in [\"cat\", \"less\"] and not (fname startsWith \"/proc/\")'"
                    .into(),
                default: String::new(),
                ty: ParamType::String { max_len: None },
                group: GROUP.into(),
                alias: Some('E'),
            },
        ]
    }
    fn apply_params(&mut self, values: &ParamValues) -> Result<(), OperatorError> {
        let fail = |e| OperatorError::failed(NAME, e);
        for (name, v) in values.iter() {
            let ParamValue::Str(s) = v else {
                continue;
            };
            if s.is_empty() {
                continue;
            }
            if name == PARAM {
                self.rules = parse_rules(s).map_err(fail)?;
            } else if name == EXPR_PARAM {
                self.exprs.insert(0, (None, s.clone()));
            } else if let Some(ds) = name.strip_prefix(&format!("{PARAM}.")) {
                self.source_rules
                    .push((ds.to_owned(), parse_rules(s).map_err(fail)?));
            } else if let Some(ds) = name.strip_prefix(&format!("{EXPR_PARAM}.")) {
                self.exprs.push((Some(ds.to_owned()), s.clone()));
            }
        }
        Ok(())
    }

    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        if self.rules.is_empty() && self.source_rules.is_empty() && self.exprs.is_empty() {
            return Ok(None);
        }
        let fail = |e| OperatorError::failed(NAME, e);
        let mut per_source: Vec<(SourceId, Filtering)> = Vec::new();
        let mut rules: Vec<Rule> = self.rules.clone();
        for (ds, rs) in &self.source_rules {
            source_named(setup, ds, &format!("--filter.{ds}")).map_err(fail)?;
            for r in rs {
                if let Some(named) = r.source.as_ref().filter(|n| *n != ds) {
                    return Err(fail(FilterError::OtherSource {
                        given: ds.clone(),
                        rule: r.text.clone(),
                        named: named.clone(),
                    }));
                }
                rules.push(Rule {
                    source: Some(ds.clone()),
                    ..r.clone()
                });
            }
        }
        for rule in &rules {
            let (source, field) = resolve(setup, rule).map_err(fail)?;
            let schema = setup.schema(source).schema();
            let kind = schema.field(field).kind;
            let test = compile(rule, kind).map_err(fail)?;
            let name = schema.name.clone();
            entry(&mut per_source, source, &name)
                .tests
                .push((field, test));
        }
        for (ds, text) in &self.exprs {
            let programs = match ds {
                Some(ds) => {
                    let id =
                        source_named(setup, ds, &format!("--filter-expr.{ds}")).map_err(fail)?;
                    let schema = setup.schema(id).schema();
                    let p = crate::expr::compile(text, schema).map_err(|error| {
                        fail(FilterError::Expr {
                            source_name: ds.clone(),
                            error,
                        })
                    })?;
                    vec![(id, p)]
                }
                None => compile_everywhere(setup, text).map_err(fail)?,
            };
            for (id, p) in programs {
                let name = setup.schema(id).schema().name.clone();
                entry(&mut per_source, id, &name).programs.push(p);
            }
        }
        let mut failures = Vec::new();
        for (source, handler) in per_source {
            failures.push(handler.failures.clone());
            setup.subscribe(source, priority::FILTER, NAME, Box::new(handler));
        }
        Ok(Some(Box::new(Active { failures })))
    }
}

/// The handler of `source`, made on first use.
fn entry<'a>(
    per_source: &'a mut Vec<(SourceId, Filtering)>,
    source: SourceId,
    name: &str,
) -> &'a mut Filtering {
    let i = match per_source.iter().position(|(s, _)| *s == source) {
        Some(i) => i,
        None => {
            per_source.push((
                source,
                Filtering {
                    tests: Vec::new(),
                    programs: Vec::new(),
                    failures: Arc::new(Failures {
                        source: name.to_owned(),
                        count: AtomicU64::new(0),
                    }),
                },
            ));
            per_source.len() - 1
        }
    };
    &mut per_source[i].1
}

/// The referenced data source called `name`.
fn source_named(setup: &Setup, name: &str, flag: &str) -> Result<SourceId, FilterError> {
    let mut names = Vec::new();
    for id in setup.source_ids() {
        let s = setup.schema(id).schema();
        if s.name == name {
            return Ok(id);
        }
        names.push(s.name.clone());
    }
    Err(FilterError::NoSource {
        flag: flag.to_owned(),
        source_name: name.to_owned(),
        available: names.join(", "),
    })
}

/// `-E` without a data source: compiled for every data source that has
/// the fields it names. An error other than an unknown name is an error
/// wherever it happens; unknown names are one only if no data source
/// knows them all.
fn compile_everywhere(setup: &Setup, text: &str) -> Result<Vec<(SourceId, Program)>, FilterError> {
    let ids: Vec<SourceId> = setup.source_ids().collect();
    let mut out = Vec::new();
    let mut unknown = None;
    for &id in &ids {
        let schema = setup.schema(id).schema();
        match crate::expr::compile(text, schema) {
            Ok(p) => out.push((id, p)),
            Err(error) if error.kind() == ErrorKind::Unknown && ids.len() > 1 => {
                log::debug!(
                    "filter expression {text:?} does not apply to data source {}: {}",
                    schema.name,
                    error.message()
                );
                unknown.get_or_insert(FilterError::Expr {
                    source_name: schema.name.clone(),
                    error,
                });
            }
            Err(error) => {
                return Err(FilterError::Expr {
                    source_name: schema.name.clone(),
                    error,
                });
            }
        }
    }
    if out.is_empty() {
        return Err(unknown.unwrap_or_else(|| FilterError::NothingToFilter {
            expr: text.to_owned(),
        }));
    }
    Ok(out)
}

/// Expression evaluations that failed on one data source.
struct Failures {
    source: String,
    count: AtomicU64,
}

struct Active {
    failures: Vec<Arc<Failures>>,
}

impl Instance for Active {
    fn stop(&mut self) -> Result<(), OperatorError> {
        for f in &self.failures {
            let n = f.count.load(Ordering::Relaxed);
            if n > 0 {
                log::warn!(
                    "data source {}: {n} events dropped because the filter expression could not be evaluated for them",
                    f.source
                );
            }
        }
        Ok(())
    }
}

/// Find the data source and field a rule names: by full name, or else by
/// column name (`comm`, as a table's header shows it) where one field has
/// it ([`Schema::find_column`]).
fn resolve(setup: &Setup, rule: &Rule) -> Result<(SourceId, FieldId), FilterError> {
    let mut exact = Vec::new();
    let mut by_column = Vec::new();
    let mut available = Vec::new();
    for id in setup.source_ids() {
        let s = setup.schema(id).schema();
        if rule.source.as_deref().is_some_and(|n| n != s.name) {
            continue;
        }
        match s.find_column(&rule.field) {
            ColumnMatch::Field(f) if s.field(f).name == rule.field => {
                exact.push((id, f, s.name.clone()));
            }
            ColumnMatch::Field(f) => by_column.push((id, f, s.name.clone())),
            ColumnMatch::Ambiguous(ids) => {
                return Err(FilterError::AmbiguousColumn {
                    rule: rule.text.clone(),
                    field: rule.field.clone(),
                    source_name: s.name.clone(),
                    candidates: s.names_of(&ids),
                });
            }
            ColumnMatch::None => available.extend(
                s.fields()
                    .iter()
                    .filter(|f| !f.hidden && f.kind != FieldKind::Struct)
                    .map(|f| f.name.clone()),
            ),
        }
    }
    let found = if exact.is_empty() { by_column } else { exact };
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
    programs: Vec<Program>,
    failures: Arc<Failures>,
}

impl Handler for Filtering {
    fn on_event(&mut self, schema: &Schema, ev: &mut Event) -> Flow {
        for (field, test) in &self.tests {
            if !test.passes(ev.get(schema.field(*field))) {
                return Flow::Drop;
            }
        }
        for p in &self.programs {
            match p.eval(schema, ev) {
                Ok(true) => {}
                Ok(false) => return Flow::Drop,
                Err(e) => {
                    // Counted; said once (a message per event would flood
                    // stderr and cost a write each).
                    if self.failures.count.fetch_add(1, Ordering::Relaxed) == 0 {
                        log::warn!(
                            "data source {}: the filter expression cannot be evaluated for an event, which is dropped (so are the next ones it fails for; their number is given at the end): {}",
                            self.failures.source,
                            p.explain(&e)
                        );
                    }
                    return Flow::Drop;
                }
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
        given(&[("filter", filter)])
    }

    /// Values of the filter's parameters, per-source ones of data
    /// sources `a`, `b` and `ev` included.
    fn given(pairs: &[(&str, &str)]) -> ParamValues {
        let mut specs = Filter::default().params();
        specs.extend(per_source_params(&["a".into(), "b".into(), "ev".into()]));
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ParamValues::resolve(&specs, &pairs).unwrap()
    }

    fn chain(e: &OperatorError) -> String {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(x) = src {
            s.push_str(": ");
            s.push_str(&x.to_string());
            src = x.source();
        }
        s
    }

    fn pids(filter: &str) -> Result<Vec<String>, String> {
        pids_with(&[("filter", filter)])
    }

    fn pids_with(pairs: &[(&str, &str)]) -> Result<Vec<String>, String> {
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1,
                schema: schema("ev"),
                samples: samples(),
            }),
            Box::new(Filter::default()),
        ];
        let col = collect(ops, &given(pairs)).map_err(|e| chain(&e))?;
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
        for pattern in ["(a{1000}){1000}", "\\pL{1000}\\pL{1000}", &"(".repeat(200)] {
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
            // The column name, as the table's header shows it.
            ("comm==cat", &["10"]),
            ("COMM!=cat,proc.pid<100", &["9"]),
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
    fn an_ambiguous_column_name_lists_the_fields() {
        let mut b = schema("ev");
        let other = b
            .add_owned("other".into(), FieldKind::String, None)
            .unwrap();
        b.field_mut(other)
            .default_annotation("columns.alias", "COMM");
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1,
                schema: b,
                samples: samples(),
            }),
            Box::new(Filter::default()),
        ];
        let err = collect(ops, &params("comm==cat")).err().unwrap();
        let msg = std::error::Error::source(&err).unwrap().to_string();
        assert!(
            msg.contains(
                "column name comm is ambiguous in data source ev: name one of proc.comm, other"
            ),
            "{msg}"
        );
        // The full name is never ambiguous.
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Producer {
                priority: -1,
                schema: {
                    let mut b = schema("ev");
                    let o = b
                        .add_owned("other".into(), FieldKind::String, None)
                        .unwrap();
                    b.field_mut(o).default_annotation("columns.alias", "comm");
                    b
                },
                samples: samples(),
            }),
            Box::new(Filter::default()),
        ];
        assert!(collect(ops, &params("proc.comm==cat")).is_ok());
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
    fn expressions_select_events() {
        let cases: &[(&str, &[&str])] = &[
            ("true", &["10", "200", "3000", "9"]),
            (r#"proc.comm == "cat""#, &["10"]),
            (r#"proc.comm in ["cat", "bash"]"#, &["10", "200"]),
            (r#"proc.comm not in ["cat", "bash"]"#, &["3000", "9"]),
            ("proc.comm matches '^ca' && !(proc.pid > 100)", &["10", "9"]),
            ("proc.pid > 100 or delta < 0", &["10", "200", "3000"]),
            ("ok and ratio >= 0.5", &["10", "3000"]),
            (
                "proc.comm contains ',' || proc.comm endsWith 'log'",
                &["3000", "9"],
            ),
            ("len(proc.comm) > 3", &["200", "3000", "9"]),
            ("proc.pid in 9..10", &["10", "9"]),
            ("let big = 1000; proc.pid >= big", &["3000"]),
            // -E is ANDed with every -F rule.
            ("false", &[]),
        ];
        for (expr, want) in cases {
            assert_eq!(
                pids_with(&[("filter-expr", expr)]).unwrap(),
                *want,
                "{expr}"
            );
        }
        assert_eq!(
            pids_with(&[
                ("filter", "proc.pid>9"),
                ("filter-expr", "proc.comm startsWith 'ca'")
            ])
            .unwrap(),
            ["10", "3000"]
        );
        // `-E` and `--filter-expr.ev` both hold.
        assert_eq!(
            pids_with(&[("filter-expr", "proc.pid < 1000"), ("filter-expr.ev", "ok")]).unwrap(),
            ["10"]
        );
    }

    #[test]
    fn expression_errors_come_before_anything_runs() {
        let cases: &[(&str, &str)] = &[
            (
                r#"proc.pid == "x""#,
                "filter expression for data source ev: invalid operation: proc.pid == \"x\" (mismatched types uint32 and string) (at 1:10)\n | proc.pid == \"x\"\n |          ^^",
            ),
            (
                "proc.com == 'cat'",
                "unknown field proc.com (did you mean proc.comm?); the fields of data source ev, nearest first: proc.comm",
            ),
            ("proc.comm matches '('", "bad regular expression"),
            ("proc.comm ==", "unexpected end of the expression"),
        ];
        for (expr, want) in cases {
            let err = pids_with(&[("filter-expr", expr)]).unwrap_err();
            assert!(err.contains(want), "{expr}: {err}");
        }
    }

    /// An evaluation that fails drops the event and is counted.
    #[test]
    fn failed_evaluations_drop_and_count() {
        let schema = schema("ev").build();
        let program =
            crate::expr::compile("ok or proc.comm in cidr('10.0.0.0/8')", &schema).unwrap();
        let mut h = Filtering {
            tests: Vec::new(),
            programs: vec![program],
            failures: Arc::new(Failures {
                source: "ev".into(),
                count: AtomicU64::new(0),
            }),
        };
        let mut flows = Vec::new();
        for s in samples() {
            let mut ev = Event::new(&schema);
            ev.set_raw(&s);
            flows.push(h.on_event(&schema, &mut ev));
        }
        // ok is true for 10 and 3000; the others are no addresses.
        assert_eq!(
            flows,
            [Flow::Continue, Flow::Drop, Flow::Continue, Flow::Drop]
        );
        assert_eq!(h.failures.count.load(Ordering::Relaxed), 2);
    }

    fn two_sources(a: SchemaBuilder) -> Vec<Box<dyn Operator>> {
        vec![
            Box::new(Producer {
                priority: -1,
                schema: a,
                samples: samples(),
            }),
            Box::new(ArrayProducer {
                priority: -1,
                schema: schema("b"),
                arrays: vec![samples()],
            }),
            Box::new(Filter::default()),
        ]
    }

    #[test]
    fn per_source_flags_filter_their_source_only() {
        for pairs in [
            [("filter-expr.b", "proc.pid > 100")],
            [("filter.b", "proc.pid>100")],
            [("operator.filter.filter-expr.b", "proc.pid > 100")],
        ] {
            let col = collect(two_sources(schema("a")), &given(&pairs)).unwrap();
            // All of a, and the array of b filtered to two.
            assert_eq!(col.arrays.borrow().as_slice(), [2], "{pairs:?}");
            assert_eq!(col.seen.borrow().len(), 4 + 2, "{pairs:?}");
        }
        let err = collect(
            two_sources(schema("a")),
            &given(&[("filter-expr.ev", "true")]),
        )
        .err()
        .unwrap();
        assert!(
            chain(&err)
                .contains("--filter-expr.ev: no data source ev (the data sources are: b, a)"),
            "{}",
            chain(&err)
        );
        let err = collect(
            two_sources(schema("a")),
            &given(&[("filter.b", "a:proc.pid>1")]),
        )
        .err()
        .unwrap();
        assert!(
            chain(&err).contains("--filter.b rule \"a:proc.pid>1\" names data source a"),
            "{}",
            chain(&err)
        );
    }

    #[test]
    fn an_expression_applies_to_the_sources_that_have_its_fields() {
        // Data source a has a field b does not.
        let with_extra = || {
            let mut a = schema("a");
            a.add_owned("extra".into(), FieldKind::String, None)
                .unwrap();
            a
        };
        let col = collect(
            two_sources(with_extra()),
            &given(&[("filter-expr", "extra == 'x'")]),
        )
        .unwrap();
        // None of a (extra is empty), all of b.
        assert_eq!(col.arrays.borrow().as_slice(), [4]);
        assert_eq!(col.seen.borrow().len(), 4);
        // Both have proc.pid: both filtered.
        let col = collect(
            two_sources(with_extra()),
            &given(&[("filter-expr", "proc.pid < 100")]),
        )
        .unwrap();
        assert_eq!(col.arrays.borrow().as_slice(), [2]);
        assert_eq!(col.seen.borrow().len(), 2 + 2);
        // Neither has it: the error of the first.
        let err = collect(
            two_sources(with_extra()),
            &given(&[("filter-expr", "nope == 1")]),
        )
        .err()
        .unwrap();
        assert!(
            chain(&err).contains("filter expression for data source b: unknown field nope"),
            "{}",
            chain(&err)
        );
        // A type error where the fields exist is an error.
        let err = collect(
            two_sources(with_extra()),
            &given(&[("filter-expr", "proc.pid == 'x'")]),
        )
        .err()
        .unwrap();
        assert!(chain(&err).contains("mismatched types"), "{}", chain(&err));
    }

    #[test]
    fn splitting_keeps_other_backslashes() {
        assert_eq!(split_rules(r"a~\d+\,x,b==1,"), [r"a~\d+,x", "b==1"]);
        assert_eq!(split_rules(""), Vec::<String>::new());
    }
}
