//! vLLM's tokenizer endpoints, answered with the simulator's tokenizer (`tokens.rs`):
//! - `POST /tokenize` `{model?, prompt | messages}` → `{count, max_model_len, tokens, token_strs}`;
//! - `POST /detokenize` `{model?, tokens}` → `{prompt}`;
//! - `POST /v1/chat/completions/render` and `POST /v1/completions/render` (the body of a chat or
//!   completions request) → the prompt's token ids as a generate request: `{request_id,
//!   token_ids, features, sampling_params, model, stream}`.
//!
//! vLLM's router (`cache_aware`, 0.1.17) calls a worker's render endpoint for every request and
//! routes on the token ids; for completions it called `/tokenize` when `/v1/completions/render`
//! was missing (seen against a stub). Without ids it falls back to least load. A missing `model` means the base model, as in vLLM; an unknown one is a 404.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::tokens::{detokenize as text_of, prompt_text, tokenize as ids_of};
use crate::{identify, resolve_model, ApiError, App, Shared};

/// The JSON object of a request body, or a 400.
fn object(raw: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(ApiError::bad_request("request body is not a JSON object")),
    }
}

/// The body's `model`, checked against what this server serves (absent: the base model).
fn check_model(app: &App, body: &Value) -> Result<String, ApiError> {
    match body.get("model").and_then(Value::as_str) {
        None => Ok(app.args.model.clone()),
        Some(m) => resolve_model(app, m).map(|_| m.to_string()),
    }
}

/// Token ids of the body's prompt (`messages` when `chat`, else `prompt`), or a 400.
fn prompt_ids(body: &Value, chat: bool) -> Result<Vec<u32>, ApiError> {
    prompt_text(body, chat).map(|t| ids_of(&t)).ok_or_else(|| {
        ApiError::bad_request(if chat {
            "missing messages"
        } else {
            "missing prompt"
        })
    })
}

/// The answer with the server's identity headers, whether it is a result or an error.
fn answer(app: &App, r: Result<Json<Value>, ApiError>) -> Response {
    identify(
        r.map_or_else(IntoResponse::into_response, IntoResponse::into_response),
        app,
    )
}

/// `POST /tokenize`.
pub async fn tokenize(State(app): State<Shared>, raw: Bytes) -> Response {
    let r = object(&raw).and_then(|body| {
        check_model(&app, &body)?;
        let ids = prompt_ids(&body, body.get("messages").is_some())?;
        Ok(Json(json!({
            "count": ids.len(),
            "max_model_len": app.args.max_model_len,
            "tokens": ids,
            "token_strs": null,
        })))
    });
    answer(&app, r)
}

/// `POST /detokenize`.
pub async fn detokenize(State(app): State<Shared>, raw: Bytes) -> Response {
    let r = object(&raw).and_then(|body| {
        check_model(&app, &body)?;
        let ids: Option<Vec<u32>> = body.get("tokens").and_then(Value::as_array).and_then(|a| {
            a.iter()
                .map(|t| t.as_u64().and_then(|n| u32::try_from(n).ok()))
                .collect()
        });
        let ids =
            ids.ok_or_else(|| ApiError::bad_request("tokens must be an array of token ids"))?;
        Ok(Json(json!({"prompt": text_of(&ids)})))
    });
    answer(&app, r)
}

fn render(app: &App, raw: &[u8], chat: bool) -> Response {
    let r = object(raw).and_then(|body| {
        let model = check_model(app, &body)?;
        let ids = prompt_ids(&body, chat)?;
        let max_tokens = body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .cloned()
            .unwrap_or(Value::Null);
        Ok(Json(json!({
            "request_id": "render-sim",
            "token_ids": ids,
            "features": null,
            "sampling_params": {"max_tokens": max_tokens},
            "model": model,
            "stream": body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        })))
    });
    answer(app, r)
}

/// `POST /v1/chat/completions/render`.
pub async fn render_chat(State(app): State<Shared>, raw: Bytes) -> Response {
    render(&app, &raw, true)
}

/// `POST /v1/completions/render`.
pub async fn render_completion(State(app): State<Shared>, raw: Bytes) -> Response {
    render(&app, &raw, false)
}
