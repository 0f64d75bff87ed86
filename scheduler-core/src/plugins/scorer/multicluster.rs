//! llm-d's multi-cluster scorers (Alpha), for a picker whose endpoints are clusters: they read
//! the pool averages `multicluster-metrics-extractor` publishes (llm-d-router
//! `scorer/{kvcacheutilization,queuedepth}/multicluster.go`, in our words).
//!
//! - `multicluster-kv-cache-utilization-scorer`: `1 − utilisation`.
//! - `multicluster-queue-scorer`: `(max − q) / (max − min)` over the clusters that report a
//!   queue size, 1.0 when they all report the same.
//!
//! A cluster without the attribute scores 0. No parameters.

use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Plugin, Scorer, TypedName};
use crate::plugins::datalayer::multicluster::{KV_CACHE_UTILIZATION_KEY, QUEUE_SIZE_KEY};
use crate::plugins::NoParams;

/// Type name of the KV-cache scorer.
pub const KV_TYPE: &str = "multicluster-kv-cache-utilization-scorer";
/// Type name of the queue scorer.
pub const QUEUE_TYPE: &str = "multicluster-queue-scorer";

/// Builds the KV-cache scorer.
///
/// # Errors
/// Any parameter.
pub fn kv_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let _: NoParams = parse_params(params)?;
    Ok(Arc::new(PoolScorer {
        typed_name: TypedName::new(KV_TYPE, name),
        queue: false,
    }))
}

/// Builds the queue scorer.
///
/// # Errors
/// Any parameter.
pub fn queue_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let _: NoParams = parse_params(params)?;
    Ok(Arc::new(PoolScorer {
        typed_name: TypedName::new(QUEUE_TYPE, name),
        queue: true,
    }))
}

/// See the module docs.
pub struct PoolScorer {
    typed_name: TypedName,
    /// Queue scorer (else KV-cache).
    queue: bool,
}

impl Plugin for PoolScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
}

impl Scorer for PoolScorer {
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let key = if self.queue {
            QUEUE_SIZE_KEY
        } else {
            KV_CACHE_UTILIZATION_KEY
        };
        let value = |i: usize| cx.endpoint(i).and_then(|e| e.metrics.attribute(key));
        if !self.queue {
            for (&i, s) in candidates.iter().zip(scores.iter_mut()) {
                if let Some(u) = value(i) {
                    *s = 1.0 - u;
                }
            }
            return;
        }
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for q in candidates.iter().filter_map(|&i| value(i)) {
            lo = lo.min(q);
            hi = hi.max(q);
        }
        for (&i, s) in candidates.iter().zip(scores.iter_mut()) {
            if let Some(q) = value(i) {
                *s = if hi == lo { 1.0 } else { (hi - q) / (hi - lo) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::Endpoint;
    use crate::model::request::InferenceRequest;
    use crate::plugin::CycleState;
    use alloc::vec;
    use alloc::vec::Vec;

    fn scores(p: Arc<dyn Plugin>, key: &str, values: &[Option<f64>]) -> Vec<f64> {
        let eps: Vec<Endpoint> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut e = Endpoint::new(alloc::format!("gw-{i}:80"));
                if let Some(v) = v {
                    e.metrics.attributes.push((key.into(), *v));
                }
                e
            })
            .collect();
        let req = InferenceRequest::new("m", "");
        let state = CycleState::new();
        let cx = CycleContext {
            request: &req,
            endpoints: &eps,
            state: &state,
            now_ms: 0,
            peer: None,
        };
        let cands: Vec<usize> = (0..eps.len()).collect();
        let mut s = vec![0.0; eps.len()];
        p.as_scorer().unwrap().score(&cx, &cands, &mut s);
        s
    }

    #[test]
    fn formulas() {
        let kv = kv_factory(KV_TYPE, None, &Handle::new(&[])).unwrap();
        assert_eq!(
            scores(kv, KV_CACHE_UTILIZATION_KEY, &[Some(0.25), None, Some(1.0)]),
            vec![0.75, 0.0, 0.0]
        );
        let q = queue_factory(QUEUE_TYPE, None, &Handle::new(&[])).unwrap();
        assert_eq!(
            scores(
                q.clone(),
                QUEUE_SIZE_KEY,
                &[Some(2.0), Some(6.0), None, Some(4.0)]
            ),
            vec![1.0, 0.0, 0.0, 0.5]
        );
        assert_eq!(
            scores(q, QUEUE_SIZE_KEY, &[Some(3.0), Some(3.0)]),
            vec![1.0, 1.0]
        );
    }
}
