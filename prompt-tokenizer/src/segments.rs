//! Encoding text piece by piece between added tokens, with a cache of long pieces.
//!
//! A Hugging Face tokenizer first cuts its input at its added tokens (leftmost-longest match)
//! and then normalises, pre-tokenises and encodes every piece between them on its own. So the
//! ids of a rendered chat prompt are the concatenation of the ids of its pieces, and a piece
//! that repeats across requests (a system prompt between `<|im_start|>system\n` and
//! `<|im_end|>`, an earlier turn of a conversation, the `\n` and `assistant\n` between
//! messages) can be encoded once. [`Segmenter`] does that cut itself and caches every piece.
//! The cache is generational per shard: when the current map holds
//! [`CACHE_ENTRIES_PER_SHARD`] pieces it becomes the previous one and a new map starts; a piece
//! found in the previous map moves to the current one, so pieces in use survive and one-off
//! pieces (a new user question) age out after two generations.
//!
//! Long pieces are further cut at word boundaries into cached chunks ([`CHUNK_BYTES`]), so a
//! long shared prefix of a completions prompt is encoded once as well.
//!
//! [`Segmenter::encode_while`] encodes from the start and asks the caller after every stretch
//! whether to go on, so a caller that needs only a prefix of the ids (the precise prefix cache
//! stops at the first block no server holds) pays only for that prefix. A chunk that is not
//! cached is then encoded in smaller stretches ([`STRETCH_BYTES`], cut at the same word
//! boundaries), and cached only when it was encoded to its end.
//!
//! When that equivalence might not hold (an added token that strips spaces or must match a
//! whole word, or is matched after normalisation while the tokenizer normalises, or a probe
//! text that encodes differently whole and in pieces, e.g. a Metaspace pre-tokenizer that
//! prefixes only the first piece), the whole text is encoded instead.

use hashbrown::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aho_corasick::{AhoCorasick, MatchKind};
use tokenizers::Tokenizer;
use xxhash_rust::xxh3::xxh3_64;

use crate::words::WordCoder;

/// A piece longer than twice this (bytes) is also cut into chunks of at least this size at word
/// boundaries (a space between two ASCII letters, where byte-level pre-tokenizers always split:
/// ` word` starts a new pre-token), each cached on its own, so a long shared prefix inside one
/// piece (a completions prompt) is encoded once too. Used only when a probe text encodes the
/// same whole and chunked.
pub const CHUNK_BYTES: usize = 256;
/// When the caller may stop early ([`Segmenter::encode_while`]), a text that is not cached is
/// encoded in stretches of at least this many bytes (~16 tokens of English: one KV block),
/// cut at the same word boundaries as chunks. Used only when a probe text encodes the same
/// whole and cut this finely.
pub const STRETCH_BYTES: usize = 64;
/// Cached pieces per shard and generation (8 shards: at most 8 × 2 × 512 pieces).
pub const CACHE_ENTRIES_PER_SHARD: usize = 512;
const SHARDS: usize = 8;

#[derive(Default)]
struct Generations {
    current: HashMap<u64, Arc<[u32]>>,
    previous: HashMap<u64, Arc<[u32]>>,
}

impl Generations {
    fn get(&mut self, key: u64) -> Option<Arc<[u32]>> {
        if let Some(ids) = self.current.get(&key) {
            return Some(ids.clone());
        }
        let ids = self.previous.remove(&key)?;
        self.insert(key, ids.clone());
        Some(ids)
    }

    fn insert(&mut self, key: u64, ids: Arc<[u32]>) {
        if self.current.len() >= CACHE_ENTRIES_PER_SHARD {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, ids);
    }
}

type Shard = Mutex<Generations>;

/// See the module docs.
pub struct Segmenter {
    /// Matches every added token; `None` when pieces are not encoded separately.
    matcher: Option<AhoCorasick>,
    /// Id of each pattern of `matcher`.
    ids: Vec<u32>,
    cache: Vec<Shard>,
    /// Long pieces are cut into cached chunks ([`CHUNK_BYTES`]).
    chunks: bool,
    /// Uncached text may be encoded in stretches ([`STRETCH_BYTES`]) when the caller can stop.
    stretches: bool,
    /// Encodes uncached text word by word when it reproduces the tokenizer ([`crate::words`]).
    words: WordCoder,
}

/// Asked after each stretch of ids with every id so far: `true` to go on.
pub type More<'a> = &'a mut dyn FnMut(&[u32]) -> bool;

/// A text for checking that chunked encoding equals whole encoding: words, punctuation, digits,
/// runs of spaces and newlines, several chunks long.
fn chunk_probe() -> String {
    "The quick brown fox, jumps over 12 lazy dogs; it's fine.  Really?\n\tYes: (maybe) don't \
     stop-words & CamelCase words at 3.14 percent...\n\n"
        .repeat(12)
}

/// Where `text` may be cut: offsets of a space between two ASCII letters, at least `size`
/// bytes apart, none in the last `size`. After a cut the next `size` bytes are skipped without
/// being looked at, so a long text costs a look at a few bytes per cut, not at every byte.
fn cuts(text: &str, size: usize) -> impl Iterator<Item = usize> + '_ {
    let b = text.as_bytes();
    let end = b.len().saturating_sub(size);
    let mut next = size;
    core::iter::from_fn(move || {
        while next < end {
            let p = next + b.get(next..end)?.iter().position(|&c| c == b' ')?;
            let letter = |i: usize| b.get(i).is_some_and(u8::is_ascii_alphabetic);
            if p.checked_sub(1).is_some_and(letter) && letter(p + 1) {
                next = p + size;
                return Some(p);
            }
            next = p + 1;
        }
        None
    })
}

/// `text` cut at [`cuts`]`(text, size)`: consecutive slices that together are `text` (the whole
/// text when it is shorter than `2 × size` or has no cut).
fn parts(text: &str, size: usize) -> impl Iterator<Item = &str> + '_ {
    let ends = cuts(text, size).chain(core::iter::once(text.len()));
    let mut at = 0;
    ends.filter_map(move |end| {
        let part = text.get(at..end);
        at = end;
        part
    })
}

impl Segmenter {
    /// The segmenter for `tokenizer` (checked against whole encoding on a probe text).
    pub fn new(tokenizer: &Tokenizer) -> Self {
        let cache = (0..SHARDS)
            .map(|_| Mutex::new(Generations::default()))
            .collect();
        let added = tokenizer.get_added_tokens_decoder();
        let normalises = tokenizer.get_normalizer().is_some();
        let unsafe_token = added
            .values()
            .any(|t| t.lstrip || t.rstrip || t.single_word || (t.normalized && normalises));
        let mut pairs: Vec<(String, u32)> = added
            .iter()
            .map(|(id, t)| (t.content.clone(), *id))
            .filter(|(c, _)| !c.is_empty())
            .collect();
        pairs.sort();
        let matcher = if unsafe_token || pairs.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(pairs.iter().map(|(c, _)| c.as_str()))
                .ok()
        };
        let mut s = Segmenter {
            matcher,
            ids: pairs.iter().map(|(_, id)| *id).collect(),
            cache,
            chunks: false,
            stretches: false,
            words: WordCoder::off(),
        };
        if s.matcher.is_some() {
            let probe =
                pairs
                    .iter()
                    .take(3)
                    .fold(String::from("Hello  world\n"), |mut acc, (c, _)| {
                        acc.push_str(c);
                        acc.push_str(" system\nYou are, a  helpful assistant.\n\n");
                        acc
                    });
            let whole = tokenizer
                .encode_fast(probe.as_str(), false)
                .map(|e| e.get_ids().to_vec())
                .ok();
            if whole.as_deref() != Some(s.encode(tokenizer, &probe).as_slice()) {
                s.matcher = None;
            }
        }
        // Words are cut here only in text the matcher has cut at added tokens (or that cannot
        // contain one).
        let no_added = s.matcher.is_some() || pairs.is_empty();
        s.words = WordCoder::new(tokenizer, no_added);
        s.chunks = true;
        let probe = chunk_probe();
        let want = whole_checked(tokenizer, &probe);
        if want.as_deref() != Some(s.encode(tokenizer, &probe).as_slice()) {
            s.chunks = false;
        }
        // The same check cut into stretches, on a fresh cache (the probe is cached by now).
        s.stretches = true;
        let fresh = Segmenter {
            matcher: None,
            ids: Vec::new(),
            cache: (0..SHARDS)
                .map(|_| Mutex::new(Generations::default()))
                .collect(),
            chunks: false,
            stretches: true,
            words: WordCoder::off(),
        };
        let mut got = Vec::new();
        let mut go_on = |_: &[u32]| true;
        fresh.cached(tokenizer, &probe, &mut got, &mut Some(&mut go_on));
        if want.as_deref() != Some(got.as_slice()) {
            s.stretches = false;
        }
        s
    }

    /// True when uncached text is encoded word by word with a cache of words ([`crate::words`]).
    pub fn words(&self) -> bool {
        self.words.on()
    }

    /// The ids of `text` encoded whole (no special tokens added), word by word when the
    /// [`WordCoder`] is on.
    fn whole(&self, tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
        self.words
            .encode(tokenizer, text)
            .unwrap_or_else(|| whole(tokenizer, text))
    }

    /// True when uncached text is encoded in stretches for a caller that may stop early.
    pub fn stretches(&self) -> bool {
        self.stretches
    }

    /// True when long pieces are cut into cached chunks.
    pub fn chunks(&self) -> bool {
        self.chunks
    }

    /// True when pieces are encoded separately (and cached).
    pub fn splits(&self) -> bool {
        self.matcher.is_some()
    }

    /// Ids of `text` with no special tokens added: as `tokenizer.encode(text, false)`.
    pub fn encode(&self, tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
        if self.matcher.is_none() && !self.chunks {
            return self.whole(tokenizer, text);
        }
        let mut out = Vec::with_capacity(text.len() / 3);
        self.walk(tokenizer, text, &mut out, None);
        out
    }

    /// Appends the ids of `text` (as [`Self::encode`]) to `out` from the start, calling
    /// `more(out)` after each stretch (a cached piece or chunk, or up to [`STRETCH_BYTES`] of
    /// new text) and stopping when it returns `false`. Returns `true` when the whole text was
    /// encoded. With neither pieces nor chunks available the text is encoded whole, and `more`
    /// is called once.
    pub fn encode_while(
        &self,
        tokenizer: &Tokenizer,
        text: &str,
        out: &mut Vec<u32>,
        more: More<'_>,
    ) -> bool {
        if self.matcher.is_none() && !self.chunks {
            out.extend(self.whole(tokenizer, text));
            more(out);
            return true;
        }
        self.walk(tokenizer, text, out, Some(more))
    }

    /// Encodes `text` piece by piece into `out`; with `more`, asks after each stretch.
    fn walk(
        &self,
        tokenizer: &Tokenizer,
        text: &str,
        out: &mut Vec<u32>,
        mut more: Option<More<'_>>,
    ) -> bool {
        let Some(m) = &self.matcher else {
            return self.piece(tokenizer, text, out, &mut more);
        };
        let mut at = 0;
        for hit in m.find_iter(text) {
            if let Some(piece) = text.get(at..hit.start()) {
                if !self.piece(tokenizer, piece, out, &mut more) {
                    return false;
                }
            }
            if let Some(&id) = self.ids.get(hit.pattern().as_usize()) {
                out.push(id);
            }
            at = hit.end();
        }
        match text.get(at..) {
            Some(piece) => self.piece(tokenizer, piece, out, &mut more),
            None => true,
        }
    }

    fn piece(
        &self,
        tokenizer: &Tokenizer,
        piece: &str,
        out: &mut Vec<u32>,
        more: &mut Option<More<'_>>,
    ) -> bool {
        if !self.chunks {
            return self.cached(tokenizer, piece, out, more);
        }
        parts(piece, CHUNK_BYTES).all(|chunk| self.cached(tokenizer, chunk, out, more))
    }

    /// Appends the ids of one piece or chunk (from the cache when there); `false` when `more`
    /// said to stop.
    fn cached(
        &self,
        tokenizer: &Tokenizer,
        piece: &str,
        out: &mut Vec<u32>,
        more: &mut Option<More<'_>>,
    ) -> bool {
        if piece.is_empty() {
            return true;
        }
        let key = xxh3_64(piece.as_bytes());
        let Some(shard) = self.cache.get(key as usize % SHARDS) else {
            out.extend(self.whole(tokenizer, piece));
            return ask(more, out);
        };
        let hit = shard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key);
        if let Some(ids) = hit {
            out.extend_from_slice(&ids);
            return ask(more, out);
        }
        let start = out.len();
        match more {
            Some(f) if self.stretches => {
                let mut stretches = parts(piece, STRETCH_BYTES).peekable();
                while let Some(stretch) = stretches.next() {
                    out.extend(self.whole(tokenizer, stretch));
                    // The last stretch is asked about below, once the piece is cached.
                    if stretches.peek().is_some() && !f(out) {
                        // Not encoded to its end: nothing to cache.
                        return false;
                    }
                }
            }
            _ => out.extend(self.whole(tokenizer, piece)),
        }
        let ids: Arc<[u32]> = out.get(start..).unwrap_or_default().into();
        shard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, ids);
        ask(more, out)
    }
}

/// `more(out)`, or `true` when nobody asks.
fn ask(more: &mut Option<More<'_>>, out: &[u32]) -> bool {
    more.as_mut().is_none_or(|f| f(out))
}

fn whole_checked(tokenizer: &Tokenizer, text: &str) -> Option<Vec<u32>> {
    tokenizer
        .encode_fast(text, false)
        .map(|e| e.get_ids().to_vec())
        .ok()
}

fn whole(tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
    whole_checked(tokenizer, text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition of [`cuts`], byte by byte.
    fn cuts_by_definition(text: &str, size: usize) -> Vec<usize> {
        let b = text.as_bytes();
        let mut last = 0;
        let mut out = Vec::new();
        for p in size..b.len().saturating_sub(size) {
            if p >= last + size
                && b[p] == b' '
                && b[p - 1].is_ascii_alphabetic()
                && b[p + 1].is_ascii_alphabetic()
            {
                out.push(p);
                last = p;
            }
        }
        out
    }

    #[test]
    fn cuts_skip_ahead_to_the_same_offsets_as_the_definition() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for round in 0..200 {
            let mut text = String::new();
            while text.len() < 40 + round * 7 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                text.push_str(
                    ["ab", "c", " ", "  ", "d e", ",", "\n", "xyz ", " 9"][(x % 9) as usize],
                );
            }
            for size in [1, 2, 5, 16, 64] {
                assert_eq!(
                    cuts(&text, size).collect::<Vec<_>>(),
                    cuts_by_definition(&text, size),
                    "size {size}, text {text:?}"
                );
            }
        }
    }
}
