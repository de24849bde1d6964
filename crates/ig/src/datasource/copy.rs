//! Appending and comparing short byte runs on the hot path without a libc
//! call.
//!
//! Owns three small functions: [`extend`], [`push_str`] on top of it, and
//! [`same`]; it does not own any buffer or decide what is copied.
//!
//! Why: the shipped binary links musl, whose x86-64 `memcpy` moves the
//! unaligned head and the tail of a copy one `movsb` at a time around a
//! `rep movsq`, and whose `memcmp` is a byte loop. An event is made of many
//! short runs (names, paths, the memoized text of a process block), and
//! under an open storm `memcpy` was 16% of the static binary's reader CPU
//! where glibc's took 5% (perf, docs/design/003-hot-path.md). Runs of up to
//! [`INLINE_MAX`] bytes are copied here with two overlapping fixed-size
//! loads and stores, which the compiler inlines as a few vector moves;
//! longer runs go to the library as before, where the fixed cost of the
//! call is small against the copy.

/// The longest run copied inline. A fixed-size copy of 128 bytes is still
/// inlined by LLVM on x86-64 (8 stores of 16 bytes); longer ones would
/// become `memcpy` calls again.
pub const INLINE_MAX: usize = 256;

/// Append `s` to `buf`, as `buf.extend_from_slice(s)` does.
#[inline]
pub fn extend(buf: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n > INLINE_MAX {
        buf.extend_from_slice(s);
        return;
    }
    buf.reserve(n);
    let len = buf.len();
    // SAFETY: `reserve` left room for `n` bytes after `len`; `copy_short`
    // reads only `s[..n]` and writes only `n` bytes from `len`, all of
    // them, so the first `len + n` bytes are initialized.
    unsafe {
        copy_short(s.as_ptr(), buf.as_mut_ptr().add(len), n);
        buf.set_len(len + n);
    }
}

/// Append `s` to `out`, as `out.push_str(s)` does.
#[inline]
pub fn push_str(out: &mut String, s: &str) {
    // SAFETY: a whole `str` appended to valid UTF-8 is valid UTF-8.
    extend(unsafe { out.as_mut_vec() }, s.as_bytes());
}

/// Whether `a` and `b` hold the same bytes, as `a == b` says.
#[inline]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        if u64::from_ne_bytes(x.try_into().expect("8 bytes"))
            != u64::from_ne_bytes(y.try_into().expect("8 bytes"))
        {
            return false;
        }
    }
    ca.remainder()
        .iter()
        .zip(cb.remainder())
        .all(|(x, y)| x == y)
}

/// Copy `n` bytes (at most [`INLINE_MAX`]) from `src` to `dst`: two
/// overlapping loads and stores of the largest power-of-two size that fits,
/// so that every length is covered without a loop (a loop would be turned
/// back into a `memcpy` call by the compiler).
///
/// # Safety
/// `src` is valid for reading and `dst` for writing `n` bytes, and the two
/// ranges do not overlap.
#[inline(always)]
unsafe fn copy_short(src: *const u8, dst: *mut u8, n: usize) {
    /// Copy `N` bytes from `src + at` to `dst + at`.
    #[inline(always)]
    unsafe fn block<const N: usize>(src: *const u8, dst: *mut u8, at: usize) {
        // SAFETY: the caller keeps `at + N` within both ranges.
        unsafe {
            let v = src.add(at).cast::<[u8; N]>().read_unaligned();
            dst.add(at).cast::<[u8; N]>().write_unaligned(v);
        }
    }
    // SAFETY: each arm reads and writes `[0, N)` and `[n - N, n)` with
    // `N <= n`, so everything stays within the `n` bytes of both ranges.
    unsafe {
        match n {
            0 => {}
            1 => *dst = *src,
            2..4 => {
                block::<2>(src, dst, 0);
                block::<2>(src, dst, n - 2);
            }
            4..8 => {
                block::<4>(src, dst, 0);
                block::<4>(src, dst, n - 4);
            }
            8..16 => {
                block::<8>(src, dst, 0);
                block::<8>(src, dst, n - 8);
            }
            16..32 => {
                block::<16>(src, dst, 0);
                block::<16>(src, dst, n - 16);
            }
            32..64 => {
                block::<32>(src, dst, 0);
                block::<32>(src, dst, n - 32);
            }
            64..128 => {
                block::<64>(src, dst, 0);
                block::<64>(src, dst, n - 64);
            }
            _ => {
                debug_assert!(n <= INLINE_MAX);
                block::<128>(src, dst, 0);
                block::<128>(src, dst, n - 128);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length around every size class, onto buffers that already
    /// hold something and onto empty ones, gives what the library gives.
    #[test]
    fn extend_appends_exactly_the_run() {
        let src: Vec<u8> = (0..=600u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..=INLINE_MAX + 40 {
            for prefix in [0usize, 1, 13] {
                let mut ours = src[..prefix].to_vec();
                let mut lib = ours.clone();
                extend(&mut ours, &src[prefix..prefix + n]);
                lib.extend_from_slice(&src[prefix..prefix + n]);
                assert_eq!(ours, lib, "n={n} prefix={prefix}");
            }
        }
        let mut s = String::from("ab");
        push_str(&mut s, "cdé");
        assert_eq!(s, "abcdé");
    }

    #[test]
    fn same_is_slice_equality() {
        let a: Vec<u8> = (0..100u8).collect();
        for n in 0..a.len() {
            assert!(same(&a[..n], &a[..n]));
            assert!(!same(&a[..n], &a[..n + 1]));
            for at in 0..n {
                let mut b = a[..n].to_vec();
                b[at] ^= 0x40;
                assert!(!same(&a[..n], &b), "n={n} at={at}");
            }
        }
    }
}
