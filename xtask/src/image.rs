//! `cargo xtask image`: the container image of `ig` that
//! `deploy/kubernetes/daemonset.yaml` runs.
//!
//! ```text
//! cargo xtask image [--no-build] [--tag REF]... [--output FILE]
//! ```
//!
//! Builds the dist binaries (`cargo xtask dist`: static musl, stripped;
//! `--no-build` takes `target/dist/` as it is) and packs them as a
//! one-layer image:
//!
//! - the layer holds `/usr/bin/ig` and `/usr/bin/gadgetctl` (the DaemonSet's
//!   probes run it) and nothing else: no shell, no libc, no `/etc` (the
//!   binaries are static and `ig` embeds the gadget author headers); every
//!   entry is owned by 0:0 and readable and executable by anyone (0755);
//! - the config runs `/usr/bin/ig` (entrypoint, `PATH=/usr/bin`) as root,
//!   and carries the labels `org.opencontainers.image.{title,description,
//!   version,source,revision,licenses,created}`: the version `ig --version`
//!   says, the repository of Cargo.toml, the git commit (`-dirty` appended
//!   when tracked files differ from it), and the commit's time; the
//!   manifest carries the same as annotations;
//! - the default tag is `localhost/ig:VERSION` (the name daemonset.yaml
//!   uses; `--tag` replaces it, repeatable: `--tag registry.example/ig:v1`).
//!
//! The output, `target/dist/ig-image-VERSION.tar` (or `--output`), is one
//! uncompressed tar that is at once an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/`) and a `docker save` archive
//! (`manifest.json` naming the same blobs), the form buildkit's docker
//! exporter writes: `ctr image import` reads the former, `docker load`
//! (docker 20.10 too, which does not read a bare OCI layout) the latter;
//! `skopeo copy oci-archive:FILE docker://REGISTRY/ig:TAG` pushes it.
//!
//! It is deterministic: sorted entries, fixed owners, modes and times (0
//! in the layer, the commit's time for `created`), gzip without a name or
//! time: the same binaries at the same commit give the same bytes, so the
//! same digest. `tests/dist/image.rs` imports it into containerd and
//! docker and runs it with the DaemonSet's exact container spec.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// Where the binaries go in the image (the DaemonSet runs them from there).
pub const BIN_DIR: &str = "usr/bin";

/// The binaries of the image, each `target/dist/NAME`.
pub const BINARIES: &[&str] = &["gadgetctl", "ig"];

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// What `cargo xtask image` was asked.
struct Options {
    build: bool,
    tags: Vec<String>,
    output: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        build: true,
        tags: Vec::new(),
        output: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--no-build" => o.build = false,
            "--tag" => o
                .tags
                .push(it.next().context("--tag needs a reference")?.clone()),
            "--output" => o.output = Some(it.next().context("--output needs a path")?.into()),
            "-h" | "--help" => {
                eprintln!("{}", HELP.trim());
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{HELP}"),
        }
    }
    for t in &o.tags {
        let last = t.rsplit('/').next().unwrap_or_default();
        if !last.contains(':') || t.ends_with(':') || t.contains('@') {
            bail!("--tag {t:?}: give NAME:TAG (for example localhost/ig:dev)");
        }
    }
    Ok(o)
}

const HELP: &str = "
usage: cargo xtask image [--no-build] [--tag REF]... [--output FILE]

Packs target/dist/ig and target/dist/gadgetctl (built first by `cargo xtask
dist` unless --no-build) as the container image of deploy/kubernetes/:
/usr/bin/ig (the entrypoint) and /usr/bin/gadgetctl, nothing else, labelled
with version, source and revision. Writes target/dist/ig-image-VERSION.tar,
which both `ctr image import` and `docker load` accept, tagged
localhost/ig:VERSION unless --tag is given (repeatable).

  ctr -n k8s.io image import target/dist/ig-image-VERSION.tar
  docker load -i target/dist/ig-image-VERSION.tar
  skopeo copy oci-archive:target/dist/ig-image-VERSION.tar docker://REGISTRY/ig:VERSION
";

/// `cargo xtask image ARGS`.
pub fn main(root: &Path, args: &[String]) -> Result<()> {
    let o = parse(args)?;
    if o.build {
        crate::dist::dist(root)?;
    }
    image(root, &o.tags, o.output.as_deref()).map(|_| ())
}

/// Builds the image archive from `target/dist/` (which must hold the
/// binaries); returns its path.
pub fn image(root: &Path, tags: &[String], output: Option<&Path>) -> Result<PathBuf> {
    let dist = root.join("target/dist");
    let mut files = Vec::new();
    for name in BINARIES {
        let p = dist.join(name);
        if !p.is_file() {
            bail!(
                "{} is missing: `cargo xtask dist` builds it (or drop --no-build)",
                p.display()
            );
        }
        check_static(&p)?;
        files.push((
            format!("{BIN_DIR}/{name}"),
            std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
        ));
    }
    let version = ig_version(&dist.join("ig"))?;
    let tags: Vec<String> = if tags.is_empty() {
        vec![format!("localhost/ig:{version}")]
    } else {
        tags.to_vec()
    };
    let meta = Meta {
        version: version.clone(),
        source: cargo_field(root, "repository")?,
        description: cargo_field(root, "description")?,
        license: cargo_field(root, "license")?,
        revision: revision(root)?,
        created: commit_time(root)?,
    };
    let archive = write_archive(&files, &meta, &tags)?;
    let out = output.map_or_else(
        || dist.join(format!("ig-image-{version}.tar")),
        Path::to_owned,
    );
    let tmp = out.with_extension("tar.tmp");
    std::fs::write(&tmp, &archive.bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &out)?;
    eprintln!(
        "image: {} ({:.1} MB, layer {:.1} MB compressed), {} = {}",
        out.display(),
        archive.bytes.len() as f64 / 1e6,
        archive.layer_size as f64 / 1e6,
        tags.join(", "),
        archive.manifest_digest
    );
    Ok(out)
}

/// A static binary has no interpreter: `ldd` says so.
fn check_static(p: &Path) -> Result<()> {
    let ldd = Command::new("ldd").arg(p).output().context("running ldd")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    if !(said.contains("not a dynamic executable") || said.contains("statically linked")) {
        bail!(
            "{} is not static (the image has no libc); ldd says:\n{said}",
            p.display()
        );
    }
    Ok(())
}

fn ig_version(ig: &Path) -> Result<String> {
    let out = Command::new(ig).arg("--version").output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .strip_prefix("ig ")
        .with_context(|| format!("`{} --version` does not say `ig VERSION`", ig.display()))?
        .to_owned())
}

/// A `key = "value"` of the root Cargo.toml's `[package]`.
fn cargo_field(root: &Path, key: &str) -> Result<String> {
    let text = std::fs::read_to_string(root.join("Cargo.toml"))?;
    text.lines()
        .take_while(|l| !l.starts_with('[') || l.trim() == "[package]")
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
        })
        .with_context(|| format!("Cargo.toml's [package] has no {key}"))
}

fn git(root: &Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .context("running git")
}

/// The commit, `-dirty` when tracked files differ from it.
fn revision(root: &Path) -> Result<String> {
    let head = git(root, &["rev-parse", "HEAD"])?;
    if !head.status.success() {
        bail!("git rev-parse HEAD failed: not a git checkout?");
    }
    let mut rev = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    if !git(root, &["diff", "--quiet", "HEAD", "--"])?
        .status
        .success()
    {
        rev.push_str("-dirty");
    }
    Ok(rev)
}

/// The commit's time, RFC 3339 in UTC.
fn commit_time(root: &Path) -> Result<String> {
    let out = git(
        root,
        &[
            "log",
            "-1",
            "--format=%cd",
            "--date=format-local:%Y-%m-%dT%H:%M:%SZ",
        ],
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// What the labels say.
struct Meta {
    version: String,
    source: String,
    description: String,
    license: String,
    revision: String,
    created: String,
}

impl Meta {
    fn labels(&self) -> Value {
        json!({
            "org.opencontainers.image.title": "ig",
            "org.opencontainers.image.description": self.description,
            "org.opencontainers.image.version": self.version,
            "org.opencontainers.image.source": self.source,
            "org.opencontainers.image.revision": self.revision,
            "org.opencontainers.image.licenses": self.license,
            "org.opencontainers.image.created": self.created,
        })
    }
}

struct Archive {
    bytes: Vec<u8>,
    manifest_digest: String,
    layer_size: usize,
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

/// A tar header of `size` bytes: owner 0:0, time 0, `mode`.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

/// A tar of `files` (path in the image, bytes) with their parent
/// directories, sorted; every entry 0755.
fn layer_tar(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut entries: Vec<(String, Option<&[u8]>)> = Vec::new();
    for (path, bytes) in files {
        let mut dir = String::new();
        for part in path
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .iter()
            .rev()
        {
            dir.push_str(part);
            dir.push('/');
            if !entries.iter().any(|(p, _)| *p == dir) {
                entries.push((dir.clone(), None));
            }
        }
        entries.push((path.clone(), Some(bytes)));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut t = tar::Builder::new(Vec::new());
    for (path, bytes) in entries {
        match bytes {
            None => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                t.append_data(&mut h, &path, std::io::empty())?;
            }
            Some(b) => {
                let mut h = header(tar::EntryType::Regular, 0o755, b.len() as u64);
                t.append_data(&mut h, &path, b)?;
            }
        }
    }
    Ok(t.into_inner()?)
}

/// The whole archive: OCI layout and docker's manifest.json over the same
/// blobs.
fn write_archive(files: &[(String, Vec<u8>)], meta: &Meta, tags: &[String]) -> Result<Archive> {
    let layer = layer_tar(files)?;
    let diff_id = sha256(&layer);
    // No file name or time in the gzip header (flate2 writes neither
    // unless asked): the same layer compresses to the same bytes.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&layer)?;
    let layer_gz = gz.finish()?;
    let labels = meta.labels();
    let config = serde_json::to_vec(&json!({
        "created": meta.created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": [format!("/{BIN_DIR}/ig")],
            "Env": [format!("PATH=/{BIN_DIR}")],
            "Labels": labels,
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{
            "created": meta.created,
            "created_by": "cargo xtask image",
            "comment": "the static ig and gadgetctl of cargo xtask dist",
        }],
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": { "mediaType": CONFIG_TYPE, "digest": sha256(&config), "size": config.len() },
        "layers": [{ "mediaType": LAYER_TYPE, "digest": sha256(&layer_gz), "size": layer_gz.len() }],
        "annotations": labels,
    }))?;
    let manifest_digest = sha256(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": tags.iter().map(|t| {
            let tag = t.rsplit_once(':').map_or("latest", |(_, tag)| tag);
            json!({
                "mediaType": MANIFEST_TYPE,
                "digest": manifest_digest,
                "size": manifest.len(),
                "platform": { "architecture": "amd64", "os": "linux" },
                "annotations": {
                    // containerd names the imported image by this one.
                    "io.containerd.image.name": t,
                    "org.opencontainers.image.ref.name": tag,
                },
            })
        }).collect::<Vec<_>>(),
    }))?;
    let blob = |b: &[u8]| format!("blobs/{}", sha256(b).replace(':', "/"));
    let docker = serde_json::to_vec(&json!([{
        "Config": blob(&config),
        "RepoTags": tags,
        "Layers": [blob(&layer_gz)],
    }]))?;
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec();
    let mut entries: Vec<(String, &[u8])> = vec![
        (blob(&config), &config),
        (blob(&layer_gz), &layer_gz),
        (blob(&manifest), &manifest),
        ("index.json".into(), &index),
        ("manifest.json".into(), &docker),
        ("oci-layout".into(), &layout),
    ];
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut t = tar::Builder::new(Vec::new());
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        t.append_data(&mut h, dir, std::io::empty())?;
    }
    for (path, bytes) in entries {
        let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        t.append_data(&mut h, &path, bytes)?;
    }
    Ok(Archive {
        bytes: t.into_inner()?,
        manifest_digest,
        layer_size: layer_gz.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            version: "1.2.3".into(),
            source: "https://example.invalid/ig".into(),
            description: "d".into(),
            license: "Apache-2.0".into(),
            revision: "abc".into(),
            created: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn files() -> Vec<(String, Vec<u8>)> {
        vec![
            ("usr/bin/gadgetctl".into(), b"ctl".to_vec()),
            ("usr/bin/ig".into(), b"ig binary".to_vec()),
        ]
    }

    /// The same inputs give the same bytes; another revision another
    /// manifest but the same layer.
    #[test]
    fn the_archive_is_deterministic() {
        let tags = ["localhost/ig:1.2.3".to_owned()];
        let a = write_archive(&files(), &meta(), &tags).unwrap();
        let b = write_archive(&files(), &meta(), &tags).unwrap();
        assert_eq!(a.bytes, b.bytes);
        let other = Meta {
            revision: "def".into(),
            ..meta()
        };
        let c = write_archive(&files(), &other, &tags).unwrap();
        assert_ne!(a.manifest_digest, c.manifest_digest);
        assert_eq!(a.layer_size, c.layer_size);
    }

    /// The layer lists the parent directories first, sorted, all 0755
    /// and root's, with time 0.
    #[test]
    fn the_layer_holds_the_binaries_and_their_directories() {
        let layer = layer_tar(&files()).unwrap();
        let mut a = tar::Archive::new(&layer[..]);
        let got: Vec<(String, u32, u64, u64)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, u32, u64, u64)> =
            ["usr/", "usr/bin/", "usr/bin/gadgetctl", "usr/bin/ig"]
                .iter()
                .map(|p| (p.trim_end_matches('/').to_owned(), 0o755, 0, 0))
                .collect();
        let got: Vec<_> = got
            .into_iter()
            .map(|(p, m, u, t)| (p.trim_end_matches('/').to_owned(), m, u, t))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn tags_must_name_a_tag() {
        for bad in ["localhost/ig", "localhost:5000/ig", "ig:", "ig@sha256:00"] {
            assert!(parse(&["--tag".into(), bad.into()]).is_err(), "{bad}");
        }
        let o = parse(&[
            "--tag".into(),
            "r.example/ig:v1".into(),
            "--no-build".into(),
        ])
        .unwrap();
        assert_eq!(o.tags, ["r.example/ig:v1"]);
        assert!(!o.build);
    }
}
