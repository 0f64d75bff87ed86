//! `topology-extractor` (llm-d, Alpha): reads where each endpoint runs (host, rack, zone,
//! region) from its labels, for `topology-affinity-filter` and `topology-affinity-scorer`.
//! llm-d reads the Pod's labels (and `spec.hostname`); here the labels are the endpoint's own,
//! `pool.endpoints[].labels`. Endpoints the native build takes from the Envoy cluster (no
//! `pool.endpoints`) carry no labels, so this needs the pool listed with its labels.
//!
//! Produces, every cycle, a [`Topology`] per endpoint under [`TOPOLOGY`] (label positions only;
//! no string is copied).
//!
//! Parameters (label names): `hostname` (default `kubernetes.io/hostname`), `rack`
//! (`topology.kubernetes.io/rack`), `zone` (`topology.kubernetes.io/zone`), `region`
//! (`topology.kubernetes.io/region`). Configure one extractor per config: a second one's
//! topology replaces the first's.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::model::topology::{Topology, TOPOLOGY};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleState, DataKey, DataProducer, Plugin, ProduceContext, RequestState, TypedName,
};

/// Plugin type name.
pub const TYPE: &str = "topology-extractor";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    hostname: String,
    rack: String,
    zone: String,
    region: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            hostname: "kubernetes.io/hostname".into(),
            rack: "topology.kubernetes.io/rack".into(),
            zone: "topology.kubernetes.io/zone".into(),
            region: "topology.kubernetes.io/region".into(),
        }
    }
}

/// Builds a [`TopologyExtractor`].
///
/// # Errors
/// Unknown fields, or a label name that is not a string.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let d = Params::default();
    let or = |v: String, default: String| if v.is_empty() { default } else { v };
    Ok(Arc::new(TopologyExtractor {
        typed_name: TypedName::new(TYPE, name),
        keys: [
            or(p.hostname, d.hostname),
            or(p.rack, d.rack),
            or(p.zone, d.zone),
            or(p.region, d.region),
        ],
    }))
}

/// See the module docs.
pub struct TopologyExtractor {
    typed_name: TypedName,
    /// Label names for host, rack, zone, region.
    keys: [String; 4],
}

impl Plugin for TopologyExtractor {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_data_producer(&self) -> Option<&dyn DataProducer> {
        Some(self)
    }
    fn produces(&self) -> &'static [DataKey] {
        &[TOPOLOGY]
    }
}

impl DataProducer for TopologyExtractor {
    fn produce(
        &self,
        cx: &ProduceContext<'_>,
        _: &[usize],
        cycle: &mut CycleState,
        _: &mut RequestState,
    ) {
        let [h, r, z, g] = &self.keys;
        let keys = [h.as_str(), r.as_str(), z.as_str(), g.as_str()];
        let all: Vec<Topology> = cx
            .endpoints
            .iter()
            .map(|e| Topology::of(e, &keys))
            .collect();
        cycle.put(TOPOLOGY, all);
    }
}
