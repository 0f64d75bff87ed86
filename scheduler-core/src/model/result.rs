//! What a scheduling cycle returns.

use alloc::string::String;
use alloc::vec::Vec;

/// The outcome of one profile run: target endpoints in order, primary first, then fallbacks.
/// Targets are indices into the endpoint slice the cycle ran on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProfileRunResult {
    /// Picked endpoints, primary first.
    pub targets: Vec<usize>,
    /// Total weighted score of each target, same order.
    pub scores: Vec<f64>,
    /// Only when the request asked for debug output: for the primary target, each scorer's
    /// `(instance name, raw score in [0, 1], weight)` in profile order.
    pub breakdown: Vec<(String, f64, f64)>,
    /// Only with debug output: candidates left after the profile's filters.
    pub candidates: usize,
    /// Only with debug output: the best [`RANKED`] candidates by total score, best first, as
    /// `(endpoint index, total, each scorer's raw score in breakdown order)`.
    pub ranked: Vec<(usize, f64, Vec<f64>)>,
    /// Only when the request asked for it ([`crate::InferenceRequest::emit_scores`]) and the
    /// profile has scorers: every candidate left after the filters, as `(endpoint index, total
    /// weighted score)`, in candidate order. llm-d-router publishes the same set (its
    /// `--emit-endpoint-scores`: every endpoint the primary profile scored, not only the picked).
    pub scored: Vec<(usize, f64)>,
}

/// How many candidates [`ProfileRunResult::ranked`] keeps.
pub const RANKED: usize = 3;

/// The whole scheduling decision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchedulingResult {
    /// Per profile (by name) its result; `None` for a profile that ran and failed.
    pub profile_results: Vec<(String, Option<ProfileRunResult>)>,
    /// Index into `profile_results` of the profile whose targets receive the request.
    pub primary_profile: usize,
    /// Request headers to set besides the destination (e.g. `x-prefiller-host-port`); an empty
    /// value removes that header from the request instead.
    pub headers: Vec<(String, String)>,
}

impl SchedulingResult {
    /// The primary profile's result, if it has one.
    pub fn primary(&self) -> Option<&ProfileRunResult> {
        self.profile_results
            .get(self.primary_profile)
            .and_then(|(_, r)| r.as_ref())
    }

    /// The primary profile's targets (empty if none).
    pub fn primary_targets(&self) -> &[usize] {
        self.primary().map(|r| r.targets.as_slice()).unwrap_or(&[])
    }

    /// The result of the profile named `name`, if it ran and succeeded.
    pub fn profile(&self, name: &str) -> Option<&ProfileRunResult> {
        self.profile_results
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, r)| r.as_ref())
    }
}
