//! Rewriting the `model` of a JSON request body, as GIE does before forwarding a request whose
//! target model differs from the one asked for (the `x-gateway-model-name-rewrite` header or a
//! model rewrite rule): the model server must see the model it is to serve, e.g. a LoRA adapter
//! in place of its base model.
//!
//! Only the value of the top-level `model` member changes; every other byte of the body stays
//! as the client sent it (GIE re-encodes the whole body, which reorders keys; the server reads
//! the same JSON either way).

use alloc::vec::Vec;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The top-level `model` member of a JSON object, as the raw text of its value.
#[derive(Deserialize)]
struct ModelMember<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
}

/// `body` with its top-level `model` string replaced by `target` (JSON-escaped), or `None`
/// when the body is not a JSON object with a string `model` (a gRPC frame, a model named by the
/// path), or the model already is `target`.
pub fn rewrite_model(body: &[u8], target: &str) -> Option<Vec<u8>> {
    let text = core::str::from_utf8(body).ok()?;
    // An object only (serde would also read a struct from an array's first element).
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let member: ModelMember<'_> = serde_json::from_str(text).ok()?;
    let raw = member.model?.get();
    let current: &str = serde_json::from_str(raw).ok()?;
    if current == target {
        return None;
    }
    // `raw` borrows from `text`: its offset is where the value starts.
    let start = (raw.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let end = start.checked_add(raw.len())?;
    let replacement = serde_json::to_string(target).ok()?;
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
        // An escaped model in the body is read as the name it stands for.
        assert_eq!(rewritten(r#"{"model":"\u0061"}"#, "a"), None);
    }

    #[test]
    fn nothing_to_rewrite() {
        assert_eq!(rewritten(r#"{"model":"same"}"#, "same"), None);
        assert_eq!(rewritten(r#"{"prompt":"no model"}"#, "t"), None);
        assert_eq!(rewritten(r#"{"model":7}"#, "t"), None);
        assert_eq!(rewritten("not json", "t"), None);
        assert_eq!(rewrite_model(&[0, 0, 0, 0, 5, 1, 2], "t"), None);
        assert_eq!(rewritten(r#"["model"]"#, "t"), None);
    }
}
