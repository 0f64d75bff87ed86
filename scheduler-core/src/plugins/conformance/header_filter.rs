//! `header-based-testing-filter` (GIE conformance, GIE v1.5.0
//! `scheduling/test/filter/request_header_based_filter.go`): keeps the endpoints named in the
//! `test-epp-endpoint-selection` request header, a comma list of `ip:port` or bare IPs
//! (brackets around IPv6 allowed); a bare IP keeps every endpoint on that IP. No header, or
//! an empty one, keeps nothing. Parameters: none.

use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::model::endpoint::Endpoint;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Filter, Plugin, TypedName};
use crate::plugins::NoParams;
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "header-based-testing-filter";
/// The request header naming the endpoints to keep.
pub const HEADER: &str = "test-epp-endpoint-selection";

/// Builds a [`HeaderBasedTestingFilter`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(HeaderBasedTestingFilter {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct HeaderBasedTestingFilter {
    typed_name: TypedName,
}

impl Plugin for HeaderBasedTestingFilter {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_filter(&self) -> Option<&dyn Filter> {
        Some(self)
    }
}

/// `(host without brackets, port or "")` of an `ip:port`, `[v6]:port`, bare IP or `[v6]`.
fn split(item: &str) -> (&str, &str) {
    if let Some(rest) = item.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':').unwrap_or("")),
            None => (rest, ""),
        };
    }
    match item.rsplit_once(':') {
        // One colon: ip:port. More: a bare IPv6 address.
        Some((h, p)) if !h.contains(':') => (h, p),
        _ => (item, ""),
    }
}

fn named(e: &Endpoint, host: &str, port: &str) -> bool {
    let (eh, ep) = split(&e.address);
    eh == host && (port.is_empty() || ep == port)
}

impl Filter for HeaderBasedTestingFilter {
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        _: &mut dyn Rng,
    ) {
        let value = cx
            .request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(HEADER))
            .map(|(_, v)| v.as_ref())
            .unwrap_or("");
        for (k, &i) in keep.iter_mut().zip(candidates) {
            *k = cx.endpoint(i).is_some_and(|e| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .any(|item| {
                        let (h, p) = split(item);
                        named(e, h, p)
                    })
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::request::InferenceRequest;
    use crate::plugin::CycleState;
    use crate::rng::SplitMix64;
    use alloc::string::String;
    use alloc::vec::Vec;

    fn kept(header: Option<&str>) -> Vec<bool> {
        let eps = [
            Endpoint::new("10.0.0.1:8000"),
            Endpoint::new("10.0.0.1:8001"),
            Endpoint::new("10.0.0.2:8000"),
            Endpoint::new("[::1]:8000"),
        ];
        let mut req = InferenceRequest::new("m", "p");
        if let Some(h) = header {
            req.headers.push((HEADER.into(), String::from(h).into()));
        }
        let state = CycleState::new();
        let cx = CycleContext {
            request: &req,
            endpoints: &eps,
            state: &state,
            now_ms: 1,
            peer: None,
        };
        let f = factory("f", None, &Handle::new(&[])).unwrap();
        let mut keep = alloc::vec![false; eps.len()];
        f.as_filter()
            .unwrap()
            .filter(&cx, &[0, 1, 2, 3], &mut keep, &mut SplitMix64::new(1));
        keep
    }

    #[test]
    fn keeps_what_the_header_names() {
        assert_eq!(kept(Some("10.0.0.2:8000")), [false, false, true, false]);
        assert_eq!(
            kept(Some(" 10.0.0.1 , [::1]:8000")),
            [true, true, false, true]
        );
        assert_eq!(kept(Some("::1")), [false, false, false, true]);
        assert_eq!(kept(Some("")), [false; 4]);
        assert_eq!(kept(None), [false; 4]);
    }
}
