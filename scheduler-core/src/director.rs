//! The request flow around the scheduler (GIE `requestcontrol/director.go`): parse, admission,
//! data producers, admitters, scheduling, PreRequest; and the response hooks.
//!
//! ```text
//! parse_request ─► schedule:  candidates (pool) ─► shed if sheddable and saturated (429)
//!                             ─► producers ─► admitters ─► profiles ─► PreRequest ─► result
//! response_headers / response_body ─► ResponseHeader / ResponseBody hooks (release counters)
//! ```

use crate::parse::media_tokens::{media_tokens, VideoMeta};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::RequestError;
use crate::model::endpoint::Endpoint;
use crate::model::request::{InferenceRequest, MediaParts};
use crate::model::response::{BodyChunk, ResponseInfo, Usage};
use crate::model::result::SchedulingResult;
use crate::observe::{timed, ExtensionPoint, NoObserver, SchedulingObserver};
use crate::plugin::{
    CycleContext, CycleState, Plugin, ProduceContext, ReportedAttribute, RequestState,
};
use crate::plugins::datalayer::metrics_source::MetricsSourceParams;
use crate::plugins::filter::role::{stages_of, Stages};
use crate::rng::Rng;
use crate::scheduler::Scheduler;
use crate::scratch::Scratch;

/// Header naming the request's InferenceObjective (its priority): llm-d-router's name, read
/// first.
pub const OBJECTIVE_HEADER: &str = "x-llm-d-inference-objective";
/// GIE's name of [`OBJECTIVE_HEADER`], still read (llm-d-router keeps it as an alias).
pub const OLD_OBJECTIVE_HEADER: &str = "x-gateway-inference-objective";
/// Header presetting the target model: llm-d-router's name, read first.
pub const MODEL_REWRITE_HEADER: &str = "x-llm-d-model-name-rewrite";
/// GIE's name of [`MODEL_REWRITE_HEADER`], still read (llm-d-router keeps it as an alias).
pub const OLD_MODEL_REWRITE_HEADER: &str = "x-gateway-model-name-rewrite";
/// Request id header.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// RFC 7240's request header of preferences; [`PREFER_IF_AVAILABLE`] among them asks for a
/// conditional decode.
pub const PREFER_HEADER: &str = "prefer";
/// The `Prefer` token llm-d's coordinator sends on a speculative early-decode attempt: route
/// only to an endpoint that already holds some of the prompt's prefix, else answer 412
/// ([`RequestError::PreconditionFailed`]) so the caller restarts at prefill.
pub const PREFER_IF_AVAILABLE: &str = "if-available";

/// Whether `request` carries `Prefer: if-available`: a comma-separated list of preference
/// tokens, each with optional `;` parameters, the token matched case-insensitively (RFC 7240),
/// in any `prefer` header.
pub fn prefers_if_available(request: &InferenceRequest<'_>) -> bool {
    request
        .headers
        .iter()
        .filter(|(k, _)| k == PREFER_HEADER)
        .flat_map(|(_, v)| v.split(','))
        .any(|pref| {
            let token = pref.split(';').next().unwrap_or_default();
            token.trim().eq_ignore_ascii_case(PREFER_IF_AVAILABLE)
        })
}

/// Whether the decision's endpoint (the primary profile's first target) holds at least one
/// block of the prompt's prefix, as the cycle's prefix lookup found it: the approximate index's
/// match, else the precise index's (llm-d-router reads the approximate producer's attribute;
/// a deployment with only the precise producer would otherwise never pass).
fn primary_holds_prefix(cx: &CycleContext<'_>, result: &SchedulingResult) -> bool {
    use crate::plugins::producer::approx_prefix_cache::{PrefixMatch, PREFIX_CACHE_MATCH_INFO};
    use crate::plugins::producer::precise_prefix_cache::PRECISE_PREFIX_CACHE_MATCH_INFO;
    let Some(&primary) = result.primary_targets().first() else {
        return false;
    };
    [PREFIX_CACHE_MATCH_INFO, PRECISE_PREFIX_CACHE_MATCH_INFO]
        .into_iter()
        .find_map(|key| cx.state.get::<Vec<PrefixMatch>>(key))
        .and_then(|matches| matches.get(primary))
        .is_some_and(|m| m.matched_blocks > 0)
}

/// The pool's saturation per pipeline stage (0 idle, ≥ 1.0 saturated), from
/// [`EndpointPicker::pool_saturation_by_stage`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoolSaturation {
    /// What flow control gates on: the higher of the stages' (or the whole pool's when no
    /// endpoint prefills or decodes; 1.0 for an empty pool).
    pub effective: f64,
    /// Over the endpoints that prefill; `None` when none does.
    pub prefill: Option<f64>,
    /// Over the endpoints that decode (every endpoint without a role label does); `None` when
    /// none does.
    pub decode: Option<f64>,
}

impl PoolSaturation {
    /// No saturation detector: never saturated.
    pub const IDLE: PoolSaturation = PoolSaturation {
        effective: 0.0,
        prefill: None,
        decode: None,
    };
    /// An empty pool: saturated.
    pub const EMPTY: PoolSaturation = PoolSaturation {
        effective: 1.0,
        prefill: None,
        decode: None,
    };
}

/// A loaded, immutable endpoint picker: build it once with [`crate::config::loader::load`] and
/// share it; every method takes `&self`.
pub struct EndpointPicker {
    pub(crate) scheduler: Scheduler,
    pub(crate) producers: Vec<Arc<dyn Plugin>>,
    pub(crate) admitters: Vec<Arc<dyn Plugin>>,
    /// Plugins naming a request's flow when it has no fairness-id header, in configuration order.
    pub(crate) flow_identities: Vec<Arc<dyn Plugin>>,
    /// Plugins that narrow the candidates before the profiles run.
    pub(crate) screeners: Vec<Arc<dyn Plugin>>,
    pub(crate) pre_requests: Vec<Arc<dyn Plugin>>,
    pub(crate) response_headers: Vec<Arc<dyn Plugin>>,
    pub(crate) response_bodies: Vec<Arc<dyn Plugin>>,
    /// Plugins that report attributes of a finished response to the proxy.
    pub(crate) reporters: Vec<Arc<dyn Plugin>>,
    /// Page sources wired in `dataLayer` (each a plugin with `as_page_source`), in order.
    pub(crate) page_sources: Vec<Arc<dyn Plugin>>,
    pub(crate) saturation_detector: Arc<dyn Plugin>,
    /// `requestHandler.parsers` (or `parser`) in configuration order; never empty.
    pub(crate) parsers: Vec<Arc<dyn Plugin>>,
    pub(crate) objectives: Vec<(String, i32)>,
    /// `inferenceModelRewrites`: the model a request is sent as ([`crate::rewrite`]).
    pub(crate) model_rewrites: crate::rewrite::ModelRewrites,
    /// How media parts count in token estimates (`token-producer`'s `estimate`).
    pub(crate) media_estimate: crate::parse::media_tokens::EstimateParams,
    pub(crate) metrics_source: Option<MetricsSourceParams>,
    pub(crate) extractor: crate::plugin::SharedExtractor,
    /// The flow-control layer's settings, when the `flowControl` gate is on.
    pub(crate) flow_control: Option<Arc<crate::flowcontrol::FlowControl>>,
    pub(crate) plugins: Vec<(String, Arc<dyn Plugin>)>,
}

impl EndpointPicker {
    /// The flow identity of `request` from the configured identity plugins (the first that
    /// finds one), for requests without a fairness-id header; `None` sends the request to
    /// `default-flow`. No allocation: the identity is borrowed from the request's headers.
    pub fn flow_identity<'r>(&self, request: &'r InferenceRequest<'_>) -> Option<&'r str> {
        self.flow_identities
            .iter()
            .filter_map(|p| p.as_flow_identity())
            .find_map(|p| p.flow_identity(request))
    }

    /// The request's fairness id (its flow in flow control, the program of
    /// `program-aware-fairness`): the `x-llm-d-inference-fairness-id` header (or its older
    /// name), else the identity a configured identity plugin finds, else `default-flow`; cut to
    /// [`crate::flowcontrol::queues::MAX_FAIRNESS_ID_BYTES`], so the flow's queue and the
    /// program's attained service are keyed alike.
    pub fn fairness_id<'r>(&self, request: &'r InferenceRequest<'_>) -> &'r str {
        use crate::flowcontrol::{DEFAULT_FAIRNESS_ID, FAIRNESS_ID_HEADER, OLD_FAIRNESS_ID_HEADER};
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.as_ref())
        };
        crate::flowcontrol::queues::cut_fairness_id(
            header(FAIRNESS_ID_HEADER)
                .or_else(|| header(OLD_FAIRNESS_ID_HEADER))
                .or_else(|| self.flow_identity(request))
                .unwrap_or(DEFAULT_FAIRNESS_ID),
        )
    }

    /// The request paths the configured parsers need routed to the model servers beyond the
    /// OpenAI ones ([`crate::plugin::RequestParser::routes`]), in configuration order, without
    /// repeats.
    pub fn parser_routes(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for p in self.parsers.iter().filter_map(|p| p.as_parser()) {
            for r in p.routes() {
                if !out.contains(r) {
                    out.push(r);
                }
            }
        }
        out
    }

    /// The parser for `path` (llm-d's parser registry): the only one when one is configured;
    /// else, among the parsers up to the first fallback (a parser claiming no path; any after it
    /// are never reached), the one claiming the longest matching path suffix, else that
    /// fallback. `None` when several are configured and none handles `path`.
    fn parser_for(&self, path: &str) -> Option<&dyn crate::plugin::RequestParser> {
        let mut parsers = self.parsers.iter().filter_map(|p| p.as_parser());
        if self.parsers.len() == 1 {
            return parsers.next();
        }
        // Up to and including the first fallback; no allocation on the request path.
        let mut best: Option<(&dyn crate::plugin::RequestParser, usize)> = None;
        for p in parsers {
            let claims = p.claimed_paths();
            if claims.is_empty() {
                return Some(best.map_or(p, |(b, _)| b));
            }
            for s in claims {
                if crate::plugin::request_control::path_has_suffix(path, s)
                    && best.is_none_or(|(_, len)| s.len() > len)
                {
                    best = Some((p, s.len()));
                }
            }
        }
        best.map(|(p, _)| p)
    }

    /// Parses a request body into an [`InferenceRequest`] that borrows `body`.
    ///
    /// `headers` are the request headers plugins may read (lower-case names). The priority comes
    /// from the objective named by `x-llm-d-inference-objective` (or GIE's
    /// `x-gateway-inference-objective` when that is absent; 0 when neither names a configured
    /// objective); the target model from `x-llm-d-model-name-rewrite` (or GIE's
    /// `x-gateway-model-name-rewrite`), else the body's `model`. As in llm-d-router, the first of
    /// the two names present wins, even when its value is not usable.
    ///
    /// # Errors
    /// The parser's 400-class [`RequestError`].
    pub fn parse_request<'a>(
        &self,
        path: &str,
        body: &'a [u8],
        headers: Vec<crate::model::request::Header<'a>>,
    ) -> Result<InferenceRequest<'a>, RequestError> {
        let Some(parser) = self.parser_for(path) else {
            return Err(RequestError::InvalidField(alloc::format!(
                "no configured parser handles the path '{path}'"
            )));
        };
        let parsed = parser.parse(path, body)?;
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let aliased = |name: &str, old: &str| header(name).or_else(|| header(old));
        let priority = aliased(OBJECTIVE_HEADER, OLD_OBJECTIVE_HEADER)
            .and_then(|o| {
                self.objectives
                    .iter()
                    .find(|(n, _)| *n == o)
                    .map(|(_, p)| *p)
            })
            .unwrap_or(0);
        let target_model = match aliased(MODEL_REWRITE_HEADER, OLD_MODEL_REWRITE_HEADER)
            .filter(|m| !m.is_empty())
        {
            Some(m) => m,
            None => parsed.model.clone(),
        };
        // A body that must name a model and does not, nor the header: only a rewrite rule for
        // it (a generic one) can still name it, in [`Self::rewrite_model`].
        if parsed.model_required
            && target_model.is_empty()
            && !self.model_rewrites.applies_to(&parsed.model)
        {
            return Err(RequestError::MissingModel);
        }
        // Only a body whose text names a media part type pays for reading its parts: once, for
        // their token estimate and for whether there is one at all.
        let read_parts = || {
            let meta = VideoMeta::from_headers(|n| {
                headers
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.as_ref())
            });
            media_tokens(&parsed.prompt, &self.media_estimate, &meta)
        };
        let media_tokens = match parsed.media {
            MediaParts::None => None,
            MediaParts::Present => Some(read_parts()),
            MediaParts::Possible => Some(read_parts()).filter(|m| m.parts > 0),
        };
        let multimodal = parsed.media == MediaParts::Present || media_tokens.is_some();
        Ok(InferenceRequest {
            request_id: header(REQUEST_ID_HEADER).unwrap_or_default(),
            api: parsed.api,
            model: parsed.model,
            target_model,
            prompt: parsed.prompt,
            stream: parsed.stream,
            cache_salt: parsed.cache_salt,
            body_size_bytes: body.len(),
            priority,
            headers,
            debug: false,
            emit_scores: false,
            multimodal,
            media_tokens,
            max_output_tokens: parsed.max_output_tokens,
            tools: parsed.tools,
        })
    }

    /// Applies the model rewrite rule for `request`'s model, if one applies: its target model
    /// becomes the target drawn with `rng` (overriding the rewrite header, as GIE does). A
    /// generic rule also names the model of a body without one (llm-d-router). Returns the name
    /// of the InferenceModelRewrite whose rule applied.
    pub fn rewrite_model(
        &self,
        request: &mut InferenceRequest<'_>,
        rng: &mut dyn Rng,
    ) -> Option<Arc<str>> {
        let r = self.model_rewrites.choose(&request.model, rng)?;
        request.target_model = alloc::borrow::Cow::Owned(String::from(r.target));
        Some(r.rewrite.clone())
    }

    /// Schedules `request` over `endpoints` (the pool snapshot) at `now_ms`.
    ///
    /// Plugins keep what the response path needs in `state`; keep it with the request and pass
    /// it to [`Self::response_headers`] / [`Self::response_body`]; dropping it releases any
    /// in-flight counts (reset, client gone).
    ///
    /// # Errors
    /// [`RequestError::NoCandidates`] (503) for an empty pool; [`RequestError::Saturated`] (429)
    /// for a sheddable request while saturated; [`RequestError::AdmissionDenied`] (500);
    /// [`RequestError::NoTargetEndpoint`] (429) when every candidate was filtered out;
    /// [`RequestError::PreconditionFailed`] (412) for a request with `Prefer: if-available`
    /// whose chosen endpoint holds none of its prefix ([`prefers_if_available`]).
    pub fn schedule(
        &self,
        request: &InferenceRequest<'_>,
        endpoints: &[Endpoint],
        now_ms: u64,
        rng: &mut dyn Rng,
        state: &mut RequestState,
    ) -> Result<SchedulingResult, RequestError> {
        self.schedule_observed(request, endpoints, now_ms, rng, state, &mut NoObserver)
    }

    /// [`Self::schedule`], reporting every plugin call (producers, admitters, the profile
    /// handler, filters, scorers, pickers, pre-request hooks) with its duration to `obs`.
    ///
    /// # Errors
    /// As [`Self::schedule`].
    pub fn schedule_observed(
        &self,
        request: &InferenceRequest<'_>,
        endpoints: &[Endpoint],
        now_ms: u64,
        rng: &mut dyn Rng,
        state: &mut RequestState,
        obs: &mut dyn SchedulingObserver,
    ) -> Result<SchedulingResult, RequestError> {
        if endpoints.is_empty() {
            return Err(RequestError::NoCandidates);
        }
        let candidates: Scratch<usize> = (0..endpoints.len()).collect();
        let mut cycle = CycleState::new();
        if self.flow_control.is_some() {
            cycle.put(
                crate::flowcontrol::FAIRNESS_ID,
                String::from(self.fairness_id(request)),
            );
        }

        // Data first, then the shed check: a detector may read produced data (the
        // concurrency detector reads the in-flight counts), not only scraped metrics.
        let pcx = ProduceContext {
            request,
            endpoints,
            now_ms,
        };
        for p in &self.producers {
            if let Some(dp) = p.as_data_producer() {
                timed(obs, ExtensionPoint::PrepareData, p, || {
                    dp.produce(&pcx, &candidates, &mut cycle, state)
                });
            }
        }

        let cx = CycleContext {
            request,
            endpoints,
            state: &cycle,
            now_ms,
            peer: None,
        };
        // With flow control the queue decided admission already (sheddable requests wait there
        // instead of being refused here).
        if request.is_sheddable() && self.flow_control.is_none() {
            let saturation = self
                .saturation_detector
                .as_saturation_detector()
                .map_or(0.0, |d| d.saturation(&cx, &candidates));
            if saturation >= 1.0 {
                return Err(RequestError::Saturated);
            }
        }
        for a in &self.admitters {
            if let Some(ad) = a.as_admitter() {
                timed(obs, ExtensionPoint::Admission, a, || {
                    ad.admit(&cx, &candidates, rng)
                })?;
            }
        }

        // Screeners take a `Vec` (their contract); only a profile with one pays for it.
        let mut screened: Option<Vec<usize>> = None;
        for s in &self.screeners {
            if let Some(sc) = s.as_screener() {
                let c = screened.get_or_insert_with(|| candidates.to_vec());
                sc.screen(&cx, c, rng);
                if c.is_empty() {
                    return Err(RequestError::NoCandidates);
                }
            }
        }
        let candidates: &[usize] = screened.as_deref().unwrap_or(&candidates);
        let mut result = self.scheduler.schedule(&cx, candidates, rng, obs)?;
        // llm-d's conditional decode: checked before the pre-request hooks, so a refused
        // request is recorded nowhere (no prefix-index entry, no in-flight count).
        if prefers_if_available(request) && !primary_holds_prefix(&cx, &result) {
            return Err(RequestError::PreconditionFailed);
        }
        for p in &self.pre_requests {
            if let Some(pr) = p.as_pre_request() {
                timed(obs, ExtensionPoint::PreRequest, p, || {
                    pr.pre_request(&cx, &result, state)
                });
            }
        }
        // Headers the hooks set for this decision (a `Vec` that stays unallocated when none do).
        let mut extra = Vec::new();
        for pr in self.pre_requests.iter().filter_map(|p| p.as_pre_request()) {
            pr.request_headers(&cx, &result, state, &mut extra);
            if let Some(hit) = pr.prefix_hit(&cx, &result) {
                obs.prefix_hit(hit);
            }
        }
        result.headers.append(&mut extra);
        Ok(result)
    }

    /// The configured batch window (`burst-prefix-cache-producer`), if any: the host holds
    /// each request with a body in it before scheduling (see [`crate::plugin::BatchWindow`]).
    /// The plugin, to keep alongside the host's batch; [`Plugin::as_batch_window`] is `Some`.
    pub fn batch_window(&self) -> Option<&Arc<dyn Plugin>> {
        self.producers
            .iter()
            .find(|p| p.as_batch_window().is_some())
    }

    /// The flow-control layer's settings, when the `flowControl` gate is on.
    pub fn flow_control(&self) -> Option<&Arc<crate::flowcontrol::FlowControl>> {
        self.flow_control.as_ref()
    }

    /// The pool's saturation (0 idle, ≥ 1.0 saturated) as flow control gates on it: the
    /// effective figure of [`Self::pool_saturation_by_stage`].
    pub fn pool_saturation(&self, endpoints: &[Endpoint], now_ms: u64) -> f64 {
        self.pool_saturation_by_stage(endpoints, now_ms).effective
    }

    /// The pool's saturation by the configured saturation detector at `now_ms`, per pipeline
    /// stage, outside any request: the data producers whose output the detector reads run
    /// first for an empty request (the in-flight counts for `concurrency-detector`), then the
    /// detector measures the endpoints that prefill and those that decode apart (by role label,
    /// [`crate::plugins::filter::role::Stages`]; an endpoint serving both counts in both). The
    /// effective saturation is the higher of the two, so a saturated decode tier holds requests
    /// however idle the prefill tier is (llm-d-router's flow control gates so); a pool with
    /// neither stage is measured whole, and an empty pool is saturated (1.0). Without a
    /// detector, 0.
    pub fn pool_saturation_by_stage(&self, endpoints: &[Endpoint], now_ms: u64) -> PoolSaturation {
        let Some(detector) = self.saturation_detector.as_saturation_detector() else {
            return PoolSaturation::IDLE;
        };
        if endpoints.is_empty() {
            return PoolSaturation::EMPTY;
        }
        let request = InferenceRequest::new("", "");
        let candidates: Scratch<usize> = (0..endpoints.len()).collect();
        let mut cycle = CycleState::new();
        let consumes = self.saturation_detector.consumes();
        if !consumes.is_empty() {
            let pcx = ProduceContext {
                request: &request,
                endpoints,
                now_ms,
            };
            let mut scratch = RequestState::new();
            for p in &self.producers {
                if let Some(dp) = p
                    .as_data_producer()
                    .filter(|_| p.produces().iter().any(|k| consumes.contains(k)))
                {
                    dp.produce(&pcx, &candidates, &mut cycle, &mut scratch);
                }
            }
        }
        let cx = CycleContext {
            request: &request,
            endpoints,
            state: &cycle,
            now_ms,
            peer: None,
        };
        let (mut prefill, mut decode) = (Scratch::<usize>::new(), Scratch::<usize>::new());
        for (i, e) in endpoints.iter().enumerate() {
            match stages_of(e) {
                Stages::Prefill => prefill.push(i),
                Stages::Decode => decode.push(i),
                Stages::Both => {
                    prefill.push(i);
                    decode.push(i);
                }
                Stages::Neither => {}
            }
        }
        let stage =
            |members: &[usize]| (!members.is_empty()).then(|| detector.saturation(&cx, members));
        let (prefill, decode) = (stage(&prefill), stage(&decode));
        let effective = match (prefill, decode) {
            (None, None) => detector.saturation(&cx, &candidates),
            (p, d) => p.unwrap_or(0.0).max(d.unwrap_or(0.0)),
        };
        PoolSaturation {
            effective,
            prefill,
            decode,
        }
    }

    /// The saturation detector's name and how many of `endpoints` it scores as saturated for
    /// missing or stale metrics at `now_ms` ([`crate::plugin::SaturationDetector::stale_endpoints`]);
    /// `None` when the detector reads no scraped metrics.
    pub fn pool_stale_endpoints(
        &self,
        endpoints: &[Endpoint],
        now_ms: u64,
    ) -> Option<(&str, usize)> {
        let detector = self.saturation_detector.as_saturation_detector()?;
        let request = InferenceRequest::new("", "");
        let candidates: Scratch<usize> = (0..endpoints.len()).collect();
        let cycle = CycleState::new();
        let cx = CycleContext {
            request: &request,
            endpoints,
            state: &cycle,
            now_ms,
            peer: None,
        };
        let n = detector.stale_endpoints(&cx, &candidates)?;
        Some((&self.saturation_detector.typed_name().name, n))
    }

    /// The comma-separated destination value for a result: the primary profile's targets,
    /// primary first (`ip:port,ip:port`).
    pub fn destination(&self, result: &SchedulingResult, endpoints: &[Endpoint]) -> String {
        let mut out = String::new();
        for &i in result.primary_targets() {
            if let Some(e) = endpoints.get(i) {
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(&e.address);
            }
        }
        out
    }

    /// Runs the response-header hooks; headers to add to the response are pushed to `out`.
    pub fn response_headers(
        &self,
        state: &mut RequestState,
        response: &ResponseInfo<'_>,
        out: &mut Vec<(String, String)>,
    ) {
        for p in &self.response_headers {
            if let Some(h) = p.as_response_header() {
                h.response_header(state, response, out);
            }
        }
    }

    /// Runs the response-body hooks for one chunk (the last has `end_of_stream`).
    pub fn response_body(
        &self,
        state: &mut RequestState,
        response: &ResponseInfo<'_>,
        chunk: &BodyChunk,
    ) {
        for p in &self.response_bodies {
            if let Some(b) = p.as_response_body() {
                b.response_body(state, response, chunk);
            }
        }
    }

    /// The page sources the scraper fetches besides the metrics page (plugins whose
    /// [`Plugin::as_page_source`] is `Some`), in `dataLayer` order.
    pub fn page_sources(&self) -> &[Arc<dyn Plugin>] {
        &self.page_sources
    }

    /// Runs the attribute reporters on a finished response that carried `usage`; what they
    /// report is pushed to `out` for the host to write (dynamic metadata or filter state).
    pub fn report_attributes(
        &self,
        response: &ResponseInfo<'_>,
        usage: &Usage,
        out: &mut Vec<ReportedAttribute>,
    ) {
        for p in &self.reporters {
            if let Some(r) = p.as_attribute_reporter() {
                r.report(response, usage, out);
            }
        }
    }

    /// True when some plugin reports request attributes (the host then reads the response's
    /// `usage`).
    pub fn has_attribute_reporters(&self) -> bool {
        !self.reporters.is_empty()
    }

    /// True when some plugin has a ResponseHeader hook (the host can skip reading response
    /// headers otherwise).
    pub fn has_response_header_hooks(&self) -> bool {
        !self.response_headers.is_empty()
    }

    /// True when some plugin has a ResponseBody hook (the host can skip the response body and
    /// usage parsing otherwise).
    pub fn has_response_body_hooks(&self) -> bool {
        !self.response_bodies.is_empty()
    }

    /// Tells every plugin the pool's membership changed (to drop per-endpoint state).
    pub fn pool_changed(&self, endpoints: &[Endpoint]) {
        let addrs: Vec<&str> = endpoints.iter().map(|e| e.address.as_str()).collect();
        for (_, p) in &self.plugins {
            p.pool_changed(&addrs);
        }
    }

    /// How endpoint metrics are read.
    pub fn metrics_extractor(&self) -> &crate::plugin::SharedExtractor {
        &self.extractor
    }

    /// Where endpoint metrics come from; `None` when the data layer was turned off.
    pub fn metrics_source(&self) -> Option<&MetricsSourceParams> {
        self.metrics_source.as_ref()
    }

    /// The scheduling layer.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The plugin instance named `name`.
    pub fn plugin(&self, name: &str) -> Option<&Arc<dyn Plugin>> {
        self.plugins.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }

    /// Every plugin instance by name.
    pub fn plugins(&self) -> &[(String, Arc<dyn Plugin>)] {
        &self.plugins
    }

    /// Blocks held by the prefix indexes of this picker's plugins
    /// ([`Plugin::prefix_index_blocks`]), summed; `None` when no plugin keeps one.
    pub fn prefix_index_blocks(&self) -> Option<usize> {
        self.plugins
            .iter()
            .filter_map(|(_, p)| p.prefix_index_blocks())
            .reduce(|a, b| a + b)
    }

    /// The plugins that take the model servers' KV-cache events
    /// ([`Plugin::as_kv_event_sink`]); a host that can subscribe feeds them.
    pub fn kv_event_sinks(&self) -> Vec<Arc<dyn Plugin>> {
        self.plugins
            .iter()
            .filter(|(_, p)| p.as_kv_event_sink().is_some())
            .map(|(_, p)| p.clone())
            .collect()
    }
}
