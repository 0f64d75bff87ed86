//! Scorers. Each returns scores in `[0, 1]`, higher is better; the framework clamps and weights.

pub mod active_request;
pub mod context_length_aware;
pub mod endpoint_attribute;
pub mod header_label_affinity;
pub mod kv_cache_utilization;
pub mod latency;
pub mod load_aware;
pub mod lora_affinity;
pub mod mm_embeddings_cache;
pub mod multicluster;
pub mod no_hit_lru;
pub mod precise_prefix_cache;
pub mod prefix_cache;
pub mod prefix_rendezvous;
pub mod queue;
pub mod running_requests;
pub mod session_affinity;
pub mod token_load;
pub mod topology_affinity;

/// Min–max normalisation where less is better, shared by the queue and running-requests
/// scorers (GIE `queuedepth/queue.go`): `score = (max − v) / (max − min)`, and **1.0 for every
/// candidate when all values are equal** (including all zero).
pub(crate) fn min_max_inverse(values: impl Iterator<Item = f64> + Clone, scores: &mut [f64]) {
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.clone() {
        min = min.min(v);
        max = max.max(v);
    }
    let range = max - min;
    for (s, v) in scores.iter_mut().zip(values) {
        *s = if range > 0.0 { (max - v) / range } else { 1.0 };
    }
}
