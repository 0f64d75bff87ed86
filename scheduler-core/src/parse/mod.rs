//! Parsers for untrusted input: OpenAI request bodies ([`openai`]), Anthropic Messages bodies
//! ([`anthropic`]), Prometheus text
//! ([`prometheus`]) and its engine-specific reading ([`engine`]), and token usage in JSON and SSE
//! response bodies ([`usage`]). Every one returns errors; none panics.

pub mod anthropic;
pub mod dcgm;
pub mod engine;
pub mod label_selector;
pub mod media;
pub mod openai;
pub mod prometheus;
pub mod usage;
