//! `token-load-scorer`: prefers endpoints with fewer in-flight tokens.
//!
//! Formula (GIE `scorer/tokenload/token_load.go`): `score = 1 − min(tokens, T) / T` where
//! `tokens` is the in-flight token estimate of `inflight-load-producer` and
//! `T = queueThresholdTokens` (default 4,194,304 tokens). Zero load scores 1.0. Consumes
//! [`INFLIGHT_LOAD`], so the producer is created automatically when missing.
//! Category: Distribution.

use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, DataKey, Plugin, Scorer, TypedName};
use crate::plugins::producer::inflight_load::{InflightLoad, INFLIGHT_LOAD};

/// Plugin type name.
pub const TYPE: &str = "token-load-scorer";

/// Parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Params {
    /// Tokens at which the score reaches 0 (> 0). Default 4,194,304.
    pub queue_threshold_tokens: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            queue_threshold_tokens: 4_194_304,
        }
    }
}

/// Builds a [`TokenLoadScorer`].
///
/// # Errors
/// Unknown fields; `queueThresholdTokens` of 0.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if p.queue_threshold_tokens == 0 {
        return Err(ConfigError::invalid(
            FieldPath::key("queueThresholdTokens"),
            "must be > 0",
        ));
    }
    Ok(Arc::new(TokenLoadScorer {
        typed_name: TypedName::new(TYPE, name),
        threshold: p.queue_threshold_tokens,
    }))
}

/// See the module docs.
pub struct TokenLoadScorer {
    typed_name: TypedName,
    threshold: u64,
}

impl Plugin for TokenLoadScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        &[INFLIGHT_LOAD]
    }
}

impl Scorer for TokenLoadScorer {
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let load = cx.state.get::<Vec<InflightLoad>>(INFLIGHT_LOAD);
        let t = self.threshold as f64;
        for (s, &i) in scores.iter_mut().zip(candidates) {
            let tokens = load.and_then(|l| l.get(i)).map_or(0, |l| l.tokens);
            *s = 1.0 - (tokens.min(self.threshold) as f64) / t;
        }
    }
}
