//! Time for the guest: `ig.timeNow`, and WASI's `poll_oneoff` replaced by
//! one that never blocks.
//!
//! Why replace it: guest calls run on ig's only thread, the event loop.
//! WASI's `poll_oneoff` on a clock is how a guest sleeps (`sleep()`,
//! `nanosleep()`, Go's `time.Sleep`); wasmtime's implementation blocks the
//! thread in the host, where the epoch deadline cannot interrupt it, so a
//! guest sleeping for an hour in a callback would hold ig, and SIGINT,
//! for an hour. Ours answers at once: every clock subscription fires
//! immediately (the sleep returns early, with one warning per run), an
//! `fd_write` on stderr is ready, any other descriptor is `badf` (the
//! guest is given no stdin, stdout, files or sockets). A guest that waits
//! in a loop for the clock to move on then spins instead, and the epoch
//! deadline stops it like any loop.
//!
//! Does not own: the rest of WASI (wasmtime-wasi).

use wasmtime::{Caller, Linker};

use super::state::{HostState, memory};

/// Sizes in guest memory (WASI preview 1 ABI): `subscription`, `event`.
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;

/// `eventtype`.
const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;

/// `errno`.
const ERRNO_SUCCESS: u16 = 0;
const ERRNO_BADF: u16 = 8;
const ERRNO_FAULT: u16 = 21;
const ERRNO_INVAL: u16 = 28;

/// `subclockflags`: the timeout is an absolute time.
const SUBSCRIPTION_CLOCK_ABSTIME: u16 = 1;

/// The guest's stderr, the one descriptor it may write to.
const STDERR: u32 = 2;

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("ig", "timeNow", || -> u64 {
        // Nanoseconds since the epoch, as upstream (0 before 1970).
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    })?;
    Ok(())
}

/// Replace WASI's `poll_oneoff`; the linker must allow shadowing and
/// already hold WASI.
pub(super) fn shadow_wasi(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        |mut c: Caller<'_, HostState>, subs: u32, events: u32, n: u32, nevents: u32| -> i32 {
            i32::from(poll_oneoff(&mut c, subs, events, n, nevents))
        },
    )?;
    Ok(())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

/// The events for `subs` (all fire now), and the longest relative sleep
/// asked for (`Some(0)` for an absolute one). `None`: a subscription of an
/// unknown type.
fn answer(subs: &[u8]) -> Option<(Vec<u8>, Option<u64>)> {
    let n = subs.len() / SUBSCRIPTION_SIZE;
    let mut out = vec![0u8; n * EVENT_SIZE];
    let mut slept: Option<u64> = None;
    for (s, e) in subs
        .chunks_exact(SUBSCRIPTION_SIZE)
        .zip(out.chunks_exact_mut(EVENT_SIZE))
    {
        let tag = s[8];
        let error = match tag {
            EVENTTYPE_CLOCK => {
                let timeout = u64_at(s, 24);
                let relative = u16_at(s, 40) & SUBSCRIPTION_CLOCK_ABSTIME == 0;
                if timeout > 0 || !relative {
                    let ns = if relative { timeout } else { 0 };
                    slept = Some(slept.unwrap_or(0).max(ns));
                }
                ERRNO_SUCCESS
            }
            EVENTTYPE_FD_WRITE if u32_at(s, 16) == STDERR => ERRNO_SUCCESS,
            EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE => ERRNO_BADF,
            _ => return None,
        };
        e[..8].copy_from_slice(&s[..8]); // userdata
        e[8..10].copy_from_slice(&error.to_le_bytes());
        e[10] = tag;
    }
    Some((out, slept))
}

fn poll_oneoff(c: &mut Caller<'_, HostState>, subs: u32, events: u32, n: u32, nevents: u32) -> u16 {
    if n == 0 {
        return ERRNO_INVAL;
    }
    let Some(mem) = memory(c) else {
        return ERRNO_FAULT;
    };
    let n = n as usize;
    let range = |ptr: u32, size: usize| {
        let start = ptr as usize;
        Some(start..start.checked_add(n.checked_mul(size)?)?)
    };
    let (Some(sub_range), Some(ev_range)) =
        (range(subs, SUBSCRIPTION_SIZE), range(events, EVENT_SIZE))
    else {
        return ERRNO_FAULT;
    };
    let Some(input) = mem.data(&*c).get(sub_range).map(<[u8]>::to_vec) else {
        return ERRNO_FAULT;
    };
    let Some((out, slept)) = answer(&input) else {
        return ERRNO_INVAL;
    };
    let data = mem.data_mut(&mut *c);
    let np = nevents as usize;
    if ev_range.end > data.len() || np.checked_add(4).is_none_or(|end| end > data.len()) {
        return ERRNO_FAULT;
    }
    data[ev_range].copy_from_slice(&out);
    data[np..np + 4].copy_from_slice(&(n as u32).to_le_bytes());
    if let Some(ns) = slept {
        let asked = if ns > 0 {
            format!("to sleep {} ms", ns / 1_000_000)
        } else {
            "to wait for a clock time".to_owned()
        };
        c.data_mut().warn_once(
            "poll_oneoff",
            format_args!(
                "the guest asked {asked} (WASI poll_oneoff); ig does not block its event loop, so the wait ends at once"
            ),
        );
    }
    ERRNO_SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(userdata: u64, tag: u8, word: u32, timeout: u64, flags: u16) -> Vec<u8> {
        let mut s = vec![0u8; SUBSCRIPTION_SIZE];
        s[..8].copy_from_slice(&userdata.to_le_bytes());
        s[8] = tag;
        s[16..20].copy_from_slice(&word.to_le_bytes());
        s[24..32].copy_from_slice(&timeout.to_le_bytes());
        s[40..42].copy_from_slice(&flags.to_le_bytes());
        s
    }

    #[test]
    fn every_subscription_is_answered_at_once() {
        let hour = 3_600_000_000_000;
        let mut subs = sub(7, EVENTTYPE_CLOCK, 1, hour, 0);
        subs.extend(sub(8, EVENTTYPE_FD_WRITE, STDERR, 0, 0));
        subs.extend(sub(9, EVENTTYPE_FD_READ, 0, 0, 0));
        let (out, slept) = answer(&subs).unwrap();
        assert_eq!(slept, Some(hour));
        let ev = |i: usize| &out[i * EVENT_SIZE..(i + 1) * EVENT_SIZE];
        for (i, (userdata, error, tag)) in [
            (7, ERRNO_SUCCESS, EVENTTYPE_CLOCK),
            (8, ERRNO_SUCCESS, EVENTTYPE_FD_WRITE),
            (9, ERRNO_BADF, EVENTTYPE_FD_READ),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(u64_at(ev(i), 0), userdata);
            assert_eq!(u16_at(ev(i), 8), error);
            assert_eq!(ev(i)[10], tag);
        }
        // An absolute deadline counts as a wait; a zero timeout does not.
        let (_, slept) =
            answer(&sub(1, EVENTTYPE_CLOCK, 0, 5, SUBSCRIPTION_CLOCK_ABSTIME)).unwrap();
        assert_eq!(slept, Some(0));
        let (_, slept) = answer(&sub(1, EVENTTYPE_CLOCK, 0, 0, 0)).unwrap();
        assert_eq!(slept, None);
        assert!(answer(&sub(1, 9, 0, 0, 0)).is_none());
    }
}
