//! `libfloor_filter.so`: an Envoy 1.40 dynamic-module HTTP filter that adds one request header
//! (`x-gateway-destination-endpoint`: the addresses of the filter's configuration string,
//! comma-separated, in turn; `127.0.0.1:1` when it has none), after buffering the request body
//! when there is one, and does nothing else: the body is not read, no response hooks, no
//! allocation per stream. `BENCH_FLOOR=1 scripts/bench-envoy.sh` runs it in
//! the native picker's own Envoy configuration, beside plain Envoy and the picker, to measure
//! what Envoy itself charges for a dynamic-module filter that routes by that header: the floor
//! under any in-proxy picker built this way.
//!
//! Two knobs, read from Envoy's environment when a configuration loads, add synthetic work per
//! routed request, to measure what a given cost does to Envoy's throughput (0 or unset: none):
//! `FLOOR_SPIN_NS` spins for that many nanoseconds (pure compute); `FLOOR_TOUCH_LINES` writes
//! that many 8-byte words at random places of a 16 MiB table allocated once (scattered memory
//! traffic, like a large index's inserts and evictions).
//!
//! Envoy resolves every HTTP-filter hook when a configuration loads (a missing one rejects it),
//! so all are exported; the ones this filter does not use are no-ops. The declarations follow
//! the same ABI as `native/src/abi.rs` (version `v0.2.0`, Envoy 1.40), reduced to what is used
//! here, and are kept apart from it on purpose: the native crate defines the picker's hooks, so
//! linking it would export them from this library too. Trailing arguments a hook ignores are
//! left out, which the C calling conventions of x86-64 and aarch64 allow (the caller passes them
//! in registers and cleans up). No hook can panic.

#![allow(clippy::missing_safety_doc)]

use core::ffi::c_void;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

type Ptr = *mut c_void;
type ConstPtr = *const c_void;

/// A buffer Envoy owns, valid during the hook that receives it.
#[repr(C)]
pub struct EnvoyBuffer {
    ptr: *const u8,
    length: usize,
}

#[repr(C)]
struct ModuleBuffer {
    ptr: *const u8,
    length: usize,
}

const HEADERS_CONTINUE: u32 = 0;
const HEADERS_STOP_ITERATION: u32 = 1;
const BODY_CONTINUE: u32 = 0;
const BODY_STOP_ITERATION_AND_BUFFER: u32 = 1;
const TRAILERS_CONTINUE: u32 = 0;
const LOCAL_REPLY_CONTINUE: u32 = 0;
const REQUEST_HEADER: u32 = 0;

extern "C" {
    fn envoy_dynamic_module_callback_http_add_header(
        filter: Ptr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
}

/// The header value when the configuration gives none (an address no cluster holds).
const DEFAULT_VALUE: &[u8] = b"127.0.0.1:1";

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const core::ffi::c_char {
    c"v0.2.0".as_ptr()
}

/// The configuration: the header values, taken in turn.
struct Floor {
    values: Vec<Vec<u8>>,
    next: AtomicUsize,
    /// `FLOOR_SPIN_NS`, nanoseconds.
    spin_ns: u64,
    /// `FLOOR_TOUCH_LINES`, words written per request.
    touch_lines: usize,
    /// The table those words are in: [`TOUCH_TABLE_BYTES`] when `touch_lines` > 0, else empty.
    table: Vec<AtomicU64>,
}

/// Size of the `FLOOR_TOUCH_LINES` table, bytes: well beyond the CPU's caches, like the prefix
/// index of a busy pool.
const TOUCH_TABLE_BYTES: usize = 16 << 20;

/// Knob `name` from the environment; 0 when unset or not a number.
fn knob(name: &str) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
}

/// The configuration: the addresses of the `google.protobuf.StringValue` (its raw string),
/// comma-separated. Its pointer also stands for every stream's filter: nothing is allocated
/// per stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config_envoy: Ptr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConstPtr {
    let raw: &[u8] = if config.ptr.is_null() {
        &[]
    } else {
        // SAFETY: Envoy's buffer, valid during this hook; copied below.
        unsafe { core::slice::from_raw_parts(config.ptr, config.length) }
    };
    let mut values: Vec<Vec<u8>> = raw
        .split(|&b| b == b',')
        .map(|v| v.trim_ascii().to_vec())
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        values.push(DEFAULT_VALUE.to_vec());
    }
    let touch_lines = usize::try_from(knob("FLOOR_TOUCH_LINES")).unwrap_or(0);
    let table = if touch_lines > 0 {
        (0..TOUCH_TABLE_BYTES / 8)
            .map(|_| AtomicU64::new(0))
            .collect()
    } else {
        Vec::new()
    };
    Box::into_raw(Box::new(Floor {
        values,
        next: AtomicUsize::new(0),
        spin_ns: knob("FLOOR_SPIN_NS"),
        touch_lines,
        table,
    })) as ConstPtr
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: ConstPtr) {
    if !config.is_null() {
        // SAFETY: made by config_new, destroyed once.
        drop(unsafe { Box::from_raw(config as *mut Floor) });
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(config: ConstPtr) -> ConstPtr {
    config
}

/// Adds the destination header, the configuration's next address.
///
/// # Safety
/// `filter_envoy` is the pointer of the current hook; `filter` is null or the configuration.
unsafe fn route(filter_envoy: Ptr, filter: ConstPtr) {
    const KEY: &[u8] = b"x-gateway-destination-endpoint";
    if filter.is_null() {
        return;
    }
    // SAFETY: the configuration (filter_new hands it out), alive while its streams are.
    let floor = unsafe { &*(filter as *const Floor) };
    let turn = floor.next.fetch_add(1, Ordering::Relaxed);
    synthetic_work(floor, turn);
    let Some(value) = floor
        .values
        .get(turn.checked_rem(floor.values.len()).unwrap_or(0))
    else {
        return;
    };
    // SAFETY: Envoy's filter pointer for this hook; both buffers are copied before it returns.
    unsafe {
        envoy_dynamic_module_callback_http_add_header(
            filter_envoy,
            REQUEST_HEADER,
            ModuleBuffer {
                ptr: KEY.as_ptr(),
                length: KEY.len(),
            },
            ModuleBuffer {
                ptr: value.as_ptr(),
                length: value.len(),
            },
        );
    }
}

/// The knobs' work for request number `turn` (see the module docs).
fn synthetic_work(floor: &Floor, turn: usize) {
    if floor.spin_ns > 0 {
        let t = std::time::Instant::now();
        while t.elapsed().as_nanos() < u128::from(floor.spin_ns) {
            core::hint::spin_loop();
        }
    }
    // xorshift64 from the request number: independent addresses, so the CPU can overlap the
    // misses as it would an index's.
    let mut x = (turn as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..floor.touch_lines {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = usize::try_from(x % (floor.table.len().max(1) as u64)).unwrap_or(0);
        if let Some(w) = floor.table.get(at) {
            w.store(w.load(Ordering::Relaxed) ^ x, Ordering::Relaxed);
        }
    }
}

/// Routes at the end of the request (`end_of_stream`) and answers `go`; before it answers
/// `wait`, so a body is buffered first, as a picker that reads the prompt must.
///
/// # Safety
/// As [`route`].
unsafe fn at_end(
    filter_envoy: Ptr,
    filter: ConstPtr,
    end_of_stream: bool,
    wait: u32,
    go: u32,
) -> u32 {
    if !end_of_stream {
        return wait;
    }
    // SAFETY: as this function's arguments.
    unsafe { route(filter_envoy, filter) };
    go
}

/// A request without a body is routed at once; one with a body waits for all of it.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: Ptr,
    filter: ConstPtr,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: this hook's arguments.
    unsafe {
        at_end(
            filter_envoy,
            filter,
            end_of_stream,
            HEADERS_STOP_ITERATION,
            HEADERS_CONTINUE,
        )
    }
}

/// Buffers the body; at its end, routes and lets the request go.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy: Ptr,
    filter: ConstPtr,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: this hook's arguments.
    unsafe {
        at_end(
            filter_envoy,
            filter,
            end_of_stream,
            BODY_STOP_ITERATION_AND_BUFFER,
            BODY_CONTINUE,
        )
    }
}

/// Trailers end a request whose body did not: route it here.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter_envoy: Ptr,
    filter: ConstPtr,
) -> u32 {
    // SAFETY: as this hook's arguments.
    unsafe { route(filter_envoy, filter) };
    TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers() -> u32 {
    HEADERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body() -> u32 {
    BODY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers() -> u32 {
    TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply() -> u32 {
    LOCAL_REPLY_CONTINUE
}

/// The hooks without a result, all no-ops here.
macro_rules! no_ops {
    ($($name:ident),* $(,)?) => {
        $(
            #[no_mangle]
            pub extern "C" fn $name() {}
        )*
    };
}

no_ops!(
    envoy_dynamic_module_on_http_filter_stream_complete,
    envoy_dynamic_module_on_http_filter_http_callout_done,
    envoy_dynamic_module_on_http_filter_http_stream_headers,
    envoy_dynamic_module_on_http_filter_http_stream_data,
    envoy_dynamic_module_on_http_filter_http_stream_trailers,
    envoy_dynamic_module_on_http_filter_http_stream_complete,
    envoy_dynamic_module_on_http_filter_http_stream_reset,
    envoy_dynamic_module_on_http_filter_scheduled,
    envoy_dynamic_module_on_http_filter_config_scheduled,
    envoy_dynamic_module_on_http_filter_config_http_callout_done,
    envoy_dynamic_module_on_http_filter_config_http_stream_headers,
    envoy_dynamic_module_on_http_filter_config_http_stream_data,
    envoy_dynamic_module_on_http_filter_config_http_stream_trailers,
    envoy_dynamic_module_on_http_filter_config_http_stream_complete,
    envoy_dynamic_module_on_http_filter_config_http_stream_reset,
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark,
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark,
    envoy_dynamic_module_on_http_filter_per_route_config_destroy,
);

/// The filter pointer is the configuration's: nothing to free per stream.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy() {}

/// No per-route configuration: Envoy treats null as "none".
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new() -> ConstPtr {
    core::ptr::null()
}
