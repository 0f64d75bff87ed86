//! Stage 1: the document's `apiVersion` and `kind`, and `flowControl` without its feature gate
//! (its settings are ignored with a warning and `flowControl.saturationDetector` is honoured, as
//! llm-d does; with the gate it is the flow-control layer, `super::flow_control`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::config::{EndpointPickerConfig, PluginRefSpec, API_VERSIONS, KIND};
use crate::error::{ConfigError, FieldPath};

/// What stage 1 found.
pub(super) struct Header {
    /// `flowControl.saturationDetector`, when set.
    pub fc_detector: Option<PluginRefSpec>,
    /// Warnings to report.
    pub warnings: Vec<String>,
}

/// Checks `apiVersion`, `kind` and `flowControl`.
///
/// # Errors
/// An unsupported `apiVersion`, a `kind` other than `EndpointPickerConfig`, a malformed
/// `flowControl.saturationDetector`.
pub(super) fn check(cfg: &EndpointPickerConfig, fc_gate: bool) -> Result<Header, ConfigError> {
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
    // top-level `saturationDetector`). With the gate on it is the flow-control layer
    // (`super::flow_control` reads it).
    let mut warnings: Vec<String> = Vec::new();
    let fc_detector = match &cfg.flow_control {
        None => None,
        Some(fc) => {
            let detector = fc.get("saturationDetector").cloned();
            let settings: Vec<&String> = fc
                .as_object()
                .map(|m| m.keys().filter(|k| *k != "saturationDetector").collect())
                .unwrap_or_default();
            if !settings.is_empty() && !fc_gate {
                warnings.push(format!(
                    "flowControl: settings ignored without the 'flowControl' feature gate (as llm-d): {}",
                    settings.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            match detector {
                None => None,
                Some(d) => Some(
                    serde_path_to_error::deserialize::<_, PluginRefSpec>(&d).map_err(|e| {
                        ConfigError::from_serde(e)
                            .prefixed(&FieldPath::key("flowControl").with_key("saturationDetector"))
                    })?,
                ),
            }
        }
    };

    Ok(Header {
        fc_detector,
        warnings,
    })
}
