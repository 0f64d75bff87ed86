//! `latency-slo-admitter` (llm-d): denies a sheddable request (priority < 0) that carries a
//! latency objective when no candidate can serve it in time.
//!
//! Rules (llm-d-router `requestcontrol/admitter/latencyslo/`, in our words;
//! docs/SOURCES.md#predicted-latency): requests with priority ≥ 0, requests without a TTFT or TPOT
//! objective header, and requests scheduled while `predicted-latency-producer` (created when
//! missing) has no prediction are always admitted. A sheddable request is admitted when at least
//! one candidate is predicted to meet both objectives, is idle (the server reports no running
//! request), or is cold (KV-cache usage below 2 %, where predictions are least reliable); otherwise
//! it is denied with HTTP 500, the status llm-d's director gives every admission denial.
//!
//! Parameters: `latencyPredictionInfoProducerName` (accepted; one producer's predictions are
//! read).

use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, RequestError};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Admitter, CycleContext, DataKey, Plugin, TypedName};
use crate::plugins::producer::predicted_latency::{
    objective_ms, Predictions, LATENCY_PREDICTION_INFO, SLO_TPOT_HEADERS, SLO_TTFT_HEADERS,
};
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "latency-slo-admitter";

/// KV-cache usage (fraction 0..1) under which an endpoint counts as cold.
pub const COLD_KV_USAGE: f64 = 0.02;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    latency_prediction_info_producer_name: Option<String>,
}

/// Builds a [`LatencySloAdmitter`].
///
/// # Errors
/// Unknown fields.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let _ = p.latency_prediction_info_producer_name;
    Ok(Arc::new(LatencySloAdmitter {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct LatencySloAdmitter {
    typed_name: TypedName,
}

impl Plugin for LatencySloAdmitter {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_admitter(&self) -> Option<&dyn Admitter> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        &[LATENCY_PREDICTION_INFO]
    }
}

impl Admitter for LatencySloAdmitter {
    fn admit(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        _: &mut dyn Rng,
    ) -> Result<(), RequestError> {
        if !cx.request.is_sheddable() {
            return Ok(());
        }
        let has_objective = objective_ms(cx.request, &SLO_TTFT_HEADERS) > 0.0
            || objective_ms(cx.request, &SLO_TPOT_HEADERS) > 0.0;
        let Some(preds) = cx.state.get::<Predictions>(LATENCY_PREDICTION_INFO) else {
            return Ok(());
        };
        if !has_objective
            || !candidates
                .iter()
                .any(|&i| preds.get(i).is_some_and(Option::is_some))
        {
            return Ok(());
        }
        let servable = candidates.iter().any(|&i| {
            let valid = preds
                .get(i)
                .copied()
                .flatten()
                .is_some_and(|p| p.is_valid());
            let (idle, cold) = cx.endpoint(i).map_or((false, false), |e| {
                (
                    e.metrics.running_requests == 0,
                    e.metrics.kv_cache_usage < COLD_KV_USAGE,
                )
            });
            valid || idle || cold
        });
        if servable {
            Ok(())
        } else {
            Err(RequestError::AdmissionDenied(
                "latency-slo-admitter: no endpoint is predicted to meet the request's latency objectives".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::Endpoint;
    use crate::model::request::InferenceRequest;
    use crate::plugin::CycleState;
    use crate::plugins::producer::predicted_latency::LatencyPrediction;
    use crate::rng::SplitMix64;

    fn admit(
        priority: i32,
        slo: bool,
        preds: Option<Predictions>,
        busy: bool,
    ) -> Result<(), RequestError> {
        let a = factory("a", None, &Handle::new(&[])).unwrap();
        let mut endpoints: alloc::vec::Vec<Endpoint> = (0..2)
            .map(|i| Endpoint::new(alloc::format!("10.0.0.{i}:8000")))
            .collect();
        for e in &mut endpoints {
            if busy {
                e.metrics.running_requests = 3;
                e.metrics.kv_cache_usage = 0.5;
            }
        }
        let mut req = InferenceRequest::new("m", "p");
        req.priority = priority;
        if slo {
            req.headers = alloc::vec![("x-llm-d-slo-ttft-ms".into(), "100".into())];
        }
        let mut state = CycleState::new();
        if let Some(p) = preds {
            state.put(LATENCY_PREDICTION_INFO, p);
        }
        let cx = CycleContext {
            request: &req,
            endpoints: &endpoints,
            state: &state,
            now_ms: 0,
            peer: None,
        };
        a.as_admitter()
            .unwrap()
            .admit(&cx, &[0, 1], &mut SplitMix64::new(1))
    }

    fn missing() -> Option<LatencyPrediction> {
        Some(LatencyPrediction {
            ttft_valid: false,
            tpot_valid: true,
            ..LatencyPrediction::default()
        })
    }

    #[test]
    fn denies_a_sheddable_request_no_busy_endpoint_can_serve_in_time() {
        let all_miss = || Some(alloc::vec![missing(), missing()]);
        assert!(matches!(
            admit(-1, true, all_miss(), true),
            Err(RequestError::AdmissionDenied(_))
        ));
        // Not sheddable, no objective, no prediction, an idle or cold endpoint: admitted.
        assert!(admit(0, true, all_miss(), true).is_ok());
        assert!(admit(-1, false, all_miss(), true).is_ok());
        assert!(admit(-1, true, None, true).is_ok());
        assert!(admit(-1, true, Some(alloc::vec![None, None]), true).is_ok());
        assert!(admit(-1, true, all_miss(), false).is_ok());
        let one_meets = Some(alloc::vec![
            missing(),
            Some(LatencyPrediction {
                ttft_valid: true,
                tpot_valid: true,
                ..LatencyPrediction::default()
            })
        ]);
        assert!(admit(-1, true, one_meets, true).is_ok());
    }
}
