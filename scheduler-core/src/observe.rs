//! How a host learns what each plugin cost: the scheduler reports every plugin call at the
//! extension points GIE times (`inference_extension_plugin_duration_seconds`), with the host's
//! clock, and what the prefix lookup found for the endpoint chosen (GIE's prefix-indexer hit
//! series). The default [`NoObserver`] reads no clock, so a caller that does not ask pays
//! nothing.

use alloc::sync::Arc;

use crate::plugin::Plugin;

/// The extension point a plugin call belongs to. [`ExtensionPoint::label`] is the value GIE
/// v1.5.0 uses for the `extension_point` label (scheduler and request-control constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExtensionPoint {
    /// The profile handler choosing the profiles to run.
    ProfilePicker,
    /// A filter narrowing the candidates of one profile.
    Filter,
    /// A scorer of one profile.
    Scorer,
    /// The picker of one profile.
    Picker,
    /// The profile handler combining the profiles' results.
    ProcessProfilesResults,
    /// A data producer preparing per-request data before the profiles run.
    PrepareData,
    /// An admitter deciding whether the request is scheduled at all.
    Admission,
    /// A pre-request hook after the decision.
    PreRequest,
}

impl ExtensionPoint {
    /// Every extension point, in the order of [`ExtensionPoint::index`].
    pub const ALL: [ExtensionPoint; 8] = [
        ExtensionPoint::ProfilePicker,
        ExtensionPoint::Filter,
        ExtensionPoint::Scorer,
        ExtensionPoint::Picker,
        ExtensionPoint::ProcessProfilesResults,
        ExtensionPoint::PrepareData,
        ExtensionPoint::Admission,
        ExtensionPoint::PreRequest,
    ];

    /// The `extension_point` label value.
    pub fn label(self) -> &'static str {
        match self {
            ExtensionPoint::ProfilePicker => "ProfilePicker",
            ExtensionPoint::Filter => "Filter",
            ExtensionPoint::Scorer => "Scorer",
            ExtensionPoint::Picker => "Picker",
            ExtensionPoint::ProcessProfilesResults => "ProcessProfilesResults",
            ExtensionPoint::PrepareData => "PrepareData",
            ExtensionPoint::Admission => "Admission",
            ExtensionPoint::PreRequest => "PreRequest",
        }
    }

    /// Position in [`ExtensionPoint::ALL`] (0..8).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Receives plugin timings during [`crate::EndpointPicker::schedule_observed`].
pub trait SchedulingObserver {
    /// The host's monotonic clock in nanoseconds, or `None` to skip timing (no clock is read
    /// then).
    fn now_ns(&mut self) -> Option<u64>;
    /// `plugin` ran at `point` and took `ns` nanoseconds.
    fn plugin_ran(&mut self, point: ExtensionPoint, plugin: &Arc<dyn Plugin>, ns: u64);
    /// A pre-request hook says how much of the prompt the chosen endpoint was believed to hold
    /// ([`crate::plugin::PreRequest::prefix_hit`]). Ignored by default.
    fn prefix_hit(&mut self, hit: PrefixHit) {
        let _ = hit;
    }
}

/// How much of a request's prompt the endpoint it goes to was believed to hold in its prefix
/// cache, in prompt bytes as GIE counts them (matched blocks × block size in tokens × 4
/// characters per token; GIE's `RecordPrefixCacheMatch`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixHit {
    /// Bytes of the prompt's leading blocks the endpoint holds.
    pub matched_bytes: u64,
    /// Bytes of every block the prompt was cut into (the lookup's whole length).
    pub total_bytes: u64,
}

impl PrefixHit {
    /// `matched / total` as a fraction 0..1, or `None` when the prompt had no block.
    pub fn ratio(&self) -> Option<f64> {
        (self.total_bytes > 0).then(|| self.matched_bytes as f64 / self.total_bytes as f64)
    }
}

/// Times nothing.
pub struct NoObserver;

impl SchedulingObserver for NoObserver {
    fn now_ns(&mut self) -> Option<u64> {
        None
    }
    fn plugin_ran(&mut self, _: ExtensionPoint, _: &Arc<dyn Plugin>, _: u64) {}
}

/// Runs `f` and reports it as `plugin` at `point` when the observer keeps a clock.
#[inline]
pub(crate) fn timed<R>(
    obs: &mut dyn SchedulingObserver,
    point: ExtensionPoint,
    plugin: &Arc<dyn Plugin>,
    f: impl FnOnce() -> R,
) -> R {
    match obs.now_ns() {
        None => f(),
        Some(start) => {
            let r = f();
            let end = obs.now_ns().unwrap_or(start);
            obs.plugin_ran(point, plugin, end.saturating_sub(start));
            r
        }
    }
}
