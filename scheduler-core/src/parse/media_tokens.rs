//! Token estimates for a request's media: how many prompt tokens an image, a video or an audio
//! clip stands for, so that a chat request with a 1 MiB inline image counts as a few hundred
//! tokens, not as the ~260,000 "tokens" its base64 text would give at 4 characters per token.
//!
//! llm-d-router's `token-producer` `estimate` backend (`tokenizer/estimate.go`,
//! `tokenizer/mm_estimate.go` at `ebab687`; docs/SOURCES.md#media-tokens) replaces each media
//! content part by a number of placeholder tokens:
//! - **image**: `dynamic` mode (default) `width × height / factor` (factor 1,024), the size read
//!   from the image itself when it is inline base64 (`data:image/…;base64,`), else
//!   `defaultResolution` (640 × 360, so 225 tokens); `static` mode a constant `staticToken`;
//!   at least 1.
//! - **video**: `min(frames × tokensPerFrame, maxVideoTokens)`, at least 1. Frames: `sampled`
//!   (default) `duration × sampleFPS` (2), clamped to `minFrames`/`maxFrames`, then divided
//!   by `temporalPatchSize` when ≥ 2; or `strided` `duration × fps / frameStride`, clamped.
//!   Tokens per frame: `dynamic` `width × height / factor` or `static` `numTokensPerFrame`.
//!   Duration (default 10 s), resolution (640 × 360) and source fps (24) come from the request
//!   headers `x-llm-d-video-duration-seconds`, `x-llm-d-video-resolution` (`WIDTHxHEIGHT`),
//!   `x-llm-d-video-fps` when they parse, else from the configuration, else the defaults.
//! - **audio**: its payload's length / 4, rounded up (upstream has no audio model either).
//!
//! Each part counts for at most [`MAX_PART_TOKENS`] (ours: the headers are the client's word).
//!
//! The picker's estimates are text length / 4 ([`InferenceRequest::estimated_prompt_tokens`]),
//! so here each media part's JSON text is taken out of the length and its placeholder count
//! added: [`MediaTokens`].
//!
//! Ours beyond upstream: WebP sizes are read too (upstream decodes GIF, JPEG and PNG headers);
//! Responses `input_image` and `input_video` parts are counted as images and videos.
//!
//! [`InferenceRequest::estimated_prompt_tokens`]: crate::model::request::InferenceRequest::estimated_prompt_tokens

use alloc::string::{String, ToString};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ConfigError, FieldPath};
use crate::parse::media::{json_values, MEDIA_PART_TYPES};

/// Request header: the videos' length in seconds (float).
pub const VIDEO_DURATION_HEADER: &str = "x-llm-d-video-duration-seconds";
/// Request header: the videos' frame size, `WIDTHxHEIGHT` in pixels.
pub const VIDEO_RESOLUTION_HEADER: &str = "x-llm-d-video-resolution";
/// Request header: the videos' source frame rate (frames per second, float).
pub const VIDEO_FPS_HEADER: &str = "x-llm-d-video-fps";

/// Default image and video frame size when none is known: 640 × 360 pixels.
const DEFAULT_RESOLUTION: (u64, u64) = (640, 360);
/// Default pixels per placeholder token.
const DEFAULT_FACTOR: u64 = 1024;
/// Default video length, seconds.
const DEFAULT_VIDEO_SECONDS: f64 = 10.0;
/// Default sampling rate of the `sampled` frame mode (upstream's code; its README says 1).
const DEFAULT_SAMPLE_FPS: f64 = 2.0;
/// Default source frame rate of the `strided` frame mode.
const DEFAULT_SOURCE_FPS: f64 = 24.0;
/// Bytes of an inline image decoded to find its size: a JPEG's frame header follows its
/// metadata segments, which stay within 64 KiB in practice.
const IMAGE_HEADER_BYTES: usize = 64 * 1024;
/// Media parts read from one request; a hostile body with thousands costs bounded work.
pub const MAX_PARTS: usize = 256;
/// Most tokens one media part counts for (2^24, above any model's context): a request that
/// claims a billion-second video must not push an endpoint's token load to the counter's limit.
pub const MAX_PART_TOKENS: u64 = 1 << 24;

/// A width and height in pixels.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    /// Pixels.
    pub width: i64,
    /// Pixels.
    pub height: i64,
}

impl Resolution {
    fn positive(self) -> Option<(u64, u64)> {
        (self.width > 0 && self.height > 0).then_some((self.width as u64, self.height as u64))
    }
}

/// `static` mode of the image estimate.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct StaticImage {
    /// Placeholder tokens per image.
    pub static_token: i64,
}

/// A pixels-per-token divisor (`dynamic` modes).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Dynamic {
    /// Pixels per placeholder token (≤ 0: 1,024).
    pub factor: i64,
}

/// `estimate.image`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ImageParams {
    /// `dynamic` (default) or `static`.
    pub mode: String,
    /// Size of an image whose own size cannot be read.
    pub default_resolution: Option<Resolution>,
    /// `static` mode settings.
    #[serde(rename = "static")]
    pub static_mode: Option<StaticImage>,
    /// `dynamic` mode settings.
    pub dynamic: Option<Dynamic>,
}

/// `static` mode of the video tokens per frame.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct StaticFrame {
    /// Placeholder tokens per frame.
    pub num_tokens_per_frame: i64,
}

/// `estimate.video.tokensPerFrame`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TokensPerFrame {
    /// `dynamic` (default) or `static`.
    pub mode: String,
    /// `static` mode settings.
    #[serde(rename = "static")]
    pub static_mode: Option<StaticFrame>,
    /// `dynamic` mode settings.
    pub dynamic: Option<Dynamic>,
}

/// `estimate.video.frames.sampled`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Sampled {
    /// Frames sampled per second of video (≤ 0: 2).
    #[serde(rename = "sampleFPS")]
    pub sample_fps: f64,
    /// Sampled frames merged into one token group (< 2: none).
    pub temporal_patch_size: i64,
}

/// `estimate.video.frames.strided`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Strided {
    /// Source frame rate when the request does not say (≤ 0: 24).
    #[serde(rename = "defaultSourceFPS")]
    pub default_source_fps: f64,
    /// Every n-th source frame is kept (< 1: 1).
    pub frame_stride: i64,
}

/// `estimate.video.frames`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Frames {
    /// `sampled` (default) or `strided`.
    pub mode: String,
    /// Fewest frames counted (0: no floor).
    pub min_frames: i64,
    /// Most frames counted (0: no cap).
    pub max_frames: i64,
    /// `sampled` mode settings.
    pub sampled: Option<Sampled>,
    /// `strided` mode settings.
    pub strided: Option<Strided>,
}

/// `estimate.video`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct VideoParams {
    /// Frame size when the request does not say.
    pub default_resolution: Option<Resolution>,
    /// Video length in seconds when the request does not say (≤ 0: 10).
    pub default_duration: f64,
    /// Tokens per frame.
    pub tokens_per_frame: Option<TokensPerFrame>,
    /// Frames counted.
    pub frames: Option<Frames>,
    /// Cap on one video's tokens (0: none).
    pub max_video_tokens: i64,
}

/// llm-d-router's `token-producer` `estimate` section: how media parts are counted.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EstimateParams {
    /// Image settings.
    pub image: Option<ImageParams>,
    /// Video settings.
    pub video: Option<VideoParams>,
}

impl EstimateParams {
    /// Checks the modes.
    ///
    /// # Errors
    /// A mode other than the two its field allows (path relative to `estimate`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |mode: &str, [a, b]: [&str; 2], at: FieldPath| {
            if mode.is_empty() || mode == a || mode == b {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    at,
                    alloc::format!("'{mode}' is not '{a}' or '{b}'"),
                ))
            }
        };
        if let Some(i) = &self.image {
            check(
                &i.mode,
                ["dynamic", "static"],
                FieldPath::key("image").with_key("mode"),
            )?;
        }
        if let Some(v) = &self.video {
            let at = FieldPath::key("video");
            if let Some(t) = &v.tokens_per_frame {
                let at = at.clone().with_key("tokensPerFrame").with_key("mode");
                check(&t.mode, ["dynamic", "static"], at)?;
            }
            if let Some(f) = &v.frames {
                let at = at.with_key("frames").with_key("mode");
                check(&f.mode, ["sampled", "strided"], at)?;
            }
        }
        Ok(())
    }

    /// Placeholder tokens of an image of `size` (pixels; `None` when unreadable).
    pub fn image_tokens(&self, size: Option<(u64, u64)>) -> u64 {
        let p = self.image.as_ref();
        if p.is_some_and(|p| p.mode == "static") {
            let n = p
                .and_then(|p| p.static_mode.as_ref())
                .map_or(0, |s| s.static_token);
            return n.max(1) as u64;
        }
        let (w, h) = size
            .or_else(|| {
                p.and_then(|p| p.default_resolution)
                    .and_then(Resolution::positive)
            })
            .unwrap_or(DEFAULT_RESOLUTION);
        let factor = p.and_then(|p| p.dynamic.as_ref()).map_or(0, |d| d.factor);
        per_factor(w, h, factor)
    }

    /// Placeholder tokens of one video of a request with `meta`.
    pub fn video_tokens(&self, meta: &VideoMeta) -> u64 {
        let v = self.video.as_ref();
        let frames = self.frame_count(meta);
        let tpf = v.and_then(|v| v.tokens_per_frame.as_ref());
        let per_frame = if tpf.is_some_and(|t| t.mode == "static") {
            let n = tpf
                .and_then(|t| t.static_mode.as_ref())
                .map_or(0, |s| s.num_tokens_per_frame);
            n.max(1) as u64
        } else {
            let (w, h) = meta
                .resolution
                .or_else(|| {
                    v.and_then(|v| v.default_resolution)
                        .and_then(Resolution::positive)
                })
                .unwrap_or(DEFAULT_RESOLUTION);
            let factor = tpf.and_then(|t| t.dynamic.as_ref()).map_or(0, |d| d.factor);
            per_factor(w, h, factor)
        };
        let mut tokens = frames.saturating_mul(per_frame);
        if let Some(cap) = v.map(|v| v.max_video_tokens).filter(|&c| c > 0) {
            tokens = tokens.min(cap as u64);
        }
        tokens.max(1)
    }

    fn frame_count(&self, meta: &VideoMeta) -> u64 {
        let v = self.video.as_ref();
        let f = v.and_then(|v| v.frames.as_ref());
        let duration = meta
            .duration_s
            .or_else(|| v.map(|v| v.default_duration).filter(|d| *d > 0.0))
            .unwrap_or(DEFAULT_VIDEO_SECONDS);
        let clamp = |n: u64| {
            let (min, max) = f.map_or((0, 0), |f| (f.min_frames, f.max_frames));
            let n = if min > 0 { n.max(min as u64) } else { n };
            if max > 0 {
                n.min(max as u64)
            } else {
                n
            }
        };
        if f.is_some_and(|f| f.mode == "strided") {
            let s = f.and_then(|f| f.strided.as_ref());
            let fps = meta
                .fps
                .or_else(|| s.map(|s| s.default_source_fps).filter(|x| *x > 0.0))
                .unwrap_or(DEFAULT_SOURCE_FPS);
            let stride = s.map_or(1, |s| s.frame_stride).max(1) as u64;
            // `as` saturates: a huge duration gives u64::MAX frames, then the caps apply.
            return clamp((duration * fps) as u64 / stride);
        }
        let s = f.and_then(|f| f.sampled.as_ref());
        let fps = s
            .map(|s| s.sample_fps)
            .filter(|x| *x > 0.0)
            .unwrap_or(DEFAULT_SAMPLE_FPS);
        let n = clamp((duration * fps) as u64);
        match s.map_or(0, |s| s.temporal_patch_size) {
            p if p >= 2 => n / p as u64,
            _ => n,
        }
    }
}

/// `width × height / factor` (factor ≤ 0: the default), at least 1.
fn per_factor(w: u64, h: u64, factor: i64) -> u64 {
    let factor = if factor > 0 {
        factor as u64
    } else {
        DEFAULT_FACTOR
    };
    (w.saturating_mul(h) / factor).max(1)
}

/// What the request's headers say about its videos (each `None` when absent or unusable).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VideoMeta {
    /// Length, seconds (> 0).
    pub duration_s: Option<f64>,
    /// Frame size, pixels.
    pub resolution: Option<(u64, u64)>,
    /// Source frame rate, frames per second (> 0).
    pub fps: Option<f64>,
}

impl VideoMeta {
    /// Reads the `x-llm-d-video-*` headers through `header` (a lookup by lower-case name).
    pub fn from_headers<'h>(header: impl Fn(&str) -> Option<&'h str>) -> VideoMeta {
        let positive = |name: &str| {
            header(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
        };
        VideoMeta {
            duration_s: positive(VIDEO_DURATION_HEADER),
            fps: positive(VIDEO_FPS_HEADER),
            resolution: header(VIDEO_RESOLUTION_HEADER).and_then(parse_resolution),
        }
    }
}

/// `WIDTHxHEIGHT` (either `x`), both positive integers.
fn parse_resolution(v: &str) -> Option<(u64, u64)> {
    let (w, h) = v.split_once(['x', 'X'])?;
    let w = w.trim().parse::<u64>().ok().filter(|n| *n > 0)?;
    let h = h.trim().parse::<u64>().ok().filter(|n| *n > 0)?;
    Some((w, h))
}

/// A request's media as its token estimate needs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaTokens {
    /// Bytes of the request's text that are media parts (their JSON text).
    pub payload_bytes: u64,
    /// Placeholder tokens those parts stand for.
    pub placeholder_tokens: u64,
    /// Media parts read (at most [`MAX_PARTS`]); 0: the request is not multimodal.
    pub parts: u32,
}

/// The media parts of the JSON text `raw` (a request's prompt: one JSON value or several back
/// to back, [`json_values`]), counted with `params` and the request's video `meta`. At most
/// [`MAX_PARTS`] parts are read; text that is not JSON has none.
pub fn media_tokens(raw: &str, params: &EstimateParams, meta: &VideoMeta) -> MediaTokens {
    let mut out = MediaTokens::default();
    let mut parts = 0;
    for v in json_values(raw) {
        walk(&v, 0, params, meta, &mut out, &mut parts);
    }
    out.parts = u32::try_from(parts).unwrap_or(u32::MAX);
    out
}

fn walk(
    v: &Value,
    depth: usize,
    params: &EstimateParams,
    meta: &VideoMeta,
    out: &mut MediaTokens,
    parts: &mut usize,
) {
    if depth > 8 || *parts >= MAX_PARTS {
        return;
    }
    match v {
        Value::Object(m) => {
            let media = m
                .get("type")
                .and_then(Value::as_str)
                .filter(|t| MEDIA_PART_TYPES.contains(t));
            let Some(t) = media else {
                for x in m.values() {
                    walk(x, depth + 1, params, meta, out, parts);
                }
                return;
            };
            *parts += 1;
            // Its length as compact JSON text: the raw part can be a little longer (spaces).
            let len = json_len(v, 0) as u64;
            out.payload_bytes += len;
            let tokens = if t.contains("audio") {
                len.div_ceil(4).max(1)
            } else if t.contains("video") {
                params.video_tokens(meta)
            } else {
                params.image_tokens(image_url(m).and_then(inline_image_size))
            };
            out.placeholder_tokens = out
                .placeholder_tokens
                .saturating_add(tokens.min(MAX_PART_TOKENS));
        }
        Value::Array(a) => {
            for x in a {
                walk(x, depth + 1, params, meta, out, parts);
            }
        }
        _ => {}
    }
}

/// The length of `v` written as compact JSON, without writing it (a 600 KB image's text is not
/// copied again). Nesting beyond the walk's bound counts as empty.
fn json_len(v: &Value, depth: usize) -> usize {
    if depth > 16 {
        return 0;
    }
    match v {
        Value::Null => 4,
        Value::Bool(b) => {
            if *b {
                4
            } else {
                5
            }
        }
        Value::Number(n) => n.to_string().len(),
        Value::String(s) => string_len(s),
        Value::Array(a) => {
            let commas = a.len().saturating_sub(1);
            2 + commas + a.iter().map(|x| json_len(x, depth + 1)).sum::<usize>()
        }
        Value::Object(m) => {
            let commas = m.len().saturating_sub(1);
            let members: usize = m
                .iter()
                .map(|(k, x)| string_len(k) + 1 + json_len(x, depth + 1))
                .sum();
            2 + commas + members
        }
    }
}

/// The length of `s` as a JSON string: quotes, and one extra byte per `"` or `\` (written
/// `\"`, `\\`). Other characters that JSON escapes (control characters) are rare in media
/// parts and not counted. memchr's SIMD search: base64 text has neither byte.
fn string_len(s: &str) -> usize {
    s.len() + 2 + memchr::memchr2_iter(b'"', b'\\', s.as_bytes()).count()
}

/// Where an image part keeps its image: OpenAI chat `image_url.url` (or `image_url` as a
/// string), Responses `image_url`, Anthropic `source.data` (base64, no `data:` prefix) or
/// `source.url`.
fn image_url(part: &serde_json::Map<String, Value>) -> Option<&str> {
    match part.get("image_url") {
        Some(Value::String(s)) => return Some(s),
        Some(Value::Object(o)) => return o.get("url").and_then(Value::as_str),
        _ => {}
    }
    let source = part.get("source")?;
    source
        .get("data")
        .or_else(|| source.get("url"))
        .and_then(Value::as_str)
}

/// The size of an inline base64 image: a `data:image/…;base64,` URL or a bare base64 payload
/// (Anthropic's); `None` for a remote URL or an unreadable header.
fn inline_image_size(url: &str) -> Option<(u64, u64)> {
    let payload = if let Some(rest) = url.strip_prefix("data:") {
        rest.split_once("base64,")?.1
    } else if url.contains("://") {
        return None;
    } else {
        url
    };
    // A prefix whose length is a multiple of 4 decodes on its own.
    let take = payload.len().min(IMAGE_HEADER_BYTES / 3 * 4) & !3;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.get(..take)?)
        .ok()?;
    image_size(&bytes)
}

/// Width and height from the header of a PNG, GIF, JPEG or WebP image.
pub fn image_size(b: &[u8]) -> Option<(u64, u64)> {
    let le16 = |i: usize| Some(u64::from(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?])));
    let be32 = |i: usize| {
        let s: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
        Some(u64::from(u32::from_be_bytes(s)))
    };
    let le24 = |i: usize| {
        let [x, y, z]: [u8; 3] = b.get(i..i + 3)?.try_into().ok()?;
        Some(u64::from(x) | u64::from(y) << 8 | u64::from(z) << 16)
    };
    let size = if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        // IHDR is the first chunk: width and height at bytes 16 and 20.
        (be32(16)?, be32(20)?)
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        (le16(6)?, le16(8)?)
    } else if b.starts_with(&[0xFF, 0xD8]) {
        jpeg_size(b)?
    } else if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        match b.get(12..16)? {
            b"VP8 " => (le16(26)? & 0x3FFF, le16(28)? & 0x3FFF),
            b"VP8L" => {
                // 14 bits of width − 1, then 14 of height − 1, little-endian.
                let s: [u8; 4] = b.get(21..25)?.try_into().ok()?;
                let bits = u64::from(u32::from_le_bytes(s));
                (1 + (bits & 0x3FFF), 1 + (bits >> 14 & 0x3FFF))
            }
            b"VP8X" => (1 + le24(24)?, 1 + le24(27)?),
            _ => return None,
        }
    } else {
        return None;
    };
    (size.0 > 0 && size.1 > 0).then_some(size)
}

/// A JPEG's size from its first start-of-frame segment.
fn jpeg_size(b: &[u8]) -> Option<(u64, u64)> {
    let mut i = 2;
    loop {
        // Markers are 0xFF then a code; extra 0xFF bytes are fill.
        while *b.get(i)? != 0xFF {
            i += 1;
        }
        while *b.get(i)? == 0xFF {
            i += 1;
        }
        let code = *b.get(i)?;
        i += 1;
        match code {
            // Standalone markers: no length.
            0x01 | 0xD0..=0xD8 => continue,
            0xD9 | 0xDA => return None,
            // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC): precision, height, width.
            0xC0..=0xCF if !matches!(code, 0xC4 | 0xC8 | 0xCC) => {
                let h = u16::from_be_bytes([*b.get(i + 3)?, *b.get(i + 4)?]);
                let w = u16::from_be_bytes([*b.get(i + 5)?, *b.get(i + 6)?]);
                return Some((u64::from(w), u64::from(h)));
            }
            _ => {
                let len = usize::from(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]));
                i = i.checked_add(len)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> alloc::vec::Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&[8, 6, 0, 0, 0]);
        b
    }

    fn jpeg(w: u16, h: u16) -> alloc::vec::Vec<u8> {
        // SOI, an APP0 segment of 16 bytes, then SOF0.
        let mut b = alloc::vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        b.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        b.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        b
    }

    #[test]
    fn image_sizes_from_headers() {
        assert_eq!(image_size(&png(1920, 1080)), Some((1920, 1080)));
        assert_eq!(image_size(&jpeg(800, 600)), Some((800, 600)));
        let gif = b"GIF89a\x40\x01\xf0\x00\xf7\0\0";
        assert_eq!(image_size(gif), Some((320, 240)));
        // WebP lossless (VP8L): 14-bit width-1 and height-1 packed after the signature byte.
        let (w, h) = (1000u32 - 1, 500u32 - 1);
        let bits = w | h << 14;
        let mut webp = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f".to_vec();
        webp.extend_from_slice(&bits.to_le_bytes());
        assert_eq!(image_size(&webp), Some((1000, 500)));
        // Truncated or unknown headers: no size, no panic.
        for n in 0..png(1, 1).len() {
            let _ = image_size(&png(1, 1)[..n]);
        }
        for n in 0..jpeg(1, 1).len() {
            let _ = image_size(&jpeg(1, 1)[..n]);
        }
        assert_eq!(image_size(b"not an image"), None);
        assert_eq!(image_size(&png(0, 10)), None);
    }

    fn data_url(bytes: &[u8]) -> String {
        alloc::format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    #[test]
    fn an_inline_image_counts_its_pixels_not_its_base64() {
        let mut big = png(1024, 768);
        big.resize(300_000, 7); // the pixel data
        let url = data_url(&big);
        let raw = alloc::format!(
            r#"[{{"role":"user","content":[{{"type":"text","text":"what is this"}},{{"type":"image_url","image_url":{{"url":"{url}"}}}}]}}]"#
        );
        let m = media_tokens(&raw, &EstimateParams::default(), &VideoMeta::default());
        assert_eq!(m.placeholder_tokens, 1024 * 768 / 1024);
        assert!(
            m.payload_bytes > 400_000 && m.payload_bytes < raw.len() as u64,
            "{m:?}"
        );
        // A remote image: the default 640 × 360.
        let raw = r#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/cat.png"}}]}]"#;
        let m = media_tokens(raw, &EstimateParams::default(), &VideoMeta::default());
        assert_eq!(m.placeholder_tokens, 225);
        // Anthropic's base64 source.
        let b64 = base64::engine::general_purpose::STANDARD.encode(jpeg(2048, 1024));
        let raw = alloc::format!(
            r#"[{{"role":"user","content":[{{"type":"image","source":{{"type":"base64","media_type":"image/jpeg","data":"{b64}"}}}}]}}]"#
        );
        let m = media_tokens(&raw, &EstimateParams::default(), &VideoMeta::default());
        assert_eq!(m.placeholder_tokens, 2048);
    }

    #[test]
    fn image_modes() {
        let p: EstimateParams = serde_json::from_value(serde_json::json!({
            "image": {"mode": "static", "static": {"staticToken": 576}}}))
        .unwrap();
        assert_eq!(p.image_tokens(Some((4000, 3000))), 576);
        let p: EstimateParams = serde_json::from_value(serde_json::json!({
            "image": {"defaultResolution": {"width": 1280, "height": 720}, "dynamic": {"factor": 784}}}))
        .unwrap();
        assert_eq!(p.image_tokens(None), 1280 * 720 / 784);
        assert_eq!(p.image_tokens(Some((28, 28))), 1);
        assert_eq!(p.image_tokens(Some((1, 1))), 1, "at least one token");
    }

    #[test]
    fn video_modes_and_headers() {
        let d = EstimateParams::default();
        // 10 s × 2 fps × 225 tokens per 640 × 360 frame.
        assert_eq!(d.video_tokens(&VideoMeta::default()), 20 * 225);
        let headers = [
            (VIDEO_DURATION_HEADER, "30"),
            (VIDEO_RESOLUTION_HEADER, "1280x720"),
            (VIDEO_FPS_HEADER, "30"),
        ];
        let meta =
            VideoMeta::from_headers(|n| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| *v));
        assert_eq!(meta.resolution, Some((1280, 720)));
        assert_eq!(d.video_tokens(&meta), 60 * (1280 * 720 / 1024));
        // qwen3-vl-like: sampled, temporal patches of 2, capped.
        let qwen: EstimateParams = serde_json::from_value(serde_json::json!({"video": {
            "frames": {"mode": "sampled", "maxFrames": 32, "sampled": {"sampleFPS": 2, "temporalPatchSize": 2}},
            "maxVideoTokens": 10000}}))
        .unwrap();
        assert_eq!(
            qwen.video_tokens(&meta),
            10000,
            "32 / 2 frames × 900 tokens, capped"
        );
        // gemma-like: strided from the source rate, static tokens per frame.
        let gemma: EstimateParams = serde_json::from_value(serde_json::json!({"video": {
            "tokensPerFrame": {"mode": "static", "static": {"numTokensPerFrame": 256}},
            "frames": {"mode": "strided", "minFrames": 4, "strided": {"frameStride": 30}}}}))
        .unwrap();
        assert_eq!(gemma.video_tokens(&meta), 30 * 256, "30 s × 30 fps / 30");
        assert_eq!(
            gemma.video_tokens(&VideoMeta::default()),
            8 * 256,
            "10 s × 24 fps / 30 = 8"
        );
        // An absurd claim is bounded: one video counts for at most MAX_PART_TOKENS.
        let huge = [(VIDEO_DURATION_HEADER, "1e300")];
        let meta = VideoMeta::from_headers(|n| huge.iter().find(|(k, _)| *k == n).map(|(_, v)| *v));
        assert_eq!(d.video_tokens(&meta), u64::MAX, "saturated, not wrapped");
        let raw = r#"[{"type":"video_url","video_url":{"url":"https://v"}}]"#;
        let m = media_tokens(raw, &d, &meta);
        assert_eq!(m.placeholder_tokens, MAX_PART_TOKENS);
        // Unusable headers fall back.
        let bad = [
            (VIDEO_DURATION_HEADER, "-3"),
            (VIDEO_RESOLUTION_HEADER, "wide"),
        ];
        let meta = VideoMeta::from_headers(|n| bad.iter().find(|(k, _)| *k == n).map(|(_, v)| *v));
        assert_eq!(meta, VideoMeta::default());
    }

    #[test]
    fn a_prompt_of_several_json_values_is_read_whole() {
        // Anthropic's system text, then its messages, as the parser joins them.
        let b64 = base64::engine::general_purpose::STANDARD.encode(png(800, 600));
        let raw = alloc::format!(
            r#""Be brief."[{{"role":"user","content":[{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{b64}"}}}}]}}]"#
        );
        let m = media_tokens(&raw, &EstimateParams::default(), &VideoMeta::default());
        assert_eq!(m.placeholder_tokens, 800 * 600 / 1024);
        assert!(m.payload_bytes > b64.len() as u64);
    }

    #[test]
    fn json_len_is_the_compact_text_length() {
        let v = serde_json::json!({"type": "image_url", "image_url": {"url": "data:x",
            "detail": null, "n": [1, 2.5, -3, true, false], "e": {}, "a": []}, "q": "a\"b\\c"});
        assert_eq!(json_len(&v, 0), v.to_string().len());
    }

    #[test]
    fn modes_are_checked() {
        let p: EstimateParams =
            serde_json::from_value(serde_json::json!({"video": {"frames": {"mode": "every"}}}))
                .unwrap();
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("video.frames.mode"), "{e}");
        assert!(EstimateParams::default().validate().is_ok());
    }

    #[test]
    fn parts_are_bounded_and_audio_counts_its_bytes() {
        let part = r#"{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}"#;
        let raw = alloc::format!(
            r#"[{{"role":"user","content":[{}]}}]"#,
            [part; 300].join(",")
        );
        let m = media_tokens(&raw, &EstimateParams::default(), &VideoMeta::default());
        assert_eq!(m.payload_bytes, MAX_PARTS as u64 * part.len() as u64);
        assert_eq!(
            m.placeholder_tokens,
            MAX_PARTS as u64 * part.len().div_ceil(4) as u64
        );
        assert_eq!(
            media_tokens(
                "not json",
                &EstimateParams::default(),
                &VideoMeta::default()
            ),
            MediaTokens::default()
        );
    }
}
