//! The parameters llm-d's HTTP data sources share (`scheme`, `path`, TLS paths, `interval`),
//! checked once for every source type of ours that fetches a page per endpoint or cluster
//! (`dcgm-data-source`, `models-data-source`, `multicluster-metrics-data-source`).
//!
//! Pages are fetched through Envoy's metrics cluster, so TLS is that cluster's transport
//! socket: `scheme: https` and certificate paths load with a warning instead of being applied
//! here.

use alloc::format;

use crate::error::{ConfigError, FieldPath};

/// What a source's shared parameters say, as written in the config.
pub struct HttpSourceParams<'a> {
    /// Source type (for warnings).
    pub type_name: &'a str,
    /// Instance name (for warnings).
    pub name: &'a str,
    /// `scheme`.
    pub scheme: &'a str,
    /// `path`.
    pub path: &'a str,
    /// `caCertPath`, `clientCertPath`, `clientKeyPath` (empty when unset).
    pub cert_paths: [&'a str; 3],
    /// `interval` (a duration), if set.
    pub interval: Option<&'a str>,
}

/// Checks the shared parameters; returns the fetch interval in ms (0: every scrape tick).
///
/// # Errors
/// A scheme other than http/https; a path not starting with `/`; an interval that is not a
/// duration.
pub fn check(p: &HttpSourceParams<'_>) -> Result<u64, ConfigError> {
    let (ty, name) = (p.type_name, p.name);
    match p.scheme {
        "http" => {}
        "https" => log::warn!("{ty} '{name}': scheme https: the page is fetched through the metrics cluster, whose transport socket decides TLS"),
        other => {
            return Err(ConfigError::invalid(
                FieldPath::key("scheme"),
                format!("'{other}' must be http or https"),
            ))
        }
    }
    if !p.path.starts_with('/') {
        return Err(ConfigError::invalid(
            FieldPath::key("path"),
            "must start with '/'",
        ));
    }
    if p.cert_paths.iter().any(|c| !c.is_empty()) {
        log::warn!("{ty} '{name}': certificate paths are ignored: TLS to endpoints belongs on the Envoy cluster");
    }
    match p.interval.filter(|s| !s.is_empty()) {
        None => Ok(0),
        Some(s) => crate::config::duration::parse_duration_ms(s).ok_or_else(|| {
            ConfigError::invalid(
                FieldPath::key("interval"),
                format!("'{s}' is not a duration"),
            )
        }),
    }
}
