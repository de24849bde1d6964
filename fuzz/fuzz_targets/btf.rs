//! libFuzzer entry point of the `btf` target; the harness is
//! `ig_fuzz::targets::btf`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ig_fuzz::targets::btf(data));
