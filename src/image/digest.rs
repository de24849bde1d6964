//! Content digests (`sha256:<hex>`), as used by OCI descriptors and by
//! `name@digest` references.
//!
//! Owns: parsing and validating digest strings, hashing bytes, and turning a
//! digest into its blob path inside an image layout. Does not own: reading or
//! writing blobs (that is `store`).
//!
//! A digest is validated strictly (known algorithm, lowercase hex of the exact
//! length) because its hex part becomes a file name under `blobs/`: a lax
//! parser would let a crafted `index.json` point outside the store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256, Sha512};

/// Hash algorithms a digest may name. OCI registers sha256 and sha512;
/// go-digest (used by upstream) also accepts sha384, which we parse but
/// never produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// SHA-256: what ig writes.
    Sha256,
    /// SHA-384: read, never written.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// Its name in a digest (`sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding of this algorithm's output.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha384 => 96,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha384" => Some(Algorithm::Sha384),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Missing ':' between algorithm and hex.
    #[error("missing ':' between algorithm and hex")]
    MissingSeparator,
    /// Unsupported digest algorithm.
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// `algorithm` digest needs `expected` lowercase hex characters, got `got`.
    #[error("{algorithm} digest needs {expected} lowercase hex characters, got {got:?}")]
    BadEncoding {
        /// The algorithm.
        algorithm: &'static str,
        /// What was expected.
        expected: usize,
        /// What was found.
        got: String,
    },
}

/// A validated content digest such as `sha256:e3b0c442...`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    /// Always lowercase hex of `algorithm.hex_len()` characters.
    hex: String,
}

impl Digest {
    /// Parses `algorithm:hex`, rejecting unknown algorithms, uppercase hex
    /// and wrong lengths (as go-digest's `Validate` does).
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (alg, hex) = s.split_once(':').ok_or(DigestError::MissingSeparator)?;
        let algorithm = Algorithm::from_name(alg)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm(alg.to_owned()))?;
        if hex.len() != algorithm.hex_len() || !is_lower_hex(hex) {
            return Err(DigestError::BadEncoding {
                algorithm: algorithm.as_str(),
                expected: algorithm.hex_len(),
                got: hex.to_owned(),
            });
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// The sha256 digest of `bytes`: what this crate writes.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: to_hex(&Sha256::digest(bytes)),
        }
    }

    /// Digest of `bytes` computed with this digest's algorithm.
    pub fn compute_like(&self, bytes: &[u8]) -> Digest {
        let hex = match self.algorithm {
            Algorithm::Sha256 => to_hex(&Sha256::digest(bytes)),
            Algorithm::Sha384 => to_hex(&sha2::Sha384::digest(bytes)),
            Algorithm::Sha512 => to_hex(&Sha512::digest(bytes)),
        };
        Digest {
            algorithm: self.algorithm,
            hex,
        }
    }

    /// A hasher of this digest's algorithm, for content that arrives in
    /// pieces (a blob streamed from a registry or read from a file).
    pub fn hasher_like(&self) -> Hasher {
        Hasher(match self.algorithm {
            Algorithm::Sha256 => HasherState::Sha256(Sha256::new()),
            Algorithm::Sha384 => HasherState::Sha384(sha2::Sha384::new()),
            Algorithm::Sha512 => HasherState::Sha512(Sha512::new()),
        })
    }

    /// True when `bytes` hash to this digest.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        self.compute_like(bytes) == *self
    }

    /// The hash algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as `ig image list` shows them.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// Path of this blob relative to an image layout root:
    /// `blobs/<algorithm>/<hex>`. Safe to join: both parts were validated.
    pub fn blob_rel_path(&self) -> std::path::PathBuf {
        std::path::Path::new("blobs")
            .join(self.algorithm.as_str())
            .join(&self.hex)
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Incremental hashing with one of the [`Algorithm`]s; see
/// [`Digest::hasher_like`].
#[derive(Clone)]
pub struct Hasher(HasherState);

#[derive(Clone)]
enum HasherState {
    Sha256(Sha256),
    Sha384(sha2::Sha384),
    Sha512(Sha512),
}

impl Hasher {
    /// Hash `bytes` too.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            HasherState::Sha256(h) => h.update(bytes),
            HasherState::Sha384(h) => h.update(bytes),
            HasherState::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything passed to [`Hasher::update`].
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self.0 {
            HasherState::Sha256(h) => (Algorithm::Sha256, to_hex(&h.finalize())),
            HasherState::Sha384(h) => (Algorithm::Sha384, to_hex(&h.finalize())),
            HasherState::Sha512(h) => (Algorithm::Sha512, to_hex(&h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher")
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
    out
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY_SHA256);
    }

    #[test]
    fn parse_round_trips_and_matches() {
        let d = Digest::parse(EMPTY_SHA256).unwrap();
        assert_eq!(d.to_string(), EMPTY_SHA256);
        assert!(d.matches(b""));
        assert!(!d.matches(b"x"));
        assert_eq!(d.short(), "e3b0c44298fc");
        assert_eq!(
            d.blob_rel_path(),
            std::path::Path::new(
                "blobs/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
        );
    }

    #[test]
    fn sha512_is_checked_with_its_own_algorithm() {
        let want = Digest {
            algorithm: Algorithm::Sha512,
            hex: to_hex(&Sha512::digest(b"abc")),
        };
        let parsed = Digest::parse(&want.to_string()).unwrap();
        assert!(parsed.matches(b"abc"));
    }

    #[test]
    fn incremental_hashing_matches_one_shot() {
        for d in [
            Digest::sha256_of(b""),
            Digest::parse(&format!("sha512:{}", to_hex(&Sha512::digest(b"")))).unwrap(),
        ] {
            let mut h = d.hasher_like();
            h.update(b"hello ");
            h.update(b"world");
            assert_eq!(h.finish(), d.compute_like(b"hello world"));
        }
    }

    #[test]
    fn rejects_bad_digests() {
        let upper = EMPTY_SHA256.to_uppercase().replace("SHA256", "sha256");
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            upper.as_str(),
            "sha256:../../../../etc/passwd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: Digest = serde_json::from_str(&format!("\"{EMPTY_SHA256}\"")).unwrap();
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            format!("\"{EMPTY_SHA256}\"")
        );
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
