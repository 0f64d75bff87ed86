//! The loader's working state ([`Loader`]): the registry, the gates, the plugins built so far
//! and the report; building one plugin instance with every lifecycle rule, implicit defaults,
//! and resolving `pluginRef`s.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::config::loader::{LoadReport, LoadedPlugin};
use crate::error::{ConfigError, ConfigErrorKind as K, FieldPath};
use crate::plugin::registry::EntryKind;
use crate::plugin::{Handle, Plugin, Registry, Stability};

/// The loader's state while one configuration loads.
pub(super) struct Loader<'r> {
    pub(super) registry: &'r Registry,
    pub(super) enabled: Vec<String>,
    pub(super) disabled: Vec<String>,
    pub(super) min: Stability,
    pub(super) plugins: Vec<(String, Arc<dyn Plugin>)>,
    pub(super) report: LoadReport,
}

impl<'r> Loader<'r> {
    /// A loader over `registry` accepting plugins of stability `min` or above.
    pub(super) fn new(registry: &'r Registry, min: Stability) -> Self {
        Loader {
            registry,
            enabled: Vec::new(),
            disabled: Vec::new(),
            min,
            plugins: Vec::new(),
            report: LoadReport::default(),
        }
    }

    pub(super) fn warn(&mut self, w: String) {
        log::warn!("{w}");
        self.report.warnings.push(w);
    }

    pub(super) fn instantiate(
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
            EntryKind::NotBuilt { reason } => {
                return Err(ConfigError::new(
                    type_path,
                    K::NotBuiltPluginType {
                        type_name: type_name.into(),
                        reason: reason.into(),
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
            match factory(
                name,
                current,
                &Handle::with_services(&self.plugins, self.registry.services()),
            ) {
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
    pub(super) fn implicit(
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

    pub(super) fn by_name(&self, name: &str) -> Option<Arc<dyn Plugin>> {
        self.plugins
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
    }

    /// Resolves `{pluginRef}` at `path` to a plugin that `ok` accepts.
    pub(super) fn resolve_ref(
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
