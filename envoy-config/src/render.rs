//! Renders a complete, commented Envoy 1.40 configuration for an endpoint-picker JSON.
//!
//! What it builds, and why:
//! - **Scraper**: a bootstrap `envoy.bootstrap.wasm` service, `singleton: true`, root id
//!   `metrics-scraper` (one instance per Envoy process, on the main thread).
//! - **Picker**: the `envoy.filters.http.wasm` filter, root id `endpoint-picker`, with
//!   `allow_on_headers_stop_iteration: true` (without it Envoy never delivers the body to a filter
//!   that paused in the headers phase) and `failure_policy: FAIL_RELOAD` (a VM that traps is
//!   replaced instead of failing every later request on that worker; FAIL_OPEN would skip the
//!   picker and let a client-supplied header steer the request).
//! - Both share `vm_id` `endpoint-picker`: proxy-wasm shared data is keyed by vm_id.
//! - **Serving cluster**: STATIC, one member per `pool.endpoints[]`, load balancing policy
//!   `override_host` reading `x-gateway-destination-endpoint` (an ordered `ip:port` list; each
//!   retry takes the next entry) with round robin as fallback. A destination that is not a member
//!   is never dialled: a forged header cannot reach a host outside the pool even if the filter
//!   were skipped. (An ORIGINAL_DST cluster would dial any `ip:port` in the header.)
//! - **Retries**: on connect failure, reset and 5xx, to another host (`previous_hosts`), so an
//!   endpoint that dies mid-run costs no client error.
//! - **Metrics cluster**: when some endpoint has a `metricsPort`, an internal ORIGINAL_DST cluster
//!   reached only by the scraper's callouts (no route points at it).
//! - Admin on loopback only.

use std::fmt::Write as _;
use std::net::SocketAddr;

use scheduler_core::PickerConfig;
use serde_json::Value;

/// Name of the internal scrape cluster created when endpoints have a separate metrics port.
pub const METRICS_CLUSTER: &str = "endpoint_picker_metrics";

/// Which Envoy to render.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Envoy with the endpoint picker (scraper + filter, override_host cluster).
    #[default]
    Picker,
    /// Plain Envoy, round robin over the same endpoints (a baseline).
    RoundRobin,
    /// Plain Envoy, least request (power of two choices) over the same endpoints (a baseline).
    LeastRequest,
}

/// What to render.
#[derive(Clone, Debug)]
pub struct RenderInput {
    /// The module configuration (`pool` + GIE fields).
    pub picker: Value,
    /// Path of the `.wasm` module as Envoy sees it.
    pub wasm_path: String,
    /// Listener address for inference traffic.
    pub listen: SocketAddr,
    /// Admin port (bound to 127.0.0.1).
    pub admin_port: u16,
    /// Picker, or a plain-Envoy baseline over the same pool.
    pub mode: Mode,
}

fn yaml_block(json: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    json.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// Renders the Envoy configuration.
///
/// # Errors
/// The module's configuration error text when the `pool` section or the document's shape is
/// invalid. Plugin types and parameters are not checked here (an out-of-tree module may know
/// more types); run [`crate::validate::validate`] for that.
pub fn render(input: &RenderInput) -> Result<String, String> {
    let mut picker = input.picker.clone();
    let text = serde_json::to_string(&picker).map_err(|e| e.to_string())?;
    // The pool section and the document's shape are checked here; plugin types are checked by
    // `validate` (in-tree plugins) or by the module itself, which may carry out-of-tree ones.
    let cfg = PickerConfig::from_json(&text).map_err(|e| e.to_string())?;
    let pool = &cfg.pool;
    let separate_metrics = pool
        .endpoints
        .iter()
        .any(|e| e.metrics_address != e.address);
    if separate_metrics && pool.metrics_cluster == pool.cluster {
        if let Some(p) = picker.get_mut("pool").and_then(Value::as_object_mut) {
            p.insert(
                "metricsCluster".into(),
                Value::String(METRICS_CLUSTER.into()),
            );
        }
    }
    let json = serde_json::to_string_pretty(&picker).map_err(|e| e.to_string())?;
    // Body buffering is bounded by the connection buffer limit; keep it above the picker's own
    // limit so the picker answers 413 with its JSON body.
    let buffer_limit = pool.body_limit_bytes.saturating_mul(2).max(1 << 20);

    let mut members = String::new();
    for e in &pool.endpoints {
        let addr: SocketAddr = e
            .address
            .parse()
            .map_err(|_| format!("bad address {}", e.address))?;
        let _ = writeln!(
            members,
            "        - endpoint: {{ address: {{ socket_address: {{ address: \"{}\", port_value: {} }} }} }}",
            addr.ip(),
            addr.port()
        );
    }
    if members.is_empty() {
        members.push_str("        []  # no endpoints yet\n");
    }

    let wasm = &input.wasm_path;
    let block = yaml_block(&json, 10);
    let filter_block = yaml_block(&json, 20);
    let bootstrap = if input.mode == Mode::Picker {
        format!(
            r#"bootstrap_extensions:
# The metrics scraper: one instance per Envoy process (main thread). Bootstrap extensions cannot
# be changed by xDS; changing its configuration needs a restart.
- name: envoy.bootstrap.wasm
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.wasm.v3.WasmService
    singleton: true
    config:
      name: metrics-scraper
      root_id: metrics-scraper
      vm_config:
        vm_id: endpoint-picker          # must equal the filter's vm_id: shared data is per vm_id
        runtime: envoy.wasm.runtime.v8
        code: {{ local: {{ filename: "{wasm}" }} }}
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: |
{block}
"#
        )
    } else {
        String::new()
    };
    let wasm_filter = if input.mode == Mode::Picker {
        format!(
            r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: endpoint-picker
                root_id: endpoint-picker
                # Needed for body-based routing: lets the filter pause in the headers phase
                # and still receive the body (Envoy 1.40+).
                allow_on_headers_stop_iteration: true
                # A VM that traps is replaced; requests meanwhile get 503 (never skip the picker).
                failure_policy: FAIL_RELOAD
                vm_config:
                  vm_id: endpoint-picker
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{wasm}" }} }}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
{filter_block}
"#
        )
    } else {
        String::new()
    };
    let lb = match input.mode {
        Mode::Picker => r#"    load_balancing_policy:
      policies:
      - typed_extension_config:
          name: envoy.load_balancing_policies.override_host
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost
            override_host_sources:
            - header: x-gateway-destination-endpoint
            fallback_policy:
              policies:
              - typed_extension_config:
                  name: envoy.load_balancing_policies.round_robin
                  typed_config:
                    "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin
"#.to_string(),
        Mode::RoundRobin => "    # Baseline: plain round robin, no picker.\n    lb_policy: ROUND_ROBIN\n".to_string(),
        Mode::LeastRequest => "    # Baseline: least request (power of two choices), no picker.\n    lb_policy: LEAST_REQUEST\n".to_string(),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r#"# Envoy 1.40 configuration for the LLM endpoint picker (proxy-wasm). Rendered by
# `envoy-config render`; edit the picker JSON and re-render rather than editing by hand.
#
# Request flow: listener -> HTTP filter `endpoint-picker` (reads the metrics snapshot, parses
# the OpenAI body, schedules, sets x-gateway-destination-endpoint) -> router -> cluster
# `{cluster}` (override_host: sends to the endpoint named in that header).
# The singleton `metrics-scraper` polls every endpoint's /metrics and publishes the snapshot.

admin:
  # Loopback only: the admin API can change Envoy's state.
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}

{bootstrap}static_resources:
  listeners:
  - name: inference
    address: {{ socket_address: {{ address: "{lip}", port_value: {lport} }} }}
    # Envoy buffers the request body for the picker within this limit (the picker's own
    # bodyLimitBytes answers 413 first).
    per_connection_buffer_limit_bytes: {buffer_limit}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inference
          route_config:
            name: inference
            virtual_hosts:
            - name: inference
              domains: ["*"]
              # Tells the picker whether a retry happened (x-envoy-attempt-count), so it looks
              # up the endpoint that actually served only when one did.
              include_attempt_count_in_response: true
              routes:
              - match: {{ prefix: "/" }}
                route:
                  cluster: {cluster}
                  timeout: 600s
                  # Retry on another endpoint when one refuses, resets or fails: override_host
                  # walks the destination list, then round robin; previous_hosts keeps a retry
                  # off the host that just failed.
                  retry_policy:
                    retry_on: connect-failure,reset,refused-stream,5xx
                    num_retries: 2
                    per_try_timeout: 600s
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                    host_selection_retry_max_attempts: 5
          http_filters:
{wasm_filter}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router

  clusters:
  # The inference pool. Members must equal pool.endpoints: a destination outside this set is
  # never dialled (override_host only chooses among members).
  - name: {cluster}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {cluster}
      endpoints:
      - lb_endpoints:
{members}{lb}    circuit_breakers:
      thresholds:
      # The defaults (1024 requests, 3 concurrent retries) are too low for an LLM gateway.
      - {{ max_connections: 100000, max_pending_requests: 100000, max_requests: 100000, max_retries: 1000 }}
"#,
        cluster = pool.cluster,
        admin = input.admin_port,
        lip = input.listen.ip(),
        lport = input.listen.port(),
    );
    if separate_metrics && input.mode == Mode::Picker {
        let _ = write!(
            out,
            r#"  # Scrape-only cluster for endpoints whose metrics port differs from the serving port. No
  # route points here; only the scraper's callouts use it.
  - name: {METRICS_CLUSTER}
    type: ORIGINAL_DST
    connect_timeout: 1s
    lb_policy: CLUSTER_PROVIDED
    original_dst_lb_config:
      use_http_header: true
      http_header_name: x-gateway-destination-endpoint
"#
        );
    }
    Ok(out)
}
