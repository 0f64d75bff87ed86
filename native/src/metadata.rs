//! The picker's decision as request dynamic metadata, in the names llm-d-router's EPP uses for
//! it (its `metadata` package): namespace `envoy.lb`, the destination under
//! `x-gateway-destination-endpoint` (the header's value) and, with `pool.emitEndpointScores`
//! (the EPP's `--emit-endpoint-scores`), `x-gateway-destination-endpoint-scores`: a struct of
//! `ip:port` → the primary profile's total weighted score, for every endpoint it scored.
//!
//! Envoy's dynamic-module ABI takes a nested value as a serialized `google.protobuf.Struct`,
//! which it parses and merges into the namespace; `prost-types` encodes it. A cluster whose
//! `override_host` reads the destination from this metadata (Istio's InferencePool clusters)
//! is fed by it, and access logs read both keys with `%DYNAMIC_METADATA(envoy.lb:…)%`.

use prost::Message;
use prost_types::{value::Kind, Struct, Value};

/// The dynamic-metadata namespace Envoy's load balancing reads (`envoy.lb`).
pub const NAMESPACE: &str = "envoy.lb";

/// Key of the destination: the same name as the header whose value it carries (an `ip:port`,
/// or an ordered comma list whose first entry is the primary endpoint), as upstream names both.
pub use endpoint_picker_filter::picker::headers::DESTINATION;

/// Key of the scores struct (`ip:port` → total weighted score).
pub const SCORES: &str = "x-gateway-destination-endpoint-scores";

/// The `google.protobuf.Struct` (wire format) holding `destination` and `scores` under their
/// keys, for Envoy to merge into [`NAMESPACE`].
pub fn decision(destination: &str, scores: &[(String, f64)]) -> Vec<u8> {
    let number = |v: f64| Value {
        kind: Some(Kind::NumberValue(v)),
    };
    let scores = Struct {
        fields: scores
            .iter()
            .map(|(address, score)| (address.clone(), number(*score)))
            .collect(),
    };
    let top = Struct {
        fields: [
            (
                DESTINATION.to_string(),
                Value {
                    kind: Some(Kind::StringValue(destination.to_string())),
                },
            ),
            (
                SCORES.to_string(),
                Value {
                    kind: Some(Kind::StructValue(scores)),
                },
            ),
        ]
        .into_iter()
        .collect(),
    };
    top.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_struct_decodes_to_the_destination_and_every_score() {
        let scores = vec![
            ("10.0.0.1:8000".to_string(), 1.5),
            ("10.0.0.2:8000".to_string(), 0.25),
        ];
        let bytes = decision("10.0.0.1:8000", &scores);
        let back = Struct::decode(bytes.as_slice()).expect("a Struct");
        assert_eq!(
            back.fields.get(DESTINATION).and_then(|v| v.kind.clone()),
            Some(Kind::StringValue("10.0.0.1:8000".into()))
        );
        let Some(Kind::StructValue(s)) = back.fields.get(SCORES).and_then(|v| v.kind.clone())
        else {
            panic!("no scores struct in {back:?}");
        };
        assert_eq!(s.fields.len(), 2);
        assert_eq!(
            s.fields.get("10.0.0.2:8000").and_then(|v| v.kind.clone()),
            Some(Kind::NumberValue(0.25))
        );
    }
}
