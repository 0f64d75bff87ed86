//! Request-control extension points (GIE `framework/interface/requestcontrol/plugins.go`):
//! producers and admitters before scheduling, PreRequest after it, response hooks on the way
//! back; plus the saturation detector and the request parser, which GIE finds by reference.
//!
//! Every configured plugin gets the request-control hooks it implements, whether or not a
//! profile references it (as in GIE).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::RequestError;
use crate::model::endpoint::Endpoint;
use crate::model::request::InferenceRequest;
use crate::model::request::ParsedBody;
use crate::model::response::{BodyChunk, ResponseInfo, Usage};
use crate::model::result::SchedulingResult;
use crate::plugin::scheduling::CycleContext;
use crate::plugin::state::{CycleState, RequestState};

/// What a data producer may read.
pub struct ProduceContext<'a> {
    /// The request being scheduled.
    pub request: &'a InferenceRequest<'a>,
    /// The whole pool snapshot.
    pub endpoints: &'a [Endpoint],
    /// Current time, milliseconds since the Unix epoch.
    pub now_ms: u64,
}

/// Prepares per-endpoint data before scheduling (GIE `PrepareRequestData`).
pub trait DataProducer {
    /// Writes this request's attributes for `candidates` into `cycle`; may keep what its
    /// PreRequest hook needs in `request_state`.
    fn produce(
        &self,
        cx: &ProduceContext<'_>,
        candidates: &[usize],
        cycle: &mut CycleState,
        request_state: &mut RequestState,
    );
}

/// Holds each request for a short window and places the window's requests together before any
/// of them is scheduled (llm-d's burst co-location, `burst-prefix-cache-producer`).
///
/// The host keeps one open batch per picker state: the first request opens it, it seals
/// [`BatchWindow::window_ms`] later, and the host then calls [`BatchWindow::place`] once for the
/// whole batch, hands each request its placement with [`BatchWindow::placed`] and schedules it;
/// the plugin's [`DataProducer`] turns the placement into match data. Flow control, when on,
/// admits a request first.
pub trait BatchWindow {
    /// How long a batch stays open after its first request, ms (≥ 1).
    fn window_ms(&self) -> u64;
    /// Most requests one batch takes; a request that finds the batch full goes on at once with
    /// no placement. `None`: unbounded.
    fn max_batch(&self) -> Option<usize>;
    /// Writes the request's placement key into `out` (cleared first): its prompt's block-hash
    /// chain; empty when it has no prompt (it waits with the batch but gets no placement).
    fn batch_key(&self, request: &InferenceRequest<'_>, out: &mut Vec<u64>);
    /// Places a sealed batch over `endpoints` (the candidates when the batch sealed): for the
    /// member with key `keys[i]`, the index into `endpoints` of its endpoint, or `None` (no
    /// affinity). Returns one entry per key.
    fn place(&self, keys: &[&[u64]], endpoints: &[Endpoint]) -> Vec<Option<usize>>;
    /// Gives one request its placement before it is scheduled: the endpoint's address (`None`:
    /// none) and how many blocks its key has.
    fn placed(&self, state: &mut RequestState, endpoint: Option<&str>, key_blocks: usize);
}

/// May deny a request before scheduling. Every admitter must admit.
pub trait Admitter {
    /// `Err` denies the request: [`RequestError::AdmissionDenied`] (HTTP 500, as GIE answers a
    /// denial) or [`RequestError::Shed`] (429, shed for load). `rng` is the request's random
    /// source (for probabilistic admission).
    ///
    /// # Errors
    /// The denial.
    fn admit(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        rng: &mut dyn crate::rng::Rng,
    ) -> Result<(), RequestError>;
}

/// Names the flow-control flow of a request that carries no fairness-id header: llm-d's
/// request-header processors publish an identity (the `agent-identity` request attribute), and
/// the director makes it the request's fairness id when `x-llm-d-inference-fairness-id` is
/// absent. An explicit fairness-id header always wins; with no identity either, the request
/// goes to `default-flow`.
pub trait FlowIdentity {
    /// The identity of `request` (borrowed from its headers), or `None` when this plugin
    /// finds none.
    fn flow_identity<'r>(&self, request: &'r InferenceRequest<'_>) -> Option<&'r str>;
}

/// Narrows the candidates once per request, before any scheduling profile runs, so no later
/// filter, scorer or picker can undo it (llm-d's Screener, e.g. keeping a disaggregated
/// rollout on one revision for every profile). An empty result fails the request with 503.
pub trait Screener {
    /// Removes from `candidates` (pool indices) the endpoints this request must not reach.
    fn screen(
        &self,
        cx: &CycleContext<'_>,
        candidates: &mut Vec<usize>,
        rng: &mut dyn crate::rng::Rng,
    );
}

/// Runs after the decision and before the request is forwarded.
pub trait PreRequest {
    /// Sees the decision; may update indexes and counters and keep state for the response.
    fn pre_request(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
        request_state: &mut RequestState,
    );

    /// Request headers this hook sets for the decision, pushed to `out` as `(name, value)`
    /// (lower-case names); an empty value removes the header the client sent. Called after
    /// every [`PreRequest::pre_request`] ran; they join [`SchedulingResult::headers`]. None by
    /// default.
    fn request_headers(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
        request_state: &RequestState,
        out: &mut Vec<(String, String)>,
    ) {
        let _ = (cx, result, request_state, out);
    }

    /// How much of the prompt the decision's endpoint (the primary profile's first target) was
    /// believed to hold, for a hook that keeps a prefix index; the host exports it as GIE's
    /// `inference_extension_prefix_indexer_hit_ratio` and `_hit_bytes`. Called after every
    /// [`PreRequest::pre_request`] ran. `None` by default.
    fn prefix_hit(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
    ) -> Option<crate::PrefixHit> {
        let _ = (cx, result);
        None
    }
}

/// Runs on the response headers.
pub trait ResponseHeader {
    /// May push response headers to set into `headers_out`.
    fn response_header(
        &self,
        request_state: &mut RequestState,
        response: &ResponseInfo<'_>,
        headers_out: &mut Vec<(String, String)>,
    );
}

/// Runs on each response body chunk; the last call has `end_of_stream` set.
pub trait ResponseBody {
    /// Sees one chunk's facts (not its bytes: usage is parsed once by the caller).
    fn response_body(
        &self,
        request_state: &mut RequestState,
        response: &ResponseInfo<'_>,
        chunk: &BodyChunk,
    );
}

/// One value a plugin reports back to the proxy about a finished response: the native build
/// writes it as Envoy dynamic metadata `namespace`/`name` (a number), the proxy-wasm build as
/// the filter state `wasm.<namespace>.<name>` (proxy-wasm cannot write dynamic metadata).
#[derive(Clone, Debug, PartialEq)]
pub struct ReportedAttribute {
    /// Dynamic-metadata namespace (GIE's default: `envoy.lb`).
    pub namespace: Arc<str>,
    /// Key inside the namespace.
    pub name: Arc<str>,
    /// The value.
    pub value: f64,
}

/// Runs once per response, at its end, when the response carried a `usage` object (GIE's
/// ResponseBodyProcessor as `request-attribute-reporter` uses it).
pub trait AttributeReporter {
    /// May push attributes to report into `out`.
    fn report(&self, response: &ResponseInfo<'_>, usage: &Usage, out: &mut Vec<ReportedAttribute>);
}

/// Tells how saturated the pool is.
pub trait SaturationDetector {
    /// Saturation of `candidates`: 0 idle, ≥ 1.0 saturated (sheddable requests are rejected).
    fn saturation(&self, cx: &CycleContext<'_>, candidates: &[usize]) -> f64;

    /// How many of `candidates` [`Self::saturation`] scores as fully saturated because their
    /// metrics are missing or older than the detector's staleness limit (fail-closed; llm-d's
    /// `flow_control_stale_endpoints`). `None` for a detector that reads no scraped metrics.
    fn stale_endpoints(&self, _cx: &CycleContext<'_>, _candidates: &[usize]) -> Option<usize> {
        None
    }
}

/// Turns a request body into the fields the scheduler uses.
pub trait RequestParser {
    /// Parses `body` sent to `path`.
    ///
    /// # Errors
    /// A 400-class [`RequestError`] for bodies that are not a valid request of that API.
    fn parse<'a>(&self, path: &str, body: &'a [u8]) -> Result<ParsedBody<'a>, RequestError>;

    /// The request-path suffixes this parser claims (e.g. `chat/completions`, matched after a
    /// `/`); empty for a fallback parser that takes any path (llm-d's `Claims().Paths`). With
    /// several parsers configured (`requestHandler.parsers`), a request goes to the parser with
    /// the longest matching suffix, else to the first fallback.
    fn claimed_paths(&self) -> &'static [&'static str] {
        &[]
    }

    /// Full request paths of this API (exact, e.g. `/generate`) that a proxy configuration must
    /// route to the model servers for this parser to see them. `envoy-config render` routes the
    /// OpenAI paths and these; every other path is answered 404 there. Empty by default (the
    /// OpenAI paths, or a fallback parser that takes whatever a route sends it).
    fn routes(&self) -> &'static [&'static str] {
        &[]
    }
}

/// True when `path` (query string ignored, trailing `/` trimmed) ends with `/` + `suffix`.
pub fn path_has_suffix(path: &str, suffix: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
    let suffix = suffix.trim_matches('/');
    path.strip_suffix(suffix)
        .is_some_and(|head| head.ends_with('/'))
}
