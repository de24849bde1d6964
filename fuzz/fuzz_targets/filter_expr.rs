//! libFuzzer entry point of the `filter_expr` target; the harness is
//! `ig_fuzz::targets::filter_expr`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ig_fuzz::targets::filter_expr(data));
