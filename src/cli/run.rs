//! `ig run IMAGE`: resolve the image, assemble the operator chain, run it.

use std::path::Path;

use anyhow::{Context as _, anyhow};

use super::args::RunArgs;
use crate::bpf::contract::map_max_entries;
use crate::bpf::object::ObjectInfo;
use crate::btf::Btf;
use crate::image::{ImageError, Reference, Store};
use crate::metadata::GadgetMetadata;
use crate::operators::ebpf::{EbpfOperator, EbpfOptions};
use crate::output::{OutputOperator, shared};
use crate::pipeline::{Notice, Operator, Pipeline};
use crate::runner::{self, RunOptions, Signals, StopReason};

/// Ring buffer size assumed when neither the flag nor the object says.
const DEFAULT_RINGBUF: u32 = 256 * 1024;

pub fn run(store: &Path, args: RunArgs) -> anyhow::Result<()> {
    // First, so that an unprivileged user learns what is missing rather
    // than that the root-owned store is unreadable.
    crate::bpf::privileges::check()?;
    let reference = Reference::parse(&args.image)?;
    let store = Store::open_read_only(store)?;
    let image = match store.resolve(&reference) {
        Ok(i) => i,
        Err(e @ ImageError::NotFound { .. }) => {
            return Err(anyhow!(e).context(format!("cannot run {}", args.image)));
        }
        Err(e) => return Err(anyhow!(e).context(format!("reading image {reference}"))),
    };
    for s in &image.skipped {
        log::warn!(
            "image {reference}: ignoring layer of unknown media type {}",
            s.media_type
        );
    }
    let object = image
        .ebpf_object
        .ok_or_else(|| anyhow!("image {reference} has no eBPF program layer"))?;
    let metadata =
        GadgetMetadata::parse(&image.config_yaml, &format!("gadget.yaml of {reference}"))?;

    let signals = Signals::block()?;

    let wakeup_threshold = if args.flush_interval.is_zero() {
        None
    } else {
        // Wake the reader when a quarter of the buffer is pending: three
        // quarters stay free for the bursts that arrive until it drains.
        let size = args
            .ringbuf_size
            .or_else(|| declared_ringbuf_size(&object))
            .unwrap_or(DEFAULT_RINGBUF);
        Some(u64::from(size / 4))
    };
    let ops: Vec<Box<dyn Operator>> = vec![
        Box::new(EbpfOperator::new(
            object,
            metadata,
            EbpfOptions {
                wakeup_threshold,
                ringbuf_size: args.ringbuf_size,
            },
        )),
        Box::new(OutputOperator::new(args.output, shared(std::io::stdout()))),
    ];
    let context = || format!("running gadget {}", args.image);
    let mut pipeline = Pipeline::build(ops).with_context(context)?;
    log::debug!("operators: {}", pipeline.operator_names().join(", "));
    pipeline.start().with_context(context)?;

    let mut lost_total = 0u64;
    let opts = RunOptions {
        timeout: args.timeout.map(std::time::Duration::from_secs),
        flush_interval: args.flush_interval,
    };
    let reason = runner::run(&mut pipeline, &signals, &opts, |n| match n {
        Notice::Lost { source, count } => {
            lost_total += count;
            log::warn!("{count} events of data source {source} were lost (ring buffer full; try --ringbuf-size)");
        }
    })
    .with_context(context)?;
    log::debug!("stopped: {reason:?}");
    if lost_total > 0 {
        log::warn!("{lost_total} events were lost in total");
    }
    if reason == StopReason::OutputClosed {
        log::debug!("output closed by its reader");
    }
    Ok(())
}

/// The smallest ring buffer size the object declares (`max_entries` of its
/// tracer maps), read from BTF.
fn declared_ringbuf_size(object: &[u8]) -> Option<u32> {
    let info = ObjectInfo::parse(object).ok()?;
    let btf = Btf::parse(&info.btf).ok()?;
    let contract = crate::bpf::contract::Contract::discover(&btf).ok()?;
    contract
        .tracer_maps
        .iter()
        .filter_map(|m| map_max_entries(&btf, m))
        .min()
}
