//! `dcgm-data-source` and `dcgm-extractor` (llm-d, Alpha): GPU utilisation from NVIDIA's DCGM
//! exporter beside each model server, as the endpoint attribute
//! `dcgm-extractor/GPUUtilization` (fraction 0..1), for `endpoint-attribute-filter` and
//! `endpoint-attribute-scorer` with `producer: dcgm-extractor` (llm-d-router
//! `datalayer/source/dcgm` and `extractor/dcgm`, in our words).
//!
//! The scraper fetches `path` from each endpoint's IP at `port` every `interval` (default:
//! every scrape tick), besides the metrics page; see [`crate::parse::dcgm`] for the reading.
//! Source parameters: `scheme` (`http`; `https` loads with a warning: TLS is the metrics
//! cluster's transport socket), `path` (default
//! `/metrics`), `port` (default 9400), `insecureSkipVerify` (accepted), `useNodeAddress`
//! (the exporter as a DaemonSet on the node's address: the proxy does not know node addresses,
//! so such a source loads with a warning and is not fetched; the attribute stays missing),
//! `interval` (duration, e.g. `1s`). The extractor takes no parameters and
//! must be wired to the source under `dataLayer.sources`.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::model::endpoint::Endpoint;
use crate::parse::dcgm::gpu_utilization;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{EndpointPageSource, Plugin, TypedName};
use crate::plugins::datalayer::http_source;
use crate::plugins::NoParams;

/// Source type name.
pub const SOURCE_TYPE: &str = "dcgm-data-source";
/// Extractor type name (also the producer name of its attribute).
pub const EXTRACTOR_TYPE: &str = "dcgm-extractor";
/// The attribute the extractor publishes.
pub const GPU_UTILIZATION: &str = "GPUUtilization";
/// The attribute's key in the endpoint's attributes (`producer/attribute`).
pub const GPU_UTILIZATION_KEY: &str = "dcgm-extractor/GPUUtilization";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    scheme: String,
    path: String,
    port: u32,
    insecure_skip_verify: bool,
    use_node_address: bool,
    interval: Option<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            scheme: "http".into(),
            path: "/metrics".into(),
            port: 9400,
            insecure_skip_verify: true,
            use_node_address: false,
            interval: None,
        }
    }
}

/// Builds a [`DcgmSource`].
///
/// # Errors
/// Unknown fields; a scheme other than http/https; a path not starting with `/`; a port outside
/// 1..=65535; an interval that is not a duration.
pub fn source_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let interval_ms = http_source::check(&http_source::HttpSourceParams {
        type_name: SOURCE_TYPE,
        name,
        scheme: &p.scheme,
        path: &p.path,
        cert_paths: ["", "", ""],
        interval: p.interval.as_deref(),
    })?;
    let port = u16::try_from(p.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ConfigError::invalid(FieldPath::key("port"), "must be in 1..=65535"))?;
    if p.use_node_address {
        log::warn!("{SOURCE_TYPE} '{name}': useNodeAddress: the proxy does not know node addresses, so this source is not fetched (run the exporter as a sidecar on the pod IP)");
    }
    let _ = p.insecure_skip_verify;
    Ok(Arc::new(DcgmSource {
        typed_name: TypedName::new(SOURCE_TYPE, name),
        path: p.path,
        port,
        interval_ms,
        enabled: !p.use_node_address,
    }))
}

/// Builds the extractor marker (no parameters).
///
/// # Errors
/// Any parameter.
pub fn extractor_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let _: NoParams = parse_params(params)?;
    Ok(Arc::new(DcgmExtractor {
        typed_name: TypedName::new(EXTRACTOR_TYPE, name),
    }))
}

/// See the module docs.
pub struct DcgmSource {
    typed_name: TypedName,
    path: String,
    port: u16,
    interval_ms: u64,
    /// False with `useNodeAddress`.
    enabled: bool,
}

impl Plugin for DcgmSource {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_page_source(&self) -> Option<&dyn EndpointPageSource> {
        Some(self)
    }
}

impl EndpointPageSource for DcgmSource {
    fn path(&self) -> &str {
        &self.path
    }
    fn port(&self) -> Option<u16> {
        Some(self.port)
    }
    fn interval_ms(&self) -> u64 {
        self.interval_ms
    }
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn accepts_extractor(&self, extractor_type: &str) -> bool {
        extractor_type == EXTRACTOR_TYPE
    }
    fn read(&self, _: &Endpoint, page: &str, out: &mut Vec<(String, f64)>) -> bool {
        // A sidecar exporter serves only this pod's GPUs, so every sample counts (the proxy
        // knows endpoints by address, not by pod name).
        match gpu_utilization(page, None) {
            Some(u) => {
                out.push((String::from(GPU_UTILIZATION_KEY), u));
                true
            }
            None => false,
        }
    }
}

/// The extractor: its reading lives in the source ([`DcgmSource::read`]); this plugin names
/// the wiring, as upstream's configs spell it.
pub struct DcgmExtractor {
    typed_name: TypedName,
}

impl Plugin for DcgmExtractor {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters() {
        let ok = source_factory(
            SOURCE_TYPE,
            Some(&serde_json::json!({"port": 9500, "interval": "1s"})),
            &Handle::new(&[]),
        )
        .unwrap();
        let s = ok.as_page_source().unwrap();
        assert_eq!(
            (s.path(), s.port(), s.interval_ms()),
            ("/metrics", Some(9500), 1000)
        );
        assert!(
            s.accepts_extractor("dcgm-extractor") && !s.accepts_extractor("core-metrics-extractor")
        );
        for (p, field) in [
            (serde_json::json!({"scheme": "ftp"}), "scheme"),
            (serde_json::json!({"port": 0}), "port"),
            (serde_json::json!({"port": 70000}), "port"),
            (serde_json::json!({"interval": "soon"}), "interval"),
        ] {
            let e = source_factory(SOURCE_TYPE, Some(&p), &Handle::new(&[]))
                .err()
                .unwrap();
            assert_eq!(alloc::string::ToString::to_string(&e.path), field, "{e}");
        }
    }

    #[test]
    fn node_address_loads_disabled() {
        let s = source_factory(
            SOURCE_TYPE,
            Some(&serde_json::json!({"useNodeAddress": true})),
            &Handle::new(&[]),
        )
        .unwrap();
        assert!(!s.as_page_source().unwrap().enabled());
    }

    #[test]
    fn reads_the_highest_gpu() {
        let s = source_factory(SOURCE_TYPE, None, &Handle::new(&[])).unwrap();
        let mut out = Vec::new();
        let page = "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} 20\nDCGM_FI_DEV_GPU_UTIL{gpu=\"1\"} 70\n";
        assert!(s
            .as_page_source()
            .unwrap()
            .read(&Endpoint::new("a:1"), page, &mut out));
        assert_eq!(out, alloc::vec![(String::from(GPU_UTILIZATION_KEY), 0.7)]);
        assert!(!s
            .as_page_source()
            .unwrap()
            .read(&Endpoint::new("a:1"), "other 1\n", &mut out));
    }
}
