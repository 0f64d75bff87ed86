//! `running-requests-size-scorer`: prefers endpoints running fewer requests.
//!
//! Formula (GIE `scorer/runningrequests/`): the queue scorer's min–max applied to
//! `vllm:num_requests_running`; all equal → 1.0. Category: Distribution. Parameters: none.

use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Plugin, Scorer, TypedName};
use crate::plugins::scorer::min_max_inverse;
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "running-requests-size-scorer";

/// Builds a [`RunningRequestsSizeScorer`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(RunningRequestsSizeScorer {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct RunningRequestsSizeScorer {
    typed_name: TypedName,
}

impl Plugin for RunningRequestsSizeScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
}

impl Scorer for RunningRequestsSizeScorer {
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let r = candidates.iter().map(|&i| {
            cx.endpoint(i)
                .map_or(0.0, |e| f64::from(e.metrics.running_requests))
        });
        min_max_inverse(r, scores);
    }
}

#[cfg(test)]
mod tests {
    use crate::model::endpoint::Endpoint;
    use crate::plugins::testing::scores_of;

    #[test]
    fn fewer_running_scores_higher() {
        let eps: [Endpoint; 3] = [4u32, 2, 0].map(|r| {
            let mut e = Endpoint::new("10.0.0.1:8000");
            e.metrics.running_requests = r;
            e
        });
        // max 4, min 0: (4−4)/4, (4−2)/4, (4−0)/4.
        assert_eq!(scores_of(super::TYPE, &eps), [0.0, 0.5, 1.0]);
    }
}
