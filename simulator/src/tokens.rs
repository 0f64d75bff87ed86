//! The simulator's tokenizer and chat template. There is no model vocabulary: a token is up to
//! 4 bytes of the prompt's UTF-8 text, packed little-endian into a `u32` (the last chunk is
//! zero-padded). That keeps the token count at ~¼ of the byte count, makes ids deterministic
//! (equal text prefixes give equal id prefixes, so prefix caching and routers that hash token ids
//! behave as with a real tokenizer) and makes `/detokenize` exact for whole prompts.
//!
//! The chat template writes each message as `role: content\n`, in order; `content` that is not a
//! string (parts, tool calls) is written as its JSON text.

use serde_json::Value;

/// Token ids of `text`: one per 4-byte chunk, bytes packed little-endian.
pub fn tokenize(text: &str) -> Vec<u32> {
    text.as_bytes()
        .chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b.iter_mut().zip(c).for_each(|(d, s)| *d = *s);
            u32::from_le_bytes(b)
        })
        .collect()
}

/// The text of `ids` (the inverse of [`tokenize`]): padding zero bytes are dropped, and bytes
/// that are not UTF-8 (a sequence cut inside a character) become U+FFFD.
pub fn detokenize(ids: &[u32]) -> String {
    let bytes: Vec<u8> = ids
        .iter()
        .flat_map(|id| id.to_le_bytes())
        .filter(|b| *b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The text the model reads for a chat `messages` array; `None` if it is not an array.
pub fn chat_text(messages: &Value) -> Option<String> {
    let mut s = String::new();
    for m in messages.as_array()? {
        s.push_str(m.get("role").and_then(Value::as_str).unwrap_or(""));
        s.push_str(": ");
        match m.get("content") {
            Some(Value::String(c)) => s.push_str(c),
            Some(Value::Null) | None => {}
            Some(other) => s.push_str(&other.to_string()),
        }
        s.push('\n');
    }
    Some(s)
}

/// The text a request body asks the model to read: for a chat body (`chat`), `messages` through
/// the chat template; otherwise `prompt` (a string, or its JSON text). `None` when the body lacks
/// the field.
pub fn prompt_text(body: &Value, chat: bool) -> Option<String> {
    if chat {
        return chat_text(body.get("messages")?);
    }
    match body.get("prompt")? {
        Value::String(p) => Some(p.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detokenize_inverts_tokenize() {
        for text in ["", "a", "abcd", "abcde", "héllo wörld ✓ 🚀", "line\nbreak"] {
            let ids = tokenize(text);
            assert_eq!(ids.len(), text.len().div_ceil(4), "{text:?}");
            assert_eq!(detokenize(&ids), text);
        }
    }

    #[test]
    fn equal_prefixes_give_equal_ids() {
        let a = tokenize("You are a helpful assistant. Question one?");
        let b = tokenize("You are a helpful assistant. Question two?");
        assert_eq!(a[..7], b[..7]);
        assert_ne!(a, b);
    }

    #[test]
    fn chat_template_orders_roles_and_contents() {
        let body = json!({"messages": [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
        let t = prompt_text(&body, true).unwrap();
        assert_eq!(
            t,
            "system: be brief\nuser: [{\"text\":\"hi\",\"type\":\"text\"}]\n"
        );
        assert_eq!(prompt_text(&json!({"prompt": "x"}), false).unwrap(), "x");
        assert_eq!(prompt_text(&json!({"prompt": "x"}), true), None);
        assert_eq!(prompt_text(&json!({"model": "m"}), false), None);
    }
}
