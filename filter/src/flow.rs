//! The picker's request path, once, for both hosts: the proxy-wasm filter
//! (`picker/http.rs`) and the native Envoy dynamic module (`native/src/filter.rs`) are thin
//! adapters that implement [`HttpHost`] (headers, body, local replies, time) and [`Picking`]
//! (the pool view, the scheduler and its state), and call [`RequestFlow`] from their callbacks.
//!
//! Request: strip client-supplied routing headers; a request without a body is routed at once;
//! otherwise reserve the declared body size in the worker's body-buffer budget and hold the
//! headers until the whole body is buffered, then parse, admit, schedule and set the destination
//! while the headers are still held. Response: report status, the endpoint that served and token
//! usage (JSON body or SSE stream, never held back) to the response hooks. Dropping the flow
//! releases the budget and, through the request state, the in-flight counts, even on a reset.

use std::sync::Arc;

use scheduler_core::flowcontrol::eviction::Tracked;
use scheduler_core::flowcontrol::queues::Outcome as WaitOutcome;
use scheduler_core::flowcontrol::{Admission, FlowKey, Ticket};
use scheduler_core::model::request::InferenceRequest;
use scheduler_core::model::response::{
    BodyChunk, LatencyOutcome, ResponseInfo, Usage, LATENCY_OUTCOME,
};
use scheduler_core::parse::usage::{usage_from_json, SseUsageParser};
use scheduler_core::parse::vllm_grpc::{GrpcUsageReader, Method};
use scheduler_core::plugin::QueuedRequest;
use scheduler_core::plugins::flow_control::slo_deadline::SLO_TTFT_HEADERS;
use scheduler_core::RequestState;

use crate::headers::HeaderBlock;
use crate::picker::decide::{Gate, Outcome, PickerCore, RequestInput};
use crate::picker::headers::{
    ATTEMPT_COUNT, CLIENT_FORBIDDEN, DEBUG, DESTINATION, ENCODERS, KV_SOURCE, PREFILLER, SERVED,
};
use crate::picker::subset::EndpointSubset;
#[cfg(test)]
use crate::telemetry::Timing;
use crate::telemetry::{RequestLabels, RequestRecord};

/// Largest JSON response body kept for usage parsing (bytes); larger bodies are not parsed.
pub const MAX_JSON_RESPONSE_BYTES: usize = 1 << 20;

/// What the proxy offers one request. Every method is infallible from the flow's point of view:
/// a host call that fails returns `None`/`false` and the flow carries on.
pub trait HttpHost {
    /// First value of a request header.
    fn request_header(&mut self, name: &str) -> Option<String>;
    /// First value of each request header of `names` (lower-case) into the same position of
    /// `out`; an empty name is skipped (`None`). Hosts that read every header in one call
    /// override this; by default it asks once per name.
    fn find_request_headers(&mut self, names: &[&str], out: &mut [Option<String>]) {
        for (name, slot) in names.iter().zip(out.iter_mut()) {
            *slot = if name.is_empty() {
                None
            } else {
                self.request_header(name)
            };
        }
    }
    /// Every request header (names lower-case, values decoded lossily), read in one host call
    /// into one buffer.
    fn request_headers(&mut self) -> HeaderBlock;
    /// Replaces, or with `None` removes, a request header (only while the headers are held).
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> bool;
    /// Adds a request header the flow knows is absent (it removed any client value first), so
    /// the host need not look for existing values. Defaults to [`HttpHost::set_request_header`].
    fn add_request_header(&mut self, name: &str, value: &str) -> bool {
        self.set_request_header(name, Some(value))
    }
    /// Calls `f` with the whole buffered request body of `size` bytes (at most), contiguous.
    fn with_request_body(&mut self, size: usize, f: &mut dyn FnMut(&[u8]));
    /// Replaces the whole buffered request body (`size` bytes) with `body` before it is
    /// forwarded (only while the request is held); `false` when the host could not.
    fn replace_request_body(&mut self, size: usize, body: &[u8]) -> bool;
    /// First value of a response header.
    fn response_header(&mut self, name: &str) -> Option<String>;
    /// Like [`HttpHost::find_request_headers`], for the response headers.
    fn find_response_headers(&mut self, names: &[&str], out: &mut [Option<String>]) {
        for (name, slot) in names.iter().zip(out.iter_mut()) {
            *slot = self.response_header(name);
        }
    }
    /// Calls `f` with the first value of each response header of `names` at the same position
    /// (`None`: absent). Hosts that can lend their own buffers override this so nothing is
    /// copied; by default the values come from [`HttpHost::find_response_headers`].
    fn with_response_headers(&mut self, names: &[&str], f: &mut dyn FnMut(&[Option<&str>])) {
        let mut found: smallvec::SmallVec<[Option<String>; 4]> =
            smallvec::smallvec![None; names.len()];
        self.find_response_headers(names, &mut found);
        let values: smallvec::SmallVec<[Option<&str>; 4]> =
            found.iter().map(Option::as_deref).collect();
        f(&values);
    }
    /// Replaces a response header.
    fn set_response_header(&mut self, name: &str, value: &str) -> bool;
    /// Calls `f` with the current response body chunk of `size` bytes.
    fn with_response_body(&mut self, size: usize, f: &mut dyn FnMut(&[u8]));
    /// The address of the upstream host that served (after a retry, not the primary).
    fn upstream_address(&mut self) -> Option<String>;
    /// Sends a local reply with a JSON body and the `extra` headers instead of forwarding the
    /// request.
    fn send_json_reply(&mut self, status: u32, body: &str, extra: &[(&str, &str)]);
    /// Answers a gRPC request (`content-type: application/grpc…`) with an error instead of
    /// forwarding it: a gRPC "trailers-only" response (HTTP 200, `grpc-status`, `grpc-message`:
    /// `message`), the shape gRPC clients read. `http_status` is the status the same error has
    /// as a JSON reply; `grpc_status` the gRPC code for it.
    fn send_grpc_reply(
        &mut self,
        http_status: u32,
        grpc_status: u32,
        message: &str,
        extra: &[(&str, &str)],
    );
    /// Publishes the decision in the request's dynamic metadata, namespace `envoy.lb`: the
    /// destination (`x-gateway-destination-endpoint`, the header's value, which clusters that
    /// read the destination from metadata rather than from the header need) and, when
    /// `scores` is not empty, `x-gateway-destination-endpoint-scores` (`ip:port` → score), as
    /// llm-d-router's EPP writes them. Called once per scheduled request (not for a body-less
    /// one, which no profile schedules).
    /// The default does nothing: proxy-wasm cannot write dynamic metadata.
    fn set_destination_metadata(&mut self, destination: &str, scores: &[(String, f64)]) {
        let _ = (destination, scores);
    }
    /// The request's endpoint subset hint: the string entries of the list in its dynamic
    /// metadata at [`crate::picker::subset::NAMESPACE`] / [`crate::picker::subset::KEY`];
    /// `None` when there is no such list, or the host cannot read metadata lists.
    fn endpoint_subset(&mut self) -> Option<EndpointSubset> {
        None
    }
    /// Reports `value` as the number `namespace`/`name` of the request's dynamic metadata
    /// (native) or as the filter state `wasm.<namespace>.<name>` (proxy-wasm); `false` when
    /// the host cannot. Called at the end of the response.
    fn report_attribute(&mut self, namespace: &str, name: &str, value: f64) -> bool {
        let _ = (namespace, name, value);
        false
    }
    /// Wall-clock time, microseconds since the Unix epoch.
    fn now_us(&mut self) -> u64;
    /// A handle that resumes this request later from any thread (flow control); `None` when the
    /// host cannot pause a request, which then is never queued.
    fn waker(&mut self) -> Option<Box<dyn crate::waiting::Wake>> {
        None
    }
    /// Lets a request paused by flow control go on (its headers and body were held).
    fn continue_request(&mut self) {}
}

/// The picker state a request is decided with (per VM in the Wasm build, per process in the
/// native build), and where its counts go.
pub trait Picking {
    /// Scheduler and pool settings.
    fn core(&self) -> &PickerCore;
    /// Decides a request without a body (`explain`: the route carries its explanation; only
    /// the endpoints `subset` admits are candidates, when given).
    fn route_headers_only(
        &self,
        now_ms: u64,
        subset: Option<&EndpointSubset>,
        explain: bool,
    ) -> Outcome;
    /// Decides a request with its whole body; the model names and plugin timings go to
    /// `record`.
    fn route_request(
        &self,
        input: RequestInput<'_>,
        state: &mut RequestState,
        record: &mut RequestRecord,
    ) -> Outcome;
    /// Reserves `bytes` more of the body-buffer budget (`pool.maxBufferedBodyBytes`); `false`
    /// (nothing reserved) when that would go over it.
    fn reserve_body(&self, bytes: usize) -> bool;
    /// Returns `bytes` of the budget.
    fn release_body(&self, bytes: usize);
    /// One request routed to `primary` by the scheduling profile `profile` (`""` when no
    /// profile ran: a body-less request).
    fn count_pick(&self, primary: &str, profile: &str);
    /// One scheduled request labelled `labels` went to the endpoint `primary`: a successful
    /// scheduling attempt, and a request that runs until [`Picking::record`] gets its record;
    /// `false` when it could not be counted (its record must then not end the count).
    fn count_routed(&self, labels: &RequestLabels, primary: &str) -> bool;
    /// One local reply with `status`.
    fn count_reply(&self, status: u32);
    /// One FailOpen pass-through.
    fn count_fail_open(&self);
    /// A finished request's metrics (the GIE-named series; see [`crate::telemetry`]).
    fn record(&self, record: &RequestRecord, now_ms: u64);
    /// The flow-control queues, when the `flowControl` gate is on.
    fn flow_gate(&self) -> Option<&crate::waiting::FlowGate> {
        None
    }
    /// The burst window's batch, when a `burst-prefix-cache-producer` is configured.
    fn burst_gate(&self) -> Option<&crate::burst::BurstGate> {
        None
    }
    /// A request opened a burst batch that seals at `deadline_ms` (ms since the epoch): the
    /// native module's sealer is told; the Wasm module seals on its tick.
    fn burst_opened(&self, deadline_ms: u64) {
        let _ = deadline_ms;
    }
    /// The pool's saturation at `now_ms` by the configured detector over the current candidates
    /// (0 idle, ≥ 1.0 saturated).
    fn saturation(&self, now_ms: u64) -> f64 {
        let _ = now_ms;
        0.0
    }
    /// One request of the flow `fairness_id` (`None`: the default flow) left the flow-control
    /// queue of band `priority` after `waited_ms` with `outcome` (see
    /// [`crate::telemetry::Telemetry::queue_wait`]).
    fn record_queue_wait(
        &self,
        fairness_id: Option<&str>,
        priority: i32,
        outcome: &'static str,
        waited_ms: u64,
    ) {
        let _ = (fairness_id, priority, outcome, waited_ms);
    }
}

/// The request's subset hint, unless the pool ignores it (`pool.disableEndpointSubsetFilter`).
fn endpoint_subset<H: HttpHost + ?Sized, P: Picking + ?Sized>(
    host: &mut H,
    p: &P,
) -> Option<EndpointSubset> {
    if p.core().pool.disable_endpoint_subset_filter {
        return None;
    }
    host.endpoint_subset()
}

/// The flow key of a parsed request: its fairness id header, else the identity a configured
/// identity plugin finds (`agent-identity`: the coding agent's session header), else
/// `default-flow`; and its priority.
fn flow_key(req: &InferenceRequest<'_>, picker: &scheduler_core::EndpointPicker) -> FlowKey {
    FlowKey {
        fairness_id: picker.fairness_id(req).to_string(),
        priority: req.priority,
    }
}

/// The request's TTFT objective (ms) from its SLO header, if valid.
fn slo_ttft_ms(req: &InferenceRequest<'_>) -> Option<u64> {
    SLO_TTFT_HEADERS.iter().find_map(|name| {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
    })
}

/// `Retry-After` (seconds) sent with the flow-control 429s.
pub const RETRY_AFTER_S: &str = "1";

/// What the host does with the request headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadersAction {
    /// Let them go on.
    Continue,
    /// Hold them (and buffer the body) until the flow decides; also after a local reply.
    Stop,
}

/// What the host does with a request body chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyAction {
    /// Let the body go on (decided).
    Continue,
    /// Keep buffering (undecided), or stop after a local reply.
    StopAndBuffer,
}

enum UsageReader {
    None,
    Sse(SseUsageParser),
    Json(Vec<u8>),
    /// A gRPC response of vLLM's gRPC API (`vllmgrpc-parser`).
    Grpc(GrpcUsageReader),
}

/// Which endpoint served the response, once its headers arrived.
enum Served {
    /// Not known (no response yet, or the host could not tell).
    Unknown,
    /// The primary endpoint the picker chose (no retry): its address is the flow's `primary`,
    /// not copied.
    Primary,
    /// Another endpoint, after a retry.
    Other(String),
}

impl Served {
    fn address<'a>(&'a self, primary: &'a Option<String>) -> Option<&'a str> {
        match self {
            Served::Unknown => None,
            Served::Primary => primary.as_deref(),
            Served::Other(a) => Some(a),
        }
    }
}

/// One request's state across the host's callbacks. See the module docs.
pub struct RequestFlow {
    state: RequestState,
    decided: bool,
    primary: Option<String>,
    debug: Option<String>,
    status: u16,
    served: Served,
    usage: UsageReader,
    body_seen: bool,
    reserved: usize,
    /// Request headers arrival, µs since the epoch.
    start_us: u64,
    /// What the metrics get; `None` once recorded.
    record: Option<RequestRecord>,
    /// The client asked for the debug header (`x-endpoint-picker-debug`) and `pool.debug`
    /// allows it.
    debug_asked: bool,
    /// The request went through a scheduling cycle (so plugins may have response hooks state).
    scheduled: bool,
    /// Flow control: the queue ticket while the request waits or is released.
    ticket: Option<Ticket>,
    /// Flow control: where the queue leaves the end of the wait (or, for a sheddable request
    /// in flight with `enableEviction`, its eviction).
    slot: Option<Arc<crate::waiting::WaitSlot>>,
    /// Flow control: the request's priority, once admission has read it.
    priority: Option<i32>,
    /// `enableEviction`: the routed request is tracked as in flight until it ends.
    tracked: Option<Tracked>,
    /// [`RequestFlow::finish`] ran (a host may report the end twice).
    finished: bool,
    /// Flow control let this request through (it is not asked again).
    admitted: bool,
    /// The buffered body size when the request was queued, bytes.
    body_size: usize,
    /// The request is gRPC (`content-type: application/grpc…`): local replies are gRPC
    /// statuses.
    grpc: bool,
    /// The vLLM gRPC method the request calls, if any (its response usage is read).
    grpc_method: Option<Method>,
    /// The request headers as they arrived (less the ones the flow removed), kept from the
    /// headers hook for the plugins once the body is complete: one host read per request.
    headers: Option<HeaderBlock>,
    /// Burst window: where the batch leaves this request's placement while it is held.
    burst: Option<Arc<crate::burst::BurstSlot>>,
    /// Burst window: the request went through its batch (it is not held again).
    batched: bool,
    /// When the last response body chunk of a streamed inference request arrived, µs since the
    /// epoch (the gaps between chunks are llm-d's inter-token latency).
    last_chunk_us: Option<u64>,
    /// When the response headers of an inference request arrived, µs since the epoch (the
    /// start of llm-d's response processing time).
    response_start_us: Option<u64>,
}

/// The fairness id a request's record carries (`None`: the default flow, or not parsed).
fn fairness_of(record: Option<&RequestRecord>) -> Option<&str> {
    record
        .and_then(|r| r.labels.as_ref())
        .and_then(|l| l.fairness_id.as_deref())
}

impl Default for RequestFlow {
    fn default() -> Self {
        RequestFlow::new()
    }
}

impl RequestFlow {
    /// A flow for one new request.
    pub fn new() -> Self {
        RequestFlow {
            state: RequestState::new(),
            decided: false,
            primary: None,
            debug: None,
            status: 0,
            served: Served::Unknown,
            usage: UsageReader::None,
            body_seen: false,
            reserved: 0,
            start_us: 0,
            record: Some(RequestRecord::default()),
            debug_asked: false,
            scheduled: false,
            ticket: None,
            slot: None,
            priority: None,
            tracked: None,
            finished: false,
            admitted: false,
            body_size: 0,
            grpc: false,
            grpc_method: None,
            headers: None,
            burst: None,
            batched: false,
            last_chunk_us: None,
            response_start_us: None,
        }
    }

    /// True while the request waits paused: in the flow-control queue, or in a burst batch.
    pub fn queued(&self) -> bool {
        self.ticket.is_some() || self.burst.is_some()
    }

    /// True while flow control or the burst window may wake this request: it is queued or held
    /// in a batch, or it is a sheddable request in flight that eviction may cut short (the host
    /// keeps it reachable).
    pub fn wakeable(&self) -> bool {
        self.slot.is_some() || self.burst.is_some()
    }

    /// True once [`RequestFlow::finish`] ran.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// True once the request was routed, answered or passed through.
    pub fn decided(&self) -> bool {
        self.decided
    }

    /// Gives the reserved body budget back (also done by [`RequestFlow::finish`]).
    fn release<P: Picking + ?Sized>(&mut self, p: &P) {
        p.release_body(core::mem::take(&mut self.reserved));
    }

    /// Grows this request's share of the budget to `bytes`.
    fn reserve_up_to<P: Picking + ?Sized>(&mut self, p: &P, bytes: usize) -> bool {
        if bytes <= self.reserved {
            return true;
        }
        if !p.reserve_body(bytes - self.reserved) {
            return false;
        }
        self.reserved = bytes;
        true
    }

    /// Applies a decision while the request headers are still held. Returns `true` when the
    /// request goes on (routed or passed through), `false` after a local reply.
    fn apply<H: HttpHost + ?Sized, P: Picking + ?Sized>(
        &mut self,
        host: &mut H,
        p: &P,
        outcome: Outcome,
    ) -> bool {
        self.decided = true;
        self.release(p);
        match outcome {
            Outcome::Route(r) => {
                // The client's values of these headers were removed with the request headers
                // (CLIENT_FORBIDDEN), so they are added, not replaced; an empty value (a
                // plugin's "not this time") has nothing left to remove.
                host.add_request_header(DESTINATION, &r.destination);
                // Only for a scheduled request: a body-less one is placed in turn, which is what
                // a metadata-reading cluster's own fallback balancer does without it (and the
                // write is ~2k instructions, a tenth of the module's cost on `GET`).
                if r.scheduled() {
                    host.set_destination_metadata(&r.destination, &r.endpoint_scores);
                }
                for (k, v) in &r.headers {
                    if CLIENT_FORBIDDEN.contains(&k.as_str()) {
                        if !v.is_empty() {
                            host.add_request_header(k, v);
                        }
                    } else {
                        // An empty value removes the client's own (a plugin's "not this time").
                        host.set_request_header(k, (!v.is_empty()).then_some(v.as_str()));
                    }
                }
                if let Some(body) = &r.body {
                    self.forward_body(host, body);
                }
                p.count_pick(r.primary(), &r.profile);
                if let Some(rec) = &mut self.record {
                    if let Some(labels) = &rec.labels {
                        rec.running = p.count_routed(labels, r.primary());
                    }
                }
                if log::log_enabled!(log::Level::Debug) {
                    self.log_decision(
                        host,
                        &format!(
                            "{} destination={}",
                            r.debug.as_deref().unwrap_or("picked=?"),
                            r.destination
                        ),
                    );
                }
                // The destination's buffer becomes the primary's: no copy.
                let primary_len = r.primary().len();
                let mut primary = r.destination;
                primary.truncate(primary_len);
                self.primary = Some(primary);
                self.debug = if self.debug_asked { r.debug } else { None };
                true
            }
            Outcome::Reply(reply) => {
                if log::log_enabled!(log::Level::Debug) {
                    self.log_decision(
                        host,
                        &format!("reply status={} body={}", reply.status, reply.body),
                    );
                }
                p.count_reply(reply.status);
                if let Some(r) = &mut self.record {
                    r.error_status = Some(reply.status);
                }
                // An error path: the list allocates only when there is a header to send.
                let extra: Vec<(&str, &str)> = [
                    reply
                        .dropped_reason
                        .map(|r| (crate::picker::reply::DROPPED_REASON_HEADER, r)),
                    reply.retry.then_some(("retry-after", RETRY_AFTER_S)),
                ]
                .into_iter()
                .flatten()
                .collect();
                if self.grpc {
                    host.send_grpc_reply(reply.status, reply.grpc_status(), &reply.message, &extra);
                } else {
                    host.send_json_reply(reply.status, &reply.body, &extra);
                }
                false
            }
            Outcome::Queued => {
                // Handled by decide_with_body before apply; a stray one is a pass-through.
                true
            }
            Outcome::PassThrough => {
                if log::log_enabled!(log::Level::Debug) {
                    self.log_decision(host, "pass-through (FailOpen: no usable metrics)");
                }
                p.count_fail_open();
                true
            }
        }
    }

    /// Forwards `body` in place of the client's (its model rewritten), with a matching
    /// `content-length` when the client sent one. A host that cannot replace the body forwards
    /// the client's, and says so in the log.
    fn forward_body<H: HttpHost + ?Sized>(&mut self, host: &mut H, body: &[u8]) {
        if !host.replace_request_body(self.body_size, body) {
            log::warn!(
                "endpoint picker: the request body could not be rewritten; forwarded as sent"
            );
            return;
        }
        if host.request_header("content-length").is_some() {
            host.set_request_header("content-length", Some(&body.len().to_string()));
        }
    }

    /// The debug-level decision log: one line per request.
    fn log_decision<H: HttpHost + ?Sized>(&self, host: &mut H, what: &str) {
        let id = host.request_header("x-request-id").unwrap_or_default();
        let (model, target) = self
            .record
            .as_ref()
            .and_then(|r| r.labels.as_ref())
            .map_or(("", ""), |l| (l.model.as_str(), l.target_model.as_str()));
        log::debug!(
            "endpoint picker decision: request_id={id} model={model} target_model={target} {what}"
        );
    }

    fn reply<H: HttpHost + ?Sized, P: Picking + ?Sized>(
        &mut self,
        host: &mut H,
        p: &P,
        reply: crate::picker::reply::Reply,
    ) {
        self.apply(host, p, Outcome::Reply(reply));
    }

    /// The request headers arrived (`end_of_stream`: there is no body).
    pub fn on_request_headers<H: HttpHost + ?Sized, P: Picking + ?Sized>(
        &mut self,
        host: &mut H,
        p: &P,
        end_of_stream: bool,
    ) -> HeadersAction {
        // Every header the flow reads here, in one host call where the host can. Read before
        // removing: a removal is a header mutation (in proxy-wasm ABI 0.2.1 every mutation makes
        // Envoy clear and recompute the route); a read is not.
        // An empty name is not asked for (it matches no header).
        let wanted = [
            DESTINATION,
            PREFILLER,
            ENCODERS,
            KV_SOURCE,
            if p.core().pool.debug { DEBUG } else { "" },
            if end_of_stream { "" } else { "content-length" },
            "content-type",
        ];
        // A request with a body keeps every header for the plugins (one read now serves both
        // hooks); a body-less one is routed now and needs only these.
        let mut found: [Option<String>; 7] = Default::default();
        let mut block = None;
        if end_of_stream {
            host.find_request_headers(&wanted, &mut found);
        } else {
            block = Some(host.request_headers());
        }
        let value = |i: usize| match &block {
            Some(b) => wanted.get(i).and_then(|n| b.get(n)),
            None => found.get(i).and_then(Option::as_deref),
        };
        let [has_destination, has_prefiller, has_encoders, has_kv_source, has_debug] =
            [0, 1, 2, 3, 4].map(|i| value(i).is_some());
        self.grpc = value(6).is_some_and(|c| c.starts_with("application/grpc"));
        // Only a request with a body declares a length (`wanted` asks for it only then).
        let length_reply = p.core().check_declared_length(value(5));
        let declared: usize = value(5).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        let mut removed: [&str; 5] = [""; 5];
        for (slot, (name, there)) in removed.iter_mut().zip([
            (DESTINATION, has_destination),
            (PREFILLER, has_prefiller),
            (ENCODERS, has_encoders),
            (KV_SOURCE, has_kv_source),
        ]) {
            debug_assert!(CLIENT_FORBIDDEN.contains(&name));
            if there {
                host.set_request_header(name, None);
                *slot = name;
            }
        }
        // The debug header is sent only to a client that asks, and only where the config
        // allows it (`pool.debug`); the question does not go upstream.
        if p.core().pool.debug && has_debug {
            self.debug_asked = true;
            host.set_request_header(DEBUG, None);
            removed[4] = DEBUG;
        }
        if let Some(b) = &mut block {
            for name in removed.iter().filter(|n| !n.is_empty()) {
                b.remove(name);
            }
        }
        self.headers = block;
        self.start_us = host.now_us();
        if end_of_stream {
            let now_ms = self.start_us / 1000;
            let explain = self.debug_asked || log::log_enabled!(log::Level::Debug);
            let subset = endpoint_subset(host, p);
            let outcome = p.route_headers_only(now_ms, subset.as_ref(), explain);
            return if self.apply(host, p, outcome) {
                HeadersAction::Continue
            } else {
                HeadersAction::Stop
            };
        }
        if let Some(reply) = length_reply {
            self.reply(host, p, reply);
            return HeadersAction::Stop;
        }
        // Bodies wait in this worker's memory until complete: reserve the declared size now, so
        // uploads that never finish cannot pin more than pool.maxBufferedBodyBytes.
        if !self.reserve_up_to(p, declared) {
            let reply = p.core().buffer_full();
            self.reply(host, p, reply);
        }
        HeadersAction::Stop
    }

    /// A request body chunk arrived; `buffered` bytes are buffered so far.
    pub fn on_request_body<H: HttpHost + ?Sized, P: Picking + ?Sized>(
        &mut self,
        host: &mut H,
        p: &P,
        buffered: usize,
        end_of_stream: bool,
    ) -> BodyAction {
        if self.decided {
            return BodyAction::Continue;
        }
        if buffered > p.core().pool.body_limit_bytes {
            let reply = p.core().too_large();
            self.reply(host, p, reply);
            return BodyAction::StopAndBuffer;
        }
        if !self.reserve_up_to(p, buffered) {
            let reply = p.core().buffer_full();
            self.reply(host, p, reply);
            return BodyAction::StopAndBuffer;
        }
        if !end_of_stream {
            return BodyAction::StopAndBuffer;
        }
        self.decide_with_body(host, p, buffered)
    }

    /// Request trailers arrived (the body is complete).
    pub fn on_request_trailers<H: HttpHost + ?Sized, P: Picking + ?Sized>(
        &mut self,
        host: &mut H,
        p: &P,
        buffered: usize,
    ) -> BodyAction {
        if self.decided {
            return BodyAction::Continue;
        }
        self.decide_with_body(host, p, buffered)
    }

    fn decide_with_body<H: HttpHost + ?Sized, P: Picking + ?Sized>(
        &mut self,
        host: &mut H,
        p: &P,
        size: usize,
    ) -> BodyAction {
        // The buffered body's size: a request held here is decided again with it on release,
        // and a rewritten body replaces that many bytes.
        self.body_size = size;
        // Read in the headers hook. A request the flow-control queue held is decided a second
        // time on release and reads them again (the client's forbidden headers were removed
        // from the host's map in the headers hook, so both reads agree).
        let block = match self.headers.take() {
            Some(b) => b,
            None => host.request_headers(),
        };
        let path = block.get(":path").unwrap_or_default();
        if self.grpc {
            self.grpc_method = Method::of_path(path);
        }
        let start = host.now_us();
        let now_ms = start / 1000;
        // Flow control asks for a way to resume the request before the body is borrowed.
        let gate = p.flow_gate().filter(|_| !self.admitted);
        let mut waker = match gate {
            Some(_) => host.waker(),
            None => None,
        };
        // The burst window holds a request once, after flow control let it through.
        let burst = p.burst_gate().filter(|_| !self.batched);
        let mut burst_waker = match burst {
            Some(_) => host.waker(),
            None => None,
        };
        let mut held: Option<(Arc<crate::burst::BurstSlot>, Option<u64>)> = None;
        let received_ms = self.start_us / 1000;
        let mut queued: Option<(Ticket, Arc<crate::waiting::WaitSlot>)> = None;
        // How flow control ended the request at admission, when it did (let through or refused).
        let mut decided: Option<&'static str> = None;
        let mut priority = None;
        let picker = &p.core().picker;
        let mut admit = |req: &InferenceRequest<'_>,
                         candidates: &[scheduler_core::Endpoint]|
         -> Gate {
            if gate.is_some() {
                // Kept for eviction's tracking, even when this host cannot queue.
                priority = Some(req.priority);
            }
            if let (Some(g), Some(wake)) = (gate, waker.take()) {
                let q = QueuedRequest {
                    received_ms,
                    slo_ttft_ms: slo_ttft_ms(req),
                    bytes: req.body_size_bytes as u64,
                    ..Default::default()
                };
                let slot = Arc::new(crate::waiting::WaitSlot::default());
                let waiter = crate::waiting::Waiter {
                    slot: slot.clone(),
                    wake,
                };
                // Saturation of the candidates this request sees (no second snapshot read).
                let mut saturation = || picker.pool_saturation(candidates, now_ms);
                let admission = g.admit(&flow_key(req, picker), q, waiter, now_ms, &mut saturation);
                let label = crate::waiting::admission_label(&admission);
                match admission {
                    Admission::Dispatch => decided = Some(label),
                    Admission::Queued(t) => {
                        queued = Some((t, slot));
                        return Gate::Wait;
                    }
                    Admission::Rejected(e) => {
                        decided = Some(label);
                        return Gate::Reject(e);
                    }
                }
            }
            if let (Some(b), Some(wake)) = (burst, burst_waker.take()) {
                let mut key = Vec::new();
                if let Some(w) = b.window() {
                    w.batch_key(req, &mut key);
                }
                match b.join(key, candidates, wake, now_ms) {
                    Ok(h) => {
                        held = Some(h);
                        return Gate::Wait;
                    }
                    Err(e) => log::debug!("endpoint picker: burst window not holding ({e:?})"),
                }
            }
            Gate::Go
        };
        let mut outcome = None;
        let mut headers = Some(block.iter().map(|(k, v)| (k.into(), v.into())).collect());
        let state = &mut self.state;
        let explain = self.debug_asked || log::log_enabled!(log::Level::Debug);
        // Read at the decision, after every filter before this one had the whole request.
        let subset = endpoint_subset(host, p);
        let record = self.record.get_or_insert_with(RequestRecord::default);
        record.request_bytes = size as u64;
        self.scheduled = true;
        host.with_request_body(size, &mut |body| {
            let h = headers.take().unwrap_or_default();
            let input = RequestInput {
                path,
                headers: h,
                body,
                now_ms,
                explain,
                admit: Some(&mut admit),
                subset: subset.as_ref(),
            };
            outcome = Some(p.route_request(input, state, record));
        });
        let outcome = outcome.unwrap_or_else(|| {
            let input = RequestInput {
                path,
                headers: Vec::new(),
                body: &[],
                now_ms,
                explain,
                admit: Some(&mut admit),
                subset: subset.as_ref(),
            };
            p.route_request(input, state, record)
        });
        // Every request flow control decided counts once by how it ended (the queued ones when
        // their wait ends); one let through at once waited 0 ms, as upstream records it.
        if let Some(label) = decided {
            p.record_queue_wait(fairness_of(Some(record)), priority.unwrap_or(0), label, 0);
        }
        if priority.is_some() {
            self.priority = priority;
        }
        if let (Outcome::Queued, Some((slot, opened))) = (&outcome, held.take()) {
            // Paused with the body buffered until the batch seals (`on_wake`). Flow control, if
            // on, already let it through.
            self.scheduled = false;
            self.admitted = true;
            self.burst = Some(slot);
            if let Some(deadline_ms) = opened {
                p.burst_opened(deadline_ms);
            }
            return BodyAction::StopAndBuffer;
        }
        if let (Outcome::Queued, Some((ticket, slot))) = (&outcome, queued) {
            // Paused with the body buffered until the queue releases it (`on_wake`).
            self.scheduled = false;
            self.ticket = Some(ticket);
            self.slot = Some(slot);
            if let Some(g) = p.flow_gate() {
                g.pump(now_ms, &mut || p.saturation(now_ms));
            }
            return BodyAction::StopAndBuffer;
        }
        let end = host.now_us();
        record.scheduling_ns = Some(end.saturating_sub(start) * 1000);
        if matches!(outcome, Outcome::Route(_)) {
            record.request_processing_ns = Some(end.saturating_sub(self.start_us) * 1000);
        }
        if self.apply(host, p, outcome) {
            if self.primary.is_some() {
                self.track(host, p, now_ms);
            }
            BodyAction::Continue
        } else {
            BodyAction::StopAndBuffer
        }
    }

    /// With `enableEviction`: tracks the routed request as in flight; a sheddable one leaves a
    /// way to wake it, to be answered if it is evicted.
    fn track<H: HttpHost + ?Sized, P: Picking + ?Sized>(
        &mut self,
        host: &mut H,
        p: &P,
        now_ms: u64,
    ) {
        let evicts = p
            .core()
            .picker
            .flow_control()
            .is_some_and(|fc| fc.eviction.is_some());
        let (true, Some(g), Some(priority), None) =
            (evicts, p.flow_gate(), self.priority, self.tracked)
        else {
            return;
        };
        let waiter = if priority < 0 {
            host.waker().map(|wake| crate::waiting::Waiter {
                slot: Arc::new(crate::waiting::WaitSlot::default()),
                wake,
            })
        } else {
            None
        };
        let slot = waiter.as_ref().map(|w| w.slot.clone());
        self.tracked = g.track(priority, now_ms, waiter);
        if self.tracked.is_some() {
            self.slot = slot;
        }
    }

    /// The flow-control queue released this request or gave up on it (the host calls this on
    /// the request's own worker after its [`crate::waiting::Wake`]): schedule it now and let it
    /// go on, or answer 429/503. Returns `true` when the request went on (the host must
    /// continue it), `false` after a local reply or when there was nothing to do.
    pub fn on_wake<H: HttpHost + ?Sized, P: Picking + ?Sized>(
        &mut self,
        host: &mut H,
        p: &P,
    ) -> bool {
        if let Some(placed) = self.burst.as_ref().and_then(|s| s.take()) {
            return self.on_burst_end(host, p, placed);
        }
        let Some(end) = self.slot.as_ref().and_then(|s| s.take()) else {
            return false;
        };
        self.slot = None;
        let ticket = self.ticket.take();
        if let Some(label) = crate::waiting::outcome_label(&end.outcome) {
            let fairness = fairness_of(self.record.as_ref());
            p.record_queue_wait(fairness, end.priority, label, end.waited_ms);
        }
        match end.outcome {
            WaitOutcome::Dispatched => {
                self.admitted = true;
                let action = self.decide_with_body(host, p, self.body_size);
                if self.burst.is_some() {
                    // Held in a burst batch: flow control counts it released but not yet
                    // scheduled (so it releases no more in its place) until the batch seals.
                    self.ticket = ticket;
                    return false;
                }
                self.scheduled_by_flow_control(host, p, ticket);
                let go_on = action == BodyAction::Continue;
                if go_on {
                    host.continue_request();
                }
                go_on
            }
            WaitOutcome::Expired(e) => {
                self.reply(host, p, crate::picker::reply::Reply::from_error(&e));
                false
            }
            WaitOutcome::Evicted => {
                // In flight, not queued: answered now (Envoy also resets the stream to the model
                // server, or, if the response has begun, the stream to the client). Its
                // tracking ends with the stream, which tells eviction the capacity is back.
                let e = scheduler_core::RequestError::Evicted;
                self.reply(host, p, crate::picker::reply::Reply::from_error(&e));
                false
            }
        }
    }

    /// Tells flow control its released request `ticket` went through scheduling, and runs a
    /// dispatch cycle.
    fn scheduled_by_flow_control<H: HttpHost + ?Sized, P: Picking + ?Sized>(
        &mut self,
        host: &mut H,
        p: &P,
        ticket: Option<Ticket>,
    ) {
        if let (Some(g), Some(t)) = (p.flow_gate(), ticket) {
            g.scheduled(t);
            let now_ms = host.now_us() / 1000;
            g.pump(now_ms, &mut || p.saturation(now_ms));
        }
    }

    /// The burst batch this request was held in sealed: hand the plugin its placement, schedule
    /// the request and let it go on (`true`), or answer it (`false`).
    fn on_burst_end<H: HttpHost + ?Sized, P: Picking + ?Sized>(
        &mut self,
        host: &mut H,
        p: &P,
        placed: crate::burst::BurstEnd,
    ) -> bool {
        self.burst = None;
        self.batched = true;
        if let Some(w) = p.burst_gate().and_then(|b| b.window()) {
            w.placed(&mut self.state, placed.endpoint.as_deref(), placed.blocks);
        }
        log::debug!(
            "endpoint picker: burst batch sealed after {} ms, placement {}",
            placed.waited_ms,
            placed.endpoint.as_deref().unwrap_or("none")
        );
        let go_on = self.decide_with_body(host, p, self.body_size) == BodyAction::Continue;
        let ticket = self.ticket.take();
        self.scheduled_by_flow_control(host, p, ticket);
        if go_on {
            host.continue_request();
        }
        go_on
    }

    /// Runs the attribute reporters on the finished response and hands what they report to the
    /// host.
    fn report_attributes<H: HttpHost + ?Sized, P: Picking + ?Sized>(
        &mut self,
        host: &mut H,
        p: &P,
        usage: &Usage,
    ) {
        let picker = &p.core().picker;
        if !self.scheduled || !picker.has_attribute_reporters() {
            return;
        }
        let info = ResponseInfo {
            status: self.status,
            served_endpoint: self.served.address(&self.primary),
            now_ms: host.now_us() / 1000,
        };
        let mut out = Vec::new();
        picker.report_attributes(&info, usage, &mut out);
        for a in &out {
            if !host.report_attribute(&a.namespace, &a.name, a.value) {
                log::debug!(
                    "endpoint picker: the host could not report {}/{}",
                    a.namespace,
                    a.name
                );
            }
        }
    }

    /// Runs the response-body hooks for `chunk` with this response's status and endpoint.
    fn body_hooks<P: Picking + ?Sized>(&mut self, p: &P, chunk: &BodyChunk, now_ms: u64) {
        let info = ResponseInfo {
            status: self.status,
            served_endpoint: self.served.address(&self.primary),
            now_ms,
        };
        p.core().picker.response_body(&mut self.state, &info, chunk);
    }

    fn usage(&self) -> Option<Usage> {
        match &self.usage {
            UsageReader::Sse(parser) => parser.usage(),
            UsageReader::Json(buf) => usage_from_json(buf),
            UsageReader::Grpc(reader) => reader.usage(),
            UsageReader::None => None,
        }
    }

    /// The response headers arrived (`end_of_stream`: there is no body). Never holds them.
    pub fn on_response_headers<H: HttpHost + ?Sized, P: Picking + ?Sized>(
        &mut self,
        host: &mut H,
        p: &P,
        end_of_stream: bool,
    ) {
        let picker = &p.core().picker;
        // Plugins keep response-hook state only for requests that went through a scheduling
        // cycle; a body-less request (routed in turn) has none.
        let (header_hooks, body_hooks) = (
            self.scheduled && picker.has_response_header_hooks(),
            self.scheduled && picker.has_response_body_hooks(),
        );
        // Token counts come from the response's `usage`, which only a parsed inference request
        // (one with a model) has.
        let wants_usage =
            self.primary.is_some() && self.record.as_ref().is_some_and(|r| r.labels.is_some());
        if wants_usage {
            self.response_start_us = Some(host.now_us());
        }
        // Each host read costs a call into the host: read only what a hook, debug or the
        // metrics need, all in one call.
        let reports = self.scheduled && picker.has_attribute_reporters();
        let served_needed = header_hooks || body_hooks || reports || self.debug.is_some();
        if served_needed || wants_usage {
            // Read in place (no copies): the status, the attempt count and the content type.
            let grpc_method = self.grpc_method;
            let (mut status, mut attempts, mut usage) = (0u16, 0u32, UsageReader::None);
            host.with_response_headers(&[":status", ATTEMPT_COUNT, "content-type"], &mut |v| {
                let num = |i: usize| v.get(i).copied().flatten().map(str::trim);
                status = num(0).and_then(|s| s.parse().ok()).unwrap_or(0);
                attempts = num(1).and_then(|a| a.parse().ok()).unwrap_or(0);
                if wants_usage {
                    let ct = v.get(2).copied().flatten().unwrap_or_default();
                    usage = if ct.starts_with("text/event-stream") {
                        UsageReader::Sse(SseUsageParser::new())
                    } else if ct.starts_with("application/json") {
                        UsageReader::Json(Vec::new())
                    } else if let (true, Some(m)) =
                        (ct.starts_with("application/grpc"), grpc_method)
                    {
                        UsageReader::Grpc(GrpcUsageReader::new(m))
                    } else {
                        UsageReader::None
                    };
                }
            });
            if served_needed {
                self.status = status;
                if self.primary.is_some() {
                    // The route sets include_attempt_count_in_response: only after a retry can
                    // another endpoint have served, and only then is the (costlier) upstream
                    // address looked up.
                    self.served = if attempts == 1 {
                        Served::Primary
                    } else {
                        host.upstream_address()
                            .map_or(Served::Unknown, Served::Other)
                    };
                }
            }
            if wants_usage {
                if let (Some(r), UsageReader::Sse(_)) = (&mut self.record, &usage) {
                    r.streaming = true;
                }
                self.usage = usage;
            }
        }
        if header_hooks {
            let mut out = Vec::new();
            let info = ResponseInfo {
                status: self.status,
                served_endpoint: self.served.address(&self.primary),
                now_ms: host.now_us() / 1000,
            };
            p.core()
                .picker
                .response_headers(&mut self.state, &info, &mut out);
            for (k, v) in &out {
                host.set_response_header(k, v);
            }
        }
        if let Some(d) = &self.debug {
            host.set_response_header(DEBUG, d);
            if let Some(s) = self.served.address(&self.primary) {
                host.set_response_header(SERVED, s);
            }
        }
        if end_of_stream {
            self.response_done(host, None);
            if body_hooks {
                let now_ms = host.now_us() / 1000;
                self.body_hooks(
                    p,
                    &BodyChunk {
                        first: true,
                        end_of_stream: true,
                        usage: None,
                    },
                    now_ms,
                );
            }
        }
    }

    /// The response is complete: its duration and token counts go to the record.
    fn response_done<H: HttpHost + ?Sized>(&mut self, host: &mut H, usage: Option<Usage>) {
        let tokens = usage.map(|u| (u.prompt_tokens, u.completion_tokens));
        let now = host.now_us();
        if let Some(r) = &mut self.record {
            r.duration_ns = Some(now.saturating_sub(self.start_us) * 1000);
            if let (Some(at), false) = (self.response_start_us, r.streaming) {
                r.response_processing_ns = Some(now.saturating_sub(at) * 1000);
            }
            r.tokens = tokens;
            r.cached_tokens = usage.and_then(|u| u.cached_tokens);
        }
    }

    /// A response body chunk of `size` bytes arrived. Never holds it: SSE tokens must flow.
    pub fn on_response_body<H: HttpHost + ?Sized, P: Picking + ?Sized>(
        &mut self,
        host: &mut H,
        p: &P,
        size: usize,
        end_of_stream: bool,
    ) {
        if let Some(r) = &mut self.record {
            r.response_bytes += size as u64;
            // llm-d's TTFT (the first body byte) and, for a stream, the gaps between chunks: one
            // clock read per chunk, only for parsed inference requests.
            if size > 0 && r.labels.is_some() && (r.first_byte_ns.is_none() || r.streaming) {
                let now = host.now_us();
                if r.first_byte_ns.is_none() {
                    r.first_byte_ns = Some(now.saturating_sub(self.start_us) * 1000);
                }
                if r.streaming {
                    if let Some(last) = self.last_chunk_us {
                        r.chunk_gap(now.saturating_sub(last) * 1000);
                    }
                    self.last_chunk_us = Some(now);
                }
            }
        }
        match &mut self.usage {
            UsageReader::Sse(parser) => {
                if size > 0 {
                    host.with_response_body(size, &mut |b| parser.feed(b));
                }
                if end_of_stream {
                    parser.finish();
                }
            }
            UsageReader::Json(buf) => {
                if buf.len() + size > MAX_JSON_RESPONSE_BYTES {
                    self.usage = UsageReader::None;
                } else if size > 0 {
                    host.with_response_body(size, &mut |b| buf.extend_from_slice(b));
                }
            }
            UsageReader::Grpc(reader) => {
                if size > 0 {
                    host.with_response_body(size, &mut |b| reader.feed(b));
                }
            }
            UsageReader::None => {}
        }
        // The usage is parsed once, at the end, for the metrics and the hooks.
        let usage = if end_of_stream { self.usage() } else { None };
        if end_of_stream {
            self.response_done(host, usage);
            if let Some(u) = &usage {
                self.report_attributes(host, p, u);
            }
        }
        if !self.scheduled || !p.core().picker.has_response_body_hooks() {
            return;
        }
        let chunk = BodyChunk {
            first: !self.body_seen,
            end_of_stream,
            usage,
        };
        self.body_seen = true;
        self.body_hooks(p, &chunk, host.now_us() / 1000);
        if end_of_stream {
            let outcome = self.state.take::<LatencyOutcome>(LATENCY_OUTCOME);
            if let (Some(r), Some(o)) = (&mut self.record, outcome) {
                r.latency = Some(o);
            }
        }
    }

    /// The response trailers arrived: the body is complete (gRPC ends every response this way,
    /// so its last body chunk does not carry `end_of_stream`).
    pub fn on_response_trailers<H: HttpHost + ?Sized, P: Picking + ?Sized>(
        &mut self,
        host: &mut H,
        p: &P,
    ) {
        self.on_response_body(host, p, 0, true);
    }

    /// The stream is over (completed or reset): returns the budget. The request state (and with
    /// it any in-flight count) is released when the flow is dropped.
    /// The request's metrics are recorded once, here.
    ///
    /// `now_ms`: the time, ms since the Unix epoch. A second call does nothing.
    pub fn finish<P: Picking + ?Sized>(&mut self, p: &P, now_ms: u64) {
        if core::mem::replace(&mut self.finished, true) {
            return;
        }
        self.release(p);
        if let Some(g) = p.flow_gate() {
            // A client that left while queued frees its place at once; a request that was
            // served frees capacity (its in-flight counts are released first), so the queue
            // may release the next.
            self.slot = None;
            if let Some(t) = self.ticket.take() {
                if let Some((priority, waited_ms)) = g.cancel(t, now_ms) {
                    let fairness = fairness_of(self.record.as_ref());
                    p.record_queue_wait(fairness, priority, "EvictedContextCancelled", waited_ms);
                }
            }
            if self.scheduled {
                self.state = RequestState::new();
            }
            // After the in-flight counts: a victim's end confirms its eviction.
            if let Some(t) = self.tracked.take() {
                g.untrack(t, now_ms);
            }
            if !g.is_empty() {
                g.pump(now_ms, &mut || p.saturation(now_ms));
            }
        }
        if let Some(r) = self.record.take() {
            if self.start_us > 0 {
                p.record(&r, self.start_us / 1000);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::{Cell, RefCell};
    use scheduler_core::{Endpoint, PickerConfig, Registry, SplitMix64};

    /// A clock for the flow-control gate's timings: 1.5 µs later at every call.
    fn fake_ns() -> u64 {
        static NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        NS.fetch_add(1_500, std::sync::atomic::Ordering::Relaxed)
    }

    /// A host that records what the flow did.
    #[derive(Default)]
    struct FakeHost {
        request: Vec<(String, String)>,
        body: Vec<u8>,
        response: Vec<(String, String)>,
        reply: Option<(u32, String)>,
        reply_headers: Vec<(String, String)>,
        /// A gRPC local reply: (HTTP status, gRPC status, message).
        grpc_reply: Option<(u32, u32, String)>,
        /// The response body `with_response_body` hands out.
        response_body: Vec<u8>,
        /// Flow control: how many times the request was woken, and whether it went on.
        wakes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        pausable: bool,
        continued: bool,
        /// Calls of `request_headers` (every header read from the host).
        header_reads: usize,
        /// Microseconds past the clock's start (1 s), moved by a test.
        elapsed_us: u64,
        /// Each `set_destination_metadata`: the destination and the scores.
        metadata: Vec<(String, Vec<(String, f64)>)>,
        /// The endpoint subset hint in the request's metadata, if any.
        subset: Option<EndpointSubset>,
    }

    struct CountWake(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl crate::waiting::Wake for CountWake {
        fn wake(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl HttpHost for FakeHost {
        fn endpoint_subset(&mut self) -> Option<EndpointSubset> {
            self.subset.clone()
        }
        fn set_destination_metadata(&mut self, destination: &str, scores: &[(String, f64)]) {
            self.metadata.push((destination.into(), scores.to_vec()));
        }
        fn request_header(&mut self, name: &str) -> Option<String> {
            self.request
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
        fn request_headers(&mut self) -> HeaderBlock {
            self.header_reads += 1;
            self.request.iter().collect()
        }
        fn set_request_header(&mut self, name: &str, value: Option<&str>) -> bool {
            self.request.retain(|(k, _)| k != name);
            if let Some(v) = value {
                self.request.push((name.into(), v.into()));
            }
            true
        }
        fn with_request_body(&mut self, size: usize, f: &mut dyn FnMut(&[u8])) {
            f(&self.body[..size.min(self.body.len())]);
        }
        fn replace_request_body(&mut self, size: usize, body: &[u8]) -> bool {
            // As proxy-wasm's buffer replacement: `size` bytes from the start give way to
            // `body` (a short `size` would leave the rest of the client's body behind).
            self.body
                .splice(..size.min(self.body.len()), body.iter().copied());
            true
        }
        fn response_header(&mut self, name: &str) -> Option<String> {
            self.response
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
        fn set_response_header(&mut self, name: &str, value: &str) -> bool {
            self.response.push((name.into(), value.into()));
            true
        }
        fn with_response_body(&mut self, size: usize, f: &mut dyn FnMut(&[u8])) {
            let n = size.min(self.response_body.len());
            let chunk: Vec<u8> = self.response_body.drain(..n).collect();
            f(&chunk);
        }
        fn upstream_address(&mut self) -> Option<String> {
            None
        }
        fn send_json_reply(&mut self, status: u32, body: &str, extra: &[(&str, &str)]) {
            self.reply = Some((status, body.into()));
            self.reply_headers = extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }
        fn send_grpc_reply(
            &mut self,
            http_status: u32,
            grpc_status: u32,
            message: &str,
            _extra: &[(&str, &str)],
        ) {
            self.grpc_reply = Some((http_status, grpc_status, message.into()));
        }
        fn now_us(&mut self) -> u64 {
            1_000_000 + self.elapsed_us
        }
        fn waker(&mut self) -> Option<Box<dyn crate::waiting::Wake>> {
            self.pausable
                .then(|| Box::new(CountWake(self.wakes.clone())) as Box<dyn crate::waiting::Wake>)
        }
        fn continue_request(&mut self) {
            self.continued = true;
        }
    }

    /// A picker over a fixed pool, with a small body budget.
    struct FakePicking {
        core: PickerCore,
        pool: RefCell<Vec<Endpoint>>,
        budget_used: Cell<usize>,
        picks: RefCell<Vec<String>>,
        /// Models of the requests counted as running.
        running: RefCell<Vec<String>>,
        records: RefCell<Vec<RequestRecord>>,
        gate: Option<crate::waiting::FlowGate>,
        burst: Option<crate::burst::BurstGate>,
        waits: RefCell<Vec<(i32, &'static str)>>,
        /// The request headers each scheduling cycle was given.
        seen_headers: RefCell<Vec<Vec<(String, String)>>>,
    }

    impl Picking for FakePicking {
        fn core(&self) -> &PickerCore {
            &self.core
        }
        fn route_headers_only(
            &self,
            _now_ms: u64,
            subset: Option<&EndpointSubset>,
            _explain: bool,
        ) -> Outcome {
            self.core
                .route_headers_only(&self.pool.borrow(), subset, false)
        }
        fn route_request(
            &self,
            input: RequestInput<'_>,
            state: &mut RequestState,
            record: &mut RequestRecord,
        ) -> Outcome {
            self.seen_headers.borrow_mut().push(
                input
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            self.core.route_request(
                &self.pool.borrow(),
                input,
                &mut SplitMix64::new(1),
                state,
                &mut Timing {
                    clock: &|| 0,
                    record,
                },
            )
        }
        fn reserve_body(&self, bytes: usize) -> bool {
            let now = self.budget_used.get() + bytes;
            if now > self.core.pool.max_buffered_body_bytes {
                return false;
            }
            self.budget_used.set(now);
            true
        }
        fn release_body(&self, bytes: usize) {
            self.budget_used.set(self.budget_used.get() - bytes);
        }
        fn count_pick(&self, primary: &str, _profile: &str) {
            self.picks.borrow_mut().push(primary.into());
        }
        fn count_routed(&self, labels: &RequestLabels, _primary: &str) -> bool {
            self.running.borrow_mut().push(labels.model.clone());
            true
        }
        fn count_reply(&self, _status: u32) {}
        fn count_fail_open(&self) {}
        fn record(&self, record: &RequestRecord, _now_ms: u64) {
            self.records.borrow_mut().push(record.clone());
        }
        fn flow_gate(&self) -> Option<&crate::waiting::FlowGate> {
            self.gate.as_ref()
        }
        fn burst_gate(&self) -> Option<&crate::burst::BurstGate> {
            self.burst.as_ref()
        }
        fn saturation(&self, now_ms: u64) -> f64 {
            self.core
                .picker
                .pool_saturation(&self.pool.borrow(), now_ms)
        }
        fn record_queue_wait(
            &self,
            _fairness_id: Option<&str>,
            priority: i32,
            outcome: &'static str,
            _waited_ms: u64,
        ) {
            self.waits.borrow_mut().push((priority, outcome));
        }
    }

    fn picking() -> FakePicking {
        picking_with("")
    }

    fn picking_with(extra: &str) -> FakePicking {
        let json = format!(
            r#"{{"pool": {{"cluster": "c", "bodyLimitBytes": 1000, "maxBufferedBodyBytes": 1500, "debug": true}} {extra}}}"#
        );
        let l = PickerConfig::load(&json, &Registry::with_builtins()).unwrap();
        let gate = l
            .picker
            .flow_control()
            .map(|fc| crate::waiting::FlowGate::new(fc.clone(), l.pool.scrape.lag_ms(), fake_ns));
        let pool = [(3u32, 0.2), (0, 0.1)]
            .iter()
            .enumerate()
            .map(|(i, &(q, kv))| {
                let mut e = Endpoint::new(format!("10.0.0.{}:8000", i + 1));
                e.metrics.waiting_queue_size = q;
                e.metrics.kv_cache_usage = kv;
                e.metrics.update_time_ms = 1000;
                e
            })
            .collect();
        let burst = l
            .picker
            .batch_window()
            .and_then(|w| crate::burst::BurstGate::new(w.clone()));
        FakePicking {
            core: PickerCore::new(l.picker, l.pool),
            burst,
            pool: RefCell::new(pool),
            budget_used: Cell::new(0),
            picks: RefCell::default(),
            running: RefCell::default(),
            records: RefCell::default(),
            gate,
            waits: RefCell::default(),
            seen_headers: RefCell::default(),
        }
    }

    /// Sets every endpoint's waiting queue over (or under) `utilization-detector`'s threshold.
    fn saturate(p: &FakePicking, on: bool) {
        for e in p.pool.borrow_mut().iter_mut() {
            e.metrics.waiting_queue_size = if on { 10 } else { 0 };
        }
    }

    const FLOW: &str = r#", "featureGates": ["flowControl"], "flowControl": {"defaultRequestTTL": "2s", "maxRequests": 2}"#;

    fn queued_request(p: &FakePicking, body: &str) -> (RequestFlow, FakeHost) {
        let mut host = request(body);
        host.pausable = true;
        let mut flow = RequestFlow::new();
        flow.on_request_headers(&mut host, p, false);
        assert_eq!(
            flow.on_request_body(&mut host, p, body.len(), true),
            BodyAction::StopAndBuffer
        );
        (flow, host)
    }

    #[test]
    fn flow_control_holds_a_request_while_saturated_and_routes_it_when_released() {
        let p = picking_with(FLOW);
        saturate(&p, true);
        let body = r#"{"model":"m","prompt":"hello"}"#;
        let (mut flow, mut host) = queued_request(&p, body);
        assert!(flow.queued());
        assert_eq!(host.request_header(DESTINATION), None, "not routed yet");
        assert_eq!(host.wakes.load(std::sync::atomic::Ordering::SeqCst), 0);
        let g = p.gate.as_ref().unwrap();
        assert_eq!(g.len(), 1);
        // Capacity returns: the tick releases it, the host wakes it, it is routed and goes on.
        saturate(&p, false);
        g.tick(2000, false, &mut || p.saturation(1000));
        assert_eq!(host.wakes.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(flow.on_wake(&mut host, &p));
        assert!(host.continued);
        assert_eq!(
            host.request_header(DESTINATION).as_deref(),
            Some("10.0.0.2:8000")
        );
        assert_eq!(*p.waits.borrow(), [(0, "Dispatched")]);
        assert!(g.is_empty());
        // A second wake does nothing.
        assert!(!flow.on_wake(&mut host, &p));
    }

    #[test]
    fn flow_control_answers_429_with_retry_after_when_the_wait_times_out_or_the_queue_is_full() {
        let p = picking_with(FLOW);
        saturate(&p, true);
        let body = r#"{"model":"m","prompt":"hello"}"#;
        let (mut a, mut host_a) = queued_request(&p, body);
        let (_b, _) = queued_request(&p, body);
        // maxRequests 2: the third is refused at once.
        let mut host_c = request(body);
        host_c.pausable = true;
        let mut c = RequestFlow::new();
        c.on_request_headers(&mut host_c, &p, false);
        assert_eq!(
            c.on_request_body(&mut host_c, &p, body.len(), true),
            BodyAction::StopAndBuffer
        );
        let (status, reply) = host_c.reply.clone().unwrap();
        assert_eq!(status, 429);
        assert!(reply.contains("queue_full"), "{reply}");
        fn headers(h: &FakeHost) -> Vec<(&str, &str)> {
            h.reply_headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        }
        assert_eq!(
            headers(&host_c),
            [
                ("x-llm-d-request-dropped-reason", "rejected-saturated"),
                ("retry-after", "1")
            ]
        );
        // 2 s later the queued ones expire.
        let g = p.gate.as_ref().unwrap();
        g.tick(1000 + 2000, false, &mut || 1.0);
        assert!(!a.on_wake(&mut host_a, &p));
        let (status, reply) = host_a.reply.clone().unwrap();
        assert_eq!(status, 429);
        assert!(reply.contains("queue_timeout"), "{reply}");
        assert_eq!(
            headers(&host_a),
            [
                ("x-llm-d-request-dropped-reason", "rejected-ttl-expired"),
                ("retry-after", "1")
            ]
        );
        assert!(p.waits.borrow().contains(&(0, "EvictedTTL")));
        // The refused one counted once, under upstream's outcome name.
        assert_eq!(
            p.waits
                .borrow()
                .iter()
                .filter(|w| w.1 == "RejectedCapacity")
                .count(),
            1
        );
        // The gate timed the three admissions by band and outcome, and its dispatch cycles.
        let mut shown = Vec::new();
        struct Names<'a>(&'a mut Vec<String>);
        impl crate::telemetry::StatSink for Names<'_> {
            fn add(&mut self, f: &'static crate::telemetry::families::Family, l: &[&str], d: u64) {
                if d > 0 {
                    self.0.push(format!("{}{l:?} {d}", f.name));
                }
            }
            fn set(&mut self, _: &'static crate::telemetry::families::Family, _: &[&str], _: u64) {}
            fn adjust(
                &mut self,
                _: &'static crate::telemetry::families::Family,
                _: &[&str],
                _: i64,
            ) {
            }
        }
        g.take_timings().flush(&mut Names(&mut shown));
        let enqueue = "llm_d_epp_flow_control_request_enqueue_duration_seconds_count";
        assert!(
            shown.contains(&format!(
                r#"{enqueue}["default-flow", "0", "NotYetFinalized"] 2"#
            )),
            "{shown:?}"
        );
        assert!(
            shown.contains(&format!(
                r#"{enqueue}["default-flow", "0", "RejectedCapacity"] 1"#
            )),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s
                    .starts_with("llm_d_epp_flow_control_dispatch_cycle_duration_seconds_count")),
            "{shown:?}"
        );
        assert!(g.take_timings().is_empty(), "handed over whole");
    }

    const EVICTION: &str = r#", "featureGates": ["flowControl"],
        "flowControl": {"defaultRequestTTL": "5s", "enableEviction": true},
        "inferenceObjectives": [{"name": "critical", "priority": 10}, {"name": "batch", "priority": -1}]"#;

    /// A request of `objective` with a pausable host, through its body.
    fn sent(p: &FakePicking, objective: &str) -> (RequestFlow, FakeHost, BodyAction) {
        let body = r#"{"model":"m","prompt":"hello"}"#;
        let mut host = request(body);
        host.pausable = true;
        host.request
            .push(("x-gateway-inference-objective".into(), objective.into()));
        let mut flow = RequestFlow::new();
        flow.on_request_headers(&mut host, p, false);
        let action = flow.on_request_body(&mut host, p, body.len(), true);
        (flow, host, action)
    }

    #[test]
    fn a_sheddable_request_in_flight_is_evicted_for_a_waiting_critical_one() {
        let p = picking_with(EVICTION);
        let g = p.gate.as_ref().unwrap();
        let wakes = |h: &FakeHost| h.wakes.load(std::sync::atomic::Ordering::SeqCst);
        // With room, a batch and a critical request go through; only the batch one can be
        // evicted, so only it keeps a way to be woken.
        let (mut batch, mut host_b, action) = sent(&p, "batch");
        assert_eq!(action, BodyAction::Continue);
        assert!(batch.wakeable() && !batch.queued());
        let (mut early, _, action) = sent(&p, "critical");
        assert_eq!(action, BodyAction::Continue);
        assert!(!early.wakeable());
        // Saturated: the next critical request waits, and the batch one is evicted for it.
        saturate(&p, true);
        let (mut critical, mut host_c, action) = sent(&p, "critical");
        assert_eq!(action, BodyAction::StopAndBuffer);
        assert!(critical.queued());
        assert_eq!(wakes(&host_b), 1, "the victim is woken on its worker");
        assert!(!batch.on_wake(&mut host_b, &p));
        let (status, body) = host_b.reply.clone().unwrap();
        assert_eq!(status, 429);
        assert!(body.contains("\"code\":\"evicted\""), "{body}");
        assert_eq!(
            host_b.reply_headers,
            [(
                "x-llm-d-request-dropped-reason".to_string(),
                "evicted".to_string()
            )]
        );
        assert_eq!(g.eviction_counts().unwrap().issued, 1);
        // Nothing more is evicted before the victim's stream has ended and its grace passed
        // (a scraped detector: scrape interval + staleness + 250 ms).
        g.tick(1001, false, &mut || p.saturation(1001));
        assert_eq!(g.eviction_counts().unwrap().issued, 1);
        batch.finish(&p, 1002);
        batch.finish(&p, 1003);
        assert_eq!(g.eviction_counts().unwrap().confirmed, 1, "ended once");
        // Capacity is back: the critical request goes (the fake pool's metrics are from 1000).
        saturate(&p, false);
        g.tick(2000, false, &mut || p.saturation(1000));
        assert_eq!(wakes(&host_c), 1);
        assert!(critical.on_wake(&mut host_c, &p));
        assert!(host_c.continued);
        early.finish(&p, 2001);
        critical.finish(&p, 2002);
        assert_eq!(
            g.eviction_counts().unwrap().issued,
            1,
            "no critical request is a victim"
        );
    }

    #[test]
    fn a_client_that_leaves_while_queued_frees_its_place() {
        let p = picking_with(FLOW);
        saturate(&p, true);
        let body = r#"{"model":"m","prompt":"hello"}"#;
        let (mut a, _host) = queued_request(&p, body);
        let g = p.gate.as_ref().unwrap();
        assert_eq!(g.len(), 1);
        a.finish(&p, 1500);
        assert_eq!(g.len(), 0);
        assert_eq!(p.budget_used.get(), 0);
        assert!(p.waits.borrow().contains(&(0, "EvictedContextCancelled")));
    }

    #[test]
    fn without_a_pausable_host_or_with_capacity_requests_are_not_queued() {
        let p = picking_with(FLOW);
        let body = r#"{"model":"m","prompt":"hello"}"#;
        let mut host = request(body);
        host.pausable = true;
        let mut flow = RequestFlow::new();
        flow.on_request_headers(&mut host, &p, false);
        assert_eq!(
            flow.on_request_body(&mut host, &p, body.len(), true),
            BodyAction::Continue
        );
        saturate(&p, true);
        let mut host = request(body);
        let mut flow = RequestFlow::new();
        flow.on_request_headers(&mut host, &p, false);
        assert_eq!(
            flow.on_request_body(&mut host, &p, body.len(), true),
            BodyAction::Continue
        );
    }

    /// A burst window of 50 ms whose placement outweighs the queue scorer (which prefers
    /// 10.0.0.2, the endpoint with no queue).
    const BURST: &str = r#", "plugins": [
        {"type": "burst-prefix-cache-producer", "parameters": {"windowDurationMs": 50, "blockSizeTokens": 1}},
        {"type": "prefix-cache-scorer", "parameters": {"prefixMatchInfoProducerName": "burst-prefix-cache-producer"}},
        {"type": "queue-scorer"}, {"type": "max-score-picker"}],
        "schedulingProfiles": [{"name": "default", "plugins": [
            {"pluginRef": "prefix-cache-scorer", "weight": 10}, {"pluginRef": "queue-scorer", "weight": 1},
            {"pluginRef": "max-score-picker"}]}]"#;

    /// A request through its body with a pausable host; asserts it is held.
    fn held_request(p: &FakePicking, body: &str) -> (RequestFlow, FakeHost) {
        let (flow, host) = queued_request(p, body);
        assert!(host.reply.is_none(), "{:?}", host.reply);
        assert!(flow.wakeable() && !flow.decided());
        (flow, host)
    }

    #[test]
    fn a_burst_of_one_prompt_is_held_for_the_window_then_sent_to_one_endpoint() {
        let p = picking_with(BURST);
        let shared = r#"{"model":"m","prompt":"the same long system prompt and question"}"#;
        let (mut a, mut host_a) = held_request(&p, shared);
        let (mut b, mut host_b) = held_request(&p, shared);
        let (mut lone, mut host_lone) =
            held_request(&p, r#"{"model":"m","prompt":"something else"}"#);
        let g = p.burst.as_ref().unwrap();
        assert_eq!(g.len(), 3);
        // The fake host's clock reads 1000 ms: the batch seals at 1050.
        assert_eq!(g.seal_due(1049), 0);
        assert_eq!(g.seal_due(1050), 3);
        for (flow, host) in [
            (&mut a, &mut host_a),
            (&mut b, &mut host_b),
            (&mut lone, &mut host_lone),
        ] {
            assert_eq!(host.wakes.load(std::sync::atomic::Ordering::SeqCst), 1);
            assert!(flow.on_wake(host, &p));
            assert!(host.continued && flow.decided());
            // Woken once: a second wake does nothing.
            assert!(!flow.on_wake(host, &p));
        }
        // The pair goes to the first endpoint by address (the batch's tie-break), against the
        // queue scorer; the lone prompt has no placement and the queue scorer decides.
        for host in [&mut host_a, &mut host_b] {
            assert_eq!(
                host.request_header(DESTINATION).as_deref(),
                Some("10.0.0.1:8000")
            );
        }
        assert_eq!(
            host_lone.request_header(DESTINATION).as_deref(),
            Some("10.0.0.2:8000")
        );
    }

    #[test]
    fn a_burst_behind_flow_control_is_admitted_once_and_a_host_that_cannot_pause_is_not_held() {
        let p = picking_with(&format!("{BURST}{FLOW}"));
        let body = r#"{"model":"m","prompt":"hello there"}"#;
        let (mut flow, mut host) = held_request(&p, body);
        p.burst.as_ref().unwrap().seal_due(2000);
        assert!(flow.on_wake(&mut host, &p));
        assert!(host.continued);
        // Flow control admitted it at once (counted once, as a wait of 0 ms) and was not asked
        // again after the window.
        assert_eq!(*p.waits.borrow(), [(0, "Dispatched")]);
        assert!(p.gate.as_ref().unwrap().is_empty());
        // A host that cannot pause a request routes it at once with no placement.
        let mut host = request(body);
        let mut flow = RequestFlow::new();
        flow.on_request_headers(&mut host, &p, false);
        assert_eq!(
            flow.on_request_body(&mut host, &p, body.len(), true),
            BodyAction::Continue
        );
        assert_eq!(
            host.request_header(DESTINATION).as_deref(),
            Some("10.0.0.2:8000")
        );
    }

    #[test]
    fn a_request_flow_control_released_into_a_burst_batch_keeps_its_place_until_it_is_scheduled() {
        use std::sync::atomic::Ordering::SeqCst;
        let p = picking_with(&format!("{BURST}{FLOW}"));
        saturate(&p, true);
        let body = r#"{"model":"m","prompt":"hello there"}"#;
        let (mut a, mut host_a) = queued_request(&p, body);
        let (b, host_b) = queued_request(&p, body);
        assert!(a.queued() && b.queued());
        let g = p.gate.as_ref().unwrap();
        saturate(&p, false);
        g.tick(1000, false, &mut || p.saturation(1000));
        assert_eq!(
            (host_a.wakes.load(SeqCst), host_b.wakes.load(SeqCst)),
            (1, 0)
        );
        // Released into the burst batch: still paused, and still counted as released but not
        // scheduled, so flow control lets no other request go in its place.
        assert!(!a.on_wake(&mut host_a, &p));
        assert!(a.queued() && !host_a.continued);
        g.pump(1000, &mut || p.saturation(1000));
        assert_eq!(host_b.wakes.load(SeqCst), 0);
        // The batch seals: `a` is scheduled, and flow control releases `b`.
        p.burst.as_ref().unwrap().seal_due(2000);
        assert!(a.on_wake(&mut host_a, &p));
        assert!(host_a.continued && !a.queued());
        assert_eq!(host_b.wakes.load(SeqCst), 1);
        assert!(b.queued());
    }

    fn request(body: &str) -> FakeHost {
        FakeHost {
            request: vec![
                (":path".into(), "/v1/completions".into()),
                ("content-length".into(), body.len().to_string()),
                (DESTINATION.into(), "6.6.6.6:80".into()),
            ],
            body: body.as_bytes().to_vec(),
            ..FakeHost::default()
        }
    }

    #[test]
    fn plugins_see_every_header_read_once_less_the_ones_the_client_may_not_set() {
        let p = picking();
        let body = r#"{"model":"m","prompt":"hello"}"#;
        let mut host = request(body);
        host.request.push((PREFILLER.into(), "7.7.7.7:80".into()));
        host.request.push((KV_SOURCE.into(), "6.6.6.6:1".into()));
        host.request.push((DEBUG.into(), "1".into()));
        host.request.push(("x-tenant".into(), "blue".into()));
        let mut flow = RequestFlow::new();
        flow.on_request_headers(&mut host, &p, false);
        // A header that changes after the headers hook is not seen: the read is the one made
        // then (nothing else may change them while the flow holds the request).
        host.request.push(("x-late".into(), "1".into()));
        assert_eq!(
            flow.on_request_body(&mut host, &p, body.len(), true),
            BodyAction::Continue
        );
        assert_eq!(host.header_reads, 1, "one read of the request headers");
        let seen = p.seen_headers.borrow();
        let names: Vec<&str> = seen[0].iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, [":path", "content-length", "x-tenant"]);
        assert_eq!(seen[0][2].1, "blue");
    }

    /// Routes one completion of `prompt` with these extra client headers; the host after it.
    fn routed(p: &FakePicking, prompt: &str, extra: &[(&str, &str)]) -> FakeHost {
        let body = format!(r#"{{"model":"m","prompt":"{prompt}"}}"#);
        let mut host = request(&body);
        for &(k, v) in extra {
            host.request.push((k.into(), v.into()));
        }
        let mut flow = RequestFlow::new();
        flow.on_request_headers(&mut host, p, false);
        assert_eq!(
            flow.on_request_body(&mut host, p, body.len(), true),
            BodyAction::Continue
        );
        host
    }

    #[test]
    fn the_decision_goes_to_the_metadata_once_with_scores_only_when_asked() {
        let p = picking();
        let host = routed(&p, "hello", &[]);
        assert_eq!(host.metadata, [("10.0.0.2:8000".to_string(), Vec::new())]);
        let mut p = picking();
        p.core.pool.emit_endpoint_scores = true;
        let host = routed(&p, "hello", &[]);
        let [(destination, scores)] = host.metadata.as_slice() else {
            panic!("{:?}", host.metadata)
        };
        assert_eq!(destination, "10.0.0.2:8000");
        let addresses: Vec<&str> = scores.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(addresses, ["10.0.0.1:8000", "10.0.0.2:8000"]);
        // A body-less request is routed in turn and writes none.
        let mut get = FakeHost {
            request: vec![(":path".into(), "/v1/models".into())],
            ..FakeHost::default()
        };
        let _ = RequestFlow::new().on_request_headers(&mut get, &p, true);
        assert!(get.request_header(DESTINATION).is_some(), "routed");
        assert!(get.metadata.is_empty(), "{:?}", get.metadata);
    }

    /// GIE's subset hint (its hermetic "subset" cases): the pick is the best endpoint the hint
    /// admits, even a busier one; a hint that admits none, or an empty one, is a 503; with
    /// `disableEndpointSubsetFilter` it is ignored; a body-less request keeps to it too.
    #[test]
    fn the_subset_hint_narrows_the_candidates() {
        let subset_route = |p: &FakePicking, entries: &[&str]| {
            let body = r#"{"model":"m","prompt":"hello"}"#;
            let mut host = request(body);
            host.subset = Some(EndpointSubset::from_entries(entries.iter().copied()));
            let mut flow = RequestFlow::new();
            flow.on_request_headers(&mut host, p, false);
            let _ = flow.on_request_body(&mut host, p, body.len(), true);
            host
        };
        let p = picking();
        // Unrestricted, the queue scorer prefers 10.0.0.2.
        assert_eq!(
            routed(&p, "hello", &[])
                .request_header(DESTINATION)
                .as_deref(),
            Some("10.0.0.2:8000")
        );
        // Any port of a listed IP.
        let mut host = subset_route(&p, &["10.0.0.1:9999"]);
        assert_eq!(
            host.request_header(DESTINATION).as_deref(),
            Some("10.0.0.1:8000")
        );
        assert!(host.reply.is_none());
        for entries in [&["192.168.1.1:8000"][..], &[]] {
            let mut host = subset_route(&p, entries);
            let (status, body) = host.reply.clone().expect("a local reply");
            assert_eq!(status, 503, "{entries:?}");
            assert!(
                body.contains("failed to find endpoint candidates"),
                "{body}"
            );
            assert!(host.request_header(DESTINATION).is_none());
        }
        let mut off = picking();
        off.core.pool.disable_endpoint_subset_filter = true;
        let mut host = subset_route(&off, &["10.0.0.1:8000"]);
        assert_eq!(
            host.request_header(DESTINATION).as_deref(),
            Some("10.0.0.2:8000")
        );
        for _ in 0..3 {
            let mut get = FakeHost {
                request: vec![(":path".into(), "/v1/models".into())],
                subset: Some(EndpointSubset::from_entries(["10.0.0.1:8000"])),
                ..FakeHost::default()
            };
            let _ = RequestFlow::new().on_request_headers(&mut get, &p, true);
            assert_eq!(
                get.request_header(DESTINATION).as_deref(),
                Some("10.0.0.1:8000")
            );
        }
    }

    #[test]
    fn a_rewritten_model_is_the_one_forwarded() {
        let p = picking();
        let host = routed(&p, "hello", &[("x-gateway-model-name-rewrite", "m-lora")]);
        let body = String::from_utf8(host.body.clone()).unwrap();
        assert_eq!(body, r#"{"model":"m-lora","prompt":"hello"}"#);
        assert_eq!(
            host.request
                .iter()
                .find(|(k, _)| k == "content-length")
                .map(|(_, v)| v.as_str()),
            Some(body.len().to_string().as_str())
        );
        // No rewrite: the client's bytes go on untouched.
        let host = routed(&p, "hello", &[]);
        assert_eq!(host.body, br#"{"model":"m","prompt":"hello"}"#);
    }

    #[test]
    fn a_plugin_header_is_set_and_an_empty_one_removes_the_clients() {
        // p2p-source-producer: the KV-source header names the holder of the prefix when the
        // request is computed elsewhere, and a client's own value is removed otherwise.
        const KV: &str = "x-kv-cache-source-host-port";
        let p = picking_with(
            r#", "plugins": [{"type": "approx-prefix-cache-producer"}, {"type": "p2p-source-producer"},
                {"type": "queue-scorer"}, {"type": "max-score-picker"}],
              "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "queue-scorer"},
                {"pluginRef": "max-score-picker"}]}]"#,
        );
        let prompt = "You are a helpful assistant for the billing team. Answer briefly and cite the invoice number every time.";
        let mut first = routed(&p, prompt, &[]);
        assert_eq!(
            first.request_header(DESTINATION).as_deref(),
            Some("10.0.0.2:8000")
        );
        assert_eq!(first.request_header(KV), None);
        // The holder is busy now: the other endpoint computes it and may pull from the holder.
        for (e, q) in p.pool.borrow_mut().iter_mut().zip([0, 9]) {
            e.metrics.waiting_queue_size = q;
        }
        let mut second = routed(&p, prompt, &[(KV, "6.6.6.6:1")]);
        assert_eq!(
            second.request_header(DESTINATION).as_deref(),
            Some("10.0.0.1:8000")
        );
        assert_eq!(second.request_header(KV).as_deref(), Some("10.0.0.2:8000"));
        let mut fresh = routed(
            &p,
            "nothing cached anywhere for this one",
            &[(KV, "6.6.6.6:1")],
        );
        assert_eq!(
            fresh.request_header(KV),
            None,
            "the client's value is removed"
        );
    }

    #[test]
    fn a_body_request_is_held_then_routed_with_the_forged_header_replaced() {
        let p = picking();
        let body = r#"{"model":"m","prompt":"hello"}"#;
        let mut host = request(body);
        host.request.push((DEBUG.into(), "1".into()));
        let mut flow = RequestFlow::new();
        assert_eq!(
            flow.on_request_headers(&mut host, &p, false),
            HeadersAction::Stop
        );
        assert_eq!(
            host.request_header(DESTINATION),
            None,
            "client header stripped"
        );
        assert_eq!(p.budget_used.get(), body.len(), "declared size reserved");
        assert_eq!(
            flow.on_request_body(&mut host, &p, 10, false),
            BodyAction::StopAndBuffer
        );
        assert_eq!(
            flow.on_request_body(&mut host, &p, body.len(), true),
            BodyAction::Continue
        );
        assert_eq!(
            host.request_header(DESTINATION).as_deref(),
            Some("10.0.0.2:8000")
        );
        assert_eq!(p.budget_used.get(), 0, "released once decided");
        assert_eq!(*p.picks.borrow(), ["10.0.0.2:8000"]);
        host.response.push((":status".into(), "200".into()));
        flow.on_response_headers(&mut host, &p, true);
        assert!(host
            .response_header(DEBUG)
            .is_some_and(|d| d.starts_with("picked=10.0.0.2:8000")
                && d.contains(" candidates=2/2 top=10.0.0.2:8000:")));
        assert_eq!(
            host.request_header(DEBUG),
            None,
            "the question is not forwarded"
        );
        assert_eq!(p.records.borrow().len(), 0, "recorded when the stream ends");
        flow.finish(&p, 0);
        let records = p.records.borrow();
        let r = records.first().expect("one record");
        let labels = r.labels.as_ref().expect("labelled once parsed");
        assert_eq!(
            (labels.model.as_str(), labels.target_model.as_str()),
            ("m", "m")
        );
        assert_eq!((labels.fairness(), labels.priority), ("default-flow", 0));
        assert!(
            r.running,
            "counted as running when routed; its record ends that"
        );
        assert_eq!(*p.running.borrow(), ["m"]);
        assert_eq!(r.request_bytes, body.len() as u64);
        assert!(r.plugins.len() >= 3, "plugin timings: {:?}", r.plugins);

        // Without asking, no debug header even though the config allows it.
        let mut host = request(body);
        let mut flow = RequestFlow::new();
        flow.on_request_headers(&mut host, &p, false);
        flow.on_request_body(&mut host, &p, body.len(), true);
        host.response.push((":status".into(), "200".into()));
        flow.on_response_headers(&mut host, &p, true);
        assert_eq!(host.response_header(DEBUG), None);
    }

    #[test]
    fn budget_limit_and_bad_bodies_are_local_replies() {
        let p = picking();
        // Over the body limit by declaration: 413 at the headers.
        let mut host = request(&"x".repeat(1200));
        let mut flow = RequestFlow::new();
        assert_eq!(
            flow.on_request_headers(&mut host, &p, false),
            HeadersAction::Stop
        );
        assert_eq!(host.reply.as_ref().map(|r| r.0), Some(413));

        // Two requests of 900 declared bytes: the second goes over the 1500-byte budget.
        let (mut a, mut b) = (request(&"y".repeat(900)), request(&"y".repeat(900)));
        let (mut fa, mut fb) = (RequestFlow::new(), RequestFlow::new());
        fa.on_request_headers(&mut a, &p, false);
        assert!(a.reply.is_none());
        fb.on_request_headers(&mut b, &p, false);
        assert_eq!(b.reply.as_ref().map(|r| r.0), Some(503));
        assert!(b
            .reply
            .as_ref()
            .is_some_and(|r| r.1.contains("body_buffer_full")));
        // The held request goes away (reset): its reservation returns.
        fa.finish(&p, 0);
        assert_eq!(p.budget_used.get(), 0);

        let mut host = request("not json");
        let mut flow = RequestFlow::new();
        flow.on_request_headers(&mut host, &p, false);
        assert_eq!(
            flow.on_request_body(&mut host, &p, 8, true),
            BodyAction::StopAndBuffer
        );
        assert_eq!(host.reply.as_ref().map(|r| r.0), Some(400));
    }

    #[test]
    fn vllm_grpc_requests_get_grpc_errors_and_their_usage_is_read() {
        use scheduler_core::parse::protobuf::{grpc_frame, put_bytes, put_uint};
        let p = picking_with(
            r#", "plugins": [{"type": "vllmgrpc-parser"}, {"type": "single-profile-handler"}, {"type": "queue-scorer"}, {"type": "max-score-picker"}],
                "requestHandler": {"parsers": [{"pluginRef": "vllmgrpc-parser"}]},
                "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "queue-scorer"}, {"pluginRef": "max-score-picker"}]}]"#,
        );
        let grpc = |body: Vec<u8>| FakeHost {
            request: vec![
                (
                    ":path".into(),
                    "/vllm.grpc.engine.VllmEngine/Generate".into(),
                ),
                ("content-type".into(), "application/grpc".into()),
                ("content-length".into(), body.len().to_string()),
            ],
            body,
            ..FakeHost::default()
        };
        // A malformed message: INVALID_ARGUMENT, no JSON reply.
        let mut host = grpc(grpc_frame(&[0x1a, 40]));
        let mut flow = RequestFlow::new();
        flow.on_request_headers(&mut host, &p, false);
        let n = host.body.len();
        flow.on_request_body(&mut host, &p, n, true);
        assert_eq!(host.reply, None);
        let (http, code, message) = host.grpc_reply.clone().expect("a gRPC reply");
        assert_eq!((http, code), (400, 3));
        assert!(message.contains("invalid vLLM gRPC request"), "{message}");

        // A good one is routed, and the usage of its streamed response is read.
        let mut m = Vec::new();
        put_bytes(&mut m, 3, b"Hello");
        put_uint(&mut m, 5, 1);
        let mut host = grpc(grpc_frame(&m));
        let mut flow = RequestFlow::new();
        flow.on_request_headers(&mut host, &p, false);
        let n = host.body.len();
        assert_eq!(
            flow.on_request_body(&mut host, &p, n, true),
            BodyAction::Continue
        );
        assert!(host.request_header(DESTINATION).is_some());
        let mut chunk = Vec::new();
        put_uint(&mut chunk, 2, 7);
        put_uint(&mut chunk, 3, 3);
        let mut resp = Vec::new();
        put_bytes(&mut resp, 1, &chunk);
        host.response_body = grpc_frame(&resp);
        host.response.push((":status".into(), "200".into()));
        host.response
            .push(("content-type".into(), "application/grpc".into()));
        flow.on_response_headers(&mut host, &p, false);
        let n = host.response_body.len();
        flow.on_response_body(&mut host, &p, 4, false);
        flow.on_response_body(&mut host, &p, n - 4, true);
        flow.finish(&p, 0);
        let records = p.records.borrow();
        assert_eq!(records.first().and_then(|r| r.tokens), Some((7, 3)));
    }

    #[test]
    fn the_first_response_byte_and_an_sse_response_are_recorded_for_ttft() {
        let p = picking();
        // A request that did not ask for a stream, answered with SSE: streamed, as llm-d counts
        // it; its first body byte 40 ms after the request headers, the end at 150 ms.
        let body = r#"{"model":"m","prompt":"hello"}"#;
        let mut host = request(body);
        let mut flow = RequestFlow::new();
        flow.on_request_headers(&mut host, &p, false);
        flow.on_request_body(&mut host, &p, body.len(), true);
        host.response.push((":status".into(), "200".into()));
        host.response
            .push(("content-type".into(), "text/event-stream".into()));
        flow.on_response_headers(&mut host, &p, false);
        host.elapsed_us = 40_000;
        host.response_body = b"data: {}\n\n".to_vec();
        let n = host.response_body.len();
        flow.on_response_body(&mut host, &p, n, false);
        // The next chunk 60 ms later, then 5 ms later; the end carries no bytes.
        host.elapsed_us = 100_000;
        flow.on_response_body(&mut host, &p, n, false);
        host.elapsed_us = 105_000;
        flow.on_response_body(&mut host, &p, n, false);
        host.elapsed_us = 150_000;
        flow.on_response_body(&mut host, &p, 0, true);
        flow.finish(&p, 0);
        let records = p.records.borrow();
        let r = records.first().expect("one record");
        assert_eq!(
            (r.first_byte_ns, r.duration_ns, r.streaming),
            (Some(40_000_000), Some(150_000_000), true)
        );
        // Buckets ≤ 1, 5, 10, 20, 40, 60 ms …: one gap in "≤ 5 ms", one in "≤ 60 ms".
        assert_eq!(r.chunk_gaps[..7], [0, 1, 0, 0, 0, 1, 0]);
        assert_eq!(r.chunk_gaps.iter().sum::<u32>(), 2);
        assert_eq!(r.response_processing_ns, None, "not measured for a stream");
    }

    #[test]
    fn request_and_response_processing_times_are_recorded() {
        let p = picking();
        // The body completes 3 ms after the headers and is routed then; the JSON response's
        // headers come at 50 ms and its end at 58 ms.
        let body = r#"{"model":"m","prompt":"hello"}"#;
        let mut host = request(body);
        let mut flow = RequestFlow::new();
        flow.on_request_headers(&mut host, &p, false);
        host.elapsed_us = 3_000;
        flow.on_request_body(&mut host, &p, body.len(), true);
        host.response.push((":status".into(), "200".into()));
        host.response
            .push(("content-type".into(), "application/json".into()));
        host.elapsed_us = 50_000;
        flow.on_response_headers(&mut host, &p, false);
        host.response_body = br#"{"usage":{"prompt_tokens":2,"completion_tokens":1}}"#.to_vec();
        let n = host.response_body.len();
        host.elapsed_us = 58_000;
        flow.on_response_body(&mut host, &p, n, true);
        flow.finish(&p, 0);
        let records = p.records.borrow();
        let r = records.first().expect("one record");
        assert_eq!(r.request_processing_ns, Some(3_000_000));
        assert_eq!(r.response_processing_ns, Some(8_000_000));
        assert!(!r.streaming);
    }

    #[test]
    fn a_request_without_body_is_routed_at_the_headers_less_the_clients_routing_headers() {
        let p = picking();
        // A client's value of every header it may not set (here on a GET, which no plugin
        // sees): none reaches the model server.
        let mut host = FakeHost {
            request: CLIENT_FORBIDDEN
                .iter()
                .map(|&h| (h.into(), "6.6.6.6:1".into()))
                .collect(),
            ..FakeHost::default()
        };
        let mut flow = RequestFlow::new();
        assert_eq!(
            flow.on_request_headers(&mut host, &p, true),
            HeadersAction::Continue
        );
        assert!(flow.decided());
        let Some(d) = host.request_header(DESTINATION) else {
            panic!("routed")
        };
        assert!(p.pool.borrow().iter().any(|e| e.address == d));
        for h in [PREFILLER, ENCODERS, KV_SOURCE] {
            assert_eq!(host.request_header(h), None, "{h} removed");
        }
        assert_eq!(host.request.len(), 1, "only the picked destination is left");
    }
}
