//! Request parsers.

pub mod anthropic;
pub mod openai;
pub mod passthrough;
pub mod sglang_http;
pub mod vertexai;
pub mod vllm_grpc;
pub mod vllm_http;
