//! The tokenizer service the native module lends `token-producer`: the model's Hugging Face
//! tokenizer and chat template ([`prompt_tokenizer`]), loaded once per filter configuration and
//! shared by every worker. Chat (and Anthropic messages) prompts, which the parser hands over as
//! the raw JSON of `messages`, go through the chat template; every other API is encoded as
//! text with the tokenizer's special tokens, as vLLM does.

use std::path::Path;
use std::sync::Arc;

use scheduler_core::model::request::ApiKind;
use scheduler_core::plugin::{PromptTokenizer, Services, TokenizerProvider, TokenizerSpec};

/// Loads tokenizers from local files (never downloads).
pub struct HfTokenizers;

struct Loaded(prompt_tokenizer::PromptTokenizer);

impl PromptTokenizer for Loaded {
    fn tokenize(&self, api: ApiKind, prompt: &str) -> Result<Vec<u32>, String> {
        let mut out = Vec::new();
        self.tokenize_while(api, prompt, &mut out, &mut |_| true)?;
        Ok(out)
    }

    /// Chat prompts are rendered whole (the template needs every message), then encoded stretch
    /// by stretch; completions prompts are encoded stretch by stretch.
    fn tokenize_while(
        &self,
        api: ApiKind,
        prompt: &str,
        out: &mut Vec<u32>,
        more: &mut dyn FnMut(&[u32]) -> bool,
    ) -> Result<bool, String> {
        match api {
            ApiKind::ChatCompletions | ApiKind::Messages => {
                let text = self.0.render_chat_json(prompt).map_err(|e| e.to_string())?;
                Ok(self.0.tokenize_rendered_while(&text, out, more))
            }
            _ => self
                .0
                .tokenize_completion_while(prompt, out, more)
                .map_err(|e| e.to_string()),
        }
    }
}

impl TokenizerProvider for HfTokenizers {
    fn load(&self, spec: &TokenizerSpec) -> Result<Arc<dyn PromptTokenizer>, String> {
        let dir = match &spec.path {
            Some(p) => Path::new(p).to_path_buf(),
            None => prompt_tokenizer::find_in_hf_cache(&spec.model_name).ok_or_else(|| {
                format!(
                    "no local copy of '{}' (looked for models--{}/snapshots/*/tokenizer.json under $HF_HUB_CACHE, $HF_HOME/hub and ~/.cache/huggingface/hub)",
                    spec.model_name,
                    spec.model_name.replace('/', "--")
                )
            })?,
        };
        let t = prompt_tokenizer::PromptTokenizer::load(&dir).map_err(|e| e.to_string())?;
        log::info!(
            "endpoint picker: tokenizer {} loaded (chat template: {}, cached pieces: {})",
            t.source().display(),
            t.has_chat_template(),
            t.caches_pieces()
        );
        Ok(Arc::new(Loaded(t)))
    }
}

/// The services of this module: tokenizers, and entropy from the OS (std's `RandomState` keys
/// are drawn from the OS's random source).
pub fn services() -> Services {
    use std::hash::BuildHasher;
    Services {
        tokenizers: Some(Arc::new(HfTokenizers)),
        entropy: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64),
        ..Services::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_carry_os_entropy() {
        // Two draws differ (std's RandomState keys change per instance) and are not the
        // "no entropy" value.
        let (a, b) = (services().entropy, services().entropy);
        assert_ne!(a, 0);
        assert_ne!(a, b);
        assert!(services().tokenizers.is_some());
    }
}
