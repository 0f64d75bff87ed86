//! `prefix-cache-affinity-filter`: keeps only endpoints that hold most of the prompt's prefix,
//! so a cache hit is not diluted by load scores; falls back to all when none qualifies, and
//! gives the stickiness up when the sticky endpoints are much slower to start than the others.
//!
//! Behaviour (GIE and llm-d-router `scheduling/filter/prefixcacheaffinity/`, in our words):
//! - with one candidate, or `affinityThreshold` 0, nothing to do; with probability
//!   `explorationProbability` the gate is skipped, so other endpoints still warm up;
//! - sticky: prefix match ratio ≥ `affinityThreshold`; if none is sticky, keep all;
//! - TTFT load gate (llm-d): when `maxTTFTPenaltyMs` > 0 and some candidates are not sticky,
//!   compare the best (lowest) TTFT among the sticky ones with the best among the others; if the
//!   sticky one is worse by more than `maxTTFTPenaltyMs`, keep all. A candidate's TTFT is the
//!   latency predictor's (`ttftSource: latencyPredictor`; a candidate without a prediction
//!   counts as infinitely slow, so an unknown sticky set gives way) or its in-flight tokens /
//!   `peakPrefillThroughput` (`prefillThroughput`, the default; tokens from
//!   `inflight-load-producer`).
//!
//! Parameters: `affinityThreshold` (0..1, default 0.80), `explorationProbability` (0..1, default
//! 0.01 as GIE's; llm-d's is 0), `maxTTFTPenaltyMs` (≥ 0, default 5000 as GIE's; llm-d's is
//! 18000; 0 turns the gate off), `ttftSource` (`prefillThroughput` | `latencyPredictor`),
//! `peakPrefillThroughput` (tokens/s, default 15928, > 0 when it is used),
//! `prefixMatchInfoProducerName` (as `prefix-cache-scorer`'s); `latencyPredictionInfoProducerName`
//! and `inFlightLoadProducerName` are accepted (one producer of each is read). Consumes the
//! prefix match info and what the gate reads, so their producers are created when missing.

use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, DataKey, Filter, Plugin, TypedName};
use crate::plugins::producer::approx_prefix_cache::{PrefixMatch, PREFIX_CACHE_MATCH_INFO};
use crate::plugins::producer::inflight_load::{load_of, InflightLoad, INFLIGHT_LOAD};
use crate::plugins::producer::precise_prefix_cache::PRECISE_PREFIX_CACHE_MATCH_INFO;
use crate::plugins::producer::predicted_latency::{Predictions, LATENCY_PREDICTION_INFO};
use crate::plugins::scorer::prefix_cache;
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "prefix-cache-affinity-filter";

/// Parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Params {
    /// Minimum match ratio to stay.
    pub affinity_threshold: f64,
    /// Chance of skipping the gate.
    pub exploration_probability: f64,
    /// How much slower to start (ms) the best sticky endpoint may be than the best other one
    /// before stickiness is given up; 0: never.
    #[serde(rename = "maxTTFTPenaltyMs")]
    pub max_ttft_penalty_ms: f64,
    /// Where a candidate's TTFT comes from.
    #[serde(rename = "ttftSource")]
    pub ttft_source: TtftSource,
    /// Prefill tokens per second one endpoint manages (the `prefillThroughput` estimate).
    pub peak_prefill_throughput: f64,
    /// Name of the producer whose prefix match is read.
    pub prefix_match_info_producer_name: Option<alloc::string::String>,
    /// Accepted (one latency producer is read).
    pub latency_prediction_info_producer_name: Option<alloc::string::String>,
    /// Accepted (one in-flight producer is read).
    pub in_flight_load_producer_name: Option<alloc::string::String>,
}

/// Where the TTFT load gate reads a candidate's TTFT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum TtftSource {
    /// In-flight tokens / `peakPrefillThroughput`.
    #[serde(rename = "prefillThroughput")]
    PrefillThroughput,
    /// `predicted-latency-producer`'s TTFT.
    #[serde(rename = "latencyPredictor")]
    LatencyPredictor,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            affinity_threshold: 0.8,
            exploration_probability: 0.01,
            max_ttft_penalty_ms: 5000.0,
            ttft_source: TtftSource::PrefillThroughput,
            peak_prefill_throughput: 15928.0,
            prefix_match_info_producer_name: None,
            latency_prediction_info_producer_name: None,
            in_flight_load_producer_name: None,
        }
    }
}

/// Builds a [`PrefixCacheAffinityFilter`].
///
/// # Errors
/// Unknown fields; a threshold or probability outside [0, 1].
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if !(0.0..=1.0).contains(&p.affinity_threshold) {
        return Err(ConfigError::invalid(
            FieldPath::key("affinityThreshold"),
            "must be within [0, 1]",
        ));
    }
    if !(0.0..=1.0).contains(&p.exploration_probability) {
        return Err(ConfigError::invalid(
            FieldPath::key("explorationProbability"),
            "must be within [0, 1]",
        ));
    }
    if !(p.max_ttft_penalty_ms.is_finite() && p.max_ttft_penalty_ms >= 0.0) {
        return Err(ConfigError::invalid(
            FieldPath::key("maxTTFTPenaltyMs"),
            "must be ≥ 0",
        ));
    }
    let throughput_used =
        p.max_ttft_penalty_ms > 0.0 && p.ttft_source == TtftSource::PrefillThroughput;
    if !(p.peak_prefill_throughput.is_finite() && p.peak_prefill_throughput >= 0.0)
        || (throughput_used && p.peak_prefill_throughput == 0.0)
    {
        return Err(ConfigError::invalid(
            FieldPath::key("peakPrefillThroughput"),
            "must be > 0 when ttftSource is prefillThroughput",
        ));
    }
    let prefix_key =
        prefix_cache::match_key_for(p.prefix_match_info_producer_name.as_deref(), handle);
    let gate = (p.max_ttft_penalty_ms > 0.0).then_some(p.ttft_source);
    Ok(Arc::new(PrefixCacheAffinityFilter {
        typed_name: TypedName::new(TYPE, name),
        threshold: p.affinity_threshold,
        exploration: p.exploration_probability,
        max_penalty_ms: p.max_ttft_penalty_ms,
        throughput: p.peak_prefill_throughput,
        gate,
        prefix_key,
        consumes: consumed(prefix_key, gate),
    }))
}

/// The keys a filter with this prefix key and gate reads.
fn consumed(prefix: DataKey, gate: Option<TtftSource>) -> &'static [DataKey] {
    const A: DataKey = PREFIX_CACHE_MATCH_INFO;
    const P: DataKey = PRECISE_PREFIX_CACHE_MATCH_INFO;
    match (prefix == P, gate) {
        (false, None) => &[A],
        (false, Some(TtftSource::PrefillThroughput)) => &[A, INFLIGHT_LOAD],
        (false, Some(TtftSource::LatencyPredictor)) => &[A, LATENCY_PREDICTION_INFO],
        (true, None) => &[P],
        (true, Some(TtftSource::PrefillThroughput)) => &[P, INFLIGHT_LOAD],
        (true, Some(TtftSource::LatencyPredictor)) => &[P, LATENCY_PREDICTION_INFO],
    }
}

/// See the module docs.
pub struct PrefixCacheAffinityFilter {
    typed_name: TypedName,
    threshold: f64,
    exploration: f64,
    /// `maxTTFTPenaltyMs`.
    max_penalty_ms: f64,
    /// `peakPrefillThroughput`, tokens/s.
    throughput: f64,
    /// The TTFT load gate's source; `None` when the gate is off.
    gate: Option<TtftSource>,
    prefix_key: DataKey,
    consumes: &'static [DataKey],
}

impl PrefixCacheAffinityFilter {
    /// The lowest TTFT (ms) among the candidates `keep[j] == sticky`, by the gate's source.
    fn best_ttft_ms(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &[bool],
        sticky: bool,
        source: TtftSource,
    ) -> f64 {
        let preds = cx.state.get::<Predictions>(LATENCY_PREDICTION_INFO);
        let loads = cx.state.get::<Vec<InflightLoad>>(INFLIGHT_LOAD);
        candidates
            .iter()
            .zip(keep)
            .filter(|(_, &k)| k == sticky)
            .map(|(&i, _)| match source {
                TtftSource::LatencyPredictor => preds
                    .and_then(|p| p.get(i).copied().flatten())
                    .map_or(f64::INFINITY, |p| p.ttft_ms),
                TtftSource::PrefillThroughput => {
                    load_of(loads, i).tokens as f64 / self.throughput * 1000.0
                }
            })
            .fold(f64::INFINITY, f64::min)
    }
}

impl Plugin for PrefixCacheAffinityFilter {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_filter(&self) -> Option<&dyn Filter> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        self.consumes
    }
}

impl Filter for PrefixCacheAffinityFilter {
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        rng: &mut dyn Rng,
    ) {
        if candidates.len() <= 1 || self.threshold <= 0.0 {
            return;
        }
        if self.exploration > 0.0 && rng.next_f64() < self.exploration {
            return;
        }
        let Some(info) = cx.state.get::<Vec<PrefixMatch>>(self.prefix_key) else {
            return;
        };
        let mut sticky = 0;
        for (k, &i) in keep.iter_mut().zip(candidates) {
            *k = info
                .get(i)
                .is_some_and(|m| m.total_blocks > 0 && m.ratio() >= self.threshold);
            sticky += usize::from(*k);
        }
        if sticky == 0 {
            keep.fill(true);
            return;
        }
        if let Some(source) = self.gate.filter(|_| sticky < candidates.len()) {
            let best_sticky = self.best_ttft_ms(cx, candidates, keep, true, source);
            let best_other = self.best_ttft_ms(cx, candidates, keep, false, source);
            // ∞ − ∞ (no prediction on either side) is NaN: not over the penalty, stay sticky.
            if best_sticky - best_other > self.max_penalty_ms {
                keep.fill(true);
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
    use crate::plugins::producer::predicted_latency::LatencyPrediction;
    use crate::rng::SplitMix64;

    fn matched(ratio_of_8: u32) -> PrefixMatch {
        PrefixMatch {
            matched_blocks: ratio_of_8,
            total_blocks: 8,
            block_size_tokens: 16,
        }
    }

    /// Runs the filter over 3 endpoints whose prefix matches are `m` of 8 blocks.
    fn run(
        params: serde_json::Value,
        m: [u32; 3],
        fill: impl FnOnce(&mut CycleState),
    ) -> Vec<bool> {
        let f = factory("f", Some(&params), &Handle::new(&[])).unwrap();
        let endpoints: Vec<Endpoint> = (0..3)
            .map(|i| Endpoint::new(alloc::format!("10.0.0.{i}:8000")))
            .collect();
        let req = InferenceRequest::new("m", "p");
        let mut state = CycleState::new();
        state.put(PREFIX_CACHE_MATCH_INFO, m.map(matched).to_vec());
        fill(&mut state);
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
            .filter(&cx, &[0, 1, 2], &mut keep, &mut SplitMix64::new(9));
        keep
    }

    fn no_gate() -> serde_json::Value {
        serde_json::json!({"explorationProbability": 0, "maxTTFTPenaltyMs": 0})
    }

    #[test]
    fn keeps_the_endpoints_holding_the_prefix_or_everyone() {
        assert_eq!(run(no_gate(), [8, 7, 2], |_| {}), [true, true, false]);
        assert_eq!(run(no_gate(), [6, 5, 0], |_| {}), [true; 3], "none at 0.8");
    }

    #[test]
    fn the_in_flight_gate_gives_stickiness_up_when_the_holder_is_swamped() {
        let p = serde_json::json!({"explorationProbability": 0});
        let loads = |sticky_tokens: u64| {
            move |s: &mut CycleState| {
                let load = |tokens| InflightLoad {
                    requests: 1,
                    tokens,
                };
                s.put(
                    INFLIGHT_LOAD,
                    alloc::vec![load(sticky_tokens), load(0), load(0)],
                );
            }
        };
        // 10,000 tokens ahead at 15,928 tokens/s: 0.6 s behind, within the 5 s allowed.
        assert_eq!(
            run(p.clone(), [8, 0, 0], loads(10_000)),
            [true, false, false]
        );
        // 200,000 tokens: 12.6 s behind.
        assert_eq!(run(p, [8, 0, 0], loads(200_000)), [true; 3]);
    }

    #[test]
    fn the_predictor_gate_reads_predicted_ttft() {
        let p = serde_json::json!({"explorationProbability": 0, "ttftSource": "latencyPredictor",
            "maxTTFTPenaltyMs": 500});
        let preds = |sticky: Option<f64>, other: Option<f64>| {
            move |s: &mut CycleState| {
                let pred = |t: Option<f64>| {
                    t.map(|ttft_ms| LatencyPrediction {
                        ttft_ms,
                        ..LatencyPrediction::default()
                    })
                };
                let v: Predictions = alloc::vec![pred(sticky), pred(other), pred(other)];
                s.put(LATENCY_PREDICTION_INFO, v);
            }
        };
        assert_eq!(
            run(p.clone(), [8, 0, 0], preds(Some(400.0), Some(100.0))),
            [true, false, false]
        );
        assert_eq!(
            run(p.clone(), [8, 0, 0], preds(Some(900.0), Some(100.0))),
            [true; 3]
        );
        assert_eq!(
            run(p.clone(), [8, 0, 0], preds(None, Some(100.0))),
            [true; 3],
            "unknown holder"
        );
        assert_eq!(
            run(p, [8, 0, 0], preds(None, None)),
            [true, false, false],
            "nothing known"
        );
    }

    #[test]
    fn parameters_are_checked_and_the_gate_declares_what_it_reads() {
        let build = |v: serde_json::Value| factory("f", Some(&v), &Handle::new(&[]));
        assert!(build(serde_json::json!({"peakPrefillThroughput": 0})).is_err());
        assert!(build(serde_json::json!({"ttftSource": "gpu"})).is_err());
        assert!(build(serde_json::json!({"maxTTFTPenaltyMs": -1})).is_err());
        let p = build(
            serde_json::json!({"peakPrefillThroughput": 0, "ttftSource": "latencyPredictor"}),
        )
        .unwrap();
        assert_eq!(
            p.consumes(),
            [PREFIX_CACHE_MATCH_INFO, LATENCY_PREDICTION_INFO]
        );
        assert_eq!(
            build(no_gate()).unwrap().consumes(),
            [PREFIX_CACHE_MATCH_INFO]
        );
        assert_eq!(
            build(serde_json::json!({})).unwrap().consumes(),
            [PREFIX_CACHE_MATCH_INFO, INFLIGHT_LOAD]
        );
    }
}
