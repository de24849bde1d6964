//! The gadget's `params.wasm` parameters, as the user set them.

use crate::helpers::{from_c_string, out_buf, string_to_buf_ptr};

#[link(wasm_import_module = "ig")]
extern "C" {
    #[link_name = "getParamValue"]
    fn ig_get_param_value(key: u64, dst: u64) -> u32;
}

/// The value of parameter `key`, at most `max_size` bytes.
pub fn get_param_value(key: String, max_size: u64) -> Result<String, String> {
    let mut dst = vec![0u8; max_size as usize];
    // SAFETY: `dst` is a live, writable buffer of the length given, and
    // `key` outlives the call.
    match unsafe { ig_get_param_value(string_to_buf_ptr(&key).0, out_buf(&mut dst)) } {
        0 => Ok(from_c_string(&dst)),
        _ => Err(format!(
            "no value for parameter {key} (or longer than {max_size} bytes)"
        )),
    }
}
