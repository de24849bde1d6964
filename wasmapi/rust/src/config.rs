//! Configuration of the eBPF side, set before the gadget loads (in
//! `gadgetInit` or `gadgetPreStart`): `programs.<program>.attach_to`
//! moves a program to another target of its kind, or keeps it out with
//! `gadget_program_disabled`.

use crate::datasources::FieldKind;
use crate::helpers::string_to_buf_ptr;

#[link(wasm_import_module = "ig")]
extern "C" {
    #[link_name = "setConfig"]
    fn ig_set_config(key: u64, value: u64, kind: u32) -> u32;
}

/// Values a configuration key can take (strings only).
pub trait Allowed {
    fn to_buf_ptr(&self) -> u64;
}

impl Allowed for String {
    fn to_buf_ptr(&self) -> u64 {
        string_to_buf_ptr(self).0
    }
}

impl Allowed for &str {
    fn to_buf_ptr(&self) -> u64 {
        string_to_buf_ptr(self).0
    }
}

pub fn set_config<T: Allowed>(key: String, val: T) -> Result<(), String> {
    let value = val.to_buf_ptr();
    // SAFETY: `key` and `val` outlive the call; the host only reads them.
    let ret = unsafe { ig_set_config(string_to_buf_ptr(&key).0, value, FieldKind::String as u32) };
    match ret {
        0 => Ok(()),
        _ => Err(format!("setting configuration {key}")),
    }
}
