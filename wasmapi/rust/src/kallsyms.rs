//! Kernel symbols, to choose programs by what the running kernel has.

use crate::helpers::string_to_buf_ptr;

#[link(wasm_import_module = "ig")]
extern "C" {
    #[link_name = "kallsymsSymbolExists"]
    fn ig_kallsyms_symbol_exists(symbol: u64) -> u32;
}

/// Whether `/proc/kallsyms` lists `symbol` exactly once.
pub fn kallsyms_symbol_exists(symbol: &str) -> bool {
    // SAFETY: `symbol` outlives the call; the host only reads it.
    unsafe { ig_kallsyms_symbol_exists(string_to_buf_ptr(symbol).0) != 0 }
}
