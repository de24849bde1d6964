//! Perf rings behind a perf event array, read one record at a time.
//!
//! A read never waits: when nothing is left it fails with "deadline
//! exceeded". An overwritable ring keeps the latest records (a flight
//! recorder): pause it, read until "deadline exceeded" (newest first),
//! resume.

use crate::helpers::{bytes_to_buf_ptr, out_buf};
use crate::map::Map;

pub type Result<T> = std::result::Result<T, String>;

/// A reader; closed when dropped (a clone closes the same reader).
#[derive(Debug, Clone)]
pub struct PerfReader(pub u32);

#[link(wasm_import_module = "ig")]
extern "C" {
    #[link_name = "newPerfReader"]
    fn ig_new_reader(map: u32, size: u32, overwritable: u32) -> u32;
    #[link_name = "perfReaderPause"]
    fn ig_pause(reader: u32) -> u32;
    #[link_name = "perfReaderResume"]
    fn ig_resume(reader: u32) -> u32;
    #[link_name = "perfReaderRead"]
    fn ig_read(reader: u32, dst: u64) -> u32;
    #[link_name = "perfReaderClose"]
    fn ig_close(reader: u32) -> u32;
}

impl Drop for PerfReader {
    fn drop(&mut self) {
        // SAFETY: a plain call without pointers.
        if unsafe { ig_close(self.0) } != 0 {
            crate::error!("closing perf reader", self.0.to_string());
        }
    }
}

impl PerfReader {
    /// A reader of `size` bytes per CPU on the perf event array `map`.
    pub fn new(map: &Map, size: u32, is_overwritable: bool) -> Result<Self> {
        // SAFETY: a plain call without pointers.
        match unsafe { ig_new_reader(map.handle, size, u32::from(is_overwritable)) } {
            0 => Err("creating the perf reader".to_string()),
            h => Ok(PerfReader(h)),
        }
    }

    /// Stop the eBPF side from writing.
    pub fn pause(&self) -> Result<()> {
        // SAFETY: a plain call without pointers.
        match unsafe { ig_pause(self.0) } {
            0 => Ok(()),
            _ => Err("pausing the perf reader".to_string()),
        }
    }

    pub fn resume(&self) -> Result<()> {
        // SAFETY: a plain call without pointers.
        match unsafe { ig_resume(self.0) } {
            0 => Ok(()),
            _ => Err("resuming the perf reader".to_string()),
        }
    }

    /// Copy the next record into `dst`. Records carry the kernel's
    /// padding: the raw sample plus its 4-byte length is a multiple of 8.
    pub fn read_into(&self, dst: &mut [u8]) -> Result<()> {
        self.read_at(out_buf(dst))
    }

    /// [`PerfReader::read_into`] with upstream's signature: the host
    /// writes into `dst` although it is borrowed shared, which the
    /// compiler may not expect (it can assume the bytes unchanged). Kept
    /// for guests written against upstream; prefer `read_into`.
    pub fn read(&self, dst: &[u8]) -> Result<()> {
        self.read_at(bytes_to_buf_ptr(dst).0)
    }

    fn read_at(&self, dst: u64) -> Result<()> {
        // SAFETY: `dst` encodes a buffer alive for the call; the host
        // writes at most its length.
        match unsafe { ig_read(self.0, dst) } {
            0 => Ok(()),
            1 => Err("reading a perf record".to_string()),
            2 => Err("deadline exceeded".to_string()),
            n => Err(format!("perfReaderRead answered {n}")),
        }
    }
}
