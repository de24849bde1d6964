//! BPF maps reached through a file descriptor: the gadget's own maps once
//! it is loaded (handed out by `LoadedGadget::share_maps`), maps a WASM
//! guest creates, and inner maps of a map of maps, opened by id.
//!
//! Owns: `bpf(2)` for map creation, element lookup, update and delete,
//! opening by id and reading a map's kernel info; the size checks that keep
//! the kernel from reading or writing past a buffer (a key or value of the
//! wrong length is refused here, never passed on). Does not own: who may
//! touch which map (the WASM host decides, `operators::wasm::maps`) or
//! loading a gadget (`loader.rs`, the only aya user).
//!
//! Every [`MapFd`] owns its descriptor: dropping the last one releases the
//! map unless a program or another map still refers to it (Architecture
//! Invariant 7: nothing is pinned).

use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd};

/// `enum bpf_map_type` values this module names.
pub mod map_type {
    /// `BPF_MAP_TYPE_HASH`.
    pub const HASH: u32 = 1;
    /// `BPF_MAP_TYPE_ARRAY`.
    pub const ARRAY: u32 = 2;
    /// `BPF_MAP_TYPE_PROG_ARRAY`.
    pub const PROG_ARRAY: u32 = 3;
    /// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`.
    pub const PERF_EVENT_ARRAY: u32 = 4;
    /// `BPF_MAP_TYPE_PERCPU_HASH`.
    pub const PERCPU_HASH: u32 = 5;
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    pub const PERCPU_ARRAY: u32 = 6;
    /// `BPF_MAP_TYPE_CGROUP_ARRAY`.
    pub const CGROUP_ARRAY: u32 = 8;
    /// `BPF_MAP_TYPE_LRU_PERCPU_HASH`.
    pub const LRU_PERCPU_HASH: u32 = 10;
    /// `BPF_MAP_TYPE_ARRAY_OF_MAPS`.
    pub const ARRAY_OF_MAPS: u32 = 12;
    /// `BPF_MAP_TYPE_HASH_OF_MAPS`.
    pub const HASH_OF_MAPS: u32 = 13;
    /// `BPF_MAP_TYPE_SOCKMAP`.
    pub const SOCKMAP: u32 = 15;
    /// `BPF_MAP_TYPE_XSKMAP`.
    pub const XSKMAP: u32 = 17;
    /// `BPF_MAP_TYPE_SOCKHASH`.
    pub const SOCKHASH: u32 = 18;
    /// `BPF_MAP_TYPE_REUSEPORT_SOCKARRAY`.
    pub const REUSEPORT_SOCKARRAY: u32 = 20;
    /// `BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE`.
    pub const PERCPU_CGROUP_STORAGE: u32 = 21;
    /// The last type the kernel UAPI of 6.x defines (`BPF_MAP_TYPE_ARENA`);
    /// anything above is a type this version of ig does not know.
    pub const LAST_KNOWN: u32 = 33;

    /// Types whose value is one slot per possible CPU.
    pub fn is_per_cpu(t: u32) -> bool {
        matches!(
            t,
            PERCPU_HASH | PERCPU_ARRAY | LRU_PERCPU_HASH | PERCPU_CGROUP_STORAGE
        )
    }

    /// Types whose values are other maps.
    pub fn is_map_of_maps(t: u32) -> bool {
        matches!(t, ARRAY_OF_MAPS | HASH_OF_MAPS)
    }
}

/// Update flags the kernel takes (`BPF_ANY` .. `BPF_F_LOCK`).
pub const UPDATE_FLAGS_MAX: u64 = 4;

/// Longest value ig copies out of a map in one lookup (a per-CPU value on
/// many CPUs can be large; a guest's memory is 16 MiB).
pub const MAX_VALUE_LEN: usize = 16 << 20;

/// Why a map operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The `bpf(2)` call `op` failed.
    #[error("{op}")]
    Syscall {
        /// Which call.
        op: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key is `got` bytes.
    #[error("the key is {got} bytes; the map's keys are {expected}")]
    KeySize {
        /// What was expected.
        expected: usize,
        /// What was found.
        got: usize,
    },
    /// The value is `got` bytes.
    #[error("the value is {got} bytes; the map's values are {expected}")]
    ValueSize {
        /// What was expected.
        expected: usize,
        /// What was found.
        got: usize,
    },
    /// A value larger than `MAX_VALUE_LEN`.
    #[error("a value of {0} bytes is more than ig copies ({MAX_VALUE_LEN} bytes)")]
    TooLarge(usize),
    /// Update flags the kernel does not define.
    #[error("update flags {0} are not one of the kernel's (0 to {UPDATE_FLAGS_MAX})")]
    Flags(u64),
}

/// What the kernel says about a map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapInfo {
    /// `enum bpf_map_type` ([`map_type`]).
    pub map_type: u32,
    /// The kernel's id of the map.
    pub id: u32,
    /// Bytes per key.
    pub key_size: u32,
    /// Bytes per value (per CPU for per-CPU maps).
    pub value_size: u32,
    /// The most entries it holds.
    pub max_entries: u32,
    /// Its name (the kernel keeps 15 bytes).
    pub name: String,
}

/// A map held by its descriptor.
#[derive(Debug)]
pub struct MapFd {
    fd: OwnedFd,
    info: MapInfo,
    /// Bytes of one value as user space reads and writes it (per-CPU maps:
    /// one 8-byte aligned slot per possible CPU).
    value_len: usize,
}

/// `bpf(2)` commands (`include/uapi/linux/bpf.h`).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// The `bpf_attr` prefix of `BPF_MAP_CREATE`.
#[repr(C)]
#[derive(Default)]
struct CreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// The `bpf_attr` of the element commands.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// The `bpf_attr` of `BPF_MAP_GET_FD_BY_ID`.
#[repr(C)]
#[derive(Default)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// The `bpf_attr` of `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The prefix of `struct bpf_map_info` we read (the kernel fills what
/// fits `info_len`).
#[repr(C)]
#[derive(Default)]
struct RawMapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; 16],
}

/// `bpf(cmd, attr)`: the non-negative result (a descriptor for the
/// commands that create one).
fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: `attr` is a `bpf_attr` prefix laid out for `cmd` (the kernel
    // zero-extends the rest), and every pointer in it refers to a live
    // buffer of the length the map's key and value sizes give (checked
    // by the callers).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: a descriptor the kernel just created for us; nobody else
    // owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// Map names the kernel accepts: at most 15 bytes of `[A-Za-z0-9_.]`.
/// Other bytes become `_`, longer names are cut (as libbpf does).
fn kernel_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' {
            b
        } else {
            b'_'
        };
    }
    out
}

impl MapFd {
    /// Take ownership of a map descriptor and read its kernel info.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, MapError> {
        let mut raw = RawMapInfo::default();
        let mut attr = InfoAttr {
            bpf_fd: fd.as_raw_fd() as u32,
            info_len: std::mem::size_of::<RawMapInfo>() as u32,
            info: std::ptr::from_mut(&mut raw) as u64,
        };
        sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map_err(|source| MapError::Syscall {
            op: "reading the map's info",
            source,
        })?;
        let end = raw.name.iter().position(|b| *b == 0).unwrap_or(16);
        let info = MapInfo {
            map_type: raw.map_type,
            id: raw.id,
            key_size: raw.key_size,
            value_size: raw.value_size,
            max_entries: raw.max_entries,
            name: String::from_utf8_lossy(&raw.name[..end]).into_owned(),
        };
        let value_len = if map_type::is_per_cpu(info.map_type) {
            (info.value_size as usize).next_multiple_of(8) * possible_cpus()
        } else {
            info.value_size as usize
        };
        Ok(Self {
            fd,
            info,
            value_len,
        })
    }

    /// Create a map. A perf event array of 0 entries gets one per possible
    /// CPU (what the BPF side indexes with `BPF_F_CURRENT_CPU`), as
    /// cilium/ebpf does for upstream's guests.
    pub fn create(
        name: &str,
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> Result<Self, MapError> {
        let max_entries = if map_type == map_type::PERF_EVENT_ARRAY && max_entries == 0 {
            u32::try_from(possible_cpus()).unwrap_or(u32::MAX)
        } else {
            max_entries
        };
        let mut attr = CreateAttr {
            map_type,
            key_size,
            value_size,
            max_entries,
            map_name: kernel_name(name),
            ..CreateAttr::default()
        };
        let fd = sys_bpf(BPF_MAP_CREATE, &mut attr).map_err(|source| MapError::Syscall {
            op: "creating the map",
            source,
        })?;
        Self::from_fd(owned(fd))
    }

    /// Open the map with kernel id `id` (an inner map of a map of maps).
    pub fn from_id(id: u32) -> Result<Self, MapError> {
        let mut attr = IdAttr {
            id,
            ..IdAttr::default()
        };
        let fd = sys_bpf(BPF_MAP_GET_FD_BY_ID, &mut attr).map_err(|source| MapError::Syscall {
            op: "opening the map by id",
            source,
        })?;
        Self::from_fd(owned(fd))
    }

    /// What the kernel said about the map when it was opened.
    pub fn info(&self) -> &MapInfo {
        &self.info
    }

    /// Bytes of a value as user space sees it.
    pub fn value_len(&self) -> usize {
        self.value_len
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        let expected = self.info.key_size as usize;
        if key.len() != expected {
            return Err(MapError::KeySize {
                expected,
                got: key.len(),
            });
        }
        Ok(())
    }

    /// The value at `key` (`value_len` bytes).
    pub fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        self.check_key(key)?;
        if self.value_len > MAX_VALUE_LEN {
            return Err(MapError::TooLarge(self.value_len));
        }
        let mut value = vec![0u8; self.value_len];
        let mut attr = ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: value.as_mut_ptr() as u64,
            ..ElemAttr::default()
        };
        sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).map_err(|source| MapError::Syscall {
            op: "looking the key up",
            source,
        })?;
        Ok(value)
    }

    /// Set `key` to `value` (`value_len` bytes) with the kernel's update
    /// `flags` (`BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`, `BPF_F_LOCK`).
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        self.check_key(key)?;
        if flags > UPDATE_FLAGS_MAX {
            return Err(MapError::Flags(flags));
        }
        if value.len() != self.value_len {
            return Err(MapError::ValueSize {
                expected: self.value_len,
                got: value.len(),
            });
        }
        let mut attr = ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            flags,
            ..ElemAttr::default()
        };
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map_err(|source| MapError::Syscall {
            op: "updating the key",
            source,
        })?;
        Ok(())
    }

    /// The key after `key` (the first with `None`), or `None` at the end.
    pub fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        if let Some(k) = key {
            self.check_key(k)?;
        }
        let mut next = vec![0u8; self.info.key_size as usize];
        let mut attr = ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.map_or(0, |k| k.as_ptr() as u64),
            value: next.as_mut_ptr() as u64,
            ..ElemAttr::default()
        };
        match sys_bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) => Ok(Some(next)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(source) => Err(MapError::Syscall {
                op: "walking the keys",
                source,
            }),
        }
    }

    /// Delete the entry of `key` (exactly `key_size` bytes).
    pub fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.check_key(key)?;
        let mut attr = ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            ..ElemAttr::default()
        };
        sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr).map_err(|source| MapError::Syscall {
            op: "deleting the key",
            source,
        })?;
        Ok(())
    }
}

impl AsRawFd for MapFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// CPUs the kernel may ever run (`/sys/devices/system/cpu/possible`):
/// per-CPU values and perf event arrays have one slot per possible CPU.
pub fn possible_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    super::loader::parse_cpu_list(&text)
        .iter()
        .max()
        .map_or(1, |m| *m as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_and_cleaned_as_the_kernel_wants() {
        assert_eq!(
            &kernel_name("perf_buffer_4026531840")[..],
            b"perf_buffer_402\0"
        );
        assert_eq!(&kernel_name("a-b c")[..6], b"a_b_c\0");
        assert_eq!(kernel_name(""), [0u8; 16]);
    }

    #[test]
    fn attr_layouts_match_the_kernel() {
        // Offsets from include/uapi/linux/bpf.h.
        assert_eq!(std::mem::size_of::<CreateAttr>(), 44);
        assert_eq!(std::mem::size_of::<ElemAttr>(), 32);
        assert_eq!(std::mem::size_of::<RawMapInfo>(), 40);
    }
}
