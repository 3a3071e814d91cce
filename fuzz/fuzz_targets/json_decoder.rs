//! libFuzzer entry point; the check is `shoal_fuzz::json_decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shoal_fuzz::json_decoder(data);
});
