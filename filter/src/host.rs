//! The host calls the module uses, as functions that never panic.
//!
//! Every call but one ([`dispatch_http_call`]) goes through [`crate::abi`] (our own
//! declarations of the ABI functions), not through `proxy_wasm::hostcalls`, whose functions panic on any status they do not expect and
//! so abort the VM (issue 17: a callout that ended in a reset made the header read return
//! `BadArgument` and killed the scraper). Byte values are decoded lossily (the SDK's string
//! getters unwrap UTF-8, so one non-UTF-8 header value would abort the VM), and failures become
//! `None`/`false`/`Err` with a log line where an operator should see them. Request headers are
//! mutated only while the request headers are held (in the headers callback, or later while the
//! request is paused): after they continued, Envoy answers `BadArgument`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::abi;

fn lossy(b: Vec<u8>) -> String {
    match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Wall-clock time from the host (the epoch if the host refuses).
pub fn now() -> SystemTime {
    abi::current_time_ns()
        .map(|ns| UNIX_EPOCH + Duration::from_nanos(ns))
        .unwrap_or(UNIX_EPOCH)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    crate::time::to_ms(now())
}

/// Nanoseconds since the Unix epoch (0 if the host refuses): the clock the Wasm build times
/// short stretches of its own work with (proxy-wasm offers no monotonic clock to a VM).
pub fn clock_ns() -> u64 {
    abi::current_time_ns().unwrap_or(0)
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    crate::time::to_us(now())
}

/// The plugin configuration bytes (`PluginConfig.configuration`).
pub fn plugin_configuration() -> Option<Vec<u8>> {
    abi::buffer(abi::BUFFER_PLUGIN_CONFIGURATION, 0, usize::MAX)
        .ok()
        .flatten()
}

/// A property as bytes (e.g. `["plugin_root_id"]`, `["upstream", "address"]`).
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    abi::property(path).ok().flatten()
}

/// Sets the request's filter state `wasm.<key>` (bytes); `false` when the host refused.
pub fn set_filter_state(key: &str, value: &[u8]) -> bool {
    match abi::set_property(key, value) {
        Ok(()) => true,
        Err(code) => {
            log::debug!("set_property {key}: status {code}");
            false
        }
    }
}

/// A property as a (lossy) string.
pub fn property_string(path: &[&str]) -> Option<String> {
    property(path).map(lossy)
}

fn header(map: u32, name: &str) -> Option<String> {
    abi::header(map, name).ok().flatten().map(lossy)
}

/// One request header (first value).
pub fn request_header(name: &str) -> Option<String> {
    header(abi::MAP_REQUEST_HEADERS, name)
}

/// All request headers in one buffer, names and values decoded lossily.
pub fn request_headers() -> crate::headers::HeaderBlock {
    abi::header_pairs(abi::MAP_REQUEST_HEADERS)
        .map(|m| m.iter().collect())
        .unwrap_or_default()
}

/// Sets (replaces) or, with `None`, removes every value of a request header (removing an absent
/// header succeeds).
pub fn set_request_header(name: &str, value: Option<&str>) -> bool {
    match abi::set_header(abi::MAP_REQUEST_HEADERS, name, value.map(str::as_bytes)) {
        Ok(()) => true,
        Err(s) => {
            log::warn!("could not set request header {name}: status {s}");
            false
        }
    }
}

/// One response header (first value).
pub fn response_header(name: &str) -> Option<String> {
    header(abi::MAP_RESPONSE_HEADERS, name)
}

/// Sets (replaces) a response header.
pub fn set_response_header(name: &str, value: &str) -> bool {
    abi::set_header(abi::MAP_RESPONSE_HEADERS, name, Some(value.as_bytes())).is_ok()
}

/// `size` bytes of the buffered request body.
pub fn request_body(size: usize) -> Option<Vec<u8>> {
    abi::buffer(abi::BUFFER_REQUEST_BODY, 0, size)
        .ok()
        .flatten()
}

/// Replaces the whole buffered request body (`size` bytes, at least) with `body`.
pub fn replace_request_body(size: usize, body: &[u8]) -> bool {
    match abi::set_buffer(abi::BUFFER_REQUEST_BODY, 0, size, body) {
        Ok(()) => true,
        Err(s) => {
            log::warn!("could not replace the request body: status {s}");
            false
        }
    }
}

/// `size` bytes of the current response body chunk.
pub fn response_body(size: usize) -> Option<Vec<u8>> {
    abi::buffer(abi::BUFFER_RESPONSE_BODY, 0, size)
        .ok()
        .flatten()
}

/// Sends a local reply with a JSON body and the `extra` headers. The caller must return
/// `Action::Pause`.
pub fn send_json_reply(status: u32, body: &str, extra: &[(&str, &str)]) {
    let mut headers: Vec<(&str, &[u8])> = vec![
        ("content-type", b"application/json"),
        ("x-endpoint-picker", b"local-reply"),
    ];
    for (k, v) in extra {
        headers.push((k, v.as_bytes()));
    }
    if let Err(s) = abi::send_local_response(status, body.as_bytes(), &headers, -1) {
        log::error!("could not send local reply {status}: status {s}");
    }
}

/// Answers a gRPC request with gRPC status `grpc_status` and `message` (Envoy turns a local
/// reply to a gRPC request into a trailers-only gRPC response; `http_status` is what it would
/// be otherwise). No `content-type` of ours: Envoy sets `application/grpc`.
pub fn send_grpc_reply(http_status: u32, grpc_status: u32, message: &str, extra: &[(&str, &str)]) {
    let mut headers: Vec<(&str, &[u8])> = vec![("x-endpoint-picker", b"local-reply")];
    for (k, v) in extra {
        headers.push((k, v.as_bytes()));
    }
    let code = i32::try_from(grpc_status).unwrap_or(2);
    if let Err(s) = abi::send_local_response(http_status, message.as_bytes(), &headers, code) {
        log::error!("could not send gRPC local reply {grpc_status}: status {s}");
    }
}

/// Shared data and its CAS; `(None, None)` when absent or unreadable.
pub fn shared_data(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    abi::shared_data(key).unwrap_or_else(|s| {
        log::warn!("could not read shared data {key}: status {s}");
        (None, None)
    })
}

/// Writes shared data unconditionally.
pub fn set_shared_data(key: &str, value: &[u8]) -> bool {
    match abi::set_shared_data(key, value, 0) {
        Ok(()) => true,
        Err(s) => {
            log::warn!("could not write shared data {key}: status {s}");
            false
        }
    }
}

/// Writes shared data only if its CAS is still `cas` (`None`: only if absent). Returns whether
/// the write won.
pub fn set_shared_data_cas(key: &str, value: &[u8], cas: Option<u32>) -> bool {
    // A CAS of 0 means "unconditional" to the host; an absent key has no CAS, so use 0 there.
    abi::set_shared_data(key, value, cas.unwrap_or(0)).is_ok()
}

/// Dispatches an HTTP callout to `cluster`.
///
/// The one call that still goes through the SDK: the SDK must record the token, or it aborts
/// the VM when the response arrives ("invalid token_id"). Its wrapper panics only on a status
/// other than Ok, `BadArgument` and `InternalFailure`, and Envoy's `httpCall` returns no other.
///
/// # Errors
/// The host's status (unknown cluster, missing pseudo-headers, Envoy could not start it).
pub fn dispatch_http_call(
    cluster: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<u32, u32> {
    proxy_wasm::hostcalls::dispatch_http_call(cluster, headers.to_vec(), None, vec![], timeout)
        .map_err(|s| s as u32)
}

/// `:status` of the callout response being delivered; `None` when the callout has no response
/// headers (a stream reset: connection closed mid-body, cut chunk, over the buffer limit) or no
/// parsable status.
pub fn call_response_status() -> Option<u16> {
    header(abi::MAP_CALL_RESPONSE_HEADERS, ":status").and_then(|s| s.trim().parse().ok())
}

/// The callout response body being delivered.
pub fn call_response_body(size: usize) -> Option<Vec<u8>> {
    abi::buffer(abi::BUFFER_CALL_RESPONSE_BODY, 0, size)
        .ok()
        .flatten()
}

/// Sets the tick period of the calling root context.
pub fn set_tick_period(period: Duration) {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    if let Err(s) = abi::set_tick_period_ms(ms) {
        log::error!("could not set tick period: status {s}");
    }
}

/// Makes `context_id` the stream later host calls act on; `false` when it is gone.
pub fn set_effective_context(context_id: u32) -> bool {
    abi::set_effective_context(context_id).is_ok()
}

/// Resumes the effective stream's paused request.
pub fn continue_request() {
    if let Err(s) = abi::continue_request() {
        log::warn!("could not resume a request released by flow control: status {s}");
    }
}
