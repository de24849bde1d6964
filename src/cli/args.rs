//! The command line, as clap definitions. Only declarations live here; what
//! each command does is in the sibling modules.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Build, ship and run eBPF gadgets packaged as OCI images.
///
/// A gadget is an eBPF program plus metadata (gadget.yaml), built into an OCI
/// image. Build one with `ig image build DIR`, then run it with `ig run NAME`.
///
/// An image layer (eBPF object, WASM module) may be at most 256 MiB;
/// IG_MAX_LAYER_SIZE=SIZE (bytes, or with K, M or G) changes that for
/// every command (`ig run` holds the layers it uses in memory).
#[derive(Debug, Parser)]
#[command(name = "ig", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// The local OCI image store.
    #[arg(long, global = true, env = "IG_STORE", default_value = ig::image::DEFAULT_STORE, value_name = "DIR")]
    pub store: PathBuf,

    /// Show debug messages on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Configuration file (YAML, upstream's keys; see `ig config default`).
    /// Settings apply when their flag is not given; INSPEKTOR_GADGET_* environment
    /// variables override the file [default: ~/.ig/config.yaml, if present].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Mount tracefs, debugfs and bpffs on their usual places when they are
    /// missing (in a fresh container or a minimal VM).
    #[arg(long, global = true)]
    pub auto_mount_filesystems: bool,

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
    ///
    /// With -f, runs the instances of a manifest instead (upstream's
    /// instance specs, one YAML document each: apiVersion: 1, kind:
    /// instance-spec, image, optional name, and paramValues by full
    /// parameter name, as `ig run IMAGE --help` shows them), all in this
    /// process, their events in one stream: JSON and YAML get a top-level
    /// `instance` field, tables an INSTANCE column under a header per data
    /// source. The flags here apply to every instance;
    /// operator.cli.output and operator.cli.fields in paramValues set
    /// one instance's. Every instance is checked before any is loaded. An
    /// instance that ends (a snapshot) leaves the others running; one that
    /// fails stops them all; ig exits when all have ended, at --timeout,
    /// or on Ctrl-C.
    #[command(
        after_help = "Examples:\n  ig run trace_exec\n  ig run trace_open -o json | jq -r 'select(.proc.comm == \"cat\") | .fname'\n  ig run trace_open -E 'proc.comm in [\"cat\", \"less\"] and fname startsWith \"/etc/\"'\n  ig run trace_exec --timeout 10 -o json > events.jsonl\n  ig run -f instances.yaml -o json | jq -c 'select(.instance == \"execs\")'\n  curl -s https://example.com/manifest.yaml | ig run -f -"
    )]
    Run(RunArgs),
    /// Build, list and manage gadget images in the local store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Log in to a registry, for `ig image push/pull` and `ig run`.
    ///
    /// Checks the user name and password against the registry, then stores
    /// them in the credentials file (--authfile, docker's config.json format,
    /// mode 0600). Without --password or --password-stdin the password is
    /// asked for on the terminal.
    #[command(
        after_help = "Examples:\n  ig login ghcr.io -u myuser\n  echo \"$TOKEN\" | ig login ghcr.io -u myuser --password-stdin\n  ig login 127.0.0.1:5000 -u test --authfile ./auth.json"
    )]
    Login(LoginArgs),
    /// Forget the credentials stored for a registry.
    #[command(after_help = "Example:\n  ig logout ghcr.io")]
    Logout {
        /// The registry host (`ghcr.io`, `localhost:5000`).
        registry: String,
    },
    /// Print the version of ig and of the gadget author API it builds against.
    Version,
    /// List the containers on this host (docker, containerd, cri-o, podman,
    /// plain runc, systemd-nspawn), found from the cgroups of their
    /// processes and the runtimes' runc state files.
    ///
    /// Names, images and Kubernetes metadata (namespace, pod, container)
    /// come from the bundles' annotations (containerd, cri-o) and from
    /// docker's and podman's API when their socket is present. These are
    /// the names `ig run -c NAME` and `--k8s-podname POD` select. `-o json`
    /// shows every field. Read under HOST_ROOT when it is set.
    #[command(
        after_help = "Examples:\n  ig list-containers\n  ig list-containers -o json | jq -r '.[].runtime.containerName'\n  ig list-containers -o json | jq -r '.[] | select(.k8s.podName != \"\") | .k8s.podName'\n  ig list-containers --watch\n  ig list-containers --runtimes containerd --containerd-namespace k8s.io"
    )]
    ListContainers(ListContainersArgs),
    /// Print a shell completion script for ig's commands and flags.
    ///
    /// Gadget parameters are not completed: they depend on the image.
    #[command(
        after_help = "Examples:\n  ig completion bash > /etc/bash_completion.d/ig\n  ig completion zsh > \"${fpath[1]}/_ig\"\n  ig completion fish > ~/.config/fish/completions/ig.fish"
    )]
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print ig's manual page (roff), or a command's: `ig man image build`.
    ///
    /// The pages are generated from the same definitions as `--help`, so
    /// they say what this binary does. With --dir, every page is written
    /// there instead (ig.1, ig-run.1, ...), for packagers and for `man`
    /// to find them.
    #[command(
        after_help = "Examples:\n  ig man | man -l -\n  ig man run | man -l -\n  ig man --dir /usr/local/share/man/man1"
    )]
    Man {
        /// The command whose page to print (`run`, `image build`); none:
        /// ig's own page.
        #[arg(value_name = "COMMAND")]
        command: Vec<String>,
        /// Write every page into this directory (created if missing)
        /// instead of printing one.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
    /// Show the configuration: the defaults of every key, or what is in
    /// effect (the file and INSPEKTOR_GADGET_* variables).
    ///
    /// Keys are upstream's: `verbose`, `auto-mount-filesystems`, and
    /// `operator.oci.{authfile,insecure-registries,pull,verify-image,public-keys,allowed-gadgets}`,
    /// and ig's own `operator.oci.registry-timeout` (a duration: `30s`);
    /// `operator.otel-metrics.{otel-metrics-listen,otel-metrics-listen-address,otel-metrics-export-internals}`
    /// and, given to every run as its parameters unless set,
    /// `operator.otel-metrics.{otel-metrics-name,otel-metrics-print-interval}`;
    /// `operator.logs.{enabled,channel,filename,format,mode,max-size-mb,max-backups,max-age-days,compress}`
    /// (flags `--logs-*`). OTLP exporters are mappings under
    /// `operator.otel-metrics.exporters.NAME` and
    /// `operator.otel-logs.exporters.NAME` (`exporter: otlp-http`,
    /// `endpoint`, `headers`, `insecure`, `interval`, `temporality`).
    /// The two lists (`insecure-registries`, `allowed-gadgets`) and
    /// `public-keys` (each entry a key file or the PEM text) take a YAML
    /// list. An environment variable names a key in capitals with `.` and
    /// `-` as `_`, after `INSPEKTOR_GADGET_`
    /// (INSPEKTOR_GADGET_OPERATOR_OCI_PULL=never); list entries are
    /// comma-separated there. Flags win over variables, variables over the
    /// file.
    #[command(
        subcommand,
        after_help = "Examples:\n  mkdir -p ~/.ig && ig config default > ~/.ig/config.yaml\n  INSPEKTOR_GADGET_VERBOSE=true ig config view"
    )]
    Config(ConfigCommand),
    /// Serve gadget runs to clients over gRPC (upstream's API): gadgetctl,
    /// or any gRPC client of the `api` package (docs/daemon.md).
    ///
    /// Listens on a unix socket (root:GROUP, mode 0660) or a TCP address
    /// (mutual TLS, or --tls-insecure). Each client's run is a run of
    /// this process, stopped when the client stops it or goes away;
    /// SIGINT/SIGTERM stop every run, then the daemon. Needs root.
    #[command(
        after_help = "Examples:\n  ig daemon -G ig\n  ig daemon -H tcp://10.0.0.1:9999 --tls-key-file server.key --tls-cert-file server.crt --tls-client-ca-file ca.crt\n  gadgetctl --remote-address unix:///var/run/ig/ig.socket run trace_exec"
    )]
    Daemon(super::daemon::DaemonArgs),
}

/// `ig config` subcommands.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum ConfigCommand {
    /// Print every configuration key with its default value, as YAML: a
    /// starting point for ~/.ig/config.yaml.
    Default,
    /// Print the configuration in effect: the file, with INSPEKTOR_GADGET_*
    /// variables applied, as YAML.
    View,
}

/// How `ig` reaches registries; global, so they can follow any command.
#[derive(Debug, Clone, Default, Args)]
pub struct RegistryArgs {
    /// Credentials file (docker's config.json format) written by `ig login`
    /// and read by push, pull and run [default: /var/lib/ig/config.json;
    /// for a registry it has nothing for, push and pull also read docker's
    /// config.json ($DOCKER_CONFIG, else ~/.docker), which `ig logout`
    /// names but never edits]. A credential helper a file names
    /// (credHelpers, credsStore) is run: docker-credential-NAME get.
    #[arg(long, global = true, env = "REGISTRY_AUTH_FILE", value_name = "FILE")]
    pub authfile: Option<PathBuf>,

    /// Registries reached over plain HTTP instead of HTTPS, comma-separated
    /// `host[:port]`. localhost and 127.0.0.1 always are.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        value_name = "HOST[:PORT],..."
    )]
    pub insecure_registries: Vec<String>,

    /// How long a registry may keep ig waiting before a pull (`ig run`'s
    /// too), push or login gives up [default: 30s].
    ///
    /// It bounds connecting, the wait for an answer, and each gap between
    /// two pieces of a download, never a whole download: a large pull on a
    /// slow link goes on while bytes keep coming. The error names the
    /// registry and what it did. `90s`, `2m`, `500ms`; a bare number is
    /// seconds; 0 waits for ever. Config key:
    /// `operator.oci.registry-timeout`.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_registry_timeout)]
    pub registry_timeout: Option<RegistryTimeout>,
}

/// A parsed `--registry-timeout`: `None` inside for 0 (no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryTimeout(pub Option<Duration>);

/// `--registry-timeout`: a duration with a unit, or a bare number of
/// seconds; 0 is no limit.
pub fn parse_registry_timeout(s: &str) -> Result<RegistryTimeout, String> {
    let d = parse_seconds_or_duration(s)?;
    Ok(RegistryTimeout((!d.is_zero()).then_some(d)))
}

/// A timeout as upstream's `--timeout` takes it, a bare number of seconds
/// (`10`), or a duration with a unit (`500ms`, `3s`, `1m30s`, `2h`).
pub fn parse_seconds_or_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{s:?} is too many seconds"));
    }
    ig::params::parse_duration(t).map_err(|e| match e {
        ig::params::DurationError::NoUnit => format!(
            "{s:?} is not a number of seconds; give a whole number (10) or a unit (500ms, 1.5s)"
        ),
        ig::params::DurationError::Invalid(why) => format!("invalid duration {s:?}: {why}"),
    })
}

/// `--flush-interval` and other durations of ig's own: a unit is needed
/// (`0` alone is zero).
fn parse_interval(s: &str) -> Result<Duration, String> {
    ig::params::parse_duration(s).map_err(|e| match e {
        ig::params::DurationError::NoUnit => format!(
            "{s:?} has no unit: write {t}s for seconds or {t}ms for milliseconds",
            t = s.trim()
        ),
        ig::params::DurationError::Invalid(why) => format!("invalid duration {s:?}: {why}"),
    })
}

#[derive(Debug, Args)]
pub struct ListContainersArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value = "columns")]
    pub output: super::containers::ContainersFormat,
    /// Keep running and print containers as they start and stop.
    #[arg(short, long)]
    pub watch: bool,
    #[command(flatten)]
    pub sources: super::containers::SourceArgs,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry host (`ghcr.io`, `localhost:5000`).
    pub registry: String,
    /// User name (asked for on the terminal if missing).
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password. Visible to other users in the process list: prefer
    /// --password-stdin or the prompt.
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// When `ig run` downloads the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull every time, so a moved tag is followed.
    Always,
    /// Pull only images missing from the local store.
    #[default]
    Missing,
    /// Never use the network: the image must be in the store.
    Never,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The gadget image: a name (`trace_exec`), a full reference
    /// (`ghcr.io/inspektor-gadget/gadget/trace_exec:latest`) or a digest.
    /// The gadget's own parameters (see `ig run IMAGE --help`) follow it.
    #[arg(required_unless_present = "file")]
    pub image: Option<String>,

    /// Run the gadget instances of a manifest (instance specs, several
    /// YAML documents) instead of IMAGE: a file, an http(s) URL, or - for
    /// standard input.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE|URL|-",
        conflicts_with = "image"
    )]
    pub file: Option<String>,

    /// Output mode: columns, json, jsonpretty, yaml, pcap-ng or none
    /// (nothing on stdout; the run and its exit code are unchanged), for
    /// every data source; or per data source, `ds:MODE,ds2:MODE` (the
    /// others keep their default; the two forms do not mix). Without -o,
    /// each data source is printed in its `cli.default-output-mode`
    /// (columns unless the gadget says otherwise; the `containers` data
    /// source: none). A data source annotated `cli.supported-output-modes`
    /// refuses other modes. `ig image inspect IMAGE --show-datasources`
    /// lists the data sources.
    #[arg(short, long, value_name = "MODE|DS:MODE,...", value_parser = |s: &str| ig::output::OutputSpec::parse(s).map_err(|e| e.to_string()))]
    pub output: Option<ig::output::OutputSpec>,

    /// Annotate a data source (`ds:KEY=VALUE`) or one of its fields
    /// (`ds.field:KEY=VALUE`, `exec.proc.comm`) as if gadget.yaml said so:
    /// `--annotate exec.args:columns.hidden=true`,
    /// `--annotate exec:metrics.collect=true`. Comma-separated, and
    /// repeatable. The value may hold `:` and `=`; a comma inside a value
    /// is written `\,` (and a backslash `\\`), so quote it for the shell:
    /// `--annotate 'blockio.latency:metrics.boundaries=1\,10\,100'`.
    /// Subjects are checked against the run's data sources and fields
    /// after every operator added its own (`proc.creds.user`, `k8s.*`):
    /// an unknown one is an error that lists them. In `ig run -f`, an
    /// instance's `operator.oci.annotate` replaces these.
    #[arg(long, value_name = "SUBJECT:KEY=VALUE,...", value_parser = parse_annotations)]
    pub annotate: Vec<Annotations>,

    /// Fields to print: `a,b` exactly these (full names like proc.comm, or
    /// column names); `+a,-b` added to or removed from the defaults; per
    /// data source `ds:a,b;ds2:+c`.
    #[arg(long, value_name = "FIELDS", value_parser = |s: &str| ig::output::FieldsSpec::parse(s).map_err(|e| e.to_string()))]
    pub fields: Option<ig::output::FieldsSpec>,

    /// Stop after this long: a number of seconds (`10`, as upstream), or a
    /// duration with a unit (`500ms`, `3s`, `1m30s`, `2h`). 0, or no
    /// --timeout, runs until Ctrl-C.
    #[arg(short, long, value_name = "DURATION", value_parser = parse_seconds_or_duration)]
    pub timeout: Option<Duration>,

    /// Longest an event waits before it is printed. The kernel wakes ig only
    /// when a ring buffer is a quarter full; otherwise ig reads it on this
    /// timer. `0` wakes ig on every event (lowest latency, highest overhead).
    /// A unit is needed: `50ms`, `1s`.
    #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = parse_interval)]
    pub flush_interval: Duration,

    /// Size of each ring buffer in bytes (a power of two, at least 4096).
    /// Default: what the gadget declares, but at least 8 MiB, so that a burst
    /// of events fits while ig sleeps between wake-ups. Bytes, or with a
    /// binary unit: 512K, 8M, 1G.
    #[arg(long, value_name = "BYTES", value_parser = parse_ringbuf_size)]
    pub ringbuf_size: Option<u32>,

    /// How ig's reading thread is scheduled. `realtime` (the default):
    /// SCHED_RR at the lowest real-time priority, so that on a host whose
    /// cores are all busy the reader gets a core as soon as events are
    /// pending instead of waiting while the ring buffer fills and the kernel
    /// drops events. It sleeps whenever nothing is pending; a reader that
    /// cannot keep up even so (it used most of a core for a quarter of a
    /// second) goes back to its started priority for a second at a time,
    /// so it holds a core against the rest of the host for no more than
    /// that quarter of a second. Without the
    /// kernel's real-time throttling (kernel.sched_rt_runtime_us = -1) or
    /// root/CAP_SYS_NICE, or when ig was started real-time (chrt), the
    /// priority stays as started. `inherit`: the priority ig was started
    /// with (e.g. under `nice`). The log writer thread is scheduled the
    /// same. Lost events are reported either way.
    #[arg(long, value_enum, default_value = "realtime", value_name = "POLICY")]
    pub reader_priority: ReaderPriorityArg,

    /// When to download the image from its registry.
    #[arg(long, value_enum, default_value = "missing", value_name = "WHEN")]
    pub pull: PullPolicy,

    /// Check the image's cosign signature before loading anything
    /// (`--verify-image=false` to skip). Default: on for images pulled or
    /// imported, off for images built on this machine.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub verify_image: Option<bool>,

    /// Public keys (PEM `PUBLIC KEY`, such as cosign.pub) to verify with: a
    /// file, which may hold several keys, or the PEM text itself. Repeat for
    /// more; a signature by any of them is accepted. Default: upstream
    /// Inspektor Gadget's built-in key (so its images verify with no
    /// flag); keys given replace it, as upstream's flag does.
    #[arg(long, value_name = "FILE|PEM", allow_hyphen_values = true)]
    pub public_keys: Vec<String>,

    /// Run only these images, comma-separated: a digest (`sha256:…`), a
    /// name (`trace_exec`: any tag; `trace_exec:v1`: that tag) or a prefix
    /// ending in `*` (`ghcr.io/myorg/*`). Checked before loading.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub allowed_gadgets: Vec<String>,

    /// Serve the metrics of data sources annotated `metrics.collect`
    /// (Prometheus text format, `GET /metrics`) on
    /// --otel-metrics-listen-address while the gadget runs. Name them with
    /// --otel-metrics-name ds:name (the label otel_scope_name).
    #[arg(long, help_heading = "OpenTelemetry Metrics")]
    pub otel_metrics_listen: bool,

    /// Address and port of the metrics listener. The default, 0.0.0.0,
    /// listens on EVERY interface of the host: anyone who can reach it can
    /// read the metrics; give 127.0.0.1:2224 to keep them on this machine.
    #[arg(
        long,
        value_name = "ADDRESS:PORT",
        default_value = "0.0.0.0:2224",
        help_heading = "OpenTelemetry Metrics"
    )]
    pub otel_metrics_listen_address: String,

    /// Also serve (--otel-metrics-listen) and push
    /// (--otel-metrics-exporter, scope inspektor-gadget) ig's own
    /// metrics: ig_gadgets_running, ig_events_total{datasource} (events
    /// each data source emitted), ig_lost_events_total{datasource}
    /// (dropped in the kernel), ig_output_dropped_total (dropped at the
    /// output) and ig_otlp_dropped_total{signal} (dropped by an OTLP
    /// exporter). Needs one of those two flags.
    #[arg(long, help_heading = "OpenTelemetry Metrics")]
    pub otel_metrics_export_internals: bool,

    /// Push the metrics of data sources annotated `metrics.collect` to
    /// the OTLP exporter NAME of the config file
    /// (`operator.otel-metrics.exporters.NAME: {exporter: otlp-http,
    /// endpoint: http://127.0.0.1:4318, headers: {…}, insecure, interval:
    /// 60s, temporality: cumulative|delta}`), every interval and once more
    /// at the stop.
    #[arg(long, value_name = "NAME", help_heading = "OpenTelemetry Metrics")]
    pub otel_metrics_exporter: Option<String>,

    /// Push every event as an OTLP log record to the exporter NAME of the
    /// config file (`operator.otel-logs.exporters.NAME`, as for metrics;
    /// interval: the longest a record waits, 1s by default):
    /// `NAME` for every data source, or `ds:NAME[,ds2:NAME2]`.
    #[arg(long, value_name = "[DS:]NAME", help_heading = "OpenTelemetry Logs")]
    pub otel_logs_exporter: Option<String>,

    #[command(flatten)]
    pub logs: Box<LogsArgs>,
}

/// The logs operator's flags (`operator.logs.*` in the config file).
#[derive(Args, Clone, Debug)]
pub struct LogsArgs {
    /// Write every event as a line to --logs-channel (config:
    /// operator.logs.enabled), as upstream's logs operator: JSON
    /// `{"type":"gadget-data","seq":N,"gadget":…,"datasource":…,
    /// "timestamp":…,"data":{…}}` or logfmt. Written by a thread of its
    /// own: a writer that cannot keep up costs dropped lines, counted and
    /// reported, never a slower run.
    #[arg(long = "logs-enabled", help_heading = "Logs")]
    pub enabled: bool,

    /// stdout, stderr or file (config: operator.logs.channel).
    #[arg(
        long = "logs-channel",
        value_name = "CHANNEL",
        default_value = "stderr",
        help_heading = "Logs"
    )]
    pub channel: String,

    /// The log file of the file channel (config: operator.logs.filename).
    /// It is rotated by size; SIGHUP closes and reopens it by its name
    /// (after `logrotate` moved it away).
    #[arg(long = "logs-filename", value_name = "FILE", help_heading = "Logs")]
    pub filename: Option<String>,

    /// json or logfmt (config: operator.logs.format).
    #[arg(
        long = "logs-format",
        value_name = "FORMAT",
        default_value = "json",
        help_heading = "Logs"
    )]
    pub format: String,

    /// all, or detached: only runs detached from their client, which `ig
    /// run` never is (config: operator.logs.mode).
    #[arg(
        long = "logs-mode",
        value_name = "MODE",
        default_value = "all",
        help_heading = "Logs"
    )]
    pub mode: String,

    /// Rotate the log file before it passes this size (config:
    /// operator.logs.max-size-mb).
    #[arg(
        long = "logs-max-size-mb",
        value_name = "MiB",
        default_value = "100",
        help_heading = "Logs"
    )]
    pub max_size_mb: String,

    /// Rotated files kept, the oldest removed first; 0 keeps all (config:
    /// operator.logs.max-backups).
    #[arg(
        long = "logs-max-backups",
        value_name = "N",
        default_value = "3",
        help_heading = "Logs"
    )]
    pub max_backups: String,

    /// Remove rotated files older than this; 0 keeps them (config:
    /// operator.logs.max-age-days).
    #[arg(
        long = "logs-max-age-days",
        value_name = "DAYS",
        default_value = "0",
        help_heading = "Logs"
    )]
    pub max_age_days: String,

    /// Gzip rotated files (config: operator.logs.compress).
    #[arg(long = "logs-compress", help_heading = "Logs")]
    pub compress: bool,
}

/// One `--annotate` value: its entries.
#[derive(Clone, Debug)]
pub struct Annotations(pub Vec<ig::run::Annotation>);

fn parse_annotations(s: &str) -> Result<Annotations, String> {
    ig::run::Annotation::parse_list(s)
        .map(Annotations)
        .map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Compile a gadget directory into an image in the local store.
    ///
    /// DIR holds program.bpf.c and gadget.yaml (and optionally build.yaml with
    /// `ebpfsource`, `metadata` and `cflags`). Needs clang, llvm-strip and
    /// the libbpf headers: the newest clang on PATH is used (clang-19 over
    /// Debian bookworm's clang 14), or IG_CLANG and IG_LLVM_STRIP; `ig -v`
    /// says which. The author headers are built into ig, and vmlinux.h is
    /// generated from the running kernel's BTF. Without
    /// program.bpf.c, the gadget is made of the operators its gadget.yaml
    /// turns on (the image has no eBPF layer). gadget.yaml is checked as
    /// `ig run` will read it: operator names, custom parameters and their
    /// patch templates, paramDefaults.
    ///
    /// build.yaml's `wasm` adds a WASM guest: a prebuilt module (`x.wasm`)
    /// or its source, built here: C (`guest.c`, clang and wasi-libc), Rust
    /// (the crate's `rust/src/lib.rs`: cargo for wasm32-wasip1) or Go
    /// (`go/program.go`: the Go its go.mod asks for, 1.24 at least).
    /// See docs/wasm.md.
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
    #[command(
        after_help = "Examples:\n  ig image list\n  ig image list -o json | jq -r '.[] | select(.Tag == \"latest\") | .Repository'"
    )]
    List {
        /// Show full digests and repositories.
        #[arg(long)]
        no_trunc: bool,
        /// Output format: a table, or the list as JSON (upstream's keys:
        /// Repository, Tag, Digest, Created; full values) on one line or
        /// indented.
        #[arg(short, long, value_enum, default_value_t = ListFormat::Columns)]
        output: ListFormat,
    },
    /// Remove images from the local store.
    ///
    /// Blobs no remaining image uses are deleted with them. If the
    /// manifest of a remaining image cannot be read, which blobs it uses
    /// is unknown: nothing is removed, and the error names that image.
    #[command(visible_alias = "rm")]
    Remove {
        #[arg(required = true, value_name = "REF")]
        images: Vec<String>,
    },
    /// Give an image in the local store another name.
    Tag { source: String, target: String },
    /// Download an image from its registry into the store.
    ///
    /// The registry is the first part of the reference; a bare name means
    /// ghcr.io/inspektor-gadget/gadget/NAME. The image index is stored
    /// whole (its digest, which signatures cover, stays the registry's),
    /// but only this machine's platform is downloaded unless
    /// --all-platforms is given. Every blob is checked against its digest
    /// as it streams in; the store changes only once the whole image is in.
    #[command(
        after_help = "Examples:\n  ig image pull trace_exec:v0.40.0\n  ig image pull localhost:5000/mygadget:v1\n  ig image pull --all-platforms trace_exec:v0.40.0   # to push or export it again\n  ig image pull --insecure-registries reg.lan:5000 reg.lan:5000/team/gadget:v1"
    )]
    Pull {
        /// The image reference.
        image: String,
        /// Download every platform of the image index, not only this
        /// machine's: needed to push or export the image again.
        #[arg(long)]
        all_platforms: bool,
    },
    /// Upload an image from the store to its registry.
    ///
    /// Tag the image with the registry's name first (`ig image tag`).
    /// Credentials come from `ig login`.
    #[command(
        after_help = "Examples:\n  ig image tag mygadget localhost:5000/mygadget:v1\n  ig image push localhost:5000/mygadget:v1"
    )]
    Push {
        /// The image reference, naming the registry to push to.
        image: String,
    },
    /// Sign an image of the store with cosign's format.
    ///
    /// Writes the signature into the store, by default as cosign's
    /// signature image (tag `sha256-<digest>.sig` in the image's
    /// repository), or as an OCI 1.1 referrer (--form); `ig image push`
    /// sends it with the image and `cosign verify --key` accepts it. KEY is an ECDSA P-256 private
    /// key in PEM (`openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256`); its public key (`openssl pkey -pubout`) is
    /// what `ig run --public-keys` needs. A key from `cosign
    /// generate-key-pair` (cosign.key) works too, with its password in
    /// COSIGN_PASSWORD.
    #[command(
        after_help = "Examples:\n  ig image sign mygadget --key key.pem\n  ig image push localhost:5000/mygadget:v1\n  ig run localhost:5000/mygadget:v1 --public-keys key.pub"
    )]
    Sign {
        /// The image reference or digest prefix.
        image: String,
        /// The private key (PEM: `PRIVATE KEY`, `EC PRIVATE KEY`, or
        /// cosign's `ENCRYPTED SIGSTORE PRIVATE KEY`).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// How the signature is stored. `tag`: cosign's default, the tag
        /// `sha256-<digest>.sig` (what upstream signs its images with).
        /// `referrer`: an OCI 1.1 referrer of the image (`cosign sign
        /// --registry-referrers-mode=oci-1-1`). `bundle`: an OCI 1.1
        /// referrer holding a sigstore bundle (`cosign sign
        /// --new-bundle-format`, without a transparency-log entry).
        /// `ig run` and upstream `ig` read all three.
        #[arg(long, value_enum, default_value = "tag", value_name = "FORM")]
        form: SignForm,
    },
    /// Check an image's signature in the local store, offline, as `ig run`
    /// would (every signature the store holds for the image, in every
    /// form), and say which key and which signature verified. Exits
    /// non-zero when none does.
    ///
    /// Without --public-keys, the key is upstream Inspektor Gadget's
    /// built-in key, as for `ig run`. Signatures of a pulled image come
    /// with it (`ig image pull`, or the pull of `ig run`).
    #[command(after_help = "Examples:
  ig image verify trace_exec
  ig image verify localhost:5000/mygadget:v1 --public-keys key.pub")]
    Verify {
        /// The image reference or digest prefix.
        image: String,
        /// Public keys (PEM `PUBLIC KEY`, such as cosign.pub): a file,
        /// which may hold several keys, or the PEM text itself. Repeat for
        /// more; a signature by any of them is accepted. Default: upstream
        /// Inspektor Gadget's built-in key; keys given replace it.
        #[arg(long, value_name = "FILE|PEM", allow_hyphen_values = true)]
        public_keys: Vec<String>,
    },
    /// Show an image's manifest, annotations and, with --show-datasources,
    /// the data sources and fields its eBPF object produces.
    #[command(
        after_help = "Examples:\n  ig image inspect trace_exec\n  ig image inspect trace_exec --show-datasources\n  ig image inspect trace_exec -o json | jq '.annotations'"
    )]
    Inspect {
        /// The image reference or digest prefix.
        image: String,
        /// Output format [default: a readable summary].
        #[arg(short, long, value_enum)]
        output: Option<InspectFormat>,
        /// Also read the eBPF object and list its data sources and fields.
        #[arg(long)]
        show_datasources: bool,
    },
    /// Write images to a tar file of an OCI image layout.
    ///
    /// The tar is what `skopeo copy ... oci-archive:FILE` reads and writes;
    /// each image is named in it by its full reference.
    ///
    /// A regular FILE is replaced only once the tar is complete. A device,
    /// a FIFO or `-` (stdout) receives the tar as a stream and is never
    /// replaced; a directory, a socket or a terminal is refused.
    #[command(
        after_help = "Examples:\n  ig image export trace_exec trace_open gadgets.tar\n  ig image export trace_exec - | ssh host ig image import /dev/stdin\n  skopeo copy --all oci-archive:gadgets.tar:ghcr.io/inspektor-gadget/gadget/trace_exec:latest docker://reg.lan/trace_exec:latest"
    )]
    Export {
        /// The images (references or digest prefixes).
        #[arg(required = true, num_args = 1.., value_name = "IMAGE")]
        images: Vec<String>,
        /// The tar file to write, or - for stdout.
        #[arg(required = true, value_name = "FILE")]
        file: PathBuf,
    },
    /// Add every named image of an OCI layout tar to the store.
    ///
    /// All blobs are checked before the store changes; either every image
    /// of the archive is added or none is.
    #[command(after_help = "Example:\n  ig image import gadgets.tar")]
    Import {
        /// The tar file (from `ig image export` or `skopeo copy ...
        /// oci-archive:FILE`).
        file: PathBuf,
    },
    /// Clean the store: remove temp files left by interrupted writes
    /// (a killed build, pull or import) and blobs no image uses any more;
    /// also the build directories of killed builds in `TMPDIR`.
    ///
    /// Images themselves are never touched; prints what was removed. If an
    /// image's manifest (or the store's index.json) cannot be read, which
    /// blobs are in use is unknown: nothing is removed, and the error
    /// names the file.
    #[command(after_help = "Example:\n  ig image prune")]
    Prune,
}

/// Output formats of `ig image list` (upstream's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    /// A table.
    Columns,
    /// One JSON array on one line.
    Json,
    /// The same array, indented.
    Jsonpretty,
}

/// Output formats of `ig image inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InspectFormat {
    /// One JSON document.
    Json,
    /// The same document as YAML.
    Yaml,
    /// Tables: the layers, or with --show-datasources the fields.
    Columns,
}

/// `--reader-priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReaderPriorityArg {
    /// SCHED_RR priority 1 when allowed.
    Realtime,
    /// As started.
    Inherit,
}

impl From<ReaderPriorityArg> for ig::run::ReaderPriority {
    fn from(a: ReaderPriorityArg) -> Self {
        match a {
            ReaderPriorityArg::Realtime => Self::Realtime,
            ReaderPriorityArg::Inherit => Self::Inherit,
        }
    }
}

/// `--ringbuf-size`: a power of two that fits the kernel's u32, from a
/// page up. Every refusal says the range.
fn parse_ringbuf_size(s: &str) -> Result<u32, String> {
    const RANGE: &str = "a power of two from 4096 to 2147483648 (4K to 2G)";
    // Sizes as IG_MAX_LAYER_SIZE takes them (8M, 512K, 1G), and with
    // "iB" too (8MiB), since these are powers of two.
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix("ib"))
        .filter(|r| r.ends_with(|c: char| "kKmMgG".contains(c)))
        .unwrap_or(t);
    let n = ig::image::limits::parse_size(t)
        .ok_or_else(|| format!("{s:?} is not a number of bytes: give {RANGE}"))?;
    match u32::try_from(n) {
        Ok(n) if n >= 4096 && n.is_power_of_two() => Ok(n),
        Ok(_) => Err(format!("{s} is not {RANGE}")),
        Err(_) => Err(format!("{s} is too large: give {RANGE}")),
    }
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
    fn registry_timeouts_are_seconds_unless_a_unit_says_otherwise() {
        let t = |s| parse_registry_timeout(s).map(|t| t.0);
        assert_eq!(t("45"), Ok(Some(Duration::from_secs(45))));
        assert_eq!(t("90s"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(t("2m"), Ok(Some(Duration::from_secs(120))));
        assert_eq!(t("500ms"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(t("0"), Ok(None));
        assert_eq!(t("0s"), Ok(None));
        assert_eq!(t("1h"), Ok(Some(Duration::from_secs(3600))));
        for bad in ["", "soon", "-1", "1.5", "99999999999999999999"] {
            assert!(t(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn intervals_need_a_unit() {
        assert_eq!(parse_interval("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_interval("0"), Ok(Duration::ZERO));
        assert!(parse_interval("5").unwrap_err().contains("no unit"));
    }

    #[test]
    fn ringbuf_sizes() {
        assert_eq!(parse_ringbuf_size("262144"), Ok(262_144));
        assert!(parse_ringbuf_size("1000").is_err());
        assert!(parse_ringbuf_size("2048").is_err());
        assert!(parse_ringbuf_size("x").is_err());
        assert_eq!(parse_ringbuf_size("2147483648"), Ok(1 << 31));
        assert_eq!(parse_ringbuf_size("8M"), Ok(8 << 20));
        assert_eq!(parse_ringbuf_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_ringbuf_size("512k"), Ok(512 << 10));
        assert_eq!(parse_ringbuf_size("2G"), Ok(1 << 31));
        assert!(parse_ringbuf_size("4G").unwrap_err().contains("too large"));
        assert!(parse_ringbuf_size("3M").is_err());
        assert!(parse_ringbuf_size("M").is_err());
        assert!(parse_ringbuf_size("8MB").is_err());
        // Beyond u32 and u64: the range, not "not a number".
        for big in ["4294967296", "99999999999999999999"] {
            let e = parse_ringbuf_size(big).unwrap_err();
            assert!(e.contains("from 4096 to 2147483648"), "{e}");
        }
        assert!(
            parse_ringbuf_size("4294967296")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_ringbuf_size("1000")
                .unwrap_err()
                .contains("is not a power of two from 4096")
        );
    }
}

/// `ig image sign --form`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignForm {
    /// cosign's tag `sha256-<digest>.sig`.
    Tag,
    /// An OCI 1.1 referrer (cosign simple signing).
    Referrer,
    /// An OCI 1.1 referrer holding a sigstore bundle (DSSE).
    Bundle,
}
