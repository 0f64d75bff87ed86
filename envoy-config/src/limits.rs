//! Downstream limits every rendered Envoy carries: how long a client may take to send a request,
//! how many connections and how much heap Envoy may use, and which paths reach the model servers.
//!
//! Why they matter here: the picker makes Envoy buffer each request body (up to
//! `pool.bodyLimitBytes`, 4 MiB by default) before it can schedule. Without limits, clients that
//! send most of a large body and then go idle, or send one byte every 100 ms, hold that memory and
//! their connections for ever (issue 17 measured 250 such clients pushing Envoy past 1 GB). And a
//! catch-all route would expose every model-server path through the gateway: `/metrics` (the page
//! the picker trusts) and vLLM's admin endpoints (`/sleep`, `/reset_prefix_cache`,
//! `/v1/load_lora_adapter`).
//!
//! What is rendered:
//! - on the HTTP connection manager: `request_headers_timeout` (the headers must arrive within
//!   it) and `request_timeout` (the whole request, body included, must arrive within it; it does
//!   not limit a streamed response, which `stream_idle_timeout` and the route timeout cover);
//! - routes for [`INFERENCE_PATHS`] (exact) and [`INFERENCE_PREFIXES`] plus any
//!   [`Limits::extra_paths`] and [`Limits::extra_prefixes`]; every other path gets a local 404 with an OpenAI-style JSON
//!   error body and never reaches a model server;
//! - an overload manager: a fixed-heap monitor with Envoy's heap-pressure actions (shrink the
//!   heap at 90 %, reset the streams holding the most buffered bytes from 85 % to 95 %, stop
//!   accepting requests and disable keep-alive at 95 %), and a cap on downstream connections
//!   across all listeners.

use std::fmt::Write as _;

/// Paths matched exactly (the query string is not part of the match): the OpenAI-compatible
/// inference API that vLLM, SGLang and TensorRT-LLM serve.
pub const INFERENCE_PATHS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/models",
];

/// Path prefixes routed by default (`/v1/models/<id>`).
pub const INFERENCE_PREFIXES: &[&str] = &["/v1/models/"];

/// The limits to render. [`Limits::default`] is what `envoy-config render` and every gateway
/// manifest use unless told otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Time for the request headers to arrive, seconds.
    pub request_headers_timeout_s: u64,
    /// Time for the whole request (headers and body) to arrive, seconds.
    pub request_timeout_s: u64,
    /// Downstream connections across all listeners.
    pub max_connections: u64,
    /// The heap size the overload actions are measured against, bytes.
    pub max_heap_bytes: u64,
    /// Further path prefixes to route to the model servers (e.g. `/v1/` for everything under
    /// it, or `/` to restore a catch-all).
    pub extra_prefixes: Vec<String>,
    /// Further exact paths to route (the paths the configured parsers claim beyond the OpenAI
    /// API, e.g. SGLang's `/generate`; filled in by the renderer).
    pub extra_paths: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_headers_timeout_s: 10,
            request_timeout_s: 60,
            max_connections: 10_000,
            max_heap_bytes: 1 << 30,
            extra_prefixes: Vec::new(),
            extra_paths: Vec::new(),
        }
    }
}

impl Limits {
    /// The HTTP connection manager's timeout fields (column 0).
    pub fn hcm_timeouts(&self) -> String {
        format!(
            "# A client must send its headers within {h} s and its whole request (body included)\n\
             # within {r} s: the picker buffers bodies, so slow or stalled uploads must not hold memory.\n\
             request_headers_timeout: {h}s\n\
             request_timeout: {r}s\n",
            h = self.request_headers_timeout_s,
            r = self.request_timeout_s
        )
    }

    /// A `connection_limit` network filter (a list item, column 0) capping this listener's
    /// connections at `max_connections`: the listener-level cap, also where the bootstrap's
    /// global monitor is the gateway's own (kgateway's overlay listener).
    pub fn connection_limit(&self, listener: &str) -> String {
        format!(
            r#"- name: envoy.filters.network.connection_limit
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit
    stat_prefix: {listener}
    max_connections: {max}
"#,
            max = self.max_connections
        )
    }

    /// The route list (column 0): `route` (the route action, column 0) for every inference path,
    /// then a local 404 for anything else, on which the HTTP filters named in `skip` (the
    /// picker) are disabled, so an unrouted path is never parsed or scheduled.
    pub fn routes(&self, route: &str, skip: &[&str]) -> String {
        let mut out = String::from(
            "# Only the inference API reaches the model servers; widen with `envoy-config render\n# --route-prefix`.\n",
        );
        let mut add = |kind: &str, path: &str| {
            let _ = write!(
                out,
                "- match: {{ {kind}: \"{path}\" }}\n  route:\n{}",
                crate::blocks::indent(route, 4)
            );
        };
        for p in INFERENCE_PATHS {
            add("path", p);
        }
        for p in &self.extra_paths {
            if !INFERENCE_PATHS.contains(&p.as_str()) {
                add("path", p);
            }
        }
        for p in INFERENCE_PREFIXES {
            add("prefix", p);
        }
        for p in &self.extra_prefixes {
            add("prefix", p);
        }
        out.push_str(
            r#"# Everything else (/metrics, /health, model-server admin paths) is answered here.
- match: { prefix: "/" }
  direct_response:
    status: 404
    body: { inline_string: '{"error":{"message":"not an inference API path","type":"invalid_request_error","code":"path_not_found"}}' }
  response_headers_to_add:
  - header: { key: content-type, value: application/json }
"#,
        );
        if !skip.is_empty() {
            out.push_str("  typed_per_filter_config:\n");
            for name in skip {
                let _ = writeln!(
                    out,
                    "    {name}: {{ \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true }}"
                );
            }
        }
        out
    }

    /// The bootstrap's `overload_manager` (column 0). `connections`: include the global
    /// downstream-connection monitor (gateways whose own bootstrap already has one, Envoy Gateway
    /// and Istio, get the heap monitor and actions only, so a bootstrap merge does not declare the
    /// same monitor twice).
    pub fn overload_manager(&self, connections: bool) -> String {
        let conn_monitor = if connections {
            format!(
                r#"  - name: envoy.resource_monitors.global_downstream_max_connections
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
      max_active_downstream_connections: {}
"#,
                self.max_connections
            )
        } else {
            String::new()
        };
        format!(
            r#"# Heap pressure and connection count: buffered request bodies are the picker's main memory
# cost, so streams holding the most buffer are reset before Envoy runs out of memory.
overload_manager:
  refresh_interval: 0.25s
  # Track streams that buffer 1 MiB or more, so reset_high_memory_stream can pick them.
  buffer_factory_config: {{ minimum_account_to_track_power_of_two: 20 }}
  resource_monitors:
  - name: envoy.resource_monitors.fixed_heap
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig
      max_heap_size_bytes: {heap}
{conn_monitor}  actions:
  - name: envoy.overload_actions.shrink_heap
    triggers:
    - name: envoy.resource_monitors.fixed_heap
      threshold: {{ value: 0.90 }}
  - name: envoy.overload_actions.reset_high_memory_stream
    triggers:
    - name: envoy.resource_monitors.fixed_heap
      scaled: {{ scaling_threshold: 0.85, saturation_threshold: 0.95 }}
  - name: envoy.overload_actions.stop_accepting_requests
    triggers:
    - name: envoy.resource_monitors.fixed_heap
      threshold: {{ value: 0.95 }}
  - name: envoy.overload_actions.disable_http_keepalive
    triggers:
    - name: envoy.resource_monitors.fixed_heap
      threshold: {{ value: 0.95 }}
"#,
            heap = self.max_heap_bytes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_cover_the_api_and_end_in_a_404() {
        let l = Limits {
            extra_prefixes: vec!["/v2/".into()],
            ..Limits::default()
        };
        let r = l.routes("cluster: pool\n", &["picker"]);
        assert!(r.contains("picker: {"), "{r}");
        assert!(r.contains(r#"path: "/v1/chat/completions""#));
        assert!(r.contains(r#"prefix: "/v2/""#));
        assert!(r.contains("value: application/json }"));
        assert!(!r.contains(r#"path: "/metrics""#));
    }
}
