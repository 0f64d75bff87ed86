//! GIE's `EndpointPickerConfig` as JSON: the same field names (`plugins[].name/type/parameters`,
//! `schedulingProfiles[].name/plugins[].pluginRef/weight`, `featureGates`, `saturationDetector`,
//! `parser`, `dataLayer`, …), plus fields of ours: `minStability`, `inferenceObjectives` and
//! `inferenceModelRewrites` (GIE's InferenceObjective and InferenceModelRewrite objects, which
//! upstream reads from Kubernetes). Unknown fields are rejected with their path.
//!
//! [`loader::load`] turns a config into an [`crate::EndpointPicker`]; defaults are GIE's
//! ([`defaults`]).

pub mod defaults;
pub mod duration;
pub mod loader;
pub mod pool;
pub mod rewrite;
#[cfg(feature = "schema")]
pub mod schema;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ConfigError, ConfigErrorKind, FieldPath};
use crate::plugin::Stability;

/// API versions accepted in `apiVersion`.
pub const API_VERSIONS: &[&str] = &[
    "inference.networking.x-k8s.io/v1alpha1",
    "llm-d.ai/v1alpha1",
];
/// The only `kind`.
pub const KIND: &str = "EndpointPickerConfig";

/// The whole configuration document.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointPickerConfig {
    /// One of [`API_VERSIONS`], optional.
    #[serde(default)]
    pub api_version: Option<String>,
    /// `EndpointPickerConfig`, optional.
    #[serde(default)]
    pub kind: Option<String>,
    /// Feature gates: a list of names (`"gate"` enables, `"gate=false"` disables) or a map of
    /// name → bool.
    #[serde(default)]
    pub feature_gates: FeatureGatesSpec,
    /// Plugin instances.
    #[serde(default)]
    pub plugins: Vec<PluginSpec>,
    /// Scheduling profiles.
    #[serde(default)]
    pub scheduling_profiles: Vec<ProfileSpec>,
    /// The saturation detector (default `utilization-detector`).
    #[serde(default)]
    pub saturation_detector: Option<PluginRefSpec>,
    /// The request parser (default `openai-parser`); llm-d's deprecated form of
    /// `requestHandler.parsers`.
    #[serde(default)]
    pub parser: Option<PluginRefSpec>,
    /// llm-d's request handler: the parsers, in order.
    #[serde(default)]
    pub request_handler: Option<RequestHandlerSpec>,
    /// Metrics sources and extractors (default: `metrics-data-source` + `core-metrics-extractor`;
    /// an explicit `{}` turns metrics collection off, as in GIE).
    #[serde(default)]
    pub data_layer: Option<DataLayerSpec>,
    /// GIE's flow-control layer: not implemented. Without the `flowControl` feature gate its
    /// settings are ignored with a warning and `flowControl.saturationDetector` names the
    /// saturation detector (as in llm-d); with the gate it is refused.
    #[serde(default)]
    pub flow_control: Option<Value>,
    /// Lowest plugin stability this operator accepts (`Alpha`, `Beta` or `Stable`; default
    /// `Alpha`, i.e. gates decide).
    #[serde(default)]
    pub min_stability: Option<Stability>,
    /// Priority per objective name, chosen by the `x-llm-d-inference-objective` header
    /// (or GIE's older `x-gateway-inference-objective`; GIE's InferenceObjective; priority < 0 is
    /// sheddable).
    #[serde(default)]
    pub inference_objectives: Vec<ObjectiveSpec>,
    /// GIE's InferenceModelRewrite objects, oldest first ([`crate::rewrite`]).
    #[serde(default)]
    pub inference_model_rewrites: Vec<rewrite::ModelRewriteSpec>,
}

/// `featureGates` in either spelling.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum FeatureGatesSpec {
    /// `["gateA", "gateB=false"]`.
    List(Vec<String>),
    /// `{"gateA": true, "gateB": false}`.
    Map(BTreeMap<String, bool>),
}

impl Default for FeatureGatesSpec {
    fn default() -> Self {
        FeatureGatesSpec::List(Vec::new())
    }
}

impl FeatureGatesSpec {
    /// `(name, enabled, path)` for every gate.
    ///
    /// # Errors
    /// An entry like `gate=maybe`.
    pub fn entries(&self) -> Result<Vec<(String, bool, FieldPath)>, ConfigError> {
        let base = FieldPath::key("featureGates");
        match self {
            FeatureGatesSpec::List(l) => l
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let path = base.clone().with_index(i);
                    match g.split_once('=') {
                        None => Ok((g.trim().into(), true, path)),
                        Some((n, "true")) => Ok((n.trim().into(), true, path)),
                        Some((n, "false")) => Ok((n.trim().into(), false, path)),
                        Some(_) => Err(ConfigError::invalid(
                            path,
                            "a feature gate is 'name', 'name=true' or 'name=false'",
                        )),
                    }
                })
                .collect(),
            FeatureGatesSpec::Map(m) => Ok(m
                .iter()
                .map(|(n, &on)| (n.clone(), on, base.clone().with_key(n)))
                .collect()),
        }
    }
}

/// One entry of `plugins`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// Instance name; defaults to the type.
    #[serde(default)]
    pub name: Option<String>,
    /// Registered plugin type.
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    /// Raw parameters handed to the factory.
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// One scheduling profile.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// Profile name (required, unique).
    #[serde(default)]
    pub name: Option<String>,
    /// Plugins of the profile in order: filters run in this order.
    #[serde(default)]
    pub plugins: Vec<ProfilePluginSpec>,
}

/// A plugin reference inside a profile.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfilePluginSpec {
    /// Name of a configured plugin.
    #[serde(default)]
    pub plugin_ref: Option<String>,
    /// Scorer weight (default 1.0; used only for scorers; not normalized).
    #[serde(default)]
    pub weight: Option<f64>,
}

/// `{ "pluginRef": "..." }`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginRefSpec {
    /// Name of a configured plugin.
    #[serde(default)]
    pub plugin_ref: Option<String>,
}

/// `dataLayer`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DataLayerSpec {
    /// Metrics sources.
    #[serde(default)]
    pub sources: Vec<DataSourceSpec>,
    /// llm-d: inject the default metrics source; `false` with no sources turns metrics off.
    #[serde(default)]
    pub inject_defaults: Option<bool>,
    /// llm-d: the plugin that discovers the pool's endpoints (`file-discovery`). Here the pool
    /// is the `pool` section or the Envoy cluster: the reference is checked and then left to
    /// `envoy-config render`, which reads the file into `pool.endpoints` (with a warning).
    #[serde(default)]
    pub discovery: Option<PluginRefSpec>,
    /// llm-d: discovery of peer picker replicas (cross-replica state); ignored with a warning.
    #[serde(default)]
    pub peer_discovery: Option<PluginRefSpec>,
    /// llm-d: cross-replica state sync; ignored with a warning.
    #[serde(default)]
    pub cross_replica_syncer_plugin_ref: Option<String>,
    /// llm-d: its interval; ignored with a warning.
    #[serde(default)]
    pub cross_replica_sync_interval: Option<String>,
}

/// llm-d's `requestHandler`: the parsers by reference, in order (it replaces the top-level
/// `parser`; when both are set this one wins).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestHandlerSpec {
    /// Parser references.
    #[serde(default)]
    pub parsers: Vec<PluginRefSpec>,
}

/// One data source and its extractors.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DataSourceSpec {
    /// A `metrics-data-source` plugin.
    #[serde(default)]
    pub plugin_ref: Option<String>,
    /// `core-metrics-extractor` plugins.
    #[serde(default)]
    pub extractors: Vec<PluginRefSpec>,
}

/// One InferenceObjective.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ObjectiveSpec {
    /// Objective name (the header value).
    pub name: String,
    /// Priority; < 0 is sheddable. Default 0.
    #[serde(default)]
    pub priority: i32,
}

/// Deserializes one whole JSON document into `T`: errors carry the offending field's path, and
/// trailing characters after the document are rejected.
///
/// # Errors
/// A [`ConfigError`] at the field path (root for malformed or trailing text).
pub fn parse_document<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(ConfigError::from_serde)?;
    de.end().map_err(|e| {
        ConfigError::new(
            FieldPath::root(),
            ConfigErrorKind::InvalidJson(alloc::format!("{e}")),
        )
    })?;
    Ok(value)
}

impl EndpointPickerConfig {
    /// Parses a JSON document.
    ///
    /// # Errors
    /// A [`ConfigError`] with the path of the offending field (unknown fields included).
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        parse_document(json)
    }

    /// Builds from an already-parsed JSON value (e.g. what is left after a wrapper took its own
    /// sections out).
    ///
    /// # Errors
    /// As [`Self::from_json`].
    pub fn from_value(v: &Value) -> Result<Self, ConfigError> {
        serde_path_to_error::deserialize(v).map_err(ConfigError::from_serde)
    }
}
