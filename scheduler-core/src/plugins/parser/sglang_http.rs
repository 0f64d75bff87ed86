//! `sglanghttp-parser` (llm-d, Beta): SGLang's native `POST /generate` (llm-d-router
//! `requesthandling/parsers/sglanghttp`, read at the commit in `testdata/upstream/README.md`).
//! It claims only that path, so it is listed beside `openai-parser` in
//! `requestHandler.parsers` for a fleet of SGLang servers that also takes `/generate` calls.
//!
//! Body (SGLang's `GenerateReqInput`, the fields read here):
//! - `input_ids`: the pre-tokenized prompt, a non-empty array of unsigned 32-bit integers;
//! - `text`: a prompt string, used when `input_ids` is absent. Upstream's parser accepts only
//!   `input_ids` and refuses such a request with 400; SGLang serves both, so this one routes it
//!   (a list of prompts, SGLang's batch form, is still refused: one request, one destination);
//! - `extra_key` (docs/SOURCES.md#sglang-generate): a string SGLang mixes into its prefix-cache
//!   keys, so requests with different keys share no cached blocks; here it is the request's
//!   cache salt, mixed into the approximate prefix index's hash seed as vLLM's `cache_salt` is
//!   (the precise index cannot: SGLang's KV events do not carry it,
//!   docs/SOURCES.md#sglang-kv-salt);
//! - `stream`: a boolean; `sampling_params` and the rest are forwarded untouched.
//!
//! There is no `model` field: the request's model is empty (LoRA affinity has nothing to match).
//! The text hashed for prefix matching is the prompt string, or the raw JSON of `input_ids` (as
//! `vllmhttp-parser` does: requests sharing leading tokens share leading text).
//!
//! Responses carry usage under `meta_info` (`prompt_tokens`, `completion_tokens`,
//! `cached_tokens`), every streamed chunk the running totals; the response-usage reader
//! ([`crate::parse::usage`]) reads that shape too. Parameters: none.

use alloc::borrow::Cow;
use alloc::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{ConfigError, RequestError};
use crate::model::request::{ApiKind, MediaParts};
use crate::parse::openai::{
    expect_object, json_msg, present, stream_flag, string_field, ParsedBody,
};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, RequestParser, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "sglanghttp-parser";

/// The path it claims.
pub const PATHS: &[&str] = &["generate"];

/// Builds a [`SglangHttpParser`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(SglangHttpParser {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct SglangHttpParser {
    typed_name: TypedName,
}

impl Plugin for SglangHttpParser {
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
    input_ids: Option<&'a RawValue>,
    #[serde(default, borrow)]
    text: Option<&'a RawValue>,
    #[serde(default, borrow)]
    extra_key: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stream: Option<&'a RawValue>,
}

/// True for a non-empty JSON array of integers in 0..=4,294,967,295 (no allocation).
fn is_u32_array(raw: &str) -> bool {
    let Some(inner) = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        return false;
    };
    !inner.trim().is_empty()
        && inner.split(',').all(|n| {
            let n = n.trim();
            n.bytes().all(|b| b.is_ascii_digit()) && n.parse::<u32>().is_ok()
        })
}

/// Parses a `/generate` body.
///
/// # Errors
/// 400-class [`RequestError`]s: not a JSON object; neither `input_ids` nor `text`;
/// `input_ids` that is not a non-empty array of u32; `text` that is not a non-empty string;
/// `extra_key` that is not a string; `stream` that is not a boolean.
pub fn parse_generate(body: &[u8]) -> Result<ParsedBody<'_>, RequestError> {
    expect_object(body)?;
    let b: Body<'_> =
        serde_json::from_slice(body).map_err(|e| RequestError::InvalidJson(json_msg(&e)))?;
    let prompt = match (b.input_ids.and_then(present), b.text.and_then(present)) {
        (Some(ids), _) => {
            if !is_u32_array(ids.get()) {
                return Err(RequestError::InvalidField(
                    "'input_ids' must be a non-empty array of unsigned 32-bit integers".into(),
                ));
            }
            Cow::Borrowed(ids.get())
        }
        (None, Some(text)) => string_field(text)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                RequestError::InvalidField(
                    "'text' must be a non-empty string (batches of prompts are not routed)".into(),
                )
            })?,
        (None, None) => return Err(RequestError::MissingPrompt("input_ids")),
    };
    let cache_salt = match b.extra_key.and_then(present) {
        None => None,
        Some(k) => Some(
            string_field(k)
                .ok_or_else(|| RequestError::InvalidField("'extra_key' must be a string".into()))?,
        ),
    };
    Ok(ParsedBody {
        api: ApiKind::Completions,
        model: Cow::Borrowed(""),
        prompt,
        stream: stream_flag(b.stream)?,
        cache_salt,
        media: MediaParts::None,
        model_required: false,
        max_output_tokens: None,
        tools: None,
    })
}

impl RequestParser for SglangHttpParser {
    fn parse<'a>(&self, _path: &str, body: &'a [u8]) -> Result<ParsedBody<'a>, RequestError> {
        parse_generate(body)
    }
    fn claimed_paths(&self) -> &'static [&'static str] {
        PATHS
    }
    fn routes(&self) -> &'static [&'static str] {
        &["/generate"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn input_ids_text_and_extra_key() {
        let p = parse_generate(
            br#"{"input_ids":[1, 2,3],"extra_key":"tenant-a","sampling_params":{"max_new_tokens":8},"stream":true}"#,
        )
        .unwrap();
        assert_eq!(p.prompt, "[1, 2,3]");
        assert_eq!(p.cache_salt.as_deref(), Some("tenant-a"));
        assert_eq!(p.model, "");
        assert!(p.stream);
        let t = parse_generate(br#"{"text":"The capital of France is"}"#).unwrap();
        assert_eq!(t.prompt, "The capital of France is");
        assert!(t.cache_salt.is_none() && !t.stream);
        // input_ids wins when both are there.
        assert_eq!(
            parse_generate(br#"{"text":"x","input_ids":[4294967295]}"#)
                .unwrap()
                .prompt,
            "[4294967295]"
        );
    }

    #[test]
    fn bad_bodies_are_400_with_the_field() {
        for (body, field) in [
            (&br#"{"sampling_params":{}}"#[..], "input_ids"),
            (br#"{"input_ids":null,"text":null}"#, "input_ids"),
            (br#"{"input_ids":[]}"#, "input_ids"),
            (br#"{"input_ids":[1,-2]}"#, "input_ids"),
            (br#"{"input_ids":[4294967296]}"#, "input_ids"),
            (br#"{"input_ids":[1.5]}"#, "input_ids"),
            (br#"{"input_ids":[[1,2]]}"#, "input_ids"),
            (br#"{"text":["a","b"]}"#, "text"),
            (br#"{"text":""}"#, "text"),
            (br#"{"input_ids":[1],"extra_key":7}"#, "extra_key"),
            (br#"{"input_ids":[1],"stream":"yes"}"#, "stream"),
        ] {
            let e = parse_generate(body).unwrap_err();
            assert_eq!(e.status(), 400, "{}", core::str::from_utf8(body).unwrap());
            assert!(
                e.to_string().contains(field),
                "{}: {e}",
                core::str::from_utf8(body).unwrap()
            );
        }
        assert_eq!(
            parse_generate(b"[1]").unwrap_err(),
            RequestError::NotAnObject
        );
    }
}
