//! Where the daemon listens and clients connect: `unix:///PATH` or
//! `tcp://IP:PORT` (upstream's two schemes), and a client's channel to
//! one such address, with mutual TLS when configured.
//!
//! Owns the address syntax and the client's transport; not what goes
//! over it (`daemon`, `gadgetctl`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// The daemon's socket when `-H` / `--remote-address` is not given.
pub const DEFAULT_ADDRESS: &str = "unix:///var/run/ig/ig.socket";

/// A parsed `-H` / `--remote-address`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A unix socket.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl Address {
    /// `unix:///PATH` or `tcp://IP:PORT`; anything else is refused.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                bail!("{s}: a unix socket address needs an absolute path (unix:///run/ig.socket)");
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(hostport) = s.strip_prefix("tcp://") {
            let addr: SocketAddr = hostport.parse().with_context(|| {
                format!("{s}: expected tcp://IP:PORT (an IP address, not a host name)")
            })?;
            return Ok(Self::Tcp(addr));
        }
        bail!("{s}: the address must be unix:///PATH or tcp://IP:PORT")
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// A client's TLS files (all three, or no TLS).
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// The client's certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// The CA that signed the server's certificate (PEM).
    pub server_ca: PathBuf,
    /// The name the server's certificate must carry (default: the
    /// address's IP).
    pub server_name: Option<String>,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// A channel to the daemon at `addr`. Fails after `timeout` if the daemon
/// does not answer.
pub async fn connect(
    addr: &Address,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> anyhow::Result<tonic::transport::Channel> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = match addr {
        Address::Tcp(a) => format!("{scheme}://{a}"),
        // The URI of a unix socket is a placeholder: the connector below
        // ignores it.
        Address::Unix(_) => format!("{scheme}://localhost"),
    };
    let mut endpoint = Endpoint::from_shared(uri)?
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    if let Some(t) = tls {
        let identity = Identity::from_pem(
            read(&t.cert, "client certificate")?,
            read(&t.key, "client key")?,
        );
        let mut config = ClientTlsConfig::new()
            .identity(identity)
            .ca_certificate(Certificate::from_pem(read(&t.server_ca, "server CA")?));
        let name = match (&t.server_name, addr) {
            (Some(n), _) => Some(n.clone()),
            (None, Address::Tcp(a)) => Some(a.ip().to_string()),
            (None, Address::Unix(_)) => None,
        };
        if let Some(n) = name {
            config = config.domain_name(n);
        }
        endpoint = endpoint.tls_config(config)?;
    }
    let connecting = async {
        match addr {
            Address::Tcp(_) => endpoint.connect().await,
            Address::Unix(path) => {
                let path = path.clone();
                endpoint
                    .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                        let path = path.clone();
                        async move {
                            let s = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                        }
                    }))
                    .await
            }
        }
    };
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(ch)) => Ok(ch),
        Ok(Err(e)) => {
            let causes = causes(&e);
            bail!("connecting to {addr}: {causes}{}", hint(&causes))
        }
        Err(_) => bail!(
            "connecting to {addr}: no answer within {} s (--connection-timeout)",
            timeout.as_secs_f64()
        ),
    }
}

/// `e` and its sources as one line, each text once (tonic's and hyper's
/// errors repeat their source in their own text).
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// What a transport failure most likely means, for those a user meets
/// with TLS, where the error rarely names the cause: TLS 1.3 reports a
/// refused client certificate after the handshake (as an alert, or as a
/// closed connection when the client wrote first), and TLS against plain
/// HTTP/2 is a garbled frame.
pub fn hint(causes: &str) -> &'static str {
    if causes.contains("fatal alert") && !causes.contains("invalid peer certificate") {
        " (the daemon refused the TLS handshake: does its --tls-client-ca-file sign this client's certificate?)"
    } else if ["broken pipe", "connection reset", "connection closed"]
        .iter()
        .any(|m| causes.contains(m))
    {
        " (the daemon closed the connection: it did not accept this client's TLS certificate, or it serves TLS and this client did not use it)"
    } else if [
        "frame with invalid size",
        "InvalidContentType",
        "invalid HTTP version",
    ]
    .iter()
    .any(|m| causes.contains(m))
    {
        " (one side speaks TLS and the other does not: check the --tls-* flags of both)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstreams_two_schemes_only() {
        assert_eq!(
            Address::parse("unix:///var/run/ig/ig.socket").unwrap(),
            Address::Unix("/var/run/ig/ig.socket".into())
        );
        assert_eq!(
            Address::parse("tcp://127.0.0.1:9999").unwrap(),
            Address::Tcp("127.0.0.1:9999".parse().unwrap())
        );
        for bad in [
            "unix://rel/path",
            "tcp://localhost:1",
            "http://1.2.3.4:5",
            "/path",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Address::parse(DEFAULT_ADDRESS).unwrap().to_string(),
            DEFAULT_ADDRESS
        );
    }
}
