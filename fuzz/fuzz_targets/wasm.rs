//! libFuzzer entry point of the `wasm` target; the harness is
//! `ig_fuzz::targets::wasm`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ig_fuzz::targets::wasm(data));
