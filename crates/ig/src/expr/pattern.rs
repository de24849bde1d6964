//! Regular expressions with the meaning Go's `regexp` gives them, on the
//! `regex` crate: what `matches` (and `-F`'s `~`) compile once and test
//! per event. Upstream compiles both with Go's `regexp`, and the two
//! engines share RE2's syntax but not all of its meaning:
//!
//! - Go's `\d`, `\s`, `\w` and `\b` are ASCII (`[0-9]`, `[\t\n\f\r ]`,
//!   `[0-9A-Za-z_]`); the `regex` crate's are Unicode. The pattern is
//!   rewritten, using the `regex-syntax` parser's spans, so that they are
//!   ASCII here too (`\w` matches `é` in neither).
//! - Go reads each byte that is not UTF-8 as U+FFFD, which `.` and `[^a]`
//!   match; the `regex` crate's Unicode classes never match such a byte.
//!   Such a value is matched through a copy where each of those bytes is
//!   U+FFFD, in a buffer the pattern keeps (it grows to the longest such
//!   value, then allocates no more); UTF-8 values, nearly all, are matched
//!   in place.
//! - What Go refuses is refused: the flags `u`, `x` and `R`, a
//!   repetition count above 1000. What Go reads otherwise is rewritten:
//!   `\<` and `\>` are those characters there, `\b{start}` is `\b` then
//!   the text `{start}`.
//!
//! Patterns are bounded (size, nesting), so that a careless one
//! (`(a{1000}){1000}`) fails with a message rather than compile for
//! seconds into hundreds of MiB. Owns no I/O.

use std::cell::RefCell;

use regex::bytes::{Regex, RegexBuilder};
use regex_syntax::ast::{self, Ast, ClassPerlKind, ClassSetItem};

/// Bytes a compiled pattern (and its lazy DFA cache) may take: ten times
/// less than the `regex` crate's default, more than any filter needs.
const SIZE_LIMIT: usize = 1 << 20;
/// Nesting depth of groups and repetitions.
const NEST_LIMIT: u32 = 64;
/// Go's largest repetition count (`a{1000}`).
const MAX_REPEAT: u32 = 1000;

/// A compiled regular expression with Go's meaning.
#[derive(Clone, Debug)]
pub struct Pattern {
    re: Regex,
    /// The text of a value that is not UTF-8, as Go reads it.
    scratch: RefCell<Vec<u8>>,
}

impl Pattern {
    /// Compile `pattern`; the error is the reason, one line.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let parsed = ast::parse::ParserBuilder::new()
            .nest_limit(NEST_LIMIT)
            .build()
            .parse(pattern)
            .map_err(|e| e.kind().to_string())?;
        let edits = ast::visit(&parsed, GoMeaning::default())?;
        let mut go = String::with_capacity(pattern.len() + 16 * edits.len());
        let mut at = 0;
        for (span, with) in edits {
            go.push_str(&pattern[at..span.start.offset]);
            go.push_str(with);
            at = span.end.offset;
        }
        go.push_str(&pattern[at..]);
        let re = RegexBuilder::new(&go)
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(SIZE_LIMIT)
            .nest_limit(NEST_LIMIT)
            .build()
            .map_err(|e| last_line(&e.to_string()))?;
        Ok(Self {
            re,
            scratch: RefCell::new(Vec::new()),
        })
    }

    /// Does `text` contain a match, as Go's `MatchString` says?
    #[inline]
    pub fn is_match(&self, text: &[u8]) -> bool {
        if text.is_ascii() || std::str::from_utf8(text).is_ok() {
            return self.re.is_match(text);
        }
        let mut buf = self.scratch.borrow_mut();
        buf.clear();
        for chunk in text.utf8_chunks() {
            buf.extend_from_slice(chunk.valid().as_bytes());
            for _ in chunk.invalid() {
                buf.extend_from_slice("\u{FFFD}".as_bytes());
            }
        }
        self.re.is_match(&buf)
    }
}

/// The number of characters of `text` as Go counts them
/// (`utf8.RuneCountInString`, expr-lang's `len` of a string): each byte
/// that is not part of a UTF-8 character counts as one.
pub(super) fn go_len(text: &[u8]) -> usize {
    if text.is_ascii() {
        return text.len();
    }
    text.utf8_chunks()
        .map(|c| c.valid().chars().count() + c.invalid().len())
        .sum()
}

/// The regex crate's messages are several lines with a caret of their
/// own; the last line is the reason.
fn last_line(message: &str) -> String {
    message
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// The rewrites that give a pattern Go's meaning: (where, what instead).
#[derive(Default)]
struct GoMeaning {
    edits: Vec<(ast::Span, &'static str)>,
}

/// Go's Perl classes, outside brackets.
fn perl_class(c: &ast::ClassPerl) -> &'static str {
    match (&c.kind, c.negated) {
        (ClassPerlKind::Digit, false) => "[0-9]",
        (ClassPerlKind::Digit, true) => "[^0-9]",
        (ClassPerlKind::Space, false) => r"[\t\n\f\r ]",
        (ClassPerlKind::Space, true) => r"[^\t\n\f\r ]",
        (ClassPerlKind::Word, false) => "[0-9A-Za-z_]",
        (ClassPerlKind::Word, true) => "[^0-9A-Za-z_]",
    }
}

/// The same inside brackets (`[\d.]`), where a negation must be spelled
/// as the ranges of the complement.
fn perl_items(c: &ast::ClassPerl) -> &'static str {
    match (&c.kind, c.negated) {
        (ClassPerlKind::Digit, false) => "0-9",
        (ClassPerlKind::Digit, true) => r"\x00-\x2F\x3A-\x{10FFFF}",
        (ClassPerlKind::Space, false) => r"\t\n\f\r ",
        (ClassPerlKind::Space, true) => r"\x00-\x08\x0B\x0E-\x1F\x21-\x{10FFFF}",
        (ClassPerlKind::Word, false) => "0-9A-Za-z_",
        (ClassPerlKind::Word, true) => r"\x00-\x2F\x3A-\x40\x5B-\x5E\x60\x7B-\x{10FFFF}",
    }
}

fn check_flags(flags: &ast::Flags) -> Result<(), String> {
    for item in &flags.items {
        if let ast::FlagsItemKind::Flag(f) = &item.kind {
            let name = match f {
                ast::Flag::Unicode => 'u',
                ast::Flag::IgnoreWhitespace => 'x',
                ast::Flag::CRLF => 'R',
                _ => continue,
            };
            return Err(format!(
                "flag {name} is not in RE2's syntax (its flags are i, m, s and U)"
            ));
        }
    }
    Ok(())
}

impl ast::Visitor for GoMeaning {
    type Output = Vec<(ast::Span, &'static str)>;
    type Err = String;

    fn finish(self) -> Result<Self::Output, String> {
        Ok(self.edits)
    }

    fn visit_pre(&mut self, a: &Ast) -> Result<(), String> {
        match a {
            Ast::ClassPerl(c) => self.edits.push((c.span, perl_class(c))),
            Ast::Assertion(x) => match x.kind {
                ast::AssertionKind::WordBoundary => self.edits.push((x.span, r"(?-u:\b)")),
                ast::AssertionKind::NotWordBoundary => self.edits.push((x.span, r"(?-u:\B)")),
                // Go has no such assertions: there `\<` and `\>` are the
                // characters, and `\b{start}` is `\b` then `{start}`.
                ast::AssertionKind::WordBoundaryStartAngle => self.edits.push((x.span, "<")),
                ast::AssertionKind::WordBoundaryEndAngle => self.edits.push((x.span, ">")),
                ast::AssertionKind::WordBoundaryStart => {
                    self.edits.push((x.span, r"(?-u:\b)\{start\}"));
                }
                ast::AssertionKind::WordBoundaryEnd => {
                    self.edits.push((x.span, r"(?-u:\b)\{end\}"));
                }
                ast::AssertionKind::WordBoundaryStartHalf => {
                    self.edits.push((x.span, r"(?-u:\b)\{start-half\}"));
                }
                ast::AssertionKind::WordBoundaryEndHalf => {
                    self.edits.push((x.span, r"(?-u:\b)\{end-half\}"));
                }
                _ => {}
            },
            Ast::Flags(f) => check_flags(&f.flags)?,
            Ast::Group(g) => {
                if let ast::GroupKind::NonCapturing(f) = &g.kind {
                    check_flags(f)?;
                }
            }
            Ast::Repetition(r) => {
                if let ast::RepetitionKind::Range(
                    ast::RepetitionRange::Exactly(n)
                    | ast::RepetitionRange::AtLeast(n)
                    | ast::RepetitionRange::Bounded(_, n),
                ) = r.op.kind
                    && n > MAX_REPEAT
                {
                    return Err(format!(
                        "repetition count {n} is above RE2's limit of {MAX_REPEAT}"
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), String> {
        if let ClassSetItem::Perl(c) = item {
            self.edits.push((c.span, perl_items(c)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, text: &[u8]) -> bool {
        Pattern::new(p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .is_match(text)
    }

    /// Each result is Go's (`regexp.MustCompile(p).MatchString(text)`).
    #[test]
    fn perl_classes_and_word_boundaries_are_ascii_as_in_go() {
        let cases: &[(&str, &str, bool)] = &[
            (r"^\w$", "é", false),
            (r"^\W$", "é", true),
            (r"^\w+$", "abc_09", true),
            (r"^\d$", "٣", false),
            (r"^\D$", "٣", true),
            (r"^\s$", "\u{a0}", false),
            (r"^\s$", "\u{b}", false),
            (r"^\S$", "\u{b}", true),
            (r"^\s$", "\u{c}", true),
            (r"^[\w.]+$", "a.b", true),
            (r"^[\w.]+$", "é.b", false),
            (r"^[\W]$", "é", true),
            (r"^[^\w]$", "é", true),
            (r"^[\D]$", "a", true),
            (r"^[\D]$", "5", false),
            (r"^[\S]$", " ", false),
            (r"^[\S]$", "\u{b}", true),
            (r"\bx\b", "éxé", true),
            (r"\Bx\B", "éxé", false),
            (r"\bx", "ax", false),
            (r"(?i)^É$", "é", true),
            (r"^\pL$", "é", true),
            (r"^\\w$", r"\w", true),
        ];
        for (p, text, want) in cases {
            assert_eq!(m(p, text.as_bytes()), *want, "{p} on {text:?}");
        }
    }

    /// Go reads each byte that is not UTF-8 as U+FFFD.
    #[test]
    fn bytes_that_are_not_utf8_match_as_replacement_characters() {
        let text = b"a\xffb\xe2\x82";
        assert!(m("^a.b..$", text));
        assert!(!m("^a.b.$", text));
        assert!(m("^a[^x]b", text));
        assert!(m("\u{FFFD}b", text));
        assert!(!m(r"^a\xFFb", text));
        // The buffer is reused: a shorter value after a longer one.
        let p = Pattern::new("^.$").unwrap();
        assert!(!p.is_match(b"\xff\xff\xff"));
        assert!(p.is_match(b"\xff"));
        assert!(p.is_match("é".as_bytes()));
    }

    #[test]
    fn what_go_refuses_is_refused() {
        for (p, why) in [
            ("(?x)a b", "flag x"),
            ("(?u)a", "flag u"),
            ("(?R:a)", "flag R"),
            ("a{1001}", "above RE2's limit of 1000"),
            ("a{2,1001}", "above RE2's limit"),
            ("(", "unclosed group"),
            ("(a{1000}){1000}", "size limit"),
            (&format!("{}a{}", "(".repeat(200), ")".repeat(200)), "nest"),
        ] {
            let e = Pattern::new(p).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
            assert!(!e.contains('\n'), "{p}: {e}");
        }
        assert!(m("a{1000}", "a".repeat(1000).as_bytes()));
        // Go reads these as characters.
        assert!(m(r"^\<a\>$", b"<a>"));
        assert!(m(r"^x\b{start}$", b"x{start}"));
        assert!(m(r"^x\b{end-half}$", b"x{end-half}"));
        assert!(!m(r"^x\b{end}$", b"xy{end}"));
        assert!(m("(?imsU:a)", b"A"));
    }

    #[test]
    fn length_counts_characters_as_go() {
        assert_eq!(go_len(b""), 0);
        assert_eq!(go_len(b"cat"), 3);
        assert_eq!(go_len("é→x".as_bytes()), 3);
        // One per byte that is not UTF-8; a truncated character is one
        // per byte too.
        assert_eq!(go_len(b"a\xffb\xe2\x82"), 5);
        assert_eq!(go_len(b"\xed\xa0\x80"), 3);
    }
}
