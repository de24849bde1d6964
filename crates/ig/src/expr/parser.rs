//! The syntax tree, parsed as expr-lang parses: precedence climbing over
//! its operator table, `not in`/`not matches`/... as the negation of the
//! operator, chained comparisons (`1 < x < 10` is `1 < x && x < 10`),
//! `let NAME = EXPR; EXPR`, `;` sequences, trailing commas in lists.
//!
//! Precedence, loosest first: `or ||` (10), `and &&` (15), `== != < <= > >=
//! in matches contains startsWith endsWith` (20), `..` (25), `+ -` (30),
//! `* / %` (60), unary `not !` (50), `** ^` (100, right), unary `- +` (90).
//! As in expr-lang, unary `not` binds tighter than a comparison:
//! `not a == b` is `(not a) == b`.
//!
//! What the language has but filters do not (the ternary `?:`, `??`, `|`,
//! `if`, map literals, slices, method calls, optional chaining, closures,
//! bytes literals, every builtin but `len`, functions but `cidr`) is a
//! syntax error that names it, at its position.

use super::lexer::{Kind, Token, is_identifier};
use super::{ErrorKind, ExprError, Span};

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Ast {
    pub node: Node,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Matches,
    Contains,
    StartsWith,
    EndsWith,
    Range,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl BinOp {
    fn from_token(s: &str) -> Option<(Self, u8, bool)> {
        // (operator, precedence, right-associative)
        Some(match s {
            "or" | "||" => (Self::Or, 10, false),
            "and" | "&&" => (Self::And, 15, false),
            "==" => (Self::Eq, 20, false),
            "!=" => (Self::Ne, 20, false),
            "<" => (Self::Lt, 20, false),
            "<=" => (Self::Le, 20, false),
            ">" => (Self::Gt, 20, false),
            ">=" => (Self::Ge, 20, false),
            "in" => (Self::In, 20, false),
            "matches" => (Self::Matches, 20, false),
            "contains" => (Self::Contains, 20, false),
            "startsWith" => (Self::StartsWith, 20, false),
            "endsWith" => (Self::EndsWith, 20, false),
            ".." => (Self::Range, 25, false),
            "+" => (Self::Add, 30, false),
            "-" => (Self::Sub, 30, false),
            "*" => (Self::Mul, 60, false),
            "/" => (Self::Div, 60, false),
            "%" => (Self::Mod, 60, false),
            "**" | "^" => (Self::Pow, 100, true),
            _ => return None,
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Self::Lt | Self::Le | Self::Gt | Self::Ge)
    }

    /// Operators `not` may prefix (`a not in b`).
    fn negatable(s: &str) -> bool {
        matches!(s, "in" | "matches" | "contains" | "startsWith" | "endsWith")
    }

    pub fn spelling(self) -> &'static str {
        match self {
            Self::Or => "or",
            Self::And => "and",
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::In => "in",
            Self::Matches => "matches",
            Self::Contains => "contains",
            Self::StartsWith => "startsWith",
            Self::EndsWith => "endsWith",
            Self::Range => "..",
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
            Self::Mod => "%",
            Self::Pow => "**",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum UnOp {
    Not,
    Neg,
    Plus,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Node {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    /// `a.b` or `a["b"]`.
    Member(Box<Ast>, String),
    Unary(UnOp, Box<Ast>),
    Binary(BinOp, Box<Ast>, Box<Ast>),
    /// `a and b and c` (or `or`): a chain of one of the two, flat, so that
    /// a long one (a generated list of alternatives) nests nothing; the
    /// spans are the operators', one fewer than the operands.
    Logic(BinOp, Vec<Ast>, Vec<Span>),
    /// `len(...)`, `cidr(...)`: the functions filters have.
    Call(String, Vec<Ast>),
    Array(Vec<Ast>),
    Let(String, Box<Ast>, Box<Ast>),
    Seq(Vec<Ast>),
}

/// Expression functions and builtins of expr-lang that filters do not
/// have: named in the error rather than "unknown".
pub(super) const UNSUPPORTED_BUILTINS: &[&str] = &[
    "all",
    "none",
    "any",
    "one",
    "filter",
    "map",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "count",
    "sum",
    "groupBy",
    "sortBy",
    "reduce",
    "type",
    "abs",
    "ceil",
    "floor",
    "round",
    "int",
    "float",
    "string",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "upper",
    "lower",
    "split",
    "splitAfter",
    "replace",
    "repeat",
    "join",
    "indexOf",
    "lastIndexOf",
    "hasPrefix",
    "hasSuffix",
    "max",
    "min",
    "mean",
    "median",
    "toJSON",
    "fromJSON",
    "toBase64",
    "fromBase64",
    "now",
    "duration",
    "date",
    "timezone",
    "first",
    "last",
    "get",
    "take",
    "keys",
    "values",
    "toPairs",
    "fromPairs",
    "reverse",
    "uniq",
    "concat",
    "flatten",
    "sort",
    "bitand",
    "bitor",
    "bitxor",
    "bitnand",
    "bitnot",
    "bitshl",
    "bitshr",
    "bitushr",
];

/// Deepest nesting of parentheses, lists, unary operators and chains of
/// binary ones other than `and`/`or` (which stay flat): a hostile
/// expression must not exhaust the stack. Compiling takes up to ~10 KiB
/// of stack per level in an unoptimized build, so 100 levels fit a test
/// thread's 2 MiB (`expr::tests::deep_or_long_expressions_are_errors_or_work_never_a_stack_overflow`).
const MAX_DEPTH: usize = 100;

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

/// `left OP right` for `and`/`or`: appended to `left` when it is a chain
/// of the same operator (`a and b and c` is one node of three).
fn logic(op: BinOp, left: Ast, right: Ast, op_span: Span) -> Ast {
    match left {
        Ast {
            node: Node::Logic(o, mut items, mut spans),
            span,
        } if o == op => {
            items.push(right);
            spans.push(op_span);
            Ast {
                node: Node::Logic(op, items, spans),
                span,
            }
        }
        left => Ast {
            node: Node::Logic(op, vec![left, right], vec![op_span]),
            span: op_span,
        },
    }
}

pub(super) fn parse(src: &str) -> Result<Ast, ExprError> {
    let tokens = super::lexer::lex(src)?;
    let mut p = Parser {
        src,
        tokens,
        pos: 0,
        depth: 0,
    };
    if p.cur().kind == Kind::Eof {
        return Err(p.error_at(p.cur().span, "the expression is empty".into()));
    }
    let ast = p.sequence()?;
    if p.cur().kind != Kind::Eof {
        return Err(p.unexpected());
    }
    Ok(ast)
}

impl Parser<'_> {
    fn cur(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.cur().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn error_at(&self, span: Span, message: String) -> ExprError {
        ExprError::new(ErrorKind::Syntax, message, span, self.src)
    }

    fn unsupported(&self, span: Span, what: &str) -> ExprError {
        ExprError::new(
            ErrorKind::Unsupported,
            format!("{what} is not supported in filter expressions"),
            span,
            self.src,
        )
    }

    fn unexpected(&self) -> ExprError {
        let t = self.cur();
        self.error_at(t.span, format!("unexpected {}", t.describe()))
    }

    fn expect(&mut self, kind: Kind, value: &str) -> Result<Token, ExprError> {
        if self.cur().is(kind, value) {
            Ok(self.next())
        } else {
            let t = self.cur();
            Err(self.error_at(
                t.span,
                format!("expected {value:?}, found {}", t.describe()),
            ))
        }
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(
                self.cur().span,
                format!("the expression nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    /// `a; b; c` (a trailing `;` is allowed).
    fn sequence(&mut self) -> Result<Ast, ExprError> {
        let first = self.expression(0)?;
        let mut nodes = vec![first];
        while self.cur().is(Kind::Operator, ";") {
            self.next();
            if self.cur().kind == Kind::Eof {
                break;
            }
            nodes.push(self.expression(0)?);
        }
        if nodes.len() == 1 {
            return Ok(nodes.pop().unwrap_or(Ast {
                node: Node::Nil,
                span: Span::new(0, 0),
            }));
        }
        let span = nodes[0].span;
        Ok(Ast {
            node: Node::Seq(nodes),
            span,
        })
    }

    fn expression(&mut self, precedence: u8) -> Result<Ast, ExprError> {
        self.enter()?;
        let r = self.expression_inner(precedence);
        self.depth -= 1;
        r
    }

    fn expression_inner(&mut self, precedence: u8) -> Result<Ast, ExprError> {
        if precedence == 0 && self.cur().is(Kind::Operator, "let") {
            return self.let_binding();
        }
        if precedence == 0 && self.cur().is(Kind::Operator, "if") {
            return Err(self.unsupported(self.cur().span, "if/else"));
        }
        // Each step of a chain (`a == b == c`) nests the tree one level
        // deeper, as a parenthesis would, except `and`/`or`, which stay
        // flat.
        let entered = self.depth;
        let r = self.chain(precedence);
        self.depth = entered;
        r
    }

    fn chain(&mut self, precedence: u8) -> Result<Ast, ExprError> {
        let mut left = self.primary()?;
        loop {
            let op_token = self.cur().clone();
            if op_token.kind != Kind::Operator {
                break;
            }
            let mut negate = None;
            let mut op_token = op_token;
            if op_token.value == "not" {
                let save = self.pos;
                self.next();
                let t = self.cur().clone();
                // Every operator `not` may prefix has precedence 20; a
                // tighter context leaves `not` to its caller.
                if t.kind == Kind::Operator && BinOp::negatable(&t.value) {
                    if 20 >= precedence {
                        negate = Some(op_token.span);
                        op_token = t;
                    } else {
                        self.pos = save;
                        break;
                    }
                } else {
                    return Err(self.unexpected());
                }
            }
            if op_token.value == "|" {
                return Err(self.unsupported(op_token.span, "the pipe operator |"));
            }
            if op_token.value == "??" {
                return Err(self.unsupported(op_token.span, "the ?? operator"));
            }
            let Some((op, prec, right_assoc)) = BinOp::from_token(&op_token.value) else {
                break;
            };
            if prec < precedence {
                break;
            }
            self.next();
            if op.is_comparison() {
                self.enter()?;
                left = self.comparison(left, op, op_token.span, prec)?;
                continue;
            }
            if matches!(op, BinOp::And | BinOp::Or) {
                let right = self.expression(prec + 1)?;
                left = logic(op, left, right, op_token.span);
                continue;
            }
            self.enter()?;
            let right = if right_assoc {
                self.expression(prec)?
            } else {
                self.expression(prec + 1)?
            };
            left = Ast {
                node: Node::Binary(op, Box::new(left), Box::new(right)),
                span: op_token.span,
            };
            if let Some(span) = negate {
                left = Ast {
                    node: Node::Unary(UnOp::Not, Box::new(left)),
                    span,
                };
            }
        }
        if precedence == 0 && self.cur().is(Kind::Operator, "?") {
            return Err(self.unsupported(self.cur().span, "the conditional operator ?:"));
        }
        Ok(left)
    }

    /// `a < b <= c`: `a < b && b <= c`.
    fn comparison(&mut self, left: Ast, op: BinOp, span: Span, prec: u8) -> Result<Ast, ExprError> {
        let (mut left, mut op, mut span) = (left, op, span);
        let mut root: Option<Ast> = None;
        loop {
            let right = self.expression(prec + 1)?;
            let cmp = Ast {
                node: Node::Binary(op, Box::new(left), Box::new(right.clone())),
                span,
            };
            root = Some(match root {
                None => cmp,
                Some(r) => logic(BinOp::And, r, cmp, span),
            });
            left = right;
            let t = self.cur().clone();
            match (t.kind, BinOp::from_token(&t.value)) {
                (Kind::Operator, Some((next, _, _))) if next.is_comparison() => {
                    self.next();
                    op = next;
                    span = t.span;
                }
                _ => break,
            }
        }
        Ok(root.unwrap_or(left))
    }

    fn let_binding(&mut self) -> Result<Ast, ExprError> {
        self.expect(Kind::Operator, "let")?;
        let name = self.cur().clone();
        if name.kind != Kind::Identifier {
            return Err(self.error_at(
                name.span,
                format!(
                    "expected a variable name after let, found {}",
                    name.describe()
                ),
            ));
        }
        self.next();
        self.expect(Kind::Operator, "=")?;
        let value = self.expression(0)?;
        self.expect(Kind::Operator, ";")?;
        let body = self.sequence()?;
        Ok(Ast {
            node: Node::Let(name.value, Box::new(value), Box::new(body)),
            span: name.span,
        })
    }

    fn primary(&mut self) -> Result<Ast, ExprError> {
        let t = self.cur().clone();
        if t.kind == Kind::Operator {
            let unary = match t.value.as_str() {
                "not" | "!" => Some((UnOp::Not, 50)),
                "-" => Some((UnOp::Neg, 90)),
                "+" => Some((UnOp::Plus, 90)),
                _ => None,
            };
            if let Some((op, prec)) = unary {
                self.next();
                let operand = self.expression(prec)?;
                let node = Ast {
                    node: Node::Unary(op, Box::new(operand)),
                    span: t.span,
                };
                return self.postfix(node);
            }
        }
        if t.is(Kind::Bracket, "(") {
            self.next();
            self.enter()?;
            let inner = self.sequence();
            self.depth -= 1;
            let inner = inner?;
            self.expect(Kind::Bracket, ")")?;
            return self.postfix(inner);
        }
        self.secondary()
    }

    fn secondary(&mut self) -> Result<Ast, ExprError> {
        let t = self.cur().clone();
        let span = t.span;
        let node = match t.kind {
            Kind::Identifier => {
                self.next();
                match t.value.as_str() {
                    "true" => {
                        return Ok(Ast {
                            node: Node::Bool(true),
                            span,
                        });
                    }
                    "false" => {
                        return Ok(Ast {
                            node: Node::Bool(false),
                            span,
                        });
                    }
                    "nil" => {
                        return Ok(Ast {
                            node: Node::Nil,
                            span,
                        });
                    }
                    _ if self.cur().is(Kind::Bracket, "(") => self.call(t)?,
                    _ => Ast {
                        node: Node::Ident(t.value),
                        span,
                    },
                }
            }
            Kind::Number => {
                self.next();
                let node = self.number(&t)?;
                return Ok(Ast { node, span });
            }
            Kind::Str => {
                self.next();
                Ast {
                    node: Node::Str(t.value),
                    span,
                }
            }
            Kind::Bytes => return Err(self.unsupported(span, "a bytes literal")),
            Kind::Bracket if t.value == "[" => {
                self.next();
                self.array(span)?
            }
            Kind::Bracket if t.value == "{" => return Err(self.unsupported(span, "a map literal")),
            Kind::Operator if t.value == "#" || t.value == "." => {
                return Err(self.unsupported(span, "a predicate (# or .)"));
            }
            _ => return Err(self.unexpected()),
        };
        self.postfix(node)
    }

    /// expr-lang's number rules: `_` ignored; `0x`, `0b`, `0o` prefixes;
    /// a `.` or `e` makes a float; otherwise decimal (a leading zero is
    /// not octal). Integers are 64-bit signed.
    fn number(&self, t: &Token) -> Result<Node, ExprError> {
        let v: String = t.value.chars().filter(|&c| c != '_').collect();
        let lower = v.to_ascii_lowercase();
        let int = |digits: &str, radix: u32, what: &str| {
            i64::from_str_radix(digits, radix)
                .map(Node::Int)
                .map_err(|e| {
                    self.error_at(t.span, format!("invalid {what} literal {:?}: {e}", t.value))
                })
        };
        if let Some(h) = lower.strip_prefix("0x") {
            int(h, 16, "hex")
        } else if lower.contains(['.', 'e']) {
            match v.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Node::Float(f)),
                Ok(_) => Err(self.error_at(
                    t.span,
                    format!("float literal {:?} is out of range", t.value),
                )),
                Err(e) => {
                    Err(self.error_at(t.span, format!("invalid float literal {:?}: {e}", t.value)))
                }
            }
        } else if let Some(b) = lower.strip_prefix("0b") {
            int(b, 2, "binary")
        } else if let Some(o) = lower.strip_prefix("0o") {
            int(o, 8, "octal")
        } else {
            int(&v, 10, "integer")
        }
    }

    fn call(&mut self, name: Token) -> Result<Ast, ExprError> {
        let span = name.span;
        match name.value.as_str() {
            "len" | "cidr" => {}
            n if UNSUPPORTED_BUILTINS.contains(&n) => {
                return Err(self.unsupported(span, &format!("the function {n}()")));
            }
            n => {
                return Err(ExprError::new(
                    ErrorKind::Unknown,
                    format!("unknown function {n}() (filters have len() and cidr())"),
                    span,
                    self.src,
                ));
            }
        }
        let args = self.list("(", ")")?;
        Ok(Ast {
            node: Node::Call(name.value, args),
            span,
        })
    }

    /// `open expr, expr, ... close` (a trailing comma is allowed); the
    /// current token is `open` (or was, for arrays).
    fn list(&mut self, open: &str, close: &str) -> Result<Vec<Ast>, ExprError> {
        if open != "[" {
            self.expect(Kind::Bracket, open)?;
        }
        self.enter()?;
        let mut items = Vec::new();
        while !self.cur().is(Kind::Bracket, close) {
            if !items.is_empty() {
                self.expect(Kind::Operator, ",")?;
                if self.cur().is(Kind::Bracket, close) {
                    break;
                }
            }
            items.push(self.expression(0)?);
        }
        self.depth -= 1;
        self.expect(Kind::Bracket, close)?;
        Ok(items)
    }

    fn array(&mut self, span: Span) -> Result<Ast, ExprError> {
        let items = self.list("[", "]")?;
        Ok(Ast {
            node: Node::Array(items),
            span,
        })
    }

    /// `.name`, `["name"]`.
    fn postfix(&mut self, mut node: Ast) -> Result<Ast, ExprError> {
        loop {
            let t = self.cur().clone();
            if t.is(Kind::Operator, "?.") {
                return Err(self.unsupported(t.span, "optional chaining ?."));
            }
            if t.is(Kind::Operator, ".") {
                self.next();
                let prop = self.cur().clone();
                let ok = prop.kind == Kind::Identifier
                    || (prop.kind == Kind::Operator && is_identifier(&prop.value));
                if ok {
                    self.next();
                } else {
                    return Err(self.error_at(
                        prop.span,
                        format!("expected a field name after '.', found {}", prop.describe()),
                    ));
                }
                if self.cur().is(Kind::Bracket, "(") {
                    return Err(self.unsupported(prop.span, "a method call"));
                }
                self.enter()?;
                node = Ast {
                    node: Node::Member(Box::new(node), prop.value),
                    span: prop.span,
                };
                continue;
            }
            if t.is(Kind::Bracket, "[") {
                self.next();
                let index = if self.cur().is(Kind::Operator, ":") {
                    None
                } else {
                    Some(self.expression(0)?)
                };
                if self.cur().is(Kind::Operator, ":") {
                    return Err(self.unsupported(t.span, "slicing [a:b]"));
                }
                self.expect(Kind::Bracket, "]")?;
                match index {
                    Some(Ast {
                        node: Node::Str(name),
                        ..
                    }) => {
                        self.enter()?;
                        node = Ast {
                            node: Node::Member(Box::new(node), name),
                            span: t.span,
                        };
                    }
                    _ => {
                        return Err(
                            self.unsupported(t.span, "indexing with [..] (other than [\"field\"])")
                        );
                    }
                }
                continue;
            }
            return Ok(node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compact rendering of the tree: `(op a b)`.
    fn show(a: &Ast) -> String {
        match &a.node {
            Node::Nil => "nil".into(),
            Node::Bool(b) => b.to_string(),
            Node::Int(i) => i.to_string(),
            Node::Float(f) => format!("{f:?}"),
            Node::Str(s) => format!("{s:?}"),
            Node::Ident(i) => i.clone(),
            Node::Member(b, p) => format!("{}.{p}", show(b)),
            Node::Unary(op, x) => format!("({op:?} {})", show(x)),
            Node::Binary(op, l, r) => format!("({} {} {})", op.spelling(), show(l), show(r)),
            Node::Logic(op, items, _) => format!(
                "({} {})",
                op.spelling(),
                items.iter().map(show).collect::<Vec<_>>().join(" ")
            ),
            Node::Call(n, args) => format!(
                "{n}({})",
                args.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            Node::Array(items) => format!(
                "[{}]",
                items.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            Node::Let(n, v, b) => format!("(let {n} {} {})", show(v), show(b)),
            Node::Seq(items) => format!(
                "(seq {})",
                items.iter().map(show).collect::<Vec<_>>().join(" ")
            ),
        }
    }

    fn p(src: &str) -> String {
        show(&parse(src).unwrap_or_else(|e| panic!("{src}: {e}")))
    }

    #[test]
    fn precedence_and_associativity_follow_expr_lang() {
        let cases = [
            ("a or b and c", "(or a (and b c))"),
            ("a || b && c || d", "(or a (and b c) d)"),
            ("a and b == c", "(and a (== b c))"),
            ("not a == b", "(== (Not a) b)"),
            ("!a and b", "(and (Not a) b)"),
            ("not (a == b)", "(Not (== a b))"),
            ("a not in [1, 2,]", "(Not (in a [1, 2]))"),
            ("a not matches 'x' or b", "(or (Not (matches a \"x\")) b)"),
            ("1 < x < 10", "(and (< 1 x) (< x 10))"),
            ("1 <= x > y == z", "(== (and (<= 1 x) (> x y)) z)"),
            ("-1 < x", "(< (Neg 1) x)"),
            ("x in 1..5", "(in x (.. 1 5))"),
            ("proc.creds.uid == 0", "(== proc.creds.uid 0)"),
            ("proc[\"comm\"] == 'a'", "(== proc.comm \"a\")"),
            ("proc.in == 1", "(== proc.in 1)"),
            ("let x = [1]; let y = 2; x", "(let x [1] (let y 2 x))"),
            ("a; b;", "(seq a b)"),
            (
                "len(a) > 0 and b in cidr('10.0.0.0/8', \"::1/128\")",
                "(and (> len(a) 0) (in b cidr(\"10.0.0.0/8\", \"::1/128\")))",
            ),
            ("2 ** 3 ** 2", "(** 2 (** 3 2))"),
            (
                "0x1F == 31 and 1_000 == 1e3 and .5 == 0.5 and 0b11 == 0o3",
                "(and (== 31 31) (== 1000 1000.0) (== 0.5 0.5) (== 3 3))",
            ),
            ("0123 == 123", "(== 123 123)"),
        ];
        for (src, want) in cases {
            assert_eq!(p(src), want, "{src}");
        }
    }

    #[test]
    fn syntax_errors_and_unsupported_syntax_point_at_their_token() {
        let cases: &[(&str, &str, usize)] = &[
            ("", "the expression is empty", 0),
            ("a ==", "unexpected end of the expression", 4),
            ("a == == b", "unexpected \"==\"", 5),
            ("(a", "expected \")\"", 2),
            ("a not b", "unexpected \"b\"", 6),
            ("let = 1; a", "expected a variable name", 4),
            ("let x = 1 a", "expected \";\"", 10),
            (
                "a ? b : c",
                "the conditional operator ?: is not supported",
                2,
            ),
            ("a ?? b", "the ?? operator is not supported", 2),
            ("a | upper()", "the pipe operator | is not supported", 2),
            ("upper(a)", "the function upper() is not supported", 0),
            ("foo(a)", "unknown function foo()", 0),
            ("a.b()", "a method call is not supported", 2),
            ("a[0]", "indexing", 1),
            ("a[1:2]", "slicing", 1),
            ("{a: 1}", "a map literal", 0),
            ("b'x' == a", "a bytes literal", 0),
            ("99999999999999999999 > a", "invalid integer literal", 0),
            ("1e400 > a", "out of range", 0),
            ("a. == 1", "expected a field name", 3),
        ];
        for (src, want, at) in cases {
            let e = parse(src).unwrap_err();
            assert!(e.to_string().contains(want), "{src}: {e}");
            assert_eq!(e.span().start, *at, "{src}: {e}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}a{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(
            parse(&deep)
                .unwrap_err()
                .to_string()
                .contains("nests deeper")
        );
        let nots = format!("{}a", "!".repeat(100_000));
        assert!(parse(&nots).is_err());
        let list = format!("{}1{}", "[".repeat(50_000), "]".repeat(50_000));
        assert!(parse(&list).is_err());
    }
}
