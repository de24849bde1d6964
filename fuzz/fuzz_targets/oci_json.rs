//! libFuzzer entry point of the `oci_json` target; the harness is
//! `ig_fuzz::targets::oci_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ig_fuzz::targets::oci_json(data));
