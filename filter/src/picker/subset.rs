//! The endpoint subset hint: which of the pool's endpoints a request may go to.
//!
//! GIE's endpoint-picker protocol lets the proxy narrow the candidates of one request. The proxy
//! (another filter before the picker, a gateway's own configuration) puts a list of `ip:port`
//! strings in the request's dynamic metadata, namespace [`NAMESPACE`], key [`KEY`]. The picker
//! then keeps only the pool endpoints whose IP is in the list, as llm-d-router's EPP does
//! (`requestcontrol/candidates.go`, read at its `ebab687`):
//! - key absent: the whole pool;
//! - key present and the list empty: no candidates (the request is answered 503, "failed to find
//!   endpoint candidates");
//! - otherwise each string entry is cut at its last `:` and the part before it compared with the
//!   part of the endpoint's address before its last `:` — the IP only, so every port (data-
//!   parallel rank) of a listed IP stays eligible; entries that are not strings are skipped;
//! - no endpoint matches: no candidates (503).
//!
//! `pool.disableEndpointSubsetFilter` (llm-d-router's `--disable-endpoint-subset-filter`)
//! ignores the hint. Both builds read it: the native one element by element through Envoy's
//! metadata-list getters, the Wasm one as the property `metadata.filter_metadata.<namespace>.
//! <key>`, which Envoy serialises as a header map of the elements ([`crate::pairs::decode_list`]).
//! A list with an element that is not a string: both builds skip that element, as upstream
//! does (e2e with a number element). A value that is not a list is no hint (the whole pool),
//! except in the Wasm build for an empty map, which Envoy hands proxy-wasm in the same bytes
//! as an empty list (no candidates). Envoy's Lua stores an empty table that way: a Lua filter
//! that sets one gets a 503 from the Wasm build and the whole pool from the native build and
//! upstream's EPP (the two builds' answers are pinned by the e2e test).

use scheduler_core::Endpoint;

/// Dynamic-metadata namespace of the subset hint (GIE's `SubsetFilterNamespace`).
pub const NAMESPACE: &str = "envoy.lb.subset_hint";

/// Key of the subset hint's list inside [`NAMESPACE`] (GIE's `SubsetFilterKey`).
pub const KEY: &str = "x-gateway-destination-endpoint-subset";

/// Entries of a hint a host reads at most ([`EndpointSubset::from_host_list`]): a hint longer
/// than any pool is a configuration error, and reading it must not cost a worker without limit.
pub const MAX_ENTRIES: usize = 4096;

/// The IPs a request may go to, from its subset hint (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointSubset {
    /// Each entry's part before its last `:`, in the hint's order; duplicates kept (the list is
    /// short, and a linear scan over a few strings beats building a set per request).
    ips: Vec<String>,
}

/// The part of `address` before its last `:` (all of it when there is none): an `ip:port`'s
/// IP, as GIE compares them (`[v6]:port` keeps its brackets on both sides).
fn ip_of(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(ip, _)| ip)
}

impl EndpointSubset {
    /// The subset of the hint's string entries (`ip:port`, or a bare IP).
    pub fn from_entries<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> Self {
        EndpointSubset {
            ips: entries
                .into_iter()
                .map(|e| ip_of(e.as_ref()).to_string())
                .collect(),
        }
    }

    /// The subset of a hint whose list has `listed` elements, of which a host read the string
    /// ones as `entries`: at most [`MAX_ENTRIES`] are kept (a host need not read further; a
    /// longer hint is warned about once per process).
    pub fn from_host_list<S: AsRef<str>>(listed: usize, entries: impl Iterator<Item = S>) -> Self {
        static WARNED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
        if listed > MAX_ENTRIES && !WARNED.swap(true, core::sync::atomic::Ordering::Relaxed) {
            log::warn!(
                "endpoint picker: an endpoint subset hint lists {listed} entries; only the first {MAX_ENTRIES} are read (said once)"
            );
        }
        Self::from_entries(entries.take(MAX_ENTRIES))
    }

    /// True when the hint listed no endpoint: the request has no candidates.
    pub fn is_empty(&self) -> bool {
        self.ips.is_empty()
    }

    /// Whether the endpoint at `address` (`ip:port`) is in the subset (its IP is listed).
    pub fn admits(&self, address: &str) -> bool {
        let ip = ip_of(address);
        self.ips.iter().any(|listed| listed == ip)
    }

    /// The candidates the subset admits: `candidates` itself when every one is admitted (no
    /// copy), otherwise copies of the admitted ones in `kept` (cleared first), in pool order.
    pub fn restrict<'a>(
        &self,
        candidates: &'a [Endpoint],
        kept: &'a mut Vec<Endpoint>,
    ) -> &'a [Endpoint] {
        if candidates.iter().all(|e| self.admits(&e.address)) {
            return candidates;
        }
        kept.clear();
        kept.extend(
            candidates
                .iter()
                .filter(|e| self.admits(&e.address))
                .cloned(),
        );
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Vec<Endpoint> {
        [
            "10.0.0.1:8000",
            "10.0.0.2:8000",
            "10.0.0.2:8001",
            "10.0.0.3:8000",
        ]
        .into_iter()
        .map(Endpoint::new)
        .collect()
    }

    fn addresses(c: &[Endpoint]) -> Vec<&str> {
        c.iter().map(|e| e.address.as_str()).collect()
    }

    #[test]
    fn matches_on_the_ip_so_every_port_of_a_listed_ip_stays() {
        let s = EndpointSubset::from_entries(["10.0.0.2:9999", "10.0.0.3:8000"]);
        let (pool, mut kept) = (pool(), Vec::new());
        assert_eq!(
            addresses(s.restrict(&pool, &mut kept)),
            ["10.0.0.2:8000", "10.0.0.2:8001", "10.0.0.3:8000"]
        );
    }

    #[test]
    fn an_empty_list_or_no_match_leaves_no_candidates() {
        let (pool, mut kept) = (pool(), Vec::new());
        let empty = EndpointSubset::default();
        assert!(empty.is_empty());
        assert!(empty.restrict(&pool, &mut kept).is_empty());
        let elsewhere = EndpointSubset::from_entries(["192.168.1.1:8000"]);
        assert!(elsewhere.restrict(&pool, &mut kept).is_empty());
    }

    #[test]
    fn a_subset_covering_the_pool_lends_the_pool_itself() {
        let pool = pool();
        let mut kept = Vec::new();
        let all = EndpointSubset::from_entries(["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"]);
        let got = all.restrict(&pool, &mut kept);
        assert!(core::ptr::eq(got, pool.as_slice()));
        assert!(kept.is_empty());
    }

    #[test]
    fn a_host_list_is_read_up_to_its_bound() {
        let long: Vec<String> = (0..MAX_ENTRIES + 10)
            .map(|i| format!("10.{}.{}.{}:80", i >> 16, (i >> 8) & 255, i & 255))
            .collect();
        let s = EndpointSubset::from_host_list(long.len(), long.iter());
        assert_eq!(s.ips.len(), MAX_ENTRIES);
        assert!(s.admits("10.0.0.0:1"));
        assert!(!s.admits(&format!(
            "10.0.{}.{}:1",
            MAX_ENTRIES >> 8,
            MAX_ENTRIES & 255
        )));
    }

    #[test]
    fn bare_ips_and_bracketed_v6_addresses_compare_like_upstream() {
        let s = EndpointSubset::from_entries(["10.0.0.1", "[fd00::1]:8000"]);
        assert!(s.admits("10.0.0.1:8000"));
        assert!(s.admits("[fd00::1]:9000"));
        assert!(!s.admits("[fd00::2]:8000"));
        assert!(!s.admits("10.0.0.10:8000"));
    }
}
