//! Injectable randomness. Nothing in the crate reads global randomness or wall time: pickers and
//! filters that need chance take an `&mut dyn Rng`, so tests pass a seeded generator and get an
//! exact pick (tower `util/rng.rs` shape).

/// A source of uniformly distributed 64-bit values.
pub trait Rng {
    /// The next value, uniform over all `u64`.
    fn next_u64(&mut self) -> u64;

    /// A float uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        // 53 random mantissa bits.
        (self.next_u64() >> 11) as f64 * (1.0 / ((1u64 << 53) as f64))
    }

    /// An integer uniform in `0..n`; 0 when `n` is 0.
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift; the bias for n << 2^64 is negligible for load balancing.
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for tie-breaks and
/// exploration. Not for cryptography.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator with the given seed; the same seed gives the same sequence.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }
}

impl Rng for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Fisher–Yates shuffle of `items` with `rng`.
pub fn shuffle<T>(items: &mut [T], rng: &mut dyn Rng) {
    let n = items.len();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            let v = rng.below(5);
            assert!(v < 5);
            seen[v] += 1;
        }
        // Each bucket expects 2000; allow a wide band.
        assert!(seen.iter().all(|&c| (1700..2300).contains(&c)), "{seen:?}");
    }

    #[test]
    fn f64_in_unit_interval() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..1000 {
            let v = rng.next_f64();
            assert!((0.0..1.0).contains(&v));
        }
    }
}
