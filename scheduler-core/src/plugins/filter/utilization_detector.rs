//! `utilization-detector`: the default saturation detector, and a filter that drops overloaded
//! or stale endpoints.
//!
//! Formula (GIE `flowcontrol/saturationdetector/utilization/` at GIE@1748e829):
//! - saturation = mean over candidates of `max(q / Q, kv / K)`; an endpoint whose metrics are
//!   missing or older than the staleness threshold counts as 1.0; no candidates → 1.0.
//! - as a filter: drops stale endpoints and those with `q ≥ Q(1+h)` or `kv ≥ K(1+h)`; if that
//!   would drop everything, keeps the input unchanged (fail-open).
//!
//! Parameters: `queueDepthThreshold` Q (requests, > 0, default 5), `kvCacheUtilThreshold` K
//! (fraction in (0, 1], default 0.8), `metricsStalenessThreshold` (Go duration, > 0, default
//! "200ms"), `headroom` h (≥ 0, default 0).

use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::config::duration::parse_duration_ms;
use crate::error::{ConfigError, FieldPath};
use crate::model::endpoint::Endpoint;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Filter, Plugin, SaturationDetector, TypedName};
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "utilization-detector";

/// Parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Params {
    /// Q.
    pub queue_depth_threshold: f64,
    /// K.
    pub kv_cache_util_threshold: f64,
    /// Staleness threshold as a Go duration string.
    pub metrics_staleness_threshold: String,
    /// h.
    pub headroom: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            queue_depth_threshold: 5.0,
            kv_cache_util_threshold: 0.8,
            metrics_staleness_threshold: "200ms".into(),
            headroom: 0.0,
        }
    }
}

/// Builds a [`UtilizationDetector`].
///
/// # Errors
/// Unknown fields; Q ≤ 0; K outside (0, 1]; a staleness that is not a positive duration; h < 0.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if !(p.queue_depth_threshold > 0.0 && p.queue_depth_threshold.is_finite()) {
        return Err(ConfigError::invalid(
            FieldPath::key("queueDepthThreshold"),
            "must be > 0",
        ));
    }
    if !(p.kv_cache_util_threshold > 0.0 && p.kv_cache_util_threshold <= 1.0) {
        return Err(ConfigError::invalid(
            FieldPath::key("kvCacheUtilThreshold"),
            "must be within (0, 1]",
        ));
    }
    let staleness_ms = parse_duration_ms(&p.metrics_staleness_threshold)
        .filter(|&ms| ms > 0)
        .ok_or_else(|| {
            ConfigError::invalid(
                FieldPath::key("metricsStalenessThreshold"),
                "must be a positive duration such as \"200ms\"",
            )
        })?;
    if !(p.headroom >= 0.0 && p.headroom.is_finite()) {
        return Err(ConfigError::invalid(
            FieldPath::key("headroom"),
            "must be ≥ 0",
        ));
    }
    Ok(Arc::new(UtilizationDetector {
        typed_name: TypedName::new(TYPE, name),
        q: p.queue_depth_threshold,
        k: p.kv_cache_util_threshold,
        staleness_ms,
        headroom: p.headroom,
    }))
}

/// See the module docs.
pub struct UtilizationDetector {
    typed_name: TypedName,
    q: f64,
    k: f64,
    staleness_ms: u64,
    headroom: f64,
}

impl UtilizationDetector {
    fn endpoint_saturation(&self, e: &Endpoint, now_ms: u64) -> f64 {
        if e.metrics.is_stale(now_ms, self.staleness_ms) {
            return 1.0;
        }
        (f64::from(e.metrics.waiting_queue_size) / self.q).max(e.metrics.kv_cache_usage / self.k)
    }
}

impl Plugin for UtilizationDetector {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_filter(&self) -> Option<&dyn Filter> {
        Some(self)
    }
    fn as_saturation_detector(&self) -> Option<&dyn SaturationDetector> {
        Some(self)
    }
}

impl SaturationDetector for UtilizationDetector {
    fn saturation(&self, cx: &CycleContext<'_>, candidates: &[usize]) -> f64 {
        if candidates.is_empty() {
            return 1.0;
        }
        let sum: f64 = candidates
            .iter()
            .map(|&i| {
                cx.endpoint(i)
                    .map_or(1.0, |e| self.endpoint_saturation(e, cx.now_ms))
            })
            .sum();
        sum / candidates.len() as f64
    }

    fn stale_endpoints(&self, cx: &CycleContext<'_>, candidates: &[usize]) -> Option<usize> {
        Some(
            candidates
                .iter()
                .filter(|&&i| {
                    cx.endpoint(i)
                        .is_none_or(|e| e.metrics.is_stale(cx.now_ms, self.staleness_ms))
                })
                .count(),
        )
    }
}

impl Filter for UtilizationDetector {
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        _: &mut dyn Rng,
    ) {
        let qmax = self.q * (1.0 + self.headroom);
        let kmax = self.k * (1.0 + self.headroom);
        let mut any = false;
        for (k, &i) in keep.iter_mut().zip(candidates) {
            *k = cx.endpoint(i).is_some_and(|e| {
                !e.metrics.is_stale(cx.now_ms, self.staleness_ms)
                    && f64::from(e.metrics.waiting_queue_size) < qmax
                    && e.metrics.kv_cache_usage < kmax
            });
            any |= *k;
        }
        if !any {
            keep.fill(true); // fail-open: never empty the pool by itself
        }
    }
}
