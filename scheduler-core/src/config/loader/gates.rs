//! Stage 2: feature gates. Every gate must be known (upstream's, or a registered one); a gate
//! set to false turns its plugins off. `flowControl` turns the flow-control layer on
//! (`loader/flow_control.rs`).

use crate::config::FeatureGatesSpec;
use crate::error::{ConfigError, ConfigErrorKind as K};

use super::instantiate::Loader;

/// Records the gates on `loader`.
///
/// # Errors
/// A malformed entry, an unknown gate.
pub(super) fn apply(loader: &mut Loader<'_>, gates: &FeatureGatesSpec) -> Result<(), ConfigError> {
    let registry = loader.registry;
    for (gate, on, path) in gates.entries()? {
        if !registry.is_known_gate(&gate) {
            return Err(ConfigError::new(path, K::UnknownFeatureGate(gate)));
        }
        if on {
            loader.enabled.push(gate);
        } else {
            loader.disabled.push(gate);
        }
    }

    Ok(())
}
