//! llm-d's burst co-location (`burst-prefix-cache-producer`) in real Envoy: requests that arrive
//! together are held for the batch window, placed together, and the samples of one prompt are
//! served by one server. The native build shares one batch across Envoy's 4 workers; the Wasm
//! build batches per worker VM, so it runs with one worker here. The last test measures what
//! the window adds over GIE's default profile in the native build (BENCHMARKS.md).

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

/// Rounds of [`burst_rounds`]: `(groups on one server, rounds with both groups on one
/// server)` out of 20 groups and 10 rounds. Each round sends 6 samples each of 2 new prompts at
/// once on 12 connections.
fn burst_rounds(env: &Env) -> (usize, usize) {
    let (mut whole, mut together) = (0, 0);
    for round in 0..10 {
        let a = format!(
            "{} Solve: 17 * 23.",
            format!("Round {round} group A system prompt. ").repeat(30)
        );
        let b = format!(
            "{} A haiku.",
            format!("Round {round} group B system prompt. ").repeat(30)
        );
        let prompts: Vec<String> = (0..12)
            .map(|i| if i % 2 == 0 { a.clone() } else { b.clone() })
            .collect();
        let served = send_together(env, &prompts);
        let mut groups: BTreeMap<bool, BTreeSet<&str>> = BTreeMap::new();
        for (p, pod) in prompts.iter().zip(&served) {
            groups.entry(*p == a).or_default().insert(pod.as_str());
        }
        whole += groups.values().filter(|g| g.len() == 1).count();
        if groups.values().all(|g| g.len() == 1) && groups[&true] == groups[&false] {
            together += 1;
        }
    }
    (whole, together)
}

/// What the batch window adds in the native build, where every worker schedules against one
/// prefix index that records each request as it is scheduled: GIE's default profile (no
/// window) already sends most samples of a prompt sent together to one server, as the first
/// sample's record steers the rest; the burst sample places every group whole and spreads the
/// groups over the servers. (The Wasm build keeps an index and a batch per worker VM, so with
/// several workers neither holds there.)
#[test]
fn without_a_window_the_shared_index_already_keeps_most_simultaneous_samples_together() {
    if !e2e::native() {
        return;
    }
    let default = start(json!({}));
    let (default_whole, default_together) = burst_rounds(&default);
    drop(default);
    let burst = start(upstream_sample());
    let (burst_whole, burst_together) = burst_rounds(&burst);
    println!(
        "native, 4 workers, 3 servers, 10 rounds of 2 prompts x 6 samples sent together: \
         GIE default profile {default_whole}/20 groups on one server, both groups on the same \
         server in {default_together}/10 rounds; burst sample {burst_whole}/20, \
         {burst_together}/10"
    );
    assert_eq!((burst_whole, burst_together), (20, 0));
    // Seen 39 of 40 over two runs; a loaded machine may race more schedulings.
    assert!(default_whole >= 15, "{default_whole}/20");
}
