//! `global-strict-fairness-policy` (the default fairness): no fairness between flows — the band
//! serves whichever flow's head goes first by the band's ordering policy, so the band behaves as
//! one queue (llm-d-router `fairness/globalstrict`). No parameters.

use alloc::string::String;
use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{FairnessPolicy, FlowHead, OrderingPolicy, Plugin, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "global-strict-fairness-policy";

/// Builds a [`GlobalStrict`].
///
/// # Errors
/// Any parameter.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let _: NoParams = parse_params(params)?;
    Ok(Arc::new(GlobalStrict {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct GlobalStrict {
    typed_name: TypedName,
}

impl Plugin for GlobalStrict {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_fairness_policy(&self) -> Option<&dyn FairnessPolicy> {
        Some(self)
    }
}

impl FairnessPolicy for GlobalStrict {
    fn pick(
        &self,
        flows: &[FlowHead<'_>],
        ordering: &dyn OrderingPolicy,
        _: &mut Option<String>,
    ) -> Option<usize> {
        let mut best: Option<(usize, &crate::plugin::QueuedRequest)> = None;
        for (i, f) in flows.iter().enumerate() {
            if let Some(h) = f.head {
                if best.is_none_or(|(_, b)| ordering.less(h, b)) {
                    best = Some((i, h));
                }
            }
        }
        best.map(|(i, _)| i)
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
    fn serves_the_oldest_head_of_any_flow() {
        let p = factory(TYPE, None, &handle_for_tests()).unwrap();
        let o = fcfs::factory("o", None, &handle_for_tests()).unwrap();
        let old = QueuedRequest {
            enqueued_ms: 1,
            seq: 1,
            ..Default::default()
        };
        let new = QueuedRequest {
            enqueued_ms: 9,
            seq: 2,
            ..Default::default()
        };
        let flows = [
            FlowHead {
                id: "a",
                head: Some(&new),
            },
            FlowHead {
                id: "b",
                head: None,
            },
            FlowHead {
                id: "c",
                head: Some(&old),
            },
        ];
        let pick = p.as_fairness_policy().unwrap().pick(
            &flows,
            o.as_ordering_policy().unwrap(),
            &mut None,
        );
        assert_eq!(pick, Some(2));
        let empty = [FlowHead {
            id: "a",
            head: None,
        }];
        assert_eq!(
            p.as_fairness_policy().unwrap().pick(
                &empty,
                o.as_ordering_policy().unwrap(),
                &mut None
            ),
            None
        );
    }
}
