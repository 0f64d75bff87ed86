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
//! For byte-level BPE tokenizers (GPT-2's scheme, and Llama 3's and Qwen's: a regex split then a
//! byte-to-character map) the split itself is done here too (`Mode::Split`): the tokenizer's
//! regex cuts the text, each piece's ids come from the cache keyed by the piece as written, and
//! only a new piece is mapped to the byte-level alphabet and handed to the model. This skips the
//! tokenizer's `NormalizedString`s (an alignment vector per piece), which with the `Encoding`
//! were most of the time spent on new text. It is used only for text with no added tokens in it
//! (the segmenter has already cut there). With GPT-2's exact pattern, ASCII text is cut by hand
//! (`gpt2_ascii_word`: the regex's alternatives over four byte classes), since the regex
//! engine's backtracking VM was then the largest cost left; other text keeps the regex.
//!
//! Exactness is checked, not assumed: [`WordCoder::new`] compares its output with
//! `encode_fast` on probe texts (words, punctuation, digits, odd spacing, non-ASCII, long
//! pieces, and the tokenizer's added tokens where the mode handles them) and is off when any
//! differs, or when the model is not deterministic (BPE dropout). The callers fall back to
//! `encode_fast` then.

use hashbrown::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
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

/// How a [`WordCoder`] finds the words of a text.
enum Mode {
    /// The tokenizer's regex and byte-level map, run here (text without added tokens only);
    /// with GPT-2's pattern, ASCII text is cut by [`gpt2_ascii_word`] instead of the regex.
    Split(fancy_regex::Regex, bool),
    /// The tokenizer's own added-token split, normaliser and pre-tokeniser.
    PreTokenizer,
    /// Not used: the probes did not match.
    Off,
}

/// See the module docs.
pub struct WordCoder {
    shards: Vec<Mutex<Generations>>,
    mode: Mode,
}

/// GPT-2's pre-tokenizer pattern (contractions, letters, digits, other symbols, each optionally
/// after one space; runs of whitespace), which a byte-level pre-tokenizer with `use_regex` uses.
const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// The regex that cuts text into words when the tokenizer is byte-level BPE without a
/// normaliser: a `ByteLevel` pre-tokenizer with `use_regex` (GPT-2's pattern), or a `Split`
/// (`Isolated`) by a regex followed by a `ByteLevel` without `use_regex` (Llama 3, Qwen);
/// neither adding a prefix space. `None` for any other shape.
fn split_pattern(tokenizer: &Tokenizer) -> Option<String> {
    if tokenizer.get_normalizer().is_some() {
        return None;
    }
    let v = serde_json::to_value(tokenizer.get_pre_tokenizer()?).ok()?;
    let is = |v: &Value, key: &str, want: Value| v.get(key) == Some(&want);
    let byte_level = |b: &Value, regex: bool| {
        is(b, "type", "ByteLevel".into())
            && is(b, "add_prefix_space", false.into())
            && is(b, "use_regex", regex.into())
    };
    if byte_level(&v, true) {
        return Some(GPT2_PATTERN.into());
    }
    let seq = v
        .get("pretokenizers")
        .filter(|_| is(&v, "type", "Sequence".into()))?
        .as_array()?;
    match seq.as_slice() {
        [split, bl]
            if is(split, "type", "Split".into())
                && is(split, "behavior", "Isolated".into())
                && is(split, "invert", false.into())
                && byte_level(bl, false) =>
        {
            let pattern = split.get("pattern")?.get("Regex")?;
            pattern.as_str().map(String::from)
        }
        _ => None,
    }
}

/// GPT-2's byte-to-character map: printable Latin-1 bytes stand for themselves, the other 68
/// bytes (controls, space, DEL, NBSP, soft hyphen) for U+0100 onwards in byte order.
// Evaluated at compile time: an index out of bounds would fail the build, not a request.
#[allow(clippy::indexing_slicing)]
const BYTE_CHARS: [char; 256] = {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    let mut b = 0usize;
    while b < 256 {
        let printable = matches!(b as u8, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        table[b] = match char::from_u32(code) {
            Some(c) => c,
            None => '\u{FFFD}',
        };
        b += 1;
    }
    table
};

fn byte_char(b: u8) -> char {
    BYTE_CHARS
        .get(usize::from(b))
        .copied()
        .unwrap_or('\u{FFFD}')
}

/// Texts whose lean encoding must equal `encode_fast`'s for the coder to be used.
fn probes(tokenizer: &Tokenizer, with_added_tokens: bool) -> Vec<String> {
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
    let mut texts = vec![
        "The quick brown fox, jumps over 12 lazy dogs; it's fine.  Really?\n\tYes: (maybe) \
         don't stop-words & CamelCase words at 3.14 percent...\n\n"
            .repeat(4),
        "naïve café — 🚀 Ünïcödé 東京 مرحبا   trailing spaces   \n\n\n  x".into(),
        " leading space, 2024-12-03T18:48:07Z, $42.00, user@example.com, #tag, a_b-c".into(),
        format!("data:{} end", "aGVsbG8gd29ybGQ".repeat(12)),
        "tabs\tand\r\nCRLF lines\n\n\n   \t  mixed   \u{a0}nbsp\u{ad}shy \u{7f}del \u{1}ctl".into(),
        "I'm sure they'll say it's what we'd've DONE'S 123456789 1,234.56 ½ ②".into(),
    ];
    if with_added_tokens {
        texts.push(with_added);
    }
    texts
}

impl WordCoder {
    /// A coder for `tokenizer`, on only when it reproduces `encode_fast` on the probe texts.
    /// `no_added_tokens`: the caller passes only text with no added token in it (the split
    /// mode needs that).
    pub fn new(tokenizer: &Tokenizer, no_added_tokens: bool) -> Self {
        let deterministic = match tokenizer.get_model() {
            tokenizers::ModelWrapper::BPE(bpe) => bpe.dropout.is_none(),
            _ => true,
        };
        let split = split_pattern(tokenizer)
            .filter(|_| no_added_tokens)
            .and_then(|p| Some((fancy_regex::Regex::new(&p).ok()?, p == GPT2_PATTERN)));
        let modes = split
            .map(|(re, gpt2)| Mode::Split(re, gpt2))
            .into_iter()
            .chain([Mode::PreTokenizer])
            .filter(|_| deterministic);
        for mode in modes {
            let with_added = matches!(mode, Mode::PreTokenizer);
            let c = WordCoder {
                shards: (0..SHARDS)
                    .map(|_| Mutex::new(Generations::default()))
                    .collect(),
                mode,
            };
            let exact = probes(tokenizer, with_added).iter().all(|p| {
                let want = tokenizer
                    .encode_fast(p.as_str(), false)
                    .map(|e| e.get_ids().to_vec())
                    .ok();
                // Twice: the second pass reads the word cache the first one filled.
                want.is_some() && (0..2).all(|_| c.encode(tokenizer, p).as_ref() == want.as_ref())
            });
            if exact {
                for s in &c.shards {
                    *s.lock().unwrap_or_else(PoisonError::into_inner) = Generations::default();
                }
                return c;
            }
        }
        WordCoder::off()
    }

    /// A coder that is never used.
    pub fn off() -> Self {
        WordCoder {
            shards: Vec::new(),
            mode: Mode::Off,
        }
    }

    /// True when the probes matched and the coder is used.
    pub fn on(&self) -> bool {
        !matches!(self.mode, Mode::Off)
    }

    /// True when the coder cuts text into words itself (byte-level BPE).
    pub fn splits(&self) -> bool {
        matches!(self.mode, Mode::Split(..))
    }

    /// The ids of `text` with no special tokens added (as `encode_fast(text, false)`), or
    /// `None` when the coder is off or the tokenizer reports an error.
    pub fn encode(&self, tokenizer: &Tokenizer, text: &str) -> Option<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3);
        match &self.mode {
            Mode::Off => return None,
            Mode::Split(_, true) if text.is_ascii() => {
                let mut mapped = String::new();
                let mut at = 0;
                while at < text.len() {
                    let end = gpt2_ascii_word(text.as_bytes(), at);
                    self.split_word(tokenizer, text.get(at..end)?, &mut mapped, &mut out)?;
                    at = end;
                }
            }
            Mode::Split(re, _) => {
                let mut mapped = String::new();
                let mut at = 0;
                for m in re.find_iter(text) {
                    let m = m.ok()?;
                    // An `Isolated` split keeps the text between matches as pieces too.
                    if m.start() > at {
                        self.split_word(
                            tokenizer,
                            text.get(at..m.start())?,
                            &mut mapped,
                            &mut out,
                        )?;
                    }
                    self.split_word(tokenizer, m.as_str(), &mut mapped, &mut out)?;
                    at = m.end();
                }
                if at < text.len() {
                    self.split_word(tokenizer, text.get(at..)?, &mut mapped, &mut out)?;
                }
            }
            Mode::PreTokenizer => {
                let mut pre = tokenizer
                    .get_added_vocabulary()
                    .extract_and_normalize(tokenizer.get_normalizer(), text);
                if let Some(p) = tokenizer.get_pre_tokenizer() {
                    p.pre_tokenize(&mut pre).ok()?;
                }
                for (word, _, tokens) in
                    pre.get_splits(OffsetReferential::Original, OffsetType::None)
                {
                    match tokens {
                        // An added token, already resolved by the split.
                        Some(tokens) => out.extend(tokens.iter().map(|t| t.id)),
                        None => self.word(tokenizer, word, &mut out, |m| m.tokenize(word))?,
                    }
                }
            }
        }
        Some(out)
    }

    /// Appends the ids of one piece of the split mode: the cache is keyed by the piece as
    /// written; the model sees it in the byte-level alphabet.
    fn split_word(
        &self,
        tokenizer: &Tokenizer,
        piece: &str,
        mapped: &mut String,
        out: &mut Vec<u32>,
    ) -> Option<()> {
        self.word(tokenizer, piece, out, |model: &tokenizers::ModelWrapper| {
            // Only a word the cache does not hold is mapped to the byte-level alphabet.
            mapped.clear();
            mapped.extend(piece.bytes().map(byte_char));
            model.tokenize(mapped)
        })
    }

    /// Appends the ids of the word cached under `key`; `tokenize` asks the model for them
    /// when the cache does not hold it.
    fn word(
        &self,
        tokenizer: &Tokenizer,
        key: &str,
        out: &mut Vec<u32>,
        tokenize: impl FnOnce(&tokenizers::ModelWrapper) -> tokenizers::Result<Vec<tokenizers::Token>>,
    ) -> Option<()> {
        if key.is_empty() {
            return Some(());
        }
        let model = tokenizer.get_model();
        if key.len() > MAX_CACHED_WORD_BYTES {
            out.extend(tokenize(model).ok()?.iter().map(|t| t.id));
            return Some(());
        }
        let shard = self.shards.get(shard_of(key))?;
        let hit = shard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key);
        match hit {
            Some(ids) => out.extend_from_slice(&ids),
            None => {
                let ids: Arc<[u32]> = tokenize(model).ok()?.iter().map(|t| t.id).collect();
                out.extend_from_slice(&ids);
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key.into(), ids);
            }
        }
        Some(())
    }
}

/// Byte classes of GPT-2's pattern for ASCII text: `\p{L}`, `\p{N}`, `\s` (Unicode
/// White_Space: tab, line feed, vertical tab, form feed, carriage return, space) and the rest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Digit,
    Space,
    Other,
}

fn class(b: u8) -> Class {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' => Class::Letter,
        b'0'..=b'9' => Class::Digit,
        b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ' => Class::Space,
        _ => Class::Other,
    }
}

/// The end of the word of GPT-2's pattern ([`GPT2_PATTERN`]) that starts at `at` in ASCII
/// `text` (`at` < its length), the regex's leftmost-first choice written out: a contraction
/// (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`); else a run of letters, of digits or of other
/// symbols, with one space before it when there is one; else whitespace — a run not followed
/// by a non-space, or all but its last character when that leaves at least one, or the single
/// character.
fn gpt2_ascii_word(text: &[u8], at: usize) -> usize {
    let rest = text.get(at..).unwrap_or_default();
    let Some(&first) = rest.first() else {
        return text.len();
    };
    if first == b'\'' {
        for suffix in ["s", "t", "re", "ve", "m", "ll", "d"] {
            if rest
                .get(1..)
                .is_some_and(|r| r.starts_with(suffix.as_bytes()))
            {
                return at + 1 + suffix.len();
            }
        }
    }
    let run = |from: usize, c: Class| {
        from + rest
            .get(from..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&b| class(b) == c)
            .count()
    };
    // One space, then a run of one class other than space.
    let start =
        usize::from(first == b' ' && rest.get(1).is_some_and(|&b| class(b) != Class::Space));
    let c = rest.get(start).map_or(Class::Space, |&b| class(b));
    if c != Class::Space {
        return at + run(start, c);
    }
    let end = run(0, Class::Space);
    if end == rest.len() || end == 1 {
        at + end
    } else {
        at + end - 1
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
        let d = tempfile::Builder::new()
            .prefix(&format!("words-{name}-"))
            .tempdir()
            .unwrap();
        crate::train::write_test_tokenizer(d.path()).unwrap();
        Tokenizer::from_file(d.path().join("tokenizer.json")).unwrap()
    }

    #[test]
    fn word_by_word_equals_the_tokenizer_and_the_cache_stays_bounded() {
        let t = tokenizer("exact");
        let c = WordCoder::new(&t, true);
        assert!(c.splits(), "byte-level BPE: the coder cuts words itself");
        let generic = WordCoder::new(&t, false);
        assert!(
            generic.on() && !generic.splits(),
            "text with added tokens: the tokenizer cuts"
        );
        let long = format!("{} and then", "z9".repeat(80));
        for text in [
            "",
            " ",
            "hello",
            "a  b\n\nc",
            long.as_str(),
            " \u{1}\u{7f}\u{a0}ok  ",
        ] {
            let want = t.encode_fast(text, false).unwrap().get_ids().to_vec();
            assert_eq!(c.encode(&t, text).unwrap(), want, "{text:?}");
            assert_eq!(generic.encode(&t, text).unwrap(), want, "{text:?}");
        }
        let with_added = "<|im_start|>user\nhi<|im_end|>";
        let want = t.encode_fast(with_added, false).unwrap().get_ids().to_vec();
        assert_eq!(generic.encode(&t, with_added).unwrap(), want);
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

    #[test]
    fn gpt2_ascii_words_are_the_regex_matches() {
        let re = fancy_regex::Regex::new(GPT2_PATTERN).unwrap();
        let pieces = [
            "a", "Zq", "7", "42", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "'", "'s", "'t",
            "'re", "'ve", "'m", "'ll", "'d", "'S", "'x", ",", "!?", "\u{1}", "\u{7f}", "\u{1c}",
            "-",
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..3000 {
            let mut text = String::new();
            for _ in 0..(1 + round % 17) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                text.push_str(pieces[(x % pieces.len() as u64) as usize]);
            }
            let want: Vec<&str> = re.find_iter(&text).map(|m| m.unwrap().as_str()).collect();
            let mut got = Vec::new();
            let mut at = 0;
            while at < text.len() {
                let end = gpt2_ascii_word(text.as_bytes(), at);
                assert!(end > at, "no progress at {at} in {text:?}");
                got.push(&text[at..end]);
                at = end;
            }
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn a_split_then_byte_level_tokenizer_is_cut_here_too() {
        // The test tokenizer with Llama 3's shape of pre-tokenizer: a regex split (Llama 3's
        // pattern: digits in threes, newlines kept apart), then the byte-level map.
        let tmp = tempfile::Builder::new()
            .prefix("words-llama-")
            .tempdir()
            .unwrap();
        let d = tmp.path();
        crate::train::write_test_tokenizer(d).unwrap();
        let path = d.join("tokenizer.json");
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        json["pre_tokenizer"] = serde_json::json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"},
             "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]});
        std::fs::write(&path, json.to_string()).unwrap();
        let t = Tokenizer::from_file(&path).unwrap();
        let c = WordCoder::new(&t, true);
        assert!(
            c.splits(),
            "the probes matched with the tokenizer's own pattern"
        );
        for text in [
            "12345678 apples,\n\n  and 3.14159 PIES'LL do",
            "naïve 🚀\r\n\tx",
        ] {
            let want = t.encode_fast(text, false).unwrap().get_ids().to_vec();
            assert_eq!(c.encode(&t, text).unwrap(), want, "{text:?}");
        }
    }
}
