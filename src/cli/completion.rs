//! `ig completion SHELL` and `ig man`: a completion script and the man
//! pages generated from the clap definitions (with the operator flags of
//! `ig run`), so they cannot drift from the flags.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

pub fn print(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut super::reference::command(), "ig", &mut script);
    write_stdout(&script);
    Ok(())
}

/// `ig man [COMMAND...]`, or every page into `dir`.
pub fn man(command: &[String], dir: Option<&Path>) -> anyhow::Result<()> {
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, roff) in super::reference::man_pages() {
            let path = dir.join(&name);
            std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(());
    }
    let Some(page) = super::reference::man_page(command) else {
        let pages: Vec<String> = super::reference::man_commands()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        anyhow::bail!(
            "no command `ig {}`: the pages are {} (`ig man image build` prints ig-image-build)",
            command.join(" "),
            pages.join(", ")
        );
    };
    write_stdout(&page);
    Ok(())
}

fn write_stdout(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`ig completion bash | head`) is not an error; others
    // are (`logger::check_stdout`).
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        super::logger::stdout_failed(e);
    }
}
