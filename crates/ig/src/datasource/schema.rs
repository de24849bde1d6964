//! Field definitions and the schema of one data source.

use std::collections::BTreeMap;

/// Index of a field in its [`Schema`]. Stable for the life of the schema:
/// fields are only ever appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldId(pub u16);

impl FieldId {
    /// The position of the field in its schema.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// What a field holds. Integers are stored in the host's byte order, as the
/// kernel wrote them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// `bool` (one byte).
    Bool,
    /// `u8`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64`.
    U64,
    /// `s8`.
    I8,
    /// `s16`.
    I16,
    /// `s32`.
    I32,
    /// `s64`.
    I64,
    /// `float`.
    F32,
    /// `double`.
    F64,
    /// A NUL-terminated string in a fixed-size buffer (`char comm[16]`).
    CString,
    /// A string owned by the event (added by an operator).
    String,
    /// Opaque bytes (arrays of non-char elements, unions).
    Bytes,
    /// A nested struct: a parent of dotted children, with no value of its own
    /// in the printers.
    Struct,
}

impl FieldKind {
    /// Size in bytes of a fixed-size scalar kind.
    pub fn scalar_size(self) -> Option<u32> {
        match self {
            Self::Bool | Self::U8 | Self::I8 => Some(1),
            Self::U16 | Self::I16 => Some(2),
            Self::U32 | Self::I32 | Self::F32 => Some(4),
            Self::U64 | Self::I64 | Self::F64 => Some(8),
            Self::CString | Self::String | Self::Bytes | Self::Struct => None,
        }
    }

    /// Integers and floats: what sorts and formats as a number.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Self::U8
                | Self::U16
                | Self::U32
                | Self::U64
                | Self::I8
                | Self::I16
                | Self::I32
                | Self::I64
                | Self::F32
                | Self::F64
        )
    }

    /// The name used in `--help` and `image inspect` output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::U8 => "uint8",
            Self::U16 => "uint16",
            Self::U32 => "uint32",
            Self::U64 => "uint64",
            Self::I8 => "int8",
            Self::I16 => "int16",
            Self::I32 => "int32",
            Self::I64 => "int64",
            Self::F32 => "float32",
            Self::F64 => "float64",
            Self::CString | Self::String => "string",
            Self::Bytes => "bytes",
            Self::Struct => "struct",
        }
    }
}

/// Where a field's value lives in an [`Event`](super::Event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// Inside the raw sample the kernel wrote, at a fixed offset.
    Raw {
        /// Bytes from the start of the sample.
        offset: u32,
        /// Bytes it takes.
        size: u32,
    },
    /// In the event's owned slots, for values added in user space.
    Owned {
        /// Index of the slot.
        slot: u16,
    },
}

/// One field of a data source.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldDef {
    /// Full dotted name: `proc.parent.comm`.
    pub name: String,
    /// What it holds.
    pub kind: FieldKind,
    /// Where its value lives.
    pub loc: Location,
    /// The struct it is a member of (`None`: top level).
    pub parent: Option<FieldId>,
    /// `type:<typedef>` and `name:<member>` tags, as upstream derives them.
    pub tags: Vec<String>,
    /// `gadget.yaml` annotations and defaults derived from tags.
    pub annotations: BTreeMap<String, String>,
    /// Hidden from every output (members whose names start with `__`).
    pub hidden: bool,
    /// Display position: printers show fields sorted by `(order, id)`. It is
    /// the field's index unless an operator placed a derived field next to
    /// its source ([`SchemaBuilder::add_owned_sibling`]).
    pub order: u32,
}

impl FieldDef {
    /// The last component of the dotted name.
    pub fn short_name(&self) -> &str {
        self.name.rsplit('.').next().unwrap_or(&self.name)
    }

    /// Its slot among the event's owned values, if it is owned (for
    /// [`crate::datasource::Event::keep_slots`]).
    pub fn owned_slot(&self) -> Option<u16> {
        match self.loc {
            Location::Owned { slot } => Some(slot),
            Location::Raw { .. } => None,
        }
    }

    /// Whether it carries `tag` (`type:gadget_mntns_id`...).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// The value of annotation `key` (`columns.width`...).
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// Set `key` unless it is already set (by `gadget.yaml`, which wins).
    pub fn default_annotation(&mut self, key: &str, value: &str) {
        if !self.annotations.contains_key(key) {
            self.annotations.insert(key.to_owned(), value.to_owned());
        }
    }

    /// The name of its column in tables: `columns.alias`, or the full
    /// name (tables show it upper-cased).
    pub fn column_name(&self) -> &str {
        self.annotation("columns.alias").unwrap_or(&self.name)
    }

    /// Whether tables leave this field out by default.
    pub fn hidden_in_tables(&self) -> bool {
        self.hidden
            || self.kind == FieldKind::Struct
            || self.annotation("columns.hidden") == Some("true")
    }
}

/// Whether a data source emits single events or arrays of them (snapshots,
/// toppers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// One event at a time (a tracer).
    Single,
    /// Whole arrays at a time (a snapshot, a topper's interval).
    Array,
}

/// Why a field cannot be added to a schema.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    /// Data source `source_name`: field `field` is defined twice.
    #[error("data source {source_name}: field {field} is defined twice")]
    DuplicateField {
        /// The data source.
        source_name: String,
        /// The field.
        field: String,
    },
    /// Data source `source_name`: too many fields (at most `max`).
    #[error("data source {source_name}: too many fields (at most {max})")]
    TooManyFields {
        /// The data source.
        source_name: String,
        /// The most allowed.
        max: usize,
    },
    /// Data source `source_name`: field `field` at offset `offset` with size
    /// `size` ends past the event size `event_size`.
    #[error(
        "data source {source_name}: field {field} at offset {offset} with size {size} ends past the event size {event_size}"
    )]
    OutOfBounds {
        /// The data source.
        source_name: String,
        /// The field.
        field: String,
        /// The offset in bytes.
        offset: u32,
        /// The size in bytes.
        size: u32,
        /// The size of the raw sample.
        event_size: u32,
    },
}

/// What a name given on the command line is in a schema
/// ([`Schema::find_column`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnMatch {
    /// This field: by its full name, or the only one with that column name.
    Field(FieldId),
    /// No field has that name or column name.
    None,
    /// Several fields have that column name (in display order).
    Ambiguous(Vec<FieldId>),
}

/// The frozen description of one data source. Built by [`SchemaBuilder`]
/// during set-up and shared read-only (`Arc<Schema>`) while running.
#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    /// The data source's name (`exec`, `open`...).
    pub name: String,
    /// Single events or arrays.
    pub kind: SourceKind,
    /// Size of the raw sample the kernel writes (the BTF struct size).
    pub raw_size: u32,
    /// The data source's annotations (`gadget.yaml`, operators).
    pub annotations: BTreeMap<String, String>,
    fields: Vec<FieldDef>,
    owned_slots: u16,
}

impl Schema {
    /// Every field, by [`FieldId`] order.
    pub fn fields(&self) -> &[FieldDef] {
        &self.fields
    }

    /// The field `id`.
    pub fn field(&self, id: FieldId) -> &FieldDef {
        &self.fields[id.index()]
    }

    /// The field of full name `name` (`proc.comm`).
    pub fn field_by_name(&self, name: &str) -> Option<FieldId> {
        self.fields
            .iter()
            .position(|f| f.name == name)
            .and_then(|i| u16::try_from(i).ok())
            .map(FieldId)
    }

    /// The field a user names on the command line (`--fields`,
    /// `--filter`, `--sort`): its full name (`proc.comm`), or else, in any
    /// case, its column name as a table's header shows it (`comm`), when
    /// exactly one visible field has it.
    pub fn find_column(&self, name: &str) -> ColumnMatch {
        if let Some(id) = self
            .field_by_name(name)
            .filter(|id| !self.field(*id).hidden)
        {
            return ColumnMatch::Field(id);
        }
        let by_column: Vec<FieldId> = self
            .display_order()
            .into_iter()
            .filter(|&id| {
                let f = self.field(id);
                !f.hidden
                    && f.kind != FieldKind::Struct
                    && f.column_name().eq_ignore_ascii_case(name)
            })
            .collect();
        match by_column.len() {
            0 => ColumnMatch::None,
            1 => ColumnMatch::Field(by_column[0]),
            _ => ColumnMatch::Ambiguous(by_column),
        }
    }

    /// The full names of `ids`, comma-separated: for messages that list
    /// fields (the candidates of an ambiguous column name).
    pub fn names_of(&self, ids: &[FieldId]) -> String {
        ids.iter()
            .map(|&id| self.field(id).name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Fields carrying `tag`, in schema order.
    pub fn fields_with_tag<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = FieldId> + 'a {
        self.ids().filter(move |id| self.field(*id).has_tag(tag))
    }

    /// Every field id, in order.
    pub fn ids(&self) -> impl Iterator<Item = FieldId> + use<> {
        // Fewer than u16::MAX fields is an invariant of the builder.
        (0..self.fields.len()).map(|i| FieldId(i as u16))
    }

    /// Direct children of `parent` (`None`: the top-level fields).
    pub fn children(&self, parent: Option<FieldId>) -> impl Iterator<Item = FieldId> + '_ {
        self.ids()
            .filter(move |id| self.field(*id).parent == parent)
    }

    /// How many values operators add in user space (an
    /// [`Event`](super::Event)'s owned slots).
    pub fn owned_slots(&self) -> usize {
        usize::from(self.owned_slots)
    }

    /// Every field in display order: by `order`, ties in schema order.
    pub fn display_order(&self) -> Vec<FieldId> {
        let mut ids: Vec<FieldId> = self.ids().collect();
        ids.sort_by_key(|id| (self.field(*id).order, *id));
        ids
    }

    /// Direct children of `parent` in display order.
    pub fn children_in_display_order(&self, parent: Option<FieldId>) -> Vec<FieldId> {
        let mut ids: Vec<FieldId> = self.children(parent).collect();
        ids.sort_by_key(|id| (self.field(*id).order, *id));
        ids
    }
}

/// Mutable form of a [`Schema`], alive only during set-up. Operators append
/// fields; nothing is ever removed or reordered, so a [`FieldId`] taken early
/// stays valid.
#[derive(Debug)]
pub struct SchemaBuilder {
    schema: Schema,
    /// `gadget.yaml` annotations of fields that do not exist yet: an
    /// operator may add them later (`error` next to `error_raw`). They are
    /// applied when the field is added, before the operator's defaults.
    pending: BTreeMap<String, BTreeMap<String, String>>,
}

impl SchemaBuilder {
    /// A schema named `name`, of `kind`, whose raw samples are `raw_size`
    /// bytes.
    pub fn new(name: impl Into<String>, kind: SourceKind, raw_size: u32) -> Self {
        Self {
            schema: Schema {
                name: name.into(),
                kind,
                raw_size,
                annotations: BTreeMap::new(),
                fields: Vec::new(),
                owned_slots: 0,
            },
            pending: BTreeMap::new(),
        }
    }

    /// Keep `annotations` for field `name`, which does not exist yet; they
    /// are applied if an operator adds it (upstream applies gadget.yaml to
    /// fields added later in the same way).
    pub fn annotate_later(&mut self, name: String, annotations: BTreeMap<String, String>) {
        self.pending.entry(name).or_default().extend(annotations);
    }

    /// Names of fields annotated in advance that no one added.
    pub fn unclaimed_annotations(&self) -> impl Iterator<Item = &str> {
        self.pending.keys().map(String::as_str)
    }

    /// The schema so far.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The data source's name.
    pub fn name(&self) -> &str {
        &self.schema.name
    }

    /// The data source's annotations, to change.
    pub fn annotations_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.schema.annotations
    }

    /// Field `id`, to change (its annotations, tags, order).
    pub fn field_mut(&mut self, id: FieldId) -> &mut FieldDef {
        &mut self.schema.fields[id.index()]
    }

    /// Add a field backed by bytes of the raw sample.
    pub fn add_raw(
        &mut self,
        name: String,
        kind: FieldKind,
        offset: u32,
        size: u32,
        parent: Option<FieldId>,
    ) -> Result<FieldId, SchemaError> {
        let end = offset.checked_add(size);
        if end.is_none_or(|end| end > self.schema.raw_size) {
            return Err(SchemaError::OutOfBounds {
                source_name: self.schema.name.clone(),
                field: name,
                offset,
                size,
                event_size: self.schema.raw_size,
            });
        }
        self.push(name, kind, Location::Raw { offset, size }, parent)
    }

    /// Add a field whose value an operator sets in user space.
    pub fn add_owned(
        &mut self,
        name: String,
        kind: FieldKind,
        parent: Option<FieldId>,
    ) -> Result<FieldId, SchemaError> {
        let slot = self.schema.owned_slots;
        let id = self.push(name, kind, Location::Owned { slot }, parent)?;
        self.schema.owned_slots += 1;
        Ok(id)
    }

    /// Add an owned field next to `of`: under the same parent (`short` is
    /// the last component of its name) and shown at the same place. Set
    /// default annotations on the result with [`FieldDef::default_annotation`]
    /// so that `gadget.yaml` still wins.
    pub fn add_owned_sibling(
        &mut self,
        short: &str,
        kind: FieldKind,
        of: FieldId,
    ) -> Result<FieldId, SchemaError> {
        let src = self.schema.field(of);
        let parent = src.parent;
        let order = src.order;
        let name = match parent {
            Some(p) => format!("{}.{short}", self.schema.field(p).name),
            None => short.to_owned(),
        };
        let id = self.add_owned(name, kind, parent)?;
        self.schema.fields[id.index()].order = order;
        Ok(id)
    }

    fn push(
        &mut self,
        name: String,
        kind: FieldKind,
        loc: Location,
        parent: Option<FieldId>,
    ) -> Result<FieldId, SchemaError> {
        if self.schema.field_by_name(&name).is_some() {
            return Err(SchemaError::DuplicateField {
                source_name: self.schema.name.clone(),
                field: name,
            });
        }
        let max = usize::from(u16::MAX - 1);
        if self.schema.fields.len() >= max {
            return Err(SchemaError::TooManyFields {
                source_name: self.schema.name.clone(),
                max,
            });
        }
        let hidden = name.rsplit('.').next().is_some_and(|n| n.starts_with("__"));
        let annotations = self.pending.remove(&name).unwrap_or_default();
        let order = u32::try_from(self.schema.fields.len()).unwrap_or(u32::MAX);
        self.schema.fields.push(FieldDef {
            name,
            kind,
            loc,
            parent,
            tags: Vec::new(),
            annotations,
            hidden,
            order,
        });
        Ok(FieldId((self.schema.fields.len() - 1) as u16))
    }

    /// Freeze the schema.
    pub fn build(self) -> Schema {
        self.schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_appended_and_found_by_name() {
        let mut b = SchemaBuilder::new("exec", SourceKind::Single, 16);
        let proc = b
            .add_raw("proc".into(), FieldKind::Struct, 0, 8, None)
            .unwrap();
        let pid = b
            .add_raw("proc.pid".into(), FieldKind::U32, 0, 4, Some(proc))
            .unwrap();
        let hidden = b
            .add_raw("__pad".into(), FieldKind::Bytes, 8, 8, None)
            .unwrap();
        let user = b.add_owned("user".into(), FieldKind::String, None).unwrap();
        let s = b.build();
        assert_eq!(s.field_by_name("proc.pid"), Some(pid));
        assert_eq!(s.field(pid).short_name(), "pid");
        assert!(s.field(hidden).hidden);
        assert_eq!(s.field(user).loc, Location::Owned { slot: 0 });
        assert_eq!(s.owned_slots(), 1);
        assert_eq!(
            s.children(None).collect::<Vec<_>>(),
            vec![proc, hidden, user]
        );
        assert_eq!(s.children(Some(proc)).collect::<Vec<_>>(), vec![pid]);
    }

    #[test]
    fn columns_are_found_by_full_name_or_unique_header() {
        let mut b = SchemaBuilder::new("exec", SourceKind::Single, 16);
        let proc = b
            .add_raw("proc".into(), FieldKind::Struct, 0, 8, None)
            .unwrap();
        let comm = b
            .add_raw("proc.comm".into(), FieldKind::String, 0, 4, Some(proc))
            .unwrap();
        let ppid = b
            .add_raw("proc.ppid".into(), FieldKind::U32, 4, 4, Some(proc))
            .unwrap();
        let a = b.add_owned("a".into(), FieldKind::String, None).unwrap();
        let z = b.add_owned("z".into(), FieldKind::String, None).unwrap();
        b.field_mut(comm)
            .default_annotation("columns.alias", "comm");
        b.field_mut(a).default_annotation("columns.alias", "same");
        b.field_mut(z).default_annotation("columns.alias", "SAME");
        let s = b.build();
        assert_eq!(s.find_column("proc.comm"), ColumnMatch::Field(comm));
        assert_eq!(s.find_column("comm"), ColumnMatch::Field(comm));
        assert_eq!(s.find_column("COMM"), ColumnMatch::Field(comm));
        // Without an alias, the header is the full name, upper-cased.
        assert_eq!(s.find_column("PROC.PPID"), ColumnMatch::Field(ppid));
        assert_eq!(s.find_column("proc"), ColumnMatch::Field(proc));
        assert_eq!(s.find_column("ppid"), ColumnMatch::None);
        assert_eq!(s.find_column("same"), ColumnMatch::Ambiguous(vec![a, z]));
        assert_eq!(s.names_of(&[a, z]), "a, z");
    }

    #[test]
    fn siblings_take_their_source_place_and_early_annotations() {
        let mut b = SchemaBuilder::new("open", SourceKind::Single, 12);
        let proc = b
            .add_raw("proc".into(), FieldKind::Struct, 0, 4, None)
            .unwrap();
        let uid = b
            .add_raw("proc.uid".into(), FieldKind::U32, 0, 4, Some(proc))
            .unwrap();
        let err = b
            .add_raw("error_raw".into(), FieldKind::U32, 4, 4, None)
            .unwrap();
        let fd = b.add_raw("fd".into(), FieldKind::U32, 8, 4, None).unwrap();
        let mut yaml = BTreeMap::new();
        yaml.insert("columns.width".to_owned(), "9".to_owned());
        b.annotate_later("error".into(), yaml.clone());
        b.annotate_later("never".into(), yaml);
        let error = b
            .add_owned_sibling("error", FieldKind::String, err)
            .unwrap();
        b.field_mut(error).default_annotation("columns.width", "12");
        b.field_mut(error)
            .default_annotation("description", "errno name");
        let user = b.add_owned_sibling("user", FieldKind::String, uid).unwrap();
        assert_eq!(b.unclaimed_annotations().collect::<Vec<_>>(), ["never"]);
        let s = b.build();
        assert_eq!(s.field(user).name, "proc.user");
        assert_eq!(s.field(user).parent, Some(proc));
        assert_eq!(s.field(error).annotation("columns.width"), Some("9"));
        assert_eq!(s.field(error).annotation("description"), Some("errno name"));
        assert_eq!(s.display_order(), [proc, uid, user, err, error, fd]);
        assert_eq!(s.children_in_display_order(None), [proc, err, error, fd]);
        assert!(s.field(proc).hidden_in_tables());
        assert!(!s.field(fd).hidden_in_tables());
    }

    #[test]
    fn rejects_duplicates_and_out_of_bounds() {
        let mut b = SchemaBuilder::new("x", SourceKind::Single, 8);
        b.add_raw("a".into(), FieldKind::U64, 0, 8, None).unwrap();
        assert!(matches!(
            b.add_raw("a".into(), FieldKind::U8, 0, 1, None),
            Err(SchemaError::DuplicateField { .. })
        ));
        assert!(matches!(
            b.add_raw("b".into(), FieldKind::U32, 6, 4, None),
            Err(SchemaError::OutOfBounds { .. })
        ));
        assert!(matches!(
            b.add_raw("c".into(), FieldKind::U32, u32::MAX, 4, None),
            Err(SchemaError::OutOfBounds { .. })
        ));
    }
}
