//! The command reference generated from the clap definitions: the
//! markdown pages of `docs/reference/`, the man pages ([`man_pages`]:
//! `ig man`, `examples/reference.rs` run by `cargo xtask man`, `cargo
//! xtask dist`, and a test) and the command the completion scripts are
//! generated from.
//!
//! The output depends only on the definitions: a fixed width, no values
//! of environment variables, no terminal detection. That is what lets a
//! test regenerate the pages and compare them with the committed ones.

use std::fmt::Write as _;

use clap::CommandFactory as _;

/// Width of the reference's help text.
const WIDTH: usize = 100;

/// `ig`'s command as the reference shows it: the clap definitions plus
/// the flags of the gadget-independent operators (`--filter`, `--sort`,
/// ...) that `ig run` always has; a gadget's own parameters depend on its
/// image and are not listed.
pub fn command() -> clap::Command {
    let cmd = super::args::Cli::command();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    let mut cmd = cmd.mut_subcommand("run", super::gadget_args::with_catalog);
    // `mut_subcommand` moves the command it changes to the end; touching
    // each in its declared order puts them back in that order.
    for n in names {
        cmd = cmd.mut_subcommand(n, |c| c);
    }
    let mut cmd = stable(cmd).term_width(WIDTH).max_term_width(WIDTH);
    cmd.build();
    cmd
}

/// Hides the values of environment variables (`IG_STORE=/tmp/...` would
/// otherwise appear in the help) in `cmd` and all its subcommands.
pub fn stable(cmd: clap::Command) -> clap::Command {
    let ids: Vec<clap::Id> = cmd.get_arguments().map(|a| a.get_id().clone()).collect();
    let mut cmd = cmd;
    for id in ids {
        cmd = cmd.mut_arg(id, |a| a.hide_env_values(true));
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for s in subs {
        cmd = cmd.mut_subcommand(s, stable);
    }
    cmd
}

/// `(file name, markdown)` of every page: `ig.md`, `ig_run.md`,
/// `ig_image_build.md`, ... One page per command, holding its full
/// `--help` and links to its subcommands.
pub fn markdown() -> Vec<(String, String)> {
    let mut pages = Vec::new();
    let mut root = command();
    walk(&mut root, &[], &mut pages);
    pages
}

fn file_name(path: &[String]) -> String {
    format!("{}.md", path.join("_"))
}

fn walk(cmd: &mut clap::Command, parent: &[String], pages: &mut Vec<(String, String)>) {
    let mut path = parent.to_vec();
    path.push(cmd.get_name().to_owned());
    let title = path.join(" ");
    let mut md = String::new();
    let _ = writeln!(md, "# {title}\n");
    let _ = writeln!(
        md,
        "<!-- Generated from the clap definitions by `cargo xtask docs`; do not edit. -->\n"
    );
    if let Some(about) = cmd.get_about() {
        let _ = writeln!(md, "{about}\n");
    }
    let help = cmd.render_long_help().to_string();
    let _ = writeln!(md, "```text\n{}\n```\n", help.trim_end());
    let subs: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| s.get_name().to_owned())
        .collect();
    if !subs.is_empty() {
        let _ = writeln!(md, "## Commands\n");
        for s in &subs {
            let mut p = path.clone();
            p.push(s.clone());
            let about = cmd
                .find_subcommand(s)
                .and_then(|c| c.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default();
            let _ = writeln!(md, "- [`{}`]({}): {about}", p.join(" "), file_name(&p));
        }
        md.push('\n');
    }
    if !parent.is_empty() {
        let _ = writeln!(
            md,
            "See also: [`{}`]({})",
            parent.join(" "),
            file_name(parent)
        );
    }
    pages.push((file_name(&path), md.trim_end().to_owned() + "\n"));
    for s in subs {
        if let Some(sub) = cmd.find_subcommand_mut(&s) {
            walk(sub, &path, pages);
        }
    }
}

/// One `(page name, command)` per man page, in the order of the reference:
/// `ig`, `ig-run`, `ig-image`, `ig-image-build`, ... Each command is
/// renamed to its page name, so that its synopsis and the pages' "SEE
/// ALSO" names are the ones `man` finds. [`man_page`] and [`man_pages`]
/// render them.
pub fn man_commands() -> Vec<(String, clap::Command)> {
    man_commands_of(&command())
}

/// [`man_commands`] of another program's command (`gadgetctl`).
pub fn man_commands_of(root: &clap::Command) -> Vec<(String, clap::Command)> {
    fn walk(cmd: &clap::Command, parent: &str, out: &mut Vec<(String, clap::Command)>) {
        let name = if parent.is_empty() {
            cmd.get_name().to_owned()
        } else {
            format!("{parent}-{}", cmd.get_name())
        };
        out.push((name.clone(), cmd.clone().name(name.clone())));
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            walk(sub, &name, out);
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out
}

/// The man page of the command at `path` (`[]`: `ig.1`; `["image",
/// "build"]`: `ig-image-build.1`), as roff; `None` for no such command.
pub fn man_page(path: &[String]) -> Option<Vec<u8>> {
    let name = std::iter::once("ig")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-");
    man_commands()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, cmd)| render_man(cmd))
}

/// Every man page, `(file name, roff)`: `ig.1`, `ig-run.1`, ...
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    man_commands()
        .into_iter()
        .map(|(name, cmd)| (format!("{name}.1"), render_man(cmd)))
        .collect()
}

/// A command's man page, as roff.
pub fn render_man(cmd: clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = clap_mangen::Man::new(cmd).render(&mut out);
    out
}

/// Writes the pages into `dir`, removing pages of commands that no longer
/// exist.
pub fn write_markdown(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let pages = markdown();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && !pages.iter().any(|(n, _)| *n == name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    for (name, text) in pages {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}
