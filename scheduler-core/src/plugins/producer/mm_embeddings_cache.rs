//! `mm-embeddings-cache-producer` (llm-d, Beta; the default producer of its match data):
//! remembers which endpoints recently encoded each image, audio or video item, so
//! `mm-embeddings-cache-scorer` can send a request to an endpoint whose encoder cache likely
//! holds its media already (llm-d-router `dataproducer/multimodal`, in our words).
//!
//! - Items: the media content parts of the request (`parse::media::media_items`: a hash of each
//!   part's payload, each distinct item once). llm-d takes the hashes from its tokenizer's
//!   multimodal features and documents the content parts as the fallback; the proxy has no
//!   multimodal tokenizer, so the content parts are the source here. Text-only requests produce
//!   nothing.
//! - Produce: for each candidate, which of the request's items its LRU holds
//!   ([`EncoderCacheMatch`] under [`MM_ENCODER_CACHE_MATCH_INFO`]).
//! - PreRequest: the primary profile's targets record every item of the request.
//! - Per endpoint an LRU of `cacheSizeInMBPerServer` MiB / 2 MiB entries (llm-d's fixed
//!   assumption of 2 MiB per tracked item; default 4096 MiB → 2048 entries; ≤ 0: the default).
//!   Endpoints that leave the pool are forgotten.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use hashbrown::HashMap;
use serde::Deserialize;

use crate::error::ConfigError;
use crate::lock::Lock;
use crate::model::result::SchedulingResult;
use crate::parse::media::{media_items, MediaItem};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleContext, CycleState, DataKey, DataProducer, Plugin, PreRequest, ProduceContext,
    RequestState, TypedName,
};

/// Plugin type name.
pub const TYPE: &str = "mm-embeddings-cache-producer";

/// Cycle-state key of the per-endpoint `Vec<EncoderCacheMatch>` (indexed like the pool).
pub const MM_ENCODER_CACHE_MATCH_INFO: DataKey = "MultiModalEncoderCacheMatchInfoKey";

/// Default per-endpoint budget, MiB.
pub const DEFAULT_CACHE_SIZE_MB: i64 = 4096;
/// Assumed size of one tracked item, MiB (llm-d's fixed divisor).
pub const MB_PER_ITEM: i64 = 2;

/// How many of the request's media items one endpoint likely holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncoderCacheMatch {
    /// Items this endpoint recently encoded.
    pub matched: u32,
    /// Items in the request.
    pub total: u32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    cache_size_in_mb_per_server: i64,
}

/// Builds an [`MmEmbeddingsCacheProducer`].
///
/// # Errors
/// Unknown fields (llm-d's sample config spells the size `cacheSizeInMB`, which loads with an
/// "unknown field" warning and the default size, as upstream's decoder ignores it).
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    Ok(Arc::new(MmEmbeddingsCacheProducer {
        typed_name: TypedName::new(TYPE, name),
        capacity: capacity_for(p.cache_size_in_mb_per_server),
        caches: Lock::new(HashMap::new()),
    }))
}

/// Entries per endpoint for a budget of `mb` MiB (≤ 0: the default), at least 1.
pub fn capacity_for(mb: i64) -> usize {
    let mb = if mb <= 0 { DEFAULT_CACHE_SIZE_MB } else { mb };
    usize::try_from((mb / MB_PER_ITEM).max(1)).unwrap_or(usize::MAX)
}

/// An LRU of item hashes (touch and evict in O(log n)).
#[derive(Default)]
struct Lru {
    clock: u64,
    stamp_of: HashMap<u64, u64>,
    by_stamp: BTreeMap<u64, u64>,
}

impl Lru {
    fn contains(&self, hash: u64) -> bool {
        self.stamp_of.contains_key(&hash)
    }

    fn touch(&mut self, hash: u64, capacity: usize) {
        self.clock += 1;
        if let Some(old) = self.stamp_of.insert(hash, self.clock) {
            self.by_stamp.remove(&old);
        }
        self.by_stamp.insert(self.clock, hash);
        while self.stamp_of.len() > capacity {
            let Some((_, evicted)) = self.by_stamp.pop_first() else {
                break;
            };
            self.stamp_of.remove(&evicted);
        }
    }
}

/// See the module docs.
pub struct MmEmbeddingsCacheProducer {
    typed_name: TypedName,
    /// Entries per endpoint.
    capacity: usize,
    /// Endpoint address → its LRU.
    caches: Lock<HashMap<String, Lru>>,
}

impl MmEmbeddingsCacheProducer {
    /// Entries kept per endpoint.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The request's items, kept from Produce for PreRequest.
struct RequestItems(Vec<MediaItem>);

impl Plugin for MmEmbeddingsCacheProducer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_data_producer(&self) -> Option<&dyn DataProducer> {
        Some(self)
    }
    fn as_pre_request(&self) -> Option<&dyn PreRequest> {
        Some(self)
    }
    fn produces(&self) -> &'static [DataKey] {
        &[MM_ENCODER_CACHE_MATCH_INFO]
    }
    fn pool_changed(&self, addresses: &[&str]) {
        self.caches
            .lock()
            .retain(|a, _| addresses.contains(&a.as_str()));
    }
}

impl DataProducer for MmEmbeddingsCacheProducer {
    fn produce(
        &self,
        cx: &ProduceContext<'_>,
        candidates: &[usize],
        cycle: &mut CycleState,
        request_state: &mut RequestState,
    ) {
        if !cx.request.multimodal {
            return;
        }
        let items = media_items(&cx.request.prompt);
        if items.is_empty() {
            return;
        }
        let total = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let mut matches = alloc::vec![EncoderCacheMatch { matched: 0, total }; cx.endpoints.len()];
        {
            let caches = self.caches.lock();
            for &i in candidates {
                let (Some(ep), Some(m)) = (cx.endpoints.get(i), matches.get_mut(i)) else {
                    continue;
                };
                if let Some(lru) = caches.get(&ep.address) {
                    let hits = items.iter().filter(|it| lru.contains(it.hash)).count();
                    m.matched = u32::try_from(hits).unwrap_or(u32::MAX);
                }
            }
        }
        cycle.put(MM_ENCODER_CACHE_MATCH_INFO, matches);
        request_state.put(&self.typed_name.name, RequestItems(items));
    }
}

impl PreRequest for MmEmbeddingsCacheProducer {
    fn pre_request(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
        state: &mut RequestState,
    ) {
        let Some(RequestItems(items)) = state.take::<RequestItems>(&self.typed_name.name) else {
            return;
        };
        let Some(primary) = result.primary() else {
            return;
        };
        let mut caches = self.caches.lock();
        for &t in &primary.targets {
            let Some(ep) = cx.endpoints.get(t) else {
                continue;
            };
            let lru = caches.entry(ep.address.clone()).or_default();
            for it in &items {
                lru.touch(it.hash, self.capacity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_from_megabytes() {
        assert_eq!(capacity_for(0), 2048);
        assert_eq!(capacity_for(100), 50);
        assert_eq!(capacity_for(1), 1);
        assert_eq!(capacity_for(-3), 2048);
    }

    #[test]
    fn lru_evicts_the_least_recently_touched() {
        let mut l = Lru::default();
        l.touch(1, 2);
        l.touch(2, 2);
        l.touch(1, 2); // 1 is now the most recent
        l.touch(3, 2); // evicts 2
        assert!(l.contains(1) && l.contains(3) && !l.contains(2));
        assert_eq!(l.stamp_of.len(), l.by_stamp.len());
    }
}
