//! Model rewrites in real Envoy, both builds: the model server receives the model the request
//! is sent as — named by `x-llm-d-model-name-rewrite` (or its older name
//! `x-gateway-model-name-rewrite`) or drawn by an `inferenceModelRewrites` rule (GIE's
//! InferenceModelRewrite) — in a body that is otherwise the client's, with a matching length,
//! whether it came in one write or several (a body without `model` gets the generic rule's);
//! and `inference_extension_model_rewrite_decisions_total` counts the rule's decisions.

use e2e::{Env, EnvSpec};
use serde_json::{json, Value};

/// The model the fake server answered as (it echoes the body's `model`) and the prompt tokens
/// it counted (body bytes / 4).
fn served(body: &str) -> (String, u64) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (
        v["model"].as_str().unwrap_or_default().to_string(),
        v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
    )
}

#[test]
fn the_rewrite_header_names_the_model_the_server_receives() {
    let env = Env::start(EnvSpec::default());
    for size in [10, 300_000] {
        let body =
            json!({"model": "base", "prompt": "p".repeat(size), "max_tokens": 3}).to_string();
        let r = env.post(
            "/v1/completions",
            &body,
            &[("x-llm-d-model-name-rewrite", "base-lora-a")],
        );
        assert_eq!(
            r.status,
            200,
            "{size}: {}\n{}",
            &r.body[..r.body.len().min(300)],
            env.log()
        );
        let rewritten = body.replacen("\"base\"", "\"base-lora-a\"", 1);
        assert_eq!(
            served(&r.body),
            ("base-lora-a".into(), (rewritten.len() / 4) as u64),
            "{size}-byte prompt: the whole rewritten body arrived"
        );
    }
    // Without the header the client's model goes through.
    let r = env.complete("base", "hello", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(served(&r.body).0, "base");
}

#[test]
fn a_rewrite_rule_splits_a_models_traffic_by_weight() {
    let env = Env::start(EnvSpec {
        picker: json!({"inferenceModelRewrites": [{"name": "canary", "rules": [{
            "matches": [{"model": {"type": "Exact", "value": "base"}}],
            "targets": [{"modelRewrite": "base-v1", "weight": 50}, {"modelRewrite": "base-v2", "weight": 50}]
        }]}]}),
        ..EnvSpec::default()
    });
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..40 {
        let r = env.complete("base", &format!("question {i}"), &[]);
        assert_eq!(r.status, 200, "{}\n{}", r.body, env.access_log());
        *seen.entry(served(&r.body).0).or_default() += 1;
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["base-v1", "base-v2"],
        "{seen:?}"
    );
    assert!(
        seen.values().all(|&n| n >= 8),
        "both targets get a share: {seen:?}"
    );
    // Another model has no rule.
    let r = env.complete("other", "hello", &[]);
    assert_eq!(served(&r.body).0, "other");

    // Each decision counted under the rewrite, the model asked for and the target chosen.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = env.prometheus();
        let count = |target: &str| -> u32 {
            text.lines()
                .filter(|l| {
                    l.contains("inference_extension_model_rewrite_decisions_total{")
                        && l.contains("model_rewrite_name=\"canary\"")
                        && l.contains("model_name=\"base\"")
                        && l.contains(&format!("target_model=\"{target}\""))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u32
        };
        let counted = (count("base-v1"), count("base-v2"));
        if counted == (seen["base-v1"], seen["base-v2"]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counted {counted:?}, served {seen:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Sends `body` to Envoy in `parts` writes 30 ms apart (so it likely reaches the filter
/// in several parts rather than one), with the rewrite header; returns the raw response.
fn send_in_parts(env: &Env, body: &str, parts: usize) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(env.listen).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .ok();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-gateway-model-name-rewrite: base-lora-a\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    let step = body.len().div_ceil(parts);
    for chunk in body.as_bytes().chunks(step) {
        std::thread::sleep(std::time::Duration::from_millis(30));
        s.write_all(chunk).expect("write");
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_body_sent_in_several_writes_is_rewritten_whole() {
    let env = Env::start(EnvSpec::default());
    for parts in [1, 2, 5] {
        let body =
            json!({"model": "base", "prompt": "q".repeat(2_000), "max_tokens": 3}).to_string();
        let response = send_in_parts(&env, &body, parts);
        let (head, json) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "{parts} parts: {response}"
        );
        let rewritten = body.replacen("\"base\"", "\"base-lora-a\"", 1);
        assert_eq!(
            served(json),
            ("base-lora-a".into(), (rewritten.len() / 4) as u64),
            "{parts} parts"
        );
    }
}

#[test]
fn a_request_held_by_flow_control_is_rewritten_when_released() {
    // One request in flight saturates the single endpoint; the second waits paused in Envoy
    // and is rewritten when the queue releases it (outside the body callback it arrived in).
    let env = std::sync::Arc::new(Env::start(EnvSpec {
        backends: vec!["pod-a".into()],
        picker: e2e::one_in_flight_picker(json!({"defaultRequestTTL": "30s"})),
        ..EnvSpec::default()
    }));
    env.backend("pod-a").set(json!({"delay_ms": 600}));
    let first = {
        let env = env.clone();
        std::thread::spawn(move || env.complete("base", "first", &[]))
    };
    std::thread::sleep(std::time::Duration::from_millis(150));
    let t0 = std::time::Instant::now();
    let body = json!({"model": "base", "prompt": "q".repeat(5_000), "max_tokens": 3}).to_string();
    let held = env.post(
        "/v1/completions",
        &body,
        &[("x-gateway-model-name-rewrite", "base-lora-a")],
    );
    assert!(
        t0.elapsed() >= std::time::Duration::from_millis(300),
        "it waited for the first to finish"
    );
    assert_eq!(held.status, 200, "{}", held.body);
    let rewritten = body.replacen("\"base\"", "\"base-lora-a\"", 1);
    assert_eq!(
        served(&held.body),
        ("base-lora-a".into(), (rewritten.len() / 4) as u64)
    );
    assert_eq!(served(&first.join().unwrap().body).0, "base");
}

#[test]
fn a_body_without_model_is_sent_as_the_generic_rule_s_target() {
    // llm-d-router: a generic rule (no matches) names the model of a request that omits it.
    let env = Env::start(EnvSpec {
        picker: json!({"inferenceModelRewrites": [{"name": "default-model", "rules": [{
            "targets": [{"modelRewrite": "base-lora-a"}]
        }]}]}),
        ..EnvSpec::default()
    });
    let target = "\"base-lora-a\"";
    // (body, its length as the server receives it: the member inserted, or the null replaced)
    let absent = json!({"prompt": "no model here", "max_tokens": 3}).to_string();
    let null = json!({"model": null, "prompt": "a null model", "max_tokens": 3}).to_string();
    for (body, received) in [
        (&absent, absent.len() + "\"model\":,".len() + target.len()),
        (&null, null.len() - "null".len() + target.len()),
    ] {
        let r = env.post("/v1/completions", body, &[]);
        assert_eq!(r.status, 200, "{}\n{}", r.body, env.access_log());
        let (model, tokens) = served(&r.body);
        assert_eq!(model, "base-lora-a", "{body}");
        assert_eq!(tokens, received as u64 / 4, "{body}");
    }
}
