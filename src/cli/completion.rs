//! `ig completion SHELL`: a completion script generated from the clap
//! definitions (with the operator flags of `ig run`), so it cannot drift
//! from the flags.

use std::io::Write as _;

pub fn print(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut super::reference::command(), "ig", &mut script);
    let mut out = std::io::stdout().lock();
    // A closed pipe (`ig completion bash | head`) is not an error; others
    // are (`logger::check_stdout`).
    if let Err(e) = out.write_all(&script).and_then(|()| out.flush()) {
        super::logger::stdout_failed(e);
    }
    Ok(())
}
