//! libFuzzer entry point of the `gadget_yaml` target; the harness is
//! `ig_fuzz::targets::gadget_yaml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ig_fuzz::targets::gadget_yaml(data));
