//! `round-robin-fairness-policy`: the non-empty flows of a band take turns, one request each, in
//! the order of their fairness ids; the band remembers the last flow served (llm-d-router
//! `fairness/roundrobin`). A tenant sending ten times more than another gets no more dispatches
//! while both have requests waiting. No parameters.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{FairnessPolicy, FlowHead, OrderingPolicy, Plugin, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "round-robin-fairness-policy";

/// Builds a [`RoundRobin`].
///
/// # Errors
/// Any parameter.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let _: NoParams = parse_params(params)?;
    Ok(Arc::new(RoundRobin {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct RoundRobin {
    typed_name: TypedName,
}

impl Plugin for RoundRobin {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_fairness_policy(&self) -> Option<&dyn FairnessPolicy> {
        Some(self)
    }
}

impl FairnessPolicy for RoundRobin {
    fn pick(
        &self,
        flows: &[FlowHead<'_>],
        _: &dyn OrderingPolicy,
        cursor: &mut Option<String>,
    ) -> Option<usize> {
        // Flows in fairness-id order; start after the last one served.
        let mut order: Vec<usize> = (0..flows.len()).collect();
        order.sort_by(|&a, &b| {
            let id = |i: usize| flows.get(i).map_or("", |f| f.id);
            id(a).cmp(id(b))
        });
        let start = cursor
            .as_deref()
            .and_then(|last| {
                order
                    .iter()
                    .position(|&i| flows.get(i).is_some_and(|f| f.id > last))
            })
            .unwrap_or(0);
        let n = order.len();
        for k in 0..n {
            let Some(&i) = order.get((start + k) % n) else {
                continue;
            };
            if let Some(f) = flows.get(i).filter(|f| f.head.is_some()) {
                *cursor = Some(String::from(f.id));
                return Some(i);
            }
        }
        *cursor = None;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::Handle;
    use crate::plugin::QueuedRequest;
    use crate::plugins::flow_control::fcfs;

    fn handle_for_tests() -> Handle<'static> {
        Handle::new(&[])
    }

    #[test]
    fn flows_take_turns_in_id_order() {
        let p = factory(TYPE, None, &handle_for_tests()).unwrap();
        let o = fcfs::factory("o", None, &handle_for_tests()).unwrap();
        let r = QueuedRequest::default();
        let flows = [
            FlowHead {
                id: "tenant-b",
                head: Some(&r),
            },
            FlowHead {
                id: "tenant-a",
                head: Some(&r),
            },
            FlowHead {
                id: "tenant-c",
                head: None,
            },
        ];
        let mut cursor = None;
        let mut pick = || {
            p.as_fairness_policy().unwrap().pick(
                &flows,
                o.as_ordering_policy().unwrap(),
                &mut cursor,
            )
        };
        // a, b, (c is empty) a, b, …
        assert_eq!(pick(), Some(1));
        assert_eq!(pick(), Some(0));
        assert_eq!(pick(), Some(1));
        assert_eq!(pick(), Some(0));
    }

    #[test]
    fn a_flow_that_left_does_not_reset_the_turn() {
        let p = factory(TYPE, None, &handle_for_tests()).unwrap();
        let o = fcfs::factory("o", None, &handle_for_tests()).unwrap();
        let r = QueuedRequest::default();
        let flows = [
            FlowHead {
                id: "a",
                head: Some(&r),
            },
            FlowHead {
                id: "c",
                head: Some(&r),
            },
        ];
        // The last served was "b", which is gone: the next after it is "c".
        let mut cursor = Some(String::from("b"));
        let pick = p.as_fairness_policy().unwrap().pick(
            &flows,
            o.as_ordering_policy().unwrap(),
            &mut cursor,
        );
        assert_eq!(pick, Some(1));
    }
}
