//! `ig daemon`: upstream's gRPC services (`ig_api`) on a unix socket or
//! a TCP address, each client's run a library run (`ig::run::GadgetRun`)
//! on a thread of its own.
//!
//! The tokio runtime carries only the connections. A run's thread
//! encodes its events (`ig_api::wire`) and hands them to a bounded queue
//! per client (`--events-buffer-length`, counted in events) 256 at a time
//! and on the run's flush timer, with `try_send`: a full queue drops the
//! event, counts it and tells the client in a log event, and never waits,
//! so a slow client cannot stall the run. A client that asks for batches
//! (`batch_events`, as gadgetctl does) gets one message per batch of
//! events; any other, one per event as from upstream's daemon. The stream ends the run when
//! the client asks (a stop request, or closing its side) or goes away
//! (the response stream is dropped), and SIGINT/SIGTERM stop every run
//! before the daemon exits. Images come from the same store, under the
//! same pull and signature policies, as `ig run`'s. Log files and OTLP
//! exporters are `daemon_export`'s: this file hands it each run and its
//! parameters, and SIGHUP.
//!
//! Does not own: the wire format (`ig_api`), the run (`ig::run`),
//! addresses and the client side (`remote`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use ig::run::{
    Event, EventSink, GadgetRun, Notice, PullPolicy as LibPull, RegistryConfig, Schema, StopHandle,
    VerifyPolicy, error_chain,
};
use ig_api::grpc::built_in_gadget_manager_server::{
    BuiltInGadgetManager, BuiltInGadgetManagerServer,
};
use ig_api::grpc::gadget_instance_manager_server::{
    GadgetInstanceManager, GadgetInstanceManagerServer,
};
use ig_api::grpc::gadget_manager_server::{GadgetManager, GadgetManagerServer};
use ig_api::proto::{
    self, DataElement, GadgetControlRequest, GadgetData, GadgetDataArray, GadgetEvent,
    GetGadgetInfoRequest, GetGadgetInfoResponse, InfoRequest, InfoResponse, gadget_control_request,
};
use ig_api::wire::{self, Encoder};
use ig_api::{API_VERSION, INFO_VERSION, event_type, log_level};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};

use super::args::{PullPolicy, RegistryArgs};
use super::daemon_export::DaemonExport;
use super::instances::Instances;
use super::remote::{Address, DEFAULT_ADDRESS};

/// `ig daemon`'s flags.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Where to listen: unix:///PATH or tcp://IP:PORT.
    #[arg(short = 'H', long, default_value = DEFAULT_ADDRESS, value_name = "ADDRESS")]
    pub host: String,

    /// The group (name or GID) that may use the unix socket: it is made
    /// root:GROUP, mode 0660. Its members can run any gadget, so it is
    /// as powerful as root.
    #[arg(short = 'G', long, default_value = "0", value_name = "GROUP")]
    pub group: String,

    /// Events queued per client before the daemon drops them (counted,
    /// and reported to that client): a slow client never slows a run.
    #[arg(long, default_value_t = 16384, value_name = "EVENTS", value_parser = clap::value_parser!(u32).range(1..))]
    pub events_buffer_length: u32,

    /// The server's TLS key (PEM); with --tls-cert-file and
    /// --tls-client-ca-file, clients must present a certificate that CA
    /// signed (mutual TLS).
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert_file", "tls_client_ca_file"])]
    pub tls_key_file: Option<PathBuf>,

    /// The server's TLS certificate (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["tls_key_file", "tls_client_ca_file"])]
    pub tls_cert_file: Option<PathBuf>,

    /// The CA (PEM) whose certificates clients must present.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key_file", "tls_cert_file"])]
    pub tls_client_ca_file: Option<PathBuf>,

    /// Serve plain TCP without TLS: anyone who can reach the port can
    /// run any gadget. Not needed on a unix socket.
    #[arg(long)]
    pub tls_insecure: bool,

    /// When to download an image a client asks for from its registry.
    #[arg(long, value_enum, default_value = "missing", value_name = "WHEN")]
    pub pull: PullPolicy,

    /// Check images' cosign signatures before loading anything
    /// (`--verify-image=false` to skip). Default: on for images pulled
    /// or imported, off for images built on this machine.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub verify_image: Option<bool>,

    /// Public keys (PEM) to verify with: a file or the PEM text; repeat
    /// for more. Default: upstream Inspektor Gadget's built-in key; keys
    /// given replace it.
    #[arg(long, value_name = "FILE|PEM", allow_hyphen_values = true)]
    pub public_keys: Vec<String>,

    /// Run only these images, comma-separated (as `ig run
    /// --allowed-gadgets`).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub allowed_gadgets: Vec<String>,

    /// Where headless gadget instances are kept (DIR/gadgets/ID.gadget,
    /// upstream's layout): they run again when the daemon starts.
    #[arg(long, default_value = "/var/lib/ig", value_name = "DIR")]
    pub state_dir: PathBuf,
}

/// What every run of the daemon shares.
struct Policies {
    /// The log file and OTLP exporters of the configuration.
    export: DaemonExport,
    store: PathBuf,
    pull: LibPull,
    registry: RegistryConfig,
    verify: VerifyPolicy,
}

impl Policies {
    fn run(&self, image: &str) -> GadgetRun {
        GadgetRun::from_store(&self.store, image)
            .pull(self.pull)
            .registry(self.registry.clone())
            .verify(self.verify.clone())
            .gadget_runs(super::run::gadget_runs())
    }
}

/// The runs in progress, to stop them all on SIGTERM and to wait for
/// their threads.
#[derive(Default)]
struct Runs {
    live: Mutex<HashMap<u64, StopHandle>>,
    ended: Condvar,
    next: AtomicU64,
}

impl Runs {
    fn add(&self, stop: StopHandle) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.live.lock().expect("not poisoned").insert(id, stop);
        id
    }

    fn remove(&self, id: u64) {
        self.live.lock().expect("not poisoned").remove(&id);
        self.ended.notify_all();
    }

    fn stop_all(&self) {
        for s in self.live.lock().expect("not poisoned").values() {
            s.stop();
        }
    }

    /// Wait until every run has ended, at most `limit`.
    fn wait(&self, limit: Duration) -> usize {
        let live = self.live.lock().expect("not poisoned");
        let (live, _) = self
            .ended
            .wait_timeout_while(live, limit, |l| !l.is_empty())
            .expect("not poisoned");
        live.len()
    }
}

#[derive(Clone)]
struct Service {
    policies: Arc<Policies>,
    runs: Arc<Runs>,
    buffer: usize,
    instances: Arc<Instances>,
}

/// What headless instances need of the daemon: its policies, its list of
/// runs (SIGTERM stops theirs too).
struct InstanceRunner {
    policies: Arc<Policies>,
    runs: Arc<Runs>,
}

impl super::instances::Runner for InstanceRunner {
    fn run(&self, config: &proto::GadgetRunRequest, id: &str) -> Result<GadgetRun, String> {
        use super::run::{CLI_FIELDS, CLI_OUTPUT, OCI_ANNOTATE};
        let mut params = config.param_values.clone();
        // What `ig run -f` reads of a manifest for its printers: an
        // instance prints nothing (its clients do, with their flags).
        params.remove(CLI_FIELDS);
        params.remove(CLI_OUTPUT);
        let annotations = match params.remove(OCI_ANNOTATE) {
            Some(list) => ig::run::Annotation::parse_list(&list)
                .map_err(|e| format!("parameter {OCI_ANNOTATE}: {}", error_chain(&e)))?,
            None => Vec::new(),
        };
        let run = self.policies.export.apply(
            self.policies.run(&config.image_name),
            &mut params,
            Some(id),
        )?;
        let mut run = run.params(param_values(params)).annotate(annotations);
        if config.timeout > 0 {
            run = run.timeout(Duration::from_nanos(config.timeout as u64));
        }
        Ok(run)
    }
    fn info(&self, info: &ig::run::GadgetInfo, image: &str) -> proto::GadgetInfo {
        gadget_info(info, image, &[])
    }
    fn started(&self, stop: StopHandle) -> u64 {
        self.runs.add(stop)
    }
    fn ended(&self, key: u64) {
        self.runs.remove(key);
        release_freed_memory();
    }
}

/// `ig daemon`.
pub fn command(args: DaemonArgs, store: &Path, registry: &RegistryArgs) -> anyhow::Result<()> {
    one_arena();
    let addr = Address::parse(&args.host)?;
    let tls = match (
        &args.tls_key_file,
        &args.tls_cert_file,
        &args.tls_client_ca_file,
    ) {
        (Some(k), Some(c), Some(ca)) => Some(server_tls(k, c, ca)?),
        _ => None,
    };
    if matches!(addr, Address::Tcp(_)) && tls.is_none() && !args.tls_insecure {
        bail!(
            "{addr}: refusing plain TCP without TLS: give --tls-key-file, --tls-cert-file and --tls-client-ca-file, or --tls-insecure to accept anyone who reaches the port"
        );
    }
    let policies = Arc::new(Policies {
        export: DaemonExport::start()?,
        store: store.to_owned(),
        pull: args.pull.into(),
        registry: registry.config(),
        verify: VerifyPolicy {
            verify: args.verify_image,
            public_keys: args.public_keys.clone(),
            allowed_gadgets: args.allowed_gadgets.clone(),
        },
    });
    let exporting = policies.clone();
    let runs = Arc::new(Runs::default());
    let instances = Instances::load(
        &args.state_dir,
        Arc::new(InstanceRunner {
            policies: policies.clone(),
            runs: runs.clone(),
        }),
    )?;
    let service = Service {
        policies,
        runs,
        buffer: args.events_buffer_length as usize,
        instances: instances.clone(),
    };
    one_arena();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ig-daemon-io")
        .enable_all()
        .build()
        .context("starting the daemon's I/O threads")?;
    runtime.spawn(reopen_on_hangup(exporting.clone()));
    let runs = service.runs.clone();
    let served = runtime.block_on(serve(addr.clone(), &args.group, tls, service));
    // Whatever ended the server, no run outlives it. Instances' files
    // stay: they run again at the next start.
    runs.stop_all();
    instances.stop_all();
    let left = runs.wait(Duration::from_secs(10));
    if left > 0 {
        log::warn!("{left} runs did not stop within 10 s");
    }
    exporting.export.finish();
    runtime.shutdown_timeout(Duration::from_secs(2));
    if let Address::Unix(path) = &addr {
        let _ = std::fs::remove_file(path);
    }
    served
}

fn server_tls(
    key: &Path,
    cert: &Path,
    ca: &Path,
) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |p: &Path, what: &str| {
        std::fs::read(p).with_context(|| format!("reading the {what} {}", p.display()))
    };
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(
            read(cert, "TLS certificate")?,
            read(key, "TLS key")?,
        ))
        .client_ca_root(Certificate::from_pem(read(ca, "client CA")?)))
}

async fn serve(
    addr: Address,
    group: &str,
    tls: Option<tonic::transport::ServerTlsConfig>,
    service: Service,
) -> anyhow::Result<()> {
    let runs = service.runs.clone();
    let stopping = std::sync::Arc::new(tokio::sync::Notify::new());
    let signalled = stopping.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("handling SIGTERM")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        log::info!("stopping every run");
        // Streams end when their runs do, which lets the server drain.
        runs.stop_all();
        signalled.notify_one();
    };
    // A client that keeps its connection open must not keep the daemon:
    // the graceful drain gets a few seconds after the signal.
    let deadline = async move {
        stopping.notified().await;
        tokio::time::sleep(DRAIN).await;
        log::warn!("closing the connections clients left open");
    };
    let mut builder = tonic::transport::Server::builder();
    // Under TLS the bytes read are records, not HTTP/2 frames.
    let plain = tls.is_none();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).context("the TLS configuration")?;
    }
    let router = builder
        .add_service(BuiltInGadgetManagerServer::new(service.clone()))
        .add_service(GadgetManagerServer::new(service.clone()))
        .add_service(GadgetInstanceManagerServer::new(service));
    let served = match &addr {
        Address::Tcp(a) => {
            let listener = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            log::info!("listening on {addr}");
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            tokio::select! {
                r = router.serve_with_incoming_shutdown(incoming, shutdown) => r,
                () = deadline => Ok(()),
            }
        }
        Address::Unix(path) => {
            let gid = resolve_group(group)?;
            let listener = bind_unix(path, gid)?;
            log::info!("listening on {addr} (group {gid}, mode 0660)");
            // Whatever `:authority` the client sends (grpc-core sends the
            // socket's path), h2 gets one that parses.
            let incoming = tokio_stream::StreamExt::map(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                move |conn| conn.map(|c| super::authority::AnyAuthority::new(c, plain)),
            );
            tokio::select! {
                r = router.serve_with_incoming_shutdown(incoming, shutdown) => r,
                () = deadline => Ok(()),
            }
        }
    };
    served.context("serving")
}

/// SIGHUP reopens the log file (`logrotate`) instead of ending the daemon.
async fn reopen_on_hangup(policies: Arc<Policies>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("SIGHUP will not reopen the log file: {e}");
            return;
        }
    };
    while hup.recv().await.is_some() {
        policies.export.reopen();
    }
}

/// How long an attach waits for an instance that is still starting.
const ATTACH_WAIT: Duration = Duration::from_secs(30);

/// How long connections may drain after SIGTERM.
const DRAIN: Duration = Duration::from_secs(3);

/// A group name or number as a GID.
fn resolve_group(group: &str) -> anyhow::Result<libc::gid_t> {
    if let Ok(n) = group.parse::<libc::gid_t>() {
        return Ok(n);
    }
    let name = std::ffi::CString::new(group).context("a group name")?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: getgrnam_r with valid buffers; the result points into `grp`.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &raw mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &raw mut out,
        )
    };
    if rc != 0 || out.is_null() {
        bail!("-G {group}: no such group");
    }
    Ok(grp.gr_gid)
}

/// The daemon's unix socket, root:`gid` mode 0660. It is bound under a
/// umask that gives nobody any access, so no one connects before its
/// owner and mode are set. A stale socket (no daemon answers on it) is
/// replaced; a live one is an error.
fn bind_unix(path: &Path, gid: libc::gid_t) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    if path == Path::new("/var/run/ig/ig.socket") {
        let dir = Path::new("/var/run/ig");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::os::unix::fs::chown(dir, Some(0), Some(gid))
            .with_context(|| format!("chown {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!("{} exists and is not a socket", path.display());
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("{}: another daemon is listening there", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale {}", path.display()))?;
    }
    // SAFETY: umask only changes the process's file creation mask; it is
    // restored right after the bind. No other thread creates files now.
    let old = unsafe { libc::umask(0o777) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("binding {}", path.display()))?;
    std::os::unix::fs::chown(path, Some(0), Some(gid))
        .with_context(|| format!("chown 0:{gid} {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod 0660 {}", path.display()))?;
    listener.set_nonblocking(true)?;
    Ok(tokio::net::UnixListener::from_std(listener)?)
}

#[tonic::async_trait]
impl BuiltInGadgetManager for Service {
    async fn get_info(&self, _req: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(InfoResponse {
            version: INFO_VERSION.to_owned(),
            experimental: false,
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
        }))
    }
}

/// Run `f` on a thread of its own (reading the store may pull, and the
/// registry client drives a runtime of its own) and await its result.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("ig-daemon-req".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| Status::internal(format!("starting a thread: {e}")))?;
    rx.await
        .unwrap_or_else(|_| Err(Status::internal("the request's thread panicked")))
}

fn gadget_info(
    info: &ig::run::GadgetInfo,
    image: &str,
    sources: &[Arc<Schema>],
) -> proto::GadgetInfo {
    proto::GadgetInfo {
        name: info.name.clone(),
        image_name: image.to_owned(),
        data_sources: sources
            .iter()
            .enumerate()
            .map(|(i, s)| wire::data_source(i as u32, s))
            .collect(),
        annotations: HashMap::new(),
        metadata: info.gadget_yaml.clone(),
        params: info.params.iter().map(wire::param).collect(),
        id: String::new(),
        extra_info: None,
    }
}

fn param_values(values: HashMap<String, String>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = values.into_iter().collect();
    v.sort();
    v
}

#[tonic::async_trait]
impl GadgetManager for Service {
    async fn get_gadget_info(
        &self,
        req: Request<GetGadgetInfoRequest>,
    ) -> Result<Response<GetGadgetInfoResponse>, Status> {
        let req = req.into_inner();
        if req.version != API_VERSION {
            return Err(Status::invalid_argument(format!(
                "API version {} is not supported (this server speaks {API_VERSION})",
                req.version
            )));
        }
        if req.flags & 1 != 0 {
            return Err(Status::unimplemented(
                "gadget instances are not supported yet",
            ));
        }
        let policies = self.policies.clone();
        let info = off_runtime(move || {
            let mut values = req.param_values;
            DaemonExport::strip(&mut values);
            let mut run = policies.run(&req.image_name).params(param_values(values));
            // Verified before any of the image is parsed.
            let info = run
                .describe_trusted()
                .map_err(|e| Status::invalid_argument(error_chain(&e)))?;
            let mut gi = gadget_info(&info, &req.image_name, &info.sources);
            // The parameters the daemon takes for itself (the exporters).
            gi.params
                .extend(policies.export.params().iter().map(wire::param));
            Ok(gi)
        })
        .await?;
        Ok(Response::new(GetGadgetInfoResponse {
            gadget_info: Some(info),
        }))
    }

    type RunGadgetStream = RunStream;

    async fn run_gadget(
        &self,
        req: Request<Streaming<GadgetControlRequest>>,
    ) -> Result<Response<RunStream>, Status> {
        let mut inbound = req.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream ended before a run request"))?;
        let r = match first.event {
            Some(gadget_control_request::Event::RunRequest(r)) => r,
            Some(gadget_control_request::Event::AttachRequest(a)) => {
                return self.attach(a, inbound).await;
            }
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be a run request",
                ));
            }
        };
        if r.version != API_VERSION {
            return Err(Status::invalid_argument(format!(
                "API version {} is not supported (this server speaks {API_VERSION})",
                r.version
            )));
        }
        let (queue, rx) = Queue::new(self.buffer);
        let level = if r.log_level == 0 {
            log_level::INFO
        } else {
            r.log_level
        };
        let policies = self.policies.clone();
        let runs = self.runs.clone();
        let (started_tx, started_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("ig-daemon-run".into())
            .spawn(move || run_thread(r, level, &policies, &runs, queue, started_tx))
            .map_err(|e| Status::internal(format!("starting a thread: {e}")))?;
        let stop = started_rx
            .await
            .unwrap_or_else(|_| Err(Status::internal("the run's thread panicked")))?;
        // Control messages: a stop request, or the client closing its
        // side or going away, stops the run.
        let control_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(GadgetControlRequest {
                        event: Some(gadget_control_request::Event::StopRequest(_)),
                    })) => break,
                    Ok(Some(_)) => log::debug!("ignoring a control message that is not a stop"),
                    Ok(None) | Err(_) => break,
                }
            }
            control_stop.stop();
        });
        Ok(Response::new(RunStream {
            rx,
            pending: Vec::new().into_iter(),
            stop,
        }))
    }
}

impl Service {
    /// A client attached to a headless instance: its layout, its kept
    /// events, then the live ones. A stop request, or the client going
    /// away, detaches it; the instance runs on.
    async fn attach(
        &self,
        a: proto::GadgetAttachRequest,
        mut inbound: Streaming<GadgetControlRequest>,
    ) -> Result<Response<RunStream>, Status> {
        if a.version != API_VERSION {
            return Err(Status::invalid_argument(format!(
                "API version {} is not supported (this server speaks {API_VERSION})",
                a.version
            )));
        }
        let inst = self.instances.lookup(&a.id)?;
        // An instance still loading (just created, or the daemon just
        // started) is waited for, as upstream's waiting room does.
        let end = tokio::time::Instant::now() + ATTACH_WAIT;
        let (client, rx) = loop {
            match inst.attach(self.buffer) {
                Err(s)
                    if s.code() == tonic::Code::Unavailable
                        && tokio::time::Instant::now() < end =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other?,
            }
        };
        let detach = inst.clone();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(
                        Some(GadgetControlRequest {
                            event: Some(gadget_control_request::Event::StopRequest(_)),
                        })
                        | None,
                    )
                    | Err(_) => break,
                    Ok(Some(_)) => {}
                }
            }
            detach.detach(client);
        });
        // A handle of its own: dropping the stream must not stop the
        // instance.
        let stop = StopHandle::new().map_err(|e| Status::internal(format!("eventfd: {e}")))?;
        Ok(Response::new(RunStream::new(rx, stop)))
    }
}

#[tonic::async_trait]
impl GadgetInstanceManager for Service {
    async fn create_gadget_instance(
        &self,
        req: Request<proto::CreateGadgetInstanceRequest>,
    ) -> Result<Response<proto::CreateGadgetInstanceResponse>, Status> {
        let instances = self.instances.clone();
        let req = req.into_inner();
        let gi = off_runtime(move || instances.create(req)).await?;
        log::info!("instance {} ({}) created", gi.id, gi.name);
        Ok(Response::new(proto::CreateGadgetInstanceResponse {
            result: 0,
            gadget_instance: Some(gi),
        }))
    }

    async fn list_gadget_instances(
        &self,
        _req: Request<proto::ListGadgetInstancesRequest>,
    ) -> Result<Response<proto::ListGadgetInstanceResponse>, Status> {
        Ok(Response::new(proto::ListGadgetInstanceResponse {
            gadget_instances: self.instances.list(),
        }))
    }

    async fn get_gadget_instance(
        &self,
        req: Request<proto::GadgetInstanceId>,
    ) -> Result<Response<proto::GadgetInstance>, Status> {
        Ok(Response::new(
            self.instances.get(&req.into_inner().id)?.with_state(),
        ))
    }

    async fn remove_gadget_instance(
        &self,
        req: Request<proto::GadgetInstanceId>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let id = req.into_inner().id;
        let instances = self.instances.clone();
        let shown = id.clone();
        // As upstream: a failure is the response's result, not the call's.
        let r = match off_runtime(move || instances.remove(&id)).await {
            Ok(()) => {
                log::info!("instance {shown} removed");
                proto::StatusResponse {
                    result: 0,
                    message: String::new(),
                }
            }
            Err(s) => proto::StatusResponse {
                result: 1,
                message: s.message().to_owned(),
            },
        };
        Ok(Response::new(r))
    }
}

use super::instances::Item;

/// What a run's thread hands the connection at once: messages in order,
/// and how many events they count for in the queue (a batch its events,
/// any other message one).
pub(super) struct Handover {
    pub(super) msgs: Vec<Item>,
    pub(super) events: usize,
}

/// The bounded queue of one client (`--events-buffer-length`, counted in
/// events): the run's thread hands over a batch of messages at a time,
/// never waiting; the connection takes them.
#[derive(Clone)]
pub(super) struct Queue {
    tx: mpsc::Sender<Handover>,
    /// Events handed over and not yet taken by the connection.
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl Queue {
    pub(super) fn new(capacity: usize) -> (Self, QueueRx) {
        // Every handover counts at least one event, so the channel never
        // holds more than `capacity` of them.
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        (
            Self {
                tx,
                queued: queued.clone(),
                capacity,
            },
            QueueRx { rx, queued },
        )
    }

    /// Room for `n` more events beyond the `held` not yet handed over.
    fn has_room(&self, held: usize, n: usize) -> bool {
        self.queued.load(Ordering::Relaxed) + held + n <= self.capacity
    }

    /// Hand `h` over, never waiting; `Err` gives it back when the queue
    /// is full or the connection is gone.
    pub(super) fn hand_over(&self, h: Handover) -> Result<(), Handover> {
        let n = h.events;
        self.queued.fetch_add(n, Ordering::Relaxed);
        match self.tx.try_send(h) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(h) | mpsc::error::TrySendError::Closed(h)) => {
                self.queued.fetch_sub(n, Ordering::Relaxed);
                Err(h)
            }
        }
    }

    /// One message, counted as one event; `false` once the connection
    /// is gone (a full queue drops it).
    pub(super) fn send_one(&self, item: Item) -> bool {
        self.hand_over(Handover {
            msgs: vec![item],
            events: 1,
        })
        .is_ok()
            || !self.tx.is_closed()
    }
}

/// The connection's end of a [`Queue`].
pub struct QueueRx {
    rx: mpsc::Receiver<Handover>,
    queued: Arc<AtomicUsize>,
}

/// The events of one run to its client; the run stops when the stream
/// is dropped (the client went away).
pub struct RunStream {
    rx: QueueRx,
    /// The messages of the handover being sent.
    pending: std::vec::IntoIter<Item>,
    stop: StopHandle,
}

impl RunStream {
    pub(super) fn new(rx: QueueRx, stop: StopHandle) -> Self {
        Self {
            rx,
            pending: Vec::new().into_iter(),
            stop,
        }
    }
}

impl tokio_stream::Stream for RunStream {
    type Item = Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        loop {
            if let Some(m) = self.pending.next() {
                return Poll::Ready(Some(m));
            }
            match self.rx.rx.poll_recv(cx) {
                Poll::Ready(Some(h)) => {
                    self.rx.queued.fetch_sub(h.events, Ordering::Relaxed);
                    self.pending = h.msgs.into_iter();
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for RunStream {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

fn log_event(level: u32, msg: String) -> GadgetEvent {
    GadgetEvent {
        r#type: event_type::log(level),
        seq: 0,
        payload: msg.into_bytes(),
        data_source_id: 0,
    }
}

/// The last messages of a stream, from the run's joining thread: waits a
/// little for room, never for ever (a client that reads nothing must not
/// hold up the daemon's exit).
fn send_last(queue: &Queue, item: Item) {
    let mut h = Handover {
        msgs: vec![item],
        events: 1,
    };
    for _ in 0..200 {
        match queue.hand_over(h) {
            Ok(()) => return,
            Err(_) if queue.tx.is_closed() => return,
            Err(back) => h = back,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One client's run, on a thread of its own: describe and start it, say
/// so to the waiting request, then wait for its end and tell the client
/// how it ended.
fn run_thread(
    r: proto::GadgetRunRequest,
    level: u32,
    policies: &Policies,
    runs: &Runs,
    queue: Queue,
    started: oneshot::Sender<Result<StopHandle, Status>>,
) {
    let batching = r.batch_events;
    let mut params = r.param_values;
    let mut run = match policies
        .export
        .apply(policies.run(&r.image_name), &mut params, None)
    {
        Ok(run) => run.params(param_values(params)),
        Err(e) => {
            let _ = started.send(Err(Status::invalid_argument(e)));
            return;
        }
    };
    if r.timeout > 0 {
        run = run.timeout(Duration::from_nanos(r.timeout as u64));
    }
    // Verified before any of the image is parsed.
    let info = match run.describe_trusted() {
        Ok(i) => i,
        Err(e) => {
            let _ = started.send(Err(Status::invalid_argument(error_chain(&e))));
            return;
        }
    };
    let sink = StreamSink {
        queue: queue.clone(),
        wire: RunEncoder::new(gadget_info(&info, &r.image_name, &[])),
        out: Vec::new(),
        out_events: 0,
        batching,
        handover_at: (queue.capacity / 4).clamp(1, HANDOVER_EVENTS),
        batch: Batch::default(),
        seq: 0,
        dropped: 0,
        closed: false,
        level,
    };
    let handle = match run.sink(sink).spawn() {
        Ok(h) => h,
        Err(e) => {
            let _ = started.send(Err(Status::internal(error_chain(&e))));
            return;
        }
    };
    let id = runs.add(handle.stop_handle());
    let _ = started.send(Ok(handle.stop_handle()));
    let result = handle.join();
    runs.remove(id);
    release_freed_memory();
    match result {
        Ok(summary) => {
            if level >= log_level::DEBUG {
                send_last(
                    &queue,
                    Ok(log_event(
                        log_level::DEBUG,
                        format!("run ended: {:?}", summary.reason),
                    )),
                );
            }
        }
        Err(e) => {
            let msg = error_chain(&e);
            send_last(&queue, Ok(log_event(log_level::ERROR, msg.clone())));
            send_last(&queue, Err(Status::unknown(msg)));
        }
    }
}

/// Give what a finished run freed back to the system. glibc keeps freed
/// memory in per-thread arenas, and every run is a thread of its own, so
/// a daemon that served many runs kept the peak of each arena it touched
/// (100 clients that started a run and left: RSS 46 MB to 72 MB); musl's
/// allocator, in the shipped binary, returns it by itself.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own state.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One malloc arena for the whole daemon (glibc). Each run is a thread
/// and its events are allocated there and freed on the connection's
/// threads; with an arena per thread, 100 clients that each started a
/// run and left grew a release build's RSS from 26 to 68-87 MB, and
/// `malloc_trim` did not give it back (with one arena: within 10%, the
/// test `clients_that_vanish_leave_nothing_behind`). Small allocations
/// still come from each thread's cache without the arena's lock.
fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters; called before
    // the daemon starts any thread of its own.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Most events a handover holds: one channel send and one wake-up of
/// the connection.
const HANDOVER_EVENTS: usize = 256;
/// Most events a batch holds: one gRPC message of a few HTTP/2 frames.
/// Kept small enough (trace_open's 64 events are about 28 KiB) that the
/// client's buffers are reused rather than mapped and unmapped per
/// batch, as glibc does above 128 KiB (page faults were 4% of
/// gadgetctl's samples with 256).
const BATCH_EVENTS: usize = 64;
/// A batch is closed once it holds this many bytes (large events).
const BATCH_BYTES: usize = 64 << 10;

/// A batch being filled (`event_type::DATA_BATCH`): a `GadgetDataArray`
/// of consecutive events of one data source.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    source: u32,
    first_seq: u32,
    events: usize,
}

/// What a run's thread hands its client, through the bounded queue.
///
/// Events are held here and handed over together: when
/// [`HANDOVER_EVENTS`] are held, on the run's flush timer ([`EventSink::flush`], so that no
/// event waits longer than that) and at the end. To a client that asked
/// (`GadgetRunRequest.batch_events`, gadgetctl), consecutive events of a
/// data source go as one `DATA_BATCH` message; to any other (upstream's
/// clients) as one `GadgetData` message each, as upstream's daemon sends
/// them. Either way, nothing is allocated per event in the batched form
/// but the batch's growth, and there is one channel send per handover.
struct StreamSink {
    queue: Queue,
    wire: RunEncoder,
    /// Messages not yet handed over, and the events they count for.
    out: Vec<Item>,
    out_events: usize,
    /// The client takes batches.
    batching: bool,
    /// Hand over once this many events are held: [`HANDOVER_EVENTS`], or
    /// a quarter of a smaller queue (so that a queue of a few events
    /// still flows between flushes).
    handover_at: usize,
    batch: Batch,
    /// The stream's sequence number: one per data event, sent or not.
    seq: u32,
    /// Data events dropped since the client was last told.
    dropped: u64,
    closed: bool,
    level: u32,
}

impl StreamSink {
    /// Events held here, not yet handed over.
    fn held(&self) -> usize {
        self.out_events + self.batch.events
    }

    /// The batch being filled, as a message of `out`.
    fn close_batch(&mut self) {
        if self.batch.events == 0 {
            return;
        }
        let size = self.batch.bytes.len();
        let bytes = std::mem::replace(&mut self.batch.bytes, Vec::with_capacity(size));
        self.out.push(Ok(GadgetEvent {
            r#type: event_type::DATA_BATCH,
            seq: self.batch.first_seq,
            payload: bytes,
            data_source_id: self.batch.source,
        }));
        self.out_events += self.batch.events;
        self.batch.events = 0;
    }

    /// Everything held, to the connection.
    fn hand_over(&mut self) {
        self.close_batch();
        if self.out.is_empty() || self.closed {
            return;
        }
        let h = Handover {
            msgs: std::mem::take(&mut self.out),
            events: std::mem::take(&mut self.out_events),
        };
        if let Err(h) = self.queue.hand_over(h) {
            if self.queue.tx.is_closed() {
                self.closed = true;
            } else {
                // Not expected (room was checked for each event): counted
                // as dropped, as a full queue is.
                self.dropped += h.events as u64;
            }
        }
    }

    /// Queue `msg`, counting `events`, if the queue has room.
    fn push(&mut self, msg: GadgetEvent, events: usize) -> bool {
        if self.closed || !self.queue.has_room(self.held(), events) {
            return false;
        }
        self.close_batch();
        self.out.push(Ok(msg));
        self.out_events += events;
        if self.held() >= self.handover_at {
            self.hand_over();
        }
        true
    }

    fn log(&mut self, level: u32, msg: String) -> bool {
        level > self.level || self.push(log_event(level, msg), 1)
    }

    /// Tell the client of drops before the next event, when there is room.
    fn report_drops(&mut self) {
        if self.dropped > 0 {
            let msg = format!(
                "{} events dropped: the client did not keep up (the daemon's --events-buffer-length)",
                self.dropped
            );
            if self.log(log_level::WARN, msg) {
                self.dropped = 0;
            }
        }
    }

    /// A new data event's sequence number, and whether there is room for
    /// it; a dropped one is counted and ends the batch (whose events
    /// must be consecutive).
    fn admit(&mut self) -> bool {
        self.seq = self.seq.wrapping_add(1);
        if self.dropped > 0 {
            self.report_drops();
        }
        if self.closed {
            return false;
        }
        if self.queue.has_room(self.held(), 1) {
            return true;
        }
        self.dropped += 1;
        self.close_batch();
        false
    }
}

/// A run's data sources as upstream's wire messages: the layout (the
/// run's `GadgetInfo` with a `DataSource` per source) and each event's
/// payload. Shared by a client's stream ([`StreamSink`]) and a headless
/// instance's (`instances::InstanceSink`); what they do with the bytes
/// (batches, a bounded queue, a replay ring) is theirs.
pub(super) struct RunEncoder {
    /// The run's GadgetInfo but for its data sources, filled at start.
    info: proto::GadgetInfo,
    /// The run's data sources (by address: what `on_event` gets) and
    /// their encoders, in `DataSource.id` order.
    sources: Vec<(Arc<Schema>, Encoder)>,
    /// The last event encoded by [`RunEncoder::encode`] (its buffers are
    /// reused from one event to the next).
    pub(super) element: DataElement,
    /// Scratch of [`RunEncoder::push_event`].
    unset: Vec<u32>,
}

impl RunEncoder {
    pub(super) fn new(info: proto::GadgetInfo) -> Self {
        Self {
            info,
            sources: Vec::new(),
            element: DataElement::default(),
            unset: Vec::new(),
        }
    }

    /// The started run's sources; the encoded `GadgetInfo`, the first
    /// message of every stream of the run.
    pub(super) fn start(&mut self, sources: &[Arc<Schema>]) -> Vec<u8> {
        self.sources = sources
            .iter()
            .map(|s| (s.clone(), Encoder::new(s)))
            .collect();
        self.info.data_sources = sources
            .iter()
            .enumerate()
            .map(|(i, s)| wire::data_source(i as u32, s))
            .collect();
        self.info.encode_to_vec()
    }

    /// The `DataSource.id` of `schema` (by address, else by name).
    pub(super) fn source(&self, schema: &Schema) -> Option<usize> {
        self.sources
            .iter()
            .position(|(s, _)| std::ptr::eq(Arc::as_ptr(s), schema))
            .or_else(|| self.sources.iter().position(|(s, _)| s.name == schema.name))
    }

    /// `event` of source `i` into [`RunEncoder::element`].
    pub(super) fn encode(&mut self, i: usize, schema: &Schema, event: &Event) {
        self.sources[i].1.encode(schema, event, &mut self.element);
    }

    /// `event` of source `i` appended to the batch in `buf`, as
    /// [`RunEncoder::encode`] and `wire::push_element` would (one copy of
    /// each value instead of two).
    pub(super) fn push_event(
        &mut self,
        i: usize,
        schema: &Schema,
        event: &Event,
        buf: &mut Vec<u8>,
    ) {
        self.sources[i]
            .1
            .push_event(schema, event, buf, &mut self.unset);
    }

    /// The encoded element as a `GadgetData` payload of sequence number
    /// `seq` (the element's buffers stay for the next event).
    pub(super) fn data_payload(&mut self, seq: u32) -> Vec<u8> {
        let data = GadgetData {
            node: String::new(),
            seq,
            data: Some(std::mem::take(&mut self.element)),
        };
        let payload = data.encode_to_vec();
        self.element = data.data.unwrap_or_default();
        payload
    }

    /// `events` of source `i` as one `GadgetDataArray` payload.
    pub(super) fn array_payload(
        &self,
        i: usize,
        schema: &Schema,
        events: &[Event],
        seq: u32,
    ) -> Vec<u8> {
        let mut array = GadgetDataArray {
            node: String::new(),
            seq,
            data_array: Vec::with_capacity(events.len()),
        };
        for e in events {
            let mut el = DataElement::default();
            self.sources[i].1.encode(schema, e, &mut el);
            array.data_array.push(el);
        }
        array.encode_to_vec()
    }
}

/// A run's notice as the log line its clients get.
pub(super) fn notice_text(n: &Notice) -> String {
    match n {
        Notice::Lost { source, count } => format!(
            "data source {source}: {count} events lost in the kernel (the ring buffer was full)"
        ),
        Notice::OutputDropped { count } => format!("{count} events lost in the output"),
        Notice::GuestRefused { module, count } => {
            format!("wasm module {module}: {count} packets refused")
        }
        Notice::ConsumerLagged { count } => format!("{count} events lost: a consumer lagged"),
        Notice::Warning(w) => w.clone(),
    }
}

impl EventSink for StreamSink {
    fn on_start(&mut self, sources: &[Arc<Schema>]) {
        let payload = self.wire.start(sources);
        // The first message of the stream: the queue is empty.
        self.push(
            GadgetEvent {
                r#type: event_type::GADGET_INFO,
                seq: 0,
                payload,
                data_source_id: 0,
            },
            1,
        );
        self.hand_over();
    }

    fn on_event(&mut self, schema: &Schema, event: &Event) {
        let Some(i) = self.wire.source(schema) else {
            return;
        };
        if !self.admit() {
            return;
        }
        let source = i as u32;
        if self.batching {
            if self.batch.events > 0 && self.batch.source != source {
                self.close_batch();
            }
            if self.batch.events == 0 {
                wire::begin_batch(self.seq, &mut self.batch.bytes);
                self.batch.source = source;
                self.batch.first_seq = self.seq;
            }
            self.wire
                .push_event(i, schema, event, &mut self.batch.bytes);
            self.batch.events += 1;
            if self.batch.events >= BATCH_EVENTS || self.batch.bytes.len() >= BATCH_BYTES {
                self.close_batch();
            }
            if self.held() >= self.handover_at {
                self.hand_over();
            }
            return;
        }
        self.wire.encode(i, schema, event);
        let payload = self.wire.data_payload(self.seq);
        self.out.push(Ok(GadgetEvent {
            r#type: event_type::DATA,
            seq: self.seq,
            payload,
            data_source_id: source,
        }));
        self.out_events += 1;
        if self.held() >= self.handover_at {
            self.hand_over();
        }
    }

    fn on_array(&mut self, schema: &Schema, events: &[Event]) {
        let Some(i) = self.wire.source(schema) else {
            return;
        };
        // One message, one sequence number, one place in the queue.
        if !self.admit() {
            return;
        }
        let payload = self.wire.array_payload(i, schema, events, self.seq);
        self.close_batch();
        self.out.push(Ok(GadgetEvent {
            r#type: event_type::DATA,
            seq: self.seq,
            payload,
            data_source_id: i as u32,
        }));
        self.out_events += 1;
        if self.held() >= self.handover_at {
            self.hand_over();
        }
    }

    fn on_notice(&mut self, n: &Notice) {
        self.log(log_level::WARN, notice_text(n));
    }

    fn flush(&mut self) {
        self.hand_over();
    }

    fn is_closed(&self) -> bool {
        self.closed || self.queue.tx.is_closed()
    }
}

impl Drop for StreamSink {
    /// A run that ends without a last flush still delivers what it held.
    fn drop(&mut self) {
        self.hand_over();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_travel_in_the_type() {
        let e = log_event(log_level::WARN, "x".into());
        assert_eq!(event_type::log_level_of(e.r#type), Some(log_level::WARN));
        assert_eq!(event_type::log_level_of(event_type::GADGET_INFO), None);
    }
}
