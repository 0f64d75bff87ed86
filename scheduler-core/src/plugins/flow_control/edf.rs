//! `edf-ordering-policy`: earliest deadline first, where a request's deadline is when it entered
//! the queue plus its queue-wait budget (TTL); a request without a budget has no deadline and
//! goes last; equal deadlines go in arrival order (llm-d-router `ordering/edf`). No parameters.

use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{OrderingPolicy, Plugin, QueuedRequest, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "edf-ordering-policy";

/// Builds an [`Edf`].
///
/// # Errors
/// Any parameter.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let _: NoParams = parse_params(params)?;
    Ok(Arc::new(Edf {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct Edf {
    typed_name: TypedName,
}

/// Enqueue time + TTL (ms), `u64::MAX` without a TTL.
fn deadline(r: &QueuedRequest) -> u64 {
    if r.ttl_ms == 0 {
        u64::MAX
    } else {
        r.enqueued_ms.saturating_add(r.ttl_ms)
    }
}

impl Plugin for Edf {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_ordering_policy(&self) -> Option<&dyn OrderingPolicy> {
        Some(self)
    }
}

impl OrderingPolicy for Edf {
    fn less(&self, a: &QueuedRequest, b: &QueuedRequest) -> bool {
        (deadline(a), a.enqueued_ms, a.seq) < (deadline(b), b.enqueued_ms, b.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_deadline_first_and_no_ttl_last() {
        let p = Edf {
            typed_name: TypedName::new(TYPE, TYPE),
        };
        let r = |enq, ttl, seq| QueuedRequest {
            enqueued_ms: enq,
            ttl_ms: ttl,
            seq,
            ..Default::default()
        };
        // Entered later but with a shorter budget: its deadline (150) is before 200.
        assert!(p.less(&r(100, 50, 2), &r(0, 200, 1)));
        // No budget: after any deadline.
        assert!(p.less(&r(500, 10_000, 2), &r(0, 0, 1)));
        // Same deadline: the earlier arrival.
        assert!(p.less(&r(0, 100, 1), &r(50, 50, 2)));
    }
}
