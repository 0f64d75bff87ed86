//! Decoding vLLM's and SGLang's KV-cache event messages (untrusted input: every malformed part
//! is an error, never a panic).
//!
//! A message is ZMQ multipart `[topic, sequence, payload]`: the topic `kv@<pod>@<model>`
//! (llm-d's convention; vLLM's default topic is empty), an 8-byte big-endian sequence number,
//! and a msgpack `KVEventBatch` in msgspec's `array_like` form, `[ts, [event…],
//! data_parallel_rank?]`. Each event is an array led by its tag (fields by position, trailing
//! defaults omitted; newer fields at the end are ignored):
//! - `["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id?, medium?,
//!   lora_name?, extra_keys?, …]`; `extra_keys` (newer vLLM) has one entry per block, nil or
//!   the values besides the tokens vLLM hashed into that block: the LoRA name, then image
//!   identifiers, then the request's `cache_salt` (first block only), then prompt-embedding
//!   hashes — read into [`StoredExtras`]
//! - `["BlockRemoved", block_hashes, medium?, …]`
//! - `["AllBlocksCleared", …]`
//!
//! An event may also come as a map: its tag under `type`, its fields by name (llm-d reads both
//! forms). SGLang sends the same batches, `[ts, [event…], attn_dp_rank]`, but its `BlockStored`
//! ends at `medium` — when a further element is present it is SGLang's own `metadata` struct,
//! not vLLM's `lora_name`, so with [`KvEventFormat::Sglang`] nothing after `medium` is read
//! (llm-d's SGLang adapter reads the same six fields).
//!
//! A block hash is an integer, or bytes of which the last 8 are read big-endian (vLLM's SHA-256
//! hashes), as llm-d-kv-cache reads them. Event kinds this module does not know are skipped.

use rmpv::Value;
use scheduler_core::kvcache::{KvEvent, StoredExtras};
use scheduler_core::plugin::KvEventFormat;

/// Largest payload decoded, bytes (a batch of a few hundred 16-token blocks is ~10–50 KB).
pub const MAX_PAYLOAD_BYTES: usize = 16 << 20;
/// Deepest msgpack nesting accepted (a batch needs 4).
const MAX_DEPTH: usize = 16;

/// A decoded message.
#[derive(Debug, PartialEq)]
pub struct Batch {
    /// The pod part of the topic (`kv@<pod>@<model>`), or the whole topic.
    pub pod: String,
    /// Sequence number.
    pub seq: u64,
    /// The events, in order.
    pub events: Vec<KvEvent>,
    /// The publisher's data-parallel rank (the batch's third element), when it says.
    pub rank: Option<u64>,
}

fn hash(v: &Value) -> Result<u64, String> {
    match v {
        Value::Integer(i) => i
            .as_u64()
            .or_else(|| i.as_i64().map(|x| x as u64))
            .ok_or_else(|| "block hash out of range".into()),
        Value::Binary(b) if !b.is_empty() => Ok(b
            .iter()
            .skip(b.len().saturating_sub(8))
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))),
        other => Err(format!("block hash is {other:?}")),
    }
}

fn hashes(v: Option<&Value>) -> Result<Vec<u64>, String> {
    v.and_then(Value::as_array)
        .ok_or("block_hashes is not an array")?
        .iter()
        .map(hash)
        .collect()
}

fn opt_str(v: Option<&Value>) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::String(s)) => Ok(s.as_str().map(str::to_owned)),
        Some(other) => Err(format!("expected a string, got {other:?}")),
    }
}

/// One event's fields, from msgspec's array form (by position after the tag) or a map form
/// (by name, the tag under `type`), as llm-d reads both.
enum Fields<'a> {
    Array(&'a [Value]),
    Map(&'a [(Value, Value)]),
}

impl<'a> Fields<'a> {
    /// Field `name`, at `pos` in the array form (the tag is position 0).
    fn get(&self, name: &str, pos: usize) -> Option<&'a Value> {
        match self {
            Fields::Array(f) => f.get(pos),
            Fields::Map(m) => m
                .iter()
                .find(|(k, _)| k.as_str() == Some(name))
                .map(|(_, v)| v),
        }
    }
}

/// A vLLM `BlockStored`'s `extra_keys` (`v`) for an event of `blocks` blocks whose adapter is
/// `lora_name`, as the index needs them: the LoRA name (first in every entry of an adapter's
/// blocks) is dropped, as it is in the chain's root already; the text extras of a first block
/// that starts a sequence (`parent` is `None`) go to the root (a salt, or image identifiers);
/// any other extra ends the keyable blocks.
///
/// # Errors
/// The field is neither nil nor an array, or an entry is neither nil nor an array.
fn extras(
    v: Option<&Value>,
    lora_name: Option<&str>,
    parent: Option<u64>,
    blocks: usize,
) -> Result<StoredExtras, String> {
    let entries = match v {
        None | Some(Value::Nil) => return Ok(StoredExtras::default()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(format!("extra_keys is {other:?}")),
    };
    let mut out = StoredExtras::default();
    for (i, entry) in entries.iter().enumerate().take(blocks) {
        let keys: &[Value] = match entry {
            Value::Nil => continue,
            Value::Array(k) => k,
            other => return Err(format!("an extra_keys entry is {other:?}")),
        };
        let rest = match (keys.split_first(), lora_name) {
            (Some((first, rest)), Some(l)) if first.as_str() == Some(l) => rest,
            _ => keys,
        };
        if rest.is_empty() {
            continue;
        }
        if i == 0 && parent.is_none() && rest.iter().all(|k| k.as_str().is_some()) {
            out.root = rest
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            continue;
        }
        out.keyable_blocks = Some(i);
        break;
    }
    Ok(out)
}

fn event(v: &Value, format: KvEventFormat) -> Result<Option<KvEvent>, String> {
    let f = match v {
        Value::Array(a) => Fields::Array(a),
        Value::Map(m) => Fields::Map(m),
        _ => return Err("event is neither an array nor a map".into()),
    };
    let tag = f
        .get("type", 0)
        .and_then(Value::as_str)
        .ok_or("event has no tag")?;
    Ok(Some(match tag {
        "BlockStored" => {
            let parent = match f.get("parent_block_hash", 2) {
                None | Some(Value::Nil) => None,
                Some(p) => Some(hash(p)?),
            };
            let tokens = f
                .get("token_ids", 3)
                .and_then(Value::as_array)
                .ok_or("token_ids is not an array")?
                .iter()
                .map(|t| {
                    t.as_u64()
                        .and_then(|x| u32::try_from(x).ok())
                        .ok_or("token id out of range")
                })
                .collect::<Result<Vec<u32>, _>>()?;
            let block_size = f
                .get("block_size", 4)
                .and_then(Value::as_u64)
                .and_then(|x| u32::try_from(x).ok())
                .filter(|&x| x > 0)
                .ok_or("block_size is not a positive integer")?;
            let block_hashes = hashes(f.get("block_hashes", 1))?;
            // SGLang's BlockStored ends at `medium`: what follows is its own metadata.
            let (lora_name, extras) = match format {
                KvEventFormat::Vllm => {
                    let lora_name = opt_str(f.get("lora_name", 7))?;
                    let extras = extras(
                        f.get("extra_keys", 8),
                        lora_name.as_deref(),
                        parent,
                        block_hashes.len(),
                    )?;
                    (lora_name, extras)
                }
                KvEventFormat::Sglang => (None, StoredExtras::default()),
            };
            KvEvent::BlockStored {
                block_hashes,
                parent,
                token_ids: tokens,
                block_size,
                medium: opt_str(f.get("medium", 6))?,
                lora_name,
                extras,
            }
        }
        "BlockRemoved" => KvEvent::BlockRemoved {
            block_hashes: hashes(f.get("block_hashes", 1))?,
            medium: opt_str(f.get("medium", 2))?,
        },
        "AllBlocksCleared" => KvEvent::AllBlocksCleared,
        _ => return Ok(None),
    }))
}

/// Decodes one message's frames, read as `format`'s schema.
///
/// # Errors
/// Not 3 frames; a sequence frame shorter than 8 bytes; a payload over [`MAX_PAYLOAD_BYTES`],
/// not msgpack, nested too deep or not shaped as above.
pub fn decode(frames: &[&[u8]], format: KvEventFormat) -> Result<Batch, String> {
    let [topic, seq, payload] = frames else {
        return Err(format!("{} frames, expected 3", frames.len()));
    };
    let seq: [u8; 8] = seq
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or("sequence frame shorter than 8 bytes")?;
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(format!("payload of {} bytes", payload.len()));
    }
    let topic = String::from_utf8_lossy(topic);
    let mut parts = topic.split('@');
    let pod = match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(pod), Some(_)) => pod.to_owned(),
        _ => topic.clone().into_owned(),
    };
    let mut rd = *payload;
    let v = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)
        .map_err(|e| format!("msgpack: {e}"))?;
    let batch = v.as_array().ok_or("batch is not an array")?;
    let events = batch
        .get(1)
        .and_then(Value::as_array)
        .ok_or("batch has no event list")?
        .iter()
        .map(|e| event(e, format))
        .filter_map(Result::transpose)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Batch {
        pod,
        seq: u64::from_be_bytes(seq),
        events,
        rank: batch.get(2).and_then(Value::as_u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    #[test]
    fn decodes_a_vllm_batch_with_integer_and_sha256_hashes() {
        let sha: Vec<u8> = (0u8..32).collect();
        let batch = Value::Array(vec![
            Value::F64(1.0),
            Value::Array(vec![
                Value::Array(vec![
                    "BlockStored".into(),
                    Value::Array(vec![Value::from(7u64), Value::Binary(sha.clone())]),
                    Value::Nil,
                    Value::Array((0..32).map(|t| Value::from(t as u64)).collect()),
                    Value::from(16u64),
                    Value::Nil,
                    "GPU".into(),
                    "sql-lora".into(),
                    Value::Nil,        // extra_keys: none
                    Value::from(0u64), // group_idx: a newer field, ignored
                ]),
                Value::Array(vec![
                    "BlockRemoved".into(),
                    Value::Array(vec![Value::from(7u64)]),
                ]),
                Value::Array(vec!["SomethingNew".into()]),
                Value::Array(vec!["AllBlocksCleared".into()]),
            ]),
            Value::from(0u64),
        ]);
        let payload = enc(&batch);
        let b = decode(
            &[b"kv@10.0.0.1:8000@m", &5u64.to_be_bytes(), &payload],
            KvEventFormat::Vllm,
        )
        .unwrap();
        assert_eq!(b.pod, "10.0.0.1:8000");
        assert_eq!(b.seq, 5);
        assert_eq!(b.events.len(), 3, "unknown kinds are skipped");
        let KvEvent::BlockStored {
            block_hashes,
            parent,
            token_ids,
            block_size,
            lora_name,
            medium,
            extras,
        } = &b.events[0]
        else {
            panic!("{:?}", b.events[0]);
        };
        assert_eq!(block_hashes[0], 7);
        assert_eq!(
            block_hashes[1],
            u64::from_be_bytes(sha[24..32].try_into().unwrap())
        );
        assert_eq!((*parent, token_ids.len(), *block_size), (None, 32, 16));
        assert_eq!(lora_name.as_deref(), Some("sql-lora"));
        assert_eq!(medium.as_deref(), Some("GPU"));
        assert_eq!(extras, &StoredExtras::default());
        assert_eq!(b.events[2], KvEvent::AllBlocksCleared);
    }

    fn vllm(frames: &[&[u8]]) -> Result<Batch, String> {
        decode(frames, KvEventFormat::Vllm)
    }

    #[test]
    fn malformed_messages_are_errors() {
        let ok = enc(&Value::Array(vec![Value::F64(0.0), Value::Array(vec![])]));
        assert!(vllm(&[b"t", &[0; 8]]).is_err(), "2 frames");
        assert!(vllm(&[b"t", &[0; 4], &ok]).is_err(), "short sequence");
        assert!(vllm(&[b"t", &[0; 8], b"\xc1"]).is_err(), "not msgpack");
        let deep = (0..100).fold(Value::Nil, |v, _| Value::Array(vec![v]));
        assert!(vllm(&[b"t", &[0; 8], &enc(&deep)]).is_err(), "too deep");
        let bad = enc(&Value::Array(vec![
            Value::F64(0.0),
            Value::Array(vec![Value::Array(vec!["BlockStored".into(), Value::Nil])]),
        ]));
        assert!(vllm(&[b"t", &[0; 8], &bad]).is_err(), "no hashes");
        let b = vllm(&[b"plain-topic", &[0; 8], &ok]).unwrap();
        assert_eq!(b.pod, "plain-topic");
        assert!(b.events.is_empty());
    }

    fn stored_fields(tail: Vec<Value>) -> Value {
        let mut f = vec![
            Value::from("BlockStored"),
            Value::Array(vec![Value::from(9u64)]),
            Value::Nil,
            Value::Array((0..4).map(|t| Value::from(t as u64)).collect()),
            Value::from(4u64),
            Value::from(3u64), // lora_id
            "GPU".into(),
        ];
        f.extend(tail);
        Value::Array(f)
    }

    fn one(event: Value, format: KvEventFormat) -> Result<KvEvent, String> {
        let batch = Value::Array(vec![Value::F64(0.0), Value::Array(vec![event]), Value::Nil]);
        let b = decode(&[b"kv@p@m", &[0; 8], &enc(&batch)], format)?;
        b.events.into_iter().next().ok_or_else(|| "no event".into())
    }

    #[test]
    fn sglang_events_end_at_medium_and_its_metadata_is_not_a_lora_name() {
        // SGLang's BlockStoredWithMetadata: a metadata struct after `medium`.
        let meta = Value::Map(vec![("cache_salt".into(), "s".into())]);
        let ev = stored_fields(vec![meta]);
        let KvEvent::BlockStored {
            block_hashes,
            lora_name,
            medium,
            ..
        } = one(ev.clone(), KvEventFormat::Sglang).unwrap()
        else {
            panic!("not stored")
        };
        assert_eq!((block_hashes, lora_name), (vec![9], None));
        assert_eq!(medium.as_deref(), Some("GPU"));
        // Read as vLLM, that element would be lora_name, which must be a string.
        assert!(one(ev, KvEventFormat::Vllm).is_err());
        // The plain six fields read alike either way.
        assert_eq!(
            one(stored_fields(vec![]), KvEventFormat::Sglang).unwrap(),
            one(stored_fields(vec![]), KvEventFormat::Vllm).unwrap()
        );
    }

    #[test]
    fn map_encoded_events_read_by_field_name() {
        let map = |pairs: Vec<(&str, Value)>| {
            Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
        };
        let stored = map(vec![
            ("block_size", Value::from(4u64)),
            ("type", "BlockStored".into()),
            ("block_hashes", Value::Array(vec![Value::from(9u64)])),
            (
                "token_ids",
                Value::Array((0..4).map(|t| Value::from(t as u64)).collect()),
            ),
            ("lora_name", "sql-lora".into()),
            ("medium", "CPU".into()),
        ]);
        assert_eq!(
            one(stored, KvEventFormat::Vllm).unwrap(),
            KvEvent::BlockStored {
                block_hashes: vec![9],
                parent: None,
                token_ids: vec![0, 1, 2, 3],
                block_size: 4,
                lora_name: Some("sql-lora".into()),
                medium: Some("CPU".into()),
                extras: StoredExtras::default(),
            }
        );
        let removed = map(vec![
            ("type", "BlockRemoved".into()),
            ("block_hashes", Value::Array(vec![Value::from(9u64)])),
        ]);
        assert_eq!(
            one(removed, KvEventFormat::Sglang).unwrap(),
            KvEvent::BlockRemoved {
                block_hashes: vec![9],
                medium: None
            }
        );
        let untagged = map(vec![("block_hashes", Value::Array(vec![]))]);
        assert!(one(untagged, KvEventFormat::Vllm).is_err());
        assert!(one(Value::from(7u64), KvEventFormat::Vllm).is_err());
    }

    /// vLLM's `extra_keys`: per block the LoRA name (dropped), then image identifiers, the salt
    /// (first block only), embedding hashes.
    #[test]
    fn extra_keys_give_the_salt_to_the_root_and_stop_at_the_first_image() {
        let blocks = |n: u64| Value::Array((0..n).map(Value::from).collect());
        let ev = |parent: Value, lora: Value, extra: Value| {
            Value::Array(vec![
                "BlockStored".into(),
                blocks(3),
                parent,
                Value::Array((0..12).map(|t| Value::from(t as u64)).collect()),
                Value::from(4u64),
                Value::Nil,
                "GPU".into(),
                lora,
                extra,
            ])
        };
        let get = |e: Value| match one(e, KvEventFormat::Vllm).unwrap() {
            KvEvent::BlockStored { extras, .. } => extras,
            other => panic!("{other:?}"),
        };
        let arr = |v: Vec<Value>| Value::Array(v);
        // A salted adapter request: [lora, salt] for block 0, [lora] for the others.
        let salted = arr(vec![
            arr(vec!["sql-lora".into(), "tenant-a".into()]),
            arr(vec!["sql-lora".into()]),
            arr(vec!["sql-lora".into()]),
        ]);
        assert_eq!(
            get(ev(Value::Nil, "sql-lora".into(), salted.clone())),
            StoredExtras {
                root: vec!["tenant-a".into()],
                keyable_blocks: None
            }
        );
        // The same first block continuing a sequence cannot hold a salt: it is not keyable.
        assert_eq!(
            get(ev(Value::from(1u64), "sql-lora".into(), salted)).keyable_blocks,
            Some(0)
        );
        // An image in block 1 (legacy [identifier, offset] form): blocks 0 only.
        let image = arr(vec![
            Value::Nil,
            arr(vec![arr(vec!["img-1".into(), Value::from(2u64)])]),
            Value::Nil,
        ]);
        assert_eq!(
            get(ev(Value::Nil, Value::Nil, image)),
            StoredExtras {
                root: Vec::new(),
                keyable_blocks: Some(1)
            }
        );
        // Embedding hashes (bytes) in block 0: nothing keyable.
        let embeds = arr(vec![
            arr(vec![Value::Binary(vec![1; 32])]),
            Value::Nil,
            Value::Nil,
        ]);
        assert_eq!(
            get(ev(Value::Nil, Value::Nil, embeds)).keyable_blocks,
            Some(0)
        );
        // All nil: as without the field.
        let none = arr(vec![Value::Nil, Value::Nil, Value::Nil]);
        assert_eq!(
            get(ev(Value::Nil, Value::Nil, none)),
            StoredExtras::default()
        );
        // Malformed: an error, not a guess.
        assert!(one(
            ev(Value::Nil, Value::Nil, Value::from(3u64)),
            KvEventFormat::Vllm
        )
        .is_err());
        assert!(one(
            ev(Value::Nil, Value::Nil, arr(vec![Value::from(3u64)])),
            KvEventFormat::Vllm
        )
        .is_err());
    }

    /// A batch captured from a real vLLM 0.32.0 (CPU build, `scripts/real-vllm/`): a chat
    /// request for LoRA adapter `sql-lora` with `cache_salt` "tenant-l", 128 prompt tokens in
    /// blocks of 32. vLLM 0.32 sends events as maps, with `group_idx` and
    /// `kv_cache_spec_kind` after `extra_keys`.
    #[test]
    fn decodes_a_batch_from_a_real_vllm_0_32() {
        let payload = include_bytes!("../testdata/vllm_0.32_lora_salt_batch.msgpack");
        let b = vllm(&[
            b"kv@127.0.0.10:18010@test/tiny-chat",
            &0u64.to_be_bytes(),
            payload,
        ])
        .unwrap();
        assert_eq!(
            (b.pod.as_str(), b.seq, b.rank),
            ("127.0.0.10:18010", 0, Some(0))
        );
        let [KvEvent::BlockStored {
            block_hashes,
            parent,
            token_ids,
            block_size,
            lora_name,
            medium,
            extras,
        }] = b.events.as_slice()
        else {
            panic!("{:?}", b.events);
        };
        assert_eq!(
            (block_hashes.len(), *parent, token_ids.len(), *block_size),
            (4, None, 128, 32)
        );
        assert_eq!(lora_name.as_deref(), Some("sql-lora"));
        assert_eq!(medium.as_deref(), Some("GPU"));
        assert_eq!(
            extras,
            &StoredExtras {
                root: vec!["tenant-l".into()],
                keyable_blocks: None
            }
        );
    }

    /// Untrusted payloads: random bytes and random msgpack shaped like batches (tags, field
    /// types and lengths drawn at random) never panic the decoder, in either schema.
    #[test]
    fn random_payloads_are_errors_or_batches_never_panics() {
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        fn value(r: &mut dyn FnMut() -> u64, depth: u32) -> Value {
            let tags = [
                "BlockStored",
                "BlockRemoved",
                "AllBlocksCleared",
                "type",
                "medium",
            ];
            match r() % if depth > 3 { 6 } else { 9 } {
                0 => Value::Nil,
                1 => Value::from(r()),
                2 => Value::from(-(r() as i64 & 0xFFFF)),
                3 => Value::F64(r() as f64),
                4 => tags[(r() % 5) as usize].into(),
                5 => Value::Binary((0..r() % 40).map(|_| r() as u8).collect()),
                6 | 7 => Value::Array((0..r() % 9).map(|_| value(r, depth + 1)).collect()),
                _ => Value::Map(
                    (0..r() % 5)
                        .map(|_| (value(r, depth + 1), value(r, depth + 1)))
                        .collect(),
                ),
            }
        }
        let (mut ok, mut err) = (0, 0);
        for i in 0..20_000 {
            let payload = if i % 4 == 0 {
                (0..next() % 64).map(|_| next() as u8).collect()
            } else {
                let events = (0..next() % 4)
                    .map(|_| {
                        let mut f = vec![Value::from(
                            ["BlockStored", "BlockRemoved", "AllBlocksCleared"]
                                [(next() % 3) as usize],
                        )];
                        f.extend((0..next() % 9).map(|_| value(&mut next, 1)));
                        if next() % 3 == 0 {
                            Value::Map(f.into_iter().map(|v| ("type".into(), v)).collect())
                        } else {
                            Value::Array(f)
                        }
                    })
                    .collect();
                enc(&Value::Array(vec![
                    Value::F64(0.0),
                    Value::Array(events),
                    value(&mut next, 3),
                ]))
            };
            for format in [KvEventFormat::Vllm, KvEventFormat::Sglang] {
                match decode(&[b"kv@p@m", &[0; 8], &payload], format) {
                    Ok(_) => ok += 1,
                    Err(_) => err += 1,
                }
            }
        }
        assert!(
            ok > 0 && err > 0,
            "both outcomes exercised: {ok} ok, {err} errors"
        );
    }
}
