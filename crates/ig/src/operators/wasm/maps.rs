//! BPF maps: `newMap`, `getMap`, `mapLookup`, `mapUpdate`, `mapDelete`,
//! `mapRelease`, with upstream's return values (a handle, 0 on error; 0
//! on success, 1 on error).
//!
//! `getMap` finds the gadget's maps once it is loaded (from
//! `gadgetStart` on; the eBPF operator publishes them, `bpf::shared`).
//! Keys and values are copied between guest memory and ig and must have
//! the map's exact sizes (per-CPU values: one 8-byte aligned slot per
//! possible CPU). A map of maps holds other maps: the guest writes and
//! reads handles, never descriptors (an update takes an inner map's
//! handle; a lookup answers a new handle the guest releases with
//! `releaseHandle`).
//!
//! Maps whose values are descriptors of ig's process (program, perf event,
//! cgroup, socket and XDP socket arrays) cannot be read or written by the
//! guest: a number it writes would name one of ig's own files. Upstream
//! refuses the first three; ig refuses all of them. A guest fills a perf
//! event array through `newPerfReader` instead.

use std::sync::Arc;

use wasmtime::{Caller, Linker};

use super::state::{GuestMap, Handle, HostState, read_buf, read_str, write_bin};
use crate::bpf::maps::{MapFd, map_type};

/// Why the guest may not touch a map's elements, if it may not.
fn access_refused(t: u32) -> Option<&'static str> {
    use map_type::*;
    match t {
        PROG_ARRAY | PERF_EVENT_ARRAY | CGROUP_ARRAY | SOCKMAP | SOCKHASH | XSKMAP
        | REUSEPORT_SOCKARRAY => Some("its values are file descriptors of ig's process"),
        t if t > LAST_KNOWN => Some("its type is unknown to this version of ig"),
        _ => None,
    }
}

/// The map behind `map` if the guest may touch its elements.
fn accessible(c: &Caller<'_, HostState>, map: u32, func: &str) -> Option<Arc<MapFd>> {
    let s = c.data();
    let m = s.map(map, func)?.map.clone();
    if let Some(why) = access_refused(m.info().map_type) {
        s.warn(format_args!(
            "{func}: map {} (type {}) cannot be accessed from the guest: {why}",
            m.info().name,
            m.info().map_type
        ));
        return None;
    }
    Some(m)
}

fn add_map(c: &mut Caller<'_, HostState>, map: Arc<MapFd>, created: bool) -> u32 {
    let s = c.data_mut();
    let h = s.add_handle(Handle::Map);
    if h != 0 {
        s.maps.insert(h, GuestMap { map, created });
    }
    h
}

/// 0, or 1 with a warning (once per function: guests call these per
/// event) for a failed element operation.
fn status(
    c: &mut Caller<'_, HostState>,
    func: &'static str,
    map: &MapFd,
    r: Result<(), crate::bpf::maps::MapError>,
) -> u32 {
    let Err(e) = r else {
        return 0;
    };
    c.data_mut().warn_once(
        func,
        format_args!(
            "{func} in {}: {} (warned once)",
            map.info().name,
            super::state::chain(&e)
        ),
    );
    1
}

/// A guest buffer (`len << 32 | ptr`), or a warning naming `what`.
fn guest_bytes(c: &mut Caller<'_, HostState>, v: u64, func: &str, what: &str) -> Option<Vec<u8>> {
    let b = read_buf(c, v);
    if b.is_none() {
        c.data().warn(format_args!(
            "{func}: the {what} is outside the guest's memory"
        ));
    }
    b
}

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "ig",
        "newMap",
        |mut c: Caller<'_, HostState>, name: u64, typ: u32, key: u32, value: u32, max: u32| -> u32 {
            let Some(name) = read_str(&mut c, name, "newMap") else {
                return 0;
            };
            if typ > map_type::LAST_KNOWN {
                c.data()
                    .warn(format_args!("newMap {name}: unknown map type {typ}"));
                return 0;
            }
            if map_type::is_map_of_maps(typ) {
                // The kernel needs an inner map to make one; upstream's
                // API has no way to name it.
                c.data().warn(format_args!(
                    "newMap {name}: a map of maps cannot be created from the guest (declare it in the eBPF program)"
                ));
                return 0;
            }
            match MapFd::create(&name, typ, key, value, max) {
                Ok(m) => add_map(&mut c, Arc::new(m), true),
                Err(e) => {
                    c.data().warn(format_args!(
                        "newMap {name} (type {typ}, key {key} B, value {value} B, {max} entries): {}",
                        super::state::chain(&e)
                    ));
                    0
                }
            }
        },
    )?;
    linker.func_wrap(
        "ig",
        "getMap",
        |mut c: Caller<'_, HostState>, name: u64| -> u32 {
            let Some(name) = read_str(&mut c, name, "getMap") else {
                return 0;
            };
            let Some(m) = c.data().gadget.map(&name) else {
                let names = c.data().gadget.map_names();
                c.data().warn(format_args!(
                    "getMap: no map {name:?}{}",
                    if names.is_empty() {
                        " (the gadget's maps can be had once it is loaded: from gadgetStart on)"
                            .to_owned()
                    } else {
                        format!(" (the gadget has: {})", names.join(", "))
                    }
                ));
                return 0;
            };
            if m.info().map_type > map_type::LAST_KNOWN {
                c.data().warn(format_args!(
                    "getMap {name}: unknown map type {}",
                    m.info().map_type
                ));
                return 0;
            }
            add_map(&mut c, m, false)
        },
    )?;
    linker.func_wrap(
        "ig",
        "mapLookup",
        |mut c: Caller<'_, HostState>, map: u32, key: u64, value: u64| -> u32 {
            let Some(m) = accessible(&c, map, "mapLookup") else {
                return 1;
            };
            let Some(key) = guest_bytes(&mut c, key, "mapLookup", "key") else {
                return 1;
            };
            let mut found = match m.lookup(&key) {
                Ok(v) => v,
                Err(e) => return status(&mut c, "mapLookup", &m, Err(e)),
            };
            // A map of maps holds inner map ids: the guest gets a handle.
            let mut inner = 0;
            if map_type::is_map_of_maps(m.info().map_type) {
                let id = u32::from_ne_bytes(found[..4].try_into().expect("4-byte value"));
                let opened = match MapFd::from_id(id) {
                    Ok(i) => i,
                    Err(e) => {
                        c.data().warn(format_args!(
                            "mapLookup in {}: inner map {id}: {}",
                            m.info().name,
                            super::state::chain(&e)
                        ));
                        return 1;
                    }
                };
                inner = add_map(&mut c, Arc::new(opened), false);
                if inner == 0 {
                    return 1;
                }
                found = inner.to_ne_bytes().to_vec();
            }
            if !write_bin(&mut c, value, &found) {
                let cap = (value >> 32) as usize;
                let why = if found.len() > cap {
                    format!("does not fit the guest's buffer of {cap} bytes")
                } else {
                    "was to go to a buffer outside the guest's memory".to_owned()
                };
                c.data().warn(format_args!(
                    "mapLookup in {}: the {}-byte value {why}",
                    m.info().name,
                    found.len()
                ));
                if inner != 0 {
                    c.data_mut().remove_handle(inner);
                }
                return 1;
            }
            0
        },
    )?;
    linker.func_wrap(
        "ig",
        "mapUpdate",
        |mut c: Caller<'_, HostState>, map: u32, key: u64, value: u64, flags: u64| -> u32 {
            let Some(m) = accessible(&c, map, "mapUpdate") else {
                return 1;
            };
            let (Some(key), Some(mut value)) = (
                guest_bytes(&mut c, key, "mapUpdate", "key"),
                guest_bytes(&mut c, value, "mapUpdate", "value"),
            ) else {
                return 1;
            };
            // The keep-alive of an inner map while the kernel takes it.
            let mut _inner = None;
            if map_type::is_map_of_maps(m.info().map_type) {
                let Ok(h) = <[u8; 4]>::try_from(value.as_slice()) else {
                    c.data().warn(format_args!(
                        "mapUpdate in {}: the value of a map of maps is a map handle (4 bytes), not {} bytes",
                        m.info().name,
                        value.len()
                    ));
                    return 1;
                };
                let Some(i) = c.data().map(u32::from_ne_bytes(h), "mapUpdate") else {
                    return 1;
                };
                let i = i.map.clone();
                value = (std::os::fd::AsRawFd::as_raw_fd(&*i) as u32)
                    .to_ne_bytes()
                    .to_vec();
                _inner = Some(i);
            }
            let r = m.update(&key, &value, flags);
            status(&mut c, "mapUpdate", &m, r)
        },
    )?;
    linker.func_wrap(
        "ig",
        "mapDelete",
        |mut c: Caller<'_, HostState>, map: u32, key: u64| -> u32 {
            let Some(m) = accessible(&c, map, "mapDelete") else {
                return 1;
            };
            let Some(key) = guest_bytes(&mut c, key, "mapDelete", "key") else {
                return 1;
            };
            let r = m.delete(&key);
            status(&mut c, "mapDelete", &m, r)
        },
    )?;
    linker.func_wrap(
        "ig",
        "mapRelease",
        |mut c: Caller<'_, HostState>, map: u32| -> u32 {
            let s = c.data_mut();
            let Some(m) = s.map(map, "mapRelease") else {
                return 1;
            };
            if !m.created {
                s.warn(format_args!(
                    "mapRelease: map {map} was not made by newMap (release it with releaseHandle)"
                ));
                return 1;
            }
            s.remove_handle(map);
            0
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_maps_and_unknown_types_are_refused() {
        for t in [3, 4, 8, 15, 17, 18, 20, 34, u32::MAX] {
            assert!(access_refused(t).is_some(), "{t}");
        }
        for t in [1, 2, 5, 6, 9, 12, 13, 22, 33] {
            assert!(access_refused(t).is_none(), "{t}");
        }
    }
}
