//! Which clang and llvm-strip `ig image build` runs.
//!
//! Upstream's builder image pins clang/LLVM 18; Debian bookworm's default
//! `clang` is 14, which fails some upstream gadgets (profile_blockio:
//! "Incorrect flag for llvm.bpf.preserve.type.info intrinsic"), while
//! bookworm also ships `clang-19`. So, unless `IG_CLANG` names one, the
//! newest clang on `PATH` is used: `clang-<N>` by its name, a plain
//! `clang` by what `clang --version` says. llvm-strip comes with it
//! (`llvm-strip-<N>` next to `clang-<N>`, else `llvm-strip`) unless
//! `IG_LLVM_STRIP` names one. `ig -v image build` says what was chosen.
//!
//! Owns: the choice. Does not own: running the tools (`super::run_tool`).

use std::path::Path;
use std::process::{Command, Stdio};

/// The clang major version upstream's builder uses; older ones get a
/// warning, since some upstream gadgets need newer BPF intrinsics.
pub const UPSTREAM_CLANG_MAJOR: u32 = 18;

/// The tools to run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    /// The clang to run.
    pub clang: String,
    /// The llvm-strip to run.
    pub strip: String,
    /// Major version of `clang`, when known.
    pub clang_major: Option<u32>,
    /// Where the choice came from, for `-v` and for error messages.
    pub origin: Origin,
}

/// How clang was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `IG_CLANG` named it.
    Env,
    /// The newest clang on `PATH`.
    Path,
    /// No clang on `PATH`: `clang`, which will fail with a clear error.
    NotFound,
}

impl Toolchain {
    /// From `IG_CLANG`/`IG_LLVM_STRIP` and `PATH`.
    pub fn from_env() -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let path = std::env::var_os("PATH").unwrap_or_default();
        let dirs: Vec<_> = std::env::split_paths(&path).collect();
        let candidates = clang_candidates(&dirs);
        choose(env("IG_CLANG"), env("IG_LLVM_STRIP"), &candidates, |name| {
            on_path(&dirs, name)
        })
    }

    /// One line for `-v`.
    pub fn describe(&self) -> String {
        let version = self
            .clang_major
            .map_or_else(String::new, |v| format!(" (version {v})"));
        let why = match self.origin {
            Origin::Env => "from IG_CLANG",
            Origin::Path => "the newest clang on PATH; IG_CLANG chooses another",
            Origin::NotFound => "no clang found on PATH",
        };
        format!(
            "compiling with {}{version} and {} ({why})",
            self.clang, self.strip
        )
    }
}

/// `(name, major)` of every `clang` and `clang-<N>` in `dirs`, first
/// directory first. A plain `clang` is asked its version.
fn clang_candidates(dirs: &[std::path::PathBuf]) -> Vec<(String, Option<u32>)> {
    let mut out: Vec<(String, Option<u32>)> = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n == "clang" || versioned_major(n).is_some())
            .collect();
        names.sort();
        for name in names {
            if out.iter().any(|(n, _)| *n == name) {
                continue; // shadowed by an earlier directory
            }
            let major = versioned_major(&name).or_else(|| ask_version(&dir.join(&name)));
            out.push((name, major));
        }
    }
    out
}

/// `N` of `clang-N`.
fn versioned_major(name: &str) -> Option<u32> {
    name.strip_prefix("clang-")?.parse().ok()
}

/// The major version `clang --version` prints.
fn ask_version(path: &Path) -> Option<u32> {
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// `19` from "Debian clang version 19.1.7 (3~deb12u1)\n...".
pub fn parse_version(text: &str) -> Option<u32> {
    let rest = text.split("clang version ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn on_path(dirs: &[std::path::PathBuf], name: &str) -> bool {
    dirs.iter().any(|d| d.join(name).is_file())
}

/// The choice, from the environment's overrides and the candidates found.
fn choose(
    env_clang: Option<String>,
    env_strip: Option<String>,
    candidates: &[(String, Option<u32>)],
    exists: impl Fn(&str) -> bool,
) -> Toolchain {
    let (clang, clang_major, origin) = match env_clang {
        Some(c) => {
            let major = versioned_major(
                Path::new(&c)
                    .file_name()
                    .and_then(|f| f.to_str())
                    .unwrap_or(""),
            )
            .or_else(|| {
                candidates
                    .iter()
                    .find(|(n, _)| *n == c)
                    .and_then(|(_, v)| *v)
            });
            (c, major, Origin::Env)
        }
        None => {
            // Highest version; on a tie the versioned name, whose strip
            // is easier to pair.
            let best = candidates
                .iter()
                .max_by_key(|(n, v)| (v.unwrap_or(0), versioned_major(n).is_some()));
            match best {
                Some((n, v)) => (n.clone(), *v, Origin::Path),
                None => ("clang".to_owned(), None, Origin::NotFound),
            }
        }
    };
    let strip = env_strip.unwrap_or_else(|| {
        let paired = versioned_major(&clang).map(|v| format!("llvm-strip-{v}"));
        match paired {
            Some(p) if exists(&p) => p,
            _ => "llvm-strip".to_owned(),
        }
    });
    Toolchain {
        clang,
        strip,
        clang_major,
        origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(list: &[(&str, Option<u32>)]) -> Vec<(String, Option<u32>)> {
        list.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect()
    }

    #[test]
    fn newest_clang_wins_and_brings_its_strip() {
        let cands = c(&[
            ("clang", Some(14)),
            ("clang-14", Some(14)),
            ("clang-19", Some(19)),
        ]);
        let t = choose(None, None, &cands, |n| n == "llvm-strip-19");
        assert_eq!(t.clang, "clang-19");
        assert_eq!(t.strip, "llvm-strip-19");
        assert_eq!(t.clang_major, Some(19));
        assert_eq!(t.origin, Origin::Path);
        // No versioned strip installed: the plain one.
        let t = choose(None, None, &cands, |_| false);
        assert_eq!(t.strip, "llvm-strip");
        // A plain clang newer than every versioned one.
        let cands = c(&[("clang", Some(20)), ("clang-19", Some(19))]);
        assert_eq!(choose(None, None, &cands, |_| true).clang, "clang");
        // Same version: the versioned name.
        let cands = c(&[("clang", Some(19)), ("clang-19", Some(19))]);
        assert_eq!(choose(None, None, &cands, |_| true).clang, "clang-19");
    }

    #[test]
    fn environment_wins() {
        let cands = c(&[("clang-19", Some(19))]);
        let t = choose(
            Some("/opt/llvm/bin/clang-17".into()),
            Some("my-strip".into()),
            &cands,
            |_| true,
        );
        assert_eq!(t.clang, "/opt/llvm/bin/clang-17");
        assert_eq!(t.strip, "my-strip");
        assert_eq!(t.clang_major, Some(17));
        assert_eq!(t.origin, Origin::Env);
        assert!(t.describe().contains("from IG_CLANG"), "{}", t.describe());
    }

    #[test]
    fn nothing_found_keeps_the_plain_names() {
        let t = choose(None, None, &[], |_| false);
        assert_eq!(
            (t.clang.as_str(), t.strip.as_str()),
            ("clang", "llvm-strip")
        );
        assert_eq!(t.origin, Origin::NotFound);
    }

    #[test]
    fn versions_are_read_from_clang_output() {
        assert_eq!(
            parse_version("Debian clang version 19.1.7 (3~deb12u1)\nTarget: x86_64"),
            Some(19)
        );
        assert_eq!(parse_version("clang version 14.0.6\n"), Some(14));
        assert_eq!(
            parse_version("Apple clang version 15.0.0 (clang-1500)"),
            Some(15)
        );
        assert_eq!(parse_version("gcc (Debian 12.2.0-14) 12.2.0"), None);
        assert_eq!(versioned_major("clang-19"), Some(19));
        assert_eq!(versioned_major("clang-format-19"), None);
        assert_eq!(versioned_major("clang-cpp-14"), None);
    }
}
