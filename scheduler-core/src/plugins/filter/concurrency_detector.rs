//! `concurrency-detector` (llm-d): a saturation detector and filter on the requests and tokens
//! this picker has in flight to each endpoint, counted by `inflight-load-producer` (charged when
//! a request is sent, released when its response ends). Unlike `utilization-detector` it needs no
//! scrape, so it reacts to a burst within the burst.
//!
//! Formula (our reading of llm-d-router v0.10.0,
//! `flowcontrol/saturationdetector/concurrency/`, docs/SOURCES.md#llmd-concurrency-detector):
//! with per-endpoint capacity C (`maxConcurrency` requests, or `maxTokenConcurrency` tokens),
//! - saturation, mode `requests`: Σ in-flight requests / (n · C); mode `tokens`: the same over
//!   tokens; mode `hybrid`: mean over endpoints of max(requests / C_req, tokens / C_tok). No
//!   candidates → 1.0.
//! - as a filter: keeps an endpoint while its in-flight load is below ⌊C · (1 + headroom)⌋
//!   (`hybrid`: both loads below their limits). It can drop every endpoint (no fail-open, as
//!   upstream); the request then gets 429 (`NoTargetEndpoint`).
//!
//! Parameters: `maxConcurrency` (requests per endpoint, > 0, default 100), `maxTokenConcurrency`
//! (tokens per endpoint, > 0, default 1,000,000), `headroom` (fraction of extra burst ≥ 0,
//! default 0), `concurrencyMode` (`requests` | `tokens` | `hybrid`, default `requests`),
//! `inFlightLoadProducerName` (accepted; the counts come from the one in-flight producer of the
//! config). Category: saturation detector and filter. Consumes [`INFLIGHT_LOAD`], so the producer
//! is created when the config has none.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, DataKey, Filter, Plugin, SaturationDetector, TypedName};
use crate::plugins::producer::inflight_load::{load_of, InflightLoad, INFLIGHT_LOAD};
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "concurrency-detector";

/// What is counted against capacity.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Requests in flight against `maxConcurrency`.
    #[default]
    Requests,
    /// Estimated tokens in flight against `maxTokenConcurrency`.
    Tokens,
    /// Per endpoint the more constrained of the two.
    Hybrid,
}

/// Parameters (defaults as llm-d's `applyDefaults`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Params {
    /// Requests per endpoint.
    pub max_concurrency: i64,
    /// Tokens per endpoint.
    pub max_token_concurrency: i64,
    /// Burst allowance above capacity for the filter, as a fraction (0.2 = 20 %).
    pub headroom: f64,
    /// What is counted.
    pub concurrency_mode: Mode,
    /// Name of the in-flight producer to read (accepted for compatibility).
    pub in_flight_load_producer_name: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            max_concurrency: 100,
            max_token_concurrency: 1_000_000,
            headroom: 0.0,
            concurrency_mode: Mode::Requests,
            in_flight_load_producer_name: String::new(),
        }
    }
}

/// Builds a [`ConcurrencyDetector`].
///
/// # Errors
/// Unknown fields, an unknown `concurrencyMode`, `maxConcurrency` or `maxTokenConcurrency` ≤ 0,
/// a negative or non-finite `headroom`.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let positive = |v: i64, key: &'static str| {
        u64::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| ConfigError::invalid(FieldPath::key(key), "must be > 0"))
    };
    let max_requests = positive(p.max_concurrency, "maxConcurrency")?;
    let max_tokens = positive(p.max_token_concurrency, "maxTokenConcurrency")?;
    if !(p.headroom >= 0.0 && p.headroom.is_finite()) {
        return Err(ConfigError::invalid(
            FieldPath::key("headroom"),
            "must be ≥ 0",
        ));
    }
    // ⌊C · (1 + h)⌋, as upstream truncates the product to an integer.
    let limit = |c: u64| (c as f64 * (1.0 + p.headroom)) as u64;
    Ok(Arc::new(ConcurrencyDetector {
        typed_name: TypedName::new(TYPE, name),
        mode: p.concurrency_mode,
        max_requests,
        max_tokens,
        request_limit: limit(max_requests),
        token_limit: limit(max_tokens),
    }))
}

/// See the module docs.
pub struct ConcurrencyDetector {
    typed_name: TypedName,
    mode: Mode,
    max_requests: u64,
    max_tokens: u64,
    request_limit: u64,
    token_limit: u64,
}

/// `inflight / capacity`; capacity is never 0 here (checked at load).
fn ratio(inflight: u64, capacity: u64) -> f64 {
    inflight as f64 / capacity.max(1) as f64
}

impl ConcurrencyDetector {
    fn admits(&self, l: InflightLoad) -> bool {
        match self.mode {
            Mode::Requests => l.requests < self.request_limit,
            Mode::Tokens => l.tokens < self.token_limit,
            Mode::Hybrid => l.requests < self.request_limit && l.tokens < self.token_limit,
        }
    }
}

impl Plugin for ConcurrencyDetector {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_filter(&self) -> Option<&dyn Filter> {
        Some(self)
    }
    fn as_saturation_detector(&self) -> Option<&dyn SaturationDetector> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        &[INFLIGHT_LOAD]
    }
}

impl SaturationDetector for ConcurrencyDetector {
    fn saturation(&self, cx: &CycleContext<'_>, candidates: &[usize]) -> f64 {
        if candidates.is_empty() {
            return 1.0;
        }
        let loads = cx.state.get::<Vec<InflightLoad>>(INFLIGHT_LOAD);
        let n = candidates.len() as u64;
        let each = candidates.iter().map(|&i| load_of(loads, i));
        match self.mode {
            Mode::Requests => ratio(each.map(|l| l.requests).sum(), n * self.max_requests),
            Mode::Tokens => ratio(each.map(|l| l.tokens).sum(), n * self.max_tokens),
            Mode::Hybrid => {
                each.map(|l| {
                    ratio(l.requests, self.max_requests).max(ratio(l.tokens, self.max_tokens))
                })
                .sum::<f64>()
                    / n as f64
            }
        }
    }
}

impl Filter for ConcurrencyDetector {
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        _: &mut dyn Rng,
    ) {
        let loads = cx.state.get::<Vec<InflightLoad>>(INFLIGHT_LOAD);
        for (k, &i) in keep.iter_mut().zip(candidates) {
            *k = self.admits(load_of(loads, i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::Endpoint;
    use crate::model::request::InferenceRequest;
    use crate::plugin::CycleState;

    fn detector(params: serde_json::Value) -> Arc<dyn Plugin> {
        factory("d", Some(&params), &Handle::new(&[])).unwrap()
    }

    /// (saturation, kept) for endpoints with these (requests, tokens) in flight.
    fn run(params: serde_json::Value, loads: &[(u64, u64)]) -> (f64, Vec<bool>) {
        let d = detector(params);
        let eps: Vec<Endpoint> = loads
            .iter()
            .map(|_| Endpoint::new("10.0.0.1:8000"))
            .collect();
        let mut state = CycleState::new();
        state.put(
            INFLIGHT_LOAD,
            loads
                .iter()
                .map(|&(requests, tokens)| InflightLoad { requests, tokens })
                .collect::<Vec<_>>(),
        );
        let req = InferenceRequest::new("m", "");
        let cx = CycleContext {
            request: &req,
            endpoints: &eps,
            state: &state,
            now_ms: 1,
            peer: None,
        };
        let c: Vec<usize> = (0..eps.len()).collect();
        (
            d.as_saturation_detector().unwrap().saturation(&cx, &c),
            crate::plugins::testing::kept(&*d, &eps, &state),
        )
    }

    /// Parameters, in-flight (requests, tokens) per endpoint, expected saturation, kept.
    type Case = (
        serde_json::Value,
        &'static [(u64, u64)],
        f64,
        &'static [bool],
    );

    #[test]
    fn table() {
        use serde_json::json;
        let cases: &[Case] = &[
            // requests mode: Σ requests / (n · C); the filter keeps load < C.
            (
                json!({"maxConcurrency": 4}),
                &[(0, 0), (2, 0)],
                0.25,
                &[true, true],
            ),
            (
                json!({"maxConcurrency": 4}),
                &[(4, 0), (4, 0)],
                1.0,
                &[false, false],
            ),
            (
                json!({"maxConcurrency": 4}),
                &[(3, 0), (5, 0)],
                1.0,
                &[true, false],
            ),
            // headroom widens the filter, not the saturation: ⌊4 · 1.5⌋ = 6.
            (
                json!({"maxConcurrency": 4, "headroom": 0.5}),
                &[(5, 0), (6, 0)],
                1.375,
                &[true, false],
            ),
            // tokens mode.
            (
                json!({"concurrencyMode": "tokens", "maxTokenConcurrency": 100}),
                &[(9, 50), (0, 100)],
                0.75,
                &[true, false],
            ),
            // hybrid: per endpoint the larger ratio, averaged; either limit drops it.
            (
                json!({"concurrencyMode": "hybrid", "maxConcurrency": 10, "maxTokenConcurrency": 100}),
                &[(5, 10), (1, 100)],
                0.75,
                &[true, false],
            ),
            // Defaults: 100 requests, 1,000,000 tokens.
            (json!({}), &[(50, 999_999), (150, 0)], 1.0, &[true, false]),
        ];
        for (params, loads, saturation, kept) in cases {
            let (s, k) = run(params.clone(), loads);
            assert!((s - saturation).abs() < 1e-12, "{params} {loads:?}: {s}");
            assert_eq!(&k[..], *kept, "{params} {loads:?}");
        }
        // No candidates: saturated.
        assert_eq!(run(json!({}), &[]).0, 1.0);
    }

    #[test]
    fn bad_parameters_are_errors() {
        use serde_json::json;
        for bad in [
            json!({"maxConcurrency": 0}),
            json!({"maxTokenConcurrency": -1}),
            json!({"headroom": -0.1}),
            json!({"concurrencyMode": "bytes"}),
        ] {
            assert!(
                factory("d", Some(&bad), &Handle::new(&[])).is_err(),
                "{bad}"
            );
        }
    }
}
