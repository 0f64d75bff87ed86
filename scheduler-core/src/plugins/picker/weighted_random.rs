//! `weighted-random-picker`: picks with probability proportional to score, without replacement.
//!
//! Algorithm: A-Res weighted reservoir sampling (Efraimidis & Spirakis 2006), as GIE
//! `picker/weightedrandom/`: key = `u^(1/score)` with `u` uniform in (0, 1) (`u = 0` replaced by
//! 1e-10); the highest keys win. We compare `ln(u) / score`, which orders the same. Scores ≤ 0
//! get the lowest key, so they are picked only when there are too few positive ones; when every
//! score is 0 the pick is uniformly random. Parameters: `maxNumOfEndpoints` (default 1).

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Picker, Plugin, ScoredEndpoint, TypedName};
use crate::plugins::picker::common::PickerParams;
use crate::plugins::picker::random::RandomPicker;
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "weighted-random-picker";

/// Builds a [`WeightedRandomPicker`].
///
/// # Errors
/// Unknown fields; `maxNumOfEndpoints` < 1.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: PickerParams = parse_params(params)?;
    Ok(Arc::new(WeightedRandomPicker {
        typed_name: TypedName::new(TYPE, name),
        n: p.count()?,
    }))
}

/// See the module docs.
pub struct WeightedRandomPicker {
    typed_name: TypedName,
    n: usize,
}

impl Plugin for WeightedRandomPicker {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_picker(&self) -> Option<&dyn Picker> {
        Some(self)
    }
}

impl Picker for WeightedRandomPicker {
    fn pick(
        &self,
        _: &CycleContext<'_>,
        scored: &mut [ScoredEndpoint],
        rng: &mut dyn Rng,
        out: &mut Vec<ScoredEndpoint>,
    ) {
        if scored.iter().all(|c| c.score <= 0.0) {
            RandomPicker::pick_n(scored, self.n, rng, out);
            return;
        }
        let mut keyed: Vec<(f64, ScoredEndpoint)> = scored
            .iter()
            .map(|c| {
                let key = if c.score > 0.0 {
                    let u = rng.next_f64().max(1e-10);
                    libm::log(u) / c.score
                } else {
                    f64::NEG_INFINITY
                };
                (key, *c)
            })
            .collect();
        keyed.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        out.extend(keyed.into_iter().take(self.n).map(|(_, c)| c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::run_picker;

    #[test]
    fn proportional_to_score() {
        let p = WeightedRandomPicker {
            typed_name: TypedName::new(TYPE, TYPE),
            n: 1,
        };
        let mk = || {
            [1.0, 3.0, 0.0]
                .iter()
                .enumerate()
                .map(|(i, &score)| ScoredEndpoint { endpoint: i, score })
                .collect::<Vec<_>>()
        };
        let mut counts = [0u32; 3];
        for seed in 0..10_000 {
            counts[run_picker(&p, mk(), seed)[0]] += 1;
        }
        // Expected 2500 / 7500 / 0.
        assert_eq!(counts[2], 0);
        assert!((2200..2800).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn all_zero_is_uniform() {
        let p = WeightedRandomPicker {
            typed_name: TypedName::new(TYPE, TYPE),
            n: 1,
        };
        let mut counts = [0u32; 2];
        for seed in 0..10_000 {
            let c = (0..2)
                .map(|i| ScoredEndpoint {
                    endpoint: i,
                    score: 0.0,
                })
                .collect();
            counts[run_picker(&p, c, seed)[0]] += 1;
        }
        assert!((4600..5400).contains(&counts[0]), "{counts:?}");
    }
}
