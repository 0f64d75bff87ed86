//! # scheduler-core
//!
//! The endpoint-picker engine of the Gateway API Inference Extension (GIE) and llm-d, in
//! `no_std` Rust small enough to run inside Envoy on every request.
//!
//! Request flow:
//! 1. [`config::loader::load`] turns a GIE `EndpointPickerConfig` (JSON) into an
//!    [`EndpointPicker`], using a [`plugin::Registry`] (built-ins from [`plugins::BUILTINS`]).
//! 2. The scraper reads each endpoint's `/metrics` with [`parse::engine::MetricsExtractor`]
//!    into [`model::endpoint::Endpoint`]s.
//! 3. Per request: [`EndpointPicker::parse_request`] (OpenAI body → [`InferenceRequest`]),
//!    then [`EndpointPicker::schedule`]: shed sheddable requests under saturation, run data
//!    producers (prefix hashes, in-flight load), admitters, then the profiles — filters,
//!    weighted scorers, picker — and PreRequest hooks.
//! 4. The [`model::result::SchedulingResult`] gives ordered targets (primary first) and headers
//!    to set; errors carry their HTTP status ([`error::RequestError::status`]).
//! 5. Response hooks see the status, the endpoint that served and token usage
//!    ([`parse::usage`]).
//!
//! Randomness is injected ([`rng::Rng`]); time is passed in as milliseconds. Nothing here
//! panics on input.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod config;
pub mod director;
pub mod error;
pub mod flowcontrol;
pub mod kvcache;
pub mod latency;
pub mod lock;
pub mod membership;
pub mod model;
pub mod observe;
pub mod parse;
pub mod plugin;
pub mod plugins;
pub mod prefix;
pub mod rewrite;
pub mod rng;
pub mod scheduler;
pub mod scratch;
pub mod snapshot;
pub mod suggest;

pub use config::loader::{load, load_config, LoadReport};
pub use config::pool::{AppProtocol, FailureMode, PickerConfig, PoolConfig};
pub use config::EndpointPickerConfig;
pub use director::{EndpointPicker, PoolSaturation};
pub use error::{ConfigError, Error, RequestError};
pub use model::endpoint::{Endpoint, EndpointMetrics};
pub use model::request::InferenceRequest;
pub use model::result::SchedulingResult;
pub use observe::{ExtensionPoint, NoObserver, PrefixHit, SchedulingObserver};
pub use plugin::{Plugin, Registry, RequestState, Stability};
pub use rng::{Rng, SplitMix64};
