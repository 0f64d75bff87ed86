//! `context-length-aware` (llm-d): prefers endpoints whose declared context-length range fits the
//! request, and optionally keeps only those (llm-d-router
//! `scheduling/scorer/contextlengthaware/context_length_aware.go`).
//!
//! Each endpoint may carry a label (default `llm-d.ai/context-length-range`) of the form
//! `min-max` in tokens. The request's context length is its prompt length estimated at 4
//! characters per token, media parts counted as the tokens they stand for (GIE's estimate;
//! llm-d's tokenizer-free `estimate` backend; `crate::parse::media_tokens`). Scores:
//! - in range: `0.3 + 0.7 · (0.7 · 1/(1 + width/10000) + 0.3 · (max − length)/width)` — above
//!   0.3, higher for tighter ranges and for more headroom; a zero-width range that matches
//!   scores 1;
//! - out of range: `0.3 / (1 + distance/1000)`, the nearer range scoring higher;
//! - no label: 0.5; a label that does not parse: 0.
//!
//! With `enableFiltering`, endpoints whose range does not contain the length are also removed
//! (unlabelled ones stay; unparsable ones go). Parameters: `label`, `enableFiltering` (default
//! false). Category: Affinity.

use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::model::endpoint::Endpoint;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Filter, Plugin, Scorer, ScorerCategory, TypedName};
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "context-length-aware";
/// The default range label.
pub const DEFAULT_LABEL: &str = "llm-d.ai/context-length-range";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    label: String,
    enable_filtering: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            label: DEFAULT_LABEL.into(),
            enable_filtering: false,
        }
    }
}

/// Builds a [`ContextLengthAware`] scorer (and filter with `enableFiltering`).
///
/// # Errors
/// Unknown fields.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    Ok(Arc::new(ContextLengthAware {
        typed_name: TypedName::new(TYPE, name),
        label: if p.label.is_empty() {
            DEFAULT_LABEL.into()
        } else {
            p.label
        },
        filtering: p.enable_filtering,
    }))
}

/// See the module docs.
pub struct ContextLengthAware {
    typed_name: TypedName,
    label: String,
    filtering: bool,
}

/// `(min, max)` of a `min-max` label.
fn parse_range(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('-')?;
    let (min, max) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (min <= max).then_some((min, max))
}

/// The score of an endpoint with range `(min, max)` for `length` tokens (module docs).
pub fn range_score(length: u64, (min, max): (u64, u64)) -> f64 {
    const FALLBACK: f64 = 0.3;
    if (min..=max).contains(&length) {
        let width = max - min;
        if width == 0 {
            return 1.0;
        }
        let width_score = 1.0 / (1.0 + width as f64 / 10_000.0);
        let position = (max - length) as f64 / width as f64;
        FALLBACK + (0.7 * width_score + 0.3 * position) * (1.0 - FALLBACK)
    } else {
        let distance = if length > max {
            length - max
        } else {
            min - length
        };
        FALLBACK / (1.0 + distance as f64 / 1000.0)
    }
}

impl ContextLengthAware {
    fn range(&self, e: &Endpoint) -> Option<Option<(u64, u64)>> {
        e.label(&self.label).map(parse_range)
    }
}

fn tokens(cx: &CycleContext<'_>) -> u64 {
    cx.request.estimated_prompt_tokens()
}

impl Plugin for ContextLengthAware {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn Filter> {
        self.filtering.then_some(self as &dyn Filter)
    }
}

impl Scorer for ContextLengthAware {
    fn category(&self) -> ScorerCategory {
        ScorerCategory::Affinity
    }

    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let length = tokens(cx);
        for (s, &i) in scores.iter_mut().zip(candidates) {
            *s = match cx.endpoint(i).and_then(|e| self.range(e)) {
                None => 0.5,
                Some(None) => 0.0,
                Some(Some(r)) => range_score(length, r),
            };
        }
    }
}

impl Filter for ContextLengthAware {
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        _: &mut dyn Rng,
    ) {
        let length = tokens(cx);
        for (k, &i) in keep.iter_mut().zip(candidates) {
            *k = match cx.endpoint(i).and_then(|e| self.range(e)) {
                None => true,
                Some(None) => false,
                Some(Some((min, max))) => (min..=max).contains(&length),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::request::InferenceRequest;
    use crate::plugin::CycleState;
    use crate::plugins::producer::approx_prefix_cache::CHARS_PER_TOKEN;
    use crate::rng::SplitMix64;
    use alloc::vec::Vec;

    #[test]
    fn upstream_score_shape() {
        // In range: above 0.3; the tighter range wins.
        let tight = range_score(1000, (0, 2048));
        let wide = range_score(1000, (0, 32768));
        assert!(tight > wide && wide > 0.3, "{tight} {wide}");
        assert_eq!(range_score(5, (5, 5)), 1.0);
        // Out of range: below 0.3; the nearer range wins.
        let near = range_score(9000, (0, 8192));
        let far = range_score(9000, (0, 2048));
        assert!(0.3 > near && near > far, "{near} {far}");
        assert!((range_score(3000, (0, 2000)) - 0.15).abs() < 1e-12);
    }

    fn run(enable_filtering: bool, prompt_tokens: usize) -> (Vec<f64>, Vec<bool>) {
        let eps = [
            Endpoint::new("10.0.0.1:1").with_label(DEFAULT_LABEL, "0-2048"),
            Endpoint::new("10.0.0.2:1").with_label(DEFAULT_LABEL, "2049-32768"),
            Endpoint::new("10.0.0.3:1"),
            Endpoint::new("10.0.0.4:1").with_label(DEFAULT_LABEL, "big"),
        ];
        let prompt = "x".repeat(prompt_tokens * CHARS_PER_TOKEN);
        let req = InferenceRequest::new("m", &prompt);
        let state = CycleState::new();
        let cx = CycleContext {
            request: &req,
            endpoints: &eps,
            state: &state,
            now_ms: 1,
            peer: None,
        };
        let p = factory(
            "c",
            Some(&serde_json::json!({"enableFiltering": enable_filtering})),
            &Handle::new(&[]),
        )
        .unwrap();
        let mut scores = alloc::vec![0.0; 4];
        p.as_scorer()
            .unwrap()
            .score(&cx, &[0, 1, 2, 3], &mut scores);
        let mut keep = alloc::vec![true; 4];
        if let Some(f) = p.as_filter() {
            f.filter(&cx, &[0, 1, 2, 3], &mut keep, &mut SplitMix64::new(1));
        }
        (scores, keep)
    }

    #[test]
    fn long_prompts_go_to_long_context_servers() {
        let (scores, keep) = run(false, 4000);
        assert!(scores[1] > scores[2] && scores[2] > scores[0], "{scores:?}");
        assert_eq!(scores[2], 0.5);
        assert_eq!(scores[3], 0.0);
        assert_eq!(keep, [true; 4], "scoring only");
        let (_, keep) = run(true, 4000);
        assert_eq!(keep, [false, true, true, false]);
        let (scores, _) = run(false, 100);
        assert!(scores[0] > scores[1], "{scores:?}");
    }
}
