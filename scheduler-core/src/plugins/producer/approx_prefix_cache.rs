//! `approx-prefix-cache-producer`: estimates how much of the prompt each endpoint holds in its
//! prefix cache, from the picker's own past decisions.
//!
//! Algorithm and defaults: GIE `dataproducer/approximateprefix/` at GIE@1748e829 (docs/SOURCES.md#gie-prefix).
//! - Produce: hash the prompt into a block chain ([`crate::prefix::hash`]); walk it in the index
//!   and write a [`PrefixMatch`] per endpoint under [`PREFIX_CACHE_MATCH_INFO`].
//! - PreRequest: record every block under the first target of the primary profile and of a
//!   profile named `prefill`.
//! - ResponseHeader: if a retry made another endpoint serve, record the blocks under the endpoint
//!   that actually served too.
//!
//! Parameters:
//! | field | default | meaning |
//! |---|---|---|
//! | `autoTune` | true | block size from the first candidate's `cache_config_info` `block_size`, LRU capacity from its `num_gpu_blocks` |
//! | `blockSizeTokens` | 16 | tokens per block (× 4 characters per token) |
//! | `blockSize` | — | deprecated (characters); set without `blockSizeTokens` it is an error |
//! | `maxPrefixBlocksToMatch` | 256 | blocks hashed at most |
//! | `maxPrefixTokensToMatch` | 0 | if > 0, overrides the block cap: tokens / block size |
//! | `lruCapacityPerServer` | 31250 | blocks tracked per endpoint (honoured, unlike GIE@1748e829) |
//! | `maxIndexBlocks` | 4194304 | ours: records (block × endpoint) the index holds at most, over the whole pool; each endpoint's list is also capped at this divided by the endpoints indexed |
//!
//! `maxIndexBlocks` is not a GIE or llm-d parameter. Their index is bounded per endpoint only,
//! by `lruCapacityPerServer` or, with `autoTune`, by each server's own `num_gpu_blocks`, which
//! can be millions; in a separate EPP process that is a memory question, inside Envoy it is the
//! proxy's. A record costs ~48 bytes at a limit that is a power of two (measured at 2^16
//! records, `memory_per_record_at_the_limit`), so the default (2^22, GIE's default capacity for
//! 134 endpoints) comes to ~200 MiB by that figure, and by the layout to at most ~1/3 more after
//! the pool grows (an endpoint's node slab keeps the capacity of its larger share, reused, not
//! freed): well within a Wasm VM's 1 GiB of linear memory (one index per worker VM; one per
//! process in the native build). See [`PrefixIndex::with_max_blocks`].

use alloc::sync::Arc;

use crate::lock::Lock;
use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{ConfigError, FieldPath};
use crate::model::response::ResponseInfo;
use crate::model::result::SchedulingResult;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleContext, CycleState, DataKey, DataProducer, Plugin, PreRequest, ProduceContext,
    RequestState, ResponseHeader, TypedName,
};
use crate::prefix::{prefix_hashes_of, PrefixIndex};

/// Plugin type name.
pub const TYPE: &str = "approx-prefix-cache-producer";

/// Cycle-state key of the per-endpoint `Vec<PrefixMatch>`.
pub const PREFIX_CACHE_MATCH_INFO: DataKey = "PrefixCacheMatchInfoKey";

/// GIE's `averageCharactersPerToken`.
pub const CHARS_PER_TOKEN: usize = 4;

/// How much of the request's prefix one endpoint is believed to hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixMatch {
    /// Leading blocks held.
    pub matched_blocks: u32,
    /// Blocks the prompt hashed to.
    pub total_blocks: u32,
    /// Tokens per block used for this request.
    pub block_size_tokens: u32,
}

impl PrefixMatch {
    /// `matched / total`, 0 when the prompt has no blocks.
    pub fn ratio(&self) -> f64 {
        if self.total_blocks == 0 {
            0.0
        } else {
            f64::from(self.matched_blocks) / f64::from(self.total_blocks)
        }
    }

    /// Estimated cached tokens: matched blocks × block size.
    pub fn cached_tokens(&self) -> u64 {
        u64::from(self.matched_blocks) * u64::from(self.block_size_tokens)
    }
}

/// Default of `maxIndexBlocks`: records (block × endpoint) the index holds at most, ~48 bytes
/// each (see the module docs).
pub const DEFAULT_MAX_INDEX_BLOCKS: usize = 1 << 22;

/// Parameters; see the module docs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Params {
    /// Learn block size and capacity from endpoint metrics.
    pub auto_tune: bool,
    /// Tokens per block.
    pub block_size_tokens: Option<i64>,
    /// Deprecated: characters per block.
    pub block_size: Option<i64>,
    /// Block cap.
    pub max_prefix_blocks_to_match: i64,
    /// Token cap overriding the block cap when > 0.
    pub max_prefix_tokens_to_match: i64,
    /// Blocks tracked per endpoint.
    pub lru_capacity_per_server: i64,
    /// Records held at most over the whole pool (ours).
    pub max_index_blocks: i64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            auto_tune: true,
            block_size_tokens: None,
            block_size: None,
            max_prefix_blocks_to_match: 256,
            max_prefix_tokens_to_match: 0,
            lru_capacity_per_server: 31_250,
            max_index_blocks: DEFAULT_MAX_INDEX_BLOCKS as i64,
        }
    }
}

/// Builds an [`ApproxPrefixCacheProducer`].
///
/// # Errors
/// Unknown fields; `blockSize` without `blockSizeTokens`; non-positive block size with
/// `autoTune: false`; negative caps; a capacity or `maxIndexBlocks` below 1.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if p.block_size.is_some() && p.block_size_tokens.is_none() {
        return Err(ConfigError::invalid(
            FieldPath::key("blockSize"),
            "'blockSize' (characters) is deprecated and no longer used; set 'blockSizeTokens' instead",
        ));
    }
    let bst = p.block_size_tokens.unwrap_or(16);
    if bst <= 0 && !p.auto_tune {
        return Err(ConfigError::invalid(
            FieldPath::key("blockSizeTokens"),
            "must be > 0 when autoTune is false",
        ));
    }
    if p.max_prefix_blocks_to_match < 0 {
        return Err(ConfigError::invalid(
            FieldPath::key("maxPrefixBlocksToMatch"),
            "must be ≥ 0",
        ));
    }
    if p.max_prefix_tokens_to_match < 0 {
        return Err(ConfigError::invalid(
            FieldPath::key("maxPrefixTokensToMatch"),
            "must be ≥ 0",
        ));
    }
    if p.lru_capacity_per_server < 1 {
        return Err(ConfigError::invalid(
            FieldPath::key("lruCapacityPerServer"),
            "must be ≥ 1",
        ));
    }
    if p.max_index_blocks < 1 {
        return Err(ConfigError::invalid(
            FieldPath::key("maxIndexBlocks"),
            "must be ≥ 1",
        ));
    }
    Ok(Arc::new(ApproxPrefixCacheProducer {
        typed_name: TypedName::new(TYPE, name),
        auto_tune: p.auto_tune,
        block_size_tokens: if bst > 0 { bst as u32 } else { 16 },
        max_blocks: p.max_prefix_blocks_to_match as usize,
        max_tokens: p.max_prefix_tokens_to_match as usize,
        lru_capacity: p.lru_capacity_per_server as usize,
        index: Lock::new(
            PrefixIndex::with_entropy(handle.services().entropy)
                .with_max_blocks(usize::try_from(p.max_index_blocks).unwrap_or(usize::MAX)),
        ),
    }))
}

/// What PreRequest and the response hook need from produce.
struct Pending {
    hashes: Vec<u64>,
    /// Endpoints already credited with the blocks (so a served-endpoint update is not repeated),
    /// as xxh3 hashes of their addresses: kept inline, no allocation per request.
    credited: smallvec::SmallVec<[u64; 2]>,
}

/// See the module docs.
pub struct ApproxPrefixCacheProducer {
    typed_name: TypedName,
    auto_tune: bool,
    block_size_tokens: u32,
    max_blocks: usize,
    max_tokens: usize,
    lru_capacity: usize,
    index: Lock<PrefixIndex>,
}

impl ApproxPrefixCacheProducer {
    /// Tokens per block for a cycle over `candidates`.
    fn block_size_for(&self, cx: &ProduceContext<'_>, candidates: &[usize]) -> u32 {
        if self.auto_tune {
            if let Some(bs) = candidates
                .first()
                .and_then(|&i| cx.endpoints.get(i))
                .map(|e| e.metrics.cache_block_size_tokens)
                .filter(|&bs| bs > 0)
            {
                return bs;
            }
        }
        self.block_size_tokens
    }

    fn capacity_for(&self, endpoint: &crate::model::endpoint::Endpoint) -> usize {
        match endpoint.metrics.cache_num_blocks {
            n if self.auto_tune && n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
            _ => self.lru_capacity,
        }
    }

    /// Blocks tracked for `address` (tests and stats).
    pub fn blocks_of(&self, address: &str) -> usize {
        self.index.lock().blocks_of(address)
    }

    fn record(&self, endpoint: &crate::model::endpoint::Endpoint, hashes: &[u64]) {
        let cap = self.capacity_for(endpoint);
        self.index.lock().add(&endpoint.address, hashes, cap);
    }
}

impl Plugin for ApproxPrefixCacheProducer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_data_producer(&self) -> Option<&dyn DataProducer> {
        Some(self)
    }
    fn as_pre_request(&self) -> Option<&dyn PreRequest> {
        Some(self)
    }
    fn as_response_header(&self) -> Option<&dyn ResponseHeader> {
        Some(self)
    }
    fn produces(&self) -> &'static [DataKey] {
        &[PREFIX_CACHE_MATCH_INFO]
    }
    fn pool_changed(&self, addresses: &[&str]) {
        self.index
            .lock()
            .retain_endpoints(addresses.iter().copied());
    }
    fn prefix_index_blocks(&self) -> Option<usize> {
        Some(self.index.lock().len())
    }
}

impl DataProducer for ApproxPrefixCacheProducer {
    fn produce(
        &self,
        cx: &ProduceContext<'_>,
        candidates: &[usize],
        cycle: &mut CycleState,
        state: &mut RequestState,
    ) {
        let bst = self.block_size_for(cx, candidates);
        let block_chars = bst as usize * CHARS_PER_TOKEN;
        let max_blocks = if self.max_tokens > 0 {
            self.max_tokens / bst as usize
        } else {
            self.max_blocks
        };
        let mut hashes = Vec::new();
        let r = cx.request;
        // Chat tools first: the server's template renders them ahead of the messages.
        prefix_hashes_of(
            &r.target_model,
            r.cache_salt.as_deref(),
            [
                r.tools.as_deref().unwrap_or_default().as_bytes(),
                r.prompt.as_bytes(),
            ],
            block_chars,
            max_blocks,
            &mut hashes,
        );
        let total = hashes.len() as u32;
        let mut matches = alloc::vec![PrefixMatch { matched_blocks: 0, total_blocks: total, block_size_tokens: bst }; cx.endpoints.len()];
        if total > 0 {
            {
                let idx = self.index.lock();
                let mut counts = crate::scratch::Scratch::new();
                if idx.match_longest_prefix(&hashes, &mut counts) > 0 {
                    for &i in candidates {
                        let held = cx
                            .endpoints
                            .get(i)
                            .and_then(|e| idx.endpoint_id(&e.address))
                            .and_then(|id| counts.get(id as usize).copied())
                            .unwrap_or(0);
                        if let Some(m) = matches.get_mut(i) {
                            m.matched_blocks = held;
                        }
                    }
                }
            }
        }
        cycle.put(PREFIX_CACHE_MATCH_INFO, matches);
        state.put(
            &self.typed_name.name,
            Pending {
                hashes,
                credited: smallvec::SmallVec::new(),
            },
        );
    }
}

impl PreRequest for ApproxPrefixCacheProducer {
    fn pre_request(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
        state: &mut RequestState,
    ) {
        let Some(p) = state.get_mut::<Pending>(&self.typed_name.name) else {
            return;
        };
        if p.hashes.is_empty() {
            return;
        }
        let primary = result.primary_targets().first().copied();
        let prefill = result
            .profile("prefill")
            .and_then(|r| r.targets.first().copied());
        for i in [primary, prefill].into_iter().flatten() {
            if let Some(ep) = cx.endpoint(i) {
                self.record(ep, &p.hashes);
                p.credited.push(xxh3_64(ep.address.as_bytes()));
            }
        }
    }

    /// The primary target's match as this cycle's lookup found it (before `pre_request`
    /// recorded the prompt there), in GIE's bytes: blocks × block size × 4.
    fn prefix_hit(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
    ) -> Option<crate::PrefixHit> {
        let &primary = result.primary_targets().first()?;
        let m = cx
            .state
            .get::<Vec<PrefixMatch>>(PREFIX_CACHE_MATCH_INFO)?
            .get(primary)?;
        let block_bytes = u64::from(m.block_size_tokens) * CHARS_PER_TOKEN as u64;
        Some(crate::PrefixHit {
            matched_bytes: u64::from(m.matched_blocks) * block_bytes,
            total_bytes: u64::from(m.total_blocks) * block_bytes,
        })
    }
}

impl ResponseHeader for ApproxPrefixCacheProducer {
    fn response_header(
        &self,
        state: &mut RequestState,
        response: &ResponseInfo<'_>,
        _: &mut Vec<(String, String)>,
    ) {
        let Some(served) = response.served_endpoint else {
            return;
        };
        let Some(p) = state.get_mut::<Pending>(&self.typed_name.name) else {
            return;
        };
        if p.hashes.is_empty()
            || p.credited.contains(&xxh3_64(served.as_bytes()))
            || !(200..300).contains(&response.status)
        {
            return;
        }
        self.index.lock().add(served, &p.hashes, self.lru_capacity);
        p.credited.push(xxh3_64(served.as_bytes()));
    }
}
