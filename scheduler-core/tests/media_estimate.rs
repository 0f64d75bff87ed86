//! Media in token estimates: a chat request with a large inline image counts the image's
//! pixels, not its base64 text, so `context-length-aware` keeps it on a short-context
//! endpoint; `token-producer`'s `estimate` section and the `x-llm-d-video-*` headers tune the
//! counts.

use scheduler_core::{load, Endpoint, EndpointPicker, Registry, RequestState, SplitMix64};

mod support {
    pub mod images;
}

const NOW_MS: u64 = 1_000_000;

/// A chat body asking about an inline PNG of `w` × `h` pixels and `bytes` bytes.
fn chat_with_image(w: u32, h: u32, bytes: usize) -> String {
    let url = support::images::png_data_url(w, h, bytes);
    serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": url}}]}]})
    .to_string()
}

/// Two endpoints: a short-context one (0–8,192 tokens) and a long-context one.
fn pool() -> Vec<Endpoint> {
    let mut pool = vec![
        Endpoint::new("10.0.0.1:8000").with_label("llm-d.ai/context-length-range", "0-8192"),
        Endpoint::new("10.0.0.2:8000").with_label("llm-d.ai/context-length-range", "8193-1000000"),
    ];
    for e in &mut pool {
        e.metrics.update_time_ms = NOW_MS - 10;
    }
    pool
}

fn picker(extra_plugins: &str) -> EndpointPicker {
    let cfg = format!(
        r#"{{"plugins": [{extra_plugins}
            {{"type": "context-length-aware", "parameters": {{"enableFiltering": true}}}},
            {{"type": "max-score-picker"}}],
          "schedulingProfiles": [{{"name": "default", "plugins": [
            {{"pluginRef": "context-length-aware"}}, {{"pluginRef": "max-score-picker"}}]}}]}}"#
    );
    load(&cfg, &Registry::with_builtins()).unwrap().0
}

fn route(picker: &EndpointPicker, body: &str, headers: &[(&str, &str)]) -> (usize, u64) {
    let headers = headers.iter().map(|&(k, v)| (k.into(), v.into())).collect();
    let req = picker
        .parse_request("/v1/chat/completions", body.as_bytes(), headers)
        .unwrap();
    let r = picker
        .schedule(
            &req,
            &pool(),
            NOW_MS,
            &mut SplitMix64::new(1),
            &mut RequestState::new(),
        )
        .unwrap();
    (r.primary_targets()[0], req.estimated_prompt_tokens())
}

#[test]
fn a_large_inline_image_counts_its_pixels() {
    // 600 KB of PNG (800 KB of base64): 200,000 "tokens" as text; 1024 × 1024 pixels are
    // 1,024 tokens at llm-d's 1,024 pixels per token.
    let body = chat_with_image(1024, 1024, 600_000);
    let (endpoint, tokens) = route(&picker(""), &body, &[]);
    assert!((1024..1200).contains(&tokens), "{tokens}");
    assert_eq!(endpoint, 0, "fits the short-context endpoint");
    // A 4K image is 8,100 tokens; with qwen-vl's 28 × 28 pixels per token it is 10,580, past
    // the short-context range.
    let body = chat_with_image(3840, 2160, 10_000);
    let qwen = picker(
        r#"{"type": "token-producer", "parameters": {"estimate": {"image": {"dynamic": {"factor": 784}}}}},"#,
    );
    let (endpoint, tokens) = route(&qwen, &body, &[]);
    assert!(tokens >= 3840 * 2160 / 784, "{tokens}");
    assert_eq!(endpoint, 1);
    let (endpoint, _) = route(&picker(""), &body, &[]);
    assert_eq!(endpoint, 0, "8,100 + text tokens fit in 8,192");
}

#[test]
fn video_length_comes_from_the_request_headers() {
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Summarise the video."},
        {"type": "video_url", "video_url": {"url": "https://example.com/talk.mp4"}}]}]})
    .to_string();
    // Default: 10 s × 2 frames/s × 225 tokens per 640 × 360 frame.
    let (endpoint, tokens) = route(&picker(""), &body, &[]);
    assert!((4500..4600).contains(&tokens), "{tokens}");
    assert_eq!(endpoint, 0);
    // A 60 s 720p video: 120 frames × 900 tokens.
    let (endpoint, tokens) = route(
        &picker(""),
        &body,
        &[
            ("x-llm-d-video-duration-seconds", "60"),
            ("x-llm-d-video-resolution", "1280x720"),
        ],
    );
    assert!((108_000..108_100).contains(&tokens), "{tokens}");
    assert_eq!(endpoint, 1);
}

#[test]
fn a_bad_estimate_mode_is_refused_at_load() {
    let err = load(
        r#"{"plugins": [{"type": "token-producer", "parameters": {"estimate": {"image": {"mode": "huge"}}}}]}"#,
        &Registry::with_builtins(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("estimate.image.mode"), "{err}");
}

/// Whether a request is multimodal is settled by the same read of its parts as their token
/// estimate: a real image part makes it multimodal; a media type's name in a text part (which
/// the parser's substring search cannot tell from a part) does not, and costs no estimate.
#[test]
fn one_read_of_the_parts_settles_multimodal() {
    let picker = picker("");
    // (multimodal, parts read) of a chat body.
    let read = |body: &str| {
        let r = picker
            .parse_request("/v1/chat/completions", body.as_bytes(), Vec::new())
            .unwrap();
        (r.multimodal, r.media_tokens.map(|m| m.parts))
    };
    assert_eq!(read(&chat_with_image(64, 64, 2_000)), (true, Some(1)));
    let words = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What does an image_url part look like?"}]}]})
    .to_string();
    assert_eq!(read(&words), (false, None));
    let plain = r#"{"model": "m", "messages": [{"role": "user", "content": "hi"}]}"#;
    assert_eq!(read(plain), (false, None));
}
