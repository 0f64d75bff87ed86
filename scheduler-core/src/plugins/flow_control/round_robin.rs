//! `round-robin-fairness-policy`: the non-empty flows of a band take turns, one request each, in
//! the order of their fairness ids; the band remembers the last flow served (llm-d-router
//! `fairness/roundrobin`). A tenant sending ten times more than another gets no more dispatches
//! while both have requests waiting. No parameters.

use alloc::string::String;
use alloc::sync::Arc;

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
        // The next flow with a request after the last one served, in fairness-id order, wrapping
        // to the first; one pass over the flows, no sorting and no allocation (the cursor's
        // buffer is reused). Equal ids: the lower index.
        let last = cursor.as_deref();
        let mut after: Option<(usize, &str)> = None;
        let mut first: Option<(usize, &str)> = None;
        for (i, f) in flows.iter().enumerate() {
            if f.head.is_none() {
                continue;
            }
            if first.is_none_or(|(_, id)| f.id < id) {
                first = Some((i, f.id));
            }
            if last.is_some_and(|l| f.id > l) && after.is_none_or(|(_, id)| f.id < id) {
                after = Some((i, f.id));
            }
        }
        let Some((i, id)) = after.or(first) else {
            *cursor = None;
            return None;
        };
        match cursor {
            Some(c) => {
                c.clear();
                c.push_str(id);
            }
            None => *cursor = Some(String::from(id)),
        }
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::Handle;
    use crate::plugin::QueuedRequest;
    use crate::plugins::flow_control::fcfs;
    use alloc::vec::Vec;

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

    /// The order the policy must keep, written the plain way: sort the flows by id, start after
    /// the last one served, take the first with a request.
    fn reference(ids: &[(&str, bool)], last: Option<&str>) -> Option<usize> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by(|&a, &b| ids[a].0.cmp(ids[b].0));
        let start = last
            .and_then(|l| order.iter().position(|&i| ids[i].0 > l))
            .unwrap_or(0);
        (0..order.len())
            .map(|k| order[(start + k) % order.len()])
            .find(|&i| ids[i].1)
    }

    proptest::proptest! {
        #[test]
        fn picks_as_the_sorted_turn_does(
            flows in proptest::collection::vec(("[a-d]{0,2}", proptest::bool::ANY), 0..8),
            last in proptest::option::of("[a-d]{0,2}"),
        ) {
            let p = factory(TYPE, None, &handle_for_tests()).unwrap();
            let o = fcfs::factory("o", None, &handle_for_tests()).unwrap();
            let r = QueuedRequest::default();
            let ids: Vec<(&str, bool)> = flows.iter().map(|(id, h)| (id.as_str(), *h)).collect();
            let heads: Vec<FlowHead<'_>> = ids
                .iter()
                .map(|(id, h)| FlowHead { id, head: h.then_some(&r) })
                .collect();
            let mut cursor = last.clone();
            let got = p.as_fairness_policy().unwrap().pick(&heads, o.as_ordering_policy().unwrap(), &mut cursor);
            let want = reference(&ids, last.as_deref());
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(cursor.as_deref(), want.map(|i| ids[i].0));
        }
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
