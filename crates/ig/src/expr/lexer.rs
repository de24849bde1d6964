//! Tokens of the expression language, with expr-lang's lexical rules:
//! `//` and `/* */` comments, identifiers of letters, digits, `_` and `$`,
//! numbers in decimal, hex (`0x`), octal (`0o`) and binary (`0b`) with `_`
//! separators and floats (`1.5`, `.5`, `1e3`), strings in single or double
//! quotes with escapes, raw strings in backticks (a doubled backtick is
//! one backtick), and the operator spellings expr-lang has.
//!
//! Numbers are kept as text here; the parser converts them as expr-lang
//! does (decimal `0123` is 123, not octal).

use super::{ErrorKind, ExprError, Span};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Kind {
    Identifier,
    Number,
    /// A string literal, unescaped.
    Str,
    /// `b"..."`: parsed so it can be refused by name.
    Bytes,
    Operator,
    Bracket,
    Eof,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Token {
    pub kind: Kind,
    /// The text (identifiers, numbers, operators, brackets) or the
    /// unescaped value (strings).
    pub value: String,
    pub span: Span,
}

impl Token {
    pub fn is(&self, kind: Kind, value: &str) -> bool {
        self.kind == kind && self.value == value
    }

    /// How the token reads in a message.
    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Eof => "end of the expression".into(),
            Kind::Str => format!("string {:?}", self.value),
            _ => format!("{:?}", self.value),
        }
    }
}

/// Words the lexer turns into operators rather than identifiers.
const WORD_OPERATORS: &[&str] = &[
    "not",
    "in",
    "or",
    "and",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "let",
    "if",
    "else",
];

/// Letters, `_` and `$` start identifiers (expr-lang's `IsAlphabetic`).
pub(super) fn is_alphabetic(c: char) -> bool {
    c == '_' || c == '$' || c.is_alphabetic()
}

fn is_alphanumeric(c: char) -> bool {
    is_alphabetic(c) || c.is_numeric()
}

/// A valid identifier: what may follow `.` even when the lexer made an
/// operator of it (`proc.in`).
pub(super) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_alphabetic) && chars.all(is_alphanumeric)
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    tokens: Vec<Token>,
}

/// Split `src` into tokens, the last one [`Kind::Eof`].
pub(super) fn lex(src: &str) -> Result<Vec<Token>, ExprError> {
    let mut l = Lexer {
        src,
        pos: 0,
        tokens: Vec::new(),
    };
    l.run()?;
    let end = src.len();
    l.tokens.push(Token {
        kind: Kind::Eof,
        value: String::new(),
        span: Span::new(end, end),
    });
    Ok(l.tokens)
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut c = self.src[self.pos..].chars();
        c.next();
        c.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn accept(&mut self, set: &str) -> bool {
        match self.peek() {
            Some(c) if set.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, set: &str) {
        while self.accept(set) {}
    }

    fn push(&mut self, kind: Kind, start: usize) {
        let value = self.src[start..self.pos].to_owned();
        self.push_value(kind, value, start);
    }

    fn push_value(&mut self, kind: Kind, value: String, start: usize) {
        self.tokens.push(Token {
            kind,
            value,
            span: Span::new(start, self.pos),
        });
    }

    fn error(&self, start: usize, message: String) -> ExprError {
        ExprError::new(
            ErrorKind::Syntax,
            message,
            Span::new(start, self.pos.max(start)),
            self.src,
        )
    }

    fn run(&mut self) -> Result<(), ExprError> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            if c.is_whitespace() {
                self.bump();
                continue;
            }
            match c {
                '\'' | '"' => {
                    self.bump();
                    let s = self.string(c, start)?;
                    self.push_value(Kind::Str, s, start);
                }
                '`' => {
                    self.bump();
                    let s = self.raw_string(start)?;
                    self.push_value(Kind::Str, s, start);
                }
                'b' | 'B' if matches!(self.peek2(), Some('\'' | '"')) => {
                    self.bump();
                    let q = self.bump().unwrap_or('"');
                    self.string(q, start)?;
                    self.push(Kind::Bytes, start);
                }
                '0'..='9' => self.number(start)?,
                '.' if self.peek2().is_some_and(|d| d.is_ascii_digit()) => self.number(start)?,
                '.' => {
                    self.bump();
                    self.accept(".");
                    self.push(Kind::Operator, start);
                }
                '?' => {
                    self.bump();
                    self.accept(".?");
                    self.push(Kind::Operator, start);
                }
                '/' => {
                    self.bump();
                    if self.accept("/") {
                        while let Some(c) = self.bump() {
                            if c == '\n' {
                                break;
                            }
                        }
                    } else if self.accept("*") {
                        loop {
                            match self.bump() {
                                None => return Err(self.error(start, "unclosed comment".into())),
                                Some('*') if self.accept("/") => break,
                                Some(_) => {}
                            }
                        }
                    } else {
                        self.push(Kind::Operator, start);
                    }
                }
                '#' => {
                    self.bump();
                    self.accept("#");
                    self.push(Kind::Operator, start);
                }
                '|' => {
                    self.bump();
                    self.accept("|");
                    self.push(Kind::Operator, start);
                }
                ':' => {
                    self.bump();
                    self.accept(":");
                    self.push(Kind::Operator, start);
                }
                '(' | '[' | '{' | ')' | ']' | '}' => {
                    self.bump();
                    self.push(Kind::Bracket, start);
                }
                ',' | ';' | '%' | '+' | '-' | '^' => {
                    self.bump();
                    self.push(Kind::Operator, start);
                }
                '&' | '!' | '=' | '*' | '<' | '>' => {
                    self.bump();
                    self.accept("&=*");
                    self.push(Kind::Operator, start);
                }
                c if is_alphanumeric(c) => {
                    while self.peek().is_some_and(is_alphanumeric) {
                        self.bump();
                    }
                    let word = &self.src[start..self.pos];
                    let kind = if WORD_OPERATORS.contains(&word) {
                        Kind::Operator
                    } else {
                        Kind::Identifier
                    };
                    self.push(kind, start);
                }
                c => {
                    self.bump();
                    return Err(self.error(start, format!("unexpected character {c:?}")));
                }
            }
        }
        Ok(())
    }

    /// expr-lang's number scan: digits of the base (with `_`), an optional
    /// fraction (not when `..` follows: `1..5` is a range) and exponent,
    /// and nothing alphanumeric right after.
    fn number(&mut self, start: usize) -> Result<(), ExprError> {
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        let before_dot = self.pos;
        if self.accept(".") {
            if self.peek() == Some('.') {
                self.pos = before_dot;
                self.push(Kind::Number, start);
                return Ok(());
            }
            self.accept_run(digits);
        }
        if self.accept("eE") {
            self.accept("+-");
            self.accept_run(digits);
        }
        if self.peek().is_some_and(is_alphanumeric) {
            self.bump();
            return Err(self.error(
                start,
                format!("bad number syntax: {:?}", &self.src[start..self.pos]),
            ));
        }
        self.push(Kind::Number, start);
        Ok(())
    }

    /// The rest of a quoted string (the opening quote is read), unescaped.
    /// Escapes: `\a \b \f \n \r \t \v \\`, the quote itself, `\ooo`
    /// (three octal digits, at most `\377`), `\xhh`, `\uhhhh`, `\u{h…}`
    /// (one to six hex digits), `\Uhhhhhhhh`. A code point given by an
    /// escape is written as UTF-8 (`"\xff"` is `ÿ`, two bytes), as
    /// expr-lang does. A raw carriage return reads as a newline.
    fn string(&mut self, quote: char, start: usize) -> Result<String, ExprError> {
        let mut out = String::new();
        loop {
            let at = self.pos;
            let Some(c) = self.bump() else {
                return Err(self.error(start, "string literal not terminated".into()));
            };
            match c {
                c if c == quote => return Ok(out),
                '\n' => {
                    self.pos = at;
                    return Err(self.error(start, "string literal not terminated".into()));
                }
                '\r' => {
                    self.accept("\n");
                    out.push('\n');
                }
                '\\' => {
                    let e = self.escape(quote).map_err(|m| self.error(at, m))?;
                    out.push(e);
                }
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self, quote: char) -> Result<char, String> {
        let bad = || "invalid escape sequence in string".to_owned();
        let Some(c) = self.bump() else {
            return Err(bad());
        };
        let simple = match c {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' => Some('\\'),
            c if c == quote => Some(c),
            _ => None,
        };
        if let Some(s) = simple {
            return Ok(s);
        }
        let value = match c {
            '0'..='7' => {
                let d1 = self.bump().filter(|d| d.is_digit(8)).ok_or_else(bad)?;
                let d2 = self.bump().filter(|d| d.is_digit(8)).ok_or_else(bad)?;
                if c > '3' {
                    return Err(bad());
                }
                [c, d1, d2]
                    .iter()
                    .fold(0, |v, d| v * 8 + d.to_digit(8).unwrap_or(0))
            }
            'x' => self.hex(2).ok_or_else(bad)?,
            'U' => self.hex(8).ok_or_else(bad)?,
            'u' if self.accept("{") => {
                let mut v = 0u32;
                let mut n = 0;
                loop {
                    match self.bump() {
                        Some('}') if n > 0 => break,
                        Some(d) if n < 6 && d.is_ascii_hexdigit() => {
                            v = v * 16 + d.to_digit(16).unwrap_or(0);
                            n += 1;
                        }
                        _ => return Err(bad()),
                    }
                }
                v
            }
            'u' => self.hex(4).ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        if value > 0x10_FFFF {
            return Err(bad());
        }
        // A surrogate is not a character: Go writes U+FFFD for it.
        Ok(char::from_u32(value).unwrap_or('\u{FFFD}'))
    }

    fn hex(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = v.checked_mul(16)? + self.bump()?.to_digit(16)?;
        }
        Some(v)
    }

    /// The rest of a backtick string: no escapes, newlines allowed, a
    /// doubled backtick is one backtick.
    fn raw_string(&mut self, start: usize) -> Result<String, ExprError> {
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error(start, "string literal not terminated".into())),
                Some('`') if self.accept("`") => out.push('`'),
                Some('`') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Kind, String)> {
        lex(src)
            .unwrap()
            .into_iter()
            .map(|t| (t.kind, t.value))
            .collect()
    }

    #[test]
    fn operators_words_and_numbers() {
        use Kind::*;
        let t = |k: Kind, v: &str| (k, v.to_owned());
        assert_eq!(
            kinds("proc.comm not in [1,2] && a!=b||!c"),
            [
                t(Identifier, "proc"),
                t(Operator, "."),
                t(Identifier, "comm"),
                t(Operator, "not"),
                t(Operator, "in"),
                t(Bracket, "["),
                t(Number, "1"),
                t(Operator, ","),
                t(Number, "2"),
                t(Bracket, "]"),
                t(Operator, "&&"),
                t(Identifier, "a"),
                t(Operator, "!="),
                t(Identifier, "b"),
                t(Operator, "||"),
                t(Operator, "!"),
                t(Identifier, "c"),
                t(Eof, ""),
            ]
        );
        assert_eq!(
            kinds("1..5 .5 1_000 0x1F 1e3 k8s $env // c\n/* d */ ?? ?. |"),
            [
                t(Number, "1"),
                t(Operator, ".."),
                t(Number, "5"),
                t(Number, ".5"),
                t(Number, "1_000"),
                t(Number, "0x1F"),
                t(Number, "1e3"),
                t(Identifier, "k8s"),
                t(Identifier, "$env"),
                t(Operator, "??"),
                t(Operator, "?."),
                t(Operator, "|"),
                t(Eof, ""),
            ]
        );
    }

    #[test]
    fn strings_and_escapes() {
        let s = |src: &str| lex(src).map(|t| t[0].value.clone());
        assert_eq!(s(r#""a\"b\n\t\\""#).unwrap(), "a\"b\n\t\\");
        assert_eq!(s(r"'it\'s'").unwrap(), "it's");
        assert_eq!(
            s(r#""\x41\101\u00e9\u{1F600}\U0001F600""#).unwrap(),
            "AAé😀😀"
        );
        // A code point, not a byte: expr-lang writes U+00FF as UTF-8.
        assert_eq!(s(r#""\xff""#).unwrap().as_bytes(), "ÿ".as_bytes());
        assert_eq!(s("`a\\n``b`").unwrap(), "a\\n`b");
        assert_eq!(s("'a\rb'").unwrap(), "a\nb");
        for bad in [
            r#""\'""#,
            r#""\q""#,
            r#""\400""#,
            r#""\x4""#,
            r#""\u{}""#,
            r#""\U00110000""#,
            "\"a\nb\"",
            "\"abc",
            "`abc",
            "/* open",
            "1a",
            "0x1G",
            "@",
        ] {
            assert!(lex(bad).is_err(), "{bad:?}");
        }
    }
}
