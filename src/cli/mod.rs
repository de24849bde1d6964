//! The command-line edge: parse arguments, run the command, print errors.
//!
//! Only this module (and `main.rs`) may use `anyhow` and print to stderr;
//! lower layers return typed errors and this layer adds the context a user
//! needs ("running gadget trace_exec: ...") and `hint:` lines.

pub mod args;
mod authority;
mod completion;
mod config;
mod containers;
mod ctl_instances;
mod daemon;
mod daemon_export;
mod fanout;
mod fields;
mod gadget_args;
pub mod gadgetctl;
mod image;
mod inspect;
mod instances;
mod logger;
mod mounts;
pub mod reference;
mod registry;
pub mod remote;
mod run;
mod signals;
mod suggest;
mod table;
mod trust;
mod version;

use std::io::Write as _;
use std::process::ExitCode;

use std::ffi::OsString;

use clap::{CommandFactory as _, FromArgMatches as _};

use args::{Cli, Command};

/// Entry point of the `ig` binary.
pub fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let mut cmd = Cli::command();
    // Phase zero: settings of the config file and INSPEKTOR_GADGET_*
    // variables become flags the user did not give (see `config`).
    logger::init(config::prescan_verbosity(&argv));
    // The layer limit, before anything reads an image (`ig run` reads
    // its image before the arguments are parsed whole).
    if let Some(v) = std::env::var_os(ig::image::limits::MAX_LAYER_VAR) {
        let v = v.to_string_lossy();
        match ig::image::limits::parse_size(&v) {
            Some(bytes) => ig::image::limits::set_max_layer(bytes),
            None => log::warn!(
                "{}={} is not a size (bytes, or a number with K, M or G); layers stay limited to {} bytes",
                ig::image::limits::MAX_LAYER_VAR,
                ig::text::Echo(&v),
                ig::image::limits::MAX_LAYER
            ),
        }
    }
    let argv = match config::from_argv(&argv, gadget_args::prescan(&argv, &cmd).is_some()) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    // Phase one: for `ig run IMAGE`, read the image so that its parameters
    // become flags (and show up in `--help`).
    let scan = gadget_args::prescan(&argv, &cmd);
    // The kernel BTF parse overlaps reading the image (see there), on a
    // thread that must never take a Ctrl-C meant for the run.
    let prefetch = (scan.is_some() && !argv.iter().any(|a| a == "-h" || a == "--help"))
        .then(|| signals::with_blocked(ig::run::LoaderPrefetch::start));
    logger::init(config::prescan_verbosity(&argv));
    // A `--pull` value clap will refuse stops phase one: nothing is
    // pulled, and clap says what is wrong below.
    let pull = registry::PullOptions::prescan(&argv);
    let mut prepared = match (&scan, &pull) {
        (Some(s), Ok(pull)) => Some(run::prepare(&s.store, &s.image, pull, prefetch.as_ref())),
        (Some(_), Err(e)) => {
            log::debug!("not reading the image: {e}");
            None
        }
        (None, _) => None,
    };
    let help = argv.iter().any(|a| a == "-h" || a == "--help");
    match &mut prepared {
        Some(Ok(p)) => {
            cmd = cmd.mut_subcommand("run", |c| gadget_args::augment(c, &p.specs));
            // `--help` ends with the fields of the final schemas, which
            // --fields, --filter and --sort take.
            if help {
                let text = match p.describe() {
                    Ok(info) => fields::help(&info.sources),
                    Err(e) => format!("The gadget's fields are not listed: {e:#}\n"),
                };
                cmd = cmd.mut_subcommand("run", |c| gadget_args::with_fields_help(c, &text));
            }
        }
        Some(Err(e)) => {
            let note = format!("The gadget's own parameters are not listed: {e:#}");
            cmd = cmd.mut_subcommand("run", |c| c.after_long_help(note.clone()));
        }
        // Without an image (`ig run --help`, `ig run --filter x`): the
        // flags of the gadget-independent operators, which every gadget
        // has. With -f they go in each instance's spec.
        None if !gadget_args::has_manifest(&argv) => {
            cmd = cmd.mut_subcommand("run", gadget_args::with_catalog);
        }
        None => {}
    }
    // Phase two: parse everything.
    let matches = match cmd.try_get_matches_from_mut(&argv) {
        Ok(m) => m,
        Err(e) => {
            let e = without_trailing_tip(e, &mut cmd);
            // `--pid 1` is unknown because the image could not be read: say
            // why the image could not be read instead.
            if e.kind() == clap::error::ErrorKind::UnknownArgument
                && let Some(Err(why)) = &prepared
            {
                report(why, Doing::Run);
                return ExitCode::FAILURE;
            }
            // `ig run -f M --pid 1`: the manifest's gadgets are not read
            // yet, so their parameters are no flags.
            if e.kind() == clap::error::ErrorKind::UnknownArgument
                && gadget_args::has_manifest(&argv)
            {
                let _ = e.print();
                logger::hint(
                    "with -f, a gadget's own parameters go in its instance spec, by full name: paramValues: {operator.LocalManager.containername: NAME}",
                );
                return ExitCode::from(2);
            }
            return clap_exit(&e);
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    logger::init(cli.verbose);
    let doing = Doing::of(&cli.command);
    if cli.auto_mount_filesystems
        && let Err(e) = mounts::auto_mount()
    {
        return fail(&e);
    }
    let result = match cli.command {
        Command::Run(args) if args.file.is_some() => {
            let source = args.file.clone().unwrap_or_default();
            run::run_manifest(args, &source, &cli.store, &cli.registry)
        }
        Command::Run(args) => {
            let specs = prepared
                .as_ref()
                .and_then(|p| p.as_ref().ok())
                .map(|p| p.specs.clone())
                .unwrap_or_default();
            let given = matches
                .subcommand_matches("run")
                .map(|m| gadget_args::given(m, &specs))
                .unwrap_or_default();
            match prepared {
                Some(Ok(p)) => run::run(args, p, &given),
                // Not being root is the likelier cause of an unreadable
                // store, and the one worth saying first.
                Some(Err(e)) => ig::bpf::privileges::check()
                    .map_err(anyhow::Error::from)
                    .and(Err(e)),
                None => {
                    let pull = registry::PullOptions {
                        policy: args.pull,
                        registry: cli.registry.clone(),
                        allowed_gadgets: args.allowed_gadgets.clone(),
                        verify_image: args.verify_image,
                        public_keys: args.public_keys.clone(),
                    };
                    let image = args.image.clone().unwrap_or_default();
                    run::prepare(&cli.store, &image, &pull, prefetch.as_ref())
                        .and_then(|p| run::run(args, p, &given))
                }
            }
        }
        Command::Config(c) => config::command(c, cli.config.as_deref()),
        other => dispatch(&cli.store, &cli.registry, other),
    };
    image::wait_if_interrupted();
    let result = result.and_then(|()| {
        logger::check_stdout().map_err(|e| anyhow::anyhow!("writing to standard output: {e}"))
    });
    logger::closing();
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e, doing);
            ExitCode::FAILURE
        }
    };
    logger::finish();
    code
}

/// clap's error for an unknown flag, fitted to ig: without the tip to pass
/// it after `--` (clap gives it to every command with a positional
/// argument; no command of ig takes a value that starts with `-` there)
/// and with the command's full usage line (`ig run [OPTIONS] ...`), where
/// clap shows only the arguments that were required or given.
fn without_trailing_tip(e: clap::Error, cmd: &mut clap::Command) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return e;
    }
    let Some(usage) = e.get(ContextKind::Usage).map(ToString::to_string) else {
        return e;
    };
    // "Usage: ig image remove <REF>..." names the command: image remove.
    let path: Vec<String> = usage
        .trim_start()
        .trim_start_matches("Usage:")
        .split_whitespace()
        .skip(1)
        .take_while(|w| !w.starts_with(['<', '[', '-']))
        .map(str::to_owned)
        .collect();
    let mut sub = cmd;
    for name in &path {
        match sub.find_subcommand_mut(name) {
            Some(s) => sub = s,
            None => return e,
        }
    }
    let mut fitted = clap::Error::new(ErrorKind::UnknownArgument).with_cmd(sub);
    for kind in [ContextKind::InvalidArg, ContextKind::SuggestedArg] {
        if let Some(v) = e.get(kind) {
            fitted.insert(kind, v.clone());
        }
    }
    fitted.insert(
        ContextKind::Usage,
        ContextValue::StyledStr(sub.render_usage()),
    );
    fitted
}

/// What clap's `Error::exit` does (help and version on stdout, usage
/// errors on stderr, exit 0 or 2), except that a help text that could not
/// be written is an error (`ig --help > /dev/full`).
fn clap_exit(e: &clap::Error) -> ExitCode {
    let printed = e.print().and_then(|()| std::io::stdout().flush());
    match printed {
        Err(w) if e.exit_code() == 0 && w.kind() != std::io::ErrorKind::BrokenPipe => {
            fail(&anyhow::anyhow!("writing to standard output: {w}"))
        }
        _ => ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2)),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    report(e, Doing::Other);
    ExitCode::FAILURE
}

/// What the failed command was doing with an image the store lacks, which
/// decides the cure a hint offers: `ig run` can have it built or pulled,
/// `ig image remove` cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Doing {
    /// `ig run IMAGE`: build or pull it.
    Run,
    /// `ig image remove`: nothing to add, only names to correct.
    Remove,
    /// `ig image push`: the image is tagged with the registry's name first.
    Push,
    /// Any other command naming an image of the store.
    Other,
}

impl Doing {
    fn of(c: &Command) -> Self {
        use args::ImageCommand as I;
        match c {
            Command::Run(_) => Self::Run,
            Command::Image(I::Remove { .. }) => Self::Remove,
            Command::Image(I::Push { .. }) => Self::Push,
            _ => Self::Other,
        }
    }
}

/// `error: ...` and its `hint:`, if it has one.
fn report(e: &anyhow::Error, doing: Doing) {
    // `{e:#}`, but a cause the message before it already says is said once.
    logger::error(&ig::run::error_chain(e.as_ref()));
    if let Some(h) = hint(e, doing) {
        logger::hint(&h);
    }
}

/// The hint of an image the store does not hold: the nearest names first,
/// then what the command can do about it.
fn not_found_hint(
    reference: &str,
    store: &std::path::Path,
    doing: Doing,
    pull_failed: bool,
) -> Option<String> {
    let near = ig::image::Reference::parse(reference)
        .map(|r| suggest::nearest(store, &r))
        .unwrap_or_default();
    let mean = (!near.is_empty()).then(|| format!("did you mean {}?", suggest::or_list(&near)));
    let cure = match doing {
        // The pull's own cause has its own hint (log in, plain HTTP...).
        Doing::Run if pull_failed => return mean,
        Doing::Run => format!(
            "build it with `ig image build DIR -t NAME`, pull it with `ig image pull {reference}`, or list the store with `ig image list`"
        ),
        Doing::Push => format!(
            "`ig image list` lists the store; to push a local image, tag it with the registry's name first: `ig image tag LOCAL {reference}`"
        ),
        Doing::Remove | Doing::Other => "`ig image list` lists the store".to_owned(),
    };
    Some(match mean {
        Some(m) => format!("{m} ({cure})"),
        None => cure,
    })
}

/// What the user can do about an error, for the errors that have a usual
/// cure. Kept here, at the edge, so lower layers stay free of CLI wording.
fn hint(e: &anyhow::Error, doing: Doing) -> Option<String> {
    use ig::build::BuildError;
    use ig::image::ImageError;
    use ig::run::{PullError, RunError};
    for cause in e.chain() {
        if let Some(run::InstanceError { hint: Some(h), .. }) = cause.downcast_ref() {
            return Some(h.clone());
        }
        if let Some(RunError::NotPulled {
            reference, store, ..
        }) = cause.downcast_ref::<RunError>()
            && let Some(h) = not_found_hint(&reference.to_string(), store, doing, true)
        {
            return Some(h);
        }
        // The library's transparent wrappers hide the error they carry
        // from `chain`: look at it instead.
        let cause: &(dyn std::error::Error + 'static) = match cause.downcast_ref::<RunError>() {
            Some(RunError::Store(e)) => e,
            Some(RunError::Trust(e)) => e,
            Some(RunError::Privileges(e)) => e,
            Some(RunError::Metadata(e)) => e,
            _ => match cause.downcast_ref::<PullError>() {
                Some(PullError::Store(e)) => e,
                Some(PullError::Registry(e)) => e,
                Some(PullError::Auth(e)) => e,
                Some(PullError::NoRegistryClient) | None => cause,
            },
        };
        // Store errors wrapped transparently by the archive and registry
        // layers are not in the chain of their own.
        let store_error = cause.downcast_ref::<ImageError>().or_else(|| {
            match (
                cause.downcast_ref::<ig::image::archive::ArchiveError>(),
                cause.downcast_ref::<ig::image::registry::RegistryError>(),
            ) {
                (Some(ig::image::archive::ArchiveError::Store(e)), _)
                | (_, Some(ig::image::registry::RegistryError::Store(e))) => Some(e),
                _ => None,
            }
        });
        match store_error {
            Some(ImageError::NotFound { reference, store }) => {
                return not_found_hint(reference, store, doing, false);
            }
            Some(ImageError::UnknownReferences { image, .. }) if !image.starts_with('(') => {
                return Some(format!(
                    "if {image} is damaged, remove it with `ig image remove {image}` (pull, build or import it again to get it back), then try again"
                ));
            }
            Some(ImageError::UnknownReferences { .. }) => {
                return Some("that entry of the store's index.json has no name: pull the image again by digest, or delete the entry from index.json, then try again".into());
            }
            Some(ImageError::Json {
                what: "index",
                path,
                ..
            }) => {
                let store = path.parent().unwrap_or(path);
                return Some(format!(
                    "the store's list of images is damaged: correct the JSON at the place named above or restore {} from a backup; or, to give up the store's images and start empty, remove the store: rm -r {}",
                    path.display(),
                    store.display()
                ));
            }
            Some(ImageError::IndexMissing { path, store }) => {
                return Some(format!(
                    "restore {} from a backup; or, to give the images up and start empty, remove the store: rm -r {}",
                    path.display(),
                    store.display()
                ));
            }
            _ => {}
        }
        if let Some(
            ImageError::IncompletePlatforms { reference, .. }
            | ImageError::PlatformNotPulled { reference, .. },
        ) = store_error
        {
            return Some(format!(
                "a pull downloads only this machine's platform; `ig image pull --all-platforms {reference}` downloads them all"
            ));
        }
        if let Some(re) = cause.downcast_ref::<ig::image::registry::RegistryError>() {
            use ig::image::registry::RegistryError as R;
            match re {
                R::Unauthorized {
                    registry,
                    had_credentials: true,
                    ..
                } => {
                    return Some(format!(
                        "check the user name and password, then `ig login {registry}` again"
                    ));
                }
                R::Unauthorized { registry, .. } => {
                    return Some(format!("log in first: `ig login {registry}`"));
                }
                // Name lookups fail the same way over either scheme.
                R::Connect {
                    registry,
                    scheme: "HTTPS",
                    ..
                } if !format!("{e:#}").to_lowercase().contains("dns error") => {
                    return Some(format!(
                        "if {registry} serves plain HTTP, add `--insecure-registries {registry}`"
                    ));
                }
                R::Stalled { .. } => {
                    return Some(
                        "for a slow registry or link, `--registry-timeout 2m` waits longer (0: no limit)"
                            .into(),
                    );
                }
                R::NoMatchingPlatform { .. } => {
                    return Some("the image was not built for this machine's architecture".into());
                }
                _ => {}
            }
        }
        match cause.downcast_ref::<ig::image::trust::TrustError>() {
            Some(ig::image::trust::TrustError::Unsigned { reference, .. }) => {
                return Some(format!(
                    "sign it with `ig image sign {reference} --key KEY`, or run it unverified with --verify-image=false"
                ));
            }
            Some(ig::image::trust::TrustError::Untrusted { .. }) => {
                return Some("check that --public-keys names the signer's public key (without it, only upstream Inspektor Gadget's built-in key is trusted); an image changed after signing must be signed again".into());
            }
            _ => {}
        }
        match cause.downcast_ref::<BuildError>() {
            Some(BuildError::ToolMissing { program, .. }) => {
                return Some(format!(
                    "{program} was not found: install the gadget build tools (apt-get install clang llvm libbpf-dev)"
                ));
            }
            Some(BuildError::KernelBtf { .. }) => {
                return Some("building needs the running kernel's BTF: a kernel built with CONFIG_DEBUG_INFO_BTF (most distributions' are)".into());
            }
            _ => {}
        }
        if cause
            .downcast_ref::<ig::bpf::privileges::MissingPrivileges>()
            .is_some()
            || matches!(
                cause.downcast_ref::<ig::bpf::loader::LoadError>(),
                Some(ig::bpf::loader::LoadError::Permission(_))
            )
        {
            return Some("run ig as root, for example with sudo".into());
        }
    }
    None
}

fn dispatch(
    store: &std::path::Path,
    reg: &args::RegistryArgs,
    command: Command,
) -> anyhow::Result<()> {
    match command {
        Command::Run(_) => unreachable!("handled in main"),
        Command::Image(cmd) => image::image(store, reg, cmd),
        Command::Login(a) => registry::login(a, reg),
        Command::Logout { registry: r } => registry::logout(&r, reg),
        Command::ListContainers(a) => containers::list_containers(&a),
        Command::Daemon(a) => daemon::command(a, store, reg),
        Command::Version => {
            logger::stdout_line(&version::text());
            Ok(())
        }
        Command::Completion { shell } => completion::print(shell),
        Command::Man { command, dir } => completion::man(&command, dir.as_deref()),
        Command::Config(_) => unreachable!("handled in main"),
    }
}
