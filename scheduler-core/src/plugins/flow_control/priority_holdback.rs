//! `priority-holdback-policy` (llm-d): a usage limit that holds lower priorities back first as the
//! pool fills, so capacity stays free for higher ones. Each band gets a ceiling between
//! `maxCeiling` (highest priority) and `minCeiling` (lowest), linearly (llm-d-router
//! `usagelimits/priorityholdback`, in our words):
//! - domain `rank` (default): by position among the N active priorities, highest first:
//!   c_i = max − i · (max − min) / (N − 1);
//! - domain `value`: by the priority's value within the active range:
//!   c_i = min + (p_i − p_min) / (p_max − p_min) · (max − min) (all equal: max).
//!
//! One active priority gets `maxCeiling`. Parameters: `minCeiling` (required, in [0, 1)),
//! `maxCeiling` (default 1.0, in (0, 1], above `minCeiling`), `domain` (`rank` | `value`),
//! `shape` (`linear`, the only one).

use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, TypedName, UsageLimitPolicy};

/// Plugin type name.
pub const TYPE: &str = "priority-holdback-policy";

/// How priorities map onto the ceiling range.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// Equal steps by rank.
    #[default]
    Rank,
    /// Proportional to the priority's value.
    Value,
}

/// Parameters.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Params {
    /// Ceiling of the lowest priority (required).
    pub min_ceiling: Option<f64>,
    /// Ceiling of the highest priority (default 1.0).
    pub max_ceiling: Option<f64>,
    /// `rank` or `value`.
    pub domain: Domain,
    /// `linear` (the only shape).
    pub shape: Option<String>,
}

/// Builds a [`PriorityHoldback`].
///
/// # Errors
/// Unknown fields; `minCeiling` missing or outside [0, 1); `maxCeiling` outside (0, 1] or not
/// above `minCeiling`; a `shape` other than `linear`; an unknown `domain`.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let min = p
        .min_ceiling
        .ok_or_else(|| ConfigError::invalid(FieldPath::key("minCeiling"), "is required"))?;
    let max = p.max_ceiling.unwrap_or(1.0);
    if !(0.0..1.0).contains(&min) {
        return Err(ConfigError::invalid(
            FieldPath::key("minCeiling"),
            "must be in [0.0, 1.0)",
        ));
    }
    if !(max > 0.0 && max <= 1.0) {
        return Err(ConfigError::invalid(
            FieldPath::key("maxCeiling"),
            "must be in (0.0, 1.0]",
        ));
    }
    if min >= max {
        return Err(ConfigError::invalid(
            FieldPath::key("minCeiling"),
            "must be below maxCeiling",
        ));
    }
    if let Some(s) = p.shape.as_deref().filter(|s| *s != "linear") {
        return Err(ConfigError::invalid(
            FieldPath::key("shape"),
            alloc::format!("unsupported shape '{s}'; only 'linear'"),
        ));
    }
    Ok(Arc::new(PriorityHoldback {
        typed_name: TypedName::new(TYPE, name),
        min,
        max,
        domain: p.domain,
    }))
}

/// See the module docs.
pub struct PriorityHoldback {
    typed_name: TypedName,
    min: f64,
    max: f64,
    domain: Domain,
}

impl Plugin for PriorityHoldback {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_usage_limit_policy(&self) -> Option<&dyn UsageLimitPolicy> {
        Some(self)
    }
}

impl UsageLimitPolicy for PriorityHoldback {
    fn ceilings(&self, _: f64, priorities: &[i32], ceilings: &mut [f64]) {
        let n = priorities.len();
        if n <= 1 {
            ceilings.fill(self.max);
            return;
        }
        let spread = self.max - self.min;
        match self.domain {
            Domain::Rank => {
                for (i, c) in ceilings.iter_mut().enumerate() {
                    *c = self.max - i as f64 * spread / (n - 1) as f64;
                }
            }
            Domain::Value => {
                let hi = f64::from(priorities.first().copied().unwrap_or(0));
                let lo = f64::from(priorities.last().copied().unwrap_or(0));
                let range = hi - lo;
                for (c, p) in ceilings.iter_mut().zip(priorities) {
                    *c = if range == 0.0 {
                        self.max
                    } else {
                        self.min + (f64::from(*p) - lo) / range * spread
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ceilings(params: serde_json::Value, priorities: &[i32]) -> alloc::vec::Vec<f64> {
        let p = factory(TYPE, Some(&params), &Handle::new(&[])).unwrap();
        let mut c = alloc::vec![1.0; priorities.len()];
        p.as_usage_limit_policy()
            .unwrap()
            .ceilings(0.5, priorities, &mut c);
        c
    }

    #[test]
    fn lower_priorities_get_lower_ceilings() {
        let c = ceilings(
            json!({"minCeiling": 0.4, "maxCeiling": 0.9}),
            &[100, 10, -1],
        );
        assert!(
            (c[0] - 0.9).abs() < 1e-9 && (c[1] - 0.65).abs() < 1e-9 && (c[2] - 0.4).abs() < 1e-9,
            "{c:?}"
        );
        let c = ceilings(json!({"minCeiling": 0.5, "domain": "value"}), &[10, 5, 0]);
        assert!(
            (c[0] - 1.0).abs() < 1e-9 && (c[1] - 0.75).abs() < 1e-9 && (c[2] - 0.5).abs() < 1e-9,
            "{c:?}"
        );
        assert_eq!(ceilings(json!({"minCeiling": 0.5}), &[3]), [1.0]);
    }

    #[test]
    fn bad_parameters_are_errors() {
        for bad in [
            json!({}),
            json!({"minCeiling": 1.0}),
            json!({"minCeiling": 0.5, "maxCeiling": 0.5}),
            json!({"minCeiling": 0.5, "shape": "cubic"}),
            json!({"minCeiling": 0.5, "domain": "tier"}),
        ] {
            assert!(
                factory(TYPE, Some(&bad), &Handle::new(&[])).is_err(),
                "{bad}"
            );
        }
    }
}
