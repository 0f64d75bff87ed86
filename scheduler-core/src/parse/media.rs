//! Whether a request carries media (image, audio or video content), which an encode stage of
//! disaggregated serving would process (llm-d's E/P/D). llm-d decides this from the tokenizer's
//! multimodal features; without a tokenizer in the proxy we read the request's content parts:
//! an object whose `"type"` is one of [`MEDIA_PART_TYPES`] (OpenAI chat's `image_url`,
//! `input_audio`; Responses' `input_image`; Anthropic's `image`; vLLM's `audio_url`,
//! `video_url`).
//!
//! Cost: [`may_have_media`] runs on every chat body: one substring search for `"type"` on the
//! raw JSON (a text-only chat has no content parts, so no `"type"` key: the common case ends
//! there), then a search for the media type names. Only when one occurs are the parts parsed,
//! once, by [`crate::parse::media_tokens`] (which counts them and settles whether the request is
//! multimodal) and, with the mm-embeddings producer, by [`media_items`]. A `type` key spelled
//! with JSON escapes is not seen.

use alloc::string::ToString;

use serde_json::Value;
use xxhash_rust::xxh3::Xxh3;

/// Content-part types that are media.
pub const MEDIA_PART_TYPES: [&str; 7] = [
    "image_url",
    "input_image",
    "image",
    "input_audio",
    "audio_url",
    "video_url",
    "input_video",
];

/// False when the JSON text `raw` (messages, input or items) cannot have a content part of a
/// media type: it has no `"type"` key, or none of [`MEDIA_PART_TYPES`] occurs in it. True does
/// not mean it has one (the name may be in the text); reading the parts settles that.
pub fn may_have_media(raw: &str) -> bool {
    // This runs on every chat request: one search for a `"type"` key ends the common case
    // instead of seven name searches over the whole body. memchr's SIMD search: `str::contains`
    // cost ~2,600 instructions over a 4 KiB prompt.
    let has = |needle: &str| memchr::memmem::find(raw.as_bytes(), needle.as_bytes()).is_some();
    has("\"type\"") && MEDIA_PART_TYPES.iter().any(|t| has(t))
}

/// One media item of a request: a hash of its content and its modality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaItem {
    /// xxh3-64 of the part's payload (the value under the part's type key, e.g.
    /// `image_url: {"url": …}`; the whole part when that key is absent), fed to the hasher as
    /// [`feed`] spells a JSON value. The same image sent twice, by URL or inline data, gives the
    /// same hash.
    pub hash: u64,
    /// `image`, `audio` or `video`.
    pub modality: &'static str,
}

/// Most media items read from one request; the rest are ignored (a hostile body with
/// thousands of parts costs a bounded amount of work).
pub const MAX_MEDIA_ITEMS: usize = 256;

/// The JSON values `raw` holds one after another, up to the first that does not parse. A
/// request's prompt text is one value (chat `messages`) or several written back to back
/// (Anthropic's `system` then `messages`; Responses' `instructions`, `tools`, `input`).
pub fn json_values(raw: &str) -> impl Iterator<Item = Value> + '_ {
    serde_json::Deserializer::from_str(raw)
        .into_iter::<Value>()
        .map_while(Result::ok)
}

/// The media items of the JSON text `raw` (a prompt: see [`json_values`]), each distinct hash
/// once, in order of appearance, at most [`MAX_MEDIA_ITEMS`]. Empty for text-only requests
/// ([`may_have_media`] comes first).
pub fn media_items(raw: &str) -> alloc::vec::Vec<MediaItem> {
    let mut out = alloc::vec::Vec::new();
    if !may_have_media(raw) {
        return out;
    }
    for v in json_values(raw) {
        collect(&v, 0, &mut out);
    }
    out
}

fn modality_of(part_type: &str) -> &'static str {
    if part_type.contains("audio") {
        "audio"
    } else if part_type.contains("video") {
        "video"
    } else {
        "image"
    }
}

fn collect(v: &Value, depth: usize, out: &mut alloc::vec::Vec<MediaItem>) {
    if depth > 8 || out.len() >= MAX_MEDIA_ITEMS {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(t) = m
                .get("type")
                .and_then(Value::as_str)
                .filter(|t| MEDIA_PART_TYPES.contains(t))
            {
                let mut h = Xxh3::new();
                feed(m.get(t).unwrap_or(v), 0, &mut h);
                let hash = h.digest();
                if !out.iter().any(|i| i.hash == hash) {
                    out.push(MediaItem {
                        hash,
                        modality: modality_of(t),
                    });
                }
                return;
            }
            for x in m.values() {
                collect(x, depth + 1, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                collect(x, depth + 1, out);
            }
        }
        _ => {}
    }
}

/// Feeds `v` to `h` as a byte sequence no other value gives: a tag byte per kind, each string
/// and container preceded by its length, strings as their UTF-8 (unescaped), numbers as their
/// text; an object's members in the map's order. The payload is not written out as JSON text to
/// be hashed: for a 600 KB inline image that copy was ~1 ms of the request path. Nesting beyond
/// the walk's bound is fed as one marker.
fn feed(v: &Value, depth: usize, h: &mut Xxh3) {
    let len = |h: &mut Xxh3, n: usize| h.update(&(n as u64).to_le_bytes());
    if depth > 16 {
        h.update(b"~");
        return;
    }
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(true) => h.update(b"t"),
        Value::Bool(false) => h.update(b"f"),
        Value::Number(n) => {
            let text = n.to_string();
            h.update(b"#");
            len(h, text.len());
            h.update(text.as_bytes());
        }
        Value::String(s) => {
            h.update(b"s");
            len(h, s.len());
            h.update(s.as_bytes());
        }
        Value::Array(a) => {
            h.update(b"[");
            len(h, a.len());
            for x in a {
                feed(x, depth + 1, h);
            }
        }
        Value::Object(m) => {
            h.update(b"{");
            len(h, m.len());
            for (k, x) in m {
                len(h, k.len());
                h.update(k.as_bytes());
                feed(x, depth + 1, h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_items_of_a_prompt_joined_from_several_values() {
        // Anthropic's `system` before its messages; Responses' instructions before its input.
        let image = r#"{"type":"image","source":{"type":"url","url":"https://x/a.png"}}"#;
        for raw in [
            alloc::format!(r#""Be brief."[{{"role":"user","content":[{image}]}}]"#),
            alloc::string::String::from(
                r#""Describe it."[{"type":"input_image","image_url":"https://x/a.png"}]"#,
            ),
        ] {
            assert_eq!(media_items(&raw).len(), 1, "{raw}");
        }
    }

    #[test]
    fn media_items_are_bounded() {
        let part = r#"{"type":"image_url","image_url":{"url":"https://x/N.png"}}"#;
        let parts: alloc::vec::Vec<alloc::string::String> = (0..1000)
            .map(|i| part.replace('N', &alloc::format!("{i}")))
            .collect();
        let raw = alloc::format!(r#"[{{"role":"user","content":[{}]}}]"#, parts.join(","));
        assert_eq!(media_items(&raw).len(), MAX_MEDIA_ITEMS);
    }

    #[test]
    fn media_items_are_hashed_once_each_with_their_modality() {
        let raw = r#"[{"role":"user","content":[
            {"type":"text","text":"compare"},
            {"type":"image_url","image_url":{"url":"https://x/cat.png"}},
            {"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}},
            {"type":"image_url","image_url":{"url":"https://x/cat.png"}},
            {"type":"video_url","video_url":{"url":"https://x/v.mp4"}}]}]"#;
        let items = media_items(raw);
        let kinds: alloc::vec::Vec<&str> = items.iter().map(|i| i.modality).collect();
        assert_eq!(kinds, ["image", "audio", "video"]);
        let again = media_items(
            r#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/cat.png"}}]}]"#,
        );
        assert_eq!(again.first().map(|i| i.hash), items.first().map(|i| i.hash));
        assert!(media_items(r#"[{"role":"user","content":"an image_url"}]"#).is_empty());
    }

    /// The cheap check passes every body with a media part and stops most text-only ones;
    /// reading the parts (`media_tokens`) settles the rest.
    #[test]
    fn content_parts_of_media_types() {
        use crate::parse::media_tokens::{media_tokens, EstimateParams, VideoMeta};
        let parts = |raw: &str| {
            may_have_media(raw)
                .then(|| media_tokens(raw, &EstimateParams::default(), &VideoMeta::default()).parts)
        };
        assert_eq!(
            parts(
                r#"[{"role":"user","content":[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAA"}}]}]"#
            ),
            Some(1)
        );
        assert_eq!(
            parts(
                r#"[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAA","format":"wav"}}]}]"#
            ),
            Some(1)
        );
        // Text only: no `"type"` key at all, or no media type name ...
        assert_eq!(
            parts(r#"[{"role":"user","content":"describe an image_url field"}]"#),
            None
        );
        assert_eq!(
            parts(r#"[{"role":"user","content":[{"type":"text","text":"hi"}]}]"#),
            None
        );
        // ... or the name only in the text, which the parts show.
        assert_eq!(
            parts(r#"[{"role":"user","content":[{"type":"text","text":"an image_url"}]}]"#),
            Some(0)
        );
        assert_eq!(parts(r#"not json "type" image_url"#), Some(0));
    }

    /// Values that would collide if strings or containers were fed without their lengths or
    /// kinds give different hashes; equal values give equal ones.
    #[test]
    fn fed_values_keep_their_shape() {
        let hash = |v: serde_json::Value| {
            let mut h = Xxh3::new();
            feed(&v, 0, &mut h);
            h.digest()
        };
        use serde_json::json;
        let distinct = [
            json!(["ab"]),
            json!(["a", "b"]),
            json!({"a": "b"}),
            json!({"ab": ""}),
            json!("1"),
            json!(1),
            json!([[]]),
            json!([{}]),
            json!(null),
            json!(""),
            json!({"url": "data:image/png;base64,AAAA"}),
            json!({"url": "data:image/png;base64,AAAB"}),
        ];
        let hashes: alloc::vec::Vec<u64> = distinct.iter().cloned().map(hash).collect();
        for (i, a) in hashes.iter().enumerate() {
            for b in hashes.iter().skip(i + 1) {
                assert_ne!(a, b, "{:?}", distinct.get(i));
            }
        }
        assert_eq!(
            hash(json!({"url": "https://x/a.png", "detail": "low"})),
            hash(serde_json::from_str(r#"{ "detail":"low", "url":"https:\/\/x/a.png" }"#).unwrap())
        );
    }
}
