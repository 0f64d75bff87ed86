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
//! - **Metrics cluster**: when some endpoint has a `metricsPort`, or the data layer fetches a
//!   second page on its own port (`dcgm-data-source`), an internal ORIGINAL_DST cluster
//!   reached only by the scraper's callouts (no route points at it).
//! - **Downstream limits** ([`crate::limits`]): request and header timeouts, routes for the
//!   inference API paths only, an overload manager with heap actions and a connection cap.
//! - Admin on loopback only.
//! - **`xds_dir`** (optional): the picker filter and the pool's members come from files in that
//!   directory (ECDS and EDS, [`crate::xds`]) that Envoy watches, so a pool change is a file
//!   update: no restart, no listener drain. The scraper follows the filter's new member list.
//! - **Native build**: the `override_host` fallback is the module's `pool-membership` balancer,
//!   which reports the cluster's hosts to the scraper; with no `pool.endpoints` (and `xds_dir`
//!   or a gateway's EDS supplying members) the pool is whatever the cluster has.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use scheduler_core::PickerConfig;
use serde_json::Value;

use crate::blocks::{
    indent, override_host_policy, override_host_policy_native, Code, Module, Vm, PICKER_ROOT_ID,
};
use crate::limits::Limits;
use crate::xds;

/// Name of the internal scrape cluster created when endpoints have a separate metrics port.
pub const METRICS_CLUSTER: &str = "endpoint_picker_metrics";

/// The path prefix of vLLM's gRPC API (`vllmgrpc-parser`), routed for `appProtocol:
/// kubernetes.io/h2c` pools.
pub const VLLM_GRPC_PREFIX: &str = "/vllm.grpc.engine.VllmEngine/";

/// The vm_id plain-Envoy renders give the scraper and the filter.
pub const VM_ID: &str = "endpoint-picker";

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
    /// Serve the picker filter (ECDS) and the pool's members (EDS) from files in this
    /// directory, as Envoy will see it, instead of inline (picker mode only).
    pub xds_dir: Option<PathBuf>,
    /// Downstream limits (timeouts, connections, heap, routed paths).
    pub limits: Limits,
    /// The inference listener's access log.
    pub access_log: AccessLog,
    /// Render a native dynamic module instead of the Wasm module at `wasm_path`: its library
    /// name (`endpoint_picker` → `libendpoint_picker.so`, found through
    /// `$ENVOY_DYNAMIC_MODULES_SEARCH_PATH`).
    pub native: Option<String>,
    /// Filter-only: no bootstrap scraper; the picker filter scrapes the pool itself (Wasm: a
    /// worker VM's standby scraper takes the lease; native: the filter configuration's own
    /// scraper). The whole deployment is then the one HTTP filter.
    pub filter_only: bool,
}

/// A picker JSON checked and prepared for rendering.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The validated configuration.
    pub config: PickerConfig,
    /// The picker JSON, pretty-printed, as the module will read it (with `pool.metricsCluster`
    /// filled in when a separate scrape cluster is rendered).
    pub json: String,
    /// True when some endpoint's metrics address differs from its serving address.
    pub separate_metrics: bool,
    /// Envoy's per-connection buffer limit for the inference listener, in bytes: above the
    /// picker's own `bodyLimitBytes` (so the picker answers 413 with its JSON body), 1 MiB at
    /// least.
    pub buffer_limit: u64,
    /// Exact request paths the configured parsers need routed beyond the OpenAI API (e.g.
    /// `/generate` for `sglanghttp-parser`); empty when the document does not load with the
    /// built-in registry.
    pub parser_routes: Vec<String>,
    /// The metrics source's `scheme: https`: `Some(verify)`, where `verify` is false for
    /// `insecureSkipVerify` (GIE's default); `None` for plain HTTP.
    pub metrics_tls: Option<bool>,
}

/// Checks the `pool` section and the document's shape, and pretty-prints the JSON.
///
/// # Errors
/// The module's configuration error text. Plugin types and parameters are not checked here (an
/// out-of-tree module may know more types); run [`crate::validate::validate`] for that.
pub fn prepare(picker: &Value) -> Result<Prepared, String> {
    let mut picker = picker.clone();
    let text = serde_json::to_string(&picker).map_err(|e| e.to_string())?;
    let config = PickerConfig::from_json(&text).map_err(|e| e.to_string())?;
    // A page source on its own port (a DCGM exporter beside each server) is fetched from
    // addresses outside the serving cluster too. Out-of-tree plugin types fail this load;
    // their configs then get the ORIGINAL_DST cluster only through `metricsPort`.
    // The same load gives the paths the configured parsers need routed (SGLang's `/generate`,
    // Anthropic's `/v1/messages`, ...).
    let loaded =
        scheduler_core::PickerConfig::load(&text, &scheduler_core::Registry::with_builtins()).ok();
    // The loaded pool has the metrics source's `port` and `interval` applied.
    let pool = loaded.as_ref().map_or(&config.pool, |l| &l.pool);
    let page_ports = loaded.as_ref().is_some_and(|l| {
        l.picker
            .page_sources()
            .iter()
            .filter_map(|p| p.as_page_source())
            .any(|s| s.port().is_some())
    });
    let parser_routes: Vec<String> = loaded
        .as_ref()
        .map(|l| {
            l.picker
                .parser_routes()
                .iter()
                .map(|r| r.to_string())
                .collect()
        })
        .unwrap_or_default();
    // An h2c pool (gRPC model servers) is dialled over HTTP/2; its metrics pages are HTTP/1.1
    // (vLLM and llm-d-inference-sim serve both on one port, telling them apart by protocol), so
    // the scrape goes through the HTTP/1.1 scrape-only cluster.
    let separate_metrics = page_ports
        || pool.app_protocol == scheduler_core::AppProtocol::H2c
        || pool.metrics_port.is_some()
        || pool
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
    // A document with out-of-tree plugin types does not load here: its metrics source is read
    // from the JSON then, so an https source never renders a plain-HTTP scrape cluster.
    let metrics_tls = match &loaded {
        Some(l) => l
            .picker
            .metrics_source()
            .filter(|m| m.scheme == "https")
            .map(|m| !m.insecure_skip_verify),
        None => https_metrics_source(&picker),
    };
    let json = serde_json::to_string_pretty(&picker).map_err(|e| e.to_string())?;
    let buffer_limit = pool.body_limit_bytes.saturating_mul(2).max(1 << 20) as u64;
    Ok(Prepared {
        config,
        json,
        separate_metrics,
        buffer_limit,
        parser_routes,
        metrics_tls,
    })
}

/// The TLS setting of the first `metrics-data-source` in `picker`'s `plugins` with
/// `scheme: https`, read from the JSON (for documents the built-in registry cannot load):
/// `Some(verify)`, `verify` false for `insecureSkipVerify` (default true).
fn https_metrics_source(picker: &Value) -> Option<bool> {
    picker
        .get("plugins")?
        .as_array()?
        .iter()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("metrics-data-source"))
        .filter_map(|p| p.get("parameters"))
        .find(|params| params.get("scheme").and_then(Value::as_str) == Some("https"))
        .map(|params| {
            !params
                .get("insecureSkipVerify")
                .and_then(Value::as_bool)
                .unwrap_or(true)
        })
}

/// The `lb_endpoints` list of the pool (column 0), one entry per `pool.endpoints[]`.
///
/// # Errors
/// An address that is not a literal `ip:port`.
pub fn lb_endpoints(config: &PickerConfig) -> Result<String, String> {
    let mut members = String::new();
    for e in &config.pool.endpoints {
        let addr: SocketAddr = e
            .address
            .parse()
            .map_err(|_| format!("bad address {}", e.address))?;
        let _ = writeln!(
            members,
            "- endpoint: {{ address: {{ socket_address: {{ address: \"{}\", port_value: {} }} }} }}",
            addr.ip(),
            addr.port()
        );
    }
    if members.is_empty() {
        members.push_str("[]  # no endpoints yet\n");
    }
    Ok(members)
}

/// The cluster fields (column 0) that make Envoy dial a pool over HTTP/2 without TLS, for
/// `pool.appProtocol: kubernetes.io/h2c` (gRPC model servers).
pub fn h2c_protocol_options() -> String {
    r#"# pool.appProtocol kubernetes.io/h2c: the model servers speak HTTP/2 without TLS (gRPC).
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: { http2_protocol_options: {} }
"#
    .into()
}

/// The scrape-only ORIGINAL_DST cluster (a list item, column 0) for endpoints whose metrics
/// port differs from the serving port; `tls` as [`upstream_tls`] (empty for plain HTTP).
pub fn metrics_cluster(tls: &str) -> String {
    format!(
        r#"# Scrape-only cluster: each callout names its endpoint's metrics address in
# x-gateway-destination-endpoint. No route points here; only the scraper's callouts use it.
- name: {METRICS_CLUSTER}
  type: ORIGINAL_DST
  connect_timeout: 1s
  lb_policy: CLUSTER_PROVIDED
  original_dst_lb_config:
    use_http_header: true
    http_header_name: x-gateway-destination-endpoint
{tls}"#,
        tls = indent(tls, 2)
    )
}

/// The system CA bundle on Debian-based images (Envoy's official images included), which
/// verifies the metrics servers' certificates when `insecureSkipVerify` is false.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The cluster fields (column 0) that make Envoy dial the cluster the scraper uses over TLS,
/// for the metrics source's `scheme: https`. With `verify` the servers' certificate chains are
/// checked against [`SYSTEM_CA_BUNDLE`] (names are not matched: endpoints are dialled by IP);
/// without it (`insecureSkipVerify`, GIE's default) they are not checked, as Envoy does for an
/// upstream TLS context without a validation context.
pub fn upstream_tls(verify: bool) -> String {
    let validation = if verify {
        format!("\n    common_tls_context:\n      validation_context:\n        trusted_ca: {{ filename: {SYSTEM_CA_BUNDLE} }}")
    } else {
        String::new()
    };
    format!(
        r#"# The metrics source's scheme is https: the scraper's callouts (and, on a shared cluster,
# inference requests) go over TLS{note}.
transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext{validation}
"#,
        note = if verify {
            ", certificates checked against the system CA bundle"
        } else {
            " without checking certificates (insecureSkipVerify)"
        },
    )
}

/// The module of plain-Envoy renders: the native module named `native`, else the Wasm module
/// at `wasm_path` ([`local_vm`]).
pub fn module(wasm_path: &str, native: Option<&str>) -> Module {
    match native {
        Some(name) => Module::Native(name.into()),
        None => Module::Wasm(local_vm(wasm_path)),
    }
}

/// The vm of plain-Envoy renders: vm_id [`VM_ID`], the module from `wasm_path`.
pub fn local_vm(wasm_path: &str) -> Vm {
    Vm {
        vm_id: Some(VM_ID.into()),
        code: Code::Local(wasm_path.into()),
    }
}

/// Where the listener's access log goes: one JSON line per request with the pick
/// (`x-gateway-destination-endpoint`), the host that served, the attempts, status and timings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AccessLog {
    /// No access log.
    None,
    /// Envoy's stdout.
    #[default]
    Stdout,
    /// A file (appended).
    File(PathBuf),
}

impl AccessLog {
    /// `none`, `stdout`, or a file path.
    pub fn parse(s: &str) -> AccessLog {
        match s {
            "none" => AccessLog::None,
            "stdout" => AccessLog::Stdout,
            path => AccessLog::File(PathBuf::from(path)),
        }
    }

    /// The HTTP connection manager's `access_log` field (column 0), empty for none.
    pub fn yaml(&self) -> String {
        let sink = match self {
            AccessLog::None => return String::new(),
            AccessLog::Stdout => r#"- name: envoy.access_loggers.stdout
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
"#
            .to_string(),
            AccessLog::File(path) => format!(
                r#"- name: envoy.access_loggers.file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: "{}"
"#,
                path.display()
            ),
        };
        format!(
            r#"# One JSON line per request: the endpoint the picker chose (its header as forwarded), the
# host that served (differs after a retry), the attempts, the status and the timings (ms).
access_log:
{sink}    log_format:
      json_format:
        start_time: "%START_TIME%"
        request_id: "%REQ(X-REQUEST-ID)%"
        method: "%REQ(:METHOD)%"
        path: "%REQ(:PATH)%"
        status: "%RESPONSE_CODE%"
        flags: "%RESPONSE_FLAGS%"
        picked: "%REQ(X-GATEWAY-DESTINATION-ENDPOINT)%"
        served: "%UPSTREAM_HOST%"
        attempts: "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"
        bytes_received: "%BYTES_RECEIVED%"
        bytes_sent: "%BYTES_SENT%"
        first_byte_ms: "%RESPONSE_DURATION%"
        duration_ms: "%DURATION%"
"#
        )
    }
}

/// The inference listener (a list item, column 0): HTTP connection manager with the request
/// timeouts of `limits`, `http_filters` (column 0, placed before the router), routes for the
/// inference API paths only (anything else gets a local 404) to `cluster` with a 600 s timeout
/// and retries on another endpoint (connect failure, reset, 5xx; `previous_hosts`).
pub fn listener(
    name: &str,
    address: SocketAddr,
    buffer_limit: u64,
    http_filters: &str,
    cluster: &str,
    limits: &Limits,
    access_log: &AccessLog,
) -> String {
    let action = format!(
        r#"cluster: {cluster}
timeout: 600s
# Retry on another endpoint when one refuses, resets or fails: override_host walks the
# destination list, then the fallback; previous_hosts keeps a retry off the host that just
# failed.
retry_policy:
  retry_on: connect-failure,reset,refused-stream,5xx
  num_retries: 2
  per_try_timeout: 600s
  retry_host_predicate:
  - name: envoy.retry_host_predicates.previous_hosts
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
  host_selection_retry_max_attempts: 5
"#
    );
    format!(
        r#"- name: {name}
  address: {{ socket_address: {{ address: "{ip}", port_value: {port} }} }}
  # Envoy buffers the request body for the picker within this limit (the picker's own
  # bodyLimitBytes answers 413 first).
  per_connection_buffer_limit_bytes: {buffer_limit}
  filter_chains:
  - filters:
{conn_limit}    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: {name}
{access_log}{timeouts}        route_config:
          name: {name}
          virtual_hosts:
          - name: {name}
            domains: ["*"]
            # Tells the picker whether a retry happened (x-envoy-attempt-count), so it looks
            # up the endpoint that actually served only when one did.
            include_attempt_count_in_response: true
            routes:
{routes}        http_filters:
{filters}        - name: envoy.filters.http.router
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#,
        ip = address.ip(),
        port = address.port(),
        timeouts = indent(&limits.hcm_timeouts(), 8),
        access_log = indent(&access_log.yaml(), 8),
        conn_limit = indent(&limits.connection_limit(name), 4),
        routes = indent(&limits.routes(&action, &filter_names(http_filters)), 12),
        filters = indent(http_filters, 8),
    )
}

/// The names of the top-level list items of an `http_filters` snippet (column 0).
fn filter_names(http_filters: &str) -> Vec<&str> {
    http_filters
        .lines()
        .filter_map(|l| l.strip_prefix("- name: "))
        .map(str::trim)
        .collect()
}

/// The pool cluster (a list item, column 0): `members` (its `type` and member source, column
/// 0), `lb` (its load-balancing block, column 0) and circuit breakers sized for an LLM gateway.
pub fn pool_cluster(name: &str, members: &str, lb: &str) -> String {
    format!(
        r#"# The inference pool. Members must equal pool.endpoints: a destination outside this set is
# never dialled (override_host only chooses among members).
- name: {name}
{members}{lb}  circuit_breakers:
    thresholds:
    # The defaults (1024 requests, 3 concurrent retries) are too low for an LLM gateway.
    - {{ max_connections: 100000, max_pending_requests: 100000, max_requests: 100000, max_retries: 1000 }}
"#,
        members = indent(members, 2),
        lb = indent(lb, 2),
    )
}

/// Renders the Envoy configuration.
///
/// # Errors
/// The module's configuration error text when the `pool` section or the document's shape is
/// invalid (see [`prepare`]).
pub fn render(input: &RenderInput) -> Result<String, String> {
    let p = prepare(&input.picker)?;
    let pool = &p.config.pool;
    let picker_mode = input.mode == Mode::Picker;
    let module = module(&input.wasm_path, input.native.as_deref());
    let xds_dir = input.xds_dir.as_ref().filter(|_| picker_mode);
    let watched = |file: &str| {
        let dir = xds_dir.map(|d| d.display().to_string()).unwrap_or_default();
        format!(
            "path_config_source: {{ path: \"{dir}/{file}\", watched_directory: {{ path: \"{dir}\" }} }}"
        )
    };

    // File-based xDS subscriptions need a node identity.
    let node = if xds_dir.is_some() {
        "node: { id: endpoint-picker, cluster: endpoint-picker }\n\n"
    } else {
        ""
    };
    let bootstrap = if picker_mode && !input.filter_only {
        format!(
            "bootstrap_extensions:\n# The metrics scraper: one instance per Envoy process (main thread). Bootstrap extensions cannot\n# be changed by xDS; it follows pool changes through the member list the filter publishes.\n{}\n",
            module.scraper_extension(&p.json)
        )
    } else {
        String::new()
    };
    let wasm_filter = match (picker_mode, xds_dir) {
        (false, _) => String::new(),
        (true, None) => format!(
            "- name: {}\n  typed_config:\n{}",
            module.filter_name(),
            indent(&module.filter_typed_config(&p.json), 4)
        ),
        (true, Some(_)) => format!(
            r#"# The picker's configuration comes from a watched file (ECDS): rewriting it reconfigures
# the filter in place, without draining connections.
- name: {PICKER_ROOT_ID}
  config_discovery:
    config_source:
      {src}
    type_urls: ["{url}"]
"#,
            src = watched(xds::ECDS_FILE),
            url = module.filter_type_url()
        ),
    };
    let lb = match input.mode {
        Mode::Picker => match input.native.as_deref() {
            Some(name) => override_host_policy_native(name),
            None => override_host_policy("round_robin"),
        },
        Mode::RoundRobin => "# Baseline: plain round robin, no picker.\nlb_policy: ROUND_ROBIN\n".into(),
        Mode::LeastRequest => {
            "# Baseline: least request (power of two choices), no picker.\nlb_policy: LEAST_REQUEST\n".into()
        }
    };
    if pool.endpoints.is_empty() && xds_dir.is_none() {
        return Err(format!(
            "pool.endpoints is empty: list the endpoints, or render with --xds-dir and write the members of '{}' to its EDS file{}",
            pool.cluster,
            if input.native.is_some() {
                " (the native picker follows the cluster's hosts; so does any gateway's EDS)"
            } else {
                ""
            }
        ));
    }
    let h2c = if pool.app_protocol == scheduler_core::AppProtocol::H2c {
        h2c_protocol_options()
    } else {
        String::new()
    };
    // TLS goes on the cluster the scraper fetches pages through.
    let tls = p.metrics_tls.map(upstream_tls).unwrap_or_default();
    let scrape_alone = p.separate_metrics && picker_mode;
    let pool_tls = if scrape_alone { "" } else { tls.as_str() };
    // gRPC model servers are called on `/<package>.<Service>/<Method>`: route vLLM's gRPC API.
    let mut limits = input.limits.clone();
    limits.extra_paths.extend(p.parser_routes.iter().cloned());
    if pool.app_protocol == scheduler_core::AppProtocol::H2c {
        limits.extra_prefixes.push(VLLM_GRPC_PREFIX.into());
    }
    let members = match xds_dir {
        None => format!(
            "type: STATIC\nconnect_timeout: 1s\nload_assignment:\n  cluster_name: {}\n  endpoints:\n  - lb_endpoints:\n{}",
            pool.cluster,
            indent(&lb_endpoints(&p.config)?, 4)
        ),
        Some(_) => format!(
            "# Members come from a watched file (EDS): adding an endpoint needs no restart.\ntype: EDS\nconnect_timeout: 1s\neds_cluster_config:\n  eds_config:\n    {}\n",
            watched(xds::EDS_FILE)
        ),
    };
    let mut out = format!(
        r#"# Envoy 1.40 configuration for the LLM endpoint picker ({build}). Rendered by
# `envoy-config render`; edit the picker JSON and re-render rather than editing by hand.
#
# Request flow: listener -> HTTP filter `endpoint-picker` (reads the metrics snapshot, parses
# the OpenAI body, schedules, sets x-gateway-destination-endpoint) -> router -> cluster
# `{cluster}` (override_host: sends to the endpoint named in that header).
# The singleton `metrics-scraper` polls every endpoint's /metrics and publishes the snapshot.

admin:
  # Loopback only: the admin API can change Envoy's state.
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}

{node}{bootstrap}{overload}
{stats}
static_resources:
  listeners:
{listener}
  clusters:
{pool}"#,
        build = if input.native.is_some() {
            "native dynamic module"
        } else {
            "proxy-wasm"
        },
        cluster = pool.cluster,
        admin = input.admin_port,
        overload = input.limits.overload_manager(true),
        stats = endpoint_picker_filter::telemetry::stats_config_yaml(),
        listener = indent(
            &listener(
                "inference",
                input.listen,
                p.buffer_limit,
                &wasm_filter,
                &pool.cluster,
                &limits,
                &input.access_log
            ),
            2
        ),
        pool = indent(
            &pool_cluster(&pool.cluster, &format!("{members}{h2c}{pool_tls}"), &lb),
            2
        ),
    );
    if scrape_alone {
        out.push_str(&indent(&metrics_cluster(&tls), 2));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_https_metrics_source_asks_for_tls_whether_or_not_the_document_loads_here() {
        let source = serde_json::json!({"type": "metrics-data-source",
            "parameters": {"scheme": "https", "insecureSkipVerify": false}});
        let built_in = serde_json::json!({"pool": {"cluster": "c"}, "plugins": [source]});
        assert_eq!(prepare(&built_in).unwrap().metrics_tls, Some(true));
        // An out-of-tree plugin type: the built-in registry cannot load the document.
        let out_of_tree = serde_json::json!({"pool": {"cluster": "c"},
            "plugins": [source, {"type": "my-own-scorer"}]});
        assert_eq!(prepare(&out_of_tree).unwrap().metrics_tls, Some(true));
        let plain =
            serde_json::json!({"pool": {"cluster": "c"}, "plugins": [{"type": "my-own-scorer"}]});
        assert_eq!(prepare(&plain).unwrap().metrics_tls, None);
        let skip = serde_json::json!({"pool": {"cluster": "c"}, "plugins": [
            {"type": "metrics-data-source", "parameters": {"scheme": "https"}}, {"type": "my-own-scorer"}]});
        assert_eq!(prepare(&skip).unwrap().metrics_tls, Some(false));
    }
}
