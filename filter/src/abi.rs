//! The proxy-wasm ABI 0.2.1 host functions this module calls, declared here so that every
//! status the host returns is an ordinary value.
//!
//! Why not `proxy_wasm::hostcalls`: each of its functions `panic!`s on any status other than the
//! few it expects (mostly `Ok` and `NotFound`), and a panic aborts the Wasm VM. Envoy returns
//! `BadArgument` (2) from `proxy_get_header_map_value` for the callout-response header map when a
//! `/metrics` callout ended in a stream reset (a truncated body, a cut chunk, a connection closed
//! after the headers): the map does not exist then. Through the SDK that one reset killed the
//! scraper VM for good (issue 17). Here the status comes back as `Err(code)`, and the callers
//! treat it as a failed call.
//!
//! The declarations return `u32`, not an enum, so an unknown status is a value too (an enum
//! with a value outside its variants would be undefined behaviour). Memory the host returns was
//! allocated through the SDK's exported `proxy_on_memory_allocate` (a boxed `[u8]` of exactly the
//! returned size), so it is taken back as a `Vec` of that length and capacity.
//!
//! Status codes of ABI 0.2.1: 0 Ok, 1 NotFound, 2 BadArgument, 3 SerializationFailure,
//! 4 ParseFailure, 7 Empty, 8 CasMismatch, 10 InternalFailure.

use core::ptr::null_mut;

use crate::pairs::{decode_pairs, encode_pairs, Pairs};

/// `Ok`.
pub const OK: u32 = 0;
/// `NotFound`: the key, header or property does not exist.
pub const NOT_FOUND: u32 = 1;
/// `CasMismatch`: a shared-data write lost against another writer.
pub const CAS_MISMATCH: u32 = 8;

/// Header map of the request being filtered.
pub const MAP_REQUEST_HEADERS: u32 = 0;
/// Header map of the response being filtered.
pub const MAP_RESPONSE_HEADERS: u32 = 2;
/// Header map of a finished HTTP callout's response (absent after a stream reset).
pub const MAP_CALL_RESPONSE_HEADERS: u32 = 6;

/// The buffered request body.
pub const BUFFER_REQUEST_BODY: u32 = 0;
/// The current response body chunk.
pub const BUFFER_RESPONSE_BODY: u32 = 1;
/// A finished HTTP callout's response body.
pub const BUFFER_CALL_RESPONSE_BODY: u32 = 4;
/// `PluginConfig.configuration`.
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;

/// Metric kinds of `proxy_define_metric`.
pub const METRIC_COUNTER: u32 = 0;
/// A gauge.
pub const METRIC_GAUGE: u32 = 1;
/// A histogram.
pub const METRIC_HISTOGRAM: u32 = 2;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

/// A host status other than `Ok` (see the module docs for the codes).
pub type Status = u32;

fn status(code: u32) -> Result<(), Status> {
    if code == OK {
        Ok(())
    } else {
        Err(code)
    }
}

/// Takes ownership of a host-returned buffer (`None` for a null pointer).
///
/// # Safety
/// `data` is null or was returned by the host for `size` bytes, allocated through the module's
/// `proxy_on_memory_allocate(size)`, and is not used afterwards.
unsafe fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        // SAFETY: per the contract above: a live allocation of exactly `size` bytes from the
        // global allocator (the SDK allocates a boxed slice of `size`), ownership handed to us.
        Some(unsafe { Vec::from_raw_parts(data, size, size) })
    }
}

/// A value getter's result: `Ok(None)` for `NotFound` (absent), `Err` for any other failure.
fn value(code: u32, data: *mut u8, size: usize) -> Result<Option<Vec<u8>>, Status> {
    // SAFETY: the host filled `data`/`size` (or left them null/0) for this call.
    let bytes = unsafe { take(data, size) };
    match code {
        OK => Ok(bytes),
        NOT_FOUND => Ok(None),
        other => Err(other),
    }
}

/// Wall-clock time, nanoseconds since the Unix epoch.
///
/// # Errors
/// The host's status.
pub fn current_time_ns() -> Result<u64, Status> {
    let mut t = 0u64;
    // SAFETY: one out-pointer to a live u64.
    status(unsafe { proxy_get_current_time_nanoseconds(&mut t) })?;
    Ok(t)
}

/// The host's log level for this plugin: 0 trace, 1 debug, 2 info, 3 warn, 4 error,
/// 5 critical (proxy-wasm ABI 0.2.1).
///
/// # Errors
/// The host's status.
pub fn log_level() -> Result<u32, Status> {
    let mut l = 0u32;
    // SAFETY: one out-pointer to a live u32.
    status(unsafe { proxy_get_log_level(&mut l) })?;
    Ok(l)
}

/// Arms (or with 0 disarms) the calling root context's tick timer, milliseconds.
///
/// # Errors
/// The host's status.
pub fn set_tick_period_ms(period_ms: u32) -> Result<(), Status> {
    // SAFETY: plain value argument.
    status(unsafe { proxy_set_tick_period_milliseconds(period_ms) })
}

/// `max_size` bytes from `start` of buffer `buffer_type` (`Ok(None)`: no such buffer or empty).
///
/// # Errors
/// The host's status (e.g. `BadArgument` when the buffer does not exist in this callback).
pub fn buffer(buffer_type: u32, start: usize, max_size: usize) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: out-pointers to live locals; the host allocates through proxy_on_memory_allocate.
    let code =
        unsafe { proxy_get_buffer_bytes(buffer_type, start, max_size, &mut data, &mut size) };
    value(code, data, size)
}

/// Replaces bytes `start..start + size` of buffer `buffer_type` with `data` (from 0 with a
/// `size` at least the buffer's length: the whole buffer).
///
/// # Errors
/// The host's status (e.g. `BadArgument` when the buffer does not exist in this callback).
pub fn set_buffer(buffer_type: u32, start: usize, size: usize, data: &[u8]) -> Result<(), Status> {
    // SAFETY: `data` is a live slice for the call; the host copies it.
    status(unsafe { proxy_set_buffer_bytes(buffer_type, start, size, data.as_ptr(), data.len()) })
}

/// Every pair of header map `map_type`, names and values as bytes.
///
/// # Errors
/// The host's status; a malformed serialisation gives `Ok` with the pairs read before it.
pub fn header_pairs(map_type: u32) -> Result<Pairs, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: as in `buffer`.
    let code = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    Ok(value(code, data, size)?
        .map(|b| decode_pairs(&b))
        .unwrap_or_default())
}

/// The first value of header `name` in map `map_type` (`Ok(None)`: absent).
///
/// # Errors
/// The host's status (`BadArgument` when the map does not exist, e.g. after a callout reset).
pub fn header(map_type: u32, name: &str) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: `name` is live for the call; out-pointers as in `buffer`.
    let code = unsafe {
        proxy_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    value(code, data, size)
}

/// Replaces every value of header `name` with `value`, or removes it with `None`.
///
/// # Errors
/// The host's status (`BadArgument` once the headers are no longer held by the filter).
pub fn set_header(map_type: u32, name: &str, value: Option<&[u8]>) -> Result<(), Status> {
    // SAFETY: pointers to live slices for the duration of the call.
    status(unsafe {
        match value {
            Some(v) => proxy_replace_header_map_value(
                map_type,
                name.as_ptr(),
                name.len(),
                v.as_ptr(),
                v.len(),
            ),
            None => proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()),
        }
    })
}

/// A property by path (e.g. `["plugin_root_id"]`), `Ok(None)` when absent.
///
/// # Errors
/// The host's status.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    // Path segments joined by NUL, as the ABI wants them.
    let mut p = Vec::new();
    for (i, s) in path.iter().enumerate() {
        if i > 0 {
            p.push(0);
        }
        p.extend_from_slice(s.as_bytes());
    }
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: `p` is live for the call; out-pointers as in `buffer`.
    let code = unsafe { proxy_get_property(p.as_ptr(), p.len(), &mut data, &mut size) };
    value(code, data, size)
}

/// Sets the property `path` (one segment) to `value`. Envoy stores it as the request's filter
/// state `wasm.<path>` (bytes), readable by access logs as `%FILTER_STATE(wasm.<path>:PLAIN)%`.
///
/// # Errors
/// The host's status (e.g. `NotFound` outside a request).
pub fn set_property(path: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: pointers to live slices for the duration of the call.
    status(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// Shared data under `key` with its CAS; `Ok((None, None))` when absent.
///
/// # Errors
/// The host's status.
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: `key` is live for the call; out-pointers to live locals.
    let code =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match value(code, data, size)? {
        None if code == NOT_FOUND => Ok((None, None)),
        bytes => Ok((bytes.or_else(|| Some(Vec::new())), Some(cas))),
    }
}

/// Writes shared data; `cas` 0 writes unconditionally, otherwise only over that CAS.
///
/// # Errors
/// The host's status ([`CAS_MISMATCH`] when another write came first).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    // SAFETY: pointers to live slices for the duration of the call.
    status(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

/// Makes `context_id` the context later host calls act on (a paused stream resumed from
/// another context's callback).
///
/// # Errors
/// The host's status (`NotFound` for a context that is gone).
pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    // SAFETY: no pointers.
    status(unsafe { proxy_set_effective_context(context_id) })
}

/// Resumes the effective context's paused request (`proxy_continue_stream(HttpRequest)`).
///
/// # Errors
/// The host's status.
pub fn continue_request() -> Result<(), Status> {
    // SAFETY: no pointers; stream type 0 is the HTTP request.
    status(unsafe { proxy_continue_stream(0) })
}

/// Sends a local reply (status, body, headers) instead of forwarding the stream. `grpc_status`
/// (-1 for none) is the gRPC status Envoy sends when the request is gRPC: it then answers
/// trailers-only with that `grpc-status` and the body as `grpc-message`.
///
/// # Errors
/// The host's status.
pub fn send_local_response(
    status_code: u32,
    body: &[u8],
    headers: &[(&str, &[u8])],
    grpc_status: i32,
) -> Result<(), Status> {
    let h = encode_pairs(headers);
    let details = b"endpoint_picker";
    // SAFETY: pointers to live slices for the duration of the call.
    status(unsafe {
        proxy_send_local_response(
            status_code,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            h.as_ptr(),
            h.len(),
            grpc_status,
        )
    })
}

/// Defines a metric of `kind` ([`METRIC_COUNTER`], …) named `name`; returns its id.
///
/// # Errors
/// The host's status.
pub fn define_metric(kind: u32, name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: `name` is live for the call; one out-pointer.
    status(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

/// Adds `offset` to a counter or gauge.
///
/// # Errors
/// The host's status.
pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: plain value arguments.
    status(unsafe { proxy_increment_metric(id, offset) })
}

/// Sets a gauge or records a histogram value.
///
/// # Errors
/// The host's status.
pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    // SAFETY: plain value arguments.
    status(unsafe { proxy_record_metric(id, value) })
}
