//! How values cross into the host: a buffer is one u64, its length in
//! the high 32 bits and its address in the low 32 (WASM addresses are
//! 32-bit).

use std::mem;

/// A buffer as the host takes it (`length << 32 | address`).
#[derive(Copy, Clone, Debug)]
pub struct BufPtr(pub u64);

fn encode(addr: usize, len: usize) -> BufPtr {
    BufPtr(((len as u64) << 32) | (addr as u64 & 0xffff_ffff))
}

/// A string's buffer; the empty string is 0, which the host reads as "".
pub fn string_to_buf_ptr(s: &str) -> BufPtr {
    if s.is_empty() {
        BufPtr(0)
    } else {
        encode(s.as_ptr() as usize, s.len())
    }
}

/// A byte slice's buffer.
pub fn bytes_to_buf_ptr(b: &[u8]) -> BufPtr {
    encode(b.as_ptr() as usize, b.len())
}

/// A buffer the host writes into, taken from a mutable borrow so the
/// compiler knows its bytes change.
pub(crate) fn out_buf(b: &mut [u8]) -> u64 {
    encode(b.as_mut_ptr() as usize, b.len()).0
}

/// The bytes of a value, for the host to read (map keys and values). The
/// value must have the exact layout the other side expects: fixed-size
/// integers (`u32`, not `usize`, which is 4 bytes here and 8 in the
/// kernel) and explicit padding (`#[repr(C)]`).
pub fn any_to_buf_ptr<T>(val: &T) -> Result<BufPtr, String> {
    let size = mem::size_of_val(val);
    if size == 0 {
        return Err("a zero-sized value has no bytes to pass".to_string());
    }
    Ok(encode(val as *const T as usize, size))
}

/// The bytes of a value, for the host to write (map lookups, syscall
/// declarations). Same layout rules as [`any_to_buf_ptr`].
pub fn any_to_buf_ptr_mut<T>(val: &mut T) -> Result<BufPtr, String> {
    let size = mem::size_of_val(val);
    if size == 0 {
        return Err("a zero-sized value has no room to write into".to_string());
    }
    Ok(encode(val as *mut T as usize, size))
}

/// The text before the first NUL (all of it without one), invalid UTF-8
/// replaced.
pub fn from_c_string(input: &[u8]) -> String {
    let end = input.iter().position(|b| *b == 0).unwrap_or(input.len());
    String::from_utf8_lossy(&input[..end]).into_owned()
}

impl BufPtr {
    /// A copy of the bytes this buffer points at; `None` for the null or
    /// empty buffer.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        let addr = (self.0 & 0xffff_ffff) as usize;
        let len = (self.0 >> 32) as usize;
        if addr == 0 || len == 0 {
            return None;
        }
        // SAFETY: a BufPtr is made from a live buffer of `len` bytes at
        // `addr` (the functions above); the caller keeps it alive.
        let slice = unsafe { std::slice::from_raw_parts(addr as *const u8, len) };
        Some(slice.to_vec())
    }
}
