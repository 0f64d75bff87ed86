//! Tokenisation: how a request's prompt becomes the token ids the model server will see, for
//! plugins that need exact tokens (the precise prefix cache). The core cannot tokenise (no_std,
//! no model files); a host that can registers a [`TokenizerProvider`] in the registry's
//! [`Services`], and `token-producer` asks it for a tokenizer when it is configured. Without a
//! provider (the proxy-wasm build, `envoy-config validate`) `token-producer` loads and produces
//! nothing, with a warning.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::model::request::ApiKind;

/// Cycle-state key of the request's [`TokenizedPrompt`] (llm-d's `TokenizedPromptDataKey`).
pub const TOKENIZED_PROMPT: super::DataKey = "TokenizedPrompt";

/// The request's prompt as token ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenizedPrompt {
    /// Token ids, in order, after the chat template (for chat requests).
    pub tokens: Vec<u32>,
}

/// Turns prompts into token ids for one model.
pub trait PromptTokenizer: Send + Sync {
    /// The token ids of `prompt` (for [`ApiKind::ChatCompletions`] the raw JSON of `messages`,
    /// rendered with the model's chat template first; else the prompt text).
    ///
    /// # Errors
    /// A message when the prompt cannot be tokenised (bad messages JSON, template error).
    fn tokenize(&self, api: ApiKind, prompt: &str) -> Result<Vec<u32>, String>;
}

/// What `token-producer` was configured with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenizerSpec {
    /// `modelName`: the Hugging Face model id (`org/name`), used to find a local copy.
    pub model_name: String,
    /// `tokenizerPath` (ours): a directory holding `tokenizer.json` (and optionally
    /// `tokenizer_config.json` with the chat template), or the `tokenizer.json` file itself.
    pub path: Option<String>,
}

/// Loads tokenizers (a host service).
pub trait TokenizerProvider: Send + Sync {
    /// The tokenizer for `spec`.
    ///
    /// # Errors
    /// A message naming what was looked for and why it failed.
    fn load(&self, spec: &TokenizerSpec) -> Result<Arc<dyn PromptTokenizer>, String>;
}

/// Capabilities a host lends to plugins at load time (carried by the registry, read by
/// factories through [`super::Handle::services`]).
#[derive(Clone, Default)]
pub struct Services {
    /// Tokenizer loading; `None` when the host cannot tokenise.
    pub tokenizers: Option<Arc<dyn TokenizerProvider>>,
    /// CEL compilation; `None` when the host has no interpreter.
    pub expressions: Option<Arc<dyn super::ExpressionCompiler>>,
    /// A value the host drew at start-up that clients cannot know (the native build: the OS's
    /// random source; the proxy-wasm build: the host clock in nanoseconds, as proxy-wasm has no
    /// random source); 0 when it has none. Mixed into the seeds of hash tables keyed by
    /// client-chosen values (the prefix index), so prompts cannot be crafted to collide.
    pub entropy: u64,
}
