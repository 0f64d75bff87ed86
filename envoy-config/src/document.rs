//! Reading a picker configuration as users have it: the module's JSON (a `pool` section plus
//! GIE's `EndpointPickerConfig` fields), or GIE's own YAML form, with or without `pool`.
//!
//! JSON is tried first, so a JSON syntax error is reported with its line and column; text that
//! is not JSON is read as YAML (a single document). A document without `pool` is a bare
//! `EndpointPickerConfig`: [`with_pool`] adds `pool.cluster` (and nothing else) for the commands
//! that need one, and [`crate::validate::validate`] checks only the GIE part.

use serde_json::Value;

/// Parses `text` (from `source`, for messages) as JSON, else as YAML.
///
/// # Errors
/// `source: <JSON error with line and column>` when the text looks like JSON (starts with `{`),
/// else `source: <YAML error with line and column>`.
pub fn parse(source: &str, text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => Ok(v),
        Err(e) if text.trim_start().starts_with('{') => Err(format!("{source}: invalid JSON: {e}")),
        Err(_) => {
            let v: Value = serde_yaml_ng::from_str(text)
                .map_err(|e| format!("{source}: invalid YAML: {e}"))?;
            if v.is_object() {
                Ok(v)
            } else {
                Err(format!(
                    "{source}: the configuration must be a JSON object or a YAML mapping"
                ))
            }
        }
    }
}

/// True when `doc` has the module's `pool` section.
pub fn has_pool(doc: &Value) -> bool {
    doc.get("pool").is_some()
}

/// `doc` with a `pool` section: unchanged when it has one, else `{"cluster": cluster}` added
/// (the endpoints then come from the Envoy cluster, `--xds-dir`, or a gateway's Service).
pub fn with_pool(mut doc: Value, cluster: &str) -> Value {
    if let Some(m) = doc.as_object_mut() {
        m.entry("pool")
            .or_insert_with(|| serde_json::json!({ "cluster": cluster }));
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_yaml_and_their_errors() {
        let j = parse("a.json", r#"{"plugins": []}"#).unwrap();
        assert!(j["plugins"].is_array());
        let y = parse(
            "a.yaml",
            "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n",
        )
        .unwrap();
        assert_eq!(y["plugins"][0]["type"], "queue-scorer");
        let e = parse("a.json", "{\n  \"plugins\": [,]\n}").unwrap_err();
        assert!(
            e.starts_with("a.json: invalid JSON: ") && e.contains("line 2 column"),
            "{e}"
        );
        let e = parse("a.yaml", "plugins:\n  - type: [\n").unwrap_err();
        assert!(
            e.starts_with("a.yaml: invalid YAML: ") && e.contains("line"),
            "{e}"
        );
        assert!(parse("a.yaml", "- 1\n").unwrap_err().contains("mapping"));
    }

    #[test]
    fn a_bare_config_gets_a_pool_cluster_only() {
        let doc = with_pool(serde_json::json!({"plugins": []}), "inference_pool");
        assert_eq!(
            doc["pool"],
            serde_json::json!({"cluster": "inference_pool"})
        );
        let kept = with_pool(serde_json::json!({"pool": {"cluster": "c"}}), "x");
        assert_eq!(kept["pool"]["cluster"], "c");
    }
}
