//! Data producers: per-request, per-endpoint data that scorers and filters consume.

pub mod approx_prefix_cache;
pub mod burst_prefix_cache;
pub mod inflight_load;
pub mod mm_embeddings_cache;
pub mod p2p_source;
pub mod precise_prefix_cache;
pub mod predicted_latency;
pub mod session_id;
pub mod token;
