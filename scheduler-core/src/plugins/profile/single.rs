//! `single-profile-handler`: runs the one profile; its result is the decision.
//!
//! GIE `scheduling/profile/single_profile_handler.go`: `Pick` returns every profile not yet run;
//! `ProcessResults` needs exactly one profile with a non-empty result, else "failed to find
//! target endpoint" (429). Parameters: none.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::{ConfigError, RequestError};
use crate::model::result::SchedulingResult;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Plugin, ProfileHandler, ProfileResults, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "single-profile-handler";

/// Builds a [`SingleProfileHandler`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(SingleProfileHandler {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct SingleProfileHandler {
    typed_name: TypedName,
}

impl Plugin for SingleProfileHandler {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_profile_handler(&self) -> Option<&dyn ProfileHandler> {
        Some(self)
    }
}

impl ProfileHandler for SingleProfileHandler {
    fn pick_profiles(
        &self,
        _: &CycleContext<'_>,
        names: &[String],
        results: &ProfileResults,
    ) -> Vec<usize> {
        (0..names.len())
            .filter(|&i| !results.ran.get(i).copied().unwrap_or(true))
            .collect()
    }

    fn process_results(
        &self,
        _: &CycleContext<'_>,
        names: &[String],
        results: ProfileResults,
    ) -> Result<SchedulingResult, RequestError> {
        if names.len() != 1 {
            return Err(RequestError::NoTargetEndpoint(
                "single profile handler needs exactly one profile".into(),
            ));
        }
        let result = results.results.into_iter().next().flatten();
        match result {
            Some(r) if !r.targets.is_empty() => Ok(SchedulingResult {
                profile_results: names.iter().cloned().zip([Some(r)]).collect(),
                primary_profile: 0,
                headers: Vec::new(),
            }),
            _ => Err(RequestError::NoTargetEndpoint(
                "all candidates were filtered out".into(),
            )),
        }
    }
}
