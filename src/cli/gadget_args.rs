//! Two-phase command line of `ig run`: a gadget's own flags exist only once
//! its image is known.
//!
//! Phase one ([`prescan`]) finds the image and the store in the raw
//! arguments without clap, so that [`super::run::prepare`] can read the
//! image and list its parameters. Phase two adds one clap argument per
//! parameter to the `run` subcommand ([`augment`]) and parses everything at
//! once: unknown flags, bad values and `--help` (which then lists the
//! gadget's parameters with their defaults) are all clap's job, with clap's
//! messages naming the flag.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command, parser::ValueSource};

use ig::params::{ParamSpec, ParamType};

/// What phase one found: the store and the image of an `ig run`.
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    pub store: PathBuf,
    pub image: String,
}

/// Find `run IMAGE` in `argv` (argv[0] is the program). `cmd` is the static
/// clap command, used to know which flags take a value. `None` when the
/// command is not `run` or has no image.
pub fn prescan(argv: &[OsString], cmd: &Command) -> Option<Scan> {
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let takes_value = |c: &Command, flag: &str| -> bool {
        // Per data source (`--filter-expr.open`): made for the gadget's
        // data sources, so not in `catalog` below.
        ig::operators::filter::is_per_source_flag(flag)
            || c.get_arguments().any(|a| {
                // A boolean parameter takes its value only as `--flag=false`.
                a.get_action().takes_values()
                    && !a.is_require_equals_set()
                    && (a.get_long().is_some_and(|l| flag == format!("--{l}"))
                        || a.get_short().is_some_and(|s| flag == format!("-{s}")))
            })
    };
    // The flags of the gadget-independent operators (`--filter`, `-F`,
    // `--sort`...) are known before the image is: their values are not
    // mistaken for the image.
    let run_cmd = &with_catalog(cmd.find_subcommand("run")?.clone());
    let mut store = std::env::var_os("IG_STORE").map(PathBuf::from);
    let mut in_run = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            return None;
        }
        if let Some(v) = a.strip_prefix("--store=") {
            store = Some(PathBuf::from(v));
        } else if a == "--store" {
            store = args.get(i + 1).map(PathBuf::from);
            i += 1;
        } else if in_run && is_manifest_flag(a) {
            // `ig run -f MANIFEST`: its images are read later, one run each.
            return None;
        } else if a.starts_with('-') {
            let c = if in_run { run_cmd } else { cmd };
            if !a.contains('=') && takes_value(c, a) {
                i += 1;
            }
        } else if !in_run {
            if a != "run" {
                return None;
            }
            in_run = true;
        } else {
            let manifest_too = args[i + 1..]
                .iter()
                .take_while(|a| *a != "--")
                .any(|a| is_manifest_flag(a));
            return (!manifest_too).then(|| Scan {
                store: store.unwrap_or_else(|| PathBuf::from(ig::image::DEFAULT_STORE)),
                image: a.clone(),
            });
        }
        i += 1;
    }
    None
}

/// `-f`, `-fFILE`, `--file`, `--file=FILE`: `ig run`'s manifest.
fn is_manifest_flag(a: &str) -> bool {
    a == "--file" || a.starts_with("--file=") || (a.starts_with("-f") && !a.starts_with("--"))
}

/// Whether `argv` is `ig run -f ...` (the flag anywhere after `run`,
/// before `--`).
pub fn has_manifest(argv: &[OsString]) -> bool {
    argv.iter()
        .skip(1)
        .map(|a| a.to_string_lossy())
        .skip_while(|a| a != "run")
        .take_while(|a| a != "--")
        .any(|a| is_manifest_flag(&a))
}

/// Add one argument per parameter to the `run` subcommand. Parameters
/// whose key clashes with a flag of `ig run` itself are left out (and
/// logged): the built-in flag wins.
pub fn augment(run: Command, specs: &[ParamSpec]) -> Command {
    let mut run = run;
    for s in specs {
        let taken = run
            .get_arguments()
            .any(|a| a.get_long() == Some(s.key.as_str()) || a.get_id() == s.full_name.as_str());
        let short_taken = |c: char| run.get_arguments().any(|a| a.get_short() == Some(c));
        let short = s.alias.filter(|c| !short_taken(*c));
        if taken {
            log::warn!(
                "gadget parameter --{} clashes with a flag of ig run and cannot be set",
                s.key
            );
            continue;
        }
        let spec = s.clone();
        let mut help = s.description.clone();
        if !s.default.is_empty() {
            help.push_str(&format!(" [default: {}]", s.default));
        }
        // `--help` also gives the full name, which manifests (`ig run -f`)
        // and upstream's tools use.
        let long_help = format!("{help}\n\nFull name (in manifests): {}", s.full_name);
        let mut arg = Arg::new(s.full_name.clone())
            .long(s.key.clone())
            .help(help)
            .long_help(long_help)
            .help_heading(s.group.clone())
            .value_name(s.ty.name().to_uppercase())
            .action(ArgAction::Set)
            .value_parser(move |v: &str| spec.parse(v).map(|_| v.to_owned()));
        if let Some(c) = short {
            arg = arg.short(c);
        }
        if s.ty == ParamType::Bool {
            // `--ignore-failed` alone means true; `--ignore-failed=false` too.
            arg = arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true");
        } else {
            // `--sort -reads`, `--max-entries -1`, `--filter -…`: a value
            // may start with a dash.
            arg = arg.allow_hyphen_values(true);
        }
        run = run.arg(arg);
    }
    run
}

/// The `run` subcommand with the flags of the gadget-independent
/// operators (`--filter`, `--sort`, `-c`...), which every gadget has:
/// what `ig run --help` shows before an image is named.
pub fn with_catalog(run: Command) -> Command {
    let catalog: Vec<ParamSpec> = ig::operators::catalog()
        .iter()
        .flat_map(|o| o.params())
        .collect();
    augment(run, &catalog)
}

/// The `run` subcommand whose `--help` ends with `fields` (the data
/// sources' fields) before its examples; `-h` says where to find them.
pub fn with_fields_help(run: Command, fields: &str) -> Command {
    let examples = run
        .get_after_help()
        .map(ToString::to_string)
        .unwrap_or_default();
    let short = format!(
        "The fields of each data source (for --fields, -F/--filter, --sort): --help.\n\n{examples}"
    );
    let long = format!("{}\n\n{examples}", fields.trim_end());
    run.after_help(short).after_long_help(long)
}

/// The parameters the user actually gave: `(full name, raw value)`.
pub fn given(run: &ArgMatches, specs: &[ParamSpec]) -> Vec<(String, String)> {
    specs
        .iter()
        .filter(|s| run.try_contains_id(&s.full_name).unwrap_or(false))
        .filter(|s| run.value_source(&s.full_name) == Some(ValueSource::CommandLine))
        .filter_map(|s| {
            run.get_one::<String>(&s.full_name)
                .map(|v| (s.full_name.clone(), v.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn argv(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn prescan_finds_image_and_store() {
        let cmd = crate::cli::args::Cli::command();
        let scan =
            |s: &str| prescan(&argv(s), &cmd).map(|x| (x.store.display().to_string(), x.image));
        assert_eq!(
            scan("ig run trace_exec").map(|x| x.1),
            Some("trace_exec".into())
        );
        assert_eq!(
            scan("ig --store /s run -o json trace_exec --pid 1"),
            Some(("/s".into(), "trace_exec".into()))
        );
        assert_eq!(
            scan("ig run --timeout 5 --store=/t x"),
            Some(("/t".into(), "x".into()))
        );
        assert_eq!(
            scan("ig -v run --output=json y").map(|x| x.1),
            Some("y".into())
        );
        assert_eq!(
            scan("ig run -F proc.comm==x --sort -reads --enrich-process --max-entries 3 top")
                .map(|x| x.1),
            Some("top".into())
        );
        // Per-data-source filter flags take a value, before the image too.
        assert_eq!(
            scan("ig run --filter-expr.open true --filter.open proc.pid>0 trace_open").map(|x| x.1),
            Some("trace_open".into())
        );
        assert_eq!(scan("ig image list"), None);
        // A manifest's images are not the command line's: nothing to
        // read (or pull) before clap says what is wrong with `-f X IMAGE`.
        assert_eq!(scan("ig run -f m.yaml"), None);
        assert_eq!(scan("ig run -o json --file=m.yaml trace_exec"), None);
        assert_eq!(scan("ig run --file m.yaml trace_exec"), None);
        assert_eq!(scan("ig run trace_exec -f m.yaml"), None);
        assert_eq!(scan("ig run -fm.yaml trace_exec"), None);
        let argv = |line: &str| line.split(' ').map(OsString::from).collect::<Vec<_>>();
        assert!(has_manifest(&argv("ig -v run --pid 1 -f m.yaml")));
        assert!(has_manifest(&argv("ig run --file=m.yaml")));
        assert!(!has_manifest(&argv("ig run trace_exec -F comm==x")));
        assert!(!has_manifest(&argv("ig image build -f b.yaml .")));
        assert_eq!(scan("ig run"), None);
        assert_eq!(scan("ig run --help"), None);
    }

    fn specs() -> Vec<ParamSpec> {
        let p = |key: &str, ty| ParamSpec {
            key: key.into(),
            full_name: format!("operator.oci.ebpf.{key}"),
            description: format!("about {key}"),
            default: String::new(),
            ty,
            group: "Gadget parameters".into(),
            alias: (key == "comm").then_some('C'),
        };
        vec![
            p(
                "pid",
                ParamType::Int {
                    bits: 32,
                    signed: false,
                },
            ),
            p("ignore-failed", ParamType::Bool),
            p("comm", ParamType::String { max_len: Some(15) }),
            p("output", ParamType::Bool),
        ]
    }

    fn parse(s: &str) -> Result<Vec<(String, String)>, clap::Error> {
        let specs = specs();
        let cmd = crate::cli::args::Cli::command().mut_subcommand("run", |c| augment(c, &specs));
        let m = cmd.try_get_matches_from(argv(s))?;
        Ok(given(m.subcommand_matches("run").unwrap(), &specs))
    }

    #[test]
    fn gadget_flags_parse_and_bad_values_name_the_flag() {
        assert_eq!(
            parse("ig run x --pid 42 --ignore-failed -C cat").unwrap(),
            [
                ("operator.oci.ebpf.pid".to_string(), "42".to_string()),
                ("operator.oci.ebpf.ignore-failed".into(), "true".into()),
                ("operator.oci.ebpf.comm".into(), "cat".into()),
            ]
        );
        assert_eq!(
            parse("ig run x --ignore-failed=false").unwrap(),
            [(
                "operator.oci.ebpf.ignore-failed".to_string(),
                "false".to_string()
            )]
        );
        assert_eq!(parse("ig run x").unwrap(), []);
        let e = parse("ig run x --pid abc").unwrap_err();
        assert!(
            e.to_string().contains("--pid") && e.to_string().contains("not a number"),
            "{e}"
        );
        let e = parse("ig run x --pid 99999999999").unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = parse("ig run x --nope 1").unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        // The clashing gadget parameter was left out; -o still means output.
        assert!(parse("ig run x --output json").unwrap().is_empty());
        // Values may start with a dash.
        assert_eq!(
            parse("ig run x --comm -x").unwrap(),
            [("operator.oci.ebpf.comm".to_string(), "-x".to_string())]
        );
    }
}
