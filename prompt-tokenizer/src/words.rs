//! Encoding new text without building a Hugging Face `Encoding`.
//!
//! `Tokenizer::encode_fast` runs the tokenizer's added-token split and normaliser, its
//! pre-tokeniser, then the model on every pre-token, and finally assembles an `Encoding`: a
//! token string, offsets, masks and word indices per token, most of them separate heap
//! allocations that the prompt path never reads. The model maps each pre-token to ids on its own
//! (that is what a pre-tokeniser is for: BPE never merges across pre-tokens), so [`WordCoder`]
//! runs the same first two stages through the tokenizer's own components and then takes each
//! pre-token's ids from a cache of words, asking the model only for words it has not seen.
//!
//! Exactness is checked, not assumed: [`WordCoder::new`] compares its output with
//! `encode_fast` on probe texts (words, punctuation, digits, odd spacing, non-ASCII, the
//! tokenizer's added tokens) and is off when any differs, or when the model is not
//! deterministic (BPE dropout). The callers fall back to `encode_fast` then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokenizers::{Model, OffsetReferential, OffsetType, PreTokenizer, Tokenizer};

/// Cached words per shard and generation (16 shards: at most 16 × 2 × 4,096 words).
pub const WORDS_PER_SHARD: usize = 4096;
/// Longer pre-tokens (a run of base64, a long number) are encoded each time and not cached, so
/// the cache holds at most ~8 MiB of words whatever the prompts contain.
pub const MAX_CACHED_WORD_BYTES: usize = 64;
const SHARDS: usize = 16;

#[derive(Default)]
struct Generations {
    current: HashMap<Box<str>, Arc<[u32]>>,
    previous: HashMap<Box<str>, Arc<[u32]>>,
}

impl Generations {
    fn get(&mut self, word: &str) -> Option<Arc<[u32]>> {
        if let Some(ids) = self.current.get(word) {
            return Some(ids.clone());
        }
        let (key, ids) = self.previous.remove_entry(word)?;
        self.insert(key, ids.clone());
        Some(ids)
    }

    fn insert(&mut self, word: Box<str>, ids: Arc<[u32]>) {
        if self.current.len() >= WORDS_PER_SHARD {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(word, ids);
    }
}

/// See the module docs.
pub struct WordCoder {
    shards: Vec<Mutex<Generations>>,
    on: bool,
}

/// Texts whose lean encoding must equal `encode_fast`'s for the coder to be used.
fn probes(tokenizer: &Tokenizer) -> Vec<String> {
    let mut added: Vec<String> = tokenizer
        .get_added_tokens_decoder()
        .values()
        .map(|t| t.content.clone())
        .filter(|c| !c.is_empty())
        .collect();
    added.sort();
    let mut with_added = String::from("Hello  world\n");
    for c in added.iter().take(4) {
        with_added.push_str(c);
        with_added.push_str(" system\nYou are, a  helpful assistant.\n\n");
    }
    vec![
        "The quick brown fox, jumps over 12 lazy dogs; it's fine.  Really?\n\tYes: (maybe) \
         don't stop-words & CamelCase words at 3.14 percent...\n\n"
            .repeat(4),
        "naïve café — 🚀 Ünïcödé 東京 مرحبا   trailing spaces   \n\n\n  x".into(),
        " leading space, 2024-12-03T18:48:07Z, $42.00, user@example.com, #tag, a_b-c".into(),
        format!("data:{} end", "aGVsbG8gd29ybGQ".repeat(12)),
        with_added,
    ]
}

impl WordCoder {
    /// A coder for `tokenizer`, on only when it reproduces `encode_fast` on the probe texts.
    pub fn new(tokenizer: &Tokenizer) -> Self {
        let mut c = WordCoder {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Generations::default()))
                .collect(),
            on: true,
        };
        let deterministic = match tokenizer.get_model() {
            tokenizers::ModelWrapper::BPE(bpe) => bpe.dropout.is_none(),
            _ => true,
        };
        c.on = deterministic
            && probes(tokenizer).iter().all(|p| {
                let want = tokenizer
                    .encode_fast(p.as_str(), false)
                    .map(|e| e.get_ids().to_vec())
                    .ok();
                // Twice: the second pass reads the word cache the first one filled.
                want.is_some() && (0..2).all(|_| c.encode(tokenizer, p).as_ref() == want.as_ref())
            });
        c.shards.iter().for_each(|s| {
            *s.lock().unwrap_or_else(PoisonError::into_inner) = Generations::default()
        });
        c
    }

    /// True when the probes matched and the coder is used.
    pub fn on(&self) -> bool {
        self.on
    }

    /// The ids of `text` with no special tokens added (as `encode_fast(text, false)`), or
    /// `None` when the coder is off or the tokenizer reports an error.
    pub fn encode(&self, tokenizer: &Tokenizer, text: &str) -> Option<Vec<u32>> {
        if !self.on {
            return None;
        }
        let mut pre = tokenizer
            .get_added_vocabulary()
            .extract_and_normalize(tokenizer.get_normalizer(), text);
        if let Some(p) = tokenizer.get_pre_tokenizer() {
            p.pre_tokenize(&mut pre).ok()?;
        }
        let model = tokenizer.get_model();
        let mut out = Vec::with_capacity(text.len() / 3);
        for (word, _, tokens) in pre.get_splits(OffsetReferential::Original, OffsetType::None) {
            if let Some(tokens) = tokens {
                // An added token, already resolved by the split.
                out.extend(tokens.iter().map(|t| t.id));
                continue;
            }
            if word.is_empty() {
                continue;
            }
            if word.len() > MAX_CACHED_WORD_BYTES {
                out.extend(model.tokenize(word).ok()?.iter().map(|t| t.id));
                continue;
            }
            let shard = self.shards.get(shard_of(word))?;
            let hit = shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(word);
            match hit {
                Some(ids) => out.extend_from_slice(&ids),
                None => {
                    let ids: Arc<[u32]> = model.tokenize(word).ok()?.iter().map(|t| t.id).collect();
                    out.extend_from_slice(&ids);
                    shard
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(word.into(), ids);
                }
            }
        }
        Some(out)
    }
}

/// A shard for `word` (FNV-1a over at most its first 16 bytes: cheap, and only spreads locks).
fn shard_of(word: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for &b in word.as_bytes().iter().take(16) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer(name: &str) -> Tokenizer {
        let d = std::env::temp_dir().join(format!("words-{name}-{}", std::process::id()));
        crate::train::write_test_tokenizer(&d).unwrap();
        Tokenizer::from_file(d.join("tokenizer.json")).unwrap()
    }

    #[test]
    fn word_by_word_equals_the_tokenizer_and_the_cache_stays_bounded() {
        let t = tokenizer("exact");
        let c = WordCoder::new(&t);
        assert!(c.on(), "the probes matched");
        let long = format!("{} and then", "z9".repeat(80));
        for text in [
            "",
            " ",
            "hello",
            "a  b\n\nc",
            long.as_str(),
            "<|im_start|>user\nhi<|im_end|>",
        ] {
            let want = t.encode_fast(text, false).unwrap().get_ids().to_vec();
            assert_eq!(c.encode(&t, text).unwrap(), want, "{text:?}");
        }
        // Many distinct words: each shard keeps at most two generations.
        let many: String = (0..200_000).map(|i| format!(" w{i}")).collect();
        let want = t
            .encode_fast(many.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(c.encode(&t, &many).unwrap(), want);
        for s in &c.shards {
            let g = s.lock().unwrap();
            assert!(g.current.len() <= WORDS_PER_SHARD && g.previous.len() <= WORDS_PER_SHARD);
        }
    }
}
