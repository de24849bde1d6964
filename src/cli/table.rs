//! The static tables of the command line (`ig image list`,
//! `ig image inspect`, `ig list-containers`): one renderer, over the
//! `tabled` crate. A header row, then left-aligned columns two spaces
//! apart, no borders and no trailing spaces, as docker prints such lists.
//!
//! Not the event table of `ig run`: that one streams, sizes its columns
//! from `columns.*` annotations before the first event and must not
//! allocate per event (`ig::output::table`).

use tabled::builder::Builder;
use tabled::settings::{Padding, Style};

/// `rows` under `header`, each line ending in `\n`.
pub fn render<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    render_rows(&header, rows)
}

/// [`render`] for a number of columns known at run time (`ig image list`
/// adds PROBLEM when an image is damaged). Every row has `header.len()`
/// cells.
pub fn render_rows<R: AsRef<[String]>>(header: &[&str], rows: &[R]) -> String {
    let mut b = Builder::with_capacity(rows.len() + 1, header.len());
    b.push_record(header.iter().copied());
    for r in rows {
        b.push_record(r.as_ref().iter().map(String::as_str));
    }
    let mut t = b.build();
    t.with(Style::empty()).with(Padding::new(0, 2, 0, 0));
    let mut out = String::new();
    for line in t.to_string().lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_two_spaces_apart_without_trailing_spaces() {
        let rows = [
            ["trace_exec".to_owned(), "latest".to_owned(), String::new()],
            ["x".to_owned(), "v1".to_owned(), "ünïcode".to_owned()],
        ];
        assert_eq!(
            render(["REPOSITORY", "TAG", "CREATED"], &rows),
            "REPOSITORY  TAG     CREATED\ntrace_exec  latest\nx           v1      ünïcode\n"
        );
        assert_eq!(render(["A", "B"], &[]), "A  B\n");
    }
}
