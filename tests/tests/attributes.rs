//! Custom metrics as endpoint attributes, end to end in Envoy: the core metrics extractor's
//! `customMetrics` turn a series of the scraped page into a scalar attribute, which
//! `endpoint-attribute-filter` and `endpoint-attribute-scorer` act on (both builds: the
//! attribute travels in the Wasm snapshot and the native shared state).

use e2e::{Env, EnvSpec};
use serde_json::json;

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

fn extractor() -> serde_json::Value {
    json!({"type": "core-metrics-extractor", "parameters": {"engineConfigs": [{
        "name": "vllm",
        "queuedRequestsSpec": "vllm:num_requests_waiting",
        "runningRequestsSpec": "vllm:num_requests_running",
        "kvUsageSpec": "vllm:kv_cache_usage_perc",
        "customMetrics": [{"attributeKey": "custom.running", "metricSpec": "vllm:num_requests_running"}]
    }]}})
}

#[test]
fn the_filter_drops_and_the_scorer_ranks_by_a_custom_metric() {
    let env = Env::start(EnvSpec {
        picker: json!({
            "plugins": [
                extractor(),
                {"type": "endpoint-attribute-filter", "name": "busy", "parameters": {
                    "attribute": "custom.running", "onMissing": "Fail",
                    "algorithm": {"type": "threshold", "threshold": {"operator": "LessThan", "value": 8}}}},
                {"type": "endpoint-attribute-scorer", "name": "least-running", "parameters": {
                    "attributeKey": "custom.running", "algorithm": {"type": "linear_lower_is_better"}}},
                {"type": "max-score-picker"}
            ],
            "schedulingProfiles": [{"name": "default", "plugins": [
                {"pluginRef": "busy"}, {"pluginRef": "least-running"}, {"pluginRef": "max-score-picker"}]}]
        }),
        ..EnvSpec::default()
    });
    // pod-a is over the threshold; pod-c runs the fewest requests.
    for (b, running) in env.backends.iter().zip([9, 4, 1]) {
        b.set(json!({"running": running}));
    }
    env.settle();
    for i in 0..10 {
        let r = env.complete(MODEL, &format!("question {i}"), &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.pod(),
            "pod-c",
            "request {i}: {:?}",
            r.header("x-endpoint-picker-debug")
        );
    }
    // pod-c gets busy: pod-b is now the least-running endpoint under the threshold.
    env.backends[2].set(json!({"running": 12}));
    env.settle();
    assert_eq!(env.complete(MODEL, "after the change", &[]).pod(), "pod-b");
    // Every endpoint over the threshold: nothing passes the filter (no fallbackOnEmpty).
    env.backends[1].set(json!({"running": 20}));
    env.settle();
    let r = env.complete(MODEL, "all busy", &[]);
    assert_eq!(r.status, 429, "{r:?}");
}

/// A second page per endpoint: GPU utilisation from a DCGM exporter sidecar (`dcgm-data-source`
/// with `dcgm-extractor`), read by `endpoint-attribute-filter` with `producer: dcgm-extractor`,
/// as llm-d's GPU sample config wires them.
#[test]
fn a_dcgm_exporter_page_filters_out_hot_gpus() {
    use e2e::Backend;
    use std::net::SocketAddr;
    let dcgm_port = e2e::free_port();
    let spawn = |name: &str, ip: &str| {
        let addr: SocketAddr = format!("{ip}:{}", e2e::free_port()).parse().unwrap();
        let mut cmd = std::process::Command::new(e2e::fake_server_bin());
        cmd.args(["--listen", &addr.to_string(), "--name", name])
            .args(["--dcgm-listen", &format!("{ip}:{dcgm_port}")]);
        Backend::spawn_command(name, addr, cmd)
    };
    let backends = vec![spawn("gpu-a", "127.0.0.2"), spawn("gpu-b", "127.0.0.3")];
    let env = Env::start_over(
        backends,
        EnvSpec {
            picker: json!({
                "plugins": [
                    {"type": "metrics-data-source"}, {"type": "core-metrics-extractor"},
                    {"type": "dcgm-data-source", "name": "dcgm", "parameters": {"port": dcgm_port, "interval": "100ms"}},
                    {"type": "dcgm-extractor"},
                    {"type": "endpoint-attribute-filter", "name": "cool-gpus", "parameters": {
                        "attribute": "GPUUtilization", "producer": "dcgm-extractor", "onMissing": "Pass",
                        "algorithm": {"type": "threshold", "threshold": {"operator": "LessThanOrEqual", "value": 0.9}}}},
                    {"type": "random-picker"}
                ],
                "dataLayer": {"sources": [
                    {"pluginRef": "metrics-data-source", "extractors": [{"pluginRef": "core-metrics-extractor"}]},
                    {"pluginRef": "dcgm", "extractors": [{"pluginRef": "dcgm-extractor"}]}
                ]},
                "schedulingProfiles": [{"name": "default", "plugins": [
                    {"pluginRef": "cool-gpus"}, {"pluginRef": "random-picker"}]}]
            }),
            ..EnvSpec::default()
        },
    );
    // gpu-a's hottest GPU is at 95 %: every request goes to gpu-b.
    env.backends[0].set(json!({"gpu_util": [40.0, 95.0]}));
    env.backends[1].set(json!({"gpu_util": [60.0, 70.0]}));
    // Pages are fetched every 100 ms and published on the next 50 ms tick.
    std::thread::sleep(std::time::Duration::from_millis(500));
    for i in 0..20 {
        let r = env.complete(MODEL, &format!("question {i}"), &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.pod(),
            "gpu-b",
            "request {i}: {:?}",
            r.header("x-endpoint-picker-debug")
        );
    }
    // It cools down: both get traffic again.
    env.backends[0].set(json!({"gpu_util": [40.0, 50.0]}));
    std::thread::sleep(std::time::Duration::from_millis(400));
    let pods: std::collections::HashSet<String> = (0..30)
        .map(|i| {
            env.complete(MODEL, &format!("again {i}"), &[])
                .pod()
                .to_string()
        })
        .collect();
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert_eq!(env.stat_sum("scrape.page_failure"), 0, "{}", env.stats());
}

/// `models-data-source` polls each endpoint's `/v1/models`; `endpoint-attribute-filter` on
/// `model:<id>` (producer `models-data-extractor`) then routes to the endpoints that serve a
/// LoRA adapter, and follows the list when an adapter is loaded elsewhere.
#[test]
fn served_models_from_v1_models_steer_requests() {
    let env = Env::start(EnvSpec {
        picker: json!({
            "plugins": [
                {"type": "metrics-data-source"}, {"type": "core-metrics-extractor"},
                {"type": "models-data-source", "name": "models", "parameters": {"interval": "100ms"}},
                {"type": "models-data-extractor"},
                {"type": "endpoint-attribute-filter", "name": "serves-sql-lora", "parameters": {
                    "attribute": "model:sql-lora", "producer": "models-data-extractor", "onMissing": "Fail",
                    "algorithm": {"type": "threshold", "threshold": {"operator": "Equal", "value": 1}}}},
                {"type": "random-picker"}
            ],
            "dataLayer": {"sources": [
                {"pluginRef": "metrics-data-source", "extractors": [{"pluginRef": "core-metrics-extractor"}]},
                {"pluginRef": "models", "extractors": [{"pluginRef": "models-data-extractor"}]}
            ]},
            "schedulingProfiles": [{"name": "default", "plugins": [
                {"pluginRef": "serves-sql-lora"}, {"pluginRef": "random-picker"}]}]
        }),
        ..EnvSpec::default()
    });
    env.backends[1].set(json!({"models": [MODEL, "sql-lora"]}));
    std::thread::sleep(std::time::Duration::from_millis(500));
    for i in 0..15 {
        let r = env.complete(MODEL, &format!("question {i}"), &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.pod(),
            "pod-b",
            "request {i}: {:?}",
            r.header("x-endpoint-picker-debug")
        );
    }
    // The adapter moves to pod-c.
    env.backends[1].set(json!({"models": [MODEL]}));
    env.backends[2].set(json!({"models": [MODEL, "sql-lora"]}));
    std::thread::sleep(std::time::Duration::from_millis(500));
    for i in 0..15 {
        assert_eq!(
            env.complete(MODEL, &format!("moved {i}"), &[]).pod(),
            "pod-c"
        );
    }
    assert_eq!(env.stat_sum("scrape.page_failure"), 0, "{}", env.stats());
}

/// llm-d's multi-cluster picker in Envoy: the endpoints are clusters (here fake servers that
/// also export a cluster picker's pool averages), scored by `multicluster-queue-scorer` and
/// `multicluster-kv-cache-utilization-scorer` from what `multicluster-metrics-extractor` reads,
/// with `multicluster-session-affinity-filter` keeping a session on its cluster.
#[test]
fn multi_cluster_picks_the_least_loaded_cluster_and_keeps_sessions() {
    let env = Env::start(EnvSpec {
        backends: vec!["cluster-a".into(), "cluster-b".into(), "cluster-c".into()],
        picker: json!({
            "plugins": [
                {"type": "multicluster-metrics-data-source", "name": "metrics-source"},
                {"type": "multicluster-metrics-extractor", "name": "metrics-extractor"},
                {"type": "multicluster-session-affinity-filter", "name": "session-affinity"},
                {"type": "multicluster-kv-cache-utilization-scorer", "name": "kv-cache"},
                {"type": "multicluster-queue-scorer", "name": "queue"},
                {"type": "max-score-picker"}
            ],
            "dataLayer": {"sources": [{"pluginRef": "metrics-source", "extractors": [{"pluginRef": "metrics-extractor"}]}]},
            "schedulingProfiles": [{"name": "default", "plugins": [
                {"pluginRef": "session-affinity"}, {"pluginRef": "kv-cache"}, {"pluginRef": "queue"},
                {"pluginRef": "max-score-picker"}]}]
        }),
        ..EnvSpec::default()
    });
    for (b, (q, kv)) in env.backends.iter().zip([(8, 0.7), (1, 0.2), (5, 0.5)]) {
        b.set(json!({"waiting": q, "kv": kv}));
    }
    env.settle();
    let r = env.complete(MODEL, "first turn", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.pod(),
        "cluster-b",
        "{:?}",
        r.header("x-endpoint-picker-debug")
    );
    let token = r
        .header("x-session-token")
        .expect("session token")
        .to_string();
    // cluster-b becomes the busiest; the session stays, a new request goes elsewhere.
    env.backends[1].set(json!({"waiting": 20, "kv": 0.95}));
    env.settle();
    let r = env.complete(MODEL, "second turn", &[("x-session-token", &token)]);
    assert_eq!(
        r.pod(),
        "cluster-b",
        "{:?}",
        r.header("x-endpoint-picker-debug")
    );
    assert_eq!(env.complete(MODEL, "someone else", &[]).pod(), "cluster-c");
}
