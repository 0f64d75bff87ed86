//! `token-producer` (alias `tokenizer`): publishes the request's prompt as token ids under
//! [`TOKENIZED_PROMPT`] for plugins that need exact tokens (the precise prefix cache). The ids
//! are computed when a consumer reads them and only as far as it reads
//! ([`TokenizedPrompt::read_while`]): the precise prefix cache stops at the first block no
//! server holds, so a prompt whose text is new costs one stretch of tokenisation, not all of it.
//!
//! llm-d's plugin of this name sends the prompt to a vLLM `render` sidecar (or a UDS tokenizer
//! pool) per request. Here tokenisation runs inside the proxy, through the host's
//! [`crate::plugin::TokenizerProvider`] (the native module loads the model's Hugging Face
//! `tokenizer.json` and chat template), so no request leaves the proxy to be tokenised. Without
//! a provider (the proxy-wasm build, offline validation) the plugin loads, warns, and produces
//! nothing; consumers then score nothing.
//!
//! Parameters:
//! | field | meaning |
//! |---|---|
//! | `modelName` | the model's Hugging Face id (`org/name`); its tokenizer is looked up in the local Hugging Face cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`) |
//! | `tokenizerPath` | ours: a directory with `tokenizer.json` (and `tokenizer_config.json` for the chat template) or the file itself; wins over `modelName`, and a failure to load it is a config error |
//! | `vllm`, `udsTokenizerConfig` | llm-d's remote tokenizer settings: accepted and unused (tokenisation is local) |
//! | `estimate` | llm-d's multimodal placeholder estimates (`image`, `video`): how every token estimate of the picker counts media parts, whatever tokenizes (`crate::parse::media_tokens`) |

use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};

use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleState, DataKey, DataProducer, Plugin, ProduceContext, PromptTokenizer, RequestState,
    TokenizedPrompt, TokenizerSpec, TypedName, TOKENIZED_PROMPT,
};

/// Plugin type name.
pub const TYPE: &str = "token-producer";
/// llm-d's older name for the same plugin.
pub const ALIAS: &str = "tokenizer";

/// Parameters; see the module docs.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Params {
    /// Hugging Face model id.
    pub model_name: String,
    /// Local tokenizer (ours).
    pub tokenizer_path: Option<String>,
    /// llm-d: vLLM render endpoint (unused here).
    pub vllm: Option<serde_json::Value>,
    /// llm-d: UDS tokenizer pool (unused here).
    pub uds_tokenizer_config: Option<serde_json::Value>,
    /// llm-d: multimodal token estimates.
    pub estimate: Option<crate::parse::media_tokens::EstimateParams>,
}

/// The media estimate of the first `token-producer` (or `tokenizer`) in `plugins` that has an
/// `estimate` section, else the defaults; the factory has checked it.
pub fn media_estimate(
    plugins: &[crate::config::PluginSpec],
) -> crate::parse::media_tokens::EstimateParams {
    plugins
        .iter()
        .filter(|s| matches!(s.type_name.as_deref(), Some(TYPE | ALIAS)))
        .filter_map(|s| s.parameters.as_ref()?.get("estimate"))
        .find_map(|e| serde_json::from_value(e.clone()).ok())
        .unwrap_or_default()
}

/// Builds a [`TokenProducer`].
///
/// # Errors
/// Unknown fields; a `tokenizerPath` the host cannot load.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if let Some(e) = &p.estimate {
        e.validate()
            .map_err(|e| e.prefixed(&FieldPath::key("estimate")))?;
    }
    let spec = TokenizerSpec {
        model_name: p.model_name.clone(),
        path: p.tokenizer_path.clone().filter(|s| !s.is_empty()),
    };
    let tokenizer = match handle.services().tokenizers {
        None => {
            log::warn!("{TYPE} '{name}': this build cannot tokenise in the proxy (no tokenizer service); precise prefix-cache scoring stays inactive");
            None
        }
        Some(_) if spec.path.is_none() && spec.model_name.is_empty() => {
            // Also the case of the producer created implicitly for a consumer.
            log::warn!("{TYPE} '{name}': neither 'modelName' nor 'tokenizerPath' is set: nothing to tokenise with; precise prefix-cache scoring stays inactive");
            None
        }
        Some(provider) => match provider.load(&spec) {
            Ok(t) => Some(t),
            Err(e) if spec.path.is_some() => {
                return Err(ConfigError::invalid(FieldPath::key("tokenizerPath"), e))
            }
            Err(e) => {
                log::warn!("{TYPE} '{name}': {e}; precise prefix-cache scoring stays inactive (set 'tokenizerPath')");
                None
            }
        },
    };
    if p.vllm.is_some() || p.uds_tokenizer_config.is_some() {
        log::info!(
            "{TYPE} '{name}': tokenising in the proxy; the remote tokenizer settings are not used"
        );
    }
    Ok(Arc::new(TokenProducer {
        typed_name: TypedName::new(TYPE, name),
        tokenizer,
    }))
}

/// See the module docs.
pub struct TokenProducer {
    typed_name: TypedName,
    tokenizer: Option<Arc<dyn PromptTokenizer>>,
}

impl TokenProducer {
    /// True when a tokenizer was loaded.
    pub fn active(&self) -> bool {
        self.tokenizer.is_some()
    }
}

impl Plugin for TokenProducer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_data_producer(&self) -> Option<&dyn DataProducer> {
        Some(self)
    }
    fn produces(&self) -> &'static [DataKey] {
        &[TOKENIZED_PROMPT]
    }
}

impl DataProducer for TokenProducer {
    fn produce(
        &self,
        cx: &ProduceContext<'_>,
        _: &[usize],
        cycle: &mut CycleState,
        _: &mut RequestState,
    ) {
        let Some(t) = &self.tokenizer else { return };
        if cx.request.prompt.is_empty() {
            return;
        }
        // Tokenised when a consumer reads it, only as far as it reads.
        cycle.put(TOKENIZED_PROMPT, TokenizedPrompt::deferred(t.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::request::{ApiKind, InferenceRequest};
    use crate::plugin::{Services, TokenizerProvider};
    use alloc::vec::Vec;

    struct Bytes;
    impl PromptTokenizer for Bytes {
        fn tokenize(&self, _: ApiKind, prompt: &str) -> Result<Vec<u32>, String> {
            Ok(prompt.bytes().map(u32::from).collect())
        }
        /// One byte per stretch.
        fn tokenize_while(
            &self,
            _: ApiKind,
            prompt: &str,
            out: &mut Vec<u32>,
            more: &mut dyn FnMut(&[u32]) -> bool,
        ) -> Result<bool, String> {
            for b in prompt.bytes() {
                out.push(u32::from(b));
                if !more(out) {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    }
    struct Provider;
    impl TokenizerProvider for Provider {
        fn load(&self, spec: &TokenizerSpec) -> Result<Arc<dyn PromptTokenizer>, String> {
            if spec.path.as_deref() == Some("/missing") {
                return Err("no tokenizer.json at /missing".into());
            }
            Ok(Arc::new(Bytes))
        }
    }

    fn build(
        params: serde_json::Value,
        services: &Services,
    ) -> Result<Arc<dyn Plugin>, ConfigError> {
        factory("t", Some(&params), &Handle::with_services(&[], services))
    }

    #[test]
    fn tokenises_through_the_host_and_publishes_the_ids() {
        let services = Services {
            tokenizers: Some(Arc::new(Provider)),
            ..Services::default()
        };
        let p = build(
            serde_json::json!({"modelName": "org/m", "vllm": {"url": "http://x"}}),
            &services,
        )
        .unwrap();
        let req = InferenceRequest::new("m", "abc");
        let mut cycle = CycleState::new();
        p.as_data_producer().unwrap().produce(
            &ProduceContext {
                request: &req,
                endpoints: &[],
                now_ms: 0,
            },
            &[],
            &mut cycle,
            &mut RequestState::new(),
        );
        let t = cycle.get_mut::<TokenizedPrompt>(TOKENIZED_PROMPT).unwrap();
        assert!(
            t.tokens.is_empty() && !t.complete(),
            "nothing before a consumer reads"
        );
        // A consumer that needs two ids gets two, and the tokenizer stops there.
        let mut asked = 0;
        let got = t
            .read_while(req.api, &req.prompt, &mut |ids| {
                asked += 1;
                ids.len() < 2
            })
            .unwrap();
        assert_eq!(got, [97, 98]);
        assert_eq!(asked, 2);
        assert!(!t.complete());
        // A later consumer that wants everything gets everything.
        assert_eq!(t.read_all(req.api, &req.prompt).unwrap(), [97, 98, 99]);
        assert!(t.complete());
        assert_eq!(
            t.read_while(req.api, &req.prompt, &mut |_| false).unwrap(),
            [97, 98, 99]
        );
    }

    #[test]
    fn without_a_host_service_it_loads_and_produces_nothing() {
        let p = build(
            serde_json::json!({"modelName": "org/m"}),
            &Services::default(),
        )
        .unwrap();
        let mut cycle = CycleState::new();
        p.as_data_producer().unwrap().produce(
            &ProduceContext {
                request: &InferenceRequest::new("m", "ab"),
                endpoints: &[],
                now_ms: 0,
            },
            &[],
            &mut cycle,
            &mut RequestState::new(),
        );
        assert!(cycle.get::<TokenizedPrompt>(TOKENIZED_PROMPT).is_none());
    }

    #[test]
    fn an_explicit_path_that_fails_is_a_config_error_naming_the_field() {
        let services = Services {
            tokenizers: Some(Arc::new(Provider)),
            ..Services::default()
        };
        let e = build(serde_json::json!({"tokenizerPath": "/missing"}), &services)
            .err()
            .unwrap();
        assert!(alloc::format!("{e}").contains("tokenizerPath"), "{e}");
        let idle = build(serde_json::json!({}), &services).unwrap();
        let mut cycle = CycleState::new();
        idle.as_data_producer().unwrap().produce(
            &ProduceContext {
                request: &InferenceRequest::new("m", "ab"),
                endpoints: &[],
                now_ms: 0,
            },
            &[],
            &mut cycle,
            &mut RequestState::new(),
        );
        assert!(
            cycle.get::<TokenizedPrompt>(TOKENIZED_PROMPT).is_none(),
            "nothing to tokenise with"
        );
    }
}
