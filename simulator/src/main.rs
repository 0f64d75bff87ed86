//! `model-sim`: a model server that behaves like vLLM where routing matters (queueing under a
//! per-step token budget, KV-cache pressure and preemption, prefix-cache hits, LoRA adapters) and
//! speaks its HTTP and `/metrics` formats. Timing is simulated in real time; there is no model.
//!
//! Endpoints: `/v1/completions`, `/v1/chat/completions` (JSON or SSE, `usage` with
//! `prompt_tokens_details.cached_tokens`, `stream_options.include_usage`), `/v1/models`,
//! `/v1/embeddings`, `/metrics`, `POST|DELETE /admin/fake-metrics`, `GET /health`, and vLLM's
//! tokenizer endpoints `/tokenize`, `/detokenize`, `/v1/chat/completions/render` and
//! `/v1/completions/render` (what vLLM's router calls for its `cache_aware` policy). Bodies up to
//! `--max-body-bytes` (16 MiB) are accepted; a request whose client disconnects is aborted and
//! frees its batch slot and KV blocks, as in vLLM (`finished_reason="abort"`). Every response names the
//! server (`x-inference-pod`, `x-inference-port`). Tokens are 4-byte chunks of the text
//! (`tokens.rs`), or with `--tokenizer` a real Hugging Face tokenizer and chat template (the
//! `/tokenize` family keeps the 4-byte tokens). With `--kv-events-endpoint` the block pool
//! publishes vLLM's KV-cache events over ZMQ (`kv_events.rs`); `POST /reset_prefix_cache`
//! drops the prefix cache as vLLM's does.

mod engine;
mod kv;
mod kv_events;
mod metrics;
mod tokenizer_api;
mod tokens;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use clap::Parser;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use engine::{Command, EngineConfig, Event, Submission};
use metrics::{Dialect, FakeMetrics, PageInfo, Stats};

/// Defaults: docs/SOURCES.md#step-model (step-cost coefficients "calibrated to the 8B/H100 profile":
/// c0 ≈ 6 ms, c_pf ≈ 0.2 ms/token, c_dec ≈ 0.05 ms/seq, c_ctx ≈ 5e-7 s/token); vLLM's own
/// defaults for block size (16) and max-num-seqs (256); max-num-batched-tokens 8192 (vLLM V1's
/// default with chunked prefill on an H100-class GPU); 27215 blocks is the KV size vLLM 0.10
/// reports for Llama-3.1-8B on one H100 (the §1.3 fixture).
#[derive(Parser, Debug)]
#[command(version, about = "Step-level vLLM-like model-server simulator")]
struct Args {
    /// Listen address. Port 0 takes a free port; the address bound is printed on stdout as
    /// `listening on ADDRESS` once the socket listens, whatever the port.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Name reported in `x-inference-pod`.
    #[arg(long, default_value = "sim-0")]
    name: String,
    /// Largest request body accepted, bytes (above the picker's 4 MiB default limit, so the
    /// picker's own limit is what tests exercise).
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Served model name.
    #[arg(long, default_value = "meta-llama/Llama-3.1-8B-Instruct")]
    model: String,
    /// LoRA adapters this server can serve (comma-separated).
    #[arg(long, value_delimiter = ',')]
    lora: Vec<String>,
    /// Adapters loaded at once.
    #[arg(long, default_value_t = 1)]
    max_loras: usize,
    /// Adapter load time, ms.
    #[arg(long, default_value_t = 50.0)]
    lora_load_ms: f64,
    /// Longest prompt plus output, tokens (vLLM's `--max-model-len`; Llama-3.1-8B's 131072).
    #[arg(long, default_value_t = 131072)]
    max_model_len: usize,
    /// Running batch size.
    #[arg(long, default_value_t = 256)]
    max_num_seqs: usize,
    /// Token budget per step (chunked prefill).
    #[arg(long, default_value_t = 8192)]
    max_num_batched_tokens: usize,
    /// Tokens per KV block.
    #[arg(long, default_value_t = 16)]
    block_size: usize,
    /// KV blocks.
    #[arg(long, default_value_t = 27215)]
    num_gpu_blocks: u32,
    /// Step cost: fixed, ms.
    #[arg(long, default_value_t = 6.0)]
    step_base_ms: f64,
    /// Step cost: per prefill token, ms.
    #[arg(long, default_value_t = 0.2)]
    prefill_ms_per_token: f64,
    /// Step cost: per decoding sequence, ms.
    #[arg(long, default_value_t = 0.05)]
    decode_ms_per_seq: f64,
    /// Step cost: per context token of the decodes, ms.
    #[arg(long, default_value_t = 0.0005)]
    context_ms_per_token: f64,
    /// Output tokens when the request sets no max_tokens.
    #[arg(long, default_value_t = 16)]
    default_max_tokens: usize,
    /// Metric names to emit.
    #[arg(long, value_enum, default_value = "vllm")]
    engine: Dialect,
    /// Pin metric values (JSON: waiting-requests, running-requests, kv-cache-usage,
    /// running-loras, waiting-loras); the engine still serves requests.
    #[arg(long)]
    fake_metrics: Option<String>,
    /// A Hugging Face tokenizer (directory with `tokenizer.json` and `tokenizer_config.json`,
    /// e.g. from `make-test-tokenizer`): prompts are tokenised with it and the chat template
    /// instead of the built-in 4-byte tokens, as vLLM serving that model would.
    #[arg(long)]
    tokenizer: Option<std::path::PathBuf>,
    /// Publish vLLM's KV-cache events on a ZMQ PUB socket bound here (e.g.
    /// `tcp://127.0.0.1:5557`; vLLM's default is `tcp://*:5557`). Off when unset.
    #[arg(long)]
    kv_events_endpoint: Option<String>,
    /// Serve vLLM's KV-event replay on a ZMQ ROUTER socket bound here (vLLM's
    /// `replay_endpoint`, e.g. `tcp://127.0.0.1:5558`): the last `--kv-events-buffer-steps`
    /// batches, from a requested sequence number on. Off when unset.
    #[arg(long, requires = "kv_events_endpoint")]
    kv_events_replay_endpoint: Option<String>,
    /// Batches kept for replay (vLLM's `buffer_steps`).
    #[arg(long, default_value_t = 10_000)]
    kv_events_buffer_steps: usize,
    /// Test knob: leave every n-th event batch unpublished (still replayable), as if ZMQ had
    /// dropped it; 0 publishes all.
    #[arg(long, default_value_t = 0)]
    kv_events_drop_one_in: u64,
    /// Whose KV-event schema to publish: vLLM's or SGLang's.
    #[arg(long, value_enum, default_value = "vllm")]
    kv_events_format: kv_events::Format,
}

pub(crate) struct App {
    args: Args,
    tokenizer: Option<prompt_tokenizer::PromptTokenizer>,
    stats: Arc<Mutex<Stats>>,
    submit: mpsc::UnboundedSender<Command>,
}

pub(crate) type Shared = Arc<App>;

pub(crate) fn error(status: StatusCode, message: &str, kind: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": status.as_u16()}});
    (status, Json(body)).into_response()
}

/// An OpenAI-style error answer (status, message, error type), built into a response by
/// [`error`].
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
}

impl ApiError {
    /// A 400 `BadRequestError`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "BadRequestError",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, &self.message, self.kind)
    }
}

/// The adapter a request's `model` names: `Ok(None)` for the base model, `Ok(Some(adapter))` for
/// a served LoRA adapter; vLLM's 404 for any other name.
pub(crate) fn resolve_model(app: &App, model: &str) -> Result<Option<String>, ApiError> {
    if model == app.args.model {
        Ok(None)
    } else if app.args.lora.iter().any(|l| l == model) {
        Ok(Some(model.to_string()))
    } else {
        Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("The model `{model}` does not exist."),
            kind: "NotFoundError",
        })
    }
}

pub(crate) fn identify(mut r: Response, app: &App) -> Response {
    if let Ok(v) = HeaderValue::from_str(&app.args.name) {
        r.headers_mut().insert("x-inference-pod", v);
    }
    r.headers_mut().insert(
        "x-inference-port",
        HeaderValue::from(app.args.listen.port()),
    );
    r
}

async fn inference(State(app): State<Shared>, uri: axum::http::Uri, body: Bytes) -> Response {
    let r = infer(&app, uri.path(), &body).await;
    identify(r, &app)
}

async fn infer(app: &App, path: &str, raw: &[u8]) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(raw) else {
        return error(
            StatusCode::BAD_REQUEST,
            "request body is not valid JSON",
            "BadRequestError",
        );
    };
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    let lora = match resolve_model(app, model) {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let chat = path.ends_with("/chat/completions");
    let tokens = match &app.tokenizer {
        Some(t) => {
            let ids = if chat {
                body.get("messages").map(|m| t.tokenize_chat(m))
            } else {
                match body.get("prompt") {
                    Some(Value::String(p)) => Some(t.tokenize_completion(p)),
                    Some(other) => Some(t.tokenize_completion(&other.to_string())),
                    None => None,
                }
            };
            match ids {
                Some(Ok(ids)) => ids,
                Some(Err(e)) => {
                    return error(StatusCode::BAD_REQUEST, &e.to_string(), "BadRequestError")
                }
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "missing prompt or messages",
                        "BadRequestError",
                    )
                }
            }
        }
        None => {
            let Some(text) = tokens::prompt_text(&body, chat) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "missing prompt or messages",
                    "BadRequestError",
                );
            };
            tokens::tokenize(&text)
        }
    };
    let max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .map_or(app.args.default_max_tokens, |n| n as usize)
        .max(1);
    let blocks_needed = (tokens.len() + max_tokens).div_ceil(app.args.block_size.max(1));
    if blocks_needed > app.args.num_gpu_blocks as usize {
        return error(
            StatusCode::BAD_REQUEST,
            "prompt and output exceed the KV cache",
            "BadRequestError",
        );
    }
    if tokens.len() + max_tokens > app.args.max_model_len {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the messages, {} in the completion).",
                app.args.max_model_len,
                tokens.len() + max_tokens,
                tokens.len(),
                max_tokens
            ),
            "BadRequestError",
        );
    }
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (tx, mut rx) = mpsc::unbounded_channel();
    if app
        .submit
        .send(Command::Run(Submission {
            tokens,
            lora,
            // vLLM hashes an empty salt as none; SGLang has no cache_salt (the format the
            // simulator publishes in says which server it plays).
            cache_salt: body
                .get("cache_salt")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && app.args.kv_events_format == kv_events::Format::Vllm)
                .map(str::to_owned),
            max_tokens,
            tx,
        }))
        .is_err()
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine stopped",
            "ServiceUnavailableError",
        );
    }
    let model = model.to_string();
    let object = if chat {
        "chat.completion"
    } else {
        "text_completion"
    };
    let usage = |p: usize, c: usize, cached: usize| {
        json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
               "prompt_tokens_details": {"cached_tokens": cached}})
    };
    if !stream {
        let mut text_out = String::new();
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::First | Event::Token => text_out.push_str(" tok"),
                Event::Done {
                    prompt_tokens,
                    completion_tokens,
                    cached_tokens,
                } => {
                    let choice = if chat {
                        json!({"index": 0, "message": {"role": "assistant", "content": text_out}, "finish_reason": "length"})
                    } else {
                        json!({"index": 0, "text": text_out, "finish_reason": "length"})
                    };
                    let v = json!({"id": "cmpl-sim", "object": object, "model": model, "choices": [choice],
                                   "usage": usage(prompt_tokens, completion_tokens, cached_tokens)});
                    return Json(v).into_response();
                }
            }
        }
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "engine dropped the request",
            "InternalServerError",
        );
    }
    let chunk_object = if chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let stream = async_stream(rx, move |ev| match ev {
        Event::First | Event::Token => {
            let choice = if chat {
                json!({"index": 0, "delta": {"content": " tok"}, "finish_reason": null})
            } else {
                json!({"index": 0, "text": " tok", "finish_reason": null})
            };
            vec![format!(
                "data: {}\n\n",
                json!({"id": "cmpl-sim", "object": chunk_object, "model": model, "choices": [choice]})
            )]
        }
        Event::Done {
            prompt_tokens,
            completion_tokens,
            cached_tokens,
        } => {
            let mut out = Vec::new();
            if include_usage {
                out.push(format!(
                    "data: {}\n\n",
                    json!({"id": "cmpl-sim", "object": chunk_object, "model": model, "choices": [],
                           "usage": usage(prompt_tokens, completion_tokens, cached_tokens)})
                ));
            }
            out.push("data: [DONE]\n\n".to_string());
            out
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    r
}

/// Turns engine events into SSE text chunks.
fn async_stream(
    rx: mpsc::UnboundedReceiver<Event>,
    f: impl Fn(Event) -> Vec<String> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<String, std::convert::Infallible>> {
    use futures_util::StreamExt;
    tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
        .flat_map(move |ev| futures_util::stream::iter(f(ev).into_iter().map(Ok)))
}

async fn embeddings(State(app): State<Shared>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = tokens::tokenize(&v.get("input").map(Value::to_string).unwrap_or_default()).len();
    let r = Json(json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 0.1, 0.2, 0.3]}],
                        "model": v.get("model"), "usage": {"prompt_tokens": n, "total_tokens": n}}))
    .into_response();
    identify(r, &app)
}

async fn models(State(app): State<Shared>) -> Response {
    let max = app.args.max_model_len;
    let mut data = vec![
        json!({"id": app.args.model, "object": "model", "owned_by": "model-sim", "max_model_len": max}),
    ];
    for l in &app.args.lora {
        data.push(
            json!({"id": l, "object": "model", "parent": app.args.model, "max_model_len": max}),
        );
    }
    identify(
        Json(json!({"object": "list", "data": data})).into_response(),
        &app,
    )
}

async fn metrics_page(State(app): State<Shared>) -> Response {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let info = PageInfo {
        model: &app.args.model,
        block_size: app.args.block_size,
        num_gpu_blocks: app.args.num_gpu_blocks,
        max_loras: app.args.max_loras,
        now_unix,
    };
    let text = match app.stats.lock() {
        Ok(s) => metrics::render(&s, &info, app.args.engine),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn set_fake(State(app): State<Shared>, Json(f): Json<FakeMetrics>) -> Response {
    if let Ok(mut s) = app.stats.lock() {
        s.fake = Some(f);
    }
    "ok".into_response()
}

async fn clear_fake(State(app): State<Shared>) -> Response {
    if let Ok(mut s) = app.stats.lock() {
        s.fake = None;
    }
    "ok".into_response()
}

/// vLLM's `POST /reset_prefix_cache`: drops the cached blocks (and says so on the KV-event
/// stream).
async fn reset_prefix_cache(State(app): State<Shared>) -> Response {
    if app.submit.send(Command::ResetPrefixCache).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine stopped",
            "ServiceUnavailableError",
        );
    }
    identify(StatusCode::OK.into_response(), &app)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = Args::parse();
    // Bind first: with port 0 the real address names the KV-event topic and the port header.
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bind {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    if let Ok(addr) = listener.local_addr() {
        args.listen = addr;
    }
    let mut stats = Stats::default();
    if let Some(f) = &args.fake_metrics {
        match serde_json::from_str::<FakeMetrics>(f) {
            Ok(f) => stats.fake = Some(f),
            Err(e) => {
                eprintln!("--fake-metrics: {e}");
                std::process::exit(2);
            }
        }
    }
    let stats = Arc::new(Mutex::new(stats));
    let cfg = EngineConfig {
        model: args.model.clone(),
        max_loras: args.max_loras,
        lora_load_ms: args.lora_load_ms,
        max_num_seqs: args.max_num_seqs,
        max_batched_tokens: args.max_num_batched_tokens,
        block_size: args.block_size,
        num_gpu_blocks: args.num_gpu_blocks,
        c0_ms: args.step_base_ms,
        c_pf_ms: args.prefill_ms_per_token,
        c_dec_ms: args.decode_ms_per_seq,
        c_ctx_ms: args.context_ms_per_token,
    };
    let tokenizer = match &args.tokenizer {
        Some(p) => match prompt_tokenizer::PromptTokenizer::load(p) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("--tokenizer: {e}");
                std::process::exit(2);
            }
        },
        None => None,
    };
    let events = match &args.kv_events_endpoint {
        Some(ep) => {
            let topic = format!("kv@{}@{}", args.listen, args.model);
            let cfg = kv_events::PublishConfig {
                endpoint: ep.clone(),
                topic,
                block_size: args.block_size,
                replay_endpoint: args.kv_events_replay_endpoint.clone(),
                buffer_steps: args.kv_events_buffer_steps,
                drop_one_in: args.kv_events_drop_one_in,
                format: args.kv_events_format,
            };
            match kv_events::start(cfg).await {
                Ok(tx) => Some(tx),
                Err(e) => {
                    eprintln!("--kv-events-endpoint: {e}");
                    std::process::exit(2);
                }
            }
        }
        None => None,
    };
    let (submit, rx) = mpsc::unbounded_channel();
    tokio::spawn(engine::run(cfg, rx, stats.clone(), events));
    let listen = args.listen;
    let body_limit = axum::extract::DefaultBodyLimit::max(args.max_body_bytes);
    let app = Arc::new(App {
        args,
        tokenizer,
        stats,
        submit,
    });
    let router = Router::new()
        .route("/v1/completions", post(inference))
        .route("/v1/chat/completions", post(inference))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/reset_prefix_cache", post(reset_prefix_cache))
        .route("/tokenize", post(tokenizer_api::tokenize))
        .route("/detokenize", post(tokenizer_api::detokenize))
        .route(
            "/v1/chat/completions/render",
            post(tokenizer_api::render_chat),
        )
        .route(
            "/v1/completions/render",
            post(tokenizer_api::render_completion),
        )
        // vLLM's liveness probe: 200 with an empty body (routers check it before registering).
        .route("/health", get(|| async { axum::http::StatusCode::OK }))
        .route("/metrics", get(metrics_page))
        .route("/admin/fake-metrics", post(set_fake).delete(clear_fake))
        .layer(body_limit)
        .with_state(app);
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {listen}");
        let _ = out.flush();
    }
    // Every response byte goes out at once (as vLLM's server does): without TCP_NODELAY the
    // first streamed chunk after the headers waits for the client's delayed ACK (~40 ms).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("TCP_NODELAY: {e}");
        }
    });
    if let Err(e) = axum::serve(listener, router).await {
        eprintln!("serve: {e}");
    }
}
