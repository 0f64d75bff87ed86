//! Request keys: the block-hash chain the picker computes from a prompt's token ids, on both
//! sides of the precise prefix cache (the request being scheduled, and the `token_ids` a model
//! server reports in its `BlockStored` events).
//!
//! Why our own keys and not the server's block hashes: vLLM hashes blocks with its configured
//! `prefix_caching_hash_algo` (Python's builtin hash, SHA-256 over pickle or CBOR), which a proxy
//! cannot reproduce cheaply or exactly. Its events carry the token ids of every stored block, so
//! the picker re-hashes those tokens with the same function it applies to requests, and keeps
//! the server's hashes only as opaque names for later `BlockRemoved` events. llm-d-kv-cache does
//! the same (its "request keys" vs "engine keys"; FNV-64a over CBOR there): the block size and
//! seed here need not match the server's, only the token ids must.
//!
//! The chain: `k[-1] = xxh3_64(seed ‖ 0xff ‖ adapter ‖ (0xfe ‖ len ‖ extra)…)`,
//! `k[i] = xxh3_64_with_seed(tokens of block i as u32 little-endian, k[i-1])`. Only full blocks
//! are hashed (a server caches full blocks only). `adapter` is the LoRA adapter name, empty for
//! the base model, so blocks of different adapters never match. The extras are the request's
//! `cache_salt` (none without one): vLLM mixes the salt into the hash of a request's first
//! block only, and every later block inherits it through the chain, so salting the root here
//! partitions the keys the same way: a salted prefix matches only the same salt. (`0xff` and
//! `0xfe` never occur in UTF-8, so adapter and extras cannot run into each other; `len` is the
//! extra's byte length as a little-endian u32.)

use alloc::vec::Vec;

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Tokens per block when a config sets none (vLLM's default block size).
pub const DEFAULT_BLOCK_SIZE_TOKENS: usize = 16;

/// Computes request keys for one block size and hash seed.
#[derive(Clone, Debug)]
pub struct RequestKeys {
    block_size: usize,
    seed: Vec<u8>,
}

impl RequestKeys {
    /// Keys over blocks of `block_size` tokens (0 is taken as
    /// [`DEFAULT_BLOCK_SIZE_TOKENS`]), seeded with `hash_seed` (llm-d's `hashSeed`; any string).
    pub fn new(block_size: usize, hash_seed: &str) -> Self {
        RequestKeys {
            block_size: if block_size == 0 {
                DEFAULT_BLOCK_SIZE_TOKENS
            } else {
                block_size
            },
            seed: hash_seed.as_bytes().to_vec(),
        }
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The key every unsalted chain of `adapter` starts from (its "parent" when a block has
    /// none).
    pub fn root(&self, adapter: &str) -> u64 {
        self.root_with(adapter, &[] as &[&str])
    }

    /// The key a chain of `adapter` starts from when its first block carries `extras` (a
    /// request's `cache_salt`; the text extras of a `BlockStored` event's first block,
    /// [`super::events::StoredExtras::root`]). No extras: [`Self::root`].
    pub fn root_with<S: AsRef<str>>(&self, adapter: &str, extras: &[S]) -> u64 {
        let extra_len: usize = extras.iter().map(|e| e.as_ref().len() + 5).sum();
        let mut buf = Vec::with_capacity(self.seed.len() + 1 + adapter.len() + extra_len);
        buf.extend_from_slice(&self.seed);
        buf.push(0xff);
        buf.extend_from_slice(adapter.as_bytes());
        for e in extras {
            let e = e.as_ref().as_bytes();
            buf.push(0xfe);
            buf.extend_from_slice(&(e.len() as u32).to_le_bytes());
            buf.extend_from_slice(e);
        }
        xxh3_64(&buf)
    }

    /// Appends the keys of the full blocks of `tokens`, chained from `parent`, to `out`; at most
    /// `max_blocks` keys (0 = no cap). Returns how many were appended.
    ///
    /// Runs once per stretch of every scheduled prompt: blocks of up to
    /// [`STACK_BLOCK_TOKENS`] tokens are laid out in a stack buffer (no allocation), larger
    /// ones in one buffer per call.
    pub fn extend(
        &self,
        parent: u64,
        tokens: &[u32],
        max_blocks: usize,
        out: &mut Vec<u64>,
    ) -> usize {
        let full = tokens.len() / self.block_size;
        let n = if max_blocks == 0 {
            full
        } else {
            full.min(max_blocks)
        };
        if n == 0 {
            // Also keeps a configured block far larger than any prompt from sizing a buffer.
            return 0;
        }
        out.reserve(n);
        let blocks = tokens.chunks_exact(self.block_size).take(n);
        let mut stack = [0u8; STACK_BLOCK_TOKENS * 4];
        let mut heap = Vec::new();
        // At least one full block exists, so this is at most 4 bytes per token of `tokens`.
        let len = self.block_size.saturating_mul(4);
        let bytes: &mut [u8] = match stack.get_mut(..len) {
            Some(b) => b,
            None => {
                heap.resize(len, 0);
                &mut heap
            }
        };
        let mut prev = parent;
        for block in blocks {
            // Little-endian u32s; on a little-endian target this compiles to a copy.
            for (dst, t) in bytes.chunks_exact_mut(4).zip(block) {
                dst.copy_from_slice(&t.to_le_bytes());
            }
            prev = xxh3_64_with_seed(bytes, prev);
            out.push(prev);
        }
        n
    }
}

/// The largest block (tokens) whose bytes [`RequestKeys::extend`] lays out on the stack (512
/// bytes, zeroed per call): vLLM's largest common block size.
pub const STACK_BLOCK_TOKENS: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_full_blocks_are_keyed_and_the_chain_depends_on_everything_before() {
        let k = RequestKeys::new(4, "42");
        let mut a = Vec::new();
        assert_eq!(
            k.extend(k.root(""), &[1, 2, 3, 4, 5, 6, 7, 8, 9], 0, &mut a),
            2
        );
        let mut b = Vec::new();
        k.extend(k.root(""), &[1, 2, 3, 4], 0, &mut b);
        assert_eq!(a[0], b[0], "same first block, same key");
        // Continuing from the first key gives the second: events that carry a parent hash
        // and the request side agree.
        let mut c = Vec::new();
        k.extend(a[0], &[5, 6, 7, 8], 0, &mut c);
        assert_eq!(c, [a[1]]);
        let mut d = Vec::new();
        k.extend(k.root(""), &[9, 2, 3, 4, 5, 6, 7, 8], 0, &mut d);
        assert_ne!(
            d[1], a[1],
            "a different first block changes every later key"
        );
    }

    #[test]
    fn keys_are_the_chained_hashes_of_little_endian_blocks_on_the_stack_or_not() {
        // The documented chain, computed the slow way, for a block that fits the stack buffer
        // and one that does not.
        for bs in [16, STACK_BLOCK_TOKENS + 44] {
            let k = RequestKeys::new(bs, "s");
            let tokens: Vec<u32> = (0..(bs * 3 + 5) as u32)
                .map(|t| t.wrapping_mul(2_654_435_761))
                .collect();
            let mut got = Vec::new();
            assert_eq!(k.extend(k.root(""), &tokens, 0, &mut got), 3);
            let mut want = Vec::new();
            let mut prev = k.root("");
            for block in tokens.chunks_exact(bs) {
                let bytes: Vec<u8> = block.iter().flat_map(|t| t.to_le_bytes()).collect();
                prev = xxh3_64_with_seed(&bytes, prev);
                want.push(prev);
            }
            assert_eq!(got, want, "block size {bs}");
        }
    }

    #[test]
    fn a_block_larger_than_the_prompt_gives_no_keys_and_sizes_nothing() {
        // blockSizeTokens has no upper bound in the config: a huge one must not make every
        // request size a buffer for one block.
        let k = RequestKeys::new(usize::MAX / 2, "");
        let mut out = Vec::new();
        assert_eq!(k.extend(k.root(""), &[1, 2, 3], 0, &mut out), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn adapters_and_seeds_separate_chains_and_caps_apply() {
        let k = RequestKeys::new(2, "");
        assert_ne!(k.root(""), k.root("sql-lora"));
        assert_eq!(k.root("sql-lora"), k.root_with("sql-lora", &[] as &[&str]));
        assert_ne!(k.root(""), k.root_with("", &["tenant-a"]));
        assert_ne!(
            k.root_with("", &["tenant-a"]),
            k.root_with("", &["tenant-b"])
        );
        // Boundaries are part of the key: one extra "ab" is not "a" then "b", nor adapter "ab".
        assert_ne!(k.root_with("", &["ab"]), k.root_with("", &["a", "b"]));
        assert_ne!(k.root_with("", &["ab"]), k.root("ab"));
        assert_ne!(
            RequestKeys::new(2, "1").root(""),
            RequestKeys::new(2, "2").root("")
        );
        let mut out = Vec::new();
        assert_eq!(k.extend(0, &[1; 10], 3, &mut out), 3);
        assert_eq!(
            RequestKeys::new(0, "").block_size(),
            DEFAULT_BLOCK_SIZE_TOKENS
        );
    }
}
