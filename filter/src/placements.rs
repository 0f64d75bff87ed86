//! The proxy-wasm build's placement board: where the VMs of this Envoy first sent each prompt
//! prefix, in Envoy's shared data (read by `prefix-rendezvous-scorer`; see
//! `scheduler_core::plugin::placements`).
//!
//! Layout: [`BUCKETS`] shared-data keys `endpoint-picker/placements/NN` (`NN` = the prefix key
//! modulo [`BUCKETS`], two hex digits); each value is up to [`PER_BUCKET`] entries of 16 bytes
//! — the prefix key then the endpoint id, both little-endian u64 — oldest first. A lookup copies
//! one bucket (at most 256 bytes) out of the host; a placement that moves is rewritten at the
//! newest end, and a full bucket forgets its oldest entry, so the board holds at most 1,024
//! prefixes. Writes go through the host's CAS and are retried once: a
//! write lost to a concurrent one only leaves the rendezvous order to decide. Shared data is
//! per VM id, so every VM of this module in the Envoy process sees the same board.

#[cfg(any(target_arch = "wasm32", clippy))]
use scheduler_core::plugin::PlacementBoard;

#[cfg(any(target_arch = "wasm32", clippy))]
use crate::host;

/// Shared-data keys the board is spread over.
pub const BUCKETS: u64 = 64;
/// Entries one bucket holds before forgetting its oldest.
pub const PER_BUCKET: usize = 16;
const ENTRY: usize = 16;
const PREFIX: &[u8] = b"endpoint-picker/placements/";

/// See the module docs.
pub struct SharedDataBoard;

/// Fills `buf` with the bucket's shared-data key and returns it.
fn bucket_key(key: u64, buf: &mut [u8; PREFIX.len() + 2]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = (key % BUCKETS) as usize;
    let (head, tail) = buf.split_at_mut(PREFIX.len());
    head.copy_from_slice(PREFIX);
    for (slot, shift) in tail.iter_mut().zip([4, 0]) {
        *slot = HEX.get((b >> shift) & 0xf).copied().unwrap_or(b'0');
    }
    core::str::from_utf8(buf).unwrap_or("endpoint-picker/placements/00")
}

/// The endpoint recorded for `key` in one bucket's bytes.
fn find(bucket: &[u8], key: u64) -> Option<u64> {
    bucket.chunks_exact(ENTRY).find_map(|e| {
        let (k, v) = e.split_at(8);
        let k = u64::from_le_bytes(k.try_into().ok()?);
        (k == key).then(|| v.try_into().ok().map(u64::from_le_bytes))?
    })
}

/// `bucket` without `key`'s entry and with `(key, endpoint)` appended, dropping its oldest
/// entries (and any trailing partial entry) so that at most [`PER_BUCKET`] remain.
fn appended(bucket: &[u8], key: u64, endpoint: u64) -> Vec<u8> {
    let kept: Vec<&[u8]> = bucket
        .chunks_exact(ENTRY)
        .filter(|e| e.get(..8) != Some(&key.to_le_bytes()[..]))
        .collect();
    let skip = kept.len().saturating_sub(PER_BUCKET - 1);
    let mut out = Vec::with_capacity((kept.len() - skip + 1) * ENTRY);
    for e in kept.iter().skip(skip) {
        out.extend_from_slice(e);
    }
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(&endpoint.to_le_bytes());
    out
}

#[cfg(any(target_arch = "wasm32", clippy))]
impl PlacementBoard for SharedDataBoard {
    fn get(&self, key: u64) -> Option<u64> {
        let mut buf = [0u8; PREFIX.len() + 2];
        let (data, _) = host::shared_data(bucket_key(key, &mut buf));
        find(&data?, key)
    }

    fn put(&self, key: u64, endpoint: u64) {
        let mut buf = [0u8; PREFIX.len() + 2];
        let name = bucket_key(key, &mut buf);
        for _ in 0..2 {
            let (data, cas) = host::shared_data(name);
            let data = data.unwrap_or_default();
            if find(&data, key) == Some(endpoint) {
                return;
            }
            if host::set_shared_data_cas(name, &appended(&data, key, endpoint), cas) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_named_by_two_hex_digits() {
        let mut buf = [0u8; PREFIX.len() + 2];
        assert_eq!(bucket_key(0, &mut buf), "endpoint-picker/placements/00");
        assert_eq!(
            bucket_key(63 + 64 * 5, &mut buf),
            "endpoint-picker/placements/3f"
        );
    }

    #[test]
    fn a_full_bucket_forgets_its_oldest_entry() {
        let mut bucket = Vec::new();
        for k in 0..PER_BUCKET as u64 {
            bucket = appended(&bucket, k, k + 100);
        }
        assert_eq!(find(&bucket, 0), Some(100));
        bucket = appended(&bucket, 99, 7);
        assert_eq!(bucket.len(), PER_BUCKET * ENTRY);
        assert_eq!(find(&bucket, 0), None);
        assert_eq!(find(&bucket, 1), Some(101));
        assert_eq!(find(&bucket, 99), Some(7));
        // A new placement replaces the old one (moved to the newest end).
        bucket = appended(&bucket, 1, 55);
        assert_eq!(bucket.len(), PER_BUCKET * ENTRY);
        assert_eq!(find(&bucket, 1), Some(55));
        assert_eq!(find(&bucket, 2), Some(102));
        // A torn value (not a whole number of entries) loses only its partial tail.
        let mut torn = appended(&[], 5, 6);
        torn.extend_from_slice(&[1, 2, 3]);
        assert_eq!(find(&appended(&torn, 8, 9), 5), Some(6));
    }
}
