//! `soft-reflective-ceiling-policy` (llm-d, Alpha): a usage limit that narrows the dispatch
//! ceiling of lower-priority bands as the pool saturates, and past a band's ceiling lets it
//! dispatch on a fraction of calls instead of closing it outright, so its dispatch rate falls
//! continuously with saturation (llm-d-router `usagelimits/softreflectiveceiling`, in our
//! words).
//!
//! With `N` active bands (index `i`, highest priority first) and pool saturation `s`:
//! - band 0 always gets ceiling 1.0 (it stops only when the pool is saturated, `s ≥ 1`);
//! - band `i` has the reflective ceiling `1 − i·s/(N − 1)`; while `s` is below it the band is
//!   open (ceiling 1.0);
//! - at `s ≥ 1` every lower band is closed (ceiling 0.0);
//! - otherwise (at or past its reflective ceiling) the band is open on one call in
//!   `period = round(s / (1 − s))` (at least 1) and closed on the others, so its dispatch rate
//!   approaches `(1 − s)/s`.
//!
//! One counter shared by every band drives the alternation, so on any call either all gated
//! bands are open or all are closed: the dispatch loop stops at the first gated band, and
//! per-band counters out of phase would starve the lower ones. The counter advances only on
//! calls where some band alternates (`1 − s ≤ s < 1`); below that the policy is a pure
//! function of its inputs. One band: always open. Takes no parameters.
//!
//! Here the flow-control layer also asks for the ceilings on the admission fast path (nothing
//! queued ahead), so the counter counts dispatch opportunities of both paths.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, TypedName, UsageLimitPolicy};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "soft-reflective-ceiling-policy";

/// Builds a [`SoftReflectiveCeiling`].
///
/// # Errors
/// Any parameter (the policy takes none).
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let _: NoParams = parse_params(params)?;
    Ok(Arc::new(SoftReflectiveCeiling {
        typed_name: TypedName::new(TYPE, name),
        tick: AtomicUsize::new(0),
    }))
}

/// See the module docs.
pub struct SoftReflectiveCeiling {
    typed_name: TypedName,
    /// Calls made in the alternating regime.
    tick: AtomicUsize,
}

impl Plugin for SoftReflectiveCeiling {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_usage_limit_policy(&self) -> Option<&dyn UsageLimitPolicy> {
        Some(self)
    }
}

impl UsageLimitPolicy for SoftReflectiveCeiling {
    fn ceilings(&self, saturation: f64, priorities: &[i32], ceilings: &mut [f64]) {
        let n = priorities.len().min(ceilings.len());
        if n <= 1 {
            ceilings.fill(1.0);
            return;
        }
        let s = saturation;
        // The lowest band's reflective ceiling is 1 − s; every band above has a higher one, so
        // some band alternates exactly when the lowest one does.
        let alternating = s >= 1.0 - s && s < 1.0;
        let open = alternating && {
            // 1e-9 keeps the period finite as s approaches 1.
            let period = libm::round(s / (1.0 - s + 1e-9)).max(1.0);
            // Saturation below 1 keeps the period small; the cast saturates for safety.
            let period = period as usize;
            let t = self.tick.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            t % period.max(1) == 0
        };
        for (i, c) in ceilings.iter_mut().enumerate().take(n) {
            let reflective = 1.0 - i as f64 * s / (n - 1) as f64;
            *c = if i == 0 || s < reflective {
                1.0
            } else if s >= 1.0 || !open {
                0.0
            } else {
                1.0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn policy() -> Arc<dyn Plugin> {
        factory(TYPE, None, &Handle::new(&[])).unwrap()
    }

    fn ceilings(p: &Arc<dyn Plugin>, s: f64, n: usize) -> Vec<f64> {
        let prios: Vec<i32> = (0..n as i32).rev().collect();
        let mut c = vec![1.0; n];
        p.as_usage_limit_policy()
            .unwrap()
            .ceilings(s, &prios, &mut c);
        c
    }

    #[test]
    fn open_below_the_reflective_ceilings() {
        let p = policy();
        // 3 bands at s = 0.3: ceilings 1.0, 0.85, 0.7: all above s.
        assert_eq!(ceilings(&p, 0.3, 3), vec![1.0, 1.0, 1.0]);
        assert_eq!(ceilings(&p, 0.9, 1), vec![1.0], "one band is always open");
    }

    #[test]
    fn saturated_pool_closes_every_lower_band() {
        let p = policy();
        assert_eq!(ceilings(&p, 1.0, 3), vec![1.0, 0.0, 0.0]);
        assert_eq!(ceilings(&p, 1.7, 2), vec![1.0, 0.0]);
    }

    #[test]
    fn past_the_ceiling_a_band_opens_once_per_period() {
        // 2 bands at s = 0.75: band 1's reflective ceiling is 0.25 ≤ s; period round(0.75/0.25)
        // = 3, so it is open on every third call.
        let p = policy();
        let open: Vec<f64> = (0..9).map(|_| ceilings(&p, 0.75, 2)[1]).collect();
        assert_eq!(open, vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
        // At s = 0.5 (period 1) it is open on every call.
        let p = policy();
        assert!((0..4).all(|_| ceilings(&p, 0.5, 2)[1] == 1.0));
    }

    #[test]
    fn gated_bands_share_one_phase() {
        // 3 bands at s = 0.8: reflective ceilings 1.0, 0.6, 0.2: bands 1 and 2 are both past
        // theirs and open on the same calls (period 4).
        let p = policy();
        for _ in 0..8 {
            let c = ceilings(&p, 0.8, 3);
            assert_eq!(c[0], 1.0);
            assert_eq!(c[1], c[2], "{c:?}");
        }
        // At s = 0.55 band 1's ceiling (0.725) is above s: open; band 2 (0.45) alternates.
        let p = policy();
        let c: Vec<Vec<f64>> = (0..2).map(|_| ceilings(&p, 0.55, 3)).collect();
        assert!(c.iter().all(|c| c[0] == 1.0 && c[1] == 1.0), "{c:?}");
    }

    #[test]
    fn no_parameters() {
        let bad = serde_json::json!({"threshold": 0.5});
        assert!(factory(TYPE, Some(&bad), &Handle::new(&[])).is_err());
    }
}
