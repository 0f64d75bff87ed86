//! The gateway manifests in `envoy-config/deploy/`: they are the renderer's current output, every
//! document validates against the CRD `openAPIV3Schema` vendored in `deploy/crds/` (strict:
//! unknown fields fail), and every picker JSON embedded in them passes the module's own
//! validation. (Their embedded Envoy snippets pass `envoy --mode validate` in the e2e suite,
//! `tests/tests/deploy_envoy.rs`.)

use std::path::{Path, PathBuf};
use std::process::Command;

use envoy_config::crd::{documents, CrdSet};
use envoy_config::deploy::Gateway;
use serde_json::Value;

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

fn committed(g: Gateway) -> String {
    let path = root().join(format!("envoy-config/deploy/{}/manifests.yaml", g.name()));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn crds() -> CrdSet {
    CrdSet::load_dir(&root().join("envoy-config/deploy/crds")).unwrap()
}

#[test]
fn committed_manifests_are_current_renders() {
    for g in Gateway::ALL {
        let out = Command::new(env!("CARGO_BIN_EXE_envoy-config"))
            .current_dir(root())
            .args([
                "deploy",
                "--gateway",
                g.name(),
                "--config",
                "envoy-config/deploy/picker.json",
                "--image",
                image(g),
            ])
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
    for g in Gateway::ALL {
        let docs = documents(&committed(g)).unwrap();
        assert!(docs.len() >= 7, "{}: {} documents", g.name(), docs.len());
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
    let docs = documents(&committed(Gateway::EnvoyGateway)).unwrap();
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
fn embedded_picker_jsons(g: Gateway) -> Vec<String> {
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
    for g in Gateway::ALL {
        let jsons = embedded_picker_jsons(g);
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
