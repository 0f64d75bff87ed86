//! `endpoint-attribute-filter` (llm-d, Alpha): keeps the candidates whose numeric endpoint
//! attribute passes a threshold (llm-d-router `filter/endpointattribute`).
//!
//! The attribute is a scalar an extractor published for the endpoint: with `producer` unset (or
//! `core-metrics-extractor`), a `customMetrics` attribute of the core metrics extractor (see
//! [`crate::parse::engine::CustomMetricParams`]); with `producer: dcgm-extractor`, the DCGM
//! exporter's `GPUUtilization`; with `producer: models-data-extractor`, `model:<id>` (1 when the
//! endpoint serves `<id>`). Other producers have no in-proxy counterpart, so their attributes
//! are always missing here.
//!
//! - `algorithm: {type: threshold, threshold: {operator, value}}`: kept when `value(endpoint)
//!   <op> threshold.value`, `operator` one of `LessThan`, `LessThanOrEqual`, `GreaterThan`,
//!   `GreaterThanOrEqual`, `Equal`, `NotEqual`.
//! - `onMissing`: `Pass` (default) keeps an endpoint without the attribute, `Fail` drops it.
//! - `fallbackOnEmpty`: when every candidate was dropped, keep them all (default false).
//! - An `attribute` containing `/` needs `producer` set explicitly (as upstream).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::model::endpoint::Endpoint;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Filter, Plugin, TypedName};
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "endpoint-attribute-filter";

/// The producer whose attributes the proxy has.
pub const CORE_PRODUCER: &str = "core-metrics-extractor";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    attribute: String,
    producer: Option<String>,
    on_missing: Option<String>,
    fallback_on_empty: bool,
    algorithm: Option<Algorithm>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Algorithm {
    #[serde(rename = "type")]
    kind: String,
    threshold: Option<Threshold>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Threshold {
    operator: String,
    value: Option<f64>,
}

/// A comparison of the threshold algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// `<`
    LessThan,
    /// `<=`
    LessThanOrEqual,
    /// `>`
    GreaterThan,
    /// `>=`
    GreaterThanOrEqual,
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
}

impl Operator {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "LessThan" => Operator::LessThan,
            "LessThanOrEqual" => Operator::LessThanOrEqual,
            "GreaterThan" => Operator::GreaterThan,
            "GreaterThanOrEqual" => Operator::GreaterThanOrEqual,
            "Equal" => Operator::Equal,
            "NotEqual" => Operator::NotEqual,
            _ => return None,
        })
    }

    /// `v <op> t`.
    pub fn holds(self, v: f64, t: f64) -> bool {
        match self {
            Operator::LessThan => v < t,
            Operator::LessThanOrEqual => v <= t,
            Operator::GreaterThan => v > t,
            Operator::GreaterThanOrEqual => v >= t,
            Operator::Equal => v == t,
            Operator::NotEqual => v != t,
        }
    }
}

/// Checks `attribute` against its `producer` as upstream does: required; one containing `/`
/// needs an explicit producer. Returns the key of the attribute in the endpoint's attributes,
/// or `None` when no producer of this proxy publishes it.
pub(crate) fn check_attribute(
    field: &str,
    attribute: &str,
    producer: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    if attribute.is_empty() {
        return Err(ConfigError::invalid(FieldPath::key(field), "is required"));
    }
    if attribute.contains('/') && producer.is_none() {
        return Err(ConfigError::invalid(
            FieldPath::key(field),
            "an attribute containing '/' needs 'producer' set explicitly",
        ));
    }
    Ok(match producer {
        None | Some("") | Some(CORE_PRODUCER) => Some(String::from(attribute)),
        Some(
            p @ (crate::plugins::datalayer::dcgm::EXTRACTOR_TYPE
            | crate::plugins::datalayer::models::EXTRACTOR_TYPE),
        ) => Some(format!("{p}/{attribute}")),
        Some(_) => None,
    })
}

/// Builds an [`EndpointAttributeFilter`].
///
/// # Errors
/// Unknown fields; `attribute` missing (or containing `/` without `producer`); `onMissing` not
/// `Pass`/`Fail`; an algorithm other than `threshold`; a missing or unknown operator; a missing
/// threshold value.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let key = check_attribute("attribute", &p.attribute, p.producer.as_deref())?;
    if key.is_none() {
        log::warn!(
            "{TYPE} '{name}': producer '{}' has no counterpart in the proxy; '{}' is always missing (onMissing applies)",
            p.producer.as_deref().unwrap_or_default(),
            p.attribute
        );
    }
    let pass_missing = match p.on_missing.as_deref() {
        None | Some("Pass") => true,
        Some("Fail") => false,
        Some(o) => {
            return Err(ConfigError::invalid(
                FieldPath::key("onMissing"),
                format!("'{o}' must be Pass or Fail"),
            ))
        }
    };
    let alg_at = FieldPath::key("algorithm");
    let alg = p
        .algorithm
        .ok_or_else(|| ConfigError::invalid(alg_at.clone(), "is required"))?;
    if alg.kind != "threshold" {
        return Err(ConfigError::invalid(
            alg_at.with_key("type"),
            format!("'{}' is not supported; only 'threshold'", alg.kind),
        ));
    }
    let t_at = alg_at.with_key("threshold");
    let t = alg
        .threshold
        .ok_or_else(|| ConfigError::invalid(t_at.clone(), "is required"))?;
    let operator = Operator::parse(&t.operator).ok_or_else(|| {
        ConfigError::invalid(
            t_at.clone().with_key("operator"),
            format!("unknown operator '{}'", t.operator),
        )
    })?;
    let value = t
        .value
        .filter(|v| v.is_finite())
        .ok_or_else(|| ConfigError::invalid(t_at.with_key("value"), "is required (a number)"))?;
    Ok(Arc::new(EndpointAttributeFilter {
        typed_name: TypedName::new(TYPE, name),
        attribute: key.unwrap_or_default(),
        pass_missing,
        fallback_on_empty: p.fallback_on_empty,
        operator,
        value,
    }))
}

/// See the module docs.
pub struct EndpointAttributeFilter {
    typed_name: TypedName,
    /// Empty when the producer is not available here (every endpoint misses it).
    attribute: String,
    pass_missing: bool,
    fallback_on_empty: bool,
    operator: Operator,
    value: f64,
}

impl EndpointAttributeFilter {
    fn keeps(&self, e: &Endpoint) -> bool {
        let v = if self.attribute.is_empty() {
            None
        } else {
            e.metrics.attribute(&self.attribute)
        };
        match v {
            Some(v) => self.operator.holds(v, self.value),
            None => self.pass_missing,
        }
    }
}

impl Plugin for EndpointAttributeFilter {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_filter(&self) -> Option<&dyn Filter> {
        Some(self)
    }
}

impl Filter for EndpointAttributeFilter {
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        _: &mut dyn Rng,
    ) {
        for (&i, k) in candidates.iter().zip(keep.iter_mut()) {
            *k = cx.endpoints.get(i).is_some_and(|e| self.keeps(e));
        }
        if self.fallback_on_empty && !keep.iter().any(|&k| k) {
            keep.fill(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::request::InferenceRequest;
    use crate::plugin::CycleState;
    use crate::rng::SplitMix64;
    use alloc::vec;
    use alloc::vec::Vec;

    fn kept(params: serde_json::Value, values: &[Option<f64>]) -> Vec<usize> {
        let p = factory(TYPE, Some(&params), &Handle::new(&[])).unwrap();
        let eps: Vec<Endpoint> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut e = Endpoint::new(format!("10.0.0.{i}:8000"));
                if let Some(v) = v {
                    e.metrics.attributes.push(("running".into(), *v));
                }
                e
            })
            .collect();
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
        let mut keep = vec![true; eps.len()];
        p.as_filter()
            .unwrap()
            .filter(&cx, &cands, &mut keep, &mut SplitMix64::new(1));
        cands.into_iter().filter(|&i| keep[i]).collect()
    }

    fn params(op: &str, value: f64, on_missing: &str, fallback: bool) -> serde_json::Value {
        serde_json::json!({"attribute": "running", "onMissing": on_missing, "fallbackOnEmpty": fallback,
            "algorithm": {"type": "threshold", "threshold": {"operator": op, "value": value}}})
    }

    #[test]
    fn threshold_missing_and_fallback() {
        let v = [Some(2.0), Some(10.0), None, Some(5.0)];
        assert_eq!(kept(params("LessThan", 5.0, "Pass", false), &v), vec![0, 2]);
        assert_eq!(
            kept(params("LessThanOrEqual", 5.0, "Fail", false), &v),
            vec![0, 3]
        );
        assert_eq!(kept(params("GreaterThan", 5.0, "Fail", false), &v), vec![1]);
        assert_eq!(
            kept(params("GreaterThanOrEqual", 5.0, "Fail", false), &v),
            vec![1, 3]
        );
        assert_eq!(kept(params("Equal", 2.0, "Fail", false), &v), vec![0]);
        assert_eq!(
            kept(params("NotEqual", 2.0, "Pass", false), &v),
            vec![1, 2, 3]
        );
        // Nothing passes: empty, or everything with fallbackOnEmpty.
        assert_eq!(
            kept(params("LessThan", 0.0, "Fail", false), &v),
            Vec::<usize>::new()
        );
        assert_eq!(
            kept(params("LessThan", 0.0, "Fail", true), &v),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn producers_of_this_proxy_have_their_keys() {
        assert_eq!(
            check_attribute("a", "x", None).unwrap().as_deref(),
            Some("x")
        );
        assert_eq!(
            check_attribute("a", "GPUUtilization", Some("dcgm-extractor"))
                .unwrap()
                .as_deref(),
            Some("dcgm-extractor/GPUUtilization")
        );
        assert_eq!(
            check_attribute("a", "model:m", Some("models-data-extractor"))
                .unwrap()
                .as_deref(),
            Some("models-data-extractor/model:m")
        );
        assert_eq!(check_attribute("a", "x", Some("other")).unwrap(), None);
    }

    #[test]
    fn another_producer_is_always_missing_here() {
        let mut p = params("LessThan", 0.9, "Fail", false);
        p["producer"] = "some-extractor".into();
        assert_eq!(kept(p, &[Some(0.1)]), Vec::<usize>::new());
    }

    #[test]
    fn bad_parameters() {
        for (p, field) in [
            (
                serde_json::json!({"algorithm": {"type": "threshold", "threshold": {"operator": "LessThan", "value": 1}}}),
                "attribute",
            ),
            (
                serde_json::json!({"attribute": "x", "onMissing": "Maybe", "algorithm": {"type": "threshold", "threshold": {"operator": "LessThan", "value": 1}}}),
                "onMissing",
            ),
            (
                serde_json::json!({"attribute": "x", "algorithm": {"type": "percentile"}}),
                "algorithm.type",
            ),
            (
                serde_json::json!({"attribute": "x", "algorithm": {"type": "threshold", "threshold": {"operator": "Around", "value": 1}}}),
                "algorithm.threshold.operator",
            ),
            (
                serde_json::json!({"attribute": "x", "algorithm": {"type": "threshold", "threshold": {"operator": "LessThan"}}}),
                "algorithm.threshold.value",
            ),
        ] {
            let e = factory(TYPE, Some(&p), &Handle::new(&[])).err().unwrap();
            assert_eq!(alloc::string::ToString::to_string(&e.path), field, "{e}");
        }
    }
}
