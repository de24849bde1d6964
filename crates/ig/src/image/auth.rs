//! Registry credentials in a docker-style `config.json`
//! (`{"auths": {"ghcr.io": {"auth": base64("user:password")}}}`), the file
//! `ig login` writes and `ig image push/pull` read.
//!
//! Owns: reading, updating and atomically rewriting that file (mode 0600,
//! since it holds passwords in the clear), and finding the entry for a
//! registry host, and which file holds the credentials for a host
//! ([`credentials_for`]: the one given, else ours, then docker's, as
//! upstream), and which credential helper a file names for a host
//! (`credHelpers`, `credsStore`: run by `credhelper`). Does not own:
//! prompting for a password, or checking credentials against a registry
//! (`registry`).
//!
//! Everything in the file that we do not manage (`credsStore`, other tools'
//! keys, extra fields of an entry) is kept as it was, because docker,
//! podman and skopeo may share the file.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::credhelper;
use crate::files::TempFile;

/// Where upstream `ig` keeps credentials.
pub const DEFAULT_AUTH_FILE: &str = "/var/lib/ig/config.json";

/// Docker Hub's historical key in `config.json`.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Largest credentials file we read: it is a few hundred bytes in practice.
const MAX_AUTH_FILE: u64 = 4 << 20;

/// Why the credentials file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Reading or writing the credentials file failed.
    #[error("{op} credentials file {}: {source}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Credentials file `path` is not valid JSON.
    #[error("credentials file {} is not valid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The credentials file is malformed.
    #[error("credentials file {}: {what}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Credentials file `path` is larger than `MAX_AUTH_FILE` bytes.
    #[error("credentials file {} is larger than {MAX_AUTH_FILE} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The credential helper the file names for the registry failed.
    #[error("the credential helper for {registry} (named in {}) failed", path.display())]
    Helper {
        /// The registry.
        registry: String,
        /// The file naming the helper.
        path: PathBuf,
        /// Why, naming the helper's program.
        #[source]
        source: credhelper::HelperError,
    },
    /// A user name must not be empty or contain ':'.
    #[error("a user name must not be empty or contain ':'")]
    BadUsername,
}

/// Where `ig login` writes: `authfile` when given, else
/// [`DEFAULT_AUTH_FILE`].
pub fn write_path(authfile: Option<&Path>) -> PathBuf {
    authfile.map_or_else(|| PathBuf::from(DEFAULT_AUTH_FILE), Path::to_path_buf)
}

/// Docker's credentials file (`$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`), if it exists.
pub fn docker_auth_file() -> Option<PathBuf> {
    let docker = credhelper::docker_config_dir()?.join("config.json");
    docker.exists().then_some(docker)
}

/// The credentials for `host`, and where they come from (a file, or a
/// credential helper and the file that names it): with `authfile` that
/// file alone; otherwise ig's own file, and for a registry it has nothing
/// for, docker's `config.json` (as upstream ig falls back). Chosen per
/// registry, so logging in to one registry with ig does not hide docker's
/// credentials for the others.
///
/// In each file, a credential helper for the registry (`credHelpers`,
/// else `credsStore`) is asked first, as docker does; when it has nothing
/// for the registry, the file's own entry counts. A helper that fails is
/// an error naming it, never a silent anonymous pull.
pub fn credentials_for(
    host: &str,
    authfile: Option<&Path>,
) -> Result<Option<(Credentials, String)>, AuthError> {
    let own = write_path(authfile);
    if let Some(found) = AuthFile::load(&own)?.lookup(host)? {
        return Ok(Some(found));
    }
    if authfile.is_some() {
        return Ok(None);
    }
    let Some(docker) = docker_auth_file() else {
        return Ok(None);
    };
    AuthFile::load(&docker)?.lookup(host)
}

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password (or token).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print a password, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The parsed credentials file. Cheap to clone; write it back with
/// [`AuthFile::save`].
#[derive(Debug, Clone, PartialEq)]
pub struct AuthFile {
    path: PathBuf,
    root: Map<String, Value>,
}

impl AuthFile {
    /// Reads `path`; a missing file reads as an empty one.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, AuthError> {
        let path = path.into();
        let bytes = match fs::metadata(&path) {
            Ok(m) if m.len() > MAX_AUTH_FILE => return Err(AuthError::TooLarge { path }),
            Ok(_) => fs::read(&path).map_err(|source| AuthError::Io {
                op: "reading",
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(AuthError::Io {
                    op: "reading",
                    path,
                    source,
                });
            }
        };
        let root = if bytes.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(Value::Object(m)) => m,
                Ok(_) => {
                    return Err(AuthError::Malformed {
                        path,
                        what: "the top level is not a JSON object".into(),
                    });
                }
                Err(source) => return Err(AuthError::Json { path, source }),
            }
        };
        if root.get("auths").is_some_and(|a| !a.is_object()) {
            return Err(AuthError::Malformed {
                path,
                what: "\"auths\" is not an object".into(),
            });
        }
        Ok(AuthFile { path, root })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials stored for `registry` (`host[:port]`), trying the
    /// spellings docker uses as keys (`https://host`, `host/v1/`, ...).
    /// An entry whose `auth` does not decode is treated as absent.
    pub fn get(&self, registry: &str) -> Option<Credentials> {
        let auths = self.root.get("auths")?.as_object()?;
        let wanted = normalize_key(registry);
        auths
            .iter()
            .filter(|(k, _)| normalize_key(k) == wanted)
            .find_map(|(_, v)| decode_entry(v))
    }

    /// The credential helper this file names for `registry`: its
    /// `credHelpers` entry, else its `credsStore` (`pass` for
    /// `docker-credential-pass`).
    pub fn helper_for(&self, registry: &str) -> Option<String> {
        let wanted = normalize_key(registry);
        let named = |v: &Value| {
            v.as_str()
                .filter(|h| !h.trim().is_empty())
                .map(str::to_owned)
        };
        self.root
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|h| {
                h.iter()
                    .filter(|(k, _)| normalize_key(k) == wanted)
                    .find_map(|(_, v)| named(v))
            })
            .or_else(|| self.root.get("credsStore").and_then(named))
    }

    /// The credentials of `registry` this file gives: from its helper
    /// ([`AuthFile::helper_for`]), else its entry; and where they come from.
    pub fn lookup(&self, registry: &str) -> Result<Option<(Credentials, String)>, AuthError> {
        if let Some(helper) = self.helper_for(registry) {
            let url = if normalize_key(registry) == "docker.io" {
                DOCKER_HUB_KEY
            } else {
                registry
            };
            match credhelper::get(&helper, url) {
                Ok(Some(c)) => {
                    let from = format!(
                        "{} (named in {})",
                        credhelper::program(&helper),
                        self.path.display()
                    );
                    return Ok(Some((c, from)));
                }
                Ok(None) => log::debug!(
                    "{}: no credentials for {registry}",
                    credhelper::program(&helper)
                ),
                Err(source) => {
                    return Err(AuthError::Helper {
                        registry: registry.to_owned(),
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
        Ok(self
            .get(registry)
            .map(|c| (c, self.path.display().to_string())))
    }

    /// Stores credentials for `registry`, replacing any entry under one of
    /// its spellings. Call [`AuthFile::save`] to write the file.
    pub fn set(&mut self, registry: &str, creds: &Credentials) -> Result<(), AuthError> {
        if creds.username.is_empty() || creds.username.contains(':') {
            return Err(AuthError::BadUsername);
        }
        self.remove(registry);
        let key = if normalize_key(registry) == "docker.io" {
            DOCKER_HUB_KEY.to_owned()
        } else {
            registry.to_owned()
        };
        let token = STANDARD.encode(format!("{}:{}", creds.username, creds.password));
        let auths = self
            .root
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(auths) = auths {
            let mut entry = Map::new();
            entry.insert("auth".into(), Value::String(token));
            auths.insert(key, Value::Object(entry));
        }
        Ok(())
    }

    /// Forgets every entry for `registry`. Returns whether there was one.
    pub fn remove(&mut self, registry: &str) -> bool {
        let wanted = normalize_key(registry);
        let Some(Value::Object(auths)) = self.root.get_mut("auths") else {
            return false;
        };
        let before = auths.len();
        auths.retain(|k, _| normalize_key(k) != wanted);
        auths.len() != before
    }

    /// Writes the file atomically with mode 0600, creating its directory
    /// (mode 0700) if needed.
    pub fn save(&self) -> Result<(), AuthError> {
        let io_err = |op, source| AuthError::Io {
            op,
            path: self.path.clone(),
            source,
        };
        let mut bytes = serde_json::to_vec_pretty(&Value::Object(self.root.clone()))
            .map_err(|e| io_err("encoding", io::Error::other(e)))?;
        bytes.push(b'\n');
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_err("creating the directory of", e))?;
        let name = self
            .path
            .file_name()
            .ok_or_else(|| io_err("writing", io::ErrorKind::InvalidInput.into()))?;
        // A temp file nobody can have planted a link at, even in a
        // directory others can write (`crate::files`).
        let prefix = format!(".{}.ig-tmp-", name.to_string_lossy());
        let write = || -> io::Result<()> {
            let mut f = TempFile::create(&dir, &prefix, 0o600)?;
            f.write_all(&bytes)?;
            f.persist_as(name)
        };
        write().map_err(|e| io_err("writing", e))
    }
}

/// The host a `config.json` key designates: scheme, path and trailing
/// slashes dropped, Docker Hub's aliases folded into `docker.io`.
fn normalize_key(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        _ => host,
    }
}

fn decode_entry(v: &Value) -> Option<Credentials> {
    let obj = v.as_object()?;
    if let Some(auth) = obj.get("auth").and_then(Value::as_str)
        && !auth.is_empty()
    {
        let decoded = STANDARD.decode(auth.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':')?;
        return Some(Credentials {
            username: user.to_owned(),
            password: pass.to_owned(),
        });
    }
    // Some tools write the parts separately.
    let user = obj.get("username")?.as_str()?;
    let pass = obj.get("password")?.as_str()?;
    Some(Credentials {
        username: user.to_owned(),
        password: pass.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn round_trip_keeps_foreign_keys_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            &path,
            r#"{"credsStore":"pass","auths":{"other.io":{"auth":"eDp5","email":"a@b"}}}"#,
        )
        .unwrap();
        let mut f = AuthFile::load(&path).unwrap();
        f.set("127.0.0.1:5000", &creds("user", "p:a:ss")).unwrap();
        f.save().unwrap();

        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["credsStore"], "pass");
        assert_eq!(v["auths"]["other.io"]["email"], "a@b");
        assert_eq!(
            v["auths"]["127.0.0.1:5000"]["auth"],
            STANDARD.encode("user:p:a:ss")
        );

        let f = AuthFile::load(&path).unwrap();
        assert_eq!(f.get("127.0.0.1:5000"), Some(creds("user", "p:a:ss")));
        assert_eq!(f.get("other.io"), Some(creds("x", "y")));
        assert_eq!(f.get("nowhere.io"), None);
    }

    /// The temp name used to be `.config.json.ig-tmp-PID`, opened with
    /// `O_CREAT|O_TRUNC`: a link planted there by someone who could write
    /// the directory made the writer (root) overwrite its target with the
    /// credentials.
    #[test]
    fn a_link_planted_at_the_old_temp_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let planted = crate::files::PlantedLink::plant(
            dir.path(),
            &format!(".config.json.ig-tmp-{}", std::process::id()),
        );
        let mut f = AuthFile::load(&path).unwrap();
        f.set("ghcr.io", &creds("a", "b")).unwrap();
        f.save().unwrap();
        planted.assert_not_followed();
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(
            AuthFile::load(&path).unwrap().get("ghcr.io"),
            Some(creds("a", "b"))
        );
    }

    #[test]
    fn missing_file_is_empty_and_remove_reports() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = AuthFile::load(dir.path().join("none.json")).unwrap();
        assert_eq!(f.get("ghcr.io"), None);
        assert!(!f.remove("ghcr.io"));
        f.set("ghcr.io", &creds("a", "b")).unwrap();
        assert!(f.remove("https://ghcr.io/"));
        assert_eq!(f.get("ghcr.io"), None);
    }

    #[test]
    fn docker_spellings_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let hub = STANDARD.encode("hub:pw");
        let ghcr = STANDARD.encode("gh:pw");
        fs::write(
            &path,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{hub}"}},"https://ghcr.io":{{"auth":"{ghcr}"}}}}}}"#
            ),
        )
        .unwrap();
        let mut f = AuthFile::load(&path).unwrap();
        assert_eq!(f.get("docker.io"), Some(creds("hub", "pw")));
        assert_eq!(f.get("ghcr.io"), Some(creds("gh", "pw")));
        // Setting replaces the other spelling instead of adding a second entry.
        f.set("ghcr.io", &creds("new", "pw")).unwrap();
        assert_eq!(f.get("ghcr.io"), Some(creds("new", "pw")));
        let auths = f.root["auths"].as_object().unwrap();
        assert_eq!(auths.len(), 2, "{auths:?}");
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        for bad in ["[1]", "{\"auths\": 3}", "{not json"] {
            fs::write(&path, bad).unwrap();
            assert!(AuthFile::load(&path).is_err(), "{bad}");
        }
        // An undecodable entry is just absent.
        fs::write(&path, r#"{"auths":{"a.io":{"auth":"!!!"}}}"#).unwrap();
        assert_eq!(AuthFile::load(&path).unwrap().get("a.io"), None);
        let mut f = AuthFile::load(&path).unwrap();
        assert!(matches!(
            f.set("a.io", &creds("u:x", "p")),
            Err(AuthError::BadUsername)
        ));
    }

    #[test]
    fn debug_hides_the_password() {
        let s = format!("{:?}", creds("me", "secret"));
        assert!(s.contains("me") && !s.contains("secret"), "{s}");
    }
}
