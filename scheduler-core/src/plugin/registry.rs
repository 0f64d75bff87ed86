//! The plugin registry: one record per plugin type with its factory, stability, feature gate,
//! deprecation note, or a tombstone with migration text (Envoy `extensions_metadata.yaml` shape).
//!
//! In-tree types are listed in one table (`BUILTINS` in `plugins/mod.rs`, which also defines
//! `Registry::with_builtins`, so this module names no implementation), and a change of maturity
//! is a one-line change there. An out-of-tree crate builds a [`Registry`] with
//! [`Registry::with_builtins`] and adds its own entries with [`Registry::register`]; mistakes in
//! entries are returned as [`RegistryError`], never panicked.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ConfigError, RegistryError};
use crate::plugin::state::DataKey;
use crate::plugin::{Plugin, Services, Stability};

/// Builds a plugin instance: `(instance name, raw JSON parameters, handle)`.
///
/// Parse parameters with [`parse_params`] so unknown fields are rejected with their path.
///
/// # Errors
/// A [`ConfigError`] with a path relative to the plugin's `parameters`.
pub type Factory = fn(&str, Option<&Value>, &Handle<'_>) -> Result<Arc<dyn Plugin>, ConfigError>;

/// What a factory may look up while building: the plugins instantiated before it, by name.
pub struct Handle<'a> {
    plugins: &'a [(String, Arc<dyn Plugin>)],
    services: Option<&'a Services>,
}

impl<'a> Handle<'a> {
    /// A handle over already-built plugins, with no host services.
    pub fn new(plugins: &'a [(String, Arc<dyn Plugin>)]) -> Self {
        Handle {
            plugins,
            services: None,
        }
    }

    /// A handle over already-built plugins and the host's `services`.
    pub fn with_services(plugins: &'a [(String, Arc<dyn Plugin>)], services: &'a Services) -> Self {
        Handle {
            plugins,
            services: Some(services),
        }
    }

    /// What the host lends plugins (tokenizers…); empty when it lends nothing.
    pub fn services(&self) -> Services {
        self.services.cloned().unwrap_or_default()
    }

    /// The plugin named `name`, if it was listed before the caller.
    pub fn plugin(&self, name: &str) -> Option<&Arc<dyn Plugin>> {
        self.plugins.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }
}

/// What a registry entry offers.
#[derive(Clone, Copy)]
pub enum EntryKind {
    /// A usable type.
    Available {
        /// Builds instances.
        factory: Factory,
        /// Maturity.
        stability: Stability,
        /// Gate that enables (Alpha) or can disable (Beta) the type.
        feature_gate: Option<&'static str>,
        /// When set, the type still loads but a warning with this text (naming the
        /// replacement) is logged and reported.
        deprecation: Option<&'static str>,
        /// When set, this type is instantiated automatically (with no parameters) when some
        /// plugin consumes this key and none produces it.
        default_producer_for: Option<DataKey>,
    },
    /// A removed type: loading it fails with this migration text.
    Removed {
        /// What to use instead; may name several types when one was split.
        migration: &'static str,
    },
    /// An upstream type this engine does not build: loading it fails with this reason, so a
    /// migrating user learns it is a known gap and not a typo.
    NotBuilt {
        /// Why it is missing and what the config can do instead.
        reason: &'static str,
    },
}

/// One record of the registry table.
#[derive(Clone, Copy)]
pub struct RegistryEntry {
    /// The plugin type name used in `plugins[].type`.
    pub type_name: &'static str,
    /// What the entry offers.
    pub kind: EntryKind,
}

impl RegistryEntry {
    const fn available(type_name: &'static str, factory: Factory, stability: Stability) -> Self {
        RegistryEntry {
            type_name,
            kind: EntryKind::Available {
                factory,
                stability,
                feature_gate: None,
                deprecation: None,
                default_producer_for: None,
            },
        }
    }

    /// A Stable type.
    pub const fn stable(type_name: &'static str, factory: Factory) -> Self {
        Self::available(type_name, factory, Stability::Stable)
    }

    /// A Beta type, on by default; `"<gate>=false"` in `featureGates` turns it off.
    pub const fn beta(type_name: &'static str, gate: &'static str, factory: Factory) -> Self {
        Self::available(type_name, factory, Stability::Beta).gate(gate)
    }

    /// An Alpha type: loads only with `gate` in `featureGates`.
    pub const fn alpha(type_name: &'static str, gate: &'static str, factory: Factory) -> Self {
        Self::available(type_name, factory, Stability::Alpha).gate(gate)
    }

    /// A tombstone for a removed type.
    pub const fn removed(type_name: &'static str, migration: &'static str) -> Self {
        RegistryEntry {
            type_name,
            kind: EntryKind::Removed { migration },
        }
    }

    /// An upstream type that is known but not built here (loading it fails with `reason`).
    pub const fn not_built(type_name: &'static str, reason: &'static str) -> Self {
        RegistryEntry {
            type_name,
            kind: EntryKind::NotBuilt { reason },
        }
    }

    const fn gate(mut self, gate: &'static str) -> Self {
        if let EntryKind::Available {
            ref mut feature_gate,
            ..
        } = self.kind
        {
            *feature_gate = Some(gate);
        }
        self
    }

    /// Marks the type deprecated with `message` (which should name the replacement).
    pub const fn deprecated(mut self, message: &'static str) -> Self {
        if let EntryKind::Available {
            ref mut deprecation,
            ..
        } = self.kind
        {
            *deprecation = Some(message);
        }
        self
    }

    /// Makes this type the default producer of `key`.
    pub const fn default_producer_for(mut self, key: DataKey) -> Self {
        if let EntryKind::Available {
            ref mut default_producer_for,
            ..
        } = self.kind
        {
            *default_producer_for = Some(key);
        }
        self
    }

    /// The entry's stability, `None` for a tombstone or a type not built here.
    pub fn stability(&self) -> Option<Stability> {
        match self.kind {
            EntryKind::Available { stability, .. } => Some(stability),
            EntryKind::Removed { .. } | EntryKind::NotBuilt { .. } => None,
        }
    }
}

/// Feature gates GIE registers that are not tied to a plugin type.
pub const SYSTEM_FEATURE_GATES: &[&str] = &["dataLayer", "enableLegacyMetrics", "flowControl"];

/// Plugin types by name, with their lifecycle metadata.
#[derive(Clone, Default)]
pub struct Registry {
    entries: Vec<RegistryEntry>,
    extra_gates: Vec<&'static str>,
    services: Services,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds one entry.
    ///
    /// # Errors
    /// [`RegistryError`] for an empty or duplicate type name or an Alpha entry without a gate.
    pub fn register(&mut self, entry: RegistryEntry) -> Result<(), RegistryError> {
        if entry.type_name.is_empty() {
            return Err(RegistryError::EmptyTypeName);
        }
        if self.get(entry.type_name).is_some() {
            return Err(RegistryError::DuplicateType(entry.type_name.into()));
        }
        if let EntryKind::Available {
            stability: Stability::Alpha,
            feature_gate: None,
            ..
        } = entry.kind
        {
            return Err(RegistryError::AlphaWithoutGate(entry.type_name.into()));
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Registers a feature gate that no plugin type carries (for out-of-tree behaviour switches).
    pub fn register_feature_gate(&mut self, gate: &'static str) {
        if !self.extra_gates.contains(&gate) {
            self.extra_gates.push(gate);
        }
    }

    /// Lends `services` to every factory (a host that can tokenise registers its tokenizers).
    pub fn set_services(&mut self, services: Services) {
        self.services = services;
    }

    /// The host services factories see.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The entry for `type_name`.
    pub fn get(&self, type_name: &str) -> Option<&RegistryEntry> {
        self.entries.iter().find(|e| e.type_name == type_name)
    }

    /// The registered type name closest to `type_name` (a typo: at most a third of its length
    /// in single-character edits, and at most 3), if any.
    pub fn closest(&self, type_name: &str) -> Option<&'static str> {
        crate::suggest::closest(type_name, self.entries.iter().map(|e| e.type_name))
    }

    /// Every entry, in registration order.
    pub fn entries(&self) -> &[RegistryEntry] {
        &self.entries
    }

    /// The default producer entry for `key`, if one is registered.
    pub fn default_producer(&self, key: DataKey) -> Option<&RegistryEntry> {
        self.entries.iter().find(|e| {
            matches!(e.kind, EntryKind::Available { default_producer_for: Some(k), .. } if k == key)
        })
    }

    /// True when `gate` is known: a system gate, a plugin type's gate or a registered extra.
    pub fn is_known_gate(&self, gate: &str) -> bool {
        SYSTEM_FEATURE_GATES.contains(&gate)
            || self.extra_gates.contains(&gate)
            || self.entries.iter().any(|e| {
                matches!(e.kind, EntryKind::Available { feature_gate: Some(g), .. } if g == gate)
            })
    }
}

/// Parses a plugin's `parameters` into `P`; missing or `null` parameters give `P::default()`.
/// Use `#[serde(deny_unknown_fields)]` on `P` so unknown fields are rejected.
///
/// # Errors
/// A [`ConfigError`] whose path is relative to `parameters` (e.g. `matchExpressions[0].operator`).
pub fn parse_params<P: DeserializeOwned + Default>(
    params: Option<&Value>,
) -> Result<P, ConfigError> {
    match params {
        None | Some(Value::Null) => Ok(P::default()),
        Some(v) => serde_path_to_error::deserialize(v).map_err(ConfigError::from_serde),
    }
}

#[cfg(test)]
mod distance_tests {
    use super::*;

    #[test]
    fn typos_find_the_registered_type() {
        let r = Registry::with_builtins();
        assert_eq!(r.closest("queue-scorrer"), Some("queue-scorer"));
        assert_eq!(
            r.closest("prefix-cache-scorrer"),
            Some("prefix-cache-scorer")
        );
        assert_eq!(r.closest("token-producer"), None, "not a typo of anything");
    }
}
