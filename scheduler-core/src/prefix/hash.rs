//! Prompt → chain of block hashes.
//!
//! Algorithm (GIE `approximateprefix/hashing.go` at GIE@1748e829, docs/SOURCES.md#gie-prefix):
//! 1. Text shorter than one block gives no hashes (total 0, every prefix score 0).
//! 2. The text is cut to `max_blocks × block_chars` bytes.
//! 3. The chain seed is `xxh64(target_model ‖ cache_salt)` with seed 0. It is not a block; it
//!    scopes matches to the model.
//! 4. Block `i` hashes to `xxh64(block bytes ‖ previous hash as 8 bytes little-endian)`.
//! 5. A trailing partial block is hashed the same way and counted ("aaaaaa" with 4-char blocks
//!    gives 2 hashes).

use alloc::vec::Vec;
use xxhash_rust::xxh64::{xxh64, Xxh64};

/// Appends the block-hash chain of `text` to `out` (cleared first).
///
/// `block_chars` is the block size in bytes (tokens × 4); `max_blocks` caps the number of
/// blocks. A `block_chars` of 0 produces nothing.
pub fn prefix_hashes(
    target_model: &str,
    cache_salt: Option<&str>,
    text: &[u8],
    block_chars: usize,
    max_blocks: usize,
    out: &mut Vec<u64>,
) {
    out.clear();
    if block_chars == 0 || max_blocks == 0 || text.len() < block_chars {
        return;
    }
    let limit = max_blocks.saturating_mul(block_chars).min(text.len());
    let text = text.get(..limit).unwrap_or(text);

    let mut seed = Xxh64::new(0);
    seed.update(target_model.as_bytes());
    if let Some(salt) = cache_salt {
        seed.update(salt.as_bytes());
    }
    let mut prev = seed.digest();

    out.reserve(text.len().div_ceil(block_chars));
    // One-shot xxh64 over `block ‖ prev` in a reused buffer: the same value as the streaming
    // hasher, without its per-block state setup and internal buffering (a 4 KiB prompt is 64
    // blocks; the streaming form cost ~3× more here).
    let mut buf: Vec<u8> = Vec::with_capacity(block_chars + 8);
    for block in text.chunks(block_chars) {
        buf.clear();
        buf.extend_from_slice(block);
        buf.extend_from_slice(&prev.to_le_bytes());
        prev = xxh64(&buf, 0);
        out.push(prev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_block_is_xxh64_of_block_then_previous_hash() {
        let mut out = Vec::new();
        prefix_hashes("m", Some("s"), b"aaaabbbbcc", 4, 256, &mut out);
        let mut seed = Xxh64::new(0);
        seed.update(b"m");
        seed.update(b"s");
        let mut prev = seed.digest();
        for (i, block) in [&b"aaaa"[..], b"bbbb", b"cc"].iter().enumerate() {
            let mut h = Xxh64::new(0);
            h.update(block);
            h.update(&prev.to_le_bytes());
            prev = h.digest();
            assert_eq!(out[i], prev, "block {i}");
        }
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn shorter_than_a_block_gives_nothing() {
        let mut out = Vec::new();
        prefix_hashes("m", None, b"abc", 4, 256, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn partial_tail_block_counts() {
        // GIE TestPrefixPluginCompletion: "aaaaaa" with blockSizeTokens 1 (4 chars) → 2 hashes.
        let mut out = Vec::new();
        prefix_hashes("test-model", None, b"aaaaaa", 4, 256, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn chain_is_prefix_stable_and_model_scoped() {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        prefix_hashes("m", None, b"aaaabbbbcccc", 4, 256, &mut a);
        prefix_hashes("m", None, b"aaaabbbbdddd", 4, 256, &mut b);
        prefix_hashes("other", None, b"aaaabbbbcccc", 4, 256, &mut c);
        assert_eq!(a[..2], b[..2]);
        assert_ne!(a[2], b[2]);
        assert_ne!(a[0], c[0], "the model seeds the chain");
    }

    #[test]
    fn cache_salt_changes_chain_and_cap_truncates() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        prefix_hashes("m", None, b"aaaabbbb", 4, 256, &mut a);
        prefix_hashes("m", Some("s"), b"aaaabbbb", 4, 256, &mut b);
        assert_ne!(a, b);
        prefix_hashes("m", None, b"aaaabbbbccccdddd", 4, 2, &mut a);
        assert_eq!(a.len(), 2);
    }
}
