//! Plugin types llm-d still loads as deprecated aliases (llm-d-router `cmd/epp/runner/runner.go`
//! `registerInTreePlugins`, `RegisterDeprecated*`): each is built as its replacement, and the
//! registry's deprecation message names that replacement.
//!
//! - `pd-profile-handler` → `disagg-profile-handler`: `decodeProfile`/`prefillProfile` become
//!   `profiles.decode`/`profiles.prefill`, `deciderPluginName` (default
//!   `prefix-based-pd-decider`) becomes `deciders.prefill`. `primaryPort` (a port rewrite for
//!   Istio before 1.28.1), `prefixPluginType`/`prefixPluginName` (never used upstream) and
//!   `prefixMatchInfoProducerName` are accepted and unused.
//! - `data-parallel-profile-handler` → `single-profile-handler`: here every data-parallel rank
//!   is its own endpoint (`ip:port`), so the handler's port rewrite (`primaryPort`) is not
//!   needed; the parameter is accepted and unused.
//! - `prefill-header-handler`, `disagg-headers-handler` → nothing: `disagg-profile-handler` sets
//!   the prefill header itself; the plugin loads and does nothing (`prefillProfile`,
//!   `encodeProfile` accepted).

use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, TypedName};
use crate::plugins::profile::{disagg, single};

/// The old `pd-profile-handler` type name.
pub const PD_TYPE: &str = "pd-profile-handler";
/// The old data-parallel profile handler type name.
pub const DATA_PARALLEL_TYPE: &str = "data-parallel-profile-handler";
/// The old prefill header handler type name.
pub const PREFILL_HEADER_TYPE: &str = "prefill-header-handler";
/// The old disaggregation headers handler type name.
pub const DISAGG_HEADERS_TYPE: &str = "disagg-headers-handler";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct PdParams {
    decode_profile: String,
    prefill_profile: String,
    decider_plugin_name: String,
    primary_port: Option<u32>,
    prefix_plugin_type: Option<String>,
    prefix_plugin_name: Option<String>,
    prefix_match_info_producer_name: Option<String>,
}

impl Default for PdParams {
    fn default() -> Self {
        PdParams {
            decode_profile: "decode".into(),
            prefill_profile: "prefill".into(),
            decider_plugin_name: "prefix-based-pd-decider".into(),
            primary_port: None,
            prefix_plugin_type: None,
            prefix_plugin_name: None,
            prefix_match_info_producer_name: None,
        }
    }
}

/// `pd-profile-handler`, built as `disagg-profile-handler`.
///
/// # Errors
/// Unknown fields; `primaryPort` outside 1..=65535; the decider undefined or not a decider.
pub fn pd_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: PdParams = parse_params(params)?;
    if p.primary_port.is_some_and(|n| !(1..=65535).contains(&n)) {
        return Err(ConfigError::invalid(
            crate::error::FieldPath::key("primaryPort"),
            "must be between 1 and 65535",
        ));
    }
    let _unused = (
        p.prefix_plugin_type,
        p.prefix_plugin_name,
        p.prefix_match_info_producer_name,
    );
    let translated = serde_json::json!({
        "profiles": {"decode": p.decode_profile, "prefill": p.prefill_profile},
        "deciders": {"prefill": p.decider_plugin_name},
    });
    disagg::factory(name, Some(&translated), handle)
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DataParallelParams {
    #[serde(default)]
    primary_port: Option<u32>,
}

/// `data-parallel-profile-handler`, built as `single-profile-handler`.
///
/// # Errors
/// Unknown fields; `primaryPort` outside 1..=65535.
pub fn data_parallel_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: DataParallelParams = parse_params(params)?;
    if p.primary_port.is_some_and(|n| !(1..=65535).contains(&n)) {
        return Err(ConfigError::invalid(
            crate::error::FieldPath::key("primaryPort"),
            "must be between 1 and 65535",
        ));
    }
    single::factory(name, None, handle)
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HeadersParams {
    #[serde(default)]
    prefill_profile: Option<String>,
    #[serde(default)]
    encode_profile: Option<String>,
}

/// A plugin that fills no slot (the old headers handlers).
struct Inert {
    typed_name: TypedName,
}

impl Plugin for Inert {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
}

/// `prefill-header-handler` / `disagg-headers-handler`: loads and does nothing.
///
/// # Errors
/// Unknown fields.
pub fn headers_factory(
    type_name: &'static str,
) -> impl Fn(&str, Option<&serde_json::Value>, &Handle<'_>) -> Result<Arc<dyn Plugin>, ConfigError>
{
    move |name, params, _| {
        let p: HeadersParams = parse_params(params)?;
        let _unused = (p.prefill_profile, p.encode_profile);
        Ok(Arc::new(Inert {
            typed_name: TypedName::new(type_name, name),
        }))
    }
}

/// `prefill-header-handler`.
///
/// # Errors
/// Unknown fields.
pub fn prefill_header_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    headers_factory(PREFILL_HEADER_TYPE)(name, params, handle)
}

/// `disagg-headers-handler`.
///
/// # Errors
/// Unknown fields.
pub fn disagg_headers_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    headers_factory(DISAGG_HEADERS_TYPE)(name, params, handle)
}
