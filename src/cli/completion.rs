//! `ig completion SHELL` and `ig man`: a completion script and the man
//! pages generated from the clap definitions (with the operator flags of
//! `ig run`), so they cannot drift from the flags.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

pub fn print(shell: clap_complete::Shell) -> anyhow::Result<()> {
    print_for(shell, super::reference::command(), "ig")
}

/// The completion script of program `name`, whose command is `cmd`.
pub fn print_for(
    shell: clap_complete::Shell,
    mut cmd: clap::Command,
    name: &str,
) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    write_stdout(&script);
    Ok(())
}

/// `ig man [COMMAND...]`, or every page into `dir`.
pub fn man(command: &[String], dir: Option<&Path>) -> anyhow::Result<()> {
    man_for("ig", super::reference::man_commands(), command, dir)
}

/// The man page of program `root`'s command at `command` (its pages are
/// `pages`, from `reference::man_commands_of`), or every page into `dir`.
pub fn man_for(
    root: &str,
    pages: Vec<(String, clap::Command)>,
    command: &[String],
    dir: Option<&Path>,
) -> anyhow::Result<()> {
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, cmd) in pages {
            let path = dir.join(format!("{name}.1"));
            std::fs::write(&path, super::reference::render_man(cmd))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(());
    }
    let name = std::iter::once(root)
        .chain(command.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-");
    let names: Vec<String> = pages.iter().map(|(n, _)| n.clone()).collect();
    let Some((_, cmd)) = pages.into_iter().find(|(n, _)| *n == name) else {
        anyhow::bail!(
            "no command `{root} {}`: the pages are {} (`{root} man run` prints {root}-run)",
            command.join(" "),
            names.join(", ")
        );
    };
    write_stdout(&super::reference::render_man(cmd));
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
