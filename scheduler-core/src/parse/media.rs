//! Whether a request carries media (image, audio or video content), which an encode stage of
//! disaggregated serving would process (llm-d's E/P/D). llm-d decides this from the tokenizer's
//! multimodal features; without a tokenizer in the proxy we read the request's content parts:
//! an object whose `"type"` is one of [`MEDIA_PART_TYPES`] (OpenAI chat's `image_url`,
//! `input_audio`; Responses' `input_image`; Anthropic's `image`; vLLM's `audio_url`,
//! `video_url`).
//!
//! Cost: one substring search for `"type"` on the raw JSON (a text-only chat has no content
//! parts, so no `"type"` key: the common case ends there), then a search for the media type
//! names, and a parse only when one occurs. A `type` key spelled with JSON escapes is not seen.

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

/// True when the JSON text `raw` (messages, input or items) has a content part of a media type.
pub fn has_media(raw: &str) -> bool {
    // This runs on every chat request: one search for a `"type"` key ends the common case
    // instead of seven name searches over the whole body.
    if !raw.contains("\"type\"") || !MEDIA_PART_TYPES.iter().any(|t| raw.contains(t)) {
        return false;
    }
    serde_json::from_str::<Value>(raw).is_ok_and(|v| walk(&v, 0))
}

fn walk(v: &Value, depth: usize) -> bool {
    // Content parts sit a few levels down (messages[i].content[j]); bound the recursion.
    if depth > 8 {
        return false;
    }
    match v {
        Value::Object(m) => {
            m.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| MEDIA_PART_TYPES.contains(&t))
                || m.values().any(|x| walk(x, depth + 1))
        }
        Value::Array(a) => a.iter().any(|x| walk(x, depth + 1)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_parts_of_media_types() {
        assert!(has_media(
            r#"[{"role":"user","content":[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAA"}}]}]"#
        ));
        assert!(has_media(
            r#"[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAA","format":"wav"}}]}]"#
        ));
        // Text only, even when a media type name appears in the text.
        assert!(!has_media(
            r#"[{"role":"user","content":"describe an image_url field"}]"#
        ));
        assert!(!has_media(
            r#"[{"role":"user","content":[{"type":"text","text":"hi"}]}]"#
        ));
        assert!(!has_media("not json image_url"));
    }
}
