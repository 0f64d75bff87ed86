//! Prefill/decode deciders (llm-d): `prefix-based-pd-decider` and `always-disagg-pd-decider`.
//!
//! `prefix-based-pd-decider` disaggregates when the decode endpoint would have to compute many
//! tokens itself: uncached = prompt tokens (characters / 4) − cached tokens on the decode
//! endpoint (prefix match × block size); prefill runs when `uncached > 0` and
//! `uncached ≥ nonCachedTokens`. Parameter `nonCachedTokens` (tokens, default 0). Consumes the
//! prefix match info. `always-disagg-pd-decider` always says yes; no parameters.

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
    /// Uncached tokens from which prefill is split off.
    #[serde(default)]
    pub non_cached_tokens: u64,
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
    fn disaggregate(&self, cx: &CycleContext<'_>, decode_endpoint: usize) -> bool {
        let prompt_tokens = cx.request.estimated_prompt_tokens();
        let cached = cx
            .state
            .get::<Vec<PrefixMatch>>(PREFIX_CACHE_MATCH_INFO)
            .and_then(|v| v.get(decode_endpoint))
            .map_or(0, PrefixMatch::cached_tokens);
        let uncached = prompt_tokens.saturating_sub(cached);
        uncached > 0 && uncached >= self.non_cached_tokens
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
    fn disaggregate(&self, _: &CycleContext<'_>, _: usize) -> bool {
        true
    }
}
