//! llm-d plugin types in real Envoy, both builds: `sglanghttp-parser` routes SGLang's native
//! `/generate` and reads its usage from `meta_info`; `header-profile-handler` runs the stage a
//! request header names; `p2p-source-producer` tells the computing server which peer holds the
//! prompt's prefix (`x-kv-cache-source-host-port`), and removes a client's own value;
//! `utilization-filter` drops endpoints whose scraped load is over its caps; media count as
//! the tokens they stand for in `context-length-aware`.

use e2e::{Env, EnvSpec};
use serde_json::json;

#[path = "../../scheduler-core/tests/support/images.rs"]
mod images;

/// Sum of the picker's `inference_objective_input_tokens` histogram sums.
fn input_tokens(env: &Env) -> f64 {
    env.prometheus()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("inference_objective_input_tokens_sum"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn sglang_generate_is_routed_and_its_usage_counted() {
    let env = Env::start(EnvSpec {
        picker: json!({
            "plugins": [{"type": "openai-parser"}, {"type": "sglanghttp-parser"}, {"type": "queue-scorer"}],
            "requestHandler": {"parsers": [{"pluginRef": "openai-parser"}, {"pluginRef": "sglanghttp-parser"}]},
            "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "queue-scorer"}]}]
        }),
        ..EnvSpec::default()
    });
    let ids: Vec<u32> = (100..140).collect();
    for stream in [false, true] {
        let body = json!({"input_ids": ids, "extra_key": "tenant-a", "stream": stream,
            "sampling_params": {"max_new_tokens": 3}})
        .to_string();
        let r = env.post("/generate", &body, &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert!(!r.pod().is_empty(), "{r:?}");
        assert!(r.body.contains("meta_info"), "{r:?}");
    }
    let r = env.post(
        "/generate",
        &json!({"text": "The capital of France is"}).to_string(),
        &[],
    );
    assert_eq!(r.status, 200, "{r:?}");
    // No prompt: the parser's 400, in the OpenAI error shape, naming the field.
    let r = env.post(
        "/generate",
        &json!({"sampling_params": {}}).to_string(),
        &[],
    );
    assert_eq!(r.status, 400, "{r:?}");
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(msg.contains("input_ids"), "{r:?}");
    // The two input_ids requests reported 40 prompt tokens each in meta_info (the fake server
    // counts the ids), streamed or not; the text one (24 bytes) 6.
    let mut seen = 0.0;
    for _ in 0..50 {
        seen = input_tokens(&env);
        if seen >= 86.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(seen, 86.0, "input tokens recorded from meta_info");
}

#[test]
fn a_request_header_names_the_stage_to_schedule() {
    let roles = ["encode", "prefill", "decode"];
    let env = Env::start(EnvSpec {
        backends: roles.iter().map(|r| r.to_string()).collect(),
        labels: roles.iter().map(|r| json!({"llm-d.ai/role": r})).collect(),
        picker: json!({
            "plugins": [{"type": "encode-filter"}, {"type": "prefill-filter"}, {"type": "decode-filter"},
                        {"type": "header-profile-handler"}],
            "schedulingProfiles": roles.iter().map(|r| json!({"name": r, "plugins": [{"pluginRef": format!("{r}-filter")}]})).collect::<Vec<_>>()
        }),
        ..EnvSpec::default()
    });
    for stage in roles {
        let r = env.complete("m", "hello", &[("EPP-Profile", stage)]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.pod(), stage, "{r:?}");
    }
    let r = env.complete("m", "hello", &[]);
    assert_eq!(r.pod(), "decode", "no header: the default profile {r:?}");
    let r = env.complete("m", "hello", &[("EPP-Profile", "verify")]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("'verify'"), "{r:?}");
}

#[test]
fn the_kv_source_header_names_the_prefix_holder() {
    let env = Env::start(EnvSpec {
        backends: vec!["pod-a".into(), "pod-b".into()],
        picker: json!({
            "plugins": [{"type": "approx-prefix-cache-producer"}, {"type": "p2p-source-producer"},
                        {"type": "queue-scorer"}, {"type": "max-score-picker"}],
            "schedulingProfiles": [{"name": "default", "plugins": [
                {"pluginRef": "queue-scorer"}, {"pluginRef": "max-score-picker"}]}]
        }),
        // One worker, so the Wasm build's per-worker prefix index sees both requests.
        concurrency: 1,
        ..EnvSpec::default()
    });
    let prompt = "You are a helpful assistant for the billing team. ".repeat(8);
    let first = env.complete("m", &prompt, &[]);
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(
        first.header("x-seen-kv-source"),
        Some(""),
        "nobody held it yet"
    );
    let holder = first.pod().to_string();
    let (h, other) = if holder == "pod-a" { (0, 1) } else { (1, 0) };
    // The holder gets busy; the other server computes the prompt and is told where it is cached.
    env.backends[h].set(json!({"waiting": 9}));
    env.settle();
    let second = env.complete(
        "m",
        &prompt,
        &[("x-kv-cache-source-host-port", "10.9.9.9:1")],
    );
    assert_eq!(second.pod(), env.backends[other].name, "{second:?}");
    assert_eq!(
        second.header("x-seen-kv-source"),
        Some(env.backends[h].addr.to_string().as_str()),
        "{second:?}"
    );
    // A prompt nobody holds: the client's own value does not reach the server.
    let fresh = env.complete(
        "m",
        "a short fresh prompt",
        &[("x-kv-cache-source-host-port", "10.9.9.9:1")],
    );
    assert_eq!(fresh.status, 200, "{fresh:?}");
    assert_eq!(fresh.header("x-seen-kv-source"), Some(""), "{fresh:?}");
}

#[test]
fn utilization_filter_keeps_requests_off_an_endpoint_over_its_cap() {
    let env = Env::start(EnvSpec {
        picker: json!({
            "plugins": [
                {"type": "utilization-filter", "parameters": {"conditions": [
                    {"metric": "waiting-queue", "maxValue": 2},
                    {"metric": "kv-cache-utilization", "maxValue": 0.9}]}},
                {"type": "random-picker"}],
            "schedulingProfiles": [{"name": "default", "plugins": [
                {"pluginRef": "utilization-filter"}, {"pluginRef": "random-picker"}]}]
        }),
        ..EnvSpec::default()
    });
    // pod-a's queue and pod-b's KV cache are over their caps (scraped); only pod-c is left.
    env.backends[0].set(json!({"waiting": 3}));
    env.backends[1].set(json!({"kv": 0.95}));
    env.settle();
    for i in 0..20 {
        let r = env.complete("m", &format!("question {i}"), &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.pod(), "pod-c", "{r:?}");
    }
    // Every endpoint over a cap: no target (429), as upstream without fallbackOnEmpty.
    env.backends[2].set(json!({"waiting": 7}));
    env.settle();
    let r = env.complete("m", "one more", &[]);
    assert_eq!(r.status, 429, "{r:?}");
}

/// `context-length-aware` with filtering over a chat request carrying a 600 KB inline image:
/// the image counts as the tokens its pixels stand for (llm-d's estimate), not as 200,000
/// tokens of base64, so the request stays on the short-context server; a ten-minute video (its
/// length in `x-llm-d-video-duration-seconds`) goes to the long-context one.
#[test]
fn media_count_as_their_tokens_in_the_context_length() {
    let env = Env::start(EnvSpec {
        backends: vec!["short".into(), "long".into()],
        labels: vec![
            json!({"llm-d.ai/context-length-range": "0-8192"}),
            json!({"llm-d.ai/context-length-range": "8193-1000000"}),
        ],
        picker: json!({
            "plugins": [
                {"type": "context-length-aware", "parameters": {"enableFiltering": true}},
                {"type": "max-score-picker"}],
            "schedulingProfiles": [{"name": "default", "plugins": [
                {"pluginRef": "context-length-aware"}, {"pluginRef": "max-score-picker"}]}]
        }),
        ..EnvSpec::default()
    });
    env.settle();
    let url = images::png_data_url(1024, 768, 600_000);
    let image = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": url}}]}]})
    .to_string();
    let r = env.post("/v1/chat/completions", &image, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.pod(), "short", "{:?}", r.headers);

    let video = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Summarise the talk."},
        {"type": "video_url", "video_url": {"url": "https://example.com/talk.mp4"}}]}]})
    .to_string();
    let r = env.post("/v1/chat/completions", &video, &[]);
    assert_eq!(r.pod(), "short", "10 s by default: 4,500 tokens");
    let r = env.post(
        "/v1/chat/completions",
        &video,
        &[("x-llm-d-video-duration-seconds", "600")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.pod(), "long", "1,200 frames × 225 tokens");
}
