//! llm-d's multi-cluster data layer (Alpha): a cluster-scoped picker whose endpoints are whole
//! clusters (their gateways), scored from each cluster's pool-aggregate metrics (llm-d-router
//! `datalayer/{discovery/file,source/metrics,extractor/metrics}/multicluster.go`, in our words).
//!
//! - `multicluster-file-discovery`: the clusters file (same format as `file-discovery`; an
//!   address may be a hostname). Like `file-discovery` it is accepted in `dataLayer.discovery`;
//!   the pool is the `pool` section or the Envoy cluster (a hostname needs a DNS cluster there).
//!   Parameters: `path` (required), `watchFile`.
//! - `multicluster-metrics-data-source`: each cluster's metrics page (`path`, default
//!   `/metrics`; `scheme` http, or https with a warning: TLS is the metrics cluster's; certificate
//!   paths accepted with a warning).
//! - `multicluster-metrics-extractor`: reads the pool averages
//!   (`kvCacheUtilizationMetric`, default `llm_d_epp_average_kv_cache_utilization`;
//!   `queueSizeMetric`, default `llm_d_epp_average_queue_size`) into the attributes
//!   [`KV_CACHE_UTILIZATION_KEY`] and [`QUEUE_SIZE_KEY`] that the multi-cluster scorers read. A
//!   page with neither is a failed scrape.

use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::model::endpoint::{Endpoint, Extracted};
use crate::parse::engine::MetricSpec;
use crate::parse::prometheus::samples;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{MetricsDataSource, MetricsExtraction, Plugin, SharedExtractor, TypedName};
use crate::plugins::datalayer::http_source;

/// Discovery type name.
pub const DISCOVERY_TYPE: &str = "multicluster-file-discovery";
/// Source type name.
pub const SOURCE_TYPE: &str = "multicluster-metrics-data-source";
/// Extractor type name.
pub const EXTRACTOR_TYPE: &str = "multicluster-metrics-extractor";
/// Attribute: a cluster's average KV-cache utilisation (fraction 0..1).
pub const KV_CACHE_UTILIZATION_KEY: &str = "llm-d.ai/multicluster-kv-cache-utilization";
/// Attribute: a cluster's average queue size (requests).
pub const QUEUE_SIZE_KEY: &str = "llm-d.ai/multicluster-queue-size";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct DiscoveryParams {
    path: String,
    watch_file: bool,
}

/// Builds the discovery plugin.
///
/// # Errors
/// Unknown fields; `path` missing.
pub fn discovery_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: DiscoveryParams = parse_params(params)?;
    if p.path.is_empty() {
        return Err(ConfigError::invalid(FieldPath::key("path"), "is required"));
    }
    let _ = p.watch_file;
    Ok(Arc::new(Discovery {
        typed_name: TypedName::new(DISCOVERY_TYPE, name),
        path: p.path,
    }))
}

/// See the module docs.
pub struct Discovery {
    typed_name: TypedName,
    path: String,
}

impl Plugin for Discovery {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn endpoint_discovery_file(&self) -> Option<&str> {
        Some(&self.path)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct SourceParams {
    scheme: String,
    path: String,
    insecure_skip_verify: bool,
    ca_cert_path: String,
    client_cert_path: String,
    client_key_path: String,
    interval: Option<String>,
}

impl Default for SourceParams {
    fn default() -> Self {
        SourceParams {
            scheme: "http".into(),
            path: "/metrics".into(),
            insecure_skip_verify: true,
            ca_cert_path: String::new(),
            client_cert_path: String::new(),
            client_key_path: String::new(),
            interval: None,
        }
    }
}

/// Builds the metrics source.
///
/// # Errors
/// Unknown fields; a scheme other than http/https; a path not starting with `/`.
pub fn source_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: SourceParams = parse_params(params)?;
    let _ = p.insecure_skip_verify;
    let interval_ms = http_source::check(&http_source::HttpSourceParams {
        type_name: SOURCE_TYPE,
        name,
        scheme: &p.scheme,
        path: &p.path,
        cert_paths: [&p.ca_cert_path, &p.client_cert_path, &p.client_key_path],
        interval: p.interval.as_deref(),
    })?;
    if interval_ms > 0 {
        log::warn!("{SOURCE_TYPE} '{name}': interval is ignored: the metrics page is read every pool.scrape.interval");
    }
    Ok(Arc::new(Source {
        typed_name: TypedName::new(SOURCE_TYPE, name),
        path: p.path,
    }))
}

/// See the module docs.
pub struct Source {
    typed_name: TypedName,
    path: String,
}

impl Plugin for Source {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_metrics_source(&self) -> Option<&dyn MetricsDataSource> {
        Some(self)
    }
}

impl MetricsDataSource for Source {
    fn scheme(&self) -> &str {
        "http"
    }
    fn path(&self) -> &str {
        &self.path
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct ExtractorParams {
    kv_cache_utilization_metric: String,
    queue_size_metric: String,
}

/// Builds the extractor.
///
/// # Errors
/// Unknown fields; a metric selector that does not parse.
pub fn extractor_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: ExtractorParams = parse_params(params)?;
    let spec = |field: &str, v: &str, default: &str| -> Result<MetricSpec, ConfigError> {
        let v = if v.is_empty() { default } else { v };
        MetricSpec::parse(v)
            .map_err(|m| ConfigError::invalid(FieldPath::key(field), m))?
            .ok_or_else(|| ConfigError::invalid(FieldPath::key(field), "is empty"))
    };
    let reader = PoolAverages {
        kv: spec(
            "kvCacheUtilizationMetric",
            &p.kv_cache_utilization_metric,
            "llm_d_epp_average_kv_cache_utilization",
        )?,
        queue: spec(
            "queueSizeMetric",
            &p.queue_size_metric,
            "llm_d_epp_average_queue_size",
        )?,
    };
    Ok(Arc::new(Extractor {
        typed_name: TypedName::new(EXTRACTOR_TYPE, name),
        reader: Arc::new(reader),
    }))
}

/// Reads the two pool averages.
pub struct PoolAverages {
    kv: MetricSpec,
    queue: MetricSpec,
}

impl MetricsExtraction for PoolAverages {
    fn extract_page(&self, _: &Endpoint, page: &str) -> Option<Extracted> {
        let mut out = Extracted::default();
        let (mut kv, mut queue) = (None, None);
        for s in samples(page) {
            let s = s.ok()?;
            if !(s.value.is_finite() && s.value >= 0.0) {
                continue;
            }
            if kv.is_none() && self.kv.matches(&s) {
                kv = Some(s.value);
            } else if queue.is_none() && self.queue.matches(&s) {
                queue = Some(s.value);
            }
        }
        for (key, v) in [(KV_CACHE_UTILIZATION_KEY, kv), (QUEUE_SIZE_KEY, queue)] {
            if let Some(v) = v {
                out.metrics.attributes.push((String::from(key), v));
                out.fields_found += 1;
            }
        }
        Some(out)
    }
}

/// See the module docs.
pub struct Extractor {
    typed_name: TypedName,
    reader: Arc<PoolAverages>,
}

impl Plugin for Extractor {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_metrics_extractor(&self) -> Option<SharedExtractor> {
        Some(self.reader.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_averages_become_attributes() {
        let x = extractor_factory(EXTRACTOR_TYPE, None, &Handle::new(&[])).unwrap();
        let ex = x.as_metrics_extractor().unwrap();
        let page =
            "llm_d_epp_average_kv_cache_utilization 0.42\nllm_d_epp_average_queue_size 3.5\n";
        let got = ex.extract_page(&Endpoint::new("gw:80"), page).unwrap();
        assert_eq!(got.metrics.attribute(KV_CACHE_UTILIZATION_KEY), Some(0.42));
        assert_eq!(got.metrics.attribute(QUEUE_SIZE_KEY), Some(3.5));
        assert_eq!(got.fields_found, 2);
        let none = ex
            .extract_page(&Endpoint::new("gw:80"), "vllm:num_requests_waiting 1\n")
            .unwrap();
        assert_eq!(none.fields_found, 0);
        let custom = extractor_factory(
            EXTRACTOR_TYPE,
            Some(&serde_json::json!({"queueSizeMetric": "inference_pool_average_queue_size{name=\"p\"}"})),
            &Handle::new(&[]),
        )
        .unwrap();
        let got = custom
            .as_metrics_extractor()
            .unwrap()
            .extract_page(
                &Endpoint::new("gw:80"),
                "inference_pool_average_queue_size{name=\"p\"} 7\n",
            )
            .unwrap();
        assert_eq!(got.metrics.attribute(QUEUE_SIZE_KEY), Some(7.0));
    }

    #[test]
    fn parameters() {
        assert!(discovery_factory(DISCOVERY_TYPE, None, &Handle::new(&[])).is_err());
        assert!(source_factory(
            SOURCE_TYPE,
            Some(&serde_json::json!({"scheme": "https", "caCertPath": "/ca"})),
            &Handle::new(&[])
        )
        .is_ok());
        assert!(source_factory(
            SOURCE_TYPE,
            Some(&serde_json::json!({"scheme": "ftp"})),
            &Handle::new(&[])
        )
        .is_err());
    }
}
