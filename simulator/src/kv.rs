//! The KV cache: `num_gpu_blocks` blocks of `block_size` tokens with automatic prefix caching,
//! as vLLM's block pool does it (docs/SOURCES.md#step-model).
//!
//! A full prompt block has a hash (chained over the token blocks before it); cached blocks with
//! no user stay resident in an LRU and are reused by a later prompt with the same prefix, or
//! evicted (oldest first) when a new block is needed. Usage counts only blocks in use
//! (refcount > 0), as vLLM's `kv_cache_usage_perc` does.

use std::collections::{BTreeMap, HashMap};

/// Block pool with prefix cache.
pub struct BlockPool {
    total: u32,
    refcount: Vec<u32>,
    hash_of: Vec<Option<u64>>,
    never_used: Vec<u32>,
    by_hash: HashMap<u64, u32>,
    /// Evictable cached blocks: LRU order (stamp → block) and each block's stamp.
    lru: BTreeMap<u64, u32>,
    stamp_of: Vec<Option<u64>>,
    clock: u64,
    in_use: u32,
    /// Hashes of cached blocks evicted since the last [`Self::take_evicted`] (the
    /// `BlockRemoved` events of vLLM's KV-event stream).
    evicted: Vec<u64>,
}

impl BlockPool {
    /// A pool of `total` empty blocks.
    pub fn new(total: u32) -> Self {
        BlockPool {
            total,
            refcount: vec![0; total as usize],
            hash_of: vec![None; total as usize],
            never_used: (0..total).rev().collect(),
            by_hash: HashMap::new(),
            lru: BTreeMap::new(),
            stamp_of: vec![None; total as usize],
            clock: 0,
            in_use: 0,
            evicted: Vec::new(),
        }
    }

    /// Fraction of blocks in use (0..1).
    pub fn usage(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            f64::from(self.in_use) / f64::from(self.total)
        }
    }

    /// Blocks that could be handed out now (free + evictable).
    pub fn available(&self) -> u32 {
        self.total - self.in_use
    }

    /// Cached blocks of the longest prefix of `hashes` present in the pool (not yet acquired).
    pub fn lookup(&self, hashes: &[u64]) -> Vec<u32> {
        hashes
            .iter()
            .map_while(|h| self.by_hash.get(h).copied())
            .collect()
    }

    /// Takes a reference on `blocks` (from [`Self::lookup`]).
    pub fn acquire(&mut self, blocks: &[u32]) {
        for &b in blocks {
            let i = b as usize;
            if self.refcount[i] == 0 {
                if let Some(s) = self.stamp_of[i].take() {
                    self.lru.remove(&s);
                }
                self.in_use += 1;
            }
            self.refcount[i] += 1;
        }
    }

    /// `n` fresh blocks (evicting least recently used cached blocks), or `None` if fewer than `n`
    /// are available. The caller owns one reference on each.
    pub fn allocate(&mut self, n: u32) -> Option<Vec<u32>> {
        if n > self.available() {
            return None;
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let b = match self.never_used.pop() {
                Some(b) => b,
                None => {
                    let (&s, &b) = self.lru.iter().next()?;
                    self.lru.remove(&s);
                    self.stamp_of[b as usize] = None;
                    if let Some(h) = self.hash_of[b as usize].take() {
                        self.by_hash.remove(&h);
                        self.evicted.push(h);
                    }
                    b
                }
            };
            self.refcount[b as usize] = 1;
            self.in_use += 1;
            out.push(b);
        }
        Some(out)
    }

    /// Marks `block` as holding the prompt block with `hash` (so later prompts can reuse it);
    /// false when that hash was already cached (nothing new is stored).
    pub fn register(&mut self, block: u32, hash: u64) -> bool {
        if self.by_hash.contains_key(&hash) {
            return false;
        }
        self.hash_of[block as usize] = Some(hash);
        self.by_hash.insert(hash, block);
        true
    }

    /// Hashes evicted since the last call.
    pub fn take_evicted(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.evicted)
    }

    /// Drops every cached block no request uses (vLLM's `/reset_prefix_cache`); blocks in use
    /// keep their contents but are no longer found by hash.
    pub fn reset_prefix_cache(&mut self) {
        self.by_hash.clear();
        for (i, h) in self.hash_of.iter_mut().enumerate() {
            if h.take().is_some() && self.refcount[i] == 0 {
                self.never_used.push(i as u32);
            }
        }
        self.lru.clear();
        self.stamp_of.iter_mut().for_each(|s| *s = None);
        self.evicted.clear();
    }

    /// Drops one reference on each block; unreferenced hashed blocks stay cached (LRU), others
    /// become free. Blocks are released last first, as vLLM frees a request's blocks in reverse
    /// order so that a prompt's tail is evicted before its head (which keeps the prefix that
    /// later requests share usable for longer).
    pub fn release(&mut self, blocks: &[u32]) {
        for &b in blocks.iter().rev() {
            let i = b as usize;
            if self.refcount[i] == 0 {
                continue;
            }
            self.refcount[i] -= 1;
            if self.refcount[i] == 0 {
                self.in_use -= 1;
                if self.hash_of[i].is_some() {
                    self.clock += 1;
                    self.lru.insert(self.clock, b);
                    self.stamp_of[i] = Some(self.clock);
                } else {
                    self.never_used.push(b);
                }
            }
        }
    }
}

/// Chained block hashes of `tokens` (full blocks only), seeded with the model (or adapter) name.
/// A request's `cache_salt` is mixed into its first block only, as vLLM does (the chain carries
/// it to every later block), so salted and unsalted requests never share a cached block.
pub fn block_hashes(
    model: &str,
    salt: Option<&str>,
    tokens: &[u32],
    block_size: usize,
) -> Vec<u64> {
    let mut prev = xxhash_rust::xxh64::xxh64(model.as_bytes(), 0);
    tokens
        .chunks_exact(block_size.max(1))
        .enumerate()
        .map(|(i, block)| {
            let mut h = xxhash_rust::xxh64::Xxh64::new(prev);
            for t in block {
                h.update(&t.to_le_bytes());
            }
            if let (0, Some(salt)) = (i, salt) {
                h.update(&[0xfe]);
                h.update(salt.as_bytes());
            }
            prev = h.digest();
            prev
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_reuse_and_lru_eviction() {
        let mut p = BlockPool::new(4);
        let a = p.allocate(2).unwrap();
        p.register(a[0], 10);
        p.register(a[1], 11);
        p.release(&a);
        assert_eq!(p.usage(), 0.0, "cached blocks are not in use");
        assert_eq!(p.lookup(&[10, 11, 12]), a, "longest cached prefix");
        let b = p.allocate(3).unwrap(); // 2 never used + evict the oldest cached (11, the tail)
        assert_eq!(b.len(), 3);
        assert_eq!(
            p.lookup(&[10, 11]),
            vec![a[0]],
            "the tail went first, the head stays"
        );
        assert!(p.lookup(&[11]).is_empty());
        assert!(p.allocate(2).is_none(), "only one block left");
    }

    #[test]
    fn hashes_chain_and_depend_on_model() {
        let t: Vec<u32> = (0..40).collect();
        let a = block_hashes("m", None, &t, 16);
        assert_eq!(a.len(), 2, "partial tail block is not hashed");
        let mut t2 = t.clone();
        t2[20] = 999;
        let b = block_hashes("m", None, &t2, 16);
        assert_eq!(a[0], b[0]);
        assert_ne!(a[1], b[1]);
        assert_ne!(block_hashes("lora", None, &t, 16)[0], a[0]);
        let salted = block_hashes("m", Some("tenant-a"), &t, 16);
        assert!(
            salted[0] != a[0] && salted[1] != a[1],
            "the salt reaches every block"
        );
        assert_ne!(block_hashes("m", Some("tenant-b"), &t, 16)[1], salted[1]);
    }
}
