//! The gadget contract: the marker variables through which a gadget's C code
//! tells the loader what it provides.
//!
//! The C side is `gadget-ebpf/include/gadget/macros.h` and `buffer.h`; the
//! two files change together (Architecture Invariant 6). A marker is a
//! global `const void *` variable whose *name* carries the information, parts
//! separated by `___`:
//!
//! | marker | meaning |
//! |---|---|
//! | `gadget_tracer_<ds>___<map>___<struct>` | data source `<ds>`: events of BTF struct `<struct>` from ring buffer `<map>` |
//! | `gadget_map_tracer_<map>` | `<map>` is a tracer map (with a `<map>_lost_samples` counter) |
//! | `gadget_param_<var>` | the `.rodata` variable `<var>` is a user parameter |
//! | `gadget_iter_<ds>___<struct>___<prog>[___<prog>...]` | snapshotter (iterator programs) |
//! | `gadget_snapshotter_...` | deprecated spelling of the above |
//! | `gadget_mapiter_<ds>___<map>` | topper: a hash map drained periodically |
//! | `gadget_program_fallback_<prog>___<other>` | load `<other>` if the kernel refuses `<prog>` |
//!
//! Markers of another type are ignored, as upstream does. Pure: reads BTF.

use crate::btf::{Btf, BtfError};

/// A ring-buffer data source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracer {
    /// The data source's name.
    pub name: String,
    /// The ring buffer (or perf event array) it reads.
    pub map: String,
    /// The C struct of its events.
    pub struct_name: String,
}

/// A snapshotter: iterator programs whose output is cut into structs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iter {
    /// The data source's name.
    pub name: String,
    /// The C struct of its entries.
    pub struct_name: String,
    /// The iterator programs that produce it.
    pub programs: Vec<String>,
}

/// A topper: a hash map drained every interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapIter {
    /// The data source's name.
    pub name: String,
    /// The hash map drained each interval.
    pub map: String,
}

/// Everything a gadget object declares through markers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contract {
    /// Ring-buffer data sources (`GADGET_TRACER`).
    pub tracers: Vec<Tracer>,
    /// Maps declared with `GADGET_TRACER_MAP`.
    pub tracer_maps: Vec<String>,
    /// `const volatile` variables declared with `GADGET_PARAM`.
    pub params: Vec<String>,
    /// Snapshotters (`GADGET_SNAPSHOTTER`).
    pub iters: Vec<Iter>,
    /// Toppers (`GADGET_MAPITER`).
    pub map_iters: Vec<MapIter>,
    /// `(primary, fallback)` program pairs.
    pub fallbacks: Vec<(String, String)>,
}

/// Why the markers of an object cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// Marker `marker`: expected `expected`.
    #[error("marker {marker}: expected {expected}")]
    Malformed {
        /// The marker.
        marker: String,
        /// What was expected.
        expected: &'static str,
    },
    /// Two data sources are named `name`.
    #[error("two data sources are named {name}")]
    DuplicateSource {
        /// The name.
        name: String,
    },
    /// Reading the object's BTF failed.
    #[error("reading the object's BTF")]
    Btf(#[from] BtfError),
}

impl Contract {
    /// The markers of the object whose BTF is `btf`.
    pub fn discover(btf: &Btf) -> Result<Self, ContractError> {
        let mut c = Contract::default();
        for (_, name, var) in btf.vars_with_prefix("gadget_") {
            if !btf.is_const_void_ptr(var.ty)? {
                continue;
            }
            let malformed = |expected| ContractError::Malformed {
                marker: name.to_owned(),
                expected,
            };
            if let Some(rest) = name.strip_prefix("gadget_tracer_") {
                let [ds, map, st] = parts::<3>(rest)
                    .ok_or_else(|| malformed("gadget_tracer_<name>___<map>___<struct>"))?;
                c.tracers.push(Tracer {
                    name: ds.into(),
                    map: map.into(),
                    struct_name: st.into(),
                });
            } else if let Some(map) = name.strip_prefix("gadget_map_tracer_") {
                if map.is_empty() {
                    return Err(malformed("gadget_map_tracer_<map>"));
                }
                c.tracer_maps.push(map.to_owned());
            } else if let Some(var) = name.strip_prefix("gadget_param_") {
                if var.is_empty() {
                    return Err(malformed("gadget_param_<variable>"));
                }
                c.params.push(var.to_owned());
            } else if let Some(rest) = name
                .strip_prefix("gadget_iter_")
                .or_else(|| name.strip_prefix("gadget_snapshotter_"))
            {
                let v: Vec<&str> = rest.split("___").collect();
                if v.len() < 3 || v.iter().any(|p| p.is_empty()) {
                    return Err(malformed(
                        "gadget_iter_<name>___<struct>___<program>[___<program>...]",
                    ));
                }
                c.iters.push(Iter {
                    name: v[0].into(),
                    struct_name: v[1].into(),
                    programs: v[2..].iter().map(|s| (*s).to_owned()).collect(),
                });
            } else if let Some(rest) = name.strip_prefix("gadget_program_fallback_") {
                let [p, f] = parts::<2>(rest)
                    .ok_or_else(|| malformed("gadget_program_fallback_<program>___<fallback>"))?;
                c.fallbacks.push((p.into(), f.into()));
            } else if let Some(rest) = name.strip_prefix("gadget_mapiter_") {
                let [ds, map] =
                    parts::<2>(rest).ok_or_else(|| malformed("gadget_mapiter_<name>___<map>"))?;
                c.map_iters.push(MapIter {
                    name: ds.into(),
                    map: map.into(),
                });
            }
        }
        let mut names: Vec<&str> = c
            .tracers
            .iter()
            .map(|t| t.name.as_str())
            .chain(c.iters.iter().map(|i| i.name.as_str()))
            .chain(c.map_iters.iter().map(|m| m.name.as_str()))
            .collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ContractError::DuplicateSource {
                name: w[0].to_owned(),
            });
        }
        Ok(c)
    }
}

/// `max_entries` of a BTF-defined map (`__uint(max_entries, N)` encodes N
/// as the length of an array a member points to), if declared.
pub fn map_max_entries(btf: &Btf, map: &str) -> Option<u32> {
    map_uint(btf, map, "max_entries")
}

/// `type` of a BTF-defined map (`__uint(type, N)`), if declared.
pub fn map_type(btf: &Btf, map: &str) -> Option<u32> {
    map_uint(btf, map, "type")
}

/// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`.
pub const PERF_EVENT_ARRAY: u32 = 4;

/// The maps of the object's `.maps` section, by name.
pub fn btf_maps(btf: &Btf) -> Vec<String> {
    let Some(sec) = btf.find_datasec(".maps") else {
        return Vec::new();
    };
    let Ok(crate::btf::Kind::Datasec(d)) = btf.kind(sec) else {
        return Vec::new();
    };
    d.vars
        .iter()
        .filter_map(|v| btf.name_of(v.ty).ok())
        .map(str::to_owned)
        .collect()
}

/// The maps declared with `__uint(pinning, LIBBPF_PIN_BY_NAME)` (or any
/// other non-zero pinning): shared through `/sys/fs/bpf` with the program
/// that owns them. ig uses such a pin but never creates one
/// (ARCHITECTURE.md, invariant 7): the loader refuses the object when the
/// pin is missing. upstream's `gadget/gpu_bridge_maps.h` declares such
/// maps.
pub fn pinned_maps(btf: &Btf) -> Vec<String> {
    btf_maps(btf)
        .into_iter()
        .filter(|m| map_uint(btf, m, "pinning").is_some_and(|p| p != 0))
        .collect()
}

/// The number a `__uint(key, N)` member of a BTF-defined map encodes.
fn map_uint(btf: &Btf, map: &str, key: &str) -> Option<u32> {
    let var = btf.find_var(map)?;
    let crate::btf::Kind::Var(v) = btf.kind(var).ok()? else {
        return None;
    };
    let member = btf
        .members(v.ty)
        .ok()?
        .iter()
        .find(|m| btf.str(m.name) == key)?;
    let crate::btf::Kind::Ptr(target) = btf.kind(btf.skip_modifiers(member.ty).ok()?).ok()? else {
        return None;
    };
    match btf.kind(btf.skip_modifiers(*target).ok()?).ok()? {
        crate::btf::Kind::Array(a) => Some(a.len),
        _ => None,
    }
}

/// The BTF key and value types of a BTF-defined map (`__type(key, K)`,
/// `__type(value, V)` encode them as pointers to K and V), if declared.
pub fn map_key_value(btf: &Btf, map: &str) -> Option<(crate::btf::TypeId, crate::btf::TypeId)> {
    let var = btf.find_var(map)?;
    let crate::btf::Kind::Var(v) = btf.kind(var).ok()? else {
        return None;
    };
    let members = btf.members(v.ty).ok()?;
    let target = |name: &str| {
        let m = members.iter().find(|m| btf.str(m.name) == name)?;
        match btf.kind(btf.skip_modifiers(m.ty).ok()?).ok()? {
            crate::btf::Kind::Ptr(t) => btf.skip_modifiers(*t).ok(),
            _ => None,
        }
    };
    Some((target("key")?, target("value")?))
}

/// Split `s` on `___` into exactly `N` non-empty parts.
fn parts<const N: usize>(s: &str) -> Option<[&str; N]> {
    let v: Vec<&str> = s.split("___").collect();
    if v.iter().any(|p| p.is_empty()) {
        return None;
    }
    v.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::builder::BtfBuilder;

    fn btf_with_vars(names: &[&str]) -> Btf {
        let mut b = BtfBuilder::new();
        let marker = b.const_void_ptr();
        let int = b.int("int", 4, true);
        for n in names {
            b.var(n, marker);
        }
        // A variable of another type with a marker-like name is not a marker.
        b.var("gadget_tracer_not___a___marker", int);
        Btf::parse(&b.to_bytes()).unwrap()
    }

    #[test]
    fn finds_every_marker_kind() {
        let btf = btf_with_vars(&[
            "gadget_tracer_exec___events___event",
            "gadget_map_tracer_events",
            "gadget_param_ignore_failed",
            "gadget_iter_procs___gadget_process___ig_snap_proc",
            "gadget_snapshotter_socks___sock___ig_tcp___ig_udp",
            "gadget_mapiter_files___stats",
            "gadget_other_thing",
        ]);
        let c = Contract::discover(&btf).unwrap();
        assert_eq!(
            c.tracers,
            [Tracer {
                name: "exec".into(),
                map: "events".into(),
                struct_name: "event".into()
            }]
        );
        assert_eq!(c.tracer_maps, ["events"]);
        assert_eq!(c.params, ["ignore_failed"]);
        assert_eq!(c.iters[1].programs, ["ig_tcp", "ig_udp"]);
        assert_eq!(
            c.map_iters,
            [MapIter {
                name: "files".into(),
                map: "stats".into()
            }]
        );
    }

    #[test]
    fn malformed_markers_are_errors() {
        for bad in [
            "gadget_tracer_exec___events",
            "gadget_tracer_exec___events___event___extra",
            "gadget_tracer_exec______event",
            "gadget_mapiter_x",
            "gadget_param_",
        ] {
            let err = Contract::discover(&btf_with_vars(&[bad])).unwrap_err();
            assert!(err.to_string().contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn reads_max_entries_of_btf_maps() {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4, true);
        let arr = b.array(int, 262_144);
        let ptr = b.ptr(arr);
        let ty_arr = b.array(int, 27);
        let ty_ptr = b.ptr(ty_arr);
        let def = b.struct_("", 16, &[("type", ty_ptr, 0), ("max_entries", ptr, 64)]);
        b.var("events", def);
        let btf = Btf::parse(&b.to_bytes()).unwrap();
        assert_eq!(map_max_entries(&btf, "events"), Some(262_144));
        assert_eq!(map_max_entries(&btf, "nope"), None);
    }

    #[test]
    fn finds_pinned_maps() {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4, true);
        let uint = |b: &mut BtfBuilder, n: u32| {
            let a = b.array(int, n);
            b.ptr(a)
        };
        // gpu_meta: pinning LIBBPF_PIN_BY_NAME (1); ig_build_id: pinning
        // LIBBPF_PIN_NONE (0); counts: no pinning member at all.
        let by_name = uint(&mut b, 1);
        let none = uint(&mut b, 0);
        let pinned = b.struct_("", 8, &[("pinning", by_name, 0)]);
        let unpinned = b.struct_("", 8, &[("pinning", none, 0)]);
        let plain = b.struct_("", 8, &[("max_entries", by_name, 0)]);
        let v1 = b.var("gpu_meta", pinned);
        let v2 = b.var("ig_build_id", unpinned);
        let v3 = b.var("counts", plain);
        b.datasec(".maps", 24, &[(v1, 0, 8), (v2, 8, 8), (v3, 16, 8)]);
        let btf = Btf::parse(&b.to_bytes()).unwrap();
        assert_eq!(btf_maps(&btf), ["gpu_meta", "ig_build_id", "counts"]);
        assert_eq!(pinned_maps(&btf), ["gpu_meta"]);
    }

    #[test]
    fn duplicate_data_sources_are_errors() {
        let btf = btf_with_vars(&["gadget_tracer_a___m1___s", "gadget_mapiter_a___m2"]);
        assert!(matches!(
            Contract::discover(&btf),
            Err(ContractError::DuplicateSource { .. })
        ));
    }
}
