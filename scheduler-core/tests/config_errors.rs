//! The configuration error table (`testdata/config_errors.json`): every validation error of
//! docs/SOURCES.md#gie-config-errors with its exact `path: message` text, and the problems that
//! load with a warning instead (unknown plugin parameters, `flowControl` without its gate). The envoy-config CLI test reads the same
//! table, so the module and the CLI cannot drift apart.

use scheduler_core::{load, Registry};

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
        match (load(&text, &registry), &c.error, &c.warning) {
            (Ok((_, report)), None, Some(w)) => {
                if !report.warnings.contains(w) {
                    failures.push(format!(
                        "{}: warnings {:?}, want {w:?}",
                        c.name, report.warnings
                    ));
                }
            }
            (Ok(_), want, _) => failures.push(format!("{}: loaded, want error {want:?}", c.name)),
            (Err(e), Some(want), _) if &e.to_string() != want => {
                failures.push(format!("{}:\n   got  {}\n   want {}", c.name, e, want))
            }
            (Err(e), None, _) => failures.push(format!("{}: {e}, want it to load", c.name)),
            (Err(_), Some(_), _) => {}
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
