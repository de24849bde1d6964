//! Writes the command reference: markdown pages (`ig::cli::reference`)
//! and man pages (clap_mangen), both from the clap definitions.
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
    ig::cli::reference::write_markdown(markdown_dir)?;
    std::fs::create_dir_all(man_dir)?;
    man_pages(&ig::cli::reference::command(), "", man_dir)
}

/// One page per command: `ig.1`, `ig-run.1`, `ig-image-build.1`, ...
fn man_pages(cmd: &clap::Command, parent: &str, dir: &Path) -> std::io::Result<()> {
    let name = if parent.is_empty() {
        cmd.get_name().to_owned()
    } else {
        format!("{parent}-{}", cmd.get_name())
    };
    let page = cmd.clone().name(name.clone());
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out)?;
    std::fs::write(dir.join(format!("{name}.1")), out)?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        man_pages(sub, &name, dir)?;
    }
    Ok(())
}
