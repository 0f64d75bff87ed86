//! The chat template: `tokenizer_config.json`'s `chat_template` (a Jinja string, or a list of
//! `{name, template}` of which `default` is used, as transformers does), rendered with
//! minijinja and its Python-compatibility methods (`.strip()`, `.items()`…), with the variables
//! transformers passes: `messages`, `add_generation_prompt` (true), `bos_token`, `eos_token`,
//! and `raise_exception`.

use minijinja::{Environment, ErrorKind};
use serde_json::Value;

use crate::Error;

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

/// `bos_token` / `eos_token` are either strings or `{"content": …}` objects.
fn token_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

impl ChatTemplate {
    /// The template of a parsed `tokenizer_config.json`; `None` when it has none.
    ///
    /// # Errors
    /// A template that does not compile.
    pub fn from_config(config: &Value) -> Result<Option<Self>, Error> {
        let source = match config.get("chat_template") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(list)) => match list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            {
                Some(t) => t
                    .get("template")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        Self::new(
            source,
            token_text(config.get("bos_token")),
            token_text(config.get("eos_token")),
        )
        .map(Some)
    }

    /// Compiles `source`.
    ///
    /// # Errors
    /// A syntax error.
    pub fn new(source: String, bos: String, eos: String) -> Result<Self, Error> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        // transformers strips the block tags' trailing newline and leading spaces.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", source)
            .map_err(|e| Error(format!("chat template: {e}")))?;
        Ok(ChatTemplate { env, bos, eos })
    }

    /// Renders `messages` with the generation prompt.
    ///
    /// # Errors
    /// A template error (including `raise_exception`).
    pub fn render(&self, messages: &Value) -> Result<String, Error> {
        self.render_value(minijinja::Value::from(minijinja::value::Serde(messages)))
    }

    /// Renders `messages` given as JSON text (an array of messages) with the generation prompt:
    /// the JSON is read straight into the template's values, with no `serde_json::Value` tree
    /// in between (the request path's form).
    ///
    /// # Errors
    /// Text that is not JSON, JSON that is not an array, a template error.
    pub fn render_json(&self, messages: &str) -> Result<String, Error> {
        let value: minijinja::Value =
            serde_json::from_str(messages).map_err(|e| Error(format!("messages: {e}")))?;
        if value.kind() != minijinja::value::ValueKind::Seq {
            return Err(Error("'messages' is not an array".into()));
        }
        self.render_value(value)
    }

    fn render_value(&self, messages: minijinja::Value) -> Result<String, Error> {
        let t = self
            .env
            .get_template("chat")
            .map_err(|e| Error(format!("chat template: {e}")))?;
        t.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => self.bos.as_str(),
            eos_token => self.eos.as_str(),
        })
        .map_err(|e| Error(format!("chat template: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_chatml_with_the_generation_prompt_and_python_methods() {
        let t = ChatTemplate::from_config(&json!({
            "bos_token": {"content": "<s>"},
            "chat_template": [{"name": "default", "template":
                "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content.strip() }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"}]
        }))
        .unwrap()
        .unwrap();
        let s = t.render(&json!([{"role": "system", "content": " Be brief. "}, {"role": "user", "content": "Hi"}])).unwrap();
        assert_eq!(s, "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn json_text_renders_as_the_parsed_value_does() {
        // Everything a message can carry: content parts, tool calls with nested arguments,
        // numbers, null, non-ASCII and escapes.
        let t = ChatTemplate::new(
            "{% for m in messages %}{{ m.role }}:{% if m.content is string %}{{ m.content }}{% elif m.content %}{% for p in m.content %}[{{ p.type }}={{ p.text }}]{% endfor %}{% endif %}{% if m.tool_calls %}{{ m.tool_calls | tojson }}{% endif %}|{% endfor %}".into(),
            String::new(),
            String::new(),
        )
        .unwrap();
        let json = r#"[{"role": "system", "content": "Sé breve.\n\"quoted\" \u00e9"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": {"x": 1, "y": [2.5, true]}}}]}]"#;
        let parsed: Value = serde_json::from_str(json).unwrap();
        assert_eq!(t.render_json(json).unwrap(), t.render(&parsed).unwrap());
        assert!(t
            .render_json(r#"{"role": "user"}"#)
            .unwrap_err()
            .0
            .contains("not an array"));
        assert!(t.render_json("[").unwrap_err().0.contains("messages"));
    }

    #[test]
    fn raise_exception_is_an_error_and_no_template_is_none() {
        let t = ChatTemplate::new(
            "{{ raise_exception('no system role') }}".into(),
            String::new(),
            String::new(),
        )
        .unwrap();
        assert!(t
            .render(&json!([]))
            .unwrap_err()
            .0
            .contains("no system role"));
        assert!(ChatTemplate::from_config(&json!({})).unwrap().is_none());
    }
}
