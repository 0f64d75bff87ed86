//! llm-d's multi-cluster scorers (Alpha), for a picker whose endpoints are clusters: they read
//! the pool averages `multicluster-metrics-extractor` publishes (llm-d-router
//! `scorer/{kvcacheutilization,queuedepth}/multicluster.go`, in our words). Both are
//! [`EndpointAttributeScorer`]s over one attribute, lower is better:
//!
//! - `multicluster-kv-cache-utilization-scorer`: `1 − utilisation` (fixed range 0..1).
//! - `multicluster-queue-scorer`: `(max − q) / (max − min)` over the clusters that report a
//!   queue size, 1.0 when they all report the same (adaptive range).
//!
//! A cluster without the attribute scores 0. No parameters.

use alloc::string::String;
use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, TypedName};
use crate::plugins::datalayer::multicluster::{KV_CACHE_UTILIZATION_KEY, QUEUE_SIZE_KEY};
use crate::plugins::scorer::endpoint_attribute::EndpointAttributeScorer;
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
    Ok(Arc::new(EndpointAttributeScorer::new(
        TypedName::new(KV_TYPE, name),
        String::from(KV_CACHE_UTILIZATION_KEY),
        true,
        Some((0.0, 1.0)),
    )))
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
    Ok(Arc::new(EndpointAttributeScorer::new(
        TypedName::new(QUEUE_TYPE, name),
        String::from(QUEUE_SIZE_KEY),
        true,
        None,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::Endpoint;
    use crate::model::request::InferenceRequest;
    use crate::plugin::{CycleContext, CycleState};
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
