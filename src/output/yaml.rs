//! YAML output (`-o yaml`): each event is a document preceded by `---`,
//! nested like the JSON output; an array (snapshot) is one document holding
//! a sequence.
//!
//! Strings are always double-quoted (JSON escaping is valid YAML), so a
//! value such as `no` or `1e3` never changes type on the way; keys are
//! plain unless YAML would misread them.

use super::json::{Node, plan, write_str, write_value};
use super::sink::{SharedWriter, Sink};
use crate::datasource::{Event, FieldId, Schema};
use crate::pipeline::{Flow, Handler, HandlerError};

/// The tree of the JSON printer with YAML keys (`name:`).
enum YNode {
    Leaf { id: FieldId, key: Vec<u8> },
    Object { key: Vec<u8>, children: Vec<YNode> },
}

/// Prints events as YAML (`-o yaml`): a document per event, a sequence per
/// snapshot.
pub struct YamlPrinter {
    /// `instance: "NAME"`, first in every mapping when runs share the
    /// output (`ig run -f`); else empty.
    instance: Vec<u8>,
    nodes: Vec<YNode>,
    sink: Sink,
}

impl YamlPrinter {
    /// Print `fields` of `schema` into `out`.
    pub fn with_fields(schema: &Schema, fields: &[FieldId], out: SharedWriter) -> Self {
        Self {
            instance: Vec::new(),
            nodes: convert(plan(schema, fields)),
            sink: Sink::new(out),
        }
    }

    /// Put `instance: NAME` first in every mapping: the run's name when
    /// several runs share the output.
    #[must_use]
    pub fn with_instance(mut self, name: &str) -> Self {
        let mut line = key("instance");
        line.push(b' ');
        write_str(&mut line, name.as_bytes());
        self.instance = line;
        self
    }
}

/// A key as YAML reads it back: plain when it is a simple name that no
/// YAML version takes for a boolean, null or number; quoted otherwise.
fn key(name: &str) -> Vec<u8> {
    let simple = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let reserved = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"]
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name));
    let mut k = Vec::new();
    if simple && !reserved {
        k.extend_from_slice(name.as_bytes());
    } else {
        write_str(&mut k, name.as_bytes());
    }
    k.push(b':');
    k
}

fn convert(nodes: Vec<Node>) -> Vec<YNode> {
    nodes
        .into_iter()
        .map(|n| match n {
            Node::Leaf { id, name, .. } => YNode::Leaf {
                id,
                key: key(&name),
            },
            Node::Object { name, children, .. } => YNode::Object {
                key: key(&name),
                children: convert(children),
            },
        })
        .collect()
}

/// Write a mapping with its keys at column `indent`. With `dash`, the
/// first line starts with `- ` (a sequence item) in the two columns
/// before `indent`. `first`: an entry (`key: value`) before the nodes
/// (empty: none).
fn mapping(
    buf: &mut Vec<u8>,
    nodes: &[YNode],
    schema: &Schema,
    ev: &Event,
    indent: usize,
    dash: bool,
    first: &[u8],
) {
    let mut dash = dash;
    if !first.is_empty() {
        if dash {
            buf.resize(buf.len() + indent.saturating_sub(2), b' ');
            buf.extend_from_slice(b"- ");
        } else {
            buf.resize(buf.len() + indent, b' ');
        }
        buf.extend_from_slice(first);
        buf.push(b'\n');
        dash = false;
        if nodes.is_empty() {
            return;
        }
    }
    if nodes.is_empty() {
        if dash {
            buf.resize(buf.len() + indent.saturating_sub(2), b' ');
            buf.extend_from_slice(b"- ");
        }
        buf.extend_from_slice(b"{}\n");
        return;
    }
    for (i, node) in nodes.iter().enumerate() {
        if i == 0 && dash {
            buf.resize(buf.len() + indent.saturating_sub(2), b' ');
            buf.extend_from_slice(b"- ");
        } else {
            buf.resize(buf.len() + indent, b' ');
        }
        match node {
            YNode::Leaf { id, key } => {
                buf.extend_from_slice(key);
                buf.push(b' ');
                write_value(buf, ev.get(schema.field(*id)));
                buf.push(b'\n');
            }
            YNode::Object { key, children } => {
                buf.extend_from_slice(key);
                buf.push(b'\n');
                mapping(buf, children, schema, ev, indent + 2, false, &[]);
            }
        }
    }
}

impl Handler for YamlPrinter {
    fn on_event(&mut self, schema: &Schema, event: &mut Event) -> Flow {
        let Some(buf) = self.sink.buf() else {
            return Flow::Continue;
        };
        buf.extend_from_slice(b"---\n");
        mapping(buf, &self.nodes, schema, event, 0, false, &self.instance);
        self.sink.record_done();
        Flow::Continue
    }

    fn on_array(&mut self, schema: &Schema, events: &mut Vec<Event>) -> Flow {
        let Some(buf) = self.sink.buf() else {
            return Flow::Continue;
        };
        buf.extend_from_slice(b"---\n");
        if events.is_empty() {
            buf.extend_from_slice(b"[]\n");
        }
        for e in events.iter() {
            mapping(buf, &self.nodes, schema, e, 2, true, &self.instance);
        }
        self.sink.record_done();
        Flow::Continue
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        self.sink.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::{FieldKind, SchemaBuilder, SourceKind};
    use crate::output::fields::{Flavor, defaults};
    use crate::output::shared;
    use crate::output::sink::Capture;

    fn schema() -> Schema {
        let mut b = SchemaBuilder::new("exec", SourceKind::Single, 16);
        let proc = b
            .add_raw("proc".into(), FieldKind::Struct, 0, 12, None)
            .unwrap();
        b.add_raw("proc.comm".into(), FieldKind::CString, 0, 8, Some(proc))
            .unwrap();
        b.add_raw("proc.pid".into(), FieldKind::U32, 8, 4, Some(proc))
            .unwrap();
        b.add_raw("no".into(), FieldKind::Bool, 12, 1, None)
            .unwrap();
        b.add_owned("args".into(), FieldKind::String, None).unwrap();
        b.build()
    }

    fn event(s: &Schema, comm: &[u8], pid: u32, args: &str) -> Event {
        let mut raw = vec![0u8; 16];
        raw[..comm.len()].copy_from_slice(comm);
        raw[8..12].copy_from_slice(&pid.to_ne_bytes());
        raw[12] = 1;
        let mut e = Event::new(s);
        e.set_raw(&raw);
        e.set_str(s.field(s.field_by_name("args").unwrap()), args);
        e
    }

    #[test]
    fn an_instance_is_the_first_key_of_every_mapping() {
        let mut b = SchemaBuilder::new("s", SourceKind::Single, 4);
        b.add_raw("count".into(), FieldKind::U32, 0, 4, None)
            .unwrap();
        let s = b.build();
        let cap = Capture::default();
        let mut p = YamlPrinter::with_fields(&s, &defaults(&s, Flavor::Json), shared(cap.clone()))
            .with_instance("run-1");
        let mut ev = Event::new(&s);
        ev.set_raw(&3u32.to_ne_bytes());
        p.on_event(&s, &mut ev);
        p.on_array(&s, &mut vec![ev.clone()]);
        p.flush().unwrap();
        let got = String::from_utf8(cap.0.borrow().clone()).unwrap();
        assert_eq!(
            got,
            "---\ninstance: \"run-1\"\ncount: 3\n---\n- instance: \"run-1\"\n  count: 3\n"
        );
    }

    #[test]
    fn documents_and_sequences() {
        let s = schema();
        let cap = Capture::default();
        let mut p = YamlPrinter::with_fields(&s, &defaults(&s, Flavor::Json), shared(cap.clone()));
        p.on_event(&s, &mut event(&s, b"cat", 42, "a \"b\"\nc"));
        let mut arr = vec![event(&s, b"x", 1, "no"), event(&s, b"y", 2, "")];
        p.on_array(&s, &mut arr);
        p.on_array(&s, &mut Vec::new());
        p.flush().unwrap();
        let out = String::from_utf8(cap.0.borrow().clone()).unwrap();
        assert_eq!(
            out,
            "---\nproc:\n  comm: \"cat\"\n  pid: 42\n\"no\": true\nargs: \"a \\\"b\\\"\\nc\"\n\
             ---\n- proc:\n    comm: \"x\"\n    pid: 1\n  \"no\": true\n  args: \"no\"\n\
             - proc:\n    comm: \"y\"\n    pid: 2\n  \"no\": true\n  args: \"\"\n\
             ---\n[]\n"
        );
        // It parses back as the same data (serde's YAML reader).
        let docs: Vec<serde_json::Value> = out
            .split("---\n")
            .filter(|d| !d.is_empty())
            .map(|d| yaml_serde::from_str(d).unwrap())
            .collect();
        assert_eq!(docs[0]["proc"]["pid"], 42);
        assert_eq!(docs[0]["args"], "a \"b\"\nc");
        assert_eq!(docs[0]["no"], true);
        assert_eq!(docs[1][0]["args"], "no");
        assert_eq!(docs[1][1]["proc"]["comm"], "y");
        assert_eq!(docs[2], serde_json::json!([]));
    }
}
