//! Flow control in real Envoy (issue 12), against both builds: requests wait in the proxy while
//! the pool is saturated and leave by priority; a wait that runs out its TTL gets 429 with an
//! OpenAI-style body and `Retry-After`; a client that leaves while queued frees its place; with
//! `enableEviction` a sheddable request already at the server is answered 429 `evicted` (and its
//! upstream stream reset) so a waiting critical request can go.
//!
//! The pool is one fake model server that holds every response for `delay_ms`, and the saturation
//! detector is `concurrency-detector` with `maxConcurrency: 1`, so one request in flight
//! saturates the pool. One Envoy worker: the Wasm build keeps one queue per worker VM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{Env, EnvSpec};
use serde_json::{json, Value};

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

/// Finished requests: label, status, when (since the test's start).
type Done = Arc<Mutex<Vec<(&'static str, u16, Duration)>>>;

fn start(flow_control: Value) -> Env {
    start_with(flow_control, 1)
}

fn start_with(flow_control: Value, workers: u32) -> Env {
    Env::start(EnvSpec {
        backends: vec!["pod-a".into()],
        concurrency: workers,
        picker: picker(flow_control),
        ..EnvSpec::default()
    })
}

/// The picker JSON of these tests (without `pool`): see [`e2e::one_in_flight_picker`].
fn picker(flow_control: Value) -> Value {
    e2e::one_in_flight_picker(flow_control)
}

/// Sends a completion in the background; the status and the time it finished (since `t0`) go to
/// `done` under `label`.
fn send(
    env: &Arc<Env>,
    label: &'static str,
    objective: Option<&'static str>,
    t0: Instant,
    done: &Done,
) -> std::thread::JoinHandle<()> {
    let env = env.clone();
    let done = done.clone();
    std::thread::spawn(move || {
        let headers: Vec<(&str, &str)> = objective
            .map(|o| vec![("x-llm-d-inference-objective", o)])
            .unwrap_or_default();
        let r = env.complete(MODEL, label, &headers);
        done.lock().unwrap().push((label, r.status, t0.elapsed()));
    })
}

#[test]
fn a_high_priority_request_queued_behind_low_priority_ones_is_dispatched_first() {
    priority_order(1);
}

/// The native build keeps one set of queues for the whole process: with 4 workers the requests
/// arrive on different connections (so, likely, different workers) and still leave in priority
/// order. (The Wasm build has one queue per worker VM, so this holds per worker only.)
#[test]
fn native_queues_are_shared_by_every_worker() {
    if !e2e::native() {
        return;
    }
    priority_order(4);
}

fn priority_order(workers: u32) {
    let env = Arc::new(start_with(json!({"defaultRequestTTL": "30s"}), workers));
    env.backend("pod-a").set(json!({"delay_ms": 700}));
    let t0 = Instant::now();
    let done = Arc::new(Mutex::new(Vec::new()));
    // The first saturates the pool (1 in flight); the others queue in arrival order: two
    // sheddable, then one critical.
    let mut threads = vec![send(&env, "first", None, t0, &done)];
    std::thread::sleep(Duration::from_millis(150));
    for (label, objective) in [("low-1", "batch"), ("low-2", "batch"), ("high", "critical")] {
        threads.push(send(&env, label, Some(objective), t0, &done));
        std::thread::sleep(Duration::from_millis(100));
    }
    for t in threads {
        t.join().unwrap();
    }
    let done = done.lock().unwrap();
    let order: Vec<&str> = done.iter().map(|(l, _, _)| *l).collect();
    assert!(done.iter().all(|(_, s, _)| *s == 200), "{done:?}");
    assert_eq!(order, ["first", "high", "low-1", "low-2"], "{done:?}");
    // They were held, not sent to the server at once: each waited for the one before.
    let at = |l: &str| done.iter().find(|(x, _, _)| *x == l).unwrap().2;
    assert!(at("low-2") >= Duration::from_millis(4 * 700), "{done:?}");
    // Both builds flush at most once a second (the Wasm VM on its tick).
    std::thread::sleep(Duration::from_millis(1500));
    let text = env.prometheus();
    // Each request counted once by its band and outcome; the queued ones' admissions are timed
    // under upstream's label for an item left waiting.
    let flow: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("flow_control"))
        .collect();
    let value = |needles: &[&str]| {
        flow.iter()
            .find(|l| !l.starts_with('#') && needles.iter().all(|n| l.contains(n)))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    for (band, outcome, n) in [
        ("0", "Dispatched", 1.0),
        ("-1", "Dispatched", 2.0),
        ("10", "Dispatched", 1.0),
    ] {
        let (band, outcome) = (
            format!("priority=\"{band}\""),
            format!("outcome=\"{outcome}\""),
        );
        assert_eq!(
            value(&["llm_d_epp_flow_control_requests_total{", &band, &outcome]),
            Some(n),
            "{band} {outcome}: {flow:#?}"
        );
    }
    assert_eq!(
        value(&[
            "llm_d_epp_flow_control_request_enqueue_duration_seconds_count",
            "outcome=\"NotYetFinalized\"",
            "priority=\"-1\""
        ]),
        Some(2.0),
        "{flow:#?}"
    );
    assert!(
        text.contains("inference_extension_flow_control_request_queue_duration_seconds_count")
            && text.contains("outcome=\"Dispatched\""),
        "queue wait histogram: {}",
        text.lines()
            .filter(|l| l.contains("flow_control"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_wait_past_the_ttl_gets_429_with_a_json_body_and_retry_after() {
    let env = Arc::new(start(json!({"defaultRequestTTL": "300ms"})));
    env.backend("pod-a").set(json!({"delay_ms": 2000}));
    let t0 = Instant::now();
    let done = Arc::new(Mutex::new(Vec::new()));
    let first = send(&env, "first", None, t0, &done);
    std::thread::sleep(Duration::from_millis(150));
    let start = Instant::now();
    let r = env.complete(MODEL, "late", &[]);
    let waited = start.elapsed();
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.json()["error"]["code"], "queue_timeout");
    assert_eq!(r.json()["error"]["type"], "rate_limit_exceeded");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        r.header("x-llm-d-request-dropped-reason"),
        Some("rejected-ttl-expired")
    );
    assert_eq!(r.pod(), "", "never reached the server");
    // The TTL (300 ms) plus at most a tick or two of the expiry sweep.
    assert!(
        waited >= Duration::from_millis(280) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    first.join().unwrap();
    assert_eq!(done.lock().unwrap()[0].1, 200);
}

#[test]
fn a_client_that_leaves_while_queued_leaves_no_slot_behind() {
    // One request may wait: if the one that left kept its place, the next would be refused.
    let env = Arc::new(start(json!({"defaultRequestTTL": "30s", "maxRequests": 1})));
    env.backend("pod-a").set(json!({"delay_ms": 3000}));
    let t0 = Instant::now();
    let done = Arc::new(Mutex::new(Vec::new()));
    let first = send(&env, "first", None, t0, &done);
    std::thread::sleep(Duration::from_millis(150));
    // A queued request of a tenant's flow whose client hangs up.
    let body = json!({"model": MODEL, "prompt": "gone"}).to_string();
    let mut s = TcpStream::connect(env.listen).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nhost: x\r\nx-llm-d-inference-fairness-id: tenant-x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // While it waits, the queue gauge shows it under its flow (the gauges move at each
    // metrics flush, at most a second apart).
    let waiting = |text: &str| {
        text.lines().any(|l| {
            l.contains("inference_extension_flow_control_queue_size{")
                && l.contains("fairness_id=\"tenant-x\"")
                && l.ends_with(" 1")
        })
    };
    let deadline = Instant::now() + Duration::from_millis(1800);
    let mut text = env.prometheus();
    while !waiting(&text) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        text = env.prometheus();
    }
    assert!(
        waiting(&text),
        "{}",
        text.lines()
            .filter(|l| l.contains("queue_size"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let mut buf = [0u8; 64];
    assert!(s.read(&mut buf).is_err(), "still queued: no answer yet");
    drop(s);
    std::thread::sleep(Duration::from_millis(200));
    // The queue has room again: this one waits (not 429) and is served after the first.
    let r = env.complete(MODEL, "next", &[]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    first.join().unwrap();
    env.settle_stats();
    let text = env.prometheus();
    let line = |needles: &[&str]| {
        text.lines()
            .find(|l| !l.starts_with('#') && needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert!(
        line(&[
            "_count",
            "outcome=\"EvictedContextCancelled\"",
            "fairness_id=\"tenant-x\""
        ])
        .ends_with(" 1"),
        "{}",
        text.lines()
            .filter(|l| l.contains("flow_control"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for flow in ["tenant-x", "default-flow"] {
        let size = line(&[
            "inference_extension_flow_control_queue_size",
            &format!("fairness_id=\"{flow}\""),
        ]);
        assert!(size.ends_with(" 0"), "queue empty at the end: {size}");
    }
    // Only the two served requests reached the server.
    assert_eq!(env.stat_sum("picks"), 2, "{}", env.stats());
}

/// The configuration examples of GIE v1.5.0's flow-control guide (`site-src/guides/flow-control.md`:
/// the `concurrency-detector` tuning example and the priority-band block), as one picker
/// configuration: Envoy accepts it and an idle pool serves at once.
#[test]
fn the_flow_control_guides_configuration_loads_and_serves() {
    let env = Env::start(EnvSpec {
        backends: vec!["pod-a".into(), "pod-b".into()],
        concurrency: 1,
        picker: json!({
            "featureGates": ["flowControl"],
            "plugins": [{"type": "concurrency-detector",
                         "parameters": {"concurrencyMode": "requests", "maxConcurrency": 110}}],
            "saturationDetector": {"pluginRef": "concurrency-detector"},
            "flowControl": {
                "maxBytes": 1000000000,
                "defaultRequestTTL": "30s",
                "priorityBands": [{
                    "priority": 100,
                    "maxBytes": 500000000,
                    "fairnessPolicyRef": "global-strict-fairness-policy",
                    "orderingPolicyRef": "fcfs-ordering-policy"
                }]
            }
        }),
        ..EnvSpec::default()
    });
    for i in 0..4 {
        let r = env.complete(MODEL, &format!("hello {i}"), &[]);
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert!(!r.pod().is_empty());
    }
    // llm-d's flow-control series: every request counted by outcome and band, the admissions and
    // dispatch cycles timed, and each band's fill against its limits — the configured band 100
    // before its first request, the global byte limit, no global request series (no limit).
    // Both builds flush at most once a second.
    std::thread::sleep(Duration::from_millis(1500));
    let text = env.prometheus();
    let flow: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("flow_control") && !l.starts_with('#'))
        .collect();
    let value = |needles: &[&str]| {
        flow.iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(
        value(&[
            "llm_d_epp_flow_control_requests_total{",
            "outcome=\"Dispatched\"",
            "priority=\"0\""
        ]),
        Some(4.0),
        "{flow:#?}"
    );
    assert_eq!(
        value(&[
            "llm_d_epp_flow_control_request_enqueue_duration_seconds_count",
            "outcome=\"Dispatched\"",
            "priority=\"0\""
        ]),
        Some(4.0),
        "{flow:#?}"
    );
    for series in [
        "endpoint_picker_flow_control_capacity_utilization_bytes_ppm{priority=\"100\"}",
        "endpoint_picker_flow_control_capacity_utilization_requests_ppm{priority=\"100\"}",
        "endpoint_picker_flow_control_capacity_utilization_requests_ppm{priority=\"0\"}",
        "endpoint_picker_flow_control_global_capacity_utilization_ppm{resource=\"bytes\"}",
    ] {
        assert_eq!(value(&[series]), Some(0.0), "{series}: {flow:#?}");
    }
    assert_eq!(
        value(&["global_capacity_utilization_ppm{resource=\"requests\"}"]),
        None,
        "{flow:#?}"
    );
    assert!(
        value(&["llm_d_epp_flow_control_dispatch_cycle_duration_seconds_count"])
            .is_some_and(|n| n >= 1.0),
        "{flow:#?}"
    );
}

/// With the default saturation detector (`utilization-detector`, which reads scraped
/// metrics), llm-d's `flow_control_stale_endpoints` gauge says how many endpoints it scores
/// saturated for stale metrics: none while the scraper keeps them fresh.
#[test]
fn the_utilization_detector_reports_its_stale_endpoints() {
    let env = Env::start(EnvSpec {
        backends: vec!["pod-a".into(), "pod-b".into()],
        concurrency: 1,
        picker: json!({"featureGates": ["flowControl"]}),
        ..EnvSpec::default()
    });
    let r = env.complete(MODEL, "hello", &[]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    std::thread::sleep(Duration::from_millis(1500));
    let text = env.prometheus();
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("llm_d_epp_flow_control_stale_endpoints{"))
        .unwrap_or_default();
    assert!(
        line.ends_with("{detector=\"utilization-detector\"} 0"),
        "{}",
        text.lines()
            .filter(|l| l.contains("flow_control"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `agent-identity` (llm-d) gives each coding-agent session its own flow: with round-robin
/// fairness, a second session's request is not left behind a first session's burst. Session A
/// (Claude Code's header) queues three requests, then session B (OpenCode's header) one; B's is
/// among the first two to leave. Without the plugin all four share `default-flow` and leave in
/// arrival order (B last), which the second half checks.
#[test]
fn agent_sessions_get_flows_of_their_own() {
    for (with_plugin, b_within) in [(true, 2), (false, 4)] {
        let mut plugins = vec![
            json!({"type": "concurrency-detector", "parameters": {"maxConcurrency": 1}}),
            json!({"type": "round-robin-fairness-policy"}),
            json!({"type": "queue-scorer"}),
            json!({"type": "max-score-picker"}),
        ];
        if with_plugin {
            plugins.push(json!({"type": "agent-identity"}));
        }
        let env = Arc::new(Env::start(EnvSpec {
            backends: vec!["pod-a".into()],
            concurrency: 1,
            picker: json!({
                "featureGates": ["flowControl"],
                "plugins": plugins,
                "saturationDetector": {"pluginRef": "concurrency-detector"},
                "schedulingProfiles": [{"name": "default", "plugins": [
                    {"pluginRef": "queue-scorer"}, {"pluginRef": "max-score-picker"}
                ]}],
                "flowControl": {"defaultRequestTTL": "30s", "priorityBands": [
                    {"priority": 0, "fairnessPolicyRef": "round-robin-fairness-policy"}
                ]}
            }),
            ..EnvSpec::default()
        }));
        env.backend("pod-a").set(json!({"delay_ms": 500}));
        let t0 = Instant::now();
        let done: Done = Arc::new(Mutex::new(Vec::new()));
        let session = |label: &'static str, header: &'static str, id: &'static str| {
            let env = env.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let r = env.complete(MODEL, label, &[(header, id)]);
                done.lock().unwrap().push((label, r.status, t0.elapsed()));
            })
        };
        let mut threads = vec![send(&env, "first", None, t0, &done)];
        std::thread::sleep(Duration::from_millis(150));
        for label in ["a-1", "a-2", "a-3"] {
            threads.push(session(label, "x-claude-code-session-id", "session-a"));
            std::thread::sleep(Duration::from_millis(80));
        }
        threads.push(session("b-1", "x-session-affinity", "session-b"));
        for t in threads {
            t.join().unwrap();
        }
        let done = done.lock().unwrap();
        assert!(done.iter().all(|(_, s, _)| *s == 200), "{done:?}");
        let order: Vec<&str> = done.iter().map(|(l, _, _)| *l).collect();
        let b = order.iter().position(|l| *l == "b-1").unwrap();
        // Position among the four queued requests (after "first").
        assert!(
            b <= b_within && (with_plugin || b == 4),
            "agent-identity {with_plugin}: order {order:?}"
        );
    }
}

/// `program-aware-fairness` in Envoy: a tenant that already consumed many tokens waits behind
/// one that consumed few. "batch" and "chat" first each finish one request ("batch" with a
/// ~5,000-token prompt, "chat" with a short one; the usage comes from the responses). Then,
/// behind a request that holds the only slot, "batch" queues two requests and "chat" one, last:
/// with the policy "chat" leaves first; with global-strict (the control) in arrival order.
#[test]
fn program_aware_fairness_serves_the_least_served_tenant_first() {
    for (policy, chat_first) in [
        ("program-aware-fairness", true),
        ("global-strict-fairness-policy", false),
    ] {
        let env = Arc::new(Env::start(EnvSpec {
            backends: vec!["pod-a".into()],
            concurrency: 1,
            picker: json!({
                "featureGates": ["flowControl"],
                "plugins": [
                    {"type": "concurrency-detector", "parameters": {"maxConcurrency": 1}},
                    {"type": policy},
                    {"type": "queue-scorer"},
                    {"type": "max-score-picker"}
                ],
                "saturationDetector": {"pluginRef": "concurrency-detector"},
                "schedulingProfiles": [{"name": "default", "plugins": [
                    {"pluginRef": "queue-scorer"}, {"pluginRef": "max-score-picker"}
                ]}],
                "flowControl": {"defaultRequestTTL": "30s", "priorityBands": [
                    {"priority": 0, "fairnessPolicyRef": policy}
                ]}
            }),
            ..EnvSpec::default()
        }));
        let tenant = |id: &'static str| ("x-llm-d-inference-fairness-id", id);
        let long = "lorem ipsum ".repeat(1700);
        assert_eq!(env.complete(MODEL, &long, &[tenant("batch")]).status, 200);
        assert_eq!(env.complete(MODEL, "hi", &[tenant("chat")]).status, 200);
        env.backend("pod-a").set(json!({"delay_ms": 400}));
        let t0 = Instant::now();
        let done: Done = Arc::new(Mutex::new(Vec::new()));
        let queued = |label: &'static str, id: &'static str| {
            let env = env.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let r = env.complete(MODEL, label, &[("x-llm-d-inference-fairness-id", id)]);
                done.lock().unwrap().push((label, r.status, t0.elapsed()));
            })
        };
        let mut threads = vec![queued("holder", "other")];
        std::thread::sleep(Duration::from_millis(150));
        for (label, id) in [
            ("batch-1", "batch"),
            ("batch-2", "batch"),
            ("chat-1", "chat"),
        ] {
            threads.push(queued(label, id));
            std::thread::sleep(Duration::from_millis(80));
        }
        for t in threads {
            t.join().unwrap();
        }
        let done = done.lock().unwrap();
        assert!(done.iter().all(|(_, s, _)| *s == 200), "{done:?}");
        let order: Vec<&str> = done
            .iter()
            .map(|(l, _, _)| *l)
            .filter(|l| *l != "holder")
            .collect();
        if chat_first {
            assert_eq!(order.first(), Some(&"chat-1"), "{policy}: {order:?}");
        } else {
            assert_eq!(
                order,
                ["batch-1", "batch-2", "chat-1"],
                "{policy}: {order:?}"
            );
        }
    }
}

/// Two listeners with the picker (two filter configurations, each with its own flow-control
/// queues) in one Envoy: with the bootstrap scraper both flush into one process-wide series, and
/// the queue-depth gauge is the sum of their queues rather than whichever flushed last. Native
/// build (the Wasm build has no process-wide series: each VM sets its own).
#[test]
fn queue_gauges_add_up_across_two_listeners() {
    if !e2e::native() {
        return;
    }
    let backend = e2e::Backend::spawn("pod-a");
    let mut config = picker(json!({"defaultRequestTTL": "30s"}));
    config["pool"] =
        json!({"cluster": "inference_pool", "endpoints": [{"address": backend.addr.to_string()}]});
    // The rendered listener, twice: the copy on its own port and under its own name.
    let second_port = e2e::free_port();
    let opts = e2e::StartOptions {
        concurrency: 1,
        edit_yaml: Some(Box::new(move |y: String| {
            let (Some(start), Some(end)) =
                (y.find("  - name: inference\n"), y.find("  clusters:\n"))
            else {
                return y;
            };
            let listener = &y[start..end];
            let port_at = listener
                .find("port_value: ")
                .map(|i| i + "port_value: ".len());
            let copy = match port_at {
                Some(i) => {
                    let digits = listener[i..]
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(0);
                    format!("{}{second_port}{}", &listener[..i], &listener[i + digits..])
                }
                None => return y,
            }
            .replacen("  - name: inference\n", "  - name: inference-second\n", 1);
            format!("{}{copy}{}", &y[..end], &y[end..])
        })),
        ..e2e::StartOptions::default()
    };
    let env = Env::start_with(vec![backend], config, opts).unwrap_or_else(|log| panic!("{log}"));
    let second: std::net::SocketAddr = ([127, 0, 0, 1], second_port).into();
    env.backend("pod-a").set(json!({"delay_ms": 1500}));
    let send = |to: std::net::SocketAddr, prompt: &'static str| {
        std::thread::spawn(move || {
            let body = json!({"model": MODEL, "prompt": prompt, "max_tokens": 3}).to_string();
            match ureq::post(&format!("http://{to}/v1/completions"))
                .set("content-type", "application/json")
                .timeout(Duration::from_secs(30))
                .send_string(&body)
            {
                Ok(r) => r.status(),
                Err(ureq::Error::Status(s, _)) => s,
                Err(e) => panic!("{prompt}: {e}"),
            }
        })
    };
    // One request in flight per listener saturates each configuration's pool (its own in-flight
    // counts); the next one on each waits in that configuration's queue.
    let mut clients = vec![send(env.listen, "first-1"), send(second, "first-2")];
    std::thread::sleep(Duration::from_millis(200));
    clients.push(send(env.listen, "queued-1"));
    clients.push(send(second, "queued-2"));
    let queued = || -> u64 {
        env.prometheus()
            .lines()
            .filter(|l| {
                !l.starts_with('#') && l.contains("inference_extension_flow_control_queue_size")
            })
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .map(|v| v as u64)
            .sum()
    };
    let deadline = Instant::now() + Duration::from_millis(1000);
    let mut seen = 0;
    while Instant::now() < deadline && seen < 2 {
        std::thread::sleep(Duration::from_millis(50));
        seen = queued();
    }
    assert_eq!(seen, 2, "both listeners' waiting requests in the one gauge");
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    env.settle_stats();
    assert_eq!(queued(), 0, "queues empty at the end");
    assert_eq!(env.stat_sum("picks"), 4, "{}", env.stats());
}

#[test]
fn a_sheddable_request_in_flight_is_evicted_for_a_waiting_critical_one() {
    eviction(1);
}

/// Native: the victim and the request it makes room for arrive on different connections (so,
/// likely, different workers); the victim is answered on its own worker.
#[test]
fn native_eviction_reaches_a_request_on_another_worker() {
    if !e2e::native() {
        return;
    }
    eviction(4);
}

fn eviction(workers: u32) {
    let env = Arc::new(start_with(
        json!({"defaultRequestTTL": "30s", "enableEviction": true}),
        workers,
    ));
    env.backend("pod-a").set(json!({"delay_ms": 2000}));
    let t0 = Instant::now();
    // A batch request (priority -1) takes the pool's one slot; the server holds it for 2 s.
    let batch = {
        let env = env.clone();
        std::thread::spawn(move || {
            let r = env.complete(
                MODEL,
                "batch",
                &[("x-gateway-inference-objective", "batch")],
            );
            (r, t0.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    // A critical request waits on the saturated pool: the batch request is evicted for it.
    let critical = env.complete(
        MODEL,
        "critical",
        &[("x-gateway-inference-objective", "critical")],
    );
    let critical_at = t0.elapsed();
    let (batch, batch_at) = batch.join().unwrap();
    assert_eq!(batch.status, 429, "{:?}", batch.body);
    assert_eq!(batch.json()["error"]["code"], "evicted");
    assert_eq!(batch.json()["error"]["type"], "rate_limit_exceeded");
    assert_eq!(
        batch.header("x-llm-d-request-dropped-reason"),
        Some("evicted")
    );
    assert!(
        batch_at < Duration::from_millis(1500),
        "evicted at once, not after the server's 2 s: {batch_at:?}"
    );
    assert_eq!(critical.status, 200, "{:?}", critical.body);
    assert_eq!(critical.pod(), "pod-a");
    // Served as soon as the victim's slot was free: its own 2 s, not the 2 s of the batch too.
    assert!(
        critical_at < Duration::from_millis(300 + 2000 + 1200),
        "{critical_at:?}"
    );
    // Envoy reset the victim's stream to the model server (over HTTP/1.1 it closes the
    // connection with the request still active, which a vLLM server sees as an abort), rather
    // than letting it run to the end.
    let stats = env.stats();
    let closed = stats
        .lines()
        .find_map(|l| {
            l.strip_prefix("cluster.inference_pool.upstream_cx_destroy_local_with_active_rq: ")
        })
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert_eq!(closed, Some(1), "upstream connections closed mid-request");
    // The eviction counters (flushed at most once a second).
    env.settle_stats();
    let text = env.prometheus();
    let value = |needles: &[&str]| {
        text.lines()
            .find(|l| !l.starts_with('#') && needles.iter().all(|n| l.contains(n)))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(
        value(&["flow_control_revocations_issued_total", "priority=\"10\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&["flow_control_revocations_total", "outcome=\"confirmed\""]),
        Some(1.0),
        "{text}"
    );
    // llm-d's confirmation-time histogram (the victim's stream ended within a second of its
    // eviction), the sizing gauges and the pool's saturation, in millionths of the detector's
    // unit.
    assert_eq!(
        value(&["flow_control_revocation_confirmation_seconds_count"]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&[
            "flow_control_revocation_confirmation_seconds_bucket",
            "le=\"1\""
        ]),
        Some(1.0),
        "{text}"
    );
    for gauge in [
        "endpoint_picker_flow_control_reclaim_target_ppm",
        "endpoint_picker_flow_control_pending_reclaim_ppm",
        "endpoint_picker_flow_control_pool_saturation_ppm",
    ] {
        assert!(value(&[gauge]).is_some(), "{gauge}: {text}");
    }
    // A critical request is never a victim: a second one waits for the first and is served.
    let later = env.complete(
        MODEL,
        "critical again",
        &[("x-gateway-inference-objective", "critical")],
    );
    assert_eq!(later.status, 200, "{:?}", later.body);
}

/// A victim whose response is already streaming cannot be answered 429: Envoy resets its stream,
/// so the client's stream ends early, without `[DONE]`, and the waiting critical request goes.
#[test]
fn an_evicted_request_whose_response_has_begun_is_cut_mid_stream() {
    let env = Arc::new(start(
        json!({"defaultRequestTTL": "30s", "enableEviction": true}),
    ));
    // Five events 700 ms apart: a whole stream takes ~2.8 s.
    env.backend("pod-a").set(json!({"stream_gap_ms": 700}));
    let t0 = Instant::now();
    let batch = {
        let env = env.clone();
        std::thread::spawn(move || {
            let body = json!({"model": MODEL, "prompt": "batch", "max_tokens": 3, "stream": true});
            let r = env.post(
                "/v1/completions",
                &body.to_string(),
                &[("x-gateway-inference-objective", "batch")],
            );
            (r, t0.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let critical = env.complete(
        MODEL,
        "critical",
        &[("x-gateway-inference-objective", "critical")],
    );
    let (batch, batch_at) = batch.join().unwrap();
    assert_eq!(batch.status, 200, "the response had begun: {batch:?}");
    assert!(batch.body.starts_with("data: "), "{:?}", batch.body);
    assert!(
        !batch.body.contains("[DONE]"),
        "cut short: {:?}",
        batch.body
    );
    assert!(batch_at < Duration::from_millis(2000), "{batch_at:?}");
    assert_eq!(critical.status, 200, "{:?}", critical.body);
}

/// A disaggregated pool is as saturated as its busier stage: with the prefill server idle and
/// the decode server at the utilization detector's queue threshold, a request waits (and here
/// times out with 429), although the pool's average would let it through; once the decode
/// server drains it is served. The saturation gauge shows each stage.
#[test]
fn a_saturated_decode_tier_holds_requests_however_idle_the_prefill_tier_is() {
    let env = Env::start(EnvSpec {
        backends: vec!["pod-p".into(), "pod-d".into()],
        labels: vec![
            json!({"llm-d.ai/role": "prefill"}),
            json!({"llm-d.ai/role": "decode"}),
        ],
        concurrency: 1,
        picker: json!({
            "featureGates": ["flowControl"],
            "plugins": [{"type": "utilization-detector",
                         "parameters": {"queueDepthThreshold": 4, "metricsStalenessThreshold": "2s"}}],
            "saturationDetector": {"pluginRef": "utilization-detector"},
            "flowControl": {"defaultRequestTTL": "400ms"}
        }),
        ..EnvSpec::default()
    });
    env.backend("pod-p").set(json!({"waiting": 0, "kv": 0.1}));
    env.backend("pod-d").set(json!({"waiting": 4, "kv": 0.1}));
    env.settle();
    let start = Instant::now();
    let r = env.complete(MODEL, "held by the decode tier", &[]);
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert!(r.body.contains("queue_timeout"), "{}", r.body);
    assert!(start.elapsed() >= Duration::from_millis(400));
    std::thread::sleep(Duration::from_millis(1200));
    let text = env.prometheus();
    let gauge = |stage: &str| {
        text.lines()
            .find(|l| {
                !l.starts_with('#')
                    && l.contains("endpoint_picker_flow_control_pool_saturation_ppm{")
                    && l.contains(&format!("stage=\"{stage}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    // Prefill: its KV cache at 0.1 over the detector's 0.8; decode: 4 waiting over 4.
    assert_eq!(
        (gauge("prefill"), gauge("decode"), gauge("effective")),
        (Some(125_000.0), Some(1e6), Some(1e6)),
        "{text}"
    );
    env.backend("pod-d").set(json!({"waiting": 0, "kv": 0.1}));
    env.settle();
    let r = env.complete(MODEL, "the decode tier drained", &[]);
    assert_eq!(r.status, 200, "{:?}", r.body);
}
