//! The per-request context of the `endpoint-picker` filter.
//!
//! Request: strip client-supplied destination headers; a request without a body is routed at
//! once; otherwise pause (Envoy buffers the body, which needs `allow_on_headers_stop_iteration:
//! true` on the plugin) until the whole body is in, then decide and set the headers while the
//! request is still paused. Response: report status, the endpoint that served and token usage
//! (JSON body or SSE stream, never paused) to the response hooks; dropping the context releases
//! in-flight counts even on reset.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use scheduler_core::model::response::{BodyChunk, ResponseInfo, Usage};
use scheduler_core::parse::usage::{usage_from_json, SseUsageParser};
use scheduler_core::RequestState;

use crate::host;
use crate::picker::decide::Outcome;
use crate::picker::headers::{ATTEMPT_COUNT, CLIENT_FORBIDDEN, DEBUG, DESTINATION, SERVED};
use crate::picker::root::PickerShared;

/// Largest JSON response body kept for usage parsing (bytes); larger bodies are not parsed.
const MAX_JSON_RESPONSE_BYTES: usize = 1 << 20;

enum UsageReader {
    None,
    Sse(SseUsageParser),
    Json(Vec<u8>),
}

/// See the module docs.
pub struct PickerHttp {
    shared: Rc<PickerShared>,
    state: RequestState,
    decided: bool,
    primary: Option<String>,
    debug: Option<String>,
    status: u16,
    served: Option<String>,
    usage: UsageReader,
    body_seen: bool,
    /// Bytes of the VM's body-buffer budget this request holds until it is decided.
    reserved: usize,
}

impl PickerHttp {
    /// A context for one request.
    pub fn new(shared: Rc<PickerShared>, _context_id: u32) -> Self {
        PickerHttp {
            shared,
            state: RequestState::new(),
            decided: false,
            primary: None,
            debug: None,
            status: 0,
            served: None,
            usage: UsageReader::None,
            body_seen: false,
            reserved: 0,
        }
    }

    /// Grows this request's share of the body-buffer budget to `bytes`; `false` when the
    /// budget is spent (the caller answers 503).
    fn reserve_up_to(&mut self, bytes: usize) -> bool {
        if bytes <= self.reserved {
            return true;
        }
        if !self.shared.reserve_body(bytes - self.reserved) {
            return false;
        }
        self.reserved = bytes;
        true
    }

    fn release(&mut self) {
        self.shared.release_body(std::mem::take(&mut self.reserved));
    }

    /// Applies a decision while the request headers are still held.
    fn apply(&mut self, outcome: Outcome) -> Action {
        self.decided = true;
        self.release();
        match outcome {
            Outcome::Route(r) => {
                host::set_request_header(DESTINATION, Some(&r.destination));
                for (k, v) in &r.headers {
                    host::set_request_header(k, Some(v));
                }
                self.shared.stats.pick(&r.primary);
                self.primary = Some(r.primary);
                self.debug = r.debug;
                Action::Continue
            }
            Outcome::Reply(reply) => {
                self.shared.stats.reply(reply.status);
                host::send_json_reply(reply.status, &reply.body);
                Action::Pause
            }
            Outcome::PassThrough => {
                self.shared.stats.fail_open();
                Action::Continue
            }
        }
    }

    fn decide_with_body(&mut self, body_size: usize) -> Action {
        let body = host::request_body(body_size).unwrap_or_default();
        let headers = host::request_headers();
        let path = headers
            .iter()
            .find(|(k, _)| k == ":path")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let start = host::now_us();
        let outcome =
            self.shared
                .route_request(&path, headers, &body, start / 1000, &mut self.state);
        self.shared
            .stats
            .scheduling_us(host::now_us().saturating_sub(start));
        self.apply(outcome)
    }

    /// Runs the response-body hooks for `chunk` with this response's status and serving endpoint.
    fn body_hooks(&mut self, chunk: &BodyChunk) {
        let info = ResponseInfo {
            status: self.status,
            served_endpoint: self.served.as_deref(),
        };
        self.shared
            .core
            .picker
            .response_body(&mut self.state, &info, chunk);
    }

    fn usage(&self) -> Option<Usage> {
        match &self.usage {
            UsageReader::Sse(p) => p.usage(),
            UsageReader::Json(buf) => usage_from_json(buf),
            UsageReader::None => None,
        }
    }
}

impl Drop for PickerHttp {
    /// A request reset or timed out before its body completed gives its reservation back.
    fn drop(&mut self) {
        self.release();
    }
}

impl Context for PickerHttp {}

impl HttpContext for PickerHttp {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        // Read before removing: a removal is a header mutation, and with ABI 0.2.1 every
        // mutation makes Envoy clear and recompute the route; a read does not.
        for h in CLIENT_FORBIDDEN {
            if host::request_header(h).is_some() {
                host::set_request_header(h, None);
            }
        }
        if end_of_stream {
            let outcome = self.shared.route_headers_only(host::now_ms());
            return self.apply(outcome);
        }
        let declared = host::request_header("content-length");
        if let Some(reply) = self.shared.core.check_declared_length(declared.as_deref()) {
            return self.apply(Outcome::Reply(reply));
        }
        // Bodies wait in this worker's memory until complete: reserve the declared size now, so
        // uploads that never finish cannot pin more than pool.maxBufferedBodyBytes.
        let declared: usize = declared.and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        if !self.reserve_up_to(declared) {
            let reply = self.shared.core.buffer_full();
            return self.apply(Outcome::Reply(reply));
        }
        // Hold the headers (and buffer the body) until the whole body is in.
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.decided {
            return Action::Continue;
        }
        if body_size > self.shared.core.pool.body_limit_bytes {
            let reply = self.shared.core.too_large();
            return self.apply(Outcome::Reply(reply));
        }
        if !self.reserve_up_to(body_size) {
            let reply = self.shared.core.buffer_full();
            return self.apply(Outcome::Reply(reply));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.decide_with_body(body_size)
    }

    fn on_http_request_trailers(&mut self, _: usize) -> Action {
        if self.decided {
            return Action::Continue;
        }
        self.decide_with_body(self.shared.core.pool.body_limit_bytes.saturating_add(1))
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let picker = &self.shared.core.picker;
        let (header_hooks, body_hooks) = (
            picker.has_response_header_hooks(),
            picker.has_response_body_hooks(),
        );
        // Each host read costs a round trip into the VM: read only what a hook or debug needs.
        if !(header_hooks || body_hooks || self.debug.is_some()) {
            return Action::Continue;
        }
        self.status = host::response_header(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if let Some(primary) = &self.primary {
            // The route sets include_attempt_count_in_response: only after a retry can another
            // endpoint have served, and only then is the (costlier) upstream.address lookup made.
            let attempts = host::response_header(ATTEMPT_COUNT)
                .and_then(|a| a.trim().parse::<u32>().ok())
                .unwrap_or(0);
            self.served = if attempts == 1 {
                Some(primary.clone())
            } else {
                host::property_string(&["upstream", "address"])
            };
        }
        if header_hooks {
            let mut out = Vec::new();
            let info = ResponseInfo {
                status: self.status,
                served_endpoint: self.served.as_deref(),
            };
            self.shared
                .core
                .picker
                .response_headers(&mut self.state, &info, &mut out);
            for (k, v) in &out {
                host::set_response_header(k, v);
            }
        }
        if let Some(d) = &self.debug {
            host::set_response_header(DEBUG, d);
            if let Some(s) = &self.served {
                host::set_response_header(SERVED, s);
            }
        }
        if body_hooks {
            let ct = host::response_header("content-type").unwrap_or_default();
            self.usage = if ct.starts_with("text/event-stream") {
                UsageReader::Sse(SseUsageParser::new())
            } else if ct.starts_with("application/json") {
                UsageReader::Json(Vec::new())
            } else {
                UsageReader::None
            };
            if end_of_stream {
                self.body_hooks(&BodyChunk {
                    first: true,
                    end_of_stream: true,
                    usage: None,
                });
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.shared.core.picker.has_response_body_hooks() {
            return Action::Continue;
        }
        match &mut self.usage {
            UsageReader::Sse(p) => {
                if let Some(b) = host::response_body(body_size) {
                    p.feed(&b);
                }
                if end_of_stream {
                    p.finish();
                }
            }
            UsageReader::Json(buf) => {
                if buf.len() + body_size <= MAX_JSON_RESPONSE_BYTES {
                    if let Some(b) = host::response_body(body_size) {
                        buf.extend_from_slice(&b);
                    }
                } else {
                    self.usage = UsageReader::None;
                }
            }
            UsageReader::None => {}
        }
        let chunk = BodyChunk {
            first: !self.body_seen,
            end_of_stream,
            usage: if end_of_stream { self.usage() } else { None },
        };
        self.body_seen = true;
        self.body_hooks(&chunk);
        // Never pause a response: SSE tokens must flow as they come.
        Action::Continue
    }
}
