//! Plugin lifecycle rules (GIE PR #2684 and its review, llm-d's `RegisterDeprecated`): Alpha
//! loads with a warning, Beta can be turned off by its gate, `minStability`, tombstones with
//! migration text, deprecated aliases that load with a warning naming the replacement (llm-d's
//! legacy profile handlers among them), and out-of-tree registration without copying framework
//! code.

use std::sync::Arc;

use scheduler_core::error::RegistryError;
use scheduler_core::plugin::registry::{parse_params, RegistryEntry};
use scheduler_core::plugin::{CycleContext, Handle, Scorer, TypedName};
use scheduler_core::{
    load, ConfigError, Endpoint, Plugin, Registry, RequestState, SplitMix64, Stability,
};

fn err(config: &str) -> String {
    match load(config, &Registry::with_builtins()) {
        Ok(_) => panic!("loaded: {config}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn alpha_plugin_loads_with_a_warning_and_min_stability_refuses_it() {
    // No feature gate is needed (upstream would refuse a gate name of ours).
    let cfg = r#"{"plugins": [{"type": "active-request-scorer"}]}"#;
    let (_, report) = load(cfg, &Registry::with_builtins()).unwrap();
    let p = report
        .plugins
        .iter()
        .find(|p| p.type_name == "active-request-scorer")
        .unwrap();
    assert_eq!(p.stability, Stability::Alpha);
    assert!(
        report.warnings.iter().any(|w| w
            == "plugins[0].type: plugin type 'active-request-scorer' is Alpha (no compatibility guarantee); set minStability: Beta to refuse Alpha plugins"),
        "{:?}",
        report.warnings
    );
    // The project's old per-plugin gate is still accepted, in both spellings.
    let gated = r#"{"featureGates": ["activeRequestScorer"], "plugins": [{"type": "active-request-scorer"}]}"#;
    assert!(load(gated, &Registry::with_builtins()).is_ok());
    let map = r#"{"featureGates": {"activeRequestScorer": true}, "plugins": [{"type": "active-request-scorer"}]}"#;
    assert!(load(map, &Registry::with_builtins()).is_ok());
    // The operator's switch, like upstream's missing --allow-experimental-plugins.
    assert_eq!(
        err(r#"{"minStability": "Beta", "plugins": [{"type": "active-request-scorer"}]}"#),
        "plugins[0].type: plugin type 'active-request-scorer' is Alpha, below the configured minStability Beta"
    );
}

#[test]
fn beta_plugin_can_be_turned_off_by_its_gate() {
    let on = r#"{"plugins": [{"type": "token-load-scorer"}]}"#;
    assert!(
        load(on, &Registry::with_builtins()).is_ok(),
        "Beta is on by default"
    );
    let off = r#"{"featureGates": ["tokenLoadScorer=false"], "plugins": [{"type": "token-load-scorer"}]}"#;
    assert_eq!(err(off), "plugins[0].type: plugin type 'token-load-scorer' is disabled by feature gate 'tokenLoadScorer=false'");
}

#[test]
fn minimum_stability_is_enforced() {
    let cfg = r#"{"minStability": "Stable", "plugins": [{"type": "token-load-scorer"}]}"#;
    assert_eq!(err(cfg), "plugins[0].type: plugin type 'token-load-scorer' is Beta, below the configured minStability Stable");
    // The default profile is all Stable, so a Stable-only operator can run it.
    assert!(load(r#"{"minStability": "Stable"}"#, &Registry::with_builtins()).is_ok());
    // A Beta plugin pulled in implicitly is checked as well: token-load-scorer needs the Beta
    // inflight-load-producer; with minStability Beta both load.
    assert!(load(
        r#"{"minStability": "Beta", "plugins": [{"type": "token-load-scorer"}]}"#,
        &Registry::with_builtins()
    )
    .is_ok());
}

#[test]
fn tombstone_explains_the_migration() {
    let mut r = Registry::with_builtins();
    r.register(RegistryEntry::removed(
        "old-scorer",
        "use 'queue-scorer' (same parameters)",
    ))
    .unwrap();
    let e = load(r#"{"plugins": [{"type": "old-scorer"}]}"#, &r)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        "plugins[0].type: plugin type 'old-scorer' has been removed: use 'queue-scorer' (same parameters)"
    );
}

#[test]
fn llm_d_legacy_profile_handlers_load_as_their_replacements() {
    // pd-profile-handler: its old parameters become disagg-profile-handler's.
    let cfg = r#"{"plugins": [
        {"type": "pd-profile-handler", "parameters": {"decodeProfile": "d", "prefillProfile": "p", "deciderPluginName": "dec", "primaryPort": 8000}},
        {"name": "dec", "type": "prefix-based-pd-decider", "parameters": {"nonCachedTokens": 8}},
        {"type": "prefill-header-handler"},
        {"type": "decode-filter"}, {"type": "prefill-filter"}, {"type": "max-score-picker"}],
      "schedulingProfiles": [
        {"name": "d", "plugins": [{"pluginRef": "decode-filter"}, {"pluginRef": "max-score-picker"}]},
        {"name": "p", "plugins": [{"pluginRef": "prefill-filter"}, {"pluginRef": "max-score-picker"}]}]}"#;
    let (_, report) = load(cfg, &Registry::with_builtins()).unwrap();
    assert!(
        report.warnings.iter().any(|w| w.starts_with(
            "plugins[0].type: plugin type 'pd-profile-handler' is deprecated: use 'disagg-profile-handler'"
        )),
        "{:?}",
        report.warnings
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("'prefill-header-handler' is deprecated")),
        "{:?}",
        report.warnings
    );
    // data-parallel-profile-handler: a single-profile handler.
    let dp = r#"{"plugins": [{"type": "data-parallel-profile-handler", "parameters": {"primaryPort": 8000}}, {"type": "queue-scorer"}]}"#;
    let (_, report) = load(dp, &Registry::with_builtins()).unwrap();
    assert!(
        report.warnings[0].contains("use 'single-profile-handler'"),
        "{:?}",
        report.warnings
    );
    assert!(err(r#"{"plugins": [{"type": "data-parallel-profile-handler", "parameters": {"primaryPort": 0}}]}"#)
        .ends_with("must be between 1 and 65535"));
}

#[test]
fn deprecated_alias_loads_with_a_warning_naming_the_replacement() {
    let cfg = r#"{"plugins": [{"type": "by-label-selector", "parameters": {"matchLabels": {"a": "b"}}}, {"type": "queue-scorer"}]}"#;
    let (picker, report) = load(cfg, &Registry::with_builtins()).unwrap();
    assert_eq!(
        report.warnings,
        ["plugins[0].type: plugin type 'by-label-selector' is deprecated: 'by-label-selector' is deprecated; use 'label-selector-filter' (same parameters)"]
    );
    // It still filters.
    let pool = vec![
        Endpoint::new("10.0.0.1:1"),
        Endpoint::new("10.0.0.2:1").with_label("a", "b"),
    ];
    let req = picker
        .parse_request("/v1/completions", br#"{"model":"m","prompt":"p"}"#, vec![])
        .unwrap();
    let r = picker
        .schedule(
            &req,
            &pool,
            0,
            &mut SplitMix64::new(1),
            &mut RequestState::new(),
        )
        .unwrap();
    assert_eq!(r.primary_targets(), [1]);
}

#[test]
fn every_loaded_plugin_is_reported_once_with_its_stability() {
    let (_, report) = load("{}", &Registry::with_builtins()).unwrap();
    let names: Vec<(&str, bool)> = report
        .plugins
        .iter()
        .map(|p| (p.type_name.as_str(), p.implicit))
        .collect();
    assert_eq!(
        names,
        [
            ("queue-scorer", false),
            ("kv-cache-utilization-scorer", false),
            ("prefix-cache-scorer", false),
            ("single-profile-handler", true),
            ("max-score-picker", true),
            ("utilization-detector", true),
            ("openai-parser", true),
            ("approx-prefix-cache-producer", true),
        ]
    );
    assert!(report
        .plugins
        .iter()
        .all(|p| p.stability == Stability::Stable));
}

#[test]
fn registry_mistakes_are_errors_not_panics() {
    fn f(
        _: &str,
        _: Option<&serde_json::Value>,
        _: &Handle<'_>,
    ) -> Result<Arc<dyn Plugin>, ConfigError> {
        unreachable!("never built")
    }
    let mut r = Registry::with_builtins();
    assert_eq!(
        r.register(RegistryEntry::stable("queue-scorer", f)),
        Err(RegistryError::DuplicateType("queue-scorer".into()))
    );
    assert_eq!(
        r.register(RegistryEntry::stable("", f)),
        Err(RegistryError::EmptyTypeName)
    );
    let mut a = RegistryEntry::stable("x", f);
    if let scheduler_core::plugin::registry::EntryKind::Available {
        ref mut stability, ..
    } = a.kind
    {
        *stability = Stability::Alpha;
    }
    assert_eq!(
        r.register(a),
        Err(RegistryError::AlphaWithoutGate("x".into()))
    );
}

#[test]
fn builtin_table_has_no_duplicates_and_gates_alpha() {
    let mut r = Registry::new();
    for e in scheduler_core::plugins::BUILTINS {
        r.register(*e).unwrap_or_else(|err| panic!("{err}"));
    }
}

/// An out-of-tree scorer: prefers endpoints labelled `zone=<zone>`.
struct ZoneScorer {
    typed_name: TypedName,
    zone: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ZoneParams {
    zone: String,
}

impl Plugin for ZoneScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
}

impl Scorer for ZoneScorer {
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        for (s, &i) in scores.iter_mut().zip(candidates) {
            *s = if cx.endpoints[i].label("zone") == Some(self.zone.as_str()) {
                1.0
            } else {
                0.0
            };
        }
    }
}

fn zone_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: ZoneParams = parse_params(params)?;
    Ok(Arc::new(ZoneScorer {
        typed_name: TypedName::new("zone-scorer", name),
        zone: p.zone,
    }))
}

#[test]
fn out_of_tree_plugin_registers_and_changes_picks() {
    let mut r = Registry::with_builtins();
    r.register(RegistryEntry::alpha(
        "zone-scorer",
        "zoneScorer",
        zone_factory,
    ))
    .unwrap();
    let cfg = r#"{
      "featureGates": ["zoneScorer"],
      "plugins": [{"type": "queue-scorer"}, {"type": "zone-scorer", "parameters": {"zone": "b"}}],
      "schedulingProfiles": [{"name": "default", "plugins": [
        {"pluginRef": "queue-scorer", "weight": 1}, {"pluginRef": "zone-scorer", "weight": 5}]}]
    }"#;
    let (picker, _) = load(cfg, &r).unwrap();
    let mut busy_b = Endpoint::new("10.0.0.2:1").with_label("zone", "b");
    busy_b.metrics.waiting_queue_size = 10;
    let pool = vec![Endpoint::new("10.0.0.1:1").with_label("zone", "a"), busy_b];
    let req = picker
        .parse_request("/v1/completions", br#"{"model":"m","prompt":"p"}"#, vec![])
        .unwrap();
    let res = picker
        .schedule(
            &req,
            &pool,
            0,
            &mut SplitMix64::new(1),
            &mut RequestState::new(),
        )
        .unwrap();
    assert_eq!(res.primary_targets(), [1], "zone weight 5 beats the queue");
    // An unknown parameter is reported with the full path and ignored, as upstream ignores it.
    let extra = cfg.replace(r#""zone": "b""#, r#""zone": "b", "region": 1"#);
    let (_, report) = load(&extra, &r).unwrap();
    assert!(
        report.warnings.contains(
            &"plugins[1].parameters.region: unknown parameter of 'zone-scorer' ignored".to_string()
        ),
        "{:?}",
        report.warnings
    );
    // A parameter of the wrong type is still an error with the full path.
    let bad = cfg.replace(r#""zone": "b""#, r#""zone": 7"#);
    assert!(load(&bad, &r)
        .err()
        .unwrap()
        .to_string()
        .starts_with("plugins[1].parameters.zone: "),);
}

#[test]
fn default_producer_must_produce_its_key() {
    // A consumer of "widgets" and a registered default producer that forgets to produce it.
    struct Consumer(TypedName);
    impl Plugin for Consumer {
        fn typed_name(&self) -> &TypedName {
            &self.0
        }
        fn consumes(&self) -> &'static [&'static str] {
            &["widgets"]
        }
    }
    fn consumer(
        name: &str,
        _: Option<&serde_json::Value>,
        _: &Handle<'_>,
    ) -> Result<Arc<dyn Plugin>, ConfigError> {
        Ok(Arc::new(Consumer(TypedName::new("widget-consumer", name))))
    }
    fn lazy(
        name: &str,
        _: Option<&serde_json::Value>,
        _: &Handle<'_>,
    ) -> Result<Arc<dyn Plugin>, ConfigError> {
        Ok(Arc::new(Consumer(TypedName::new("lazy-producer", name))))
    }
    let mut r = Registry::with_builtins();
    r.register(RegistryEntry::stable("widget-consumer", consumer))
        .unwrap();
    r.register(RegistryEntry::stable("lazy-producer", lazy).default_producer_for("widgets"))
        .unwrap();
    let e = load(
        r#"{"plugins": [{"type": "widget-consumer"}, {"type": "queue-scorer"}]}"#,
        &r,
    )
    .err()
    .unwrap();
    assert_eq!(
        e.to_string(),
        "plugins: default producer 'lazy-producer' does not produce its registered data 'widgets'"
    );
}

#[test]
fn sglang_generate_goes_to_its_parser_beside_openai() {
    let cfg = r#"{
      "plugins": [{"type": "openai-parser"}, {"type": "sglanghttp-parser"}, {"type": "queue-scorer"}],
      "requestHandler": {"parsers": [{"pluginRef": "openai-parser"}, {"pluginRef": "sglanghttp-parser"}]}
    }"#;
    let (picker, _) = load(cfg, &Registry::with_builtins()).unwrap();
    let generate = br#"{"input_ids":[101,2009,2003],"extra_key":"tenant-a","sampling_params":{"max_new_tokens":16}}"#;
    let r = picker.parse_request("/generate", generate, vec![]).unwrap();
    assert_eq!(r.prompt, "[101,2009,2003]");
    assert_eq!(r.cache_salt.as_deref(), Some("tenant-a"));
    assert_eq!(r.model, "");
    // The OpenAI paths still go to openai-parser, which needs a model.
    let chat = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let r = picker
        .parse_request("/v1/chat/completions", chat, vec![])
        .unwrap();
    assert_eq!(r.model, "m");
    // A /generate body without a prompt is the SGLang parser's 400, naming the field.
    let e = picker
        .parse_request("/generate", br#"{"sampling_params":{}}"#, vec![])
        .err()
        .unwrap();
    assert_eq!(e.status(), 400);
    assert!(e.to_string().contains("input_ids"), "{e}");
}

#[test]
fn request_handler_parsers_are_chosen_by_path() {
    let cfg = r#"{
      "plugins": [{"name": "oai", "type": "openai-parser"}, {"name": "anth", "type": "anthropic-parser"},
                  {"type": "queue-scorer"}],
      "requestHandler": {"parsers": [{"pluginRef": "oai"}, {"pluginRef": "anth"}]}
    }"#;
    let (picker, _) = load(cfg, &Registry::with_builtins()).unwrap();
    let chat = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let anth = br#"{"model":"claude","system":"S","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        picker
            .parse_request("/v1/chat/completions", chat, vec![])
            .unwrap()
            .model,
        "m"
    );
    let r = picker.parse_request("/v1/messages", anth, vec![]).unwrap();
    assert_eq!(r.model, "claude");
    // No listed parser claims the path and there is no fallback: 400, as upstream.
    let e = picker
        .parse_request("/v1/unknown", chat, vec![])
        .err()
        .unwrap();
    assert_eq!(e.status(), 400, "{e}");
    // A fallback parser takes what no other claims; parsers after it are never reached.
    let with_fallback = cfg
        .replace(
            r#"{"pluginRef": "oai"}, {"pluginRef": "anth"}"#,
            r#"{"pluginRef": "oai"}, {"pluginRef": "passthrough-parser"}, {"pluginRef": "anth"}"#,
        )
        .replace(
            r#"{"type": "queue-scorer"}"#,
            r#"{"type": "queue-scorer"}, {"type": "passthrough-parser"}"#,
        );
    let (picker, _) = load(&with_fallback, &Registry::with_builtins()).unwrap();
    assert_eq!(
        picker
            .parse_request("/v1/unknown", chat, vec![])
            .unwrap()
            .model,
        "",
        "the passthrough fallback"
    );
    assert_eq!(
        picker
            .parse_request("/v1/messages", anth, vec![])
            .unwrap()
            .model,
        "",
        "anthropic-parser comes after the fallback, so the fallback takes /v1/messages"
    );
}

/// llm-d's `concurrency-detector` as the saturation detector and as a profile filter: in-flight
/// requests (charged at PreRequest, released when the request state is dropped) fill each
/// endpoint's `maxConcurrency`; then sheddable requests are shed (429 `Saturated`), the full
/// endpoint is filtered out, and capacity returns as soon as a request ends.
#[test]
fn concurrency_detector_counts_in_flight_requests() {
    use scheduler_core::RequestError;
    let cfg = r#"{
      "plugins": [{"name": "cd", "type": "concurrency-detector", "parameters": {"maxConcurrency": 1}},
                  {"type": "queue-scorer"}],
      "saturationDetector": {"pluginRef": "cd"},
      "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "cd"}, {"pluginRef": "queue-scorer"}]}]
    }"#;
    let (picker, report) = load(cfg, &Registry::with_builtins()).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let pool = vec![Endpoint::new("10.0.0.1:1"), Endpoint::new("10.0.0.2:1")];
    let body = br#"{"model":"m","prompt":"p"}"#;
    let mut rng = SplitMix64::new(3);
    let mut send = |sheddable: bool, state: &mut RequestState| {
        let mut req = picker
            .parse_request("/v1/completions", body, vec![])
            .unwrap();
        if sheddable {
            req.priority = -1;
        }
        picker
            .schedule(&req, &pool, 0, &mut rng, state)
            .map(|r| r.primary_targets()[0])
    };
    let mut first = RequestState::new();
    let a = send(false, &mut first).unwrap();
    let mut second = RequestState::new();
    let b = send(false, &mut second).unwrap();
    assert_ne!(
        a, b,
        "the filter drops the endpoint that already has its one request"
    );
    // Both endpoints full: a sheddable request is shed, a critical one finds no endpoint.
    assert!(matches!(
        send(true, &mut RequestState::new()),
        Err(RequestError::Saturated)
    ));
    assert!(matches!(
        send(false, &mut RequestState::new()),
        Err(RequestError::NoTargetEndpoint(_))
    ));
    // The first request ends: its endpoint takes the next one, sheddable or not.
    drop(first);
    assert_eq!(send(true, &mut RequestState::new()).ok(), Some(a));
}

/// llm-d's E/PD sample (`deploy/config/sim-e-pd-epp-config.yaml`): a request with an image runs
/// the encode profile and names the encoder in `x-encoder-hosts-ports`; a text-only request
/// goes to decode alone.
#[test]
fn encode_stage_runs_for_media_and_names_the_encoders() {
    let cfg = r#"{"plugins": [
        {"type": "encode-filter"}, {"type": "decode-filter"}, {"type": "max-score-picker"},
        {"type": "always-disagg-multimodal-decider"},
        {"type": "disagg-profile-handler", "parameters": {"deciders": {"encode": "always-disagg-multimodal-decider"}}}],
      "schedulingProfiles": [
        {"name": "encode", "plugins": [{"pluginRef": "encode-filter"}]},
        {"name": "decode", "plugins": [{"pluginRef": "decode-filter"}]}]}"#;
    let (picker, _) = load(cfg, &Registry::with_builtins()).unwrap();
    let pool = vec![
        Endpoint::new("10.0.0.1:8000").with_label("llm-d.ai/role", "encode"),
        Endpoint::new("10.0.0.2:8000").with_label("llm-d.ai/role", "decode"),
    ];
    let schedule = |body: &[u8]| {
        let req = picker
            .parse_request("/v1/chat/completions", body, vec![])
            .unwrap();
        picker
            .schedule(
                &req,
                &pool,
                0,
                &mut SplitMix64::new(1),
                &mut RequestState::new(),
            )
            .unwrap()
    };
    let image = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"what is it"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}"#;
    let r = schedule(image);
    assert_eq!(r.primary_targets(), [1], "decode serves");
    assert_eq!(
        r.headers,
        [(
            "x-encoder-hosts-ports".to_string(),
            "10.0.0.1:8000".to_string()
        )]
    );
    let text = br#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#;
    let r = schedule(text);
    assert_eq!(r.primary_targets(), [1]);
    assert!(r.headers.is_empty(), "{:?}", r.headers);
}

/// A chat request with `words` words of prompt (about 5 characters, so 1.25 tokens, each).
fn chat(words: usize) -> String {
    format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "word ".repeat(words)
    )
}

/// Schedules `body` over `pool` and returns the decode endpoint and the prefill header.
fn pd_pick(
    picker: &scheduler_core::EndpointPicker,
    pool: &[Endpoint],
    body: &str,
) -> (Vec<usize>, Option<String>) {
    let req = picker
        .parse_request("/v1/chat/completions", body.as_bytes(), vec![])
        .unwrap();
    let r = picker
        .schedule(
            &req,
            pool,
            1,
            &mut SplitMix64::new(1),
            &mut RequestState::new(),
        )
        .unwrap();
    let prefill = r
        .headers
        .iter()
        .find(|(k, _)| k == "x-prefiller-host-port")
        .map(|(_, v)| v.clone());
    (r.primary_targets().to_vec(), prefill)
}

/// An endpoint with `role` (`llm-d.ai/role`) on node `host`, `waiting` requests queued.
fn pd_server(addr: &str, role: &str, host: &str, waiting: u32) -> Endpoint {
    let mut e = Endpoint::new(addr)
        .with_label("llm-d.ai/role", role)
        .with_label("kubernetes.io/hostname", host);
    e.metrics.waiting_queue_size = waiting;
    e.metrics.update_time_ms = 1;
    e
}

/// `prefix-based-pd-decider` as llm-d-router decides: `nonCachedTokens` 0 turns it off,
/// `promptTokens` keeps short prompts on decode alone, and a long uncached prompt is split.
#[test]
fn prefix_based_decider_thresholds() {
    let picker = |decider: &str| {
        let cfg = format!(
            r#"{{"plugins": [
            {{"type": "prefill-filter"}}, {{"type": "decode-filter"}}, {{"type": "queue-scorer"}},
            {{"type": "max-score-picker"}}, {{"type": "prefix-cache-scorer"}},
            {{"type": "prefix-based-pd-decider", "parameters": {decider}}},
            {{"type": "disagg-profile-handler", "parameters": {{"deciders": {{"prefill": "prefix-based-pd-decider"}}}}}}],
          "schedulingProfiles": [
            {{"name": "prefill", "plugins": [{{"pluginRef": "prefill-filter"}}, {{"pluginRef": "queue-scorer"}}, {{"pluginRef": "max-score-picker"}}]}},
            {{"name": "decode", "plugins": [{{"pluginRef": "decode-filter"}}, {{"pluginRef": "prefix-cache-scorer"}}, {{"pluginRef": "max-score-picker"}}]}}]}}"#
        );
        let (p, report) = load(&cfg, &Registry::with_builtins()).unwrap();
        assert!(
            !report
                .warnings
                .iter()
                .any(|w| w.contains("unknown parameter")),
            "{:?}",
            report.warnings
        );
        p
    };
    let pool = vec![
        pd_server("10.0.0.1:8000", "decode", "h1", 0),
        pd_server("10.0.0.2:8000", "prefill", "h1", 0),
    ];
    let split = |p: &scheduler_core::EndpointPicker, words: usize| {
        pd_pick(p, &pool, &chat(words)).1.is_some()
    };
    // 0 (and no parameters at all) turns the decider off, even for a long new prompt.
    assert!(!split(&picker(r#"{"nonCachedTokens": 0}"#), 400));
    assert!(!split(&picker("null"), 400));
    // ~125 tokens, all uncached: split at a threshold of 16, not at 200.
    assert!(split(&picker(r#"{"nonCachedTokens": 16}"#), 100));
    assert!(!split(&picker(r#"{"nonCachedTokens": 200}"#), 100));
    // promptTokens: a prompt shorter than it stays on decode whatever its cache state.
    let gated = picker(r#"{"nonCachedTokens": 16, "promptTokens": 500}"#);
    assert!(!split(&gated, 100), "~125 tokens < promptTokens 500");
    assert!(split(&gated, 420), "~525 tokens ≥ promptTokens 500");
    // Negative values are refused at load, as upstream refuses them.
    for bad in [r#"{"nonCachedTokens": -1}"#, r#"{"promptTokens": -1}"#] {
        let cfg = format!(
            r#"{{"plugins": [{{"type": "prefix-based-pd-decider", "parameters": {bad}}}]}}"#
        );
        assert!(load(&cfg, &Registry::with_builtins()).is_err(), "{bad}");
    }
}

/// `stageOrder: prefill-first`: prefill runs for every request (even a one-word prompt), then
/// decode, which runs against the prefill pick: `topology-affinity-filter` in the decode profile
/// keeps decode on the prefill server's node. A prefill decider is refused in this order.
#[test]
fn prefill_first_picks_prefill_then_decode_next_to_it() {
    let cfg = r#"{"plugins": [
        {"type": "prefill-filter"}, {"type": "decode-filter"}, {"type": "queue-scorer"},
        {"type": "max-score-picker"}, {"type": "topology-extractor"}, {"type": "topology-affinity-filter"},
        {"type": "disagg-profile-handler", "parameters": {"stageOrder": "prefill-first"}}],
      "schedulingProfiles": [
        {"name": "prefill", "plugins": [{"pluginRef": "prefill-filter"}, {"pluginRef": "queue-scorer"}, {"pluginRef": "max-score-picker"}]},
        {"name": "decode", "plugins": [{"pluginRef": "decode-filter"}, {"pluginRef": "topology-affinity-filter"}, {"pluginRef": "queue-scorer"}, {"pluginRef": "max-score-picker"}]}]}"#;
    let (picker, _) = load(cfg, &Registry::with_builtins()).unwrap();
    // The idle prefill server is on h2; decode follows it there although h1's decode server
    // has the shorter queue.
    let pool = vec![
        pd_server("10.0.0.1:8000", "decode", "h1", 0),
        pd_server("10.0.0.2:8000", "decode", "h2", 4),
        pd_server("10.0.0.3:8000", "prefill", "h1", 6),
        pd_server("10.0.0.4:8000", "prefill", "h2", 0),
    ];
    let (decode, prefill) = pd_pick(&picker, &pool, &chat(1));
    assert_eq!(prefill.as_deref(), Some("10.0.0.4:8000"));
    assert_eq!(decode, [1], "decode on the prefill pick's node");
    // The same pool decode-first: decode picks h1's idle server first.
    let (picker, _) = load(
        &cfg.replace(
            r#""stageOrder": "prefill-first""#,
            r#""stageOrder": "Decode_First""#,
        ),
        &Registry::with_builtins(),
    )
    .unwrap();
    let (decode, _) = pd_pick(&picker, &pool, &chat(1));
    assert_eq!(decode, [0]);
    // No prefill server left: the request still goes to decode, without a prefill header.
    let (picker, _) = load(cfg, &Registry::with_builtins()).unwrap();
    let (decode, prefill) = pd_pick(&picker, &pool[..2], &chat(1));
    assert_eq!(prefill, None);
    assert_eq!(decode, [0], "no peer: topology filter passes everything");
    // A prefill decider cannot be used in this order; an unknown order is refused.
    for (params, at) in [
        (
            r#"{"stageOrder": "prefill", "deciders": {"prefill": "always-disagg-pd-decider"}}"#,
            "deciders.prefill",
        ),
        (r#"{"stageOrder": "sideways"}"#, "stageOrder"),
    ] {
        let err = load(
            &format!(
                r#"{{"plugins": [{{"type": "always-disagg-pd-decider"}}, {{"type": "disagg-profile-handler", "parameters": {params}}}]}}"#
            ),
            &Registry::with_builtins(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains(at), "{err}");
    }
}

/// llm-d's P/D topology sample (`deploy/config/pd-topology-epp-config.yaml`): the prefill pick
/// stays on the decode pick's host when a prefill server is there, even when another prefill
/// server elsewhere is less loaded; with no prefill server on that host, the one in the same
/// rack wins over one only in the same zone.
#[test]
fn prefill_stays_near_the_decode_pick() {
    let doc: serde_json::Value =
        serde_yaml_ng::from_str(
            &std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
                "testdata/upstream/llm-d-router__deploy__config__pd-topology-epp-config.yaml",
            ))
            .unwrap(),
        )
        .unwrap();
    let (picker, report) = load(&doc.to_string(), &Registry::with_builtins()).unwrap();
    assert!(report
        .warnings
        .iter()
        .any(|w| w.contains("'topology-extractor' is Alpha")));
    let server = |addr: &str, role: &str, host: &str, rack: &str, waiting: u32| {
        let mut e = Endpoint::new(addr)
            .with_label("llm-d.ai/role", role)
            .with_label("kubernetes.io/hostname", host)
            .with_label("topology.kubernetes.io/rack", rack)
            .with_label("topology.kubernetes.io/zone", "z1");
        e.metrics.waiting_queue_size = waiting;
        e.metrics.update_time_ms = 1;
        e
    };
    // A long prompt new to the decode server, so the prefix-based decider splits prefill off.
    let pick = |pool: &[Endpoint], story: &str| {
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
            format!("tell me a story about {story} ").repeat(40)
        );
        pd_pick(&picker, pool, &body)
    };
    let pool = vec![
        server("10.0.0.1:8000", "decode", "h1", "r1", 0),
        server("10.0.0.2:8000", "prefill", "h1", "r1", 6),
        server("10.0.0.3:8000", "prefill", "h2", "r1", 0),
        server("10.0.0.4:8000", "prefill", "h3", "r2", 0),
    ];
    let (decode, prefill) = pick(&pool, "a topology aware router");
    assert_eq!(decode, [0]);
    assert_eq!(
        prefill.as_deref(),
        Some("10.0.0.2:8000"),
        "same host, despite its queue"
    );
    // Without a prefill server on h1: the filter fails open and the scorer prefers the rack.
    // (A new address: the first pick taught the prefix index that 10.0.0.2 holds this prompt.)
    let mut pool = pool;
    pool[1] = server("10.0.0.5:8000", "prefill", "h4", "r3", 0);
    let (_, prefill) = pick(&pool, "racks and zones");
    assert_eq!(prefill.as_deref(), Some("10.0.0.3:8000"), "same rack");
}

#[test]
fn mm_embeddings_cache_sends_the_same_image_back_to_the_endpoint_that_encoded_it() {
    use scheduler_core::model::endpoint::Endpoint;
    use scheduler_core::plugin::RequestState;
    use scheduler_core::rng::SplitMix64;

    // Only the scorer is configured: the producer is created as its default producer.
    let (picker, report) = scheduler_core::load(
        r#"{"plugins": [{"type": "mm-embeddings-cache-scorer"}, {"type": "max-score-picker"}],
            "schedulingProfiles": [{"name": "default", "plugins": [
              {"pluginRef": "mm-embeddings-cache-scorer"}, {"pluginRef": "max-score-picker"}]}]}"#,
        &Registry::with_builtins(),
    )
    .unwrap();
    assert!(
        report.warnings.iter().all(|w| !w.contains("error")),
        "{report:?}"
    );
    let eps: Vec<Endpoint> = (1..=8)
        .map(|i| Endpoint::new(format!("10.0.0.{i}:8000")))
        .collect();
    let body = |img: &str| {
        format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"text","text":"what is it"}},{{"type":"image_url","image_url":{{"url":"https://img/{img}.png"}}}}]}}]}}"#
        )
    };
    let pick = |b: &str, seed: u64| {
        let req = picker
            .parse_request("/v1/chat/completions", b.as_bytes(), vec![])
            .unwrap();
        let mut state = RequestState::new();
        let r = picker
            .schedule(&req, &eps, 1, &mut SplitMix64::new(seed), &mut state)
            .unwrap();
        r.primary().unwrap().targets[0]
    };
    // Each image's first request lands wherever the tie-break puts it; every later request with
    // that image returns to the same endpoint, whatever the random tie-break would say.
    for img in ["cat", "dog", "car"] {
        let first = pick(&body(img), 7);
        for seed in 0..20 {
            assert_eq!(pick(&body(img), seed), first, "{img}");
        }
    }
    // A text-only request gets no affinity: the tie-break spreads it.
    let text = r#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#;
    let spread: std::collections::HashSet<usize> = (0..40).map(|s| pick(text, s)).collect();
    assert!(spread.len() > 1, "{spread:?}");
}

/// `disagg-profile-handler`'s deprecated flat parameters load as llm-d loads them: each names
/// what its nested form names, `deciderPluginName` stands in for `prefillDeciderPluginName`,
/// and with any flat field present the nested `profiles`/`deciders` are not read.
#[test]
fn disagg_flat_parameters_load_as_the_nested_ones() {
    let picker = |handler_params: &str| {
        let cfg = format!(
            r#"{{"plugins": [
            {{"type": "prefill-filter"}}, {{"type": "decode-filter"}}, {{"type": "max-score-picker"}},
            {{"type": "always-disagg-pd-decider"}}, {{"name": "never", "type": "prefix-based-pd-decider"}},
            {{"type": "disagg-profile-handler", "parameters": {handler_params}}}],
          "schedulingProfiles": [
            {{"name": "p", "plugins": [{{"pluginRef": "prefill-filter"}}, {{"pluginRef": "max-score-picker"}}]}},
            {{"name": "d", "plugins": [{{"pluginRef": "decode-filter"}}, {{"pluginRef": "max-score-picker"}}]}}]}}"#
        );
        let (p, report) = load(&cfg, &Registry::with_builtins()).unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        p
    };
    let pool = vec![
        pd_server("10.0.0.1:8000", "decode", "h1", 0),
        pd_server("10.0.0.2:8000", "prefill", "h1", 0),
    ];
    let split = |params: &str| {
        let (decode, prefill) = pd_pick(&picker(params), &pool, &chat(50));
        assert_eq!(decode, [0], "{params}");
        prefill.is_some()
    };
    // The nested form and each flat spelling of it.
    assert!(split(
        r#"{"profiles": {"decode": "d", "prefill": "p"}, "deciders": {"prefill": "always-disagg-pd-decider"}}"#
    ));
    assert!(split(
        r#"{"decodeProfile": "d", "prefillProfile": "p", "prefillDeciderPluginName": "always-disagg-pd-decider"}"#
    ));
    assert!(split(
        r#"{"decodeProfile": "d", "prefillProfile": "p", "deciderPluginName": "always-disagg-pd-decider"}"#
    ));
    // prefillDeciderPluginName wins over deciderPluginName ("never": nonCachedTokens 0).
    assert!(!split(
        r#"{"decodeProfile": "d", "prefillProfile": "p", "prefillDeciderPluginName": "never", "deciderPluginName": "always-disagg-pd-decider"}"#
    ));
    // A flat field present: the nested deciders are not read, so the nested "always" does not
    // count and with no decider the decode-first order never runs prefill.
    assert!(!split(
        r#"{"decodeProfile": "d", "prefillProfile": "p", "deciders": {"prefill": "always-disagg-pd-decider"}}"#
    ));
    // A flat decider naming no plugin is refused as the nested one is.
    let cfg = r#"{"plugins": [{"type": "disagg-profile-handler", "parameters": {"prefillDeciderPluginName": "nope"}}]}"#;
    assert!(load(cfg, &Registry::with_builtins()).is_err());
}
