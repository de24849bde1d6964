//! Parameters: what an operator or a gadget lets the user set, and the
//! checking of the values given.
//!
//! Owns the description of a parameter ([`ParamSpec`]: key, type, default,
//! help) and the parsing of a raw string into a typed [`ParamValue`], with
//! errors that say what was expected. Does not own the command line (the CLI
//! turns specs into flags) nor what a value does (each operator applies its
//! own). Pure: no I/O.
//!
//! Names follow upstream: the user types the short `key` (`--pid`), the
//! full name (`operator.oci.ebpf.pid`) is what config files and manifests
//! use.

use std::collections::BTreeMap;
use std::time::Duration;

/// The type of a parameter, which decides how its value is parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamType {
    /// `true` or `false`.
    Bool,
    /// An integer of `bits` bits.
    Int {
        /// Its width.
        bits: u8,
        /// Whether it is signed.
        signed: bool,
    },
    /// A string of at most `max_len` bytes (a C `char[N]` holds N-1).
    String {
        /// The longest value, in bytes (`None`: no limit).
        max_len: Option<usize>,
    },
    /// `500ms`, `3s`, `1m30s`, `2h` ([`parse_duration`]); a bare number
    /// other than `0` is refused.
    Duration,
    /// One of a fixed set of words.
    Choice(Vec<String>),
}

impl ParamType {
    /// A word for `--help` (`uint32`, `string`, ...).
    pub fn name(&self) -> String {
        match self {
            Self::Bool => "bool".into(),
            Self::Int { bits, signed: true } => format!("int{bits}"),
            Self::Int {
                bits,
                signed: false,
            } => format!("uint{bits}"),
            Self::String { .. } => "string".into(),
            Self::Duration => "duration".into(),
            Self::Choice(c) => c.join("|"),
        }
    }
}

/// One parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// The flag name, without dashes: `pid`, `ignore-failed`.
    pub key: String,
    /// `operator.<op>.<key>`, upstream's fully qualified name.
    pub full_name: String,
    /// What `--help` says of it.
    pub description: String,
    /// The default as the user would type it; empty for "unset".
    pub default: String,
    /// How a value is checked.
    pub ty: ParamType,
    /// Heading under which `--help` lists it.
    pub group: String,
    /// A one-letter flag besides `--key` (upstream's alias): `F` for `-F`.
    pub alias: Option<char>,
}

/// A checked value.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    /// A boolean.
    Bool(bool),
    /// An integer (of any width and sign).
    Int(i128),
    /// A string (or a choice).
    Str(String),
    /// A duration.
    Duration(Duration),
}

/// Why a parameter's value is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamError {
    /// `value` is not a `expected`.
    #[error("{value:?} is not a {expected}")]
    Invalid {
        /// The value.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// `value` is out of range for `ty` (`min`..=`max`).
    #[error("{value} is out of range for {ty} ({min}..={max})")]
    OutOfRange {
        /// The value.
        value: String,
        /// The type.
        ty: String,
        /// The least allowed.
        min: i128,
        /// The most allowed.
        max: i128,
    },
    /// `value` is longer than `max` bytes.
    #[error("{value:?} is longer than {max} bytes")]
    TooLong {
        /// The value.
        value: String,
        /// The most allowed.
        max: usize,
    },
    /// A duration written as a bare number (other than 0): seconds or
    /// milliseconds would be a guess.
    #[error("{value:?} has no unit: write {value}s for seconds or {value}ms for milliseconds")]
    NoUnit {
        /// The value.
        value: String,
    },
    /// Unknown parameter `name`.
    #[error("unknown parameter {name}")]
    Unknown {
        /// The name.
        name: String,
    },
}

impl ParamSpec {
    /// Parse and check `raw` against the parameter's type.
    pub fn parse(&self, raw: &str) -> Result<ParamValue, ParamError> {
        let invalid = |expected: &str| ParamError::Invalid {
            value: raw.to_owned(),
            expected: expected.to_owned(),
        };
        match &self.ty {
            ParamType::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(ParamValue::Bool(true)),
                "false" | "0" | "no" | "off" => Ok(ParamValue::Bool(false)),
                _ => Err(invalid("boolean (true or false)")),
            },
            ParamType::Int { bits, signed } => {
                let t = raw.trim();
                let v: i128 = if let Some(hex) = t.strip_prefix("0x") {
                    i128::from_str_radix(hex, 16).map_err(|_| invalid("number"))?
                } else {
                    t.parse().map_err(|_| invalid("number"))?
                };
                let (min, max) = int_range(*bits, *signed);
                if v < min || v > max {
                    return Err(ParamError::OutOfRange {
                        value: t.to_owned(),
                        ty: self.ty.name(),
                        min,
                        max,
                    });
                }
                Ok(ParamValue::Int(v))
            }
            ParamType::String { max_len } => {
                if let Some(max) = max_len
                    && raw.len() > *max
                {
                    return Err(ParamError::TooLong {
                        value: raw.to_owned(),
                        max: *max,
                    });
                }
                Ok(ParamValue::Str(raw.to_owned()))
            }
            ParamType::Duration => match parse_duration(raw) {
                Ok(d) => Ok(ParamValue::Duration(d)),
                Err(DurationError::NoUnit) => Err(ParamError::NoUnit {
                    value: raw.trim().to_owned(),
                }),
                Err(_) => Err(invalid("duration (examples: 500ms, 3s, 1m30s, 2h)")),
            },
            ParamType::Choice(choices) => {
                if choices.iter().any(|c| c == raw) {
                    Ok(ParamValue::Str(raw.to_owned()))
                } else {
                    Err(invalid(&format!("one of {}", choices.join(", "))))
                }
            }
        }
    }
}

fn int_range(bits: u8, signed: bool) -> (i128, i128) {
    let bits = u32::from(bits.clamp(1, 64));
    if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    }
}

/// Why a duration is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    /// A bare number other than 0: seconds or milliseconds would be a guess.
    #[error("a duration needs a unit (500ms, 3s, 1m30s, 2h)")]
    NoUnit,
    /// Not a duration: humantime's reason.
    #[error("not a duration ({0}; examples: 500ms, 3s, 1m30s, 2h)")]
    Invalid(String),
}

/// A duration as upstream's flags take them (Go's `time.ParseDuration`:
/// `300ms`, `1.5s`, `1m30s`, `2h`, `10µs`, a bare `0`), read by the
/// `humantime` crate, which also takes spaces and longer unit names
/// (`1min 30s`). A bare number other than `0` is refused
/// ([`DurationError::NoUnit`]): Go refuses it too, and taking it as
/// milliseconds or seconds silently would be a guess. Negative values are
/// refused.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return match t.parse::<f64>() {
            Ok(0.0) => Ok(Duration::ZERO),
            Ok(_) => Err(DurationError::NoUnit),
            Err(e) => Err(DurationError::Invalid(e.to_string())),
        };
    }
    // Go spells micro with either sign (U+00B5, U+03BC); humantime with
    // the first.
    let t = t.replace('\u{3bc}', "\u{b5}");
    humantime::parse_duration(&t).map_err(|e| DurationError::Invalid(e.to_string()))
}

/// Set the defaults a gadget chose for parameters of operators
/// (`paramDefaults` in `gadget.yaml`, keyed by full name; upstream matches
/// them without regard to case). Returns the keys that name no parameter
/// of `specs`; a default that is not a valid value is an error, with the
/// key.
pub fn apply_defaults(
    specs: &mut [ParamSpec],
    defaults: &BTreeMap<String, String>,
) -> Result<Vec<String>, (String, ParamError)> {
    let mut unused = Vec::new();
    for (key, value) in defaults {
        let mut found = false;
        for s in specs
            .iter_mut()
            .filter(|s| s.full_name.eq_ignore_ascii_case(key))
        {
            s.parse(value).map_err(|e| (key.clone(), e))?;
            s.default.clone_from(value);
            found = true;
        }
        if !found {
            unused.push(key.clone());
        }
    }
    Ok(unused)
}

/// Checked values by full name. Parameters the user did not set hold
/// their defaults (when they have one).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamValues {
    values: BTreeMap<String, ParamValue>,
    /// The same values as the user typed them (or as the default reads):
    /// what a gadget's templates see (`getParamValue`).
    raw: BTreeMap<String, String>,
}

impl ParamValues {
    /// Defaults of `specs`, then `given` (`(full name or key, raw value)`)
    /// on top. Unknown names and bad values are errors.
    pub fn resolve(
        specs: &[ParamSpec],
        given: &[(String, String)],
    ) -> Result<Self, (String, ParamError)> {
        let mut values = BTreeMap::new();
        let mut raw = BTreeMap::new();
        for s in specs {
            if !s.default.is_empty() {
                let v = s.parse(&s.default).map_err(|e| (s.full_name.clone(), e))?;
                values.insert(s.full_name.clone(), v);
                raw.insert(s.full_name.clone(), s.default.clone());
            }
        }
        for (name, raw_value) in given {
            let spec = specs
                .iter()
                .find(|s| s.full_name == *name || s.key == *name)
                .ok_or_else(|| (name.clone(), ParamError::Unknown { name: name.clone() }))?;
            let v = spec.parse(raw_value).map_err(|e| (spec.key.clone(), e))?;
            values.insert(spec.full_name.clone(), v);
            raw.insert(spec.full_name.clone(), raw_value.clone());
        }
        Ok(Self { values, raw })
    }

    /// The checked value of `full_name`.
    pub fn get(&self, full_name: &str) -> Option<&ParamValue> {
        self.values.get(full_name)
    }

    /// The value of `full_name` as typed (or as its default reads).
    pub fn raw(&self, full_name: &str) -> Option<&str> {
        self.raw.get(full_name).map(String::as_str)
    }

    /// Every value, by full name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ty: ParamType, default: &str) -> ParamSpec {
        ParamSpec {
            key: "k".into(),
            full_name: "operator.x.k".into(),
            description: String::new(),
            default: default.into(),
            ty,
            group: "g".into(),
            alias: None,
        }
    }

    #[test]
    fn parses_each_type_and_reports_why_not() {
        let cases: &[(ParamType, &str, Result<ParamValue, &str>)] = &[
            (ParamType::Bool, "true", Ok(ParamValue::Bool(true))),
            (ParamType::Bool, "OFF", Ok(ParamValue::Bool(false))),
            (
                ParamType::Bool,
                "maybe",
                Err("\"maybe\" is not a boolean (true or false)"),
            ),
            (
                ParamType::Int {
                    bits: 32,
                    signed: false,
                },
                "4294967295",
                Ok(ParamValue::Int(4_294_967_295)),
            ),
            (
                ParamType::Int {
                    bits: 32,
                    signed: false,
                },
                "0x10",
                Ok(ParamValue::Int(16)),
            ),
            (
                ParamType::Int {
                    bits: 32,
                    signed: false,
                },
                "4294967296",
                Err("4294967296 is out of range for uint32 (0..=4294967295)"),
            ),
            (
                ParamType::Int {
                    bits: 32,
                    signed: false,
                },
                "-1",
                Err("-1 is out of range for uint32 (0..=4294967295)"),
            ),
            (
                ParamType::Int {
                    bits: 8,
                    signed: true,
                },
                "-128",
                Ok(ParamValue::Int(-128)),
            ),
            (
                ParamType::Int {
                    bits: 16,
                    signed: true,
                },
                "abc",
                Err("\"abc\" is not a number"),
            ),
            (
                ParamType::String { max_len: Some(3) },
                "abc",
                Ok(ParamValue::Str("abc".into())),
            ),
            (
                ParamType::String { max_len: Some(3) },
                "abcd",
                Err("\"abcd\" is longer than 3 bytes"),
            ),
            (
                ParamType::Duration,
                "2s",
                Ok(ParamValue::Duration(Duration::from_secs(2))),
            ),
            (
                ParamType::Duration,
                "soon",
                Err("\"soon\" is not a duration (examples: 500ms, 3s, 1m30s, 2h)"),
            ),
            (
                ParamType::Duration,
                "5",
                Err("\"5\" has no unit: write 5s for seconds or 5ms for milliseconds"),
            ),
            (
                ParamType::Choice(vec!["a".into(), "b".into()]),
                "b",
                Ok(ParamValue::Str("b".into())),
            ),
            (
                ParamType::Choice(vec!["a".into(), "b".into()]),
                "c",
                Err("\"c\" is not a one of a, b"),
            ),
        ];
        for (ty, raw, want) in cases {
            let got = spec(ty.clone(), "").parse(raw).map_err(|e| e.to_string());
            assert_eq!(got, want.clone().map_err(str::to_owned), "{ty:?} {raw}");
        }
    }

    #[test]
    fn values_start_from_defaults_and_accept_keys_or_full_names() {
        let specs = vec![
            spec(
                ParamType::Int {
                    bits: 32,
                    signed: false,
                },
                "7",
            ),
            ParamSpec {
                key: "comm".into(),
                full_name: "operator.x.comm".into(),
                ..spec(ParamType::String { max_len: None }, "")
            },
        ];
        let v = ParamValues::resolve(&specs, &[]).unwrap();
        assert_eq!(v.get("operator.x.k"), Some(&ParamValue::Int(7)));
        assert_eq!(v.get("operator.x.comm"), None);
        let v = ParamValues::resolve(
            &specs,
            &[
                ("comm".into(), "cat".into()),
                ("operator.x.k".into(), "9".into()),
            ],
        )
        .unwrap();
        assert_eq!(v.get("operator.x.k"), Some(&ParamValue::Int(9)));
        assert_eq!(
            v.get("operator.x.comm"),
            Some(&ParamValue::Str("cat".into()))
        );
        let e = ParamValues::resolve(&specs, &[("nope".into(), "1".into())]).unwrap_err();
        assert_eq!(
            e.1,
            ParamError::Unknown {
                name: "nope".into()
            }
        );
        let e = ParamValues::resolve(&specs, &[("k".into(), "x".into())]).unwrap_err();
        assert_eq!(e.0, "k");
    }

    #[test]
    fn gadget_defaults_replace_operator_defaults() {
        let mut specs = vec![spec(ParamType::Duration, "1s")];
        let mut d = BTreeMap::new();
        d.insert("Operator.X.K".to_owned(), "0".to_owned());
        d.insert("operator.y.z".to_owned(), "1".to_owned());
        assert_eq!(
            apply_defaults(&mut specs, &d),
            Ok(vec!["operator.y.z".to_owned()])
        );
        assert_eq!(specs[0].default, "0");
        let v = ParamValues::resolve(&specs, &[]).unwrap();
        assert_eq!(
            v.get("operator.x.k"),
            Some(&ParamValue::Duration(Duration::ZERO))
        );
        assert_eq!(v.raw("operator.x.k"), Some("0"));
        d.insert("operator.x.k".to_owned(), "soon".to_owned());
        let e = apply_defaults(&mut specs, &d).unwrap_err();
        assert_eq!(e.0, "operator.x.k");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1000ms"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("10\u{3bc}s"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("250"), Err(DurationError::NoUnit));
        assert_eq!(parse_duration("1.5"), Err(DurationError::NoUnit));
        for bad in ["", "s", "soon", "-1s", "5x", "1..5s"] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
