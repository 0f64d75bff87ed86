//! Filters: narrow the candidate list before scoring.

pub mod by_label;
pub mod concurrency_detector;
pub mod endpoint_attribute;
pub mod label_selector;
pub mod prefix_cache_affinity;
pub mod role;
pub mod session_affinity;
pub mod slo_headroom_tier;
pub mod topology_affinity;
pub mod utilization;
pub mod utilization_detector;
