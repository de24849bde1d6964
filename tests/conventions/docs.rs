//! The documents of `docs/` say what really happens: the user guide's jq
//! recipes run against real `ig` output, and the author guide's worked
//! example (kept in `docs/examples/trace_mkdir/`) matches the guide, builds
//! and reports a mkdir of ours.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestStore, gadget_store, ig_bin, repo, text};
use crate::require_root;

/// The `ig run ... -o json ... | jq ...` lines of the user guide.
fn jq_recipes() -> Vec<String> {
    let guide = std::fs::read_to_string(repo().join("docs/user-guide.md")).unwrap();
    guide
        .lines()
        .filter(|l| l.starts_with("ig run ") && l.contains(" -o json") && l.contains("| jq "))
        .map(str::to_owned)
        .collect()
}

/// Starts and ends programs (cat of a file that exists and of one that
/// does not) until `stop`, so exec and open gadgets have events to show.
fn workload(stop: Instant) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while Instant::now() < stop {
            let _ = Command::new("cat")
                .args(["/etc/hostname", "/nonexistent/ig-docs-test"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

#[test]
fn user_guide_jq_recipes_work_on_real_output() {
    require_root();
    let _quiet = crate::HOST_EVENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let recipes = jq_recipes();
    assert!(recipes.len() >= 5, "recipes not found: {recipes:?}");
    let store = gadget_store();
    let bin = Path::new(ig_bin()).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    // All recipes at once, over one workload.
    let stop = Instant::now() + Duration::from_secs(6);
    let children: Vec<_> = recipes
        .iter()
        .map(|r| {
            // Bounded runs: recipes without --timeout get one after the
            // image name; the others keep theirs but shorter.
            let (ig, jq) = r.split_once(" | jq ").unwrap();
            let mut words: Vec<String> = ig.split_whitespace().map(str::to_owned).collect();
            match words.iter().position(|w| w == "--timeout") {
                Some(i) => words[i + 1] = "4".into(),
                None => {
                    words.splice(3..3, ["--timeout".to_owned(), "4".to_owned()]);
                }
            }
            let cmd = format!("{} | jq {jq}", words.join(" "));
            let child = Command::new("sh")
                .args(["-c", &cmd])
                .env("PATH", &path)
                .env("IG_STORE", store.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (r.clone(), child)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let load = workload(stop);
    for (recipe, child) in children {
        let out = child.wait_with_output().unwrap();
        let shown = text(&out.stdout);
        assert!(
            out.status.success() && !shown.trim().is_empty() && shown.trim() != "[]",
            "recipe gave nothing:\n{recipe}\nstatus {:?}\nstdout: {shown}\nstderr: {}",
            out.status,
            text(&out.stderr)
        );
        // Each recipe saw the workload.
        assert!(
            shown.contains("cat") || shown.contains("/etc/hostname"),
            "{recipe}:\n{shown}\nstderr: {}",
            text(&out.stderr)
        );
    }
    load.join().unwrap();
}

/// The `ig run IMAGE ... -E '...'` lines of the user guide and the README,
/// and the guide's console example of a refused expression (the command
/// after `# `, then the lines it prints).
fn expression_examples() -> (Vec<String>, Vec<(String, String)>) {
    let mut runs = Vec::new();
    let mut refused = Vec::new();
    for doc in ["docs/user-guide.md", "README.md"] {
        let text = std::fs::read_to_string(repo().join(doc)).unwrap();
        let mut lines = text.lines();
        while let Some(l) = lines.next() {
            if l.starts_with("ig run ") && l.contains(" -E '") {
                runs.push(l.to_owned());
            } else if let Some(cmd) = l.strip_prefix("# ig run ").filter(|c| c.contains(" -E '")) {
                let printed: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
                refused.push((format!("ig run {cmd}"), printed.join("\n") + "\n"));
            }
        }
    }
    (runs, refused)
}

/// Each documented expression runs on its gadget, and the documented
/// refusal is what `ig` prints.
#[test]
fn documented_filter_expressions_run_and_the_refusal_is_printed_as_shown() {
    require_root();
    let (runs, refused) = expression_examples();
    assert!(
        runs.len() >= 4 && refused.len() == 1,
        "{runs:?} {refused:?}"
    );
    let store = TestStore::new();
    let mut built = Vec::new();
    let bin = Path::new(ig_bin()).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let sh = |line: &str, built: &mut Vec<String>| {
        // `ig run IMAGE REST` as `ig run IMAGE --timeout 1 REST`, the
        // gadget built first.
        let rest = line.strip_prefix("ig run ").unwrap();
        let (image, rest) = rest.split_once(' ').unwrap();
        if !built.iter().any(|b| b == image) {
            store.build(&repo().join("gadgets").join(image), image);
            built.push(image.to_owned());
        }
        Command::new("sh")
            .args([
                "-c",
                &format!("ig run {image} --timeout 1 {}", rest.trim_start()),
            ])
            .env("PATH", &path)
            .env("IG_STORE", store.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    for line in &runs {
        let out = sh(line, &mut built);
        // Nothing on stderr but what a busy host may cause: the kernel
        // dropping events of every process's opens (a compile next door
        // made 25,000 in the second the command runs).
        let stderr = text(&out.stderr);
        let unexpected: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains(" events lost"))
            .collect();
        assert!(
            out.status.success() && unexpected.is_empty(),
            "{line}: {:?}\n{stderr}",
            out.status
        );
    }
    for (line, printed) in &refused {
        let out = sh(line, &mut built);
        assert_eq!(out.status.code(), Some(1), "{line}");
        assert_eq!(text(&out.stderr), *printed, "{line}");
    }
}

/// The code blocks after `<!-- file: NAME -->` in the author guide.
fn guide_files() -> Vec<(String, String)> {
    let guide = std::fs::read_to_string(repo().join("docs/author-guide.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = guide.lines();
    while let Some(l) = lines.next() {
        let Some(name) = l
            .strip_prefix("<!-- file: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap();
        assert!(
            fence.starts_with("```"),
            "{name}: no code block after the marker"
        );
        let mut body = String::new();
        for l in lines.by_ref() {
            if l == "```" {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        out.push((name.to_owned(), body));
    }
    out
}

#[test]
fn author_guide_example_matches_builds_and_runs() {
    let example = repo().join("docs/examples/trace_mkdir");
    let files = guide_files();
    assert_eq!(
        files.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["program.bpf.c", "gadget.yaml"]
    );
    // The guide's copies are the files, so building the files builds the
    // guide. Built from a fresh directory, as the guide does.
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in &files {
        let file = std::fs::read_to_string(example.join(name)).unwrap();
        assert_eq!(
            body, &file,
            "docs/author-guide.md's {name} differs from docs/examples"
        );
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let s = TestStore::new();
    let out = s
        .ig()
        .current_dir(dir.path())
        .args(["image", "build", ".", "-t", "trace_mkdir"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&s.run(&["run", "trace_mkdir", "--help"]).stdout);
    assert!(help.contains("--mode-only"), "{help}");

    require_root();
    // Run it, filtered to our own process, and make a directory.
    let mut ig = s
        .ig()
        .args(["run", "trace_mkdir", "-o", "json", "--timeout", "8"])
        .args(["--pid", &std::process::id().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = ig.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(l.unwrap());
        }
    });
    let made = dir.path().join("made-by-the-test");
    let deadline = Instant::now() + Duration::from_secs(7);
    let mut seen = None;
    while Instant::now() < deadline && seen.is_none() {
        let _ = std::fs::remove_dir(&made);
        std::fs::DirBuilder::new()
            .mode(0o750)
            .create(&made)
            .unwrap();
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(300)) {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            if v["path"] == made.to_str().unwrap() {
                seen = Some(v);
                break;
            }
        }
    }
    let _ = ig.kill();
    let out = ig.wait_with_output().unwrap();
    let v = seen.unwrap_or_else(|| panic!("no event for our mkdir; stderr: {}", text(&out.stderr)));
    assert_eq!(v["proc"]["pid"], std::process::id(), "{v}");
    assert_eq!(v["mode_raw"], 0o750, "{v}");
    assert_eq!(v["mode"], "-rwxr-x---", "{v}");
}

use std::os::unix::fs::DirBuilderExt as _;

/// docs/library.md's Rust blocks are copies of the embedding examples,
/// which the suite builds (and runs: tests/kernel/examples.rs), so the
/// guide's code compiles and works.
#[test]
fn library_guide_code_is_the_examples_code() {
    let guide = std::fs::read_to_string(repo().join("docs/library.md")).unwrap();
    let examples: Vec<String> = ["embed_thread.rs", "embed_async.rs"]
        .iter()
        .map(|f| std::fs::read_to_string(repo().join("examples").join(f)).unwrap())
        .collect();
    let blocks: Vec<&str> = guide
        .split("```rust\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(!blocks.is_empty(), "no Rust block in docs/library.md");
    for b in blocks {
        assert!(
            examples.iter().any(|e| e.contains(b)),
            "a Rust block of docs/library.md is in no example:\n{b}"
        );
    }
}
