//! `slo-deadline-ordering-policy`: earliest SLO deadline first, where the deadline is when the
//! request arrived at the proxy plus its TTFT objective in milliseconds (header
//! `x-llm-d-slo-ttft-ms`, or the older `x-slo-ttft-ms`); a request without a valid objective goes
//! last; ties go by arrival (llm-d-router `ordering/slodeadline`). No parameters.

use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{OrderingPolicy, Plugin, QueuedRequest, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "slo-deadline-ordering-policy";

/// Request headers carrying the TTFT objective (ms), the current name first.
pub const SLO_TTFT_HEADERS: [&str; 2] = ["x-llm-d-slo-ttft-ms", "x-slo-ttft-ms"];

/// Builds an [`SloDeadline`].
///
/// # Errors
/// Any parameter.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let _: NoParams = parse_params(params)?;
    Ok(Arc::new(SloDeadline {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct SloDeadline {
    typed_name: TypedName,
}

fn deadline(r: &QueuedRequest) -> u64 {
    r.slo_ttft_ms
        .map_or(u64::MAX, |slo| r.received_ms.saturating_add(slo))
}

impl Plugin for SloDeadline {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_ordering_policy(&self) -> Option<&dyn OrderingPolicy> {
        Some(self)
    }
}

impl OrderingPolicy for SloDeadline {
    fn less(&self, a: &QueuedRequest, b: &QueuedRequest) -> bool {
        (deadline(a), a.received_ms, a.seq) < (deadline(b), b.received_ms, b.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tightest_objective_first_and_none_last() {
        let p = SloDeadline {
            typed_name: TypedName::new(TYPE, TYPE),
        };
        let r = |recv, slo, seq| QueuedRequest {
            received_ms: recv,
            slo_ttft_ms: slo,
            seq,
            ..Default::default()
        };
        assert!(p.less(&r(100, Some(50), 2), &r(0, Some(500), 1)));
        assert!(p.less(&r(900, Some(5_000), 2), &r(0, None, 1)));
        assert!(p.less(&r(0, None, 1), &r(10, None, 2)));
    }
}
