//! `/metrics` responses that break after their headers, and metric values that are not
//! readings (issue 17). For each fault on one of three endpoints: no panic in Envoy's log, the
//! scraper keeps scraping the healthy endpoints, 6 of 6 requests succeed, the bad endpoint leaves
//! the candidates and comes back once it answers properly again.

use std::time::{Duration, Instant};

use e2e::{Env, EnvSpec};
use serde_json::json;

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

/// Every fault mode of the fake server's `/metrics` (see `fake_model_server.rs`).
const FAULTS: &[&str] = &[
    "truncated",
    "cut-chunk",
    "stall-body",
    "500-cut",
    "headers-only",
    "nan",
    "inf",
    "neg-inf",
    "negative",
];

#[test]
fn broken_metrics_responses_never_take_the_scraper_down() {
    let env = Env::start(EnvSpec {
        // Staleness 1 s, and a scrape timeout short enough that a stalled body fails fast.
        pool: json!({"scrape": {"staleness": "1s", "timeout": "300ms"}}),
        ..EnvSpec::default()
    });
    let bad = &env.backends[0];
    let pod = bad.name.clone();
    for fault in FAULTS {
        // The endpoint under test is the best one while its metrics are good.
        bad.set(json!({"waiting": 0, "kv": 0.0}));
        env.backends[1].set(json!({"waiting": 5, "kv": 0.5}));
        env.backends[2].set(json!({"waiting": 5, "kv": 0.5}));
        let back = env.wait_until(Duration::from_secs(5), |e| {
            e.complete(MODEL, "before", &[]).pod() == pod
        });
        assert!(
            back.is_some(),
            "{fault}: {pod} is not picked before the fault"
        );

        let failures_before = env.stat("endpoint_picker.scrape.failure").unwrap_or(0);
        bad.set(json!({"waiting": 0, "kv": 0.0, "metrics": fault}));
        let gone = e2e::time_until_no_traffic(&env, MODEL, &pod, Duration::from_secs(6));
        println!(
            "/metrics {fault}: last request on {pod} {gone:?} after the fault (staleness 1 s)"
        );
        assert!(
            gone.is_some_and(|d| d < Duration::from_secs(2)),
            "{fault}: the bad endpoint must leave the candidates ({gone:?})"
        );
        let ok = (0..6)
            .map(|i| env.complete(MODEL, &format!("{fault} {i}"), &[]))
            .filter(|r| r.status == 200 && r.pod() != pod)
            .count();
        assert_eq!(ok, 6, "{fault}: healthy endpoints keep serving");
        assert!(
            env.stat("endpoint_picker.scrape.failure").unwrap_or(0) > failures_before,
            "{fault}: counted as a failed scrape"
        );
        let log = env.log();
        assert!(
            !log.contains("panicked") && !log.contains("wasm trap"),
            "{fault}: the VM must not panic\n{log}"
        );
    }
    // Recovery after the last fault, and the scraper is still scraping.
    bad.set(json!({"waiting": 0, "kv": 0.0}));
    let success = env.stat("endpoint_picker.scrape.success").unwrap_or(0);
    let back = env.wait_until(Duration::from_secs(5), |e| {
        e.complete(MODEL, "after", &[]).pod() == pod
    });
    println!("after the last fault: traffic back on {pod} after {back:?}");
    assert!(back.is_some(), "the endpoint returns when it recovers");
    assert!(env.stat("endpoint_picker.scrape.success").unwrap_or(0) > success);
    assert_eq!(
        env.stat("endpoint_picker.scraper.takeovers").unwrap_or(0),
        0
    );
}

/// Filter-only mode: no bootstrap scraper at all. Wasm: the standby scraper in a worker's picker
/// VM notices the lapsed lease, takes it, and scrapes for every worker. Native: the HTTP filter
/// configuration scrapes itself (a ticker thread posts ticks to the main thread, callouts go out
/// from the configuration).
#[test]
fn without_a_bootstrap_scraper_the_filter_scrapes() {
    let backends = ["pod-a", "pod-b", "pod-c"]
        .iter()
        .map(|n| e2e::Backend::spawn(n))
        .collect::<Vec<_>>();
    let endpoints: Vec<_> = backends
        .iter()
        .map(|b| json!({"address": b.addr.to_string(), "labels": {"engine-type": "vllm"}}))
        .collect();
    let picker =
        json!({"pool": {"cluster": "inference_pool", "endpoints": endpoints, "debug": true}});
    let start = Instant::now();
    let env = Env::start_with(
        backends,
        picker,
        e2e::StartOptions {
            concurrency: 4,
            filter_only: true,
            ..e2e::StartOptions::default()
        },
    )
    .unwrap_or_else(|log| panic!("envoy did not start:\n{log}"));
    println!(
        "filter-only: every endpoint scraped {:?} after Envoy was started",
        start.elapsed()
    );
    env.backends[2].set(json!({"waiting": 0, "kv": 0.0}));
    env.backends[0].set(json!({"waiting": 5, "kv": 0.5}));
    env.backends[1].set(json!({"waiting": 5, "kv": 0.5}));
    env.settle();
    for i in 0..6 {
        let r = env.complete(MODEL, &format!("q{i}"), &[]);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.pod(),
            "pod-c",
            "metrics scraped without a bootstrap scraper"
        );
    }
    if e2e::native() {
        env.settle_stats();
        assert!(env.stat("endpoint_picker.scrape.success").unwrap_or(0) > 0);
        assert!(
            env.stat("endpoint_picker.endpoints.total") == Some(3),
            "{}",
            env.stats()
        );
    } else {
        assert!(env.stat("endpoint_picker.snapshot.generation").unwrap_or(0) > 0);
        assert!(env.stat("endpoint_picker.snapshot.age_ms").is_some());
    }
}
