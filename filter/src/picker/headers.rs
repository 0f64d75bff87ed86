//! Header names the filter owns. Every request header in [`CLIENT_FORBIDDEN`] is removed from
//! the client's request before anything else happens, so a client can never choose the
//! destination, the prefill or encode endpoints a decode sidecar will call, or the endpoint a
//! model server pulls KV blocks from (a client's `host:port` there would make the server connect
//! wherever the client says).

/// The destination the serving cluster routes to: `ip:port`, or an ordered comma list.
pub const DESTINATION: &str = "x-gateway-destination-endpoint";
/// The prefill endpoint for P/D disaggregation (set by `disagg-profile-handler`).
pub const PREFILLER: &str = scheduler_core::plugins::profile::disagg::PREFILLER_HEADER;
/// The encode endpoints for E/P/D disaggregation (set by `disagg-profile-handler`).
pub const ENCODERS: &str = scheduler_core::plugins::profile::disagg::ENCODER_HEADER;
/// The endpoint a model server pulls the prompt's cached KV blocks from (`host:port`; set by
/// `p2p-source-producer`).
pub const KV_SOURCE: &str = scheduler_core::plugins::producer::p2p_source::KV_SOURCE_HEADER;
/// Response header with the pick and per-scorer scores when `pool.debug` is on.
pub const DEBUG: &str = "x-endpoint-picker-debug";
/// Response header naming the endpoint that served (GIE's served-endpoint report).
pub const SERVED: &str = "x-gateway-destination-endpoint-served";

/// Response header with Envoy's attempt count (the rendered route sets
/// `include_attempt_count_in_response`); `1` means the primary endpoint served.
pub const ATTEMPT_COUNT: &str = "x-envoy-attempt-count";

/// Request headers a client must not set.
pub const CLIENT_FORBIDDEN: &[&str] = &[DESTINATION, PREFILLER, ENCODERS, KV_SOURCE];
