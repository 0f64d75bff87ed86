//! `endpoint-notification-source` (llm-d): a data source that announces endpoints joining and
//! leaving the pool to its extractors (e.g. `precise-prefix-cache-producer`, which starts and
//! stops KV-event subscriptions and forgets departed endpoints). Here every plugin already
//! hears of membership changes through `Plugin::pool_changed`, so this source only marks the
//! wiring as valid. Parameters: none.

use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "endpoint-notification-source";

/// Builds the source; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(EndpointNotificationSource {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct EndpointNotificationSource {
    typed_name: TypedName,
}

impl Plugin for EndpointNotificationSource {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn is_endpoint_notification_source(&self) -> bool {
        true
    }
}
