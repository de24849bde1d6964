//! Registry commands: `ig login`, `ig logout`, `ig image pull`,
//! `ig image push`, and the pull `ig run` does for a missing image.
//!
//! Owns: prompting for credentials, drawing progress on a terminal,
//! mapping the flags onto the library's registry settings, and wording
//! the results. The protocol, verification and the store update are
//! `image::registry`'s; which credentials file is `image::auth`'s.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::{LoginArgs, PullPolicy, RegistryArgs};
use super::logger;
use ig::image::auth::{self, AuthFile, Credentials};
use ig::image::registry::{NoProgress, Platforms, Progress, Registry};
use ig::image::{Descriptor, Digest, Reference, Store};
use ig::run::RegistryConfig;

/// What `ig run` needs before it touches the network or reads its image:
/// how to pull it, and the trust policy (`--allowed-gadgets` rules, which
/// can refuse it by name, `--verify-image` and `--public-keys`), applied
/// before anything of the image is parsed.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    pub policy: PullPolicy,
    pub registry: RegistryArgs,
    /// Raw `--allowed-gadgets` entries (parsed by `trust`).
    pub allowed_gadgets: Vec<String>,
    /// `--verify-image` (`None`: not given).
    pub verify_image: Option<bool>,
    /// Raw `--public-keys` entries (files or PEM text).
    pub public_keys: Vec<String>,
}

impl PullOptions {
    /// The pull flags of `ig run` read from raw arguments, for the phase
    /// of `ig run` that runs before clap (the image must be present to
    /// know its flags). clap checks the same flags again afterwards; a
    /// `--pull` value clap would refuse is refused here already, before
    /// anything is downloaded (the error is clap's, so it is returned as
    /// `Err` for the caller to skip the pull and let clap report it).
    pub fn prescan(argv: &[OsString]) -> Result<Self, String> {
        let args: Vec<String> = argv
            .iter()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut opts = PullOptions {
            policy: PullPolicy::Missing,
            registry: RegistryArgs {
                authfile: std::env::var_os("REGISTRY_AUTH_FILE").map(PathBuf::from),
                insecure_registries: Vec::new(),
                registry_timeout: None,
            },
            allowed_gadgets: Vec::new(),
            verify_image: None,
            public_keys: Vec::new(),
        };
        let mut i = 0;
        while i < args.len() {
            let a = args[i].as_str();
            if a == "--" {
                break;
            }
            let (flag, value) = match a.split_once('=') {
                Some((f, v)) => (f, Some(v.to_owned())),
                None => (a, None),
            };
            // Its value only ever follows `=` (clap's require_equals).
            if flag == "--verify-image" {
                opts.verify_image = match value.as_deref() {
                    None | Some("true") => Some(true),
                    Some("false") => Some(false),
                    Some(other) => return Err(format!("invalid --verify-image value {other:?}")),
                };
            } else if matches!(
                flag,
                "--pull"
                    | "--authfile"
                    | "--insecure-registries"
                    | "--allowed-gadgets"
                    | "--registry-timeout"
                    | "--public-keys"
            ) {
                let value = match value {
                    Some(v) => v,
                    None => {
                        i += 1;
                        match args.get(i) {
                            Some(v) => v.clone(),
                            None => return Err(format!("{flag} needs a value")),
                        }
                    }
                };
                let list = |v: &str| -> Vec<String> {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                };
                match flag {
                    // Exactly what clap's value enum accepts.
                    "--pull" => {
                        opts.policy = match value.as_str() {
                            "always" => PullPolicy::Always,
                            "missing" => PullPolicy::Missing,
                            "never" => PullPolicy::Never,
                            other => return Err(format!("invalid --pull value {other:?}")),
                        }
                    }
                    "--authfile" => opts.registry.authfile = Some(PathBuf::from(value)),
                    "--registry-timeout" => {
                        opts.registry.registry_timeout =
                            Some(super::args::parse_registry_timeout(&value)?);
                    }
                    "--allowed-gadgets" => opts.allowed_gadgets.extend(list(&value)),
                    // One key (or file) per flag: PEM text has commas.
                    "--public-keys" => opts.public_keys.push(value),
                    _ => opts.registry.insecure_registries.extend(list(&value)),
                }
            }
            i += 1;
        }
        Ok(opts)
    }
}

impl From<PullPolicy> for ig::run::PullPolicy {
    fn from(p: PullPolicy) -> Self {
        match p {
            PullPolicy::Always => Self::Always,
            PullPolicy::Missing => Self::Missing,
            PullPolicy::Never => Self::Never,
        }
    }
}

impl RegistryArgs {
    /// The library's registry settings for these flags.
    pub fn config(&self) -> RegistryConfig {
        let defaults = RegistryConfig::default();
        RegistryConfig {
            authfile: self.authfile.clone(),
            insecure_registries: self.insecure_registries.clone(),
            timeout: self.registry_timeout.map_or(defaults.timeout, |t| t.0),
        }
    }
}

/// `ig image pull IMAGE [--all-platforms]`.
pub fn pull_command(
    store: &Path,
    image: &str,
    all_platforms: bool,
    registry: &RegistryArgs,
) -> anyhow::Result<()> {
    let reference = Reference::parse(image)?;
    let platforms = if all_platforms {
        Platforms::All
    } else {
        Platforms::Host
    };
    let (stored, digest) = pull(store, &reference, platforms, registry)?;
    logger::stdout_line(&format!("Pulled {stored}@{digest}"));
    Ok(())
}

fn pull(
    store: &Path,
    reference: &Reference,
    platforms: Platforms,
    args: &RegistryArgs,
) -> anyhow::Result<(Reference, Digest)> {
    let mut progress = progress("pulled");
    let outcome = ig::run::pull(store, reference, platforms, &args.config(), &mut *progress)
        .with_context(|| format!("pulling {reference}"))?;
    Ok((outcome.reference, outcome.digest))
}

/// `ig image push IMAGE`.
pub fn push_command(store: &Path, image: &str, args: &RegistryArgs) -> anyhow::Result<()> {
    let reference = Reference::parse(image)?;
    let context = || format!("pushing {reference}");
    let store = Store::open_read_only(store).with_context(context)?;
    let client = args
        .config()
        .client_for(reference.domain())
        .with_context(context)?;
    let outcome = client
        .push(&store, &reference, &mut *progress("pushed"))
        .with_context(context)?;
    log::debug!(
        "{reference}: {} uploaded, {} already in the registry",
        outcome.uploaded,
        outcome.skipped
    );
    logger::stdout_line(&format!("Pushed {reference}@{}", outcome.digest));
    if let Some(sig) = &outcome.signature {
        logger::stdout_line(&format!("Pushed signature {sig}"));
    }
    if let Some(index) = &outcome.referrers {
        logger::stdout_line(&format!("Pushed signature referrers {index}"));
    }
    Ok(())
}

/// `ig login REGISTRY`.
pub fn login(args: LoginArgs, reg: &RegistryArgs) -> anyhow::Result<()> {
    let host = registry_host(&args.registry)?;
    let username = match args.username {
        Some(u) => u,
        None if std::io::stdin().is_terminal() => prompt("Username: ", true)?,
        None => bail!("no user name: give one with -u/--username"),
    };
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from standard input")?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else if let Some(p) = args.password {
        p
    } else if std::io::stdin().is_terminal() {
        prompt("Password: ", false)?
    } else {
        bail!("no password: use --password-stdin, -p/--password, or run on a terminal");
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let creds = Credentials { username, password };
    let path = auth::write_path(reg.authfile.as_deref());
    // Load first, so a broken file is reported before the registry is asked.
    let mut file = AuthFile::load(&path)?;
    let client = Registry::new(&host, Some(&creds), &reg.config().options())?;
    client
        .check_login()
        .with_context(|| format!("logging in to {host} as {}", creds.username))?;
    file.set(&host, &creds)?;
    file.save()?;
    log::debug!("credentials for {host} stored in {}", path.display());
    logger::stdout_line("Login Succeeded!");
    Ok(())
}

/// `ig logout REGISTRY`: removes the entry from the file `ig login`
/// writes. Without --authfile, push and pull also read docker's
/// `~/.docker/config.json` for a registry ig's own file has no entry for;
/// ig does not edit docker's file, so logout says when credentials for the
/// registry remain there (and fails when they are the only ones: the user
/// is still logged in as far as push and pull are concerned).
pub fn logout(registry: &str, reg: &RegistryArgs) -> anyhow::Result<()> {
    let host = registry_host(registry)?;
    let path = auth::write_path(reg.authfile.as_deref());
    let mut file = AuthFile::load(&path)?;
    let removed = file.remove(&host);
    if removed {
        file.save()?;
        logger::stdout_line(&format!(
            "Removed login credentials for {host} from {}",
            path.display()
        ));
    }
    let docker = if reg.authfile.is_none() {
        auth::docker_auth_file()
            .filter(|d| AuthFile::load(d).ok().and_then(|f| f.get(&host)).is_some())
    } else {
        None
    };
    match (removed, docker) {
        (_, Some(docker)) if !removed => bail!(
            "not logged in to {host} with ig (no entry in {}), but push and pull use the credentials for {host} in docker's {}: remove them with `docker logout {host}`",
            path.display(),
            docker.display()
        ),
        (_, Some(docker)) => log::warn!(
            "docker's {} also has credentials for {host}, which push and pull will now use: `docker logout {host}` removes them",
            docker.display()
        ),
        (false, None) => {
            log::warn!("not logged in to {host} (no entry in {})", path.display())
        }
        (true, None) => {}
    }
    Ok(())
}

/// `ghcr.io`, `https://ghcr.io/`, `localhost:5000/v2/` → the bare host.
fn registry_host(input: &str) -> anyhow::Result<String> {
    let s = input.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or_default();
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '@') {
        bail!("{input:?} is not a registry host (examples: ghcr.io, localhost:5000)");
    }
    Ok(host.to_ascii_lowercase())
}

/// Reads a line from the terminal after printing `label` on stderr,
/// without echo when `echo` is false.
fn prompt(label: &str, echo: bool) -> anyhow::Result<String> {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{label}");
    let _ = err.flush();
    let guard = if echo { None } else { EchoOff::new() };
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    drop(guard);
    if !echo {
        // The user's Enter was not echoed either.
        let _ = writeln!(err);
    }
    read.context("reading from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Turns terminal echo off on stdin until dropped.
struct EchoOff {
    saved: libc::termios,
}

impl EchoOff {
    fn new() -> Option<Self> {
        // SAFETY: tcgetattr fills the termios struct we own; a zeroed
        // termios is a valid value of this plain C struct.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return None;
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: sets attributes of stdin from a struct we own.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) } != 0 {
            return None;
        }
        Some(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the attributes saved in `new`.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
        }
    }
}

/// A progress bar per blob on stderr when stderr is a terminal, and no
/// output at all otherwise (so `-o json` piped elsewhere, or a log file,
/// stays clean).
pub fn progress(verb: &'static str) -> Box<dyn Progress + Send> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: BTreeMap::new(),
            verb,
        })
    } else {
        Box::new(NoProgress)
    }
}

struct Bars {
    multi: MultiProgress,
    bars: BTreeMap<Digest, ProgressBar>,
    verb: &'static str,
}

impl Bars {
    fn bar(&mut self, desc: &Descriptor) -> &ProgressBar {
        let multi = &self.multi;
        self.bars.entry(desc.digest.clone()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(desc.size));
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes:>10}/{total_bytes:<10} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(desc.digest.short().to_owned());
            bar.set_message(kind_of(&desc.media_type));
            bar
        })
    }
}

impl Progress for Bars {
    fn blob_started(&mut self, desc: &Descriptor) {
        self.bar(desc);
    }
    fn blob_progress(&mut self, desc: &Descriptor, done: u64) {
        self.bar(desc).set_position(done);
    }
    fn blob_finished(&mut self, desc: &Descriptor, transferred: bool) {
        let verb = self.verb;
        let bar = self.bar(desc);
        bar.set_position(desc.size);
        bar.finish_with_message(if transferred { verb } else { "already there" });
    }
}

fn kind_of(media_type: &str) -> &'static str {
    use ig::image::oci;
    match media_type {
        oci::MEDIA_TYPE_GADGET_EBPF => "ebpf",
        oci::MEDIA_TYPE_GADGET_WASM => "wasm",
        oci::MEDIA_TYPE_GADGET_BTFGEN => "btfgen",
        oci::MEDIA_TYPE_GADGET_CONFIG | oci::MEDIA_TYPE_EMPTY_JSON => "config",
        _ => "blob",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<OsString> {
        std::iter::once("ig")
            .chain(s.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn prescan_finds_the_pull_flags() {
        let o = PullOptions::prescan(&argv(
            "run x --pull never --authfile /a.json --insecure-registries a:1,b --allowed-gadgets p*,q --allowed-gadgets=r",
        ))
        .unwrap();
        assert_eq!(o.policy, PullPolicy::Never);
        assert_eq!(o.registry.authfile, Some(PathBuf::from("/a.json")));
        assert_eq!(o.registry.insecure_registries, ["a:1", "b"]);
        assert_eq!(o.allowed_gadgets, ["p*", "q", "r"]);
        let o = PullOptions::prescan(&argv("--pull=always run x")).unwrap();
        assert_eq!(o.policy, PullPolicy::Always);
        let o = PullOptions::prescan(&argv("run x --pull missing")).unwrap();
        assert_eq!(o.policy, PullPolicy::Missing);
        let o = PullOptions::prescan(&argv("run x -- --pull never")).unwrap();
        assert_eq!(o.policy, PullPolicy::Missing);
        assert_eq!(o.verify_image, None);
        // The trust flags, read before the image is.
        let o = PullOptions::prescan(&argv(
            "run --public-keys /a.pub x --verify-image --public-keys=-----BEGIN,x=",
        ))
        .unwrap();
        assert_eq!(o.verify_image, Some(true));
        assert_eq!(o.public_keys, ["/a.pub", "-----BEGIN,x="]);
        let o = PullOptions::prescan(&argv("run x --verify-image=false")).unwrap();
        assert_eq!(o.verify_image, Some(false));
    }

    #[test]
    fn prescan_refuses_what_clap_refuses() {
        for bad in [
            "run x --pull bogus",
            "run x --pull=",
            "run x --pull Always",
            "run x --pull",
            "run x --verify-image=yes",
        ] {
            assert!(PullOptions::prescan(&argv(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("https://GHCR.io/").unwrap(), "ghcr.io");
        assert_eq!(
            registry_host("localhost:5000/v2/").unwrap(),
            "localhost:5000"
        );
        assert!(registry_host("").is_err());
        assert!(registry_host("a b").is_err());
    }
}
