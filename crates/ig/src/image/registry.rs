//! Talking to an OCI registry: pull an image into the local store, push one
//! from it, and check credentials for `ig login`; and [`download`], one
//! small document over HTTP(S) (`ig run -f URL`), the same way.
//!
//! Owns: the transport choice (plain HTTP only for loopback hosts and the
//! hosts the user lists as insecure, TLS otherwise), walking an image's
//! graph over the network (index → manifests → config and layers),
//! verifying every document and blob against its descriptor while it
//! streams in, the limits on what a registry may make us fetch, and
//! mapping registry failures to errors that name the registry, the status
//! and the blob. Does not own: where credentials are stored (`auth`), how
//! blobs land on disk (`store`: a pull streams each blob into an
//! [`Ingest`] session and commits it, which writes `index.json` last), or
//! showing progress (callers pass a [`Progress`]).
//!
//! The registry client (`oci-client`) is async; each [`Registry`] drives it
//! on a current-thread tokio runtime of its own, so callers stay
//! synchronous and nothing else in ig needs an executor. Only its low-level
//! calls are used (`auth`, `pull_blob_stream`, `push_blob`,
//! `push_blob_stream`, `push_manifest_raw`): the bytes and digests that
//! reach the registry and the store are exactly the ones in the image,
//! whatever their media types. Manifests are fetched by our own request
//! (`Registry::get_manifest`, with oci-client's token), whose body is
//! counted against the 4 MiB limit as it arrives.
//!
//! Timeouts: a registry that stops sending is given up on, never waited
//! for: [`RegistryOptions::timeout`] bounds connecting (with TLS), the wait
//! for an answer and every gap between two pieces of a body, not a whole
//! transfer (a large pull on a slow link goes on as long as bytes keep
//! coming). A blob's read ends when its descriptor's size has arrived,
//! whatever `Content-Length` the registry announced: a registry that sends
//! the whole blob and keeps the connection open does not hold the pull,
//! and bytes past the size are never read. The errors say which registry,
//! which request and what it did ([`RegistryError::Stalled`]). oci-client
//! probes `GET /v2/` before a request and keeps a failure of that probe to
//! itself, so a registry silent from the start costs two timeouts.
//!
//! Memory: blobs are never held whole. Each chunk of `pull_blob_stream` is
//! hashed and written to a temp file of the ingest session as it arrives,
//! and a blob that outgrows its descriptor is cut off at once. Only
//! indexes and manifests (at most 4 MiB each, one at a time) are held in
//! memory: a child's descriptor size is checked before it is requested.
//! oci-client reads a manifest response whole before handing it over, so
//! the top-level document (whose size nothing announces) and a registry
//! that sends more than a descriptor says are checked only once received.
//! Blob size, blob count and total bytes are capped so a hostile image
//! cannot fill the disk either.
//!
//! Platforms: a pull stores the image index whole and unchanged, but
//! fetches only the manifest and blobs of the host's architecture
//! ([`Platforms::Host`]), as containerd does. Gadget images carry one eBPF
//! object per architecture, so this halves a typical pull, and because the
//! index is kept byte for byte, its digest (what the registry's tag names
//! and what signatures cover) is the same in the store as in the registry.
//! `ig image pull --all-platforms` ([`Platforms::All`]) fetches every
//! manifest, for a copy to push or export again; the store refuses to push
//! or export an image whose index names platforms it lacks, rather than
//! hand out an index without its manifests.
//!
//! Signatures: after an image, a pull also fetches its cosign signatures
//! in both forms, each in a store write of its own, so a missing
//! signature is normal and a failed one only reported
//! ([`SignatureFetch`]): the tag `sha256-<hex>.sig` of the same
//! repository, and the OCI 1.1 signature referrers (oci-client asks the
//! referrers API, and on a 404 reads the tag schema's index `sha256-<hex>`,
//! as the distribution spec 1.1 says; Debian's docker-registry 2.8 has no
//! referrers API, so the tests go through the fallback). A push sends the
//! stored signatures after the image, under the pushed repository: the
//! `.sig` image, and the referrer manifests with the tag schema's index.

// Without the client (feature `registry`), what is left is data: options,
// outcomes, the progress trait.
#![cfg_attr(not(feature = "registry"), allow(unused_imports, dead_code))]

use std::collections::BTreeSet;
use std::io;
use std::time::Duration;

#[cfg(feature = "registry")]
use futures_util::StreamExt as _;
#[cfg(feature = "registry")]
use oci_client::client::{ClientConfig, ClientProtocol};
#[cfg(feature = "registry")]
use oci_client::errors::{OciDistributionError, OciErrorCode};
#[cfg(feature = "registry")]
use oci_client::manifest::OciDescriptor;
#[cfg(feature = "registry")]
use oci_client::secrets::RegistryAuth;
#[cfg(feature = "registry")]
use oci_client::{Client, RegistryOperation};

use super::auth::Credentials;
use super::digest::Digest;
use super::error::{ImageError, Mismatch};
use super::oci::Descriptor;
use super::oci::{
    self, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_IMAGE_INDEX,
    MEDIA_TYPE_IMAGE_MANIFEST, TopLevel,
};
use super::reference::Reference;
use super::store::{Ingest, Store};
use super::trust::{self, Origin};

/// Manifest media types we ask for and accept.
const MANIFEST_TYPES: [&str; 4] = [
    MEDIA_TYPE_IMAGE_INDEX,
    MEDIA_TYPE_IMAGE_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST,
];

/// Largest index or manifest accepted from a registry (what registries
/// themselves accept, and what the store reads back).
const MAX_MANIFEST_SIZE: u64 = super::limits::MAX_JSON;
/// Most blobs (configs and layers) and most bytes one pull may fetch: a
/// descriptor may claim anything, and a hostile image should not fill
/// the disk. A gadget image has two or three blobs per platform.
const MAX_BLOBS: usize = 4096;
const MAX_IMAGE_SIZE: u64 = super::limits::MAX_IMAGE;
/// Blobs up to this size are pushed from memory in one piece; larger
/// ones are streamed from their file in chunks of this size.
#[cfg(feature = "registry")]
const PUSH_IN_ONE_PIECE: u64 = 8 << 20;

/// A stored blob as the chunks oci-client uploads, read as they are
/// sent: at most one chunk in memory. A read error (the file changed
/// since it was verified) ends the upload with that error.
#[cfg(feature = "registry")]
fn blob_stream(
    reader: super::store::BlobReader,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, OciDistributionError>> + Send + 'static {
    futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut chunk = vec![0u8; PUSH_IN_ONE_PIECE as usize];
        let mut filled = 0;
        while filled < chunk.len() {
            match io::Read::read(&mut reader, &mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some((Err(OciDistributionError::IoError(e)), None)),
            }
        }
        if filled == 0 {
            return None;
        }
        chunk.truncate(filled);
        Some((Ok(bytes::Bytes::from(chunk)), Some(reader)))
    })
}

/// Most documents (indexes and manifests) one image may have: a gadget
/// image has one per platform plus the index.
const MAX_DOCUMENTS: usize = 256;

/// How long a registry may keep us waiting, unless told otherwise
/// (`--registry-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Hosts (`host` or `host:port`) reached over plain HTTP. Loopback
    /// hosts (`localhost`, `127.0.0.1`, `[::1]`) always are.
    pub insecure_registries: Vec<String>,
    /// Longest a registry may keep us waiting: to connect (TLS included),
    /// to answer a request, and between two pieces of an answer. Not a
    /// limit on a whole transfer. `None`: no limit.
    pub timeout: Option<Duration>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_registries: Vec::new(),
            timeout: Some(DEFAULT_TIMEOUT),
        }
    }
}

impl RegistryOptions {
    /// Whether `registry` (`host[:port]`) is reached over plain HTTP.
    pub fn plain_http(&self, registry: &str) -> bool {
        let host = host_without_port(registry);
        matches!(host, "localhost" | "127.0.0.1" | "::1")
            || self
                .insecure_registries
                .iter()
                .map(|r| r.trim())
                .any(|r| r.eq_ignore_ascii_case(registry) || r.eq_ignore_ascii_case(host))
    }
}

#[cfg(feature = "registry")]
/// Makes rustls' `ring` provider the process default, once. reqwest is
/// built without a provider of its own (`rustls-no-provider`, so that the
/// static musl build needs no aws-lc) and panics when it builds a TLS client
/// without a default installed. Another provider already installed (by a
/// library in the same process) is kept: any provider rustls accepts works.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing the race to another thread leaves a provider installed,
        // which is all that matters.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(feature = "registry")]
/// Why [`download`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The network runtime could not start.
    #[error("cannot start the network runtime: {0}")]
    Runtime(#[source] io::Error),
    /// Connecting, sending or reading failed (a timeout among them).
    #[error("downloading {url}: {source}")]
    Request {
        /// What was asked for.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The server said no.
    #[error("downloading {url}: the server answered {status}")]
    Status {
        /// What was asked for.
        url: String,
        /// Its answer.
        status: u16,
    },
    /// More than the caller accepts.
    #[error("downloading {url}: larger than {limit} bytes")]
    TooLarge {
        /// What was asked for.
        url: String,
        /// The most accepted.
        limit: usize,
    },
}

#[cfg(feature = "registry")]
/// `GET url` (http or https), the body read whole up to `limit` bytes.
/// `timeout` bounds connecting, the wait for an answer and every gap in
/// the body (as for registries); `None`: no limit.
pub fn download(
    url: &str,
    timeout: Option<Duration>,
    limit: usize,
) -> Result<Vec<u8>, DownloadError> {
    install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DownloadError::Runtime)?;
    let fail = |source| DownloadError::Request {
        url: url.to_owned(),
        source,
    };
    runtime.block_on(async {
        let mut http =
            reqwest::Client::builder().user_agent(concat!("ig/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = timeout {
            http = http.connect_timeout(t).read_timeout(t);
        }
        let mut response = http
            .build()
            .map_err(fail)?
            .get(url)
            .send()
            .await
            .map_err(fail)?;
        if !response.status().is_success() {
            return Err(DownloadError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fail)? {
            if body.len() + chunk.len() > limit {
                return Err(DownloadError::TooLarge {
                    url: url.to_owned(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    })
}

/// `host` of `host:port`, `[v6]:port` or `host`.
fn host_without_port(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

/// Callbacks while blobs move. Every method has a default that does
/// nothing; the CLI draws progress bars with them.
pub trait Progress {
    /// A blob is about to be transferred.
    fn blob_started(&mut self, _desc: &Descriptor) {}
    /// `done` of `desc.size` bytes have arrived.
    fn blob_progress(&mut self, _desc: &Descriptor, _done: u64) {}
    /// The blob is complete; `transferred` is false when it was already
    /// there (in the local store for a pull, in the registry for a push).
    fn blob_finished(&mut self, _desc: &Descriptor, _transferred: bool) {}
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

#[cfg(feature = "registry")]
/// Why talking to a registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Cannot start the network runtime.
    #[error("cannot start the network runtime: {0}")]
    Runtime(#[source] io::Error),

    /// Cannot set up the registry client for `registry`.
    #[error("cannot set up the registry client for {registry}: {source}")]
    Client {
        /// The registry (`host[:port]`).
        registry: String,
        /// Why.
        #[source]
        source: OciDistributionError,
    },

    /// HTTP 401/403. `had_credentials` tells a wrong password from a
    /// missing login.
    #[error(
        "registry {registry} {} for {what} ({status})",
        if *had_credentials { "refused the credentials" } else { "requires authentication" }
    )]
    Unauthorized {
        /// The registry (`host[:port]`).
        registry: String,
        /// What was asked for.
        what: String,
        /// The server's HTTP status.
        status: String,
        /// Whether credentials were sent.
        had_credentials: bool,
    },

    /// `what` not found in registry `registry`.
    #[error("{what} not found in registry {registry}")]
    NotFound {
        /// The registry (`host[:port]`).
        registry: String,
        /// What was asked for.
        what: String,
    },

    /// Registry `registry` answered with an HTTP error status.
    #[error(
        "registry {registry} answered HTTP {status} for {what}{}",
        detail(message)
    )]
    Status {
        /// The registry (`host[:port]`).
        registry: String,
        /// What was asked for.
        what: String,
        /// The server's HTTP status.
        status: u16,
        /// What went wrong.
        message: String,
    },

    /// The registry went quiet for the whole timeout.
    #[error("{}", stalled(registry, what, *phase, *idle))]
    Stalled {
        /// The registry (`host[:port]`).
        registry: String,
        /// What was asked for.
        what: String,
        /// Where it stalled.
        phase: Stall,
        /// How long nothing came.
        idle: Duration,
    },

    /// Cannot reach registry `registry` over `scheme` for `what`.
    #[error("cannot reach registry {registry} over {scheme} for {what}")]
    Connect {
        /// The registry (`host[:port]`).
        registry: String,
        /// What was asked for.
        what: String,
        /// The scheme.
        scheme: &'static str,
        /// Why.
        #[source]
        source: OciDistributionError,
    },

    /// The registry's answer breaks the protocol.
    #[error("registry {registry}, {what}")]
    Protocol {
        /// The registry (`host[:port]`).
        registry: String,
        /// What was asked for.
        what: String,
        /// Why.
        #[source]
        source: OciDistributionError,
    },

    /// A document or blob whose bytes do not match its descriptor: a
    /// truncated transfer, or a registry serving something else.
    #[error("{what} {digest} of {reference} failed verification: {mismatch}")]
    Corrupt {
        /// The image reference.
        reference: String,
        /// Which blob.
        what: &'static str,
        /// The digest.
        digest: Digest,
        /// How they differ.
        mismatch: Mismatch,
    },

    /// `reference`: unsupported `what` media type `media_type`.
    #[error(
        "{reference}: unsupported {what} media type {}",
        crate::text::Echo(media_type)
    )]
    UnsupportedMediaType {
        /// The image reference.
        reference: String,
        /// Which part (config, layer).
        what: &'static str,
        /// The media type.
        media_type: String,
    },

    /// Image `reference` has no manifest for this machine's architecture.
    #[error(
        "image {reference} has no manifest for architecture {architecture} (available: {})",
        if available.is_empty() { "none".to_owned() } else { available.join(", ") }
    )]
    NoMatchingPlatform {
        /// The image reference.
        reference: String,
        /// The architecture.
        architecture: String,
        /// What there is instead.
        available: Vec<String>,
    },

    /// A document the registry sent is malformed.
    #[error("{reference}: malformed {what} {digest}: {source}")]
    Json {
        /// The image reference.
        reference: String,
        /// Which document.
        what: &'static str,
        /// The digest.
        digest: Digest,
        /// Why.
        #[source]
        source: serde_json::Error,
    },

    /// `reference`: `what` `digest` is `size` bytes, more than the `limit`
    /// bytes allowed.
    #[error("{reference}: {what} {digest} is {size} bytes, more than the {limit} bytes allowed")]
    TooLarge {
        /// The image reference.
        reference: String,
        /// Which document or blob.
        what: &'static str,
        /// The digest.
        digest: Digest,
        /// The size in bytes.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// A registry sent a manifest larger than ig reads; the rest of it was
    /// not read.
    #[error(
        "{reference}: the registry's {what} is larger than {limit} bytes (reading stopped there)"
    )]
    ManifestTooLarge {
        /// The image reference.
        reference: String,
        /// Which manifest.
        what: String,
        /// The limit.
        limit: u64,
    },

    /// `reference`: the image has more than `MAX_DOCUMENTS` manifests.
    #[error("{reference}: the image has more than {MAX_DOCUMENTS} manifests")]
    TooManyDocuments {
        /// The image reference.
        reference: String,
    },

    /// The image is larger than ig pulls.
    #[error(
        "{reference}: the image is too large ({blobs} blobs, {bytes} bytes so far; at most {MAX_BLOBS} blobs and {MAX_IMAGE_SIZE} bytes are pulled)"
    )]
    ImageTooLarge {
        /// The image reference.
        reference: String,
        /// Blobs so far.
        blobs: usize,
        /// Bytes so far.
        bytes: u64,
    },

    /// The local store.
    #[error(transparent)]
    Store(#[from] ImageError),
}

#[cfg(feature = "registry")]
/// Where a registry went quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// No connection (TCP and TLS) within the timeout.
    Connecting,
    /// Connected, the request sent, no answer.
    Answering,
    /// An answer started, then no more bytes.
    Reading,
}

#[cfg(feature = "registry")]
fn stalled(registry: &str, what: &str, phase: Stall, idle: Duration) -> String {
    let t = human(idle);
    match phase {
        Stall::Connecting => {
            format!("no connection to registry {registry} within {t} (for {what})")
        }
        Stall::Answering => {
            format!("no answer from registry {registry} for {t} to the request for {what}")
        }
        Stall::Reading => format!("no data for {t} while reading {what} from registry {registry}"),
    }
}

#[cfg(feature = "registry")]
/// `30 s`, `1.5 s`, `250 ms`.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else if d.as_secs() > 0 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(feature = "registry")]
fn detail(message: &str) -> String {
    let m = message.trim();
    if m.is_empty() {
        String::new()
    } else {
        // Registries answer with whole HTML pages at times: keep a line.
        let line = m.lines().next().unwrap_or(m);
        format!(": {}", crate::text::EchoBare(line))
    }
}

/// Which platforms of an image index a pull fetches. The index itself is
/// always stored whole and unchanged: its digest is what the registry's
/// tag names and what signatures cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Platforms {
    /// Only the manifest (and its blobs) of the host's architecture, as
    /// containerd does: what `ig run` needs, at a fraction of the bytes.
    #[default]
    Host,
    /// Every manifest the index names: a copy that can be pushed or
    /// exported again.
    All,
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOutcome {
    /// The name the image now has in the store.
    pub reference: Reference,
    /// Digest of the top-level document (the image index).
    pub digest: Digest,
    /// Blobs and documents downloaded.
    pub downloaded: usize,
    /// Blobs the store already had.
    pub reused: usize,
    /// Architectures of the index that were not fetched
    /// ([`Platforms::Host`]).
    pub not_fetched: Vec<String>,
    /// What became of the image's signature.
    pub signature: SignatureFetch,
}

/// The signatures fetched after an image: cosign's `sha256-<hex>.sig`
/// tag, and the OCI 1.1 signature referrers (stored as the tag schema's
/// index `sha256-<hex>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureFetch {
    /// Stored under these names (the signature image, the referrers
    /// index, or both).
    Stored(Vec<Reference>),
    /// The registry has none.
    Absent,
    /// Fetching it failed; the image itself is in the store. As upstream,
    /// this is only worth a warning: `ig run` refuses an image it must
    /// verify and has no signature for.
    Failed(String),
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The digest of what was pushed (the image index).
    pub digest: Digest,
    /// Where the image's signature was pushed, if the store had one.
    pub signature: Option<Reference>,
    /// Where the referrers index of its OCI 1.1 signatures was pushed, if
    /// the store had one.
    pub referrers: Option<Reference>,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub skipped: usize,
}

/// Counts of one pull's walk over documents and blobs, against its
/// limits.
#[derive(Debug, Default)]
struct FetchWalk {
    seen: BTreeSet<Digest>,
    documents: usize,
    blobs: usize,
    total: u64,
    downloaded: usize,
    reused: usize,
}

#[cfg(feature = "registry")]
/// A client for one registry host.
pub struct Registry {
    runtime: tokio::runtime::Runtime,
    client: Client,
    registry: String,
    auth: RegistryAuth,
    scheme: &'static str,
    timeout: Option<Duration>,
    /// For manifests (`get_manifest`): the same timeouts as the client's.
    http: reqwest::Client,
}

#[cfg(feature = "registry")]
impl Registry {
    /// Prepares a client for `registry` (`host[:port]`). Nothing is sent
    /// yet.
    pub fn new(
        registry: &str,
        credentials: Option<&Credentials>,
        opts: &RegistryOptions,
    ) -> Result<Self, RegistryError> {
        install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RegistryError::Runtime)?;
        let plain = opts.plain_http(registry);
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: opts.timeout,
            read_timeout: opts.timeout,
            user_agent: concat!("ig/", env!("CARGO_PKG_VERSION")),
            // We pick platforms ourselves, from the raw index.
            platform_resolver: None,
            ..ClientConfig::default()
        };
        // `try_from`, not `new`: `new` falls back to a default (HTTPS)
        // client when the configuration fails to build.
        let client = Client::try_from(config).map_err(|source| RegistryError::Client {
            registry: registry.to_owned(),
            source,
        })?;
        let auth = match credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let mut http =
            reqwest::Client::builder().user_agent(concat!("ig/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = opts.timeout {
            http = http.connect_timeout(t).read_timeout(t);
        }
        let http = http.build().map_err(|e| RegistryError::Client {
            registry: registry.to_owned(),
            source: OciDistributionError::RequestError(e),
        })?;
        Ok(Registry {
            runtime,
            client,
            registry: registry.to_owned(),
            auth,
            scheme: if plain { "HTTP" } else { "HTTPS" },
            timeout: opts.timeout,
            http,
        })
    }

    /// Copies the image `reference` names into `store` and tags it there:
    /// the whole index, and the platforms `platforms` selects (see
    /// [`Platforms`]). The host's architecture must be among the platforms
    /// of an index. Nothing in the store changes unless every document and
    /// blob fetched arrived intact. `name@digest` references are checked
    /// against the digest; without a tag the image is recorded under the
    /// digest reference itself.
    pub fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        platforms: Platforms,
        progress: &mut dyn Progress,
    ) -> Result<PullOutcome, RegistryError> {
        self.runtime
            .block_on(self.pull_async(store, reference, platforms, progress))
    }

    /// Uploads the image `reference` names in `store` to the registry of
    /// `reference`: blobs the registry lacks, then every manifest, then the
    /// top-level document under the reference's tag.
    pub fn push(
        &self,
        store: &Store,
        reference: &Reference,
        progress: &mut dyn Progress,
    ) -> Result<PushOutcome, RegistryError> {
        self.runtime.block_on(async {
            let mut outcome = self
                .push_image(store, reference, reference, progress)
                .await?;
            let signed = outcome.digest.clone();
            if let Some(sig) = store.find_signature(&reference.repository(), &signed)? {
                let target =
                    trust::signature_reference(reference, &signed).map_err(ImageError::from)?;
                self.push_image(store, &sig, &target, progress).await?;
                outcome.signature = Some(target);
            }
            // The OCI 1.1 signature referrers: their manifests (each
            // naming the image as `subject`, which a registry with the
            // referrers API indexes), then the tag schema's index, which
            // registries without it need. The index replaces one the
            // registry may already have under that tag.
            if let Some(index) = store
                .find_referrers(&reference.repository(), &signed)?
                .into_iter()
                .next()
            {
                let target = reference
                    .with_tag(&trust::referrers_tag(&signed))
                    .map_err(ImageError::from)?;
                self.push_image(store, &index, &target, progress).await?;
                outcome.referrers = Some(target);
            }
            Ok(outcome)
        })
    }

    /// Fetches the signature of the image `image` (top-level digest
    /// `digest`) into `store`, if the registry has one. Never fails: see
    /// [`SignatureFetch`].
    pub fn pull_signature(
        &self,
        store: &Store,
        image: &Reference,
        digest: &Digest,
    ) -> SignatureFetch {
        self.runtime
            .block_on(self.pull_signature_async(store, image, digest))
    }

    async fn pull_signature_async(
        &self,
        store: &Store,
        image: &Reference,
        digest: &Digest,
    ) -> SignatureFetch {
        let mut stored = Vec::new();
        let mut failed = Vec::new();
        // cosign's tag form, what upstream signs with.
        match trust::signature_reference(image, digest) {
            Ok(sig) => match self
                .pull_image(store, &sig, Platforms::All, &mut NoProgress)
                .await
            {
                Ok(o) => stored.push(o.reference),
                Err(RegistryError::NotFound { .. }) => {}
                Err(e) => failed.push(format!("tag {}: {e}", trust::signature_tag(digest))),
            },
            Err(e) => failed.push(e.to_string()),
        }
        // The OCI 1.1 referrer forms.
        match self.pull_referrers_async(store, image, digest).await {
            Ok(Some(r)) => stored.push(r),
            Ok(None) => {}
            Err(e) => failed.push(format!("referrers: {e}")),
        }
        if stored.is_empty() {
            if failed.is_empty() {
                SignatureFetch::Absent
            } else {
                SignatureFetch::Failed(failed.join("; "))
            }
        } else {
            for f in failed {
                log::debug!("{image}: fetching a signature failed: {f}");
            }
            SignatureFetch::Stored(stored)
        }
    }

    /// Checks the credentials this client was made with: `GET /v2/` with
    /// them, and for registries that hand out tokens, a token request.
    pub fn check_login(&self) -> Result<(), RegistryError> {
        self.runtime.block_on(self.check_login_async())
    }

    // ------------------------------------------------------------------ pull

    async fn pull_async(
        &self,
        store: &Store,
        reference: &Reference,
        platforms: Platforms,
        progress: &mut dyn Progress,
    ) -> Result<PullOutcome, RegistryError> {
        let mut outcome = self
            .pull_image(store, reference, platforms, progress)
            .await?;
        // After the image, in a store write of its own: the image is
        // usable (unverified) even when its signature cannot be fetched.
        outcome.signature = self
            .pull_signature_async(store, &outcome.reference, &outcome.digest)
            .await;
        Ok(outcome)
    }

    /// Pulls one image (a gadget image or a signature image): the top
    /// document, then depth first what `platforms` selects, each blob
    /// streamed into an ingest session of the store and verified on the
    /// way; the session is committed (blobs moved in, `index.json` written
    /// last) only once everything arrived intact.
    async fn pull_image(
        &self,
        store: &Store,
        reference: &Reference,
        platforms: Platforms,
        progress: &mut dyn Progress,
    ) -> Result<PullOutcome, RegistryError> {
        let name = reference.to_string();
        let remote = self.oci_reference(reference);
        self.client
            .store_auth_if_needed(remote.resolve_registry(), &self.auth)
            .await;

        let what = format!("manifest of {name}");
        let top_bytes = self.get_manifest(&remote, &name, &what).await?;
        let top_digest = Digest::sha256_of(&top_bytes);
        if let Some(want) = reference.digest()
            && !want.matches(&top_bytes)
        {
            return Err(RegistryError::Corrupt {
                reference: name,
                what: "manifest",
                digest: want.clone(),
                mismatch: Mismatch::Hash {
                    actual: want.compute_like(&top_bytes),
                },
            });
        }
        let (top_type, top_doc) = parse_document(&name, None, &top_digest, &top_bytes)?;
        let mut stack = to_fetch(&name, &top_doc, platforms)?;
        stack.reverse();
        let not_fetched = match &top_doc {
            TopLevel::Index(i) => i
                .manifests
                .iter()
                .filter(|d| !stack.iter().any(|s| s.digest == d.digest))
                .filter_map(|d| d.platform.as_ref().map(|p| p.architecture.clone()))
                .collect(),
            TopLevel::Manifest(_) => Vec::new(),
        };
        drop(top_doc);
        let top = Descriptor::for_bytes(top_type, &top_bytes);

        let mut ingest = store.ingest()?;
        let blob_err = |e| blob_error(&name, e);
        ingest.add(&top, &top_bytes).map_err(blob_err)?;
        drop(top_bytes);
        let mut outcome = PullOutcome {
            reference: reference.clone(),
            digest: top_digest.clone(),
            downloaded: 1,
            reused: 0,
            not_fetched,
            signature: SignatureFetch::Absent,
        };
        let mut walk = FetchWalk {
            seen: BTreeSet::from([top_digest]),
            documents: 1,
            ..FetchWalk::default()
        };
        self.fetch_graph(
            &remote,
            &name,
            stack,
            platforms,
            &mut ingest,
            progress,
            &mut walk,
        )
        .await?;
        outcome.downloaded += walk.downloaded;
        outcome.reused += walk.reused;

        // A `name:tag@digest` pull is tagged `name:tag`; the digest was
        // checked above.
        let tag_as = match (reference.tag(), reference.digest()) {
            (Some(tag), Some(_)) => reference.with_tag(tag).map_err(ImageError::from)?,
            _ => reference.clone(),
        };
        ingest.commit(&[(tag_as.clone(), top)], Origin::Pulled)?;
        outcome.reference = tag_as;
        Ok(outcome)
    }

    /// Fetches, depth first, the documents and blobs of `stack` (popped
    /// from the end) and what they name (the manifests `platforms`
    /// selects), into `ingest`, counting in `walk` against the limits of
    /// one pull. Documents are parsed as they come and dropped once their
    /// children are listed, so memory holds one at a time.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_graph(
        &self,
        remote: &oci_client::Reference,
        name: &str,
        mut stack: Vec<Descriptor>,
        platforms: Platforms,
        ingest: &mut Ingest,
        progress: &mut dyn Progress,
        walk: &mut FetchWalk,
    ) -> Result<(), RegistryError> {
        let blob_err = |e| blob_error(name, e);
        while let Some(desc) = stack.pop() {
            if !walk.seen.insert(desc.digest.clone()) {
                continue;
            }
            if is_document(&desc.media_type) {
                walk.documents += 1;
                if walk.documents > MAX_DOCUMENTS {
                    return Err(RegistryError::TooManyDocuments {
                        reference: name.to_owned(),
                    });
                }
                let bytes = self.fetch_manifest(remote, &desc, name).await?;
                let (_, doc) = parse_document(name, Some(&desc), &desc.digest, &bytes)?;
                stack.extend(to_fetch(name, &doc, platforms)?.into_iter().rev());
                ingest.add(&desc, &bytes).map_err(blob_err)?;
                walk.downloaded += 1;
                continue;
            }
            walk.blobs += 1;
            walk.total = walk.total.saturating_add(desc.size);
            if walk.blobs > MAX_BLOBS || walk.total > MAX_IMAGE_SIZE {
                return Err(RegistryError::ImageTooLarge {
                    reference: name.to_owned(),
                    blobs: walk.blobs,
                    bytes: walk.total,
                });
            }
            if ingest.reuse(&desc)? {
                progress.blob_finished(&desc, false);
                walk.reused += 1;
            } else {
                self.fetch_blob(remote, &desc, name, ingest, progress)
                    .await?;
                walk.downloaded += 1;
            }
        }
        Ok(())
    }

    /// Fetches the signature referrers of the image `image` (top-level
    /// digest `digest`): the registry's referrers list (the OCI 1.1
    /// referrers API, or on registries without it the tag schema's index
    /// `sha256-<hex>`, as oci-client falls back), keeping the entries that
    /// may be signatures ([`trust::referrers::may_be_signature`]), then
    /// each referrer manifest and its blobs. They are stored as the tag
    /// schema lays them out: an index of those entries tagged
    /// `<repository>:sha256-<hex>` ([`trust::referrers_tag`]). `None` when
    /// the registry lists none.
    async fn pull_referrers_async(
        &self,
        store: &Store,
        image: &Reference,
        digest: &Digest,
    ) -> Result<Option<Reference>, RegistryError> {
        let tagged = image
            .with_tag(&trust::referrers_tag(digest))
            .map_err(ImageError::from)?;
        let name = tagged.to_string();
        let remote = self
            .oci_reference(&without_digest(image))
            .clone_with_digest(digest.to_string());
        self.client
            .store_auth_if_needed(remote.resolve_registry(), &self.auth)
            .await;
        let what = format!("referrers of {}@{digest}", image.repository());
        let list = self
            .client
            .pull_referrers(&remote, None)
            .await
            .map_err(|e| self.map_err(e, &what))?;
        let mut entries = Vec::new();
        for e in list.manifests {
            if !trust::referrers::may_be_signature(e.artifact_type.as_deref())
                || !is_document(&e.media_type)
            {
                continue;
            }
            let (Ok(d), Ok(size)) = (Digest::parse(&e.digest), u64::try_from(e.size)) else {
                log::debug!("{what}: skipping malformed entry {}", e.digest);
                continue;
            };
            let mut desc = Descriptor::for_bytes(&e.media_type, b"");
            desc.digest = d;
            desc.size = size;
            desc.artifact_type = e.artifact_type;
            entries.push(desc);
            if entries.len() == trust::referrers::MAX_REFERRERS {
                break;
            }
        }
        if entries.is_empty() {
            return Ok(None);
        }
        // Referrers only the store has (signed here) stay listed: a fetch
        // adds, it never loses a signature.
        let mut listed = entries.clone();
        if store.contains(&tagged)?
            && let Ok((old_top, old)) = store.image_blobs(&tagged)
            && let Some(b) = old.iter().find(|b| b.descriptor.digest == old_top.digest)
            && let Ok(old_index) = serde_json::from_slice::<oci::Index>(&b.bytes)
        {
            listed.extend(old_index.manifests);
        }
        let (top, bytes) = trust::referrers::referrers_index(&listed);
        let mut ingest = store.ingest()?;
        ingest.add(&top, &bytes).map_err(|e| blob_error(&name, e))?;
        let mut walk = FetchWalk {
            seen: BTreeSet::from([top.digest.clone()]),
            documents: 1,
            ..FetchWalk::default()
        };
        let mut stack = entries;
        stack.reverse();
        self.fetch_graph(
            &remote,
            &name,
            stack,
            Platforms::All,
            &mut ingest,
            &mut NoProgress,
            &mut walk,
        )
        .await?;
        ingest.commit(&[(tagged.clone(), top)], Origin::Pulled)?;
        Ok(Some(tagged))
    }

    async fn fetch_manifest(
        &self,
        remote: &oci_client::Reference,
        desc: &Descriptor,
        name: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        if desc.size > MAX_MANIFEST_SIZE {
            return Err(RegistryError::TooLarge {
                reference: name.to_owned(),
                what: "manifest",
                digest: desc.digest.clone(),
                size: desc.size,
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let by_digest = remote.clone_with_digest(desc.digest.to_string());
        let what = format!("manifest {} of {name}", desc.digest);
        let bytes = self.get_manifest(&by_digest, name, &what).await?;
        verify(name, "manifest", desc, &bytes)?;
        Ok(bytes)
    }

    /// `GET /v2/NAME/manifests/REF` with the body read in pieces, each
    /// counted against [`MAX_MANIFEST_SIZE`] as it arrives: a registry
    /// that sends a gigabyte (or never stops) is refused after 4 MiB, not
    /// read whole first (oci-client's `pull_manifest_raw` reads every
    /// body whole). Authentication is oci-client's (anonymous, basic, or
    /// the bearer token it gets for this repository).
    async fn get_manifest(
        &self,
        remote: &oci_client::Reference,
        name: &str,
        what: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let too_large = || RegistryError::ManifestTooLarge {
            reference: name.to_owned(),
            what: what.to_owned(),
            limit: MAX_MANIFEST_SIZE,
        };
        let token = self
            .client
            .auth(remote, &self.auth, RegistryOperation::Pull)
            .await
            .map_err(|e| self.map_err(e, what))?;
        let url = format!(
            "{}://{}/v2/{}/manifests/{}",
            self.scheme.to_ascii_lowercase(),
            remote.resolve_registry(),
            remote.repository(),
            remote.digest().or(remote.tag()).unwrap_or("latest"),
        );
        let mut request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_TYPES.join(", "));
        match (token, &self.auth) {
            (Some(token), _) => request = request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, password)) => {
                request = request.basic_auth(user, Some(password));
            }
            _ => {}
        }
        let net = |e| self.map_err(OciDistributionError::RequestError(e), what);
        let mut response = request.send().await.map_err(net)?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // As oci-client says it.
            return Err(self.map_err(OciDistributionError::UnauthorizedError { url }, what));
        }
        if !status.is_success() {
            // The registry's explanation, cut: it is only for the message.
            let mut message = Vec::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                message.extend_from_slice(&chunk);
                if message.len() > 64 << 10 {
                    break;
                }
            }
            let message = String::from_utf8_lossy(&message).into_owned();
            return Err(self.map_err(
                OciDistributionError::ServerError {
                    code: status.as_u16(),
                    url,
                    message,
                },
                what,
            ));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST_SIZE)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(net)? {
            if (body.len() + chunk.len()) as u64 > MAX_MANIFEST_SIZE {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Streams one blob into `ingest`: every chunk is hashed and written
    /// as it arrives, and the transfer stops as soon as the blob outgrows
    /// its descriptor. Only the chunk in flight is in memory.
    async fn fetch_blob(
        &self,
        remote: &oci_client::Reference,
        desc: &Descriptor,
        name: &str,
        ingest: &mut Ingest,
        progress: &mut dyn Progress,
    ) -> Result<(), RegistryError> {
        // Blobs stream to disk; the limit is what the store reads back.
        let max_blob = super::limits::max_layer();
        if desc.size > max_blob {
            return Err(RegistryError::TooLarge {
                reference: name.to_owned(),
                what: "blob",
                digest: desc.digest.clone(),
                size: desc.size,
                limit: max_blob,
            });
        }
        let what = format!("blob {} of {name}", desc.digest);
        progress.blob_started(desc);
        let mut stream = self
            .client
            .pull_blob_stream(remote, &oci_descriptor(desc))
            .await
            .map_err(|e| self.map_err(e, &what))?;
        if stream.content_length.is_some_and(|n| n != desc.size) {
            log::debug!(
                "{what}: registry {} announced {} bytes, the descriptor says {}; reading {}",
                self.registry,
                stream.content_length.unwrap_or_default(),
                desc.size,
                desc.size
            );
        }
        let mut writer = ingest.blob(desc)?;
        let mut done = 0;
        // The descriptor says how much to read, not the registry: once
        // `desc.size` bytes are in, the read ends (a registry announcing
        // more and keeping the connection open does not hold us), and
        // bytes past it are never written.
        while done < desc.size {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    let take = usize::try_from(desc.size - done)
                        .map_or(chunk.len(), |left| left.min(chunk.len()));
                    done = writer
                        .write(&chunk[..take])
                        .map_err(|e| blob_error(name, e))?;
                    progress.blob_progress(desc, done);
                }
                Some(Err(e)) => {
                    if let Some(idle) = self.timed_out(&e) {
                        return Err(RegistryError::Stalled {
                            registry: self.registry.clone(),
                            what,
                            phase: Stall::Reading,
                            idle,
                        });
                    }
                    // Cut short: the check below says by how much.
                    log::debug!("{what}: the transfer ended after {done} bytes: {e}");
                    break;
                }
                None => break,
            }
        }
        writer.finish().map_err(|e| blob_error(name, e))?;
        progress.blob_finished(desc, true);
        Ok(())
    }

    /// The timeout, if `e` (a blob stream's error) is reqwest giving up on
    /// a registry that sent nothing for that long.
    fn timed_out(&self, e: &io::Error) -> Option<Duration> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
        while let Some(c) = cause {
            if c.downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_timeout)
            {
                return self.timeout;
            }
            cause = c.source();
        }
        None
    }

    // ------------------------------------------------------------------ push

    /// Pushes the stored image `source` as `reference`.
    async fn push_image(
        &self,
        store: &Store,
        source: &Reference,
        reference: &Reference,
        progress: &mut dyn Progress,
    ) -> Result<PushOutcome, RegistryError> {
        let name = reference.to_string();
        // Layers are not held: each is read from its file as it is sent.
        let (top, stored) = store.image_blobs_streamed(source)?;
        let remote = self.oci_reference(reference);
        self.client
            .store_auth_if_needed(remote.resolve_registry(), &self.auth)
            .await;
        let mut outcome = PushOutcome {
            digest: top.digest.clone(),
            signature: None,
            referrers: None,
            uploaded: 0,
            skipped: 0,
        };

        let (documents, blobs): (Vec<_>, Vec<_>) = stored
            .into_iter()
            .partition(|b| is_document(&b.descriptor.media_type) || b.descriptor == top);
        for blob in blobs {
            let desc = &blob.descriptor;
            let digest = desc.digest.to_string();
            let what = format!("blob {digest} of {name}");
            let exists = self
                .client
                .blob_exists(&remote, &digest)
                .await
                .map_err(|e| self.map_err(e, &what))?;
            if exists {
                progress.blob_finished(desc, false);
                outcome.skipped += 1;
                continue;
            }
            progress.blob_started(desc);
            if desc.size <= PUSH_IN_ONE_PIECE {
                // Small: in memory, as oci-client falls back to a
                // monolithic upload for registries that refuse chunks.
                let bytes = if blob.bytes.is_empty() {
                    let mut r = store.open_blob(desc)?;
                    let mut b = Vec::with_capacity(usize::try_from(desc.size).unwrap_or(0));
                    io::Read::read_to_end(&mut r, &mut b)
                        .map_err(|e| ImageError::io("reading", store.blob_path(&desc.digest), e))?;
                    b
                } else {
                    blob.bytes
                };
                self.client
                    .push_blob(&remote, bytes, &digest)
                    .await
                    .map_err(|e| self.map_err(e, &what))?;
            } else {
                let reader = store.open_blob(desc)?;
                self.client
                    .push_blob_stream(&remote, blob_stream(reader), &digest, Some(desc.size))
                    .await
                    .map_err(|e| self.map_err(e, &what))?;
            }
            progress.blob_progress(desc, desc.size);
            progress.blob_finished(desc, true);
            outcome.uploaded += 1;
        }

        // `image_blobs` lists the graph parent first; pushed in reverse,
        // every manifest reaches the registry after what it references, as
        // registries require. The top-level document goes last, under the
        // tag.
        for doc in documents.into_iter().rev() {
            let desc = &doc.descriptor;
            let is_top = desc.digest == top.digest;
            let target = if is_top && reference.tag().is_some() {
                self.oci_reference(&without_digest(reference))
            } else {
                remote.clone_with_digest(desc.digest.to_string())
            };
            let media_type = document_media_type(&name, desc, &doc.bytes)?;
            let content_type =
                reqwest::header::HeaderValue::from_str(media_type).map_err(|_| {
                    RegistryError::UnsupportedMediaType {
                        reference: name.clone(),
                        what: "manifest",
                        media_type: media_type.to_owned(),
                    }
                })?;
            let what = format!("manifest {} of {name}", desc.digest);
            self.client
                .push_manifest_raw(&target, doc.bytes, content_type)
                .await
                .map_err(|e| self.map_err(e, &what))?;
            outcome.uploaded += 1;
        }
        Ok(outcome)
    }

    // ----------------------------------------------------------------- login

    async fn check_login_async(&self) -> Result<(), RegistryError> {
        let what = "login".to_owned();
        let scheme = if self.scheme == "HTTP" {
            "http"
        } else {
            "https"
        };
        // Docker Hub's API lives on another host than its name (as
        // oci-client resolves it for pulls and pushes).
        let endpoint = match self.registry.as_str() {
            "docker.io" => "index.docker.io",
            r => r,
        };
        let url = format!("{scheme}://{endpoint}/v2/");
        let mut http =
            reqwest::Client::builder().user_agent(concat!("ig/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = self.timeout {
            http = http.connect_timeout(t).read_timeout(t);
        }
        let http = http.build().map_err(|e| self.map_err(e.into(), &what))?;
        let mut request = http.get(&url);
        if let RegistryAuth::Basic(user, pass) = &self.auth {
            request = request.basic_auth(user, Some(pass));
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.map_err(e.into(), &what))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let bearer = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("bearer"));
        if status == reqwest::StatusCode::UNAUTHORIZED && bearer {
            // A token registry: the credentials are checked by the token
            // server, for a scope of some repository.
            let probe = oci_client::Reference::with_tag(
                self.registry.clone(),
                "library/ig-login-check".into(),
                "latest".into(),
            );
            return self
                .client
                .auth(&probe, &self.auth, RegistryOperation::Pull)
                .await
                .map(|_| ())
                .map_err(|e| self.map_err(e, &what));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(self.unauthorized(&what, status.to_string()));
        }
        let message = response.text().await.unwrap_or_default();
        Err(RegistryError::Status {
            registry: self.registry.clone(),
            what,
            status: status.as_u16(),
            message,
        })
    }

    // --------------------------------------------------------------- helpers

    fn oci_reference(&self, r: &Reference) -> oci_client::Reference {
        let (registry, repo) = (self.registry.clone(), r.path().to_owned());
        match (r.tag(), r.digest()) {
            (Some(t), Some(d)) => {
                oci_client::Reference::with_tag_and_digest(registry, repo, t.into(), d.to_string())
            }
            (None, Some(d)) => oci_client::Reference::with_digest(registry, repo, d.to_string()),
            (t, None) => oci_client::Reference::with_tag(
                registry,
                repo,
                t.unwrap_or(super::reference::DEFAULT_TAG).into(),
            ),
        }
    }

    fn unauthorized(&self, what: &str, status: String) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.registry.clone(),
            what: what.to_owned(),
            status,
            had_credentials: matches!(self.auth, RegistryAuth::Basic(..)),
        }
    }

    /// Turns a client error into one that says which registry, which
    /// request, and what went wrong, in words a user can act on.
    fn map_err(&self, e: OciDistributionError, what: &str) -> RegistryError {
        let registry = self.registry.clone();
        let what = what.to_owned();
        match e {
            OciDistributionError::UnauthorizedError { .. } => {
                self.unauthorized(&what, "401 Unauthorized".into())
            }
            OciDistributionError::AuthenticationFailure(_) => {
                self.unauthorized(&what, "token request refused".into())
            }
            OciDistributionError::RegistryError { ref envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                let not_found = codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                    )
                });
                let denied = codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Denied | OciErrorCode::Unauthorized));
                if not_found {
                    RegistryError::NotFound { registry, what }
                } else if denied {
                    self.unauthorized(&what, "access denied".into())
                } else {
                    RegistryError::Protocol {
                        registry,
                        what,
                        source: e,
                    }
                }
            }
            OciDistributionError::ServerError { code, message, .. } => match code {
                401 | 403 => self.unauthorized(&what, format!("HTTP {code}")),
                404 => RegistryError::NotFound { registry, what },
                _ => RegistryError::Status {
                    registry,
                    what,
                    status: code,
                    message,
                },
            },
            OciDistributionError::RequestError(ref r)
                if r.is_timeout() && self.timeout.is_some() =>
            {
                let phase = if r.is_connect() {
                    Stall::Connecting
                } else if r.is_body() || r.is_decode() {
                    Stall::Reading
                } else {
                    Stall::Answering
                };
                RegistryError::Stalled {
                    registry,
                    what,
                    phase,
                    idle: self.timeout.unwrap_or_default(),
                }
            }
            OciDistributionError::RequestError(ref r) if r.is_connect() || r.is_timeout() => {
                RegistryError::Connect {
                    registry,
                    what,
                    scheme: self.scheme,
                    source: e,
                }
            }
            OciDistributionError::RequestError(ref r) if r.status().is_some() => {
                let code = r.status().map(|s| s.as_u16()).unwrap_or_default();
                match code {
                    401 | 403 => self.unauthorized(&what, format!("HTTP {code}")),
                    404 => RegistryError::NotFound { registry, what },
                    _ => RegistryError::Status {
                        registry,
                        what,
                        status: code,
                        message: String::new(),
                    },
                }
            }
            e => RegistryError::Protocol {
                registry,
                what,
                source: e,
            },
        }
    }
}

#[cfg(feature = "registry")]
fn without_digest(r: &Reference) -> Reference {
    match r.tag() {
        Some(t) => r.with_tag(t).unwrap_or_else(|_| r.clone()),
        None => r.clone(),
    }
}

#[cfg(feature = "registry")]
fn is_document(media_type: &str) -> bool {
    MANIFEST_TYPES.contains(&media_type)
}

#[cfg(feature = "registry")]
/// The children of a document a pull fetches, in the order they appear
/// (config first): a manifest's config and layers (layers of any media
/// type: `ig run` skips the ones it does not know), and the manifests of
/// an index that `platforms` selects. An index must have the host's
/// architecture, and the manifests fetched from it must be manifests or
/// indexes.
fn to_fetch(
    name: &str,
    doc: &TopLevel,
    platforms: Platforms,
) -> Result<Vec<Descriptor>, RegistryError> {
    match doc {
        // A referrers index lists artifacts, not platforms.
        TopLevel::Index(index)
            if platforms == Platforms::All
                && index.manifests.iter().all(|d| d.platform.is_none()) =>
        {
            if let Some(odd) = index.manifests.iter().find(|d| !is_document(&d.media_type)) {
                return Err(RegistryError::UnsupportedMediaType {
                    reference: name.to_owned(),
                    what: "manifest",
                    media_type: odd.media_type.clone(),
                });
            }
            Ok(index.manifests.clone())
        }
        TopLevel::Index(index) => {
            let arch = oci::host_architecture();
            let Some(host) = oci::pick_platform(index, arch) else {
                return Err(RegistryError::NoMatchingPlatform {
                    reference: name.to_owned(),
                    architecture: arch.to_owned(),
                    available: oci::architectures(index),
                });
            };
            let picked = match platforms {
                Platforms::Host => vec![host.clone()],
                Platforms::All => index.manifests.clone(),
            };
            if let Some(odd) = picked.iter().find(|d| !is_document(&d.media_type)) {
                return Err(RegistryError::UnsupportedMediaType {
                    reference: name.to_owned(),
                    what: "manifest",
                    media_type: odd.media_type.clone(),
                });
            }
            Ok(picked)
        }
        TopLevel::Manifest(m) => {
            let mut v = vec![m.config.clone()];
            v.extend(m.layers.iter().cloned());
            Ok(v)
        }
    }
}

#[cfg(feature = "registry")]
/// A store error while ingesting a blob of `name`: a mismatch with the
/// descriptor is the registry's doing, and is worded as such.
fn blob_error(name: &str, e: ImageError) -> RegistryError {
    match e {
        ImageError::Unverified { digest, mismatch } => RegistryError::Corrupt {
            reference: name.to_owned(),
            what: "blob",
            digest,
            mismatch,
        },
        e => RegistryError::Store(e),
    }
}

#[cfg(feature = "registry")]
/// Parses an index or manifest. `desc` is the descriptor it was reached
/// by (`None` for the top level, where only the body can tell). Returns
/// the media type to record for it. Unknown media types are refused, in
/// the descriptor and in the body alike.
fn parse_document(
    name: &str,
    desc: Option<&Descriptor>,
    digest: &Digest,
    bytes: &[u8],
) -> Result<(&'static str, TopLevel), RegistryError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
    }
    let json_err = |source| RegistryError::Json {
        reference: name.to_owned(),
        what: "manifest",
        digest: digest.clone(),
        source,
    };
    let unsupported = |t: &str| RegistryError::UnsupportedMediaType {
        reference: name.to_owned(),
        what: "manifest",
        media_type: t.to_owned(),
    };
    let probe: Probe = serde_json::from_slice(bytes).map_err(json_err)?;
    if let Some(t) = &probe.media_type
        && !is_document(t)
    {
        return Err(unsupported(t));
    }
    let declared = desc.map(|d| d.media_type.as_str()).unwrap_or_default();
    if desc.is_some() && !is_document(declared) {
        return Err(unsupported(declared));
    }
    let doc = oci::parse_top_level(declared, bytes).map_err(json_err)?;
    let media_type = match (&doc, probe.media_type.as_deref().or(Some(declared))) {
        (TopLevel::Index(_), Some(MEDIA_TYPE_DOCKER_MANIFEST_LIST)) => {
            MEDIA_TYPE_DOCKER_MANIFEST_LIST
        }
        (TopLevel::Index(_), _) => MEDIA_TYPE_IMAGE_INDEX,
        (TopLevel::Manifest(_), Some(MEDIA_TYPE_DOCKER_MANIFEST)) => MEDIA_TYPE_DOCKER_MANIFEST,
        (TopLevel::Manifest(_), _) => MEDIA_TYPE_IMAGE_MANIFEST,
    };
    Ok((media_type, doc))
}

#[cfg(feature = "registry")]
/// The media type to push a stored document with.
fn document_media_type<'a>(
    name: &str,
    desc: &'a Descriptor,
    bytes: &[u8],
) -> Result<&'a str, RegistryError> {
    if is_document(&desc.media_type) {
        return Ok(&desc.media_type);
    }
    // An `index.json` entry of another tool may lack a media type.
    let (t, _) = parse_document(name, None, &desc.digest, bytes)?;
    Ok(t)
}

#[cfg(feature = "registry")]
/// Checks `bytes` against `desc`: size first, then digest.
fn verify(
    name: &str,
    what: &'static str,
    desc: &Descriptor,
    bytes: &[u8],
) -> Result<(), RegistryError> {
    let corrupt = |mismatch| RegistryError::Corrupt {
        reference: name.to_owned(),
        what,
        digest: desc.digest.clone(),
        mismatch,
    };
    if bytes.len() as u64 != desc.size {
        return Err(corrupt(Mismatch::Size {
            expected: desc.size,
            actual: bytes.len() as u64,
        }));
    }
    let actual = desc.digest.compute_like(bytes);
    if actual != desc.digest {
        return Err(corrupt(Mismatch::Hash { actual }));
    }
    Ok(())
}

#[cfg(feature = "registry")]
/// oci-client's descriptor for a blob request. `urls` are left out on
/// purpose: they would send requests to hosts other than the registry.
fn oci_descriptor(desc: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: desc.media_type.clone(),
        digest: desc.digest.to_string(),
        size: i64::try_from(desc.size).unwrap_or(i64::MAX),
        urls: None,
        annotations: None,
        ..OciDescriptor::default()
    }
}

#[cfg(all(test, feature = "registry"))]
mod tests {
    use super::*;

    /// The TLS client builds with the ring provider (no aws-lc), and a
    /// registry that is not loopback is reached over TLS: a server that
    /// answers the ClientHello with plain HTTP fails the handshake, and the
    /// error is a connection error over HTTPS, not a panic about a missing
    /// crypto provider.
    #[test]
    fn tls_client_uses_ring_and_speaks_tls() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut hello = [0u8; 5];
            conn.read_exact(&mut hello).unwrap();
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
            hello
        });
        let registry = format!("127.0.0.2:{port}");
        let opts = RegistryOptions::default();
        assert!(!opts.plain_http(&registry));
        let reg = Registry::new(&registry, None, &opts).unwrap();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("installed");
        let ring = rustls::crypto::ring::default_provider();
        assert_eq!(
            format!("{:?}", provider.cipher_suites),
            format!("{:?}", ring.cipher_suites)
        );
        let err = reg.check_login().unwrap_err();
        assert!(
            matches!(
                err,
                RegistryError::Connect {
                    scheme: "HTTPS",
                    ..
                }
            ),
            "{err:?}"
        );
        // 0x16 0x03: a TLS handshake record, i.e. a ClientHello was sent.
        let hello = server.join().unwrap();
        assert_eq!(&hello[..2], &[0x16, 0x03], "{hello:?}");
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed_hosts() {
        let opts = RegistryOptions {
            insecure_registries: vec!["reg.lan:5000".into(), "other.lan".into()],
            ..RegistryOptions::default()
        };
        for plain in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:41234",
            "[::1]:5000",
            "reg.lan:5000",
            "other.lan",
            "other.lan:443",
        ] {
            assert!(opts.plain_http(plain), "{plain}");
        }
        for tls in ["ghcr.io", "reg.lan", "reg.lan:5001", "127.0.0.2:5000"] {
            assert!(!opts.plain_http(tls), "{tls}");
        }
    }

    fn index_with(archs: &[&str]) -> Vec<u8> {
        let manifests: Vec<serde_json::Value> = archs
            .iter()
            .map(|a| {
                serde_json::json!({
                    "mediaType": MEDIA_TYPE_IMAGE_MANIFEST,
                    "digest": Digest::sha256_of(a.as_bytes()).to_string(),
                    "size": 1,
                    "platform": {"architecture": a, "os": "linux"}
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_IMAGE_INDEX,
            "manifests": manifests
        }))
        .unwrap()
    }

    #[test]
    fn documents_are_classified_and_unknown_types_refused() {
        let bytes = index_with(&["amd64", "arm64"]);
        let d = Digest::sha256_of(&bytes);
        let (t, doc) = parse_document("x", None, &d, &bytes).unwrap();
        assert_eq!(t, MEDIA_TYPE_IMAGE_INDEX);
        let TopLevel::Index(i) = doc else {
            panic!("not an index")
        };
        assert_eq!(oci::architectures(&i), ["amd64", "arm64"]);
        assert!(oci::pick_platform(&i, "arm64").is_some());
        assert!(oci::pick_platform(&i, "riscv64").is_none());

        let odd = br#"{"schemaVersion":2,"mediaType":"application/vnd.example+json","layers":[]}"#;
        let err = parse_document("x", None, &d, odd).unwrap_err();
        assert!(
            matches!(&err, RegistryError::UnsupportedMediaType { media_type, .. } if media_type == "application/vnd.example+json"),
            "{err}"
        );

        // A descriptor that says something unknown is refused too.
        let desc = Descriptor::for_bytes("application/vnd.example+json", &bytes);
        assert!(parse_document("x", Some(&desc), &d, &bytes).is_err());

        // A manifest without mediaType (upstream writes those) is fine.
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
        let (t, _) = parse_document("x", None, &d, m).unwrap();
        assert_eq!(t, MEDIA_TYPE_IMAGE_MANIFEST);

        let err = parse_document("x", None, &d, b"not json").unwrap_err();
        assert!(matches!(err, RegistryError::Json { .. }), "{err}");
    }

    #[test]
    fn verification_names_the_mismatch() {
        let desc = Descriptor::for_bytes("application/octet-stream", b"hello");
        assert!(verify("x", "blob", &desc, b"hello").is_ok());
        let e = verify("x", "blob", &desc, b"hell").unwrap_err();
        assert!(e.to_string().contains("size is 4 bytes"), "{e}");
        assert!(e.to_string().contains(&desc.digest.to_string()), "{e}");
        let e = verify("x", "blob", &desc, b"jello").unwrap_err();
        assert!(e.to_string().contains("hashes to"), "{e}");
    }

    #[test]
    fn stalls_say_where_and_for_how_long() {
        let t = Duration::from_secs(30);
        assert_eq!(
            stalled("r.io", "blob sha256:ab of r.io/x:v1", Stall::Reading, t),
            "no data for 30 s while reading blob sha256:ab of r.io/x:v1 from registry r.io"
        );
        assert_eq!(
            stalled(
                "r.io",
                "manifest of r.io/x:v1",
                Stall::Answering,
                Duration::from_millis(1500)
            ),
            "no answer from registry r.io for 1.5 s to the request for manifest of r.io/x:v1"
        );
        assert_eq!(
            stalled(
                "r.io",
                "login",
                Stall::Connecting,
                Duration::from_millis(250)
            ),
            "no connection to registry r.io within 250 ms (for login)"
        );
    }

    #[test]
    fn host_parts() {
        assert_eq!(host_without_port("a.io:5000"), "a.io");
        assert_eq!(host_without_port("a.io"), "a.io");
        assert_eq!(host_without_port("[::1]:5000"), "::1");
    }
}
