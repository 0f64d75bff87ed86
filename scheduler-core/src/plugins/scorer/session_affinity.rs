//! `session-affinity-scorer` (llm-d): keeps a session on the endpoint that served it before.
//!
//! The response carries `x-session-token` = base64(`ip:port` of the endpoint that served). A
//! request bearing that header scores 1.0 on that endpoint and 0 elsewhere (docs/SOURCES.md#gie-scorers).
//! A header that does not decode is ignored (all 0). Category: Affinity. Parameters: none.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use base64::Engine as _;

use crate::error::ConfigError;
use crate::model::response::ResponseInfo;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleContext, Plugin, RequestState, ResponseHeader, Scorer, ScorerCategory, TypedName,
};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "session-affinity-scorer";

/// Header carrying the session token, request and response.
pub const SESSION_TOKEN_HEADER: &str = "x-session-token";

/// Builds a [`SessionAffinityScorer`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(SessionAffinityScorer {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct SessionAffinityScorer {
    typed_name: TypedName,
}

impl Plugin for SessionAffinityScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
    fn as_response_header(&self) -> Option<&dyn ResponseHeader> {
        Some(self)
    }
}

impl Scorer for SessionAffinityScorer {
    fn category(&self) -> ScorerCategory {
        ScorerCategory::Affinity
    }

    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let Some(token) = cx.request.header(SESSION_TOKEN_HEADER) else {
            return;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
            return;
        };
        let Ok(address) = core::str::from_utf8(&decoded) else {
            return;
        };
        for (s, &i) in scores.iter_mut().zip(candidates) {
            if cx.endpoint(i).is_some_and(|e| e.address == address) {
                *s = 1.0;
            }
        }
    }
}

impl ResponseHeader for SessionAffinityScorer {
    fn response_header(
        &self,
        _: &mut RequestState,
        response: &ResponseInfo<'_>,
        headers_out: &mut Vec<(String, String)>,
    ) {
        if let Some(served) = response.served_endpoint {
            let token = base64::engine::general_purpose::STANDARD.encode(served);
            headers_out.push((SESSION_TOKEN_HEADER.into(), token));
        }
    }
}
