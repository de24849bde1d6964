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

/// The `wasm_host` seeds are the programs `driver_seed_programs` writes, so
/// they follow the driver's format. `IG_FUZZ_WRITE_SEEDS=1` rewrites them.
#[test]
fn wasm_host_seeds_are_the_generated_programs() {
    let dir = fuzz_dir().join("corpus/wasm_host");
    for (name, program) in targets::driver_seed_programs() {
        let path = dir.join(name);
        if std::env::var_os("IG_FUZZ_WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &program).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (IG_FUZZ_WRITE_SEEDS=1 writes it)", path.display())
        });
        assert!(
            committed == program,
            "{} differs from driver_seed_programs() (IG_FUZZ_WRITE_SEEDS=1 rewrites it)",
            path.display()
        );
    }
    // The driver module itself is a seed of `wasm`, so that target
    // mutates a module that calls every host function.
    let (_, program) = &targets::driver_seed_programs()[0];
    let module = targets::driver_module(program);
    let path = fuzz_dir().join("corpus/wasm/driver-fields-and-packets.wasm");
    if std::env::var_os("IG_FUZZ_WRITE_SEEDS").is_some() {
        std::fs::write(&path, &module).unwrap();
    }
    assert!(
        std::fs::read(&path).is_ok_and(|m| m == module),
        "{} is not driver_module() of the first seed program (IG_FUZZ_WRITE_SEEDS=1 rewrites it)",
        path.display()
    );
}

/// The `filter_expr` seeds get where they are meant to: the valid
/// expressions compile and evaluate (some true, some false, one failing
/// on an address that is none), the others are the errors of each kind.
#[test]
fn filter_expr_seeds_compile_and_evaluate() {
    let mut outcomes = Vec::new();
    for f in files_of(&fuzz_dir().join("corpus/filter_expr")) {
        let data = std::fs::read(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        outcomes.push((name, targets::filter_expr_outcome(&data)));
    }
    let compiled: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| o.is_some())
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        compiled,
        [
            "seed01", "seed02", "seed03", "seed04", "seed05", "seed06", "seed07", "seed08",
            "seed13"
        ],
        "{outcomes:?}"
    );
    let got = |want: Option<bool>| {
        outcomes
            .iter()
            .any(|(_, o)| o.as_ref().map(|r| r.ok()) == Some(want))
    };
    assert!(
        got(Some(true)) && got(Some(false)) && got(None),
        "{outcomes:?}"
    );
}

/// The WASM harness gets as far as `ig run` does: guests run their
/// callbacks on the synthetic events, fields they set and packets they
/// emit reach the end of the chain (so the fuzz targets exercise the host
/// functions, not only the loader).
#[test]
fn wasm_harness_runs_callbacks_and_delivers_packets() {
    let has = |rows: &[Vec<String>], cells: &[&str]| {
        rows.iter()
            .any(|r| cells.iter().all(|c| r.iter().any(|x| x == c)))
    };
    let seed = |name: &str| std::fs::read(fuzz_dir().join("corpus/wasm").join(name)).unwrap();

    let programs = targets::driver_seed_programs();
    let rows = targets::run_guest(targets::driver_module(&programs[0].1)).unwrap();
    assert!(
        has(
            &rows,
            &[
                "value=84",
                "comm=getpid",
                "extra=hello from the driver",
                "n=18446744073709551615"
            ]
        ),
        "{rows:?}"
    );
    assert!(has(&rows, &["msg=hello from the driver"]), "{rows:?}");
    let rows = targets::run_guest(targets::driver_module(&programs[1].1)).unwrap();
    // Element 1 got its bytes, a third element was appended, and the
    // array packet arrived.
    assert!(
        has(&rows, &["id=2", "blob=\u{1}\u{2}\u{3}\0\u{7f}"]),
        "{rows:?}"
    );
    assert!(has(&rows, &["id=0"]), "{rows:?}");
    assert!(has(&rows, &["x=5"]), "the emitted array: {rows:?}");
    // The misuse program ends with an error pointer outside memory: a
    // trap, reported as the guest's error.
    let err = targets::run_guest(targets::driver_module(&programs[2].1)).unwrap_err();
    assert!(err.contains("dataSourceCallback trapped"), "{err}");
    // The kernel-objects program unreferences `minimal` in gadgetInit:
    // the end of the chain sees the other sources, not that one.
    let rows = targets::run_guest(targets::driver_module(&programs[3].1)).unwrap();
    assert!(has(&rows, &["fname=/etc/passwd"]), "{rows:?}");
    assert!(!has(&rows, &["label=getpid"]), "{rows:?}");

    let rows = targets::run_guest(seed("wasm_api-guest.wasm")).unwrap();
    // Without a logger gadgetShouldLog(0) answers 0, which the guest
    // records as its one failed check.
    assert!(
        has(
            &rows,
            &[
                "value=84",
                "greeting=hello",
                "syscall_name=getpid",
                "label_copy=getpid"
            ]
        ) && (has(&rows, &["checks=ok"]) || has(&rows, &["checks=should_log_error"])),
        "{rows:?}"
    );
    assert!(has(&rows, &["message=emitted by wasm"]), "{rows:?}");
    let rows = targets::run_guest(seed("trace_open_classify-classify.wasm")).unwrap();
    assert!(
        has(&rows, &["fname=/etc/passwd", "category=etc"]),
        "{rows:?}"
    );
    let err = targets::run_guest(seed("wasm_errors-loop.wasm")).unwrap_err();
    assert!(err.contains("gadgetInit ran longer than"), "{err}");
}

/// How long one input may take here. A WASM input is compiled by
/// cranelift, which this (unoptimized) test build runs many times slower
/// than the fuzz build does: its bound is about hanging (a guest call is
/// stopped after 2 s), not speed.
fn limit(target: &str) -> Duration {
    if target.starts_with("wasm") {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(5)
    }
}

/// Mutations per seed of `target`: fewer for WASM (each is a compile in
/// an unoptimized build; `cargo xtask fuzz` is where those targets get
/// their volume).
fn mutations(target: &str, per_seed: usize) -> usize {
    if target.starts_with("wasm") {
        per_seed / 10
    } else {
        per_seed
    }
}

/// What became of one input run with a deadline.
#[derive(Debug, PartialEq, Eq)]
enum Ran {
    Done,
    Panicked,
}

/// Runs target `name` on `data` on a thread of its own and waits at most
/// `limit`: an input that runs longer fails the test then, with `what`
/// named, instead of holding it for as long as the input takes (a
/// quadratic parse of 100k nested `[` took 70 s; one that never ends
/// would hold the run forever). The thread of such an input is left
/// behind; the test fails anyway.
fn run_within(name: &'static str, data: Vec<u8>, limit: Duration, what: &str) -> Ran {
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    std::thread::Builder::new()
        .name(format!("fuzz-{name}"))
        .spawn(move || {
            let known = targets::run(name, &data);
            let _ = tx.send(known);
        })
        .unwrap();
    match rx.recv_timeout(limit) {
        Ok(known) => {
            assert!(known, "unknown target {name}");
            Ran::Done
        }
        // The sender went away without sending: the target panicked.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Ran::Panicked,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
            "target {name} on {what} ran past its deadline of {limit:?} ({:?}): a super-linear or endless input",
            start.elapsed()
        ),
    }
}

#[test]
fn seeds_and_found_crashes_replay_without_panic() {
    for name in targets::NAMES {
        for dir in ["corpus", "regressions"] {
            for f in files_of(&fuzz_dir().join(dir).join(name)) {
                let data = std::fs::read(&f).unwrap();
                let ran = run_within(name, data, limit(name), &f.display().to_string());
                assert_eq!(ran, Ran::Done, "target {name} panicked on {}", f.display());
            }
        }
    }
}

/// Inputs built to be as bad as their size allows for a parser: deep
/// nesting of every bracket a target's grammar has, and long runs of one
/// character. Each must be refused or parsed within its target's deadline
/// (issue 33: 200 KB of nested `[` took 33.7 s in `gadget.yaml`'s parser,
/// and no seed was like it). 100,000 levels: the size of the input found
/// by hand.
#[test]
fn pathological_inputs_finish_within_the_deadline() {
    const N: usize = 100_000;
    let nested = |open: &str, close: &str| {
        let mut v = open.repeat(N).into_bytes();
        v.extend(close.repeat(N).into_bytes());
        v
    };
    let cases: Vec<(&'static str, &str, Vec<u8>)> = vec![
        ("gadget_yaml", "100k nested [", b"[".repeat(N)),
        ("gadget_yaml", "100k nested [ ]", nested("[", "]")),
        ("gadget_yaml", "100k nested {a: ", nested("{a: ", "}")),
        ("gadget_yaml", "2,000 block levels (2 MB of indentation)", {
            let mut v = Vec::new();
            for i in 0..2_000 {
                v.extend(" ".repeat(i).into_bytes());
                v.extend(b"a:\n");
            }
            v
        }),
        // yaml_serde stops alias expansion after 100 jumps per event of
        // the document ("repetition limit exceeded"): linear, but ~1 ms
        // per line of doubling aliases in this debug build, so 500 lines.
        ("gadget_yaml", "500 lines of doubling aliases", {
            let mut v = b"a0: &a0 [x]\n".to_vec();
            for i in 1..500 {
                v.extend(format!("a{i}: &a{i} [*a{}, *a{}]\n", i - 1, i - 1).into_bytes());
            }
            v
        }),
        ("oci_json", "100k nested [", nested("[", "]")),
        ("oci_json", "100k nested {", nested("{\"a\":", "}")),
        ("filter_expr", "100k nested (", {
            let mut v = vec![0u8; 33];
            v.extend(nested("(", ")"));
            v
        }),
        ("filter_expr", "100k not", {
            let mut v = vec![0u8; 33];
            v.extend(b"not ".repeat(N));
            v.extend(b"true");
            v
        }),
        ("filter", "100k nested regex groups", {
            let mut v = b"\x00a~".to_vec();
            v.extend(nested("(", ")"));
            v
        }),
        ("reference", "100k characters", b"a".repeat(N)),
        ("reference", "100k slashes", b"a/".repeat(N)),
    ];
    for (name, what, data) in cases {
        let _ = run_within(name, data, limit(name), what);
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
    let started = Instant::now();
    for name in targets::NAMES {
        for f in files_of(&fuzz_dir().join("corpus").join(name)) {
            // Most mutations of a guest that loops still loop: 2 s each
            // for nothing new (the seed itself is replayed above).
            if f.to_string_lossy().contains("loop") {
                continue;
            }
            let seed = std::fs::read(&f).unwrap();
            for _ in 0..mutations(name, per_seed) {
                let input = mutate(&mut rng, &seed);
                let what = format!("a mutation of {}", f.display());
                let ran = run_within(name, input.clone(), limit(name), &what);
                assert_eq!(
                    ran,
                    Ran::Done,
                    "target {name} panicked on {what}: {input:?}"
                );
                runs += 1;
            }
        }
    }
    assert!(runs > 1000, "{runs} runs");
    // The smoke must stay a smoke.
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{runs} mutations took {:?}",
        started.elapsed()
    );
}
