//! The templates of `params.custom.<key>.patch` values: the subset of Go's
//! `text/template` that gadgets use, parsed by us.
//!
//! Upstream evaluates every string of a patch as a Go template with two
//! functions in its data: `getParamValue` (the raw value of a parameter, by
//! full name: `custom.interval`, `operator.oci.ebpf.pid`) and `getConfig`
//! (a dotted path into the gadget's configuration, `gadget.yaml` as patched
//! so far). Gadgets call them as `{{call .getParamValue "KEY"}}` and
//! `{{call .getConfig "KEY"}}`. That, literal text around it, and spaces
//! inside the braces are what this module accepts; anything else (pipes,
//! `if`, variables, trim markers `{{-`, comments, other functions) is
//! refused with the column where it starts, so `ig image build` can name
//! the file and line instead of a run misbehaving later.
//!
//! Pure: no I/O. Owns parsing and evaluation; does not own where values
//! come from (the caller passes them) nor locating the template in its
//! file (`super::patch`).

use std::fmt;

/// One function a template may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    /// `getParamValue`: a parameter's value, as the user typed it.
    ParamValue,
    /// `getConfig`: a value of the gadget's configuration.
    Config,
}

impl Func {
    /// Its name in templates (`getParamValue`).
    pub fn name(self) -> &'static str {
        match self {
            Self::ParamValue => "getParamValue",
            Self::Config => "getConfig",
        }
    }
}

/// A piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Text copied as it is.
    Text(String),
    /// `{{call .FUNC "KEY"}}`.
    Call {
        /// The function called.
        func: Func,
        /// Its argument.
        key: String,
    },
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// Text and calls, in order.
    pub parts: Vec<Part>,
}

/// Why a string is not a template we run; `column` counts characters of
/// the string from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// Where, in characters from 1.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for TemplateError {}

const SUPPORTED: &str =
    r#"ig supports {{call .getParamValue "KEY"}} and {{call .getConfig "KEY"}} in patches"#;

impl Template {
    /// Parse `s`. A string without `{{` is one literal part.
    pub fn parse(s: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = s;
        let mut offset = 0usize;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let at = offset + open;
            let body_start = open + 2;
            let Some(close) = rest[body_start..].find("}}") else {
                return Err(err(s, at, "unclosed action: `{{` without `}}`"));
            };
            let body = &rest[body_start..body_start + close];
            parts.push(parse_action(s, at, body)?);
            let consumed = body_start + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if let Some(i) = rest.find("}}") {
            return Err(err(s, offset + i, "`}}` without `{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// Whether the string had no action at all.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The calls, in order.
    pub fn calls(&self) -> impl Iterator<Item = (Func, &str)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Call { func, key } => Some((*func, key.as_str())),
            Part::Text(_) => None,
        })
    }

    /// The text, with each call replaced by what `value(func, key)` says
    /// (upstream's functions return "" for what they do not know).
    pub fn render(&self, mut value: impl FnMut(Func, &str) -> String) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Call { func, key } => out.push_str(&value(*func, key)),
            }
        }
        out
    }
}

/// An error at byte `at` of `s`, reported as a character column.
fn err(s: &str, at: usize, message: impl Into<String>) -> TemplateError {
    TemplateError {
        column: s[..at.min(s.len())].chars().count() + 1,
        message: message.into(),
    }
}

/// The inside of `{{ ... }}`, which starts at byte `at` of `s`.
fn parse_action(s: &str, at: usize, body: &str) -> Result<Part, TemplateError> {
    if body.starts_with('-') || body.ends_with('-') {
        return Err(err(
            s,
            at,
            format!("trim markers ({{{{- and -}}}}) are not supported; {SUPPORTED}"),
        ));
    }
    if body.trim_start().starts_with("/*") {
        return Err(err(
            s,
            at,
            format!("comments are not supported; {SUPPORTED}"),
        ));
    }
    let words = split_words(body).map_err(|m| err(s, at, m))?;
    let found = || format!("{{{{{body}}}}}");
    match words.as_slice() {
        [call, func, key] if call == "call" => {
            let func = match func.as_str() {
                ".getParamValue" => Func::ParamValue,
                ".getConfig" => Func::Config,
                other => {
                    return Err(err(
                        s,
                        at,
                        format!(
                            "{} calls {other}, which ig does not offer; {SUPPORTED}",
                            found()
                        ),
                    ));
                }
            };
            let key = unquote(key).ok_or_else(|| {
                err(
                    s,
                    at,
                    format!("{}: the key must be a quoted string; {SUPPORTED}", found()),
                )
            })?;
            if key.is_empty() {
                return Err(err(s, at, format!("{}: empty key", found())));
            }
            Ok(Part::Call { func, key })
        }
        _ => Err(err(
            s,
            at,
            format!("{} is not supported; {SUPPORTED}", found()),
        )),
    }
}

/// Split an action into words, keeping quoted strings whole (with their
/// quotes).
fn split_words(body: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut w = String::new();
        if c == '"' || c == '`' {
            let quote = c;
            w.push(c);
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                w.push(c);
                if quote == '"' && c == '\\' {
                    if let Some(n) = chars.next() {
                        w.push(n);
                    }
                    continue;
                }
                if c == quote {
                    closed = true;
                    break;
                }
            }
            if !closed {
                return Err(format!("unterminated string {w}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '"' || c == '`' {
                    break;
                }
                w.push(c);
                chars.next();
            }
        }
        words.push(w);
    }
    Ok(words)
}

/// A Go string literal: `"..."` with the usual escapes, or a raw `` `...` ``.
fn unquote(w: &str) -> Option<String> {
    if let Some(raw) = w.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        return Some(raw.to_owned());
    }
    let inner = w.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            't' => out.push('\t'),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(func: Func, key: &str) -> Part {
        Part::Call {
            func,
            key: key.into(),
        }
    }

    #[test]
    fn the_subset_gadgets_use() {
        let t = Template::parse(r#"{{call .getParamValue "custom.interval"}}"#).unwrap();
        assert_eq!(t.parts, [call(Func::ParamValue, "custom.interval")]);
        let t = Template::parse(
            r#"http://{{ call .getConfig "target.host" }}:{{call  .getConfig `target.port`}}/api"#,
        )
        .unwrap();
        assert_eq!(
            t.parts,
            [
                Part::Text("http://".into()),
                call(Func::Config, "target.host"),
                Part::Text(":".into()),
                call(Func::Config, "target.port"),
                Part::Text("/api".into()),
            ]
        );
        let rendered = t.render(|f, k| format!("<{}:{k}>", f.name()));
        assert_eq!(
            rendered,
            "http://<getConfig:target.host>:<getConfig:target.port>/api"
        );
        let t = Template::parse("5s").unwrap();
        assert!(t.is_literal());
        assert_eq!(t.render(|_, _| unreachable!()), "5s");
        assert_eq!(Template::parse("").unwrap().parts, []);
    }

    #[test]
    fn everything_else_is_refused_with_a_column() {
        let cases: &[(&str, usize, &str)] = &[
            (r#"x{{.invalidTemplate"#, 2, "unclosed action"),
            (
                r#"{{call .nonExistentFunction "test"}}"#,
                1,
                ".nonExistentFunction",
            ),
            (r#"{{call .getConfig}}"#, 1, "is not supported"),
            (r#"ab{{if .x}}y{{end}}"#, 3, "is not supported"),
            (r#"{{- call .getConfig "a" }}"#, 1, "trim markers"),
            (
                r#"{{call .getConfig "a" | printf "%s"}}"#,
                1,
                "is not supported",
            ),
            (r#"{{call .getConfig a}}"#, 1, "quoted string"),
            (r#"{{call .getConfig "a}}"#, 1, "unterminated string"),
            (r#"{{call .getConfig ""}}"#, 1, "empty key"),
            (r#"{{/* c */}}"#, 1, "comments"),
            (r#"é}}"#, 2, "without `{{`"),
            (r#"{{call .getConfig "\q"}}"#, 1, "quoted string"),
        ];
        for (s, column, needle) in cases {
            let e = Template::parse(s).unwrap_err();
            assert_eq!(e.column, *column, "{s}: {e}");
            assert!(e.message.contains(needle), "{s}: {e}");
        }
    }
}
