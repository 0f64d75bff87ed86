//! The CEL (Common Expression Language) service both hosts lend to scheduler-core plugins
//! ([`scheduler_core::plugin::ExpressionCompiler`]), built on the `cel` crate (cel-rust).
//!
//! GIE and llm-d compile their expressions with cel-go; the expressions their docs show
//! (arithmetic, comparisons, `has()`, ternaries, field selection on `usage`) mean the same in
//! both interpreters. Variables are bound from JSON, numbers as CEL `double`s, as a
//! `google.protobuf.Struct` binds them in cel-go.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use cel::{Context, Env, Program, Value};
use scheduler_core::plugin::{CompiledExpression, ExprValue, ExpressionCompiler, Services};

/// Compiles CEL with the standard library and macros (`has`, `all`, `exists`, `map`, …).
pub struct CelCompiler {
    env: Arc<Env>,
}

impl Default for CelCompiler {
    fn default() -> Self {
        CelCompiler {
            env: Arc::new(Env::stdlib()),
        }
    }
}

impl CelCompiler {
    /// A compiler with CEL's standard environment.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A compiled program and the environment it runs in.
struct Compiled {
    program: Program,
    env: Arc<Env>,
}

impl ExpressionCompiler for CelCompiler {
    /// # Errors
    /// The parse errors; or a variable the expression reads that is not one of `variables`
    /// (cel-go's type check rejects undeclared identifiers at compile time too).
    fn compile(
        &self,
        source: &str,
        variables: &[&str],
    ) -> Result<Arc<dyn CompiledExpression>, String> {
        let program = self.env.compile(source).map_err(|e| e.to_string())?;
        let refs = program.references();
        if let Some(unknown) = refs
            .variables()
            .into_iter()
            .find(|v| !variables.contains(v))
        {
            return Err(format!(
                "undeclared reference to '{unknown}' (declared: {})",
                variables.join(", ")
            ));
        }
        Ok(Arc::new(Compiled {
            program,
            env: self.env.clone(),
        }))
    }
}

impl CompiledExpression for Compiled {
    fn evaluate(&self, variables: &[(&str, &serde_json::Value)]) -> Result<ExprValue, String> {
        let mut cx = Context::with_env(self.env.clone());
        for (name, value) in variables {
            let v = cel::to_value(value).map_err(|e| e.to_string())?;
            cx.add_variable_from_value(*name, v);
        }
        let out = self.program.execute(&cx).map_err(|e| e.to_string())?;
        Ok(match out {
            Value::Int(i) => ExprValue::Int(i),
            Value::UInt(u) => ExprValue::UInt(u),
            Value::Float(f) => ExprValue::Double(f),
            Value::Bool(b) => ExprValue::Bool(b),
            Value::String(_) => ExprValue::Other("string"),
            Value::Bytes(_) => ExprValue::Other("bytes"),
            Value::List(_) => ExprValue::Other("list"),
            Value::Map(_) => ExprValue::Other("map"),
            Value::Null => ExprValue::Other("null"),
            _ => ExprValue::Other("other"),
        })
    }
}

/// `services` with this CEL compiler set.
pub fn with_cel(mut services: Services) -> Services {
    services.expressions = Some(Arc::new(CelCompiler::new()));
    services
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str, usage: serde_json::Value) -> Result<ExprValue, String> {
        CelCompiler::new()
            .compile(src, &["usage"])?
            .evaluate(&[("usage", &usage)])
    }

    fn usage() -> serde_json::Value {
        serde_json::json!({"prompt_tokens": 120.0, "completion_tokens": 30.0, "total_tokens": 150.0})
    }

    #[test]
    fn gie_documented_expressions() {
        assert_eq!(
            eval("usage.prompt_tokens + usage.completion_tokens", usage()),
            Ok(ExprValue::Double(150.0))
        );
        assert_eq!(
            eval(
                "(has(usage.prompt_tokens) ? usage.prompt_tokens : 0.0) + (has(usage.completion_tokens) ? usage.completion_tokens : 0.0)",
                usage()
            ),
            Ok(ExprValue::Double(150.0))
        );
        assert_eq!(
            eval(
                "has(usage.prompt_tokens) && has(usage.completion_tokens)",
                usage()
            ),
            Ok(ExprValue::Bool(true))
        );
        assert_eq!(
            eval("has(usage.prompt_tokens_details)", usage()),
            Ok(ExprValue::Bool(false))
        );
        assert_eq!(
            eval("usage.total_tokens > 100.0", usage()),
            Ok(ExprValue::Bool(true))
        );
        assert_eq!(eval("'a'", usage()), Ok(ExprValue::Other("string")));
    }

    #[test]
    fn errors_are_messages() {
        assert!(
            eval("usage.prompt_tokens +", usage()).is_err(),
            "parse error"
        );
        assert!(eval("usage.nope + 1.0", usage()).is_err(), "missing key");
        let e = CelCompiler::new().compile("request.size", &["usage"]).err();
        assert!(
            e.is_some_and(|e| e.contains("request")),
            "undeclared variable"
        );
    }
}
