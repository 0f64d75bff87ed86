//! The `metrics-scraper` singleton.
//!
//! Pure parts, tested natively: [`state`] (which endpoints are due, what each scrape did, the
//! snapshot to publish) and [`lease`] (one active scraper per process). Envoy glue (wasm32 only): [`root`] (tick, callouts, publishing).

pub mod lease;
pub mod state;

#[cfg(any(target_arch = "wasm32", clippy))]
pub mod root;
