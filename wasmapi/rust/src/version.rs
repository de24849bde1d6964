//! The API version the host checks before anything else.

/// This crate speaks version 1 of the guest API.
#[no_mangle]
#[allow(non_snake_case)]
pub extern "C" fn gadgetAPIVersion() -> u64 {
    1
}
