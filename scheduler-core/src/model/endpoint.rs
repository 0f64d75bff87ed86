//! An endpoint of the pool (one model-server `ip:port`) and the metrics scraped from it.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// Time constant of [`EndpointMetrics::load_average`], milliseconds.
pub const LOAD_AVERAGE_MS: u64 = 5_000;

/// The metrics of one endpoint, as extracted from its `/metrics` page by
/// [`crate::parse::engine::MetricsExtractor`].
///
/// Field meanings follow GIE's `datalayer.Metrics` (docs/SOURCES.md#gie-metrics). Several series of one metric
/// (data-parallel ranks) are already aggregated: counts summed, the KV fraction averaged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointMetrics {
    /// Requests waiting in the engine's queue (`vllm:num_requests_waiting`).
    pub waiting_queue_size: u32,
    /// Requests in the running batch (`vllm:num_requests_running`).
    pub running_requests: u32,
    /// KV-cache usage as a fraction 0..1 (`vllm:kv_cache_usage_perc`).
    pub kv_cache_usage: f64,
    /// LoRA adapters loaded and running (`running_lora_adapters`).
    pub active_lora_adapters: Vec<String>,
    /// LoRA adapters with requests waiting (`waiting_lora_adapters`).
    pub waiting_lora_adapters: Vec<String>,
    /// The most adapters the server keeps loaded at once (`max_lora`); 0 when unknown.
    pub max_lora_adapters: u32,
    /// KV-cache block size in tokens (`block_size` of `vllm:cache_config_info`); 0 when unknown.
    pub cache_block_size_tokens: u32,
    /// Number of KV-cache blocks on the GPU (`num_gpu_blocks`); 0 when unknown.
    pub cache_num_blocks: u64,
    /// When these metrics were scraped, in milliseconds since the Unix epoch; 0 = never.
    pub update_time_ms: u64,
    /// Waiting plus running requests, exponentially averaged by the scraper over its samples
    /// with a time constant of [`LOAD_AVERAGE_MS`] (requests; 0 before the first scrape). Every
    /// worker of one proxy sees the same value, and proxies scraping the same servers nearly
    /// the same, where the last sample alone jumps with each scrape.
    pub load_average: f64,
    /// Scalar attributes from the engine's `customMetrics` (attribute key → value), in
    /// configuration order; read by `endpoint-attribute-filter` and `endpoint-attribute-scorer`.
    pub attributes: Vec<(String, f64)>,
}

impl EndpointMetrics {
    /// The scalar attribute `key`, if the last scrape had it.
    pub fn attribute(&self, key: &str) -> Option<f64> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }

    /// True when the metrics were never scraped or are older than `threshold_ms` at `now_ms`.
    pub fn is_stale(&self, now_ms: u64, threshold_ms: u64) -> bool {
        self.update_time_ms == 0 || now_ms.saturating_sub(self.update_time_ms) > threshold_ms
    }

    /// Age of the metrics in milliseconds at `now_ms` (`u64::MAX` when never scraped).
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        if self.update_time_ms == 0 {
            u64::MAX
        } else {
            now_ms.saturating_sub(self.update_time_ms)
        }
    }
}

/// One endpoint of the pool: its address, labels and latest metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `ip:port` of the inference server; the value put in `x-gateway-destination-endpoint`.
    pub address: String,
    /// Labels (role, `engine-type`, anything a label selector may match), sorted by key.
    pub labels: Vec<(String, String)>,
    /// Latest scraped metrics.
    pub metrics: EndpointMetrics,
}

impl Endpoint {
    /// An endpoint with no labels and empty metrics.
    pub fn new(address: impl Into<String>) -> Self {
        Endpoint {
            address: address.into(),
            labels: Vec::new(),
            metrics: EndpointMetrics::default(),
        }
    }

    /// The value of label `key`, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Builder: sets label `key` to `value`.
    #[must_use]
    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.labels.retain(|(k, _)| k != key);
        self.labels.push((key.into(), value.into()));
        self.labels.sort();
        self
    }

    /// Builder: replaces the metrics.
    #[must_use]
    pub fn with_metrics(mut self, metrics: EndpointMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The IP part of the address (brackets kept off for IPv6).
    pub fn ip(&self) -> &str {
        let a = self.address.as_str();
        match a.rfind(':') {
            Some(i) if !a.starts_with('[') => a.get(..i).unwrap_or(a),
            _ => a
                .strip_prefix('[')
                .and_then(|r| r.split(']').next())
                .unwrap_or(a),
        }
    }
}

/// The result of reading one page.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extracted {
    /// Metrics read (`update_time_ms` left 0 for the caller to set).
    pub metrics: EndpointMetrics,
    /// How many of the mapped fields were found; 0 means the page had none of them.
    pub fields_found: u32,
}
