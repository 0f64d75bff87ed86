//! `openai-parser`: the default parser; see [`crate::parse::openai`] for the rules.
//! Parameters: none.

use alloc::sync::Arc;

use crate::error::{ConfigError, RequestError};
use crate::parse::openai::{parse_body, ParsedBody};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, RequestParser, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "openai-parser";

/// Builds an [`OpenAiParser`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(OpenAiParser {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct OpenAiParser {
    typed_name: TypedName,
}

impl Plugin for OpenAiParser {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_parser(&self) -> Option<&dyn RequestParser> {
        Some(self)
    }
}

/// The OpenAI API paths this parser claims (llm-d's `openai-parser` claims the same).
pub const PATHS: &[&str] = &[
    "chat/completions",
    "completions",
    "embeddings",
    "responses",
    "conversations",
    "chat/completions/render",
    "completions/render",
    "images/generations",
];

impl RequestParser for OpenAiParser {
    fn parse<'a>(&self, path: &str, body: &'a [u8]) -> Result<ParsedBody<'a>, RequestError> {
        parse_body(path, body)
    }
    fn claimed_paths(&self) -> &'static [&'static str] {
        PATHS
    }
}
