//! Which endpoints are believed to hold which prefix blocks.
//!
//! A map from block hash to the endpoints holding it, plus one LRU per endpoint. When an
//! endpoint's LRU evicts a block, the endpoint is removed from that block's holders, so the
//! index never tracks more than `capacity` blocks per endpoint. Unlike GIE@1748e829 (whose
//! `makeserver` falls back to a package constant), the configured capacity is honoured.
//!
//! Endpoints are keyed by their `ip:port` address; each gets a small integer id on first insert.

use alloc::string::String;
use alloc::vec::Vec;
use core::num::NonZeroUsize;

use hashbrown::HashMap;
use lru::LruCache;

/// Ids of the endpoints holding one block; usually one or two.
#[derive(Clone, Debug, Default)]
struct Holders(Vec<u32>);

struct EndpointBlocks {
    address: String,
    lru: LruCache<u64, ()>,
    live: bool,
}

/// The approximate prefix-cache index.
#[derive(Default)]
pub struct PrefixIndex {
    holders: HashMap<u64, Holders>,
    endpoints: Vec<EndpointBlocks>,
    ids: HashMap<String, u32>,
}

impl PrefixIndex {
    /// An empty index.
    pub fn new() -> Self {
        PrefixIndex::default()
    }

    /// The id of `address`, if it was ever inserted and not removed.
    pub fn endpoint_id(&self, address: &str) -> Option<u32> {
        self.ids.get(address).copied()
    }

    /// Number of endpoint slots (ids are below this).
    pub fn endpoint_slots(&self) -> usize {
        self.endpoints.len()
    }

    /// Longest-prefix match: walks `hashes` in order, stops at the first hash no endpoint holds,
    /// and adds 1 to `counts[id]` for every holder of every hash before that.
    /// `counts` is resized to [`Self::endpoint_slots`] and zeroed first. Returns how many
    /// leading hashes had at least one holder.
    pub fn match_longest_prefix(&self, hashes: &[u64], counts: &mut Vec<u32>) -> usize {
        counts.clear();
        counts.resize(self.endpoints.len(), 0);
        let mut matched = 0;
        for h in hashes {
            let Some(holders) = self.holders.get(h) else {
                break;
            };
            if holders.0.is_empty() {
                break;
            }
            for &id in &holders.0 {
                if let Some(c) = counts.get_mut(id as usize) {
                    *c += 1;
                }
            }
            matched += 1;
        }
        matched
    }

    /// Records that `address` now holds every block in `hashes`, evicting its least recently
    /// used blocks beyond `capacity` (at least 1).
    pub fn add(&mut self, address: &str, hashes: &[u64], capacity: usize) {
        if hashes.is_empty() {
            return;
        }
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        let id = match self.ids.get(address) {
            Some(&id) => id,
            None => {
                let id = self.endpoints.len() as u32;
                self.endpoints.push(EndpointBlocks {
                    address: address.into(),
                    lru: LruCache::new(cap),
                    live: true,
                });
                self.ids.insert(address.into(), id);
                id
            }
        };
        let Some(ep) = self.endpoints.get_mut(id as usize) else {
            return;
        };
        ep.live = true;
        if ep.lru.cap() != cap {
            // Capacity learned later (autoTune from `num_gpu_blocks`) or reconfigured.
            let shrink_evicted: Vec<u64> = {
                let mut ev = Vec::new();
                while ep.lru.len() > cap.get() {
                    match ep.lru.pop_lru() {
                        Some((k, ())) => ev.push(k),
                        None => break,
                    }
                }
                ev
            };
            ep.lru.resize(cap);
            for k in shrink_evicted {
                remove_holder(&mut self.holders, k, id);
            }
        }
        for &h in hashes {
            if ep.lru.get(&h).is_some() {
                continue; // already held; `get` refreshed its recency
            }
            if let Some((evicted, ())) = ep.lru.push(h, ()) {
                remove_holder(&mut self.holders, evicted, id);
            }
            let entry = self.holders.entry(h).or_default();
            if !entry.0.contains(&id) {
                entry.0.push(id);
            }
        }
    }

    /// Forgets every block of `address` (the endpoint left the pool).
    pub fn remove_endpoint(&mut self, address: &str) {
        let Some(&id) = self.ids.get(address) else {
            return;
        };
        if let Some(ep) = self.endpoints.get_mut(id as usize) {
            let keys: Vec<u64> = ep.lru.iter().map(|(k, ())| *k).collect();
            ep.lru.clear();
            ep.live = false;
            for k in keys {
                remove_holder(&mut self.holders, k, id);
            }
        }
    }

    /// Forgets every endpoint whose address is not in `addresses`.
    pub fn retain_endpoints<'a>(&mut self, addresses: impl Iterator<Item = &'a str> + Clone) {
        let gone: Vec<String> = self
            .endpoints
            .iter()
            .filter(|e| e.live && !addresses.clone().any(|a| a == e.address))
            .map(|e| e.address.clone())
            .collect();
        for a in gone {
            self.remove_endpoint(&a);
        }
    }

    /// Blocks tracked for `address`.
    pub fn blocks_of(&self, address: &str) -> usize {
        self.ids
            .get(address)
            .and_then(|&id| self.endpoints.get(id as usize))
            .map_or(0, |e| e.lru.len())
    }

    /// Distinct block hashes held by at least one endpoint.
    pub fn len(&self) -> usize {
        self.holders.len()
    }

    /// True when no block is tracked.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }
}

fn remove_holder(holders: &mut HashMap<u64, Holders>, hash: u64, id: u32) {
    if let Some(h) = holders.get_mut(&hash) {
        h.0.retain(|&x| x != id);
        if h.0.is_empty() {
            holders.remove(&hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_stops_at_first_unheld_block() {
        let mut idx = PrefixIndex::new();
        idx.add("a:1", &[1, 2, 3], 100);
        idx.add("b:1", &[1, 9], 100);
        let mut counts = Vec::new();
        let matched = idx.match_longest_prefix(&[1, 2, 4, 3], &mut counts);
        assert_eq!(matched, 2);
        assert_eq!(counts[idx.endpoint_id("a:1").unwrap() as usize], 2);
        assert_eq!(counts[idx.endpoint_id("b:1").unwrap() as usize], 1);
    }

    #[test]
    fn capacity_is_honoured_and_eviction_updates_holders() {
        let mut idx = PrefixIndex::new();
        idx.add("a:1", &[1, 2, 3, 4, 5], 3);
        assert_eq!(idx.blocks_of("a:1"), 3);
        assert_eq!(idx.len(), 3, "evicted blocks leave the hash map");
        let mut counts = Vec::new();
        assert_eq!(
            idx.match_longest_prefix(&[1], &mut counts),
            0,
            "block 1 was evicted"
        );
        assert_eq!(idx.match_longest_prefix(&[3, 4, 5], &mut counts), 3);
        idx.add("a:1", &[6], 2); // shrink
        assert_eq!(idx.blocks_of("a:1"), 2);
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn remove_endpoint_forgets_its_blocks() {
        let mut idx = PrefixIndex::new();
        idx.add("a:1", &[1, 2], 10);
        idx.add("b:1", &[1], 10);
        idx.retain_endpoints(["b:1"].into_iter());
        assert_eq!(idx.blocks_of("a:1"), 0);
        assert_eq!(idx.len(), 1);
    }
}
