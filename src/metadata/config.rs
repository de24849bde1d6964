//! `gadget.yaml` as a configuration: what upstream's operators read from
//! it (`operator.<name>.<setting>`, `getConfig` paths), the custom
//! parameters whose `patch:` rewrites it, and the checks `ig image build`
//! and `ig run` make on both.
//!
//! Upstream loads the whole file into a case-insensitive key/value store
//! (viper), evaluates each custom parameter's patch for the value it was
//! given (`values.<value>.patch`, else the parameter's own `patch`; every
//! string of the patch is a template, see [`super::template`]), and merges
//! the result into the store before any operator reads it. We do the same
//! on the parsed document ([`GadgetMetadata::patched`]): keys compare
//! without regard to case, a dotted path finds literal dotted keys too
//! (`annotations.cli.clear-screen-before`), mappings merge key by key and
//! everything else is replaced.
//!
//! Pure: the caller says which parameters and operators exist
//! ([`Known`]) and what values parameters have.

use std::time::Duration;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use yaml_serde::{Mapping, Value};

use super::template::{Func, Template};
use super::{GadgetMetadata, MetadataError};

/// What exists besides the gadget itself, for [`GadgetMetadata::check`].
pub struct Known<'a> {
    /// Whether a parameter of this full name exists
    /// (`operator.oci.ebpf.pid`, `operator.sort.sort`); the gadget's own
    /// `custom.<key>` parameters are known without asking.
    pub params: &'a dyn Fn(&str) -> bool,
    /// The names of ig's operators, as `operator.<name>` spells them.
    pub operators: &'a [&'a str],
    /// The settings an operator reads from `operator.<name>`; empty for
    /// one that reads none.
    pub settings: &'a dyn Fn(&str) -> &'static [&'static str],
}

/// A custom parameter's definition under `params.custom.<key>`.
#[derive(Clone, Debug, Default, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomParam {
    /// What `--help` says of it.
    #[serde(default)]
    pub description: Option<String>,
    /// Its default.
    #[serde(default, deserialize_with = "super::opt_scalar")]
    pub default_value: Option<String>,
    /// A one-letter flag (`-i`).
    #[serde(default)]
    pub alias: Option<String>,
    /// The values the parameter accepts, each with its own patch (or the
    /// parameter's `patch` when it has none).
    #[serde(default)]
    pub values: std::collections::BTreeMap<String, Option<CustomValue>>,
    /// The patch applied for any value without one of its own.
    #[serde(default)]
    pub patch: Option<Value>,
}

/// One accepted value of a custom parameter.
#[derive(Clone, Debug, Default, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomValue {
    /// The patch applied when the parameter has this value.
    #[serde(default)]
    pub patch: Option<Value>,
}

impl CustomParam {
    /// Upstream leaves out a parameter that has neither `values` nor a
    /// `patch`: it could not do anything.
    pub fn is_effective(&self) -> bool {
        !self.values.is_empty() || self.patch.is_some()
    }

    /// The patch for `value` and the path of it under the parameter.
    fn patch_for(&self, value: &str) -> Option<(Vec<String>, &Value)> {
        if let Some(Some(CustomValue { patch: Some(p) })) = self.values.get(value) {
            return Some((vec!["values".into(), value.into(), "patch".into()], p));
        }
        self.patch.as_ref().map(|p| (vec!["patch".into()], p))
    }

    /// Every patch with its path under the parameter.
    fn patches(&self) -> Vec<(Vec<String>, &Value)> {
        let mut out: Vec<(Vec<String>, &Value)> = self
            .values
            .iter()
            .filter_map(|(v, cv)| {
                let p = cv.as_ref()?.patch.as_ref()?;
                Some((vec!["values".into(), v.clone(), "patch".into()], p))
            })
            .collect();
        if let Some(p) = &self.patch {
            out.push((vec!["patch".into()], p));
        }
        out
    }
}

/// Upstream's prefix of custom parameters' full names.
pub const CUSTOM_PREFIX: &str = "custom.";

impl GadgetMetadata {
    /// The document with every custom parameter's patch applied for its
    /// value (`value(full name)`, `None` for a parameter without one; such
    /// a parameter patches nothing, as upstream). Parameters are applied in
    /// the order of their keys; `getConfig` sees the patches before it.
    pub fn patched(
        &self,
        file: &str,
        value: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, MetadataError> {
        let mut doc = self.doc.clone();
        let mut changed = false;
        for (key, p) in &self.params.custom {
            if !p.is_effective() {
                continue;
            }
            let Some(v) = value(&format!("{CUSTOM_PREFIX}{key}")) else {
                continue;
            };
            let Some((sub, patch)) = p.patch_for(&v) else {
                continue;
            };
            let mut base = vec!["params".to_owned(), "custom".to_owned(), key.clone()];
            base.extend(sub);
            let mut rendered = patch.clone();
            let mut failure = None;
            render_strings(
                &mut rendered,
                &mut Vec::new(),
                &mut |path, s| match Template::parse(s) {
                    Ok(t) => Some(t.render(|func, k| match func {
                        Func::ParamValue => value(k).unwrap_or_default(),
                        Func::Config => config_string(&doc, k),
                    })),
                    Err(e) => {
                        let mut full = base.clone();
                        full.extend(path.iter().cloned());
                        failure.get_or_insert_with(|| {
                            self.error_at(file, &full, format!("template: {e}"))
                        });
                        None
                    }
                },
            );
            if let Some(e) = failure {
                return Err(e);
            }
            // Upstream keeps a patch from rewriting the custom parameters.
            if let Value::Mapping(m) = &mut rendered {
                m.remove("params.custom");
            }
            merge(&mut doc, &rendered);
            changed = true;
        }
        if !changed {
            return Ok(self.clone());
        }
        let mut m: Self =
            yaml_serde::from_value(doc.clone()).map_err(|e| MetadataError::Invalid {
                file: file.to_owned(),
                message: format!("after applying params.custom patches: {e}"),
            })?;
        m.doc = doc;
        m.text.clone_from(&self.text);
        Ok(m)
    }

    /// The document as the custom parameters' defaults patch it (what a
    /// run without parameters would use).
    pub fn with_defaults(&self, file: &str) -> Result<Self, MetadataError> {
        self.patched(file, &|k| {
            let key = k.strip_prefix(CUSTOM_PREFIX)?;
            self.params
                .custom
                .get(key)?
                .default_value
                .clone()
                .filter(|d| !d.is_empty())
        })
    }

    /// What `getConfig` returns for `path`: the value as text, `""` when
    /// absent or not a scalar.
    pub fn config_string(&self, path: &str) -> String {
        config_string(&self.doc, path)
    }

    /// The value at `path` (`operator.process.interval`), if any.
    pub fn config_value(&self, path: &str) -> Option<&Value> {
        lookup(&self.doc, &split(path))
    }

    /// `operator.<operator>.<setting>` as a boolean, upstream's spellings
    /// (`true`, `1`, `t`, `TRUE`...).
    pub fn operator_bool(&self, operator: &str, setting: &str) -> Result<Option<bool>, String> {
        let path = format!("operator.{operator}.{setting}");
        match self.config_value(&path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) => Ok(Some(n.as_f64().is_some_and(|f| f != 0.0))),
            Some(Value::String(s)) => match s.as_str() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Some(true)),
                "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Ok(Some(false)),
                _ => Err(format!("{path}: {s:?} is not a boolean (true or false)")),
            },
            Some(_) => Err(format!("{path}: expected true or false")),
        }
    }

    /// `operator.<operator>.<setting>` as a duration (`3s`, `250ms`,
    /// `1m30s`; a bare `0` is zero).
    pub fn operator_duration(
        &self,
        operator: &str,
        setting: &str,
    ) -> Result<Option<Duration>, String> {
        let path = format!("operator.{operator}.{setting}");
        match self.config_value(&path) {
            None | Some(Value::Null) => Ok(None),
            // Upstream reads an empty value as zero: the default.
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(v) => {
                let s = scalar_text(v).ok_or_else(|| format!("{path}: expected a duration"))?;
                parse_go_duration(&s)
                    .map(Some)
                    .map_err(|e| format!("{path}: {e}"))
            }
        }
    }

    /// `operator.<operator>.<setting>` as an integer.
    pub fn operator_int(&self, operator: &str, setting: &str) -> Result<Option<i64>, String> {
        let path = format!("operator.{operator}.{setting}");
        match self.config_value(&path) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let s = scalar_text(v).ok_or_else(|| format!("{path}: expected a number"))?;
                let t = s.trim();
                if t.is_empty() {
                    return Ok(Some(0));
                }
                t.parse()
                    .map(Some)
                    .map_err(|_| format!("{path}: {s:?} is not a whole number"))
            }
        }
    }

    /// `operator.<operator>.<setting>` as a list of words (a YAML
    /// sequence, or a string of words separated by spaces or commas).
    pub fn operator_strings(
        &self,
        operator: &str,
        setting: &str,
    ) -> Result<Option<Vec<String>>, String> {
        let path = format!("operator.{operator}.{setting}");
        match self.config_value(&path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|i| scalar_text(i).ok_or_else(|| format!("{path}: expected words")))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => {
                let s = scalar_text(v).ok_or_else(|| format!("{path}: expected words"))?;
                Ok(Some(
                    s.split([' ', ','])
                        .filter(|w| !w.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ))
            }
        }
    }

    /// Check what `ig run` would refuse, before it is too late: operator
    /// names, the templates of custom parameters and what they refer to.
    /// Returns what is worth a warning.
    pub fn check(&self, file: &str, known: &Known<'_>) -> Result<Vec<String>, MetadataError> {
        let mut warnings = Vec::new();
        let op_known = |name: &str| known.operators.iter().any(|o| o.eq_ignore_ascii_case(name));
        let ops_list = || {
            let mut l: Vec<&str> = known.operators.to_vec();
            l.sort_by_key(|o| o.to_ascii_lowercase());
            l.join(", ")
        };
        // operator.<name>: sections of the file itself.
        for path in leaf_paths(&self.doc) {
            let [first, op, rest @ ..] = path.as_slice() else {
                continue;
            };
            if !first.eq_ignore_ascii_case("operator") {
                continue;
            }
            if !op_known(op) {
                return Err(self.error_at(
                    file,
                    &[first.clone(), op.clone()],
                    format!(
                        "operator {op}: ig has no such operator (ig's operators: {})",
                        ops_list()
                    ),
                ));
            }
            if let Some(setting) = rest.first() {
                let settings = (known.settings)(&op.to_ascii_lowercase());
                if !settings.iter().any(|s| s.eq_ignore_ascii_case(setting)) {
                    let at = self.position(&[first.clone(), op.clone(), setting.clone()]);
                    warnings.push(format!(
                        "{file}{at}: operator.{op}.{setting} is not a setting of operator {op} ({}); ignored",
                        if settings.is_empty() {
                            "it takes none from gadget.yaml".to_owned()
                        } else {
                            format!("its settings: {}", settings.join(", "))
                        }
                    ));
                }
            }
        }
        let own: Vec<String> = self
            .params
            .custom
            .iter()
            .filter(|(_, p)| p.is_effective())
            .map(|(k, _)| format!("{CUSTOM_PREFIX}{k}"))
            .collect();
        for (key, p) in &self.params.custom {
            let base = vec!["params".to_owned(), "custom".to_owned(), key.clone()];
            let at = |sub: &[&str]| {
                let mut v = base.clone();
                v.extend(sub.iter().map(|s| (*s).to_owned()));
                v
            };
            if !p.is_effective() {
                warnings.push(format!(
                    "{file}{}: params.custom.{key} has neither `values` nor `patch`: it does nothing and is left out",
                    self.position(&base)
                ));
                continue;
            }
            if let Some(a) = &p.alias
                && a.chars().count() != 1
            {
                return Err(self.error_at(
                    file,
                    &at(&["alias"]),
                    format!("params.custom.{key}.alias: {a:?} must be a single letter"),
                ));
            }
            if let Some(d) = p.default_value.as_deref()
                && !d.is_empty()
                && !p.values.is_empty()
                && !p.values.contains_key(d)
            {
                let values: Vec<&str> = p.values.keys().map(String::as_str).collect();
                return Err(self.error_at(
                    file,
                    &at(&["defaultValue"]),
                    format!(
                        "params.custom.{key}.defaultValue {d:?} is not one of its values ({})",
                        values.join(", ")
                    ),
                ));
            }
            for (sub, patch) in p.patches() {
                let mut prefix = base.clone();
                prefix.extend(sub);
                self.check_patch(file, &prefix, patch, known, &own, &op_known, &ops_list)?;
            }
        }
        Ok(warnings)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site, all of it context"
    )]
    fn check_patch(
        &self,
        file: &str,
        prefix: &[String],
        patch: &Value,
        known: &Known<'_>,
        own: &[String],
        op_known: &dyn Fn(&str) -> bool,
        ops_list: &dyn Fn() -> String,
    ) -> Result<(), MetadataError> {
        // Where the patch writes: operator.<name> must be one of ours.
        for path in leaf_paths(patch) {
            if let [first, op, ..] = path.as_slice()
                && first.eq_ignore_ascii_case("operator")
                && !op_known(op)
            {
                let mut full = prefix.to_vec();
                full.extend([first.clone(), op.clone()]);
                return Err(self.error_at(
                    file,
                    &full,
                    format!(
                        "the patch sets operator {op}: ig has no such operator (ig's operators: {})",
                        ops_list()
                    ),
                ));
            }
        }
        // What its templates read.
        let mut failure = None;
        let mut probe = patch.clone();
        render_strings(&mut probe, &mut Vec::new(), &mut |path, s| {
            if failure.is_some() {
                return None;
            }
            let mut full = prefix.to_vec();
            full.extend(path.iter().cloned());
            let t = match Template::parse(s) {
                Ok(t) => t,
                Err(e) => {
                    failure = Some(self.error_at(file, &full, format!("template: {e}")));
                    return None;
                }
            };
            for (func, key) in t.calls() {
                let problem = match func {
                    Func::ParamValue if !own.iter().any(|o| o == key) && !(known.params)(key) => {
                        Some(format!(
                            "getParamValue {key:?}: no such parameter (this gadget's own: {}; others by full name, such as operator.oci.ebpf.pid)",
                            if own.is_empty() {
                                "none".to_owned()
                            } else {
                                own.join(", ")
                            }
                        ))
                    }
                    Func::Config => {
                        let parts = split(key);
                        match parts.as_slice() {
                            [first, op, ..]
                                if first.eq_ignore_ascii_case("operator") && !op_known(op) =>
                            {
                                Some(format!(
                                    "getConfig {key:?}: ig has no operator {op} (ig's operators: {})",
                                    ops_list()
                                ))
                            }
                            _ => None,
                        }
                    }
                    Func::ParamValue => None,
                };
                if let Some(message) = problem {
                    failure = Some(self.error_at(file, &full, message));
                    return None;
                }
            }
            None
        });
        failure.map_or(Ok(()), Err)
    }

    /// `:LINE:COLUMN` of `path` in the file's text, or "" when it cannot be
    /// found (flow style, a document built in memory).
    fn position(&self, path: &[String]) -> String {
        locate(&self.text, path).map_or_else(String::new, |(l, c)| format!(":{l}:{c}"))
    }

    /// An error about `path`, at its line when it can be found.
    fn error_at(&self, file: &str, path: &[String], message: String) -> MetadataError {
        match locate(&self.text, path) {
            Some((line, column)) => MetadataError::Syntax {
                file: file.to_owned(),
                line,
                column,
                message,
            },
            None => MetadataError::Invalid {
                file: file.to_owned(),
                message,
            },
        }
    }
}

/// Replace every string leaf of `v` (in mappings, at any depth) by what
/// `f(path, text)` returns, when it returns something.
fn render_strings(
    v: &mut Value,
    path: &mut Vec<String>,
    f: &mut dyn FnMut(&[String], &str) -> Option<String>,
) {
    match v {
        Value::String(s) => {
            if let Some(new) = f(path, s) {
                *s = new;
            }
        }
        Value::Mapping(m) => {
            for (k, child) in m.iter_mut() {
                path.push(key_text(k));
                render_strings(child, path, f);
                path.pop();
            }
        }
        _ => {}
    }
}

fn key_text(k: &Value) -> String {
    scalar_text(k).unwrap_or_default()
}

/// A scalar as upstream's `GetString` renders it; `None` for the rest.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn config_string(doc: &Value, path: &str) -> String {
    lookup(doc, &split(path))
        .and_then(scalar_text)
        .unwrap_or_default()
}

fn split(path: &str) -> Vec<String> {
    path.split('.').map(str::to_owned).collect()
}

/// The entry of mapping `m` whose key is `key`, compared without regard to
/// case.
fn entry<'a>(m: &'a Mapping, key: &str) -> Option<&'a Value> {
    m.iter()
        .find(|(k, _)| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(key)))
        .map(|(_, v)| v)
}

/// The value at `parts` under `v`; a key may itself hold dots, so the
/// longest prefix that is a key wins (as upstream's store searches).
fn lookup<'a>(v: &'a Value, parts: &[String]) -> Option<&'a Value> {
    if parts.is_empty() {
        return Some(v);
    }
    let Value::Mapping(m) = v else {
        return None;
    };
    for n in (1..=parts.len()).rev() {
        let key = parts[..n].join(".");
        if let Some(child) = entry(m, &key)
            && let Some(found) = lookup(child, &parts[n..])
        {
            return Some(found);
        }
    }
    None
}

/// Merge `patch` into `dst`: mappings key by key (keys compared without
/// regard to case), everything else replaced.
fn merge(dst: &mut Value, patch: &Value) {
    match (dst, patch) {
        (Value::Mapping(d), Value::Mapping(p)) => {
            for (k, pv) in p {
                let existing = d
                    .iter_mut()
                    .find(|(dk, _)| match (dk.as_str(), k.as_str()) {
                        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                        _ => *dk == k,
                    })
                    .map(|(_, v)| v);
                match existing {
                    Some(dv) => merge(dv, pv),
                    None => {
                        d.insert(k.clone(), pv.clone());
                    }
                }
            }
        }
        (d, p) => *d = p.clone(),
    }
}

/// Every path from the root to a leaf (a non-mapping value, or an empty
/// mapping), dotted keys split into their parts.
fn leaf_paths(v: &Value) -> Vec<Vec<String>> {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Mapping(m) if !m.is_empty() => {
                for (k, child) in m {
                    let parts = split(&key_text(k));
                    let n = parts.len();
                    path.extend(parts);
                    walk(child, path, out);
                    path.truncate(path.len() - n);
                }
            }
            _ => out.push(path.clone()),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// Line and column (from 1) of the key that ends `path` in YAML `text`,
/// found by deserializing the text with a seed that stops there: the YAML
/// parser then says where it was. A key holding dots is found from its
/// parts (`operator.process.interval` written flat).
pub fn locate(text: &str, path: &[String]) -> Option<(usize, usize)> {
    const FOUND: &str = "\u{0}ig-located";

    struct Seek<'p>(&'p [String]);

    impl<'de> DeserializeSeed<'de> for Seek<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Seek<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("anything")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(used) = map.next_key_seed(Key(self.0))? {
                if used == 0 {
                    map.next_value::<IgnoredAny>()?;
                } else {
                    map.next_value_seed(Seek(&self.0[used..]))?;
                }
            }
            Ok(())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_none<E>(self) -> Result<(), E> {
            Ok(())
        }
    }

    /// A key: how many parts of the path it matches (0: none), or the
    /// sentinel error when it matches all that is left.
    struct Key<'p>(&'p [String]);

    impl<'de> DeserializeSeed<'de> for Key<'_> {
        type Value = usize;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for Key<'_> {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a key")
        }
        fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<usize, E> {
            let parts: Vec<&str> = k.split('.').collect();
            let n = parts.len();
            let matches = n <= self.0.len()
                && parts
                    .iter()
                    .zip(self.0)
                    .all(|(a, b)| a.eq_ignore_ascii_case(b));
            match (matches, n == self.0.len()) {
                (true, true) => Err(E::custom(FOUND)),
                (true, false) => Ok(n),
                (false, _) => Ok(0),
            }
        }
        fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<usize, E> {
            self.visit_str(&b.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<usize, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<usize, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<usize, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<usize, E> {
            Ok(0)
        }
    }

    if path.is_empty() || text.trim().is_empty() {
        return None;
    }
    // Keys and path parts alike may hold dots (`columns.alias`): compare
    // them part by part.
    let path: Vec<String> = path
        .iter()
        .flat_map(|p| p.split('.'))
        .map(str::to_owned)
        .collect();
    let err = Seek(&path)
        .deserialize(yaml_serde::Deserializer::from_str(text))
        .err()?;
    if !err.to_string().contains(FOUND) {
        return None;
    }
    err.location().map(|l| (l.line(), l.column()))
}

/// A duration as Go writes it (`300ms`, `1.5h`, `2h45m`, `10µs`); a bare
/// `0` is zero. A bare number other than zero is refused rather than
/// guessed (upstream would read nanoseconds).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" || t == "+0" {
        return Ok(Duration::ZERO);
    }
    let bad = || format!("{s:?} is not a duration (examples: 500ms, 3s, 1m30s)");
    if t.is_empty() || t.starts_with('-') {
        return Err(bad());
    }
    let mut rest = t.strip_prefix('+').unwrap_or(t);
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if num_end == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "{s:?} has no unit (write it as Go does: 500ms, 3s, 1m30s)"
                ));
            }
            _ => return Err(bad()),
        };
        total += n * scale;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// A duration as Go's `time.Duration.String` writes it: `0s`, `750ns`,
/// `1.5µs`, `12.345ms`, `3.25s`, `5m0s`, `2h30m0s`.
pub fn format_go_duration(d: Duration) -> String {
    let mut s = String::new();
    write_go_duration(&mut s, d.as_nanos());
    s
}

/// [`format_go_duration`] of `ns` nanoseconds into `out`, without
/// allocating (the formatters call it per event).
pub fn write_go_duration(out: &mut dyn std::fmt::Write, ns: u128) {
    /// `v / 10^prec` with its fraction, trailing zeros dropped.
    fn frac(out: &mut dyn std::fmt::Write, v: u128, prec: u32) {
        let unit = 10u128.pow(prec);
        let (whole, mut rest) = (v / unit, v % unit);
        let _ = write!(out, "{whole}");
        if rest == 0 {
            return;
        }
        let mut digits = [b'0'; 9];
        let n = prec as usize;
        for d in digits[..n].iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        let end = digits[..n]
            .iter()
            .rposition(|&c| c != b'0')
            .map_or(0, |i| i + 1);
        let _ = out.write_char('.');
        for &c in &digits[..end] {
            let _ = out.write_char(char::from(c));
        }
    }
    if ns == 0 {
        let _ = out.write_str("0s");
    } else if ns < 1_000 {
        let _ = write!(out, "{ns}ns");
    } else if ns < 1_000_000 {
        frac(out, ns, 3);
        let _ = out.write_str("µs");
    } else if ns < 1_000_000_000 {
        frac(out, ns, 6);
        let _ = out.write_str("ms");
    } else {
        let secs = ns / 1_000_000_000;
        let sub = ns % 1_000_000_000;
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        if h > 0 {
            let _ = write!(out, "{h}h{m}m");
        } else if m > 0 {
            let _ = write!(out, "{m}m");
        }
        frac(out, s * 1_000_000_000 + sub, 9);
        let _ = out.write_char('s');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_strings() {
        let f = |ns: u64| format_go_duration(Duration::from_nanos(ns));
        assert_eq!(f(0), "0s");
        assert_eq!(f(10), "10ns");
        assert_eq!(f(1_500), "1.5µs");
        assert_eq!(f(12_345_000), "12.345ms");
        assert_eq!(f(3_250_000_000), "3.25s");
        assert_eq!(f(300_000_000_000), "5m0s");
        assert_eq!(f(9_000_000_000_000), "2h30m0s");
        assert_eq!(f(3_600_000_000_001), "1h0m0.000000001s");
    }

    const GADGET: &str = r#"name: top
operator:
  process:
    emitstats: true
    interval: 3s
    first-interval: 250ms
target:
  host: "default-host"
  port: 8080
datasources:
  processes:
    annotations:
      cli.clear-screen-before: "false"
params:
  custom:
    interval:
      description: interval to re-read statistics
      defaultValue: 3s
      alias: i
      patch:
        operator:
          process:
            interval: >-
              {{call .getParamValue "custom.interval"}}
    screen:
      description: clear the screen
      defaultValue: enabled
      patch:
        nothing: here
      values:
        enabled:
          patch:
            datasources:
              processes:
                annotations:
                  cli.clear-screen-before: "true"
        disabled:
        url:
          patch:
            connection:
              url: 'http://{{call .getConfig "target.host"}}:{{call .getConfig "TARGET.port"}}/{{call .getConfig "operator.process.interval"}}'
    inert:
      description: does nothing
"#;

    fn meta() -> GadgetMetadata {
        GadgetMetadata::parse(GADGET.as_bytes(), "gadget.yaml").unwrap()
    }

    fn values<'a>(v: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            v.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn patches_follow_the_value_given() {
        let m = meta();
        assert_eq!(
            m.operator_duration("process", "interval"),
            Ok(Some(Duration::from_secs(3)))
        );
        let p = m
            .patched(
                "gadget.yaml",
                &values(&[("custom.interval", "5s"), ("custom.screen", "enabled")]),
            )
            .unwrap();
        assert_eq!(
            p.operator_duration("process", "interval"),
            Ok(Some(Duration::from_secs(5)))
        );
        // Untouched settings stay.
        assert_eq!(
            p.operator_duration("process", "first-interval"),
            Ok(Some(Duration::from_millis(250)))
        );
        assert_eq!(p.operator_bool("process", "emitstats"), Ok(Some(true)));
        // A value's own patch, merged into the typed model as well.
        assert_eq!(
            p.datasources["processes"].annotations["cli.clear-screen-before"],
            "true"
        );
        assert_eq!(p.config_string("nothing"), "");
        // A value without a patch of its own takes the parameter's.
        let p = m
            .patched("gadget.yaml", &values(&[("custom.screen", "disabled")]))
            .unwrap();
        assert_eq!(p.config_string("nothing"), "here");
        assert_eq!(
            p.datasources["processes"].annotations["cli.clear-screen-before"],
            "false"
        );
        // getConfig sees the patches applied before it (interval < screen).
        let p = m
            .patched(
                "gadget.yaml",
                &values(&[("custom.interval", "7s"), ("custom.screen", "url")]),
            )
            .unwrap();
        assert_eq!(
            p.config_string("connection.url"),
            "http://default-host:8080/7s"
        );
        // No value: no patch.
        let p = m.patched("gadget.yaml", &values(&[])).unwrap();
        assert_eq!(p, m);
        // A gadget without gadget.yaml has nothing to patch.
        let empty = GadgetMetadata::parse(b"", "g.yaml").unwrap();
        assert_eq!(empty.with_defaults("g.yaml").unwrap(), empty);
    }

    #[test]
    fn lookups_are_case_blind_and_find_dotted_keys() {
        let m = meta();
        assert_eq!(
            m.config_string("datasources.processes.annotations.cli.clear-screen-before"),
            "false"
        );
        assert_eq!(m.config_string("Operator.PROCESS.emitstats"), "true");
        assert_eq!(m.config_string("target.port"), "8080");
        assert_eq!(m.config_string("target"), "");
        let flat = GadgetMetadata::parse(b"operator.process.interval: 2s\n", "g.yaml").unwrap();
        assert_eq!(
            flat.operator_duration("process", "interval"),
            Ok(Some(Duration::from_secs(2)))
        );
        let bad = GadgetMetadata::parse(
            b"operator:\n  process:\n    interval: 5\n    emitstats: maybe\n    count: x\n",
            "g.yaml",
        )
        .unwrap();
        assert!(
            bad.operator_duration("process", "interval")
                .unwrap_err()
                .contains("no unit")
        );
        assert!(
            bad.operator_bool("process", "emitstats")
                .unwrap_err()
                .contains("maybe")
        );
        assert!(
            bad.operator_int("process", "count")
                .unwrap_err()
                .contains("whole number")
        );
        assert_eq!(bad.operator_int("process", "nothing"), Ok(None));
    }

    fn known<'a>(params: &'a dyn Fn(&str) -> bool) -> Known<'a> {
        Known {
            params,
            operators: &["process", "ebpf", "LocalManager"],
            settings: &|op| match op {
                "process" => &["emitstats", "interval", "first-interval", "count", "fields"],
                _ => &[],
            },
        }
    }

    #[test]
    fn check_accepts_upstreams_shapes_and_warns_about_inert_params() {
        let w = meta().check("gadget.yaml", &known(&|_| false)).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("gadget.yaml:42:5: params.custom.inert"),
            "{w:?}"
        );
    }

    fn check_err(yaml: &str) -> String {
        let m = GadgetMetadata::parse(yaml.as_bytes(), "g.yaml").unwrap();
        m.check("g.yaml", &known(&|k| k == "operator.oci.ebpf.pid"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn check_names_file_and_line_of_what_is_wrong() {
        let e = check_err("name: x\noperator:\n  logs:\n    enabled: true\n");
        assert_eq!(
            e,
            "g.yaml:3:3: operator logs: ig has no such operator (ig's operators: ebpf, LocalManager, process)"
        );
        let e = check_err(concat!(
            "params:\n  custom:\n    i:\n      patch:\n        operator:\n",
            "          process:\n            interval: '{{call .getParamValue \"custom.j\"}}'\n"
        ));
        assert!(
            e.starts_with("g.yaml:7:13: getParamValue \"custom.j\": no such parameter (this gadget's own: custom.i;"),
            "{e}"
        );
        let e = check_err(concat!(
            "params:\n  custom:\n    i:\n      values:\n        a:\n          patch:\n",
            "            x: '{{call .getParamValue \"operator.oci.ebpf.pid\"}}'\n",
            "        b:\n          patch:\n            y: '{{ .Values }}'\n"
        ));
        assert!(e.starts_with("g.yaml:10:13: template: column 1:"), "{e}");
        let e = check_err(concat!(
            "params:\n  custom:\n    i:\n      patch:\n        operator:\n          cgroups:\n",
            "            interval: 1s\n"
        ));
        assert!(
            e.starts_with("g.yaml:6:11: the patch sets operator cgroups:"),
            "{e}"
        );
        let e = check_err(concat!(
            "params:\n  custom:\n    i:\n      patch:\n",
            "        a: '{{call .getConfig \"operator.nope.interval\"}}'\n"
        ));
        assert!(
            e.starts_with(
                "g.yaml:5:9: getConfig \"operator.nope.interval\": ig has no operator nope"
            ),
            "{e}"
        );
        let e = check_err("params:\n  custom:\n    i:\n      alias: ii\n      patch: {a: 1}\n");
        assert!(e.starts_with("g.yaml:4:7: params.custom.i.alias"), "{e}");
        let e = check_err(concat!(
            "params:\n  custom:\n    i:\n      defaultValue: c\n",
            "      values:\n        a:\n        b:\n"
        ));
        assert!(
            e.starts_with(
                "g.yaml:4:7: params.custom.i.defaultValue \"c\" is not one of its values (a, b)"
            ),
            "{e}"
        );
        // Operator names compare without regard to case; settings warn.
        let m = GadgetMetadata::parse(
            b"operator:\n  localmanager:\n    x: 1\n  Process:\n    intervall: 1s\n",
            "g.yaml",
        )
        .unwrap();
        let w = m.check("g.yaml", &known(&|_| false)).unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("g.yaml:3:5: operator.localmanager.x is not a setting"),
            "{w:?}"
        );
        assert!(
            w[1].contains("operator.Process.intervall") && w[1].contains("its settings: emitstats"),
            "{w:?}"
        );
    }

    #[test]
    fn a_bad_template_in_an_image_is_an_error_at_run_too() {
        let m = GadgetMetadata::parse(
            b"params:\n  custom:\n    i:\n      patch:\n        a: '{{oops}}'\n",
            "g.yaml",
        )
        .unwrap();
        let e = m
            .patched("g.yaml", &values(&[("custom.i", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("g.yaml:5:9: template: column 1:"), "{e}");
    }

    #[test]
    fn locate_finds_keys_in_block_and_flow_style() {
        let p = |s: &str| s.split('/').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            locate(GADGET, &p("operator/process/interval")),
            Some((5, 5))
        );
        assert_eq!(
            locate(GADGET, &p("params/custom/screen/values/url")),
            Some((38, 9))
        );
        assert_eq!(locate("a: {b: {c: 1}}\n", &p("a/b/c")), Some((1, 9)));
        assert_eq!(
            locate(
                "operator.process.interval: 1\n",
                &p("operator/process/interval")
            ),
            Some((1, 1))
        );
        assert_eq!(locate(GADGET, &p("operator/nothing")), None);
        assert_eq!(locate("", &p("a")), None);
    }

    #[test]
    fn go_durations() {
        let ok = |s: &str| parse_go_duration(s).unwrap();
        assert_eq!(ok("3s"), Duration::from_secs(3));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("0"), Duration::ZERO);
        assert!(parse_go_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_go_duration("-1s").is_err());
        assert!(parse_go_duration("1d").is_err());
        assert!(parse_go_duration("s").is_err());
    }
}
