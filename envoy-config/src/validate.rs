//! The same check the module runs in `on_configure`, without Envoy.

use scheduler_core::{PickerConfig, Registry};

/// Validates a module configuration with the in-tree plugins. Returns the warnings
/// (deprecations) on success.
///
/// # Errors
/// The error text the module would log (`path: message`).
pub fn validate(json: &str) -> Result<Vec<String>, String> {
    PickerConfig::load(json, &Registry::with_builtins())
        .map(|l| l.report.warnings)
        .map_err(|e| e.to_string())
}
