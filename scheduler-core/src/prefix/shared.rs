//! The approximate prefix index as every worker thread of a process uses it at once: split into
//! shards by block hash, each behind its own lock, so two workers recording or matching
//! different blocks do not wait for each other.
//!
//! Why: with one lock around the whole index, two threads that schedule nothing but requests
//! with new prompts ran *slower* together than one alone (the lock was held for most of each
//! cycle and changed hands on every request; `benches/shared_state.rs`, BENCHMARKS.md "The
//! prefix index in shards").
//!
//! - **Shards.** A block goes to shard `top bits of (hash ^ seed) × constant`: a prompt's
//!   blocks spread over every shard, and a client cannot aim its blocks at one shard without
//!   the seed. Each shard is a whole [`PrefixIndex`] (block table plus one LRU list per
//!   endpoint) keyed by the endpoint ids of this type's own map.
//! - **Capacity.** An endpoint's capacity is split evenly: each shard keeps at most
//!   `⌈capacity / shards⌉` of its blocks, least recently used out first. Since every prompt
//!   spreads over all shards, this is the endpoint's LRU up to which shard a block sits in; a
//!   block near the eviction age may go a little earlier or later than one list would evict it.
//!   To keep that difference small, a shard holds at least [`MIN_BLOCKS_PER_SHARD`] blocks per
//!   endpoint: below `2 × MIN_BLOCKS_PER_SHARD` there is one shard and the LRU is exact. Builds
//!   without `std` (the Wasm VM, one thread) always use one shard.
//! - **Matching** walks the prompt's blocks in order, as [`PrefixIndex::match_longest_prefix`]
//!   does, and locks each shard once, the first time one of its blocks comes up: it reads every
//!   block of that shard up to the first one nobody holds, and the walk stops at the first block
//!   nobody holds in any shard. The result is the one-index result for the shards' states at
//!   the moments each was read. Never two locks at once, so no lock order to keep.
//! - **Recording** groups the prompt's blocks by shard (each group in the prompt's order) and
//!   adds each group under its shard's lock, which keeps the one-index recency order within
//!   every shard (leading blocks most recent).
//! - **Endpoint ids** live in one map read by every request and written only when an endpoint
//!   first appears or leaves ([`crate::lock::ReadMostly`]). An endpoint that leaves the pool
//!   is dropped from every shard before its id is reused. A request recording blocks at the
//!   moment its endpoint leaves may leave those few blocks under the id, which the next new
//!   endpoint then inherits: at worst one prompt is steered once to a server that lacks it.

use alloc::string::String;
use alloc::vec::Vec;

use hashbrown::HashMap;
use smallvec::SmallVec;

use super::PrefixIndex;
use crate::lock::{Lock, ReadMostly};
use crate::scratch::Scratch;

/// Shards at most: 8 with `std` (threads share the index), 1 without.
pub const MAX_SHARDS: usize = if cfg!(feature = "std") { 8 } else { 1 };

/// Fewest blocks per endpoint a shard is given (see the module docs).
pub const MIN_BLOCKS_PER_SHARD: usize = 1024;

/// Blocks of one prompt kept on the stack while grouping or matching (GIE's default
/// `maxPrefixBlocksToMatch` is 256); longer chains spill to the heap.
const INLINE_BLOCKS: usize = 256;

/// Shards for endpoints holding `capacity` blocks each: the largest power of two up to
/// [`MAX_SHARDS`] that leaves every shard [`MIN_BLOCKS_PER_SHARD`] blocks, at least 1.
pub fn shards_for(capacity: usize) -> usize {
    let mut n = 1;
    while n * 2 <= MAX_SHARDS && capacity / (n * 2) >= MIN_BLOCKS_PER_SHARD {
        n *= 2;
    }
    n
}

/// Endpoint address → id, shared by every shard.
#[derive(Default)]
struct Ids {
    map: HashMap<String, u32>,
    /// Ids of endpoints that left, for the next new address.
    vacant: Vec<u32>,
    next: u32,
}

impl Ids {
    fn id_for(&mut self, address: &str) -> u32 {
        if let Some(&id) = self.map.get(address) {
            return id;
        }
        let id = self.vacant.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.map.insert(address.into(), id);
        id
    }
}

/// A prompt's block positions grouped by shard: group `s` is
/// `positions[start[s]..start[s + 1]]`, ascending.
#[derive(Default)]
struct ByShard {
    start: [usize; MAX_SHARDS + 1],
    positions: SmallVec<[u32; INLINE_BLOCKS]>,
}

impl ByShard {
    fn of(&self, shard: usize) -> Option<&[u32]> {
        let (&from, &to) = (self.start.get(shard)?, self.start.get(shard + 1)?);
        self.positions.get(from..to)
    }
}

/// See the module docs. Every method takes `&self`: the locks are inside.
pub struct SharedPrefixIndex {
    ids: ReadMostly<Ids>,
    shards: Vec<Lock<PrefixIndex>>,
    /// log2 of the shard count.
    shard_bits: u32,
    seed: u64,
}

impl SharedPrefixIndex {
    /// An empty index of `shards` shards (rounded down to a power of two, between 1 and
    /// [`MAX_SHARDS`]), each table seeded from the host's `entropy`
    /// ([`crate::plugin::Services::entropy`]).
    pub fn new(entropy: u64, shards: usize) -> Self {
        let shard_bits = shards.clamp(1, MAX_SHARDS).ilog2();
        let shards = (0..1usize << shard_bits)
            .map(|i| Lock::new(PrefixIndex::with_entropy(entropy ^ i as u64)))
            .collect();
        let mut rng = crate::rng::SplitMix64::new(entropy ^ 0x5348_4152_4453);
        SharedPrefixIndex {
            ids: ReadMostly::new(Ids::default()),
            shards,
            shard_bits,
            seed: crate::rng::Rng::next_u64(&mut rng),
        }
    }

    /// Number of shards (a power of two).
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    fn shard_of(&self, hash: u64) -> usize {
        if self.shard_bits == 0 {
            return 0;
        }
        let mixed = (hash ^ self.seed).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        (mixed >> (64 - self.shard_bits)) as usize
    }

    /// The id of `address`, if it holds or held blocks and has not left.
    pub fn endpoint_id(&self, address: &str) -> Option<u32> {
        self.ids.read().map.get(address).copied()
    }

    /// Ids of `addresses` in order (`None` for an address never recorded), under one read lock.
    pub fn endpoint_ids<'a>(
        &self,
        addresses: impl Iterator<Item = &'a str>,
        out: &mut Scratch<Option<u32>>,
    ) {
        out.clear();
        let ids = self.ids.read();
        out.extend(addresses.map(|a| ids.map.get(a).copied()));
    }

    /// The positions of `hashes` grouped by shard (counting sort), each group ascending.
    fn group(&self, hashes: &[u64], out: &mut ByShard) {
        out.start = [0; MAX_SHARDS + 1];
        for &h in hashes {
            if let Some(c) = out.start.get_mut(self.shard_of(h) + 1) {
                *c += 1;
            }
        }
        let mut sum = 0;
        for c in &mut out.start {
            sum += *c;
            *c = sum;
        }
        out.positions.clear();
        out.positions.resize(hashes.len(), 0);
        let mut fill = out.start;
        for (p, &h) in hashes.iter().enumerate() {
            if let Some(at) = fill.get_mut(self.shard_of(h)) {
                if let Some(slot) = out.positions.get_mut(*at) {
                    *slot = p as u32;
                }
                *at += 1;
            }
        }
    }

    /// Longest-prefix match, as [`PrefixIndex::match_longest_prefix`]: walks `hashes` in order,
    /// stops at the first hash no endpoint holds, and adds 1 to `counts[id]` for every holder of
    /// every hash before it. `counts` is cleared first and sized to the largest id seen. Returns
    /// how many leading hashes had at least one holder.
    pub fn match_longest_prefix(&self, hashes: &[u64], counts: &mut Scratch<u32>) -> usize {
        counts.clear();
        if let [only] = self.shards.as_slice() {
            return only.lock().match_longest_prefix(hashes, counts);
        }
        let mut groups = ByShard::default();
        self.group(hashes, &mut groups);
        // (block position, holder) of every block read; positions at or past the final limit
        // are dropped at the end.
        let mut held: SmallVec<[(u32, u32); INLINE_BLOCKS]> = SmallVec::new();
        let mut limit = hashes.len();
        let mut visited = 0u64;
        for (pos, &h) in hashes.iter().enumerate() {
            if pos >= limit {
                break;
            }
            let s = self.shard_of(h);
            if visited & (1 << s) != 0 {
                continue;
            }
            visited |= 1 << s;
            let (Some(lock), Some(group)) = (self.shards.get(s), groups.of(s)) else {
                continue;
            };
            let index = lock.lock();
            // The group starts at `pos`, the shard's first block.
            for &p in group {
                let Some(&h) = hashes.get(p as usize).filter(|_| (p as usize) < limit) else {
                    break;
                };
                if index.holders(h, |id| held.push((p, id))) == 0 {
                    limit = p as usize;
                    break;
                }
            }
        }
        for &(p, id) in &held {
            if (p as usize) < limit {
                let id = id as usize;
                if counts.len() <= id {
                    counts.resize(id + 1, 0);
                }
                if let Some(c) = counts.get_mut(id) {
                    *c += 1;
                }
            }
        }
        limit
    }

    /// Records that `address` holds every block of `hashes` (a prompt's chain, first block
    /// first), as [`PrefixIndex::add`]; `capacity` (blocks, at least 1) is the endpoint's whole
    /// capacity, split over the shards.
    pub fn add(&self, address: &str, hashes: &[u64], capacity: usize) {
        if hashes.is_empty() {
            return;
        }
        let known = self.ids.read().map.get(address).copied();
        let id = match known {
            Some(id) => id,
            None => self.ids.write().id_for(address),
        };
        if let [only] = self.shards.as_slice() {
            only.lock().add_for(id, hashes, capacity);
            return;
        }
        let per_shard = capacity.max(1).div_ceil(self.shards.len());
        let mut groups = ByShard::default();
        self.group(hashes, &mut groups);
        let mut chain: SmallVec<[u64; INLINE_BLOCKS]> = SmallVec::new();
        for (s, lock) in self.shards.iter().enumerate() {
            let Some(group) = groups.of(s).filter(|g| !g.is_empty()) else {
                continue;
            };
            chain.clear();
            chain.extend(group.iter().filter_map(|&p| hashes.get(p as usize).copied()));
            lock.lock().add_for(id, &chain, per_shard);
        }
    }

    /// Forgets every endpoint whose address is not in `addresses`: its blocks leave every shard,
    /// then its id is free for the next new endpoint.
    pub fn retain_endpoints<'a>(&self, addresses: impl Iterator<Item = &'a str> + Clone) {
        let mut ids = self.ids.write();
        let gone: Vec<String> = ids
            .map
            .keys()
            .filter(|known| !addresses.clone().any(|a| a == known.as_str()))
            .cloned()
            .collect();
        for address in gone {
            let Some(id) = ids.map.remove(&address) else {
                continue;
            };
            for shard in &self.shards {
                shard.lock().forget(id);
            }
            ids.vacant.push(id);
        }
    }

    /// Blocks tracked for `address`, over every shard.
    pub fn blocks_of(&self, address: &str) -> usize {
        let Some(id) = self.endpoint_id(address) else {
            return 0;
        };
        self.shards.iter().map(|s| s.lock().blocks_of_id(id)).sum()
    }

    /// Blocks held, summed over endpoints and shards.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// True when no block is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held by every shard ([`PrefixIndex::memory_bytes`]) and the id map (its keys,
    /// and per bucket an entry and a control byte).
    pub fn memory_bytes(&self) -> usize {
        let ids = self.ids.read();
        let map = ids.map.keys().map(String::capacity).sum::<usize>()
            + ids.map.capacity() * (core::mem::size_of::<(String, u32)>() + 1)
            + ids.vacant.capacity() * core::mem::size_of::<u32>();
        drop(ids);
        map + self
            .shards
            .iter()
            .map(|s| s.lock().memory_bytes())
            .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Rng, SplitMix64};
    use alloc::format;

    fn chain(rng: &mut SplitMix64, n: usize) -> Vec<u64> {
        (0..n).map(|_| rng.next_u64()).collect()
    }

    #[test]
    fn shard_count_leaves_each_shard_enough_blocks() {
        assert_eq!(shards_for(1), 1);
        assert_eq!(shards_for(2 * MIN_BLOCKS_PER_SHARD - 1), 1);
        if MAX_SHARDS >= 8 {
            assert_eq!(shards_for(2 * MIN_BLOCKS_PER_SHARD), 2);
            assert_eq!(shards_for(31_250), 8);
        }
        assert!(shards_for(usize::MAX) <= MAX_SHARDS);
    }

    /// With several shards, matching gives what one index gives for the same records (no
    /// eviction: capacity above everything recorded).
    #[test]
    fn sharded_match_equals_one_index() {
        let mut rng = SplitMix64::new(7);
        for shards in [1, 2, 8] {
            let shared = SharedPrefixIndex::new(11, shards);
            let mut one = PrefixIndex::new();
            let prompts: Vec<Vec<u64>> = (0..20).map(|_| chain(&mut rng, 40)).collect();
            for round in 0..300 {
                let p = &prompts[rng.next_u64() as usize % prompts.len()];
                // A prefix of a known prompt, sometimes with a new tail.
                let cut = 1 + rng.next_u64() as usize % p.len();
                let mut q = p[..cut].to_vec();
                if round % 3 == 0 {
                    q.extend(chain(&mut rng, 5));
                }
                let endpoint = format!("10.0.0.{}:8000", rng.next_u64() % 6);
                let (mut a, mut b) = (Scratch::new(), Scratch::new());
                let got = shared.match_longest_prefix(&q, &mut a);
                let want = one.match_longest_prefix(&q, &mut b);
                assert_eq!(got, want, "matched blocks, {shards} shards");
                for e in 0..6 {
                    let address = format!("10.0.0.{e}:8000");
                    let count = |c: &Scratch<u32>, id: Option<u32>| {
                        id.and_then(|i| c.get(i as usize).copied()).unwrap_or(0)
                    };
                    assert_eq!(
                        count(&a, shared.endpoint_id(&address)),
                        count(&b, one.endpoint_id(&address)),
                        "{address}, {shards} shards"
                    );
                }
                shared.add(&endpoint, &q, 1_000_000);
                one.add(&endpoint, &q, 1_000_000);
                assert_eq!(shared.blocks_of(&endpoint), one.blocks_of(&endpoint));
            }
            assert_eq!(shared.len(), one.len());
        }
    }

    /// Capacity is split over the shards: an endpoint never holds more than
    /// `shards × ⌈capacity / shards⌉` blocks, and a prompt just recorded is matched whole.
    #[test]
    fn capacity_is_split_over_shards() {
        let mut rng = SplitMix64::new(3);
        let shared = SharedPrefixIndex::new(5, 8);
        let cap = 8 * 64;
        for _ in 0..200 {
            let q = chain(&mut rng, 64);
            shared.add("a:1", &q, cap);
            assert!(shared.blocks_of("a:1") <= 8 * cap.div_ceil(8));
            let mut counts = Scratch::new();
            assert_eq!(shared.match_longest_prefix(&q, &mut counts), 64);
        }
        // Full by now: about the capacity, not far below it.
        assert!(shared.blocks_of("a:1") >= cap * 3 / 4, "{}", shared.blocks_of("a:1"));
    }

    #[test]
    fn a_departed_endpoint_leaves_every_shard_and_its_id_is_reused() {
        let mut rng = SplitMix64::new(9);
        let shared = SharedPrefixIndex::new(1, 8);
        let q = chain(&mut rng, 64);
        shared.add("a:1", &q, 10_000);
        shared.add("b:1", &q, 10_000);
        let a = shared.endpoint_id("a:1");
        let before = shared.memory_bytes();
        shared.retain_endpoints(["b:1"].into_iter());
        assert_eq!(shared.blocks_of("a:1"), 0);
        assert_eq!(shared.len(), 64);
        assert!(shared.memory_bytes() < before);
        shared.add("c:1", &q[..10], 10_000);
        assert_eq!(shared.endpoint_id("c:1"), a, "the id is reused");
        let mut counts = Scratch::new();
        assert_eq!(shared.match_longest_prefix(&q, &mut counts), 64);
        let c = shared.endpoint_id("c:1").map_or(0, |i| i as usize);
        assert_eq!(counts.get(c).copied(), Some(10), "c holds only what it was given");
    }

    /// Two threads recording and matching at once leave the index consistent: every endpoint's
    /// blocks within its capacity, every recorded prompt of the last round matched.
    #[cfg(feature = "std")]
    #[test]
    fn threads_share_one_index() {
        let shared = SharedPrefixIndex::new(2, 8);
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let shared = &shared;
                s.spawn(move || {
                    let mut rng = SplitMix64::new(100 + t);
                    for i in 0..500 {
                        let q = chain(&mut rng, 32);
                        let address = format!("10.0.{t}.{}:8000", i % 4);
                        shared.add(&address, &q, 4096);
                        let mut counts = Scratch::new();
                        assert_eq!(shared.match_longest_prefix(&q, &mut counts), 32);
                    }
                });
            }
        });
        for t in 0..2 {
            for e in 0..4 {
                assert!(shared.blocks_of(&format!("10.0.{t}.{e}:8000")) <= 4096);
            }
        }
    }
}
