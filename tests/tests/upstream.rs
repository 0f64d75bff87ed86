//! Real upstream configs (committed unchanged in `scheduler-core/testdata/upstream/`) in real
//! Envoy, given to the picker as they are with only our `pool` section added.
//!
//! llm-d's E/PD sample: the encode stage names the encode server for a request with an image.
//!
//! llm-d's prefill/decode sample (`deploy/config/pd-epp-config.yaml` of llm-d-router): its
//! `disagg-profile-handler` is listed before the `prefix-based-pd-decider` it names (so the
//! loader must build it after the rest), and the pool mixes llm-d's role labels: `decode`,
//! `prefill`, and `prefill-decode` (an endpoint that can do both).
//!
//! Beside them, llm-d-router's other stage order (`stageOrder: prefill-first`), which no
//! upstream sample uses yet.

use e2e::{Env, EnvSpec};
use serde_json::json;

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

use e2e::upstream_config as upstream;

fn pd_sample() -> serde_json::Value {
    upstream("llm-d-router__deploy__config__pd-epp-config.yaml")
}

#[test]
fn llm_d_pd_sample_routes_decode_with_a_prefill_header() {
    let env = Env::start(EnvSpec {
        backends: vec!["decode-a".into(), "prefill-a".into(), "both-a".into()],
        labels: vec![
            json!({"llm-d.ai/role": "decode"}),
            json!({"llm-d.ai/role": "prefill"}),
            json!({"llm-d.ai/role": "prefill-decode"}),
        ],
        picker: pd_sample(),
        ..EnvSpec::default()
    });
    // The dedicated servers are idle, the dual-role one busy: a decode pick prefers decode-a,
    // a prefill pick prefill-a.
    env.backend("decode-a")
        .set(json!({"waiting": 0, "kv": 0.1}));
    env.backend("prefill-a")
        .set(json!({"waiting": 0, "kv": 0.1}));
    env.backend("both-a").set(json!({"waiting": 30, "kv": 0.9}));
    env.settle();

    // A long new prompt: far more than the decider's nonCachedTokens (16) are uncached, so the
    // request is disaggregated: decode on decode-a, prefill named in x-prefiller-host-port.
    let long = "Summarise the quarterly report for the logistics division. ".repeat(40);
    let r = env.complete(MODEL, &long, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.pod(), "decode-a", "{:?}", r.headers);
    let prefill = env.backend("prefill-a").addr.to_string();
    assert_eq!(
        r.header("x-seen-prefiller"),
        Some(prefill.as_str()),
        "the prefill endpoint reaches the decode server: {:?}",
        r.headers
    );

    // A tiny prompt stays on decode alone (below nonCachedTokens: no prefill header).
    let r = env.complete(MODEL, "hi", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.pod(), "decode-a");
    assert!(
        r.header("x-seen-prefiller").is_none_or(str::is_empty),
        "{:?}",
        r.headers
    );

    // With the dedicated decode server busy, the prefill-decode endpoint can take decode.
    env.backend("decode-a")
        .set(json!({"waiting": 60, "kv": 0.95}));
    env.backend("both-a").set(json!({"waiting": 0, "kv": 0.1}));
    env.settle();
    let r = env.complete(MODEL, "hi again", &[]);
    assert_eq!(r.pod(), "both-a", "a prefill-decode endpoint serves decode");
    println!(
        "{} build: llm-d's P/D sample routed decode + prefill header as upstream does",
        if e2e::native() { "native" } else { "wasm" }
    );
}

/// `disagg-profile-handler` with `stageOrder: prefill-first`: prefill is picked first, for
/// every request (a one-word prompt too), and decode next to it: `topology-affinity-filter` in
/// the decode profile keeps decode on the prefill pick's node although the other node's decode
/// server is idler.
#[test]
fn prefill_first_places_decode_next_to_the_prefill_pick() {
    let role_host =
        |role: &str, host: &str| json!({"llm-d.ai/role": role, "kubernetes.io/hostname": host});
    let env = Env::start(EnvSpec {
        backends: vec![
            "decode-a".into(),
            "decode-b".into(),
            "prefill-a".into(),
            "prefill-b".into(),
        ],
        labels: vec![
            role_host("decode", "h1"),
            role_host("decode", "h2"),
            role_host("prefill", "h1"),
            role_host("prefill", "h2"),
        ],
        picker: json!({
            "plugins": [
                {"type": "prefill-filter"}, {"type": "decode-filter"}, {"type": "queue-scorer"},
                {"type": "max-score-picker"}, {"type": "topology-extractor"},
                {"type": "topology-affinity-filter"},
                {"type": "disagg-profile-handler", "parameters": {"stageOrder": "prefill-first"}}],
            "schedulingProfiles": [
                {"name": "prefill", "plugins": [{"pluginRef": "prefill-filter"},
                    {"pluginRef": "queue-scorer"}, {"pluginRef": "max-score-picker"}]},
                {"name": "decode", "plugins": [{"pluginRef": "decode-filter"},
                    {"pluginRef": "topology-affinity-filter"}, {"pluginRef": "queue-scorer"},
                    {"pluginRef": "max-score-picker"}]}]
        }),
        ..EnvSpec::default()
    });
    for (name, waiting) in [
        ("decode-a", 0),
        ("decode-b", 4),
        ("prefill-a", 6),
        ("prefill-b", 0),
    ] {
        env.backend(name).set(json!({"waiting": waiting}));
    }
    env.settle();
    let prefill = env.backend("prefill-b").addr.to_string();
    for prompt in ["hi", &"Summarise the quarterly report. ".repeat(40)] {
        let r = env.complete(MODEL, prompt, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.pod(),
            "decode-b",
            "decode on prefill-b's node: {:?}",
            r.headers
        );
        assert_eq!(
            r.header("x-seen-prefiller"),
            Some(prefill.as_str()),
            "{:?}",
            r.headers
        );
    }
}

/// llm-d's E/PD sample (`deploy/config/sim-e-pd-epp-config.yaml`): a chat request with an
/// image is decoded on the decode server, with the encode server named in
/// `x-encoder-hosts-ports`; a text request goes to decode alone, and a client cannot name an
/// encoder itself.
#[test]
fn llm_d_epd_sample_names_the_encoder_for_media() {
    let env = Env::start(EnvSpec {
        backends: vec!["encode-a".into(), "decode-a".into()],
        labels: vec![
            json!({"llm-d.ai/role": "encode"}),
            json!({"llm-d.ai/role": "decode"}),
        ],
        picker: upstream("llm-d-router__deploy__config__sim-e-pd-epp-config.yaml"),
        ..EnvSpec::default()
    });
    env.settle();
    let encoder = env.backend("encode-a").addr.to_string();
    let image = json!({"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is in this picture"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]})
    .to_string();
    let r = env.post("/v1/chat/completions", &image, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.pod(), "decode-a", "{:?}", r.headers);
    assert_eq!(
        r.header("x-seen-encoders"),
        Some(encoder.as_str()),
        "{:?}",
        r.headers
    );

    let text =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}).to_string();
    let r = env.post(
        "/v1/chat/completions",
        &text,
        &[("x-encoder-hosts-ports", "6.6.6.6:80")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.pod(), "decode-a");
    assert!(
        r.header("x-seen-encoders").is_none_or(str::is_empty),
        "no encode stage, and the client's value is stripped: {:?}",
        r.headers
    );
}

/// GIE v1.5.0's conformance config (`conformance/resources/base.yaml`): the request header
/// `test-epp-endpoint-selection` names the endpoint, and the response reports the one that
/// served in `x-conformance-test-served-endpoint`.
#[test]
fn gie_conformance_config_routes_by_header_and_reports_the_served_endpoint() {
    let env = Env::start(EnvSpec {
        picker: upstream("gateway-api-inference-extension__conformance__resources__base.yaml"),
        ..EnvSpec::default()
    });
    env.settle();
    for b in &env.backends {
        let addr = b.addr.to_string();
        let r = env.complete(
            MODEL,
            "conformance",
            &[("test-epp-endpoint-selection", &addr)],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.pod(), b.name);
        assert_eq!(
            r.header("x-conformance-test-served-endpoint"),
            Some(addr.as_str()),
            "{:?}",
            r.headers
        );
    }
    // No selection header: every endpoint is filtered out (429, as GIE answers it).
    let r = env.complete(MODEL, "conformance", &[]);
    assert_eq!(r.status, 429, "{}", r.body);
}
