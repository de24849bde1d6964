//! The shipped binary, `target/dist/ig` from `cargo xtask dist`: static,
//! stripped, within its size budget, and able to build a gadget on a host
//! without this repository. Not part of the default `cargo test` (the
//! binary is a second full build); `cargo xtask test` builds it and then
//! runs `cargo test --test dist`. Needs root (mount namespace).

#[path = "../conventions/outside.rs"]
mod outside;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The size budget (the issue's: 30 MB with the WASM runtime in).
const MAX_SIZE: u64 = 30 * 1000 * 1000;

fn dist() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dist/ig");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo xtask dist` first",
        p.display()
    );
    p
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn static_stripped_and_small() {
    let ig = dist();
    let ldd = Command::new("ldd").arg(&ig).output().unwrap();
    let said = text(&ldd.stdout) + &text(&ldd.stderr);
    assert!(
        said.contains("not a dynamic executable") || said.contains("statically linked"),
        "ldd: {said}"
    );
    let file = text(&Command::new("file").arg(&ig).output().unwrap().stdout);
    assert!(
        file.contains("static") && file.contains(", stripped"),
        "{file}"
    );
    let size = std::fs::metadata(&ig).unwrap().len();
    assert!(size < MAX_SIZE, "{size} bytes");
    let v = Command::new(&ig).arg("version").output().unwrap();
    let v = text(&v.stdout);
    assert!(
        v.contains("target: x86_64-unknown-linux-musl") && v.contains("gadget author API"),
        "{v}"
    );
}

#[test]
fn builds_a_gadget_without_the_repository() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        text(&uid.stdout).trim(),
        "0",
        "needs root (mount namespace)"
    );
    outside::build_with_the_repository_hidden(&dist());
}
