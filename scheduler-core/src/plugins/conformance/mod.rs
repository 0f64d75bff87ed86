//! GIE's conformance-test plugins: a filter steered by a request header and a response hook
//! that reports the endpoint that served. They let GIE's conformance suite drive the picker;
//! nobody should list them in production.

pub mod header_filter;
pub mod served_verifier;
