//! The OpenAI request parser, then a scheduling cycle on what it accepted.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scheduler_core::{load, Endpoint, Registry, RequestState, SplitMix64};

fuzz_target!(|data: &[u8]| {
    let paths = ["/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/conversations"];
    let path = paths[data.first().map_or(0, |b| *b as usize % paths.len())];
    let Ok((picker, _)) = load("{}", &Registry::with_builtins()) else { return };
    if let Ok(req) = picker.parse_request(path, data, vec![]) {
        // The multimodal encoder-cache producer reads the media parts of the same prompt.
        let _ = scheduler_core::parse::media::media_items(&req.prompt);
        let pool = vec![Endpoint::new("10.0.0.1:8000"), Endpoint::new("10.0.0.2:8000")];
        let _ = picker.schedule(&req, &pool, 1, &mut SplitMix64::new(1), &mut RequestState::new());
    }
});
