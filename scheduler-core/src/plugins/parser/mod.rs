//! Request parsers.

pub mod openai;
pub mod passthrough;
