//! The `metrics-scraper` singleton.
//!
//! Pure parts, tested natively: [`state`] (which endpoints are due, what each scrape did, the
//! snapshot to publish) and [`lease`] (one active scraper per process). Envoy glue (wasm32 only): [`root`] (tick, callouts, publishing).

pub mod lease;
pub mod state;

use scheduler_core::config::pool::LoadedPickerConfig;

/// The page path to scrape (`pool.scrape.path`, else the `metrics-data-source` path, else
/// `/metrics`) and whether to scrape at all (the data layer has a metrics source). Both builds'
/// scrapers read them from the same loaded configuration.
pub fn scrape_target(loaded: &LoadedPickerConfig) -> (String, bool) {
    let source = loaded.picker.metrics_source();
    let path = loaded
        .pool
        .scrape
        .path
        .clone()
        .or_else(|| source.map(|s| s.path.clone()))
        .unwrap_or_else(|| "/metrics".into());
    (path, source.is_some())
}

#[cfg(any(target_arch = "wasm32", clippy))]
pub mod root;

/// The page sources of a loaded configuration (`dataLayer` second pages, e.g. DCGM), as both
/// builds' scrapers fetch and read them.
#[derive(Clone, Default)]
pub struct PageSources(Vec<std::sync::Arc<dyn scheduler_core::plugin::Plugin>>);

impl PageSources {
    /// The page sources `loaded` wires.
    pub fn of(loaded: &LoadedPickerConfig) -> Self {
        PageSources(loaded.picker.page_sources().to_vec())
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where and how often each is fetched, in order.
    pub fn fetches(&self) -> Vec<state::PageFetch<'_>> {
        self.0
            .iter()
            .filter_map(|p| p.as_page_source())
            .map(|s| state::PageFetch {
                path: s.path(),
                port: s.port(),
                interval_ms: s.interval_ms(),
            })
            .collect()
    }

    /// What source `j` reads from `page` of `endpoint`; `None` when the page holds nothing it
    /// reads.
    pub fn read(
        &self,
        j: usize,
        endpoint: &scheduler_core::Endpoint,
        page: &[u8],
    ) -> Option<Vec<(String, f64)>> {
        let source = self.0.get(j)?.as_page_source()?;
        let text = std::str::from_utf8(page).ok()?;
        let mut out = Vec::new();
        source.read(endpoint, text, &mut out).then_some(out)
    }
}
