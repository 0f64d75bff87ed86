//! The simulator over real HTTP: its `/metrics` parses with scheduler-core and carries the
//! documented names; a repeated prompt hits the prefix cache and gets a lower TTFT; a full KV
//! cache makes requests wait; adapters beyond `--max-loras` wait; metrics can be pinned.
//! Plus the load generator's measured TTFT/TPOT against the simulator's configured timing.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scheduler_core::parse::engine::MetricsExtractor;
use scheduler_core::parse::prometheus::{samples, validate};
use serde_json::{json, Value};

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

struct Sim {
    addr: SocketAddr,
    child: Child,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts model-sim on a port of its own choosing (`--listen 127.0.0.1:0`) and reads the address
/// it bound from its first line of output: a port picked here and released first could be taken
/// by a parallel test's server or client before the simulator binds it.
fn sim(args: &[&str]) -> Sim {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_model-sim"))
        .args(["--listen", "127.0.0.1:0", "--name", "sim-test"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("simulator did not start: {line:?}"))
        .parse()
        .unwrap();
    Sim { addr, child }
}

impl Sim {
    fn post(&self, path: &str, body: Value) -> (u16, Value, Duration) {
        let start = Instant::now();
        let r = ureq::post(&format!("http://{}{path}", self.addr)).send_string(&body.to_string());
        let took = start.elapsed();
        match r {
            Ok(r) => (r.status(), json_of(r), took),
            Err(ureq::Error::Status(s, r)) => (s, json_of(r), took),
            Err(e) => panic!("{e}"),
        }
    }
    fn metrics(&self) -> String {
        ureq::get(&format!("http://{}/metrics", self.addr))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    }
    fn metric(&self, name: &str) -> f64 {
        let text = self.metrics();
        samples(&text)
            .map(Result::unwrap)
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

fn json_of(r: ureq::Response) -> Value {
    r.into_string()
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

fn chat(system: &str, q: &str, max_tokens: u32) -> Value {
    json!({"model": MODEL, "max_tokens": max_tokens,
           "messages": [{"role": "system", "content": system}, {"role": "user", "content": q}]})
}

#[test]
fn metrics_parse_with_scheduler_core_and_carry_vllm_names() {
    let s = sim(&[]);
    s.post(
        "/v1/completions",
        json!({"model": MODEL, "prompt": "hello", "max_tokens": 2}),
    );
    let text = s.metrics();
    assert!(validate(&text).unwrap() > 20);
    for name in [
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "vllm:lora_requests_info",
        "vllm:cache_config_info",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    for smp in samples(&text)
        .map(Result::unwrap)
        .filter(|x| x.name.starts_with("vllm:num_requests"))
    {
        assert_eq!(smp.label("model_name").as_deref(), Some(MODEL));
    }
    let x = MetricsExtractor::default();
    let m = x.extract(x.engine("vllm").unwrap(), &text).unwrap();
    assert_eq!(
        m.fields_found, 5,
        "queue, running, kv, LoRA and cache info all read"
    );
    assert_eq!(
        (
            m.metrics.cache_block_size_tokens,
            m.metrics.cache_num_blocks
        ),
        (16, 27215)
    );

    let sg = sim(&["--engine", "sglang"]);
    let text = sg.metrics();
    let x = x.extract(x.engine("sglang").unwrap(), &text).unwrap();
    assert!(
        x.fields_found >= 3,
        "SGLang names read with the sglang mapping"
    );
    assert!(text.contains("sglang:num_queue_reqs"));
}

#[test]
fn repeated_prompt_hits_the_prefix_cache_with_lower_ttft() {
    let s = sim(&[]);
    let system = "You answer questions about invoices and refunds. ".repeat(160); // ~2000 tokens
    let (st, first, cold) = s.post("/v1/chat/completions", chat(&system, "first", 1));
    assert_eq!(st, 200);
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let (_, second, warm) = s.post("/v1/chat/completions", chat(&system, "second", 1));
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(cached >= 1900, "{second}");
    // Cold: ~2000 tokens × 0.2 ms = ~400 ms of prefill; warm: a few blocks.
    assert!(warm < cold / 3, "cold {cold:?}, warm {warm:?}");
    assert!(s.metric("vllm:prefix_cache_hits_total") >= cached as f64);
}

#[test]
fn full_kv_cache_makes_requests_wait() {
    // 100 blocks × 16 tokens; each request needs ~63 blocks for its prompt: one at a time.
    let s = sim(&["--num-gpu-blocks", "100"]);
    let addr = s.addr;
    let workers: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let body = chat(
                    &format!("{i} {}", "distinct words here ".repeat(200)),
                    "q",
                    200,
                );
                ureq::post(&format!("http://{addr}/v1/chat/completions"))
                    .send_string(&body.to_string())
                    .map(|r| r.status())
                    .ok()
            })
        })
        .collect();
    let mut saw_waiting = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !saw_waiting {
        saw_waiting = s.metric("vllm:num_requests_waiting") >= 1.0
            && s.metric("vllm:kv_cache_usage_perc") > 0.5;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(saw_waiting, "requests waited while the KV cache was full");
    for w in workers {
        assert_eq!(w.join().unwrap(), Some(200));
    }
}

#[test]
fn adapters_beyond_max_loras_wait() {
    let s = sim(&["--lora", "sql-lora,tweet-lora", "--max-loras", "1"]);
    let addr = s.addr;
    let long = std::thread::spawn(move || {
        let b = json!({"model": "sql-lora", "prompt": "long generation", "max_tokens": 300});
        ureq::post(&format!("http://{addr}/v1/completions"))
            .send_string(&b.to_string())
            .map(|r| r.status())
            .ok()
    });
    std::thread::sleep(Duration::from_millis(200));
    let second = std::thread::spawn(move || {
        let b = json!({"model": "tweet-lora", "prompt": "short", "max_tokens": 2});
        let start = Instant::now();
        let st = ureq::post(&format!("http://{addr}/v1/completions"))
            .send_string(&b.to_string())
            .map(|r| r.status())
            .ok();
        (st, start.elapsed())
    });
    // Poll rather than sleep a fixed time: on a loaded machine the second request may need a
    // moment to reach the engine (the first runs for over a second either way).
    let deadline = Instant::now() + Duration::from_secs(3);
    let (running, waiting, text) = loop {
        let text = s.metrics();
        let info = samples(&text)
            .map(Result::unwrap)
            .find(|x| x.name == "vllm:lora_requests_info")
            .unwrap();
        let running = info.label("running_lora_adapters").map(|v| v.into_owned());
        let waiting = info.label("waiting_lora_adapters").map(|v| v.into_owned());
        let seen =
            running.as_deref() == Some("sql-lora") && waiting.as_deref() == Some("tweet-lora");
        if seen || Instant::now() > deadline {
            break (running, waiting, text);
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(running.as_deref(), Some("sql-lora"), "{text}");
    assert_eq!(waiting.as_deref(), Some("tweet-lora"), "{text}");
    assert_eq!(long.join().unwrap(), Some(200));
    let (st, took) = second.join().unwrap();
    assert_eq!(st, Some(200));
    assert!(
        took > Duration::from_millis(800),
        "tweet-lora waited for sql-lora to finish ({took:?})"
    );
    // Unknown model or adapter: 404 like vLLM.
    assert_eq!(
        s.post("/v1/completions", json!({"model": "nope", "prompt": "x"}))
            .0,
        404
    );
}

#[test]
fn fake_metrics_pin_values() {
    let s = sim(&[
        "--fake-metrics",
        r#"{"waiting-requests": 7, "kv-cache-usage": 0.5, "running-loras": ["a"]}"#,
    ]);
    assert_eq!(s.metric("vllm:num_requests_waiting"), 7.0);
    ureq::post(&format!("http://{}/admin/fake-metrics", s.addr))
        .set("content-type", "application/json")
        .send_string(r#"{"waiting-requests": 2, "running-requests": 3}"#)
        .unwrap();
    assert_eq!(s.metric("vllm:num_requests_waiting"), 2.0);
    assert_eq!(s.metric("vllm:num_requests_running"), 3.0);
    ureq::delete(&format!("http://{}/admin/fake-metrics", s.addr))
        .call()
        .unwrap();
    assert_eq!(s.metric("vllm:num_requests_waiting"), 0.0);
}

fn loadgen_bin() -> PathBuf {
    // Build the load generator next to this test binary (same profile and target dir).
    let ok = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "loadgen"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "cargo build -p loadgen");
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("loadgen")
}

#[test]
fn loadgen_measures_the_simulators_configured_timing() {
    // Every step takes 20 ms (no per-token costs): TTFT ≈ 1 step, TPOT ≈ 1 step.
    let s = sim(&[
        "--step-base-ms",
        "20",
        "--prefill-ms-per-token",
        "0",
        "--decode-ms-per-seq",
        "0",
        "--context-ms-per-token",
        "0",
    ]);
    let out = std::env::temp_dir().join(format!("loadgen-timing-{}.json", s.addr.port()));
    let status = Command::new(loadgen_bin())
        .args([
            "run",
            "--target",
            &format!("http://{}", s.addr),
            "--workload",
            "random",
            "--min-tokens",
            "8",
            "--max-tokens",
            "64",
        ])
        .args([
            "--output-tokens",
            "10",
            "--qps",
            "4",
            "--duration",
            "3",
            "--quiet",
            "--json",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["requests"].as_u64().unwrap() >= 5, "{v}");
    let ttft = v["ttft"]["p50"].as_f64().unwrap();
    let tpot = v["tpot"]["p50"].as_f64().unwrap();
    // Stated tolerance: one 20 ms step (minus 10 % for timer rounding) plus up to 40 ms (TTFT:
    // arrival to the first step boundary, HTTP) or 25 ms (TPOT: timer wake-ups) of overhead
    // when other tests share the 2 cores.
    assert!(
        (0.018..0.060).contains(&ttft),
        "TTFT p50 {ttft} s, configured one 20 ms step"
    );
    assert!(
        (0.018..0.045).contains(&tpot),
        "TPOT p50 {tpot} s, configured 20 ms per step"
    );
}

#[test]
fn bodies_up_to_the_pickers_limit_are_accepted() {
    // A KV cache and a model length that hold ~1 M prompt tokens, and free prefill so the test
    // stays fast.
    let s = sim(&[
        "--num-gpu-blocks",
        "100000",
        "--prefill-ms-per-token",
        "0",
        "--max-model-len",
        "2000000",
    ]);
    // 4 MiB of prompt: the picker's default bodyLimitBytes, past axum's 2 MiB default.
    let prompt = "word ".repeat((4 << 20) / 5);
    let (status, v, _) = s.post(
        "/v1/completions",
        json!({"model": MODEL, "prompt": prompt, "max_tokens": 1}),
    );
    assert_eq!(status, 200, "{v}");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 1_000_000 / 4);
}

#[test]
fn a_client_that_goes_away_is_aborted_like_vllm_does() {
    use std::io::{Read, Write};
    // A slow engine: 1,000 tokens to generate would take 10 s at 10 ms a step.
    let s = sim(&["--step-base-ms", "10"]);
    let body =
        json!({"model": MODEL, "prompt": "hello", "max_tokens": 1000, "stream": true}).to_string();
    let mut c = TcpStream::connect(s.addr).unwrap();
    write!(
        c,
        "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let _ = c.read(&mut buf).unwrap(); // the stream has started
    assert_eq!(s.metric("vllm:num_requests_running"), 1.0);
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(3);
    while s.metric("vllm:num_requests_running") > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the request kept running after its client left"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = s.metrics();
    let aborted: f64 = samples(&text)
        .map(Result::unwrap)
        .filter(|x| {
            x.name == "vllm:request_success_total"
                && x.label("finished_reason").as_deref() == Some("abort")
        })
        .map(|x| x.value)
        .sum();
    assert_eq!(aborted, 1.0);
}

#[test]
fn health_answers_like_vllm() {
    let s = sim(&[]);
    let r = ureq::get(&format!("http://{}/health", s.addr))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.into_string().unwrap(), "");
}

#[test]
fn tokenizer_endpoints_answer_like_vllm() {
    let s = sim(&["--lora", "sql-lora", "--max-model-len", "64"]);
    let messages = json!([{"role": "system", "content": "You are terse."},
                          {"role": "user", "content": "Name a prime."}]);

    // /tokenize: chat messages through the template, or a plain prompt.
    let (st, chat, _) = s.post("/tokenize", json!({"model": MODEL, "messages": messages}));
    assert_eq!(st, 200, "{chat}");
    let ids: Vec<u64> = serde_json::from_value(chat["tokens"].clone()).unwrap();
    assert_eq!(chat["count"], ids.len());
    assert_eq!(chat["max_model_len"], 64);
    let text = "system: You are terse.\nuser: Name a prime.\n";
    assert_eq!(ids.len(), text.len().div_ceil(4));
    let (st, plain, _) = s.post("/tokenize", json!({"prompt": text}));
    assert_eq!(st, 200);
    assert_eq!(plain["tokens"], chat["tokens"], "same text, same ids");

    // /detokenize gives the text back.
    let (st, back, _) = s.post("/detokenize", json!({"model": "sql-lora", "tokens": ids}));
    assert_eq!(st, 200, "{back}");
    assert_eq!(back["prompt"], text);

    // The render endpoints give the ids a chat or completions request would be served with.
    let (st, r, _) = s.post(
        "/v1/chat/completions/render",
        json!({"model": MODEL, "messages": messages, "max_tokens": 3}),
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["token_ids"], chat["tokens"]);
    assert_eq!(r["model"], MODEL);
    assert_eq!(r["sampling_params"]["max_tokens"], 3);
    let (st, r, _) = s.post(
        "/v1/completions/render",
        json!({"model": MODEL, "prompt": text}),
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["token_ids"], chat["tokens"]);

    // Errors as vLLM gives them: unknown model 404, bad bodies 400, too long for the model 400.
    let (st, e, _) = s.post("/tokenize", json!({"model": "nope", "prompt": "x"}));
    assert_eq!((st, e["error"]["code"].as_u64()), (404, Some(404)), "{e}");
    let (st, _, _) = s.post("/detokenize", json!({"tokens": [1, -2]}));
    assert_eq!(st, 400);
    let (st, _, _) = s.post("/v1/chat/completions/render", json!({"prompt": "x"}));
    assert_eq!(st, 400);
    let long = "x".repeat(4 * 60);
    let (st, e, _) = s.post(
        "/v1/completions",
        json!({"model": MODEL, "prompt": long, "max_tokens": 8}),
    );
    assert_eq!(st, 400, "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum context length is 64 tokens"));
}
