//! Real EndpointPickerConfig documents from upstream (GIE v1.5.0 and llm-d-router: Helm values,
//! docs, deploy samples, test data), committed unchanged in `testdata/upstream/` with their
//! source URL and commit on the first line. Each must load with the built-in registry, except
//! the ones listed in [`NEEDS`] with the upstream feature they depend on.

use std::path::Path;

use scheduler_core::{load, Registry};

/// Documents that need a feature this engine does not have yet, and which.
const NEEDS: &[(&str, &str)] = &[
    (
        "gateway-api-inference-extension__config__charts__inferencepool__README.yaml",
        "doc example of an out-of-tree plugin type ('custom-scorer')",
    ),
    (
        "llm-d-router__config__charts__README.yaml",
        "doc example of an out-of-tree plugin type ('custom-scorer')",
    ),
    (
        "gateway-api-inference-extension__pkg__epp__framework__plugins__requestcontrol__requestattributereporter__README.yaml",
        "upstream rejects it too: GIE v1.5.0 registers only apiVersion inference.networking.x-k8s.io/v1alpha1",
    ),
    (
        "gateway-api-inference-extension__site-src__guides__flow-control.yaml",
        "upstream rejects it too: GIE v1.5.0 registers only apiVersion inference.networking.x-k8s.io/v1alpha1",
    ),
    (
        "gateway-api-inference-extension__site-src__guides__troubleshooting__1.yaml",
        "upstream rejects it too: the troubleshooting guide shows the deprecated blockSize error",
    ),
    (
        "gateway-api-inference-extension__site-src__guides__troubleshooting__2.yaml",
        "upstream rejects it too: 'prepareDataPlugins' is not a feature gate GIE v1.5.0 registers",
    ),
    (
        "gateway-api-inference-extension__test__testdata__configloader_1_test.yaml",
        "upstream unit-test fixture: plugin types registered only by upstream's loader tests",
    ),
    (
        "llm-d-router__test__testdata__configloader_1_test.yaml",
        "upstream unit-test fixture: plugin types registered only by upstream's loader tests",
    ),
    (
        "gateway-api-inference-extension__test__integration__epp__testdata__datalayer-config.yaml",
        "upstream integration-test fixture: 'mock-metrics-source' is registered only by upstream's test harness",
    ),
    (
        "llm-d-router__test__integration__epp__testdata__datalayer-config.yaml",
        "upstream integration-test fixture: 'mock-metrics-source' is registered only by upstream's test harness",
    ),
    (
        "llm-d-router__test__integration__epp__testdata__request-attribute-reporter-config.yaml",
        "upstream integration-test fixture: 'mock-metrics-source' is registered only by upstream's test harness",
    ),
];

fn corpus() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/upstream");
    let mut docs: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "yaml").then(|| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
        })
        .collect();
    docs.sort();
    docs
}

/// The YAML document as the JSON text the loader reads.
fn to_json(yaml: &str) -> String {
    let v: serde_json::Value = serde_yaml_ng::from_str(yaml).expect("valid YAML");
    v.to_string()
}

#[test]
fn upstream_configs_load_unchanged() {
    let registry = Registry::with_builtins();
    let docs = corpus();
    assert!(docs.len() >= 30, "the corpus has {} documents", docs.len());
    let mut failures = Vec::new();
    let mut loaded = 0;
    for (name, text) in &docs {
        let need = NEEDS.iter().find(|(n, _)| n == name).map(|(_, why)| *why);
        match (load(&to_json(text), &registry), need) {
            (Ok(_), None) => loaded += 1,
            (Ok(_), Some(why)) => {
                failures.push(format!("{name}: loads now; drop it from NEEDS ({why})"))
            }
            (Err(e), None) => failures.push(format!("{name}: {e}")),
            (Err(_), Some(_)) => {}
        }
    }
    println!(
        "{loaded} of {} upstream documents load; {} are listed in NEEDS",
        docs.len(),
        NEEDS.len()
    );
    for (name, _) in NEEDS {
        assert!(
            docs.iter().any(|(n, _)| n == name),
            "NEEDS names a missing file {name}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} unexpected:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every type llm-d-router's EPP registers at the followed commit is known here: built, or a
/// `not_built` entry whose error says why (`testdata/llm-d-router-plugin-types.txt`).
#[test]
fn every_llm_d_router_plugin_type_is_known() {
    let registry = Registry::with_builtins();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/llm-d-router-plugin-types.txt");
    let list = std::fs::read_to_string(path).unwrap();
    let types: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(types.len() > 90, "{} types", types.len());
    let unknown: Vec<&str> = types
        .iter()
        .copied()
        .filter(|t| registry.get(t).is_none())
        .collect();
    assert!(unknown.is_empty(), "not in the registry: {unknown:?}");
    let built = types
        .iter()
        .filter(|t| registry.get(t).is_some_and(|e| e.stability().is_some()))
        .count();
    println!(
        "{built} of {} llm-d-router plugin types are built",
        types.len()
    );
}
