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

/// `doc` ready for the commands that need a pool: unchanged when it has a `pool` section, else
/// `pool.cluster: cluster` plus, for a config using llm-d's `file-discovery`, that file's
/// endpoints as `pool.endpoints`.
///
/// # Errors
/// As [`file_discovery_endpoints`].
pub fn with_pool_and_discovery(doc: Value, cluster: &str) -> Result<Value, String> {
    let endpoints = if has_pool(&doc) {
        None
    } else {
        file_discovery_endpoints(&doc)?
    };
    let mut doc = with_pool(doc, cluster);
    if let (Some(eps), Some(pool)) = (endpoints, doc.get_mut("pool")) {
        pool["endpoints"] = Value::Array(eps);
    }
    Ok(doc)
}

/// The endpoints of the `file-discovery` plugin `doc`'s `dataLayer.discovery` names (llm-d's
/// discovery without Kubernetes), read from its `path` as `pool.endpoints` entries
/// (`{"address": "ip:port", "labels": {...}}`); `None` when `doc` uses no file discovery.
///
/// # Errors
/// The file cannot be read or parsed, or an entry lacks `address` or `port`.
pub fn file_discovery_endpoints(doc: &Value) -> Result<Option<Vec<Value>>, String> {
    let Some(name) = doc
        .pointer("/dataLayer/discovery/pluginRef")
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    let plugin = doc.get("plugins").and_then(Value::as_array).and_then(|ps| {
        ps.iter().find(|p| {
            p.get("name")
                .and_then(Value::as_str)
                .or_else(|| p.get("type").and_then(Value::as_str))
                == Some(name)
        })
    });
    let Some(plugin) =
        plugin.filter(|p| p.get("type").and_then(Value::as_str) == Some("file-discovery"))
    else {
        return Ok(None);
    };
    let Some(path) = plugin.pointer("/parameters/path").and_then(Value::as_str) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("file-discovery '{name}': {path}: {e}"))?;
    let file = parse(path, &text)?;
    let entries = file
        .get("endpoints")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{path}: no 'endpoints' list"))?;
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let field = |k: &str| match e.get(k) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                _ => Err(format!("{path}: endpoints[{i}] has no '{k}'")),
            };
            let (address, port) = (field("address")?, field("port")?);
            let mut out = serde_json::json!({ "address": format!("{address}:{port}") });
            if let Some(l) = e.get("labels").filter(|l| l.is_object()) {
                out["labels"] = l.clone();
            }
            Ok(out)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
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
    fn file_discovery_endpoints_become_pool_endpoints() {
        let tmp = tempfile::Builder::new().prefix("fd-").tempdir().unwrap();
        let dir = tmp.path();
        let file = dir.join("endpoints.yaml");
        std::fs::write(
            &file,
            "endpoints:\n- name: a\n  address: 10.0.0.1\n  port: \"8000\"\n  labels: {llm-d.ai/role: decode}\n- name: b\n  address: 10.0.0.2\n  port: 8001\n",
        )
        .unwrap();
        let doc = serde_json::json!({
            "plugins": [{"name": "disc", "type": "file-discovery", "parameters": {"path": file}}],
            "dataLayer": {"discovery": {"pluginRef": "disc"}}
        });
        let eps = file_discovery_endpoints(&doc).unwrap().unwrap();
        assert_eq!(
            serde_json::Value::Array(eps),
            serde_json::json!([
                {"address": "10.0.0.1:8000", "labels": {"llm-d.ai/role": "decode"}},
                {"address": "10.0.0.2:8001"}
            ])
        );
        assert_eq!(
            file_discovery_endpoints(&serde_json::json!({"plugins": []})).unwrap(),
            None
        );
        std::fs::write(&file, "endpoints:\n- name: a\n  port: 1\n").unwrap();
        assert!(file_discovery_endpoints(&doc)
            .unwrap_err()
            .contains("address"));
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
