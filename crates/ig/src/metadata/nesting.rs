//! How deep the flow collections (`[...]`, `{...}`) of a YAML document
//! nest, found in one linear pass before the YAML parser sees the text.
//!
//! Why: the parser under `yaml_serde` (libyaml's algorithm) keeps one
//! "simple key" per open flow level and walks all of them at every token,
//! so a document of n nested `[` costs n² before its recursion limit
//! answers (100 KB of `[` took 71 s in a debug build, 34 s in release).
//! `gadget.yaml` comes from images anyone can publish; a document nesting
//! deeper than [`MAX_FLOW_DEPTH`] is refused here, in time linear in its
//! size.
//!
//! The scan is conservative: it counts a bracket as a flow collection only
//! where YAML reads one (at the start of a value in block context, or
//! anywhere inside a flow collection), and skips comments, quoted scalars
//! and block scalars (`|`, `>`), so a valid document with brackets in its
//! text is never refused. Block nesting needs indentation, which bounds it
//! by the line length; it is left to the parser.
//!
//! Owns: the scan. Does not own: parsing (`yaml_serde`) or the error
//! message's file name (the caller's).

/// Deepest nesting of flow collections accepted; `yaml_serde` refuses
/// deeper than 128 levels of any kind anyway.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Where the scan found a flow collection nested deeper than
/// [`MAX_FLOW_DEPTH`]: 1-based line and column of its opening bracket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooDeep {
    /// Line of the opening bracket, from 1.
    pub line: usize,
    /// Its column, from 1.
    pub column: usize,
}

/// `Err` at the first flow collection deeper than [`MAX_FLOW_DEPTH`].
pub fn check_flow_depth(text: &str) -> Result<(), TooDeep> {
    check(text.as_bytes(), MAX_FLOW_DEPTH)
}

fn check(b: &[u8], limit: usize) -> Result<(), TooDeep> {
    let mut i = 0;
    let mut line = 1;
    let mut line_start = 0;
    let mut depth = 0usize;
    // Block context: could a value (a bracket, a quote, `|`) start here?
    let mut value_start = true;
    let at = |i: usize, line: usize, line_start: usize| TooDeep {
        line,
        column: i - line_start + 1,
    };
    // Indentation of the line at `from`.
    let indent_of = |from: usize| b[from..].iter().take_while(|c| **c == b' ').count();
    while i < b.len() {
        let c = b[i];
        let after_space = i == line_start || matches!(b[i - 1], b' ' | b'\t');
        match c {
            b'\n' => {
                line += 1;
                line_start = i + 1;
                value_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' if after_space => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        if depth > 0 {
            let token_start = after_space || matches!(b[i - 1], b'[' | b'{' | b',' | b':');
            match c {
                b'[' | b'{' => {
                    depth += 1;
                    if depth > limit {
                        return Err(at(i, line, line_start));
                    }
                }
                b']' | b'}' => {
                    depth -= 1;
                    value_start = false;
                }
                b'"' | b'\'' if token_start => {
                    i = skip_quoted(b, i, &mut line, &mut line_start);
                    continue;
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        let indicator = |i: usize| {
            b.get(i + 1)
                .is_none_or(|n| matches!(n, b' ' | b'\t' | b'\r' | b'\n'))
        };
        match c {
            b'[' | b'{' if value_start => {
                depth = 1;
                if depth > limit {
                    return Err(at(i, line, line_start));
                }
            }
            b'"' | b'\'' if value_start => {
                i = skip_quoted(b, i, &mut line, &mut line_start);
                value_start = false;
                continue;
            }
            b'|' | b'>' if value_start => {
                // A block scalar: every following line indented more than
                // this one (or blank) is its text.
                let own = indent_of(line_start);
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                while i < b.len() {
                    let next = i + 1;
                    let rest = &b[next..];
                    let blank = rest
                        .iter()
                        .take_while(|c| **c != b'\n')
                        .all(|c| matches!(c, b' ' | b'\t' | b'\r'));
                    if next >= b.len() || (!blank && indent_of(next) <= own) {
                        break;
                    }
                    line += 1;
                    line_start = next;
                    i = next;
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                }
                continue;
            }
            b'-' | b'?' | b':' if indicator(i) => value_start = true,
            _ => value_start = false,
        }
        i += 1;
    }
    Ok(())
}

/// The index after the quoted scalar opening at `start` (or the end),
/// counting the lines it spans.
fn skip_quoted(b: &[u8], start: usize, line: &mut usize, line_start: &mut usize) -> usize {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\n' => {
                *line += 1;
                *line_start = i + 1;
            }
            b'\\' if q == b'"' => i += 1,
            b'\'' if q == b'\'' => {
                if b.get(i + 1) == Some(&b'\'') {
                    i += 1;
                } else {
                    return i + 1;
                }
            }
            b'"' if q == b'"' => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_collections_are_found_with_their_place() {
        let deep = format!("name: x\nfoo: {}", "[".repeat(65));
        assert_eq!(
            check_flow_depth(&deep),
            Err(TooDeep {
                line: 2,
                column: 6 + 64
            })
        );
        let ok = format!("foo: {}{}", "[".repeat(64), "]".repeat(64));
        assert_eq!(check_flow_depth(&ok), Ok(()));
        let mixed = format!("a:\n  - {}", "{x: [".repeat(40));
        assert!(check_flow_depth(&mixed).is_err());
        // Linear: a megabyte of brackets is answered at once.
        let huge = format!("a: {}", "[".repeat(1 << 20));
        assert!(check_flow_depth(&huge).is_err());
    }

    #[test]
    fn brackets_yaml_does_not_read_as_collections_are_not_counted() {
        let many = |s: &str| s.repeat(100);
        let docs = [
            // Plain scalars, comments, quoted and block scalars.
            format!("description: see {}\n", many("a[1 ")),
            format!("a: b # {}\n", many("[")),
            format!("a: \"{}\"\nb: '{}'''\n", many("[\\\""), many("{")),
            format!(
                "d: |\n  {}\n  more\n\n  {}\ne: [1, 2]\n",
                many("["),
                many("{")
            ),
            format!("d: >-\n    {}\ne: x\n", many("[")),
            format!("list:\n  - key: [\"{}\", '[']\n", many("[")),
        ];
        for d in &docs {
            assert_eq!(check_flow_depth(d), Ok(()), "{d}");
        }
    }
}
