//! One scheduling profile: filters in order, then the weighted sum of scorers, then one picker
//! (GIE `scheduler_profile.go`).
//!
//! - A filter that empties the list stops the chain; the profile then has no result.
//! - Each scorer's values are clamped to [0, 1] (NaN → 0) and multiplied by its weight; the
//!   weights are not normalized.
//! - The picker's output is checked: only candidates, no duplicates.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::model::result::{ProfileRunResult, RANKED};
use crate::observe::{timed, ExtensionPoint, SchedulingObserver};
use crate::plugin::{CycleContext, Plugin, ScoredEndpoint};
use crate::rng::Rng;
use crate::scratch::Scratch;

/// A configured profile.
pub struct SchedulerProfile {
    /// Profile name.
    pub name: String,
    pub(crate) filters: Vec<Arc<dyn Plugin>>,
    pub(crate) scorers: Vec<(Arc<dyn Plugin>, f64)>,
    pub(crate) picker: Arc<dyn Plugin>,
}

/// Clamps a scorer output to the [0, 1] contract.
fn clamp01(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 1.0)
    }
}

impl SchedulerProfile {
    /// Names of the filters, scorers (with weights) and picker, for logs and debug output.
    pub fn describe(&self) -> (Vec<&str>, Vec<(&str, f64)>, &str) {
        (
            self.filters
                .iter()
                .map(|p| p.typed_name().name.as_str())
                .collect(),
            self.scorers
                .iter()
                .map(|(p, w)| (p.typed_name().name.as_str(), *w))
                .collect(),
            self.picker.typed_name().name.as_str(),
        )
    }

    /// Runs the profile; `None` when the filters leave nothing or the picker picks nothing.
    pub fn run(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        rng: &mut dyn Rng,
        obs: &mut dyn SchedulingObserver,
    ) -> Option<ProfileRunResult> {
        let mut cands: Scratch<usize> = Scratch::from_slice(candidates);
        let mut keep: Scratch<bool> = Scratch::with_capacity(cands.len());
        for f in &self.filters {
            let Some(filter) = f.as_filter() else {
                continue;
            };
            keep.clear();
            keep.resize(cands.len(), true);
            timed(obs, ExtensionPoint::Filter, f, || {
                filter.filter(cx, &cands, &mut keep, rng)
            });
            let mut k = keep.iter();
            cands.retain(|_| k.next().copied().unwrap_or(false));
            if cands.is_empty() {
                log::debug!(
                    "profile '{}': filter '{}' left no endpoints",
                    self.name,
                    f.typed_name()
                );
                return None;
            }
        }

        let mut totals: Scratch<f64> = smallvec::smallvec![0.0f64; cands.len()];
        let mut one: Scratch<f64> = smallvec::smallvec![0.0f64; cands.len()];
        // Debug only: every scorer's clamped scores, to report the primary's breakdown.
        let mut per_scorer: Vec<(String, Vec<f64>, f64)> = Vec::new();
        for (s, weight) in &self.scorers {
            let Some(scorer) = s.as_scorer() else {
                continue;
            };
            one.fill(0.0);
            timed(obs, ExtensionPoint::Scorer, s, || {
                scorer.score(cx, &cands, &mut one)
            });
            for (t, v) in totals.iter_mut().zip(one.iter_mut()) {
                *v = clamp01(*v);
                *t += *v * weight;
            }
            if cx.request.debug {
                per_scorer.push((s.typed_name().name.clone(), one.to_vec(), *weight));
            }
        }

        let mut scored: Scratch<ScoredEndpoint> = cands
            .iter()
            .zip(&totals)
            .map(|(&endpoint, &score)| ScoredEndpoint { endpoint, score })
            .collect();
        let picker = self.picker.as_picker()?;
        let mut picked = Vec::new();
        timed(obs, ExtensionPoint::Picker, &self.picker, || {
            picker.pick(cx, &mut scored, rng, &mut picked)
        });

        let mut result = ProfileRunResult::default();
        for p in picked {
            if cands.contains(&p.endpoint) && !result.targets.contains(&p.endpoint) {
                result.targets.push(p.endpoint);
                result.scores.push(p.score);
            }
        }
        if cx.request.emit_scores && !self.scorers.is_empty() {
            result.scored = cands.iter().copied().zip(totals.iter().copied()).collect();
        }
        if cx.request.debug {
            result.candidates = cands.len();
            let mut order: Vec<usize> = (0..cands.len()).collect();
            let total = |i: usize| totals.get(i).copied().unwrap_or(0.0);
            order.sort_by(|&a, &b| total(b).total_cmp(&total(a)));
            result.ranked = order
                .into_iter()
                .take(RANKED)
                .filter_map(|i| {
                    let scores = per_scorer
                        .iter()
                        .map(|(_, s, _)| s.get(i).copied().unwrap_or(0.0))
                        .collect();
                    Some((*cands.get(i)?, total(i), scores))
                })
                .collect();
        }
        if let Some(pos) = result
            .targets
            .first()
            .and_then(|p| cands.iter().position(|c| c == p))
        {
            result.breakdown = per_scorer
                .into_iter()
                .map(|(name, scores, w)| (name, scores.get(pos).copied().unwrap_or(0.0), w))
                .collect();
        }
        if result.targets.is_empty() {
            None
        } else {
            Some(result)
        }
    }
}
