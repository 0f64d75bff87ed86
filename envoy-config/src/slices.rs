//! `pool.endpoints` from Kubernetes EndpointSlices: the ready addresses of a Service's pods, as
//! `kubectl get endpointslices -l kubernetes.io/service-name=<svc> -o json` prints them, so a
//! scale-up or a rollout becomes a re-render and `kubectl apply` of the filter configuration
//! (which every gateway delivers without a proxy restart).
//!
//! Rules: an endpoint counts unless `conditions.ready` is `false` (absent means ready, as the
//! EndpointSlice API defines); every address of a counted endpoint becomes `ip:port`, with the
//! port named `port_name` (or the slice's only port). Members that stay keep their labels and
//! `metricsPort`; new members copy the labels and `metricsPort` of the first existing member
//! (the pool is one model on one engine type). Order: sorted by address, so the output does not
//! change when the API server reorders slices.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Deserialize)]
struct SliceList {
    #[serde(default)]
    items: Vec<Slice>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Slice {
    #[serde(default)]
    address_type: String,
    #[serde(default)]
    endpoints: Vec<SliceEndpoint>,
    #[serde(default)]
    ports: Vec<SlicePort>,
}

#[derive(Deserialize)]
struct SliceEndpoint {
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    conditions: Conditions,
}

#[derive(Deserialize, Default)]
struct Conditions {
    ready: Option<bool>,
}

#[derive(Deserialize)]
struct SlicePort {
    name: Option<String>,
    port: Option<u16>,
}

/// Replaces `pool.endpoints` of `picker` with the ready endpoints of `slices` (an
/// `EndpointSliceList` or a `List` of EndpointSlices, JSON) on the port named `port_name`.
///
/// # Errors
/// Unparsable slices, a picker JSON without a `pool` object, a slice with several ports and none
/// named `port_name`, or no ready endpoint at all (an empty pool is refused rather than
/// published).
pub fn pool_from_slices(
    picker: &Value,
    slices: &str,
    port_name: Option<&str>,
) -> Result<Value, String> {
    let list: SliceList =
        serde_json::from_str(slices).map_err(|e| format!("EndpointSlice list: {e}"))?;
    let mut picker = picker.clone();
    let pool = picker
        .get_mut("pool")
        .and_then(Value::as_object_mut)
        .ok_or("the picker JSON has no pool object")?;
    let existing: Vec<Map<String, Value>> = pool
        .get("endpoints")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|e| e.as_object().cloned()).collect())
        .unwrap_or_default();
    let mut template = existing.first().cloned().unwrap_or_default();
    template.remove("address");

    let mut members = BTreeMap::new();
    for slice in &list.items {
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            continue; // FQDN slices name no pod
        }
        let port = match port_name {
            Some(name) => slice.ports.iter().find(|p| p.name.as_deref() == Some(name)),
            None if slice.ports.len() == 1 => slice.ports.first(),
            None => {
                return Err(format!(
                    "the slice has {} ports; name one with --port-name",
                    slice.ports.len()
                ))
            }
        };
        let Some(port) = port.and_then(|p| p.port) else {
            continue;
        };
        for e in slice
            .endpoints
            .iter()
            .filter(|e| e.conditions.ready != Some(false))
        {
            for ip in &e.addresses {
                let address = if slice.address_type == "IPv6" {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                };
                let mut member = existing
                    .iter()
                    .find(|m| m.get("address").and_then(Value::as_str) == Some(address.as_str()))
                    .cloned()
                    .unwrap_or_else(|| template.clone());
                member.insert("address".into(), Value::String(address.clone()));
                members.insert(address, Value::Object(member));
            }
        }
    }
    if members.is_empty() {
        return Err("no ready endpoint in the EndpointSlices".into());
    }
    pool.insert(
        "endpoints".into(),
        Value::Array(members.into_values().collect()),
    );
    Ok(picker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SLICES: &str = r#"{"apiVersion": "v1", "kind": "List", "items": [
      {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
       "metadata": {"name": "vllm-abc", "labels": {"kubernetes.io/service-name": "vllm"}},
       "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
       "endpoints": [
         {"addresses": ["10.244.2.12"], "conditions": {"ready": true, "serving": true, "terminating": false}},
         {"addresses": ["10.244.4.14"], "conditions": {"ready": true}},
         {"addresses": ["10.244.5.15"], "conditions": {"ready": false, "serving": false}},
         {"addresses": ["10.244.6.16"]}]}]}"#;

    fn picker() -> Value {
        json!({"pool": {"cluster": "c", "endpoints": [
            {"address": "10.244.1.11:8000", "labels": {"engine-type": "vllm"}, "metricsPort": 9000},
            {"address": "10.244.2.12:8000", "labels": {"engine-type": "vllm", "zone": "b"}}]},
            "plugins": [{"type": "queue-scorer"}]})
    }

    #[test]
    fn ready_endpoints_replace_the_pool_and_staying_members_keep_their_fields() {
        let out = pool_from_slices(&picker(), SLICES, Some("http")).unwrap();
        let endpoints = out["pool"]["endpoints"].as_array().unwrap();
        let addresses: Vec<&str> = endpoints
            .iter()
            .map(|e| e["address"].as_str().unwrap())
            .collect();
        assert_eq!(
            addresses,
            ["10.244.2.12:8000", "10.244.4.14:8000", "10.244.6.16:8000"]
        );
        assert_eq!(
            endpoints[0]["labels"]["zone"], "b",
            "staying member keeps its labels"
        );
        assert_eq!(
            endpoints[1]["labels"],
            json!({"engine-type": "vllm"}),
            "new member: template"
        );
        assert_eq!(endpoints[1]["metricsPort"], 9000);
        assert_eq!(out["plugins"], picker()["plugins"], "the rest is untouched");
        crate::validate::validate(&out.to_string()).unwrap();
    }

    #[test]
    fn no_ready_endpoint_and_ambiguous_ports_are_errors() {
        let none = r#"{"items": [{"addressType": "IPv4", "ports": [{"name": "http", "port": 8000}],
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": false}}]}]}"#;
        assert!(pool_from_slices(&picker(), none, None)
            .unwrap_err()
            .contains("no ready"));
        let two = r#"{"items": [{"addressType": "IPv4", "ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}],
            "endpoints": [{"addresses": ["10.0.0.1"]}]}]}"#;
        assert!(pool_from_slices(&picker(), two, None)
            .unwrap_err()
            .contains("--port-name"));
        assert!(pool_from_slices(&json!({}), SLICES, None).is_err());
        assert!(pool_from_slices(&picker(), "not json", None).is_err());
    }
}
