//! The same check the module runs in `on_configure`, without Envoy.

use scheduler_core::{PickerConfig, Registry};

/// Validates a module configuration (JSON text) with the in-tree plugins. Returns the warnings
/// (deprecations, ignored parameters) on success.
///
/// # Errors
/// The error text the module would log (`path: message`).
pub fn validate(json: &str) -> Result<Vec<String>, String> {
    PickerConfig::load(json, &Registry::with_builtins())
        .map(|l| l.report.warnings)
        .map_err(|e| e.to_string())
}

/// Validates a parsed document ([`crate::document::parse`]): a module configuration, or a bare
/// GIE `EndpointPickerConfig` (no `pool`), whose GIE part is checked alone.
///
/// # Errors
/// The error text the module would log (`path: message`).
pub fn validate_document(doc: &serde_json::Value) -> Result<Vec<String>, String> {
    if crate::document::has_pool(doc) {
        validate(&doc.to_string())
    } else {
        scheduler_core::load(&doc.to_string(), &Registry::with_builtins())
            .map(|(_, report)| report.warnings)
            .map_err(|e| e.to_string())
    }
}
