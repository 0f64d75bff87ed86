//! GIE's reference cases with their expected picks and scores, replayed through the public API.
//!
//! - Hermetic ext_proc cases: `test/integration/epp/hermetic_test.go` at GIE@1748e829
//!   (docs/SOURCES.md#gie-hermetic-cases). Config = `testdata/default-config.yaml`: queue, kv-cache, prefix and
//!   LoRA scorers, weight 1 each. Endpoint `P(i, queue, kv, adapters…)` lives at
//!   `192.168.1.(i+1):8000`; `MaxActiveModels` is 0. Where the upstream table gives only the
//!   totals, the endpoints below are the ones consistent with those totals.
//! - `pkg/epp/scheduling/scheduler_test.go`: the 4-scorer profile picks pod2 with 2.8.
//! - `approximateprefix/plugin_test.go`: "aaaaaa" → 2 hashes and its follow-ups (§4).

use scheduler_core::model::result::{ProfileRunResult, SchedulingResult};
use scheduler_core::plugin::registry::EntryKind;
use scheduler_core::plugin::{CycleContext, CycleState, Handle, ProduceContext, RequestState};
use scheduler_core::plugins::producer::approx_prefix_cache::{
    PrefixMatch, PREFIX_CACHE_MATCH_INFO,
};
use scheduler_core::{
    load, Endpoint, EndpointPicker, InferenceRequest, Registry, RequestError, SplitMix64,
};

const NOW_MS: u64 = 1_000_000;

/// GIE `test/integration/epp/testdata/default-config.yaml`, as JSON, with max-score returning
/// the whole ordered list so every total is visible.
const HERMETIC_CONFIG: &str = r#"{
  "plugins": [
    {"type": "queue-scorer"},
    {"type": "kv-cache-utilization-scorer"},
    {"type": "prefix-cache-scorer"},
    {"type": "lora-affinity-scorer"},
    {"type": "max-score-picker", "parameters": {"maxNumOfEndpoints": 3}},
    {"type": "openai-parser"}
  ],
  "schedulingProfiles": [{"name": "default", "plugins": [
    {"pluginRef": "queue-scorer", "weight": 1},
    {"pluginRef": "kv-cache-utilization-scorer", "weight": 1},
    {"pluginRef": "prefix-cache-scorer", "weight": 1},
    {"pluginRef": "lora-affinity-scorer", "weight": 1},
    {"pluginRef": "max-score-picker"}
  ]}],
  "inferenceObjectives": [{"name": "batch", "priority": -1}]
}"#;

/// GIE's `P(idx, queue, kv, adapters…)`.
fn p(idx: u8, queue: u32, kv: f64, adapters: &[&str]) -> Endpoint {
    let mut e = Endpoint::new(format!("192.168.1.{}:8000", idx + 1));
    e.metrics.waiting_queue_size = queue;
    e.metrics.kv_cache_usage = kv;
    e.metrics.active_lora_adapters = adapters.iter().map(|s| s.to_string()).collect();
    e.metrics.update_time_ms = NOW_MS - 10;
    e
}

fn picker(config: &str) -> EndpointPicker {
    load(config, &Registry::with_builtins()).unwrap().0
}

fn schedule(
    picker: &EndpointPicker,
    pool: &[Endpoint],
    body: &str,
    headers: &[(&str, &str)],
) -> Result<SchedulingResult, RequestError> {
    let headers = headers.iter().map(|&(k, v)| (k.into(), v.into())).collect();
    let req = picker.parse_request("/v1/completions", body.as_bytes(), headers)?;
    picker.schedule(
        &req,
        pool,
        NOW_MS,
        &mut SplitMix64::new(1),
        &mut RequestState::new(),
    )
}

fn assert_ranked(r: &SchedulingResult, targets: &[usize], scores: &[f64], case: &str) {
    let got = r.primary().unwrap();
    assert_eq!(got.targets, targets, "{case}: order");
    for (g, w) in got.scores.iter().zip(scores) {
        assert!(
            (g - w).abs() < 1e-9,
            "{case}: scores {:?}, want {scores:?}",
            got.scores
        );
    }
}

#[test]
fn hermetic_cases() {
    let ep = picker(HERMETIC_CONFIG);
    let body = |model: &str| format!(r#"{{"model":"{model}","prompt":"test prompt"}}"#);
    struct Case {
        name: &'static str,
        pool: Vec<Endpoint>,
        model: &'static str,
        want: [usize; 3],
        scores: [f64; 3],
    }
    let cases = [
        Case {
            name: "select lower queue and kv cache",
            // queue (10−q)/10: .7, 1, 0; kv 1−u: .8, .9, .8; prefix 0; LoRA 0 (no adapters, max 0).
            pool: vec![p(0, 3, 0.2, &[]), p(1, 0, 0.1, &[]), p(2, 10, 0.2, &[])],
            model: "my-model",
            want: [1, 0, 2],
            scores: [1.9, 1.5, 0.8],
        },
        Case {
            name: "select active lora, low queue",
            // pod2: queue 1 + kv .9 + LoRA 1 = 2.9; pod1: 1 + .8 = 1.8; pod3: 0 + .8 = .8.
            pool: vec![
                p(0, 0, 0.2, &["foo", "bar"]),
                p(1, 0, 0.1, &["foo", "sql-lora-1fdg2"]),
                p(2, 10, 0.2, &["foo", "bar"]),
            ],
            model: "sql-lora-1fdg2",
            want: [1, 0, 2],
            scores: [2.9, 1.8, 0.8],
        },
        Case {
            name: "select lora despite higher kv cache",
            // Equal queues → 1.0 each; kv .8/.6/.7; LoRA only on pod2: 1.8 / 2.6 / 1.7.
            pool: vec![
                p(0, 0, 0.2, &["foo"]),
                p(1, 0, 0.4, &["sql-lora-1fdg2"]),
                p(2, 0, 0.3, &["bar"]),
            ],
            model: "sql-lora-1fdg2",
            want: [1, 0, 2],
            scores: [2.6, 1.8, 1.7],
        },
        Case {
            name: "do not shed requests by default",
            // queue .4/1/0; kv .8/.15/.1; LoRA 1 on pod1: 2.2 / 1.15 / 0.1. Saturated pool, but
            // priority 0 is not sheddable.
            pool: vec![
                p(0, 6, 0.2, &["sql-lora-1fdg2"]),
                p(1, 0, 0.85, &[]),
                p(2, 10, 0.9, &[]),
            ],
            model: "sql-lora-1fdg2",
            want: [0, 1, 2],
            scores: [2.2, 1.15, 0.1],
        },
    ];
    for c in cases {
        let r = schedule(&ep, &c.pool, &body(c.model), &[])
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_ranked(&r, &c.want, &c.scores, c.name);
        assert_eq!(
            ep.destination(&r, &c.pool),
            c.want
                .iter()
                .map(|&i| c.pool[i].address.clone())
                .collect::<Vec<_>>()
                .join(","),
            "{}: ordered fallback list",
            c.name
        );
    }
}

#[test]
fn sheddable_request_is_rejected_when_saturated() {
    let ep = picker(HERMETIC_CONFIG);
    // Same pool as "do not shed": saturation = mean(max(6/5,.2/.8), max(0,.85/.8), max(10/5,.9/.8)) ≈ 1.42.
    let pool = vec![p(0, 6, 0.2, &[]), p(1, 0, 0.85, &[]), p(2, 10, 0.9, &[])];
    let body = r#"{"model":"m","prompt":"x"}"#;
    let err = schedule(
        &ep,
        &pool,
        body,
        &[("x-gateway-inference-objective", "batch")],
    )
    .unwrap_err();
    assert_eq!(err, RequestError::Saturated);
    assert_eq!(err.status(), 429);
    assert_eq!(
        err.to_string(),
        "system saturated, sheddable request dropped"
    );
    // An idle pool admits the same sheddable request.
    let idle = vec![p(0, 0, 0.1, &[]), p(1, 0, 0.1, &[])];
    assert!(schedule(
        &ep,
        &idle,
        body,
        &[("x-gateway-inference-objective", "batch")]
    )
    .is_ok());
    // Stale metrics count as saturated for the detector.
    let mut stale = idle.clone();
    for e in &mut stale {
        e.metrics.update_time_ms = NOW_MS - 5_000;
    }
    assert_eq!(
        schedule(
            &ep,
            &stale,
            body,
            &[("x-gateway-inference-objective", "batch")]
        )
        .unwrap_err(),
        RequestError::Saturated
    );
}

#[test]
fn objective_and_model_rewrite_headers_under_both_names() {
    // llm-d-router's names are read first; GIE's older names still work alone (llm-d-router
    // keeps them as aliases).
    let ep = picker(HERMETIC_CONFIG);
    let parse = |headers: &[(&'static str, &'static str)]| {
        let headers = headers.iter().map(|&(k, v)| (k.into(), v.into())).collect();
        let r = ep
            .parse_request("/v1/completions", br#"{"model":"m","prompt":"x"}"#, headers)
            .unwrap();
        (r.priority, r.target_model.to_string())
    };
    assert_eq!(parse(&[]), (0, "m".into()));
    assert_eq!(
        parse(&[("x-llm-d-inference-objective", "batch")]),
        (-1, "m".into())
    );
    assert_eq!(
        parse(&[("x-gateway-inference-objective", "batch")]),
        (-1, "m".into())
    );
    // Both present: the new name wins, even naming no configured objective.
    assert_eq!(
        parse(&[
            ("x-gateway-inference-objective", "batch"),
            ("x-llm-d-inference-objective", "unknown"),
        ]),
        (0, "m".into())
    );
    assert_eq!(
        parse(&[("x-llm-d-model-name-rewrite", "m-lora")]),
        (0, "m-lora".into())
    );
    assert_eq!(
        parse(&[("x-gateway-model-name-rewrite", "m-lora")]),
        (0, "m-lora".into())
    );
    assert_eq!(
        parse(&[
            ("x-gateway-model-name-rewrite", "old"),
            ("x-llm-d-model-name-rewrite", "new"),
        ]),
        (0, "new".into())
    );
}

#[test]
fn error_status_mapping() {
    let ep = picker(HERMETIC_CONFIG);
    let pool = vec![p(0, 0, 0.1, &[])];
    // No candidates → 503.
    let err = schedule(&ep, &[], r#"{"model":"m","prompt":"x"}"#, &[]).unwrap_err();
    assert_eq!(
        (err.status(), err.to_string().as_str()),
        (503, "failed to find endpoint candidates")
    );
    // Invalid JSON → 400 with the decoder's message; missing model → GIE's text.
    let err = schedule(&ep, &pool, "{not json", &[]).unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(
        err.to_string()
            .starts_with("error unmarshaling request body"),
        "{err}"
    );
    let err = schedule(&ep, &pool, r#"{"prompt":"x"}"#, &[]).unwrap_err();
    assert_eq!(
        (err.status(), err.to_string().as_str()),
        (400, "model not found in request body")
    );
}

#[test]
fn everything_filtered_is_429() {
    let cfg = r#"{
      "plugins": [
        {"type": "label-selector-filter", "parameters": {"matchLabels": {"tier": "gold"}}},
        {"type": "queue-scorer"}
      ],
      "schedulingProfiles": [{"name": "p", "plugins": [{"pluginRef": "label-selector-filter"}, {"pluginRef": "queue-scorer"}]}]
    }"#;
    let ep = picker(cfg);
    let err = schedule(
        &ep,
        &[p(0, 0, 0.1, &[])],
        r#"{"model":"m","prompt":"x"}"#,
        &[],
    )
    .unwrap_err();
    assert!(matches!(err, RequestError::NoTargetEndpoint(_)));
    assert_eq!(err.status(), 429);
    let gold = p(1, 5, 0.5, &[]).with_label("tier", "gold");
    let r = schedule(
        &ep,
        &[p(0, 0, 0.1, &[]), gold],
        r#"{"model":"m","prompt":"x"}"#,
        &[],
    )
    .unwrap();
    assert_eq!(
        r.primary_targets(),
        [1],
        "only the labelled endpoint survives the filter"
    );
}

#[test]
fn scheduler_test_default_four_scorers_pick_pod2_with_2_8() {
    // scheduler_test.go: kv 0.8 + queue 1 + prefix 0 + LoRA 1.0 = 2.8 on pod2.
    let mut ep = picker(HERMETIC_CONFIG);
    let pool = vec![
        p(0, 5, 0.3, &[]),       // .5 + .7 + 0 + 0 = 1.2
        p(1, 0, 0.2, &["lora"]), // 1 + .8 + 0 + 1 = 2.8
        p(2, 10, 0.1, &[]),      // 0 + .9 + 0 + 0 = .9
    ];
    let r = schedule(&ep, &pool, r#"{"model":"lora","prompt":"x"}"#, &[]).unwrap();
    assert_ranked(&r, &[1, 0, 2], &[2.8, 1.2, 0.9], "scheduler_test");
    // No candidates is an error, not a panic.
    ep = picker(HERMETIC_CONFIG);
    assert_eq!(
        schedule(&ep, &[], r#"{"model":"lora","prompt":"x"}"#, &[]).unwrap_err(),
        RequestError::NoCandidates
    );
}

/// Builds the approx-prefix-cache producer with `params` through the public registry.
fn producer(params: &str) -> std::sync::Arc<dyn scheduler_core::Plugin> {
    let reg = Registry::with_builtins();
    let EntryKind::Available { factory, .. } =
        reg.get("approx-prefix-cache-producer").unwrap().kind
    else {
        panic!()
    };
    let v: serde_json::Value = serde_json::from_str(params).unwrap();
    factory("approx-prefix-cache-producer", Some(&v), &Handle::new(&[])).unwrap()
}

fn produce(
    plugin: &dyn scheduler_core::Plugin,
    pool: &[Endpoint],
    prompt: &str,
) -> (Vec<PrefixMatch>, RequestState) {
    let req = InferenceRequest::new("test-model", prompt);
    let mut cycle = CycleState::new();
    let mut state = RequestState::new();
    let cx = ProduceContext {
        request: &req,
        endpoints: pool,
        now_ms: NOW_MS,
    };
    let all: Vec<usize> = (0..pool.len()).collect();
    plugin
        .as_data_producer()
        .unwrap()
        .produce(&cx, &all, &mut cycle, &mut state);
    (
        cycle
            .get::<Vec<PrefixMatch>>(PREFIX_CACHE_MATCH_INFO)
            .unwrap()
            .clone(),
        state,
    )
}

#[test]
fn prefix_plugin_completion_case() {
    // GIE TestPrefixPluginCompletion, blockSizeTokens 1 (4 characters per block).
    let plugin = producer(
        r#"{"blockSizeTokens": 1, "autoTune": false, "maxPrefixBlocksToMatch": 4, "lruCapacityPerServer": 10}"#,
    );
    let pool = vec![p(0, 0, 0.0, &[]), p(1, 0, 0.0, &[]), p(2, 0, 0.0, &[])];

    // "aaaaaa" → 2 hashes ("aaaa", "aa"); nothing recorded yet, so every match is 0.
    let (m, mut state) = produce(plugin.as_ref(), &pool, "aaaaaa");
    assert!(
        m.iter()
            .all(|x| x.total_blocks == 2 && x.matched_blocks == 0),
        "{m:?}"
    );

    // Decode picks pod1, prefill picks pod3: both learn the blocks.
    let result = SchedulingResult {
        profile_results: vec![
            (
                "decode".into(),
                Some(ProfileRunResult {
                    targets: vec![0],
                    scores: vec![1.0],
                    ..ProfileRunResult::default()
                }),
            ),
            (
                "prefill".into(),
                Some(ProfileRunResult {
                    targets: vec![2],
                    scores: vec![1.0],
                    ..ProfileRunResult::default()
                }),
            ),
        ],
        primary_profile: 0,
        headers: vec![],
    };
    let req = InferenceRequest::new("test-model", "aaaaaa");
    let cycle = CycleState::new();
    let cx = CycleContext {
        request: &req,
        endpoints: &pool,
        state: &cycle,
        now_ms: NOW_MS,
        peer: None,
    };
    plugin
        .as_pre_request()
        .unwrap()
        .pre_request(&cx, &result, &mut state);

    // "aaaabbbb" → 2 blocks; the first matches on pod1 and pod3 (1/2), nothing on pod2.
    let (m, _) = produce(plugin.as_ref(), &pool, "aaaabbbb");
    let ratios: Vec<f64> = m.iter().map(PrefixMatch::ratio).collect();
    assert_eq!(ratios, [0.5, 0.0, 0.5]);

    // A different model never matches (the model seeds the chain).
    let req = InferenceRequest::new("other-model", "aaaabbbb");
    let mut cycle = CycleState::new();
    let cx = ProduceContext {
        request: &req,
        endpoints: &pool,
        now_ms: NOW_MS,
    };
    plugin.as_data_producer().unwrap().produce(
        &cx,
        &[0, 1, 2],
        &mut cycle,
        &mut RequestState::new(),
    );
    assert!(cycle
        .get::<Vec<PrefixMatch>>(PREFIX_CACHE_MATCH_INFO)
        .unwrap()
        .iter()
        .all(|x| x.matched_blocks == 0));
}

#[test]
fn prefix_chat_growth_and_stickiness_through_the_default_profile() {
    // Default config (queue 2, kv 2, prefix 3). Equal load: the conversation keeps landing on the
    // endpoint that served its first turn; a longer conversation matches > 0 blocks there.
    let ep = load("{}", &Registry::with_builtins()).unwrap().0;
    let pool: Vec<Endpoint> = (0..8).map(|i| p(i, 1, 0.3, &[])).collect();
    let turn1 = format!(
        r#"{{"model":"m","messages":[{{"role":"system","content":"{}"}},{{"role":"user","content":"q1"}}]}}"#,
        "You are helpful. ".repeat(40)
    );
    let turn2 = turn1.replace(
        r#""q1"}]"#,
        r#""q1"},{"role":"assistant","content":"a1"},{"role":"user","content":"q2"}]"#,
    );
    let run = |body: &str, seed: u64| {
        let req = ep
            .parse_request("/v1/chat/completions", body.as_bytes(), vec![])
            .unwrap();
        let r = ep
            .schedule(
                &req,
                &pool,
                NOW_MS,
                &mut SplitMix64::new(seed),
                &mut RequestState::new(),
            )
            .unwrap();
        r.primary_targets()[0]
    };
    let first = run(&turn1, 7);
    // Debug breakdown: the prefix scorer shows the full match on the sticky endpoint.
    let mut req = ep
        .parse_request("/v1/chat/completions", turn1.as_bytes(), vec![])
        .unwrap();
    req.debug = true;
    let r = ep
        .schedule(
            &req,
            &pool,
            NOW_MS,
            &mut SplitMix64::new(3),
            &mut RequestState::new(),
        )
        .unwrap();
    let names: Vec<(&str, f64, f64)> = r
        .primary()
        .unwrap()
        .breakdown
        .iter()
        .map(|(n, s, w)| (n.as_str(), *s, *w))
        .collect();
    assert_eq!(
        names,
        [
            ("queue-scorer", 1.0, 2.0),
            ("kv-cache-utilization-scorer", 0.7, 2.0),
            ("prefix-cache-scorer", 1.0, 3.0)
        ],
        "equal load; the prefix scorer gives the sticky endpoint 1.0"
    );
    for seed in 0..20 {
        assert_eq!(
            run(&turn1, seed),
            first,
            "same prompt, same endpoint (seed {seed})"
        );
        assert_eq!(
            run(&turn2, 100 + seed),
            first,
            "a longer conversation follows its prefix"
        );
    }
}

/// Keeps what [`scheduler_core::SchedulingObserver::prefix_hit`] reports (no clock).
#[derive(Default)]
struct Hits(Vec<scheduler_core::PrefixHit>);

impl scheduler_core::SchedulingObserver for Hits {
    fn now_ns(&mut self) -> Option<u64> {
        None
    }
    fn plugin_ran(
        &mut self,
        _: scheduler_core::ExtensionPoint,
        _: &std::sync::Arc<dyn scheduler_core::Plugin>,
        _: u64,
    ) {
    }
    fn prefix_hit(&mut self, hit: scheduler_core::PrefixHit) {
        self.0.push(hit);
    }
}

/// The prefix hits `picker` reports while scheduling the completion `body` over `pool`.
fn prefix_hits(
    picker: &EndpointPicker,
    pool: &[Endpoint],
    body: &str,
) -> Vec<scheduler_core::PrefixHit> {
    let req = picker
        .parse_request("/v1/completions", body.as_bytes(), vec![])
        .unwrap();
    let mut hits = Hits::default();
    picker
        .schedule_observed(
            &req,
            pool,
            NOW_MS,
            &mut SplitMix64::new(1),
            &mut RequestState::new(),
            &mut hits,
        )
        .unwrap();
    hits.0
}

#[test]
fn the_prefix_lookup_reports_what_the_chosen_endpoint_held_in_gies_bytes() {
    // GIE's RecordPrefixCacheMatch: matched and total blocks × block size (16 tokens by
    // default) × 4 characters per token, for the endpoint the request goes to, as the lookup
    // found it before the request was recorded there.
    let ep = load("{}", &Registry::with_builtins()).unwrap().0;
    let pool: Vec<Endpoint> = (0..4).map(|i| p(i, 1, 0.3, &[])).collect();
    let prompt = "You are helpful. ".repeat(40); // 680 bytes: 11 blocks of 64 (the last partial)
    let body = format!(r#"{{"model":"m","prompt":"{prompt}"}}"#);
    let run = || {
        let hits = prefix_hits(&ep, &pool, &body);
        assert_eq!(hits.len(), 1, "one report per scheduled request");
        hits[0]
    };
    let first = run();
    assert_eq!(first.matched_bytes, 0, "nothing recorded yet");
    assert_eq!(first.total_bytes, 11 * 64);
    assert_eq!(first.ratio(), Some(0.0));
    let again = run();
    assert_eq!(
        again.matched_bytes,
        11 * 64,
        "the same endpoint, every block held"
    );
    assert_eq!(again.ratio(), Some(1.0));
    // A profile without a prefix index reports nothing.
    let no_index = load(
        r#"{"plugins": [{"type": "queue-scorer"}, {"type": "max-score-picker"}],
            "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "queue-scorer"},
              {"pluginRef": "max-score-picker"}]}]}"#,
        &Registry::with_builtins(),
    )
    .unwrap()
    .0;
    assert!(prefix_hits(&no_index, &pool, r#"{"model":"m","prompt":"x"}"#).is_empty());
    assert_eq!(no_index.prefix_index_blocks(), None);
    assert_eq!(
        ep.prefix_index_blocks(),
        Some(11),
        "one endpoint holds the 11 blocks"
    );
}

#[test]
fn chat_tools_are_part_of_the_prefix() {
    // llm-d's approximate prefix hashes a chat request's tools ahead of its messages (the
    // server's template renders them first): conversations that share a long tool list share
    // those blocks even when their messages differ from the first word.
    let ep = load("{}", &Registry::with_builtins()).unwrap().0;
    let pool: Vec<Endpoint> = (0..4).map(|i| p(i, 1, 0.3, &[])).collect();
    let tool = |name: &str, does: &str| {
        serde_json::json!({"type": "function", "function": {"name": name,
            "description": does.repeat(4),
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}}})
    };
    let chat = |tools: &serde_json::Value, question: &str| {
        serde_json::json!({"model": "m", "tools": tools,
            "messages": [{"role": "user", "content": question}]})
        .to_string()
    };
    let hits = |body: &str| {
        let req = ep
            .parse_request("/v1/chat/completions", body.as_bytes(), vec![])
            .unwrap();
        let mut hits = Hits::default();
        ep.schedule_observed(
            &req,
            &pool,
            NOW_MS,
            &mut SplitMix64::new(1),
            &mut RequestState::new(),
            &mut hits,
        )
        .unwrap();
        hits.0[0]
    };
    let billing = serde_json::json!([
        tool(
            "lookup_order",
            "Looks up an order in the billing system by its identifier."
        ),
        tool(
            "refund_order",
            "Refunds an order in the billing system by its identifier."
        ),
    ]);
    let tools_len = billing.to_string().len() as u64;
    assert!(tools_len > 4 * 64, "{tools_len}");
    assert_eq!(hits(&chat(&billing, "Where is order 1?")).matched_bytes, 0);
    // Another question with the same tools: every whole block of the tools is held.
    let second = hits(&chat(&billing, "Refund order 2."));
    assert!(second.matched_bytes >= tools_len / 64 * 64, "{second:?}");
    // Other tools, the first question again: nothing in common from the first block.
    let other = serde_json::json!([tool("book_flight", "Books a flight for the traveller.")]);
    assert_eq!(hits(&chat(&other, "Where is order 1?")).matched_bytes, 0);
}
