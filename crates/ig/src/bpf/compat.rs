//! Rewrites that let aya 0.14 load objects built with libbpf's conventions,
//! as upstream's builder builds them (clang, upstream's headers and its own
//! `vmlinux.h`). libbpf and cilium/ebpf (upstream's loader) accept each of
//! these; aya refuses or mishandles them, so they are rewritten here, on
//! the object's bytes, before aya parses them. Why each is needed, with the
//! reproducers, is in `docs/design/005-libbpf-objects-on-aya.md`.
//!
//! Without the kernel ([`for_aya`], run by `bpf::inspect` for `ig run` and
//! `ig image build` alike):
//! - numbered socket filter sections (`socket1`): aya knows only `socket`
//!   and `socket/NAME`. The section is renamed `socket/1` (a new string:
//!   the old name often shares its bytes with `.relsocket1`), in the ELF and
//!   in `.BTF.ext`, whose records aya finds by section name.
//! - program arrays (`BPF_MAP_TYPE_PROG_ARRAY`) declared with
//!   `__array(values, int())`, as upstream's `user_stack_map.h` does: aya
//!   reads any `values` member as the inner map of a map-in-map and fails
//!   ("unexpected BTF type id"). The member is made anonymous (its name
//!   offset 0, in place): aya skips it, the kernel sees the same layout.
//!   libbpf would fill the array from `values` initializers; upstream's
//!   are empty, and so is the map aya creates.
//!
//! Read, not rewritten ([`core_roots`]): the names of the root types of
//! the CO-RE relocations aya will do, so that the loader can hand aya the
//! subset of the kernel's BTF they look up (`btf::subset`).
//!
//! With the kernel's BTF ([`resolve_core`], at load time), CO-RE
//! relocations aya cannot compute: type matches (`bpf_core_type_matches`,
//! kind 12, which aya does not know), field accesses through a flexible
//! array (`ctx->args[i]` of `struct syscall_trace_enter`: aya's check of
//! the local access compares the array index with the member count), and
//! fields of the socket enricher's `gadget_socket_value`, which upstream's
//! loader relocates against a BTF of the enricher's, not the kernel's (see
//! [`SOCKET_VALUE`]). They are computed here with libbpf's rules, written
//! into the instructions, and removed from `.BTF.ext`; aya relocates the
//! rest.
//!
//! With the running kernel's values ([`resolve_kconfig`], at load time),
//! `.kconfig` externs (`extern int LINUX_KERNEL_VERSION __kconfig;`,
//! `CONFIG_*`): aya sizes every BTF data section from an ELF section, and
//! `.kconfig` has none. The externs get a section of their own,
//! [`KCONFIG_SECTION`], filled as libbpf fills its `.kconfig` map, and
//! aya loads it as it loads `.rodata`. The loader gathers the values
//! ([`KernelFacts`]: `uname`, the kernel's configuration, its BTF).
//!
//! A section that grows moves to the end of the file (section headers may
//! point anywhere); nothing else moves. Pure: bytes in, bytes out. Objects
//! that are not 64-bit little-endian ELF with well-formed BTF are returned
//! unchanged, for the checks after this to report.

use std::collections::HashMap;

use crate::btf::{Btf, Kind, TypeId};

mod inject;
mod replace;
pub use inject::inject_at_function;
pub use replace::replace_maps;

/// Why an object cannot be rewritten for aya.
#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    /// A CO-RE relocation cannot be resolved against the kernel's BTF.
    #[error(
        "CO-RE relocation #{index} of section {section} (instruction {insn}, {what} of {root} {access}): {reason}"
    )]
    Core {
        /// The section.
        section: String,
        /// The relocation's index in its section.
        index: usize,
        /// The instruction index.
        insn: u32,
        /// What the relocation computes (a field's offset, a type's size...).
        what: &'static str,
        /// The type the access starts from.
        root: String,
        /// The access string (`0:1:2`).
        access: String,
        /// Why it cannot be resolved.
        reason: String,
    },
    /// Section `section` of the object, named by .BTF.ext, is missing or too
    /// short.
    #[error("section {section} of the object, named by .BTF.ext, is missing or too short")]
    Section {
        /// The section.
        section: String,
    },
    /// The object has no function `function` to put the packet filter in front
    /// of.
    #[error("the object has no function {function} to put code in front of")]
    NoFunction {
        /// The function.
        function: String,
    },
    /// A reference to a replaced map that is not a 64-bit load of its address.
    #[error(
        "section {section}, offset {offset:#x}: a reference to map {map} that is not a 64-bit load of its address"
    )]
    MapReference {
        /// The map.
        map: String,
        /// The section.
        section: String,
        /// The offset in bytes.
        offset: usize,
    },
    /// A `.kconfig` extern cannot be given a value.
    #[error(".kconfig extern {symbol} of the object: {reason}")]
    Kconfig {
        /// The symbol.
        symbol: String,
        /// Why.
        reason: String,
    },
    /// The object's `.kconfig` section cannot be filled.
    #[error("the object's .kconfig externs cannot be given values: {reason}")]
    KconfigObject {
        /// Why.
        reason: String,
    },
}

/// `BPF_MAP_TYPE_PROG_ARRAY`.
const MAP_TYPE_PROG_ARRAY: u32 = 3;

// CO-RE relocation kinds (`enum bpf_core_relo_kind`).
const FIELD_BYTE_OFFSET: u32 = 0;
const FIELD_BYTE_SIZE: u32 = 1;
const FIELD_EXISTS: u32 = 2;
const TYPE_MATCHES: u32 = 12;

/// What libbpf writes over an instruction whose relocation found no
/// target: a call of helper 0xbad2310 ("bad relo"), which the verifier
/// refuses only if the instruction is reachable.
const POISON_HELPER: i32 = 0x0bad_2310;

/// The rewrites that need no kernel (see the module doc). Returns the
/// object unchanged when it needs none.
pub fn for_aya(object: &[u8]) -> Vec<u8> {
    let mut out = object.to_vec();
    rename_socket_sections(&mut out);
    rewrite_prog_array_maps(&mut out);
    out
}

// ---------------------------------------------------------------------------
// ELF: just enough to find, patch and move sections of a 64-bit
// little-endian relocatable object (the only kind aya loads on this host).

fn rd_u16(d: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        d.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn rd_u32(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn rd_u64(d: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        d.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}
fn wr_u32(d: &mut [u8], o: usize, v: u32) {
    if let Some(b) = d.get_mut(o..o + 4) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}
fn wr_u64(d: &mut [u8], o: usize, v: u64) {
    if let Some(b) = d.get_mut(o..o + 8) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}

/// One section header.
#[derive(Clone, Copy, Debug)]
struct Shdr {
    /// File offset of the header itself.
    at: usize,
    name: u32,
    /// `sh_type`.
    kind: u32,
    offset: usize,
    size: usize,
    /// `sh_link`.
    link: u32,
}

struct Elf {
    shoff: usize,
    shentsize: usize,
    shnum: usize,
    shstrndx: usize,
}

impl Elf {
    fn parse(d: &[u8]) -> Option<Elf> {
        // 64-bit, little endian.
        if d.get(..6)? != b"\x7fELF\x02\x01" {
            return None;
        }
        Some(Elf {
            shoff: usize::try_from(rd_u64(d, 0x28)?).ok()?,
            shentsize: usize::from(rd_u16(d, 0x3a)?),
            shnum: usize::from(rd_u16(d, 0x3c)?),
            shstrndx: usize::from(rd_u16(d, 0x3e)?),
        })
        .filter(|e| e.shentsize >= 0x40)
    }

    fn header(&self, d: &[u8], i: usize) -> Option<Shdr> {
        let at = self.shoff.checked_add(i.checked_mul(self.shentsize)?)?;
        // The whole header is in the file (so `at + 0x40` cannot overflow).
        d.get(at..at.checked_add(0x40)?)?;
        let sh = Shdr {
            at,
            name: rd_u32(d, at)?,
            kind: rd_u32(d, at + 4)?,
            offset: usize::try_from(rd_u64(d, at + 0x18)?).ok()?,
            size: usize::try_from(rd_u64(d, at + 0x20)?).ok()?,
            link: rd_u32(d, at + 0x28)?,
        };
        Some(sh)
    }

    fn headers<'a>(&'a self, d: &'a [u8]) -> impl Iterator<Item = Shdr> + 'a {
        (1..self.shnum).filter_map(move |i| self.header(d, i))
    }

    /// The bytes of section `sh` (`None` if they are not in the file, as
    /// for `.bss`, which this module never asks for).
    fn data<'a>(d: &'a [u8], sh: &Shdr) -> Option<&'a [u8]> {
        d.get(sh.offset..sh.offset.checked_add(sh.size)?)
    }

    fn name<'a>(&self, d: &'a [u8], sh: &Shdr) -> Option<&'a [u8]> {
        let strtab = Elf::data(d, &self.header(d, self.shstrndx)?)?;
        let tail = strtab.get(sh.name as usize..)?;
        Some(&tail[..tail.iter().position(|&b| b == 0)?])
    }

    fn find(&self, d: &[u8], name: &str) -> Option<Shdr> {
        self.headers(d)
            .find(|sh| self.name(d, sh) == Some(name.as_bytes()))
    }
}

/// Give section `sh` the content `new`: in place when it fits, else
/// appended at the end of the file (8-byte aligned). Its header follows.
fn replace_section(out: &mut Vec<u8>, sh: &Shdr, new: &[u8]) {
    let offset = if new.len() <= sh.size {
        sh.offset
    } else {
        out.resize(out.len().next_multiple_of(8), 0);
        let o = out.len();
        out.resize(o + new.len(), 0);
        o
    };
    out[offset..offset + new.len()].copy_from_slice(new);
    wr_u64(out, sh.at + 0x18, offset as u64);
    wr_u64(out, sh.at + 0x20, new.len() as u64);
}

// ---------------------------------------------------------------------------
// BTF blobs: the header fields this module edits.

/// `(hdr_len, type_len, str_len)` of a little-endian blob laid out as
/// clang writes it: header, types, strings, nothing after.
fn btf_layout(b: &[u8]) -> Option<(usize, usize, usize)> {
    if rd_u16(b, 0)? != 0xeb9f {
        return None;
    }
    let [hdr, toff, tlen, soff, slen] = [4, 8, 12, 16, 20].map(|o| rd_u32(b, o));
    let (hdr, toff, tlen, soff, slen) = (hdr? as usize, toff?, tlen? as usize, soff?, slen?);
    (toff == 0 && soff as usize == tlen && hdr + tlen + slen as usize == b.len()).then_some((
        hdr,
        tlen,
        slen as usize,
    ))
}

/// A copy of BTF blob `b` with `strings` appended to its string section,
/// and the offset the first of them gets there.
fn btf_append_strings(b: &[u8], strings: &[u8]) -> Option<(Vec<u8>, u32)> {
    let (_, _, slen) = btf_layout(b)?;
    let mut out = Vec::with_capacity(b.len() + strings.len());
    out.extend_from_slice(b);
    out.extend_from_slice(strings);
    wr_u32(&mut out, 20, u32::try_from(slen + strings.len()).ok()?);
    Some((out, u32::try_from(slen).ok()?))
}

// ---------------------------------------------------------------------------
// Numbered socket filter sections.

/// `socket7` → `Some("7")`.
fn socket_number(name: &[u8]) -> Option<&[u8]> {
    let n = name.strip_prefix(b"socket")?;
    (!n.is_empty() && n.iter().all(u8::is_ascii_digit)).then_some(n)
}

fn rename_socket_sections(out: &mut Vec<u8>) {
    let Some(elf) = Elf::parse(out) else { return };
    let renames: Vec<(Shdr, Vec<u8>)> = elf
        .headers(out)
        .filter_map(|sh| {
            let n = socket_number(elf.name(out, &sh)?)?;
            Some((sh, n.to_vec()))
        })
        .collect();
    let Some(strtab) = elf.header(out, elf.shstrndx) else {
        return;
    };
    if renames.is_empty() {
        return;
    }
    let Some(mut table) = Elf::data(out, &strtab).map(<[u8]>::to_vec) else {
        return;
    };
    // `.BTF.ext` names its blocks by strings of `.BTF`: the same new names
    // go there, so that aya finds func_info and CO-RE records of a renamed
    // section.
    let mut btf_names = Vec::new();
    for (sh, n) in &renames {
        let off = table.len() as u32;
        table.extend_from_slice(b"socket/");
        table.extend_from_slice(n);
        table.push(0);
        wr_u32(out, sh.at, off);
        btf_names.push(format!("socket{}", String::from_utf8_lossy(n)));
    }
    replace_section(out, &strtab, &table);
    rename_btf_ext_sections(out, &btf_names);
}

/// Point `.BTF.ext` blocks of the sections named in `renames` (`socketN`)
/// at `socket/N` strings appended to `.BTF`.
fn rename_btf_ext_sections(out: &mut Vec<u8>, renames: &[String]) {
    let Some(elf) = Elf::parse(out) else { return };
    let (Some(btf_sh), Some(ext_sh)) = (elf.find(out, ".BTF"), elf.find(out, ".BTF.ext")) else {
        return;
    };
    let (Some(btf), Some(ext)) = (Elf::data(out, &btf_sh), Elf::data(out, &ext_sh)) else {
        return;
    };
    let Ok(parsed) = Btf::parse(btf) else { return };
    let mut ext = ext.to_vec();
    let mut strings = Vec::new();
    let mut new_offs = Vec::new();
    for old in renames {
        new_offs.push((old.as_str(), strings.len() as u32));
        strings.extend_from_slice(format!("socket/{}", &old[6..]).as_bytes());
        strings.push(0);
    }
    let Some((new_btf, base)) = btf_append_strings(btf, &strings) else {
        return;
    };
    let mut changed = false;
    for block in ext_blocks(&ext) {
        for (name_at, _) in block.sections {
            let Some(name) = rd_u32(&ext, name_at).and_then(|o| parsed.string_at(o)) else {
                continue;
            };
            if let Some((_, off)) = new_offs.iter().find(|(old, _)| *old == name) {
                wr_u32(&mut ext, name_at, base + off);
                changed = true;
            }
        }
    }
    if changed {
        replace_section(out, &btf_sh, &new_btf);
        if let Some(ext_sh) = Elf::parse(out).and_then(|e| e.find(out, ".BTF.ext")) {
            replace_section(out, &ext_sh, &ext);
        }
    }
}

/// One of the three record blocks of `.BTF.ext` (func_info, line_info,
/// core_relo): where its header fields are and what it holds.
struct ExtBlock {
    /// Offset in the section of the block's `off` header field.
    field: usize,
    /// Range of the block in the section.
    start: usize,
    end: usize,
    rec_size: usize,
    /// Per section of the object: offset of its name field, and the range
    /// of its records.
    sections: Vec<(usize, std::ops::Range<usize>)>,
}

/// The blocks of a `.BTF.ext` section, as far as they are well formed.
fn ext_blocks(ext: &[u8]) -> Vec<ExtBlock> {
    let mut out = Vec::new();
    let Some(hdr_len) = rd_u32(ext, 4).map(|h| h as usize) else {
        return out;
    };
    for field in [8usize, 16, 24] {
        if field + 8 > hdr_len {
            break;
        }
        let (Some(off), Some(len)) = (rd_u32(ext, field), rd_u32(ext, field + 4)) else {
            break;
        };
        let start = hdr_len + off as usize;
        let end = start + len as usize;
        let Some(rec_size) = rd_u32(ext, start).map(|r| r as usize) else {
            continue;
        };
        if len == 0 || end > ext.len() || rec_size == 0 {
            continue;
        }
        let mut sections = Vec::new();
        let mut o = start + 4;
        while o + 8 <= end {
            let count = rd_u32(ext, o + 4).unwrap_or(0) as usize;
            let Some(recs_end) = count
                .checked_mul(rec_size)
                .and_then(|n| n.checked_add(o + 8))
                .filter(|e| *e <= end)
            else {
                break;
            };
            let recs = o + 8..recs_end;
            sections.push((o, recs.clone()));
            o = recs.end;
        }
        out.push(ExtBlock {
            field,
            start,
            end,
            rec_size,
            sections,
        });
    }
    out
}

// ---------------------------------------------------------------------------
// Program arrays.

/// The number a `__uint(name, N)` member encodes: a pointer to an array of
/// N elements.
fn uint_member(btf: &Btf, ty: TypeId) -> Option<u32> {
    let Kind::Ptr(arr) = btf.kind(ty).ok()? else {
        return None;
    };
    let Kind::Array(a) = btf.kind(*arr).ok()? else {
        return None;
    };
    Some(a.len)
}

/// One member of a map definition in `.maps`.
struct MapMember {
    map: String,
    /// The map's `type`, when it is given as `__uint(type, N)`.
    map_type: Option<u32>,
    member: String,
    /// Offset in the object of the member record's name field.
    name_at: usize,
}

fn map_members(object: &[u8]) -> Vec<MapMember> {
    let mut out = Vec::new();
    let Some(elf) = Elf::parse(object) else {
        return out;
    };
    let Some(btf_sh) = elf.find(object, ".BTF") else {
        return out;
    };
    let Some(raw) = Elf::data(object, &btf_sh) else {
        return out;
    };
    let (Ok(btf), Some(records)) = (Btf::parse(raw), Btf::record_offsets(raw)) else {
        return out;
    };
    let Some(Kind::Datasec(maps)) = btf.find_datasec(".maps").and_then(|d| btf.kind(d).ok()) else {
        return out;
    };
    for v in &maps.vars {
        let Ok(Kind::Var(var)) = btf.kind(v.ty) else {
            continue;
        };
        let Ok(sid) = btf.skip_modifiers(var.ty) else {
            continue;
        };
        let Ok(Kind::Struct(def)) = btf.kind(sid) else {
            continue;
        };
        let map = btf.name_of(v.ty).unwrap_or_default();
        let map_type = def
            .members
            .iter()
            .find(|m| btf.str(m.name) == "type")
            .and_then(|m| uint_member(&btf, m.ty));
        for (i, m) in def.members.iter().enumerate() {
            out.push(MapMember {
                map: map.to_owned(),
                map_type,
                member: btf.str(m.name).to_owned(),
                name_at: btf_sh.offset + records[sid as usize] + 12 + i * 12,
            });
        }
    }
    out
}

fn rewrite_prog_array_maps(out: &mut [u8]) {
    for m in map_members(out) {
        if m.map_type == Some(MAP_TYPE_PROG_ARRAY) && m.member == "values" {
            log::debug!(
                "program array {}: its `values` member is left to the kernel, not aya",
                m.map
            );
            wr_u32(out, m.name_at, 0);
        }
    }
}

/// `object` with the pinning of every map `keep` refuses removed (its
/// `pinning` member made anonymous, so aya creates the map unpinned).
///
/// A map declared `__uint(pinning, LIBBPF_PIN_BY_NAME)` is shared through
/// `/sys/fs/bpf/NAME`: aya (like libbpf and upstream's loader) opens the
/// pinned map if there is one, else creates it *and pins it*, which would
/// outlive `ig`. So the loader keeps the pinning only of maps already
/// pinned (another program's, e.g. the GPU bridge's, which the gadget
/// reads) and creates the others as private maps that go with `ig`.
pub fn unpin_maps(object: &[u8], keep: impl Fn(&str) -> bool) -> Vec<u8> {
    let mut out = object.to_vec();
    for m in map_members(object) {
        if m.member == "pinning" && !keep(&m.map) {
            log::debug!(
                "map {}: nothing is pinned under its name; created unpinned, for this run only",
                m.map
            );
            wr_u32(&mut out, m.name_at, 0);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// CO-RE relocations aya cannot compute.

/// One CO-RE relocation record of `.BTF.ext`.
#[derive(Clone, Copy, Debug)]
struct CoreRelo {
    insn_off: u32,
    type_id: TypeId,
    access: u32,
    kind: u32,
}

fn read_relo(ext: &[u8], at: usize) -> Option<CoreRelo> {
    Some(CoreRelo {
        insn_off: rd_u32(ext, at)?,
        type_id: rd_u32(ext, at + 4)?,
        access: rd_u32(ext, at + 8)?,
        kind: rd_u32(ext, at + 12)?,
    })
}

/// Whether `object` has relocations [`resolve_core`] takes over from aya
/// (checked before reading the kernel's BTF, which most objects do not
/// need from us).
pub fn needs_kernel_btf(object: &[u8]) -> bool {
    let Some(elf) = Elf::parse(object) else {
        return false;
    };
    let (Some(btf_sh), Some(ext_sh)) = (elf.find(object, ".BTF"), elf.find(object, ".BTF.ext"))
    else {
        return false;
    };
    let (Some(Ok(btf)), Some(ext)) = (
        Elf::data(object, &btf_sh).map(Btf::parse),
        Elf::data(object, &ext_sh),
    ) else {
        return false;
    };
    ext_blocks(ext)
        .iter()
        .filter(|b| b.field == 24 && b.rec_size >= 16)
        .flat_map(|b| {
            b.sections
                .iter()
                .flat_map(move |(_, r)| r.clone().step_by(b.rec_size))
        })
        .filter_map(|at| read_relo(ext, at))
        .any(|r| taken_over(&btf, &r))
}

/// `bpf_core_type_id_local`: answered from the object's own BTF.
const TYPE_ID_LOCAL: u32 = 6;
/// `bpf_core_type_id_kernel`: the value is a kernel type id.
const TYPE_ID_TARGET: u32 = 7;

/// The names of the root types of `object`'s CO-RE relocations: what aya
/// looks up in the kernel's BTF, so that it can relocate against
/// [`crate::btf::subset::kernel_subset`] of them instead of the whole BTF.
/// Run on the object as aya will get it (after [`resolve_core`]).
///
/// `None` when only the whole BTF will do: a relocation whose value is a
/// kernel type id (a subset renumbers types), a root without a name (aya's
/// candidates would be every anonymous type of its kind), or BTF we cannot
/// read (aya will say what is wrong with it). No relocations: no names.
pub fn core_roots(object: &[u8]) -> Option<Vec<String>> {
    let elf = Elf::parse(object)?;
    let (Some(btf_sh), Some(ext_sh)) = (elf.find(object, ".BTF"), elf.find(object, ".BTF.ext"))
    else {
        return Some(Vec::new());
    };
    let btf = Btf::parse(Elf::data(object, &btf_sh)?).ok()?;
    let ext = Elf::data(object, &ext_sh)?;
    let mut names = std::collections::BTreeSet::new();
    for b in ext_blocks(ext).iter().filter(|b| b.field == 24) {
        if b.rec_size < 16 {
            return None;
        }
        for (_, recs) in &b.sections {
            for at in recs.clone().step_by(b.rec_size) {
                let r = read_relo(ext, at)?;
                match r.kind {
                    TYPE_ID_LOCAL => continue,
                    TYPE_ID_TARGET => return None,
                    _ => {}
                }
                match btf.name_of(r.type_id) {
                    Ok(n) if !n.is_empty() => names.insert(n.to_owned()),
                    _ => return None,
                };
            }
        }
    }
    Some(names.into_iter().collect())
}

/// The socket enricher's value struct (upstream's `types.h`): not a
/// kernel type. Its fields are relocated against the BTF of the layout
/// the enricher was configured with (`bpf::socket_enricher::value_btf`,
/// upstream's `ExtraRelocationTargets`): the fixed fields, then the
/// optional ones `--socket-enricher-fields` enabled, with their sizes.
/// The enricher's own program is relocated against the same BTF, so both
/// sides agree on every offset. Without that BTF (no enricher), the fixed
/// fields relocate to themselves and the optional ones are absent.
pub const SOCKET_VALUE: &str = "gadget_socket_value";
const SOCKET_OPTIONAL_START: &str = "optional_fields_start";

/// Whether we compute `r` instead of aya: type matches, field relocations
/// whose access goes through a zero-length (flexible) array, and those
/// into [`SOCKET_VALUE`] (aya would find no kernel type and poison them).
fn taken_over(btf: &Btf, r: &CoreRelo) -> bool {
    match r.kind {
        TYPE_MATCHES => true,
        FIELD_BYTE_OFFSET..=5 => {
            is_socket_value(btf, r.type_id)
                || btf
                    .string_at(r.access)
                    .and_then(parse_access)
                    .and_then(|a| local_spec(btf, r.type_id, &a))
                    .is_some_and(|s| s.through_flex)
        }
        _ => false,
    }
}

fn is_socket_value(btf: &Btf, id: TypeId) -> bool {
    btf.skip_modifiers(id)
        .and_then(|id| btf.name_of(id))
        .is_ok_and(|n| essential(n) == SOCKET_VALUE)
}

/// [`SOCKET_VALUE`]'s field `spec` as upstream's extra relocation target
/// has it without optional fields: itself if it is a fixed field, else
/// absent.
fn socket_value_field(local: &Btf, root: TypeId, spec: &LocalSpec<'_>) -> Option<(u64, TypeId)> {
    let members = local.members(root).ok()?;
    let first = match spec.steps.first()? {
        Step::Field { name, .. } => members.iter().position(|m| local.str(m.name) == *name)?,
        Step::Index(_) => return None,
    };
    let optional = members
        .iter()
        .position(|m| local.str(m.name) == SOCKET_OPTIONAL_START)
        .unwrap_or(members.len());
    (first < optional).then_some((spec.bit_offset, spec.field_ty))
}

fn parse_access(s: &str) -> Option<Vec<u32>> {
    s.split(':').map(|p| p.parse().ok()).collect()
}

/// One step of an access path after the root index.
#[derive(Debug, Clone)]
enum Step<'a> {
    /// A named member (anonymous ones are crossed, not steps).
    Field { name: &'a str, ty: TypeId },
    /// An element of an array.
    Index(u32),
}

/// The local side of a field relocation.
struct LocalSpec<'a> {
    root_index: u32,
    steps: Vec<Step<'a>>,
    /// Bit offset in the local type (what the instruction holds now).
    bit_offset: u64,
    /// The field's type (for sizes and kinds).
    field_ty: TypeId,
    /// The path indexes a zero-length array.
    through_flex: bool,
}

fn local_spec<'a>(btf: &'a Btf, root: TypeId, access: &[u32]) -> Option<LocalSpec<'a>> {
    let (&root_index, rest) = access.split_first()?;
    let mut ty = root;
    let mut bit_offset = u64::from(root_index) * u64::from(btf.size_of(root).ok()?) * 8;
    let mut steps = Vec::new();
    let mut through_flex = false;
    for &i in rest {
        let id = btf.skip_modifiers(ty).ok()?;
        match btf.kind(id).ok()? {
            Kind::Struct(c) | Kind::Union(c) => {
                let m = c.members.get(i as usize)?;
                bit_offset += u64::from(m.bit_offset);
                let name = btf.str(m.name);
                if !name.is_empty() {
                    steps.push(Step::Field { name, ty: m.ty });
                }
                ty = m.ty;
            }
            Kind::Array(a) => {
                through_flex |= a.len == 0;
                let elem = u64::from(btf.size_of(a.elem).ok()?);
                bit_offset += u64::from(i) * elem * 8;
                steps.push(Step::Index(i));
                ty = a.elem;
            }
            _ => return None,
        }
    }
    Some(LocalSpec {
        root_index,
        steps,
        bit_offset,
        field_ty: ty,
        through_flex,
    })
}

/// A name without its `___flavor` suffix (libbpf's "essential" name).
fn essential(name: &str) -> &str {
    let b = name.as_bytes();
    let mut i = b.len().saturating_sub(4);
    loop {
        // "___" preceded and followed by something else than '_'.
        if i > 0
            && b.get(i..i + 3) == Some(b"___")
            && b[i - 1] != b'_'
            && b.get(i + 3).is_some_and(|c| *c != b'_')
        {
            return &name[..i];
        }
        if i == 0 {
            return name;
        }
        i -= 1;
    }
}

fn names_match(a: &str, b: &str) -> bool {
    if b.is_empty() {
        return a.is_empty();
    }
    essential(a) == essential(b)
}

/// Kernel types of the same kind (struct/union/typedef/...) as local type
/// `id`, with its essential name.
fn candidates(local: &Btf, id: TypeId, kernel: &Btf) -> Vec<TypeId> {
    let Ok(t) = local.get(id) else {
        return Vec::new();
    };
    let name = essential(local.str(t.name));
    if name.is_empty() {
        return Vec::new();
    }
    let same_kind = |k: &Kind| std::mem::discriminant(k) == std::mem::discriminant(&t.kind);
    kernel
        .types()
        .filter(|(_, k)| same_kind(&k.kind) && essential(kernel.str(k.name)) == name)
        .map(|(id, _)| id)
        .collect()
}

/// libbpf's field compatibility: composites with composites, otherwise the
/// same kind; enums and forward declarations by name; arrays by element.
fn fields_compatible(local: &Btf, l: TypeId, kernel: &Btf, k: TypeId) -> bool {
    let (Ok(l), Ok(k)) = (local.skip_modifiers(l), kernel.skip_modifiers(k)) else {
        return false;
    };
    let (Ok(lk), Ok(kk)) = (local.kind(l), kernel.kind(k)) else {
        return false;
    };
    let composite = |k: &Kind| matches!(k, Kind::Struct(_) | Kind::Union(_));
    if composite(lk) && composite(kk) {
        return true;
    }
    match (lk, kk) {
        (Kind::Int(_), Kind::Int(_))
        | (Kind::Ptr(_), Kind::Ptr(_))
        | (Kind::Float { .. }, Kind::Float { .. }) => true,
        (Kind::Enum(_) | Kind::Enum64(_), Kind::Enum(_) | Kind::Enum64(_))
        | (Kind::Fwd { .. }, Kind::Fwd { .. }) => {
            let (ln, kn) = (
                local.name_of(l).unwrap_or(""),
                kernel.name_of(k).unwrap_or(""),
            );
            ln.is_empty() || kn.is_empty() || names_match(ln, kn)
        }
        (Kind::Array(la), Kind::Array(ka)) => fields_compatible(local, la.elem, kernel, ka.elem),
        _ => false,
    }
}

/// Member `name` of composite `id`, looking into anonymous members too:
/// its type, its bit offset from `id`, and whether it is the last member
/// of the struct that holds it.
fn find_member(btf: &Btf, id: TypeId, name: &str, depth: usize) -> Option<(TypeId, u64, bool)> {
    if depth > crate::btf::MAX_CHAIN_DEPTH {
        return None;
    }
    let id = btf.skip_modifiers(id).ok()?;
    let (Kind::Struct(c) | Kind::Union(c)) = btf.kind(id).ok()? else {
        return None;
    };
    for (i, m) in c.members.iter().enumerate() {
        let n = btf.str(m.name);
        if n == name {
            return Some((m.ty, u64::from(m.bit_offset), i + 1 == c.members.len()));
        }
        if n.is_empty()
            && let Some((ty, off, last)) = find_member(btf, m.ty, name, depth + 1)
        {
            return Some((ty, u64::from(m.bit_offset) + off, last));
        }
    }
    None
}

/// The local access walked in kernel type `cand`: the bit offset and type
/// of the field, or `None` when the kernel type has no such field.
fn match_field(
    local: &Btf,
    spec: &LocalSpec<'_>,
    kernel: &Btf,
    cand: TypeId,
) -> Option<(u64, TypeId)> {
    let mut bit = u64::from(spec.root_index) * u64::from(kernel.size_of(cand).ok()?) * 8;
    let mut ty = cand;
    let mut last_member = false;
    for step in &spec.steps {
        match step {
            Step::Field { name, ty: lty } => {
                let (mty, off, last) = find_member(kernel, ty, name, 0)?;
                if !fields_compatible(local, *lty, kernel, mty) {
                    return None;
                }
                bit += off;
                ty = mty;
                last_member = last;
            }
            Step::Index(i) => {
                let Kind::Array(a) = kernel.kind(kernel.skip_modifiers(ty).ok()?).ok()? else {
                    return None;
                };
                let flexible = a.len == 0 && last_member;
                if !flexible && *i >= a.len {
                    return None;
                }
                bit += u64::from(*i) * u64::from(kernel.size_of(a.elem).ok()?) * 8;
                ty = a.elem;
                last_member = false;
            }
        }
    }
    Some((bit, ty))
}

/// libbpf's "types match" relation (`bpf_core_type_matches`), from the
/// local type `l` to kernel type `k`.
fn types_match(
    local: &Btf,
    l: TypeId,
    kernel: &Btf,
    k: TypeId,
    behind_ptr: bool,
    level: u32,
) -> bool {
    if level == 0 {
        return false;
    }
    let (Ok(l), Ok(k)) = (local.skip_modifiers(l), kernel.skip_modifiers(k)) else {
        return false;
    };
    let (Ok(lt), Ok(kt)) = (local.get(l), kernel.get(k)) else {
        return false;
    };
    if !names_match(local.str(lt.name), kernel.str(kt.name)) {
        return false;
    }
    let recurse =
        |a: TypeId, b: TypeId, behind: bool| types_match(local, a, kernel, b, behind, level - 1);
    match (&lt.kind, &kt.kind) {
        (Kind::Void, kk) => matches!(kk, Kind::Void),
        (Kind::Fwd { is_union: lu }, kk) => match kk {
            Kind::Fwd { is_union: ku } => lu == ku,
            Kind::Struct(_) if behind_ptr => !lu,
            Kind::Union(_) if behind_ptr => *lu,
            _ => false,
        },
        (Kind::Enum(le) | Kind::Enum64(le), Kind::Enum(ke) | Kind::Enum64(ke)) => {
            le.size == ke.size
                && le.values.iter().all(|lv| {
                    ke.values
                        .iter()
                        .any(|kv| names_match(local.str(lv.name), kernel.str(kv.name)))
                })
        }
        (Kind::Struct(lc), Kind::Struct(kc)) | (Kind::Union(lc), Kind::Union(kc)) => {
            behind_ptr
                || (lc.members.len() <= kc.members.len()
                    && lc.members.iter().all(|lm| {
                        kc.members.iter().any(|km| {
                            names_match(local.str(lm.name), kernel.str(km.name))
                                && recurse(lm.ty, km.ty, behind_ptr)
                        })
                    }))
        }
        (Kind::Struct(_), Kind::Fwd { is_union: false })
        | (Kind::Union(_), Kind::Fwd { is_union: true }) => behind_ptr,
        (Kind::Int(li), Kind::Int(ki)) => li.size == ki.size && li.signed == ki.signed,
        (Kind::Ptr(lp), Kind::Ptr(kp)) => recurse(*lp, *kp, true),
        (Kind::Array(la), Kind::Array(ka)) => {
            la.len == ka.len && recurse(la.elem, ka.elem, behind_ptr)
        }
        (Kind::FuncProto(lp), Kind::FuncProto(kp)) => {
            lp.params.len() == kp.params.len()
                && lp
                    .params
                    .iter()
                    .zip(&kp.params)
                    .all(|(a, b)| recurse(a.ty, b.ty, behind_ptr))
                && recurse(lp.ret, kp.ret, behind_ptr)
        }
        _ => false,
    }
}

/// How deep [`types_match`] recurses (libbpf's limit).
const MATCH_DEPTH: u32 = 32;

/// What to write into a relocated instruction.
#[derive(Debug, PartialEq, Eq)]
enum Patch {
    Value(u64),
    /// No kernel type has the field: poison the instruction, as libbpf.
    Poison,
}

/// Compute relocation `r` against the kernel's BTF, or for the socket
/// enricher's struct against `extra`: `(local value, patch)`.
fn compute(
    local: &Btf,
    kernel: &Btf,
    extra: Option<&Btf>,
    r: &CoreRelo,
) -> Result<(u64, Patch), String> {
    if r.kind == TYPE_MATCHES {
        let found = candidates(local, r.type_id, kernel)
            .into_iter()
            .any(|c| types_match(local, r.type_id, kernel, c, false, MATCH_DEPTH));
        return Ok((1, Patch::Value(u64::from(found))));
    }
    let access = local
        .string_at(r.access)
        .and_then(parse_access)
        .ok_or("malformed access string")?;
    let spec =
        local_spec(local, r.type_id, &access).ok_or("the access does not fit the local type")?;
    let local_value = match r.kind {
        FIELD_BYTE_OFFSET => spec.bit_offset / 8,
        FIELD_BYTE_SIZE => u64::from(local.size_of(spec.field_ty).map_err(|e| e.to_string())?),
        FIELD_EXISTS => 1,
        _ => {
            return Err(format!(
                "relocation kind {} through a flexible array",
                r.kind
            ));
        }
    };
    let root = local.skip_modifiers(r.type_id).map_err(|e| e.to_string())?;
    let kernel = match extra {
        Some(extra) if is_socket_value(local, root) => {
            if candidates(local, root, extra).is_empty() {
                return Err(format!("the enricher's BTF has no {SOCKET_VALUE}"));
            }
            extra
        }
        _ => kernel,
    };
    if extra.is_none() && is_socket_value(local, root) {
        let found = socket_value_field(local, root, &spec);
        let patch = match (r.kind, found) {
            (FIELD_EXISTS, found) => Patch::Value(u64::from(found.is_some())),
            (_, None) => Patch::Poison,
            (_, Some(_)) => Patch::Value(local_value),
        };
        return Ok((local_value, patch));
    }
    let mut result: Option<(u64, TypeId)> = None;
    for c in candidates(local, root, kernel) {
        let Some(found) = match_field(local, &spec, kernel, c) else {
            continue;
        };
        if let Some(prev) = result
            && (prev.0 != found.0 || kernel.size_of(prev.1).ok() != kernel.size_of(found.1).ok())
        {
            return Err("kernel types of that name disagree on the field".into());
        }
        result = Some(found);
    }
    let patch = match (r.kind, result) {
        (FIELD_EXISTS, found) => Patch::Value(u64::from(found.is_some())),
        (_, None) => Patch::Poison,
        (FIELD_BYTE_OFFSET, Some((bit, _))) if bit % 8 != 0 => {
            return Err("the kernel's field is a bitfield".into());
        }
        (FIELD_BYTE_OFFSET, Some((bit, _))) => Patch::Value(bit / 8),
        (_, Some((_, ty))) => {
            Patch::Value(u64::from(kernel.size_of(ty).map_err(|e| e.to_string())?))
        }
    };
    Ok((local_value, patch))
}

/// Write `patch` into the instruction at `at` (libbpf's rules: the
/// immediate of an ALU or 64-bit load, the offset of a memory access),
/// after checking it holds `local` as the compiler left it.
fn patch_insn(code: &mut [u8], at: usize, local: u64, patch: &Patch) -> Result<(), String> {
    let insn = code.get(at..at + 8).ok_or("past the end of its section")?;
    let op = insn[0];
    let class = op & 7;
    let value = match patch {
        Patch::Poison => {
            if op == 0x18 {
                return Err(
                    "no kernel type has the field (a 64-bit load cannot be poisoned)".into(),
                );
            }
            // call POISON_HELPER
            code[at..at + 8].copy_from_slice(&[0x85, 0, 0, 0, 0, 0, 0, 0]);
            code[at + 4..at + 8].copy_from_slice(&POISON_HELPER.to_le_bytes());
            return Ok(());
        }
        Patch::Value(v) => *v,
    };
    match class {
        // ALU, ALU64 with an immediate operand.
        4 | 7 if op & 0x08 == 0 => {
            let old = i32::from_le_bytes(insn[4..8].try_into().unwrap_or_default());
            if i64::from(old) != local as i64 {
                return Err(format!("the instruction holds {old}, expected {local}"));
            }
            let new = u32::try_from(value).map_err(|_| format!("{value} does not fit"))?;
            code[at + 4..at + 8].copy_from_slice(&new.to_le_bytes());
        }
        // LDX, ST, STX: the 16-bit offset.
        1..=3 => {
            let old = i16::from_le_bytes(insn[2..4].try_into().unwrap_or_default());
            if i64::from(old) != local as i64 {
                return Err(format!(
                    "the instruction's offset is {old}, expected {local}"
                ));
            }
            let new = i16::try_from(value).map_err(|_| format!("offset {value} does not fit"))?;
            code[at + 2..at + 4].copy_from_slice(&new.to_le_bytes());
        }
        // LD_IMM64: two slots.
        0 if op == 0x18 => {
            code.get(at + 8..at + 16).ok_or("a 64-bit load cut short")?;
            code[at + 4..at + 8].copy_from_slice(&(value as u32).to_le_bytes());
            code[at + 12..at + 16].copy_from_slice(&((value >> 32) as u32).to_le_bytes());
        }
        _ => return Err(format!("cannot relocate instruction opcode {op:#04x}")),
    }
    Ok(())
}

/// Compute the CO-RE relocations aya cannot (see the module doc) against
/// `kernel` (and the socket enricher's struct against `extra`, its BTF),
/// write them into the program sections and remove their records from
/// `.BTF.ext`. Every other relocation is left to aya.
pub fn resolve_core(
    object: &[u8],
    kernel: &Btf,
    extra: Option<&Btf>,
) -> Result<Vec<u8>, CompatError> {
    let mut out = object.to_vec();
    let Some(elf) = Elf::parse(object) else {
        return Ok(out);
    };
    let (Some(btf_sh), Some(ext_sh)) = (elf.find(object, ".BTF"), elf.find(object, ".BTF.ext"))
    else {
        return Ok(out);
    };
    let (Some(Ok(local)), Some(ext)) = (
        Elf::data(object, &btf_sh).map(Btf::parse),
        Elf::data(object, &ext_sh),
    ) else {
        return Ok(out);
    };
    let Some(core) = ext_blocks(ext).into_iter().find(|b| b.field == 24) else {
        return Ok(out);
    };
    if core.rec_size < 16 {
        return Ok(out);
    }
    // The new core_relo block: every section's records but ours.
    let mut block = ext[core.start..core.start + 4].to_vec();
    let mut index = 0usize;
    for (name_at, recs) in &core.sections {
        let name_off = rd_u32(ext, *name_at).unwrap_or(0);
        let section = local.string_at(name_off).unwrap_or("?").to_owned();
        let mut kept = Vec::new();
        for at in recs.clone().step_by(core.rec_size) {
            let Some(r) = read_relo(ext, at) else {
                continue;
            };
            index += 1;
            if !taken_over(&local, &r) {
                kept.extend_from_slice(&ext[at..at + core.rec_size]);
                continue;
            }
            let fail = |reason: String| CompatError::Core {
                section: section.clone(),
                index: index - 1,
                insn: r.insn_off / 8,
                what: if r.kind == TYPE_MATCHES {
                    "type match"
                } else {
                    "field access"
                },
                root: local.name_of(r.type_id).unwrap_or("?").to_owned(),
                access: local.string_at(r.access).unwrap_or("?").to_owned(),
                reason,
            };
            let (local_value, patch) = compute(&local, kernel, extra, &r).map_err(fail)?;
            let sh = elf
                .find(object, &section)
                .ok_or_else(|| CompatError::Section {
                    section: section.clone(),
                })?;
            let code = out.get_mut(sh.offset..sh.offset + sh.size).ok_or_else(|| {
                CompatError::Section {
                    section: section.clone(),
                }
            })?;
            patch_insn(code, r.insn_off as usize, local_value, &patch).map_err(fail)?;
            log::debug!(
                "CO-RE relocation of {} {} in {section} (instruction {}): {patch:?}, computed by ig",
                local.name_of(r.type_id).unwrap_or("?"),
                local.string_at(r.access).unwrap_or("?"),
                r.insn_off / 8
            );
        }
        if !kept.is_empty() {
            block.extend_from_slice(&name_off.to_le_bytes());
            block.extend_from_slice(&((kept.len() / core.rec_size) as u32).to_le_bytes());
            block.extend_from_slice(&kept);
        }
    }
    if block.len() == core.end - core.start {
        return Ok(out);
    }
    // Splice the shorter block in; blocks after it move back.
    let shrink = (core.end - core.start) - block.len();
    let new_len = if block.len() == 4 { 0 } else { block.len() };
    let mut new_ext = ext[..core.start].to_vec();
    new_ext.extend_from_slice(&block[..new_len]);
    new_ext.extend_from_slice(&ext[core.end..]);
    wr_u32(&mut new_ext, core.field + 4, new_len as u32);
    let hdr_len = rd_u32(ext, 4).unwrap_or(0) as usize;
    for field in [8usize, 16] {
        if let Some(off) = rd_u32(ext, field)
            && hdr_len + off as usize >= core.end
        {
            wr_u32(&mut new_ext, field, off - shrink as u32);
        }
    }
    replace_section(&mut out, &ext_sh, &new_ext);
    Ok(out)
}

// ---------------------------------------------------------------------------
// `.kconfig` externs.

/// The BTF data section clang puts `__kconfig` externs in. No ELF section
/// has this name: libbpf and cilium/ebpf make a map of it themselves.
const KCONFIG_DATASEC: &str = ".kconfig";

/// The section [`resolve_kconfig`] gives the externs. aya makes a
/// read-only array map of every section named `.rodata*`, frozen after it
/// is filled (as libbpf's `.kconfig` map), so the verifier knows the values
/// and prunes the branches they rule out. 15 characters: all of it fits in
/// the kernel's map name.
pub const KCONFIG_SECTION: &str = ".rodata.kconfig";

/// Largest `.kconfig` layout accepted. Kernel configuration values are
/// short (the longest strings are command lines of a few hundred bytes);
/// this only keeps a crafted object from making ig allocate at will.
const MAX_KCONFIG: u32 = 64 << 10;

/// How a value is stored, by the type the extern is declared with
/// (libbpf's rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KcfgType {
    /// `bool`: `y` is 1, `n` 0; `m` is refused.
    Bool,
    /// A 1-byte integer that is not a bool: the letter itself (`y`, `m`,
    /// `n`) or a number.
    Char { signed: bool },
    /// A 2, 4 or 8-byte integer: numbers only.
    Int { signed: bool },
    /// `enum libbpf_tristate`: `n` 0, `y` 1, `m` 2.
    Tristate,
    /// An array of chars: a string, NUL-terminated, cut to fit.
    CharArray,
}

impl KcfgType {
    fn of(btf: &Btf, ty: TypeId) -> Option<KcfgType> {
        let id = btf.skip_modifiers(ty).ok()?;
        match btf.kind(id).ok()? {
            Kind::Int(i) if i.is_bool => (i.size == 1).then_some(KcfgType::Bool),
            Kind::Int(i) if i.size == 1 => Some(KcfgType::Char { signed: i.signed }),
            Kind::Int(i) if matches!(i.size, 2 | 4 | 8) => Some(KcfgType::Int { signed: i.signed }),
            Kind::Enum(e) if e.size == 4 && btf.name_of(id) == Ok("libbpf_tristate") => {
                Some(KcfgType::Tristate)
            }
            Kind::Array(a)
                if a.len > 0
                    && matches!(KcfgType::of(btf, a.elem), Some(KcfgType::Char { .. })) =>
            {
                Some(KcfgType::CharArray)
            }
            _ => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            KcfgType::Bool => "bool",
            KcfgType::Char { .. } => "char",
            KcfgType::Int { .. } => "integer",
            KcfgType::Tristate => "enum libbpf_tristate",
            KcfgType::CharArray => "char array",
        }
    }
}

/// One `.kconfig` extern of an object.
#[derive(Debug)]
struct Extern {
    name: String,
    /// Its VAR in `.BTF`.
    var: TypeId,
    kind: KcfgType,
    size: u32,
    /// Declared `__weak`: 0 when the kernel has no value for it.
    weak: bool,
    /// Index of its (undefined) ELF symbol.
    symbol: usize,
    /// Where it goes in [`KCONFIG_SECTION`].
    offset: u32,
}

/// The `.kconfig` externs of an object, laid out as libbpf lays them out.
#[derive(Debug)]
struct Kconfig {
    datasec: TypeId,
    externs: Vec<Extern>,
    size: u32,
    /// File offset of `.symtab`.
    symtab: usize,
}

/// What the `.kconfig` externs of an object need from the running kernel,
/// so that the loader reads only that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KconfigNeeds {
    /// `LINUX_KERNEL_VERSION` (from `uname`).
    pub version: bool,
    /// `CONFIG_*` options (from the kernel's build configuration).
    pub config: bool,
    /// `LINUX_HAS_SYSCALL_WRAPPER` or `LINUX_HAS_BPF_COOKIE` (from the
    /// kernel's BTF).
    pub kernel_btf: bool,
}

/// The running kernel as `.kconfig` externs see it, gathered by the loader
/// (the parts [`KconfigNeeds`] asked for).
#[derive(Debug)]
pub struct KernelFacts<'a> {
    /// `LINUX_VERSION_CODE` (see [`kernel_version_code`]), or why it is
    /// unknown.
    pub version_code: Result<u32, &'a str>,
    /// The kernel's build configuration (`CONFIG_NAME=value` lines) and
    /// the file it was read from, or why there is none.
    pub config: Result<(&'a str, &'a str), &'a str>,
    /// The kernel's BTF, for `LINUX_HAS_*`.
    pub btf: Option<&'a Btf>,
}

/// `(index, is weak)` of symbols, by name.
type Symbols<'a> = HashMap<&'a [u8], (usize, bool)>;

/// The undefined global or weak symbols of the object's `.symtab`, and the
/// file offset of `.symtab`.
fn extern_symbols<'a>(elf: &Elf, d: &'a [u8]) -> Option<(Symbols<'a>, usize)> {
    const SHT_SYMTAB: u32 = 2;
    let symtab = elf.headers(d).find(|sh| sh.kind == SHT_SYMTAB)?;
    let strtab = Elf::data(d, &elf.header(d, symtab.link as usize)?)?;
    let syms = Elf::data(d, &symtab)?;
    let mut out = HashMap::new();
    for (i, s) in syms.chunks_exact(24).enumerate().skip(1) {
        let (name, info, shndx) = (rd_u32(s, 0)?, s[4], rd_u16(s, 6)?);
        // Undefined, global (1) or weak (2), no type (0): libbpf's externs.
        if shndx != 0 || !matches!(info >> 4, 1 | 2) || info & 0xf != 0 {
            continue;
        }
        let Some(tail) = strtab.get(name as usize..) else {
            continue;
        };
        let Some(end) = tail.iter().position(|&b| b == 0) else {
            continue;
        };
        out.insert(&tail[..end], (i, info >> 4 == 2));
    }
    Some((out, symtab.offset))
}

impl Kconfig {
    /// The `.kconfig` externs of `object` (`None` when it has none, or is
    /// not an object this module reads), their types checked.
    fn read(object: &[u8]) -> Result<Option<Kconfig>, CompatError> {
        let Some(elf) = Elf::parse(object) else {
            return Ok(None);
        };
        let Some(raw) = elf
            .find(object, ".BTF")
            .and_then(|sh| Elf::data(object, &sh))
        else {
            return Ok(None);
        };
        let Ok(btf) = Btf::parse(raw) else {
            return Ok(None);
        };
        let Some(datasec) = btf.find_datasec(KCONFIG_DATASEC) else {
            return Ok(None);
        };
        let Ok(Kind::Datasec(ds)) = btf.kind(datasec) else {
            return Ok(None);
        };
        if ds.vars.is_empty() {
            return Ok(None);
        }
        let object_error = |reason: String| CompatError::KconfigObject { reason };
        if elf.find(object, KCONFIG_SECTION).is_some() {
            return Err(object_error(format!(
                "it has a section named {KCONFIG_SECTION}, where ig puts its .kconfig externs"
            )));
        }
        let (symbols, symtab) = extern_symbols(&elf, object)
            .ok_or_else(|| object_error("its symbol table is unreadable".into()))?;
        let mut externs: Vec<Extern> = Vec::with_capacity(ds.vars.len());
        let mut align = Vec::with_capacity(ds.vars.len());
        for v in &ds.vars {
            let name = btf.name_of(v.ty).unwrap_or_default().to_owned();
            let fail = |reason: &str| CompatError::Kconfig {
                symbol: name.clone(),
                reason: reason.to_owned(),
            };
            let Ok(Kind::Var(var)) = btf.kind(v.ty) else {
                return Err(fail("only variables can be __kconfig externs"));
            };
            if name.is_empty() || externs.iter().any(|e| e.name == name) {
                return Err(fail(
                    "declared twice in the .kconfig section (or without a name)",
                ));
            }
            let kind = KcfgType::of(&btf, var.ty).ok_or_else(|| {
                fail(
                    "its type is none of those a kernel configuration value fits in (bool, \
                     char, an integer of 1 to 8 bytes, enum libbpf_tristate, a char array)",
                )
            })?;
            let size = btf.size_of(var.ty).map_err(|e| fail(&e.to_string()))?;
            let &(symbol, weak) = symbols
                .get(name.as_bytes())
                .ok_or_else(|| fail("the object has no undefined symbol of that name"))?;
            align.push(match kind {
                KcfgType::Int { .. } | KcfgType::Tristate => size,
                _ => 1,
            });
            externs.push(Extern {
                name,
                var: v.ty,
                kind,
                size,
                weak,
                symbol,
                offset: 0,
            });
        }
        // libbpf's layout: by alignment (largest first), size, name.
        let mut order: Vec<usize> = (0..externs.len()).collect();
        order.sort_by(|&a, &b| {
            (align[b], externs[a].size, &externs[a].name).cmp(&(
                align[a],
                externs[b].size,
                &externs[b].name,
            ))
        });
        let mut size = 0u32;
        for i in order {
            let e = &mut externs[i];
            e.offset = size.next_multiple_of(align[i]);
            size = e
                .offset
                .checked_add(e.size)
                .filter(|s| *s <= MAX_KCONFIG)
                .ok_or_else(|| {
                    object_error(format!(
                        "its .kconfig externs take more than {MAX_KCONFIG} bytes"
                    ))
                })?;
        }
        Ok(Some(Kconfig {
            datasec,
            externs,
            size,
            symtab,
        }))
    }

    fn needs(&self) -> KconfigNeeds {
        let mut n = KconfigNeeds::default();
        for e in &self.externs {
            match e.name.as_str() {
                "LINUX_KERNEL_VERSION" => n.version = true,
                "LINUX_HAS_SYSCALL_WRAPPER" | "LINUX_HAS_BPF_COOKIE" => n.kernel_btf = true,
                name if name.starts_with("CONFIG_") => n.config = true,
                _ => {}
            }
        }
        n
    }

    /// The contents of [`KCONFIG_SECTION`]: every extern's value.
    fn values(&self, facts: &KernelFacts<'_>) -> Result<Vec<u8>, CompatError> {
        let mut data = vec![0u8; self.size as usize];
        let wanted: Vec<&str> = self
            .externs
            .iter()
            .map(|e| e.name.as_str())
            .filter(|n| n.starts_with("CONFIG_"))
            .collect();
        let config = match (&facts.config, wanted.first()) {
            (_, None) => None,
            (Ok((path, text)), _) => Some((*path, config_values(text, &wanted))),
            (Err(why), Some(first)) => {
                return Err(CompatError::Kconfig {
                    symbol: (*first).to_owned(),
                    reason: format!("the kernel's configuration is needed, and {why}"),
                });
            }
        };
        for e in &self.externs {
            let fail = |reason: String| CompatError::Kconfig {
                symbol: e.name.clone(),
                reason,
            };
            let start = e.offset as usize;
            let slot = &mut data[start..start + e.size as usize];
            let shown = match e.name.as_str() {
                name if name.starts_with("CONFIG_") => {
                    let Some((path, values)) = &config else {
                        continue;
                    };
                    match values.get(name) {
                        Some(raw) => {
                            store_config_value(e, raw, slot).map_err(fail)?;
                            (*raw).to_owned()
                        }
                        None if e.weak => "0 (not set by this kernel; __weak)".to_owned(),
                        None => {
                            return Err(fail(format!(
                                "this kernel's configuration ({path}) does not set it; an \
                                 object that can do without declares it __weak, and reads 0"
                            )));
                        }
                    }
                }
                "LINUX_KERNEL_VERSION" => {
                    let v = facts.version_code.map_err(|why| fail(why.to_owned()))?;
                    store_number(e, u64::from(v), slot).map_err(fail)?;
                    format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)
                }
                "LINUX_HAS_SYSCALL_WRAPPER" | "LINUX_HAS_BPF_COOKIE" => {
                    let btf = facts
                        .btf
                        .ok_or_else(|| fail("the kernel's BTF is needed".to_owned()))?;
                    let has = if e.name == "LINUX_HAS_BPF_COOKIE" {
                        has_bpf_cookie(btf)
                    } else {
                        has_syscall_wrapper(btf)
                    };
                    store_number(e, u64::from(has), slot).map_err(fail)?;
                    u8::from(has).to_string()
                }
                name if name.starts_with("LINUX_") && e.weak => {
                    "0 (unknown to ig; __weak)".to_owned()
                }
                _ => {
                    return Err(fail(
                        "ig knows CONFIG_* options and LINUX_KERNEL_VERSION, \
                         LINUX_HAS_SYSCALL_WRAPPER and LINUX_HAS_BPF_COOKIE (as libbpf does)"
                            .to_owned(),
                    ));
                }
            };
            log::debug!("kconfig extern {} = {shown}", e.name);
        }
        Ok(data)
    }

    /// `object` with [`KCONFIG_SECTION`] added, holding `data`: the
    /// `.kconfig` DATASEC renamed after it and laid out, its variables
    /// made global, their symbols defined in it.
    fn rewrite(&self, object: &[u8], data: &[u8]) -> Result<Vec<u8>, CompatError> {
        let unreadable = || CompatError::KconfigObject {
            reason: "its ELF or BTF layout is not one ig can add a section to".into(),
        };
        let mut out = object.to_vec();
        let elf = Elf::parse(&out).ok_or_else(unreadable)?;
        // Section indexes from SHN_LORESERVE on are special.
        let index = u16::try_from(elf.shnum)
            .ok()
            .filter(|n| *n < 0xff00)
            .ok_or_else(unreadable)?;
        // The new section's name.
        let names = elf.header(&out, elf.shstrndx).ok_or_else(unreadable)?;
        let mut table = Elf::data(&out, &names).ok_or_else(unreadable)?.to_vec();
        let name_off = u32::try_from(table.len()).map_err(|_| unreadable())?;
        table.extend_from_slice(KCONFIG_SECTION.as_bytes());
        table.push(0);
        replace_section(&mut out, &names, &table);
        // BTF: the DATASEC is named after the section and laid out (its
        // entries by offset, as the kernel wants them), the variables are
        // global: what clang emits for `.rodata`.
        let btf_sh = elf.find(&out, ".BTF").ok_or_else(unreadable)?;
        let raw = Elf::data(&out, &btf_sh).ok_or_else(unreadable)?;
        let records = Btf::record_offsets(raw).ok_or_else(unreadable)?;
        let mut name = KCONFIG_SECTION.as_bytes().to_vec();
        name.push(0);
        let (mut btf, base) = btf_append_strings(raw, &name).ok_or_else(unreadable)?;
        let at = |id: TypeId| records.get(id as usize).copied();
        let ds = at(self.datasec).ok_or_else(unreadable)?;
        wr_u32(&mut btf, ds, base);
        wr_u32(&mut btf, ds + 8, self.size);
        let mut sorted: Vec<&Extern> = self.externs.iter().collect();
        sorted.sort_by_key(|e| e.offset);
        for (i, e) in sorted.iter().enumerate() {
            let entry = ds + 12 + i * 12;
            wr_u32(&mut btf, entry, e.var);
            wr_u32(&mut btf, entry + 4, e.offset);
            wr_u32(&mut btf, entry + 8, e.size);
            // BTF_VAR_GLOBAL_ALLOCATED.
            wr_u32(&mut btf, at(e.var).ok_or_else(unreadable)? + 12, 1);
        }
        replace_section(&mut out, &btf_sh, &btf);
        // The section's bytes.
        out.resize(out.len().next_multiple_of(8), 0);
        let data_off = out.len();
        out.extend_from_slice(data);
        // The symbols: global objects in the new section.
        for e in &self.externs {
            let s = self.symtab + e.symbol * 24;
            out[s + 4] = (1 << 4) | 1; // STB_GLOBAL, STT_OBJECT
            out[s + 6..s + 8].copy_from_slice(&index.to_le_bytes());
            wr_u64(&mut out, s + 8, u64::from(e.offset));
            wr_u64(&mut out, s + 16, u64::from(e.size));
        }
        // The section header table, one entry longer, at the end.
        let table_end = (elf.shnum * elf.shentsize).checked_add(elf.shoff);
        let mut headers = table_end
            .and_then(|end| out.get(elf.shoff..end))
            .ok_or_else(unreadable)?
            .to_vec();
        let mut h = vec![0u8; elf.shentsize];
        wr_u32(&mut h, 0, name_off);
        wr_u32(&mut h, 4, 1); // SHT_PROGBITS
        wr_u64(&mut h, 8, 2); // SHF_ALLOC
        wr_u64(&mut h, 0x18, data_off as u64);
        wr_u64(&mut h, 0x20, data.len() as u64);
        wr_u64(&mut h, 0x30, 8); // alignment
        headers.extend_from_slice(&h);
        out.resize(out.len().next_multiple_of(8), 0);
        let shoff = out.len();
        out.extend_from_slice(&headers);
        wr_u64(&mut out, 0x28, shoff as u64);
        out[0x3c..0x3e].copy_from_slice(&(index + 1).to_le_bytes());
        Ok(out)
    }
}

/// What `object`'s `.kconfig` externs need from the running kernel
/// (`None` when it has none). Refuses externs no kernel could fill: a
/// type no configuration value fits in, a duplicate, no symbol.
pub fn kconfig_needs(object: &[u8]) -> Result<Option<KconfigNeeds>, CompatError> {
    Ok(Kconfig::read(object)?.map(|k| k.needs()))
}

/// `object` with its `.kconfig` externs given the running kernel's values
/// (`facts`), the way libbpf gives them, in a read-only data section aya
/// loads as it loads `.rodata` ([`KCONFIG_SECTION`]). Unchanged when it
/// has none.
///
/// - `CONFIG_*`: the value the kernel's configuration sets. `y`, `n`, `m`
///   into a `bool` (1, 0; `m` refused), an `enum libbpf_tristate` (1, 0,
///   2) or a `char` (the letter); a quoted string into a char array
///   (NUL-terminated, cut to fit); a number (decimal, `0x` hexadecimal,
///   `0` octal, negative) into an integer it fits in. An option the
///   configuration does not set is 0 if the extern is `__weak`, else an
///   error naming it.
/// - `LINUX_KERNEL_VERSION`: [`kernel_version_code`].
/// - `LINUX_HAS_SYSCALL_WRAPPER`, `LINUX_HAS_BPF_COOKIE`: 1 if the
///   kernel's BTF has `__<arch>_sys_bpf`, resp. the helper
///   `bpf_get_attach_cookie`. Any other `LINUX_*` is 0 if `__weak`;
///   anything else is an error.
pub fn resolve_kconfig(object: &[u8], facts: &KernelFacts<'_>) -> Result<Vec<u8>, CompatError> {
    let Some(k) = Kconfig::read(object)? else {
        return Ok(object.to_vec());
    };
    let data = k.values(facts)?;
    k.rewrite(object, &data)
}

/// The values of options `wanted` in a kernel configuration: the first
/// `CONFIG_NAME=value` line of each (libbpf keeps the first); comments
/// (`# CONFIG_X is not set`) and lines without a value set nothing.
fn config_values<'a>(text: &'a str, wanted: &[&str]) -> HashMap<&'a str, &'a str> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if !value.is_empty() && name.starts_with("CONFIG_") && wanted.contains(&name) {
            out.entry(name).or_insert(value);
        }
    }
    out
}

/// `raw`, the text after `=` in the kernel's configuration, stored into
/// `slot` as extern `e`'s type wants it (see [`resolve_kconfig`]).
fn store_config_value(e: &Extern, raw: &str, slot: &mut [u8]) -> Result<(), String> {
    let first = raw.as_bytes().first().copied().unwrap_or(b'0');
    match (first, e.kind) {
        (b'y' | b'n' | b'm', KcfgType::Bool) if first != b'm' => slot[0] = u8::from(first == b'y'),
        (b'y' | b'n' | b'm', KcfgType::Tristate) => {
            let v: u32 = match first {
                b'y' => 1,
                b'm' => 2,
                _ => 0,
            };
            slot.copy_from_slice(&v.to_le_bytes());
        }
        (b'y' | b'n' | b'm', KcfgType::Char { .. }) => slot[0] = first,
        (b'y' | b'n' | b'm', kind) => {
            return Err(format!(
                "the kernel's value {raw} needs an enum libbpf_tristate or a char{}, not {}",
                if first == b'm' { "" } else { " or a bool" },
                kind.describe()
            ));
        }
        (b'"', KcfgType::CharArray) => {
            let s = raw
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .ok_or_else(|| format!("the kernel's value {raw} is not a quoted string"))?;
            let n = s.len().min(slot.len() - 1);
            if n < s.len() {
                log::warn!(
                    "kconfig extern {}: the kernel's value {raw} is cut to {n} bytes, the size of the object's array",
                    e.name
                );
            }
            slot[..n].copy_from_slice(&s.as_bytes()[..n]);
            slot[n] = 0;
        }
        (b'"', kind) => {
            return Err(format!(
                "the kernel's value {raw} is a string, for a char array, not {}",
                kind.describe()
            ));
        }
        (_, KcfgType::Int { .. } | KcfgType::Char { .. }) => {
            let v = parse_config_number(raw)
                .ok_or_else(|| format!("the kernel's value {raw} is not a number"))?;
            store_number(e, v, slot)?;
        }
        (_, kind) => {
            return Err(format!(
                "the kernel's value {raw} is a number, for an integer, not {}",
                kind.describe()
            ));
        }
    }
    Ok(())
}

/// Number `v` stored into `slot` if it fits extern `e` (as libbpf checks:
/// a signed value may be negative, `v` then wrapped as by `strtoull`).
fn store_number(e: &Extern, v: u64, slot: &mut [u8]) -> Result<(), String> {
    let bits = e.size * 8;
    let fits = match e.kind {
        KcfgType::Bool => v <= 1,
        KcfgType::Int { .. } | KcfgType::Char { .. } if bits >= 64 => true,
        KcfgType::Int { signed: true } | KcfgType::Char { signed: true } => {
            v.wrapping_add(1u64 << (bits - 1)) < 1u64 << bits
        }
        KcfgType::Int { signed: false } | KcfgType::Char { signed: false } => v >> bits == 0,
        kind => return Err(format!("a number does not go into {}", kind.describe())),
    };
    if !fits {
        let shown = match e.kind {
            KcfgType::Int { signed: true } | KcfgType::Char { signed: true } => {
                (v as i64).to_string()
            }
            _ => v.to_string(),
        };
        return Err(format!(
            "{shown} does not fit in the object's {}-byte {}",
            e.size,
            e.kind.describe()
        ));
    }
    slot.copy_from_slice(&v.to_le_bytes()[..slot.len()]);
    Ok(())
}

/// A configuration number as C's `strtoull(s, _, 0)` reads it, wholly:
/// `0x` hexadecimal, a leading `0` octal, else decimal; a `-` wraps.
fn parse_config_number(s: &str) -> Option<u64> {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = u64::from_str_radix(digits, radix).ok()?;
    Some(if negative { v.wrapping_neg() } else { v })
}

/// `LINUX_VERSION_CODE` of the running kernel, as libbpf finds it: from
/// Ubuntu's `/proc/version_signature` (`Ubuntu 5.4.0-12.15-generic
/// 5.4.8`), Debian's `uname -v` (`#1 SMP Debian 4.19.260-1`), else `uname
/// -r`, whose release numbers Ubuntu and Debian do not keep. The patch
/// level is at most 255 (`KERNEL_VERSION`); a release without one
/// (`6.18-rc1`) is `x.y.0`, as the kernel's own code.
pub fn kernel_version_code(release: &str, version: &str, signature: Option<&str>) -> Option<u32> {
    let triple = |s: &str| -> Option<u32> {
        let mut parts = s.splitn(3, '.');
        let mut num = |required: bool| -> Option<u32> {
            let p = parts.next().unwrap_or("");
            let digits = &p[..p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len())];
            match digits.parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) if !required => Some(0),
                Err(_) => None,
            }
        };
        let (a, b, c) = (num(true)?, num(true)?, num(false)?);
        a.checked_mul(1 << 16)?
            .checked_add(b.checked_mul(1 << 8)?)?
            .checked_add(c.min(255))
    };
    if let Some(v) = signature
        .and_then(|s| s.split_whitespace().nth(2))
        .and_then(triple)
    {
        return Some(v);
    }
    if let Some(v) = version
        .split_once("Debian ")
        .and_then(|(_, rest)| triple(rest))
    {
        return Some(v);
    }
    triple(release)
}

/// The name of the `bpf` syscall's wrapper on this architecture, which
/// the kernel has when its syscalls take a `struct pt_regs`
/// (`ARCH_HAS_SYSCALL_WRAPPER`).
const SYSCALL_WRAPPER: Option<&str> = if cfg!(target_arch = "x86_64") {
    Some("__x64_sys_bpf")
} else if cfg!(target_arch = "aarch64") {
    Some("__arm64_sys_bpf")
} else if cfg!(target_arch = "s390x") {
    Some("__s390x_sys_bpf")
} else if cfg!(target_arch = "riscv64") {
    Some("__riscv_sys_bpf")
} else {
    None
};

/// `LINUX_HAS_SYSCALL_WRAPPER`. libbpf tries to create a kprobe on the
/// wrapper; the kernel's BTF lists it whether or not kprobes work.
fn has_syscall_wrapper(kernel: &Btf) -> bool {
    SYSCALL_WRAPPER.is_some_and(|name| {
        kernel
            .find(name, |k| matches!(k, Kind::Func { .. }))
            .is_some()
    })
}

/// `LINUX_HAS_BPF_COOKIE`: the kernel knows `bpf_get_attach_cookie`
/// (libbpf loads a program calling it; its BTF's `enum bpf_func_id` says
/// the same without one).
fn has_bpf_cookie(kernel: &Btf) -> bool {
    kernel
        .find("bpf_func_id", |k| matches!(k, Kind::Enum(_)))
        .and_then(|id| match kernel.kind(id) {
            Ok(Kind::Enum(e)) => Some(
                e.values
                    .iter()
                    .any(|v| kernel.str(v.name) == "BPF_FUNC_get_attach_cookie"),
            ),
            _ => None,
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn essential_names_drop_the_flavor() {
        assert_eq!(essential("task_struct___o"), "task_struct");
        assert_eq!(
            essential("btf_trace_block_rq_issue___new"),
            "btf_trace_block_rq_issue"
        );
        assert_eq!(essential("task_struct"), "task_struct");
        assert_eq!(essential("a____b"), "a____b");
        assert_eq!(essential("___x"), "___x");
        assert_eq!(essential(""), "");
    }

    use crate::btf::builder::BtfBuilder;

    /// `struct trace_entry` (8 bytes) and an `unsigned long`, in `b`.
    fn basics(b: &mut BtfBuilder) -> (TypeId, TypeId, TypeId) {
        let int = b.int("int", 4, true);
        let ulong = b.int("unsigned long", 8, false);
        let entry = b.struct_("trace_entry", 8, &[("type", int, 0), ("pid", int, 32)]);
        (int, ulong, entry)
    }

    /// `ctx->args[1]` of a local `syscall_trace_enter___flex` (args at byte
    /// 16) is found in a kernel whose struct has args at byte 24.
    #[test]
    fn fields_through_a_flexible_array_are_computed_for_the_kernel() {
        let mut l = BtfBuilder::new();
        let (int, ulong, entry) = basics(&mut l);
        let args = l.array(ulong, 0);
        let local_root = l.struct_(
            "syscall_trace_enter___flex",
            16,
            &[("ent", entry, 0), ("nr", int, 64), ("args", args, 128)],
        );
        let access = l.string("0:2:1");
        let local = Btf::parse(&l.to_bytes()).unwrap();

        let mut k = BtfBuilder::new();
        let (int, ulong, entry) = basics(&mut k);
        let args = k.array(ulong, 0);
        k.struct_(
            "syscall_trace_enter",
            24,
            &[
                ("ent", entry, 0),
                ("nr", int, 64),
                ("pad", int, 96),
                ("args", args, 192),
            ],
        );
        let kernel = Btf::parse(&k.to_bytes()).unwrap();

        let relo = |kind| CoreRelo {
            insn_off: 0,
            type_id: local_root,
            access,
            kind,
        };
        assert!(taken_over(&local, &relo(FIELD_BYTE_OFFSET)));
        assert_eq!(
            compute(&local, &kernel, None, &relo(FIELD_BYTE_OFFSET)).unwrap(),
            (24, Patch::Value(32))
        );
        assert_eq!(
            compute(&local, &kernel, None, &relo(FIELD_BYTE_SIZE)).unwrap(),
            (8, Patch::Value(8))
        );
        assert_eq!(
            compute(&local, &kernel, None, &relo(FIELD_EXISTS)).unwrap(),
            (1, Patch::Value(1))
        );
        // A kernel without the struct: the access is poisoned, an
        // existence check says 0 (libbpf's behaviour).
        let none = Btf::parse(&BtfBuilder::new().to_bytes()).unwrap();
        assert_eq!(
            compute(&local, &none, None, &relo(FIELD_BYTE_OFFSET))
                .unwrap()
                .1,
            Patch::Poison
        );
        assert_eq!(
            compute(&local, &none, None, &relo(FIELD_EXISTS)).unwrap().1,
            Patch::Value(0)
        );
    }

    #[test]
    fn type_matches_follow_libbpf() {
        let proto = |b: &mut BtfBuilder, third: Option<(&str, u32)>| {
            let void_ptr = b.ptr(0);
            let task = b.struct_("task_struct", 8, &[]);
            let task_ptr = b.ptr(task);
            let mut params = vec![("", void_ptr), ("", task_ptr)];
            if let Some((name, size)) = third {
                let i = b.int(name, size, true);
                params.push(("", i));
            }
            b.func_proto(0, &params)
        };
        let mut k = BtfBuilder::new();
        let p = proto(&mut k, Some(("long int", 8)));
        let pp = k.ptr(p);
        k.typedef("btf_trace_x", pp);
        let kernel = Btf::parse(&k.to_bytes()).unwrap();

        for (third, want) in [
            (Some(("long int", 8)), 1),
            // clang names `long int` "long": no match, as in libbpf.
            (Some(("long", 8)), 0),
            (Some(("long int", 4)), 0),
            (None, 0),
        ] {
            let mut l = BtfBuilder::new();
            let p = proto(&mut l, third);
            let pp = l.ptr(p);
            let root = l.typedef("btf_trace_x___flavor", pp);
            let local = Btf::parse(&l.to_bytes()).unwrap();
            let r = CoreRelo {
                insn_off: 0,
                type_id: root,
                access: 0,
                kind: TYPE_MATCHES,
            };
            assert_eq!(
                compute(&local, &kernel, None, &r).unwrap(),
                (1, Patch::Value(want)),
                "{third:?}"
            );
        }
    }

    #[test]
    fn instructions_are_patched_where_libbpf_patches_them() {
        // r1 = *(u64 *)(r2 + 24)
        let mut code = [0x79, 0x21, 24, 0, 0, 0, 0, 0];
        patch_insn(&mut code, 0, 24, &Patch::Value(32)).unwrap();
        assert_eq!(code, [0x79, 0x21, 32, 0, 0, 0, 0, 0]);
        // Not what the compiler left: refused.
        assert!(patch_insn(&mut code, 0, 24, &Patch::Value(40)).is_err());
        // r1 = 1 (mov64 imm)
        let mut code = [0xb7, 0x01, 0, 0, 1, 0, 0, 0];
        patch_insn(&mut code, 0, 1, &Patch::Value(0)).unwrap();
        assert_eq!(code, [0xb7, 0x01, 0, 0, 0, 0, 0, 0]);
        patch_insn(&mut code, 0, 0, &Patch::Poison).unwrap();
        assert_eq!(code[0], 0x85);
        assert_eq!(
            i32::from_le_bytes(code[4..8].try_into().unwrap()),
            POISON_HELPER
        );
        assert!(patch_insn(&mut code, 8, 0, &Patch::Value(0)).is_err());
    }

    // ---------------------------------------------------------------- kconfig

    #[test]
    fn kconfig_types_follow_libbpf() {
        let mut b = BtfBuilder::new();
        let bool_ = b.bool_();
        let char_ = b.char_();
        let int = b.int("int", 4, true);
        let u64_ = b.int("unsigned long long", 8, false);
        let u64_t = b.typedef("__u64", u64_);
        let cv = b.const_(u64_t);
        let odd = b.int("three", 3, false);
        let tri = b.enum_(
            "libbpf_tristate",
            4,
            false,
            &[("TRI_NO", 0), ("TRI_YES", 1)],
        );
        let other_enum = b.enum_("other", 4, false, &[("A", 0)]);
        let string = b.array(char_, 16);
        let empty = b.array(char_, 0);
        let ints = b.array(int, 4);
        let strukt = b.struct_("s", 4, &[("a", int, 0)]);
        let btf = Btf::parse(&b.to_bytes()).unwrap();
        let of = |id| KcfgType::of(&btf, id);
        assert_eq!(of(bool_), Some(KcfgType::Bool));
        assert_eq!(of(char_), Some(KcfgType::Char { signed: true }));
        assert_eq!(of(int), Some(KcfgType::Int { signed: true }));
        assert_eq!(of(cv), Some(KcfgType::Int { signed: false }));
        assert_eq!(of(tri), Some(KcfgType::Tristate));
        assert_eq!(of(string), Some(KcfgType::CharArray));
        for unsupported in [odd, other_enum, empty, ints, strukt] {
            assert_eq!(of(unsupported), None, "type {unsupported}");
        }
    }

    #[test]
    fn kconfig_numbers_read_as_strtoull_reads_them() {
        assert_eq!(parse_config_number("250"), Some(250));
        assert_eq!(parse_config_number("0x1000000"), Some(0x100_0000));
        assert_eq!(parse_config_number("0X1f"), Some(31));
        assert_eq!(parse_config_number("0755"), Some(0o755));
        assert_eq!(parse_config_number("0"), Some(0));
        assert_eq!(parse_config_number("+7"), Some(7));
        assert_eq!(parse_config_number("-1"), Some(u64::MAX));
        for bad in [
            "",
            "-",
            "0x",
            "12a",
            "0x+5",
            "08",
            "1 2",
            "99999999999999999999",
        ] {
            assert_eq!(parse_config_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn kernel_versions_as_libbpf_finds_them() {
        let kv = |a: u32, b: u32, c: u32| (a << 16) + (b << 8) + c;
        let code = kernel_version_code;
        assert_eq!(
            code("6.18.44-fc-v1300", "#1 SMP PREEMPT_DYNAMIC @0", None),
            Some(kv(6, 18, 44))
        );
        // Debian keeps 0 as the patch level in the release; the version
        // has the real one.
        assert_eq!(
            code(
                "6.1.0-28-amd64",
                "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)",
                None
            ),
            Some(kv(6, 1, 119))
        );
        // Ubuntu says it in /proc/version_signature.
        assert_eq!(
            code(
                "5.4.0-12-generic",
                "#15-Ubuntu SMP",
                Some("Ubuntu 5.4.0-12.15-generic 5.4.8\n")
            ),
            Some(kv(5, 4, 8))
        );
        // KERNEL_VERSION() keeps the patch level in one byte.
        assert_eq!(
            code("4.19.0-22-amd64", "#1 SMP Debian 4.19.260-1", None),
            Some(kv(4, 19, 255))
        );
        assert_eq!(code("6.18-rc1", "", None), Some(kv(6, 18, 0)));
        assert_eq!(code("6", "", None), None);
        assert_eq!(code("linux", "", None), None);
        assert_eq!(code("99999.0.0", "", None), None);
    }

    #[test]
    fn kconfig_lines_first_one_wins() {
        let text = "# CONFIG_A is not set\nCONFIG_B=\nCONFIG_C=y\nCONFIG_C=n\nCONFIG_D=1\nX_CONFIG_E=1\nnoise\n";
        let v = config_values(text, &["CONFIG_A", "CONFIG_B", "CONFIG_C", "X_CONFIG_E"]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v["CONFIG_C"], "y");
    }

    #[test]
    fn kconfig_values_are_stored_as_libbpf_stores_them() {
        use KcfgType::*;
        let store = |kind, size: u32, raw: &str| -> Result<Vec<u8>, String> {
            let e = Extern {
                name: "CONFIG_X".into(),
                var: 0,
                kind,
                size,
                weak: false,
                symbol: 0,
                offset: 0,
            };
            let mut slot = vec![0; size as usize];
            store_config_value(&e, raw, &mut slot).map(|()| slot)
        };
        let signed = Int { signed: true };
        let unsigned = Int { signed: false };
        assert_eq!(store(Bool, 1, "y"), Ok(vec![1]));
        assert_eq!(store(Bool, 1, "n"), Ok(vec![0]));
        assert!(store(Bool, 1, "m").unwrap_err().contains("tristate"));
        assert!(store(Bool, 1, "1").unwrap_err().contains("is a number"));
        assert_eq!(store(Tristate, 4, "y"), Ok(vec![1, 0, 0, 0]));
        assert_eq!(store(Tristate, 4, "m"), Ok(vec![2, 0, 0, 0]));
        assert_eq!(store(Tristate, 4, "n"), Ok(vec![0, 0, 0, 0]));
        assert_eq!(store(Char { signed: true }, 1, "m"), Ok(vec![b'm']));
        assert_eq!(store(Char { signed: true }, 1, "-128"), Ok(vec![0x80]));
        assert!(store(Char { signed: true }, 1, "128").is_err());
        assert_eq!(store(Char { signed: false }, 1, "255"), Ok(vec![0xff]));
        assert_eq!(store(signed, 4, "250"), Ok(250i32.to_le_bytes().to_vec()));
        assert_eq!(store(signed, 4, "-1"), Ok(vec![0xff; 4]));
        assert!(
            store(unsigned, 4, "-1")
                .unwrap_err()
                .contains("does not fit")
        );
        assert_eq!(store(signed, 2, "32767"), Ok(vec![0xff, 0x7f]));
        assert!(store(signed, 2, "32768").is_err());
        assert_eq!(store(unsigned, 8, "0xffffffffffffffff"), Ok(vec![0xff; 8]));
        assert!(store(signed, 4, "y").unwrap_err().contains("not integer"));
        assert!(
            store(signed, 4, "12x")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(store(signed, 4, "\"s\"").unwrap_err().contains("string"));
        assert_eq!(
            store(CharArray, 8, "\"-fc\""),
            Ok(b"-fc\0\0\0\0\0".to_vec())
        );
        // Cut to the array, NUL-terminated (libbpf warns and does the same).
        assert_eq!(store(CharArray, 4, "\"abcdef\""), Ok(b"abc\0".to_vec()));
        assert_eq!(store(CharArray, 1, "\"\""), Ok(vec![0]));
        assert!(store(CharArray, 8, "\"open").is_err());
        assert!(store(CharArray, 8, "y").is_err());
        assert!(store(CharArray, 8, "7").is_err());
    }

    /// A kernel BTF with the syscall wrapper of this architecture.
    fn kernel_with_syscall_wrapper() -> Btf {
        let mut k = BtfBuilder::new();
        let proto = k.func_proto(0, &[]);
        k.func(
            SYSCALL_WRAPPER.unwrap_or("__x64_sys_bpf"),
            proto,
            crate::btf::Linkage::Static,
        );
        k.enum_(
            "bpf_func_id",
            4,
            false,
            &[("BPF_FUNC_unspec", 0), ("BPF_FUNC_get_attach_cookie", 174)],
        );
        Btf::parse(&k.to_bytes()).unwrap()
    }

    fn kconfig_fixture() -> Vec<u8> {
        // tests/fixtures/load_kconfig, built with clang 19 and our headers.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        std::fs::read(root.join("fuzz/corpus/object/load_kconfig.bpf.o")).unwrap()
    }

    const KCONFIG_TEXT: &str = "CONFIG_BPF_SYSCALL=y\nCONFIG_BPF_JIT=m\nCONFIG_PERF_EVENTS=y\n\
         CONFIG_HZ=1000\nCONFIG_LOCALVERSION=\"-test\"\n# CONFIG_PHYSICAL_START is not set\n";

    /// The fixture object, given the values of a made-up kernel, then read
    /// by aya's own parser as `ig run` hands it over: the externs are
    /// read-only global data in one map, laid out as libbpf lays them out,
    /// and every instruction that reads one points into that map.
    #[test]
    fn kconfig_externs_become_read_only_data_aya_relocates() {
        let object = kconfig_fixture();
        let features =
            aya_obj::btf::BtfFeatures::new(true, true, true, true, true, true, true, true);
        // As aya 0.14 sees the object without us.
        let mut obj = aya_obj::Object::parse(&object).unwrap();
        let err = obj.fixup_and_sanitize_btf(&features).unwrap_err();
        assert!(
            err.to_string()
                .contains("Unable to determine the size of section `.kconfig`"),
            "{err}"
        );

        assert_eq!(
            kconfig_needs(&object).unwrap(),
            Some(KconfigNeeds {
                version: true,
                config: true,
                kernel_btf: true
            })
        );
        let kernel = kernel_with_syscall_wrapper();
        let facts = KernelFacts {
            version_code: Ok((6 << 16) + (12 << 8) + 5),
            config: Ok(("test", KCONFIG_TEXT)),
            btf: Some(&kernel),
        };
        let out = resolve_kconfig(&object, &facts).unwrap();
        assert!(kconfig_needs(&out).unwrap().is_none(), "resolved once");

        // The DATASEC, renamed, laid out by alignment, size and name.
        let elf = Elf::parse(&out).unwrap();
        let raw = Elf::data(&out, &elf.find(&out, ".BTF").unwrap()).unwrap();
        let btf = Btf::parse(raw).unwrap();
        assert!(btf.find_datasec(KCONFIG_DATASEC).is_none());
        let Ok(Kind::Datasec(ds)) = btf.kind(btf.find_datasec(KCONFIG_SECTION).unwrap()) else {
            panic!("no {KCONFIG_SECTION} DATASEC");
        };
        let layout: Vec<(&str, u32, u32)> = ds
            .vars
            .iter()
            .map(|v| (btf.name_of(v.ty).unwrap(), v.offset, v.size))
            .collect();
        assert_eq!(
            layout,
            [
                ("CONFIG_PHYSICAL_START", 0, 8),
                ("CONFIG_BPF_JIT", 8, 4),
                ("CONFIG_HZ", 12, 4),
                ("CONFIG_IG_FIXTURE_ABSENT", 16, 4),
                ("LINUX_KERNEL_VERSION", 20, 4),
                ("CONFIG_BPF_SYSCALL", 24, 1),
                ("CONFIG_PERF_EVENTS", 25, 1),
                ("LINUX_HAS_SYSCALL_WRAPPER", 26, 1),
                ("CONFIG_LOCALVERSION", 27, 32),
            ]
        );
        assert_eq!(ds.size, 59);
        for v in &ds.vars {
            let Ok(Kind::Var(var)) = btf.kind(v.ty) else {
                panic!()
            };
            assert_eq!(var.linkage, crate::btf::Linkage::Global);
        }
        let mut want = vec![0u8; 59];
        want[8] = 2; // m, as a tristate
        want[12..16].copy_from_slice(&1000i32.to_le_bytes());
        want[20..24].copy_from_slice(&0x06_0c_05u32.to_le_bytes());
        want[24] = 1;
        want[25] = b'y';
        want[26] = 1;
        want[27..32].copy_from_slice(b"-test");

        // aya: one read-only map holding exactly those bytes.
        let mut obj = aya_obj::Object::parse(&out).unwrap();
        let map = &obj.maps[KCONFIG_SECTION];
        assert_eq!(map.data(), want.as_slice());
        assert_eq!(
            map.section_kind(),
            aya_obj::EbpfSectionKind::Rodata,
            "frozen and read-only, as libbpf's .kconfig map"
        );
        obj.fixup_and_sanitize_btf(&features).unwrap();
        let maps = std::mem::take(&mut obj.maps);
        let fd_of = |name: &str| if name == KCONFIG_SECTION { 77 } else { 10 };
        let text_sections = obj.functions.keys().map(|(section, _)| *section).collect();
        obj.relocate_maps(
            maps.iter().map(|(n, m)| (n.as_str(), fd_of(n), m)),
            &text_sections,
        )
        .unwrap();
        // Every extern read: `r = map_value(.rodata.kconfig) + offset`.
        let mut offsets: Vec<i32> = Vec::new();
        for f in obj.functions.values() {
            for pair in f.instructions.windows(2) {
                if pair[0].code == 0x18 && pair[0].imm == 77 {
                    assert_eq!(pair[0].src_reg(), 2, "BPF_PSEUDO_MAP_VALUE");
                    offsets.push(pair[1].imm);
                }
            }
        }
        offsets.sort_unstable();
        assert_eq!(offsets, [0, 8, 12, 16, 20, 24, 25, 26, 27]);
    }

    #[test]
    fn kconfig_externs_without_a_value_are_errors_naming_them() {
        let object = kconfig_fixture();
        let kernel = kernel_with_syscall_wrapper();
        let hz_y = KCONFIG_TEXT.replace("CONFIG_HZ=1000", "CONFIG_HZ=y");
        let facts = |config| KernelFacts {
            version_code: Ok(1),
            config,
            btf: Some(&kernel),
        };
        let err = |facts: &KernelFacts<'_>, object: &[u8]| {
            resolve_kconfig(object, facts).unwrap_err().to_string()
        };
        // Not set and not __weak (libbpf: "not resolved").
        let e = err(
            &facts(Ok(("/proc/config.gz", "CONFIG_BPF_JIT=y\n"))),
            &object,
        );
        assert!(
            e.starts_with(".kconfig extern CONFIG_BPF_SYSCALL of the object: "),
            "{e}"
        );
        assert!(
            e.contains("(/proc/config.gz) does not set it") && e.contains("__weak"),
            "{e}"
        );
        // No configuration to read.
        let e = err(&facts(Err("neither A nor B exists")), &object);
        assert!(
            e.contains("CONFIG_BPF_SYSCALL") && e.contains("neither A nor B exists"),
            "{e}"
        );
        // A value of the wrong kind for the declared type.
        let e = err(&facts(Ok(("c", &hz_y))), &object);
        assert!(
            e.contains("extern CONFIG_HZ ") && e.contains("not integer"),
            "{e}"
        );
        // No kernel version.
        let no_version = KernelFacts {
            version_code: Err("the kernel's release x is not a version"),
            config: Ok(("c", KCONFIG_TEXT)),
            btf: Some(&kernel),
        };
        let e = err(&no_version, &object);
        assert!(
            e.contains("LINUX_KERNEL_VERSION") && e.contains("release x"),
            "{e}"
        );
        // A LINUX_ name ig does not know, not __weak (same length: the
        // ELF and BTF names are replaced alike).
        let renamed = replace_all(
            &object,
            b"LINUX_HAS_SYSCALL_WRAPPER\0",
            b"LINUX_HAS_SYSCALL_WRAPPEX\0",
        );
        let e = err(&facts(Ok(("c", KCONFIG_TEXT))), &renamed);
        assert!(
            e.contains("LINUX_HAS_SYSCALL_WRAPPEX") && e.contains("as libbpf does"),
            "{e}"
        );
        // Not an object: nothing to give values to.
        assert_eq!(kconfig_needs(b"junk").unwrap(), None);
        assert_eq!(resolve_kconfig(b"junk", &facts(Err("x"))).unwrap(), b"junk");
    }

    fn replace_all(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let mut out = data.to_vec();
        let mut n = 0;
        let mut i = 0;
        while let Some(p) = out[i..].windows(from.len()).position(|w| w == from) {
            out[i + p..i + p + to.len()].copy_from_slice(to);
            i += p + to.len();
            n += 1;
        }
        assert!(n >= 2, "{n} replacements");
        out
    }

    #[test]
    fn kernel_features_from_its_btf() {
        let kernel = kernel_with_syscall_wrapper();
        assert!(has_bpf_cookie(&kernel));
        assert_eq!(has_syscall_wrapper(&kernel), SYSCALL_WRAPPER.is_some());
        let none = Btf::parse(&BtfBuilder::new().to_bytes()).unwrap();
        assert!(!has_bpf_cookie(&none));
        assert!(!has_syscall_wrapper(&none));
    }

    #[test]
    fn socket_numbers() {
        assert_eq!(socket_number(b"socket1"), Some(&b"1"[..]));
        assert_eq!(socket_number(b"socket12"), Some(&b"12"[..]));
        assert_eq!(socket_number(b"socket"), None);
        assert_eq!(socket_number(b"socketx"), None);
        assert_eq!(socket_number(b".relsocket1"), None);
    }

    /// Found by `cargo xtask fuzz object`: a section header table offset
    /// near `usize::MAX` overflowed `offset + 8` while looking for the
    /// section-name table.
    #[test]
    fn section_header_offset_near_the_end_of_the_address_space() {
        let mut d = vec![0u8; 64];
        d[..6].copy_from_slice(b"\x7fELF\x02\x01");
        d[0x28..0x30].copy_from_slice(&(u64::MAX - 0x1f).to_le_bytes());
        d[0x3a] = 0x40;
        d[0x3c] = 2;
        assert_eq!(for_aya(&d), d);
        assert!(crate::bpf::object::ObjectInfo::parse(&d).is_err());
    }

    #[test]
    fn garbage_is_returned_unchanged() {
        assert_eq!(for_aya(b"junk"), b"junk");
        assert!(!needs_kernel_btf(b"junk"));
        let kernel = Btf::parse(&crate::btf::builder::BtfBuilder::new().to_bytes()).unwrap();
        assert_eq!(resolve_core(b"junk", &kernel, None).unwrap(), b"junk");
    }
}
