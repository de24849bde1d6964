//! The configuration file (`~/.ig/config.yaml`, `--config FILE`) and the
//! `INSPEKTOR_GADGET_*` environment variables, with upstream's key names.
//!
//! A setting is a default for a flag: precedence is flag, then variable,
//! then file, then the built-in default. It is applied by adding the flag to
//! the command line before clap sees it (only when the user did not give
//! that flag), so every later step, the `ig run` pre-scan included, sees a
//! single source of truth: the arguments. Keys follow upstream's layout:
//! global flags at the top (`verbose`, `auto-mount-filesystems`), the
//! image handler's settings under `operator.oci.` (`authfile`,
//! `insecure-registries`, `registry-timeout` (ours, in upstream's
//! layout), `pull`, `verify-image`, `public-keys`, `allowed-gadgets`),
//! the metrics listener's under `operator.otel-metrics.` (upstream's
//! global parameters: `otel-metrics-listen`, `otel-metrics-listen-address`,
//! `otel-metrics-export-internals`) and the logs operator's under
//! `operator.logs.` (`enabled`, `channel`, ...: flags `--logs-*`, ours,
//! since upstream has these settings in its file only). Exporters
//! (`operator.otel-metrics.exporters.<name>`, `operator.otel-logs.exporters.<name>`)
//! are mappings, read whole by [`Config::exporters`].
//! Keys are matched case-insensitively, as upstream's config library
//! does. Keys ig does not know are ignored
//! (a debug message names them), so upstream's files load. A known key
//! whose value has the wrong shape (a list where one value is expected, a
//! mapping anywhere) is an error naming the key, never silently dropped.
//!
//! Owns: finding and parsing the file, reading the variables, turning both
//! into arguments, and `ig config default|view`. Does not own: what the
//! flags do.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use yaml_serde::Value;

/// Upstream's prefix of environment variables.
pub const ENV_PREFIX: &str = "INSPEKTOR_GADGET_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A flag that is given or not (`--verbose`).
    Bool,
    /// A boolean flag whose absence means something else again, so false
    /// must be spelled out (`--verify-image=false`).
    Switch,
    Text,
    /// A comma-separated list flag (`--insecure-registries=a,b`): a YAML
    /// list is joined with commas.
    List,
    /// A flag given once per value (`--public-keys A --public-keys B`),
    /// whose values may hold commas or newlines (PEM text): each entry of a
    /// YAML list becomes its own flag. In a variable, entries are
    /// comma-separated (PEM and paths without commas).
    Repeated,
}

/// One key: its flag, its kind, its default as `ig config default` shows it.
#[derive(Debug, Clone, Copy)]
struct Setting {
    key: &'static str,
    flag: &'static str,
    /// A short flag that sets it too (`-v`).
    short: Option<char>,
    kind: Kind,
    default: &'static str,
    /// Only `ig run` has this flag.
    run_only: bool,
}

const SETTINGS: &[Setting] = &[
    Setting {
        key: "verbose",
        flag: "verbose",
        short: Some('v'),
        kind: Kind::Bool,
        default: "false",
        run_only: false,
    },
    Setting {
        key: "auto-mount-filesystems",
        flag: "auto-mount-filesystems",
        short: None,
        kind: Kind::Bool,
        default: "false",
        run_only: false,
    },
    Setting {
        key: "operator.oci.authfile",
        flag: "authfile",
        short: None,
        kind: Kind::Text,
        // Computed when unset (see `--authfile`); empty means that.
        default: "",
        run_only: false,
    },
    Setting {
        key: "operator.oci.insecure-registries",
        flag: "insecure-registries",
        short: None,
        kind: Kind::List,
        default: "",
        run_only: false,
    },
    Setting {
        key: "operator.oci.registry-timeout",
        flag: "registry-timeout",
        short: None,
        kind: Kind::Text,
        default: "30s",
        run_only: false,
    },
    Setting {
        key: "operator.oci.pull",
        flag: "pull",
        short: None,
        kind: Kind::Text,
        default: "missing",
        run_only: true,
    },
    Setting {
        key: "operator.oci.verify-image",
        flag: "verify-image",
        short: None,
        kind: Kind::Switch,
        // Unset: on for pulled and imported images, off for built ones.
        default: "",
        run_only: true,
    },
    Setting {
        key: "operator.oci.public-keys",
        flag: "public-keys",
        short: None,
        kind: Kind::Repeated,
        default: "",
        run_only: true,
    },
    Setting {
        key: "operator.oci.allowed-gadgets",
        flag: "allowed-gadgets",
        short: None,
        kind: Kind::List,
        default: "",
        run_only: true,
    },
    Setting {
        key: "operator.logs.enabled",
        flag: "logs-enabled",
        short: None,
        kind: Kind::Bool,
        default: "false",
        run_only: true,
    },
    Setting {
        key: "operator.logs.channel",
        flag: "logs-channel",
        short: None,
        kind: Kind::Text,
        default: "stderr",
        run_only: true,
    },
    Setting {
        key: "operator.logs.filename",
        flag: "logs-filename",
        short: None,
        kind: Kind::Text,
        default: "",
        run_only: true,
    },
    Setting {
        key: "operator.logs.format",
        flag: "logs-format",
        short: None,
        kind: Kind::Text,
        default: "json",
        run_only: true,
    },
    Setting {
        key: "operator.logs.mode",
        flag: "logs-mode",
        short: None,
        kind: Kind::Text,
        default: "all",
        run_only: true,
    },
    Setting {
        key: "operator.logs.max-size-mb",
        flag: "logs-max-size-mb",
        short: None,
        kind: Kind::Text,
        default: "100",
        run_only: true,
    },
    Setting {
        key: "operator.logs.max-backups",
        flag: "logs-max-backups",
        short: None,
        kind: Kind::Text,
        default: "3",
        run_only: true,
    },
    Setting {
        key: "operator.logs.max-age-days",
        flag: "logs-max-age-days",
        short: None,
        kind: Kind::Text,
        default: "0",
        run_only: true,
    },
    Setting {
        key: "operator.logs.compress",
        flag: "logs-compress",
        short: None,
        kind: Kind::Bool,
        default: "false",
        run_only: true,
    },
    Setting {
        key: "operator.otel-metrics.otel-metrics-listen",
        flag: "otel-metrics-listen",
        short: None,
        kind: Kind::Bool,
        default: "false",
        run_only: true,
    },
    Setting {
        key: "operator.otel-metrics.otel-metrics-listen-address",
        flag: "otel-metrics-listen-address",
        short: None,
        kind: Kind::Text,
        default: "0.0.0.0:2224",
        run_only: true,
    },
    Setting {
        key: "operator.otel-metrics.otel-metrics-export-internals",
        flag: "otel-metrics-export-internals",
        short: None,
        kind: Kind::Bool,
        default: "false",
        run_only: true,
    },
];

/// The variable of `key`: `operator.oci.pull` → `INSPEKTOR_GADGET_OPERATOR_OCI_PULL`.
pub fn env_name(key: &str) -> String {
    let mut s = String::from(ENV_PREFIX);
    s.extend(key.chars().map(|c| match c {
        '.' | '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    s
}

/// The default path, `~/.ig/config.yaml` (None without a home directory).
pub fn default_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| Path::new(&h).join(".ig/config.yaml"))
}

/// The value at a dotted key, each part matched case-insensitively.
fn lookup<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    let mut v = root;
    for part in key.split('.') {
        let map = v.as_mapping()?;
        v = map
            .iter()
            .find(|(k, _)| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(part)))
            .map(|(_, v)| v)?;
    }
    Some(v)
}

/// Every dotted key of leaves in `v` (for the unknown-key message).
fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v.as_mapping() {
        Some(m) => {
            for (k, v) in m {
                let k = match k {
                    Value::String(s) => s.clone(),
                    other => yaml_serde::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                let key = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(v, &key, out);
            }
        }
        None => out.push(prefix.to_owned()),
    }
}

/// The values of a YAML scalar or sequence as flag text: none for null, one
/// for a scalar, one per entry of a sequence (only for list kinds). Any
/// other shape is an error saying what was found.
fn flag_values(v: &Value, kind: Kind) -> Result<Vec<String>, String> {
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) if matches!(kind, Kind::List | Kind::Repeated) => items
            .iter()
            .filter(|i| !i.is_null())
            .map(|i| scalar(i).ok_or_else(|| "a list entry is not a single value".to_owned()))
            .collect(),
        Value::Sequence(_) => Err("a list, where one value is expected".to_owned()),
        Value::Mapping(_) => Err("a mapping, where a value is expected".to_owned()),
        other => scalar(other)
            .map(|t| vec![t])
            .ok_or_else(|| "not a plain value".to_owned()),
    }
}

/// Upstream's booleans (Go's strconv.ParseBool).
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The configuration: the file's YAML (an empty mapping without a file)
/// and where it came from.
#[derive(Debug)]
pub struct Config {
    pub path: Option<PathBuf>,
    pub file: Value,
}

impl Config {
    /// Reads `explicit` (must exist) or the default path (may be missing).
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Self> {
        let (path, required) = match explicit {
            Some(p) => (Some(p.to_owned()), true),
            None => (default_path(), false),
        };
        let Some(path) = path else {
            return Ok(Self::empty());
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // The default file is optional: missing, or unreadable as when
            // `sudo -u nobody` keeps HOME=/root, means no settings (as
            // upstream). Only a file named with --config must be read.
            Err(e) if !required => {
                log::debug!("no config from {}: {e}", path.display());
                return Ok(Self::empty());
            }
            Err(e) => {
                return Err(e).with_context(|| format!("reading config file {}", path.display()));
            }
        };
        let file = Self::parse(&text).with_context(|| format!("config file {}", path.display()))?;
        Ok(Config {
            path: Some(path),
            file,
        })
    }

    fn empty() -> Self {
        Config {
            path: None,
            file: Value::Mapping(Default::default()),
        }
    }

    /// Parses the file's text: a YAML mapping, or nothing at all.
    pub fn parse(text: &str) -> anyhow::Result<Value> {
        if let Err(d) = ig::metadata::nesting::check_flow_depth(text) {
            bail!(
                "{}",
                ig::metadata::too_deep("", d)
                    .to_string()
                    .trim_start_matches(':')
            );
        }
        let v: Value = yaml_serde::from_str(text)?;
        match v {
            Value::Null => Ok(Value::Mapping(Default::default())),
            Value::Mapping(_) => Ok(v),
            _ => bail!("the top level must be a mapping of keys (like `verbose: true`)"),
        }
    }

    /// The values of a setting and where they came from (variable over
    /// file); `Ok(None)` when neither sets it.
    fn value(
        &self,
        s: &Setting,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<(Vec<String>, String)>> {
        self.value_of(s.key, s.kind, env)
    }

    fn value_of(
        &self,
        key: &str,
        kind: Kind,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<(Vec<String>, String)>> {
        let name = env_name(key);
        if let Some(v) = env(&name) {
            let values = match kind {
                Kind::Repeated => v
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
                _ => vec![v],
            };
            return Ok(Some((values, name)));
        }
        let Some(v) = lookup(&self.file, key) else {
            return Ok(None);
        };
        let from = match &self.path {
            Some(p) => format!("{key} in {}", p.display()),
            None => key.to_owned(),
        };
        match flag_values(v, kind) {
            Ok(values) => Ok(Some((values, from))),
            Err(what) => bail!("{from}: {what}"),
        }
    }

    /// Keys of the file ig does not use.
    pub fn unknown_keys(&self) -> Vec<String> {
        let mut all = Vec::new();
        leaves(&self.file, "", &mut all);
        all.retain(|k| {
            let lower = k.to_ascii_lowercase();
            !k.is_empty()
                && !SETTINGS.iter().any(|s| s.key.eq_ignore_ascii_case(k))
                && !PARAMS.iter().any(|p| p.eq_ignore_ascii_case(k))
                && !lower.starts_with("operator.otel-metrics.exporters.")
                && !lower.starts_with("operator.otel-logs.exporters.")
        });
        all
    }

    /// `argv` with the flags the configuration sets and the user did not
    /// give. `run` says whether the command is `ig run` (only it has
    /// `--pull`).
    pub fn apply(
        &self,
        argv: &[OsString],
        run: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Vec<OsString>> {
        let end = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
        let given = |s: &Setting| {
            argv[..end].iter().skip(1).any(|a| {
                let a = a.to_string_lossy();
                let long = format!("--{}", s.flag);
                a == long
                    || a.starts_with(&format!("{long}="))
                    || s.short.is_some_and(|c| {
                        a.len() > 1
                            && a.starts_with('-')
                            && !a.starts_with("--")
                            && a[1..].chars().all(|x| x == c)
                    })
            })
        };
        let mut global = Vec::new();
        let mut tail = Vec::new();
        for s in SETTINGS {
            if given(s) || (s.run_only && !run) {
                continue;
            }
            // A more specific variable of the flag itself wins.
            if s.flag == "authfile" && env("REGISTRY_AUTH_FILE").is_some() {
                continue;
            }
            let Some((values, from)) = self.value(s, env)? else {
                continue;
            };
            let one = || values.join(",");
            let args: Vec<String> = match s.kind {
                Kind::Bool => match parse_bool(one().trim()) {
                    Some(true) => vec![format!("--{}", s.flag)],
                    Some(false) => continue,
                    None => bail!("{from}: {:?} is not true or false", one()),
                },
                Kind::Switch if one().trim().is_empty() => continue,
                Kind::Switch => match parse_bool(one().trim()) {
                    Some(b) => vec![format!("--{}={b}", s.flag)],
                    None => bail!("{from}: {:?} is not true or false", one()),
                },
                Kind::Text | Kind::List if one().is_empty() => continue,
                Kind::Text | Kind::List => vec![format!("--{}={}", s.flag, one())],
                Kind::Repeated => values
                    .iter()
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| format!("--{}={v}", s.flag))
                    .collect(),
            };
            for arg in args {
                if s.kind == Kind::Repeated {
                    // A PEM key is long: name the flag, not the whole text.
                    log::debug!("--{} from {from}", s.flag);
                } else {
                    log::debug!("{arg} from {from}");
                }
                if s.run_only {
                    tail.push(OsString::from(arg));
                } else {
                    global.push(OsString::from(arg));
                }
            }
        }
        let mut out = Vec::with_capacity(argv.len() + global.len() + tail.len());
        out.extend(argv.first().cloned());
        out.extend(global);
        out.extend(argv[1.min(argv.len())..end].iter().cloned());
        out.extend(tail);
        out.extend(argv[end..].iter().cloned());
        Ok(out)
    }

    /// The file with the variables applied, as a YAML document.
    pub fn effective(&self, env: &dyn Fn(&str) -> Option<String>) -> Value {
        let mut v = self.file.clone();
        for s in SETTINGS {
            if let Some(text) = env(&env_name(s.key)) {
                set(&mut v, s.key, typed(s, &text));
            }
        }
        for key in PARAMS {
            if let Some(text) = env(&env_name(key)) {
                set(&mut v, key, Value::String(text));
            }
        }
        v
    }
}

/// A value as YAML of its kind (`true`, `[a, b]`, `text`).
fn typed(s: &Setting, text: &str) -> Value {
    match s.kind {
        Kind::Bool | Kind::Switch => {
            parse_bool(text.trim()).map_or_else(|| Value::String(text.into()), Value::Bool)
        }
        Kind::List | Kind::Repeated => Value::Sequence(
            text.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| Value::String(t.into()))
                .collect(),
        ),
        Kind::Text => Value::String(text.into()),
    }
}

/// Sets a dotted key, creating the mappings on the way (an existing key is
/// matched case-insensitively, so `operator.OCI` is updated, not doubled).
fn set(root: &mut Value, key: &str, value: Value) {
    let mut v = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !v.is_mapping() {
            *v = Value::Mapping(Default::default());
        }
        let map = v.as_mapping_mut().expect("just made a mapping");
        let existing = map
            .keys()
            .find(|k| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(part)))
            .cloned()
            .unwrap_or_else(|| Value::String((*part).into()));
        if i + 1 == parts.len() {
            map.insert(existing, value);
            return;
        }
        v = map.entry(existing).or_insert(Value::Null);
    }
}

/// `ig config default`: every key with its default.
pub fn defaults() -> Value {
    let mut root = Value::Mapping(Default::default());
    // Sorted, as the keys of a mapping are in upstream's output.
    let sorted: BTreeMap<&str, &Setting> = SETTINGS.iter().map(|s| (s.key, s)).collect();
    let mut all: BTreeMap<&str, Value> = sorted
        .into_iter()
        .map(|(key, s)| (key, typed(s, s.default)))
        .collect();
    for (key, default) in PARAM_DEFAULTS {
        all.insert(key, Value::String((*default).into()));
    }
    for (key, value) in all {
        set(&mut root, key, value);
    }
    root
}

/// The process environment, for [`Config::apply`] and [`Config::effective`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The `--config FILE` of `argv` (before any `--`).
fn config_flag(argv: &[OsString]) -> Option<PathBuf> {
    let mut it = argv.iter().skip(1).take_while(|a| *a != "--");
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(p));
        }
    }
    None
}

/// `argv` with the configuration applied (see [`Config::apply`]).
pub fn from_argv(argv: &[OsString], run: bool) -> anyhow::Result<Vec<OsString>> {
    let config = Config::load(config_flag(argv).as_deref())?;
    for k in config.unknown_keys() {
        log::debug!("config: key {k} is not used by this ig");
    }
    let out = config.apply(argv, run, &process_env);
    let _ = LOADED.set(config);
    out
}

/// The configuration [`from_argv`] read, for the settings that are not
/// flags (the exporters).
static LOADED: std::sync::OnceLock<Config> = std::sync::OnceLock::new();

/// Keys of the file that are gadget parameters of every run (the
/// otel-metrics operator's), not flags of their own: `ig run` gives
/// them to its runs unless the command line or an instance spec sets
/// them ([`param_defaults`]).
pub const PARAMS: &[&str] = &[
    "operator.otel-metrics.otel-metrics-name",
    "operator.otel-metrics.otel-metrics-print-interval",
];

/// The [`PARAMS`]' defaults as `ig config default` shows them (the
/// otel-metrics operator's parameter defaults).
const PARAM_DEFAULTS: &[(&str, &str)] = &[
    ("operator.otel-metrics.otel-metrics-name", ""),
    (
        "operator.otel-metrics.otel-metrics-print-interval",
        "1000ms",
    ),
];

/// The value of setting `key` in the loaded configuration (its
/// `INSPEKTOR_GADGET_*` variable, then the file) and where it came from,
/// for a command that reads the key itself rather than through a flag
/// (`ig daemon` and `operator.logs.*`, the [`PARAMS`]).
pub fn setting(key: &str) -> anyhow::Result<Option<(String, String)>> {
    let kind = match SETTINGS.iter().find(|s| s.key == key) {
        Some(s) => s.kind,
        None if PARAMS.contains(&key) => Kind::Text,
        None => bail!("{key}: not a setting of ig's"),
    };
    let Some(config) = LOADED.get() else {
        return Ok(None);
    };
    Ok(config
        .value_of(key, kind, &process_env)?
        .map(|(values, from)| (values.join(","), from)))
}

/// The [`PARAMS`] the configuration sets, as `(full name, value)`, but
/// those in `given`.
pub fn param_defaults(given: &dyn Fn(&str) -> bool) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for key in PARAMS {
        if given(key) {
            continue;
        }
        if let Some((value, from)) = setting(key)? {
            log::debug!("{key}={value} from {from}");
            out.push(((*key).to_owned(), value));
        }
    }
    Ok(out)
}

/// The exporters under `operator.<section>.exporters` of the loaded
/// configuration: per name, its settings (scalars as text, `headers` as a
/// mapping).
pub fn exporters(
    section: &str,
) -> anyhow::Result<BTreeMap<String, BTreeMap<String, ig::otlp::SettingValue>>> {
    use ig::otlp::SettingValue;
    let mut out = BTreeMap::new();
    let Some(config) = LOADED.get() else {
        return Ok(out);
    };
    let key = format!("operator.{section}.exporters");
    let Some(v) = lookup(&config.file, &key) else {
        return Ok(out);
    };
    let scalar = |v: &Value| match v {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    };
    let Some(map) = v.as_mapping() else {
        bail!("{key}: a mapping of exporter names is expected");
    };
    for (name, settings) in map {
        let Some(name) = scalar(name) else {
            bail!("{key}: an exporter name is not a plain value");
        };
        let Some(settings) = settings.as_mapping() else {
            bail!("{key}.{name}: a mapping of settings is expected");
        };
        let mut s = BTreeMap::new();
        for (k, v) in settings {
            let Some(k) = scalar(k) else { continue };
            let k = k.to_ascii_lowercase();
            let value = match v {
                Value::Mapping(m) => SettingValue::Map(
                    m.iter()
                        .map(|(hk, hv)| match (scalar(hk), scalar(hv)) {
                            (Some(hk), Some(hv)) => Ok((hk, hv)),
                            _ => Err(anyhow::anyhow!(
                                "{key}.{name}.{k}: a mapping of plain values is expected"
                            )),
                        })
                        .collect::<anyhow::Result<_>>()?,
                ),
                Value::Null => continue,
                other => match scalar(other) {
                    Some(t) => SettingValue::Text(t),
                    None => bail!("{key}.{name}.{k}: a plain value is expected"),
                },
            };
            s.insert(k, value);
        }
        out.insert(name, s);
    }
    Ok(out)
}

/// How many `-v` the arguments hold (`-v`, `-vv`, `--verbose`), for the
/// messages printed before clap has parsed them.
pub fn prescan_verbosity(argv: &[OsString]) -> u8 {
    let mut n = 0u8;
    for a in argv.iter().skip(1).take_while(|a| *a != "--") {
        let a = a.to_string_lossy();
        if a == "--verbose" {
            n = n.saturating_add(1);
        } else if a.len() > 1
            && a.starts_with('-')
            && !a.starts_with("--")
            && a[1..].chars().all(|c| c == 'v')
        {
            n = n.saturating_add(u8::try_from(a.len() - 1).unwrap_or(u8::MAX));
        }
    }
    n
}

/// `ig config default|view`.
pub fn command(cmd: super::args::ConfigCommand, explicit: Option<&Path>) -> anyhow::Result<()> {
    let doc = match cmd {
        super::args::ConfigCommand::Default => defaults(),
        super::args::ConfigCommand::View => Config::load(explicit)?.effective(&process_env),
    };
    let text = yaml_serde::to_string(&doc)?;
    super::logger::stdout_line(text.trim_end());
    Ok(())
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

    fn strings(v: &[OsString]) -> Vec<String> {
        v.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    fn config(yaml: &str) -> Config {
        Config {
            path: Some("/c.yaml".into()),
            file: Config::parse(yaml).unwrap(),
        }
    }

    /// `ig config default|view` show the keys that are parameters of
    /// every run (the otel-metrics operator's), not only the flags.
    #[test]
    fn default_and_view_show_the_run_parameters_too() {
        let d = yaml_serde::to_string(&defaults()).unwrap();
        assert!(d.contains("otel-metrics-name: ''"), "{d}");
        assert!(d.contains("otel-metrics-print-interval: 1000ms"), "{d}");
        for key in PARAMS {
            assert!(
                PARAM_DEFAULTS.iter().any(|(k, _)| k == key),
                "{key} has a default"
            );
        }
        let env = |name: &str| {
            (name == env_name("operator.otel-metrics.otel-metrics-print-interval"))
                .then(|| "5s".to_owned())
        };
        let v = config("operator:\n  otel-metrics:\n    otel-metrics-name: open:files\n")
            .effective(&env);
        let text = yaml_serde::to_string(&v).unwrap();
        assert!(text.contains("otel-metrics-name: open:files"), "{text}");
        assert!(text.contains("otel-metrics-print-interval: 5s"), "{text}");
    }

    #[test]
    fn config_flag_and_verbosity_prescan() {
        assert_eq!(
            config_flag(&argv("--config /x.yaml version")),
            Some("/x.yaml".into())
        );
        assert_eq!(
            config_flag(&argv("image list --config=/y")),
            Some("/y".into())
        );
        assert_eq!(config_flag(&argv("run x -- --config /z")), None);
        assert_eq!(prescan_verbosity(&argv("-v run x -vv")), 3);
        assert_eq!(prescan_verbosity(&argv("--verbose image list")), 1);
        assert_eq!(prescan_verbosity(&argv("run x --value -- -v")), 0);
    }

    #[test]
    fn env_names_follow_upstream() {
        assert_eq!(env_name("verbose"), "INSPEKTOR_GADGET_VERBOSE");
        assert_eq!(
            env_name("operator.oci.insecure-registries"),
            "INSPEKTOR_GADGET_OPERATOR_OCI_INSECURE_REGISTRIES"
        );
    }

    #[test]
    fn file_values_become_flags_unless_given() {
        let c = config(
            "verbose: true\noperator:\n  OCI:\n    insecure-registries: [a:1, b]\n    pull: never\n    authfile: /a.json\n",
        );
        let none = |_: &str| None;
        let out = strings(&c.apply(&argv("run trace_exec"), true, &none).unwrap());
        assert_eq!(
            out,
            [
                "ig",
                "--verbose",
                "--authfile=/a.json",
                "--insecure-registries=a:1,b",
                "run",
                "trace_exec",
                "--pull=never"
            ]
        );
        // Flags win; --pull only for run; `--` ends the scan.
        let out = strings(
            &c.apply(&argv("-vv image list --authfile=/b -- x"), false, &none)
                .unwrap(),
        );
        assert_eq!(
            out,
            [
                "ig",
                "--insecure-registries=a:1,b",
                "-vv",
                "image",
                "list",
                "--authfile=/b",
                "--",
                "x"
            ]
        );
    }

    #[test]
    fn variables_win_over_the_file() {
        let c = config("verbose: true\noperator: {oci: {pull: never}}\n");
        let env = |n: &str| match n {
            "INSPEKTOR_GADGET_VERBOSE" => Some("false".to_owned()),
            "INSPEKTOR_GADGET_OPERATOR_OCI_PULL" => Some("always".to_owned()),
            _ => None,
        };
        let out = strings(&c.apply(&argv("run x"), true, &env).unwrap());
        assert_eq!(out, ["ig", "run", "x", "--pull=always"]);
        let eff = yaml_serde::to_string(&c.effective(&env)).unwrap();
        assert!(
            eff.contains("verbose: false") && eff.contains("pull: always"),
            "{eff}"
        );
        // REGISTRY_AUTH_FILE (the flag's own variable) beats the file.
        let c = config("operator: {oci: {authfile: /a}}");
        let env = |n: &str| (n == "REGISTRY_AUTH_FILE").then(|| "/r".to_owned());
        assert_eq!(
            strings(&c.apply(&argv("image list"), false, &env).unwrap()),
            ["ig", "image", "list"]
        );
    }

    #[test]
    fn bad_values_and_files_are_errors() {
        let c = config("auto-mount-filesystems: maybe");
        let err = c.apply(&argv("version"), false, &|_| None).unwrap_err();
        assert!(
            format!("{err:#}").contains("auto-mount-filesystems in /c.yaml"),
            "{err:#}"
        );
        assert!(Config::parse("- a\n- b").is_err());
        assert!(Config::parse("a: [").is_err());
        assert!(Config::parse("").is_ok());
    }

    #[test]
    fn public_keys_list_gives_one_flag_per_key() {
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkw,x\n-----END PUBLIC KEY-----\n";
        let c = config(&format!(
            "operator:\n  oci:\n    public-keys:\n      - /k/a.pub\n      - |\n{}\n      - /k/b,c.pub\n",
            pem.lines()
                .map(|l| format!("        {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
        let out = strings(&c.apply(&argv("run x"), true, &|_| None).unwrap());
        assert_eq!(
            out,
            [
                "ig",
                "run",
                "x",
                "--public-keys=/k/a.pub",
                &format!("--public-keys={pem}"),
                "--public-keys=/k/b,c.pub",
            ]
        );
        // One key as a plain value still works; not for other commands.
        let c = config("operator: {oci: {public-keys: /k/a.pub}}");
        let out = strings(&c.apply(&argv("run x"), true, &|_| None).unwrap());
        assert_eq!(out, ["ig", "run", "x", "--public-keys=/k/a.pub"]);
        let out = strings(&c.apply(&argv("image list"), false, &|_| None).unwrap());
        assert_eq!(out, ["ig", "image", "list"]);
        // The variable: comma-separated entries.
        let env = |n: &str| {
            (n == "INSPEKTOR_GADGET_OPERATOR_OCI_PUBLIC_KEYS")
                .then(|| "/e/1.pub, /e/2.pub".to_owned())
        };
        let out = strings(&c.apply(&argv("run x"), true, &env).unwrap());
        assert_eq!(
            out,
            [
                "ig",
                "run",
                "x",
                "--public-keys=/e/1.pub",
                "--public-keys=/e/2.pub"
            ]
        );
        let eff = c.effective(&env);
        assert_eq!(
            yaml_serde::to_string(&eff["operator"]["oci"]["public-keys"]).unwrap(),
            "- /e/1.pub\n- /e/2.pub\n"
        );
    }

    #[test]
    fn values_of_the_wrong_shape_are_errors() {
        for (yaml, want) in [
            (
                "operator: {oci: {pull: [never, always]}}",
                "operator.oci.pull in /c.yaml: a list",
            ),
            (
                "operator: {oci: {public-keys: {a: b}}}",
                "operator.oci.public-keys in /c.yaml: a mapping",
            ),
            (
                "operator: {oci: {public-keys: [[a]]}}",
                "operator.oci.public-keys in /c.yaml: a list entry",
            ),
            (
                "operator: {oci: {insecure-registries: [{a: b}]}}",
                "operator.oci.insecure-registries in /c.yaml: a list entry",
            ),
            ("verbose: [true]", "verbose in /c.yaml: a list"),
        ] {
            let err = config(yaml)
                .apply(&argv("run x"), true, &|_| None)
                .unwrap_err();
            assert!(format!("{err:#}").starts_with(want), "{yaml}: {err:#}");
        }
        // Null is "not set", as before.
        let c = config("operator: {oci: {public-keys: ~, pull: }}");
        assert_eq!(
            strings(&c.apply(&argv("run x"), true, &|_| None).unwrap()),
            ["ig", "run", "x"]
        );
    }

    /// `ig config --help` names every key, so the help cannot go stale
    /// when a key is added.
    #[test]
    fn config_help_names_every_key() {
        let cmd = crate::cli::reference::command();
        let help = cmd
            .find_subcommand("config")
            .and_then(|c| c.get_long_about())
            .map(|h| h.to_string())
            .unwrap_or_default();
        for s in SETTINGS {
            let last = s.key.rsplit('.').next().unwrap();
            assert!(help.contains(last), "{last} missing from {help}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let c = config("verbose: true\noperator: {oci: {ebpf: {map-fetch-interval: 1s}}}");
        assert_eq!(c.unknown_keys(), ["operator.oci.ebpf.map-fetch-interval"]);
    }

    #[test]
    fn defaults_list_every_key() {
        let d = yaml_serde::to_string(&defaults()).unwrap();
        for s in SETTINGS {
            let last = s.key.rsplit('.').next().unwrap();
            assert!(d.contains(&format!("{last}:")), "{last} missing from {d}");
        }
        // The defaults parse back as a config that changes nothing.
        let c = Config {
            path: None,
            file: Config::parse(&d).unwrap(),
        };
        assert_eq!(
            strings(&c.apply(&argv("run x"), true, &|_| None).unwrap()),
            [
                "ig",
                "--registry-timeout=30s",
                "run",
                "x",
                "--pull=missing",
                "--logs-channel=stderr",
                "--logs-format=json",
                "--logs-mode=all",
                "--logs-max-size-mb=100",
                "--logs-max-backups=3",
                "--logs-max-age-days=0",
                "--otel-metrics-listen-address=0.0.0.0:2224",
            ]
        );
    }

    #[test]
    fn exporters_are_not_unknown_keys() {
        let c = config(
            "operator:\n  otel-metrics:\n    exporters:\n      col: {exporter: otlp-http, headers: {a: b}}\n  logs: {enabled: true}",
        );
        assert!(c.unknown_keys().is_empty(), "{:?}", c.unknown_keys());
    }
}
