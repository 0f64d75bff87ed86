//! Expressions written by the operator in the configuration (CEL, the Common Expression
//! Language, as GIE and llm-d use it), evaluated on the response path. The core has no CEL
//! interpreter (no_std); a host that has one lends an [`ExpressionCompiler`] through the
//! registry's [`super::Services`]. Without one, plugins that need expressions load inactive
//! with a warning (as `envoy-config validate` does), never failing a config upstream accepts.

use alloc::string::String;
use alloc::sync::Arc;

/// The value an expression evaluated to, reduced to what plugins act on.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprValue {
    /// A CEL `int`.
    Int(i64),
    /// A CEL `uint`.
    UInt(u64),
    /// A CEL `double`.
    Double(f64),
    /// A CEL `bool`.
    Bool(bool),
    /// Any other type (string, list, map, null, …), by its CEL type name.
    Other(&'static str),
}

impl ExprValue {
    /// The value as a whole number the way GIE's `request-attribute-reporter` reads it: an
    /// `int` as is, a `double` truncated toward zero, a `uint` if it fits; `None` for other
    /// types.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            ExprValue::Int(i) => Some(i),
            ExprValue::UInt(u) => i64::try_from(u).ok(),
            // `as` saturates at the i64 bounds and maps NaN to 0, like Go's conversion on the
            // platforms upstream runs on, without undefined behaviour.
            ExprValue::Double(d) => Some(d as i64),
            ExprValue::Bool(_) | ExprValue::Other(_) => None,
        }
    }
}

/// A compiled expression, evaluated against named variables.
pub trait CompiledExpression: Send + Sync {
    /// Evaluates with `variables` bound (name → JSON value; JSON numbers are bound as CEL
    /// `double`s, as a `google.protobuf.Struct` would give them).
    ///
    /// # Errors
    /// A message for evaluation errors: a missing field read without `has()`, no matching
    /// overload (e.g. `double + int`), division by zero.
    fn evaluate(&self, variables: &[(&str, &serde_json::Value)]) -> Result<ExprValue, String>;
}

/// Compiles expression source text (a host service).
pub trait ExpressionCompiler: Send + Sync {
    /// Compiles `source`, which may read the `variables` named.
    ///
    /// # Errors
    /// A message with the parse error.
    fn compile(
        &self,
        source: &str,
        variables: &[&str],
    ) -> Result<Arc<dyn CompiledExpression>, String>;
}
