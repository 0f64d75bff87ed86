//! `burst-prefix-cache-producer` (llm-d, Alpha): co-locates a burst of requests that share a
//! prompt, such as the `n` samples of one RL rollout group, so the shared prefix is prefilled on
//! one endpoint instead of on every endpoint a load balancer spreads them over while all caches
//! are still cold.
//!
//! How it works (llm-d-router `dataproducer/burstprefix/`, main 2026-12):
//! - The host holds each request for a short window ([`crate::plugin::BatchWindow`]): the first
//!   request opens a batch, the batch seals `windowDurationMs` later, and every request that
//!   joined it is placed together ([`BurstPrefixCacheProducer::place`]), then released and
//!   scheduled. A request that finds the batch full (`maxBatchSize`) goes on at once with no
//!   placement, as upstream lets the request go on when a producer fails.
//! - Placement: requests with the same prompt (the same block-hash chain) form a group; a group
//!   of two or more is always placed as a unit, kept on one endpoint (or, with `maxPerReplica`,
//!   filled `maxPerReplica` at a time onto the least loaded endpoints). With
//!   `minColocateBlocks > 0` a lone request also becomes a unit when it shares that many leading
//!   blocks with another request of the batch, and a unit prefers the endpoint already given the
//!   longest shared prefix in this batch, unless that endpoint already has its fair share
//!   (⌈batch load ÷ endpoints⌉). Groups go first, then lone units, each tier longest prompt
//!   first. Otherwise a unit goes to the endpoint with the least load placed in this batch, then
//!   the fewest running requests (scraped), then the lowest address. Load is requests, or with
//!   `balanceBy: tokens` prompt blocks charged once per endpoint a unit lands on, less the
//!   leading blocks that endpoint already holds from this batch.
//! - Produce: a full match ([`PrefixMatch`] `matched = total`) on the endpoint the request was
//!   placed on and none elsewhere, under [`BURST_PREFIX_CACHE_MATCH_INFO`]. Read it with
//!   `prefix-cache-scorer` and `prefixMatchInfoProducerName: <this plugin's name>`. A request
//!   with no placement (a lone request, no prompt, a body-less request, a full batch) scores 0
//!   everywhere and the other scorers decide.
//!
//! Differences from upstream: upstream hashes the token ids a `token-producer` computed; here the
//! prompt text is hashed in blocks of `blockSizeTokens` × 4 characters (the approximate
//! producer's chain, [`crate::prefix::prefix_hashes`]; a prompt shorter than one block is one
//! block), so no tokenizer is needed. Identical prompts group identically either way;
//! `minColocateBlocks` counts these blocks. In the native module one batch is shared by every
//! Envoy worker; in the Wasm build each worker's VM batches its own requests.
//!
//! Parameters (as upstream):
//! | field | default | meaning |
//! |---|---|---|
//! | `windowDurationMs` | 100 | how long a batch stays open, ms, `1..=10000`; every request waits up to this long |
//! | `maxPerReplica` | -1 | most requests of one group per endpoint; -1: the whole group on one |
//! | `blockSizeTokens` | 64 | tokens per block (× 4 characters here) |
//! | `maxPrefixTokensToMatch` | 0 | if > 0, blocks hashed at most = this ÷ `blockSizeTokens` (≥ `blockSizeTokens`); 0: 2048 blocks |
//! | `minColocateBlocks` | 0 | shared leading blocks that make lone requests units and steer units together; 0: only identical groups |
//! | `maxBatchSize` | 1000 | most requests one batch takes; -1: unbounded |
//! | `balanceBy` | `requests` | `requests` or `tokens` (see above) |

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use hashbrown::HashMap;
use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::model::endpoint::Endpoint;
use crate::model::request::InferenceRequest;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    BatchWindow, CycleState, DataKey, DataProducer, Plugin, ProduceContext, RequestState, TypedName,
};
use crate::plugins::producer::approx_prefix_cache::{PrefixMatch, CHARS_PER_TOKEN};
use crate::prefix::prefix_hashes_of;

/// Plugin type name.
pub const TYPE: &str = "burst-prefix-cache-producer";

/// Cycle-state key of the per-endpoint `Vec<PrefixMatch>` this producer writes (indexed like
/// the pool's endpoints).
pub const BURST_PREFIX_CACHE_MATCH_INFO: DataKey = "BurstPrefixCacheMatchInfoKey";

/// Upstream's longest window, ms: every request waits up to the window.
pub const MAX_WINDOW_MS: i64 = 10_000;

/// Blocks hashed at most when `maxPrefixTokensToMatch` is 0 (upstream's default cap).
const DEFAULT_MAX_BLOCKS: usize = 2048;

/// Parameters; see the module docs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Params {
    /// Batch window, ms.
    pub window_duration_ms: i64,
    /// Requests of one group per endpoint at most; -1 unbounded.
    pub max_per_replica: i64,
    /// Tokens per block.
    pub block_size_tokens: i64,
    /// Token cap on the hashed prefix; 0 for the default block cap.
    pub max_prefix_tokens_to_match: i64,
    /// Shared leading blocks for co-location; 0 off.
    pub min_colocate_blocks: i64,
    /// Requests per batch at most; -1 unbounded.
    pub max_batch_size: i64,
    /// `requests` or `tokens`.
    pub balance_by: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            window_duration_ms: 100,
            max_per_replica: -1,
            block_size_tokens: 64,
            max_prefix_tokens_to_match: 0,
            min_colocate_blocks: 0,
            max_batch_size: 1000,
            balance_by: String::from("requests"),
        }
    }
}

/// Builds a [`BurstPrefixCacheProducer`].
///
/// # Errors
/// Unknown fields; a window outside `1..=10000` ms; `maxPerReplica` or `maxBatchSize` other
/// than -1 or ≥ 1; `blockSizeTokens` ≤ 0; `maxPrefixTokensToMatch` < 0 or between 1 and
/// `blockSizeTokens - 1` (it would hash nothing); `minColocateBlocks` < 0; `balanceBy` other
/// than `requests`/`tokens` (empty means `requests`).
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let bad = |field: &str, msg: alloc::string::String| {
        Err(ConfigError::invalid(FieldPath::key(field), msg))
    };
    if !(1..=MAX_WINDOW_MS).contains(&p.window_duration_ms) {
        return bad(
            "windowDurationMs",
            alloc::format!("must be between 1 and {MAX_WINDOW_MS} (every request waits up to this long), got {}", p.window_duration_ms),
        );
    }
    let unbounded_or_positive = |v: i64| v == -1 || v >= 1;
    if !unbounded_or_positive(p.max_per_replica) {
        return bad(
            "maxPerReplica",
            alloc::format!("must be -1 (unbounded) or ≥ 1, got {}", p.max_per_replica),
        );
    }
    if p.block_size_tokens <= 0 {
        return bad(
            "blockSizeTokens",
            alloc::format!("must be > 0, got {}", p.block_size_tokens),
        );
    }
    if p.max_prefix_tokens_to_match < 0
        || (p.max_prefix_tokens_to_match > 0 && p.max_prefix_tokens_to_match < p.block_size_tokens)
    {
        return bad(
            "maxPrefixTokensToMatch",
            alloc::format!(
                "must be 0 or ≥ blockSizeTokens ({}); a smaller positive value hashes no block, got {}",
                p.block_size_tokens, p.max_prefix_tokens_to_match
            ),
        );
    }
    if p.min_colocate_blocks < 0 {
        return bad(
            "minColocateBlocks",
            alloc::format!("must be ≥ 0, got {}", p.min_colocate_blocks),
        );
    }
    if !unbounded_or_positive(p.max_batch_size) {
        return bad(
            "maxBatchSize",
            alloc::format!("must be -1 (unbounded) or ≥ 1, got {}", p.max_batch_size),
        );
    }
    let by_tokens = match p.balance_by.as_str() {
        "" | "requests" => false,
        "tokens" => true,
        other => {
            return bad(
                "balanceBy",
                alloc::format!("must be 'requests' or 'tokens', got '{other}'"),
            )
        }
    };
    let to_usize = |v: i64| usize::try_from(v).unwrap_or(usize::MAX);
    let block_size_tokens = u32::try_from(p.block_size_tokens).unwrap_or(u32::MAX);
    let max_blocks = if p.max_prefix_tokens_to_match > 0 {
        to_usize(p.max_prefix_tokens_to_match / p.block_size_tokens)
    } else {
        DEFAULT_MAX_BLOCKS
    };
    Ok(Arc::new(BurstPrefixCacheProducer {
        typed_name: TypedName::new(TYPE, name),
        window_ms: p.window_duration_ms.unsigned_abs(),
        rules: Placement {
            max_per_endpoint: (p.max_per_replica > 0).then(|| to_usize(p.max_per_replica)),
            min_colocate_blocks: to_usize(p.min_colocate_blocks),
            by_tokens,
        },
        max_batch: (p.max_batch_size > 0).then(|| to_usize(p.max_batch_size)),
        block_size_tokens,
        max_blocks,
    }))
}

/// What the placement of one batch obeys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Requests of one group per endpoint at most (`maxPerReplica`); `None` unbounded.
    pub max_per_endpoint: Option<usize>,
    /// `minColocateBlocks`; 0 places identical groups only.
    pub min_colocate_blocks: usize,
    /// Balance prompt blocks instead of requests (`balanceBy: tokens`).
    pub by_tokens: bool,
}

/// See the module docs.
pub struct BurstPrefixCacheProducer {
    typed_name: TypedName,
    window_ms: u64,
    rules: Placement,
    max_batch: Option<usize>,
    block_size_tokens: u32,
    max_blocks: usize,
}

/// The placement the host hands the producer before the request is scheduled (kept in the
/// request's state under the producer's name).
struct Placed {
    /// The endpoint's address; `None`: no affinity.
    endpoint: Option<String>,
    /// Blocks the request's prompt hashed to.
    blocks: u32,
}

impl Plugin for BurstPrefixCacheProducer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_data_producer(&self) -> Option<&dyn DataProducer> {
        Some(self)
    }
    fn as_batch_window(&self) -> Option<&dyn BatchWindow> {
        Some(self)
    }
    fn produces(&self) -> &'static [DataKey] {
        &[BURST_PREFIX_CACHE_MATCH_INFO]
    }
}

impl DataProducer for BurstPrefixCacheProducer {
    fn produce(
        &self,
        cx: &ProduceContext<'_>,
        candidates: &[usize],
        cycle: &mut CycleState,
        state: &mut RequestState,
    ) {
        let (endpoint, total) = state
            .take::<Placed>(&self.typed_name.name)
            .map_or((None, 0), |p| (p.endpoint, p.blocks));
        let mut matches = alloc::vec![
            PrefixMatch {
                matched_blocks: 0,
                total_blocks: total,
                block_size_tokens: self.block_size_tokens,
            };
            cx.endpoints.len()
        ];
        if let Some(address) = endpoint {
            // An endpoint that left the pool while the batch was open matches nothing.
            if let Some(m) = candidates
                .iter()
                .find(|&&i| cx.endpoints.get(i).is_some_and(|e| e.address == address))
                .and_then(|&i| matches.get_mut(i))
            {
                m.matched_blocks = total;
            }
        }
        cycle.put(BURST_PREFIX_CACHE_MATCH_INFO, matches);
    }
}

impl BatchWindow for BurstPrefixCacheProducer {
    fn window_ms(&self) -> u64 {
        self.window_ms
    }

    fn max_batch(&self) -> Option<usize> {
        self.max_batch
    }

    fn batch_key(&self, request: &InferenceRequest<'_>, out: &mut Vec<u64>) {
        // Chat tools first, as the approximate producer hashes them.
        let tools = request.tools.as_deref().unwrap_or_default().as_bytes();
        let text = request.prompt.as_bytes();
        let block_chars = (self.block_size_tokens as usize).saturating_mul(CHARS_PER_TOKEN);
        // A prompt shorter than one block is one (short) block, as a token block would be.
        let block_chars = block_chars.min(tools.len() + text.len());
        prefix_hashes_of(
            &request.target_model,
            request.cache_salt.as_deref(),
            [tools, text],
            block_chars,
            self.max_blocks,
            out,
        );
    }

    fn place(&self, keys: &[&[u64]], endpoints: &[Endpoint]) -> Vec<Option<usize>> {
        place(keys, endpoints, self.rules)
    }

    fn placed(&self, state: &mut RequestState, endpoint: Option<&str>, key_blocks: usize) {
        state.put(
            &self.typed_name.name,
            Placed {
                endpoint: endpoint.map(String::from),
                blocks: u32::try_from(key_blocks).unwrap_or(u32::MAX),
            },
        );
    }
}

/// One placement unit: the batch members with one key (an identical group), or a lone member
/// that shares a prefix with another.
struct Unit<'k> {
    key: &'k [u64],
    members: Vec<usize>,
}

/// Places a sealed batch: for each member's key in `keys` (its prompt's block-hash chain), the
/// index in `endpoints` of the endpoint it goes to, or `None` (no affinity). See the module docs
/// for the rules; `endpoints` empty places nothing.
pub fn place(keys: &[&[u64]], endpoints: &[Endpoint], rules: Placement) -> Vec<Option<usize>> {
    let mut out = alloc::vec![None; keys.len()];
    if endpoints.is_empty() {
        return out;
    }
    // Group by the whole chain, in arrival order.
    let mut by_key: HashMap<&[u64], usize> = HashMap::new();
    let mut groups: Vec<Unit<'_>> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if key.is_empty() {
            continue;
        }
        let g = *by_key.entry(*key).or_insert_with(|| {
            groups.push(Unit {
                key,
                members: Vec::new(),
            });
            groups.len() - 1
        });
        if let Some(unit) = groups.get_mut(g) {
            unit.members.push(i);
        }
    }
    // Lone requests sharing `min_colocate_blocks` leading blocks with any other request.
    let min = rules.min_colocate_blocks;
    let mut sharing: HashMap<&[u64], usize> = HashMap::new();
    if min > 0 {
        for g in &groups {
            if let Some(head) = g.key.get(..min) {
                *sharing.entry(head).or_default() += g.members.len();
            }
        }
    }
    let shares = |g: &Unit<'_>| {
        g.key
            .get(..min)
            .is_some_and(|head| sharing.get(head).copied().unwrap_or(0) >= 2)
    };
    let (mut units, rest): (Vec<Unit<'_>>, Vec<Unit<'_>>) =
        groups.into_iter().partition(|g| g.members.len() >= 2);
    let mut lone: Vec<Unit<'_>> = if min > 0 {
        rest.into_iter().filter(|g| shares(g)).collect()
    } else {
        Vec::new()
    };
    // Longest prompt first within each tier (stable), so shorter prompts match against the most
    // blocks already placed.
    units.sort_by_key(|u| core::cmp::Reverse(u.key.len()));
    lone.sort_by_key(|u| core::cmp::Reverse(u.key.len()));
    units.append(&mut lone);
    if units.is_empty() {
        return out;
    }

    let total: usize = units
        .iter()
        .map(|u| {
            if rules.by_tokens {
                u.key.len()
            } else {
                u.members.len()
            }
        })
        .sum();
    let fair_share = total.div_ceil(endpoints.len());
    let mut batch = BatchLoad {
        endpoints,
        load: alloc::vec![0; endpoints.len()],
        holders: HashMap::new(),
    };
    for unit in &units {
        batch.place_unit(unit, rules, fair_share, &mut out);
    }
    out
}

/// What one batch has placed so far.
struct BatchLoad<'e> {
    endpoints: &'e [Endpoint],
    /// Placed load per endpoint (requests, or blocks with `by_tokens`).
    load: Vec<usize>,
    /// Which endpoints hold each block placed in this batch. A whole chain is placed at once,
    /// so holding block `i` means holding blocks `0..=i`.
    holders: HashMap<u64, Vec<usize>>,
}

impl BatchLoad<'_> {
    /// Per endpoint, the leading blocks of `key` it holds from this batch.
    fn shared_prefix(&self, key: &[u64]) -> Vec<usize> {
        let mut held = alloc::vec![0; self.endpoints.len()];
        for block in key {
            let Some(hs) = self.holders.get(block).filter(|h| !h.is_empty()) else {
                break;
            };
            for &e in hs {
                if let Some(n) = held.get_mut(e) {
                    *n += 1;
                }
            }
        }
        held
    }

    /// True when `a` is a better endpoint than `b` for balance: less placed load, then fewer
    /// running requests, then the lower address.
    fn lighter(&self, a: usize, b: usize) -> bool {
        let load = |i: usize| self.load.get(i).copied().unwrap_or(usize::MAX);
        let running = |i: usize| {
            self.endpoints
                .get(i)
                .map_or(u32::MAX, |e| e.metrics.running_requests)
        };
        let address = |i: usize| self.endpoints.get(i).map_or("", |e| e.address.as_str());
        (load(a), running(a), address(a)) < (load(b), running(b), address(b))
    }

    /// The least loaded endpoint with room for this unit (`on` < the cap), else the least
    /// loaded of all.
    fn least_loaded(&self, on: &[usize], cap: Option<usize>) -> usize {
        let mut best: Option<usize> = None;
        for e in 0..self.endpoints.len() {
            let room = cap.is_none_or(|k| on.get(e).copied().unwrap_or(0) < k);
            if room && best.is_none_or(|b| self.lighter(e, b)) {
                best = Some(e);
            }
        }
        best.unwrap_or_else(|| {
            (0..self.endpoints.len())
                .reduce(|b, e| if self.lighter(e, b) { e } else { b })
                .unwrap_or(0)
        })
    }

    fn place_unit(
        &mut self,
        unit: &Unit<'_>,
        rules: Placement,
        fair_share: usize,
        out: &mut [Option<usize>],
    ) {
        let min = rules.min_colocate_blocks;
        let mut prefer_shared = min > 0;
        let shared = if prefer_shared || rules.by_tokens {
            self.shared_prefix(unit.key)
        } else {
            Vec::new()
        };
        let shared_on = |e: usize| shared.get(e).copied().unwrap_or(0);
        // This unit's requests per endpoint.
        let mut on = alloc::vec![0usize; self.endpoints.len()];
        let mut next = 0;
        while next < unit.members.len() {
            let mut target = None;
            if prefer_shared {
                // The endpoint holding the longest shared prefix that still has room and is
                // under its fair share; ties by balance.
                for e in 0..self.endpoints.len() {
                    let room = rules
                        .max_per_endpoint
                        .is_none_or(|k| on.get(e).copied().unwrap_or(0) < k);
                    let under = self.load.get(e).copied().unwrap_or(usize::MAX) < fair_share;
                    if !(room && under && shared_on(e) >= min) {
                        continue;
                    }
                    let better = match target {
                        None => true,
                        Some(t) => {
                            shared_on(e) > shared_on(t)
                                || (shared_on(e) == shared_on(t) && self.lighter(e, t))
                        }
                    };
                    if better {
                        target = Some(e);
                    }
                }
                prefer_shared = false;
            }
            let target = target.unwrap_or_else(|| self.least_loaded(&on, rules.max_per_endpoint));
            let already = on.get(target).copied().unwrap_or(0);
            let mut run = unit.members.len() - next;
            if let Some(k) = rules.max_per_endpoint {
                // Past k × endpoints, one at a time onto the least loaded.
                run = run.min(k.saturating_sub(already).max(1));
            }
            for &m in unit.members.iter().skip(next).take(run) {
                if let Some(slot) = out.get_mut(m) {
                    *slot = Some(target);
                }
            }
            if let Some(n) = on.get_mut(target) {
                *n += run;
            }
            let charge = if !rules.by_tokens {
                run
            } else if already == 0 {
                // The prompt is prefilled once per endpoint, less what it holds already.
                unit.key.len().saturating_sub(shared_on(target))
            } else {
                0
            };
            if let Some(l) = self.load.get_mut(target) {
                *l += charge;
            }
            next += run;
        }
        for (e, &n) in on.iter().enumerate() {
            if n > 0 {
                for &block in unit.key {
                    let hs = self.holders.entry(block).or_default();
                    if !hs.contains(&e) {
                        hs.push(e);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint::new(alloc::format!("10.0.0.{i}:8000")))
            .collect()
    }

    fn rules() -> Placement {
        Placement::default()
    }

    #[test]
    fn a_group_of_identical_prompts_goes_to_one_endpoint_and_groups_spread() {
        let a: &[u64] = &[1, 2, 3];
        let b: &[u64] = &[7, 8];
        let keys = [a, b, a, b, a, a];
        let out = place(&keys, &pool(4), rules());
        let ea = out[0].unwrap();
        let eb = out[1].unwrap();
        assert_ne!(ea, eb, "two groups share no endpoint while others are free");
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(out[i], Some(if *k == a { ea } else { eb }));
        }
    }

    #[test]
    fn lone_and_empty_prompts_get_no_placement_without_min_colocate() {
        let keys: [&[u64]; 3] = [&[1, 2], &[1, 3], &[]];
        assert_eq!(
            place(&keys, &pool(2), rules()),
            alloc::vec![None, None, None]
        );
    }

    #[test]
    fn max_per_replica_fills_one_endpoint_then_spills_to_the_least_loaded() {
        let a: &[u64] = &[1, 2];
        let keys = [a; 5];
        let r = Placement {
            max_per_endpoint: Some(2),
            ..rules()
        };
        let out = place(&keys, &pool(3), r);
        let mut per = [0; 3];
        for e in out.iter().map(|e| e.unwrap()) {
            per[e] += 1;
        }
        per.sort_unstable();
        assert_eq!(per, [1, 2, 2]);
        // More requests than k × endpoints: one at a time, still balanced.
        let keys = [a; 8];
        let out = place(&keys, &pool(3), r);
        let mut per = [0; 3];
        for e in out.iter().map(|e| e.unwrap()) {
            per[e] += 1;
        }
        per.sort_unstable();
        assert_eq!(per, [2, 3, 3]);
    }

    #[test]
    fn min_colocate_blocks_joins_prompts_that_share_a_head_up_to_the_fair_share() {
        let r = Placement {
            min_colocate_blocks: 2,
            ..rules()
        };
        // Three groups on three endpoints (fair share ⌈8 ÷ 3⌉ = 3), then two lone prompts that
        // share group A's first 2 blocks: the longer joins A, the next finds A's endpoint at its
        // fair share and goes to the least loaded; a prompt sharing 1 block gets nothing.
        let a: &[u64] = &[1, 2, 3];
        let c: &[u64] = &[7, 8];
        let d: &[u64] = &[9];
        let keys: [&[u64]; 9] = [a, a, c, c, d, d, &[1, 2, 4, 5], &[1, 2, 6], &[1, 10]];
        let out = place(&keys, &pool(3), r);
        assert_eq!(out[6], out[0], "{out:?}");
        assert_ne!(out[7], out[0], "{out:?}");
        assert!(out[7].is_some());
        assert_eq!(out[8], None, "one shared block is below the threshold");
        // With 2 endpoints and 4 sharing prompts, the fair share (2 each) caps co-location.
        let keys: [&[u64]; 4] = [&[1, 2, 3], &[1, 2, 4], &[1, 2, 5], &[1, 2, 6]];
        let out = place(&keys, &pool(2), r);
        let on0 = out.iter().filter(|e| **e == Some(0)).count();
        assert_eq!(on0, 2, "{out:?}");
    }

    #[test]
    fn balance_by_tokens_spreads_long_prompts_and_ties_go_to_fewer_running() {
        let r = Placement {
            by_tokens: true,
            ..rules()
        };
        let long: &[u64] = &[1, 2, 3, 4, 5, 6, 7, 8];
        let short1: &[u64] = &[20];
        let short2: &[u64] = &[30];
        let keys = [long, long, short1, short1, short2, short2];
        let out = place(&keys, &pool(2), r);
        // The long group takes one endpoint; both short groups the other.
        assert_ne!(out[0], out[2]);
        assert_eq!(out[2], out[4]);
        // Ties on placed load go to the endpoint with fewer running requests.
        let mut endpoints = pool(2);
        endpoints[0].metrics.running_requests = 5;
        let out = place(&[short1, short1], &endpoints, rules());
        assert_eq!(out, alloc::vec![Some(1), Some(1)]);
    }

    #[test]
    fn an_empty_pool_places_nothing() {
        let a: &[u64] = &[1];
        assert_eq!(place(&[a, a], &[], rules()), alloc::vec![None, None]);
    }
}
