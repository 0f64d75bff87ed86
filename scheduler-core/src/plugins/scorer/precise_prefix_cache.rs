//! `precise-prefix-cache-scorer` (llm-d, deprecated there): `precise-prefix-cache-producer` and
//! `prefix-cache-scorer` behind one plugin type, as older llm-d configs write it.
//!
//! - When a plugin named `precise-prefix-cache-producer` was declared before it, this is a
//!   `prefix-cache-scorer` reading that producer's match, and its own parameters are ignored
//!   (with a warning), as upstream does.
//! - Otherwise it builds its own producer from its parameters (the producer's, see
//!   [`crate::plugins::producer::precise_prefix_cache`]) and is scorer, producer, PreRequest and
//!   KV-event sink at once. Tokens come from `token-producer` (created with no parameters when
//!   none is configured; give it `modelName` or `tokenizerPath` to make it tokenise).
//!
//! Score: `matchBlocks / totalBlocks` of the precise match, as `prefix-cache-scorer`.

use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::kvcache::{IndexStats, KvEvent};
use crate::model::result::SchedulingResult;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleContext, CycleState, DataKey, DataProducer, KvEventCounters, KvEventSink,
    KvEventsSettings, Plugin, PreRequest, ProduceContext, RequestState, Scorer, ScorerCategory,
    TypedName, TOKENIZED_PROMPT,
};
use crate::plugins::producer::precise_prefix_cache::{
    self as producer, PrecisePrefixCacheProducer, PRECISE_PREFIX_CACHE_MATCH_INFO,
};
use crate::plugins::scorer::prefix_cache::PrefixCacheScorer;

/// Plugin type name.
pub const TYPE: &str = "precise-prefix-cache-scorer";

/// Builds the scorer (see the module docs).
///
/// # Errors
/// As `precise-prefix-cache-producer`'s factory.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    if handle
        .plugin(producer::TYPE)
        .is_some_and(|p| p.produces().contains(&PRECISE_PREFIX_CACHE_MATCH_INFO))
    {
        if params.is_some_and(|p| !p.is_null()) {
            log::warn!("{TYPE} '{name}': a '{}' is configured; this plugin reads its match and ignores its own parameters", producer::TYPE);
        }
        return Ok(Arc::new(PrefixCacheScorer::new(
            name,
            PRECISE_PREFIX_CACHE_MATCH_INFO,
        )));
    }
    let p: producer::Params = parse_params(params)?;
    Ok(Arc::new(PrecisePrefixCacheScorer {
        typed_name: TypedName::new(TYPE, name),
        producer: PrecisePrefixCacheProducer::from_params(name, p)?,
        scorer: PrefixCacheScorer::new(name, PRECISE_PREFIX_CACHE_MATCH_INFO),
    }))
}

/// The self-contained form (see the module docs).
pub struct PrecisePrefixCacheScorer {
    typed_name: TypedName,
    producer: PrecisePrefixCacheProducer,
    scorer: PrefixCacheScorer,
}

impl Plugin for PrecisePrefixCacheScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
    fn as_data_producer(&self) -> Option<&dyn DataProducer> {
        Some(self)
    }
    fn as_pre_request(&self) -> Option<&dyn PreRequest> {
        self.producer
            .as_pre_request()
            .map(|_| self as &dyn PreRequest)
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
        self.producer.pool_changed(addresses);
    }
}

impl Scorer for PrecisePrefixCacheScorer {
    fn category(&self) -> ScorerCategory {
        ScorerCategory::Affinity
    }
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        Scorer::score(&self.scorer, cx, candidates, scores);
    }
}

impl DataProducer for PrecisePrefixCacheScorer {
    fn produce(
        &self,
        cx: &ProduceContext<'_>,
        candidates: &[usize],
        cycle: &mut CycleState,
        state: &mut RequestState,
    ) {
        self.producer.produce(cx, candidates, cycle, state);
    }
}

impl PreRequest for PrecisePrefixCacheScorer {
    fn pre_request(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
        state: &mut RequestState,
    ) {
        self.producer.pre_request(cx, result, state);
    }
}

impl KvEventSink for PrecisePrefixCacheScorer {
    fn settings(&self) -> &KvEventsSettings {
        self.producer.settings()
    }
    fn apply(&self, endpoint: &str, events: &[KvEvent]) {
        self.producer.apply(endpoint, events);
    }
    fn counters(&self) -> KvEventCounters {
        self.producer.counters()
    }
    fn index_stats(&self) -> IndexStats {
        self.producer.index_stats()
    }
}
