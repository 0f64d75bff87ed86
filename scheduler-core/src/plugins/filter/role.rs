//! `decode-filter`, `prefill-filter` and `encode-filter` (llm-d): keep endpoints by their
//! disaggregation role label.
//!
//! The role is the `llm-d.ai/role` label (or a plain `role` label). An endpoint can serve more
//! than one stage (llm-d-router `scheduling/filter/bylabel/roles.go`):
//!
//! | filter | keeps roles | no role label |
//! |---|---|---|
//! | `decode-filter` | `decode`, `prefill-decode`, `both` (the old name of `prefill-decode`), `encode-prefill-decode` | kept |
//! | `prefill-filter` | `prefill`, `encode-prefill`, `prefill-decode`, `both`, `encode-prefill-decode` | dropped |
//! | `encode-filter` | `encode`, `encode-prefill`, `encode-prefill-decode` | dropped |
//!
//! Parameters: none.

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
/// Type name of the encode filter.
pub const ENCODE_TYPE: &str = "encode-filter";

const DECODE_ROLES: &[&str] = &["decode", "prefill-decode", "both", "encode-prefill-decode"];
const PREFILL_ROLES: &[&str] = &[
    "prefill",
    "encode-prefill",
    "prefill-decode",
    "both",
    "encode-prefill-decode",
];
const ENCODE_ROLES: &[&str] = &["encode", "encode-prefill", "encode-prefill-decode"];
/// Role label key (llm-d).
pub const ROLE_LABEL: &str = "llm-d.ai/role";

/// The role of `e`, from `llm-d.ai/role` or `role`.
pub fn role_of(e: &Endpoint) -> Option<&str> {
    e.label(ROLE_LABEL).or_else(|| e.label("role"))
}

/// The pipeline stages an endpoint serves, as flow control splits the pool to measure its
/// saturation per stage (llm-d-router's flow-control processor does the same with the role
/// label): no role, an empty one or `decode` decodes; `prefill` and `encode-prefill` prefill;
/// `prefill-decode` (and its old name `both`) and `encode-prefill-decode` serve both; an
/// encode-only or unknown role serves neither (it gets no prefill or decode traffic, so
/// counting it would dilute the signal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stages {
    /// Prefill only.
    Prefill,
    /// Decode only.
    Decode,
    /// Both stages.
    Both,
    /// Neither.
    Neither,
}

/// The stages `e` serves (see [`Stages`]).
pub fn stages_of(e: &Endpoint) -> Stages {
    match role_of(e) {
        None | Some("" | "decode") => Stages::Decode,
        Some("prefill" | "encode-prefill") => Stages::Prefill,
        Some("prefill-decode" | "both" | "encode-prefill-decode") => Stages::Both,
        Some(_) => Stages::Neither,
    }
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
        roles: DECODE_ROLES,
        allows_no_label: true,
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
        roles: PREFILL_ROLES,
        allows_no_label: false,
    }))
}

/// Builds an encode [`RoleFilter`].
///
/// # Errors
/// Any parameter field.
pub fn encode_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(RoleFilter {
        typed_name: TypedName::new(ENCODE_TYPE, name),
        roles: ENCODE_ROLES,
        allows_no_label: false,
    }))
}

/// See the module docs.
pub struct RoleFilter {
    typed_name: TypedName,
    roles: &'static [&'static str],
    allows_no_label: bool,
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
            *k = match role {
                None => self.allows_no_label,
                Some(r) => self.roles.contains(&r),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{CycleState, Handle};
    use alloc::vec::Vec;

    fn kept(factory: crate::plugin::registry::Factory) -> Vec<&'static str> {
        const ROLES: &[Option<&str>] = &[
            None,
            Some("decode"),
            Some("prefill"),
            Some("encode"),
            Some("prefill-decode"),
            Some("both"),
            Some("encode-prefill"),
            Some("encode-prefill-decode"),
            Some("unknown"),
        ];
        let eps: Vec<Endpoint> = ROLES
            .iter()
            .map(|r| match r {
                Some(r) => Endpoint::new("10.0.0.1:1").with_label(ROLE_LABEL, r),
                None => Endpoint::new("10.0.0.1:1"),
            })
            .collect();
        let plugin = factory("f", None, &Handle::new(&[])).unwrap();
        let keep = crate::plugins::testing::kept(&*plugin, &eps, &CycleState::new());
        ROLES
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(r, _)| r.unwrap_or("<none>"))
            .collect()
    }

    #[test]
    fn each_filter_keeps_the_roles_llm_d_assigns_it() {
        assert_eq!(
            kept(decode_factory),
            [
                "<none>",
                "decode",
                "prefill-decode",
                "both",
                "encode-prefill-decode"
            ]
        );
        assert_eq!(
            kept(prefill_factory),
            [
                "prefill",
                "prefill-decode",
                "both",
                "encode-prefill",
                "encode-prefill-decode"
            ]
        );
        assert_eq!(
            kept(encode_factory),
            ["encode", "encode-prefill", "encode-prefill-decode"]
        );
    }
}
