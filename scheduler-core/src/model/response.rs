//! What the response path tells the request-control plugins.

/// Token counts from an OpenAI `usage` object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `prompt_tokens`.
    pub prompt_tokens: u64,
    /// `completion_tokens`.
    pub completion_tokens: u64,
    /// `prompt_tokens_details.cached_tokens`, 0 when absent.
    pub cached_tokens: u64,
}

/// The response as seen at its headers.
#[derive(Clone, Copy, Debug)]
pub struct ResponseInfo<'a> {
    /// HTTP status of the response.
    pub status: u16,
    /// `ip:port` of the endpoint that actually served (Envoy's `upstream.address`), if known.
    pub served_endpoint: Option<&'a str>,
    /// When the hook runs, ms since the Unix epoch.
    pub now_ms: u64,
}

/// One piece of the response body as it passes.
#[derive(Clone, Copy, Debug, Default)]
pub struct BodyChunk {
    /// True for the first chunk of the body.
    pub first: bool,
    /// True for the last call (end of stream).
    pub end_of_stream: bool,
    /// Usage parsed from the body so far, once it was seen.
    pub usage: Option<Usage>,
}
