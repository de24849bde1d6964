//! Default column annotations derived from type tags, so that a gadget
//! without any `gadget.yaml` annotations still prints a readable table.
//!
//! The rules follow upstream's templates in spirit (pid-like columns are
//! narrow and right-aligned, namespace ids and raw timestamps are hidden,
//! process members get short names). They only fill annotations that are
//! not set; `gadget.yaml` is applied afterwards and always wins.

use super::{FieldId, SchemaBuilder};

/// `(typedef, [(annotation, value)])`.
const BY_TYPE: &[(&str, &[(&str, &str)])] = &[
    (
        "gadget_comm",
        &[("columns.width", "16"), ("columns.maxwidth", "16")],
    ),
    (
        "gadget_pcomm",
        &[("columns.width", "16"), ("columns.maxwidth", "16")],
    ),
    (
        "gadget_pid",
        &[("columns.width", "7"), ("columns.alignment", "right")],
    ),
    (
        "gadget_ppid",
        &[("columns.width", "7"), ("columns.alignment", "right")],
    ),
    (
        "gadget_tid",
        &[("columns.width", "7"), ("columns.alignment", "right")],
    ),
    (
        "gadget_ptid",
        &[("columns.width", "7"), ("columns.alignment", "right")],
    ),
    (
        "gadget_uid",
        &[("columns.width", "7"), ("columns.alignment", "right")],
    ),
    (
        "gadget_gid",
        &[("columns.width", "7"), ("columns.alignment", "right")],
    ),
    (
        "gadget_mntns_id",
        &[("columns.width", "12"), ("columns.hidden", "true")],
    ),
    (
        "gadget_netns_id",
        &[("columns.width", "12"), ("columns.hidden", "true")],
    ),
    // Boot-time nanoseconds mean nothing to a reader; JSON keeps them.
    (
        "gadget_timestamp",
        &[("columns.width", "35"), ("columns.hidden", "true")],
    ),
];

/// Short column names for the members of upstream's process structs, keyed
/// by the parent's type tag.
const ALIASES: &[(&str, &[(&str, &str)])] = &[
    (
        "gadget_process",
        &[
            ("comm", "comm"),
            ("pid", "pid"),
            ("tid", "tid"),
            ("mntns_id", "mntns_id"),
        ],
    ),
    ("gadget_creds", &[("uid", "uid"), ("gid", "gid")]),
    (
        "gadget_parent",
        &[("comm", "pcomm"), ("pid", "ppid"), ("tid", "ptid")],
    ),
];

/// Thread ids repeat the pid for single-threaded programs: hidden in tables.
const HIDDEN_MEMBERS: &[(&str, &str)] = &[("gadget_process", "tid"), ("gadget_parent", "tid")];

/// Fill the column annotations of fields whose type tags have a template, where
/// `gadget.yaml` set none.
pub fn apply(b: &mut SchemaBuilder) {
    let n = b.schema().fields().len();
    for i in 0..n {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "schemas hold fewer than u16::MAX fields"
        )]
        let id = FieldId(i as u16);
        let mut set: Vec<(&str, &str)> = Vec::new();
        let f = b.schema().field(id);
        for (ty, anns) in BY_TYPE {
            if f.has_tag(&format!("type:{ty}")) {
                set.extend(anns.iter().copied());
            }
        }
        if let Some(parent) = f.parent {
            let p = b.schema().field(parent);
            let short = f.short_name().to_owned();
            for (ty, aliases) in ALIASES {
                if p.has_tag(&format!("type:{ty}")) {
                    if let Some((_, alias)) = aliases.iter().find(|(m, _)| *m == short) {
                        set.push(("columns.alias", alias));
                    }
                    if HIDDEN_MEMBERS.contains(&(*ty, short.as_str())) {
                        set.push(("columns.hidden", "true"));
                    }
                }
            }
        }
        let f = b.field_mut(id);
        for (k, v) in set {
            f.annotations
                .entry(k.to_owned())
                .or_insert_with(|| v.to_owned());
        }
    }
}
