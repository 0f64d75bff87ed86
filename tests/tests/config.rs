//! Envoy refuses an invalid picker configuration, and its log carries the scheduler-core error
//! with the field path, the same text the offline CLI prints.

use e2e::{Backend, Env, StartOptions};
use serde_json::json;

#[test]
fn envoy_refuses_an_invalid_config_with_the_field_path_in_its_log() {
    let backends = vec![Backend::spawn("pod-a")];
    let picker = json!({
        "pool": {"cluster": "inference_pool", "endpoints": [{"address": backends[0].addr.to_string()}]},
        "plugins": [{"type": "queue-scorer"}],
        "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "queue-scorer"}, {"pluginRef": "kv-scorer"}]}]
    });
    // The renderer validates too, so render a valid document and break it in the YAML, as a
    // hand-edited envoy.yaml would be.
    let valid = {
        let mut p = picker.clone();
        p["schedulingProfiles"][0]["plugins"]
            .as_array_mut()
            .unwrap()
            .pop();
        p
    };
    let opts = StartOptions {
        edit_yaml: Some(Box::new(|y: String| {
            y.replace(r#""pluginRef": "queue-scorer""#, r#""pluginRef": "foo""#)
        })),
        wait_for_scrape: false,
        ..StartOptions::default()
    };
    let err = match Env::start_with(backends, valid, opts) {
        Ok(_) => panic!("Envoy accepted an invalid configuration"),
        Err(log) => log,
    };
    assert!(
        err.contains("schedulingProfiles[0].plugins[0].pluginRef: undefined plugin 'foo'"),
        "{err}"
    );

    // The CLI prints the same text for the same mistake.
    let cli = envoy_config::validate::validate(&picker.to_string()).unwrap_err();
    assert_eq!(
        cli,
        "schedulingProfiles[0].plugins[1].pluginRef: undefined plugin 'kv-scorer'"
    );
}

/// llm-d's EPP configuration for running without Kubernetes (`file-discovery` plus its default
/// profile, the one `make bench-peers` gives the EPP) becomes a working Envoy: its endpoints
/// file is the pool.
#[test]
fn an_llm_d_file_discovery_config_routes_to_the_files_endpoints() {
    let backends = vec![e2e::Backend::spawn("fd-a"), e2e::Backend::spawn("fd-b")];
    let dir = std::env::temp_dir().join(format!("e2e-file-discovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("endpoints.yaml");
    let mut eps = String::from("endpoints:\n");
    for b in &backends {
        eps.push_str(&format!(
            "- name: {}\n  address: {}\n  port: \"{}\"\n",
            b.name,
            b.addr.ip(),
            b.addr.port()
        ));
    }
    std::fs::write(&file, eps).unwrap();
    let text = std::fs::read_to_string(e2e::repo_root().join("scripts/peers/epp-config.yaml"))
        .unwrap()
        .replace("@ENDPOINTS_FILE@", &file.display().to_string());
    let doc = envoy_config::document::parse("epp-config.yaml", &text).unwrap();
    let picker = envoy_config::document::with_pool_and_discovery(doc, "inference_pool").unwrap();
    assert_eq!(
        picker["pool"]["endpoints"].as_array().map(Vec::len),
        Some(2)
    );
    let env = e2e::Env::start_with(backends, picker, e2e::StartOptions::default())
        .unwrap_or_else(|log| panic!("envoy did not start:\n{log}"));
    let mut served = std::collections::HashSet::new();
    for i in 0..12 {
        let r = env.post(
            "/v1/completions",
            &format!(r#"{{"model":"m","prompt":"request {i} with its own text"}}"#),
            &[],
        );
        assert_eq!(r.status, 200, "{r:?}");
        served.insert(r.header("x-inference-pod").unwrap_or_default().to_string());
    }
    assert!(
        served.iter().all(|s| s == "fd-a" || s == "fd-b"),
        "{served:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
