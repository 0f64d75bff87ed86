//! `file-discovery` (llm-d, Beta): llm-d's endpoint discovery from a file instead of Kubernetes
//! (`endpoints: [{name, namespace, address, port, labels}]`, YAML or JSON), referenced from
//! `dataLayer.discovery`. In the proxy the pool is the `pool` section or the Envoy cluster, so
//! the loader accepts the reference with a warning; `envoy-config render`/`validate` read the
//! file into `pool.endpoints` for a config that has no `pool` section (the file's `address` and
//! `port` become `ip:port`, its labels the endpoint's labels).
//!
//! Parameters: `path` (required), `watchFile` (bool; the proxy follows the cluster instead).

use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, TypedName};

/// Plugin type name.
pub const TYPE: &str = "file-discovery";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    path: String,
    watch_file: bool,
}

/// Builds a [`FileDiscovery`].
///
/// # Errors
/// Unknown fields; an empty or missing `path` (as upstream).
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if p.path.is_empty() {
        return Err(ConfigError::invalid(FieldPath::key("path"), "is required"));
    }
    let _ = p.watch_file;
    Ok(Arc::new(FileDiscovery {
        typed_name: TypedName::new(TYPE, name),
        path: p.path,
    }))
}

/// See the module docs.
pub struct FileDiscovery {
    typed_name: TypedName,
    path: String,
}

impl Plugin for FileDiscovery {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn endpoint_discovery_file(&self) -> Option<&str> {
        Some(&self.path)
    }
}
