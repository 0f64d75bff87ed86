//! Prefill/decode deciders (llm-d): `prefix-based-pd-decider` and `always-disagg-pd-decider`.
//!
//! `prefix-based-pd-decider` disaggregates when the decode endpoint would have to compute many
//! tokens itself, as llm-d-router decides it (its `prefix_based_pd_decider.go`):
//! - `nonCachedTokens` (tokens, default 0): the threshold; **0 turns the decider off** (it
//!   never splits prefill off; llm-d-router's rule since 2026-03, where 0 had meant "always");
//! - `promptTokens` (tokens, default 0): prompts shorter than this are never split, whatever
//!   the cache holds (0: no such gate; llm-d-router's PR #933);
//! - otherwise prefill runs when the prompt is at least `nonCachedTokens` long and
//!   uncached = prompt tokens − cached tokens on the decode endpoint (its prefix match, whole
//!   blocks × block size, by block count, not tier-weighted) is at least `nonCachedTokens`.
//!
//! Prompt tokens are estimated as characters / 4 (upstream's `estimate` token producer divides
//! by the same average). With no decode endpoint to judge (asked before decode has picked), it
//! says no. Consumes the prefix match info. `always-disagg-pd-decider` always says yes; no
//! parameters.

use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, DataKey, PdDecider, Plugin, TypedName};
use crate::plugins::producer::approx_prefix_cache::{PrefixMatch, PREFIX_CACHE_MATCH_INFO};
use crate::plugins::NoParams;

/// Type name of the prefix-based decider.
pub const PREFIX_BASED_TYPE: &str = "prefix-based-pd-decider";
/// Type name of the always-disaggregate decider.
pub const ALWAYS_TYPE: &str = "always-disagg-pd-decider";

/// Parameters of the prefix-based decider.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Params {
    /// Uncached tokens from which prefill is split off; 0 turns the decider off.
    #[serde(default)]
    pub non_cached_tokens: u64,
    /// Shortest prompt (tokens) that may be split; 0: no minimum.
    #[serde(default)]
    pub prompt_tokens: u64,
}

/// Builds a [`PrefixBasedPdDecider`].
///
/// # Errors
/// Unknown fields.
pub fn prefix_based_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    Ok(Arc::new(PrefixBasedPdDecider {
        typed_name: TypedName::new(PREFIX_BASED_TYPE, name),
        non_cached_tokens: p.non_cached_tokens,
        prompt_tokens: p.prompt_tokens,
    }))
}

/// Builds an [`AlwaysDisaggPdDecider`].
///
/// # Errors
/// Any parameter field.
pub fn always_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(AlwaysDisaggPdDecider {
        typed_name: TypedName::new(ALWAYS_TYPE, name),
    }))
}

/// See the module docs.
pub struct PrefixBasedPdDecider {
    typed_name: TypedName,
    non_cached_tokens: u64,
    prompt_tokens: u64,
}

impl Plugin for PrefixBasedPdDecider {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_pd_decider(&self) -> Option<&dyn PdDecider> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        &[PREFIX_CACHE_MATCH_INFO]
    }
}

impl PdDecider for PrefixBasedPdDecider {
    fn disaggregate(&self, cx: &CycleContext<'_>, decode_endpoint: Option<usize>) -> bool {
        let Some(decode_endpoint) = decode_endpoint else {
            return false;
        };
        if self.non_cached_tokens == 0 {
            return false;
        }
        let prompt_tokens = cx.request.estimated_prompt_tokens();
        if prompt_tokens < self.prompt_tokens || prompt_tokens < self.non_cached_tokens {
            return false;
        }
        let cached = cx
            .state
            .get::<Vec<PrefixMatch>>(PREFIX_CACHE_MATCH_INFO)
            .and_then(|v| v.get(decode_endpoint))
            .map_or(0, PrefixMatch::cached_tokens);
        prompt_tokens.saturating_sub(cached) >= self.non_cached_tokens
    }
}

/// See the module docs.
pub struct AlwaysDisaggPdDecider {
    typed_name: TypedName,
}

impl Plugin for AlwaysDisaggPdDecider {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_pd_decider(&self) -> Option<&dyn PdDecider> {
        Some(self)
    }
}

impl PdDecider for AlwaysDisaggPdDecider {
    fn disaggregate(&self, _: &CycleContext<'_>, _: Option<usize>) -> bool {
        true
    }
}
