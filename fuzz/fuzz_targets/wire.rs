//! libFuzzer entry point of the `wire` target; the harness is
//! `ig_fuzz::targets::wire`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ig_fuzz::targets::wire(data));
