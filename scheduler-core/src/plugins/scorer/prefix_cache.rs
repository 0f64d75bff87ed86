//! `prefix-cache-scorer`: prefers endpoints that likely hold the prompt's prefix in KV cache.
//!
//! Formula (GIE `scorer/prefix/plugin.go` at GIE@1748e829): `score = matchBlocks / totalBlocks`
//! from the [`PrefixMatch`] that `approx-prefix-cache-producer` writes for each endpoint; 0 when
//! there is no match info or the prompt produced no blocks. Consumes
//! [`PREFIX_CACHE_MATCH_INFO`], so the producer is created automatically when missing.
//! Category: Affinity. Parameters: `prefixMatchInfoProducerName` (llm-d): the producer whose
//! match to read; naming a `precise-prefix-cache-producer` or a `burst-prefix-cache-producer`
//! (declared before this plugin) reads [`PRECISE_PREFIX_CACHE_MATCH_INFO`] or
//! [`BURST_PREFIX_CACHE_MATCH_INFO`] instead. Tuning goes on the producer, as in GIE.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, DataKey, Plugin, Scorer, ScorerCategory, TypedName};
use crate::plugins::producer::approx_prefix_cache::{PrefixMatch, PREFIX_CACHE_MATCH_INFO};
use crate::plugins::producer::burst_prefix_cache::{self, BURST_PREFIX_CACHE_MATCH_INFO};
use crate::plugins::producer::precise_prefix_cache::{self, PRECISE_PREFIX_CACHE_MATCH_INFO};
use serde::Deserialize;

/// Parameters.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Params {
    /// Name of the producer whose prefix match is read.
    pub prefix_match_info_producer_name: Option<alloc::string::String>,
}

/// Which match key a consumer of prefix-match info reads, given llm-d's
/// `prefixMatchInfoProducerName`: the named plugin's (declared earlier) when it produces the
/// precise or the burst producer's match, else the one of the producer type the name spells;
/// else the approximate producer's.
pub fn match_key_for(producer: Option<&str>, handle: &Handle<'_>) -> DataKey {
    let Some(name) = producer.filter(|n| !n.is_empty()) else {
        return PREFIX_CACHE_MATCH_INFO;
    };
    let named = [
        PRECISE_PREFIX_CACHE_MATCH_INFO,
        BURST_PREFIX_CACHE_MATCH_INFO,
    ];
    match handle.plugin(name) {
        Some(p) => named
            .into_iter()
            .find(|k| p.produces().contains(k))
            .unwrap_or(PREFIX_CACHE_MATCH_INFO),
        None if name == precise_prefix_cache::TYPE => PRECISE_PREFIX_CACHE_MATCH_INFO,
        None if name == burst_prefix_cache::TYPE => BURST_PREFIX_CACHE_MATCH_INFO,
        None => PREFIX_CACHE_MATCH_INFO,
    }
}

/// What a consumer of match key `key` (from [`match_key_for`]) declares in
/// [`Plugin::consumes`]: that key, as a `'static` slice.
pub fn consumed(key: DataKey) -> &'static [DataKey] {
    if key == PRECISE_PREFIX_CACHE_MATCH_INFO {
        &[PRECISE_PREFIX_CACHE_MATCH_INFO]
    } else if key == BURST_PREFIX_CACHE_MATCH_INFO {
        &[BURST_PREFIX_CACHE_MATCH_INFO]
    } else {
        &[PREFIX_CACHE_MATCH_INFO]
    }
}

/// Plugin type name.
pub const TYPE: &str = "prefix-cache-scorer";

/// Builds a [`PrefixCacheScorer`].
///
/// # Errors
/// Unknown parameter fields.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    Ok(Arc::new(PrefixCacheScorer::new(
        name,
        match_key_for(p.prefix_match_info_producer_name.as_deref(), handle),
    )))
}

/// See the module docs.
pub struct PrefixCacheScorer {
    typed_name: TypedName,
    key: DataKey,
}

impl PrefixCacheScorer {
    /// A scorer named `name` reading the match under `key`.
    pub fn new(name: &str, key: DataKey) -> Self {
        PrefixCacheScorer {
            typed_name: TypedName::new(TYPE, name),
            key,
        }
    }
}

impl Plugin for PrefixCacheScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        consumed(self.key)
    }
}

impl Scorer for PrefixCacheScorer {
    fn category(&self) -> ScorerCategory {
        ScorerCategory::Affinity
    }

    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let Some(info) = cx.state.get::<Vec<PrefixMatch>>(self.key) else {
            return;
        };
        for (s, &i) in scores.iter_mut().zip(candidates) {
            *s = info.get(i).map_or(0.0, PrefixMatch::ratio);
        }
    }
}
