//! `disagg-profile-handler` (llm-d): encode/prefill/decode disaggregation.
//!
//! Stages run decode first (llm-d's default `stageOrder: decode-first`): the decode profile;
//! then, when an encode decider is configured and says so for the request, the encode profile;
//! then the prefill decider is asked whether to split prefill off for the chosen decode endpoint,
//! and if so the prefill profile runs. The decode endpoint receives the request (primary); the
//! prefill endpoint goes in the `x-prefiller-host-port` request header and the encode endpoints
//! (every target of the encode profile, comma-separated `ip:port`) in `x-encoder-hosts-ports`,
//! for the decode side to call. If the prefill or encode profile finds nothing, the request
//! still goes to decode alone.
//!
//! Parameters:
//! - `profiles.decode` / `profiles.prefill` / `profiles.encode`: profile names (default
//!   `decode` / `prefill` / `encode`);
//! - `deciders.prefill`: a decider plugin (e.g. `prefix-based-pd-decider`); without it, prefill
//!   is always split off when a prefill profile exists;
//! - `deciders.encode`: a decider plugin (e.g. `always-disagg-multimodal-decider`); without it
//!   no encode stage runs;
//! - `stageOrder`: `decode-first` (default); `prefill-first` is refused (not built).

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
    /// `decode-first` (default) or `prefill-first` (refused).
    #[serde(default, rename = "stageOrder")]
    pub stage_order: Option<String>,
}

/// Builds a [`DisaggProfileHandler`].
///
/// # Errors
/// Unknown fields; a decider reference to an undefined plugin or to one that is not a decider.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if let Some(order) = &p.stage_order {
        // llm-d's spellings: case-insensitive, `-`/`_` ignored, the first word alone allowed.
        let norm: String = order
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .flat_map(char::to_lowercase)
            .collect();
        match norm.as_str() {
            "" | "decodefirst" | "decode" => {}
            "prefillfirst" | "prefill" => {
                return Err(ConfigError::new(
                    FieldPath::key("stageOrder"),
                    ConfigErrorKind::Unsupported("stageOrder 'prefill-first'".into()),
                ))
            }
            _ => {
                return Err(ConfigError::invalid(
                    FieldPath::key("stageOrder"),
                    alloc::format!("'{order}' is not 'decode-first' or 'prefill-first'"),
                ))
            }
        }
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

impl ProfileHandler for DisaggProfileHandler {
    /// The prefill profile runs against the decode pick (topology-aware prefill selection).
    fn peer_for(
        &self,
        profile: usize,
        names: &[String],
        results: &ProfileResults,
    ) -> Option<usize> {
        if position(names, &self.prefill) != Some(profile) {
            return None;
        }
        let d = position(names, &self.decode)?;
        results
            .results
            .get(d)
            .and_then(|r| r.as_ref())
            .and_then(|r| r.targets.first().copied())
    }

    fn pick_profiles(
        &self,
        cx: &CycleContext<'_>,
        names: &[String],
        results: &ProfileResults,
    ) -> Vec<usize> {
        let Some(d) = position(names, &self.decode) else {
            return Vec::new();
        };
        if !results.ran.get(d).copied().unwrap_or(true) {
            return alloc::vec![d];
        }
        let Some(target) = results
            .results
            .get(d)
            .and_then(|r| r.as_ref())
            .and_then(|r| r.targets.first().copied())
        else {
            return Vec::new();
        };
        // Encode stage, between decode and prefill.
        if let (Some(e), Some(dec)) = (position(names, &self.encode), &self.encode_decider) {
            let ran = results.ran.get(e).copied().unwrap_or(true);
            if !ran
                && dec
                    .as_pd_decider()
                    .is_some_and(|x| x.disaggregate(cx, target))
            {
                return alloc::vec![e];
            }
        }
        let Some(p) = position(names, &self.prefill) else {
            return Vec::new();
        };
        if results.ran.get(p).copied().unwrap_or(true) {
            return Vec::new();
        }
        let split = match &self.decider {
            None => true,
            Some(dp) => dp
                .as_pd_decider()
                .is_some_and(|x| x.disaggregate(cx, target)),
        };
        if split {
            alloc::vec![p]
        } else {
            Vec::new()
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
            if let Some(ep) = results
                .results
                .get(p)
                .and_then(|r| r.as_ref())
                .and_then(|r| r.targets.first())
                .and_then(|&i| cx.endpoint(i))
            {
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
