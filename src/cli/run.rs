//! `ig run IMAGE`: the command line mapped onto the library's run
//! (`ig::run::GadgetRun`).
//!
//! Split in two because the command line depends on the image:
//! [`prepare`] reads the image (pulling it as `--pull` says) and lists
//! its parameters, so that they become flags before clap parses the
//! arguments; [`run`] applies the parsed values, blocks SIGINT and
//! SIGTERM (read by `signals`, which stops the run), and runs it. What
//! the CLI adds: flags, the non-blocking stdout, the wording of losses on
//! stderr. [`run_manifest`] is `ig run -f`: the instances of a manifest,
//! one run and one thread each, one stop for all, one stdout.

use anyhow::Context as _;

use super::args::{RegistryArgs, RunArgs};
use super::registry::PullOptions;
use ig::params::ParamSpec;
use ig::run::{
    GadgetRun, LoaderPrefetch, Notice, PrintOptions, PrintTarget, StopHandle, StopReason,
    VerifyPolicy, manifest,
};

/// A run whose image is read, before the command line is parsed.
pub struct Prepared {
    run: GadgetRun,
    /// Every parameter of every operator of the run.
    pub specs: Vec<ParamSpec>,
}

impl Prepared {
    /// The run's data sources with their final schemas, and its
    /// parameters: nothing loaded, no privileges (for `--help`).
    pub fn describe(&mut self) -> anyhow::Result<ig::run::GadgetInfo> {
        Ok(self.run.describe()?)
    }
}

/// The recognizer of `ig run` command lines for the eBPF statistics
/// operator: ig's own parser of its arguments.
pub fn gadget_runs() -> ig::operators::ebpfstats::GadgetRuns {
    let cmd = <super::args::Cli as clap::CommandFactory>::command();
    ig::operators::ebpfstats::GadgetRuns::new(move |argv| {
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
        // The whole trust policy, so that the image is verified before its
        // gadget.yaml is parsed for the flags and --help.
        .verify(VerifyPolicy {
            verify: pull.verify_image,
            public_keys: pull.public_keys.clone(),
            allowed_gadgets: pull.allowed_gadgets.clone(),
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
        .flush_interval(args.flush_interval)
        .reader_priority(args.reader_priority.into());
    // 0 is upstream's "run until stopped".
    if let Some(t) = args.timeout.filter(|t| !t.is_zero()) {
        run = run.timeout(t);
    }
    if let Some(size) = args.ringbuf_size {
        run = run.ringbuf_size(size);
    }
    run
}

/// The registry every run of this command exports to, when
/// `--otel-metrics-listen` or `--otel-metrics-exporter` asks for one.
pub fn metrics_registry(
    args: &RunArgs,
) -> anyhow::Result<Option<ig::operators::otel_metrics::Registry>> {
    let push = args.otel_metrics_exporter.is_some();
    if args.otel_metrics_export_internals && !args.otel_metrics_listen && !push {
        anyhow::bail!(
            "--otel-metrics-export-internals: ig's own metrics go where the others do: \
             give --otel-metrics-listen or --otel-metrics-exporter too"
        );
    }
    Ok((args.otel_metrics_listen || push).then(|| {
        let r = ig::operators::otel_metrics::Registry::new(args.otel_metrics_export_internals);
        if push {
            r.enable_otlp();
        }
        r
    }))
}

/// The OTLP exporters of this command: one pushing the metrics registry,
/// and those the otel-logs operator routes records to.
#[derive(Default)]
pub struct Otlp {
    exporters: Vec<ig::otlp::Exporter>,
    routes: Vec<ig::operators::otel_logs::Route>,
}

pub(super) fn exporter_config(
    section: &str,
    name: &str,
    default_interval: std::time::Duration,
) -> anyhow::Result<ig::otlp::ExporterConfig> {
    let all = super::config::exporters(section)?;
    let Some(settings) = all.get(name) else {
        let known: Vec<&str> = all.keys().map(String::as_str).collect();
        return Err(ig::otlp::OtlpError::Unknown {
            name: name.to_owned(),
            section: format!("operator.{section}"),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        }
        .into());
    };
    Ok(ig::otlp::ExporterConfig::parse(
        &format!("operator.{section}"),
        name,
        settings,
        default_interval,
    )?)
}

/// Start the exporters `--otel-metrics-exporter` and
/// `--otel-logs-exporter` name. Call it with the signals blocked
/// (`signals::with_blocked`): its threads inherit the mask, so a SIGINT
/// is never delivered to them (it would kill ig).
pub fn start_otlp(
    args: &RunArgs,
    registry: Option<&ig::operators::otel_metrics::Registry>,
) -> anyhow::Result<Otlp> {
    use ig::otlp::{Exporter, Signal};
    let mut otlp = Otlp::default();
    if let (Some(name), Some(registry)) = (&args.otel_metrics_exporter, registry) {
        let c = exporter_config("otel-metrics", name, std::time::Duration::from_secs(60))
            .context("--otel-metrics-exporter")?;
        let producer = ig::otlp::metrics::producer(registry.clone(), c.temporality);
        let e = Exporter::start(&c, Signal::Metrics, Some(producer), Some(registry.clone()))?;
        log::debug!(
            "pushing metrics to {} every {:?}",
            c.url(Signal::Metrics),
            c.interval
        );
        otlp.exporters.push(e);
    }
    if let Some(spec) = &args.otel_logs_exporter {
        let mut by_name: Vec<(String, ig::otlp::ExportSender, std::time::Duration)> = Vec::new();
        for (ds, name) in logs_routes(spec).context("--otel-logs-exporter")? {
            let name = name.as_str();
            let (sender, wait) = match by_name.iter().find(|(n, _, _)| n == name) {
                Some((_, s, w)) => (s.clone(), *w),
                None => {
                    let c = exporter_config("otel-logs", name, std::time::Duration::from_secs(1))
                        .context("--otel-logs-exporter")?;
                    let e = Exporter::start(&c, Signal::Logs, None, registry.cloned())?;
                    log::debug!("pushing log records to {}", c.url(Signal::Logs));
                    let s = e.sender();
                    by_name.push((name.to_owned(), s.clone(), c.interval));
                    otlp.exporters.push(e);
                    (s, c.interval)
                }
            };
            otlp.routes.push(ig::operators::otel_logs::Route {
                ds,
                sender,
                max_wait: wait,
            });
        }
    }
    Ok(otlp)
}

/// `[ds:]name,...` (`--otel-logs-exporter`, upstream's parameter
/// `operator.otel-logs.otel-logs-exporter`): per data source (`None`:
/// every one), the exporter's name; a data source named twice is refused.
pub fn logs_routes(spec: &str) -> anyhow::Result<Vec<(Option<String>, String)>> {
    let mut routes: Vec<(Option<String>, String)> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (ds, name) = match part.split_once(':') {
            Some((ds, name)) => (Some(ds.trim().to_owned()), name.trim()),
            None => (None, part),
        };
        if routes.iter().any(|(d, _)| *d == ds) {
            anyhow::bail!(
                "{spec}: two exporters for {}",
                ds.as_deref().unwrap_or("every data source")
            );
        }
        routes.push((ds, name.to_owned()));
    }
    Ok(routes)
}

/// Add the otel-logs operator to `run` when records are exported.
pub fn with_otel_logs(run: GadgetRun, otlp: &Otlp) -> GadgetRun {
    with_log_routes(run, otlp.routes.clone())
}

/// Add the otel-logs operator sending along `routes` (none: nothing).
pub fn with_log_routes(run: GadgetRun, routes: Vec<ig::operators::otel_logs::Route>) -> GadgetRun {
    if routes.is_empty() {
        return run;
    }
    let gadget = run.name();
    run.operator(move || {
        Box::new(ig::operators::otel_logs::OtelLogs::new(
            routes.clone(),
            gadget.clone(),
        ))
    })
}

/// The final push of every exporter, and what they dropped.
pub fn finish_otlp(otlp: Otlp) {
    let Otlp { exporters, routes } = otlp;
    drop(routes);
    finish_exporters(exporters);
}

/// The final push of `exporters`, and what they dropped.
pub fn finish_exporters(exporters: Vec<ig::otlp::Exporter>) {
    // Every budget starts now: the stop waits SHUTDOWN_BUDGET at most in
    // total, not that much per exporter.
    for e in &exporters {
        e.begin_shutdown();
    }
    for mut e in exporters {
        e.shutdown();
        let dropped = e.dropped();
        if dropped > 0 {
            log::warn!(
                "OTLP exporter {}: {dropped} {} dropped in total ({} sent)",
                e.name(),
                e.items(),
                e.sent()
            );
        } else {
            log::debug!(
                "OTLP exporter {}: {} {} sent",
                e.name(),
                e.sent(),
                e.items()
            );
        }
    }
}

/// Serve `registry` on `--otel-metrics-listen-address`; stopped when
/// dropped. Called after the signals are blocked, so that its thread
/// inherits the mask (a SIGINT delivered to it would kill ig).
pub fn serve_metrics(
    args: &RunArgs,
    registry: Option<&ig::operators::otel_metrics::Registry>,
) -> anyhow::Result<Option<ig::operators::otel_metrics::Listener>> {
    let Some(registry) = registry.filter(|_| args.otel_metrics_listen) else {
        return Ok(None);
    };
    let addr = &args.otel_metrics_listen_address;
    let listener = registry
        .serve(addr)
        .with_context(|| format!("--otel-metrics-listen-address {addr}: cannot listen"))?;
    log::debug!(
        "serving metrics on http://{}/metrics",
        listener.local_addr()
    );
    Ok(Some(listener))
}

/// The logs operator's settings from `--logs-*` (and so from
/// `operator.logs.*` in the config file); `None` when logs are off.
pub fn logs_config(args: &RunArgs) -> anyhow::Result<Option<ig::operators::logs::LogsConfig>> {
    let mut c = ig::operators::logs::LogsConfig::default();
    let flags: [(&str, Option<&str>); 9] = [
        (
            "enabled",
            Some(if args.logs.enabled { "true" } else { "false" }),
        ),
        ("channel", Some(&args.logs.channel)),
        ("filename", args.logs.filename.as_deref()),
        ("format", Some(&args.logs.format)),
        ("mode", Some(&args.logs.mode)),
        ("max-size-mb", Some(&args.logs.max_size_mb)),
        ("max-backups", Some(&args.logs.max_backups)),
        ("max-age-days", Some(&args.logs.max_age_days)),
        (
            "compress",
            Some(if args.logs.compress { "true" } else { "false" }),
        ),
    ];
    for (key, value) in flags {
        if let Some(v) = value {
            c.set(key, v)
                .map_err(|e| anyhow::anyhow!("--logs-{key}: {e}"))?;
        }
    }
    if !c.enabled {
        return Ok(None);
    }
    c.check()?;
    if c.mode == ig::operators::logs::Mode::Detached {
        log::warn!(
            "logs: mode detached logs only runs detached from their client (a daemon's): \
             nothing of this run is logged"
        );
        return Ok(None);
    }
    Ok(Some(c))
}

/// The process's log writer, started when logs are on, its thread
/// scheduled as the readers are (`priority`: a real-time reader would
/// otherwise hand lines faster than a writer at the workload's priority
/// gets a core to write them, and the queue would drop some). Call it
/// with the signals blocked, as [`start_otlp`].
pub fn start_logs(
    config: Option<&ig::operators::logs::LogsConfig>,
    priority: ig::run::ReaderPriority,
) -> anyhow::Result<Option<ig::operators::logs::LogWriter>> {
    config
        .map(|c| ig::operators::logs::LogWriter::start_with(c, priority).context("--logs-enabled"))
        .transpose()
}

/// Add the logs operator writing to `writer` to `run`.
pub fn with_logs(
    run: GadgetRun,
    writer: Option<&ig::operators::logs::LogWriter>,
    format: ig::operators::logs::Format,
) -> GadgetRun {
    let Some(writer) = writer.cloned() else {
        return run;
    };
    let gadget = run.name();
    run.operator(move || {
        Box::new(ig::operators::logs::Logs::new(
            writer.clone(),
            format,
            gadget.clone(),
        ))
    })
}

/// What SIGHUP does: reopen the log file.
pub fn hangup(writer: Option<&ig::operators::logs::LogWriter>) -> Box<dyn Fn() + Send> {
    match writer.cloned() {
        Some(w) => Box::new(move || {
            log::debug!("SIGHUP: reopening the log file");
            w.reopen();
        }),
        None => Box::new(|| log::debug!("SIGHUP: nothing to reopen")),
    }
}

/// Write what the log writer holds, and say what it dropped.
pub fn finish_logs(writer: Option<ig::operators::logs::LogWriter>) {
    if let Some(mut w) = writer {
        w.close();
        if let Some(e) = w.take_error() {
            log::warn!("logs: writing failed: {e}");
        }
        let dropped = w.dropped();
        if dropped > 0 {
            log::warn!(
                "logs: {dropped} lines dropped in total ({} written)",
                w.written()
            );
        }
    }
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
            ig::operators::wasm::MAX_HELD_BYTES >> 20
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
        args.output.clone().unwrap_or_default(),
        PrintTarget::Stdout(ig::output::sink::stdout()),
    );
    print.fields = args.fields.clone();
    print.terminal = terminal;
    let mut run = configure(prepared.run, &args)
        .annotate(args.annotate.iter().flat_map(|a| a.0.iter().cloned()))
        .params(
            given
                .iter()
                .cloned()
                .chain(super::config::param_defaults(&|k| {
                    given.iter().any(|(n, _)| n == k)
                })?),
        )
        .print(print)
        .on_notice(|n| log_notice(None, n));
    let metrics = metrics_registry(&args)?;
    if let Some(registry) = &metrics {
        run = run.metrics(registry.clone());
    }
    let logs = logs_config(&args)?;
    let logs_writer =
        super::signals::with_blocked(|| start_logs(logs.as_ref(), args.reader_priority.into()))?;
    let run = with_logs(
        run,
        logs_writer.as_ref(),
        logs.as_ref().map(|c| c.format).unwrap_or_default(),
    );
    let otlp = super::signals::with_blocked(|| start_otlp(&args, metrics.as_ref()))?;
    let mut run = with_otel_logs(run, &otlp);
    let stop = run.stop_handle()?;
    // The image's signature, the parameters, the privileges: all checked
    // before anything reaches the kernel.
    let prepared = run.prepare()?;
    let signals =
        super::signals::SignalStop::install_with_hangup(stop, hangup(logs_writer.as_ref()))
            .context("setting up signal handling")?;
    let _listener = serve_metrics(&args, metrics.as_ref())?;
    // Nothing can interrupt a blocked write now: stderr, like stdout,
    // must never wait for its reader.
    super::logger::never_block();
    let summary = prepared.run();
    finish_logs(logs_writer);
    finish_otlp(otlp);
    let summary = summary?;
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

/// Largest manifest `ig run -f` reads.
const MAX_MANIFEST: usize = 1 << 20;

/// The text of the manifest at `source`: a file, an http(s) URL, or `-`
/// for standard input.
pub(super) fn read_manifest(source: &str, registry: &RegistryArgs) -> anyhow::Result<String> {
    use std::io::Read as _;
    let too_large = || anyhow::anyhow!("larger than {MAX_MANIFEST} bytes");
    let bytes = if source == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_MANIFEST as u64 + 1)
            .read_to_end(&mut b)
            .context("reading standard input")?;
        if b.len() > MAX_MANIFEST {
            return Err(too_large());
        }
        b
    } else if source.starts_with("http://") || source.starts_with("https://") {
        ig::image::registry::download(source, registry.config().timeout, MAX_MANIFEST)?
    } else {
        let mut b = Vec::new();
        std::fs::File::open(source)
            .and_then(|f| f.take(MAX_MANIFEST as u64 + 1).read_to_end(&mut b))
            .with_context(|| format!("reading {source}"))?;
        if b.len() > MAX_MANIFEST {
            return Err(too_large());
        }
        b
    };
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("it is not UTF-8 text"))
}

/// The parameters of upstream's `cli` operator an instance spec may set
/// (`operator.cli.fields`, `operator.cli.output`): ig's printer settings
/// for that instance.
pub(super) const CLI_FIELDS: &str = "operator.cli.fields";
pub(super) const CLI_OUTPUT: &str = "operator.cli.output";
/// Upstream's `oci` operator's `annotate` of an instance spec: the
/// instance's annotations instead of `--annotate`'s.
pub(super) const OCI_ANNOTATE: &str = "operator.oci.annotate";

/// An instance of `ig run -f` that cannot run, with what would help.
#[derive(Debug, thiserror::Error)]
#[error("instance {name}")]
pub struct InstanceError {
    name: String,
    /// A `hint:` line, if there is one.
    pub hint: Option<String>,
    #[source]
    source: anyhow::Error,
}

/// `hint:` for a parameter an instance spec gives that its gadget lacks:
/// the full names of the gadget's parameters with that key, or where to
/// find them.
fn unknown_param_hint(run: &mut GadgetRun, image: &str, unknown: &str) -> String {
    let key = unknown.rsplit('.').next().unwrap_or(unknown);
    let mut same_key: Vec<String> = run
        .param_specs()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.key == key)
        .map(|p| p.full_name)
        .collect();
    same_key.sort();
    same_key.dedup();
    if same_key.is_empty() {
        format!(
            "`ig run {image} --help` lists its parameters with their full names, which an instance spec uses"
        )
    } else {
        format!("{image}'s parameter {key} is {}", same_key.join(" or "))
    }
}

/// The printer settings of one instance: the command line's, or its
/// spec's `operator.cli.*` (taken out of `params`).
fn instance_print(
    args: &RunArgs,
    params: &mut std::collections::BTreeMap<String, String>,
) -> anyhow::Result<(ig::run::OutputSpec, Option<ig::run::FieldsSpec>)> {
    let mut mode = args.output.clone().unwrap_or_default();
    let mut fields = args.fields.clone();
    if let Some(m) = params.remove(CLI_OUTPUT) {
        mode = ig::run::OutputSpec::parse(&m).with_context(|| format!("parameter {CLI_OUTPUT}"))?;
    }
    if let Some(f) = params.remove(CLI_FIELDS) {
        fields = Some(
            ig::run::FieldsSpec::parse(&f).with_context(|| format!("parameter {CLI_FIELDS}"))?,
        );
    }
    Ok((mode, fields))
}

/// `ig run -f FILE|URL|-`: every instance of the manifest as a run of its
/// own, on a thread of its own, all printing to one stdout. Every instance
/// is checked before any is loaded; one that fails stops the others.
pub fn run_manifest(
    args: RunArgs,
    source: &str,
    store: &std::path::Path,
    registry: &RegistryArgs,
) -> anyhow::Result<()> {
    let context = || format!("reading the manifest {source}");
    let text = read_manifest(source, registry).with_context(context)?;
    let specs = manifest::parse(&text).with_context(context)?;
    let names = manifest::instance_names(&specs);
    let width = names.iter().map(String::len).max().unwrap_or(0);
    let stop = StopHandle::new().context("creating the stop handle")?;
    let stdout = ig::output::sink::stdout();
    // One registry, and one listener, for every instance; one log writer.
    let metrics = metrics_registry(&args)?;
    let logs = logs_config(&args)?;
    let logs_writer =
        super::signals::with_blocked(|| start_logs(logs.as_ref(), args.reader_priority.into()))?;
    let logs_format = logs.as_ref().map(|c| c.format).unwrap_or_default();
    let otlp = super::signals::with_blocked(|| start_otlp(&args, metrics.as_ref()))?;
    let pull = PullOptions {
        policy: args.pull,
        registry: registry.clone(),
        allowed_gadgets: args.allowed_gadgets.clone(),
        verify_image: args.verify_image,
        public_keys: args.public_keys.clone(),
    };
    // Every instance is read and checked (image, signature, parameters,
    // privileges) before any is loaded.
    let mut runs = Vec::new();
    for (spec, name) in specs.iter().zip(&names) {
        let failed = |source: anyhow::Error, hint: Option<String>| InstanceError {
            name: name.clone(),
            hint,
            source,
        };
        if !spec.nodes.is_empty() {
            log::debug!(
                "instance {name}: nodes {} ignored: ig runs on this host only",
                spec.nodes.join(", ")
            );
        }
        let mut params = spec.param_values.clone();
        // A daemon's per-run choice (docs/daemon.md); here the command's.
        for (key, flag) in [
            (
                super::daemon_export::PARAM_LOGS_EXPORTER,
                "--otel-logs-exporter",
            ),
            (
                super::daemon_export::PARAM_METRICS_EXPORTER,
                "--otel-metrics-exporter",
            ),
        ] {
            if params.contains_key(key) {
                return Err(failed(
                    anyhow::anyhow!(
                        "parameter {key}: ig run -f exports every instance alike: \
                         give {flag} on the command line instead"
                    ),
                    None,
                )
                .into());
            }
        }
        let defaults = super::config::param_defaults(&|k| params.contains_key(k))
            .map_err(|e| failed(e, None))?;
        params.extend(defaults);
        let (mode, fields) = instance_print(&args, &mut params).map_err(|e| failed(e, None))?;
        let mut print = PrintOptions::new(mode, PrintTarget::Stdout(stdout.clone()));
        print.fields = fields;
        print.mode_shared = specs.len() > 1 && !spec.param_values.contains_key(CLI_OUTPUT);
        print.instance = Some((name.clone(), width));
        // A `--fields` section for a data source some instances lack is
        // for the others; the spec's own is for this gadget alone.
        print.fields_shared = specs.len() > 1 && !spec.param_values.contains_key(CLI_FIELDS);
        let annotations = match params.remove(OCI_ANNOTATE) {
            Some(list) => ig::run::Annotation::parse_list(&list)
                .with_context(|| format!("parameter {OCI_ANNOTATE}"))
                .map_err(|e| failed(e, None))?,
            None => args.annotate.iter().flat_map(|a| a.0.clone()).collect(),
        };
        let label = name.clone();
        let mut run = configure(new_run(store, &spec.image, &pull, None), &args)
            .annotate(annotations)
            .params(params)
            .print(print)
            .stop_with(stop.clone())
            .on_notice(move |n| log_notice(Some(&label), n));
        if let Some(registry) = &metrics {
            run = run.metrics(registry.clone());
        }
        let run = with_logs(run, logs_writer.as_ref(), logs_format);
        let mut run = with_otel_logs(run, &otlp);
        if let Err(e) = run.check() {
            let hint = match &e {
                ig::run::RunError::Param {
                    source: ig::params::ParamError::Unknown { name },
                    ..
                } => Some(unknown_param_hint(&mut run, &spec.image, name)),
                _ => None,
            };
            return Err(failed(e.into(), hint).into());
        }
        runs.push((name.clone(), run));
    }
    let signals =
        super::signals::SignalStop::install_with_hangup(stop.clone(), hangup(logs_writer.as_ref()))
            .context("setting up signal handling")?;
    let _listener = serve_metrics(&args, metrics.as_ref())?;
    super::logger::never_block();
    // One thread per instance (started after the signals are blocked, so
    // they inherit the mask); each says how it ended as it ends.
    let (tx, rx) = std::sync::mpsc::channel();
    let total = runs.len();
    for (name, run) in runs {
        let sender = tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ig-run-{name}"))
            .spawn(move || {
                // A panic is reported as the instance's failure, not
                // lost with its thread.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    run.run().map_err(Box::new)
                }))
                .unwrap_or_else(|_| Err(Box::new(ig::run::RunError::Panicked)));
                let _ = sender.send((name, result));
            });
        if let Err(e) = spawned {
            stop.stop();
            drop(tx);
            // The ones started end at the stop.
            while rx.recv().is_ok() {}
            return Err(e).context("starting a thread for an instance");
        }
    }
    drop(tx);
    let mut failed = 0;
    for (name, result) in rx {
        match result {
            Ok(summary) => {
                log::debug!("instance {name}: stopped: {:?}", summary.reason);
                let lost = summary.losses.total();
                if lost > 0 {
                    log::warn!("instance {name}: events lost during this run: {lost} in total");
                }
            }
            Err(e) => {
                if failed == 0 && !stop.is_stopped() {
                    // A manifest runs as a whole: the others stop too.
                    stop.stop();
                }
                failed += 1;
                super::report(
                    &anyhow::Error::from(InstanceError {
                        name,
                        hint: None,
                        source: anyhow::Error::from(*e),
                    }),
                    super::Doing::Run,
                );
            }
        }
    }
    finish_logs(logs_writer);
    finish_otlp(otlp);
    if let Some(sig) = signals.received() {
        log::debug!("stopped: signal {sig}");
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {total} instances failed");
    }
    Ok(())
}
