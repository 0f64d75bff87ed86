//! Envoy with 4 workers (`--concurrency 4`), as production runs it: with the native module every
//! worker shares one scheduler state, so prefix affinity and in-flight counts hold across
//! connections that land on different workers. The Wasm build keeps one state per worker VM;
//! the same tests report how far it spreads instead of asserting affinity.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{Env, EnvSpec};
use serde_json::json;

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

fn four_workers(picker: serde_json::Value) -> Env {
    let env = Env::start(EnvSpec {
        concurrency: 4,
        picker,
        backends: vec!["pod-a".into(), "pod-b".into(), "pod-c".into()],
        ..EnvSpec::default()
    });
    for b in &env.backends {
        b.set(json!({"waiting": 1, "kv": 0.2}));
    }
    env.settle();
    env
}

/// POSTs `body` on a new connection (a fresh agent: no keep-alive shared with other threads),
/// returns the pod that served.
fn post_fresh(listen: std::net::SocketAddr, body: &str) -> String {
    let agent = ureq::AgentBuilder::new().build();
    match agent
        .post(&format!("http://{listen}/v1/completions"))
        .set("content-type", "application/json")
        .timeout(Duration::from_secs(30))
        .send_string(body)
    {
        Ok(r) => r.header("x-inference-pod").unwrap_or("").to_string(),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn one_prefix_over_four_connections_lands_on_one_endpoint() {
    let env = four_workers(json!({}));
    let system = "You are a meticulous assistant for a logistics company. ".repeat(40);
    let first = post_fresh(
        env.listen,
        &json!({"model": MODEL, "prompt": format!("{system} question 0")}).to_string(),
    );
    let listen = env.listen;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let system = system.clone();
            std::thread::spawn(move || {
                (0..8)
                    .map(|i| {
                        let body = json!({"model": MODEL, "prompt": format!("{system} thread {t} question {i}")});
                        post_fresh(listen, &body.to_string())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for t in threads {
        for pod in t.join().unwrap_or_default() {
            *seen.entry(pod).or_default() += 1;
        }
    }
    println!(
        "{} build, 4 workers: first request on {first}; 32 requests with its prefix over 32 connections: {seen:?}",
        if e2e::native() { "native" } else { "wasm" }
    );
    assert!(
        seen.keys().all(|p| p.starts_with("pod-")),
        "every request served: {seen:?}"
    );
    if e2e::native() {
        assert_eq!(
            seen.get(&first).copied(),
            Some(32),
            "one shared prefix index: every request follows the first"
        );
    }
}

#[test]
fn in_flight_counts_are_shared_by_all_workers() {
    // Only the in-flight requests decide: each of 6 staggered, long requests (1.5 s) goes to
    // the endpoint with the fewest in flight, whichever worker its connection landed on.
    let env = four_workers(json!({
        "featureGates": ["activeRequestScorer"],
        "plugins": [
            {"type": "active-request-scorer"},
            {"type": "max-score-picker"}
        ],
        "schedulingProfiles": [{"name": "default", "plugins": [
            {"pluginRef": "active-request-scorer", "weight": 1},
            {"pluginRef": "max-score-picker"}
        ]}]
    }));
    for b in &env.backends {
        b.set(json!({"waiting": 1, "kv": 0.2, "delay_ms": 1500}));
    }
    let listen = env.listen;
    let threads: Vec<_> = (0..6)
        .map(|i| {
            std::thread::sleep(Duration::from_millis(80));
            std::thread::spawn(move || {
                post_fresh(
                    listen,
                    &json!({"model": MODEL, "prompt": format!("long request {i}")}).to_string(),
                )
            })
        })
        .collect();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for t in threads {
        *seen.entry(t.join().unwrap_or_default()).or_default() += 1;
    }
    println!(
        "{} build, 4 workers: 6 concurrent long requests by active-request-scorer: {seen:?}",
        if e2e::native() { "native" } else { "wasm" }
    );
    assert!(seen.keys().all(|p| p.starts_with("pod-")), "{seen:?}");
    if e2e::native() {
        assert_eq!(
            seen.values().copied().collect::<Vec<_>>(),
            [2, 2, 2],
            "exact shared counts spread the requests evenly: {seen:?}"
        );
    }
}
