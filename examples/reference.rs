//! Writes the command reference: markdown pages (`ig_cli::cli::reference`)
//! and man pages (`ig man`'s), both from the clap definitions.
//!
//! ```sh
//! cargo xtask docs   # = cargo run --example reference -- docs/reference target/man
//! man -l target/man/ig.1
//! ```

use std::path::{Path, PathBuf};

fn main() -> std::io::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [markdown_dir, man_dir] = args.as_slice() else {
        return Err(std::io::Error::other(
            "usage: reference MARKDOWN_DIR MAN_DIR",
        ));
    };
    ig_cli::cli::reference::write_markdown(markdown_dir)?;
    std::fs::create_dir_all(man_dir)?;
    man_pages(man_dir)
}

/// One page per command: `ig.1`, `ig-run.1`, `ig-image-build.1`, ...
fn man_pages(dir: &Path) -> std::io::Result<()> {
    for (name, roff) in ig_cli::cli::reference::man_pages() {
        std::fs::write(dir.join(name), roff)?;
    }
    Ok(())
}
