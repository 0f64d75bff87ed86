//! Parsers for untrusted input: OpenAI request bodies ([`openai`]), Anthropic Messages bodies
//! ([`anthropic`]), Prometheus text
//! ([`prometheus`]) and its engine-specific reading ([`engine`]), and token usage in JSON and SSE
//! response bodies ([`usage`]), protobuf and gRPC framing ([`protobuf`]) and vLLM's gRPC API
//! ([`vllm_grpc`]); and the one rewrite of a body the picker makes, its `model` ([`model_field`]).
//! Every one returns errors; none panics.

pub mod anthropic;
pub mod dcgm;
pub mod engine;
pub mod label_selector;
pub mod media;
pub mod media_tokens;
pub mod model_field;
pub mod openai;
pub mod prometheus;
pub mod protobuf;
pub mod usage;
pub mod vllm_grpc;
