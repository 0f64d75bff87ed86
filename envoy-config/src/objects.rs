//! GIE's per-model Kubernetes objects as picker configuration: InferenceObjective (a priority
//! per objective name, chosen by the `x-llm-d-inference-objective` header or its older name
//! `x-gateway-inference-objective`) and
//! InferenceModelRewrite (weighted model rewrites). Upstream's EPP watches them in the cluster;
//! the picker runs inside Envoy without an API-server client, so their manifests are turned into
//! the configuration's `inferenceObjectives` and `inferenceModelRewrites` instead.
//!
//! Rewrites keep GIE's precedence order: by `metadata.creationTimestamp` where every rewrite has
//! one (oldest first), else in the order the manifests list them.

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The objects found in some manifests.
#[derive(Debug, Default, PartialEq)]
pub struct Objects {
    /// `inferenceObjectives` entries: `{"name", "priority"}`.
    pub objectives: Vec<Value>,
    /// `inferenceModelRewrites` entries: `{"name", "poolRef", "rules"}`, oldest first.
    pub rewrites: Vec<Value>,
    /// Documents skipped: (kind or `?`, name or `?`, why).
    pub skipped: Vec<(String, String, String)>,
    /// Each rewrite's `metadata.creationTimestamp`, in the order read.
    created: Vec<Option<String>>,
}

const GROUP: &str = "inference.networking.x-k8s.io/";

/// Reads every document of `text` (YAML, several documents separated by `---`, or JSON) from
/// `source`. Objects of another pool than `pool` (when given, by `spec.poolRef.name`) and
/// documents of other kinds are skipped and listed.
///
/// # Errors
/// `source: …` for text that is not YAML, or an InferenceObjective / InferenceModelRewrite
/// without `metadata.name` (or, for a rewrite, without `spec.rules`).
pub fn read(
    source: &str,
    text: &str,
    pool: Option<&str>,
    into: &mut Objects,
) -> Result<(), String> {
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value =
            Value::deserialize(doc).map_err(|e| format!("{source}: document {}: {e}", i + 1))?;
        if value.is_null() {
            continue; // an empty document (a trailing `---`)
        }
        let kind = value["kind"].as_str().unwrap_or("?").to_string();
        let name = value["metadata"]["name"].as_str().map(str::to_string);
        let group_ok = value["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with(GROUP) || v.starts_with("inference.networking.k8s.io/"));
        if !group_ok
            || !matches!(
                kind.as_str(),
                "InferenceObjective" | "InferenceModelRewrite"
            )
        {
            into.skipped.push((
                kind,
                name.unwrap_or_else(|| "?".into()),
                "not an InferenceObjective or InferenceModelRewrite".into(),
            ));
            continue;
        }
        let Some(name) = name else {
            return Err(format!(
                "{source}: document {}: {kind} without metadata.name",
                i + 1
            ));
        };
        let spec = &value["spec"];
        if let (Some(want), Some(have)) = (pool, spec["poolRef"]["name"].as_str()) {
            if want != have {
                into.skipped.push((kind, name, format!("of pool '{have}'")));
                continue;
            }
        }
        if kind == "InferenceObjective" {
            into.objectives.push(json!({
                "name": name,
                "priority": spec["priority"].as_i64().unwrap_or(0),
            }));
            continue;
        }
        let Some(rules) = spec.get("rules").filter(|r| r.is_array()) else {
            return Err(format!(
                "{source}: InferenceModelRewrite '{name}' has no spec.rules"
            ));
        };
        let mut entry = Map::new();
        entry.insert("name".into(), Value::String(name));
        if let Some(p) = spec.get("poolRef") {
            entry.insert("poolRef".into(), p.clone());
        }
        entry.insert("rules".into(), rules.clone());
        into.created.push(
            value["metadata"]["creationTimestamp"]
                .as_str()
                .map(str::to_string),
        );
        into.rewrites.push(Value::Object(entry));
    }
    Ok(())
}

/// Reads every manifest of `files` ((source, text) pairs) into one set of objects, rewrites in
/// GIE's precedence order: oldest first when every rewrite has a creation time (RFC 3339 in
/// UTC, as Kubernetes writes it, sorts as text), else as listed.
///
/// # Errors
/// As [`read`].
pub fn read_all(files: &[(String, String)], pool: Option<&str>) -> Result<Objects, String> {
    let mut objects = Objects::default();
    for (source, text) in files {
        read(source, text, pool, &mut objects)?;
    }
    if objects.created.iter().all(Option::is_some) {
        let mut pairs: Vec<(Option<String>, Value)> = objects
            .created
            .drain(..)
            .zip(objects.rewrites.drain(..))
            .collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0)); // stable: equal times keep their order
        for (created, rewrite) in pairs {
            objects.created.push(created);
            objects.rewrites.push(rewrite);
        }
    }
    Ok(objects)
}

/// `picker` with its `inferenceObjectives` and `inferenceModelRewrites` replaced by `objects`'
/// (a field with nothing to put in it is left as it was).
pub fn merge_into(mut picker: Value, objects: &Objects) -> Value {
    if let Some(map) = picker.as_object_mut() {
        if !objects.objectives.is_empty() {
            map.insert(
                "inferenceObjectives".into(),
                Value::Array(objects.objectives.clone()),
            );
        }
        if !objects.rewrites.is_empty() {
            map.insert(
                "inferenceModelRewrites".into(),
                Value::Array(objects.rewrites.clone()),
            );
        }
    }
    picker
}
