//! `request-attribute-reporter` (GIE v1.5.0 and llm-d, Beta): computes a number from the
//! response's token `usage` with an operator-written CEL expression and reports it to the
//! proxy, e.g. the request's cost in tokens for rate limiting, billing or access logs.
//!
//! Semantics, as GIE's `requestcontrol/requestattributereporter` plugin defines them:
//! - `attributes` holds exactly one entry: `key.name` (required), `key.namespace` (default
//!   `envoy.lb`), `expression` (required; must give a number) and `condition` (optional; must
//!   give `true` for the value to be reported).
//! - The only variable is `usage`, the response's OpenAI usage object as a protobuf `Struct`,
//!   so every number in it is a CEL `double`: `prompt_tokens`, `completion_tokens`,
//!   `total_tokens`, and `prompt_tokens_details.cached_tokens` when the server reported cached
//!   tokens (ours: when that count is above zero). `usage.prompt_tokens + 1` is therefore a CEL
//!   type error upstream too; write `1.0`.
//! - The result is truncated to a whole number; a result of 0, a non-number, a false condition
//!   or an evaluation error reports nothing.
//! - Upstream returns the value as ext_proc dynamic metadata `namespace.name`. Here the native
//!   build writes the same dynamic metadata; the proxy-wasm build (which cannot write dynamic
//!   metadata) writes the filter state `wasm.<namespace>.<name>` (see
//!   [`crate::plugin::ReportedAttribute`]).
//!
//! The expression is compiled by the host's CEL service ([`crate::plugin::Services`]). Without
//! one (offline validation), the plugin loads and reports nothing, with a warning.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{ConfigError, FieldPath};
use crate::model::response::{ResponseInfo, Usage};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    AttributeReporter, CompiledExpression, ExprValue, Plugin, ReportedAttribute, TypedName,
};

/// Plugin type name.
pub const TYPE: &str = "request-attribute-reporter";

/// `key.namespace` when none is given.
pub const DEFAULT_NAMESPACE: &str = "envoy.lb";

/// The one variable expressions may read.
const USAGE: &str = "usage";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    attributes: Vec<Attribute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Attribute {
    key: Key,
    #[serde(default)]
    expression: String,
    #[serde(default)]
    condition: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Key {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
}

/// Builds a [`RequestAttributeReporter`].
///
/// # Errors
/// `attributes` without exactly one entry, an empty `key.name` or `expression`, or (when the
/// host compiles CEL) an expression or condition that does not compile.
pub fn factory(
    name: &str,
    params: Option<&Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let [attr] = <[Attribute; 1]>::try_from(p.attributes).map_err(|_| {
        ConfigError::invalid(
            FieldPath::key("attributes"),
            "must contain exactly one entry",
        )
    })?;
    let at = |field: &str| FieldPath::key("attributes").with_index(0).with_key(field);
    if attr.key.name.is_empty() {
        return Err(ConfigError::invalid(
            at("key").with_key("name"),
            "cannot be empty",
        ));
    }
    if attr.expression.is_empty() {
        return Err(ConfigError::invalid(at("expression"), "cannot be empty"));
    }
    let namespace: Arc<str> = if attr.key.namespace.is_empty() {
        DEFAULT_NAMESPACE.into()
    } else {
        attr.key.namespace.as_str().into()
    };
    let programs = match handle.services().expressions {
        Some(compiler) => {
            let expression = compiler.compile(&attr.expression, &[USAGE]).map_err(|e| {
                ConfigError::invalid(at("expression"), format!("failed to compile: {e}"))
            })?;
            let condition = if attr.condition.is_empty() {
                None
            } else {
                Some(compiler.compile(&attr.condition, &[USAGE]).map_err(|e| {
                    ConfigError::invalid(at("condition"), format!("failed to compile: {e}"))
                })?)
            };
            Some(Programs {
                expression,
                condition,
            })
        }
        None => {
            log::warn!(
                "{TYPE} '{name}': this build has no CEL interpreter; '{}' is not reported",
                attr.key.name
            );
            None
        }
    };
    Ok(Arc::new(RequestAttributeReporter {
        typed_name: TypedName::new(TYPE, name),
        namespace,
        key: attr.key.name.as_str().into(),
        programs,
        warned: AtomicBool::new(false),
    }))
}

struct Programs {
    expression: Arc<dyn CompiledExpression>,
    condition: Option<Arc<dyn CompiledExpression>>,
}

/// See the module docs.
pub struct RequestAttributeReporter {
    typed_name: TypedName,
    namespace: Arc<str>,
    key: Arc<str>,
    /// `None` when the host cannot compile CEL: the plugin reports nothing.
    programs: Option<Programs>,
    /// An evaluation error was logged at warn level once; later ones go to debug.
    warned: AtomicBool,
}

/// The `usage` variable as upstream builds it (a `Struct`: every number a double).
pub fn usage_value(usage: &Usage) -> Value {
    let mut m = Map::new();
    let num = |n: u64| Value::from(n as f64);
    m.insert("prompt_tokens".into(), num(usage.prompt_tokens));
    m.insert("completion_tokens".into(), num(usage.completion_tokens));
    m.insert(
        "total_tokens".into(),
        num(usage.prompt_tokens.saturating_add(usage.completion_tokens)),
    );
    if let Some(cached) = usage.cached_tokens.filter(|&c| c > 0) {
        let mut d = Map::new();
        d.insert("cached_tokens".into(), num(cached));
        m.insert("prompt_tokens_details".into(), Value::Object(d));
    }
    Value::Object(m)
}

impl RequestAttributeReporter {
    /// The value to report for `usage`, or `None` (condition false, zero, not a number, error).
    pub fn value_for(&self, usage: &Usage) -> Option<i64> {
        let programs = self.programs.as_ref()?;
        let usage = usage_value(usage);
        let vars = [(USAGE, &usage)];
        if let Some(c) = &programs.condition {
            match c.evaluate(&vars) {
                Ok(ExprValue::Bool(true)) => {}
                Ok(_) => return None,
                Err(e) => {
                    self.evaluation_failed("condition", &e);
                    return None;
                }
            }
        }
        match programs.expression.evaluate(&vars) {
            Ok(v) => match v.as_i64() {
                Some(0) => None,
                Some(n) => Some(n),
                None => {
                    self.evaluation_failed("expression", &format!("gave {v:?}, not a number"));
                    None
                }
            },
            Err(e) => {
                self.evaluation_failed("expression", &e);
                None
            }
        }
    }

    fn evaluation_failed(&self, what: &str, err: &str) {
        if self.warned.swap(true, Ordering::Relaxed) {
            log::debug!("{TYPE} '{}': {what}: {err}", self.typed_name.name);
        } else {
            log::warn!(
                "{TYPE} '{}': {what}: {err} (further errors are logged at debug level)",
                self.typed_name.name
            );
        }
    }
}

impl Plugin for RequestAttributeReporter {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_attribute_reporter(&self) -> Option<&dyn AttributeReporter> {
        Some(self)
    }
}

impl AttributeReporter for RequestAttributeReporter {
    fn report(&self, _: &ResponseInfo<'_>, usage: &Usage, out: &mut Vec<ReportedAttribute>) {
        if let Some(n) = self.value_for(usage) {
            out.push(ReportedAttribute {
                namespace: self.namespace.clone(),
                name: self.key.clone(),
                value: n as f64,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{ExpressionCompiler, Services};
    use crate::plugins::testing::{plugin_with_services, plugin_without_services};
    use alloc::string::ToString;
    use alloc::vec;

    /// A test compiler that understands the few expressions these tests use, so the plugin's
    /// own rules (condition gating, zero skipping, truncation) are tested without a CEL
    /// interpreter; the hosts' real CEL is tested in the `cel-expressions` crate.
    struct Tiny;
    struct TinyExpr(String);
    impl ExpressionCompiler for Tiny {
        fn compile(&self, s: &str, vars: &[&str]) -> Result<Arc<dyn CompiledExpression>, String> {
            assert_eq!(vars, &[USAGE]);
            if s.contains("syntax error") {
                return Err("Syntax error: unexpected token".to_string());
            }
            Ok(Arc::new(TinyExpr(s.trim().to_string())))
        }
    }
    impl CompiledExpression for TinyExpr {
        fn evaluate(&self, vars: &[(&str, &Value)]) -> Result<ExprValue, String> {
            let u = vars[0].1;
            let f = |k: &str| u[k].as_f64().ok_or_else(|| format!("no such key: {k}"));
            Ok(match self.0.as_str() {
                "usage.prompt_tokens + usage.completion_tokens" => {
                    ExprValue::Double(f("prompt_tokens")? + f("completion_tokens")?)
                }
                "usage.completion_tokens / 3.0" => ExprValue::Double(f("completion_tokens")? / 3.0),
                "has(usage.prompt_tokens_details)" => {
                    ExprValue::Bool(u.get("prompt_tokens_details").is_some())
                }
                "usage.prompt_tokens_details.cached_tokens" => ExprValue::Double(
                    u["prompt_tokens_details"]["cached_tokens"]
                        .as_f64()
                        .ok_or("no such key: prompt_tokens_details")?,
                ),
                "'text'" => ExprValue::Other("string"),
                other => return Err(format!("unsupported: {other}")),
            })
        }
    }

    fn services() -> Services {
        Services {
            expressions: Some(Arc::new(Tiny)),
            ..Services::default()
        }
    }

    fn build(params: Value) -> Result<Arc<dyn Plugin>, ConfigError> {
        plugin_with_services(factory, TYPE, Some(&params), &services())
    }

    fn report(p: &Arc<dyn Plugin>, usage: Usage) -> Vec<ReportedAttribute> {
        let info = ResponseInfo {
            status: 200,
            served_endpoint: None,
            now_ms: 0,
        };
        let mut out = vec![];
        p.as_attribute_reporter()
            .unwrap()
            .report(&info, &usage, &mut out);
        out
    }

    fn usage(prompt: u64, completion: u64, cached: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: Some(cached),
        }
    }

    fn one(expression: &str, condition: Option<&str>, namespace: Option<&str>) -> Value {
        let mut key = serde_json::json!({"name": "x-gateway-inference-request-cost"});
        if let Some(ns) = namespace {
            key["namespace"] = ns.into();
        }
        let mut a = serde_json::json!({"key": key, "expression": expression});
        if let Some(c) = condition {
            a["condition"] = c.into();
        }
        serde_json::json!({ "attributes": [a] })
    }

    #[test]
    fn reports_total_tokens_under_the_default_namespace() {
        let p = build(one(
            "usage.prompt_tokens + usage.completion_tokens",
            None,
            None,
        ))
        .unwrap();
        let out = report(&p, usage(120, 30, 0));
        assert_eq!(
            out,
            vec![ReportedAttribute {
                namespace: "envoy.lb".into(),
                name: "x-gateway-inference-request-cost".into(),
                value: 150.0
            }]
        );
    }

    #[test]
    fn table() {
        // (expression, condition, usage, reported value)
        let cases: &[(&str, Option<&str>, Usage, Option<f64>)] = &[
            // truncated toward zero, as upstream's int64(double)
            (
                "usage.completion_tokens / 3.0",
                None,
                usage(1, 10, 0),
                Some(3.0),
            ),
            // zero is not reported
            (
                "usage.prompt_tokens + usage.completion_tokens",
                None,
                usage(0, 0, 0),
                None,
            ),
            // a false condition reports nothing
            (
                "usage.prompt_tokens_details.cached_tokens",
                Some("has(usage.prompt_tokens_details)"),
                usage(10, 1, 0),
                None,
            ),
            (
                "usage.prompt_tokens_details.cached_tokens",
                Some("has(usage.prompt_tokens_details)"),
                usage(10, 1, 8),
                Some(8.0),
            ),
            // an evaluation error reports nothing
            (
                "usage.prompt_tokens_details.cached_tokens",
                None,
                usage(10, 1, 0),
                None,
            ),
            // a non-number reports nothing
            ("'text'", None, usage(10, 1, 0), None),
        ];
        for (expr, cond, u, want) in cases {
            let p = build(one(expr, *cond, Some("gateway.cost"))).unwrap();
            let got: Vec<f64> = report(&p, *u).iter().map(|a| a.value).collect();
            assert_eq!(
                got,
                want.iter().copied().collect::<Vec<_>>(),
                "{expr} / {cond:?} / {u:?}"
            );
            if want.is_some() {
                assert_eq!(&*report(&p, *u)[0].namespace, "gateway.cost");
            }
        }
    }

    #[test]
    fn rejects_what_upstream_rejects() {
        let no_attrs = serde_json::json!({"attributes": []});
        let two = serde_json::json!({"attributes": [
            {"key": {"name": "a"}, "expression": "usage.prompt_tokens + usage.completion_tokens"},
            {"key": {"name": "b"}, "expression": "usage.prompt_tokens + usage.completion_tokens"}]});
        let no_name =
            serde_json::json!({"attributes": [{"key": {"namespace": "x"}, "expression": "1"}]});
        let no_expr = serde_json::json!({"attributes": [{"key": {"name": "a"}}]});
        for (params, path) in [
            (no_attrs, "attributes"),
            (two, "attributes"),
            (no_name, "attributes[0].key.name"),
            (no_expr, "attributes[0].expression"),
            (
                one("syntax error (", None, None),
                "attributes[0].expression",
            ),
            (
                one(
                    "usage.prompt_tokens + usage.completion_tokens",
                    Some("syntax error ("),
                    None,
                ),
                "attributes[0].condition",
            ),
        ] {
            let err = build(params.clone())
                .err()
                .unwrap_or_else(|| panic!("{params} loaded"));
            assert_eq!(err.path.to_string(), path, "{err}");
        }
    }

    #[test]
    fn without_a_cel_service_it_loads_and_reports_nothing() {
        let params = one("usage.prompt_tokens + usage.completion_tokens", None, None);
        let p = plugin_without_services(factory, TYPE, Some(&params)).unwrap();
        assert!(report(&p, usage(5, 5, 0)).is_empty());
    }

    #[test]
    fn usage_numbers_are_doubles_and_details_appear_with_cached_tokens() {
        let v = usage_value(&usage(3, 4, 0));
        assert_eq!(
            v,
            serde_json::json!({"prompt_tokens": 3.0, "completion_tokens": 4.0, "total_tokens": 7.0})
        );
        assert!(v["prompt_tokens"].is_f64());
        let v = usage_value(&usage(3, 4, 2));
        assert_eq!(v["prompt_tokens_details"]["cached_tokens"], 2.0);
    }
}
