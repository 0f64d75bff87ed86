//! `core-metrics-extractor`: maps each engine's Prometheus series to endpoint metrics.
//!
//! Parameters (llm-d-router `datalayer/extractor/metrics/factories.go`): `engineLabelKey`
//! (default `llm-d.ai/engine-type`; GIE's `inference.networking.k8s.io/engine-type` is read
//! after it), `defaultEngine` (default `vllm`), `engineConfigs[]` of `{name,
//! queuedRequestsSpec, runningRequestsSpec, kvUsageSpec, loraSpec, cacheInfoSpec,
//! cacheBlockSizeLabelName, cacheNumBlocksLabelName, cacheBlockSizeSpec, cacheNumBlocksSpec,
//! customMetrics}`. An entry replaces the
//! built-in engine of the same name. See [`crate::parse::engine`] for the reading rules.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::parse::engine::{
    EngineConfigParams, MetricsExtractor, DEFAULT_ENGINE, DEFAULT_ENGINE_LABEL_KEY,
};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, TypedName};

/// Plugin type name.
pub const TYPE: &str = "core-metrics-extractor";

/// Parameters.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Params {
    /// Label key naming the engine.
    #[serde(default)]
    pub engine_label_key: Option<String>,
    /// Engine for unlabelled endpoints.
    #[serde(default)]
    pub default_engine: Option<String>,
    /// Engine overrides and additions.
    #[serde(default)]
    pub engine_configs: Vec<EngineConfigParams>,
}

/// Builds a [`CoreMetricsExtractor`].
///
/// # Errors
/// Unknown fields; a malformed selector; an empty engine name; a `defaultEngine` that names no
/// engine.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let extractor = MetricsExtractor::new(
        p.engine_label_key
            .as_deref()
            .unwrap_or(DEFAULT_ENGINE_LABEL_KEY),
        p.default_engine.as_deref().unwrap_or(DEFAULT_ENGINE),
        &p.engine_configs,
    )?;
    Ok(Arc::new(CoreMetricsExtractor {
        typed_name: TypedName::new(TYPE, name),
        extractor: Arc::new(extractor),
    }))
}

/// See the module docs.
pub struct CoreMetricsExtractor {
    typed_name: TypedName,
    extractor: Arc<MetricsExtractor>,
}

impl Plugin for CoreMetricsExtractor {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_metrics_extractor(&self) -> Option<crate::plugin::SharedExtractor> {
        Some(self.extractor.clone())
    }
}
