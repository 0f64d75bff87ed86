//! Offline tooling for the endpoint-picker module: [`validate`] (exactly the errors the module
//! logs when Envoy loads it) and [`render`] (a complete Envoy configuration from one picker
//! JSON, so the serving cluster's members always equal `pool.endpoints`).

#![warn(missing_docs)]

pub mod blocks;
pub mod crd;
pub mod deploy;
pub mod document;
pub mod limits;
pub mod objects;
pub mod render;
pub mod slices;
pub mod validate;
pub mod xds;
