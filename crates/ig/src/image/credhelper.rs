//! Docker credential helpers: the programs `credsStore` and `credHelpers`
//! of a `config.json` name (`"credsStore": "pass"` means
//! `docker-credential-pass`), run as docker runs them.
//!
//! The protocol (docker's `docker-credential-helpers`): `get` as the only
//! argument, the registry's server URL on stdin, and on stdout a JSON
//! object `{"ServerURL", "Username", "Secret"}`. A helper that has nothing
//! for the registry exits non-zero saying `credentials not found`, which
//! means anonymous; any other failure is an error that names the helper.
//!
//! Owns: running the helper (bounded in time and output) and parsing its
//! answer ([`parse_answer`], pure). Does not own: which helper a registry
//! uses (`auth`).

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::auth::Credentials;

/// Longest a helper may take: some ask a keyring that prompts on a
/// desktop; none should take this long on a server.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read from a helper.
const MAX_ANSWER: u64 = 1 << 20;

/// What a helper says docker reads as "no credentials here".
const NOT_FOUND: &str = "credentials not found";

/// Why a credential helper gave no credentials.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// The helper could not be started (not on `PATH`, not executable).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// `docker-credential-NAME`.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The helper failed.
    #[error("{program} get failed ({status}): {stderr}")]
    Failed {
        /// `docker-credential-NAME`.
        program: String,
        /// How it exited.
        status: String,
        /// What it said (its stdout when stderr is empty), trimmed.
        stderr: String,
    },
    /// The helper did not answer within [`TIMEOUT`].
    #[error("{program} get did not answer within {}s (killed)", TIMEOUT.as_secs())]
    Timeout {
        /// `docker-credential-NAME`.
        program: String,
    },
    /// The helper's answer is not the protocol's JSON.
    #[error("{program} get answered something other than its protocol's JSON: {reason}")]
    BadAnswer {
        /// `docker-credential-NAME`.
        program: String,
        /// Why.
        reason: String,
    },
}

/// The program a helper name designates: `pass` → `docker-credential-pass`.
pub fn program(helper: &str) -> String {
    format!("docker-credential-{helper}")
}

/// Ask helper `helper` (`pass`, `ecr-login`...) for the credentials of
/// `server_url`. `Ok(None)`: it has none (anonymous).
pub fn get(helper: &str, server_url: &str) -> Result<Option<Credentials>, HelperError> {
    let program = program(helper);
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HelperError::Spawn {
            program: program.clone(),
            source,
        })?;
    // The URL is a line: a helper may read to the end or to a newline.
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading closes the pipe: its exit
        // status says what went wrong, not EPIPE.
        let _ = stdin.write_all(format!("{server_url}\n").as_bytes());
    }
    let read = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = r {
                let _ = r.take(MAX_ANSWER).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read(child.stdout.take().map(|o| Box::new(o) as _));
    let err = read(child.stderr.take().map(|e| Box::new(e) as _));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HelperError::Timeout { program });
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        let said = if stderr.iter().all(u8::is_ascii_whitespace) {
            &stdout
        } else {
            &stderr
        };
        let said = String::from_utf8_lossy(said).trim().to_owned();
        if said.contains(NOT_FOUND) {
            return Ok(None);
        }
        return Err(HelperError::Failed {
            program,
            status: status.to_string(),
            stderr: if said.is_empty() {
                "it said nothing".to_owned()
            } else {
                said
            },
        });
    }
    parse_answer(&stdout).map_err(|reason| HelperError::BadAnswer { program, reason })
}

/// A helper's answer to `get`: `{"ServerURL", "Username", "Secret"}`.
/// `Ok(None)` when it holds no secret.
pub fn parse_answer(bytes: &[u8]) -> Result<Option<Credentials>, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let a: Answer = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if a.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: a.username,
        password: a.secret,
    }))
}

/// Where docker keeps its configuration: `$DOCKER_CONFIG`, else
/// `$HOME/.docker`.
pub fn docker_config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".docker"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        let c = parse_answer(br#"{"ServerURL":"r.io","Username":"u","Secret":"s:x"}"#)
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "s:x"));
        assert!(
            parse_answer(br#"{"ServerURL":"r.io","Username":"","Secret":""}"#)
                .unwrap()
                .is_none()
        );
        assert!(parse_answer(b"not json").is_err());
        assert!(parse_answer(b"42").is_err());
    }

    #[test]
    fn a_missing_helper_is_named() {
        let e = get("ig-test-no-such-helper", "r.io").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot run docker-credential-ig-test-no-such-helper:"),
            "{e}"
        );
    }
}
