//! libFuzzer entry point; the check is `shoal_fuzz::segment_loader`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_fuzz::segment_loader(data));
