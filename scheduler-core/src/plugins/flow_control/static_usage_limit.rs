//! `static-usage-limit-policy` (the default usage limit): every priority band may dispatch while
//! the pool's saturation is below one fixed `threshold` (fraction; default 1.0, i.e. until the
//! saturation detector says "saturated"), as llm-d-router `usagelimits` `NewConstPolicy`.
//! Parameters: `threshold` (finite, > 0).

use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, TypedName, UsageLimitPolicy};

/// Plugin type name.
pub const TYPE: &str = "static-usage-limit-policy";

/// Parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// The saturation ceiling of every band (fraction).
    pub threshold: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params { threshold: 1.0 }
    }
}

/// Builds a [`StaticUsageLimit`].
///
/// # Errors
/// Unknown fields; a `threshold` that is not finite or not > 0.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if !(p.threshold.is_finite() && p.threshold > 0.0) {
        return Err(ConfigError::invalid(
            FieldPath::key("threshold"),
            "must be a finite number > 0",
        ));
    }
    Ok(Arc::new(StaticUsageLimit {
        typed_name: TypedName::new(TYPE, name),
        threshold: p.threshold,
    }))
}

/// See the module docs.
pub struct StaticUsageLimit {
    typed_name: TypedName,
    threshold: f64,
}

impl Plugin for StaticUsageLimit {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_usage_limit_policy(&self) -> Option<&dyn UsageLimitPolicy> {
        Some(self)
    }
}

impl UsageLimitPolicy for StaticUsageLimit {
    fn ceilings(&self, _: f64, _: &[i32], ceilings: &mut [f64]) {
        ceilings.fill(self.threshold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::Handle;

    fn handle_for_tests() -> Handle<'static> {
        Handle::new(&[])
    }

    #[test]
    fn one_ceiling_for_every_band() {
        let p = factory(
            TYPE,
            Some(&serde_json::json!({"threshold": 0.8})),
            &handle_for_tests(),
        )
        .unwrap();
        let mut c = [1.0; 3];
        p.as_usage_limit_policy()
            .unwrap()
            .ceilings(0.5, &[10, 0, -1], &mut c);
        assert_eq!(c, [0.8; 3]);
        for bad in [0.0, -1.0] {
            assert!(factory(
                TYPE,
                Some(&serde_json::json!({ "threshold": bad })),
                &handle_for_tests()
            )
            .is_err());
        }
    }
}
