//! `fcfs-ordering-policy` (the default ordering): first come, first served — the request that
//! entered the queue first goes first. No parameters.

use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{OrderingPolicy, Plugin, QueuedRequest, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "fcfs-ordering-policy";

/// Builds a [`Fcfs`].
///
/// # Errors
/// Any parameter.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let _: NoParams = parse_params(params)?;
    Ok(Arc::new(Fcfs {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct Fcfs {
    typed_name: TypedName,
}

impl Plugin for Fcfs {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_ordering_policy(&self) -> Option<&dyn OrderingPolicy> {
        Some(self)
    }
}

impl OrderingPolicy for Fcfs {
    fn less(&self, a: &QueuedRequest, b: &QueuedRequest) -> bool {
        (a.enqueued_ms, a.seq) < (b.enqueued_ms, b.seq)
    }
    fn is_fifo(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_enqueue_first_then_arrival_order() {
        let p = Fcfs {
            typed_name: TypedName::new(TYPE, TYPE),
        };
        let a = QueuedRequest {
            enqueued_ms: 5,
            seq: 2,
            ..Default::default()
        };
        let b = QueuedRequest {
            enqueued_ms: 6,
            seq: 1,
            ..Default::default()
        };
        assert!(p.less(&a, &b) && !p.less(&b, &a));
        let c = QueuedRequest { seq: 3, ..a };
        assert!(p.less(&a, &c));
    }
}
