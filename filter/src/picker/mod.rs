//! The `endpoint-picker` HTTP filter.
//!
//! Pure parts, tested natively: [`view`] (the decoded pool snapshot and which endpoints are
//! fresh), [`decide`] (request → route, local reply or pass-through), [`reply`] (OpenAI-style
//! error bodies), [`headers`] (the header names the filter owns), [`subset`] (the endpoint
//! subset hint a request may carry).
//! Envoy glue (wasm32 only): [`root`] (configuration, shared state) and [`http`] (per request).

pub mod decide;
pub mod headers;
pub mod reply;
pub mod subset;
pub mod view;

#[cfg(any(target_arch = "wasm32", clippy))]
pub mod http;
#[cfg(any(target_arch = "wasm32", clippy))]
pub mod root;
