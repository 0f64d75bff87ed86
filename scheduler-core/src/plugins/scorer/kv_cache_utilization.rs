//! `kv-cache-utilization-scorer`: prefers endpoints with free KV cache.
//!
//! Formula (GIE `scorer/kvcacheutilization/`): `score = 1 − kv_cache_usage` (usage a fraction
//! 0..1). Category: Distribution. Parameters: none.

use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Plugin, Scorer, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "kv-cache-utilization-scorer";

/// Builds a [`KvCacheUtilizationScorer`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(KvCacheUtilizationScorer {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct KvCacheUtilizationScorer {
    typed_name: TypedName,
}

impl Plugin for KvCacheUtilizationScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
}

impl Scorer for KvCacheUtilizationScorer {
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        for (s, &i) in scores.iter_mut().zip(candidates) {
            *s = cx
                .endpoint(i)
                .map_or(0.0, |e| 1.0 - e.metrics.kv_cache_usage);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::testing::{ep, scores_of};

    #[test]
    fn one_minus_usage() {
        let eps = [ep(0, 0.8), ep(0, 0.5), ep(0, 0.0)];
        let got = scores_of(super::TYPE, &eps);
        let want = [0.2, 0.5, 1.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{got:?}");
        }
    }
}
