//! Request parsers.

pub mod anthropic;
pub mod openai;
pub mod passthrough;
pub mod vllm_http;
