//! Data-layer contracts (GIE `framework/interface/datalayer`): where each endpoint's metrics page
//! is ([`MetricsDataSource`]) and how a page becomes the endpoint's metrics
//! ([`MetricsExtraction`]). A plugin offers them through [`super::Plugin::as_metrics_source`] and
//! [`super::Plugin::as_metrics_extractor`], so an out-of-tree crate can add its own.

use alloc::sync::Arc;

use crate::model::endpoint::{Endpoint, Extracted};

/// Where each endpoint's metrics page is (GIE's metrics `DataSource`).
pub trait MetricsDataSource {
    /// URL scheme of the page (`http`).
    fn scheme(&self) -> &str;
    /// Path of the page (`/metrics`).
    fn path(&self) -> &str;
}

/// Turns one endpoint's metrics page into its metrics (GIE's metrics `Extractor`). Shared by the
/// scraper (one per process or VM), so it must be thread-safe.
pub trait MetricsExtraction: Send + Sync {
    /// The metrics of `endpoint` read from `page` (Prometheus text); `None` when this extractor
    /// cannot read a page of that endpoint (e.g. no mapping for its engine) or the page does not
    /// parse.
    fn extract_page(&self, endpoint: &Endpoint, page: &str) -> Option<Extracted>;
}

/// A shared extractor, as the picker and its scraper hold it.
pub type SharedExtractor = Arc<dyn MetricsExtraction>;
