//! The hosts Envoy's clusters have, as the [`crate::lb`] policy sees them on the workers, kept
//! process-wide so the scraper (main thread) can follow a cluster's membership when the picker
//! JSON lists no `pool.endpoints`. Written on membership changes only (rare), read once per
//! scraper tick: a plain mutex, never touched on the request path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use scheduler_core::config::pool::PoolEndpoint;

/// One cluster's usable hosts: literal `ip:port` addresses, sorted, without duplicates.
pub type HostList = Arc<Vec<String>>;

static CLUSTERS: Mutex<Option<HashMap<String, HostList>>> = Mutex::new(None);

/// Records the hosts `cluster` has now. Every worker reports the same update, so an unchanged
/// list is dropped here and the stored `Arc` stays the same (the scraper compares pointers).
/// Returns whether the list changed.
pub fn report(cluster: &str, mut hosts: Vec<String>) -> bool {
    hosts.sort_unstable();
    hosts.dedup();
    let mut map = CLUSTERS.lock().unwrap_or_else(PoisonError::into_inner);
    let map = map.get_or_insert_with(HashMap::new);
    if map.get(cluster).is_some_and(|h| **h == hosts) {
        return false;
    }
    map.insert(cluster.to_owned(), Arc::new(hosts));
    true
}

/// The last reported hosts of `cluster` (`None` before any balancer of it reported).
pub fn of(cluster: &str) -> Option<HostList> {
    CLUSTERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|m| m.get(cluster).cloned())
}

/// Pool members for discovered hosts: no labels (Envoy's host list carries none we read), the
/// metrics page on the same address, or on `metrics_port` of the same IP when set.
pub fn members(hosts: &[String], metrics_port: Option<u16>) -> Vec<PoolEndpoint> {
    hosts
        .iter()
        .filter_map(|h| {
            let addr: std::net::SocketAddr = h.parse().ok()?;
            let metrics_address = match metrics_port {
                Some(p) => std::net::SocketAddr::new(addr.ip(), p).to_string(),
                None => addr.to_string(),
            };
            Some(PoolEndpoint {
                address: addr.to_string(),
                labels: Vec::new(),
                metrics_address,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_report_keeps_the_same_list() {
        assert!(report(
            "hosts-test-a",
            vec!["10.0.0.2:80".into(), "10.0.0.1:80".into()]
        ));
        let first = of("hosts-test-a").unwrap();
        assert_eq!(*first, vec!["10.0.0.1:80", "10.0.0.2:80"]);
        assert!(!report(
            "hosts-test-a",
            vec!["10.0.0.1:80".into(), "10.0.0.2:80".into()]
        ));
        assert!(Arc::ptr_eq(&first, &of("hosts-test-a").unwrap()));
        assert!(report("hosts-test-a", vec!["10.0.0.1:80".into()]));
        assert_eq!(*of("hosts-test-a").unwrap(), vec!["10.0.0.1:80"]);
        assert!(of("hosts-test-unknown").is_none());
    }

    #[test]
    fn members_use_the_metrics_port_and_skip_names() {
        let m = members(
            &[
                "10.0.0.1:8000".into(),
                "[::1]:8000".into(),
                "pod-a:8000".into(),
            ],
            Some(9090),
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].metrics_address, "10.0.0.1:9090");
        assert_eq!(m[1].address, "[::1]:8000");
        assert_eq!(m[1].metrics_address, "[::1]:9090");
        assert_eq!(
            members(&["10.0.0.1:8000".into()], None)[0].metrics_address,
            "10.0.0.1:8000"
        );
    }
}
