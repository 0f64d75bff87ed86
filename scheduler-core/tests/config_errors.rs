//! The configuration error table (`testdata/config_errors.json`): every validation error of
//! docs/SOURCES.md#gie-config-errors with its exact `path: message` text. The envoy-config CLI test reads the same
//! table, so the module and the CLI cannot drift apart.

use scheduler_core::{load, Registry};

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    config: serde_json::Value,
    error: String,
}

#[test]
fn every_config_error_names_its_field() {
    let table = include_str!("../testdata/config_errors.json");
    let cases: Vec<Case> = serde_json::from_str(table).unwrap();
    assert!(cases.len() >= 35);
    let registry = Registry::with_builtins();
    let mut failures = Vec::new();
    for c in &cases {
        let text = match &c.config {
            serde_json::Value::String(raw) => raw.clone(),
            v => v.to_string(),
        };
        match load(&text, &registry) {
            Ok(_) => failures.push(format!("{}: loaded, want error {:?}", c.name, c.error)),
            Err(e) if e.to_string() != c.error => {
                failures.push(format!("{}:\n   got  {}\n   want {}", c.name, e, c.error))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
