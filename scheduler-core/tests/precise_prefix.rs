//! The precise prefix cache end to end in scheduler-core: llm-d's own precise-prefix configs
//! load unchanged, and picks follow what the servers report in their KV-cache events (stored,
//! removed, cleared, chained by parent hash), not what the picker routed. A test tokenizer maps
//! each byte of the prompt to one token; the native module's real tokenizer is tested there.

use std::sync::Arc;

use scheduler_core::kvcache::{KvEvent, RequestKeys, StoredExtras};
use scheduler_core::model::request::ApiKind;
use scheduler_core::plugin::{
    KvEventFormat, PromptTokenizer, Services, TokenizerProvider, TokenizerSpec,
};
use scheduler_core::{
    load, Endpoint, EndpointPicker, InferenceRequest, Registry, RequestState, SplitMix64,
};

std::thread_local! {
    /// Ids the test tokenizer produced on this thread (scheduling runs on the caller's).
    static PRODUCED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One token per byte, handed out in stretches of 16 (one block), counting what it produced.
struct Bytes;
impl PromptTokenizer for Bytes {
    fn tokenize(&self, _: ApiKind, prompt: &str) -> Result<Vec<u32>, String> {
        PRODUCED.with(|p| p.set(p.get() + prompt.len()));
        Ok(prompt.bytes().map(u32::from).collect())
    }
    fn tokenize_while(
        &self,
        _: ApiKind,
        prompt: &str,
        out: &mut Vec<u32>,
        more: &mut dyn FnMut(&[u32]) -> bool,
    ) -> Result<bool, String> {
        for stretch in prompt.as_bytes().chunks(16) {
            PRODUCED.with(|p| p.set(p.get() + stretch.len()));
            out.extend(stretch.iter().map(|&b| u32::from(b)));
            if !more(out) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
struct Provider;
impl TokenizerProvider for Provider {
    fn load(&self, _: &TokenizerSpec) -> Result<Arc<dyn PromptTokenizer>, String> {
        Ok(Arc::new(Bytes))
    }
}

fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    r.set_services(Services {
        tokenizers: Some(Arc::new(Provider)),
        ..Services::default()
    });
    r
}

fn upstream(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/upstream")
        .join(file);
    let yaml = std::fs::read_to_string(path).unwrap();
    let v: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    v.to_string()
}

fn pool() -> Vec<Endpoint> {
    (1..=4)
        .map(|i| {
            let mut e = Endpoint::new(format!("10.0.0.{i}:8000"));
            e.metrics.update_time_ms = 1_000;
            e
        })
        .collect()
}

/// Block size 16 (the config's `blockSize`): a 64-byte prompt is 4 blocks.
const PROMPT: &str = "You are a helpful assistant. Answer briefly and cite your sources!";

fn stored(engine: &[u64], parent: Option<u64>, tokens: &[u32]) -> KvEvent {
    stored_with(engine, parent, tokens, None, StoredExtras::default())
}

/// [`stored`] for LoRA adapter `lora` with `extras` (what vLLM's `extra_keys` said).
fn stored_with(
    engine: &[u64],
    parent: Option<u64>,
    tokens: &[u32],
    lora: Option<&str>,
    extras: StoredExtras,
) -> KvEvent {
    KvEvent::BlockStored {
        block_hashes: engine.to_vec(),
        parent,
        token_ids: tokens.to_vec(),
        block_size: 16,
        lora_name: lora.map(Into::into),
        medium: None,
        extras,
    }
}

fn tokens(s: &str) -> Vec<u32> {
    s.bytes().map(u32::from).collect()
}

fn feed(picker: &EndpointPicker, endpoint: &str, events: &[KvEvent]) {
    let sinks = picker.kv_event_sinks();
    assert_eq!(sinks.len(), 1, "one precise producer");
    sinks[0].as_kv_event_sink().unwrap().apply(endpoint, events);
}

fn pick(picker: &EndpointPicker, prompt: &str, seed: u64) -> String {
    pick_request(picker, &InferenceRequest::new("m", prompt), seed)
}

/// The address `picker` sends `req` to among [`pool`]'s endpoints.
fn pick_request(picker: &EndpointPicker, req: &InferenceRequest<'_>, seed: u64) -> String {
    let eps = pool();
    let r = picker
        .schedule(
            req,
            &eps,
            1_000,
            &mut SplitMix64::new(seed),
            &mut RequestState::new(),
        )
        .unwrap();
    eps[r.primary_targets()[0]].address.clone()
}

/// llm-d's deprecated composite `precise-prefix-cache-scorer` alone (16-token blocks), its
/// `kvEventsConfig` given by `kv_events` (a JSON object, `{}` for the defaults).
fn composite_scorer(kv_events: &str) -> (EndpointPicker, scheduler_core::LoadReport) {
    let cfg = format!(
        r#"{{
      "plugins": [
        {{"type": "token-producer", "parameters": {{"modelName": "org/m"}}}},
        {{"type": "precise-prefix-cache-scorer", "parameters": {{"tokenProcessorConfig": {{"blockSize": 16}},
          "kvEventsConfig": {kv_events}}}}},
        {{"type": "max-score-picker"}}],
      "schedulingProfiles": [{{"name": "default", "plugins": [
        {{"pluginRef": "precise-prefix-cache-scorer"}}, {{"pluginRef": "max-score-picker"}}]}}]
    }}"#
    );
    load(&cfg, &registry()).unwrap()
}

#[test]
fn llm_d_precise_configs_load_and_follow_stored_removed_and_cleared_events() {
    let (picker, _) = load(
        &upstream("llm-d-router__deploy__config__sim-epp-tokenizer-vllm-http-config.yaml"),
        &registry(),
    )
    .unwrap();
    let t = tokens(PROMPT);
    assert_eq!(t.len() / 16, 4);
    // The server at .3 reports the whole prompt: every pick goes there, whatever the seed.
    feed(
        &picker,
        "10.0.0.3:8000",
        &[stored(&[11, 12, 13, 14], None, &t[..64])],
    );
    for seed in 0..20 {
        assert_eq!(pick(&picker, PROMPT, seed), "10.0.0.3:8000");
    }
    // It evicts them and .2 stores them: picks move to .2 although no request went there.
    feed(
        &picker,
        "10.0.0.3:8000",
        &[KvEvent::BlockRemoved {
            block_hashes: vec![11, 12, 13, 14],
            medium: None,
        }],
    );
    feed(
        &picker,
        "10.0.0.2:8000",
        &[stored(&[21, 22, 23, 24], None, &t[..64])],
    );
    for seed in 0..20 {
        assert_eq!(pick(&picker, PROMPT, seed), "10.0.0.2:8000");
    }
    // .2 restarts (all blocks cleared) and .4 holds only the first two blocks: .4 wins.
    feed(&picker, "10.0.0.2:8000", &[KvEvent::AllBlocksCleared]);
    feed(
        &picker,
        "10.0.0.4:8000",
        &[stored(&[41, 42], None, &t[..32])],
    );
    for seed in 0..20 {
        assert_eq!(pick(&picker, PROMPT, seed), "10.0.0.4:8000");
    }
}

#[test]
fn a_block_chained_to_an_earlier_one_extends_the_prefix() {
    let (picker, _) = load(
        &upstream("llm-d-router__deploy__config__epp-precise-prefix-cache-config.yaml"),
        &registry(),
    )
    .unwrap();
    // This config uses 64-token blocks: make a 256-byte prompt (4 blocks).
    let prompt = PROMPT.repeat(4);
    let t = tokens(&prompt);
    let ev = |engine: &[u64], parent, range: std::ops::Range<usize>| KvEvent::BlockStored {
        block_hashes: engine.to_vec(),
        parent,
        token_ids: t[range].to_vec(),
        block_size: 64,
        lora_name: None,
        medium: None,
        extras: StoredExtras::default(),
    };
    // .1 holds blocks 0–1; .2 holds 0–1 and then, in a later event chained by parent, 2–3.
    feed(&picker, "10.0.0.1:8000", &[ev(&[1, 2], None, 0..128)]);
    feed(&picker, "10.0.0.2:8000", &[ev(&[5, 6], None, 0..128)]);
    feed(&picker, "10.0.0.2:8000", &[ev(&[7, 8], Some(6), 128..256)]);
    for seed in 0..20 {
        assert_eq!(pick(&picker, &prompt, seed), "10.0.0.2:8000");
    }
    // An event whose parent this index never saw is skipped, not mis-chained.
    feed(
        &picker,
        "10.0.0.3:8000",
        &[ev(&[9, 10], Some(999), 128..256)],
    );
    let c = picker.kv_event_sinks()[0]
        .as_kv_event_sink()
        .unwrap()
        .counters();
    assert_eq!(c.orphans, 1);
    assert_eq!(c.blocks_stored, 6);
}

#[test]
fn speculative_indexing_credits_the_pick_until_the_ttl() {
    let cfg = r#"{
      "plugins": [
        {"type": "token-producer", "parameters": {"modelName": "org/m"}},
        {"type": "precise-prefix-cache-producer", "parameters": {
          "speculativeIndexing": true, "speculativeTTL": "500ms"}},
        {"type": "prefix-cache-scorer", "parameters": {"prefixMatchInfoProducerName": "precise-prefix-cache-producer"}},
        {"type": "max-score-picker"}],
      "schedulingProfiles": [{"name": "default", "plugins": [
        {"pluginRef": "prefix-cache-scorer"}, {"pluginRef": "max-score-picker"}]}]
    }"#;
    let (picker, _) = load(cfg, &registry()).unwrap();
    let eps = pool();
    let req = InferenceRequest::new("m", PROMPT);
    let first = picker
        .schedule(
            &req,
            &eps,
            1_000,
            &mut SplitMix64::new(1),
            &mut RequestState::new(),
        )
        .unwrap();
    let chosen = first.primary_targets()[0];
    for seed in 2..12 {
        let r = picker
            .schedule(
                &req,
                &eps,
                1_200,
                &mut SplitMix64::new(seed),
                &mut RequestState::new(),
            )
            .unwrap();
        assert_eq!(
            r.primary_targets()[0],
            chosen,
            "credited before the server reports"
        );
    }
    // After the TTL nobody is credited: every endpoint ties again, and some seed picks another.
    let moved = (20..60).any(|seed| {
        let r = picker
            .schedule(
                &req,
                &eps,
                10_000,
                &mut SplitMix64::new(seed),
                &mut RequestState::new(),
            )
            .unwrap();
        r.primary_targets()[0] != chosen
    });
    assert!(moved);
}

#[test]
fn the_deprecated_composite_scorer_and_the_lora_separation() {
    let (picker, report) = composite_scorer("{}");
    assert!(
        report.warnings.iter().any(|w| w.contains("deprecated")),
        "{:?}",
        report.warnings
    );
    let t = tokens(PROMPT);
    // .1 holds the prompt for the adapter `sql-lora`, .2 for the base model.
    feed(
        &picker,
        "10.0.0.1:8000",
        &[KvEvent::BlockStored {
            block_hashes: vec![1, 2, 3, 4],
            parent: None,
            token_ids: t[..64].to_vec(),
            block_size: 16,
            lora_name: Some("sql-lora".into()),
            medium: None,
            extras: StoredExtras::default(),
        }],
    );
    feed(
        &picker,
        "10.0.0.2:8000",
        &[stored(&[5, 6, 7, 8], None, &t[..64])],
    );
    let eps = pool();
    for seed in 0..10 {
        let lora = InferenceRequest::new("sql-lora", PROMPT);
        let r = picker
            .schedule(
                &lora,
                &eps,
                1_000,
                &mut SplitMix64::new(seed),
                &mut RequestState::new(),
            )
            .unwrap();
        assert_eq!(eps[r.primary_targets()[0]].address, "10.0.0.1:8000");
        // Any other model name is the base model (clients name it in many ways).
        let base = InferenceRequest::new("meta-llama/Llama-3.1-8B", PROMPT);
        let r = picker
            .schedule(
                &base,
                &eps,
                1_000,
                &mut SplitMix64::new(seed),
                &mut RequestState::new(),
            )
            .unwrap();
        assert_eq!(eps[r.primary_targets()[0]].address, "10.0.0.2:8000");
    }
}

/// vLLM mixes a request's `cache_salt` into its first block's hash and reports it in that
/// block's `extra_keys` (after the LoRA name): a salted prefix is reused only by requests with
/// the same salt, and picks follow that. Blocks whose extras the proxy cannot compute (images)
/// are not indexed.
#[test]
fn salted_prefixes_match_only_the_same_salt() {
    let (picker, _) = composite_scorer("{}");
    let t = tokens(PROMPT);
    let salted = |salt: &str| StoredExtras {
        root: vec![salt.into()],
        keyable_blocks: None,
    };
    // .1 holds the prompt under tenant-a's salt, .2 under tenant-b's, .3 unsalted.
    for (address, hashes, salt) in [
        ("10.0.0.1:8000", [1, 2, 3, 4], "tenant-a"),
        ("10.0.0.2:8000", [5, 6, 7, 8], "tenant-b"),
    ] {
        feed(
            &picker,
            address,
            &[stored_with(&hashes, None, &t[..64], None, salted(salt))],
        );
    }
    feed(
        &picker,
        "10.0.0.3:8000",
        &[stored(&[9, 10, 11, 12], None, &t[..64])],
    );
    // .4 stored it with an image in its third block: only the first two blocks are indexed,
    // so it matches half the prompt and loses to a full match.
    let image = StoredExtras {
        root: Vec::new(),
        keyable_blocks: Some(2),
    };
    feed(
        &picker,
        "10.0.0.4:8000",
        &[stored_with(&[13, 14, 15, 16], None, &t[..64], None, image)],
    );
    let pick_salted = |salt: Option<&str>, seed: u64| {
        let mut req = InferenceRequest::new("org/m", PROMPT);
        req.cache_salt = salt.map(Into::into);
        pick_request(&picker, &req, seed)
    };
    for seed in 0..10 {
        assert_eq!(pick_salted(Some("tenant-a"), seed), "10.0.0.1:8000");
        assert_eq!(pick_salted(Some("tenant-b"), seed), "10.0.0.2:8000");
        assert_eq!(pick_salted(None, seed), "10.0.0.3:8000");
        // vLLM treats an empty salt as none.
        assert_eq!(pick_salted(Some(""), seed), "10.0.0.3:8000");
    }
    // A salt no server has seen matches nothing: every endpoint scores 0 and the pick is free.
    let spread: std::collections::BTreeSet<String> = (0..40)
        .map(|seed| pick_salted(Some("tenant-c"), seed))
        .collect();
    assert!(spread.len() > 1, "{spread:?}");
    // An event that is all image blocks indexes nothing and is not an orphan.
    let sink = picker.kv_event_sinks()[0].clone();
    let sink = sink.as_kv_event_sink().unwrap();
    let before = sink.counters();
    let all_image = StoredExtras {
        root: Vec::new(),
        keyable_blocks: Some(0),
    };
    sink.apply(
        "10.0.0.4:8000",
        &[stored_with(&[17], Some(16), &t[..16], None, all_image)],
    );
    let after = sink.counters();
    assert_eq!(after.blocks_stored, before.blocks_stored);
    assert_eq!(after.orphans, before.orphans);
}

/// SGLang has no `cache_salt` (it reuses a prefix whatever the request's salt) and reports no
/// extra keys: with `engineType: sglang` a salted request matches the unsalted blocks.
#[test]
fn sglang_ignores_the_salt() {
    let (picker, _) = composite_scorer(r#"{"engineType": "sglang"}"#);
    let t = tokens(PROMPT);
    feed(
        &picker,
        "10.0.0.2:8000",
        &[stored(&[1, 2, 3, 4], None, &t[..64])],
    );
    for seed in 0..10 {
        let mut req = InferenceRequest::new("org/m", PROMPT);
        req.cache_salt = Some("tenant-a".into());
        assert_eq!(pick_request(&picker, &req, seed), "10.0.0.2:8000");
    }
}

#[test]
fn the_index_stays_bounded_and_forgets_endpoints_that_leave() {
    let cfg = r#"{
      "plugins": [
        {"type": "token-producer", "parameters": {"modelName": "org/m"}},
        {"type": "precise-prefix-cache-producer", "parameters": {
          "indexerConfig": {"kvBlockIndexConfig": {"inMemoryConfig": {"size": 1024, "podCacheSize": 2}}}}},
        {"type": "prefix-cache-scorer", "parameters": {"prefixMatchInfoProducerName": "precise-prefix-cache-producer"}},
        {"type": "max-score-picker"}],
      "schedulingProfiles": [{"name": "default", "plugins": [
        {"pluginRef": "prefix-cache-scorer"}, {"pluginRef": "max-score-picker"}]}]
    }"#;
    let (picker, _) = load(cfg, &registry()).unwrap();
    let sink = picker.kv_event_sinks()[0].clone();
    let sink = sink.as_kv_event_sink().unwrap();
    // 20,000 distinct blocks from 4 servers, never removed (lost BlockRemoved events).
    for i in 0..5_000u32 {
        for e in 1..=4u32 {
            let toks: Vec<u32> = (0..16).map(|j| i * 31 + j + e * 1_000_000).collect();
            sink.apply(
                &format!("10.0.0.{e}:8000"),
                &[stored(&[u64::from(i)], None, &toks)],
            );
        }
    }
    let st = sink.index_stats();
    assert!(st.keys <= 1024, "{st:?}");
    assert!(st.engine_keys <= 4 * 1024, "{st:?}");
    assert!(st.approx_bytes < 1 << 20, "{st:?}");
    // Every server holds the same shared block: at most podCacheSize of them are remembered.
    let shared = tokens(&PROMPT[..16]);
    for e in 1..=4u32 {
        sink.apply(
            &format!("10.0.0.{e}:8000"),
            &[stored(&[7_000_000], None, &shared)],
        );
    }
    for seed in 0..20 {
        let p = pick(&picker, &PROMPT[..16], seed);
        assert!(
            p == "10.0.0.3:8000" || p == "10.0.0.4:8000",
            "the two latest holders, got {p}"
        );
    }
    // .1 leaves the pool: its state is dropped.
    picker.pool_changed(&pool()[1..]);
    assert_eq!(sink.index_stats().endpoints, 3);
}

#[test]
fn request_keys_match_between_a_prompt_and_the_blocks_a_server_reports() {
    let keys = RequestKeys::new(16, "42");
    let t = tokens(PROMPT);
    let mut whole = Vec::new();
    keys.extend(keys.root(""), &t, 0, &mut whole);
    let mut parts = Vec::new();
    keys.extend(keys.root(""), &t[..32], 0, &mut parts);
    keys.extend(parts[1], &t[32..64], 0, &mut parts);
    assert_eq!(whole, parts);
}

#[test]
fn memory_follows_what_is_held_not_what_was_ever_held() {
    let (picker, _) = load(
        &upstream("llm-d-router__deploy__config__sim-epp-tokenizer-vllm-http-config.yaml"),
        &registry(),
    )
    .unwrap();
    let sink = picker.kv_event_sinks()[0].clone();
    let sink = sink.as_kv_event_sink().unwrap();
    // A server that stores and evicts 200,000 distinct blocks, holding at most 100 at a time.
    let mut bytes_at = Vec::new();
    for i in 0..200_000u64 {
        let toks: Vec<u32> = (0..16)
            .map(|j| (i as u32).wrapping_mul(31).wrapping_add(j))
            .collect();
        sink.apply("10.0.0.1:8000", &[stored(&[i], None, &toks)]);
        if i >= 100 {
            sink.apply(
                "10.0.0.1:8000",
                &[KvEvent::BlockRemoved {
                    block_hashes: vec![i - 100],
                    medium: None,
                }],
            );
        }
        if i % 50_000 == 49_999 {
            bytes_at.push(sink.index_stats().approx_bytes);
        }
    }
    let st = sink.index_stats();
    assert_eq!((st.keys, st.engine_keys), (100, 100), "{st:?}");
    assert!(bytes_at.iter().all(|&b| b < 64 * 1024), "{bytes_at:?}");
}

#[test]
fn new_text_is_tokenised_only_to_the_first_block_nobody_holds() {
    let (picker, _) = load(
        &upstream("llm-d-router__deploy__config__sim-epp-tokenizer-vllm-http-config.yaml"),
        &registry(),
    )
    .unwrap();
    let long = PROMPT[..64].repeat(16);
    assert_eq!(long.len(), 64 * 16, "64 blocks");
    // Nobody holds anything: one stretch is tokenised, not 64 blocks' worth.
    PRODUCED.with(|p| p.set(0));
    pick(&picker, &long, 1);
    assert_eq!(PRODUCED.with(|p| p.get()), 16);
    // .3 holds the first 4 blocks: its score is 4 of the prompt's 64 blocks, so the whole
    // prompt is tokenised to count them, and the pick goes there.
    let t = tokens(&long);
    feed(
        &picker,
        "10.0.0.3:8000",
        &[stored(&[11, 12, 13, 14], None, &t[..64])],
    );
    PRODUCED.with(|p| p.set(0));
    assert_eq!(pick(&picker, &long, 2), "10.0.0.3:8000");
    // Past block 5 (the first nobody holds) on to the end in the same pass: every token once.
    assert_eq!(PRODUCED.with(|p| p.get()), long.len());
}

#[test]
fn a_scorer_reading_the_precise_match_does_not_build_an_approximate_index_too() {
    for file in [
        "llm-d-router__deploy__config__epp-precise-prefix-cache-config.yaml",
        "llm-d-router__deploy__config__sim-epp-kvcache-config.yaml",
        "llm-d-router__deploy__config__sim-epp-tokenizer-vllm-http-config.yaml",
    ] {
        let (picker, _) = load(&upstream(file), &registry()).unwrap();
        let types: Vec<&str> = picker
            .plugins()
            .iter()
            .map(|(_, p)| p.typed_name().type_name)
            .collect();
        assert!(
            !types.contains(&"approx-prefix-cache-producer"),
            "{file}: {types:?}"
        );
    }
}

#[test]
fn where_the_events_are_read_from_follows_kv_events_config() {
    let config = |discovery: &str| {
        format!(
            r#"{{"plugins": [
                {{"type": "token-producer", "parameters": {{"modelName": "m"}}}},
                {{"type": "precise-prefix-cache-producer", "parameters": {{
                    "kvEventsConfig": {{"topicFilter": "kv@pod", "podDiscoveryConfig": {discovery}}}}}}},
                {{"type": "prefix-cache-scorer", "parameters": {{"prefixMatchInfoProducerName": "precise-prefix-cache-producer"}}}}],
              "schedulingProfiles": [{{"name": "default", "plugins": [{{"pluginRef": "prefix-cache-scorer"}}]}}]}}"#
        )
    };
    let settings = |discovery: &str| {
        let (picker, _) = load(&config(discovery), &registry()).map_err(|e| e.to_string())?;
        let sinks = picker.kv_event_sinks();
        Ok::<_, String>(sinks[0].as_kv_event_sink().unwrap().settings().clone())
    };
    let s = settings(r#"{"socketPort": 6000, "replayPort": 6001}"#).unwrap();
    assert!(s.dial && s.bind.is_none());
    assert_eq!((s.socket_port, s.replay_port), (6000, Some(6001)));
    assert_eq!(s.topic_filter, "kv@pod");
    // vLLM's replay socket is off unless a port is given.
    let s = settings("{}").unwrap();
    assert_eq!((s.socket_port, s.replay_port), (5557, None));
    let e = settings(r#"{"replayPort": 70000}"#).unwrap_err();
    assert!(e.contains("replayPort") && e.contains("1..65535"), "{e}");
    assert_eq!(s.format, KvEventFormat::Vllm);
}

#[test]
fn the_event_schema_follows_engine_type() {
    let format = |engine: &str| {
        let config = format!(
            r#"{{"plugins": [
                {{"type": "token-producer", "parameters": {{"modelName": "m"}}}},
                {{"type": "precise-prefix-cache-producer", "parameters": {{"kvEventsConfig": {{"engineType": "{engine}"}}}}}},
                {{"type": "prefix-cache-scorer", "parameters": {{"prefixMatchInfoProducerName": "precise-prefix-cache-producer"}}}}],
              "schedulingProfiles": [{{"name": "default", "plugins": [{{"pluginRef": "prefix-cache-scorer"}}]}}]}}"#
        );
        let (picker, _) = load(&config, &registry()).map_err(|e| e.to_string())?;
        let sinks = picker.kv_event_sinks();
        Ok::<_, String>(sinks[0].as_kv_event_sink().unwrap().settings().format)
    };
    assert_eq!(format("vllm").unwrap(), KvEventFormat::Vllm);
    assert_eq!(format("SGLang").unwrap(), KvEventFormat::Sglang);
    let e = format("tgi").unwrap_err();
    assert!(e.contains("engineType") && e.contains("sglang"), "{e}");
}
