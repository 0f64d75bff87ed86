//! The latency model behind `predicted-latency-producer`: TTFT and TPOT of a request on an
//! endpoint, learnt in the proxy from the responses it forwards.
//!
//! llm-d trains its models (XGBoost by default, or `bayesian_ridge`) in a sidecar service and
//! asks it for predictions over HTTP on every request. Here the model lives in the picker:
//! [`OnlineRidge`] is Bayesian linear regression updated one observation at a time
//! (recursive least squares; with a Gaussian prior of precision `α` on the weights, its
//! weights after `n` observations equal the ridge / Bayesian-ridge posterior mean over those
//! `n`). A forgetting factor `λ` < 1 weights older observations by `λ^age`, so the model
//! follows a fleet whose speed changes (new hardware, another model version); the covariance is
//! kept bounded (no variance above the prior's) so a feature that stops varying cannot
//! make it blow up.
//!
//! Features ([`ttft_features`], [`tpot_features`]) are what llm-d's predictor is given —
//! KV-cache usage, waiting and running requests, prompt length, prefix-cache hit, prefill tokens
//! in flight — arranged for a linear model: the prompt is split into the part the endpoint
//! likely holds and the part it must prefill (llm-d's tree models learn that interaction; a
//! linear one needs it as a feature), token counts in thousands so every feature is of order 1.
//! Targets are milliseconds. The model has no notion of which endpoint served: endpoints
//! differ only through their load. `predicted-latency-producer` adds each endpoint's own speed
//! (actual over predicted, averaged) on top, for fleets of mixed hardware.
//!
//! Cost: a prediction is one dot product (7 or 5 terms); an update is O(D²) (49 multiply-adds).

/// Terms of the TTFT model.
pub const TTFT_FEATURES: usize = 7;
/// Terms of the TPOT model.
pub const TPOT_FEATURES: usize = 5;

/// Observations a model needs before its predictions are used (before that the consumers fall
/// back as llm-d's do when the predictor is unavailable).
pub const MIN_SAMPLES: u64 = 10;

/// Prior precision `α` of every weight (per unit feature): weak, so a few observations
/// dominate it.
pub const PRIOR_PRECISION: f64 = 1e-3;

/// Forgetting factor `λ` per observation: an observation 1,000 updates old weighs `0.999^1000`
/// ≈ 0.37 of a new one.
pub const FORGETTING: f64 = 0.999;

/// What an endpoint looks like to a request at scheduling time (one candidate's inputs).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Inputs {
    /// KV-cache usage, fraction 0..1 (scraped).
    pub kv_cache_usage: f64,
    /// Requests waiting in the server's queue (scraped).
    pub waiting: f64,
    /// Requests in flight on the endpoint: this picker's dispatched count where known, else
    /// the server's running count.
    pub running: f64,
    /// The request's prompt length, tokens.
    pub input_tokens: f64,
    /// Fraction 0..1 of the prompt the endpoint likely holds in its prefix cache.
    pub prefix_hit: f64,
    /// Prompt tokens of requests in flight on the endpoint (estimated), tokens.
    pub prefill_tokens_in_flight: f64,
}

/// The TTFT model's feature vector for `x`: intercept, KV usage, waiting, running, uncached and
/// cached prompt thousands of tokens, prefill thousands of tokens in flight.
pub fn ttft_features(x: &Inputs) -> [f64; TTFT_FEATURES] {
    let hit = x.prefix_hit.clamp(0.0, 1.0);
    let k = x.input_tokens / 1000.0;
    [
        1.0,
        x.kv_cache_usage,
        x.waiting,
        x.running,
        k * (1.0 - hit),
        k * hit,
        x.prefill_tokens_in_flight / 1000.0,
    ]
}

/// The TPOT model's feature vector for `x`: intercept, KV usage, waiting, running, prompt
/// thousands of tokens.
pub fn tpot_features(x: &Inputs) -> [f64; TPOT_FEATURES] {
    [
        1.0,
        x.kv_cache_usage,
        x.waiting,
        x.running,
        x.input_tokens / 1000.0,
    ]
}

/// Bayesian linear regression with `D` terms, updated online (see the module docs).
#[derive(Clone, Debug)]
pub struct OnlineRidge<const D: usize> {
    /// Weights: the posterior mean.
    w: [f64; D],
    /// Posterior covariance over the noise variance (`P`), symmetric.
    p: [[f64; D]; D],
    /// Largest variance (diagonal element of `P`) allowed: the prior's.
    max_var: f64,
    forgetting: f64,
    samples: u64,
}

impl<const D: usize> OnlineRidge<D> {
    /// A model with no observations: weights 0, covariance `I / prior_precision`.
    /// `forgetting` is `λ` in (0, 1]; values outside are taken as 1.
    pub fn new(prior_precision: f64, forgetting: f64) -> Self {
        let v = if prior_precision.is_finite() && prior_precision > 0.0 {
            1.0 / prior_precision
        } else {
            1.0
        };
        let mut p = [[0.0; D]; D];
        for (r, row) in p.iter_mut().enumerate() {
            if let Some(c) = row.get_mut(r) {
                *c = v;
            }
        }
        OnlineRidge {
            w: [0.0; D],
            p,
            max_var: v,
            forgetting: if forgetting > 0.0 && forgetting <= 1.0 {
                forgetting
            } else {
                1.0
            },
            samples: 0,
        }
    }

    /// Observations learnt so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// True once [`MIN_SAMPLES`] observations were learnt.
    pub fn is_warm(&self) -> bool {
        self.samples >= MIN_SAMPLES
    }

    /// The weights (posterior mean), e.g. to predict outside a lock.
    pub fn weights(&self) -> [f64; D] {
        self.w
    }

    /// The prediction for `x` with weights `w`, never below 0 (a latency).
    pub fn predict_with(w: &[f64; D], x: &[f64; D]) -> f64 {
        let y: f64 = w.iter().zip(x).map(|(a, b)| a * b).sum();
        if y.is_finite() {
            y.max(0.0)
        } else {
            0.0
        }
    }

    /// The prediction for `x`, never below 0.
    pub fn predict(&self, x: &[f64; D]) -> f64 {
        Self::predict_with(&self.w, x)
    }

    /// Learns that `x` took `y`. Observations with a non-finite value are ignored.
    pub fn update(&mut self, x: &[f64; D], y: f64) {
        if !y.is_finite() || x.iter().any(|v| !v.is_finite()) {
            return;
        }
        // P x (P is symmetric, so also xᵀ P).
        let mut px = [0.0; D];
        for (out, row) in px.iter_mut().zip(&self.p) {
            *out = row.iter().zip(x).map(|(a, b)| a * b).sum();
        }
        let denom = self.forgetting + x.iter().zip(&px).map(|(a, b)| a * b).sum::<f64>();
        if !denom.is_finite() || denom <= 0.0 {
            return;
        }
        let err = y - self.predict_raw(x);
        for (w, k) in self.w.iter_mut().zip(&px) {
            *w += k / denom * err;
        }
        // P = (P − P x xᵀ P / denom) / λ
        for (row, pr) in self.p.iter_mut().zip(&px) {
            for (v, pc) in row.iter_mut().zip(&px) {
                *v = (*v - pr * pc / denom) / self.forgetting;
            }
        }
        // Bound each variance by the prior's: a direction no observation excites would
        // otherwise grow by 1/λ per update. Scaling row and column i by the same factor keeps
        // P positive semi-definite and leaves the excited directions alone.
        let mut scale = [1.0; D];
        for (r, (s, row)) in scale.iter_mut().zip(&self.p).enumerate() {
            let var = row.get(r).copied().unwrap_or(0.0);
            if var > self.max_var {
                *s = libm::sqrt(self.max_var / var);
            }
        }
        let mut finite = true;
        for (row, sr) in self.p.iter_mut().zip(&scale) {
            for (v, sc) in row.iter_mut().zip(&scale) {
                *v *= sr * sc;
                finite &= v.is_finite();
            }
        }
        if self.w.iter().any(|v| !v.is_finite()) || !finite {
            // Numerically lost (cannot happen with finite inputs and λ ≤ 1): start over rather
            // than predict garbage.
            *self = OnlineRidge::new(1.0 / self.max_var, self.forgetting);
            return;
        }
        self.samples += 1;
    }

    fn predict_raw(&self, x: &[f64; D]) -> f64 {
        self.w.iter().zip(x).map(|(a, b)| a * b).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_linear_law_from_noisy_observations() {
        // TTFT = 20 ms + 30 ms per 1,000 uncached tokens + 8 ms per waiting request.
        let mut m = OnlineRidge::<TTFT_FEATURES>::new(PRIOR_PRECISION, FORGETTING);
        let mut rng = crate::rng::SplitMix64::new(7);
        use crate::rng::Rng;
        for _ in 0..2_000 {
            let x = Inputs {
                kv_cache_usage: rng.next_f64(),
                waiting: (rng.next_f64() * 10.0).floor(),
                running: (rng.next_f64() * 20.0).floor(),
                input_tokens: 200.0 + rng.next_f64() * 4_000.0,
                prefix_hit: rng.next_f64(),
                prefill_tokens_in_flight: rng.next_f64() * 8_000.0,
            };
            let uncached = x.input_tokens * (1.0 - x.prefix_hit) / 1000.0;
            let y = 20.0 + 30.0 * uncached + 8.0 * x.waiting + (rng.next_f64() - 0.5) * 4.0;
            m.update(&ttft_features(&x), y);
        }
        assert!(m.is_warm());
        let probe = Inputs {
            waiting: 3.0,
            input_tokens: 2_000.0,
            prefix_hit: 0.5,
            ..Inputs::default()
        };
        let want = 20.0 + 30.0 * 1.0 + 24.0;
        let got = m.predict(&ttft_features(&probe));
        assert!(
            (got - want).abs() < 2.0,
            "predicted {got} ms, law says {want}"
        );
    }

    #[test]
    fn follows_a_fleet_that_slows_down() {
        let mut m = OnlineRidge::<TPOT_FEATURES>::new(PRIOR_PRECISION, FORGETTING);
        let x = |running: f64| Inputs {
            running,
            ..Inputs::default()
        };
        for i in 0..3_000 {
            let r = f64::from(i % 8);
            m.update(&tpot_features(&x(r)), 10.0 + r);
        }
        assert!((m.predict(&tpot_features(&x(4.0))) - 14.0).abs() < 0.5);
        // The same fleet, now twice as slow.
        for i in 0..3_000 {
            let r = f64::from(i % 8);
            m.update(&tpot_features(&x(r)), 2.0 * (10.0 + r));
        }
        let got = m.predict(&tpot_features(&x(4.0)));
        assert!(
            (got - 28.0).abs() < 1.5,
            "predicted {got} ms after the change"
        );
    }

    #[test]
    fn a_constant_feature_does_not_wind_up_and_bad_input_is_ignored() {
        let mut m = OnlineRidge::<TPOT_FEATURES>::new(PRIOR_PRECISION, 0.9);
        let x = tpot_features(&Inputs::default());
        for _ in 0..100_000 {
            m.update(&x, 12.0);
        }
        assert!((m.predict(&x) - 12.0).abs() < 1e-6);
        for i in 0..TPOT_FEATURES {
            assert!(m.p[i][i].is_finite() && m.p[i][i] <= m.max_var * (1.0 + 1e-9));
        }
        let n = m.samples();
        m.update(&x, f64::NAN);
        m.update(&[f64::INFINITY; TPOT_FEATURES], 1.0);
        assert_eq!(m.samples(), n);
        assert!((m.predict(&x) - 12.0).abs() < 1e-6);
    }

    #[test]
    fn predictions_are_never_negative_and_cold_models_say_so() {
        let mut m = OnlineRidge::<TPOT_FEATURES>::new(PRIOR_PRECISION, FORGETTING);
        assert!(!m.is_warm());
        for r in 0..20 {
            let x = Inputs {
                running: f64::from(r),
                ..Inputs::default()
            };
            m.update(&tpot_features(&x), 100.0 - 10.0 * f64::from(r));
        }
        assert!(m.is_warm());
        let far = Inputs {
            running: 50.0,
            ..Inputs::default()
        };
        assert_eq!(m.predict(&tpot_features(&far)), 0.0);
    }
}
