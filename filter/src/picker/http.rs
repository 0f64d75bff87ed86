//! The per-request context of the `endpoint-picker` proxy-wasm filter: an adapter that maps
//! proxy-wasm callbacks onto [`crate::flow::RequestFlow`] and offers the host calls through
//! [`WasmHost`]. Envoy only delivers the body to a filter that paused in the headers phase when
//! the plugin sets `allow_on_headers_stop_iteration: true`.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::flow::{BodyAction, HeadersAction, HttpHost, RequestFlow};
use crate::host;
use crate::picker::root::PickerShared;

/// The proxy-wasm host calls of one HTTP context (all through [`crate::host`], never panicking).
pub struct WasmHost;

impl HttpHost for WasmHost {
    fn request_header(&mut self, name: &str) -> Option<String> {
        host::request_header(name)
    }
    fn request_headers(&mut self) -> Vec<(String, String)> {
        host::request_headers()
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> bool {
        host::set_request_header(name, value)
    }
    fn with_request_body(&mut self, size: usize, f: &mut dyn FnMut(&[u8])) {
        // proxy-wasm copies the buffered body into the VM.
        f(&host::request_body(size).unwrap_or_default());
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
    fn upstream_address(&mut self) -> Option<String> {
        host::property_string(&["upstream", "address"])
    }
    fn send_json_reply(&mut self, status: u32, body: &str) {
        host::send_json_reply(status, body);
    }
    fn now_us(&mut self) -> u64 {
        host::now_us()
    }
}

/// See the module docs.
pub struct PickerHttp {
    shared: Rc<PickerShared>,
    flow: RequestFlow,
}

impl PickerHttp {
    /// A context for one request.
    pub fn new(shared: Rc<PickerShared>, _context_id: u32) -> Self {
        PickerHttp {
            shared,
            flow: RequestFlow::new(),
        }
    }
}

impl Drop for PickerHttp {
    /// A request reset or timed out before its body completed gives its reservation back.
    fn drop(&mut self) {
        self.flow.finish(&*self.shared);
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
        headers_action(
            self.flow
                .on_request_headers(&mut WasmHost, &*self.shared, end_of_stream),
        )
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        body_action(self.flow.on_request_body(
            &mut WasmHost,
            &*self.shared,
            body_size,
            end_of_stream,
        ))
    }

    fn on_http_request_trailers(&mut self, _: usize) -> Action {
        // The body size is not passed with trailers: read up to the limit (+1, so an
        // over-limit body is still detected).
        let size = self.shared.core.pool.body_limit_bytes.saturating_add(1);
        body_action(
            self.flow
                .on_request_trailers(&mut WasmHost, &*self.shared, size),
        )
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        self.flow
            .on_response_headers(&mut WasmHost, &*self.shared, end_of_stream);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.flow
            .on_response_body(&mut WasmHost, &*self.shared, body_size, end_of_stream);
        // Never pause a response: SSE tokens must flow as they come.
        Action::Continue
    }
}
