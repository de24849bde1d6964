//! Untrusted text in messages: what a tar header, a registry's answer, an
//! image's annotations or a user's argument says reaches error messages,
//! and must neither drive the terminal (an escape sequence in a file name
//! can rewrite the screen, hide a line or fake a `hint:`) nor flood it (a
//! 100,000-character reference echoed whole).
//!
//! Owns: [`Echo`] (and [`EchoBare`], unquoted), the one way a piece of untrusted text is put in a
//! message (quoted, every control or invisible formatting character
//! escaped as Rust escapes it, cut after [`ECHO_MAX_CHARS`] characters
//! with the number cut said), and [`escape_message`], the safety net the
//! CLI's printer runs over every whole line it writes (escapes control
//! characters but keeps the message's own line breaks and tabs). Does not
//! own: where messages go (the CLI's logger).

use std::borrow::Cow;
use std::fmt;

/// Most characters of one piece of untrusted text a message shows; the
/// rest is counted, not shown.
pub const ECHO_MAX_CHARS: usize = 200;

/// Untrusted text as a message shows it: in double quotes, escaped as
/// [`str::escape_debug`] does (`\u{1b}`, `\n`, `\"`, invisible formatting
/// characters such as U+202E), and cut after [`ECHO_MAX_CHARS`]
/// characters: `"aaaa"… (99800 more characters)`.
#[derive(Debug, Clone, Copy)]
pub struct Echo<'a>(pub &'a str);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = self.0.char_indices().nth(ECHO_MAX_CHARS).map(|(i, _)| i);
        match cut {
            None => write!(f, "{:?}", self.0),
            Some(i) => {
                let (shown, rest) = self.0.split_at(i);
                write!(f, "{shown:?}… ({} more characters)", rest.chars().count())
            }
        }
    }
}

/// [`Echo`] without the quotes, for text that is the rest of a sentence
/// (a registry's error message): `blob backend down`.
#[derive(Debug, Clone, Copy)]
pub struct EchoBare<'a>(pub &'a str);

impl fmt::Display for EchoBare<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = self.0.char_indices().nth(ECHO_MAX_CHARS).map(|(i, _)| i);
        let (shown, rest) = self.0.split_at(cut.unwrap_or(self.0.len()));
        write!(f, "{}", shown.escape_debug())?;
        if !rest.is_empty() {
            write!(f, "… ({} more characters)", rest.chars().count())?;
        }
        Ok(())
    }
}

/// Whether `c` would act on a terminal rather than show: C0 and C1
/// controls and DEL, and the bidirectional overrides and isolates that
/// reorder what follows them.
fn acts_on_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `msg` with every character that would act on a terminal escaped
/// (`\u{1b}`), except line breaks and tabs, which a message of ours may
/// hold (a caret line under an expression, a verifier log). The printer's
/// last step, whatever the message quoted.
pub fn escape_message(msg: &str) -> Cow<'_, str> {
    let keep = |c: char| c == '\n' || c == '\t' || !acts_on_terminal(c);
    if msg.chars().all(keep) {
        return Cow::Borrowed(msg);
    }
    let mut out = String::with_capacity(msg.len() + 16);
    for c in msg.chars() {
        if keep(c) {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_escapes_and_truncates() {
        assert_eq!(Echo("plain").to_string(), "\"plain\"");
        assert_eq!(
            Echo("a\x1b[2Jb\nc\u{202e}d\"").to_string(),
            "\"a\\u{1b}[2Jb\\nc\\u{202e}d\\\"\""
        );
        let long = "é".repeat(ECHO_MAX_CHARS + 5);
        let shown = Echo(&long).to_string();
        assert!(shown.ends_with("\"… (5 more characters)"), "{shown}");
        assert_eq!(shown.matches('é').count(), ECHO_MAX_CHARS);
        let exact = "x".repeat(ECHO_MAX_CHARS);
        assert_eq!(Echo(&exact).to_string(), format!("\"{exact}\""));
        assert_eq!(EchoBare("down\x1b[0m").to_string(), "down\\u{1b}[0m");
        assert_eq!(
            EchoBare(&long).to_string(),
            format!("{}… (5 more characters)", "é".repeat(ECHO_MAX_CHARS))
        );
    }

    #[test]
    fn messages_keep_their_lines_and_lose_their_escapes() {
        assert!(matches!(escape_message("a\n\tb"), Cow::Borrowed(_)));
        assert_eq!(
            escape_message("x\x1b[31my\rz\u{7f}\u{9b}\u{2067}"),
            "x\\u{1b}[31my\\u{d}z\\u{7f}\\u{9b}\\u{2067}"
        );
    }
}
