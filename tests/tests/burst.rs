//! llm-d's burst co-location (`burst-prefix-cache-producer`) in real Envoy: requests that arrive
//! together are held for the batch window, placed together, and the samples of one prompt are
//! served by one server. The native build shares one batch across Envoy's 4 workers; the Wasm
//! build batches per worker VM, so it runs with one worker here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Barrier;

use e2e::{Env, EnvSpec};
use serde_json::{json, Value};

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

/// llm-d-router's sample (`deploy/config/epp-burst-prefix-cache-config.yaml`), unchanged.
fn upstream_sample() -> Value {
    e2e::upstream_config("llm-d-router__deploy__config__epp-burst-prefix-cache-config.yaml")
}

/// The sample with its batch window set to `window_ms`.
fn sample_with_window(window_ms: u64) -> Value {
    let mut doc = upstream_sample();
    for p in doc["plugins"].as_array_mut().unwrap() {
        if p["type"] == "burst-prefix-cache-producer" {
            p["parameters"]["windowDurationMs"] = json!(window_ms);
        }
    }
    doc
}

fn start(picker: Value) -> Env {
    let env = Env::start(EnvSpec {
        concurrency: if e2e::native() { 4 } else { 1 },
        picker,
        ..EnvSpec::default()
    });
    for b in &env.backends {
        b.set(json!({"waiting": 0, "kv": 0.2}));
    }
    env.settle();
    env
}

/// Sends every prompt of `prompts` at once, each on its own connection, and returns the server
/// that answered each, in the same order.
fn send_together(env: &Env, prompts: &[String]) -> Vec<String> {
    let barrier = Barrier::new(prompts.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let r = env.complete(MODEL, p, &[]);
                    assert_eq!(r.status, 200, "{}", r.body);
                    r.pod().to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn the_samples_of_each_prompt_sent_together_are_served_by_one_server() {
    // A long window, so that every request of the burst joins one batch even on a loaded
    // machine.
    let env = start(sample_with_window(1500));
    let a = format!(
        "{} Solve step by step: 17 * 23.",
        "Rollout group A system prompt. ".repeat(30)
    );
    let b = format!(
        "{} Write a haiku about Envoy.",
        "Rollout group B system prompt. ".repeat(30)
    );
    let prompts: Vec<String> = (0..12)
        .map(|i| if i % 2 == 0 { a.clone() } else { b.clone() })
        .collect();
    let served = send_together(&env, &prompts);
    let mut groups: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (p, pod) in prompts.iter().zip(&served) {
        groups
            .entry(if *p == a { "A" } else { "B" })
            .or_default()
            .insert(pod.as_str());
    }
    println!(
        "{} build: 6 samples each of 2 prompts sent together: {groups:?}",
        if e2e::native() {
            "native (4 workers)"
        } else {
            "wasm (1 worker)"
        }
    );
    assert_eq!(groups["A"].len(), 1, "group A on one server: {groups:?}");
    assert_eq!(groups["B"].len(), 1, "group B on one server: {groups:?}");
    assert_ne!(
        groups["A"], groups["B"],
        "the two groups are balanced over the servers: {groups:?}"
    );
}

#[test]
fn the_upstream_sample_loads_unchanged_and_serves_lone_and_body_less_requests() {
    let env = start(upstream_sample());
    // A lone prompt is held for the window, gets no placement, and is served.
    let r = env.complete(MODEL, "a lone question", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.pod().starts_with("pod-"), "{:?}", r.headers);
    // A body-less request is not held.
    let r = env.get("/v1/models");
    assert_eq!(r.status, 200, "{}", r.body);
    // Several lone prompts at once: all served.
    let prompts: Vec<String> = (0..6).map(|i| format!("lone question {i}")).collect();
    let served = send_together(&env, &prompts);
    assert!(served.iter().all(|p| p.starts_with("pod-")), "{served:?}");
}
