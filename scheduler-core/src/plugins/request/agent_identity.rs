//! `agent-identity` (llm-d, Alpha): gives every turn of a coding agent's session the same
//! flow-control flow. It looks for the agent's session header and offers its value as the
//! request's flow identity; flow control uses it as the fairness id when the request carries no
//! `x-llm-d-inference-fairness-id` header (an explicit fairness id always wins; no session
//! header either: `default-flow`).
//!
//! Headers, in the order checked (the first non-empty value wins), as llm-d-router's
//! `requestcontrol/requestheader/agentidentity` plugin defines them: the configured
//! `additionalSessionHeaders` first (lower-cased, order kept), then `x-claude-code-session-id`
//! (Claude Code), `x-session-affinity` (OpenCode), `session-id` (Codex) and `session_id`
//! (older Codex builds).
//!
//! Parameters: `additionalSessionHeaders` (list of header names, default empty).

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::model::request::InferenceRequest;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{FlowIdentity, Plugin, TypedName};

/// Plugin type name.
pub const TYPE: &str = "agent-identity";

/// The session headers coding agents send, checked after the configured ones.
pub const DEFAULT_SESSION_HEADERS: [&str; 4] = [
    "x-claude-code-session-id",
    "x-session-affinity",
    "session-id",
    "session_id",
];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    additional_session_headers: Vec<String>,
}

/// Builds an [`AgentIdentity`].
///
/// # Errors
/// Unknown fields, or `additionalSessionHeaders` that is not a list of strings.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let headers = p
        .additional_session_headers
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .chain(DEFAULT_SESSION_HEADERS.iter().map(|h| h.to_string()))
        .collect();
    Ok(Arc::new(AgentIdentity {
        typed_name: TypedName::new(TYPE, name),
        headers,
    }))
}

/// See the module docs.
pub struct AgentIdentity {
    typed_name: TypedName,
    /// Lower-case header names in priority order.
    headers: Vec<String>,
}

impl Plugin for AgentIdentity {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_flow_identity(&self) -> Option<&dyn FlowIdentity> {
        Some(self)
    }
}

impl FlowIdentity for AgentIdentity {
    fn flow_identity<'r>(&self, request: &'r InferenceRequest<'_>) -> Option<&'r str> {
        self.headers
            .iter()
            .find_map(|h| request.header(h).filter(|v| !v.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(params: Option<serde_json::Value>, headers: &[(&str, &str)]) -> Option<String> {
        let p = factory("a", params.as_ref(), &Handle::new(&[])).unwrap();
        let mut req = InferenceRequest::new("m", "hi");
        req.headers = headers.iter().map(|&(k, v)| (k.into(), v.into())).collect();
        p.as_flow_identity()
            .unwrap()
            .flow_identity(&req)
            .map(String::from)
    }

    /// Request headers, and the identity expected from them.
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);

    #[test]
    fn the_first_non_empty_session_header_names_the_flow() {
        let cases: &[Case<'_>] = &[
            (&[], None),
            (&[("x-claude-code-session-id", "cc-1")], Some("cc-1")),
            (&[("x-session-affinity", "oc-1")], Some("oc-1")),
            (&[("session-id", "codex-1")], Some("codex-1")),
            (&[("session_id", "codex-old")], Some("codex-old")),
            // Priority: Claude Code before OpenCode before Codex.
            (
                &[
                    ("session-id", "codex-1"),
                    ("x-claude-code-session-id", "cc-1"),
                ],
                Some("cc-1"),
            ),
            (&[("session_id", "old"), ("session-id", "new")], Some("new")),
            // An empty value does not count.
            (
                &[
                    ("x-claude-code-session-id", ""),
                    ("x-session-affinity", "oc-1"),
                ],
                Some("oc-1"),
            ),
            (&[("x-other", "nope")], None),
        ];
        for (headers, want) in cases {
            assert_eq!(identity(None, headers).as_deref(), *want, "{headers:?}");
        }
    }

    #[test]
    fn additional_headers_come_first_and_are_lower_cased() {
        let params = json!({"additionalSessionHeaders": ["X-My-Agent-Session", "x-another"]});
        let both = [
            ("x-claude-code-session-id", "cc"),
            ("x-my-agent-session", "mine"),
        ];
        assert_eq!(
            identity(Some(params.clone()), &both).as_deref(),
            Some("mine")
        );
        assert_eq!(
            identity(Some(params), &[("x-another", "2"), ("session-id", "c")]).as_deref(),
            Some("2")
        );
    }

    #[test]
    fn bad_parameters_are_refused() {
        for bad in [
            json!({"additionalSessionHeaders": "x-one"}),
            json!({"additionalSessionHeaders": [1]}),
        ] {
            assert!(
                factory("a", Some(&bad), &Handle::new(&[])).is_err(),
                "{bad}"
            );
        }
    }
}
