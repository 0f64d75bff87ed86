//! `prefix-cache-affinity-filter`: keeps only endpoints that hold most of the prompt's prefix,
//! so a cache hit is not diluted by load scores; falls back to all when none qualifies.
//!
//! Behaviour (GIE `scheduling/filter/prefixcacheaffinity/`): keeps endpoints whose prefix match
//! ratio ≥ `affinityThreshold`; if none qualifies, keeps all. With probability
//! `explorationProbability` it skips the gate, so new endpoints still warm up. `maxTTFTPenaltyMs`
//! applies to latency predictions, which this picker does not have; it is accepted and unused.
//!
//! Parameters: `affinityThreshold` (0..1, default 0.80), `explorationProbability` (0..1, default
//! 0.01), `maxTTFTPenaltyMs` (default 5000). Consumes the prefix match info.

use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, DataKey, Filter, Plugin, TypedName};
use crate::plugins::producer::approx_prefix_cache::{PrefixMatch, PREFIX_CACHE_MATCH_INFO};
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "prefix-cache-affinity-filter";

/// Parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Params {
    /// Minimum match ratio to stay.
    pub affinity_threshold: f64,
    /// Chance of skipping the gate.
    pub exploration_probability: f64,
    /// Accepted for GIE compatibility; unused without latency predictions.
    #[serde(rename = "maxTTFTPenaltyMs")]
    pub max_ttft_penalty_ms: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            affinity_threshold: 0.8,
            exploration_probability: 0.01,
            max_ttft_penalty_ms: 5000.0,
        }
    }
}

/// Builds a [`PrefixCacheAffinityFilter`].
///
/// # Errors
/// Unknown fields; a threshold or probability outside [0, 1].
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if !(0.0..=1.0).contains(&p.affinity_threshold) {
        return Err(ConfigError::invalid(
            FieldPath::key("affinityThreshold"),
            "must be within [0, 1]",
        ));
    }
    if !(0.0..=1.0).contains(&p.exploration_probability) {
        return Err(ConfigError::invalid(
            FieldPath::key("explorationProbability"),
            "must be within [0, 1]",
        ));
    }
    Ok(Arc::new(PrefixCacheAffinityFilter {
        typed_name: TypedName::new(TYPE, name),
        threshold: p.affinity_threshold,
        exploration: p.exploration_probability,
    }))
}

/// See the module docs.
pub struct PrefixCacheAffinityFilter {
    typed_name: TypedName,
    threshold: f64,
    exploration: f64,
}

impl Plugin for PrefixCacheAffinityFilter {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_filter(&self) -> Option<&dyn Filter> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        &[PREFIX_CACHE_MATCH_INFO]
    }
}

impl Filter for PrefixCacheAffinityFilter {
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        rng: &mut dyn Rng,
    ) {
        if self.exploration > 0.0 && rng.next_f64() < self.exploration {
            return;
        }
        let Some(info) = cx.state.get::<Vec<PrefixMatch>>(PREFIX_CACHE_MATCH_INFO) else {
            return;
        };
        let mut any = false;
        for (k, &i) in keep.iter_mut().zip(candidates) {
            *k = info
                .get(i)
                .is_some_and(|m| m.total_blocks > 0 && m.ratio() >= self.threshold);
            any |= *k;
        }
        if !any {
            keep.fill(true);
        }
    }
}
