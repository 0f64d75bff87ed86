//! `passthrough-parser`: no parsing and no model handling; body-based plugins (prefix cache,
//! LoRA) see an empty model and prompt. Parameters: none.

use alloc::sync::Arc;

use crate::error::{ConfigError, RequestError};
use crate::model::request::ApiKind;
use crate::parse::openai::ParsedBody;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, RequestParser, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "passthrough-parser";

/// Builds a [`PassthroughParser`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(PassthroughParser {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct PassthroughParser {
    typed_name: TypedName,
}

impl Plugin for PassthroughParser {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_parser(&self) -> Option<&dyn RequestParser> {
        Some(self)
    }
}

impl RequestParser for PassthroughParser {
    fn parse<'a>(&self, path: &str, _: &'a [u8]) -> Result<ParsedBody<'a>, RequestError> {
        Ok(ParsedBody::unparsed(ApiKind::from_path(path)))
    }
}
