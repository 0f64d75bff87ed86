//! `vllmhttp-parser` (llm-d): vLLM's own `POST /inference/v1/generate`, which takes a
//! pre-tokenized prompt (llm-d-router `requesthandling/parsers/vllmhttp`). Body: `token_ids`
//! (a non-empty array, required), `model` (optional string), `stream` (optional boolean),
//! `sampling_params` (forwarded untouched). It claims only that path, so it is listed beside
//! `openai-parser` in `requestHandler.parsers`.
//!
//! The text hashed for prefix matching is the raw JSON of `token_ids`: requests that share a
//! leading run of tokens share a leading run of that text, so they share prefix blocks (the
//! block boundaries fall on characters, not on tokens: an approximation, like the rest of the
//! approximate prefix cache). Parameters: none.

use alloc::borrow::Cow;
use alloc::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{ConfigError, RequestError};
use crate::model::request::{ApiKind, MediaParts};
use crate::parse::openai::{
    expect_object, is_non_empty_array, json_msg, present, stream_flag, string_field, ParsedBody,
};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, RequestParser, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "vllmhttp-parser";

/// The path it claims.
pub const PATHS: &[&str] = &["inference/v1/generate"];

/// Builds a [`VllmHttpParser`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(VllmHttpParser {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct VllmHttpParser {
    typed_name: TypedName,
}

impl Plugin for VllmHttpParser {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_parser(&self) -> Option<&dyn RequestParser> {
        Some(self)
    }
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    #[serde(default, borrow)]
    token_ids: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stream: Option<&'a RawValue>,
}

/// Parses a generate body.
///
/// # Errors
/// 400-class [`RequestError`]s: not a JSON object, no non-empty `token_ids`, a `model` that is
/// not a string, a `stream` that is not a boolean.
pub fn parse_generate(body: &[u8]) -> Result<ParsedBody<'_>, RequestError> {
    expect_object(body)?;
    let b: Body<'_> =
        serde_json::from_slice(body).map_err(|e| RequestError::InvalidJson(json_msg(&e)))?;
    let tokens = b
        .token_ids
        .and_then(present)
        .filter(|t| is_non_empty_array(t))
        .ok_or(RequestError::MissingPrompt("token_ids"))?;
    let model = match b.model.and_then(present) {
        None => Cow::Borrowed(""),
        Some(m) => string_field(m)
            .ok_or_else(|| RequestError::InvalidField("'model' must be a string".into()))?,
    };
    let stream = stream_flag(b.stream)?;
    Ok(ParsedBody {
        api: ApiKind::Completions,
        model,
        prompt: Cow::Borrowed(tokens.get()),
        stream,
        cache_salt: None,
        media: MediaParts::None,
        model_required: false,
        max_output_tokens: None,
        tools: None,
    })
}

impl RequestParser for VllmHttpParser {
    fn parse<'a>(&self, _path: &str, body: &'a [u8]) -> Result<ParsedBody<'a>, RequestError> {
        parse_generate(body)
    }
    fn claimed_paths(&self) -> &'static [&'static str] {
        PATHS
    }
    fn routes(&self) -> &'static [&'static str] {
        &["/inference/v1/generate"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_are_the_hashed_text() {
        let p = parse_generate(br#"{"model":"m","token_ids":[1,2,3],"sampling_params":{"max_tokens":4},"stream":true}"#)
            .unwrap();
        assert_eq!(p.prompt, "[1,2,3]");
        assert_eq!(p.model, "m");
        assert!(p.stream);
        assert_eq!(parse_generate(br#"{"token_ids":[7]}"#).unwrap().model, "");
        assert_eq!(
            parse_generate(br#"{"model":"m","token_ids":[]}"#).unwrap_err(),
            RequestError::MissingPrompt("token_ids")
        );
        assert!(matches!(
            parse_generate(br#"{"token_ids":[1],"model":3}"#).unwrap_err(),
            RequestError::InvalidField(_)
        ));
    }
}
