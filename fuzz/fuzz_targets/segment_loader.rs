//! libFuzzer entry point; the check is `shoal_fuzz::segment_loader`.
#![no_main]

use std::sync::Once;

static HOOK: Once = Once::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // libFuzzer's panic hook aborts on every panic, even one that is caught. Arrow's IPC reader
    // panics on some malformed input; the loader catches those and refuses the file, so they
    // unwind on here. A panic anywhere else, or one the loader does not catch, still ends the
    // run as a finding.
    HOOK.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.location().is_some_and(|l| l.file().contains("/arrow-")) {
                return;
            }
            abort(info);
        }));
    });
    shoal_fuzz::segment_loader(data);
});
