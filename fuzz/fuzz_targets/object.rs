//! libFuzzer entry point of the `object` target; the harness is
//! `ig_fuzz::targets::object`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ig_fuzz::targets::object(data));
