//! Every local reply returns its status and an OpenAI-style JSON error body.

use e2e::{Env, EnvSpec};
use serde_json::json;

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

fn assert_error(r: &e2e::Resp, status: u16, error_type: &str, code: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let v = r.json();
    assert_eq!(v["error"]["type"], error_type, "{r:?}");
    assert_eq!(v["error"]["code"], code, "{r:?}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{r:?}"
    );
}

#[test]
fn bad_requests_too_large_and_saturation() {
    let env = Env::start(EnvSpec {
        pool: json!({"bodyLimitBytes": 65536}),
        picker: json!({
            "inferenceObjectives": [{"name": "batch", "priority": -1}, {"name": "premium", "priority": 10}]
        }),
        ..EnvSpec::default()
    });
    assert_error(
        &env.post("/v1/completions", "this is not json", &[]),
        400,
        "invalid_request_error",
        "invalid_json",
    );
    assert_error(
        &env.post("/v1/completions", r#"{"prompt":"x"}"#, &[]),
        400,
        "invalid_request_error",
        "model_not_found_in_body",
    );
    assert_error(
        &env.post(
            "/v1/chat/completions",
            r#"{"model":"m","messages":[]}"#,
            &[],
        ),
        400,
        "invalid_request_error",
        "missing_prompt",
    );
    let big = json!({"model": MODEL, "prompt": "x".repeat(100_000)}).to_string();
    assert_error(
        &env.post("/v1/completions", &big, &[]),
        413,
        "invalid_request_error",
        "request_too_large",
    );

    // Saturate the pool: sheddable requests get 429, others still go through.
    for b in &env.backends {
        b.set(json!({"waiting": 10, "kv": 0.95}));
    }
    env.settle();
    assert_error(
        &env.complete(MODEL, "x", &[("x-gateway-inference-objective", "batch")]),
        429,
        "rate_limit_exceeded",
        "pool_saturated",
    );
    assert_eq!(
        env.complete(MODEL, "x", &[("x-gateway-inference-objective", "premium")])
            .status,
        200
    );
    assert_eq!(
        env.complete(MODEL, "x", &[]).status,
        200,
        "priority 0 is not sheddable"
    );
    env.settle_stats();
    assert!(env.stat("endpoint_picker.local_replies.429").unwrap_or(0) >= 1);
}

#[test]
fn everything_filtered_is_429() {
    let env = Env::start(EnvSpec {
        picker: json!({
            "plugins": [
                {"type": "label-selector-filter", "parameters": {"matchLabels": {"tier": "gold"}}},
                {"type": "queue-scorer"}
            ],
            "schedulingProfiles": [{"name": "default", "plugins": [
                {"pluginRef": "label-selector-filter"}, {"pluginRef": "queue-scorer"}]}]
        }),
        ..EnvSpec::default()
    });
    let r = env.complete(MODEL, "x", &[]);
    assert_error(&r, 429, "rate_limit_exceeded", "no_target_endpoint");
    // llm-d's label for a refusal for load.
    assert_eq!(
        r.header("x-llm-d-request-dropped-reason"),
        Some("rejected-saturated")
    );
}

#[test]
fn a_conditional_decode_without_a_cached_prefix_is_412() {
    // llm-d's coordinator marks a speculative early decode with `Prefer: if-available`: the
    // picker routes it only to an endpoint believed to hold some of its prompt.
    // One worker: the Wasm build keeps one prefix index per worker VM.
    let env = Env::start(EnvSpec {
        concurrency: 1,
        ..EnvSpec::default()
    });
    let prompt = "You are a support agent for the billing team. ".repeat(40);
    let prefer = [("prefer", "if-available")];
    let r = env.complete(MODEL, &prompt, &prefer);
    assert_error(&r, 412, "precondition_failed", "no_cached_prefix");
    // Routed once without it, the prompt's blocks are recorded where it went, and the
    // conditional decode of a longer prompt with that prefix goes there.
    let first = env.complete(MODEL, &prompt, &[]);
    assert_eq!(first.status, 200, "{first:?}");
    let again = env.complete(MODEL, &format!("{prompt} And my balance?"), &prefer);
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.pod(), first.pod());
    // Counted under llm-d's error code for it (the module flushes its series within a second).
    let counted = |text: &str| {
        text.lines().any(|l| {
            l.contains("inference_objective_request_error_total")
                && l.contains("error_code=\"PreconditionFailed\"")
                && l.ends_with(" 1")
        })
    };
    let mut text = String::new();
    env.wait_until(std::time::Duration::from_secs(5), |e| {
        text = e.prometheus();
        counted(&text)
    });
    assert!(counted(&text), "{text}");
}

#[test]
fn no_usable_metrics_fail_close_and_fail_open() {
    // Every /metrics fails: after the staleness threshold there are no candidates.
    let close = Env::start(EnvSpec {
        pool: json!({"scrape": {"staleness": "500ms"}}),
        ..EnvSpec::default()
    });
    for b in &close.backends {
        b.set(json!({"metrics": "500"}));
    }
    let took = close.wait_until(std::time::Duration::from_secs(5), |e| {
        e.complete(MODEL, "x", &[]).status == 503
    });
    println!("all /metrics down (staleness 500 ms): FailClose answers 503 after {took:?}");
    assert!(
        took.is_some(),
        "FailClose answers 503 once every endpoint is stale"
    );
    assert_error(
        &close.complete(MODEL, "x", &[]),
        503,
        "service_unavailable",
        "no_metrics_snapshot",
    );

    let open = Env::start(EnvSpec {
        pool: json!({"scrape": {"staleness": "500ms"}, "failureMode": "FailOpen"}),
        ..EnvSpec::default()
    });
    for b in &open.backends {
        b.set(json!({"metrics": "500"}));
    }
    open.wait_until(std::time::Duration::from_secs(5), |e| {
        e.stat("endpoint_picker.fail_open").unwrap_or(0) > 0 || {
            e.complete(MODEL, "x", &[]);
            false
        }
    });
    let r = open.complete(MODEL, "x", &[]);
    assert_eq!(
        r.status, 200,
        "FailOpen lets the cluster's load balancer pick: {r:?}"
    );
    assert_eq!(
        r.header("x-seen-destination"),
        Some(""),
        "no destination header was set"
    );
    assert!(open.stat("endpoint_picker.fail_open").unwrap_or(0) >= 1);
}
