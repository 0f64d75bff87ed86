//! `max-score-picker`: the highest total score wins; ties are broken uniformly at random.
//!
//! GIE (`picker/maxscore/picker.go`) shuffles then stable-sorts. We get the same distribution
//! without sorting: each of the `maxNumOfEndpoints` rounds takes the best remaining candidate,
//! choosing among equal scores by reservoir sampling (uniform). Cost O(n × N).
//! Parameters: `maxNumOfEndpoints` (default 1).

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Picker, Plugin, ScoredEndpoint, TypedName};
use crate::plugins::picker::common::PickerParams;
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "max-score-picker";

/// Builds a [`MaxScorePicker`].
///
/// # Errors
/// Unknown fields; `maxNumOfEndpoints` < 1.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: PickerParams = parse_params(params)?;
    Ok(Arc::new(MaxScorePicker {
        typed_name: TypedName::new(TYPE, name),
        n: p.count()?,
    }))
}

/// See the module docs.
pub struct MaxScorePicker {
    typed_name: TypedName,
    n: usize,
}

impl Plugin for MaxScorePicker {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_picker(&self) -> Option<&dyn Picker> {
        Some(self)
    }
}

impl Picker for MaxScorePicker {
    fn pick(
        &self,
        _: &CycleContext<'_>,
        scored: &mut [ScoredEndpoint],
        rng: &mut dyn Rng,
        out: &mut Vec<ScoredEndpoint>,
    ) {
        let rounds = self.n.min(scored.len());
        for round in 0..rounds {
            let rest = scored.get(round..).unwrap_or(&[]);
            let mut best = 0usize;
            let mut ties = 0usize;
            let mut best_score = f64::NEG_INFINITY;
            for (j, c) in rest.iter().enumerate() {
                if c.score > best_score {
                    best_score = c.score;
                    best = j;
                    ties = 1;
                } else if c.score == best_score {
                    ties += 1;
                    if rng.below(ties) == 0 {
                        best = j;
                    }
                }
            }
            scored.swap(round, round + best);
            if let Some(c) = scored.get(round) {
                out.push(*c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::run_picker;

    fn s(scores: &[f64]) -> Vec<ScoredEndpoint> {
        scores
            .iter()
            .enumerate()
            .map(|(i, &score)| ScoredEndpoint { endpoint: i, score })
            .collect()
    }

    #[test]
    fn highest_first_then_fallbacks_in_order() {
        let p = MaxScorePicker {
            typed_name: TypedName::new(TYPE, TYPE),
            n: 3,
        };
        //             0    1    2    3
        let picked = run_picker(&p, s(&[0.5, 1.9, 0.8, 1.5]), 1);
        assert_eq!(picked, [1, 3, 2]);
    }

    #[test]
    fn seeded_tie_break_is_exact_and_uniform() {
        let p = MaxScorePicker {
            typed_name: TypedName::new(TYPE, TYPE),
            n: 1,
        };
        let a = run_picker(&p, s(&[1.0, 1.0, 1.0, 0.2]), 42);
        let b = run_picker(&p, s(&[1.0, 1.0, 1.0, 0.2]), 42);
        assert_eq!(a, b, "same seed, same pick");
        let mut counts = [0u32; 4];
        for seed in 0..10_000 {
            counts[run_picker(&p, s(&[1.0, 1.0, 1.0, 0.2]), seed)[0]] += 1;
        }
        assert_eq!(counts[3], 0, "a lower score never wins");
        for c in &counts[..3] {
            assert!((3000..3700).contains(c), "uniform ties: {counts:?}");
        }
    }
}
