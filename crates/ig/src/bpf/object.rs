//! What we need from a gadget's ELF object before the kernel sees it: the
//! raw `.BTF` section, every program with its section name, and `.rodata`
//! symbols with their initial bytes.
//!
//! Pure parsing over the `object` crate; needs no privileges. aya parses the
//! object again to load it; it does not tell us a program's section name,
//! which we need to attach by section, hence this module.
//!
//! [`check_for_aya`] refuses, with a message, the objects on which aya's
//! own parsing would panic, abort or read an invalid value (found by the
//! `object` fuzz target, which goes on through aya's parsing as `ig run`
//! does): a gadget image is untrusted input, and `ig run` runs as root.

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SectionKind, SymbolKind};

use crate::btf::{Btf, Kind};

/// Why an object file cannot be read as a gadget.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Not a valid ELF object.
    #[error("not a valid ELF object")]
    Elf(#[source] object::Error),
    /// The object has no .BTF section (compile with clang -g and keep .BTF when
    /// stripping).
    #[error("the object has no .BTF section (compile with clang -g and keep .BTF when stripping)")]
    MissingBtf,
    /// Reading section `section` failed.
    #[error("reading section {section}")]
    Section {
        /// The section.
        section: String,
        /// Why.
        #[source]
        source: object::Error,
    },
    /// The object is `object`-endian but this machine runs `host`-endian eBPF
    /// (build it for this architecture).
    #[error(
        "the object is {object}-endian but this machine runs {host}-endian eBPF (build it for this architecture)"
    )]
    ByteOrder {
        /// The object's byte order.
        object: &'static str,
        /// This machine's.
        host: &'static str,
    },
    /// BTF variable `name` has linkage `linkage`.
    #[error(
        "BTF variable {name} has linkage {linkage}; the kernel knows only 0 (static), 1 (global) and 2 (extern)"
    )]
    VarLinkage {
        /// The name.
        name: String,
        /// The linkage.
        linkage: u32,
    },
    /// The object's global data sections (.bss, .data, .rodata) take `size`
    /// bytes.
    #[error(
        "the object's global data sections (.bss, .data, .rodata) take {size} bytes; at most {MAX_GLOBAL_DATA} can be loaded"
    )]
    GlobalDataTooLarge {
        /// The size in bytes.
        size: u64,
    },
    /// More programs than [`MAX_PROGRAMS`]: aya's memory grows with the
    /// square of the programs in one section (2,000 no-op programs took
    /// 124 MB before the kernel saw any).
    #[error(
        "the object has {count} programs; at most {MAX_PROGRAMS} can be loaded (upstream's gadgets have at most 52)"
    )]
    TooManyPrograms {
        /// Functions in program sections.
        count: usize,
    },
    /// Symbol `symbol` (`size` bytes at offset `offset`) does not lie inside
    /// its section `section` (`section_size` bytes at address
    /// `section_address`).
    #[error(
        "symbol {symbol} ({size} bytes at offset {offset}) does not lie inside its section {section} ({section_size} bytes at address {section_address})"
    )]
    SymbolOutsideSection {
        /// The symbol.
        symbol: String,
        /// The section.
        section: String,
        /// The offset in bytes.
        offset: u64,
        /// The size in bytes.
        size: u64,
        /// The section size.
        section_size: u64,
        /// The section address.
        section_address: u64,
    },
    /// Relocation at offset `offset` of section `section` patches a 16-byte
    /// load but function `function` ends at `end`.
    #[error(
        "relocation at offset {offset} of section {section} patches a 16-byte load but function {function} ends at {end}"
    )]
    RelocationAtEnd {
        /// The section.
        section: String,
        /// The function.
        function: String,
        /// The offset in bytes.
        offset: u64,
        /// Where the function ends.
        end: u64,
    },
    /// Relocation at offset `offset` of section `section` refers to `symbol`,
    /// which is neither a function defined in the object nor a code section
    /// (calls to external functions cannot be loaded).
    #[error(
        "relocation at offset {offset} of section {section} refers to {symbol}, which is neither a function defined in the object nor a code section (calls to external functions cannot be loaded)"
    )]
    UnresolvableCode {
        /// The section.
        section: String,
        /// The offset in bytes.
        offset: u64,
        /// The symbol.
        symbol: String,
    },
    /// BTF type `id` (`what`) refers to type `target`, a `kind`, which the
    /// kernel does not allow there.
    #[error(
        "BTF type {id} ({what}) refers to type {target}, a {kind}, which the kernel does not allow there"
    )]
    BtfShape {
        /// The id.
        id: u32,
        /// Which reference.
        what: &'static str,
        /// The type it refers to.
        target: u32,
        /// That type's kind.
        kind: &'static str,
    },
    /// The object's .BTF.ext is malformed.
    #[error("the object's .BTF.ext is malformed: {reason}")]
    BtfExt {
        /// Why.
        reason: String,
    },
}

/// Most bytes of global data (`.bss`, `.data`, `.rodata` and their
/// `.name.suffix` variants) an object may declare. aya allocates each
/// section whole before the kernel is asked; the kernel refuses a map
/// value this large anyway.
pub const MAX_GLOBAL_DATA: u64 = 64 << 20;

/// The most programs (functions in sections other than `.text`) an object
/// may have: ten times what the largest of upstream's gadgets has (52, in
/// top_cuda_memory). aya's memory grows with the square of the programs of
/// one section: 256, 512, 1,000 and 2,000 no-op programs took 28, 31, 50
/// and 124 MB of RSS (docs/reliability.md).
pub const MAX_PROGRAMS: usize = 512;

/// One BPF program of the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramInfo {
    /// The function name; aya names programs by it.
    pub name: String,
    /// The ELF section, e.g. `tracepoint/syscalls/sys_enter_execve`.
    pub section: String,
}

/// A global in `.rodata` (a `const volatile` variable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RodataSymbol {
    /// The variable's name.
    pub name: String,
    /// Its offset in `.rodata`.
    pub offset: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// The parsed parts of a gadget object.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    /// The `.BTF` section.
    pub btf: Vec<u8>,
    /// The programs, in section order.
    pub programs: Vec<ProgramInfo>,
    /// The `.rodata` section (empty: none).
    pub rodata: Vec<u8>,
    /// The variables of `.rodata`.
    pub rodata_symbols: Vec<RodataSymbol>,
    /// The `license` section's text.
    pub license: Option<String>,
}

impl ObjectInfo {
    /// Read the ELF object `data`; fails on what the loader would refuse.
    pub fn parse(data: &[u8]) -> Result<Self, ObjectError> {
        let file = object::File::parse(data).map_err(ObjectError::Elf)?;
        let section_data = |name: &str| -> Result<Option<Vec<u8>>, ObjectError> {
            match file.section_by_name(name) {
                None => Ok(None),
                Some(s) => {
                    s.data()
                        .map(|d| Some(d.to_vec()))
                        .map_err(|source| ObjectError::Section {
                            section: name.to_owned(),
                            source,
                        })
                }
            }
        };
        let btf = section_data(".BTF")?.ok_or(ObjectError::MissingBtf)?;
        let rodata = section_data(".rodata")?.unwrap_or_default();
        let license = section_data("license")?.map(|d| {
            String::from_utf8_lossy(d.split(|&b| b == 0).next().unwrap_or_default()).into_owned()
        });

        let rodata_index = file.section_by_name(".rodata").map(|s| s.index());
        let mut programs = Vec::new();
        let mut rodata_symbols = Vec::new();
        for sym in file.symbols() {
            let (Some(idx), Ok(name)) = (sym.section_index(), sym.name()) else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            if Some(idx) == rodata_index && sym.kind() == SymbolKind::Data {
                rodata_symbols.push(RodataSymbol {
                    name: name.to_owned(),
                    offset: sym.address(),
                    size: sym.size(),
                });
                continue;
            }
            if sym.kind() != SymbolKind::Text || !sym.is_global() {
                continue;
            }
            let Ok(section) = file.section_by_index(idx) else {
                continue;
            };
            // `.text` holds subprograms called by the real programs.
            if section.kind() != SectionKind::Text || section.name() == Ok(".text") {
                continue;
            }
            let Ok(section_name) = section.name() else {
                continue;
            };
            programs.push(ProgramInfo {
                name: name.to_owned(),
                section: section_name.to_owned(),
            });
        }
        programs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            btf,
            programs,
            rodata,
            rodata_symbols,
            license,
        })
    }

    /// Initial bytes of a `.rodata` variable, if it exists and lies inside
    /// the section.
    pub fn rodata_value(&self, name: &str) -> Option<&[u8]> {
        let s = self.rodata_symbols.iter().find(|s| s.name == name)?;
        let start = usize::try_from(s.offset).ok()?;
        let end = start.checked_add(usize::try_from(s.size).ok()?)?;
        self.rodata.get(start..end)
    }
}

/// Refuse what aya 0.14 would mishandle in `ig run` (`EbpfLoader::load`
/// parses the object before asking the kernel anything): every case is a
/// finding of the `object` fuzz target, with a regression test below.
///
/// - An object of the other byte order: aya reads part of BTF (a VAR's
///   linkage) in the host's order, so every global variable of such an
///   object has an invalid linkage (the kernel could not run it anyway).
/// - A BTF VAR with a linkage beyond 2: aya stores it in an enum of four
///   values without checking (undefined behaviour; a crash here).
/// - Global data sections larger than [`MAX_GLOBAL_DATA`] in total: aya
///   allocates `.bss` from its declared size (an abort for a huge one).
/// - More than [`MAX_PROGRAMS`] programs: aya's memory is quadratic in
///   the programs of one section.
/// - A function symbol outside its code section, a map symbol outside a
///   legacy `maps` section (or such a section with a load address, which
///   no relocatable object has): aya slices the section by the symbol
///   without checking (a panic).
///
/// `data` is the object as `ig run` hands it to aya (after
/// [`super::compat::for_aya`]), `btf` its parsed `.BTF`.
pub fn check_for_aya(data: &[u8], btf: &Btf) -> Result<(), ObjectError> {
    let order = |big: bool| if big { "big" } else { "little" };
    if btf.is_big_endian() != cfg!(target_endian = "big") {
        return Err(ObjectError::ByteOrder {
            object: order(btf.is_big_endian()),
            host: order(cfg!(target_endian = "big")),
        });
    }
    for (id, t) in btf.types() {
        if let Kind::Var(v) = &t.kind
            && v.linkage.raw() > 2
        {
            return Err(ObjectError::VarLinkage {
                name: btf.name_of(id).unwrap_or("?").to_owned(),
                linkage: v.linkage.raw(),
            });
        }
    }
    check_btf_shape(btf)?;
    let file = object::File::parse(data).map_err(ObjectError::Elf)?;
    let mut global_data = 0u64;
    for s in file.sections() {
        let name = s.name().unwrap_or("");
        if [".bss", ".data", ".rodata"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            global_data = global_data.saturating_add(s.size());
        }
    }
    if global_data > MAX_GLOBAL_DATA {
        return Err(ObjectError::GlobalDataTooLarge { size: global_data });
    }
    let mut functions: Vec<(object::SectionIndex, u64, u64, String)> = Vec::new();
    for sym in file.symbols() {
        let Some(idx) = sym.section_index() else {
            continue;
        };
        let Ok(section) = file.section_by_index(idx) else {
            continue;
        };
        // aya slices these sections by their symbols: code by functions,
        // a legacy `maps` section by its map definitions.
        let legacy_maps = section.name().is_ok_and(|n| n.starts_with("maps"));
        if sym.kind() != SymbolKind::Text && !legacy_maps {
            continue;
        }
        let len = section.data().map_or(0, |d| d.len() as u64);
        let inside = section.address() == 0
            && sym
                .address()
                .checked_add(sym.size())
                .is_some_and(|end| end <= len);
        if !inside {
            return Err(ObjectError::SymbolOutsideSection {
                symbol: sym.name().unwrap_or("?").to_owned(),
                section: section.name().unwrap_or("?").to_owned(),
                offset: sym.address(),
                size: sym.size(),
                section_size: len,
                section_address: section.address(),
            });
        }
        if sym.kind() == SymbolKind::Text {
            let name = sym.name().unwrap_or("?").to_owned();
            functions.push((idx, sym.address(), sym.address() + sym.size(), name));
        }
    }
    let programs = functions
        .iter()
        .filter(|(idx, ..)| {
            file.section_by_index(*idx)
                .is_ok_and(|s| s.name().is_ok_and(|n| n != ".text"))
        })
        .count();
    if programs > MAX_PROGRAMS {
        return Err(ObjectError::TooManyPrograms { count: programs });
    }
    // By section and end, the earliest start for each end: the functions
    // that end within 16 bytes after a relocation are found by a binary
    // search and at most 15 steps, so an object of many functions and
    // relocations (hostile ones overlapping included) stays near linear.
    functions.sort_unstable_by_key(|(idx, start, end, _)| (idx.0, *end, *start));
    functions.dedup_by(|later, first| later.0 == first.0 && later.2 == first.2);
    // A relocation of a map or global data patches an `ld_imm64`, two
    // instructions: aya writes the second without checking it exists.
    for section in file.sections() {
        if section.kind() != SectionKind::Text {
            continue;
        }
        for (offset, reloc) in section.relocations() {
            // A call or code address: aya resolves it only to a defined
            // function, or to a code section symbol with a 32-bit (call)
            // or 64-bit (address) relocation; anything else panics there.
            if let object::RelocationTarget::Symbol(target) = reloc.target()
                && let Ok(sym) = file.symbol_by_index(target)
            {
                let in_code = sym
                    .section_index()
                    .and_then(|i| file.section_by_index(i).ok())
                    .is_some_and(|s| s.kind() == SectionKind::Text);
                let resolvable = match sym.kind() {
                    SymbolKind::Text => sym.section_index().is_some(),
                    SymbolKind::Section => !in_code || matches!(reloc.size(), 32 | 64),
                    _ => !in_code,
                };
                if !resolvable {
                    let symbol = match sym.name() {
                        Ok(n) if !n.is_empty() => n.to_owned(),
                        _ => format!("symbol {}", target.0),
                    };
                    return Err(ObjectError::UnresolvableCode {
                        section: section.name().unwrap_or("?").to_owned(),
                        offset,
                        symbol,
                    });
                }
            }
            // A function of this section that holds `offset` and ends
            // less than two instructions after it.
            let here = section.index().0;
            let first = functions.partition_point(|(i, _, end, _)| (i.0, *end) <= (here, offset));
            let within = functions[first..]
                .iter()
                .take_while(|(i, _, end, _)| i.0 == here && *end < offset.saturating_add(16))
                .find(|(_, start, ..)| *start <= offset);
            if let Some((_, _, end, function)) = within {
                return Err(ObjectError::RelocationAtEnd {
                    section: section.name().unwrap_or("?").to_owned(),
                    function: function.clone(),
                    offset,
                    end: *end,
                });
            }
        }
    }
    if let Some(ext) = file.section_by_name(".BTF.ext") {
        let ext = ext.data().map_err(|source| ObjectError::Section {
            section: ".BTF.ext".into(),
            source,
        })?;
        let raw_btf = file
            .section_by_name(".BTF")
            .and_then(|s| s.data().ok())
            .unwrap_or_default();
        check_btf_ext(ext, raw_btf, btf).map_err(|reason| ObjectError::BtfExt { reason })?;
    }
    Ok(())
}

/// The kind `id` names once typedefs and qualifiers are skipped, if it is
/// one aya's CO-RE matching cannot take in a place that is `(value)` a
/// member or array element, or else a pointer target, a parameter or a
/// return type. (`None` for a broken chain: aya reports those itself.)
fn misplaced_kind(btf: &Btf, id: u32, value: bool) -> Option<(u32, &'static str)> {
    let target = btf.skip_modifiers(id).ok()?;
    let kind = btf.kind(target).ok()?;
    let bad = match kind {
        Kind::Func { .. } | Kind::Var(_) | Kind::Datasec(_) | Kind::DeclTag { .. } => true,
        Kind::Void | Kind::FuncProto(_) => value,
        _ => false,
    };
    bad.then(|| (target, kind.name()))
}

/// BTF shapes aya's CO-RE matching takes for granted (`unreachable!()` in
/// its `fields_are_compatible` and `types_are_compatible`), as the kernel
/// requires too: a struct or union member and an array element are
/// values (not void, a function, a prototype, a variable, a data section
/// or a declaration tag), a bitfield member is an integer or an enum
/// (`unwrap()` of its size in aya's field relocation), and a pointer, a
/// prototype's parameters and its return type name no function,
/// variable, data section or tag.
fn check_btf_shape(btf: &Btf) -> Result<(), ObjectError> {
    for (id, t) in btf.types() {
        let mut uses: Vec<(&'static str, u32, bool)> = Vec::new();
        match &t.kind {
            Kind::Struct(c) | Kind::Union(c) => {
                uses.extend(c.members.iter().map(|m| ("a member", m.ty, true)));
                // A bitfield is an integer or an enum, as the kernel
                // requires: aya sizes the load of one from its type and
                // panics (`unwrap`) on a type without a size.
                for m in c.members.iter().filter(|m| m.bitfield_size > 0) {
                    if let Ok(target) = btf.skip_modifiers(m.ty)
                        && let Ok(kind) = btf.kind(target)
                        && !matches!(kind, Kind::Int(_) | Kind::Enum(_) | Kind::Enum64(_))
                    {
                        return Err(ObjectError::BtfShape {
                            id,
                            what: "a bitfield member",
                            target,
                            kind: kind.name(),
                        });
                    }
                }
            }
            Kind::Array(a) => uses.push(("an array's element", a.elem, true)),
            Kind::Ptr(to) => uses.push(("a pointer", *to, false)),
            Kind::FuncProto(p) => {
                uses.push(("a return type", p.ret, false));
                uses.extend(p.params.iter().map(|q| ("a parameter", q.ty, false)));
            }
            _ => {}
        }
        for (what, ty, value) in uses {
            if let Some((target, kind)) = misplaced_kind(btf, ty, value) {
                return Err(ObjectError::BtfShape {
                    id,
                    what,
                    target,
                    kind,
                });
            }
        }
    }
    Ok(())
}

/// `.BTF.ext` as aya 0.14 reads it (`BtfExt::parse`), refusing what it
/// would panic on: an info block past the section, a record size too
/// small for its records (or 0), a section entry whose records run past
/// its block, a section name that is not a string of `.BTF`. The header is
/// read in the host's byte order, as aya does (the object's order is the
/// host's, see [`check_for_aya`]).
fn check_btf_ext(ext: &[u8], raw_btf: &[u8], btf: &Btf) -> Result<(), String> {
    let u32_at = |d: &[u8], o: usize| -> Option<u32> {
        let b: [u8; 4] = d.get(o..o.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_ne_bytes(b))
    };
    // The string table of .BTF: after its header, at str_off.
    let strings = (|| {
        let hdr_len = usize::try_from(u32_at(raw_btf, 4)?).ok()?;
        let off = hdr_len.checked_add(usize::try_from(u32_at(raw_btf, 16)?).ok()?)?;
        let len = usize::try_from(u32_at(raw_btf, 20)?).ok()?;
        raw_btf.get(off..off.checked_add(len)?)
    })()
    .unwrap_or_default();
    // aya slices the table at the offset before it looks for the NUL.
    let is_string = |o: usize| strings.get(o..).is_some_and(|rest| rest.contains(&0));
    let hdr_len = u32_at(ext, 4).ok_or("shorter than its header")?;
    if hdr_len as usize > ext.len() {
        return Err(format!("header length {hdr_len} past the section"));
    }
    // Fields past hdr_len read as 0 (an older, shorter header).
    let field = |o: usize| {
        if o + 4 <= hdr_len as usize {
            u32_at(ext, o).unwrap_or(0)
        } else {
            0
        }
    };
    for (what, at, min_rec, named) in [
        ("func_info", 8, 8, true),
        ("line_info", 16, 16, true),
        ("core_relo", 24, 16, true),
    ] {
        let (off, len) = (field(at), field(at + 4));
        if len == 0 {
            continue;
        }
        let start = hdr_len
            .checked_add(off)
            .ok_or(format!("{what} offset {off} overflows"))? as usize;
        let end = start + len as usize;
        if len < 4 || end > ext.len() {
            return Err(format!("{what} ({len} bytes at {start}) past the section"));
        }
        let rec_size = u32_at(ext, start).unwrap_or(0) as usize;
        if rec_size < min_rec {
            return Err(format!(
                "{what} record size {rec_size} (at least {min_rec})"
            ));
        }
        let block = &ext[start + 4..end];
        let mut o = 0usize;
        while o + 8 < block.len() {
            let name = u32_at(block, o).unwrap_or(0) as usize;
            let count = u32_at(block, o + 4).unwrap_or(0) as usize;
            o += 8;
            let size = rec_size
                .checked_mul(count)
                .filter(|n| o + n <= block.len())
                .ok_or(format!(
                    "{what}: {count} records of {rec_size} bytes past the section"
                ))?;
            let records = &block[o..o + size];
            o += size;
            if named && !is_string(name) {
                return Err(format!(
                    "{what}: section name offset {name} is not a string of .BTF"
                ));
            }
            // A CO-RE relocation names its access path (`0:1:2`) by
            // offset, and its root type, which aya matches by kind.
            if what == "core_relo" {
                for r in records.chunks_exact(rec_size) {
                    let access = u32_at(r, 8).unwrap_or(0) as usize;
                    if !is_string(access) {
                        return Err(format!(
                            "CO-RE relocation access string offset {access} is not a string of .BTF"
                        ));
                    }
                    let ty = u32_at(r, 4).unwrap_or(0);
                    if let Some((target, kind)) = misplaced_kind(btf, ty, false) {
                        return Err(format!(
                            "a CO-RE relocation of type {ty} (type {target}, a {kind})"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs of `cargo xtask fuzz object` on which aya's own parsing
    /// (what `ig run` does next) panicked, aborted or crashed; each is
    /// refused by [`check_for_aya`] for the reason named.
    #[test]
    fn what_aya_would_crash_on_is_refused_first() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let check = |path: &str| {
            let data = crate::bpf::compat::for_aya(&std::fs::read(root.join(path)).unwrap());
            let info = ObjectInfo::parse(&data).unwrap();
            let btf = Btf::parse(&info.btf).unwrap();
            check_for_aya(&data, &btf).unwrap_err()
        };
        let regression = |name: &str| check(&format!("fuzz/regressions/object/aya-{name}"));
        // aya: `instructions[ins_index + 1]` past the function (panic).
        assert!(matches!(
            regression("relocation-at-function-end"),
            ObjectError::RelocationAtEnd {
                offset: 88,
                end: 96,
                ..
            }
        ));
        // aya: `section.data[start..end]` with the symbol's bounds, for a
        // function and for a legacy map definition (panics).
        for name in ["function-outside-section", "map-outside-its-section"] {
            let e = regression(name);
            assert!(
                matches!(e, ObjectError::SymbolOutsideSection { .. }),
                "{name}: {e}"
            );
        }
        // aya: the record count of a .BTF.ext block slices past it (panic).
        for name in [
            "btf-ext-func-info-count",
            "btf-ext-line-info-count",
            "btf-ext-core-relo-count",
        ] {
            let e = regression(name);
            assert!(
                matches!(&e, ObjectError::BtfExt { reason } if reason.contains("records")),
                "{name}: {e}"
            );
        }
        // aya: `Btf::string_at` slices before it checks (panic).
        let e = regression("btf-ext-access-string");
        assert!(e.to_string().contains("access string offset"), "{e}");
        // aya: `todo!()` for a code relocation to a label (panic).
        assert!(matches!(
            regression("relocation-to-a-label"),
            ObjectError::UnresolvableCode { .. }
        ));
        // aya: `unreachable!()` for a member whose type is a declaration
        // tag, in CO-RE field matching (panic). (The same BTF also has a
        // pointer to it, which is found first.)
        let e = regression("member-of-a-decl-tag");
        assert!(
            matches!(
                &e,
                ObjectError::BtfShape {
                    kind: "decl_tag",
                    ..
                }
            ),
            "{e}"
        );
        // aya: `member_ty.size().unwrap()` for a bitfield member whose
        // type has no size, in CO-RE field relocation (panic).
        let e = regression("bitfield-without-a-size");
        assert!(
            matches!(
                &e,
                ObjectError::BtfShape {
                    what: "a bitfield member",
                    ..
                }
            ),
            "{e}"
        );
        // aya: `vec![0; .bss size]` (allocation failure: abort).
        assert!(matches!(
            regression("huge-bss"),
            ObjectError::GlobalDataTooLarge { .. }
        ));
        // aya: a linkage of 262145 read into a four-value enum (undefined
        // behaviour: a segmentation fault when the BTF is cloned).
        assert!(matches!(
            regression("var-linkage"),
            ObjectError::VarLinkage {
                linkage: 262145,
                ..
            }
        ));
        // aya reads VAR linkages in the host's order: every variable of a
        // big-endian object would be invalid on this machine.
        assert!(matches!(
            check("fuzz/corpus/object/sample.bpfeb.o"),
            ObjectError::ByteOrder { .. }
        ));
        // Gadgets we build are fine.
        for ok in [
            "fuzz/corpus/object/sample.bpf.o",
            "fuzz/corpus/object/trace_exec.bpf.o",
            "fuzz/corpus/object/load_kconfig.bpf.o",
        ] {
            let data = crate::bpf::compat::for_aya(&std::fs::read(root.join(ok)).unwrap());
            let info = ObjectInfo::parse(&data).unwrap();
            let btf = Btf::parse(&info.btf).unwrap();
            check_for_aya(&data, &btf).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(matches!(
            ObjectInfo::parse(b"not an elf"),
            Err(ObjectError::Elf(_))
        ));
        assert!(matches!(ObjectInfo::parse(&[]), Err(ObjectError::Elf(_))));
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(64, 0xff);
        assert!(ObjectInfo::parse(&elf).is_err());
    }
}
