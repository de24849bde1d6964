//! Perf readers: `newPerfReader`, `perfReaderPause`, `perfReaderResume`,
//! `perfReaderRead`, `perfReaderClose` (upstream's traceloop drains its
//! per-container syscall rings with them).
//!
//! `newPerfReader(map, size, overwritable)` opens a ring of `size` bytes
//! per CPU behind a perf event array the guest holds (usually one it made
//! with `newMap`), and answers its handle (0 on error). `perfReaderRead`
//! copies the next record's raw bytes into the guest's buffer: 0 when it
//! did, 2 when nothing is left to read, 1 on error (a bad handle, a buffer
//! too small: the record is then dropped, as upstream). It never waits:
//! upstream's reader blocks a consuming ring until a record arrives, which
//! would stop ig's event loop; here such a read answers 2 like an
//! overwritable ring's. See `bpf::perf` for how each kind of ring is read.
//!
//! The rings of all the guest's readers share [`MAX_PERF_BYTES`].

use wasmtime::{Caller, Linker};

use super::state::{GuestReader, Handle, HostState, MAX_PERF_BYTES, chain, write_bin};
use crate::bpf::perf::{PerfReader, Read};

/// The reader behind `h`, or a warning.
fn reader<'a>(s: &'a mut HostState, h: u32, func: &str) -> Option<&'a mut GuestReader> {
    if !s.readers.contains_key(&h) {
        match s.handle(h) {
            None => {}
            Some(other) => s.warn(format_args!(
                "{func}: handle {h} is a {other:?}, not a perf reader"
            )),
        }
        return None;
    }
    s.readers.get_mut(&h)
}

/// `perfReaderPause` (`pause`) or `perfReaderResume`: 0, or 1.
fn toggle(c: &mut Caller<'_, HostState>, h: u32, pause: bool) -> u32 {
    let func = if pause {
        "perfReaderPause"
    } else {
        "perfReaderResume"
    };
    let s = c.data_mut();
    let Some(r) = reader(s, h, func) else {
        return 1;
    };
    let done = if pause {
        r.reader.pause()
    } else {
        r.reader.resume()
    };
    match done {
        Ok(()) => 0,
        Err(e) => {
            let msg = chain(&e);
            s.warn(format_args!("{func}: {msg}"));
            1
        }
    }
}

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "ig",
        "newPerfReader",
        |mut c: Caller<'_, HostState>, map: u32, size: u32, overwritable: u32| -> u32 {
            let s = c.data_mut();
            let Some(m) = s.map(map, "newPerfReader") else {
                return 0;
            };
            let m = m.map.clone();
            let r = match PerfReader::new(m.clone(), size as usize, overwritable != 0) {
                Ok(r) => r,
                Err(e) => {
                    s.warn(format_args!(
                        "newPerfReader on map {}: {}",
                        m.info().name,
                        chain(&e)
                    ));
                    return 0;
                }
            };
            let bytes = r.mapped_bytes();
            if s.perf_bytes + bytes > MAX_PERF_BYTES {
                s.warn(format_args!(
                    "newPerfReader on map {}: its rings ({} KiB) would take the guest's perf rings past {} MiB; refused",
                    m.info().name,
                    bytes >> 10,
                    MAX_PERF_BYTES >> 20
                ));
                return 0;
            }
            let h = s.add_handle(Handle::Perf);
            if h != 0 {
                s.perf_bytes += bytes;
                s.readers.insert(h, GuestReader { reader: r, bytes });
            }
            h
        },
    )?;
    linker.func_wrap(
        "ig",
        "perfReaderPause",
        |mut c: Caller<'_, HostState>, h: u32| -> u32 { toggle(&mut c, h, true) },
    )?;
    linker.func_wrap(
        "ig",
        "perfReaderResume",
        |mut c: Caller<'_, HostState>, h: u32| -> u32 { toggle(&mut c, h, false) },
    )?;
    linker.func_wrap(
        "ig",
        "perfReaderRead",
        |mut c: Caller<'_, HostState>, h: u32, dst: u64| -> u32 {
            let mut record = Vec::new();
            let s = c.data_mut();
            let Some(r) = reader(s, h, "perfReaderRead") else {
                return 1;
            };
            let got = r.reader.read(&mut record);
            let lost = r.reader.take_lost();
            if lost > 0 {
                s.warn(format_args!(
                    "perfReaderRead: the kernel lost {lost} records (the perf ring was full)"
                ));
            }
            if got == Read::Empty {
                return 2;
            }
            if write_bin(&mut c, dst, &record) {
                return 0;
            }
            let cap = (dst >> 32) as usize;
            let why = if record.len() > cap {
                format!("does not fit the guest's buffer of {cap} bytes")
            } else {
                "was to go to a buffer outside the guest's memory".to_owned()
            };
            c.data_mut().warn_once(
                "perfReaderRead",
                format_args!(
                    "perfReaderRead: a {}-byte record {why}; it is dropped (warned once)",
                    record.len()
                ),
            );
            1
        },
    )?;
    linker.func_wrap(
        "ig",
        "perfReaderClose",
        |mut c: Caller<'_, HostState>, h: u32| -> u32 {
            let s = c.data_mut();
            if reader(s, h, "perfReaderClose").is_none() {
                return 1;
            }
            s.remove_handle(h);
            0
        },
    )?;
    Ok(())
}
