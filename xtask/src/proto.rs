//! `cargo xtask proto [--check]`: the Rust code of the gRPC interface
//! (`crates/ig-api/proto/api.proto`), committed under
//! `crates/ig-api/src/generated/` so that building the project needs no
//! protoc and no code generator.
//!
//! protox parses the file (pure Rust); prost-build writes the messages
//! (`api.rs`) and tonic-prost-build the client and server stubs
//! (`api.grpc.rs`, which name the messages through `crate::proto`).
//! `--check` generates into a temporary directory and fails if anything
//! differs from the committed files: `cargo xtask test` runs it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

const PROTO: &str = "crates/ig-api/proto/api.proto";
const OUT: &str = "crates/ig-api/src/generated";
/// Generated file → the name it is committed under.
const FILES: &[(&str, &str)] = &[
    ("messages/api.rs", "api.rs"),
    ("grpc/api.rs", "api.grpc.rs"),
];

pub fn main(root: &Path, args: &[String]) -> Result<()> {
    let check = match args {
        [] => false,
        [a] if a == "--check" => true,
        _ => bail!("usage: cargo xtask proto [--check]"),
    };
    let tmp = root.join("target/xtask-proto");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    generate(root, &tmp)?;
    let out = root.join(OUT);
    let mut stale = Vec::new();
    for (made, committed) in FILES {
        let new = std::fs::read(tmp.join(made)).with_context(|| format!("reading {made}"))?;
        let dest = out.join(committed);
        let old = std::fs::read(&dest).unwrap_or_default();
        if old != new {
            if check {
                stale.push(dest.display().to_string());
            } else {
                std::fs::create_dir_all(&out)?;
                std::fs::write(&dest, new)
                    .with_context(|| format!("writing {}", dest.display()))?;
                println!("wrote {}", dest.display());
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "generated code is stale ({}): run `cargo xtask proto` and commit the result",
            stale.join(", ")
        );
    }
    if check {
        println!("generated code matches {PROTO}");
    }
    Ok(())
}

fn generate(root: &Path, tmp: &Path) -> Result<()> {
    let proto = root.join(PROTO);
    let include = proto.parent().expect("a file").to_owned();
    let fds = protox::compile([&proto], [&include]).context("parsing the .proto")?;
    let messages: PathBuf = tmp.join("messages");
    let grpc: PathBuf = tmp.join("grpc");
    std::fs::create_dir_all(&messages)?;
    std::fs::create_dir_all(&grpc)?;
    prost_build::Config::new()
        .out_dir(&messages)
        .compile_fds(fds.clone())
        .context("generating the messages")?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // No `connect` helpers: they would tie the stubs to tonic's
        // transport; clients build their channel themselves.
        .build_transport(false)
        .extern_path(".api", "crate::proto")
        .out_dir(&grpc)
        .compile_fds(fds)
        .context("generating the services")?;
    Ok(())
}
