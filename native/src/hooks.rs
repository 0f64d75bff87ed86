//! Every hook Envoy calls in this module (`envoy_dynamic_module_on_*`), as `extern "C"`
//! functions. Each one runs its body inside [`guard`]: a panic is caught, logged and turned into
//! the safest answer for that hook (continue, or no object), so it never unwinds into Envoy.
//! Envoy resolves every HTTP-filter hook when it loads a filter configuration and refuses the
//! configuration if one is missing, so hooks for features this module does not use (HTTP streams,
//! watermarks) are here too and do nothing.

#![allow(clippy::missing_safety_doc)]
// Each hook is named for the Envoy event it handles; the module docs say what they share.
#![allow(missing_docs)]

use core::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use endpoint_picker_filter::flow::{BodyAction, HeadersAction, RequestFlow};

use crate::abi::{self, ConstPtr, EnvoyBuffer, EnvoyHttpHeader, Ptr};
use crate::filter::{FilterConfig, NativeHost, Stream};
use crate::lb::Balancer;
use crate::now_ms;
use crate::scraper::Scraper;

/// Runs `f`; on a panic logs it and returns `fallback`.
fn guard<R>(hook: &str, fallback: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log::error!("endpoint picker: panic in {hook}; answered safely");
        fallback
    })
}

/// The string of an Envoy buffer (lossy).
unsafe fn text(b: EnvoyBuffer) -> String {
    // SAFETY: Envoy's buffer of the current hook.
    String::from_utf8_lossy(unsafe { abi::bytes(b) }).into_owned()
}

// ------------------------------------------------------------------ program

/// The body of `envoy_dynamic_module_on_program_init`: installs `registry` (the in-tree
/// plugins plus whatever the module adds), Envoy's log as the `log` sink, and returns the ABI
/// version. Each loadable module exports it through [`crate::module!`].
pub fn program_init(registry: impl FnOnce() -> scheduler_core::Registry) -> *const c_char {
    guard("program_init", core::ptr::null(), || {
        crate::install_registry(registry());
        crate::init();
        abi::ABI_VERSION.as_ptr()
    })
}

// ------------------------------------------------------------------ HTTP filter

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: Ptr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConstPtr {
    guard("http_filter_config_new", core::ptr::null(), || {
        // SAFETY: Envoy's buffers of this hook.
        let (name, json) = unsafe { (text(name), text(config)) };
        match FilterConfig::new(config_envoy, &json, crate::registry()) {
            Ok(c) => {
                let c = Arc::new(c);
                crate::filter::register(&c);
                Box::into_raw(Box::new(c)) as ConstPtr
            }
            Err(e) => {
                log::error!("endpoint picker ({name}): invalid configuration: {e}");
                core::ptr::null()
            }
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: ConstPtr) {
    guard("http_filter_config_destroy", (), || {
        if !config.is_null() {
            // SAFETY: made by config_new with Box<Arc<FilterConfig>>, destroyed once.
            let config = unsafe { Box::from_raw(config as *mut Arc<FilterConfig>) };
            // The main thread's tick may still hold the value; it must not reach Envoy's
            // side, which is freed when this hook returns.
            config.retire(now_ms());
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> ConstPtr {
    // No per-route configuration: returning null refuses one.
    core::ptr::null()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(_c: ConstPtr) {}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ConstPtr,
    _filter_envoy: Ptr,
) -> ConstPtr {
    guard("http_filter_new", core::ptr::null(), || {
        if config.is_null() {
            return core::ptr::null();
        }
        // SAFETY: made by config_new; Envoy keeps the configuration alive while it has filters.
        let config = unsafe { &*(config as *const Arc<FilterConfig>) }.clone();
        Box::into_raw(Box::new(Stream {
            config,
            flow: RequestFlow::new(),
        })) as ConstPtr
    })
}

/// The stream behind a filter pointer.
unsafe fn stream<'a>(p: ConstPtr) -> Option<&'a mut Stream> {
    // SAFETY: made by filter_new, used only on the stream's worker.
    (!p.is_null()).then(|| unsafe { &mut *(p as *mut Stream) })
}

fn headers_status(a: HeadersAction) -> u32 {
    match a {
        HeadersAction::Continue => abi::HEADERS_CONTINUE,
        HeadersAction::Stop => abi::HEADERS_STOP_ITERATION,
    }
}

fn body_status(a: BodyAction) -> u32 {
    match a {
        BodyAction::Continue => abi::BODY_CONTINUE,
        BodyAction::StopAndBuffer => abi::BODY_STOP_ITERATION_AND_BUFFER,
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: Ptr,
    filter: ConstPtr,
    end_of_stream: bool,
) -> u32 {
    guard("request_headers", abi::HEADERS_CONTINUE, || {
        // SAFETY: our stream pointer.
        let Some(s) = (unsafe { stream(filter) }) else {
            return abi::HEADERS_CONTINUE;
        };
        let mut host = NativeHost {
            filter: filter_envoy,
            in_body_hook: false,
        };
        headers_status(
            s.flow
                .on_request_headers(&mut host, &*s.config, end_of_stream),
        )
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy: Ptr,
    filter: ConstPtr,
    end_of_stream: bool,
) -> u32 {
    guard("request_body", abi::BODY_CONTINUE, || {
        // SAFETY: our stream pointer.
        let Some(s) = (unsafe { stream(filter) }) else {
            return abi::BODY_CONTINUE;
        };
        let mut host = NativeHost {
            filter: filter_envoy,
            in_body_hook: true,
        };
        // What is buffered so far plus this hook's frame (not yet in the buffer).
        let size =
            host.body_size(abi::BUFFERED_REQUEST_BODY) + host.body_size(abi::RECEIVED_REQUEST_BODY);
        body_status(
            s.flow
                .on_request_body(&mut host, &*s.config, size, end_of_stream),
        )
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter_envoy: Ptr,
    filter: ConstPtr,
) -> u32 {
    guard("request_trailers", abi::TRAILERS_CONTINUE, || {
        // SAFETY: our stream pointer.
        let Some(s) = (unsafe { stream(filter) }) else {
            return abi::TRAILERS_CONTINUE;
        };
        let mut host = NativeHost {
            filter: filter_envoy,
            in_body_hook: false,
        };
        let size = host.body_size(abi::BUFFERED_REQUEST_BODY);
        // Trailers cannot stop-and-buffer: a local reply has been sent in that case anyway,
        // unless flow control queued the request, which then waits here.
        let _ = s.flow.on_request_trailers(&mut host, &*s.config, size);
        if s.flow.queued() {
            abi::TRAILERS_STOP_ITERATION
        } else {
            abi::TRAILERS_CONTINUE
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: Ptr,
    filter: ConstPtr,
    end_of_stream: bool,
) -> u32 {
    guard("response_headers", abi::HEADERS_CONTINUE, || {
        // SAFETY: our stream pointer.
        if let Some(s) = unsafe { stream(filter) } {
            let mut host = NativeHost {
                filter: filter_envoy,
                in_body_hook: false,
            };
            s.flow
                .on_response_headers(&mut host, &*s.config, end_of_stream);
        }
        abi::HEADERS_CONTINUE
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter_envoy: Ptr,
    filter: ConstPtr,
    end_of_stream: bool,
) -> u32 {
    guard("response_body", abi::BODY_CONTINUE, || {
        // SAFETY: our stream pointer.
        if let Some(s) = unsafe { stream(filter) } {
            let mut host = NativeHost {
                filter: filter_envoy,
                in_body_hook: false,
            };
            let size = host.body_size(abi::RECEIVED_RESPONSE_BODY);
            s.flow
                .on_response_body(&mut host, &*s.config, size, end_of_stream);
        }
        // Never hold a response: SSE tokens must flow as they come.
        abi::BODY_CONTINUE
    })
}

/// The response trailers: the body is complete (gRPC responses end with trailers).
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    filter_envoy: Ptr,
    filter: ConstPtr,
) -> u32 {
    guard("response_trailers", abi::TRAILERS_CONTINUE, || {
        // SAFETY: our stream pointer.
        if let Some(s) = unsafe { stream(filter) } {
            let mut host = NativeHost {
                filter: filter_envoy,
                in_body_hook: false,
            };
            s.flow.on_response_trailers(&mut host, &*s.config);
        }
        abi::TRAILERS_CONTINUE
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy: Ptr,
    filter: ConstPtr,
) {
    guard("stream_complete", (), || {
        // SAFETY: our stream pointer.
        if let Some(s) = unsafe { stream(filter) } {
            s.flow.finish(&*s.config, now_ms());
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: ConstPtr) {
    guard("http_filter_destroy", (), || {
        if !filter.is_null() {
            // SAFETY: made by filter_new, destroyed once. Dropping the flow releases the body
            // budget and the request's in-flight counts (also after a reset).
            let mut s = unsafe { Box::from_raw(filter as *mut Stream) };
            // stream_complete has usually finished the flow already: then no clock read and
            // no second pass.
            if !s.flow.finished() {
                s.flow.finish(&*s.config, now_ms());
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy: Ptr,
    _filter: ConstPtr,
    _callout_id: u64,
    _result: u32,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _body: *const EnvoyBuffer,
    _body_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: Ptr,
    _filter: ConstPtr,
    _stream_id: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: Ptr,
    _filter: ConstPtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: Ptr,
    _filter: ConstPtr,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy: Ptr,
    _filter: ConstPtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: Ptr,
    _filter: ConstPtr,
    _stream_id: u64,
    _reason: u32,
) {
}

/// Flow control released (or gave up on) this paused request: `on_wake` schedules it and
/// continues it, or answers it.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy: Ptr,
    filter: ConstPtr,
    event_id: u64,
) {
    guard("scheduled", (), || {
        if event_id != crate::filter::WAKE_EVENT {
            return;
        }
        // SAFETY: our stream pointer (Envoy posts the event only while the filter lives).
        if let Some(s) = unsafe { stream(filter) } {
            let mut host = NativeHost {
                filter: filter_envoy,
                in_body_hook: false,
            };
            s.flow.on_wake(&mut host, &*s.config);
        }
    })
}

/// The filter configuration of a hook.
unsafe fn filter_config<'a>(p: ConstPtr) -> Option<&'a Arc<FilterConfig>> {
    // SAFETY: made by config_new as Box<Arc<FilterConfig>>; Envoy calls configuration hooks only
    // while the configuration lives.
    (!p.is_null()).then(|| unsafe { &*(p as *const Arc<FilterConfig>) })
}

/// Filter-only mode: the ticker posted a scrape tick to the main thread.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy: Ptr,
    config: ConstPtr,
    event_id: u64,
) {
    guard("http_filter_config_scheduled", (), || {
        if event_id != crate::scraper::TICK_EVENT {
            return;
        }
        // SAFETY: our configuration pointer.
        if let Some(c) = unsafe { filter_config(config) } {
            c.scrape_tick();
        }
    })
}

/// Filter-only mode: a scrape callout of this configuration finished.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: Ptr,
    config: ConstPtr,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body: *const EnvoyBuffer,
    body_size: usize,
) {
    guard("http_filter_config_http_callout_done", (), || {
        // SAFETY: our configuration pointer.
        if let Some(s) = unsafe { filter_config(config) }.and_then(|c| c.scraper()) {
            // SAFETY: Envoy's arrays of this hook.
            unsafe { s.on_callout(callout_id, result, headers, headers_size, body, body_size) };
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _config_envoy: Ptr,
    _config: ConstPtr,
    _stream_id: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _config_envoy: Ptr,
    _config: ConstPtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _config_envoy: Ptr,
    _config: ConstPtr,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _config_envoy: Ptr,
    _config: ConstPtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _config_envoy: Ptr,
    _config: ConstPtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy: Ptr,
    _filter: ConstPtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy: Ptr,
    _filter: ConstPtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter_envoy: Ptr,
    _filter: ConstPtr,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    abi::LOCAL_REPLY_CONTINUE
}

// ------------------------------------------------------------------ bootstrap extension

/// What `bootstrap_extension_new` hands Envoy: a pointer back to the configuration.
struct Extension {
    scraper: *const Scraper,
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_new(
    config_envoy: Ptr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConstPtr {
    guard("bootstrap_config_new", core::ptr::null(), || {
        // SAFETY: Envoy's buffers of this hook.
        let (name, json) = unsafe { (text(name), text(config)) };
        match Scraper::new(config_envoy, &json, crate::registry()) {
            // Shared: the direct transport's thread holds it weakly.
            Ok(s) => Arc::into_raw(Arc::new(s)) as ConstPtr,
            Err(e) => {
                log::error!("endpoint picker ({name}): invalid configuration: {e}");
                core::ptr::null()
            }
        }
    })
}

/// The scraper behind a bootstrap configuration pointer.
unsafe fn scraper<'a>(p: ConstPtr) -> Option<&'a Scraper> {
    // SAFETY: made by bootstrap config_new; lives until config_destroy.
    (!p.is_null()).then(|| unsafe { &*(p as *const Scraper) })
}

/// A new reference to the scraper behind a bootstrap configuration pointer.
unsafe fn scraper_arc(p: ConstPtr) -> Option<Arc<Scraper>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: made by `Arc::into_raw` in config_new; the configuration's own reference lives
    // until config_destroy, so this one is added to a live count.
    unsafe {
        Arc::increment_strong_count(p as *const Scraper);
        Some(Arc::from_raw(p as *const Scraper))
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_destroy(p: ConstPtr) {
    guard("bootstrap_config_destroy", (), || {
        if !p.is_null() {
            // SAFETY: made by config_new, destroyed once.
            let s = unsafe { Arc::from_raw(p as *const Scraper) };
            // Its metrics die with it: flushes go back to the filter configurations' own.
            crate::filter::set_process_sink(None);
            s.stop();
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_new(
    config: ConstPtr,
    _extension_envoy: Ptr,
) -> ConstPtr {
    guard("bootstrap_extension_new", core::ptr::null(), || {
        Box::into_raw(Box::new(Extension {
            scraper: config as *const Scraper,
        })) as ConstPtr
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_server_initialized(
    _extension_envoy: Ptr,
    extension: ConstPtr,
) {
    guard("server_initialized", (), || {
        if extension.is_null() {
            return;
        }
        // SAFETY: made by extension_new.
        let ext = unsafe { &*(extension as *const Extension) };
        // SAFETY: the configuration outlives its extension.
        if let Some(s) = unsafe { scraper_arc(ext.scraper as ConstPtr) } {
            s.start_direct();
            s.start();
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_worker_thread_initialized(
    _extension_envoy: Ptr,
    _extension: ConstPtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_drain_started(
    _extension_envoy: Ptr,
    _extension: ConstPtr,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_shutdown(
    _extension_envoy: Ptr,
    _extension: ConstPtr,
    completion: Option<unsafe extern "C" fn(*mut c_void)>,
    context: *mut c_void,
) {
    // Nothing to flush: tell Envoy at once that shutdown may proceed.
    if let Some(done) = completion {
        // SAFETY: Envoy's completion callback with its own context.
        unsafe { done(context) };
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_destroy(extension: ConstPtr) {
    guard("bootstrap_extension_destroy", (), || {
        if !extension.is_null() {
            // SAFETY: made by extension_new, destroyed once.
            drop(unsafe { Box::from_raw(extension as *mut Extension) });
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_scheduled(
    _config_envoy: Ptr,
    _config: ConstPtr,
    _event_id: u64,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_http_callout_done(
    _config_envoy: Ptr,
    config: ConstPtr,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body: *const EnvoyBuffer,
    body_size: usize,
) {
    guard("bootstrap_http_callout_done", (), || {
        // SAFETY: our configuration; Envoy's arrays of this hook.
        if let Some(s) = unsafe { scraper(config) } {
            unsafe { s.on_callout(callout_id, result, headers, headers_size, body, body_size) };
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_timer_fired(
    _config_envoy: Ptr,
    config: ConstPtr,
    _timer: Ptr,
) {
    guard("bootstrap_timer_fired", (), || {
        // SAFETY: our configuration.
        if let Some(s) = unsafe { scraper(config) } {
            s.tick();
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_file_changed(
    _config_envoy: Ptr,
    _config: ConstPtr,
    _path: EnvoyBuffer,
    _events: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_admin_request(
    _config_envoy: Ptr,
    _config: ConstPtr,
    _method: EnvoyBuffer,
    _path: EnvoyBuffer,
    _body: EnvoyBuffer,
) -> u32 {
    404
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_cluster_add_or_update(
    _config_envoy: Ptr,
    _config: ConstPtr,
    _cluster_name: EnvoyBuffer,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_cluster_removal(
    _config_envoy: Ptr,
    _config: ConstPtr,
    _cluster_name: EnvoyBuffer,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_listener_add_or_update(
    _config_envoy: Ptr,
    _config: ConstPtr,
    _listener_name: EnvoyBuffer,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_listener_removal(
    _config_envoy: Ptr,
    _config: ConstPtr,
    _listener_name: EnvoyBuffer,
) {
}

// ------------------------------------------------------------------ load-balancing policy

/// The marker a checked policy configuration returns (the policy keeps no per-cluster state).
static LB_CONFIG: u8 = 0;

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_lb_config_new(
    _config_envoy: Ptr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConstPtr {
    guard("lb_config_new", core::ptr::null(), || {
        // SAFETY: Envoy's buffers of this hook.
        let (name, config) = unsafe { (text(name), text(config)) };
        match crate::lb::check_config(&name, &config) {
            Ok(()) => core::ptr::addr_of!(LB_CONFIG).cast(),
            Err(e) => {
                log::error!("endpoint picker: load-balancing policy: {e}");
                core::ptr::null()
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_lb_config_destroy(_config: ConstPtr) {}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_lb_new(
    _config: ConstPtr,
    lb_envoy: Ptr,
) -> ConstPtr {
    guard("lb_new", core::ptr::null(), || {
        Box::into_raw(Box::new(Balancer::new(lb_envoy))) as ConstPtr
    })
}

/// The balancer behind a module pointer.
unsafe fn balancer<'a>(p: ConstPtr) -> Option<&'a Balancer> {
    // SAFETY: made by lb_new, used only on its worker thread.
    (!p.is_null()).then(|| unsafe { &*(p as *const Balancer) })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_lb_choose_host(
    lb_envoy: Ptr,
    lb: ConstPtr,
    context: Ptr,
    result_priority: *mut u32,
    result_index: *mut u32,
) -> bool {
    guard("lb_choose_host", false, || {
        // SAFETY: lb_new's pointer.
        let Some(b) = (unsafe { balancer(lb) }) else {
            return false;
        };
        match b.choose(lb_envoy, context) {
            Some((p, i)) if !result_priority.is_null() && !result_index.is_null() => {
                // SAFETY: Envoy's out-parameters of this hook.
                unsafe {
                    *result_priority = p;
                    *result_index = i;
                }
                true
            }
            _ => false,
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_lb_on_host_membership_update(
    lb_envoy: Ptr,
    lb: ConstPtr,
    _added: usize,
    _removed: usize,
) {
    guard("lb_on_host_membership_update", (), || {
        // SAFETY: lb_new's pointer.
        if let Some(b) = unsafe { balancer(lb) } {
            b.refresh(lb_envoy, true);
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_lb_destroy(lb: ConstPtr) {
    guard("lb_destroy", (), || {
        if !lb.is_null() {
            // SAFETY: made by lb_new, destroyed once.
            drop(unsafe { Box::from_raw(lb as *mut Balancer) });
        }
    })
}
