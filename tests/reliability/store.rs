//! The store under crashes, leftovers and foreign owners.
//!
//! Crash points are exact, not timed: `strace -e inject=SYSCALL:signal=KILL:when=N`
//! kills ig at the N-th `rename`, `fsync`, `write` or `openat` it makes,
//! for every N until the command completes, so every step of every write
//! (temp file created, half written, written, synced, renamed, index
//! replaced) is a place ig has died at least once.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TestStore, fixture_copy, text};

/// `ig image list --no-trunc` as `(repository:tag, digest)`, asserting it
/// works.
fn listed_full(store: &Path) -> Vec<(String, String)> {
    let out = Command::new(crate::common::ig_bin())
        .args(["image", "list", "--no-trunc"])
        .env("IG_STORE", store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ig image list fails on {}: {}",
        store.display(),
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c.len() >= 3).then(|| (format!("{}:{}", c[0], c[1]), c[2].to_owned()))
        })
        .collect()
}

/// The same keyed by the last part of the repository (`rela:latest`).
fn listed(store: &Path) -> BTreeMap<String, String> {
    listed_full(store)
        .into_iter()
        .map(|(name, digest)| {
            let short = name.rsplit('/').next().unwrap_or_default().to_owned();
            (short, digest)
        })
        .collect()
}

/// Every listed image reads back whole (`ig image inspect` verifies the
/// digests of the manifest, config and layers).
fn assert_images_readable(store: &Path) {
    for (name, _) in listed_full(store) {
        let out = Command::new(crate::common::ig_bin())
            .args(["image", "inspect", &name])
            .env("IG_STORE", store)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} is listed but broken in {}: {}",
            store.display(),
            text(&out.stderr)
        );
    }
}

/// Our temp files anywhere in the store.
fn temp_files(store: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![store.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().starts_with("ig-tmp-") {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

fn copy_store(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A fixture gadget whose description (hence every digest) is `desc`.
fn gadget_dir(desc: &str) -> tempfile::TempDir {
    let dir = fixture_copy("minimal_tracer");
    let yaml = dir.path().join("gadget.yaml");
    let y = std::fs::read_to_string(&yaml).unwrap().replace(
        "description: Test fixture - one event per getpid() call",
        &format!("description: {desc}"),
    );
    std::fs::write(&yaml, y).unwrap();
    dir
}

/// Run `ig ARGS` on `store` under strace, killed at the `n`-th call of
/// `syscall`. True when ig was killed (false: it finished first).
fn ig_killed_at_env(
    store: &Path,
    syscall: &str,
    n: usize,
    args: &[&str],
    env: &[(&str, &str)],
) -> bool {
    let set = match syscall {
        "rename" => "rename,renameat,renameat2",
        "open" => "open,openat",
        other => other,
    };
    let out = Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "-e"])
        .arg(format!("trace={set}"))
        .arg("-e")
        .arg(format!("inject={set}:signal=KILL:when={n}"))
        .arg(crate::common::ig_bin())
        .args(args)
        .env("IG_STORE", store)
        .envs(env.iter().copied())
        .output()
        .expect("strace (apt install strace)");
    let killed = !out.status.success();
    if killed {
        // Killed by the injection, not failed for a reason of its own.
        let err = text(&out.stderr);
        assert!(
            !err.contains("error:"),
            "ig {args:?} failed by itself at {syscall} #{n}: {err}"
        );
    }
    killed
}

/// Kill `ig ARGS` at every call of each of `syscalls` in turn, on a fresh
/// copy of `base` each time; after each kill the store must list, every
/// listed image must read back, `check` must accept what is there, prune
/// must clean every temp file, and the same command must then succeed.
fn kill_everywhere(
    base: &Path,
    syscalls: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
    check: impl Fn(&Path, &BTreeMap<String, String>),
) -> usize {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let mut kills = 0;
    for syscall in syscalls {
        for n in 1.. {
            assert!(n < 400, "{syscall}: ig never finished");
            copy_store(base, &store);
            if !ig_killed_at_env(&store, syscall, n, args, env) {
                break;
            }
            kills += 1;
            let images = listed(&store);
            check(&store, &images);
            assert_images_readable(&store);
            let out = Command::new(crate::common::ig_bin())
                .args(["image", "prune"])
                .env("IG_STORE", &store)
                .output()
                .unwrap();
            assert!(out.status.success(), "prune: {}", text(&out.stderr));
            assert_eq!(temp_files(&store), Vec::<String>::new(), "after prune");
            assert_eq!(listed(&store), images, "prune keeps every image");
            let out = Command::new(crate::common::ig_bin())
                .args(args)
                .env("IG_STORE", &store)
                .envs(env.iter().copied())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?} again after a kill at {syscall} #{n}: {}",
                text(&out.stderr)
            );
        }
    }
    kills
}

#[test]
fn import_killed_at_every_write_step_leaves_the_old_or_the_new_image() {
    // The old store: rela = old image.
    let old = TestStore::new();
    old.build(gadget_dir("old").path(), "rela");
    let old_digest = listed(&old.path())["rela:latest"].clone();
    // The archive: rela = new image, and relb.
    let new = TestStore::new();
    new.build(gadget_dir("new").path(), "rela");
    let out = new.run(&["image", "tag", "rela", "relb"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let new_digest = listed(&new.path())["rela:latest"].clone();
    assert_ne!(old_digest, new_digest);
    let tar = new.dir.path().join("new.tar");
    let out = new.run(&["image", "export", "rela", "relb", tar.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let kills = kill_everywhere(
        &old.path(),
        &["rename", "fsync", "write", "open"],
        &["image", "import", tar.to_str().unwrap()],
        &[],
        |_, images| {
            let a = &images["rela:latest"];
            assert!(
                *a == old_digest || *a == new_digest,
                "rela is neither old nor new: {images:?}"
            );
            if let Some(b) = images.get("relb:latest") {
                assert_eq!(*b, new_digest, "{images:?}");
            }
        },
    );
    assert!(kills > 10, "only {kills} crash points");
}

#[test]
fn build_killed_at_every_store_write_leaves_the_old_or_the_new_image() {
    let old = TestStore::new();
    old.build(gadget_dir("old").path(), "rela");
    let old_digest = listed(&old.path())["rela:latest"].clone();
    let dir = gadget_dir("new");
    // Builds are not byte-reproducible (the object differs from run to
    // run), so "new" is recognised by what the image says about itself.
    let kills = kill_everywhere(
        &old.path(),
        &["rename"],
        &["image", "build", dir.path().to_str().unwrap(), "-t", "rela"],
        &[],
        |store, images| {
            let a = &images["rela:latest"];
            if *a == old_digest {
                return;
            }
            let out = Command::new(crate::common::ig_bin())
                .args(["image", "inspect", "rela", "-o", "json"])
                .env("IG_STORE", store)
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let desc = &v["annotations"]["org.opencontainers.image.description"];
            assert_eq!(desc, "new", "rela is neither old nor new: {images:?} {v}");
        },
    );
    assert!(kills >= 3, "only {kills} crash points");
}

#[test]
fn list_ignores_leftovers_and_prune_removes_them_and_says_so() {
    let s = TestStore::new();
    s.build(gadget_dir("kept").path(), "rela");
    let before = listed(&s.path());
    let root = s.path();
    std::fs::write(root.join("ingest/ig-tmp-123-dead-0"), vec![0u8; 1000]).unwrap();
    std::fs::write(root.join("blobs/sha256/ig-tmp-123-dead-1"), b"half").unwrap();
    // A complete blob nothing refers to (what a killed pull leaves).
    let orphan = b"orphan blob";
    let hex = {
        use std::fmt::Write as _;
        let out = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                std::io::Write::write_all(c.stdin.as_mut().unwrap(), orphan)?;
                c.wait_with_output()
            })
            .unwrap();
        let mut h = String::new();
        write!(
            h,
            "{}",
            text(&out.stdout).split_whitespace().next().unwrap()
        )
        .unwrap();
        h
    };
    std::fs::write(root.join("blobs/sha256").join(&hex), orphan).unwrap();
    // Someone else's file: never ours to delete.
    std::fs::write(root.join("blobs/sha256/README"), b"not a blob").unwrap();

    assert_eq!(listed(&root), before, "leftovers change nothing listed");
    assert_images_readable(&root);
    let out = s.run(&["image", "prune"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("Removed 2 temp file(s)") && said.contains("1 unreferenced blob(s)"),
        "{said}"
    );
    assert!(
        said.contains(&format!("{} bytes freed", 1000 + 4 + orphan.len())),
        "{said}"
    );
    assert_eq!(temp_files(&root), Vec::<String>::new());
    assert!(!root.join("blobs/sha256").join(&hex).exists());
    assert!(root.join("blobs/sha256/README").exists());
    assert_eq!(listed(&root), before);
    assert_images_readable(&root);
    let again = s.run(&["image", "prune"]);
    assert!(
        text(&again.stdout)
            .contains("Removed 0 temp file(s) of interrupted writes, 0 unreferenced"),
        "{}",
        text(&again.stdout)
    );
}

#[test]
fn nothing_ig_writes_in_its_store_is_group_or_world_writable() {
    let s = TestStore::new();
    let dir = gadget_dir("modes");
    let tar = s.dir.path().join("x.tar");
    // umask 0: only ig's own modes protect the files.
    let script = format!(
        "umask 0 && '{ig}' image build '{d}' -t rela && '{ig}' image tag rela relb && \
         '{ig}' image export rela '{t}' && '{ig}' image remove relb && '{ig}' image import '{t}' && \
         '{ig}' image prune",
        ig = crate::common::ig_bin(),
        d = dir.path().display(),
        t = tar.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("IG_STORE", s.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut stack = vec![s.path()];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        let mode = std::fs::symlink_metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o022, 0, "{} has mode {mode:o}", p.display());
        seen += 1;
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(seen > 8, "{seen} entries");
    let root_mode = std::fs::metadata(s.path()).unwrap().permissions().mode();
    assert_eq!(root_mode & 0o777, 0o700, "the store directory is private");
}

#[test]
fn a_store_owned_by_another_user_is_refused_with_the_reason() {
    let s = TestStore::new();
    s.build(gadget_dir("owned").path(), "rela");
    // Root meets a store owned by nobody: refused for reading and writing,
    // and for running (root would load what nobody put there).
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(s.path())
        .status()
        .unwrap();
    assert!(st.success());
    for args in [
        &["image", "list"][..],
        &["image", "prune"],
        &["run", "rela", "--timeout", "1"],
    ] {
        let out = s.run(args);
        assert!(!out.status.success(), "{args:?} accepted a foreign store");
        let err = text(&out.stderr);
        assert!(
            err.contains("owned by uid 65534") && err.contains("refusing the image store"),
            "{args:?}: {err}"
        );
        // Root is told the rule for root, not "not by you (uid 0) nor by
        // root", which contradicts itself.
        assert!(
            err.contains("only when root owns it") && !err.contains("not by you"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // The same store, owned by us again, works.
    let me = std::fs::metadata(s.dir.path()).unwrap().uid();
    let st = Command::new("chown")
        .args(["-R", &format!("{me}:{me}")])
        .arg(s.path())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(listed(&s.path()).contains_key("rela:latest"));
}

/// Root's store must not be writable by anyone else, nor hold parts
/// another user owns: whoever can write there decides what `ig run` loads
/// into the kernel. Each case is refused for reading, writing and running,
/// naming the path and the fix; fixed, the store works again.
#[test]
fn a_store_others_can_write_is_refused_with_the_path_and_the_fix() {
    let s = TestStore::new();
    s.build(gadget_dir("writable").path(), "relw");
    let root = s.path();
    let chmod = |mode: u32, p: &Path| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let chown = |who: &str, p: &Path| {
        assert!(
            Command::new("chown")
                .arg(who)
                .arg(p)
                .status()
                .unwrap()
                .success()
        );
    };
    let refused = |what: &str, needle: &str| {
        for args in [
            &["image", "list"][..],
            &["image", "prune"],
            &["run", "relw", "--timeout", "1"],
        ] {
            let out = s.run(args);
            let err = text(&out.stderr);
            assert!(!out.status.success(), "{what}: {args:?} accepted: {err}");
            assert!(
                err.contains("refusing the image store") && err.contains(needle),
                "{what}: {args:?}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    };
    let blobs = root.join("blobs");
    let sha = blobs.join("sha256");
    let ingest = root.join("ingest");
    let index = root.join("index.json");

    chmod(0o777, &root);
    refused(
        "a 0777 store",
        &format!(
            "{} is writable by group and others (mode 777)",
            root.display()
        ),
    );
    let err = text(&s.run(&["image", "list"]).stderr);
    assert!(
        err.contains(&format!("chmod go-w {}", root.display())),
        "{err}"
    );
    chmod(0o700, &root);

    // (part, mode that is refused, what the message says, mode to restore)
    for (path, bad, says, good) in [
        (&sha, 0o775, "is writable by its group", 0o700),
        (&ingest, 0o703, "is writable by others", 0o700),
        (&index, 0o666, "is writable", 0o644),
    ] {
        chmod(bad, path);
        refused(
            &format!("{} at mode {bad:o}", path.display()),
            &format!("{} {says}", path.display()),
        );
        chmod(good, path);
    }

    chown("65534", &blobs);
    refused(
        "blobs owned by nobody",
        &format!("{} is owned by uid 65534", blobs.display()),
    );
    let me = std::fs::metadata(s.dir.path()).unwrap().uid();
    chown(&me.to_string(), &blobs);

    // Fixed, it is the same store as before.
    assert!(listed(&root).contains_key("relw:latest"));
    let out = s.run(&["run", "relw", "--timeout", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The blob files of `short`'s image index and of its (only) platform
/// manifest.
fn documents_of(store: &Path, short: &str) -> (PathBuf, PathBuf) {
    let json = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let blob = |digest: &serde_json::Value| {
        let hex = digest.as_str().unwrap().strip_prefix("sha256:").unwrap();
        store.join("blobs/sha256").join(hex)
    };
    let index = json(&store.join("index.json"));
    let name = format!("ghcr.io/inspektor-gadget/gadget/{short}:latest");
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == name.as_str())
        .unwrap();
    let top = blob(&entry["digest"]);
    let manifest = blob(&json(&top)["manifests"][0]["digest"]);
    (top, manifest)
}

/// Every file under `blobs/` and `index.json`, with its contents (a
/// directory as `<dir>`).
fn snapshot(store: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![store.join("blobs")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let key = p.strip_prefix(store).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(key, b"<dir>".to_vec());
                stack.push(p);
            } else {
                out.insert(key, std::fs::read(&p).unwrap());
            }
        }
    }
    if let Ok(b) = std::fs::read(store.join("index.json")) {
        out.insert("index.json".into(), b);
    }
    out
}

/// A store with `rela` and `relb`, and blobs nothing uses any more (relb
/// built again), which a collection would delete.
fn store_with_orphans() -> TestStore {
    let s = TestStore::new();
    s.build(gadget_dir("kept").path(), "rela");
    s.build(gadget_dir("replaced").path(), "relb");
    s.build(gadget_dir("other").path(), "relb");
    s
}

/// What a refused collection must look like: exit 1, the error naming the
/// image, the cause and that nothing was removed, a hint saying how to
/// get out, and the store exactly as before.
fn assert_collection_refused(
    store: &Path,
    out: &std::process::Output,
    before: &BTreeMap<String, Vec<u8>>,
    images: &BTreeMap<String, String>,
    cause: &str,
) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot tell which blobs image ghcr.io/inspektor-gadget/gadget/rela:latest uses: {cause}"
        )) && err.contains("nothing was removed"),
        "{err}"
    );
    assert!(
        err.contains("hint: if ghcr.io/inspektor-gadget/gadget/rela:latest is damaged, remove it with `ig image remove ghcr.io/inspektor-gadget/gadget/rela:latest`"),
        "{err}"
    );
    assert!(snapshot(store) == *before, "the store changed: {err}");
    assert_eq!(listed(store), *images);
}

/// One EIO on `rela`'s manifest (or its image index) while `ig image
/// prune` or `ig image remove relb` collects: the collection used to take
/// the manifest for one referencing nothing and deleted rela's config and
/// layer. Now it stops, says which file and how to repair, and every
/// blob stays.
#[test]
fn an_io_error_on_a_manifest_stops_prune_and_remove_and_changes_nothing() {
    let s = store_with_orphans();
    let store = s.path();
    let images = listed(&store);
    let (top, manifest) = documents_of(&store, "rela");
    for path in [&manifest, &top] {
        for args in [&["image", "prune"][..], &["image", "remove", "relb"]] {
            let before = snapshot(&store);
            let out = Command::new("strace")
                .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=openat"])
                .args(["-e", "inject=openat:error=EIO", "-P"])
                .arg(path)
                .arg(crate::common::ig_bin())
                .args(args)
                .env("IG_STORE", &store)
                .output()
                .expect("strace (apt install strace)");
            assert_collection_refused(
                &store,
                &out,
                &before,
                &images,
                &format!("reading {}: Input/output error", path.display()),
            );
            assert_images_readable(&store);
        }
    }
    // Without the fault, prune deletes the orphans and keeps both images.
    let out = s.run(&["image", "prune"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains(", 0 unreferenced blob(s)"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(listed(&store), images);
    assert_images_readable(&store);
}

/// The same for a manifest that is not JSON, or that a directory
/// replaced; and a missing `index.json` was taken for an empty store,
/// after which prune deleted every blob.
#[test]
fn a_broken_manifest_or_a_missing_index_stops_prune_and_remove_and_changes_nothing() {
    let base = store_with_orphans();
    let images = listed(&base.path());
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let run = |args: &[&str]| {
        Command::new(crate::common::ig_bin())
            .args(args)
            .env("IG_STORE", &store)
            .output()
            .unwrap()
    };
    type Break = fn(&Path);
    let cases: [(Break, &str); 2] = [
        (|m| std::fs::write(m, b"{ not json").unwrap(), "is corrupt"),
        (
            |m| {
                std::fs::remove_file(m).unwrap();
                std::fs::create_dir(m).unwrap();
            },
            "Is a directory",
        ),
    ];
    for (break_it, cause) in cases {
        copy_store(&base.path(), &store);
        let (_, manifest) = documents_of(&store, "rela");
        break_it(&manifest);
        let before = snapshot(&store);
        for args in [&["image", "prune"][..], &["image", "remove", "relb"]] {
            let out = run(args);
            assert_collection_refused(&store, &out, &before, &images, "");
            assert!(text(&out.stderr).contains(cause), "{}", text(&out.stderr));
        }
        // Removing the damaged image is the way out, as the hint says.
        let out = run(&["image", "remove", "rela"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = run(&["image", "prune"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_images_readable(&store);
        assert!(listed(&store).contains_key("relb:latest"));
    }

    copy_store(&base.path(), &store);
    std::fs::remove_file(store.join("index.json")).unwrap();
    let before = snapshot(&store);
    for args in [
        &["image", "prune"][..],
        &["image", "remove", "relb"],
        &["image", "list"],
    ] {
        let out = run(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "the store index {}/index.json is missing, but the store {} holds blobs",
                store.display(),
                store.display()
            )),
            "{args:?}: {err}"
        );
        assert!(err.contains("hint: restore"), "{err}");
        assert!(snapshot(&store) == before, "{args:?} changed the store");
    }
}

/// A plain `docker-registry` on a free 127.0.0.1 port (the registry tests
/// have the full harness; this is the least a pull needs).
struct Registry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("docker-registry (apt-get install docker-registry)");
            let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
            while std::time::Instant::now() < end {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pull_killed_at_every_store_write_leaves_the_old_or_the_new_image() {
    let reg = Registry::start();
    let image = format!("127.0.0.1:{}/rel/rela:v1", reg.port);
    let new = TestStore::new();
    new.build(gadget_dir("new").path(), &image);
    let out = new.run(&["image", "push", &image]);
    assert!(out.status.success(), "push: {}", text(&out.stderr));
    let new_digest = listed(&new.path())["rela:v1"].clone();
    let old = TestStore::new();
    old.build(gadget_dir("old").path(), &image);
    let old_digest = listed(&old.path())["rela:v1"].clone();
    assert_ne!(old_digest, new_digest);
    let kills = kill_everywhere(
        &old.path(),
        &["rename", "fsync", "write"],
        &["image", "pull", &image],
        &[],
        |_, images| {
            let a = &images["rela:v1"];
            assert!(
                *a == old_digest || *a == new_digest,
                "rela is neither old nor new: {images:?}"
            );
        },
    );
    assert!(kills >= 6, "only {kills} crash points");
}

/// `ig image build` stopped by SIGINT or SIGTERM while it compiles removes
/// its build directory and exits as the signal says; killed with SIGKILL
/// it leaves the directory, which `ig image prune` (and the next build)
/// removes once that ig is gone. Builds run with a private `TMPDIR`.
#[test]
fn interrupted_builds_leave_no_build_directory() {
    use std::time::{Duration, Instant};
    let s = TestStore::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = gadget_dir("interrupted");
    let build_dirs = || -> Vec<String> {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("ig-build-"))
            .collect()
    };
    for (sig, code) in [
        (libc::SIGINT, Some(130)),
        (libc::SIGTERM, Some(143)),
        (libc::SIGKILL, None),
    ] {
        let mut child = s
            .ig()
            .env("TMPDIR", tmp.path())
            .args(["image", "build", dir.path().to_str().unwrap(), "-t", "intr"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mine = format!("ig-build-{pid}-");
        let end = Instant::now() + Duration::from_secs(30);
        // The build directory exists while clang compiles.
        while !build_dirs().iter().any(|n| n.starts_with(&mine)) {
            assert!(Instant::now() < end, "no build directory of {pid}");
            assert!(child.try_wait().unwrap().is_none(), "the build ended first");
            std::thread::sleep(Duration::from_millis(2));
        }
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(pid as i32, sig) };
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            code,
            "signal {sig}: {}",
            text(&out.stderr)
        );
        let left: Vec<String> = build_dirs()
            .into_iter()
            .filter(|n| n.starts_with(&mine))
            .collect();
        if sig == libc::SIGKILL {
            assert_eq!(left.len(), 1, "{left:?}");
        } else {
            assert!(left.is_empty(), "signal {sig} left {left:?}");
        }
    }
    // The killed build's directory: its ig is gone, prune removes it.
    let out = s
        .ig()
        .env("TMPDIR", tmp.path())
        .args(["image", "prune"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 build director(ies) of interrupted builds"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(build_dirs(), Vec::<String>::new());
}

/// No link is followed inside a store, the directories above it must be
/// their owner's, and a directory with other content is not adopted.
#[test]
fn links_unsafe_parents_and_foreign_directories_are_refused() {
    use std::os::unix::fs::symlink;
    let ig = |store: &Path, args: &[&str]| {
        let out = Command::new(crate::common::ig_bin())
            .args(args)
            .env("IG_STORE", store)
            .output()
            .unwrap();
        (out.status.code(), text(&out.stderr))
    };
    let dir = gadget_dir("links");
    let build = ["image", "build", dir.path().to_str().unwrap(), "-t", "rela"];

    // index.json linked to a file elsewhere: not read.
    let s = TestStore::new();
    s.build(gadget_dir("first").path(), "rela");
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "{\"secret\": true}").unwrap();
    std::fs::remove_file(s.path().join("index.json")).unwrap();
    symlink(secret.path(), s.path().join("index.json")).unwrap();
    let (code, err) = ig(&s.path(), &["image", "list"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("index.json is a symbolic link"), "{err}");

    // A dangling lock link: its target is not created.
    let s = TestStore::new();
    s.build(gadget_dir("first").path(), "rela");
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("created-by-ig");
    let _ = std::fs::remove_file(s.path().join("index.json.lock"));
    symlink(&target, s.path().join("index.json.lock")).unwrap();
    let (code, err) = ig(&s.path(), &build);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("index.json.lock is a symbolic link"), "{err}");
    assert!(!target.exists());

    // A parent others can write (not sticky).
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let store = open.path().join("store");
    let (code, err) = ig(&store, &build);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is a directory above the store that others can write"),
        "{err}"
    );
    assert!(!store.exists());

    // A directory with other content is not adopted.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("passwd"), "root:x:0:0").unwrap();
    let (code, err) = ig(other.path(), &build);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is not empty and holds no image store"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(other.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing written");
}
