//! `header-label-affinity-scorer` (llm-d, Alpha): 1 for endpoints whose label `labelKey` equals
//! the request header `headerName`, 0 for the others and for every endpoint when the header is
//! absent or empty (llm-d-router `scorer/headerlabelaffinity`). With the rollout screener's
//! `prefer` selectors it keeps a disaggregated request inside one slice (e.g. one NVLink
//! domain) while load scorers may still move it. Category: affinity.
//!
//! Parameters: `headerName` (required; matched lower-case), `labelKey` (required).

use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Plugin, Scorer, ScorerCategory, TypedName};

/// Plugin type name.
pub const TYPE: &str = "header-label-affinity-scorer";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    header_name: String,
    label_key: String,
}

/// Builds a [`HeaderLabelAffinity`].
///
/// # Errors
/// Unknown fields; `headerName` or `labelKey` missing.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    for (field, v) in [("headerName", &p.header_name), ("labelKey", &p.label_key)] {
        if v.is_empty() {
            return Err(ConfigError::invalid(FieldPath::key(field), "is required"));
        }
    }
    Ok(Arc::new(HeaderLabelAffinity {
        typed_name: TypedName::new(TYPE, name),
        header: p.header_name.to_ascii_lowercase(),
        label: p.label_key,
    }))
}

/// See the module docs.
pub struct HeaderLabelAffinity {
    typed_name: TypedName,
    header: String,
    label: String,
}

impl Plugin for HeaderLabelAffinity {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
}

impl Scorer for HeaderLabelAffinity {
    fn category(&self) -> ScorerCategory {
        ScorerCategory::Affinity
    }
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let Some(want) = cx.request.header(&self.header).filter(|v| !v.is_empty()) else {
            return;
        };
        for (&i, s) in candidates.iter().zip(scores.iter_mut()) {
            if cx.endpoints.get(i).and_then(|e| e.label(&self.label)) == Some(want) {
                *s = 1.0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::Endpoint;
    use crate::model::request::InferenceRequest;
    use crate::plugin::CycleState;
    use alloc::vec;

    #[test]
    fn matching_label_scores_one() {
        let p = factory(
            TYPE,
            Some(&serde_json::json!({"headerName": "X-Disagg-Slice", "labelKey": "slice"})),
            &Handle::new(&[]),
        )
        .unwrap();
        let eps = [
            Endpoint::new("a:1").with_label("slice", "s1"),
            Endpoint::new("b:1").with_label("slice", "s2"),
            Endpoint::new("c:1"),
        ];
        let score = |header: Option<&str>| {
            let mut req = InferenceRequest::new("m", "");
            if let Some(h) = header {
                req.headers.push(("x-disagg-slice".into(), h.into()));
            }
            let state = CycleState::new();
            let cx = CycleContext {
                request: &req,
                endpoints: &eps,
                state: &state,
                now_ms: 0,
                peer: None,
            };
            let mut s = vec![0.0; 3];
            p.as_scorer().unwrap().score(&cx, &[0, 1, 2], &mut s);
            s
        };
        assert_eq!(score(Some("s2")), vec![0.0, 1.0, 0.0]);
        assert_eq!(score(None), vec![0.0, 0.0, 0.0]);
        assert_eq!(score(Some("")), vec![0.0, 0.0, 0.0]);
        assert!(factory(
            TYPE,
            Some(&serde_json::json!({"headerName": "h"})),
            &Handle::new(&[])
        )
        .is_err());
    }
}
