//! `load-aware-scorer` (llm-d): scores by waiting-queue length against a threshold.
//!
//! Formula (llm-d `load-aware-scorer`, docs/SOURCES.md#gie-scorers): an empty queue scores 0.5; otherwise
//! `0.5 × (1 − min(q, threshold) / threshold)`. Parameter `threshold` (requests, default 128).
//! Category: Distribution.

use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Plugin, Scorer, TypedName};

/// Plugin type name.
pub const TYPE: &str = "load-aware-scorer";

/// Parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Params {
    /// Queue length at which the score reaches 0 (> 0). Default 128.
    pub threshold: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params { threshold: 128 }
    }
}

/// Builds a [`LoadAwareScorer`].
///
/// # Errors
/// Unknown fields; `threshold` of 0.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if p.threshold == 0 {
        return Err(ConfigError::invalid(
            FieldPath::key("threshold"),
            "must be > 0",
        ));
    }
    Ok(Arc::new(LoadAwareScorer {
        typed_name: TypedName::new(TYPE, name),
        threshold: p.threshold,
    }))
}

/// See the module docs.
pub struct LoadAwareScorer {
    typed_name: TypedName,
    threshold: u32,
}

impl Plugin for LoadAwareScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
}

impl Scorer for LoadAwareScorer {
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let t = f64::from(self.threshold);
        for (s, &i) in scores.iter_mut().zip(candidates) {
            let q = cx.endpoint(i).map_or(0, |e| e.metrics.waiting_queue_size);
            *s = if q == 0 {
                0.5
            } else {
                0.5 * (1.0 - f64::from(q.min(self.threshold)) / t)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::testing::{ep, scores_of};

    #[test]
    fn table() {
        // q=0 → 0.5; q=64 of 128 → 0.25; q≥128 → 0.
        assert_eq!(
            scores_of(super::TYPE, &[ep(0, 0.0), ep(64, 0.0), ep(500, 0.0)]),
            [0.5, 0.25, 0.0]
        );
    }
}
