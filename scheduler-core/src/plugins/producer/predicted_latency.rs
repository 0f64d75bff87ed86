//! `predicted-latency-producer` (llm-d): predicts each candidate's TTFT and TPOT for the request,
//! compares them with the request's latency objectives, and learns from every response.
//!
//! **Deliberate difference:** llm-d trains its models in a sidecar service and asks it over
//! HTTP on every request; here the model is in the picker ([`crate::latency`]: Bayesian linear
//! regression updated online, one model per process in the native build, per worker VM in the
//! Wasm build), so there is no sidecar to deploy and no network call per request. Until the
//! model has learnt from [`crate::latency::MIN_SAMPLES`] responses it predicts nothing, and the
//! consumers fall back as upstream's do when the predictor is unavailable.
//!
//! Behaviour (llm-d-router `requestcontrol/dataproducer/predictedlatency/`, in our words;
//! docs/SOURCES.md#predicted-latency):
//! - **Objectives** from the request headers, milliseconds: TTFT from `x-llm-d-slo-ttft-ms`
//!   (or the older `x-slo-ttft-ms`), TPOT from `x-llm-d-slo-tpot-ms` (or `x-slo-tpot-ms`); a
//!   missing or invalid one counts as 0, so its headroom is minus the prediction and the
//!   consumers prefer the lowest predicted latency.
//! - **Produce:** for every candidate that has taught the model [`MIN_ENDPOINT_RESPONSES`]
//!   responses, [`LatencyPrediction`] under [`LATENCY_PREDICTION_INFO`] (a
//!   `Vec<Option<LatencyPrediction>>` indexed by pool index; `None` for the others, which
//!   `latency-scorer` then tries): predicted TTFT and TPOT — the shared model's prediction for
//!   the candidate's load times the endpoint's own speed (**ours**: actual over predicted,
//!   averaged over its responses, so a fleet of two GPU generations is told apart; upstream's
//!   model sees load only) —
//!   `ttft_headroom = objective − predicted` (valid when the prediction is below the objective),
//!   and, in `streamingMode`, `tpot_headroom = objective × sloBufferFactor − predicted`.
//!   Outside `streamingMode`, on endpoints whose `endpointRoleLabel` label is `prefill`, and
//!   while the TPOT model or the endpoint has not taught TPOT enough (twice, and once since the
//!   model was warm, so the endpoint's own speed has been measured), TPOT is neutral (valid,
//!   headroom 0), so an endpoint is not kept from the requests that would teach it. The in-flight request count comes from
//!   `inflight-load-producer` (created when missing).
//! - **Learning:** the chosen endpoint's inputs are kept with the request. Without
//!   `streamingMode` the whole response time (dispatch to end of stream) trains the TTFT model,
//!   as upstream trains end-to-end latency in that mode. In `streamingMode` a streamed request
//!   (`"stream": true`) trains TTFT at its first response chunk and TPOT at its end:
//!   (end − first chunk) / (completion tokens − 1), from the response's `usage`. Only 2xx
//!   responses served by the chosen endpoint (no retry elsewhere) teach.
//! - **Metrics:** each response that teaches leaves a [`LatencyOutcome`] (measured TTFT and
//!   TPOT, what was predicted for the endpoint that served, the objectives) in the request's
//!   state under [`LATENCY_OUTCOME`]; the host exports llm-d's predictor series from it.
//!
//! Parameters: `sloBufferFactor` (> 0, default 1), `streamingMode` (default false),
//! `endpointRoleLabel`, `predictInProduce` (default true; false learns without predicting),
//! `prefixMatchInfoProducerName` (as `prefix-cache-scorer`'s). Accepted and ignored, as
//! upstream ignores or does not need them here: `samplingMean`,
//! `maxDecodeTokenSamplesForPrediction`, `contextTTL` (the inputs live with the request),
//! `inFlightLoadProducerName`, `useEncoderCacheFeatures`, `encoderCacheMatchInfoProducerName`.
//! - **Running requests' TPOT objectives** (`streamingMode`): while a streamed request with a
//!   TPOT objective runs on an endpoint, that endpoint's TPOT headroom for later requests is
//!   computed against the strictest such objective if it is below the new request's own, so a
//!   request is not placed where its decoding would slow one with a tighter objective. The
//!   objective is released when the response ends or the request is dropped. **Differs:**
//!   upstream also counts requests without an objective, as 0, which switches the tightening off
//!   for the whole endpoint while one of them runs; here they are not counted.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use hashbrown::HashMap;
use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::latency::{
    tpot_features, ttft_features, Inputs, OnlineRidge, FORGETTING, PRIOR_PRECISION, TPOT_FEATURES,
    TTFT_FEATURES,
};
use crate::lock::Lock;
use crate::model::request::InferenceRequest;
use crate::model::response::{BodyChunk, LatencyOutcome, ResponseInfo, LATENCY_OUTCOME};
use crate::model::result::SchedulingResult;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleContext, CycleState, DataKey, DataProducer, Plugin, PreRequest, ProduceContext,
    RequestState, ResponseBody, TypedName,
};
use crate::plugins::producer::approx_prefix_cache::PrefixMatch;
use crate::plugins::producer::inflight_load::{load_of, InflightLoad, INFLIGHT_LOAD};
use crate::plugins::scorer::prefix_cache;

/// Plugin type name.
pub const TYPE: &str = "predicted-latency-producer";

/// Cycle-state key of the per-endpoint `Vec<Option<LatencyPrediction>>` (llm-d's
/// `LatencyPredictionInfoDataKey`).
pub const LATENCY_PREDICTION_INFO: DataKey = "LatencyPredictionInfoDataKey";

/// Request headers carrying the TTFT objective, ms (the first present wins).
pub const SLO_TTFT_HEADERS: [&str; 2] =
    crate::plugins::flow_control::slo_deadline::SLO_TTFT_HEADERS;
/// Request headers carrying the TPOT objective, ms (the first present wins).
pub const SLO_TPOT_HEADERS: [&str; 2] = ["x-llm-d-slo-tpot-ms", "x-slo-tpot-ms"];

/// One candidate's predicted latency for the request and how it compares with the objectives.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencyPrediction {
    /// Predicted time to first token, ms (end-to-end latency outside `streamingMode`).
    pub ttft_ms: f64,
    /// Predicted time per output token, ms (0 outside `streamingMode`).
    pub tpot_ms: f64,
    /// TTFT objective − prediction, ms (negative: the objective is missed).
    pub ttft_headroom_ms: f64,
    /// Buffered TPOT objective − prediction, ms (0 where TPOT is neutral).
    pub tpot_headroom_ms: f64,
    /// The TTFT prediction is below the objective.
    pub ttft_valid: bool,
    /// The TPOT prediction is below the buffered objective (true where TPOT is neutral).
    pub tpot_valid: bool,
    /// Requests this picker has in flight on the endpoint.
    pub dispatched: u64,
}

impl LatencyPrediction {
    /// Both objectives are met.
    pub fn is_valid(&self) -> bool {
        self.ttft_valid && self.tpot_valid
    }
}

/// What [`PredictedLatencyProducer`] writes under [`LATENCY_PREDICTION_INFO`]: indexed by pool
/// index, `None` for endpoints it did not predict.
pub type Predictions = Vec<Option<LatencyPrediction>>;

/// The objective in the first of `names` the request carries, ms; 0 when none is a positive
/// number.
pub fn objective_ms(request: &InferenceRequest<'_>, names: &[&str]) -> f64 {
    names
        .iter()
        .find_map(|n| request.header(n))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(0.0)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    slo_buffer_factor: f64,
    streaming_mode: bool,
    endpoint_role_label: String,
    predict_in_produce: bool,
    prefix_match_info_producer_name: Option<String>,
    // Accepted and ignored (module docs).
    sampling_mean: Option<serde_json::Value>,
    max_decode_token_samples_for_prediction: Option<serde_json::Value>,
    #[serde(rename = "contextTTL")]
    context_ttl: Option<serde_json::Value>,
    in_flight_load_producer_name: Option<serde_json::Value>,
    use_encoder_cache_features: Option<serde_json::Value>,
    encoder_cache_match_info_producer_name: Option<serde_json::Value>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            slo_buffer_factor: 1.0,
            streaming_mode: false,
            endpoint_role_label: String::new(),
            predict_in_produce: true,
            prefix_match_info_producer_name: None,
            sampling_mean: None,
            max_decode_token_samples_for_prediction: None,
            context_ttl: None,
            in_flight_load_producer_name: None,
            use_encoder_cache_features: None,
            encoder_cache_match_info_producer_name: None,
        }
    }
}

/// Builds a [`PredictedLatencyProducer`].
///
/// # Errors
/// Unknown fields; `sloBufferFactor` not > 0.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    Ok(Arc::new(build(name, params, handle)?))
}

/// The producer [`factory`] builds.
///
/// # Errors
/// As [`factory`].
pub fn build(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<PredictedLatencyProducer, ConfigError> {
    let p: Params = parse_params(params)?;
    if !(p.slo_buffer_factor.is_finite() && p.slo_buffer_factor > 0.0) {
        return Err(ConfigError::invalid(
            FieldPath::key("sloBufferFactor"),
            alloc::format!("must be > 0, got {}", p.slo_buffer_factor),
        ));
    }
    if p.use_encoder_cache_features == Some(serde_json::Value::Bool(true)) {
        log::warn!("{TYPE} '{name}': useEncoderCacheFeatures is not built here; the model uses text features only");
    }
    let prefix_key =
        prefix_cache::match_key_for(p.prefix_match_info_producer_name.as_deref(), handle);
    Ok(PredictedLatencyProducer {
        typed_name: TypedName::new(TYPE, name),
        name: Arc::from(name),
        models: Arc::new(Lock::new(Models::new())),
        buffer_factor: p.slo_buffer_factor,
        streaming: p.streaming_mode,
        role_label: p.endpoint_role_label,
        predict: p.predict_in_produce,
        prefix_key,
        consumes: consumed(prefix_key),
    })
}

/// The keys a producer reading prefix matches under `key` consumes.
fn consumed(key: DataKey) -> &'static [DataKey] {
    if key == crate::plugins::producer::precise_prefix_cache::PRECISE_PREFIX_CACHE_MATCH_INFO {
        &[
            crate::plugins::producer::precise_prefix_cache::PRECISE_PREFIX_CACHE_MATCH_INFO,
            INFLIGHT_LOAD,
        ]
    } else {
        &[
            crate::plugins::producer::approx_prefix_cache::PREFIX_CACHE_MATCH_INFO,
            INFLIGHT_LOAD,
        ]
    }
}

/// Responses an endpoint must have taught before it gets predictions; until then it gets none,
/// so `latency-scorer` tries it (a model that has only heard from some endpoints would otherwise
/// judge the others by extrapolation and keep routing where it has already been).
pub const MIN_ENDPOINT_RESPONSES: u32 = 2;

/// Requests in flight (the `running` input: this proxy's in-flight count when an in-flight
/// producer runs, the scraped running requests otherwise) from which an endpoint that has not
/// taught [`MIN_ENDPOINT_RESPONSES`] yet is predicted like an endpoint of the fleet's average
/// speed under its load, instead of getting none. Without it a newcomer (a scaled-up Deployment)
/// would be sent every request until its first answers arrived: `latency-scorer` prefers an
/// endpoint with no prediction. Ours: upstream predicts every endpoint from one model.
pub const UNHEARD_IN_FLIGHT: u32 = MIN_ENDPOINT_RESPONSES;

/// Weight of a new observation in an endpoint's speed once it has [`1 / SPEED_ALPHA`] of them
/// (an exponential average; before that the plain mean of what it has, so a few responses
/// already place an endpoint).
pub const SPEED_ALPHA: f64 = 0.1;

/// Largest factor an endpoint's speed may differ from the shared model by, either way.
const MAX_SPEED_FACTOR: f64 = 20.0;

/// Actual over predicted latency of one endpoint, averaged.
#[derive(Clone, Copy, Debug)]
struct Ratio {
    /// 1 for an endpoint as fast as the fleet's model says, 3 for one three times slower.
    value: f64,
    /// Observations averaged, saturating.
    n: u32,
}

impl Default for Ratio {
    fn default() -> Self {
        Ratio { value: 1.0, n: 0 }
    }
}

impl Ratio {
    /// Moves toward `actual / predicted` (no change while the prediction is under 1 ms).
    fn follow(&mut self, actual: f64, predicted: f64) {
        if predicted >= 1.0 && actual.is_finite() {
            let r = (actual / predicted).clamp(1.0 / MAX_SPEED_FACTOR, MAX_SPEED_FACTOR);
            self.n = self.n.saturating_add(1);
            let alpha = SPEED_ALPHA.max(1.0 / f64::from(self.n));
            self.value += alpha * (r - self.value);
        }
    }
}

/// What the producer knows of one endpoint apart from the shared models.
#[derive(Clone, Copy, Debug, Default)]
struct EndpointSpeed {
    ttft: Ratio,
    tpot: Ratio,
    /// Responses that taught the TTFT model, saturating.
    ttft_responses: u32,
    /// Responses that taught the TPOT model, saturating.
    tpot_responses: u32,
}

/// The two shared models and each endpoint's speed, learnt together under one lock.
struct Models {
    ttft: OnlineRidge<TTFT_FEATURES>,
    tpot: OnlineRidge<TPOT_FEATURES>,
    /// By endpoint address; only pool members (see `pool_changed`).
    speeds: HashMap<String, EndpointSpeed>,
    /// By endpoint address: the TPOT objectives (ms, > 0) of the streamed requests this
    /// producer sent there that are still running (one entry per request; an address leaves
    /// with its last request).
    running_tpot: HashMap<String, Vec<f64>>,
}

impl Models {
    fn new() -> Self {
        Models {
            ttft: OnlineRidge::new(PRIOR_PRECISION, FORGETTING),
            tpot: OnlineRidge::new(PRIOR_PRECISION, FORGETTING),
            speeds: HashMap::new(),
            running_tpot: HashMap::new(),
        }
    }

    /// The strictest TPOT objective among the requests running on `address`, ms (0: none).
    fn strictest_tpot(&self, address: &str) -> f64 {
        self.running_tpot
            .get(address)
            .and_then(|v| v.iter().copied().reduce(f64::min))
            .unwrap_or(0.0)
    }

    /// Takes one request's TPOT objective off `address`.
    fn release_tpot(&mut self, address: &str, objective: f64) {
        if let Some(v) = self.running_tpot.get_mut(address) {
            if let Some(i) = v.iter().position(|&o| o == objective) {
                v.swap_remove(i);
            }
            if v.is_empty() {
                self.running_tpot.remove(address);
            }
        }
    }

    fn speed_mut(&mut self, address: &str) -> &mut EndpointSpeed {
        // Allocates the key only for an endpoint not seen before.
        self.speeds.entry_ref(address).or_default()
    }

    /// Learns that the TTFT model's input `x` on `address` took `y` ms.
    fn learn_ttft(&mut self, address: &str, x: &[f64; TTFT_FEATURES], y: f64) {
        let predicted = self.ttft.predict(x);
        let warm = self.ttft.is_warm();
        let s = self.speed_mut(address);
        if warm {
            s.ttft.follow(y, predicted);
        }
        s.ttft_responses = s.ttft_responses.saturating_add(1);
        self.ttft.update(x, y);
    }

    /// Learns that the TPOT model's input `x` on `address` took `y` ms per token.
    fn learn_tpot(&mut self, address: &str, x: &[f64; TPOT_FEATURES], y: f64) {
        let predicted = self.tpot.predict(x);
        let warm = self.tpot.is_warm();
        let s = self.speed_mut(address);
        if warm {
            s.tpot.follow(y, predicted);
        }
        s.tpot_responses = s.tpot_responses.saturating_add(1);
        self.tpot.update(x, y);
    }
}

/// What was predicted for one candidate: (TTFT ms, TPOT ms where TPOT was not neutral).
type Predicted = (f64, Option<f64>);

/// The candidates' inputs and predictions, kept from Produce to PreRequest.
struct CandidateInputs {
    /// `(pool index, inputs, prediction if one was made)`.
    candidates: Vec<(usize, Inputs, Option<Predicted>)>,
    /// The request's objectives, ms (0: none; TPOT before the buffer factor).
    objectives: (f64, f64),
}

/// The chosen endpoint's inputs, kept from PreRequest to the end of the response.
struct Dispatched {
    address: String,
    inputs: Inputs,
    /// What was predicted for it when it was chosen.
    predicted: Option<Predicted>,
    /// The request's objectives, ms: (TTFT, TPOT).
    objectives: (f64, f64),
    /// When the request was dispatched, ms since the Unix epoch.
    at_ms: u64,
    /// The request asked for a streamed response.
    stream: bool,
    /// When its first response chunk arrived, ms since the Unix epoch.
    first_ms: Option<u64>,
    /// Where its TPOT objective is held among the endpoint's running requests, if it is; taken
    /// off when this is dropped (end of the response, or the request's state dropped).
    held_tpot: Option<Arc<Lock<Models>>>,
}

impl Drop for Dispatched {
    fn drop(&mut self) {
        if let Some(models) = self.held_tpot.take() {
            models.lock().release_tpot(&self.address, self.objectives.1);
        }
    }
}

/// See the module docs.
pub struct PredictedLatencyProducer {
    typed_name: TypedName,
    /// The instance name again, shared with every [`LatencyOutcome`] at no copy.
    name: Arc<str>,
    models: Arc<Lock<Models>>,
    buffer_factor: f64,
    streaming: bool,
    role_label: String,
    predict: bool,
    prefix_key: DataKey,
    consumes: &'static [DataKey],
}

impl PredictedLatencyProducer {
    /// Responses learnt so far: `(TTFT model, TPOT model)`.
    pub fn samples(&self) -> (u64, u64) {
        let m = self.models.lock();
        (m.ttft.samples(), m.tpot.samples())
    }

    fn is_prefill(&self, labels: &[(String, String)]) -> bool {
        !self.role_label.is_empty()
            && labels
                .iter()
                .any(|(k, v)| *k == self.role_label && v == "prefill")
    }

    /// Learns from the end of a response that teaches, and says what was measured against what
    /// was predicted (`None` for a response this mode does not learn from).
    fn learn(
        &self,
        d: &Dispatched,
        now_ms: u64,
        completion_tokens: Option<u64>,
    ) -> Option<LatencyOutcome> {
        let outcome = |ttft_ms: f64, tpot_ms: Option<f64>| LatencyOutcome {
            plugin_name: self.name.clone(),
            plugin_type: TYPE,
            ttft_ms,
            predicted_ttft_ms: d.predicted.map(|p| p.0),
            ttft_objective_ms: d.objectives.0,
            tpot_ms,
            predicted_tpot_ms: d.predicted.and_then(|p| p.1),
            tpot_objective_ms: d.objectives.1,
        };
        if !self.streaming {
            let e2e = now_ms.saturating_sub(d.at_ms) as f64;
            self.models
                .lock()
                .learn_ttft(&d.address, &ttft_features(&d.inputs), e2e);
            return Some(outcome(e2e, None));
        }
        if !d.stream {
            return None;
        }
        let first = d.first_ms?;
        let tpot = completion_tokens
            .filter(|&n| n > 1)
            .map(|n| now_ms.saturating_sub(first) as f64 / (n - 1) as f64);
        if let Some(tpot) = tpot {
            self.models
                .lock()
                .learn_tpot(&d.address, &tpot_features(&d.inputs), tpot);
        }
        Some(outcome(first.saturating_sub(d.at_ms) as f64, tpot))
    }
}

impl Plugin for PredictedLatencyProducer {
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
        &[LATENCY_PREDICTION_INFO]
    }
    fn consumes(&self) -> &'static [DataKey] {
        self.consumes
    }
    fn pool_changed(&self, addresses: &[&str]) {
        self.models
            .lock()
            .speeds
            .retain(|a, _| addresses.contains(&a.as_str()));
    }
}

impl DataProducer for PredictedLatencyProducer {
    fn produce(
        &self,
        cx: &ProduceContext<'_>,
        candidates: &[usize],
        cycle: &mut CycleState,
        request_state: &mut RequestState,
    ) {
        let loads = cycle.get::<Vec<InflightLoad>>(INFLIGHT_LOAD);
        let matches = cycle.get::<Vec<PrefixMatch>>(self.prefix_key);
        let input_tokens = cx.request.estimated_prompt_tokens() as f64;
        let slo_ttft = objective_ms(cx.request, &SLO_TTFT_HEADERS);
        let slo_tpot = objective_ms(cx.request, &SLO_TPOT_HEADERS);
        let mut inputs: Vec<(usize, Inputs, Option<Predicted>)> = candidates
            .iter()
            .filter_map(|&i| {
                let e = cx.endpoints.get(i)?;
                let load = load_of(loads, i);
                Some((
                    i,
                    Inputs {
                        kv_cache_usage: e.metrics.kv_cache_usage,
                        waiting: f64::from(e.metrics.waiting_queue_size),
                        running: if loads.is_some() {
                            load.requests as f64
                        } else {
                            f64::from(e.metrics.running_requests)
                        },
                        input_tokens,
                        prefix_hit: matches
                            .and_then(|m| m.get(i))
                            .map_or(0.0, PrefixMatch::ratio),
                        prefill_tokens_in_flight: load.tokens as f64,
                    },
                    None,
                ))
            })
            .collect();
        if self.predict {
            // Weights and the candidates' speeds copied out under one lock, predictions made
            // outside it. `None`: an endpoint that has not taught enough yet.
            let (ttft_w, tpot_w, ttft_warm, tpot_warm, speeds) = {
                let m = self.models.lock();
                let speeds: Vec<(Option<EndpointSpeed>, f64)> = inputs
                    .iter()
                    .map(|(i, x, _)| {
                        let Some(e) = cx.endpoints.get(*i) else {
                            return (None, 0.0);
                        };
                        let address = e.address.as_str();
                        let heard = m.speeds.get(address).copied();
                        let speed = heard
                            .filter(|s| s.ttft_responses >= MIN_ENDPOINT_RESPONSES)
                            // Tried with a few requests at a time, not the whole stream.
                            .or_else(|| {
                                (x.running >= f64::from(UNHEARD_IN_FLIGHT)).then(|| EndpointSpeed {
                                    ttft: Ratio::default(),
                                    ..heard.unwrap_or_default()
                                })
                            });
                        let strictest = if self.streaming {
                            m.strictest_tpot(address)
                        } else {
                            0.0
                        };
                        (speed, strictest)
                    })
                    .collect();
                (
                    m.ttft.weights(),
                    m.tpot.weights(),
                    m.ttft.is_warm(),
                    m.tpot.is_warm(),
                    speeds,
                )
            };
            if ttft_warm {
                let mut out: Predictions = alloc::vec![None; cx.endpoints.len()];
                for ((i, x, predicted), (speed, strictest)) in inputs.iter_mut().zip(&speeds) {
                    let (Some(e), Some(speed)) = (cx.endpoints.get(*i), speed) else {
                        continue;
                    };
                    // The endpoint's running requests may hold a stricter TPOT objective.
                    let slo_tpot = if *strictest > 0.0 {
                        slo_tpot.min(*strictest)
                    } else {
                        slo_tpot
                    } * self.buffer_factor;
                    let ttft =
                        OnlineRidge::predict_with(&ttft_w, &ttft_features(x)) * speed.ttft.value;
                    // TPOT says nothing until the model and this endpoint have taught it.
                    // Nor while its own TPOT speed has learnt nothing (it answered only while the
                    // model was cold): the shared model alone would misjudge a slower endpoint.
                    let neutral = !self.streaming
                        || !tpot_warm
                        || speed.tpot_responses < MIN_ENDPOINT_RESPONSES
                        || speed.tpot.n == 0
                        || self.is_prefill(&e.labels);
                    let tpot = if neutral {
                        0.0
                    } else {
                        OnlineRidge::predict_with(&tpot_w, &tpot_features(x)) * speed.tpot.value
                    };
                    *predicted = Some((ttft, (!neutral).then_some(tpot)));
                    if let Some(slot) = out.get_mut(*i) {
                        *slot = Some(LatencyPrediction {
                            ttft_ms: ttft,
                            tpot_ms: tpot,
                            ttft_headroom_ms: slo_ttft - ttft,
                            tpot_headroom_ms: if neutral { 0.0 } else { slo_tpot - tpot },
                            ttft_valid: ttft < slo_ttft,
                            tpot_valid: neutral || tpot < slo_tpot,
                            dispatched: load_of(loads, *i).requests,
                        });
                    }
                }
                cycle.put(LATENCY_PREDICTION_INFO, out);
            }
        }
        request_state.put(
            &self.typed_name.name,
            CandidateInputs {
                candidates: inputs,
                objectives: (slo_ttft, slo_tpot),
            },
        );
    }
}

impl PreRequest for PredictedLatencyProducer {
    fn pre_request(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
        request_state: &mut RequestState,
    ) {
        let Some(CandidateInputs {
            candidates,
            objectives,
        }) = request_state.take::<CandidateInputs>(&self.typed_name.name)
        else {
            return;
        };
        let Some(&primary) = result.primary_targets().first() else {
            return;
        };
        let (Some(e), Some((_, x, predicted))) = (
            cx.endpoint(primary),
            candidates.iter().find(|(i, _, _)| *i == primary),
        ) else {
            return;
        };
        // A streamed request's TPOT objective tightens its endpoint's for the requests that
        // follow while it runs (upstream's running-request queue).
        let hold = self.streaming && cx.request.stream && objectives.1 > 0.0;
        if hold {
            self.models
                .lock()
                .running_tpot
                .entry_ref(e.address.as_str())
                .or_default()
                .push(objectives.1);
        }
        request_state.put(
            &self.typed_name.name,
            Dispatched {
                address: e.address.clone(),
                inputs: *x,
                predicted: *predicted,
                objectives,
                at_ms: cx.now_ms,
                stream: cx.request.stream,
                first_ms: None,
                held_tpot: hold.then(|| self.models.clone()),
            },
        );
    }
}

impl ResponseBody for PredictedLatencyProducer {
    fn response_body(
        &self,
        request_state: &mut RequestState,
        response: &ResponseInfo<'_>,
        chunk: &BodyChunk,
    ) {
        let name = &self.typed_name.name;
        let Some(d) = request_state.get_mut::<Dispatched>(name) else {
            return;
        };
        let teaches = (200..300).contains(&response.status)
            && response.served_endpoint.is_none_or(|s| s == d.address);
        if !teaches {
            request_state.take::<Dispatched>(name);
            return;
        }
        if d.first_ms.is_none() {
            d.first_ms = Some(response.now_ms);
            if self.streaming && d.stream {
                let ttft = response.now_ms.saturating_sub(d.at_ms) as f64;
                self.models
                    .lock()
                    .learn_ttft(&d.address, &ttft_features(&d.inputs), ttft);
            }
        }
        if chunk.end_of_stream {
            if let Some(d) = request_state.take::<Dispatched>(name) {
                let usage = chunk.usage.map(|u| u.completion_tokens);
                if let Some(o) = self.learn(&d, response.now_ms, usage) {
                    request_state.put(LATENCY_OUTCOME, o);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::Endpoint;
    use crate::model::response::Usage;
    use crate::model::result::ProfileRunResult;

    fn producer(params: serde_json::Value) -> PredictedLatencyProducer {
        build("pl", Some(&params), &Handle::new(&[])).unwrap()
    }

    fn pool() -> Vec<Endpoint> {
        let mut a = Endpoint::new("10.0.0.1:8000");
        a.metrics.waiting_queue_size = 0;
        let mut b = Endpoint::new("10.0.0.2:8000");
        b.metrics.waiting_queue_size = 6;
        alloc::vec![a, b]
    }

    fn result_for(i: usize) -> SchedulingResult {
        SchedulingResult {
            profile_results: alloc::vec![(
                "default".into(),
                Some(ProfileRunResult {
                    targets: alloc::vec![i],
                    ..ProfileRunResult::default()
                }),
            )],
            ..SchedulingResult::default()
        }
    }

    /// One request through produce, pre_request and a response dispatched at `start` (first
    /// chunk `ttft` ms later, the end `ms` ms after `start` with `tokens` completion tokens).
    fn serve(
        p: &PredictedLatencyProducer,
        req: &InferenceRequest<'_>,
        endpoints: &[Endpoint],
        pick: usize,
        timing: (u64, u64, u64, u64),
    ) -> CycleState {
        serve_with_state(p, req, endpoints, pick, timing).0
    }

    /// A producer with `params` after 30 streamed responses over both endpoints of [`pool`]
    /// (TTFT 40 ms; 11 tokens over 200 ms after the first: TPOT 20 ms), and the request used.
    fn warmed_streaming(
        params: serde_json::Value,
    ) -> (
        PredictedLatencyProducer,
        Vec<Endpoint>,
        InferenceRequest<'static>,
    ) {
        let p = producer(params);
        let endpoints = pool();
        let mut req = InferenceRequest::new("m", "hello there");
        req.stream = true;
        for k in 0..30u64 {
            let timing = (k * 1_000, 40, 240, 11);
            serve(&p, &req, &endpoints, (k % 2) as usize, timing);
        }
        (p, endpoints, req)
    }

    /// Produce and PreRequest for `req` sent to `pick` at `now_ms`, no response yet.
    fn dispatch(
        p: &PredictedLatencyProducer,
        req: &InferenceRequest<'_>,
        endpoints: &[Endpoint],
        pick: usize,
        now_ms: u64,
    ) -> (CycleState, RequestState) {
        let mut cycle = CycleState::new();
        let mut state = RequestState::new();
        let pcx = ProduceContext {
            request: req,
            endpoints,
            now_ms,
        };
        p.produce(&pcx, &[0, 1], &mut cycle, &mut state);
        let cx = CycleContext {
            request: req,
            endpoints,
            state: &cycle,
            now_ms,
            peer: None,
        };
        p.pre_request(&cx, &result_for(pick), &mut state);
        (cycle, state)
    }

    /// [`serve`], also returning the request's state after the response.
    fn serve_with_state(
        p: &PredictedLatencyProducer,
        req: &InferenceRequest<'_>,
        endpoints: &[Endpoint],
        pick: usize,
        (start, ttft, ms, tokens): (u64, u64, u64, u64),
    ) -> (CycleState, RequestState) {
        let (cycle, mut state) = dispatch(p, req, endpoints, pick, start);
        let body = p.as_response_body().unwrap();
        let info = |now_ms| ResponseInfo {
            status: 200,
            served_endpoint: endpoints.get(pick).map(|e| e.address.as_str()),
            now_ms,
        };
        body.response_body(
            &mut state,
            &info(start + ttft),
            &BodyChunk {
                first: true,
                end_of_stream: false,
                usage: None,
            },
        );
        body.response_body(
            &mut state,
            &info(start + ms),
            &BodyChunk {
                first: false,
                end_of_stream: true,
                usage: Some(Usage {
                    prompt_tokens: 100,
                    completion_tokens: tokens,
                    cached_tokens: None,
                }),
            },
        );
        (cycle, state)
    }

    #[test]
    fn predicts_nothing_until_warm_then_learns_which_endpoint_is_slow() {
        let p = producer(serde_json::json!({}));
        let endpoints = pool();
        let req = InferenceRequest::new("m", "hello there");
        // Endpoint 1 has 6 waiting requests and answers in 400 ms; endpoint 0 in 50 ms.
        let first = serve(&p, &req, &endpoints, 0, (1_000, 50, 50, 10));
        assert!(
            first.get::<Predictions>(LATENCY_PREDICTION_INFO).is_none(),
            "cold model"
        );
        for k in 0..40u64 {
            let (pick, ms) = if k % 2 == 0 { (0, 50) } else { (1, 400) };
            serve(&p, &req, &endpoints, pick, (2_000 + k * 1_000, ms, ms, 10));
        }
        assert_eq!(p.samples(), (41, 0), "end-to-end time trains TTFT only");
        let cycle = serve(&p, &req, &endpoints, 0, (90_000, 50, 50, 10));
        let pred = cycle.get::<Predictions>(LATENCY_PREDICTION_INFO).unwrap();
        let (fast, slow) = (pred[0].unwrap(), pred[1].unwrap());
        assert!((fast.ttft_ms - 50.0).abs() < 10.0, "{fast:?}");
        assert!((slow.ttft_ms - 400.0).abs() < 20.0, "{slow:?}");
        // No objective: headroom is minus the prediction, TPOT neutral.
        assert!(!fast.ttft_valid && fast.ttft_headroom_ms < 0.0);
        assert!(fast.tpot_valid && fast.tpot_headroom_ms == 0.0);
    }

    #[test]
    fn a_slower_endpoint_under_the_same_load_is_told_apart_and_an_unheard_one_gets_none() {
        let p = producer(serde_json::json!({}));
        let mut endpoints = pool();
        endpoints[1].metrics.waiting_queue_size = 0;
        let req = InferenceRequest::new("m", "hello there");
        // Same load figures; endpoint 1 is three times slower.
        for k in 0..60u64 {
            let (pick, ms) = if k % 2 == 0 { (0, 40) } else { (1, 120) };
            serve(&p, &req, &endpoints, pick, (k * 1_000, ms, ms, 10));
        }
        let cycle = serve(&p, &req, &endpoints, 0, (90_000, 40, 40, 10));
        let pred = cycle.get::<Predictions>(LATENCY_PREDICTION_INFO).unwrap();
        let (fast, slow) = (pred[0].unwrap().ttft_ms, pred[1].unwrap().ttft_ms);
        assert!(
            slow > 2.0 * fast && (fast - 40.0).abs() < 15.0,
            "{fast} / {slow}"
        );
        // A third endpoint joins: no prediction until it has answered twice...
        endpoints.push(Endpoint::new("10.0.0.3:8000"));
        let produce = |endpoints: &[Endpoint]| {
            let mut cycle = CycleState::new();
            let pcx = ProduceContext {
                request: &req,
                endpoints,
                now_ms: 95_000,
            };
            p.produce(&pcx, &[0, 1, 2], &mut cycle, &mut RequestState::new());
            cycle
                .get::<Predictions>(LATENCY_PREDICTION_INFO)
                .unwrap()
                .clone()
        };
        let pred = produce(&endpoints);
        assert!(pred[0].is_some() && pred[2].is_none());
        endpoints[2].metrics.running_requests = UNHEARD_IN_FLIGHT - 1;
        assert!(produce(&endpoints)[2].is_none());
        // ...unless it already runs that many requests: then it is predicted as the fleet's
        // model predicts an endpoint of average speed under the same load, between the fast
        // and the slow one (the model learnt from both).
        for e in &mut endpoints {
            e.metrics.running_requests = UNHEARD_IN_FLIGHT;
        }
        let pred = produce(&endpoints);
        let [fast, slow, newcomer] = [0, 1, 2].map(|i| pred[i].unwrap().ttft_ms);
        assert!(
            fast < newcomer && newcomer < slow,
            "{fast} / {slow} / {newcomer}"
        );
        // Leaving the pool forgets an endpoint's speed.
        p.pool_changed(&["10.0.0.1:8000"]);
        assert_eq!(p.models.lock().speeds.len(), 1);
    }

    #[test]
    fn objectives_from_headers_and_streaming_tpot() {
        let (p, endpoints, mut req) =
            warmed_streaming(serde_json::json!({"streamingMode": true, "sloBufferFactor": 0.5}));
        assert_eq!(p.samples(), (30, 30));
        req.headers = alloc::vec![
            ("x-slo-ttft-ms".into(), "100".into()),
            ("x-llm-d-slo-tpot-ms".into(), "30".into()),
        ];
        let cycle = serve(&p, &req, &endpoints, 0, (50_000, 40, 240, 11));
        let pred = cycle.get::<Predictions>(LATENCY_PREDICTION_INFO).unwrap()[0].unwrap();
        assert!(
            (pred.ttft_ms - 40.0).abs() < 5.0 && (pred.tpot_ms - 20.0).abs() < 3.0,
            "{pred:?}"
        );
        assert!(pred.ttft_valid && (pred.ttft_headroom_ms - 60.0).abs() < 5.0);
        // 30 ms × 0.5 = 15 ms buffered objective: missed.
        assert!(!pred.tpot_valid && pred.tpot_headroom_ms < 0.0);
        assert!(!pred.is_valid());
        // The response leaves what it measured beside what was predicted, for the metrics:
        // TTFT 150 ms against a 100 ms objective; 11 tokens over 500 ms after it, TPOT 50 ms
        // against 30 ms (the objective as sent, before the buffer factor).
        let (_, mut state) = serve_with_state(&p, &req, &endpoints, 0, (60_000, 150, 650, 11));
        let o = state.take::<LatencyOutcome>(LATENCY_OUTCOME).unwrap();
        assert_eq!(
            (o.ttft_ms, o.ttft_objective_ms, o.tpot_objective_ms),
            (150.0, 100.0, 30.0)
        );
        assert!((o.tpot_ms.unwrap() - 50.0).abs() < 1e-9);
        assert!((o.predicted_ttft_ms.unwrap() - 40.0).abs() < 5.0, "{o:?}");
        assert!((o.predicted_tpot_ms.unwrap() - 20.0).abs() < 3.0, "{o:?}");
        assert!(o.ttft_violated() && o.tpot_violated());
        assert_eq!((&*o.plugin_name, o.plugin_type), ("pl", TYPE));
        // A request that did not stream teaches nothing in streaming mode and leaves nothing.
        req.stream = false;
        let (_, mut state) = serve_with_state(&p, &req, &endpoints, 0, (70_000, 40, 40, 1));
        assert!(state.take::<LatencyOutcome>(LATENCY_OUTCOME).is_none());
    }

    #[test]
    fn a_running_request_with_a_stricter_tpot_objective_tightens_its_endpoint() {
        let (p, endpoints, req) = warmed_streaming(serde_json::json!({"streamingMode": true}));
        let with_tpot = |ms: &'static str| {
            let mut r = req.clone();
            r.headers = alloc::vec![("x-llm-d-slo-tpot-ms".into(), ms.into())];
            r
        };
        let headroom = |r: &InferenceRequest<'_>| {
            let mut cycle = CycleState::new();
            let pcx = ProduceContext {
                request: r,
                endpoints: &endpoints,
                now_ms: 50_000,
            };
            p.produce(&pcx, &[0, 1], &mut cycle, &mut RequestState::new());
            let pred = cycle.get::<Predictions>(LATENCY_PREDICTION_INFO).unwrap();
            (
                pred[0].unwrap().tpot_headroom_ms,
                pred[1].unwrap().tpot_headroom_ms,
            )
        };
        let loose = with_tpot("100");
        let (h0, h1) = headroom(&loose);
        assert!(
            (h0 - 80.0).abs() < 5.0 && (h1 - 80.0).abs() < 5.0,
            "{h0} {h1}"
        );
        // A request with a 25 ms objective is dispatched to endpoint 0 and still runs.
        let strict = with_tpot("25");
        let (_, state) = dispatch(&p, &strict, &endpoints, 0, 50_000);
        // The loose request now sees 25 − 20 on endpoint 0, still 100 − 20 on endpoint 1.
        let (h0, h1) = headroom(&loose);
        assert!(
            (h0 - 5.0).abs() < 5.0 && (h1 - 80.0).abs() < 5.0,
            "{h0} {h1}"
        );
        // A request without a TPOT objective keeps minus its prediction.
        let (h0, _) = headroom(&req);
        assert!(h0 < 0.0, "{h0}");
        // The strict request ends without a response (client gone): its objective is released.
        drop(state);
        let (h0, _) = headroom(&loose);
        assert!((h0 - 80.0).abs() < 5.0, "{h0}");
        assert!(p.models.lock().running_tpot.is_empty());
    }

    #[test]
    fn outcome_outside_streaming_mode_is_end_to_end_and_cold_requests_have_no_prediction() {
        let p = producer(serde_json::json!({}));
        let endpoints = pool();
        let req = InferenceRequest::new("m", "hello there");
        let (_, mut state) = serve_with_state(&p, &req, &endpoints, 0, (1_000, 10, 80, 5));
        let o = state.take::<LatencyOutcome>(LATENCY_OUTCOME).unwrap();
        assert_eq!(
            (o.ttft_ms, o.predicted_ttft_ms, o.tpot_ms),
            (80.0, None, None)
        );
        assert!(!o.ttft_violated() && !o.tpot_violated(), "no objectives");
    }

    #[test]
    fn failed_or_retried_responses_teach_nothing() {
        let p = producer(serde_json::json!({}));
        let endpoints = pool();
        let req = InferenceRequest::new("m", "hi");
        for (status, served) in [(503u16, "10.0.0.1:8000"), (200, "10.0.0.2:8000")] {
            let mut cycle = CycleState::new();
            let mut state = RequestState::new();
            let pcx = ProduceContext {
                request: &req,
                endpoints: &endpoints,
                now_ms: 1,
            };
            p.as_data_producer()
                .unwrap()
                .produce(&pcx, &[0, 1], &mut cycle, &mut state);
            let cx = CycleContext {
                request: &req,
                endpoints: &endpoints,
                state: &cycle,
                now_ms: 1,
                peer: None,
            };
            p.as_pre_request()
                .unwrap()
                .pre_request(&cx, &result_for(0), &mut state);
            p.as_response_body().unwrap().response_body(
                &mut state,
                &ResponseInfo {
                    status,
                    served_endpoint: Some(served),
                    now_ms: 80,
                },
                &BodyChunk {
                    first: true,
                    end_of_stream: true,
                    usage: None,
                },
            );
        }
        assert_eq!(p.samples(), (0, 0));
    }

    #[test]
    fn parameters_are_checked_and_upstream_ones_accepted() {
        assert!(factory(
            "x",
            Some(&serde_json::json!({"sloBufferFactor": 0})),
            &Handle::new(&[])
        )
        .is_err());
        assert!(factory(
            "x",
            Some(&serde_json::json!({"bogus": 1})),
            &Handle::new(&[])
        )
        .is_err());
        let ok = serde_json::json!({"samplingMean": 1000, "maxDecodeTokenSamplesForPrediction": 0,
            "contextTTL": 300000000000u64, "endpointRoleLabel": "llm-d.ai/role", "predictInProduce": false,
            "inFlightLoadProducerName": "x", "useEncoderCacheFeatures": false});
        assert!(factory("x", Some(&ok), &Handle::new(&[])).is_ok());
    }

    #[test]
    fn objective_headers_parse_as_positive_milliseconds() {
        let mut req = InferenceRequest::new("m", "p");
        assert_eq!(objective_ms(&req, &SLO_TTFT_HEADERS), 0.0);
        req.headers = alloc::vec![("x-slo-ttft-ms".into(), " 250.5 ".into())];
        assert_eq!(objective_ms(&req, &SLO_TTFT_HEADERS), 250.5);
        req.headers = alloc::vec![("x-llm-d-slo-ttft-ms".into(), "-3".into())];
        assert_eq!(objective_ms(&req, &SLO_TTFT_HEADERS), 0.0);
    }
}
