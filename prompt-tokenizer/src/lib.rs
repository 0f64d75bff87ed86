//! # prompt-tokenizer
//!
//! The token ids a vLLM server computes for an OpenAI request, computed in the proxy, so the
//! picker can hash the same KV blocks the server caches (the precise prefix cache):
//!
//! - completions: `prompt` encoded with the tokenizer's special tokens (vLLM calls the Hugging
//!   Face tokenizer with `add_special_tokens=True`, so a BOS is prepended where the tokenizer's
//!   post-processor says so);
//! - chat: `messages` rendered with the model's chat template (`tokenizer_config.json`
//!   `chat_template`, with `add_generation_prompt=True`, `bos_token`, `eos_token`), then encoded
//!   **without** adding special tokens (the template writes them), as vLLM's chat path does.
//!
//! Files: a directory with `tokenizer.json` and optionally `tokenizer_config.json`, or the
//! `tokenizer.json` path itself; [`find_in_hf_cache`] finds a model's local copy by its
//! Hugging Face id. Nothing is downloaded.
//!
//! Cost: encoding is done per stretch of text between special tokens ([`segments`]), and long
//! stretches are cached, so a system prompt shared by many chat requests is encoded once; new
//! text is encoded word by word with a cache of words ([`words`]).
//! [`train`] builds a small byte-level BPE tokenizer offline for tests and demos.

#![warn(missing_docs)]
// Runs on the native module's request path: no panicking shortcuts outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod segments;
pub mod template;
pub mod train;
pub mod words;

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::Tokenizer;

use crate::segments::Segmenter;
use crate::template::ChatTemplate;

/// Why a tokenizer could not be loaded or a prompt not tokenised.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err(msg: impl Into<String>) -> Error {
    Error(msg.into())
}

/// A model's tokenizer and chat template. `Send + Sync`: one instance serves every thread.
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    /// The ids the tokenizer's post-processor puts before and after a text (a BOS…), when
    /// adding them around piecewise ids gives exactly what encoding with special tokens gives.
    wrap: Option<(Vec<u32>, Vec<u32>)>,
    template: Option<ChatTemplate>,
    segmenter: Segmenter,
    source: PathBuf,
}

impl PromptTokenizer {
    /// Loads `path`: a directory holding `tokenizer.json` (and optionally
    /// `tokenizer_config.json`), or a `tokenizer.json` file (its directory is searched for the
    /// config).
    ///
    /// # Errors
    /// Missing or unreadable `tokenizer.json`; a `tokenizer_config.json` that is not JSON; a
    /// chat template that does not compile.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let (file, dir) = if path.is_dir() {
            (path.join("tokenizer.json"), path.to_path_buf())
        } else {
            (
                path.to_path_buf(),
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
            )
        };
        let tokenizer = Tokenizer::from_file(&file)
            .map_err(|e| err(format!("cannot load {}: {e}", file.display())))?;
        let config_path = dir.join("tokenizer_config.json");
        let template = match std::fs::read(&config_path) {
            Ok(bytes) => {
                let config: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| err(format!("{}: {e}", config_path.display())))?;
                ChatTemplate::from_config(&config)
                    .map_err(|e| err(format!("{}: {e}", config_path.display())))?
            }
            Err(_) => None,
        };
        let segmenter = Segmenter::new(&tokenizer);
        let wrap = wrapping(&tokenizer, &segmenter);
        Ok(PromptTokenizer {
            wrap,
            tokenizer,
            template,
            segmenter,
            source: file,
        })
    }

    /// The `tokenizer.json` this was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// True when text between added tokens is encoded piece by piece (and long pieces cached).
    pub fn caches_pieces(&self) -> bool {
        self.segmenter.splits()
    }

    /// True when long pieces are cut into cached chunks and completions use them.
    pub fn caches_chunks(&self) -> bool {
        self.segmenter.chunks() && self.wrap.is_some()
    }

    /// True when new text is encoded in small stretches for a caller that may stop early
    /// ([`Self::tokenize_completion_while`], [`Self::tokenize_rendered_while`]).
    pub fn encodes_in_stretches(&self) -> bool {
        self.segmenter.stretches()
    }

    /// True when new text is encoded word by word with a cache of words, skipping the
    /// tokenizer's `Encoding` ([`words`]; checked against it at load).
    pub fn encodes_words(&self) -> bool {
        self.segmenter.words()
    }

    /// True when the tokenizer has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// Token ids of a completions `prompt`, special tokens added as the tokenizer's
    /// post-processor says (vLLM's `add_special_tokens=True`).
    ///
    /// # Errors
    /// The tokenizer's own error (rare: invalid input for its normaliser).
    pub fn tokenize_completion(&self, prompt: &str) -> Result<Vec<u32>, Error> {
        if let Some((before, after)) = &self.wrap {
            let mut ids = before.clone();
            ids.extend(self.segmenter.encode(&self.tokenizer, prompt));
            ids.extend_from_slice(after);
            return Ok(ids);
        }
        self.tokenizer
            .encode_fast(prompt, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| err(e.to_string()))
    }

    /// [`Self::tokenize_completion`] from the start, appended to `out`, asking `more(out)` after
    /// each stretch and stopping when it says so (see [`Segmenter::encode_while`]). `Ok(true)`
    /// when the whole prompt was encoded (the post-processor's closing ids included).
    ///
    /// # Errors
    /// As [`Self::tokenize_completion`].
    pub fn tokenize_completion_while(
        &self,
        prompt: &str,
        out: &mut Vec<u32>,
        more: segments::More<'_>,
    ) -> Result<bool, Error> {
        if let Some((before, after)) = &self.wrap {
            out.extend_from_slice(before);
            if !self
                .segmenter
                .encode_while(&self.tokenizer, prompt, out, more)
            {
                return Ok(false);
            }
            if !after.is_empty() {
                out.extend_from_slice(after);
                more(out);
            }
            return Ok(true);
        }
        out.extend(self.tokenize_completion(prompt)?);
        more(out);
        Ok(true)
    }

    /// [`Self::tokenize_rendered`] from the start, appended to `out`, asking `more(out)` after
    /// each stretch and stopping when it says so. `true` when the whole text was encoded.
    pub fn tokenize_rendered_while(
        &self,
        text: &str,
        out: &mut Vec<u32>,
        more: segments::More<'_>,
    ) -> bool {
        self.segmenter
            .encode_while(&self.tokenizer, text, out, more)
    }

    /// Token ids of a chat request: `messages` (the JSON array) through the chat template
    /// with the generation prompt, encoded without adding special tokens.
    ///
    /// # Errors
    /// No chat template; `messages` not an array; a template error.
    pub fn tokenize_chat(&self, messages: &Value) -> Result<Vec<u32>, Error> {
        let text = self.render_chat(messages)?;
        Ok(self.tokenize_rendered(&text))
    }

    /// The text the chat template renders for `messages`.
    ///
    /// # Errors
    /// As [`Self::tokenize_chat`].
    pub fn render_chat(&self, messages: &Value) -> Result<String, Error> {
        let t = self.template.as_ref().ok_or_else(|| {
            err("the tokenizer has no chat template (tokenizer_config.json chat_template)")
        })?;
        if !messages.is_array() {
            return Err(err("'messages' is not an array"));
        }
        t.render(messages)
    }

    /// The text the chat template renders for `messages` given as JSON text (the raw
    /// `messages` array of a request), read without an intermediate JSON tree.
    ///
    /// # Errors
    /// As [`Self::tokenize_chat`], and text that is not JSON.
    pub fn render_chat_json(&self, messages: &str) -> Result<String, Error> {
        let t = self.template.as_ref().ok_or_else(|| {
            err("the tokenizer has no chat template (tokenizer_config.json chat_template)")
        })?;
        t.render_json(messages)
    }

    /// Token ids of already rendered text, no special tokens added (exactly what encoding
    /// `text` whole gives; see [`segments`]).
    pub fn tokenize_rendered(&self, text: &str) -> Vec<u32> {
        self.segmenter.encode(&self.tokenizer, text)
    }
}

/// The special ids the post-processor adds around a single text, if adding them around
/// piecewise ids reproduces encoding with special tokens on a probe text.
fn wrapping(tokenizer: &Tokenizer, segmenter: &Segmenter) -> Option<(Vec<u32>, Vec<u32>)> {
    if !segmenter.splits() && !segmenter.chunks() {
        return None;
    }
    let ids = |text: &str, special: bool| {
        tokenizer
            .encode_fast(text, special)
            .ok()
            .map(|e| e.get_ids().to_vec())
    };
    let bare = ids("Hello world", false)?;
    let full = ids("Hello world", true)?;
    let at = (0..=full.len().checked_sub(bare.len())?)
        .find(|&i| full.get(i..i + bare.len()) == Some(bare.as_slice()))?;
    let before = full.get(..at)?.to_vec();
    let after = full.get(at + bare.len()..)?.to_vec();
    let probe = "Long text, with words; numbers 42 and   spaces.\n".repeat(30);
    let mut got = before.clone();
    got.extend(segmenter.encode(tokenizer, &probe));
    got.extend_from_slice(&after);
    (ids(&probe, true)? == got).then_some((before, after))
}

/// The local copy of Hugging Face model `model_id` (`org/name`): the snapshot directory holding
/// its `tokenizer.json` under `$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`
/// (`models--org--name/snapshots/<rev>/`, preferring the revision `refs/main` names).
pub fn find_in_hf_cache(model_id: &str) -> Option<PathBuf> {
    let roots: Vec<PathBuf> = [
        std::env::var_os("HF_HUB_CACHE").map(PathBuf::from),
        std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let dir_name = format!("models--{}", model_id.replace('/', "--"));
    for root in roots {
        let repo = root.join(&dir_name);
        if let Ok(rev) = std::fs::read_to_string(repo.join("refs/main")) {
            let snap = repo.join("snapshots").join(rev.trim());
            if snap.join("tokenizer.json").is_file() {
                return Some(snap);
            }
        }
        if let Ok(entries) = std::fs::read_dir(repo.join("snapshots")) {
            for e in entries.flatten() {
                if e.path().join("tokenizer.json").is_file() {
                    return Some(e.path());
                }
            }
        }
    }
    None
}
