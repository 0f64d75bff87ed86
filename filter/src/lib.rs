//! # endpoint-picker-filter
//!
//! The endpoint picker as one proxy-wasm module with two roles, chosen by the plugin's root id:
//!
//! - `metrics-scraper` — an Envoy bootstrap Wasm service (`singleton: true`) that polls every
//!   endpoint's `/metrics` and publishes a [`scheduler_core::snapshot::PoolSnapshot`] in shared
//!   data ([`scraper`]);
//! - `endpoint-picker` — the HTTP filter that reads the snapshot, runs the scheduler on each
//!   request and sets `x-gateway-destination-endpoint` itself ([`picker`]).
//!
//! Both roles get the same JSON configuration (`pool` + GIE `EndpointPickerConfig`) and must
//! share the `vm_id`, because shared data is keyed by vm_id.
//!
//! The entry point only registers the in-tree plugins and hands over to [`runner::run`], so an
//! out-of-tree crate can build its own module with extra plugins (see `examples/`).

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]

pub mod burst;
pub mod flow;
pub mod headers;
pub mod pairs;
pub mod picker;
pub mod scraper;
pub mod telemetry;
pub mod time;
pub mod version;
pub mod waiting;

#[cfg(any(target_arch = "wasm32", clippy))]
pub mod abi;
#[cfg(any(target_arch = "wasm32", clippy))]
pub mod host;
#[cfg(any(target_arch = "wasm32", clippy))]
pub mod runner;
#[cfg(any(target_arch = "wasm32", clippy))]
pub mod stats;

/// The module's entry point: the in-tree plugins, then the runner.
#[cfg(all(target_arch = "wasm32", feature = "module"))]
mod entry {
    #![allow(missing_docs)]
    proxy_wasm::main! {{
        crate::runner::run(scheduler_core::Registry::with_builtins());
    }}
}
