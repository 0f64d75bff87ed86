//! `precise-prefix-cache-producer` (llm-d): how much of the prompt each endpoint holds in its KV
//! cache, from the servers' own KV-cache events rather than from the picker's past decisions.
//!
//! - Produce: the request's token ids ([`TOKENIZED_PROMPT`], from `token-producer`) become the
//!   request-key chain ([`crate::kvcache::keys`]); every candidate's longest held prefix is
//!   looked up in the [`KvBlockIndex`] and written as a [`PrefixMatch`] per endpoint under
//!   [`PRECISE_PREFIX_CACHE_MATCH_INFO`] (matched = llm-d's medium-weighted longest-prefix score,
//!   rounded down). No tokens: nothing is written. The prompt is tokenised only as far as a
//!   match could reach when no candidate matches at all (see `matches_for`): the scores are
//!   the same, and a prompt of new text costs a stretch of tokenisation instead of all of it.
//!   With speculative indexing the pick is then credited with the blocks read.
//! - Events: the host subscribes to every endpoint's stream ([`KvEventsSettings`]) and feeds
//!   each batch to [`KvEventSink::apply`].
//! - PreRequest (`speculativeIndexing: true`): the chosen endpoint is credited with the blocks
//!   until `speculativeTTL` passes or the server reports them itself.
//! - Pool changes: endpoints that left are forgotten.
//!
//! Pair it with `prefix-cache-scorer` (`prefixMatchInfoProducerName: <this plugin's name>`).
//!
//! Parameters (llm-d's shape; the nested objects mirror llm-d-kv-cache's configuration):
//! | field | default | meaning |
//! |---|---|---|
//! | `tokenProcessorConfig.blockSizeTokens` (`blockSize`, deprecated) | 16 | tokens per block; set it to the servers' block size |
//! | `tokenProcessorConfig.hashSeed` | "" | seed of the key chain |
//! | `indexerConfig.kvBlockIndexConfig.inMemoryConfig.size` | 262,144 | request keys held at most |
//! | `indexerConfig.kvBlockIndexConfig.inMemoryConfig.podCacheSize` | 10 | endpoints per key at most |
//! | `indexerConfig.kvBlockScorerConfig.backendConfigs` | gpu 1.0, cpu 0.8 | medium weights |
//! | `kvEventsConfig.discoverPods` | true | dial every endpoint's IP at `podDiscoveryConfig.socketPort` (5557) |
//! | `kvEventsConfig.podDiscoveryConfig.replayPort` (ours) | — | vLLM's replay socket on every endpoint's IP: lost and earlier batches are asked for there |
//! | `kvEventsConfig.zmqEndpoint` | — | also bind this endpoint for servers that connect |
//! | `kvEventsConfig.topicFilter` | `kv@` | ZMQ subscription prefix |
//! | `kvEventsConfig.engineType` | `vllm` | `vllm` or `sglang`: the servers' event schema |
//! | `speculativeIndexing` / `speculativeTTL` | false / 2s | credit the pick before the server reports it |
//!
//! Other llm-d-kv-cache fields (Redis/Valkey backends, metrics logging, `concurrency`) are
//! accepted and unused: the index lives in the proxy's memory and events are applied in order
//! per endpoint.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use crate::config::duration::parse_duration_ms;
use crate::error::{ConfigError, FieldPath};
use crate::kvcache::index::{
    default_medium_weights, MediumWeights, DEFAULT_MAX_HOLDERS, DEFAULT_MAX_KEYS,
};
use crate::kvcache::{IndexStats, KvBlockIndex, KvEvent, RequestKeys};
use crate::model::result::SchedulingResult;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleContext, CycleState, DataKey, DataProducer, KvEventCounters, KvEventFormat, KvEventSink,
    KvEventsSettings, Plugin, PreRequest, ProduceContext, RequestState, TokenizedPrompt, TypedName,
    TOKENIZED_PROMPT,
};
use crate::plugins::producer::approx_prefix_cache::PrefixMatch;

/// Plugin type name.
pub const TYPE: &str = "precise-prefix-cache-producer";

/// Cycle-state key of the per-endpoint `Vec<PrefixMatch>` this producer writes.
pub const PRECISE_PREFIX_CACHE_MATCH_INFO: DataKey = "PrefixCacheMatchInfoKey/precise";

/// `tokenProcessorConfig`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TokenProcessorConfig {
    /// Tokens per block.
    pub block_size_tokens: Option<i64>,
    /// Deprecated name of `blockSizeTokens`.
    pub block_size: Option<i64>,
    /// Seed of the key chain.
    pub hash_seed: String,
}

/// `indexerConfig.kvBlockIndexConfig.inMemoryConfig`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct InMemoryConfig {
    /// Request keys held at most.
    pub size: Option<i64>,
    /// Endpoints per key at most.
    pub pod_cache_size: Option<i64>,
}

/// `indexerConfig.kvBlockIndexConfig`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct KvBlockIndexConfig {
    /// The in-memory index's bounds.
    pub in_memory_config: Option<InMemoryConfig>,
    /// llm-d: other backends and metrics settings (unused).
    pub cost_aware_memory_config: Option<serde_json::Value>,
    /// llm-d: Redis backend (unused).
    pub redis_config: Option<serde_json::Value>,
    /// llm-d: Valkey backend (unused).
    pub valkey_config: Option<serde_json::Value>,
    /// llm-d: index metrics (the native module always reports its index size).
    pub enable_metrics: Option<bool>,
    /// llm-d: metrics log interval (unused).
    pub metrics_logging_interval: Option<serde_json::Value>,
}

/// One `backendConfigs` entry.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct BackendConfig {
    /// Medium name (`gpu`, `cpu`…).
    pub name: String,
    /// Weight of a block held there.
    pub weight: f64,
}

/// `indexerConfig.kvBlockScorerConfig`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct KvBlockScorerConfig {
    /// Only `LongestPrefix` exists.
    pub scoring_strategy: Option<String>,
    /// Medium weights.
    pub backend_configs: Option<Vec<BackendConfig>>,
}

/// `indexerConfig`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct IndexerConfig {
    /// Index bounds.
    pub kv_block_index_config: Option<KvBlockIndexConfig>,
    /// Medium weights.
    pub kv_block_scorer_config: Option<KvBlockScorerConfig>,
    /// llm-d: in-plugin tokenizer pool (tokenisation is `token-producer`'s job here).
    pub tokenizers_pool_config: Option<serde_json::Value>,
}

/// `kvEventsConfig.podDiscoveryConfig`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PodDiscoveryConfig {
    /// Port every server publishes on.
    pub socket_port: Option<i64>,
    /// Ours: port of every server's replay socket (vLLM's `replay_endpoint`).
    pub replay_port: Option<i64>,
    /// llm-d: Kubernetes pod selection (the pool's endpoints are used here).
    pub pod_label_selector: Option<serde_json::Value>,
    /// llm-d: Kubernetes namespace (unused).
    pub pod_namespace: Option<serde_json::Value>,
}

/// `kvEventsConfig`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct KvEventsConfig {
    /// Bind this endpoint for servers that connect.
    pub zmq_endpoint: Option<String>,
    /// Subscription prefix.
    pub topic_filter: Option<String>,
    /// llm-d: event worker count (unused).
    pub concurrency: Option<i64>,
    /// Dial every endpoint.
    pub discover_pods: Option<bool>,
    /// Where to dial.
    pub pod_discovery_config: Option<PodDiscoveryConfig>,
    /// `vllm` (default) or `sglang`.
    pub engine_type: Option<String>,
}

/// Parameters; see the module docs.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Params {
    /// Key chain settings.
    pub token_processor_config: Option<TokenProcessorConfig>,
    /// Index settings.
    pub indexer_config: Option<IndexerConfig>,
    /// Event source settings.
    pub kv_events_config: Option<KvEventsConfig>,
    /// Credit the pick before the server reports it.
    pub speculative_indexing: bool,
    /// How long a speculative entry lives (Go duration).
    pub speculative_ttl: Option<String>,
}

/// Builds a [`PrecisePrefixCacheProducer`].
///
/// # Errors
/// Unknown fields at the top level; a block size ≤ 0; a bound < 1; a socket port outside
/// 1..65535; an `engineType` other than `vllm` or `sglang`; a bad `speculativeTTL`.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    Ok(Arc::new(PrecisePrefixCacheProducer::from_params(name, p)?))
}

fn positive(v: Option<i64>, default: usize, path: FieldPath) -> Result<usize, ConfigError> {
    match v {
        None => Ok(default),
        Some(n) if n >= 1 => {
            usize::try_from(n).map_err(|_| ConfigError::invalid(path, "too large"))
        }
        Some(_) => Err(ConfigError::invalid(path, "must be ≥ 1")),
    }
}

/// See the module docs.
pub struct PrecisePrefixCacheProducer {
    typed_name: TypedName,
    index: KvBlockIndex,
    settings: KvEventsSettings,
    speculative_ttl_ms: Option<u64>,
    batches: AtomicU64,
    stored: AtomicU64,
    removed: AtomicU64,
    orphans: AtomicU64,
    cleared: AtomicU64,
}

/// The request keys PreRequest credits speculatively.
/// What [`PrecisePrefixCacheProducer::matches_for`] found.
struct Matched {
    /// The request's block keys (all of them, or up to where no match could reach).
    keys: Vec<u64>,
    /// Per endpoint of the cycle, for the scorer.
    matches: Vec<PrefixMatch>,
    /// Per endpoint of the cycle: leading keys it holds.
    held: Vec<u32>,
}

struct Pending {
    keys: Vec<u64>,
    /// Per endpoint of the cycle: how many leading keys it already holds (those need no
    /// speculative entry).
    held: Vec<u32>,
}

impl PrecisePrefixCacheProducer {
    /// Builds the producer from parsed parameters (also used by `precise-prefix-cache-scorer`).
    ///
    /// # Errors
    /// As [`factory`].
    pub fn from_params(name: &str, p: Params) -> Result<Self, ConfigError> {
        let tpc = p.token_processor_config.unwrap_or_default();
        let tpc_path = || FieldPath::key("tokenProcessorConfig");
        let block_size = match (tpc.block_size_tokens, tpc.block_size) {
            (Some(n), _) | (None, Some(n)) if n <= 0 => {
                return Err(ConfigError::invalid(
                    tpc_path().with_key("blockSizeTokens"),
                    "must be > 0",
                ))
            }
            (Some(n), _) | (None, Some(n)) => {
                usize::try_from(n).unwrap_or(crate::kvcache::keys::DEFAULT_BLOCK_SIZE_TOKENS)
            }
            (None, None) => crate::kvcache::keys::DEFAULT_BLOCK_SIZE_TOKENS,
        };
        let ic = p.indexer_config.unwrap_or_default();
        let mem = ic
            .kv_block_index_config
            .and_then(|c| c.in_memory_config)
            .unwrap_or_default();
        let mem_path = || {
            FieldPath::key("indexerConfig")
                .with_key("kvBlockIndexConfig")
                .with_key("inMemoryConfig")
        };
        let max_keys = positive(mem.size, DEFAULT_MAX_KEYS, mem_path().with_key("size"))?;
        let max_holders = positive(
            mem.pod_cache_size,
            DEFAULT_MAX_HOLDERS,
            mem_path().with_key("podCacheSize"),
        )?;
        let mut weights: MediumWeights = default_medium_weights();
        if let Some(sc) = ic.kv_block_scorer_config {
            if let Some(s) = sc.scoring_strategy.filter(|s| s != "LongestPrefix") {
                return Err(ConfigError::invalid(
                    FieldPath::key("indexerConfig")
                        .with_key("kvBlockScorerConfig")
                        .with_key("scoringStrategy"),
                    alloc::format!("'{s}' is unknown; the only strategy is 'LongestPrefix'"),
                ));
            }
            if let Some(b) = sc.backend_configs {
                weights = b
                    .into_iter()
                    .map(|c| (c.name.to_ascii_lowercase(), c.weight))
                    .collect();
            }
        }
        let ev = p.kv_events_config.unwrap_or_default();
        let ev_path = || FieldPath::key("kvEventsConfig");
        let format = match ev.engine_type.as_deref() {
            None | Some("") => KvEventFormat::Vllm,
            Some(e) if e.eq_ignore_ascii_case("vllm") => KvEventFormat::Vllm,
            Some(e) if e.eq_ignore_ascii_case("sglang") => KvEventFormat::Sglang,
            Some(e) => {
                return Err(ConfigError::invalid(
                    ev_path().with_key("engineType"),
                    alloc::format!("'{e}': the KV-event formats read here are vllm and sglang"),
                ))
            }
        };
        let socket_port = match ev.pod_discovery_config.as_ref().and_then(|d| d.socket_port) {
            None => 5557,
            Some(n) => u16::try_from(n).ok().filter(|&p| p > 0).ok_or_else(|| {
                ConfigError::invalid(
                    ev_path()
                        .with_key("podDiscoveryConfig")
                        .with_key("socketPort"),
                    "must be 1..65535",
                )
            })?,
        };
        let replay_port = match ev.pod_discovery_config.as_ref().and_then(|d| d.replay_port) {
            None => None,
            Some(n) => Some(u16::try_from(n).ok().filter(|&p| p > 0).ok_or_else(|| {
                ConfigError::invalid(
                    ev_path()
                        .with_key("podDiscoveryConfig")
                        .with_key("replayPort"),
                    "must be 1..65535",
                )
            })?),
        };
        let settings = KvEventsSettings {
            format,
            replay_port,
            dial: ev.discover_pods.unwrap_or(true),
            socket_port,
            bind: ev.zmq_endpoint.filter(|s| !s.is_empty()),
            topic_filter: ev.topic_filter.unwrap_or_else(|| "kv@".into()),
        };
        let speculative_ttl_ms = if p.speculative_indexing {
            Some(match p.speculative_ttl.as_deref() {
                None | Some("") => 2_000,
                Some(s) => parse_duration_ms(s).ok_or_else(|| {
                    ConfigError::invalid(
                        FieldPath::key("speculativeTTL"),
                        "not a duration (e.g. '2s')",
                    )
                })?,
            })
        } else {
            None
        };
        Ok(PrecisePrefixCacheProducer {
            typed_name: TypedName::new(TYPE, name),
            index: KvBlockIndex::new(
                RequestKeys::new(block_size, &tpc.hash_seed),
                max_keys,
                max_holders,
                weights,
            ),
            settings,
            speculative_ttl_ms,
            batches: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            removed: AtomicU64::new(0),
            orphans: AtomicU64::new(0),
            cleared: AtomicU64::new(0),
        })
    }

    /// The index (tests, stats).
    pub fn index(&self) -> &KvBlockIndex {
        &self.index
    }

    /// The request's keys and every candidate's match.
    ///
    /// The prompt is tokenised stretch by stretch and each stretch's keys are looked up at
    /// once. While some candidate holds every block so far, its match may reach further, so it
    /// goes on; when none does:
    /// - if no candidate matched even the first block, every score is 0 whatever the prompt's
    ///   length, so tokenising stops there and `total_blocks` counts the blocks read (a prompt
    ///   of all-new text costs one stretch of tokenisation, not all of it);
    /// - otherwise it reads on to the end in the same pass (no second tokenisation, no more
    ///   lookups), so `total_blocks` (the ratio's denominator) is the prompt's own, as upstream
    ///   computes it.
    fn matches_for(
        &self,
        cx: &ProduceContext<'_>,
        candidates: &[usize],
        prompt: &mut TokenizedPrompt,
    ) -> Result<Matched, String> {
        let keys_fn = self.index.request_keys();
        let bs = keys_fn.block_size();
        // A salted request's blocks are keyed by its salt only on vLLM (see `kvcache::keys`).
        // SGLang keeps salted prefixes apart in its own cache, but its KV events leave the salt
        // out of the block hashes and carry no field for it (docs/SOURCES.md#sglang-kv-salt), so
        // its blocks can only be indexed unsalted. vLLM treats an empty salt as none.
        let adapter = self.index.adapter_for(&cx.request.target_model);
        let salt = match self.settings.format {
            KvEventFormat::Vllm => cx.request.cache_salt.as_deref().filter(|s| !s.is_empty()),
            KvEventFormat::Sglang => None,
        };
        let root = match salt {
            Some(salt) => keys_fn.root_with(adapter, &[salt]),
            None => keys_fn.root(adapter),
        };
        let (api, text, now) = (cx.request.api, &*cx.request.prompt, cx.now_ms);
        let addrs: Vec<&str> = candidates
            .iter()
            .filter_map(|&i| cx.endpoints.get(i).map(|e| e.address.as_str()))
            .collect();
        let mut run = self.index.start_lookup(&addrs);
        // One key per block of ~4-byte tokens: sized once for typical text.
        let mut keys: Vec<u64> = Vec::with_capacity(text.len() / (4 * bs.max(1)) + 4);
        let mut parent = root;
        // Some candidate still holds every block so far.
        let mut running = true;
        prompt.read_while(api, text, &mut |tokens| {
            let first_new = keys.len();
            let Some(rest) = tokens.get(first_new * bs..) else {
                return true;
            };
            keys_fn.extend(parent, rest, 0, &mut keys);
            let new = keys.get(first_new..).unwrap_or_default();
            if let Some(&last) = new.last() {
                parent = last;
            }
            if running {
                running = self.index.extend_lookup(&mut run, new, now);
            }
            running || run.matches.iter().any(|m| m.blocks > 0)
        })?;
        let found = run.matches;
        let total = u32::try_from(keys.len()).unwrap_or(u32::MAX);
        let block_size = u32::try_from(bs).unwrap_or(u32::MAX);
        let mut matches = alloc::vec![PrefixMatch { matched_blocks: 0, total_blocks: total, block_size_tokens: block_size }; cx.endpoints.len()];
        let mut held = alloc::vec![0u32; cx.endpoints.len()];
        for (&i, m) in candidates.iter().zip(found) {
            if let Some(out) = matches.get_mut(i) {
                // llm-d writes int(score): the weighted sum, rounded down.
                out.matched_blocks = m.weighted as u32;
            }
            if let Some(h) = held.get_mut(i) {
                *h = m.blocks;
            }
        }
        Ok(Matched {
            keys,
            matches,
            held,
        })
    }
}

impl Plugin for PrecisePrefixCacheProducer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_data_producer(&self) -> Option<&dyn DataProducer> {
        Some(self)
    }
    fn as_pre_request(&self) -> Option<&dyn PreRequest> {
        self.speculative_ttl_ms.map(|_| self as &dyn PreRequest)
    }
    fn as_kv_event_sink(&self) -> Option<&dyn KvEventSink> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        &[TOKENIZED_PROMPT]
    }
    fn produces(&self) -> &'static [DataKey] {
        &[PRECISE_PREFIX_CACHE_MATCH_INFO]
    }
    fn pool_changed(&self, addresses: &[&str]) {
        self.index.retain_endpoints(addresses);
    }
}

impl DataProducer for PrecisePrefixCacheProducer {
    fn produce(
        &self,
        cx: &ProduceContext<'_>,
        candidates: &[usize],
        cycle: &mut CycleState,
        state: &mut RequestState,
    ) {
        let Some(prompt) = cycle.get_mut::<TokenizedPrompt>(TOKENIZED_PROMPT) else {
            return;
        };
        let Matched {
            keys,
            matches,
            held,
        } = match self.matches_for(cx, candidates, prompt) {
            Ok(m) if !m.keys.is_empty() => m,
            Ok(_) => return,
            Err(e) => {
                log::debug!("{}: prompt not tokenised: {}", self.typed_name, e);
                return;
            }
        };
        cycle.put(PRECISE_PREFIX_CACHE_MATCH_INFO, matches);
        if self.speculative_ttl_ms.is_some() {
            state.put(&self.typed_name.name, Pending { keys, held });
        }
    }
}

impl PreRequest for PrecisePrefixCacheProducer {
    fn pre_request(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
        state: &mut RequestState,
    ) {
        let Some(ttl) = self.speculative_ttl_ms else {
            return;
        };
        let Some(p) = state.get_mut::<Pending>(&self.typed_name.name) else {
            return;
        };
        let primary = result.primary_targets().first().copied();
        let prefill = result
            .profile("prefill")
            .and_then(|r| r.targets.first().copied());
        for i in [primary, prefill].into_iter().flatten() {
            if let Some(ep) = cx.endpoint(i) {
                // The leading keys it already holds (reported, or credited by an earlier
                // pick within the TTL) are not credited again: a typical chat prompt repeats
                // a long held prefix, and re-inserting it cost a lookup per block.
                let from = p.held.get(i).map_or(0, |&h| h as usize);
                let new = p.keys.get(from..).unwrap_or_default();
                self.index
                    .speculate(&ep.address, new, cx.now_ms.saturating_add(ttl));
            }
        }
    }
}

impl KvEventSink for PrecisePrefixCacheProducer {
    fn settings(&self) -> &KvEventsSettings {
        &self.settings
    }

    fn apply(&self, endpoint: &str, events: &[KvEvent]) {
        let a = self.index.apply(endpoint, events);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.stored.fetch_add(a.stored as u64, Ordering::Relaxed);
        self.removed.fetch_add(a.removed as u64, Ordering::Relaxed);
        self.orphans.fetch_add(a.orphans as u64, Ordering::Relaxed);
        self.cleared.fetch_add(a.cleared as u64, Ordering::Relaxed);
    }

    fn counters(&self) -> KvEventCounters {
        KvEventCounters {
            batches: self.batches.load(Ordering::Relaxed),
            blocks_stored: self.stored.load(Ordering::Relaxed),
            blocks_removed: self.removed.load(Ordering::Relaxed),
            orphans: self.orphans.load(Ordering::Relaxed),
            cleared: self.cleared.load(Ordering::Relaxed),
        }
    }

    fn index_stats(&self) -> IndexStats {
        self.index.stats()
    }
}
