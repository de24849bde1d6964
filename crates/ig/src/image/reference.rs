//! Image references (`trace_exec`, `myorg/foo:v1`, `localhost:5000/x@sha256:…`)
//! and their normalization to the full form stored in the local store.
//!
//! Owns: the grammar (docker-style: `[domain[:port]/]path[:tag][@digest]`),
//! the gadget-specific defaults and the short display form. Does not own:
//! looking anything up (that is `store`) or talking to a registry.
//!
//! Normalization follows upstream `ig` exactly, because the full normalized
//! string is the key under which images are tagged in a store that upstream
//! `ig` may share with us:
//!
//! 1. The part before the first `/` is a registry domain if it contains `.`
//!    or `:`, is `localhost`, or is not all lowercase. Otherwise the whole
//!    input is a path on the default registry `ghcr.io`.
//! 2. A path on `ghcr.io` with a single component gets the official prefix
//!    `inspektor-gadget/gadget/` — also when `ghcr.io` was written out. So
//!    `trace_exec` and `ghcr.io/trace_exec` both mean
//!    `ghcr.io/inspektor-gadget/gadget/trace_exec`, while `myorg/foo` means
//!    `ghcr.io/myorg/foo`.
//! 3. Docker Hub spellings are canonicalized as docker does:
//!    `index.docker.io` → `docker.io`, and a single component on `docker.io`
//!    gets `library/`.
//! 4. Without a tag or digest the tag `latest` is added. With a digest and
//!    no tag, no tag is added.

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};
use crate::text::Echo;

/// Registry used when a reference names none.
pub const DEFAULT_DOMAIN: &str = "ghcr.io";
/// Prefix added to single-component paths on [`DEFAULT_DOMAIN`].
pub const OFFICIAL_REPO_PREFIX: &str = "inspektor-gadget/gadget/";
/// Tag used when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

const LOCALHOST: &str = "localhost";
const DOCKER_DOMAIN: &str = "docker.io";
const LEGACY_DOCKER_DOMAIN: &str = "index.docker.io";
const DOCKER_OFFICIAL_PREFIX: &str = "library/";
/// Longest `domain/path` distribution accepts.
const NAME_MAX_LEN: usize = 255;
/// Longest tag: one leading word character plus up to 127 more.
const TAG_MAX_LEN: usize = 128;
/// Longest reference there can be: a name, a tag and a sha512 digest.
/// Longer input is refused before it is looked at (and echoed cut).
const MAX_REFERENCE_LEN: usize = NAME_MAX_LEN + 1 + TAG_MAX_LEN + 1 + "sha512:".len() + 128;

/// A reference that could not be parsed; carries the user's input so the
/// CLI can echo it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {}: {reason}", Echo(input))]
pub struct ReferenceError {
    /// What the user gave.
    pub input: String,
    /// What is wrong with it.
    pub reason: ReferenceErrorKind,
}

/// What is wrong with a reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceErrorKind {
    /// Reference is empty.
    #[error("reference is empty")]
    Empty,
    /// The reference is longer than any valid one can be.
    #[error("it is {0} characters long; no reference is longer than {MAX_REFERENCE_LEN}")]
    TooLong(usize),
    /// Reference contains whitespace or control characters.
    #[error("reference contains whitespace or control characters")]
    Whitespace,
    /// Invalid registry host.
    #[error("invalid registry host {}", Echo(.0))]
    InvalidDomain(String),
    /// Repository name must be lowercase.
    #[error("repository name {} must be lowercase", Echo(.0))]
    Uppercase(String),
    /// Invalid repository path (components are lowercase letters and digits
    /// separated by '.', '_', '__' or '-').
    #[error(
        "invalid repository path {} (components are lowercase letters and digits separated by '.', '_', '__' or '-')",
        Echo(.0)
    )]
    InvalidPath(String),
    /// Repository name is longer than `NAME_MAX_LEN` characters.
    #[error("repository name is longer than {NAME_MAX_LEN} characters")]
    NameTooLong,
    /// Invalid tag (up to `TAG_MAX_LEN` letters, digits, '_', '.' or '-', not
    /// starting with '.' or '-').
    #[error(
        "invalid tag {} (up to {TAG_MAX_LEN} letters, digits, '_', '.' or '-', not starting with '.' or '-')",
        Echo(.0)
    )]
    InvalidTag(String),
    /// Invalid digest `digest`.
    #[error("invalid digest {}: {source}", Echo(digest))]
    InvalidDigest {
        /// The digest.
        digest: String,
        /// Why.
        #[source]
        source: DigestError,
    },
}

/// A normalized image reference: `domain/path[:tag][@digest]`.
///
/// After [`Reference::parse`] there is always a tag or a digest (or both).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes a user-supplied reference (see the module docs).
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let err = |reason| ReferenceError {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(err(ReferenceErrorKind::Empty));
        }
        let len = input.chars().count();
        if len > MAX_REFERENCE_LEN {
            return Err(err(ReferenceErrorKind::TooLong(len)));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(ReferenceErrorKind::Whitespace));
        }

        let (domain, remainder) = split_domain(input);

        // Digest first: '@' cannot occur in a name or tag, and a digest
        // contains ':' which must not be mistaken for a tag separator.
        let (name_and_tag, digest) = match remainder.split_once('@') {
            Some((nt, d)) => {
                let digest = Digest::parse(d).map_err(|source| {
                    err(ReferenceErrorKind::InvalidDigest {
                        digest: d.to_owned(),
                        source,
                    })
                })?;
                (nt, Some(digest))
            }
            None => (remainder.as_str(), None),
        };
        // The remainder holds no domain any more, so any ':' starts the tag.
        let (path, tag) = match name_and_tag.split_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (name_and_tag, None),
        };

        if !valid_domain(&domain) {
            return Err(err(ReferenceErrorKind::InvalidDomain(domain)));
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(err(ReferenceErrorKind::Uppercase(path.to_owned())));
        }
        if !valid_path(path) {
            return Err(err(ReferenceErrorKind::InvalidPath(path.to_owned())));
        }
        if domain.len() + 1 + path.len() > NAME_MAX_LEN {
            return Err(err(ReferenceErrorKind::NameTooLong));
        }
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(err(ReferenceErrorKind::InvalidTag(t.to_owned())));
        }

        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            domain,
            path: path.to_owned(),
            tag,
            digest,
        })
    }

    /// Registry host, with port if any: `ghcr.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Repository path inside the registry: `inspektor-gadget/gadget/trace_exec`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference has one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `domain/path`, what docker calls the name and `ig image list` the
    /// repository.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as upstream `ig image list` shows it: official
    /// gadgets lose their `ghcr.io/inspektor-gadget/gadget/` prefix.
    pub fn short_repository(&self) -> String {
        short_repository(&self.repository())
    }

    /// A compact form for humans: the short repository plus tag/digest.
    /// Parsing it again yields the same reference, since a bare name maps
    /// back to the official prefix.
    pub fn short(&self) -> String {
        let mut s = self.short_repository();
        push_tag_digest(&mut s, self.tag(), self.digest());
        s
    }

    /// Same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError {
                input: format!("{}:{tag}", self.repository()),
                reason: ReferenceErrorKind::InvalidTag(tag.to_owned()),
            });
        }
        Ok(Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// Same repository pinned to `digest`, keeping the tag.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

/// Strips the official prefix from a full repository name, as upstream's
/// image list does.
pub fn short_repository(repository: &str) -> String {
    let official = format!("{DEFAULT_DOMAIN}/{OFFICIAL_REPO_PREFIX}");
    repository
        .strip_prefix(&official)
        .unwrap_or(repository)
        .to_owned()
}

fn push_tag_digest(s: &mut String, tag: Option<&str>, digest: Option<&Digest>) {
    if let Some(t) = tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = digest {
        s.push('@');
        s.push_str(&d.to_string());
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.repository();
        push_tag_digest(&mut s, self.tag(), self.digest());
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Splits `input` into (domain, remainder) and applies the default registry,
/// the official prefix and docker's canonical spellings.
fn split_domain(input: &str) -> (String, String) {
    let (mut domain, mut remainder) = match input.split_once('/') {
        Some((first, rest)) if looks_like_domain(first) => (first.to_owned(), rest.to_owned()),
        _ => (DEFAULT_DOMAIN.to_owned(), input.to_owned()),
    };
    if domain == LEGACY_DOCKER_DOMAIN {
        domain = DOCKER_DOMAIN.to_owned();
    }
    if !remainder.contains('/') {
        if domain == DEFAULT_DOMAIN {
            remainder.insert_str(0, OFFICIAL_REPO_PREFIX);
        } else if domain == DOCKER_DOMAIN {
            remainder.insert_str(0, DOCKER_OFFICIAL_PREFIX);
        }
    }
    (domain, remainder)
}

/// Upstream's rule for whether the first path part names a registry.
/// Uppercase counts because repository paths may not contain it.
fn looks_like_domain(first: &str) -> bool {
    first.contains(['.', ':']) || first == LOCALHOST || first.to_lowercase() != first
}

/// `host[:port]` where host is dot-separated labels (letters, digits, inner
/// '-') or a bracketed IPv6 address.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty() || !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("[v6]", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if host == "[v6]" {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// `component('/'component)*`, each component lowercase alphanumeric runs
/// joined by a separator: '.', '_', '__' or one or more '-'.
fn valid_path(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(valid_path_component)
}

fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run, which must be followed by an alphanumeric (the
        // last byte is alphanumeric, so one always follows).
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= TAG_MAX_LEN
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        Reference::parse(s)
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
            .to_string()
    }

    #[test]
    fn normalization_table() {
        let d = format!("sha256:{HEX}");
        let cases: Vec<(String, String)> = vec![
            // Bare names go to the official repository.
            (
                "trace_exec".into(),
                "ghcr.io/inspektor-gadget/gadget/trace_exec:latest".into(),
            ),
            (
                "ig".into(),
                "ghcr.io/inspektor-gadget/gadget/ig:latest".into(),
            ),
            (
                "ig:latest".into(),
                "ghcr.io/inspektor-gadget/gadget/ig:latest".into(),
            ),
            (
                "trace_exec:v0.42.0".into(),
                "ghcr.io/inspektor-gadget/gadget/trace_exec:v0.42.0".into(),
            ),
            // Two or more parts without a domain stay on ghcr.io, unprefixed.
            ("myorg/foo".into(), "ghcr.io/myorg/foo:latest".into()),
            (
                "inspektor-gadget/ig:foobar".into(),
                "ghcr.io/inspektor-gadget/ig:foobar".into(),
            ),
            (
                "xyz/gadget/trace_exec".into(),
                "ghcr.io/xyz/gadget/trace_exec:latest".into(),
            ),
            // Explicit ghcr.io with one component still gets the prefix.
            (
                "ghcr.io/trace_exec".into(),
                "ghcr.io/inspektor-gadget/gadget/trace_exec:latest".into(),
            ),
            ("ghcr.io/a/b:v1".into(), "ghcr.io/a/b:v1".into()),
            // Domains: a dot, a port, localhost.
            (
                "foobar.baz/xyz/gadget/trace_exec".into(),
                "foobar.baz/xyz/gadget/trace_exec:latest".into(),
            ),
            (
                "foobar.baz:443/xyz/trace_exec:v0.42.0".into(),
                "foobar.baz:443/xyz/trace_exec:v0.42.0".into(),
            ),
            (
                "ghcr.io:443/inspektor-gadget/ig:baz".into(),
                "ghcr.io:443/inspektor-gadget/ig:baz".into(),
            ),
            (
                "localhost/trace_exec".into(),
                "localhost/trace_exec:latest".into(),
            ),
            (
                "localhost/a/b/c/trace_exec".into(),
                "localhost/a/b/c/trace_exec:latest".into(),
            ),
            ("localhost:5000/x".into(), "localhost:5000/x:latest".into()),
            (
                "localhost:5000/trace_exec:v1.0.3".into(),
                "localhost:5000/trace_exec:v1.0.3".into(),
            ),
            ("[::1]:5000/x".into(), "[::1]:5000/x:latest".into()),
            (
                "127.0.0.1:5000/a/b".into(),
                "127.0.0.1:5000/a/b:latest".into(),
            ),
            // An uppercase first part is taken as a domain, like docker.
            ("MyRegistry/foo".into(), "MyRegistry/foo:latest".into()),
            // Docker Hub canonicalization.
            (
                "docker.io/foo".into(),
                "docker.io/library/foo:latest".into(),
            ),
            (
                "index.docker.io/foo/bar".into(),
                "docker.io/foo/bar:latest".into(),
            ),
            // Digests: no tag is added; a tag given alongside is kept.
            (
                format!("trace_exec@{d}"),
                format!("ghcr.io/inspektor-gadget/gadget/trace_exec@{d}"),
            ),
            (
                format!("trace_exec:v1@{d}"),
                format!("ghcr.io/inspektor-gadget/gadget/trace_exec:v1@{d}"),
            ),
            (
                format!("localhost:5000/x@{d}"),
                format!("localhost:5000/x@{d}"),
            ),
            // Separators.
            (
                "a__b/c-d---e/f.g".into(),
                "ghcr.io/a__b/c-d---e/f.g:latest".into(),
            ),
            (
                "foo:V1_.-x".into(),
                "ghcr.io/inspektor-gadget/gadget/foo:V1_.-x".into(),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(norm(&input), want, "input {input:?}");
            // Normalization is idempotent.
            assert_eq!(norm(&want), want, "re-parsing {want:?}");
        }
    }

    #[test]
    fn parts_and_short_forms() {
        let r = Reference::parse("trace_exec").unwrap();
        assert_eq!(r.domain(), "ghcr.io");
        assert_eq!(r.path(), "inspektor-gadget/gadget/trace_exec");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.digest(), None);
        assert_eq!(r.repository(), "ghcr.io/inspektor-gadget/gadget/trace_exec");
        assert_eq!(r.short_repository(), "trace_exec");
        assert_eq!(r.short(), "trace_exec:latest");
        assert_eq!(Reference::parse(&r.short()).unwrap(), r);

        let other = Reference::parse("localhost:5000/x:v2").unwrap();
        assert_eq!(other.short(), "localhost:5000/x:v2");
        assert_eq!(
            other.with_tag("v3").unwrap().to_string(),
            "localhost:5000/x:v3"
        );
        assert!(other.with_tag("-bad").is_err());
        let d = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(
            other.with_digest(d.clone()).to_string(),
            format!("localhost:5000/x:v2@{d}")
        );
        assert_eq!("trace_exec".parse::<Reference>().unwrap(), r);
    }

    #[test]
    fn invalid_inputs() {
        let long_tag = "a".repeat(129);
        let long_name = format!("example.com/{}", "a".repeat(250));
        type Check = fn(&ReferenceErrorKind) -> bool;
        let cases: Vec<(String, Check)> = vec![
            ("".into(), |k| matches!(k, ReferenceErrorKind::Empty)),
            (" trace_exec".into(), |k| {
                matches!(k, ReferenceErrorKind::Whitespace)
            }),
            ("trace exec".into(), |k| {
                matches!(k, ReferenceErrorKind::Whitespace)
            }),
            ("Trace_exec".into(), |k| {
                matches!(k, ReferenceErrorKind::Uppercase(_))
            }),
            ("example.com/Foo".into(), |k| {
                matches!(k, ReferenceErrorKind::Uppercase(_))
            }),
            ("inspektor-gadget/ig:~½¬".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidTag(_))
            }),
            ("foo:".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidTag(_))
            }),
            ("foo:-x".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidTag(_))
            }),
            (format!("foo:{long_tag}"), |k| {
                matches!(k, ReferenceErrorKind::InvalidTag(_))
            }),
            ("foo:a:b".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidTag(_))
            }),
            (
                "https://ghcr.io:443/inspektor-gadget/ig:latest".into(),
                |k| matches!(k, ReferenceErrorKind::InvalidDomain(_)),
            ),
            ("https://inspektor-gadget/ig:baz".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidDomain(_))
            }),
            ("localhost:abc/x".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidDomain(_))
            }),
            ("-bad.com/x".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidDomain(_))
            }),
            ("a_b.c/x".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidDomain(_))
            }),
            ("foo/".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidPath(_))
            }),
            ("foo//bar".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidPath(_))
            }),
            ("-foo".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidPath(_))
            }),
            ("foo_".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidPath(_))
            }),
            ("a___b".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidPath(_))
            }),
            ("a.-b".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidPath(_))
            }),
            ("a..b".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidPath(_))
            }),
            ("localhost:5000/".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidPath(_))
            }),
            (":v1".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidPath(_))
            }),
            (long_name, |k| matches!(k, ReferenceErrorKind::NameTooLong)),
            ("a".repeat(100_000), |k| {
                matches!(k, ReferenceErrorKind::TooLong(100_000))
            }),
            ("foo@sha256:abc".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidDigest { .. })
            }),
            (format!("foo@SHA256:{HEX}"), |k| {
                matches!(k, ReferenceErrorKind::InvalidDigest { .. })
            }),
            (format!("foo@md5:{HEX}"), |k| {
                matches!(k, ReferenceErrorKind::InvalidDigest { .. })
            }),
            ("foo@".into(), |k| {
                matches!(k, ReferenceErrorKind::InvalidDigest { .. })
            }),
        ];
        for (input, check) in cases {
            match Reference::parse(&input) {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(e) => {
                    assert_eq!(e.input, input);
                    assert!(check(&e.reason), "{input:?}: unexpected {:?}", e.reason);
                    // The message names the input (cut after 200
                    // characters).
                    let shown = crate::text::Echo(&input).to_string();
                    assert!(e.to_string().contains(&shown), "{e}");
                }
            }
        }
    }
}
