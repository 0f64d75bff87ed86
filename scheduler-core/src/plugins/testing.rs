//! Test helpers shared by the plugin unit tests.

use alloc::vec::Vec;

use crate::model::endpoint::Endpoint;
use crate::model::request::InferenceRequest;
use crate::plugin::registry::EntryKind;
use crate::plugin::Registry;
use crate::plugin::{CycleContext, CycleState, Handle, Picker, ScoredEndpoint};
use crate::rng::SplitMix64;

/// An endpoint with waiting queue `q` and KV usage `kv`, fresh metrics.
pub fn ep(q: u32, kv: f64) -> Endpoint {
    let mut e = Endpoint::new("10.0.0.1:8000");
    e.metrics.waiting_queue_size = q;
    e.metrics.kv_cache_usage = kv;
    e.metrics.update_time_ms = 1;
    e
}

/// Scores of the built-in scorer `ty` (no parameters) over every endpoint, for `req`.
pub fn scores_for_request(ty: &str, eps: &[Endpoint], req: &InferenceRequest<'_>) -> Vec<f64> {
    let reg = Registry::with_builtins();
    let Some(EntryKind::Available { factory, .. }) = reg.get(ty).map(|e| e.kind) else {
        panic!("{ty}")
    };
    let plugin = factory(ty, None, &Handle::new(&[])).unwrap();
    let state = CycleState::new();
    let cx = CycleContext {
        request: req,
        endpoints: eps,
        state: &state,
        now_ms: 1,
        peer: None,
    };
    let candidates: Vec<usize> = (0..eps.len()).collect();
    let mut scores = alloc::vec![0.0; eps.len()];
    plugin
        .as_scorer()
        .unwrap()
        .score(&cx, &candidates, &mut scores);
    scores
}

/// Which of `eps` filter `plugin` keeps for a plain request, with `state` as the cycle state
/// (what the producers wrote) and every endpoint a candidate.
pub fn kept(plugin: &dyn crate::plugin::Plugin, eps: &[Endpoint], state: &CycleState) -> Vec<bool> {
    let req = InferenceRequest::new("m", "");
    let cx = CycleContext {
        request: &req,
        endpoints: eps,
        state,
        now_ms: 1,
        peer: None,
    };
    let candidates: Vec<usize> = (0..eps.len()).collect();
    let mut keep = alloc::vec![false; eps.len()];
    plugin
        .as_filter()
        .unwrap()
        .filter(&cx, &candidates, &mut keep, &mut SplitMix64::new(1));
    keep
}

/// Scores of scorer `ty` for a plain request.
pub fn scores_of(ty: &str, eps: &[Endpoint]) -> Vec<f64> {
    scores_for_request(ty, eps, &InferenceRequest::new("m", ""))
}

/// Runs picker `p` over `scored` with `seed`; returns the picked endpoint indices.
pub fn run_picker(p: &dyn Picker, mut scored: Vec<ScoredEndpoint>, seed: u64) -> Vec<usize> {
    let req = InferenceRequest::new("m", "");
    let state = CycleState::new();
    let cx = CycleContext {
        request: &req,
        endpoints: &[],
        state: &state,
        now_ms: 0,
        peer: None,
    };
    let mut out = Vec::new();
    p.pick(&cx, &mut scored, &mut SplitMix64::new(seed), &mut out);
    out.into_iter().map(|c| c.endpoint).collect()
}

/// Builds plugin `ty` with `factory` and `params`, lending it `services`.
pub fn plugin_with_services(
    factory: crate::plugin::Factory,
    ty: &str,
    params: Option<&serde_json::Value>,
    services: &crate::plugin::Services,
) -> Result<alloc::sync::Arc<dyn crate::plugin::Plugin>, crate::error::ConfigError> {
    factory(ty, params, &Handle::with_services(&[], services))
}

/// Builds plugin `ty` with `factory` and `params` and no host services (as offline validation
/// does).
pub fn plugin_without_services(
    factory: crate::plugin::Factory,
    ty: &str,
    params: Option<&serde_json::Value>,
) -> Result<alloc::sync::Arc<dyn crate::plugin::Plugin>, crate::error::ConfigError> {
    factory(ty, params, &Handle::new(&[]))
}
