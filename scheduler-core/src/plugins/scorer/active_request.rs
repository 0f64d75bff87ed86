//! `active-request-scorer` (llm-d): prefers endpoints with fewer requests this picker has in
//! flight to them, counted at PreRequest and released at end of response (or reset).
//!
//! Formula (our reading of llm-d's scorer, docs/SOURCES.md#gie-scorers): with `n` the endpoint's active
//! requests and `max` the largest `n` among the candidates, an endpoint with `n ≤ idleThreshold`
//! scores 1.0; any other scores `maxBusyScore × (max − n) / max`.
//! Parameters: `idleThreshold` (requests, default 0), `maxBusyScore` (0..1, default 1.0); the
//! deprecated `requestTimeout` is accepted and ignored, as in llm-d. Category: Distribution.

use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::model::response::{BodyChunk, ResponseInfo};
use crate::model::result::SchedulingResult;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleContext, Plugin, PreRequest, RequestState, ResponseBody, Scorer, TypedName,
};
use crate::plugins::producer::inflight_load::{
    charge_first_targets, release_on_chunk, InflightCounters, InflightGuard, InflightLoad,
};

/// Plugin type name.
pub const TYPE: &str = "active-request-scorer";

/// Parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Params {
    /// Endpoints with at most this many active requests count as idle (score 1.0).
    pub idle_threshold: u64,
    /// Highest score a busy endpoint can get, 0..1.
    pub max_busy_score: f64,
    /// Deprecated and ignored.
    pub request_timeout: Option<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            idle_threshold: 0,
            max_busy_score: 1.0,
            request_timeout: None,
        }
    }
}

/// Builds an [`ActiveRequestScorer`].
///
/// # Errors
/// Unknown fields; `maxBusyScore` outside 0..1.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if !(0.0..=1.0).contains(&p.max_busy_score) {
        return Err(ConfigError::invalid(
            FieldPath::key("maxBusyScore"),
            "must be within [0, 1]",
        ));
    }
    if p.request_timeout.is_some() {
        log::warn!("{name}: parameter 'requestTimeout' is deprecated and ignored");
    }
    Ok(Arc::new(ActiveRequestScorer {
        typed_name: TypedName::new(TYPE, name),
        idle_threshold: p.idle_threshold,
        max_busy_score: p.max_busy_score,
        counters: InflightCounters::default(),
    }))
}

/// See the module docs.
pub struct ActiveRequestScorer {
    typed_name: TypedName,
    idle_threshold: u64,
    max_busy_score: f64,
    counters: InflightCounters,
}

impl Plugin for ActiveRequestScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
    fn as_pre_request(&self) -> Option<&dyn PreRequest> {
        Some(self)
    }
    fn as_response_body(&self) -> Option<&dyn ResponseBody> {
        Some(self)
    }
    fn pool_changed(&self, addresses: &[&str]) {
        self.counters.retain(addresses);
    }
}

impl Scorer for ActiveRequestScorer {
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        // Each count read once: read again for the score, another worker's charge in between
        // could make a count exceed the maximum (`max - n` would wrap).
        let mut loads: crate::scratch::Scratch<InflightLoad> = crate::scratch::Scratch::new();
        self.counters.loads(
            candidates
                .iter()
                .map(|&i| cx.endpoint(i).map_or("", |e| e.address.as_str())),
            &mut loads,
        );
        let max = loads.iter().map(|l| l.requests).max().unwrap_or(0);
        for (s, l) in scores.iter_mut().zip(&loads) {
            let n = l.requests;
            *s = if n <= self.idle_threshold || max == 0 {
                1.0
            } else {
                self.max_busy_score * (max.saturating_sub(n) as f64) / (max as f64)
            };
        }
    }
}

impl PreRequest for ActiveRequestScorer {
    fn pre_request(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
        state: &mut RequestState,
    ) {
        let charges = charge_first_targets(&self.counters, cx, result, |_| 0);
        state.put(
            &self.typed_name.name,
            InflightGuard::new(self.counters.clone(), charges),
        );
    }
}

impl ResponseBody for ActiveRequestScorer {
    fn response_body(&self, state: &mut RequestState, _: &ResponseInfo<'_>, chunk: &BodyChunk) {
        release_on_chunk(state, &self.typed_name.name, chunk, false);
    }
}
