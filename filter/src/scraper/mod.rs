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
