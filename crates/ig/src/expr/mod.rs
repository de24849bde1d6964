//! Filter expressions (`-E/--filter-expr`): the part of the expr language
//! (<https://expr-lang.org>, the library upstream's filter operator uses)
//! that filters need, parsed, type-checked against a data source's schema
//! and compiled once, then evaluated per event without allocating.
//!
//! The language, with expr-lang's syntax, precedence and semantics:
//! `and`/`&&`, `or`/`||`, `not`/`!`, parentheses, `== != < <= > >=`,
//! `in [list]`, `in lo..hi`, `in cidr("10.0.0.0/8", ...)` (upstream's
//! `cidr` function and its `in` overload), the infix `matches` (a regular
//! expression in RE2's syntax with Go's meaning: [`Pattern`]),
//! `contains`, `startsWith`, `endsWith` and their `not` forms (`not in`,
//! `not matches`...), `len()` (characters, as Go counts them), `let name = value; expr`, `;` sequences,
//! `nil`, booleans, numbers (`42`, `0x2a`, `0o52`, `0b101010`, `1_000`,
//! `1.5`, `.5`, `1e3`), strings (`"..."`, `'...'` with escapes, raw
//! `` `...` ``) and comments. Fields are named as the output names them:
//! `proc.comm`, `dst.port`, `k8s.namespace` (or `proc["comm"]`), or, as
//! `--filter` takes them, by a column name one field has (`comm`): a full
//! name or a variable of the expression comes first.
//!
//! What expr-lang has and filters do not (arithmetic, the ternary and
//! `??`, pipes, map literals, indexing, closures, builtins other than
//! `len`) is refused by name, at its position. A regular expression or a
//! `cidr()` argument must be a constant (a literal, or a `let` of one):
//! they are compiled once, here.
//!
//! Errors ([`ExprError`]) carry the position and print the expression's
//! line with a caret under it. Owns no I/O and knows no operator: the
//! filter operator (`operators::filter`) compiles one [`Program`] per data
//! source and calls [`Program::eval`] per event.

mod cidr;
mod compile;
mod eval;
mod lexer;
mod parser;
mod pattern;

use crate::datasource::{Event, Schema};

pub use eval::EvalError;
pub use pattern::Pattern;

/// A byte range of the expression's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The first byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// What kind of mistake an [`ExprError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not the language's syntax.
    Syntax,
    /// The language's, but not a filter's (arithmetic, `?:`, builtins...).
    Unsupported,
    /// A name that is no field, variable or function.
    Unknown,
    /// Operands of the wrong types; an expression that is not a boolean.
    Type,
    /// A regular expression that does not compile.
    Regex,
    /// A bad `cidr()` network, or a constant that is not an IP address.
    Cidr,
}

/// A mistake in an expression, with its position. Displays as the
/// message, then the line of the expression with carets under the
/// position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at {line}:{column}){snippet}")]
pub struct ExprError {
    kind: ErrorKind,
    message: String,
    span: Span,
    line: usize,
    column: usize,
    snippet: String,
}

impl ExprError {
    pub(crate) fn new(kind: ErrorKind, message: String, span: Span, src: &str) -> Self {
        let start = floor_char(src, span.start.min(src.len()));
        let end = floor_char(src, span.end.clamp(start, src.len()));
        let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
        let line = src[..start].matches('\n').count() + 1;
        let column = src[line_start..start].chars().count() + 1;
        let text: String = src[line_start..line_end]
            .chars()
            .map(|c| if c == '\t' { ' ' } else { c })
            .collect();
        let width = src[start..end.min(line_end)].chars().count().max(1);
        let snippet = format!(
            "\n | {text}\n | {}{}",
            " ".repeat(column - 1),
            "^".repeat(width)
        );
        Self {
            kind,
            message,
            span,
            line,
            column,
            snippet,
        }
    }

    /// What kind of mistake it is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the position and the snippet.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where in the expression.
    pub fn span(&self) -> Span {
        self.span
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// An expression compiled for one data source.
#[derive(Clone, Debug)]
pub struct Program {
    root: eval::Node,
    text: String,
}

/// Compile `text` against `schema`: parse, resolve every field to its
/// [`FieldId`](crate::datasource::FieldId), check the types, compile the
/// regular expressions and networks, fold what is constant. The result
/// must be a boolean.
pub fn compile(text: &str, schema: &Schema) -> Result<Program, ExprError> {
    let ast = parser::parse(text)?;
    let root = compile::compile(text, &ast, schema)?;
    Ok(Program {
        root,
        text: text.to_owned(),
    })
}

impl Program {
    /// Does the event pass? An error (a value `in cidr(...)` that is not
    /// an IP address) means it does not, as upstream drops it.
    #[inline]
    pub fn eval(&self, schema: &Schema, ev: &Event) -> Result<bool, EvalError> {
        self.root.test_root(schema, ev)
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Why an evaluation failed, with the expression and a caret.
    pub fn explain(&self, e: &EvalError) -> String {
        ExprError::new(
            ErrorKind::Cidr,
            "the left side of `in cidr(...)` is not an IP address".into(),
            e.span(),
            &self.text,
        )
        .to_string()
    }
}

#[cfg(test)]
mod tests;
