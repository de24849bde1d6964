//! Maps of an object replaced by maps that already exist: the object's
//! references to map `M` become references to a descriptor we hold
//! (upstream's `MapReplacements`, which aya 0.14 has no equivalent of).
//!
//! The socket enricher creates `gadget_sockets` with the value size of
//! the layout it was configured with, fills it, and hands its descriptor
//! to the gadget, whose own `gadget_sockets` definition (the largest
//! layout) is then never used. Every `ld_imm64` the object's relocations
//! point at symbol `M` is made a `BPF_PSEUDO_MAP_FD` load of the
//! descriptor, and those relocation records are removed, so aya leaves
//! the instructions alone. aya still creates a map from `M`'s definition,
//! which nothing references any more (the loader makes it one entry).
//! Pure: bytes in, bytes out; the descriptor is only a number here and
//! must stay open until the programs are loaded.

use super::{CompatError, Elf, rd_u16, rd_u32, rd_u64, replace_section, wr_u32};

const SHT_SYMTAB: u32 = 2;
/// `SHF_EXECINSTR`: a section of code (the others, such as DWARF's, may
/// refer to a map's symbol too, as data).
const SHF_EXECINSTR: u64 = 4;
const SHT_REL: u32 = 9;
const SYM_SIZE: usize = 24;
const REL_SIZE: usize = 16;
/// `BPF_LD | BPF_IMM | BPF_DW`.
const LD_IMM64: u8 = 0x18;
/// `src_reg` of an `ld_imm64` holding a map descriptor.
const PSEUDO_MAP_FD: u8 = 1;

/// `object` with its references to each map `(name, fd)` made references
/// to `fd`. A map the object does not reference is not an error (the
/// gadget may declare it unused); a reference that is not an `ld_imm64`
/// is.
pub fn replace_maps(object: &[u8], maps: &[(&str, i32)]) -> Result<Vec<u8>, CompatError> {
    let mut out = object.to_vec();
    let Some(elf) = Elf::parse(object) else {
        return Ok(out);
    };
    let headers: Vec<(usize, super::Shdr)> = (1..elf.shnum)
        .filter_map(|i| Some((i, elf.header(object, i)?)))
        .collect();
    let sh_type = |sh: &super::Shdr| rd_u32(object, sh.at + 4).unwrap_or(0);
    let sh_info = |sh: &super::Shdr| rd_u32(object, sh.at + 0x2c).unwrap_or(0) as usize;
    let Some((_, symtab)) = headers.iter().find(|(_, sh)| sh_type(sh) == SHT_SYMTAB) else {
        return Ok(out);
    };
    let Some(strtab) = elf.header(
        object,
        rd_u32(object, symtab.at + 0x28).unwrap_or(0) as usize,
    ) else {
        return Ok(out);
    };
    let (Some(syms), Some(strs)) = (Elf::data(object, symtab), Elf::data(object, &strtab)) else {
        return Ok(out);
    };
    let Some(maps_shndx) = headers
        .iter()
        .find(|(_, sh)| elf.name(object, sh) == Some(b".maps"))
        .map(|(i, _)| *i)
    else {
        return Ok(out);
    };
    // Symbol index → descriptor, for the maps asked for.
    let mut by_symbol: Vec<(u64, i32, &str)> = Vec::new();
    for (i, sym) in syms.chunks_exact(SYM_SIZE).enumerate() {
        let name_off = rd_u32(sym, 0).unwrap_or(0) as usize;
        let shndx = usize::from(rd_u16(sym, 6).unwrap_or(0));
        if shndx != maps_shndx {
            continue;
        }
        let name = strs
            .get(name_off..)
            .and_then(|t| t.split(|&b| b == 0).next())
            .unwrap_or_default();
        if let Some((m, fd)) = maps.iter().find(|(m, _)| m.as_bytes() == name) {
            by_symbol.push((i as u64, *fd, m));
        }
    }
    if by_symbol.is_empty() {
        return Ok(out);
    }
    for (_, rel) in headers.iter().filter(|(_, sh)| sh_type(sh) == SHT_REL) {
        let Some(target) = elf.header(object, sh_info(rel)) else {
            continue;
        };
        if rd_u64(object, target.at + 8).unwrap_or(0) & SHF_EXECINSTR == 0 {
            continue;
        }
        let Some(records) = Elf::data(object, rel) else {
            continue;
        };
        let section = elf
            .name(object, &target)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let mut kept = Vec::with_capacity(records.len());
        let mut changed = false;
        for r in records.chunks_exact(REL_SIZE) {
            let offset = rd_u64(r, 0).unwrap_or(u64::MAX) as usize;
            let sym = rd_u64(r, 8).unwrap_or(0) >> 32;
            let Some((_, fd, map)) = by_symbol.iter().find(|(s, _, _)| *s == sym) else {
                kept.extend_from_slice(r);
                continue;
            };
            let at = target
                .offset
                .checked_add(offset)
                .filter(|_| offset.checked_add(16).is_some_and(|e| e <= target.size));
            let bad = || CompatError::MapReference {
                map: (*map).to_owned(),
                section: section.clone(),
                offset,
            };
            let at = at.ok_or_else(bad)?;
            if out.get(at) != Some(&LD_IMM64) {
                return Err(bad());
            }
            out[at + 1] = (out[at + 1] & 0x0f) | (PSEUDO_MAP_FD << 4);
            wr_u32(&mut out, at + 4, *fd as u32);
            wr_u32(&mut out, at + 12, 0);
            changed = true;
            log::debug!(
                "map {map}: referenced in {section} at {offset:#x}, replaced by descriptor {fd}"
            );
        }
        if changed {
            replace_section(&mut out, rel, &kept);
        }
    }
    Ok(out)
}
