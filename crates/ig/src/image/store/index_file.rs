//! The store's `index.json`, read leniently and written back faithfully.
//!
//! Other tools share this file (upstream `ig` through oras, skopeo, cosign),
//! and a damaged entry must not make the whole store unusable. So each entry
//! of `manifests` is kept as raw JSON next to its parsed descriptor (if it
//! parses); entries we do not understand are carried over untouched when
//! the file is rewritten, and so are unknown top-level fields.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::image::oci::{Descriptor, MEDIA_TYPE_IMAGE_INDEX};

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    raw: Value,
    /// `None` when `raw` is not a valid descriptor.
    pub(crate) desc: Option<Descriptor>,
}

impl Entry {
    fn from_desc(desc: Descriptor) -> Self {
        let raw = serde_json::to_value(&desc).unwrap_or(Value::Null);
        Entry {
            raw,
            desc: Some(desc),
        }
    }

    /// A digest string found in an entry that does not parse as a whole,
    /// so garbage collection can still treat it as a root.
    pub(crate) fn raw_digest(&self) -> Option<&str> {
        self.raw.get("digest").and_then(Value::as_str)
    }

    /// How messages name the entry: its reference, else its digest.
    pub(crate) fn name(&self) -> String {
        let name = self
            .raw
            .get("annotations")
            .and_then(|a| a.get(crate::image::oci::ANNOTATION_REF_NAME))
            .and_then(Value::as_str);
        match (name, self.raw_digest()) {
            (Some(n), _) => n.to_owned(),
            (None, Some(d)) => format!("(unnamed) {d}"),
            (None, None) => "(an entry without a digest)".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct IndexFile {
    pub(crate) entries: Vec<Entry>,
    /// Top-level fields other than schemaVersion, mediaType and manifests.
    extra: Map<String, Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexOut<'a> {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<EntryOut<'a>>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

/// An entry as written: through the typed descriptor when that loses
/// nothing (so fields keep the spec's order, as other tools write them),
/// else the raw JSON as found (`Value` objects sort their keys).
#[derive(Serialize)]
#[serde(untagged)]
enum EntryOut<'a> {
    Typed(&'a Descriptor),
    Raw(&'a Value),
}

impl IndexFile {
    /// Parses `index.json`. Only a file that is not a JSON object, or whose
    /// `manifests` is not an array, is an error.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let mut top: Map<String, Value> = serde_json::from_slice(bytes)?;
        let manifests = match top.remove("manifests") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(serde::de::Error::custom("\"manifests\" is not an array"));
            }
        };
        top.remove("schemaVersion");
        top.remove("mediaType");
        let entries = manifests
            .into_iter()
            .map(|raw| Entry {
                desc: serde_json::from_value(raw.clone()).ok(),
                raw,
            })
            .collect();
        Ok(IndexFile {
            entries,
            extra: top,
        })
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let out = IndexOut {
            schema_version: 2,
            media_type: MEDIA_TYPE_IMAGE_INDEX,
            manifests: self
                .entries
                .iter()
                .map(|e| match &e.desc {
                    Some(d) if serde_json::to_value(d).is_ok_and(|v| v == e.raw) => {
                        EntryOut::Typed(d)
                    }
                    _ => EntryOut::Raw(&e.raw),
                })
                .collect(),
            extra: &self.extra,
        };
        // Serializing Values and plain strings cannot fail.
        serde_json::to_vec(&out).unwrap_or_default()
    }

    /// Parsed descriptors, in file order.
    pub(crate) fn descriptors(&self) -> impl Iterator<Item = &Descriptor> {
        self.entries.iter().filter_map(|e| e.desc.as_ref())
    }

    /// The last entry named `name` (later entries win, as when appending).
    pub(crate) fn find_by_name(&self, name: &str) -> Option<&Descriptor> {
        self.descriptors()
            .filter(|d| d.ref_name() == Some(name))
            .last()
    }

    /// Points `name` at `desc`: the entry already carrying that name is
    /// replaced in place (duplicates dropped), otherwise one is appended.
    pub(crate) fn set(&mut self, name: &str, mut desc: Descriptor) {
        desc.annotations.insert(
            crate::image::oci::ANNOTATION_REF_NAME.to_owned(),
            name.to_owned(),
        );
        let new = Entry::from_desc(desc);
        let mut placed = false;
        self.entries.retain_mut(|e| {
            if e.desc.as_ref().and_then(Descriptor::ref_name) != Some(name) {
                return true;
            }
            if placed {
                return false;
            }
            *e = new.clone();
            placed = true;
            true
        });
        if !placed {
            self.entries.push(new);
        }
    }

    /// Removes every entry named `name`; returns the last one removed.
    pub(crate) fn remove_name(&mut self, name: &str) -> Option<Descriptor> {
        let mut removed = None;
        self.entries.retain(|e| match &e.desc {
            Some(d) if d.ref_name() == Some(name) => {
                removed = Some(d.clone());
                false
            }
            _ => true,
        });
        removed
    }

    /// Removes entries without a name that point at `digest`: left alone
    /// they would keep a removed image's blobs alive forever.
    pub(crate) fn remove_unnamed_with_digest(&mut self, digest: &crate::image::Digest) {
        self.entries.retain(|e| match &e.desc {
            Some(d) => !(d.ref_name().is_none() && d.digest == *digest),
            None => true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::oci::ANNOTATION_REF_NAME;

    #[test]
    fn garbage_entries_and_unknown_fields_survive_a_rewrite() {
        let json = br#"{"schemaVersion":2,"manifests":[
            {"mediaType":"x","digest":"not-a-digest","size":1},
            42,
            {"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,
             "annotations":{"org.opencontainers.image.ref.name":"a"}}
        ],"annotations":{"k":"v"}}"#;
        let mut idx = IndexFile::parse(json).unwrap();
        assert_eq!(idx.entries.len(), 3);
        assert_eq!(idx.descriptors().count(), 1);
        assert_eq!(idx.entries[0].raw_digest(), Some("not-a-digest"));

        let d = idx.find_by_name("a").unwrap().clone();
        idx.set("b", d.clone());
        idx.set("a", d);
        let again = IndexFile::parse(&idx.to_bytes()).unwrap();
        assert_eq!(again.entries.len(), 4);
        assert_eq!(again.extra.get("annotations").unwrap()["k"], "v");
        let names: Vec<_> = again.descriptors().filter_map(|d| d.ref_name()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            again.find_by_name("b").unwrap().annotations[ANNOTATION_REF_NAME],
            "b"
        );
    }

    #[test]
    fn typed_entries_keep_spec_field_order() {
        let mut idx = IndexFile::default();
        let d = Descriptor::for_bytes("application/vnd.oci.image.index.v1+json", b"x");
        idx.set("n", d);
        let text = String::from_utf8(idx.to_bytes()).unwrap();
        assert!(
            text.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"#),
            "{text}"
        );
        assert!(
            text.contains(r#""size":1,"annotations":{"org.opencontainers.image.ref.name":"n"}}"#),
            "{text}"
        );
    }

    #[test]
    fn rejects_non_objects() {
        assert!(IndexFile::parse(b"[]").is_err());
        assert!(IndexFile::parse(b"{\"manifests\":{}}").is_err());
        assert!(IndexFile::parse(b"{").is_err());
        assert_eq!(IndexFile::parse(b"{}").unwrap().entries.len(), 0);
    }
}
