//! The container selection of the run (`ig run -c ...`).

#[link(wasm_import_module = "ig")]
extern "C" {
    #[link_name = "shouldDiscardMntnsID"]
    fn ig_should_discard_mntns_id(mntns_id: u64) -> u32;
}

/// Whether events of mount namespace `mntns_id` are outside the selected
/// containers (false when no container is selected).
pub fn should_discard_mntns_id(mntns_id: u64) -> bool {
    // SAFETY: a plain call without pointers.
    unsafe { ig_should_discard_mntns_id(mntns_id) != 0 }
}
