//! The `pool` section the Envoy module adds to the GIE configuration: which endpoints form the
//! pool, the Envoy cluster that reaches them, scrape timing, failure mode and request limits.
//!
//! ```json
//! {
//!   "pool": {
//!     "cluster": "inference_pool",
//!     "endpoints": [{"address": "10.0.0.1:8000", "labels": {"engine-type": "vllm"}, "metricsPort": 8000}],
//!     "appProtocol": "http",
//!     "scrape": {"interval": "50ms", "timeout": "1s", "staleness": "2s"},
//!     "failureMode": "FailClose",
//!     "bodyLimitBytes": 4194304,
//!     "debug": false,
//!     "emitEndpointScores": false,
//!     "disableEndpointSubsetFilter": false
//!   },
//!   "plugins": [ ... GIE EndpointPickerConfig fields ... ]
//! }
//! ```
//!
//! Without `endpoints` the pool is the Envoy cluster's hosts: the native build's `pool-membership`
//! load-balancing policy on `cluster` reports them (EDS, DNS, static), and `metricsPort` (pool
//! level) names their metrics port when it differs from the serving port.
//!
//! Defaults: interval 50 ms, timeout 1 s, staleness 2 s (GIE's `--refresh-metrics-interval`,
//! per-poll timeout and `--metrics-staleness-threshold`), FailClose, a 4 MiB body limit, an
//! 8 MiB metrics-page limit. The staleness must exceed the interval, or every endpoint would
//! flap to stale between scrapes (llm-d-router #2514).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::duration::parse_duration_ms;
use crate::config::loader::{load_config, LoadReport};
use crate::config::{parse_document, EndpointPickerConfig};
use crate::director::EndpointPicker;
use crate::error::{ConfigError, ConfigErrorKind, FieldPath};
use crate::model::endpoint::Endpoint;
use crate::plugin::Registry;

/// What the filter does when no usable snapshot exists (GIE `InferencePool` `failureMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum FailureMode {
    /// Answer 503.
    #[default]
    FailClose,
    /// Forward without a destination header; the cluster's own load balancer picks.
    FailOpen,
}

/// The protocol the pool's model servers speak (GIE `InferencePool` `spec.appProtocol`): how
/// the proxy dials them. Parsers pick requests by path either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum AppProtocol {
    /// HTTP/1.1 (`http`, the default).
    #[default]
    #[serde(rename = "http")]
    Http,
    /// HTTP/2 without TLS (`kubernetes.io/h2c`): gRPC model servers (vLLM's gRPC API, read by
    /// `vllmgrpc-parser`). Metrics are still scraped over HTTP/1.1, through a scrape-only
    /// cluster.
    #[serde(rename = "kubernetes.io/h2c")]
    H2c,
}

#[derive(Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PoolSpec {
    #[serde(default)]
    endpoints: Vec<EndpointSpec>,
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    metrics_cluster: Option<String>,
    #[serde(default)]
    metrics_port: Option<u16>,
    #[serde(default)]
    app_protocol: AppProtocol,
    #[serde(default)]
    scrape: ScrapeSpec,
    #[serde(default)]
    failure_mode: FailureMode,
    #[serde(default)]
    body_limit_bytes: Option<u64>,
    #[serde(default)]
    max_buffered_body_bytes: Option<u64>,
    /// Allow the `x-endpoint-picker-debug` response header for requests that send a request
    /// header of that name.
    #[serde(default)]
    debug: bool,
    /// Publish every scored endpoint's score in the request's dynamic metadata (native build).
    #[serde(default)]
    emit_endpoint_scores: bool,
    /// Ignore the subset hint in the request's dynamic metadata.
    #[serde(default)]
    disable_endpoint_subset_filter: bool,
}

#[derive(Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EndpointSpec {
    #[serde(default)]
    address: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    metrics_port: Option<u16>,
}

#[derive(Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScrapeSpec {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    staleness: Option<String>,
    #[serde(default)]
    max_body_bytes: Option<u64>,
    #[serde(default)]
    transport: ScrapeTransport,
}

/// How the scraper reaches each endpoint's metrics page (`pool.scrape.transport`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ScrapeTransport {
    /// `cluster` (the default): an HTTP callout from Envoy's main thread through
    /// `pool.metricsCluster`, so the cluster's TLS, mTLS and upstream settings apply. The only
    /// transport of the Wasm build.
    #[default]
    #[serde(rename = "cluster")]
    Cluster,
    /// `direct` (native build): the module's own HTTP/1.1 client on a thread of its own, plain
    /// HTTP to each endpoint's metrics address over kept-alive connections, as GIE's EPP scrapes
    /// by default. Envoy's main thread does no scraping and each scrape costs 35–45 % less CPU
    /// than a callout (measured, BENCHMARKS.md); no TLS. The Wasm build, and the native build without a bootstrap scraper,
    /// fall back to `cluster` with a warning.
    #[serde(rename = "direct")]
    Direct,
}

/// One pool member. Serializable because the picker filter publishes its members for the
/// scraper to follow ([`crate::membership`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PoolEndpoint {
    /// `ip:port` the inference requests go to.
    pub address: String,
    /// Labels (sorted by key).
    pub labels: Vec<(String, String)>,
    /// `ip:port` of its metrics page (same as `address` unless `metricsPort` is set).
    pub metrics_address: String,
}

impl PoolEndpoint {
    /// An [`Endpoint`] with this member's address and labels and no metrics yet.
    pub fn to_endpoint(&self) -> Endpoint {
        Endpoint {
            address: self.address.clone(),
            labels: self.labels.clone(),
            ..Endpoint::default()
        }
    }
}

/// The settings a `pool` section left at their defaults (by position in `endpoints` for the
/// per-endpoint metrics port).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Unset {
    interval: bool,
    endpoint_metrics_ports: Vec<bool>,
}

/// Scrape timing, all in milliseconds or bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeConfig {
    /// Metrics page path; `None` = the `metrics-data-source` path (default `/metrics`).
    pub path: Option<String>,
    /// Tick period.
    pub interval_ms: u64,
    /// Per-call timeout.
    pub timeout_ms: u64,
    /// Age after which an endpoint's metrics are stale and it leaves the candidate list.
    pub staleness_ms: u64,
    /// Largest metrics page accepted, in bytes.
    pub max_body_bytes: usize,
    /// How the pages are fetched.
    pub transport: ScrapeTransport,
}

impl ScrapeConfig {
    /// The longest a change on a model server can take to reach the picker's view (ms): one
    /// interval until the next scrape plus the staleness limit.
    pub fn lag_ms(&self) -> u64 {
        self.interval_ms.saturating_add(self.staleness_ms)
    }
}

impl PoolConfig {
    /// Fills what the section left unset from the metrics source (llm-d-router's
    /// `metrics-data-source` `port` and `interval`): the metrics port of the listed endpoints
    /// without their own `metricsPort` and of discovered ones (`pool.metricsPort`), and the
    /// scrape interval.
    ///
    /// # Errors
    /// An interval that is not a duration, or that reaches `pool.scrape.staleness`.
    fn apply_source(
        &mut self,
        port: Option<u16>,
        interval: Option<&str>,
    ) -> Result<(), ConfigError> {
        if let Some(port) = port {
            self.metrics_port.get_or_insert(port);
            for (e, unset) in self
                .endpoints
                .iter_mut()
                .zip(&self.unset.endpoint_metrics_ports)
            {
                if let (true, Ok(addr)) = (*unset, e.address.parse::<SocketAddr>()) {
                    e.metrics_address = alloc::format!("{}", SocketAddr::new(addr.ip(), port));
                }
            }
        }
        if let (true, Some(s)) = (self.unset.interval, interval.filter(|s| !s.is_empty())) {
            // Reported where the scrape interval lives: setting it there overrides the source's.
            let at = FieldPath::key("pool")
                .with_key("scrape")
                .with_key("interval");
            let ms = duration(at.clone(), Some(s), self.scrape.interval_ms)?;
            if ms >= self.scrape.staleness_ms {
                return Err(ConfigError::invalid(
                    at,
                    alloc::format!(
                        "metrics-data-source's interval ({ms} ms) must be shorter than pool.scrape.staleness ({} ms)",
                        self.scrape.staleness_ms
                    ),
                ));
            }
            self.scrape.interval_ms = ms;
        }
        Ok(())
    }
}

/// The validated `pool` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Members in configuration order.
    pub endpoints: Vec<PoolEndpoint>,
    /// Envoy cluster serving inference requests (reads the destination header).
    pub cluster: String,
    /// Envoy cluster for scrape callouts (default: `cluster`).
    pub metrics_cluster: String,
    /// `pool.metricsPort`: the metrics port of endpoints discovered from the Envoy cluster
    /// (native build, when `endpoints` is empty); `None` = each endpoint's serving port.
    pub metrics_port: Option<u16>,
    /// `pool.appProtocol`: the protocol the model servers speak.
    pub app_protocol: AppProtocol,
    /// What the section left unset, which the metrics source's `port` and `interval` fill.
    unset: Unset,
    /// Scrape timing.
    pub scrape: ScrapeConfig,
    /// What to do without a usable snapshot.
    pub failure_mode: FailureMode,
    /// Largest request body accepted, in bytes (413 above).
    pub body_limit_bytes: usize,
    /// Request-body bytes one proxy worker may hold while it waits for bodies to complete
    /// (declared `content-length`s, or bytes received for chunked uploads), in bytes; a request
    /// that would go over is answered 503 at once. Bounds the memory slow or stalled uploads can
    /// pin: at most workers × this. At least `bodyLimitBytes`; default 128 MiB.
    pub max_buffered_body_bytes: usize,
    /// Allow the debug response header (`x-endpoint-picker-debug`: the pick, each scorer's
    /// score, the candidates and the best few) for requests that ask for it by sending a request
    /// header of the same name; requests that do not ask never get it.
    pub debug: bool,
    /// Publish the primary profile's score of every endpoint it scored in the request's dynamic
    /// metadata, namespace `envoy.lb`, key `x-gateway-destination-endpoint-scores` (a struct
    /// of `ip:port` → total weighted score), for access logs and later filters: llm-d-router's
    /// `--emit-endpoint-scores`, same namespace, key and shape, also off by default. Native
    /// build only (proxy-wasm cannot write dynamic metadata; the Wasm build warns and ignores it).
    pub emit_endpoint_scores: bool,
    /// Ignore the endpoint subset hint: by default a request whose dynamic metadata holds the
    /// list `envoy.lb.subset_hint` / `x-gateway-destination-endpoint-subset` (`ip:port`
    /// strings, set by a filter before the picker) may only go to pool endpoints whose IP is in
    /// it, as GIE's protocol asks of an endpoint picker; llm-d-router's
    /// `--disable-endpoint-subset-filter` turns that off, as this does. Both builds.
    pub disable_endpoint_subset_filter: bool,
}

/// The module's whole configuration: the pool plus a GIE `EndpointPickerConfig`.
#[derive(Clone, Debug, PartialEq)]
pub struct PickerConfig {
    /// The `pool` section.
    pub pool: PoolConfig,
    /// Everything else.
    pub scheduler: EndpointPickerConfig,
}

/// A configuration ready to serve.
pub struct LoadedPickerConfig {
    /// The pool.
    pub pool: PoolConfig,
    /// The loaded picker.
    pub picker: EndpointPicker,
    /// Warnings and the plugin list.
    pub report: LoadReport,
}

fn duration(path: FieldPath, v: Option<&str>, default_ms: u64) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default_ms),
        Some(s) => parse_duration_ms(s).filter(|&ms| ms > 0).ok_or_else(|| {
            ConfigError::invalid(
                path,
                "must be a positive duration such as \"50ms\" or \"2s\"",
            )
        }),
    }
}

impl PickerConfig {
    /// Parses the module configuration.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field: a missing `pool` or `pool.cluster`, an address that
    /// is not a literal `ip:port`, a duplicate address, bad durations, staleness ≤ interval, and
    /// everything [`EndpointPickerConfig::from_value`] rejects.
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let mut v: Value = parse_document(json)?;
        let pool_path = FieldPath::key("pool");
        let Some(obj) = v.as_object_mut() else {
            return Err(ConfigError::new(
                FieldPath::root(),
                ConfigErrorKind::InvalidJson("the configuration must be a JSON object".into()),
            ));
        };
        let pool_value = obj.remove("pool").ok_or_else(|| {
            ConfigError::invalid(pool_path.clone(), "the 'pool' section is required")
        })?;
        let spec: PoolSpec = serde_path_to_error::deserialize(&pool_value)
            .map_err(|e| ConfigError::from_serde(e).prefixed(&pool_path))?;
        let pool = validate(spec)?;
        let scheduler = EndpointPickerConfig::from_value(&v)?;
        Ok(PickerConfig { pool, scheduler })
    }

    /// Parses and loads: the pool plus a ready [`EndpointPicker`].
    ///
    /// # Errors
    /// As [`Self::from_json`] and [`load_config`].
    pub fn load(json: &str, registry: &Registry) -> Result<LoadedPickerConfig, ConfigError> {
        let mut cfg = PickerConfig::from_json(json)?;
        let (picker, report) = load_config(cfg.scheduler, registry)?;
        if let Some(source) = picker.metrics_source() {
            cfg.pool
                .apply_source(source.port, source.interval.as_deref())?;
        }
        // The direct transport is a plain HTTP/1.1 client: it cannot fetch an https page.
        if cfg.pool.scrape.transport == ScrapeTransport::Direct
            && picker.metrics_source().is_some_and(|m| m.scheme == "https")
        {
            return Err(ConfigError::invalid(
                FieldPath::key("pool").with_key("scrape").with_key("transport"),
                "\"direct\" fetches pages over plain HTTP; the metrics source's scheme is https: use \"cluster\" (the cluster's transport socket speaks TLS)",
            ));
        }
        Ok(LoadedPickerConfig {
            pool: cfg.pool,
            picker,
            report,
        })
    }
}

fn validate(spec: PoolSpec) -> Result<PoolConfig, ConfigError> {
    let base = FieldPath::key("pool");
    let cluster = spec.cluster.filter(|c| !c.is_empty()).ok_or_else(|| {
        ConfigError::invalid(
            base.clone().with_key("cluster"),
            "the Envoy cluster of the pool is required",
        )
    })?;
    let mut endpoints: Vec<PoolEndpoint> = Vec::with_capacity(spec.endpoints.len());
    let unset = Unset {
        interval: spec.scrape.interval.is_none(),
        endpoint_metrics_ports: spec
            .endpoints
            .iter()
            .map(|e| e.metrics_port.is_none())
            .collect(),
    };
    for (i, e) in spec.endpoints.into_iter().enumerate() {
        let path = base.clone().with_key("endpoints").with_index(i);
        let addr: SocketAddr = e.address.parse().map_err(|_| {
            ConfigError::invalid(
                path.clone().with_key("address"),
                alloc::format!("'{}' is not a literal ip:port", e.address),
            )
        })?;
        let address = alloc::format!("{addr}");
        if endpoints.iter().any(|x| x.address == address) {
            return Err(ConfigError::invalid(
                path.with_key("address"),
                alloc::format!("duplicate endpoint '{address}'"),
            ));
        }
        let metrics_address = match e.metrics_port {
            Some(0) => {
                return Err(ConfigError::invalid(
                    path.with_key("metricsPort"),
                    "must be 1..65535",
                ))
            }
            Some(p) => alloc::format!("{}", SocketAddr::new(addr.ip(), p)),
            None => address.clone(),
        };
        endpoints.push(PoolEndpoint {
            address,
            labels: e.labels.into_iter().collect(),
            metrics_address,
        });
    }
    let sp = base.clone().with_key("scrape");
    let interval_ms = duration(
        sp.clone().with_key("interval"),
        spec.scrape.interval.as_deref(),
        50,
    )?;
    let timeout_ms = duration(
        sp.clone().with_key("timeout"),
        spec.scrape.timeout.as_deref(),
        1000,
    )?;
    let staleness_ms = duration(
        sp.clone().with_key("staleness"),
        spec.scrape.staleness.as_deref(),
        2000,
    )?;
    if staleness_ms <= interval_ms {
        return Err(ConfigError::invalid(
            sp.with_key("staleness"),
            alloc::format!("staleness ({staleness_ms} ms) must be longer than the scrape interval ({interval_ms} ms)"),
        ));
    }
    if let Some(p) = &spec.scrape.path {
        if !p.starts_with('/') {
            return Err(ConfigError::invalid(
                sp.with_key("path"),
                "must start with '/'",
            ));
        }
    }
    let max_body_bytes =
        usize::try_from(spec.scrape.max_body_bytes.unwrap_or(8 << 20)).unwrap_or(usize::MAX);
    let body_limit_bytes = match spec.body_limit_bytes {
        Some(0) => {
            return Err(ConfigError::invalid(
                base.with_key("bodyLimitBytes"),
                "must be > 0",
            ))
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => 4 << 20,
    };
    let max_buffered_body_bytes = match spec.max_buffered_body_bytes {
        Some(n) if (n as u128) < body_limit_bytes as u128 => {
            return Err(ConfigError::invalid(
                base.with_key("maxBufferedBodyBytes"),
                alloc::format!("must be at least bodyLimitBytes ({body_limit_bytes})"),
            ))
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => (128usize << 20).max(body_limit_bytes),
    };
    if spec.metrics_port == Some(0) {
        return Err(ConfigError::invalid(
            base.with_key("metricsPort"),
            "must be 1..65535",
        ));
    }
    Ok(PoolConfig {
        endpoints,
        unset,
        metrics_port: spec.metrics_port,
        app_protocol: spec.app_protocol,
        metrics_cluster: spec
            .metrics_cluster
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| cluster.clone()),
        cluster,
        scrape: ScrapeConfig {
            path: spec.scrape.path,
            interval_ms,
            timeout_ms,
            staleness_ms,
            max_body_bytes,
            transport: spec.scrape.transport,
        },
        failure_mode: spec.failure_mode,
        body_limit_bytes,
        max_buffered_body_bytes,
        debug: spec.debug,
        emit_endpoint_scores: spec.emit_endpoint_scores,
        disable_endpoint_subset_filter: spec.disable_endpoint_subset_filter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn minimal_pool_gets_gie_defaults() {
        let c = PickerConfig::from_json(r#"{"pool": {"cluster": "c", "endpoints": [{"address": "10.0.0.1:8000", "metricsPort": 9000}]}}"#).unwrap();
        assert_eq!(c.pool.scrape.interval_ms, 50);
        assert_eq!(c.pool.scrape.timeout_ms, 1000);
        assert_eq!(c.pool.scrape.staleness_ms, 2000);
        assert_eq!(c.pool.scrape.transport, ScrapeTransport::Cluster);
        assert_eq!(c.pool.failure_mode, FailureMode::FailClose);
        assert_eq!(c.pool.metrics_cluster, "c");
        assert_eq!(c.pool.endpoints[0].metrics_address, "10.0.0.1:9000");
        assert_eq!(c.scheduler, EndpointPickerConfig::default());
    }

    #[test]
    fn an_https_metrics_source_loads_through_the_cluster_transport() {
        let l = PickerConfig::load(
            r#"{"pool": {"cluster": "c"}, "plugins": [{"type": "metrics-data-source", "parameters": {"scheme": "https", "insecureSkipVerify": false}}]}"#,
            &Registry::with_builtins(),
        )
        .unwrap();
        let m = l.picker.metrics_source().unwrap();
        assert_eq!(
            (m.scheme.as_str(), m.insecure_skip_verify),
            ("https", false)
        );
    }

    #[test]
    fn the_metrics_source_port_and_interval_fill_what_the_pool_leaves_unset() {
        let load = |pool: &str, params: &str| {
            PickerConfig::load(
                &alloc::format!(
                    r#"{{"pool": {pool}, "plugins": [{{"type": "metrics-data-source", "parameters": {params}}}]}}"#
                ),
                &Registry::with_builtins(),
            )
        };
        let l = load(
            r#"{"cluster": "c", "endpoints": [{"address": "10.0.0.1:8000"}, {"address": "10.0.0.2:8000", "metricsPort": 9100}]}"#,
            r#"{"port": 9090, "interval": "200ms"}"#,
        )
        .unwrap();
        let metrics: Vec<&str> = l
            .pool
            .endpoints
            .iter()
            .map(|e| e.metrics_address.as_str())
            .collect();
        assert_eq!(
            metrics,
            ["10.0.0.1:9090", "10.0.0.2:9100"],
            "an endpoint's own port wins"
        );
        assert_eq!(
            (l.pool.metrics_port, l.pool.scrape.interval_ms),
            (Some(9090), 200)
        );
        // The pool's own settings win.
        let l = load(
            r#"{"cluster": "c", "metricsPort": 7000, "scrape": {"interval": "100ms"}}"#,
            r#"{"port": 9090, "interval": "200ms"}"#,
        )
        .unwrap();
        assert_eq!(
            (l.pool.metrics_port, l.pool.scrape.interval_ms),
            (Some(7000), 100)
        );
        // Checked: a port of 0, an interval that is not a duration or reaches the staleness.
        for (params, field) in [
            (r#"{"port": 0}"#, "port"),
            (r#"{"interval": "often"}"#, "interval"),
            (r#"{"interval": "5s"}"#, "interval"),
        ] {
            let e = load(r#"{"cluster": "c"}"#, params)
                .err()
                .expect(params)
                .to_string();
            assert!(e.contains(field), "{params}: {e}");
        }
    }

    #[test]
    fn errors_name_the_pool_field() {
        let cases = [
            (r#"{}"#, "pool: the 'pool' section is required"),
            (r#"{"pool": {}}"#, "pool.cluster: the Envoy cluster of the pool is required"),
            (r#"{"pool": {"cluster": "c", "endpoints": [{"address": "host:80"}]}}"#, "pool.endpoints[0].address: 'host:80' is not a literal ip:port"),
            (r#"{"pool": {"cluster": "c", "endpoints": [{"address": "10.0.0.1:1"}, {"address": "10.0.0.1:1"}]}}"#, "pool.endpoints[1].address: duplicate endpoint '10.0.0.1:1'"),
            (r#"{"pool": {"cluster": "c", "scrape": {"interval": "3s"}}}"#, "pool.scrape.staleness: staleness (2000 ms) must be longer than the scrape interval (3000 ms)"),
            (r#"{"pool": {"cluster": "c", "scrape": {"timeout": "fast"}}}"#, "pool.scrape.timeout: must be a positive duration such as \"50ms\" or \"2s\""),
            (r#"{"pool": {"cluster": "c", "scrape": {"transport": "udp"}}}"#, "pool.scrape.transport: invalid JSON: unknown variant `udp`, expected `cluster` or `direct`"),
            (r#"{"pool": {"cluster": "c", "failureMode": "Maybe"}}"#, "pool.failureMode: invalid JSON: unknown variant `Maybe`, expected `FailClose` or `FailOpen`"),
            (r#"{"pool": {"cluster": "c", "endpoints": [{"address": "10.0.0.1:1", "weight": 2}]}}"#, "pool.endpoints[0].weight: unknown field 'weight'"),
            (r#"{"pool": {"cluster": "c"}, "plugins": [{"type": "nope"}]}"#, "plugins[0].type: plugin type 'nope' is not registered"),
            (r#"{"pool": {"cluster": "c", "scrape": {"transport": "direct"}}, "plugins": [{"type": "metrics-data-source", "parameters": {"scheme": "https"}}]}"#, "pool.scrape.transport: \"direct\" fetches pages over plain HTTP; the metrics source's scheme is https: use \"cluster\" (the cluster's transport socket speaks TLS)"),
            (r#"{"pool": {"cluster": "c"}, "plugins": [{"type": "metrics-data-source", "parameters": {"scheme": "ftp"}}]}"#, "plugins[0].parameters.scheme: 'ftp' must be http or https"),
        ];
        for (json, want) in cases {
            let got = PickerConfig::load(json, &Registry::with_builtins())
                .err()
                .map(|e| e.to_string());
            assert_eq!(got.as_deref(), Some(want), "{json}");
        }
    }

    #[test]
    fn ipv6_addresses_are_normalised() {
        let c = PickerConfig::from_json(
            r#"{"pool": {"cluster": "c", "endpoints": [{"address": "[::1]:8000"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.pool.endpoints[0].address, "[::1]:8000");
        assert_eq!(
            c.pool.endpoints[0].to_endpoint().address.to_string(),
            "[::1]:8000"
        );
    }
}
