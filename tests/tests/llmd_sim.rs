//! The picker in real Envoy in front of llm-d-inference-sim, llm-d's vLLM simulator, instead of
//! this repo's servers: an independent implementation of vLLM's `/metrics` and API. Picks follow
//! the metrics it reports (`vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc`), and LoRA
//! affinity follows its `vllm:lora_requests_info`. The simulator is installed by
//! `scripts/peers-install.sh llm-d-inference-sim` (pinned, `go install`) when it is missing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use e2e::{free_port, repo_root, Backend, Env, EnvSpec};
use serde_json::{json, Value};

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

/// The simulator binary, installed on first use.
fn sim_bin() -> PathBuf {
    let bin = repo_root().join("target/peers/bin/llm-d-inference-sim");
    if !bin.exists() {
        let st = Command::new(repo_root().join("scripts/peers-install.sh"))
            .arg("llm-d-inference-sim")
            .status()
            .expect("run scripts/peers-install.sh");
        assert!(st.success(), "installing llm-d-inference-sim failed");
    }
    bin
}

/// One simulator reporting `fake` metrics (llm-d-inference-sim's `--fake-metrics`), serving the
/// base model and two LoRA adapters.
fn sim(name: &str, fake: Value) -> Backend {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = Command::new(sim_bin());
    cmd.env("POD_IP", "127.0.0.1").args([
        "--port",
        &port.to_string(),
        "--model",
        MODEL,
        "--force-dummy-tokenizer",
        "--zmq-endpoint",
        "",
        "--max-loras",
        "2",
        "--lora-modules",
        r#"{"name":"sql-lora","path":"/adapters/sql"}"#,
        r#"{"name":"chat-lora","path":"/adapters/chat"}"#,
        "--fake-metrics",
        &fake.to_string(),
    ]);
    Backend::spawn_command(name, addr, cmd)
}

/// Simulators named `busy` (long queue, full KV cache), `idle` and `half`, reporting those
/// loads, in the order `names` gives.
fn loaded_fleet(names: &[&str]) -> Vec<Backend> {
    names
        .iter()
        .map(|&name| {
            let load = match name {
                "busy" => {
                    json!({"waiting-requests": 12, "running-requests": 5, "kv-cache-usage": 0.9})
                }
                "idle" => {
                    json!({"waiting-requests": 0, "running-requests": 1, "kv-cache-usage": 0.1})
                }
                _ => json!({"waiting-requests": 6, "running-requests": 5, "kv-cache-usage": 0.5}),
            };
            sim(name, load)
        })
        .collect()
}

/// Envoy with the picker over `backends`; `picker` is merged into the picker JSON.
fn start(backends: Vec<Backend>, picker: Value) -> Env {
    Env::start_over(
        backends,
        EnvSpec {
            picker,
            ..EnvSpec::default()
        },
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[test]
fn picks_follow_the_simulators_metrics() {
    let backends = loaded_fleet(&["busy", "idle", "half"]);
    let idle = backends[1].addr.to_string();
    let env = start(backends, json!({}));
    for i in 0..12 {
        let r = env.complete(MODEL, &format!("question {i}: what is a prime?"), &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.json()["choices"].is_array(), "{r:?}");
        assert_eq!(
            r.picked(),
            idle,
            "request {i}: {:?}",
            r.header("x-endpoint-picker-debug")
        );
    }
    env.settle_stats();
    let picks = env.stat_sum("endpoint_picker.picks.");
    assert!(picks >= 12, "picks counted: {picks}");
}

#[test]
fn lora_affinity_follows_lora_requests_info() {
    // The same load everywhere; only the second server has sql-lora loaded (its
    // vllm:lora_requests_info, newest sample first by timestamp value).
    let t = now();
    let loras = |running: &str| {
        json!([{"running": "", "waiting": "", "timestamp": t - 5},
               {"running": running, "waiting": "", "timestamp": t}])
    };
    let fake = |running: &str| json!({"waiting-requests": 1, "running-requests": 1, "kv-cache-usage": 0.2, "loras": loras(running)});
    let backends = vec![
        sim("a", fake("chat-lora")),
        sim("b", fake("sql-lora")),
        sim("c", fake("")),
    ];
    let with_sql = backends[1].addr.to_string();
    let with_chat = backends[0].addr.to_string();
    let env = start(
        backends,
        json!({
            "plugins": [{"type": "queue-scorer"}, {"type": "kv-cache-utilization-scorer"},
                        {"type": "lora-affinity-scorer"}],
            "schedulingProfiles": [{"name": "default", "plugins": [
                {"pluginRef": "queue-scorer"}, {"pluginRef": "kv-cache-utilization-scorer"},
                {"pluginRef": "lora-affinity-scorer"}]}]
        }),
    );
    for i in 0..8 {
        let r = env.complete("sql-lora", &format!("select {i}"), &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["model"], "sql-lora", "{r:?}");
        assert_eq!(
            r.picked(),
            with_sql,
            "request {i}: {:?}",
            r.header("x-endpoint-picker-debug")
        );
    }
    let r = env.complete("chat-lora", "hello", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.picked(),
        with_chat,
        "{:?}",
        r.header("x-endpoint-picker-debug")
    );
}

/// One gRPC call over HTTP/2 (prior knowledge, no TLS): the response headers, the messages of
/// the body (uncompressed frames) and the trailers (empty for a trailers-only reply, whose
/// `grpc-status` is in the headers).
struct GrpcResp {
    headers: hyper::HeaderMap,
    messages: Vec<Vec<u8>>,
    trailers: hyper::HeaderMap,
}

impl GrpcResp {
    /// `grpc-status`, from the trailers or (trailers-only) the headers.
    fn grpc_status(&self) -> Option<&str> {
        self.trailers
            .get("grpc-status")
            .or_else(|| self.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn picked(&self) -> &str {
        self.header("x-endpoint-picker-debug")
            .strip_prefix("picked=")
            .and_then(|d| d.split(' ').next())
            .unwrap_or("")
    }
}

fn grpc_call(listen: SocketAddr, method: &str, message: &[u8]) -> GrpcResp {
    use http_body_util::BodyExt;
    let frame = scheduler_core::parse::protobuf::grpc_frame(message);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(listen).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::post(format!(
            "http://{listen}/vllm.grpc.engine.VllmEngine/{method}"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-endpoint-picker-debug", "1")
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
        .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "gRPC answers are HTTP 200: {resp:?}");
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let bytes = collected.to_bytes();
        let mut messages = Vec::new();
        let mut rest = &bytes[..];
        while rest.len() >= 5 {
            let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
            assert_eq!(rest[0], 0, "uncompressed");
            messages.push(rest[5..5 + len].to_vec());
            rest = &rest[5 + len..];
        }
        assert!(rest.is_empty(), "whole frames");
        GrpcResp {
            headers: parts.headers,
            messages,
            trailers,
        }
    })
}

/// A `GenerateRequest` with `text`, `max_tokens` and `stream`.
fn generate_request(id: &str, text: &str, max_tokens: u64, stream: bool) -> Vec<u8> {
    use scheduler_core::parse::protobuf::{put_bytes, put_uint};
    let mut sampling = Vec::new();
    put_uint(&mut sampling, 8, max_tokens);
    let mut m = Vec::new();
    put_bytes(&mut m, 1, id.as_bytes());
    put_bytes(&mut m, 3, text.as_bytes());
    put_bytes(&mut m, 4, &sampling);
    put_uint(&mut m, 5, u64::from(stream));
    m
}

/// vLLM's gRPC API through Envoy (`pool.appProtocol: kubernetes.io/h2c`, `vllmgrpc-parser`):
/// llm-d-inference-sim serves `VllmEngine/Generate` over HTTP/2 and its metrics over HTTP/1.1 on
/// the same port. Picks follow the metrics; the streamed and unary responses come back intact;
/// their token usage reaches the picker's metrics; a malformed request gets a gRPC error, not a
/// JSON body.
#[test]
fn vllm_grpc_requests_are_scheduled_and_answered_in_grpc() {
    use scheduler_core::parse::protobuf::{fields, Value as Field};
    let backends = loaded_fleet(&["busy", "idle"]);
    let idle = backends[1].addr.to_string();
    let env = Env::start_over(
        backends,
        EnvSpec {
            pool: json!({"appProtocol": "kubernetes.io/h2c"}),
            picker: json!({
                "plugins": [{"type": "vllmgrpc-parser"}, {"type": "queue-scorer"},
                            {"type": "kv-cache-utilization-scorer"}, {"type": "max-score-picker"}],
                "requestHandler": {"parsers": [{"pluginRef": "vllmgrpc-parser"}]},
                "schedulingProfiles": [{"name": "default", "plugins": [
                    {"pluginRef": "queue-scorer"}, {"pluginRef": "kv-cache-utilization-scorer"},
                    {"pluginRef": "max-score-picker"}]}]
            }),
            ..EnvSpec::default()
        },
    );
    // Streaming: chunks of token ids, then the final message, status OK.
    let r = grpc_call(
        env.listen,
        "Generate",
        &generate_request("s-1", "What is a prime number?", 4, true),
    );
    assert_eq!(
        r.grpc_status(),
        Some("0"),
        "{:?} {:?}",
        r.headers,
        r.trailers
    );
    assert_eq!(r.picked(), idle, "{:?}", r.headers);
    assert!(
        r.messages.len() >= 2,
        "chunks and the last message: {}",
        r.messages.len()
    );
    // Unary: one GenerateComplete with its counts.
    let mut prompt_tokens = 0;
    for i in 0..4 {
        let r = grpc_call(
            env.listen,
            "Generate",
            &generate_request(
                &format!("u-{i}"),
                &format!("Question {i}: why is the sky blue?"),
                3,
                false,
            ),
        );
        assert_eq!(
            r.grpc_status(),
            Some("0"),
            "{:?} {:?}",
            r.headers,
            r.trailers
        );
        assert_eq!(r.picked(), idle);
        assert_eq!(r.messages.len(), 1);
        let complete = fields(&r.messages[0])
            .find_map(|f| match f.unwrap() {
                (2, Field::Bytes(b)) => Some(b.to_vec()),
                _ => None,
            })
            .expect("a GenerateComplete");
        for f in fields(&complete) {
            if let (3, Field::Varint(v)) = f.unwrap() {
                prompt_tokens += v;
            }
        }
    }
    assert!(prompt_tokens > 0);
    // The picker read the same usage from the gRPC frames it forwarded (model name empty: the
    // messages carry none).
    let mut seen = 0.0;
    for _ in 0..50 {
        seen = env
            .prometheus()
            .lines()
            // The native build's series carry Envoy's `envoy_dynamicmodulescustom_` prefix.
            .filter(|l| !l.starts_with('#') && l.contains("inference_objective_input_tokens_sum"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if seen >= prompt_tokens as f64 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        seen >= prompt_tokens as f64,
        "input tokens recorded {seen}, the unary responses alone reported {prompt_tokens}: {}",
        env.prometheus()
            .lines()
            .filter(|l| l.contains("tokens") || l.contains("request_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // A malformed message: a gRPC error (trailers-only), with our message, no JSON body.
    let r = grpc_call(env.listen, "Generate", &[0x1a, 40, b'x']);
    let status = r.grpc_status().unwrap_or("");
    assert_eq!(status, "3", "INVALID_ARGUMENT: {:?}", r.headers);
    assert_eq!(
        r.headers.get_all("grpc-status").iter().count(),
        1,
        "{:?}",
        r.headers
    );
    assert!(
        r.header("grpc-message")
            .contains("invalid%20vLLM%20gRPC%20request")
            || r.header("grpc-message")
                .contains("invalid vLLM gRPC request"),
        "{:?}",
        r.headers
    );
    assert!(
        r.header("content-type").starts_with("application/grpc"),
        "{:?}",
        r.headers
    );
    assert!(r.messages.is_empty());
    eprintln!("malformed request: grpc-status {status}");
}
