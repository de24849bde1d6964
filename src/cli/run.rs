//! `ig run IMAGE`: resolve the image, assemble the operator chain, run it.
//!
//! Split in two because the command line depends on the image:
//! [`prepare`] reads the image and builds the operators (so their
//! parameters are known before clap parses the arguments), [`run`] applies
//! the parsed values, loads the gadget and runs the event loop.

use std::path::Path;

use anyhow::{Context as _, anyhow};

use super::args::RunArgs;
use crate::image::{ImageError, Reference, Store};
use crate::metadata::GadgetMetadata;
use crate::operators::ebpf::{EbpfOperator, EbpfOptions};
use crate::output::{OutputOperator, shared};
use crate::params::{ParamSpec, ParamValues};
use crate::pipeline::{Notice, Operator, Pipeline};
use crate::runner::{self, RunOptions, Signals, StopReason};

/// Smallest ring buffer ig uses unless told otherwise (`--ringbuf-size`).
const MIN_RINGBUF: u32 = 4 << 20;

/// A resolved image with its operators, before the command line is parsed.
pub struct Prepared {
    pub reference: Reference,
    ebpf: EbpfOperator,
    /// The gadget-independent operators (`operators::catalog`).
    others: Vec<Box<dyn Operator>>,
    /// Every parameter of every operator of the run.
    pub specs: Vec<ParamSpec>,
    /// The handles shared between operators (the container filter, what
    /// the eBPF operator shares with a WASM guest).
    seams: crate::operators::Seams,
    /// The image has a WASM module.
    has_wasm: bool,
    /// What the signature check before loading needs.
    trust: super::trust::RunImage,
}

/// Read `image` from the store and build its operators. No privileges
/// needed beyond reading the store.
pub fn prepare(
    store: &Path,
    image: &str,
    pull: &super::registry::PullOptions,
) -> anyhow::Result<Prepared> {
    let reference = Reference::parse(image)?;
    // A name `--allowed-gadgets` refuses is not even pulled.
    super::trust::check_name_before_pull(&pull.allowed_gadgets, &reference)?;
    super::registry::ensure_present(store, &reference, pull)?;
    let store_path = store;
    let store = Store::open_read_only(store)?;
    let resolved = match store.resolve(&reference) {
        Ok(i) => i,
        Err(e @ ImageError::NotFound { .. }) => {
            return Err(anyhow!(e).context(format!("cannot run {image}")));
        }
        Err(e) => return Err(anyhow!(e).context(format!("reading image {reference}"))),
    };
    for s in &resolved.skipped {
        log::warn!(
            "image {reference}: ignoring layer of unknown media type {}",
            s.media_type
        );
    }
    let trust = super::trust::RunImage {
        store: store_path.to_owned(),
        reference: reference.clone(),
        index_digest: resolved.index_digest.clone(),
        manifest_digest: resolved.manifest_digest.clone(),
        origin: resolved.origin,
        pull: pull.clone(),
    };
    let object = resolved
        .ebpf_object
        .ok_or_else(|| anyhow!("image {reference} has no eBPF program layer"))?;
    let metadata = GadgetMetadata::parse(
        &resolved.config_yaml,
        &format!("gadget.yaml of {reference}"),
    )?;
    let seams = crate::operators::Seams::default();
    // The image's WASM module, if any (it reads params.wasm before the
    // eBPF operator takes the metadata).
    let wasm = resolved.wasm.map(|w| {
        crate::operators::wasm::WasmOperator::new(
            reference.to_string(),
            w,
            &metadata,
            crate::operators::wasm::cache_dir(store.root()),
            super::logger::guest_stderr(),
        )
        .with_seams(seams.gadget.clone(), seams.mntns_filter.clone())
    });
    let has_wasm = wasm.is_some();
    let ebpf = EbpfOperator::new(object, metadata, EbpfOptions::default())
        .with_context(|| format!("reading gadget {reference}"))?;
    let mut others = crate::operators::catalog_with(&seams);
    if let Some(w) = wasm {
        others.push(Box::new(w));
    }
    let mut specs = ebpf.params();
    specs.extend(others.iter().flat_map(|o| o.params()));
    Ok(Prepared {
        reference,
        ebpf,
        others,
        specs,
        seams,
        has_wasm,
        trust,
    })
}

/// Run a prepared gadget with the parsed arguments; `given` are the
/// parameters set on the command line, `(full name, raw value)`.
pub fn run(args: RunArgs, prepared: Prepared, given: &[(String, String)]) -> anyhow::Result<()> {
    let Prepared {
        reference,
        mut ebpf,
        others,
        specs,
        seams,
        has_wasm,
        trust,
    } = prepared;
    // Before anything else, and so before anything reaches the kernel.
    super::trust::check_before_load(&args, &trust)?;
    let values = ParamValues::resolve(&specs, given)
        .map_err(|(name, e)| anyhow!(e).context(format!("parameter {name}")))?;

    crate::bpf::privileges::check()?;
    let signals = Signals::block()?;
    // Nothing can interrupt a blocked write now: stderr, like stdout,
    // must never wait for its reader.
    super::logger::never_block();

    // Ring buffers: what the user asked for, else what the gadget declares
    // but at least MIN_RINGBUF. Gadgets written for upstream declare 256 KiB,
    // which an open storm (700k events/s of 344 bytes) fills in about a
    // millisecond; batched wake-ups need room to batch.
    let ringbuf_size = args.ringbuf_size.unwrap_or_else(|| {
        ebpf.declared_ringbuf_size()
            .unwrap_or(MIN_RINGBUF)
            .max(MIN_RINGBUF)
    });
    // Wake the reader when a quarter of the buffer is pending: three
    // quarters stay free for the bursts that arrive until it drains.
    let wakeup_threshold = (!args.flush_interval.is_zero()).then_some(u64::from(ringbuf_size / 4));
    ebpf.set_options(EbpfOptions {
        wakeup_threshold,
        ringbuf_size: Some(ringbuf_size),
        mntns_filter: Some(seams.mntns_filter),
        shared: has_wasm.then_some(seams.gadget),
    });
    let mut ops: Vec<Box<dyn Operator>> = vec![Box::new(ebpf)];
    ops.extend(others);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (stdout, output_handle) = crate::output::sink::stdout();
    ops.push(Box::new(
        OutputOperator::new(args.output, shared(stdout))
            .on_terminal(terminal)
            .with_fields(args.fields.clone()),
    ));
    let context = || format!("running gadget {}", args.image);
    let mut pipeline = Pipeline::build(ops, &values).with_context(context)?;
    log::debug!("operators: {}", pipeline.operator_names().join(", "));
    for w in pipeline.warnings() {
        log::warn!("{w}");
    }
    pipeline.start().with_context(context)?;
    log::debug!("{reference} started");

    let mut lost_total = 0u64;
    let opts = RunOptions {
        timeout: args.timeout.map(std::time::Duration::from_secs),
        flush_interval: args.flush_interval,
        output: Some(output_handle),
    };
    let reason = runner::run(&mut pipeline, &signals, &opts, |n| match n {
        Notice::Lost { source, count } => {
            lost_total += count;
            log::warn!(
                "data source {source}: {count} events lost (the ring buffer was full; a larger --ringbuf-size helps)"
            );
        }
        Notice::OutputDropped { count } => {
            lost_total += count;
            log::warn!(
                "{count} events lost: the reader of ig's output did not keep up (write to a file, or filter with -F)"
            );
        }
        Notice::GuestRefused { module, count } => {
            lost_total += count;
            log::warn!(
                "wasm module {module}: {count} packets refused: the guest held more than {} MiB of events not yet delivered",
                crate::operators::wasm::MAX_HELD_BYTES >> 20
            );
        }
    })
    .with_context(context)?;
    log::debug!("stopped: {reason:?}");
    if lost_total > 0 {
        // Worded without "N lost" so that tools summing the lines above do
        // not count these events twice.
        log::warn!("events lost during this run: {lost_total} in total");
    }
    if reason == StopReason::OutputClosed {
        log::debug!("output closed by its reader");
    }
    Ok(())
}
