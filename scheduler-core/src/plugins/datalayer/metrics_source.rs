//! `metrics-data-source`: scrape settings of each endpoint's metrics page.
//!
//! Parameters (GIE `datalayer/source/metrics`, llm-d-router's additions): `scheme` (`http` or
//! `https`), `path` (default `/metrics`), `insecureSkipVerify` (default true), `port` (the
//! metrics port when it differs from the serving port, e.g. a sidecar in front of the server;
//! a pool endpoint's own `metricsPort` and `pool.metricsPort` win over it), `interval` (how
//! often to scrape; `pool.scrape.interval` wins over it), `caCertPath`, `clientCertPath`,
//! `clientKeyPath` (accepted with a warning: TLS is the Envoy cluster's, below).
//!
//! The scraper fetches pages through an Envoy cluster, so TLS is that cluster's transport
//! socket: `envoy-config render` gives the scraping cluster an upstream TLS context for
//! `https` (verifying the server's certificate against the system CA bundle when
//! `insecureSkipVerify` is false), and a hand-written Envoy configuration must do the same. The
//! native build's `direct` transport speaks plain HTTP, so `https` with it is refused when the
//! pool loads.

use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{MetricsDataSource, Plugin, TypedName};

/// Plugin type name.
pub const TYPE: &str = "metrics-data-source";

/// Parameters.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MetricsSourceParams {
    /// URL scheme.
    pub scheme: String,
    /// Path of the metrics page.
    pub path: String,
    /// With `https`, leave the server's certificate unverified.
    pub insecure_skip_verify: bool,
    /// The metrics port, when the page is not on the serving port (1..65535).
    pub port: Option<u16>,
    /// How often to scrape (a duration), if set.
    pub interval: Option<String>,
    /// Accepted, not applied (TLS is the Envoy cluster's).
    pub ca_cert_path: String,
    /// Accepted, not applied.
    pub client_cert_path: String,
    /// Accepted, not applied.
    pub client_key_path: String,
}

impl Default for MetricsSourceParams {
    fn default() -> Self {
        MetricsSourceParams {
            scheme: "http".into(),
            path: "/metrics".into(),
            insecure_skip_verify: true,
            port: None,
            interval: None,
            ca_cert_path: String::new(),
            client_cert_path: String::new(),
            client_key_path: String::new(),
        }
    }
}

/// Builds a [`MetricsSource`].
///
/// # Errors
/// Unknown fields; a scheme other than http or https; a path not starting with `/`; a port of 0;
/// an interval that is not a duration.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: MetricsSourceParams = parse_params(params)?;
    super::http_source::check(&super::http_source::HttpSourceParams {
        type_name: TYPE,
        name,
        scheme: &p.scheme,
        path: &p.path,
        cert_paths: [&p.ca_cert_path, &p.client_cert_path, &p.client_key_path],
        interval: p.interval.as_deref(),
    })?;
    if p.port == Some(0) {
        return Err(ConfigError::invalid(
            FieldPath::key("port"),
            "must be 1..65535",
        ));
    }
    Ok(Arc::new(MetricsSource {
        typed_name: TypedName::new(TYPE, name),
        params: p,
    }))
}

/// See the module docs.
pub struct MetricsSource {
    typed_name: TypedName,
    /// The validated settings.
    pub params: MetricsSourceParams,
}

impl MetricsSource {
    /// The default source (`http`, `/metrics`).
    pub fn default_source() -> Self {
        MetricsSource {
            typed_name: TypedName::new(TYPE, TYPE),
            params: MetricsSourceParams::default(),
        }
    }
}

impl Plugin for MetricsSource {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_metrics_source(&self) -> Option<&dyn MetricsDataSource> {
        Some(self)
    }
}

impl MetricsDataSource for MetricsSource {
    fn scheme(&self) -> &str {
        &self.params.scheme
    }
    fn path(&self) -> &str {
        &self.params.path
    }
    fn insecure_skip_verify(&self) -> bool {
        self.params.insecure_skip_verify
    }
    fn port(&self) -> Option<u16> {
        self.params.port
    }
    fn interval(&self) -> Option<&str> {
        self.params.interval.as_deref()
    }
}
