//! `request-attribute-reporter` in real Envoy: the number its CEL expression computes from the
//! response's `usage` reaches Envoy as dynamic metadata `envoy.lb` /
//! `x-gateway-inference-request-cost` (native build) or as the filter state
//! `wasm.envoy.lb.x-gateway-inference-request-cost` (proxy-wasm build), read here from the
//! access log; a false condition reports nothing. And GIE's usage-derived series: the prompt
//! tokens the server read from its cache, and the normalized time per output token; and its
//! gauge of the requests in flight per model, which every worker moves.

use e2e::{Backend, Env, StartOptions};
use serde_json::{json, Value};

const KEY: &str = "x-gateway-inference-request-cost";

fn picker(backends: &[Backend]) -> Value {
    let endpoints: Vec<Value> = backends
        .iter()
        .map(|b| json!({"address": b.addr.to_string()}))
        .collect();
    json!({
        "pool": {"cluster": "inference_pool", "endpoints": endpoints},
        "plugins": [
            {"type": "queue-scorer"},
            {"name": "cost", "type": "request-attribute-reporter", "parameters": {"attributes": [{
                "key": {"name": KEY},
                "expression": "usage.prompt_tokens + usage.completion_tokens",
                "condition": "has(usage.completion_tokens) && usage.prompt_tokens < 1000.0"
            }]}}
        ],
        "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "queue-scorer"}]}]
    })
}

/// Adds `fields` (name, Envoy format string) to the access log's JSON line, after its last one.
fn with_log_fields(yaml: String, fields: &[(&str, String)]) -> String {
    yaml.lines()
        .map(|line| {
            let mut out = format!("{line}\n");
            if line.trim_start().starts_with("duration_ms: \"%DURATION%\"") {
                let indent = &line[..line.len() - line.trim_start().len()];
                for (name, format) in fields {
                    out.push_str(&format!("{indent}{name}: \"{format}\"\n"));
                }
            }
            out
        })
        .collect()
}

/// Adds both carriers to the access log's JSON line (the one the build does not write logs
/// `-` / empty).
fn with_cost_fields(yaml: String) -> String {
    with_log_fields(
        yaml,
        &[
            (
                "cost_metadata",
                format!("%DYNAMIC_METADATA(envoy.lb:{KEY})%"),
            ),
            (
                "cost_filter_state",
                format!("%FILTER_STATE(wasm.envoy.lb.{KEY}:PLAIN)%"),
            ),
        ],
    )
}

/// Envoy with the picker, its rendered YAML passed through `edit` first.
fn start_edited(backends: Vec<Backend>, picker: Value, edit: fn(String) -> String) -> Env {
    Env::start_with(
        backends,
        picker,
        StartOptions {
            edit_yaml: Some(Box::new(edit)),
            ..StartOptions::default()
        },
    )
    .unwrap_or_else(|log| panic!("envoy did not start:\n{log}"))
}

/// The access log's JSON lines that `keep` keeps, once there are at least `n` (or after 10 s).
fn logged(env: &Env, n: usize, keep: fn(&Value) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let lines: Vec<Value> = env
            .access_log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(keep)
            .collect();
        if lines.len() >= n || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn reported(line: &Value) -> Option<f64> {
    let field = if e2e::native() {
        "cost_metadata"
    } else {
        "cost_filter_state"
    };
    line[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| line[field].as_f64())
}

#[test]
fn usage_cost_reaches_envoy() {
    let backends = vec![Backend::spawn("pod-a"), Backend::spawn("pod-b")];
    let p = picker(&backends);
    let env = start_edited(backends, p, with_cost_fields);

    // The fake server reports prompt_tokens = body bytes / 4 and completion_tokens = 3.
    let mut want = vec![];
    for (i, stream) in [false, true, false].into_iter().enumerate() {
        let body = json!({"model": "m", "prompt": format!("request {i} {}", "x".repeat(100 * (i + 1))), "stream": stream,
            "stream_options": {"include_usage": true}})
        .to_string();
        let r = env.post("/v1/completions", &body, &[]);
        assert_eq!(r.status, 200, "{r:?}");
        want.push((body.len(), (body.len() / 4 + 3) as f64));
    }
    // prompt_tokens ≥ 1000: the condition is false, nothing is reported.
    let big = json!({"model": "m", "prompt": "y".repeat(5000)}).to_string();
    let r = env.post("/v1/completions", &big, &[]);
    assert_eq!(r.status, 200, "{r:?}");

    let lines = logged(&env, 4, |_| true);
    // Each request has its own body size, so its access-log line is found by bytes_received.
    let by_size = |n: usize| {
        lines
            .iter()
            .find(|l| {
                l["bytes_received"]
                    .as_str()
                    .and_then(|b| b.parse().ok())
                    .or(l["bytes_received"].as_u64().map(|b| b as usize))
                    == Some(n)
            })
            .unwrap_or_else(|| panic!("no access-log line of {n} bytes: {lines:?}"))
    };
    for (size, cost) in &want {
        assert_eq!(
            reported(by_size(*size)),
            Some(*cost),
            "{:?}",
            by_size(*size)
        );
    }
    assert_eq!(
        reported(by_size(big.len())),
        None,
        "{:?}",
        by_size(big.len())
    );
}

/// `inference_objective_prompt_cached_tokens` counts what the server reported as read from its
/// prefix cache (responses that do not report it add nothing), and
/// `inference_objective_normalized_time_per_output_token_seconds` one observation per response
/// with completion tokens.
#[test]
fn cached_prompt_tokens_and_ntpot_from_the_responses_usage() {
    let env = Env::start(e2e::EnvSpec::default());
    let model = "meta-llama/Llama-3.1-8B-Instruct";
    for b in &env.backends {
        b.set(json!({"cached_tokens": 12}));
    }
    let r = env.complete(model, "cached prefix one", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = env.complete(model, "cached prefix two", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    for b in &env.backends {
        b.set(json!({}));
    }
    let r = env.complete(model, "nothing reported", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    // Both builds flush at most once a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let text = env.prometheus();
    let value = |name: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("inference_objective"))
        .collect();
    assert_eq!(
        value("inference_objective_prompt_cached_tokens_count"),
        2.0,
        "{series:#?}"
    );
    assert_eq!(
        value("inference_objective_prompt_cached_tokens_sum"),
        24.0,
        "{series:#?}"
    );
    assert_eq!(
        value("inference_objective_normalized_time_per_output_token_seconds_count"),
        3.0,
        "{series:#?}"
    );
}

/// `inference_objective_running_requests` of `model` as Envoy shows it (the native build's
/// name carries Envoy's dynamic-module prefix), summed over its series (flows, priorities), if
/// one exists.
fn running(text: &str, model: &str) -> Option<f64> {
    let label = format!("model_name=\"{model}\"");
    text.lines()
        .filter(|l| l.contains("inference_objective_running_requests{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

/// Polls Envoy's stats until `want` holds (both builds send the gauge's changes at most once a
/// second); the last text when it never did.
fn until(env: &Env, want: impl Fn(&str) -> bool) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    loop {
        let text = env.prometheus();
        if want(&text) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(text
                .lines()
                .filter(|l| l.contains("running_requests"))
                .collect::<Vec<_>>()
                .join("\n"));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn running_requests_and_scheduling_attempts_by_model() {
    // Envoy's 2 workers each hold a share (a Wasm VM or a native shard apiece, by connection);
    // the gauge is their sum.
    let env = Env::start(e2e::EnvSpec::default());
    for b in &env.backends {
        b.set(json!({"delay_ms": 5000}));
    }
    std::thread::scope(|s| {
        let env = &env;
        // One of model-a's requests is a tenant's (its own flow): its series carry its
        // fairness id.
        let tenant: &[(&str, &str)] = &[("x-llm-d-inference-fairness-id", "tenant-a")];
        let calls: Vec<_> = [
            ("model-a", "one", &[][..]),
            ("model-a", "two", tenant),
            ("model-b", "three", &[][..]),
        ]
        .into_iter()
        .map(|(model, prompt, headers)| s.spawn(move || env.complete(model, prompt, headers)))
        .collect();
        let held = until(env, |t| {
            running(t, "model-a") == Some(2.0) && running(t, "model-b") == Some(1.0)
        });
        for c in calls {
            let r = c.join().expect("client thread");
            assert_eq!(r.status, 200, "{}", r.body);
        }
        held.expect("2 requests of model-a and 1 of model-b in flight");
    });
    until(&env, |t| {
        running(t, "model-a") == Some(0.0) && running(t, "model-b") == Some(0.0)
    })
    .expect("0 once every response ended");
    // Each was a successful scheduling attempt on the endpoint it went to (sent in the flush
    // that counted it as running, so already shown).
    let text = env.prometheus();
    let attempts = |model: &str| {
        let target = format!("target_model_name=\"{model}\"");
        summed(
            &text,
            &[
                "inference_extension_scheduler_attempts_total{",
                "status=\"success\"",
                &target,
            ],
        )
    };
    assert_eq!(attempts("model-a"), 2.0, "{text}");
    assert_eq!(attempts("model-b"), 1.0, "{text}");
    // llm-d-router's request labels: the flow (the header's, else `default-flow`) and the
    // priority (0: no objective named).
    let requests = |flow: &str| {
        let fairness = format!("fairness_id=\"{flow}\"");
        summed(
            &text,
            &[
                "inference_objective_request_total{",
                "model_name=\"model-a\"",
                &fairness,
                "priority=\"0\"",
            ],
        )
    };
    assert_eq!(requests("tenant-a"), 1.0, "{text}");
    assert_eq!(requests("default-flow"), 1.0, "{text}");
}

/// The sum of the values of the Prometheus lines of `text` that contain every one of `needles`.
fn summed(text: &str, needles: &[&str]) -> f64 {
    text.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The rendered cluster reading the destination from the request's dynamic metadata instead of
/// the header, as Istio configures an InferencePool's cluster (`override_host` with a metadata
/// source only); and the decision's two metadata keys in the access log.
fn with_metadata_source(yaml: String) -> String {
    assert!(
        yaml.contains("- header: x-gateway-destination-endpoint"),
        "the rendered cluster's override_host source is no longer where this test looks"
    );
    let yaml = yaml.replace(
        "- header: x-gateway-destination-endpoint",
        "- metadata: {key: envoy.lb, path: [{key: x-gateway-destination-endpoint}]}",
    );
    with_log_fields(
        yaml,
        &[
            (
                "destination_metadata",
                "%DYNAMIC_METADATA(envoy.lb:x-gateway-destination-endpoint)%".into(),
            ),
            (
                "scores_metadata",
                "%DYNAMIC_METADATA(envoy.lb:x-gateway-destination-endpoint-scores)%".into(),
            ),
        ],
    )
}

/// llm-d-router's EPP publishes its decision as dynamic metadata `envoy.lb`:
/// `x-gateway-destination-endpoint` always, `x-gateway-destination-endpoint-scores` with
/// `--emit-endpoint-scores`. The native build does the same (`pool.emitEndpointScores`), so a
/// cluster that reads the destination from metadata only routes where the picker chose, and
/// the access log shows every endpoint's score; proxy-wasm cannot write dynamic metadata, so
/// the Wasm build's requests still succeed (the cluster's fallback balancer places them), it
/// writes neither key and says at start that it ignores the setting.
#[test]
fn the_decision_reaches_a_cluster_that_reads_the_metadata_and_the_scores_the_access_log() {
    let backends = vec![
        Backend::spawn("pod-a"),
        Backend::spawn("pod-b"),
        Backend::spawn("pod-c"),
    ];
    let addresses: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
    let mut p = picker(&backends);
    p["pool"]["emitEndpointScores"] = json!(true);
    let env = start_edited(backends, p, with_metadata_source);
    // The queue scorer prefers pod-b, then pod-a, then pod-c.
    for (b, waiting) in env.backends.iter().zip([4, 0, 9]) {
        b.set(json!({"waiting": waiting}));
    }
    env.settle();
    let n = 6;
    for i in 0..n {
        let r = env.complete("m", &format!("question {i}"), &[]);
        assert_eq!(r.status, 200, "{r:?}");
        if e2e::native() {
            assert_eq!(
                r.pod(),
                "pod-b",
                "request {i} went where the metadata said: {r:?}"
            );
        }
    }
    let lines = logged(&env, n, |l| l["path"] == "/v1/completions");
    assert_eq!(lines.len(), n, "{lines:?}");
    for l in &lines {
        if !e2e::native() {
            // Envoy logs an absent metadata key as null (JSON) or "-".
            for key in ["destination_metadata", "scores_metadata"] {
                assert!(l[key].is_null() || l[key] == "-", "{key}: {l}");
            }
            continue;
        }
        assert_eq!(l["destination_metadata"], addresses[1].as_str(), "{l}");
        // The scores struct is logged as a JSON object: every endpoint the profile scored.
        let scores = l["scores_metadata"]
            .as_object()
            .unwrap_or_else(|| panic!("no scores object: {l}"));
        let score = |a: &str| scores.get(a).and_then(Value::as_f64);
        assert_eq!(scores.len(), 3, "{l}");
        let (a, b, c) = (
            score(&addresses[0]).unwrap(),
            score(&addresses[1]).unwrap(),
            score(&addresses[2]).unwrap(),
        );
        assert!(
            b > a && a > c,
            "pod-b's score is the best, pod-c's the worst: {l}"
        );
    }
    if !e2e::native() {
        assert!(
            env.log()
                .contains("pool.emitEndpointScores is ignored by the Wasm build"),
            "{}",
            env.log()
        );
    }
}
