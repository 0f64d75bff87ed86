//! The flow-control layer: configs from GIE's flow-control guide load, and the queues order,
//! limit, expire and release requests as upstream's processor does.

use std::sync::Arc;

use scheduler_core::flowcontrol::queues::Outcome;
use scheduler_core::flowcontrol::{Admission, FlowKey, FlowQueues};
use scheduler_core::plugin::QueuedRequest;
use scheduler_core::{load, Registry, RequestError};

fn settings(json: &str) -> Arc<scheduler_core::flowcontrol::FlowControl> {
    let (picker, _) = load(json, &Registry::with_builtins()).unwrap();
    picker.flow_control().expect("flow control on").clone()
}

fn key(id: &str, priority: i32) -> FlowKey {
    FlowKey {
        fairness_id: id.into(),
        priority,
    }
}

fn req(bytes: u64) -> QueuedRequest {
    QueuedRequest {
        bytes,
        ..Default::default()
    }
}

const GATE: &str = r#""featureGates": ["flowControl"]"#;

#[test]
fn guide_configs_load() {
    // The flow-control guide's examples (GIE v1.5.0 site-src/guides/flow-control.md), as JSON.
    let s = settings(&format!(
        r#"{{ {GATE}, "flowControl": {{
            "maxBytes": 1000000000, "defaultRequestTTL": "30s",
            "priorityBands": [{{"priority": 100, "maxBytes": 500000000,
              "fairnessPolicyRef": "global-strict-fairness-policy",
              "orderingPolicyRef": "fcfs-ordering-policy"}}]}} }}"#
    ));
    assert_eq!(s.max_bytes, 1_000_000_000);
    assert_eq!(s.request_ttl_ms, 30_000);
    assert_eq!(s.no_endpoint_ttl_ms, 30_000);
    let b = s.band_for(100);
    assert_eq!((b.max_bytes, b.max_requests), (500_000_000, 5000));
    // A priority no band names gets the default template.
    let other = s.band_for(-5);
    assert_eq!((other.priority, other.max_bytes), (-5, 1_000_000_000));

    let s = settings(&format!(
        r#"{{ {GATE},
            "plugins": [{{"type": "concurrency-detector", "parameters": {{"concurrencyMode": "requests", "maxConcurrency": 110}}}},
                        {{"type": "round-robin-fairness-policy"}}, {{"type": "edf-ordering-policy"}}],
            "saturationDetector": {{"pluginRef": "concurrency-detector"}},
            "flowControl": {{"maxRequests": "1k", "defaultPriorityBand": {{"fairnessPolicyRef": "round-robin-fairness-policy", "maxRequests": 10}},
              "defaultNegativePriorityBand": {{"maxRequests": 2, "orderingPolicyRef": "edf-ordering-policy"}}}} }}"#
    ));
    assert_eq!(s.max_requests, 1000);
    assert_eq!(
        s.band_for(7).fairness.typed_name().type_name,
        "round-robin-fairness-policy"
    );
    assert_eq!(s.band_for(7).max_requests, 10);
    assert_eq!(s.band_for(-1).max_requests, 2);
    assert_eq!(
        s.band_for(-1).ordering.typed_name().type_name,
        "edf-ordering-policy"
    );

    // Without the gate the section is ignored (with a warning), as upstream.
    let (picker, report) = load(
        r#"{"flowControl": {"maxRequests": 5}}"#,
        &Registry::with_builtins(),
    )
    .unwrap();
    assert!(picker.flow_control().is_none());
    assert!(
        report.warnings.iter().any(|w| w.contains("flowControl")),
        "{report:?}"
    );
}

#[test]
fn bad_sections_are_errors_naming_the_field() {
    for (section, field) in [
        (r#"{"maxBytes": "lots"}"#, "flowControl.maxBytes"),
        (
            r#"{"defaultRequestTTL": 30}"#,
            "flowControl.defaultRequestTTL",
        ),
        (
            r#"{"priorityBands": [{"priority": 1}, {"priority": 1}]}"#,
            "flowControl.priorityBands[1].priority",
        ),
        (
            r#"{"priorityBands": [{"priority": 1, "fairnessPolicyRef": "nope"}]}"#,
            "flowControl.priorityBands[0].fairnessPolicyRef",
        ),
        (
            r#"{"usageLimitPolicyPluginRef": "fcfs-ordering-policy"}"#,
            "flowControl.usageLimitPolicyPluginRef",
        ),
    ] {
        let json = format!(
            r#"{{ {GATE}, "plugins": [{{"type": "fcfs-ordering-policy"}}], "flowControl": {section} }}"#
        );
        let err = load(&json, &Registry::with_builtins())
            .err()
            .unwrap_or_else(|| panic!("{section} loaded"));
        assert!(err.to_string().contains(field), "{section}: {err}");
    }
}

#[test]
fn idle_pool_dispatches_at_once_and_saturated_pool_queues() {
    let mut q: FlowQueues<u32> = FlowQueues::new(settings(&format!("{{ {GATE} }}")), 250);
    assert_eq!(
        q.admit(&key("a", 0), req(10), 1, 0, &mut || 0.2),
        Admission::Dispatch
    );
    let Admission::Queued(t) = q.admit(&key("a", 0), req(10), 2, 0, &mut || 1.0) else {
        panic!()
    };
    assert_eq!(q.len(), 1);
    // Still saturated: nothing leaves.
    assert!(q.dispatch(5, &mut || 1.0).is_none());
    let r = q.dispatch(7, &mut || 0.5).unwrap();
    assert_eq!(
        (r.waker, r.ticket, r.waited_ms, r.outcome),
        (2, t, 7, Outcome::Dispatched)
    );
    assert!(q.is_empty());
}

#[test]
fn higher_priority_leaves_first_and_blocks_lower_bands() {
    let mut q: FlowQueues<&str> = FlowQueues::new(settings(&format!("{{ {GATE} }}")), 250);
    let sat = &mut || 1.0;
    for (name, prio) in [("low-1", -1), ("low-2", -1), ("mid", 0), ("high", 10)] {
        assert!(matches!(
            q.admit(&key("t", prio), req(1), name, 0, sat),
            Admission::Queued(_)
        ));
    }
    let mut order = Vec::new();
    while let Some(r) = q.dispatch(1, &mut || 0.0) {
        order.push(r.waker);
        q.scheduled(r.ticket);
    }
    assert_eq!(order, ["high", "mid", "low-1", "low-2"]);
    // A newcomer of low priority does not skip a waiting high-priority request.
    q.admit(&key("t", 10), req(1), "high", 0, &mut || 1.0);
    assert!(matches!(
        q.admit(&key("t", -1), req(1), "low", 0, &mut || 0.0),
        Admission::Queued(_)
    ));
}

#[test]
fn one_release_in_transit_at_a_time() {
    let mut q: FlowQueues<u8> = FlowQueues::new(settings(&format!("{{ {GATE} }}")), 250);
    for w in 0..3 {
        q.admit(&key("t", 0), req(1), w, 0, &mut || 1.0);
    }
    let first = q.dispatch(1, &mut || 0.0).unwrap();
    assert!(
        q.dispatch(1, &mut || 0.0).is_none(),
        "waits for the first to be scheduled"
    );
    assert_eq!(q.in_transit(), 1);
    q.scheduled(first.ticket);
    assert_eq!(q.dispatch(1, &mut || 0.0).map(|r| r.waker), Some(1));
}

#[test]
fn round_robin_shares_dispatches_between_tenants() {
    let s = settings(&format!(
        r#"{{ {GATE}, "plugins": [{{"type": "round-robin-fairness-policy"}}],
            "flowControl": {{"defaultPriorityBand": {{"fairnessPolicyRef": "round-robin-fairness-policy"}}}} }}"#
    ));
    let mut q: FlowQueues<&str> = FlowQueues::new(s, 250);
    for _ in 0..10 {
        q.admit(&key("big", 0), req(1), "big", 0, &mut || 1.0);
    }
    q.admit(&key("small", 0), req(1), "small", 0, &mut || 1.0);
    q.admit(&key("small", 0), req(1), "small", 0, &mut || 1.0);
    let mut first_four = Vec::new();
    for _ in 0..4 {
        let r = q.dispatch(1, &mut || 0.0).unwrap();
        first_four.push(r.waker);
        q.scheduled(r.ticket);
    }
    assert_eq!(first_four, ["big", "small", "big", "small"]);

    // Global strict: arrival order whatever the tenant.
    let mut q: FlowQueues<&str> = FlowQueues::new(settings(&format!("{{ {GATE} }}")), 250);
    for _ in 0..3 {
        q.admit(&key("big", 0), req(1), "big", 0, &mut || 1.0);
    }
    q.admit(&key("small", 0), req(1), "small", 1, &mut || 1.0);
    let mut order = Vec::new();
    while let Some(r) = q.dispatch(2, &mut || 0.0) {
        order.push(r.waker);
        q.scheduled(r.ticket);
    }
    assert_eq!(order, ["big", "big", "big", "small"]);
}

#[test]
fn limits_refuse_with_queue_full() {
    let mut q: FlowQueues<()> = FlowQueues::new(
        settings(&format!(
            r#"{{ {GATE}, "flowControl": {{"maxBytes": 100, "priorityBands": [{{"priority": 0, "maxRequests": 2}}]}} }}"#
        )),
        250,
    );
    let full = &mut || 1.0;
    assert!(matches!(
        q.admit(&key("t", 0), req(10), (), 0, full),
        Admission::Queued(_)
    ));
    assert!(matches!(
        q.admit(&key("t", 0), req(10), (), 0, full),
        Admission::Queued(_)
    ));
    assert_eq!(
        q.admit(&key("t", 0), req(10), (), 0, full),
        Admission::Rejected(RequestError::QueueFull)
    );
    // Another band, but the global byte limit.
    assert_eq!(
        q.admit(&key("t", 5), req(81), (), 0, full),
        Admission::Rejected(RequestError::QueueFull)
    );
    assert!(matches!(
        q.admit(&key("t", 5), req(80), (), 0, full),
        Admission::Queued(_)
    ));
    // An empty pool answers 503, not 429.
    q.set_pool_empty(true, 0);
    assert_eq!(
        q.admit(&key("t", 0), req(1), (), 0, full),
        Admission::Rejected(RequestError::NoCandidates)
    );
}

#[test]
fn ttl_expiry_and_the_empty_pool_budget() {
    let mut q: FlowQueues<u8> = FlowQueues::new(
        settings(&format!(
            r#"{{ {GATE}, "flowControl": {{"defaultRequestTTL": "1s", "noEndpointRequestTTL": "5s"}} }}"#
        )),
        250,
    );
    q.admit(&key("t", 0), req(1), 1, 0, &mut || 1.0);
    q.admit(&key("t", 0), req(1), 2, 600, &mut || 1.0);
    assert!(q.expire(999).is_empty());
    let gone = q.expire(1000);
    assert_eq!(gone.len(), 1);
    assert_eq!((gone[0].waker, gone[0].waited_ms), (1, 1000));
    assert_eq!(
        gone[0].outcome,
        Outcome::Expired(RequestError::QueueTimeout)
    );
    // The pool empties at 1200: a fresh 5 s budget from then, and 503 when it runs out.
    q.set_pool_empty(true, 1200);
    assert!(q.expire(6000).is_empty());
    let gone = q.expire(6200);
    assert_eq!(gone.len(), 1);
    assert_eq!(
        gone[0].outcome,
        Outcome::Expired(RequestError::NoCandidates)
    );
    assert!(q.is_empty());
}

#[test]
fn cancel_frees_the_slot_of_a_waiting_or_released_request() {
    let mut q: FlowQueues<u8> = FlowQueues::new(
        settings(&format!(
            r#"{{ {GATE}, "flowControl": {{"maxRequests": 1}} }}"#
        )),
        250,
    );
    let Admission::Queued(t) = q.admit(&key("t", 0), req(1), 1, 0, &mut || 1.0) else {
        panic!()
    };
    assert_eq!(
        q.admit(&key("t", 0), req(1), 2, 0, &mut || 1.0),
        Admission::Rejected(RequestError::QueueFull)
    );
    assert_eq!(q.cancel(t, 5).map(|r| (r.waker, r.waited_ms)), Some((1, 5)));
    assert!(q.is_empty());
    let Admission::Queued(t2) = q.admit(&key("t", 0), req(1), 3, 0, &mut || 1.0) else {
        panic!()
    };
    let r = q.dispatch(1, &mut || 0.0).unwrap();
    assert_eq!(r.ticket, t2);
    assert_eq!(q.in_transit(), 1);
    assert!(q.cancel(t2, 5).is_none());
    assert_eq!(q.in_transit(), 0);
    assert_eq!(q.depths()[0].requests, 0);
}

#[test]
fn depths_are_per_flow_and_every_band_shows_its_default_flow() {
    let mut q: FlowQueues<u32> = FlowQueues::new(
        settings(&format!(
            r#"{{ {GATE}, "flowControl": {{"priorityBands": [{{"priority": 10}}]}} }}"#
        )),
        0,
    );
    let depth = |q: &FlowQueues<u32>, id: &str, priority: i32| {
        q.depths()
            .into_iter()
            .find(|d| d.fairness_id == id && d.priority == priority)
            .map(|d| (d.requests, d.bytes))
    };
    // Before any wait, the configured band's default flow shows 0.
    assert_eq!(depth(&q, "default-flow", 10), Some((0, 0)));
    // Saturated: two tenants' requests wait in band 0.
    for (i, (id, bytes)) in [("a", 100), ("a", 50), ("b", 7)].into_iter().enumerate() {
        let queued = q.admit(&key(id, 0), req(bytes), i as u32, 0, &mut || 1.0);
        assert!(matches!(queued, Admission::Queued(_)), "{queued:?}");
    }
    assert_eq!(depth(&q, "a", 0), Some((2, 150)));
    assert_eq!(depth(&q, "b", 0), Some((1, 7)));
    assert_eq!(
        depth(&q, "default-flow", 0),
        None,
        "a band with flows waiting"
    );
    assert_eq!(depth(&q, "default-flow", 10), Some((0, 0)));
    // The first request released (a's, first in): a's depth and bytes drop by it.
    let first = q.dispatch(1, &mut || 0.0).expect("released");
    q.scheduled(first.ticket);
    assert_eq!(depth(&q, "a", 0), Some((1, 50)));
    // Released one by one: an emptied flow leaves the list, the emptied band shows 0 again.
    while let Some(r) = q.dispatch(1, &mut || 0.0) {
        q.scheduled(r.ticket);
    }
    assert_eq!(depth(&q, "a", 0), None);
    assert_eq!(depth(&q, "default-flow", 0), Some((0, 0)));
}

#[test]
fn priority_holdback_keeps_room_for_the_higher_band() {
    let mut q: FlowQueues<&str> = FlowQueues::new(
        settings(&format!(
            r#"{{ {GATE}, "plugins": [{{"type": "priority-holdback-policy", "parameters": {{"minCeiling": 0.5}}}}],
            "flowControl": {{"usageLimitPolicyPluginRef": "priority-holdback-policy"}} }}"#
        )),
        250,
    );
    // Both bands known; the pool is 60 % full: above the low band's ceiling (0.5), below the
    // high band's (1.0).
    q.admit(&key("t", 10), req(1), "high-0", 0, &mut || 1.0);
    assert!(matches!(
        q.admit(&key("t", 0), req(1), "low", 0, &mut || 0.6),
        Admission::Queued(_)
    ));
    let r = q.dispatch(1, &mut || 0.6).unwrap();
    assert_eq!(r.waker, "high-0");
    q.scheduled(r.ticket);
    assert!(
        q.dispatch(1, &mut || 0.6).is_none(),
        "the low band is held back"
    );
    assert_eq!(
        q.admit(&key("t", 10), req(1), "high-1", 0, &mut || 0.6),
        Admission::Dispatch
    );
    assert_eq!(q.dispatch(1, &mut || 0.4).map(|r| r.waker), Some("low"));
}

#[test]
fn soft_reflective_ceiling_lets_the_low_band_through_one_cycle_in_period() {
    let mut q: FlowQueues<u32> = FlowQueues::new(
        settings(&format!(
            r#"{{ {GATE}, "plugins": [{{"type": "soft-reflective-ceiling-policy"}}],
            "flowControl": {{"usageLimitPolicyPluginRef": "soft-reflective-ceiling-policy"}} }}"#
        )),
        250,
    );
    // Two bands known; the pool stays 75 % saturated: the low band's reflective ceiling is
    // 1 − 0.75 = 0.25, so it alternates with period round(0.75 / 0.25) = 3.
    q.admit(&key("t", 10), req(1), 0, 0, &mut || 1.0);
    for w in 1..=6 {
        assert!(matches!(
            q.admit(&key("t", 0), req(1), w, 0, &mut || 0.75),
            Admission::Queued(_)
        ));
    }
    let high = q.dispatch(1, &mut || 0.75).unwrap();
    assert_eq!(
        high.waker, 0,
        "the high band is never gated below saturation 1"
    );
    q.scheduled(high.ticket);
    let mut released = 0;
    for _ in 0..12 {
        if let Some(r) = q.dispatch(1, &mut || 0.75) {
            released += 1;
            q.scheduled(r.ticket);
        }
    }
    assert!(
        (3..=5).contains(&released),
        "about one cycle in three dispatches the low band: {released} of 12"
    );
    // Saturated: nothing from the low band.
    assert!(q.dispatch(1, &mut || 1.0).is_none());
}

#[test]
fn program_aware_fairness_serves_the_program_that_consumed_least() {
    use scheduler_core::model::endpoint::Endpoint;
    use scheduler_core::model::request::InferenceRequest;
    use scheduler_core::model::response::{BodyChunk, ResponseInfo, Usage};
    use scheduler_core::plugin::RequestState;
    use scheduler_core::rng::SplitMix64;

    let (picker, _) = load(
        &format!(
            r#"{{ {GATE}, "plugins": [{{"type": "program-aware-fairness"}}],
                "flowControl": {{"defaultPriorityBand": {{"fairnessPolicyRef": "program-aware-fairness"}}}} }}"#
        ),
        &Registry::with_builtins(),
    )
    .unwrap();
    let eps = [Endpoint::new("10.0.0.1:8000")];
    // Each program has one request served through the director, which hands the program (the
    // fairness id) to the policy; "batch" consumed 100× the tokens of "chat".
    for (program, prompt, completion) in [("batch", 20_000, 5_000), ("chat", 200, 50)] {
        let mut req = InferenceRequest::new("m", "hello");
        req.headers
            .push(("x-llm-d-inference-fairness-id".into(), program.into()));
        let mut state = RequestState::new();
        picker
            .schedule(&req, &eps, 1_000, &mut SplitMix64::new(1), &mut state)
            .unwrap();
        let info = ResponseInfo {
            status: 200,
            served_endpoint: Some("10.0.0.1:8000"),
            now_ms: 2_000,
        };
        let usage = Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: None,
        };
        picker.response_body(
            &mut state,
            &info,
            &BodyChunk {
                first: true,
                end_of_stream: true,
                usage: Some(usage),
            },
        );
    }
    // Now both queue behind a saturated pool, "batch" first; when it drains, "chat" leaves first.
    let mut q: FlowQueues<&str> = FlowQueues::new(picker.flow_control().unwrap().clone(), 250);
    for (id, w, at) in [
        ("batch", "batch-0", 3_000),
        ("batch", "batch-1", 3_001),
        ("chat", "chat-0", 3_002),
    ] {
        assert!(matches!(
            q.admit(&key(id, 0), req(1), w, at, &mut || 1.0),
            Admission::Queued(_)
        ));
    }
    let mut order = vec![];
    while let Some(r) = q.dispatch(3_100, &mut || 0.0) {
        order.push(r.waker);
        q.scheduled(r.ticket);
    }
    assert_eq!(order, ["chat-0", "batch-0", "batch-1"]);
}

#[test]
fn enable_eviction_is_paced_by_how_the_detector_sees_freed_capacity() {
    use scheduler_core::flowcontrol::eviction::Sensor;
    assert_eq!(settings(&format!("{{ {GATE} }}")).eviction, None);
    let on = r#""flowControl": {"enableEviction": true}"#;
    assert_eq!(
        settings(&format!("{{ {GATE}, {on} }}")).eviction,
        Some(Sensor::Scraped),
        "utilization-detector by default: freed capacity shows in a later scrape"
    );
    let s = settings(&format!(
        r#"{{ {GATE}, {on}, "plugins": [{{"type": "concurrency-detector"}}],
            "saturationDetector": {{"pluginRef": "concurrency-detector"}} }}"#
    ));
    assert_eq!(s.eviction, Some(Sensor::Leading));
    let bad = format!(r#"{{ {GATE}, "flowControl": {{"enableEviction": "yes"}} }}"#);
    let err = load(&bad, &Registry::with_builtins())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("flowControl.enableEviction"), "{err}");
}

#[test]
fn waiting_demand_evicts_lower_priority_sheddable_requests_in_flight() {
    let mut q: FlowQueues<&str> = FlowQueues::new(
        settings(&format!(
            r#"{{ {GATE}, "flowControl": {{"enableEviction": true}} }}"#
        )),
        250,
    );
    // In flight: two sheddable (-5 older, -1), one of no priority; only sheddable ones with a
    // handle can be victims.
    let old = q.track(-5, 10, Some("old-5")).unwrap();
    q.track(-1, 20, Some("new-1")).unwrap();
    q.track(0, 30, Some("default")).unwrap();
    // A sheddable request waiting (priority -1) evicts only what is strictly below it.
    assert!(matches!(
        q.admit(&key("t", -1), req(1), "waiting-1", 100, &mut || 1.0),
        Admission::Queued(_)
    ));
    assert!(q.dispatch(100, &mut || 1.0).is_none());
    let evicted = q.take_evicted();
    let names: Vec<&str> = evicted.iter().map(|r| r.waker).collect();
    assert_eq!(
        names,
        ["old-5"],
        "the -1 in flight is not below the -1 demand"
    );
    assert!(evicted.iter().all(|r| r.outcome == Outcome::Evicted));
    // Nothing more until the victim ends and the grace (250 + 250 ms) passes.
    assert!(q.dispatch(101, &mut || 1.0).is_none());
    assert!(q.take_evicted().is_empty());
    assert_eq!(
        q.untrack(old, 110),
        None,
        "the victim was handed out already"
    );
    assert!(q.dispatch(500, &mut || 1.0).is_none());
    assert!(q.take_evicted().is_empty(), "still within the grace");
    // A critical request arrives: now the -1 in flight is below the demand.
    q.admit(&key("t", 10), req(1), "critical", 600, &mut || 1.0);
    assert!(q.dispatch(700, &mut || 1.0).is_none());
    let names: Vec<&str> = q.take_evicted().iter().map(|r| r.waker).collect();
    assert_eq!(names, ["new-1"]);
    let c = q.eviction_counts().unwrap();
    assert_eq!((c.issued, c.confirmed), (2, 1));
    // Without enableEviction nothing is tracked.
    let mut off: FlowQueues<&str> = FlowQueues::new(settings(&format!("{{ {GATE} }}")), 250);
    assert_eq!(off.track(-1, 0, Some("x")), None);
}

#[test]
fn capacity_utilization_is_queued_over_each_limit() {
    let mut q: FlowQueues<()> = FlowQueues::new(
        settings(&format!(
            r#"{{ {GATE}, "flowControl": {{"maxBytes": 1000, "priorityBands": [{{"priority": 0, "maxRequests": 4}}, {{"priority": 7, "maxRequests": 10, "maxBytes": 500}}]}} }}"#
        )),
        250,
    );
    // Configured bands report before their first request; the global request limit is unset.
    let u = q.capacity_utilization();
    assert_eq!(
        u.bands.iter().map(|b| b.priority).collect::<Vec<_>>(),
        [7, 0]
    );
    assert!(u.bands.iter().all(|b| b.requests == Some(0.0)));
    assert_eq!(u.requests, None);
    assert_eq!(u.bytes, Some(0.0));
    let full = &mut || 1.0;
    for _ in 0..3 {
        q.admit(&key("t", 0), req(100), (), 0, full);
    }
    q.admit(&key("t", 7), req(250), (), 0, full);
    // A band no config names takes the default limits (5,000 requests, 10⁹ bytes).
    q.admit(&key("t", -1), req(50), (), 0, full);
    let u = q.capacity_utilization();
    let band = |p: i32| *u.bands.iter().find(|b| b.priority == p).unwrap();
    assert_eq!(band(0).requests, Some(0.75));
    assert_eq!(band(0).bytes, Some(300.0 / 1e9));
    assert_eq!(band(7).requests, Some(0.1));
    assert_eq!(band(7).bytes, Some(0.5));
    assert_eq!(band(-1).requests, Some(1.0 / 5000.0));
    assert_eq!(
        u.bands.iter().map(|b| b.priority).collect::<Vec<_>>(),
        [7, 0, -1]
    );
    assert_eq!(u.bytes, Some(0.6));
}

#[test]
fn the_utilization_detector_counts_endpoints_it_scores_saturated_for_stale_metrics() {
    let (picker, _) = load(
        &format!(
            r#"{{ {GATE}, "plugins": [{{"type": "utilization-detector", "name": "util", "parameters": {{"metricsStalenessThreshold": "1s"}}}}], "saturationDetector": {{"pluginRef": "util"}} }}"#
        ),
        &Registry::with_builtins(),
    )
    .unwrap();
    let now = 100_000;
    let mut fresh = scheduler_core::Endpoint::new("10.0.0.1:8000");
    fresh.metrics.update_time_ms = now - 100;
    let mut old = scheduler_core::Endpoint::new("10.0.0.2:8000");
    old.metrics.update_time_ms = now - 5_000;
    let never = scheduler_core::Endpoint::new("10.0.0.3:8000");
    let pool = [fresh, old, never];
    assert_eq!(picker.pool_stale_endpoints(&pool, now), Some(("util", 2)));
    // Those two read as fully saturated: (0 + 1 + 1) / 3.
    assert!((picker.pool_saturation(&pool, now) - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(
        picker.pool_stale_endpoints(&pool[..1], now),
        Some(("util", 0))
    );
    // The concurrency detector reads in-flight counts, not scraped metrics.
    let (picker, _) = load(
        &format!(
            r#"{{ {GATE}, "plugins": [{{"type": "concurrency-detector"}}], "saturationDetector": {{"pluginRef": "concurrency-detector"}} }}"#
        ),
        &Registry::with_builtins(),
    )
    .unwrap();
    assert_eq!(picker.pool_stale_endpoints(&pool, now), None);
}

#[test]
fn pool_saturation_is_the_higher_of_the_prefill_and_decode_tiers() {
    let (picker, _) = load(
        &format!(
            r#"{{ {GATE}, "plugins": [{{"type": "utilization-detector", "parameters": {{"queueDepthThreshold": 4, "kvCacheUtilThreshold": 0.8}}}}], "saturationDetector": {{"pluginRef": "utilization-detector"}} }}"#
        ),
        &Registry::with_builtins(),
    )
    .unwrap();
    let now = 10_000;
    let ep = |addr: &str, role: Option<&str>, waiting: u32| {
        let mut e = scheduler_core::Endpoint::new(addr);
        if let Some(r) = role {
            e = e.with_label("llm-d.ai/role", r);
        }
        e.metrics.update_time_ms = now;
        e.metrics.waiting_queue_size = waiting;
        e
    };
    // An idle prefill tier and a saturated decode tier: the pool is saturated, where the
    // average over all four endpoints (0.5) would let requests through.
    let pd = [
        ep("10.0.0.1:8000", Some("prefill"), 0),
        ep("10.0.0.2:8000", Some("prefill"), 0),
        ep("10.0.0.3:8000", Some("decode"), 4),
        ep("10.0.0.4:8000", Some("decode"), 4),
    ];
    let s = picker.pool_saturation_by_stage(&pd, now);
    assert_eq!((s.prefill, s.decode), (Some(0.0), Some(1.0)));
    assert_eq!(s.effective, 1.0);
    assert_eq!(picker.pool_saturation(&pd, now), 1.0);
    // An endpoint serving both stages counts in both; an encode-only one in neither; one with
    // no role label decodes.
    let mixed = [
        ep("10.0.0.1:8000", Some("prefill"), 0),
        ep("10.0.0.2:8000", Some("prefill-decode"), 2),
        ep("10.0.0.3:8000", Some("encode"), 4),
        ep("10.0.0.4:8000", None, 0),
    ];
    let s = picker.pool_saturation_by_stage(&mixed, now);
    assert_eq!((s.prefill, s.decode), (Some(0.25), Some(0.25)));
    assert_eq!(s.effective, 0.25);
    // A fleet without roles is one decode tier: the whole pool's figure, as before.
    let plain = [ep("10.0.0.1:8000", None, 0), ep("10.0.0.2:8000", None, 2)];
    let s = picker.pool_saturation_by_stage(&plain, now);
    assert_eq!((s.prefill, s.decode, s.effective), (None, Some(0.25), 0.25));
    // Only encode workers: measured whole. No endpoints: saturated.
    let encode = [ep("10.0.0.1:8000", Some("encode"), 2)];
    let s = picker.pool_saturation_by_stage(&encode, now);
    assert_eq!((s.prefill, s.decode, s.effective), (None, None, 0.5));
    assert_eq!(picker.pool_saturation(&[], now), 1.0);
}
