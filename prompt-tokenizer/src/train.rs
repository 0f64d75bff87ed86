//! A small byte-level BPE tokenizer trained offline, for tests and demos (no download): special
//! tokens `<|begin_of_text|>` (BOS, prepended to completions), `<|end_of_text|>`,
//! `<|im_start|>` and `<|im_end|>`, and a ChatML chat template in `tokenizer_config.json`.
//! Trained on sentences drawn deterministically from a fixed English word list (including the
//! words `loadgen` writes prompts with), so every run writes the same files.

use std::path::Path;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

use crate::Error;

/// Special tokens of the test tokenizer, in id order (0, 1, 2, 3).
pub const SPECIAL_TOKENS: [&str; 4] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|im_start|>",
    "<|im_end|>",
];

/// The ChatML template written to `tokenizer_config.json`.
pub const CHATML_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

const WORDS: &[&str] = &[
    "the",
    "a",
    "you",
    "are",
    "helpful",
    "assistant",
    "answer",
    "question",
    "briefly",
    "with",
    "sources",
    "model",
    "cache",
    "request",
    "server",
    "prompt",
    "token",
    "block",
    "system",
    "user",
    "please",
    "explain",
    "how",
    "why",
    "what",
    "when",
    "where",
    "which",
    "routing",
    "endpoint",
    "latency",
    "throughput",
    "memory",
    "gpu",
    "prefix",
    "shared",
    "context",
    "reply",
    "in",
    "of",
    "to",
    "and",
    "for",
    "on",
    "is",
    "it",
    "that",
    "this",
    "be",
    "as",
    "by",
    "from",
    "data",
    "time",
    "first",
    "number",
    "one",
    "two",
    "three",
    "write",
    "code",
    "function",
    "python",
    "rust",
    "list",
    "summary",
    "document",
    "policy",
    "customer",
    "support",
    "order",
    "account",
    "history",
    "language",
    "translate",
    "english",
    "french",
    "review",
    "test",
    // The words `loadgen` writes its prompts with, so they are whole tokens as English words
    // are in a real model's vocabulary.
    "billing",
    "invoice",
    "refund",
    "shipping",
    "product",
    "warranty",
    "delivery",
    "payment",
    "balance",
    "service",
    "contract",
    "renewal",
    "discount",
    "region",
    "report",
];

fn corpus() -> Vec<String> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..4000)
        .map(|_| {
            let n = 4 + (next() % 12) as usize;
            let mut s = String::new();
            for i in 0..n {
                if i > 0 {
                    s.push(' ');
                }
                let w = WORDS
                    .get((next() % WORDS.len() as u64) as usize)
                    .copied()
                    .unwrap_or("the");
                s.push_str(w);
            }
            s.push_str(if next() % 3 == 0 { "?\n" } else { ".\n" });
            s
        })
        .collect()
}

/// Trains the tokenizer (vocabulary of `vocab_size`, ≥ 300).
///
/// # Errors
/// A training or assembly error from the tokenizers crate.
pub fn train(vocab_size: usize) -> Result<Tokenizer, Error> {
    let e = |e: tokenizers::Error| Error(format!("training the test tokenizer: {e}"));
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size.max(300))
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|t| AddedToken::from(*t, true))
                .collect(),
        )
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tok = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_post_processor(None::<tokenizers::PostProcessorWrapper>)
        .with_decoder(Some(ByteLevel::default()))
        .build()
        .map_err(e)?;
    tok.train(&mut trainer, corpus().into_iter()).map_err(e)?;
    let mut tok: Tokenizer = tok.into();
    let bos = tok.token_to_id(SPECIAL_TOKENS[0]).unwrap_or(0);
    let post = TemplateProcessing::builder()
        .try_single(format!("{} $A", SPECIAL_TOKENS[0]))
        .map_err(|m| Error(format!("post-processor: {m}")))?
        .special_tokens(vec![(SPECIAL_TOKENS[0], bos)])
        .build()
        .map_err(|m| Error(format!("post-processor: {m}")))?;
    tok.with_post_processor(Some(post));
    Ok(tok)
}

/// Writes `tokenizer.json` and `tokenizer_config.json` (ChatML template, BOS) into `dir`.
///
/// # Errors
/// Training or file errors.
pub fn write_test_tokenizer(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error(format!("{}: {e}", dir.display())))?;
    let tok = train(2000)?;
    tok.save(dir.join("tokenizer.json"), false)
        .map_err(|e| Error(format!("writing tokenizer.json: {e}")))?;
    let config = serde_json::json!({
        "bos_token": SPECIAL_TOKENS[0],
        "eos_token": SPECIAL_TOKENS[1],
        "chat_template": CHATML_TEMPLATE,
        "model_max_length": 131072,
    });
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string())
        .map_err(|e| Error(format!("writing tokenizer_config.json: {e}")))
}
