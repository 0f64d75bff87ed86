//! `utilization-filter` (llm-d, Alpha): drops the candidates over any of a list of load caps
//! (llm-d-router `scheduling/filter/utilization`, read at the commit in
//! `testdata/upstream/README.md`).
//!
//! Each condition caps one load signal of an endpoint; an endpoint is kept only when every
//! signal is at most its cap (`value ≤ maxValue`), so several conditions drop an endpoint when
//! any one of them is exceeded. The signals:
//! - `active-requests`: the requests this picker has sent to the endpoint and not yet seen end
//!   (queued and running alike), from `inflight-load-producer` (created when the config has none);
//! - `running-requests`: the model server's own running count (scraped);
//! - `waiting-queue`: the model server's waiting-queue length (scraped);
//! - `kv-cache-utilization`: the model server's KV-cache usage, a fraction 0..1 (scraped).
//!
//! A signal the endpoint has not reported counts as 0, as upstream. When every candidate is
//! dropped the request gets 429 (no target endpoint), unless `fallbackOnEmpty: true`, which
//! keeps all of them. Unlike `utilization-detector` this is only a filter (no saturation) and
//! does not look at metric age.
//!
//! Parameters: `conditions` (required, at least one) `[{metric, maxValue}]`, `maxValue` ≥ 0 and
//! ≤ 1 for `kv-cache-utilization`; `fallbackOnEmpty` (default false);
//! `inFlightLoadProducerName` (accepted; this engine has one in-flight producer per config).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::model::endpoint::Endpoint;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, DataKey, Filter, Plugin, TypedName};
use crate::plugins::producer::inflight_load::{load_of, InflightLoad, INFLIGHT_LOAD};
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "utilization-filter";

/// One load signal a condition caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Requests in flight from this picker (`active-requests`).
    ActiveRequests,
    /// The server's running requests (`running-requests`).
    RunningRequests,
    /// The server's waiting queue (`waiting-queue`).
    WaitingQueue,
    /// The server's KV-cache usage, fraction 0..1 (`kv-cache-utilization`).
    KvCacheUtilization,
}

impl Metric {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active-requests" => Metric::ActiveRequests,
            "running-requests" => Metric::RunningRequests,
            "waiting-queue" => Metric::WaitingQueue,
            "kv-cache-utilization" => Metric::KvCacheUtilization,
            _ => return None,
        })
    }

    /// The endpoint's value of this signal; `inflight` is its in-flight load.
    fn value(self, endpoint: &Endpoint, inflight: InflightLoad) -> f64 {
        let m = &endpoint.metrics;
        match self {
            Metric::ActiveRequests => inflight.requests as f64,
            Metric::RunningRequests => f64::from(m.running_requests),
            Metric::WaitingQueue => f64::from(m.waiting_queue_size),
            Metric::KvCacheUtilization => m.kv_cache_usage,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCondition {
    #[serde(default)]
    metric: String,
    #[serde(default)]
    max_value: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    conditions: Vec<RawCondition>,
    fallback_on_empty: bool,
    in_flight_load_producer_name: String,
}

/// Builds a [`UtilizationFilter`].
///
/// # Errors
/// Unknown fields; no `conditions`; a condition whose `metric` is not one of the four, whose
/// `maxValue` is missing, negative or not finite, or above 1 for `kv-cache-utilization`.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let _ = p.in_flight_load_producer_name;
    if p.conditions.is_empty() {
        return Err(ConfigError::invalid(
            FieldPath::key("conditions"),
            "needs at least one condition",
        ));
    }
    let mut conditions = Vec::with_capacity(p.conditions.len());
    for (i, c) in p.conditions.iter().enumerate() {
        let at = FieldPath::key("conditions").with_index(i);
        let metric = Metric::parse(&c.metric).ok_or_else(|| {
            ConfigError::invalid(
                at.clone().with_key("metric"),
                "must be one of active-requests, running-requests, waiting-queue, kv-cache-utilization",
            )
        })?;
        let max = c
            .max_value
            .ok_or_else(|| ConfigError::invalid(at.clone().with_key("maxValue"), "is required"))?;
        if !(max >= 0.0 && max.is_finite()) {
            return Err(ConfigError::invalid(
                at.with_key("maxValue"),
                "must be a number ≥ 0",
            ));
        }
        if metric == Metric::KvCacheUtilization && max > 1.0 {
            return Err(ConfigError::invalid(
                at.with_key("maxValue"),
                "is a fraction for kv-cache-utilization and must be ≤ 1",
            ));
        }
        conditions.push((metric, max));
    }
    Ok(Arc::new(UtilizationFilter {
        typed_name: TypedName::new(TYPE, name),
        conditions,
        fallback_on_empty: p.fallback_on_empty,
    }))
}

/// See the module docs.
pub struct UtilizationFilter {
    typed_name: TypedName,
    /// `(signal, cap)`: kept while every signal ≤ its cap.
    conditions: Vec<(Metric, f64)>,
    fallback_on_empty: bool,
}

impl Plugin for UtilizationFilter {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_filter(&self) -> Option<&dyn Filter> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        // The in-flight counts only when a condition reads them (scraped signals need none).
        if self
            .conditions
            .iter()
            .any(|&(m, _)| m == Metric::ActiveRequests)
        {
            &[INFLIGHT_LOAD]
        } else {
            &[]
        }
    }
}

impl Filter for UtilizationFilter {
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        _: &mut dyn Rng,
    ) {
        let loads = cx.state.get::<Vec<InflightLoad>>(INFLIGHT_LOAD);
        let mut any = false;
        for (k, &i) in keep.iter_mut().zip(candidates) {
            let inflight = load_of(loads, i);
            *k = cx.endpoints.get(i).is_some_and(|e| {
                self.conditions
                    .iter()
                    .all(|&(m, max)| m.value(e, inflight) <= max)
            });
            any |= *k;
        }
        if !any && self.fallback_on_empty {
            keep.iter_mut().for_each(|k| *k = true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::EndpointMetrics;
    use crate::plugin::CycleState;
    use serde_json::json;

    /// Kept flags for endpoints with (running, waiting, kv, in-flight requests).
    fn run(params: serde_json::Value, eps: &[(u32, u32, f64, u64)]) -> Vec<bool> {
        let f = factory("f", Some(&params), &Handle::new(&[])).unwrap();
        let endpoints: Vec<Endpoint> = eps
            .iter()
            .map(|&(running, waiting, kv, _)| {
                Endpoint::new("10.0.0.1:8000").with_metrics(EndpointMetrics {
                    running_requests: running,
                    waiting_queue_size: waiting,
                    kv_cache_usage: kv,
                    ..Default::default()
                })
            })
            .collect();
        let mut state = CycleState::new();
        state.put(
            INFLIGHT_LOAD,
            eps.iter()
                .map(|&(.., requests)| InflightLoad {
                    requests,
                    tokens: 0,
                })
                .collect::<Vec<_>>(),
        );
        crate::plugins::testing::kept(&*f, &endpoints, &state)
    }

    #[test]
    fn an_endpoint_over_any_cap_is_dropped() {
        // The upstream README's example: > 40 running, a non-empty queue or KV > 0.8 drops it.
        let p = json!({"conditions": [
            {"metric": "running-requests", "maxValue": 40},
            {"metric": "waiting-queue", "maxValue": 0},
            {"metric": "kv-cache-utilization", "maxValue": 0.8}]});
        let eps = [
            (40, 0, 0.8, 0), // every signal at its cap: kept (≤)
            (41, 0, 0.1, 0), // too many running
            (3, 1, 0.1, 0),  // a queue
            (3, 0, 0.81, 0), // KV over
        ];
        assert_eq!(run(p, &eps), [true, false, false, false]);
    }

    #[test]
    fn active_requests_come_from_the_in_flight_counts() {
        let p = json!({"conditions": [{"metric": "active-requests", "maxValue": 2}]});
        let f = factory("f", Some(&p), &Handle::new(&[])).unwrap();
        assert_eq!(f.consumes(), &[INFLIGHT_LOAD]);
        assert_eq!(run(p, &[(0, 0, 0.0, 2), (0, 0, 0.0, 3)]), [true, false]);
        let scraped = json!({"conditions": [{"metric": "waiting-queue", "maxValue": 0}]});
        assert!(factory("f", Some(&scraped), &Handle::new(&[]))
            .unwrap()
            .consumes()
            .is_empty());
    }

    #[test]
    fn all_dropped_is_empty_unless_fallback_on_empty() {
        let eps = [(5, 1, 0.0, 0), (5, 2, 0.0, 0)];
        let cap = json!([{"metric": "waiting-queue", "maxValue": 0}]);
        assert_eq!(run(json!({"conditions": cap}), &eps), [false, false]);
        assert_eq!(
            run(json!({"conditions": cap, "fallbackOnEmpty": true}), &eps),
            [true, true]
        );
    }

    #[test]
    fn bad_parameters_are_errors() {
        for bad in [
            json!({}),
            json!({"conditions": []}),
            json!({"conditions": [{"metric": "gpu-temperature", "maxValue": 1}]}),
            json!({"conditions": [{"metric": "waiting-queue"}]}),
            json!({"conditions": [{"metric": "waiting-queue", "maxValue": -1}]}),
            json!({"conditions": [{"metric": "kv-cache-utilization", "maxValue": 1.5}]}),
        ] {
            assert!(
                factory("f", Some(&bad), &Handle::new(&[])).is_err(),
                "{bad}"
            );
        }
    }
}
