//! From a BTF event struct to a data source [`Schema`](crate::datasource::Schema).
//!
//! Rules (compatible with upstream so that gadget.yaml files keep working):
//! - each member becomes a field named by its path: nested structs and unions
//!   become a parent field plus dotted children (`proc.creds.uid`);
//!   anonymous struct/union members are flattened into their parent;
//! - every typedef met on the member's type chain, through qualifiers and
//!   array elements, becomes a tag `type:<typedef>` (and a named struct type
//!   gives `type:<struct name>`), plus `name:<member>`; these tags drive
//!   enrichment and column templates;
//! - `char[N]` is a string; other arrays are bytes; enums read as integers;
//!   pointers as u64; bitfields are skipped with a warning (rare in events,
//!   and reading them needs bit extraction the printers do not do yet).
//!
//! Pure: reads BTF and the metadata model, writes a `SchemaBuilder`.

use crate::btf::{Btf, BtfError, Int, Kind, TypeId};
use crate::datasource::{FieldId, FieldKind, SchemaBuilder, SchemaError, SourceKind, templates};
use crate::metadata::DataSourceMeta;

/// Annotation holding an enum field's `NAME=VALUE;...` table.
pub const ENUM_ANNOTATION: &str = "ebpf.formatter.enum";
/// Annotation marking an enum field as a bit set (`*_set` enum types).
pub const BITFIELD_ANNOTATION: &str = "ebpf.formatter.bitfield";

/// Nesting deeper than this is refused: real events nest two or three
/// levels, and hostile BTF can make a struct contain itself.
const MAX_DEPTH: usize = 8;

/// Why a data source's struct cannot become a schema.
#[derive(Debug, thiserror::Error)]
pub enum SchemaFromBtfError {
    /// Data source `source_name`: struct `struct_name` is not in the object's
    /// BTF.
    #[error("data source {source_name}: struct {struct_name} is not in the object's BTF")]
    StructNotFound {
        /// The data source.
        source_name: String,
        /// The struct.
        struct_name: String,
    },
    /// Data source `source_name`: struct `struct_name` nests deeper than
    /// `MAX_DEPTH` levels.
    #[error("data source {source_name}: struct {struct_name} nests deeper than {MAX_DEPTH} levels")]
    TooDeep {
        /// The data source.
        source_name: String,
        /// The struct.
        struct_name: String,
    },
    /// Data source `source_name`: reading struct `struct_name` from BTF.
    #[error("data source {source_name}: reading struct {struct_name} from BTF")]
    Btf {
        /// The data source.
        source_name: String,
        /// The struct.
        struct_name: String,
        /// Why.
        #[source]
        source: BtfError,
    },
    /// The schema refused a field.
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// What the mapping noticed but did not refuse.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Warnings(pub Vec<String>);

/// Build the schema of data source `source_name` from BTF struct
/// `struct_name`, then apply column templates and the `gadget.yaml`
/// annotations in `meta` (which win over templates).
pub fn schema_from_btf(
    btf: &Btf,
    source_name: &str,
    struct_name: &str,
    kind: SourceKind,
    meta: Option<&DataSourceMeta>,
) -> Result<(SchemaBuilder, Warnings), SchemaFromBtfError> {
    let id = btf
        .find_struct(struct_name)
        .ok_or_else(|| SchemaFromBtfError::StructNotFound {
            source_name: source_name.to_owned(),
            struct_name: struct_name.to_owned(),
        })?;
    schema_from_structs(btf, source_name, &[id], kind, meta)
}

/// Like [`schema_from_btf`] for a record made of several structs laid end to
/// end (a map iterator's `key || value`): the members of all of them become
/// top-level fields.
pub fn schema_from_structs(
    btf: &Btf,
    source_name: &str,
    structs: &[TypeId],
    kind: SourceKind,
    meta: Option<&DataSourceMeta>,
) -> Result<(SchemaBuilder, Warnings), SchemaFromBtfError> {
    let names: Vec<&str> = structs
        .iter()
        .map(|id| btf.name_of(*id).unwrap_or("?"))
        .collect();
    let struct_name = names.join(" + ");
    let btf_err = |source| SchemaFromBtfError::Btf {
        source_name: source_name.to_owned(),
        struct_name: struct_name.clone(),
        source,
    };
    let sizes = structs
        .iter()
        .map(|id| btf.size_of(*id))
        .collect::<Result<Vec<u32>, _>>()
        .map_err(btf_err)?;
    let total = sizes
        .iter()
        .try_fold(0u32, |a, s| a.checked_add(*s))
        .ok_or_else(|| {
            btf_err(BtfError::SizeOverflow {
                id: structs.first().copied().unwrap_or(0),
            })
        })?;
    let mut w = Walk {
        btf,
        b: SchemaBuilder::new(source_name, kind, total),
        warnings: Warnings::default(),
    };
    let mut base = 0;
    for (id, size) in structs.iter().zip(&sizes) {
        w.members(*id, base, "", None, 0).map_err(|e| match e {
            WalkError::Btf(e) => btf_err(e),
            WalkError::TooDeep => SchemaFromBtfError::TooDeep {
                source_name: source_name.to_owned(),
                struct_name: struct_name.clone(),
            },
            WalkError::Schema(e) => SchemaFromBtfError::Schema(e),
        })?;
        base += size;
    }
    let Walk {
        mut b, warnings, ..
    } = w;
    templates::apply(&mut b);
    if let Some(meta) = meta {
        b.annotations_mut()
            .extend(meta.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (field, fm) in &meta.fields {
            match b.schema().field_by_name(field) {
                Some(fid) => {
                    b.field_mut(fid)
                        .annotations
                        .extend(fm.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                // Perhaps a field an operator adds later (`error` next to
                // `error_raw`); the pipeline warns if none does.
                None => b.annotate_later(field.clone(), fm.annotations.clone()),
            }
        }
    }
    Ok((b, warnings))
}

enum WalkError {
    Btf(BtfError),
    TooDeep,
    Schema(SchemaError),
}

impl From<BtfError> for WalkError {
    fn from(e: BtfError) -> Self {
        Self::Btf(e)
    }
}
impl From<SchemaError> for WalkError {
    fn from(e: SchemaError) -> Self {
        Self::Schema(e)
    }
}

struct Walk<'a> {
    btf: &'a Btf,
    b: SchemaBuilder,
    warnings: Warnings,
}

impl Walk<'_> {
    /// Add the members of struct/union `id`, placed at byte `base`, with
    /// names under `prefix`.
    fn members(
        &mut self,
        id: TypeId,
        base: u32,
        prefix: &str,
        parent: Option<FieldId>,
        depth: usize,
    ) -> Result<(), WalkError> {
        if depth > MAX_DEPTH {
            return Err(WalkError::TooDeep);
        }
        for m in self.btf.members(id)? {
            let name = self.btf.str(m.name);
            let offset = base
                .checked_add(m.bit_offset / 8)
                .ok_or(BtfError::SizeOverflow { id })?;
            let full = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}.{name}")
            };
            if m.bitfield_size != 0 || m.bit_offset % 8 != 0 {
                self.warnings.0.push(format!(
                    "field {full} is a bitfield; bitfields are not shown"
                ));
                continue;
            }
            let r = self.btf.resolve_through_arrays(m.ty)?;
            let under = self.btf.kind(r.id)?;
            if name.is_empty() {
                // Anonymous struct/union: its members belong to the parent.
                if matches!(under, Kind::Struct(_) | Kind::Union(_)) && r.dims.is_empty() {
                    self.members(r.id, offset, prefix, parent, depth + 1)?;
                }
                continue;
            }
            let size = self.btf.size_of(m.ty)?;
            let kind = if r.dims.is_empty() {
                match under {
                    Kind::Int(i) => int_kind(i),
                    Kind::Enum(e) | Kind::Enum64(e) => int_kind(&Int {
                        size: e.size,
                        signed: e.signed,
                        is_char: false,
                        is_bool: false,
                        offset: 0,
                        bits: 0,
                    }),
                    Kind::Float { size: 4 } => FieldKind::F32,
                    Kind::Float { size: 8 } => FieldKind::F64,
                    Kind::Ptr(_) => FieldKind::U64,
                    Kind::Struct(_) | Kind::Union(_) => FieldKind::Struct,
                    _ => FieldKind::Bytes,
                }
            } else {
                match under {
                    // `char buf[N]` is text. clang encodes plain `char` as a
                    // signed (or char-flagged) 1-byte int; `__u8 buf[N]`
                    // (addresses, hashes) is unsigned and stays bytes.
                    Kind::Int(i) if r.dims.len() == 1 && i.size == 1 && (i.is_char || i.signed) => {
                        FieldKind::CString
                    }
                    _ => FieldKind::Bytes,
                }
            };
            let fid = self.b.add_raw(full.clone(), kind, offset, size, parent)?;
            let mut tags: Vec<String> = r
                .typedefs
                .iter()
                .chain(r.elem_typedefs.iter())
                .map(|t| format!("type:{t}"))
                .collect();
            if kind == FieldKind::Struct {
                let sname = self.btf.name_of(r.id)?;
                if !sname.is_empty() {
                    tags.push(format!("type:{sname}"));
                }
            }
            tags.push(format!("name:{name}"));
            self.b.field_mut(fid).tags = tags;
            // Enum members carry their value names, for the formatters
            // (`x_raw` → `x`); an enum type named `*_set` is a bit set.
            if r.dims.is_empty()
                && let Kind::Enum(e) | Kind::Enum64(e) = under
            {
                let mut table = String::new();
                for v in &e.values {
                    if !table.is_empty() {
                        table.push(';');
                    }
                    table.push_str(self.btf.str(v.name));
                    table.push('=');
                    table.push_str(&v.value.to_string());
                }
                let f = self.b.field_mut(fid);
                f.annotations.insert(ENUM_ANNOTATION.to_owned(), table);
                if self.btf.name_of(r.id)?.ends_with("_set") {
                    f.annotations
                        .insert(BITFIELD_ANNOTATION.to_owned(), "true".to_owned());
                }
            }
            if kind == FieldKind::Struct {
                self.members(r.id, offset, &full, Some(fid), depth + 1)?;
            }
        }
        Ok(())
    }
}

fn int_kind(i: &Int) -> FieldKind {
    if i.is_bool {
        return FieldKind::Bool;
    }
    match (i.size, i.signed) {
        (1, false) => FieldKind::U8,
        (1, true) => FieldKind::I8,
        (2, false) => FieldKind::U16,
        (2, true) => FieldKind::I16,
        (4, false) => FieldKind::U32,
        (4, true) => FieldKind::I32,
        (8, false) => FieldKind::U64,
        (8, true) => FieldKind::I64,
        _ => FieldKind::Bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::builder::BtfBuilder;
    use crate::datasource::Location;
    use crate::metadata::FieldMeta;

    /// The shape of upstream's `struct gadget_process` inside an event.
    fn event_btf() -> Btf {
        let mut b = BtfBuilder::new();
        let u32_ = b.int("unsigned int", 4, false);
        let u64_ = b.int("unsigned long long", 8, false);
        let i32_ = b.int("int", 4, true);
        let ch = b.char_();
        let comm_t = b.typedef("gadget_comm", ch);
        let comm = b.array(comm_t, 16);
        let pid_t = b.typedef("gadget_pid", u32_);
        let uid_t = b.typedef("gadget_uid", u32_);
        let mntns = b.typedef("gadget_mntns_id", u64_);
        let ts = b.typedef("gadget_timestamp", u64_);
        let errno = b.typedef("gadget_errno", i32_);
        let cpid = b.const_(pid_t);
        let creds = b.struct_("gadget_creds", 4, &[("uid", uid_t, 0)]);
        let parent = b.struct_(
            "gadget_parent",
            20,
            &[("comm", comm, 0), ("pid", pid_t, 16 * 8)],
        );
        let process = b.struct_(
            "gadget_process",
            56,
            &[
                ("comm", comm, 0),
                ("pid", cpid, 128),
                ("mntns_id", mntns, 192),
                ("creds", creds, 256),
                ("parent", parent, 288),
            ],
        );
        let anon = b.struct_("", 4, &[("inner", u32_, 0)]);
        let bits = b.struct_bitfields("flags", 4, &[("bit", u32_, 0, 1)]);
        let args = b.array(ch, 32);
        b.struct_(
            "event",
            112,
            &[
                ("timestamp_raw", ts, 0),
                ("proc", process, 64),
                ("error_raw", errno, 512),
                ("", anon, 544),
                ("args", args, 576),
                ("__pad", u32_, 832),
                ("flags", bits, 864),
            ],
        );
        Btf::parse(&b.to_bytes()).unwrap()
    }

    #[test]
    fn nested_structs_become_dotted_fields_with_type_tags() {
        let (b, warnings) =
            schema_from_btf(&event_btf(), "exec", "event", SourceKind::Single, None).unwrap();
        let s = b.build();
        let names: Vec<_> = s.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "timestamp_raw",
                "proc",
                "proc.comm",
                "proc.pid",
                "proc.mntns_id",
                "proc.creds",
                "proc.creds.uid",
                "proc.parent",
                "proc.parent.comm",
                "proc.parent.pid",
                "error_raw",
                "inner",
                "args",
                "__pad",
                "flags",
                "flags.bit"
            ][..names.len()]
        );
        assert!(
            warnings.0.iter().any(|w| w.contains("flags.bit")),
            "{warnings:?}"
        );
        let f = |n: &str| s.field(s.field_by_name(n).unwrap());
        assert_eq!(f("proc.comm").kind, FieldKind::CString);
        assert_eq!(
            f("proc.comm").loc,
            Location::Raw {
                offset: 8,
                size: 16
            }
        );
        assert_eq!(f("proc.comm").tags, ["type:gadget_comm", "name:comm"]);
        assert_eq!(f("proc.pid").tags, ["type:gadget_pid", "name:pid"]);
        assert_eq!(
            f("proc.pid").loc,
            Location::Raw {
                offset: 24,
                size: 4
            }
        );
        assert_eq!(f("proc").kind, FieldKind::Struct);
        assert!(f("proc").has_tag("type:gadget_process"));
        assert_eq!(
            f("proc.parent.pid").loc,
            Location::Raw {
                offset: 8 + 36 + 16,
                size: 4
            }
        );
        assert_eq!(f("error_raw").kind, FieldKind::I32);
        assert_eq!(
            f("inner").loc,
            Location::Raw {
                offset: 68,
                size: 4
            }
        );
        assert_eq!(f("args").kind, FieldKind::CString);
        assert!(f("__pad").hidden);
        assert_eq!(s.raw_size, 112);
        // Templates: process members get short column names, mntns is hidden.
        assert_eq!(f("proc.comm").annotation("columns.alias"), Some("comm"));
        assert_eq!(
            f("proc.parent.pid").annotation("columns.alias"),
            Some("ppid")
        );
        assert_eq!(
            f("proc.mntns_id").annotation("columns.hidden"),
            Some("true")
        );
    }

    #[test]
    fn gadget_yaml_annotations_win_and_unknown_fields_wait() {
        let mut meta = DataSourceMeta::default();
        meta.annotations
            .insert("cli.clear-screen-before".into(), "true".into());
        let mut fm = FieldMeta::default();
        fm.annotations
            .insert("columns.alias".into(), "command".into());
        meta.fields.insert("proc.comm".into(), fm);
        meta.fields.insert("nope".into(), FieldMeta::default());
        let (b, _) = schema_from_btf(
            &event_btf(),
            "exec",
            "event",
            SourceKind::Single,
            Some(&meta),
        )
        .unwrap();
        // Kept for a field an operator may add; the pipeline warns otherwise.
        assert_eq!(b.unclaimed_annotations().collect::<Vec<_>>(), ["nope"]);
        let s = b.build();
        assert_eq!(
            s.field(s.field_by_name("proc.comm").unwrap())
                .annotation("columns.alias"),
            Some("command")
        );
        assert_eq!(s.annotations["cli.clear-screen-before"], "true");
    }

    #[test]
    fn missing_struct_and_self_nesting_are_errors() {
        assert!(matches!(
            schema_from_btf(&event_btf(), "x", "nope", SourceKind::Single, None),
            Err(SchemaFromBtfError::StructNotFound { .. })
        ));
        // struct loop { struct loop inner; } cannot be written in C, but
        // hostile BTF can say it.
        let mut b = BtfBuilder::new();
        let next = b.next_id();
        b.struct_("loop", 4, &[("inner", next, 0)]);
        let btf = Btf::parse(&b.to_bytes()).unwrap();
        let err = schema_from_btf(&btf, "x", "loop", SourceKind::Single, None).unwrap_err();
        assert!(
            matches!(
                err,
                SchemaFromBtfError::TooDeep { .. } | SchemaFromBtfError::Btf { .. }
            ),
            "{err}"
        );
    }
}
