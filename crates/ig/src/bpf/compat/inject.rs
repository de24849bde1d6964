//! Code put in front of a function: the compiled packet filter at the
//! start of a `GADGET_PF` function (`bpf::pf`), as upstream's loader
//! inserts it in the instruction stream before loading.
//!
//! Inserting instructions into a relocatable object moves everything after
//! them in that section, so each reference into the section is adjusted:
//! symbols after the insertion point (and the function's size), relocation
//! records of the section, calls and function references that point past
//! it (pc-relative calls within the section, section-relative ones from
//! elsewhere), and the `.BTF.ext` records of the section (func_info and
//! line_info records at the insertion point stay: they open the function,
//! which now opens with the new code; CO-RE records there move with their
//! instruction). A call to the function itself still lands on its start,
//! the new code. The grown section moves to the end of the file. Pure.

use super::{
    CompatError, Elf, ext_blocks, rd_u16, rd_u32, rd_u64, replace_section, wr_u32, wr_u64,
};
use crate::btf::Btf;

const SHT_SYMTAB: u32 = 2;
const SHT_REL: u32 = 9;
const SHF_EXECINSTR: u64 = 4;
const STT_SECTION: u8 = 3;
const STT_FUNC: u8 = 2;
const SYM_SIZE: usize = 24;
const REL_SIZE: usize = 16;
/// `BPF_JMP | BPF_CALL`, `BPF_LD | BPF_IMM | BPF_DW`.
const CALL: u8 = 0x85;
const LD_IMM64: u8 = 0x18;
/// `src_reg` of a call to a function of the object.
const PSEUDO_CALL: u8 = 1;

/// `object` with `code` put at the start of function `function`.
pub fn inject_at_function(
    object: &[u8],
    function: &str,
    code: &[[u8; 8]],
) -> Result<Vec<u8>, CompatError> {
    let missing = || CompatError::NoFunction {
        function: function.to_owned(),
    };
    let elf = Elf::parse(object).ok_or_else(missing)?;
    let sh_type = |i: usize| {
        elf.header(object, i)
            .and_then(|sh| rd_u32(object, sh.at + 4))
    };
    let symtab_i = (1..elf.shnum)
        .find(|&i| sh_type(i) == Some(SHT_SYMTAB))
        .ok_or_else(missing)?;
    let symtab = elf.header(object, symtab_i).ok_or_else(missing)?;
    let strtab = elf
        .header(
            object,
            rd_u32(object, symtab.at + 0x28).unwrap_or(0) as usize,
        )
        .ok_or_else(missing)?;
    let (syms, strs) = (
        Elf::data(object, &symtab).ok_or_else(missing)?,
        Elf::data(object, &strtab).ok_or_else(missing)?,
    );
    let name_of = |sym: &[u8]| {
        let off = rd_u32(sym, 0).unwrap_or(0) as usize;
        strs.get(off..)
            .and_then(|t| t.split(|&b| b == 0).next())
            .unwrap_or_default()
    };
    // The function: its section, start and symbol.
    let (fn_sym, sec, start) = syms
        .chunks_exact(SYM_SIZE)
        .enumerate()
        .find(|(_, s)| s[4] & 0xf == STT_FUNC && name_of(s) == function.as_bytes())
        .map(|(i, s)| {
            (
                i,
                usize::from(rd_u16(s, 6).unwrap_or(0)),
                rd_u64(s, 8).unwrap_or(0) as usize,
            )
        })
        .ok_or_else(missing)?;
    let text = elf.header(object, sec).ok_or_else(missing)?;
    let section_name = elf
        .name(object, &text)
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default();
    let old = Elf::data(object, &text).ok_or_else(missing)?;
    if start % 8 != 0 || start > old.len() {
        return Err(missing());
    }
    let n = code.len();
    let d = n * 8;
    let start_insn = start / 8;
    // The section symbols of `sec`: references through them carry the
    // offset in the instruction.
    let section_syms: Vec<u64> = syms
        .chunks_exact(SYM_SIZE)
        .enumerate()
        .filter(|(_, s)| s[4] & 0xf == STT_SECTION && usize::from(rd_u16(s, 6).unwrap_or(0)) == sec)
        .map(|(i, _)| i as u64)
        .collect();

    let mut out = object.to_vec();

    // Relocation records: which instructions of `sec` have one (old
    // offsets), and the records to fix.
    let rels: Vec<(usize, super::Shdr)> = (1..elf.shnum)
        .filter(|&i| sh_type(i) == Some(SHT_REL))
        .filter_map(|i| Some((i, elf.header(object, i)?)))
        .collect();
    let target_of = |rel: &super::Shdr| rd_u32(object, rel.at + 0x2c).unwrap_or(0) as usize;
    let is_code = |i: usize| {
        elf.header(object, i)
            .and_then(|sh| rd_u64(object, sh.at + 8))
            .is_some_and(|f| f & SHF_EXECINSTR != 0)
    };
    let mut relocated_in_sec = std::collections::HashSet::new();
    for (_, rel) in rels.iter().filter(|(_, r)| target_of(r) == sec) {
        for r in Elf::data(object, rel)
            .unwrap_or_default()
            .chunks_exact(REL_SIZE)
        {
            relocated_in_sec.insert(rd_u64(r, 0).unwrap_or(0) as usize);
        }
    }

    // The new section: old code, with pc-relative calls that cross the
    // insertion point fixed, and the new code at `start`.
    let mut body = old.to_vec();
    for (i, insn) in old.chunks_exact(8).enumerate() {
        if insn[0] != CALL || insn[1] >> 4 != PSEUDO_CALL || relocated_in_sec.contains(&(i * 8)) {
            continue;
        }
        let imm = i64::from(i32::from_le_bytes(
            insn[4..8].try_into().unwrap_or_default(),
        ));
        let target = i as i64 + 1 + imm;
        let new_i = if i >= start_insn {
            i as i64 + n as i64
        } else {
            i as i64
        };
        // A call to the function's start lands on the new code.
        let new_target = if target > start_insn as i64 {
            target + n as i64
        } else {
            target
        };
        let new_imm = i32::try_from(new_target - new_i - 1).map_err(|_| missing())?;
        body[i * 8 + 4..i * 8 + 8].copy_from_slice(&new_imm.to_le_bytes());
    }
    let mut section = body[..start].to_vec();
    for insn in code {
        section.extend_from_slice(insn);
    }
    section.extend_from_slice(&body[start..]);

    // References through the section symbol, from any code section.
    for (_, rel) in &rels {
        let target = target_of(rel);
        if !is_code(target) {
            continue;
        }
        for r in Elf::data(object, rel)
            .unwrap_or_default()
            .chunks_exact(REL_SIZE)
        {
            let off = rd_u64(r, 0).unwrap_or(0) as usize;
            let sym = rd_u64(r, 8).unwrap_or(0) >> 32;
            if !section_syms.contains(&sym) {
                continue;
            }
            // The instruction, in the bytes it will have.
            let (buf, at): (&mut Vec<u8>, usize) = if target == sec {
                (&mut section, if off >= start { off + d } else { off })
            } else {
                let th = elf.header(object, target).ok_or_else(missing)?;
                (&mut out, th.offset + off)
            };
            let Some(insn) = buf.get(at..at + 8) else {
                continue;
            };
            let imm = i64::from(i32::from_le_bytes(
                insn[4..8].try_into().unwrap_or_default(),
            ));
            let new_imm = match insn[0] {
                // The callee is instruction imm + 1 of the section.
                CALL if (imm + 1) * 8 > start as i64 => imm + n as i64,
                // The function's address is byte imm of the section.
                LD_IMM64 if imm > start as i64 => imm + d as i64,
                _ => continue,
            };
            let new_imm = i32::try_from(new_imm).map_err(|_| missing())?;
            buf[at + 4..at + 8].copy_from_slice(&new_imm.to_le_bytes());
        }
    }
    // The section's relocation records move with their instructions.
    for (_, rel) in rels.iter().filter(|(_, r)| target_of(r) == sec) {
        let mut data = Elf::data(object, rel).unwrap_or_default().to_vec();
        for r in data.chunks_exact_mut(REL_SIZE) {
            let off = rd_u64(r, 0).unwrap_or(0) as usize;
            if off >= start {
                wr_u64(r, 0, (off + d) as u64);
            }
        }
        replace_section(&mut out, rel, &data);
    }
    // Symbols of the section after the insertion point; the function grows.
    let mut new_syms = syms.to_vec();
    for (i, s) in new_syms.chunks_exact_mut(SYM_SIZE).enumerate() {
        if usize::from(rd_u16(s, 6).unwrap_or(0)) != sec {
            continue;
        }
        let value = rd_u64(s, 8).unwrap_or(0) as usize;
        if i == fn_sym {
            let size = rd_u64(s, 16).unwrap_or(0);
            wr_u64(s, 16, size + d as u64);
        } else if value > start {
            wr_u64(s, 8, (value + d) as u64);
        }
    }
    replace_section(&mut out, &symtab, &new_syms);
    // `.BTF.ext` records of the section.
    shift_btf_ext(&mut out, &section_name, start, d)?;
    // Last: the section grows and moves to the end of the file.
    let text = Elf::parse(&out)
        .and_then(|e| e.header(&out, sec))
        .ok_or_else(missing)?;
    replace_section(&mut out, &text, &section);
    Ok(out)
}

/// Move the `.BTF.ext` records of section `name` after byte `start` by
/// `d` bytes (func_info and line_info strictly after it, CO-RE records at
/// it too).
fn shift_btf_ext(out: &mut Vec<u8>, name: &str, start: usize, d: usize) -> Result<(), CompatError> {
    let Some(elf) = Elf::parse(out) else {
        return Ok(());
    };
    let (Some(btf_sh), Some(ext_sh)) = (elf.find(out, ".BTF"), elf.find(out, ".BTF.ext")) else {
        return Ok(());
    };
    let (Some(btf), Some(ext)) = (Elf::data(out, &btf_sh), Elf::data(out, &ext_sh)) else {
        return Ok(());
    };
    let Ok(btf) = Btf::parse(btf) else {
        return Ok(());
    };
    let mut ext = ext.to_vec();
    for block in ext_blocks(&ext.clone()) {
        let core = block.field == 24;
        for (name_at, recs) in &block.sections {
            let sec = rd_u32(&ext, *name_at).and_then(|o| btf.string_at(o));
            if sec != Some(name) {
                continue;
            }
            for at in recs.clone().step_by(block.rec_size) {
                let off = rd_u32(&ext, at).unwrap_or(0) as usize;
                if off > start || (core && off == start) {
                    wr_u32(&mut ext, at, (off + d) as u32);
                }
            }
        }
    }
    replace_section(out, &ext_sh, &ext);
    Ok(())
}
