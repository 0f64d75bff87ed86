//! `queue-scorer`: prefers endpoints with shorter waiting queues.
//!
//! Formula (GIE `scorer/queuedepth/queue.go` at GIE@1748e829): min–max over the candidates of
//! `vllm:num_requests_waiting`, `score = (max − q) / (max − min)`; all equal → 1.0.
//! Category: Distribution. Parameters: none.

use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Plugin, Scorer, TypedName};
use crate::plugins::scorer::min_max_inverse;
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "queue-scorer";

/// Builds a [`QueueScorer`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(QueueScorer {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct QueueScorer {
    typed_name: TypedName,
}

impl Plugin for QueueScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
}

impl Scorer for QueueScorer {
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let q = candidates.iter().map(|&i| {
            cx.endpoint(i)
                .map_or(0.0, |e| f64::from(e.metrics.waiting_queue_size))
        });
        min_max_inverse(q, scores);
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::testing::{ep, scores_of};

    #[test]
    fn table() {
        let cases = [
            // GIE queue_test.go "Different queue sizes": 10/5/0 → 0/0.5/1.
            ("different queue sizes", [10, 5, 0], [0.0, 0.5, 1.0]),
            // All equal → neutral 1.0.
            ("same queue sizes", [3, 3, 3], [1.0, 1.0, 1.0]),
            ("zero queue sizes", [0, 0, 0], [1.0, 1.0, 1.0]),
        ];
        for (name, q, want) in cases {
            let eps = q.map(|q| ep(q, 0.0));
            assert_eq!(scores_of(super::TYPE, &eps), want, "{name}");
        }
    }
}
