//! Gadget parameters: `GADGET_PARAM(var)` globals become user parameters.
//!
//! For each `gadget_param_<var>` marker the `const volatile` variable `var`
//! is looked up in BTF (its type gives the parameter type: integers with
//! size and sign, `bool`, `char[N]` strings) and in the ELF symbol table
//! (its initial bytes in `.rodata` give the default). `gadget.yaml`
//! `params.ebpf.<var>` may override key, default and description. The
//! well-known filter variables of `filter.h` get upstream's short keys
//! (`targ_pid` → `pid`). A chosen value is encoded back into the bytes the
//! loader writes into `.rodata` before load.
//!
//! Pure: reads the parsed object, BTF and metadata.

use crate::btf::{Btf, BtfError, Kind};
use crate::metadata::GadgetMetadata;
use crate::params::{ParamError, ParamSpec, ParamType, ParamValue};

use super::object::ObjectInfo;

/// Prefix of the full names of eBPF parameters (upstream's).
pub const PREFIX: &str = "operator.oci.ebpf.";

/// Heading of gadget parameters in `--help`.
pub const GROUP: &str = "Gadget parameters";

/// `filter.h` variables, the keys upstream gives them, and the value that
/// means "no filter" (shown as no default, since it is not a real value).
const WELL_KNOWN: &[(&str, &str, &str, &str)] = &[
    (
        "targ_pid",
        "pid",
        "Show only events of this process id",
        "0",
    ),
    ("targ_tid", "tid", "Show only events of this thread id", "0"),
    (
        "targ_uid",
        "uid",
        "Show only events of this user id",
        "4294967295",
    ),
    (
        "targ_gid",
        "gid",
        "Show only events of this group id",
        "4294967295",
    ),
    (
        "targ_comm",
        "comm",
        "Show only events of processes with this command name",
        "",
    ),
    // gadget/user_stack_map.h (upstream's keys). The unset value "-"
    // never matches, so their defaults show.
    (
        "collect_ustack",
        "collect-ustack",
        "Collect user stack traces",
        "-",
    ),
    (
        "collect_build_id",
        "collect-build-id",
        "Collect build IDs",
        "-",
    ),
    (
        "collect_otel_stack",
        "collect-otel-stack",
        "Collect OpenTelemetry stack traces",
        "-",
    ),
];

/// How a parameter's value is stored in `.rodata`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Encoding {
    Bool,
    Int { size: usize },
    CString { size: usize },
}

/// One `GADGET_PARAM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EbpfParam {
    /// The C variable.
    pub var: String,
    /// The parameter as the user sets it.
    pub spec: ParamSpec,
    encoding: Encoding,
}

/// Why a `GADGET_PARAM` cannot be a parameter.
#[derive(Debug, thiserror::Error)]
pub enum EbpfParamError {
    /// GADGET_PARAM(`var`): no `const volatile` variable `var` in the object.
    #[error("GADGET_PARAM({var}): no `const volatile` variable {var} in the object")]
    Missing {
        /// The variable.
        var: String,
    },
    /// GADGET_PARAM(`var`): type `ty` cannot be a parameter (integers, bool and
    /// char arrays can).
    #[error(
        "GADGET_PARAM({var}): type {ty} cannot be a parameter (integers, bool and char arrays can)"
    )]
    UnsupportedType {
        /// The variable.
        var: String,
        /// The type.
        ty: String,
    },
    /// GADGET_PARAM(`var`): default `value` from gadget.yaml is invalid.
    #[error("GADGET_PARAM({var}): default {value:?} from gadget.yaml is invalid")]
    BadDefault {
        /// The variable.
        var: String,
        /// The value.
        value: String,
        /// Why.
        #[source]
        source: Box<ParamError>,
    },
    /// Reading the BTF type of GADGET_PARAM `var` failed.
    #[error("GADGET_PARAM({var}): reading its BTF type")]
    Btf {
        /// The variable.
        var: String,
        /// Why.
        #[source]
        source: BtfError,
    },
}

impl EbpfParam {
    /// Discover the parameters of an object.
    pub fn discover(
        vars: &[String],
        btf: &Btf,
        info: &ObjectInfo,
        meta: &GadgetMetadata,
    ) -> Result<Vec<EbpfParam>, EbpfParamError> {
        let yaml = meta.ebpf_params();
        let mut out = Vec::new();
        for var in vars {
            let btf_err = |source| EbpfParamError::Btf {
                var: var.clone(),
                source,
            };
            let id = btf
                .find_var(var)
                .ok_or_else(|| EbpfParamError::Missing { var: var.clone() })?;
            let Kind::Var(v) = btf.kind(id).map_err(btf_err)? else {
                return Err(EbpfParamError::Missing { var: var.clone() });
            };
            let size = btf.size_of(v.ty).map_err(btf_err)? as usize;
            let r = btf.resolve_through_arrays(v.ty).map_err(btf_err)?;
            let (ty, encoding) = match (btf.kind(r.id).map_err(btf_err)?, r.dims.as_slice()) {
                (Kind::Int(i), []) if i.is_bool => (ParamType::Bool, Encoding::Bool),
                (Kind::Int(i), []) if matches!(i.size, 1 | 2 | 4 | 8) => (
                    ParamType::Int {
                        bits: (i.size * 8) as u8,
                        signed: i.signed,
                    },
                    Encoding::Int { size },
                ),
                (Kind::Enum(e) | Kind::Enum64(e), []) if matches!(e.size, 1 | 2 | 4 | 8) => (
                    ParamType::Int {
                        bits: (e.size * 8) as u8,
                        signed: e.signed,
                    },
                    Encoding::Int { size },
                ),
                (Kind::Int(i), [n]) if i.size == 1 && *n > 0 => (
                    ParamType::String {
                        max_len: Some(*n as usize - 1),
                    },
                    Encoding::CString { size },
                ),
                (k, _) => {
                    return Err(EbpfParamError::UnsupportedType {
                        var: var.clone(),
                        ty: k.name().to_owned(),
                    });
                }
            };
            let rodata = info
                .rodata_value(var)
                .ok_or_else(|| EbpfParamError::Missing { var: var.clone() })?;
            let well_known = WELL_KNOWN.iter().find(|(v, ..)| v == var);
            let desc = yaml.get(var.as_str());
            let key = desc
                .and_then(|d| d.key.clone())
                .or_else(|| well_known.map(|(_, k, ..)| (*k).to_owned()))
                .unwrap_or_else(|| var.clone());
            let description = desc
                .and_then(|d| d.description.clone())
                .or_else(|| well_known.map(|(_, _, d, _)| (*d).to_owned()))
                .unwrap_or_default();
            let mut p = EbpfParam {
                var: var.clone(),
                spec: ParamSpec {
                    full_name: format!("{PREFIX}{key}"),
                    key,
                    description,
                    default: String::new(),
                    ty,
                    group: GROUP.to_owned(),
                    alias: None,
                },
                encoding,
            };
            p.spec.default = match desc.and_then(|d| d.default_value.clone()) {
                // `defaultValue: ""` is upstream's way to say "no default":
                // the value compiled into `.rodata` stays, whatever the type.
                Some(d) if d.is_empty() => String::new(),
                Some(d) => {
                    p.spec
                        .parse(&d)
                        .map_err(|source| EbpfParamError::BadDefault {
                            var: var.clone(),
                            value: d.clone(),
                            source: Box::new(source),
                        })?;
                    d
                }
                None => {
                    let d = p.decode(rodata);
                    // "No filter" is no value: leave .rodata as compiled.
                    if well_known.is_some_and(|(.., unset)| *unset == d) {
                        String::new()
                    } else {
                        d
                    }
                }
            };
            out.push(p);
        }
        Ok(out)
    }

    /// The value in `.rodata` bytes, as the user would type it.
    fn decode(&self, bytes: &[u8]) -> String {
        match &self.encoding {
            Encoding::Bool => bytes.iter().any(|b| *b != 0).to_string(),
            Encoding::Int { size } => {
                let mut buf = [0u8; 8];
                let n = (*size).min(8).min(bytes.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                let raw = u64::from_le_bytes(buf);
                match self.spec.ty {
                    ParamType::Int { bits, signed: true } if bits < 64 => {
                        let shift = 64 - u32::from(bits);
                        (((raw << shift) as i64) >> shift).to_string()
                    }
                    ParamType::Int { signed: true, .. } => (raw as i64).to_string(),
                    _ => raw.to_string(),
                }
            }
            Encoding::CString { .. } => {
                let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
                String::from_utf8_lossy(&bytes[..end]).into_owned()
            }
        }
    }

    /// The `.rodata` bytes for `value` (already checked against the spec).
    pub fn encode(&self, value: &ParamValue) -> Vec<u8> {
        match (&self.encoding, value) {
            (Encoding::Bool, ParamValue::Bool(b)) => vec![u8::from(*b)],
            (Encoding::Int { size }, ParamValue::Int(v)) => {
                // Two's complement, little endian, cut to the variable's size
                // (the range was checked when the value was parsed).
                (*v as i64).to_le_bytes()[..(*size).min(8)].to_vec()
            }
            (Encoding::CString { size }, ParamValue::Str(s)) => {
                let mut b = s.as_bytes().to_vec();
                b.truncate(size.saturating_sub(1));
                b.resize(*size, 0);
                b
            }
            // A value of another type cannot come from our own spec; writing
            // the default keeps the program's own initial value.
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::builder::BtfBuilder;
    use crate::metadata::ParamDesc;

    /// BTF with `targ_pid` (u32 via gadget_pid), `ignore_failed` (bool),
    /// `targ_comm` (char[16]) and `delta` (s16), and a matching ObjectInfo.
    fn fixture() -> (Btf, ObjectInfo) {
        let mut b = BtfBuilder::new();
        let u32_ = b.int("unsigned int", 4, false);
        let pid_t = b.typedef("gadget_pid", u32_);
        let cv_pid = b.volatile(pid_t);
        let c_pid = b.const_(cv_pid);
        let boolean = b.bool_();
        let c_bool = b.const_(boolean);
        let ch = b.char_();
        let comm = b.array(ch, 16);
        let c_comm = b.const_(comm);
        let s16 = b.int("short", 2, true);
        b.var("targ_pid", c_pid);
        b.var("ignore_failed", c_bool);
        b.var("targ_comm", c_comm);
        b.var("delta", s16);
        let btf = Btf::parse(&b.to_bytes()).unwrap();
        let mut rodata = vec![0u8; 32];
        rodata[4] = 1; // ignore_failed = true
        rodata[8..10].copy_from_slice(&(-3i16).to_le_bytes());
        rodata[16..19].copy_from_slice(b"cat");
        let sym = |name: &str, offset, size| crate::bpf::object::RodataSymbol {
            name: name.into(),
            offset,
            size,
        };
        let info = ObjectInfo {
            btf: Vec::new(),
            programs: Vec::new(),
            rodata,
            rodata_symbols: vec![
                sym("targ_pid", 0, 4),
                sym("ignore_failed", 4, 1),
                sym("delta", 8, 2),
                sym("targ_comm", 16, 16),
            ],
            license: None,
        };
        (btf, info)
    }

    fn vars(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn types_defaults_and_well_known_keys() {
        let (btf, info) = fixture();
        let ps = EbpfParam::discover(
            &vars(&["targ_pid", "ignore_failed", "targ_comm", "delta"]),
            &btf,
            &info,
            &GadgetMetadata::default(),
        )
        .unwrap();
        let by = |k: &str| {
            ps.iter()
                .find(|p| p.spec.key == k)
                .unwrap_or_else(|| panic!("{k}: {ps:?}"))
        };
        assert_eq!(
            by("pid").spec.ty,
            ParamType::Int {
                bits: 32,
                signed: false
            }
        );
        assert_eq!(by("pid").spec.default, "", "0 means no filter: no default");
        assert_eq!(by("pid").spec.full_name, "operator.oci.ebpf.pid");
        assert_eq!(by("ignore_failed").spec.ty, ParamType::Bool);
        assert_eq!(by("ignore_failed").spec.default, "true");
        assert_eq!(by("comm").spec.ty, ParamType::String { max_len: Some(15) });
        assert_eq!(by("comm").spec.default, "cat");
        assert_eq!(by("delta").spec.default, "-3");

        let pid = by("pid");
        assert_eq!(
            pid.encode(&pid.spec.parse("4242").unwrap()),
            4242u32.to_le_bytes()
        );
        let comm = by("comm");
        let bytes = comm.encode(&comm.spec.parse("bash").unwrap());
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[..5], b"bash\0");
        let d = by("delta");
        assert_eq!(
            d.encode(&d.spec.parse("-2").unwrap()),
            (-2i16).to_le_bytes()
        );
        assert!(d.spec.parse("40000").is_err());
    }

    #[test]
    fn gadget_yaml_overrides_key_default_and_description() {
        let (btf, info) = fixture();
        let mut meta = GadgetMetadata::default();
        meta.params.ebpf.insert(
            "ignore_failed".into(),
            ParamDesc {
                key: Some("ignore-failed".into()),
                default_value: Some("false".into()),
                description: Some("Skip failures".into()),
                ..ParamDesc::default()
            },
        );
        let ps = EbpfParam::discover(&vars(&["ignore_failed"]), &btf, &info, &meta).unwrap();
        assert_eq!(ps[0].spec.key, "ignore-failed");
        assert_eq!(ps[0].spec.default, "false");
        assert_eq!(ps[0].spec.description, "Skip failures");

        meta.params
            .ebpf
            .get_mut("ignore_failed")
            .unwrap()
            .default_value = Some("perhaps".into());
        let e = EbpfParam::discover(&vars(&["ignore_failed"]), &btf, &info, &meta).unwrap_err();
        assert!(matches!(e, EbpfParamError::BadDefault { .. }), "{e}");
    }

    /// Upstream's gadget.yaml files say `defaultValue: ""` for "no
    /// default" (trace_signal, fdpass, profile_tcprtt, fsnotify): whatever
    /// the type, the parameter stays unset and `.rodata` keeps its value.
    #[test]
    fn an_empty_default_in_gadget_yaml_means_no_default() {
        let (btf, info) = fixture();
        let mut meta = GadgetMetadata::default();
        for var in ["delta", "ignore_failed", "targ_comm"] {
            meta.params.ebpf.insert(
                var.into(),
                ParamDesc {
                    default_value: Some(String::new()),
                    ..ParamDesc::default()
                },
            );
        }
        let ps = EbpfParam::discover(
            &vars(&["delta", "ignore_failed", "targ_comm"]),
            &btf,
            &info,
            &meta,
        )
        .unwrap();
        assert!(ps.iter().all(|p| p.spec.default.is_empty()), "{ps:?}");
    }

    #[test]
    fn missing_variables_are_errors() {
        let (btf, info) = fixture();
        let e = EbpfParam::discover(&vars(&["nope"]), &btf, &info, &GadgetMetadata::default())
            .unwrap_err();
        assert!(e.to_string().contains("GADGET_PARAM(nope)"), "{e}");
    }
}
