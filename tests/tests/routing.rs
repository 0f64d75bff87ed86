//! Picks follow the metrics through real Envoy: GIE's hermetic cases replayed black-box, prefix
//! affinity, header-only requests, streaming, and the stats the module exports.

use std::collections::HashMap;
use std::time::Duration;

use e2e::{Env, EnvSpec};
use serde_json::json;

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

#[test]
fn lower_queue_and_kv_cache_wins() {
    let env = Env::start(EnvSpec::default());
    // GIE "select lower queue and kv cache": (3, .2), (0, .1), (10, .2) → the second endpoint.
    for (b, (q, kv)) in env.backends.iter().zip([(3, 0.2), (0, 0.1), (10, 0.2)]) {
        b.set(json!({"waiting": q, "kv": kv}));
    }
    env.settle();
    for i in 0..20 {
        let r = env.complete(MODEL, &format!("question {i}"), &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.pod(),
            "pod-b",
            "request {i}: {:?}",
            r.header("x-endpoint-picker-debug")
        );
    }
    // The metrics move: now the third endpoint is the idle one.
    for (b, (q, kv)) in env.backends.iter().zip([(3, 0.2), (8, 0.7), (0, 0.05)]) {
        b.set(json!({"waiting": q, "kv": kv}));
    }
    env.settle();
    assert_eq!(env.complete(MODEL, "after the change", &[]).pod(), "pod-c");
}

/// GIE `test/integration/epp/testdata/default-config.yaml`: queue, kv, prefix, LoRA, weight 1.
fn hermetic_profile() -> serde_json::Value {
    json!({
        "plugins": [
            {"type": "queue-scorer"}, {"type": "kv-cache-utilization-scorer"},
            {"type": "prefix-cache-scorer"}, {"type": "lora-affinity-scorer"}
        ],
        "schedulingProfiles": [{"name": "default", "plugins": [
            {"pluginRef": "queue-scorer"}, {"pluginRef": "kv-cache-utilization-scorer"},
            {"pluginRef": "prefix-cache-scorer"}, {"pluginRef": "lora-affinity-scorer"}
        ]}]
    })
}

#[test]
fn lora_affinity_cases() {
    let env = Env::start(EnvSpec {
        picker: hermetic_profile(),
        ..EnvSpec::default()
    });
    // "select active lora, low queue": sql-lora-1fdg2 is active on the second endpoint → 2.9.
    env.backends[0]
        .set(json!({"waiting": 0, "kv": 0.2, "running_loras": ["foo", "bar"], "max_lora": 2}));
    env.backends[1].set(
        json!({"waiting": 0, "kv": 0.1, "running_loras": ["foo", "sql-lora-1fdg2"], "max_lora": 2}),
    );
    env.backends[2]
        .set(json!({"waiting": 10, "kv": 0.2, "running_loras": ["foo", "bar"], "max_lora": 2}));
    env.settle();
    let r = env.complete("sql-lora-1fdg2", "x", &[]);
    assert_eq!(
        r.pod(),
        "pod-b",
        "{:?}",
        r.header("x-endpoint-picker-debug")
    );
    assert!(
        r.header("x-endpoint-picker-debug")
            .unwrap()
            .contains("score=2.900"),
        "{r:?}"
    );

    // "select lora despite higher kv cache": equal queues, kv .2/.4/.3, adapter on the second.
    env.backends[0].set(json!({"kv": 0.2, "running_loras": ["foo"], "max_lora": 1}));
    env.backends[1].set(json!({"kv": 0.4, "running_loras": ["sql-lora-1fdg2"], "max_lora": 1}));
    env.backends[2].set(json!({"kv": 0.3, "running_loras": ["bar"], "max_lora": 1}));
    env.settle();
    let r = env.complete("sql-lora-1fdg2", "y", &[]);
    assert_eq!(r.pod(), "pod-b");
    assert!(
        r.header("x-endpoint-picker-debug")
            .unwrap()
            .contains("score=2.600"),
        "{r:?}"
    );
}

#[test]
fn same_long_prompt_keeps_its_endpoint_under_equal_load() {
    let env = Env::start(EnvSpec {
        concurrency: 1,
        ..EnvSpec::default()
    });
    let system = "You are a meticulous assistant for the accounts team. ".repeat(60);
    let chat = |q: &str| {
        json!({"model": MODEL, "messages": [{"role": "system", "content": system}, {"role": "user", "content": q}]}).to_string()
    };
    let first = env.post("/v1/chat/completions", &chat("first question"), &[]);
    assert_eq!(first.status, 200);
    let home = first.pod().to_string();
    for i in 0..30 {
        let r = env.post(
            "/v1/chat/completions",
            &chat(&format!("follow-up {i}")),
            &[],
        );
        assert_eq!(
            r.pod(),
            home,
            "request {i} left its prefix: {:?}",
            r.header("x-endpoint-picker-debug")
        );
    }
    // Unrelated prompts spread over the pool (ties broken at random), not all onto one endpoint.
    let mut seen = HashMap::new();
    for i in 0..30 {
        *seen
            .entry(
                env.complete(MODEL, &format!("unrelated {i} {}", "z".repeat(i)), &[])
                    .pod()
                    .to_string(),
            )
            .or_insert(0) += 1;
    }
    assert!(seen.len() >= 2, "{seen:?}");
}

#[test]
fn requests_without_a_body_go_to_a_random_fresh_endpoint() {
    let env = Env::start(EnvSpec::default());
    let mut seen = HashMap::new();
    for _ in 0..30 {
        let r = env.get("/v1/models");
        assert_eq!(r.status, 200, "{r:?}");
        *seen.entry(r.pod().to_string()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "uniform over the pool: {seen:?}");
}

#[test]
fn streaming_responses_flow_and_stats_are_exported() {
    let env = Env::start(EnvSpec::default());
    let body = json!({"model": MODEL, "prompt": "stream me", "stream": true, "stream_options": {"include_usage": true}}).to_string();
    let r = env.post("/v1/completions", &body, &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("data: [DONE]"), "{}", r.body);
    assert!(r
        .header("x-endpoint-picker-debug")
        .unwrap()
        .starts_with("picked=127.0.0.1:"));
    assert_eq!(
        r.header("x-gateway-destination-endpoint-served"),
        Some(env.backend(r.pod()).addr.to_string().as_str())
    );
    env.settle_stats();
    let prom = env.prometheus();
    let picks: u64 = prom
        .lines()
        // Both builds label the endpoint (Wasm: `endpoint_picker_picks{…}` through the
        // rendered stats_tags; native: `envoy_dynamicmodulescustom_endpoint_picker_picks{…}`).
        .filter(|l| {
            l.starts_with("endpoint_picker_picks{")
                || l.starts_with("envoy_dynamicmodulescustom_endpoint_picker_picks{")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(picks, 1, "{prom}");
    // The access log line carries the pick and the host that served.
    let served = env.backend(r.pod()).addr.to_string();
    let line = env
        .wait_until(Duration::from_secs(5), |e| e.access_log().contains(&served))
        .map(|_| env.access_log())
        .unwrap_or_default();
    let entry: serde_json::Value = line
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    assert_eq!(entry["picked"], served.as_str(), "{line}");
    assert_eq!(entry["served"], served.as_str(), "{line}");
    assert!(entry["status"] == 200 || entry["status"] == "200", "{line}");
    assert!(prom.contains("endpoint_picker_scrape_success"), "{prom}");
    assert!(
        prom.contains("endpoint_picker_endpoints_total{} 3"),
        "{prom}"
    );
}

#[test]
fn debug_level_logs_one_decision_line_per_request() {
    let env = Env::start(EnvSpec::default());
    env.settle();
    let before = env.complete(MODEL, "before debug", &[]);
    assert_eq!(before.status, 200);
    assert!(
        !env.log().contains("endpoint picker decision:"),
        "no decision log at info level"
    );
    // Envoy's admin turns every logger to debug; the Wasm build follows on its next tick.
    let r = ureq::post(&format!(
        "http://127.0.0.1:{}/logging?level=debug",
        env.admin_port
    ))
    .call();
    assert!(r.is_ok(), "{r:?}");
    let logged = env.wait_until(Duration::from_secs(5), |e| {
        assert_eq!(e.complete(MODEL, "with debug on", &[]).status, 200);
        e.log().lines().any(|l| {
            l.contains("endpoint picker decision: request_id=")
                && l.contains(&format!("model={MODEL}"))
                && l.contains(" picked=127.0.0.1:")
                && l.contains(" candidates=3/3 top=")
                && l.contains(" destination=127.0.0.1:")
        })
    });
    assert!(logged.is_some(), "no decision line:\n{}", env.log());
}
