//! `decode-filter` and `prefill-filter` (llm-d): keep endpoints by their P/D role label.
//!
//! The role is the `llm-d.ai/role` label (or a plain `role` label): `decode-filter` keeps
//! `decode` and `both` and, for backward compatibility, endpoints with no role; `prefill-filter`
//! keeps `prefill` only. Parameters: none.

use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::model::endpoint::Endpoint;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Filter, Plugin, TypedName};
use crate::plugins::NoParams;
use crate::rng::Rng;

/// Type name of the decode filter.
pub const DECODE_TYPE: &str = "decode-filter";
/// Type name of the prefill filter.
pub const PREFILL_TYPE: &str = "prefill-filter";
/// Role label key (llm-d).
pub const ROLE_LABEL: &str = "llm-d.ai/role";

/// The role of `e`, from `llm-d.ai/role` or `role`.
pub fn role_of(e: &Endpoint) -> Option<&str> {
    e.label(ROLE_LABEL).or_else(|| e.label("role"))
}

/// Builds a decode [`RoleFilter`].
///
/// # Errors
/// Any parameter field.
pub fn decode_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(RoleFilter {
        typed_name: TypedName::new(DECODE_TYPE, name),
        prefill: false,
    }))
}

/// Builds a prefill [`RoleFilter`].
///
/// # Errors
/// Any parameter field.
pub fn prefill_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(RoleFilter {
        typed_name: TypedName::new(PREFILL_TYPE, name),
        prefill: true,
    }))
}

/// See the module docs.
pub struct RoleFilter {
    typed_name: TypedName,
    prefill: bool,
}

impl Plugin for RoleFilter {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_filter(&self) -> Option<&dyn Filter> {
        Some(self)
    }
}

impl Filter for RoleFilter {
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        _: &mut dyn Rng,
    ) {
        for (k, &i) in keep.iter_mut().zip(candidates) {
            let role = cx.endpoint(i).and_then(role_of);
            *k = if self.prefill {
                role == Some("prefill")
            } else {
                matches!(role, None | Some("decode") | Some("both"))
            };
        }
    }
}
