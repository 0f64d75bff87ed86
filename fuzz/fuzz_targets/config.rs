//! The configuration loader (module config = pool + GIE document): any input is an Ok or a
//! ConfigError, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let registry = scheduler_core::Registry::with_builtins();
        let _ = scheduler_core::PickerConfig::load(text, &registry);
        let _ = scheduler_core::load(text, &registry);
    }
});
