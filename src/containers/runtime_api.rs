//! The runtimes' HTTP APIs over their unix sockets, just enough for a
//! container's name and image: `GET /containers/ID/json`, which docker and
//! podman (its docker-compatible API) both answer.
//!
//! A tiny HTTP/1.0 client: one request per connection, the server closes
//! the connection after the body, so no chunked encoding and no keep-alive.
//! containerd and cri-o speak gRPC only and are not asked.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::Runtime;

/// How long one question may take before the container is named by its id.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The most we read of an answer (an inspect document is a few KiB).
const MAX_ANSWER: u64 = 4 << 20;

/// Whether the runtime's socket speaks HTTP (docker's API).
pub fn speaks_http(r: Runtime) -> bool {
    matches!(r, Runtime::Docker | Runtime::Podman)
}

/// Why a container runtime's API gave no answer we could use.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Talking to the runtime's socket failed.
    #[error("talking to the runtime")]
    Io(#[from] std::io::Error),
    /// The runtime answered with an error status.
    #[error("the runtime answered status {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// What it said.
        body: String,
    },
    /// Malformed HTTP answer.
    #[error("malformed HTTP answer")]
    Malformed,
    /// The answer's JSON is not what we read.
    #[error("unexpected JSON in the answer: {0}")]
    Json(String),
}

/// What the enrichment needs of a runtime's inspect document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspect {
    /// The container's name.
    pub name: String,
    /// Its image.
    pub image: String,
}

/// Ask the runtime behind `socket` about container `id`.
pub fn inspect(socket: &Path, id: &str) -> Result<Inspect, ApiError> {
    let body = get(socket, &format!("/containers/{id}/json"))?;
    parse_inspect(&body)
}

/// `GET path` over the unix socket; the body of a 200 answer.
pub fn get(socket: &Path, path: &str) -> Result<Vec<u8>, ApiError> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: ig\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut answer)?;
    let (status, body) = parse_response(&answer)?;
    if status != 200 {
        return Err(ApiError::Status {
            status,
            body: String::from_utf8_lossy(body).trim().to_owned(),
        });
    }
    Ok(body.to_vec())
}

/// Split an HTTP/1.x answer into its status code and body.
pub fn parse_response(answer: &[u8]) -> Result<(u16, &[u8]), ApiError> {
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ApiError::Malformed)?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| ApiError::Malformed)?;
    let status_line = head.lines().next().ok_or(ApiError::Malformed)?;
    let mut parts = status_line.split_whitespace();
    let version = parts.next().ok_or(ApiError::Malformed)?;
    if !version.starts_with("HTTP/1.") {
        return Err(ApiError::Malformed);
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(ApiError::Malformed)?;
    Ok((status, &answer[end + 4..]))
}

/// Name and image from an inspect document: docker's (`"Name": "/web"`,
/// `"Config": {"Image": "nginx:latest"}`) or podman's libpod form
/// (`"Name": "web"`, `"ImageName": "docker.io/library/nginx:latest"`).
pub fn parse_inspect(body: &[u8]) -> Result<Inspect, ApiError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::Json(e.to_string()))?;
    let name = v
        .get("Name")
        .and_then(|n| n.as_str())
        .ok_or_else(|| ApiError::Json("no \"Name\"".into()))?
        .trim_start_matches('/')
        .to_owned();
    let image = v
        .get("ImageName")
        .and_then(|i| i.as_str())
        .or_else(|| v.pointer("/Config/Image").and_then(|i| i.as_str()))
        .unwrap_or_default()
        .to_owned();
    Ok(Inspect { name, image })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_documents() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            (
                r#"{"Id":"abc","Name":"/web","Config":{"Image":"nginx:latest","Env":[]},"State":{"Pid":42}}"#,
                Some(("web", "nginx:latest")),
            ),
            (
                r#"{"Id":"abc","Name":"db","ImageName":"docker.io/library/postgres:16","Config":{"Image":"ignored"}}"#,
                Some(("db", "docker.io/library/postgres:16")),
            ),
            (r#"{"Name":"/bare"}"#, Some(("bare", ""))),
            (r#"{"message":"No such container: x"}"#, None),
            ("not json", None),
            (r#"{"Name":7}"#, None),
        ];
        for (body, want) in cases {
            let got = parse_inspect(body.as_bytes())
                .ok()
                .map(|i| (i.name, i.image));
            let want = want.map(|(n, i)| (n.to_owned(), i.to_owned()));
            assert_eq!(got, want, "{body}");
        }
    }

    #[test]
    fn http_answers() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}";
        assert_eq!(parse_response(ok).unwrap(), (200, &b"{\"a\":1}"[..]));
        let missing = b"HTTP/1.1 404 Not Found\r\n\r\n{\"message\":\"no\"}";
        assert_eq!(parse_response(missing).unwrap().0, 404);
        assert!(parse_response(b"HTTP/1.0 200 OK\r\n").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.0 abc\r\n\r\n").is_err());
    }

    /// A fake docker on a unix socket: the client's request and our parsing
    /// of its answer, end to end.
    #[test]
    fn asks_a_fake_docker_over_its_socket() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let l = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 512];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = c.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            c.write_all(
                b"HTTP/1.0 200 OK\r\n\r\n{\"Name\":\"/web\",\"Config\":{\"Image\":\"busybox\"}}",
            )
            .unwrap();
            String::from_utf8(req).unwrap()
        });
        let got = inspect(&sock, "abc123").unwrap();
        assert_eq!(
            got,
            Inspect {
                name: "web".into(),
                image: "busybox".into()
            }
        );
        let req = server.join().unwrap();
        assert!(
            req.starts_with("GET /containers/abc123/json HTTP/1.0\r\n"),
            "{req}"
        );
    }
}
