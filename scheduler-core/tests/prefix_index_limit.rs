//! The approximate prefix index's limit over the whole pool (`maxIndexBlocks`), through the
//! public API: servers whose metrics report a huge `num_gpu_blocks` (so `autoTune` lifts the
//! per-endpoint capacity to millions) and clients sending only new prompts cannot grow the
//! index past the limit.

use scheduler_core::{load, Endpoint, EndpointPicker, Registry, RequestState, SplitMix64};

const NOW_MS: u64 = 1_000_000;

/// Four endpoints whose cache-info series say 16-token blocks and 50 million of them.
fn pool() -> Vec<Endpoint> {
    (1..=4)
        .map(|i| {
            let mut e = Endpoint::new(format!("10.0.0.{i}:8000"));
            e.metrics.update_time_ms = NOW_MS - 10;
            e.metrics.cache_block_size_tokens = 16;
            e.metrics.cache_num_blocks = 50_000_000;
            e
        })
        .collect()
}

/// A picker with the prefix scorer alone; `params` go to it (and through it to its producer).
fn picker(params: &str) -> EndpointPicker {
    let config = format!(
        r#"{{"plugins": [
            {{"type": "prefix-cache-scorer", "parameters": {params}}},
            {{"type": "max-score-picker"}}
          ],
          "schedulingProfiles": [{{"name": "default", "plugins": [
            {{"pluginRef": "prefix-cache-scorer"}}, {{"pluginRef": "max-score-picker"}}
          ]}}]}}"#
    );
    load(&config, &Registry::with_builtins()).unwrap().0
}

/// Schedules `n` completions with prompts no one sent before (8.7 KB, 136 blocks of 16 tokens
/// each) and returns the index's size after each.
fn send_new_prompts(picker: &EndpointPicker, pool: &[Endpoint], n: usize) -> Vec<usize> {
    let mut rng = SplitMix64::new(11);
    (0..n)
        .map(|i| {
            let prompt: String = (0..512)
                .map(|k| {
                    let word = (i * 1_000 + k) as u64 ^ scheduler_core::Rng::next_u64(&mut rng);
                    format!("{word:016x} ")
                })
                .collect();
            let body = serde_json::json!({"model": "m", "prompt": prompt}).to_string();
            let req = picker
                .parse_request("/v1/completions", body.as_bytes(), Vec::new())
                .unwrap();
            picker
                .schedule(
                    &req,
                    pool,
                    NOW_MS,
                    &mut SplitMix64::new(i as u64),
                    &mut RequestState::new(),
                )
                .unwrap();
            picker.prefix_index_blocks().unwrap()
        })
        .collect()
}

#[test]
fn the_index_never_holds_more_than_max_index_blocks() {
    let picker = picker(r#"{"maxIndexBlocks": 1000}"#);
    let sizes = send_new_prompts(&picker, &pool(), 200);
    assert!(sizes.iter().all(|&n| n <= 1_000), "{sizes:?}");
    assert_eq!(sizes.last(), Some(&1_000), "filled to the limit");
}

#[test]
fn below_the_default_limit_every_block_is_kept() {
    // 200 prompts of ~130 blocks: far below the default of 2^22 records, so nothing is
    // evicted (the endpoints' autoTuned capacity of 50 million does not bind either).
    let picker = picker("{}");
    let sizes = send_new_prompts(&picker, &pool(), 200);
    let per_prompt = sizes[0];
    assert!(per_prompt > 100, "{per_prompt} blocks");
    assert_eq!(sizes.last(), Some(&(200 * per_prompt)));
}

#[test]
fn a_limit_below_one_is_refused_naming_the_field() {
    let config = r#"{"plugins": [{"type": "approx-prefix-cache-producer",
        "parameters": {"maxIndexBlocks": 0}}]}"#;
    let err = load(config, &Registry::with_builtins()).err().unwrap();
    assert!(err.to_string().contains("maxIndexBlocks"), "{err}");
}
