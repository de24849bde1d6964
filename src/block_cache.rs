//! A cache of freed large heap blocks in front of the system allocator,
//! the global allocator of the static musl binaries (`ig`, `gadgetctl`).
//!
//! What it owns: blocks of more than 4 KiB and up to 256 KiB (rounded up
//! to a power of two), a few of each size kept when freed and handed out
//! again. Everything else goes straight to the system allocator.
//!
//! Why: musl's allocator gives a freed block of this size back to the
//! kernel at once (`munmap`/`madvise`) and maps fresh pages for the next
//! one. The daemon path moves every event through such blocks: a batch
//! of 64 events is a ~28 KiB buffer made on the run's thread and freed on
//! a connection thread, and tonic and h2 copy each message through
//! buffers of the same size on both sides. With musl, page faults, unmaps
//! and their TLB work were most of the difference between the shipped
//! binaries (daemon and gadgetctl 1.6 and 2.3 CPU s per million events)
//! and the same code on glibc (0.8 and 1.5), which keeps freed memory
//! (bench/daemon.md). The glibc builds do not use this cache.
//!
//! Bounded: at most [`SLOTS`] blocks per size and 7 MiB in all.
//! Lock-free: each slot is one pointer, taken and filled by atomic swaps
//! (no list, so no ABA).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Blocks of `(1 << (MIN_SHIFT - 1)) + 1 ..= 1 << MAX_SHIFT` bytes are
/// cached, by power of two.
const MIN_SHIFT: u32 = 13;
const MAX_SHIFT: u32 = 18;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Freed blocks kept per size, at most.
pub const SLOTS: usize = 32;
/// Freed blocks kept of each size, 8 KiB to 256 KiB: many of the sizes a
/// client holds while its loop catches up (batches waiting in its queue:
/// with 8, half of gadgetctl's batches still came from fresh pages), a
/// few of the largest. At most 7 MiB held.
const KEPT: [usize; CLASSES] = [SLOTS, SLOTS, SLOTS, SLOTS, 8, 8];

/// The global allocator: see the module documentation.
pub struct BlockCache {
    bins: [[AtomicPtr<u8>; SLOTS]; CLASSES],
}

impl BlockCache {
    /// An empty cache.
    pub const fn new() -> Self {
        Self {
            bins: [const { [const { AtomicPtr::new(null_mut()) }; SLOTS] }; CLASSES],
        }
    }

    /// The size class of `l`, if cached: its index and the layout the
    /// system allocator sees.
    #[inline]
    fn class(l: Layout) -> Option<(usize, Layout)> {
        if l.align() > 16 || l.size() <= 1 << (MIN_SHIFT - 1) || l.size() > 1 << MAX_SHIFT {
            return None;
        }
        let shift = usize::BITS - (l.size() - 1).leading_zeros();
        let size = 1usize << shift;
        // A power of two of at most 256 KiB, with the block's alignment.
        let rounded = Layout::from_size_align(size, l.align()).ok()?;
        Some(((shift - MIN_SHIFT) as usize, rounded))
    }

    /// Blocks held now (for tests).
    pub fn held(&self) -> usize {
        self.bins
            .iter()
            .flatten()
            .filter(|p| !p.load(Ordering::Relaxed).is_null())
            .count()
    }
}

impl Default for BlockCache {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out is one of `rounded` layout from the
// system allocator, at least as large and as aligned as asked; a cached
// block is owned by its slot alone (taken by a swap), and freed to the
// system allocator with the layout it was allocated with.
unsafe impl GlobalAlloc for BlockCache {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let Some((c, rounded)) = Self::class(l) else {
            // SAFETY: the caller's contract.
            return unsafe { System.alloc(l) };
        };
        for slot in &self.bins[c][..KEPT[c]] {
            if !slot.load(Ordering::Relaxed).is_null() {
                let p = slot.swap(null_mut(), Ordering::Acquire);
                if !p.is_null() {
                    return p;
                }
            }
        }
        // SAFETY: a non-zero size.
        unsafe { System.alloc(rounded) }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let Some((c, rounded)) = Self::class(l) else {
            // SAFETY: allocated by System with `l` (see alloc).
            return unsafe { System.dealloc(p, l) };
        };
        for slot in &self.bins[c][..KEPT[c]] {
            if slot.load(Ordering::Relaxed).is_null()
                && slot
                    .compare_exchange(null_mut(), p, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
        // SAFETY: allocated by System with `rounded`.
        unsafe { System.dealloc(p, rounded) }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if Self::class(l).is_none() {
            // SAFETY: the caller's contract.
            return unsafe { System.alloc_zeroed(l) };
        }
        // SAFETY: the caller's contract; the block holds `l.size()` bytes.
        unsafe {
            let p = self.alloc(l);
            if !p.is_null() {
                p.write_bytes(0, l.size());
            }
            p
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract: `new_size`, rounded up to the
        // alignment, does not overflow.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        match (Self::class(l), Self::class(new)) {
            // SAFETY: neither is ours: the system allocator's own block.
            (None, None) => unsafe { System.realloc(p, l, new_size) },
            // The block is already that large.
            (Some((a, _)), Some((b, _))) if a == b => p,
            _ => {
                // SAFETY: `p` holds `l.size()` bytes, the new block
                // `new_size`; then `p` is freed as it was allocated.
                unsafe {
                    let q = self.alloc(new);
                    if !q.is_null() {
                        std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                        self.dealloc(p, l);
                    }
                    q
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_are_reused_and_bounded() {
        let cache = BlockCache::new();
        let l = Layout::from_size_align(28 << 10, 8).unwrap();
        // SAFETY: blocks of `l`, freed as allocated.
        unsafe {
            let a = cache.alloc(l);
            a.write_bytes(7, l.size());
            cache.dealloc(a, l);
            assert_eq!(cache.held(), 1);
            // The same size class (32 KiB): the same block.
            let b = cache.alloc(Layout::from_size_align(20 << 10, 8).unwrap());
            assert_eq!(a, b);
            assert_eq!(cache.held(), 0);
            cache.dealloc(b, Layout::from_size_align(20 << 10, 8).unwrap());
            // At most KEPT of a size are kept.
            let many: Vec<_> = (0..SLOTS + 3).map(|_| cache.alloc(l)).collect();
            for &p in &many {
                cache.dealloc(p, l);
            }
            assert_eq!(cache.held(), KEPT[2]);
            let big = Layout::from_size_align(200 << 10, 8).unwrap();
            let many: Vec<_> = (0..SLOTS).map(|_| cache.alloc(big)).collect();
            for &p in &many {
                cache.dealloc(p, big);
            }
            assert_eq!(cache.held(), KEPT[2] + KEPT[5]);
            // Zeroed blocks are zero even when reused.
            let z = cache.alloc_zeroed(l);
            assert!(
                std::slice::from_raw_parts(z, l.size())
                    .iter()
                    .all(|&b| b == 0)
            );
            cache.dealloc(z, l);
            // Growing within the class keeps the block; past it, the
            // bytes move; into and out of the system's sizes too.
            let small = Layout::from_size_align(100, 8).unwrap();
            let p = cache.alloc(small);
            p.write_bytes(3, 100);
            let p = cache.realloc(p, small, 9000);
            assert_eq!(*p.add(99), 3);
            let l9 = Layout::from_size_align(9000, 8).unwrap();
            assert_eq!(cache.realloc(p, l9, 16 << 10), p);
            let l16 = Layout::from_size_align(16 << 10, 8).unwrap();
            let p = cache.realloc(p, l16, 1 << 20);
            assert_eq!(*p.add(99), 3);
            let l1m = Layout::from_size_align(1 << 20, 8).unwrap();
            let p = cache.realloc(p, l1m, 50);
            assert_eq!(*p.add(49), 3);
            cache.dealloc(p, Layout::from_size_align(50, 8).unwrap());
            // Not cached: small, huge, or over-aligned.
            assert!(BlockCache::class(small).is_none());
            assert!(BlockCache::class(l1m).is_none());
            assert!(BlockCache::class(Layout::from_size_align(8192, 64).unwrap()).is_none());
            assert_eq!(
                BlockCache::class(Layout::from_size_align(4097, 8).unwrap())
                    .unwrap()
                    .1
                    .size(),
                8192
            );
            assert_eq!(
                BlockCache::class(Layout::from_size_align(1 << 18, 8).unwrap())
                    .unwrap()
                    .0,
                CLASSES - 1
            );
            // Empty the cache back to the system.
            for c in &cache.bins {
                for s in c {
                    let p = s.swap(null_mut(), Ordering::Relaxed);
                    if !p.is_null() {
                        System.dealloc(p, l);
                    }
                }
            }
        }
    }
}
