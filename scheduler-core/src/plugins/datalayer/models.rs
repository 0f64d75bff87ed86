//! `models-data-source` and `models-data-extractor` (llm-d, Beta): the models each endpoint
//! serves, from its OpenAI `GET /v1/models` (the base model and, on vLLM, every loaded LoRA
//! adapter with its `parent`), polled beside the metrics page (llm-d-router
//! `datalayer/source/models` and `extractor/models`, in our words).
//!
//! Upstream stores the list as one endpoint attribute for plugins to read. Endpoint attributes
//! here are scalars, so the list is a set of attributes, one per model:
//! `models-data-extractor/model:<id>` = 1. `endpoint-attribute-filter` with
//! `producer: models-data-extractor`, `attribute: model:<id>`, `Equal 1` and `onMissing: Fail`
//! keeps only the endpoints serving `<id>`. At most 256 models per endpoint are kept.
//!
//! Source parameters: `scheme` (`http`; `https` loads with a warning: TLS is the metrics
//! cluster's transport socket), `path` (default `/v1/models`),
//! `insecureSkipVerify`, `caCertPath`, `clientCertPath`, `clientKeyPath` (accepted: TLS to
//! endpoints belongs on the Envoy cluster), `interval` (duration; default every scrape tick).
//! The page is fetched from the endpoint's serving address.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::model::endpoint::Endpoint;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{EndpointPageSource, Plugin, TypedName};
use crate::plugins::datalayer::http_source;
use crate::plugins::NoParams;

/// Source type name.
pub const SOURCE_TYPE: &str = "models-data-source";
/// Extractor type name (also the producer name of its attributes).
pub const EXTRACTOR_TYPE: &str = "models-data-extractor";
/// Most models kept per endpoint.
pub const MAX_MODELS: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    scheme: String,
    path: String,
    insecure_skip_verify: bool,
    ca_cert_path: String,
    client_cert_path: String,
    client_key_path: String,
    interval: Option<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            scheme: "http".into(),
            path: "/v1/models".into(),
            insecure_skip_verify: true,
            ca_cert_path: String::new(),
            client_cert_path: String::new(),
            client_key_path: String::new(),
            interval: None,
        }
    }
}

/// Builds a [`ModelsSource`].
///
/// # Errors
/// Unknown fields; a scheme other than http/https; a path not starting with `/`; an interval that
/// is not a duration.
pub fn source_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let _ = p.insecure_skip_verify;
    let interval_ms = http_source::check(&http_source::HttpSourceParams {
        type_name: SOURCE_TYPE,
        name,
        scheme: &p.scheme,
        path: &p.path,
        cert_paths: [&p.ca_cert_path, &p.client_cert_path, &p.client_key_path],
        interval: p.interval.as_deref(),
    })?;
    Ok(Arc::new(ModelsSource {
        typed_name: TypedName::new(SOURCE_TYPE, name),
        path: p.path,
        interval_ms,
    }))
}

/// Builds the extractor marker (no parameters).
///
/// # Errors
/// Any parameter.
pub fn extractor_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let _: NoParams = parse_params(params)?;
    Ok(Arc::new(ModelsExtractor {
        typed_name: TypedName::new(EXTRACTOR_TYPE, name),
    }))
}

/// See the module docs.
pub struct ModelsSource {
    typed_name: TypedName,
    path: String,
    interval_ms: u64,
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelData>,
}

#[derive(Deserialize)]
struct ModelData {
    id: String,
}

impl Plugin for ModelsSource {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_page_source(&self) -> Option<&dyn EndpointPageSource> {
        Some(self)
    }
}

impl EndpointPageSource for ModelsSource {
    fn path(&self) -> &str {
        &self.path
    }
    fn port(&self) -> Option<u16> {
        None
    }
    fn interval_ms(&self) -> u64 {
        self.interval_ms
    }
    fn accepts_extractor(&self, extractor_type: &str) -> bool {
        extractor_type == EXTRACTOR_TYPE
    }
    fn read(&self, _: &Endpoint, page: &str, out: &mut Vec<(String, f64)>) -> bool {
        let Ok(list) = serde_json::from_str::<ModelList>(page) else {
            return false;
        };
        for m in list
            .data
            .iter()
            .filter(|m| !m.id.is_empty())
            .take(MAX_MODELS)
        {
            out.push((format!("{EXTRACTOR_TYPE}/model:{}", m.id), 1.0));
        }
        true
    }
}

/// The extractor: its reading lives in the source ([`ModelsSource::read`]); this plugin names
/// the wiring, as upstream's configs spell it.
pub struct ModelsExtractor {
    typed_name: TypedName,
}

impl Plugin for ModelsExtractor {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_attribute_per_served_model() {
        let s = source_factory(SOURCE_TYPE, None, &Handle::new(&[])).unwrap();
        let src = s.as_page_source().unwrap();
        assert_eq!(
            (src.path(), src.port(), src.interval_ms()),
            ("/v1/models", None, 0)
        );
        let mut out = Vec::new();
        let page = r#"{"object":"list","data":[{"id":"llama-3-8b","object":"model"},{"id":"sql-lora","parent":"llama-3-8b"}]}"#;
        assert!(src.read(&Endpoint::new("a:1"), page, &mut out));
        assert_eq!(
            out,
            alloc::vec![
                (String::from("models-data-extractor/model:llama-3-8b"), 1.0),
                (String::from("models-data-extractor/model:sql-lora"), 1.0)
            ]
        );
        assert!(!src.read(&Endpoint::new("a:1"), "<html>", &mut out));
        for (p, field) in [
            (serde_json::json!({"scheme": "ftp"}), "scheme"),
            (serde_json::json!({"path": "v1/models"}), "path"),
            (serde_json::json!({"interval": "often"}), "interval"),
        ] {
            let e = source_factory(SOURCE_TYPE, Some(&p), &Handle::new(&[]))
                .err()
                .unwrap();
            assert_eq!(alloc::string::ToString::to_string(&e.path), field, "{e}");
        }
    }
}
