//! `latency-scorer` (llm-d): scores candidates by their predicted latency headroom
//! ([`LatencyPrediction`] from `predicted-latency-producer`, created when missing).
//!
//! Rules (llm-d-router `scheduling/scorer/latency/`, in our words;
//! docs/SOURCES.md#predicted-latency):
//! - Candidates meeting both objectives (headroom ≥ 0 on TTFT and TPOT, or no prediction) are
//!   the only ones scored when there are any; the others get 0.
//! - When every candidate misses: those with no request in flight (this picker's count) are the
//!   only ones scored when there are any; else the least severe group — TPOT missed only, then
//!   TTFT missed only, then both — is.
//! - In the scored group each headroom's magnitude is normalised to 0..1 over the group
//!   (`(|h| − min) / (max − min)`; 0.5 when all are equal, and then that dimension's weight
//!   goes to the other), blended `combined = a·TTFT + b·TPOT` with the weights normalised to
//!   sum 1, and scored `1 − combined` (strategy `least`: closest to the objective, which packs
//!   load and keeps headroom elsewhere) or `combined` (`most`; used only while objectives are
//!   met — a missed objective is always scored `least`, so the least overloaded wins). Scores
//!   are quantised to hundredths plus 0.01, as upstream's integer weights, so a scored
//!   candidate never scores 0.
//! - With no prediction at all (the model is still learning): a composite of free KV cache
//!   (1 − usage), relative queue ((max − waiting) / max over the candidates, 1 when no queue)
//!   and prefix-cache match, weighted and normalised.
//!
//! Without objectives in the request every headroom is minus the prediction, so the scorer
//! prefers the lowest predicted latency. Category: Balance.
//!
//! Parameters: `ttftWeight` (default 0.8), `tpotWeight` (0.2), `headroomSelectionStrategy`
//! (`least` | `most`), `compositeKVWeight`, `compositeQueueWeight`, `compositePrefixWeight`
//! (1 each), `prefixMatchInfoProducerName` (as `prefix-cache-scorer`'s),
//! `latencyPredictionInfoProducerName` (accepted; one producer's predictions are read).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, DataKey, Plugin, Scorer, ScorerCategory, TypedName};
use crate::plugins::producer::approx_prefix_cache::{PrefixMatch, PREFIX_CACHE_MATCH_INFO};
use crate::plugins::producer::precise_prefix_cache::PRECISE_PREFIX_CACHE_MATCH_INFO;
use crate::plugins::producer::predicted_latency::{
    LatencyPrediction, Predictions, LATENCY_PREDICTION_INFO,
};
use crate::plugins::scorer::prefix_cache;

/// Plugin type name.
pub const TYPE: &str = "latency-scorer";

/// Below this a range counts as zero.
const EPS: f64 = 1e-9;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Strategy {
    Least,
    Most,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    ttft_weight: f64,
    tpot_weight: f64,
    headroom_selection_strategy: Strategy,
    #[serde(rename = "compositeKVWeight")]
    composite_kv_weight: f64,
    composite_queue_weight: f64,
    composite_prefix_weight: f64,
    prefix_match_info_producer_name: Option<String>,
    latency_prediction_info_producer_name: Option<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            ttft_weight: 0.8,
            tpot_weight: 0.2,
            headroom_selection_strategy: Strategy::Least,
            composite_kv_weight: 1.0,
            composite_queue_weight: 1.0,
            composite_prefix_weight: 1.0,
            prefix_match_info_producer_name: None,
            latency_prediction_info_producer_name: None,
        }
    }
}

/// Builds a [`LatencyScorer`].
///
/// # Errors
/// Unknown fields, an unknown strategy, a negative or non-finite weight.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    for (field, v) in [
        ("ttftWeight", p.ttft_weight),
        ("tpotWeight", p.tpot_weight),
        ("compositeKVWeight", p.composite_kv_weight),
        ("compositeQueueWeight", p.composite_queue_weight),
        ("compositePrefixWeight", p.composite_prefix_weight),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(ConfigError::invalid(
                FieldPath::key(field),
                alloc::format!("must be a number ≥ 0, got {v}"),
            ));
        }
    }
    let prefix_key =
        prefix_cache::match_key_for(p.prefix_match_info_producer_name.as_deref(), handle);
    let _ = p.latency_prediction_info_producer_name;
    Ok(Arc::new(LatencyScorer {
        typed_name: TypedName::new(TYPE, name),
        weights: normalized(p.ttft_weight, p.tpot_weight),
        strategy: p.headroom_selection_strategy,
        composite: normalized3(
            p.composite_kv_weight,
            p.composite_queue_weight,
            p.composite_prefix_weight,
        ),
        prefix_key,
    }))
}

/// `(a, b)` scaled to sum 1; `(1, 0)` when both are 0.
fn normalized(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    if s > 0.0 {
        (a / s, b / s)
    } else {
        (1.0, 0.0)
    }
}

/// `(a, b, c)` scaled to sum 1; KV alone when all are 0.
fn normalized3(a: f64, b: f64, c: f64) -> (f64, f64, f64) {
    let s = a + b + c;
    if s > 0.0 {
        (a / s, b / s, c / s)
    } else {
        (1.0, 0.0, 0.0)
    }
}

/// Hundredths plus 0.01 (upstream's integer weights 1..101 over 100), at most 1.
fn quantized(x: f64) -> f64 {
    ((libm::floor(x.clamp(0.0, 1.0) * 100.0) + 1.0) / 100.0).min(1.0)
}

/// See the module docs.
pub struct LatencyScorer {
    typed_name: TypedName,
    /// (TTFT, TPOT) blend weights, summing to 1.
    weights: (f64, f64),
    strategy: Strategy,
    /// (KV, queue, prefix) composite weights, summing to 1.
    composite: (f64, f64, f64),
    prefix_key: DataKey,
}

impl Plugin for LatencyScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        if self.prefix_key == PRECISE_PREFIX_CACHE_MATCH_INFO {
            &[LATENCY_PREDICTION_INFO, PRECISE_PREFIX_CACHE_MATCH_INFO]
        } else {
            &[LATENCY_PREDICTION_INFO, PREFIX_CACHE_MATCH_INFO]
        }
    }
}

impl LatencyScorer {
    /// Scores `group` (`(position in candidates, prediction)`) by normalised headroom; a
    /// missed objective is scored `least` whatever the strategy (`force_least`). Iterated three
    /// times: no list is built.
    fn score_group<I>(&self, group: I, force_least: bool, scores: &mut [f64])
    where
        I: Iterator<Item = (usize, LatencyPrediction)> + Clone,
    {
        let range = |f: fn(&LatencyPrediction) -> f64| {
            group
                .clone()
                .fold((f64::MAX, f64::MIN), |(lo, hi), (_, p)| {
                    let h = libm::fabs(f(&p));
                    (lo.min(h), hi.max(h))
                })
        };
        let (t_lo, t_hi) = range(|p| p.ttft_headroom_ms);
        let (p_lo, p_hi) = range(|p| p.tpot_headroom_ms);
        let (t_range, p_range) = (t_hi - t_lo, p_hi - p_lo);
        let (mut a, mut b) = self.weights;
        if t_range <= EPS && p_range > EPS {
            (a, b) = (0.0, 1.0);
        } else if p_range <= EPS && t_range > EPS {
            (a, b) = (1.0, 0.0);
        }
        let norm = |h: f64, lo: f64, r: f64| {
            if r > EPS {
                (libm::fabs(h) - lo) / r
            } else {
                0.5
            }
        };
        let most = self.strategy == Strategy::Most && !force_least;
        for (pos, p) in group {
            let combined = a * norm(p.ttft_headroom_ms, t_lo, t_range)
                + b * norm(p.tpot_headroom_ms, p_lo, p_range);
            if let Some(s) = scores.get_mut(pos) {
                *s = quantized(if most { combined } else { 1.0 - combined });
            }
        }
    }

    fn composite_scores(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let matches = cx.state.get::<Vec<PrefixMatch>>(self.prefix_key);
        let max_q = candidates
            .iter()
            .filter_map(|&i| cx.endpoint(i))
            .map(|e| e.metrics.waiting_queue_size)
            .max()
            .unwrap_or(0);
        let (wk, wq, wp) = self.composite;
        for (s, &i) in scores.iter_mut().zip(candidates) {
            let Some(e) = cx.endpoint(i) else { continue };
            let queue = if max_q > 0 {
                f64::from(max_q - e.metrics.waiting_queue_size.min(max_q)) / f64::from(max_q)
            } else {
                1.0
            };
            let kv_free = 1.0 - e.metrics.kv_cache_usage.clamp(0.0, 1.0);
            let prefix = matches
                .and_then(|m| m.get(i))
                .map_or(0.0, PrefixMatch::ratio);
            *s = libm::round((wk * kv_free + wq * queue + wp * prefix) * 100.0) / 100.0;
        }
    }
}

impl Scorer for LatencyScorer {
    fn category(&self) -> ScorerCategory {
        ScorerCategory::Balance
    }

    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let preds = cx.state.get::<Predictions>(LATENCY_PREDICTION_INFO);
        let of = |i: usize| preds.and_then(|p| p.get(i).copied().flatten());
        if !candidates.iter().any(|&i| of(i).is_some()) {
            self.composite_scores(cx, candidates, scores);
            return;
        }
        // Only the best group is scored (the rest keep 0): see the module docs for the order.
        let Some(best) = candidates.iter().map(|&i| group_of(of(i))).min() else {
            return;
        };
        let group = candidates.iter().enumerate().filter_map(|(pos, &i)| {
            let p = of(i);
            (group_of(p) == best).then(|| (pos, p.unwrap_or_default()))
        });
        self.score_group(group, best != Group::Meeting, scores);
    }
}

/// The groups of the module docs, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    /// Meets both objectives, or has no prediction (an endpoint still to be tried).
    Meeting,
    /// Misses an objective but has no request in flight.
    Idle,
    /// Misses TPOT only.
    TpotMissed,
    /// Misses TTFT only.
    TtftMissed,
    /// Misses both.
    BothMissed,
}

fn group_of(p: Option<LatencyPrediction>) -> Group {
    let Some(p) = p else {
        return Group::Meeting;
    };
    match (p.ttft_headroom_ms < 0.0, p.tpot_headroom_ms < 0.0) {
        (false, false) => Group::Meeting,
        _ if p.dispatched == 0 => Group::Idle,
        (false, true) => Group::TpotMissed,
        (true, false) => Group::TtftMissed,
        (true, true) => Group::BothMissed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::Endpoint;
    use crate::model::request::InferenceRequest;
    use crate::plugin::CycleState;

    fn scorer(params: serde_json::Value) -> Arc<dyn Plugin> {
        factory("lat", Some(&params), &Handle::new(&[])).unwrap()
    }

    fn pred(ttft_h: f64, tpot_h: f64, dispatched: u64) -> Option<LatencyPrediction> {
        Some(LatencyPrediction {
            ttft_headroom_ms: ttft_h,
            tpot_headroom_ms: tpot_h,
            ttft_valid: ttft_h >= 0.0,
            tpot_valid: tpot_h >= 0.0,
            dispatched,
            ..LatencyPrediction::default()
        })
    }

    fn run(p: &Arc<dyn Plugin>, endpoints: &[Endpoint], preds: Option<Predictions>) -> Vec<f64> {
        let req = InferenceRequest::new("m", "p");
        let mut state = CycleState::new();
        if let Some(v) = preds {
            state.put(LATENCY_PREDICTION_INFO, v);
        }
        let cx = CycleContext {
            request: &req,
            endpoints,
            state: &state,
            now_ms: 0,
            peer: None,
        };
        let candidates: Vec<usize> = (0..endpoints.len()).collect();
        let mut scores = alloc::vec![0.0; endpoints.len()];
        p.as_scorer().unwrap().score(&cx, &candidates, &mut scores);
        scores
    }

    fn pool(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint::new(alloc::format!("10.0.0.{i}:8000")))
            .collect()
    }

    #[test]
    fn only_candidates_meeting_the_objectives_are_scored_least_headroom_first() {
        let s = scorer(serde_json::json!({}));
        let scores = run(
            &s,
            &pool(3),
            Some(alloc::vec![
                pred(50.0, 0.0, 3),
                pred(10.0, 0.0, 3),
                pred(-5.0, 0.0, 0)
            ]),
        );
        assert_eq!(scores[2], 0.0, "misses its TTFT objective");
        assert!(scores[1] > scores[0], "least headroom packs: {scores:?}");
        let most = scorer(serde_json::json!({"headroomSelectionStrategy": "most"}));
        let scores = run(
            &most,
            &pool(3),
            Some(alloc::vec![
                pred(50.0, 0.0, 3),
                pred(10.0, 0.0, 3),
                pred(-5.0, 0.0, 0)
            ]),
        );
        assert!(scores[0] > scores[1] && scores[2] == 0.0, "{scores:?}");
    }

    #[test]
    fn when_all_miss_idle_first_then_the_least_severe_group_least_deficit_first() {
        let s = scorer(serde_json::json!({"headroomSelectionStrategy": "most"}));
        let scores = run(
            &s,
            &pool(3),
            Some(alloc::vec![
                pred(-5.0, 0.0, 2),
                pred(-50.0, 0.0, 0),
                pred(-1.0, -1.0, 4)
            ]),
        );
        assert_eq!(
            (scores[0], scores[2]),
            (0.0, 0.0),
            "only the idle one: {scores:?}"
        );
        assert!(scores[1] > 0.0);
        // Nobody idle: TPOT-only misses beat TTFT-only, which beat both.
        let scores = run(
            &s,
            &pool(4),
            Some(alloc::vec![
                pred(-5.0, 0.0, 2),
                pred(3.0, -40.0, 2),
                pred(3.0, -2.0, 2),
                pred(-1.0, -1.0, 2)
            ]),
        );
        assert_eq!((scores[0], scores[3]), (0.0, 0.0), "{scores:?}");
        assert!(
            scores[2] > scores[1],
            "smaller deficit first, even with 'most': {scores:?}"
        );
    }

    #[test]
    fn without_objectives_the_lowest_predicted_latency_wins() {
        let s = scorer(serde_json::json!({}));
        // Headroom is minus the prediction: 40, 400 and 90 ms; TPOT neutral.
        let scores = run(
            &s,
            &pool(3),
            Some(alloc::vec![
                pred(-40.0, 0.0, 1),
                pred(-400.0, 0.0, 1),
                pred(-90.0, 0.0, 1)
            ]),
        );
        assert!(
            scores[0] > scores[2] && scores[2] > scores[1] && scores[1] > 0.0,
            "{scores:?}"
        );
        assert_eq!(scores[0], 1.0);
    }

    #[test]
    fn no_predictions_fall_back_to_the_composite() {
        let s = scorer(serde_json::json!({"compositePrefixWeight": 0}));
        let mut endpoints = pool(2);
        endpoints[0].metrics.kv_cache_usage = 0.9;
        endpoints[0].metrics.waiting_queue_size = 4;
        let scores = run(&s, &endpoints, None);
        // 0: kv free 0.1, queue 0 → 0.05; 1: kv free 1, queue 1 → 1.
        assert_eq!(scores, alloc::vec![0.05, 1.0]);
        let scores = run(&s, &endpoints, Some(alloc::vec![None, None]));
        assert_eq!(scores, alloc::vec![0.05, 1.0]);
    }

    #[test]
    fn parameters_are_checked() {
        for bad in [
            serde_json::json!({"ttftWeight": -1}),
            serde_json::json!({"headroomSelectionStrategy": "fastest"}),
            serde_json::json!({"bogus": true}),
        ] {
            assert!(
                factory("x", Some(&bad), &Handle::new(&[])).is_err(),
                "{bad}"
            );
        }
        assert!(factory("x", Some(&serde_json::json!({"latencyPredictionInfoProducerName": "pl", "compositeKVWeight": 2})), &Handle::new(&[])).is_ok());
    }
}
