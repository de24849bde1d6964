//! libFuzzer entry point of the `wasm_host` target; the harness is
//! `ig_fuzz::targets::wasm_host`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ig_fuzz::targets::wasm_host(data));
