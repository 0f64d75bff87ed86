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
