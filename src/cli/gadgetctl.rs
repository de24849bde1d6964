//! `gadgetctl`: the client of `ig daemon` (upstream's tool of that
//! name): global flags before the subcommand, `run IMAGE` with the
//! gadget's parameters as flags (from `GetGadgetInfo`), `image inspect`,
//! `version`. No privileges and no store: the daemon runs the gadget.
//!
//! The events arrive as upstream's payloads and are decoded against the
//! run's layout (`ig_api::wire`) into a local chain of ig's own
//! operators, run by ig's event loop: filters, sort and limit
//! (`operator.filter.*`, `operator.sort.*`, `operator.limiter.*` are
//! applied here, every other parameter goes to the daemon) and the
//! printers, so output is what `ig run` prints. The gRPC stream is read
//! by a tokio task that hands each data message, undecoded, to the
//! loop's source through a queue and an eventfd; the loop reads its
//! events in place into one reused `Event` per data source. gadgetctl
//! asks the daemon for batches (`batch_events`: one message per batch of
//! events) and takes upstream's one message per event as well.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{ArgAction, FromArgMatches as _, Parser, Subcommand};
use ig::datasource::Event;
use ig::params::{ParamSpec, ParamValues};
use ig::pipeline::{
    Dispatch, Instance, Operator, OperatorError, Pipeline, Priority, Setup, Source, SourceId,
    priority,
};
use ig::run::StopHandle;
use ig_api::grpc::built_in_gadget_manager_client::BuiltInGadgetManagerClient;
use ig_api::grpc::gadget_manager_client::GadgetManagerClient;
use ig_api::proto::{
    self, GadgetControlRequest, GadgetData, GadgetRunRequest, GetGadgetInfoRequest, InfoRequest,
    gadget_control_request,
};
use ig_api::wire::{self, Decoder, ElementScratch, WireError};

use ig_api::{API_VERSION, INFO_VERSION, event_type, log_level};
use prost::Message as _;

use super::remote::{ClientTls, DEFAULT_ADDRESS};

/// The client of `ig daemon`.
#[derive(Debug, Parser)]
#[command(name = "gadgetctl", version, max_term_width = 100)]
pub struct Cli {
    /// The daemon: unix:///PATH or tcp://IP:PORT. Several,
    /// comma-separated, run the command on each (a fan-out): events carry
    /// a `node` field, arrays of snapshotters and toppers are combined
    /// across nodes before sort and limit, a node that fails is named on
    /// stderr while the others go on, and the exit code is 0 only when
    /// every node succeeded.
    #[arg(long, default_value = DEFAULT_ADDRESS, value_name = "ADDRESS[,ADDRESS...]")]
    pub remote_address: String,

    /// Seconds to wait for the daemon to answer.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub connection_timeout: u64,

    /// This client's TLS key (PEM), for a daemon that requires mutual TLS.
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert_file", "tls_server_ca_file"])]
    pub tls_key_file: Option<PathBuf>,

    /// This client's TLS certificate (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["tls_key_file", "tls_server_ca_file"])]
    pub tls_cert_file: Option<PathBuf>,

    /// The CA (PEM) that signed the daemon's certificate.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key_file", "tls_cert_file"])]
    pub tls_server_ca_file: Option<PathBuf>,

    /// The name the daemon's certificate must carry [default: the
    /// address's IP].
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,

    /// Show debug messages on stderr.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a gadget on the daemon and print its events here.
    ///
    /// The gadget's parameters are flags (`gadgetctl run IMAGE --help`
    /// lists them, as the daemon describes them). Filters, sort and
    /// limit apply here; Ctrl-C stops the run.
    #[command(
        after_help = "Examples:\n  gadgetctl run trace_exec\n  gadgetctl --remote-address tcp://10.0.0.1:9999 --tls-key-file c.key --tls-cert-file c.crt --tls-server-ca-file ca.crt run trace_exec -o json\n  gadgetctl run trace_open -F proc.comm==cat --timeout 10"
    )]
    Run(RunArgs),
    /// List the daemon's headless gadget instances.
    #[command(visible_aliases = ["ls", "ps"])]
    List {
        /// Print one JSON object a line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Details of a headless instance (YAML), with its state on each node.
    Show {
        /// The instance: its id, its name, or the start of its id.
        instance: String,
    },
    /// Stop and remove headless instances (their files too).
    #[command(visible_aliases = ["del", "rm"])]
    Delete {
        /// The instances: ids, names, or starts of ids.
        #[arg(required = true)]
        instances: Vec<String>,
    },
    /// Print the events of a headless instance: the last ones it kept
    /// (up to 1024), then live ones, until Ctrl-C (the instance runs on).
    #[command(
        after_help = "Examples:\n  gadgetctl run trace_exec --detach --name execs\n  gadgetctl attach execs -o json"
    )]
    Attach(AttachArgs),
    /// What the daemon knows of an image: parameters and data sources.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Print the version of gadgetctl and of the daemon.
    Version,
    /// Print a shell completion script for gadgetctl's commands and flags.
    ///
    /// A gadget's own parameters are not completed: the daemon describes
    /// them per image.
    #[command(
        after_help = "Examples:\n  gadgetctl completion bash > /etc/bash_completion.d/gadgetctl\n  gadgetctl completion zsh > \"${fpath[1]}/_gadgetctl\""
    )]
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print gadgetctl's manual page (roff), or a command's: `gadgetctl
    /// man run`; with --dir, write every page there.
    #[command(
        after_help = "Examples:\n  gadgetctl man run | man -l -\n  gadgetctl man --dir /usr/local/share/man/man1"
    )]
    Man {
        /// The command whose page to print (`run`, `image inspect`); none:
        /// gadgetctl's own page.
        #[arg(value_name = "COMMAND")]
        command: Vec<String>,
        /// Write every page into this directory (created if missing)
        /// instead of printing one.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
}

/// gadgetctl's command as its man pages and completion scripts show it:
/// `run` with the client-side operators' flags (filters, sort, limit); a
/// gadget's own parameters depend on the image and the daemon.
pub fn command() -> clap::Command {
    let specs: Vec<ParamSpec> = client_operators().iter().flat_map(|o| o.params()).collect();
    let cmd = <Cli as clap::CommandFactory>::command();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    let mut cmd = cmd.mut_subcommand("run", |c| super::gadget_args::augment(c, &specs));
    // `mut_subcommand` moves the command it changes to the end; touching
    // each in its declared order puts them back.
    for n in names {
        cmd = cmd.mut_subcommand(n, |c| c);
    }
    let mut cmd = super::reference::stable(cmd);
    cmd.build();
    cmd
}

/// ig's operators `gadgetctl run` applies on this side.
fn client_operators() -> Vec<Box<dyn Operator>> {
    ig::operators::catalog()
        .into_iter()
        .filter(|o| matches!(o.name(), "filter" | "sort" | "limiter"))
        .collect()
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// The image's GadgetInfo as the daemon describes it, as JSON.
    Inspect {
        /// The image.
        image: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// The instance: its id, its name, or the start of its id.
    pub instance: String,
    /// Output mode, as `run -o` (default: the instance's own
    /// `operator.cli.output`, else columns).
    #[arg(short, long, value_name = "MODE|DS:MODE,...", value_parser = |s: &str| ig::output::OutputSpec::parse(s).map_err(|e| e.to_string()))]
    pub output: Option<ig::output::OutputSpec>,
    /// Fields to print (as `ig run --fields`; default: the instance's own
    /// `operator.cli.fields`, else the gadget's).
    #[arg(long, value_name = "FIELDS", value_parser = |s: &str| ig::output::FieldsSpec::parse(s).map_err(|e| e.to_string()))]
    pub fields: Option<ig::output::FieldsSpec>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The image (in the daemon's store, or pulled by it).
    #[arg(required_unless_present = "file")]
    pub image: Option<String>,
    /// Create the instances of a manifest (upstream's instance specs, as
    /// `ig run -f` reads them; a file or - for stdin) as headless
    /// instances of the daemon, and print their ids.
    #[arg(short = 'f', long, value_name = "FILE|-", conflicts_with_all = ["image", "detach"])]
    pub file: Option<String>,
    /// Run the gadget as a headless instance of the daemon: it keeps
    /// running without this client, and again after the daemon
    /// restarts. Prints its id; `gadgetctl attach`, `list`, `delete`.
    #[arg(short, long)]
    pub detach: bool,
    /// The instance's name (with --detach): 1 to 32 of a-z, 0-9, -, _.
    #[arg(long, value_name = "NAME", requires = "detach")]
    pub name: Option<String>,
    /// The instance's tags (with --detach), comma-separated.
    #[arg(
        long,
        value_name = "TAG,...",
        value_delimiter = ',',
        requires = "detach"
    )]
    pub tags: Vec<String>,
    /// The instance's id (with --detach): 32 lowercase hex digits
    /// [default: random].
    #[arg(long, value_name = "ID", requires = "detach")]
    pub id: Option<String>,
    /// Output mode, as `ig run -o`: columns, json, jsonpretty, yaml or
    /// none for every data source, or `ds:MODE,ds2:MODE` per data source.
    /// Without -o, each data source in its `cli.default-output-mode`.
    #[arg(short, long, value_name = "MODE|DS:MODE,...", value_parser = |s: &str| ig::output::OutputSpec::parse(s).map_err(|e| e.to_string()))]
    pub output: Option<ig::output::OutputSpec>,
    /// Fields to print (as `ig run --fields`).
    #[arg(long, value_name = "FIELDS", value_parser = |s: &str| ig::output::FieldsSpec::parse(s).map_err(|e| e.to_string()))]
    pub fields: Option<ig::output::FieldsSpec>,
    /// Stop after this long: a number of seconds (`10`, as upstream), or
    /// a duration with a unit (`500ms`, `3s`, `1m30s`, `2h`), as `ig run
    /// --timeout`. 0, or no --timeout, runs until Ctrl-C.
    #[arg(long, value_name = "DURATION", value_parser = super::args::parse_seconds_or_duration)]
    pub timeout: Option<Duration>,
}

/// Parameters applied on this side: the chain's filters, sort, limit.
fn is_client_param(full_name: &str) -> bool {
    ["operator.filter.", "operator.sort.", "operator.limiter."]
        .iter()
        .any(|p| full_name.starts_with(p))
}

/// The image of `gadgetctl [GLOBALS] run IMAGE`, read before clap (its
/// flags depend on it).
fn prescan(argv: &[OsString]) -> Option<(Cli, String)> {
    let args: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let run = args.iter().position(|a| a == "run")?;
    // The first word that is not a flag or a flag's value.
    let mut image = None;
    let mut rest = args[run + 1..].iter();
    while let Some(a) = rest.next() {
        if a == "-f" || a == "--file" || a.starts_with("--file=") {
            return None;
        }
        if [
            "-o",
            "--output",
            "--fields",
            "--timeout",
            "--name",
            "--tags",
            "--id",
        ]
        .contains(&a.as_str())
        {
            rest.next();
            continue;
        }
        if !a.starts_with('-') {
            image = Some(a.clone());
            break;
        }
    }
    let image = image?;
    // The globals, parsed by clap with a stand-in subcommand.
    let mut globals: Vec<String> = args[..run].to_vec();
    globals.push("version".into());
    let cli = Cli::try_parse_from(globals).ok()?;
    Some((cli, image))
}

fn tls_of(cli: &Cli) -> Option<ClientTls> {
    match (
        &cli.tls_key_file,
        &cli.tls_cert_file,
        &cli.tls_server_ca_file,
    ) {
        (Some(k), Some(c), Some(ca)) => Some(ClientTls {
            cert: c.clone(),
            key: k.clone(),
            server_ca: ca.clone(),
            server_name: cli.tls_server_name.clone(),
        }),
        _ => None,
    }
}

/// The daemons a command talks to: every one it could connect to.
pub(super) struct Conn {
    pub(super) rt: tokio::runtime::Runtime,
    /// The first node's channel (commands that ask one daemon).
    channel: tonic::transport::Channel,
    /// Every connected node, in `--remote-address` order.
    pub(super) nodes: Vec<(String, tonic::transport::Channel)>,
    /// More than one address was given: events carry their node.
    pub(super) fanout: bool,
    /// The nodes that could not be reached (named on stderr already).
    pub(super) failed: Vec<String>,
}

fn connect(cli: &Cli) -> anyhow::Result<Conn> {
    let targets = super::fanout::targets(&cli.remote_address)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let tls = tls_of(cli);
    let timeout = Duration::from_secs(cli.connection_timeout);
    // Every node at once: a dead one costs one --connection-timeout.
    let attempts: Vec<_> = targets
        .iter()
        .map(|t| {
            let (addr, tls) = (t.addr.clone(), tls.clone());
            rt.spawn(async move { super::remote::connect(&addr, tls.as_ref(), timeout).await })
        })
        .collect();
    let fanout = targets.len() > 1;
    let mut nodes = Vec::new();
    let mut failed = Vec::new();
    let mut first_error = None;
    for (t, a) in targets.into_iter().zip(attempts) {
        match rt.block_on(a).context("the connecting task")? {
            Ok(ch) => nodes.push((t.name, ch)),
            Err(e) if !fanout => return Err(e),
            Err(e) => {
                log::error!("node {}: {e:#}", t.name);
                failed.push(t.name);
                first_error.get_or_insert(e);
            }
        }
    }
    let Some((_, channel)) = nodes.first() else {
        return Err(first_error
            .unwrap_or_else(|| anyhow::anyhow!("no daemon"))
            .context("no node could be reached"));
    };
    Ok(Conn {
        channel: channel.clone(),
        rt,
        nodes,
        fanout,
        failed,
    })
}

/// The end of a fan-out: an error naming the nodes that failed, if any.
pub(super) fn every_node_succeeded(total: usize, failed: &[String]) -> anyhow::Result<()> {
    if failed.is_empty() {
        return Ok(());
    }
    bail!(
        "{} of {total} nodes failed: {}",
        failed.len(),
        failed.join(", ")
    )
}

fn describe(conn: &Conn, image: &str) -> anyhow::Result<proto::GadgetInfo> {
    let mut client = GadgetManagerClient::new(conn.channel.clone());
    let r = conn
        .rt
        .block_on(client.get_gadget_info(GetGadgetInfoRequest {
            image_name: image.to_owned(),
            version: API_VERSION,
            ..GetGadgetInfoRequest::default()
        }))
        .map_err(status_error)?;
    r.into_inner()
        .gadget_info
        .context("the daemon sent no GadgetInfo")
}

pub(super) fn status_error(s: tonic::Status) -> anyhow::Error {
    status_text(s, true)
}

fn status_text(s: tonic::Status, with_hint: bool) -> anyhow::Error {
    // A connection the daemon refused (a TLS alert, plain TCP against TLS)
    // shows up on the first call as a bare "transport error": the cause is
    // in the source chain.
    let message = if s.message().is_empty() {
        format!("{:?}", s.code())
    } else {
        s.message().to_owned()
    };
    let causes = match std::error::Error::source(&s).map(super::remote::causes) {
        Some(c) if c.starts_with(&message) => c[message.len()..].to_owned(),
        Some(c) => format!(": {c}"),
        None => String::new(),
    };
    let hint = if with_hint {
        super::remote::hint(&causes)
    } else {
        ""
    };
    anyhow::anyhow!("the daemon: {message}{causes}{hint}")
}

/// Entry point of the `gadgetctl` binary.
pub fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    super::logger::init(0);
    let mut cmd = <Cli as clap::CommandFactory>::command();
    // Phase one: `run IMAGE` asks the daemon for the image's parameters,
    // which become flags.
    let scanned = prescan(&argv);
    let mut specs: Vec<ParamSpec> = Vec::new();
    let mut conn = None;
    if let Some((cli, image)) = &scanned {
        super::logger::init(cli.verbose);
        match connect(cli).and_then(|c| describe(&c, image).map(|i| (c, i))) {
            Ok((c, info)) => {
                specs = info.params.iter().map(wire::param_spec).collect();
                conn = Some(c);
            }
            Err(e) => {
                let note = format!("The gadget's own parameters are not listed: {e:#}");
                cmd = cmd.mut_subcommand("run", |c| c.after_long_help(note.clone()));
                if !argv.iter().any(|a| a == "-h" || a == "--help") {
                    return fail(&e);
                }
            }
        }
        cmd = cmd.mut_subcommand("run", |c| super::gadget_args::augment(c, &specs));
    }
    let matches = match cmd.try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    super::logger::init(cli.verbose);
    let result = match &cli.command {
        Cmd::Version => version(&cli),
        Cmd::Completion { shell } => super::completion::print_for(*shell, command(), "gadgetctl"),
        Cmd::Man { command: path, dir } => super::completion::man_for(
            "gadgetctl",
            super::reference::man_commands_of(&command()),
            path,
            dir.as_deref(),
        ),
        Cmd::Image(ImageCmd::Inspect { image }) => connect(&cli).and_then(|c| inspect(&c, image)),
        Cmd::List { json } => connect(&cli).and_then(|c| super::ctl_instances::list(&c, *json)),
        Cmd::Show { instance } => {
            connect(&cli).and_then(|c| super::ctl_instances::show(&c, instance))
        }
        Cmd::Delete { instances } => {
            connect(&cli).and_then(|c| super::ctl_instances::delete(&c, instances))
        }
        Cmd::Attach(a) => connect(&cli).and_then(|c| attach(c, a)),
        Cmd::Run(args) if args.file.is_some() => connect(&cli).and_then(|c| {
            super::ctl_instances::create_from_manifest(&c, args.file.as_deref().unwrap_or("-"))
        }),
        Cmd::Run(args) => {
            let given = matches
                .subcommand_matches("run")
                .map(|m| super::gadget_args::given(m, &specs))
                .unwrap_or_default();
            let conn = match conn {
                Some(c) => Ok(c),
                None => connect(&cli),
            };
            conn.and_then(|c| {
                if args.detach {
                    detach(&c, args, given)
                } else {
                    run(c, args, &given)
                }
            })
        }
    };
    super::logger::closing();
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    };
    super::logger::finish();
    code
}

fn fail(e: &anyhow::Error) -> ExitCode {
    super::logger::error(&format!("{e:#}"));
    ExitCode::FAILURE
}

fn version(cli: &Cli) -> anyhow::Result<()> {
    super::logger::stdout_line(&format!("gadgetctl {}", env!("CARGO_PKG_VERSION")));
    let conn = connect(cli)?;
    let mut failed = conn.failed.clone();
    for (name, channel) in &conn.nodes {
        let mut client = BuiltInGadgetManagerClient::new(channel.clone());
        let info = match conn
            .rt
            .block_on(client.get_info(InfoRequest {
                version: INFO_VERSION.to_owned(),
            }))
            .map_err(status_error)
        {
            Ok(i) => i.into_inner(),
            Err(e) if !conn.fanout => return Err(e),
            Err(e) => {
                log::error!("node {name}: {e:#}");
                failed.push(name.clone());
                continue;
            }
        };
        let who = if conn.fanout {
            format!("node {name}: daemon")
        } else {
            "daemon".to_owned()
        };
        super::logger::stdout_line(&format!(
            "{who} {} (API {})",
            info.server_version, info.version
        ));
        if info.version != INFO_VERSION {
            log::warn!(
                "{who} speaks API {}, gadgetctl {INFO_VERSION}: some requests may fail",
                info.version
            );
        }
    }
    every_node_succeeded(conn.nodes.len() + conn.failed.len(), &failed)
}

fn inspect(conn: &Conn, image: &str) -> anyhow::Result<()> {
    let info = describe(conn, image)?;
    let sources: Vec<serde_json::Value> = info
        .data_sources
        .iter()
        .map(|ds| {
            serde_json::json!({
                "id": ds.id,
                "name": ds.name,
                "type": ds.r#type,
                "annotations": ds.annotations,
                "fields": ds.fields.iter().map(|f| serde_json::json!({
                    "name": f.full_name,
                    "kind": proto::Kind::try_from(f.kind).map_or_else(|_| f.kind.to_string(), |k| k.as_str_name().to_owned()),
                    "payloadIndex": f.payload_index,
                    "offs": f.offs,
                    "size": f.size,
                    "flags": f.flags,
                    "tags": f.tags,
                    "annotations": f.annotations,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let params: Vec<serde_json::Value> = info
        .params
        .iter()
        .map(|p| {
            serde_json::json!({
                "key": p.key, "prefix": p.prefix, "description": p.description,
                "defaultValue": p.default_value, "typeHint": p.type_hint,
                "possibleValues": p.possible_values,
            })
        })
        .collect();
    let out = serde_json::json!({
        "name": info.name,
        "imageName": info.image_name,
        "metadata": String::from_utf8_lossy(&info.metadata),
        "params": params,
        "dataSources": sources,
    });
    super::logger::stdout_line(&serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// What the gRPC tasks hand the event loop: a node's data message as it
/// came, its bytes read in place by the loop ([`wire::elements`]), or the
/// end of that node's stream.
enum Msg {
    Data {
        node: usize,
        /// `GadgetEvent.type`: `DATA` or `DATA_BATCH`.
        ty: u32,
        source: u32,
        seq: u32,
        payload: Vec<u8>,
    },
    /// That node's stream ended (done or failed).
    End(usize),
}

/// The queue between the gRPC task and the loop, with an eventfd that
/// is readable while it is not empty (or the stream has ended).
struct Inbox {
    queue: Mutex<(VecDeque<Msg>, bool)>,
    fd: OwnedFd,
}

impl Inbox {
    fn new() -> anyhow::Result<Self> {
        // SAFETY: eventfd with flags only; the descriptor is ours.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("eventfd");
        }
        Ok(Self {
            queue: Mutex::new((VecDeque::new(), false)),
            // SAFETY: a fresh descriptor we own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: an 8-byte write to our eventfd.
        unsafe { libc::write(self.fd.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    fn push(&self, m: Msg) {
        // Only the first event into an empty queue wakes the loop: it takes
        // the whole queue at once, so one eventfd write per batch, not per
        // event: gadgetctl's CPU per event fell by a quarter
        // (bench/daemon.md).
        let was_empty = {
            let mut q = self.queue.lock().expect("not poisoned");
            let was_empty = q.0.is_empty();
            q.0.push_back(m);
            was_empty
        };
        if was_empty {
            self.wake();
        }
    }

    fn end(&self) {
        self.queue.lock().expect("not poisoned").1 = true;
        self.wake();
    }

    fn clear_wake(&self) {
        let mut n: u64 = 0;
        // SAFETY: an 8-byte read from our non-blocking eventfd.
        unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut n).cast(), 8) };
    }
}

/// The daemons' streams as the chain's source.
struct Remote {
    layouts: Vec<proto::DataSource>,
    inbox: Arc<Inbox>,
    /// In a fan-out, the nodes' names: each event gets a `node` field.
    nodes: Option<Arc<Vec<String>>>,
    lost: Arc<AtomicU64>,
}

struct RemoteInstance {
    decoders: Vec<(SourceId, Decoder)>,
    events: Vec<Event>,
    scratch: ElementScratch,
    inbox: Arc<Inbox>,
    /// The queue's messages, swapped out of it (its buffer is reused).
    taken: VecDeque<Msg>,
    /// Each node's next data event's sequence number, and the events
    /// the daemons dropped (the gaps).
    expected: Vec<u32>,
    lost: Arc<AtomicU64>,
    ended: bool,
    bad: u64,
    /// In a fan-out: the nodes' names, each source's `node` field, and
    /// each array source's combiner.
    fanout: Option<FanOut>,
}

struct FanOut {
    names: Arc<Vec<String>>,
    fields: Vec<ig::datasource::FieldId>,
    /// The fields' definitions in the final schemas, taken at the first
    /// drain (setting a value needs them; no clone per event).
    defs: Vec<ig::datasource::FieldDef>,
    combiners: Vec<Option<super::fanout::Combiner<Event>>>,
}

impl Operator for Remote {
    fn name(&self) -> &'static str {
        "remote"
    }
    fn priority(&self) -> Priority {
        priority::IMAGE
    }
    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let mut decoders = Vec::new();
        let mut fields = Vec::new();
        let mut combiners = Vec::new();
        for ds in &self.layouts {
            let (mut b, d) =
                Decoder::with_builder(ds).map_err(|e| OperatorError::failed("remote", e))?;
            if let Some(names) = &self.nodes {
                fields.push(node_field(&mut b)?);
                combiners.push(
                    (ds.r#type == ig_api::source_type::ARRAY)
                        .then(|| super::fanout::Combiner::new(names.len())),
                );
            }
            decoders.push((setup.add_source(b), d));
        }
        Ok(Some(Box::new(RemoteInstance {
            decoders,
            events: Vec::new(),
            scratch: ElementScratch::default(),
            inbox: self.inbox,
            taken: VecDeque::new(),
            expected: vec![1; self.nodes.as_ref().map_or(1, |n| n.len())],
            lost: self.lost,
            ended: false,
            bad: 0,
            fanout: self.nodes.map(|names| FanOut {
                names,
                fields,
                defs: Vec::new(),
                combiners,
            }),
        })))
    }
}

/// The `node` field of a fan-out, the first column.
fn node_field(
    b: &mut ig::datasource::SchemaBuilder,
) -> Result<ig::datasource::FieldId, OperatorError> {
    let id = b
        .add_owned(
            super::fanout::NODE_FIELD.to_owned(),
            ig::datasource::FieldKind::String,
            None,
        )
        .map_err(|e| OperatorError::failed("remote", e))?;
    let n = b.schema().fields().len();
    for i in 0..n {
        let f = b.field_mut(ig::datasource::FieldId(i as u16));
        f.order = f.order.saturating_add(1);
    }
    let f = b.field_mut(id);
    f.order = 0;
    f.annotations.insert("columns.width".into(), "16".into());
    f.annotations.insert(
        "description".into(),
        "The node (daemon) the event comes from".into(),
    );
    Ok(id)
}

impl Instance for RemoteInstance {
    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }
}

/// The next data events start at `seq` and are `n`: a gap since
/// `expected` is what the daemon dropped.
fn sequence(expected: &mut u32, lost: &AtomicU64, seq: u32, n: u32) {
    let gap = seq.wrapping_sub(*expected);
    if gap != 0 && gap < 1 << 31 {
        lost.fetch_add(u64::from(gap), Ordering::Relaxed);
        log::warn!("expected seq {expected}, got {seq}: {gap} events dropped by the daemon");
    }
    *expected = seq.wrapping_add(n);
}

/// A fan-out's `node` field: kept when the previous event came from the
/// same node (the printers reuse what they made of it, as for the values
/// the decoder keeps).
fn set_node(ev: &mut Event, f: &ig::datasource::FieldDef, name: &str) {
    if !(ev.keep(f) && ev.get(f) == ig::datasource::ValueRef::Str(name.as_bytes())) {
        ev.set_str(f, name);
    }
}

impl RemoteInstance {
    /// One data message of `node`: decoded in place, the `node` field set
    /// in a fan-out, arrays through their combiner.
    fn message(
        &mut self,
        node: usize,
        ty: u32,
        source: u32,
        seq: u32,
        payload: &[u8],
        out: &mut Dispatch,
    ) {
        let Some(i) = self.decoders.iter().position(|(_, d)| d.id == source) else {
            self.bad += 1;
            return;
        };
        let (sid, d) = &self.decoders[i];
        let sid = *sid;
        let scratch = &mut self.scratch;
        let expected = &mut self.expected[node];
        let node_field = self
            .fanout
            .as_ref()
            .map(|f| (&f.defs[i], f.names[node].as_str()));
        let mut bad = 0u64;
        let mut fail = |e: WireError| {
            bad += 1;
            log::debug!("an event the layout does not fit: {e}");
        };
        if out.schema(sid).kind == ig::datasource::SourceKind::Array {
            // A snapshot: a GadgetDataArray, one message, one seq.
            sequence(expected, &self.lost, seq, 1);
            let mut evs = Vec::new();
            for el in wire::elements(payload) {
                let mut ev = Event::new(out.schema(sid));
                match el.and_then(|el| d.decode_bytes(el, scratch, &mut ev)) {
                    Ok(()) => {
                        if let Some((f, name)) = node_field {
                            ev.set_str(f, name);
                        }
                        evs.push(ev);
                    }
                    Err(e) => fail(e),
                }
            }
            match self.fanout.as_mut().and_then(|f| f.combiners[i].as_mut()) {
                Some(c) => {
                    for mut round in c.add(node, evs) {
                        out.array(sid, &mut round);
                    }
                }
                None => out.array(sid, &mut evs),
            }
        } else if ty == event_type::DATA {
            sequence(expected, &self.lost, seq, 1);
            let ev = &mut self.events[i];
            let mut els = wire::elements(payload);
            let decoded = match (els.next(), els.next()) {
                (Some(Ok(el)), None) => d.decode_bytes(el, scratch, ev),
                // Not one element: protobuf merges a repeated singular
                // field, as prost does.
                _ => match GadgetData::decode(payload) {
                    Ok(GadgetData { data: Some(el), .. }) => d.decode(&el, ev),
                    Ok(_) => Err(WireError::MissingPayload {
                        source_name: d.schema.name.clone(),
                        have: 0,
                        need: 1,
                    }),
                    Err(_) => Err(WireError::Malformed {
                        message: "GadgetData",
                        what: "prost refuses it",
                    }),
                },
            };
            match decoded {
                Ok(()) => {
                    if let Some((f, name)) = node_field {
                        set_node(ev, f, name);
                    }
                    out.event(sid, ev);
                }
                Err(e) => fail(e),
            }
        } else {
            // A batch: consecutive events from `seq` on, each decoded into
            // the source's one reused event.
            let ev = &mut self.events[i];
            let mut n: u32 = 0;
            for el in wire::elements(payload) {
                n = n.wrapping_add(1);
                match el.and_then(|el| d.decode_bytes(el, scratch, ev)) {
                    Ok(()) => {
                        if let Some((f, name)) = node_field {
                            set_node(ev, f, name);
                        }
                        out.event(sid, ev);
                    }
                    Err(e) => fail(e),
                }
            }
            sequence(expected, &self.lost, seq, n);
        }
        self.bad += bad;
    }
}

impl Source for RemoteInstance {
    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        vec![self.inbox.fd.as_raw_fd()]
    }

    fn drain(&mut self, out: &mut Dispatch) -> Result<(), OperatorError> {
        self.inbox.clear_wake();
        let ended = {
            let mut q = self.inbox.queue.lock().expect("not poisoned");
            std::mem::swap(&mut q.0, &mut self.taken);
            q.1
        };
        if self.events.len() < self.decoders.len() {
            self.events = self
                .decoders
                .iter()
                .map(|(id, _)| Event::new(out.schema(*id)))
                .collect();
            if let Some(f) = self.fanout.as_mut() {
                f.defs = self
                    .decoders
                    .iter()
                    .zip(&f.fields)
                    .map(|((sid, _), fid)| out.schema(*sid).field(*fid).clone())
                    .collect();
            }
        }
        let mut taken = std::mem::take(&mut self.taken);
        for m in taken.drain(..) {
            match m {
                Msg::Data {
                    node,
                    ty,
                    source,
                    seq,
                    payload,
                } => self.message(node, ty, source, seq, &payload, out),
                Msg::End(node) => self.node_ended(node, out),
            }
        }
        self.taken = taken;
        if ended {
            // What the combiners still hold goes out before the end.
            if let Some(f) = self.fanout.as_mut() {
                for (i, c) in f.combiners.iter_mut().enumerate() {
                    if let Some(mut round) = c.as_mut().and_then(|c| c.flush()) {
                        out.array(self.decoders[i].0, &mut round);
                    }
                }
            }
        }
        self.ended = ended;
        Ok(())
    }

    fn finished(&self) -> bool {
        self.ended
    }
}

impl RemoteInstance {
    /// A node stopped streaming: the rounds that waited for it go out.
    fn node_ended(&mut self, node: usize, out: &mut Dispatch) {
        let Some(f) = self.fanout.as_mut() else {
            return;
        };
        for (i, c) in f.combiners.iter_mut().enumerate() {
            if let Some(mut round) = c.as_mut().and_then(|c| c.ended(node)) {
                out.array(self.decoders[i].0, &mut round);
            }
        }
    }
}

/// One node's run as it started: its control channel, its stream, and
/// the layout it sent first.
struct Started {
    node: usize,
    ctl: tokio::sync::mpsc::Sender<GadgetControlRequest>,
    stream: tonic::Streaming<proto::GadgetEvent>,
    info: proto::GadgetInfo,
}

/// Start the run on one node: the request, then the layout (logs may come
/// before it).
async fn start_on(
    node: usize,
    channel: tonic::transport::Channel,
    request: GadgetControlRequest,
    name: Option<String>,
) -> anyhow::Result<Started> {
    let (ctl, ctl_rx) = tokio::sync::mpsc::channel(4);
    ctl.try_send(request).expect("an empty channel");
    let mut client = GadgetManagerClient::new(channel);
    let mut stream = client
        .run_gadget(tokio_stream::wrappers::ReceiverStream::new(ctl_rx))
        .await
        .map_err(status_error)?
        .into_inner();
    loop {
        match stream.message().await {
            Ok(Some(ev)) if ev.r#type == event_type::GADGET_INFO => {
                let info = proto::GadgetInfo::decode(ev.payload.as_slice())
                    .context("decoding the run's GadgetInfo")?;
                return Ok(Started {
                    node,
                    ctl,
                    stream,
                    info,
                });
            }
            Ok(Some(ev)) => log_remote_of(name.as_deref(), &ev),
            Ok(None) => bail!("the daemon ended the run before it started"),
            Err(s) => return Err(status_error(s)),
        }
    }
}

/// `--timeout` as the request's nanoseconds (0: until stopped).
fn timeout_ns(timeout: Option<Duration>) -> i64 {
    timeout.map_or(0, |t| i64::try_from(t.as_nanos()).unwrap_or(i64::MAX))
}

/// `run --detach`: the gadget as a headless instance of every node.
fn detach(conn: &Conn, args: &RunArgs, given: Vec<(String, String)>) -> anyhow::Result<()> {
    super::ctl_instances::create(
        conn,
        &[super::ctl_instances::NewInstance {
            image: args.image.clone().unwrap_or_default(),
            name: args.name.clone(),
            id: args.id.clone(),
            tags: args.tags.clone(),
            params: given.into_iter().collect(),
            timeout_ns: timeout_ns(args.timeout),
        }],
    )
}

/// `attach`: a headless instance's events, as `run` prints them, in the
/// output mode and fields the instance was created with unless `-o` and
/// `--fields` are given.
fn attach(conn: Conn, args: &AttachArgs) -> anyhow::Result<()> {
    let (output, fields) = match (&args.output, &args.fields) {
        (Some(o), Some(f)) => (Some(o.clone()), Some(f.clone())),
        (o, f) => {
            let (so, sf) = super::ctl_instances::stored_output(&conn, &args.instance)?;
            (o.clone().or(so), f.clone().or(sf))
        }
    };
    let request = GadgetControlRequest {
        event: Some(gadget_control_request::Event::AttachRequest(
            proto::GadgetAttachRequest {
                id: args.instance.clone(),
                version: API_VERSION,
            },
        )),
    };
    stream(conn, request, output, fields, &[])
}

/// Keep the heap's freed memory mapped. Each data message is allocated
/// on the gRPC task's thread and freed on the loop's; glibc gave the
/// freed top of the heap back at once and faulted it in again for the
/// next messages (page faults were 6% of gadgetctl's samples at 100k
/// events/s, bench/daemon.md). musl's allocator, in the shipped binary,
/// has no such knob.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's thresholds.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

fn run(conn: Conn, args: &RunArgs, given: &[(String, String)]) -> anyhow::Result<()> {
    keep_freed_memory();
    let (client_given, server_given): (Vec<_>, Vec<_>) =
        given.iter().cloned().partition(|(k, _)| is_client_param(k));
    let request = GadgetControlRequest {
        event: Some(gadget_control_request::Event::RunRequest(
            GadgetRunRequest {
                image_name: args.image.clone().unwrap_or_default(),
                param_values: server_given.into_iter().collect(),
                args: Vec::new(),
                version: API_VERSION,
                log_level: log_level::INFO,
                timeout: timeout_ns(args.timeout),
                // Events in batches: one message per batch, read in place.
                batch_events: true,
            },
        )),
    };
    stream(
        conn,
        request,
        args.output.clone(),
        args.fields.clone(),
        &client_given,
    )
}

/// The streams of `request` (a run or an attach) on every node, through
/// the local chain to stdout.
fn stream(
    conn: Conn,
    request: GadgetControlRequest,
    output: Option<ig::output::OutputSpec>,
    fields: Option<ig::output::FieldsSpec>,
    client_given: &[(String, String)],
) -> anyhow::Result<()> {
    let names: Arc<Vec<String>> = Arc::new(conn.nodes.iter().map(|(n, _)| n.clone()).collect());
    let total = names.len() + conn.failed.len();
    let mut failed = conn.failed.clone();
    // Every node at once.
    let starting: Vec<_> = conn
        .nodes
        .iter()
        .enumerate()
        .map(|(i, (name, ch))| {
            let name = conn.fanout.then(|| name.clone());
            conn.rt
                .spawn(start_on(i, ch.clone(), request.clone(), name))
        })
        .collect();
    let mut started: Vec<Started> = Vec::new();
    for (i, s) in starting.into_iter().enumerate() {
        match conn.rt.block_on(s).context("the starting task")? {
            Ok(s) => started.push(s),
            Err(e) if !conn.fanout => return Err(e),
            Err(e) => {
                log::error!("node {}: {e:#}", names[i]);
                failed.push(names[i].clone());
            }
        }
    }
    let Some(first) = started.first() else {
        bail!("the run started on no node");
    };
    let info = first.info.clone();
    let first_node = first.node;
    // Checked here, so that a layout we cannot use is an error before
    // anything is printed.
    for ds in &info.data_sources {
        Decoder::new(ds).context("the run's layout")?;
    }
    // One chain decodes every node's events: their layouts must agree.
    started.retain(|s| {
        if s.info.data_sources == info.data_sources {
            return true;
        }
        log::error!(
            "node {}: its layout differs from node {}'s: is the image the same on both?",
            names[s.node],
            names[first_node]
        );
        failed.push(names[s.node].clone());
        false
    });
    let inbox = Arc::new(Inbox::new()?);
    let lost = Arc::new(AtomicU64::new(0));
    let stop = StopHandle::new()?;
    // Each stream, on the runtime: into the inbox until it ends; the last
    // one to end ends the inbox.
    let streaming = Arc::new(std::sync::atomic::AtomicUsize::new(started.len()));
    let mut controls = Vec::new();
    let mut readers = Vec::new();
    for s in started {
        controls.push(s.ctl);
        let node = s.node;
        let reader = conn.rt.spawn(read_stream(
            s.stream,
            node,
            inbox.clone(),
            streaming.clone(),
            conn.fanout.then(|| names[node].clone()),
        ));
        readers.push((node, reader));
    }
    // Ctrl-C or SIGTERM: ask the daemons to stop; their streams then end,
    // and with them the loop.
    let signal_stop = StopHandle::new()?;
    let watcher_stop = signal_stop.clone();
    conn.rt.spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => { s.recv().await; }
                    Err(_) => std::future::pending::<()>().await,
                }
            } => {}
        }
        for ctl_tx in controls {
            let _ = ctl_tx
                .send(GadgetControlRequest {
                    event: Some(gadget_control_request::Event::StopRequest(
                        proto::GadgetStopRequest {},
                    )),
                })
                .await;
        }
        watcher_stop.stop();
    });
    // The local chain: the streams as a source, then ig's filters, sort,
    // limit and printers.
    let mut ops: Vec<Box<dyn Operator>> = vec![Box::new(Remote {
        layouts: info.data_sources.clone(),
        inbox: inbox.clone(),
        nodes: conn.fanout.then(|| names.clone()),
        lost: lost.clone(),
    })];
    ops.extend(client_operators());
    let stdout = ig::output::sink::stdout();
    let writer = ig::output::sink::shared_stdout(stdout.clone());
    let dropped = writer.dropped();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    ops.push(Box::new(
        ig::output::OutputOperator::new(output.unwrap_or_default(), writer)
            .on_terminal(terminal)
            .with_fields(fields, false)
            .with_boot_offset(ig::operators::formatters::boot_offset_ns()),
    ));
    let specs: Vec<ParamSpec> = ops.iter().flat_map(|o| o.params()).collect();
    let values = ParamValues::resolve(&specs, client_given)
        .map_err(|(name, e)| anyhow::anyhow!("--{name}: {e}"))?;
    let mut pipeline = Pipeline::build(ops, &values).context("the local chain")?;
    pipeline.start().context("starting the local chain")?;
    super::logger::never_block();
    let opts = ig::runner::RunOptions {
        timeout: None,
        flush_interval: Duration::from_millis(50),
        output: Some(stdout),
        output_dropped: Some(dropped),
        consumer_lagged: None,
        reader: Default::default(),
    };
    let stop_both = stop.clone();
    std::thread::spawn(move || {
        // A signal stops the loop only once the daemon had 5 s to end
        // the stream (its final events still arrive before that).
        let mut pfd = libc::pollfd {
            fd: signal_stop.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid descriptor.
        unsafe { libc::poll(&raw mut pfd, 1, -1) };
        std::thread::sleep(Duration::from_secs(5));
        stop_both.stop();
    });
    let reason = ig::runner::run(&mut pipeline, &stop, &opts, |n| {
        super::run::log_notice(None, &n)
    });
    pipeline.stop().ok();
    for (node, reader) in readers {
        match conn.rt.block_on(reader).context("the stream's task")? {
            Ok(()) => {}
            Err(e) if !conn.fanout => return Err(e),
            // Named on stderr when it happened.
            Err(_) => failed.push(names[node].clone()),
        }
    }
    reason.context("running the local chain")?;
    let lost = lost.load(Ordering::Relaxed);
    if lost > 0 {
        log::warn!("events lost during this run: {lost} dropped by the daemon");
    }
    every_node_succeeded(total, &failed)
}

/// One node's stream into the inbox, until it ends: data messages as
/// they came (the loop decodes them in place and counts the gaps), or how
/// the stream failed. In a fan-out (`node` named), a failure is said on
/// stderr at once: the other nodes go on.
async fn read_stream(
    mut stream: tonic::Streaming<proto::GadgetEvent>,
    node: usize,
    inbox: Arc<Inbox>,
    streaming: Arc<std::sync::atomic::AtomicUsize>,
    name: Option<String>,
) -> anyhow::Result<()> {
    let result = loop {
        match stream.message().await {
            Ok(Some(ev))
                if ev.r#type == event_type::DATA || ev.r#type == event_type::DATA_BATCH =>
            {
                inbox.push(Msg::Data {
                    node,
                    ty: ev.r#type,
                    source: ev.data_source_id,
                    seq: ev.seq,
                    payload: ev.payload,
                });
            }
            Ok(Some(ev)) => log_remote_of(name.as_deref(), &ev),
            Ok(None) => break Ok(()),
            // In a fan-out, a node that dies mid-run is the likely cause:
            // not the hints about refused connections.
            Err(s) => break Err(status_text(s, name.is_none())),
        }
    };
    if let (Some(n), Err(e)) = (&name, &result) {
        log::error!("node {n}: {e:#}; the other nodes go on");
    }
    inbox.push(Msg::End(node));
    if streaming.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
        inbox.end();
    }
    result
}

/// A log event of the daemon of `node` (in a fan-out), on stderr at its
/// level.
fn log_remote_of(node: Option<&str>, ev: &proto::GadgetEvent) {
    let Some(level) = event_type::log_level_of(ev.r#type) else {
        log::debug!("ignoring an event of type {}", ev.r#type);
        return;
    };
    let msg = String::from_utf8_lossy(&ev.payload);
    let who = node.map_or_else(|| "daemon".to_owned(), |n| format!("node {n}"));
    match level {
        0..=log_level::ERROR => log::error!("{who}: {msg}"),
        log_level::WARN => log::warn!("{who}: {msg}"),
        log_level::INFO => log::info!("{who}: {msg}"),
        _ => log::debug!("{who}: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let argv = ["gadgetctl", "run", "trace_open"].iter().chain(extra);
        let cli = Cli::try_parse_from(argv)?;
        match cli.command {
            Cmd::Run(r) => Ok(r),
            other => panic!("not run: {other:?}"),
        }
    }

    /// `--timeout` as `ig run` takes it (the same parser): bare seconds
    /// as upstream, or a duration with units; 0 is until stopped.
    #[test]
    fn timeout_takes_what_ig_run_takes() {
        let t = |s: &str| run_args(&["--timeout", s]).map(|r| r.timeout);
        assert_eq!(t("10").unwrap(), Some(Duration::from_secs(10)));
        assert_eq!(t("500ms").unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(t("3s").unwrap(), Some(Duration::from_secs(3)));
        assert_eq!(t("1m30s").unwrap(), Some(Duration::from_secs(90)));
        assert_eq!(t("0").unwrap(), Some(Duration::ZERO));
        assert_eq!(run_args(&[]).unwrap().timeout, None);
        for bad in ["1m30x", "1.5", "ten"] {
            let e = t(bad).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
            let first = |m: String| m.lines().next().unwrap_or_default().to_owned();
            assert_eq!(
                first(e.to_string()),
                first(run_ig_timeout_error(bad)),
                "the same message as ig run's for {bad}"
            );
        }
    }

    /// `ig run --timeout BAD`'s message.
    fn run_ig_timeout_error(bad: &str) -> String {
        let ig = <super::super::args::Cli as clap::Parser>::try_parse_from([
            "ig",
            "run",
            "trace_open",
            "--timeout",
            bad,
        ])
        .unwrap_err();
        ig.to_string()
    }
}
