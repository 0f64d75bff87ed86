//! `endpoint-attribute-scorer` (llm-d, Alpha): scores candidates by one numeric endpoint
//! attribute, linearly normalised (llm-d-router `scorer/endpointattribute`):
//! `score = (value − min) / (max − min)`, inverted for `linear_lower_is_better`.
//!
//! - `algorithm.normalization`: `adaptiveRange` (default; min and max over the candidates that
//!   have the attribute; all equal: every such candidate scores 1.0) or `fixedRange: {min, max}`
//!   (values clamped; `min < max`).
//! - A candidate without the attribute scores 0.
//! - `attributeKey` and `producer` as for `endpoint-attribute-filter`: the proxy has the core
//!   metrics extractor's `customMetrics` attributes and `dcgm-extractor`'s `GPUUtilization`.
//!   Category: distribution.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Plugin, Scorer, TypedName};
use crate::plugins::filter::endpoint_attribute::check_attribute;

/// Plugin type name.
pub const TYPE: &str = "endpoint-attribute-scorer";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    attribute_key: String,
    producer: Option<String>,
    algorithm: Option<Algorithm>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Algorithm {
    #[serde(rename = "type")]
    kind: String,
    normalization: Option<Normalization>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Normalization {
    adaptive_range: Option<serde_json::Value>,
    fixed_range: Option<FixedRange>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FixedRange {
    min: Option<f64>,
    max: Option<f64>,
}

/// Builds an [`EndpointAttributeScorer`].
///
/// # Errors
/// Unknown fields; `attributeKey` missing (or with `/` and no `producer`); `algorithm.type` not
/// `linear_lower_is_better`/`linear_higher_is_better`; both normalisations set; a fixed range
/// without `min < max`.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let key = check_attribute("attributeKey", &p.attribute_key, p.producer.as_deref())?;
    if key.is_none() {
        log::warn!(
            "{TYPE} '{name}': producer '{}' has no counterpart in the proxy; '{}' is always missing (score 0)",
            p.producer.as_deref().unwrap_or_default(),
            p.attribute_key
        );
    }
    let at = FieldPath::key("algorithm");
    let alg = p
        .algorithm
        .ok_or_else(|| ConfigError::invalid(at.clone(), "is required"))?;
    let lower_is_better = match alg.kind.as_str() {
        "linear_lower_is_better" => true,
        "linear_higher_is_better" => false,
        other => {
            return Err(ConfigError::invalid(
                at.with_key("type"),
                format!("'{other}' must be linear_lower_is_better or linear_higher_is_better"),
            ))
        }
    };
    let fixed = match alg.normalization {
        None => None,
        Some(Normalization {
            adaptive_range: Some(_),
            fixed_range: Some(_),
        }) => {
            return Err(ConfigError::invalid(
                at.with_key("normalization"),
                "set at most one of adaptiveRange and fixedRange",
            ))
        }
        Some(Normalization {
            fixed_range: Some(r),
            ..
        }) => match (r.min, r.max) {
            (Some(lo), Some(hi)) if lo.is_finite() && hi.is_finite() && lo < hi => Some((lo, hi)),
            _ => {
                return Err(ConfigError::invalid(
                    at.with_key("normalization").with_key("fixedRange"),
                    "needs finite min < max",
                ))
            }
        },
        Some(_) => None,
    };
    Ok(Arc::new(EndpointAttributeScorer::new(
        TypedName::new(TYPE, name),
        key.unwrap_or_default(),
        lower_is_better,
        fixed,
    )))
}

/// See the module docs.
pub struct EndpointAttributeScorer {
    typed_name: TypedName,
    /// Empty when the producer is not available here.
    attribute: String,
    lower_is_better: bool,
    /// `fixedRange` bounds; `None`: adaptive.
    fixed: Option<(f64, f64)>,
}

impl EndpointAttributeScorer {
    /// A scorer of the attribute `attribute` (an endpoint attribute key; empty: scores
    /// nothing), lower or higher values better, over `fixed` bounds or (`None`) the
    /// candidates' own range. Other plugin types that score one attribute this way (the
    /// multi-cluster scorers) are built with it under their own `typed_name`.
    pub fn new(
        typed_name: TypedName,
        attribute: String,
        lower_is_better: bool,
        fixed: Option<(f64, f64)>,
    ) -> Self {
        EndpointAttributeScorer {
            typed_name,
            attribute,
            lower_is_better,
            fixed,
        }
    }
}

impl Plugin for EndpointAttributeScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
}

impl Scorer for EndpointAttributeScorer {
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        if self.attribute.is_empty() {
            return;
        }
        let value = |i: usize| {
            cx.endpoints
                .get(i)
                .and_then(|e| e.metrics.attribute(&self.attribute))
        };
        let (lo, hi) = match self.fixed {
            Some(r) => r,
            None => {
                let mut r: Option<(f64, f64)> = None;
                for v in candidates.iter().filter_map(|&i| value(i)) {
                    r = Some(r.map_or((v, v), |(a, b)| (a.min(v), b.max(v))));
                }
                match r {
                    Some(r) => r,
                    None => return,
                }
            }
        };
        for (&i, s) in candidates.iter().zip(scores.iter_mut()) {
            let Some(v) = value(i) else {
                continue;
            };
            *s = if hi > lo {
                let x = ((v.clamp(lo, hi) - lo) / (hi - lo)).clamp(0.0, 1.0);
                if self.lower_is_better {
                    1.0 - x
                } else {
                    x
                }
            } else {
                // Adaptive range with every value equal: neutral.
                1.0
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
    use alloc::vec;
    use alloc::vec::Vec;

    fn eps(values: &[Option<f64>]) -> Vec<Endpoint> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut e = Endpoint::new(format!("10.0.0.{i}:8000"));
                if let Some(v) = v {
                    e.metrics.attributes.push(("q".into(), *v));
                }
                e
            })
            .collect()
    }

    fn scores(params: serde_json::Value, values: &[Option<f64>]) -> Vec<f64> {
        let p = factory(TYPE, Some(&params), &Handle::new(&[])).unwrap();
        let eps = eps(values);
        let req = InferenceRequest::new("m", "");
        let state = CycleState::new();
        let cx = CycleContext {
            request: &req,
            endpoints: &eps,
            state: &state,
            now_ms: 0,
            peer: None,
        };
        let cands: Vec<usize> = (0..eps.len()).collect();
        let mut s = vec![0.0; eps.len()];
        p.as_scorer().unwrap().score(&cx, &cands, &mut s);
        s
    }

    #[test]
    fn adaptive_and_fixed_ranges() {
        let lower = serde_json::json!({"attributeKey": "q", "algorithm": {"type": "linear_lower_is_better"}});
        assert_eq!(
            scores(lower.clone(), &[Some(0.0), Some(5.0), Some(10.0), None]),
            vec![1.0, 0.5, 0.0, 0.0]
        );
        assert_eq!(scores(lower, &[Some(3.0), Some(3.0)]), vec![1.0, 1.0]);
        let higher = serde_json::json!({"attributeKey": "q", "algorithm": {"type": "linear_higher_is_better",
            "normalization": {"fixedRange": {"min": 0.0, "max": 1.0}}}});
        assert_eq!(
            scores(higher, &[Some(0.25), Some(2.0), Some(-1.0)]),
            vec![0.25, 1.0, 0.0]
        );
    }

    #[test]
    fn bad_parameters() {
        for (p, field) in [
            (
                serde_json::json!({"algorithm": {"type": "linear_lower_is_better"}}),
                "attributeKey",
            ),
            (
                serde_json::json!({"attributeKey": "a/b", "algorithm": {"type": "linear_lower_is_better"}}),
                "attributeKey",
            ),
            (
                serde_json::json!({"attributeKey": "q", "algorithm": {"type": "log"}}),
                "algorithm.type",
            ),
            (
                serde_json::json!({"attributeKey": "q", "algorithm": {"type": "linear_lower_is_better",
                "normalization": {"fixedRange": {"min": 1.0, "max": 1.0}}}}),
                "algorithm.normalization.fixedRange",
            ),
        ] {
            let e = factory(TYPE, Some(&p), &Handle::new(&[])).err().unwrap();
            assert_eq!(alloc::string::ToString::to_string(&e.path), field, "{e}");
        }
    }
}
