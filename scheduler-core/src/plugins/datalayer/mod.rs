//! Data-layer plugins: where endpoint metrics come from and how they are read. They fill no
//! scheduling slot; the metrics scraper takes its settings from them (GIE `dataLayer`).

pub mod core_metrics_extractor;
pub mod dcgm;
pub mod endpoint_notification_source;
pub mod file_discovery;
pub mod http_source;
pub mod metrics_source;
pub mod models;
pub mod multicluster;
pub mod topology_extractor;
