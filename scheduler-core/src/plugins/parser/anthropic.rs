//! `anthropic-parser` (llm-d): Anthropic Messages API bodies ([`crate::parse::anthropic`]). It
//! claims the paths ending in `messages` and `messages/count_tokens`, so it sits beside
//! `openai-parser` in `requestHandler.parsers`. Parameters: none.

use alloc::sync::Arc;

use crate::error::{ConfigError, RequestError};
use crate::parse::openai::ParsedBody;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, RequestParser, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "anthropic-parser";

/// The paths it claims (llm-d's claims).
pub const PATHS: &[&str] = &["messages", "messages/count_tokens"];

/// Builds an [`AnthropicParser`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(AnthropicParser {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct AnthropicParser {
    typed_name: TypedName,
}

impl Plugin for AnthropicParser {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_parser(&self) -> Option<&dyn RequestParser> {
        Some(self)
    }
}

impl RequestParser for AnthropicParser {
    fn parse<'a>(&self, _path: &str, body: &'a [u8]) -> Result<ParsedBody<'a>, RequestError> {
        crate::parse::anthropic::parse_body(body)
    }
    fn claimed_paths(&self) -> &'static [&'static str] {
        PATHS
    }
    fn routes(&self) -> &'static [&'static str] {
        &["/v1/messages", "/v1/messages/count_tokens"]
    }
}
