//! OpenAI-compatible request bodies: `/v1/completions`, `/v1/chat/completions`,
//! `/v1/embeddings`, `/v1/responses` (and `/v1/conversations`).
//!
//! Extracts `model`, `stream`, `cache_salt` and the text used for prefix hashing without copying
//! the prompt: the text borrows the body (the raw JSON of chat `messages`, the completions
//! prompt string). Rules follow GIE's `openai-parser` (docs/SOURCES.md#gie-openai-parser): the body must be a
//! JSON object whose `model`, if present, is a string; chat needs ≥ 1 message, completions a `prompt`,
//! embeddings and responses an `input`, conversations `items`. Violations are 400-class
//! [`RequestError`]s. serde_json caps nesting at 128 levels, so deep bodies are errors, not stack
//! overflows.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::RequestError;
use crate::model::request::{ApiKind, MediaParts};

pub use crate::model::request::ParsedBody;

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    #[serde(default, borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(default, borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(default, borrow)]
    max_output_tokens: Option<&'a RawValue>,
    #[serde(default, borrow)]
    messages: Option<&'a RawValue>,
    #[serde(default, borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
    #[serde(default, borrow)]
    instructions: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tools: Option<&'a RawValue>,
    #[serde(default, borrow)]
    items: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stream: Option<&'a RawValue>,
    #[serde(default, borrow)]
    cache_salt: Option<&'a RawValue>,
}

/// Parses `body` sent to `path`.
///
/// # Errors
/// [`RequestError::InvalidJson`] (not JSON or not UTF-8), [`RequestError::NotAnObject`],
/// [`RequestError::MissingModel`] (a `model` that is not a string), [`RequestError::MissingPrompt`]
/// or [`RequestError::InvalidField`] — all HTTP 400. A body without `model` (absent, null or
/// empty) parses with an empty model: a generic model rewrite rule or the rewrite header may
/// name one, and [`crate::EndpointPicker::parse_request`] /
/// [`crate::EndpointPicker::rewrite_model`] refuse the request when none does (llm-d-router).
pub fn parse_body<'a>(path: &str, body: &'a [u8]) -> Result<ParsedBody<'a>, RequestError> {
    let api = ApiKind::from_path(path);
    expect_object(body)?;
    let b: Body<'a> =
        serde_json::from_slice(body).map_err(|e| RequestError::InvalidJson(json_msg(&e)))?;

    let model = match b.model.and_then(present) {
        Some(raw) => string_field(raw).ok_or(RequestError::MissingModel)?,
        None => Cow::Borrowed(""),
    };
    let stream = stream_flag(b.stream)?;
    let cache_salt =
        match b.cache_salt.and_then(present) {
            None => None,
            Some(raw) => Some(string_field(raw).ok_or_else(|| {
                RequestError::InvalidField("'cache_salt' must be a string".into())
            })?),
        };

    let prompt: Cow<'a, str> = match api {
        ApiKind::ChatCompletions | ApiKind::Messages => {
            let raw = b
                .messages
                .and_then(present)
                .ok_or(RequestError::MissingPrompt("messages"))?;
            if !is_non_empty_array(raw) {
                return Err(RequestError::MissingPrompt("messages"));
            }
            Cow::Borrowed(raw.get())
        }
        ApiKind::Completions => {
            let raw = b
                .prompt
                .and_then(present)
                .ok_or(RequestError::MissingPrompt("prompt"))?;
            completion_prompt(raw)?
        }
        ApiKind::Embeddings => {
            let raw = b
                .input
                .and_then(present)
                .ok_or(RequestError::MissingPrompt("input"))?;
            Cow::Borrowed(raw.get())
        }
        ApiKind::Responses => {
            let input = b
                .input
                .and_then(present)
                .ok_or(RequestError::MissingPrompt("input"))?;
            // instructions ‖ tools ‖ input, the same order GIE hashes them in.
            let parts = [
                b.instructions.and_then(present),
                b.tools.and_then(present),
                Some(input),
            ];
            let mut text = String::new();
            for raw in parts.into_iter().flatten() {
                text.push_str(raw.get());
            }
            Cow::Owned(text)
        }
        ApiKind::Conversations => {
            let raw = b
                .items
                .and_then(present)
                .ok_or(RequestError::MissingPrompt("items"))?;
            if !is_non_empty_array(raw) {
                return Err(RequestError::MissingPrompt("items"));
            }
            Cow::Borrowed(raw.get())
        }
    };

    let may_have_media = match api {
        ApiKind::ChatCompletions | ApiKind::Messages | ApiKind::Conversations => {
            crate::parse::media::may_have_media(&prompt)
        }
        ApiKind::Responses => b
            .input
            .and_then(present)
            .is_some_and(|raw| crate::parse::media::may_have_media(raw.get())),
        ApiKind::Completions | ApiKind::Embeddings => false,
    };
    Ok(ParsedBody {
        api,
        model,
        prompt,
        stream,
        cache_salt,
        media: if may_have_media {
            MediaParts::Possible
        } else {
            MediaParts::None
        },
        model_required: true,
        max_output_tokens: output_cap(&[
            b.max_completion_tokens,
            b.max_tokens,
            b.max_output_tokens,
        ]),
        // The Responses API's tools are in its prompt text already.
        tools: match api {
            ApiKind::ChatCompletions => b.tools.and_then(present).map(|t| Cow::Borrowed(t.get())),
            _ => None,
        },
    })
}

/// The first of `fields` holding a non-negative integer: the client's cap on output tokens
/// (chat's `max_completion_tokens` or older `max_tokens`, completions' `max_tokens`, the
/// Responses API's `max_output_tokens`). Another value is not an error: the picker only uses the
/// cap for its load estimate, and the server judges the field.
pub(crate) fn output_cap(fields: &[Option<&RawValue>]) -> Option<u64> {
    fields
        .iter()
        .flatten()
        .find_map(|raw| serde_json::from_str::<u64>(raw.get()).ok())
}

/// `Ok` when `body` starts as a JSON object; else `NotAnObject` for valid JSON of another
/// kind, `InvalidJson` for anything else (the clearer message for each). Shared by every body
/// parser.
pub(crate) fn expect_object(body: &[u8]) -> Result<(), RequestError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(());
    }
    Err(
        match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => RequestError::NotAnObject,
            Err(e) => RequestError::InvalidJson(json_msg(&e)),
        },
    )
}

/// The `stream` field: absent or `null` is false.
///
/// # Errors
/// `InvalidField` when it is not a boolean.
pub(crate) fn stream_flag(raw: Option<&RawValue>) -> Result<bool, RequestError> {
    match raw.and_then(present).map(RawValue::get) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(RequestError::InvalidField(
            "'stream' must be a boolean".into(),
        )),
    }
}

/// `None` for an explicit JSON `null`.
pub(crate) fn present(raw: &RawValue) -> Option<&RawValue> {
    if raw.get() == "null" {
        None
    } else {
        Some(raw)
    }
}

/// A JSON string field, borrowed from the body unless it holds escapes (serde's `Cow<str>`
/// always copies, so the borrow is tried first: a model name rarely has escapes).
pub(crate) fn string_field(raw: &RawValue) -> Option<Cow<'_, str>> {
    if !raw.get().starts_with('"') {
        return None;
    }
    match serde_json::from_str::<&str>(raw.get()) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(raw.get())
            .ok()
            .map(Cow::Owned),
    }
}

pub(crate) fn is_non_empty_array(raw: &RawValue) -> bool {
    let s = raw.get();
    s.starts_with('[') && s.get(1..).is_some_and(|r| r.trim_start() != "]")
}

/// A completions `prompt`: a string, a list of strings (joined with spaces, as GIE does), or
/// token ids (no text, hence no prefix hashes).
fn completion_prompt(raw: &RawValue) -> Result<Cow<'_, str>, RequestError> {
    let s = raw.get();
    if s.starts_with('"') {
        return string_field(raw)
            .ok_or_else(|| RequestError::InvalidField("invalid 'prompt'".into()));
    }
    if s.starts_with('[') {
        if let Ok(parts) = serde_json::from_str::<Vec<Cow<'_, str>>>(s) {
            if parts.is_empty() {
                return Err(RequestError::MissingPrompt("prompt"));
            }
            if parts.len() == 1 {
                return Ok(parts.into_iter().next().unwrap_or_default());
            }
            return Ok(Cow::Owned(parts.join(" ")));
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok() && is_non_empty_array(raw) {
            // Token ids (or lists of them): valid, nothing to hash.
            return Ok(Cow::Borrowed(""));
        }
        return Err(RequestError::MissingPrompt("prompt"));
    }
    Err(RequestError::InvalidField(
        "'prompt' must be a string or an array".into(),
    ))
}

pub(crate) fn json_msg(e: &serde_json::Error) -> String {
    alloc::format!("{e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_tools_and_the_output_cap_are_read() {
        let chat = br#"{"model":"m","messages":[{"role":"user","content":"x"}],
            "tools":[{"type":"function"}],"max_tokens":7,"max_completion_tokens":9}"#;
        let p = parse_body("/v1/chat/completions", chat).unwrap();
        assert_eq!(p.tools.as_deref(), Some(r#"[{"type":"function"}]"#));
        assert_eq!(p.max_output_tokens, Some(9), "max_completion_tokens first");
        // Completions have no tools; a cap that is not a count is left to the server.
        let p = parse_body(
            "/v1/completions",
            br#"{"model":"m","prompt":"x","tools":[1],"max_tokens":"8"}"#,
        )
        .unwrap();
        assert_eq!((p.tools, p.max_output_tokens), (None, None));
        let p = parse_body(
            "/v1/responses",
            br#"{"model":"m","input":"x","max_output_tokens":5}"#,
        )
        .unwrap();
        assert_eq!(p.max_output_tokens, Some(5));
    }

    #[test]
    fn a_body_without_model_parses_with_an_empty_one() {
        // Left to a generic model rewrite rule or the rewrite header (the picker refuses the
        // request when neither names a model).
        for body in [
            &br#"{"prompt":"x"}"#[..],
            br#"{"model":null,"prompt":"x"}"#,
            br#"{"model":"","prompt":"x"}"#,
        ] {
            assert_eq!(parse_body("/v1/completions", body).unwrap().model, "");
        }
    }

    #[test]
    fn model_is_borrowed_unless_it_holds_escapes() {
        let plain = parse_body("/v1/completions", br#"{"model":"llama-3","prompt":"x"}"#).unwrap();
        assert_eq!(plain.model, "llama-3");
        assert!(matches!(plain.model, Cow::Borrowed(_)), "no copy");
        let escaped =
            parse_body("/v1/completions", br#"{"model":"llama-3\/a","prompt":"x"}"#).unwrap();
        assert_eq!(escaped.model, "llama-3/a");
        assert!(
            matches!(escaped.model, Cow::Owned(_)),
            "unescaped into a copy"
        );
        let salt = parse_body(
            "/v1/completions",
            br#"{"model":"m","prompt":"x","cache_salt":"t\"1"}"#,
        )
        .unwrap();
        assert_eq!(salt.cache_salt.as_deref(), Some("t\"1"));
        assert!(parse_body("/v1/completions", br#"{"model":7,"prompt":"x"}"#).is_err());
    }

    #[test]
    fn chat_prompt_is_raw_messages_json() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let p = parse_body("/v1/chat/completions", body).unwrap();
        assert_eq!(p.model, "m");
        assert!(p.stream);
        assert_eq!(p.prompt, r#"[{"role":"user","content":"hi"}]"#);
        assert!(
            matches!(p.prompt, Cow::Borrowed(_)),
            "no copy of the prompt"
        );
    }

    #[test]
    fn completions_prompt_forms() {
        let p = parse_body("/v1/completions", br#"{"model":"m","prompt":"abc"}"#).unwrap();
        assert_eq!(p.prompt, "abc");
        let p = parse_body("/v1/completions", br#"{"model":"m","prompt":["a","b"]}"#).unwrap();
        assert_eq!(p.prompt, "a b");
        let p = parse_body("/v1/completions", br#"{"model":"m","prompt":[1,2,3]}"#).unwrap();
        assert_eq!(p.prompt, "");
    }

    #[test]
    fn errors_are_400_class() {
        let cases: &[(&str, &[u8], RequestError)] = &[
            (
                "/v1/completions",
                b"not json",
                RequestError::InvalidJson(String::new()),
            ),
            ("/v1/completions", b"[1,2]", RequestError::NotAnObject),
            (
                "/v1/completions",
                br#"{"model":7,"prompt":"x"}"#,
                RequestError::MissingModel,
            ),
            (
                "/v1/completions",
                br#"{"model":"m"}"#,
                RequestError::MissingPrompt("prompt"),
            ),
            (
                "/v1/chat/completions",
                br#"{"model":"m","messages":[]}"#,
                RequestError::MissingPrompt("messages"),
            ),
            (
                "/v1/embeddings",
                br#"{"model":"m"}"#,
                RequestError::MissingPrompt("input"),
            ),
            (
                "/v1/responses",
                br#"{"model":"m"}"#,
                RequestError::MissingPrompt("input"),
            ),
            (
                "/v1/completions",
                br#"{"model":"m","prompt":"x","stream":"yes"}"#,
                RequestError::InvalidField(String::new()),
            ),
        ];
        for (path, body, want) in cases {
            let got = parse_body(path, body).unwrap_err();
            assert_eq!(got.status(), 400, "{path} {:?}", core::str::from_utf8(body));
            assert_eq!(
                core::mem::discriminant(&got),
                core::mem::discriminant(want),
                "{got:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_and_deep_nesting_are_errors() {
        let body = b"{\"model\":\"m\xff\",\"prompt\":\"x\"}";
        assert_eq!(
            parse_body("/v1/completions", body).unwrap_err().status(),
            400
        );
        let mut deep = String::from(r#"{"model":"m","prompt":"x","extra":"#);
        for _ in 0..5000 {
            deep.push('[');
        }
        assert_eq!(
            parse_body("/v1/completions", deep.as_bytes())
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn responses_concatenates_instructions_tools_input() {
        let body = br#"{"model":"m","instructions":"be brief","input":"hello"}"#;
        let p = parse_body("/v1/responses", body).unwrap();
        assert_eq!(p.prompt, r#""be brief""hello""#);
    }
}
