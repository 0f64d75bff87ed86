//! `lora-affinity-scorer`: prefers endpoints that already run the request's LoRA adapter.
//!
//! Rules, first match wins (GIE `scorer/loraaffinity/lora_affinity.go` at GIE@1748e829), for
//! the request's target model (after rewrite):
//! - 1.0 — the adapter is active (`running_lora_adapters`);
//! - 0.8 — there is room to load it: |active| + |waiting| < `max_lora`;
//! - 0.6 — the adapter is waiting to be loaded (`waiting_lora_adapters`);
//! - 0.0 — otherwise.
//!
//! Category: Affinity. Parameters: none.

use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Plugin, Scorer, ScorerCategory, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "lora-affinity-scorer";

/// Builds a [`LoraAffinityScorer`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(LoraAffinityScorer {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct LoraAffinityScorer {
    typed_name: TypedName,
}

impl Plugin for LoraAffinityScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
}

impl Scorer for LoraAffinityScorer {
    fn category(&self) -> ScorerCategory {
        ScorerCategory::Affinity
    }

    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let model = cx.request.target_model.as_ref();
        for (s, &i) in scores.iter_mut().zip(candidates) {
            let Some(m) = cx.endpoint(i).map(|e| &e.metrics) else {
                continue;
            };
            let loaded = m.active_lora_adapters.len() + m.waiting_lora_adapters.len();
            *s = if m.active_lora_adapters.iter().any(|a| a == model) {
                1.0
            } else if loaded < m.max_lora_adapters as usize {
                0.8
            } else if m.waiting_lora_adapters.iter().any(|a| a == model) {
                0.6
            } else {
                0.0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::endpoint::Endpoint;
    use crate::model::request::InferenceRequest;
    use crate::plugins::testing::scores_for_request;
    use alloc::string::String;
    use alloc::vec::Vec;

    fn lora(active: &[&str], waiting: &[&str], max: u32) -> Endpoint {
        let mut e = Endpoint::new("10.0.0.1:8000");
        e.metrics.active_lora_adapters = active.iter().map(|s| String::from(*s)).collect();
        e.metrics.waiting_lora_adapters = waiting.iter().map(|s| String::from(*s)).collect();
        e.metrics.max_lora_adapters = max;
        e
    }

    #[test]
    fn gie_mixed_table() {
        // GIE lora_affinity_test.go "mixed" case: 1.0 / 0.8 / 0.8 / 0.6 / 0.0.
        let eps: Vec<Endpoint> = alloc::vec![
            lora(&["sql"], &[], 2),    // active → 1.0
            lora(&["other"], &[], 2),  // 1 loaded < 2 → room → 0.8
            lora(&[], &[], 1),         // 0 loaded < 1 → room → 0.8
            lora(&["a"], &["sql"], 2), // full (2 of 2), but waiting → 0.6
            lora(&["a", "b"], &[], 2), // full and not waiting → 0.0
        ];
        let req = InferenceRequest::new("sql", "");
        assert_eq!(
            scores_for_request(super::TYPE, &eps, &req),
            [1.0, 0.8, 0.8, 0.6, 0.0]
        );
    }
}
