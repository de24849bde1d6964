//! Reading a BPF ring buffer (`BPF_MAP_TYPE_RINGBUF`) from user space with
//! its data pages mapped once ([`Ring`]).
//!
//! Owns the two mappings of one ring buffer map (the consumer page, and the
//! producer page with the data) and the consumer position. Does not own
//! the map's descriptor (the loader keeps aya's map, and drops it after
//! the [`Ring`]), waiting for data (the event loop polls the descriptor),
//! or what a sample means. No aya here (`tests/tidy`).
//!
//! Why not aya's `RingBuf`: it maps the data pages twice, one copy after the
//! other, as the kernel lays them out for itself, so that a record that
//! wraps around the end of the ring reads as one slice. The kernel inserts
//! every page into a ring buffer mapping when the mapping is made, so every
//! mapped byte counts in the process's resident memory from the start: a
//! 4 MiB ring cost 8 MiB of VmRSS (measured: 22.0 MiB for an idle
//! `ig run trace_open`, 15.9 MiB with a 1 MiB ring). Issue 31 bounds the
//! whole run at 25 MiB, and the ring's size is what stands between a burst
//! and lost events. Mapped once, the same 4 MiB cost 4 MiB, or an 8 MiB
//! ring fits where the 4 MiB one did; the price is a copy of the few records
//! that wrap (at most one per lap of the ring) into a scratch buffer.
//!
//! Also unlike aya's reader, the consumer position is published every
//! [`PUBLISH_EVERY`] records instead of after each one: every producer reads
//! that position before it reserves room, so each store moves its cache line
//! between the cores. The kernel sees the room later by at most that many
//! records, a few kilobytes of a ring of megabytes.
//!
//! The record format is the kernel's UAPI (`include/uapi/linux/bpf.h`): an
//! 8-byte header whose first 32 bits are the length with two flag bits
//! (`BPF_RINGBUF_BUSY_BIT`, `BPF_RINGBUF_DISCARD_BIT`), the sample, padding
//! to 8 bytes.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering, fence};

/// Header bit: the record is reserved and not yet committed.
const BUSY: u32 = 1 << 31;
/// Header bit: the record was discarded; skip it.
const DISCARD: u32 = 1 << 30;
/// Size of a record header.
const HEADER: usize = 8;
/// How many records are read between two stores of the consumer position.
pub const PUBLISH_EVERY: u32 = 32;

/// Why a ring buffer could not be mapped for reading.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// The kernel said something no ring buffer can be.
    #[error("the ring buffer's size {0} is not a power of two of at least a page")]
    Size(u32),
    /// `mmap(2)` failed.
    #[error("mapping the ring buffer's {what}")]
    Mmap {
        /// Which part.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One shared mapping, unmapped on drop.
struct Mapping {
    at: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(
        fd: RawFd,
        len: usize,
        prot: i32,
        offset: usize,
        what: &'static str,
    ) -> Result<Self, RingError> {
        let off = libc::off_t::try_from(offset).map_err(|_| RingError::Mmap {
            what,
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })?;
        // SAFETY: a fresh shared mapping of a ring buffer map we hold open;
        // the result is checked, and unmapped only by `drop`.
        let at = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, off) };
        if at == libc::MAP_FAILED {
            return Err(RingError::Mmap {
                what,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Self { at: at.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made, unmapped once; nothing borrowed
        // from it outlives the `Ring` that owns it.
        unsafe { libc::munmap(self.at.cast(), self.len) };
    }
}

/// A BPF ring buffer, read in place.
pub struct Ring {
    /// The consumer page (read-write): the consumer position at offset 0.
    consumer: Mapping,
    /// The producer page (the producer position at offset 0), then the
    /// data pages, read-only.
    producer: Mapping,
    page: usize,
    /// Size of the data area, a power of two.
    size: usize,
    /// Our position: everything before it was read.
    pos: usize,
    /// The producer position last read.
    prod: usize,
    /// Records read since `pos` was last stored for the kernel.
    unpublished: u32,
    /// Where a record that wraps around the end is put together.
    scratch: Vec<u8>,
}

// SAFETY: the raw pointers are into mappings owned by the `Ring` itself;
// nothing else refers to them, so the `Ring` may move to another thread.
unsafe impl Send for Ring {}

impl Ring {
    /// Map the ring buffer map `fd` of `size` data bytes (its
    /// `max_entries`) for reading. `fd` must stay open while the `Ring`
    /// lives.
    pub fn new(fd: RawFd, size: u32) -> Result<Self, RingError> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let size_usize = usize::try_from(size).map_err(|_| RingError::Size(size))?;
        if !size.is_power_of_two() || size_usize < page {
            return Err(RingError::Size(size));
        }
        let consumer = Mapping::new(
            fd,
            page,
            libc::PROT_READ | libc::PROT_WRITE,
            0,
            "consumer page",
        )?;
        // The producer page and the data pages once: the kernel's layout
        // has them a second time after, which we do not map.
        let producer = Mapping::new(fd, page + size_usize, libc::PROT_READ, page, "data pages")?;
        let mut ring = Self {
            consumer,
            producer,
            page,
            size: size_usize,
            pos: 0,
            prod: 0,
            unpublished: 0,
            // Samples are at most GADGET_MAX_EVENT_SIZE (10 KiB) for the
            // gadgets we know: one allocation up front, none per record.
            scratch: Vec::with_capacity(16 << 10),
        };
        // A map that was written before (pinned, reused) starts where its
        // last reader stopped.
        ring.pos = ring.consumer_pos().load(Ordering::Acquire);
        ring.prod = ring.producer_pos();
        Ok(ring)
    }

    fn consumer_pos(&self) -> &AtomicUsize {
        // SAFETY: the consumer position, an aligned word at the start of
        // the consumer page, which stays mapped as long as `self`.
        unsafe { &*self.consumer.at.cast::<AtomicUsize>() }
    }

    fn producer_pos(&self) -> usize {
        // SAFETY: the producer position, an aligned word at the start of
        // the producer page, written by the kernel: read atomically.
        let p = unsafe { &*self.producer.at.cast::<AtomicUsize>() };
        // Pairs with the kernel's release of the position after a reserve.
        p.load(Ordering::Acquire)
    }

    /// Tell the kernel that everything before `pos` may be overwritten.
    fn publish(&mut self) {
        if self.unpublished > 0 {
            // Release: our reads of the records happen before the kernel,
            // which loads this with acquire, reuses their room.
            self.consumer_pos().store(self.pos, Ordering::Release);
            self.unpublished = 0;
        }
    }

    /// Hand pending samples to `f` in order until the ring is empty, a
    /// record is still being written, or `f` returns `false`. Returns how
    /// many samples `f` was given.
    pub fn read(&mut self, mut f: impl FnMut(&[u8]) -> bool) -> usize {
        let mut n = 0;
        loop {
            if self.pos == self.prod {
                // Caught up: store our position before looking again, with
                // a full fence between, so that either we see a record
                // committed now or its producer sees our position and wakes
                // us (the kernel wakes a reader that had caught up).
                self.publish();
                fence(Ordering::SeqCst);
                self.prod = self.producer_pos();
                if self.pos == self.prod {
                    break;
                }
            }
            let mask = self.size - 1;
            let off = self.pos & mask;
            // SAFETY: `off` is 8-aligned (records are) and below `size`, so
            // the header lies inside the data area; the kernel commits it
            // with an atomic exchange.
            let header = unsafe { &*self.producer.at.add(self.page + off).cast::<AtomicU32>() };
            // Acquire pairs with the kernel's commit: the sample's bytes are
            // visible once the busy bit is seen clear.
            let h = header.load(Ordering::Acquire);
            if h & BUSY != 0 {
                // Reserved, not committed yet: records are read in order,
                // so the rest waits too. Its commit makes the map readable.
                break;
            }
            let len = (h & !(BUSY | DISCARD)) as usize;
            let total = (HEADER + len).next_multiple_of(8);
            if total > self.size {
                // Never written by a kernel; stop rather than read outside
                // the data area.
                break;
            }
            let mut more = true;
            if h & DISCARD == 0 {
                let start = (off + HEADER) & mask;
                // SAFETY (both arms): `start` < size, and the bytes read lie
                // in the data area (`start + len` <= size in the first arm;
                // two parts that each stay inside it in the second).
                let base = unsafe { self.producer.at.add(self.page) };
                if start + len <= self.size {
                    let sample = unsafe { std::slice::from_raw_parts(base.add(start), len) };
                    more = f(sample);
                } else {
                    let first = self.size - start;
                    self.scratch.clear();
                    self.scratch.extend_from_slice(unsafe {
                        std::slice::from_raw_parts(base.add(start), first)
                    });
                    self.scratch.extend_from_slice(unsafe {
                        std::slice::from_raw_parts(base, len - first)
                    });
                    more = f(&self.scratch);
                }
                n += 1;
            }
            self.pos = self.pos.wrapping_add(total);
            self.unpublished += 1;
            if self.unpublished >= PUBLISH_EVERY {
                self.publish();
            }
            if !more {
                break;
            }
        }
        self.publish();
        n
    }
}
