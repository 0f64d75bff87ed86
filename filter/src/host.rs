//! The host calls the module uses, as functions that never panic on an expected error.
//!
//! proxy-wasm 0.2's trait helpers `unwrap()` host results and its string getters `unwrap()`
//! UTF-8 decoding, so one non-UTF-8 header value would abort the VM. Here every call goes
//! through `hostcalls` (which returns `Result`), byte values are decoded lossily, and failures
//! become `None`/`false` with a log line. Request headers are mutated only while the request
//! headers are held (in the headers callback, or later while the request is paused), because a
//! mutation after they continued makes the SDK panic (proxy-wasm-mechanics.md §3.1).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls as hc;
use proxy_wasm::types::{BufferType, Bytes, MapType, Status};

fn lossy(b: Bytes) -> String {
    match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Wall-clock time from the host.
pub fn now() -> SystemTime {
    hc::get_current_time().unwrap_or(UNIX_EPOCH)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    crate::time::to_ms(now())
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    crate::time::to_us(now())
}

/// The plugin configuration bytes (`PluginConfig.configuration`).
pub fn plugin_configuration() -> Option<Bytes> {
    hc::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

/// A property as bytes (e.g. `["plugin_root_id"]`, `["upstream", "address"]`).
pub fn property(path: Vec<&str>) -> Option<Bytes> {
    hc::get_property(path).ok().flatten()
}

/// A property as a (lossy) string.
pub fn property_string(path: Vec<&str>) -> Option<String> {
    property(path).map(lossy)
}

fn header(map: MapType, name: &str) -> Option<String> {
    hc::get_map_value_bytes(map, name).ok().flatten().map(lossy)
}

/// One request header (first value).
pub fn request_header(name: &str) -> Option<String> {
    header(MapType::HttpRequestHeaders, name)
}

/// All request headers, values decoded lossily.
pub fn request_headers() -> Vec<(String, String)> {
    hc::get_map_bytes(MapType::HttpRequestHeaders)
        .map(|m| m.into_iter().map(|(k, v)| (k, lossy(v))).collect())
        .unwrap_or_default()
}

/// Sets (replaces) or, with `None`, removes every value of a request header (removing an absent
/// header succeeds).
pub fn set_request_header(name: &str, value: Option<&str>) -> bool {
    match hc::set_map_value(MapType::HttpRequestHeaders, name, value) {
        Ok(()) => true,
        Err(s) => {
            log::warn!("could not set request header {name}: {s:?}");
            false
        }
    }
}

/// One response header (first value).
pub fn response_header(name: &str) -> Option<String> {
    header(MapType::HttpResponseHeaders, name)
}

/// Sets (replaces) a response header.
pub fn set_response_header(name: &str, value: &str) -> bool {
    hc::set_map_value(MapType::HttpResponseHeaders, name, Some(value)).is_ok()
}

/// `size` bytes of the buffered request body.
pub fn request_body(size: usize) -> Option<Bytes> {
    hc::get_buffer(BufferType::HttpRequestBody, 0, size)
        .ok()
        .flatten()
}

/// `size` bytes of the current response body chunk.
pub fn response_body(size: usize) -> Option<Bytes> {
    hc::get_buffer(BufferType::HttpResponseBody, 0, size)
        .ok()
        .flatten()
}

/// Sends a local reply with a JSON body. The caller must return `Action::Pause`.
pub fn send_json_reply(status: u32, body: &str) {
    let headers = vec![
        ("content-type", "application/json"),
        ("x-endpoint-picker", "local-reply"),
    ];
    if let Err(s) = hc::send_http_response(status, headers, Some(body.as_bytes())) {
        log::error!("could not send local reply {status}: {s:?}");
    }
}

/// Shared data and its CAS; `(None, None)` when absent.
pub fn shared_data(key: &str) -> (Option<Bytes>, Option<u32>) {
    hc::get_shared_data(key).unwrap_or((None, None))
}

/// Writes shared data unconditionally.
pub fn set_shared_data(key: &str, value: &[u8]) -> bool {
    match hc::set_shared_data(key, Some(value), None) {
        Ok(()) => true,
        Err(s) => {
            log::warn!("could not write shared data {key}: {s:?}");
            false
        }
    }
}

/// Writes shared data only if its CAS is still `cas` (`None`: only if absent). Returns whether
/// the write won.
pub fn set_shared_data_cas(key: &str, value: &[u8], cas: Option<u32>) -> bool {
    // A CAS of 0 means "unconditional" to the host; an absent key has no CAS, so use 0 there.
    hc::set_shared_data(key, Some(value), Some(cas.unwrap_or(0))).is_ok()
}

/// Dispatches an HTTP callout to `cluster`.
///
/// # Errors
/// The host's status (unknown cluster, missing pseudo-headers).
pub fn dispatch_http_call(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    timeout: Duration,
) -> Result<u32, Status> {
    hc::dispatch_http_call(cluster, headers, None, vec![], timeout)
}

/// `:status` of the callout response being delivered.
pub fn call_response_status() -> Option<u16> {
    header(MapType::HttpCallResponseHeaders, ":status").and_then(|s| s.trim().parse().ok())
}

/// The callout response body being delivered.
pub fn call_response_body(size: usize) -> Option<Bytes> {
    hc::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
}

/// Sets the tick period of the calling root context.
pub fn set_tick_period(period: Duration) {
    if let Err(s) = hc::set_tick_period(period) {
        log::error!("could not set tick period: {s:?}");
    }
}
