//! What a gadget is made of, read from its parts: its eBPF object (if
//! any), its WASM module (if any) and the operators its `gadget.yaml`
//! turns on (`operator.process`...), all configured by `gadget.yaml` as
//! its custom parameters patch it. Shared by every run and by the checks
//! of `ig image build`. No kernel involved.

use crate::metadata::{CUSTOM_PREFIX, GadgetMetadata, Known, MetadataError};
use crate::operators::ebpf::{EbpfOperator, EbpfOptions};
use crate::params::{ParamError, ParamSpec, ParamType};
use crate::pipeline::{Operator, OperatorError};

/// Why a gadget's parts do not make a gadget.
#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    /// The eBPF object could not be read.
    #[error("reading the eBPF program of {file}")]
    Object {
        /// How `gadget.yaml` is named in errors.
        file: String,
        /// Why.
        #[source]
        source: OperatorError,
    },
    /// `gadget.yaml` is wrong (operator names, templates...).
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The image has a WASM module, and this build of the library has no
    /// WASM runtime (its `wasm` feature is off).
    #[error(
        "the image has a WASM module, and this ig was built without a WASM runtime (the library's feature `wasm`)"
    )]
    NoWasmRuntime,
    /// An operator `gadget.yaml` turns on refuses its configuration.
    #[error("configuring the operators of {file}")]
    Configure {
        /// How `gadget.yaml` is named in errors.
        file: String,
        /// Why.
        #[source]
        source: crate::operators::ConfigError,
    },
    /// A `paramDefaults` value does not fit its parameter.
    #[error("{file}: paramDefaults {key}")]
    ParamDefault {
        /// How `gadget.yaml` is named in errors.
        file: String,
        /// The parameter.
        key: String,
        /// Why.
        #[source]
        source: ParamError,
    },
    /// Nothing in the image produces events.
    #[error(
        "{file}: the gadget has no eBPF program, no WASM module, and turns on no operator (operator.process, operator.cgroup or operator.ebpf with emitstats: true): nothing to run"
    )]
    NothingToRun {
        /// How `gadget.yaml` is named in errors.
        file: String,
    },
}

/// A gadget read from its parts, its operators built but not instantiated.
pub struct Assembly {
    /// `gadget.yaml` as written (patched at run time).
    pub(crate) metadata: GadgetMetadata,
    /// How errors name `gadget.yaml`.
    pub(crate) file: String,
    pub(crate) ebpf: Option<EbpfOperator>,
    /// The gadget-independent operators (`operators::catalog`), and the
    /// WASM module's.
    pub(crate) others: Vec<Box<dyn Operator>>,
    /// Every parameter: eBPF, configured operators, catalog, custom.
    pub specs: Vec<ParamSpec>,
    /// What the checks noticed but did not refuse.
    pub warnings: Vec<String>,
    /// The operators `gadget.yaml` turns on (with its custom parameters at
    /// their defaults), by name.
    pub configured: Vec<&'static str>,
    /// The handles shared between operators (the container filter, what
    /// the eBPF operator shares with a WASM guest).
    pub(crate) seams: crate::operators::Seams,
    /// The image has a WASM module.
    pub(crate) has_wasm: bool,
}

/// A gadget's custom parameters as run parameters (those that can do
/// something: with `values` or a `patch`).
fn custom_specs(meta: &GadgetMetadata) -> Vec<ParamSpec> {
    meta.params
        .custom
        .iter()
        .filter(|(_, p)| p.is_effective())
        .map(|(key, p)| ParamSpec {
            key: key.clone(),
            full_name: format!("{CUSTOM_PREFIX}{key}"),
            description: p.description.clone().unwrap_or_default(),
            default: p.default_value.clone().unwrap_or_default(),
            ty: if p.values.is_empty() {
                ParamType::String { max_len: None }
            } else {
                ParamType::Choice(p.values.keys().cloned().collect())
            },
            group: crate::bpf::params::GROUP.to_owned(),
            alias: p
                .alias
                .as_deref()
                .filter(|a| a.chars().count() == 1)
                .and_then(|a| a.chars().next()),
        })
        .collect()
}

impl Assembly {
    /// Read a gadget from its parts: check its `gadget.yaml` (operator
    /// names, templates), build its operators, gather every parameter and
    /// apply `paramDefaults`. No kernel involved.
    pub fn new(
        metadata: GadgetMetadata,
        file: String,
        object: Option<Vec<u8>>,
        wasm: Option<Box<dyn Operator>>,
        seams: crate::operators::Seams,
    ) -> Result<Self, AssemblyError> {
        Self::assemble(metadata, file, object, wasm, seams, true)
    }

    /// For `ig image build`'s checks: the eBPF object's own problems
    /// (a program `ig run` cannot attach) are `ig run`'s to report, as
    /// they always were; `gadget.yaml`'s are reported here. Templates may
    /// then refer to any `operator.oci.ebpf.*` parameter.
    pub fn for_build(
        metadata: GadgetMetadata,
        file: String,
        object: Option<Vec<u8>>,
        wasm: Option<Box<dyn Operator>>,
        seams: crate::operators::Seams,
    ) -> Result<Self, AssemblyError> {
        Self::assemble(metadata, file, object, wasm, seams, false)
    }

    fn assemble(
        metadata: GadgetMetadata,
        file: String,
        object: Option<Vec<u8>>,
        wasm: Option<Box<dyn Operator>>,
        seams: crate::operators::Seams,
        strict: bool,
    ) -> Result<Self, AssemblyError> {
        let has_object = object.is_some();
        let ebpf = match object
            .map(|o| EbpfOperator::new(o, metadata.clone(), EbpfOptions::default()))
            .transpose()
        {
            Ok(e) => e,
            Err(e) if !strict => {
                log::debug!("{file}: the eBPF program is checked by ig run: {e}");
                None
            }
            Err(source) => return Err(AssemblyError::Object { file, source }),
        };
        let unread_object = has_object && ebpf.is_none();
        let mut others = crate::operators::catalog_with(&seams, &metadata);
        let has_wasm = wasm.is_some();
        others.extend(wasm);
        let custom = custom_specs(&metadata);
        let mut specs: Vec<ParamSpec> = ebpf.iter().flat_map(Operator::params).collect();
        specs.extend(others.iter().flat_map(|o| o.params()));
        specs.extend(custom);
        // Checked before anything reads it: what templates refer to may
        // belong to an operator gadget.yaml turns on.
        let mut names: Vec<String> = specs.iter().map(|s| s.full_name.clone()).collect();
        names.extend(
            crate::operators::config_params()
                .into_iter()
                .map(|s| s.full_name),
        );
        let known = Known {
            params: &|k| {
                names.iter().any(|n| n == k)
                    || (unread_object && k.starts_with(crate::bpf::params::PREFIX))
            },
            operators: crate::operators::NAMES,
            settings: &crate::operators::settings,
        };
        let mut warnings = metadata.check(&file, &known)?;
        // The operators gadget.yaml turns on, its custom parameters at
        // their defaults; at run time they are made again from the file
        // as the given values patch it.
        let defaults = metadata.with_defaults(&file)?;
        let configured = crate::operators::from_config(&defaults, &seams).map_err(|source| {
            AssemblyError::Configure {
                file: file.clone(),
                source,
            }
        })?;
        specs.extend(configured.iter().flat_map(|o| o.params()));
        // `--filter.<ds>` and `--filter-expr.<ds>` for the data sources
        // known before the command line is parsed (a WASM guest's, which
        // it makes in gadgetInit, when gadget.yaml annotates them).
        let mut sources: Vec<String> = ebpf.iter().flat_map(Operator::data_source_names).collect();
        sources.extend(configured.iter().flat_map(|o| o.data_source_names()));
        if has_wasm {
            sources.extend(metadata.datasources.keys().cloned());
        }
        let mut seen = std::collections::BTreeSet::new();
        sources.retain(|s| seen.insert(s.clone()));
        specs.extend(crate::operators::filter::per_source_params(&sources));
        let unused = crate::params::apply_defaults(&mut specs, &metadata.param_defaults).map_err(
            |(key, source)| AssemblyError::ParamDefault {
                file: file.clone(),
                key,
                source,
            },
        )?;
        for key in unused {
            warnings.push(format!(
                "{file}: paramDefaults {key} names no parameter of this gadget (ignored)"
            ));
        }
        if !has_object && !has_wasm && configured.is_empty() {
            return Err(AssemblyError::NothingToRun { file });
        }
        Ok(Self {
            configured: configured.iter().map(|o| o.name()).collect(),
            metadata,
            file,
            ebpf,
            others,
            specs,
            warnings,
            seams,
            has_wasm,
        })
    }
}
