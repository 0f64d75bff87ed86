//! Plain data the scheduler works on: endpoints with their metrics, the parsed request, the
//! scheduling result and what the response path reports.

pub mod endpoint;
pub mod request;
pub mod response;
pub mod result;
pub mod topology;
