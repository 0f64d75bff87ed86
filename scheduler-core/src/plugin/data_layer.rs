//! Data-layer contracts (GIE `framework/interface/datalayer`): where each endpoint's metrics page
//! is ([`MetricsDataSource`]) and how a page becomes the endpoint's metrics
//! ([`MetricsExtraction`]). A plugin offers them through [`super::Plugin::as_metrics_source`] and
//! [`super::Plugin::as_metrics_extractor`], so an out-of-tree crate can add its own.

use alloc::sync::Arc;

use crate::model::endpoint::{Endpoint, Extracted};

/// Where each endpoint's metrics page is (GIE's metrics `DataSource`).
pub trait MetricsDataSource {
    /// URL scheme of the page (`http` or `https`).
    fn scheme(&self) -> &str;
    /// Path of the page (`/metrics`).
    fn path(&self) -> &str;
    /// With `https`: whether the server's certificate is left unverified (GIE's default).
    fn insecure_skip_verify(&self) -> bool {
        true
    }
    /// The metrics port, when it is not the serving port; `None` by default.
    fn port(&self) -> Option<u16> {
        None
    }
    /// How often to scrape (a duration as written), if the source says; `None` by default.
    fn interval(&self) -> Option<&str> {
        None
    }
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

/// A second page the scraper fetches from every endpoint besides its metrics page (llm-d's
/// HTTP data sources other than the metrics one, e.g. NVIDIA's DCGM exporter beside each
/// model server), read into scalar endpoint attributes. Offered through
/// [`super::Plugin::as_page_source`]; active only when `dataLayer.sources` lists it with an
/// extractor it accepts.
pub trait EndpointPageSource: Send + Sync {
    /// URL path of the page (e.g. `/metrics`).
    fn path(&self) -> &str;
    /// Port of the page on the endpoint's IP; `None`: the endpoint's own (serving) address.
    fn port(&self) -> Option<u16>;
    /// Least time between two fetches from one endpoint, ms (0: every scrape tick).
    fn interval_ms(&self) -> u64;
    /// False when this source was configured in a way the proxy cannot fetch (it then loads
    /// with a warning and is skipped).
    fn enabled(&self) -> bool {
        true
    }
    /// True when an extractor of type `extractor_type` can read this source's pages.
    fn accepts_extractor(&self, extractor_type: &str) -> bool;
    /// Reads a fetched `page` of `endpoint` into `(attribute key, value)` pairs pushed to
    /// `out`; `false` when the page holds nothing this source reads (a failed fetch).
    fn read(
        &self,
        endpoint: &Endpoint,
        page: &str,
        out: &mut alloc::vec::Vec<(alloc::string::String, f64)>,
    ) -> bool;
}
