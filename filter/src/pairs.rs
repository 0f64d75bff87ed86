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

/// A list-valued property as Envoy serialises one for proxy-wasm (e.g. a metadata list: what
/// `get_property` returns for `["metadata", "filter_metadata", <namespace>, <key>]` when the
/// value is a list of strings): the header-map format with each element as a name and an empty
/// value. `None` unless the bytes are exactly that (every value empty, nothing left over), so a
/// value of another kind (a string's raw bytes) is not mistaken for a list.
pub fn decode_list(b: &[u8]) -> Option<Vec<Vec<u8>>> {
    let count = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let pairs = decode_pairs(b);
    let exact = pairs.len() == count
        && pairs.iter().all(|(_, v)| v.is_empty())
        && pairs
            .iter()
            .try_fold(count.checked_mul(8)?.checked_add(4)?, |n, (k, _)| {
                n.checked_add(k.len())?.checked_add(2)
            })
            == Some(b.len());
    exact.then(|| pairs.into_iter().map(|(k, _)| k).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes Envoy 1.40 returned for a metadata list of two strings (seen in the e2e
    /// subset-hint test), an empty list, and values that are not lists.
    #[test]
    fn a_list_property_decodes_and_other_values_do_not() {
        let two = encode_pairs(&[("127.0.0.3:1", b""), ("127.0.0.1:5", b"")]);
        assert_eq!(
            two[..12],
            [2, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0],
            "count, then (name length, value length) per element"
        );
        assert_eq!(
            decode_list(&two),
            Some(vec![b"127.0.0.3:1".to_vec(), b"127.0.0.1:5".to_vec()])
        );
        assert_eq!(decode_list(&[0, 0, 0, 0]), Some(Vec::new()));
        assert_eq!(decode_list(b"10.0.0.1:8000"), None);
        assert_eq!(decode_list(&encode_pairs(&[("k", b"v")])), None);
        let mut trailing = two.clone();
        trailing.push(b'x');
        assert_eq!(decode_list(&trailing), None);
        for cut in 0..two.len() {
            assert_eq!(decode_list(&two[..cut]), None, "cut at {cut}");
        }
    }

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
