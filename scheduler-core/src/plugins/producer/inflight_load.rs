//! `inflight-load-producer`: requests and tokens in flight to each endpoint, counted by the
//! picker itself (fresher than any scrape).
//!
//! Behaviour (llm-d-router `dataproducer/inflightload/`, docs/SOURCES.md#gie-inflight-load):
//! - Produce: writes an [`InflightLoad`] per endpoint under [`INFLIGHT_LOAD`].
//! - PreRequest: adds one request and a token estimate to the first target of **each** profile
//!   result. Tokens: the prompt tokens that endpoint must compute — input (body bytes / 4, at
//!   least 1) less the blocks the cycle's prefix lookup believes it holds — plus, with
//!   `addEstimatedOutputTokens`, min(round(`outputRatio` × input), the client's output cap,
//!   `maxEstimatedOutputTokens`).
//! - ResponseBody: on the first chunk the `prefill` profile's endpoint is released, and without
//!   `addEstimatedOutputTokens` every endpoint's tokens too (the prompt has been computed); the
//!   requests (and any output estimate) at end of stream.
//! - Released also when the request state is dropped (reset, client gone): the counts are held
//!   by an [`InflightGuard`] whose `Drop` releases them, so counters never leak and, because
//!   release saturates at zero and each charge is released once, never go negative.
//!
//! Parameters (llm-d's): `addEstimatedOutputTokens` (default false), `outputRatio` (≥ 0,
//! default 1.5), `maxEstimatedOutputTokens` (≥ 0, none by default), `prefixMatchInfoProducerName`
//! (which prefix producer's match discounts the prompt; the approximate one by default),
//! `syncCrossReplicaState` (accepted: each proxy counts what it sent; the native build's counts
//! are process-wide).

use alloc::sync::Arc;

use crate::lock::Lock;
use crate::model::request::InferenceRequest;
use alloc::string::String;
use alloc::vec::Vec;

use hashbrown::HashMap;

use crate::error::ConfigError;
use crate::model::response::{BodyChunk, ResponseInfo};
use crate::model::result::SchedulingResult;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleContext, CycleState, DataKey, DataProducer, Plugin, PreRequest, ProduceContext,
    RequestState, ResponseBody, TypedName,
};
use crate::plugins::producer::approx_prefix_cache::PrefixMatch;
use crate::plugins::scorer::prefix_cache::match_key_for;
use serde::Deserialize;

/// Plugin type name.
pub const TYPE: &str = "inflight-load-producer";

/// Cycle-state key of the per-endpoint `Vec<InflightLoad>`.
pub const INFLIGHT_LOAD: DataKey = "InFlightLoadKey";

/// In-flight load of one endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InflightLoad {
    /// Requests sent and not finished.
    pub requests: u64,
    /// Estimated tokens (input + expected output) of those requests.
    pub tokens: u64,
}

/// Endpoints read per lock acquisition by [`InflightCounters::loads`].
pub const LOADS_PER_LOCK: usize = 64;

/// Per-endpoint in-flight counters shared by a plugin and the guards of its requests.
#[derive(Clone, Default)]
pub struct InflightCounters(Arc<Lock<HashMap<String, InflightLoad>>>);

impl InflightCounters {
    /// The load of `address` (zero when unknown).
    pub fn load(&self, address: &str) -> InflightLoad {
        self.0.lock().get(address).copied().unwrap_or_default()
    }

    /// The loads of `addresses`, in order, each read once (other workers of a native module
    /// charge and release between reads, so a caller that needs a count twice keeps it from
    /// here). The lock is taken once per [`LOADS_PER_LOCK`] endpoints: one round trip for a
    /// typical pool, and never held for a whole large pool while workers wait to charge.
    pub fn loads<'a>(
        &self,
        addresses: impl Iterator<Item = &'a str>,
        out: &mut impl Extend<InflightLoad>,
    ) {
        let mut addresses = addresses.peekable();
        while addresses.peek().is_some() {
            let m = self.0.lock();
            out.extend(
                addresses
                    .by_ref()
                    .take(LOADS_PER_LOCK)
                    .map(|a| m.get(a).copied().unwrap_or_default()),
            );
        }
    }

    /// Charges `address` with one request of `tokens` and returns the guard that releases it.
    pub fn charge(&self, address: &str, tokens: u64, prefill: bool) -> Charge {
        {
            let mut m = self.0.lock();
            let l = m.entry_ref(address).or_default();
            l.requests = l.requests.saturating_add(1);
            l.tokens = l.tokens.saturating_add(tokens);
        }
        Charge {
            address: address.into(),
            tokens,
            prefill,
        }
    }

    /// Releases the tokens of `c` only (its request stays counted).
    fn release_tokens(&self, c: &Charge) {
        if let Some(l) = self.0.lock().get_mut(c.address.as_str()) {
            l.tokens = l.tokens.saturating_sub(c.tokens);
        }
    }

    fn release(&self, c: &Charge) {
        {
            let mut m = self.0.lock();
            if let Some(l) = m.get_mut(c.address.as_str()) {
                l.requests = l.requests.saturating_sub(1);
                l.tokens = l.tokens.saturating_sub(c.tokens);
                if l.requests == 0 {
                    m.remove(c.address.as_str());
                }
            }
        }
    }

    /// Drops the counters of endpoints not in `addresses`.
    pub fn retain(&self, addresses: &[&str]) {
        self.0.lock().retain(|k, _| addresses.contains(&k.as_str()));
    }

    /// Total requests in flight over all endpoints.
    pub fn total_requests(&self) -> u64 {
        self.0.lock().values().map(|l| l.requests).sum()
    }
}

/// One charged endpoint of a request.
#[derive(Debug)]
pub struct Charge {
    address: String,
    tokens: u64,
    prefill: bool,
}

/// Holds a request's charges; dropping it releases whatever is still charged.
pub struct InflightGuard {
    counters: InflightCounters,
    charges: Vec<Charge>,
}

impl InflightGuard {
    /// A guard over `charges` made on `counters`.
    pub fn new(counters: InflightCounters, charges: Vec<Charge>) -> Self {
        InflightGuard { counters, charges }
    }

    /// Releases the prefill charges now (first response chunk).
    pub fn release_prefill(&mut self) {
        let counters = self.counters.clone();
        self.charges.retain(|c| {
            if c.prefill {
                counters.release(c);
            }
            !c.prefill
        });
    }

    /// Releases the tokens of every remaining charge now; their requests stay counted until
    /// the guard is dropped.
    pub fn release_tokens(&mut self) {
        for c in &mut self.charges {
            self.counters.release_tokens(c);
            c.tokens = 0;
        }
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        for c in self.charges.drain(..) {
            self.counters.release(&c);
        }
    }
}

/// Input tokens of `request`: its body's bytes / 4 (GIE's 4 characters per token), its media
/// parts counted as the tokens they stand for, at least 1.
pub fn input_tokens(request: &InferenceRequest<'_>) -> u64 {
    request.tokens_of_text(request.body_size_bytes).max(1)
}

/// llm-d's output estimate: round(`ratio` × `input`), capped by the client's own limit
/// (`client_cap`) and by `max`, each when set.
pub fn output_tokens(input: u64, ratio: f64, client_cap: Option<u64>, max: Option<u64>) -> u64 {
    // `as` saturates (a huge ratio gives u64::MAX, then the caps apply).
    let est = libm::round(input as f64 * ratio) as u64;
    [client_cap, max].into_iter().flatten().fold(est, u64::min)
}

/// The prompt tokens an endpoint must compute: `input` less the leading blocks `held` says it
/// holds (llm-d's uncached input: the indexed blocks not held, plus the part of the prompt past
/// the indexed ones).
pub fn uncached_tokens(input: u64, held: Option<&PrefixMatch>) -> u64 {
    let Some(m) = held.filter(|m| m.block_size_tokens > 0) else {
        return input;
    };
    let block = u64::from(m.block_size_tokens);
    let indexed = u64::from(m.total_blocks).saturating_mul(block);
    let not_held = u64::from(m.total_blocks.saturating_sub(m.matched_blocks)).saturating_mul(block);
    not_held.saturating_add(input.saturating_sub(indexed))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    add_estimated_output_tokens: bool,
    output_ratio: f64,
    max_estimated_output_tokens: Option<i64>,
    prefix_match_info_producer_name: Option<String>,
    sync_cross_replica_state: Option<bool>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            add_estimated_output_tokens: false,
            output_ratio: 1.5,
            max_estimated_output_tokens: None,
            prefix_match_info_producer_name: None,
            sync_cross_replica_state: None,
        }
    }
}

/// Builds an [`InflightLoadProducer`].
///
/// # Errors
/// Unknown fields; a negative or non-finite `outputRatio`; a negative
/// `maxEstimatedOutputTokens`.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if !(p.output_ratio.is_finite() && p.output_ratio >= 0.0) {
        return Err(ConfigError::invalid(
            crate::error::FieldPath::key("outputRatio"),
            alloc::format!("must be a non-negative number, got {}", p.output_ratio),
        ));
    }
    let max_output = match p.max_estimated_output_tokens {
        Some(n) => Some(u64::try_from(n).map_err(|_| {
            ConfigError::invalid(
                crate::error::FieldPath::key("maxEstimatedOutputTokens"),
                alloc::format!("must be non-negative, got {n}"),
            )
        })?),
        None => None,
    };
    let _ = p.sync_cross_replica_state;
    Ok(Arc::new(InflightLoadProducer {
        typed_name: TypedName::new(TYPE, name),
        counters: InflightCounters::default(),
        add_output: p.add_estimated_output_tokens,
        output_ratio: p.output_ratio,
        max_output,
        prefix_key: match_key_for(p.prefix_match_info_producer_name.as_deref(), handle),
    }))
}

/// See the module docs.
pub struct InflightLoadProducer {
    typed_name: TypedName,
    counters: InflightCounters,
    /// `addEstimatedOutputTokens`.
    add_output: bool,
    /// `outputRatio`.
    output_ratio: f64,
    /// `maxEstimatedOutputTokens`.
    max_output: Option<u64>,
    /// Where the prefix producer chosen by `prefixMatchInfoProducerName` writes its matches.
    prefix_key: DataKey,
}

impl InflightLoadProducer {
    /// The shared counters (for tests and stats).
    pub fn counters(&self) -> &InflightCounters {
        &self.counters
    }
}

impl Plugin for InflightLoadProducer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_data_producer(&self) -> Option<&dyn DataProducer> {
        Some(self)
    }
    fn as_pre_request(&self) -> Option<&dyn PreRequest> {
        Some(self)
    }
    fn as_response_body(&self) -> Option<&dyn ResponseBody> {
        Some(self)
    }
    fn produces(&self) -> &'static [DataKey] {
        &[INFLIGHT_LOAD]
    }
    fn pool_changed(&self, addresses: &[&str]) {
        self.counters.retain(addresses);
    }
}

/// The in-flight load of pool index `i` in what [`InflightLoadProducer`] wrote under
/// [`INFLIGHT_LOAD`] (`loads`); zero when it wrote nothing for it.
pub fn load_of(loads: Option<&Vec<InflightLoad>>, i: usize) -> InflightLoad {
    loads.and_then(|l| l.get(i)).copied().unwrap_or_default()
}

impl DataProducer for InflightLoadProducer {
    fn produce(
        &self,
        cx: &ProduceContext<'_>,
        _: &[usize],
        cycle: &mut CycleState,
        _: &mut RequestState,
    ) {
        let mut loads = Vec::with_capacity(cx.endpoints.len());
        self.counters
            .loads(cx.endpoints.iter().map(|e| e.address.as_str()), &mut loads);
        cycle.put(INFLIGHT_LOAD, loads);
    }
}

impl PreRequest for InflightLoadProducer {
    fn pre_request(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
        state: &mut RequestState,
    ) {
        let input = input_tokens(cx.request);
        let output = if self.add_output {
            output_tokens(
                input,
                self.output_ratio,
                cx.request.max_output_tokens,
                self.max_output,
            )
        } else {
            0
        };
        let held = cx.state.get::<Vec<PrefixMatch>>(self.prefix_key);
        let charges = charge_first_targets(&self.counters, cx, result, |i| {
            uncached_tokens(input, held.and_then(|m| m.get(i))).saturating_add(output)
        });
        state.put(
            &self.typed_name.name,
            InflightGuard::new(self.counters.clone(), charges),
        );
    }
}

/// Charges the first target of each profile result with the tokens `tokens` gives for its pool
/// index; the `prefill` profile's charge is marked.
pub(crate) fn charge_first_targets(
    counters: &InflightCounters,
    cx: &CycleContext<'_>,
    result: &SchedulingResult,
    tokens: impl Fn(usize) -> u64,
) -> Vec<Charge> {
    result
        .profile_results
        .iter()
        .filter_map(|(name, r)| {
            let first = *r.as_ref()?.targets.first()?;
            let ep = cx.endpoint(first)?;
            Some(counters.charge(&ep.address, tokens(first), name == "prefill"))
        })
        .collect()
}

impl ResponseBody for InflightLoadProducer {
    fn response_body(&self, state: &mut RequestState, _: &ResponseInfo<'_>, chunk: &BodyChunk) {
        // Without an output estimate the tokens are the prompt's, computed once the first
        // chunk arrives.
        release_on_chunk(state, &self.typed_name.name, chunk, !self.add_output);
    }
}

/// Releases prefill charges on the first chunk (and, with `tokens_at_first`, every charge's
/// tokens) and everything at end of stream.
pub(crate) fn release_on_chunk(
    state: &mut RequestState,
    owner: &str,
    chunk: &BodyChunk,
    tokens_at_first: bool,
) {
    if chunk.end_of_stream {
        drop(state.take::<InflightGuard>(owner));
    } else if chunk.first {
        if let Some(g) = state.get_mut::<InflightGuard>(owner) {
            g.release_prefill();
            if tokens_at_first {
                g.release_tokens();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llm_d_s_token_estimates() {
        // Output: round(ratio × input), capped by the client's limit and the configured one.
        assert_eq!(output_tokens(100, 1.5, None, None), 150);
        assert_eq!(output_tokens(100, 1.5, Some(20), None), 20);
        assert_eq!(output_tokens(100, 1.5, Some(90), Some(30)), 30);
        assert_eq!(output_tokens(100, 0.0, None, None), 0);
        assert_eq!(output_tokens(u64::MAX, 1e300, None, Some(7)), 7);
        // Uncached input: 10 blocks of 16 tokens indexed, 4 held, 40 tokens past the index.
        let held = PrefixMatch {
            matched_blocks: 4,
            total_blocks: 10,
            block_size_tokens: 16,
        };
        assert_eq!(uncached_tokens(200, Some(&held)), 6 * 16 + 40);
        assert_eq!(uncached_tokens(200, None), 200);
        let all = PrefixMatch {
            matched_blocks: 10,
            ..held
        };
        assert_eq!(uncached_tokens(160, Some(&all)), 0);
    }

    /// Runs the producer's PreRequest for a request of 400 body bytes (100 input tokens) with
    /// `max_tokens` sent to endpoint 1 (decode) and endpoint 0 (prefill), where endpoint 1 is
    /// believed to hold 2 of 5 blocks of 16 tokens; returns the producer and the request state.
    fn charged(
        params: serde_json::Value,
        max_tokens: Option<u64>,
    ) -> (Arc<dyn Plugin>, RequestState) {
        use crate::model::endpoint::Endpoint;
        use crate::model::request::InferenceRequest;
        use crate::model::result::ProfileRunResult;
        let plugin = factory("load", Some(&params), &Handle::new(&[])).unwrap();
        let endpoints: Vec<Endpoint> = (0..2)
            .map(|i| Endpoint::new(alloc::format!("10.0.0.{i}:8000")))
            .collect();
        let prompt = "p".repeat(400);
        let mut request = InferenceRequest::new("m", &prompt);
        request.max_output_tokens = max_tokens;
        let mut cycle = CycleState::new();
        let block = |matched| PrefixMatch {
            matched_blocks: matched,
            total_blocks: 5,
            block_size_tokens: 16,
        };
        cycle.put(
            crate::plugins::producer::approx_prefix_cache::PREFIX_CACHE_MATCH_INFO,
            alloc::vec![block(0), block(2)],
        );
        let cx = CycleContext {
            request: &request,
            endpoints: &endpoints,
            state: &cycle,
            now_ms: 0,
            peer: None,
        };
        let target = |i| {
            Some(ProfileRunResult {
                targets: alloc::vec![i],
                ..ProfileRunResult::default()
            })
        };
        let result = SchedulingResult {
            profile_results: alloc::vec![
                ("decode".into(), target(1)),
                ("prefill".into(), target(0))
            ],
            primary_profile: 0,
            headers: Vec::new(),
        };
        let mut state = RequestState::new();
        plugin
            .as_pre_request()
            .unwrap()
            .pre_request(&cx, &result, &mut state);
        (plugin, state)
    }

    fn loads(plugin: &Arc<dyn Plugin>) -> [InflightLoad; 2] {
        let mut cycle = CycleState::new();
        let endpoints: Vec<crate::model::endpoint::Endpoint> = (0..2)
            .map(|i| crate::model::endpoint::Endpoint::new(alloc::format!("10.0.0.{i}:8000")))
            .collect();
        let request = crate::model::request::InferenceRequest::new("m", "p");
        let pcx = ProduceContext {
            request: &request,
            endpoints: &endpoints,
            now_ms: 0,
        };
        plugin.as_data_producer().unwrap().produce(
            &pcx,
            &[0, 1],
            &mut cycle,
            &mut RequestState::new(),
        );
        let l = cycle.get::<Vec<InflightLoad>>(INFLIGHT_LOAD).unwrap();
        [l[0], l[1]]
    }

    #[test]
    fn by_default_the_uncached_prompt_is_counted_until_the_first_chunk() {
        let (plugin, mut state) = charged(serde_json::json!({}), Some(10));
        // Decode endpoint: 3 of 5 blocks not held (48) + 20 tokens past the index; prefill: all.
        assert_eq!(
            loads(&plugin),
            [
                InflightLoad {
                    requests: 1,
                    tokens: 100
                },
                InflightLoad {
                    requests: 1,
                    tokens: 68
                }
            ]
        );
        let info = ResponseInfo {
            status: 200,
            served_endpoint: None,
            now_ms: 0,
        };
        let chunk = |first, end_of_stream| BodyChunk {
            first,
            end_of_stream,
            usage: None,
        };
        let hooks = plugin.as_response_body().unwrap();
        hooks.response_body(&mut state, &info, &chunk(true, false));
        // The prompt is computed: prefill released, the decode endpoint keeps its request.
        assert_eq!(
            loads(&plugin),
            [
                InflightLoad::default(),
                InflightLoad {
                    requests: 1,
                    tokens: 0
                }
            ]
        );
        hooks.response_body(&mut state, &info, &chunk(false, true));
        assert_eq!(loads(&plugin), [InflightLoad::default(); 2]);
    }

    #[test]
    fn with_the_output_estimate_tokens_stay_until_the_end() {
        // round(2 × 100) capped by the client's max_tokens 30, then by maxEstimatedOutputTokens.
        let params = serde_json::json!({"addEstimatedOutputTokens": true, "outputRatio": 2});
        let (plugin, mut state) = charged(params, Some(30));
        assert_eq!(
            loads(&plugin)[1],
            InflightLoad {
                requests: 1,
                tokens: 68 + 30
            }
        );
        let info = ResponseInfo {
            status: 200,
            served_endpoint: None,
            now_ms: 0,
        };
        plugin.as_response_body().unwrap().response_body(
            &mut state,
            &info,
            &BodyChunk {
                first: true,
                end_of_stream: false,
                usage: None,
            },
        );
        assert_eq!(
            loads(&plugin),
            [
                InflightLoad::default(),
                InflightLoad {
                    requests: 1,
                    tokens: 98
                }
            ]
        );
        drop(state);
        assert_eq!(loads(&plugin), [InflightLoad::default(); 2]);
        let capped =
            serde_json::json!({"addEstimatedOutputTokens": true, "maxEstimatedOutputTokens": 5});
        let (plugin, _state) = charged(capped, None);
        assert_eq!(loads(&plugin)[1].tokens, 68 + 5);
    }

    #[test]
    fn parameters_are_checked() {
        for bad in [
            serde_json::json!({"outputRatio": -1}),
            serde_json::json!({"maxEstimatedOutputTokens": -3}),
            serde_json::json!({"outputRatios": 1}),
        ] {
            assert!(
                factory("x", Some(&bad), &Handle::new(&[])).is_err(),
                "{bad}"
            );
        }
        let upstream = serde_json::json!({"addEstimatedOutputTokens": false, "outputRatio": 1.2,
            "prefixMatchInfoProducerName": "approx-prefix-cache-producer", "syncCrossReplicaState": true});
        assert!(factory("x", Some(&upstream), &Handle::new(&[])).is_ok());
    }

    #[test]
    fn guard_releases_on_drop_and_never_goes_negative() {
        let c = InflightCounters::default();
        let g1 = InflightGuard::new(c.clone(), alloc::vec![c.charge("a:1", 10, false)]);
        let mut g2 = InflightGuard::new(
            c.clone(),
            alloc::vec![c.charge("a:1", 5, false), c.charge("p:1", 5, true)],
        );
        assert_eq!(
            c.load("a:1"),
            InflightLoad {
                requests: 2,
                tokens: 15
            }
        );
        g2.release_prefill();
        assert_eq!(c.load("p:1"), InflightLoad::default());
        drop(g1);
        drop(g2);
        assert_eq!(c.load("a:1"), InflightLoad::default());
        assert_eq!(c.total_requests(), 0);
    }

    #[test]
    fn loads_are_read_in_order_with_zero_for_unknown() {
        let c = InflightCounters::default();
        let _a = c.charge("a:1", 10, false);
        let _b = [c.charge("b:1", 5, false), c.charge("b:1", 7, false)];
        let mut out = alloc::vec::Vec::new();
        c.loads(["b:1", "x:1", "a:1"].into_iter(), &mut out);
        let requests: alloc::vec::Vec<u64> = out.iter().map(|l| l.requests).collect();
        assert_eq!(requests, [2, 0, 1]);
        assert_eq!(out[0].tokens, 12);
        // A pool larger than one lock's share is read whole, in order.
        let many: alloc::vec::Vec<alloc::string::String> = (0..LOADS_PER_LOCK * 2 + 3)
            .map(|i| alloc::format!("10.0.{}.{}:8000", i / 256, i % 256))
            .collect();
        let _c = c.charge(&many[LOADS_PER_LOCK + 1], 1, false);
        out.clear();
        c.loads(many.iter().map(|a| a.as_str()), &mut out);
        assert_eq!(out.len(), many.len());
        let busy: alloc::vec::Vec<usize> =
            (0..out.len()).filter(|&i| out[i].requests > 0).collect();
        assert_eq!(busy, [LOADS_PER_LOCK + 1]);
    }

    #[test]
    fn input_estimate() {
        // 4 characters per token, at least one.
        let text = "x".repeat(400);
        assert_eq!(input_tokens(&InferenceRequest::new("m", &text)), 100);
        assert_eq!(input_tokens(&InferenceRequest::new("m", "")), 1);
        // Media parts count as their placeholder tokens, not their bytes.
        let mut r = InferenceRequest::new("m", &text);
        r.media_tokens = Some(crate::parse::media_tokens::MediaTokens {
            payload_bytes: 300,
            placeholder_tokens: 225,
            parts: 1,
        });
        assert_eq!(input_tokens(&r), 25 + 225);
    }
}
