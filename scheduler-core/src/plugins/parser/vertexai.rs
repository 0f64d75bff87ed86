//! `vertexai-parser` (llm-d): Vertex AI's gRPC prediction API, whose requests carry an
//! OpenAI-compatible JSON body inside protobuf (llm-d-router `parsers/vertexai`, in our words):
//! - the body is one gRPC message: a 5-byte prefix (compressed flag, which must be 0, and the
//!   message length, big-endian u32) and the message;
//! - for the methods `PredictionService/ChatCompletions`, `PredictionService/StreamRawPredict`
//!   and `PredictionService/RawPredict` (matched at the end of `:path`), the message is a
//!   `ChatCompletionsRequest` / `StreamRawPredictRequest` / `RawPredictRequest`, whose field 2 is
//!   a `google.api.HttpBody`, whose field 2 (`data`) is the JSON;
//! - that JSON is parsed as OpenAI chat completions (ChatCompletions) or responses (the two raw
//!   predict methods); a message without an `HttpBody` is a 400;
//! - any other path passes through unparsed (no model), as upstream.
//!
//! The JSON is read in place in the request body (not copied out). Responses are gRPC-framed protobuf, so
//! their `usage` is not read. Parameters: none.

use alloc::sync::Arc;

use crate::error::{ConfigError, RequestError};
use crate::model::request::{ApiKind, ParsedBody};
use crate::parse::protobuf::{grpc_message, last_bytes};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, RequestParser, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "vertexai-parser";

/// The gRPC methods read, with the OpenAI path their JSON is parsed as.
const METHODS: [(&str, &str); 3] = [
    ("PredictionService/ChatCompletions", "/v1/chat/completions"),
    ("PredictionService/StreamRawPredict", "/v1/responses"),
    ("PredictionService/RawPredict", "/v1/responses"),
];

/// Builds a [`VertexAiParser`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(VertexAiParser {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct VertexAiParser {
    typed_name: TypedName,
}

impl Plugin for VertexAiParser {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_parser(&self) -> Option<&dyn RequestParser> {
        Some(self)
    }
}

fn bad(why: &str) -> RequestError {
    RequestError::InvalidField(alloc::format!("invalid Vertex AI gRPC request: {why}"))
}

impl RequestParser for VertexAiParser {
    fn parse<'a>(&self, path: &str, body: &'a [u8]) -> Result<ParsedBody<'a>, RequestError> {
        let path_only = path.split('?').next().unwrap_or(path);
        let Some(&(_, openai_path)) = METHODS.iter().find(|(m, _)| path_only.ends_with(m)) else {
            return Ok(ParsedBody::unparsed(ApiKind::from_path(path)));
        };
        let message = grpc_message(body).map_err(|e| bad(e.as_str()))?;
        let http_body = last_bytes(message, 2)
            .map_err(|e| bad(e.as_str()))?
            .ok_or_else(|| bad("the request has no HttpBody"))?;
        let json = last_bytes(http_body, 2)
            .map_err(|e| bad(e.as_str()))?
            .unwrap_or_default();
        // The JSON sits inside a gRPC frame, which the picker does not rewrite: it must name
        // its model itself.
        let parsed = crate::parse::openai::parse_body(openai_path, json)?;
        if parsed.model.is_empty() {
            return Err(RequestError::MissingModel);
        }
        Ok(ParsedBody {
            model_required: false,
            ..parsed
        })
    }

    fn claimed_paths(&self) -> &'static [&'static str] {
        // The last path segment: a gRPC path's service is preceded by its package (`.`), not
        // by `/`; `parse` checks the whole `PredictionService/<method>` suffix.
        &["ChatCompletions", "StreamRawPredict", "RawPredict"]
    }

    fn routes(&self) -> &'static [&'static str] {
        // Vertex AI's `PredictionService` in both published API versions (llm-d reads the
        // v1beta1 messages; v1 carries the same methods and fields).
        &[
            "/google.cloud.aiplatform.v1.PredictionService/ChatCompletions",
            "/google.cloud.aiplatform.v1.PredictionService/StreamRawPredict",
            "/google.cloud.aiplatform.v1.PredictionService/RawPredict",
            "/google.cloud.aiplatform.v1beta1.PredictionService/ChatCompletions",
            "/google.cloud.aiplatform.v1beta1.PredictionService/StreamRawPredict",
            "/google.cloud.aiplatform.v1beta1.PredictionService/RawPredict",
        ]
    }
}

/// A gRPC frame of a `…Request` message whose `HttpBody` carries `json` (for the tests).
#[cfg(test)]
fn encode_request(json: &[u8]) -> alloc::vec::Vec<u8> {
    use crate::parse::protobuf::{grpc_frame, put_bytes};
    let mut http_body = alloc::vec::Vec::new();
    put_bytes(&mut http_body, 1, b"application/json");
    put_bytes(&mut http_body, 2, json);
    let mut msg = alloc::vec::Vec::new();
    put_bytes(&mut msg, 1, b"projects/p/locations/l/endpoints/e");
    put_bytes(&mut msg, 2, &http_body);
    grpc_frame(&msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> Arc<dyn Plugin> {
        factory(TYPE, None, &Handle::new(&[])).unwrap()
    }

    const CHAT: &str =
        r#"{"model":"gemma","messages":[{"role":"user","content":"hi there"}],"stream":true}"#;

    #[test]
    fn chat_completions_inside_grpc_and_protobuf() {
        let p = parser();
        let body = encode_request(CHAT.as_bytes());
        let r = p
            .as_parser()
            .unwrap()
            .parse(
                "/google.cloud.aiplatform.v1beta1.PredictionService/ChatCompletions",
                &body,
            )
            .unwrap();
        assert_eq!(r.model, "gemma");
        assert_eq!(r.api, ApiKind::ChatCompletions);
        assert!(r.stream);
        assert!(r.prompt.contains("hi there"));
    }

    #[test]
    fn raw_predict_is_read_as_responses() {
        let body = encode_request(br#"{"model":"m","input":"hello"}"#);
        for method in [
            "PredictionService/RawPredict",
            "PredictionService/StreamRawPredict",
        ] {
            let r = parser()
                .as_parser()
                .unwrap()
                .parse(
                    &alloc::format!("/google.cloud.aiplatform.v1.{method}"),
                    &body,
                )
                .unwrap();
            assert_eq!(
                (r.model.as_ref(), r.api),
                ("m", ApiKind::Responses),
                "{method}"
            );
        }
    }

    #[test]
    fn malformed_frames_and_messages_are_400s() {
        let p = parser();
        let parse = |b: &[u8]| {
            p.as_parser()
                .unwrap()
                .parse("/x.PredictionService/ChatCompletions", b)
                .map(|_| ())
        };
        let good = encode_request(CHAT.as_bytes());
        let mut compressed = good.clone();
        compressed[0] = 1;
        let mut too_long = good.clone();
        too_long[4] = too_long[4].wrapping_add(1);
        // A message with no field 2: just the endpoint string.
        let no_body = [0u8, 0, 0, 0, 3, 0x0a, 1, b'e'];
        for (what, b) in [
            ("short", &good[..3]),
            ("compressed", &compressed[..]),
            ("length past the end", &too_long[..]),
            ("no HttpBody", &no_body[..]),
            ("bad wire type", &[0u8, 0, 0, 0, 1, 0x0f][..]),
        ] {
            let e = parse(b).unwrap_err();
            assert_eq!(e.status(), 400, "{what}: {e}");
        }
        // The inner JSON is checked as OpenAI's: a missing model is a 400 too.
        assert_eq!(
            parse(&encode_request(br#"{"messages":[]}"#))
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn other_paths_pass_through_unparsed() {
        let r = parser()
            .as_parser()
            .unwrap()
            .parse("/x.PredictionService/Predict", b"\x00\x00\x00\x00\x00")
            .unwrap();
        assert_eq!(r.model, "");
    }
}
