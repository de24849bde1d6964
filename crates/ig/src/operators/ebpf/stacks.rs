//! Symbolized stacks, part of the eBPF operator (upstream symbolizes kernel
//! stacks in its eBPF operator too, and user stacks in its `ustack`
//! operator): the stack trace maps are the gadget's, so reading them by id
//! belongs where the gadget is loaded.
//!
//! Set-up ([`StackFields::plan`]): for every field tagged
//! `type:gadget_kernel_stack` (a stack id in `ig_kstack`) add a string
//! sibling named like it minus `_raw` (`kern_stack_raw` → `kern_stack`;
//! upstream's rule, a name without the suffix is warned about and left
//! alone). Every `struct gadget_user_stack` (tag `type:gadget_user_stack`,
//! id in `ig_ustack`), whatever its name, gets upstream's three string
//! sub-fields: `X.addresses`, `X.buildid` and `X.symbols`. The raw fields
//! and the three sub-fields are hidden from tables unless `gadget.yaml`
//! says otherwise (as upstream hides them), and shown in JSON.
//!
//! Running ([`Symbolizer`]): a kernel stack becomes its frames, innermost
//! first, joined by `"; "`: `func+0x12` (kernel functions from another
//! module get ` [module]`). A user stack fills `addresses` with the return
//! addresses (`0x` and 16 hex digits each), `buildid` with the build id
//! and file offset of each frame (`<40 hex digits> +<hex offset>`, or the
//! bare address in hex where the kernel had no build id) when the gadget
//! collected them (`--collect-build-id`, map `ig_build_id`), and `symbols`
//! with the functions: `func+0x12`; `[file+0xoffset]` for an address in a
//! file without a covering symbol; `[unknown]` for a process that exited
//! (or whose pid now runs another executable). All three join frames by
//! `"; "`. No stack (an error id, or `inode` 0: not collected) leaves the
//! fields empty.
//!
//! Only data sources with such fields pay anything. Toppers symbolize when
//! their array is produced, while the ids are valid; stack ids read in one
//! batch and not seen again in the next are then deleted from the maps
//! (with their build ids), so the maps do not fill up (upstream deletes
//! after reading; the one-batch grace keeps an id alive that the next
//! interval's samples may share).

use std::collections::HashSet;

use std::fmt::Write as _;

use crate::bpf::loader::{BUILD_ID_RECORD, BuildIds, LoadError, LoadedGadget, StackTraces};
use crate::datasource::{Event, FieldId, FieldKind, Schema, SchemaBuilder, SchemaError, ValueRef};
use crate::pipeline::SourceId;
use crate::symbols::{KernelSymbols, StackOwner, UserSymbolizer};

/// Map names of `gadget/kernel_stack_map.h` and `gadget/user_stack_map.h`
/// (loader ABI, upstream's).
pub const KERNEL_STACK_MAP: &str = "ig_kstack";
pub const USER_STACK_MAP: &str = "ig_ustack";
pub const BUILD_ID_MAP: &str = "ig_build_id";

const KERNEL_TAG: &str = "type:gadget_kernel_stack";
const USER_TAG: &str = "type:gadget_user_stack";

/// The sub-fields upstream's ustack operator adds under every
/// `struct gadget_user_stack`, with our descriptions.
const USER_SUBFIELDS: [(&str, &str); 3] = [
    (
        "addresses",
        "Return addresses of the user stack, innermost first",
    ),
    (
        "buildid",
        "Build id and file offset of each frame (with --collect-build-id)",
    ),
    ("symbols", "User stack, innermost function first"),
];

#[derive(Clone, Debug)]
struct UserField {
    addresses: FieldId,
    buildid: FieldId,
    symbols: FieldId,
    stack_id: FieldId,
    inode: FieldId,
    pid_level0: FieldId,
    pidns_level0: FieldId,
    pid_level1: FieldId,
    pidns_level1: FieldId,
}

/// The stack fields of one data source and their text siblings.
#[derive(Clone, Debug, Default)]
pub struct StackFields {
    kernel: Vec<(FieldId, FieldId)>,
    user: Vec<UserField>,
}

impl StackFields {
    /// Add the text fields; `None` when the source has no stack field.
    pub fn plan(b: &mut SchemaBuilder) -> Result<Option<Self>, SchemaError> {
        let mut out = Self::default();
        let kernel: Vec<FieldId> = b.schema().fields_with_tag(KERNEL_TAG).collect();
        for raw in kernel {
            let Some(name) = text_name(b, raw) else {
                continue;
            };
            let text = b.add_owned_sibling(&name, FieldKind::String, raw)?;
            b.field_mut(raw)
                .default_annotation("columns.hidden", "true");
            defaults(b, text, "Kernel stack, innermost function first");
            out.kernel.push((raw, text));
        }
        let user: Vec<FieldId> = b.schema().fields_with_tag(USER_TAG).collect();
        for raw in user {
            let s = b.schema();
            let child = |n: &str| {
                s.children(Some(raw))
                    .find(|c| s.field(*c).short_name() == n)
            };
            let (
                Some(stack_id),
                Some(inode),
                Some(pid_level0),
                Some(pidns_level0),
                Some(pid_level1),
                Some(pidns_level1),
            ) = (
                child("stack_id"),
                child("inode"),
                child("pid_level0"),
                child("pidns_level0"),
                child("pid_level1"),
                child("pidns_level1"),
            )
            else {
                log::warn!(
                    "{}: {} lacks members of struct gadget_user_stack; not symbolizing it",
                    b.name(),
                    s.field(raw).name
                );
                continue;
            };
            hide_subtree(b, raw);
            let prefix = b.schema().field(raw).name.clone();
            let mut added = [raw; 3];
            for ((short, description), slot) in USER_SUBFIELDS.iter().zip(&mut added) {
                let id = b.add_owned(format!("{prefix}.{short}"), FieldKind::String, Some(raw))?;
                let f = b.field_mut(id);
                f.tags.push(format!("name:{short}"));
                f.default_annotation("description", description);
                f.default_annotation("columns.width", "40");
                f.default_annotation("columns.hidden", "true");
                *slot = id;
            }
            let [addresses, buildid, symbols] = added;
            out.user.push(UserField {
                addresses,
                buildid,
                symbols,
                stack_id,
                inode,
                pid_level0,
                pidns_level0,
                pid_level1,
                pidns_level1,
            });
        }
        Ok((!out.kernel.is_empty() || !out.user.is_empty()).then_some(out))
    }

    pub fn has_kernel(&self) -> bool {
        !self.kernel.is_empty()
    }

    pub fn has_user(&self) -> bool {
        !self.user.is_empty()
    }
}

/// `x_raw` → `x` for kernel stacks; a field without the suffix is left
/// alone (upstream's rule).
fn text_name(b: &SchemaBuilder, raw: FieldId) -> Option<String> {
    let f = b.schema().field(raw);
    let name = f.short_name().strip_suffix("_raw").map(str::to_owned);
    if name.is_none() {
        log::warn!(
            "{}: stack field {} has no _raw suffix; not symbolizing it",
            b.name(),
            f.name
        );
    }
    name
}

fn defaults(b: &mut SchemaBuilder, id: FieldId, description: &str) {
    let f = b.field_mut(id);
    f.default_annotation("description", description);
    f.default_annotation("columns.width", "40");
}

fn hide_subtree(b: &mut SchemaBuilder, id: FieldId) {
    b.field_mut(id).default_annotation("columns.hidden", "true");
    let children: Vec<FieldId> = b.schema().children(Some(id)).collect();
    for c in children {
        hide_subtree(b, c);
    }
}

/// One stack trace map and the ids read from it in this batch and the last
/// (with the build id map of the same stacks, for user stacks).
struct Ids {
    map: StackTraces,
    build_ids: Option<BuildIds>,
    current: HashSet<u32>,
    previous: HashSet<u32>,
}

impl Ids {
    fn new(map: StackTraces, build_ids: Option<BuildIds>) -> Self {
        Self {
            map,
            build_ids,
            current: HashSet::new(),
            previous: HashSet::new(),
        }
    }

    /// Read stack `id` into `out`; `false` when there is none.
    fn lookup(&mut self, id: u32, out: &mut Vec<u64>) -> bool {
        // Ids of 2^31 and above are negative errors: no stack.
        if id >= 1 << 31 {
            out.clear();
            return false;
        }
        self.current.insert(id);
        self.map.lookup_into(id, out)
    }

    /// Delete what the last batch read and this one did not.
    fn end_batch(&mut self) {
        for id in self.previous.difference(&self.current) {
            self.map.delete(*id);
            if let Some(b) = &self.build_ids {
                b.delete(*id);
            }
        }
        self.previous = std::mem::take(&mut self.current);
    }
}

/// Reads stacks by id and names their frames, for every data source of the
/// gadget (they share the maps).
pub struct Symbolizer {
    kernel_map: Option<Ids>,
    user_map: Option<Ids>,
    /// `None` when `/proc/kallsyms` is unusable (warned once at start):
    /// kernel frames are then printed as addresses.
    kallsyms: Option<KernelSymbols>,
    user: UserSymbolizer,
    /// Reused buffers: a stack's addresses and its build id records.
    addrs: Vec<u64>,
    build_ids: Vec<u8>,
}

impl Symbolizer {
    /// Take the stack maps the fields need out of the gadget and read
    /// `/proc/kallsyms` if kernel stacks are wanted.
    pub fn start(loaded: &mut LoadedGadget, kernel: bool, user: bool) -> Result<Self, LoadError> {
        let kernel_map = if kernel {
            Some(Ids::new(loaded.stack_trace_map(KERNEL_STACK_MAP)?, None))
        } else {
            None
        };
        let user_map = if user {
            let map = loaded.stack_trace_map(USER_STACK_MAP)?;
            // Optional, as upstream: gadgets built before it have none,
            // and one of another shape is left alone with a warning.
            let build_ids = match loaded.build_id_map(BUILD_ID_MAP, map.depth()) {
                Ok(b) => b,
                Err(e) => {
                    log::warn!("build ids of user stacks are not shown: {e}");
                    None
                }
            };
            Some(Ids::new(map, build_ids))
        } else {
            None
        };
        let kallsyms = if kernel {
            let t = std::time::Instant::now();
            match KernelSymbols::load() {
                Ok(k) => {
                    log::debug!(
                        "read {} kernel symbols from /proc/kallsyms in {:?}",
                        k.len(),
                        t.elapsed()
                    );
                    Some(k)
                }
                Err(e) => {
                    log::warn!("kernel stacks are shown as addresses: {e}");
                    None
                }
            }
        } else {
            None
        };
        Ok(Self {
            kernel_map,
            user_map,
            kallsyms,
            user: UserSymbolizer::new(),
            addrs: Vec::new(),
            build_ids: Vec::new(),
        })
    }

    /// Fill the text fields of `ev`.
    pub fn fill(&mut self, schema: &Schema, fields: &StackFields, ev: &mut Event) {
        let u64_of = |ev: &Event, id: FieldId| match ev.get(schema.field(id)) {
            ValueRef::U64(v) => v,
            _ => 0,
        };
        for (raw, text) in &fields.kernel {
            let id = u64_of(ev, *raw) as u32;
            // Emptied first: a field without a stack reads as "".
            if ev.str_buf(schema.field(*text)).is_none() {
                continue;
            }
            let Some(map) = self.kernel_map.as_mut() else {
                continue;
            };
            if !map.lookup(id, &mut self.addrs) {
                continue;
            }
            let Some(buf) = ev.str_buf(schema.field(*text)) else {
                continue;
            };
            for (i, a) in self.addrs.iter().enumerate() {
                if i > 0 {
                    buf.push_str("; ");
                }
                match self.kallsyms.as_ref().and_then(|k| k.resolve(*a)) {
                    Some(f) => {
                        let _ = write!(buf, "{f}");
                    }
                    None => {
                        let _ = write!(buf, "{a:#x}");
                    }
                }
            }
        }
        for f in &fields.user {
            let owner = StackOwner {
                exe_inode: u64_of(ev, f.inode),
                pid_level0: u64_of(ev, f.pid_level0) as u32,
                pidns_level0: u64_of(ev, f.pidns_level0) as u32,
                pid_level1: u64_of(ev, f.pid_level1) as u32,
                pidns_level1: u64_of(ev, f.pidns_level1) as u32,
            };
            let id = u64_of(ev, f.stack_id) as u32;
            // Emptied first: a field without a stack reads as "".
            for text in [f.addresses, f.buildid, f.symbols] {
                let _ = ev.str_buf(schema.field(text));
            }
            // inode 0: not collected (upstream's test too).
            if owner.exe_inode == 0 {
                continue;
            }
            let Some(map) = self.user_map.as_mut() else {
                continue;
            };
            if !map.lookup(id, &mut self.addrs) {
                continue;
            }
            if let Some(buf) = ev.str_buf(schema.field(f.addresses)) {
                for (i, a) in self.addrs.iter().enumerate() {
                    if i > 0 {
                        buf.push_str("; ");
                    }
                    let _ = write!(buf, "0x{a:016x}");
                }
            }
            if let Some(b) = &map.build_ids
                && b.lookup_into(id, &mut self.build_ids)
                && let Some(buf) = ev.str_buf(schema.field(f.buildid))
            {
                write_build_ids(&self.build_ids, self.addrs.len(), buf);
            }
            let Some(buf) = ev.str_buf(schema.field(f.symbols)) else {
                continue;
            };
            match self.user.pid_of(&owner) {
                Some(pid) => self.user.symbolize(pid, owner.exe_inode, &self.addrs, buf),
                None => {
                    for i in 0..self.addrs.len() {
                        if i > 0 {
                            buf.push_str("; ");
                        }
                        buf.push_str(crate::symbols::UNKNOWN);
                    }
                }
            }
        }
    }

    /// Call before symbolizing a new interval's stacks: processes' mappings
    /// are read again.
    pub fn begin_batch(&mut self) {
        self.user.new_batch();
    }

    /// Call after a batch: stack ids not used for a whole batch are freed.
    pub fn end_batch(&mut self) {
        if let Some(m) = self.kernel_map.as_mut() {
            m.end_batch();
        }
        if let Some(m) = self.user_map.as_mut() {
            m.end_batch();
        }
    }
}

/// `struct bpf_stack_build_id.status` (UAPI).
const BUILD_ID_EMPTY: i32 = 0;
const BUILD_ID_VALID: i32 = 1;
const BUILD_ID_IP: i32 = 2;

/// The build id records of a stack of `frames` frames as text: per frame
/// `<build id in hex> +<offset in hex>`, or the address in hex where the
/// kernel found no build id (`BPF_STACK_BUILD_ID_IP`), joined by `"; "`;
/// upstream's format without its trailing separator. Stops at the first
/// empty record.
fn write_build_ids(records: &[u8], frames: usize, out: &mut String) {
    for (i, r) in records
        .chunks_exact(BUILD_ID_RECORD)
        .take(frames)
        .enumerate()
    {
        let word = |at: usize| u64::from_ne_bytes(r[at..at + 8].try_into().unwrap_or_default());
        let status = i32::from_ne_bytes(r[0..4].try_into().unwrap_or_default());
        if status == BUILD_ID_EMPTY {
            break;
        }
        if i > 0 {
            out.push_str("; ");
        }
        match status {
            BUILD_ID_VALID => {
                for b in &r[4..24] {
                    let _ = write!(out, "{b:02x}");
                }
                let _ = write!(out, " +{:x}", word(24));
            }
            BUILD_ID_IP => {
                let _ = write!(out, "{:x}", word(24));
            }
            _ => out.push_str(crate::symbols::UNKNOWN),
        }
    }
}

/// The stack fields of data source `id`, if it has any.
pub fn fields_of(fields: &[(SourceId, StackFields)], id: SourceId) -> Option<&StackFields> {
    fields.iter().find(|(s, _)| *s == id).map(|(_, f)| f)
}

/// Symbolize a whole array (one topper interval) as one batch. Does
/// nothing for a source without stack fields.
pub fn fill_array(
    sym: Option<&mut Symbolizer>,
    fields: &[(SourceId, StackFields)],
    id: SourceId,
    schema: &Schema,
    events: &mut [Event],
) {
    let (Some(sym), Some(f)) = (sym, fields_of(fields, id)) else {
        return;
    };
    sym.begin_batch();
    for e in events {
        sym.fill(schema, f, e);
    }
    sym.end_batch();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::SourceKind;

    /// A source with a `struct gadget_user_stack` named `name` (its
    /// members as upstream's types.h lays them out) and, when given, a
    /// `gadget_kernel_stack` field named `kernel`.
    fn builder(name: &str, kernel: Option<&str>) -> SchemaBuilder {
        let mut b = SchemaBuilder::new("open", SourceKind::Single, 80);
        if let Some(k) = kernel {
            let id = b
                .add_raw(k.to_owned(), FieldKind::U32, 72, 4, None)
                .unwrap();
            b.field_mut(id).tags.push(KERNEL_TAG.to_owned());
        }
        let us = b
            .add_raw(name.to_owned(), FieldKind::Struct, 0, 72, None)
            .unwrap();
        b.field_mut(us).tags.push(USER_TAG.to_owned());
        for (member, kind, at, size) in [
            ("inode", FieldKind::U64, 8, 8),
            ("stack_id", FieldKind::U32, 32, 4),
            ("pid_level0", FieldKind::U32, 40, 4),
            ("pidns_level0", FieldKind::U32, 44, 4),
            ("pid_level1", FieldKind::U32, 48, 4),
            ("pidns_level1", FieldKind::U32, 52, 4),
        ] {
            b.add_raw(format!("{name}.{member}"), kind, at, size, Some(us))
                .unwrap();
        }
        b
    }

    #[test]
    fn any_user_stack_gets_upstreams_three_subfields() {
        for name in ["ustack", "user_stack_raw"] {
            let mut b = builder(name, None);
            let plan = StackFields::plan(&mut b).unwrap().unwrap();
            assert!(plan.has_user() && !plan.has_kernel());
            let s = b.build();
            for sub in ["addresses", "buildid", "symbols"] {
                let full = format!("{name}.{sub}");
                let id = s.field_by_name(&full).unwrap_or_else(|| panic!("{full}"));
                let f = s.field(id);
                assert_eq!(f.kind, FieldKind::String, "{full}");
                assert_eq!(f.parent, s.field_by_name(name), "{full}");
                assert!(f.has_tag(&format!("name:{sub}")), "{full}");
                // Hidden from tables by default, as upstream's are.
                assert!(f.hidden_in_tables(), "{full}");
            }
            // No sibling text field is made for user stacks any more.
            if let Some(base) = name.strip_suffix("_raw") {
                assert!(s.field_by_name(base).is_none(), "{base}");
            }
            assert_eq!(s.fields().len(), 7 + 3, "{name}");
        }
    }

    #[test]
    fn gadget_yaml_shows_a_subfield_it_annotates() {
        let mut b = builder("user_stack_raw", None);
        b.annotate_later(
            "user_stack_raw.symbols".to_owned(),
            [("columns.hidden".to_owned(), "false".to_owned())].into(),
        );
        StackFields::plan(&mut b).unwrap().unwrap();
        assert_eq!(b.unclaimed_annotations().count(), 0);
        let s = b.build();
        let symbols = s.field(s.field_by_name("user_stack_raw.symbols").unwrap());
        assert!(!symbols.hidden_in_tables());
        assert_eq!(
            symbols.annotation("description"),
            Some("User stack, innermost function first")
        );
    }

    #[test]
    fn kernel_stacks_keep_the_raw_suffix_rule() {
        let mut b = builder("ustack", Some("kern_stack_raw"));
        let plan = StackFields::plan(&mut b).unwrap().unwrap();
        assert!(plan.has_kernel() && plan.has_user());
        let s = b.build();
        let text = s.field(s.field_by_name("kern_stack").unwrap());
        assert_eq!(text.kind, FieldKind::String);
        assert!(!text.hidden_in_tables());
        let mut b = builder("ustack", Some("kstack"));
        let plan = StackFields::plan(&mut b).unwrap().unwrap();
        assert!(!plan.has_kernel(), "no _raw suffix: left alone");
    }

    #[test]
    fn a_user_stack_without_its_members_is_left_alone() {
        let mut b = SchemaBuilder::new("open", SourceKind::Single, 72);
        let us = b
            .add_raw("ustack".to_owned(), FieldKind::Struct, 0, 72, None)
            .unwrap();
        b.field_mut(us).tags.push(USER_TAG.to_owned());
        assert!(StackFields::plan(&mut b).unwrap().is_none());
        assert_eq!(b.build().fields().len(), 1);
    }

    /// One `struct bpf_stack_build_id`.
    fn record(status: i32, id: u8, offset: u64) -> Vec<u8> {
        let mut r = status.to_ne_bytes().to_vec();
        r.extend([id; 20]);
        r.extend(offset.to_ne_bytes());
        assert_eq!(r.len(), BUILD_ID_RECORD);
        r
    }

    #[test]
    fn build_ids_print_as_upstream_without_the_trailing_separator() {
        let mut records = record(BUILD_ID_VALID, 0xab, 0x1234);
        records.extend(record(BUILD_ID_IP, 0, 0x7f00_0000_1000));
        records.extend(record(BUILD_ID_EMPTY, 0, 0));
        records.extend(record(BUILD_ID_VALID, 1, 1));
        let mut out = String::new();
        write_build_ids(&records, 4, &mut out);
        assert_eq!(out, format!("{} +1234; 7f0000001000", "ab".repeat(20)));
        // Never more records than frames.
        out.clear();
        write_build_ids(&records, 1, &mut out);
        assert_eq!(out, format!("{} +1234", "ab".repeat(20)));
    }
}
