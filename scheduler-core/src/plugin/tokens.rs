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

/// The request's prompt as token ids, computed on demand: a consumer reads as far as it needs
/// ([`Self::read_while`]) and pays only for that prefix (the precise prefix cache stops at the
/// first block no server holds), or everything ([`Self::read_all`]).
pub struct TokenizedPrompt {
    /// Token ids computed so far, in order, after the chat template (for chat requests); all of
    /// them when [`Self::complete`] says so.
    pub tokens: Vec<u32>,
    complete: bool,
    /// Where the rest comes from; `None` when `tokens` was given whole.
    source: Option<Arc<dyn PromptTokenizer>>,
}

impl core::fmt::Debug for TokenizedPrompt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenizedPrompt")
            .field("tokens", &self.tokens)
            .field("complete", &self.complete)
            .finish()
    }
}

impl TokenizedPrompt {
    /// Ids known in full.
    pub fn new(tokens: Vec<u32>) -> Self {
        TokenizedPrompt {
            tokens,
            complete: true,
            source: None,
        }
    }

    /// Nothing tokenised yet: `tokenizer` tokenises the request's prompt when a consumer asks.
    pub fn deferred(tokenizer: Arc<dyn PromptTokenizer>) -> Self {
        TokenizedPrompt {
            tokens: Vec::new(),
            complete: false,
            source: Some(tokenizer),
        }
    }

    /// True when [`Self::tokens`] holds the whole prompt.
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// The ids of `prompt` (the request's, with its `api`) from the start, asking `more(ids)`
    /// after each stretch and stopping when it returns `false`; returns the ids computed (a
    /// prefix of the prompt's, or all of them). When an earlier consumer stopped early this
    /// tokenises again from the start (repeated text is cached by the tokenizer); when every
    /// id is known, `more` is asked once.
    ///
    /// # Errors
    /// The tokenizer's message (bad messages JSON, template error).
    pub fn read_while(
        &mut self,
        api: ApiKind,
        prompt: &str,
        more: &mut dyn FnMut(&[u32]) -> bool,
    ) -> Result<&[u32], String> {
        let Some(t) = self.source.clone().filter(|_| !self.complete) else {
            more(&self.tokens);
            return Ok(&self.tokens);
        };
        self.tokens.clear();
        // One allocation up front for typical text (~4 bytes per token) instead of a
        // reallocation per doubling while the ids arrive.
        self.tokens.reserve(prompt.len() / 4 + 16);
        self.complete = t.tokenize_while(api, prompt, &mut self.tokens, more)?;
        Ok(&self.tokens)
    }

    /// Every id of `prompt`.
    ///
    /// # Errors
    /// As [`Self::read_while`].
    pub fn read_all(&mut self, api: ApiKind, prompt: &str) -> Result<&[u32], String> {
        self.read_while(api, prompt, &mut |_| true)
    }
}

/// Turns prompts into token ids for one model.
pub trait PromptTokenizer: Send + Sync {
    /// The token ids of `prompt` (for [`ApiKind::ChatCompletions`] the raw JSON of `messages`,
    /// rendered with the model's chat template first; else the prompt text).
    ///
    /// # Errors
    /// A message when the prompt cannot be tokenised (bad messages JSON, template error).
    fn tokenize(&self, api: ApiKind, prompt: &str) -> Result<Vec<u32>, String>;

    /// The ids [`Self::tokenize`] gives, appended to `out` from the start in stretches, with
    /// `more(out)` asked after each; stops when it returns `false`. `Ok(true)` when every id was
    /// appended. The default tokenises everything and asks once.
    ///
    /// # Errors
    /// As [`Self::tokenize`].
    fn tokenize_while(
        &self,
        api: ApiKind,
        prompt: &str,
        out: &mut Vec<u32>,
        more: &mut dyn FnMut(&[u32]) -> bool,
    ) -> Result<bool, String> {
        out.extend(self.tokenize(api, prompt)?);
        more(out);
        Ok(true)
    }
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
