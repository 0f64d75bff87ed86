//! Turns an [`EndpointPickerConfig`] into a ready [`EndpointPicker`]: checks the lifecycle rules,
//! instantiates every plugin once, validates references, applies GIE's system defaults and wires
//! each plugin into every slot its type fills.
//!
//! Order (GIE `configloader.go` + `defaults.go` at GIE@1748e829, docs/SOURCES.md#gie-config-loading),
//! one file per stage, each a function with a typed result that [`load_config`] strings
//! together:
//! 1. `loader/header.rs`: `apiVersion`/`kind`; `flowControl` without its gate (warned, its
//!    `saturationDetector` honoured).
//! 2. `loader/gates.rs`: feature gates (unknown gate → error). No
//!    plugins and no profiles → the built-in default config.
//! 3. `loader/plugins.rs`, through `loader/instantiate.rs`: plugins in order: type present, name unique, type
//!    registered (else a "did you mean"), not a tombstone, stability ≥ `minStability` (Alpha
//!    warned), gate not off, deprecation warned; factory called with the plugins before it in
//!    reach (one that names a plugin defined later is built after the rest); unknown
//!    parameters are warned and ignored; a `prefix-cache-scorer`'s parameters configure the
//!    implicit producer.
//! 4. `loader/profiles.rs`: names present and unique, refs present and defined, weights finite and
//!    ≥ 0; no profiles → one `default` profile with every filter, scorer and picker, in list
//!    order. Exactly one profile handler (a lone profile gets `single-profile-handler`); a
//!    profile without picker gets the first picker configured, else `max-score-picker`.
//! 5. `loader/wiring.rs`: saturation detector (default `utilization-detector`), parsers (default
//!    `openai-parser`); `loader/data_layer.rs` (default `metrics-data-source` +
//!    `core-metrics-extractor`).
//! 6. `loader/flow_control.rs`: with the `flowControl` gate, the `flowControl` section (bands,
//!    limits, TTLs, policies; default policies created when missing).
//! 7. `loader/producers.rs`: missing data producers are created from the registry's defaults;
//!    producers are ordered so each runs after the producers of what it consumes (a cycle is
//!    an error).
//!
//! Every problem is a returned [`ConfigError`] naming its field path; nothing panics.

mod data_layer;
mod flow_control;
mod gates;
mod header;
mod instantiate;
mod plugins;
mod producers;
mod profiles;
mod wiring;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::config::defaults::DEFAULT_CONFIG_JSON;
use crate::config::EndpointPickerConfig;
use crate::director::EndpointPicker;
use crate::error::{ConfigError, FieldPath};
use crate::plugin::{Plugin, Registry, Stability};
use crate::scheduler::Scheduler;

use instantiate::Loader;

/// One plugin instance as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedPlugin {
    /// Instance name.
    pub name: String,
    /// Plugin type.
    pub type_name: String,
    /// Its stability.
    pub stability: Stability,
    /// True when the loader created it (a default), not the config.
    pub implicit: bool,
}

/// What loading produced besides the picker: warnings (deprecations) and the plugin list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Deprecation and other warnings, each `path: message`.
    pub warnings: Vec<String>,
    /// Every plugin instance, configured and implicit.
    pub plugins: Vec<LoadedPlugin>,
}

/// Loads a JSON configuration document.
///
/// # Errors
/// Any [`ConfigError`]; see the module docs for the checks.
pub fn load(json: &str, registry: &Registry) -> Result<(EndpointPicker, LoadReport), ConfigError> {
    load_config(EndpointPickerConfig::from_json(json)?, registry)
}

/// Loads an already-parsed configuration.
///
/// # Errors
/// Any [`ConfigError`]; see the module docs for the checks.
pub fn load_config(
    mut cfg: EndpointPickerConfig,
    registry: &Registry,
) -> Result<(EndpointPicker, LoadReport), ConfigError> {
    let header = header::check(&cfg, flow_control::gate_on(&cfg))?;
    let mut loader = Loader::new(registry, cfg.min_stability.unwrap_or(Stability::Alpha));
    for w in header.warnings {
        loader.warn(w);
    }
    gates::apply(&mut loader, &cfg.feature_gates)?;
    if cfg.plugins.is_empty() && cfg.scheduling_profiles.is_empty() {
        let d = EndpointPickerConfig::from_json(DEFAULT_CONFIG_JSON)?;
        cfg.plugins = d.plugins;
        cfg.scheduling_profiles = d.scheduling_profiles;
    }
    plugins::instantiate_all(&mut loader, &cfg.plugins)?;
    let specs = core::mem::take(&mut cfg.scheduling_profiles);
    let (profiles, names, handler) = profiles::build(&mut loader, specs)?;
    let saturation_detector =
        wiring::saturation_detector(&mut loader, &cfg, header.fc_detector.as_ref())?;
    let parsers = wiring::parsers(&mut loader, &cfg)?;
    let (metrics_source, extractor, page_sources) = data_layer::data_layer(&mut loader, &cfg)?;
    let flow_control = flow_control::build(&mut loader, &cfg, saturation_detector.as_ref())?;
    let producers = producers::complete_and_order(&mut loader)?;

    let all = |f: fn(&dyn Plugin) -> bool| -> Vec<Arc<dyn Plugin>> {
        loader
            .plugins
            .iter()
            .filter(|(_, p)| f(p.as_ref()))
            .map(|(_, p)| p.clone())
            .collect()
    };
    let admitters = all(|p| p.as_admitter().is_some());
    let flow_identities = all(|p| p.as_flow_identity().is_some());
    let screeners = all(|p| p.as_screener().is_some());
    let pre_requests = all(|p| p.as_pre_request().is_some());
    let response_headers = all(|p| p.as_response_header().is_some());
    let response_bodies = all(|p| p.as_response_body().is_some());
    let reporters = all(|p| p.as_attribute_reporter().is_some());
    let objectives = objectives(&cfg)?;
    let model_rewrites = crate::rewrite::ModelRewrites::from_specs(&cfg.inference_model_rewrites)?;
    let media_estimate = crate::plugins::producer::token::media_estimate(&cfg.plugins);

    let picker = EndpointPicker {
        scheduler: Scheduler {
            profiles,
            names,
            handler,
        },
        producers,
        admitters,
        flow_identities,
        screeners,
        pre_requests,
        response_headers,
        response_bodies,
        reporters,
        page_sources,
        saturation_detector,
        parsers,
        objectives,
        model_rewrites,
        media_estimate,
        metrics_source,
        extractor,
        flow_control,
        plugins: loader.plugins,
    };
    Ok((picker, loader.report))
}

/// `inferenceObjectives` as `(name, priority)`.
///
/// # Errors
/// An empty or duplicate name.
fn objectives(cfg: &EndpointPickerConfig) -> Result<Vec<(String, i32)>, ConfigError> {
    let mut objectives: Vec<(String, i32)> = Vec::new();
    for (i, o) in cfg.inference_objectives.iter().enumerate() {
        let path = FieldPath::key("inferenceObjectives")
            .with_index(i)
            .with_key("name");
        if o.name.is_empty() {
            return Err(ConfigError::invalid(
                path,
                "objective name must not be empty",
            ));
        }
        if objectives.iter().any(|(n, _)| *n == o.name) {
            return Err(ConfigError::invalid(
                path,
                format!("duplicate objective name '{}'", o.name),
            ));
        }
        objectives.push((o.name.clone(), o.priority));
    }

    Ok(objectives)
}
