//! The pool's member list as the picker filter publishes it in proxy-wasm shared data, so the
//! metrics scraper follows pool changes without a proxy restart.
//!
//! Why: every gateway puts the scraper (a bootstrap extension) in Envoy's bootstrap, which only
//! changes on restart, while the HTTP filter's configuration is updated by xDS (LDS or ECDS) in
//! place. Each time a filter configuration is loaded, the filter publishes its `pool.endpoints`
//! under [`MEMBERSHIP_KEY`]; the scraper reads the key's CAS on every tick and, when it changed,
//! re-keys its scrape slots by address (metrics of endpoints that stay are kept).
//!
//! Layout: 4 magic bytes `EPM1` (the last byte is the schema version), then the postcard body.
//! Decoding is pure and safe on any input: garbage is an error, never a panic.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::config::pool::{PoolConfig, PoolEndpoint};
use crate::snapshot::{decode_framed, encode_framed, SnapshotError};

/// Magic bytes and schema version of a published member list.
pub const MEMBERSHIP_MAGIC: &[u8; 4] = b"EPM1";

/// Shared-data key of the member list (versioned with the schema).
pub const MEMBERSHIP_KEY: &str = "endpoint-picker/v1/membership";

/// The pool's members as one filter configuration declares them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// `pool.cluster` of the publishing configuration. A scraper follows only a list for its own
    /// cluster, so a second pool sharing the vm_id cannot take over its scrape targets.
    pub cluster: String,
    /// Members in configuration order.
    pub endpoints: Vec<PoolEndpoint>,
}

impl Membership {
    /// The member list of `pool`, or `None` when it declares no endpoints (a filter configured
    /// without `pool.endpoints` leaves the scraper's own list in force).
    pub fn of_pool(pool: &PoolConfig) -> Option<Membership> {
        (!pool.endpoints.is_empty()).then(|| Membership {
            cluster: pool.cluster.clone(),
            endpoints: pool.endpoints.clone(),
        })
    }

    /// Encodes the list: magic, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        encode_framed(MEMBERSHIP_MAGIC, self, 16 + self.endpoints.len() * 48)
    }

    /// Decodes bytes written by [`Self::encode`].
    ///
    /// # Errors
    /// [`SnapshotError::WrongMagic`] for another schema version or foreign bytes,
    /// [`SnapshotError::Corrupt`] for a body that does not decode or has trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Membership, SnapshotError> {
        decode_framed(MEMBERSHIP_MAGIC, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PickerConfig;

    fn pool(json: &str) -> PoolConfig {
        PickerConfig::from_json(json).unwrap().pool
    }

    #[test]
    fn round_trip_keeps_labels_and_metrics_address() {
        let p = pool(
            r#"{"pool": {"cluster": "c", "endpoints": [
                {"address": "10.0.0.1:8000", "labels": {"engine-type": "sglang"}, "metricsPort": 9090},
                {"address": "10.0.0.2:8000"}]}}"#,
        );
        let m = Membership::of_pool(&p).unwrap();
        let back = Membership::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.endpoints[0].metrics_address, "10.0.0.1:9090");
        assert_eq!(back.endpoints[0].labels[0].1, "sglang");
    }

    #[test]
    fn an_empty_pool_publishes_nothing() {
        assert!(Membership::of_pool(&pool(r#"{"pool": {"cluster": "c"}}"#)).is_none());
    }

    #[test]
    fn foreign_and_truncated_bytes_are_errors() {
        let m = Membership::of_pool(&pool(
            r#"{"pool": {"cluster": "c", "endpoints": [{"address": "10.0.0.1:80"}]}}"#,
        ))
        .unwrap()
        .encode();
        assert_eq!(
            Membership::decode(b"EPS1xx"),
            Err(SnapshotError::WrongMagic)
        );
        assert_eq!(
            Membership::decode(&m[..m.len() - 1]),
            Err(SnapshotError::Corrupt)
        );
        let mut long = m.clone();
        long.push(0);
        assert_eq!(Membership::decode(&long), Err(SnapshotError::Corrupt));
    }
}
