//! The runtimes' HTTP APIs over their unix sockets, just enough for a
//! container's name, image, image digest and labels, and to hear of new
//! containers: `GET /containers/json?all=1&filters={"id":[ID]}`,
//! `GET /images/ID/json` and `GET /events`, which docker and podman (its
//! docker-compatible API) both answer.
//!
//! The container list, not `GET /containers/ID/json`: docker's inspect
//! takes the container's lock, which `docker start` holds until the
//! container runs, so asking it while the runtime is held before the start
//! (`super::hook`) would wait for the hold to time out. The list reads
//! docker's lock-free view.
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

/// What the enrichment needs of a runtime's answer about a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspect {
    /// The container's name.
    pub name: String,
    /// Its image.
    pub image: String,
    /// The image's id (`sha256:...`), empty if not told.
    pub image_id: String,
    /// The image's digest (`sha256:...` of its manifest in a registry):
    /// known only for images pulled or pushed.
    pub image_digest: String,
    /// The container's labels.
    pub labels: super::oci::Annotations,
}

/// Ask the runtime behind `socket` about container `id` (and its image's
/// digest). `Ok(None)`: the runtime does not know the container.
pub fn inspect(socket: &Path, id: &str) -> Result<Option<Inspect>, ApiError> {
    if !super::oci::is_container_id(id) {
        return Ok(None);
    }
    // `{"id":["<id>"]}`, percent-encoded.
    let path = format!("/containers/json?all=1&filters=%7B%22id%22%3A%5B%22{id}%22%5D%7D");
    let body = get(socket, &path)?;
    let Some(mut found) = parse_list(&body, id)? else {
        return Ok(None);
    };
    if !found.image_id.is_empty()
        && super::oci::is_container_id(found.image_id.trim_start_matches("sha256:"))
    {
        match get(socket, &format!("/images/{}/json", found.image_id)) {
            Ok(img) => found.image_digest = parse_image_digest(&img),
            Err(e) => log::debug!("image {} of {id}: {e}", found.image_id),
        }
    }
    Ok(Some(found))
}

/// Open docker's event stream of container events (`GET /events`): the
/// answer never ends; the caller polls the socket (non-blocking) and reads
/// whatever comes as "something changed".
pub fn events(socket: &Path) -> Result<UnixStream, ApiError> {
    let mut s = UnixStream::connect(socket)?;
    s.set_write_timeout(Some(TIMEOUT))?;
    // `{"type":["container"]}`, percent-encoded.
    write!(
        s,
        "GET /events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D HTTP/1.0\r\nHost: localhost\r\nUser-Agent: ig\r\n\r\n"
    )?;
    s.set_nonblocking(true)?;
    Ok(s)
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

/// The entry of container `id` in a container list (`GET /containers/json`,
/// docker's and podman's compatible form): `"Names": ["/web"]`,
/// `"Image": "nginx:latest"`, `"ImageID": "sha256:..."`, `"Labels": {...}`.
/// `Ok(None)` when the list does not hold it.
pub fn parse_list(body: &[u8], id: &str) -> Result<Option<Inspect>, ApiError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::Json(e.to_string()))?;
    let list = v
        .as_array()
        .ok_or_else(|| ApiError::Json("not a list of containers".into()))?;
    let Some(c) = list
        .iter()
        .find(|c| c.get("Id").and_then(|i| i.as_str()) == Some(id))
    else {
        return Ok(None);
    };
    let s = |k: &str| {
        c.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let name = c
        .pointer("/Names/0")
        .and_then(|n| n.as_str())
        .ok_or_else(|| ApiError::Json("no \"Names\"".into()))?
        .trim_start_matches('/')
        .to_owned();
    let mut labels = super::oci::Annotations::new();
    if let Some(l) = c.get("Labels").and_then(|l| l.as_object()) {
        for (k, v) in l {
            if let Some(v) = v.as_str() {
                labels.insert(k.clone(), v.to_owned());
            }
        }
    }
    Ok(Some(Inspect {
        name,
        image: s("Image"),
        image_id: s("ImageID"),
        image_digest: String::new(),
        labels,
    }))
}

/// The digest of an image (`GET /images/ID/json`): the part after `@` of
/// its first `RepoDigests` entry (upstream's rule); empty for images never
/// pulled or pushed.
pub fn parse_image_digest(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    v.pointer("/RepoDigests/0")
        .and_then(|d| d.as_str())
        .and_then(|d| d.split_once('@'))
        .map(|(_, d)| d.to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_lists() {
        let body = br#"[{"Id":"other","Names":["/x"]},
            {"Id":"abc","Names":["/web"],"Image":"nginx:latest","ImageID":"sha256:11",
             "Labels":{"io.kubernetes.pod.name":"p","n":3}}]"#;
        let got = parse_list(body, "abc").unwrap().unwrap();
        assert_eq!(got.name, "web");
        assert_eq!(got.image, "nginx:latest");
        assert_eq!(got.image_id, "sha256:11");
        assert_eq!(got.labels.len(), 1);
        assert_eq!(got.labels["io.kubernetes.pod.name"], "p");
        assert_eq!(parse_list(body, "nothere").unwrap(), None);
        assert_eq!(parse_list(b"[]", "abc").unwrap(), None);
        assert!(parse_list(br#"{"message":"x"}"#, "abc").is_err());
        assert!(parse_list(b"not json", "abc").is_err());
        assert!(parse_list(br#"[{"Id":"abc","Names":7}]"#, "abc").is_err());
        // Podman's compatible list has the same keys.
        let podman = br#"[{"Id":"abc","Names":["db"],"Image":"docker.io/library/postgres:16"}]"#;
        let got = parse_list(podman, "abc").unwrap().unwrap();
        assert_eq!(
            (got.name.as_str(), got.image.as_str()),
            ("db", "docker.io/library/postgres:16")
        );
    }

    #[test]
    fn image_digests() {
        let img =
            br#"{"Id":"sha256:11","RepoDigests":["127.0.0.1:5000/x@sha256:abcd","y@sha256:ef"]}"#;
        assert_eq!(parse_image_digest(img), "sha256:abcd");
        assert_eq!(parse_image_digest(br#"{"RepoDigests":[]}"#), "");
        assert_eq!(parse_image_digest(br#"{"RepoDigests":["nodigest"]}"#), "");
        assert_eq!(parse_image_digest(b"junk"), "");
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

    /// A fake docker on a unix socket: the client's requests and our
    /// parsing of its answers, end to end.
    #[test]
    fn asks_a_fake_docker_over_its_socket() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let l = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let mut reqs = Vec::new();
            for answer in [
                &br#"[{"Id":"abc123","Names":["/web"],"Image":"busybox","ImageID":"sha256:77"}]"#[..],
                &br#"{"RepoDigests":["r/busybox@sha256:99"]}"#[..],
            ] {
                let (mut c, _) = l.accept().unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 512];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = c.read(&mut buf).unwrap();
                    req.extend_from_slice(&buf[..n]);
                }
                c.write_all(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
                c.write_all(answer).unwrap();
                reqs.push(String::from_utf8(req).unwrap());
            }
            reqs
        });
        let got = inspect(&sock, "abc123").unwrap().unwrap();
        assert_eq!((got.name.as_str(), got.image.as_str()), ("web", "busybox"));
        assert_eq!(got.image_digest, "sha256:99");
        let reqs = server.join().unwrap();
        assert!(
            reqs[0].starts_with(
                "GET /containers/json?all=1&filters=%7B%22id%22%3A%5B%22abc123%22%5D%7D HTTP/1.0\r\n"
            ),
            "{}", reqs[0]
        );
        assert!(
            reqs[1].starts_with("GET /images/sha256:77/json HTTP/1.0\r\n"),
            "{}",
            reqs[1]
        );
        // An id that is not one is never sent.
        assert_eq!(inspect(&sock, "../x").unwrap(), None);
    }
}
