//! `slo-headroom-tier-filter` (llm-d): keeps the candidates predicted to meet the request's
//! latency objectives, with a little exploration of the others.
//!
//! Rules (llm-d-router `scheduling/filter/sloheadroomtier/`, in our words;
//! docs/SOURCES.md#predicted-latency), on the [`LatencyPrediction`]s of
//! `predicted-latency-producer` (created when missing):
//! - the positive tier is the candidates with TTFT and TPOT headroom ≥ 0; every other
//!   candidate is in the negative tier;
//! - a candidate without a prediction while others have one is, upstream, in the negative tier
//!   (its prediction failed). Ours is in the positive tier: our producer leaves out exactly the
//!   endpoints it has not heard from yet (per-endpoint speeds are ours; upstream predicts every
//!   endpoint from one shared model, as an average endpoint), and `latency-scorer` counts such
//!   an endpoint with those meeting their objectives so that it gets tried. In the negative tier
//!   it would never be tried with `epsilonExploreNeg` 0, and only by that chance otherwise, so
//!   an endpoint that joined while every request carried objectives would stay unused;
//! - with both tiers present the filter keeps the positive one, except with probability
//!   `epsilonExploreNeg` (default 0.01) where it keeps only the negative one, so an endpoint
//!   recovering from overload still gets an occasional request and fresh observations;
//! - with one tier, or no prediction at all (the model still learning), it keeps every
//!   candidate.
//!
//! Without objectives every headroom is negative, so the filter keeps everything.
//!
//! Parameters: `epsilonExploreNeg` (0..1, default 0.01), `latencyPredictionInfoProducerName`
//! (accepted; one producer's predictions are read).

use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, DataKey, Filter, Plugin, TypedName};
use crate::plugins::producer::predicted_latency::{
    LatencyPrediction, Predictions, LATENCY_PREDICTION_INFO,
};
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "slo-headroom-tier-filter";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    epsilon_explore_neg: f64,
    latency_prediction_info_producer_name: Option<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            epsilon_explore_neg: 0.01,
            latency_prediction_info_producer_name: None,
        }
    }
}

/// Builds a [`SloHeadroomTierFilter`].
///
/// # Errors
/// Unknown fields; `epsilonExploreNeg` outside 0..1.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if !(0.0..=1.0).contains(&p.epsilon_explore_neg) {
        return Err(ConfigError::invalid(
            FieldPath::key("epsilonExploreNeg"),
            alloc::format!("must be between 0 and 1, got {}", p.epsilon_explore_neg),
        ));
    }
    let _ = p.latency_prediction_info_producer_name;
    Ok(Arc::new(SloHeadroomTierFilter {
        typed_name: TypedName::new(TYPE, name),
        epsilon: p.epsilon_explore_neg,
    }))
}

/// See the module docs.
pub struct SloHeadroomTierFilter {
    typed_name: TypedName,
    epsilon: f64,
}

impl Plugin for SloHeadroomTierFilter {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_filter(&self) -> Option<&dyn Filter> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        &[LATENCY_PREDICTION_INFO]
    }
}

/// In the positive tier: meets both objectives, or not predicted (not heard from yet; see the
/// module docs).
fn positive(p: Option<LatencyPrediction>) -> bool {
    p.is_none_or(|p| p.ttft_headroom_ms >= 0.0 && p.tpot_headroom_ms >= 0.0)
}

impl Filter for SloHeadroomTierFilter {
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        rng: &mut dyn Rng,
    ) {
        let Some(preds) = cx.state.get::<Predictions>(LATENCY_PREDICTION_INFO) else {
            return;
        };
        let of = |i: usize| preds.get(i).copied().flatten();
        if !candidates.iter().any(|&i| of(i).is_some()) {
            return;
        }
        let positives = candidates.iter().filter(|&&i| positive(of(i))).count();
        if positives == 0 || positives == candidates.len() {
            return;
        }
        let keep_positive = rng.next_f64() >= self.epsilon;
        for (k, &i) in keep.iter_mut().zip(candidates) {
            *k = positive(of(i)) == keep_positive;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::Endpoint;
    use crate::model::request::InferenceRequest;
    use crate::plugin::CycleState;
    use crate::rng::SplitMix64;

    fn pred(ttft_h: f64, tpot_h: f64) -> Option<LatencyPrediction> {
        Some(LatencyPrediction {
            ttft_headroom_ms: ttft_h,
            tpot_headroom_ms: tpot_h,
            ..LatencyPrediction::default()
        })
    }

    fn kept(eps: f64, preds: Option<Predictions>, seed: u64) -> alloc::vec::Vec<bool> {
        let f = factory(
            "t",
            Some(&serde_json::json!({"epsilonExploreNeg": eps})),
            &Handle::new(&[]),
        )
        .unwrap();
        let endpoints: alloc::vec::Vec<Endpoint> = (0..3)
            .map(|i| Endpoint::new(alloc::format!("10.0.0.{i}:8000")))
            .collect();
        let req = InferenceRequest::new("m", "p");
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
        let mut keep = alloc::vec![true; 3];
        f.as_filter()
            .unwrap()
            .filter(&cx, &[0, 1, 2], &mut keep, &mut SplitMix64::new(seed));
        keep
    }

    #[test]
    fn keeps_the_positive_tier_and_explores_the_negative_one_at_epsilon() {
        let preds = alloc::vec![pred(10.0, 0.0), pred(-1.0, 0.0), pred(5.0, -0.5)];
        assert_eq!(kept(0.0, Some(preds.clone()), 1), [true, false, false]);
        assert_eq!(kept(1.0, Some(preds.clone()), 1), [false, true, true]);
        let explored = (0..2_000)
            .filter(|&s| kept(0.1, Some(preds.clone()), s) == [false, true, true])
            .count();
        assert!((120..280).contains(&explored), "{explored} of 2000 at 10 %");
    }

    #[test]
    fn an_endpoint_not_heard_from_yet_is_kept_with_the_positive_tier() {
        let preds = alloc::vec![pred(10.0, 0.0), pred(-1.0, 0.0), None];
        assert_eq!(kept(0.0, Some(preds.clone()), 1), [true, false, true]);
        assert_eq!(kept(1.0, Some(preds), 1), [false, true, false]);
        // Every endpoint heard from misses: the one not heard from yet is tried.
        let preds = alloc::vec![pred(-1.0, 0.0), pred(-9.0, -1.0), None];
        assert_eq!(kept(0.0, Some(preds), 1), [false, false, true]);
    }

    #[test]
    fn one_tier_or_no_prediction_keeps_everything() {
        assert_eq!(kept(0.5, None, 3), [true; 3]);
        assert_eq!(kept(0.5, Some(alloc::vec![None, None, None]), 3), [true; 3]);
        assert_eq!(
            kept(
                0.5,
                Some(alloc::vec![
                    pred(-1.0, 0.0),
                    pred(-9.0, -1.0),
                    pred(-2.0, 0.0)
                ]),
                3
            ),
            [true; 3]
        );
        assert_eq!(
            kept(
                0.5,
                Some(alloc::vec![pred(1.0, 0.0), pred(9.0, 1.0), pred(0.0, 0.0)]),
                3
            ),
            [true; 3]
        );
        assert!(factory(
            "t",
            Some(&serde_json::json!({"epsilonExploreNeg": 1.5})),
            &Handle::new(&[])
        )
        .is_err());
    }
}
