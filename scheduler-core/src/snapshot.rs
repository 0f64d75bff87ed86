//! The pool snapshot the metrics scraper publishes in proxy-wasm shared data and every picker
//! VM decodes: a compact, versioned binary encoding (postcard) of every endpoint with its
//! metrics, last update time, consecutive scrape failures and staleness.
//!
//! Layout: 4 magic bytes `EPS2` (the last byte is the schema version; 2 added the endpoint
//! metrics' custom attributes), then the postcard body.
//! A module of another schema version finds a different magic and refuses the bytes instead of
//! misreading them (shared data outlives filter reloads, docs/SOURCES.md#wasm-shared-data). Decoding
//! is pure and safe on any input: garbage is an error, never a panic.

use alloc::vec::Vec;
use core::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::endpoint::Endpoint;

/// Magic bytes and schema version.
pub const MAGIC: &[u8; 4] = b"EPS2";

/// Shared-data key of the snapshot (versioned with the schema).
pub const SNAPSHOT_KEY: &str = "endpoint-picker/v1/snapshot";
/// Shared-data key of the 8-byte generation written after each snapshot: readers check this
/// small key on every request and read the large one only when its CAS changed.
pub const GENERATION_KEY: &str = "endpoint-picker/v1/generation";

/// One endpoint as the scraper sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointState {
    /// Address, labels and latest metrics (`metrics.update_time_ms` = last good scrape).
    pub endpoint: Endpoint,
    /// Scrapes that failed in a row since the last good one.
    pub consecutive_failures: u32,
    /// True when the last good scrape is older than the staleness threshold (or never happened).
    pub stale: bool,
}

/// The whole pool at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolSnapshot {
    /// Increases with every publish.
    pub generation: u64,
    /// When it was published, milliseconds since the Unix epoch.
    pub published_ms: u64,
    /// Every endpoint of the pool, in configuration order.
    pub endpoints: Vec<EndpointState>,
}

/// Why bytes are not a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// Missing or different magic / schema version.
    WrongMagic,
    /// The body does not decode.
    Corrupt,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::WrongMagic => {
                f.write_str("snapshot has an unknown magic or schema version")
            }
            SnapshotError::Corrupt => f.write_str("snapshot body does not decode"),
        }
    }
}

impl core::error::Error for SnapshotError {}

impl PoolSnapshot {
    /// Encodes the snapshot.
    pub fn encode(&self) -> Vec<u8> {
        encode_framed(MAGIC, self, 64 + self.endpoints.len() * 96)
    }

    /// Decodes bytes written by [`Self::encode`].
    ///
    /// # Errors
    /// [`SnapshotError`] for anything else.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        decode_framed(MAGIC, bytes)
    }

    /// The endpoints that are not stale, as the picker's candidate pool.
    pub fn healthy_endpoints(&self) -> Vec<Endpoint> {
        self.endpoints
            .iter()
            .filter(|e| !e.stale)
            .map(|e| e.endpoint.clone())
            .collect()
    }
}

/// `magic` followed by the postcard encoding of `value` (`capacity`: a size hint in bytes).
pub(crate) fn encode_framed<T: Serialize>(magic: &[u8; 4], value: &T, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(magic);
    // Serializing plain structs into a Vec cannot fail; were it to, the empty result would be
    // refused by the reader rather than misread.
    postcard::to_extend::<_, Vec<u8>>(value, out).unwrap_or_default()
}

/// Decodes bytes written by [`encode_framed`] with the same `magic`.
///
/// # Errors
/// [`SnapshotError::WrongMagic`] for another magic (schema version or foreign bytes),
/// [`SnapshotError::Corrupt`] for a body that does not decode or has trailing bytes.
pub(crate) fn decode_framed<T: DeserializeOwned>(
    magic: &[u8; 4],
    bytes: &[u8],
) -> Result<T, SnapshotError> {
    let body = bytes
        .strip_prefix(magic.as_slice())
        .ok_or(SnapshotError::WrongMagic)?;
    let (value, rest) = postcard::take_from_bytes::<T>(body).map_err(|_| SnapshotError::Corrupt)?;
    if !rest.is_empty() {
        return Err(SnapshotError::Corrupt);
    }
    Ok(value)
}

/// Encodes a generation number for [`GENERATION_KEY`].
pub fn encode_generation(g: u64) -> [u8; 8] {
    g.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PoolSnapshot {
        let mut e = Endpoint::new("10.0.0.1:8000").with_label("engine-type", "vllm");
        e.metrics.waiting_queue_size = 3;
        e.metrics.kv_cache_usage = 0.25;
        e.metrics.active_lora_adapters = alloc::vec!["a".into()];
        e.metrics.update_time_ms = 123;
        PoolSnapshot {
            generation: 7,
            published_ms: 456,
            endpoints: alloc::vec![
                EndpointState {
                    endpoint: e,
                    consecutive_failures: 0,
                    stale: false
                },
                EndpointState {
                    endpoint: Endpoint::new("10.0.0.2:8000"),
                    consecutive_failures: 4,
                    stale: true
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(PoolSnapshot::decode(&s.encode()).unwrap(), s);
        assert_eq!(s.healthy_endpoints().len(), 1);
    }

    #[test]
    fn garbage_and_other_versions_are_errors() {
        let bytes = sample().encode();
        assert_eq!(PoolSnapshot::decode(b""), Err(SnapshotError::WrongMagic));
        assert_eq!(
            PoolSnapshot::decode(b"EPS0abc"),
            Err(SnapshotError::WrongMagic)
        );
        for cut in 4..bytes.len() {
            assert!(
                PoolSnapshot::decode(&bytes[..cut]).is_err(),
                "truncated at {cut}"
            );
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(PoolSnapshot::decode(&extra), Err(SnapshotError::Corrupt));
        // A huge length prefix must not allocate or panic.
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&[1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(PoolSnapshot::decode(&huge).is_err());
    }
}
