//! What we need from a gadget's ELF object before the kernel sees it: the
//! raw `.BTF` section, every program with its section name, and `.rodata`
//! symbols with their initial bytes.
//!
//! Pure parsing over the `object` crate; needs no privileges. aya parses the
//! object again to load it; it does not tell us a program's section name,
//! which we need to attach by section, hence this module.

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SectionKind, SymbolKind};

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("not a valid ELF object")]
    Elf(#[source] object::Error),
    #[error("the object has no .BTF section (compile with clang -g and keep .BTF when stripping)")]
    MissingBtf,
    #[error("reading section {section}")]
    Section {
        section: String,
        #[source]
        source: object::Error,
    },
}

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
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// The parsed parts of a gadget object.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    pub btf: Vec<u8>,
    pub programs: Vec<ProgramInfo>,
    pub rodata: Vec<u8>,
    pub rodata_symbols: Vec<RodataSymbol>,
    pub license: Option<String>,
}

impl ObjectInfo {
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

/// A copy of `data` in which upstream's numbered socket filter sections
/// (`socket1`, `socket2`, ...) are renamed `socket`, the only spelling aya
/// accepts. The names live in the section-name string table; the new name
/// is shorter, so it is NUL-padded in place and no offset moves. Anything
/// that is not a well-formed 64-bit ELF is returned unchanged (parsing
/// reports it properly later).
pub fn normalize_sections(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let Some((start, len)) = shstrtab_range(data) else {
        return out;
    };
    let table = &mut out[start..start + len];
    let mut i = 0;
    while i < table.len() {
        let end = table[i..]
            .iter()
            .position(|&b| b == 0)
            .map_or(table.len(), |n| i + n);
        let name = &table[i..end];
        if name.len() > 6 && name.starts_with(b"socket") && name[6..].iter().all(u8::is_ascii_digit)
        {
            table[i + 6..end].fill(0);
        }
        i = end + 1;
    }
    out
}

/// File range of the section-name string table of a 64-bit ELF.
fn shstrtab_range(d: &[u8]) -> Option<(usize, usize)> {
    if d.get(..4)? != b"\x7fELF" || *d.get(4)? != 2 {
        return None;
    }
    let le = *d.get(5)? == 1;
    let u16_at = |o: usize| -> Option<u16> {
        let b: [u8; 2] = d.get(o..o.checked_add(2)?)?.try_into().ok()?;
        Some(if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let u64_at = |o: usize| -> Option<u64> {
        let b: [u8; 8] = d.get(o..o.checked_add(8)?)?.try_into().ok()?;
        Some(if le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    };
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shstrndx = usize::from(u16_at(0x3e)?);
    let hdr = shoff.checked_add(shstrndx.checked_mul(shentsize)?)?;
    let off = usize::try_from(u64_at(hdr.checked_add(0x18)?)?).ok()?;
    let size = usize::try_from(u64_at(hdr.checked_add(0x20)?)?).ok()?;
    (off.checked_add(size)? <= d.len()).then_some((off, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_socket_sections_are_renamed_for_aya() {
        let src = "char LICENSE[] __attribute__((section(\"license\"), used)) = \"GPL\";\n\
                   __attribute__((section(\"socket1\"), used)) int f(void *s) { return 0; }\n";
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("s.c");
        let o = dir.path().join("s.o");
        std::fs::write(&c, src).unwrap();
        let ok = std::process::Command::new("clang")
            .args(["-target", "bpf", "-O2", "-c"])
            .arg(&c)
            .arg("-o")
            .arg(&o)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // clang is a build requirement of the project; CI has it.
            panic!("clang is needed for this test (apt-get install clang)");
        }
        let data = std::fs::read(&o).unwrap();
        let before = object::File::parse(&*data).unwrap();
        assert!(before.section_by_name("socket1").is_some());
        let fixed = normalize_sections(&data);
        assert_eq!(fixed.len(), data.len());
        let after = object::File::parse(&*fixed).unwrap();
        assert!(after.section_by_name("socket1").is_none());
        assert!(after.section_by_name("socket").is_some());
        assert_eq!(normalize_sections(b"junk"), b"junk");
    }

    /// Found by `cargo xtask fuzz object`: a section header table offset
    /// near `usize::MAX` overflowed `offset + 8` while looking for the
    /// section-name table.
    #[test]
    fn section_header_offset_near_the_end_of_the_address_space() {
        let mut d = vec![0u8; 64];
        d[..6].copy_from_slice(b"\x7fELF\x02\x01");
        d[0x28..0x30].copy_from_slice(&(u64::MAX - 0x1f).to_le_bytes());
        assert_eq!(shstrtab_range(&d), None);
        assert_eq!(normalize_sections(&d), d);
        assert!(ObjectInfo::parse(&d).is_err());
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
