//! The proxy-wasm ABI's header-map serialisation, in both directions, without a panic path.
//! Kept apart from [`crate::abi`] so it builds and is tested on the host.

/// Header pairs as bytes: (name, value).
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The ABI's header-map serialisation: `count:u32le`, then `count` pairs of
/// `(name_len:u32le, value_len:u32le)`, then every name and value each followed by a NUL.
pub fn encode_pairs(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        4 + pairs
            .iter()
            .map(|(k, v)| 10 + k.len() + v.len())
            .sum::<usize>(),
    );
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Reads [`encode_pairs`]' format; stops (keeping what was read) at the first inconsistency
/// instead of failing, since the bytes come from the host and are only ever header values.
pub fn decode_pairs(b: &[u8]) -> Pairs {
    let u32_at = |at: usize| -> Option<usize> {
        let s = b.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(s.try_into().ok()?) as usize)
    };
    let Some(count) = u32_at(0) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut data = match count.checked_mul(8).and_then(|n| n.checked_add(4)) {
        Some(d) if d <= b.len() => d,
        _ => return out,
    };
    for i in 0..count {
        let (Some(kl), Some(vl)) = (u32_at(4 + i * 8), u32_at(8 + i * 8)) else {
            break;
        };
        let Some(k) = data.checked_add(kl).and_then(|e| b.get(data..e)) else {
            break;
        };
        let vs = data + kl + 1;
        let Some(v) = vs.checked_add(vl).and_then(|e| b.get(vs..e)) else {
            break;
        };
        out.push((k.to_vec(), v.to_vec()));
        data = vs + vl + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_and_truncation_is_not_a_panic() {
        let v: &[u8] = b"v\xff1";
        let enc = encode_pairs(&[(":status", b"200"), ("x", v)]);
        let dec = decode_pairs(&enc);
        assert_eq!(dec.len(), 2);
        assert_eq!(dec[0], (b":status".to_vec(), b"200".to_vec()));
        assert_eq!(dec[1].1, v);
        for cut in 0..enc.len() {
            let _ = decode_pairs(&enc[..cut]);
        }
        assert!(decode_pairs(&[0xff, 0xff, 0xff, 0xff]).is_empty());
    }
}
