//! `header-profile-handler` (llm-d, Alpha): runs the one scheduling profile a request header
//! names (llm-d-router `scheduling/profilehandler/headerprofile`, read at the commit in
//! `testdata/upstream/README.md`).
//!
//! For a caller that already knows which stage of a disaggregated pipeline each call is for
//! (llm-d's coordinator sends one call per stage, e.g. `EPP-Profile: prefill`), so that one
//! picker serves the `encode`, `prefill` and `decode` profiles instead of one picker per stage.
//! Per request:
//! - with one profile configured, that profile runs whatever the header says;
//! - else the profile named by the header (value trimmed, matched exactly) runs alone, and is
//!   the primary profile (its pick is the destination);
//! - a missing or blank header runs `defaultProfile` (calls such as `GET /v1/models` carry none);
//! - a value that names no configured profile is refused with **400** (`invalid_field`) naming
//!   the header and the value. Upstream answers 429 here only because its profile-handler
//!   interface cannot carry a typed error (its README says 400 is the right status).
//! - a `defaultProfile` that is not configured is a load warning (upstream loads such a config),
//!   and each request that needs it is refused with 429 (no target endpoint) saying so.
//!
//! Unlike `disagg-profile-handler` it sets no `x-prefiller-host-port` header: one call, one stage.
//!
//! Parameters: `headerName` (default `EPP-Profile`; header names are compared lower-case),
//! `defaultProfile` (default `decode`).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::{ConfigError, RequestError};
use crate::model::result::SchedulingResult;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Plugin, ProfileHandler, ProfileResults, TypedName};

/// Plugin type name.
pub const TYPE: &str = "header-profile-handler";

/// The header read when `headerName` is not set.
pub const DEFAULT_HEADER: &str = "EPP-Profile";

/// The profile run when the header is missing and `defaultProfile` is not set.
pub const DEFAULT_PROFILE: &str = "decode";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    header_name: String,
    default_profile: String,
}

/// Builds a [`HeaderProfileHandler`].
///
/// # Errors
/// Unknown fields.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let header = p.header_name.trim().to_ascii_lowercase();
    let default_profile = p.default_profile.trim();
    Ok(Arc::new(HeaderProfileHandler {
        typed_name: TypedName::new(TYPE, name),
        header: if header.is_empty() {
            DEFAULT_HEADER.to_ascii_lowercase()
        } else {
            header
        },
        default_profile: String::from(if default_profile.is_empty() {
            DEFAULT_PROFILE
        } else {
            default_profile
        }),
    }))
}

/// See the module docs.
pub struct HeaderProfileHandler {
    typed_name: TypedName,
    /// Lower-case header name.
    header: String,
    default_profile: String,
}

impl HeaderProfileHandler {
    /// The header's trimmed value; "" when absent.
    fn asked<'r>(&self, cx: &'r CycleContext<'_>) -> &'r str {
        cx.request.header(&self.header).map_or("", str::trim)
    }

    /// The profile to run: the only one, else the one the header (or the default) names.
    fn chosen(&self, cx: &CycleContext<'_>, names: &[String]) -> Option<usize> {
        if names.len() == 1 {
            return Some(0);
        }
        let asked = match self.asked(cx) {
            "" => self.default_profile.as_str(),
            v => v,
        };
        names.iter().position(|n| n == asked)
    }
}

impl Plugin for HeaderProfileHandler {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_profile_handler(&self) -> Option<&dyn ProfileHandler> {
        Some(self)
    }
}

impl ProfileHandler for HeaderProfileHandler {
    fn pick_profiles(
        &self,
        cx: &CycleContext<'_>,
        names: &[String],
        results: &ProfileResults,
    ) -> Vec<usize> {
        if results.ran.iter().any(|&r| r) {
            return Vec::new();
        }
        self.chosen(cx, names).into_iter().collect()
    }

    fn check_profiles(&self, names: &[String]) -> Vec<String> {
        if names.len() > 1 && !names.contains(&self.default_profile) {
            return Vec::from([format!(
                "defaultProfile '{}' is not a configured scheduling profile: requests without the '{}' header will be refused",
                self.default_profile, self.header
            )]);
        }
        Vec::new()
    }

    fn no_profile_ran(&self, cx: &CycleContext<'_>, names: &[String]) -> RequestError {
        match self.asked(cx) {
            "" => RequestError::NoTargetEndpoint(format!(
                "header profile handler: defaultProfile '{}' is not a configured scheduling profile (configured: {})",
                self.default_profile,
                names.join(", ")
            )),
            v => RequestError::InvalidField(format!(
                "header '{}' names scheduling profile '{v}', which is not configured (configured: {})",
                self.header,
                names.join(", ")
            )),
        }
    }

    fn process_results(
        &self,
        _: &CycleContext<'_>,
        names: &[String],
        results: ProfileResults,
    ) -> Result<SchedulingResult, RequestError> {
        let Some(ran) = results.ran.iter().position(|&r| r) else {
            return Err(RequestError::NoTargetEndpoint("no profile ran".into()));
        };
        let result = results.results.into_iter().nth(ran).flatten();
        let name = names.get(ran).cloned().unwrap_or_default();
        match result {
            Some(r) if !r.targets.is_empty() => Ok(SchedulingResult {
                profile_results: Vec::from([(name, Some(r))]),
                primary_profile: 0,
                headers: Vec::new(),
            }),
            _ => Err(RequestError::NoTargetEndpoint(format!(
                "profile '{name}': all candidates were filtered out"
            ))),
        }
    }
}
