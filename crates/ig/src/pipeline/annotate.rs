//! Annotations given at run time (`ig run --annotate`, upstream's
//! `operator.oci.annotate`), applied to the run's data sources and fields
//! as if `gadget.yaml` had them; pure.
//!
//! Syntax (upstream's): `SUBJECT:KEY=VALUE`, where SUBJECT is a data
//! source (`exec`) or one of its fields (`exec.proc.comm`: the first dot
//! ends the data source's name). The value may hold `:` and `=`. A flag
//! value is a comma-separated list of such entries; `\,` is a comma
//! inside a value and `\\` a backslash (upstream's `SplitStringSlice`),
//! so `blockio.latency:metrics.boundaries=1\,10\,100` is one entry.
//!
//! When (see [`super::Setup`]): a data source's annotations are set when
//! it is declared and again when the chains freeze; a field's when it is
//! added (through the schema builder's pending annotations, as
//! `gadget.yaml`'s) and again at the freeze. So every operator instantiated
//! after the one that declares a data source or adds a field reads the
//! given values (`columns.hidden`, `metrics.*`, `cli.*`), and they win over
//! defaults operators set. Then every subject is checked against the
//! final schemas, unreferenced data sources included: an unknown data
//! source or field is an error naming the known ones (upstream accepts it
//! silently).
//!
//! Does not own: which annotations mean what (each operator reads its own).

/// One annotation to apply: `source[.field]:key=value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotation {
    /// The data source.
    pub source: String,
    /// The field's full name within it (`proc.comm`), or `None` for the
    /// data source itself.
    pub field: Option<String>,
    /// The annotation's key (`columns.hidden`).
    pub key: String,
    /// Its value (may be empty).
    pub value: String,
}

/// Why an annotation cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnotateError {
    /// Not `subject:key=value`.
    #[error(
        "annotation {given:?}: {reason} (expected DATASOURCE:KEY=VALUE or DATASOURCE.FIELD:KEY=VALUE)"
    )]
    Syntax {
        /// The entry as given.
        given: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The run has no such data source.
    #[error(
        "annotation {given:?}: no data source {source_name} (the gadget's data sources: {known})"
    )]
    NoSource {
        /// The entry as given.
        given: String,
        /// The data source named.
        source_name: String,
        /// The run's data sources, comma-separated.
        known: String,
    },
    /// The data source has no such field.
    #[error(
        "annotation {given:?}: data source {source_name} has no field {field} (its fields: {known})"
    )]
    NoField {
        /// The entry as given.
        given: String,
        /// The data source.
        source_name: String,
        /// The field named.
        field: String,
        /// Its fields, comma-separated.
        known: String,
    },
}

impl Annotation {
    /// Parse one entry, `subject:key=value` (no list splitting).
    pub fn parse(entry: &str) -> Result<Self, AnnotateError> {
        let bad = |reason| AnnotateError::Syntax {
            given: entry.to_owned(),
            reason,
        };
        let (subject, assignment) = entry.split_once(':').ok_or_else(|| bad("no ':'"))?;
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| bad("no '=' after the subject"))?;
        if subject.is_empty() {
            return Err(bad("empty subject"));
        }
        if key.is_empty() {
            return Err(bad("empty key"));
        }
        if key.contains(':') {
            return Err(bad("':' in the key"));
        }
        let (source, field) = match subject.split_once('.') {
            Some((s, f)) => (s, Some(f)),
            None => (subject, None),
        };
        if source.is_empty() || field.is_some_and(|f| f.split('.').any(str::is_empty)) {
            return Err(bad("empty data source or field name"));
        }
        Ok(Self {
            source: source.to_owned(),
            field: field.map(str::to_owned),
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }

    /// Parse a flag value: entries separated by `,`, with `\,` a comma
    /// and `\\` a backslash inside an entry (any other `\` stays). Empty
    /// entries are skipped.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, AnnotateError> {
        split_list(list)
            .iter()
            .filter(|e| !e.is_empty())
            .map(|e| Self::parse(e))
            .collect()
    }

    /// The entry as the user wrote it (for messages).
    pub fn subject(&self) -> String {
        match &self.field {
            Some(f) => format!("{}.{f}", self.source),
            None => self.source.clone(),
        }
    }

    pub(super) fn given(&self) -> String {
        format!("{}:{}={}", self.subject(), self.key, self.value)
    }
}

/// Upstream's `SplitStringSlice`: `,` separates, `\,` and `\\` escape.
fn split_list(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ (',' | '\\')) => cur.push(n),
                Some(n) => {
                    cur.push('\\');
                    cur.push(n);
                }
                None => cur.push('\\'),
            },
            ',' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_a_source_or_a_field_and_values_may_hold_colons() {
        let a = Annotation::parse("exec:metrics.collect=true").unwrap();
        assert_eq!(
            (a.source.as_str(), a.field, a.key.as_str(), a.value.as_str()),
            ("exec", None, "metrics.collect", "true")
        );
        let a = Annotation::parse("exec.proc.comm:columns.width=a:b=c").unwrap();
        assert_eq!(a.source, "exec");
        assert_eq!(a.field.as_deref(), Some("proc.comm"));
        assert_eq!(a.key, "columns.width");
        assert_eq!(a.value, "a:b=c");
        assert_eq!(Annotation::parse("exec:k=").unwrap().value, "");
        for bad in [
            "exec",
            "exec:k",
            ":k=v",
            "exec:=v",
            "exec.:k=v",
            ".f:k=v",
            "exec.a..b:k=v",
        ] {
            assert!(Annotation::parse(bad).is_err(), "{bad}");
        }
        // "a:b:c=d": upstream refuses it too (the key cannot hold ':').
        assert!(Annotation::parse("a:b:c=d").is_err());
    }

    #[test]
    fn lists_split_on_commas_that_are_not_escaped() {
        let l = Annotation::parse_list(
            r"blockio.latency:metrics.boundaries=1\,10\,100,blockio:metrics.collect=true,",
        )
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].value, "1,10,100");
        assert_eq!(l[1].key, "metrics.collect");
        assert_eq!(
            split_list(r"a\\,b\x"),
            ["a\\".to_owned(), "b\\x".to_owned()]
        );
        assert_eq!(Annotation::parse_list("").unwrap(), []);
        let e = Annotation::parse_list("exec:a=1,oops").unwrap_err();
        assert_eq!(
            e.to_string(),
            "annotation \"oops\": no ':' (expected DATASOURCE:KEY=VALUE or DATASOURCE.FIELD:KEY=VALUE)"
        );
    }
}
