//! The HTTP JSON request parsers (OpenAI, Anthropic, vLLM's and SGLang's generate), then a
//! scheduling cycle on what they accepted, and the rewrite of the body's model (the rewritten
//! body must still read as the same request with the new model). The first byte picks the path,
//! and so the parser; the rest is the body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scheduler_core::{load, Endpoint, Registry, RequestState, SplitMix64};

const CONFIG: &str = r#"{"plugins": [{"type": "openai-parser"}, {"type": "anthropic-parser"},
    {"type": "vllmhttp-parser"}, {"type": "sglanghttp-parser"}, {"type": "queue-scorer"}],
  "requestHandler": {"parsers": [{"pluginRef": "openai-parser"}, {"pluginRef": "anthropic-parser"},
    {"pluginRef": "vllmhttp-parser"}, {"pluginRef": "sglanghttp-parser"}]},
  "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "queue-scorer"}]}]}"#;

fuzz_target!(|data: &[u8]| {
    let paths = [
        "/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/conversations",
        "/v1/messages", "/inference/v1/generate", "/generate",
    ];
    let Some((sel, body)) = data.split_first() else { return };
    let path = paths[*sel as usize % paths.len()];
    let Ok((picker, _)) = load(CONFIG, &Registry::with_builtins()) else { return };
    if let Ok(req) = picker.parse_request(path, body, vec![]) {
        // The multimodal encoder-cache producer reads the media parts of the same prompt.
        let _ = scheduler_core::parse::media::media_items(&req.prompt);
        let pool = vec![Endpoint::new("10.0.0.1:8000"), Endpoint::new("10.0.0.2:8000")];
        let _ = picker.schedule(&req, &pool, 1, &mut SplitMix64::new(1), &mut RequestState::new());
        let rewrite = (!req.model.is_empty())
            .then(|| scheduler_core::parse::model_field::rewrite_model(body, "m\"2"))
            .flatten();
        if let Some(rewritten) = rewrite {
            let again = picker.parse_request(path, &rewritten, vec![]);
            assert_eq!(again.map(|r| r.model.into_owned()).ok().as_deref(), Some("m\"2"));
        }
    }
});
