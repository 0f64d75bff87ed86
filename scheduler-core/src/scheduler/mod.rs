//! The scheduling layer: the profile handler says which profiles run; each profile filters,
//! scores and picks ([`profile`]); the handler turns the results into the decision.
//! GIE `pkg/epp/scheduling/scheduler.go` at GIE@1748e829.

pub mod profile;

use alloc::string::String;
use alloc::sync::Arc;

use crate::error::RequestError;
use crate::model::result::SchedulingResult;
use crate::observe::{timed, ExtensionPoint, SchedulingObserver};
use crate::plugin::{CycleContext, Plugin, ProfileResults};
use crate::rng::Rng;

pub use profile::SchedulerProfile;

/// Profiles plus the profile handler; immutable after loading.
pub struct Scheduler {
    pub(crate) profiles: alloc::vec::Vec<SchedulerProfile>,
    pub(crate) names: alloc::vec::Vec<String>,
    pub(crate) handler: Arc<dyn Plugin>,
}

impl Scheduler {
    /// Profile names in configuration order.
    pub fn profile_names(&self) -> &[String] {
        &self.names
    }

    /// The profiles.
    pub fn profiles(&self) -> &[SchedulerProfile] {
        &self.profiles
    }

    /// Runs one scheduling cycle over `candidates` (pool indices).
    ///
    /// Every profile runs on the same full candidate list; each runs at most once; the loop ends
    /// when the handler returns no more profiles.
    ///
    /// # Errors
    /// [`RequestError::NoTargetEndpoint`] when no profile ran or the handler finds no target.
    pub fn schedule(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        rng: &mut dyn Rng,
        obs: &mut dyn SchedulingObserver,
    ) -> Result<SchedulingResult, RequestError> {
        let Some(handler) = self.handler.as_profile_handler() else {
            return Err(RequestError::NoTargetEndpoint("no profile handler".into()));
        };
        let n = self.profiles.len();
        let mut results = ProfileResults {
            ran: smallvec::smallvec![false; n],
            results: smallvec::smallvec![None; n],
        };
        // Each round runs at least one new profile, so n + 1 rounds always suffice.
        for _ in 0..=n {
            let next = timed(obs, ExtensionPoint::ProfilePicker, &self.handler, || {
                handler.pick_profiles(cx, &self.names, &results)
            });
            let mut ran_any = false;
            for i in next {
                let (Some(profile), Some(false)) =
                    (self.profiles.get(i), results.ran.get(i).copied())
                else {
                    continue;
                };
                let pcx = CycleContext {
                    peer: handler.peer_for(i, &self.names, &results),
                    ..*cx
                };
                let r = profile.run(&pcx, candidates, rng, obs);
                if let (Some(slot), Some(flag)) =
                    (results.results.get_mut(i), results.ran.get_mut(i))
                {
                    *slot = r;
                    *flag = true;
                    ran_any = true;
                }
            }
            if !ran_any {
                break;
            }
        }
        if !results.ran.iter().any(|&r| r) {
            return Err(handler.no_profile_ran(cx, &self.names));
        }
        timed(
            obs,
            ExtensionPoint::ProcessProfilesResults,
            &self.handler,
            || handler.process_results(cx, &self.names, results),
        )
    }
}
