//! The gateway manifests in `envoy-config/deploy/`: they are the renderer's current output, every
//! document validates against the CRD `openAPIV3Schema` vendored in `deploy/crds/` (strict:
//! unknown fields fail), and every picker JSON embedded in them passes the module's own
//! validation. (Their embedded Envoy snippets pass `envoy --mode validate` in the e2e suite,
//! `tests/tests/deploy_envoy.rs`.)

use std::path::{Path, PathBuf};
use std::process::Command;

use envoy_config::crd::{documents, CrdSet};
use envoy_config::deploy::{Gateway, FILTER_ONLY};
use serde_json::Value;

/// One committed set: a gateway, rendered with or without `--filter-only`.
#[derive(Clone, Copy)]
struct Set {
    gateway: Gateway,
    filter_only: bool,
}

impl Set {
    /// Its directory under `envoy-config/deploy/`.
    fn name(self) -> String {
        if self.filter_only {
            format!("{}-filter-only", self.gateway.name())
        } else {
            self.gateway.name().to_string()
        }
    }
}

/// Every committed set: each gateway, then the filter-only ones.
fn sets() -> Vec<Set> {
    let plain = Gateway::ALL.into_iter().map(|gateway| Set {
        gateway,
        filter_only: false,
    });
    let filter_only = FILTER_ONLY.into_iter().map(|gateway| Set {
        gateway,
        filter_only: true,
    });
    plain.chain(filter_only).collect()
}

/// The module image each set is rendered with (as `make deploy-manifests` does).
fn image(g: Gateway) -> &'static str {
    match g {
        Gateway::EnvoyGatewayNative | Gateway::IstioNative => {
            "registry.example.com/llm-picker/endpoint-picker-native:v0.1.0"
        }
        _ => "registry.example.com/llm-picker/endpoint-picker-wasm:v0.1.0",
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn committed(g: Set) -> String {
    let path = root().join(format!("envoy-config/deploy/{}/manifests.yaml", g.name()));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn crds() -> CrdSet {
    CrdSet::load_dir(&root().join("envoy-config/deploy/crds")).unwrap()
}

#[test]
fn committed_manifests_are_current_renders() {
    for g in sets() {
        let out = Command::new(env!("CARGO_BIN_EXE_envoy-config"))
            .current_dir(root())
            .args([
                "deploy",
                "--gateway",
                g.gateway.name(),
                "--config",
                "envoy-config/deploy/picker.json",
                "--image",
                image(g.gateway),
            ])
            .args(g.filter_only.then_some("--filter-only"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            committed(g) == String::from_utf8_lossy(&out.stdout),
            "envoy-config/deploy/{}/manifests.yaml is stale: re-render it (make deploy-manifests)",
            g.name()
        );
    }
}

#[test]
fn every_manifest_document_validates_against_its_crd_schema() {
    let set = crds();
    assert!(set.len() > 20, "CRDs loaded: {}", set.len());
    for g in sets() {
        let docs = documents(&committed(g)).unwrap();
        assert!(docs.len() >= 6, "{}: {} documents", g.name(), docs.len());
        for doc in &docs {
            if let Err(errors) = set.validate(doc) {
                panic!("{}: {}", g.name(), errors.join("\n"));
            }
        }
    }
}

#[test]
fn schema_validation_catches_a_misspelt_field_and_a_bad_value() {
    let set = crds();
    let docs = documents(&committed(sets()[0])).unwrap();
    let mut eep = docs
        .iter()
        .find(|d| d["kind"] == "EnvoyExtensionPolicy")
        .unwrap()
        .clone();
    let wasm = eep["spec"]["wasm"][0].as_object_mut().unwrap();
    let root_id = wasm.remove("rootID").unwrap();
    wasm.insert("rootId".into(), root_id);
    let e = set.validate(&eep).unwrap_err();
    assert!(e[0].contains("rootId"), "{e:?}");

    let mut btp = docs
        .iter()
        .find(|d| d["kind"] == "BackendTrafficPolicy")
        .unwrap()
        .clone();
    btp["spec"]["loadBalancer"]["endpointOverride"]["extractFrom"] = Value::Array(vec![]);
    assert!(set.validate(&btp).is_err(), "extractFrom needs an item");
}

/// Every picker JSON a manifest carries: the EnvoyExtensionPolicy `config`, and the
/// `StringValue` under each `configuration:` of the embedded Envoy snippets.
fn embedded_picker_jsons(g: Set) -> Vec<String> {
    let mut out = Vec::new();
    for doc in documents(&committed(g)).unwrap() {
        if doc["kind"] == "EnvoyExtensionPolicy" {
            let spec = &doc["spec"];
            let config = if spec["wasm"].is_array() {
                &spec["wasm"][0]["config"]
            } else {
                &spec["dynamicModule"][0]["config"]
            };
            out.push(config.to_string());
        }
        collect_configurations(&doc, &mut out);
    }
    out
}

fn collect_configurations(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s)
            if s.contains("configuration:")
                || s.contains("typed_config")
                || s.contains("extension_config") =>
        {
            // A YAML text (bootstrap value, ConfigMap data): parse it and look inside.
            if let Ok(docs) = documents(s) {
                docs.iter()
                    .filter(|d| d.is_object())
                    .for_each(|d| collect_configurations(d, out));
            }
        }
        Value::Object(m) => {
            // Wasm: `configuration`; native: `extension_config` / `filter_config`.
            for key in ["configuration", "extension_config", "filter_config"] {
                if let Some(Value::String(json)) = m.get(key).map(|c| &c["value"]) {
                    out.push(json.clone());
                }
            }
            m.values().for_each(|x| collect_configurations(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_configurations(x, out)),
        _ => {}
    }
}

#[test]
fn every_embedded_picker_json_passes_the_module_validation() {
    for g in sets() {
        let jsons = embedded_picker_jsons(g);
        if g.filter_only {
            // The filter alone, scraping through the serving cluster.
            assert_eq!(jsons.len(), 1, "{}: {jsons:?}", g.name());
            envoy_config::validate::validate(&jsons[0])
                .unwrap_or_else(|e| panic!("{}: {e}", g.name()));
            let a: Value = serde_json::from_str(&jsons[0]).unwrap();
            assert!(a["pool"].get("metricsCluster").is_none(), "{}", g.name());
            continue;
        }
        // Scraper + filter on every gateway (EG: bootstrap + EnvoyExtensionPolicy; Istio:
        // bootstrap override + EnvoyFilter; kgateway: overlay + ECDS ConfigMap).
        assert_eq!(jsons.len(), 2, "{}: {jsons:?}", g.name());
        for j in &jsons {
            envoy_config::validate::validate(j).unwrap_or_else(|e| panic!("{}: {e}", g.name()));
        }
        let a: Value = serde_json::from_str(&jsons[0]).unwrap();
        let b: Value = serde_json::from_str(&jsons[1]).unwrap();
        assert_eq!(a, b, "{}: scraper and filter get the same JSON", g.name());
        assert_eq!(a["pool"]["metricsCluster"], "endpoint_picker_metrics");
    }
}

#[test]
fn filter_only_sets_change_no_bootstrap() {
    for g in sets().into_iter().filter(|g| g.filter_only) {
        let text = committed(g);
        for doc in documents(&text).unwrap() {
            assert!(
                doc["spec"].get("bootstrap").is_none(),
                "{}: {} merges a bootstrap",
                g.name(),
                doc["kind"]
            );
        }
        for word in [
            "bootstrap_extensions",
            "ISTIO_BOOTSTRAP_OVERRIDE",
            "endpoint_picker_metrics",
        ] {
            assert!(!text.contains(word), "{}: {word}", g.name());
        }
    }
}

#[test]
fn filter_only_is_refused_where_it_cannot_hold() {
    let run = |gateway: &str, config: &str| {
        Command::new(env!("CARGO_BIN_EXE_envoy-config"))
            .current_dir(root())
            .args([
                "deploy",
                "--filter-only",
                "--gateway",
                gateway,
                "--image",
                "i:1",
            ])
            .args(["--config", config])
            .output()
            .unwrap()
    };
    let out = run("kgateway", "envoy-config/deploy/picker.json");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("overlay"));
    // A separate metrics port needs the bootstrap's scrape cluster.
    let mut picker: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("envoy-config/deploy/picker.json")).unwrap(),
    )
    .unwrap();
    picker["pool"]["metricsPort"] = 9090.into();
    let path = std::env::temp_dir().join(format!("filter-only-{}.json", std::process::id()));
    std::fs::write(&path, picker.to_string()).unwrap();
    let out = run("envoy-gateway", path.to_str().unwrap());
    let _ = std::fs::remove_file(&path);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("metrics"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An h2c pool is scraped over HTTP/1.1, through the bootstrap's scrape cluster too.
    picker["pool"]
        .as_object_mut()
        .unwrap()
        .remove("metricsPort");
    picker["pool"]["appProtocol"] = "kubernetes.io/h2c".into();
    std::fs::write(&path, picker.to_string()).unwrap();
    let out = run("istio", path.to_str().unwrap());
    let _ = std::fs::remove_file(&path);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("h2c"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pool of gRPC model servers (`pool.appProtocol: kubernetes.io/h2c`): every gateway's
/// manifests dial it over HTTP/2 (the Service port's `appProtocol` for Envoy Gateway and Istio,
/// the pool cluster's protocol options in kgateway's overlay), route vLLM's gRPC service, and
/// still validate against the CRDs.
#[test]
fn h2c_pools_are_dialled_over_http2_and_route_vllm_grpc() {
    let mut picker: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("envoy-config/deploy/picker.json")).unwrap(),
    )
    .unwrap();
    picker["pool"]["appProtocol"] = "kubernetes.io/h2c".into();
    let crds = crds();
    for gateway in Gateway::ALL {
        let input = envoy_config::deploy::DeployInput::example(picker.clone(), "i:1");
        let text = envoy_config::deploy::render(gateway, &input).unwrap();
        if gateway == Gateway::Kgateway {
            assert!(
                text.contains("http2_protocol_options"),
                "{}",
                gateway.name()
            );
            assert!(
                text.contains("/vllm.grpc.engine.VllmEngine/"),
                "{}",
                gateway.name()
            );
        } else {
            assert!(
                text.contains("appProtocol: kubernetes.io/h2c"),
                "{}",
                gateway.name()
            );
            assert!(
                text.contains("type: PathPrefix, value: /vllm.grpc.engine.VllmEngine }"),
                "{}",
                gateway.name()
            );
        }
        for doc in documents(&text).unwrap() {
            if let Err(e) = crds.validate(&doc) {
                panic!("{}: {e:?}", gateway.name());
            }
        }
    }
}

/// A picker whose parsers take SGLang's `/generate` gets that path routed by every gateway
/// (kgateway's overlay route, the HTTPRoute of Envoy Gateway and Istio), and still validates.
#[test]
fn a_parsers_own_path_is_routed_by_every_gateway() {
    let mut picker: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("envoy-config/deploy/picker.json")).unwrap(),
    )
    .unwrap();
    let plugins = picker["plugins"].as_array_mut().unwrap();
    plugins.push(serde_json::json!({"type": "openai-parser"}));
    plugins.push(serde_json::json!({"type": "sglanghttp-parser"}));
    picker["requestHandler"] = serde_json::json!({"parsers": [
        {"pluginRef": "openai-parser"}, {"pluginRef": "sglanghttp-parser"}]});
    let crds = crds();
    for gateway in Gateway::ALL {
        let input = envoy_config::deploy::DeployInput::example(picker.clone(), "i:1");
        let text = envoy_config::deploy::render(gateway, &input).unwrap();
        let want = if gateway == Gateway::Kgateway {
            "match: { path: \"/generate\" }"
        } else {
            "path: { type: Exact, value: /generate }"
        };
        assert!(text.contains(want), "{}:\n{text}", gateway.name());
        for doc in documents(&text).unwrap() {
            if let Err(e) = crds.validate(&doc) {
                panic!("{}: {e:?}", gateway.name());
            }
        }
    }
}

/// The committed example picker JSON with llm-d's precise prefix-cache plugins and profile.
fn precise_picker() -> Value {
    let mut picker: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("envoy-config/deploy/picker.json")).unwrap(),
    )
    .unwrap();
    picker["plugins"] = serde_json::json!([
        {"type": "token-producer", "parameters": {"modelName": "meta-llama/Llama-3.1-8B-Instruct"}},
        {"type": "precise-prefix-cache-producer", "parameters": {
            "tokenProcessorConfig": {"blockSize": 16},
            "kvEventsConfig": {"podDiscoveryConfig": {"socketPort": 5557}}}},
        {"type": "queue-scorer"},
        {"type": "prefix-cache-scorer", "parameters": {"prefixMatchInfoProducerName": "precise-prefix-cache-producer"}}
    ]);
    picker["schedulingProfiles"] = serde_json::json!([{"name": "default", "plugins": [
        {"pluginRef": "queue-scorer", "weight": 2}, {"pluginRef": "prefix-cache-scorer", "weight": 3}]}]);
    picker
}

#[test]
fn a_tokenizer_image_is_mounted_where_the_token_producer_reads() {
    use envoy_config::deploy::{render, DeployInput, TOKENIZER_DIR};
    let set = crds();
    let tokenizer = "registry.example.com/models/llama-3.1-8b-tokenizer:v1";
    for gateway in [Gateway::EnvoyGatewayNative, Gateway::IstioNative] {
        for filter_only in [false, true] {
            let mut input = DeployInput::example(precise_picker(), image(gateway));
            input.filter_only = filter_only;
            input.tokenizer_image = Some(tokenizer.into());
            let text = render(gateway, &input).unwrap();
            let docs = documents(&text).unwrap();
            for doc in &docs {
                if let Err(errors) = set.validate(doc) {
                    panic!("{}: {}", gateway.name(), errors.join("\n"));
                }
            }
            // The image volume and its mount, beside the module's.
            assert!(
                text.contains(&format!("reference: {tokenizer}")),
                "{}: {text}",
                gateway.name()
            );
            assert!(
                text.contains(&format!("mountPath: {TOKENIZER_DIR}")),
                "{}",
                gateway.name()
            );
            // Every embedded picker JSON points the token producer at the mount.
            let mut jsons = Vec::new();
            for doc in &docs {
                collect_configurations(doc, &mut jsons);
            }
            if let Some(config) = docs
                .iter()
                .find(|d| d["kind"] == "EnvoyExtensionPolicy")
                .and_then(|d| d["spec"]["dynamicModule"][0].get("config"))
            {
                jsons.push(config.to_string());
            }
            let pointed = jsons
                .iter()
                .filter_map(|j| serde_json::from_str::<Value>(j).ok())
                .filter(|p| p["plugins"].is_array())
                .inspect(|p| {
                    let producer = p["plugins"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|x| x["type"] == "token-producer")
                        .unwrap();
                    assert_eq!(
                        producer["parameters"]["tokenizerPath"],
                        TOKENIZER_DIR,
                        "{}",
                        gateway.name()
                    );
                })
                .count();
            assert!(pointed >= 1, "{}: no picker JSON found", gateway.name());
        }
    }
    // Refused where it cannot be used.
    let mut wasm = DeployInput::example(precise_picker(), image(Gateway::EnvoyGateway));
    wasm.tokenizer_image = Some(tokenizer.into());
    let e = render(Gateway::EnvoyGateway, &wasm).unwrap_err();
    assert!(e.contains("native"), "{e}");
    let plain: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("envoy-config/deploy/picker.json")).unwrap(),
    )
    .unwrap();
    let mut no_producer = DeployInput::example(plain, image(Gateway::EnvoyGatewayNative));
    no_producer.tokenizer_image = Some(tokenizer.into());
    let e = render(Gateway::EnvoyGatewayNative, &no_producer).unwrap_err();
    assert!(e.contains("token-producer"), "{e}");
}
