use std::collections::BTreeMap;

use scheduler_core::flowcontrol::queues::{BandUtilization, CapacityUtilization, FlowDepth};
use scheduler_core::{PickerConfig, Registry};

use super::*;

/// Keeps what a sink would show: counter totals and gauge values by `name{labels}`.
#[derive(Default)]
struct Shown(BTreeMap<String, u64>);

impl Shown {
    fn key(family: &Family, labels: &[&str]) -> String {
        let pairs: Vec<String> = family
            .labels
            .iter()
            .zip(labels)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}{{{}}}", family.name, pairs.join(","))
    }
    fn get(&self, k: &str) -> Option<u64> {
        self.0.get(k).copied()
    }
}

impl StatSink for Shown {
    fn add(&mut self, family: &'static Family, labels: &[&str], delta: u64) {
        assert_eq!(family.labels.len(), labels.len(), "{}", family.name);
        *self.0.entry(Shown::key(family, labels)).or_default() += delta;
    }
    fn set(&mut self, family: &'static Family, labels: &[&str], value: u64) {
        self.0.insert(Shown::key(family, labels), value);
    }
    fn adjust(&mut self, family: &'static Family, labels: &[&str], delta: i64) {
        let v = self.0.entry(Shown::key(family, labels)).or_default();
        *v = v
            .checked_add_signed(delta)
            .expect("a gauge never goes below 0");
    }
}

fn picker() -> scheduler_core::EndpointPicker {
    PickerConfig::load(r#"{"pool":{"cluster":"c"}}"#, &Registry::with_builtins())
        .unwrap()
        .picker
}

/// The labels of a request of the default flow at priority 0.
fn labels(model: &str, target: &str) -> RequestLabels {
    RequestLabels {
        model: model.into(),
        target_model: target.into(),
        ..RequestLabels::default()
    }
}

fn routed(model: &str, sched_ns: u64) -> RequestRecord {
    RequestRecord {
        labels: Some(labels(model, model)),
        scheduling_ns: Some(sched_ns),
        request_bytes: 300,
        response_bytes: 900,
        duration_ns: Some(150_000_000),
        tokens: Some((20, 7)),
        ..RequestRecord::default()
    }
}

#[test]
fn flushes_cumulative_buckets_as_deltas_and_counts_per_model() {
    let p = picker();
    let mut t = Telemetry::new(&p);
    let mut shown = Shown::default();
    t.record(&routed("m", 15_000)); // 15 µs: first bucket above it is 2e-05
    t.record(&routed("m", 70_000)); // 70 µs: 0.0001
    t.flush(0, &mut shown);
    let b = |shown: &Shown, le: &str| {
        shown
            .get(&format!(
                "inference_extension_scheduler_e2e_duration_seconds_bucket{{le={le}}}"
            ))
            .unwrap()
    };
    assert_eq!(
        [
            b(&shown, "1e-05"),
            b(&shown, "2e-05"),
            b(&shown, "5e-05"),
            b(&shown, "0.0001"),
            b(&shown, "+Inf")
        ],
        [0, 1, 1, 2, 2]
    );
    assert_eq!(
        shown.get("inference_objective_request_total{model_name=m,target_model_name=m,fairness_id=default-flow,priority=0}"),
        Some(2)
    );
    assert_eq!(
        shown.get("inference_objective_input_tokens_sum{model_name=m,target_model_name=m,fairness_id=default-flow,priority=0}"),
        Some(40)
    );
    assert_eq!(
        shown.get(
            "inference_objective_request_duration_seconds_bucket{model_name=m,target_model_name=m,fairness_id=default-flow,priority=0,le=0.2}"
        ),
        Some(2)
    );

    // A second flush adds only what is new.
    t.record(&routed("m", 15_000));
    t.flush(2000, &mut shown);
    assert_eq!(b(&shown, "2e-05"), 2);
    assert_eq!(b(&shown, "+Inf"), 3);
    assert_eq!(
        shown.get("inference_objective_request_total{model_name=m,target_model_name=m,fairness_id=default-flow,priority=0}"),
        Some(3)
    );
}

#[test]
fn errors_carry_gie_codes_and_model_pairs_are_bounded() {
    let p = picker();
    let mut t = Telemetry::new(&p);
    let mut shown = Shown::default();
    t.record(&RequestRecord {
        error_status: Some(400),
        ..RequestRecord::default()
    });
    t.record(&RequestRecord {
        labels: Some(labels("a", "b")),
        error_status: Some(429),
        ..RequestRecord::default()
    });
    for i in 0..MAX_MODEL_PAIRS + 10 {
        t.record(&routed(&format!("m{i}"), 1000));
    }
    t.flush(0, &mut shown);
    assert_eq!(
        shown.get(
            "inference_objective_request_error_total{model_name=,target_model_name=,fairness_id=default-flow,priority=0,error_code=BadRequest}"
        ),
        Some(1)
    );
    assert_eq!(
        shown.get(
            "inference_objective_request_error_total{model_name=a,target_model_name=b,fairness_id=default-flow,priority=0,error_code=ResourceExhausted}"
        ),
        Some(1)
    );
    let pairs = shown
        .0
        .keys()
        .filter(|k| k.starts_with("inference_objective_request_total{"))
        .count();
    assert_eq!(
        pairs,
        MAX_MODEL_PAIRS + 1,
        "bounded: the pairs kept, and the overflow's one"
    );
    assert!(shown
        .get("inference_objective_request_total{model_name=_other,target_model_name=_other,fairness_id=default-flow,priority=0}")
        .is_some());
}

#[test]
fn request_series_carry_the_flow_and_priority() {
    let mut t = Telemetry::new(&picker());
    let mut shown = Shown::default();
    let tenant = RequestLabels {
        fairness_id: Some("tenant-a".into()),
        priority: 10,
        ..labels("m", "m")
    };
    t.started(&tenant, "10.0.0.1:8000");
    t.record(&RequestRecord {
        labels: Some(tenant.clone()),
        ..routed("m", 1_000)
    });
    t.record(&routed("m", 1_000));
    t.queue_wait(Some("tenant-a"), 10, "Dispatched", 30);
    t.queue_wait(None, 0, "Dispatched", 0);
    t.flush(0, &mut shown);
    let total = |flow: &str, priority: i32| {
        shown.get(&format!(
            "inference_objective_request_total{{model_name=m,target_model_name=m,fairness_id={flow},priority={priority}}}"
        ))
    };
    assert_eq!(total("tenant-a", 10), Some(1));
    assert_eq!(total("default-flow", 0), Some(1));
    assert_eq!(
        shown.get("inference_objective_running_requests{model_name=m,target_model_name=m,fairness_id=tenant-a,priority=10}"),
        Some(1)
    );
    assert_eq!(
        shown.get("inference_objective_input_tokens_sum{model_name=m,target_model_name=m,fairness_id=tenant-a,priority=10}"),
        Some(20)
    );
    for (flow, priority) in [("tenant-a", 10), ("default-flow", 0)] {
        assert_eq!(
            shown.get(&format!(
                "inference_extension_flow_control_request_queue_duration_seconds_count{{fairness_id={flow},priority={priority},outcome=Dispatched}}"
            )),
            Some(1),
            "{flow}"
        );
    }
}

#[test]
fn fairness_ids_and_label_sets_are_bounded() {
    let mut t = Telemetry::new(&picker());
    let mut shown = Shown::default();
    let flow = |m: &str, f: String| RequestRecord {
        labels: Some(RequestLabels {
            fairness_id: Some(f),
            ..labels(m, m)
        }),
        ..routed(m, 1_000)
    };
    // More flows than kept: the first ones keep their names, the rest count under `_other`,
    // and every request is counted once.
    let n = MAX_FAIRNESS_IDS + 20;
    for i in 0..n {
        t.record(&flow("m", format!("tenant-{i}")));
    }
    t.queue_wait(Some(&format!("tenant-{}", n - 1)), 0, "Dispatched", 0);
    t.flush(0, &mut shown);
    let series: Vec<(&String, u64)> = shown
        .0
        .iter()
        .filter(|(k, _)| k.starts_with("inference_objective_request_total{"))
        .map(|(k, &v)| (k, v))
        .collect();
    assert_eq!(series.len(), MAX_FAIRNESS_IDS + 1, "{series:?}");
    assert_eq!(series.iter().map(|(_, v)| v).sum::<u64>(), n as u64);
    assert_eq!(
        shown.get(&format!(
            "inference_objective_request_total{{model_name=m,target_model_name=m,fairness_id={OTHER_MODEL},priority=0}}"
        )),
        Some(20)
    );
    assert_eq!(
        shown.get(&format!(
            "inference_extension_flow_control_request_queue_duration_seconds_count{{fairness_id={OTHER_MODEL},priority=0,outcome=Dispatched}}"
        )),
        Some(1)
    );
    // Label sets: models × the flows kept reach the limit; further sets keep their model but
    // not their flow.
    let mut t = Telemetry::new(&picker());
    let mut shown = Shown::default();
    let models = MAX_REQUEST_SERIES / MAX_FAIRNESS_IDS + 2;
    for m in 0..models {
        for f in 0..MAX_FAIRNESS_IDS {
            t.record(&flow(&format!("m{m}"), format!("tenant-{f}")));
        }
    }
    t.flush(0, &mut shown);
    let sets = shown
        .0
        .keys()
        .filter(|k| k.starts_with("inference_objective_request_total{"))
        .count();
    assert!(
        sets <= MAX_REQUEST_SERIES + models,
        "at most the limit and one overflow set per pair and priority: {sets}"
    );
    let last = models - 1;
    assert_eq!(
        shown.get(&format!(
            "inference_objective_request_total{{model_name=m{last},target_model_name=m{last},fairness_id={OTHER_MODEL},priority=0}}"
        )),
        Some(MAX_FAIRNESS_IDS as u64)
    );
}

#[test]
fn plugin_durations_are_labelled_by_point_type_and_name() {
    let p = picker();
    let mut t = Telemetry::new(&p);
    let (name, plugin) = p
        .plugins()
        .iter()
        .find(|(_, pl)| pl.as_scorer().is_some())
        .cloned()
        .unwrap();
    let mut r = RequestRecord::default();
    r.plugins
        .push((ExtensionPoint::Scorer, plugin_key(&plugin), 3_000));
    t.record(&r);
    let mut shown = Shown::default();
    t.flush(0, &mut shown);
    let key = format!(
        "inference_extension_plugin_duration_seconds_count{{extension_point=Scorer,plugin_type={},plugin_name={name}}}",
        plugin.typed_name().type_name
    );
    assert_eq!(
        shown.get(&key),
        Some(1),
        "{:?}",
        shown.0.keys().collect::<Vec<_>>()
    );
}

#[test]
fn pool_gauges_and_label_values() {
    use scheduler_core::snapshot::{EndpointState, PoolSnapshot};
    use scheduler_core::Endpoint;
    let state = |addr: &str, queue: u32, kv: f64, stale: bool| {
        let mut endpoint = Endpoint::new(addr.to_string());
        endpoint.metrics.waiting_queue_size = queue;
        endpoint.metrics.running_requests = queue + 1;
        endpoint.metrics.kv_cache_usage = kv;
        EndpointState {
            endpoint,
            consecutive_failures: 0,
            stale,
        }
    };
    let mut g = PoolGauges::new("pool");
    let mut shown = Shown::default();
    let snap = PoolSnapshot {
        endpoints: vec![
            state("10.0.0.1:8000", 4, 0.5, false),
            state("10.0.0.2:8000", 2, 0.25, false),
            state("10.0.0.3:8000", 9, 1.0, true),
        ],
        ..PoolSnapshot::default()
    };
    g.publish(&snap, &mut shown);
    assert_eq!(shown.get("inference_pool_ready_pods{name=pool}"), Some(2));
    assert_eq!(
        shown.get("endpoint_picker_pool_average_kv_cache_utilization_ppm{name=pool}"),
        Some(375_000)
    );
    assert_eq!(
        shown.get("endpoint_picker_pool_average_queue_size_milli{name=pool}"),
        Some(3000)
    );
    assert_eq!(
        shown.get("endpoint_picker_pool_average_running_requests_milli{name=pool}"),
        Some(4000),
        "fresh endpoints only: (5 + 3) / 2"
    );
    // llm-d's spread: sample standard deviation of the fresh endpoints, sqrt(2 / 1) for the
    // queues 4 and 2 and the running requests 5 and 3; sqrt(2 × 0.125² / 1) for KV 0.5, 0.25.
    for (gauge, want) in [
        ("queue_size_milli", 1414),
        ("running_requests_milli", 1414),
        ("kv_cache_utilization_ppm", 176_777),
    ] {
        assert_eq!(
            shown.get(&format!(
                "endpoint_picker_pool_std_dev_{gauge}{{name=pool}}"
            )),
            Some(want),
            "{gauge}"
        );
    }
    assert!(shown
        .0
        .keys()
        .any(|k| k.starts_with("inference_extension_info{commit=")));
    let snap = PoolSnapshot {
        endpoints: vec![state("10.0.0.2:8000", 1, 0.25, false)],
        ..PoolSnapshot::default()
    };
    g.publish(&snap, &mut shown);
    assert_eq!(
        shown.get("inference_pool_per_pod_queue_size{name=pool,model_server_pod=10.0.0.1:8000}"),
        Some(0),
        "an endpoint that left shows 0"
    );
    assert_eq!(
        shown.get("endpoint_picker_pool_std_dev_queue_size_milli{name=pool}"),
        Some(0),
        "one endpoint: no spread"
    );
    assert_eq!(label_value("a;b=c\n"), "a_b_c_");
    assert_eq!(label_value(&"é".repeat(100)).len(), 128);
}

#[test]
fn ttft_by_streaming_and_the_streamed_tpot_follow_llm_d() {
    let p = picker();
    let mut t = Telemetry::new(&p);
    let mut shown = Shown::default();
    // Not streamed: first byte at 150 ms (the whole response), no streaming TPOT.
    t.record(&RequestRecord {
        first_byte_ns: Some(150_000_000),
        ..routed("m", 1_000)
    });
    // Streamed: first byte at 40 ms, done at 150 ms with 7 completion tokens: 110 ms over the
    // 6 tokens after the first, ~18.3 ms each.
    t.record(&RequestRecord {
        first_byte_ns: Some(40_000_000),
        streaming: true,
        ..routed("m", 1_000)
    });
    // Streamed with one token: no TPOT to speak of; its chunks came 3 ms and 70 ms apart.
    let mut gaps = RequestRecord::default();
    gaps.chunk_gap(3_000_000);
    gaps.chunk_gap(70_000_000);
    t.record(&RequestRecord {
        first_byte_ns: Some(40_000_000),
        streaming: true,
        tokens: Some((20, 1)),
        chunk_gaps: gaps.chunk_gaps,
        ..routed("m", 1_000)
    });
    t.flush(0, &mut shown);
    let ttft = |streaming: &str, le: &str| {
        shown.get(&format!(
            "llm_d_epp_request_ttft_seconds_bucket{{model_name=m,target_model_name=m,fairness_id=default-flow,priority=0,streaming={streaming},le={le}}}"
        ))
    };
    assert_eq!(
        (ttft("false", "0.1"), ttft("false", "0.2")),
        (Some(0), Some(1))
    );
    assert_eq!(
        (ttft("true", "0.025"), ttft("true", "0.05")),
        (Some(0), Some(2))
    );
    let tpot = |le: &str| {
        shown.get(&format!(
            "llm_d_epp_request_streaming_tpot_seconds_bucket{{model_name=m,target_model_name=m,fairness_id=default-flow,priority=0,le={le}}}"
        ))
    };
    assert_eq!(
        (tpot("0.01"), tpot("0.02"), tpot("+Inf")),
        (Some(0), Some(1), Some(1))
    );
    assert_eq!(
        shown.get(
            "llm_d_epp_request_streaming_tpot_seconds_count{model_name=m,target_model_name=m,fairness_id=default-flow,priority=0}"
        ),
        Some(1)
    );
    let itl = |le: &str| {
        shown.get(&format!(
            "llm_d_epp_request_streaming_itl_seconds_bucket{{model_name=m,target_model_name=m,fairness_id=default-flow,priority=0,le={le}}}"
        ))
    };
    assert_eq!(
        (
            itl("0.001"),
            itl("0.005"),
            itl("0.06"),
            itl("0.08"),
            itl("+Inf")
        ),
        (Some(0), Some(1), Some(1), Some(2), Some(2))
    );
}

#[test]
fn picks_and_replies_are_counted_in_memory_and_flushed_as_deltas() {
    let p = picker();
    let mut t = Telemetry::new(&p);
    let mut shown = Shown::default();
    t.pick("10.0.0.1:8000", "default");
    t.pick("10.0.0.1:8000", "default");
    t.pick("10.0.0.1:8000", "prefill");
    t.reply(429);
    t.flush(0, &mut shown);
    let picks =
        |s: &Shown, ep: &str, profile: &str| s.get(&Shown::key(&families::PICKS, &[ep, profile]));
    assert_eq!(picks(&shown, "10.0.0.1:8000", "default"), Some(2));
    assert_eq!(picks(&shown, "10.0.0.1:8000", "prefill"), Some(1));
    assert_eq!(
        shown.get(&Shown::key(&families::LOCAL_REPLIES, &["429"])),
        Some(1)
    );
    // A second flush sends only what changed since the first.
    t.pick("10.0.0.1:8000", "default");
    t.flush(1000, &mut shown);
    assert_eq!(picks(&shown, "10.0.0.1:8000", "default"), Some(3));
    assert_eq!(picks(&shown, "10.0.0.1:8000", "prefill"), Some(1));
    assert_eq!(
        shown.get(&Shown::key(&families::LOCAL_REPLIES, &["429"])),
        Some(1)
    );
}

/// Pod churn: more addresses over time than the pick series hold at once. Idle endpoints are
/// dropped after their counts are sent, so every new address still gets its own series and
/// the totals stay exact when an address returns.
#[test]
fn pick_series_follow_pod_churn() {
    let p = picker();
    let mut t = Telemetry::new(&p);
    let mut shown = Shown::default();
    let picks = |s: &Shown, ep: &str| s.get(&Shown::key(&families::PICKS, &[ep, "default"]));
    for round in 0..3 * MAX_PICK_ENDPOINTS {
        // Four pods serve at a time; each round one is replaced by a new address.
        for k in 0..4 {
            t.pick(&format!("pod-{}", round + k), "default");
        }
        t.flush(round as u64 * 1000, &mut shown);
    }
    let last = 3 * MAX_PICK_ENDPOINTS - 1;
    assert_eq!(picks(&shown, &format!("pod-{}", last + 3)), Some(1));
    assert_eq!(picks(&shown, &format!("pod-{last}")), Some(4));
    assert_eq!(picks(&shown, OTHER_MODEL), None, "no pick fell into _other");
    // A pod dropped long ago comes back: its series continues.
    t.pick("pod-7", "default");
    t.flush(u64::MAX / 2, &mut shown);
    assert_eq!(picks(&shown, "pod-7"), Some(5));
}

#[test]
fn queue_gauges_per_flow_add_up_over_gates_and_writers_and_drop_to_zero() {
    let flow = |id: &str, priority, requests, bytes| FlowDepth {
        fairness_id: id.into(),
        priority,
        requests,
        bytes,
    };
    let size = |shown: &Shown, id: &str, p: i32| {
        shown.get(&format!(
            "inference_extension_flow_control_queue_size{{fairness_id={id},priority={p}}}"
        ))
    };
    // Two listeners' gates reported as one: tenant a waits in both; b only in band 5.
    let mut shown = Shown::default();
    let mut process = QueueGauges::default();
    let a = vec![flow("a", 0, 1, 100), flow("b", 5, 2, 2_048)];
    let b = vec![flow("a", 0, 3, 300), flow("default-flow", 5, 0, 0)];
    process.publish(a.into_iter().chain(b), &mut shown);
    assert_eq!(size(&shown, "a", 0), Some(4));
    assert_eq!(size(&shown, "b", 5), Some(2));
    assert_eq!(
        size(&shown, "default-flow", 5),
        Some(0),
        "a band's empty default flow shows"
    );
    assert_eq!(
        shown.get("inference_extension_flow_control_queue_bytes{fairness_id=a,priority=0}"),
        Some(400)
    );
    // A second writer (another worker VM) adds its own share to the same gauge.
    let mut vm = QueueGauges::default();
    vm.publish([flow("a", 0, 2, 20)], &mut shown);
    assert_eq!(size(&shown, "a", 0), Some(6));
    // b's requests left: its gauge drops to 0; a's is moved by the change only.
    process.publish([flow("a", 0, 5, 500)], &mut shown);
    assert_eq!(size(&shown, "b", 5), Some(0));
    assert_eq!(size(&shown, "a", 0), Some(7));
    vm.publish([], &mut shown);
    assert_eq!(size(&shown, "a", 0), Some(5));
    // Fairness ids beyond the bound add up under `_other`.
    let mut shown = Shown::default();
    let mut many = QueueGauges::default();
    many.publish(
        (0..MAX_FAIRNESS_IDS + 3).map(|i| flow(&format!("t{i}"), 0, 1, 1)),
        &mut shown,
    );
    assert_eq!(size(&shown, OTHER_MODEL, 0), Some(3));
}

#[test]
fn latency_outcomes_become_llm_d_predictor_series() {
    use scheduler_core::model::response::LatencyOutcome;
    let p = picker();
    let mut t = Telemetry::new(&p);
    let mut shown = Shown::default();
    let outcome = |ttft_ms: f64, predicted: Option<f64>, tpot_ms: Option<f64>| LatencyOutcome {
        plugin_name: "pl".into(),
        plugin_type: "predicted-latency-producer",
        ttft_ms,
        predicted_ttft_ms: predicted,
        ttft_objective_ms: 100.0,
        tpot_ms,
        predicted_tpot_ms: tpot_ms.map(|t| t * 0.9),
        tpot_objective_ms: 30.0,
    };
    // Cold (no prediction), then 80 ms predicted as 60 ms, then 150 ms against a 100 ms
    // objective with a 50 ms TPOT against 30 ms; a response without a measurement adds nothing.
    for o in [
        Some(outcome(40.0, None, None)),
        Some(outcome(80.0, Some(60.0), Some(10.0))),
        Some(outcome(150.0, Some(-5.0), Some(50.0))),
        None,
    ] {
        t.record(&RequestRecord {
            latency: o,
            ..routed("m", 10_000)
        });
    }
    t.flush(0, &mut shown);
    let m = "model_name=m,target_model_name=m";
    let pl = "plugin_name=pl,plugin_type=predicted-latency-producer";
    let get = |k: String| shown.get(&k).unwrap_or_else(|| panic!("{k} missing"));
    assert_eq!(
        get(format!(
            "inference_objective_request_ttft_seconds_count{{{m}}}"
        )),
        3
    );
    assert_eq!(
        get(format!(
            "inference_objective_request_ttft_seconds_bucket{{{m},le=0.05}}"
        )),
        1
    );
    assert_eq!(
        get(format!(
            "inference_objective_request_ttft_seconds_bucket{{{m},le=0.1}}"
        )),
        2
    );
    assert_eq!(
        get(format!(
            "inference_objective_request_tpot_seconds_count{{{m}}}"
        )),
        2
    );
    assert_eq!(
        get(format!(
            "inference_objective_request_tpot_seconds_bucket{{{m},le=0.01}}"
        )),
        1
    );
    // Two predictions; a negative one counts in the lowest bucket.
    assert_eq!(
        get(format!(
            "llm_d_epp_request_predicted_ttft_seconds_count{{{pl},{m}}}"
        )),
        2
    );
    assert_eq!(
        get(format!(
            "llm_d_epp_request_predicted_ttft_seconds_bucket{{{pl},{m},le=0.005}}"
        )),
        1
    );
    assert_eq!(
        get(format!(
            "llm_d_epp_request_predicted_tpot_seconds_count{{{pl},{m}}}"
        )),
        2
    );
    assert_eq!(
        get(format!(
            "llm_d_epp_request_slo_violation_total{{{pl},{m},type=ttft}}"
        )),
        1
    );
    assert_eq!(
        get(format!(
            "llm_d_epp_request_slo_violation_total{{{pl},{m},type=tpot}}"
        )),
        1
    );
    // Nothing new: the next flush sends nothing.
    let mut again = Shown::default();
    t.flush(1_000, &mut again);
    assert!(
        again.0.keys().all(|k| !k.contains("predicted")),
        "{:?}",
        again.0
    );
}

#[test]
fn eviction_and_saturation_gauges_are_millionths_and_confirmations_fill_the_histogram() {
    use scheduler_core::flowcontrol::eviction::{EvictionGauges, EvictionReport};
    let mut shown = Shown::default();
    let stages = std::sync::atomic::AtomicU8::new(0);
    set_pool_saturation(
        &scheduler_core::PoolSaturation {
            effective: 1.25,
            prefill: None,
            decode: Some(1.25),
        },
        &stages,
        &mut shown,
    );
    set_eviction_gauges(
        &EvictionGauges {
            reclaim_target: -0.5,
            pending_reclaim: 0.333_333_4,
        },
        &mut shown,
    );
    assert_eq!(
        shown.get("endpoint_picker_flow_control_pool_saturation_ppm{stage=effective}"),
        Some(1_250_000)
    );
    assert_eq!(
        shown.get("endpoint_picker_flow_control_pool_saturation_ppm{stage=decode}"),
        Some(1_250_000)
    );
    assert_eq!(
        shown.get("endpoint_picker_flow_control_pool_saturation_ppm{stage=prefill}"),
        None,
        "no prefill endpoint, no prefill series"
    );
    assert_eq!(
        shown.get("endpoint_picker_flow_control_reclaim_target_ppm{}"),
        Some(0),
        "a negative deficit shows as 0"
    );
    assert_eq!(
        shown.get("endpoint_picker_flow_control_pending_reclaim_ppm{}"),
        Some(333_333)
    );
    let nan = scheduler_core::PoolSaturation {
        effective: f64::NAN,
        ..scheduler_core::PoolSaturation::IDLE
    };
    set_pool_saturation(&nan, &stages, &mut shown);
    assert_eq!(
        shown.get("endpoint_picker_flow_control_pool_saturation_ppm{stage=effective}"),
        Some(0)
    );
    assert_eq!(
        shown.get("endpoint_picker_flow_control_pool_saturation_ppm{stage=decode}"),
        Some(0),
        "the decode stage lost its endpoints: 0, not its last value"
    );
    assert_eq!(
        shown.get("endpoint_picker_flow_control_pool_saturation_ppm{stage=prefill}"),
        None,
        "a stage never shown is not created"
    );
    let m = max_saturation(
        scheduler_core::PoolSaturation {
            effective: 0.5,
            prefill: Some(0.5),
            decode: Some(0.25),
        },
        scheduler_core::PoolSaturation {
            effective: 0.75,
            prefill: None,
            decode: Some(0.75),
        },
    );
    assert_eq!(
        (m.effective, m.prefill, m.decode),
        (0.75, Some(0.5), Some(0.75))
    );
    let report = EvictionReport {
        confirmed: 2,
        confirmation_ms: vec![30, 3_000],
        ..EvictionReport::default()
    };
    add_eviction_report(&report, &mut shown);
    let bucket = |le: &str| {
        shown.get(&format!(
            "llm_d_epp_flow_control_revocation_confirmation_seconds_bucket{{le={le}}}"
        ))
    };
    assert_eq!(
        (bucket("0.025"), bucket("0.05"), bucket("2.5"), bucket("5")),
        (Some(0), Some(1), Some(1), Some(2))
    );
    assert_eq!(
        shown.get("llm_d_epp_flow_control_revocation_confirmation_seconds_count{}"),
        Some(2)
    );
}

#[test]
fn every_flow_control_outcome_counts_once_in_requests_total() {
    let mut t = Telemetry::new(&picker());
    t.queue_wait(None, 0, "Dispatched", 0);
    t.queue_wait(None, 0, "Dispatched", 120);
    t.queue_wait(None, -1, "RejectedCapacity", 0);
    let mut shown = Shown::default();
    t.flush(1_000, &mut shown);
    assert_eq!(
        shown.get("llm_d_epp_flow_control_requests_total{outcome=Dispatched,priority=0}"),
        Some(2)
    );
    assert_eq!(
        shown.get("llm_d_epp_flow_control_requests_total{outcome=RejectedCapacity,priority=-1}"),
        Some(1)
    );
    // The queue-duration histogram counts the same requests.
    assert_eq!(
        shown.get(
            "inference_extension_flow_control_request_queue_duration_seconds_count{fairness_id=default-flow,priority=0,outcome=Dispatched}"
        ),
        Some(2)
    );
    // Only what is new is added at the next flush.
    t.queue_wait(None, 0, "EvictedTTL", 60_000);
    t.flush(2_000, &mut shown);
    assert_eq!(
        shown.get("llm_d_epp_flow_control_requests_total{outcome=Dispatched,priority=0}"),
        Some(2)
    );
    assert_eq!(
        shown.get("llm_d_epp_flow_control_requests_total{outcome=EvictedTTL,priority=0}"),
        Some(1)
    );
}

#[test]
fn capacity_utilization_stale_endpoints_and_flow_timings() {
    let mut shown = Shown::default();
    let u = CapacityUtilization {
        bands: vec![
            BandUtilization {
                priority: 10,
                requests: Some(0.25),
                bytes: None,
            },
            BandUtilization {
                priority: 0,
                requests: Some(0.0),
                bytes: Some(0.5),
            },
        ],
        requests: None,
        bytes: Some(0.125),
    };
    set_capacity_utilization(&u, &mut shown);
    assert_eq!(
        shown.get("endpoint_picker_flow_control_capacity_utilization_requests_ppm{priority=10}"),
        Some(250_000)
    );
    assert_eq!(
        shown.get("endpoint_picker_flow_control_capacity_utilization_requests_ppm{priority=0}"),
        Some(0)
    );
    assert_eq!(
        shown.get("endpoint_picker_flow_control_capacity_utilization_bytes_ppm{priority=10}"),
        None,
        "a band without a byte limit has no byte series"
    );
    assert_eq!(
        shown.get("endpoint_picker_flow_control_global_capacity_utilization_ppm{resource=bytes}"),
        Some(125_000)
    );
    assert_eq!(
        shown
            .get("endpoint_picker_flow_control_global_capacity_utilization_ppm{resource=requests}"),
        None,
        "no global request limit, no series"
    );
    // Several gates: the fullest per band and globally.
    let other = CapacityUtilization {
        bands: vec![BandUtilization {
            priority: 0,
            requests: Some(0.75),
            bytes: Some(0.25),
        }],
        requests: Some(0.5),
        bytes: None,
    };
    let m = max_utilization([u, other]);
    assert_eq!(m.bands.len(), 2);
    assert_eq!(m.bands[1].priority, 0);
    assert_eq!(
        (m.bands[1].requests, m.bands[1].bytes),
        (Some(0.75), Some(0.5))
    );
    assert_eq!((m.requests, m.bytes), (Some(0.5), Some(0.125)));

    set_stale_endpoints("util;x", 3, &mut shown);
    assert_eq!(
        shown.get("llm_d_epp_flow_control_stale_endpoints{detector=util_x}"),
        Some(3),
        "the plugin name is made safe as a label value"
    );

    let mut timings = FlowTimings::default();
    assert!(timings.is_empty());
    timings.dispatch_cycle(50_000);
    timings.dispatch_cycle(3_000_000);
    timings.enqueue("default-flow", 0, "NotYetFinalized", 150_000);
    timings.enqueue("tenant-a", 0, "NotYetFinalized", 150_000);
    timings.flush(&mut shown);
    let cycle = |le: &str| {
        shown.get(&format!(
            "llm_d_epp_flow_control_dispatch_cycle_duration_seconds_bucket{{le={le}}}"
        ))
    };
    assert_eq!(
        (
            cycle("0.0001"),
            cycle("0.002"),
            cycle("0.005"),
            cycle("+Inf")
        ),
        (Some(1), Some(1), Some(2), Some(2))
    );
    assert_eq!(
        shown.get(
            "llm_d_epp_flow_control_request_enqueue_duration_seconds_bucket{fairness_id=default-flow,priority=0,outcome=NotYetFinalized,le=0.0002}"
        ),
        Some(1)
    );
    assert_eq!(
        shown.get(
            "llm_d_epp_flow_control_request_enqueue_duration_seconds_count{fairness_id=tenant-a,priority=0,outcome=NotYetFinalized}"
        ),
        Some(1)
    );
    // A writer keeps a bounded number of flows' names; the default flow is always its own.
    let mut flows = FairnessLabels::default();
    for i in 0..MAX_FAIRNESS_IDS {
        assert_eq!(flows.label(&format!("tenant-{i}")), format!("tenant-{i}"));
    }
    assert_eq!(flows.label("one-too-many"), OTHER_MODEL);
    assert_eq!(flows.label("tenant-0"), "tenant-0");
    assert_eq!(flows.label("default-flow"), "default-flow");
}

#[test]
fn cached_prompt_tokens_and_ntpot_per_model() {
    let mut t = Telemetry::new(&picker());
    // 150 ms over 7 completion tokens: 21.4 ms a token; 16 of 20 prompt tokens were cached.
    t.record(&RequestRecord {
        cached_tokens: Some(16),
        ..routed("m", 10_000)
    });
    // A response that does not report cached tokens adds no observation; one without
    // completion tokens has no NTPOT.
    t.record(&routed("m", 10_000));
    t.record(&RequestRecord {
        tokens: Some((20, 0)),
        ..routed("m", 10_000)
    });
    let mut shown = Shown::default();
    t.flush(0, &mut shown);
    let cached = |le: &str| {
        shown.get(&format!(
            "inference_objective_prompt_cached_tokens_bucket{{model_name=m,target_model_name=m,fairness_id=default-flow,priority=0,le={le}}}"
        ))
    };
    assert_eq!(
        (cached("8"), cached("16"), cached("+Inf")),
        (Some(0), Some(1), Some(1))
    );
    assert_eq!(
        shown.get("inference_objective_prompt_cached_tokens_sum{model_name=m,target_model_name=m,fairness_id=default-flow,priority=0}"),
        Some(16)
    );
    let ntpot = |le: &str| {
        shown.get(&format!(
            "inference_objective_normalized_time_per_output_token_seconds_bucket{{model_name=m,target_model_name=m,fairness_id=default-flow,priority=0,le={le}}}"
        ))
    };
    assert_eq!((ntpot("0.02"), ntpot("0.05")), (Some(0), Some(2)));
    assert_eq!(
        shown.get(
            "inference_objective_normalized_time_per_output_token_seconds_count{model_name=m,target_model_name=m,fairness_id=default-flow,priority=0}"
        ),
        Some(2)
    );
}

#[test]
fn running_requests_rise_when_routed_and_fall_when_recorded() {
    let p = picker();
    let mut t = Telemetry::new(&p);
    let mut shown = Shown::default();
    let gauge = |shown: &Shown, m: &str, target: &str| {
        shown.get(&format!(
            "inference_objective_running_requests{{model_name={m},target_model_name={target},fairness_id=default-flow,priority=0}}"
        ))
    };
    // Two requests for "a" (to two target models) and one for "b" go upstream.
    t.started(&labels("a", "a"), "10.0.0.1:8000");
    t.started(&labels("a", "a-lora"), "10.0.0.2:8000");
    t.started(&labels("b", "b"), "10.0.0.1:8000");
    t.flush(0, &mut shown);
    assert_eq!(gauge(&shown, "a", "a"), Some(1));
    assert_eq!(gauge(&shown, "a", "a-lora"), Some(1));
    assert_eq!(gauge(&shown, "b", "b"), Some(1));
    // One of "a" finishes; a request refused locally (never counted) changes nothing.
    let mut done = routed("a", 1_000);
    done.running = true;
    t.record(&done);
    t.record(&RequestRecord {
        labels: Some(labels("b", "b")),
        error_status: Some(429),
        ..RequestRecord::default()
    });
    t.flush(1_000, &mut shown);
    assert_eq!(gauge(&shown, "a", "a"), Some(0));
    assert_eq!(gauge(&shown, "a", "a-lora"), Some(1));
    assert_eq!(gauge(&shown, "b", "b"), Some(1));
    // The rest finish (the second "a" went to its adapter): back to 0 for both.
    let mut lora = routed("a", 1_000);
    lora.labels = Some(labels("a", "a-lora"));
    lora.running = true;
    let mut b = routed("b", 1_000);
    b.running = true;
    t.record(&lora);
    t.record(&b);
    t.flush(2_000, &mut shown);
    assert_eq!(gauge(&shown, "a", "a-lora"), Some(0));
    assert_eq!(gauge(&shown, "b", "b"), Some(0));
    // A model whose requests all start and end between two flushes still gets its series (0).
    t.started(&labels("c", "c"), "10.0.0.1:8000");
    let mut c = routed("c", 1_000);
    c.running = true;
    t.record(&c);
    t.flush(3_000, &mut shown);
    assert_eq!(gauge(&shown, "c", "c"), Some(0));
}

#[test]
fn running_requests_beyond_the_pair_limit_start_and_end_under_other() {
    let p = picker();
    let mut t = Telemetry::new(&p);
    let mut shown = Shown::default();
    for i in 0..MAX_MODEL_PAIRS {
        t.record(&routed(&format!("m{i}"), 1_000));
    }
    t.started(&labels("late", "late"), "10.0.0.1:8000");
    t.flush(0, &mut shown);
    let other = format!("inference_objective_running_requests{{model_name={OTHER_MODEL},target_model_name={OTHER_MODEL},fairness_id=default-flow,priority=0}}");
    assert_eq!(shown.get(&other), Some(1));
    let mut done = routed("late", 1_000);
    done.running = true;
    t.record(&done);
    t.flush(1_000, &mut shown);
    assert_eq!(shown.get(&other), Some(0));
    assert_eq!(
        shown.get("inference_objective_running_requests{model_name=late,target_model_name=late,fairness_id=default-flow,priority=0}"),
        None
    );
}

#[test]
fn scheduling_attempts_by_outcome_target_model_and_endpoint() {
    let p = picker();
    let mut t = Telemetry::new(&p);
    let mut shown = Shown::default();
    let pair = labels("m", "m-lora");
    t.started(&pair, "10.0.0.1:8000");
    t.started(&pair, "10.0.0.1:8000");
    t.started(&pair, "[fd00::2]:9000");
    t.record(&RequestRecord {
        labels: Some(pair.clone()),
        scheduling_failed: true,
        error_status: Some(503),
        ..RequestRecord::default()
    });
    t.flush(0, &mut shown);
    let attempts = |shown: &Shown, status: &str, pod: &str, port: &str| {
        shown.get(&format!(
            "inference_extension_scheduler_attempts_total{{status={status},target_model_name=m-lora,pod_name={pod},namespace=,port={port}}}"
        ))
    };
    assert_eq!(attempts(&shown, "success", "10.0.0.1", "8000"), Some(2));
    assert_eq!(attempts(&shown, "success", "[fd00::2]", "9000"), Some(1));
    assert_eq!(attempts(&shown, "failure", "", ""), Some(1));
    // A request refused before scheduling (no failed attempt) adds none.
    t.record(&RequestRecord {
        labels: Some(pair.clone()),
        error_status: Some(429),
        ..RequestRecord::default()
    });
    t.flush(1_000, &mut shown);
    assert_eq!(attempts(&shown, "failure", "", ""), Some(1));
}

#[test]
fn prefix_hits_as_gies_ratio_and_bytes_histograms() {
    let p = picker();
    let mut t = Telemetry::new(&p);
    let mut shown = Shown::default();
    let hit = |matched_bytes, total_bytes| RequestRecord {
        prefix_hit: Some(scheduler_core::PrefixHit {
            matched_bytes,
            total_bytes,
        }),
        ..routed("m", 1_000)
    };
    t.record(&hit(0, 4096)); // a miss
    t.record(&hit(2048, 4096)); // half
    t.record(&hit(4096, 4096)); // all
    t.record(&hit(0, 0)); // no block: bytes only, no ratio
    t.record(&routed("m", 1_000)); // no prefix index: nothing
    t.flush(0, &mut shown);
    let ratio = |le: &str| {
        shown.get(&format!(
            "inference_extension_prefix_indexer_hit_ratio_bucket{{le={le}}}"
        ))
    };
    assert_eq!(ratio("0"), Some(1));
    assert_eq!(ratio("0.4"), Some(1));
    assert_eq!(ratio("0.5"), Some(2));
    assert_eq!(ratio("0.9"), Some(2));
    assert_eq!(ratio("1"), Some(3));
    assert_eq!(
        shown.get("inference_extension_prefix_indexer_hit_ratio_count{}"),
        Some(3)
    );
    let bytes = |le: &str| {
        shown.get(&format!(
            "inference_extension_prefix_indexer_hit_bytes_bucket{{le={le}}}"
        ))
    };
    assert_eq!(bytes("0"), Some(2));
    assert_eq!(bytes("2048"), Some(3));
    assert_eq!(bytes("4096"), Some(4));
    assert_eq!(
        shown.get("inference_extension_prefix_indexer_hit_bytes_sum{}"),
        Some(6144)
    );
}
