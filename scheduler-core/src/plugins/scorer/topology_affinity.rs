//! `topology-affinity-scorer` (llm-d, Alpha, category Affinity): in the prefill profile of a
//! disaggregated request, scores each candidate by the tightest topology level it shares with
//! the decode pick, on llm-d's fixed curve (llm-d-router `scheduling/scorer/topologyaffinity`),
//! shaped by KV-cache transfer bandwidth rather than evenly spaced:
//!
//! | shared level | score | KV transfer over |
//! |---|---|---|
//! | host | 1.00 | NVLink |
//! | rack | 0.20 | one NIC and switch |
//! | zone | 0.05 | several switch hops |
//! | region | 0.02 | between data centres |
//! | none | 0 | |
//!
//! Every candidate scores 0 with no peer (not the prefill profile, no decode pick), no
//! `topology-extractor` data, or a peer with no topology. A missing value never matches.
//!
//! Parameters: `topologyProducerName` (accepted; one `topology-extractor` per config supplies
//! the data).

use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::model::topology::{compare, peer_topology, Level};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Plugin, Scorer, ScorerCategory, TypedName};

/// Plugin type name.
pub const TYPE: &str = "topology-affinity-scorer";

/// The score of sharing `level` with the peer.
pub fn level_score(level: Level) -> f64 {
    match level {
        Level::Host => 1.0,
        Level::Rack => 0.2,
        Level::Zone => 0.05,
        Level::Region => 0.02,
        Level::None => 0.0,
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    topology_producer_name: String,
}

/// Builds a [`TopologyAffinityScorer`].
///
/// # Errors
/// Unknown fields.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let _: Params = parse_params(params)?;
    Ok(Arc::new(TopologyAffinityScorer {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct TopologyAffinityScorer {
    typed_name: TypedName,
}

impl Plugin for TopologyAffinityScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
}

impl Scorer for TopologyAffinityScorer {
    fn category(&self) -> ScorerCategory {
        ScorerCategory::Affinity
    }
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let Some((peer, peer_t, all)) = peer_topology(cx) else {
            return;
        };
        for (s, &i) in scores.iter_mut().zip(candidates) {
            if let (Some(e), Some(t)) = (cx.endpoint(i), all.get(i)) {
                *s = level_score(compare((peer, &peer_t), (e, t)));
            }
        }
    }
}
