//! Process-wide state the scraper (main thread) hands to every worker's filter: the pool
//! snapshot, and the member list the filter configuration publishes for the scraper. Both are
//! atomically swapped `Arc`s (`arc-swap`): a reader takes a reference without a lock and without
//! copying or decoding anything; a writer replaces the whole value.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use scheduler_core::config::pool::PoolEndpoint;
use scheduler_core::snapshot::PoolSnapshot;
use scheduler_core::Endpoint;

/// One published pool snapshot, with its candidate list prepared once.
#[derive(Debug, Default)]
pub struct PoolState {
    /// Increases with every publish.
    pub generation: u64,
    /// When it was published, ms since the Unix epoch.
    pub published_ms: u64,
    /// Every endpoint, in pool order.
    pub endpoints: Vec<Endpoint>,
    /// The endpoints fresh at publish time (metrics at most `staleness_ms` old).
    pub fresh: Vec<Endpoint>,
    /// The first moment (ms) one of `fresh` goes stale: until then `fresh` is the candidate list.
    pub fresh_until_ms: u64,
    /// `pool.scrape.staleness`, ms.
    pub staleness_ms: u64,
    /// A hash of the member addresses, to notice membership changes cheaply.
    pub members: u64,
}

impl PoolState {
    /// Builds the state for `snap`, published at `now_ms`.
    pub fn new(snap: PoolSnapshot, staleness_ms: u64) -> Self {
        let now_ms = snap.published_ms;
        let endpoints: Vec<Endpoint> = snap.endpoints.into_iter().map(|e| e.endpoint).collect();
        let mut fresh_until_ms = u64::MAX;
        let fresh: Vec<Endpoint> = endpoints
            .iter()
            .filter(|e| !e.metrics.is_stale(now_ms, staleness_ms))
            .inspect(|e| {
                fresh_until_ms = fresh_until_ms.min(
                    e.metrics
                        .update_time_ms
                        .saturating_add(staleness_ms)
                        .saturating_add(1),
                );
            })
            .cloned()
            .collect();
        let members = endpoints.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, e| {
            e.address.bytes().fold(h ^ 0xff, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            })
        });
        PoolState {
            generation: snap.generation,
            published_ms: now_ms,
            endpoints,
            fresh,
            fresh_until_ms,
            staleness_ms,
            members,
        }
    }

    /// The candidates at `now_ms`: the prepared list while it is current (no copy), otherwise
    /// the endpoints still fresh, gathered into `scratch` (only between a scraper stall and its
    /// next publish).
    pub fn candidates<'a>(&'a self, now_ms: u64, scratch: &'a mut Vec<Endpoint>) -> &'a [Endpoint] {
        if now_ms < self.fresh_until_ms {
            return &self.fresh;
        }
        scratch.clear();
        scratch.extend(
            self.fresh
                .iter()
                .filter(|e| !e.metrics.is_stale(now_ms, self.staleness_ms))
                .cloned(),
        );
        scratch
    }
}

static POOL: ArcSwapOption<PoolState> = ArcSwapOption::const_empty();

/// Publishes a new snapshot to every worker.
pub fn publish(state: PoolState) {
    POOL.store(Some(Arc::new(state)));
}

/// The current snapshot (`None` before the first publish). The guard does not touch the
/// `Arc`'s shared reference count (which every worker would otherwise bounce between cores);
/// hold it only for one request's scheduling.
pub fn current() -> arc_swap::Guard<Option<Arc<PoolState>>> {
    POOL.load()
}

/// The member list a filter configuration published for the scraper.
#[derive(Debug, PartialEq)]
pub struct Members {
    /// `pool.cluster` of that configuration.
    pub cluster: String,
    /// Its `pool.endpoints`.
    pub endpoints: Vec<PoolEndpoint>,
}

static MEMBERS: ArcSwapOption<Members> = ArcSwapOption::const_empty();

/// Publishes a filter configuration's member list (the newest configuration wins).
pub fn publish_members(m: Members) {
    if MEMBERS.load().as_deref() != Some(&m) {
        MEMBERS.store(Some(Arc::new(m)));
    }
}

/// The newest published member list.
pub fn members() -> Option<Arc<Members>> {
    MEMBERS.load_full()
}

#[cfg(test)]
mod tests {
    use super::*;
    use scheduler_core::snapshot::EndpointState;

    #[test]
    fn candidates_are_the_prepared_list_until_one_goes_stale() {
        let snap = PoolSnapshot {
            generation: 3,
            published_ms: 10_000,
            endpoints: [9_500u64, 9_000, 0]
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    let mut e = Endpoint::new(format!("10.0.0.{i}:80"));
                    e.metrics.update_time_ms = t;
                    EndpointState {
                        endpoint: e,
                        consecutive_failures: 0,
                        stale: false,
                    }
                })
                .collect(),
        };
        let s = PoolState::new(snap, 2_000);
        let mut scratch = Vec::new();
        assert_eq!(s.candidates(10_000, &mut scratch).len(), 2);
        assert!(core::ptr::eq(
            s.candidates(10_500, &mut scratch),
            s.fresh.as_slice()
        ));
        assert_eq!(
            s.candidates(11_001, &mut scratch).len(),
            1,
            "9,000 went stale"
        );
        assert_eq!(s.candidates(11_502, &mut scratch).len(), 0);
    }
}
