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
    /// xxh3-64 of the part's payload as JSON text (the value under the part's type key, e.g.
    /// `image_url: {"url": …}`; the whole part when that key is absent). The same image sent
    /// twice, by URL or inline data, gives the same hash.
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
                let payload = m.get(t).map_or_else(|| v.to_string(), |p| p.to_string());
                let hash = xxhash_rust::xxh3::xxh3_64(payload.as_bytes());
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
}
