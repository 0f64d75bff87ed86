//! `topology-affinity-filter` (llm-d, Alpha): in the prefill profile of a disaggregated
//! request, keeps the candidates that share at least `minAffinity` with the decode pick (host,
//! rack, zone or region, tightest first), so the KV cache travels over NVLink or one switch
//! rather than across the network. Source: llm-d-router `scheduling/filter/topologyaffinity`.
//!
//! Fails open, as upstream: with no peer (the profile is not prefill, or no decode pick), no
//! `topology-extractor` data, or a peer with no topology, every candidate stays; if no candidate
//! meets `minAffinity`, every candidate stays (affinity is a preference; it never makes a request
//! unroutable). A missing value never matches, not even against a missing one.
//!
//! Parameters: `minAffinity` (`host` default, `rack`, `zone`, `region`), `topologyProducerName`
//! (accepted; one `topology-extractor` per config supplies the data).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::model::topology::{compare, peer_topology, Level};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Filter, Plugin, TypedName};
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "topology-affinity-filter";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    min_affinity: String,
    topology_producer_name: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_affinity: "host".into(),
            topology_producer_name: String::new(),
        }
    }
}

/// Builds a [`TopologyAffinityFilter`].
///
/// # Errors
/// Unknown fields; a `minAffinity` other than `host`, `rack`, `zone`, `region`.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let min = if p.min_affinity.is_empty() {
        "host"
    } else {
        p.min_affinity.as_str()
    };
    let min_affinity = Level::parse(min).ok_or_else(|| {
        ConfigError::invalid(
            FieldPath::key("minAffinity"),
            format!("'{min}' is not one of host, rack, zone, region"),
        )
    })?;
    Ok(Arc::new(TopologyAffinityFilter {
        typed_name: TypedName::new(TYPE, name),
        min_affinity,
    }))
}

/// See the module docs.
pub struct TopologyAffinityFilter {
    typed_name: TypedName,
    min_affinity: Level,
}

impl Plugin for TopologyAffinityFilter {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_filter(&self) -> Option<&dyn Filter> {
        Some(self)
    }
}

impl Filter for TopologyAffinityFilter {
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        _: &mut dyn Rng,
    ) {
        let Some((peer, peer_t, all)) = peer_topology(cx) else {
            return;
        };
        let mut any = false;
        for (k, &i) in keep.iter_mut().zip(candidates) {
            *k = match (cx.endpoint(i), all.get(i)) {
                (Some(e), Some(t)) => compare((peer, &peer_t), (e, t)) <= self.min_affinity,
                _ => false,
            };
            any |= *k;
        }
        // Fail open when nobody is near enough.
        if !any {
            keep.fill(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::Endpoint;
    use crate::model::request::InferenceRequest;
    use crate::model::topology::{Topology, TOPOLOGY};
    use crate::plugin::CycleState;
    use crate::rng::SplitMix64;
    use alloc::vec::Vec;
    use serde_json::json;

    /// Kept candidates (all but the peer at index 0) for `min` with the peer's `host`.
    fn kept(min: &str, peer_host: &str, extracted: bool, peer: Option<usize>) -> Vec<usize> {
        let keys = ["h", "r", "z", "g"];
        let pool: Vec<Endpoint> = [(peer_host, "r1"), ("h1", "r1"), ("h2", "r1"), ("h3", "r2")]
            .iter()
            .map(|(h, r)| {
                Endpoint::new("10.0.0.1:1")
                    .with_label("h", h)
                    .with_label("r", r)
            })
            .collect();
        let mut state = CycleState::new();
        if extracted {
            let t: Vec<Topology> = pool.iter().map(|e| Topology::of(e, &keys)).collect();
            state.put(TOPOLOGY, t);
        }
        let req = InferenceRequest::new("m", "p");
        let cx = CycleContext {
            request: &req,
            endpoints: &pool,
            state: &state,
            now_ms: 1,
            peer,
        };
        let f = factory("f", Some(&json!({"minAffinity": min})), &Handle::new(&[])).unwrap();
        let candidates = [1, 2, 3];
        let mut keep = [true; 3];
        f.as_filter()
            .unwrap()
            .filter(&cx, &candidates, &mut keep, &mut SplitMix64::new(1));
        candidates
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(&i, _)| i)
            .collect()
    }

    #[test]
    fn keeps_what_is_near_enough_and_fails_open_otherwise() {
        assert_eq!(kept("host", "h1", true, Some(0)), [1]);
        assert_eq!(kept("rack", "h1", true, Some(0)), [1, 2]);
        assert_eq!(
            kept("host", "h9", true, Some(0)),
            [1, 2, 3],
            "nobody on the host: all stay"
        );
        assert_eq!(kept("host", "h1", true, None), [1, 2, 3], "no peer");
        assert_eq!(
            kept("host", "h1", false, Some(0)),
            [1, 2, 3],
            "no extractor"
        );
        assert_eq!(
            kept("host", "", true, Some(0)),
            [1, 2, 3],
            "none on an unknown host"
        );
        assert_eq!(
            kept("rack", "", true, Some(0)),
            [1, 2],
            "host unknown: its rack"
        );
    }

    #[test]
    fn min_affinity_must_be_a_level() {
        let bad = json!({"minAffinity": "datacenter"});
        assert!(factory("f", Some(&bad), &Handle::new(&[])).is_err());
    }
}
