//! A model server for end-to-end tests: OpenAI-shaped responses (JSON and SSE with usage), a
//! vLLM V1 `/metrics` page whose values are pinned through `POST /admin/state`, and switches that
//! make `/metrics` or inference misbehave. Every response names the server
//! (`x-inference-pod`, `x-inference-port`) and echoes the routing headers it received
//! (`x-seen-destination`, `x-seen-prefiller`, `x-seen-encoders`, `x-seen-kv-source`) so tests can
//! see what Envoy forwarded. `POST /generate` answers in SGLang's shape (usage in `meta_info`).
//!
//! Not a performance model: the simulator of issue 4 is. This one answers at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use clap::Parser;
use serde::Deserialize;
use tokio::sync::Mutex;

#[derive(Parser)]
struct Args {
    /// Listen address (port 0: the kernel picks one; the bound address is printed first).
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
    /// Name reported in x-inference-pod.
    #[arg(long, default_value = "pod")]
    name: String,
    /// Also serve an NVIDIA DCGM exporter page (`/metrics`, `DCGM_FI_DEV_GPU_UTIL` from the
    /// state's `gpu_util`, one sample per GPU) on this address, as a sidecar exporter would.
    #[arg(long)]
    dcgm_listen: Option<SocketAddr>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
struct FakeState {
    waiting: u32,
    running: u32,
    kv: f64,
    running_loras: Vec<String>,
    waiting_loras: Vec<String>,
    max_lora: u32,
    /// "ok" | "hang" | "500" | "garbage" | "huge", the broken responses of [`broken_metrics`]
    /// ("truncated", "cut-chunk", "stall-body", "500-cut", "headers-only"), or a non-finite
    /// value of `vllm:num_requests_waiting` ("nan", "inf", "neg-inf", "negative")
    metrics: String,
    /// "ok" | "500"
    inference: String,
    /// Milliseconds before an inference response starts (holds the request in flight).
    delay_ms: u64,
    /// Milliseconds between the events of a streamed chat/completions response (0: all at
    /// once), so a test can act while a response is under way; a request's
    /// `x-fake-stream-gap-ms` header overrides it for that request.
    stream_gap_ms: u64,
    /// GPU utilisation (percent) of each GPU on the DCGM page.
    gpu_util: Vec<f64>,
    /// Model ids `GET /v1/models` lists (base model first, then LoRA adapters).
    models: Vec<String>,
    /// Reported as `usage.prompt_tokens_details.cached_tokens` of OpenAI-shaped responses
    /// (left out when unset, as vLLM does without `--enable-prompt-tokens-details`).
    cached_tokens: Option<u64>,
    /// `num_gpu_blocks` of `vllm:cache_config_info` (the KV-cache blocks this server says it
    /// has; a picker with `autoTune` takes it as the endpoint's prefix-index capacity).
    num_gpu_blocks: u64,
}

impl Default for FakeState {
    fn default() -> Self {
        FakeState {
            waiting: 0,
            running: 0,
            kv: 0.1,
            running_loras: vec![],
            waiting_loras: vec![],
            max_lora: 0,
            metrics: "ok".into(),
            inference: "ok".into(),
            delay_ms: 0,
            stream_gap_ms: 0,
            num_gpu_blocks: 27215,
            gpu_util: vec![10.0, 20.0],
            models: vec!["meta-llama/Llama-3.1-8B-Instruct".into()],
            cached_tokens: None,
        }
    }
}

struct App {
    name: String,
    port: u16,
    state: Mutex<FakeState>,
}

type Shared = Arc<App>;

/// Labels of the per-model series.
const MODEL_LABELS: &str = r#"engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct""#;

fn metrics_text(s: &FakeState) -> String {
    let m = MODEL_LABELS;
    format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{{m}}} {}.0\n\
         # HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{{m}}} {}.0\n\
         # HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n\
         # TYPE vllm:kv_cache_usage_perc gauge\n\
         vllm:kv_cache_usage_perc{{{m}}} {}\n\
         # HELP vllm:lora_requests_info Running stats on lora requests.\n\
         # TYPE vllm:lora_requests_info gauge\n\
         vllm:lora_requests_info{{max_lora=\"{}\",running_lora_adapters=\"{}\",waiting_lora_adapters=\"{}\"}} 1.7395575723949368e+09\n\
         # HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n\
         # TYPE vllm:cache_config_info gauge\n\
         vllm:cache_config_info{{block_size=\"16\",engine=\"0\",num_gpu_blocks=\"{}\"}} 1.0\n\
         # HELP llm_d_epp_average_kv_cache_utilization Pool average KV-cache utilisation (as a cluster's picker exports it).\n\
         # TYPE llm_d_epp_average_kv_cache_utilization gauge\n\
         llm_d_epp_average_kv_cache_utilization {}\n\
         # HELP llm_d_epp_average_queue_size Pool average queue size.\n\
         # TYPE llm_d_epp_average_queue_size gauge\n\
         llm_d_epp_average_queue_size {}\n",
        s.running,
        s.waiting,
        s.kv,
        s.max_lora,
        s.running_loras.join(","),
        s.waiting_loras.join(","),
        s.num_gpu_blocks,
        s.kv,
        s.waiting,
    )
}

/// The DCGM exporter's page: one `DCGM_FI_DEV_GPU_UTIL` sample per GPU.
async fn dcgm_metrics(State(app): State<Shared>) -> Response {
    let s = app.state.lock().await.clone();
    let mut page = String::from(
        "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n",
    );
    for (i, u) in s.gpu_util.iter().enumerate() {
        page.push_str(&format!(
            "DCGM_FI_DEV_GPU_UTIL{{gpu=\"{i}\",UUID=\"GPU-{i}\",pod=\"{}\"}} {u}\n",
            app.name
        ));
    }
    (StatusCode::OK, page).into_response()
}

async fn metrics(State(app): State<Shared>) -> Response {
    let s = app.state.lock().await.clone();
    match s.metrics.as_str() {
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        "500" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "garbage" => (StatusCode::OK, "<html><body>not metrics</body></html>").into_response(),
        "huge" => (
            StatusCode::OK,
            format!("{}{}", metrics_text(&s), "x 1\n".repeat(5_000_000)),
        )
            .into_response(),
        "truncated" | "cut-chunk" | "stall-body" | "500-cut" | "headers-only" => {
            broken_metrics(&s.metrics, metrics_text(&s))
        }
        "nan" | "inf" | "neg-inf" | "negative" => {
            let v = match s.metrics.as_str() {
                "nan" => "NaN",
                "inf" => "+Inf",
                "neg-inf" => "-Inf",
                _ => "-3",
            };
            let text = metrics_text(&s).replace(
                &format!(
                    "vllm:num_requests_waiting{{{MODEL_LABELS}}} {}.0",
                    s.waiting
                ),
                &format!("vllm:num_requests_waiting{{{MODEL_LABELS}}} {v}"),
            );
            ([("content-type", "text/plain; version=0.0.4")], text).into_response()
        }
        _ => (
            [("content-type", "text/plain; version=0.0.4")],
            metrics_text(&s),
        )
            .into_response(),
    }
}

/// A `/metrics` response that breaks after its headers were sent, as a server killed or stuck
/// mid-response does:
/// - `truncated`: `Content-Length` of the whole page, half the page, then the connection closes;
/// - `cut-chunk`: chunked encoding, one chunk, then the connection closes without the last chunk;
/// - `stall-body`: headers and half the page, then nothing for an hour (past any scrape timeout);
/// - `500-cut`: a 500 with a `Content-Length` it never delivers;
/// - `headers-only`: a 200 with a `Content-Length`, then the connection closes with no body.
fn broken_metrics(mode: &str, page: String) -> Response {
    let half = page.len() / 2;
    let first = page.get(..half).unwrap_or("").to_string();
    let status = if mode == "500-cut" {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let (chunk, then): (Option<String>, &str) = match mode {
        "headers-only" | "500-cut" => (None, "close"),
        "stall-body" => (Some(first), "stall"),
        _ => (Some(first), "close"),
    };
    let stall = then == "stall";
    let stream = futures_util::stream::unfold(0u8, move |step| {
        let chunk = chunk.clone();
        async move {
            match step {
                0 => {
                    // Let hyper flush the headers on their own first.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    match chunk {
                        Some(c) => Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(c)), 1)),
                        None => Some((Err(std::io::Error::other("cut")), 2)),
                    }
                }
                1 if stall => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    None
                }
                1 => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Some((Err(std::io::Error::other("cut")), 2))
                }
                _ => None,
            }
        }
    });
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "text/plain; version=0.0.4");
    if mode != "cut-chunk" {
        b = b.header("content-length", page.len().to_string());
    }
    b.body(Body::from_stream(stream)).unwrap_or_default()
}

async fn admin_state(State(app): State<Shared>, Json(new): Json<FakeState>) -> impl IntoResponse {
    *app.state.lock().await = new;
    "ok"
}

fn seen(h: &HeaderMap, name: &str) -> String {
    h.get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join("|")
}

async fn inference(
    State(app): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let s = app.state.lock().await.clone();
    // One request may ask for its own gap (a long stream beside short ones).
    let stream_gap_ms = headers
        .get("x-fake-stream-gap-ms")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(s.stream_gap_ms);
    if s.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(s.delay_ms)).await;
    }
    let ident = [
        ("x-inference-pod", app.name.clone()),
        ("x-inference-port", app.port.to_string()),
        (
            "x-seen-destination",
            seen(&headers, "x-gateway-destination-endpoint"),
        ),
        ("x-seen-prefiller", seen(&headers, "x-prefiller-host-port")),
        ("x-seen-encoders", seen(&headers, "x-encoder-hosts-ports")),
        (
            "x-seen-kv-source",
            seen(&headers, "x-kv-cache-source-host-port"),
        ),
        ("x-seen-body-bytes", body.len().to_string()),
    ];
    if s.inference == "500" {
        let mut r = (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":{"message":"engine failed"}}"#,
        )
            .into_response();
        for (k, v) in ident {
            r.headers_mut()
                .insert(k, v.parse().unwrap_or_else(|_| "x".parse().unwrap()));
        }
        return r;
    }
    let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let stream = req.get("stream").and_then(|v| v.as_bool()).unwrap_or(false);
    let prompt_tokens = (body.len() / 4).max(1);
    let mut usage = serde_json::json!({"prompt_tokens": prompt_tokens, "completion_tokens": 3, "total_tokens": prompt_tokens + 3});
    if let Some(cached) = s.cached_tokens {
        usage["prompt_tokens_details"] = serde_json::json!({ "cached_tokens": cached });
    }
    let mut resp = if uri.path() == "/generate" {
        sglang_generate(&req, stream)
    } else if stream {
        let mut sse = String::new();
        for t in ["Hello", " from", " fake"] {
            sse.push_str(&format!(
                "data: {}\n\n",
                serde_json::json!({"choices": [{"index": 0, "delta": {"content": t}}]})
            ));
        }
        sse.push_str(&format!(
            "data: {}\n\n",
            serde_json::json!({"choices": [], "usage": usage})
        ));
        sse.push_str("data: [DONE]\n\n");
        let body = if stream_gap_ms == 0 {
            Body::from(sse)
        } else {
            use futures_util::StreamExt;
            let gap = Duration::from_millis(stream_gap_ms);
            let events: Vec<String> = sse.split_inclusive("\n\n").map(String::from).collect();
            Body::from_stream(
                futures_util::stream::iter(events.into_iter().enumerate()).then(
                    move |(i, e)| async move {
                        if i > 0 {
                            tokio::time::sleep(gap).await;
                        }
                        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(e))
                    },
                ),
            )
        };
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .unwrap_or_default()
    } else {
        let v = serde_json::json!({
            "id": "cmpl-fake", "object": "text_completion", "model": req.get("model"),
            "choices": [{"index": 0, "text": "Hello from fake", "finish_reason": "stop"}],
            "usage": usage,
        });
        Json(v).into_response()
    };
    for (k, v) in ident {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// SGLang's `/generate` answer: text and `meta_info` (usage there, not under `usage`);
/// streamed, each chunk carries the running totals and `finish_reason` is null until the last.
/// prompt_tokens = the number of `input_ids` (or the text's bytes / 4), cached_tokens = 2.
fn sglang_generate(req: &serde_json::Value, stream: bool) -> Response {
    let prompt_tokens = match req.get("input_ids").and_then(|v| v.as_array()) {
        Some(ids) => ids.len(),
        None => (req.get("text").and_then(|t| t.as_str()).unwrap_or("").len() / 4).max(1),
    };
    let meta = |done: bool, completion: usize| {
        serde_json::json!({"id": "gen-fake", "prompt_tokens": prompt_tokens,
            "completion_tokens": completion, "cached_tokens": 2,
            "finish_reason": if done { serde_json::json!({"type": "stop"}) } else { serde_json::Value::Null }})
    };
    if !stream {
        return Json(serde_json::json!({"text": "Hello from fake", "output_ids": [1, 2, 3], "meta_info": meta(true, 3)}))
            .into_response();
    }
    let mut sse = String::new();
    for (i, t) in ["Hello", "Hello from", "Hello from fake"]
        .iter()
        .enumerate()
    {
        let chunk = serde_json::json!({"text": t, "meta_info": meta(i == 2, i + 1)});
        sse.push_str(&format!("data: {chunk}\n\n"));
    }
    sse.push_str("data: [DONE]\n\n");
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(sse))
        .unwrap_or_default()
}

async fn models(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let models = app.state.lock().await.models.clone();
    let base = models.first().cloned().unwrap_or_default();
    let data: Vec<serde_json::Value> = models
        .iter()
        .enumerate()
        .map(|(i, id)| {
            if i == 0 {
                serde_json::json!({"id": id, "object": "model"})
            } else {
                serde_json::json!({"id": id, "object": "model", "parent": base})
            }
        })
        .collect();
    let mut r = Json(serde_json::json!({"object": "list", "data": data})).into_response();
    if let Ok(v) = app.name.parse() {
        r.headers_mut().insert("x-inference-pod", v);
    }
    // The routing headers that reached this server, as `inference` reports them.
    for (k, name) in [
        ("x-seen-destination", "x-gateway-destination-endpoint"),
        ("x-seen-prefiller", "x-prefiller-host-port"),
        ("x-seen-encoders", "x-encoder-hosts-ports"),
        ("x-seen-kv-source", "x-kv-cache-source-host-port"),
    ] {
        if let Ok(v) = seen(&headers, name).parse() {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let app = Arc::new(App {
        name: args.name,
        port: args.listen.port(),
        state: Mutex::new(FakeState::default()),
    });
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/admin/state", post(admin_state))
        .route("/v1/models", get(models))
        // vLLM's liveness probe: 200 with an empty body (routers check it before registering).
        .route("/health", get(|| async { axum::http::StatusCode::OK }))
        .route("/v1/completions", post(inference))
        .route("/v1/chat/completions", post(inference))
        .route("/v1/embeddings", post(inference))
        // SGLang's native API.
        .route("/generate", post(inference))
        // Above the picker's 4 MiB default body limit, so the picker's limit is what is tested.
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
        .with_state(app.clone());
    if let Some(addr) = args.dcgm_listen {
        let dcgm = Router::new()
            .route("/metrics", get(dcgm_metrics))
            .with_state(app.clone());
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(l, dcgm).await {
                        eprintln!("dcgm serve: {e}");
                    }
                });
            }
            Err(e) => {
                eprintln!("bind {addr}: {e}");
                std::process::exit(1);
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bind {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    // The bound address on the first line of standard output: with `--listen 127.0.0.1:0` the
    // kernel picks the port, and the test harness learns it from here.
    match listener.local_addr() {
        Ok(a) => println!("listening on {a}"),
        Err(e) => {
            eprintln!("local address: {e}");
            std::process::exit(1);
        }
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
