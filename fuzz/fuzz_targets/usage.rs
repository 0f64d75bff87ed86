//! Usage from JSON bodies and from SSE streams split at every possible point of the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scheduler_core::parse::usage::{usage_from_json, SseUsageParser};

fuzz_target!(|data: &[u8]| {
    let _ = usage_from_json(data);
    let cut = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let (a, b) = data.split_at(cut);
    let mut p = SseUsageParser::new();
    p.feed(a);
    p.feed(b);
    p.finish();
    let _ = p.usage();
});
