//! `/metrics` responses that break after their headers, and metric values that are not
//! readings (issue 17). For each fault on one of three endpoints: no panic in Envoy's log, the
//! scraper keeps scraping the healthy endpoints, 6 of 6 requests succeed, the bad endpoint leaves
//! the candidates and comes back once it answers properly again. The same faults against the
//! native build's `direct` scrape transport (its own HTTP client instead of Envoy's callouts),
//! and that transport's other promise: Envoy's cluster carries no scrape.

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
    survives_every_fault(json!({}));
}

#[test]
fn the_direct_transport_survives_broken_metrics_responses() {
    if !e2e::native() {
        println!("skipped: the direct scrape transport is the native build's");
        return;
    }
    survives_every_fault(json!({"transport": "direct"}));
}

/// Every fault of [`FAULTS`] on one endpoint, with `scrape` merged into `pool.scrape`.
fn survives_every_fault(scrape: serde_json::Value) {
    let mut spec = json!({"staleness": "1s", "timeout": "300ms"});
    e2e::merge(&mut spec, &scrape);
    let env = Env::start(EnvSpec {
        // Staleness 1 s, and a scrape timeout short enough that a stalled body fails fast.
        pool: json!({ "scrape": spec }),
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
    // The native build moves the scraper's counts into Envoy's stats on the main thread's tick.
    env.settle_stats();
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

/// The native build's `direct` transport: the scrape thread fetches the pages itself, so the
/// pool's cluster sees only inference requests; routing follows the metrics it reads, a server
/// that stops answering leaves the candidates and comes back when it answers again.
#[test]
fn the_direct_transport_scrapes_around_envoy() {
    if !e2e::native() {
        println!("skipped: the direct scrape transport is the native build's");
        return;
    }
    let (backends, picker) = e2e::three_backends(
        json!({"scrape": {"transport": "direct", "staleness": "1s", "timeout": "300ms"}}),
    );
    let env = Env::start_with(backends, picker, e2e::StartOptions::default())
        .unwrap_or_else(|log| panic!("envoy did not start:\n{log}"));
    // Scraped for a while with no inference traffic: every scrape went around Envoy.
    std::thread::sleep(Duration::from_millis(600));
    env.settle_stats();
    let scraped = env.stat("endpoint_picker.scrape.success").unwrap_or(0);
    assert!(
        scraped >= 3 * 5,
        "the scrape thread scraped ({scraped})\n{}",
        env.log()
    );
    assert_eq!(
        env.stat("cluster.inference_pool.upstream_rq_total")
            .unwrap_or(0),
        0,
        "no scrape went through Envoy's cluster"
    );
    assert_eq!(env.stat("endpoint_picker.endpoints.total"), Some(3));

    // Routing follows what the thread reads.
    env.backends[1].set(json!({"waiting": 0, "kv": 0.0}));
    env.backends[0].set(json!({"waiting": 5, "kv": 0.5}));
    env.backends[2].set(json!({"waiting": 5, "kv": 0.5}));
    env.settle();
    for i in 0..6 {
        assert_eq!(env.complete(MODEL, &format!("q{i}"), &[]).pod(), "pod-b");
    }

    // A server that answers its metrics with errors leaves the candidates, and returns.
    env.backends[1].set(json!({"waiting": 0, "kv": 0.0, "metrics": "500-cut"}));
    let gone = e2e::time_until_no_traffic(&env, MODEL, "pod-b", Duration::from_secs(6));
    assert!(
        gone.is_some_and(|d| d < Duration::from_secs(2)),
        "a server whose scrapes fail leaves the candidates ({gone:?})"
    );
    env.backends[1].set(json!({"waiting": 0, "kv": 0.0}));
    let back = env.wait_until(Duration::from_secs(5), |e| {
        e.complete(MODEL, "back", &[]).pod() == "pod-b"
    });
    assert!(back.is_some(), "it returns once its metrics are good again");
    env.settle_stats();
    assert!(env.stat("endpoint_picker.scrape.failure").unwrap_or(0) > 0);
    let log = env.log();
    assert!(!log.contains("panic"), "{log}");
}
