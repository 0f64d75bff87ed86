//! `random-picker`: picks uniformly at random, ignoring scores (partial Fisher–Yates).
//! Parameters: `maxNumOfEndpoints` (default 1).

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Picker, Plugin, ScoredEndpoint, TypedName};
use crate::plugins::picker::common::PickerParams;
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "random-picker";

/// Builds a [`RandomPicker`].
///
/// # Errors
/// Unknown fields; `maxNumOfEndpoints` < 1.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: PickerParams = parse_params(params)?;
    Ok(Arc::new(RandomPicker {
        typed_name: TypedName::new(TYPE, name),
        n: p.count()?,
    }))
}

/// See the module docs.
pub struct RandomPicker {
    typed_name: TypedName,
    n: usize,
}

impl RandomPicker {
    /// A random picker returning `n` endpoints (used by `weighted-random-picker` when every
    /// score is 0).
    pub(crate) fn pick_n(
        scored: &mut [ScoredEndpoint],
        n: usize,
        rng: &mut dyn Rng,
        out: &mut Vec<ScoredEndpoint>,
    ) {
        let len = scored.len();
        for i in 0..n.min(len) {
            let j = i + rng.below(len - i);
            scored.swap(i, j);
            if let Some(c) = scored.get(i) {
                out.push(*c);
            }
        }
    }
}

impl Plugin for RandomPicker {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_picker(&self) -> Option<&dyn Picker> {
        Some(self)
    }
}

impl Picker for RandomPicker {
    fn pick(
        &self,
        _: &CycleContext<'_>,
        scored: &mut [ScoredEndpoint],
        rng: &mut dyn Rng,
        out: &mut Vec<ScoredEndpoint>,
    ) {
        Self::pick_n(scored, self.n, rng, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::run_picker;

    #[test]
    fn uniform_and_distinct() {
        let p = RandomPicker {
            typed_name: TypedName::new(TYPE, TYPE),
            n: 2,
        };
        let mk = || {
            (0..4)
                .map(|i| ScoredEndpoint {
                    endpoint: i,
                    score: i as f64,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run_picker(&p, mk(), 9), run_picker(&p, mk(), 9));
        let mut first = [0u32; 4];
        for seed in 0..10_000 {
            let got = run_picker(&p, mk(), seed);
            assert_eq!(got.len(), 2);
            assert_ne!(got[0], got[1]);
            first[got[0]] += 1;
        }
        assert!(first.iter().all(|c| (2200..2800).contains(c)), "{first:?}");
    }
}
