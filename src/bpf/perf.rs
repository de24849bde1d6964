//! Perf ring buffers behind a `BPF_MAP_TYPE_PERF_EVENT_ARRAY`, read one
//! record at a time and never blocking: the reader a WASM guest drains
//! (upstream's `newPerfReader`, used by traceloop).
//!
//! Owns: one software `bpf-output` perf event per online CPU, its mmapped
//! ring, its slot in the map (set at creation, removed by
//! [`PerfReader::pause`] and on drop, put back by [`PerfReader::resume`]),
//! and parsing the records the kernel writes (`PERF_RECORD_SAMPLE` with
//! `PERF_SAMPLE_RAW`, `PERF_RECORD_LOST`). Does not own: what the records
//! mean. It keeps a reference to its map, so the slots can be emptied
//! when it goes (a slot holds its perf event alive).
//!
//! Two kinds of ring:
//! - consuming (the default): the kernel writes forward and stops when
//!   the ring is full (counted as lost); [`PerfReader::read`] takes the
//!   oldest record and frees its room;
//! - overwritable: the kernel writes backward and overwrites the oldest
//!   records, so the ring always holds the latest ones (a flight
//!   recorder). A read pass starts from the newest record and walks to the
//!   oldest still intact; the next pass sees only what was written since.
//!
//! [`PerfReader::read`] answers [`Read::Empty`] when nothing is pending,
//! where upstream's reader would block a consuming ring until a record
//! comes: a guest must never hold ig's event loop.

use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::maps::{MapError, MapFd, map_type};

/// Why a perf event array cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    /// Map `name` is not a perf event array (type `map_type`).
    #[error("map {name} is not a perf event array (type {map_type})")]
    NotPerfArray {
        /// The name.
        name: String,
        /// The map type.
        map_type: u32,
    },
    /// A perf ring of bytes per CPU is more than ig allows (`MAX_RING_BYTES`
    /// bytes).
    #[error("a perf ring of {0} bytes per CPU is more than ig allows ({MAX_RING_BYTES} bytes)")]
    TooLarge(usize),
    /// Opening the bpf-output perf event of CPU `cpu` failed.
    #[error("opening the bpf-output perf event of CPU {cpu}")]
    Open {
        /// The CPU.
        cpu: u32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Mapping the perf ring of CPU `cpu` failed.
    #[error("mapping the perf ring of CPU {cpu}")]
    Mmap {
        /// The CPU.
        cpu: u32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The map has no slot for any online CPU.
    #[error("the map has no slot for any online CPU")]
    NoCpu,
    /// Setting slot `cpu` of the perf event array failed.
    #[error("slot {cpu} of the perf event array")]
    Slot {
        /// The CPU.
        cpu: u32,
        /// Why.
        #[source]
        source: MapError,
    },
}

/// Largest data area per CPU (upstream's guests ask for 256 KiB).
pub const MAX_RING_BYTES: usize = 64 << 20;

/// What [`PerfReader::read`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A sample's raw bytes (including the kernel's padding to 8 bytes)
    /// were put in the buffer.
    Record,
    /// Nothing (more) to read now.
    Empty,
}

/// `perf_event_attr` up to `PERF_ATTR_SIZE_VER5` (112 bytes).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved: u16,
}

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_BPF_OUTPUT: u64 = 10;
const PERF_SAMPLE_RAW: u64 = 1 << 10;
/// `perf_event_attr.write_backward`.
const WRITE_BACKWARD: u64 = 1 << 27;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
/// `_IO('$', 0)`.
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_RECORD_LOST: u32 = 2;
const PERF_RECORD_SAMPLE: u32 = 9;
/// Where `data_head` and `data_tail` live in the first (metadata) page.
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;

/// One CPU's event and ring.
struct Ring {
    cpu: u32,
    event: OwnedFd,
    base: *mut u8,
    mmap_len: usize,
    page: usize,
    /// Data area bytes (a power of two).
    size: u64,
    /// Overwritable rings: the head where the current pass started and
    /// where it is now, and the head the previous pass started from.
    pass: Option<(u64, u64)>,
    seen_head: Option<u64>,
}

// SAFETY: the mapping is owned by the ring alone (made in `open`,
// unmapped in `drop`) and is ordinary shared memory any thread may read;
// the raw pointer is what makes the type `!Send` by default.
unsafe impl Send for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Ring::open`, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.mmap_len) };
    }
}

impl Ring {
    fn open(cpu: u32, pages: usize, page: usize, backward: bool) -> Result<Self, PerfError> {
        let attr = PerfEventAttr {
            type_: PERF_TYPE_SOFTWARE,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: PERF_COUNT_SW_BPF_OUTPUT,
            sample_period: 1,
            sample_type: PERF_SAMPLE_RAW,
            flags: if backward { WRITE_BACKWARD } else { 0 },
            wakeup_events: 1,
            ..PerfEventAttr::default()
        };
        // SAFETY: perf_event_open with a fully initialized attr of the
        // size it declares; the result is owned right away.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                std::ptr::from_ref(&attr),
                -1 as libc::pid_t,
                cpu as libc::c_int,
                -1 as libc::c_int,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(PerfError::Open {
                cpu,
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let event = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mmap_len = (pages + 1) * page;
        // An overwritable ring is mapped read-only: that is what tells the
        // kernel it may overwrite records we did not read.
        let prot = if backward {
            libc::PROT_READ
        } else {
            libc::PROT_READ | libc::PROT_WRITE
        };
        // SAFETY: a shared mapping of the event's ring; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mmap_len,
                prot,
                libc::MAP_SHARED,
                event.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(PerfError::Mmap {
                cpu,
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: ioctl on our own perf event.
        if unsafe { libc::ioctl(event.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) } < 0 {
            let source = std::io::Error::last_os_error();
            // SAFETY: the mapping just made.
            unsafe { libc::munmap(base, mmap_len) };
            return Err(PerfError::Open { cpu, source });
        }
        Ok(Self {
            cpu,
            event,
            base: base.cast(),
            mmap_len,
            page,
            size: (pages * page) as u64,
            pass: None,
            seen_head: None,
        })
    }

    fn head(&self) -> u64 {
        // SAFETY: `data_head` is an aligned u64 of the metadata page, which
        // the kernel updates concurrently: read atomically.
        let head = unsafe { &*self.base.add(DATA_HEAD).cast::<AtomicU64>() };
        head.load(Ordering::Acquire)
    }

    fn tail(&self) -> &AtomicU64 {
        // SAFETY: `data_tail`, an aligned u64 of the metadata page (mapped
        // writable for consuming rings, the only ones that store it).
        unsafe { &*self.base.add(DATA_TAIL).cast::<AtomicU64>() }
    }

    /// Copy `out.len()` bytes of the data area from ring position `pos`,
    /// wrapping at its end.
    fn copy(&self, pos: u64, out: &mut [u8]) {
        let mask = self.size - 1;
        for (i, b) in out.iter_mut().enumerate() {
            let off = (pos.wrapping_add(i as u64) & mask) as usize;
            // SAFETY: `off` < size, inside the data area that follows the
            // metadata page; bytes the kernel may be writing are read as
            // plain bytes.
            *b = unsafe { self.base.add(self.page + off).read_volatile() };
        }
    }

    /// The record at `pos`: (type, total size), or `None` for a header
    /// that cannot start a record (the unwritten part of a fresh ring).
    fn header(&self, pos: u64) -> Option<(u32, u64)> {
        let mut h = [0u8; 8];
        self.copy(pos, &mut h);
        let ty = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]);
        let size = u64::from(u16::from_ne_bytes([h[6], h[7]]));
        (size >= 8 && size <= self.size).then_some((ty, size))
    }

    /// A sample's raw bytes into `out`; the number of lost records for a
    /// `PERF_RECORD_LOST`.
    /// Copied straight into `out` (reused: no allocation once it is as
    /// large as the largest record).
    fn record(&self, pos: u64, ty: u32, size: u64, out: &mut Vec<u8>) -> Option<u64> {
        let body = size - 8;
        match ty {
            PERF_RECORD_SAMPLE if body >= 4 => {
                let mut n = [0u8; 4];
                self.copy(pos + 8, &mut n);
                let n = u64::from(u32::from_ne_bytes(n)).min(body - 4) as usize;
                out.clear();
                out.resize(n, 0);
                self.copy(pos + 12, out);
                None
            }
            PERF_RECORD_LOST if body >= 16 => {
                let mut lost = [0u8; 8];
                self.copy(pos + 16, &mut lost);
                Some(u64::from_ne_bytes(lost))
            }
            _ => Some(0),
        }
    }

    /// Next record of a consuming ring: `Some(Ok(()))` a sample in `out`,
    /// `Some(Err(n))` `n` lost, `None` nothing pending.
    fn next_forward(&mut self, out: &mut Vec<u8>) -> Option<Result<(), u64>> {
        let head = self.head();
        let tail = self.tail().load(Ordering::Relaxed);
        if tail == head {
            return None;
        }
        let Some((ty, size)) = self.header(tail) else {
            // A broken ring: skip all that is pending.
            self.tail().store(head, Ordering::Release);
            return None;
        };
        let r = self.record(tail, ty, size, out);
        self.tail()
            .store(tail.wrapping_add(size), Ordering::Release);
        Some(r.map_or(Ok(()), Err))
    }

    /// Next record of an overwritable ring, newest first.
    fn next_backward(&mut self, out: &mut Vec<u8>) -> Option<Result<(), u64>> {
        let (start, pos) = match self.pass {
            Some(p) => p,
            None => {
                let head = self.head();
                self.pass = Some((head, head));
                (head, head)
            }
        };
        // What the pass may cover: back to where the previous pass began
        // (those records were read), at most one ring; a fresh ring holds
        // only what was written (the head counts down from 0).
        let limit = match self.seen_head {
            Some(prev) => prev.wrapping_sub(start).min(self.size),
            None => 0u64.wrapping_sub(start).min(self.size),
        };
        let used = pos.wrapping_sub(start);
        let end_pass = |r: &mut Self| {
            r.seen_head = Some(start);
            r.pass = None;
            None
        };
        if used + 8 > limit {
            return end_pass(self);
        }
        let Some((ty, size)) = self.header(pos) else {
            return end_pass(self);
        };
        if used + size > limit {
            // Partly overwritten by newer records: the oldest is gone.
            return end_pass(self);
        }
        let r = self.record(pos, ty, size, out);
        self.pass = Some((start, pos.wrapping_add(size)));
        Some(r.map_or(Ok(()), Err))
    }
}

/// The rings of one perf event array.
pub struct PerfReader {
    map: Arc<MapFd>,
    rings: Vec<Ring>,
    backward: bool,
    /// Ring that answered last (consuming rings are read round-robin).
    next: usize,
    /// Records the kernel could not write (ring full), seen so far.
    lost: u64,
    paused: bool,
}

impl PerfReader {
    /// Open one ring of `per_cpu` bytes (rounded up to a power-of-two
    /// number of pages) per online CPU the map has a slot for, and put
    /// each in its slot. `overwritable`: see the module doc.
    pub fn new(map: Arc<MapFd>, per_cpu: usize, overwritable: bool) -> Result<Self, PerfError> {
        let info = map.info();
        if info.map_type != map_type::PERF_EVENT_ARRAY {
            return Err(PerfError::NotPerfArray {
                name: info.name.clone(),
                map_type: info.map_type,
            });
        }
        if per_cpu > MAX_RING_BYTES {
            return Err(PerfError::TooLarge(per_cpu));
        }
        let page = page_size();
        let pages = per_cpu.div_ceil(page).max(1).next_power_of_two();
        let mut rings = Vec::new();
        for cpu in super::loader::online_cpus() {
            if cpu >= info.max_entries {
                continue;
            }
            rings.push(Ring::open(cpu, pages, page, overwritable)?);
        }
        if rings.is_empty() {
            return Err(PerfError::NoCpu);
        }
        let mut r = Self {
            map,
            rings,
            backward: overwritable,
            next: 0,
            lost: 0,
            paused: true,
        };
        // On failure, dropping `r` empties the slots filled so far.
        r.resume()?;
        Ok(r)
    }

    /// Bytes mapped for this reader (its share of a caller's budget).
    pub fn mapped_bytes(&self) -> usize {
        self.rings.iter().map(|r| r.mmap_len).sum()
    }

    /// Stop the BPF side from writing (its writes fail with ENOENT): the
    /// slots are emptied, the rings keep what they hold.
    pub fn pause(&mut self) -> Result<(), PerfError> {
        for r in &self.rings {
            match self.map.delete(&r.cpu.to_ne_bytes()) {
                Ok(()) => {}
                // Already empty.
                Err(MapError::Syscall { source, .. })
                    if source.raw_os_error() == Some(libc::ENOENT) => {}
                Err(source) => return Err(PerfError::Slot { cpu: r.cpu, source }),
            }
        }
        self.paused = true;
        Ok(())
    }

    /// Put every ring back in its slot.
    pub fn resume(&mut self) -> Result<(), PerfError> {
        for r in &self.rings {
            let fd = r.event.as_raw_fd() as u32;
            self.map
                .update(&r.cpu.to_ne_bytes(), &fd.to_ne_bytes(), 0)
                .map_err(|source| PerfError::Slot { cpu: r.cpu, source })?;
        }
        self.paused = false;
        Ok(())
    }

    /// Whether reading is paused (the guest asked).
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Put the next record's raw bytes in `out`. Never blocks. Lost-record
    /// notices are counted ([`PerfReader::take_lost`]) and skipped.
    pub fn read(&mut self, out: &mut Vec<u8>) -> Read {
        let n = self.rings.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            loop {
                let ring = &mut self.rings[i];
                let got = if self.backward {
                    ring.next_backward(out)
                } else {
                    ring.next_forward(out)
                };
                match got {
                    Some(Ok(())) => {
                        self.next = i;
                        return Read::Record;
                    }
                    Some(Err(lost)) => self.lost += lost,
                    None => break,
                }
            }
        }
        Read::Empty
    }

    /// The rings' descriptors, readable when a record is pending.
    pub fn fds(&self) -> impl Iterator<Item = std::os::fd::RawFd> + '_ {
        self.rings.iter().map(|r| r.event.as_raw_fd())
    }

    /// Records lost since the last call.
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }
}

impl Drop for PerfReader {
    /// Empty the slots so the kernel releases the events once our
    /// descriptors close (best effort: nothing else can be done here).
    fn drop(&mut self) {
        let _ = self.pause();
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096).max(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_is_version_5() {
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), 112);
    }
}
