//! The committed JSON Schema (`envoy-config/picker.schema.json`) is the current output of
//! `envoy-config schema`, and every example configuration in the repository and every upstream
//! document the module loads (`scheduler-core/testdata/upstream/`) validates against it.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn validator() -> jsonschema::Validator {
    let schema = scheduler_core::config::schema::json_schema();
    jsonschema::draft202012::options()
        .should_validate_formats(false)
        .build(&schema)
        .unwrap()
}

#[test]
fn committed_schema_is_current() {
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("envoy-config/picker.schema.json")).unwrap(),
    )
    .unwrap();
    assert!(
        committed == scheduler_core::config::schema::json_schema(),
        "envoy-config/picker.schema.json is stale: cargo run -p envoy-config -- schema > envoy-config/picker.schema.json"
    );
}

#[test]
fn every_example_and_loadable_upstream_config_validates() {
    let v = validator();
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut check = |name: String, doc: serde_json::Value| {
        let errors: Vec<String> = v
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if !errors.is_empty() {
            failures.push(format!("{name}: {}", errors.join("; ")));
        }
        checked += 1;
    };
    for f in [
        "envoy-config/picker.example.json",
        "envoy-config/deploy/picker.json",
        "examples/out_of_tree_scorer/picker.json",
    ] {
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        check(f.into(), serde_json::from_str(&text).unwrap());
    }
    let registry = scheduler_core::Registry::with_builtins();
    for e in std::fs::read_dir(root().join("scheduler-core/testdata/upstream")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let doc = envoy_config::document::parse("upstream", &text).unwrap();
        if scheduler_core::load(&doc.to_string(), &registry).is_ok() {
            check(p.display().to_string(), doc);
        }
    }
    assert!(checked >= 25, "checked {checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // And the schema refuses what the loader refuses: an unknown top-level field.
    assert!(!v.is_valid(&serde_json::json!({"plugin": []})));
}
