//! The per-request context of the `endpoint-picker` proxy-wasm filter: an adapter that maps
//! proxy-wasm callbacks onto [`crate::flow::RequestFlow`] and offers the host calls through
//! [`WasmHost`]. Envoy only delivers the body to a filter that paused in the headers phase when
//! the plugin sets `allow_on_headers_stop_iteration: true`.
//!
//! Flow control in Wasm: each worker VM has its own queues (a VM cannot wake a stream of another
//! worker, and proxy-wasm shared queues would move every held request's wake-up through the
//! host), so priority and fairness hold per worker. A released request's context id goes on
//! this VM's ready list ([`CtxWake`]); the VM drains the list at the end of each of its
//! callbacks and on its tick, switching to that stream ([`drain_ready`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::flow::{BodyAction, HeadersAction, HttpHost, RequestFlow};
use crate::headers::HeaderBlock;
use crate::host;
use crate::picker::root::PickerShared;
use crate::picker::subset::{self, EndpointSubset};

/// The proxy-wasm host calls of one HTTP context (all through [`crate::host`], never panicking).
pub struct WasmHost;

impl HttpHost for WasmHost {
    fn request_header(&mut self, name: &str) -> Option<String> {
        host::request_header(name)
    }
    fn request_headers(&mut self) -> HeaderBlock {
        host::request_headers()
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> bool {
        host::set_request_header(name, value)
    }
    fn with_request_body(&mut self, size: usize, f: &mut dyn FnMut(&[u8])) {
        // proxy-wasm copies the buffered body into the VM.
        f(&host::request_body(size).unwrap_or_default());
    }
    fn replace_request_body(&mut self, size: usize, body: &[u8]) -> bool {
        host::replace_request_body(size, body)
    }
    fn response_header(&mut self, name: &str) -> Option<String> {
        host::response_header(name)
    }
    fn set_response_header(&mut self, name: &str, value: &str) -> bool {
        host::set_response_header(name, value)
    }
    fn with_response_body(&mut self, size: usize, f: &mut dyn FnMut(&[u8])) {
        if let Some(b) = host::response_body(size) {
            f(&b);
        }
    }
    fn endpoint_subset(&mut self) -> Option<EndpointSubset> {
        // The dynamic metadata's list, which Envoy hands proxy-wasm in the header-map format.
        let raw = host::property(&[
            "metadata",
            "filter_metadata",
            subset::NAMESPACE,
            subset::KEY,
        ])?;
        let entries = crate::pairs::decode_list(&raw)?;
        Some(EndpointSubset::from_host_list(
            entries.len(),
            entries.iter().map(|e| String::from_utf8_lossy(e)),
        ))
    }
    fn upstream_address(&mut self) -> Option<String> {
        host::property_string(&["upstream", "address"])
    }
    fn send_json_reply(&mut self, status: u32, body: &str, extra: &[(&str, &str)]) {
        host::send_json_reply(status, body, extra);
    }
    fn send_grpc_reply(
        &mut self,
        http_status: u32,
        grpc_status: u32,
        message: &str,
        extra: &[(&str, &str)],
    ) {
        host::send_grpc_reply(http_status, grpc_status, message, extra);
    }
    fn report_attribute(&mut self, namespace: &str, name: &str, value: f64) -> bool {
        // Proxy-wasm cannot write dynamic metadata: the filter state `wasm.<namespace>.<name>`
        // carries the number as decimal text instead.
        host::set_filter_state(
            &format!("{namespace}.{name}"),
            format!("{value}").as_bytes(),
        )
    }
    fn now_us(&mut self) -> u64 {
        host::now_us()
    }
    fn waker(&mut self) -> Option<Box<dyn crate::waiting::Wake>> {
        CURRENT
            .with(|c| c.get())
            .map(|id| Box::new(CtxWake(id)) as Box<dyn crate::waiting::Wake>)
    }
    fn continue_request(&mut self) {
        host::continue_request();
    }
}

thread_local! {
    /// The HTTP context whose callback is running (the waker names it).
    static CURRENT: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
    /// Context ids released by flow control, to resume.
    static READY: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// The flows of this VM's queued requests by context id.
    static WAITING: RefCell<HashMap<u32, Weak<RefCell<RequestFlow>>>> = RefCell::new(HashMap::new());
}

/// A queued request's wake-up in this VM: its context id goes on the ready list.
struct CtxWake(u32);

impl crate::waiting::Wake for CtxWake {
    fn wake(&self) {
        READY.with(|r| {
            if let Ok(mut r) = r.try_borrow_mut() {
                r.push(self.0);
            }
        });
    }
}

/// Resumes every released request of this VM: switches to its stream, schedules or answers it
/// (`RequestFlow::on_wake`), then switches back to `current` (the context whose callback is
/// running, if any).
pub fn drain_ready(shared: &PickerShared, current: Option<u32>) {
    let mut switched = false;
    loop {
        let next = READY.with(|r| r.try_borrow_mut().ok().and_then(|mut r| r.pop()));
        let Some(id) = next else { break };
        let flow = WAITING.with(|w| {
            w.try_borrow_mut()
                .ok()
                .and_then(|mut w| w.remove(&id))
                .and_then(|f| f.upgrade())
        });
        let Some(flow) = flow else { continue };
        if !host::set_effective_context(id) {
            continue;
        }
        switched = true;
        let prev = CURRENT.with(|c| c.replace(Some(id)));
        if let Ok(mut f) = flow.try_borrow_mut() {
            f.on_wake(&mut WasmHost, shared);
        }
        CURRENT.with(|c| c.set(prev));
    }
    if switched {
        if let Some(id) = current {
            host::set_effective_context(id);
        }
    }
}

/// See the module docs.
pub struct PickerHttp {
    shared: Rc<PickerShared>,
    flow: Rc<RefCell<RequestFlow>>,
    context_id: u32,
}

impl PickerHttp {
    /// A context for one request.
    pub fn new(shared: Rc<PickerShared>, context_id: u32) -> Self {
        PickerHttp {
            shared,
            flow: Rc::new(RefCell::new(RequestFlow::new())),
            context_id,
        }
    }

    /// Runs `f` on this request's flow as the current context, then registers the flow if it
    /// is queued and resumes whatever flow control released meanwhile.
    fn with_flow<R>(&mut self, f: impl FnOnce(&mut RequestFlow, &PickerShared) -> R) -> Option<R> {
        let prev = CURRENT.with(|c| c.replace(Some(self.context_id)));
        let out = match self.flow.try_borrow_mut() {
            Ok(mut flow) => {
                let r = f(&mut flow, &self.shared);
                if flow.wakeable() {
                    let weak = Rc::downgrade(&self.flow);
                    WAITING.with(|w| {
                        if let Ok(mut w) = w.try_borrow_mut() {
                            w.insert(self.context_id, weak);
                        }
                    });
                }
                Some(r)
            }
            Err(_) => None,
        };
        CURRENT.with(|c| c.set(prev));
        if self.shared.core.picker.flow_control().is_some() {
            drain_ready(&self.shared, Some(self.context_id));
        }
        out
    }
}

impl Drop for PickerHttp {
    /// A request reset or timed out before its body completed gives its reservation back; a
    /// queued one leaves the queue.
    fn drop(&mut self) {
        WAITING.with(|w| {
            if let Ok(mut w) = w.try_borrow_mut() {
                w.remove(&self.context_id);
            }
        });
        let now_ms = host::now_ms();
        if let Ok(mut flow) = self.flow.try_borrow_mut() {
            flow.finish(&*self.shared, now_ms);
        }
        if self.shared.core.picker.flow_control().is_some() {
            drain_ready(&self.shared, None);
        }
    }
}

impl Context for PickerHttp {}

fn headers_action(a: HeadersAction) -> Action {
    match a {
        HeadersAction::Continue => Action::Continue,
        HeadersAction::Stop => Action::Pause,
    }
}

fn body_action(a: BodyAction) -> Action {
    match a {
        BodyAction::Continue => Action::Continue,
        BodyAction::StopAndBuffer => Action::Pause,
    }
}

impl HttpContext for PickerHttp {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        self.with_flow(|f, p| headers_action(f.on_request_headers(&mut WasmHost, p, end_of_stream)))
            .unwrap_or(Action::Continue)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.with_flow(|f, p| {
            body_action(f.on_request_body(&mut WasmHost, p, body_size, end_of_stream))
        })
        .unwrap_or(Action::Continue)
    }

    fn on_http_request_trailers(&mut self, _: usize) -> Action {
        // The body size is not passed with trailers: read up to the limit (+1, so an
        // over-limit body is still detected).
        let size = self.shared.core.pool.body_limit_bytes.saturating_add(1);
        self.with_flow(|f, p| body_action(f.on_request_trailers(&mut WasmHost, p, size)))
            .unwrap_or(Action::Continue)
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        self.with_flow(|f, p| f.on_response_headers(&mut WasmHost, p, end_of_stream));
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.with_flow(|f, p| f.on_response_body(&mut WasmHost, p, body_size, end_of_stream));
        // Never pause a response: SSE tokens must flow as they come.
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _: usize) -> Action {
        self.with_flow(|f, p| f.on_response_trailers(&mut WasmHost, p));
        Action::Continue
    }
}
