//! The fuzz targets (`fuzz/src/targets.rs`) in the ordinary test run: every
//! committed seed, every crash input found so far (`fuzz/regressions/`),
//! and a few thousand deterministic mutations of the seeds. This is the
//! short smoke of `cargo xtask test`; the coverage-guided runs are
//! `cargo xtask fuzz` (docs/reliability.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../../fuzz/src/targets.rs"]
#[allow(dead_code, reason = "shared with the fuzz crate")]
mod targets;

fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// A small xorshift generator: the same mutations on every run, so a
/// failure here reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

/// One mutation of `seed`, of the kinds that break parsers: bit flips,
/// boundary values written over length and offset fields, truncation,
/// duplication of a slice.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if d.len() >= 4 => {
                let i = rng.below(d.len() - 3);
                let v: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000, 0xffff][rng.below(6)];
                d[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            2 if !d.is_empty() => d.truncate(rng.below(d.len())),
            3 if !d.is_empty() => {
                let a = rng.below(d.len());
                let b = (a + rng.below(64)).min(d.len());
                let chunk = d[a..b].to_vec();
                let at = rng.below(d.len());
                d.splice(at..at, chunk);
            }
            4 if !d.is_empty() => {
                let i = rng.below(d.len());
                let syntax = b"{}[]:,\"'-&*!|>\\~=<()0\n\t ";
                d[i] = syntax[rng.below(syntax.len())];
            }
            _ => d.push(u8::try_from(rng.below(256)).unwrap_or(0)),
        }
    }
    d
}

#[test]
fn every_target_has_seeds_and_the_xtask_knows_it() {
    let xtask =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("xtask/src/fuzz.rs"))
            .unwrap();
    for name in targets::NAMES {
        let seeds = files_of(&fuzz_dir().join("corpus").join(name));
        assert!(!seeds.is_empty(), "fuzz/corpus/{name}/ has no seed");
        assert!(
            xtask.contains(&format!("\"{name}\"")),
            "cargo xtask fuzz does not run {name}"
        );
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{name}.rs"))
                .exists(),
            "no libFuzzer binary for {name}"
        );
    }
}

#[test]
fn seeds_and_found_crashes_replay_without_panic() {
    for name in targets::NAMES {
        for dir in ["corpus", "regressions"] {
            for f in files_of(&fuzz_dir().join(dir).join(name)) {
                let data = std::fs::read(&f).unwrap();
                let start = Instant::now();
                assert!(targets::run(name, &data));
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "{} took {:?}: super-linear input",
                    f.display(),
                    start.elapsed()
                );
            }
        }
    }
}

#[test]
fn mutated_seeds_do_not_panic() {
    let per_seed: usize = std::env::var("IG_FUZZ_SMOKE_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut runs = 0;
    for name in targets::NAMES {
        for f in files_of(&fuzz_dir().join("corpus").join(name)) {
            let seed = std::fs::read(&f).unwrap();
            for _ in 0..per_seed {
                let input = mutate(&mut rng, &seed);
                let r = std::panic::catch_unwind(|| targets::run(name, &input));
                assert!(
                    r.is_ok(),
                    "target {name} panicked on a mutation of {}: {:?}",
                    f.display(),
                    input
                );
                runs += 1;
            }
        }
    }
    assert!(runs > 1000, "{runs} runs");
}
