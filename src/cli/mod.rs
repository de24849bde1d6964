//! The command-line edge: parse arguments, run the command, print errors.
//!
//! Only this module (and `main.rs`) may use `anyhow` and print to stderr;
//! lower layers return typed errors and this layer adds the context a user
//! needs ("running gadget trace_exec: ...") and `hint:` lines.

pub mod args;
mod image;
mod logger;
mod run;

use std::process::ExitCode;

use clap::Parser as _;

use args::{Cli, Command};

/// Entry point of the `ig` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logger::init(cli.verbose);
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logger::error(&format!("{e:#}"));
            if let Some(h) = hint(&e) {
                logger::hint(&h);
            }
            ExitCode::FAILURE
        }
    }
}

/// What the user can do about an error, for the errors that have a usual
/// cure. Kept here, at the edge, so lower layers stay free of CLI wording.
fn hint(e: &anyhow::Error) -> Option<String> {
    use crate::build::BuildError;
    use crate::image::ImageError;
    for cause in e.chain() {
        if let Some(ImageError::NotFound { .. }) = cause.downcast_ref::<ImageError>() {
            return Some("build it with `ig image build DIR -t NAME`, or list the store with `ig image list`".into());
        }
        match cause.downcast_ref::<BuildError>() {
            Some(BuildError::ToolMissing { program, .. }) => {
                return Some(format!(
                    "{program} was not found: install the gadget build tools (apt-get install clang llvm libbpf-dev bpftool)"
                ));
            }
            Some(BuildError::Vmlinux { .. }) => {
                return Some("install bpftool (apt-get install bpftool); the kernel must expose /sys/kernel/btf/vmlinux".into());
            }
            _ => {}
        }
        if cause
            .downcast_ref::<crate::bpf::privileges::MissingPrivileges>()
            .is_some()
            || matches!(
                cause.downcast_ref::<crate::bpf::loader::LoadError>(),
                Some(crate::bpf::loader::LoadError::Permission(_))
            )
        {
            return Some("run ig as root, for example with sudo".into());
        }
    }
    None
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run::run(&cli.store, args),
        Command::Image(cmd) => image::image(&cli.store, cmd),
        Command::Version => {
            logger::stdout_line(&format!(
                "ig version v{}\ngadget author API: {}",
                env!("CARGO_PKG_VERSION"),
                crate::build::headers::AUTHOR_API_VERSION
            ));
            Ok(())
        }
    }
}
