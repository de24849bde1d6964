//! "did you mean trace_exec?": the names of the local store nearest to an
//! image it does not hold, for the `hint:` of a not-found error.
//!
//! Owns the choice of names (edit distance between repositories, the
//! other tags of the same repository); not the wording of the hint
//! (`super::hint`). It reads the store's index only when an error is being
//! reported, never on a path that succeeds.

use std::path::Path;

use ig::image::{Reference, Store};

/// At most this many names are suggested.
const MAX: usize = 3;

/// The stored images nearest to `wanted`, as `ig image list` names them
/// (`trace_exec`, `trace_exec:v1`, `localhost:5000/x:v1`), nearest first.
/// Empty when the store cannot be read or nothing is near.
pub fn nearest(store: &Path, wanted: &Reference) -> Vec<String> {
    let Ok(images) = Store::open_read_only(store).and_then(|s| s.list()) else {
        return Vec::new();
    };
    let want = wanted.short_repository();
    let mut scored: Vec<(usize, String)> = images
        .iter()
        .filter(|i| i.reference != *wanted)
        .filter_map(|i| {
            let repo = i.reference.short_repository();
            let d = strsim::levenshtein(&want, &repo);
            // Near enough to be a typo: two edits, or a third of the name.
            (d <= (want.chars().count() / 3).max(2)).then(|| (d, display(&i.reference)))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(MAX).map(|(_, n)| n).collect()
}

/// A reference as a user would type it: `:latest` left out.
fn display(r: &Reference) -> String {
    match (r.tag(), r.digest()) {
        (Some("latest"), None) => r.short_repository(),
        _ => r.short(),
    }
}

/// `trace_exec`, `trace_exec or trace_open`, `a, b or c`.
pub fn or_list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
