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
    let backends = vec![
        sim(
            "busy",
            json!({"waiting-requests": 12, "running-requests": 5, "kv-cache-usage": 0.9}),
        ),
        sim(
            "idle",
            json!({"waiting-requests": 0, "running-requests": 1, "kv-cache-usage": 0.1}),
        ),
        sim(
            "half",
            json!({"waiting-requests": 6, "running-requests": 5, "kv-cache-usage": 0.5}),
        ),
    ];
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
