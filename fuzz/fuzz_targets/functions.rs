//! libFuzzer entry point; the check is `shoal_fuzz::functions`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_fuzz::functions(data));
