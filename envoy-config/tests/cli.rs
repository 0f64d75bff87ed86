//! The CLI: `validate` prints exactly the module's error text (the shared table in
//! `scheduler-core/testdata/config_errors.json`), and the committed `envoy.yaml` files are the
//! renderer's output, so they cannot drift from it.

use std::process::Command;

fn cli(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_envoy-config"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    config: serde_json::Value,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warning: Option<String>,
}

#[test]
fn validate_prints_the_module_error_for_every_table_row() {
    let table: Vec<Case> = serde_json::from_str(include_str!(
        "../../scheduler-core/testdata/config_errors.json"
    ))
    .unwrap();
    for c in table {
        // The module config is the GIE document plus a pool section.
        let doc = match &c.config {
            serde_json::Value::Object(m) => {
                let mut m = m.clone();
                m.insert("pool".into(), serde_json::json!({"cluster": "c"}));
                serde_json::Value::Object(m).to_string()
            }
            _ => continue, // raw-text rows are not objects to add a pool to
        };
        let (ok, out, err) = cli(&["validate", "-"], Some(&doc));
        match (&c.error, &c.warning) {
            (Some(e), _) => {
                assert!(!ok, "{}: accepted", c.name);
                assert_eq!(err.trim(), format!("error: {e}"), "{}", c.name);
            }
            (None, Some(w)) => {
                assert!(ok, "{}: refused: {err}", c.name);
                assert!(
                    out.contains(w.as_str()) || err.contains(w.as_str()),
                    "{}: no warning {w:?} in {out}{err}",
                    c.name
                );
            }
            (None, None) => panic!("{}: a case needs an error or a warning", c.name),
        }
    }
    let (ok, out, _) = cli(
        &["validate", "-"],
        Some(include_str!("../picker.example.json")),
    );
    assert!(ok && out.contains("valid"), "{out}");
}

#[test]
fn committed_envoy_yaml_files_are_current_renders() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for (config, wasm, listen, yaml, native) in [
        (
            "envoy-config/picker.example.json",
            "dist/endpoint_picker.wasm",
            "0.0.0.0:8080",
            "envoy-config/envoy.yaml",
            false,
        ),
        (
            "envoy-config/picker.example.json",
            "dist/endpoint_picker.wasm",
            "0.0.0.0:8080",
            "envoy-config/envoy.native.yaml",
            true,
        ),
        (
            "examples/out_of_tree_scorer/picker.json",
            "dist/out_of_tree_scorer.wasm",
            "127.0.0.1:8080",
            "examples/out_of_tree_scorer/envoy.yaml",
            false,
        ),
    ] {
        let config = format!("{root}/{config}");
        let mut args = vec![
            "render",
            "--config",
            &config,
            "--wasm",
            wasm,
            "--listen",
            listen,
            "--admin-port",
            "9901",
            // Committed examples name the module relative to the repository.
            "--module-elsewhere",
        ];
        if native {
            args.push("--native");
        }
        let (ok, out, err) = cli(&args, None);
        assert!(ok, "{err}");
        let committed = std::fs::read_to_string(format!("{root}/{yaml}")).unwrap();
        assert!(
            committed == out,
            "{yaml} is stale: re-render it with envoy-config render (see README)"
        );
    }
}

#[test]
fn render_refuses_a_module_that_is_not_there_and_makes_paths_absolute() {
    let config = r#"{"pool": {"cluster": "c", "endpoints": [{"address": "10.0.0.1:8000"}]}}"#;
    let (ok, _, err) = cli(
        &["render", "--config", "-", "--wasm", "/nonexistent.wasm"],
        Some(config),
    );
    assert!(!ok);
    assert!(err.contains("'/nonexistent.wasm' cannot be read"), "{err}");
    let dir = std::env::temp_dir().join(format!("cli-module-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("m.wasm");
    std::fs::write(&module, b"\0asm").unwrap();
    let (ok, yaml, err) = cli(
        &[
            "render",
            "--config",
            "-",
            "--wasm",
            module.to_str().unwrap(),
        ],
        Some(config),
    );
    assert!(ok, "{err}");
    let absolute = std::fs::canonicalize(&module).unwrap();
    assert!(yaml.contains(&format!("filename: \"{}\"", absolute.display())));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn render_refuses_a_bad_pool() {
    let (ok, _, err) = cli(
        &["render", "--config", "-"],
        Some(r#"{"pool": {"cluster": "c", "endpoints": [{"address": "dns-name:80"}]}}"#),
    );
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "error: pool.endpoints[0].address: 'dns-name:80' is not a literal ip:port"
    );
}

#[test]
fn upstream_yaml_configs_validate_and_render_unchanged() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let pd = format!(
        "{root}/scheduler-core/testdata/upstream/llm-d-router__deploy__config__pd-epp-config.yaml"
    );
    let (ok, out, err) = cli(&["validate", &pd], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("valid (an EndpointPickerConfig without a pool section)"),
        "{out}"
    );
    // Rendered for the native build, its pool is the cluster's EDS members.
    let dir = std::env::temp_dir().join(format!("cli-yaml-{}", std::process::id()));
    let (ok, yaml, err) = cli(
        &[
            "render",
            "--config",
            &pd,
            "--native",
            "--xds-dir",
            dir.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(yaml.contains("type: EDS") && yaml.contains("lb_policy_name: pool-membership"));
    let ecds = std::fs::read_to_string(dir.join("picker.ecds.yaml")).unwrap();
    assert!(
        ecds.contains("disagg-profile-handler") && ecds.contains("\"cluster\": \"inference_pool\"")
    );
    let _ = std::fs::remove_dir_all(&dir);
    // Without --xds-dir there is nowhere for the members to come from.
    let (ok, _, err) = cli(&["render", "--config", &pd, "--native"], None);
    assert!(!ok && err.contains("pool.endpoints is empty"), "{err}");
    // A YAML syntax error names its line.
    let (ok, _, err) = cli(&["validate", "-"], Some("plugins:\n  - type: [\n"));
    assert!(
        !ok && err.contains("invalid YAML") && err.contains("line"),
        "{err}"
    );
}

#[test]
fn filter_only_render_has_no_bootstrap_scraper() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/picker.example.json");
    for native in [false, true] {
        let mut args = vec![
            "render",
            "--config",
            config,
            "--module-elsewhere",
            "--filter-only",
        ];
        if native {
            args.push("--native");
        }
        let (ok, out, err) = cli(&args, None);
        assert!(ok, "{err}");
        assert!(!out.contains("bootstrap_extensions"), "native={native}");
        assert!(out.contains("endpoint-picker"), "the filter is still there");
    }
    let (ok, out, err) = cli(&["render", "--config", config, "--module-elsewhere"], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("bootstrap_extensions"),
        "by default the scraper is rendered"
    );
}

#[test]
fn an_h2c_pool_is_dialled_over_http2_and_scraped_over_http1() {
    let dir = std::env::temp_dir().join(format!("h2c-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("picker.json");
    let picker = |protocol: &str| {
        serde_json::json!({
            "pool": {"cluster": "inference_pool", "appProtocol": protocol,
                     "endpoints": [{"address": "127.0.0.1:8000"}]},
            "plugins": [{"type": "vllmgrpc-parser"}, {"type": "queue-scorer"}, {"type": "max-score-picker"}],
            "requestHandler": {"parsers": [{"pluginRef": "vllmgrpc-parser"}]},
            "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "queue-scorer"}, {"pluginRef": "max-score-picker"}]}]
        })
        .to_string()
    };
    std::fs::write(&config, picker("kubernetes.io/h2c")).unwrap();
    let path = config.to_str().unwrap();
    let (ok, out, err) = cli(&["render", "--config", path, "--module-elsewhere"], None);
    assert!(ok, "{err}");
    assert!(out.contains("http2_protocol_options"), "{out}");
    assert!(out.contains("- name: endpoint_picker_metrics"), "{out}");
    assert!(
        out.contains("\"metricsCluster\": \"endpoint_picker_metrics\""),
        "{out}"
    );

    std::fs::write(&config, picker("http")).unwrap();
    let (ok, out, err) = cli(&["render", "--config", path, "--module-elsewhere"], None);
    assert!(ok, "{err}");
    assert!(!out.contains("http2_protocol_options"));
    assert!(!out.contains("- name: endpoint_picker_metrics"));

    std::fs::write(&config, picker("grpc")).unwrap();
    let (ok, _, err) = cli(&["render", "--config", path, "--module-elsewhere"], None);
    assert!(!ok);
    assert!(err.contains("appProtocol"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_paths_configured_parsers_claim_are_routed() {
    let dir = std::env::temp_dir().join(format!("parser-routes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("picker.json");
    let picker = |parsers: &[&str]| {
        let plugins: Vec<_> = parsers
            .iter()
            .map(|p| serde_json::json!({"type": p}))
            .chain([serde_json::json!({"type": "queue-scorer"})])
            .collect();
        let refs: Vec<_> = parsers
            .iter()
            .map(|p| serde_json::json!({"pluginRef": p}))
            .collect();
        serde_json::json!({
            "pool": {"cluster": "inference_pool", "endpoints": [{"address": "127.0.0.1:8000"}]},
            "plugins": plugins,
            "requestHandler": {"parsers": refs},
            "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "queue-scorer"}]}]
        })
        .to_string()
    };
    let render = |parsers: &[&str]| {
        std::fs::write(&config, picker(parsers)).unwrap();
        let path = config.to_str().unwrap();
        let (ok, out, err) = cli(&["render", "--config", path, "--module-elsewhere"], None);
        assert!(ok, "{err}");
        out
    };
    let routed = |out: &str, p: &str| out.contains(&format!("- match: {{ path: \"{p}\" }}"));
    let out = render(&["openai-parser", "sglanghttp-parser", "anthropic-parser"]);
    for p in [
        "/v1/completions",
        "/generate",
        "/v1/messages",
        "/v1/messages/count_tokens",
    ] {
        assert!(routed(&out, p), "{p} not routed:\n{out}");
    }
    // Only what a configured parser claims: the OpenAI parser alone adds nothing.
    let out = render(&["openai-parser"]);
    assert!(routed(&out, "/v1/completions") && !routed(&out, "/generate"));
    assert!(routed(
        &render(&["vllmhttp-parser"]),
        "/inference/v1/generate"
    ));
    assert!(routed(
        &render(&["vertexai-parser"]),
        "/google.cloud.aiplatform.v1.PredictionService/ChatCompletions"
    ));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn objects_turn_gie_manifests_into_objectives_and_rewrites() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let manifests = format!("{root}/envoy-config/testdata/model-objects.yaml");
    let example = format!("{root}/envoy-config/picker.example.json");
    let (ok, out, err) = cli(
        &[
            "objects",
            "--pool",
            "chat-pool",
            "--into",
            &example,
            &manifests,
        ],
        None,
    );
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc["inferenceObjectives"],
        serde_json::json!([{"name": "interactive", "priority": 10}, {"name": "batch", "priority": -1}])
    );
    let names: Vec<&str> = doc["inferenceModelRewrites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["default-model", "support-bot-canary"],
        "oldest first"
    );
    assert!(doc["pool"].is_object(), "the picker it went into is kept");
    assert!(
        err.contains("skipped InferenceObjective 'elsewhere': of pool 'other-pool'"),
        "{err}"
    );
    assert!(err.contains("skipped ConfigMap 'unrelated'"), "{err}");
    // The result loads (the module's own checks ran), and the module takes it unchanged.
    let (ok, out, err) = cli(&["validate", "-"], Some(&doc.to_string()));
    assert!(ok && out.contains("valid"), "{out}{err}");
    // A rewrite the loader refuses is an error at its field.
    let bad = "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: r}\nspec:\n  rules:\n  - targets: [{modelRewrite: a, weight: 0}]\n";
    let (ok, _, err) = cli(&["objects", "-"], Some(bad));
    assert!(!ok);
    assert!(
        err.contains("inferenceModelRewrites[0].rules[0].targets[0].weight"),
        "{err}"
    );
}
