//! `mm-embeddings-cache-scorer` (llm-d, Beta): scores each endpoint by the share of the
//! request's media items its encoder cache likely holds, `matched / total` in [0, 1], from
//! `mm-embeddings-cache-producer`'s match data (llm-d-router `scorer/mmcacheaffinity`). A
//! text-only request, or one with no match data, scores 0 everywhere. Category: affinity.
//!
//! Parameters: `producerName` (optional; the producer instance whose data to read). One
//! multimodal producer per configuration is supported, so the name only has to exist.

use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, DataKey, Plugin, Scorer, ScorerCategory, TypedName};
use crate::plugins::producer::mm_embeddings_cache::{
    EncoderCacheMatch, MM_ENCODER_CACHE_MATCH_INFO,
};

/// Plugin type name.
pub const TYPE: &str = "mm-embeddings-cache-scorer";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    producer_name: Option<alloc::string::String>,
}

/// Builds an [`MmEmbeddingsCacheScorer`].
///
/// # Errors
/// Unknown fields.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let _: Params = parse_params(params)?;
    Ok(Arc::new(MmEmbeddingsCacheScorer {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct MmEmbeddingsCacheScorer {
    typed_name: TypedName,
}

impl Plugin for MmEmbeddingsCacheScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        &[MM_ENCODER_CACHE_MATCH_INFO]
    }
}

impl Scorer for MmEmbeddingsCacheScorer {
    fn category(&self) -> ScorerCategory {
        ScorerCategory::Affinity
    }
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let Some(matches) = cx
            .state
            .get::<alloc::vec::Vec<EncoderCacheMatch>>(MM_ENCODER_CACHE_MATCH_INFO)
        else {
            return;
        };
        for (&i, s) in candidates.iter().zip(scores.iter_mut()) {
            if let Some(m) = matches.get(i).filter(|m| m.total > 0) {
                *s = f64::from(m.matched) / f64::from(m.total);
            }
        }
    }
}
