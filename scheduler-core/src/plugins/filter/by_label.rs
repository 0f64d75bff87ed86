//! `by-label` (llm-d, deprecated there in favour of `label-selector-filter` and the role
//! filters): keeps endpoints whose label `label` has one of `validValues`, and, when
//! `allowsNoLabel`, those without the label (llm-d-router
//! `scheduling/filter/bylabel/filter.go`).
//!
//! Parameters: `label` (string, required), `validValues` (strings), `allowsNoLabel` (bool,
//! default false); `validValues` must be non-empty unless `allowsNoLabel` is true.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Filter, Plugin, TypedName};
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "by-label";

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Params {
    #[serde(default)]
    label: String,
    #[serde(default)]
    valid_values: Vec<String>,
    #[serde(default)]
    allows_no_label: bool,
}

/// Builds a [`ByLabel`] filter.
///
/// # Errors
/// Unknown fields; an empty `label`; no `validValues` while `allowsNoLabel` is false.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if p.label.is_empty() {
        return Err(ConfigError::invalid(
            FieldPath::key("label"),
            "'label' must be specified",
        ));
    }
    if p.valid_values.is_empty() && !p.allows_no_label {
        return Err(ConfigError::invalid(
            FieldPath::key("validValues"),
            "either 'validValues' must be non-empty or 'allowsNoLabel' must be true",
        ));
    }
    Ok(Arc::new(ByLabel {
        typed_name: TypedName::new(TYPE, name),
        label: p.label,
        valid_values: p.valid_values,
        allows_no_label: p.allows_no_label,
    }))
}

/// See the module docs.
pub struct ByLabel {
    typed_name: TypedName,
    label: String,
    valid_values: Vec<String>,
    allows_no_label: bool,
}

impl Plugin for ByLabel {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_filter(&self) -> Option<&dyn Filter> {
        Some(self)
    }
}

impl Filter for ByLabel {
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        _: &mut dyn Rng,
    ) {
        for (k, &i) in keep.iter_mut().zip(candidates) {
            *k = match cx.endpoint(i).and_then(|e| e.label(&self.label)) {
                None => self.allows_no_label,
                Some(v) => self.valid_values.iter().any(|x| x == v),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::Endpoint;
    use crate::model::request::InferenceRequest;
    use crate::plugin::CycleState;
    use crate::rng::SplitMix64;
    use alloc::string::ToString;

    fn kept(params: serde_json::Value) -> Vec<bool> {
        let eps = [
            Endpoint::new("10.0.0.1:1").with_label("tier", "gold"),
            Endpoint::new("10.0.0.2:1").with_label("tier", "bronze"),
            Endpoint::new("10.0.0.3:1"),
        ];
        let plugin = factory("f", Some(&params), &Handle::new(&[])).unwrap();
        let req = InferenceRequest::new("m", "");
        let state = CycleState::new();
        let cx = CycleContext {
            request: &req,
            endpoints: &eps,
            state: &state,
            now_ms: 1,
            peer: None,
        };
        let mut keep = alloc::vec![false; 3];
        plugin
            .as_filter()
            .unwrap()
            .filter(&cx, &[0, 1, 2], &mut keep, &mut SplitMix64::new(1));
        keep
    }

    #[test]
    fn keeps_valid_values_and_optionally_unlabelled() {
        let v = serde_json::json!({"label": "tier", "validValues": ["gold"]});
        assert_eq!(kept(v), [true, false, false]);
        let v =
            serde_json::json!({"label": "tier", "validValues": ["gold"], "allowsNoLabel": true});
        assert_eq!(kept(v), [true, false, true]);
        let v = serde_json::json!({"label": "tier", "allowsNoLabel": true});
        assert_eq!(kept(v), [false, false, true]);
    }

    #[test]
    fn parameters_are_checked_as_upstream_does() {
        let e = |v: serde_json::Value| {
            factory("f", Some(&v), &Handle::new(&[]))
                .err()
                .unwrap()
                .to_string()
        };
        assert_eq!(e(serde_json::json!({})), "label: 'label' must be specified");
        assert_eq!(
            e(serde_json::json!({"label": "x"})),
            "validValues: either 'validValues' must be non-empty or 'allowsNoLabel' must be true"
        );
    }
}
