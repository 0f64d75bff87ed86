//! Balanced placement of the repeated prompt prefixes one proxy has seen: the key-count bound of
//! `prefix-rendezvous-scorer` (its `keyLoadFactor` parameter).
//!
//! Plain rendezvous hashing gives each prefix key the endpoint with the highest weight
//! `xxh64(address, seed = key)`. With few keys per endpoint the split is uneven (16 system prompts
//! over 4 servers: the busiest wins ~6 of them), and that server's queue sets the fleet's TTFT
//! tail. Consistent hashing with bounded loads (Mirrokni, Thorup & Zadimoghaddam, SODA 2018)
//! bounds each endpoint to `⌈(1 + ε) · K / N⌉` of the `K` keys over `N` endpoints: a key goes to
//! the first endpoint of its rendezvous order that still has room.
//!
//! The paper places keys in arrival order, which differs between proxies. Here every proxy places
//! the keys it knows **in ascending key order**, so two proxies that know the same keys compute
//! the same placement without talking to each other, and proxies that know almost the same keys
//! agree on almost all of them. A key is known once this proxy has seen it on
//! [`ADMIT_AFTER`] requests (a prompt sent once is not a prefix worth placing); keys are forgotten
//! after two generations without a request (a generation ends after `ttl_ms` or when
//! `capacity` keys were seen in it). A key not yet known goes to the first endpoint of its
//! order with room under the current bound — where it will most likely stay once known.
//!
//! Cost: one hash-map update per request; rebuilding the placement (every known key × every
//! endpoint hashed) happens at most once per [`REBUILD_INTERVAL_MS`], when a key was admitted or
//! forgotten or the pool changed.

use alloc::vec::Vec;

use hashbrown::HashMap;
use xxhash_rust::xxh64::xxh64;

use crate::model::endpoint::Endpoint;

/// Requests with the same key after which this proxy places the key (2: seen twice).
pub const ADMIT_AFTER: u32 = 2;

/// Shortest time between two rebuilds of the placement, milliseconds.
pub const REBUILD_INTERVAL_MS: u64 = 1_000;

/// An endpoint's identity in the placement: `xxh64(address, 0)`.
pub fn endpoint_id(e: &Endpoint) -> u64 {
    xxh64(e.address.as_bytes(), 0)
}

/// The placement state of one proxy (one Wasm VM, or one native process).
pub struct KeyPlacement {
    load_factor: f64,
    capacity: usize,
    ttl_ms: u64,
    /// Requests seen per key in this generation.
    current: HashMap<u64, u32>,
    /// The generation before.
    previous: HashMap<u64, u32>,
    generation_start_ms: u64,
    /// Key → endpoint id, for every known key.
    assigned: HashMap<u64, u64>,
    /// Endpoint ids of the pool the placement was built for, and the keys placed on each.
    pool: Vec<(u64, u32)>,
    /// Keys per endpoint allowed by the last build (0 before the first).
    cap: u32,
    pool_signature: u64,
    dirty: bool,
    last_build_ms: Option<u64>,
}

impl KeyPlacement {
    /// A placement with the bound `⌈(1 + load_factor) · K / N⌉` (`load_factor` ≥ 0), at most
    /// `capacity` keys counted per generation and generations of `ttl_ms` milliseconds.
    pub fn new(load_factor: f64, capacity: usize, ttl_ms: u64) -> Self {
        KeyPlacement {
            load_factor,
            capacity: capacity.max(1),
            ttl_ms: ttl_ms.max(1),
            current: HashMap::new(),
            previous: HashMap::new(),
            generation_start_ms: 0,
            assigned: HashMap::new(),
            pool: Vec::new(),
            cap: 0,
            pool_signature: 0,
            dirty: false,
            last_build_ms: None,
        }
    }

    /// Counts a request for `key` at `now_ms` over the pool `endpoints` (the whole snapshot),
    /// rebuilding the placement if it is due, and returns the endpoint id the key is placed on,
    /// or `None` while nothing is placed (no known key yet, empty pool).
    ///
    /// `order_ids` is the key's rendezvous order over the candidates as endpoint ids (highest
    /// weight first); a key not yet known takes the first of them with room.
    pub fn place(
        &mut self,
        key: u64,
        endpoints: &[Endpoint],
        now_ms: u64,
        order_ids: &[u64],
    ) -> Option<u64> {
        self.count(key, now_ms);
        let signature = pool_signature(endpoints);
        if signature != self.pool_signature {
            self.pool_signature = signature;
            self.dirty = true;
        }
        let due = self
            .last_build_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= REBUILD_INTERVAL_MS);
        if self.dirty && due {
            self.rebuild(endpoints, now_ms);
        }
        if let Some(&id) = self.assigned.get(&key) {
            return Some(id);
        }
        if self.cap == 0 {
            return None;
        }
        order_ids
            .iter()
            .copied()
            .find(|id| self.pool.iter().any(|&(p, n)| p == *id && n < self.cap))
    }

    /// Whether `key` is placed (known to this proxy).
    pub fn is_known(&self, key: u64) -> bool {
        self.assigned.contains_key(&key)
    }

    /// The endpoint id `key` is placed on, without counting a request.
    pub fn placed(&self, key: u64) -> Option<u64> {
        self.assigned.get(&key).copied()
    }

    /// Keys currently placed.
    pub fn known_keys(&self) -> usize {
        self.assigned.len()
    }

    /// The most keys any endpoint may hold under the last build (0 before the first).
    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// Keys placed on endpoint `id`.
    pub fn keys_on(&self, id: u64) -> u32 {
        self.pool
            .iter()
            .find(|&&(p, _)| p == id)
            .map_or(0, |&(_, n)| n)
    }

    fn count(&mut self, key: u64, now_ms: u64) {
        if self.current.len() >= self.capacity
            || now_ms.saturating_sub(self.generation_start_ms) >= self.ttl_ms
        {
            // What is left of the generation before was not seen for a whole generation.
            if self.previous.values().any(|&n| n >= ADMIT_AFTER) {
                self.dirty = true;
            }
            self.previous = core::mem::take(&mut self.current);
            self.generation_start_ms = now_ms;
        }
        let carried = self.previous.remove(&key).unwrap_or(0);
        let n = self.current.entry(key).or_insert(0);
        *n = n.saturating_add(carried).saturating_add(1);
        if *n >= ADMIT_AFTER && !self.assigned.contains_key(&key) {
            self.dirty = true;
        }
    }

    /// Places every known key, in ascending key order, on the first endpoint of its rendezvous
    /// order that holds fewer than the cap.
    fn rebuild(&mut self, endpoints: &[Endpoint], now_ms: u64) {
        self.dirty = false;
        self.last_build_ms = Some(now_ms);
        let mut keys: Vec<u64> = self
            .current
            .iter()
            .chain(self.previous.iter())
            .filter(|&(_, &n)| n >= ADMIT_AFTER)
            .map(|(&k, _)| k)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        self.pool = endpoints.iter().map(|e| (endpoint_id(e), 0)).collect();
        self.assigned.clear();
        let n = self.pool.len();
        if n == 0 || keys.is_empty() {
            self.cap = if n == 0 { 0 } else { 1 };
            return;
        }
        let fair = keys.len() as f64 / n as f64;
        // ceil without std: the bound is at least 1.
        let bound = (1.0 + self.load_factor) * fair;
        let mut cap = bound as u32;
        if f64::from(cap) < bound {
            cap = cap.saturating_add(1);
        }
        self.cap = cap.max(1);
        for key in keys {
            let mut best: Option<(u64, usize)> = None;
            for (i, e) in endpoints.iter().enumerate() {
                let has_room = self
                    .pool
                    .get(i)
                    .is_some_and(|&(_, placed)| placed < self.cap);
                if !has_room {
                    continue;
                }
                let w = xxh64(e.address.as_bytes(), key);
                if best.is_none_or(|(bw, _)| w > bw) {
                    best = Some((w, i));
                }
            }
            if let Some((_, i)) = best {
                if let Some(slot) = self.pool.get_mut(i) {
                    slot.1 = slot.1.saturating_add(1);
                    self.assigned.insert(key, slot.0);
                }
            }
        }
    }
}

/// An order-independent signature of the pool's addresses.
fn pool_signature(endpoints: &[Endpoint]) -> u64 {
    endpoints.iter().fold(endpoints.len() as u64, |s, e| {
        s.wrapping_add(endpoint_id(e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn pool(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint::new(format!("10.2.0.{i}:8000")))
            .collect()
    }

    #[test]
    fn a_key_is_placed_once_seen_twice() {
        let eps = pool(4);
        let mut p = KeyPlacement::new(0.25, 1024, 60_000);
        assert_eq!(p.place(7, &eps, 1, &[]), None);
        assert_eq!(p.known_keys(), 0);
        // The second request, a rebuild interval after the first build.
        let _ = p.place(7, &eps, 2_000, &[]);
        assert!(p.is_known(7));
        assert_eq!(p.cap(), 1);
    }

    #[test]
    fn sixteen_keys_over_four_endpoints_stay_within_the_cap() {
        let eps = pool(4);
        let mut p = KeyPlacement::new(0.0, 1024, 600_000);
        let mut t = 0;
        for _ in 0..2 {
            for k in 0..16u64 {
                t += 100;
                let _ = p.place(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), &eps, t, &[]);
            }
        }
        let _ = p.place(0, &eps, t + 5_000, &[]);
        assert_eq!(p.known_keys(), 16);
        assert_eq!(p.cap(), 4);
        for e in &eps {
            assert_eq!(p.keys_on(endpoint_id(e)), 4);
        }
    }

    #[test]
    fn keys_not_seen_for_two_generations_are_forgotten() {
        let eps = pool(2);
        let mut p = KeyPlacement::new(0.25, 1024, 1_000);
        let _ = p.place(1, &eps, 0, &[]);
        let _ = p.place(1, &eps, 10, &[]);
        let _ = p.place(2, &eps, 1_500, &[]);
        assert!(p.is_known(1));
        let _ = p.place(2, &eps, 2_600, &[]);
        // Key 1 was last seen two generations ago; key 2 is now known.
        assert!(!p.is_known(1));
        assert!(p.is_known(2));
        assert_eq!(p.known_keys(), 1);
    }
}
