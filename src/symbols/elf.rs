//! Function symbols of an ELF file, looked up by file offset.
//!
//! A stack address becomes a file offset through `/proc/PID/maps`; the
//! offset becomes a virtual address of the file through its `PT_LOAD`
//! segments, and that address falls in a function of `.symtab` (or of
//! `.dynsym` when the file was stripped).

use object::{Object as _, ObjectSegment as _, ObjectSymbol as _, SymbolKind};

/// The file is not ELF we can read.
#[derive(Debug, thiserror::Error)]
#[error("parsing ELF")]
pub struct ElfError(#[source] object::Error);

#[derive(Debug)]
struct Func {
    addr: u64,
    size: u64,
    name: Box<str>,
}

/// A loadable segment: file range → virtual address.
#[derive(Debug)]
struct Segment {
    offset: u64,
    size: u64,
    vaddr: u64,
}

/// The functions of one ELF file, sorted by address.
#[derive(Debug, Default)]
pub struct ElfSymbols {
    funcs: Vec<Func>,
    segments: Vec<Segment>,
}

/// A function and how far into it an address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserFrame<'a> {
    /// The function.
    pub name: &'a str,
    /// Bytes from its start.
    pub offset: u64,
}

impl std::fmt::Display for UserFrame<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{:#x}", self.name, self.offset)
    }
}

impl ElfSymbols {
    /// Read the symbols out of ELF bytes: `.symtab` when present, else
    /// `.dynsym`. A file without either gives an empty table.
    pub fn parse(data: &[u8]) -> Result<Self, ElfError> {
        let file = object::File::parse(data).map_err(ElfError)?;
        let collect = |syms: &mut dyn Iterator<Item = object::Symbol<'_, '_>>| -> Vec<Func> {
            syms.filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
                .filter_map(|s| {
                    Some(Func {
                        addr: s.address(),
                        size: s.size(),
                        name: s.name().ok().filter(|n| !n.is_empty())?.into(),
                    })
                })
                .collect()
        };
        let mut funcs = collect(&mut file.symbols());
        if funcs.is_empty() {
            funcs = collect(&mut file.dynamic_symbols());
        }
        // Of aliases at one address prefer one with a size (the function
        // itself rather than a zero-sized label), then the first listed.
        funcs.sort_by(|a, b| a.addr.cmp(&b.addr).then((b.size > 0).cmp(&(a.size > 0))));
        funcs.dedup_by_key(|f| f.addr);
        let segments = file
            .segments()
            .filter_map(|s| {
                let (offset, size) = s.file_range();
                (size > 0).then(|| Segment {
                    offset,
                    size,
                    vaddr: s.address(),
                })
            })
            .collect();
        Ok(Self { funcs, segments })
    }

    /// How many functions.
    pub fn len(&self) -> usize {
        self.funcs.len()
    }

    /// Whether it has no function.
    pub fn is_empty(&self) -> bool {
        self.funcs.is_empty()
    }

    /// The virtual address (as in the symbol table) of file offset `off`.
    pub fn offset_to_vaddr(&self, off: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| off >= s.offset && off - s.offset < s.size)
            .map(|s| off - s.offset + s.vaddr)
    }

    /// The function holding virtual address `vaddr`. A function with a size
    /// must contain it; a sizeless one (assembly labels) takes everything up
    /// to the next symbol.
    pub fn resolve_vaddr(&self, vaddr: u64) -> Option<UserFrame<'_>> {
        let i = self.funcs.partition_point(|f| f.addr <= vaddr);
        let f = self.funcs.get(i.checked_sub(1)?)?;
        let offset = vaddr - f.addr;
        (f.size == 0 || offset < f.size).then_some(UserFrame {
            name: &f.name,
            offset,
        })
    }

    /// The function at file offset `off`.
    pub fn resolve_offset(&self, off: u64) -> Option<UserFrame<'_>> {
        self.resolve_vaddr(self.offset_to_vaddr(off)?)
    }
}
