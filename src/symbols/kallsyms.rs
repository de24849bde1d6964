//! Kernel symbols from `/proc/kallsyms`: parsed once into a table sorted by
//! address, looked up by binary search.
//!
//! A line is `ADDRESS TYPE NAME [MODULE]`. Only text symbols (`t`, `T`,
//! `w`, `W`) are kept: stack addresses are code addresses, and a data
//! symbol between two functions would otherwise swallow the end of the
//! first. When `kernel.kptr_restrict` hides addresses from us every address
//! reads as zero; that is an error of its own, so the user learns why.

use std::path::Path;

/// Why the kernel's symbols are not usable.
#[derive(Debug, thiserror::Error)]
pub enum KallsymsError {
    /// Reading `path` failed.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `path` shows every address as 0.
    #[error(
        "{path} shows every address as 0: kernel.kptr_restrict hides them from this process (run as root with kptr_restrict 0 or 1, e.g. sysctl kernel.kptr_restrict=1)"
    )]
    Hidden {
        /// The file.
        path: String,
    },
    /// `path` lists no text symbols.
    #[error("{path} lists no text symbols")]
    Empty {
        /// The file.
        path: String,
    },
}

/// One kernel function: where it starts, its name and its module (`None`
/// for the kernel image itself).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sym {
    addr: u64,
    name: Box<str>,
    module: Option<Box<str>>,
}

/// The kernel's text symbols, sorted by address.
#[derive(Debug, Default)]
pub struct KernelSymbols {
    syms: Vec<Sym>,
}

/// A resolved kernel address: `name+0xoffset`, with the module in brackets
/// when it is not the kernel image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFrame<'a> {
    /// The symbol.
    pub name: &'a str,
    /// Bytes from its start.
    pub offset: u64,
    /// Its module, when not the kernel image.
    pub module: Option<&'a str>,
}

impl std::fmt::Display for KernelFrame<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{:#x}", self.name, self.offset)?;
        if let Some(m) = self.module {
            write!(f, " [{m}]")?;
        }
        Ok(())
    }
}

impl KernelSymbols {
    /// Read and parse `/proc/kallsyms`.
    pub fn load() -> Result<Self, KallsymsError> {
        Self::load_from(Path::new("/proc/kallsyms"))
    }

    /// Read and parse a kallsyms file at `path`.
    pub fn load_from(path: &Path) -> Result<Self, KallsymsError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KallsymsError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text, &p)
    }

    /// Parse kallsyms text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, KallsymsError> {
        let mut syms = Vec::with_capacity(text.len() / 40);
        let mut any_line = false;
        for line in text.lines() {
            let mut it = line.split_ascii_whitespace();
            let (Some(addr), Some(ty), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            any_line = true;
            if !matches!(ty, "t" | "T" | "w" | "W") || addr == 0 {
                continue;
            }
            let module = it
                .next()
                .and_then(|m| m.strip_prefix('[')?.strip_suffix(']'))
                .map(Box::from);
            syms.push(Sym {
                addr,
                name: name.into(),
                module,
            });
        }
        if syms.is_empty() {
            return Err(if any_line {
                KallsymsError::Hidden {
                    path: path.to_owned(),
                }
            } else {
                KallsymsError::Empty {
                    path: path.to_owned(),
                }
            });
        }
        // Stable: of several names at one address, the first listed wins.
        syms.sort_by_key(|s| s.addr);
        syms.dedup_by_key(|s| s.addr);
        Ok(Self { syms })
    }

    /// How many text symbols.
    pub fn len(&self) -> usize {
        self.syms.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// The function `addr` falls in: the last symbol at or below it.
    /// `None` below the first symbol.
    pub fn resolve(&self, addr: u64) -> Option<KernelFrame<'_>> {
        let i = self.syms.partition_point(|s| s.addr <= addr);
        let s = self.syms.get(i.checked_sub(1)?)?;
        Some(KernelFrame {
            name: &s.name,
            offset: addr - s.addr,
            module: s.module.as_deref(),
        })
    }
}

/// How many lines of kallsyms text name symbol `name` (any type, any
/// module), counting to 2 at most: upstream's "does it exist" is "exactly
/// once" (several is ambiguous). Reads line by line: the file is large.
pub fn count_named(text: impl std::io::BufRead, name: &str) -> std::io::Result<usize> {
    let mut n = 0;
    for line in text.split(b'\n') {
        let line = line?;
        // ADDRESS TYPE NAME[\t[MODULE]]
        let mut it = line.splitn(3, |b| *b == b' ');
        let (Some(_), Some(_), Some(rest)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let sym = rest.split(|b| *b == b'\t').next().unwrap_or_default();
        if sym == name.as_bytes() {
            n += 1;
            if n == 2 {
                break;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
ffffffff81000000 T _stext
ffffffff81000100 t helper
ffffffff81000200 D some_data
ffffffff81000300 T do_work
ffffffff81000300 T do_work_alias
ffffffffc0001000 t ext4_read\t[ext4]
ffffffffc0002000 T nf_hook [nf_tables]
";

    #[test]
    fn resolves_to_the_enclosing_text_symbol() {
        let k = KernelSymbols::parse(TEXT, "test").unwrap();
        assert_eq!(k.len(), 5);
        let f = |a| k.resolve(a).map(|f| f.to_string());
        assert_eq!(f(0xffffffff81000000).as_deref(), Some("_stext+0x0"));
        assert_eq!(f(0xffffffff81000110).as_deref(), Some("helper+0x10"));
        // The data symbol is skipped: 0x250 is still in helper.
        assert_eq!(f(0xffffffff81000250).as_deref(), Some("helper+0x150"));
        assert_eq!(f(0xffffffff81000312).as_deref(), Some("do_work+0x12"));
        assert_eq!(
            f(0xffffffffc0001008).as_deref(),
            Some("ext4_read+0x8 [ext4]")
        );
        assert_eq!(
            f(0xffffffffc0002001).as_deref(),
            Some("nf_hook+0x1 [nf_tables]")
        );
        assert_eq!(f(0x1000), None);
    }

    #[test]
    fn names_are_counted_to_two_whatever_their_type_or_module() {
        let text = "ffffffff81000000 T vfs_read\n\
                    ffffffff81000100 t dup\n\
                    ffffffff81000200 d dup\n\
                    ffffffffc0000000 t mod_fn\t[ext4]\n\
                    garbage\n";
        let count = |n: &str| count_named(text.as_bytes(), n).unwrap();
        assert_eq!(count("vfs_read"), 1);
        assert_eq!(count("dup"), 2);
        assert_eq!(count("mod_fn"), 1);
        assert_eq!(count("ext4"), 0);
        assert_eq!(count("vfs"), 0);
        assert_eq!(count(""), 0);
    }

    #[test]
    fn hidden_addresses_say_why() {
        let hidden = TEXT
            .lines()
            .map(|l| format!("0000000000000000{}\n", &l[16..]))
            .collect::<String>();
        let e = KernelSymbols::parse(&hidden, "/proc/kallsyms").unwrap_err();
        assert!(matches!(e, KallsymsError::Hidden { .. }), "{e}");
        assert!(e.to_string().contains("kptr_restrict"), "{e}");
        let e = KernelSymbols::parse("", "x").unwrap_err();
        assert!(matches!(e, KallsymsError::Empty { .. }));
    }

    #[test]
    fn this_kernel_parses_quickly() {
        // Unprivileged runs may see zeros; that must be the Hidden error.
        let t = std::time::Instant::now();
        match KernelSymbols::load() {
            Ok(k) => {
                assert!(k.len() > 1000);
                // Measured about 0.1 s (release) to 0.3 s (debug) for
                // 120 000 symbols; a generous bound catches a quadratic
                // regression.
                assert!(t.elapsed() < std::time::Duration::from_secs(5));
            }
            Err(KallsymsError::Hidden { .. } | KallsymsError::Read { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
}
