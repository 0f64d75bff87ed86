//! The precise prefix-cache index: which endpoint holds which KV block, as the model servers'
//! own events report it (llm-d-kv-cache's `kvblock.Index`, rebuilt for a proxy).
//!
//! - `request key → holders`: the [`super::keys`] chain key of a block, and every endpoint that
//!   holds it with the medium it is in (GPU, CPU…) and, for a speculative entry, when it expires.
//!   Sharded 16 ways by key, one lock each, so the scheduling workers and the event subscriber
//!   rarely meet on a lock.
//! - per endpoint, `engine key → request key`: the server's own block hash, kept only so a later
//!   `BlockRemoved` (which names engine hashes) and a `BlockStored` whose parent is an earlier
//!   block can be resolved.
//!
//! Bounded: at most `max_keys` request keys (first in, first out once full; a server's own
//! `BlockRemoved` normally keeps it well below) and `max_keys` engine keys per endpoint, and at
//! most `max_holders` endpoints per key (llm-d's `podCacheSize`); the insertion-order queues
//! are compacted as keys are removed, so memory follows what is held, not what was ever held.
//! Memory is reported by [`KvBlockIndex::stats`].
//!
//! Scoring is llm-d's "longest prefix" strategy: an endpoint scores the sum of its medium
//! weights over the leading keys it holds without a gap (GPU 1.0 and CPU 0.8 by default, the
//! `kvBlockScorerConfig.backendConfigs` defaults of llm-d-kv-cache).

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use hashbrown::HashMap;

use super::events::{KvEvent, StoredExtras};
use super::keys::RequestKeys;
use crate::lock::Lock;

const SHARDS: usize = 16;

/// Drops from a first-in-first-out `order` the keys `live` no longer holds and repeated keys
/// (keeping each key's latest place), once it is more than twice as long as the live set plus
/// 64: removals do not touch the queue, so without this it would grow with every key ever
/// inserted. Amortised O(1) per insertion.
fn compact(order: &mut VecDeque<u64>, live_len: usize, live: impl Fn(&u64) -> bool) {
    if order.len() <= 2 * live_len + 64 {
        return;
    }
    let mut seen = hashbrown::HashSet::with_capacity(live_len);
    let mut kept: VecDeque<u64> = VecDeque::with_capacity(live_len);
    for &k in order.iter().rev() {
        if live(&k) && seen.insert(k) {
            kept.push_front(k);
        }
    }
    *order = kept;
}

/// Default cap on request keys (≈ 4 M tokens at 16 tokens per block; ~64 MiB at most).
pub const DEFAULT_MAX_KEYS: usize = 262_144;
/// Default cap on endpoints remembered per key (llm-d's `podCacheSize`).
pub const DEFAULT_MAX_HOLDERS: usize = 10;

/// Medium weights for scoring: `(medium name, weight)`; a medium not listed weighs 1.0.
pub type MediumWeights = Vec<(String, f64)>;

/// llm-d-kv-cache's default medium weights: `gpu` 1.0, `cpu` 0.8.
pub fn default_medium_weights() -> MediumWeights {
    alloc::vec![("gpu".into(), 1.0), ("cpu".into(), 0.8)]
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Holder {
    endpoint: u32,
    medium: u16,
    /// 0 for a block the server reported; else when this speculative entry expires (ms).
    expires_ms: u64,
}

#[derive(Default)]
struct Shard {
    blocks: HashMap<u64, Vec<Holder>>,
    order: VecDeque<u64>,
}

#[derive(Default)]
struct EndpointBlocks {
    address: String,
    engine: HashMap<u64, u64>,
    order: VecDeque<u64>,
}

#[derive(Default)]
struct Directory {
    /// Endpoint slots; a slot whose address is empty is free.
    endpoints: Vec<EndpointBlocks>,
    /// Medium names; index = medium id.
    media: Vec<String>,
    /// LoRA adapter names seen in events.
    adapters: Vec<String>,
}

impl Directory {
    fn id_of(&self, address: &str) -> Option<u32> {
        self.endpoints
            .iter()
            .position(|e| e.address == address)
            .and_then(|i| u32::try_from(i).ok())
    }

    fn id_or_insert(&mut self, address: &str) -> Option<u32> {
        if let Some(id) = self.id_of(address) {
            return Some(id);
        }
        let slot = match self.endpoints.iter().position(|e| e.address.is_empty()) {
            Some(i) => i,
            None => {
                self.endpoints.push(EndpointBlocks::default());
                self.endpoints.len() - 1
            }
        };
        let e = self.endpoints.get_mut(slot)?;
        e.address = address.into();
        u32::try_from(slot).ok()
    }

    fn medium_id(&mut self, medium: Option<&str>) -> u16 {
        let name = medium.map_or("gpu", |m| if m.is_empty() { "gpu" } else { m });
        if let Some(i) = self.media.iter().position(|m| m.eq_ignore_ascii_case(name)) {
            return u16::try_from(i).unwrap_or(0);
        }
        if self.media.len() >= usize::from(u16::MAX) {
            return 0;
        }
        self.media.push(name.to_ascii_lowercase());
        u16::try_from(self.media.len() - 1).unwrap_or(0)
    }
}

/// What one endpoint holds of a request's key chain.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Match {
    /// Sum of medium weights over the leading keys held without a gap (llm-d's score).
    pub weighted: f64,
    /// Leading keys held without a gap.
    pub blocks: u32,
}

/// A lookup in progress ([`KvBlockIndex::start_lookup`]).
#[derive(Clone, Debug)]
pub struct LookupRun {
    /// Index ids of the endpoints asked about (`None`: unknown to the index).
    ids: Vec<Option<u32>>,
    /// Weight per medium id.
    weights: Vec<f64>,
    /// Endpoints whose match is still running.
    active: Vec<usize>,
    /// Per endpoint asked about, in their order.
    pub matches: Vec<Match>,
}

/// Size of the index, for the stats and the soak test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Request keys held.
    pub keys: usize,
    /// (key, endpoint) entries.
    pub holders: usize,
    /// Engine-key mappings over all endpoints.
    pub engine_keys: usize,
    /// Endpoints with state.
    pub endpoints: usize,
    /// Approximate heap bytes of all of the above.
    pub approx_bytes: usize,
}

/// What applying one event batch did (for the subscriber's counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Blocks added.
    pub stored: usize,
    /// Blocks removed.
    pub removed: usize,
    /// `BlockStored` events skipped because their parent block is unknown here.
    pub orphans: usize,
    /// `AllBlocksCleared` events.
    pub cleared: usize,
}

/// See the module docs. Shared by every worker (all methods take `&self`).
pub struct KvBlockIndex {
    keys: RequestKeys,
    max_keys_per_shard: usize,
    max_engine_keys: usize,
    max_holders: usize,
    weights: MediumWeights,
    shards: Vec<Lock<Shard>>,
    dir: Lock<Directory>,
}

impl KvBlockIndex {
    /// An empty index hashing with `keys`, holding at most `max_keys` request keys (≥ 16) and
    /// `max_holders` endpoints per key (≥ 1), scoring media with `weights`.
    pub fn new(
        keys: RequestKeys,
        max_keys: usize,
        max_holders: usize,
        weights: MediumWeights,
    ) -> Self {
        KvBlockIndex {
            keys,
            max_keys_per_shard: (max_keys / SHARDS).max(1),
            max_engine_keys: max_keys.max(SHARDS),
            max_holders: max_holders.max(1),
            weights,
            shards: (0..SHARDS).map(|_| Lock::new(Shard::default())).collect(),
            dir: Lock::new(Directory::default()),
        }
    }

    /// The key function.
    pub fn request_keys(&self) -> &RequestKeys {
        &self.keys
    }

    fn shard(&self, key: u64) -> Option<&Lock<Shard>> {
        // Keys are hashes: the top bits are as good as any.
        self.shards.get((key >> 60) as usize % SHARDS)
    }

    /// The adapter name keys of a request for `target_model` are seeded with: the model itself
    /// when a server has reported blocks of a LoRA adapter by that name, else "" (the base
    /// model, whatever name the client used for it).
    pub fn adapter_for<'m>(&self, target_model: &'m str) -> &'m str {
        if self.dir.lock().adapters.iter().any(|a| a == target_model) {
            target_model
        } else {
            ""
        }
    }

    /// Applies one batch of events reported by the server at `endpoint` (`ip:port`, the address
    /// requests are routed to).
    pub fn apply(&self, endpoint: &str, events: &[KvEvent]) -> Applied {
        let mut applied = Applied::default();
        for ev in events {
            match ev {
                KvEvent::BlockStored {
                    block_hashes,
                    parent,
                    token_ids,
                    block_size,
                    lora_name,
                    medium,
                    extras,
                } => match self.stored(
                    endpoint,
                    block_hashes,
                    *parent,
                    token_ids,
                    *block_size,
                    lora_name.as_deref(),
                    medium.as_deref(),
                    extras,
                ) {
                    Some(n) => applied.stored += n,
                    None => applied.orphans += 1,
                },
                KvEvent::BlockRemoved {
                    block_hashes,
                    medium,
                } => applied.removed += self.removed(endpoint, block_hashes, medium.as_deref()),
                KvEvent::AllBlocksCleared => {
                    self.clear_endpoint(endpoint, false);
                    applied.cleared += 1;
                }
            }
        }
        applied
    }

    /// `None` when the parent is unknown (the event is skipped, as llm-d does).
    #[allow(clippy::too_many_arguments)]
    fn stored(
        &self,
        endpoint: &str,
        engine_keys: &[u64],
        parent: Option<u64>,
        tokens: &[u32],
        engine_block_size: u32,
        lora_name: Option<&str>,
        medium: Option<&str>,
        extras: &StoredExtras,
    ) -> Option<usize> {
        let adapter = lora_name.unwrap_or("");
        // Blocks carrying images or embeddings cannot be keyed from a request: index the
        // blocks before them only (a later event continuing from one of them is an orphan).
        let ebs = (engine_block_size as usize).max(1);
        let (engine_keys, tokens) = match extras.keyable_blocks {
            Some(n) => (
                engine_keys.get(..n).unwrap_or(engine_keys),
                tokens.get(..n.saturating_mul(ebs)).unwrap_or(tokens),
            ),
            None => (engine_keys, tokens),
        };
        if extras.keyable_blocks == Some(0) {
            return Some(0);
        }
        let (id, medium, parent_key) = {
            let mut dir = self.dir.lock();
            if !adapter.is_empty()
                && !dir.adapters.iter().any(|a| a == adapter)
                && dir.adapters.len() < 1024
            {
                dir.adapters.push(adapter.into());
            }
            let medium = dir.medium_id(medium);
            let id = dir.id_or_insert(endpoint)?;
            let parent_key = match parent {
                None => self.keys.root_with(adapter, &extras.root),
                Some(p) => *dir.endpoints.get(id as usize)?.engine.get(&p)?,
            };
            (id, medium, parent_key)
        };
        let mut request_keys = Vec::with_capacity(tokens.len() / self.keys.block_size() + 1);
        self.keys.extend(parent_key, tokens, 0, &mut request_keys);
        for &k in &request_keys {
            self.insert(
                k,
                Holder {
                    endpoint: id,
                    medium,
                    expires_ms: 0,
                },
            );
        }
        // Engine keys → request keys: block i of the server ends at token (i+1)·ebs; it maps to
        // the request block that token completes (1:1 when both block sizes agree).
        let bs = self.keys.block_size();
        let mut dir = self.dir.lock();
        let max_engine = self.max_engine_keys;
        if let Some(e) = dir.endpoints.get_mut(id as usize) {
            if e.address == endpoint {
                for (i, &ek) in engine_keys.iter().enumerate() {
                    let end = (i + 1) * ebs;
                    let Some(&rk) = request_keys.get((end - 1) / bs) else {
                        continue;
                    };
                    if e.engine.insert(ek, rk).is_none() {
                        e.order.push_back(ek);
                        let EndpointBlocks { engine, order, .. } = e;
                        compact(order, engine.len(), |k| engine.contains_key(k));
                    }
                    while e.engine.len() > max_engine {
                        match e.order.pop_front() {
                            Some(old) => {
                                e.engine.remove(&old);
                            }
                            None => break,
                        }
                    }
                }
            }
        }
        Some(request_keys.len())
    }

    fn insert(&self, key: u64, holder: Holder) {
        let Some(shard) = self.shard(key) else { return };
        let mut s = shard.lock();
        let max = self.max_keys_per_shard;
        let new_key = !s.blocks.contains_key(&key);
        if new_key {
            while s.blocks.len() >= max {
                match s.order.pop_front() {
                    Some(old) => {
                        s.blocks.remove(&old);
                    }
                    None => break,
                }
            }
            s.order.push_back(key);
            let Shard { blocks, order } = &mut *s;
            compact(order, blocks.len(), |k| blocks.contains_key(k));
        }
        let holders = s.blocks.entry(key).or_default();
        if let Some(h) = holders
            .iter_mut()
            .find(|h| h.endpoint == holder.endpoint && h.medium == holder.medium)
        {
            // A reported block replaces a speculative one; a speculative one never
            // downgrades a reported one.
            if h.expires_ms != 0 {
                h.expires_ms = holder.expires_ms;
            }
            return;
        }
        if holders.len() >= self.max_holders {
            holders.remove(0);
        }
        holders.push(holder);
    }

    fn removed(&self, endpoint: &str, engine_keys: &[u64], medium: Option<&str>) -> usize {
        let (id, medium, keys) = {
            let mut dir = self.dir.lock();
            let medium = dir.medium_id(medium);
            let Some(id) = dir.id_of(endpoint) else {
                return 0;
            };
            let Some(e) = dir.endpoints.get_mut(id as usize) else {
                return 0;
            };
            let keys: Vec<u64> = engine_keys
                .iter()
                .filter_map(|ek| e.engine.remove(ek))
                .collect();
            (id, medium, keys)
        };
        let mut n = 0;
        for k in keys {
            let Some(shard) = self.shard(k) else { continue };
            let mut s = shard.lock();
            if let Some(holders) = s.blocks.get_mut(&k) {
                let before = holders.len();
                holders.retain(|h| !(h.endpoint == id && h.medium == medium));
                n += before - holders.len();
                if holders.is_empty() {
                    s.blocks.remove(&k);
                }
            }
        }
        n
    }

    /// Forgets every block of `endpoint` (an `AllBlocksCleared` event); with `forget` also the
    /// endpoint itself (it left the pool).
    pub fn clear_endpoint(&self, endpoint: &str, forget: bool) {
        let id = {
            let mut dir = self.dir.lock();
            let Some(id) = dir.id_of(endpoint) else {
                return;
            };
            if let Some(e) = dir.endpoints.get_mut(id as usize) {
                e.engine = HashMap::new();
                e.order = VecDeque::new();
                if forget {
                    e.address.clear();
                }
            }
            id
        };
        // Speculative entries have no engine key, so sweep every shard.
        for shard in &self.shards {
            let mut s = shard.lock();
            s.blocks.retain(|_, holders| {
                holders.retain(|h| h.endpoint != id);
                !holders.is_empty()
            });
        }
    }

    /// Keeps only the endpoints in `addresses` (the pool's members).
    pub fn retain_endpoints(&self, addresses: &[&str]) {
        let gone: Vec<String> = {
            let dir = self.dir.lock();
            dir.endpoints
                .iter()
                .filter(|e| !e.address.is_empty() && !addresses.contains(&e.address.as_str()))
                .map(|e| e.address.clone())
                .collect()
        };
        for a in gone {
            self.clear_endpoint(&a, true);
        }
    }

    /// Records that `endpoint` is about to receive a request with `keys`: the blocks count as
    /// held (medium `gpu`) until `expires_ms`, unless the server reports them first (llm-d's
    /// speculative indexing).
    pub fn speculate(&self, endpoint: &str, keys: &[u64], expires_ms: u64) {
        let (id, medium) = {
            let mut dir = self.dir.lock();
            let medium = dir.medium_id(None);
            let Some(id) = dir.id_or_insert(endpoint) else {
                return;
            };
            (id, medium)
        };
        for &k in keys {
            self.insert(
                k,
                Holder {
                    endpoint: id,
                    medium,
                    expires_ms: expires_ms.max(1),
                },
            );
        }
    }

    /// Starts a lookup for `endpoints`: what each holds of the keys fed to
    /// [`Self::extend_lookup`] as they are computed (longest prefix without a gap), read from
    /// [`LookupRun::matches`].
    pub fn start_lookup(&self, endpoints: &[&str]) -> LookupRun {
        let dir = self.dir.lock();
        let ids: Vec<Option<u32>> = endpoints.iter().map(|a| dir.id_of(a)).collect();
        let weights = dir
            .media
            .iter()
            .map(|m| {
                self.weights
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(m))
                    .map_or(1.0, |(_, w)| *w)
            })
            .collect();
        let active = (0..endpoints.len())
            .filter(|&i| ids.get(i).is_some_and(Option::is_some))
            .collect();
        LookupRun {
            ids,
            weights,
            active,
            matches: alloc::vec![Match::default(); endpoints.len()],
        }
    }

    /// Feeds the next `keys` (in order) to `run`. Returns `true` while some endpoint still
    /// holds every key fed so far (a longer prompt could match further).
    pub fn extend_lookup(&self, run: &mut LookupRun, keys: &[u64], now_ms: u64) -> bool {
        let LookupRun {
            ids,
            weights,
            active,
            matches,
        } = run;
        for &k in keys {
            if active.is_empty() {
                break;
            }
            let Some(shard) = self.shard(k) else {
                active.clear();
                break;
            };
            let s = shard.lock();
            let holders = s.blocks.get(&k).map_or(&[][..], Vec::as_slice);
            active.retain(|&i| {
                let Some(Some(id)) = ids.get(i) else {
                    return false;
                };
                let w = holders
                    .iter()
                    .filter(|h| h.endpoint == *id && (h.expires_ms == 0 || h.expires_ms > now_ms))
                    .map(|h| weights.get(usize::from(h.medium)).copied().unwrap_or(1.0))
                    .fold(0.0_f64, f64::max);
                if w <= 0.0 {
                    return false;
                }
                if let Some(m) = matches.get_mut(i) {
                    m.weighted += w;
                    m.blocks += 1;
                }
                true
            });
        }
        !active.is_empty()
    }

    /// Current size.
    pub fn stats(&self) -> IndexStats {
        let mut st = IndexStats::default();
        for shard in &self.shards {
            let s = shard.lock();
            st.keys += s.blocks.len();
            let holders: usize = s.blocks.values().map(Vec::len).sum();
            st.holders += holders;
            st.approx_bytes += s.blocks.capacity() * (8 + 24 + 1)
                + s.blocks
                    .values()
                    .map(|v| v.capacity() * core::mem::size_of::<Holder>())
                    .sum::<usize>()
                + s.order.capacity() * 8;
        }
        let dir = self.dir.lock();
        for e in &dir.endpoints {
            if !e.address.is_empty() {
                st.endpoints += 1;
            }
            st.engine_keys += e.engine.len();
            st.approx_bytes += e.engine.capacity() * (16 + 1) + e.order.capacity() * 8;
        }
        st
    }
}
