//! `prefix-cache-scorer`: prefers endpoints that likely hold the prompt's prefix in KV cache.
//!
//! Formula (GIE `scorer/prefix/plugin.go` at GIE@1748e829): `score = matchBlocks / totalBlocks`
//! from the [`PrefixMatch`] that `approx-prefix-cache-producer` writes for each endpoint; 0 when
//! there is no match info or the prompt produced no blocks. Consumes
//! [`PREFIX_CACHE_MATCH_INFO`], so the producer is created automatically when missing.
//! Category: Affinity. Parameters: none (as in GIE, tuning goes on the producer).

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, DataKey, Plugin, Scorer, ScorerCategory, TypedName};
use crate::plugins::producer::approx_prefix_cache::{PrefixMatch, PREFIX_CACHE_MATCH_INFO};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "prefix-cache-scorer";

/// Builds a [`PrefixCacheScorer`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(PrefixCacheScorer {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct PrefixCacheScorer {
    typed_name: TypedName,
}

impl Plugin for PrefixCacheScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        &[PREFIX_CACHE_MATCH_INFO]
    }
}

impl Scorer for PrefixCacheScorer {
    fn category(&self) -> ScorerCategory {
        ScorerCategory::Affinity
    }

    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let Some(info) = cx.state.get::<Vec<PrefixMatch>>(PREFIX_CACHE_MATCH_INFO) else {
            return;
        };
        for (s, &i) in scores.iter_mut().zip(candidates) {
            *s = info.get(i).map_or(0.0, PrefixMatch::ratio);
        }
    }
}
