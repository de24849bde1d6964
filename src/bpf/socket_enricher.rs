//! The socket enricher: which process owns each TCP and UDP socket, in the
//! map `gadget_sockets` that networking gadgets read through
//! `gadget/sockets-map.h` (upstream's `SocketEnricher` operator), built
//! without kprobes (`socket_enricher.bpf.c`, embedded; why and how in
//! `docs/design/007-socket-enricher-without-kprobes.md`).
//!
//! Started by the eBPF operator for an object that declares
//! `gadget_sockets`, before the gadget is loaded: it creates the map with
//! the value layout `--socket-enricher-fields` asks for ([`Fields`]),
//! makes the BTF of that layout ([`value_btf`]) that both its own program
//! and the gadget are relocated against, loads its program with the map
//! in place of its own, fills the map with the sockets that exist (an
//! iterator), and hands the map's descriptor to the gadget's load
//! (`LoadSpec::replace_maps`).
//!
//! On the operator's tick ([`SocketEnricher::tick`]) it removes entries
//! marked deleted more than [`GRACE`] ago, and every [`SWEEP`] marks those
//! whose socket no task holds any more (what a closed UDP socket leaves:
//! there is no tracepoint at its close).
//!
//! Owns the layout ([`Fields`], [`value_btf`], pure) and the map's
//! upkeep; loading goes through `bpf::loader` like any gadget.

use std::collections::HashSet;
use std::os::fd::AsRawFd as _;
use std::time::{Duration, Instant};

use super::contract::Contract;
use super::loader::{LoadError, LoadSpec, LoadedGadget};
use super::maps::{MapError, MapFd};
use super::object::{ObjectError, ObjectInfo};
use super::programs::{PlanError, plan};
use super::targets::TargetSet;
use crate::btf::Btf;
use crate::metadata::GadgetMetadata;

/// The compiled enricher, built from `socket_enricher.bpf.c` by `build.rs`.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/socket_enricher.bpf.o"));

/// The map gadgets declare and the enricher fills (`sockets-map.h`).
pub const MAP: &str = "gadget_sockets";
/// `GADGET_MAX_SOCKETS`.
const MAX_SOCKETS: u32 = 16384;
/// `struct gadget_socket_key`: netns u32, family u16, proto u8, port u16.
const KEY_SIZE: u32 = 12;
/// Bytes of the fixed part of the value (up to `optional_fields_start`).
const FIXED_SIZE: u32 = 88;
/// Offsets in the value (`types.h`) user space reads.
const SOCK_AT: usize = 56;
const DELETION_AT: usize = 64;
/// The enricher's own maps user space uses.
const DYING: &str = "ig_se_dying";
const SEED: &str = "ig_se_seed";
const LIVE: &str = "ig_se_live";
/// How long an entry marked deleted stays (packets in flight are still
/// attributed), upstream's value.
pub const GRACE: Duration = Duration::from_secs(5);
/// How often entries of sockets no task holds are looked for.
pub const SWEEP: Duration = Duration::from_secs(10);

/// `--socket-enricher-fields`' parameter, as upstream names it.
pub const FIELDS_PARAM: &str = "operator.SocketEnricher.socket-enricher-fields";
/// Its default, upstream's.
pub const DEFAULT_FIELDS: &str = "cwd=512,exepath=512";
/// Size of a field given without one (or as 0), upstream's.
const DEFAULT_FIELD_SIZE: u32 = 512;
/// Largest size of an optional field (`GADGET_SE_PATH_MAX`).
const MAX_FIELD_SIZE: u32 = 4096;

/// Why the socket enricher cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EnricherError {
    /// `--socket-enricher-fields` does not parse.
    #[error(
        "--socket-enricher-fields: {0} (expected a comma list of cwd[=SIZE] and exepath[=SIZE], SIZE a power of two up to 4096; empty for none)"
    )]
    Fields(String),
    /// The embedded socket enricher object is unreadable.
    #[error("the embedded socket enricher object is unreadable")]
    Object(#[from] ObjectError),
    /// Planning the socket enricher's programs failed.
    #[error("planning the socket enricher's programs")]
    Plan(#[from] PlanError),
    /// Creating the socket map `MAP` failed.
    #[error("creating the socket map {MAP}")]
    Map(#[source] MapError),
    /// Loading the socket enricher failed.
    #[error("loading the socket enricher")]
    Load(#[from] LoadError),
    /// The socket enricher's BTF cannot be read.
    #[error("the socket enricher's BTF")]
    Btf(#[from] crate::btf::BtfError),
    /// The socket enricher's object lacks a map it needs.
    #[error("the socket enricher has no map {0}")]
    MissingMap(&'static str),
}

/// The optional fields of the value and their sizes in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fields {
    /// The size of the `cwd` field, if recorded.
    pub cwd: Option<u32>,
    /// The size of the `exepath` field, if recorded.
    pub exepath: Option<u32>,
}

impl Default for Fields {
    fn default() -> Self {
        Self::parse(DEFAULT_FIELDS).unwrap_or(Self {
            cwd: None,
            exepath: None,
        })
    }
}

impl Fields {
    /// `cwd=512,exepath=1024`, `cwd`, or empty (no optional field).
    pub fn parse(s: &str) -> Result<Self, EnricherError> {
        let mut f = Self {
            cwd: None,
            exepath: None,
        };
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, size) = item.split_once('=').unwrap_or((item, ""));
            let size = match size.trim() {
                "" | "0" => DEFAULT_FIELD_SIZE,
                n => n
                    .parse::<u32>()
                    .map_err(|_| EnricherError::Fields(format!("{item}: not a size")))?,
            };
            if !size.is_power_of_two() || size > MAX_FIELD_SIZE {
                return Err(EnricherError::Fields(format!(
                    "{item}: the size must be a power of two up to {MAX_FIELD_SIZE}"
                )));
            }
            let slot = match name.trim() {
                "cwd" => &mut f.cwd,
                "exepath" => &mut f.exepath,
                other => {
                    return Err(EnricherError::Fields(format!("unknown field {other:?}")));
                }
            };
            *slot = Some(size);
        }
        Ok(f)
    }

    /// Bytes of a value with these fields.
    pub fn value_size(&self) -> u32 {
        FIXED_SIZE + self.cwd.unwrap_or(0) + self.exepath.unwrap_or(0)
    }
}

/// The BTF of `struct gadget_socket_value` as laid out with `fields`: the
/// fixed members of `types.h`, then `cwd` and `exepath` if enabled, each
/// `char[size]`, one after the other from `optional_fields_start`.
pub fn value_btf(fields: &Fields) -> Vec<u8> {
    use crate::btf::builder::BtfBuilder;
    let mut b = BtfBuilder::new();
    let u64_ = b.int("unsigned long long", 8, false);
    let u32_ = b.int("unsigned int", 4, false);
    let char_ = b.char_();
    let comm = b.array(char_, 16);
    let empty = b.array(char_, 0);
    let mut members: Vec<(String, u32, u32)> = vec![
        ("mntns".into(), u64_, 0),
        ("pid_tgid".into(), u64_, 8),
        ("uid_gid".into(), u64_, 16),
        ("task".into(), comm, 24),
        ("ptask".into(), comm, 40),
        ("sock".into(), u64_, 56),
        ("deletion_timestamp".into(), u64_, 64),
        ("ppid".into(), u32_, 72),
        ("ptid".into(), u32_, 76),
        ("ipv6only".into(), char_, 80),
        ("optional_fields_start".into(), empty, FIXED_SIZE),
    ];
    let mut at = FIXED_SIZE;
    for (name, size) in [("cwd", fields.cwd), ("exepath", fields.exepath)] {
        if let Some(size) = size {
            let arr = b.array(char_, size);
            members.push((name.into(), arr, at));
            at += size;
        }
    }
    let members: Vec<(&str, u32, u32)> = members
        .iter()
        .map(|(n, t, byte)| (n.as_str(), *t, byte * 8))
        .collect();
    b.struct_(super::compat::SOCKET_VALUE, at, &members);
    b.to_bytes()
}

/// A running enricher: its program, the map it fills, the BTF of its
/// layout.
pub struct SocketEnricher {
    map: MapFd,
    btf: Btf,
    value_size: usize,
    dying: MapFd,
    loaded: LoadedGadget,
    next_sweep: Instant,
}

impl SocketEnricher {
    /// Create the map, load and attach the program, fill the map with the
    /// sockets that exist now.
    pub fn start(fields: Fields) -> Result<Self, EnricherError> {
        let value_size = fields.value_size();
        let map = MapFd::create(MAP, 1 /* HASH */, KEY_SIZE, value_size, MAX_SOCKETS)
            .map_err(EnricherError::Map)?;
        let btf = Btf::parse(&value_btf(&fields))?;
        let info = ObjectInfo::parse(OBJECT)?;
        let object_btf = Btf::parse(&info.btf)?;
        let contract = Contract::discover(&object_btf).unwrap_or_default();
        let programs = plan(&info.programs, &contract, &GadgetMetadata::default())?;
        let mut loaded = LoadedGadget::load(&LoadSpec {
            object: OBJECT,
            info: &info,
            plan: &programs,
            globals: &[],
            max_entries: &[],
            targets: &TargetSet::host_only(),
            replace_maps: &[(MAP, map.as_raw_fd())],
            socket_value_btf: Some(&btf),
            iface: None,
            // Its own kernel BTF parse: the run's prefetched loader is the
            // gadget's.
            prefetch: None,
        })?;
        let dying = loaded
            .share_maps()
            .into_iter()
            .find(|(n, _)| n == DYING)
            .and_then(|(_, fd)| MapFd::from_fd(fd).ok())
            .ok_or(EnricherError::MissingMap(DYING))?;
        // The tracepoints are attached: sockets made from now on are
        // recorded; the iterator adds those made before.
        let seeded = loaded.run_iterator(SEED)?;
        log::debug!(
            "socket enricher loaded: value of {value_size} bytes ({fields:?}), seed iterator wrote {} bytes",
            seeded.len()
        );
        Ok(Self {
            map,
            btf,
            value_size: value_size as usize,
            dying,
            loaded,
            next_sweep: Instant::now() + SWEEP,
        })
    }

    /// The descriptor of `gadget_sockets`, for `LoadSpec::replace_maps`.
    pub fn map_fd(&self) -> i32 {
        self.map.as_raw_fd()
    }

    /// The BTF the gadget's `gadget_socket_value` accesses are relocated
    /// against (`LoadSpec::socket_value_btf`).
    pub fn value_btf(&self) -> &Btf {
        &self.btf
    }

    /// Upkeep, on the operator's tick: expire entries marked deleted, and
    /// every [`SWEEP`] mark those of sockets no task holds. Errors are
    /// logged: attribution degrades, the run goes on.
    pub fn tick(&mut self) {
        let now = monotonic_ns();
        if let Err(e) = self.expire(now) {
            log::debug!("socket enricher: expiring entries: {e}");
        }
        if Instant::now() >= self.next_sweep {
            self.next_sweep = Instant::now() + SWEEP;
            if let Err(e) = self.sweep(now) {
                log::debug!("socket enricher: looking for closed sockets: {e}");
            }
        }
    }

    /// Remove the entries marked deleted before `now - GRACE`.
    fn expire(&mut self, now: u64) -> Result<(), MapError> {
        let grace = GRACE.as_nanos() as u64;
        let mut expired = Vec::new();
        let mut key = None;
        while let Some(k) = self.dying.next_key(key.as_deref())? {
            if let Ok(v) = self.dying.lookup(&k)
                && let Some(at) = u64_at(&v, 0)
                && at.saturating_add(grace) < now
            {
                expired.push((k.clone(), at));
            }
            key = Some(k);
        }
        for (k, at) in expired {
            // Unless a new owner took the key since it was marked.
            if let Ok(v) = self.map.lookup(&k)
                && u64_at(&v, DELETION_AT) == Some(at)
            {
                let _ = self.map.delete(&k);
            }
            let _ = self.dying.delete(&k);
        }
        Ok(())
    }

    /// Mark the entries whose socket no task holds any more.
    fn sweep(&mut self, now: u64) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        // Entries as they are before the walk: one made during it is not
        // in this list, so it cannot be taken for a closed socket.
        let mut before = Vec::new();
        let mut key = None;
        while let Some(k) = self.map.next_key(key.as_deref())? {
            if let Ok(v) = self.map.lookup(&k)
                && u64_at(&v, DELETION_AT) == Some(0)
                && let Some(sock) = u64_at(&v, SOCK_AT)
            {
                before.push((k.clone(), sock));
            }
            key = Some(k);
        }
        let out = self.loaded.run_iterator(LIVE)?;
        let live: HashSet<(&[u8], u64)> = out
            .chunks_exact(24)
            .filter_map(|r| Some((&r[..KEY_SIZE as usize], u64_at(r, 16)?)))
            .collect();
        let mut marked = 0;
        for (k, sock) in before {
            if live.contains(&(k.as_slice(), sock)) {
                continue;
            }
            let Ok(mut v) = self.map.lookup(&k) else {
                continue;
            };
            if u64_at(&v, SOCK_AT) != Some(sock) || u64_at(&v, DELETION_AT) != Some(0) {
                continue;
            }
            v[DELETION_AT..DELETION_AT + 8].copy_from_slice(&now.to_ne_bytes());
            if v.len() == self.value_size && self.map.update(&k, &v, 2 /* BPF_EXIST */).is_ok() {
                let _ = self.dying.update(&k, &now.to_ne_bytes(), 0);
                marked += 1;
            }
        }
        if marked > 0 {
            log::debug!("socket enricher: {marked} entries of closed sockets marked deleted");
        }
        Ok(())
    }
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// `CLOCK_MONOTONIC` in ns: `bpf_ktime_get_ns()`'s clock.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_as_upstream_documents_them() {
        let f = |s| Fields::parse(s).unwrap();
        assert_eq!(
            f(DEFAULT_FIELDS),
            Fields {
                cwd: Some(512),
                exepath: Some(512)
            }
        );
        assert_eq!(
            f("exepath=4096"),
            Fields {
                cwd: None,
                exepath: Some(4096)
            }
        );
        assert_eq!(
            f("cwd,exepath=0"),
            Fields {
                cwd: Some(512),
                exepath: Some(512)
            }
        );
        assert_eq!(
            f(""),
            Fields {
                cwd: None,
                exepath: None
            }
        );
        for bad in ["cwd=100", "cwd=8192", "cwd=x", "tty=16"] {
            assert!(Fields::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(f("cwd=256,exepath=1024").value_size(), 88 + 256 + 1024);
    }

    #[test]
    fn value_btf_places_the_optional_fields_after_the_fixed_ones() {
        let fields = Fields {
            cwd: Some(256),
            exepath: Some(1024),
        };
        let btf = Btf::parse(&value_btf(&fields)).unwrap();
        let id = btf
            .find(super::super::compat::SOCKET_VALUE, |k| {
                matches!(k, crate::btf::Kind::Struct(_))
            })
            .unwrap();
        assert_eq!(btf.size_of(id).unwrap(), 88 + 256 + 1024);
        let members = btf.members(id).unwrap();
        let at = |name: &str| {
            members
                .iter()
                .find(|m| btf.str(m.name) == name)
                .map(|m| m.bit_offset / 8)
        };
        assert_eq!(at("sock"), Some(56));
        assert_eq!(at("deletion_timestamp"), Some(64));
        assert_eq!(at("ipv6only"), Some(80));
        assert_eq!(at("cwd"), Some(88));
        assert_eq!(at("exepath"), Some(88 + 256));
        let none = Btf::parse(&value_btf(&Fields::parse("").unwrap())).unwrap();
        let id = none
            .find(super::super::compat::SOCKET_VALUE, |_| true)
            .unwrap();
        assert_eq!(none.size_of(id).unwrap(), 88);
        assert!(
            none.members(id)
                .unwrap()
                .iter()
                .all(|m| none.str(m.name) != "cwd")
        );
    }
}
