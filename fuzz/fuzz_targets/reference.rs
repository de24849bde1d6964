//! libFuzzer entry point of the `reference` target; the harness is
//! `ig_fuzz::targets::reference`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ig_fuzz::targets::reference(data));
