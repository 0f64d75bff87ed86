//! Scheduling-layer extension points (GIE `framework/interface/scheduling/plugins.go`).
//!
//! A profile run: filters in order (a filter that empties the list stops the chain), then the
//! weighted sum of scorers (weights not normalized), then one picker. The profile handler says
//! which profiles run and turns their results into the decision.
//!
//! Candidates are indices into [`CycleContext::endpoints`]; per-candidate outputs are written into
//! buffers the caller provides, indexed like the candidate slice, so a cycle allocates little.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::RequestError;
use crate::model::endpoint::Endpoint;
use crate::model::request::InferenceRequest;
use crate::model::result::{ProfileRunResult, SchedulingResult};
use crate::plugin::state::CycleState;
use crate::rng::Rng;

/// Everything a scheduling plugin may read during one cycle.
#[derive(Clone, Copy)]
pub struct CycleContext<'a> {
    /// The request being scheduled.
    pub request: &'a InferenceRequest<'a>,
    /// The whole pool snapshot; candidates index into it.
    pub endpoints: &'a [Endpoint],
    /// Attributes written by data producers this cycle.
    pub state: &'a CycleState,
    /// Current time, milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Pool index of the endpoint an earlier profile of this cycle chose and this profile
    /// should stay close to: the decode pick while the prefill profile runs (llm-d's
    /// `peer-endpoint` request attribute, which `disagg-profile-handler` publishes). `None`
    /// outside that case.
    pub peer: Option<usize>,
}

impl CycleContext<'_> {
    /// The endpoint at pool index `i`, if any.
    pub fn endpoint(&self, i: usize) -> Option<&Endpoint> {
        self.endpoints.get(i)
    }
}

/// Informational category of a scorer (GIE `ScorerCategory`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScorerCategory {
    /// Prefers endpoints that already hold state for the request (prefix, LoRA, session).
    Affinity,
    /// Spreads load.
    Distribution,
    /// Mixes both.
    Balance,
}

/// Narrows the candidate list.
pub trait Filter {
    /// Clears `keep[i]` for every candidate `candidates[i]` to drop. `keep` comes all true and
    /// has the candidates' length. A filter can only remove: the framework applies `keep`.
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        rng: &mut dyn Rng,
    );
}

/// Scores candidates.
///
/// Contract: each score is in `[0, 1]`, higher is better. The framework clamps values outside
/// that range (NaN becomes 0) before multiplying by the profile weight.
pub trait Scorer {
    /// Informational category.
    fn category(&self) -> ScorerCategory {
        ScorerCategory::Distribution
    }
    /// Writes the score of `candidates[i]` into `scores[i]` (prefilled with 0).
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]);
}

/// A candidate and its total weighted score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredEndpoint {
    /// Index into the pool.
    pub endpoint: usize,
    /// Sum over scorers of clamp(score) × weight.
    pub score: f64,
}

/// Chooses the targets among scored candidates.
pub trait Picker {
    /// Pushes the picked endpoints into `out` (empty on entry): primary first, then fallbacks,
    /// no duplicates, only from `scored`. `scored` may be reordered.
    fn pick(
        &self,
        cx: &CycleContext<'_>,
        scored: &mut [ScoredEndpoint],
        rng: &mut dyn Rng,
        out: &mut Vec<ScoredEndpoint>,
    );
}

/// Profiles whose results a cycle keeps inline (no allocation) before they move to the heap.
pub const INLINE_PROFILES: usize = 4;

/// Per-profile results collected during a cycle, indexed like the profile list (slices; on the
/// stack for up to [`INLINE_PROFILES`] profiles).
#[derive(Clone, Debug, Default)]
pub struct ProfileResults {
    /// Whether each profile has run.
    pub ran: smallvec::SmallVec<[bool; INLINE_PROFILES]>,
    /// Its result, `None` when it failed or has not run.
    pub results: smallvec::SmallVec<[Option<ProfileRunResult>; INLINE_PROFILES]>,
}

/// Decides which profiles run and turns their results into the decision. One per scheduler.
pub trait ProfileHandler {
    /// Indices of the profiles to run next, given what ran so far; empty ends the cycle.
    /// A profile that already ran is never run again.
    fn pick_profiles(
        &self,
        cx: &CycleContext<'_>,
        profile_names: &[String],
        results: &ProfileResults,
    ) -> Vec<usize>;

    /// The peer endpoint (pool index) profile `profile` runs against, given the results so far
    /// (see [`CycleContext::peer`]); `None` by default.
    fn peer_for(
        &self,
        profile: usize,
        profile_names: &[String],
        results: &ProfileResults,
    ) -> Option<usize> {
        let _ = (profile, profile_names, results);
        None
    }

    /// Checks the handler's own parameters against the configured profile names at load; each
    /// returned message becomes a load warning (e.g. a default profile that is not configured).
    fn check_profiles(&self, profile_names: &[String]) -> Vec<String> {
        let _ = profile_names;
        Vec::new()
    }

    /// The refusal when [`Self::pick_profiles`] ran no profile at all (then
    /// [`Self::process_results`] is not called). By default 429 "no profile ran"; a handler
    /// that picks by what the request asked for names the bad request instead (400).
    fn no_profile_ran(&self, cx: &CycleContext<'_>, profile_names: &[String]) -> RequestError {
        let _ = (cx, profile_names);
        RequestError::NoTargetEndpoint("no profile ran".into())
    }

    /// The decision from the collected results.
    ///
    /// # Errors
    /// [`RequestError::NoTargetEndpoint`] when the results do not give a primary target.
    fn process_results(
        &self,
        cx: &CycleContext<'_>,
        profile_names: &[String],
        results: ProfileResults,
    ) -> Result<SchedulingResult, RequestError>;
}

/// Decides whether a request should be prefilled on a separate endpoint (llm-d P/D deciders).
pub trait PdDecider {
    /// True to run the stage this decider guards (prefill, or encode) for a request whose
    /// decode target is pool index `decode_endpoint`; `None` when the stage is decided before
    /// decode has picked (`disagg-profile-handler`'s `prefill-first` order asks its encode
    /// decider that way).
    fn disaggregate(&self, cx: &CycleContext<'_>, decode_endpoint: Option<usize>) -> bool;
}
