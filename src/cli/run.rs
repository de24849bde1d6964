//! `ig run IMAGE`: resolve the image, assemble the operator chain, run it.
//!
//! Split in two because the command line depends on the image:
//! [`prepare`] reads the image and builds the operators (so their
//! parameters are known before clap parses the arguments), [`run`] applies
//! the parsed values, loads the gadget and runs the event loop.
//!
//! A gadget is its eBPF object (if any), its WASM module (if any) and the
//! operators its `gadget.yaml` turns on (`operator.process`...), all
//! configured by `gadget.yaml` as its custom parameters patch it:
//! [`Assembly`] gathers them, for `ig run` and for the checks of
//! `ig image build` alike.

use std::path::Path;

use anyhow::{Context as _, anyhow};

use super::args::RunArgs;
use crate::image::{ImageError, Reference, Store};
use crate::metadata::{CUSTOM_PREFIX, GadgetMetadata, Known};
use crate::operators::ebpf::{EbpfOperator, EbpfOptions};
use crate::output::{OutputOperator, shared};
use crate::params::{ParamSpec, ParamType, ParamValues};
use crate::pipeline::{Notice, Operator, Pipeline};
use crate::runner::{self, RunOptions, Signals, StopReason};

/// Smallest ring buffer ig uses unless told otherwise (`--ringbuf-size`).
const MIN_RINGBUF: u32 = 4 << 20;

/// A resolved image with its operators, before the command line is parsed.
pub struct Prepared {
    pub reference: Reference,
    assembly: Assembly,
    /// Every parameter of every operator of the run.
    pub specs: Vec<ParamSpec>,
    /// What the signature check before loading needs.
    trust: super::trust::RunImage,
}

/// What a gadget is made of, read from its parts: shared by `ig run` and
/// the checks of `ig image build`.
pub struct Assembly {
    /// `gadget.yaml` as written (patched at run time).
    metadata: GadgetMetadata,
    /// How errors name `gadget.yaml`.
    file: String,
    ebpf: Option<EbpfOperator>,
    /// The gadget-independent operators (`operators::catalog`), and the
    /// WASM module's.
    others: Vec<Box<dyn Operator>>,
    /// Every parameter: eBPF, configured operators, catalog, custom.
    pub specs: Vec<ParamSpec>,
    /// What the checks noticed but did not refuse.
    pub warnings: Vec<String>,
    /// The operators `gadget.yaml` turns on (with its custom parameters at
    /// their defaults), by name.
    pub configured: Vec<&'static str>,
    /// The handles shared between operators (the container filter, what
    /// the eBPF operator shares with a WASM guest).
    seams: crate::operators::Seams,
    /// The image has a WASM module.
    has_wasm: bool,
}

/// The handles operators of one run share (`operators::Seams`), with the
/// CLI's recognizer of `ig run` command lines: made before the WASM
/// operator, which takes some of them.
pub fn new_seams() -> crate::operators::Seams {
    crate::operators::Seams {
        gadget_runs: gadget_runs(),
        ..crate::operators::Seams::default()
    }
}

/// The recognizer of `ig run` command lines for the eBPF statistics
/// operator: ig's own parser of its arguments.
fn gadget_runs() -> crate::operators::ebpfstats::GadgetRuns {
    let cmd = <super::args::Cli as clap::CommandFactory>::command();
    crate::operators::ebpfstats::GadgetRuns::new(move |argv| {
        super::gadget_args::prescan(argv, &cmd).map(|s| s.image)
    })
}

/// A gadget's custom parameters as command-line parameters (those that
/// can do something: with `values` or a `patch`).
fn custom_specs(meta: &GadgetMetadata) -> Vec<ParamSpec> {
    meta.params
        .custom
        .iter()
        .filter(|(_, p)| p.is_effective())
        .map(|(key, p)| ParamSpec {
            key: key.clone(),
            full_name: format!("{CUSTOM_PREFIX}{key}"),
            description: p.description.clone().unwrap_or_default(),
            default: p.default_value.clone().unwrap_or_default(),
            ty: if p.values.is_empty() {
                ParamType::String { max_len: None }
            } else {
                ParamType::Choice(p.values.keys().cloned().collect())
            },
            group: crate::bpf::params::GROUP.to_owned(),
            alias: p
                .alias
                .as_deref()
                .filter(|a| a.chars().count() == 1)
                .and_then(|a| a.chars().next()),
        })
        .collect()
}

impl Assembly {
    /// Read a gadget from its parts: check its `gadget.yaml` (operator
    /// names, templates), build its operators, gather every parameter and
    /// apply `paramDefaults`. No kernel involved.
    pub fn new(
        metadata: GadgetMetadata,
        file: String,
        object: Option<Vec<u8>>,
        wasm: Option<Box<dyn Operator>>,
        seams: crate::operators::Seams,
    ) -> anyhow::Result<Self> {
        Self::assemble(metadata, file, object, wasm, seams, true)
    }

    /// For `ig image build`'s checks: the eBPF object's own problems
    /// (a program `ig run` cannot attach) are `ig run`'s to report, as
    /// they always were; `gadget.yaml`'s are reported here. Templates may
    /// then refer to any `operator.oci.ebpf.*` parameter.
    pub fn for_build(
        metadata: GadgetMetadata,
        file: String,
        object: Option<Vec<u8>>,
        wasm: Option<Box<dyn Operator>>,
        seams: crate::operators::Seams,
    ) -> anyhow::Result<Self> {
        Self::assemble(metadata, file, object, wasm, seams, false)
    }

    fn assemble(
        metadata: GadgetMetadata,
        file: String,
        object: Option<Vec<u8>>,
        wasm: Option<Box<dyn Operator>>,
        seams: crate::operators::Seams,
        strict: bool,
    ) -> anyhow::Result<Self> {
        let has_object = object.is_some();
        let ebpf = match object
            .map(|o| EbpfOperator::new(o, metadata.clone(), EbpfOptions::default()))
            .transpose()
        {
            Ok(e) => e,
            Err(e) if !strict => {
                log::debug!("{file}: the eBPF program is checked by ig run: {e}");
                None
            }
            Err(e) => {
                return Err(anyhow!(e).context(format!("reading the eBPF program of {file}")));
            }
        };
        let unread_object = has_object && ebpf.is_none();
        let mut others = crate::operators::catalog_with(&seams);
        let has_wasm = wasm.is_some();
        others.extend(wasm);
        let custom = custom_specs(&metadata);
        let mut specs: Vec<ParamSpec> = ebpf.iter().flat_map(Operator::params).collect();
        specs.extend(others.iter().flat_map(|o| o.params()));
        specs.extend(custom);
        // Checked before anything reads it: what templates refer to may
        // belong to an operator gadget.yaml turns on.
        let mut names: Vec<String> = specs.iter().map(|s| s.full_name.clone()).collect();
        names.extend(
            crate::operators::config_params()
                .into_iter()
                .map(|s| s.full_name),
        );
        let known = Known {
            params: &|k| {
                names.iter().any(|n| n == k)
                    || (unread_object && k.starts_with(crate::bpf::params::PREFIX))
            },
            operators: crate::operators::NAMES,
            settings: &crate::operators::settings,
        };
        let mut warnings = metadata.check(&file, &known)?;
        // The operators gadget.yaml turns on, its custom parameters at
        // their defaults; at run time they are made again from the file
        // as the given values patch it.
        let defaults = metadata.with_defaults(&file)?;
        let configured = crate::operators::from_config(&defaults, &seams)
            .with_context(|| format!("configuring the operators of {file}"))?;
        specs.extend(configured.iter().flat_map(|o| o.params()));
        // `--filter.<ds>` and `--filter-expr.<ds>` for the data sources
        // known before the command line is parsed (a WASM guest's, which
        // it makes in gadgetInit, when gadget.yaml annotates them).
        let mut sources: Vec<String> = ebpf.iter().flat_map(Operator::data_source_names).collect();
        sources.extend(configured.iter().flat_map(|o| o.data_source_names()));
        if has_wasm {
            sources.extend(metadata.datasources.keys().cloned());
        }
        let mut seen = std::collections::BTreeSet::new();
        sources.retain(|s| seen.insert(s.clone()));
        specs.extend(crate::operators::filter::per_source_params(&sources));
        let unused = crate::params::apply_defaults(&mut specs, &metadata.param_defaults)
            .map_err(|(key, e)| anyhow!(e).context(format!("{file}: paramDefaults {key}")))?;
        for key in unused {
            warnings.push(format!(
                "{file}: paramDefaults {key} names no parameter of this gadget (ignored)"
            ));
        }
        if !has_object && !has_wasm && configured.is_empty() {
            return Err(anyhow!(
                "{file}: the gadget has no eBPF program, no WASM module, and turns on no operator (operator.process, operator.cgroup or operator.ebpf with emitstats: true): nothing to run"
            ));
        }
        Ok(Self {
            configured: configured.iter().map(|o| o.name()).collect(),
            metadata,
            file,
            ebpf,
            others,
            specs,
            warnings,
            seams,
            has_wasm,
        })
    }
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
    let file = format!("gadget.yaml of {reference}");
    let metadata = GadgetMetadata::parse(&resolved.config_yaml, &file)?;
    let seams = new_seams();
    // The image's WASM module, if any (it reads params.wasm).
    let wasm = resolved.wasm.map(|w| {
        Box::new(
            crate::operators::wasm::WasmOperator::new(
                reference.to_string(),
                w,
                &metadata,
                crate::operators::wasm::cache_dir(store.root()),
                super::logger::guest_stderr(),
            )
            .with_seams(seams.gadget.clone(), seams.mntns_filter.clone()),
        ) as Box<dyn Operator>
    });
    let assembly = Assembly::new(metadata, file, resolved.ebpf_object, wasm, seams)
        .with_context(|| format!("reading gadget {reference}"))?;
    // `ig image build` showed these; a run says them only with -v.
    for w in &assembly.warnings {
        log::debug!("{w}");
    }
    Ok(Prepared {
        reference,
        specs: assembly.specs.clone(),
        assembly,
        trust,
    })
}

/// Run a prepared gadget with the parsed arguments; `given` are the
/// parameters set on the command line, `(full name, raw value)`.
pub fn run(args: RunArgs, prepared: Prepared, given: &[(String, String)]) -> anyhow::Result<()> {
    let Prepared {
        reference,
        assembly,
        specs,
        trust,
    } = prepared;
    let Assembly {
        metadata,
        file,
        mut ebpf,
        others,
        seams,
        has_wasm,
        ..
    } = assembly;
    // Before anything else, and so before anything reaches the kernel.
    super::trust::check_before_load(&args, &trust)?;
    let values = ParamValues::resolve(&specs, given)
        .map_err(|(name, e)| anyhow!(e).context(format!("parameter {name}")))?;
    // gadget.yaml as the custom parameters' values patch it, and the
    // operators it turns on then.
    let metadata = metadata
        .patched(&file, &|k| values.raw(k).map(str::to_owned))
        .context("applying the gadget's params.custom")?;
    let configured = crate::operators::from_config(&metadata, &seams)
        .with_context(|| format!("configuring the operators of {file}"))?;

    // A gadget of operators that only read /proc (top_process) runs
    // without privileges; eBPF programs and the kernel's eBPF statistics
    // need them.
    if ebpf.is_some()
        || configured
            .iter()
            .any(|o| o.name() == crate::operators::ebpfstats::NAME)
    {
        crate::bpf::privileges::check()?;
    }
    let signals = Signals::block()?;
    // Nothing can interrupt a blocked write now: stderr, like stdout,
    // must never wait for its reader.
    super::logger::never_block();

    // Ring buffers: what the user asked for, else what the gadget declares
    // but at least MIN_RINGBUF. Gadgets written for upstream declare 256 KiB,
    // which an open storm (700k events/s of 344 bytes) fills in about a
    // millisecond; batched wake-ups need room to batch.
    let mut ops: Vec<Box<dyn Operator>> = Vec::new();
    if let Some(ebpf) = ebpf.as_mut() {
        let ringbuf_size = args.ringbuf_size.unwrap_or_else(|| {
            ebpf.declared_ringbuf_size()
                .unwrap_or(MIN_RINGBUF)
                .max(MIN_RINGBUF)
        });
        // Wake the reader when a quarter of the buffer is pending: three
        // quarters stay free for the bursts that arrive until it drains.
        let wakeup_threshold =
            (!args.flush_interval.is_zero()).then_some(u64::from(ringbuf_size / 4));
        ebpf.set_options(EbpfOptions {
            wakeup_threshold,
            ringbuf_size: Some(ringbuf_size),
            mntns_filter: Some(seams.mntns_filter.clone()),
            shared: has_wasm.then(|| seams.gadget.clone()),
        });
        ebpf.set_metadata(metadata.clone());
    }
    ops.extend(ebpf.map(|e| Box::new(e) as Box<dyn Operator>));
    ops.extend(configured);
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
