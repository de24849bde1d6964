//! The command line, as clap definitions. Only declarations live here; what
//! each command does is in the sibling modules.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::output::OutputMode;

/// Build, ship and run eBPF gadgets packaged as OCI images.
///
/// A gadget is an eBPF program plus metadata (gadget.yaml), built into an OCI
/// image. Build one with `ig image build DIR`, then run it with `ig run NAME`.
#[derive(Debug, Parser)]
#[command(name = "ig", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// The local OCI image store.
    #[arg(long, global = true, env = "IG_STORE", default_value = crate::image::DEFAULT_STORE, value_name = "DIR")]
    pub store: PathBuf,

    /// Show debug messages on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a gadget and print its events.
    ///
    /// Loads the gadget's eBPF programs into the kernel, attaches them and
    /// prints every event until Ctrl-C (or --timeout). Needs root (or
    /// CAP_BPF and CAP_PERFMON).
    #[command(
        after_help = "Examples:\n  ig run trace_exec\n  ig run trace_open -o json | jq -r 'select(.proc.comm == \"cat\") | .fname'\n  ig run trace_exec --timeout 10 -o json > events.jsonl"
    )]
    Run(RunArgs),
    /// Build, list and manage gadget images in the local store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Print the version of ig and of the gadget author API it builds against.
    Version,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The gadget image: a name (`trace_exec`), a full reference
    /// (`ghcr.io/inspektor-gadget/gadget/trace_exec:latest`) or a digest.
    /// The gadget's own parameters (see `ig run IMAGE --help`) follow it.
    pub image: String,

    /// Output format.
    #[arg(short, long, value_enum, default_value = "columns")]
    pub output: OutputMode,

    /// Fields to print: `a,b` exactly these (full names like proc.comm, or
    /// column names); `+a,-b` added to or removed from the defaults; per
    /// data source `ds:a,b;ds2:+c`.
    #[arg(long, value_name = "FIELDS", value_parser = |s: &str| crate::output::FieldsSpec::parse(s).map_err(|e| e.to_string()))]
    pub fields: Option<crate::output::FieldsSpec>,

    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(short, long, value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// Longest an event waits before it is printed. The kernel wakes ig only
    /// when a ring buffer is a quarter full; otherwise ig reads it on this
    /// timer. `0` wakes ig on every event (lowest latency, highest overhead).
    #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = crate::params::parse_duration)]
    pub flush_interval: Duration,

    /// Size of each ring buffer in bytes (a power of two, at least 4096);
    /// default: what the gadget declares.
    #[arg(long, value_name = "BYTES", value_parser = parse_ringbuf_size)]
    pub ringbuf_size: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Compile a gadget directory into an image in the local store.
    ///
    /// DIR holds program.bpf.c and gadget.yaml (and optionally build.yaml with
    /// `ebpfsource`, `metadata` and `cflags`). Needs clang, llvm-strip and
    /// bpftool; the author headers are built into ig.
    Build {
        /// The gadget directory.
        dir: PathBuf,
        /// Tag for the image (default: the `name` in gadget.yaml).
        #[arg(short, long, value_name = "REF")]
        tag: Option<String>,
        /// Path of build.yaml (default: DIR/build.yaml if present).
        #[arg(short, long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// List the images in the local store.
    #[command(visible_alias = "ls")]
    List {
        /// Show full digests and repositories.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Remove images from the local store.
    #[command(visible_alias = "rm")]
    Remove {
        #[arg(required = true, value_name = "REF")]
        images: Vec<String>,
    },
    /// Give an image in the local store another name.
    Tag { source: String, target: String },
}

fn parse_ringbuf_size(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two of at least 4096"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ringbuf_sizes() {
        assert_eq!(parse_ringbuf_size("262144"), Ok(262_144));
        assert!(parse_ringbuf_size("1000").is_err());
        assert!(parse_ringbuf_size("2048").is_err());
        assert!(parse_ringbuf_size("x").is_err());
    }
}
