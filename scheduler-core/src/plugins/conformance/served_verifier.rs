//! `destination-endpoint-served-verifier` (GIE conformance, GIE v1.5.0
//! `requestcontrol/test/responsereceived/destination_endpoint_served_verifier.go`): writes the
//! endpoint that served (`ip:port`, from Envoy's upstream address) into the
//! `x-conformance-test-served-endpoint` response header, or `fail: ...` when it is unknown.
//! Parameters: none.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::ConfigError;
use crate::model::response::ResponseInfo;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{Plugin, RequestState, ResponseHeader, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "destination-endpoint-served-verifier";
/// The response header it writes.
pub const HEADER: &str = "x-conformance-test-served-endpoint";

/// Builds a [`ServedVerifier`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(ServedVerifier {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct ServedVerifier {
    typed_name: TypedName,
}

impl Plugin for ServedVerifier {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_response_header(&self) -> Option<&dyn ResponseHeader> {
        Some(self)
    }
}

impl ResponseHeader for ServedVerifier {
    fn response_header(
        &self,
        _: &mut RequestState,
        response: &ResponseInfo<'_>,
        headers_out: &mut Vec<(String, String)>,
    ) {
        let value = match response.served_endpoint {
            Some(e) if !e.is_empty() => String::from(e),
            _ => String::from("fail: missing destination endpoint served metadata"),
        };
        headers_out.push((String::from(HEADER), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_served_endpoint() {
        let v = factory("v", None, &Handle::new(&[])).unwrap();
        let mut out = Vec::new();
        let info = ResponseInfo {
            status: 200,
            served_endpoint: Some("10.0.0.1:8000"),
            now_ms: 0,
        };
        v.as_response_header()
            .unwrap()
            .response_header(&mut RequestState::new(), &info, &mut out);
        assert_eq!(out, [(String::from(HEADER), String::from("10.0.0.1:8000"))]);
    }
}
