//! `label-selector-filter` (llm-d): keeps endpoints whose labels match a Kubernetes-style label
//! selector. `by-label-selector` is a deprecated alias.
//!
//! Parameters: `matchLabels` (map of exact matches) and `matchExpressions` (list of
//! `{key, operator: In|NotIn|Exists|DoesNotExist, values}`); both must hold. `In`/`NotIn` need
//! at least one value; `Exists`/`DoesNotExist` take none. An empty selector keeps every endpoint.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::model::endpoint::Endpoint;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Filter, Plugin, TypedName};
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "label-selector-filter";

/// Selector operators.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum Operator {
    /// Label value is one of `values`.
    In,
    /// Label absent or value not in `values`.
    NotIn,
    /// Label present.
    Exists,
    /// Label absent.
    DoesNotExist,
}

/// One selector requirement.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expression {
    /// Label key.
    pub key: String,
    /// Operator.
    pub operator: Operator,
    /// Values for `In`/`NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

/// Parameters.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Params {
    /// Exact label matches.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default)]
    pub match_expressions: Vec<Expression>,
}

/// Builds a [`LabelSelectorFilter`].
///
/// # Errors
/// Unknown fields or operators; `In`/`NotIn` without values; `Exists`/`DoesNotExist` with values.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    for (i, e) in p.match_expressions.iter().enumerate() {
        let path = FieldPath::key("matchExpressions")
            .with_index(i)
            .with_key("values");
        match e.operator {
            Operator::In | Operator::NotIn if e.values.is_empty() => {
                return Err(ConfigError::invalid(
                    path,
                    "operator In/NotIn needs at least one value",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !e.values.is_empty() => {
                return Err(ConfigError::invalid(
                    path,
                    "operator Exists/DoesNotExist takes no values",
                ));
            }
            _ => {}
        }
    }
    Ok(Arc::new(LabelSelectorFilter {
        typed_name: TypedName::new(TYPE, name),
        selector: p,
    }))
}

/// See the module docs.
pub struct LabelSelectorFilter {
    typed_name: TypedName,
    selector: Params,
}

impl LabelSelectorFilter {
    fn matches(&self, e: &Endpoint) -> bool {
        self.selector
            .match_labels
            .iter()
            .all(|(k, v)| e.label(k) == Some(v.as_str()))
            && self.selector.match_expressions.iter().all(|x| {
                let got = e.label(&x.key);
                match x.operator {
                    Operator::In => got.is_some_and(|g| x.values.iter().any(|v| v == g)),
                    Operator::NotIn => got.is_none_or(|g| !x.values.iter().any(|v| v == g)),
                    Operator::Exists => got.is_some(),
                    Operator::DoesNotExist => got.is_none(),
                }
            })
    }
}

impl Plugin for LabelSelectorFilter {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_filter(&self) -> Option<&dyn Filter> {
        Some(self)
    }
}

impl Filter for LabelSelectorFilter {
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        _: &mut dyn Rng,
    ) {
        for (k, &i) in keep.iter_mut().zip(candidates) {
            *k = cx.endpoint(i).is_some_and(|e| self.matches(e));
        }
    }
}
