//! Turns an [`EndpointPickerConfig`] into a ready [`EndpointPicker`]: checks the lifecycle rules,
//! instantiates every plugin once, validates references, applies GIE's system defaults and wires
//! each plugin into every slot its type fills.
//!
//! Order (GIE `configloader.go` + `defaults.go` at GIE@1748e829, docs/SOURCES.md#gie-config-loading):
//! 1. `apiVersion`/`kind`, `flowControl`, feature gates (unknown gate → error).
//! 2. No plugins and no profiles → the built-in default config.
//! 3. Plugins in order: type present, name unique, type registered, not a tombstone, stability
//!    ≥ `minStability` (Alpha warned), gate not off, deprecation warned; factory called with the
//!    plugins before it in reach (one that names a plugin defined later is built after the
//!    rest); unknown parameters are warned and ignored.
//! 4. Profiles: names present and unique, refs present and defined, weights finite and ≥ 0;
//!    no profiles → one `default` profile with every filter, scorer and picker, in list order.
//! 5. Exactly one profile handler (a lone profile gets `single-profile-handler`); a profile
//!    without picker gets the first picker configured, else `max-score-picker`.
//! 6. Saturation detector (default `utilization-detector`), parser (default `openai-parser`),
//!    data layer (default `metrics-data-source` + `core-metrics-extractor`).
//! 7. Missing data producers are created from the registry's defaults; producers are ordered
//!    so each runs after the producers of what it consumes (a cycle is an error).
//!
//! Every problem is a returned [`ConfigError`] naming its field path; nothing panics.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::config::defaults::{DEFAULT_CONFIG_JSON, DEFAULT_PROFILE};
use crate::config::{EndpointPickerConfig, ProfileSpec, API_VERSIONS, KIND};
use crate::director::EndpointPicker;
use crate::error::{ConfigError, ConfigErrorKind as K, FieldPath};
use crate::parse::engine::MetricsExtractor;
use crate::plugin::registry::EntryKind;
use crate::plugin::{DataKey, Handle, Plugin, Registry, Stability};
use crate::plugins::datalayer::metrics_source::MetricsSourceParams;
use crate::plugins::{filter, parser, picker, profile};
use crate::scheduler::{Scheduler, SchedulerProfile};

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

struct Loader<'r> {
    registry: &'r Registry,
    enabled: Vec<String>,
    disabled: Vec<String>,
    min: Stability,
    plugins: Vec<(String, Arc<dyn Plugin>)>,
    report: LoadReport,
}

impl Loader<'_> {
    fn warn(&mut self, w: String) {
        log::warn!("{w}");
        self.report.warnings.push(w);
    }

    fn instantiate(
        &mut self,
        type_name: &str,
        name: &str,
        params: Option<&serde_json::Value>,
        path: &FieldPath,
        implicit: bool,
    ) -> Result<Arc<dyn Plugin>, ConfigError> {
        let type_path = path.clone().with_key("type");
        let entry = self.registry.get(type_name).ok_or_else(|| {
            ConfigError::new(
                type_path.clone(),
                K::UnknownPluginType {
                    type_name: type_name.into(),
                    suggestion: self.registry.closest(type_name).map(String::from),
                },
            )
        })?;
        let (factory, stability, gate, deprecation) = match entry.kind {
            EntryKind::Removed { migration } => {
                return Err(ConfigError::new(
                    type_path,
                    K::RemovedPluginType {
                        type_name: type_name.into(),
                        migration: migration.into(),
                    },
                ))
            }
            EntryKind::Available {
                factory,
                stability,
                feature_gate,
                deprecation,
                ..
            } => (factory, stability, feature_gate, deprecation),
        };
        if stability < self.min {
            return Err(ConfigError::new(
                type_path,
                K::BelowMinimumStability {
                    type_name: type_name.into(),
                    stability,
                    minimum: self.min,
                },
            ));
        }
        // Alpha plugins load with a warning, as upstream loads them (there behind the
        // `--allow-experimental-plugins` flag; here `minStability: Beta` refuses them). A
        // feature gate is never required: upstream refuses gate names it does not know, so a
        // config that needed one of ours could not be valid in both.
        if stability == Stability::Alpha && !implicit {
            self.warn(format!(
                "{type_path}: plugin type '{type_name}' is Alpha (no compatibility guarantee); set minStability: Beta to refuse Alpha plugins"
            ));
        }
        if let Some(g) = gate {
            if self.disabled.iter().any(|d| d == g) {
                return Err(ConfigError::new(
                    type_path,
                    K::PluginDisabledByGate {
                        type_name: type_name.into(),
                        gate: g.into(),
                    },
                ));
            }
        }
        if let Some(msg) = deprecation {
            self.warn(format!(
                "{type_path}: plugin type '{type_name}' is deprecated: {msg}"
            ));
        }
        // Unknown parameters are ignored with a warning naming each one, as upstream's Go
        // decoder ignores them (a config written for a newer or older release still loads).
        let params_path = path.clone().with_key("parameters");
        let mut owned: Option<serde_json::Value> = None;
        let mut warned = 0;
        let plugin = loop {
            let current = owned.as_ref().or(params);
            match factory(name, current, &Handle::new(&self.plugins)) {
                Ok(p) => break p,
                Err(e) => {
                    let removable = matches!(e.kind, K::UnknownField { .. })
                        && warned < 64
                        && current.is_some_and(|v| has_path(v, &e.path));
                    if !removable {
                        return Err(e.prefixed(&params_path));
                    }
                    let mut v = current.cloned().unwrap_or_default();
                    remove_path(&mut v, &e.path);
                    let at = e.path.clone().prefixed(&params_path);
                    self.warn(format!("{at}: unknown parameter of '{type_name}' ignored"));
                    owned = Some(v);
                    warned += 1;
                }
            }
        };
        log::info!(
            "loaded plugin {name}/{type_name} ({stability}{})",
            if implicit { ", default" } else { "" }
        );
        self.report.plugins.push(LoadedPlugin {
            name: name.into(),
            type_name: type_name.into(),
            stability,
            implicit,
        });
        Ok(plugin)
    }

    /// Creates a default plugin of `type_name` (named after its type) and adds it to the list.
    fn implicit(
        &mut self,
        type_name: &str,
        path: &FieldPath,
    ) -> Result<Arc<dyn Plugin>, ConfigError> {
        if let Some((_, p)) = self.plugins.iter().find(|(n, _)| n == type_name) {
            if p.typed_name().type_name == type_name {
                return Ok(p.clone());
            }
            return Err(ConfigError::new(
                path.clone(),
                K::DuplicatePluginName(type_name.into()),
            ));
        }
        let p = self.instantiate(type_name, type_name, None, path, true)?;
        self.plugins.push((type_name.into(), p.clone()));
        Ok(p)
    }

    fn by_name(&self, name: &str) -> Option<Arc<dyn Plugin>> {
        self.plugins
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
    }

    /// Resolves `{pluginRef}` at `path` to a plugin that `ok` accepts.
    fn resolve_ref(
        &self,
        plugin_ref: Option<&str>,
        path: FieldPath,
        expected: &'static str,
        ok: impl Fn(&dyn Plugin) -> bool,
    ) -> Result<Arc<dyn Plugin>, ConfigError> {
        let path = path.with_key("pluginRef");
        let r = plugin_ref
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ConfigError::new(path.clone(), K::MissingPluginRef))?;
        let p = self
            .by_name(r)
            .ok_or_else(|| ConfigError::new(path.clone(), K::UndefinedPluginRef(r.into())))?;
        if !ok(p.as_ref()) {
            return Err(ConfigError::new(
                path,
                K::WrongPluginKind {
                    name: r.into(),
                    expected,
                },
            ));
        }
        Ok(p)
    }
}

/// Loads an already-parsed configuration.
///
/// # Errors
/// Any [`ConfigError`]; see the module docs for the checks.
pub fn load_config(
    mut cfg: EndpointPickerConfig,
    registry: &Registry,
) -> Result<(EndpointPicker, LoadReport), ConfigError> {
    if let Some(v) = &cfg.api_version {
        if !API_VERSIONS.contains(&v.as_str()) {
            return Err(ConfigError::invalid(
                FieldPath::key("apiVersion"),
                format!(
                    "unsupported apiVersion '{v}'; expected one of {}",
                    API_VERSIONS.join(", ")
                ),
            ));
        }
    }
    if let Some(k) = &cfg.kind {
        if k != KIND {
            return Err(ConfigError::invalid(
                FieldPath::key("kind"),
                format!("kind must be '{KIND}', not '{k}'"),
            ));
        }
    }
    // `flowControl` without its feature gate: llm-d ignores the section's settings with a
    // warning and still honours `flowControl.saturationDetector` (where llm-d moved the
    // top-level `saturationDetector`). With the gate on it is the flow-control layer, which
    // this engine does not have (the gate check below refuses it).
    let mut pending_warnings: Vec<String> = Vec::new();
    let fc_detector = match &cfg.flow_control {
        None => None,
        Some(fc) => {
            let detector = fc.get("saturationDetector").cloned();
            let settings: Vec<&String> = fc
                .as_object()
                .map(|m| m.keys().filter(|k| *k != "saturationDetector").collect())
                .unwrap_or_default();
            if !settings.is_empty() {
                pending_warnings.push(format!(
                    "flowControl: settings ignored without the 'flowControl' feature gate (as llm-d): {}",
                    settings.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            match detector {
                None => None,
                Some(d) => Some(
                    serde_path_to_error::deserialize::<_, crate::config::PluginRefSpec>(&d)
                        .map_err(|e| {
                            ConfigError::from_serde(e).prefixed(
                                &FieldPath::key("flowControl").with_key("saturationDetector"),
                            )
                        })?,
                ),
            }
        }
    };

    let mut loader = Loader {
        registry,
        enabled: Vec::new(),
        disabled: Vec::new(),
        min: cfg.min_stability.unwrap_or(Stability::Alpha),
        plugins: Vec::new(),
        report: LoadReport::default(),
    };
    for w in pending_warnings {
        loader.warn(w);
    }
    for (gate, on, path) in cfg.feature_gates.entries()? {
        if !registry.is_known_gate(&gate) {
            return Err(ConfigError::new(path, K::UnknownFeatureGate(gate)));
        }
        if gate == "flowControl" && on {
            return Err(ConfigError::new(
                path,
                K::Unsupported("the 'flowControl' feature gate".into()),
            ));
        }
        if on {
            loader.enabled.push(gate);
        } else {
            loader.disabled.push(gate);
        }
    }

    if cfg.plugins.is_empty() && cfg.scheduling_profiles.is_empty() {
        let d = EndpointPickerConfig::from_json(DEFAULT_CONFIG_JSON)?;
        cfg.plugins = d.plugins;
        cfg.scheduling_profiles = d.scheduling_profiles;
    }

    // 3. Plugins.
    let mut deferred: Vec<(usize, String, String)> = Vec::new();
    for (i, spec) in cfg.plugins.iter().enumerate() {
        let path = FieldPath::key("plugins").with_index(i);
        let type_name = spec.type_name.as_deref().filter(|t| !t.is_empty());
        let name = spec.name.as_deref().filter(|n| !n.is_empty()).or(type_name);
        let Some(t) = type_name else {
            return Err(ConfigError::new(
                path.with_key("type"),
                K::MissingPluginType {
                    name: name.unwrap_or("").into(),
                },
            ));
        };
        let name = name.unwrap_or(t);
        if loader.by_name(name).is_some() {
            return Err(ConfigError::new(
                path.with_key("name"),
                K::DuplicatePluginName(name.into()),
            ));
        }
        // A plugin that names another defined later in the list (llm-d's samples put a
        // profile handler before its deciders) is built once the rest exist.
        match loader.instantiate(t, name, spec.parameters.as_ref(), &path, false) {
            Ok(p) => loader.plugins.push((name.into(), p)),
            Err(e) if matches!(e.kind, K::UndefinedPluginRef(_)) => {
                deferred.push((i, String::from(t), String::from(name)));
            }
            Err(e) => return Err(e),
        }
    }
    while !deferred.is_empty() {
        let before = deferred.len();
        let mut last_err = None;
        for (i, t, name) in core::mem::take(&mut deferred) {
            let path = FieldPath::key("plugins").with_index(i);
            let params = cfg.plugins.get(i).and_then(|s| s.parameters.as_ref());
            match loader.instantiate(&t, &name, params, &path, false) {
                Ok(p) => loader.plugins.push((name, p)),
                Err(e) if matches!(e.kind, K::UndefinedPluginRef(_)) => {
                    last_err = Some(e);
                    deferred.push((i, t, name));
                }
                Err(e) => return Err(e),
            }
        }
        if deferred.len() == before {
            if let Some(e) = last_err {
                return Err(e);
            }
        }
    }

    // GIE: a `prefix-cache-scorer`'s parameters configure the `approx-prefix-cache-producer`
    // created for it when the config lists none (GIE v1.5.0 `configloader.go`
    // `instantiatePlugins`; docs/SOURCES.md#gie-config-loading).
    if !loader.plugins.iter().any(|(_, p)| {
        p.typed_name().type_name == crate::plugins::producer::approx_prefix_cache::TYPE
    }) {
        if let Some((i, params)) = cfg.plugins.iter().enumerate().find_map(|(i, s)| {
            (s.type_name.as_deref() == Some(crate::plugins::scorer::prefix_cache::TYPE))
                .then_some((i, s.parameters.as_ref()?))
        }) {
            let path = FieldPath::key("plugins").with_index(i);
            let t = crate::plugins::producer::approx_prefix_cache::TYPE;
            let p = loader.instantiate(t, t, Some(params), &path, true)?;
            loader.plugins.push((t.into(), p));
        }
    }

    // 4. Profiles.
    let mut specs = core::mem::take(&mut cfg.scheduling_profiles);
    if specs.is_empty() {
        specs.push(ProfileSpec {
            name: Some(DEFAULT_PROFILE.into()),
            plugins: loader
                .plugins
                .iter()
                .filter(|(_, p)| {
                    p.as_filter().is_some() || p.as_scorer().is_some() || p.as_picker().is_some()
                })
                .map(|(n, _)| crate::config::ProfilePluginSpec {
                    plugin_ref: Some(n.clone()),
                    weight: None,
                })
                .collect(),
        });
    }
    let mut names: Vec<String> = Vec::new();
    for (i, p) in specs.iter().enumerate() {
        let path = FieldPath::key("schedulingProfiles").with_index(i);
        let name = p.name.as_deref().filter(|n| !n.is_empty()).ok_or_else(|| {
            ConfigError::new(path.clone().with_key("name"), K::MissingProfileName(i))
        })?;
        if names.iter().any(|n| n == name) {
            return Err(ConfigError::new(
                path.with_key("name"),
                K::DuplicateProfileName(name.into()),
            ));
        }
        names.push(name.into());
        for (j, r) in p.plugins.iter().enumerate() {
            let rpath = path.clone().with_key("plugins").with_index(j);
            loader.resolve_ref(r.plugin_ref.as_deref(), rpath.clone(), "plugin", |_| true)?;
            if let Some(w) = r.weight {
                if !(w.is_finite() && w >= 0.0) {
                    return Err(ConfigError::invalid(
                        rpath.with_key("weight"),
                        "weight must be a finite number ≥ 0",
                    ));
                }
            }
        }
    }

    // 5. Profile handler and pickers.
    let handlers: Vec<usize> = loader
        .plugins
        .iter()
        .enumerate()
        .filter(|(_, (_, p))| p.as_profile_handler().is_some())
        .map(|(i, _)| i)
        .collect();
    let profiles_path = FieldPath::key("schedulingProfiles");
    let handler = match handlers.as_slice() {
        [] if specs.len() == 1 => loader.implicit(profile::single::TYPE, &profiles_path)?,
        [] => return Err(ConfigError::new(profiles_path, K::NoProfileHandler)),
        [only] => loader
            .plugins
            .get(*only)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| ConfigError::new(profiles_path.clone(), K::NoProfileHandler))?,
        [_, second, ..] => {
            return Err(ConfigError::new(
                FieldPath::key("plugins").with_index(*second),
                K::MultipleProfileHandlers,
            ))
        }
    };
    if handler.typed_name().type_name == profile::single::TYPE && specs.len() > 1 {
        return Err(ConfigError::new(
            profiles_path,
            K::SingleProfileHandlerMultipleProfiles,
        ));
    }

    let mut profiles = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let path = FieldPath::key("schedulingProfiles").with_index(i);
        let name = names.get(i).cloned().unwrap_or_default();
        let (mut filters, mut scorers, mut picker_slot) =
            (Vec::new(), Vec::new(), None::<Arc<dyn Plugin>>);
        for (j, r) in spec.plugins.iter().enumerate() {
            let rpath = path.clone().with_key("plugins").with_index(j);
            let p =
                loader.resolve_ref(r.plugin_ref.as_deref(), rpath.clone(), "plugin", |_| true)?;
            if p.as_filter().is_some() {
                filters.push(p.clone());
            }
            if p.as_scorer().is_some() {
                scorers.push((p.clone(), r.weight.unwrap_or(1.0)));
            }
            if p.as_picker().is_some() {
                if picker_slot.is_some() {
                    return Err(ConfigError::new(
                        rpath.with_key("pluginRef"),
                        K::MultiplePickers {
                            profile: name.clone(),
                        },
                    ));
                }
                picker_slot = Some(p);
            }
        }
        let picker = match picker_slot {
            Some(p) => p,
            None => match loader.plugins.iter().find(|(_, p)| p.as_picker().is_some()) {
                Some((_, p)) => p.clone(),
                None => loader.implicit(picker::max_score::TYPE, &path)?,
            },
        };
        profiles.push(SchedulerProfile {
            name,
            filters,
            scorers,
            picker,
        });
    }

    // 6. Saturation detector, parser, data layer.
    let detector_ref = match (&cfg.saturation_detector, &fc_detector) {
        (Some(r), _) => Some((r, FieldPath::key("saturationDetector"))),
        (None, Some(r)) => Some((
            r,
            FieldPath::key("flowControl").with_key("saturationDetector"),
        )),
        (None, None) => None,
    };
    let saturation_detector = match detector_ref {
        Some((r, at)) => {
            loader.resolve_ref(r.plugin_ref.as_deref(), at, "a saturation detector", |p| {
                p.as_saturation_detector().is_some()
            })?
        }
        None => match loader
            .plugins
            .iter()
            .find(|(_, p)| p.typed_name().type_name == filter::utilization_detector::TYPE)
        {
            Some((_, p)) => p.clone(),
            None => loader.implicit(
                filter::utilization_detector::TYPE,
                &FieldPath::key("saturationDetector"),
            )?,
        },
    };
    // llm-d's `requestHandler.parsers` wins over the deprecated top-level `parser`.
    let parser_refs: Vec<(Option<&str>, FieldPath)> = match (&cfg.request_handler, &cfg.parser) {
        (Some(h), _) if !h.parsers.is_empty() => h
            .parsers
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    r.plugin_ref.as_deref(),
                    FieldPath::key("requestHandler")
                        .with_key("parsers")
                        .with_index(i),
                )
            })
            .collect(),
        (_, Some(r)) => alloc::vec![(r.plugin_ref.as_deref(), FieldPath::key("parser"))],
        _ => Vec::new(),
    };
    let mut parsers: Vec<Arc<dyn Plugin>> = Vec::new();
    for (r, at) in parser_refs {
        parsers.push(loader.resolve_ref(r, at, "a parser", |p| p.as_parser().is_some())?);
    }
    if parsers.is_empty() {
        parsers.push(
            match loader.plugins.iter().find(|(_, p)| p.as_parser().is_some()) {
                Some((_, p)) => p.clone(),
                None => loader.implicit(parser::openai::TYPE, &FieldPath::key("parser"))?,
            },
        );
    }
    let (metrics_source, extractor) = data_layer(&mut loader, &cfg)?;

    // 7. Default producers, then dependency order.
    for _ in 0..=registry.entries().len() {
        let missing: Vec<DataKey> = missing_keys(&loader.plugins);
        if missing.is_empty() {
            break;
        }
        for key in missing {
            let entry = registry.default_producer(key).ok_or_else(|| {
                ConfigError::invalid(
                    FieldPath::key("plugins"),
                    format!(
                        "no plugin produces data '{key}' and no default producer is registered"
                    ),
                )
            })?;
            let p = loader.implicit(entry.type_name, &FieldPath::key("plugins"))?;
            if !p.produces().contains(&key) {
                return Err(ConfigError::invalid(
                    FieldPath::key("plugins"),
                    format!(
                        "default producer '{}' does not produce its registered data '{key}'",
                        entry.type_name
                    ),
                ));
            }
        }
    }
    let producers = order_producers(&loader.plugins)?;

    let all = |f: fn(&dyn Plugin) -> bool| -> Vec<Arc<dyn Plugin>> {
        loader
            .plugins
            .iter()
            .filter(|(_, p)| f(p.as_ref()))
            .map(|(_, p)| p.clone())
            .collect()
    };
    let admitters = all(|p| p.as_admitter().is_some());
    let pre_requests = all(|p| p.as_pre_request().is_some());
    let response_headers = all(|p| p.as_response_header().is_some());
    let response_bodies = all(|p| p.as_response_body().is_some());

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

    let picker = EndpointPicker {
        scheduler: Scheduler {
            profiles,
            names,
            handler,
        },
        producers,
        admitters,
        pre_requests,
        response_headers,
        response_bodies,
        saturation_detector,
        parsers,
        objectives,
        metrics_source,
        extractor,
        plugins: loader.plugins,
    };
    Ok((picker, loader.report))
}

type DataLayer = (Option<MetricsSourceParams>, MetricsExtractor);

fn data_layer(
    loader: &mut Loader<'_>,
    cfg: &EndpointPickerConfig,
) -> Result<DataLayer, ConfigError> {
    if let Some(dl) = &cfg.data_layer {
        let path = FieldPath::key("dataLayer");
        for (set, field, why) in [
            (
                dl.discovery.is_some(),
                "discovery",
                "the pool is the `pool` section or the Envoy cluster",
            ),
            (
                dl.peer_discovery.is_some(),
                "peerDiscovery",
                "every proxy runs its own picker",
            ),
            (
                dl.cross_replica_syncer_plugin_ref.is_some(),
                "crossReplicaSyncerPluginRef",
                "every proxy runs its own picker",
            ),
            (
                dl.cross_replica_sync_interval.is_some(),
                "crossReplicaSyncInterval",
                "every proxy runs its own picker",
            ),
        ] {
            if set {
                let at = path.clone().with_key(field);
                loader.warn(format!("{at}: ignored: {why}"));
            }
        }
    }
    let first_source = || {
        loader
            .plugins
            .iter()
            .find_map(|(_, p)| p.as_metrics_source().map(|s| s.params.clone()))
    };
    let first_extractor = || {
        loader
            .plugins
            .iter()
            .find_map(|(_, p)| p.as_metrics_extractor().cloned())
    };
    let Some(dl) = &cfg.data_layer else {
        return Ok((
            Some(first_source().unwrap_or_default()),
            first_extractor().unwrap_or_default(),
        ));
    };
    if dl.sources.is_empty() {
        log::warn!("dataLayer has no sources: endpoint metrics will not be collected");
        return Ok((None, first_extractor().unwrap_or_default()));
    }
    let mut source = None;
    let mut extractor = None;
    for (i, s) in dl.sources.iter().enumerate() {
        let path = FieldPath::key("dataLayer")
            .with_key("sources")
            .with_index(i);
        let p = loader.resolve_ref(s.plugin_ref.as_deref(), path.clone(), "a DataSource", |p| {
            p.as_metrics_source().is_some()
        })?;
        if source.is_some() {
            loader.warn(format!(
                "{path}: a second metrics source is ignored: the scraper reads one metrics page per endpoint"
            ));
            continue;
        }
        source = p.as_metrics_source().map(|s| s.params.clone());
        for (j, e) in s.extractors.iter().enumerate() {
            let epath = path.clone().with_key("extractors").with_index(j);
            let p = loader.resolve_ref(e.plugin_ref.as_deref(), epath, "an Extractor", |p| {
                p.as_metrics_extractor().is_some()
            })?;
            if extractor.is_none() {
                extractor = p.as_metrics_extractor().cloned();
            }
        }
    }
    Ok((source, extractor.unwrap_or_default()))
}

/// True when `path` (relative to `v`) names an existing object key.
fn has_path(v: &serde_json::Value, path: &FieldPath) -> bool {
    let mut cur = v;
    for seg in &path.0 {
        let next = match seg {
            crate::error::PathSegment::Key(k) => cur.get(k.as_str()),
            crate::error::PathSegment::Index(i) => cur.get(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    matches!(path.0.last(), Some(crate::error::PathSegment::Key(_)))
}

/// Removes the object key `path` names inside `v`.
fn remove_path(v: &mut serde_json::Value, path: &FieldPath) {
    let Some((last, parents)) = path.0.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        let next = match seg {
            crate::error::PathSegment::Key(k) => cur.get_mut(k.as_str()),
            crate::error::PathSegment::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let (crate::error::PathSegment::Key(k), Some(m)) = (last, cur.as_object_mut()) {
        m.remove(k);
    }
}

fn missing_keys(plugins: &[(String, Arc<dyn Plugin>)]) -> Vec<DataKey> {
    let mut missing: Vec<DataKey> = Vec::new();
    for (_, p) in plugins {
        for &k in p.consumes() {
            let produced = plugins.iter().any(|(_, q)| q.produces().contains(&k));
            if !produced && !missing.contains(&k) {
                missing.push(k);
            }
        }
    }
    missing
}

/// Orders data producers so that each runs after the producers of every key it consumes.
fn order_producers(
    plugins: &[(String, Arc<dyn Plugin>)],
) -> Result<Vec<Arc<dyn Plugin>>, ConfigError> {
    let mut pending: Vec<Arc<dyn Plugin>> = plugins
        .iter()
        .filter(|(_, p)| p.as_data_producer().is_some())
        .map(|(_, p)| p.clone())
        .collect();
    let mut ordered: Vec<Arc<dyn Plugin>> = Vec::new();
    while !pending.is_empty() {
        let ready = pending.iter().position(|p| {
            p.consumes().iter().all(|k| {
                // Every other pending producer of k must already be placed.
                !pending
                    .iter()
                    .any(|q| !Arc::ptr_eq(q, p) && q.produces().contains(k))
            })
        });
        match ready {
            Some(i) => ordered.push(pending.remove(i)),
            None => {
                let names: Vec<String> = pending
                    .iter()
                    .map(|p| p.typed_name().name.clone())
                    .collect();
                return Err(ConfigError::new(
                    FieldPath::key("plugins"),
                    K::DataDependencyCycle(names.join(" -> ")),
                ));
            }
        }
    }
    Ok(ordered)
}
