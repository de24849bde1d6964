//! libFuzzer entry point of the `filter` target; the harness is
//! `ig_fuzz::targets::filter`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ig_fuzz::targets::filter(data));
