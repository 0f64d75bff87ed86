//! Endpoints that fail: a `/metrics` that stops answering drops out of the pool within twice
//! the staleness threshold; an endpoint killed under load costs no client error.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{Env, EnvSpec};
use serde_json::json;

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

#[test]
fn endpoint_whose_metrics_stop_answering_stops_receiving_traffic() {
    let env = Env::start(EnvSpec::default()); // staleness 2 s (the default)
                                              // pod-a is the best endpoint until its /metrics hangs (each scrape then times out).
    env.backends[0].set(json!({"waiting": 0, "kv": 0.0}));
    env.backends[1].set(json!({"waiting": 5, "kv": 0.5}));
    env.backends[2].set(json!({"waiting": 5, "kv": 0.5}));
    env.settle();
    assert_eq!(env.complete(MODEL, "before", &[]).pod(), "pod-a");
    env.backends[0].set(json!({"waiting": 0, "kv": 0.0, "metrics": "hang"}));
    let start = Instant::now();
    let mut last_on_a = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(6) {
        let r = env.complete(MODEL, "during", &[]);
        assert_eq!(r.status, 200);
        if r.pod() == "pod-a" {
            last_on_a = start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("last request on the endpoint with hanging /metrics: {last_on_a:?} after the hang (staleness 2 s)");
    assert!(
        last_on_a < Duration::from_secs(4),
        "must stop within 2 × staleness, took {last_on_a:?}"
    );
    assert!(env.stat("endpoint_picker.endpoints.stale").unwrap_or(0) >= 1);
}

#[test]
fn endpoint_killed_under_load_costs_no_client_error() {
    let mut env = Env::start(EnvSpec::default());
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU32::new(0));
    let total = Arc::new(AtomicU32::new(0));
    let listen = env.listen;
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, errors, total) = (stop.clone(), errors.clone(), total.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = json!({"model": MODEL, "prompt": format!("worker {w} request {i}")})
                        .to_string();
                    let ok = ureq::post(&format!("http://{listen}/v1/completions"))
                        .set("content-type", "application/json")
                        .timeout(Duration::from_secs(10))
                        .send_string(&body)
                        .map(|r| r.status() == 200)
                        .unwrap_or(false);
                    total.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    env.backends[1].kill();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let (errors, total) = (
        errors.load(Ordering::Relaxed),
        total.load(Ordering::Relaxed),
    );
    println!("killed one of 3 endpoints under load: {errors} client errors in {total} requests");
    assert!(total > 100, "the load ran ({total} requests)");
    assert_eq!(errors, 0, "retries to another endpoint hide the dead one");
    // After the staleness threshold nothing is sent to it any more.
    for _ in 0..20 {
        assert_ne!(env.complete(MODEL, "after", &[]).pod(), "pod-b");
    }
}

#[test]
fn endpoint_answering_500_costs_no_client_error() {
    let env = Env::start(EnvSpec::default());
    // The broken endpoint looks the best, so the picker keeps choosing it; each 500 is retried
    // on another endpoint (retry_on 5xx, previous_hosts).
    env.backends[0].set(json!({"waiting": 0, "kv": 0.0, "inference": "500"}));
    env.backends[1].set(json!({"waiting": 3, "kv": 0.4}));
    env.backends[2].set(json!({"waiting": 3, "kv": 0.4}));
    env.settle();
    let mut errors = 0;
    for i in 0..50 {
        let r = env.complete(MODEL, &format!("q{i}"), &[]);
        if r.status != 200 {
            errors += 1;
        }
        assert_ne!(r.pod(), "pod-a");
        if r.status == 200 {
            // After the retry the response hooks (and the debug header) name the endpoint that
            // really served, not the primary the picker chose.
            assert_eq!(
                r.header("x-gateway-destination-endpoint-served"),
                Some(env.backend(r.pod()).addr.to_string().as_str()),
                "served endpoint after a retry"
            );
        }
    }
    println!("endpoint answering 500: {errors} client errors in 50 requests");
    assert_eq!(errors, 0);
}

#[test]
fn huge_or_garbage_metrics_drop_the_endpoint_and_it_comes_back() {
    let env = Env::start(EnvSpec {
        pool: json!({"scrape": {"staleness": "1s"}}),
        ..EnvSpec::default()
    });
    for (mode, pod) in [("huge", 0usize), ("garbage", 1usize)] {
        let name = env.backends[pod].name.clone();
        for (i, b) in env.backends.iter().enumerate() {
            b.set(if i == pod {
                json!({"waiting": 0, "kv": 0.0})
            } else {
                json!({"waiting": 5, "kv": 0.5})
            });
        }
        env.settle();
        assert_eq!(env.complete(MODEL, "before", &[]).pod(), name);
        env.backends[pod].set(json!({"waiting": 0, "kv": 0.0, "metrics": mode}));
        let gone = e2e::time_until_no_traffic(&env, MODEL, &name, Duration::from_secs(6));
        println!("/metrics {mode}: last request on it {gone:?} after the change (staleness 1 s)");
        assert!(
            gone.is_some_and(|d| d < Duration::from_secs(2)),
            "{mode}: {gone:?}"
        );
        // The endpoint comes back: good metrics again, and it is the best endpoint.
        env.backends[pod].set(json!({"waiting": 0, "kv": 0.0}));
        let back = env.wait_until(Duration::from_secs(5), |e| {
            e.complete(MODEL, "after", &[]).pod() == name
        });
        println!("/metrics {mode} fixed: traffic back after {back:?}");
        assert!(back.is_some(), "{mode}: the endpoint did not come back");
    }
    assert!(env.stat("endpoint_picker.scrape.failure").unwrap_or(0) > 0);
}
