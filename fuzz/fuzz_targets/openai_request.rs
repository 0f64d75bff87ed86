//! The HTTP JSON request parsers (OpenAI, Anthropic, vLLM's and SGLang's generate), a generic
//! model rewrite rule (which names the model of an OpenAI body without one), then a scheduling
//! cycle on what they accepted, and the rewrite of the body's model (the rewritten body must
//! still read as the same request with the new model, whether the body had a `model` to replace
//! or gets one inserted). The first byte picks the path, and so the parser; the rest is the body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scheduler_core::{load, Endpoint, Registry, RequestState, SplitMix64};

const CONFIG: &str = r#"{"plugins": [{"type": "openai-parser"}, {"type": "anthropic-parser"},
    {"type": "vllmhttp-parser"}, {"type": "sglanghttp-parser"}, {"type": "queue-scorer"}],
  "requestHandler": {"parsers": [{"pluginRef": "openai-parser"}, {"pluginRef": "anthropic-parser"},
    {"pluginRef": "vllmhttp-parser"}, {"pluginRef": "sglanghttp-parser"}]},
  "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "queue-scorer"}]}],
  "inferenceModelRewrites": [{"name": "default-model", "rules": [{"targets": [{"modelRewrite": "d"}]}]}]}"#;

fuzz_target!(|data: &[u8]| {
    let paths = [
        "/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/conversations",
        "/v1/messages", "/inference/v1/generate", "/generate",
    ];
    let Some((sel, body)) = data.split_first() else { return };
    let path = paths[*sel as usize % paths.len()];
    let Ok((picker, _)) = load(CONFIG, &Registry::with_builtins()) else { return };
    if let Ok(mut req) = picker.parse_request(path, body, vec![]) {
        // The OpenAI and Anthropic APIs must end up with a model.
        let named = path.starts_with("/v1/");
        let _ = picker.rewrite_model(&mut req, &mut SplitMix64::new(2));
        assert!(!named || !req.target_model.is_empty());
        // These parsers cannot know media for certain: a request is multimodal exactly when the
        // read of its parts found one, and then it has their token estimate.
        assert_eq!(req.multimodal, req.media_tokens.is_some_and(|m| m.parts > 0));
        assert_eq!(req.multimodal, req.media_tokens.is_some());
        // The multimodal encoder-cache producer reads the media parts of the same prompt.
        let _ = scheduler_core::parse::media::media_items(&req.prompt);
        // Image headers as the media token estimate reads them (inline images' first bytes).
        let _ = scheduler_core::parse::media_tokens::image_size(body);
        let pool = vec![Endpoint::new("10.0.0.1:8000"), Endpoint::new("10.0.0.2:8000")];
        let _ = picker.schedule(&req, &pool, 1, &mut SplitMix64::new(1), &mut RequestState::new());
        // Every body whose parser reads `model`: the OpenAI APIs (a missing one inserted) and
        // any other that named one.
        let rewrite = (!req.model.is_empty() || named)
            .then(|| scheduler_core::parse::model_field::rewrite_model(body, "m\"2"))
            .flatten();
        if let Some(rewritten) = rewrite {
            let again = picker.parse_request(path, &rewritten, vec![]);
            assert_eq!(again.map(|r| r.model.into_owned()).ok().as_deref(), Some("m\"2"));
        }
    }
});
