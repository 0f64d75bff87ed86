//! `prefix-cache-scorer`: prefers endpoints that likely hold the prompt's prefix in KV cache.
//!
//! Formula (GIE `scorer/prefix/plugin.go` at GIE@1748e829; the length term from llm-d-router's
//! PR #1459, `scorer/prefix/plugin.go` at `ebab687`), from the [`PrefixMatch`] that
//! `approx-prefix-cache-producer` writes for each endpoint:
//!
//! ```text
//! ratio  = matchBlocks / totalBlocks
//! length = min(1, matchBlocks × blockSizeTokens / matchLengthScaleTokens)²
//! score  = matchLengthWeight × length + (1 − matchLengthWeight) × ratio
//! ```
//!
//! 0 when there is no match info or the prompt produced no blocks. The square favours long
//! cached prefixes, as attention work grows with the square of the prompt length; with the
//! default weight 0 the score is the ratio alone (GIE's). Consumes
//! [`PREFIX_CACHE_MATCH_INFO`], so the producer is created automatically when missing.
//! Category: Affinity. Parameters: `matchLengthWeight` (fraction 0..1, default 0),
//! `matchLengthScaleTokens` (tokens, default 8,192; > 0 when the weight is; upstream advises the
//! workload's p95 prompt length); `prefixMatchInfoProducerName` (llm-d): the producer whose
//! match to read; naming a `precise-prefix-cache-producer` or a `burst-prefix-cache-producer`
//! (declared before this plugin) reads [`PRECISE_PREFIX_CACHE_MATCH_INFO`] or
//! [`BURST_PREFIX_CACHE_MATCH_INFO`] instead. Tuning goes on the producer, as in GIE.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, DataKey, Plugin, Scorer, ScorerCategory, TypedName};
use crate::plugins::producer::approx_prefix_cache::{PrefixMatch, PREFIX_CACHE_MATCH_INFO};
use crate::plugins::producer::burst_prefix_cache::{self, BURST_PREFIX_CACHE_MATCH_INFO};
use crate::plugins::producer::precise_prefix_cache::{self, PRECISE_PREFIX_CACHE_MATCH_INFO};
use serde::Deserialize;

/// Parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Params {
    /// Name of the producer whose prefix match is read.
    pub prefix_match_info_producer_name: Option<alloc::string::String>,
    /// Weight of the match-length term, fraction 0..1.
    pub match_length_weight: f64,
    /// Cached tokens at which the match-length term reaches 1.
    pub match_length_scale_tokens: i64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            prefix_match_info_producer_name: None,
            match_length_weight: 0.0,
            match_length_scale_tokens: DEFAULT_MATCH_LENGTH_SCALE_TOKENS,
        }
    }
}

/// The scorer's own parameter names: not forwarded to the producer the loader creates for it
/// from its parameters (GIE's loader behaviour; `config/loader/plugins.rs`).
pub const OWN_PARAMS: [&str; 3] = [
    "prefixMatchInfoProducerName",
    "matchLengthWeight",
    "matchLengthScaleTokens",
];

/// Default `matchLengthScaleTokens` (llm-d-router's).
pub const DEFAULT_MATCH_LENGTH_SCALE_TOKENS: i64 = 8192;

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
/// Unknown parameter fields; `matchLengthWeight` outside 0..=1; `matchLengthScaleTokens` ≤ 0
/// with a weight above 0.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let weight = p.match_length_weight;
    if !(0.0..=1.0).contains(&weight) {
        return Err(ConfigError::invalid(
            FieldPath::key("matchLengthWeight"),
            "must be between 0.0 and 1.0",
        ));
    }
    if weight > 0.0 && p.match_length_scale_tokens <= 0 {
        return Err(ConfigError::invalid(
            FieldPath::key("matchLengthScaleTokens"),
            "must be greater than 0 when matchLengthWeight is above 0",
        ));
    }
    let key = match_key_for(p.prefix_match_info_producer_name.as_deref(), handle);
    Ok(Arc::new(PrefixCacheScorer {
        match_length_weight: weight,
        // Only read when the weight is above 0, where it is ≥ 1.
        match_length_scale_tokens: p.match_length_scale_tokens.max(1) as f64,
        ..PrefixCacheScorer::new(name, key)
    }))
}

/// See the module docs.
pub struct PrefixCacheScorer {
    typed_name: TypedName,
    key: DataKey,
    match_length_weight: f64,
    match_length_scale_tokens: f64,
}

impl PrefixCacheScorer {
    /// A scorer named `name` reading the match under `key`, by match ratio alone.
    pub fn new(name: &str, key: DataKey) -> Self {
        PrefixCacheScorer {
            typed_name: TypedName::new(TYPE, name),
            key,
            match_length_weight: 0.0,
            match_length_scale_tokens: DEFAULT_MATCH_LENGTH_SCALE_TOKENS as f64,
        }
    }

    /// The score of one endpoint's match, 0..1 (see the module docs).
    fn score_of(&self, m: &PrefixMatch) -> f64 {
        let ratio = m.ratio();
        let w = self.match_length_weight;
        if w <= 0.0 || m.total_blocks == 0 {
            return ratio;
        }
        let length = (m.cached_tokens() as f64 / self.match_length_scale_tokens).min(1.0);
        w * length * length + (1.0 - w) * ratio
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
            *s = info.get(i).map_or(0.0, |m| self.score_of(m));
        }
    }
}
