//! The latency family loaded from a config and driven through the picker's own hooks (schedule,
//! then the response): the scorer leaves the load composite once the model has learnt, tries the
//! endpoint it has not heard from, and then keeps to the one that answers fast.

use scheduler_core::model::response::{BodyChunk, ResponseInfo};
use scheduler_core::{load, Endpoint, InferenceRequest, Registry, RequestState, SplitMix64};

#[test]
fn the_scorer_moves_to_the_endpoint_that_answered_fast() {
    let config = r#"{"plugins": [{"type": "latency-scorer"}, {"type": "max-score-picker"}],
        "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "latency-scorer"},
        {"pluginRef": "max-score-picker"}]}]}"#;
    let (picker, _) = load(config, &Registry::with_builtins()).unwrap();
    // 0 looks idle and answers in 150 ms; 1 looks loaded and answers in 2 ms.
    let mut slow = Endpoint::new("10.0.0.1:8000");
    slow.metrics.kv_cache_usage = 0.1;
    let mut fast = Endpoint::new("10.0.0.2:8000");
    fast.metrics.kv_cache_usage = 0.6;
    fast.metrics.waiting_queue_size = 6;
    let endpoints = [slow, fast];
    let mut rng = SplitMix64::new(1);
    let prompt = r#"[{"role":"user","content":"What is my balance?"}]"#;
    let picks: Vec<usize> = (0..40u64)
        .map(|k| {
            let req = InferenceRequest::new("m", prompt);
            let mut state = RequestState::new();
            let now = 10_000 + k * 1_000;
            let r = picker
                .schedule(&req, &endpoints, now, &mut rng, &mut state)
                .unwrap();
            let i = r.primary_targets()[0];
            let info = ResponseInfo {
                status: 200,
                served_endpoint: Some(&endpoints[i].address),
                now_ms: now + if i == 0 { 150 } else { 2 },
            };
            let end = BodyChunk {
                first: true,
                end_of_stream: true,
                usage: None,
            };
            picker.response_body(&mut state, &info, &end);
            i
        })
        .collect();
    // Cold: the composite prefers the idle-looking endpoint; after 10 responses the model knows
    // it (~150 ms), the other has not answered yet and is tried, then chosen for good.
    assert!(picks[..10].iter().all(|&i| i == 0), "{picks:?}");
    assert!(picks[10..].iter().all(|&i| i == 1), "{picks:?}");
}
