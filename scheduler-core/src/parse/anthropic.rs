//! Anthropic Messages API request bodies (`POST /v1/messages`, `/v1/messages/count_tokens`), as
//! llm-d's `anthropic-parser` reads them: `model` (required, a non-empty string), `messages`
//! (required, a non-empty array), optional `system` (a string or an array of content blocks)
//! and `stream` (a boolean).
//!
//! The text hashed for prefix matching is the raw JSON of `system` (when present) followed by
//! the raw JSON of `messages`: the system prompt is what requests share, so it leads, as in the
//! prompt Anthropic-compatible servers build. Nothing is copied when there is no `system`.

use alloc::borrow::Cow;
use alloc::string::String;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::RequestError;
use crate::model::request::{ApiKind, MediaParts};
use crate::parse::openai::{
    expect_object, is_non_empty_array, json_msg, present, stream_flag, string_field, ParsedBody,
};

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    #[serde(default, borrow)]
    messages: Option<&'a RawValue>,
    #[serde(default, borrow)]
    system: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stream: Option<&'a RawValue>,
    #[serde(default, borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tools: Option<&'a RawValue>,
}

/// Parses a Messages API body.
///
/// # Errors
/// 400-class [`RequestError`]s: not JSON, not an object, no `model`, no `messages`, a `stream`
/// that is not a boolean, a `system` that is neither a string nor an array.
pub fn parse_body(body: &[u8]) -> Result<ParsedBody<'_>, RequestError> {
    expect_object(body)?;
    let b: Body<'_> =
        serde_json::from_slice(body).map_err(|e| RequestError::InvalidJson(json_msg(&e)))?;
    let model = b
        .model
        .and_then(present)
        .and_then(string_field)
        .filter(|m| !m.is_empty())
        .ok_or(RequestError::MissingModel)?;
    let messages = b
        .messages
        .and_then(present)
        .filter(|m| is_non_empty_array(m))
        .ok_or(RequestError::MissingPrompt("messages"))?;
    let stream = stream_flag(b.stream)?;
    let prompt = match b.system.and_then(present) {
        None => Cow::Borrowed(messages.get()),
        Some(s) if s.get().starts_with('"') || s.get().starts_with('[') => {
            let mut text = String::with_capacity(s.get().len() + messages.get().len());
            text.push_str(s.get());
            text.push_str(messages.get());
            Cow::Owned(text)
        }
        Some(_) => {
            return Err(RequestError::InvalidField(
                "'system' must be a string or an array of content blocks".into(),
            ))
        }
    };
    let media = if crate::parse::media::may_have_media(messages.get()) {
        MediaParts::Possible
    } else {
        MediaParts::None
    };
    Ok(ParsedBody {
        api: ApiKind::Messages,
        model,
        prompt,
        stream,
        cache_salt: None,
        media,
        model_required: true,
        max_output_tokens: crate::parse::openai::output_cap(&[b.max_tokens]),
        tools: b.tools.and_then(present).map(|t| Cow::Borrowed(t.get())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_leads_the_hashed_text() {
        let body = br#"{"model":"claude","system":"Be brief.","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let p = parse_body(body).unwrap();
        assert_eq!(p.model, "claude");
        assert_eq!(p.api, ApiKind::Messages);
        assert!(p.stream);
        assert_eq!(p.prompt, r#""Be brief."[{"role":"user","content":"hi"}]"#);
        let no_system = br#"{"model":"claude","messages":[{"role":"user","content":"hi"}]}"#;
        assert!(matches!(
            parse_body(no_system).unwrap().prompt,
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn bad_bodies_are_400s() {
        assert_eq!(parse_body(b"[1]").unwrap_err(), RequestError::NotAnObject);
        assert_eq!(
            parse_body(br#"{"messages":[{"role":"user","content":"x"}]}"#).unwrap_err(),
            RequestError::MissingModel
        );
        assert_eq!(
            parse_body(br#"{"model":"m","messages":[]}"#).unwrap_err(),
            RequestError::MissingPrompt("messages")
        );
        assert!(matches!(
            parse_body(br#"{"model":"m","messages":[{}],"system":5}"#).unwrap_err(),
            RequestError::InvalidField(_)
        ));
        assert!(matches!(
            parse_body(b"{").unwrap_err(),
            RequestError::InvalidJson(_)
        ));
    }
}
