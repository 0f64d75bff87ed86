//! `session-id-producer` (llm-d, Beta): reads the request's session identifier from a header or
//! from one cookie and publishes it as the request's [`SESSION_ID`] (llm-d-router
//! `requestcontrol/dataproducer/sessionid`, read at the commit in `testdata/upstream/README.md`),
//! so a plugin that wants the session reads one key whether the client sent it as a header or a
//! cookie.
//!
//! - `headerName`: the header's value (names compared lower-case), blanks trimmed;
//! - `cookieName`: the `Cookie` header split at `;` into `name=value` pairs (each trimmed); the
//!   first pair whose name equals `cookieName` exactly gives the value, blanks trimmed.
//!
//! An absent or empty identifier publishes nothing: readers treat that as "no session". No
//! built-in plugin reads the key yet (nor does one upstream at that commit); it is there for
//! out-of-tree plugins and for configs written against llm-d, which now load.
//!
//! Parameters: exactly one of `headerName` and `cookieName`.

use alloc::string::String;
use alloc::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleState, DataKey, DataProducer, Plugin, ProduceContext, RequestState, TypedName,
};

/// Plugin type name.
pub const TYPE: &str = "session-id-producer";

/// Cycle-state key of the session identifier (a `String`), llm-d's `SessionIDDataKey`.
pub const SESSION_ID: DataKey = "SessionIDDataKey";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    header_name: String,
    cookie_name: String,
}

/// Where the identifier is carried.
enum Source {
    /// A header (lower-case name).
    Header(String),
    /// A cookie of this name in the `Cookie` header.
    Cookie(String),
}

/// Builds a [`SessionIdProducer`].
///
/// # Errors
/// Unknown fields; neither or both of `headerName` and `cookieName`.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let header = p.header_name.trim().to_ascii_lowercase();
    let cookie = p.cookie_name.trim();
    let source = match (header.is_empty(), cookie.is_empty()) {
        (false, true) => Source::Header(header),
        (true, false) => Source::Cookie(String::from(cookie)),
        _ => {
            return Err(ConfigError::invalid(
                FieldPath::key("headerName"),
                "set exactly one of headerName and cookieName",
            ))
        }
    };
    Ok(Arc::new(SessionIdProducer {
        typed_name: TypedName::new(TYPE, name),
        source,
    }))
}

/// See the module docs.
pub struct SessionIdProducer {
    typed_name: TypedName,
    source: Source,
}

/// The value of cookie `name` in a `Cookie` header value, untrimmed; `None` when absent.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl SessionIdProducer {
    fn session<'r>(&self, cx: &'r ProduceContext<'_>) -> Option<&'r str> {
        let id = match &self.source {
            Source::Header(h) => cx.request.header(h)?,
            Source::Cookie(c) => cookie_value(cx.request.header("cookie")?, c)?,
        };
        Some(id.trim()).filter(|id| !id.is_empty())
    }
}

impl Plugin for SessionIdProducer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_data_producer(&self) -> Option<&dyn DataProducer> {
        Some(self)
    }
    fn produces(&self) -> &'static [DataKey] {
        &[SESSION_ID]
    }
}

impl DataProducer for SessionIdProducer {
    fn produce(
        &self,
        cx: &ProduceContext<'_>,
        _: &[usize],
        cycle: &mut CycleState,
        _: &mut RequestState,
    ) {
        if let Some(id) = self.session(cx) {
            cycle.put(SESSION_ID, String::from(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::request::InferenceRequest;
    use alloc::vec::Vec;
    use serde_json::json;

    /// What the producer publishes for a request with these headers.
    fn produced(
        params: serde_json::Value,
        headers: &[(&'static str, &'static str)],
    ) -> Option<String> {
        let p = factory("s", Some(&params), &Handle::new(&[])).unwrap();
        let mut req = InferenceRequest::new("m", "");
        req.headers = headers.iter().map(|&(k, v)| (k.into(), v.into())).collect();
        let cx = ProduceContext {
            request: &req,
            endpoints: &[],
            now_ms: 1,
        };
        let mut cycle = CycleState::new();
        p.as_data_producer()
            .unwrap()
            .produce(&cx, &[], &mut cycle, &mut RequestState::new());
        cycle.get::<String>(SESSION_ID).cloned()
    }

    #[test]
    fn from_a_header_or_a_cookie() {
        let h = json!({"headerName": "X-Session-ID"});
        assert_eq!(
            produced(h.clone(), &[("x-session-id", " abc ")]).as_deref(),
            Some("abc")
        );
        assert_eq!(produced(h.clone(), &[("x-session-id", "  ")]), None);
        assert_eq!(produced(h, &[]), None);
        let c = json!({"cookieName": "llm-d-session"});
        let jar = "theme=dark; llm-d-session=s-42 ;other=1";
        assert_eq!(
            produced(c.clone(), &[("cookie", jar)]).as_deref(),
            Some("s-42")
        );
        // Names match exactly; a pair without '=' is skipped.
        assert_eq!(
            produced(c.clone(), &[("cookie", "LLM-D-SESSION=x; junk")]),
            None
        );
        assert_eq!(produced(c, &[("x-session-id", "abc")]), None);
    }

    #[test]
    fn exactly_one_source() {
        for bad in [
            json!({}),
            json!({"headerName": " "}),
            json!({"headerName": "a", "cookieName": "b"}),
        ] {
            assert!(
                factory("s", Some(&bad), &Handle::new(&[])).is_err(),
                "{bad}"
            );
        }
        let cookies: Vec<_> = ["a=1", " b = 2", "c"]
            .iter()
            .map(|h| cookie_value(h, "a"))
            .collect();
        assert_eq!(cookies, [Some("1"), None, None]);
    }
}
