//! `ig run IMAGE`: the command line mapped onto the library's run
//! (`crate::run::GadgetRun`).
//!
//! Split in two because the command line depends on the image:
//! [`prepare`] reads the image (pulling it as `--pull` says) and lists
//! its parameters, so that they become flags before clap parses the
//! arguments; [`run`] applies the parsed values, blocks SIGINT and
//! SIGTERM (read by `signals`, which stops the run), and runs it. What
//! the CLI adds: flags, the non-blocking stdout, the wording of losses on
//! stderr.

use anyhow::Context as _;

use super::args::RunArgs;
use super::registry::PullOptions;
use crate::params::ParamSpec;
use crate::run::{
    GadgetRun, LoaderPrefetch, Notice, PrintOptions, PrintTarget, StopReason, VerifyPolicy,
};

/// A run whose image is read, before the command line is parsed.
pub struct Prepared {
    run: GadgetRun,
    /// Every parameter of every operator of the run.
    pub specs: Vec<ParamSpec>,
}

/// The recognizer of `ig run` command lines for the eBPF statistics
/// operator: ig's own parser of its arguments.
pub fn gadget_runs() -> crate::operators::ebpfstats::GadgetRuns {
    let cmd = <super::args::Cli as clap::CommandFactory>::command();
    crate::operators::ebpfstats::GadgetRuns::new(move |argv| {
        super::gadget_args::prescan(argv, &cmd).map(|s| s.image)
    })
}

/// A run of `image` of `store` with the CLI's settings that do not depend
/// on the parsed command line.
pub fn new_run(
    store: &std::path::Path,
    image: &str,
    pull: &PullOptions,
    prefetch: Option<&LoaderPrefetch>,
) -> GadgetRun {
    let mut run = GadgetRun::from_store(store, image)
        .pull(pull.policy.into())
        .registry(pull.registry.config())
        .verify(VerifyPolicy {
            allowed_gadgets: pull.allowed_gadgets.clone(),
            ..VerifyPolicy::default()
        })
        .pull_progress(super::registry::progress("pulled"))
        .gadget_runs(gadget_runs())
        .guest_stderr(super::logger::guest_stderr());
    if let Some(p) = prefetch {
        run = run.loader_prefetch(p.clone());
    }
    run
}

/// Read `image` from the store (pulling it as `pull` says) and list its
/// parameters. No privileges needed beyond reading the store.
pub fn prepare(
    store: &std::path::Path,
    image: &str,
    pull: &PullOptions,
    prefetch: Option<&LoaderPrefetch>,
) -> anyhow::Result<Prepared> {
    let mut run = new_run(store, image, pull, prefetch);
    let specs = run.param_specs()?;
    Ok(Prepared { run, specs })
}

/// The library's settings for the flags of `ig run` every run shares.
pub fn configure(mut run: GadgetRun, args: &RunArgs) -> GadgetRun {
    run = run
        .verify(VerifyPolicy {
            verify: args.verify_image,
            public_keys: args.public_keys.clone(),
            allowed_gadgets: args.allowed_gadgets.clone(),
        })
        .flush_interval(args.flush_interval);
    if let Some(t) = args.timeout {
        run = run.timeout(std::time::Duration::from_secs(t));
    }
    if let Some(size) = args.ringbuf_size {
        run = run.ringbuf_size(size);
    }
    run
}

/// How `ig run` words a notice on stderr; `instance` names the run when
/// there are several.
pub fn log_notice(instance: Option<&str>, n: &Notice) {
    let who = instance.map_or(String::new(), |i| format!("instance {i}: "));
    match n {
        Notice::Lost { source, count } => log::warn!(
            "{who}data source {source}: {count} events lost (the ring buffer was full; a larger --ringbuf-size helps)"
        ),
        Notice::OutputDropped { count } => log::warn!(
            "{who}{count} events lost: the reader of ig's output did not keep up (write to a file, or filter with -F)"
        ),
        Notice::GuestRefused { module, count } => log::warn!(
            "{who}wasm module {module}: {count} packets refused: the guest held more than {} MiB of events not yet delivered",
            crate::operators::wasm::MAX_HELD_BYTES >> 20
        ),
        Notice::ConsumerLagged { count } => {
            log::warn!("{who}{count} events lost: a consumer did not keep up")
        }
        Notice::Warning(w) => log::warn!("{who}{w}"),
    }
}

/// Run a prepared gadget with the parsed arguments; `given` are the
/// parameters set on the command line, `(full name, raw value)`.
pub fn run(args: RunArgs, prepared: Prepared, given: &[(String, String)]) -> anyhow::Result<()> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut print = PrintOptions::new(
        args.output,
        PrintTarget::Stdout(crate::output::sink::stdout()),
    );
    print.fields = args.fields.clone();
    print.terminal = terminal;
    let mut run = configure(prepared.run, &args)
        .params(given.iter().cloned())
        .print(print)
        .on_notice(|n| log_notice(None, n));
    let stop = run.stop_handle()?;
    // The image's signature, the parameters, the privileges: all checked
    // before anything reaches the kernel.
    let prepared = run.prepare()?;
    let signals =
        super::signals::SignalStop::install(stop).context("setting up signal handling")?;
    // Nothing can interrupt a blocked write now: stderr, like stdout,
    // must never wait for its reader.
    super::logger::never_block();
    let summary = prepared.run()?;
    match signals.received() {
        Some(sig) => log::debug!("stopped: signal {sig}"),
        None => log::debug!("stopped: {:?}", summary.reason),
    }
    let lost_total = summary.losses.total();
    if lost_total > 0 {
        // Worded without "N lost" so that tools summing the lines above do
        // not count these events twice.
        log::warn!("events lost during this run: {lost_total} in total");
    }
    if summary.reason == StopReason::OutputClosed {
        log::debug!("output closed by its reader");
    }
    Ok(())
}
