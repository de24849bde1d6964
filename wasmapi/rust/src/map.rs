//! BPF maps: the gadget's own ([`Map::get`], from `gadgetStart` on) and
//! maps the guest creates ([`Map::new`]). Keys and values are plain
//! values whose bytes are the map's: use fixed-size integers and
//! `#[repr(C)]` structs with the kernel's padding.
//!
//! A map of maps takes and gives maps as their handle: `update(&key,
//! &inner.handle)` stores `inner`, a lookup into a `u32` gives a new
//! handle (release it with `handle::release_handle`).

use crate::helpers::{any_to_buf_ptr, any_to_buf_ptr_mut, string_to_buf_ptr};

#[link(wasm_import_module = "ig")]
extern "C" {
    #[link_name = "newMap"]
    fn ig_new_map(name: u64, typ: u32, key_size: u32, value_size: u32, max_entries: u32) -> u32;
    #[link_name = "getMap"]
    fn ig_get_map(name: u64) -> u32;
    #[link_name = "mapLookup"]
    fn ig_map_lookup(map: u32, key: u64, value: u64) -> u32;
    #[link_name = "mapUpdate"]
    fn ig_map_update(map: u32, key: u64, value: u64, flags: u64) -> u32;
    #[link_name = "mapDelete"]
    fn ig_map_delete(map: u32, key: u64) -> u32;
    #[link_name = "mapRelease"]
    fn ig_map_release(map: u32) -> u32;
}

/// The kernel's map types (`enum bpf_map_type`), in its order.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    Unspecified = 0,
    Hash,
    Array,
    ProgramArray,
    PerfEventArray,
    PerCPUHash,
    PerCPUArray,
    StackTrace,
    CGroupArray,
    LRUHash,
    LRUCPUHash,
    LPMTrie,
    ArrayOfMaps,
    HashOfMaps,
    DevMap,
    SockMap,
    CPUMap,
    XSKMap,
    SockHash,
    CGroupStorage,
    ReusePortSockArray,
    PerCPUCGroupStorage,
    Queue,
    Stack,
    SkStorage,
    DevMapHash,
    StructOpsMap,
    RingBuf,
    InodeStorage,
    TaskStorage,
    BloomFilter,
    UserRingbuf,
    CgroupStorage,
    Arena,
}

pub type Result<T> = std::result::Result<T, String>;

/// The kernel's update flags.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapUpdateFlags {
    UpdateAny = 0,
    UpdateNoExist = 1,
    UpdateExist = 2,
    UpdateLock = 4,
}

/// A map handle. One made by [`Map::new`] is released when dropped.
#[derive(Debug, Default)]
pub struct Map {
    pub handle: u32,
    created: bool,
}

/// What [`Map::new`] makes. A perf event array of 0 entries gets one per
/// CPU.
#[derive(Clone, Debug)]
pub struct MapSpec {
    pub name: String,
    pub typ: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

impl Drop for Map {
    fn drop(&mut self) {
        if self.created {
            // SAFETY: a plain call without pointers.
            if unsafe { ig_map_release(self.handle) } != 0 {
                crate::error!("releasing map handle", self.handle.to_string());
            }
        }
    }
}

impl Map {
    pub fn new(spec: &MapSpec) -> Result<Self> {
        // SAFETY: `spec.name` outlives the call; the host only reads it.
        let h = unsafe {
            ig_new_map(
                string_to_buf_ptr(&spec.name).0,
                spec.typ as u32,
                spec.key_size,
                spec.value_size,
                spec.max_entries,
            )
        };
        match h {
            0 => Err(format!("creating map {}", spec.name)),
            handle => Ok(Map {
                handle,
                created: true,
            }),
        }
    }

    /// The gadget's map `name`.
    pub fn get(name: &str) -> Result<Self> {
        // SAFETY: `name` outlives the call; the host only reads it.
        match unsafe { ig_get_map(string_to_buf_ptr(name).0) } {
            0 => Err(format!("no map {name}")),
            handle => Ok(Map {
                handle,
                created: false,
            }),
        }
    }

    /// Read the value at `key` into `value`.
    pub fn lookup<T, U>(&self, key: &T, value: &mut U) -> Result<()> {
        let k = any_to_buf_ptr(key)?.0;
        let v = any_to_buf_ptr_mut(value)?.0;
        // SAFETY: `key` is readable and `value` writable for their sizes,
        // both alive for the call.
        match unsafe { ig_map_lookup(self.handle, k, v) } {
            0 => Ok(()),
            _ => Err(format!("looking up a key in map {}", self.handle)),
        }
    }

    /// Set `key` to `value` (created or replaced).
    pub fn put<T, U>(&self, key: &T, value: &U) -> Result<()> {
        self.update(key, value, MapUpdateFlags::UpdateAny)
    }

    pub fn update<T, U>(&self, key: &T, value: &U, flags: MapUpdateFlags) -> Result<()> {
        let k = any_to_buf_ptr(key)?.0;
        let v = any_to_buf_ptr(value)?.0;
        // SAFETY: both are readable for their sizes for the call.
        match unsafe { ig_map_update(self.handle, k, v, flags as u64) } {
            0 => Ok(()),
            _ => Err(format!("updating a key in map {}", self.handle)),
        }
    }

    pub fn delete<T>(&self, key: &T) -> Result<()> {
        let k = any_to_buf_ptr(key)?.0;
        // SAFETY: `key` is readable for its size for the call.
        match unsafe { ig_map_delete(self.handle, k) } {
            0 => Ok(()),
            _ => Err(format!("deleting a key from map {}", self.handle)),
        }
    }
}
