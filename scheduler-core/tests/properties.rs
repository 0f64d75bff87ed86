//! Invariants of the scheduling framework, checked over random inputs (proptest):
//! every built-in scorer stays in [0, 1]; every picker returns only candidates, without
//! duplicates, at most `maxNumOfEndpoints`; a profile's targets are always candidates (filters
//! never add); the prefix index never exceeds its per-endpoint capacity; in-flight counters never
//! go negative and return to zero whatever order responses, first chunks and resets arrive in.

use proptest::prelude::*;
use scheduler_core::model::response::{BodyChunk, ResponseInfo};
use scheduler_core::plugin::registry::EntryKind;
use scheduler_core::plugin::{CycleContext, CycleState, Handle, ScoredEndpoint};
use scheduler_core::plugins::producer::inflight_load::{
    InflightCounters, InflightGuard, InflightLoad,
};
use scheduler_core::prefix::PrefixIndex;
use scheduler_core::{load, Endpoint, InferenceRequest, Registry, RequestState, SplitMix64};

fn endpoint(i: usize, q: u32, running: u32, kv: f64, loras: usize, max_lora: u32) -> Endpoint {
    let mut e = Endpoint::new(format!("10.0.{}.{}:8000", i / 256, i % 256));
    e.metrics.waiting_queue_size = q;
    e.metrics.running_requests = running;
    e.metrics.kv_cache_usage = kv;
    e.metrics.active_lora_adapters = (0..loras).map(|l| format!("lora-{l}")).collect();
    e.metrics.max_lora_adapters = max_lora;
    e.metrics.update_time_ms = 1_000;
    e
}

fn arb_pool() -> impl Strategy<Value = Vec<Endpoint>> {
    prop::collection::vec(
        (0u32..500, 0u32..500, 0.0f64..=1.0, 0usize..4, 0u32..4),
        1..40,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (q, r, kv, l, m))| endpoint(i, q, r, kv, l, m))
            .collect()
    })
}

fn build(
    ty: &str,
    params: Option<serde_json::Value>,
) -> std::sync::Arc<dyn scheduler_core::Plugin> {
    let reg = Registry::with_builtins();
    let EntryKind::Available { factory, .. } = reg.get(ty).unwrap().kind else {
        panic!("{ty}")
    };
    factory(ty, params.as_ref(), &Handle::new(&[])).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_builtin_scorer_stays_in_unit_interval(pool in arb_pool(), model in "lora-[0-5]") {
        let req = InferenceRequest::new(&model, "some prompt text that is long enough to hash into blocks");
        let state = CycleState::new();
        let cx = CycleContext { request: &req, endpoints: &pool, state: &state, now_ms: 1_000, peer: None };
        let candidates: Vec<usize> = (0..pool.len()).collect();
        for ty in ["queue-scorer", "kv-cache-utilization-scorer", "running-requests-size-scorer", "lora-affinity-scorer",
                   "prefix-cache-scorer", "token-load-scorer", "load-aware-scorer", "session-affinity-scorer"] {
            let p = build(ty, None);
            let mut scores = vec![0.0; pool.len()];
            p.as_scorer().unwrap().score(&cx, &candidates, &mut scores);
            for s in &scores {
                prop_assert!((0.0..=1.0).contains(s), "{ty} scored {s}");
            }
        }
    }

    #[test]
    fn pickers_return_distinct_candidates_only(
        scores in prop::collection::vec(prop_oneof![Just(0.0), Just(1.0), 0.0f64..5.0], 1..60),
        subset_mask in prop::collection::vec(any::<bool>(), 60),
        n in 1i64..8,
        seed in any::<u64>(),
    ) {
        let req = InferenceRequest::new("m", "");
        let state = CycleState::new();
        let cx = CycleContext { request: &req, endpoints: &[], state: &state, now_ms: 0, peer: None };
        // Candidates are an arbitrary subset of pool indices (not 0..k).
        let cands: Vec<ScoredEndpoint> = scores.iter().enumerate()
            .filter(|(i, _)| subset_mask[*i])
            .map(|(i, &score)| ScoredEndpoint { endpoint: i * 3, score })
            .collect();
        for ty in ["max-score-picker", "random-picker", "weighted-random-picker"] {
            let p = build(ty, Some(serde_json::json!({"maxNumOfEndpoints": n})));
            let mut scored = cands.clone();
            let mut out = Vec::new();
            p.as_picker().unwrap().pick(&cx, &mut scored, &mut SplitMix64::new(seed), &mut out);
            prop_assert!(out.len() <= n as usize && out.len() == cands.len().min(n as usize), "{ty}: {} of {}", out.len(), cands.len());
            for (i, o) in out.iter().enumerate() {
                prop_assert!(cands.iter().any(|c| c.endpoint == o.endpoint), "{ty} picked a non-candidate");
                prop_assert!(!out[..i].iter().any(|x| x.endpoint == o.endpoint), "{ty} picked a duplicate");
            }
            if ty == "max-score-picker" && !cands.is_empty() {
                let best = cands.iter().map(|c| c.score).fold(f64::NEG_INFINITY, f64::max);
                prop_assert_eq!(out.first().map(|o| o.score), Some(best));
            }
        }
    }

    #[test]
    fn profile_targets_are_always_candidates(pool in arb_pool(), seed in any::<u64>(), gold in prop::collection::vec(any::<bool>(), 40)) {
        // A filter that keeps labelled endpoints, then the default scorers and a 3-way picker.
        let cfg = r#"{
          "plugins": [
            {"type": "label-selector-filter", "parameters": {"matchLabels": {"tier": "gold"}}},
            {"type": "utilization-detector", "parameters": {"metricsStalenessThreshold": "10s"}},
            {"type": "queue-scorer"}, {"type": "kv-cache-utilization-scorer"}, {"type": "prefix-cache-scorer"},
            {"type": "max-score-picker", "parameters": {"maxNumOfEndpoints": 3}}
          ],
          "schedulingProfiles": [{"name": "p", "plugins": [
            {"pluginRef": "label-selector-filter"}, {"pluginRef": "utilization-detector"},
            {"pluginRef": "queue-scorer"}, {"pluginRef": "kv-cache-utilization-scorer"},
            {"pluginRef": "prefix-cache-scorer"}, {"pluginRef": "max-score-picker"}]}]
        }"#;
        let (picker, _) = load(cfg, &Registry::with_builtins()).unwrap();
        let pool: Vec<Endpoint> = pool.into_iter().enumerate()
            .map(|(i, e)| if gold[i] { e.with_label("tier", "gold") } else { e })
            .collect();
        let req = InferenceRequest::new("m", "a prompt long enough to produce a few prefix blocks, repeated");
        match picker.schedule(&req, &pool, 1_000, &mut SplitMix64::new(seed), &mut RequestState::new()) {
            Ok(r) => {
                let t = r.primary_targets();
                prop_assert!(!t.is_empty() && t.len() <= 3);
                for (i, &x) in t.iter().enumerate() {
                    prop_assert!(pool[x].label("tier") == Some("gold"), "a filtered-out endpoint was picked");
                    prop_assert!(!t[..i].contains(&x));
                }
            }
            Err(e) => prop_assert!(!pool.iter().any(|e| e.label("tier") == Some("gold")), "error {e} with gold endpoints present"),
        }
    }

    #[test]
    fn prefix_index_never_exceeds_capacity(
        ops in prop::collection::vec((0usize..5, prop::collection::vec(0u64..200, 1..30), 1usize..40), 1..200),
        removals in prop::collection::vec(0usize..5, 0..5),
    ) {
        let mut idx = PrefixIndex::new();
        let mut last_cap = [usize::MAX; 5];
        for (ep, hashes, cap) in ops {
            let addr = format!("e{ep}");
            idx.add(&addr, &hashes, cap);
            last_cap[ep] = cap;
            prop_assert!(idx.blocks_of(&addr) <= cap);
        }
        for r in removals {
            idx.remove_endpoint(&format!("e{r}"));
            prop_assert_eq!(idx.blocks_of(&format!("e{r}")), 0);
        }
        let total: usize = (0..5).map(|e| idx.blocks_of(&format!("e{e}"))).sum();
        prop_assert!(idx.len() <= total, "every tracked block has a holder");
    }

    #[test]
    fn inflight_counters_never_go_negative(
        events in prop::collection::vec((0usize..6, 0u8..4), 1..200),
    ) {
        // Six requests each charging two endpoints (one as prefill); events release their prefill
        // (first chunk), finish them (end of stream) or reset them (drop), in any order, repeatedly.
        let counters = InflightCounters::default();
        let mut guards: Vec<Option<InflightGuard>> = (0..6)
            .map(|r| Some(InflightGuard::new(counters.clone(), vec![
                counters.charge(&format!("d{}", r % 2), 10, false),
                counters.charge("p", 10, true),
            ])))
            .collect();
        for (r, kind) in events {
            match kind {
                0 => if let Some(g) = guards[r].as_mut() { g.release_prefill() },
                1 | 2 => { guards[r] = None; } // end of stream / reset: both drop the guard
                _ => {}
            }
            for a in ["d0", "d1", "p"] {
                let l = counters.load(a);
                prop_assert!(l.requests <= 6 && l.tokens <= 60, "{a}: {l:?}");
            }
        }
        guards.clear();
        prop_assert_eq!(counters.total_requests(), 0);
        prop_assert_eq!(counters.load("p"), InflightLoad::default());
    }

    #[test]
    fn response_hooks_release_in_any_chunk_order(first_then_end in any::<bool>(), chunks in 0usize..5) {
        // Through the picker: token-load needs inflight-load-producer; after the response ends
        // (or the state is dropped early) nothing stays counted.
        let (picker, _) = load(r#"{"plugins": [{"type": "token-load-scorer"}],
            "schedulingProfiles": [{"name": "p", "plugins": [{"pluginRef": "token-load-scorer"}]}]}"#,
            &Registry::with_builtins()).unwrap();
        let pool = vec![endpoint(0, 0, 0, 0.0, 0, 0), endpoint(1, 0, 0, 0.0, 0, 0)];
        let req = InferenceRequest::new("m", "prompt");
        let mut state = RequestState::new();
        picker.schedule(&req, &pool, 1_000, &mut SplitMix64::new(1), &mut state).unwrap();
        let info = ResponseInfo { status: 200, served_endpoint: None, now_ms: 0 };
        for i in 0..chunks {
            picker.response_body(&mut state, &info, &BodyChunk { first: i == 0, end_of_stream: false, usage: None });
        }
        if first_then_end {
            picker.response_body(&mut state, &info, &BodyChunk { first: chunks == 0, end_of_stream: true, usage: None });
        }
        drop(state);
        // A fresh request now sees zero in-flight load everywhere: both endpoints score 1.0.
        let mut s2 = RequestState::new();
        let mut r2 = InferenceRequest::new("m", "prompt");
        r2.debug = true;
        let res = picker.schedule(&r2, &pool, 1_000, &mut SplitMix64::new(2), &mut s2).unwrap();
        prop_assert_eq!(res.primary().unwrap().breakdown[0].1, 1.0);
    }
}
