//! The compiled form and its evaluation: a tree of nodes whose fields are
//! read by [`FieldId`], whose constants, regular expressions and networks
//! were made at compile time, evaluated without allocating.
//!
//! Values follow expr-lang's runtime (`runtime.Equal`, `runtime.Less`...):
//! two integers of any width compare as 64-bit signed integers (an
//! unsigned value above `i64::MAX` wraps, as Go's `int(x)` does); an
//! integer and a float compare as floats, each converted from its own
//! type; strings compare bytewise; `==` between values of different kinds
//! (a string and a number in a mixed list) is false, and `nil` equals only
//! `nil`. A field with no value in this event (an operator did not set it)
//! reads as its type's zero value, as upstream's zeroed payloads do.

use std::cmp::Ordering;

use super::Span;
use super::cidr::{self, Net};
use super::pattern::{Pattern, go_len};
use crate::datasource::{Event, FieldId, FieldKind, Schema, ValueRef};

/// A value during evaluation; strings borrow from the event or the
/// program.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum V<'a> {
    Nil,
    Bool(bool),
    I(i64),
    U(u64),
    F(f64),
    Str(&'a [u8]),
}

/// A constant of the program.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Const {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<[u8]>),
}

impl Const {
    fn v(&self) -> V<'_> {
        match self {
            Self::Nil => V::Nil,
            Self::Bool(b) => V::Bool(*b),
            Self::Int(i) => V::I(*i),
            Self::Float(f) => V::F(*f),
            Self::Str(s) => V::Str(s),
        }
    }

    pub fn from_v(v: V<'_>) -> Self {
        match v {
            V::Nil => Self::Nil,
            V::Bool(b) => Self::Bool(b),
            V::I(i) => Self::Int(i),
            V::U(u) => Self::Int(u as i64),
            V::F(f) => Self::Float(f),
            V::Str(s) => Self::Str(s.into()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds(self, o: Ordering) -> bool {
        match self {
            Self::Eq => o == Ordering::Equal,
            Self::Ne => o != Ordering::Equal,
            Self::Lt => o == Ordering::Less,
            Self::Le => o != Ordering::Greater,
            Self::Gt => o == Ordering::Greater,
            Self::Ge => o != Ordering::Less,
        }
    }

    /// The same test with the operands swapped (`1 < x` is `x > 1`).
    pub fn swapped(self) -> Self {
        match self {
            Self::Lt => Self::Gt,
            Self::Le => Self::Ge,
            Self::Gt => Self::Lt,
            Self::Ge => Self::Le,
            other => other,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StrOp {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Clone, Debug)]
pub(super) enum Node {
    Const(Const),
    Field(FieldId, FieldKind),
    /// Characters of a string, as Go counts them (expr-lang's `len`).
    Len(Box<Node>),
    Not(Box<Node>),
    /// `and` chains: true unless one is false, evaluated left to right
    /// up to the first false.
    All(Box<[Node]>),
    /// `or` chains: up to the first true.
    Any(Box<[Node]>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    /// A string field against a constant: the common case, one read.
    StrField(Cmp, FieldId, FieldKind, Box<[u8]>),
    /// An integer field against an integer constant.
    IntField(Cmp, FieldId, FieldKind, i64),
    InList(Box<Node>, Box<[Node]>),
    /// A string among constant strings (sorted, without duplicates).
    InStrs(Box<Node>, Box<[Box<[u8]>]>),
    /// `x in lo..hi`: an integer between the bounds (a float only if it
    /// is a whole number, since each element of the range is an integer).
    InRange(Box<Node>, i64, i64),
    /// Fails (the whole evaluation does) when the value is not an IP
    /// address, as upstream's `CidrMatches`.
    InCidr(Box<Node>, Box<[Net]>, EvalError),
    Matches(Box<Node>, Pattern),
    StrOp(StrOp, Box<Node>, Box<Node>),
    /// Each part evaluated in turn (a `let` value that may fail, a `;`
    /// sequence); the value of the last.
    Seq(Box<[Node]>),
}

/// Evaluation stopped: `ADDR in cidr(...)` met a value that is not an IP
/// address (upstream's evaluation fails then, and the event is dropped).
///
/// Eight bytes, so that `Result<bool, EvalError>` comes back from every
/// node in registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalError {
    /// Where the `in` whose left side was not an address is written.
    start: u32,
    end: u32,
}

impl EvalError {
    pub(super) fn at(span: Span) -> Self {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            start: clamp(span.start),
            end: clamp(span.end),
        }
    }

    /// The `in` whose left side was not an address.
    pub fn span(&self) -> Span {
        Span::new(self.start as usize, self.end as usize)
    }
}

/// A field's value as the expression sees it. Kinds other than numbers
/// and booleans read as strings (upstream reads them with `String()`).
#[inline]
fn read<'a>(schema: &Schema, ev: &'a Event, id: FieldId, kind: FieldKind) -> V<'a> {
    let v = ev.get(schema.field(id));
    match kind {
        FieldKind::Bool => V::Bool(matches!(v, ValueRef::Bool(true))),
        FieldKind::U8 | FieldKind::U16 | FieldKind::U32 | FieldKind::U64 => match v {
            ValueRef::U64(n) => V::U(n),
            ValueRef::I64(n) => V::U(n as u64),
            _ => V::U(0),
        },
        FieldKind::I8 | FieldKind::I16 | FieldKind::I32 | FieldKind::I64 => match v {
            ValueRef::I64(n) => V::I(n),
            ValueRef::U64(n) => V::I(n as i64),
            _ => V::I(0),
        },
        FieldKind::F32 | FieldKind::F64 => match v {
            ValueRef::F64(f) => V::F(f),
            _ => V::F(0.0),
        },
        FieldKind::CString | FieldKind::String | FieldKind::Bytes | FieldKind::Struct => match v {
            ValueRef::Str(s) | ValueRef::Bytes(s) => V::Str(s),
            _ => V::Str(b""),
        },
    }
}

pub(super) fn is_stringy(kind: FieldKind) -> bool {
    matches!(
        kind,
        FieldKind::CString | FieldKind::String | FieldKind::Bytes | FieldKind::Struct
    )
}

fn as_f64(v: V<'_>) -> Option<f64> {
    match v {
        V::I(i) => Some(i as f64),
        V::U(u) => Some(u as f64),
        V::F(f) => Some(f),
        _ => None,
    }
}

/// Go's `int(x)`: an unsigned value wraps.
fn as_i64(v: V<'_>) -> Option<i64> {
    match v {
        V::I(i) => Some(i),
        V::U(u) => Some(u as i64),
        _ => None,
    }
}

fn order(a: V<'_>, b: V<'_>) -> Option<Ordering> {
    match (a, b) {
        (V::Str(x), V::Str(y)) => Some(x.cmp(y)),
        (V::F(_), _) | (_, V::F(_)) => as_f64(a)?.partial_cmp(&as_f64(b)?),
        _ => Some(as_i64(a)?.cmp(&as_i64(b)?)),
    }
}

fn equal(a: V<'_>, b: V<'_>) -> bool {
    match (a, b) {
        (V::Nil, V::Nil) => true,
        (V::Bool(x), V::Bool(y)) => x == y,
        _ => order(a, b) == Some(Ordering::Equal),
    }
}

fn compare(op: Cmp, a: V<'_>, b: V<'_>) -> bool {
    match op {
        Cmp::Eq => equal(a, b),
        // `!=` is `not (==)`: true for NaN.
        Cmp::Ne => !equal(a, b),
        _ => order(a, b).is_some_and(|o| op.holds(o)),
    }
}

/// An `and` chain (`decides` false: the first false operand decides) or
/// an `or` chain (`decides` true), left to right; leaves inline.
#[inline(always)]
fn chain(parts: &[Node], decides: bool, schema: &Schema, ev: &Event) -> Result<bool, EvalError> {
    for p in parts {
        let pass = match p.leaf(schema, ev) {
            Some(b) => b,
            None => p.test(schema, ev)?,
        };
        if pass == decides {
            return Ok(decides);
        }
    }
    Ok(!decides)
}

fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

impl Node {
    /// The value of a node of any type.
    pub fn value<'a>(&'a self, schema: &Schema, ev: &'a Event) -> Result<V<'a>, EvalError> {
        Ok(match self {
            Self::Const(c) => c.v(),
            Self::Field(id, kind) => read(schema, ev, *id, *kind),
            Self::Len(x) => match x.value(schema, ev)? {
                V::Str(s) => V::I(go_len(s) as i64),
                _ => V::I(0),
            },
            Self::Seq(parts) => {
                let (last, rest) = parts.split_last().ok_or(EvalError::at(Span::new(0, 0)))?;
                for p in rest {
                    p.value(schema, ev)?;
                }
                last.value(schema, ev)?
            }
            _ => V::Bool(self.test(schema, ev)?),
        })
    }

    /// The value of the nodes most tests are made of (a field against a
    /// constant), without a call: `None` for the others. The `and`/`or`
    /// loops and [`Node::test_root`] try it first, so
    /// that `proc.comm == "x" or proc.pid > 0` costs what two `-F` rules
    /// do rather than three calls of [`Node::test`].
    #[inline(always)]
    pub fn leaf(&self, schema: &Schema, ev: &Event) -> Option<bool> {
        Some(match self {
            Self::StrField(op, id, kind, want) => match read(schema, ev, *id, *kind) {
                V::Str(s) => match op {
                    Cmp::Eq => s == &want[..],
                    Cmp::Ne => s != &want[..],
                    _ => op.holds(s.cmp(want)),
                },
                _ => false,
            },
            Self::IntField(op, id, kind, want) => match as_i64(read(schema, ev, *id, *kind)) {
                Some(n) => op.holds(n.cmp(want)),
                None => false,
            },
            Self::Const(c) => matches!(c, Const::Bool(true)),
            _ => return None,
        })
    }

    /// The value of the root: a leaf, or an `and`/`or` chain of leaves,
    /// without a call of [`Node::test`] (whose frame is that of the
    /// largest node).
    #[inline(always)]
    pub fn test_root(&self, schema: &Schema, ev: &Event) -> Result<bool, EvalError> {
        match self {
            Self::All(parts) => chain(parts, false, schema, ev),
            Self::Any(parts) => chain(parts, true, schema, ev),
            _ => match self.leaf(schema, ev) {
                Some(pass) => Ok(pass),
                None => self.test(schema, ev),
            },
        }
    }

    /// The value of a boolean node.
    pub fn test(&self, schema: &Schema, ev: &Event) -> Result<bool, EvalError> {
        Ok(match self {
            Self::Const(c) => matches!(c, Const::Bool(true)),
            Self::Field(..) | Self::Len(_) | Self::Seq(_) => {
                matches!(self.value(schema, ev)?, V::Bool(true))
            }
            Self::Not(x) => !x.test(schema, ev)?,
            Self::All(parts) => return chain(parts, false, schema, ev),
            Self::Any(parts) => return chain(parts, true, schema, ev),
            Self::Cmp(op, a, b) => compare(*op, a.value(schema, ev)?, b.value(schema, ev)?),
            Self::StrField(..) | Self::IntField(..) => self.leaf(schema, ev).unwrap_or(false),
            Self::InList(needle, items) => {
                let n = needle.value(schema, ev)?;
                for i in items.iter() {
                    if equal(n, i.value(schema, ev)?) {
                        return Ok(true);
                    }
                }
                false
            }
            Self::InStrs(needle, set) => match needle.value(schema, ev)? {
                V::Str(s) => set.binary_search_by(|x| (**x).cmp(s)).is_ok(),
                _ => false,
            },
            Self::InRange(x, lo, hi) => match x.value(schema, ev)? {
                V::F(f) => f.fract() == 0.0 && f >= *lo as f64 && f <= *hi as f64,
                v => as_i64(v).is_some_and(|n| (*lo..=*hi).contains(&n)),
            },
            Self::InCidr(x, nets, failed) => match x.value(schema, ev)? {
                V::Str(s) => cidr::contains(nets, s).ok_or(*failed)?,
                _ => return Err(*failed),
            },
            Self::Matches(x, re) => match x.value(schema, ev)? {
                V::Str(s) => re.is_match(s),
                _ => false,
            },
            Self::StrOp(op, a, b) => match (a.value(schema, ev)?, b.value(schema, ev)?) {
                (V::Str(h), V::Str(n)) => match op {
                    StrOp::Contains => contains_bytes(h, n),
                    StrOp::StartsWith => h.starts_with(n),
                    StrOp::EndsWith => h.ends_with(n),
                },
                _ => false,
            },
        })
    }

    /// Whether evaluating this node reads a field of the event.
    pub fn reads_fields(&self) -> bool {
        matches!(
            self,
            Self::Field(..) | Self::StrField(..) | Self::IntField(..)
        ) || self.any_child(&Node::reads_fields)
    }

    /// Whether evaluating this node can fail (it holds an `in cidr(...)`).
    pub fn can_fail(&self) -> bool {
        matches!(self, Self::InCidr(..)) || self.any_child(&Node::can_fail)
    }

    /// Whether `f` holds for a node directly under this one.
    fn any_child(&self, f: &impl Fn(&Node) -> bool) -> bool {
        match self {
            Self::Const(_) | Self::Field(..) | Self::StrField(..) | Self::IntField(..) => false,
            Self::Len(x)
            | Self::Not(x)
            | Self::InStrs(x, _)
            | Self::InRange(x, ..)
            | Self::InCidr(x, ..)
            | Self::Matches(x, _) => f(x),
            Self::Cmp(_, a, b) | Self::StrOp(_, a, b) => f(a) || f(b),
            Self::All(parts) | Self::Any(parts) | Self::Seq(parts) => parts.iter().any(f),
            Self::InList(x, items) => f(x) || items.iter().any(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_as_expr_lang_does() {
        use Cmp::*;
        // Integers of any width as int64; an unsigned value wraps.
        assert!(compare(Eq, V::U(5), V::I(5)));
        assert!(compare(Lt, V::U(u64::MAX), V::I(0)));
        assert!(compare(Eq, V::U(u64::MAX), V::I(-1)));
        // With a float, each side converts from its own type.
        assert!(compare(Gt, V::U(u64::MAX), V::F(0.0)));
        assert!(compare(Eq, V::I(456), V::F(456.0)));
        assert!(!compare(Eq, V::I(456), V::F(456.8)));
        // NaN: only != holds.
        let nan = V::F(f64::NAN);
        assert!(!compare(Eq, nan, nan) && compare(Ne, nan, nan) && !compare(Lt, nan, V::I(1)));
        // Different kinds are never equal; nil equals only nil.
        assert!(!compare(Eq, V::Str(b"1"), V::I(1)));
        assert!(compare(Ne, V::Str(b"1"), V::I(1)));
        assert!(compare(Eq, V::Nil, V::Nil) && !compare(Eq, V::Str(b""), V::Nil));
        assert!(compare(Lt, V::Str(b"abc"), V::Str(b"abd")));
        assert!(compare(Le, V::Str(b"abc"), V::Str(b"def")));
    }
}
