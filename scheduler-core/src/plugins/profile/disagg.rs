//! `disagg-profile-handler` (llm-d): encode/prefill/decode disaggregation.
//!
//! Two stage orders, as llm-d-router's `stageOrder` names them:
//! - `decode-first` (default): the decode profile; then, when an encode decider is configured
//!   and says so for the request, the encode profile; then the prefill decider is asked whether
//!   to split prefill off for the chosen decode endpoint, and if so the prefill profile runs
//!   against the decode pick (its peer, for topology filters and scorers).
//! - `prefill-first`: the prefill profile whenever it is configured (no prefill decider: one is
//!   refused at load, as upstream refuses it, since no decode endpoint is known yet to judge
//!   the cache by); then the encode profile when the encode decider says so (asked with no
//!   decode endpoint); then the decode profile against the prefill pick (its peer). For pools
//!   where the prefill placement matters more than the decode one (scarce prefill servers,
//!   topology anchored on them).
//!
//! In both orders the decode endpoint receives the request (primary); the
//! prefill endpoint goes in the `x-prefiller-host-port` request header and the encode endpoints
//! (every target of the encode profile, comma-separated `ip:port`) in `x-encoder-hosts-ports`,
//! for the decode side to call. If the prefill or encode profile finds nothing, the request
//! still goes to decode alone.
//!
//! Parameters:
//! - `profiles.decode` / `profiles.prefill` / `profiles.encode`: profile names (default
//!   `decode` / `prefill` / `encode`);
//! - `deciders.prefill`: a decider plugin (e.g. `prefix-based-pd-decider`, or
//!   `always-disagg-pd-decider` to split every request); without it the decode-first order
//!   never runs prefill (llm-d-router: "P/D disaggregation disabled");
//! - `deciders.encode`: a decider plugin (e.g. `always-disagg-multimodal-decider`); without it
//!   no encode stage runs;
//! - `stageOrder`: `decode-first` (default) or `prefill-first`; llm-d's spellings are accepted
//!   (case-insensitive, `-`/`_` ignored, `decode` / `prefill` alone).
//!
//! llm-d's deprecated flat form still loads, as upstream loads it: `decodeProfile`,
//! `prefillProfile`, `encodeProfile`, `prefillDeciderPluginName` (or the older
//! `deciderPluginName`, used when the former is absent) and `encodeDeciderPluginName`. When any
//! of them is given, the flat form is the configuration and nested `profiles`/`deciders` are
//! ignored (upstream reads the flat form only once the nested one fails to parse); each is
//! logged as deprecated.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::{ConfigError, ConfigErrorKind, FieldPath, RequestError};
use crate::model::result::SchedulingResult;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Plugin, ProfileHandler, ProfileResults, TypedName};

/// Plugin type name.
pub const TYPE: &str = "disagg-profile-handler";

/// Request header naming the prefill endpoint (`ip:port`).
pub const PREFILLER_HEADER: &str = "x-prefiller-host-port";
/// Request header naming the encode endpoints (`ip:port,ip:port`).
pub const ENCODER_HEADER: &str = "x-encoder-hosts-ports";

/// Profile names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profiles {
    /// Decode profile name.
    pub decode: String,
    /// Prefill profile name.
    pub prefill: String,
    /// Encode profile name.
    pub encode: String,
}

impl Default for Profiles {
    fn default() -> Self {
        Profiles {
            decode: "decode".into(),
            prefill: "prefill".into(),
            encode: "encode".into(),
        }
    }
}

/// Decider references.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deciders {
    /// Plugin name of the prefill decider.
    #[serde(default)]
    pub prefill: Option<String>,
    /// Plugin name of the encode decider.
    #[serde(default)]
    pub encode: Option<String>,
}

/// Parameters.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Profile names.
    #[serde(default)]
    pub profiles: Profiles,
    /// Decider references.
    #[serde(default)]
    pub deciders: Deciders,
    /// `decode-first` (default) or `prefill-first`.
    #[serde(default, rename = "stageOrder")]
    pub stage_order: Option<String>,
    /// Deprecated flat form of `profiles.decode`.
    #[serde(default, rename = "decodeProfile")]
    pub decode_profile: Option<String>,
    /// Deprecated flat form of `profiles.prefill`.
    #[serde(default, rename = "prefillProfile")]
    pub prefill_profile: Option<String>,
    /// Deprecated flat form of `profiles.encode`.
    #[serde(default, rename = "encodeProfile")]
    pub encode_profile: Option<String>,
    /// Deprecated flat form of `deciders.prefill`.
    #[serde(default, rename = "prefillDeciderPluginName")]
    pub prefill_decider_plugin_name: Option<String>,
    /// Deprecated flat form of `deciders.encode`.
    #[serde(default, rename = "encodeDeciderPluginName")]
    pub encode_decider_plugin_name: Option<String>,
    /// `pd-profile-handler`'s name for `deciders.prefill`, used when
    /// `prefillDeciderPluginName` is absent.
    #[serde(default, rename = "deciderPluginName")]
    pub decider_plugin_name: Option<String>,
}

impl Params {
    /// The nested form the deprecated flat fields stand for, or `None` when none is set (empty
    /// strings count as unset, as upstream treats them). Logs each deprecated field used.
    fn to_nested(&self, name: &str) -> Option<(Profiles, Deciders)> {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let fields = [
            ("decodeProfile", "profiles.decode", &self.decode_profile),
            ("prefillProfile", "profiles.prefill", &self.prefill_profile),
            ("encodeProfile", "profiles.encode", &self.encode_profile),
            (
                "prefillDeciderPluginName",
                "deciders.prefill",
                &self.prefill_decider_plugin_name,
            ),
            (
                "encodeDeciderPluginName",
                "deciders.encode",
                &self.encode_decider_plugin_name,
            ),
            (
                "deciderPluginName",
                "deciders.prefill",
                &self.decider_plugin_name,
            ),
        ];
        let mut any = false;
        for (old, new, v) in fields {
            if set(v).is_some() {
                any = true;
                log::warn!("{TYPE} '{name}': parameter '{old}' is deprecated, use '{new}'");
            }
        }
        if !any {
            return None;
        }
        let defaults = Profiles::default();
        Some((
            Profiles {
                decode: set(&self.decode_profile).unwrap_or(defaults.decode),
                prefill: set(&self.prefill_profile).unwrap_or(defaults.prefill),
                encode: set(&self.encode_profile).unwrap_or(defaults.encode),
            },
            Deciders {
                prefill: set(&self.prefill_decider_plugin_name)
                    .or_else(|| set(&self.decider_plugin_name)),
                encode: set(&self.encode_decider_plugin_name),
            },
        ))
    }
}

/// Which stage picks its endpoint first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StageOrder {
    /// Decode, then encode and prefill against the decode pick.
    DecodeFirst,
    /// Prefill, then encode, then decode against the prefill pick.
    PrefillFirst,
}

/// `stageOrder` as llm-d spells it: case-insensitive, `-`/`_` ignored, the first word alone
/// allowed; absent or empty is `decode-first`.
fn stage_order(order: Option<&str>) -> Result<StageOrder, ConfigError> {
    let Some(order) = order else {
        return Ok(StageOrder::DecodeFirst);
    };
    let norm: String = order
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    match norm.as_str() {
        "" | "decodefirst" | "decode" => Ok(StageOrder::DecodeFirst),
        "prefillfirst" | "prefill" => Ok(StageOrder::PrefillFirst),
        _ => Err(ConfigError::invalid(
            FieldPath::key("stageOrder"),
            alloc::format!("'{order}' is not 'decode-first' or 'prefill-first'"),
        )),
    }
}

/// Builds a [`DisaggProfileHandler`].
///
/// # Errors
/// Unknown fields; an unknown `stageOrder`; a prefill decider with `prefill-first`; a decider
/// reference to an undefined plugin or to one that is not a decider.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let mut p: Params = parse_params(params)?;
    if let Some((profiles, deciders)) = p.to_nested(name) {
        p.profiles = profiles;
        p.deciders = deciders;
    }
    let order = stage_order(p.stage_order.as_deref())?;
    if order == StageOrder::PrefillFirst && p.deciders.prefill.is_some() {
        return Err(ConfigError::invalid(
            FieldPath::key("deciders").with_key("prefill"),
            "a prefill decider cannot be used with stageOrder 'prefill-first': prefill runs \
             first, before any decode endpoint is known to decide by",
        ));
    }
    let decider = |which: &'static str, r: &Option<String>| -> Result<_, ConfigError> {
        let Some(d) = r else { return Ok(None) };
        let path = FieldPath::key("deciders").with_key(which);
        let plugin = handle.plugin(d).ok_or_else(|| {
            ConfigError::new(path.clone(), ConfigErrorKind::UndefinedPluginRef(d.clone()))
        })?;
        if plugin.as_pd_decider().is_none() {
            return Err(ConfigError::new(
                path,
                ConfigErrorKind::WrongPluginKind {
                    name: d.clone(),
                    expected: if which == "prefill" {
                        "a prefill/decode decider"
                    } else {
                        "an encode decider"
                    },
                },
            ));
        }
        Ok(Some(plugin.clone()))
    };
    Ok(Arc::new(DisaggProfileHandler {
        typed_name: TypedName::new(TYPE, name),
        order,
        decider: decider("prefill", &p.deciders.prefill)?,
        encode_decider: decider("encode", &p.deciders.encode)?,
        decode: p.profiles.decode,
        prefill: p.profiles.prefill,
        encode: p.profiles.encode,
    }))
}

/// See the module docs.
pub struct DisaggProfileHandler {
    typed_name: TypedName,
    order: StageOrder,
    decode: String,
    prefill: String,
    encode: String,
    decider: Option<Arc<dyn Plugin>>,
    encode_decider: Option<Arc<dyn Plugin>>,
}

impl Plugin for DisaggProfileHandler {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_profile_handler(&self) -> Option<&dyn ProfileHandler> {
        Some(self)
    }
}

fn position(names: &[String], name: &str) -> Option<usize> {
    names.iter().position(|n| n == name)
}

/// The first target of profile `i`, when it ran and found one.
fn first_target(results: &ProfileResults, i: usize) -> Option<usize> {
    results
        .results
        .get(i)
        .and_then(|r| r.as_ref())
        .and_then(|r| r.targets.first().copied())
}

/// True when profile `i` has run (a profile missing from the results counts as run).
fn ran(results: &ProfileResults, i: usize) -> bool {
    results.ran.get(i).copied().unwrap_or(true)
}

impl DisaggProfileHandler {
    /// True when the encode stage should run next: configured, not run yet, and its decider
    /// says so for `decode_endpoint` (`None` before decode has picked).
    fn encode_next(
        &self,
        cx: &CycleContext<'_>,
        e: Option<usize>,
        results: &ProfileResults,
        decode_endpoint: Option<usize>,
    ) -> bool {
        let (Some(e), Some(dec)) = (e, &self.encode_decider) else {
            return false;
        };
        !ran(results, e)
            && dec
                .as_pd_decider()
                .is_some_and(|x| x.disaggregate(cx, decode_endpoint))
    }

    /// Decode, then encode, then prefill (each optional after decode).
    fn decode_first(
        &self,
        cx: &CycleContext<'_>,
        names: &[String],
        results: &ProfileResults,
    ) -> Vec<usize> {
        let Some(d) = position(names, &self.decode) else {
            return Vec::new();
        };
        if !ran(results, d) {
            return alloc::vec![d];
        }
        let Some(target) = first_target(results, d) else {
            return Vec::new();
        };
        let e = position(names, &self.encode);
        if self.encode_next(cx, e, results, Some(target)) {
            return e.into_iter().collect();
        }
        let Some(p) = position(names, &self.prefill) else {
            return Vec::new();
        };
        if ran(results, p) {
            return Vec::new();
        }
        let split = self.decider.as_ref().is_some_and(|dp| {
            dp.as_pd_decider()
                .is_some_and(|x| x.disaggregate(cx, Some(target)))
        });
        if split {
            alloc::vec![p]
        } else {
            Vec::new()
        }
    }

    /// Prefill (when configured), then encode (when its decider says so), then decode.
    fn prefill_first(
        &self,
        cx: &CycleContext<'_>,
        names: &[String],
        results: &ProfileResults,
    ) -> Vec<usize> {
        let Some(d) = position(names, &self.decode) else {
            return Vec::new();
        };
        if ran(results, d) {
            return Vec::new();
        }
        if let Some(p) = position(names, &self.prefill).filter(|&p| !ran(results, p)) {
            return alloc::vec![p];
        }
        let e = position(names, &self.encode);
        if self.encode_next(cx, e, results, None) {
            return e.into_iter().collect();
        }
        alloc::vec![d]
    }
}

impl ProfileHandler for DisaggProfileHandler {
    /// The stage that runs second against the first one's pick (topology-aware selection):
    /// prefill against the decode pick (`decode-first`), decode against the prefill pick
    /// (`prefill-first`).
    fn peer_for(
        &self,
        profile: usize,
        names: &[String],
        results: &ProfileResults,
    ) -> Option<usize> {
        let (second, first) = match self.order {
            StageOrder::DecodeFirst => (&self.prefill, &self.decode),
            StageOrder::PrefillFirst => (&self.decode, &self.prefill),
        };
        if position(names, second) != Some(profile) {
            return None;
        }
        first_target(results, position(names, first)?)
    }

    fn pick_profiles(
        &self,
        cx: &CycleContext<'_>,
        names: &[String],
        results: &ProfileResults,
    ) -> Vec<usize> {
        match self.order {
            StageOrder::DecodeFirst => self.decode_first(cx, names, results),
            StageOrder::PrefillFirst => self.prefill_first(cx, names, results),
        }
    }

    fn process_results(
        &self,
        cx: &CycleContext<'_>,
        names: &[String],
        results: ProfileResults,
    ) -> Result<SchedulingResult, RequestError> {
        let d = position(names, &self.decode).ok_or_else(|| {
            RequestError::NoTargetEndpoint(alloc::format!("no '{}' profile", self.decode))
        })?;
        let decode_ok = results
            .results
            .get(d)
            .and_then(|r| r.as_ref())
            .is_some_and(|r| !r.targets.is_empty());
        if !decode_ok {
            return Err(RequestError::NoTargetEndpoint("no decode endpoint".into()));
        }
        let mut headers = Vec::new();
        if let Some(p) = position(names, &self.prefill) {
            if let Some(ep) = first_target(&results, p).and_then(|i| cx.endpoint(i)) {
                headers.push((PREFILLER_HEADER.into(), ep.address.clone()));
            }
        }
        if let Some(e) = position(names, &self.encode) {
            let encoders: Vec<&str> = results
                .results
                .get(e)
                .and_then(|r| r.as_ref())
                .map(|r| {
                    r.targets
                        .iter()
                        .filter_map(|&i| cx.endpoint(i))
                        .map(|ep| ep.address.as_str())
                        .collect()
                })
                .unwrap_or_default();
            if !encoders.is_empty() {
                headers.push((ENCODER_HEADER.into(), encoders.join(",")));
            }
        }
        Ok(SchedulingResult {
            profile_results: names.iter().cloned().zip(results.results).collect(),
            primary_profile: d,
            headers,
        })
    }
}
