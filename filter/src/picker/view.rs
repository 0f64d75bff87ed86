//! The picker's view of the pool: the last decoded snapshot and the endpoints fresh enough to
//! be candidates.
//!
//! An endpoint is a candidate while its last good scrape is at most `staleness_ms` old. This is
//! checked against the clock, not only the scraper's `stale` flag, so a scraper that stops
//! publishing cannot keep dead endpoints in the pool. The candidate list is rebuilt only when a
//! new snapshot arrives or when the earliest freshness deadline passes, never per request.

use scheduler_core::snapshot::{PoolSnapshot, SnapshotError};
use scheduler_core::Endpoint;

/// See the module docs.
#[derive(Debug, Default)]
pub struct PoolView {
    /// CAS of the generation key when the snapshot was read.
    pub cas: Option<u32>,
    snapshot: Option<PoolSnapshot>,
    candidates: Vec<Endpoint>,
    /// Rebuild the candidate list at this time (ms): the earliest moment a candidate goes stale.
    recheck_at_ms: u64,
    staleness_ms: u64,
}

impl PoolView {
    /// An empty view; endpoints older than `staleness_ms` are not candidates.
    pub fn new(staleness_ms: u64) -> Self {
        PoolView {
            staleness_ms,
            ..PoolView::default()
        }
    }

    /// True once a snapshot was decoded.
    pub fn has_snapshot(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Replaces the snapshot with `bytes` read under generation CAS `cas`. Returns whether the
    /// pool's membership (the set of addresses) changed.
    ///
    /// # Errors
    /// [`SnapshotError`]; the previous snapshot is kept.
    pub fn update(
        &mut self,
        cas: Option<u32>,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<bool, SnapshotError> {
        let snap = PoolSnapshot::decode(bytes)?;
        let changed = match &self.snapshot {
            None => true,
            Some(old) => {
                old.endpoints.len() != snap.endpoints.len()
                    || old
                        .endpoints
                        .iter()
                        .zip(&snap.endpoints)
                        .any(|(a, b)| a.endpoint.address != b.endpoint.address)
            }
        };
        self.snapshot = Some(snap);
        self.cas = cas;
        self.rebuild(now_ms);
        Ok(changed)
    }

    /// `(published_ms, generation)` of the current snapshot.
    pub fn published(&self) -> Option<(u64, u64)> {
        self.snapshot
            .as_ref()
            .map(|s| (s.published_ms, s.generation))
    }

    /// Every endpoint of the snapshot (fresh or not).
    pub fn all_endpoints(&self) -> Vec<Endpoint> {
        self.snapshot
            .as_ref()
            .map(|s| s.endpoints.iter().map(|e| e.endpoint.clone()).collect())
            .unwrap_or_default()
    }

    /// The candidates at `now_ms` (fresh endpoints), rebuilding the list if a deadline passed.
    pub fn candidates(&mut self, now_ms: u64) -> &[Endpoint] {
        if now_ms >= self.recheck_at_ms {
            self.rebuild(now_ms);
        }
        &self.candidates
    }

    fn rebuild(&mut self, now_ms: u64) {
        self.candidates.clear();
        let mut recheck = u64::MAX;
        if let Some(s) = &self.snapshot {
            for e in &s.endpoints {
                let m = &e.endpoint.metrics;
                if !m.is_stale(now_ms, self.staleness_ms) {
                    recheck = recheck.min(
                        m.update_time_ms
                            .saturating_add(self.staleness_ms)
                            .saturating_add(1),
                    );
                    self.candidates.push(e.endpoint.clone());
                }
            }
        }
        // With no fresh endpoint there is nothing to expire; look again on the next snapshot or
        // after one staleness period at the latest.
        self.recheck_at_ms = if recheck == u64::MAX {
            now_ms.saturating_add(self.staleness_ms.max(1))
        } else {
            recheck
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scheduler_core::snapshot::EndpointState;

    fn snap(updates: &[u64]) -> Vec<u8> {
        PoolSnapshot {
            generation: 1,
            published_ms: 0,
            endpoints: updates
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
        }
        .encode()
    }

    #[test]
    fn candidates_expire_by_the_clock() {
        let mut v = PoolView::new(2000);
        assert!(v.update(Some(1), &snap(&[1000, 2000, 0]), 2500).unwrap());
        assert_eq!(
            v.candidates(2500).len(),
            2,
            "never-scraped endpoint is not a candidate"
        );
        assert_eq!(
            v.candidates(3001).len(),
            1,
            "first endpoint went stale at 3000"
        );
        assert_eq!(v.candidates(4001).len(), 0);
        assert!(
            !v.update(Some(2), &snap(&[4000, 4000, 4000]), 4001).unwrap(),
            "same members"
        );
        assert_eq!(v.candidates(4001).len(), 3);
    }

    #[test]
    fn bad_bytes_keep_the_previous_snapshot() {
        let mut v = PoolView::new(2000);
        v.update(Some(1), &snap(&[1000]), 1000).unwrap();
        assert!(v.update(Some(2), b"garbage", 1000).is_err());
        assert_eq!(v.cas, Some(1));
        assert_eq!(v.candidates(1000).len(), 1);
    }
}
