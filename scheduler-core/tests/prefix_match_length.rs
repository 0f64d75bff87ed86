//! `prefix-cache-scorer`'s match-length term (llm-d-router's `matchLengthWeight` and
//! `matchLengthScaleTokens`): with it, a short cached prefix counts for little against load, a
//! long one as much as a whole-prompt match.

use scheduler_core::{load, Endpoint, EndpointPicker, Registry, RequestState, SplitMix64};

const NOW_MS: u64 = 1_000_000;

/// Two idle endpoints, freshly scraped.
fn pool() -> Vec<Endpoint> {
    (1..=2)
        .map(|i| {
            let mut e = Endpoint::new(format!("10.0.0.{i}:8000"));
            e.metrics.update_time_ms = NOW_MS - 10;
            e
        })
        .collect()
}

/// A picker whose profile weighs `prefix-cache-scorer` (with `scorer_params`) 2 and
/// `queue-scorer` 1.
fn picker(scorer_params: &str) -> EndpointPicker {
    let cfg = format!(
        r#"{{"plugins": [
            {{"type": "approx-prefix-cache-producer", "parameters": {{"blockSizeTokens": 16}}}},
            {{"type": "prefix-cache-scorer", "parameters": {scorer_params}}},
            {{"type": "queue-scorer"}}, {{"type": "max-score-picker"}}],
          "schedulingProfiles": [{{"name": "default", "plugins": [
            {{"pluginRef": "prefix-cache-scorer", "weight": 2}},
            {{"pluginRef": "queue-scorer", "weight": 1}},
            {{"pluginRef": "max-score-picker"}}]}}]}}"#
    );
    let (p, report) = load(&cfg, &Registry::with_builtins()).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    p
}

/// Routes a completion of `prompt`: the pool index chosen.
fn route(picker: &EndpointPicker, pool: &[Endpoint], prompt: &str) -> usize {
    let body = serde_json::json!({"model": "m", "prompt": prompt}).to_string();
    let req = picker
        .parse_request("/v1/completions", body.as_bytes(), vec![])
        .unwrap();
    let r = picker
        .schedule(
            &req,
            pool,
            NOW_MS,
            &mut SplitMix64::new(3),
            &mut RequestState::new(),
        )
        .unwrap();
    r.primary_targets()[0]
}

/// Sends `prompt` once so the index believes its endpoint holds it, then makes that endpoint
/// busy (10 waiting) and sends it again: true when it goes back to the busy holder.
fn back_to_busy_holder(params: &str, prompt: &str) -> bool {
    let picker = picker(params);
    let mut pool = pool();
    let holder = route(&picker, &pool, prompt);
    pool[holder].metrics.waiting_queue_size = 10;
    route(&picker, &pool, prompt) == holder
}

#[test]
fn match_length_weighs_long_cached_prefixes_over_short_ones() {
    // 371 characters, ~92 tokens: five whole blocks of 16 (80 tokens) cached on the holder.
    let short = "Summarise the ticket below for the on-call engineer. ".repeat(7);
    // 5,300 characters, ~1,325 tokens: 82 blocks (1,312 tokens) cached.
    let long = "Summarise the ticket below for the on-call engineer. ".repeat(100);
    // GIE's ratio alone (the default): a whole-prompt match outweighs the queue, short or long.
    assert!(back_to_busy_holder("null", &short));
    assert!(back_to_busy_holder("{}", &long));
    // Length only, over 8,192 tokens: 80 cached tokens score (80/8192)² ≈ 0.0001, so the idle
    // endpoint wins; 1,312 score (1312/8192)² ≈ 0.026, × 2 still below the queue's 1.
    assert!(!back_to_busy_holder(r#"{"matchLengthWeight": 1}"#, &short));
    assert!(!back_to_busy_holder(r#"{"matchLengthWeight": 1}"#, &long));
    // Scaled to the workload (p95 ~1,024 tokens): the long prompt's match is worth the queue
    // again, the short one's still not.
    let scaled = r#"{"matchLengthWeight": 1, "matchLengthScaleTokens": 1024}"#;
    assert!(back_to_busy_holder(scaled, &long));
    assert!(!back_to_busy_holder(scaled, &short));
    // Half and half: the long prompt scores (0.5 × 1 + 0.5 × 1) × 2 = 2 and goes back.
    let half = r#"{"matchLengthWeight": 0.5, "matchLengthScaleTokens": 1024}"#;
    assert!(back_to_busy_holder(half, &long));
}

#[test]
fn match_length_parameters_are_checked_and_not_forwarded() {
    let load_err = |params: &str| {
        let cfg = format!(
            r#"{{"plugins": [{{"type": "prefix-cache-scorer", "parameters": {params}}}]}}"#
        );
        load(&cfg, &Registry::with_builtins())
            .err()
            .map(|e| e.to_string())
    };
    for (params, at) in [
        (r#"{"matchLengthWeight": 1.5}"#, "matchLengthWeight"),
        (r#"{"matchLengthWeight": -0.1}"#, "matchLengthWeight"),
        (
            r#"{"matchLengthWeight": 0.5, "matchLengthScaleTokens": 0}"#,
            "matchLengthScaleTokens",
        ),
    ] {
        let err = load_err(params).unwrap_or_else(|| panic!("{params} loaded"));
        assert!(err.contains(at), "{err}");
    }
    // A scale of 0 with no weight is unused, so accepted (as upstream accepts it).
    assert_eq!(load_err(r#"{"matchLengthScaleTokens": 0}"#), None);
    // With no producer listed, the scorer's parameters configure the one created for it (GIE's
    // loader): its own two stay with it, so the producer warns about neither, and the
    // producer's stay with the producer, so the scorer does not call them ignored.
    let (_, report) = load(
        r#"{"plugins": [{"type": "prefix-cache-scorer", "parameters":
            {"blockSizeTokens": 32, "matchLengthWeight": 0.5, "matchLengthScaleTokens": 4096}}]}"#,
        &Registry::with_builtins(),
    )
    .unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}
