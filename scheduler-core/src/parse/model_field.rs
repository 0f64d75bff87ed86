//! Rewriting the `model` of a JSON request body, as GIE does before forwarding a request whose
//! target model differs from the one asked for (the `x-gateway-model-name-rewrite` header or a
//! model rewrite rule): the model server must see the model it is to serve, e.g. a LoRA adapter
//! in place of its base model.
//!
//! Only the value of the top-level `model` member changes; every other byte of the body stays
//! as the client sent it (GIE re-encodes the whole body, which reorders keys; the server reads
//! the same JSON either way). A body without `model` (or with `"model": null`), whose model a
//! generic rewrite rule or the rewrite header named, gets the member: inserted first in the
//! object, or the `null` replaced.

use alloc::vec::Vec;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The top-level `model` member of a JSON object, as the raw text of its value (`null`
/// included: the field's own deserializer, not `Option`'s, reads it).
#[derive(Deserialize)]
struct ModelMember<'a> {
    #[serde(borrow, default, deserialize_with = "raw_member")]
    model: Option<&'a RawValue>,
}

fn raw_member<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// `body` with its top-level `model` set to `target` (JSON-escaped): a string value replaced,
/// a `null` replaced, an absent member inserted first. `None` when the body is not a JSON object
/// (a gRPC frame, a model named by the path), its `model` is of another type, or the model
/// already is `target`.
pub fn rewrite_model(body: &[u8], target: &str) -> Option<Vec<u8>> {
    let text = core::str::from_utf8(body).ok()?;
    // An object only (serde would also read a struct from an array's first element).
    let open = text.len() - text.trim_start().len();
    if !text.get(open..)?.starts_with('{') {
        return None;
    }
    let member: ModelMember<'_> = serde_json::from_str(text).ok()?;
    let replacement = serde_json::to_string(target).ok()?;
    let Some(raw) = member.model.map(RawValue::get) else {
        return Some(insert_model(body, open, &replacement));
    };
    if raw != "null" {
        // Owned: a name written with escapes cannot be borrowed.
        let current: alloc::string::String = serde_json::from_str(raw).ok()?;
        if current == target {
            return None;
        }
    }
    // `raw` borrows from `text`: its offset is where the value starts.
    let start = (raw.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let end = start.checked_add(raw.len())?;
    let mut out = Vec::with_capacity(
        body.len()
            .saturating_sub(raw.len())
            .saturating_add(replacement.len()),
    );
    out.extend_from_slice(body.get(..start)?);
    out.extend_from_slice(replacement.as_bytes());
    out.extend_from_slice(body.get(end..)?);
    Some(out)
}

/// `body` (a JSON object whose `{` is at `open`) with `"model":<value>` as its first member.
fn insert_model(body: &[u8], open: usize, value: &str) -> Vec<u8> {
    let (head, rest) = body.split_at((open + 1).min(body.len()));
    let empty = rest
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'}');
    let mut out = Vec::with_capacity(body.len() + value.len() + 10);
    out.extend_from_slice(head);
    out.extend_from_slice(b"\"model\":");
    out.extend_from_slice(value.as_bytes());
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn rewritten(body: &str, target: &str) -> Option<String> {
        rewrite_model(body.as_bytes(), target).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn only_the_top_level_model_value_changes() {
        let body = r#"{"messages":[{"role":"user","content":"{\"model\":\"x\"}"}], "model" : "base","stream":true}"#;
        assert_eq!(
            rewritten(body, "base-lora-v2").as_deref(),
            Some(
                r#"{"messages":[{"role":"user","content":"{\"model\":\"x\"}"}], "model" : "base-lora-v2","stream":true}"#
            )
        );
        // A name that needs escaping is escaped.
        assert_eq!(
            rewritten(r#"{"model":"a"}"#, "b\"c").as_deref(),
            Some(r#"{"model":"b\"c"}"#)
        );
        // An escaped model in the body is read as the name it stands for, and replaced.
        assert_eq!(rewritten(r#"{"model":"\u0061"}"#, "a"), None);
        assert_eq!(
            rewritten(r#"{"model":"\u0061"}"#, "b").as_deref(),
            Some(r#"{"model":"b"}"#)
        );
    }

    #[test]
    fn a_missing_or_null_model_is_set() {
        assert_eq!(
            rewritten(r#"  {"prompt":"no model"}"#, "t").as_deref(),
            Some(r#"  {"model":"t","prompt":"no model"}"#)
        );
        assert_eq!(rewritten("{ }", "t").as_deref(), Some(r#"{"model":"t" }"#));
        assert_eq!(
            rewritten(r#"{"model":null,"prompt":"x"}"#, "t").as_deref(),
            Some(r#"{"model":"t","prompt":"x"}"#)
        );
        // The result reads back as the target model.
        let out = rewritten(r#"{"prompt":"x","stream":true}"#, "a\"b").unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["model"].as_str(), v["stream"].as_bool()),
            (Some("a\"b"), Some(true))
        );
    }

    #[test]
    fn nothing_to_rewrite() {
        assert_eq!(rewritten(r#"{"model":"same"}"#, "same"), None);
        assert_eq!(rewritten(r#"{"model":7}"#, "t"), None);
        assert_eq!(rewritten("not json", "t"), None);
        assert_eq!(rewrite_model(&[0, 0, 0, 0, 5, 1, 2], "t"), None);
        assert_eq!(rewritten(r#"["model"]"#, "t"), None);
    }
}
