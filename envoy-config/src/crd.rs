//! Offline manifest validation against CustomResourceDefinition schemas: every document of a
//! manifest is checked against the `openAPIV3Schema` of the CRD version that serves its
//! `apiVersion` and `kind`, with the `jsonschema` crate.
//!
//! Stricter than the API server's structural pruning, like `kubectl apply` with server-side
//! field validation: an object schema with `properties` and neither `additionalProperties` nor
//! `x-kubernetes-preserve-unknown-fields` refuses unknown fields, so a misspelt field is an
//! error instead of being dropped silently. `nullable` is honoured. Not covered:
//! `x-kubernetes-validations` (CEL rules) and `format` (Kubernetes formats such as
//! `int-or-string` are not JSON-Schema formats).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// Validators by `(apiVersion, kind)`.
#[derive(Default)]
pub struct CrdSet {
    by_kind: HashMap<(String, String), jsonschema::Validator>,
}

impl std::fmt::Debug for CrdSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrdSet")
            .field("kinds", &self.by_kind.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Every YAML document of `text` as JSON (empty documents skipped).
///
/// # Errors
/// The YAML parser's message.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(de).map_err(|e| e.to_string())?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Makes an `openAPIV3Schema` strict and JSON-Schema-compatible (see the module docs).
pub fn strict(schema: &mut Value) {
    match schema {
        Value::Object(m) => {
            let preserve = m
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if m.contains_key("properties") && !m.contains_key("additionalProperties") && !preserve
            {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            if m.get("nullable").and_then(Value::as_bool) == Some(true) {
                if let Some(Value::String(t)) = m.get("type").cloned() {
                    m.insert("type".into(), serde_json::json!([t, "null"]));
                }
            }
            for v in m.values_mut() {
                strict(v);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strict),
        _ => {}
    }
}

impl CrdSet {
    /// Adds every CRD in a YAML text (other documents are ignored), one validator per served
    /// version.
    ///
    /// # Errors
    /// A YAML error, or a schema the library cannot compile, with the CRD's name.
    pub fn add_yaml(&mut self, text: &str) -> Result<(), String> {
        for crd in documents(text)? {
            if crd.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
                continue;
            }
            let spec = &crd["spec"];
            let group = spec["group"].as_str().unwrap_or_default();
            let kind = spec["names"]["kind"].as_str().unwrap_or_default();
            for version in spec["versions"].as_array().into_iter().flatten() {
                let name = version["name"].as_str().unwrap_or_default();
                let mut schema = version["schema"]["openAPIV3Schema"].clone();
                if schema.is_null() {
                    continue;
                }
                // The API server owns these three; some CRDs (Istio's) leave them out.
                if let Some(props) = schema
                    .as_object_mut()
                    .and_then(|m| m.get_mut("properties"))
                    .and_then(Value::as_object_mut)
                {
                    for (k, t) in [
                        ("apiVersion", "string"),
                        ("kind", "string"),
                        ("metadata", "object"),
                    ] {
                        props
                            .entry(k)
                            .or_insert_with(|| serde_json::json!({"type": t}));
                    }
                }
                strict(&mut schema);
                let validator = jsonschema::draft4::options()
                    .should_validate_formats(false)
                    .build(&schema)
                    .map_err(|e| format!("{kind}.{group}/{name}: {e}"))?;
                let api_version = if group.is_empty() {
                    name.to_string()
                } else {
                    format!("{group}/{name}")
                };
                self.by_kind
                    .insert((api_version, kind.to_string()), validator);
            }
        }
        Ok(())
    }

    /// Loads every `.yaml` file under `dir` (recursively).
    ///
    /// # Errors
    /// An unreadable file or [`Self::add_yaml`]'s errors, with the path.
    pub fn load_dir(dir: &Path) -> Result<CrdSet, String> {
        let mut set = CrdSet::default();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "yaml") {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    set.add_yaml(&text)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
        }
        Ok(set)
    }

    /// Number of `(apiVersion, kind)` pairs known.
    pub fn len(&self) -> usize {
        self.by_kind.len()
    }

    /// True when no CRD was loaded.
    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }

    /// Validates one manifest document.
    ///
    /// # Errors
    /// Every violation as `Kind/name: /instance/path: message`, or that no CRD serves the
    /// document's `apiVersion` and `kind`.
    pub fn validate(&self, doc: &Value) -> Result<(), Vec<String>> {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        let kind = doc["kind"].as_str().unwrap_or_default();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let Some(validator) = self
            .by_kind
            .get(&(api_version.to_string(), kind.to_string()))
        else {
            return Err(vec![format!(
                "{kind}/{name}: no schema for apiVersion {api_version} kind {kind}"
            )]);
        };
        let errors: Vec<String> = validator
            .iter_errors(doc)
            .map(|e| format!("{kind}/{name}: {}: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
spec:
  group: example.dev
  names: {kind: Widget}
  versions:
  - name: v1
    schema:
      openAPIV3Schema:
        type: object
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              note: {type: string, nullable: true}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

    fn set() -> CrdSet {
        let mut s = CrdSet::default();
        s.add_yaml(CRD).unwrap();
        s
    }

    fn doc(spec: &str) -> Value {
        documents(&format!(
            "apiVersion: example.dev/v1\nkind: Widget\nmetadata: {{name: w}}\nspec: {spec}\n"
        ))
        .unwrap()
        .remove(0)
    }

    #[test]
    fn valid_document_passes_and_nullable_is_honoured() {
        set()
            .validate(&doc("{size: 2, note: null, extra: {anything: [1]}}"))
            .unwrap();
    }

    #[test]
    fn unknown_fields_wrong_types_and_missing_fields_fail_with_paths() {
        let s = set();
        let e = s.validate(&doc("{size: 2, colour: red}")).unwrap_err();
        assert!(e[0].contains("Widget/w: /spec"), "{e:?}");
        let e = s.validate(&doc("{size: 0}")).unwrap_err();
        assert!(e[0].contains("/spec/size"), "{e:?}");
        assert!(s.validate(&doc("{note: x}")).is_err());
        let mut other = doc("{size: 1}");
        other["apiVersion"] = "example.dev/v2".into();
        assert!(s.validate(&other).unwrap_err()[0].contains("no schema"));
    }
}
