//! `disagg-profile-handler` (llm-d): prefill/decode disaggregation.
//!
//! Runs the decode profile first; then asks the prefill decider whether to split prefill off for
//! the chosen decode endpoint; if so runs the prefill profile. The decode endpoint receives the
//! request (primary); the prefill endpoint is passed in the `x-prefiller-host-port` request
//! header for the decode side to call. If the prefill profile finds nothing, the request still
//! goes to decode alone.
//!
//! Parameters:
//! - `profiles.decode` / `profiles.prefill`: profile names (default `decode` / `prefill`);
//! - `deciders.prefill`: name of a decider plugin listed **before** this one in `plugins`
//!   (e.g. a `prefix-based-pd-decider`); without it, prefill is always split off.

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

/// Profile names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profiles {
    /// Decode profile name.
    pub decode: String,
    /// Prefill profile name.
    pub prefill: String,
}

impl Default for Profiles {
    fn default() -> Self {
        Profiles {
            decode: "decode".into(),
            prefill: "prefill".into(),
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
    let decider = match &p.deciders.prefill {
        None => None,
        Some(d) => {
            let path = FieldPath::key("deciders").with_key("prefill");
            let plugin = handle.plugin(d).ok_or_else(|| {
                ConfigError::new(path.clone(), ConfigErrorKind::UndefinedPluginRef(d.clone()))
            })?;
            if plugin.as_pd_decider().is_none() {
                return Err(ConfigError::new(
                    path,
                    ConfigErrorKind::WrongPluginKind {
                        name: d.clone(),
                        expected: "a prefill/decode decider",
                    },
                ));
            }
            Some(plugin.clone())
        }
    };
    Ok(Arc::new(DisaggProfileHandler {
        typed_name: TypedName::new(TYPE, name),
        decode: p.profiles.decode,
        prefill: p.profiles.prefill,
        decider,
    }))
}

/// See the module docs.
pub struct DisaggProfileHandler {
    typed_name: TypedName,
    decode: String,
    prefill: String,
    decider: Option<Arc<dyn Plugin>>,
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
        let Some(p) = position(names, &self.prefill) else {
            return Vec::new();
        };
        if results.ran.get(p).copied().unwrap_or(true) {
            return Vec::new();
        }
        let Some(target) = results
            .results
            .get(d)
            .and_then(|r| r.as_ref())
            .and_then(|r| r.targets.first().copied())
        else {
            return Vec::new();
        };
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
        Ok(SchedulingResult {
            profile_results: names.iter().cloned().zip(results.results).collect(),
            primary_profile: d,
            headers,
        })
    }
}
