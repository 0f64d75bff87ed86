//! `probabilistic-admitter` (llm-d): sheds sheddable requests (priority < 0) with a probability
//! that rises steeply with the pool's saturation; requests with priority ≥ 0 are always
//! admitted, and so is everything when there are no candidates.
//!
//! Formula (llm-d-router `requestcontrol/admitter/probabilisticadmitter`):
//! `saturation = mean over candidates of max(waiting_queue / queueDepthThreshold,
//! kv_cache_usage / kvCacheUtilThreshold)` (KV usage as a fraction 0..1), and a sheddable
//! request is rejected when a uniform draw in [0, 1) is below `p = min(saturation^power · k, 1)`.
//! With the defaults (power 5, k 300) about 2.3 % are shed at saturation 0.15 and all of them
//! from `(1/k)^(1/power)` ≈ 0.32 (upstream's README rounds this to 0.34). A rejection is HTTP 429 (upstream's `ResourceExhausted`).
//!
//! Parameters: `queueDepthThreshold` (integer > 0, default 5), `kvCacheUtilThreshold`
//! (fraction > 0, default 0.8), `power` (> 0, default 5), `k` (> 0, default 300).

use alloc::format;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath, RequestError};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Admitter, CycleContext, Plugin, TypedName};
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "probabilistic-admitter";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    queue_depth_threshold: i64,
    kv_cache_util_threshold: f64,
    power: f64,
    k: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            queue_depth_threshold: 5,
            kv_cache_util_threshold: 0.8,
            power: 5.0,
            k: 300.0,
        }
    }
}

fn positive(v: f64, field: &str) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            FieldPath::key(field),
            format!("must be > 0, got {v}"),
        ))
    }
}

/// Builds a [`ProbabilisticAdmitter`].
///
/// # Errors
/// Unknown fields; a threshold, `power` or `k` that is not > 0.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    positive(p.queue_depth_threshold as f64, "queueDepthThreshold")?;
    positive(p.kv_cache_util_threshold, "kvCacheUtilThreshold")?;
    positive(p.power, "power")?;
    positive(p.k, "k")?;
    Ok(Arc::new(ProbabilisticAdmitter {
        typed_name: TypedName::new(TYPE, name),
        queue_depth_threshold: p.queue_depth_threshold as f64,
        kv_cache_util_threshold: p.kv_cache_util_threshold,
        power: p.power,
        k: p.k,
    }))
}

/// See the module docs.
pub struct ProbabilisticAdmitter {
    typed_name: TypedName,
    queue_depth_threshold: f64,
    kv_cache_util_threshold: f64,
    power: f64,
    k: f64,
}

impl ProbabilisticAdmitter {
    /// The pool saturation over `candidates` (see the module docs).
    fn saturation(&self, cx: &CycleContext<'_>, candidates: &[usize]) -> f64 {
        let total: f64 = candidates
            .iter()
            .map(|&i| match cx.endpoint(i) {
                None => 1.0,
                Some(e) => {
                    let q = f64::from(e.metrics.waiting_queue_size) / self.queue_depth_threshold;
                    let kv = e.metrics.kv_cache_usage / self.kv_cache_util_threshold;
                    q.max(kv)
                }
            })
            .sum();
        total / candidates.len() as f64
    }

    /// The probability of shedding a sheddable request at `saturation`.
    fn shed_probability(&self, saturation: f64) -> f64 {
        (libm::pow(saturation, self.power) * self.k).min(1.0)
    }
}

impl Plugin for ProbabilisticAdmitter {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_admitter(&self) -> Option<&dyn Admitter> {
        Some(self)
    }
}

impl Admitter for ProbabilisticAdmitter {
    fn admit(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        rng: &mut dyn Rng,
    ) -> Result<(), RequestError> {
        if !cx.request.is_sheddable() || candidates.is_empty() {
            return Ok(());
        }
        let saturation = self.saturation(cx, candidates);
        let p = self.shed_probability(saturation);
        if rng.next_f64() < p {
            return Err(RequestError::Shed(format!(
                "probabilistic-admitter: saturation {saturation:.3}, shed probability {p:.2}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::Endpoint;
    use crate::model::request::InferenceRequest;
    use crate::plugin::CycleState;
    use crate::rng::SplitMix64;
    use alloc::vec::Vec;

    fn admitter() -> Arc<dyn Plugin> {
        factory("a", None, &Handle::new(&[])).unwrap()
    }

    /// Share of 2,000 requests of `priority` shed over endpoints with these (queue, kv).
    fn shed_share(priority: i32, load: &[(u32, f64)]) -> f64 {
        let eps: Vec<Endpoint> = load
            .iter()
            .map(|&(q, kv)| {
                let mut e = Endpoint::new("10.0.0.1:1");
                e.metrics.waiting_queue_size = q;
                e.metrics.kv_cache_usage = kv;
                e
            })
            .collect();
        let mut req = InferenceRequest::new("m", "p");
        req.priority = priority;
        let state = CycleState::new();
        let cx = CycleContext {
            request: &req,
            endpoints: &eps,
            state: &state,
            now_ms: 1,
            peer: None,
        };
        let candidates: Vec<usize> = (0..eps.len()).collect();
        let a = admitter();
        let mut rng = SplitMix64::new(7);
        let shed = (0..2000)
            .filter(|_| {
                a.as_admitter()
                    .unwrap()
                    .admit(&cx, &candidates, &mut rng)
                    .is_err()
            })
            .count();
        shed as f64 / 2000.0
    }

    #[test]
    fn the_upstream_curve() {
        let a = ProbabilisticAdmitter {
            typed_name: TypedName::new(TYPE, "a"),
            queue_depth_threshold: 5.0,
            kv_cache_util_threshold: 0.8,
            power: 5.0,
            k: 300.0,
        };
        // ~2.3 % at 0.15; all from (1/300)^(1/5) ≈ 0.3196.
        assert!((a.shed_probability(0.15) - 0.0228).abs() < 0.001);
        assert!(a.shed_probability(0.319) < 1.0 && a.shed_probability(0.32) >= 1.0);
    }

    #[test]
    fn sheds_only_sheddable_requests_in_proportion() {
        // queue 1 of 5 → 0.2, kv 0.08/0.8 → 0.1: saturation 0.2 → p = 0.2^5·300 = 0.096.
        let share = shed_share(-1, &[(1, 0.08), (1, 0.08)]);
        assert!((0.07..0.125).contains(&share), "{share}");
        assert_eq!(
            shed_share(0, &[(50, 1.0)]),
            0.0,
            "priority 0 is always admitted"
        );
        assert_eq!(
            shed_share(-1, &[(50, 1.0)]),
            1.0,
            "fully saturated: all shed"
        );
        assert_eq!(shed_share(-1, &[(0, 0.0)]), 0.0, "idle: none shed");
    }

    #[test]
    fn parameters_must_be_positive() {
        let e = |v: serde_json::Value| {
            factory("a", Some(&v), &Handle::new(&[]))
                .err()
                .map(|e| alloc::string::ToString::to_string(&e))
        };
        assert_eq!(
            e(serde_json::json!({"power": 0})).unwrap(),
            "power: must be > 0, got 0"
        );
        assert_eq!(
            e(serde_json::json!({"queueDepthThreshold": -1})).unwrap(),
            "queueDepthThreshold: must be > 0, got -1"
        );
        assert!(e(serde_json::json!({"k": 100, "power": 3})).is_none());
    }
}
