//! Engine mappings: which Prometheus series hold queue length, running requests, KV usage, LoRA
//! state and cache geometry for each model-server engine, and the extraction of
//! [`EndpointMetrics`](crate::model::endpoint::EndpointMetrics) from a page.
//!
//! Built-in engines (docs/SOURCES.md#gie-metrics): `vllm` (default), `sglang`,
//! `trtllm-serve`, `triton-tensorrt-llm`, `triton` (Triton for non-LLM models: its queue only). The engine of an endpoint comes from its `llm-d.ai/engine-type` label (key
//! configurable; llm-d-router's default since its v0.8, when the key left GIE's prefix), then
//! GIE's `inference.networking.k8s.io/engine-type` (upstream's deprecated fallback), then a
//! plain `engine-type`; an empty value counts as absent. `engineConfigs` in `core-metrics-extractor`'s parameters replace a built-in
//! engine of the same name or add one; an empty spec disables that metric.
//!
//! Rules:
//! - Several series of one metric (data-parallel `engine="0"/"1"`, per-rank series) are
//!   aggregated, not "first wins" (GIE #2950): queue and running counts are **summed**; the KV
//!   fraction is **averaged** (each rank has its own cache of the same size, so the mean is the
//!   fraction of the whole).
//! - LoRA (`vllm:lora_requests_info`): the series with the highest *value* (a timestamp) wins;
//!   `running_lora_adapters`/`waiting_lora_adapters` are comma lists (trimmed, empties dropped,
//!   `""` = none); `max_lora` is an integer.
//! - Cache info: `block_size`/`num_gpu_blocks` labels (vLLM) or `page_size`/`num_pages` (SGLang)
//!   of the cache-info series, or the labels `cacheBlockSizeLabelName`/`cacheNumBlocksLabelName`
//!   name (llm-d-router's overrides; then only those); engines that publish them as gauges use
//!   `cacheBlockSizeSpec` and `cacheNumBlocksSpec` (llm-d-router's names; `blockSizeSpec` and
//!   `numBlocksSpec`, our earlier names, still load). A value like `"None"` leaves the field
//!   unknown (0).
//! - A queue, running or KV-cache sample that is `NaN`, `±Inf` or negative makes the whole page
//!   an error ([`MetricsParseError`]): the scrape fails for that endpoint, which keeps its last
//!   good metrics and leaves the candidates once they are stale. Read as 0 such a value would make
//!   the endpoint look idle and draw traffic. Very large finite values (`1e308`) are kept: they
//!   make the endpoint look busy, the safe direction.
//! - Sample names match with `:` or `_` in the same place, because OpenMetrics output of
//!   prometheus_client mangles `vllm:x` to `vllm_x` (docs/SOURCES.md#exposition-quirks).

use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath, MetricsParseError};
use crate::model::endpoint::Endpoint;
pub use crate::model::endpoint::Extracted;
use crate::parse::prometheus::{samples, Sample};

/// Default label key naming an endpoint's engine (llm-d-router's `DefaultEngineTypeLabelKey`).
pub const DEFAULT_ENGINE_LABEL_KEY: &str = "llm-d.ai/engine-type";
/// GIE's label key for the engine, read after the configured one (llm-d-router keeps it as a
/// deprecated fallback).
pub const GIE_ENGINE_LABEL_KEY: &str = "inference.networking.k8s.io/engine-type";
/// Short label key accepted as well.
pub const SHORT_ENGINE_LABEL_KEY: &str = "engine-type";
/// Engine used for endpoints with no engine label.
pub const DEFAULT_ENGINE: &str = "vllm";

/// A PromQL-style instant selector: `name` or `name{label="value",label2=value2}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricSpec {
    /// Metric name.
    pub name: String,
    /// Label equality matchers.
    pub matchers: Vec<(String, String)>,
}

impl MetricSpec {
    /// Parses a selector; the empty string gives `None` (metric disabled).
    ///
    /// # Errors
    /// A message for a malformed selector.
    pub fn parse(spec: &str) -> Result<Option<MetricSpec>, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Ok(None);
        }
        let (name, rest) = match spec.find('{') {
            Some(i) => (
                spec.get(..i).unwrap_or("").trim(),
                Some(spec.get(i + 1..).unwrap_or("")),
            ),
            None => (spec, None),
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
        {
            return Err(alloc::format!("invalid metric name in selector '{spec}'"));
        }
        let mut matchers = Vec::new();
        if let Some(rest) = rest {
            let body = rest
                .strip_suffix('}')
                .ok_or_else(|| alloc::format!("selector '{spec}' is missing '}}'"))?;
            for part in body.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) = part.split_once('=').ok_or_else(|| {
                    alloc::format!("label matcher '{part}' in '{spec}' needs '='")
                })?;
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                matchers.push((k.trim().into(), v.into()));
            }
        }
        Ok(Some(MetricSpec {
            name: name.into(),
            matchers,
        }))
    }

    fn name_matches(&self, sample_name: &str) -> bool {
        let (a, b) = (self.name.as_bytes(), sample_name.as_bytes());
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(&x, &y)| x == y || (x == b':' && y == b'_'))
    }

    /// True when `sample` is a series of this selector.
    pub fn matches(&self, sample: &Sample<'_>) -> bool {
        self.name_matches(sample.name)
            && self
                .matchers
                .iter()
                .all(|(k, v)| sample.label(k).is_some_and(|got| got == v.as_str()))
    }
}

/// Selectors for one engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineMapping {
    /// Engine name (the label value).
    pub name: String,
    /// Waiting requests.
    pub queued: Option<MetricSpec>,
    /// Running requests.
    pub running: Option<MetricSpec>,
    /// KV usage fraction 0..1.
    pub kv_usage: Option<MetricSpec>,
    /// LoRA info series (labels).
    pub lora: Option<MetricSpec>,
    /// Cache-info series (labels `block_size`/`num_gpu_blocks` or `page_size`/`num_pages`).
    pub cache_info: Option<MetricSpec>,
    /// The cache-info label holding the block size, when configured (else either default).
    pub block_size_label: Option<String>,
    /// The cache-info label holding the number of blocks, when configured (else either default).
    pub num_blocks_label: Option<String>,
    /// Block size in tokens as a gauge value.
    pub block_size: Option<MetricSpec>,
    /// Number of KV blocks as a gauge value.
    pub num_blocks: Option<MetricSpec>,
    /// Custom scalar attributes: (attribute key, selector).
    pub custom: Vec<(String, MetricSpec)>,
}

/// One entry of `engineConfigs` (llm-d-router's `engineConfigParams`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EngineConfigParams {
    /// Engine name.
    pub name: String,
    /// Selector for waiting requests.
    #[serde(default)]
    pub queued_requests_spec: String,
    /// Selector for running requests.
    #[serde(default)]
    pub running_requests_spec: String,
    /// Selector for KV usage (fraction).
    #[serde(default, rename = "kvUsageSpec")]
    pub kv_usage_spec: String,
    /// Selector for LoRA info.
    #[serde(default, rename = "loraSpec")]
    pub lora_spec: String,
    /// Selector for the cache-info series.
    #[serde(default)]
    pub cache_info_spec: String,
    /// Cache-info label holding the block size (default: `block_size`, or `page_size`).
    #[serde(default)]
    pub cache_block_size_label_name: String,
    /// Cache-info label holding the number of blocks (default: `num_gpu_blocks`, or
    /// `num_pages`).
    #[serde(default)]
    pub cache_num_blocks_label_name: String,
    /// Selector for a block-size gauge (tokens per block).
    #[serde(default, alias = "blockSizeSpec")]
    pub cache_block_size_spec: String,
    /// Selector for a number-of-blocks gauge.
    #[serde(default, alias = "numBlocksSpec")]
    pub cache_num_blocks_spec: String,
    /// llm-d's custom metrics: each maps a selector to an endpoint attribute key.
    #[serde(default)]
    pub custom_metrics: Vec<CustomMetricParams>,
}

/// One `customMetrics` entry of an engine config.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CustomMetricParams {
    /// The endpoint attribute the value is stored under (e.g. `custom.queue_depth`).
    pub attribute_key: String,
    /// The series selector (e.g. `custom_queue_depth{tier=gold}`).
    pub metric_spec: String,
}

impl EngineMapping {
    /// Builds a mapping from its config entry.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad selector's field.
    pub fn from_params(p: &EngineConfigParams) -> Result<Self, ConfigError> {
        let spec = |field: &str, s: &str| {
            MetricSpec::parse(s).map_err(|m| ConfigError::invalid(FieldPath::key(field), m))
        };
        let label = |s: &str| Some(String::from(s.trim())).filter(|s| !s.is_empty());
        if p.name.is_empty() {
            return Err(ConfigError::invalid(
                FieldPath::key("name"),
                "engine config name cannot be empty",
            ));
        }
        let mut custom = Vec::with_capacity(p.custom_metrics.len());
        for (i, c) in p.custom_metrics.iter().enumerate() {
            let at = |f: &str| FieldPath::key("customMetrics").with_index(i).with_key(f);
            if c.attribute_key.is_empty() {
                return Err(ConfigError::invalid(at("attributeKey"), "is required"));
            }
            if custom.iter().any(|(k, _)| *k == c.attribute_key) {
                return Err(ConfigError::invalid(
                    at("attributeKey"),
                    alloc::format!("duplicate attribute key '{}'", c.attribute_key),
                ));
            }
            let spec = MetricSpec::parse(&c.metric_spec)
                .map_err(|m| ConfigError::invalid(at("metricSpec"), m))?
                .ok_or_else(|| ConfigError::invalid(at("metricSpec"), "is required"))?;
            custom.push((c.attribute_key.clone(), spec));
        }
        Ok(EngineMapping {
            custom,
            name: p.name.clone(),
            queued: spec("queuedRequestsSpec", &p.queued_requests_spec)?,
            running: spec("runningRequestsSpec", &p.running_requests_spec)?,
            kv_usage: spec("kvUsageSpec", &p.kv_usage_spec)?,
            lora: spec("loraSpec", &p.lora_spec)?,
            cache_info: spec("cacheInfoSpec", &p.cache_info_spec)?,
            block_size_label: label(&p.cache_block_size_label_name),
            num_blocks_label: label(&p.cache_num_blocks_label_name),
            block_size: spec("cacheBlockSizeSpec", &p.cache_block_size_spec)?,
            num_blocks: spec("cacheNumBlocksSpec", &p.cache_num_blocks_spec)?,
        })
    }
}

/// The built-in engine table.
pub fn builtin_engine_configs() -> Vec<EngineConfigParams> {
    let e = |name: &str, q: &str, r: &str, kv: &str, lora: &str, ci: &str, bs: &str, nb: &str| {
        EngineConfigParams {
            name: name.into(),
            queued_requests_spec: q.into(),
            running_requests_spec: r.into(),
            kv_usage_spec: kv.into(),
            lora_spec: lora.into(),
            cache_info_spec: ci.into(),
            cache_block_size_label_name: String::new(),
            cache_num_blocks_label_name: String::new(),
            cache_block_size_spec: bs.into(),
            cache_num_blocks_spec: nb.into(),
            custom_metrics: Vec::new(),
        }
    };
    alloc::vec![
        e(
            "vllm",
            "vllm:num_requests_waiting",
            "vllm:num_requests_running",
            "vllm:kv_cache_usage_perc",
            "vllm:lora_requests_info",
            "vllm:cache_config_info",
            "",
            "",
        ),
        e(
            "sglang",
            "sglang:num_queue_reqs",
            "sglang:num_running_reqs",
            "sglang:token_usage",
            "",
            "sglang:cache_config_info",
            "",
            "",
        ),
        e(
            "trtllm-serve",
            "trtllm_num_requests_waiting",
            "trtllm_num_requests_running",
            "trtllm_kv_cache_utilization",
            "",
            "",
            "trtllm_kv_cache_tokens_per_block",
            "trtllm_kv_cache_max_blocks",
        ),
        e(
            "triton-tensorrt-llm",
            "nv_trt_llm_request_metrics{request_type=\"waiting\"}",
            "nv_trt_llm_request_metrics{request_type=\"scheduled\"}",
            "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"fraction\"}",
            "",
            "",
            "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"tokens_per\"}",
            "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"max\"}",
        ),
        // llm-d-router maps running requests to `nv_inference_exec_count`, a cumulative count
        // of executions: read as a gauge it would grow without bound and make the longest-lived
        // server look the busiest. Left unmapped here (an `engineConfigs` entry can set it).
        e(
            "triton",
            "nv_inference_pending_request_count",
            "",
            "",
            "",
            "",
            "",
            "",
        ),
    ]
}

/// Reads endpoint metrics from pages, per engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsExtractor {
    /// Label key naming the engine.
    pub engine_label_key: String,
    /// Engine for endpoints without the label.
    pub default_engine: String,
    engines: Vec<EngineMapping>,
}

impl Default for MetricsExtractor {
    fn default() -> Self {
        // The built-in table parses; a failure would be caught by the unit test below.
        Self::new(DEFAULT_ENGINE_LABEL_KEY, DEFAULT_ENGINE, &[]).unwrap_or(MetricsExtractor {
            engine_label_key: DEFAULT_ENGINE_LABEL_KEY.into(),
            default_engine: DEFAULT_ENGINE.into(),
            engines: Vec::new(),
        })
    }
}

impl MetricsExtractor {
    /// The built-in engines, with `overrides` replacing or adding engines by name.
    ///
    /// # Errors
    /// A [`ConfigError`] (path relative to the extractor's parameters) for a bad selector or a
    /// `default_engine` that names no engine.
    pub fn new(
        engine_label_key: &str,
        default_engine: &str,
        overrides: &[EngineConfigParams],
    ) -> Result<Self, ConfigError> {
        let mut engines = Vec::new();
        for (i, p) in overrides.iter().enumerate() {
            let m = EngineMapping::from_params(p)
                .map_err(|e| e.prefixed(&FieldPath::key("engineConfigs").with_index(i)))?;
            engines.push(m);
        }
        for p in builtin_engine_configs() {
            if !engines.iter().any(|e| e.name == p.name) {
                engines.push(EngineMapping::from_params(&p)?);
            }
        }
        if !engines.iter().any(|e| e.name == default_engine) {
            return Err(ConfigError::invalid(
                FieldPath::key("defaultEngine"),
                alloc::format!("defaultEngine '{default_engine}' not found in engineConfigs"),
            ));
        }
        Ok(MetricsExtractor {
            engine_label_key: engine_label_key.into(),
            default_engine: default_engine.into(),
            engines,
        })
    }

    /// The mapping for `endpoint` (by its engine label), falling back to the default engine.
    pub fn mapping_for(&self, endpoint: &Endpoint) -> Option<&EngineMapping> {
        let label = |k: &str| endpoint.label(k).filter(|v| !v.is_empty());
        let name = label(&self.engine_label_key)
            .or_else(|| label(GIE_ENGINE_LABEL_KEY))
            .or_else(|| label(SHORT_ENGINE_LABEL_KEY))
            .unwrap_or(&self.default_engine);
        self.engine(name)
            .or_else(|| self.engine(&self.default_engine))
    }

    /// The mapping named `name`.
    pub fn engine(&self, name: &str) -> Option<&EngineMapping> {
        self.engines.iter().find(|e| e.name == name)
    }

    /// Reads `text` with `mapping`.
    ///
    /// # Errors
    /// [`MetricsParseError`] when the page is not valid Prometheus text, or a queue, running or
    /// KV-cache sample is `NaN`, infinite or negative.
    pub fn extract(
        &self,
        mapping: &EngineMapping,
        text: &str,
    ) -> Result<Extracted, MetricsParseError> {
        extract(mapping, text)
    }
}

fn extract(m: &EngineMapping, text: &str) -> Result<Extracted, MetricsParseError> {
    let mut out = Extracted::default();
    let (mut queued, mut running) = (None::<f64>, None::<f64>);
    let (mut kv_sum, mut kv_n) = (0.0f64, 0u32);
    let mut lora_best: Option<(f64, Sample<'_>)> = None;
    let mut cache_info: Option<Sample<'_>> = None;
    let (mut block_size, mut num_blocks) = (None::<f64>, None::<f64>);

    let mut iter = samples(text);
    while let Some(s) = iter.next() {
        let s = s?;
        let hit = |spec: &Option<MetricSpec>| spec.as_ref().is_some_and(|sp| sp.matches(&s));
        // A scheduling gauge that is NaN, ±Inf or negative is not a reading: read as 0 it would
        // make a broken or hostile server look idle and draw traffic. The whole page counts as
        // a failed scrape instead (the endpoint keeps its last good metrics and goes stale).
        let gauge = hit(&m.queued) || hit(&m.running) || hit(&m.kv_usage);
        if gauge && !(s.value.is_finite() && s.value >= 0.0) {
            return Err(MetricsParseError {
                line: iter.line(),
                reason: "scheduling metric is NaN, infinite or negative",
            });
        }
        if hit(&m.queued) {
            *queued.get_or_insert(0.0) += s.value;
        } else if hit(&m.running) {
            *running.get_or_insert(0.0) += s.value;
        } else if hit(&m.kv_usage) {
            kv_sum += s.value;
            kv_n += 1;
        } else if hit(&m.lora) {
            if lora_best.as_ref().is_none_or(|(v, _)| s.value > *v) {
                lora_best = Some((s.value, s));
            }
        } else if hit(&m.cache_info) {
            cache_info.get_or_insert(s);
        } else if hit(&m.block_size) {
            block_size.get_or_insert(finite(s.value));
        } else if hit(&m.num_blocks) {
            num_blocks.get_or_insert(finite(s.value));
        }
        // A custom attribute reads the first matching sample of its series (a page lists one
        // sample per label set, so no later one is newer); only finite values count.
        for (key, spec) in &m.custom {
            if spec.matches(&s)
                && s.value.is_finite()
                && !out.metrics.attributes.iter().any(|(k, _)| k == key)
            {
                out.metrics.attributes.push((key.clone(), s.value));
            }
        }
    }
    out.fields_found += u32::try_from(out.metrics.attributes.len()).unwrap_or(u32::MAX);

    let mx = &mut out.metrics;
    if let Some(q) = queued {
        mx.waiting_queue_size = q as u32; // float→int casts saturate; NaN becomes 0
        out.fields_found += 1;
    }
    if let Some(r) = running {
        mx.running_requests = r as u32;
        out.fields_found += 1;
    }
    if kv_n > 0 {
        mx.kv_cache_usage = (kv_sum / f64::from(kv_n)).clamp(0.0, 1.0);
        out.fields_found += 1;
    }
    if let Some((_, s)) = lora_best {
        mx.active_lora_adapters = split_list(s.label("running_lora_adapters").as_deref());
        mx.waiting_lora_adapters = split_list(s.label("waiting_lora_adapters").as_deref());
        mx.max_lora_adapters = s
            .label("max_lora")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0);
        out.fields_found += 1;
    }
    if let Some(s) = cache_info {
        // The configured label alone, else vLLM's then SGLang's.
        let int = |configured: &Option<String>, a: &str, b: &str| {
            match configured {
                Some(l) => s.label(l),
                None => s.label(a).or_else(|| s.label(b)),
            }
            .and_then(|v| v.trim().parse::<u64>().ok())
        };
        mx.cache_block_size_tokens = int(&m.block_size_label, "block_size", "page_size")
            .map_or(0, |v| v.min(u64::from(u32::MAX)) as u32);
        mx.cache_num_blocks = int(&m.num_blocks_label, "num_gpu_blocks", "num_pages").unwrap_or(0);
        out.fields_found += 1;
    }
    if let Some(v) = block_size {
        mx.cache_block_size_tokens = v as u32;
        out.fields_found += 1;
    }
    if let Some(v) = num_blocks {
        mx.cache_num_blocks = v as u64;
        out.fields_found += 1;
    }
    Ok(out)
}

fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

fn split_list(v: Option<&str>) -> Vec<String> {
    v.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl crate::plugin::MetricsExtraction for MetricsExtractor {
    fn extract_page(&self, endpoint: &Endpoint, page: &str) -> Option<Extracted> {
        self.mapping_for(endpoint)
            .and_then(|m| self.extract(m, page).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses() {
        let x = MetricsExtractor::default();
        for name in ["vllm", "sglang", "trtllm-serve", "triton-tensorrt-llm"] {
            assert!(x.engine(name).is_some(), "{name}");
        }
    }

    #[test]
    fn the_engine_label_is_llm_ds_then_gies_then_the_short_one() {
        let x = MetricsExtractor::default();
        let engine = |labels: &[(&str, &str)]| {
            let e = labels
                .iter()
                .fold(Endpoint::new("a:1"), |e, (k, v)| e.with_label(k, v));
            x.mapping_for(&e)
                .map(|m| m.name.clone())
                .unwrap_or_default()
        };
        assert_eq!(engine(&[]), "vllm");
        assert_eq!(engine(&[("llm-d.ai/engine-type", "sglang")]), "sglang");
        assert_eq!(
            engine(&[("inference.networking.k8s.io/engine-type", "trtllm-serve")]),
            "trtllm-serve"
        );
        assert_eq!(engine(&[("engine-type", "triton")]), "triton");
        assert_eq!(
            engine(&[
                ("engine-type", "triton"),
                ("inference.networking.k8s.io/engine-type", "trtllm-serve"),
                ("llm-d.ai/engine-type", "sglang"),
            ]),
            "sglang"
        );
        // An empty value is no value; an unknown engine falls back to the default.
        assert_eq!(
            engine(&[
                ("llm-d.ai/engine-type", ""),
                ("inference.networking.k8s.io/engine-type", "sglang")
            ]),
            "sglang"
        );
        assert_eq!(engine(&[("llm-d.ai/engine-type", "mystery")]), "vllm");
    }

    #[test]
    fn cache_geometry_from_configured_labels_and_gauges() {
        let engine = |cfg: serde_json::Value| {
            let p: EngineConfigParams = serde_json::from_value(cfg).unwrap();
            MetricsExtractor::new(DEFAULT_ENGINE_LABEL_KEY, "vllm", &[p]).unwrap()
        };
        // llm-d-router's label-name overrides: only the named labels are read.
        let x = engine(serde_json::json!({
            "name": "custom", "cacheInfoSpec": "srv:cache_info",
            "cacheBlockSizeLabelName": "tokens_per_block", "cacheNumBlocksLabelName": "blocks"}));
        let page = "srv:cache_info{tokens_per_block=\"32\",blocks=\"900\",block_size=\"16\"} 1\n";
        let got = x.extract(x.engine("custom").unwrap(), page).unwrap();
        assert_eq!(got.metrics.cache_block_size_tokens, 32);
        assert_eq!(got.metrics.cache_num_blocks, 900);
        // llm-d-router's gauge names, and our earlier ones as aliases.
        let page = "kv_block_tokens 64\nkv_blocks 1200\n";
        for (bs, nb) in [
            ("cacheBlockSizeSpec", "cacheNumBlocksSpec"),
            ("blockSizeSpec", "numBlocksSpec"),
        ] {
            let x = engine(serde_json::json!({
                "name": "gauges", bs: "kv_block_tokens", nb: "kv_blocks"}));
            let got = x.extract(x.engine("gauges").unwrap(), page).unwrap();
            assert_eq!(got.metrics.cache_block_size_tokens, 64, "{bs}");
            assert_eq!(got.metrics.cache_num_blocks, 1200, "{nb}");
        }
    }

    #[test]
    fn selector_parsing() {
        let s = MetricSpec::parse("a:b{x=\"1\", y=2}").unwrap().unwrap();
        assert_eq!(s.name, "a:b");
        assert_eq!(
            s.matchers,
            alloc::vec![("x".into(), "1".into()), ("y".into(), "2".into())]
        );
        assert_eq!(MetricSpec::parse("").unwrap(), None);
        assert!(MetricSpec::parse("bad name").is_err());
        assert!(MetricSpec::parse("x{a=1").is_err());
    }

    #[test]
    fn custom_metrics_become_scalar_attributes() {
        let o: EngineConfigParams = serde_json::from_value(serde_json::json!({
            "name": "vllm",
            "queuedRequestsSpec": "vllm:num_requests_waiting",
            "customMetrics": [
                {"attributeKey": "custom.queue_depth", "metricSpec": "custom_queue_depth{tier=gold}"},
                {"attributeKey": "running", "metricSpec": "vllm:num_requests_running"},
                {"attributeKey": "absent", "metricSpec": "not_on_the_page"}
            ]
        }))
        .unwrap();
        let x = MetricsExtractor::new(DEFAULT_ENGINE_LABEL_KEY, "vllm", &[o]).unwrap();
        let page = "custom_queue_depth{tier=\"silver\"} 9\ncustom_queue_depth{tier=\"gold\"} 4\nvllm:num_requests_running 3\nvllm:num_requests_waiting 1\n";
        let got = x.extract(x.engine("vllm").unwrap(), page).unwrap();
        assert_eq!(got.metrics.attribute("custom.queue_depth"), Some(4.0));
        assert_eq!(got.metrics.attribute("running"), Some(3.0));
        assert_eq!(got.metrics.attribute("absent"), None);
        assert_eq!(got.fields_found, 3, "queue + two attributes");
        // A page with only a custom metric still counts as a scrape with data.
        let only = x
            .extract(x.engine("vllm").unwrap(), "vllm:num_requests_running 2\n")
            .unwrap();
        assert_eq!(only.fields_found, 1);
        let bad = |c: serde_json::Value| {
            let o: EngineConfigParams =
                serde_json::from_value(serde_json::json!({"name": "e", "customMetrics": [c]}))
                    .unwrap();
            alloc::string::ToString::to_string(&EngineMapping::from_params(&o).unwrap_err().path)
        };
        assert_eq!(
            bad(serde_json::json!({"attributeKey": "", "metricSpec": "m"})),
            "customMetrics[0].attributeKey"
        );
        assert_eq!(
            bad(serde_json::json!({"attributeKey": "a", "metricSpec": ""})),
            "customMetrics[0].metricSpec"
        );
    }

    #[test]
    fn override_replaces_builtin_and_empty_spec_disables() {
        let o = EngineConfigParams {
            name: "vllm".into(),
            queued_requests_spec: "my_queue".into(),
            ..Default::default()
        };
        let x = MetricsExtractor::new(DEFAULT_ENGINE_LABEL_KEY, "vllm", &[o]).unwrap();
        let m = x.engine("vllm").unwrap();
        assert_eq!(m.queued.as_ref().unwrap().name, "my_queue");
        assert!(m.kv_usage.is_none());
        let err = MetricsExtractor::new(DEFAULT_ENGINE_LABEL_KEY, "nope", &[]).unwrap_err();
        assert_eq!(
            alloc::format!("{err}"),
            "defaultEngine: defaultEngine 'nope' not found in engineConfigs"
        );
    }

    #[test]
    fn non_finite_or_negative_scheduling_values_fail_the_page() {
        let x = MetricsExtractor::default();
        let m = x.engine("vllm").unwrap();
        for bad in ["NaN", "+Inf", "-Inf", "-1", "-0.5"] {
            for metric in [
                "vllm:num_requests_waiting",
                "vllm:num_requests_running",
                "vllm:kv_cache_usage_perc",
            ] {
                let page = alloc::format!("vllm:num_requests_waiting 1\n{metric} {bad}\n");
                let err = x.extract(m, &page).unwrap_err();
                assert_eq!(err.line, 2, "{metric} {bad}");
            }
        }
        let busy = x
            .extract(
                m,
                "vllm:num_requests_waiting 1e308\nvllm:kv_cache_usage_perc 0\n",
            )
            .unwrap();
        assert_eq!(busy.metrics.waiting_queue_size, u32::MAX, "huge stays huge");
    }
}
