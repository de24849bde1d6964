//! Instance specs: upstream's manifest of gadget instances (`ig run -f`,
//! `gadgetctl run -f`), one YAML document per instance:
//!
//! ```yaml
//! apiVersion: 1
//! kind: instance-spec
//! image: trace_exec
//! name: execs            # optional: ^[a-z0-9-_]{1,32}$
//! id: 0123…              # optional: 32 lowercase hex digits
//! tags: [a, b]           # optional, no commas
//! nodes: [node-1]        # optional (a cluster's; ignored here)
//! paramValues:           # full parameter names, or keys
//!   operator.oci.ebpf.pid: "1234"
//! ```
//!
//! Pure: text in, checked specs out ([`parse`]), and the name each
//! instance runs under ([`instance_names`]). Reading the file, fetching a
//! URL and running the instances are the caller's.

use std::collections::{BTreeMap, BTreeSet};

/// The `apiVersion` of the specs we read.
pub const API_VERSION: u64 = 1;

/// The `kind` of an instance spec.
pub const KIND: &str = "instance-spec";

/// Longest instance name.
pub const MAX_NAME: usize = 32;

/// One instance of a manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceSpec {
    /// The gadget image.
    pub image: String,
    /// The instance's name, if the spec gives one.
    pub name: Option<String>,
    /// The instance's id (32 hex digits), if the spec gives one.
    pub id: Option<String>,
    /// Free-form labels.
    pub tags: Vec<String>,
    /// The cluster nodes it is meant for (a cluster's; not used locally).
    pub nodes: Vec<String>,
    /// Parameter values by full name (or key).
    pub param_values: BTreeMap<String, String>,
}

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML, or not shaped as an instance spec.
    #[error("document {entry}")]
    Yaml {
        /// Which document (1 for the first).
        entry: usize,
        /// Why.
        #[source]
        source: yaml_serde::Error,
    },
    /// A document of another kind.
    #[error("document {entry}: kind {kind:?} is not {KIND:?}")]
    Kind {
        /// Which document.
        entry: usize,
        /// The kind it has.
        kind: String,
    },
    /// A document of another version.
    #[error("document {entry}: apiVersion {version} is not {API_VERSION}")]
    ApiVersion {
        /// Which document.
        entry: usize,
        /// The version it has.
        version: String,
    },
    /// No image.
    #[error("document {entry}: it names no image")]
    NoImage {
        /// Which document.
        entry: usize,
    },
    /// A name that breaks the rule.
    #[error(
        "document {entry}: instance name {name:?} is not 1 to {MAX_NAME} of a-z, 0-9, '-' and '_'"
    )]
    Name {
        /// Which document.
        entry: usize,
        /// The name.
        name: String,
    },
    /// Two instances of one name.
    #[error("document {entry}: instance name {name:?} is already taken by document {first}")]
    DuplicateName {
        /// Which document.
        entry: usize,
        /// The name.
        name: String,
        /// The document that took it first.
        first: usize,
    },
    /// An id that is not 32 lowercase hex digits.
    #[error("document {entry}: instance id {id:?} is not 32 lowercase hex digits")]
    Id {
        /// Which document.
        entry: usize,
        /// The id.
        id: String,
    },
    /// A tag with a comma.
    #[error("document {entry}: tag {tag:?} has a comma")]
    Tag {
        /// Which document.
        entry: usize,
        /// The tag.
        tag: String,
    },
    /// Nothing to run.
    #[error("the manifest holds no instance spec")]
    Empty,
}

/// A document as written (checked into an [`InstanceSpec`] by [`parse`]).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    #[serde(default, deserialize_with = "scalar")]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default, deserialize_with = "scalar_map")]
    param_values: BTreeMap<String, String>,
}

/// A YAML scalar of any type as its text (`pid: 1234`, `flag: true`);
/// null as empty.
struct ScalarText;

impl serde::de::Visitor<'_> for ScalarText {
    type Value = String;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_bool<E>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_unit<E>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_none<E>(self) -> Result<String, E> {
        Ok(String::new())
    }
}

struct Text(String);

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarText).map(Text)
    }
}

fn scalar<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(Text::deserialize_from(d)?))
}

fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let m: Option<BTreeMap<String, Text>> = serde::Deserialize::deserialize(d)?;
    Ok(m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

impl Text {
    fn deserialize_from<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        <Text as serde::Deserialize>::deserialize(d).map(|t| t.0)
    }
}

/// Whether `name` may name an instance: 1 to 32 of `a-z`, `0-9`, `-`,
/// `_` (upstream's rule).
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Whether `id` may identify an instance: 32 lowercase hex digits.
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The instance specs of `text`, one per non-empty YAML document, checked
/// (kind, apiVersion, image, name, id and tag rules). At least one.
pub fn parse(text: &str) -> Result<Vec<InstanceSpec>, ManifestError> {
    let mut specs = Vec::new();
    for (i, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let entry = i + 1;
        let raw: Option<Raw> = serde::Deserialize::deserialize(doc)
            .map_err(|source| ManifestError::Yaml { entry, source })?;
        let Some(raw) = raw else { continue };
        let kind = raw.kind.unwrap_or_default();
        if kind != KIND {
            return Err(ManifestError::Kind { entry, kind });
        }
        let version = raw.api_version.unwrap_or_default();
        if version.trim().parse::<u64>().ok() != Some(API_VERSION) {
            return Err(ManifestError::ApiVersion { entry, version });
        }
        let image = raw.image.filter(|i| !i.trim().is_empty());
        let Some(image) = image else {
            return Err(ManifestError::NoImage { entry });
        };
        let name = raw.name.filter(|n| !n.is_empty());
        if let Some(n) = &name
            && !is_valid_name(n)
        {
            return Err(ManifestError::Name {
                entry,
                name: n.clone(),
            });
        }
        let id = raw.id.filter(|i| !i.is_empty());
        if let Some(id) = &id
            && !is_valid_id(id)
        {
            return Err(ManifestError::Id {
                entry,
                id: id.clone(),
            });
        }
        if let Some(tag) = raw.tags.iter().find(|t| t.contains(',')) {
            return Err(ManifestError::Tag {
                entry,
                tag: tag.clone(),
            });
        }
        specs.push((
            entry,
            InstanceSpec {
                image: image.trim().to_owned(),
                name,
                id,
                tags: raw.tags,
                nodes: raw.nodes,
                param_values: raw.param_values,
            },
        ));
    }
    if specs.is_empty() {
        return Err(ManifestError::Empty);
    }
    // Names given twice are refused here, where the documents are known.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (entry, s) in &specs {
        if let Some(n) = &s.name {
            if let Some(first) = seen.get(n.as_str()) {
                return Err(ManifestError::DuplicateName {
                    entry: *entry,
                    name: n.clone(),
                    first: *first,
                });
            }
            seen.insert(n, *entry);
        }
    }
    Ok(specs.into_iter().map(|(_, s)| s).collect())
}

/// The name each instance runs under: its own, else its image's name
/// (`ghcr.io/x/trace_exec:v1` → `trace_exec`, made to fit the rule), with
/// `-2`, `-3`… when taken. Distinct, and each valid.
pub fn instance_names(specs: &[InstanceSpec]) -> Vec<String> {
    let mut taken: BTreeSet<String> = specs.iter().filter_map(|s| s.name.clone()).collect();
    specs
        .iter()
        .map(|s| {
            if let Some(n) = &s.name {
                return n.clone();
            }
            let base = name_of_image(&s.image);
            let mut n = 1;
            loop {
                let suffix = if n == 1 {
                    String::new()
                } else {
                    format!("-{n}")
                };
                let mut candidate = base.clone();
                candidate.truncate(MAX_NAME - suffix.len());
                candidate.push_str(&suffix);
                if taken.insert(candidate.clone()) {
                    return candidate;
                }
                n += 1;
            }
        })
        .collect()
}

/// The last path component of an image reference, without tag or
/// digest, lowercased, other characters as `-`.
fn name_of_image(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    let no_tag = last.split(':').next().unwrap_or(last);
    let name: String = no_tag
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME)
        .collect();
    if name.is_empty() {
        "instance".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_documents_each_an_instance() {
        let specs = parse(
            "apiVersion: 1\nkind: instance-spec\nimage: trace_exec\nname: execs\n\
             tags: [a, b]\nparamValues:\n  operator.oci.ebpf.pid: 1234\n  operator.filter.filter: proc.comm==cat\n\
             ---\n---\napiVersion: \"1\"\nkind: instance-spec\nimage: ghcr.io/x/trace_open:v1\n\
             id: 0123456789abcdef0123456789abcdef\nnodes: [n1]\n",
        )
        .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].image, "trace_exec");
        assert_eq!(specs[0].name.as_deref(), Some("execs"));
        assert_eq!(specs[0].tags, ["a", "b"]);
        assert_eq!(
            specs[0].param_values["operator.oci.ebpf.pid"], "1234",
            "a number is its text"
        );
        assert_eq!(
            specs[0].param_values["operator.filter.filter"],
            "proc.comm==cat"
        );
        assert_eq!(specs[1].name, None);
        assert_eq!(
            specs[1].id.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(instance_names(&specs), ["execs", "trace_open"]);
    }

    #[test]
    fn what_breaks_the_rules_is_refused_with_its_document() {
        let head = "apiVersion: 1\nkind: instance-spec\n";
        let cases: &[(&str, &str)] = &[
            (
                "apiVersion: 1\nkind: instance\nimage: x\n",
                "document 1: kind \"instance\"",
            ),
            (
                "apiVersion: 2\nkind: instance-spec\nimage: x\n",
                "apiVersion 2 is not 1",
            ),
            ("kind: instance-spec\nimage: x\n", "apiVersion  is not 1"),
            ("apiVersion: 1\nkind: instance-spec\n", "names no image"),
            (
                "apiVersion: 1\nkind: instance-spec\nimage: x\nname: Big\n",
                "\"Big\"",
            ),
            (
                "apiVersion: 1\nkind: instance-spec\nimage: x\nname: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
                "is not 1 to 32",
            ),
            (
                "apiVersion: 1\nkind: instance-spec\nimage: x\nid: xyz\n",
                "instance id \"xyz\"",
            ),
            (
                "apiVersion: 1\nkind: instance-spec\nimage: x\ntags: [\"a,b\"]\n",
                "has a comma",
            ),
            (
                "apiVersion: 1\nkind: instance-spec\nimage: x\nparamValue: {}\n",
                "unknown field",
            ),
            ("", "no instance spec"),
            ("---\n---\n", "no instance spec"),
            (": : :\n", "document 1"),
        ];
        for (text, want) in cases {
            let e = crate::run::error_chain(&parse(text).unwrap_err());
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let dup = format!("{head}image: a\nname: x\n---\n{head}image: b\nname: x\n");
        let e = parse(&dup).unwrap_err().to_string();
        assert_eq!(
            e,
            "document 2: instance name \"x\" is already taken by document 1"
        );
        let second_bad = format!("{head}image: a\n---\n{head}name: y\n");
        assert!(
            parse(&second_bad)
                .unwrap_err()
                .to_string()
                .starts_with("document 2:")
        );
    }

    #[test]
    fn names_come_from_images_and_never_clash() {
        let spec = |image: &str, name: Option<&str>| InstanceSpec {
            image: image.into(),
            name: name.map(str::to_owned),
            ..InstanceSpec::default()
        };
        let names = instance_names(&[
            spec("trace_exec", None),
            spec("ghcr.io/org/trace_exec:v1", None),
            spec("x", Some("trace_exec-3")),
            spec("localhost:5000/Top.File@sha256:ab", None),
            spec("trace_exec", None),
            spec(&"a".repeat(40), None),
            spec(&"a".repeat(40), None),
        ]);
        assert_eq!(
            names,
            [
                "trace_exec",
                "trace_exec-2",
                "trace_exec-3",
                "top-file",
                "trace_exec-4",
                "a".repeat(32).as_str(),
                format!("{}-2", "a".repeat(30)).as_str(),
            ]
        );
        assert!(names.iter().all(|n| is_valid_name(n)));
    }
}
