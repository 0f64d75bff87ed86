//! The request as the scheduler sees it: what the parser extracted from the body plus the
//! headers plugins may read.

use alloc::borrow::Cow;
use alloc::vec::Vec;

/// Which OpenAI-compatible API the request uses, from the suffix of `:path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKind {
    /// `/v1/completions`
    Completions,
    /// `/v1/chat/completions`
    ChatCompletions,
    /// `/v1/embeddings`
    Embeddings,
    /// `/v1/responses`
    Responses,
    /// `/v1/conversations`
    Conversations,
    /// Anthropic's `/v1/messages` (and `/v1/messages/count_tokens`).
    Messages,
}

impl ApiKind {
    /// The API for a request path (query string ignored); GIE's default is completions.
    pub fn from_path(path: &str) -> ApiKind {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            ApiKind::ChatCompletions
        } else if path.ends_with("/embeddings") {
            ApiKind::Embeddings
        } else if path.ends_with("/responses") {
            ApiKind::Responses
        } else if path.ends_with("/messages") || path.ends_with("/messages/count_tokens") {
            ApiKind::Messages
        } else if path.ends_with("/conversations") {
            ApiKind::Conversations
        } else {
            ApiKind::Completions
        }
    }
}

/// One request header: `(name, value)`, names lower-case. Borrowed from the host's buffer on
/// the request path (no allocation per header); owned where a plugin adds one.
pub type Header<'a> = (Cow<'a, str>, Cow<'a, str>);

/// A parsed inference request. Borrows the body where it can, so a 200 KiB prompt is not copied.
#[derive(Clone, Debug)]
pub struct InferenceRequest<'a> {
    /// Request id (`x-request-id`), empty when absent.
    pub request_id: Cow<'a, str>,
    /// The API this request uses.
    pub api: ApiKind,
    /// `model` from the body.
    pub model: Cow<'a, str>,
    /// Model after rewrite (`x-llm-d-model-name-rewrite` or `x-gateway-model-name-rewrite`, or
    /// an `inferenceModelRewrites` rule), else `model`. LoRA affinity and
    /// the prefix-hash seed use this.
    pub target_model: Cow<'a, str>,
    /// The text hashed for prefix-cache matching: the completions prompt, the raw JSON of chat
    /// `messages`, or the Responses/embeddings inputs (docs/SOURCES.md#gie-prefix).
    pub prompt: Cow<'a, str>,
    /// `stream: true` in the body.
    pub stream: bool,
    /// `cache_salt` from the body (vLLM), mixed into the prefix-hash seed.
    pub cache_salt: Option<Cow<'a, str>>,
    /// Size of the request body in bytes.
    pub body_size_bytes: usize,
    /// Priority of the objective the `x-llm-d-inference-objective` header (or the older
    /// `x-gateway-inference-objective`) names (0 by default); < 0 is sheddable.
    pub priority: i32,
    /// Request headers plugins may read (lower-case names), borrowed from the host's copy where
    /// it has one ([`Header`]).
    pub headers: Vec<Header<'a>>,
    /// Record a per-scorer breakdown of the pick ([`crate::model::result::ProfileRunResult::breakdown`]).
    pub debug: bool,
    /// Keep every scored candidate's total ([`crate::model::result::ProfileRunResult::scored`]),
    /// for the host to publish (`pool.emitEndpointScores`).
    pub emit_scores: bool,
    /// The request carries image, audio or video content (what an encode stage would process).
    pub multimodal: bool,
    /// For a multimodal request, its media parts' bytes and the tokens they stand for
    /// ([`crate::parse::media_tokens`]); `None` otherwise.
    pub media_tokens: Option<crate::parse::media_tokens::MediaTokens>,
    /// The client's cap on output tokens (`max_completion_tokens`, `max_tokens` or
    /// `max_output_tokens` of the body), if it set one.
    pub max_output_tokens: Option<u64>,
    /// A chat or Messages request's `tools` (raw JSON), which the server's chat template
    /// renders ahead of the messages: the approximate prefix index hashes them before
    /// [`Self::prompt`] (llm-d-router's approximate prefix does too). `None` without tools.
    pub tools: Option<Cow<'a, str>>,
}

impl<'a> InferenceRequest<'a> {
    /// A minimal request for `model` with `prompt`, as tests and benchmarks build them.
    pub fn new(model: &'a str, prompt: &'a str) -> Self {
        InferenceRequest {
            request_id: Cow::Borrowed(""),
            api: ApiKind::Completions,
            model: Cow::Borrowed(model),
            target_model: Cow::Borrowed(model),
            prompt: Cow::Borrowed(prompt),
            stream: false,
            cache_salt: None,
            body_size_bytes: prompt.len(),
            priority: 0,
            headers: Vec::new(),
            debug: false,
            emit_scores: false,
            multimodal: false,
            media_tokens: None,
            max_output_tokens: None,
            tools: None,
        }
    }

    /// The value of header `name` (lower-case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }

    /// True when the request may be shed under saturation (priority < 0).
    pub fn is_sheddable(&self) -> bool {
        self.priority < 0
    }

    /// Estimated prompt length in tokens: characters / 4 (GIE's `averageCharactersPerToken`),
    /// with media parts counted as the tokens they stand for ([`Self::tokens_of_text`]).
    pub fn estimated_prompt_tokens(&self) -> u64 {
        self.tokens_of_text(self.prompt.len())
    }

    /// Tokens in `bytes` of this request's text (its prompt, or its whole body): bytes / 4,
    /// except that the bytes of media parts are replaced by their placeholder tokens (a
    /// base64 image is not text).
    pub fn tokens_of_text(&self, bytes: usize) -> u64 {
        match &self.media_tokens {
            None => bytes as u64 / 4,
            Some(m) => ((bytes as u64).saturating_sub(m.payload_bytes) / 4)
                .saturating_add(m.placeholder_tokens),
        }
    }
}

/// What a parser found out about a body's media content parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaParts {
    /// None: a text-only body, or a kind of body without content parts.
    None,
    /// Media for certain (a gRPC prompt with multimodal placeholder tokens).
    Present,
    /// A media part type's name occurs in the prompt's JSON (a substring search,
    /// [`crate::parse::media::may_have_media`]). Whether one names a content part is settled
    /// when the parts are read for their token estimate ([`crate::parse::media_tokens`]), so a
    /// multimodal body's media are parsed once for both.
    Possible,
}

/// What the parser extracts from a body.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedBody<'a> {
    /// API kind from the path.
    pub api: ApiKind,
    /// `model`.
    pub model: Cow<'a, str>,
    /// Text hashed for prefix matching (see `parse::openai`).
    pub prompt: Cow<'a, str>,
    /// `stream: true`.
    pub stream: bool,
    /// `cache_salt`, if present.
    pub cache_salt: Option<Cow<'a, str>>,
    /// Whether the request carries image, audio or video content, as far as the parser could
    /// tell cheaply (`crate::parse::media`).
    pub media: MediaParts,
    /// The request must end up with a model, and its JSON body can be given one: the OpenAI
    /// APIs. A body without `model` then takes the rewrite header's or a generic rewrite rule's,
    /// and is refused (400) when neither names one (llm-d-router). False for bodies that name
    /// no model by design (gRPC messages, token-id generate requests, pass-through).
    pub model_required: bool,
    /// The client's cap on output tokens, if the body sets one (see
    /// [`InferenceRequest::max_output_tokens`]).
    pub max_output_tokens: Option<u64>,
    /// Chat tools hashed ahead of the prompt (see [`InferenceRequest::tools`]).
    pub tools: Option<Cow<'a, str>>,
}

impl ParsedBody<'static> {
    /// A body passed through unparsed (a parser's fallback, or a path it does not read): no
    /// model, nothing to hash, not streaming.
    pub fn unparsed(api: ApiKind) -> Self {
        ParsedBody {
            api,
            model: Cow::Borrowed(""),
            prompt: Cow::Borrowed(""),
            stream: false,
            cache_salt: None,
            media: MediaParts::None,
            model_required: false,
            max_output_tokens: None,
            tools: None,
        }
    }
}
