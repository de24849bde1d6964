//! From the syntax tree to the evaluated form: names resolved against the
//! schema (fields win over `let` variables, as upstream's patcher makes
//! them), types checked with expr-lang's rules, constant parts folded,
//! regular expressions and networks compiled once.
//!
//! expr-lang's type rules, as filters meet them: `==`/`!=` need two
//! numbers (of any width), two strings, two booleans, or `nil` on a side;
//! `< <= > >=` two numbers or two strings; `and`/`or`/`not` booleans;
//! `matches`, `contains`, `startsWith`, `endsWith` strings; `x in [list]`
//! an `x` comparable to the list's elements when they are all of one type
//! (any `x` when they are mixed); `x in cidr(...)` a string; `x in a..b`
//! a number. The whole expression must be a boolean.

use super::cidr::{self, Net};
use super::eval::{Cmp, Const, EvalError, Node, StrOp, is_stringy};
use super::parser::{Ast, BinOp, Node as A, UNSUPPORTED_BUILTINS, UnOp};
use super::pattern::Pattern;
use super::{ErrorKind, ExprError, Span};
use crate::datasource::{ColumnMatch, Event, FieldKind, Schema, SchemaBuilder, SourceKind};

/// How many fields an unknown field's error lists.
const SHOWN_FIELDS: usize = 12;

/// Static types.
#[derive(Clone, Debug, PartialEq)]
enum Ty {
    Bool,
    /// An integer: `int` for literals, the field's kind name otherwise.
    Int(&'static str),
    Float(&'static str),
    Str,
    Nil,
    /// Elements' type when they all have one.
    Array(Option<Box<Ty>>),
    Cidr,
    Range,
    /// A field that has fields (`proc`): not a value.
    Group(String),
}

impl Ty {
    fn of_kind(kind: FieldKind) -> Ty {
        match kind {
            FieldKind::Bool => Ty::Bool,
            FieldKind::F32 | FieldKind::F64 => Ty::Float(kind.name()),
            k if k.is_numeric() => Ty::Int(k.name()),
            _ => Ty::Str,
        }
    }

    fn is_number(&self) -> bool {
        matches!(self, Ty::Int(_) | Ty::Float(_))
    }

    fn name(&self) -> String {
        match self {
            Ty::Bool => "bool".into(),
            Ty::Int(n) | Ty::Float(n) => (*n).into(),
            Ty::Str => "string".into(),
            Ty::Nil => "nil".into(),
            Ty::Array(Some(t)) => format!("array of {}", t.name()),
            Ty::Array(None) => "array".into(),
            Ty::Cidr => "cidr(...) networks".into(),
            Ty::Range => "range".into(),
            Ty::Group(p) => format!("group of fields {p}"),
        }
    }
}

/// expr-lang's `ComparableTo` for the types filters have.
fn comparable(a: &Ty, b: &Ty) -> bool {
    *a == Ty::Nil
        || *b == Ty::Nil
        || (a.is_number() && b.is_number())
        || (*a == Ty::Bool && *b == Ty::Bool)
        || (*a == Ty::Str && *b == Ty::Str)
}

/// What a compiled subexpression is: a node evaluated per event, or one
/// of the things that exist only at compile time.
#[derive(Clone, Debug)]
enum Val {
    Node(Node),
    Array(Vec<C>),
    Cidr(Vec<Net>),
    Range(i64, i64),
    Group(String),
}

#[derive(Clone, Debug)]
struct C {
    val: Val,
    ty: Ty,
    /// Where it is written: the whole subexpression.
    span: Span,
}

impl C {
    fn constant(&self) -> Option<&Const> {
        match &self.val {
            Val::Node(Node::Const(c)) => Some(c),
            _ => None,
        }
    }
}

/// The whole source range of a subexpression (the tree keeps the
/// operator's position for operations).
fn extent(a: &Ast) -> Span {
    match &a.node {
        A::Member(b, _) => extent(b).to(a.span),
        A::Unary(_, x) => a.span.to(extent(x)),
        A::Binary(_, l, r) => extent(l).to(extent(r)).to(a.span),
        A::Logic(_, items, _) => items.iter().fold(a.span, |s, x| s.to(extent(x))),
        A::Call(_, args) | A::Array(args) => args.iter().fold(a.span, |s, x| s.to(extent(x))),
        A::Let(_, v, b) => a.span.to(extent(v)).to(extent(b)),
        A::Seq(items) => items.iter().fold(a.span, |s, x| s.to(extent(x))),
        _ => a.span,
    }
}

/// `proc.creds.uid`: the root name and the properties, when `a` is a
/// plain chain of names.
fn chain(a: &Ast) -> Option<(&str, Vec<&str>)> {
    match &a.node {
        A::Ident(n) => Some((n, Vec::new())),
        A::Member(b, p) => {
            let (root, mut props) = chain(b)?;
            props.push(p);
            Some((root, props))
        }
        _ => None,
    }
}

struct Compiler<'a> {
    src: &'a str,
    schema: &'a Schema,
    scopes: Vec<(String, C)>,
    /// What constant parts are evaluated against.
    empty: Schema,
    empty_event: Event,
}

pub(super) fn compile(src: &str, ast: &Ast, schema: &Schema) -> Result<Node, ExprError> {
    let empty = SchemaBuilder::new("", SourceKind::Single, 0).build();
    let empty_event = Event::new(&empty);
    let mut c = Compiler {
        src,
        schema,
        scopes: Vec::new(),
        empty,
        empty_event,
    };
    let top = c.expr(ast)?;
    match top {
        C {
            val: Val::Node(n),
            ty: Ty::Bool,
            ..
        } => Ok(n),
        C { ty, span, .. } => Err(c.err(
            ErrorKind::Type,
            format!(
                "a filter expression must be a boolean (true keeps the event); this one is {}",
                ty.name()
            ),
            span,
        )),
    }
}

/// The boolean expr-lang's optimizer folds `a` to before the run, if any
/// (its `fold` pass: `true`/`false`, `not` of one, `==` of two integer,
/// string or folded boolean literals, and `and`/`or` with a folded side:
/// `x or true` is `true`, `x and false` is `false`, without evaluating
/// `x`). It matters where `x` could fail: `dst.addr in cidr(...) or true`
/// keeps every event there, the address or not, so it does here.
fn folds_to(a: &Ast) -> Option<bool> {
    fn int(a: &Ast) -> Option<i64> {
        match &a.node {
            A::Int(i) => Some(*i),
            A::Unary(UnOp::Neg, x) => int(x).map(i64::wrapping_neg),
            A::Unary(UnOp::Plus, x) => int(x),
            _ => None,
        }
    }
    match &a.node {
        A::Bool(b) => Some(*b),
        A::Unary(UnOp::Not, x) => folds_to(x).map(|b| !b),
        // A chain folds as the left-leaning tree expr-lang has for it.
        A::Logic(op, items, _) => {
            let (first, rest) = items.split_first()?;
            rest.iter().fold(folds_to(first), |acc, r| {
                fold_step(*op == BinOp::And, acc, folds_to(r)).1
            })
        }
        A::Binary(BinOp::Eq, l, r) => match (&l.node, &r.node) {
            (A::Str(x), A::Str(y)) => Some(x == y),
            _ => match (int(l), int(r)) {
                (Some(x), Some(y)) => Some(x == y),
                _ => Some(folds_to(l)? == folds_to(r)?),
            },
        },
        _ => None,
    }
}

/// One step of a folded `and` (`is_and`) or `or` chain: the left side
/// as folded so far, the next operand's fold. Returns what happens to the
/// chain and the fold of the result: `and`: `true and x` is `x`, `x and
/// true` is `x`, a `false` side makes it `false`; `or` the other way.
fn fold_step(is_and: bool, left: Option<bool>, right: Option<bool>) -> (Step, Option<bool>) {
    let unit = Some(is_and); // true for and, false for or
    let absorbing = Some(!is_and);
    if left == unit {
        (Step::OnlyRight, right)
    } else if right == unit {
        (Step::Keep, left)
    } else if left == absorbing || right == absorbing {
        (Step::Constant, absorbing)
    } else {
        (Step::Append, None)
    }
}

/// What one operand does to a folded chain.
enum Step {
    /// The chain so far folds to the unit: the operand replaces it.
    OnlyRight,
    /// The operand folds to the unit: dropped.
    Keep,
    /// A side folds to the absorbing value: the chain is that constant.
    Constant,
    /// Evaluated after the others.
    Append,
}

/// Levenshtein distance, on characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

impl Compiler<'_> {
    fn err(&self, kind: ErrorKind, message: String, span: Span) -> ExprError {
        ExprError::new(kind, message, span, self.src)
    }

    /// The source text of a span, for messages (shortened).
    fn text(&self, span: Span) -> String {
        let t = self.src.get(span.start..span.end).unwrap_or("").trim();
        if t.chars().count() > 40 {
            format!("{}…", t.chars().take(39).collect::<String>())
        } else {
            t.to_owned()
        }
    }

    fn konst(c: Const, ty: Ty, span: Span) -> C {
        C {
            val: Val::Node(Node::Const(c)),
            ty,
            span,
        }
    }

    /// Evaluate a node that reads no field now.
    fn fold(&self, node: Node, span: Span) -> Result<Node, ExprError> {
        if node.reads_fields() || matches!(node, Node::Const(_)) {
            return Ok(node);
        }
        match node.value(&self.empty, &self.empty_event) {
            Ok(v) => Ok(Node::Const(Const::from_v(v))),
            Err(_) => Err(self.err(
                ErrorKind::Cidr,
                "the left side of `in cidr(...)` is not an IP address".into(),
                span,
            )),
        }
    }

    fn expr(&mut self, a: &Ast) -> Result<C, ExprError> {
        let span = extent(a);
        match &a.node {
            A::Nil => Ok(Self::konst(Const::Nil, Ty::Nil, span)),
            A::Bool(b) => Ok(Self::konst(Const::Bool(*b), Ty::Bool, span)),
            A::Int(i) => Ok(Self::konst(Const::Int(*i), Ty::Int("int"), span)),
            A::Float(f) => Ok(Self::konst(Const::Float(*f), Ty::Float("float64"), span)),
            A::Str(s) => Ok(Self::konst(Const::Str(s.as_bytes().into()), Ty::Str, span)),
            A::Ident(_) | A::Member(..) => self.path(a, span),
            A::Unary(op, x) => self.unary(*op, x, span),
            A::Binary(op, l, r) => self.binary(*op, l, r, a.span, span),
            A::Logic(op, items, ops) => self.logic(*op, items, ops, span),
            A::Call(name, args) => self.call(name, args, span),
            A::Array(items) => {
                let mut out = Vec::new();
                for i in items {
                    let c = self.expr(i)?;
                    if !matches!(c.val, Val::Node(_)) {
                        return Err(self.err(
                            ErrorKind::Type,
                            format!(
                                "a list holds numbers, strings, booleans and nil, not a {}",
                                c.ty.name()
                            ),
                            c.span,
                        ));
                    }
                    out.push(c);
                }
                let elem = match out.split_first() {
                    Some((first, rest)) if rest.iter().all(|c| c.ty == first.ty) => {
                        Some(Box::new(first.ty.clone()))
                    }
                    _ => None,
                };
                Ok(C {
                    val: Val::Array(out),
                    ty: Ty::Array(elem),
                    span,
                })
            }
            A::Let(name, value, body) => {
                let redeclare = if name == "len" || name == "cidr" {
                    Some("function")
                } else if UNSUPPORTED_BUILTINS.contains(&name.as_str()) {
                    Some("builtin")
                } else if self.scopes.iter().any(|(n, _)| n == name) {
                    Some("variable")
                } else {
                    None
                };
                if let Some(what) = redeclare {
                    return Err(self.err(
                        ErrorKind::Syntax,
                        format!("cannot redeclare {what} {name}"),
                        a.span,
                    ));
                }
                let v = self.expr(value)?;
                self.scopes.push((name.clone(), v.clone()));
                let b = self.expr(body);
                self.scopes.pop();
                let mut b = b?;
                // A value whose evaluation may fail fails the expression
                // even if it is never used (expr-lang evaluates it first).
                if let (Val::Node(vn), Val::Node(bn)) = (&v.val, &b.val)
                    && vn.can_fail()
                {
                    b.val = Val::Node(Node::Seq(vec![vn.clone(), bn.clone()].into()));
                }
                b.span = span;
                Ok(b)
            }
            A::Seq(items) => {
                let mut parts = Vec::new();
                let mut last = None;
                for i in items {
                    let c = self.expr(i)?;
                    if let Some(prev) = last.replace(c)
                        && let C {
                            val: Val::Node(n), ..
                        } = prev
                        && n.can_fail()
                    {
                        parts.push(n);
                    }
                }
                let mut last =
                    last.ok_or_else(|| self.err(ErrorKind::Syntax, "empty sequence".into(), span))?;
                if let Val::Node(n) = &last.val
                    && !parts.is_empty()
                {
                    parts.push(n.clone());
                    last.val = Val::Node(Node::Seq(parts.into()));
                }
                last.span = span;
                Ok(last)
            }
        }
    }

    /// A name, or a chain of them: a field, a group of fields, a variable.
    fn path(&mut self, a: &Ast, span: Span) -> Result<C, ExprError> {
        let Some((root, props)) = chain(a) else {
            // `(expr).name`: only names have fields.
            let A::Member(base, prop) = &a.node else {
                return Err(self.err(ErrorKind::Syntax, "expected a name".into(), span));
            };
            let b = self.expr(base)?;
            return Err(self.err(
                ErrorKind::Type,
                format!(
                    "{} is a {}; it has no field {prop}",
                    self.text(b.span),
                    b.ty.name()
                ),
                span,
            ));
        };
        let full = std::iter::once(root)
            .chain(props.iter().copied())
            .collect::<Vec<_>>()
            .join(".");
        if self.is_field_or_group(root) {
            // The longest known prefix: a value field there with more
            // names after it is a mistake of its own.
            let mut path = root.to_owned();
            for p in &props {
                if let Some(id) = self.schema.field_by_name(&path)
                    && !self.is_group(&path)
                {
                    let f = self.schema.field(id);
                    return Err(self.err(
                        ErrorKind::Type,
                        format!("{path} is a {} field; it has no field {p}", f.kind.name()),
                        span,
                    ));
                }
                path.push('.');
                path.push_str(p);
                if !self.is_field_or_group(&path) {
                    return Err(self.unknown_field(&full, span));
                }
            }
            return Ok(self.field_value(&path, span));
        }
        if let Some((_, v)) = self.scopes.iter().rev().find(|(n, _)| n == root) {
            if let Some(p) = props.first() {
                return Err(self.err(
                    ErrorKind::Type,
                    format!("variable {root} is a {}; it has no field {p}", v.ty.name()),
                    span,
                ));
            }
            let mut v = v.clone();
            v.span = span;
            return Ok(v);
        }
        if root == "$env" {
            return Err(self.err(
                ErrorKind::Unsupported,
                "$env is not supported in filter expressions".into(),
                span,
            ));
        }
        if props.is_empty() && (root == "len" || root == "cidr") {
            return Err(self.err(
                ErrorKind::Syntax,
                format!("{root} is a function: call it, as {root}(...)"),
                span,
            ));
        }
        // Last, a column name as a table's header shows it (`comm` for
        // `proc.comm`), as --filter, --sort and --fields take it: a full
        // name or a variable of the expression always comes first.
        if props.is_empty() {
            match self.schema.find_column(root) {
                ColumnMatch::Field(id) => {
                    let name = self.schema.field(id).name.clone();
                    return Ok(self.field_value(&name, span));
                }
                ColumnMatch::Ambiguous(ids) => {
                    return Err(self.err(
                        ErrorKind::Unknown,
                        format!(
                            "column name {root} is ambiguous in data source {}: name one of {}",
                            self.schema.name,
                            self.schema.names_of(&ids)
                        ),
                        span,
                    ));
                }
                ColumnMatch::None => {}
            }
        }
        Err(self.unknown_field(&full, span))
    }

    fn is_group(&self, path: &str) -> bool {
        let prefix = format!("{path}.");
        self.schema
            .fields()
            .iter()
            .any(|f| f.name.starts_with(&prefix))
    }

    fn is_field_or_group(&self, path: &str) -> bool {
        self.schema.field_by_name(path).is_some() || self.is_group(path)
    }

    fn field_value(&self, path: &str, span: Span) -> C {
        match self.schema.field_by_name(path) {
            Some(id) if !self.is_group(path) => {
                let kind = self.schema.field(id).kind;
                C {
                    val: Val::Node(Node::Field(id, kind)),
                    ty: Ty::of_kind(kind),
                    span,
                }
            }
            _ => C {
                val: Val::Group(path.to_owned()),
                ty: Ty::Group(path.to_owned()),
                span,
            },
        }
    }

    /// The fields one can filter on, nearest to `name` first.
    fn unknown_field(&self, name: &str, span: Span) -> ExprError {
        // Nearest: the smallest edit distance to the whole name or to
        // its last part (`comm` for `proc.comm`), a column alias first;
        // among equals, those sharing more of the typed name's start.
        let mut scored: Vec<(usize, usize, &str)> = self
            .schema
            .fields()
            .iter()
            .filter(|f| !f.hidden && !self.is_group(&f.name) && f.kind != FieldKind::Struct)
            .map(|f| {
                let alias = f
                    .annotation("columns.alias")
                    .is_some_and(|a| a.eq_ignore_ascii_case(name));
                let score = if alias {
                    0
                } else {
                    distance(name, &f.name).min(distance(name, f.short_name()) + 1)
                };
                let shared = name
                    .chars()
                    .zip(f.name.chars())
                    .take_while(|(a, b)| a == b)
                    .count();
                (score, usize::MAX - shared, f.name.as_str())
            })
            .collect();
        scored.sort_by_key(|(s, p, _)| (*s, *p));
        let hint = match scored.first() {
            Some((s, _, n)) if *s <= 2 => format!(" (did you mean {n}?)"),
            _ => String::new(),
        };
        let list = if scored.is_empty() {
            format!("data source {} has none", self.schema.name)
        } else {
            // Enough to spot the one meant; a gadget with container and
            // Kubernetes fields has fifty.
            let shown: Vec<&str> = scored.iter().take(SHOWN_FIELDS).map(|(.., n)| *n).collect();
            let more = match scored.len().saturating_sub(SHOWN_FIELDS) {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            format!(
                "the fields of data source {}, nearest first: {}{more}",
                self.schema.name,
                shown.join(", ")
            )
        };
        self.err(
            ErrorKind::Unknown,
            format!("unknown field {name}{hint}; {list}"),
            span,
        )
    }

    /// A value usable as an operand: not a list, networks, a range or a
    /// group.
    fn operand(&self, c: C, what: &str) -> Result<(Node, Ty, Span), ExprError> {
        match c.val {
            Val::Node(n) => Ok((n, c.ty, c.span)),
            Val::Group(p) => {
                let prefix = format!("{p}.");
                let some: Vec<&str> = self
                    .schema
                    .fields()
                    .iter()
                    .filter(|f| f.name.starts_with(&prefix) && !f.hidden && !self.is_group(&f.name))
                    .map(|f| f.name.as_str())
                    .take(6)
                    .collect();
                Err(self.err(
                    ErrorKind::Type,
                    format!(
                        "{p} is a group of fields, not a value: name one of them ({}…)",
                        some.join(", ")
                    ),
                    c.span,
                ))
            }
            Val::Array(_) => Err(self.err(
                ErrorKind::Type,
                format!("a list cannot be {what}: lists go after in (or into len())"),
                c.span,
            )),
            Val::Cidr(_) => Err(self.err(
                ErrorKind::Type,
                format!("cidr(...) cannot be {what}: it goes after in (ADDRESS in cidr(...))"),
                c.span,
            )),
            Val::Range(..) => Err(self.err(
                ErrorKind::Type,
                format!("a range cannot be {what}: it goes after in (x in 1..10)"),
                c.span,
            )),
        }
    }

    fn unary(&mut self, op: UnOp, x: &Ast, span: Span) -> Result<C, ExprError> {
        let c = self.expr(x)?;
        let (n, ty, _) = self.operand(c, "negated")?;
        match op {
            UnOp::Not => {
                if ty != Ty::Bool {
                    return Err(self.err(
                        ErrorKind::Type,
                        format!(
                            "invalid operation: not {} (mismatched type {}: not needs a boolean; to negate a comparison, write not (a == b))",
                            self.text(extent(x)),
                            ty.name()
                        ),
                        span,
                    ));
                }
                let node = self.fold(Node::Not(Box::new(n)), span)?;
                Ok(C {
                    val: Val::Node(node),
                    ty,
                    span,
                })
            }
            UnOp::Neg | UnOp::Plus => {
                if !ty.is_number() {
                    return Err(self.err(
                        ErrorKind::Type,
                        format!(
                            "invalid operation: {} (mismatched type {})",
                            self.text(span),
                            ty.name()
                        ),
                        span,
                    ));
                }
                let node = match (op, n) {
                    (UnOp::Plus, n) => n,
                    (_, Node::Const(Const::Int(i))) => Node::Const(Const::Int(i.wrapping_neg())),
                    (_, Node::Const(Const::Float(f))) => Node::Const(Const::Float(-f)),
                    _ => {
                        return Err(self.err(
                            ErrorKind::Unsupported,
                            "negating a field is not supported in filter expressions".into(),
                            span,
                        ));
                    }
                };
                Ok(C {
                    val: Val::Node(node),
                    ty,
                    span,
                })
            }
        }
    }

    fn mismatch(&self, op: BinOp, l: &C, r: &C, at: Span) -> ExprError {
        self.err(
            ErrorKind::Type,
            format!(
                "invalid operation: {} {} {} (mismatched types {} and {})",
                self.text(l.span),
                op.spelling(),
                self.text(r.span),
                l.ty.name(),
                r.ty.name()
            ),
            at,
        )
    }

    fn binary(
        &mut self,
        op: BinOp,
        l: &Ast,
        r: &Ast,
        at: Span,
        span: Span,
    ) -> Result<C, ExprError> {
        if matches!(
            op,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Pow
        ) {
            return Err(self.err(
                ErrorKind::Unsupported,
                format!(
                    "arithmetic ({}) is not supported in filter expressions",
                    op.spelling()
                ),
                at,
            ));
        }
        let lc = self.expr(l)?;
        let rc = self.expr(r)?;
        let node = match op {
            BinOp::In => return self.member_of(lc, rc, at, span),
            BinOp::Range => {
                return match (lc.constant(), rc.constant(), &lc.ty, &rc.ty) {
                    (Some(Const::Int(lo)), Some(Const::Int(hi)), ..) => Ok(C {
                        val: Val::Range(*lo, *hi),
                        ty: Ty::Range,
                        span,
                    }),
                    (_, _, Ty::Int(_), Ty::Int(_)) => Err(self.err(
                        ErrorKind::Unsupported,
                        "a range of fields is not supported in filter expressions: its bounds must be constants".into(),
                        at,
                    )),
                    _ => Err(self.mismatch(op, &lc, &rc, at)),
                };
            }
            _ => {
                let (ls, rs) = (lc.clone(), rc.clone());
                let (ln, lt, _) = self.operand(lc, "compared")?;
                let (rn, rt, _) = self.operand(rc, "compared")?;
                let ok = match op {
                    BinOp::Eq | BinOp::Ne => comparable(&lt, &rt),
                    BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                        (lt.is_number() && rt.is_number()) || (lt == Ty::Str && rt == Ty::Str)
                    }
                    _ => lt == Ty::Str && rt == Ty::Str,
                };
                if !ok {
                    return Err(self.mismatch(op, &ls, &rs, at));
                }
                match op {
                    BinOp::Eq => cmp_node(Cmp::Eq, ln, rn),
                    BinOp::Ne => cmp_node(Cmp::Ne, ln, rn),
                    BinOp::Lt => cmp_node(Cmp::Lt, ln, rn),
                    BinOp::Le => cmp_node(Cmp::Le, ln, rn),
                    BinOp::Gt => cmp_node(Cmp::Gt, ln, rn),
                    BinOp::Ge => cmp_node(Cmp::Ge, ln, rn),
                    BinOp::Matches => self.matches(ln, rn, rs.span)?,
                    BinOp::Contains => Node::StrOp(StrOp::Contains, Box::new(ln), Box::new(rn)),
                    BinOp::StartsWith => Node::StrOp(StrOp::StartsWith, Box::new(ln), Box::new(rn)),
                    BinOp::EndsWith => Node::StrOp(StrOp::EndsWith, Box::new(ln), Box::new(rn)),
                    _ => return Err(self.mismatch(op, &ls, &rs, at)),
                }
            }
        };
        Ok(C {
            val: Val::Node(self.fold(node, span)?),
            ty: Ty::Bool,
            span,
        })
    }

    /// `a and b and c` (or `or`): each operand a boolean, checked and
    /// folded in the order of the left-leaning tree expr-lang builds, then
    /// evaluated in a loop, left to right, until one decides.
    fn logic(
        &mut self,
        op: BinOp,
        items: &[Ast],
        ops: &[Span],
        span: Span,
    ) -> Result<C, ExprError> {
        let Some((first, rest)) = items.split_first() else {
            return Err(self.err(ErrorKind::Syntax, "empty chain".into(), span));
        };
        let is_and = op == BinOp::And;
        let mut left = self.expr(first)?;
        let mut parts: Vec<Node> = Vec::new();
        let mut folded = folds_to(first);
        for (item, at) in rest.iter().zip(ops) {
            let right = self.expr(item)?;
            let (ls, rs) = (left.clone(), right.clone());
            let (ln, lt, _) = self.operand(left, "compared")?;
            let (rn, rt, _) = self.operand(right, "compared")?;
            if lt != Ty::Bool || rt != Ty::Bool {
                return Err(self.mismatch(op, &ls, &rs, *at));
            }
            if parts.is_empty() {
                parts.push(ln);
            }
            let (step, f) = fold_step(is_and, folded, folds_to(item));
            match step {
                Step::OnlyRight => parts = vec![rn],
                Step::Keep => {}
                Step::Constant => parts = vec![Node::Const(Const::Bool(!is_and))],
                Step::Append => parts.push(rn),
            }
            folded = f;
            // The chain so far is the left side of the next step.
            let whole = ls.span.to(rs.span);
            left = C {
                val: Val::Node(Node::Const(Const::Bool(true))),
                ty: Ty::Bool,
                span: whole,
            };
        }
        let node = match parts.len() {
            1 => parts.pop().unwrap_or(Node::Const(Const::Bool(is_and))),
            _ if is_and => Node::All(parts.into()),
            _ => Node::Any(parts.into()),
        };
        Ok(C {
            val: Val::Node(self.fold(node, span)?),
            ty: Ty::Bool,
            span,
        })
    }

    fn matches(&self, l: Node, pattern: Node, at: Span) -> Result<Node, ExprError> {
        let Node::Const(Const::Str(p)) = pattern else {
            return Err(self.err(
                ErrorKind::Unsupported,
                "the pattern of matches must be a constant string (a literal, or a let of one): it is compiled once".into(),
                at,
            ));
        };
        let p = String::from_utf8_lossy(&p);
        let re = Pattern::new(&p).map_err(|reason| {
            self.err(
                ErrorKind::Regex,
                format!("bad regular expression {p:?}: {reason}"),
                at,
            )
        })?;
        Ok(Node::Matches(Box::new(l), re))
    }

    fn member_of(&mut self, l: C, r: C, at: Span, span: Span) -> Result<C, ExprError> {
        let ls = l.clone();
        let rs = r.clone();
        let (ln, lt, _) = self.operand(l, "before in")?;
        let node = match r.val {
            Val::Cidr(nets) => {
                if lt != Ty::Str {
                    return Err(self.err(
                        ErrorKind::Type,
                        format!(
                            "cannot use {} ({}) as an IP address: the left side of in cidr(...) must be a string, such as dst.addr",
                            self.text(ls.span),
                            lt.name()
                        ),
                        at,
                    ));
                }
                if let Node::Const(Const::Str(s)) = &ln
                    && cidr::contains(&nets, s).is_none()
                {
                    return Err(self.err(
                        ErrorKind::Cidr,
                        format!("{:?} is not an IP address", String::from_utf8_lossy(s)),
                        ls.span,
                    ));
                }
                Node::InCidr(Box::new(ln), nets.into(), EvalError::at(at))
            }
            Val::Array(items) => {
                if let Ty::Array(Some(elem)) = &rs.ty
                    && !comparable(&lt, elem)
                {
                    return Err(self.err(
                        ErrorKind::Type,
                        format!(
                            "cannot use {} ({}) as type {} in list",
                            self.text(ls.span),
                            lt.name(),
                            elem.name()
                        ),
                        at,
                    ));
                }
                let consts: Option<Vec<&[u8]>> = items
                    .iter()
                    .map(|c| match c.constant() {
                        Some(Const::Str(s)) => Some(&s[..]),
                        _ => None,
                    })
                    .collect();
                match consts {
                    Some(mut set) if lt == Ty::Str => {
                        set.sort();
                        set.dedup();
                        let set: Vec<Box<[u8]>> = set.into_iter().map(Box::from).collect();
                        Node::InStrs(Box::new(ln), set.into())
                    }
                    _ => {
                        let nodes: Vec<Node> = items
                            .into_iter()
                            .filter_map(|c| match c.val {
                                Val::Node(n) => Some(n),
                                _ => None,
                            })
                            .collect();
                        Node::InList(Box::new(ln), nodes.into())
                    }
                }
            }
            Val::Range(lo, hi) => {
                if !lt.is_number() {
                    return Err(self.err(
                        ErrorKind::Type,
                        format!(
                            "cannot use {} ({}) as type int in range",
                            self.text(ls.span),
                            lt.name()
                        ),
                        at,
                    ));
                }
                Node::InRange(Box::new(ln), lo, hi)
            }
            Val::Group(_) => {
                self.operand(r, "after in")?;
                return Err(self.mismatch(BinOp::In, &ls, &rs, at));
            }
            Val::Node(_) => return Err(self.mismatch(BinOp::In, &ls, &rs, at)),
        };
        Ok(C {
            val: Val::Node(self.fold(node, span)?),
            ty: Ty::Bool,
            span,
        })
    }

    fn call(&mut self, name: &str, args: &[Ast], span: Span) -> Result<C, ExprError> {
        let mut compiled = Vec::new();
        for a in args {
            compiled.push(self.expr(a)?);
        }
        match name {
            "len" => {
                if compiled.len() != 1 {
                    return Err(self.err(
                        ErrorKind::Type,
                        format!(
                            "invalid number of arguments to len (expected 1, got {})",
                            compiled.len()
                        ),
                        span,
                    ));
                }
                let a = compiled.remove(0);
                let node = match a.val {
                    Val::Node(n) if a.ty == Ty::Str => self.fold(Node::Len(Box::new(n)), span)?,
                    Val::Array(items) => Node::Const(Const::Int(items.len() as i64)),
                    Val::Range(lo, hi) => {
                        Node::Const(Const::Int(hi.saturating_sub(lo).saturating_add(1).max(0)))
                    }
                    _ => {
                        return Err(self.err(
                            ErrorKind::Type,
                            format!("invalid argument for len (type {})", a.ty.name()),
                            a.span,
                        ));
                    }
                };
                Ok(C {
                    val: Val::Node(node),
                    ty: Ty::Int("int"),
                    span,
                })
            }
            _ => {
                let mut nets = Vec::new();
                for a in compiled {
                    if a.ty != Ty::Str {
                        return Err(self.err(
                            ErrorKind::Type,
                            format!(
                                "cannot use {} ({}) as argument (type string) to call cidr",
                                self.text(a.span),
                                a.ty.name()
                            ),
                            a.span,
                        ));
                    }
                    let Some(Const::Str(s)) = a.constant() else {
                        return Err(self.err(
                            ErrorKind::Unsupported,
                            "the arguments of cidr() must be constant strings (they are parsed once)".into(),
                            a.span,
                        ));
                    };
                    let net = cidr::parse_net(&String::from_utf8_lossy(s))
                        .map_err(|m| self.err(ErrorKind::Cidr, m, a.span))?;
                    nets.push(net);
                }
                Ok(C {
                    val: Val::Cidr(nets),
                    ty: Ty::Cidr,
                    span,
                })
            }
        }
    }
}

/// A comparison, with the common shapes (a field against a constant)
/// given nodes of their own.
fn cmp_node(op: Cmp, l: Node, r: Node) -> Node {
    let int = |k: FieldKind| k.is_numeric() && !matches!(k, FieldKind::F32 | FieldKind::F64);
    match (l, r) {
        (Node::Field(id, k), Node::Const(Const::Str(s))) if is_stringy(k) => {
            Node::StrField(op, id, k, s)
        }
        (Node::Const(Const::Str(s)), Node::Field(id, k)) if is_stringy(k) => {
            Node::StrField(op.swapped(), id, k, s)
        }
        (Node::Field(id, k), Node::Const(Const::Int(i))) if int(k) => Node::IntField(op, id, k, i),
        (Node::Const(Const::Int(i)), Node::Field(id, k)) if int(k) => {
            Node::IntField(op.swapped(), id, k, i)
        }
        (l, r) => Node::Cmp(op, Box::new(l), Box::new(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::distance;

    #[test]
    fn edit_distance() {
        assert_eq!(distance("proc.com", "proc.comm"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("same", "same"), 0);
    }
}
