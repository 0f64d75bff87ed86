//! The same check the module runs in `on_configure`, without Envoy.

use scheduler_core::{PickerConfig, Registry};

/// The in-tree plugins with the services every build lends them that need no model files: CEL
/// (so an expression that does not compile fails here as it would in Envoy). Tokenizers are
/// not loaded offline.
fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    r.set_services(cel_expressions::with_cel(r.services().clone()));
    r
}

/// Validates a module configuration (JSON text) with the in-tree plugins. Returns the warnings
/// (deprecations, ignored parameters) on success.
///
/// # Errors
/// The error text the module would log (`path: message`).
pub fn validate(json: &str) -> Result<Vec<String>, String> {
    PickerConfig::load(json, &registry())
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
        scheduler_core::load(&doc.to_string(), &registry())
            .map(|(_, report)| report.warnings)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cel_expressions_are_compiled_offline() {
        let doc = |expr: &str| {
            serde_json::json!({"plugins": [{"type": "request-attribute-reporter", "parameters":
                {"attributes": [{"key": {"name": "cost"}, "expression": expr}]}}]})
        };
        assert!(validate_document(&doc("usage.prompt_tokens + usage.completion_tokens")).is_ok());
        let err = validate_document(&doc("usage.prompt_tokens +")).unwrap_err();
        assert!(err.contains("attributes[0].expression"), "{err}");
    }
}
