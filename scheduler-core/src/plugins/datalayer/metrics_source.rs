//! `metrics-data-source`: scrape settings of each endpoint's metrics page.
//!
//! Parameters (GIE `datalayer/source/metrics`): `scheme` (`http` or `https`), `path` (default
//! `/metrics`), `insecureSkipVerify` (default true).
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
}

impl Default for MetricsSourceParams {
    fn default() -> Self {
        MetricsSourceParams {
            scheme: "http".into(),
            path: "/metrics".into(),
            insecure_skip_verify: true,
        }
    }
}

/// Builds a [`MetricsSource`].
///
/// # Errors
/// Unknown fields; a scheme other than http or https; a path not starting with `/`.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: MetricsSourceParams = parse_params(params)?;
    match p.scheme.as_str() {
        "http" => {}
        "https" => log::warn!(
            "{TYPE} '{name}': scheme https: pages are fetched through the pool's Envoy cluster, whose transport socket must speak TLS (envoy-config render adds it)"
        ),
        other => {
            return Err(ConfigError::invalid(
                FieldPath::key("scheme"),
                alloc::format!("'{other}' must be http or https"),
            ))
        }
    }
    if !p.path.starts_with('/') {
        return Err(ConfigError::invalid(
            FieldPath::key("path"),
            "must start with '/'",
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
}
