//! Handles the host gave out (data, fields, maps, perf readers, ...).

#[link(wasm_import_module = "ig")]
extern "C" {
    #[link_name = "releaseHandle"]
    fn ig_release_handle(handle: u32) -> u32;
}

pub type Result<T> = std::result::Result<T, String>;

/// Give a handle back: the host forgets it and frees what only it kept
/// (an inner map of a map of maps, a packet, a perf reader).
pub fn release_handle<T: Into<u32>>(h: T) -> Result<()> {
    let h = h.into();
    // SAFETY: a plain call without pointers.
    match unsafe { ig_release_handle(h) } {
        0 => Ok(()),
        _ => Err(format!("handle {h} is not held")),
    }
}
