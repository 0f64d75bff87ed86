//! A JSON Schema (draft 2020-12) of the module configuration, generated from the same types the
//! loader deserializes, so it cannot drift from them: the `pool` section and every
//! `EndpointPickerConfig` field, with unknown fields refused as the loader refuses them. Plugin
//! `parameters` are free-form objects here (each plugin checks its own). `pool` is optional in
//! the schema because `envoy-config` accepts a bare `EndpointPickerConfig` and adds it; inside
//! Envoy the module requires it.

use crate::config::pool::PoolSpec;
use crate::config::EndpointPickerConfig;

/// The module configuration: `pool` plus GIE's / llm-d's `EndpointPickerConfig` fields.
#[derive(schemars::JsonSchema)]
#[schemars(title = "Endpoint picker configuration", deny_unknown_fields)]
// Never built: the type exists to describe the document.
#[allow(dead_code)]
pub struct ModuleConfig {
    /// Which endpoints form the pool, the Envoy cluster that reaches them, scrape timing,
    /// failure mode and request limits (this project's section).
    pool: Option<PoolSpec>,
    /// GIE's / llm-d's `EndpointPickerConfig` fields.
    #[schemars(flatten)]
    config: EndpointPickerConfig,
}

/// The schema, as a JSON value.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ModuleConfig)).unwrap_or_default()
}
