//! vLLM's gRPC inference API (`vllm.grpc.engine.VllmEngine`, the protocol llm-d-router's
//! `vllmgrpc-parser` reads; docs/SOURCES.md#vllm-grpc): the request messages of its `Generate`
//! and `Embed` methods and the token usage in their responses, read in place with
//! [`super::protobuf`].
//!
//! The fields read (numbers from vLLM's `vllm_engine.proto`):
//! - `GenerateRequest`: 2 `tokenized` (`TokenizedInput`: 1 `original_text`, 2 `input_ids`,
//!   repeated uint32) or 3 `text` (a oneof: the last one present wins), 5 `stream` (bool),
//!   7 `mm_inputs` (`MultimodalInputs`: 5 `mm_placeholders`, 6 `mm_hashes`);
//! - `EmbedRequest`: 2 `tokenized` (required);
//! - `GenerateResponse`: 1 `chunk` (`GenerateStreamChunk`: 2 `prompt_tokens`,
//!   3 `completion_tokens`, 4 `cached_tokens`) or 2 `complete` (`GenerateComplete`:
//!   3 `prompt_tokens`, 4 `completion_tokens`, 5 `cached_tokens`);
//! - `EmbedResponse`: 2 `prompt_tokens`.
//!
//! The request carries no model name (one vLLM server serves one model); the prompt the prefix
//! cache hashes is the text, or the token ids written as a JSON array (`[1,2,3]`), the same text
//! `vllmhttp-parser` hashes for vLLM's HTTP generate API, so the two APIs share prefix blocks.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use super::protobuf::{fields, frame_prefix, push_varints, Value, WireError};
use crate::model::response::Usage;

/// The `Generate` method's path suffix (`:path` is `/` + this).
pub const GENERATE_METHOD: &str = "vllm.grpc.engine.VllmEngine/Generate";
/// The `Embed` method's path suffix.
pub const EMBED_METHOD: &str = "vllm.grpc.engine.VllmEngine/Embed";

/// Largest response message read for usage (bytes); larger ones are skipped. A
/// `GenerateComplete` carries every output token id (≤ 5 bytes each) before its counts.
pub const MAX_USAGE_MESSAGE_BYTES: usize = 256 * 1024;

/// Which method a request path calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `VllmEngine/Generate` (server-streaming).
    Generate,
    /// `VllmEngine/Embed` (unary).
    Embed,
}

impl Method {
    /// The method `path` (query ignored) calls, if it is one of the two read here.
    pub fn of_path(path: &str) -> Option<Method> {
        let path = path.split('?').next().unwrap_or(path);
        if path.ends_with(GENERATE_METHOD) {
            Some(Method::Generate)
        } else if path.ends_with(EMBED_METHOD) {
            Some(Method::Embed)
        } else {
            None
        }
    }
}

/// What the scheduler uses from a `GenerateRequest` or `EmbedRequest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VllmRequest<'a> {
    /// The text prompt, or the token ids as a JSON array (see the module docs).
    pub prompt: alloc::borrow::Cow<'a, str>,
    /// `stream` (always false for `Embed`).
    pub stream: bool,
    /// The request has multimodal placeholders.
    pub multimodal: bool,
}

/// Why a request message was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VllmRequestError {
    /// The bytes are not a protobuf message (or not one gRPC frame).
    Wire(WireError),
    /// A string field is not UTF-8.
    NotUtf8(&'static str),
    /// Neither `text` nor `tokenized` (Generate), or no `tokenized` (Embed).
    MissingInput,
}

impl From<WireError> for VllmRequestError {
    fn from(e: WireError) -> Self {
        VllmRequestError::Wire(e)
    }
}

enum Input<'a> {
    None,
    Text(&'a [u8]),
    Tokenized(&'a [u8]),
}

/// The token ids of a `TokenizedInput`, written as a JSON array.
fn token_ids_text(tokenized: &[u8]) -> Result<String, WireError> {
    let mut ids = Vec::new();
    for f in fields(tokenized) {
        if let (2, v) = f? {
            push_varints(v, &mut ids)?;
        }
    }
    let mut s = String::with_capacity(ids.len() * 6 + 2);
    s.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // uint32 on the wire: wider values are truncated as protobuf decoders do.
        let _ = write!(s, "{}", *id as u32);
    }
    s.push(']');
    Ok(s)
}

fn has_placeholders(mm_inputs: &[u8]) -> Result<bool, WireError> {
    for f in fields(mm_inputs) {
        if let (5, Value::Bytes(_)) = f? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads a `GenerateRequest` (`method` Generate) or `EmbedRequest` message (not framed).
///
/// # Errors
/// See [`VllmRequestError`]. A `tokenized` input with no ids is accepted (upstream does).
pub fn parse_request(method: Method, message: &[u8]) -> Result<VllmRequest<'_>, VllmRequestError> {
    let mut input = Input::None;
    let mut stream = false;
    let mut multimodal = false;
    for f in fields(message) {
        match (method, f?) {
            (_, (2, Value::Bytes(b))) => input = Input::Tokenized(b),
            (Method::Generate, (3, Value::Bytes(b))) => input = Input::Text(b),
            (Method::Generate, (5, Value::Varint(v))) => stream = v != 0,
            (Method::Generate, (7, Value::Bytes(b))) => multimodal = has_placeholders(b)?,
            _ => {}
        }
    }
    let prompt = match input {
        Input::None => return Err(VllmRequestError::MissingInput),
        Input::Text(b) => alloc::borrow::Cow::Borrowed(
            core::str::from_utf8(b).map_err(|_| VllmRequestError::NotUtf8("text"))?,
        ),
        Input::Tokenized(b) => alloc::borrow::Cow::Owned(token_ids_text(b)?),
    };
    Ok(VllmRequest {
        prompt,
        stream,
        multimodal,
    })
}

/// `(prompt, completion, cached)` token counts of a `GenerateStreamChunk` or `GenerateComplete`
/// whose count fields start at `first`.
fn counts(message: &[u8], first: u64) -> Result<Usage, WireError> {
    // Proto3 leaves a 0 out of the wire: an absent cached count is 0, not unreported.
    let mut u = Usage {
        cached_tokens: Some(0),
        ..Usage::default()
    };
    for f in fields(message) {
        if let (n, Value::Varint(v)) = f? {
            if n == first {
                u.prompt_tokens = v;
            } else if n == first + 1 {
                u.completion_tokens = v;
            } else if n == first + 2 {
                u.cached_tokens = Some(v);
            }
        }
    }
    Ok(u)
}

/// The usage in one response message of `method` (not framed); `None` when it has none (a
/// streaming chunk before the last, or counts of zero, as upstream).
///
/// # Errors
/// The message is malformed.
pub fn response_usage(method: Method, message: &[u8]) -> Result<Option<Usage>, WireError> {
    let mut usage = None;
    match method {
        Method::Generate => {
            for f in fields(message) {
                match f? {
                    (1, Value::Bytes(chunk)) => usage = Some(counts(chunk, 2)?),
                    (2, Value::Bytes(complete)) => usage = Some(counts(complete, 3)?),
                    _ => {}
                }
            }
        }
        Method::Embed => {
            for f in fields(message) {
                if let (2, Value::Varint(v)) = f? {
                    usage = Some(Usage {
                        prompt_tokens: v,
                        ..Usage::default()
                    });
                }
            }
        }
    }
    Ok(usage.filter(|u| u.prompt_tokens > 0 || u.completion_tokens > 0))
}

/// Reads the usage of a gRPC response body fed chunk by chunk (frames may split anywhere): the
/// last message with usage wins. Memory is bounded by [`MAX_USAGE_MESSAGE_BYTES`]; a malformed
/// frame or message stops the reading (the response itself is never touched).
pub struct GrpcUsageReader {
    method: Method,
    prefix: [u8; 5],
    prefix_len: usize,
    message: Vec<u8>,
    /// Bytes of the current message still to come.
    remaining: usize,
    skipping: bool,
    broken: bool,
    usage: Option<Usage>,
}

impl GrpcUsageReader {
    /// A reader for the responses of `method`.
    pub fn new(method: Method) -> Self {
        GrpcUsageReader {
            method,
            prefix: [0; 5],
            prefix_len: 0,
            message: Vec::new(),
            remaining: 0,
            skipping: false,
            broken: false,
            usage: None,
        }
    }

    /// Feeds the next body bytes.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() && !self.broken {
            if self.prefix_len < 5 {
                let want = 5 - self.prefix_len;
                let (head, tail) = chunk.split_at(want.min(chunk.len()));
                if let Some(dst) = self
                    .prefix
                    .get_mut(self.prefix_len..self.prefix_len + head.len())
                {
                    dst.copy_from_slice(head);
                }
                self.prefix_len += head.len();
                chunk = tail;
                if self.prefix_len == 5 {
                    let Some((flag, len)) = frame_prefix(&self.prefix) else {
                        self.broken = true;
                        return;
                    };
                    self.remaining = len;
                    self.skipping = flag != 0 || len > MAX_USAGE_MESSAGE_BYTES;
                    self.message.clear();
                    if len == 0 {
                        self.finish_message();
                    }
                }
                continue;
            }
            let (head, tail) = chunk.split_at(self.remaining.min(chunk.len()));
            if !self.skipping {
                self.message.extend_from_slice(head);
            }
            self.remaining -= head.len();
            chunk = tail;
            if self.remaining == 0 {
                self.finish_message();
            }
        }
    }

    fn finish_message(&mut self) {
        if !self.skipping {
            match response_usage(self.method, &self.message) {
                Ok(Some(u)) => self.usage = Some(u),
                Ok(None) => {}
                Err(_) => self.broken = true,
            }
        }
        self.prefix_len = 0;
        self.message.clear();
    }

    /// The usage read so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::super::protobuf::{grpc_frame, put_bytes, put_uint, put_varint};
    use super::*;

    fn tokenized(ids: &[u64]) -> Vec<u8> {
        let mut packed = Vec::new();
        for &i in ids {
            put_varint(&mut packed, i);
        }
        let mut t = Vec::new();
        put_bytes(&mut t, 1, b"original");
        put_bytes(&mut t, 2, &packed);
        t
    }

    #[test]
    fn generate_with_text_or_token_ids() {
        let mut m = Vec::new();
        put_bytes(&mut m, 1, b"req-1");
        put_bytes(&mut m, 3, "héllo".as_bytes());
        put_uint(&mut m, 5, 1);
        let r = parse_request(Method::Generate, &m).unwrap();
        assert_eq!(r.prompt, "héllo");
        assert!(r.stream && !r.multimodal);

        let mut m = Vec::new();
        put_bytes(&mut m, 2, &tokenized(&[1, 300, 70000]));
        let r = parse_request(Method::Generate, &m).unwrap();
        assert_eq!(r.prompt, "[1,300,70000]");
        assert!(!r.stream);
    }

    #[test]
    fn unpacked_ids_and_last_oneof_member_win() {
        let mut t = Vec::new();
        put_uint(&mut t, 2, 5);
        put_uint(&mut t, 2, 6);
        let mut m = Vec::new();
        put_bytes(&mut m, 3, b"text first");
        put_bytes(&mut m, 2, &t);
        assert_eq!(parse_request(Method::Generate, &m).unwrap().prompt, "[5,6]");
    }

    #[test]
    fn multimodal_placeholders() {
        let mut mm = Vec::new();
        let mut ph = Vec::new();
        put_uint(&mut ph, 1, 3);
        put_uint(&mut ph, 2, 10);
        put_bytes(&mut mm, 5, &ph);
        put_bytes(&mut mm, 6, b"hash");
        let mut m = Vec::new();
        put_bytes(&mut m, 2, &tokenized(&[1, 2]));
        put_bytes(&mut m, 7, &mm);
        assert!(parse_request(Method::Generate, &m).unwrap().multimodal);
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse_request(Method::Generate, &[]),
            Err(VllmRequestError::MissingInput)
        );
        let mut m = Vec::new();
        put_bytes(&mut m, 3, b"text");
        // Embed has no text field.
        assert_eq!(
            parse_request(Method::Embed, &m),
            Err(VllmRequestError::MissingInput)
        );
        let mut m = Vec::new();
        put_bytes(&mut m, 3, &[0xff, 0xfe]);
        assert_eq!(
            parse_request(Method::Generate, &m),
            Err(VllmRequestError::NotUtf8("text"))
        );
        assert_eq!(
            parse_request(Method::Generate, &[0x1a, 9, b'a']),
            Err(VllmRequestError::Wire(WireError::PastEnd))
        );
    }

    fn chunk(prompt: u64, completion: u64, cached: u64) -> Vec<u8> {
        let mut c = Vec::new();
        put_bytes(&mut c, 1, &[7, 8]);
        put_uint(&mut c, 2, prompt);
        put_uint(&mut c, 3, completion);
        put_uint(&mut c, 4, cached);
        let mut m = Vec::new();
        put_bytes(&mut m, 1, &c);
        m
    }

    fn complete(prompt: u64, completion: u64, cached: u64) -> Vec<u8> {
        let mut c = Vec::new();
        put_bytes(&mut c, 1, &[7, 8, 9]);
        put_bytes(&mut c, 2, b"stop");
        put_uint(&mut c, 3, prompt);
        put_uint(&mut c, 4, completion);
        put_uint(&mut c, 5, cached);
        let mut m = Vec::new();
        put_bytes(&mut m, 2, &c);
        m
    }

    #[test]
    fn usage_of_each_response_shape() {
        let u = |p, c, k| Usage {
            prompt_tokens: p,
            completion_tokens: c,
            cached_tokens: Some(k),
        };
        assert_eq!(
            response_usage(Method::Generate, &chunk(10, 2, 4)).unwrap(),
            Some(u(10, 2, 4))
        );
        assert_eq!(
            response_usage(Method::Generate, &complete(12, 5, 8)).unwrap(),
            Some(u(12, 5, 8))
        );
        assert_eq!(
            response_usage(Method::Generate, &chunk(0, 0, 0)).unwrap(),
            None
        );
        let mut e = Vec::new();
        put_bytes(&mut e, 1, &[0, 0, 128, 63]);
        put_uint(&mut e, 2, 33);
        put_uint(&mut e, 3, 1);
        assert_eq!(
            response_usage(Method::Embed, &e).unwrap(),
            Some(Usage {
                prompt_tokens: 33,
                ..Usage::default()
            }),
            "an embedding reports no cached count"
        );
    }

    #[test]
    fn streamed_frames_split_anywhere() {
        let mut body = Vec::new();
        body.extend(grpc_frame(&chunk(0, 0, 0)));
        body.extend(grpc_frame(&chunk(10, 1, 0)));
        body.extend(grpc_frame(&complete(10, 3, 2)));
        for split in 1..body.len() {
            let mut r = GrpcUsageReader::new(Method::Generate);
            for piece in body.chunks(split) {
                r.feed(piece);
            }
            assert_eq!(
                r.usage(),
                Some(Usage {
                    prompt_tokens: 10,
                    completion_tokens: 3,
                    cached_tokens: Some(2)
                }),
                "split {split}"
            );
        }
    }

    #[test]
    fn oversized_and_compressed_messages_are_skipped_and_garbage_stops() {
        let mut body = Vec::new();
        let mut big = grpc_frame(&vec_of(MAX_USAGE_MESSAGE_BYTES + 1));
        big.truncate(5);
        body.extend(big);
        body.extend(core::iter::repeat_n(0u8, MAX_USAGE_MESSAGE_BYTES + 1));
        let mut compressed = grpc_frame(&complete(1, 1, 0));
        compressed[0] = 1;
        body.extend(compressed);
        body.extend(grpc_frame(&complete(4, 2, 0)));
        let mut r = GrpcUsageReader::new(Method::Generate);
        r.feed(&body);
        assert_eq!(r.usage().map(|u| u.prompt_tokens), Some(4));

        let mut r = GrpcUsageReader::new(Method::Generate);
        r.feed(&grpc_frame(&[0x0b, 1, 2]));
        r.feed(&grpc_frame(&complete(4, 2, 0)));
        assert_eq!(r.usage(), None);
    }

    fn vec_of(n: usize) -> Vec<u8> {
        alloc::vec![0; n]
    }
}
