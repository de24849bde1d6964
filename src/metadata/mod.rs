//! `gadget.yaml`: the serde model of a gadget's metadata and its validation.
//!
//! This module owns parsing the file into typed values, with errors that
//! point at the file, line and column. It does not know where the bytes come
//! from (a build directory or an image's config blob) nor how annotations
//! are applied to fields (`bpf::schema` and the printers do that).
//!
//! Keys follow upstream: `name`, `description`, `homepageURL`,
//! `documentationURL`, `sourceURL`, `annotations`, `datasources` (also
//! spelled `dataSources`), `params.ebpf` / `params.wasm` (and the legacy
//! `ebpfParams`), `params.custom` (parameters that patch the file itself,
//! [`config`]), `paramDefaults`, `operator` (settings of operators, read
//! through [`GadgetMetadata::operator_bool`] and its siblings) and
//! `programs`. The whole document is kept too ([`GadgetMetadata::doc`]),
//! because patches and `getConfig` work on it as upstream's do.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

pub mod config;
pub mod nesting;
pub mod template;

pub use config::{CUSTOM_PREFIX, CustomParam, CustomValue, Known};

/// A parsed `gadget.yaml`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct GadgetMetadata {
    /// The gadget's name.
    #[serde(default)]
    pub name: String,
    /// What it does, in a sentence.
    #[serde(default)]
    pub description: String,
    /// `homepageURL`.
    #[serde(default, rename = "homepageURL")]
    pub homepage_url: String,
    /// `documentationURL`.
    #[serde(default, rename = "documentationURL")]
    pub documentation_url: String,
    /// `sourceURL`.
    #[serde(default, rename = "sourceURL")]
    pub source_url: String,
    /// Annotations of the gadget.
    #[serde(default, deserialize_with = "scalar_map")]
    pub annotations: BTreeMap<String, String>,
    /// Annotations of its data sources and their fields, by data source.
    #[serde(default, alias = "dataSources")]
    pub datasources: BTreeMap<String, DataSourceMeta>,
    /// How its parameters are presented.
    #[serde(default)]
    pub params: ParamsMeta,
    /// Upstream's older spelling of `params.ebpf`.
    #[serde(default, rename = "ebpfParams")]
    pub ebpf_params_legacy: BTreeMap<String, ParamDesc>,
    /// `paramDefaults`: defaults of any parameter, by full name.
    #[serde(default, rename = "paramDefaults", deserialize_with = "scalar_map")]
    pub param_defaults: BTreeMap<String, String>,
    /// `operator.<name>: {...}` settings for operators.
    #[serde(default)]
    pub operator: BTreeMap<String, yaml_serde::Value>,
    /// `programs.<name>.perf` settings for perf_event programs.
    #[serde(default)]
    pub programs: BTreeMap<String, yaml_serde::Value>,
    /// Top-level keys this version does not know. Kept, not rejected, so a
    /// gadget written for a newer upstream still runs; the CLI warns.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, yaml_serde::Value>,
    /// The whole document, as upstream's operators see it (patched by
    /// [`GadgetMetadata::patched`]).
    #[serde(skip)]
    pub doc: yaml_serde::Value,
    /// The text it was parsed from, to name lines in errors.
    #[serde(skip)]
    pub text: String,
}

/// `datasources.<name>`: annotations of a data source and its fields.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSourceMeta {
    /// The data source's annotations.
    #[serde(default, deserialize_with = "annotation_map")]
    pub annotations: BTreeMap<String, String>,
    /// Its fields' annotations, by field name.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldMeta>,
}

/// `datasources.<name>.fields.<field>`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FieldMeta {
    /// The field's annotations (`columns.width`, `description`...).
    #[serde(default, deserialize_with = "annotation_map")]
    pub annotations: BTreeMap<String, String>,
}

/// `params`: how the gadget's parameters are presented.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParamsMeta {
    /// `GADGET_PARAM`s, by C variable name.
    #[serde(default)]
    pub ebpf: BTreeMap<String, ParamDesc>,
    /// Parameters the WASM guest declares, by key.
    #[serde(default)]
    pub wasm: BTreeMap<String, ParamDesc>,
    /// Parameters of the gadget itself, whose patches rewrite this file.
    #[serde(default)]
    pub custom: BTreeMap<String, CustomParam>,
}

/// How a param is presented to the user; every key is optional.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParamDesc {
    /// The flag name (default: the variable's).
    #[serde(default)]
    pub key: Option<String>,
    /// A one-letter flag.
    #[serde(default)]
    pub alias: Option<String>,
    /// A title.
    #[serde(default)]
    pub title: Option<String>,
    /// Its default.
    #[serde(default, deserialize_with = "opt_scalar")]
    pub default_value: Option<String>,
    /// What `--help` says of it.
    #[serde(default)]
    pub description: Option<String>,
    /// It must be given.
    #[serde(default)]
    pub is_mandatory: bool,
    /// Tags (upstream's).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The value's type (`bool`, `uint32`, `duration`...).
    #[serde(default)]
    pub type_hint: Option<String>,
    /// Where a default may come from (upstream's hints).
    #[serde(default)]
    pub value_hint: Option<String>,
    /// The only values accepted, if listed.
    #[serde(default)]
    pub possible_values: Vec<String>,
}

/// Why `gadget.yaml` (or a setting in it) cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    /// The YAML does not parse, or does not fit the model.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// The line.
        line: usize,
        /// The column.
        column: usize,
        /// What went wrong.
        message: String,
    },
    /// A value is invalid.
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What went wrong.
        message: String,
    },
}

/// The error for a document [`nesting::check_flow_depth`] refused.
pub fn too_deep(file: &str, d: nesting::TooDeep) -> MetadataError {
    MetadataError::Syntax {
        file: file.to_owned(),
        line: d.line,
        column: d.column,
        message: format!(
            "flow collections ([...] and {{...}}) nest deeper than {} levels",
            nesting::MAX_FLOW_DEPTH
        ),
    }
}

impl GadgetMetadata {
    /// Parse `bytes`; `file` names the source in error messages. An empty
    /// document gives the defaults.
    pub fn parse(bytes: &[u8], file: &str) -> Result<Self, MetadataError> {
        let text = std::str::from_utf8(bytes).map_err(|e| MetadataError::Invalid {
            file: file.to_owned(),
            message: format!("not UTF-8: {e}"),
        })?;
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let syntax = |e: yaml_serde::Error| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            // The library appends " at line L column C"; we already print it.
            let message = e.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            MetadataError::Syntax {
                file: file.to_owned(),
                line,
                column,
                message,
            }
        };
        // Before the parser, whose cost is quadratic in the nesting.
        nesting::check_flow_depth(text).map_err(|d| too_deep(file, d))?;
        let mut meta: Self = yaml_serde::from_str(text).map_err(syntax)?;
        meta.doc = yaml_serde::from_str(text).map_err(syntax)?;
        meta.text = text.to_owned();
        Ok(meta)
    }

    /// Checks `ig image build` makes before packing a gadget.
    pub fn validate_for_build(&self, file: &str) -> Result<(), MetadataError> {
        if self.name.trim().is_empty() {
            return Err(MetadataError::Invalid {
                file: file.to_owned(),
                message: "`name` is required".to_owned(),
            });
        }
        Ok(())
    }

    /// `params.ebpf` merged with the legacy `ebpfParams` (the new key wins).
    pub fn ebpf_params(&self) -> BTreeMap<&str, &ParamDesc> {
        let mut m: BTreeMap<&str, &ParamDesc> = self
            .ebpf_params_legacy
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        m.extend(self.params.ebpf.iter().map(|(k, v)| (k.as_str(), v)));
        m
    }
}

fn scalar_to_string(v: yaml_serde::Value) -> Result<String, String> {
    match v {
        yaml_serde::Value::String(s) => Ok(s),
        yaml_serde::Value::Bool(b) => Ok(b.to_string()),
        yaml_serde::Value::Number(n) => Ok(n.to_string()),
        yaml_serde::Value::Null => Ok(String::new()),
        other => Err(format!("expected a scalar value, found {other:?}")),
    }
}

/// A map whose values may be written as strings, numbers or booleans
/// (`columns.width: 16` and `columns.width: "16"` mean the same).
fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, yaml_serde::Value>> = Option::deserialize(d)?;
    raw.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            scalar_to_string(v)
                .map(|s| (k.clone(), s))
                .map_err(|e| serde::de::Error::custom(format!("{k}: {e}")))
        })
        .collect()
}

/// Data source and field annotations: a scalar map whose keys are lower
/// case, as upstream reads them (its configuration store folds case, so
/// `columns.maxWidth` in a gadget means `columns.maxwidth`).
fn annotation_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(scalar_map(d)?
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect())
}

pub(crate) fn opt_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw: Option<yaml_serde::Value> = Option::deserialize(d)?;
    raw.map(scalar_to_string)
        .transpose()
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
name: trace_exec
description: Trace process executions
homepageURL: https://example.invalid
annotations:
  io.example/kind: tracer
datasources:
  exec:
    annotations:
      cli.clear-screen-before: false
    fields:
      proc.comm:
        annotations:
          description: Command name
          columns.width: 16
      args:
        annotations:
          columns.width: "64"
          columns.maxWidth: 80
params:
  ebpf:
    ignore_failed:
      key: ignore-failed
      defaultValue: true
      description: Ignore failed calls
paramDefaults:
  operator.oci.ebpf.map-fetch-interval: 0
"#;

    #[test]
    fn parses_upstream_keys_and_scalar_annotations() {
        let m = GadgetMetadata::parse(SAMPLE.as_bytes(), "gadget.yaml").unwrap();
        assert_eq!(m.name, "trace_exec");
        assert_eq!(m.homepage_url, "https://example.invalid");
        let ds = &m.datasources["exec"];
        assert_eq!(ds.annotations["cli.clear-screen-before"], "false");
        assert_eq!(ds.fields["proc.comm"].annotations["columns.width"], "16");
        assert_eq!(ds.fields["args"].annotations["columns.width"], "64");
        assert_eq!(ds.fields["args"].annotations["columns.maxwidth"], "80");
        let p = m.ebpf_params()["ignore_failed"];
        assert_eq!(p.key.as_deref(), Some("ignore-failed"));
        assert_eq!(p.default_value.as_deref(), Some("true"));
        assert_eq!(
            m.param_defaults["operator.oci.ebpf.map-fetch-interval"],
            "0"
        );
    }

    #[test]
    fn camel_case_datasources_alias() {
        let m = GadgetMetadata::parse(b"name: x\ndataSources:\n  a: {}\n", "g.yaml").unwrap();
        assert!(m.datasources.contains_key("a"));
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let err = GadgetMetadata::parse(
            b"name: x\ndatasources:\n  exec:\n    fields: [1, 2\n",
            "gadget.yaml",
        )
        .unwrap_err();
        let MetadataError::Syntax { file, line, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(file, "gadget.yaml");
        assert!(*line >= 4, "{err}");
        assert!(err.to_string().starts_with("gadget.yaml:"), "{err}");
    }

    #[test]
    fn type_errors_and_unknown_keys_are_reported_with_a_line() {
        let err = GadgetMetadata::parse(b"name: x\ndatasources: 3\n", "g.yaml").unwrap_err();
        assert!(
            matches!(err, MetadataError::Syntax { line: 2, .. }),
            "{err}"
        );
        let m = GadgetMetadata::parse(b"name: x\nnmae: y\n", "g.yaml").unwrap();
        assert_eq!(m.unknown.keys().collect::<Vec<_>>(), ["nmae"]);
        let err = GadgetMetadata::parse(b"name: x\ndatasources:\n  a:\n    fieldz: {}\n", "g.yaml")
            .unwrap_err();
        assert!(err.to_string().contains("fieldz"), "{err}");
        let err = GadgetMetadata::parse(b"annotations:\n  a: [1]\n", "g.yaml").unwrap_err();
        assert!(err.to_string().contains("expected a scalar"), "{err}");
    }

    #[test]
    fn empty_file_is_default_and_build_requires_a_name() {
        let m = GadgetMetadata::parse(b"\n", "g.yaml").unwrap();
        assert_eq!(m, GadgetMetadata::default());
        assert!(m.validate_for_build("g.yaml").is_err());
        assert!(GadgetMetadata::parse(b"\xff", "g.yaml").is_err());
    }
}
