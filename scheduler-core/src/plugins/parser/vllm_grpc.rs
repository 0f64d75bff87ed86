//! `vllmgrpc-parser` (llm-d, Beta): requests to vLLM's gRPC inference API over HTTP/2 cleartext
//! (llm-d-router `requesthandling/parsers/vllmgrpc`, in our words):
//! - the body is one uncompressed gRPC frame (a compressed one is a 400, as upstream);
//! - `…/vllm.grpc.engine.VllmEngine/Generate` carries a `GenerateRequest` (text or token ids),
//!   `…/Embed` an `EmbedRequest` (token ids, required); see [`crate::parse::vllm_grpc`] for the
//!   fields read and the text the prefix cache hashes;
//! - any other path (health checks, model info, abort) passes through unparsed (no model);
//! - the messages carry no model name: the request's model is empty unless
//!   `x-gateway-model-name-rewrite` names one.
//!
//! The response's token usage (streaming chunks or the final `GenerateComplete`, or an
//! `EmbedResponse`) is read by the hosts with [`crate::parse::vllm_grpc::GrpcUsageReader`] when
//! the response is `application/grpc`. Parameters: none.

use alloc::borrow::Cow;
use alloc::sync::Arc;

use crate::error::{ConfigError, RequestError};
use crate::model::request::{ApiKind, MediaParts, ParsedBody};
use crate::parse::protobuf::grpc_message;
use crate::parse::vllm_grpc::{parse_request, Method, VllmRequestError};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, RequestParser, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "vllmgrpc-parser";

/// Builds a [`VllmGrpcParser`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(VllmGrpcParser {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct VllmGrpcParser {
    typed_name: TypedName,
}

impl Plugin for VllmGrpcParser {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_parser(&self) -> Option<&dyn RequestParser> {
        Some(self)
    }
}

fn bad(why: &str) -> RequestError {
    RequestError::InvalidField(alloc::format!("invalid vLLM gRPC request: {why}"))
}

impl RequestParser for VllmGrpcParser {
    fn parse<'a>(&self, path: &str, body: &'a [u8]) -> Result<ParsedBody<'a>, RequestError> {
        let Some(method) = Method::of_path(path) else {
            return Ok(ParsedBody::unparsed(ApiKind::Completions));
        };
        let message = grpc_message(body).map_err(|e| bad(e.as_str()))?;
        let r = parse_request(method, message).map_err(|e| match e {
            VllmRequestError::Wire(w) => bad(w.as_str()),
            VllmRequestError::NotUtf8(field) => bad(&alloc::format!("'{field}' is not UTF-8")),
            VllmRequestError::MissingInput => match method {
                Method::Generate => RequestError::MissingPrompt("text or tokenized"),
                Method::Embed => RequestError::MissingPrompt("tokenized"),
            },
        })?;
        Ok(ParsedBody {
            api: match method {
                Method::Generate => ApiKind::Completions,
                Method::Embed => ApiKind::Embeddings,
            },
            model: Cow::Borrowed(""),
            prompt: r.prompt,
            stream: r.stream,
            cache_salt: None,
            media: media_of(r.multimodal),
            model_required: false,
            max_output_tokens: None,
            tools: None,
        })
    }

    fn claimed_paths(&self) -> &'static [&'static str] {
        // The last path segment (a gRPC path's service is preceded by its package, not by `/`);
        // `parse` checks the whole `vllm.grpc.engine.VllmEngine/<method>` suffix.
        &["Generate", "Embed"]
    }
}

/// A gRPC request's placeholder tokens say for certain whether it carries media.
fn media_of(multimodal: bool) -> MediaParts {
    if multimodal {
        MediaParts::Present
    } else {
        MediaParts::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::protobuf::{grpc_frame, put_bytes, put_uint};
    use alloc::vec::Vec;

    fn parser() -> Arc<dyn Plugin> {
        factory(TYPE, None, &Handle::new(&[])).unwrap()
    }

    fn parse(path: &str, body: &[u8]) -> Result<ParsedBody<'static>, RequestError> {
        let p = parser();
        p.as_parser()
            .unwrap()
            .parse(path, body)
            .map(|b| ParsedBody {
                api: b.api,
                model: Cow::Owned(b.model.into_owned()),
                prompt: Cow::Owned(b.prompt.into_owned()),
                stream: b.stream,
                cache_salt: None,
                media: b.media,
                model_required: false,
                max_output_tokens: None,
                tools: None,
            })
    }

    const GENERATE: &str = "/vllm.grpc.engine.VllmEngine/Generate";

    #[test]
    fn table() {
        let mut text = Vec::new();
        put_bytes(&mut text, 3, b"Hello there");
        put_uint(&mut text, 5, 1);
        let mut ids = Vec::new();
        put_bytes(&mut ids, 2, &[0x12, 3, 1, 2, 3]);
        let mut empty_tokenized = Vec::new();
        put_bytes(&mut empty_tokenized, 2, &[]);
        let ok = |api, prompt: &str, stream| {
            Ok(ParsedBody {
                api,
                model: Cow::Borrowed(""),
                prompt: Cow::Owned(prompt.into()),
                stream,
                cache_salt: None,
                media: MediaParts::None,
                model_required: false,
                max_output_tokens: None,
                tools: None,
            })
        };
        type Case = (
            &'static str,
            &'static str,
            Vec<u8>,
            Result<ParsedBody<'static>, RequestError>,
        );
        let cases: Vec<Case> = alloc::vec![
            (
                "generate with text, streaming",
                GENERATE,
                grpc_frame(&text),
                ok(ApiKind::Completions, "Hello there", true)
            ),
            (
                "generate with token ids",
                GENERATE,
                grpc_frame(&ids),
                ok(ApiKind::Completions, "[1,2,3]", false)
            ),
            (
                "embed with token ids",
                "/vllm.grpc.engine.VllmEngine/Embed",
                grpc_frame(&ids),
                ok(ApiKind::Embeddings, "[1,2,3]", false)
            ),
            (
                "tokenized with no ids (upstream accepts)",
                GENERATE,
                grpc_frame(&empty_tokenized),
                ok(ApiKind::Completions, "[]", false)
            ),
            (
                "other methods pass through",
                "/vllm.grpc.engine.VllmEngine/HealthCheck",
                Vec::new(),
                ok(ApiKind::Completions, "", false)
            ),
            (
                "no input",
                GENERATE,
                grpc_frame(&[]),
                Err(RequestError::MissingPrompt("text or tokenized"))
            ),
            (
                "embed without tokenized",
                "/vllm.grpc.engine.VllmEngine/Embed",
                grpc_frame(&text),
                Err(RequestError::MissingPrompt("tokenized"))
            ),
            (
                "not a frame",
                GENERATE,
                alloc::vec![0, 0],
                Err(bad("shorter than its gRPC frame"))
            ),
            (
                "compressed",
                GENERATE,
                {
                    let mut f = grpc_frame(&text);
                    f[0] = 1;
                    f
                },
                Err(bad("compressed gRPC messages are not supported"))
            ),
            (
                "malformed protobuf",
                GENERATE,
                grpc_frame(&[0x1a, 40, b'x']),
                Err(bad("field past the end of its message"))
            ),
        ];
        for (name, path, body, want) in cases {
            assert_eq!(parse(path, &body), want, "{name}");
        }
    }

    #[test]
    fn claims_its_methods_only() {
        let p = parser();
        let claims = p.as_parser().unwrap().claimed_paths();
        use crate::plugin::request_control::path_has_suffix;
        assert!(claims.iter().any(|c| path_has_suffix(GENERATE, c)));
        assert!(!claims
            .iter()
            .any(|c| path_has_suffix("/v1/chat/completions", c)));
    }
}
