//! Symbolized stacks, part of the eBPF operator (upstream symbolizes kernel
//! stacks in its eBPF operator too): the stack trace maps are the gadget's,
//! so reading them by id belongs where the gadget is loaded.
//!
//! Set-up ([`StackFields::plan`]): for every field tagged
//! `type:gadget_kernel_stack` (a stack id in `ig_kstack`) add a string
//! sibling named like it minus `_raw` (`kern_stack_raw` → `kern_stack`);
//! for every `struct gadget_user_stack` (tag `type:gadget_user_stack`, id in
//! `ig_ustack`) likewise (`user_stack_raw` → `user_stack`). The raw fields
//! are hidden from tables unless `gadget.yaml` says otherwise.
//!
//! Running ([`Symbolizer`]): each field becomes the frames, innermost first,
//! joined by `"; "`: `func+0x12` (kernel functions from another module get
//! ` [module]`); a user address in a file without a covering symbol prints
//! as `[file+0xoffset]`, and one of a process that exited (or whose pid now
//! runs another executable) as `[unknown]`. No stack (an error id, or
//! `inode` 0: not collected) leaves the field empty.
//!
//! Only data sources with such fields pay anything. Toppers symbolize when
//! their array is produced, while the ids are valid; stack ids read in one
//! batch and not seen again in the next are then deleted from the maps, so
//! the maps do not fill up (upstream deletes after reading; the one-batch
//! grace keeps an id alive that the next interval's samples may share).

use std::collections::HashSet;

use crate::bpf::loader::{LoadError, LoadedGadget, StackTraces};
use crate::datasource::{Event, FieldId, FieldKind, Schema, SchemaBuilder, SchemaError, ValueRef};
use crate::pipeline::SourceId;
use crate::symbols::{KernelSymbols, StackOwner, UserSymbolizer};

/// Map names of `gadget/kernel_stack_map.h` and `gadget/user_stack_map.h`
/// (loader ABI, upstream's).
pub const KERNEL_STACK_MAP: &str = "ig_kstack";
pub const USER_STACK_MAP: &str = "ig_ustack";

const KERNEL_TAG: &str = "type:gadget_kernel_stack";
const USER_TAG: &str = "type:gadget_user_stack";

#[derive(Clone, Debug)]
struct UserField {
    text: FieldId,
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
            let Some(name) = text_name(b, raw) else {
                continue;
            };
            let text = b.add_owned_sibling(&name, FieldKind::String, raw)?;
            hide_subtree(b, raw);
            defaults(b, text, "User stack, innermost function first");
            out.user.push(UserField {
                text,
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

/// `x_raw` → `x`; a field without the suffix is left alone (upstream's rule).
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

/// One stack trace map and the ids read from it in this batch and the last.
struct Ids {
    map: StackTraces,
    current: HashSet<u32>,
    previous: HashSet<u32>,
}

impl Ids {
    fn new(map: StackTraces) -> Self {
        Self {
            map,
            current: HashSet::new(),
            previous: HashSet::new(),
        }
    }

    fn lookup(&mut self, id: u32) -> Option<Vec<u64>> {
        // Ids of 2^31 and above are negative errors: no stack.
        if id >= 1 << 31 {
            return None;
        }
        self.current.insert(id);
        self.map.lookup(id)
    }

    /// Delete what the last batch read and this one did not.
    fn end_batch(&mut self) {
        for id in self.previous.difference(&self.current) {
            self.map.delete(*id);
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
    addrs: Vec<u64>,
}

impl Symbolizer {
    /// Take the stack maps the fields need out of the gadget and read
    /// `/proc/kallsyms` if kernel stacks are wanted.
    pub fn start(loaded: &mut LoadedGadget, kernel: bool, user: bool) -> Result<Self, LoadError> {
        let kernel_map = if kernel {
            Some(Ids::new(loaded.stack_trace_map(KERNEL_STACK_MAP)?))
        } else {
            None
        };
        let user_map = if user {
            Some(Ids::new(loaded.stack_trace_map(USER_STACK_MAP)?))
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
            let Some(buf) = ev.str_buf(schema.field(*text)) else {
                continue;
            };
            let Some(map) = self.kernel_map.as_mut() else {
                continue;
            };
            let Some(addrs) = map.lookup(id) else {
                continue;
            };
            for (i, a) in addrs.iter().enumerate() {
                if i > 0 {
                    buf.push_str("; ");
                }
                match self.kallsyms.as_ref().and_then(|k| k.resolve(*a)) {
                    Some(f) => {
                        use std::fmt::Write as _;
                        let _ = write!(buf, "{f}");
                    }
                    None => {
                        use std::fmt::Write as _;
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
            if ev.str_buf(schema.field(f.text)).is_none() || owner.exe_inode == 0 {
                continue;
            }
            let Some(map) = self.user_map.as_mut() else {
                continue;
            };
            let Some(addrs) = map.lookup(id) else {
                continue;
            };
            self.addrs = addrs;
            let Some(buf) = ev.str_buf(schema.field(f.text)) else {
                continue;
            };
            match self.user.pid_of(&owner) {
                Some(pid) => self.user.symbolize(pid, owner.exe_inode, &self.addrs, buf),
                None => {
                    let n = self.addrs.len();
                    for i in 0..n {
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
